package translate

import (
	"math"
	"sort"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	upstreamhttp "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/sextant-mesh/sextant/model"
)

func http2Options() map[string]*anypb.Any {
	opts := &upstreamhttp.HttpProtocolOptions{
		UpstreamProtocolOptions: &upstreamhttp.HttpProtocolOptions_ExplicitHttpConfig_{
			ExplicitHttpConfig: &upstreamhttp.HttpProtocolOptions_ExplicitHttpConfig{
				ProtocolConfig: &upstreamhttp.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{
					Http2ProtocolOptions: &corev3.Http2ProtocolOptions{},
				},
			},
		},
	}
	a, _ := newAny(opts)
	return map[string]*anypb.Any{"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": a}
}

// passthroughProtocolOptions are istiod's options for PassthroughCluster
// and InboundPassthroughCluster (passthroughHttpProtocolOptions): HTTP
// requests routed there go upstream in the protocol they came in, so
// HTTP/2 and gRPC to destinations outside the mesh keep working; idle
// upstream connections close after five minutes.
func passthroughProtocolOptions() map[string]*anypb.Any {
	opts := &upstreamhttp.HttpProtocolOptions{
		CommonHttpProtocolOptions: &corev3.HttpProtocolOptions{IdleTimeout: durationpb.New(5 * time.Minute)},
		UpstreamProtocolOptions: &upstreamhttp.HttpProtocolOptions_UseDownstreamProtocolConfig{
			UseDownstreamProtocolConfig: &upstreamhttp.HttpProtocolOptions_UseDownstreamHttpConfig{
				HttpProtocolOptions:  &corev3.Http1ProtocolOptions{},
				Http2ProtocolOptions: &corev3.Http2ProtocolOptions{},
			},
		},
	}
	return map[string]*anypb.Any{"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": mustAnyOf(opts)}
}

func lbEndpoint(addr string, port uint32, ep *model.Endpoint) *endpointv3.LbEndpoint {
	lb := &endpointv3.LbEndpoint{
		HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
			Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
				Address:       addr,
				PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
			}}},
		}},
		LoadBalancingWeight: wrapperspb.UInt32(1),
	}
	if ep != nil {
		lb.Metadata = endpointMetadata(ep)
		lb.LoadBalancingWeight = wrapperspb.UInt32(weightOf(ep))
		switch ep.Health {
		case model.Unhealthy:
			lb.HealthStatus = corev3.HealthStatus_UNHEALTHY
		case model.Draining:
			lb.HealthStatus = corev3.HealthStatus_DRAINING
		default:
			lb.HealthStatus = corev3.HealthStatus_HEALTHY
		}
	}
	return lb
}

func weightOf(ep *model.Endpoint) uint32 {
	if ep.Weight == 0 {
		return 1
	}
	return ep.Weight
}

func parseLocality(s string) *corev3.Locality {
	parts := strings.SplitN(s, "/", 3)
	for len(parts) < 3 {
		parts = append(parts, "")
	}
	return &corev3.Locality{Region: parts[0], Zone: parts[1], SubZone: parts[2]}
}

// keepaliveSubZone marks the localities that hold keepalive endpoints. gRPC
// splits traffic by locality weight and then round-robins inside a locality,
// so a keepalive share needs localities of its own.
const keepaliveSubZone = "sextant-keepalive"

type localityGroup struct {
	locality  string
	keepalive bool
	eps       []*endpointv3.LbEndpoint
	weight    uint64
}

// buildLoadAssignment groups the endpoints that match the subset labels into
// localities. When some but not all of them are in the keepalive traffic
// state, keepalive endpoints are put in localities of their own whose weights
// add up to keepaliveShare of the total.
func buildLoadAssignment(name string, port model.Port, labels map[string]string, eps []*model.Endpoint, keepaliveShare float64) *endpointv3.ClusterLoadAssignment {
	groups := map[string]*localityGroup{}
	var running, keepalive uint64
	type pick struct {
		ep   *model.Endpoint
		port uint32
	}
	var picks []pick
	for _, ep := range eps {
		if !model.LabelsMatch(labels, ep.Labels) {
			continue
		}
		picks = append(picks, pick{ep, ep.PortFor(port)})
		if ep.Labels[model.TrafficStateLabel] == model.StateKeepalive {
			keepalive += uint64(weightOf(ep))
		} else {
			running += uint64(weightOf(ep))
		}
	}
	// With no running endpoint, keepalive ones take all traffic: never a
	// black hole.
	split := running > 0 && keepalive > 0 && keepaliveShare > 0 && keepaliveShare < 1
	seen := map[string]bool{}
	for _, pk := range picks {
		addr := pk.ep.Address + ":" + itoa(pk.port)
		if seen[addr] {
			continue // gRPC rejects duplicate addresses.
		}
		seen[addr] = true
		ka := split && pk.ep.Labels[model.TrafficStateLabel] == model.StateKeepalive
		key := pk.ep.Locality
		if ka {
			key += "\x00ka"
		}
		g := groups[key]
		if g == nil {
			g = &localityGroup{locality: pk.ep.Locality, keepalive: ka}
			groups[key] = g
		}
		g.eps = append(g.eps, lbEndpoint(pk.ep.Address, pk.port, pk.ep))
		g.weight += uint64(weightOf(pk.ep))
	}
	keys := make([]string, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	la := &endpointv3.ClusterLoadAssignment{ClusterName: name}
	// Locality weights: running localities get weight×scale, keepalive
	// ones share keepaliveShare of the total in proportion to their weight.
	const scale = 1000
	for _, k := range keys {
		g := groups[k]
		w := g.weight * scale
		if split && g.keepalive {
			total := float64(running*scale) * keepaliveShare / (1 - keepaliveShare)
			w = uint64(math.Max(1, math.Round(total*float64(g.weight)/float64(keepalive))))
		}
		loc := parseLocality(g.locality)
		if g.keepalive {
			loc.SubZone = strings.TrimPrefix(loc.SubZone+"/"+keepaliveSubZone, "/")
		}
		la.Endpoints = append(la.Endpoints, &endpointv3.LocalityLbEndpoints{
			Locality:            loc,
			LbEndpoints:         g.eps,
			LoadBalancingWeight: wrapperspb.UInt32(uint32(min(w, math.MaxUint32))),
		})
	}
	return la
}

func itoa(n uint32) string {
	var b [10]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			break
		}
	}
	return string(b[i:])
}
