package xds

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sextant-mesh/sextant/discovery/proxy"
)

// countStream counts what a Connection sends.
type countStream struct{ sent atomic.Int64 }

func (s *countStream) send(any) error { s.sent.Add(1); return nil }
func (s *countStream) close(error)    {}

// TestPostedRequestsAllHandled posts requests from several goroutines
// while push workers run: every one must be handled, including those
// posted while a worker is between taking the queue and unscheduling the
// connection (a lost request would leave a proxy's ACK unrecorded).
func TestPostedRequestsAllHandled(t *testing.T) {
	s := New(nil, Options{PushWorkers: 4})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.runPushWorkers(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	st := &countStream{}
	c := &Connection{s: s, id: "c", proxy: &proxy.Proxy{Name: "p.default"}, st: st, watches: map[string]*watch{},
		holds: map[*PushRecord]int{}, prefix: "x"}
	// Every request is a debug question, answered with one response.
	c.decode = func([]byte) (*request, error) { return &request{typeURL: DebugSyncz}, nil }
	const posters, each = 8, 500
	var wg sync.WaitGroup
	for range posters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				for c.post([]byte{0}, nil) != nil {
					time.Sleep(time.Millisecond) // queue full: wait for the workers
				}
			}
		}()
	}
	wg.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for st.sent.Load() < posters*each && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := st.sent.Load(); got != posters*each {
		t.Fatalf("%d of %d posted requests handled", got, posters*each)
	}
}

// TestPostAfterTakeWorkReschedules: once a worker has taken a
// connection's work, a request posted next schedules the connection again.
func TestPostAfterTakeWorkReschedules(t *testing.T) {
	s := New(nil, Options{})
	c := &Connection{s: s, st: &countStream{}}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := c.post([]byte{1}, nil); err != nil {
		t.Fatal(err)
	}
	if got, ok := s.pushq.take(ctx); !ok || got != c {
		t.Fatal("first post did not schedule the connection")
	}
	if err := c.post([]byte{2}, nil); err != nil {
		t.Fatal(err)
	}
	reqs, _ := c.takeWork()
	if len(reqs) != 2 {
		t.Fatalf("took %d requests, want 2", len(reqs))
	}
	if err := c.post([]byte{3}, nil); err != nil {
		t.Fatal(err)
	}
	if got, ok := s.pushq.take(ctx); !ok || got != c {
		t.Fatal("a post after takeWork did not schedule the connection again")
	}
	c.enqueue(&PushRequest{EDS: map[string]bool{"x": true}})
	_, req := c.takeWork()
	if req == nil {
		t.Fatal("pending push not taken")
	}
	c.enqueue(&PushRequest{EDS: map[string]bool{"y": true}})
	if got, ok := s.pushq.take(ctx); !ok || got != c {
		t.Fatal("a push after takeWork did not schedule the connection again")
	}
}
