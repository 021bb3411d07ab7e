// Package issuer signs certificates with the CA material of a trust.Store:
//
//   - Sign: a workload CSR (PEM or DER) for an authenticated identity. Only
//     the CSR's public key is used; its subject and SANs are ignored, as
//     Istio does. The leaf carries the identity's SPIFFE URI as its only SAN.
//   - Issue: a fresh key and certificate for an identity, for serving SDS
//     "default" without a CSR round trip.
//   - ServingCert: the secure port's own certificate, renewed in place.
//
// TTL policy: a requested TTL <= 0 gets the default (24h); a TTL above the
// maximum (--max-workload-cert-ttl) is an error, as in Istio (ca.go: "requested
// TTL … is greater than the max allowed TTL"), not silently shortened. The
// caller (istio-agent's SECRET_TTL, 24h by default) then learns its
// configuration disagrees with the CA instead of getting certificates that
// rotate at unexpected times. A leaf never outlives the signing chain.
//
// Leaves are built as x509util.Certificate values with the fields of step's
// DefaultLeafTemplate rather than by executing the JSON template: WithTemplate
// re-parses the template with the full sprig function map on every call,
// which costs more than an ECDSA signature.
package issuer
