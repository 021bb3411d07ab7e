package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/anypb"

	"github.com/sextant-mesh/sextant/discovery/translate"
	"github.com/sextant-mesh/sextant/internal/adsclient"
	"github.com/sextant-mesh/sextant/internal/testenv"
)

// The CLI tests run the real sextantctl binary, so exit codes, stdout and
// stderr are what a user or a script sees. The command logic itself is
// tested in-process in cmd/sextantctl.

// sextantctl builds the binary into the test's temporary directory (the
// build cache makes repeated builds cheap).
func sextantctl(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sextantctl")
	out, err := exec.Command("go", "build", "-o", path, "github.com/sextant-mesh/sextant/cmd/sextantctl").CombinedOutput()
	if err != nil {
		t.Fatalf("go build sextantctl: %v\n%s", err, out)
	}
	return path
}

type ctlRun struct {
	code           int
	stdout, stderr string
}

// runCtl runs the sextantctl binary at bin with args and extra environment
// variables.
func runCtl(t *testing.T, bin string, env []string, args ...string) ctlRun {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	r := ctlRun{stdout: out.String(), stderr: errOut.String()}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		r.code = exit.ExitCode()
	case err != nil:
		t.Fatalf("run sextantctl %v: %v", args, err)
	}
	return r
}

func monitorAddr(t *testing.T, env *testenv.Env) string {
	t.Helper()
	u, err := url.Parse(env.Monitor.URL)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

// TestCLIAgainstServer: proxy-status and proxy-config against a server with
// a SotW proxy, a delta proxy and one that NACKs CDS.
func TestCLIAgainstServer(t *testing.T) {
	bin := sextantctl(t)
	dir := t.TempDir()
	testenv.WriteFile(t, dir+"/mesh.yaml", meshYAML)
	env := testenv.Start(t, dir, testenv.Options{})
	cc := dial(t, env.Addr)
	startClient(t, cc, "cli-sotw", "", adsclient.Options{})
	startClient(t, cc, "cli-delta", "grpc", adsclient.Options{Delta: true})
	startClient(t, cc, "cli-nacker", "grpc", adsclient.Options{Nack: func(typeURL string, _ []*anypb.Any) string {
		if typeURL == translate.ClusterType {
			return "cluster rejected by test"
		}
		return ""
	}})
	testenv.Eventually(t, 10*time.Second, func() string {
		for _, st := range syncz(t, env) {
			if st.Proxy == "cli-nacker.default" && st.Types["cds"].Status == "NACK" {
				return ""
			}
		}
		return "cli-nacker not NACKing yet"
	})
	addr := monitorAddr(t, env)
	ps := runCtl(t, bin, nil, "--addr", addr, "proxy-status")
	if ps.code != 0 || ps.stderr != "" {
		t.Fatalf("proxy-status: exit %d\n%s", ps.code, ps.stderr)
	}
	lines := strings.Split(strings.TrimSpace(ps.stdout), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "NAME") {
		t.Fatalf("proxy-status table:\n%s", ps.stdout)
	}
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		if strings.HasPrefix(l, "cli-nacker.default") && f[2] != "NACK" {
			t.Errorf("nacker's CDS cell is %q, want NACK: %s", f[2], l)
		}
		if strings.HasPrefix(l, "cli-delta.default") && f[2] != "SYNCED" {
			t.Errorf("delta proxy's CDS cell is %q, want SYNCED: %s", f[2], l)
		}
	}

	// SEXTANT_ADDR instead of --addr; the detail view shows the NACK.
	one := runCtl(t, bin, []string{"SEXTANT_ADDR=" + addr}, "proxy-status", "cli-nacker.default")
	if one.code != 0 || !strings.Contains(one.stdout, "cluster rejected by test") {
		t.Errorf("proxy-status cli-nacker.default: exit %d\n%s%s", one.code, one.stdout, one.stderr)
	}

	// -o json is what the server pushed.
	pc := runCtl(t, bin, nil, "--addr", addr, "proxy-config", "cluster", "cli-delta.default", "-o", "json")
	var clusters []map[string]any
	if err := json.Unmarshal([]byte(pc.stdout), &clusters); err != nil || pc.code != 0 {
		t.Fatalf("proxy-config cluster -o json: exit %d, %v\n%s", pc.code, err, pc.stderr)
	}
	// /debug/config_dump is Envoy's admin ConfigDump, as istiod serves it.
	var dump struct {
		Configs []struct {
			Type     string            `json:"@type"`
			Clusters []json.RawMessage `json:"dynamic_active_clusters"`
		} `json:"configs"`
	}
	env.GetJSON(t, "/debug/config_dump?proxyID=cli-delta.default", &dump)
	var dumped int
	for _, c := range dump.Configs {
		if c.Type == "type.googleapis.com/envoy.admin.v3.ClustersConfigDump" {
			dumped += len(c.Clusters)
		}
	}
	if len(clusters) != dumped || len(clusters) == 0 {
		t.Errorf("proxy-config cluster -o json: %d clusters, config_dump has %d", len(clusters), dumped)
	}

	// An unknown proxy fails with a non-zero exit code and says why.
	miss := runCtl(t, bin, nil, "--addr", addr, "proxy-config", "route", "ghost.default")
	if miss.code == 0 || !strings.Contains(miss.stderr, `proxy "ghost.default" not found: not connected`) || miss.stdout != "" {
		t.Errorf("unknown proxy: exit %d\nstdout: %s\nstderr: %s", miss.code, miss.stdout, miss.stderr)
	}
}

// TestCLIUnreachable: a clear error on stderr and a non-zero exit code.
func TestCLIUnreachable(t *testing.T) {
	bin := sextantctl(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	for _, args := range [][]string{{"--addr", addr, "proxy-status"}, {"push-log"}} {
		r := runCtl(t, bin, []string{"SEXTANT_ADDR=" + addr}, args...)
		if r.code != 1 || r.stdout != "" {
			t.Errorf("%v: exit %d, stdout %q", args, r.code, r.stdout)
		}
		for _, want := range []string{"cannot connect to the Sextant control plane at " + addr, "SEXTANT_ADDR"} {
			if !strings.Contains(r.stderr, want) {
				t.Errorf("%v: stderr lacks %q:\n%s", args, want, r.stderr)
			}
		}
	}
	// version still works without a server.
	if r := runCtl(t, bin, nil, "--addr", addr, "version"); r.code != 0 || !strings.Contains(r.stdout, "client version:") {
		t.Errorf("version without a server: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// TestCLIAnalyzeExitCode: 0 for the sample mesh, 1 with findings for a
// broken file.
func TestCLIAnalyzeExitCode(t *testing.T) {
	bin := sextantctl(t)
	if r := runCtl(t, bin, nil, "analyze", "../../examples/mesh"); r.code != 0 {
		t.Errorf("analyze examples/mesh: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	dir := t.TempDir()
	bad := filepath.Join(dir, "split.yaml")
	testenv.WriteFile(t, bad, `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: echo, namespace: default}
spec:
  hosts: [echo.default.svc.cluster.local]
  http:
  - route:
    - destination: {host: echo.default.svc.cluster.local}
      weight: 60
    - destination: {host: echo.default.svc.cluster.local}
      weight: 60
`)
	r := runCtl(t, bin, nil, "analyze", dir)
	if r.code != 1 {
		t.Errorf("analyze broken: exit %d, want 1", r.code)
	}
	if want := bad + ":7:5 (doc 1): VirtualService default/echo: spec.http[0].route"; !strings.Contains(r.stdout, want) {
		t.Errorf("analyze output lacks %q:\n%s", want, r.stdout)
	}
	if !strings.Contains(r.stderr, "1 error in 1 file") {
		t.Errorf("analyze stderr:\n%s", r.stderr)
	}
}
