package xds

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/sextant-mesh/sextant/discovery/proxy"
	"github.com/sextant-mesh/sextant/discovery/translate"
	"github.com/sextant-mesh/sextant/model"
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
	// send writes one response: an *encoded or a proto.Message. The
	// transport bounds how long it may block.
	send(m any) error
	// close ends the stream with err's status (nil: OK). It may be called
	// from any goroutine, more than once.
	close(err error)
}

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

// takePending returns the merged pending push and unschedules c, so a push
// queued from now on schedules it again.
func (c *Connection) takePending() *PushRequest {
	c.pushMu.Lock()
	defer c.pushMu.Unlock()
	r := c.pending
	c.pending = nil
	c.queued = false
	return r
}

// maxQueuedRequests bounds the requests a client may have waiting for a
// worker; a client that floods its stream is cut off.
const maxQueuedRequests = 1024

// posted is a request waiting for a push worker: raw, decoded by c.decode
// there, unless r is set already.
type posted struct {
	raw []byte
	r   *request
}

// post queues a request for a push worker, so the transport's goroutine
// goes back to reading at once and stays shallow (the lean transport uses
// it). r may be nil: raw is decoded on the worker.
func (c *Connection) post(raw []byte, r *request) error {
	c.pushMu.Lock()
	if c.done {
		c.pushMu.Unlock()
		return nil
	}
	if len(c.reqs) >= maxQueuedRequests {
		c.pushMu.Unlock()
		return status.Errorf(codes.ResourceExhausted, "more than %d requests waiting on one stream", maxQueuedRequests)
	}
	c.reqs = append(c.reqs, posted{raw: raw, r: r})
	schedule := !c.queued
	c.queued = true
	c.pushMu.Unlock()
	if schedule {
		c.s.pushq.put(c)
	}
	return nil
}

// takeWork returns the posted requests and the pending push and
// unschedules c, in one step: whatever is posted or enqueued after it
// schedules c again.
func (c *Connection) takeWork() ([]posted, *PushRequest) {
	c.pushMu.Lock()
	defer c.pushMu.Unlock()
	reqs, req := c.reqs, c.pending
	c.reqs, c.pending, c.queued = nil, nil, false
	return reqs, req
}

// runPush handles c's posted requests, then sends its pending push; it
// runs on a push worker.
func (c *Connection) runPush() {
	c.serial.Lock()
	reqs, req := c.takeWork()
	var err error
	for _, p := range reqs {
		if c.closed {
			break
		}
		r := p.r
		if r == nil {
			if r, err = c.decode(p.raw); err != nil {
				break
			}
		}
		if err = c.handle(r); err != nil {
			break
		}
	}
	if req != nil && err == nil && !c.closed {
		err = c.push(req)
	} else if req != nil {
		for _, rec := range req.records {
			rec.release(c.s)
		}
	}
	c.serial.Unlock()
	if err != nil {
		c.st.close(err)
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

// admit waits for the stream's turn under the admission rate limit.
func (s *Server) admit(ctx context.Context) error {
	res := s.admission.Reserve()
	delay := res.Delay()
	if !res.OK() || delay > s.opts.AdmissionWait {
		res.Cancel()
		s.metrics.RejectedStreams.WithLabelValues("admission").Inc()
		return status.Error(codes.ResourceExhausted, "too many new xDS streams; retry with backoff")
	}
	if delay <= 0 {
		return nil
	}
	t := time.NewTimer(delay)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		res.Cancel()
		return status.FromContextError(ctx.Err()).Err()
	}
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

// handle processes one request from the proxy.
func (c *Connection) handle(r *request) error {
	s := c.s
	if r.typeURL == "" {
		return status.Error(codes.InvalidArgument, "request has no type_url")
	}
	if strings.HasPrefix(r.typeURL, "istio.io/debug") {
		return c.handleDebug(r)
	}
	c.mu.Lock()
	w := c.watches[r.typeURL]
	if r.hasError {
		s.metrics.Rejects.WithLabelValues(typeLabel(r.typeURL)).Inc()
		s.log.Warn("proxy rejected config (NACK)", "proxy", c.proxy.Name, "type", typeLabel(r.typeURL),
			"nonce", r.nonce, "error", r.errDetail)
		if w != nil {
			w.lastError = r.errDetail
			c.resolveLocked(w, true)
		}
		// Later versions still go out; a NACK is not retried on its own.
		c.updateSubscriptionLocked(w, r)
		c.mu.Unlock()
		return nil
	}
	if w == nil {
		w = &watch{typeURL: c.s.strings.get(r.typeURL)}
		if c.delta {
			w.wildcard = isWildcardType(r.typeURL) && len(r.subscribe) == 0
			for _, n := range r.subscribe {
				if n == "*" {
					w.wildcard = true
				}
			}
			if len(r.initial) > 0 {
				if w.wildcard {
					w.initial = r.initial
				}
			}
		} else {
			names := r.sotwNames(&c.s.strings)
			w.wildcard = isWildcardType(r.typeURL) && len(names) == 0
			for _, n := range names {
				if n == "*" {
					w.wildcard = true
				}
			}
		}
		c.watches[r.typeURL] = w
		c.updateSubscriptionLocked(w, r)
		if c.delta && !w.wildcard {
			for n, v := range r.initial {
				if w.names.has(n) {
					w.names.set(n, &translate.Resource{Name: n, Version: v})
				}
			}
		}
		sends := c.prepareLocked(w, nil, r.version)
		c.mu.Unlock()
		return c.sendAll(sends, nil)
	}
	if r.nonce != "" && r.nonce != w.nonceSent {
		s.metrics.ExpiredNonce.WithLabelValues(typeLabel(r.typeURL)).Inc()
		// A stale ACK; the proxy will answer the newer response. Delta
		// subscription changes still count.
		if c.delta {
			added := c.updateSubscriptionLocked(w, r)
			if len(added) > 0 {
				sends := c.prepareLocked(w, added, "")
				c.mu.Unlock()
				return c.sendAll(sends, nil)
			}
		}
		c.mu.Unlock()
		return nil
	}
	if r.nonce != "" {
		w.nonceAcked = w.nonceSent
		w.versionAcked = w.versionSent
		w.lastAcked = time.Now()
		w.lastError = ""
		c.resolveLocked(w, false)
	}
	added := c.updateSubscriptionLocked(w, r)
	var sends []outgoing
	switch {
	case r.nonce == "" && !c.delta:
		// A repeated initial request (e.g. after a client-side reset):
		// the client may have dropped what it had, so answer with
		// everything unless its version_info says it holds it.
		w.set = nil
		for _, n := range w.names.names() {
			w.names.set(n, nil)
		}
		w.nonceSent = ""
		sends = c.prepareLocked(w, nil, r.version)
	case len(added) > 0:
		sends = c.prepareLocked(w, added, "")
	}
	c.mu.Unlock()
	return c.sendAll(sends, nil)
}

// updateSubscriptionLocked applies the names of a request to w and returns
// the newly subscribed ones.
func (c *Connection) updateSubscriptionLocked(w *watch, r *request) []string {
	if w == nil || w.wildcard {
		return nil
	}
	if c.delta {
		var fresh []string
		for _, n := range r.subscribe {
			if n != "*" && !w.names.has(n) {
				fresh = append(fresh, c.s.strings.get(n))
			}
		}
		added := w.names.add(fresh)
		w.names.drop(r.unsubscribe)
		return added
	}
	if r.sameSubscription(w, c.s.seed) {
		return nil
	}
	if r.raw != nil {
		defer func() { w.subHash = r.namesHash(c.s.seed) }()
	}
	names := r.sotwNames(&c.s.strings)
	want := make(map[string]bool, len(names))
	var fresh []string
	for _, n := range names {
		want[n] = true
		if !w.names.has(n) {
			fresh = append(fresh, c.s.strings.get(n))
		}
	}
	added := w.names.add(fresh)
	if w.names.len() > len(want) {
		w.names.retain(func(n string) bool { return want[n] })
	}
	return added
}

// resolveLocked marks the pushes waiting on w as answered by this proxy.
func (c *Connection) resolveLocked(w *watch, nack bool) {
	for _, rec := range w.waiting {
		if nack {
			rec.mu.Lock()
			rec.nacks++
			rec.mu.Unlock()
		}
		c.holds[rec]--
		if c.holds[rec] <= 0 {
			delete(c.holds, rec)
			c.s.metrics.Convergence.Observe(time.Since(rec.Queued).Seconds())
			rec.release(c.s)
		}
	}
	w.waiting = nil
}

func (c *Connection) releaseAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for rec := range c.holds {
		rec.release(c.s)
	}
	c.holds = map[*PushRecord]int{}
	// Pending pushes never reached this proxy.
	if p := c.takePending(); p != nil {
		for _, rec := range p.records {
			rec.release(c.s)
		}
	}
}

// push sends what req changed for every watched type.
func (c *Connection) push(req *PushRequest) error {
	// The push slot bounds concurrent generation (CPU); sending happens
	// after it is released, so a slow proxy never holds a slot.
	start := time.Now()
	c.s.sem <- struct{}{}
	c.s.metrics.QueueTime.Observe(time.Since(start).Seconds())
	c.mu.Lock()
	var sends []outgoing
	for _, t := range pushOrder {
		w := c.watches[t]
		if w == nil {
			continue
		}
		if req.Full || (req.Secrets && t == translate.SecretType) {
			sends = append(sends, c.prepareLocked(w, nil, "")...)
			continue
		}
		if t != translate.EndpointType || w.wildcard {
			continue
		}
		var only []string
		for n := range req.EDS {
			if w.names.has(n) {
				only = append(only, n)
			}
		}
		if len(only) > 0 {
			sends = append(sends, c.prepareLocked(w, only, "")...)
		}
	}
	// Attach the push's records to the watches that were sent something;
	// release the rest at once.
	for _, rec := range req.records {
		n := 0
		for _, o := range sends {
			o.w.waiting = append(o.w.waiting, rec)
			n++
		}
		if n == 0 {
			rec.release(c.s)
			continue
		}
		c.holds[rec] += n
		rec.mu.Lock()
		rec.sent++
		rec.mu.Unlock()
	}
	c.mu.Unlock()
	<-c.s.sem
	return c.sendAll(sends, req.records)
}

// outgoing is one prepared response.
type outgoing struct {
	w     *watch
	msg   *encoded
	count int
	bytes int
	built time.Time
}

func (c *Connection) sendAll(sends []outgoing, recs []*PushRecord) error {
	for _, o := range sends {
		label := typeLabel(o.w.typeURL)
		err := c.st.send(o.msg)
		if err != nil {
			c.s.metrics.Pushes.WithLabelValues(label + "_senderr").Inc()
			return err
		}
		c.s.metrics.Pushes.WithLabelValues(label).Inc()
		c.s.metrics.PushTime.WithLabelValues(label).Observe(time.Since(o.built).Seconds())
		c.s.metrics.ConfigSize.WithLabelValues(label).Observe(float64(o.bytes))
		for _, rec := range recs {
			rec.addSent(o.count, o.bytes)
		}
	}
	return nil
}

// lookup returns the current resource of a type by name for this proxy.
func (c *Connection) lookup(st *pushState, typeURL, name string) *translate.Resource {
	switch typeURL {
	case translate.EndpointType:
		return st.tctx.Endpoint(c.proxy, name)
	case translate.SecretType:
		return c.secretLocked(name)
	case translate.ListenerType:
		if translate.IsGRPCInbound(name) {
			// A proxyless server's listener: built for this proxy's own
			// workload, never part of the shared scope.
			return st.tctx.GRPCInboundListener(c.proxy, name)
		}
	}
	return st.tctx.Resources(c.proxy, typeURL).Get(name)
}

// prepareLocked computes the response for w. only limits a named watch to
// those names; resume is a SotW client's version_info on its first request,
// and nothing is sent when it already matches.
func (c *Connection) prepareLocked(w *watch, only []string, resume string) []outgoing {
	st := c.s.state.Load()
	if st == nil {
		return nil
	}
	built := time.Now()
	known := w.typeURL == translate.ClusterType || w.typeURL == translate.EndpointType ||
		w.typeURL == translate.ListenerType || w.typeURL == translate.RouteType ||
		(w.typeURL == translate.SecretType && !w.wildcard)
	if !known {
		// Types Sextant does not serve on this port: answer wildcard
		// requests with an empty set so clients do not wait.
		if !w.wildcard || w.nonceSent != "" {
			return nil
		}
		return c.finishLocked(w, nil, nil, versionOf(nil), built)
	}
	if w.wildcard {
		ts := st.tctx.Resources(c.proxy, w.typeURL)
		if ts == nil {
			ts = &translate.TypeSet{}
		}
		ver := model.FormatHash(ts.Hash)
		if c.delta {
			var changed []*translate.Resource
			var removed []string
			have := map[string]string{}
			if w.set != nil {
				for _, r := range w.set.Resources {
					have[r.Name] = r.Version
				}
			} else {
				have = w.initial
			}
			for _, r := range ts.Resources {
				if have[r.Name] != r.Version {
					changed = append(changed, r)
				}
			}
			for n := range have {
				if ts.Get(n) == nil {
					removed = append(removed, n)
				}
			}
			w.set, w.initial = ts, nil
			if len(changed) == 0 && len(removed) == 0 {
				if w.nonceSent == "" {
					c.markResumedLocked(w, ver)
				}
				return nil
			}
			return c.finishLocked(w, changed, removed, ver, built)
		}
		if w.set != nil && w.set.Hash == ts.Hash && w.nonceSent != "" {
			return nil
		}
		if resume != "" && resume == ver {
			w.set = ts
			c.markResumedLocked(w, ver)
			return nil
		}
		w.set = ts
		return c.finishLocked(w, ts.Resources, nil, ver, built)
	}
	names := only
	if names == nil {
		names = w.names.names()
	}
	var changed []*translate.Resource
	var removed []string
	for _, n := range names {
		cur, ok := w.names.get(n)
		if !ok {
			continue
		}
		r := c.lookup(st, w.typeURL, n)
		switch {
		case r == nil:
			if c.delta && (cur != nil || contains(only, n)) {
				removed = append(removed, n)
			}
			w.names.set(n, nil)
		case cur == nil || cur.Version != r.Version:
			changed = append(changed, r)
			w.names.set(n, r)
		}
	}
	ver := c.namedVersionLocked(w)
	if !c.delta && resume != "" && resume == ver {
		c.markResumedLocked(w, ver)
		return nil
	}
	if !c.delta && isWildcardType(w.typeURL) && len(changed) > 0 {
		// In SotW, a CDS or LDS response replaces the whole set even when
		// the client subscribed by name (gRPC does): send every subscribed
		// resource that exists, not just the changed ones.
		changed = changed[:0]
		for _, e := range w.names.e {
			if e.res != nil {
				changed = append(changed, e.res)
			}
		}
	}
	if len(changed) == 0 && len(removed) == 0 {
		if w.nonceSent == "" && !c.delta && resume == "" && only == nil {
			// SotW clients wait for an answer to their first request, even an
			// empty one.
			return c.finishLocked(w, nil, nil, ver, built)
		}
		return nil
	}
	return c.finishLocked(w, changed, removed, ver, built)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// namedVersionLocked is the SotW version_info of a named watch: an
// order-independent sum of the hashes of every subscribed name and the
// version sent for it, kept up to date as names change (no per-send sort),
// so a reconnecting client that holds the same set gets nothing resent.
func (c *Connection) namedVersionLocked(w *watch) string {
	return model.FormatHash(w.names.sum)
}

// nameHash is one subscribed name's share of a named watch's version.
func nameHash(n string, r *translate.Resource) uint64 {
	h := (&model.Hasher{}).Str(n)
	if r != nil {
		h.Str(r.Version)
	}
	return h.Sum()
}

func versionOf(rs []*translate.Resource) string {
	h := &model.Hasher{}
	for _, r := range rs {
		h.Str(r.Name).Str(r.Version)
	}
	return model.FormatHash(h.Sum())
}

func (c *Connection) markResumedLocked(w *watch, ver string) {
	w.nonceSent = "resumed"
	w.nonceAcked = "resumed"
	w.versionSent, w.versionAcked = ver, ver
	w.lastSent, w.lastAcked = time.Now(), time.Now()
}

func (c *Connection) finishLocked(w *watch, changed []*translate.Resource, removed []string, ver string, built time.Time) []outgoing {
	nonce := c.nextNonce()
	w.nonceSent, w.versionSent, w.lastSent = nonce, ver, time.Now()
	o := outgoing{w: w, count: len(changed) + len(removed), built: built}
	for _, r := range changed {
		o.bytes += len(r.Any.GetValue())
	}
	if c.delta {
		o.msg = encodeDelta(ver, w.typeURL, nonce, changed, removed)
	} else {
		o.msg = encodeSotw(ver, w.typeURL, nonce, changed)
	}
	return []outgoing{o}
}

// WatchStatus is the sync state of one type on one connection.
type WatchStatus struct {
	TypeURL      string    `json:"typeUrl"`
	NonceSent    string    `json:"nonceSent,omitempty"`
	NonceAcked   string    `json:"nonceAcked,omitempty"`
	VersionSent  string    `json:"versionSent,omitempty"`
	VersionAcked string    `json:"versionAcked,omitempty"`
	LastError    string    `json:"lastError,omitempty"`
	LastSent     time.Time `json:"lastSent,omitempty"`
	LastAcked    time.Time `json:"lastAcked,omitempty"`
	Resources    int       `json:"resources"`
	Status       string    `json:"status"`
}

// Status values, as istioctl prints them.
const (
	StatusSynced  = "SYNCED"
	StatusStale   = "STALE"
	StatusNack    = "NACK"
	StatusNotSent = "NOT SENT"
)

// Watches returns the sync state of every watched type.
func (c *Connection) Watches() []WatchStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []WatchStatus
	for _, t := range pushOrder {
		w := c.watches[t]
		if w == nil {
			continue
		}
		ws := WatchStatus{TypeURL: t, NonceSent: w.nonceSent, NonceAcked: w.nonceAcked, VersionSent: w.versionSent,
			VersionAcked: w.versionAcked, LastError: w.lastError, LastSent: w.lastSent, LastAcked: w.lastAcked}
		ws.Resources = len(c.sentLocked(w))
		switch {
		case w.lastError != "":
			ws.Status = StatusNack
		case w.nonceSent == "":
			ws.Status = StatusNotSent
		case w.nonceSent == w.nonceAcked:
			ws.Status = StatusSynced
		default:
			ws.Status = StatusStale
		}
		out = append(out, ws)
	}
	return out
}

func (c *Connection) sentLocked(w *watch) []*translate.Resource {
	if w.wildcard {
		if w.set == nil {
			return nil
		}
		return w.set.Resources
	}
	var out []*translate.Resource
	for _, e := range w.names.e {
		if e.res != nil && e.res.Any != nil {
			out = append(out, e.res)
		}
	}
	sortResources(out)
	return out
}

// Sent returns the resources last sent to the proxy for a type, as
// messages, sorted by name.
func (c *Connection) Sent(typeURL string) []proto.Message {
	c.mu.Lock()
	defer c.mu.Unlock()
	w := c.watches[typeURL]
	if w == nil {
		return nil
	}
	var out []proto.Message
	for _, r := range c.sentLocked(w) {
		out = append(out, redact(r.Msg))
	}
	return out
}
