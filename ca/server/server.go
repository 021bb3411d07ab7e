package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	pb "istio.io/api/security/v1alpha1"

	"github.com/sextant-mesh/sextant/ca/authn"
	"github.com/sextant-mesh/sextant/ca/issuer"
	"github.com/sextant-mesh/sextant/ca/spiffe"
)

// Metadata keys of IstioCertificateRequest.metadata (Istio's
// pkg/security/security.go). CertSigner selects an external signer in Istio's
// RA mode; Sextant has none and ignores it.
const (
	ImpersonatedIdentity = "ImpersonatedIdentity"
	CertSigner           = "CertSigner"
)

// DefaultRateLimit is the CSRs per second allowed per identity: generous
// enough for a Deployment of a few hundred replicas sharing one service
// account to start at once (istio-agent retries with backoff when refused).
const DefaultRateLimit rate.Limit = 50

// DefaultBurst is the default burst per identity.
const DefaultBurst = 200

// ImpersonationPolicy decides whether caller may obtain a certificate for
// target (Istio: CA_TRUSTED_NODE_ACCOUNTS plus the node authorizer, for
// ztunnel). A nil policy refuses every impersonation.
type ImpersonationPolicy func(ctx context.Context, caller *authn.Caller, target spiffe.ID) error

// Options configure a Service.
type Options struct {
	// Authenticators authenticate callers: an authn.Chain (tried in
	// order, the first success wins), usually behind an authn.Guard.
	// Required.
	Authenticators authn.CallAuthenticator
	// RateLimit is the CSRs per second allowed per identity, with Burst.
	// Zero means the defaults; rate.Inf disables the limit.
	RateLimit rate.Limit
	Burst     int
	// Impersonation allows some callers to ask for other identities; nil
	// allows none.
	Impersonation ImpersonationPolicy
	// Registry receives Citadel's metrics. Required.
	Registry *prometheus.Registry
	Logger   *slog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Service implements IstioCertificateService.
type Service struct {
	pb.UnimplementedIstioCertificateServiceServer

	iss     *issuer.Issuer
	auth    authn.CallAuthenticator
	imp     ImpersonationPolicy
	limiter *limiter
	metrics *Metrics
	log     *slog.Logger
}

// New returns a Service signing with iss.
func New(iss *issuer.Issuer, o Options) (*Service, error) {
	if c, ok := o.Authenticators.(authn.Chain); o.Authenticators == nil || ok && len(c) == 0 {
		return nil, errors.New("CA service: no authenticators")
	}
	if o.Registry == nil {
		return nil, errors.New("CA service: no metrics registry")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.RateLimit == 0 {
		o.RateLimit = DefaultRateLimit
	}
	if o.RateLimit < 0 {
		return nil, fmt.Errorf("CA service: rate limit %v is negative", o.RateLimit)
	}
	if o.Burst <= 0 {
		o.Burst = max(DefaultBurst, int(math.Ceil(float64(o.RateLimit))))
	}
	m, err := newMetrics(o.Registry, iss.Store(), o.Now)
	if err != nil {
		return nil, err
	}
	return &Service{iss: iss, auth: o.Authenticators, imp: o.Impersonation, metrics: m,
		limiter: newLimiter(o.RateLimit, o.Burst, o.Now), log: o.Logger}, nil
}

// Register adds the service to a gRPC server.
func (s *Service) Register(g grpc.ServiceRegistrar) { pb.RegisterIstioCertificateServiceServer(g, s) }

// Metrics are the service's counters (for tests and debug pages).
func (s *Service) Metrics() *Metrics { return s.metrics }

// CreateCertificate implements IstioCertificateService.
func (s *Service) CreateCertificate(ctx context.Context, req *pb.IstioCertificateRequest) (*pb.IstioCertificateResponse, error) {
	s.metrics.CSRs.Inc()
	log := s.log
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		log = log.With("peer", p.Addr.String())
	}

	caller, err := s.auth.Authenticate(ctx)
	if err != nil {
		s.metrics.AuthnFailures.Inc()
		if errors.Is(err, authn.ErrNoIdentity) {
			s.metrics.IDExtractionError.Inc()
		}
		log.Warn("CSR authentication failed", "err", err)
		if errors.Is(err, authn.ErrRateLimited) {
			return nil, status.Errorf(codes.ResourceExhausted, "authentication refused: %v", err)
		}
		return nil, status.Errorf(codes.Unauthenticated, "authentication failed: %v", err)
	}
	log = log.With("identity", caller.Identity.String(), "auth", caller.Method)

	id, err := s.target(ctx, caller, req)
	if err != nil {
		log.Warn("CSR refused", "err", err)
		return nil, err
	}

	if !s.limiter.allow(caller.Identity.String()) {
		s.metrics.RateLimited.Inc()
		log.Warn("CSR rate limited")
		return nil, status.Errorf(codes.ResourceExhausted, "too many certificate requests for %s: at most %v per second (burst %d); retry later",
			caller.Identity, s.limiter.limit, s.limiter.burst)
	}

	ttl := time.Duration(req.GetValidityDuration()) * time.Second
	if req.GetValidityDuration() > int64(math.MaxInt64/time.Second) {
		ttl = time.Duration(math.MaxInt64)
	}
	chain, err := s.iss.Sign(ctx, []byte(req.GetCsr()), id, ttl)
	switch {
	case err == nil:
	case errors.Is(err, issuer.ErrInvalidCSR):
		s.metrics.CSRParsingErrors.Inc()
		log.Warn("CSR refused", "err", err)
		return nil, status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, issuer.ErrTTL):
		s.metrics.SignErrors.WithLabelValues(signErrTTL).Inc()
		log.Warn("CSR refused", "err", err)
		return nil, status.Error(codes.InvalidArgument, err.Error())
	case ctx.Err() != nil:
		return nil, status.FromContextError(ctx.Err()).Err()
	default:
		s.metrics.SignErrors.WithLabelValues(signErrCertGen).Inc()
		log.Error("signing failed", "err", err)
		return nil, status.Errorf(codes.Internal, "signing failed: %v", err)
	}
	s.metrics.Successes.Inc()
	log.Debug("certificate issued", "ttl", ttl)
	return &pb.IstioCertificateResponse{CertChain: chain}, nil
}

// target is the identity to certify: the caller's own, or the one named by
// ImpersonatedIdentity if the policy allows it.
func (s *Service) target(ctx context.Context, caller *authn.Caller, req *pb.IstioCertificateRequest) (spiffe.ID, error) {
	v, ok := req.GetMetadata().GetFields()[ImpersonatedIdentity]
	if !ok {
		return caller.Identity, nil
	}
	raw := v.GetStringValue()
	target, err := spiffe.Parse(raw)
	if err != nil {
		return spiffe.ID{}, status.Errorf(codes.InvalidArgument, "metadata %s: %v", ImpersonatedIdentity, err)
	}
	if target == caller.Identity {
		return target, nil
	}
	if s.imp == nil {
		s.metrics.AuthnFailures.Inc()
		return spiffe.ID{}, status.Errorf(codes.PermissionDenied, "%s may not request a certificate for %s (impersonation is not allowed)", caller.Identity, target)
	}
	if err := s.imp(ctx, caller, target); err != nil {
		s.metrics.AuthnFailures.Inc()
		return spiffe.ID{}, status.Errorf(codes.PermissionDenied, "%s may not request a certificate for %s: %v", caller.Identity, target, err)
	}
	if target.TrustDomain != s.iss.TrustDomain() {
		return spiffe.ID{}, status.Errorf(codes.InvalidArgument, "metadata %s: %s is not in trust domain %q", ImpersonatedIdentity, target, s.iss.TrustDomain())
	}
	return target, nil
}
