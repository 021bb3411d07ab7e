package v1

// APIVersion is the apiVersion of every record of this schema.
const APIVersion = "sextant.io/v1"

// Kinds of records. A record may leave kind out; the key says what it is.
const (
	KindService  = "Service"
	KindInstance = "Instance"
)

// Resolutions a service may ask for; empty means ResolutionStatic.
const (
	// ResolutionStatic: the instances are sent to proxies over EDS.
	ResolutionStatic = "STATIC"
	// ResolutionDNS: proxies resolve the instance addresses (or, with no
	// instances, the host) themselves.
	ResolutionDNS = "DNS"
	// ResolutionDNSRoundRobin is ResolutionDNS using one address at a time.
	ResolutionDNSRoundRobin = "DNS_ROUND_ROBIN"
	// ResolutionNone: traffic goes to the address the client dialled.
	ResolutionNone = "NONE"
)

// Health states of an instance; empty means HealthHealthy.
const (
	HealthHealthy   = "healthy"
	HealthUnhealthy = "unhealthy"
	// HealthDraining: the instance finishes its requests and gets no new
	// ones.
	HealthDraining = "draining"
)

// Traffic-state label of an instance, read by translation: a keepalive
// instance gets only a small share of its service's traffic.
const (
	TrafficStateLabel = "traffic.sextant.io/state"
	StateRunning      = "running"
	StateKeepalive    = "keepalive"
)

// Service is the record stored at <prefix>/v1/services/<namespace>/<host>.
type Service struct {
	// APIVersion must be APIVersion.
	APIVersion string `json:"apiVersion"`
	// Kind is KindService or empty.
	Kind string `json:"kind,omitempty"`
	// Host is the service's DNS name; it must equal the key's <host>.
	Host string `json:"host"`
	// Namespace must equal the key's <namespace>.
	Namespace string `json:"namespace"`
	// Ports are the ports clients use; at least one, unique names and
	// numbers.
	Ports []Port `json:"ports"`
	// Addresses are virtual IPs of the service, if it has any.
	Addresses []string `json:"addresses,omitempty"`
	// Labels of the service (Kubernetes label syntax).
	Labels map[string]string `json:"labels,omitempty"`
	// ExportTo lists the namespaces that may see the service: namespace
	// names, "." (its own), "*" (all, the default) or "~" (none).
	ExportTo []string `json:"exportTo,omitempty"`
	// Resolution is one of the Resolution constants; empty means STATIC.
	Resolution string `json:"resolution,omitempty"`
	// KeepaliveShare overrides the mesh-wide share of traffic that the
	// service's keepalive instances get, as a fraction in [0, 1); 0 means
	// the mesh default.
	KeepaliveShare float64 `json:"keepaliveShare,omitempty"`
}

// Port is a port of a Service.
type Port struct {
	// Name identifies the port; instances map names to their own ports.
	Name string `json:"name"`
	// Number is the port clients connect to, 1-65535.
	Number uint32 `json:"number"`
	// Protocol is HTTP, HTTP2, GRPC, GRPC-Web, HTTPS, TLS, TCP, UDP, Mongo,
	// Redis or MySQL (any case). Empty derives it from the name's prefix
	// before '-' ("http-web" is HTTP), as Istio does; unknown is TCP.
	Protocol string `json:"protocol,omitempty"`
	// TargetPort is the instance port when an instance does not name this
	// port; 0 means Number.
	TargetPort uint32 `json:"targetPort,omitempty"`
}

// Instance is the record stored at
// <prefix>/v1/instances/<namespace>/<host>/<address>[:<id>].
type Instance struct {
	// APIVersion must be APIVersion.
	APIVersion string `json:"apiVersion"`
	// Kind is KindInstance or empty.
	Kind string `json:"kind,omitempty"`
	// Address is the instance's IPv4 or IPv6 address. The key's last
	// segment must be the address, or the address, ':' and an id.
	Address string `json:"address"`
	// Ports maps service port names to the ports this instance listens on;
	// a port left out uses the service port's TargetPort (or Number).
	Ports map[string]uint32 `json:"ports,omitempty"`
	// Labels select the instance in DestinationRule subsets; the label
	// TrafficStateLabel, if present, is StateRunning or StateKeepalive.
	Labels map[string]string `json:"labels,omitempty"`
	// Locality is region/zone/subzone (any suffix may be left out).
	Locality string `json:"locality,omitempty"`
	// Weight is the instance's load-balancing weight, 0 (meaning 1) to
	// MaxWeight.
	Weight uint32 `json:"weight,omitempty"`
	// ServiceAccount is the workload's service account name.
	ServiceAccount string `json:"serviceAccount,omitempty"`
	// Health is one of the Health constants; empty means healthy.
	Health string `json:"health,omitempty"`
	// Network names the instance's network for multi-network meshes.
	Network string `json:"network,omitempty"`
}

// MaxWeight is the largest instance weight: 256 instances of a locality at
// this weight still fit Envoy's 32-bit locality weight.
const MaxWeight = 1 << 24
