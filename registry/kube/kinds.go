package kube

import (
	"google.golang.org/protobuf/proto"
	istionet "istio.io/client-go/pkg/apis/networking/v1"
	istiosec "istio.io/client-go/pkg/apis/security/v1"
	istiotel "istio.io/client-go/pkg/apis/telemetry/v1"
	istioinformers "istio.io/client-go/pkg/informers/externalversions"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/sextant-mesh/sextant/model"
	"github.com/sextant-mesh/sextant/registry/config"
)

// Kinds of the core API the registry watches, as they appear in keys.
const (
	kindService       = config.KindService
	kindEndpointSlice = config.KindEndpointSlice
	kindPod           = "Pod"
	kindNode          = "Node"
	kindNamespace     = "Namespace"
	kindMeshConfig    = "MeshConfig"
)

// istioKind describes one watched Istio CRD.
type istioKind struct {
	kind     string // ServiceEntry, …
	group    string // networking.istio.io
	version  string // v1
	resource string // plural, to check the CRD is served
	informer func(istioinformers.SharedInformerFactory) cache.SharedIndexInformer
	// spec returns the object's metadata and a pointer to its Spec (the
	// istio.io/api message), or ok=false for a foreign type.
	spec func(obj any) (meta metav1.Object, spec proto.Message, ok bool)
	// isConfig: the kind becomes a model.Config (otherwise it feeds
	// services and endpoints).
	isConfig bool
}

func (k *istioKind) apiVersion() string { return k.group + "/" + k.version }

// istioKinds are the Istio kinds Sextant serves, in the order Istio lists
// them.
var istioKinds = []*istioKind{
	{
		kind: config.KindServiceEntry, group: "networking.istio.io", version: "v1", resource: "serviceentries",
		informer: func(f istioinformers.SharedInformerFactory) cache.SharedIndexInformer {
			return f.Networking().V1().ServiceEntries().Informer()
		},
		spec: func(o any) (metav1.Object, proto.Message, bool) {
			x, ok := o.(*istionet.ServiceEntry)
			if !ok {
				return nil, nil, false
			}
			return x, &x.Spec, true
		},
	},
	{
		kind: config.KindWorkloadEntry, group: "networking.istio.io", version: "v1", resource: "workloadentries",
		informer: func(f istioinformers.SharedInformerFactory) cache.SharedIndexInformer {
			return f.Networking().V1().WorkloadEntries().Informer()
		},
		spec: func(o any) (metav1.Object, proto.Message, bool) {
			x, ok := o.(*istionet.WorkloadEntry)
			if !ok {
				return nil, nil, false
			}
			return x, &x.Spec, true
		},
	},
	{
		kind: string(model.KindDestinationRule), group: "networking.istio.io", version: "v1", resource: "destinationrules", isConfig: true,
		informer: func(f istioinformers.SharedInformerFactory) cache.SharedIndexInformer {
			return f.Networking().V1().DestinationRules().Informer()
		},
		spec: func(o any) (metav1.Object, proto.Message, bool) {
			x, ok := o.(*istionet.DestinationRule)
			if !ok {
				return nil, nil, false
			}
			return x, &x.Spec, true
		},
	},
	{
		kind: string(model.KindVirtualService), group: "networking.istio.io", version: "v1", resource: "virtualservices", isConfig: true,
		informer: func(f istioinformers.SharedInformerFactory) cache.SharedIndexInformer {
			return f.Networking().V1().VirtualServices().Informer()
		},
		spec: func(o any) (metav1.Object, proto.Message, bool) {
			x, ok := o.(*istionet.VirtualService)
			if !ok {
				return nil, nil, false
			}
			return x, &x.Spec, true
		},
	},
	{
		kind: string(model.KindSidecar), group: "networking.istio.io", version: "v1", resource: "sidecars", isConfig: true,
		informer: func(f istioinformers.SharedInformerFactory) cache.SharedIndexInformer {
			return f.Networking().V1().Sidecars().Informer()
		},
		spec: func(o any) (metav1.Object, proto.Message, bool) {
			x, ok := o.(*istionet.Sidecar)
			if !ok {
				return nil, nil, false
			}
			return x, &x.Spec, true
		},
	},
	{
		kind: string(model.KindPeerAuthentication), group: "security.istio.io", version: "v1", resource: "peerauthentications", isConfig: true,
		informer: func(f istioinformers.SharedInformerFactory) cache.SharedIndexInformer {
			return f.Security().V1().PeerAuthentications().Informer()
		},
		spec: func(o any) (metav1.Object, proto.Message, bool) {
			x, ok := o.(*istiosec.PeerAuthentication)
			if !ok {
				return nil, nil, false
			}
			return x, &x.Spec, true
		},
	},
	{
		kind: string(model.KindAuthorizationPolicy), group: "security.istio.io", version: "v1", resource: "authorizationpolicies", isConfig: true,
		informer: func(f istioinformers.SharedInformerFactory) cache.SharedIndexInformer {
			return f.Security().V1().AuthorizationPolicies().Informer()
		},
		spec: func(o any) (metav1.Object, proto.Message, bool) {
			x, ok := o.(*istiosec.AuthorizationPolicy)
			if !ok {
				return nil, nil, false
			}
			return x, &x.Spec, true
		},
	},
	{
		kind: string(model.KindRequestAuthentication), group: "security.istio.io", version: "v1", resource: "requestauthentications", isConfig: true,
		informer: func(f istioinformers.SharedInformerFactory) cache.SharedIndexInformer {
			return f.Security().V1().RequestAuthentications().Informer()
		},
		spec: func(o any) (metav1.Object, proto.Message, bool) {
			x, ok := o.(*istiosec.RequestAuthentication)
			if !ok {
				return nil, nil, false
			}
			return x, &x.Spec, true
		},
	},
	{
		kind: string(model.KindTelemetry), group: "telemetry.istio.io", version: "v1", resource: "telemetries", isConfig: true,
		informer: func(f istioinformers.SharedInformerFactory) cache.SharedIndexInformer {
			return f.Telemetry().V1().Telemetries().Informer()
		},
		spec: func(o any) (metav1.Object, proto.Message, bool) {
			x, ok := o.(*istiotel.Telemetry)
			if !ok {
				return nil, nil, false
			}
			return x, &x.Spec, true
		},
	},
}

func istioKindByName(kind string) *istioKind {
	for _, k := range istioKinds {
		if k.kind == kind {
			return k
		}
	}
	return nil
}
