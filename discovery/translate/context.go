package translate

import (
	"errors"
	"sort"
	"strconv"
	"strings"
	"sync"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/sextant-mesh/sextant/discovery/proxy"
	"github.com/sextant-mesh/sextant/model"
)

// Type URLs served.
const (
	ClusterType  = resourcev3.ClusterType
	EndpointType = resourcev3.EndpointType
	ListenerType = resourcev3.ListenerType
	RouteType    = resourcev3.RouteType
	SecretType   = resourcev3.SecretType
)

// TypeSet is the resources of one type for one scope, sorted by name.
type TypeSet struct {
	Resources []*Resource
	// Hash covers every resource's name and version: equal hashes mean
	// nothing to send.
	Hash   uint64
	byName map[string]*Resource
}

// Get returns the named resource, or nil.
func (t *TypeSet) Get(name string) *Resource {
	if t == nil {
		return nil
	}
	return t.byName[name]
}

func newTypeSet(rs []*Resource) *TypeSet {
	sort.Slice(rs, func(i, j int) bool { return rs[i].Name < rs[j].Name })
	ts := &TypeSet{Resources: rs, byName: make(map[string]*Resource, len(rs))}
	h := &model.Hasher{}
	for _, r := range rs {
		ts.byName[r.Name] = r
		h.Str(r.Name).Str(r.Version)
	}
	ts.Hash = h.Sum()
	return ts
}

type scopeResult struct {
	once     sync.Once
	services []*model.Service
	sets     map[string]*TypeSet
}

// Context translates one snapshot. It is safe for concurrent use by all the
// connections pushing that snapshot.
type Context struct {
	Snap *model.Snapshot
	Mesh model.MeshConfig

	cache    *Cache
	gen      uint64
	meshHash uint64

	mu     sync.Mutex
	scopes map[proxy.Scope]*scopeResult
	eds    sync.Map // edsKey -> *edsEntry
	sans   sync.Map // hostname -> []string
	authz  sync.Map // namespace + labels -> inboundAuthz
	warned sync.Map
	errs   []error
}

// NewContext starts translating snap. Building contexts for successive
// snapshots with one Cache shares every unchanged resource.
func NewContext(snap *model.Snapshot, mesh model.MeshConfig, cache *Cache) *Context {
	return &Context{
		Snap:     snap,
		Mesh:     mesh,
		cache:    cache,
		gen:      cache.nextGeneration(),
		meshHash: mesh.Hash(),
		scopes:   map[proxy.Scope]*scopeResult{},
	}
}

// Errors returns problems met while building (invalid generated resources,
// skipped config), each naming the object.
func (c *Context) Errors() []error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]error(nil), c.errs...)
}

// warnOnce records err once per key in this snapshot (translation runs per
// scope, so the same problem is met many times).
func (c *Context) warnOnce(key string, err error) {
	if _, dup := c.warned.LoadOrStore(key, true); !dup {
		c.addErr(err)
	}
}

// add appends to list the cached resource for (typeURL, name) with these
// inputs, building it with build on a miss; a build error is recorded for
// debug output and the resource left out.
func (c *Context) add(list *[]*Resource, typeURL, name string, inputs uint64, build func() protoMessage) {
	res, err := c.cache.get(c.gen, typeURL, name, inputs, build)
	c.addErr(err)
	if res != nil {
		*list = append(*list, res)
	}
}

func (c *Context) addErr(err error) {
	if err == nil {
		return
	}
	c.mu.Lock()
	c.errs = append(c.errs, err)
	c.mu.Unlock()
}

// ScopeOf returns the scope that decides p's config in this snapshot.
func (c *Context) ScopeOf(p *proxy.Proxy) proxy.Scope {
	return proxy.ScopeFor(p, c.Snap, c.Snap.LabelsMatter())
}

func (c *Context) scope(p *proxy.Proxy) (proxy.Scope, *scopeResult) {
	sc := c.ScopeOf(p)
	c.mu.Lock()
	r := c.scopes[sc]
	if r == nil {
		r = &scopeResult{}
		c.scopes[sc] = r
	}
	c.mu.Unlock()
	r.once.Do(func() { c.buildScope(sc, p, r) })
	return sc, r
}

// Resources returns the CDS, LDS or RDS resources for p. Proxies with the
// same scope share the result.
func (c *Context) Resources(p *proxy.Proxy, typeURL string) *TypeSet {
	_, r := c.scope(p)
	return r.sets[typeURL]
}

// VisibleServices returns the services p's scope includes.
func (c *Context) VisibleServices(p *proxy.Proxy) []*model.Service {
	_, r := c.scope(p)
	return r.services
}

func (c *Context) buildScope(sc proxy.Scope, p *proxy.Proxy, r *scopeResult) {
	r.services = c.visibleServices(p)
	r.sets = map[string]*TypeSet{}
	switch p.Generator {
	case proxy.GenGRPC:
		r.sets[ClusterType] = newTypeSet(c.clusters(p, r.services))
		ls, rs := c.grpcListenersAndRoutes(p, r.services)
		r.sets[ListenerType] = newTypeSet(ls)
		r.sets[RouteType] = newTypeSet(rs)
	case proxy.GenEnvoy:
		cls := c.clusters(p, r.services)
		if !p.InterceptionNone {
			cls = append(cls, c.inboundClusters(c.workloadPorts(p))...)
		}
		r.sets[ClusterType] = newTypeSet(cls)
		ls, rs := c.sidecarListenersAndRoutes(p, r.services)
		r.sets[ListenerType] = newTypeSet(ls)
		r.sets[RouteType] = newTypeSet(rs)
	default:
		for _, t := range []string{ClusterType, ListenerType, RouteType} {
			r.sets[t] = newTypeSet(nil)
		}
	}
}

// visibleServices applies exportTo and the proxy's Sidecar egress hosts.
func (c *Context) visibleServices(p *proxy.Proxy) []*model.Service {
	var egress []*networking.IstioEgressListener
	var sidecarNS string
	if sc := c.Snap.Sidecar(p.Namespace, p.Labels); sc != nil {
		egress = sc.Spec.(*networking.Sidecar).GetEgress()
		sidecarNS = sc.Key.Namespace
	}
	var out []*model.Service
	for _, svc := range c.Snap.Services() {
		if !svc.VisibleTo(p.Namespace) {
			continue
		}
		if len(egress) > 0 && !egressAllows(egress, sidecarNS, p.Namespace, svc) {
			continue
		}
		out = append(out, svc)
	}
	return out
}

func egressAllows(egress []*networking.IstioEgressListener, sidecarNS, proxyNS string, svc *model.Service) bool {
	for _, l := range egress {
		for _, h := range l.GetHosts() {
			ns, host, ok := strings.Cut(h, "/")
			if !ok {
				ns, host = "*", h
			}
			switch ns {
			case "*":
			case ".":
				if svc.Namespace != sidecarNS && svc.Namespace != proxyNS {
					continue
				}
			case "~":
				continue
			default:
				if svc.Namespace != ns {
					continue
				}
			}
			if model.HostMatches(model.ResolveHost(host, svc.Namespace), svc.Hostname) || host == "*" {
				return true
			}
		}
	}
	return false
}

// ClusterName is Istio's outbound cluster name.
func ClusterName(port uint32, subset, host string) string {
	return "outbound|" + strconv.FormatUint(uint64(port), 10) + "|" + subset + "|" + host
}

// ParseClusterName splits an outbound cluster name.
func ParseClusterName(name string) (port uint32, subset, host string, err error) {
	parts := strings.SplitN(name, "|", 4)
	if len(parts) != 4 || parts[0] != "outbound" {
		return 0, "", "", errors.New("not an outbound cluster name")
	}
	n, err := strconv.ParseUint(parts[1], 10, 32)
	if err != nil {
		return 0, "", "", errors.New("bad port in cluster name")
	}
	return uint32(n), parts[2], parts[3], nil
}

// Endpoint returns the ClusterLoadAssignment named by an outbound cluster
// name, as seen by p, or nil when there is no such cluster.
func (c *Context) Endpoint(p *proxy.Proxy, name string) *Resource {
	// On an EDS push this runs once per proxy and changed cluster, so the
	// memo is consulted before anything is parsed or looked up. The
	// DestinationRule (and so the subset's labels) depends on the proxy's
	// namespace; priorities depend on its locality only when the policy is
	// locality-aware.
	base := edsKey{name: name, namespace: p.Namespace}
	if v, ok := c.eds.Load(base); ok {
		e := v.(*edsEntry)
		if !e.localityAware || p.Locality == "" {
			return e.res
		}
		if v, ok := c.eds.Load(edsKey{name: name, namespace: p.Namespace, locality: p.Locality}); ok {
			return v.(*edsEntry).res
		}
		res := c.buildEndpoint(e.svc, e.port, e.subset, name, e.drc, e.pol, p.Locality)
		c.eds.Store(edsKey{name: name, namespace: p.Namespace, locality: p.Locality}, &edsEntry{res: res})
		return res
	}
	e := &edsEntry{}
	port, subset, host, err := ParseClusterName(name)
	svc := c.Snap.Service(host)
	if err == nil && svc != nil && svc.VisibleTo(p.Namespace) {
		e.svc, e.port, e.subset = svc, port, subset
		e.drc = c.Snap.DestinationRule(svc.Hostname, p.Namespace, svc.Namespace)
		var dr *networking.DestinationRule
		if e.drc != nil {
			dr = e.drc.Spec.(*networking.DestinationRule)
		}
		e.pol = effectivePolicy(dr, port, subset)
		e.localityAware = localityAware(e.pol)
		e.res = c.buildEndpoint(svc, port, subset, name, e.drc, e.pol, "")
	}
	if actual, loaded := c.eds.LoadOrStore(base, e); loaded {
		e = actual.(*edsEntry)
	}
	if e.svc == nil || !e.localityAware || p.Locality == "" {
		return e.res
	}
	return c.Endpoint(p, name)
}

// edsKey memoises EDS resources per snapshot.
type edsKey struct{ name, namespace, locality string }

// edsEntry is what an EDS lookup found for a (cluster, namespace).
type edsEntry struct {
	res           *Resource
	svc           *model.Service
	port          uint32
	subset        string
	drc           *model.Config
	pol           policy
	localityAware bool
}

// localityAware reports whether EDS priorities follow the proxy's locality:
// as in Istio, only with outlier detection (so failover can happen) and
// unless the DestinationRule disables locality load balancing.
func localityAware(pol policy) bool {
	if pol.outlier == nil {
		return false
	}
	ls := pol.lb.GetLocalityLbSetting()
	return ls == nil || ls.GetEnabled() == nil || ls.GetEnabled().GetValue()
}

func (c *Context) buildEndpoint(svc *model.Service, portNum uint32, subset, name string, drc *model.Config, pol policy, locality string) *Resource {
	port, ok := svc.Port(portNum)
	if !ok {
		return nil
	}
	var dr *networking.DestinationRule
	var drHash uint64
	if drc != nil {
		dr = drc.Spec.(*networking.DestinationRule)
		drHash = drc.Hash
	}
	var labels map[string]string
	if subset != "" {
		ss := findSubset(dr, subset)
		if ss == nil {
			return nil
		}
		labels = ss.GetLabels()
	}
	eps := c.Snap.Endpoints(svc.Hostname)
	var list []*model.Endpoint
	if eps != nil {
		list = eps.Endpoints
	}
	// Hash only the endpoints this cluster selects, so a change to one
	// subset does not rebuild (and re-marshal) the others.
	eh := &model.Hasher{}
	for _, ep := range list {
		if model.LabelsMatch(labels, ep.Labels) {
			eh.U64(ep.Hash())
		}
	}
	epHash := eh.Sum()
	inputs := (&model.Hasher{}).U64(epHash).U64(c.Snap.ServiceHash(svc.Hostname)).U64(drHash).U64(c.meshHash).Str(subset).Str(locality).Sum()
	share := c.Mesh.KeepaliveShare
	if svc.KeepaliveShare > 0 {
		share = svc.KeepaliveShare
	}
	res, err := c.cache.get(c.gen, EndpointType, name, inputs, func() protoMessage {
		la := buildLoadAssignment(name, port, labels, list, share)
		if locality != "" {
			applyLocality(la, locality, pol.lb.GetLocalityLbSetting())
		}
		return la
	})
	c.addErr(err)
	return res
}

func findSubset(dr *networking.DestinationRule, name string) *networking.Subset {
	for _, s := range dr.GetSubsets() {
		if s.GetName() == name {
			return s
		}
	}
	return nil
}

// ClusterNamesForHost lists every outbound cluster name of host in snap: one
// per port and per subset of any DestinationRule for the host. An endpoint
// change of host can only affect the EDS resources named here.
func ClusterNamesForHost(snap *model.Snapshot, host string) []string {
	svc := snap.Service(host)
	if svc == nil {
		return nil
	}
	subsets := map[string]bool{"": true}
	for _, c := range snap.DestinationRulesFor(host) {
		for _, ss := range c.Spec.(*networking.DestinationRule).GetSubsets() {
			subsets[ss.GetName()] = true
		}
	}
	var out []string
	for _, p := range svc.Ports {
		for ss := range subsets {
			out = append(out, ClusterName(p.Number, ss, host))
		}
	}
	sort.Strings(out)
	return out
}
