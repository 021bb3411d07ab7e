package xds_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/sextant-mesh/sextant/api/debug"
	"github.com/sextant-mesh/sextant/discovery/translate"
	"github.com/sextant-mesh/sextant/discovery/xds"
	"github.com/sextant-mesh/sextant/internal/adsclient"
	"github.com/sextant-mesh/sextant/internal/testenv"
	"github.com/sextant-mesh/sextant/model"
)

// readmeMetrics returns the metric names the README's monitoring table
// lists, with brace lists expanded (sextant_xds_cache_{hits,misses}_total).
func readmeMetrics(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	var row string
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "| `/metrics` |") {
			row = line
		}
	}
	if row == "" {
		t.Fatal("README.md has no `/metrics` row in its monitoring table")
	}
	var names []string
	for _, m := range regexp.MustCompile("`([a-z_{},]+)`").FindAllStringSubmatch(row, -1) {
		name := m[1]
		if !strings.HasPrefix(name, "pilot_") && !strings.HasPrefix(name, "sextant_") {
			continue
		}
		if i := strings.IndexByte(name, '{'); i >= 0 {
			j := strings.IndexByte(name, '}')
			for _, alt := range strings.Split(name[i+1:j], ",") {
				names = append(names, name[:i]+alt+name[j+1:])
			}
			continue
		}
		names = append(names, name)
	}
	if len(names) < 5 {
		t.Fatalf("found only %v in the README's /metrics row", names)
	}
	return names
}

// TestREADMEMetricsExistAtStart: every metric the README lists is exported
// by a server that has done nothing yet, at zero, so dashboards and alerts
// see a series from the start.
func TestREADMEMetricsExistAtStart(t *testing.T) {
	s := xds.New(model.NewAggregator(), xds.Options{})
	mon := httptest.NewServer(s.Handler())
	defer mon.Close()
	resp, err := http.Get(mon.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, name := range readmeMetrics(t) {
		if !strings.Contains(string(body), "\n# TYPE "+name+" ") {
			t.Errorf("README lists %s, but a fresh server does not export it", name)
			continue
		}
		// A series, not just its TYPE line.
		if !regexp.MustCompile(`(?m)^` + name + `(_bucket|_sum|_count)?(\{[^}]*\})? `).Match(body) {
			t.Errorf("%s has no series on a fresh server", name)
		}
	}
	if !regexp.MustCompile(`(?m)^pilot_total_xds_rejects\{type="cds"\} 0$`).Match(body) {
		t.Errorf("pilot_total_xds_rejects{type=\"cds\"} is not 0 at start")
	}
}

func startDebugEnv(t *testing.T) (*testenv.Env, *adsclient.Client) {
	t.Helper()
	dir := t.TempDir()
	testenv.WriteFile(t, filepath.Join(dir, "mesh.yaml"), testenv.ReviewsYAML+"---\n"+testenv.RatingsYAML)
	env := testenv.Start(t, dir, testenv.Options{})
	cc, err := grpc.NewClient(env.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	c, err := adsclient.Start(ctx, cc, adsclient.Node("10.9.0.1", "web", "default", "", map[string]string{"app": "web"}), adsclient.Options{Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 5*time.Second, func() string {
		for _, st := range syncz(t, env) {
			if st.Proxy == "web.default" && st.Types["eds"].Status == xds.StatusSynced && st.Types["rds"].Status == xds.StatusSynced {
				return ""
			}
		}
		return "web.default not synced"
	})
	return env, c
}

func syncz(t *testing.T, env *testenv.Env) []debug.SyncStatus {
	var st []debug.SyncStatus
	env.GetJSON(t, "/debug/syncz", &st)
	return st
}

// TestConfigDumpIsEnvoys: /debug/config_dump is Envoy's admin ConfigDump,
// in istiod's section order, with what the proxy holds.
func TestConfigDumpIsEnvoys(t *testing.T) {
	env, c := startDebugEnv(t)
	body := env.Get(t, "/debug/config_dump?proxyID=web.default")
	var d adminv3.ConfigDump
	if err := protojson.Unmarshal([]byte(body), &d); err != nil {
		t.Fatalf("config_dump is not an Envoy ConfigDump: %v\n%.1000s", err, body)
	}
	if !strings.Contains(body, `"dynamic_active_clusters"`) {
		t.Errorf("config_dump does not use the proto field names as Envoy and istiod do:\n%.500s", body)
	}
	var types []string
	for _, a := range d.Configs {
		types = append(types, strings.TrimPrefix(a.GetTypeUrl(), "type.googleapis.com/envoy.admin.v3."))
	}
	want := "BootstrapConfigDump ClustersConfigDump EndpointsConfigDump ListenersConfigDump ScopedRoutesConfigDump RoutesConfigDump SecretsConfigDump"
	if strings.Join(types, " ") != want {
		t.Errorf("sections %v, want %s", types, want)
	}
	names := func(as []*anypb.Any) map[string]bool {
		out := map[string]bool{}
		for _, a := range as {
			m, err := a.UnmarshalNew()
			if err != nil {
				t.Fatal(err)
			}
			out[adsclient.NameOf(m)] = true
		}
		return out
	}
	var clusters, endpoints, listeners, routes []*anypb.Any
	for _, a := range d.Configs {
		m, err := a.UnmarshalNew()
		if err != nil {
			t.Fatal(err)
		}
		switch s := m.(type) {
		case *adminv3.ClustersConfigDump:
			for _, e := range s.DynamicActiveClusters {
				clusters = append(clusters, e.Cluster)
				if e.VersionInfo == "" || e.LastUpdated == nil {
					t.Errorf("cluster entry without version or time: %v", e)
				}
			}
		case *adminv3.EndpointsConfigDump:
			for _, e := range s.DynamicEndpointConfigs {
				endpoints = append(endpoints, e.EndpointConfig)
			}
		case *adminv3.ListenersConfigDump:
			for _, e := range s.DynamicListeners {
				listeners = append(listeners, e.ActiveState.GetListener())
			}
		case *adminv3.RoutesConfigDump:
			for _, e := range s.DynamicRouteConfigs {
				routes = append(routes, e.RouteConfig)
			}
		}
	}
	for typ, got := range map[string][]*anypb.Any{translate.ClusterType: clusters, translate.EndpointType: endpoints,
		translate.ListenerType: listeners, translate.RouteType: routes} {
		held := c.Resources(typ)
		if len(held) == 0 {
			t.Fatalf("client holds no %s", typ)
		}
		gotNames := names(got)
		for name := range held {
			if !gotNames[name] {
				t.Errorf("%s %s held by the proxy is not in config_dump", typ, name)
			}
		}
		if len(gotNames) != len(held) {
			t.Errorf("%s: config_dump has %d, the proxy holds %d", typ, len(gotNames), len(held))
		}
	}

	resp, err := http.Get(env.Monitor.URL + "/debug/config_dump?proxyID=ghost.default")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown proxy: %s, want 404", resp.Status)
	}
}

// TestRegistryDebugEndpoints: istiod's configz, registryz and endpointz,
// and the index of every debug endpoint.
func TestRegistryDebugEndpoints(t *testing.T) {
	env, _ := startDebugEnv(t)

	var configs []debug.Config
	env.GetJSON(t, "/debug/configz", &configs)
	if len(configs) != 1 || configs[0].Kind != "DestinationRule" || configs[0].APIVersion != "networking.istio.io/v1" ||
		configs[0].Metadata.Name != "reviews" || configs[0].Spec["host"] != "reviews.default.svc.cluster.local" ||
		!strings.Contains(configs[0].Source, "mesh.yaml") {
		t.Errorf("configz: %+v", configs)
	}

	var services []debug.Service
	env.GetJSON(t, "/debug/registryz", &services)
	hosts := map[string]debug.Service{}
	for _, s := range services {
		hosts[s.Hostname] = s
	}
	if r, ok := hosts["ratings.default.svc.cluster.local"]; !ok || len(r.Ports) != 2 || r.Registry != "file" || len(services) != 2 {
		t.Errorf("registryz: %+v", services)
	}

	var eps []debug.ServiceEndpoints
	env.GetJSON(t, "/debug/endpointz", &eps)
	bySvc := map[string]debug.ServiceEndpoints{}
	for _, e := range eps {
		bySvc[e.Service] = e
	}
	rev := bySvc["reviews.default.svc.cluster.local:http"]
	if len(eps) != 3 || len(rev.Endpoints) != 2 || rev.Endpoints[0].Port != 9080 || rev.Endpoints[0].Health != "HEALTHY" {
		t.Errorf("endpointz: %+v", eps)
	}

	var list []debug.Endpoint
	env.GetJSON(t, "/debug/list", &list)
	index := env.Get(t, "/debug/")
	for _, path := range []string{"/debug/syncz", "/debug/config_dump", "/debug/configz", "/debug/registryz", "/debug/endpointz", "/debug/config_errors", "/debug/push_log"} {
		found := false
		for _, e := range list {
			found = found || (e.Path == path && e.Help != "")
		}
		if !found {
			t.Errorf("/debug/list lacks %s: %+v", path, list)
		}
		if !strings.Contains(index, `href="`+path+`"`) {
			t.Errorf("/debug/ index does not link %s:\n%s", path, index)
		}
		// Every listed endpoint answers (config_dump needs a proxy).
		if path != "/debug/config_dump" {
			resp, err := http.Get(env.Monitor.URL + path)
			if err != nil {
				t.Fatal(err)
			}
			var v any
			err = json.NewDecoder(resp.Body).Decode(&v)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || err != nil {
				t.Errorf("GET %s: %s, %v", path, resp.Status, err)
			}
		}
	}
}
