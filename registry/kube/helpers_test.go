package kube

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	istionet "istio.io/client-go/pkg/apis/networking/v1"
	istiosec "istio.io/client-go/pkg/apis/security/v1"
	istioclient "istio.io/client-go/pkg/clientset/versioned"
	istiofake "istio.io/client-go/pkg/clientset/versioned/fake"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	fakediscovery "k8s.io/client-go/discovery/fake"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/sextant-mesh/sextant/model"
)

// env is a registry on fake clientsets. The fake tracker does not set
// resourceVersions, so every write goes through env, which does.
type env struct {
	t     testing.TB
	kube  *fake.Clientset
	istio *istiofake.Clientset
	agg   *model.Aggregator
	reg   *Registry
	rv    atomic.Int64
	ctx   context.Context
}

func testLogger() *slog.Logger {
	if os.Getenv("SEXTANT_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func istioResources() []*metav1.APIResourceList {
	byGV := map[string]*metav1.APIResourceList{}
	var out []*metav1.APIResourceList
	for _, k := range istioKinds {
		l := byGV[k.apiVersion()]
		if l == nil {
			l = &metav1.APIResourceList{GroupVersion: k.apiVersion()}
			byGV[k.apiVersion()] = l
			out = append(out, l)
		}
		l.APIResources = append(l.APIResources, metav1.APIResource{Name: k.resource, Kind: k.kind, Namespaced: true})
	}
	return out
}

// newEnv creates the clients with objs; start runs the registry.
func newEnv(t testing.TB) *env {
	e := &env{t: t, kube: fake.NewClientset(), istio: istiofake.NewSimpleClientset(), agg: model.NewAggregator()}
	e.kube.Discovery().(*fakediscovery.FakeDiscovery).Resources = istioResources()
	e.rv.Store(100)
	return e
}

func (e *env) start(o Options) {
	e.t.Helper()
	if o.Logger == nil {
		o.Logger = testLogger()
	}
	if o.Batch == 0 {
		o.Batch = time.Millisecond
	}
	var ic istioclient.Interface = e.istio
	e.reg = New(e.kube, ic, e.agg.NewShard(RegistryName), o)
	ctx, cancel := context.WithCancel(context.Background())
	e.ctx = ctx
	done := make(chan error, 1)
	go func() { done <- e.reg.Run(ctx) }()
	e.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			e.t.Errorf("Run: %v", err)
		}
	})
	select {
	case <-e.reg.Synced():
	case <-time.After(60 * time.Second):
		e.t.Fatal("registry did not sync")
	}
}

func (e *env) nextRV() string { return strconv.FormatInt(e.rv.Add(1), 10) }

// apply creates or updates a core object.
func (e *env) apply(obj metav1.Object) {
	e.t.Helper()
	obj.SetResourceVersion(e.nextRV())
	if ts := obj.GetCreationTimestamp(); ts.IsZero() {
		obj.SetCreationTimestamp(metav1.NewTime(time.Unix(1700000000, 0)))
	}
	ctx := context.Background()
	var err error
	switch o := obj.(type) {
	case *corev1.Service:
		_, err = e.kube.CoreV1().Services(o.Namespace).Update(ctx, o, metav1.UpdateOptions{})
		if isNotFound(err) {
			_, err = e.kube.CoreV1().Services(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		}
	case *discoveryv1.EndpointSlice:
		_, err = e.kube.DiscoveryV1().EndpointSlices(o.Namespace).Update(ctx, o, metav1.UpdateOptions{})
		if isNotFound(err) {
			_, err = e.kube.DiscoveryV1().EndpointSlices(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		}
	case *corev1.Pod:
		_, err = e.kube.CoreV1().Pods(o.Namespace).Update(ctx, o, metav1.UpdateOptions{})
		if isNotFound(err) {
			_, err = e.kube.CoreV1().Pods(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		}
	case *corev1.Node:
		_, err = e.kube.CoreV1().Nodes().Update(ctx, o, metav1.UpdateOptions{})
		if isNotFound(err) {
			_, err = e.kube.CoreV1().Nodes().Create(ctx, o, metav1.CreateOptions{})
		}
	case *corev1.Namespace:
		_, err = e.kube.CoreV1().Namespaces().Update(ctx, o, metav1.UpdateOptions{})
		if isNotFound(err) {
			_, err = e.kube.CoreV1().Namespaces().Create(ctx, o, metav1.CreateOptions{})
		}
	case *corev1.ConfigMap:
		_, err = e.kube.CoreV1().ConfigMaps(o.Namespace).Update(ctx, o, metav1.UpdateOptions{})
		if isNotFound(err) {
			_, err = e.kube.CoreV1().ConfigMaps(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		}
	default:
		err = e.applyIstio(obj)
	}
	if err != nil {
		e.t.Fatalf("apply %T %s/%s: %v", obj, obj.GetNamespace(), obj.GetName(), err)
	}
}

// waitFor builds snapshots until cond returns "" (the registry applies
// changes asynchronously).
func (e *env) waitFor(cond func(*model.Snapshot) string) *model.Snapshot {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		snap, _ := e.agg.Build()
		if last = cond(snap); last == "" {
			return snap
		}
		time.Sleep(5 * time.Millisecond)
	}
	e.t.Fatalf("condition not met: %s", last)
	return nil
}

func ptr[T any](v T) *T { return &v }

func service(ns, name string, selector map[string]string, ports ...corev1.ServicePort) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec:       corev1.ServiceSpec{ClusterIP: "10.0.0.10", ClusterIPs: []string{"10.0.0.10"}, Selector: selector, Ports: ports},
	}
}

func port(name string, n int32, target int) corev1.ServicePort {
	return corev1.ServicePort{Name: name, Port: n, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt(target)}
}

type sliceEP struct {
	addr, pod            string
	ready, serving, term *bool
	zone                 string
}

func slice(ns, name, svc string, portName string, portNum int32, eps ...sliceEP) *discoveryv1.EndpointSlice {
	es := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr(portName), Port: ptr(portNum), Protocol: ptr(corev1.ProtocolTCP)}},
	}
	for _, ep := range eps {
		d := discoveryv1.Endpoint{
			Addresses:  []string{ep.addr},
			Conditions: discoveryv1.EndpointConditions{Ready: ep.ready, Serving: ep.serving, Terminating: ep.term},
		}
		if ep.pod != "" {
			d.TargetRef = &corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: ep.pod}
		}
		if ep.zone != "" {
			d.Zone = ptr(ep.zone)
		}
		es.Endpoints = append(es.Endpoints, d)
	}
	return es
}

func pod(ns, name, ip, node, sa string, labels map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Spec:       corev1.PodSpec{ServiceAccountName: sa, NodeName: node},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}}},
	}
}

func isNotFound(err error) bool { return apierrors.IsNotFound(err) }

func (e *env) applyIstio(obj metav1.Object) error {
	ctx := context.Background()
	n := e.istio.NetworkingV1()
	s := e.istio.SecurityV1()
	var err error
	switch o := obj.(type) {
	case *istionet.ServiceEntry:
		if _, err = n.ServiceEntries(o.Namespace).Update(ctx, o, metav1.UpdateOptions{}); isNotFound(err) {
			_, err = n.ServiceEntries(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		}
	case *istionet.WorkloadEntry:
		if _, err = n.WorkloadEntries(o.Namespace).Update(ctx, o, metav1.UpdateOptions{}); isNotFound(err) {
			_, err = n.WorkloadEntries(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		}
	case *istionet.VirtualService:
		if _, err = n.VirtualServices(o.Namespace).Update(ctx, o, metav1.UpdateOptions{}); isNotFound(err) {
			_, err = n.VirtualServices(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		}
	case *istionet.DestinationRule:
		if _, err = n.DestinationRules(o.Namespace).Update(ctx, o, metav1.UpdateOptions{}); isNotFound(err) {
			_, err = n.DestinationRules(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		}
	case *istionet.Sidecar:
		if _, err = n.Sidecars(o.Namespace).Update(ctx, o, metav1.UpdateOptions{}); isNotFound(err) {
			_, err = n.Sidecars(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		}
	case *istiosec.PeerAuthentication:
		if _, err = s.PeerAuthentications(o.Namespace).Update(ctx, o, metav1.UpdateOptions{}); isNotFound(err) {
			_, err = s.PeerAuthentications(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		}
	case *istiosec.AuthorizationPolicy:
		if _, err = s.AuthorizationPolicies(o.Namespace).Update(ctx, o, metav1.UpdateOptions{}); isNotFound(err) {
			_, err = s.AuthorizationPolicies(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		}
	default:
		return fmt.Errorf("unsupported %T", obj)
	}
	return err
}

// TestMain turns client-go's WatchListClient off: istio.io/client-go's fake
// clientset does not send the bookmark streaming lists wait for.
func TestMain(m *testing.M) {
	os.Setenv("KUBE_FEATURE_WatchListClient", "false")
	os.Exit(m.Run())
}
