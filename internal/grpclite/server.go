package grpclite

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// StreamHandler is called on the connection's goroutine when a client opens
// a stream for its method. It returns the stream's Receiver, or an error
// (a gRPC status) that refuses the stream.
type StreamHandler func(st *Stream) (Receiver, error)

// HalfCloser is implemented by a Receiver that wants to know when the
// client half-closed its stream (sent END_STREAM): no message follows, but
// the stream stays open for the server's responses until Close.
type HalfCloser interface {
	HalfClosed()
}

// Receiver gets a stream's messages, on the connection's goroutine.
type Receiver interface {
	// Message is one message; msg belongs to the receiver. An error ends
	// the stream with that error's status.
	Message(msg []byte) error
	// Closed is called once when the stream ended for any reason: the
	// client reset it, the connection broke, or Close. (A half-close
	// does not end a stream; see HalfCloser.)
	Closed()
}

// ErrServerClosed is returned by Serve after Stop.
var ErrServerClosed = errors.New("grpclite: server closed")

// Server serves registered streaming methods.
type Server struct {
	// Methods maps full method names ("/pkg.Service/Method") to handlers.
	Methods map[string]StreamHandler
	// Fallback receives connections whose first stream is for a method
	// not in Methods, as if freshly accepted. Nil answers such streams
	// with Unimplemented.
	Fallback func(net.Conn)
	// TLSConfig, if set, serves TLS: the handshake runs on the
	// connection's goroutine; NextProtos should offer "h2", which gRPC
	// clients require.
	TLSConfig *tls.Config
	// Metadata puts the peer (with its TLS state) and the request headers
	// as incoming metadata into stream contexts, as grpc-go does, for
	// handlers that authenticate callers.
	Metadata bool
	// Handler, if set, serves calls to other methods on connections this
	// server keeps (typically the grpc.Server that Fallback feeds, through
	// its ServeHTTP); nil answers them with Unimplemented.
	Handler http.Handler
	// Window is the flow-control window granted to clients, per stream
	// and per connection. Default 1 MiB.
	Window int32
	// MaxRecvMsgSize bounds a received message. Default 4 MiB.
	MaxRecvMsgSize int
	// MaxPending bounds the bytes queued on a stream beyond what the
	// client's window admits. Default 64 MiB.
	MaxPending int
	// WriteTimeout bounds a socket write, and how long queued data may
	// wait for the client's window to open. Default 20s.
	WriteTimeout time.Duration
	// KeepaliveTime is how long a connection may stay silent before it is
	// pinged; KeepaliveTimeout how long the ping may go unanswered.
	// Defaults 30s and 10s.
	KeepaliveTime, KeepaliveTimeout time.Duration
	// MaxConcurrentStreams bounds the open streams of one connection
	// (advertised in SETTINGS; more are refused). Default 1,000.
	MaxConcurrentStreams int
	// MinPingInterval is the shortest interval between client pings
	// tolerated while no data is sent (three strikes end the connection).
	// Default 5s.
	MinPingInterval time.Duration
	// FirstStreamTimeout is how long a connection may stay without
	// opening a stream; then it is closed with GOAWAY. Default 20s.
	FirstStreamTimeout time.Duration
	// OnStuck is called when a stream is closed because the client did
	// not read it.
	OnStuck func(st *Stream)
	Logger  *slog.Logger

	// bufs are write buffers shared by all connections.
	bufs sync.Pool

	mu     sync.Mutex
	lis    map[net.Listener]bool
	conns  map[*conn]bool
	closed bool
}

func (s *Server) buffer() *[]byte {
	if b, ok := s.bufs.Get().(*[]byte); ok {
		return b
	}
	b := make([]byte, 0, 32<<10)
	return &b
}

func (s *Server) window() int32 {
	if s.Window > 0 {
		return s.Window
	}
	return 1 << 20
}

func (s *Server) maxRecv() int {
	if s.MaxRecvMsgSize > 0 {
		return s.MaxRecvMsgSize
	}
	return 4 << 20
}

// recvBudget bounds what one connection holds received but unconsumed
// (partial messages, unread request bodies) beyond its window: past it the
// client gets no more connection window until some is consumed.
func (s *Server) recvBudget() int { return 2 * s.maxRecv() }

func (s *Server) firstStreamTimeout() time.Duration {
	if s.FirstStreamTimeout > 0 {
		return s.FirstStreamTimeout
	}
	return 20 * time.Second
}

func (s *Server) maxPending() int {
	if s.MaxPending > 0 {
		return s.MaxPending
	}
	return 64 << 20
}

func (s *Server) writeTimeout() time.Duration {
	if s.WriteTimeout > 0 {
		return s.WriteTimeout
	}
	return 20 * time.Second
}

func (s *Server) keepalive() (time.Duration, time.Duration) {
	t, to := s.KeepaliveTime, s.KeepaliveTimeout
	if t <= 0 {
		t = 30 * time.Second
	}
	if to <= 0 {
		to = 10 * time.Second
	}
	return t, to
}

func (s *Server) maxStreams() int {
	if s.MaxConcurrentStreams > 0 {
		return s.MaxConcurrentStreams
	}
	return 1000
}

func (s *Server) minPingInterval() time.Duration {
	if s.MinPingInterval > 0 {
		return s.MinPingInterval
	}
	return 5 * time.Second
}

func (s *Server) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.Default()
}

// Serve accepts connections on lis until Stop.
func (s *Server) Serve(lis net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrServerClosed
	}
	if s.lis == nil {
		s.lis, s.conns = map[net.Listener]bool{}, map[*conn]bool{}
	}
	s.lis[lis] = true
	s.mu.Unlock()
	var delay time.Duration
	for {
		nc, err := lis.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		c := newConn(s, nc)
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			nc.Close()
			return ErrServerClosed
		}
		s.conns[c] = true
		s.mu.Unlock()
		go c.serve()
	}
}

func (s *Server) forget(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// Stop closes the listeners and every connection; streams end without a
// status, as with a broken connection.
func (s *Server) Stop() {
	s.mu.Lock()
	s.closed = true
	lis, conns := s.lis, s.conns
	s.lis, s.conns = nil, nil
	s.mu.Unlock()
	for l := range lis {
		l.Close()
	}
	for c := range conns {
		c.raw.Close()
	}
}

// Shutdown stops accepting connections and sends every connection GOAWAY
// with NO_ERROR, so clients open new streams elsewhere; streams already
// open go on. It returns once every connection has closed (each closes
// when its last stream ended), or, when ctx is done first, closes what is
// left as Stop does and returns ctx's error.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	lis := s.lis
	s.lis = nil
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for l := range lis {
		l.Close()
	}
	for _, c := range conns {
		c.drain()
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		s.mu.Lock()
		n := len(s.conns)
		s.mu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			s.Stop()
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// Front puts s in front of gs on the address s will serve (addr): every
// call s has no method for is served by gs, through a handover of the
// whole connection (Fallback) or the ServeHTTP bridge (Handler). gs must
// serve the returned listener, and use HandoffCredentials when s serves
// TLS.
func (s *Server) Front(gs *grpc.Server, addr net.Addr) net.Listener {
	hl := NewHandoffListener(addr)
	s.Fallback, s.Handler = hl.Push, gs
	return hl
}

// HandoffListener is a net.Listener fed by Push, for a gRPC server serving
// the connections grpclite hands over (Server.Fallback).
type HandoffListener struct {
	addr  net.Addr
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

// NewHandoffListener returns a listener reporting addr as its address.
func NewHandoffListener(addr net.Addr) *HandoffListener {
	return &HandoffListener{addr: addr, conns: make(chan net.Conn), done: make(chan struct{})}
}

// Push hands c to the listener's Accept; it closes c if the listener is
// closed.
func (l *HandoffListener) Push(c net.Conn) {
	select {
	case l.conns <- c:
	case <-l.done:
		c.Close()
	}
}

// Accept implements net.Listener.
func (l *HandoffListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close implements net.Listener.
func (l *HandoffListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

// Addr implements net.Listener.
func (l *HandoffListener) Addr() net.Addr { return l.addr }

// HandoffCredentials are transport credentials for the gRPC server that
// serves connections handed over by a TLS grpclite Server (Fallback): the
// TLS handshake is done already, so they pass the connection through and
// report its TLS state to handlers, as grpc-go's own TLS credentials do.
func HandoffCredentials() credentials.TransportCredentials { return handoffCreds{} }

type handoffCreds struct{}

func (handoffCreds) ClientHandshake(context.Context, string, net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("grpclite: handoff credentials are for servers only")
}

func (handoffCreds) ServerHandshake(nc net.Conn) (net.Conn, credentials.AuthInfo, error) {
	rc, ok := nc.(*replayConn)
	if !ok {
		return nc, nil, nil
	}
	tc, ok := rc.Conn.(*tls.Conn)
	if !ok {
		return nc, nil, nil
	}
	return nc, credentials.TLSInfo{State: tc.ConnectionState(),
		CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity}}, nil
}

func (handoffCreds) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "tls", SecurityVersion: "1.2"}
}

func (c handoffCreds) Clone() credentials.TransportCredentials { return c }

func (handoffCreds) OverrideServerName(string) error { return nil }
