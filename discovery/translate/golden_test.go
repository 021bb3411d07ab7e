package translate

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/sextant-mesh/sextant/discovery/proxy"
	"github.com/sextant-mesh/sextant/internal/meshtest"
	"github.com/sextant-mesh/sextant/model"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

type goldenProxy struct {
	ip, pod, ns, generator string
	labels                 map[string]string
	// istioVersion is sent as ISTIO_VERSION: the proxy runs Istio's Envoy.
	istioVersion string
}

// goldenProxies are the proxies every golden case is translated for.
var goldenProxies = []goldenProxy{
	{"10.0.0.1", "grpc-client", "default", "grpc", map[string]string{"app": "client"}, ""},
	{"10.0.0.1", "sidecar", "default", "", map[string]string{"app": "productpage", "end-user-tier": "gold"}, ""},
	{"10.0.0.1", "other-ns", "team-b", "grpc", map[string]string{"app": "other"}, ""},
	// A sidecar of a workload that serves services: it gets inbound config.
	{"10.1.0.1", "workload", "default", "", map[string]string{"app": "reviews", "version": "v1"}, ""},
}

func testProxy(t testing.TB, pod, ns, generator string, labels map[string]string) *proxy.Proxy {
	return testProxyIP(t, "10.0.0.1", pod, ns, generator, labels)
}

func testProxyIP(t testing.TB, ip, pod, ns, generator string, labels map[string]string) *proxy.Proxy {
	t.Helper()
	return goldenProxy{ip: ip, pod: pod, ns: ns, generator: generator, labels: labels}.parse(t)
}

func (gp goldenProxy) parse(t testing.TB) *proxy.Proxy {
	t.Helper()
	ip, pod, ns, generator, labels := gp.ip, gp.pod, gp.ns, gp.generator, gp.labels
	lf := map[string]any{}
	for k, v := range labels {
		lf[k] = v
	}
	md, err := structpb.NewStruct(map[string]any{"NAMESPACE": ns, "GENERATOR": generator, "LABELS": lf})
	if err != nil {
		t.Fatal(err)
	}
	if generator == "" {
		delete(md.Fields, "GENERATOR")
	}
	if gp.istioVersion != "" {
		md.Fields["ISTIO_VERSION"] = structpb.NewStringValue(gp.istioVersion)
	}
	n := &corev3.Node{Id: "sidecar~" + ip + "~" + pod + "." + ns + "~" + ns + ".svc.cluster.local", Metadata: md}
	if pod == "workload" {
		n.Locality = &corev3.Locality{Region: "us-east", Zone: "us-east-1a"}
	}
	p, err := proxy.Parse(n)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// canonicalJSON renders a message as indented JSON with sorted keys, so
// golden files do not depend on protojson's unstable spacing.
func canonicalJSON(t testing.TB, m proto.Message) any {
	t.Helper()
	b, err := protojson.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// translateAll renders everything the golden proxies get from snap.
func translateAll(t testing.TB, snap *model.Snapshot) map[string]any {
	t.Helper()
	return translateFor(t, snap, goldenProxies)
}

func translateFor(t testing.TB, snap *model.Snapshot, proxies []goldenProxy) map[string]any {
	t.Helper()
	ctx := NewContext(snap, model.DefaultMeshConfig(), NewCache())
	out := map[string]any{}
	for _, gp := range proxies {
		p := gp.parse(t)
		per := map[string]any{}
		var eds []any
		for _, typ := range []string{ClusterType, ListenerType, RouteType} {
			var list []any
			for _, r := range ctx.Resources(p, typ).Resources {
				if v, ok := r.Msg.(interface{ ValidateAll() error }); ok {
					if err := v.ValidateAll(); err != nil {
						t.Errorf("%s %s for %s fails ValidateAll: %v", shortType(typ), r.Name, p.Name, err)
					}
				}
				list = append(list, canonicalJSON(t, r.Msg))
				if cl, ok := r.Msg.(*clusterv3.Cluster); ok && cl.GetType() == clusterv3.Cluster_EDS {
					if e := ctx.Endpoint(p, cl.GetEdsClusterConfig().GetServiceName()); e != nil {
						eds = append(eds, canonicalJSON(t, e.Msg))
					}
				}
			}
			per[shortType(typ)] = list
		}
		per["ClusterLoadAssignment"] = eds
		out[p.Name] = per
	}
	var errs []string
	for _, e := range ctx.Errors() {
		errs = append(errs, e.Error())
	}
	var cfgErrs []string
	for _, e := range snap.Errors {
		cfgErrs = append(cfgErrs, e.Error())
	}
	out["translationErrors"] = errs
	out["configWarnings"] = cfgErrs
	return out
}

func TestGolden(t *testing.T) {
	runGolden(t, "testdata/*.yaml", goldenProxies)
}

// istioProxies run Istio's Envoy (ISTIO_VERSION set), next to a stock Envoy
// in the same workload: testdata/istio-proxy/ shows Istio's own filters and
// the Telemetry API applied to the first, and only stock filters on the
// second.
var istioProxies = []goldenProxy{
	{ip: "10.0.0.1", pod: "istio-sidecar", ns: "default", labels: map[string]string{"app": "productpage"}, istioVersion: "1.28.0"},
	{ip: "10.0.0.2", pod: "stock-envoy", ns: "default", labels: map[string]string{"app": "productpage"}},
	{ip: "10.0.0.3", pod: "istio-other-ns", ns: "team-b", labels: map[string]string{"app": "other"}, istioVersion: "1.28.0"},
}

func TestGoldenIstioProxy(t *testing.T) {
	runGolden(t, "testdata/istio-proxy/*.yaml", istioProxies)
}

func runGolden(t *testing.T, pattern string, proxies []goldenProxy) {
	inputs, err := filepath.Glob(pattern)
	if err != nil {
		t.Fatal(err)
	}
	if len(inputs) == 0 {
		t.Fatalf("no golden inputs %s", pattern)
	}
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".yaml")
		t.Run(name, func(t *testing.T) {
			snap := meshtest.Snapshot(t, in)
			got := translateFor(t, snap, proxies)
			gotJSON, err := json.MarshalIndent(got, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			gotJSON = append(gotJSON, '\n')
			golden := strings.TrimSuffix(in, ".yaml") + ".golden.json"
			if *update {
				if err := os.WriteFile(golden, gotJSON, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./discovery/translate -update)", err)
			}
			if diff := cmp.Diff(string(want), string(gotJSON)); diff != "" {
				t.Errorf("%s differs from golden (-want +got); rerun with -update if intended:\n%s", golden, diff)
			}
		})
	}
}

// Output must not depend on map iteration or build order: translating the
// same snapshot twice, with fresh caches, gives identical bytes.
func TestDeterministic(t *testing.T) {
	inputs, _ := filepath.Glob("testdata/*.yaml")
	for _, in := range inputs {
		snap := meshtest.Snapshot(t, in)
		a, _ := json.Marshal(translateAll(t, snap))
		b, _ := json.Marshal(translateAll(t, meshtest.Snapshot(t, in)))
		if string(a) != string(b) {
			t.Errorf("%s: translation is not deterministic", in)
		}
	}
}
