// Package debug defines the JSON served on Sextant's monitoring port under
// /debug/ and read by sextantctl. It is a public, versioned API: fields are
// only ever added.
package debug

import (
	"encoding/json"
	"runtime/debug"
	"strings"
	"time"

	"github.com/sextant-mesh/sextant/model"
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
	Proxy        string                `json:"proxy"` // pod.namespace
	ID           string                `json:"connectionId"`
	NodeID       string                `json:"nodeId"`
	ClusterID    string                `json:"clusterId,omitempty"`
	IstioVersion string                `json:"istioVersion,omitempty"`
	Generator    string                `json:"generator"`
	Delta        bool                  `json:"delta"`
	Instance     string                `json:"instance"`
	ConnectedAt  time.Time             `json:"connectedAt"`
	Types        map[string]TypeStatus `json:"types"` // by short name: cds, eds, lds, rds, sds
}

// ConfigDump is /debug/config_dump?proxyID=: what the proxy was last sent,
// by short type name, each resource in Envoy's JSON form.
type ConfigDump struct {
	Proxy     string                       `json:"proxy"`
	Resources map[string][]json.RawMessage `json:"resources"`
}

// ConfigErrors is /debug/config_errors: rejected inputs and warnings.
type ConfigErrors struct {
	Time        time.Time           `json:"time"`
	Version     uint64              `json:"snapshotVersion"`
	Errors      []model.ConfigError `json:"errors"`
	Translation []string            `json:"translation,omitempty"`
}

// Version is /debug/version.
type Version struct {
	Version  string `json:"version"`
	Instance string `json:"instance"`
}

// BuildVersion returns the module version the binary was built from.
func BuildVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "dev"
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
