package grpclite

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

const (
	defaultWindow   = 65535
	defaultMaxFrame = 16384
	maxWindow       = 1<<31 - 1
	// maxHeaderList bounds a request's decoded header list (advertised
	// as SETTINGS_MAX_HEADER_LIST_SIZE); a larger one gets HTTP 431.
	maxHeaderList = 64 << 10
	// maxFrameRead bounds the bytes one frame read may take from the
	// socket. Frames are at most 16 KiB (no larger MAX_FRAME_SIZE is
	// advertised), so only a header block continued over many
	// CONTINUATION frames comes near it: past it (a CONTINUATION flood,
	// CVE-2024-27316's family) the connection ends with GOAWAY
	// ENHANCE_YOUR_CALM.
	maxFrameRead = 4*maxHeaderList + 2*defaultMaxFrame
	// calmBurst and calmRate size the budget (a token bucket) for what
	// costs the server work but no client needs in bulk: resets either
	// way (rapid reset, CVE-2023-44487), refused and malformed streams,
	// SETTINGS frames, empty DATA frames. A client past it gets GOAWAY
	// ENHANCE_YOUR_CALM, as golang.org/x/net/http2 does for early resets.
	calmBurst = 1000
	calmRate  = 100 // tokens per second
)

var (
	errHandedOff  = errors.New("connection handed to the fallback server")
	errFrameFlood = errors.New("grpclite: header block too large (CONTINUATION flood)")
)

// conn is one HTTP/2 connection. Its goroutine (serve) reads; writers hold
// wmu.
type conn struct {
	srv *Server
	raw net.Conn // the accepted connection; Stop closes it
	nc  net.Conn // raw, or TLS over it once the handshake is done
	rec *recorder
	fr  *http2.Framer
	// authInfo describes the TLS connection (nil for plaintext).
	authInfo credentials.AuthInfo

	// Owned by the reading goroutine.
	decided     bool // served here (not handed over)
	renewals    int
	lastPing    time.Time
	pingStrikes int
	calmTokens  float64
	calmAt      time.Time

	// lastStream is the highest stream ID the client opened.
	lastStream atomic.Uint32
	started    atomic.Bool // the server preface is written
	lastRead   atomic.Int64
	pingOut    atomic.Bool
	// sentData is set when a response goes out; clients (grpc-go's
	// bandwidth estimator) ping after data, so that clears ping strikes.
	sentData atomic.Bool
	ka       *time.Timer

	// fmu guards receive-side flow control, shared with bridged calls'
	// handlers, which consume their request bodies on goroutines of
	// their own. Lock order: wmu before fmu.
	fmu sync.Mutex
	// recvWindow is what the client may still send on the connection;
	// recvTarget the connection window granted (65535 until the
	// connection is decided, then Server.Window).
	recvWindow, recvTarget int64
	// held is what was received and not consumed yet: partial messages
	// and unread request bodies. The connection window is given back
	// only while held stays within Server.recvBudget.
	held int64

	wmu            sync.Mutex
	closed         bool
	goingAway      bool
	goAwayID       uint32
	sendWindow     int64
	peerInitWindow int64
	maxFrame       int
	streams        map[uint32]*Stream
}

func newConn(s *Server, nc net.Conn) *conn {
	c := &conn{srv: s, raw: nc, nc: nc, sendWindow: defaultWindow, peerInitWindow: defaultWindow, maxFrame: defaultMaxFrame,
		streams: map[uint32]*Stream{}, recvWindow: defaultWindow, recvTarget: defaultWindow, calmTokens: calmBurst}
	c.rec = &recorder{r: nc, on: s.Fallback != nil}
	c.newFramer(hpack.NewDecoder(4096, nil))
	return c
}

// newFramer (re)creates the frame reader. A Framer keeps a buffer as large
// as the largest frame it read; after a large one (a first request with
// the node's metadata) the connection gets a fresh Framer instead of
// holding that buffer for its lifetime. The HPACK decoder carries over.
func (c *conn) newFramer(dec *hpack.Decoder) {
	c.fr = http2.NewFramer(io.Discard, c.rec)
	c.fr.ReadMetaHeaders = dec
	c.fr.MaxHeaderListSize = maxHeaderList
	c.fr.SetMaxReadFrameSize(defaultMaxFrame)
}

// A Framer is renewed after a frame larger than smallFrame, at most
// maxRenewals times: that drops the buffer of a large first request, while
// a client that keeps sending large frames (a SotW ACK repeating 1,000
// names) keeps one buffer instead of allocating a new one per frame.
const (
	smallFrame  = 512
	maxRenewals = 2
)

// recorder keeps what was read until the connection is decided, so a
// connection can be handed over as if unread, and bounds what one frame
// read may take (n counts the bytes since the last reset).
type recorder struct {
	r   io.Reader
	buf []byte
	on  bool
	n   int
}

func (r *recorder) Read(p []byte) (int, error) {
	if r.n > maxFrameRead {
		return 0, errFrameFlood
	}
	n, err := r.r.Read(p)
	r.n += n
	if r.on {
		r.buf = append(r.buf, p[:n]...)
	}
	return n, err
}

// replayConn reads the recorded bytes before the live connection.
type replayConn struct {
	net.Conn
	r io.Reader
}

func (c *replayConn) Read(p []byte) (int, error) { return c.r.Read(p) }

func (c *conn) serve() {
	handedOff := false
	defer func() {
		if !handedOff {
			c.shutdown()
		}
	}()
	_ = c.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	if cfg := c.srv.TLSConfig; cfg != nil {
		tc := tls.Server(c.raw, cfg)
		_ = c.raw.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if err := tc.Handshake(); err != nil {
			c.srv.logger().Debug("grpclite: TLS handshake failed", "peer", c.raw.RemoteAddr().String(), "error", err)
			return
		}
		_ = c.raw.SetWriteDeadline(time.Time{})
		c.nc, c.rec.r = tc, tc
		c.authInfo = credentials.TLSInfo{State: tc.ConnectionState(),
			CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity}}
	}
	preface := make([]byte, len(http2.ClientPreface))
	if _, err := io.ReadFull(c.rec, preface); err != nil || string(preface) != http2.ClientPreface {
		c.closeGently()
		return
	}
	// Until its first stream, a client has not shown it is one: a
	// connection that opens none is closed after FirstStreamTimeout.
	_ = c.nc.SetReadDeadline(time.Now().Add(c.srv.firstStreamTimeout()))
	if err := c.write(settingsFrame(http2.Setting{ID: http2.SettingInitialWindowSize, Val: uint32(c.srv.window())},
		http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: uint32(c.srv.maxStreams())},
		http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: maxHeaderList})); err != nil {
		return
	}
	c.started.Store(true)
	c.lastRead.Store(time.Now().UnixNano())
	t, _ := c.srv.keepalive()
	c.ka = time.AfterFunc(t, c.keepaliveTick)
	for {
		c.rec.n = 0
		f, err := c.fr.ReadFrame()
		if err != nil {
			if c.readError(err) {
				continue
			}
			return
		}
		c.lastRead.Store(time.Now().UnixNano())
		large := f.Header().Length > smallFrame
		if err := c.handle(f); err != nil {
			if errors.Is(err, errHandedOff) {
				handedOff = true
				return
			}
			var ce http2.ConnectionError
			if errors.As(err, &ce) {
				c.goAway(http2.ErrCode(ce))
				c.closeGently()
			} else {
				c.srv.logger().Debug("grpclite: closing connection", "peer", c.nc.RemoteAddr().String(), "error", err)
			}
			return
		}
		if large && c.renewals < maxRenewals {
			c.renewals++
			c.newFramer(c.fr.ReadMetaHeaders)
		}
	}
}

// closeGently ends a connection (not HTTP/2, or after a GOAWAY for an
// error) with a FIN rather than a TCP reset, which could destroy the GOAWAY
// before the client reads it: what the client sent meanwhile is read and
// dropped for up to a second or 64 KiB first.
func (c *conn) closeGently() {
	c.wmu.Lock()
	c.closed = true // no more writes after the FIN
	c.wmu.Unlock()
	if cw, ok := c.nc.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
		_ = c.nc.SetReadDeadline(time.Now().Add(time.Second))
		_, _ = io.CopyN(io.Discard, c.nc, 64<<10)
	}
}

// readError answers a failed frame read; it reports whether the
// connection goes on.
func (c *conn) readError(err error) bool {
	var se http2.StreamError
	if errors.As(err, &se) {
		// A malformed request: the stream is reset, here even before
		// the connection is decided, so the client gets an answer.
		if se.StreamID%2 == 1 && se.StreamID > c.lastStream.Load() {
			c.lastStream.Store(se.StreamID)
		}
		if !c.decided {
			if err := c.decide(); err != nil {
				return false
			}
		}
		c.resetStream(se.StreamID, se.Code)
		if err := c.spend(1); err != nil {
			c.goAway(http2.ErrCodeEnhanceYourCalm)
			c.closeGently()
			return false
		}
		return true
	}
	var ce http2.ConnectionError
	var ne net.Error
	switch {
	case errors.As(err, &ce):
		c.goAway(http2.ErrCode(ce))
		c.closeGently()
	case errors.Is(err, http2.ErrFrameTooLarge):
		c.goAway(http2.ErrCodeFrameSize)
		c.closeGently()
	case errors.Is(err, errFrameFlood):
		c.goAway(http2.ErrCodeEnhanceYourCalm)
		c.closeGently()
	case errors.As(err, &ne) && ne.Timeout():
		// No first stream in time, or the last stream of a connection
		// told to go away ended.
		c.goAway(http2.ErrCodeNo)
	}
	return false
}

// refuse resets stream id for a malformed frame: a stream the client had
// not opened yet counts as opened (and closed).
func (c *conn) refuse(id uint32, code http2.ErrCode) error {
	if id%2 == 1 && id > c.lastStream.Load() {
		c.lastStream.Store(id)
	}
	if err := c.decide(); err != nil {
		return err
	}
	c.resetStream(id, code)
	return c.spend(1)
}

// spend takes n from the connection's budget for costly requests.
func (c *conn) spend(n float64) error {
	now := time.Now()
	if !c.calmAt.IsZero() {
		c.calmTokens = min(calmBurst, c.calmTokens+now.Sub(c.calmAt).Seconds()*calmRate)
	}
	c.calmAt = now
	c.calmTokens -= n
	if c.calmTokens < 0 {
		return http2.ConnectionError(http2.ErrCodeEnhanceYourCalm)
	}
	return nil
}

// idle reports whether id names a stream the client has not opened yet;
// frames other than HEADERS and PRIORITY on one are a connection error
// (RFC 9113 §5.1).
func (c *conn) idle(id uint32) bool { return id > c.lastStream.Load() }

func (c *conn) handle(f http2.Frame) error {
	switch f := f.(type) {
	case *http2.SettingsFrame:
		if f.IsAck() {
			return nil
		}
		if err := c.spend(1); err != nil {
			return err
		}
		if err := c.applySettings(f); err != nil {
			return err
		}
		// Acknowledged at once, before any stream (RFC 9113 §6.5.3).
		return c.write(frame(http2.FrameSettings, http2.FlagSettingsAck, 0, nil))
	case *http2.PingFrame:
		if f.IsAck() {
			c.pingOut.Store(false)
			return nil
		}
		if err := c.pingPolicy(); err != nil {
			return err
		}
		return c.write(frame(http2.FramePing, http2.FlagPingAck, 0, f.Data[:]))
	case *http2.WindowUpdateFrame:
		if f.StreamID != 0 && c.idle(f.StreamID) {
			return http2.ConnectionError(http2.ErrCodeProtocol)
		}
		return c.windowUpdate(f.StreamID, f.Increment)
	case *http2.MetaHeadersFrame:
		if f.HasPriority() && f.Priority.StreamDep == f.StreamID {
			// A stream cannot depend on itself (RFC 9113 §5.3.1).
			return c.refuse(f.StreamID, http2.ErrCodeProtocol)
		}
		return c.headers(f)
	case *http2.PriorityFrame:
		if f.StreamDep == f.StreamID {
			return c.refuse(f.StreamID, http2.ErrCodeProtocol)
		}
	case *http2.DataFrame:
		return c.data(f)
	case *http2.RSTStreamFrame:
		if c.idle(f.StreamID) {
			return http2.ConnectionError(http2.ErrCodeProtocol)
		}
		if st := c.stream(f.StreamID); st != nil {
			st.abort()
		}
		return c.spend(1)
	case *http2.GoAwayFrame:
		// The client opens no more streams; the open ones go on.
	case *http2.PushPromiseFrame:
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	return nil
}

func (c *conn) stream(id uint32) *Stream {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.streams[id]
}

// pingPolicy refuses a client that pings more often than
// MinPingInterval while no data flows, as grpc-go's server does: the third
// strike ends the connection with GOAWAY ENHANCE_YOUR_CALM.
func (c *conn) pingPolicy() error {
	now := time.Now()
	if c.sentData.Swap(false) {
		c.pingStrikes = 0
	}
	if !c.lastPing.IsZero() && now.Sub(c.lastPing) < c.srv.minPingInterval() {
		c.pingStrikes++
		if c.pingStrikes > 2 {
			return http2.ConnectionError(http2.ErrCodeEnhanceYourCalm)
		}
	}
	c.lastPing = now
	return nil
}

func (c *conn) applySettings(f *http2.SettingsFrame) error {
	// Values out of range are a connection error (RFC 9113 §6.5.2): a
	// MAX_FRAME_SIZE of 0 would make every DATA frame empty.
	if err := f.ForeachSetting(func(s http2.Setting) error { return s.Valid() }); err != nil {
		return err
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	var frames net.Buffers
	err := f.ForeachSetting(func(s http2.Setting) error {
		switch s.ID {
		case http2.SettingInitialWindowSize:
			delta := int64(s.Val) - c.peerInitWindow
			c.peerInitWindow = int64(s.Val)
			for _, st := range c.streams {
				st.sendWindow += delta
				if st.sendWindow > maxWindow {
					return http2.ConnectionError(http2.ErrCodeFlowControl)
				}
			}
			if delta > 0 {
				for _, st := range c.streams {
					frames = c.appendDataLocked(st, frames)
				}
			}
		case http2.SettingMaxFrameSize:
			c.maxFrame = int(s.Val)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return c.writeLocked(frames)
}

// decide keeps the connection here: the client has opened a stream, so
// it gets the full connection window and no read deadline.
func (c *conn) decide() error {
	if c.decided {
		return nil
	}
	c.decided = true
	c.rec.on, c.rec.buf = false, nil
	c.wmu.Lock()
	if !c.goingAway {
		_ = c.nc.SetReadDeadline(time.Time{})
	}
	c.wmu.Unlock()
	c.fmu.Lock()
	c.recvTarget = int64(c.srv.window())
	c.fmu.Unlock()
	return c.replenishConn()
}

// replenishConn gives the client back connection window for what was
// consumed, keeping what is held unconsumed within Server.recvBudget.
func (c *conn) replenishConn() error {
	c.fmu.Lock()
	allowed := min(c.recvTarget, c.recvTarget+int64(c.srv.recvBudget())-c.held)
	inc := allowed - c.recvWindow
	if inc <= 0 || inc < c.recvTarget/4 {
		c.fmu.Unlock()
		return nil
	}
	c.recvWindow += inc
	c.fmu.Unlock()
	return c.write(windowUpdateFrame(0, uint32(inc)))
}

// consumed gives st's window back for n bytes the application took
// (or that were dropped), and the connection's for what is no longer held.
func (c *conn) consumed(st *Stream, n int, held bool) {
	c.fmu.Lock()
	if held {
		c.held -= int64(n)
	}
	var frames [][]byte
	if st != nil && !st.remoteDone.Load() {
		st.recvUnacked += int64(n)
		if st.recvUnacked >= int64(c.srv.window())/4 {
			frames = append(frames, windowUpdateFrame(st.id, uint32(st.recvUnacked)))
			st.recvWindow += st.recvUnacked
			st.recvUnacked = 0
		}
	}
	c.fmu.Unlock()
	if len(frames) > 0 {
		_ = c.write(frames...)
	}
	_ = c.replenishConn()
}

func (c *conn) handOff() error {
	if c.ka != nil {
		c.ka.Stop()
	}
	c.srv.forget(c)
	rec := c.rec.buf
	c.rec.on, c.rec.buf = false, nil
	_ = c.nc.SetReadDeadline(time.Time{})
	c.srv.Fallback(&replayConn{Conn: c.nc, r: io.MultiReader(bytes.NewReader(rec), c.nc)})
	return errHandedOff
}

// badRequest is how a malformed or unacceptable request is answered:
// RST_STREAM with code, or (code 0) a trailers-only response with an HTTP
// status and a gRPC status, as grpc-go answers.
type badRequest struct {
	code   http2.ErrCode
	status int
	err    error
}

// connectionHeaders are connection-specific header fields, which make an
// HTTP/2 request malformed (RFC 9113 §8.2.2).
var connectionHeaders = map[string]bool{"connection": true, "proxy-connection": true, "keep-alive": true,
	"transfer-encoding": true, "upgrade": true}

// checkRequest validates a request's headers as RFC 9113 §8 and gRPC over
// HTTP/2 ask, in grpc-go's order.
func checkRequest(f *http2.MetaHeadersFrame) *badRequest {
	if f.Truncated {
		return &badRequest{status: http.StatusRequestHeaderFieldsTooLarge,
			err: status.Errorf(codes.ResourceExhausted, "header list larger than %d bytes", maxHeaderList)}
	}
	malformed := &badRequest{code: http2.ErrCodeProtocol}
	for _, hf := range f.PseudoFields() {
		switch hf.Name {
		case ":method", ":scheme", ":path", ":authority":
		default:
			return malformed
		}
	}
	if f.PseudoValue("method") == "" || f.PseudoValue("scheme") == "" || f.PseudoValue("path") == "" {
		return malformed
	}
	var ct, timeout string
	hosts := 0
	for _, hf := range f.RegularFields() {
		switch {
		case connectionHeaders[hf.Name]:
			return malformed
		case hf.Name == "te" && hf.Value != "trailers":
			return malformed
		case hf.Name == "content-type":
			ct = hf.Value
		case hf.Name == "grpc-timeout":
			timeout = hf.Value
		case hf.Name == "host":
			hosts++
		case hf.Name == "content-length":
			if _, err := strconv.ParseUint(hf.Value, 10, 63); err != nil {
				return malformed
			}
		}
	}
	if hosts > 1 {
		return &badRequest{status: http.StatusBadRequest, err: status.Error(codes.Internal, "more than one host header")}
	}
	if ct != "application/grpc" && !strings.HasPrefix(ct, "application/grpc+") && !strings.HasPrefix(ct, "application/grpc;") {
		return &badRequest{status: http.StatusUnsupportedMediaType,
			err: status.Errorf(codes.InvalidArgument, "invalid gRPC request content-type %q", ct)}
	}
	if timeout != "" {
		if _, err := decodeTimeout(timeout); err != nil {
			return &badRequest{status: http.StatusBadRequest, err: status.Errorf(codes.Internal, "malformed grpc-timeout: %v", err)}
		}
	}
	if f.PseudoValue("authority") == "" && hosts == 0 {
		return &badRequest{status: http.StatusBadRequest, err: status.Error(codes.Internal, "no host or :authority header present")}
	}
	if m := f.PseudoValue("method"); m != http.MethodPost {
		return &badRequest{status: http.StatusMethodNotAllowed,
			err: status.Errorf(codes.Internal, "received a HEADERS frame with :method %q which should be POST", m)}
	}
	return nil
}

// decodeTimeout parses grpc-timeout: up to 8 digits and a unit.
func decodeTimeout(s string) (time.Duration, error) {
	if len(s) < 2 || len(s) > 9 {
		return 0, fmt.Errorf("%q: want 1 to 8 digits and a unit", s)
	}
	var unit time.Duration
	switch s[len(s)-1] {
	case 'H':
		unit = time.Hour
	case 'M':
		unit = time.Minute
	case 'S':
		unit = time.Second
	case 'm':
		unit = time.Millisecond
	case 'u':
		unit = time.Microsecond
	case 'n':
		unit = time.Nanosecond
	default:
		return 0, fmt.Errorf("%q: unknown unit", s)
	}
	n, err := strconv.ParseUint(s[:len(s)-1], 10, 32)
	if err != nil {
		return 0, fmt.Errorf("%q: %w", s, err)
	}
	return time.Duration(n) * unit, nil
}

// earlyAbort answers a request without opening its stream.
func (c *conn) earlyAbort(id uint32, bad *badRequest, ended bool) {
	if bad.code != 0 {
		c.resetStream(id, bad.code)
		return
	}
	var b []byte
	if bad.status == http.StatusOK {
		b = append(b, status200)
	} else {
		b = appendLiteral(b, ":status", strconv.Itoa(bad.status))
	}
	b = appendLiteral(b, "content-type", "application/grpc")
	b = statusFields(b, bad.err)
	frames := [][]byte{frame(http2.FrameHeaders, http2.FlagHeadersEndHeaders|http2.FlagHeadersEndStream, id, b)}
	if !ended {
		frames = append(frames, rstFrame(id, http2.ErrCodeNo))
	}
	_ = c.write(frames...)
}

func (c *conn) headers(f *http2.MetaHeadersFrame) error {
	id := f.StreamID
	if st := c.stream(id); st != nil {
		switch {
		case st.remoteDone.Load():
			c.resetStream(id, http2.ErrCodeStreamClosed)
			return c.spend(1)
		case !f.StreamEnded():
			// Trailers must end the stream (RFC 9113 §8.1).
			c.resetStream(id, http2.ErrCodeProtocol)
			return c.spend(1)
		}
		c.halfClose(st)
		return nil
	}
	if id%2 == 0 || id <= c.lastStream.Load() {
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	c.lastStream.Store(id)
	method := f.PseudoValue("path")
	h := c.srv.Methods[method]
	bad := checkRequest(f)
	if bad == nil && h == nil && !c.decided && c.srv.Fallback != nil {
		return c.handOff()
	}
	if err := c.decide(); err != nil {
		return err
	}
	if bad != nil {
		c.earlyAbort(id, bad, f.StreamEnded())
		return c.spend(1)
	}
	st := &Stream{c: c, id: id, method: method, contentLen: -1}
	st.recvWindow = int64(c.srv.window())
	for _, hf := range f.RegularFields() {
		if hf.Name == "content-length" {
			st.contentLen, _ = strconv.ParseInt(hf.Value, 10, 64)
		}
	}
	ctx := context.Background()
	if c.srv.Metadata {
		ctx = peer.NewContext(ctx, &peer.Peer{Addr: c.nc.RemoteAddr(), LocalAddr: c.nc.LocalAddr(), AuthInfo: c.authInfo})
		ctx = metadata.NewIncomingContext(ctx, headerMetadata(f))
	}
	var timeout time.Duration
	for _, hf := range f.RegularFields() {
		if hf.Name == "grpc-timeout" {
			timeout, _ = decodeTimeout(hf.Value)
		}
	}
	if timeout > 0 {
		st.ctx, st.cancel = context.WithTimeout(ctx, timeout)
	} else {
		st.ctx, st.cancel = context.WithCancel(ctx)
	}
	bridged := h == nil && c.srv.Handler != nil
	if bridged {
		st.bridge = &bridge{body: newBody(c, st)}
	}
	c.wmu.Lock()
	if c.closed {
		c.wmu.Unlock()
		st.cancel()
		return net.ErrClosed
	}
	if len(c.streams) >= c.srv.maxStreams() || (c.goingAway && id > c.goAwayID) {
		c.wmu.Unlock()
		st.cancel()
		c.resetStream(id, http2.ErrCodeRefusedStream)
		return c.spend(1)
	}
	st.sendWindow = c.peerInitWindow
	c.streams[id] = st
	if timeout > 0 {
		st.deadline = time.AfterFunc(timeout, func() {
			st.Close(status.Error(codes.DeadlineExceeded, "grpc-timeout expired"))
		})
	}
	c.wmu.Unlock()
	if bridged {
		c.startBridge(st, f)
		if f.StreamEnded() {
			c.halfClose(st)
		}
		return nil
	}
	if h == nil {
		st.Close(status.Errorf(codes.Unimplemented, "unknown method %s", method))
		return nil
	}
	recv, err := h(st)
	if err != nil {
		st.Close(err)
		return nil
	}
	c.wmu.Lock()
	st.recv = recv
	notify := st.done && !st.notified
	st.notified = st.notified || notify
	c.wmu.Unlock()
	if notify {
		recv.Closed()
		return nil
	}
	if f.StreamEnded() {
		c.halfClose(st)
	}
	return nil
}

// halfClose records that the client sent all it will (END_STREAM). The
// stream stays open for the server's responses: a client that half-closes
// after its request still gets the answer, as from grpc-go. A bridged
// call's handler sees the end of its request body; a Receiver that is a
// HalfCloser is told.
func (c *conn) halfClose(st *Stream) {
	st.remoteDone.Store(true)
	if st.contentLen >= 0 && st.gotLen != st.contentLen {
		// content-length must match the DATA received (RFC 9113 §8.1.1).
		c.resetStream(st.id, http2.ErrCodeProtocol)
		return
	}
	if st.bridge != nil {
		_ = st.bridge.body.write(nil, 0, true)
		return
	}
	c.wmu.Lock()
	recv := st.recv
	done := st.done
	c.wmu.Unlock()
	if hc, ok := recv.(HalfCloser); ok && !done {
		hc.HalfClosed()
	}
}

// headerMetadata is a stream's request headers as grpc-go presents them
// to handlers: gRPC's reserved headers left out, binary ones decoded.
func headerMetadata(f *http2.MetaHeadersFrame) metadata.MD {
	md := metadata.MD{}
	if a := f.PseudoValue("authority"); a != "" {
		md[":authority"] = []string{a}
	}
	for _, hf := range f.RegularFields() {
		switch hf.Name {
		case "content-type", "te", "grpc-message-type", "grpc-encoding", "grpc-accept-encoding",
			"grpc-message", "grpc-status", "grpc-timeout", "grpc-status-details-bin":
			continue
		}
		v := hf.Value
		if strings.HasSuffix(hf.Name, "-bin") {
			b, err := base64.StdEncoding.DecodeString(v)
			if err != nil {
				b, err = base64.RawStdEncoding.DecodeString(v)
			}
			if err != nil {
				continue
			}
			v = string(b)
		}
		md[hf.Name] = append(md[hf.Name], v)
	}
	return md
}

func (c *conn) data(f *http2.DataFrame) error {
	id, n := f.StreamID, int64(f.Length)
	if c.idle(id) {
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	c.fmu.Lock()
	if n > c.recvWindow {
		c.fmu.Unlock()
		return http2.ConnectionError(http2.ErrCodeFlowControl)
	}
	c.recvWindow -= n
	c.fmu.Unlock()
	st := c.stream(id)
	if st == nil || st.remoteDone.Load() {
		// Closed, or half-closed by the client: the bytes are dropped
		// and the stream is reset with STREAM_CLOSED (RFC 9113 §5.1).
		c.consumed(nil, 0, false)
		c.resetStream(id, http2.ErrCodeStreamClosed)
		return c.spend(1)
	}
	c.fmu.Lock()
	over := n > st.recvWindow
	if !over {
		st.recvWindow -= n
	}
	c.fmu.Unlock()
	if over {
		// Beyond the stream's window: that stream ends (RFC 9113 §6.9).
		c.consumed(nil, 0, false)
		c.resetStream(id, http2.ErrCodeFlowControl)
		return c.spend(1)
	}
	if n == 0 && !f.StreamEnded() {
		if err := c.spend(1); err != nil {
			return err
		}
	}
	data := f.Data()
	st.gotLen += int64(len(data))
	if st.contentLen >= 0 && (st.gotLen > st.contentLen || f.StreamEnded() && st.gotLen != st.contentLen) {
		c.consumed(st, int(n), false)
		c.resetStream(id, http2.ErrCodeProtocol)
		return nil
	}
	if st.bridge != nil {
		// Padding is consumed at once; the data when the handler reads.
		c.consumed(st, int(n)-len(data), false)
		if err := st.bridge.body.write(data, c.srv.maxRecv(), false); err != nil {
			c.resetStream(st.id, http2.ErrCodeFlowControl)
			return nil
		}
	} else {
		err := st.consume(data)
		c.account(st)
		// Delivered messages are consumed; a partial one is held within
		// MaxRecvMsgSize per stream and Server.recvBudget per connection.
		c.consumed(st, int(n), false)
		if err != nil {
			st.Close(err)
			return nil
		}
	}
	if f.StreamEnded() {
		c.halfClose(st)
	}
	return nil
}

// account updates what st's partial message holds of the connection.
func (c *conn) account(st *Stream) {
	c.fmu.Lock()
	defer c.fmu.Unlock()
	if st.released {
		return
	}
	n := int64(cap(st.buf))
	c.held += n - st.held
	st.held = n
}

// release drops st's share of what the connection holds, once it ended.
func (c *conn) release(st *Stream) {
	c.fmu.Lock()
	c.held -= st.held
	st.held, st.released = 0, true
	c.fmu.Unlock()
}

func (c *conn) windowUpdate(id, inc uint32) error {
	c.wmu.Lock()
	var frames net.Buffers
	if id == 0 {
		c.sendWindow += int64(inc)
		if c.sendWindow > maxWindow {
			c.wmu.Unlock()
			return http2.ConnectionError(http2.ErrCodeFlowControl)
		}
		for _, st := range c.streams {
			frames = c.appendDataLocked(st, frames)
		}
	} else if st := c.streams[id]; st != nil {
		st.sendWindow += int64(inc)
		if st.sendWindow > maxWindow {
			// Only that stream ends (RFC 9113 §6.9.1).
			c.wmu.Unlock()
			c.resetStream(id, http2.ErrCodeFlowControl)
			return nil
		}
		frames = c.appendDataLocked(st, frames)
	}
	defer c.wmu.Unlock()
	return c.writeLocked(frames)
}

// appendDataLocked moves as much of st's queue as the windows admit into
// DATA frames.
func (c *conn) appendDataLocked(st *Stream, frames net.Buffers) net.Buffers {
	for st.pendingLen > 0 && st.sendWindow > 0 && c.sendWindow > 0 && c.maxFrame > 0 {
		n := min(int64(st.pendingLen), st.sendWindow, c.sendWindow, int64(c.maxFrame))
		frames = append(frames, frameHeader(int(n), http2.FrameData, 0, st.id))
		for left := int(n); left > 0; {
			p := st.pending[0]
			if len(p) <= left {
				frames = append(frames, p)
				left -= len(p)
				st.pending[0] = nil
				st.pending = st.pending[1:]
				continue
			}
			frames = append(frames, p[:left])
			st.pending[0] = p[left:]
			left = 0
		}
		st.pendingLen -= int(n)
		st.sendWindow -= n
		c.sendWindow -= n
		st.progress = time.Now()
		c.sentData.Store(true)
	}
	if st.pendingLen == 0 {
		st.pending = nil
		if st.trailers != nil {
			// A bridged call's trailers wait for its data.
			frames = append(frames, st.trailers)
			st.trailers = nil
			st.finishLocked()
			st.cancel()
		}
	}
	return frames
}

func (c *conn) write(frames ...[]byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.writeLocked(frames)
}

func (c *conn) writeLocked(frames net.Buffers) error {
	if len(frames) == 0 {
		return nil
	}
	if c.closed {
		return net.ErrClosed
	}
	_ = c.nc.SetWriteDeadline(time.Now().Add(c.srv.writeTimeout()))
	// Frames are copied into a pooled buffer and written in chunks rather
	// than with writev: the runtime keeps a connection's largest iovec
	// array for its lifetime, and copying a few kilobytes costs less than
	// the syscalls it saves.
	bp := c.srv.buffer()
	defer c.srv.bufs.Put(bp)
	buf := (*bp)[:0]
	var err error
	for _, f := range frames {
		for len(f) > 0 && err == nil {
			n := min(len(f), cap(buf)-len(buf))
			buf = append(buf, f[:n]...)
			f = f[n:]
			if len(buf) == cap(buf) {
				_, err = c.nc.Write(buf)
				buf = buf[:0]
			}
		}
	}
	if len(buf) > 0 && err == nil {
		_, err = c.nc.Write(buf)
	}
	if err != nil {
		c.closed = true
		c.nc.Close() // the reader sees it and ends every stream
		return fmt.Errorf("write to %s: %w", c.nc.RemoteAddr(), err)
	}
	return nil
}

func rstFrame(id uint32, code http2.ErrCode) []byte {
	var p [4]byte
	binary.BigEndian.PutUint32(p[:], uint32(code))
	return frame(http2.FrameRSTStream, 0, id, p[:])
}

func (c *conn) resetStream(id uint32, code http2.ErrCode) {
	if st := c.stream(id); st != nil {
		st.abort()
	}
	_ = c.write(rstFrame(id, code))
}

func goAwayFrame(last uint32, code http2.ErrCode) []byte {
	var p [8]byte
	binary.BigEndian.PutUint32(p[0:], last)
	binary.BigEndian.PutUint32(p[4:], uint32(code))
	return frame(http2.FrameGoAway, 0, 0, p[:])
}

// goAway ends the connection with code; the reader closes it next.
func (c *conn) goAway(code http2.ErrCode) {
	_ = c.write(goAwayFrame(c.lastStream.Load(), code))
}

// drain sends GOAWAY(NO_ERROR): the client opens no more streams here,
// the open ones go on, and the connection closes once they ended.
func (c *conn) drain() {
	if !c.started.Load() {
		// Still in the TLS handshake or the preface: nothing to say.
		c.raw.Close()
		return
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.goingAway || c.closed {
		return
	}
	c.goingAway = true
	c.goAwayID = c.lastStream.Load()
	_ = c.writeLocked(net.Buffers{goAwayFrame(c.goAwayID, http2.ErrCodeNo)})
	if len(c.streams) == 0 {
		c.closeSoonLocked()
	}
}

// closeSoonLocked lets the reader take what the client still sends for a
// second (so the last responses are not lost to a TCP reset), then close.
func (c *conn) closeSoonLocked() {
	_ = c.nc.SetReadDeadline(time.Now().Add(time.Second))
}

func (c *conn) keepaliveTick() {
	t, to := c.srv.keepalive()
	idle := time.Since(time.Unix(0, c.lastRead.Load()))
	switch {
	case idle < t:
		c.ka.Reset(t - idle)
	case !c.pingOut.Load():
		c.pingOut.Store(true)
		if err := c.write(frame(http2.FramePing, 0, 0, make([]byte, 8))); err != nil {
			return
		}
		c.ka.Reset(to)
	default:
		c.srv.logger().Debug("grpclite: keepalive ping not answered; closing", "peer", c.nc.RemoteAddr().String())
		c.wmu.Lock()
		c.closed = true
		c.wmu.Unlock()
		c.nc.Close()
	}
}

func (c *conn) shutdown() {
	if c.ka != nil {
		c.ka.Stop()
	}
	c.wmu.Lock()
	c.closed = true
	streams := c.streams
	c.streams = map[uint32]*Stream{}
	c.wmu.Unlock()
	c.nc.Close()
	for _, st := range streams {
		st.abort()
	}
	c.srv.forget(c)
}

// Frame encoding. Header blocks never use HPACK's dynamic table, so no
// encoder state is kept per connection.

func frameHeader(length int, t http2.FrameType, flags http2.Flags, id uint32) []byte {
	return []byte{byte(length >> 16), byte(length >> 8), byte(length), byte(t), byte(flags),
		byte(id>>24) & 0x7f, byte(id >> 16), byte(id >> 8), byte(id)}
}

func frame(t http2.FrameType, flags http2.Flags, id uint32, payload []byte) []byte {
	return append(frameHeader(len(payload), t, flags, id), payload...)
}

func settingsFrame(settings ...http2.Setting) []byte {
	p := make([]byte, 0, 6*len(settings))
	for _, s := range settings {
		p = binary.BigEndian.AppendUint16(p, uint16(s.ID))
		p = binary.BigEndian.AppendUint32(p, s.Val)
	}
	return frame(http2.FrameSettings, 0, 0, p)
}

func windowUpdateFrame(id, inc uint32) []byte {
	return frame(http2.FrameWindowUpdate, 0, id, binary.BigEndian.AppendUint32(nil, inc))
}

func appendHpackInt(b []byte, prefixBits uint, first byte, v uint64) []byte {
	limit := uint64(1)<<prefixBits - 1
	if v < limit {
		return append(b, first|byte(v))
	}
	b = append(b, first|byte(limit))
	v -= limit
	for v >= 128 {
		b = append(b, byte(v%128)|0x80)
		v /= 128
	}
	return append(b, byte(v))
}

// appendLiteral encodes a header field as a literal without indexing, with
// a literal name and no Huffman coding.
func appendLiteral(b []byte, name, value string) []byte {
	b = append(b, 0)
	b = appendHpackInt(b, 7, 0, uint64(len(name)))
	b = append(b, name...)
	b = appendHpackInt(b, 7, 0, uint64(len(value)))
	return append(b, value...)
}

// status200 is HPACK's static-table entry 8, ":status: 200".
const status200 = 0x88

func responseHeaders() []byte {
	return appendLiteral([]byte{status200}, "content-type", "application/grpc")
}

// statusFields encodes grpc-status and grpc-message.
func statusFields(b []byte, err error) []byte {
	st := status.Convert(err)
	if err == nil {
		st = status.New(codes.OK, "")
	}
	b = appendLiteral(b, "grpc-status", fmt.Sprint(int(st.Code())))
	if msg := st.Message(); msg != "" {
		if len(msg) > 4096 {
			msg = msg[:4096]
		}
		b = appendLiteral(b, "grpc-message", encodeGrpcMessage(msg))
	}
	return b
}

// encodeGrpcMessage percent-encodes as the gRPC HTTP/2 protocol asks.
func encodeGrpcMessage(msg string) string {
	var sb strings.Builder
	for i := 0; i < len(msg); i++ {
		ch := msg[i]
		if ch >= 0x20 && ch <= 0x7e && ch != '%' {
			sb.WriteByte(ch)
			continue
		}
		fmt.Fprintf(&sb, "%%%02X", ch)
	}
	return sb.String()
}
