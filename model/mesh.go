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
	h.Str(m.RootNamespace).U64(uint64(m.ConnectTimeout)).F64(m.KeepaliveShare)
	for _, b := range []bool{m.OutboundRegistryOnly, m.DisableAutoMTLS, m.SDSOverADS} {
		if b {
			h.U64(1)
		} else {
			h.U64(0)
		}
	}
	return h.Sum()
}
