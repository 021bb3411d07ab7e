package xds

import (
	"sync"

	"github.com/sextant-mesh/sextant/api/debug"
	"sync/atomic"
	"time"
)

// PushRecord tracks one push while it is in flight; PushLog returns it as
// debug.PushRecord.
type PushRecord struct {
	ID          uint64
	Start       time.Time
	Queued      time.Time
	Reason      string
	Full        bool
	EDSClusters []string
	Proxies     int

	mu          sync.Mutex
	sent        int
	resources   int
	bytes       int
	nacks       int
	converged   time.Time
	outstanding atomic.Int64
}

func (r *PushRecord) addSent(resources, bytes int) {
	r.mu.Lock()
	r.resources += resources
	r.bytes += bytes
	r.mu.Unlock()
}

// release drops one hold on the record; the last one marks it converged.
func (r *PushRecord) release(s *Server) {
	if r.outstanding.Add(-1) != 0 {
		return
	}
	now := time.Now()
	r.mu.Lock()
	r.converged = now
	r.mu.Unlock()
}

func (r *PushRecord) public() debug.PushRecord {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := debug.PushRecord{ID: r.ID, Start: r.Start, Queued: r.Queued, Reason: r.Reason, Full: r.Full,
		EDSClusters: r.EDSClusters, Proxies: r.Proxies, Sent: r.sent, Resources: r.resources, Bytes: r.bytes, Nacks: r.nacks}
	if !r.converged.IsZero() {
		c := r.converged
		out.Converged = &c
		out.ConvergedIn = c.Sub(r.Start)
	}
	return out
}

func (s *Server) recordPush(r *PushRecord) {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	s.pushLog = append(s.pushLog, r)
	if len(s.pushLog) > s.opts.PushLogSize {
		s.pushLog = s.pushLog[len(s.pushLog)-s.opts.PushLogSize:]
	}
}

// PushLog returns the recent pushes, oldest first.
func (s *Server) PushLog() []debug.PushRecord {
	s.logMu.Lock()
	recs := append([]*PushRecord(nil), s.pushLog...)
	s.logMu.Unlock()
	out := make([]debug.PushRecord, len(recs))
	for i, r := range recs {
		out[i] = r.public()
	}
	return out
}
