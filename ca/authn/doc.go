// Package authn answers "who is calling?" for the CA (and, later, for xDS on
// the secure port). An Authenticator inspects a gRPC call's context; a Chain
// tries several in order and the first success wins, as in istiod.
//
//   - JWT: bearer JWTs from trusted issuers (--jwt-issuer ISSUER=JWKS_FILE),
//     audience istio-ca, identity from the Kubernetes service-account claims
//     ("kubernetes.io" namespace and serviceaccount.name) or from
//     sub = system:serviceaccount:<ns>:<sa>.
//   - ClientCert: a client certificate issued by this CA (renewal over mTLS):
//     the SPIFFE URI SAN of a chain that verifies against the current roots.
//   - TokenFile: static tokens for development (--ca-token-file).
//   - KubeJWT: the seam for Kubernetes TokenReview; the Kubernetes registry
//     supplies a TokenReviewer.
//
// A Guard sits in front of them on the secure port: it refuses
// authorization metadata over MaxTokenBytes before anything parses it and
// rate-limits failed authentications per peer address.
//
// Errors never contain tokens or keys.
package authn
