// Package file is the file registry: it serves the mesh configuration
// (Istio resources, Kubernetes Services and EndpointSlices) found in the
// YAML and JSON files of a directory tree, and follows changes to them.
//
// Each file is accepted or rejected as a whole. A file with any error keeps
// its previous valid version (if any) in service; its errors are logged and
// reported through the shard, and cleared once the file is fixed. After
// every change the registry rebuilds its whole contribution from the last
// valid version of every file with config.Build, because WorkloadEntries and
// EndpointSlices in one file attach to services defined in another, and
// writes the difference to its shard in one transaction.
package file
