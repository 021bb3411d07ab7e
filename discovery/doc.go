// Package discovery is the root of Sextant's xDS side: it turns the model
// into Envoy resources and pushes them to proxies.
//
// Subpackages, each with one job:
//   - proxy: who is connecting (node id and metadata → Proxy).
//   - translate: pure functions from a model.Snapshot and a Proxy to Envoy
//     resources, with a content-addressed cache so a resource shared by many
//     proxies is built and marshalled once.
//   - xds: the ADS server (state of the world and delta), per-connection
//     ACK/NACK tracking, the push queue and the debounce loop.
package discovery
