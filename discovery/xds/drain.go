package xds

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"
)

var errDraining = errors.New("control plane is shutting down; reconnect")

// Drain stops accepting streams and closes existing ones spread over window
// with jitter, so proxies reconnect to other replicas gradually. /ready
// reports not ready from the start.
func (s *Server) Drain(ctx context.Context, window time.Duration) {
	s.draining.Store(true)
	conns := s.Connections()
	if len(conns) == 0 {
		return
	}
	// Each stream gets a random close time in the window.
	delays := make([]time.Duration, len(conns))
	for i := range conns {
		if window > 0 {
			delays[i] = time.Duration(rand.Int64N(int64(window)))
		}
	}
	done := make(chan struct{}, len(conns))
	for i, c := range conns {
		go func() {
			t := time.NewTimer(delays[i])
			defer t.Stop()
			select {
			case <-t.C:
			case <-ctx.Done():
			}
			c.st.close(errDraining)
			done <- struct{}{}
		}()
	}
	for range conns {
		<-done
	}
}
