package translate

import (
	"sort"
	"strconv"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rawbuffer "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/raw_buffer/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1alpha3"
	security "istio.io/api/security/v1beta1"

	"github.com/sextant-mesh/sextant/ca/spiffe"
	"github.com/sextant-mesh/sextant/discovery/proxy"
	"github.com/sextant-mesh/sextant/model"
)

// Istio's conventions for workload mTLS.
const (
	// TLSModeLabel marks workloads that run istio-agent and accept mTLS.
	TLSModeLabel = "security.istio.io/tlsMode"
	// SecretDefault is the workload certificate, SecretRootCA the trust
	// bundle, as Istio names them in SDS.
	SecretDefault = "default"
	SecretRootCA  = "ROOTCA"
	// sdsCluster is istio-agent's local SDS server in Envoy's bootstrap.
	sdsCluster           = "sds-grpc"
	transportSocketMatch = "envoy.transport_socket_match"
)

// istioALPN are the ALPN values Istio clients offer on mTLS, which inbound
// filter chains match to tell mesh mTLS from application TLS.
var istioALPN = []string{"istio-peer-exchange", "istio"}

// sdsSource is where an Envoy sidecar fetches SDS secrets: istio-agent's
// SDS server by default, or Sextant itself over ADS.
func sdsSource(mesh model.MeshConfig) *corev3.ConfigSource {
	if mesh.SDSOverADS {
		return adsSource()
	}
	return &corev3.ConfigSource{
		ResourceApiVersion: corev3.ApiVersion_V3,
		ConfigSourceSpecifier: &corev3.ConfigSource_ApiConfigSource{ApiConfigSource: &corev3.ApiConfigSource{
			ApiType:                   corev3.ApiConfigSource_GRPC,
			SetNodeOnFirstMessageOnly: true,
			TransportApiVersion:       corev3.ApiVersion_V3,
			GrpcServices: []*corev3.GrpcService{{TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{
				EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: sdsCluster},
			}}},
		}},
	}
}

// spiffeID is the identity of an endpoint's service account, which a
// registry may also give as a full SPIFFE ID.
func spiffeID(trustDomain, ns, sa string) string {
	if strings.HasPrefix(sa, spiffe.Scheme+"://") {
		return sa
	}
	return spiffe.ID{TrustDomain: trustDomain, Namespace: ns, ServiceAccount: sa}.String()
}

// serviceAccounts returns the SANs a client accepts from svc, computed once
// per snapshot (every scope builds the service's clusters).
func (c *Context) serviceAccounts(svc *model.Service) []string {
	if v, ok := c.sans.Load(svc.Hostname); ok {
		return v.([]string)
	}
	sans := serviceAccounts(c.Mesh, svc, c.Snap.Endpoints(svc.Hostname))
	c.sans.Store(svc.Hostname, sans)
	return sans
}

// serviceAccounts returns the sorted SPIFFE identities of a service's
// endpoints: the SANs a client accepts from it.
func serviceAccounts(mesh model.MeshConfig, svc *model.Service, eps *model.EndpointSet) []string {
	if eps == nil {
		return nil
	}
	seen := map[string]bool{}
	var out []string
	for _, ep := range eps.Endpoints {
		if ep.ServiceAccount == "" {
			continue
		}
		id := spiffeID(mesh.TrustDomain, svc.Namespace, ep.ServiceAccount)
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}

func sanMatchers(sans []string) []*tlsv3.SubjectAltNameMatcher {
	var out []*tlsv3.SubjectAltNameMatcher
	for _, s := range sans {
		out = append(out, &tlsv3.SubjectAltNameMatcher{
			SanType: tlsv3.SubjectAltNameMatcher_URI,
			Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: s}},
		})
	}
	return out
}

// istioMutual is the client TLS context of ISTIO_MUTUAL for an Envoy
// sidecar: the workload certificate and trust bundle from SDS, and the
// destination's identities as accepted SANs.
func istioMutual(mesh model.MeshConfig, sni string, sans []string, http2 bool) *tlsv3.UpstreamTlsContext {
	alpn := istioALPN
	if http2 {
		alpn = append([]string{"istio-h2"}, alpn...)
	}
	return &tlsv3.UpstreamTlsContext{
		Sni: sni,
		CommonTlsContext: &tlsv3.CommonTlsContext{
			AlpnProtocols:                  alpn,
			TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{{Name: SecretDefault, SdsConfig: sdsSource(mesh)}},
			ValidationContextType: &tlsv3.CommonTlsContext_CombinedValidationContext{CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
				DefaultValidationContext:         &tlsv3.CertificateValidationContext{MatchTypedSubjectAltNames: sanMatchers(sans)},
				ValidationContextSdsSecretConfig: &tlsv3.SdsSecretConfig{Name: SecretRootCA, SdsConfig: sdsSource(mesh)},
			}},
		},
	}
}

// grpcIstioMutual is ISTIO_MUTUAL for a proxyless gRPC client: it names
// certificate provider instance "default" (grpc-go's file_watcher plugin,
// written by istio-agent), as Istio's grpc generator does. Keys never
// travel over xDS.
func grpcIstioMutual(sans []string) *tlsv3.UpstreamTlsContext {
	return &tlsv3.UpstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{
		TlsCertificateProviderInstance: &tlsv3.CertificateProviderPluginInstance{InstanceName: "default", CertificateName: SecretDefault},
		ValidationContextType: &tlsv3.CommonTlsContext_CombinedValidationContext{CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
			DefaultValidationContext: &tlsv3.CertificateValidationContext{
				MatchSubjectAltNames: func() []*matcherv3.StringMatcher {
					var out []*matcherv3.StringMatcher
					for _, s := range sans {
						out = append(out, &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: s}})
					}
					return out
				}(),
				CaCertificateProviderInstance: &tlsv3.CertificateProviderPluginInstance{InstanceName: "default", CertificateName: SecretRootCA},
			},
		}},
	}}
}

func tlsSocket(ctx *tlsv3.UpstreamTlsContext) *corev3.TransportSocket {
	return &corev3.TransportSocket{Name: "envoy.transport_sockets.tls", ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAnyOf(ctx)}}
}

// mtlsSNI is Istio's SNI for mesh mTLS: outbound_.<port>_.<subset>_.<host>.
func mtlsSNI(port uint32, subset, host string) string {
	return "outbound_." + strconv.Itoa(int(port)) + "_." + subset + "_." + host
}

// applyMeshTLS sets ISTIO_MUTUAL (explicit in the DestinationRule) or, for
// sidecars without client TLS settings, Istio's auto mTLS: mTLS to
// endpoints labelled security.istio.io/tlsMode=istio, plaintext otherwise.
func applyMeshTLS(cl *clusterv3.Cluster, gen proxy.Generator, pol policy, mesh model.MeshConfig, port model.Port, subset, host string, sans []string) {
	mode := pol.tls.GetMode()
	http2 := port.Protocol == model.ProtocolHTTP2 || port.Protocol == model.ProtocolGRPC
	switch {
	case mode == networking.ClientTLSSettings_ISTIO_MUTUAL && gen == proxy.GenGRPC:
		cl.TransportSocket = tlsSocket(grpcIstioMutual(sans))
	case mode == networking.ClientTLSSettings_ISTIO_MUTUAL:
		cl.TransportSocket = tlsSocket(istioMutual(mesh, mtlsSNI(port.Number, subset, host), sans, http2))
	case pol.tls == nil && gen == proxy.GenEnvoy && !mesh.DisableAutoMTLS:
		md, _ := structpb.NewStruct(map[string]any{"tlsMode": "istio"})
		cl.TransportSocketMatches = []*clusterv3.Cluster_TransportSocketMatch{
			{Name: "tlsMode-istio", Match: md, TransportSocket: tlsSocket(istioMutual(mesh, mtlsSNI(port.Number, subset, host), sans, http2))},
			{Name: "tlsMode-disabled", Match: &structpb.Struct{}, TransportSocket: &corev3.TransportSocket{
				Name: "envoy.transport_sockets.raw_buffer", ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAnyOf(&rawbuffer.RawBuffer{})},
			}},
		}
	}
}

// endpointMetadata marks endpoints that take mesh mTLS, for auto mTLS.
func endpointMetadata(ep *model.Endpoint) *corev3.Metadata {
	if ep.Labels[TLSModeLabel] != "istio" {
		return nil
	}
	md, _ := structpb.NewStruct(map[string]any{"tlsMode": "istio"})
	return &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{transportSocketMatch: md}}
}

// mtlsMode is a PeerAuthentication mode after inheritance.
type mtlsMode int

const (
	mtlsPermissive mtlsMode = iota
	mtlsStrict
	mtlsDisable
)

func (m mtlsMode) String() string {
	switch m {
	case mtlsStrict:
		return "STRICT"
	case mtlsDisable:
		return "DISABLE"
	}
	return "PERMISSIVE"
}

func modeOf(m *security.PeerAuthentication_MutualTLS, parent mtlsMode) mtlsMode {
	switch m.GetMode() {
	case security.PeerAuthentication_MutualTLS_STRICT:
		return mtlsStrict
	case security.PeerAuthentication_MutualTLS_DISABLE:
		return mtlsDisable
	case security.PeerAuthentication_MutualTLS_PERMISSIVE:
		return mtlsPermissive
	}
	return parent
}

// inboundModes resolves PeerAuthentication for the proxy's workload as
// Istio does: mesh-wide (root namespace) < namespace < workload selector,
// UNSET inheriting from the level above, and portLevelMtls (workload
// policies only) per port. The result maps each inbound port to its mode.
func (c *Context) inboundModes(p *proxy.Proxy, ports []inboundPortInfo) (map[uint32]mtlsMode, uint64) {
	mode := mtlsPermissive
	h := &model.Hasher{}
	// Configs come oldest first: the oldest policy of each level wins.
	var meshPolicy, nsPolicy, workload *model.Config
	for _, cfg := range c.Snap.Configs(model.KindPeerAuthentication) {
		pa := cfg.Spec.(*security.PeerAuthentication)
		sel := pa.GetSelector().GetMatchLabels()
		switch {
		case cfg.Key.Namespace == c.Mesh.RootNamespace && len(sel) == 0:
			if meshPolicy == nil {
				meshPolicy = cfg
			}
		case cfg.Key.Namespace == p.Namespace && len(sel) == 0:
			if nsPolicy == nil {
				nsPolicy = cfg
			}
		case cfg.Key.Namespace == p.Namespace && model.LabelsMatch(sel, p.Labels):
			if workload == nil {
				workload = cfg
			}
		}
	}
	if meshPolicy != nil {
		h.U64(meshPolicy.Hash)
		mode = modeOf(meshPolicy.Spec.(*security.PeerAuthentication).GetMtls(), mode)
	}
	if nsPolicy != nil {
		h.U64(nsPolicy.Hash)
		mode = modeOf(nsPolicy.Spec.(*security.PeerAuthentication).GetMtls(), mode)
	}
	var portLevel map[uint32]*security.PeerAuthentication_MutualTLS
	if workload != nil {
		h.U64(workload.Hash)
		wpa := workload.Spec.(*security.PeerAuthentication)
		mode = modeOf(wpa.GetMtls(), mode)
		portLevel = wpa.GetPortLevelMtls()
	}
	out := make(map[uint32]mtlsMode, len(ports))
	for _, ip := range ports {
		m := mode
		if pl, ok := portLevel[ip.port]; ok {
			m = modeOf(pl, mode)
		}
		out[ip.port] = m
		h.U64(uint64(ip.port)).U64(uint64(m))
	}
	return out, h.Sum()
}

// workloadMode is the workload-level mTLS mode (without port-level
// settings), which governs virtualInbound's passthrough chains.
func (c *Context) workloadMode(p *proxy.Proxy) mtlsMode {
	// Port 0 never carries a portLevelMtls entry (validation rejects it).
	m, _ := c.inboundModes(p, []inboundPortInfo{{port: 0}})
	return m[0]
}

// downstreamMTLS is the server side of mesh mTLS on inbound chains: the
// workload certificate, client certificates required and verified against
// the trust bundle.
func downstreamMTLS(mesh model.MeshConfig, http bool) *corev3.TransportSocket {
	alpn := []string{"h2", "http/1.1"}
	if !http {
		alpn = nil
	}
	ctx := &tlsv3.DownstreamTlsContext{
		RequireClientCertificate: wrapperspb.Bool(true),
		CommonTlsContext: &tlsv3.CommonTlsContext{
			AlpnProtocols:                  alpn,
			TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{{Name: SecretDefault, SdsConfig: sdsSource(mesh)}},
			ValidationContextType: &tlsv3.CommonTlsContext_CombinedValidationContext{CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
				DefaultValidationContext:         &tlsv3.CertificateValidationContext{},
				ValidationContextSdsSecretConfig: &tlsv3.SdsSecretConfig{Name: SecretRootCA, SdsConfig: sdsSource(mesh)},
			}},
		},
	}
	return &corev3.TransportSocket{Name: "envoy.transport_sockets.tls", ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAnyOf(ctx)}}
}

// inboundChains returns the filter chains of one inbound port for its
// mTLS mode: STRICT accepts only mesh mTLS, PERMISSIVE both mTLS and
// plaintext (told apart by the TLS inspector), DISABLE only plaintext.
func inboundChains(mesh model.MeshConfig, port uint32, mode mtlsMode, http bool, filters func() []*listenerv3.Filter) []*listenerv3.FilterChain {
	name := InboundClusterName(port)
	tlsChain := &listenerv3.FilterChain{
		Name: name,
		FilterChainMatch: &listenerv3.FilterChainMatch{
			DestinationPort:   wrapperspb.UInt32(port),
			TransportProtocol: "tls",
		},
		TransportSocket: downstreamMTLS(mesh, http),
		Filters:         filters(),
	}
	plain := &listenerv3.FilterChain{
		Name:             name + "-plaintext",
		FilterChainMatch: &listenerv3.FilterChainMatch{DestinationPort: wrapperspb.UInt32(port)},
		Filters:          filters(),
	}
	switch mode {
	case mtlsStrict:
		return []*listenerv3.FilterChain{tlsChain}
	case mtlsDisable:
		plain.Name = name
		return []*listenerv3.FilterChain{plain}
	}
	// PERMISSIVE: mesh mTLS is recognised by Istio's ALPN; everything else
	// (plaintext, or the application's own TLS) passes through as is.
	tlsChain.FilterChainMatch.ApplicationProtocols = append([]string{"istio-h2", "istio-http/1.0", "istio-http/1.1"}, istioALPN...)
	return []*listenerv3.FilterChain{tlsChain, plain}
}
