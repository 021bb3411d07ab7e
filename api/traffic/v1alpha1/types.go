// Package v1alpha1 is Sextant's traffic-state API: the TrafficState config
// kind (how a state change is stored durably in a file registry) and the
// JSON of the server's /api/v1/traffic endpoint used by
// `sextantctl traffic`.
//
// A workload's traffic state is the label traffic.sextant.io/state
// (running|keepalive) on its Pod, WorkloadEntry, ServiceEntry endpoint or
// etcd instance. Keepalive endpoints share a small part of their service's
// traffic (mesh default 1%, per service with the annotation
// traffic.sextant.io/keepalive-share on the ServiceEntry or Service); running
// endpoints share the rest. A subset whose endpoints are all keepalive still
// gets all of its traffic.
package v1alpha1

// Group and version of the TrafficState kind.
const (
	APIVersion = "traffic.sextant.io/v1alpha1"
	Kind       = "TrafficState"

	// StateLabel holds an endpoint's state.
	StateLabel = "traffic.sextant.io/state"
	// KeepaliveShareAnnotation overrides the mesh-wide keepalive share for
	// one service, as a fraction ("0.05") of its traffic.
	KeepaliveShareAnnotation = "traffic.sextant.io/keepalive-share"

	StateRunning   = "running"
	StateKeepalive = "keepalive"
)

// TrafficStateSpec sets the state of the endpoints of Host (a service in
// the object's namespace) that match Selector (all when empty). Later
// objects win over earlier ones for the endpoints they both select
// (ordered by name).
type TrafficStateSpec struct {
	Host     string            `json:"host"`
	Selector map[string]string `json:"selector,omitempty"`
	State    string            `json:"state"`
}

// SetRequest is POST /api/v1/traffic.
type SetRequest struct {
	Service   string            `json:"service"`             // hostname
	Namespace string            `json:"namespace,omitempty"` // defaults to the service's
	Selector  map[string]string `json:"selector,omitempty"`
	State     string            `json:"state"`
}

// SetResponse answers a SetRequest.
type SetResponse struct {
	Service  string `json:"service"`
	Registry string `json:"registry"`
	// Matched counts the endpoints the selector matched when the change was
	// accepted; the change reaches proxies with the next push.
	Matched int `json:"matched"`
	// Served reports that the change is in the configuration being served
	// (and pushed) when the answer was sent; false means it was stored but
	// not served within the server's wait.
	Served bool `json:"served"`
}

// ServiceStatus is one row of GET /api/v1/traffic.
type ServiceStatus struct {
	Service   string `json:"service"`
	Namespace string `json:"namespace"`
	Registry  string `json:"registry"`
	Running   int    `json:"running"`
	Keepalive int    `json:"keepalive"`
	// ConfiguredShare is the keepalive share in force for the service.
	ConfiguredShare float64 `json:"configuredShare"`
	// KeepaliveShare is the share keepalive endpoints actually get: the
	// configured one when both states are present, 1 when all endpoints are
	// keepalive, 0 when none is.
	KeepaliveShare float64 `json:"keepaliveShare"`
}
