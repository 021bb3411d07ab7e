package xds

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"strconv"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/sextant-mesh/sextant/discovery/proxy"
	"github.com/sextant-mesh/sextant/discovery/translate"
)

// pushOrder is Envoy's make-before-break order.
var pushOrder = []string{translate.ClusterType, translate.EndpointType, translate.ListenerType, translate.RouteType, translate.SecretType}

var errStuck = errors.New("send did not complete in time; closing the stream")

// request is a SotW or delta request in one shape.
type request struct {
	typeURL   string
	node      *corev3.Node
	nonce     string
	errDetail string
	hasError  bool
	// SotW. raw, when set, is the request as received and rawNames the
	// number of names in it (see decodeSotwRequest); use sotwNames.
	version  string
	names    []string
	raw      []byte
	rawNames int
	// Delta.
	subscribe   []string
	unsubscribe []string
	initial     map[string]string
}

// watch is what one connection subscribed to for one type, and what it was
// sent and acknowledged.
type watch struct {
	typeURL  string
	wildcard bool
	// names holds, for named types, each subscribed name and the resource
	// last sent for it (nil: not sent).
	names nameSet
	// subHash is the hash of the SotW request that set names, in the
	// order received (request.sameSubscription); 0 if unknown.
	subHash uint64
	// set is what a wildcard subscription was last sent.
	set *translate.TypeSet
	// initial are the versions a delta client reported on (re)connect.
	initial map[string]string

	nonceSent, nonceAcked     string
	versionSent, versionAcked string
	lastError                 string
	lastSent, lastAcked       time.Time
	waiting                   []*PushRecord
}

// stream is a transport's end of one ADS stream (see transport.go).
type stream interface {
	// send writes one response: an *encoded or a proto.Message. Only the
	// connection's outbox writer calls it, one at a time; the transport
	// bounds how long it may block (--send-timeout).
	send(m any) error
	// close ends the stream with err's status (nil: OK). It may be called
	// from any goroutine, more than once.
	close(err error)
}

// Lock order of a Connection (never take one to the left while holding
// one to the right):
//
//	serial → Server.sem (push slot) → mu → pushMu → outMu → PushRecord.mu
//
// serial orders request handling and pushes (runPush, receive) and is
// held while responses are computed and queued; mu guards the watches
// (ACK state, what was sent); pushMu the pending push and posted
// requests; outMu the outbox (outbox.go). No lock is held while writing
// to the proxy: only the outbox's writer goroutine writes, under none.
//
// The code is split by concern: conn.go (the stream's life: open,
// receive, finish, grpc-go serving), schedule.go (pending pushes, posted
// requests, push workers' entry point, admission), ack.go (the ACK/NACK
// state machine and subscriptions), diff.go (what to send: diffing
// against what was sent, encoding), outbox.go (the byte-bounded queue
// and its writer), status.go (sync status).

// Connection is one ADS stream from one proxy. It has no goroutine of its
// own: the transport delivers requests (receive) and the server's push
// workers deliver pushes (runPush); serial orders the two, so responses
// leave in the order they were computed.
type Connection struct {
	s           *Server
	id          string
	proxy       *proxy.Proxy
	peer        string
	delta       bool
	connectedAt time.Time
	st          stream
	// decode decodes posted requests.
	decode func([]byte) (*request, error)

	serial sync.Mutex
	closed bool // under serial

	pushMu  sync.Mutex
	pending *PushRequest
	reqs    []posted // under pushMu
	queued  bool     // on the server's push queue; under pushMu
	done    bool     // finished: pushes are released at once; under pushMu

	outMu sync.Mutex
	out   outbox // under outMu; see outbox.go

	mu       sync.Mutex
	watches  map[string]*watch
	holds    map[*PushRecord]int
	nonceSeq uint64
	prefix   string
	// identity is set on the secure port; secrets are issued for it.
	identity *Identity
	secrets  secretState
	// debugNonces are the last nonces of istio.io/debug answers, to tell
	// ACKs from questions.
	debugNonces map[string]string
}

// Identity returns the authenticated identity (nil on the plaintext port).
func (c *Connection) Identity() *Identity { return c.identity }

// Proxy returns the connected proxy.
func (c *Connection) Proxy() *proxy.Proxy { return c.proxy }

// ID returns the connection id.
func (c *Connection) ID() string { return c.id }

// Delta reports whether the stream is delta xDS.
func (c *Connection) Delta() bool { return c.delta }

// ConnectedAt returns when the stream started.
func (c *Connection) ConnectedAt() time.Time { return c.connectedAt }

// Peer returns the remote address.
func (c *Connection) Peer() string { return c.peer }

func (c *Connection) enqueue(req *PushRequest) {
	c.pushMu.Lock()
	if c.done {
		c.pushMu.Unlock()
		for _, rec := range req.records {
			rec.release(c.s)
		}
		return
	}
	c.pending = c.pending.merge(req)
	schedule := !c.queued
	c.queued = true
	c.pushMu.Unlock()
	if schedule {
		c.s.pushq.put(c)
	}
}

// receive handles one request from the transport; an error ends the stream.
func (c *Connection) receive(r *request) error {
	c.serial.Lock()
	defer c.serial.Unlock()
	if c.closed {
		return status.Error(codes.Unavailable, "stream closed")
	}
	return c.handle(r)
}

// finish unregisters a stream that ended and releases what it held.
func (c *Connection) finish() {
	c.serial.Lock()
	c.closed = true
	c.serial.Unlock()
	c.pushMu.Lock()
	c.done = true
	c.pushMu.Unlock()
	c.closeOut()
	c.s.removeConn(c)
	c.releaseAll()
	c.s.log.Debug("proxy disconnected", "proxy", c.proxy.Name, "id", c.id)
}

// StreamAggregatedResources serves state-of-the-world ADS.
func (s *Server) StreamAggregatedResources(stream discoverygrpc.AggregatedDiscoveryService_StreamAggregatedResourcesServer) error {
	return s.streamSotw(stream, false)
}

// DeltaAggregatedResources serves incremental (delta) ADS.
func (s *Server) DeltaAggregatedResources(stream discoverygrpc.AggregatedDiscoveryService_DeltaAggregatedResourcesServer) error {
	return s.streamDelta(stream, false)
}

func sotwRequest(r *discoverygrpc.DiscoveryRequest) *request {
	req := &request{typeURL: r.GetTypeUrl(), node: r.GetNode(), nonce: r.GetResponseNonce(),
		version: r.GetVersionInfo(), names: r.GetResourceNames()}
	if r.GetErrorDetail() != nil {
		req.hasError, req.errDetail = true, r.GetErrorDetail().GetMessage()
	}
	return req
}

func deltaRequest(r *discoverygrpc.DeltaDiscoveryRequest) *request {
	req := &request{typeURL: r.GetTypeUrl(), node: r.GetNode(), nonce: r.GetResponseNonce(),
		subscribe: r.GetResourceNamesSubscribe(), unsubscribe: r.GetResourceNamesUnsubscribe(),
		initial: r.GetInitialResourceVersions()}
	if r.GetErrorDetail() != nil {
		req.hasError, req.errDetail = true, r.GetErrorDetail().GetMessage()
	}
	return req
}

func (s *Server) streamSotw(stream discoverygrpc.AggregatedDiscoveryService_StreamAggregatedResourcesServer, secure bool) error {
	return s.serveGRPC(stream, false, secure, func() (*request, error) {
		r, err := stream.Recv()
		if err != nil {
			return nil, err
		}
		return sotwRequest(r), nil
	})
}

func (s *Server) streamDelta(stream discoverygrpc.AggregatedDiscoveryService_DeltaAggregatedResourcesServer, secure bool) error {
	return s.serveGRPC(stream, true, secure, func() (*request, error) {
		r, err := stream.Recv()
		if err != nil {
			return nil, err
		}
		return deltaRequest(r), nil
	})
}

// errDrainingStatus is what a stream refused or closed by a drain gets.
var errDrainingStatus = status.Error(codes.Unavailable, "control plane is draining; reconnect to another replica")

// open admits a stream whose first request is first. The transport then
// passes further requests to c.receive and calls c.finish when the stream
// ends. ctx is the stream's context (authentication reads it).
func (s *Server) open(ctx context.Context, first *request, delta, secure bool, peerAddr string, st stream) (*Connection, error) {
	if s.draining.Load() {
		s.metrics.RejectedStreams.WithLabelValues("draining").Inc()
		return nil, errDrainingStatus
	}
	p, err := proxy.Parse(first.node)
	if err != nil {
		s.metrics.RejectedStreams.WithLabelValues("bad_node").Inc()
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	var identity *Identity
	if secure {
		if identity, err = s.authenticate(ctx, p); err != nil {
			return nil, err
		}
		// Inbound config is limited to the instances this identity may
		// claim (translate.claimableInstances).
		p.Authenticated, p.VerifiedServiceAccount = true, identity.ServiceAccount
	}
	// Streams are accepted at once but served only after every registry
	// finished its initial sync: never a partial or empty config.
	select {
	case <-s.ready:
	case <-ctx.Done():
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	// Admission: a new stream costs a full initial push; pace them so a
	// reconnect storm leaves room for pushes to connected proxies.
	if err := s.admit(ctx); err != nil {
		return nil, err
	}
	c := &Connection{
		s:           s,
		id:          p.Name + "-" + strconv.FormatUint(s.connID.Add(1), 10),
		proxy:       p,
		peer:        peerAddr,
		delta:       delta,
		connectedAt: time.Now(),
		st:          st,
		watches:     map[string]*watch{},
		holds:       map[*PushRecord]int{},
		prefix:      randomPrefix(),
		identity:    identity,
	}
	if err := s.addConn(c); err != nil {
		return nil, err
	}
	// Drain lists connections once: a stream that registers after it
	// started must leave by itself.
	if s.draining.Load() {
		s.removeConn(c)
		s.metrics.RejectedStreams.WithLabelValues("draining").Inc()
		return nil, errDrainingStatus
	}
	s.log.Debug("proxy connected", "proxy", p.Name, "id", c.id, "delta", delta, "generator", p.Generator, "peer", c.peer)
	return c, nil
}

// serveGRPC serves one ADS stream of grpc-go's transport. Its handler
// goroutine only receives; pushes are sent by the push workers.
func (s *Server) serveGRPC(ss grpc.ServerStream, delta, secure bool, recv func() (*request, error)) error {
	ctx := ss.Context()
	if s.draining.Load() {
		s.metrics.RejectedStreams.WithLabelValues("draining").Inc()
		return errDrainingStatus
	}
	r, err := recv()
	if err != nil {
		return err
	}
	st := newGRPCStream(s, ss)
	peerAddr := ""
	if pr, ok := peer.FromContext(ctx); ok {
		peerAddr = pr.Addr.String()
	}
	c, err := s.open(ctx, r, delta, secure, peerAddr, st)
	if err != nil {
		return err
	}
	defer c.finish()
	for {
		if err := c.receive(r); err != nil {
			return err
		}
		if r, err = recv(); err != nil {
			return st.endStatus(err)
		}
	}
}

func randomPrefix() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (c *Connection) nextNonce() string {
	c.nonceSeq++
	return c.prefix + "-" + strconv.FormatUint(c.nonceSeq, 10)
}

func isWildcardType(t string) bool {
	return t == translate.ClusterType || t == translate.ListenerType
}

func typeLabel(t string) string {
	switch t {
	case translate.ClusterType:
		return "cds"
	case translate.EndpointType:
		return "eds"
	case translate.ListenerType:
		return "lds"
	case translate.RouteType:
		return "rds"
	case translate.SecretType:
		return "sds"
	}
	return "other"
}
