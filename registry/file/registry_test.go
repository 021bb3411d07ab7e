package file

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/sextant-mesh/sextant/model"
)

// testWriter sends log lines to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// start runs a registry over dir until the test ends.
func start(t *testing.T, dir string) *model.Aggregator {
	t.Helper()
	agg := model.NewAggregator()
	reg := New(dir, agg.NewShard("file"), slog.New(slog.NewTextHandler(testWriter{t}, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- reg.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
	return agg
}

// waitFor polls snapshots until cond holds (on a synced snapshot) or 5s pass.
func waitFor(t *testing.T, agg *model.Aggregator, what string, cond func(*model.Snapshot) bool) *model.Snapshot {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		snap, _ := agg.Build()
		if snap.Synced && cond(snap) {
			return snap
		}
		select {
		case <-agg.Changed():
		case <-time.After(25 * time.Millisecond):
		case <-deadline:
			t.Fatalf("timed out waiting for %s\nlast snapshot: %s", what, describe(snap))
		}
	}
}

func describe(s *model.Snapshot) string {
	var b strings.Builder
	fmt.Fprintf(&b, "synced=%v\n", s.Synced)
	for _, svc := range s.Services() {
		fmt.Fprintf(&b, "  service %s endpoints=%s\n", svc.Hostname, endpointAddrs(s, svc.Hostname))
	}
	for _, e := range s.Errors {
		fmt.Fprintf(&b, "  error %s (warning=%v)\n", e.Error(), e.Warning)
	}
	return b.String()
}

func endpointAddrs(s *model.Snapshot, host string) string {
	es := s.Endpoints(host)
	if es == nil {
		return ""
	}
	var out []string
	for _, e := range es.Endpoints {
		out = append(out, e.Address)
	}
	return strings.Join(out, ",")
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func remove(t *testing.T, path string) {
	t.Helper()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
}

// meshYAML is a ServiceEntry with the given endpoint addresses plus a
// VirtualService and a DestinationRule for it.
func meshYAML(addrs ...string) string {
	var eps strings.Builder
	for _, a := range addrs {
		fmt.Fprintf(&eps, "  - address: %s\n", a)
	}
	return `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: payments, namespace: shop}
spec:
  hosts: [payments.example.com]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  endpoints:
` + eps.String() + `---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: payments, namespace: shop}
spec:
  hosts: [payments.example.com]
  http: [{route: [{destination: {host: payments.example.com}}]}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: payments, namespace: shop}
spec:
  host: payments.example.com
  trafficPolicy: {connectionPool: {tcp: {maxConnections: 10}}}
`
}

const ratingsService = `apiVersion: v1
kind: Service
metadata: {name: ratings, namespace: shop}
spec:
  clusterIP: 10.96.0.7
  ports: [{name: http, port: 80, targetPort: 8080}]
`

const ratingsServiceJSON = `{"apiVersion": "v1", "kind": "Service",
 "metadata": {"name": "ratings", "namespace": "shop"},
 "spec": {"clusterIP": "10.96.0.7", "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}
`

const ratingsSlice = `apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: ratings-1, namespace: shop, labels: {kubernetes.io/service-name: ratings}}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints:
- addresses: [10.2.0.1]
- addresses: [10.2.0.2]
  conditions: {ready: false, serving: true, terminating: true}
`

const (
	payments = "payments.example.com"
	ratings  = "ratings.shop.svc.cluster.local"
)

func hasConfig(s *model.Snapshot, kind model.Kind, ns, name string) bool {
	for _, c := range s.Configs(kind) {
		if c.Key.Namespace == ns && c.Key.Name == name {
			return true
		}
	}
	return false
}

func errorsFor(s *model.Snapshot, path string) []model.ConfigError {
	var out []model.ConfigError
	for _, e := range s.Errors {
		if strings.HasPrefix(e.Location, path) {
			out = append(out, e)
		}
	}
	return out
}

func TestRegistryLifecycle(t *testing.T) {
	dir := t.TempDir()
	mesh := filepath.Join(dir, "mesh.yaml")
	slicePath := filepath.Join(dir, "endpoints", "ratings.yml")
	write(t, mesh, meshYAML("10.0.0.1"))
	write(t, filepath.Join(dir, "kube", "ratings.json"), ratingsServiceJSON)
	write(t, slicePath, ratingsSlice)
	write(t, filepath.Join(dir, "README.md"), "not config")
	write(t, filepath.Join(dir, ".hidden.yaml"), strings.ReplaceAll(ratingsService, "ratings", "hidden"))
	write(t, filepath.Join(dir, ".git", "x.yaml"), strings.ReplaceAll(ratingsService, "ratings", "git"))

	agg := start(t, dir)

	// Initial load: all files, with the slice in one directory attached to
	// the Service in another.
	snap := waitFor(t, agg, "initial load", func(s *model.Snapshot) bool {
		return endpointAddrs(s, payments) == "10.0.0.1" && endpointAddrs(s, ratings) == "10.2.0.1,10.2.0.2"
	})
	if !hasConfig(snap, model.KindVirtualService, "shop", "payments") || !hasConfig(snap, model.KindDestinationRule, "shop", "payments") {
		t.Fatalf("configs missing:\n%s", describe(snap))
	}
	if eps := snap.Endpoints(ratings).Endpoints; eps[1].Health != model.Draining {
		t.Errorf("terminating endpoint health = %v", eps[1].Health)
	}
	if snap.Service("hidden.shop.svc.cluster.local") != nil || snap.Service("git.shop.svc.cluster.local") != nil {
		t.Error("dot files are read")
	}
	if len(snap.Errors) != 0 {
		t.Errorf("unexpected errors: %v", snap.Errors)
	}

	// Modify a file.
	write(t, mesh, meshYAML("10.0.0.1", "10.0.0.2"))
	waitFor(t, agg, "the new endpoint", func(s *model.Snapshot) bool {
		return endpointAddrs(s, payments) == "10.0.0.1,10.0.0.2"
	})

	// Break it: the previous version keeps serving and the error names it.
	write(t, mesh, meshYAML("10.0.0.1", "10.0.0.2", "10.0.0.3")+"---\nkind: [oops\n")
	snap = waitFor(t, agg, "the broken file's error", func(s *model.Snapshot) bool {
		return len(errorsFor(s, mesh)) > 0
	})
	if got := endpointAddrs(snap, payments); got != "10.0.0.1,10.0.0.2" {
		t.Errorf("endpoints after a broken write = %q, want the previous version's", got)
	}
	if !hasConfig(snap, model.KindVirtualService, "shop", "payments") {
		t.Error("VirtualService of the broken file was dropped")
	}
	var sawYAML bool
	for _, e := range errorsFor(snap, mesh) {
		if e.Registry != "file" || e.Warning {
			t.Errorf("error %+v: want a file registry error", e)
		}
		if e.Location == mesh+":28 (doc 4)" && strings.HasPrefix(e.Message, "invalid YAML: ") {
			sawYAML = true
		}
	}
	if !sawYAML {
		t.Errorf("no YAML error for doc 4 of %s: %v", mesh, snap.Errors)
	}
	// One bad file with one cause counts once (the "file rejected" note
	// is a summary).
	if nerr, nwarn := model.CountErrors(snap.Errors); nerr != 1 || nwarn != 0 {
		t.Errorf("CountErrors = %d errors, %d warnings; want 1, 0: %v", nerr, nwarn, snap.Errors)
	}

	// A semantic error rejects the file too.
	write(t, mesh, strings.Replace(meshYAML("10.0.0.9"), "number: 80", "number: 0", 1))
	snap = waitFor(t, agg, "the validation error", func(s *model.Snapshot) bool {
		for _, e := range errorsFor(s, mesh) {
			if e.Field == "spec.ports[0].number" && e.Object == "ServiceEntry shop/payments" {
				return true
			}
		}
		return false
	})
	if got := endpointAddrs(snap, payments); got != "10.0.0.1,10.0.0.2" {
		t.Errorf("endpoints after an invalid write = %q", got)
	}

	// Fix it: the change shows and the errors are cleared.
	write(t, mesh, meshYAML("10.0.0.3"))
	waitFor(t, agg, "the fixed file", func(s *model.Snapshot) bool {
		return endpointAddrs(s, payments) == "10.0.0.3" && len(s.Errors) == 0
	})

	// Delete the slices: the Service stays, without endpoints.
	remove(t, slicePath)
	waitFor(t, agg, "endpoints gone", func(s *model.Snapshot) bool {
		return s.Service(ratings) != nil && s.Endpoints(ratings) == nil
	})

	// Delete the mesh file: its objects go.
	remove(t, mesh)
	waitFor(t, agg, "objects gone", func(s *model.Snapshot) bool {
		return s.Service(payments) == nil && !hasConfig(s, model.KindVirtualService, "shop", "payments") &&
			!hasConfig(s, model.KindDestinationRule, "shop", "payments")
	})

	// A file in new nested subdirectories is picked up, slices included.
	write(t, filepath.Join(dir, "new", "deeper", "slices.yaml"), ratingsSlice)
	waitFor(t, agg, "the file in a new directory", func(s *model.Snapshot) bool {
		return endpointAddrs(s, ratings) == "10.2.0.1,10.2.0.2"
	})
	// ... and later changes there too (the new directory is watched).
	write(t, filepath.Join(dir, "new", "deeper", "slices.yaml"), strings.Replace(ratingsSlice, "10.2.0.2", "10.2.0.3", 1))
	waitFor(t, agg, "the change in the new directory", func(s *model.Snapshot) bool {
		return endpointAddrs(s, ratings) == "10.2.0.1,10.2.0.3"
	})

	// Removing the whole directory removes its objects.
	if err := os.RemoveAll(filepath.Join(dir, "new")); err != nil {
		t.Fatal(err)
	}
	snap = waitFor(t, agg, "the removed directory's objects gone", func(s *model.Snapshot) bool {
		return s.Endpoints(ratings) == nil
	})
	if snap.Service("hidden.shop.svc.cluster.local") != nil {
		t.Error("dot file read after changes")
	}
}

func TestRegistryNeverValidFileAndWarnings(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	warn := filepath.Join(dir, "warn.yaml")
	write(t, bad, "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: dr}\nspec: {host: a, bogus: 1}\n")
	write(t, warn, ratingsService+"---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw}\nspec: {}\n")

	agg := start(t, dir)
	snap := waitFor(t, agg, "initial load", func(s *model.Snapshot) bool { return s.Service(ratings) != nil })
	badErrs := errorsFor(snap, bad)
	if len(badErrs) != 2 || !strings.Contains(badErrs[0].Message, "none of its objects are served") ||
		badErrs[1].Field != "spec.bogus" || badErrs[1].Object != "DestinationRule default/dr" {
		t.Errorf("errors for the bad file: %v", badErrs)
	}
	if hasConfig(snap, model.KindDestinationRule, "default", "dr") {
		t.Error("config of a rejected file is served")
	}
	warnErrs := errorsFor(snap, warn)
	if len(warnErrs) != 1 || !warnErrs[0].Warning || !strings.Contains(warnErrs[0].Message, "unknown kind Gateway") {
		t.Errorf("warnings for the good file: %v", warnErrs)
	}

	// Deleting the bad file clears its errors.
	remove(t, bad)
	waitFor(t, agg, "errors cleared", func(s *model.Snapshot) bool { return len(errorsFor(s, bad)) == 0 })
}

func TestRegistryCrossFileWarnings(t *testing.T) {
	dir := t.TempDir()
	vs := filepath.Join(dir, "vs.yaml")
	write(t, vs, `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: r, namespace: shop}
spec:
  hosts: [ratings]
  http: [{route: [{destination: {host: ratings, subset: v2}}]}]
`)
	write(t, filepath.Join(dir, "svc.yaml"), ratingsService)
	agg := start(t, dir)
	snap := waitFor(t, agg, "the missing subset warning", func(s *model.Snapshot) bool { return len(errorsFor(s, vs)) == 1 })
	if e := errorsFor(snap, vs)[0]; !e.Warning || e.Field != "spec.http[0].route[0].destination.subset" || e.Code != model.CodeReferencedResourceNotFound {
		t.Errorf("warning = %+v", e)
	}
	if !hasConfig(snap, model.KindVirtualService, "shop", "r") {
		t.Error("a warning must not reject the VirtualService")
	}
	// Defining the subset in another file clears the warning.
	write(t, filepath.Join(dir, "dr.yaml"), `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: r, namespace: shop}
spec:
  host: ratings
  subsets: [{name: v2, labels: {version: v2}}]
`)
	waitFor(t, agg, "the warning cleared", func(s *model.Snapshot) bool { return len(s.Errors) == 0 })
}

// TestRegistryConfigMapSwap follows a Kubernetes ConfigMap volume update:
// visible files are links through "..data", which is replaced atomically.
func TestRegistryConfigMapSwap(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "..v1", "mesh.yaml"), meshYAML("10.0.0.1"))
	if err := os.Symlink("..v1", filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join("..data", "mesh.yaml"), filepath.Join(dir, "mesh.yaml")); err != nil {
		t.Fatal(err)
	}
	agg := start(t, dir)
	waitFor(t, agg, "initial load", func(s *model.Snapshot) bool { return endpointAddrs(s, payments) == "10.0.0.1" })

	write(t, filepath.Join(dir, "..v2", "mesh.yaml"), meshYAML("10.0.0.2"))
	if err := os.Symlink("..v2", filepath.Join(dir, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(dir, "..v1")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, agg, "the swapped version", func(s *model.Snapshot) bool { return endpointAddrs(s, payments) == "10.0.0.2" })
}

func TestRunMissingDirectory(t *testing.T) {
	agg := model.NewAggregator()
	reg := New(filepath.Join(t.TempDir(), "nope"), agg.NewShard("file"), slog.New(slog.NewTextHandler(testWriter{t}, nil)))
	if err := reg.Run(context.Background()); err == nil {
		t.Fatal("Run succeeded on a missing directory")
	}
	if snap, _ := agg.Build(); snap.Synced {
		t.Error("shard marked synced although the load failed")
	}
}

func TestRunStopsCleanly(t *testing.T) {
	before := runtime.NumGoroutine()
	dir := t.TempDir()
	write(t, filepath.Join(dir, "svc.yaml"), ratingsService)
	agg := model.NewAggregator()
	reg := New(dir, agg.NewShard("file"), slog.New(slog.NewTextHandler(testWriter{t}, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- reg.Run(ctx) }()
	waitFor(t, agg, "load", func(s *model.Snapshot) bool { return s.Service(ratings) != nil })
	if err := reg.Run(ctx); err == nil {
		t.Error("second Run succeeded")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("goroutines: %d before, %d after\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A directory moved or deleted as a whole is a fault: its last good config
// stays, the fault is reported at the directory, and the directory is read
// again when it is back.
func TestRegistryDirectoryGone(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "mesh")
	write(t, filepath.Join(dir, "mesh.yaml"), meshYAML("10.0.0.1"))
	write(t, filepath.Join(dir, "kube", "ratings.yaml"), ratingsService)
	agg := start(t, dir)
	waitFor(t, agg, "initial load", func(s *model.Snapshot) bool {
		return endpointAddrs(s, payments) == "10.0.0.1" && s.Service(ratings) != nil
	})
	goneReported := func(s *model.Snapshot) bool {
		for _, e := range s.Errors {
			if e.Location == dir && !e.Warning && strings.Contains(e.Message, "config directory is gone") {
				return true
			}
		}
		return false
	}
	kept := func(s *model.Snapshot) bool {
		return endpointAddrs(s, payments) == "10.0.0.1" && s.Service(ratings) != nil &&
			hasConfig(s, model.KindVirtualService, "shop", "payments")
	}

	// mv mesh mesh.gone
	moved := filepath.Join(root, "mesh.gone")
	if err := os.Rename(dir, moved); err != nil {
		t.Fatal(err)
	}
	snap := waitFor(t, agg, "the moved directory reported", goneReported)
	if !kept(snap) {
		t.Fatalf("config lost when the directory was moved:\n%s", describe(snap))
	}
	// Edits in the moved-away directory are not ours.
	write(t, filepath.Join(moved, "mesh.yaml"), meshYAML("10.9.9.9"))
	// mv mesh.gone mesh: read again, edits made meanwhile included.
	if err := os.Rename(moved, dir); err != nil {
		t.Fatal(err)
	}
	waitFor(t, agg, "the directory back", func(s *model.Snapshot) bool {
		return !goneReported(s) && endpointAddrs(s, payments) == "10.9.9.9" && len(s.Errors) == 0
	})
	// Watched again after coming back.
	write(t, filepath.Join(dir, "mesh.yaml"), meshYAML("10.0.0.1"))
	waitFor(t, agg, "an edit after the return", func(s *model.Snapshot) bool { return kept(s) })

	// rm -r mesh: its files go first, then the directory; nothing is lost.
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	snap = waitFor(t, agg, "the deleted directory reported", goneReported)
	if !kept(snap) {
		t.Fatalf("config lost when the directory was deleted:\n%s", describe(snap))
	}
	// A new directory in its place is authoritative: what it lacks goes.
	write(t, filepath.Join(dir, "kube", "ratings.yaml"), ratingsService)
	waitFor(t, agg, "the recreated directory", func(s *model.Snapshot) bool {
		return !goneReported(s) && s.Service(payments) == nil && s.Service(ratings) != nil
	})
	// Deleting files one by one still deletes their objects.
	remove(t, filepath.Join(dir, "kube", "ratings.yaml"))
	waitFor(t, agg, "the deleted file's objects gone", func(s *model.Snapshot) bool {
		return s.Service(ratings) == nil && len(s.Errors) == 0
	})
}

// A file over the size limit is refused with an error naming it and the
// limit (its last good version keeps serving), and a large file being
// parsed does not hold back another file's change.
func TestRegistryFileSizeLimitAndLargeFiles(t *testing.T) {
	dir := t.TempDir()
	mesh := filepath.Join(dir, "mesh.yaml")
	write(t, mesh, meshYAML("10.0.0.1"))
	write(t, filepath.Join(dir, "ratings.yaml"), ratingsService)
	agg := model.NewAggregator()
	reg := New(dir, agg.NewShard("file"), slog.New(slog.NewTextHandler(testWriter{t}, nil)))
	reg.SetMaxFileSize(1 << 20)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- reg.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	waitFor(t, agg, "initial load", func(s *model.Snapshot) bool { return endpointAddrs(s, payments) == "10.0.0.1" })

	// Over the limit: refused, the previous version serves.
	big := meshYAML("10.0.0.2") + "# " + strings.Repeat("x", 1<<20) + "\n"
	write(t, mesh, big)
	snap := waitFor(t, agg, "the size error", func(s *model.Snapshot) bool { return len(errorsFor(s, mesh)) > 0 })
	e := errorsFor(snap, mesh)[0]
	if e.Location != mesh || !strings.Contains(e.Message, fmt.Sprintf("file is %d bytes, over the limit of 1048576 (--max-config-file-size)", len(big))) {
		t.Errorf("error = %+v", e)
	}
	if got := endpointAddrs(snap, payments); got != "10.0.0.1" {
		t.Errorf("endpoints = %q, want the last good version's", got)
	}

	// Under the limit but large: parsed off the watch loop. Many
	// documents make its parse slow; a small file's change is not held
	// back by it, and the large file's content arrives too.
	var b strings.Builder
	b.WriteString(meshYAML("10.0.0.3"))
	for i := 0; b.Len() < 300<<10; i++ {
		fmt.Fprintf(&b, "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: d%d, namespace: shop}\nspec: {host: h%d.example.com, trafficPolicy: {connectionPool: {tcp: {maxConnections: 10}}}}\n", i, i)
	}
	write(t, mesh, b.String())
	write(t, filepath.Join(dir, "ratings.yaml"), strings.Replace(ratingsService, "10.96.0.7", "10.96.0.8", 1))
	waitFor(t, agg, "both changes", func(s *model.Snapshot) bool {
		svc := s.Service(ratings)
		return svc != nil && len(svc.Addresses) == 1 && svc.Addresses[0] == "10.96.0.8" &&
			endpointAddrs(s, payments) == "10.0.0.3" && len(s.Errors) == 0
	})
}
