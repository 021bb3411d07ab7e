package xds

import (
	"context"
	"fmt"
	"hash/maphash"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sextant-mesh/sextant/discovery/translate"
	"github.com/sextant-mesh/sextant/model"
)

// Options configure a Server.
type Options struct {
	Logger *slog.Logger
	Mesh   model.MeshConfig
	// DebounceAfter is the quiet period before a push; DebounceMax caps how
	// long changes may be held back.
	DebounceAfter time.Duration
	DebounceMax   time.Duration
	// PushConcurrency bounds how many proxies are being pushed at once.
	PushConcurrency int
	// PushWorkers is how many goroutines send pushes (default 256); a
	// connection has no goroutine of its own for that.
	PushWorkers int
	// SendTimeout closes a stream whose send does not complete in time, so
	// a stuck proxy never holds a push slot for long.
	SendTimeout time.Duration
	// InstanceID names this control plane in proxy-status output.
	InstanceID string
	// PushLogSize is how many push records /debug/push_log keeps.
	PushLogSize int
	// NewStreamsPerSecond admits new streams at this rate (burst of the
	// same size); a stream that cannot be admitted within AdmissionWait is
	// refused with ResourceExhausted, so a reconnect storm cannot starve
	// pushes to connected proxies. 0 means 1,000.
	NewStreamsPerSecond int
	AdmissionWait       time.Duration
	// Authenticate authenticates streams on the secure port (RegisterSecure).
	Authenticate Authenticator
	// Secrets issues SDS secrets to authenticated proxies; nil disables SDS.
	Secrets SecretSource
	// SecretCheckInterval is how often certificates are checked for
	// rotation. Default 10s.
	SecretCheckInterval time.Duration
}

func (o *Options) defaults() {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Mesh.TrustDomain == "" {
		o.Mesh = model.DefaultMeshConfig()
	}
	if o.DebounceAfter <= 0 {
		o.DebounceAfter = 100 * time.Millisecond
	}
	if o.DebounceMax <= 0 {
		o.DebounceMax = 10 * time.Second
	}
	if o.PushConcurrency <= 0 {
		o.PushConcurrency = 100
	}
	if o.PushWorkers <= 0 {
		o.PushWorkers = 256
	}
	if o.SendTimeout <= 0 {
		o.SendTimeout = 20 * time.Second
	}
	if o.InstanceID == "" {
		o.InstanceID = "sextant"
	}
	if o.PushLogSize <= 0 {
		o.PushLogSize = 100
	}
	if o.NewStreamsPerSecond <= 0 {
		o.NewStreamsPerSecond = 1000
	}
	if o.AdmissionWait <= 0 {
		o.AdmissionWait = 10 * time.Second
	}
	if o.SecretCheckInterval <= 0 {
		o.SecretCheckInterval = 10 * time.Second
	}
}

// pushState is what every connection pushes from: one snapshot and its
// translation context.
type pushState struct {
	snap *model.Snapshot
	tctx *translate.Context
}

// Server is the ADS server and push pipeline.
type Server struct {
	opts    Options
	log     *slog.Logger
	agg     *model.Aggregator
	cache   *translate.Cache
	metrics *Metrics

	state atomic.Pointer[pushState]
	// published is closed (and replaced) each time a snapshot is served.
	published atomic.Pointer[chan struct{}]
	ready     chan struct{}
	readyOn   sync.Once

	mu    sync.RWMutex
	conns map[string]*Connection
	// secureNames are the proxy names held on the secure port; under mu.
	secureNames map[string]*nameHold
	connID      atomic.Uint64

	sem       chan struct{}
	pushq     *pushQueue
	openq     *queue[func()]
	strings   interner
	seed      maphash.Seed
	admission *rate.Limiter

	pushSeq atomic.Uint64
	logMu   sync.Mutex
	pushLog []*PushRecord

	draining atomic.Bool

	// security holds the secure port's authenticator and SDS source.
	security       atomic.Pointer[security]
	stopRootsWatch func() // owned by runSecretRotation
}

// New returns a server reading the model from agg.
func New(agg *model.Aggregator, opts Options) *Server {
	opts.defaults()
	s := &Server{
		opts:        opts,
		log:         opts.Logger,
		agg:         agg,
		cache:       translate.NewCache(),
		ready:       make(chan struct{}),
		conns:       map[string]*Connection{},
		secureNames: map[string]*nameHold{},
		sem:         make(chan struct{}, opts.PushConcurrency),
		pushq:       newPushQueue(),
		openq:       newQueue[func()](),
		seed:        maphash.MakeSeed(),
		admission:   rate.NewLimiter(rate.Limit(opts.NewStreamsPerSecond), opts.NewStreamsPerSecond),
	}
	published := make(chan struct{})
	s.published.Store(&published)
	if opts.Authenticate != nil || opts.Secrets != nil {
		s.security.Store(&security{auth: opts.Authenticate, secrets: opts.Secrets})
	}
	s.metrics = newMetrics(
		func() float64 { return float64(s.cache.Stats().Marshals) },
		func() float64 { return float64(s.cache.Stats().Hits) },
		func() float64 { return float64(s.cache.Stats().Misses) },
		func() float64 {
			if st := s.state.Load(); st != nil {
				return float64(len(st.tctx.Errors()))
			}
			return 0
		},
	)
	return s
}

// SetSecurity installs the secure port's authenticator and the SDS secret
// source. Call it before Run.
func (s *Server) SetSecurity(auth Authenticator, secrets SecretSource) {
	s.security.Store(&security{auth: auth, secrets: secrets})
}

// Metrics returns the server's metrics.
func (s *Server) Metrics() *Metrics { return s.metrics }

// CacheStats returns the resource cache counters.
func (s *Server) CacheStats() translate.CacheStats { return s.cache.Stats() }

// Register adds the ADS service to a gRPC server.
func (s *Server) Register(g *grpc.Server) {
	discoverygrpc.RegisterAggregatedDiscoveryServiceServer(g, s)
}

// Ready is closed once the first snapshot with every registry synced is
// being served.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// IsReady reports whether the server serves config (and is not draining).
func (s *Server) IsReady() bool {
	select {
	case <-s.ready:
		return !s.draining.Load()
	default:
		return false
	}
}

// Snapshot returns the snapshot being served (nil before the first one).
func (s *Server) Snapshot() *model.Snapshot {
	if st := s.state.Load(); st != nil {
		return st.snap
	}
	return nil
}

// SnapshotChanged returns a channel that is closed when the next snapshot
// is served. Take it before reading Snapshot to wait for a change without
// missing one.
func (s *Server) SnapshotChanged() <-chan struct{} { return *s.published.Load() }

// Run drives the debounce loop until ctx is done: changes recorded by the
// aggregator are merged until DebounceAfter passes without one, or
// DebounceMax after the first, then one push goes out.
func (s *Server) Run(ctx context.Context) error {
	rotation := make(chan struct{})
	go func() { defer close(rotation); s.runSecretRotation(ctx) }()
	defer func() { <-rotation }()
	workers := make(chan struct{})
	go func() { defer close(workers); s.runPushWorkers(ctx) }()
	defer func() { <-workers }()
	// An initial build, so registries that synced before Run are served.
	s.publish(time.Now())
	var (
		first, last time.Time
		timer       *time.Timer
		timerC      <-chan time.Time
	)
	for {
		select {
		case <-ctx.Done():
			if timer != nil {
				timer.Stop()
			}
			return nil
		case <-s.agg.Changed():
			now := time.Now()
			if first.IsZero() {
				first = now
			}
			last = now
			if timer == nil {
				timer = time.NewTimer(s.opts.DebounceAfter)
				timerC = timer.C
			}
		case <-timerC:
			now := time.Now()
			quiet := now.Sub(last)
			if quiet >= s.opts.DebounceAfter || now.Sub(first) >= s.opts.DebounceMax {
				s.metrics.DebounceTime.Observe(now.Sub(first).Seconds())
				s.publish(first)
				first, last = time.Time{}, time.Time{}
				timer, timerC = nil, nil
				continue
			}
			wait := s.opts.DebounceAfter - quiet
			if rest := s.opts.DebounceMax - now.Sub(first); rest < wait {
				wait = rest
			}
			timer.Reset(wait)
		}
	}
}

// publish builds a snapshot from the aggregator and pushes it.
func (s *Server) publish(changedAt time.Time) {
	snap, events := s.agg.Build()
	tctx := translate.NewContext(snap, s.opts.Mesh, s.cache)
	prev := s.state.Load()
	st := &pushState{snap: snap, tctx: tctx}
	s.metrics.Services.Set(float64(len(snap.Services())))
	s.metrics.SnapshotVersion.Set(float64(snap.Version))
	nerr, nwarn := model.CountErrors(snap.Errors)
	s.metrics.ConfigErrors.WithLabelValues("error").Set(float64(nerr))
	s.metrics.ConfigErrors.WithLabelValues("warning").Set(float64(nwarn))
	if !snap.Synced {
		// Never serve a partial mesh: keep waiting for every registry.
		if prev == nil {
			s.log.Debug("registries not synced yet; not serving", "version", snap.Version)
			return
		}
	}
	s.state.Store(st)
	next := make(chan struct{})
	close(*s.published.Swap(&next))
	if snap.Synced {
		s.readyOn.Do(func() {
			s.log.Info("initial sync complete; serving", "services", len(snap.Services()), "version", snap.Version)
			close(s.ready)
		})
	}
	if prev == nil || len(events) == 0 {
		return
	}
	req := s.requestFor(snap, events, changedAt)
	if req == nil {
		return
	}
	s.pushAll(req)
}

// requestFor turns model events into a push request: endpoint-only changes
// become an EDS-only push of the affected clusters.
func (s *Server) requestFor(snap *model.Snapshot, events []model.Event, changedAt time.Time) *PushRequest {
	req := &PushRequest{Start: changedAt, EDS: map[string]bool{}}
	reasons := map[string]int{}
	for _, e := range events {
		s.metrics.InboundUpdates.WithLabelValues(e.Kind.String()).Inc()
		switch e.Kind {
		case model.EventEndpoints:
			reasons["endpoint"]++
			for _, name := range translate.ClusterNamesForHost(snap, e.Service.Hostname) {
				req.EDS[name] = true
			}
		case model.EventService:
			reasons["service"]++
			req.Full = true
		case model.EventConfig:
			reasons["config"]++
			req.Full = true
		case model.EventErrors:
			// Errors and sync state change no resource.
		}
	}
	if !req.Full && len(req.EDS) == 0 {
		return nil
	}
	for r, n := range reasons {
		s.metrics.PushTriggers.WithLabelValues(r).Add(float64(n))
	}
	keys := make([]string, 0, len(reasons))
	for r, n := range reasons {
		keys = append(keys, fmt.Sprintf("%s=%d", r, n))
	}
	sort.Strings(keys)
	req.Reason = strings.Join(keys, ",")
	return req
}

// pushAll queues req on every connection. A connection that already has a
// push pending merges it, so a proxy is never queued twice.
func (s *Server) pushAll(req *PushRequest) {
	s.mu.RLock()
	conns := make([]*Connection, 0, len(s.conns))
	for _, c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.RUnlock()
	rec := &PushRecord{
		ID:      s.pushSeq.Add(1),
		Start:   req.Start,
		Queued:  time.Now(),
		Reason:  req.Reason,
		Full:    req.Full,
		Proxies: len(conns),
	}
	for n := range req.EDS {
		rec.EDSClusters = append(rec.EDSClusters, n)
	}
	sort.Strings(rec.EDSClusters)
	rec.outstanding.Store(int64(len(conns)) + 1)
	req.records = []*PushRecord{rec}
	s.recordPush(rec)
	for _, c := range conns {
		c.enqueue(req)
	}
	rec.release(s) // the dispatcher's hold
}

// PushRequest says what a push must recompute.
type PushRequest struct {
	// Full means config or services changed: every type is recomputed.
	Full bool
	// Secrets asks for SDS secrets due for rotation to be re-issued.
	Secrets bool
	// EDS names clusters whose endpoints changed (used when !Full).
	EDS    map[string]bool
	Reason string
	Start  time.Time

	records []*PushRecord
}

func (r *PushRequest) merge(o *PushRequest) *PushRequest {
	if r == nil {
		return o
	}
	m := &PushRequest{Full: r.Full || o.Full, Secrets: r.Secrets || o.Secrets, Start: r.Start, Reason: r.Reason, EDS: map[string]bool{}}
	if o.Start.Before(m.Start) {
		m.Start = o.Start
	}
	if o.Reason != r.Reason {
		m.Reason = r.Reason + ";" + o.Reason
	}
	for k := range r.EDS {
		m.EDS[k] = true
	}
	for k := range o.EDS {
		m.EDS[k] = true
	}
	m.records = append(append([]*PushRecord{}, r.records...), o.records...)
	return m
}

// nameHold is which authenticated identity holds a proxy name on the
// secure port, and by how many streams.
type nameHold struct {
	identity string
	streams  int
}

// addConn registers a connection. On the secure port a proxy name belongs
// to the identity that holds it: a stream claiming a name another identity
// holds is refused, so two workloads cannot pass as one proxy in syncz,
// config_dump and proxy-status (the node's namespace is checked against
// the identity, but not its pod.namespace name).
func (s *Server) addConn(c *Connection) error {
	s.mu.Lock()
	if c.identity != nil {
		id := c.identityName()
		h := s.secureNames[c.proxy.Name]
		if h != nil && h.identity != id {
			s.mu.Unlock()
			s.metrics.RejectedStreams.WithLabelValues("name_conflict").Inc()
			return status.Errorf(codes.AlreadyExists, "proxy name %s is already held by a stream authenticated as %s; this stream is authenticated as %s",
				c.proxy.Name, h.identity, id)
		}
		if h == nil {
			h = &nameHold{identity: id}
			s.secureNames[c.proxy.Name] = h
		}
		h.streams++
	}
	s.conns[c.id] = c
	n := len(s.conns)
	s.mu.Unlock()
	s.metrics.Connections.Set(float64(n))
	return nil
}

func (s *Server) removeConn(c *Connection) {
	s.mu.Lock()
	if _, ok := s.conns[c.id]; ok && c.identity != nil {
		if h := s.secureNames[c.proxy.Name]; h != nil {
			if h.streams--; h.streams <= 0 {
				delete(s.secureNames, c.proxy.Name)
			}
		}
	}
	delete(s.conns, c.id)
	n := len(s.conns)
	s.mu.Unlock()
	s.metrics.Connections.Set(float64(n))
}

// Connections returns the connected proxies, sorted by proxy name.
func (s *Server) Connections() []*Connection {
	s.mu.RLock()
	out := make([]*Connection, 0, len(s.conns))
	for _, c := range s.conns {
		out = append(out, c)
	}
	s.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].proxy.Name != out[j].proxy.Name {
			return out[i].proxy.Name < out[j].proxy.Name
		}
		return out[i].id < out[j].id
	})
	return out
}
