package xds

import (
	"crypto/tls"
	"log/slog"
	"slices"
	"sync"
	"time"

	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/sextant-mesh/sextant/internal/grpclite"
)

// ADS method names as gRPC clients call them.
const (
	methodSotw  = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"
	methodDelta = "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources"
)

// NewLeanServer serves plaintext ADS with grpclite: one goroutine per
// connection instead of grpc-go's four, and no per-connection buffers (see
// docs/performance.md). Put it in front of the grpc-go server that serves
// everything else with Front.
func (s *Server) NewLeanServer(log *slog.Logger) *grpclite.Server {
	return s.newLean(log, false)
}

// NewSecureLeanServer serves ADS on the secure port with grpclite over TLS
// (cfg): streams are authenticated as on grpc-go (peer certificate, or a
// token in the request headers). Other calls (the CA's CreateCertificate)
// go to the grpc-go server it is put in front of (Front), which uses
// grpclite.HandoffCredentials.
func (s *Server) NewSecureLeanServer(cfg *tls.Config, log *slog.Logger) *grpclite.Server {
	ls := s.newLean(log, true)
	cfg = cfg.Clone()
	if !slices.Contains(cfg.NextProtos, "h2") {
		cfg.NextProtos = append(cfg.NextProtos, "h2")
	}
	ls.TLSConfig, ls.Metadata = cfg, true
	return ls
}

func (s *Server) newLean(log *slog.Logger, secure bool) *grpclite.Server {
	open := func(delta bool) grpclite.StreamHandler {
		return func(st *grpclite.Stream) (grpclite.Receiver, error) {
			return &leanADS{s: s, st: st, delta: delta, secure: secure}, nil
		}
	}
	return &grpclite.Server{
		Methods:          map[string]grpclite.StreamHandler{methodSotw: open(false), methodDelta: open(true)},
		MaxRecvMsgSize:   4 << 20,
		WriteTimeout:     s.opts.SendTimeout,
		KeepaliveTime:    keepaliveTime,
		KeepaliveTimeout: keepaliveTimeout,
		OnStuck: func(st *grpclite.Stream) {
			s.metrics.StuckStreams.Inc()
			s.log.Warn("closing stuck stream", "peer", st.Peer().String())
		},
		Logger: log,
	}
}

// leanADS is one ADS stream on grpclite; Message and Closed run on the
// connection's goroutine. That goroutine stays shallow, so its stack stays
// small: the first request (parse the node, authenticate, wait for
// admission) is handled on a short-lived goroutine, and every request is
// handled by a push worker (Connection.post).
type leanADS struct {
	s      *Server
	st     *grpclite.Stream
	delta  bool
	secure bool

	mu      sync.Mutex
	c       *Connection
	opening bool
	early   [][]byte // arrived while opening
	closed  bool
}

func (l *leanADS) decode(b []byte) (*request, error) {
	if l.delta {
		var m discoverygrpc.DeltaDiscoveryRequest
		if err := proto.Unmarshal(b, &m); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "decoding DeltaDiscoveryRequest: %v", err)
		}
		return deltaRequest(&m), nil
	}
	r, err := decodeSotwRequest(b)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "decoding %v", err)
	}
	return r, nil
}

func (l *leanADS) Message(b []byte) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.c != nil:
		return l.c.post(b, nil)
	case l.opening:
		if len(l.early) >= maxQueuedRequests {
			return status.Errorf(codes.ResourceExhausted, "more than %d requests before the stream was admitted", maxQueuedRequests)
		}
		l.early = append(l.early, b)
		return nil
	}
	l.opening = true
	queued := time.Now()
	l.s.openq.put(func() { l.open(b, queued) })
	return nil
}

func (l *leanADS) open(b []byte, queued time.Time) {
	if l.st.Context().Err() != nil {
		return // reset or gone while waiting: not even decoded
	}
	r, err := l.decode(b)
	var c *Connection
	switch {
	case err != nil:
	case time.Since(queued) > l.s.opts.AdmissionWait:
		l.s.metrics.RejectedStreams.WithLabelValues("admission").Inc()
		err = status.Error(codes.ResourceExhausted, "too many new xDS streams; retry with backoff")
	default:
		c, err = l.s.open(l.st.Context(), r, l.delta, l.secure, l.st.Peer().String(), leanStream{l.s, l.st})
	}
	if err != nil {
		l.st.Close(err)
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		c.finish()
		return
	}
	l.c = c
	c.decode = l.decode
	// Posted under mu, so a request arriving now queues behind these.
	if err := c.post(b, r); err != nil {
		go l.st.Close(err)
		return
	}
	for _, e := range l.early {
		if err := c.post(e, nil); err != nil {
			go l.st.Close(err)
			return
		}
	}
	l.early = nil
}

func (l *leanADS) Closed() {
	l.mu.Lock()
	l.closed = true
	c := l.c
	l.mu.Unlock()
	if c != nil {
		c.finish()
	}
}

// leanStream adapts a grpclite stream to Connection.
type leanStream struct {
	s  *Server
	st *grpclite.Stream
}

func (l leanStream) send(m any) error {
	switch v := m.(type) {
	case *encoded:
		start := time.Now()
		err := l.st.Send(v.parts...)
		if err != nil && time.Since(start) >= l.s.opts.SendTimeout {
			// The socket write hit its deadline: the proxy stopped
			// reading with its window open (grpclite's OnStuck counts
			// the other case, a window that does not move).
			l.s.metrics.StuckStreams.Inc()
			l.s.log.Warn("closing stuck stream", "peer", l.st.Peer().String())
		}
		return err
	case proto.Message:
		b, err := proto.Marshal(v)
		if err != nil {
			return status.Errorf(codes.Internal, "encoding response: %v", err)
		}
		return l.st.Send(b)
	}
	return status.Errorf(codes.Internal, "cannot send %T", m)
}

func (l leanStream) close(err error) {
	if err != nil {
		if _, ok := status.FromError(err); !ok {
			err = status.Error(codes.Unavailable, err.Error())
		}
	}
	l.st.Close(err)
}
