package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"

	"github.com/sextant-mesh/sextant/api/debug"
	"github.com/sextant-mesh/sextant/discovery/translate"
	"github.com/sextant-mesh/sextant/discovery/xds"
	"github.com/sextant-mesh/sextant/internal/adsclient"
	"github.com/sextant-mesh/sextant/internal/testenv"
)

// meshYAML: reviews (one port, two subsets) and ratings (two ports).
const meshYAML = testenv.ReviewsYAML + "---\n" + testenv.RatingsYAML

func dial(t testing.TB, addr string) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

func startClient(t testing.TB, cc *grpc.ClientConn, pod, gen string, o adsclient.Options) *adsclient.Client {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	o.Follow = true
	c, err := adsclient.Start(ctx, cc, adsclient.Node("10.9.0.1", pod, "default", gen, map[string]string{"app": pod}), o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// waitResources waits until the client holds exactly n resources of a type.
func waitResources(t testing.TB, c *adsclient.Client, typeURL string, n int) map[string]*anypb.Any {
	t.Helper()
	var got map[string]*anypb.Any
	testenv.Eventually(t, 5*time.Second, func() string {
		got = c.Resources(typeURL)
		if len(got) != n {
			return fmt.Sprintf("%s: have %d resources, want %d", typeURL, len(got), n)
		}
		return ""
	})
	return got
}

// TestADSWalk walks CDS → EDS and LDS → RDS the way Envoy does, over SotW
// and delta, and checks every referenced name resolves.
func TestADSWalk(t *testing.T) {
	dir := t.TempDir()
	testenv.WriteFile(t, dir+"/mesh.yaml", meshYAML)
	env := testenv.Start(t, dir, testenv.Options{})
	cc := dial(t, env.Addr)
	for _, delta := range []bool{false, true} {
		for _, gen := range []string{"grpc", ""} {
			t.Run(fmt.Sprintf("delta=%v/generator=%q", delta, gen), func(t *testing.T) {
				c := startClient(t, cc, fmt.Sprintf("walk-%v-%s", delta, gen), gen, adsclient.Options{Delta: delta})
				// reviews: 1 port × (default + 2 subsets); ratings: 2 ports.
				wantClusters := 5
				if gen == "" {
					wantClusters += 3 // PassthroughCluster, BlackHoleCluster, InboundPassthroughCluster
				}
				clusters := waitResources(t, c, translate.ClusterType, wantClusters)
				eds := waitResources(t, c, translate.EndpointType, 5)
				for name := range eds {
					if _, ok := clusters[name]; !ok {
						t.Errorf("EDS %s has no cluster", name)
					}
				}
				// Proxyless: a listener and a route per service port.
				// Sidecar: 0.0.0.0_9080 and 0.0.0.0_9090 (RDS "9080",
				// "9090"), virtualOutbound and virtualInbound.
				wantL, wantR := 3, 3
				if gen == "" {
					wantL, wantR = 4, 2
				}
				ls := waitResources(t, c, translate.ListenerType, wantL)
				rs := waitResources(t, c, translate.RouteType, wantR)
				for name, a := range ls {
					l := &listenerv3.Listener{}
					if err := a.UnmarshalTo(l); err != nil {
						t.Fatal(err)
					}
					for _, rn := range adsclient.RouteNames(l) {
						if _, ok := rs[rn]; !ok {
							t.Errorf("listener %s: route config %s missing", name, rn)
						}
					}
				}
				if gen == "" {
					for _, want := range []string{"virtualOutbound", "virtualInbound", "0.0.0.0_9080"} {
						if _, ok := ls[want]; !ok {
							t.Errorf("sidecar lacks listener %s", want)
						}
					}
				}
			})
		}
	}
}

// TestNACK: a rejected response is recorded (metric, syncz with the proxy's
// error) and later versions still go out.
func TestNACK(t *testing.T) {
	dir := t.TempDir()
	testenv.WriteFile(t, dir+"/mesh.yaml", meshYAML)
	env := testenv.Start(t, dir, testenv.Options{})
	cc := dial(t, env.Addr)
	for _, delta := range []bool{false, true} {
		t.Run(fmt.Sprintf("delta=%v", delta), func(t *testing.T) {
			var mu sync.Mutex
			nackCDS := true
			pod := fmt.Sprintf("nacker-%v", delta)
			c := startClient(t, cc, pod, "grpc", adsclient.Options{Delta: delta, Nack: func(typeURL string, _ []*anypb.Any) string {
				mu.Lock()
				defer mu.Unlock()
				if typeURL == translate.ClusterType && nackCDS {
					return "cluster rejected by test"
				}
				return ""
			}})
			testenv.Eventually(t, 5*time.Second, func() string {
				for _, st := range syncz(t, env) {
					if st.Proxy == pod+".default" && st.Types["cds"].Status == "NACK" && st.Types["cds"].LastError == "cluster rejected by test" {
						return ""
					}
				}
				return "cds not reported as NACK with the proxy's error"
			})
			if m := env.Get(t, "/metrics"); !strings.Contains(m, `pilot_total_xds_rejects{type="cds"}`) {
				t.Error("pilot_total_xds_rejects{type=cds} not exported")
			}
			// A later version still goes out and is ACKed.
			mu.Lock()
			nackCDS = false
			mu.Unlock()
			env.WriteFile(t, "extra.yaml", `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: extra-`+pod+`, namespace: default}
spec:
  hosts: [extra-`+pod+`.default.svc.cluster.local]
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  endpoints: [{address: 10.3.0.1}]
`)
			testenv.Eventually(t, 5*time.Second, func() string {
				if _, ok := c.Resources(translate.ClusterType)["outbound|80||extra-"+pod+".default.svc.cluster.local"]; !ok {
					return "new cluster not received after a NACK"
				}
				for _, st := range syncz(t, env) {
					if st.Proxy == pod+".default" && st.Types["cds"].Status == "SYNCED" {
						return ""
					}
				}
				return "cds not SYNCED after the later version was ACKed"
			})
		})
	}
}

func syncz(t testing.TB, env *testenv.Env) []debug.SyncStatus {
	var st []debug.SyncStatus
	env.GetJSON(t, "/debug/syncz", &st)
	return st
}

// TestMalformedNode: a bad node id gets a clear InvalidArgument.
func TestMalformedNode(t *testing.T) {
	env := testenv.Start(t, t.TempDir(), testenv.Options{})
	cc := dial(t, env.Addr)
	stream, err := discoverygrpc.NewAggregatedDiscoveryServiceClient(cc).StreamAggregatedResources(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&discoverygrpc.DiscoveryRequest{TypeUrl: translate.ClusterType, Node: &corev3.Node{Id: "not-istio"}}); err != nil {
		t.Fatal(err)
	}
	_, err = stream.Recv()
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "4") {
		t.Fatalf("want InvalidArgument naming the node id format, got %v", err)
	}
}

// TestEndpointChangeMarshalsOnce: an endpoint change pushed to many proxies
// marshals each changed resource once, and only EDS is sent.
func TestEndpointChangeMarshalsOnce(t *testing.T) {
	dir := t.TempDir()
	testenv.WriteFile(t, dir+"/mesh.yaml", meshYAML)
	env := testenv.Start(t, dir, testenv.Options{})
	cc := dial(t, env.Addr)
	const n = 40
	var clients []*adsclient.Client
	for i := range n {
		c := startClient(t, cc, fmt.Sprintf("p%d", i), "grpc", adsclient.Options{Delta: i%2 == 0})
		clients = append(clients, c)
	}
	for _, c := range clients {
		waitResources(t, c, translate.EndpointType, 5)
	}
	waitSynced(t, env, n)
	before := env.Server.CacheStats().Marshals
	pushesBefore := env.Server.PushLog()
	// Add a v2 endpoint: changes the default and v2 clusters of reviews.
	env.WriteFile(t, "mesh.yaml", strings.Replace(meshYAML, "  - {address: 10.1.0.2, labels: {version: v2}}\n",
		"  - {address: 10.1.0.2, labels: {version: v2}}\n  - {address: 10.1.0.3, labels: {version: v2}}\n", 1))
	for _, c := range clients {
		c := c
		testenv.Eventually(t, 5*time.Second, func() string {
			if cla := c.Resources(translate.EndpointType)["outbound|9080|v2|reviews.default.svc.cluster.local"]; cla == nil || !strings.Contains(string(cla.GetValue()), "10.1.0.3") {
				return "v2 endpoint not received"
			}
			return ""
		})
	}
	waitSynced(t, env, n)
	if got := env.Server.CacheStats().Marshals - before; got != 2 {
		t.Errorf("marshals for an endpoint change pushed to %d proxies = %d, want 2 (one per changed resource)", n, got)
	}
	log := env.Server.PushLog()
	if len(log) != len(pushesBefore)+1 {
		t.Fatalf("want exactly one push for the change, push log grew from %d to %d", len(pushesBefore), len(log))
	}
	last := log[len(log)-1]
	if last.Full || last.Sent != n || last.Resources != 2*n {
		t.Errorf("push: full=%v sent=%d resources=%d; want EDS-only, %d proxies, %d resources", last.Full, last.Sent, last.Resources, n, 2*n)
	}
	testenv.Eventually(t, 5*time.Second, func() string {
		if l := env.Server.PushLog(); l[len(l)-1].Converged == nil {
			return "push not converged"
		}
		return ""
	})
}

// TestConfigChangeReusesUnchangedResources: a config change (a full push)
// rebuilds and re-marshals only the resources whose inputs changed; every
// other lookup is a cache hit, exported as sextant_xds_cache_hit_ratio.
func TestConfigChangeReusesUnchangedResources(t *testing.T) {
	dir := t.TempDir()
	testenv.WriteFile(t, dir+"/mesh.yaml", meshYAML)
	env := testenv.Start(t, dir, testenv.Options{})
	cc := dial(t, env.Addr)
	c := startClient(t, cc, "p", "grpc", adsclient.Options{})
	waitResources(t, c, translate.EndpointType, 5)
	waitSynced(t, env, 1)
	before := env.Server.CacheStats()
	env.WriteFile(t, "more.yaml", testenv.StaticServiceEntry("more", "10.3.0.9"))
	waitResources(t, c, translate.EndpointType, 6)
	waitSynced(t, env, 1)
	after := env.Server.CacheStats()
	// New: the cluster, listener, route and endpoints of "more".
	if got := after.Marshals - before.Marshals; got != 4 {
		t.Errorf("a new service marshalled %d resources, want 4", got)
	}
	// Unchanged: 5 clusters, 3 listeners, 3 routes, 5 endpoint sets.
	if got := after.Hits - before.Hits; got < 16 {
		t.Errorf("cache hits on the full push: %d, want at least the 16 unchanged resources", got)
	}
	if m := env.Get(t, "/metrics"); !strings.Contains(m, "sextant_xds_cache_hit_ratio 0.") {
		t.Errorf("cache hit ratio not exported:\n%s", grep(m, "sextant_xds_cache"))
	}
}

func waitSynced(t testing.TB, env *testenv.Env, n int) {
	t.Helper()
	testenv.Eventually(t, 10*time.Second, func() string {
		st := syncz(t, env)
		if len(st) != n {
			return fmt.Sprintf("%d proxies connected, want %d", len(st), n)
		}
		for _, s := range st {
			for typ, ts := range s.Types {
				if ts.Status != "SYNCED" {
					return fmt.Sprintf("%s %s is %s", s.Proxy, typ, ts.Status)
				}
			}
		}
		return ""
	})
}

// TestResumeSendsNothing: a proxy that reconnects (to this or a restarted
// server) and reports what it holds is sent nothing when nothing changed.
func TestResumeSendsNothing(t *testing.T) {
	dir := t.TempDir()
	testenv.WriteFile(t, dir+"/mesh.yaml", meshYAML)
	env := testenv.Start(t, dir, testenv.Options{})
	cc := dial(t, env.Addr)

	delta := startClient(t, cc, "delta", "grpc", adsclient.Options{Delta: true})
	sotw := startClient(t, cc, "sotw", "grpc", adsclient.Options{})
	for _, c := range []*adsclient.Client{delta, sotw} {
		waitResources(t, c, translate.ClusterType, 5)
		waitResources(t, c, translate.EndpointType, 5)
		waitResources(t, c, translate.RouteType, 3)
	}
	initial := map[string]map[string]string{}
	sotwVersions := map[string]string{}
	for _, typ := range []string{translate.ClusterType, translate.ListenerType} {
		initial[typ] = delta.Versions(typ)
		sotwVersions[typ] = sotw.SotWVersion(typ)
	}
	// A second server process on the same config: versions are content
	// hashes, so they match.
	env2 := testenv.Start(t, dir, testenv.Options{})
	for _, target := range []*testenv.Env{env, env2} {
		cc := dial(t, target.Addr)
		d := startClient(t, cc, "delta-again", "grpc", adsclient.Options{Delta: true, InitialVersions: initial})
		s := startClient(t, cc, "sotw-again", "grpc", adsclient.Options{InitialSotW: sotwVersions})
		// Wait until the server has answered both resumed streams' requests
		// by recording them as in sync (nothing to send), so the checks
		// below cannot pass merely because nothing arrived yet.
		testenv.Eventually(t, 5*time.Second, func() string {
			got := map[string]bool{}
			for _, st := range syncz(t, target) {
				if st.Types["cds"].Status == "SYNCED" && st.Types["lds"].Status == "SYNCED" && st.Types["cds"].NonceSent == "resumed" {
					got[st.Proxy] = true
				}
			}
			if !got["delta-again.default"] || !got["sotw-again.default"] {
				return fmt.Sprintf("resumed proxies not recorded as in sync: %v", got)
			}
			return ""
		})
		for _, c := range []*adsclient.Client{d, s} {
			for _, typ := range []string{translate.ClusterType, translate.ListenerType} {
				if got := len(c.Resources(typ)); got != 0 {
					t.Errorf("resumed client got %d %s resources, want 0", got, typ)
				}
			}
		}
	}
}

// TestAdmissionSheds: beyond the admission rate, new streams wait, then are
// refused with RESOURCE_EXHAUSTED, while connected proxies keep working.
func TestAdmissionSheds(t *testing.T) {
	dir := t.TempDir()
	testenv.WriteFile(t, dir+"/mesh.yaml", meshYAML)
	env := testenv.Start(t, dir, testenv.Options{Server: func(o *xds.Options) {
		o.NewStreamsPerSecond = 1
		o.AdmissionWait = 100 * time.Millisecond
	}})
	cc := dial(t, env.Addr)
	first := startClient(t, cc, "first", "grpc", adsclient.Options{})
	waitResources(t, first, translate.ClusterType, 5)
	var refused int
	for i := range 3 {
		c := startClient(t, cc, fmt.Sprintf("storm-%d", i), "grpc", adsclient.Options{})
		select {
		case <-c.Done():
			if status.Code(c.Err()) == codes.ResourceExhausted {
				refused++
			}
		case <-time.After(2 * time.Second):
		}
	}
	if refused == 0 {
		t.Error("no stream was refused beyond the admission rate")
	}
	if m := env.Get(t, "/metrics"); !strings.Contains(m, `sextant_xds_rejected_streams_total{reason="admission"}`) {
		t.Error("refusals not counted")
	}
	// The admitted proxy still gets pushes.
	env.WriteFile(t, "more.yaml", testenv.StaticServiceEntry("more", "10.3.0.9"))
	waitResources(t, first, translate.ClusterType, 6)
}

// TestRepeatedInitialRequest: a SotW client that sends its initial request
// again (it reset its state) gets everything again, not silence.
func TestRepeatedInitialRequest(t *testing.T) {
	dir := t.TempDir()
	testenv.WriteFile(t, dir+"/mesh.yaml", meshYAML)
	env := testenv.Start(t, dir, testenv.Options{})
	stream, err := discoverygrpc.NewAggregatedDiscoveryServiceClient(dial(t, env.Addr)).StreamAggregatedResources(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	req := &discoverygrpc.DiscoveryRequest{TypeUrl: translate.ClusterType, Node: adsclient.Node("10.9.0.7", "resetter", "default", "", nil)}
	for i := range 2 {
		if err := stream.Send(req); err != nil {
			t.Fatal(err)
		}
		resp, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.GetResources()) != 8 {
			t.Fatalf("request %d: %d clusters, want all 8", i+1, len(resp.GetResources()))
		}
	}
}
