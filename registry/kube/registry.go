package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	istioclient "istio.io/client-go/pkg/clientset/versioned"
	istioinformers "istio.io/client-go/pkg/informers/externalversions"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/sextant-mesh/sextant/model"
)

// RegistryName names this registry in sources, errors and its shard.
const RegistryName = "kube"

// DefaultClusterID is Istio's default cluster name.
const DefaultClusterID = "Kubernetes"

// Index names of the registry's informers.
const (
	sliceServiceIndex = "service" // EndpointSlice: "<ns>/<service>"
	podNodeIndex      = "node"    // Pod: node name
	podIPIndex        = "ip"      // Pod: each pod IP
)

// Options configure a Registry. The zero value is usable.
type Options struct {
	// ClusterID names the cluster (default "Kubernetes").
	ClusterID string
	// DiscoverySelectors limit the namespaces the mesh covers: a namespace
	// whose labels match any of them. When empty, the mesh ConfigMap's
	// discoverySelectors apply; when that has none either, every namespace.
	// The root namespace is always covered.
	DiscoverySelectors []labels.Selector
	// SystemNamespace holds the mesh ConfigMap (default istio-system).
	SystemNamespace string
	// MeshConfigMap is the mesh ConfigMap's name (default istio).
	MeshConfigMap string
	// Resync is the informers' resync period (default 0: none).
	Resync time.Duration
	// Batch is how long the registry waits for more changes before it
	// applies them in one transaction (default 10ms).
	Batch  time.Duration
	Logger *slog.Logger
	// OnMeshConfig, if set, is called from the registry's goroutine when
	// the mesh ConfigMap changes (after the initial sync too).
	OnMeshConfig func(MeshSettings)
}

// Registry serves a Kubernetes cluster's services, endpoints and Istio
// config.
type Registry struct {
	kube    kubernetes.Interface
	istio   istioclient.Interface
	shard   *model.Shard
	opts    Options
	log     *slog.Logger
	running atomic.Bool
	q       queue

	coreFactory informers.SharedInformerFactory
	meshFactory informers.SharedInformerFactory
	svcInf      cache.SharedIndexInformer
	sliceInf    cache.SharedIndexInformer
	podInf      cache.SharedIndexInformer
	nodeInf     cache.SharedIndexInformer
	nsInf       cache.SharedIndexInformer
	meshInf     cache.SharedIndexInformer

	// synced is closed once the initial state is in the shard; istioInf
	// is set before and read-only after.
	synced   chan struct{}
	istioInf map[string]cache.SharedIndexInformer

	mu   sync.RWMutex // guards mesh
	mesh MeshSettings

	st *state // owned by the goroutine running Run
}

// New returns a registry that reads the cluster through kube (and the
// Istio CRDs through istio; nil watches no CRD) and writes to shard.
func New(kube kubernetes.Interface, istio istioclient.Interface, shard *model.Shard, o Options) *Registry {
	if o.ClusterID == "" {
		o.ClusterID = DefaultClusterID
	}
	if o.SystemNamespace == "" {
		o.SystemNamespace = DefaultSystemNamespace
	}
	if o.MeshConfigMap == "" {
		o.MeshConfigMap = DefaultMeshConfigMap
	}
	if o.Batch <= 0 {
		o.Batch = 10 * time.Millisecond
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	r := &Registry{
		kube:   kube,
		istio:  istio,
		shard:  shard,
		opts:   o,
		log:    o.Logger.With("registry", RegistryName, "cluster", o.ClusterID),
		q:      queue{dirty: map[objKey]struct{}{}, notify: make(chan struct{}, 1)},
		synced: make(chan struct{}),
		st:     newState(),
	}
	r.coreFactory = informers.NewSharedInformerFactoryWithOptions(kube, o.Resync, informers.WithTransform(slim))
	core := r.coreFactory.Core().V1()
	r.svcInf = core.Services().Informer()
	r.sliceInf = r.coreFactory.Discovery().V1().EndpointSlices().Informer()
	r.podInf = core.Pods().Informer()
	r.nodeInf = core.Nodes().Informer()
	r.nsInf = core.Namespaces().Informer()
	r.meshFactory = informers.NewSharedInformerFactoryWithOptions(kube, o.Resync,
		informers.WithNamespace(o.SystemNamespace), informers.WithTransform(slim),
		informers.WithTweakListOptions(func(lo *metav1.ListOptions) {
			lo.FieldSelector = fields.OneTermEqualSelector("metadata.name", o.MeshConfigMap).String()
		}))
	r.meshInf = r.meshFactory.Core().V1().ConfigMaps().Informer()
	return r
}

// slim drops what the registry never reads, before objects enter the
// informer caches: managed fields everywhere, and all of a Pod or Node but
// the few fields endpoints take from them.
func slim(obj any) (any, error) {
	switch o := obj.(type) {
	case *corev1.Pod:
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{
				Name: o.Name, Namespace: o.Namespace, UID: o.UID, ResourceVersion: o.ResourceVersion,
				Labels: o.Labels, CreationTimestamp: o.CreationTimestamp, DeletionTimestamp: o.DeletionTimestamp,
			},
			Spec:   corev1.PodSpec{ServiceAccountName: o.Spec.ServiceAccountName, NodeName: o.Spec.NodeName, HostNetwork: o.Spec.HostNetwork},
			Status: corev1.PodStatus{Phase: o.Status.Phase, PodIP: o.Status.PodIP, PodIPs: o.Status.PodIPs},
		}, nil
	case *corev1.Node:
		return &corev1.Node{ObjectMeta: metav1.ObjectMeta{
			Name: o.Name, UID: o.UID, ResourceVersion: o.ResourceVersion, Labels: o.Labels,
		}}, nil
	case cache.DeletedFinalStateUnknown:
		return o, nil
	}
	if m, err := meta.Accessor(obj); err == nil {
		m.SetManagedFields(nil)
	}
	return obj, nil
}

// Mesh returns the settings of the mesh ConfigMap as last read.
func (r *Registry) Mesh() MeshSettings {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.mesh
}

// Synced is closed once the registry's initial state is in the shard.
func (r *Registry) Synced() <-chan struct{} { return r.synced }

// InMesh reports whether the mesh covers a namespace (discovery
// selectors). It is safe to call from any goroutine.
func (r *Registry) InMesh(ns *corev1.Namespace) bool {
	return r.selected(ns.Name, ns.Labels, true)
}

func (r *Registry) selected(name string, l map[string]string, exists bool) bool {
	r.mu.RLock()
	sels, root := r.opts.DiscoverySelectors, r.mesh.RootNamespace
	if len(sels) == 0 {
		sels = r.mesh.DiscoverySelectors
	}
	r.mu.RUnlock()
	if root == "" {
		root = model.DefaultRootNamespace
	}
	if name == root || len(sels) == 0 {
		return true
	}
	return exists && selectorsMatch(sels, l)
}

// nsInMesh evaluates a namespace by name from the informer cache.
func (r *Registry) nsInMesh(name string) bool {
	obj, ok, _ := r.nsInf.GetStore().GetByKey(name)
	if !ok {
		return r.selected(name, nil, false)
	}
	ns := obj.(*corev1.Namespace)
	return r.selected(name, ns.Labels, true)
}

// Run starts the informers, applies the initial state, marks the shard
// synced and follows changes until ctx is cancelled, when it returns nil.
// While the API server is unreachable the informers retry and the shard
// keeps the last state. Run may be called only once.
func (r *Registry) Run(ctx context.Context) error {
	if !r.running.CompareAndSwap(false, true) {
		return errors.New("kube registry: Run called more than once")
	}
	if err := r.addCoreHandlers(); err != nil {
		return fmt.Errorf("kube registry: %w", err)
	}
	var istioFactory istioinformers.SharedInformerFactory
	r.istioInf = map[string]cache.SharedIndexInformer{}
	if r.istio != nil {
		kinds, err := r.servedIstioKinds(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("kube registry: %w", err)
		}
		istioFactory = istioinformers.NewSharedInformerFactoryWithOptions(r.istio, r.opts.Resync, istioinformers.WithTransform(slim))
		for _, k := range kinds {
			inf := k.informer(istioFactory)
			r.istioInf[k.kind] = inf
		}
	}
	regs, err := r.addIstioHandlers()
	if err != nil {
		return fmt.Errorf("kube registry: %w", err)
	}
	r.coreFactory.Start(ctx.Done())
	r.meshFactory.Start(ctx.Done())
	if istioFactory != nil {
		istioFactory.Start(ctx.Done())
	}
	defer func() {
		// Stops and waits for every informer goroutine.
		r.coreFactory.Shutdown()
		r.meshFactory.Shutdown()
		if istioFactory != nil {
			istioFactory.Shutdown()
		}
	}()
	start := time.Now()
	r.log.Info("waiting for the initial list of every watched kind")
	if !cache.WaitForCacheSync(ctx.Done(), append(r.st.regs, regs...)...) {
		return nil // cancelled
	}
	r.process(r.q.drain())
	r.shard.MarkSynced()
	close(r.synced)
	r.log.Info("initial sync done", "took", time.Since(start).Round(time.Millisecond),
		"services", len(r.st.kubeSvcs), "configs", len(r.st.configs))

	for {
		select {
		case <-ctx.Done():
			return nil
		case <-r.q.notify:
		}
		t := time.NewTimer(r.opts.Batch)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		r.process(r.q.drain())
	}
}

// servedIstioKinds returns the Istio kinds whose CRDs the API server
// serves, retrying while it cannot be reached.
func (r *Registry) servedIstioKinds(ctx context.Context) ([]*istioKind, error) {
	// 0.5 s doubling to 10 s, then 10 s for as long as it takes.
	backoff := wait.Backoff{Duration: 500 * time.Millisecond, Factor: 2, Cap: 10 * time.Second, Steps: math.MaxInt32}
	for {
		kinds, err := r.discoverIstioKinds()
		if err == nil {
			return kinds, nil
		}
		r.log.Warn("cannot list the API server's resources; retrying", "err", err)
		t := time.NewTimer(backoff.Step())
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}

func (r *Registry) discoverIstioKinds() ([]*istioKind, error) {
	served := map[string]bool{}
	for _, gv := range []string{"networking.istio.io/v1", "security.istio.io/v1", "telemetry.istio.io/v1"} {
		list, err := r.kube.Discovery().ServerResourcesForGroupVersion(gv)
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("discover %s: %w", gv, err)
		}
		for _, res := range list.APIResources {
			served[gv+"/"+res.Name] = true
		}
	}
	var out []*istioKind
	var missing []string
	for _, k := range istioKinds {
		if served[k.apiVersion()+"/"+k.resource] {
			out = append(out, k)
		} else {
			missing = append(missing, k.resource+"."+k.group)
		}
	}
	if len(missing) > 0 {
		r.log.Warn("Istio CRDs not installed; those kinds are not watched (install deploy/crds and restart)", "missing", missing)
	}
	return out, nil
}

// ---- event handlers: they only record what changed ----

type queue struct {
	mu     sync.Mutex
	dirty  map[objKey]struct{}
	notify chan struct{}
}

func (q *queue) add(keys ...objKey) {
	if len(keys) == 0 {
		return
	}
	q.mu.Lock()
	for _, k := range keys {
		q.dirty[k] = struct{}{}
	}
	q.mu.Unlock()
	select {
	case q.notify <- struct{}{}:
	default:
	}
}

func (q *queue) drain() map[objKey]struct{} {
	q.mu.Lock()
	defer q.mu.Unlock()
	d := q.dirty
	q.dirty = map[objKey]struct{}{}
	return d
}

func unwrap(obj any) any {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		return t.Obj
	}
	return obj
}

// handler records keys(obj) for adds and deletes, and for updates when
// changed(old, new) (default: the resourceVersion changed).
func (r *Registry) handler(keys func(obj any) []objKey, changed func(old, new any) bool) cache.ResourceEventHandler {
	return cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { r.q.add(keys(obj)...) },
		UpdateFunc: func(old, obj any) {
			if changed != nil {
				if !changed(old, obj) {
					return
				}
			} else if rvOf(old) == rvOf(obj) {
				return // a resync: nothing changed
			}
			r.q.add(append(keys(old), keys(obj)...)...)
		},
		DeleteFunc: func(obj any) { r.q.add(keys(unwrap(obj))...) },
	}
}

func rvOf(obj any) string {
	m, err := meta.Accessor(obj)
	if err != nil {
		return ""
	}
	return m.GetResourceVersion()
}

func metaKey(kind string) func(obj any) []objKey {
	return func(obj any) []objKey {
		m, err := meta.Accessor(obj)
		if err != nil {
			return nil
		}
		return []objKey{{kind: kind, ns: m.GetNamespace(), name: m.GetName()}}
	}
}

func (r *Registry) addCoreHandlers() error {
	if err := r.sliceInf.AddIndexers(cache.Indexers{sliceServiceIndex: func(obj any) ([]string, error) {
		es, ok := obj.(*discoveryv1.EndpointSlice)
		if !ok || es.Labels[discoveryv1.LabelServiceName] == "" {
			return nil, nil
		}
		return []string{es.Namespace + "/" + es.Labels[discoveryv1.LabelServiceName]}, nil
	}}); err != nil {
		return fmt.Errorf("index EndpointSlices: %w", err)
	}
	if err := r.podInf.AddIndexers(cache.Indexers{
		podNodeIndex: func(obj any) ([]string, error) {
			p, ok := obj.(*corev1.Pod)
			if !ok || p.Spec.NodeName == "" {
				return nil, nil
			}
			return []string{p.Spec.NodeName}, nil
		},
		podIPIndex: func(obj any) ([]string, error) {
			p, ok := obj.(*corev1.Pod)
			if !ok || p.Spec.HostNetwork {
				return nil, nil
			}
			var ips []string
			for _, ip := range p.Status.PodIPs {
				ips = append(ips, ip.IP)
			}
			if len(ips) == 0 && p.Status.PodIP != "" {
				ips = append(ips, p.Status.PodIP)
			}
			return ips, nil
		},
	}); err != nil {
		return fmt.Errorf("index Pods: %w", err)
	}
	sliceKeys := func(obj any) []objKey {
		es, ok := obj.(*discoveryv1.EndpointSlice)
		if !ok || es.Labels[discoveryv1.LabelServiceName] == "" {
			return nil
		}
		return []objKey{{kind: kindService, ns: es.Namespace, name: es.Labels[discoveryv1.LabelServiceName]}}
	}
	podChanged := func(old, obj any) bool {
		a, ok1 := old.(*corev1.Pod)
		b, ok2 := obj.(*corev1.Pod)
		return !ok1 || !ok2 || !maps.Equal(a.Labels, b.Labels) || a.Spec.ServiceAccountName != b.Spec.ServiceAccountName ||
			a.Spec.NodeName != b.Spec.NodeName || a.Status.PodIP != b.Status.PodIP
	}
	labelsChanged := func(old, obj any) bool {
		a, err1 := meta.Accessor(old)
		b, err2 := meta.Accessor(obj)
		return err1 != nil || err2 != nil || !maps.Equal(a.GetLabels(), b.GetLabels())
	}
	for _, h := range []struct {
		inf     cache.SharedIndexInformer
		keys    func(any) []objKey
		changed func(old, new any) bool
	}{
		{r.svcInf, metaKey(kindService), nil},
		{r.sliceInf, sliceKeys, nil},
		{r.podInf, metaKey(kindPod), podChanged},
		{r.nodeInf, metaKey(kindNode), labelsChanged},
		{r.nsInf, metaKey(kindNamespace), labelsChanged},
		{r.meshInf, func(any) []objKey { return []objKey{{kind: kindMeshConfig}} }, nil},
	} {
		reg, err := h.inf.AddEventHandler(r.handler(h.keys, h.changed))
		if err != nil {
			return fmt.Errorf("watch: %w", err)
		}
		r.st.regs = append(r.st.regs, reg.HasSynced)
	}
	return nil
}

func (r *Registry) addIstioHandlers() ([]cache.InformerSynced, error) {
	var regs []cache.InformerSynced
	for _, k := range istioKinds {
		inf := r.istioInf[k.kind]
		if inf == nil {
			continue
		}
		keys := metaKey(k.kind)
		if k.kind == kindServiceEntryNS {
			// ServiceEntries are converted per namespace (hosts may
			// collide); one key per namespace.
			keys = func(obj any) []objKey {
				m, err := meta.Accessor(obj)
				if err != nil {
					return nil
				}
				return []objKey{{kind: kindServiceEntryNS, ns: m.GetNamespace()}}
			}
		}
		reg, err := inf.AddEventHandler(r.handler(keys, nil))
		if err != nil {
			return nil, fmt.Errorf("watch %s: %w", k.kind, err)
		}
		regs = append(regs, reg.HasSynced)
	}
	return regs, nil
}

// ---- reading the caches ----

// pod returns what endpoints take from a Pod and its Node.
func (r *Registry) pod(ref types.NamespacedName) (podInfo, bool) {
	obj, ok, _ := r.podInf.GetStore().GetByKey(ref.Namespace + "/" + ref.Name)
	if !ok {
		return podInfo{}, false
	}
	p := obj.(*corev1.Pod)
	pi := podInfo{labels: p.Labels, serviceAccount: p.Spec.ServiceAccountName, locality: podLocality(p.Labels)}
	if pi.locality == "" && p.Spec.NodeName != "" {
		if nobj, ok, _ := r.nodeInf.GetStore().GetByKey(p.Spec.NodeName); ok {
			pi.locality = nodeLocality(nobj.(*corev1.Node).Labels)
		}
	}
	return pi, true
}

// PodInfo describes the workload behind an IP.
type PodInfo struct {
	Namespace, Name string
	Labels          map[string]string
	ServiceAccount  string
	Node            string
	Locality        string
}

// PodByIP returns the Pod that has ip, from the informer cache (an index,
// not a scan). Host-network pods are not indexed. The second result is
// false before the initial sync or when no Pod has the IP.
func (r *Registry) PodByIP(ip string) (PodInfo, bool) {
	objs, err := r.podInf.GetIndexer().ByIndex(podIPIndex, ip)
	if err != nil || len(objs) == 0 {
		return PodInfo{}, false
	}
	// Prefer a running pod over one that finished with the same IP.
	slices.SortFunc(objs, func(a, b any) int {
		pa, pb := a.(*corev1.Pod), b.(*corev1.Pod)
		ra, rb := pa.Status.Phase == corev1.PodRunning, pb.Status.Phase == corev1.PodRunning
		switch {
		case ra && !rb:
			return -1
		case rb && !ra:
			return 1
		}
		return pb.CreationTimestamp.Compare(pa.CreationTimestamp.Time)
	})
	p := objs[0].(*corev1.Pod)
	pi, _ := r.pod(types.NamespacedName{Namespace: p.Namespace, Name: p.Name})
	return PodInfo{Namespace: p.Namespace, Name: p.Name, Labels: maps.Clone(p.Labels), ServiceAccount: p.Spec.ServiceAccountName,
		Node: p.Spec.NodeName, Locality: pi.locality}, true
}
