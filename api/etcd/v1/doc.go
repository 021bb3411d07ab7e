// Package v1 is the public schema of Sextant's etcd registry: the keys
// services and their instances are stored under, and the JSON of each record.
// It is versioned: fields are only ever added to sextant.io/v1, and an
// incompatible change gets a new apiVersion and key segment (v2).
//
// # Keys
//
// Every key lives under a prefix (DefaultPrefix, "/sextant", unless
// configured otherwise):
//
//	<prefix>/v1/services/<namespace>/<host>                  → Service
//	<prefix>/v1/instances/<namespace>/<host>/<address>[:<id>] → Instance
//	<prefix>/istio/<anything>                               → Istio YAML or JSON
//
// <namespace> is a DNS label and <host> a lower-case DNS name. The last
// segment of an instance key is the instance's address, optionally followed
// by ":" and an id made of letters, digits, '.', '_' and '-' so that several
// instances can share an address (e.g. "10.0.0.7:worker-2"). Keys under
// <prefix>/istio/ hold ServiceEntry, WorkloadEntry and the other Istio
// documents the file registry reads, unchanged.
//
// # Records
//
// A record is one JSON object with apiVersion "sextant.io/v1". Decoding is
// strict: unknown (or wrongly capitalised) fields, trailing data and values
// out of range are rejected, and the error names the field, e.g.
// `ports[0].number: port number 70000 is out of range 1-65535`.
//
//	{"apiVersion": "sextant.io/v1", "kind": "Service",
//	 "host": "echo.example.com", "namespace": "default",
//	 "ports": [{"name": "http", "number": 8080, "protocol": "HTTP"}]}
//
//	{"apiVersion": "sextant.io/v1", "kind": "Instance",
//	 "address": "10.0.0.7", "ports": {"http": 18080},
//	 "labels": {"version": "v1", "traffic.sextant.io/state": "running"},
//	 "locality": "eu-west/eu-west-1a", "weight": 1, "health": "healthy"}
//
// Instances are written with a lease: when the process that registered them
// stops refreshing the lease (it crashed, or lost its network), etcd deletes
// them once the lease's TTL expires. Services are usually written without a
// lease. An instance attaches to the service with the same namespace and
// host, whichever registry defines it.
package v1
