package kube

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"google.golang.org/grpc/metadata"
	authv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/sextant-mesh/sextant/ca/authn"
)

// ClusterIDMetadata is the gRPC metadata key istio-agent sends its cluster
// in.
const ClusterIDMetadata = "clusterid"

// ErrUnknownCluster: the call names a cluster this CA has no client for.
var ErrUnknownCluster = errors.New("unknown cluster")

// TokenReviewer implements authn.TokenReviewer with the TokenReview API.
type TokenReviewer struct {
	client    kubernetes.Interface
	clusterID string
	remote    func(clusterID string) kubernetes.Interface
}

// ReviewerOptions configure a TokenReviewer.
type ReviewerOptions struct {
	// ClusterID is the local cluster's name (default "Kubernetes"). Calls
	// without clusterid metadata, or naming it, are reviewed locally.
	ClusterID string
	// Remote returns the client of another cluster, or nil; nil Remote
	// rejects every other cluster.
	Remote func(clusterID string) kubernetes.Interface
}

// NewTokenReviewer returns a reviewer that calls TokenReview on client.
func NewTokenReviewer(client kubernetes.Interface, o ReviewerOptions) *TokenReviewer {
	if o.ClusterID == "" {
		o.ClusterID = "Kubernetes"
	}
	return &TokenReviewer{client: client, clusterID: o.ClusterID, remote: o.Remote}
}

var _ authn.TokenReviewer = (*TokenReviewer)(nil)

// ReviewToken implements authn.TokenReviewer. Errors never contain the
// token.
func (r *TokenReviewer) ReviewToken(ctx context.Context, token string, audiences []string) (string, error) {
	client := r.client
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if ids := md.Get(ClusterIDMetadata); len(ids) > 0 && ids[0] != "" && ids[0] != r.clusterID {
			var c kubernetes.Interface
			if r.remote != nil {
				c = r.remote(ids[0])
			}
			if c == nil {
				return "", fmt.Errorf("%w: the call claims cluster %q; this CA reviews tokens of %q", ErrUnknownCluster, ids[0], r.clusterID)
			}
			client = c
		}
	}
	tr := &authv1.TokenReview{Spec: authv1.TokenReviewSpec{Token: token, Audiences: audiences}}
	res, err := client.AuthenticationV1().TokenReviews().Create(ctx, tr, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("TokenReview request: %w", err)
	}
	st := res.Status
	if !st.Authenticated {
		msg := st.Error
		if msg == "" {
			msg = "not authenticated"
		}
		return "", fmt.Errorf("%w: %s", authn.ErrReviewRejected, msg)
	}
	if len(audiences) > 0 && !slices.ContainsFunc(st.Audiences, func(a string) bool { return slices.Contains(audiences, a) }) {
		return "", fmt.Errorf("%w: token audiences %v include none of %v", authn.ErrReviewRejected, st.Audiences, audiences)
	}
	return st.User.Username, nil
}
