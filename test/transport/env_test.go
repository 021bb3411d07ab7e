package transport

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/sextant-mesh/sextant/internal/adsclient"
	"github.com/sextant-mesh/sextant/internal/testenv"
)

// The ADS method h2spec and the raw attacks address.
const methodSotw = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"

var transports = []string{"lean", "grpc"}

// startServer runs Sextant's xDS server in plaintext on transport, as
// `sextant serve --xds-transport` does.
func startServer(t testing.TB, transport string) *testenv.Env {
	t.Helper()
	dir := t.TempDir()
	testenv.WriteFile(t, dir+"/mesh.yaml", testenv.ReviewsYAML)
	return testenv.Start(t, dir, testenv.Options{GRPCTransport: transport == "grpc"})
}

// goodProxy is a well-behaved ADS client (grpc-go, SotW, CDS and LDS
// wildcard) on its own connection; push measures how long a config change
// takes to reach it.
type goodProxy struct {
	env *testenv.Env
	c   *adsclient.Client
	n   int
}

func newGoodProxy(t testing.TB, env *testenv.Env) *goodProxy {
	t.Helper()
	cc, err := grpc.NewClient(env.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	c, err := adsclient.Start(ctx, cc, adsclient.Node("10.9.0.1", "good", "default", "", nil), adsclient.Options{})
	if err != nil {
		t.Fatal(err)
	}
	g := &goodProxy{env: env, c: c}
	if _, err := g.waitCDS(10*time.Second, nil); err != nil {
		t.Fatalf("good proxy: initial CDS: %v", err)
	}
	return g
}

// waitCDS waits for a CDS response that satisfies ok (nil: any).
func (g *goodProxy) waitCDS(timeout time.Duration, ok func(adsclient.Event) bool) (time.Time, error) {
	deadline := time.After(timeout)
	for {
		select {
		case e := <-g.c.Events():
			if e.TypeURL == resourcev3.ClusterType && (ok == nil || ok(e)) {
				return e.At, nil
			}
		case <-g.c.Done():
			return time.Time{}, fmt.Errorf("stream ended: %w", g.c.Err())
		case <-deadline:
			return time.Time{}, fmt.Errorf("no CDS response within %v", timeout)
		}
	}
}

// push changes the mesh (a service replaced by another) and returns how
// long the change took to reach the proxy.
func (g *goodProxy) push(t testing.TB) (time.Duration, error) {
	g.n++
	name := fmt.Sprintf("svc%d", g.n)
	before := g.c.SotWVersion(resourcev3.ClusterType)
	start := time.Now()
	g.env.WriteFile(t, "push.yaml", testenv.StaticServiceEntry(name, fmt.Sprintf("10.7.%d.%d", g.n/250, g.n%250+1)))
	at, err := g.waitCDS(10*time.Second, func(e adsclient.Event) bool { return e.Version != before })
	if err != nil {
		return 0, err
	}
	return at.Sub(start), nil
}

// p99 of a few samples is their maximum; it is what is reported.
func p99(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[(len(s)*99+99)/100-1]
}

// heapWatch samples the process's heap while an attack runs: the server
// runs in this process (the attacker's own buffers are small and counted
// too, an upper bound).
type heapWatch struct {
	base uint64
	peak uint64
	stop chan struct{}
	wg   sync.WaitGroup
}

func watchHeap() *heapWatch {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	h := &heapWatch{base: m.HeapInuse, peak: m.HeapInuse, stop: make(chan struct{})}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-h.stop:
				return
			case <-tick.C:
				var m runtime.MemStats
				runtime.ReadMemStats(&m)
				h.peak = max(h.peak, m.HeapInuse)
			}
		}
	}()
	return h
}

// growth stops sampling and returns the peak growth in MiB.
func (h *heapWatch) growth() float64 {
	close(h.stop)
	h.wg.Wait()
	return float64(h.peak-h.base) / (1 << 20)
}
