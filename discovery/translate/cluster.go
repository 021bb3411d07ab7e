package translate

import (
	"math"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/sextant-mesh/sextant/discovery/proxy"
	"github.com/sextant-mesh/sextant/model"
)

type protoMessage = proto.Message

// Special cluster names, as Istio names them.
const (
	PassthroughCluster = "PassthroughCluster"
	BlackHoleCluster   = "BlackHoleCluster"
)

func adsSource() *corev3.ConfigSource {
	return &corev3.ConfigSource{
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
		ResourceApiVersion:    corev3.ApiVersion_V3,
	}
}

// clusters builds the outbound clusters (one per service port, plus one per
// DestinationRule subset) for the given services.
func (c *Context) clusters(p *proxy.Proxy, services []*model.Service) []*Resource {
	var out []*Resource
	gen := string(p.Generator)
	for _, svc := range services {
		drc := c.Snap.DestinationRule(svc.Hostname, p.Namespace, svc.Namespace)
		var dr *networking.DestinationRule
		var drHash uint64
		if drc != nil {
			dr, drHash = drc.Spec.(*networking.DestinationRule), drc.Hash
		}
		if p.Generator == proxy.GenGRPC && svc.Resolution == model.Passthrough {
			continue // gRPC has no original-destination clusters.
		}
		// The destination's identities are the SANs mTLS accepts.
		sans := c.serviceAccounts(svc)
		base := (&model.Hasher{}).Str(gen).U64(c.Snap.ServiceHash(svc.Hostname)).U64(drHash).U64(c.meshHash).Strs(sans).Sum()
		for _, port := range svc.Ports {
			subsets := []string{""}
			for _, ss := range dr.GetSubsets() {
				subsets = append(subsets, ss.GetName())
			}
			for _, subset := range subsets {
				name := ClusterName(port.Number, subset, svc.Hostname)
				port, subset := port, subset
				c.add(&out, ClusterType, name, base, func() proto.Message {
					cl := buildCluster(p.Generator, name, svc, port, subset, dr, c.Mesh, c.Snap.Endpoints(svc.Hostname), sans)
					if drc != nil {
						cl.Metadata = istioConfigMetadata("destination-rule", drc.Key)
					}
					return cl
				})
			}
		}
	}
	if p.Generator == proxy.GenEnvoy {
		for _, name := range []string{PassthroughCluster, BlackHoleCluster} {
			name := name
			c.add(&out, ClusterType, name, c.meshHash, func() proto.Message {
				return specialCluster(name, c.Mesh)
			})
		}
	}
	return out
}

func specialCluster(name string, mesh model.MeshConfig) *clusterv3.Cluster {
	cl := &clusterv3.Cluster{
		Name:           name,
		ConnectTimeout: durationpb.New(mesh.ConnectTimeout),
	}
	if name == PassthroughCluster {
		cl.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_ORIGINAL_DST}
		cl.LbPolicy = clusterv3.Cluster_CLUSTER_PROVIDED
		cl.TypedExtensionProtocolOptions = passthroughProtocolOptions()
	} else {
		cl.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC}
	}
	return cl
}

// policy is a DestinationRule traffic policy after merging the top level,
// the port-level settings and the subset's own policy.
type policy struct {
	lb      *networking.LoadBalancerSettings
	pool    *networking.ConnectionPoolSettings
	outlier *networking.OutlierDetection
	tls     *networking.ClientTLSSettings
}

func (pol *policy) apply(tp *networking.TrafficPolicy, port uint32) {
	if tp == nil {
		return
	}
	if tp.GetLoadBalancer() != nil {
		pol.lb = tp.GetLoadBalancer()
	}
	if tp.GetConnectionPool() != nil {
		pol.pool = tp.GetConnectionPool()
	}
	if tp.GetOutlierDetection() != nil {
		pol.outlier = tp.GetOutlierDetection()
	}
	if tp.GetTls() != nil {
		pol.tls = tp.GetTls()
	}
	for _, pl := range tp.GetPortLevelSettings() {
		if pl.GetPort().GetNumber() != port {
			continue
		}
		if pl.GetLoadBalancer() != nil {
			pol.lb = pl.GetLoadBalancer()
		}
		if pl.GetConnectionPool() != nil {
			pol.pool = pl.GetConnectionPool()
		}
		if pl.GetOutlierDetection() != nil {
			pol.outlier = pl.GetOutlierDetection()
		}
		if pl.GetTls() != nil {
			pol.tls = pl.GetTls()
		}
	}
}

func effectivePolicy(dr *networking.DestinationRule, port uint32, subset string) policy {
	var pol policy
	pol.apply(dr.GetTrafficPolicy(), port)
	if subset != "" {
		pol.apply(findSubset(dr, subset).GetTrafficPolicy(), port)
	}
	return pol
}

func buildCluster(gen proxy.Generator, name string, svc *model.Service, port model.Port, subset string, dr *networking.DestinationRule, mesh model.MeshConfig, eps *model.EndpointSet, sans []string) *clusterv3.Cluster {
	pol := effectivePolicy(dr, port.Number, subset)
	cl := &clusterv3.Cluster{Name: name}
	if gen == proxy.GenEnvoy {
		cl.ConnectTimeout = durationpb.New(mesh.ConnectTimeout)
		if d := pol.pool.GetTcp().GetConnectTimeout(); d != nil {
			cl.ConnectTimeout = d
		}
		if port.Protocol == model.ProtocolHTTP2 || port.Protocol == model.ProtocolGRPC {
			cl.TypedExtensionProtocolOptions = http2Options()
		}
	}
	switch svc.Resolution {
	case model.ClientSideLB:
		cl.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS}
		cl.EdsClusterConfig = &clusterv3.Cluster_EdsClusterConfig{EdsConfig: adsSource(), ServiceName: name}
	case model.DNSLB, model.DNSRoundRobinLB:
		t := clusterv3.Cluster_STRICT_DNS
		if svc.Resolution == model.DNSRoundRobinLB || gen == proxy.GenGRPC {
			t = clusterv3.Cluster_LOGICAL_DNS
		}
		cl.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: t}
		cl.LoadAssignment = dnsLoadAssignment(name, svc, port, subsetLabels(dr, subset), eps, t == clusterv3.Cluster_LOGICAL_DNS)
	case model.Passthrough:
		cl.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_ORIGINAL_DST}
		cl.LbPolicy = clusterv3.Cluster_CLUSTER_PROVIDED
		return cl
	}
	applyLB(cl, gen, pol.lb)
	applyPool(cl, gen, pol.pool)
	applyOutlier(cl, pol.outlier)
	if ctx := upstreamTLS(gen, pol.tls); ctx != nil {
		cl.TransportSocket = tlsSocket(ctx)
	}
	if !svc.MeshExternal {
		applyMeshTLS(cl, gen, pol, mesh, port, subset, svc.Hostname, sans)
	}
	if gen == proxy.GenEnvoy {
		// Keepalive endpoints travel in their own localities with a share of
		// the locality weight; Envoy only honours locality weights with this.
		if cl.CommonLbConfig == nil {
			cl.CommonLbConfig = &clusterv3.Cluster_CommonLbConfig{}
		}
		cl.CommonLbConfig.LocalityConfigSpecifier = &clusterv3.Cluster_CommonLbConfig_LocalityWeightedLbConfig_{
			LocalityWeightedLbConfig: &clusterv3.Cluster_CommonLbConfig_LocalityWeightedLbConfig{},
		}
	}
	return cl
}

func subsetLabels(dr *networking.DestinationRule, subset string) map[string]string {
	if subset == "" {
		return nil
	}
	return findSubset(dr, subset).GetLabels()
}

func dnsLoadAssignment(name string, svc *model.Service, port model.Port, labels map[string]string, eps *model.EndpointSet, single bool) *endpointv3.ClusterLoadAssignment {
	la := &endpointv3.ClusterLoadAssignment{ClusterName: name}
	var lbs []*endpointv3.LbEndpoint
	if eps != nil {
		for _, ep := range eps.Endpoints {
			if !model.LabelsMatch(labels, ep.Labels) {
				continue
			}
			lbs = append(lbs, lbEndpoint(ep.Address, ep.PortFor(port), ep))
			if single {
				break
			}
		}
	}
	if len(lbs) == 0 && !strings.Contains(svc.Hostname, "*") {
		lbs = append(lbs, lbEndpoint(svc.Hostname, port.Number, nil))
	}
	la.Endpoints = []*endpointv3.LocalityLbEndpoints{{
		Locality:            &corev3.Locality{},
		LbEndpoints:         lbs,
		LoadBalancingWeight: wrapperspb.UInt32(uint32(max(1, len(lbs)))),
	}}
	return la
}

func applyLB(cl *clusterv3.Cluster, gen proxy.Generator, lb *networking.LoadBalancerSettings) {
	// Istio's default is LEAST_REQUEST for Envoy; gRPC clients default to
	// round robin, as Istio's grpc generator does.
	cl.LbPolicy = clusterv3.Cluster_LEAST_REQUEST
	if gen == proxy.GenGRPC {
		cl.LbPolicy = clusterv3.Cluster_ROUND_ROBIN
	}
	if lb == nil {
		return
	}
	switch lb.GetSimple() {
	case networking.LoadBalancerSettings_ROUND_ROBIN:
		cl.LbPolicy = clusterv3.Cluster_ROUND_ROBIN
	case networking.LoadBalancerSettings_LEAST_REQUEST, networking.LoadBalancerSettings_LEAST_CONN:
		cl.LbPolicy = clusterv3.Cluster_LEAST_REQUEST
	case networking.LoadBalancerSettings_RANDOM:
		if gen == proxy.GenEnvoy {
			cl.LbPolicy = clusterv3.Cluster_RANDOM
		}
	case networking.LoadBalancerSettings_PASSTHROUGH:
		if gen == proxy.GenEnvoy {
			cl.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_ORIGINAL_DST}
			cl.LbPolicy = clusterv3.Cluster_CLUSTER_PROVIDED
			cl.EdsClusterConfig = nil
			cl.LoadAssignment = nil
		}
	}
	if ch := lb.GetConsistentHash(); ch != nil {
		if ch.GetMaglev() != nil && gen == proxy.GenEnvoy {
			cl.LbPolicy = clusterv3.Cluster_MAGLEV
		} else {
			cl.LbPolicy = clusterv3.Cluster_RING_HASH
			size := ch.GetRingHash().GetMinimumRingSize()
			if size == 0 {
				size = ch.GetMinimumRingSize() //nolint:staticcheck // deprecated field still used
			}
			if size == 0 {
				size = 1024
			}
			cl.LbConfig = &clusterv3.Cluster_RingHashLbConfig_{RingHashLbConfig: &clusterv3.Cluster_RingHashLbConfig{
				MinimumRingSize: wrapperspb.UInt64(size),
			}}
		}
	}
}

func applyPool(cl *clusterv3.Cluster, gen proxy.Generator, pool *networking.ConnectionPoolSettings) {
	// Istio lifts Envoy's low default thresholds (1024) to "unlimited".
	th := &clusterv3.CircuitBreakers_Thresholds{
		MaxConnections:     wrapperspb.UInt32(math.MaxUint32),
		MaxPendingRequests: wrapperspb.UInt32(math.MaxUint32),
		MaxRequests:        wrapperspb.UInt32(math.MaxUint32),
		MaxRetries:         wrapperspb.UInt32(math.MaxUint32),
		TrackRemaining:     true,
	}
	if pool == nil && gen == proxy.GenGRPC {
		return
	}
	if n := pool.GetTcp().GetMaxConnections(); n > 0 {
		th.MaxConnections = wrapperspb.UInt32(uint32(n))
	}
	if n := pool.GetHttp().GetHttp1MaxPendingRequests(); n > 0 {
		th.MaxPendingRequests = wrapperspb.UInt32(uint32(n))
	}
	if n := pool.GetHttp().GetHttp2MaxRequests(); n > 0 {
		th.MaxRequests = wrapperspb.UInt32(uint32(n))
	}
	if n := pool.GetHttp().GetMaxRetries(); n > 0 {
		th.MaxRetries = wrapperspb.UInt32(uint32(n))
	}
	cl.CircuitBreakers = &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{th}}
	if gen == proxy.GenEnvoy {
		if it := pool.GetHttp().GetIdleTimeout(); it != nil {
			cl.CommonHttpProtocolOptions = &corev3.HttpProtocolOptions{IdleTimeout: it}
		}
		if n := pool.GetHttp().GetMaxRequestsPerConnection(); n > 0 {
			if cl.CommonHttpProtocolOptions == nil {
				cl.CommonHttpProtocolOptions = &corev3.HttpProtocolOptions{}
			}
			cl.CommonHttpProtocolOptions.MaxRequestsPerConnection = wrapperspb.UInt32(uint32(n))
		}
	}
}

func applyOutlier(cl *clusterv3.Cluster, od *networking.OutlierDetection) {
	if od == nil {
		return
	}
	out := &clusterv3.OutlierDetection{
		Interval:         od.GetInterval(),
		BaseEjectionTime: od.GetBaseEjectionTime(),
	}
	if od.GetMaxEjectionPercent() > 0 {
		out.MaxEjectionPercent = wrapperspb.UInt32(uint32(od.GetMaxEjectionPercent()))
	}
	if v := od.GetConsecutive_5XxErrors(); v != nil {
		out.Consecutive_5Xx = wrapperspb.UInt32(v.GetValue())
		out.EnforcingConsecutive_5Xx = wrapperspb.UInt32(100)
	}
	if v := od.GetConsecutiveGatewayErrors(); v != nil {
		out.ConsecutiveGatewayFailure = wrapperspb.UInt32(v.GetValue())
		out.EnforcingConsecutiveGatewayFailure = wrapperspb.UInt32(100)
	}
	cl.OutlierDetection = out
	if mh := od.GetMinHealthPercent(); mh >= 0 {
		if cl.CommonLbConfig == nil {
			cl.CommonLbConfig = &clusterv3.Cluster_CommonLbConfig{}
		}
		cl.CommonLbConfig.HealthyPanicThreshold = &typev3.Percent{Value: float64(mh)}
	}
}
