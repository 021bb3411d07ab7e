package xds

import (
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Push workers never write to a socket. A response leaves a connection
// through its outbox: a FIFO of shared, pre-encoded responses (an
// *encoded holds references to the cached resource entries, so a queued
// response costs a few header bytes, not a copy) bounded by the bytes it
// would put on the wire. A writer goroutine drains it; it is started when
// the outbox becomes non-empty and exits when it is empty again, so an
// idle connection has none. Only the writer blocks on a proxy that does
// not read, for at most --send-timeout (the transport's send bound); a
// proxy whose outbox stays over maxOutboxBytes for --send-timeout, or
// grows past outboxHardLimit, is closed and counted in
// pilot_xds_write_timeout.

// maxOutboxBytes is the outbox size above which a connection counts as
// not keeping up. A full push of a large mesh is a few MiB.
const maxOutboxBytes = 16 << 20

// outboxHardLimit closes a connection at once: it is this far behind.
const outboxHardLimit = 4 * maxOutboxBytes

// outItem is one queued response.
type outItem struct {
	msg   any // *encoded or proto.Message
	size  int // wire bytes of msg
	label string
	count int // resources, for the push log
	bytes int // resource bytes, for metrics and the push log
	built time.Time
	recs  []*PushRecord
}

// outbox is a connection's queue of responses; under Connection.outMu.
type outbox struct {
	items     []outItem
	bytes     int
	writing   bool      // a writer goroutine is draining items
	fullSince time.Time // when bytes went over maxOutboxBytes; zero when under
	closed    bool      // the stream ended or failed: drop everything
}

func encodedSize(m any) int {
	switch v := m.(type) {
	case *encoded:
		n := 0
		for _, p := range v.parts {
			n += len(p)
		}
		return n
	case proto.Message:
		return proto.Size(v)
	}
	return 0
}

// sendAll queues prepared responses, in order, for the writer. It never
// blocks on the proxy; the error, if any, means the proxy is too far
// behind and the stream must end.
func (c *Connection) sendAll(sends []outgoing, recs []*PushRecord) error {
	if len(sends) == 0 {
		return nil
	}
	items := make([]outItem, len(sends))
	for i, o := range sends {
		items[i] = outItem{msg: o.msg, size: encodedSize(o.msg), label: typeLabel(o.w.typeURL), count: o.count, bytes: o.bytes, built: o.built, recs: recs}
	}
	return c.queueOut(items...)
}

// sendMsg queues one response that is not a push (istio.io/debug).
func (c *Connection) sendMsg(m proto.Message) error {
	return c.queueOut(outItem{msg: m, size: proto.Size(m), built: time.Now()})
}

func (c *Connection) queueOut(items ...outItem) error {
	now := time.Now()
	c.outMu.Lock()
	ob := &c.out
	if ob.closed {
		c.outMu.Unlock()
		return nil // the stream is ending; whoever closed it reports why
	}
	if ob.bytes > maxOutboxBytes && now.Sub(ob.fullSince) >= c.s.opts.SendTimeout || ob.bytes > outboxHardLimit {
		queued := ob.bytes
		c.dropOutLocked()
		c.outMu.Unlock()
		c.s.metrics.StuckStreams.Inc()
		c.s.log.Warn("closing stuck stream", "proxy", c.proxy.Name, "peer", c.peer, "queued_bytes", queued)
		return status.Errorf(codes.Unavailable, "client is not reading: %d bytes of responses queued for over %v; closing the stream", queued, c.s.opts.SendTimeout)
	}
	for _, it := range items {
		ob.items = append(ob.items, it)
		ob.bytes += it.size
	}
	if ob.bytes > maxOutboxBytes && ob.fullSince.IsZero() {
		ob.fullSince = now
	}
	start := !ob.writing
	ob.writing = true
	c.outMu.Unlock()
	if start {
		go c.writeOut()
	}
	return nil
}

// writeOut drains the outbox, then exits. A failed send (the transport
// gives up after --send-timeout) ends the stream.
func (c *Connection) writeOut() {
	for {
		c.outMu.Lock()
		ob := &c.out
		if ob.closed || len(ob.items) == 0 {
			ob.writing = false
			c.outMu.Unlock()
			return
		}
		it := ob.items[0]
		ob.items[0] = outItem{}
		ob.items = ob.items[1:]
		if len(ob.items) == 0 {
			ob.items = nil
		}
		c.outMu.Unlock()

		err := c.st.send(it.msg)

		c.outMu.Lock()
		ob.bytes -= it.size
		if ob.bytes <= maxOutboxBytes {
			ob.fullSince = time.Time{}
		}
		if err != nil {
			c.dropOutLocked()
			c.outMu.Unlock()
			if it.label != "" {
				c.s.metrics.Pushes.WithLabelValues(it.label + "_senderr").Inc()
			}
			c.st.close(err)
			return
		}
		c.outMu.Unlock()
		if it.label != "" {
			c.s.metrics.Pushes.WithLabelValues(it.label).Inc()
			c.s.metrics.PushTime.WithLabelValues(it.label).Observe(time.Since(it.built).Seconds())
			c.s.metrics.ConfigSize.WithLabelValues(it.label).Observe(float64(it.bytes))
			for _, rec := range it.recs {
				rec.addSent(it.count, it.bytes)
			}
		}
	}
}

// dropOutLocked discards what is queued; nothing more is queued or sent.
func (c *Connection) dropOutLocked() {
	c.out.closed = true
	c.out.items, c.out.bytes = nil, 0
}

// closeOut stops the writer once the stream ended.
func (c *Connection) closeOut() {
	c.outMu.Lock()
	c.dropOutLocked()
	c.outMu.Unlock()
}

// OutboxBytes is what is queued for the proxy and not yet written.
func (c *Connection) OutboxBytes() int {
	c.outMu.Lock()
	defer c.outMu.Unlock()
	return c.out.bytes
}
