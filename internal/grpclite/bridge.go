package grpclite

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/net/http2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// A call to a method grpclite does not implement, on a connection it
// serves, goes to Server.Handler (a grpc.Server's ServeHTTP) through a
// bridge: the handler gets an http.Request whose body is the stream's
// incoming data and an http.ResponseWriter that writes frames on the
// stream. So a connection that started with an ADS stream can also carry,
// say, the CA's CreateCertificate; such a call costs grpc-go's
// handler-transport goroutines while it runs.

// bridge is a bridged call's state.
type bridge struct {
	body *body
}

var errBodyClosed = errors.New("grpclite: request body closed")

// body is a bridged call's request body, fed by the connection goroutine.
// What the handler reads gives the client its flow-control window back
// (conn.consumed), so a handler that does not read holds back its client.
type body struct {
	c    *conn
	st   *Stream
	mu   sync.Mutex
	cond sync.Cond
	buf  []byte
	eof  bool
	err  error
}

func newBody(c *conn, st *Stream) *body {
	b := &body{c: c, st: st}
	b.cond.L = &b.mu
	return b
}

// write appends incoming data (end: the client finished sending). More
// than limit bytes waiting unread is an error.
func (b *body) write(p []byte, limit int, end bool) error {
	b.mu.Lock()
	if b.err != nil || b.eof {
		b.mu.Unlock()
		// Dropped: given back to the connection at once.
		b.dropped(len(p), false)
		return nil
	}
	if len(p) > 0 && len(b.buf)+len(p) > limit+5 {
		b.err = status.Errorf(codes.ResourceExhausted, "request larger than %d bytes", limit)
		b.cond.Broadcast()
		b.mu.Unlock()
		b.dropped(len(p), false)
		return b.err
	}
	b.buf = append(b.buf, p...)
	b.eof = end
	b.cond.Broadcast()
	b.mu.Unlock()
	if len(p) > 0 && b.c != nil {
		b.c.fmu.Lock()
		b.c.held += int64(len(p))
		b.c.fmu.Unlock()
	}
	return nil
}

// dropped gives n bytes back to the connection (held: they were counted
// in what it holds).
func (b *body) dropped(n int, held bool) {
	if n > 0 && b.c != nil {
		b.c.consumed(nil, n, held)
	}
}

func (b *body) fail(err error) {
	b.mu.Lock()
	if b.err == nil {
		b.err = err
	}
	n := len(b.buf)
	b.buf = nil
	b.cond.Broadcast()
	b.mu.Unlock()
	b.dropped(n, true)
}

func (b *body) Read(p []byte) (int, error) {
	b.mu.Lock()
	for len(b.buf) == 0 && !b.eof && b.err == nil {
		b.cond.Wait()
	}
	if len(b.buf) > 0 {
		n := copy(p, b.buf)
		b.buf = b.buf[n:]
		if len(b.buf) == 0 {
			b.buf = nil
		}
		b.mu.Unlock()
		if b.c != nil {
			b.c.consumed(b.st, n, true)
		}
		return n, nil
	}
	defer b.mu.Unlock()
	if b.err != nil {
		return 0, b.err
	}
	return 0, io.EOF
}

func (b *body) Close() error {
	b.fail(errBodyClosed)
	return nil
}

// startBridge runs Server.Handler for st on a goroutine of its own.
func (c *conn) startBridge(st *Stream, f *http2.MetaHeadersFrame) {
	h := http.Header{}
	for _, hf := range f.RegularFields() {
		h.Add(hf.Name, hf.Value)
	}
	req := &http.Request{Method: http.MethodPost, URL: &url.URL{Path: st.method}, Proto: "HTTP/2.0", ProtoMajor: 2,
		Header: h, Body: st.bridge.body, Host: f.PseudoValue("authority"), RemoteAddr: c.nc.RemoteAddr().String(),
		RequestURI: st.method, ContentLength: -1}
	if tc, ok := c.nc.(*tls.Conn); ok {
		cs := tc.ConnectionState()
		req.TLS = &cs
	}
	req = req.WithContext(context.WithValue(st.ctx, http.LocalAddrContextKey, c.nc.LocalAddr()))
	w := &bridgeWriter{st: st, hdr: http.Header{}}
	go func() {
		c.srv.Handler.ServeHTTP(w, req)
		w.finish()
	}()
}

// bridgeWriter is a bridged call's http.ResponseWriter and http.Flusher.
type bridgeWriter struct {
	st  *Stream
	hdr http.Header
}

func (w *bridgeWriter) Header() http.Header { return w.hdr }

func (w *bridgeWriter) WriteHeader(code int) {
	w.st.c.wmu.Lock()
	defer w.st.c.wmu.Unlock()
	w.writeHeaderLocked(code)
}

func (w *bridgeWriter) writeHeaderLocked(code int) {
	st := w.st
	if st.headersSent || st.done || st.c.closed {
		return
	}
	st.headersSent = true
	var b []byte
	if code == http.StatusOK {
		b = append(b, status200)
	} else {
		b = appendLiteral(b, ":status", strconv.Itoa(code))
	}
	for k, vv := range w.hdr {
		if k == "Trailer" || strings.HasPrefix(k, http.TrailerPrefix) {
			continue
		}
		for _, v := range vv {
			b = appendLiteral(b, strings.ToLower(k), v)
		}
	}
	_ = st.c.writeLocked(net.Buffers{frame(http2.FrameHeaders, http2.FlagHeadersEndHeaders, st.id, b)})
}

func (w *bridgeWriter) Write(p []byte) (int, error) {
	c := w.st.c
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if w.st.done || c.closed {
		return 0, errStreamDone
	}
	w.writeHeaderLocked(http.StatusOK)
	if err := w.st.queueLocked(nil, append([]byte(nil), p...), nil); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (w *bridgeWriter) Flush() {
	w.st.c.wmu.Lock()
	defer w.st.c.wmu.Unlock()
	w.writeHeaderLocked(http.StatusOK)
}

// finish sends the trailers the handler declared ("Trailer") or added
// (http.TrailerPrefix), after any data still queued, and ends the stream.
func (w *bridgeWriter) finish() {
	st, c := w.st, w.st.c
	// The server closes a request body when the handler returns, as
	// net/http does.
	st.bridge.body.fail(errBodyClosed)
	c.wmu.Lock()
	if st.done {
		c.wmu.Unlock()
		return
	}
	w.writeHeaderLocked(http.StatusOK)
	var b []byte
	for _, decl := range w.hdr["Trailer"] {
		for _, name := range strings.Split(decl, ",") {
			name = strings.TrimSpace(name)
			for _, v := range w.hdr.Values(name) {
				b = appendLiteral(b, strings.ToLower(name), v)
			}
		}
	}
	for k, vv := range w.hdr {
		if name, ok := strings.CutPrefix(k, http.TrailerPrefix); ok {
			for _, v := range vv {
				b = appendLiteral(b, strings.ToLower(name), v)
			}
		}
	}
	tr := frame(http2.FrameHeaders, http2.FlagHeadersEndHeaders|http2.FlagHeadersEndStream, st.id, b)
	if st.pendingLen > 0 {
		st.trailers = tr // written by appendDataLocked once the data is out
		c.wmu.Unlock()
		return
	}
	_ = c.writeLocked(net.Buffers{tr})
	st.finishLocked()
	c.wmu.Unlock()
	st.cancel()
}
