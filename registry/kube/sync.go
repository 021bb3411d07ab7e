package kube

import (
	"reflect"
	"slices"

	"google.golang.org/protobuf/proto"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"

	"github.com/sextant-mesh/sextant/model"
	"github.com/sextant-mesh/sextant/registry/config"
)

// kindServiceEntryNS keys "the ServiceEntries of a namespace".
const kindServiceEntryNS = config.KindServiceEntry

// state is what the registry knows beyond the informer caches. It is owned
// by the goroutine running Run.
type state struct {
	regs []cache.InformerSynced

	// parsed is the latest parse of each object; good its last valid one.
	parsed map[objKey]*parsed
	good   map[objKey]*parsed
	// errs is what was last passed to SetErrors, by location.
	errs map[string][]model.ConfigError

	inMesh map[string]bool // namespaces, as last evaluated

	kubeSvcs  map[objKey]bool            // Services in the shard
	svcSlices map[objKey]map[string]bool // Service → its slices' names
	slices    map[objKey]*sliceCache     // EndpointSlice → its endpoints
	podRefs   map[types.NamespacedName]map[objKey]bool

	seNames map[string]map[string]bool           // namespace → ServiceEntry names
	weNames map[string]map[string]bool           // namespace → WorkloadEntry names
	seKeys  map[string]map[model.ServiceKey]bool // namespace → ServiceEntry services in the shard
	configs map[objKey]*parsed                   // configs in the shard, by the version set
	meshRV  string
}

func newState() *state {
	return &state{
		parsed:    map[objKey]*parsed{},
		good:      map[objKey]*parsed{},
		errs:      map[string][]model.ConfigError{},
		inMesh:    map[string]bool{},
		kubeSvcs:  map[objKey]bool{},
		svcSlices: map[objKey]map[string]bool{},
		slices:    map[objKey]*sliceCache{},
		podRefs:   map[types.NamespacedName]map[objKey]bool{},
		seNames:   map[string]map[string]bool{},
		weNames:   map[string]map[string]bool{},
		seKeys:    map[string]map[model.ServiceKey]bool{},
		configs:   map[objKey]*parsed{},
	}
}

// sliceCache is the endpoints one EndpointSlice contributes, built for one
// version of the slice and of its Service; stale when a Pod or Node it
// refers to changed.
type sliceCache struct {
	svc, slice *parsed
	svcName    string
	refs       map[string]types.NamespacedName
	eps        []*model.Endpoint
	stale      bool
}

// ops is one batch of shard changes, computed outside the shard's lock.
type ops struct {
	delSvcs []model.ServiceKey
	setSvcs []*model.Service
	eps     map[model.ServiceKey][]*model.Endpoint
	delCfgs []model.ConfigKey
	setCfgs []*model.Config
	errs    map[string][]model.ConfigError
}

// work is what a batch must recompute.
type work struct {
	services map[objKey]bool // kindService keys
	seNS     map[string]bool
	configs  map[objKey]bool
}

func (w *work) service(ns, name string) {
	w.services[objKey{kind: kindService, ns: ns, name: name}] = true
}

// process recomputes everything the changed keys feed and applies the
// result to the shard in one transaction.
func (r *Registry) process(keys map[objKey]struct{}) {
	if len(keys) == 0 {
		return
	}
	st := r.st
	w := &work{services: map[objKey]bool{}, seNS: map[string]bool{}, configs: map[objKey]bool{}}
	o := &ops{eps: map[model.ServiceKey][]*model.Endpoint{}, errs: map[string][]model.ConfigError{}}

	// Mesh config and namespaces first: they decide what else is in.
	if _, ok := keys[objKey{kind: kindMeshConfig}]; ok {
		if r.syncMesh() {
			for _, obj := range r.nsInf.GetStore().List() {
				keys[objKey{kind: kindNamespace, name: obj.(*corev1.Namespace).Name}] = struct{}{}
			}
			for ns := range st.inMesh {
				keys[objKey{kind: kindNamespace, name: ns}] = struct{}{}
			}
		}
	}
	for k := range keys {
		if k.kind == kindNamespace {
			in := r.nsInMesh(k.name)
			if was, seen := st.inMesh[k.name]; !seen || was != in {
				st.inMesh[k.name] = in
				r.markNamespace(w, k.name)
			}
		}
	}
	for k := range keys {
		switch k.kind {
		case kindService:
			w.service(k.ns, k.name)
		case kindPod:
			r.podChanged(w, types.NamespacedName{Namespace: k.ns, Name: k.name})
		case kindNode:
			objs, _ := r.podInf.GetIndexer().ByIndex(podNodeIndex, k.name)
			for _, obj := range objs {
				p := obj.(*corev1.Pod)
				r.podChanged(w, types.NamespacedName{Namespace: p.Namespace, Name: p.Name})
			}
		case kindServiceEntryNS:
			w.seNS[k.ns] = true
		case config.KindWorkloadEntry:
			// WorkloadEntries are endpoints of the ServiceEntries and
			// Services of their namespace that select them.
			r.checkWorkloadEntry(o, k)
			w.seNS[k.ns] = true
			for _, obj := range r.listNS(r.svcInf, k.ns) {
				if s := obj.(*corev1.Service); len(s.Spec.Selector) > 0 {
					w.service(s.Namespace, s.Name)
				}
			}
		case kindNamespace, kindMeshConfig:
		default:
			if ik := istioKindByName(k.kind); ik != nil && ik.isConfig {
				w.configs[k] = true
			}
		}
	}

	for k := range w.services {
		r.syncService(o, k.ns, k.name)
	}
	for ns := range w.seNS {
		r.syncServiceEntries(o, ns)
	}
	for k := range w.configs {
		r.syncConfig(o, k)
	}
	if len(o.delSvcs)+len(o.setSvcs)+len(o.eps)+len(o.delCfgs)+len(o.setCfgs)+len(o.errs) == 0 {
		return
	}
	r.shard.Update(func(tx *model.Txn) {
		for _, k := range o.delSvcs {
			tx.DeleteService(k)
		}
		for _, s := range o.setSvcs {
			tx.SetService(s)
		}
		for k, eps := range o.eps {
			tx.SetEndpoints(k, eps)
		}
		for _, k := range o.delCfgs {
			tx.DeleteConfig(k)
		}
		for _, c := range o.setCfgs {
			tx.SetConfig(c)
		}
		for loc, errs := range o.errs {
			tx.SetErrors(loc, errs)
		}
	})
}

// markNamespace queues everything in a namespace for recomputation.
func (r *Registry) markNamespace(w *work, ns string) {
	for _, obj := range r.listNS(r.svcInf, ns) {
		s := obj.(*corev1.Service)
		w.service(s.Namespace, s.Name)
	}
	for k := range r.st.kubeSvcs {
		if k.ns == ns {
			w.services[k] = true
		}
	}
	w.seNS[ns] = true
	for _, ik := range istioKinds {
		inf := r.istioInf[ik.kind]
		if inf == nil || !ik.isConfig {
			continue
		}
		for _, obj := range r.listNS(inf, ns) {
			m, _, ok := ik.spec(obj)
			if ok {
				w.configs[objKey{kind: ik.kind, ns: ns, name: m.GetName()}] = true
			}
		}
	}
	for k := range r.st.configs {
		if k.ns == ns {
			w.configs[k] = true
		}
	}
}

func (r *Registry) listNS(inf cache.SharedIndexInformer, ns string) []any {
	objs, err := inf.GetIndexer().ByIndex(cache.NamespaceIndex, ns)
	if err != nil {
		return nil
	}
	return objs
}

// podChanged marks the slices that name a Pod stale and their Services
// dirty.
func (r *Registry) podChanged(w *work, pod types.NamespacedName) {
	for sk := range r.st.podRefs[pod] {
		if c := r.st.slices[sk]; c != nil {
			c.stale = true
			w.service(sk.ns, c.svcName)
		}
	}
}

// syncMesh re-reads the mesh ConfigMap and reports whether the namespace
// selection may have changed.
func (r *Registry) syncMesh() bool {
	var m MeshSettings
	obj, ok, _ := r.meshInf.GetStore().GetByKey(r.opts.SystemNamespace + "/" + r.opts.MeshConfigMap)
	loc := Location("ConfigMap", r.opts.SystemNamespace, r.opts.MeshConfigMap)
	var errs []model.ConfigError
	if ok {
		cm := obj.(*corev1.ConfigMap)
		if cm.ResourceVersion == r.st.meshRV {
			return false
		}
		r.st.meshRV = cm.ResourceVersion
		if data, has := cm.Data[MeshConfigKey]; has {
			var err error
			m, err = ParseMeshConfig(data)
			if err != nil {
				r.log.Error("invalid mesh config; keeping the previous one", "configmap", loc, "err", err)
				errs = []model.ConfigError{{Registry: RegistryName, Location: loc, Object: "ConfigMap " + r.opts.SystemNamespace + "/" + r.opts.MeshConfigMap,
					Field: "data." + MeshConfigKey, Message: err.Error()}}
				r.shard.Update(func(tx *model.Txn) { tx.SetErrors(loc, errs) })
				return false
			}
		}
	} else {
		r.st.meshRV = ""
	}
	r.shard.Update(func(tx *model.Txn) { tx.SetErrors(loc, nil) })
	r.mu.Lock()
	old := r.mesh
	r.mesh = m
	r.mu.Unlock()
	if r.opts.OnMeshConfig != nil {
		r.opts.OnMeshConfig(m)
	}
	if !reflect.DeepEqual(old, m) {
		r.log.Info("mesh config", "found", m.Found, "trustDomain", m.TrustDomain, "rootNamespace", m.RootNamespace,
			"outboundTrafficPolicy", m.OutboundTrafficPolicy, "discoverySelectors", len(m.DiscoverySelectors))
	}
	return !selectorsEqual(old.DiscoverySelectors, m.DiscoverySelectors) || old.RootNamespace != m.RootNamespace
}

func selectorsEqual(a, b []labels.Selector) bool {
	return slices.EqualFunc(a, b, func(x, y labels.Selector) bool { return x.String() == y.String() })
}

// setErrors records a location's errors unless they did not change.
func (r *Registry) setErrors(o *ops, loc string, errs []model.ConfigError) {
	if slices.Equal(r.st.errs[loc], errs) {
		return
	}
	if len(errs) == 0 {
		delete(r.st.errs, loc)
	} else {
		r.st.errs[loc] = errs
	}
	o.errs[loc] = errs
}

// parse returns an object's parse, re-parsing only a new version, and
// records its errors. An invalid version keeps the last good one.
func (r *Registry) parse(o *ops, key objKey, raw any, m metav1.Object, spec proto.Message) *parsed {
	if p := r.st.parsed[key]; p != nil && p.uid == m.GetUID() && p.rv == m.GetResourceVersion() {
		return p
	}
	p := parseObject(key, raw, m, spec)
	r.st.parsed[key] = p
	if p.res != nil {
		r.st.good[key] = p
	} else if r.st.good[key] != nil {
		r.log.Warn("invalid object; its last good version keeps serving", "object", key.String(), "errors", len(p.errs))
	} else {
		r.log.Warn("invalid object ignored", "object", key.String(), "errors", len(p.errs))
	}
	r.setErrors(o, key.location(), p.errs)
	return p
}

// forget drops an object that was deleted or left the mesh.
func (r *Registry) forget(o *ops, key objKey) {
	delete(r.st.parsed, key)
	delete(r.st.good, key)
	r.setErrors(o, key.location(), nil)
}

// syncService recomputes one Kubernetes Service and its endpoints.
func (r *Registry) syncService(o *ops, ns, name string) {
	st := r.st
	key := objKey{kind: kindService, ns: ns, name: name}
	skey := serviceKey(ns, name)
	obj, exists, _ := r.svcInf.GetStore().GetByKey(ns + "/" + name)
	if !exists || !r.nsInMesh(ns) {
		r.forget(o, key)
		for sl := range st.svcSlices[key] {
			r.dropSlice(o, objKey{kind: kindEndpointSlice, ns: ns, name: sl})
		}
		delete(st.svcSlices, key)
		if st.kubeSvcs[key] {
			o.delSvcs = append(o.delSvcs, skey)
			delete(st.kubeSvcs, key)
		}
		return
	}
	svc := obj.(*corev1.Service)
	r.parse(o, key, svc, svc, nil)
	g := st.good[key]

	seen := map[string]bool{}
	var eps []*model.Endpoint
	objs, _ := r.sliceInf.GetIndexer().ByIndex(sliceServiceIndex, ns+"/"+name)
	for _, sobj := range objs {
		es := sobj.(*discoveryv1.EndpointSlice)
		seen[es.Name] = true
		sk := objKey{kind: kindEndpointSlice, ns: ns, name: es.Name}
		r.parse(o, sk, es, es, nil)
		sg := st.good[sk]
		if g == nil || sg == nil {
			continue
		}
		c := st.slices[sk]
		if c == nil || c.stale || c.svc != g || c.slice != sg {
			c = r.buildSlice(sk, g, sg, c)
		}
		eps = append(eps, c.eps...)
	}
	for sl := range st.svcSlices[key] {
		if !seen[sl] {
			r.dropSlice(o, objKey{kind: kindEndpointSlice, ns: ns, name: sl})
		}
	}
	st.svcSlices[key] = seen
	if g == nil {
		return // never valid: not in the shard
	}
	results := []*config.Result{g.res}
	if len(g.raw.(*corev1.Service).Spec.Selector) > 0 {
		results = append(results, r.workloadEntries(o, ns)...)
	}
	out := config.Build(RegistryName, results)
	var msvc *model.Service
	for _, s := range out.Services {
		if s.Namespace == skey.Namespace && s.Hostname == skey.Hostname {
			msvc = s
		}
	}
	if msvc == nil {
		return
	}
	eps = append(eps, out.Endpoints[skey]...)
	o.setSvcs = append(o.setSvcs, msvc)
	o.eps[skey] = eps
	st.kubeSvcs[key] = true
}

// buildSlice converts one slice for one version of its Service and
// attaches Pod labels, service accounts and localities.
func (r *Registry) buildSlice(sk objKey, svc, slice *parsed, old *sliceCache) *sliceCache {
	st := r.st
	out := config.Build(RegistryName, []*config.Result{svc.res, slice.res})
	skey := serviceKey(sk.ns, svc.object().Name)
	var raw []*model.Endpoint
	for _, ep := range out.Endpoints[skey] {
		if ep.Source.Kind == kindEndpointSlice {
			raw = append(raw, ep)
		}
	}
	es := slice.raw.(*discoveryv1.EndpointSlice)
	refs := sliceRefs(es)
	if old != nil {
		r.unref(sk, old.refs)
	}
	for _, ref := range refs {
		m := st.podRefs[ref]
		if m == nil {
			m = map[objKey]bool{}
			st.podRefs[ref] = m
		}
		m[sk] = true
	}
	c := &sliceCache{svc: svc, slice: slice, svcName: svc.object().Name, refs: refs, eps: enrich(raw, refs, r.pod)}
	st.slices[sk] = c
	return c
}

func (r *Registry) unref(sk objKey, refs map[string]types.NamespacedName) {
	for _, ref := range refs {
		if m := r.st.podRefs[ref]; m != nil {
			delete(m, sk)
			if len(m) == 0 {
				delete(r.st.podRefs, ref)
			}
		}
	}
}

func (r *Registry) dropSlice(o *ops, sk objKey) {
	if c := r.st.slices[sk]; c != nil {
		r.unref(sk, c.refs)
		delete(r.st.slices, sk)
	}
	r.forget(o, sk)
}

// workloadEntries parses the WorkloadEntries of a namespace and returns the
// valid ones (last good versions included).
func (r *Registry) workloadEntries(o *ops, ns string) []*config.Result {
	inf := r.istioInf[config.KindWorkloadEntry]
	if inf == nil || !r.nsInMesh(ns) {
		r.forgetNames(o, config.KindWorkloadEntry, ns, r.st.weNames, nil)
		return nil
	}
	ik := istioKindByName(config.KindWorkloadEntry)
	names := map[string]bool{}
	var out []*config.Result
	for _, obj := range r.listNS(inf, ns) {
		m, spec, ok := ik.spec(obj)
		if !ok {
			continue
		}
		k := objKey{kind: ik.kind, ns: ns, name: m.GetName()}
		names[k.name] = true
		r.parse(o, k, obj, m, spec)
		if g := r.st.good[k]; g != nil {
			out = append(out, g.res)
		}
	}
	r.forgetNames(o, config.KindWorkloadEntry, ns, r.st.weNames, names)
	return out
}

// forgetNames forgets the objects of kind in ns that were seen before but
// are not in names any more.
func (r *Registry) forgetNames(o *ops, kind, ns string, seen map[string]map[string]bool, names map[string]bool) {
	for n := range seen[ns] {
		if !names[n] {
			r.forget(o, objKey{kind: kind, ns: ns, name: n})
		}
	}
	if len(names) == 0 {
		delete(seen, ns)
	} else {
		seen[ns] = names
	}
}

// syncServiceEntries recomputes the ServiceEntries of a namespace (with the
// WorkloadEntries they select).
func (r *Registry) syncServiceEntries(o *ops, ns string) {
	st := r.st
	inf := r.istioInf[config.KindServiceEntry]
	var results []*config.Result
	names := map[string]bool{}
	if inf != nil && r.nsInMesh(ns) {
		ik := istioKindByName(config.KindServiceEntry)
		for _, obj := range r.listNS(inf, ns) {
			m, spec, ok := ik.spec(obj)
			if !ok {
				continue
			}
			k := objKey{kind: ik.kind, ns: ns, name: m.GetName()}
			names[k.name] = true
			r.parse(o, k, obj, m, spec)
			if g := st.good[k]; g != nil {
				results = append(results, g.res)
			}
		}
	}
	r.forgetNames(o, config.KindServiceEntry, ns, st.seNames, names)
	if len(results) > 0 {
		results = append(results, r.workloadEntries(o, ns)...)
	}
	out := config.Build(RegistryName, results)
	keys := map[model.ServiceKey]bool{}
	for _, s := range out.Services {
		k := model.ServiceKey{Namespace: s.Namespace, Hostname: s.Hostname}
		keys[k] = true
		o.setSvcs = append(o.setSvcs, s)
		o.eps[k] = out.Endpoints[k]
	}
	for k := range st.seKeys[ns] {
		if !keys[k] {
			o.delSvcs = append(o.delSvcs, k)
		}
	}
	if len(keys) == 0 {
		delete(st.seKeys, ns)
	} else {
		st.seKeys[ns] = keys
	}
	// Conflicts found across the namespace's ServiceEntries (warnings).
	for n := range names {
		loc := Location(config.KindServiceEntry, ns, n)
		if p := st.parsed[objKey{kind: config.KindServiceEntry, ns: ns, name: n}]; p != nil {
			errs := append(slices.Clone(p.errs), out.ErrorsFor(loc)...)
			for i := range errs {
				errs[i].Registry = RegistryName
			}
			r.setErrors(o, loc, errs)
		}
	}
}

// syncConfig recomputes one Istio config object.
func (r *Registry) syncConfig(o *ops, key objKey) {
	st := r.st
	ik := istioKindByName(key.kind)
	inf := r.istioInf[key.kind]
	mk := model.ConfigKey{Kind: model.Kind(key.kind), Namespace: key.ns, Name: key.name}
	var obj any
	exists := false
	if inf != nil {
		obj, exists, _ = inf.GetStore().GetByKey(key.ns + "/" + key.name)
	}
	if !exists || !r.nsInMesh(key.ns) {
		r.forget(o, key)
		if st.configs[key] != nil {
			o.delCfgs = append(o.delCfgs, mk)
			delete(st.configs, key)
		}
		return
	}
	m, spec, ok := ik.spec(obj)
	if !ok {
		return
	}
	r.parse(o, key, obj, m, spec)
	g := st.good[key]
	if g == nil || st.configs[key] == g {
		return
	}
	out := config.Build(RegistryName, []*config.Result{g.res})
	if len(out.Configs) != 1 {
		return
	}
	o.setCfgs = append(o.setCfgs, out.Configs[0])
	st.configs[key] = g
}

// checkWorkloadEntry parses a changed WorkloadEntry so that its errors are
// reported even when nothing selects it, and forgets a deleted one.
func (r *Registry) checkWorkloadEntry(o *ops, k objKey) {
	inf := r.istioInf[config.KindWorkloadEntry]
	var obj any
	exists := false
	if inf != nil {
		obj, exists, _ = inf.GetStore().GetByKey(k.ns + "/" + k.name)
	}
	if !exists || !r.nsInMesh(k.ns) {
		r.forget(o, k)
		return
	}
	ik := istioKindByName(config.KindWorkloadEntry)
	if m, spec, ok := ik.spec(obj); ok {
		r.parse(o, k, obj, m, spec)
	}
}
