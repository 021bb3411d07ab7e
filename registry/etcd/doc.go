// Package etcd is the etcd registry: services and instances registered from
// outside Kubernetes, stored in etcd under a key prefix in the schema of
// package github.com/sextant-mesh/sextant/api/etcd/v1, plus Istio documents
// (ServiceEntry, WorkloadEntry, …) stored as YAML or JSON under
// <prefix>/istio/ and parsed by registry/config exactly as the file registry
// parses files.
//
// Run lists the prefix at one revision (in pages), writes it to the shard in
// one transaction, marks the shard synced and then watches from the next
// revision. Each watch response (or run of responses that arrive together)
// becomes one shard transaction. The client resumes a broken watch from the
// last revision it delivered; events at or below the last applied revision
// are ignored, so nothing is applied twice. When the revision to resume from
// has been compacted, the registry lists the prefix again and reconciles:
// only keys whose modification revision changed, and keys that are gone,
// touch the shard. While etcd is unreachable the shard keeps the last state
// read; at start the registry retries with backoff and the shard stays
// unsynced until the first complete listing.
//
// The model is a function of etcd's content alone, so replicas converge: an
// invalid record is not served (there is no "last good version" as for
// files, because a replica that starts later could not know it), and is
// reported with a model.ConfigError whose Location is its key until it is
// fixed or deleted. Creation times derive from the keys' create revisions.
//
// Instances are kept per service, so a change to one instance costs
// O(instances of its service). Istio documents are rebuilt together with
// config.Build on any change to one of them, since WorkloadEntries attach to
// ServiceEntries of other keys; they suit configuration, not churn.
package etcd
