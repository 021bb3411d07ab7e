package etcd

import (
	"testing"
)

// The retry schedule keeps its shape on wait.Backoff: retry n waits in
// [d/2, d] with d = minBackoff·2ⁿ capped at maxBackoff, forever.
func TestBackoffSchedule(t *testing.T) {
	b := newBackoff()
	for n := range 40 {
		d := min(minBackoff<<min(n, 20), maxBackoff)
		if got := b.Step(); got < d/2 || got > d {
			t.Fatalf("retry %d waits %v, want within [%v, %v]", n, got, d/2, d)
		}
	}
	if b := newBackoff(); b.Step() > minBackoff {
		t.Error("a new schedule does not start again from minBackoff")
	}
}
