package grpclite

import (
	"context"
	"net"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// rawClient is a hand-written HTTP/2 client for protocol-level checks.
type rawClient struct {
	t  *testing.T
	nc net.Conn
	fr *http2.Framer
}

func newRawClient(t *testing.T, addr string) *rawClient {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	fr := http2.NewFramer(nc, nc)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	if _, err := nc.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	return &rawClient{t: t, nc: nc, fr: fr}
}

func (c *rawClient) headers(id uint32, end bool, fields ...[2]string) {
	c.t.Helper()
	var hb []byte
	for _, kv := range fields {
		hb = appendLiteral(hb, kv[0], kv[1])
	}
	if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hb, EndHeaders: true, EndStream: end}); err != nil {
		c.t.Fatal(err)
	}
}

var grpcRequest = [][2]string{{":method", "POST"}, {":scheme", "http"}, {":path", chat}, {":authority", "x"},
	{"content-type", "application/grpc"}, {"te", "trailers"}}

// until reads frames until match returns true.
func (c *rawClient) until(what string, match func(http2.Frame) bool) http2.Frame {
	c.t.Helper()
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			c.t.Fatalf("waiting for %s: %v", what, err)
		}
		if match(f) {
			return f
		}
	}
}

// TestSettingsAckBeforeStream: SETTINGS are acknowledged at once, before
// the client opens any stream (RFC 9113 §6.5.3).
func TestSettingsAckBeforeStream(t *testing.T) {
	c := newRawClient(t, start(t, echoServer()))
	c.until("SETTINGS ACK", func(f http2.Frame) bool {
		s, ok := f.(*http2.SettingsFrame)
		return ok && s.IsAck()
	})
}

// TestInvalidMaxFrameSize: SETTINGS_MAX_FRAME_SIZE = 0 ends the connection
// with GOAWAY PROTOCOL_ERROR (it used to make the next response loop
// forever).
func TestInvalidMaxFrameSize(t *testing.T) {
	c := newRawClient(t, start(t, echoServer()))
	if err := c.fr.WriteRawFrame(http2.FrameSettings, 0, 0, []byte{0, 5, 0, 0, 0, 0}); err != nil {
		t.Fatal(err)
	}
	c.headers(1, false, grpcRequest...)
	_ = c.fr.WriteData(1, false, []byte{0, 0, 0, 0, 1, 'x'})
	ga := c.until("GOAWAY", func(f http2.Frame) bool { _, ok := f.(*http2.GoAwayFrame); return ok }).(*http2.GoAwayFrame)
	if ga.ErrCode != http2.ErrCodeProtocol {
		t.Fatalf("GOAWAY %v, want PROTOCOL_ERROR", ga.ErrCode)
	}
}

// TestHalfCloseStillAnswered: a request sent with END_STREAM in the same
// DATA frame is answered, even when the receiver answers later on another
// goroutine and does not implement HalfCloser.
func TestHalfCloseStillAnswered(t *testing.T) {
	s := &Server{Methods: map[string]StreamHandler{chat: func(st *Stream) (Receiver, error) {
		return onlyMessages(func(b []byte) error {
			go func() {
				time.Sleep(50 * time.Millisecond)
				_ = st.Send([]byte("late:"), b)
				st.Close(nil)
			}()
			return nil
		}), nil
	}}}
	c := newRawClient(t, start(t, s))
	c.headers(1, false, grpcRequest...)
	if err := c.fr.WriteData(1, true, []byte{0, 0, 0, 0, 2, 'h', 'i'}); err != nil {
		t.Fatal(err)
	}
	d := c.until("DATA", func(f http2.Frame) bool { _, ok := f.(*http2.DataFrame); return ok }).(*http2.DataFrame)
	if got := string(d.Data()[5:]); got != "late:hi" {
		t.Fatalf("response %q, want late:hi", got)
	}
}

type onlyMessages func([]byte) error

func (f onlyMessages) Message(b []byte) error { return f(b) }
func (onlyMessages) Closed()                  {}

// TestWrongContentType: HTTP 415 with a gRPC status, as grpc-go answers.
func TestWrongContentType(t *testing.T) {
	c := newRawClient(t, start(t, echoServer()))
	c.headers(1, true, [][2]string{{":method", "POST"}, {":scheme", "http"}, {":path", chat}, {":authority", "x"},
		{"content-type", "text/plain"}}...)
	h := c.until("response headers", func(f http2.Frame) bool { _, ok := f.(*http2.MetaHeadersFrame); return ok }).(*http2.MetaHeadersFrame)
	if h.PseudoValue("status") != "415" || !h.StreamEnded() {
		t.Fatalf("got :status %q (end %v), want 415 ending the stream", h.PseudoValue("status"), h.StreamEnded())
	}
}

// TestConnectionHeaderRejected: a connection-specific header makes the
// request malformed (RFC 9113 §8.2.2): RST_STREAM PROTOCOL_ERROR.
func TestConnectionHeaderRejected(t *testing.T) {
	c := newRawClient(t, start(t, echoServer()))
	c.headers(1, true, append(append([][2]string{}, grpcRequest...), [2]string{"connection", "keep-alive"})...)
	rst := c.until("RST_STREAM", func(f http2.Frame) bool { _, ok := f.(*http2.RSTStreamFrame); return ok }).(*http2.RSTStreamFrame)
	if rst.ErrCode != http2.ErrCodeProtocol {
		t.Fatalf("RST_STREAM %v, want PROTOCOL_ERROR", rst.ErrCode)
	}
}

// TestGRPCTimeout: a stream past its grpc-timeout ends with
// DEADLINE_EXCEEDED.
func TestGRPCTimeout(t *testing.T) {
	c := newRawClient(t, start(t, echoServer()))
	c.headers(1, false, append(append([][2]string{}, grpcRequest...), [2]string{"grpc-timeout", "100m"})...)
	h := c.until("trailers", func(f http2.Frame) bool {
		h, ok := f.(*http2.MetaHeadersFrame)
		return ok && h.StreamEnded()
	}).(*http2.MetaHeadersFrame)
	for _, hf := range h.RegularFields() {
		if hf.Name == "grpc-status" && hf.Value == "4" {
			return
		}
	}
	t.Fatalf("trailers %v, want grpc-status 4", h.Fields)
}

// TestShutdownGoAway: Shutdown sends GOAWAY(NO_ERROR), the open stream
// goes on, and Shutdown returns once it ended.
func TestShutdownGoAway(t *testing.T) {
	s := echoServer()
	c := newRawClient(t, start(t, s))
	c.headers(1, false, grpcRequest...)
	_ = c.fr.WriteData(1, false, []byte{0, 0, 0, 0, 1, 'a'})
	c.until("first echo", func(f http2.Frame) bool { _, ok := f.(*http2.DataFrame); return ok })
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- s.Shutdown(ctx)
	}()
	ga := c.until("GOAWAY", func(f http2.Frame) bool { _, ok := f.(*http2.GoAwayFrame); return ok }).(*http2.GoAwayFrame)
	if ga.ErrCode != http2.ErrCodeNo || ga.LastStreamID != 1 {
		t.Fatalf("GOAWAY %v last %d, want NO_ERROR last 1", ga.ErrCode, ga.LastStreamID)
	}
	_ = c.fr.WriteData(1, false, []byte{0, 0, 0, 0, 1, 'b'})
	d := c.until("echo after GOAWAY", func(f http2.Frame) bool { _, ok := f.(*http2.DataFrame); return ok }).(*http2.DataFrame)
	if string(d.Data()[5:]) != "echo:b" {
		t.Fatalf("after GOAWAY: %q", d.Data())
	}
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned %v with a stream open", err)
	case <-time.After(100 * time.Millisecond):
	}
	_ = c.fr.WriteData(1, true, nil) // half-close: the echo server ends the stream
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Shutdown: %v (the last stream ended)", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown did not return")
	}
}
