package translate

import (
	"net"
	"strconv"
	"strings"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/proto"

	"github.com/sextant-mesh/sextant/discovery/proxy"
	"github.com/sextant-mesh/sextant/model"
)

func shortType(typeURL string) string {
	return typeURL[strings.LastIndexByte(typeURL, '.')+1:]
}

// GRPCListenerName is the listener a proxyless client asks for when it dials
// xds:///host:port.
func GRPCListenerName(host string, port uint32) string {
	return net.JoinHostPort(host, strconv.FormatUint(uint64(port), 10))
}

// grpcListenersAndRoutes builds, per service port, an api_listener named
// host:port whose HttpConnectionManager fetches RDS named like the port's
// cluster, outbound|<port>||<host>, as istiod's grpc generator does
// (grpcgen/lds.go clusterKey). The route config has one virtual host
// host:port with istiod's domain set, ports included: gRPC matches the
// authority with its port.
func (c *Context) grpcListenersAndRoutes(p *proxy.Proxy, services []*model.Service) (ls, rs []*Resource) {
	for _, svc := range services {
		if svc.Resolution == model.Passthrough {
			continue
		}
		vs := c.virtualService(p, svc.Hostname)
		rin := c.routeInputs(p, svc, vs)
		if svc.Namespace == p.Namespace {
			// The bare short name is a domain only from the service's
			// own namespace.
			rin = (&model.Hasher{}).U64(rin).Str("same-namespace").Sum()
		}
		for _, port := range svc.Ports {
			name := GRPCListenerName(svc.Hostname, port.Number)
			rname := GRPCRouteName(svc.Hostname, port.Number)
			c.add(&ls, ListenerType, name, 0, func() proto.Message {
				return grpcListener(name, rname)
			})
			port := port
			c.add(&rs, RouteType, rname, rin, func() proto.Message {
				return &routev3.RouteConfiguration{
					Name: rname,
					VirtualHosts: []*routev3.VirtualHost{{
						Name:    name,
						Domains: domainsFor(svc, port.Number, p.Namespace, true),
						Routes:  c.httpRoutes(p, svc, port, vs),
					}},
				}
			})
		}
	}
	return ls, rs
}

// GRPCRouteName is the RDS a proxyless client's listener for host:port
// fetches: istiod names it like the service port's cluster.
func GRPCRouteName(host string, port uint32) string {
	return ClusterName(port, "", host)
}

func grpcListener(name, routeName string) *listenerv3.Listener {
	faultAny, _ := newAny(&faultv3.HTTPFault{})
	routerAny, _ := newAny(&routerv3.Router{})
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix: name,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			ConfigSource:    adsSource(),
			RouteConfigName: routeName,
		}},
		HttpFilters: []*hcmv3.HttpFilter{
			{Name: FaultFilter, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: faultAny}},
			{Name: RouterFilter, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: routerAny}},
		},
	}
	a, _ := newAny(hcm)
	return &listenerv3.Listener{
		Name:        name,
		ApiListener: &listenerv3.ApiListener{ApiListener: a},
	}
}
