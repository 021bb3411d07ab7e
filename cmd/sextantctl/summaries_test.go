package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"
	"time"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func istioMeta(path string) *corev3.Metadata {
	s, _ := structpb.NewStruct(map[string]any{"config": path})
	return &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"istio": s}}
}

func mustAny(t *testing.T, m proto.Message) *anypb.Any {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func addressOf(ip string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

// selfSigned returns a PEM certificate valid in 2030 and its PEM key.
func selfSigned(t *testing.T) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(0x1234abcd),
		Subject:      pkix.Name{CommonName: "test"},
		NotBefore:    time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:     time.Date(2030, 1, 2, 0, 0, 0, 0, time.UTC),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

// sidecarDump is what an Envoy sidecar with Istio's full output would be
// sent: inbound and outbound clusters with metadata, listeners with filter
// chains, a route from a VirtualService, DNS endpoints and secrets.
func sidecarDump(t *testing.T) ([]byte, []byte) {
	t.Helper()
	certPEM, keyPEM := selfSigned(t)
	hcm := func(rds string) *anypb.Any {
		return mustAny(t, &hcmv3.HttpConnectionManager{StatPrefix: rds, RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{RouteConfigName: rds}}})
	}
	inlineHCM := mustAny(t, &hcmv3.HttpConnectionManager{RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: &routev3.RouteConfiguration{
		VirtualHosts: []*routev3.VirtualHost{{Name: "backend", Domains: []string{"*"}, Routes: []*routev3.Route{{
			Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/stats/prometheus"}},
		}}}},
	}}})
	tcp := func(cluster string) *anypb.Any {
		return mustAny(t, &tcpv3.TcpProxy{StatPrefix: cluster, ClusterSpecifier: &tcpv3.TcpProxy_Cluster{Cluster: cluster}})
	}
	// A filter type this build does not know must not break the summary.
	// It is marshalled as a placeholder and renamed below.
	unknown := mustAny(t, &corev3.Locality{Region: "placeholder"})
	resources := map[string][]proto.Message{
		keyCDS: {
			&clusterv3.Cluster{Name: "outbound|9080|v1|reviews.default.svc.cluster.local", ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
				Metadata: istioMeta("/apis/networking.istio.io/v1/namespaces/default/destination-rule/reviews")},
			&clusterv3.Cluster{Name: "inbound|9080||", ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_ORIGINAL_DST}},
			&clusterv3.Cluster{Name: "outbound|443||api.example.com", ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STRICT_DNS},
				LoadAssignment: &endpointv3.ClusterLoadAssignment{ClusterName: "outbound|443||api.example.com", Endpoints: []*endpointv3.LocalityLbEndpoints{{
					LbEndpoints: []*endpointv3.LbEndpoint{{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: addressOf("api.example.com", 443)}}}},
				}}}},
			&clusterv3.Cluster{Name: "PassthroughCluster", ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_ORIGINAL_DST}},
			&clusterv3.Cluster{Name: "BlackHoleCluster"},
		},
		keyLDS: {
			&listenerv3.Listener{Name: "virtualOutbound", Address: addressOf("0.0.0.0", 15001), FilterChains: []*listenerv3.FilterChain{
				{FilterChainMatch: &listenerv3.FilterChainMatch{PrefixRanges: []*corev3.CidrRange{{AddressPrefix: "10.1.0.1", PrefixLen: wrapperspb.UInt32(32)}}},
					Filters: []*listenerv3.Filter{{Name: "envoy.filters.network.tcp_proxy", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: tcp("BlackHoleCluster")}}}},
			}, DefaultFilterChain: &listenerv3.FilterChain{Filters: []*listenerv3.Filter{{Name: "envoy.filters.network.tcp_proxy", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: tcp("PassthroughCluster")}}}}},
			&listenerv3.Listener{Name: "0.0.0.0_9080", Address: addressOf("0.0.0.0", 9080), FilterChains: []*listenerv3.FilterChain{
				{FilterChainMatch: &listenerv3.FilterChainMatch{TransportProtocol: "raw_buffer", ApplicationProtocols: []string{"http/1.0", "http/1.1", "h2c"}},
					Filters: []*listenerv3.Filter{{Name: "envoy.filters.network.http_connection_manager", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: hcm("9080")}}}},
				{Filters: []*listenerv3.Filter{{Name: "envoy.filters.network.tcp_proxy", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: tcp("outbound|9080||ratings.default.svc.cluster.local")}}}},
			}},
			&listenerv3.Listener{Name: "10.96.0.10_53", Address: addressOf("10.96.0.10", 53), FilterChains: []*listenerv3.FilterChain{
				{FilterChainMatch: &listenerv3.FilterChainMatch{DestinationPort: wrapperspb.UInt32(53), ServerNames: []string{"dns.example"}},
					Filters: []*listenerv3.Filter{{Name: "example.unknown", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: unknown}}}},
			}},
			&listenerv3.Listener{Name: "0.0.0.0_15090", Address: addressOf("0.0.0.0", 15090), FilterChains: []*listenerv3.FilterChain{
				{Filters: []*listenerv3.Filter{{Name: "envoy.filters.network.http_connection_manager", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: inlineHCM}}}},
			}},
		},
		keyRDS: {
			&routev3.RouteConfiguration{Name: "9080", VirtualHosts: []*routev3.VirtualHost{
				{Name: "reviews.default.svc.cluster.local:9080", Domains: []string{"reviews.default.svc.cluster.local", "reviews", "reviews.default", "10.96.1.1"},
					Routes: []*routev3.Route{
						{Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: "/login"}, QueryParameters: []*routev3.QueryParameterMatcher{{Name: "debug"}}},
							Metadata: istioMeta("/apis/networking.istio.io/v1/namespaces/default/virtual-service/reviews"),
							Action:   &routev3.Route_Redirect{Redirect: &routev3.RedirectAction{HostRedirect: "login.example.com"}}},
						{Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
							Metadata: istioMeta("/apis/networking.istio.io/v1/namespaces/default/virtual-service/reviews"),
							Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_WeightedClusters{WeightedClusters: &routev3.WeightedCluster{Clusters: []*routev3.WeightedCluster_ClusterWeight{
								{Name: "outbound|9080|v1|reviews.default.svc.cluster.local", Weight: wrapperspb.UInt32(2)},
								{Name: "outbound|9080|v2|reviews.default.svc.cluster.local", Weight: wrapperspb.UInt32(1)},
							}}}}}},
					}},
				{Name: "allow_any", Domains: []string{"*"}, Routes: []*routev3.Route{{Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
					Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "PassthroughCluster"}}}}}},
			}},
		},
		keyEDS: {
			&endpointv3.ClusterLoadAssignment{ClusterName: "outbound|9080|v1|reviews.default.svc.cluster.local", Endpoints: []*endpointv3.LocalityLbEndpoints{{
				LbEndpoints: []*endpointv3.LbEndpoint{
					{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: addressOf("10.1.0.2", 9080)}}, HealthStatus: corev3.HealthStatus_DRAINING},
					{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: addressOf("10.1.0.1", 9080)}}, HealthStatus: corev3.HealthStatus_HEALTHY},
				},
			}}},
		},
		keySDS: {
			&tlsv3.Secret{Name: "default", Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
				CertificateChain: &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: certPEM}},
				PrivateKey:       &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: keyPEM}},
			}}},
			&tlsv3.Secret{Name: "ROOTCA", Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
				TrustedCa: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: string(certPEM)}},
			}}},
		},
	}
	body := envoyDump(t, resources)
	// Turn the placeholder into a filter type sextantctl does not know, as
	// a newer server might send.
	body = bytes.ReplaceAll(body, []byte(`{"@type":"type.googleapis.com/envoy.config.core.v3.Locality","region":"placeholder"}`),
		[]byte(`{"@type":"type.googleapis.com/example.UnknownFilter","newField":{"x":1}}`))
	if !bytes.Contains(body, []byte("example.UnknownFilter")) {
		t.Fatal("test setup: the unknown filter type is missing")
	}
	return body, keyPEM
}

// envoyDump builds Envoy's admin ConfigDump JSON, as the server serves it,
// from resources by short type name, normalised by encoding/json (protojson
// varies its spacing).
func envoyDump(t *testing.T, resources map[string][]proto.Message) []byte {
	t.Helper()
	clusters := &adminv3.ClustersConfigDump{VersionInfo: "v1"}
	for _, m := range resources[keyCDS] {
		clusters.DynamicActiveClusters = append(clusters.DynamicActiveClusters, &adminv3.ClustersConfigDump_DynamicCluster{VersionInfo: "v1", Cluster: mustAny(t, m)})
	}
	endpoints := &adminv3.EndpointsConfigDump{}
	for _, m := range resources[keyEDS] {
		endpoints.DynamicEndpointConfigs = append(endpoints.DynamicEndpointConfigs, &adminv3.EndpointsConfigDump_DynamicEndpointConfig{VersionInfo: "v1", EndpointConfig: mustAny(t, m)})
	}
	listeners := &adminv3.ListenersConfigDump{}
	for _, m := range resources[keyLDS] {
		listeners.DynamicListeners = append(listeners.DynamicListeners, &adminv3.ListenersConfigDump_DynamicListener{
			Name: m.(*listenerv3.Listener).GetName(), ActiveState: &adminv3.ListenersConfigDump_DynamicListenerState{VersionInfo: "v1", Listener: mustAny(t, m)}})
	}
	routes := &adminv3.RoutesConfigDump{}
	for _, m := range resources[keyRDS] {
		routes.DynamicRouteConfigs = append(routes.DynamicRouteConfigs, &adminv3.RoutesConfigDump_DynamicRouteConfig{VersionInfo: "v1", RouteConfig: mustAny(t, m)})
	}
	secrets := &adminv3.SecretsConfigDump{}
	for _, m := range resources[keySDS] {
		secrets.DynamicActiveSecrets = append(secrets.DynamicActiveSecrets, &adminv3.SecretsConfigDump_DynamicSecret{Name: m.(*tlsv3.Secret).GetName(), Secret: mustAny(t, m)})
	}
	d := &adminv3.ConfigDump{}
	for _, m := range []proto.Message{&adminv3.BootstrapConfigDump{}, clusters, endpoints, listeners, &adminv3.ScopedRoutesConfigDump{}, routes, secrets} {
		d.Configs = append(d.Configs, mustAny(t, m))
	}
	b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	b, _ = json.Marshal(v)
	return b
}

func TestSummariesOfSidecarConfig(t *testing.T) {
	raw, keyPEM := sidecarDump(t)
	d, err := decodeDump("productpage.default", raw)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{now: func() time.Time { return time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC) }}
	var out bytes.Buffer
	for _, k := range pcKinds() {
		if k.use != "all" {
			continue
		}
		if err := k.run(e, &out, d, &pcOptions{output: outWide}); err != nil {
			t.Fatal(err)
		}
	}
	golden(t, "sidecar-all-wide", out.String())

	// Filters: inbound clusters; a leading part of the host.
	out.Reset()
	if err := writeClusters(&out, filterClusters(d, &filter{direction: "inbound"})); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); !strings.Contains(got, "inbound") || strings.Contains(got, "outbound") || strings.Contains(got, "BlackHole") {
		t.Errorf("--direction inbound:\n%s", got)
	}
	out.Reset()
	if err := writeRoutes(&out, d.routes, &filter{fqdn: "reviews"}, false); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); strings.Contains(got, "allow_any") || !strings.Contains(got, "reviews.default") {
		t.Errorf("route --fqdn reviews:\n%s", got)
	}
	out.Reset()
	if err := writeListeners(&out, filterListeners(d, &filter{port: 15001})); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); strings.Count(got, "\n") != 3 || !strings.Contains(got, "15001") {
		t.Errorf("listener --port 15001:\n%s", got)
	}

	// Secrets: never the private key, in tables or JSON/YAML.
	for _, format := range []string{outJSON, outYAML} {
		out.Reset()
		if err := writeDumpResources(&out, &pcOptions{output: format}, d, []string{keySDS}); err != nil {
			t.Fatal(err)
		}
		got := out.String()
		keyB64, _ := json.Marshal(keyPEM)
		if strings.Contains(got, "PRIVATE KEY") || strings.Contains(got, strings.Trim(string(keyB64), `"`)[:40]) {
			t.Errorf("secret -o %s shows the private key:\n%s", format, got)
		}
		if !strings.Contains(got, "[redacted]") || !strings.Contains(got, "certificate_chain") {
			t.Errorf("secret -o %s:\n%s", format, got)
		}
	}
}

func TestRedactSecret(t *testing.T) {
	for in, want := range map[string]string{
		`{"name":"a","tlsCertificate":{"certificateChain":{"inlineString":"C"},"privateKey":{"inlineString":"K"},"password":{"inlineString":"P"}}}`: `{"name":"a","tlsCertificate":{"certificateChain":{"inlineString":"C"},"password":{"inlineString":"[redacted]"},"privateKey":{"inlineString":"[redacted]"}}}`,
		`{"name":"g","genericSecret":{"secret":{"inlineBytes":"S0VZ"}}}`:                                                                            `{"genericSecret":{"secret":{"inlineString":"[redacted]"}},"name":"g"}`,
		`{"name":"t","sessionTicketKeys":{"keys":[{"inlineBytes":"S0VZ"}]}}`:                                                                        `{"name":"t","sessionTicketKeys":{"keys":[{"inlineString":"[redacted]"}]}}`,
		`{"name":"ca","validationContext":{"trustedCa":{"inlineString":"C"}}}`:                                                                      `{"name":"ca","validationContext":{"trustedCa":{"inlineString":"C"}}}`,
		`{"name":"a","tls_certificate":{"certificate_chain":{"inline_string":"C"},"private_key":{"inline_bytes":"S0VZ"}}}`:                          `{"name":"a","tls_certificate":{"certificate_chain":{"inline_string":"C"},"private_key":{"inline_string":"[redacted]"}}}`,
		`[1]`: `{"error":"unreadable secret, not shown"}`,
	} {
		if got := string(redactSecret(json.RawMessage(in))); got != want {
			t.Errorf("redactSecret(%s)\n got %s\nwant %s", in, got, want)
		}
	}
}

func TestParseClusterName(t *testing.T) {
	for in, want := range map[string]clusterName{
		"outbound|9080|v1|reviews.default.svc.cluster.local": {direction: "outbound", port: 9080, subset: "v1", host: "reviews.default.svc.cluster.local", istio: true},
		"inbound|8080||":     {direction: "inbound", port: 8080, istio: true},
		"BlackHoleCluster":   {host: "BlackHoleCluster"},
		"outbound|x||h":      {host: "outbound|x||h"},
		"sideways|80||h":     {host: "sideways|80||h"},
		"outbound|80|a|b|c":  {host: "outbound|80|a|b|c"},
		"PassthroughCluster": {host: "PassthroughCluster"},
	} {
		if got := parseClusterName(in); got != want {
			t.Errorf("parseClusterName(%q) = %+v, want %+v", in, got, want)
		}
	}
	f := &filter{fqdn: "reviews"}
	for name, want := range map[string]bool{
		"outbound|9080||reviews.default.svc.cluster.local":  true,
		"outbound|9080||reviewsx.default.svc.cluster.local": false,
		"BlackHoleCluster": false,
	} {
		if got := f.cluster(name); got != want {
			t.Errorf("--fqdn reviews on %s: %v, want %v", name, got, want)
		}
	}
}

func TestFormatAge(t *testing.T) {
	for d, want := range map[time.Duration]string{
		-time.Second: "0s", 1500 * time.Millisecond: "1s", 119 * time.Second: "119s", 3 * time.Minute: "3m",
		3 * time.Hour: "3h", 50 * time.Hour: "2d",
	} {
		if got := formatAge(d); got != want {
			t.Errorf("formatAge(%v) = %q, want %q", d, got, want)
		}
	}
}
