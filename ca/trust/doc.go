// Package trust is the CA's root of trust: the signing key and certificate,
// the chain up to the root, and the root bundle that workloads trust. It owns
// the files in --ca-dir.
//
// Two modes, chosen from the files present (Istio's names):
//
//   - Plugged-in (cert-chain.pem present and not empty): ca-cert.pem,
//     ca-key.pem, cert-chain.pem and root-cert.pem are Istio's cacerts
//     layout. Sextant signs as ca-cert.pem and never rotates it; the files
//     are reloaded when they change on disk, and only if the new set is
//     valid.
//   - Self-signed (otherwise): ca-cert.pem is a root Sextant generated on
//     first start (or Istio's istio-ca-secret copied in) and ca-key.pem its
//     key (mode 0600). When less than RenewBefore (20%) of the root's life
//     remains, a new root is issued for the same key and subject, as Istio's
//     self-signed root rotator does, so certificates issued by the old root
//     still verify against the new one. Old roots stay in the bundle until
//     they expire.
//
// The bundle is always published as root-cert.pem (in plugged-in mode it is
// the operator's file and left as is). A Store hands out immutable Material
// snapshots and notifies watchers when they change.
package trust
