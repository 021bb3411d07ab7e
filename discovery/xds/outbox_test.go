package xds

import (
	"sync"
	"testing"
	"time"

	"github.com/sextant-mesh/sextant/model"
)

// blockingStream records sends and blocks each until released.
type blockingStream struct {
	mu      sync.Mutex
	sent    []*encoded
	release chan struct{}
	closed  chan error
}

func (b *blockingStream) send(m any) error {
	<-b.release
	b.mu.Lock()
	b.sent = append(b.sent, m.(*encoded))
	b.mu.Unlock()
	return nil
}

func (b *blockingStream) close(err error) {
	select {
	case b.closed <- err:
	default:
	}
}

// TestOutbox: queueing never waits for the proxy, responses leave in
// order on one writer that exits when the outbox is empty, and a proxy
// that falls too far behind is refused further responses (the caller
// closes it) and counted.
func TestOutbox(t *testing.T) {
	s := New(model.NewAggregator(), Options{SendTimeout: time.Hour})
	st := &blockingStream{release: make(chan struct{}), closed: make(chan error, 1)}
	c := &Connection{s: s, st: st, proxy: testProxy(t)}
	msg := func(n int) *encoded { return &encoded{parts: [][]byte{make([]byte, n)}} }

	start := time.Now()
	for i := range 3 {
		if err := c.queueOut(outItem{msg: msg(i + 1), size: i + 1, label: "cds", built: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("queueing waited %v for a proxy that does not read", d)
	}
	if got := c.OutboxBytes(); got != 6 {
		t.Errorf("outbox holds %d bytes, want 6", got)
	}
	for range 3 {
		st.release <- struct{}{}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		c.outMu.Lock()
		idle := !c.out.writing
		c.outMu.Unlock()
		if idle {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("writer still running with an empty outbox")
		}
		time.Sleep(time.Millisecond)
	}
	st.mu.Lock()
	for i, e := range st.sent {
		if len(e.parts[0]) != i+1 {
			t.Errorf("response %d has %d bytes: out of order", i, len(e.parts[0]))
		}
	}
	st.mu.Unlock()

	// Past the hard limit the outbox refuses and drops everything.
	big := outItem{msg: msg(1), size: outboxHardLimit + 1, label: "cds", built: time.Now()}
	if err := c.queueOut(big); err != nil {
		t.Fatal(err) // the first one is queued: the writer may yet take it
	}
	if err := c.queueOut(big); err == nil {
		t.Fatal("a proxy more than the hard limit behind was not refused")
	}
	if got := c.OutboxBytes(); got != 0 {
		t.Errorf("refused outbox still holds %d bytes", got)
	}
	close(st.release) // let the blocked writer finish
}
