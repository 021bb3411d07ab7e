package xds

import (
	"encoding/json"
	"time"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	statusv3 "github.com/envoyproxy/go-control-plane/envoy/service/status/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/sextant-mesh/sextant/internal/buildinfo"
)

// Istio's debug types, served over ADS so `istioctl proxy-status
// --xds-address` works against Sextant.
const (
	DebugSyncz      = "istio.io/debug/syncz"
	DebugConfigDump = "istio.io/debug/config_dump"
)

// handleDebug answers istioctl's debug requests: syncz returns one CSDS
// ClientConfig per connected proxy (listing only proxies that send
// PROXY_CONFIG, as istiod does); config_dump returns the named proxy's
// ClientConfig with the resources it was sent.
func (c *Connection) handleDebug(r *request) error {
	if r.hasError {
		return nil
	}
	c.mu.Lock()
	acked := r.nonce != "" && r.nonce == c.debugNonces[r.typeURL]
	c.mu.Unlock()
	if acked {
		return nil // an ACK of our last answer needs none
	}
	// Anything else is a question, even with a nonce: istioctl sends one
	// (a timestamp) on its first request.
	// On the secure port, callers outside the root namespace see only the
	// proxies of their own namespace, as istiod does.
	visible := func(conn *Connection) bool {
		return c.identity == nil || c.identity.Namespace == c.s.opts.Mesh.RootNamespace || conn.proxy.Namespace == c.identity.Namespace
	}
	var res []*anypb.Any
	switch r.typeURL {
	case DebugSyncz:
		for _, conn := range c.s.Connections() {
			if !conn.proxy.HasProxyConfig || !visible(conn) {
				continue
			}
			if a, err := anypb.New(conn.ClientConfig(false)); err == nil {
				res = append(res, a)
			}
		}
	case DebugConfigDump:
		for _, name := range append(r.sotwNames(&c.s.strings), r.subscribe...) {
			for _, conn := range c.s.Connections() {
				if (conn.proxy.Name == name || conn.proxy.ID == name) && visible(conn) {
					if a, err := anypb.New(conn.ClientConfig(true)); err == nil {
						res = append(res, a)
					}
					break
				}
			}
		}
	default:
		return nil
	}
	c.mu.Lock()
	nonce := c.nextNonce()
	if c.debugNonces == nil {
		c.debugNonces = map[string]string{}
	}
	c.debugNonces[r.typeURL] = nonce
	c.mu.Unlock()
	if c.delta {
		resp := &discoverygrpc.DeltaDiscoveryResponse{TypeUrl: r.typeURL, Nonce: nonce, ControlPlane: c.s.controlPlane()}
		for _, a := range res {
			resp.Resources = append(resp.Resources, &discoverygrpc.Resource{Resource: a})
		}
		return c.sendMsg(resp)
	}
	return c.sendMsg(&discoverygrpc.DiscoveryResponse{TypeUrl: r.typeURL, Nonce: nonce, VersionInfo: time.Now().Format(time.RFC3339Nano),
		Resources: res, ControlPlane: c.s.controlPlane()})
}

// controlPlane identifies this server as istiod does (a JSON
// IstioControlPlaneInstance), so istioctl shows it in the ISTIOD column.
func (s *Server) controlPlane() *corev3.ControlPlane {
	b, _ := json.Marshal(map[string]any{
		"Component": "sextant",
		"ID":        s.opts.InstanceID,
		"Info":      map[string]string{"version": buildinfo.Get().Version},
	})
	return &corev3.ControlPlane{Identifier: string(b)}
}

func configStatus(w WatchStatus) statusv3.ConfigStatus {
	switch w.Status {
	case StatusSynced:
		return statusv3.ConfigStatus_SYNCED
	case StatusNack:
		return statusv3.ConfigStatus_ERROR
	case StatusStale:
		return statusv3.ConfigStatus_STALE
	}
	return statusv3.ConfigStatus_NOT_SENT
}

// ClientConfig renders the connection as an Envoy CSDS ClientConfig, the
// shape istioctl reads. With resources, the last sent resources are
// included as generic xDS configs.
func (c *Connection) ClientConfig(resources bool) *statusv3.ClientConfig {
	cc := &statusv3.ClientConfig{
		// istiod names proxies pod.namespace here; istioctl prints it.
		Node: &corev3.Node{Id: c.proxy.Name, Metadata: c.proxy.Metadata()},
	}
	for _, w := range c.Watches() {
		gx := &statusv3.ClientConfig_GenericXdsConfig{
			TypeUrl:      w.TypeURL,
			VersionInfo:  w.VersionSent,
			ConfigStatus: configStatus(w),
		}
		if w.Status == StatusNack {
			gx.ClientStatus = adminv3.ClientResourceStatus_NACKED
			gx.ErrorState = &adminv3.UpdateFailureState{Details: w.LastError}
		} else if w.Status == StatusSynced {
			gx.ClientStatus = adminv3.ClientResourceStatus_ACKED
		}
		if !w.LastSent.IsZero() {
			gx.LastUpdated = timestamppb.New(w.LastSent)
		}
		if resources {
			for _, m := range c.Sent(w.TypeURL) {
				if a, err := anypb.New(m); err == nil {
					g := proto.Clone(gx).(*statusv3.ClientConfig_GenericXdsConfig)
					g.XdsConfig = a
					g.Name = nameOf(m)
					cc.GenericXdsConfigs = append(cc.GenericXdsConfigs, g)
				}
			}
			continue
		}
		cc.GenericXdsConfigs = append(cc.GenericXdsConfigs, gx)
	}
	return cc
}

func nameOf(m interface{}) string {
	switch v := m.(type) {
	case interface{ GetName() string }:
		return v.GetName()
	case interface{ GetClusterName() string }:
		return v.GetClusterName()
	}
	return ""
}
