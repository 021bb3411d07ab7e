package kube

import (
	"encoding/json"
	"fmt"
	"maps"
	"strings"

	"google.golang.org/protobuf/proto"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/sextant-mesh/sextant/model"
	"github.com/sextant-mesh/sextant/registry/config"
)

// objKey names one watched object.
type objKey struct {
	kind, ns, name string
}

func (k objKey) location() string { return Location(k.kind, k.ns, k.name) }

func (k objKey) String() string { return k.kind + " " + k.ns + "/" + k.name }

// Location is where errors about a Kubernetes object point:
// "kube:<Kind>/<namespace>/<name>".
func Location(kind, ns, name string) string {
	return RegistryName + ":" + kind + "/" + ns + "/" + name
}

// parsed is one object as registry/config saw it.
type parsed struct {
	uid  types.UID
	rv   string
	errs []model.ConfigError
	// res holds the object when it is valid; nil otherwise.
	res *config.Result
	// raw is the informer's object (*corev1.Service, *discoveryv1.EndpointSlice,
	// or an istio.io/client-go type).
	raw any
}

func (p *parsed) object() *config.Object { return p.res.Objects[0] }

// istioDoc is the document Kubernetes serves for an Istio object; typed
// informer objects carry no apiVersion and kind.
type istioDoc struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   metav1.ObjectMeta `json:"metadata"`
	Spec       proto.Message     `json:"spec"`
}

// parseObject validates one object with config.Parse and returns it with
// its Spec pointing into raw. key.kind names the kind; meta is raw's
// metadata; spec is, for Istio kinds, a pointer to raw's Spec.
func parseObject(key objKey, raw any, meta metav1.Object, spec proto.Message) *parsed {
	p := &parsed{uid: meta.GetUID(), rv: meta.GetResourceVersion(), raw: raw}
	loc := key.location()
	var doc any
	switch o := raw.(type) {
	case *corev1.Service:
		cp := *o
		cp.TypeMeta = metav1.TypeMeta{APIVersion: "v1", Kind: config.KindService}
		cp.ManagedFields = nil
		doc = &cp
	case *discoveryv1.EndpointSlice:
		cp := *o
		cp.TypeMeta = metav1.TypeMeta{APIVersion: "discovery.k8s.io/v1", Kind: config.KindEndpointSlice}
		cp.ManagedFields = nil
		doc = &cp
	default:
		ik := istioKindByName(key.kind)
		if ik == nil || spec == nil {
			p.errs = []model.ConfigError{{Registry: RegistryName, Location: loc, Object: key.kind + " " + key.ns + "/" + key.name,
				Message: "internal error: unsupported kind"}}
			return p
		}
		m := metav1.ObjectMeta{
			Name: meta.GetName(), Namespace: meta.GetNamespace(), UID: meta.GetUID(),
			ResourceVersion: meta.GetResourceVersion(), Generation: meta.GetGeneration(),
			CreationTimestamp: meta.GetCreationTimestamp(), Labels: meta.GetLabels(), Annotations: meta.GetAnnotations(),
		}
		doc = &istioDoc{APIVersion: ik.apiVersion(), Kind: ik.kind, Metadata: m, Spec: spec}
	}
	js, err := json.Marshal(doc)
	if err != nil {
		p.errs = []model.ConfigError{{Registry: RegistryName, Location: loc, Object: key.kind + " " + key.ns + "/" + key.name,
			Message: fmt.Sprintf("cannot encode the object: %v", err)}}
		return p
	}
	res := config.Parse(loc, js)
	for i := range res.Errors {
		res.Errors[i].Registry = RegistryName
		res.Errors[i].Location = loc
	}
	p.errs = res.Errors
	if !res.Valid() || len(res.Objects) != 1 {
		if len(p.errs) == 0 {
			p.errs = []model.ConfigError{{Registry: RegistryName, Location: loc, Object: key.kind + " " + key.ns + "/" + key.name,
				Message: "object was not decoded"}}
		}
		return p
	}
	o := res.Objects[0]
	o.Location = loc
	// Serve the informer's object rather than the decoded copy.
	switch raw.(type) {
	case *corev1.Service, *discoveryv1.EndpointSlice:
		o.Spec = raw
	default:
		o.Spec = spec
	}
	p.res = res
	return p
}

// Labels and annotations Istio reads from Pods and Nodes.
const (
	// LocalityLabel on a Pod overrides the Node's locality
	// ("region.zone.subzone").
	LocalityLabel = "istio-locality"
	regionLabel   = "topology.kubernetes.io/region"
	zoneLabel     = "topology.kubernetes.io/zone"
	subzoneLabel  = "topology.istio.io/subzone"
)

// nodeLocality returns region/zone/subzone from a Node's labels, "" when
// none is set.
func nodeLocality(l map[string]string) string {
	region, zone, sub := l[regionLabel], l[zoneLabel], l[subzoneLabel]
	switch {
	case sub != "":
		return region + "/" + zone + "/" + sub
	case zone != "":
		return region + "/" + zone
	}
	return region
}

// podLocality reads the istio-locality label ("region.zone.subzone").
func podLocality(l map[string]string) string {
	v := l[LocalityLabel]
	if v == "" {
		return ""
	}
	return strings.ReplaceAll(v, ".", "/")
}

// podInfo is what endpoints take from their Pod.
type podInfo struct {
	labels         map[string]string
	serviceAccount string
	locality       string
}

// enrich returns copies of eps carrying their Pod's labels, service account
// and locality. refs maps an address to the Pod its targetRef names.
func enrich(eps []*model.Endpoint, refs map[string]types.NamespacedName, pod func(types.NamespacedName) (podInfo, bool)) []*model.Endpoint {
	out := make([]*model.Endpoint, 0, len(eps))
	for _, ep := range eps {
		ref, ok := refs[ep.Address]
		if !ok {
			out = append(out, ep)
			continue
		}
		pi, ok := pod(ref)
		if !ok {
			out = append(out, ep)
			continue
		}
		cp := *ep
		cp.Labels = maps.Clone(pi.labels)
		cp.ServiceAccount = pi.serviceAccount
		if pi.locality != "" {
			cp.Locality = pi.locality
		}
		out = append(out, &cp)
	}
	return out
}

// sliceRefs maps each address of a slice to the Pod its targetRef names.
func sliceRefs(es *discoveryv1.EndpointSlice) map[string]types.NamespacedName {
	refs := map[string]types.NamespacedName{}
	for _, ep := range es.Endpoints {
		tr := ep.TargetRef
		if tr == nil || tr.Kind != kindPod || tr.Name == "" {
			continue
		}
		ns := tr.Namespace
		if ns == "" {
			ns = es.Namespace
		}
		for _, a := range ep.Addresses {
			refs[a] = types.NamespacedName{Namespace: ns, Name: tr.Name}
		}
	}
	return refs
}

// ServiceHost is the hostname of a Kubernetes Service.
func ServiceHost(name, ns string) string {
	return name + "." + ns + ".svc." + model.DefaultDomainSuffix
}

func serviceKey(ns, name string) model.ServiceKey {
	return model.ServiceKey{Namespace: ns, Hostname: ServiceHost(name, ns)}
}
