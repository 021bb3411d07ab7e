package kube

import (
	"fmt"
	"testing"
	"time"

	"github.com/sextant-mesh/sextant/model"
)

// scaleSlices makes services×slices×perSlice endpoints, each with a Pod.
func scaleSlices(e *env, services, slices, perSlice int) {
	for s := range services {
		name := fmt.Sprintf("s%d", s)
		e.apply(service("scale", name, map[string]string{"app": name}, port("http", 80, 8080)))
		for sl := range slices {
			var eps []sliceEP
			for i := range perSlice {
				n := (s*slices+sl)*perSlice + i
				ip := fmt.Sprintf("10.%d.%d.%d", 100+n/65536, (n/256)%256, n%256)
				eps = append(eps, sliceEP{addr: ip})
			}
			e.apply(slice("scale", fmt.Sprintf("%s-%d", name, sl), name, "http", 8080, eps...))
		}
	}
}

func countEndpoints(s *model.Snapshot) int {
	n := 0
	for _, svc := range s.Services() {
		if es := s.Endpoints(svc.Hostname); es != nil {
			n += len(es.Endpoints)
		}
	}
	return n
}

// TestScale100kEndpoints loads 100k endpoints (100 services of 10 slices
// of 100) and then changes one slice, which must re-set only its service.
func TestScale100kEndpoints(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	e := newEnv(t)
	scaleSlices(e, 100, 10, 100)
	t0 := time.Now()
	e.start(Options{})
	synced := time.Since(t0)
	snap, _ := e.agg.Build()
	if n := countEndpoints(snap); n != 100_000 {
		t.Fatalf("%d endpoints, want 100000", n)
	}
	t.Logf("initial sync of 100k endpoints: %v", synced)

	es := slice("scale", "s42-3", "s42", "http", 8080, sliceEP{addr: "10.250.0.1"})
	t1 := time.Now()
	e.apply(es)
	var evs []model.Event
	for {
		s, ev := e.agg.Build()
		evs = append(evs, ev...)
		if got := s.Endpoints("s42.scale.svc.cluster.local"); got != nil && len(got.Endpoints) == 901 {
			break
		}
		if time.Since(t1) > 10*time.Second {
			t.Fatal("slice change not applied")
		}
		time.Sleep(time.Millisecond)
	}
	t.Logf("one slice change applied in %v", time.Since(t1))
	if len(evs) != 1 || evs[0].Kind != model.EventEndpoints {
		t.Errorf("events %v, want one endpoint event", evs)
	}
}
