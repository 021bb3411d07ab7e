// Package kube holds the CA's Kubernetes pieces, for Sextant running in a
// cluster as istiod does:
//
//   - TokenReviewer authenticates istio-agent's projected service-account
//     token (audience istio-ca) with the TokenReview API; it plugs into
//     ca/authn.KubeJWT. The "clusterid" call metadata selects the cluster
//     (only the local one unless remote clients are configured).
//   - Bootstrap/SecretSync keep the CA's root material in Secrets, with
//     Istio's names and layouts: a plugged-in "cacerts" Secret wins; else
//     the self-signed root lives in "istio-ca-secret". ca/trust owns a
//     directory of files, so the Secret is mirrored into that directory
//     before trust.Open and changes are written back. Among several
//     replicas, the one holding a Lease creates the root; the others load it.
//   - RootCertPublisher writes ConfigMap istio-ca-root-cert (key
//     root-cert.pem) into every namespace the mesh covers and keeps it in
//     sync with the trust bundle, under leader election.
package kube
