// Package debug defines the JSON served on Sextant's monitoring port under
// /debug/ and read by sextantctl. It is a public, versioned API: fields are
// only ever added.
package debug

import (
	"strings"
	"time"
)

// TypeStatus is the sync state of one xDS type on one proxy.
type TypeStatus struct {
	TypeURL      string    `json:"typeUrl"`
	Status       string    `json:"status"` // SYNCED, STALE, NACK, NOT SENT
	NonceSent    string    `json:"nonceSent,omitempty"`
	NonceAcked   string    `json:"nonceAcked,omitempty"`
	VersionSent  string    `json:"versionSent,omitempty"`
	VersionAcked string    `json:"versionAcked,omitempty"`
	LastError    string    `json:"lastError,omitempty"`
	LastSent     time.Time `json:"lastSent,omitempty"`
	LastAcked    time.Time `json:"lastAcked,omitempty"`
	Resources    int       `json:"resources"`
}

// SyncStatus is one connected proxy in /debug/syncz.
type SyncStatus struct {
	Proxy        string    `json:"proxy"` // pod.namespace
	ID           string    `json:"connectionId"`
	NodeID       string    `json:"nodeId"`
	ClusterID    string    `json:"clusterId,omitempty"`
	IstioVersion string    `json:"istioVersion,omitempty"`
	Generator    string    `json:"generator"`
	Delta        bool      `json:"delta"`
	Instance     string    `json:"instance"`
	ConnectedAt  time.Time `json:"connectedAt"`
	// Identity is the authenticated SPIFFE identity of a stream on the
	// secure port; empty on the plaintext port. Two streams may claim the
	// same proxy name only with the same identity.
	Identity string                `json:"identity,omitempty"`
	Types    map[string]TypeStatus `json:"types"` // by short name: cds, eds, lds, rds, sds
}

// /debug/config_dump?proxyID= is not defined here: it is Envoy's admin
// ConfigDump (envoy.admin.v3.ConfigDump) in its JSON form, as istiod and
// Envoy serve it, with the proto field names: {"configs": [{"@type":
// "type.googleapis.com/envoy.admin.v3.ClustersConfigDump", ...}, ...]}.

// ConfigError is one rejected input or warning.
type ConfigError struct {
	Registry string `json:"registry"`
	// Location is the file (with document index and line) or key.
	Location string `json:"location"`
	// Object is kind namespace/name when known.
	Object  string `json:"object,omitempty"`
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
	// Warning marks problems that did not reject the object.
	Warning bool `json:"warning,omitempty"`
	// Code is istioctl analyze's message code (IST0101, …) where it has one.
	Code string `json:"code,omitempty"`
	// Summary marks the "file rejected" note that accompanies its causes.
	Summary bool `json:"summary,omitempty"`
}

// Error formats the problem as the server logs it:
// location: object: field: message.
func (e ConfigError) Error() string {
	var b strings.Builder
	b.WriteString(e.Location)
	for _, part := range []string{e.Object, e.Field} {
		if part != "" {
			b.WriteString(": ")
			b.WriteString(part)
		}
	}
	b.WriteString(": ")
	b.WriteString(e.Message)
	return b.String()
}

// ConfigErrors is /debug/config_errors: rejected inputs and warnings.
type ConfigErrors struct {
	Time        time.Time     `json:"time"`
	Version     uint64        `json:"snapshotVersion"`
	Errors      []ConfigError `json:"errors"`
	Translation []string      `json:"translation,omitempty"`
}

// Version is /debug/version.
type Version struct {
	Version  string `json:"version"`
	Commit   string `json:"commit,omitempty"`
	Instance string `json:"instance"`
}

// Endpoint is one entry of /debug/list (and the /debug/ index page).
type Endpoint struct {
	Path string `json:"path"`
	Help string `json:"help"`
}

// Config is one entry of /debug/configz: an Istio config object of the
// served snapshot, in its Kubernetes shape.
type Config struct {
	APIVersion string         `json:"apiVersion"`
	Kind       string         `json:"kind"`
	Metadata   ConfigMetadata `json:"metadata"`
	// Spec is the object's spec in its JSON form.
	Spec   map[string]any `json:"spec"`
	Source string         `json:"source"` // registry and location
}

// ConfigMetadata is the metadata of a Config.
type ConfigMetadata struct {
	Name              string            `json:"name"`
	Namespace         string            `json:"namespace"`
	Labels            map[string]string `json:"labels,omitempty"`
	Annotations       map[string]string `json:"annotations,omitempty"`
	CreationTimestamp time.Time         `json:"creationTimestamp,omitempty"`
}

// Service is one entry of /debug/registryz: a service of the served
// snapshot.
type Service struct {
	Hostname     string            `json:"hostname"`
	Namespace    string            `json:"namespace"`
	Addresses    []string          `json:"addresses,omitempty"`
	Ports        []ServicePort     `json:"ports"`
	Resolution   string            `json:"resolution"`
	MeshExternal bool              `json:"meshExternal,omitempty"`
	Labels       map[string]string `json:"labels,omitempty"`
	ExportTo     []string          `json:"exportTo,omitempty"`
	CreationTime time.Time         `json:"creationTime,omitempty"`
	Registry     string            `json:"registry"`
	Source       string            `json:"source"`
}

// ServicePort is one port of a Service.
type ServicePort struct {
	Name     string `json:"name"`
	Port     uint32 `json:"port"`
	Protocol string `json:"protocol"`
}

// ServiceEndpoints is one entry of /debug/endpointz: the endpoints of one
// service port, as istiod lists them ("svc" is host:port-name).
type ServiceEndpoints struct {
	Service   string            `json:"svc"`
	Endpoints []ServiceEndpoint `json:"ep"`
}

// ServiceEndpoint is one endpoint of a ServiceEndpoints.
type ServiceEndpoint struct {
	Address        string            `json:"address"`
	Port           uint32            `json:"port"`
	Labels         map[string]string `json:"labels,omitempty"`
	Locality       string            `json:"locality,omitempty"`
	Weight         uint32            `json:"weight,omitempty"`
	Health         string            `json:"health"`
	ServiceAccount string            `json:"serviceAccount,omitempty"`
	Network        string            `json:"network,omitempty"`
	Source         string            `json:"source"`
}

// ShortType maps an xDS type URL to cds, eds, lds, rds or sds.
func ShortType(typeURL string) string {
	switch {
	case strings.HasSuffix(typeURL, ".Cluster"):
		return "cds"
	case strings.HasSuffix(typeURL, ".ClusterLoadAssignment"):
		return "eds"
	case strings.HasSuffix(typeURL, ".Listener"):
		return "lds"
	case strings.HasSuffix(typeURL, ".RouteConfiguration"):
		return "rds"
	case strings.HasSuffix(typeURL, ".Secret"):
		return "sds"
	}
	return typeURL
}

// PushRecord is one push in /debug/push_log: why it happened, what it
// touched, and how long until every proxy it was sent to answered.
type PushRecord struct {
	ID     uint64    `json:"id"`
	Start  time.Time `json:"start"`  // first change merged into the push
	Queued time.Time `json:"queued"` // when it was queued on the proxies
	Reason string    `json:"reason"` // e.g. "endpoint=1" or "config=2,service=1"
	Full   bool      `json:"full"`   // false: EDS only
	// EDSClusters are the clusters an EDS-only push recomputed.
	EDSClusters []string `json:"edsClusters,omitempty"`
	Proxies     int      `json:"proxies"` // connections it was queued on
	Sent        int      `json:"sent"`    // proxies sent at least one resource
	Resources   int      `json:"resources"`
	Bytes       int      `json:"bytes"`
	Nacks       int      `json:"nacks"`
	// Converged is when every proxy sent something ACKed, NACKed or left;
	// ConvergedIn is Converged - Start (including the debounce).
	Converged   *time.Time    `json:"converged,omitempty"`
	ConvergedIn time.Duration `json:"convergedInNanos,omitempty"`
}
