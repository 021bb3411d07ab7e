package authn

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
)

// MaxTokenBytes is the largest authorization header a Guard lets an
// authenticator see. Istio's projected service-account tokens are about
// 1 KiB; anything far larger is refused before it is parsed or sent to
// TokenReview.
const MaxTokenBytes = 16 << 10

// Guard defaults: a peer may fail DefaultFailureBurst authentications in a
// row, then one per 1/DefaultFailureRate seconds. Successes cost nothing,
// so thousands of proxies behind one address are unaffected as long as
// their credentials are good.
const (
	DefaultFailureRate  = 1.0
	DefaultFailureBurst = 10
	// maxGuardPeers bounds the per-peer table; see Guard.bucket.
	maxGuardPeers = 1 << 16
)

var (
	// ErrTokenTooLarge: the call's authorization metadata exceeds
	// MaxTokenBytes.
	ErrTokenTooLarge = errors.New("bearer token too large")
	// ErrRateLimited: the peer failed too many authentications recently;
	// its credentials were not looked at.
	ErrRateLimited = errors.New("too many failed authentications from this address")
)

// CallAuthenticator authenticates a call; Chain and Guard implement it.
type CallAuthenticator interface {
	Authenticate(ctx context.Context) (*Caller, error)
}

// GuardOptions configure a Guard. Zero values take the defaults above.
type GuardOptions struct {
	// FailureRate is how many failed authentications per second a peer
	// address earns back; FailureBurst how many it may fail in a row.
	FailureRate  float64
	FailureBurst int
	// Registry receives sextant_authn_failures_total{reason} and
	// sextant_authn_rate_limited_total; nil registers nothing.
	Registry prometheus.Registerer
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Guard protects an authenticator on a port anyone can reach (the secure
// port is TLS, but a client certificate is optional there): it refuses
// authorization metadata above MaxTokenBytes before any authenticator
// parses it, and limits failed authentications per peer address with a
// token bucket, so a client guessing tokens, or feeding JWT parsing and
// TokenReview, is refused cheaply.
type Guard struct {
	next  CallAuthenticator
	rate  rate.Limit
	burst int
	now   func() time.Time

	m GuardMetrics

	mu    sync.Mutex
	peers map[string]*rate.Limiter
}

// GuardMetrics are a Guard's counters.
type GuardMetrics struct {
	// Failures is sextant_authn_failures_total{reason}.
	Failures *prometheus.CounterVec
	// RateLimited is sextant_authn_rate_limited_total.
	RateLimited prometheus.Counter
}

// Metrics returns the guard's counters.
func (g *Guard) Metrics() GuardMetrics { return g.m }

// Failure reasons of sextant_authn_failures_total.
const (
	ReasonTokenTooLarge = "token_too_large"
	ReasonNoCredentials = "no_credentials"
	ReasonNoIdentity    = "no_identity"
	ReasonRejected      = "rejected"
)

// NewGuard wraps next. Registering the metrics twice on one registry is an
// error.
func NewGuard(next CallAuthenticator, o GuardOptions) (*Guard, error) {
	if o.FailureRate < 0 || o.FailureBurst < 0 {
		return nil, fmt.Errorf("authentication failure limit %v/s burst %d: must not be negative", o.FailureRate, o.FailureBurst)
	}
	if o.FailureRate == 0 {
		o.FailureRate = DefaultFailureRate
	}
	if o.FailureBurst == 0 {
		o.FailureBurst = DefaultFailureBurst
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	g := &Guard{next: next, rate: rate.Limit(o.FailureRate), burst: o.FailureBurst, now: o.Now,
		m: GuardMetrics{Failures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sextant_authn_failures_total",
			Help: "Failed authentications on the secure port (CA and xDS), by reason: token_too_large, no_credentials, no_identity, rejected."},
			[]string{"reason"}),
			RateLimited: prometheus.NewCounter(prometheus.CounterOpts{Name: "sextant_authn_rate_limited_total",
				Help: "Calls refused without authenticating because their peer address failed too many authentications recently."})},
		peers: map[string]*rate.Limiter{},
	}
	for _, r := range []string{ReasonTokenTooLarge, ReasonNoCredentials, ReasonNoIdentity, ReasonRejected} {
		g.m.Failures.WithLabelValues(r)
	}
	if o.Registry != nil {
		for _, c := range []prometheus.Collector{g.m.Failures, g.m.RateLimited} {
			if err := o.Registry.Register(c); err != nil {
				return nil, fmt.Errorf("authn metrics: %w", err)
			}
		}
	}
	return g, nil
}

// Authenticate refuses a peer over its failure limit (ErrRateLimited) and
// oversized authorization metadata (ErrTokenTooLarge), then asks next.
// Every failure, the oversized token included, costs the peer one token.
func (g *Guard) Authenticate(ctx context.Context) (*Caller, error) {
	addr := peerHost(ctx)
	now := g.now()
	if !g.allowed(addr, now) {
		g.m.RateLimited.Inc()
		return nil, fmt.Errorf("%w (%s): at most %d in a row, then %v per second; retry later", ErrRateLimited, addr, g.burst, float64(g.rate))
	}
	if n := authorizationBytes(ctx); n > MaxTokenBytes {
		g.fail(addr, now, ReasonTokenTooLarge)
		return nil, fmt.Errorf("%w: authorization metadata of %d bytes exceeds the limit of %d", ErrTokenTooLarge, n, MaxTokenBytes)
	}
	c, err := g.next.Authenticate(ctx)
	if err != nil {
		reason := ReasonRejected
		switch {
		case errors.Is(err, ErrNoIdentity):
			reason = ReasonNoIdentity
		case errors.Is(err, ErrNoCredentials):
			reason = ReasonNoCredentials
		}
		g.fail(addr, now, reason)
		return nil, err
	}
	return c, nil
}

// allowed reports whether addr has a token left, without taking it.
func (g *Guard) allowed(addr string, now time.Time) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	l := g.peers[addr]
	return l == nil || l.TokensAt(now) >= 1
}

func (g *Guard) fail(addr string, now time.Time, reason string) {
	g.m.Failures.WithLabelValues(reason).Inc()
	g.mu.Lock()
	defer g.mu.Unlock()
	g.bucket(addr, now).AllowN(now, 1)
}

// bucket returns addr's limiter, creating it. The table is bounded: when
// full, peers whose bucket refilled (indistinguishable from new ones) are
// dropped, and if none has, an arbitrary one, so an attacker with many
// addresses cannot grow memory, only reset some other peer's count.
func (g *Guard) bucket(addr string, now time.Time) *rate.Limiter {
	if l := g.peers[addr]; l != nil {
		return l
	}
	if len(g.peers) >= maxGuardPeers {
		for a, l := range g.peers {
			if l.TokensAt(now) >= float64(g.burst) {
				delete(g.peers, a)
			}
		}
		for a := range g.peers {
			if len(g.peers) < maxGuardPeers {
				break
			}
			delete(g.peers, a)
		}
	}
	l := rate.NewLimiter(g.rate, g.burst)
	g.peers[addr] = l
	return l
}

// peerHost is the call's peer IP (the port changes with every connection,
// so it is left out); "unknown" without one.
func peerHost(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return "unknown"
	}
	s := p.Addr.String()
	if h, _, err := net.SplitHostPort(s); err == nil {
		return h
	}
	return s
}

// authorizationBytes is the size of the call's largest authorization value.
func authorizationBytes(ctx context.Context) int {
	md, _ := metadata.FromIncomingContext(ctx)
	n := 0
	for _, v := range md.Get("authorization") {
		n = max(n, len(v))
	}
	return n
}
