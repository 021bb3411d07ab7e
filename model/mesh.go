package model

import "time"

// MeshConfig holds the mesh-wide settings that change generated config. It
// mirrors the subset of Istio's MeshConfig Sextant honours, plus Sextant's
// traffic-state share.
type MeshConfig struct {
	TrustDomain string
	// TrustDomainAliases are other trust domains whose identities count as
	// this mesh's in AuthorizationPolicy principals (Istio's
	// trustDomainAliases).
	TrustDomainAliases []string
	// RootNamespace holds mesh-wide Sidecar and PeerAuthentication.
	RootNamespace string
	// OutboundRegistryOnly is outboundTrafficPolicy REGISTRY_ONLY; the
	// default ALLOW_ANY sends unknown traffic to PassthroughCluster.
	OutboundRegistryOnly bool
	ConnectTimeout       time.Duration
	// KeepaliveShare is the fraction of a service's traffic that its
	// keepalive endpoints get together (default 0.01).
	KeepaliveShare float64
	// DisableAutoMTLS turns off Istio's auto mTLS (enableAutoMtls=false):
	// clients then use mTLS only where a DestinationRule says ISTIO_MUTUAL.
	DisableAutoMTLS bool
	// SDSOverADS makes sidecars fetch the workload certificate (default)
	// and trust bundle (ROOTCA) from Sextant over ADS instead of from
	// istio-agent's local SDS server (the Istio default).
	SDSOverADS bool
	// ExtensionProviders are MeshConfig extensionProviders of kind
	// envoyExtAuthzHttp and envoyExtAuthzGrpc, which CUSTOM
	// AuthorizationPolicies name.
	ExtensionProviders []ExtAuthzProvider
}

// ExtAuthzProvider is an external authorization service.
type ExtAuthzProvider struct {
	Name string
	// GRPC is envoyExtAuthzGrpc; otherwise envoyExtAuthzHttp.
	GRPC bool
	// Service is the service host (a FQDN, or ns/host as Istio allows),
	// Port its port.
	Service string
	Port    uint32
	Timeout time.Duration
	// FailOpen lets requests through when the service cannot be reached.
	FailOpen bool
	// PathPrefix (HTTP) is prepended to the checked request's path.
	PathPrefix string
	// IncludeRequestHeadersInCheck (HTTP) are the request headers sent to
	// the service.
	IncludeRequestHeadersInCheck []string
	// StatusOnError is the status sent when the service fails (default
	// 403).
	StatusOnError uint32
}

// DefaultMeshConfig returns Istio's defaults.
func DefaultMeshConfig() MeshConfig {
	return MeshConfig{
		TrustDomain:    "cluster.local",
		RootNamespace:  DefaultRootNamespace,
		ConnectTimeout: 10 * time.Second,
		KeepaliveShare: 0.01,
	}
}

// Hash returns a content hash of the mesh config.
func (m MeshConfig) Hash() uint64 {
	h := &Hasher{}
	h.Str(m.TrustDomain)
	for _, a := range m.TrustDomainAliases {
		h.Str(a)
	}
	h.Str(m.RootNamespace)
	for _, p := range m.ExtensionProviders {
		h.Str(p.Name).Str(p.Service).U64(uint64(p.Port)).U64(uint64(p.Timeout)).Str(p.PathPrefix).Strs(p.IncludeRequestHeadersInCheck).U64(uint64(p.StatusOnError))
		for _, b := range []bool{p.GRPC, p.FailOpen} {
			if b {
				h.U64(1)
			} else {
				h.U64(0)
			}
		}
	}
	h.U64(uint64(m.ConnectTimeout)).F64(m.KeepaliveShare)
	for _, b := range []bool{m.OutboundRegistryOnly, m.DisableAutoMTLS, m.SDSOverADS} {
		if b {
			h.U64(1)
		} else {
			h.U64(0)
		}
	}
	return h.Sum()
}
