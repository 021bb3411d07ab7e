// Package sds connects the CA to the xDS server: it authenticates ADS
// streams on the secure port with the CA's authenticators and issues the
// SDS secrets (Istio's "default" and "ROOTCA") from the CA.
package sds

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sextant-mesh/sextant/ca/authn"
	"github.com/sextant-mesh/sextant/ca/issuer"
	"github.com/sextant-mesh/sextant/ca/spiffe"
	"github.com/sextant-mesh/sextant/discovery/xds"
)

// Authenticator authenticates xDS streams with the CA's authenticators
// (client certificates this CA issued, JWTs, TokenReview, …), usually an
// authn.Guard around the chain. A peer the guard rate-limits gets
// ResourceExhausted; other failures are Unauthenticated (xds adds that).
func Authenticator(auth authn.CallAuthenticator) xds.Authenticator {
	return func(ctx context.Context) (xds.Identity, error) {
		c, err := auth.Authenticate(ctx)
		if errors.Is(err, authn.ErrRateLimited) {
			return xds.Identity{}, status.Errorf(codes.ResourceExhausted, "authentication refused: %v", err)
		}
		if err != nil {
			return xds.Identity{}, err
		}
		return xds.Identity{Namespace: c.Identity.Namespace, ServiceAccount: c.Identity.ServiceAccount, SpiffeID: c.Identity.String()}, nil
	}
}

// Source issues SDS secrets from the CA. A workload certificate is replaced
// when RotateAt of its lifetime is left (istio-agent uses 0.5).
type Source struct {
	Issuer   *issuer.Issuer
	RotateAt float64
	// TTL of issued certificates; 0 means the issuer's default.
	TTL time.Duration
}

// Workload issues a key and certificate for id.
func (s Source) Workload(ctx context.Context, id xds.Identity) (chain, key []byte, rotateAt time.Time, err error) {
	sid, err := spiffe.New(s.Issuer.TrustDomain(), id.Namespace, id.ServiceAccount)
	if err != nil {
		return nil, nil, time.Time{}, fmt.Errorf("identity %s/%s: %w", id.Namespace, id.ServiceAccount, err)
	}
	now := time.Now()
	is, err := s.Issuer.Issue(ctx, sid, s.TTL)
	if err != nil {
		return nil, nil, time.Time{}, fmt.Errorf("issue certificate for %s: %w", sid, err)
	}
	// Measured from issuance, not NotBefore, which is backdated for clock
	// skew.
	life := is.NotAfter().Sub(now)
	return is.CertChainPEM, is.KeyPEM, is.NotAfter().Add(-time.Duration(float64(life) * s.RotateAt)), nil
}

// Roots returns the trust bundle.
func (s Source) Roots() []byte { return s.Issuer.Roots() }

// WatchRoots signals trust bundle changes.
func (s Source) WatchRoots() (<-chan struct{}, func()) { return s.Issuer.WatchRoots() }
