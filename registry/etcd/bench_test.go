package etcd

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/sync/errgroup"

	v1 "github.com/sextant-mesh/sextant/api/etcd/v1"
	"github.com/sextant-mesh/sextant/model"
	"github.com/sextant-mesh/sextant/registry/etcd/etcdtest"
)

const (
	benchServices  = 1000
	benchInstances = 100
)

// populate writes services × instances records, 128 per transaction (etcd's
// default limit).
func populate(b *testing.B, cli *clientv3.Client, services, instances int) {
	b.Helper()
	var ops []clientv3.Op
	var batches [][]clientv3.Op
	flush := func() {
		if len(ops) > 0 {
			batches = append(batches, ops)
			ops = nil
		}
	}
	for s := range services {
		h := fmt.Sprintf("svc-%04d.bench.example.com", s)
		ops = append(ops, clientv3.OpPut(svcKey("bench", h), serviceJSON("bench", h,
			`{"name":"http","number":8080}`, `{"name":"grpc","number":9090}`)))
		for i := range instances {
			addr := fmt.Sprintf("10.%d.%d.%d", s/250, s%250, i+1)
			ops = append(ops, clientv3.OpPut(instKey("bench", h, addr), instanceJSON(addr,
				fmt.Sprintf(`"ports":{"http":18080},"labels":{"app":"svc-%04d","version":"v%d"},"locality":"eu/eu-%d"`, s, i%3, i%2))))
			if len(ops) >= 127 {
				flush()
			}
		}
	}
	flush()
	g, ctx := errgroup.WithContext(context.Background())
	g.SetLimit(4)
	for _, batch := range batches {
		g.Go(func() error {
			_, err := cli.Txn(ctx).Then(batch...).Commit()
			return err
		})
	}
	if err := g.Wait(); err != nil {
		b.Fatal(err)
	}
}

func heapAlloc() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// BenchmarkLoad100k loads 1,000 services × 100 instances from etcd into a
// new shard: time until synced, and heap held by the registry and shard.
func BenchmarkLoad100k(b *testing.B) {
	srv := etcdtest.Start(b)
	cli := srv.Client(b)
	start := time.Now()
	populate(b, cli, benchServices, benchInstances)
	b.Logf("populated %d records in %v", benchServices*(benchInstances+1), time.Since(start).Round(time.Millisecond))
	var total time.Duration
	var heap uint64
	n := 0
	for b.Loop() {
		b.StopTimer()
		before := heapAlloc()
		b.StartTimer()
		t0 := time.Now()
		r := startRegistry(b, srv.Endpoints(), "")
		for r.reg.lists.Load() == 0 {
			time.Sleep(time.Millisecond)
		}
		total += time.Since(t0)
		b.StopTimer()
		heap += heapAlloc() - before
		n++
		snap, _ := r.agg.Build()
		if got := len(snap.Services()); got != benchServices {
			b.Fatalf("%d services", got)
		}
		r.stop()
		b.StartTimer()
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(n), "load-ms")
	b.ReportMetric(float64(heap)/float64(n)/(1<<20), "heap-MB")
	b.ReportMetric(float64(heap)/float64(n)/float64(benchServices*benchInstances), "heap-B/instance")
}

// BenchmarkRegisterToEvent measures, with 100,000 instances loaded, the
// time from writing an instance to etcd until the shard records its event.
func BenchmarkRegisterToEvent(b *testing.B) {
	srv := etcdtest.Start(b)
	cli := srv.Client(b)
	populate(b, cli, benchServices, benchInstances)
	r := startRegistry(b, srv.Endpoints(), "")
	for r.reg.lists.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	r.agg.Build()
	i := 0
	for b.Loop() {
		h := fmt.Sprintf("svc-%04d.bench.example.com", i%benchServices)
		addr := fmt.Sprintf("10.200.%d.%d", i/250%250, i%250+1)
		i++
		select { // drain a stale signal
		case <-r.agg.Changed():
		default:
		}
		put(b, cli, instKey("bench", h, addr), instanceJSON(addr, `"ports":{"http":18080}`))
		select {
		case <-r.agg.Changed():
		case <-time.After(10 * time.Second):
			b.Fatal("no event")
		}
	}
	_, evs := r.agg.Build()
	if len(evs) == 0 || evs[0].Kind != model.EventEndpoints {
		b.Fatalf("events %v", evs)
	}
}

// BenchmarkApply100k is the registry's own share of a load, without etcd:
// parse 100,000 instance records (and 1,000 services), reconcile, and write
// them to a shard in one transaction.
func BenchmarkApply100k(b *testing.B) {
	var kvs []*mvccpb.KeyValue
	rev := int64(1)
	for s := range benchServices {
		h := fmt.Sprintf("svc-%04d.bench.example.com", s)
		kvs = append(kvs, &mvccpb.KeyValue{Key: []byte(svcKey("bench", h)), Value: []byte(serviceJSON("bench", h)), CreateRevision: rev, ModRevision: rev})
		rev++
		for i := range benchInstances {
			addr := fmt.Sprintf("10.%d.%d.%d", s/250, s%250, i+1)
			kvs = append(kvs, &mvccpb.KeyValue{
				Key: []byte(instKey("bench", h, addr)),
				Value: []byte(instanceJSON(addr, fmt.Sprintf(`"ports":{"http":18080},"labels":{"app":"svc-%04d","version":"v%d"},"locality":"eu/eu-%d"`,
					s, i%3, i%2))),
				CreateRevision: rev, ModRevision: rev,
			})
			rev++
		}
	}
	for b.Loop() {
		agg := model.NewAggregator()
		shard := agg.NewShard(RegistryName)
		st := newState(v1.DefaultPrefix, testLogger(b))
		batch := newBatch()
		for i := 0; i < len(kvs); i += defaultPageSize {
			st.putAll(kvs[i:min(i+defaultPageSize, len(kvs))], 1, batch)
		}
		st.sweep(1, batch)
		shard.Update(st.prepare(batch).apply)
	}
}
