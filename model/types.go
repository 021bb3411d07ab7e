package model

import (
	"slices"
	"sort"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
)

// Protocol is the application protocol of a service port, derived the way
// Istio derives it from the port name prefix or appProtocol.
type Protocol string

// Protocols Sextant distinguishes.
const (
	ProtocolHTTP        Protocol = "HTTP"
	ProtocolHTTP2       Protocol = "HTTP2"
	ProtocolGRPC        Protocol = "GRPC"
	ProtocolGRPCWeb     Protocol = "GRPC-Web"
	ProtocolHTTPS       Protocol = "HTTPS"
	ProtocolTLS         Protocol = "TLS"
	ProtocolTCP         Protocol = "TCP"
	ProtocolUDP         Protocol = "UDP"
	ProtocolMongo       Protocol = "Mongo"
	ProtocolRedis       Protocol = "Redis"
	ProtocolMySQL       Protocol = "MySQL"
	ProtocolUnsupported Protocol = "UnsupportedProtocol"
)

// IsHTTP reports whether traffic on the port is routed by HTTP routes.
func (p Protocol) IsHTTP() bool {
	switch p {
	case ProtocolHTTP, ProtocolHTTP2, ProtocolGRPC, ProtocolGRPCWeb:
		return true
	}
	return false
}

// ParseProtocol maps an Istio/Kubernetes protocol name (case-insensitive) to a
// Protocol. Unknown names map to ProtocolUnsupported, which Istio treats as
// "sniffed" and Sextant treats as TCP.
func ParseProtocol(s string) Protocol {
	switch strings.ToLower(s) {
	case "http", "http1", "http/1.1":
		return ProtocolHTTP
	case "http2", "h2c", "kubernetes.io/h2c":
		return ProtocolHTTP2
	case "grpc":
		return ProtocolGRPC
	case "grpc-web":
		return ProtocolGRPCWeb
	case "https":
		return ProtocolHTTPS
	case "tls":
		return ProtocolTLS
	case "tcp":
		return ProtocolTCP
	case "udp":
		return ProtocolUDP
	case "mongo":
		return ProtocolMongo
	case "redis":
		return ProtocolRedis
	case "mysql":
		return ProtocolMySQL
	}
	return ProtocolUnsupported
}

// ProtocolFromPortName derives the protocol of a Kubernetes service port the
// way Istio does: appProtocol wins, then the port name's prefix before '-'.
func ProtocolFromPortName(name, appProtocol string) Protocol {
	if appProtocol != "" {
		if p := ParseProtocol(appProtocol); p != ProtocolUnsupported {
			return p
		}
	}
	prefix, _, _ := strings.Cut(name, "-")
	return ParseProtocol(prefix)
}

// Port is one port of a service.
type Port struct {
	Name     string
	Number   uint32
	Protocol Protocol
	// TargetPort is the default endpoint port when an endpoint does not name
	// one for this port; 0 means "same as Number".
	TargetPort uint32
}

// Resolution says how a client finds the endpoints of a service.
type Resolution int

// Resolutions, mirroring ServiceEntry.Resolution.
const (
	// ClientSideLB: endpoints are known to the control plane and sent over EDS.
	ClientSideLB Resolution = iota
	// DNSLB: the proxy resolves the hosts/endpoint addresses with DNS.
	DNSLB
	// DNSRoundRobinLB: like DNSLB but only the first address is used per host.
	DNSRoundRobinLB
	// Passthrough: traffic goes to the original destination.
	Passthrough
)

func (r Resolution) String() string {
	switch r {
	case DNSLB:
		return "DNS"
	case DNSRoundRobinLB:
		return "DNS_ROUND_ROBIN"
	case Passthrough:
		return "NONE"
	}
	return "STATIC"
}

// Source says where an object came from, so errors and conflicts can name it.
type Source struct {
	Registry  string // "file", "kube", "etcd"
	Kind      string // e.g. "ServiceEntry", "Service"
	Namespace string
	Name      string
	Location  string // file path and document, etcd key, …
}

func (s Source) String() string {
	id := s.Kind + " " + s.Namespace + "/" + s.Name
	if s.Location != "" {
		id += " (" + s.Location + ")"
	}
	return id
}

// Service is one service in the mesh, whatever registry defined it.
type Service struct {
	Hostname  string
	Namespace string
	Ports     []Port // sorted by Number
	// Addresses are the VIPs of the service, if it has any.
	Addresses    []string
	Resolution   Resolution
	MeshExternal bool
	Labels       map[string]string
	// ExportTo holds namespaces, "." (own namespace) or "*" (all). Empty
	// means "*".
	ExportTo []string
	// Selector selects WorkloadEntries (ServiceEntry workloadSelector or
	// Kubernetes Service selector); endpoints come from the registry.
	Selector     map[string]string
	CreationTime time.Time
	Source       Source
	// KeepaliveShare overrides the mesh-wide keepalive share for this
	// service, as a fraction (0 = use the mesh default).
	KeepaliveShare float64
}

// Port returns the port with the given number.
func (s *Service) Port(number uint32) (Port, bool) {
	for _, p := range s.Ports {
		if p.Number == number {
			return p, true
		}
	}
	return Port{}, false
}

// VisibleTo reports whether a proxy in namespace ns may see the service.
func (s *Service) VisibleTo(ns string) bool {
	return exportedTo(s.ExportTo, s.Namespace, ns)
}

func exportedTo(exportTo []string, own, ns string) bool {
	if len(exportTo) == 0 {
		return true
	}
	for _, e := range exportTo {
		switch e {
		case "*":
			return true
		case ".":
			if own == ns {
				return true
			}
		case "~":
			return false
		default:
			if e == ns {
				return true
			}
		}
	}
	return false
}

// Health is an endpoint's health as reported by its registry.
type Health int

// Health states, mapped to Envoy's HealthStatus.
const (
	Healthy Health = iota
	Unhealthy
	Draining
)

func (h Health) String() string {
	switch h {
	case Unhealthy:
		return "UNHEALTHY"
	case Draining:
		return "DRAINING"
	}
	return "HEALTHY"
}

// Traffic states of a workload (label traffic.sextant.io/state).
const (
	TrafficStateLabel = "traffic.sextant.io/state"
	StateRunning      = "running"
	StateKeepalive    = "keepalive"
)

// Endpoint is one instance of a service.
type Endpoint struct {
	Address string
	// Ports maps a service port name to the port this instance listens on.
	// A missing name means the service port's TargetPort (or Number).
	Ports          map[string]uint32
	Labels         map[string]string
	Locality       string // region/zone/subzone
	Weight         uint32 // 0 means 1
	Health         Health
	ServiceAccount string
	Network        string
	// Source names the object that produced this endpoint.
	Source Source

	hash uint64
}

// PortFor returns the endpoint port serving service port p.
func (e *Endpoint) PortFor(p Port) uint32 {
	if n, ok := e.Ports[p.Name]; ok && n != 0 {
		return n
	}
	if p.TargetPort != 0 {
		return p.TargetPort
	}
	return p.Number
}

// ServiceKey identifies a service within one registry shard.
type ServiceKey struct {
	Namespace string
	Hostname  string
}

func (k ServiceKey) String() string { return k.Namespace + "/" + k.Hostname }

// Kind names a config kind Sextant understands.
type Kind string

// Config kinds kept in the model.
const (
	KindVirtualService        Kind = "VirtualService"
	KindDestinationRule       Kind = "DestinationRule"
	KindSidecar               Kind = "Sidecar"
	KindPeerAuthentication    Kind = "PeerAuthentication"
	KindAuthorizationPolicy   Kind = "AuthorizationPolicy"
	KindRequestAuthentication Kind = "RequestAuthentication"
	// KindTelemetry is telemetry.istio.io Telemetry (metrics overrides and
	// access logging; tracing is not applied).
	KindTelemetry Kind = "Telemetry"
	// KindJWKS is a JSON Web Key Set fetched by Sextant for a
	// RequestAuthentication's jwksUri: Key.Name is the URI, Spec a
	// wrapperspb.StringValue with the keys as fetched.
	KindJWKS Kind = "JWKS"
)

// ConfigKey identifies a config object.
type ConfigKey struct {
	Kind      Kind
	Namespace string
	Name      string
}

func (k ConfigKey) String() string { return string(k.Kind) + "/" + k.Namespace + "/" + k.Name }

// Config is an Istio config object (VirtualService, DestinationRule, …). The
// Spec is the published istio.io/api message and must not be mutated.
type Config struct {
	Key          ConfigKey
	CreationTime time.Time
	Labels       map[string]string
	Annotations  map[string]string
	Spec         proto.Message
	Source       Source
	// Hash is a content hash of Key and Spec, stable across processes.
	Hash uint64
}

// ExportTo returns the exportTo list of a VirtualService or DestinationRule.
func (c *Config) ExportTo() []string {
	if e, ok := c.Spec.(interface{ GetExportTo() []string }); ok {
		return e.GetExportTo()
	}
	return nil
}

// VisibleTo reports whether a proxy in namespace ns may use the config.
func (c *Config) VisibleTo(ns string) bool {
	return exportedTo(c.ExportTo(), c.Key.Namespace, ns)
}

// Less orders configs as Istio does for conflict resolution: oldest first,
// then by namespace and name.
func (c *Config) Less(o *Config) bool {
	if !c.CreationTime.Equal(o.CreationTime) {
		return c.CreationTime.Before(o.CreationTime)
	}
	if c.Key.Namespace != o.Key.Namespace {
		return c.Key.Namespace < o.Key.Namespace
	}
	return c.Key.Name < o.Key.Name
}

// ConfigError is a rejected input: a file, document or object that failed to
// parse or validate and so is not part of the model.
type ConfigError struct {
	Registry string `json:"registry"`
	// Location is the file (with document index and line) or key.
	Location string `json:"location"`
	// Object is kind namespace/name when known.
	Object  string `json:"object,omitempty"`
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
	// Code is istioctl analyze's code for the same finding (e.g. IST0101),
	// when it has one.
	Code string `json:"code,omitempty"`
	// Warning marks problems that did not reject the object.
	Warning bool `json:"warning,omitempty"`
	// Summary marks an entry that restates the errors of its location
	// (e.g. "file rejected"): shown, but not counted again.
	Summary bool `json:"summary,omitempty"`
}

// CountErrors counts errors and warnings as sextant_config_errors does:
// summaries are not counted, so one bad file counts once per cause.
func CountErrors(errs []ConfigError) (errors, warnings int) {
	for _, e := range errs {
		switch {
		case e.Summary:
		case e.Warning:
			warnings++
		default:
			errors++
		}
	}
	return errors, warnings
}

// NewErrors returns the errors of errs that are not in old: what a
// registry has not logged yet.
func NewErrors(errs, old []ConfigError) []ConfigError {
	var out []ConfigError
	for _, e := range errs {
		if !slices.Contains(old, e) {
			out = append(out, e)
		}
	}
	return out
}

func (e ConfigError) Error() string {
	var b strings.Builder
	b.WriteString(e.Location)
	if e.Object != "" {
		b.WriteString(": ")
		b.WriteString(e.Object)
	}
	if e.Field != "" {
		b.WriteString(": ")
		b.WriteString(e.Field)
	}
	b.WriteString(": ")
	if e.Code != "" {
		b.WriteString("[" + e.Code + "] ")
	}
	b.WriteString(e.Message)
	return b.String()
}

// SortEndpoints orders endpoints deterministically (by address, then ports).
func SortEndpoints(eps []*Endpoint) {
	sort.Slice(eps, func(i, j int) bool {
		if eps[i].Address != eps[j].Address {
			return eps[i].Address < eps[j].Address
		}
		return eps[i].Source.String() < eps[j].Source.String()
	})
}
