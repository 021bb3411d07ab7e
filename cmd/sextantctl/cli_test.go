package main

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/sextant-mesh/sextant/api/debug"
	"github.com/sextant-mesh/sextant/internal/buildinfo"
	"github.com/sextant-mesh/sextant/internal/testenv"
)

func TestProxyStatus(t *testing.T) {
	m := startMesh(t)

	golden(t, "proxy-status", mustSucceed(t, ctl(t, m.addr, "proxy-status")))
	for _, p := range []string{"nacker.default", "delta.default"} {
		golden(t, "proxy-status-"+strings.TrimSuffix(p, ".default"), mustSucceed(t, ctl(t, m.addr, "proxy-status", p)))
	}

	// The NACK's error detail and real versions and nonces (masked in the
	// golden files) come from /debug/syncz.
	var syncz []debug.SyncStatus
	m.env.GetJSON(t, "/debug/syncz", &syncz)
	var nacker debug.SyncStatus
	for _, st := range syncz {
		if st.Proxy == "nacker.default" {
			nacker = st
		}
	}
	real := ctlEnv(t, &env{getenv: func(string) string { return "" }, now: time.Now}, m.addr, "ps", "nacker.default")
	out := mustSucceed(t, real)
	for _, want := range []string{
		"cluster outbound|9080|v2|reviews.default.svc.cluster.local: rejected by test",
		nacker.Types["cds"].VersionSent, nacker.Types["lds"].NonceAcked, nacker.ID,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("proxy-status nacker.default does not show %q:\n%s", want, out)
		}
	}
	// Ages: "SYNCED (Ns)" without stable output.
	if out := mustSucceed(t, ctlEnv(t, &env{getenv: func(string) string { return "" }, now: time.Now}, m.addr, "ps")); !strings.Contains(out, "SYNCED (") {
		t.Errorf("proxy-status shows no age:\n%s", out)
	}

	// -o json and -o yaml are /debug/syncz, sorted by proxy.
	var got []debug.SyncStatus
	if err := json.Unmarshal([]byte(mustSucceed(t, ctl(t, m.addr, "proxy-status", "-o", "json"))), &got); err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].Proxy != "delta.default" || got[1].Types["cds"].LastError == "" {
		t.Errorf("proxy-status -o json: %+v", got)
	}
	y := mustSucceed(t, ctl(t, m.addr, "proxy-status", "sotw.default", "-o", "yaml"))
	var one []debug.SyncStatus
	if err := yaml.Unmarshal([]byte(y), &one); err != nil || len(one) != 1 || one[0].Proxy != "sotw.default" {
		t.Errorf("proxy-status sotw.default -o yaml: %v\n%s", err, y)
	}

	mustFail(t, ctl(t, m.addr, "proxy-status", "nobody.default"), `proxy "nobody.default" not found: not connected`, "3 proxies are")
	mustFail(t, ctl(t, m.addr, "proxy-status", "-o", "xml"), `unknown output format "xml"`, "--help")
	mustFail(t, ctl(t, m.addr, "proxy-status", "a", "b"), "at most 1 argument")
}

func TestProxyConfig(t *testing.T) {
	m := startMesh(t)
	for _, c := range []struct {
		name string
		args []string
	}{
		{"pc-cluster-sidecar", []string{"cluster", "sotw.default"}},
		{"pc-cluster-filtered", []string{"cluster", "delta.default", "--fqdn", "reviews", "--subset", "v2"}},
		{"pc-cluster-port", []string{"clusters", "delta.default", "--port", "9090", "--direction", "outbound"}},
		{"pc-listener", []string{"listener", "delta.default"}},
		{"pc-listener-sidecar", []string{"listener", "sotw.default"}},
		{"pc-route-sidecar", []string{"route", "sotw.default", "-o", "wide", "--port", "9080"}},
		{"pc-route", []string{"route", "delta.default"}},
		{"pc-route-wide", []string{"route", "delta.default", "-o", "wide", "--fqdn", "reviews.default"}},
		{"pc-endpoint", []string{"endpoint", "delta.default"}},
		{"pc-endpoint-filtered", []string{"ep", "delta.default", "--fqdn", "reviews", "--subset", "v1"}},
		{"pc-secret", []string{"secret", "delta.default"}},
		{"pc-all", []string{"all", "delta.default"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			golden(t, c.name, mustSucceed(t, ctl(t, m.addr, append([]string{"proxy-config"}, c.args...)...)))
		})
	}

	// The server's dump, read independently of sextantctl's parser: the
	// resources of each section, by short type name.
	serverDump := m.env.Get(t, "/debug/config_dump?proxyID=delta.default")
	byKey := resourcesOfDump(t, []byte(serverDump))
	if len(byKey["cds"]) == 0 || len(byKey["lds"]) == 0 || len(byKey["eds"]) == 0 {
		t.Fatalf("config_dump of delta.default lacks clusters, listeners or endpoints:\n%.2000s", serverDump)
	}

	t.Run("json is what was pushed", func(t *testing.T) {
		for typ, key := range map[string]string{"cluster": "cds", "listener": "lds", "route": "rds", "endpoint": "eds"} {
			out := mustSucceed(t, ctl(t, m.addr, "pc", typ, "delta.default", "-o", "json"))
			var got []json.RawMessage
			if err := json.Unmarshal([]byte(out), &got); err != nil {
				t.Fatalf("%s -o json: %v\n%s", typ, err, out)
			}
			sameJSON(t, typ, got, byKey[key])
		}
		// YAML of everything is Envoy's config dump again, with the same
		// resources.
		out := mustSucceed(t, ctl(t, m.addr, "pc", "all", "delta.default", "-o", "yaml"))
		j, err := yaml.YAMLToJSON([]byte(out))
		if err != nil {
			t.Fatal(err)
		}
		got := resourcesOfDump(t, j)
		for key, want := range byKey {
			sameJSON(t, "all/"+key, got[key], want)
		}
		// Filters apply to JSON output too.
		out = mustSucceed(t, ctl(t, m.addr, "pc", "cluster", "delta.default", "--fqdn", "ratings", "--port", "9090", "-o", "json"))
		var filtered []map[string]any
		if err := json.Unmarshal([]byte(out), &filtered); err != nil || len(filtered) != 1 || filtered[0]["name"] != "outbound|9090||ratings.default.svc.cluster.local" {
			t.Errorf("filtered -o json: %v\n%s", err, out)
		}
		// An empty selection is an empty list, not null.
		out = mustSucceed(t, ctl(t, m.addr, "pc", "cluster", "delta.default", "--fqdn", "nothing", "-o", "json"))
		if strings.TrimSpace(out) != "[]" {
			t.Errorf("empty selection: %q", out)
		}
	})

	t.Run("errors", func(t *testing.T) {
		mustFail(t, ctl(t, m.addr, "pc", "cluster", "ghost.default"), `proxy "ghost.default" not found: not connected`, "proxy-status")
		mustFail(t, ctl(t, m.addr, "pc", "cluster"), "needs a proxy name (<pod>.<namespace>)", "--help")
		mustFail(t, ctl(t, m.addr, "pc"), "needs a resource type")
		mustFail(t, ctl(t, m.addr, "pc", "cluster", "delta.default", "--direction", "sideways"), "--direction")
		mustFail(t, ctl(t, m.addr, "pc", "cluster", "delta.default", "-o", "wide"), `unknown output format "wide"`)
		mustFail(t, ctl(t, m.addr, "pc", "secret", "delta.default", "--fqdn", "x"), "unknown flag: --fqdn")
	})
}

// sameJSON compares two lists of JSON values semantically.
func sameJSON(t *testing.T, what string, got, want []json.RawMessage) {
	t.Helper()
	norm := func(rs []json.RawMessage) []any {
		out := []any{}
		for _, r := range rs {
			var v any
			if err := json.Unmarshal(r, &v); err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			out = append(out, v)
		}
		return out
	}
	if g, w := norm(got), norm(want); !reflect.DeepEqual(g, w) {
		t.Errorf("%s: -o json differs from /debug/config_dump:\ngot  %v\nwant %v", what, g, w)
	}
}

func TestPushLog(t *testing.T) {
	m := startMesh(t)
	mustSucceed(t, ctl(t, m.addr, "push-log")) // empty before any change
	m.env.WriteFile(t, "extra.yaml", `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: extra, namespace: default}
spec:
  hosts: [extra.default.svc.cluster.local]
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  endpoints: [{address: 10.3.0.1}]
`)
	var log []debug.PushRecord
	testenv.Eventually(t, 10*time.Second, func() string {
		log = nil
		m.env.GetJSON(t, "/debug/push_log", &log)
		if len(log) == 0 || log[len(log)-1].Converged == nil {
			return "no converged push yet"
		}
		return ""
	})
	out := mustSucceed(t, ctl(t, m.addr, "push-log"))
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != len(log)+1 {
		t.Fatalf("push-log: %d lines for %d pushes:\n%s", len(lines), len(log), out)
	}
	for _, want := range []string{"ID", "TIME", "TYPE", "REASON", "PROXIES", "RESOURCES", "BYTES", "ACKED IN"} {
		if !strings.Contains(lines[0], want) {
			t.Errorf("push-log header lacks %s: %s", want, lines[0])
		}
	}
	last := strings.Fields(lines[len(lines)-1])
	if last[2] != "FULL" || last[3] != log[len(log)-1].Reason || last[4] != "3" {
		t.Errorf("push-log last row %q, want FULL, reason %q, 3 proxies", last, log[len(log)-1].Reason)
	}
	// Unmasked: the time until every proxy answered.
	raw := mustSucceed(t, ctlEnv(t, &env{getenv: func(string) string { return "" }, now: time.Now}, m.addr, "push-log", "--tail", "1"))
	if rows := strings.Split(strings.TrimSpace(raw), "\n"); len(rows) != 2 || strings.Contains(rows[1], "pending") || strings.Contains(rows[1], "masked") {
		t.Errorf("push-log --tail 1:\n%s", raw)
	}

	var got []debug.PushRecord
	if err := json.Unmarshal([]byte(mustSucceed(t, ctl(t, m.addr, "push-log", "-o", "json"))), &got); err != nil {
		t.Fatal(err)
	}
	if len(got) < len(log) || got[len(log)-1].ID != log[len(log)-1].ID {
		t.Errorf("push-log -o json: %+v, server: %+v", got, log)
	}
}

func TestVersion(t *testing.T) {
	m := startMesh(t)
	out := mustSucceed(t, ctl(t, m.addr, "version"))
	if !strings.Contains(out, "client version: "+buildinfo.Get().String()) || !strings.Contains(out, "instance sextant at "+m.addr) {
		t.Errorf("version:\n%s", out)
	}
	var v versionInfo
	if err := json.Unmarshal([]byte(mustSucceed(t, ctl(t, m.addr, "version", "-o", "json"))), &v); err != nil || v.Server == nil || v.Server.Instance != "sextant" {
		t.Errorf("version -o json: %v %+v", err, v)
	}

	// An unreachable control plane is reported, not an error.
	r := ctl(t, closedAddr(t), "version")
	if r.code != 0 || !strings.Contains(r.stdout, "client version:") || !strings.Contains(r.stderr, "cannot connect") {
		t.Errorf("version without a server: code %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	if out := mustSucceed(t, ctl(t, closedAddr(t), "version", "--client")); strings.Contains(out, "control plane") {
		t.Errorf("version --client contacted the server:\n%s", out)
	}
}

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestUnreachable(t *testing.T) {
	addr := closedAddr(t)
	for _, args := range [][]string{{"proxy-status"}, {"pc", "all", "x.default"}, {"push-log"}} {
		r := ctl(t, addr, args...)
		mustFail(t, r, "cannot connect to the Sextant control plane at "+addr, "(set by --addr)", "--addr host:port or SEXTANT_ADDR")
		if r.stdout != "" {
			t.Errorf("%v printed to stdout on failure: %q", args, r.stdout)
		}
	}
	// The environment variable is used when --addr is not given.
	e := &env{getenv: func(k string) string {
		if k == addrEnv {
			return addr
		}
		return ""
	}, now: time.Now}
	mustFail(t, ctlEnv(t, e, "", "proxy-status"), "at "+addr+" (set by SEXTANT_ADDR)")
	// --addr wins over the environment.
	other := closedAddr(t)
	mustFail(t, ctlEnv(t, e, other, "proxy-status"), "at "+other+" (set by --addr)")
	mustFail(t, ctl(t, "http://[::1", "proxy-status"), "invalid control plane address")
}

func TestAddressDefault(t *testing.T) {
	root := newRootCommand(&env{getenv: func(string) string { return "" }, now: time.Now})
	ps, _, err := root.Find([]string{"proxy-status"})
	if err != nil {
		t.Fatal(err)
	}
	c, err := (&globalFlags{addr: defaultAddr, timeout: time.Second}).client(ps, &env{getenv: func(string) string { return "" }})
	if err != nil {
		t.Fatal(err)
	}
	if c.addr != "localhost:15014" || c.source != "default" || c.base.String() != "http://localhost:15014" {
		t.Errorf("default address: %+v", c)
	}
	for in, want := range map[string]string{":25014": "http://localhost:25014", "https://cp.example:443/": "https://cp.example:443"} {
		c, err := newDebugClient(in, "--addr", time.Second)
		if err != nil || c.base.String() != want {
			t.Errorf("newDebugClient(%q) = %v, %v; want %s", in, c, err, want)
		}
	}
}

func TestAnalyze(t *testing.T) {
	t.Run("example mesh is clean", func(t *testing.T) {
		out := mustSucceed(t, ctl(t, "", "analyze", "../../examples/mesh"))
		golden(t, "analyze-clean", out)
	})

	dir := t.TempDir()
	write := func(name, content string) {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("services.yaml", `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: echo, namespace: default}
spec:
  hosts: [echo.default.svc.cluster.local]
  resolution: STATIC
  ports: [{number: 7070, name: grpc, protocol: GRPC}]
  endpoints: [{address: 127.0.0.1, labels: {version: v1}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: echo, namespace: default}
spec:
  host: echo.default.svc.cluster.local
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
`)
	// A missing subset and a host typo are warnings (Istio's IST0101), as is
	// a subset selecting no endpoint (IST0127), as on the server.
	write("routes/split.yaml", `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: echo, namespace: default}
spec:
  hosts: [echo.default.svc.cluster.local]
  http:
  - route:
    - destination: {host: echo.default.svc.cluster.local, subset: v1}
      weight: 90
    - destination: {host: echo.default.svc.cluster.local, subset: v3}
      weight: 10
    mirror: {host: ehco.default.svc.cluster.local, subset: v1}
`)
	// Hidden and non-config files are skipped, as the server skips them.
	write(".hidden/broken.yaml", "this: [is not valid")
	write("notes.txt", "not config")

	t.Run("warnings only", func(t *testing.T) {
		r := ctl(t, "", "analyze", dir)
		out := mustSucceed(t, r)
		golden(t, "analyze-warnings", strings.ReplaceAll(out, dir, "DIR"))
		mustFail(t, ctl(t, "", "analyze", "--strict", dir), "3 warnings in 2 files (--strict fails on warnings)")
	})

	write("routes/bad.yaml", `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: bad, namespace: default}
spec:
  hosts: [echo.default.svc.cluster.local]
  http:
  - route:
    - destination: {host: echo.default.svc.cluster.local, subset: v1}
      weight: 90
    - destination: {host: echo.default.svc.cluster.local, subset: v1}
      weight: 20
---
apiVersion: example.com/v1
kind: Gadget
metadata: {name: g}
`)
	write("syntax.yml", "apiVersion: v1\nkind: Service\nmetadata: {name: x\n")

	t.Run("errors", func(t *testing.T) {
		r := ctl(t, "", "analyze", dir)
		mustFail(t, r, "errors in 4 files; rejected as a whole: "+filepath.Join(dir, "routes/bad.yaml")+", "+filepath.Join(dir, "syntax.yml"))
		golden(t, "analyze-errors", strings.ReplaceAll(r.stdout, dir, "DIR"))
		for _, want := range []string{
			filepath.Join(dir, "routes/bad.yaml") + ":7:5 (doc 1): VirtualService default/bad: spec.http[0].route",
			"weight",
			filepath.Join(dir, "syntax.yml") + ":",
		} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("analyze output lacks %q:\n%s", want, r.stdout)
			}
		}

		// -o json for scripts: same findings, still a failing exit code.
		r = ctl(t, "", "analyze", "-o", "json", dir)
		if r.code == 0 {
			t.Error("analyze -o json with errors exited 0")
		}
		var a analysis
		if err := json.Unmarshal([]byte(r.stdout), &a); err != nil {
			t.Fatalf("%v\n%s", err, r.stdout)
		}
		if a.Errors == 0 || a.Warnings == 0 || len(a.Files) != 4 || len(a.Rejected) != 2 {
			t.Errorf("analyze -o json: %+v", a)
		}
		for _, is := range a.Issues {
			if is.Location == "" || is.Message == "" || is.Registry != "file" {
				t.Errorf("issue without location or message: %+v", is)
			}
		}
	})

	t.Run("single file and stdin", func(t *testing.T) {
		mustSucceed(t, ctl(t, "", "analyze", filepath.Join(dir, "services.yaml")))
		var out, errOut strings.Builder
		root := newRootCommand(&env{getenv: func(string) string { return "" }, now: time.Now, stable: true})
		root.SetArgs([]string{"analyze", "-"})
		root.SetIn(strings.NewReader("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: x}\nspec: {}\n"))
		root.SetOut(&out)
		root.SetErr(&errOut)
		err := root.Execute()
		if err == nil || !strings.Contains(out.String(), "<stdin>:4:1 (doc 1): DestinationRule default/x: spec.host") {
			t.Errorf("analyze -: err %v\n%s", err, out.String())
		}
	})

	t.Run("bad arguments", func(t *testing.T) {
		mustFail(t, ctl(t, "", "analyze"), "needs at least one directory or file")
		mustFail(t, ctl(t, "", "analyze", filepath.Join(dir, "missing")), "no such file or directory")
		mustFail(t, ctl(t, "", "analyze", t.TempDir()), "no config files")
	})
}

func TestHelp(t *testing.T) {
	out := mustSucceed(t, ctl(t, "", "--help"))
	for _, cmd := range []string{"proxy-status", "proxy-config", "analyze", "version", "push-log", "SEXTANT_ADDR", "--addr"} {
		if !strings.Contains(out, cmd) {
			t.Errorf("sextantctl --help lacks %s", cmd)
		}
	}
	for _, sub := range [][]string{{"proxy-status"}, {"proxy-config", "cluster"}, {"proxy-config", "route"}, {"analyze"}, {"push-log"}, {"version"}} {
		out := mustSucceed(t, ctl(t, "", append(sub, "--help")...))
		if !strings.Contains(out, "Examples:") {
			t.Errorf("%v --help has no examples:\n%s", sub, out)
		}
	}
}

// resourcesOfDump returns the resources of an Envoy config dump (proto
// field names) by short type name.
func resourcesOfDump(t *testing.T, body []byte) map[string][]json.RawMessage {
	t.Helper()
	var d struct {
		Configs []struct {
			Type     string `json:"@type"`
			Clusters []struct {
				Cluster json.RawMessage `json:"cluster"`
			} `json:"dynamic_active_clusters"`
			Endpoints []struct {
				Config json.RawMessage `json:"endpoint_config"`
			} `json:"dynamic_endpoint_configs"`
			Listeners []struct {
				Active struct {
					Listener json.RawMessage `json:"listener"`
				} `json:"active_state"`
			} `json:"dynamic_listeners"`
			Routes []struct {
				Config json.RawMessage `json:"route_config"`
			} `json:"dynamic_route_configs"`
			Secrets []struct {
				Secret json.RawMessage `json:"secret"`
			} `json:"dynamic_active_secrets"`
		} `json:"configs"`
	}
	if err := json.Unmarshal(body, &d); err != nil {
		t.Fatalf("not a config dump: %v\n%.500s", err, body)
	}
	out := map[string][]json.RawMessage{}
	for _, c := range d.Configs {
		for _, x := range c.Clusters {
			out["cds"] = append(out["cds"], x.Cluster)
		}
		for _, x := range c.Endpoints {
			out["eds"] = append(out["eds"], x.Config)
		}
		for _, x := range c.Listeners {
			out["lds"] = append(out["lds"], x.Active.Listener)
		}
		for _, x := range c.Routes {
			out["rds"] = append(out["rds"], x.Config)
		}
		for _, x := range c.Secrets {
			out["sds"] = append(out["sds"], x.Secret)
		}
	}
	return out
}
