// Package transport holds the tests that hold both xDS transports (grpc-go
// and internal/grpclite, `--xds-transport grpc|lean`) to the same bar, side
// by side: h2spec's HTTP/2 conformance tests (when SEXTANT_H2SPEC names
// the binary, see hack/h2spec.sh) and a suite of bounded attacks, each run
// while a well-behaved ADS client on another connection keeps receiving
// pushes. docs/transport.md records the results.
package transport
