package translate

import (
	"slices"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxy "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	upstreamhttp "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/sextant-mesh/sextant/internal/meshtest"
	"github.com/sextant-mesh/sextant/model"
)

// Item-by-item checks of the output istiod also produces (docs/istio-parity.md).

func validate(t *testing.T, r *Resource) {
	t.Helper()
	if v, ok := r.Msg.(interface{ ValidateAll() error }); ok {
		if err := v.ValidateAll(); err != nil {
			t.Errorf("%s fails ValidateAll: %v", r.Name, err)
		}
	}
}

// The 0.0.0.0_<port> HTTP listener sniffs: plaintext HTTP/1.1 and h2c go to
// the HCM, everything else to PassthroughCluster, or BlackHoleCluster with
// REGISTRY_ONLY.
func TestHTTPOutboundListenerFallthrough(t *testing.T) {
	snap := meshtest.Snapshot(t, "testdata/bookinfo.yaml")
	for _, registryOnly := range []bool{false, true} {
		mesh := model.DefaultMeshConfig()
		mesh.OutboundRegistryOnly = registryOnly
		ctx := NewContext(snap, mesh, NewCache())
		p := testProxy(t, "sidecar", "default", "", map[string]string{"app": "productpage"})
		r := ctx.Resources(p, ListenerType).Get("0.0.0.0_9080")
		if r == nil {
			t.Fatal("no listener 0.0.0.0_9080")
		}
		validate(t, r)
		l := r.Msg.(*listenerv3.Listener)
		var names []string
		for _, f := range l.GetListenerFilters() {
			names = append(names, f.GetName())
		}
		if want := []string{"envoy.filters.listener.tls_inspector", "envoy.filters.listener.http_inspector"}; !slices.Equal(names, want) {
			t.Errorf("listener filters = %v, want %v", names, want)
		}
		if len(l.GetFilterChains()) != 1 {
			t.Fatalf("want one HTTP chain, got %d", len(l.GetFilterChains()))
		}
		m := l.GetFilterChains()[0].GetFilterChainMatch()
		if m.GetTransportProtocol() != "raw_buffer" || !slices.Equal(m.GetApplicationProtocols(), []string{"http/1.1", "h2c"}) {
			t.Errorf("HTTP chain match = %v", m)
		}
		if l.GetFilterChains()[0].GetFilters()[0].GetName() != "envoy.filters.network.http_connection_manager" {
			t.Errorf("HTTP chain does not hold the HCM")
		}
		def := l.GetDefaultFilterChain()
		if def.GetName() != "PassthroughFilterChain" {
			t.Errorf("default chain name = %q", def.GetName())
		}
		tp := &tcpproxy.TcpProxy{}
		if err := def.GetFilters()[0].GetTypedConfig().UnmarshalTo(tp); err != nil {
			t.Fatal(err)
		}
		want := PassthroughCluster
		if registryOnly {
			want = BlackHoleCluster
		}
		if tp.GetCluster() != want {
			t.Errorf("registryOnly=%v: fallthrough goes to %q, want %q", registryOnly, tp.GetCluster(), want)
		}
	}
}

func TestDomainsFor(t *testing.T) {
	svc := &model.Service{Hostname: "reviews.default.svc.cluster.local", Namespace: "default", Addresses: []string{"10.96.0.20", "fd00::20", "10.0.0.0/24"}}
	ext := &model.Service{Hostname: "api.example.com", Namespace: "default"}
	cases := []struct {
		name     string
		svc      *model.Service
		ns       string
		withPort bool
		want     []string
	}{
		{"sidecar same namespace", svc, "default", false, []string{
			"reviews.default.svc.cluster.local", "reviews.default.svc.cluster.local.",
			"reviews", "reviews.default.svc", "reviews.default", "10.96.0.20", "[fd00::20]"}},
		{"sidecar other namespace", svc, "team-b", false, []string{
			"reviews.default.svc.cluster.local", "reviews.default.svc.cluster.local.",
			"reviews.default", "reviews.default.svc", "10.96.0.20", "[fd00::20]"}},
		{"proxyless same namespace", svc, "default", true, []string{
			"reviews.default.svc.cluster.local", "reviews.default.svc.cluster.local:9080",
			"reviews.default.svc.cluster.local.", "reviews.default.svc.cluster.local.:9080",
			"reviews", "reviews:9080", "reviews.default.svc", "reviews.default.svc:9080",
			"reviews.default", "reviews.default:9080",
			"10.96.0.20", "10.96.0.20:9080", "[fd00::20]", "[fd00::20]:9080"}},
		{"external host", ext, "default", false, []string{"api.example.com", "api.example.com."}},
	}
	for _, tc := range cases {
		if got := domainsFor(tc.svc, 9080, tc.ns, tc.withPort); !slices.Equal(got, tc.want) {
			t.Errorf("%s:\n got %q\nwant %q", tc.name, got, tc.want)
		}
	}
}

// Sidecar outbound route configs ignore the port in host matching, so
// their domains carry none.
func TestSidecarRouteIgnoresPort(t *testing.T) {
	snap := meshtest.Snapshot(t, "testdata/bookinfo.yaml")
	ctx := NewContext(snap, model.DefaultMeshConfig(), NewCache())
	p := testProxy(t, "sidecar", "default", "", map[string]string{"app": "productpage"})
	r := ctx.Resources(p, RouteType).Get("9080")
	if r == nil {
		t.Fatal("no route 9080")
	}
	validate(t, r)
	rc := r.Msg.(*routev3.RouteConfiguration)
	if !rc.GetIgnorePortInHostMatching() {
		t.Error("ignore_port_in_host_matching is not set")
	}
	for _, vh := range rc.GetVirtualHosts() {
		if slices.Contains(vh.GetDomains(), "reviews.default.svc.cluster.local:9080") {
			t.Errorf("virtual host %s lists a domain with a port", vh.GetName())
		}
		if vh.GetName() == "reviews.default.svc.cluster.local:9080" && !slices.Contains(vh.GetDomains(), "reviews.default.svc.cluster.local.") {
			t.Errorf("virtual host %s lacks the trailing-dot FQDN: %v", vh.GetName(), vh.GetDomains())
		}
	}
}

// A proxyless client's listener host:port fetches RDS outbound|port||host,
// whose one virtual host carries the default retry policy.
func TestGRPCRouteNaming(t *testing.T) {
	snap := meshtest.Snapshot(t, "testdata/bookinfo.yaml")
	ctx := NewContext(snap, model.DefaultMeshConfig(), NewCache())
	p := testProxy(t, "grpc-client", "default", "grpc", map[string]string{"app": "client"})
	const host = "details.default.svc.cluster.local"
	l := ctx.Resources(p, ListenerType).Get(GRPCListenerName(host, 9080))
	if l == nil {
		t.Fatal("no listener")
	}
	hcm := &hcmv3.HttpConnectionManager{}
	if err := l.Msg.(*listenerv3.Listener).GetApiListener().GetApiListener().UnmarshalTo(hcm); err != nil {
		t.Fatal(err)
	}
	want := "outbound|9080||" + host
	if got := hcm.GetRds().GetRouteConfigName(); got != want || GRPCRouteName(host, 9080) != want {
		t.Errorf("listener's RDS name = %q, want %q", got, want)
	}
	r := ctx.Resources(p, RouteType).Get(want)
	if r == nil {
		t.Fatalf("no route %s", want)
	}
	validate(t, r)
	rc := r.Msg.(*routev3.RouteConfiguration)
	if len(rc.GetVirtualHosts()) != 1 || rc.GetVirtualHosts()[0].GetName() != host+":9080" {
		t.Fatalf("want one virtual host %s:9080, got %v", host, rc.GetVirtualHosts())
	}
	vh := rc.GetVirtualHosts()[0]
	for _, d := range []string{host + ":9080", host + ".:9080", "details:9080", "details.default:9080"} {
		if !slices.Contains(vh.GetDomains(), d) {
			t.Errorf("domains %v lack %s", vh.GetDomains(), d)
		}
	}
	rp := vh.GetRoutes()[0].GetRoute().GetRetryPolicy()
	if rp.GetRetryOn() != "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes" || rp.GetNumRetries().GetValue() != 2 {
		t.Errorf("default route retry policy = %v, want istiod's default", rp)
	}
}

// PassthroughCluster and InboundPassthroughCluster forward HTTP in the
// protocol it arrived in.
func TestPassthroughClustersUseDownstreamProtocol(t *testing.T) {
	snap := meshtest.Snapshot(t, "testdata/bookinfo.yaml")
	ctx := NewContext(snap, model.DefaultMeshConfig(), NewCache())
	p := testProxyIP(t, "10.1.0.1", "workload", "default", "", map[string]string{"app": "reviews", "version": "v1"})
	for _, name := range []string{PassthroughCluster, InboundPassthroughCluster} {
		r := ctx.Resources(p, ClusterType).Get(name)
		if r == nil {
			t.Fatalf("no cluster %s", name)
		}
		validate(t, r)
		opts := &upstreamhttp.HttpProtocolOptions{}
		a := r.Msg.(*clusterv3.Cluster).GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
		if a == nil {
			t.Fatalf("%s has no HttpProtocolOptions", name)
		}
		if err := a.UnmarshalTo(opts); err != nil {
			t.Fatal(err)
		}
		if opts.GetUseDownstreamProtocolConfig().GetHttp2ProtocolOptions() == nil {
			t.Errorf("%s does not use the downstream protocol: %v", name, opts)
		}
	}
}

// A VirtualService retry policy is istiod's default with its settings on
// top (retry.ConvertPolicy).
func TestRetryPolicyConvertsLikeIstiod(t *testing.T) {
	r := &networking.HTTPRetry{
		Attempts:                 3,
		RetryOn:                  "gateway-error,503, reset",
		PerTryTimeout:            durationpb.New(time.Second),
		RetryRemoteLocalities:    wrapperspb.Bool(true),
		RetryIgnorePreviousHosts: wrapperspb.Bool(false),
		Backoff:                  durationpb.New(50 * time.Millisecond),
	}
	rp := retryPolicy(r, false)
	if err := rp.ValidateAll(); err != nil {
		t.Fatal(err)
	}
	if rp.GetRetryOn() != "gateway-error,reset,retriable-status-codes" || !slices.Equal(rp.GetRetriableStatusCodes(), []uint32{503}) {
		t.Errorf("retry_on %q, codes %v", rp.GetRetryOn(), rp.GetRetriableStatusCodes())
	}
	if rp.GetNumRetries().GetValue() != 3 || rp.GetPerTryTimeout().AsDuration() != time.Second || rp.GetHostSelectionRetryMaxAttempts() != 5 {
		t.Errorf("attempts/per-try/host selection wrong: %v", rp)
	}
	if len(rp.GetRetryHostPredicate()) != 0 {
		t.Error("retryIgnorePreviousHosts: false must drop the previous_hosts predicate")
	}
	if rp.GetRetryPriority().GetName() != "envoy.retry_priorities.previous_priorities" || rp.GetRetryBackOff().GetBaseInterval().AsDuration() != 50*time.Millisecond {
		t.Errorf("remote localities / backoff not applied: %v", rp)
	}
	if retryPolicy(&networking.HTTPRetry{Attempts: 0}, false) != nil {
		t.Error("attempts 0 must disable retries")
	}
	if got := retryPolicy(&networking.HTTPRetry{Attempts: 2}, false); len(got.GetRetryHostPredicate()) != 1 || got.GetRetryOn() != defaultRetryPolicy().GetRetryOn() {
		t.Errorf("attempts only must keep the default policy: %v", got)
	}
}

// Inbound HCMs of Istio's Envoy carry istiod's server-side filters around
// the workload's access control (so istio_requests_total is also reported
// by the destination); a stock Envoy gets access control and stock filters.
func TestInboundHTTPFiltersOrder(t *testing.T) {
	authz := []*hcmv3.HttpFilter{{Name: "envoy.filters.http.rbac"}}
	names := func(fs []*hcmv3.HttpFilter) string {
		var out []string
		for _, f := range fs {
			out = append(out, f.GetName())
		}
		return strings.Join(out, ",")
	}
	tc := telemetryConfig{metrics: true}
	for _, tt := range []struct {
		istio, grpc bool
		want        string
	}{
		{true, true, MetadataExchangeFilter + ",envoy.filters.http.rbac," + GrpcStatsFilter + ",envoy.filters.http.cors,envoy.filters.http.fault," + StatsFilter + ",envoy.filters.http.router"},
		{true, false, MetadataExchangeFilter + ",envoy.filters.http.rbac,envoy.filters.http.cors,envoy.filters.http.fault," + StatsFilter + ",envoy.filters.http.router"},
		{false, true, "envoy.filters.http.rbac,envoy.filters.http.cors,envoy.filters.http.fault,envoy.filters.http.router"},
	} {
		if got := names(inboundHTTPFilters(tt.istio, tt.grpc, tc, authz)); got != tt.want {
			t.Errorf("istio=%v grpc=%v:\n got %s\nwant %s", tt.istio, tt.grpc, got, tt.want)
		}
	}
}

// TCP chains of Istio's Envoy count istio_tcp_* metrics: the stats filter
// stands before every tcp_proxy that reaches a destination, never before
// the BlackHoleCluster loop guard; other Envoys are unchanged.
func TestTCPStatsOnIstioProxies(t *testing.T) {
	tc := telemetryConfig{metrics: true}
	count := func(l *listenerv3.Listener) (stats, blackholeGuarded int) {
		for _, fc := range append(l.GetFilterChains(), l.GetDefaultFilterChain()) {
			fs := fc.GetFilters()
			for i, f := range fs {
				if f.GetName() == StatsFilter {
					stats++
					if i+1 >= len(fs) || fs[i+1].GetName() != "envoy.filters.network.tcp_proxy" {
						t.Errorf("chain %s: stats filter not right before tcp_proxy", fc.GetName())
					}
				}
			}
			if fc.GetName() == "virtualOutbound-blackhole" && len(fs) != 1 {
				blackholeGuarded++
			}
		}
		return
	}
	if s, bh := count(withTCPStats(virtualOutboundListener(model.MeshConfig{}), true, tc)); s != 1 || bh != 0 {
		t.Errorf("Istio proxy virtualOutbound: %d stats filters (want 1, on the passthrough chain), blackhole chain changed: %v", s, bh != 0)
	}
	if s, _ := count(withTCPStats(virtualOutboundListener(model.MeshConfig{}), false, tc)); s != 0 {
		t.Errorf("stock Envoy got %d Istio stats filters", s)
	}
}
