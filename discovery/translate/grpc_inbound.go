package translate

import (
	"net"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/sextant-mesh/sextant/discovery/proxy"
	"github.com/sextant-mesh/sextant/model"
)

// GRPCInboundPrefix starts the listener names proxyless gRPC servers ask
// for (istio-agent's server_listener_resource_name_template).
const GRPCInboundPrefix = "xds.istio.io/grpc/lds/inbound/"

// IsGRPCInbound reports whether name is a proxyless server's listener.
func IsGRPCInbound(name string) bool { return strings.HasPrefix(name, GRPCInboundPrefix) }

// claimableInstances are the service instances at p's addresses that p may
// serve: those of its own namespace (as Istio's registry ties a proxy to
// its pod) and, when the proxy authenticated on the secure port, those
// whose service account is its own. An instance without a service account
// cannot be matched against an identity and is kept only for
// unauthenticated proxies.
func (c *Context) claimableInstances(p *proxy.Proxy) []model.Instance {
	var out []model.Instance
	for _, ip := range p.IPs {
		for _, inst := range c.Snap.InstancesByIP(ip) {
			if inst.Service.Namespace != p.Namespace {
				continue
			}
			if p.Authenticated && !sameServiceAccount(inst.Endpoint.ServiceAccount, p.Namespace, p.VerifiedServiceAccount) {
				continue
			}
			out = append(out, inst)
		}
	}
	return out
}

// sameServiceAccount compares an endpoint's service account (a name, or
// a SPIFFE ID) with an authenticated one.
func sameServiceAccount(epSA, ns, sa string) bool {
	if epSA == "" || sa == "" {
		return false
	}
	if strings.HasPrefix(epSA, "spiffe://") {
		return strings.HasSuffix(epSA, "/ns/"+ns+"/sa/"+sa)
	}
	return epSA == sa
}

// GRPCInboundListener answers a proxyless gRPC server's listener request
// xds.istio.io/grpc/lds/inbound/IP:PORT as istiod's gRPC generator does:
// the proxy's own instance serving PORT, one filter chain (mTLS with
// certificate provider "default" and client certificates required when
// the port is STRICT; plaintext otherwise, since gRPC cannot serve
// PERMISSIVE), and an HCM with RBAC DENY, RBAC ALLOW and the router. It
// returns nil when the workload does not serve the port, so the server
// does not serve it.
func (c *Context) GRPCInboundListener(p *proxy.Proxy, name string) *Resource {
	host, portStr, err := net.SplitHostPort(strings.TrimPrefix(name, GRPCInboundPrefix))
	if err != nil {
		c.warnOnce("grpc-inbound\x00"+name, &ListenerError{Name: name, Msg: "not IP:PORT after " + GRPCInboundPrefix})
		return nil
	}
	port64, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		c.warnOnce("grpc-inbound\x00"+name, &ListenerError{Name: name, Msg: "bad port"})
		return nil
	}
	port := uint32(port64)
	var found *model.Instance
	for _, inst := range c.claimableInstances(p) {
		for _, sp := range inst.Service.Ports {
			if inst.Endpoint.PortFor(sp) == port {
				inst := inst
				found = &inst
				break
			}
		}
		if found != nil {
			break
		}
	}
	if found == nil {
		return nil
	}
	modes, modesHash := c.inboundModes(p, []inboundPortInfo{{port: port}})
	mode := modes[port]
	// Clients use mTLS with workloads labelled for it (auto mTLS), and
	// gRPC cannot tell mTLS from plaintext on one port: PERMISSIVE is
	// STRICT for those workloads, plaintext for the others.
	labelled := found.Endpoint.Labels[TLSModeLabel] == "istio" || p.Labels[TLSModeLabel] == "istio"
	if mode == mtlsPermissive {
		if labelled {
			mode = mtlsStrict
		} else {
			mode = mtlsDisable
		}
	}
	filters, authzHash := c.grpcAuthzFilters(p.Namespace, p.Labels)
	inputs := (&model.Hasher{}).U64(modesHash).U64(uint64(mode)).U64(authzHash).U64(c.meshHash).Str(host).Sum()
	res, err := c.cache.get(c.gen, ListenerType, name, inputs, func() proto.Message {
		return grpcInboundListener(name, host, port, mode == mtlsStrict, filters)
	})
	c.addErr(err)
	return res
}

// ListenerError is a listener request Sextant cannot answer.
type ListenerError struct{ Name, Msg string }

func (e *ListenerError) Error() string { return "listener " + e.Name + ": " + e.Msg }

func grpcInboundListener(name, host string, port uint32, mtls bool, authz []*hcmv3.HttpFilter) *listenerv3.Listener {
	suffix := "plaintext"
	if mtls {
		suffix = "mtls"
	}
	filters := append(append([]*hcmv3.HttpFilter(nil), authz...),
		&hcmv3.HttpFilter{Name: RouterFilter, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAnyOf(&routerv3.Router{})}})
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix: "inbound_" + strconv.Itoa(int(port)),
		RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: &routev3.RouteConfiguration{
			Name: "inbound",
			VirtualHosts: []*routev3.VirtualHost{{
				Name:    "inbound|grpc|" + strconv.Itoa(int(port)),
				Domains: []string{"*"},
				Routes: []*routev3.Route{{
					Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
					Action: &routev3.Route_NonForwardingAction{NonForwardingAction: &routev3.NonForwardingAction{}},
				}},
			}},
		}},
		HttpFilters: filters,
	}
	fc := &listenerv3.FilterChain{
		Name: "inbound-" + suffix,
		Filters: []*listenerv3.Filter{{
			Name:       "inbound-hcm" + suffix,
			ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAnyOf(hcm)},
		}},
	}
	if mtls {
		fc.TransportSocket = &corev3.TransportSocket{Name: "envoy.transport_sockets.tls", ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAnyOf(&tlsv3.DownstreamTlsContext{
			RequireClientCertificate: wrapperspb.Bool(true),
			CommonTlsContext: &tlsv3.CommonTlsContext{
				TlsCertificateProviderInstance: &tlsv3.CertificateProviderPluginInstance{InstanceName: "default", CertificateName: SecretDefault},
				ValidationContextType: &tlsv3.CommonTlsContext_CombinedValidationContext{CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
					DefaultValidationContext: &tlsv3.CertificateValidationContext{
						CaCertificateProviderInstance: &tlsv3.CertificateProviderPluginInstance{InstanceName: "default", CertificateName: SecretRootCA},
					},
				}},
			},
		})}}
	}
	return &listenerv3.Listener{
		Name:         name,
		Address:      socketAddress(host, port),
		FilterChains: []*listenerv3.FilterChain{fc},
	}
}
