// Package ca is the root of Sextant's built-in certificate authority, the
// Citadel half of istiod. It holds no code; the work is split by job:
//
//   - [github.com/sextant-mesh/sextant/ca/spiffe]: SPIFFE workload identities
//     (spiffe://<trust-domain>/ns/<ns>/sa/<sa>).
//   - [github.com/sextant-mesh/sextant/ca/trust]: the root of trust in
//     --ca-dir: a self-signed root (generated, persisted, rotated with the
//     same key) or a plugged-in intermediate in Istio's cacerts layout, and
//     the published root bundle.
//   - [github.com/sextant-mesh/sextant/ca/issuer]: signs workload CSRs,
//     issues key+certificate pairs (for SDS) and the secure port's serving
//     certificate.
//   - [github.com/sextant-mesh/sextant/ca/authn]: who is calling: JWTs from
//     trusted issuers, client certificates from this CA, a development token
//     file, and the seam for Kubernetes TokenReview.
//   - [github.com/sextant-mesh/sextant/ca/server]: Istio's
//     IstioCertificateService gRPC API on top of the above, with rate
//     limiting and Citadel's metrics.
package ca
