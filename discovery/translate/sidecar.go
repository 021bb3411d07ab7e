package translate

import (
	"github.com/sextant-mesh/sextant/discovery/proxy"
	"github.com/sextant-mesh/sextant/model"
)

// sidecarListenersAndRoutes builds LDS and RDS for Envoy sidecars.
func (c *Context) sidecarListenersAndRoutes(p *proxy.Proxy, services []*model.Service) (ls, rs []*Resource) {
	return nil, nil
}
