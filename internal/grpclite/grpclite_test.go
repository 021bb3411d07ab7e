package grpclite

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/reflection"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// rawCodec sends and receives *[]byte as they are.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(b []byte, v any) error {
	*(v.(*[]byte)) = append([]byte(nil), b...)
	return nil
}
func (rawCodec) Name() string { return "raw" }

const chat = "/test.Echo/Chat"

// recvFunc adapts functions to Receiver.
type recvFunc struct {
	msg    func([]byte) error
	closed func()
	half   func()
}

func (r recvFunc) HalfClosed() {
	if r.half != nil {
		r.half()
	}
}

func (r recvFunc) Message(b []byte) error { return r.msg(b) }
func (r recvFunc) Closed() {
	if r.closed != nil {
		r.closed()
	}
}

func start(t *testing.T, s *Server) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(lis) }()
	t.Cleanup(func() {
		s.Stop()
		if err := <-done; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	})
	return lis.Addr().String()
}

func dial(t *testing.T, addr string, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	opts = append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{})))
	cc, err := grpc.NewClient(addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

func openStream(t *testing.T, ctx context.Context, cc *grpc.ClientConn, method string) grpc.ClientStream {
	t.Helper()
	cs, err := cc.NewStream(ctx, &grpc.StreamDesc{ClientStreams: true, ServerStreams: true}, method)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

func echoServer() *Server {
	return &Server{Methods: map[string]StreamHandler{chat: func(st *Stream) (Receiver, error) {
		return recvFunc{msg: func(b []byte) error {
			if string(b) == "fail" {
				return status.Error(codes.FailedPrecondition, "asked to fail: 100% sure\nreally")
			}
			return st.Send([]byte("echo:"), append([]byte(nil), b...))
		}, half: func() { st.Close(nil) }}, nil
	}}}
}

func TestEchoManyStreams(t *testing.T) {
	addr := start(t, echoServer())
	cc := dial(t, addr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cs := openStream(t, ctx, cc, chat)
			for j := range 50 {
				msg := []byte(strings.Repeat("x", i*j))
				if err := cs.SendMsg(&msg); err != nil {
					t.Errorf("send: %v", err)
					return
				}
				var got []byte
				if err := cs.RecvMsg(&got); err != nil {
					t.Errorf("recv: %v", err)
					return
				}
				if want := "echo:" + string(msg); string(got) != want {
					t.Errorf("stream %d message %d: got %d bytes, want %d", i, j, len(got), len(want))
					return
				}
			}
			if err := cs.CloseSend(); err != nil {
				t.Error(err)
			}
			var got []byte
			if err := cs.RecvMsg(&got); err != io.EOF {
				t.Errorf("after CloseSend: got %v, want io.EOF (status OK)", err)
			}
		}()
	}
	wg.Wait()
}

func TestStatusFromReceiver(t *testing.T) {
	addr := start(t, echoServer())
	cc := dial(t, addr)
	cs := openStream(t, context.Background(), cc, chat)
	msg := []byte("fail")
	if err := cs.SendMsg(&msg); err != nil {
		t.Fatal(err)
	}
	var got []byte
	err := cs.RecvMsg(&got)
	st, _ := status.FromError(err)
	if st.Code() != codes.FailedPrecondition || st.Message() != "asked to fail: 100% sure\nreally" {
		t.Fatalf("got %v, want FailedPrecondition with the message intact", err)
	}
}

func TestUnknownMethodWithoutFallback(t *testing.T) {
	addr := start(t, echoServer())
	cc := dial(t, addr)
	cs := openStream(t, context.Background(), cc, "/test.Echo/Other")
	var got []byte
	if err := cs.RecvMsg(&got); status.Code(err) != codes.Unimplemented {
		t.Fatalf("got %v, want Unimplemented", err)
	}
}

// TestFallback: a connection whose first call is not a grpclite method is
// served by a grpc-go server; one that started with a grpclite stream
// keeps being served here.
func TestFallback(t *testing.T) {
	gs := grpc.NewServer()
	hs := health.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	s := echoServer()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hl := NewHandoffListener(lis.Addr())
	s.Fallback = hl.Push
	go func() { _ = gs.Serve(hl) }()
	defer gs.Stop()
	go func() { _ = s.Serve(lis) }()
	defer s.Stop()

	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for range 3 {
		resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("health check through the fallback: %v %v", resp, err)
		}
	}
	cc2 := dial(t, lis.Addr().String())
	cs := openStream(t, ctx, cc2, chat)
	msg := []byte("hi")
	if err := cs.SendMsg(&msg); err != nil {
		t.Fatal(err)
	}
	var got []byte
	if err := cs.RecvMsg(&got); err != nil || string(got) != "echo:hi" {
		t.Fatalf("got %q %v", got, err)
	}
}

// TestFlowControl sends messages far larger than the client's window and
// receives one larger than the server's.
func TestFlowControl(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 5<<16) // 5 MiB
	var got atomic.Int64
	s := &Server{Methods: map[string]StreamHandler{chat: func(st *Stream) (Receiver, error) {
		return recvFunc{msg: func(b []byte) error {
			got.Store(int64(len(b)))
			// Several sends queue behind the client's window at once.
			for range 3 {
				if err := st.Send(big[:1<<20], big[1<<20:]); err != nil {
					return err
				}
			}
			return nil
		}}, nil
	}}}
	addr := start(t, s)
	// A fixed 64 KiB window: the server must wait for WINDOW_UPDATEs.
	cc := dial(t, addr, grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(16<<20)))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cs := openStream(t, ctx, cc, chat)
	up := big[:3<<20]
	if err := cs.SendMsg(&up); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		var b []byte
		if err := cs.RecvMsg(&b); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if !bytes.Equal(b, big) {
			t.Fatalf("message %d: %d bytes, not the %d sent", i, len(b), len(big))
		}
	}
	if got.Load() != 3<<20 {
		t.Fatalf("server received %d bytes, want %d", got.Load(), 3<<20)
	}
}

// TestCloseFromAnotherGoroutine ends a stream with a status while the
// client waits, as a drain does.
func TestCloseFromAnotherGoroutine(t *testing.T) {
	opened := make(chan *Stream, 1)
	closed := make(chan struct{})
	s := &Server{Methods: map[string]StreamHandler{chat: func(st *Stream) (Receiver, error) {
		opened <- st
		return recvFunc{msg: func([]byte) error { return nil }, closed: func() { close(closed) }}, nil
	}}}
	addr := start(t, s)
	cc := dial(t, addr)
	cs := openStream(t, context.Background(), cc, chat)
	msg := []byte("x")
	if err := cs.SendMsg(&msg); err != nil {
		t.Fatal(err)
	}
	st := <-opened
	if err := st.Send([]byte("first")); err != nil {
		t.Fatal(err)
	}
	go st.Close(status.Error(codes.Unavailable, "draining"))
	var b []byte
	if err := cs.RecvMsg(&b); err != nil || string(b) != "first" {
		t.Fatalf("got %q %v", b, err)
	}
	if err := cs.RecvMsg(&b); status.Code(err) != codes.Unavailable {
		t.Fatalf("got %v, want Unavailable", err)
	}
	<-closed
	if err := st.Send([]byte("late")); err == nil {
		t.Fatal("Send after Close succeeded")
	}
	if st.Context().Err() == nil {
		t.Fatal("stream context not done after Close")
	}
}

func TestClientCancelNotifiesReceiver(t *testing.T) {
	closed := make(chan struct{})
	s := &Server{Methods: map[string]StreamHandler{chat: func(st *Stream) (Receiver, error) {
		return recvFunc{msg: func([]byte) error { return nil }, closed: func() { close(closed) }}, nil
	}}}
	addr := start(t, s)
	cc := dial(t, addr)
	ctx, cancel := context.WithCancel(context.Background())
	cs := openStream(t, ctx, cc, chat)
	msg := []byte("x")
	if err := cs.SendMsg(&msg); err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Receiver.Closed not called after the client cancelled")
	}
}

// TestStuckClient: a client that never reads is closed, both when its
// queue grows past MaxPending and when it stops moving for WriteTimeout.
func TestStuckClient(t *testing.T) {
	for _, tc := range []struct {
		name    string
		s       *Server
		sends   int
		wantErr bool
	}{
		{"queue limit", &Server{MaxPending: 256 << 10}, 8, true},
		{"no progress", &Server{WriteTimeout: 200 * time.Millisecond}, 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stuck atomic.Int32
			opened := make(chan *Stream, 1)
			closed := make(chan struct{})
			tc.s.OnStuck = func(*Stream) { stuck.Add(1) }
			tc.s.Methods = map[string]StreamHandler{chat: func(st *Stream) (Receiver, error) {
				opened <- st
				return recvFunc{msg: func([]byte) error { return nil }, closed: func() { close(closed) }}, nil
			}}
			addr := start(t, tc.s)
			// A raw client: preface, settings, one stream, then never
			// reads again, so the server only has the 64 KiB default
			// windows.
			nc, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			openRaw(t, nc, chat)
			st := <-opened
			var sendErr error
			for range tc.sends {
				if sendErr = st.Send(make([]byte, 64<<10)); sendErr != nil {
					break
				}
			}
			if (sendErr != nil) != tc.wantErr {
				t.Fatalf("Send error %v, want error: %v", sendErr, tc.wantErr)
			}
			if sendErr != nil {
				st.Close(sendErr)
			}
			select {
			case <-closed:
			case <-time.After(5 * time.Second):
				t.Fatal("stuck stream not closed")
			}
			if stuck.Load() != 1 {
				t.Fatalf("OnStuck called %d times, want 1", stuck.Load())
			}
		})
	}
}

// openRaw opens a stream with hand-written frames.
func openRaw(t *testing.T, nc net.Conn, method string) {
	t.Helper()
	fr := http2.NewFramer(nc, nc)
	if _, err := io.WriteString(nc, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	var hb bytes.Buffer
	for _, f := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":path", method}, {":authority", "x"}, {"content-type", "application/grpc"}, {"te", "trailers"}} {
		hb.Write(appendLiteral(nil, f[0], f[1]))
	}
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	if err := fr.WriteData(1, false, []byte{0, 0, 0, 0, 1, 'x'}); err != nil {
		t.Fatal(err)
	}
}

// TestKeepalive: a silent client that answers pings stays; one that does
// not is disconnected.
func TestKeepalive(t *testing.T) {
	s := echoServer()
	s.KeepaliveTime, s.KeepaliveTimeout = 50*time.Millisecond, 100*time.Millisecond
	addr := start(t, s)

	cc := dial(t, addr)
	cs := openStream(t, context.Background(), cc, chat)
	time.Sleep(400 * time.Millisecond)
	msg := []byte("still there")
	if err := cs.SendMsg(&msg); err != nil {
		t.Fatal(err)
	}
	var got []byte
	if err := cs.RecvMsg(&got); err != nil || string(got) != "echo:still there" {
		t.Fatalf("after idle pings: %q %v", got, err)
	}

	// Reads nothing, so never acknowledges a ping.
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	openRaw(t, nc, chat)
	// Drain the socket without answering: the server must close it.
	_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.Copy(io.Discard, nc); err != nil {
		t.Fatalf("connection not closed by the server: %v", err)
	}
}

func TestBadPreface(t *testing.T) {
	addr := start(t, echoServer())
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if _, err := io.WriteString(nc, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	_ = nc.SetReadDeadline(time.Now().Add(15 * time.Second))
	// Closed (EOF) or reset, but not left open until the deadline.
	var ne net.Error
	if _, err := io.Copy(io.Discard, nc); errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection with a bad preface not closed: %v", err)
	}
}

// selfSigned returns a server certificate for 127.0.0.1 and a pool
// trusting it.
func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

// TestTLSWithMetadataAndFallback: over TLS, a stream's context carries the
// peer's TLS state and the request headers; a connection whose first call
// is another method reaches a grpc-go server with HandoffCredentials,
// which sees the same TLS state.
func TestTLSWithMetadataAndFallback(t *testing.T) {
	cert, pool := selfSigned(t)
	got := make(chan string, 1)
	s := &Server{
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2"}},
		Metadata:  true,
		Methods: map[string]StreamHandler{chat: func(st *Stream) (Receiver, error) {
			p, _ := peer.FromContext(st.Context())
			md, _ := metadata.FromIncomingContext(st.Context())
			info, _ := p.AuthInfo.(credentials.TLSInfo)
			got <- fmt.Sprintf("tls=%v auth=%v", info.State.HandshakeComplete, md.Get("authorization"))
			return recvFunc{msg: func(b []byte) error { return st.Send([]byte("echo:"), b) }}, nil
		}},
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hl := NewHandoffListener(lis.Addr())
	s.Fallback = hl.Push
	var fallbackTLS atomic.Bool
	gs := grpc.NewServer(grpc.Creds(HandoffCredentials()), grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if p, ok := peer.FromContext(ctx); ok {
			_, isTLS := p.AuthInfo.(credentials.TLSInfo)
			fallbackTLS.Store(isTLS)
		}
		return h(ctx, req)
	}))
	healthpb.RegisterHealthServer(gs, health.NewServer())
	go func() { _ = gs.Serve(hl) }()
	defer gs.Stop()
	go func() { _ = s.Serve(lis) }()
	defer s.Stop()

	creds := credentials.NewTLS(&tls.Config{RootCAs: pool})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(creds), grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{})))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	cs := openStream(t, metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer x"), cc, chat)
	msg := []byte("hi")
	if err := cs.SendMsg(&msg); err != nil {
		t.Fatal(err)
	}
	var b []byte
	if err := cs.RecvMsg(&b); err != nil || string(b) != "echo:hi" {
		t.Fatalf("over TLS: %q %v", b, err)
	}
	if g := <-got; g != "tls=true auth=[Bearer x]" {
		t.Fatalf("stream context: %s", g)
	}

	// On the same connection, after the grpclite stream: bridged to gs.
	s.Handler = gs
	fallbackTLS.Store(false)
	if _, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.ForceCodec(protoCodec{})); err != nil {
		t.Fatalf("health check bridged over the grpclite connection: %v", err)
	}
	if !fallbackTLS.Load() {
		t.Fatal("the bridged call did not see the TLS state")
	}

	cc2, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	defer cc2.Close()
	if _, err := healthpb.NewHealthClient(cc2).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("health check through the TLS fallback: %v", err)
	}
	if !fallbackTLS.Load() {
		t.Fatal("the fallback server did not see the TLS state")
	}
}

// protoCodec undoes the raw codec default of test connections for calls
// with proto messages.
type protoCodec struct{}

func (protoCodec) Marshal(v any) ([]byte, error)   { return proto.Marshal(v.(proto.Message)) }
func (protoCodec) Unmarshal(b []byte, v any) error { return proto.Unmarshal(b, v.(proto.Message)) }
func (protoCodec) Name() string                    { return "proto" }

// TestBridge: on a connection grpclite keeps, calls to other methods are
// served by Handler (a grpc.Server): unary, server streaming, errors.
func TestBridge(t *testing.T) {
	gs := grpc.NewServer()
	hs := health.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	reflection.Register(gs)
	s := echoServer()
	s.Handler = gs
	addr := start(t, s)
	cc := dial(t, addr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cs := openStream(t, ctx, cc, chat)
	msg := []byte("first")
	if err := cs.SendMsg(&msg); err != nil {
		t.Fatal(err)
	}
	var b []byte
	if err := cs.RecvMsg(&b); err != nil {
		t.Fatal(err)
	}
	hc := healthpb.NewHealthClient(cc)
	for range 3 {
		resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.ForceCodec(protoCodec{}))
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("bridged unary call: %v %v", resp, err)
		}
	}
	if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "nope"}, grpc.ForceCodec(protoCodec{})); status.Code(err) != codes.NotFound {
		t.Fatalf("bridged call's error: got %v, want NotFound", err)
	}
	w, err := hc.Watch(ctx, &healthpb.HealthCheckRequest{Service: "svc"}, grpc.ForceCodec(protoCodec{}))
	if err != nil {
		t.Fatal(err)
	}
	first, err := w.Recv()
	if err != nil || first.GetStatus() != healthpb.HealthCheckResponse_SERVICE_UNKNOWN {
		t.Fatalf("bridged stream, first: %v %v", first, err)
	}
	hs.SetServingStatus("svc", healthpb.HealthCheckResponse_SERVING)
	if next, err := w.Recv(); err != nil || next.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("bridged stream, update: %v %v", next, err)
	}
	// The grpclite stream still works alongside.
	msg = []byte("again")
	if err := cs.SendMsg(&msg); err != nil {
		t.Fatal(err)
	}
	if err := cs.RecvMsg(&b); err != nil || string(b) != "echo:again" {
		t.Fatalf("%q %v", b, err)
	}
	// A bidirectional call the client abandons without half-closing.
	refl, err := reflectionpb.NewServerReflectionClient(cc).ServerReflectionInfo(ctx, grpc.ForceCodec(protoCodec{}))
	if err != nil {
		t.Fatal(err)
	}
	if err := refl.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	if _, err := refl.Recv(); err != nil {
		t.Fatalf("bridged bidirectional call: %v", err)
	}
}

// TestPingFlood: a client that pings without pause is disconnected with
// GOAWAY ENHANCE_YOUR_CALM; one ping per interval is fine.
func TestPingFlood(t *testing.T) {
	addr := start(t, echoServer())
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	openRaw(t, nc, chat)
	fr := http2.NewFramer(nc, nc)
	for i := range 10 {
		if err := fr.WritePing(false, [8]byte{byte(i)}); err != nil {
			break // already closed
		}
	}
	_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("no GOAWAY before the connection ended: %v", err)
		}
		if ga, ok := f.(*http2.GoAwayFrame); ok {
			if ga.ErrCode != http2.ErrCodeEnhanceYourCalm {
				t.Fatalf("GOAWAY %v, want ENHANCE_YOUR_CALM", ga.ErrCode)
			}
			return
		}
	}
}

// TestMaxConcurrentStreams: streams beyond the limit are refused, and
// grpc-go's client, which honours the advertised limit, waits instead.
func TestMaxConcurrentStreams(t *testing.T) {
	s := echoServer()
	s.MaxConcurrentStreams = 2
	addr := start(t, s)
	cc := dial(t, addr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var streams []grpc.ClientStream
	for range 2 {
		cs := openStream(t, ctx, cc, chat)
		msg := []byte("x")
		if err := cs.SendMsg(&msg); err != nil {
			t.Fatal(err)
		}
		var b []byte
		if err := cs.RecvMsg(&b); err != nil {
			t.Fatal(err)
		}
		streams = append(streams, cs)
	}
	third := make(chan error, 1)
	go func() {
		cs, err := cc.NewStream(ctx, &grpc.StreamDesc{ClientStreams: true, ServerStreams: true}, chat)
		if err == nil {
			msg := []byte("y")
			if err = cs.SendMsg(&msg); err == nil {
				var b []byte
				err = cs.RecvMsg(&b)
			}
		}
		third <- err
	}()
	select {
	case err := <-third:
		t.Fatalf("third stream served past the limit: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	if err := streams[0].CloseSend(); err != nil {
		t.Fatal(err)
	}
	var b []byte
	_ = streams[0].RecvMsg(&b)
	if err := <-third; err != nil {
		t.Fatalf("third stream after one ended: %v", err)
	}
}
