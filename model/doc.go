// Package model holds Sextant's merged, immutable view of the mesh: services,
// their endpoints and the Istio routing and security config that applies to
// them.
//
// Registries (file, Kubernetes, etcd) never hand objects to translation
// directly. Each registry owns a Shard in an Aggregator and replaces what it
// contributes; the Aggregator records a typed Event for every change and, when
// asked, merges all shards into a new Snapshot. A Snapshot is never mutated
// after Build returns, so translation and every connected proxy can read it
// without locks.
package model
