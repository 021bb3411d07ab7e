// Package translate turns a model.Snapshot and a proxy into Envoy xDS
// resources. Everything here is a pure function of its inputs: the same
// snapshot, mesh config and proxy scope always give byte-identical output,
// so resource versions can be content hashes.
//
// Work is shared at two levels. A Context belongs to one snapshot and
// memoises the resource sets of every proxy Scope (proxies with equal scope
// get the same resources). The Cache outlives snapshots and is addressed by a
// hash of each resource's inputs, so a resource whose inputs did not change
// is neither rebuilt nor re-marshalled by the next snapshot.
package translate
