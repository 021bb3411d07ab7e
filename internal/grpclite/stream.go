package grpclite

import (
	"context"
	"encoding/binary"
	"net"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Stream is one gRPC stream.
type Stream struct {
	c      *conn
	id     uint32
	method string
	ctx    context.Context
	cancel context.CancelFunc

	// Owned by the connection's goroutine: the message being received
	// (msgLen bytes declared; buf grows as they arrive), and the
	// request's declared content-length (-1: none) against what came.
	hdr        [5]byte
	hdrN       int
	inMsg      bool
	msgLen     int
	buf        []byte
	contentLen int64
	gotLen     int64
	// remoteDone: the client half-closed (END_STREAM).
	remoteDone atomic.Bool

	// Under c.fmu: receive-side flow control.
	recvWindow  int64 // what the client may still send on the stream
	recvUnacked int64 // consumed, not yet given back
	held        int64 // the connection's bytes held in buf
	released    bool

	// Under c.wmu.
	recv        Receiver
	sendWindow  int64
	pending     [][]byte
	pendingLen  int
	headersSent bool
	done        bool
	notified    bool
	stall       *time.Timer
	deadline    *time.Timer // grpc-timeout
	progress    time.Time
	// bridge is set for a call served by Server.Handler (see bridge.go);
	// its trailers wait in trailers until the queued data is written.
	bridge   *bridge
	trailers []byte
}

// Method returns the full method name.
func (st *Stream) Method() string { return st.method }

// Peer returns the client's address.
func (st *Stream) Peer() net.Addr { return st.c.nc.RemoteAddr() }

// Context is done when the stream or its connection ends.
func (st *Stream) Context() context.Context { return st.ctx }

// errStreamDone is what Send returns once the stream ended.
var errStreamDone = status.Error(codes.Unavailable, "stream closed")

// Send sends one message made of parts, which must not change afterwards:
// what the client's flow-control window does not admit yet is queued by
// reference. Send does not wait for the window; it fails when the queue
// exceeds MaxPending (the caller should Close the stream) or the
// connection broke.
func (st *Stream) Send(parts ...[]byte) error {
	c := st.c
	size := 0
	for _, p := range parts {
		size += len(p)
	}
	if size > 1<<31-1-5 {
		return status.Errorf(codes.ResourceExhausted, "message of %d bytes is too large", size)
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if st.done || c.closed {
		return errStreamDone
	}
	var frames net.Buffers
	if !st.headersSent {
		st.headersSent = true
		frames = append(frames, frame(http2.FrameHeaders, http2.FlagHeadersEndHeaders, st.id, responseHeaders()))
	}
	prefix := make([]byte, 5)
	binary.BigEndian.PutUint32(prefix[1:], uint32(size))
	return st.queueLocked(frames, prefix, parts)
}

// queueLocked queues data (first, then parts) and writes what the windows
// admit, after frames.
func (st *Stream) queueLocked(frames net.Buffers, first []byte, parts [][]byte) error {
	c := st.c
	if st.pendingLen == 0 {
		st.progress = time.Now() // the wait for the window starts now
	}
	if len(first) > 0 {
		st.pending = append(st.pending, first)
		st.pendingLen += len(first)
	}
	for _, p := range parts {
		if len(p) > 0 {
			st.pending = append(st.pending, p)
			st.pendingLen += len(p)
		}
	}
	if st.pendingLen > c.srv.maxPending() {
		if c.srv.OnStuck != nil {
			c.srv.OnStuck(st)
		}
		return status.Errorf(codes.Unavailable, "client is not reading: %d bytes queued on its stream", st.pendingLen)
	}
	frames = c.appendDataLocked(st, frames)
	if err := c.writeLocked(frames); err != nil {
		return status.Error(codes.Unavailable, err.Error())
	}
	if st.pendingLen > 0 && st.stall == nil {
		st.stall = time.AfterFunc(c.srv.writeTimeout(), st.checkStall)
	}
	return nil
}

// checkStall closes a stream whose queue has not moved for WriteTimeout.
func (st *Stream) checkStall() {
	c := st.c
	wt := c.srv.writeTimeout()
	c.wmu.Lock()
	if st.done || st.pendingLen == 0 {
		st.stall = nil
		c.wmu.Unlock()
		return
	}
	if idle := time.Since(st.progress); idle < wt {
		st.stall.Reset(wt - idle)
		c.wmu.Unlock()
		return
	}
	st.stall = nil
	c.wmu.Unlock()
	if c.srv.OnStuck != nil {
		c.srv.OnStuck(st)
	}
	st.Close(status.Errorf(codes.Unavailable, "client did not read its stream for %v; closing it", wt))
}

// Close ends the stream with err's status (nil: OK) and discards what is
// still queued. Receiver.Closed is called on the calling goroutine, so do
// not call Close holding a lock Closed takes.
func (st *Stream) Close(err error) { st.end(true, err) }

// abort ends the stream without writing anything (the client reset it or
// the connection is gone).
func (st *Stream) abort() { st.end(false, nil) }

// end finishes the stream once: trailers with err's status when send is
// set, then the stream's context, a bridged call's request body and the
// receiver learn that it ended.
func (st *Stream) end(send bool, err error) {
	c := st.c
	c.wmu.Lock()
	if st.done {
		c.wmu.Unlock()
		return
	}
	st.finishLocked()
	if send {
		var b []byte
		if !st.headersSent {
			b = responseHeaders() // trailers-only response
		}
		b = statusFields(b, err)
		// A broken connection is noticed by its reader.
		_ = c.writeLocked(net.Buffers{frame(http2.FrameHeaders, http2.FlagHeadersEndHeaders|http2.FlagHeadersEndStream, st.id, b)})
	}
	recv := st.takeReceiverLocked()
	c.wmu.Unlock()
	st.cancel()
	if st.bridge != nil {
		st.bridge.body.fail(context.Canceled)
	}
	c.release(st)
	_ = c.replenishConn()
	if recv != nil {
		recv.Closed()
	}
}

// GoAway tells the client of st's connection to open no more streams on
// it (GOAWAY with NO_ERROR, RFC 9113 §6.8), so it reconnects elsewhere:
// the streams open on it go on until they end, then the connection
// closes. Sextant calls it on each connection in turn while draining.
func (st *Stream) GoAway() { st.c.drain() }

func (st *Stream) finishLocked() {
	st.done = true
	st.pending, st.pendingLen = nil, 0
	if st.stall != nil {
		st.stall.Stop()
		st.stall = nil
	}
	if st.deadline != nil {
		st.deadline.Stop()
		st.deadline = nil
	}
	delete(st.c.streams, st.id)
	if st.c.goingAway && len(st.c.streams) == 0 {
		st.c.closeSoonLocked()
	}
}

// takeReceiverLocked returns the receiver to notify, once.
func (st *Stream) takeReceiverLocked() Receiver {
	if st.recv == nil || st.notified {
		return nil
	}
	st.notified = true
	return st.recv
}

// consume splits data into messages and delivers them. A message's
// buffer grows as its bytes arrive, never past the size its prefix
// declares (itself at most MaxRecvMsgSize): a prefix alone allocates
// nothing. A message that arrives in one piece gets a buffer of its exact
// size, which the receiver may keep.
func (st *Stream) consume(data []byte) error {
	for len(data) > 0 {
		if !st.inMsg {
			k := copy(st.hdr[st.hdrN:], data)
			st.hdrN += k
			data = data[k:]
			if st.hdrN < len(st.hdr) {
				return nil
			}
			n, err := st.declaredLen(st.hdr[:])
			if err != nil {
				return err
			}
			st.hdrN = 0
			if n == 0 {
				if err := st.deliver([]byte{}); err != nil {
					return err
				}
				continue
			}
			st.inMsg, st.msgLen, st.buf = true, n, nil
		}
		k := min(len(data), st.msgLen-len(st.buf))
		if len(st.buf)+k > cap(st.buf) {
			c := st.msgLen
			if len(st.buf)+k < st.msgLen {
				c = min(st.msgLen, max(2*cap(st.buf), len(st.buf)+k, 4096))
			}
			nb := make([]byte, len(st.buf), c)
			copy(nb, st.buf)
			st.buf = nb
		}
		st.buf = append(st.buf, data[:k]...)
		data = data[k:]
		if len(st.buf) == st.msgLen {
			msg := st.buf
			st.buf, st.inMsg = nil, false
			if err := st.deliver(msg); err != nil {
				return err
			}
		}
	}
	return nil
}

func (st *Stream) declaredLen(b []byte) (int, error) {
	if b[0] != 0 {
		return 0, status.Error(codes.Unimplemented, "compressed messages are not supported")
	}
	n := int(binary.BigEndian.Uint32(b[1:5]))
	if n > st.c.srv.maxRecv() {
		return 0, status.Errorf(codes.ResourceExhausted, "received message larger than max (%d vs. %d)", n, st.c.srv.maxRecv())
	}
	return n, nil
}

func (st *Stream) deliver(msg []byte) error {
	st.c.wmu.Lock()
	recv, done := st.recv, st.done
	st.c.wmu.Unlock()
	if done || recv == nil {
		return nil
	}
	return recv.Message(msg)
}
