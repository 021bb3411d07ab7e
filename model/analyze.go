package model

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	networking "istio.io/api/networking/v1alpha3"
)

// Codes of istioctl analyze's messages that Sextant reports with the same
// meaning and wording (istio/istio pkg/config/analysis/msg/messages.yaml).
const (
	// CodeReferencedResourceNotFound is IST0101: a VirtualService host or
	// destination matches no service, or a destination's subset is defined
	// by no DestinationRule.
	CodeReferencedResourceNotFound = "IST0101"
	// CodeNoMatchingWorkloadsFound is IST0127: a DestinationRule subset's
	// labels select none of the service's endpoints.
	CodeNoMatchingWorkloadsFound = "IST0127"
)

// referenceWarnings finds the routing mistakes no single registry can see,
// because services, endpoints and config may come from different
// registries: VirtualService hosts and destinations that match no service,
// destination subsets no DestinationRule defines, and DestinationRule
// subsets whose labels select none of the service's endpoints. Each is a
// warning (the config is served as it is), as istioctl analyze reports it.
// It runs on an indexed snapshot.
func (s *Snapshot) referenceWarnings() []ConfigError {
	var out []ConfigError
	warn := func(c *Config, field, code, msg string) {
		out = append(out, ConfigError{
			Registry: c.Source.Registry, Location: c.Source.Location,
			Object: string(c.Key.Kind) + " " + c.Key.Namespace + "/" + c.Key.Name,
			Field:  field, Message: msg, Code: code, Warning: true,
		})
	}
	hostFound := func(fq string) bool {
		if strings.Contains(fq, "*") {
			for _, svc := range s.services {
				if HostMatches(fq, svc.Hostname) {
					return true
				}
			}
			return false
		}
		return s.byHost[fq] != nil
	}
	for _, c := range s.configs[KindVirtualService] {
		vs := c.Spec.(*networking.VirtualService)
		// Hosts of a gateway-only VirtualService are names clients use at
		// the gateway, not services.
		if len(vs.GetGateways()) == 0 || containsMesh(vs.GetGateways()) {
			for i, h := range vs.GetHosts() {
				if !hostFound(ResolveHost(h, c.Key.Namespace)) {
					warn(c, "spec.hosts["+strconv.Itoa(i)+"]", CodeReferencedResourceNotFound,
						fmt.Sprintf("Referenced host not found: %q", h))
				}
			}
		}
		for _, d := range destinations(vs) {
			host := d.dest.GetHost()
			fq := ResolveHost(host, c.Key.Namespace)
			if strings.Contains(fq, "*") {
				continue
			}
			if s.byHost[fq] == nil {
				// A typo in the host: report the host, not its knock-on
				// (a subset that then has no DestinationRule either).
				warn(c, d.field+".host", CodeReferencedResourceNotFound,
					fmt.Sprintf("Referenced host not found: %q", host))
				continue
			}
			if sub := d.dest.GetSubset(); sub != "" && !s.subsetDefined(fq, sub) {
				warn(c, d.field+".subset", CodeReferencedResourceNotFound,
					fmt.Sprintf("Referenced host+subset in destinationrule not found: %q", host+"+"+sub))
			}
		}
	}
	for _, c := range s.configs[KindDestinationRule] {
		dr := c.Spec.(*networking.DestinationRule)
		svc := s.byHost[ResolveHost(dr.GetHost(), c.Key.Namespace)]
		if svc == nil || svc.Resolution != ClientSideLB {
			continue // DNS endpoints carry no workload labels
		}
		es := s.endpoints[svc.Hostname]
		if es == nil || len(es.Endpoints) == 0 {
			continue // no endpoints at all is not a subset's mistake
		}
		for i, ss := range dr.GetSubsets() {
			sel := ss.GetLabels()
			if len(sel) == 0 {
				continue
			}
			matched := false
			for _, ep := range es.Endpoints {
				if LabelsMatch(sel, ep.Labels) {
					matched = true
					break
				}
			}
			if !matched {
				warn(c, "spec.subsets["+strconv.Itoa(i)+"].labels", CodeNoMatchingWorkloadsFound,
					fmt.Sprintf("No matching workloads for this resource with the following labels: %s", labelString(sel)))
			}
		}
	}
	return out
}

// subsetDefined reports whether a DestinationRule for host defines subset.
func (s *Snapshot) subsetDefined(host, subset string) bool {
	for _, c := range s.DestinationRulesFor(host) {
		for _, ss := range c.Spec.(*networking.DestinationRule).GetSubsets() {
			if ss.GetName() == subset {
				return true
			}
		}
	}
	return false
}

// labelString formats labels as istioctl does: k=v pairs, sorted, joined
// by commas.
func labelString(labels map[string]string) string {
	pairs := make([]string, 0, len(labels))
	for k, v := range labels {
		pairs = append(pairs, k+"="+v)
	}
	sort.Strings(pairs)
	return strings.Join(pairs, ",")
}

type destinationRef struct {
	field string
	dest  *networking.Destination
}

// destinations lists the destinations of a VirtualService with their field
// paths: routes and mirrors of HTTP, TCP and TLS rules.
func destinations(vs *networking.VirtualService) []destinationRef {
	var out []destinationRef
	add := func(field string, d *networking.Destination) {
		if d != nil {
			out = append(out, destinationRef{field: field, dest: d})
		}
	}
	idx := func(f string, i int) string { return f + "[" + strconv.Itoa(i) + "]" }
	for i, r := range vs.GetHttp() {
		f := idx("spec.http", i)
		for j, rd := range r.GetRoute() {
			add(idx(f+".route", j)+".destination", rd.GetDestination())
		}
		add(f+".mirror", r.GetMirror())
		for j, m := range r.GetMirrors() {
			add(idx(f+".mirrors", j)+".destination", m.GetDestination())
		}
	}
	for i, r := range vs.GetTcp() {
		for j, rd := range r.GetRoute() {
			add(idx(idx("spec.tcp", i)+".route", j)+".destination", rd.GetDestination())
		}
	}
	for i, r := range vs.GetTls() {
		for j, rd := range r.GetRoute() {
			add(idx(idx("spec.tls", i)+".route", j)+".destination", rd.GetDestination())
		}
	}
	return out
}
