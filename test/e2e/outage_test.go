package e2e

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sextant-mesh/sextant/api/debug"
	"github.com/sextant-mesh/sextant/discovery/translate"
	"github.com/sextant-mesh/sextant/internal/adsclient"
	"github.com/sextant-mesh/sextant/internal/testenv"
)

// extraYAML is a second file next to meshYAML: one more service, one more
// cluster (meshYAML gives a proxyless client 5).
const extraYAML = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: extra, namespace: default}
spec:
  hosts: [extra.default.svc.cluster.local]
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  endpoints: [{address: 10.3.0.1}]
`

const extraHost = "extra.default.svc.cluster.local"

// outageEnv serves meshYAML and extraYAML (in sub/ when sub is set) to one
// proxyless client and waits until it is synced.
func outageEnv(t *testing.T, sub bool) (*testenv.Env, *adsclient.Client, string) {
	t.Helper()
	dir := t.TempDir()
	extra := filepath.Join(dir, "extra.yaml")
	if sub {
		if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
			t.Fatal(err)
		}
		extra = filepath.Join(dir, "sub", "extra.yaml")
	}
	testenv.WriteFile(t, filepath.Join(dir, "mesh.yaml"), meshYAML)
	testenv.WriteFile(t, extra, extraYAML)
	env := testenv.Start(t, dir, testenv.Options{})
	c := startClient(t, dial(t, env.Addr), "outage", "grpc", adsclient.Options{})
	waitResources(t, c, translate.ClusterType, 6)
	waitSynced(t, env, 1)
	drainEvents(c)
	return env, c, extra
}

func configErrors(t *testing.T, env *testenv.Env) []string {
	t.Helper()
	var ce debug.ConfigErrors
	env.GetJSON(t, "/debug/config_errors", &ce)
	var out []string
	for _, e := range ce.Errors {
		out = append(out, e.Error())
	}
	return out
}

// waitErrors waits until some config error contains want (or, with want
// empty, until there are none).
func waitErrors(t *testing.T, env *testenv.Env, want string) {
	t.Helper()
	testenv.Eventually(t, 5*time.Second, func() string {
		errs := configErrors(t, env)
		if want == "" {
			if len(errs) > 0 {
				return fmt.Sprintf("config errors still reported: %q", errs)
			}
			return ""
		}
		for _, e := range errs {
			if strings.Contains(e, want) {
				return ""
			}
		}
		return fmt.Sprintf("no config error mentions %q: %q", want, errs)
	})
}

// pendingEvents counts, and consumes, the responses a client has received
// and nobody read yet.
func pendingEvents(c *adsclient.Client) int {
	n := 0
	for {
		select {
		case <-c.Events():
			n++
		default:
			return n
		}
	}
}

// registryBarrier waits until the file registry and the server have
// handled every file event made before it: it writes a broken file, whose
// error shows in /debug/config_errors only once the registry has read
// everything before it (events are handled in order) and the server has
// built a snapshot, then removes it and waits for the error to go. A
// rejected file changes no service or config, so it pushes nothing.
func registryBarrier(t *testing.T, env *testenv.Env, dir string) {
	t.Helper()
	name := fmt.Sprintf("zz-barrier-%d.yaml", time.Now().UnixNano())
	path := filepath.Join(dir, name)
	testenv.WriteFile(t, path, "kind: [barrier\n")
	waitErrors(t, env, name)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 5*time.Second, func() string {
		for _, e := range configErrors(t, env) {
			if strings.Contains(e, name) {
				return "the barrier's error is still reported"
			}
		}
		return ""
	})
}

// triggerRescan makes the registry re-read the whole directory, as a
// ConfigMap volume's "..data" swap does: hidden entries are not config, but
// an event on one re-reads the visible files beside it.
func triggerRescan(t *testing.T, dir string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("..trigger-%d", time.Now().UnixNano())), nil, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestOutageDeletingFilesDeletes documents that the file registry takes the
// disappearance of files at face value: deleting every file or truncating
// one to nothing removes the objects they defined and pushes that to
// proxies. It cannot tell an operator's rm from a file emptied in place.
// Deploy the directory so files are replaced atomically (a ConfigMap
// volume, or write-then-rename), never emptied in place. The directory
// itself vanishing is different: see TestOutageDirectoryGone.
func TestOutageDeletingFilesDeletes(t *testing.T) {
	t.Run("all files deleted", func(t *testing.T) {
		env, c, extra := outageEnv(t, false)
		for _, p := range []string{extra, filepath.Join(env.Dir, "mesh.yaml")} {
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
		}
		waitResources(t, c, translate.ClusterType, 0)
		testenv.Eventually(t, 5*time.Second, func() string {
			if n := len(env.Server.Snapshot().Services()); n != 0 {
				return fmt.Sprintf("%d services still served", n)
			}
			return ""
		})
		// A deletion is not an error: nothing reports it.
		if errs := configErrors(t, env); len(errs) > 0 {
			t.Errorf("config errors after deleting every file: %q", errs)
		}
		// Files coming back are served again.
		env.WriteFile(t, "extra.yaml", extraYAML)
		waitResources(t, c, translate.ClusterType, 1)
	})
	t.Run("file truncated in place", func(t *testing.T) {
		env, c, extra := outageEnv(t, false)
		// What a non-atomic writer leaves between truncating and writing:
		// an empty file is valid and defines nothing.
		if err := os.WriteFile(extra, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		waitResources(t, c, translate.ClusterType, 5)
		if env.Server.Snapshot().Service(extraHost) != nil {
			t.Error("the truncated file's service is still served")
		}
	})
	t.Run("directory removed and recreated", func(t *testing.T) {
		env, c, _ := outageEnv(t, false)
		if err := os.RemoveAll(env.Dir); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(env.Dir, 0o755); err != nil {
			t.Fatal(err)
		}
		env.WriteFile(t, "mesh.yaml", meshYAML)
		env.WriteFile(t, "extra.yaml", extraYAML)
		testenv.Eventually(t, 5*time.Second, func() string {
			if got := len(c.Resources(translate.ClusterType)); got != 6 {
				return fmt.Sprintf("client has %d clusters, want 6 once the files are back", got)
			}
			if errs := configErrors(t, env); len(errs) > 0 {
				return fmt.Sprintf("config errors after the directory is back: %q", errs)
			}
			return ""
		})
	})
}

// TestOutageDirectoryGone: the config directory moved or deleted as a whole
// is a fault, not an intent. The last good config stays (pilot_services,
// the proxies' clusters, /ready), the fault is reported in
// /debug/config_errors and sextant_config_errors, and the directory is read
// again when it is back.
func TestOutageDirectoryGone(t *testing.T) {
	env, c, _ := outageEnv(t, false)
	metricHas := func(want string) string {
		if m := env.Get(t, "/metrics"); !strings.Contains(m, want) {
			return fmt.Sprintf("/metrics lacks %q", want)
		}
		return ""
	}
	services := fmt.Sprintf("pilot_services %d\n", len(env.Server.Snapshot().Services()))
	testenv.Eventually(t, 5*time.Second, func() string { return metricHas(services) })
	pushes := len(env.Server.PushLog())
	moved := env.Dir + ".gone"
	if err := os.Rename(env.Dir, moved); err != nil {
		t.Fatal(err)
	}
	waitErrors(t, env, "config directory is gone")
	testenv.Eventually(t, 5*time.Second, func() string {
		return metricHas(`sextant_config_errors{severity="error"} 1` + "\n")
	})
	if msg := metricHas(services); msg != "" {
		t.Error(msg)
	}
	if got := len(c.Resources(translate.ClusterType)); got != 6 {
		t.Errorf("client has %d clusters while the directory is gone, want 6", got)
	}
	if code := getStatus(t, env, "/ready"); code != 200 {
		t.Errorf("/ready = %d while the directory is gone, want 200 (the last good config is served)", code)
	}
	if err := os.Rename(moved, env.Dir); err != nil {
		t.Fatal(err)
	}
	waitErrors(t, env, "")
	testenv.Eventually(t, 5*time.Second, func() string {
		return metricHas(`sextant_config_errors{severity="error"} 0` + "\n")
	})
	if n := countEvents(c, 300*time.Millisecond); n != 0 {
		t.Errorf("client received %d responses across the outage, want none", n)
	}
	if got := len(env.Server.PushLog()); got != pushes {
		t.Errorf("push log grew from %d to %d across the outage", pushes, got)
	}
	if got := len(c.Resources(translate.ClusterType)); got != 6 {
		t.Errorf("client has %d clusters after the directory is back, want 6", got)
	}
}

// getStatus returns the status code of a monitoring path.
func getStatus(t *testing.T, env *testenv.Env, path string) int {
	t.Helper()
	resp, err := http.Get(env.Monitor.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// knownBug fails with the description of a bug that was found by these
// tests and fixed: a regression.
func knownBug(t *testing.T, format string, args ...any) {
	t.Helper()
	t.Fatalf("regression: "+format, args...)
}

// skipUnlessChmodBites skips when permission bits do not stop this process
// from reading (root, CAP_DAC_OVERRIDE).
func skipUnlessChmodBites(t *testing.T) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "probe")
	if err := os.WriteFile(p, []byte("x"), 0o000); err != nil {
		t.Fatal(err)
	}
	if _, err := os.ReadFile(p); err == nil {
		t.Skipf("running as uid %d, which reads files whatever their mode: chmod cannot make a file unreadable here", os.Getuid())
	}
}

// TestOutageUnreadableKeepsLastGood: a config file or directory that
// becomes unreadable is not a deletion; its last good version keeps being
// served, the problem is reported, and nothing is pushed. When it is
// readable again with the same content, nothing is pushed either.
func TestOutageUnreadableKeepsLastGood(t *testing.T) {
	skipUnlessChmodBites(t)
	t.Run("file", func(t *testing.T) {
		env, c, extra := outageEnv(t, false)
		pushes := len(env.Server.PushLog())
		// An open descriptor, so the file can be rewritten once unreadable.
		f, err := os.OpenFile(extra, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := os.Chmod(extra, 0o000); err != nil {
			t.Fatal(err)
		}
		triggerRescan(t, env.Dir)
		waitErrors(t, env, "cannot read file")
		// A write to the unreadable file itself (same bytes) is re-read too.
		if _, err := f.WriteAt([]byte(extraYAML), 0); err != nil {
			t.Fatal(err)
		}
		registryBarrier(t, env, env.Dir)
		if env.Server.Snapshot().Service(extraHost) == nil {
			t.Fatal("the unreadable file's service is no longer served")
		}
		if got := len(c.Resources(translate.ClusterType)); got != 6 {
			t.Errorf("client has %d clusters, want 6", got)
		}
		if err := os.Chmod(extra, 0o644); err != nil {
			t.Fatal(err)
		}
		triggerRescan(t, env.Dir)
		waitErrors(t, env, "")
		if n := countEvents(c, 300*time.Millisecond); n != 0 {
			t.Errorf("client received %d responses across the outage, want none", n)
		}
		if got := len(env.Server.PushLog()); got != pushes {
			t.Errorf("push log grew from %d to %d across the outage", pushes, got)
		}
	})
	t.Run("config directory", func(t *testing.T) {
		env, c, extra := outageEnv(t, false)
		f, err := os.OpenFile(extra, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := os.Chmod(env.Dir, 0o000); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = os.Chmod(env.Dir, 0o755) })
		// Rewrite the same bytes: the event makes the registry look at the
		// file, which it cannot even stat now.
		if _, err := f.WriteAt([]byte(extraYAML), 0); err != nil {
			t.Fatal(err)
		}
		time.Sleep(500 * time.Millisecond)
		served := env.Server.Snapshot().Service(extraHost) != nil
		if err := os.Chmod(env.Dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if !served {
			knownBug(t, "registry/file deletes a file it cannot stat (EACCES) as if it were gone "+
				"(client has %d clusters, want 6)", len(c.Resources(translate.ClusterType)))
		}
	})
	t.Run("directory", func(t *testing.T) {
		env, c, extra := outageEnv(t, true)
		sub := filepath.Dir(extra)
		pushes := len(env.Server.PushLog())
		if err := os.Chmod(sub, 0o000); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = os.Chmod(sub, 0o755) }) // so TempDir can be removed
		triggerRescan(t, env.Dir)
		registryBarrier(t, env, env.Dir)
		served := env.Server.Snapshot().Service(extraHost) != nil
		if err := os.Chmod(sub, 0o755); err != nil {
			t.Fatal(err)
		}
		if !served {
			knownBug(t, "registry/file deletes the objects of a directory it cannot read "+
				"(client has %d clusters, want 6)", len(c.Resources(translate.ClusterType)))
		}
		triggerRescan(t, env.Dir)
		waitErrors(t, env, "")
		if n := countEvents(c, 300*time.Millisecond); n != 0 {
			t.Errorf("client received %d responses across the outage, want none", n)
		}
		if got := len(env.Server.PushLog()); got != pushes {
			t.Errorf("push log grew from %d to %d across the outage", pushes, got)
		}
	})
}

// TestOutageBrokenWriteBurst: while a file is overwritten again and again
// with broken content, connected proxies stay connected and are sent
// nothing, a proxy connecting meanwhile gets the last good config, and
// restoring the original content pushes nothing.
func TestOutageBrokenWriteBurst(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "mesh.yaml")
	testenv.WriteFile(t, path, meshYAML)
	env := testenv.Start(t, dir, testenv.Options{})
	cc := dial(t, env.Addr)
	const n = 10
	clients := make([]*adsclient.Client, n)
	for i := range clients {
		clients[i] = startClient(t, cc, fmt.Sprintf("burst-%d", i), "grpc", adsclient.Options{Delta: i%2 == 1})
	}
	for _, c := range clients {
		waitResources(t, c, translate.EndpointType, 5)
	}
	waitSynced(t, env, n)
	for _, c := range clients {
		drainEvents(c)
	}
	pushes := len(env.Server.PushLog())

	broken := []string{
		"apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: [\n",              // invalid YAML
		strings.Replace(meshYAML, "number: 9080, name: http", "number: 99999, name: http", 1),       // invalid port
		strings.Replace(meshYAML, "resolution: STATIC", "resolution: STATIK", 1),                    // unknown enum
		strings.Replace(meshYAML, "hosts: [reviews", "hostz: [reviews", 1),                          // unknown field
		`{"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry", "metadata": {"name": "x"`, // truncated JSON
		"\x00\x01\x02 binary \xff\xfe",
	}
	for i := range 60 {
		testenv.WriteFile(t, path, broken[i%len(broken)])
		if i == 30 {
			// A proxy connecting mid-burst gets the last good config.
			c := startClient(t, cc, "newcomer", "grpc", adsclient.Options{})
			waitResources(t, c, translate.ClusterType, 5)
			waitResources(t, c, translate.EndpointType, 5)
		}
		time.Sleep(5 * time.Millisecond)
	}
	waitErrors(t, env, "file rejected; its previous valid version is still served")
	for i, c := range clients {
		select {
		case <-c.Done():
			t.Errorf("client %d disconnected during the burst: %v", i, c.Err())
		default:
		}
		if got := len(c.Resources(translate.ClusterType)); got != 5 {
			t.Errorf("client %d holds %d clusters during the burst, want 5", i, got)
		}
	}
	testenv.WriteFile(t, path, meshYAML)
	waitErrors(t, env, "")
	registryBarrier(t, env, dir)
	for i, c := range clients {
		if got := pendingEvents(c); got != 0 {
			t.Errorf("client %d received %d responses across the burst and recovery, want none", i, got)
		}
	}
	if got := len(env.Server.PushLog()); got != pushes {
		t.Errorf("push log grew from %d to %d across the burst and recovery, want no push", pushes, got)
	}
}
