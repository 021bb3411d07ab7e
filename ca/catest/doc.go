// Package catest has helpers for tests of the CA and of its clients: keys
// and CSRs of every kind, a JWT issuer with its JWKS file, a plugged-in CA
// (root + intermediate) in Istio's cacerts layout, bearer-token gRPC
// credentials and chain verification. Not for production code.
package catest
