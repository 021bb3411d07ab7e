// Package e2e holds end-to-end tests: Sextant runs in-process on loopback
// and real clients (grpc-go's own xDS client, an Envoy-like ADS client) talk
// to it, with real gRPC backends behind.
package e2e
