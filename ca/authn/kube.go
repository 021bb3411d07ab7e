package authn

import (
	"context"
	"errors"
	"fmt"

	"github.com/sextant-mesh/sextant/ca/spiffe"
)

// ErrReviewRejected is what a TokenReviewer returns when Kubernetes says
// the token is not authenticated.
var ErrReviewRejected = errors.New("token rejected by TokenReview")

// TokenReviewer validates a bearer token with the Kubernetes TokenReview API.
// The Kubernetes registry implements it; the call's context carries the
// gRPC metadata, including istio-agent's "clusterid" for multi-cluster.
type TokenReviewer interface {
	// ReviewToken returns the authenticated user name
	// (system:serviceaccount:<ns>:<sa>) when the token is valid for one of
	// audiences, or an error (ErrReviewRejected when Kubernetes said no).
	ReviewToken(ctx context.Context, token string, audiences []string) (username string, err error)
}

// KubeJWT authenticates istio-agent's projected service-account token with
// TokenReview, as istiod's KubeJWTAuthenticator does.
type KubeJWT struct {
	reviewer    TokenReviewer
	trustDomain string
	audiences   []string
}

// NewKubeJWT returns a TokenReview authenticator; audiences default to
// [istio-ca].
func NewKubeJWT(r TokenReviewer, trustDomain string, audiences []string) *KubeJWT {
	if len(audiences) == 0 {
		audiences = []string{DefaultAudience}
	}
	return &KubeJWT{reviewer: r, trustDomain: trustDomain, audiences: audiences}
}

// Name implements Authenticator.
func (k *KubeJWT) Name() string { return "kube-jwt" }

// Authenticate implements Authenticator.
func (k *KubeJWT) Authenticate(ctx context.Context) (*Caller, error) {
	tok, err := BearerToken(ctx)
	if err != nil {
		return nil, err
	}
	user, err := k.reviewer.ReviewToken(ctx, tok, k.audiences)
	if err != nil {
		return nil, fmt.Errorf("TokenReview: %w", err)
	}
	id, err := spiffe.FromServiceAccountUser(k.trustDomain, user)
	if err != nil {
		return nil, fmt.Errorf("%w: TokenReview: %v", ErrNoIdentity, err)
	}
	return &Caller{Identity: id, Method: k.Name()}, nil
}
