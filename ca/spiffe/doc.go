// Package spiffe parses and formats the SPIFFE identities Istio gives
// workloads: spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>.
//
// It is pure: no I/O, no state.
package spiffe
