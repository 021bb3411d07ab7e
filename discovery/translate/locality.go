package translate

import (
	"sort"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1alpha3"
)

func localityString(l *corev3.Locality) string {
	return l.GetRegion() + "/" + l.GetZone() + "/" + l.GetSubZone()
}

// localityMatches reports whether a pattern such as "us-east/*" or
// "us-east/zone1/*" covers locality "region/zone/subzone".
func localityMatches(pattern, locality string) bool {
	pp := strings.Split(pattern, "/")
	lp := strings.SplitN(locality, "/", 3)
	for i, p := range pp {
		if p == "*" {
			return true
		}
		if i >= len(lp) || p != lp[i] {
			return false
		}
	}
	return true
}

// applyLocality sets EDS priorities (and, with distribute, weights) for a
// proxy at proxyLoc, as Istio does for locality failover: endpoints in the
// proxy's subzone first, then its zone, its region (or the failover target
// region), then the rest. Priorities are renumbered to be contiguous.
func applyLocality(la *endpointv3.ClusterLoadAssignment, proxyLoc string, setting *networking.LocalityLoadBalancerSetting) {
	for _, d := range setting.GetDistribute() {
		if !localityMatches(d.GetFrom(), proxyLoc) {
			continue
		}
		// Weights are percentages over the "to" localities; others get none.
		for _, le := range la.GetEndpoints() {
			var w uint32
			for to, pct := range d.GetTo() {
				if localityMatches(to, localityString(le.GetLocality())) {
					w = pct
					break
				}
			}
			le.LoadBalancingWeight = wrapperspb.UInt32(max(1, w*1000))
			if w == 0 {
				le.LbEndpoints = nil
			}
		}
		kept := la.Endpoints[:0]
		for _, le := range la.Endpoints {
			if len(le.LbEndpoints) > 0 {
				kept = append(kept, le)
			}
		}
		la.Endpoints = kept
		return
	}
	pr := strings.SplitN(proxyLoc, "/", 3)
	for len(pr) < 3 {
		pr = append(pr, "")
	}
	failoverTo := ""
	for _, f := range setting.GetFailover() {
		if f.GetFrom() == pr[0] {
			failoverTo = f.GetTo()
		}
	}
	raw := map[*endpointv3.LocalityLbEndpoints]uint32{}
	for _, le := range la.GetEndpoints() {
		l := le.GetLocality()
		var p uint32
		switch {
		case l.GetRegion() == pr[0] && l.GetZone() == pr[1] && strings.TrimSuffix(l.GetSubZone(), "/"+keepaliveSubZone) == pr[2]:
			p = 0
		case l.GetRegion() == pr[0] && l.GetZone() == pr[1]:
			p = 1
		case l.GetRegion() == pr[0]:
			p = 2
		case failoverTo != "" && l.GetRegion() == failoverTo:
			p = 3
		default:
			p = 4
		}
		raw[le] = p
	}
	used := map[uint32]bool{}
	for _, p := range raw {
		used[p] = true
	}
	levels := make([]uint32, 0, len(used))
	for p := range used {
		levels = append(levels, p)
	}
	sort.Slice(levels, func(i, j int) bool { return levels[i] < levels[j] })
	renum := map[uint32]uint32{}
	for i, p := range levels {
		renum[p] = uint32(i)
	}
	for le, p := range raw {
		le.Priority = renum[p]
	}
	sort.SliceStable(la.Endpoints, func(i, j int) bool { return la.Endpoints[i].Priority < la.Endpoints[j].Priority })
}
