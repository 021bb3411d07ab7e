package etcd

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	v1 "github.com/sextant-mesh/sextant/api/etcd/v1"
	"github.com/sextant-mesh/sextant/model"
	"github.com/sextant-mesh/sextant/registry/etcd/etcdclient"
)

const waitTimeout = 20 * time.Second

// testWriter sends log lines to the test log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("SEXTANT_TEST_LOG") == "" {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// running is a registry running until the test ends (or stop is called).
type running struct {
	reg  *Registry
	agg  *model.Aggregator
	stop func()
}

func startRegistry(t testing.TB, endpoints []string, prefix string) *running {
	t.Helper()
	agg := model.NewAggregator()
	reg := New(Config{Config: etcdclient.Config{Endpoints: endpoints, Prefix: prefix}, RequestTimeout: 2 * time.Second}, agg.NewShard(RegistryName), testLogger(t))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- reg.Run(ctx) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return after cancel")
		}
	}
	t.Cleanup(stop)
	return &running{reg: reg, agg: agg, stop: stop}
}

// waitFor polls snapshots until cond returns "" on a synced snapshot.
func waitFor(t testing.TB, agg *model.Aggregator, what string, cond func(*model.Snapshot) string) *model.Snapshot {
	t.Helper()
	deadline := time.After(waitTimeout)
	for {
		snap, _ := agg.Build()
		why := "not synced"
		if snap.Synced {
			if why = cond(snap); why == "" {
				return snap
			}
		}
		select {
		case <-agg.Changed():
		case <-time.After(20 * time.Millisecond):
		case <-deadline:
			t.Fatalf("timed out waiting for %s: %s\nlast snapshot:\n%s", what, why, describe(snap))
		}
	}
}

// waitApplied waits until the registry has applied etcd revision rev.
func waitApplied(t testing.TB, reg *Registry, rev int64) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for reg.Revision() < rev {
		if time.Now().After(deadline) {
			t.Fatalf("registry at revision %d, want %d", reg.Revision(), rev)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// describe prints a snapshot's services, endpoints, hashes and errors, in
// a stable order: two equal descriptions mean equal model contents.
func describe(s *model.Snapshot) string {
	var b strings.Builder
	fmt.Fprintf(&b, "synced=%v\n", s.Synced)
	for _, svc := range s.Services() {
		fmt.Fprintf(&b, "service %s/%s hash=%x created=%d source=%s\n", svc.Namespace, svc.Hostname,
			s.ServiceHash(svc.Hostname), svc.CreationTime.UnixNano(), svc.Source)
		if es := s.Endpoints(svc.Hostname); es != nil {
			fmt.Fprintf(&b, "  endpoints hash=%x: %s\n", es.Hash, addrs(es.Endpoints))
		}
	}
	for _, e := range s.Errors {
		fmt.Fprintf(&b, "error %s (warning=%v)\n", e.Error(), e.Warning)
	}
	return b.String()
}

func addrs(eps []*model.Endpoint) string {
	out := make([]string, len(eps))
	for i, e := range eps {
		out[i] = e.Address
		if e.Source.Name != e.Address {
			out[i] += "(" + e.Source.Name + ")"
		}
	}
	return strings.Join(out, ",")
}

func endpointAddrs(s *model.Snapshot, host string) string {
	es := s.Endpoints(host)
	if es == nil {
		return ""
	}
	return addrs(es.Endpoints)
}

// ctx returns a context for one etcd request.
func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func put(t testing.TB, cli *clientv3.Client, key, value string, opts ...clientv3.OpOption) int64 {
	t.Helper()
	resp, err := cli.Put(ctx(t), key, value, opts...)
	if err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
	return resp.Header.Revision
}

func del(t testing.TB, cli *clientv3.Client, key string) int64 {
	t.Helper()
	resp, err := cli.Delete(ctx(t), key)
	if err != nil {
		t.Fatalf("delete %s: %v", key, err)
	}
	return resp.Header.Revision
}

func serviceJSON(ns, host string, ports ...string) string {
	if len(ports) == 0 {
		ports = []string{`{"name":"http","number":8080}`}
	}
	return fmt.Sprintf(`{"apiVersion":"sextant.io/v1","kind":"Service","host":%q,"namespace":%q,"ports":[%s]}`,
		host, ns, strings.Join(ports, ","))
}

func instanceJSON(addr string, extra string) string {
	if extra != "" {
		extra = "," + extra
	}
	return fmt.Sprintf(`{"apiVersion":"sextant.io/v1","kind":"Instance","address":%q%s}`, addr, extra)
}

func svcKey(ns, host string) string { return v1.ServiceKey(v1.DefaultPrefix, ns, host) }

func instKey(ns, host, name string) string {
	return v1.InstanceKey(v1.DefaultPrefix, ns, host, name)
}

// etcdModel reads the v1 records of etcd and returns, per host, the sorted
// addresses of its valid instances: what the model must show.
func etcdModel(t testing.TB, cli *clientv3.Client) (map[string]string, int64) {
	t.Helper()
	resp, err := cli.Get(ctx(t), v1.AllInstancesPrefix(v1.DefaultPrefix), clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	byHost := map[string][]string{}
	for _, kv := range resp.Kvs {
		k, err := v1.ParseKey(v1.DefaultPrefix, string(kv.Key))
		if err != nil {
			continue
		}
		in, err := v1.DecodeInstance(kv.Value)
		if err != nil || k.CheckInstance(in) != nil {
			continue
		}
		name := in.Address
		if k.Instance != in.Address {
			name += "(" + k.Instance + ")"
		}
		byHost[k.Host] = append(byHost[k.Host], name)
	}
	out := map[string]string{}
	for h, a := range byHost {
		slices.Sort(a)
		out[h] = strings.Join(a, ",")
	}
	return out, resp.Header.Revision
}

// checkEqualsEtcd waits until the registry caught up with etcd and checks
// that every service's endpoints are etcd's instances, and that instances
// of hosts that have a service record are served. It returns the snapshot
// and the events since the last Build.
func checkEqualsEtcd(t testing.TB, r *running, cli *clientv3.Client) (*model.Snapshot, []model.Event) {
	t.Helper()
	want, rev := etcdModel(t, cli)
	waitApplied(t, r.reg, rev)
	snap, evs := r.agg.Build()
	for _, svc := range snap.Services() {
		got := ""
		if es := snap.Endpoints(svc.Hostname); es != nil {
			names := strings.Split(addrs(es.Endpoints), ",")
			slices.Sort(names)
			got = strings.Join(names, ",")
		}
		if got != want[svc.Hostname] {
			t.Errorf("service %s: endpoints %q, etcd has %q", svc.Hostname, got, want[svc.Hostname])
		}
		delete(want, svc.Hostname)
	}
	resp, err := cli.Get(ctx(t), v1.ServicesPrefix(v1.DefaultPrefix), clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range resp.Kvs {
		k, err := v1.ParseKey(v1.DefaultPrefix, string(kv.Key))
		if err == nil && want[k.Host] != "" {
			t.Errorf("etcd has instances %s of %s, which the model does not serve", want[k.Host], k.Host)
		}
	}
	return snap, evs
}

// goroutines waits for the goroutine count to drop to at most n.
func checkGoroutines(t testing.TB, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := runtime.NumGoroutine()
		if got <= n {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("%d goroutines, want at most %d:\n%s", got, n, buf)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
