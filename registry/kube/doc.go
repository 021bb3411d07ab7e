// Package kube is the Kubernetes registry: it watches a cluster with
// client-go shared informers and writes what it finds into its model.Shard.
//
// Watched: Services, EndpointSlices, Pods, Nodes, Namespaces and the mesh
// ConfigMap (istio in istio-system, key mesh) from the core API, and the
// Istio CRDs networking.istio.io/v1 ServiceEntry, WorkloadEntry,
// DestinationRule, VirtualService, Sidecar and security.istio.io/v1
// PeerAuthentication, AuthorizationPolicy, RequestAuthentication and
// telemetry.istio.io/v1 Telemetry through istio.io/client-go. CRDs that are not installed are skipped (logged).
//
// Every object goes through registry/config: it is encoded as the document
// Kubernetes would serve and parsed with config.Parse, so the same
// validation applies as to files and admission requests, and converted with
// config.Build, so the same mapping applies (<svc>.<ns>.svc.cluster.local,
// protocols from port names and appProtocol, headless and ExternalName
// Services, EndpointSlice conditions). The decoded Spec is then replaced by
// the informer's own object (the istio.io/api message of an Istio kind, the
// typed Service or EndpointSlice), so nothing is held twice.
//
// An invalid object is reported (model.ConfigError, Location
// "kube:<Kind>/<ns>/<name>") and its last good version keeps serving.
//
// Endpoints carry the labels and service account of the Pod their
// targetRef names, and the locality of its Node (topology.kubernetes.io/
// region and zone, topology.istio.io/subzone; a Pod's istio-locality label
// wins), so the xDS side can match a proxy to its workload by IP.
//
// Changes are applied incrementally: one goroutine owns the registry's
// state, informer handlers only record what changed, and each batch is one
// shard transaction that touches only what the changed objects feed (an
// EndpointSlice change re-sets the endpoints of its Service only; parsed
// objects and per-slice endpoints are cached by resourceVersion).
//
// The shard is marked synced only after every informer's initial list has
// been applied. When the API server goes away the informers keep their
// caches and the registry keeps the last state; they relist on reconnect.
package kube
