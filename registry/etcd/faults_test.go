package etcd

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/sextant-mesh/sextant/registry/etcd/etcdtest"
)

// TestRandomFaults writes random changes while the registry's connection
// is cut, etcd restarts and history is compacted, then checks the model
// equals etcd and equals what a registry started afterwards builds.
func TestRandomFaults(t *testing.T) {
	srv := etcdtest.Start(t)
	cli := srv.Client(t)
	proxy := etcdtest.NewProxy(t, srv.Endpoints()[0])
	r := startRegistry(t, proxy.Endpoints(), "")
	rng := rand.New(rand.NewPCG(1, 2))
	hostOf := func() string { return fmt.Sprintf("s%d.example.com", rng.IntN(6)) }
	for round := range 6 {
		for range 40 {
			h := hostOf()
			addr := fmt.Sprintf("10.1.%d.%d", rng.IntN(3), rng.IntN(8))
			switch n := rng.IntN(10); {
			case n < 5:
				put(t, cli, instKey("default", h, addr), instanceJSON(addr, fmt.Sprintf(`"weight":%d`, rng.IntN(3))))
			case n < 7:
				del(t, cli, instKey("default", h, addr))
			case n < 8:
				put(t, cli, instKey("default", h, addr), instanceJSON(addr, `"health":"sick"`))
			case n < 9:
				put(t, cli, svcKey("default", h), serviceJSON("default", h, fmt.Sprintf(`{"name":"http","number":%d}`, 8000+rng.IntN(3))))
			default:
				del(t, cli, svcKey("default", h))
			}
		}
		switch round % 3 {
		case 0:
			proxy.Pause()
			put(t, cli, instKey("default", hostOf(), "10.2.0.1"), instanceJSON("10.2.0.1", ""))
			del(t, cli, instKey("default", hostOf(), "10.1.0.1"))
			if round > 0 { // round 0 resumes by watch, round 3 lists again
				srv.Compact(t, cli)
			}
			time.Sleep(time.Duration(rng.IntN(300)) * time.Millisecond)
			proxy.Resume()
		case 1:
			srv.Restart()
		case 2:
			srv.Compact(t, cli)
		}
	}
	snap, _ := checkEqualsEtcd(t, r, cli)
	fresh := startRegistry(t, srv.Endpoints(), "")
	waitApplied(t, fresh.reg, r.reg.Revision())
	want, _ := fresh.agg.Build()
	if got, want := describe(snap), describe(want); got != want {
		t.Errorf("model after faults differs from a fresh load:\n--- after faults\n%s\n--- fresh\n%s", got, want)
	}
	if n := r.reg.lists.Load(); n < 2 {
		t.Errorf("listed %d times; the compaction while disconnected should have made it list again", n)
	}
	t.Logf("listings: %d; model:\n%s", r.reg.lists.Load(), describe(snap))
}
