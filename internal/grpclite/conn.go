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
)

var errHandedOff = errors.New("connection handed to the fallback server")

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
	decided      bool // served here (not handed over); writes allowed
	pendingAcks  int
	pendingPings [][8]byte
	renewals     int
	lastPing     time.Time
	pingStrikes  int
	lastStream   uint32
	recvUnacked  int32

	lastRead atomic.Int64
	pingOut  atomic.Bool
	// sentData is set when a response goes out; clients (grpc-go's
	// bandwidth estimator) ping after data, so that clears ping strikes.
	sentData atomic.Bool
	ka       *time.Timer

	wmu            sync.Mutex
	closed         bool
	sendWindow     int64
	peerInitWindow int64
	maxFrame       int
	streams        map[uint32]*Stream
}

func newConn(s *Server, nc net.Conn) *conn {
	c := &conn{srv: s, raw: nc, nc: nc, sendWindow: defaultWindow, peerInitWindow: defaultWindow, maxFrame: defaultMaxFrame,
		streams: map[uint32]*Stream{}}
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
	c.fr.MaxHeaderListSize = 64 << 10
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
// connection can be handed over as if unread.
type recorder struct {
	r   io.Reader
	buf []byte
	on  bool
}

func (r *recorder) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
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
		return
	}
	_ = c.nc.SetReadDeadline(time.Time{})
	// The server preface. More (ACKs, the connection window) is written
	// once the first stream shows the connection is served here.
	if err := c.write(settingsFrame(http2.Setting{ID: http2.SettingInitialWindowSize, Val: uint32(c.srv.window())},
		http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: uint32(c.srv.maxStreams())})); err != nil {
		return
	}
	c.lastRead.Store(time.Now().UnixNano())
	t, _ := c.srv.keepalive()
	c.ka = time.AfterFunc(t, c.keepaliveTick)
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			var se http2.StreamError
			if errors.As(err, &se) {
				if c.decided {
					c.resetStream(se.StreamID, se.Code)
				}
				continue
			}
			var ce http2.ConnectionError
			if errors.As(err, &ce) {
				c.goAway(http2.ErrCode(ce))
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

func (c *conn) handle(f http2.Frame) error {
	switch f := f.(type) {
	case *http2.SettingsFrame:
		if f.IsAck() {
			return nil
		}
		if err := c.applySettings(f); err != nil {
			return err
		}
		if !c.decided {
			c.pendingAcks++
			return nil
		}
		return c.write(frame(http2.FrameSettings, http2.FlagSettingsAck, 0, nil))
	case *http2.PingFrame:
		if f.IsAck() {
			c.pingOut.Store(false)
			return nil
		}
		if !c.decided {
			if len(c.pendingPings) > 16 {
				return http2.ConnectionError(http2.ErrCodeEnhanceYourCalm)
			}
			c.pendingPings = append(c.pendingPings, f.Data)
			return nil
		}
		if err := c.pingPolicy(); err != nil {
			return err
		}
		return c.write(frame(http2.FramePing, http2.FlagPingAck, 0, f.Data[:]))
	case *http2.WindowUpdateFrame:
		return c.windowUpdate(f.StreamID, f.Increment)
	case *http2.MetaHeadersFrame:
		return c.headers(f)
	case *http2.DataFrame:
		return c.data(f)
	case *http2.RSTStreamFrame:
		if st := c.stream(f.StreamID); st != nil {
			st.abort()
		}
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

// decide keeps the connection here: what was held back is written.
func (c *conn) decide() error {
	if c.decided {
		return nil
	}
	c.decided = true
	c.rec.on, c.rec.buf = false, nil
	var frames net.Buffers
	for range c.pendingAcks {
		frames = append(frames, frame(http2.FrameSettings, http2.FlagSettingsAck, 0, nil))
	}
	for _, d := range c.pendingPings {
		frames = append(frames, frame(http2.FramePing, http2.FlagPingAck, 0, d[:]))
	}
	c.pendingAcks, c.pendingPings = 0, nil
	if inc := c.srv.window() - defaultWindow; inc > 0 {
		frames = append(frames, windowUpdateFrame(0, uint32(inc)))
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.writeLocked(frames)
}

func (c *conn) handOff() error {
	if c.ka != nil {
		c.ka.Stop()
	}
	c.srv.forget(c)
	rec := c.rec.buf
	c.rec.on, c.rec.buf = false, nil
	c.srv.Fallback(&replayConn{Conn: c.nc, r: io.MultiReader(bytes.NewReader(rec), c.nc)})
	return errHandedOff
}

func (c *conn) headers(f *http2.MetaHeadersFrame) error {
	id := f.StreamID
	if st := c.stream(id); st != nil {
		// Trailers from the client end its side.
		if f.StreamEnded() {
			if st.bridge != nil {
				_ = st.bridge.body.write(nil, 0, true)
			} else {
				st.Close(nil)
			}
		}
		return nil
	}
	if id%2 == 0 || id <= c.lastStream {
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	c.lastStream = id
	method := f.PseudoValue("path")
	h := c.srv.Methods[method]
	if h == nil && !c.decided && c.srv.Fallback != nil {
		return c.handOff()
	}
	if err := c.decide(); err != nil {
		return err
	}
	st := &Stream{c: c, id: id, method: method}
	ctx := context.Background()
	if c.srv.Metadata {
		ctx = peer.NewContext(ctx, &peer.Peer{Addr: c.nc.RemoteAddr(), LocalAddr: c.nc.LocalAddr(), AuthInfo: c.authInfo})
		ctx = metadata.NewIncomingContext(ctx, headerMetadata(f))
	}
	st.ctx, st.cancel = context.WithCancel(ctx)
	bridged := h == nil && c.srv.Handler != nil
	if bridged {
		st.bridge = &bridge{body: newBody()}
	}
	c.wmu.Lock()
	if c.closed {
		c.wmu.Unlock()
		return net.ErrClosed
	}
	if len(c.streams) >= c.srv.maxStreams() {
		c.wmu.Unlock()
		st.cancel()
		c.resetStream(id, http2.ErrCodeRefusedStream)
		return nil
	}
	st.sendWindow = c.peerInitWindow
	c.streams[id] = st
	c.wmu.Unlock()
	if bridged {
		c.startBridge(st, f)
		return nil
	}
	if h == nil {
		st.Close(status.Errorf(codes.Unimplemented, "unknown method %s", method))
		return nil
	}
	if ct := contentType(f); !strings.HasPrefix(ct, "application/grpc") {
		st.Close(status.Errorf(codes.Internal, "invalid content-type %q", ct))
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
		st.Close(nil)
	}
	return nil
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

func contentType(f *http2.MetaHeadersFrame) string {
	for _, hf := range f.RegularFields() {
		if hf.Name == "content-type" {
			return hf.Value
		}
	}
	return ""
}

func (c *conn) data(f *http2.DataFrame) error {
	n := int32(f.Length)
	c.recvUnacked += n
	// Window updates for the connection and the stream go out in one
	// write.
	var updates [][]byte
	if c.recvUnacked >= c.srv.window()/4 {
		inc := c.recvUnacked
		c.recvUnacked = 0
		updates = append(updates, windowUpdateFrame(0, uint32(inc)))
	}
	st := c.stream(f.StreamID)
	if st == nil {
		// Closed by the server; the client has not seen it yet.
		return c.write(updates...)
	}
	st.recvUnacked += n
	if st.recvUnacked >= c.srv.window()/4 && !f.StreamEnded() {
		inc := st.recvUnacked
		st.recvUnacked = 0
		updates = append(updates, windowUpdateFrame(st.id, uint32(inc)))
	}
	if err := c.write(updates...); err != nil {
		return err
	}
	if st.bridge != nil {
		if err := st.bridge.body.write(f.Data(), c.srv.maxRecv(), f.StreamEnded()); err != nil {
			c.resetStream(st.id, http2.ErrCodeFlowControl)
		}
		return nil
	}
	if err := st.consume(f.Data()); err != nil {
		st.Close(err)
		return nil
	}
	if f.StreamEnded() {
		st.Close(nil)
	}
	return nil
}

func (c *conn) windowUpdate(id, inc uint32) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	var frames net.Buffers
	if id == 0 {
		c.sendWindow += int64(inc)
		if c.sendWindow > maxWindow {
			return http2.ConnectionError(http2.ErrCodeFlowControl)
		}
		for _, st := range c.streams {
			frames = c.appendDataLocked(st, frames)
		}
	} else if st := c.streams[id]; st != nil {
		st.sendWindow += int64(inc)
		if st.sendWindow > maxWindow {
			return http2.ConnectionError(http2.ErrCodeFlowControl)
		}
		frames = c.appendDataLocked(st, frames)
	}
	return c.writeLocked(frames)
}

// appendDataLocked moves as much of st's queue as the windows admit into
// DATA frames.
func (c *conn) appendDataLocked(st *Stream, frames net.Buffers) net.Buffers {
	for st.pendingLen > 0 && st.sendWindow > 0 && c.sendWindow > 0 {
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

func (c *conn) resetStream(id uint32, code http2.ErrCode) {
	if st := c.stream(id); st != nil {
		st.abort()
	}
	var p [4]byte
	binary.BigEndian.PutUint32(p[:], uint32(code))
	_ = c.write(frame(http2.FrameRSTStream, 0, id, p[:]))
}

func (c *conn) goAway(code http2.ErrCode) {
	var p [8]byte
	binary.BigEndian.PutUint32(p[0:], c.lastStream)
	binary.BigEndian.PutUint32(p[4:], uint32(code))
	_ = c.write(frame(http2.FrameGoAway, 0, 0, p[:]))
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
