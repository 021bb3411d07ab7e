package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/sextant-mesh/sextant/api/debug"
	"github.com/sextant-mesh/sextant/discovery/translate"
	"github.com/sextant-mesh/sextant/internal/adsclient"
	"github.com/sextant-mesh/sextant/internal/testenv"
)

// The replica tests run real `sextant serve` processes, so nothing a
// process keeps in memory (caches, interned names, map order, the order it
// saw edits in) can make two replicas agree by accident.

// sextantProc is one running `sextant serve`.
type sextantProc struct {
	xds, mon string
	stderr   *bytes.Buffer
}

// buildSextant builds the server into the test's temporary directory (the
// build cache makes repeated builds cheap).
func buildSextant(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sextant")
	out, err := exec.Command("go", "build", "-o", path, "github.com/sextant-mesh/sextant/cmd/sextant").CombinedOutput()
	if err != nil {
		t.Fatalf("go build sextant: %v\n%s", err, out)
	}
	return path
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startSextantProc runs bin serve with args on free loopback ports and
// waits until it is ready; the process is stopped with SIGTERM at the end
// of the test.
func startSextantProc(t *testing.T, bin string, args ...string) *sextantProc {
	t.Helper()
	p := &sextantProc{xds: freeAddr(t), mon: freeAddr(t), stderr: &bytes.Buffer{}}
	args = append([]string{"serve", "--xds-addr", p.xds, "--monitoring-addr", p.mon, "--webhook-addr", "",
		"--kube-registry", "off", "--debounce-after", "20ms", "--drain-window", "100ms"}, args...)
	cmd := exec.Command(bin, args...)
	cmd.Stderr = p.stderr
	exited := startProcess(t, cmd, syscall.SIGTERM, func() { t.Logf("sextant %s stderr:\n%s", p.xds, p.stderr) })
	testenv.Eventually(t, 30*time.Second, func() string {
		select {
		case <-exited:
			t.Fatalf("sextant exited: %s", p.stderr)
		default:
		}
		resp, err := http.Get("http://" + p.mon + "/ready")
		if err != nil {
			return err.Error()
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return "not ready: " + resp.Status
		}
		return ""
	})
	return p
}

// startProcess starts cmd and, at the end of the test, stops it with sig
// (killing it if it has not exited after 10 s) and calls onFail if the
// test failed. The channel is closed when the process exits.
func startProcess(t *testing.T, cmd *exec.Cmd, sig os.Signal, onFail func()) <-chan struct{} {
	t.Helper()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(sig)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			onFail()
		}
	})
	return exited
}

func (p *sextantProc) syncz(t *testing.T) []debug.SyncStatus {
	t.Helper()
	resp, err := http.Get("http://" + p.mon + "/debug/syncz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st []debug.SyncStatus
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

var xdsTypes = []string{translate.ClusterType, translate.ListenerType, translate.EndpointType, translate.RouteType}

// proxyKind is one kind of proxy a replica serves.
type proxyKind struct {
	name      string
	generator string // "" = Envoy sidecar, "grpc" = proxyless
	delta     bool
}

var proxyKinds = []proxyKind{
	{"sidecar-sotw", "", false}, {"sidecar-delta", "", true},
	{"proxyless-sotw", "grpc", false}, {"proxyless-delta", "grpc", true},
}

// heldState is what a proxy holds after converging: resources, their
// versions, the SotW version of each type and its named subscriptions.
type heldState struct {
	resources map[string]map[string][]byte
	versions  map[string]map[string]string
	sotw      map[string]string
	names     map[string][]string
}

// converge connects a proxy of kind k to addr and waits until every name
// it subscribes to has arrived and cluster wantCluster is among them.
func converge(t *testing.T, addr string, k proxyKind, pod, wantCluster string) heldState {
	t.Helper()
	c := startClient(t, dial(t, addr), pod, k.generator, adsclient.Options{Delta: k.delta})
	testenv.Eventually(t, 10*time.Second, func() string {
		if c.Resources(translate.ClusterType)[wantCluster] == nil {
			return "cluster " + wantCluster + " not received"
		}
		for _, typ := range []string{translate.EndpointType, translate.RouteType} {
			names := c.Names(typ)
			if len(names) == 0 {
				return "no " + typ + " subscription yet"
			}
			for _, n := range names {
				if c.Resources(typ)[n] == nil {
					return typ + " " + n + " not received"
				}
			}
		}
		return ""
	})
	// Let a push already in flight land before the state is read.
	time.Sleep(100 * time.Millisecond)
	s := heldState{resources: map[string]map[string][]byte{}, versions: map[string]map[string]string{},
		sotw: map[string]string{}, names: map[string][]string{}}
	for _, typ := range xdsTypes {
		s.resources[typ] = map[string][]byte{}
		for n, a := range c.Resources(typ) {
			b, err := proto.MarshalOptions{Deterministic: true}.Marshal(a)
			if err != nil {
				t.Fatal(err)
			}
			s.resources[typ][n] = b
		}
		s.versions[typ] = c.Versions(typ)
		s.sotw[typ] = c.SotWVersion(typ)
		s.names[typ] = c.Names(typ)
	}
	return s
}

// TestReplicasIdenticalOutput: two replica processes on one config
// directory, with different histories — replica a saw five live edits,
// replica b started after them — send byte-identical resources with equal
// versions to every kind of proxy, and a proxy that moves from a to b with
// what a sent it is resent nothing.
func TestReplicasIdenticalOutput(t *testing.T) {
	bin := buildSextant(t)
	dir := t.TempDir()
	testenv.WriteFile(t, filepath.Join(dir, "mesh.yaml"), meshYAML)
	a := startSextantProc(t, bin, "--config-dir", dir)

	// Five edits, each seen by a before the next: services added, changed,
	// removed and added back, in an order b never sees.
	watcher := startClient(t, dial(t, a.xds), "watcher", "", adsclient.Options{})
	cluster := func(name string) string { return "outbound|80||" + name + ".default.svc.cluster.local" }
	edits := []struct {
		do   func()
		want string // a cluster that must appear (or disappear when gone is set)
		gone bool
	}{
		{func() {
			testenv.WriteFile(t, filepath.Join(dir, "extra1.yaml"), testenv.StaticServiceEntry("extra1", "10.50.0.1"))
		}, cluster("extra1"), false},
		{func() {
			testenv.WriteFile(t, filepath.Join(dir, "extra2.yaml"), testenv.StaticServiceEntry("extra2", "10.50.0.2"))
		}, cluster("extra2"), false},
		{func() {
			testenv.WriteFile(t, filepath.Join(dir, "extra1.yaml"), testenv.StaticServiceEntry("extra1", "10.50.0.11"))
		}, cluster("extra1"), false},
		{func() {
			if err := os.Remove(filepath.Join(dir, "extra2.yaml")); err != nil {
				t.Fatal(err)
			}
		}, cluster("extra2"), true},
		{func() {
			testenv.WriteFile(t, filepath.Join(dir, "extra3.yaml"), testenv.StaticServiceEntry("extra3", "10.50.0.3"))
		}, cluster("extra3"), false},
	}
	for i, e := range edits {
		e.do()
		testenv.Eventually(t, 10*time.Second, func() string {
			if has := watcher.Resources(translate.ClusterType)[e.want] != nil; has == e.gone {
				return fmt.Sprintf("edit %d not seen by replica a", i+1)
			}
			return ""
		})
	}
	if len(watcher.Resources(translate.ClusterType)) == 0 {
		t.Fatal("watcher holds no clusters")
	}
	b := startSextantProc(t, bin, "--config-dir", dir)

	for _, k := range proxyKinds {
		t.Run(k.name, func(t *testing.T) {
			fromA := converge(t, a.xds, k, k.name+"-a", cluster("extra3"))
			fromB := converge(t, b.xds, k, k.name+"-b", cluster("extra3"))
			for _, typ := range xdsTypes {
				if len(fromA.resources[typ]) == 0 {
					t.Errorf("%s: no resources from replica a", typ)
				}
				if len(fromA.resources[typ]) != len(fromB.resources[typ]) {
					t.Errorf("%s: %d resources from a, %d from b", typ, len(fromA.resources[typ]), len(fromB.resources[typ]))
				}
				for n, ra := range fromA.resources[typ] {
					if !bytes.Equal(ra, fromB.resources[typ][n]) {
						t.Errorf("%s %s differs between the replicas:\n%s", typ, n, resourceDiff(t, ra, fromB.resources[typ][n]))
					}
				}
				if k.delta {
					for n, v := range fromA.versions[typ] {
						if fromB.versions[typ][n] != v {
							t.Errorf("%s %s: delta version %q from a, %q from b", typ, n, v, fromB.versions[typ][n])
						}
					}
				} else if fromA.sotw[typ] == "" || fromA.sotw[typ] != fromB.sotw[typ] {
					t.Errorf("%s: SotW version %q from a, %q from b", typ, fromA.sotw[typ], fromB.sotw[typ])
				}
			}

			// The proxy moves from a to b with what a sent it.
			pod := k.name + "-moved"
			moved := startClient(t, dial(t, b.xds), pod, k.generator, adsclient.Options{Delta: k.delta, Types: xdsTypes,
				InitialVersions: fromA.versions, InitialSotW: fromA.sotw, InitialNames: fromA.names})
			testenv.Eventually(t, 10*time.Second, func() string {
				for _, st := range b.syncz(t) {
					if st.Proxy != pod+".default" {
						continue
					}
					for _, short := range []string{"cds", "lds", "eds", "rds"} {
						ts := st.Types[short]
						if ts.Status != "SYNCED" || ts.NonceSent != "resumed" {
							return fmt.Sprintf("%s: %s %s (nonce %q), want SYNCED and resumed", pod, short, ts.Status, ts.NonceSent)
						}
					}
					return ""
				}
				return pod + " not connected to replica b"
			})
			for _, typ := range xdsTypes {
				if got := len(moved.Resources(typ)); got != 0 {
					t.Errorf("moved proxy was resent %d %s resources, want 0", got, typ)
				}
			}
		})
	}
}

// resourceDiff shows how two marshalled resources differ, in JSON.
func resourceDiff(t *testing.T, a, b []byte) string {
	t.Helper()
	show := func(raw []byte) string {
		var any anypb.Any
		if err := proto.Unmarshal(raw, &any); err != nil {
			return err.Error()
		}
		m, err := any.UnmarshalNew()
		if err != nil {
			return err.Error()
		}
		return protojson.MarshalOptions{Multiline: true}.Format(m)
	}
	return cmp.Diff(show(a), show(b))
}
