package authn_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	"github.com/sextant-mesh/sextant/ca/authn"
	"github.com/sextant-mesh/sextant/ca/spiffe"
)

// countingAuth accepts the token "good" and counts how often it ran.
type countingAuth struct{ calls int }

func (c *countingAuth) Authenticate(ctx context.Context) (*authn.Caller, error) {
	c.calls++
	tok, err := authn.BearerToken(ctx)
	if err != nil {
		return nil, err
	}
	if tok != "good" {
		return nil, errors.New("bad token")
	}
	return &authn.Caller{Identity: spiffe.ID{TrustDomain: td, Namespace: "ns", ServiceAccount: "sa"}}, nil
}

func call(ip, tok string) context.Context {
	ctx := peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{IP: net.ParseIP(ip), Port: 40000 + len(tok)%1000}})
	if tok == "" {
		return ctx
	}
	return metadata.NewIncomingContext(ctx, metadata.Pairs("authorization", "Bearer "+tok))
}

func TestGuard(t *testing.T) {
	now := time.Unix(1e9, 0)
	next := &countingAuth{}
	reg := prometheus.NewRegistry()
	g, err := authn.NewGuard(next, authn.GuardOptions{FailureRate: 1, FailureBurst: 3, Registry: reg, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	failures := func(reason string) float64 {
		return value(t, g.Metrics().Failures.WithLabelValues(reason))
	}

	// A 1 MiB token is refused before the authenticator sees it.
	if _, err := g.Authenticate(call("10.0.0.1", strings.Repeat("a", 1<<20))); !errors.Is(err, authn.ErrTokenTooLarge) ||
		!strings.Contains(err.Error(), "exceeds the limit of 16384") {
		t.Fatalf("1 MiB token: %v", err)
	}
	if next.calls != 0 {
		t.Fatalf("authenticator ran %d times on an oversized token", next.calls)
	}
	if failures(authn.ReasonTokenTooLarge) != 1 {
		t.Errorf("token_too_large = %v", failures(authn.ReasonTokenTooLarge))
	}
	// A token just under the limit reaches it (and fails there).
	if _, err := g.Authenticate(call("10.0.0.1", strings.Repeat("a", authn.MaxTokenBytes-len("Bearer ")))); err == nil || errors.Is(err, authn.ErrTokenTooLarge) {
		t.Fatalf("16 KiB token: %v", err)
	}
	// The third failure uses up the burst of 10.0.0.1.
	if _, err := g.Authenticate(call("10.0.0.1", "")); !errors.Is(err, authn.ErrNoCredentials) {
		t.Fatalf("no token: %v", err)
	}
	calls := next.calls
	// Now even a good token from that address is refused unseen...
	if _, err := g.Authenticate(call("10.0.0.1", "good")); !errors.Is(err, authn.ErrRateLimited) || !strings.Contains(err.Error(), "10.0.0.1") {
		t.Fatalf("limited peer: %v", err)
	}
	if next.calls != calls {
		t.Error("the authenticator ran for a rate-limited peer")
	}
	if got := value(t, g.Metrics().RateLimited); got != 1 {
		t.Errorf("rate limited = %v", got)
	}
	// ...while another address is served.
	if c, err := g.Authenticate(call("10.0.0.2", "good")); err != nil || c.Identity.Namespace != "ns" {
		t.Fatalf("other peer: %v %v", c, err)
	}
	// A second later one failure is allowed again.
	now = now.Add(time.Second)
	if _, err := g.Authenticate(call("10.0.0.1", "good")); err != nil {
		t.Fatalf("after refill: %v", err)
	}
	if _, err := g.Authenticate(call("10.0.0.1", "wrong")); err == nil || errors.Is(err, authn.ErrRateLimited) {
		t.Fatalf("one failure after refill: %v", err)
	}
	if _, err := g.Authenticate(call("10.0.0.1", "wrong")); !errors.Is(err, authn.ErrRateLimited) {
		t.Fatalf("second failure after refill: %v", err)
	}
	if failures(authn.ReasonRejected) != 2 || failures(authn.ReasonNoCredentials) != 1 {
		t.Errorf("rejected = %v, no_credentials = %v", failures(authn.ReasonRejected), failures(authn.ReasonNoCredentials))
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	series := map[string]int{}
	for _, mf := range mfs {
		series[mf.GetName()] = len(mf.GetMetric())
	}
	if series["sextant_authn_failures_total"] != 4 || series["sextant_authn_rate_limited_total"] != 1 {
		t.Errorf("registered series: %v", series)
	}

	if _, err := authn.NewGuard(next, authn.GuardOptions{FailureRate: -1}); err == nil {
		t.Error("negative rate accepted")
	}
}

func value(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}
