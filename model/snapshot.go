package model

import (
	"strings"
	"sync"

	networking "istio.io/api/networking/v1alpha3"
)

// DefaultDomainSuffix is the cluster DNS domain appended to short host names.
const DefaultDomainSuffix = "cluster.local"

// DefaultRootNamespace is where mesh-wide config (Sidecar, PeerAuthentication)
// lives, as in Istio.
const DefaultRootNamespace = "istio-system"

// Snapshot is an immutable, versioned view of the whole mesh. Nothing in it
// may be mutated after Aggregator.Build returns it.
type Snapshot struct {
	// Version increases with every Build of the same Aggregator. Resource
	// versions do not derive from it (they are content hashes).
	Version uint64
	// Synced is true once every registry finished its initial load.
	Synced bool
	// Errors are rejected inputs and warnings, sorted by location.
	Errors []ConfigError

	services  []*Service
	byHost    map[string]*Service
	svcHash   map[string]uint64
	endpoints map[string]*EndpointSet
	configs   map[Kind][]*Config

	vsExact    map[string][]*Config
	vsWildcard []hostConfig
	drExact    map[string][]*Config
	drWildcard []hostConfig
	sidecars   map[string][]*Config

	labelsMatter bool

	byIPOnce sync.Once
	byIP     map[string][]Instance
}

// Instance is one endpoint of one service: what a workload serves.
type Instance struct {
	Service  *Service
	Endpoint *Endpoint
}

// InstancesByIP returns the service instances whose endpoint address is ip,
// ordered by service hostname. Sidecars use it to find their own workload's
// inbound ports.
func (s *Snapshot) InstancesByIP(ip string) []Instance {
	s.byIPOnce.Do(func() {
		s.byIP = map[string][]Instance{}
		for _, svc := range s.services {
			es := s.endpoints[svc.Hostname]
			if es == nil {
				continue
			}
			for _, ep := range es.Endpoints {
				s.byIP[ep.Address] = append(s.byIP[ep.Address], Instance{Service: svc, Endpoint: ep})
			}
		}
	})
	return s.byIP[ip]
}

type hostConfig struct {
	host string
	cfg  *Config
}

// Services returns all services sorted by hostname.
func (s *Snapshot) Services() []*Service { return s.services }

// Service returns the service with the given hostname.
func (s *Snapshot) Service(host string) *Service { return s.byHost[host] }

// ServiceHash returns the content hash of the service with the given
// hostname (0 if there is none).
func (s *Snapshot) ServiceHash(host string) uint64 { return s.svcHash[host] }

// LabelsMatter reports whether any routing config selects on the client's
// labels (VirtualService sourceLabels), so proxies of different workloads in
// one namespace may need different routes.
func (s *Snapshot) LabelsMatter() bool { return s.labelsMatter }

// Endpoints returns the endpoints of a service (nil if none).
func (s *Snapshot) Endpoints(host string) *EndpointSet { return s.endpoints[host] }

// Configs returns the configs of a kind, oldest first.
func (s *Snapshot) Configs(k Kind) []*Config { return s.configs[k] }

// ResolveHost turns a short host name used in config of namespace ns into a
// FQDN as Istio does: a name without dots is qualified with the namespace and
// the cluster domain; anything else is taken as it is.
func ResolveHost(host, ns string) string {
	if host == "*" || strings.Contains(host, ".") {
		return host
	}
	return host + "." + ns + ".svc." + DefaultDomainSuffix
}

// HostMatches reports whether the (possibly wildcard) pattern covers host.
func HostMatches(pattern, host string) bool {
	if pattern == "*" {
		return true
	}
	if strings.HasPrefix(pattern, "*") {
		return strings.HasSuffix(host, pattern[1:])
	}
	return pattern == host
}

func (s *Snapshot) index() {
	s.vsExact = map[string][]*Config{}
	s.drExact = map[string][]*Config{}
	s.sidecars = map[string][]*Config{}
	for _, c := range s.configs[KindVirtualService] {
		vs := c.Spec.(*networking.VirtualService)
		if len(vs.GetGateways()) > 0 && !containsMesh(vs.GetGateways()) {
			continue
		}
		for _, r := range vs.GetHttp() {
			for _, m := range r.GetMatch() {
				if len(m.GetSourceLabels()) > 0 {
					s.labelsMatter = true
				}
			}
		}
		for _, r := range vs.GetTcp() {
			for _, m := range r.GetMatch() {
				if len(m.GetSourceLabels()) > 0 {
					s.labelsMatter = true
				}
			}
		}
		for _, h := range vs.GetHosts() {
			fq := ResolveHost(h, c.Key.Namespace)
			if strings.Contains(fq, "*") {
				s.vsWildcard = append(s.vsWildcard, hostConfig{fq, c})
			} else {
				s.vsExact[fq] = append(s.vsExact[fq], c)
			}
		}
	}
	for _, c := range s.configs[KindDestinationRule] {
		dr := c.Spec.(*networking.DestinationRule)
		fq := ResolveHost(dr.GetHost(), c.Key.Namespace)
		if strings.Contains(fq, "*") {
			s.drWildcard = append(s.drWildcard, hostConfig{fq, c})
		} else {
			s.drExact[fq] = append(s.drExact[fq], c)
		}
	}
	for _, c := range s.configs[KindSidecar] {
		s.sidecars[c.Key.Namespace] = append(s.sidecars[c.Key.Namespace], c)
	}
}

func containsMesh(gws []string) bool {
	for _, g := range gws {
		if g == "mesh" {
			return true
		}
	}
	return false
}

// VirtualServices returns the VirtualServices a proxy in namespace ns uses
// for host, in precedence order: exact host matches first (oldest first), then
// wildcard matches. The first one is the one that applies; more than one
// means a conflict.
func (s *Snapshot) VirtualServices(host, ns string) []*Config {
	var out []*Config
	for _, c := range s.vsExact[host] {
		if c.VisibleTo(ns) {
			out = append(out, c)
		}
	}
	for _, hc := range s.vsWildcard {
		if HostMatches(hc.host, host) && hc.cfg.VisibleTo(ns) {
			out = append(out, hc.cfg)
		}
	}
	return out
}

// DestinationRule returns the DestinationRule that applies to host for a
// proxy in namespace ns: one in the proxy's namespace wins, then the
// service's namespace, then the root namespace, then any other exported one;
// exact hosts win over wildcards.
func (s *Snapshot) DestinationRule(host, proxyNS, svcNS string) *Config {
	pick := func(list []*Config) *Config {
		for _, want := range []string{proxyNS, svcNS, DefaultRootNamespace, ""} {
			for _, c := range list {
				if (want == "" || c.Key.Namespace == want) && c.VisibleTo(proxyNS) {
					return c
				}
			}
		}
		return nil
	}
	if c := pick(s.drExact[host]); c != nil {
		return c
	}
	return pick(s.wildcardDestinationRules(host))
}

// DestinationRulesFor returns every DestinationRule whose host covers host,
// whatever namespace it is visible to: exact hosts first, then wildcards.
// It answers from the index, not by scanning all rules.
func (s *Snapshot) DestinationRulesFor(host string) []*Config {
	return append(append([]*Config(nil), s.drExact[host]...), s.wildcardDestinationRules(host)...)
}

func (s *Snapshot) wildcardDestinationRules(host string) []*Config {
	var out []*Config
	for _, hc := range s.drWildcard {
		if HostMatches(hc.host, host) {
			out = append(out, hc.cfg)
		}
	}
	return out
}

// Sidecar returns the Sidecar that scopes a workload with the given labels
// in namespace ns: a selector match in ns, then ns's default, then the root
// namespace's default. Nil means "everything visible".
func (s *Snapshot) Sidecar(ns string, labels map[string]string) *Config {
	var nsDefault *Config
	for _, c := range s.sidecars[ns] {
		sel := c.Spec.(*networking.Sidecar).GetWorkloadSelector().GetLabels()
		if len(sel) == 0 {
			if nsDefault == nil {
				nsDefault = c
			}
			continue
		}
		if LabelsMatch(sel, labels) {
			return c
		}
	}
	if nsDefault != nil {
		return nsDefault
	}
	for _, c := range s.sidecars[DefaultRootNamespace] {
		if len(c.Spec.(*networking.Sidecar).GetWorkloadSelector().GetLabels()) == 0 {
			return c
		}
	}
	return nil
}

// LabelsMatch reports whether labels has every key/value of selector.
func LabelsMatch(selector, labels map[string]string) bool {
	for k, v := range selector {
		if lv, ok := labels[k]; !ok || lv != v {
			return false
		}
	}
	return true
}
