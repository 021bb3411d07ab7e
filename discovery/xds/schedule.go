package xds

// Scheduling: requests posted by the transport and pushes merged by the
// server wait on a connection until a push worker takes both at once;
// admission paces new streams.

import (
	"context"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// takePending returns the merged pending push and unschedules c, so a push
// queued from now on schedules it again.
func (c *Connection) takePending() *PushRequest {
	c.pushMu.Lock()
	defer c.pushMu.Unlock()
	r := c.pending
	c.pending = nil
	c.queued = false
	return r
}

// maxQueuedRequests bounds the requests a client may have waiting for a
// worker; a client that floods its stream is cut off.
const maxQueuedRequests = 1024

// posted is a request waiting for a push worker: raw, decoded by c.decode
// there, unless r is set already.
type posted struct {
	raw []byte
	r   *request
}

// post queues a request for a push worker, so the transport's goroutine
// goes back to reading at once and stays shallow (the lean transport uses
// it). r may be nil: raw is decoded on the worker.
func (c *Connection) post(raw []byte, r *request) error {
	c.pushMu.Lock()
	if c.done {
		c.pushMu.Unlock()
		return nil
	}
	if len(c.reqs) >= maxQueuedRequests {
		c.pushMu.Unlock()
		return status.Errorf(codes.ResourceExhausted, "more than %d requests waiting on one stream", maxQueuedRequests)
	}
	c.reqs = append(c.reqs, posted{raw: raw, r: r})
	schedule := !c.queued
	c.queued = true
	c.pushMu.Unlock()
	if schedule {
		c.s.pushq.put(c)
	}
	return nil
}

// takeWork returns the posted requests and the pending push and
// unschedules c, in one step: whatever is posted or enqueued after it
// schedules c again.
func (c *Connection) takeWork() ([]posted, *PushRequest) {
	c.pushMu.Lock()
	defer c.pushMu.Unlock()
	reqs, req := c.reqs, c.pending
	c.reqs, c.pending, c.queued = nil, nil, false
	return reqs, req
}

// runPush handles c's posted requests, then sends its pending push; it
// runs on a push worker.
func (c *Connection) runPush() {
	c.serial.Lock()
	reqs, req := c.takeWork()
	var err error
	for _, p := range reqs {
		if c.closed {
			break
		}
		r := p.r
		if r == nil {
			if r, err = c.decode(p.raw); err != nil {
				break
			}
		}
		if err = c.handle(r); err != nil {
			break
		}
	}
	if req != nil && err == nil && !c.closed {
		err = c.push(req)
	} else if req != nil {
		for _, rec := range req.records {
			rec.release(c.s)
		}
	}
	c.serial.Unlock()
	if err != nil {
		c.st.close(err)
	}
}

// admit waits for the stream's turn under the admission rate limit.
func (s *Server) admit(ctx context.Context) error {
	res := s.admission.Reserve()
	delay := res.Delay()
	if !res.OK() || delay > s.opts.AdmissionWait {
		res.Cancel()
		s.metrics.RejectedStreams.WithLabelValues("admission").Inc()
		return status.Error(codes.ResourceExhausted, "too many new xDS streams; retry with backoff")
	}
	if delay <= 0 {
		return nil
	}
	t := time.NewTimer(delay)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		res.Cancel()
		return status.FromContextError(ctx.Err()).Err()
	}
}
