package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/sextant-mesh/sextant/api/debug"
	"github.com/sextant-mesh/sextant/discovery/translate"
	"github.com/sextant-mesh/sextant/internal/adsclient"
	"github.com/sextant-mesh/sextant/internal/testenv"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// meshYAML is the mesh the CLI tests run against: a service with two
// subsets and a weighted VirtualService, and a second service on two ports.
const meshYAML = testenv.ReviewsYAML + `---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews.default.svc.cluster.local]
  http:
  - name: jason
    match:
    - headers: {end-user: {exact: jason}}
    route:
    - destination: {host: reviews.default.svc.cluster.local, subset: v2}
  - route:
    - destination: {host: reviews.default.svc.cluster.local, subset: v1}
      weight: 75
    - destination: {host: reviews.default.svc.cluster.local, subset: v2}
      weight: 25
---
` + testenv.RatingsYAML

// mesh is a running Sextant with three connected proxies:
//   - sotw.default: an Envoy sidecar on a state-of-the-world stream,
//   - delta.default: a proxyless gRPC client on a delta stream,
//   - nacker.default: a proxyless gRPC client that rejects every CDS response.
type mesh struct {
	env  *testenv.Env
	addr string // monitoring host:port
}

// startMesh starts a Sextant with the three proxies and waits until their
// state settles. Tests get their own server when they change config.
func startMesh(t *testing.T) *mesh {
	t.Helper()
	dir := t.TempDir()
	testenv.WriteFile(t, filepath.Join(dir, "mesh.yaml"), meshYAML)
	env := testenv.Start(t, dir, testenv.Options{})
	cc, err := grpc.NewClient(env.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	connect := func(pod, gen string, o adsclient.Options) {
		o.Follow = true
		if _, err := adsclient.Start(ctx, cc, adsclient.Node("10.9.0.1", pod, "default", gen, map[string]string{"app": pod}), o); err != nil {
			t.Fatal(err)
		}
	}
	connect("sotw", "", adsclient.Options{})
	connect("delta", "grpc", adsclient.Options{Delta: true})
	connect("nacker", "grpc", adsclient.Options{Nack: func(typeURL string, _ []*anypb.Any) string {
		if typeURL == translate.ClusterType {
			return "cluster outbound|9080|v2|reviews.default.svc.cluster.local: rejected by test"
		}
		return ""
	}})
	u, err := url.Parse(env.Monitor.URL)
	if err != nil {
		t.Fatal(err)
	}
	m := &mesh{env: env, addr: u.Host}
	testenv.Eventually(t, 10*time.Second, func() string {
		var all []debug.SyncStatus
		env.GetJSON(t, "/debug/syncz", &all)
		want := map[string]map[string]string{
			"sotw.default":   {"cds": "SYNCED", "eds": "SYNCED"},
			"delta.default":  {"cds": "SYNCED", "eds": "SYNCED", "lds": "SYNCED", "rds": "SYNCED"},
			"nacker.default": {"cds": "NACK", "lds": "SYNCED", "rds": "SYNCED"},
		}
		if len(all) != len(want) {
			return fmt.Sprintf("%d proxies connected, want %d", len(all), len(want))
		}
		for _, st := range all {
			for typ, status := range want[st.Proxy] {
				if got := st.Types[typ].Status; got != status {
					return fmt.Sprintf("%s %s is %q, want %q", st.Proxy, typ, got, status)
				}
			}
			for typ, ts := range st.Types {
				if ts.Status == "STALE" {
					return fmt.Sprintf("%s %s is STALE", st.Proxy, typ)
				}
			}
		}
		return ""
	})
	return m
}

// result is one sextantctl run.
type result struct {
	code           int
	stdout, stderr string
}

// ctl runs sextantctl in-process with stable output against addr (if not
// empty) and returns what it printed.
func ctl(t *testing.T, addr string, args ...string) result {
	t.Helper()
	return ctlEnv(t, &env{getenv: func(string) string { return "" }, now: time.Now, stable: true}, addr, args...)
}

func ctlEnv(t *testing.T, e *env, addr string, args ...string) result {
	t.Helper()
	if addr != "" {
		args = append([]string{"--addr", addr}, args...)
	}
	var out, errOut bytes.Buffer
	code := run(context.Background(), args, &out, &errOut, e)
	return result{code: code, stdout: out.String(), stderr: errOut.String()}
}

// golden compares got with testdata/<name>.golden, rewriting it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if string(want) != got {
		t.Errorf("%s differs from %s (run go test -update if the change is intended)\n--- got:\n%s\n--- want:\n%s", name, path, got, want)
	}
}

func mustSucceed(t *testing.T, r result) string {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("exit code %d, stderr:\n%s\nstdout:\n%s", r.code, r.stderr, r.stdout)
	}
	if r.stderr != "" {
		t.Errorf("unexpected stderr:\n%s", r.stderr)
	}
	return r.stdout
}

func mustFail(t *testing.T, r result, wantStderr ...string) {
	t.Helper()
	if r.code == 0 {
		t.Fatalf("exit code 0, want non-zero; stdout:\n%s", r.stdout)
	}
	for _, w := range wantStderr {
		if !strings.Contains(r.stderr, w) {
			t.Errorf("stderr does not mention %q:\n%s", w, r.stderr)
		}
	}
}
