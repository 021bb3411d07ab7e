package kube

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	networking "istio.io/api/networking/v1alpha3"
	securityapi "istio.io/api/security/v1beta1"
	istionet "istio.io/client-go/pkg/apis/networking/v1"
	istiosec "istio.io/client-go/pkg/apis/security/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	fakediscovery "k8s.io/client-go/discovery/fake"

	"github.com/sextant-mesh/sextant/model"
)

const echoHost = "echo.default.svc.cluster.local"

func epSummary(es *model.EndpointSet) string {
	if es == nil {
		return "<none>"
	}
	var out []string
	for _, ep := range es.Endpoints {
		out = append(out, fmt.Sprintf("%s %s sa=%s loc=%s app=%s state=%s", ep.Address, ep.Health, ep.ServiceAccount, ep.Locality,
			ep.Labels["app"], ep.Labels[model.TrafficStateLabel]))
	}
	return strings.Join(out, "; ")
}

func TestTranslateServiceEndpointsPodsNodes(t *testing.T) {
	e := newEnv(t)
	e.apply(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", Labels: map[string]string{
		regionLabel: "us-east", zoneLabel: "us-east-1a", subzoneLabel: "rack1"}}})
	e.apply(pod("default", "echo-1", "10.1.0.1", "n1", "echo-sa", map[string]string{"app": "echo", "version": "v1"}))
	e.apply(pod("default", "echo-2", "10.1.0.2", "n1", "echo-sa", map[string]string{"app": "echo", "version": "v2", LocalityLabel: "eu.eu-1.r9"}))
	svc := service("default", "echo", map[string]string{"app": "echo"}, port("http-web", 80, 8080), port("grpc", 7070, 7070))
	svc.Spec.Ports = append(svc.Spec.Ports, corev1.ServicePort{Name: "tcp-x", Port: 9000, AppProtocol: ptr("http2"), Protocol: corev1.ProtocolTCP})
	e.apply(svc)
	e.apply(slice("default", "echo-abc", "echo", "http-web", 8080,
		sliceEP{addr: "10.1.0.1", pod: "echo-1"},
		sliceEP{addr: "10.1.0.2", pod: "echo-2", ready: ptr(false), serving: ptr(true), term: ptr(true)},
		sliceEP{addr: "10.1.0.3", ready: ptr(false), zone: "z9"},
	))
	e.start(Options{})

	snap := e.waitFor(func(s *model.Snapshot) string {
		if es := s.Endpoints(echoHost); es == nil || len(es.Endpoints) != 3 {
			return "endpoints: " + epSummary(es)
		}
		return ""
	})
	if !snap.Synced {
		t.Error("snapshot not synced")
	}
	s := snap.Service(echoHost)
	if s == nil || len(s.Ports) != 3 {
		t.Fatalf("service: %+v", s)
	}
	want := map[uint32]model.Protocol{80: model.ProtocolHTTP, 7070: model.ProtocolGRPC, 9000: model.ProtocolHTTP2}
	for _, p := range s.Ports {
		if want[p.Number] != p.Protocol {
			t.Errorf("port %d: protocol %s, want %s", p.Number, p.Protocol, want[p.Number])
		}
	}
	if s.Source.Registry != RegistryName || s.Source.Location != "kube:Service/default/echo" || len(s.Addresses) != 1 {
		t.Errorf("service source/addresses: %+v %v", s.Source, s.Addresses)
	}
	got := epSummary(snap.Endpoints(echoHost))
	wantEPs := "10.1.0.1 HEALTHY sa=echo-sa loc=us-east/us-east-1a/rack1 app=echo state=; " +
		"10.1.0.2 DRAINING sa=echo-sa loc=eu/eu-1/r9 app=echo state=; " +
		"10.1.0.3 UNHEALTHY sa= loc=/z9 app= state="
	if got != wantEPs {
		t.Errorf("endpoints:\n got %s\nwant %s", got, wantEPs)
	}
	// The xDS side matches a proxy to its workload by IP.
	inst := snap.InstancesByIP("10.1.0.1")
	if len(inst) != 1 || inst[0].Endpoint.Labels["version"] != "v1" {
		t.Errorf("InstancesByIP: %+v", inst)
	}
	if pi, ok := e.reg.PodByIP("10.1.0.2"); !ok || pi.Name != "echo-2" || pi.ServiceAccount != "echo-sa" || pi.Locality != "eu/eu-1/r9" {
		t.Errorf("PodByIP: %+v %v", pi, ok)
	}
}

func TestHeadlessAndExternalName(t *testing.T) {
	e := newEnv(t)
	h := service("default", "db", map[string]string{"app": "db"}, port("tcp", 5432, 5432))
	h.Spec.ClusterIP, h.Spec.ClusterIPs = corev1.ClusterIPNone, []string{corev1.ClusterIPNone}
	e.apply(h)
	e.apply(slice("default", "db-1", "db", "tcp", 5432, sliceEP{addr: "10.2.0.1"}))
	x := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "ext", Namespace: "default"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "example.com", Ports: []corev1.ServicePort{port("https", 443, 443)}}}
	e.apply(x)
	e.start(Options{})
	e.waitFor(func(s *model.Snapshot) string {
		db, ext := s.Service("db.default.svc.cluster.local"), s.Service("ext.default.svc.cluster.local")
		switch {
		case db == nil || ext == nil:
			return "services missing"
		case db.Resolution != model.Passthrough || len(db.Addresses) != 0:
			return fmt.Sprintf("headless: %v %v", db.Resolution, db.Addresses)
		case ext.Resolution != model.DNSLB || !ext.MeshExternal:
			return fmt.Sprintf("externalname: %v", ext.Resolution)
		case epSummary(s.Endpoints("ext.default.svc.cluster.local")) != "example.com HEALTHY sa= loc= app= state=":
			return "externalname endpoints: " + epSummary(s.Endpoints("ext.default.svc.cluster.local"))
		case epSummary(s.Endpoints("db.default.svc.cluster.local")) != "10.2.0.1 HEALTHY sa= loc= app= state=":
			return "headless endpoints: " + epSummary(s.Endpoints("db.default.svc.cluster.local"))
		}
		return ""
	})
}

// An EndpointSlice change touches only that service's endpoints: one
// endpoint event, no service or config event.
func TestSliceChangeIsIncremental(t *testing.T) {
	e := newEnv(t)
	for i := range 20 {
		name := fmt.Sprintf("svc%d", i)
		e.apply(service("default", name, map[string]string{"app": name}, port("http", 80, 8080)))
		e.apply(slice("default", name+"-1", name, "http", 8080, sliceEP{addr: fmt.Sprintf("10.3.0.%d", i+1)}))
	}
	e.start(Options{})
	e.waitFor(func(s *model.Snapshot) string {
		if len(s.Services()) != 20 {
			return fmt.Sprintf("%d services", len(s.Services()))
		}
		return ""
	})
	e.agg.Build() // drop the initial events
	e.apply(slice("default", "svc7-1", "svc7", "http", 8080, sliceEP{addr: "10.3.0.8"}, sliceEP{addr: "10.3.1.8"}))
	var evs []model.Event
	deadline := time.Now().Add(10 * time.Second)
	for {
		snap, ev := e.agg.Build()
		evs = append(evs, ev...)
		if es := snap.Endpoints("svc7.default.svc.cluster.local"); es != nil && len(es.Endpoints) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("svc7 endpoints not updated")
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	_, ev := e.agg.Build()
	evs = append(evs, ev...)
	if len(evs) != 1 || evs[0].Kind != model.EventEndpoints || evs[0].Service.Hostname != "svc7.default.svc.cluster.local" {
		t.Fatalf("events: %v, want one endpoint event for svc7", evs)
	}
	// Deleting the slice empties that service's endpoints only.
	if err := e.kube.DiscoveryV1().EndpointSlices("default").Delete(context.Background(), "svc7-1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitFor(func(s *model.Snapshot) string {
		if es := s.Endpoints("svc7.default.svc.cluster.local"); es != nil {
			return "svc7 still has endpoints"
		}
		if s.Endpoints("svc8.default.svc.cluster.local") == nil {
			return "svc8 lost its endpoints"
		}
		return ""
	})
	// Deleting a Service removes it and its endpoints.
	if err := e.kube.CoreV1().Services("default").Delete(context.Background(), "svc8", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitFor(func(s *model.Snapshot) string {
		if s.Service("svc8.default.svc.cluster.local") != nil || s.Endpoints("svc8.default.svc.cluster.local") != nil {
			return "svc8 still served"
		}
		if len(s.Services()) != 19 {
			return fmt.Sprintf("%d services", len(s.Services()))
		}
		return ""
	})
}

func TestPodLabelChangeUpdatesEndpoints(t *testing.T) {
	e := newEnv(t)
	e.apply(service("default", "echo", map[string]string{"app": "echo"}, port("http", 80, 8080)))
	e.apply(slice("default", "echo-1", "echo", "http", 8080, sliceEP{addr: "10.4.0.1", pod: "p1"}))
	e.start(Options{})
	e.waitFor(func(s *model.Snapshot) string {
		if got := epSummary(s.Endpoints(echoHost)); got != "10.4.0.1 HEALTHY sa= loc= app= state=" {
			return got
		}
		return ""
	})
	// The Pod arrives after its slice.
	p := pod("default", "p1", "10.4.0.1", "", "sa1", map[string]string{"app": "echo"})
	e.apply(p)
	e.waitFor(func(s *model.Snapshot) string {
		if got := epSummary(s.Endpoints(echoHost)); got != "10.4.0.1 HEALTHY sa=sa1 loc= app=echo state=" {
			return got
		}
		return ""
	})
	// Node labels apply through the Pod's node.
	e.apply(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n2", Labels: map[string]string{regionLabel: "r", zoneLabel: "z"}}})
	p.Spec.NodeName = "n2"
	p.Labels = map[string]string{"app": "echo", model.TrafficStateLabel: model.StateKeepalive}
	e.apply(p)
	e.waitFor(func(s *model.Snapshot) string {
		if got := epSummary(s.Endpoints(echoHost)); got != "10.4.0.1 HEALTHY sa=sa1 loc=r/z app=echo state=keepalive" {
			return got
		}
		return ""
	})
	e.apply(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n2", Labels: map[string]string{regionLabel: "r", zoneLabel: "z2"}}})
	e.waitFor(func(s *model.Snapshot) string {
		if got := epSummary(s.Endpoints(echoHost)); got != "10.4.0.1 HEALTHY sa=sa1 loc=r/z2 app=echo state=keepalive" {
			return got
		}
		return ""
	})
	// The Pod goes: the endpoint stays (the slice says so) without its labels.
	if err := e.kube.CoreV1().Pods("default").Delete(context.Background(), "p1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitFor(func(s *model.Snapshot) string {
		if got := epSummary(s.Endpoints(echoHost)); got != "10.4.0.1 HEALTHY sa= loc= app= state=" {
			return got
		}
		return ""
	})
}

func vs(ns, name string, weights ...int32) *istionet.VirtualService {
	v := &istionet.VirtualService{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}}
	v.Spec.Hosts = []string{"echo"}
	r := &networking.HTTPRoute{}
	for i, w := range weights {
		r.Route = append(r.Route, &networking.HTTPRouteDestination{
			Destination: &networking.Destination{Host: "echo", Subset: fmt.Sprintf("v%d", i+1)}, Weight: w})
	}
	v.Spec.Http = []*networking.HTTPRoute{r}
	return v
}

func TestIstioConfigLastGoodAndErrors(t *testing.T) {
	e := newEnv(t)
	e.apply(vs("default", "echo", 90, 10))
	dr := &istionet.DestinationRule{ObjectMeta: metav1.ObjectMeta{Name: "echo", Namespace: "default"}}
	dr.Spec.Host = "echo"
	dr.Spec.Subsets = []*networking.Subset{{Name: "v1", Labels: map[string]string{"version": "v1"}}, {Name: "v2", Labels: map[string]string{"version": "v2"}}}
	e.apply(dr)
	pa := &istiosec.PeerAuthentication{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: "istio-system"}}
	pa.Spec.Mtls = &securityapi.PeerAuthentication_MutualTLS{Mode: securityapi.PeerAuthentication_MutualTLS_STRICT}
	e.apply(pa)
	e.start(Options{})
	weights := func(s *model.Snapshot) string {
		var out []string
		for _, c := range s.Configs(model.KindVirtualService) {
			for _, rd := range c.Spec.(*networking.VirtualService).GetHttp()[0].GetRoute() {
				out = append(out, fmt.Sprint(rd.GetWeight()))
			}
		}
		return strings.Join(out, ",")
	}
	e.waitFor(func(s *model.Snapshot) string {
		if w := weights(s); w != "90,10" {
			return "weights " + w
		}
		if len(s.Configs(model.KindDestinationRule)) != 1 || len(s.Configs(model.KindPeerAuthentication)) != 1 {
			return "configs missing"
		}
		c := s.Configs(model.KindVirtualService)[0]
		if c.Source.Location != "kube:VirtualService/default/echo" || c.Source.Registry != RegistryName {
			return fmt.Sprintf("source %+v", c.Source)
		}
		return ""
	})
	// An invalid update is rejected with an error naming the object; the
	// last good version keeps serving.
	e.apply(vs("default", "echo", 90, 20))
	snap := e.waitFor(func(s *model.Snapshot) string {
		if len(rejections(s)) == 0 {
			return "no error reported"
		}
		return ""
	})
	ce := rejections(snap)[0]
	if ce.Location != "kube:VirtualService/default/echo" || ce.Object != "VirtualService default/echo" || ce.Registry != RegistryName ||
		!strings.Contains(ce.Message, "110") {
		t.Errorf("error: %+v", ce)
	}
	if w := weights(snap); w != "90,10" {
		t.Errorf("weights after invalid update: %s, want the last good 90,10", w)
	}
	// Fixed: the error goes away and the new version serves.
	e.apply(vs("default", "echo", 50, 50))
	e.waitFor(func(s *model.Snapshot) string {
		if len(rejections(s)) != 0 || weights(s) != "50,50" {
			return fmt.Sprintf("errors %v weights %s", rejections(s), weights(s))
		}
		return ""
	})
	if err := e.istio.NetworkingV1().VirtualServices("default").Delete(context.Background(), "echo", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitFor(func(s *model.Snapshot) string {
		if n := len(s.Configs(model.KindVirtualService)); n != 0 {
			return fmt.Sprintf("%d VirtualServices", n)
		}
		return ""
	})
}

func TestServiceEntryAndWorkloadEntries(t *testing.T) {
	e := newEnv(t)
	se := &istionet.ServiceEntry{ObjectMeta: metav1.ObjectMeta{Name: "vm", Namespace: "apps"}}
	se.Spec.Hosts = []string{"vm.example.com"}
	se.Spec.Ports = []*networking.ServicePort{{Name: "http", Number: 80, Protocol: "HTTP"}}
	se.Spec.Resolution = networking.ServiceEntry_STATIC
	se.Spec.WorkloadSelector = &networking.WorkloadSelector{Labels: map[string]string{"app": "vm"}}
	e.apply(se)
	we := &istionet.WorkloadEntry{ObjectMeta: metav1.ObjectMeta{Name: "vm-1", Namespace: "apps"}}
	we.Spec.Address = "192.0.2.10"
	we.Spec.Labels = map[string]string{"app": "vm"}
	we.Spec.ServiceAccount = "vm-sa"
	e.apply(we)
	// A Kubernetes Service selects WorkloadEntries too.
	e.apply(service("apps", "legacy", map[string]string{"app": "vm"}, port("http", 80, 8080)))
	e.start(Options{})
	e.waitFor(func(s *model.Snapshot) string {
		if got := epSummary(s.Endpoints("vm.example.com")); got != "192.0.2.10 HEALTHY sa=vm-sa loc= app=vm state=" {
			return "se: " + got
		}
		if got := epSummary(s.Endpoints("legacy.apps.svc.cluster.local")); got != "192.0.2.10 HEALTHY sa=vm-sa loc= app=vm state=" {
			return "svc: " + got
		}
		return ""
	})
	we2 := we.DeepCopy()
	we2.Name, we2.Spec.Address = "vm-2", "192.0.2.11"
	e.apply(we2)
	e.waitFor(func(s *model.Snapshot) string {
		if es := s.Endpoints("vm.example.com"); es == nil || len(es.Endpoints) != 2 {
			return "se: " + epSummary(es)
		}
		return ""
	})
	if err := e.istio.NetworkingV1().ServiceEntries("apps").Delete(context.Background(), "vm", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitFor(func(s *model.Snapshot) string {
		if s.Service("vm.example.com") != nil {
			return "ServiceEntry still served"
		}
		return ""
	})
}

func TestDiscoverySelectors(t *testing.T) {
	e := newEnv(t)
	e.apply(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "in", Labels: map[string]string{"mesh": "on"}}})
	e.apply(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "out"}})
	e.apply(service("in", "a", nil, port("http", 80, 80)))
	e.apply(service("out", "b", nil, port("http", 80, 80)))
	e.apply(vs("out", "v", 100))
	sel, err := ParseSelectors([]string{"mesh=on"})
	if err != nil {
		t.Fatal(err)
	}
	e.start(Options{DiscoverySelectors: sel})
	e.waitFor(func(s *model.Snapshot) string {
		if s.Service("a.in.svc.cluster.local") == nil || s.Service("b.out.svc.cluster.local") != nil || len(s.Configs(model.KindVirtualService)) != 0 {
			return fmt.Sprintf("services %d configs %d", len(s.Services()), len(s.Configs(model.KindVirtualService)))
		}
		return ""
	})
	if e.reg.InMesh(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "out"}}) {
		t.Error("InMesh(out)")
	}
	// Labelling the namespace brings it in; unlabelling takes it out.
	e.apply(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "out", Labels: map[string]string{"mesh": "on"}}})
	e.waitFor(func(s *model.Snapshot) string {
		if s.Service("b.out.svc.cluster.local") == nil || len(s.Configs(model.KindVirtualService)) != 1 {
			return "out not included"
		}
		return ""
	})
	e.apply(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "in"}})
	e.waitFor(func(s *model.Snapshot) string {
		if s.Service("a.in.svc.cluster.local") != nil {
			return "in still included"
		}
		return ""
	})
}

func TestMeshConfigMap(t *testing.T) {
	e := newEnv(t)
	e.apply(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team", Labels: map[string]string{"istio-discovery": "enabled"}}})
	e.apply(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "other"}})
	e.apply(service("team", "a", nil, port("http", 80, 80)))
	e.apply(service("other", "b", nil, port("http", 80, 80)))
	e.apply(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "istio", Namespace: "istio-system"}, Data: map[string]string{"mesh": `
trustDomain: example.org
rootNamespace: istio-system
outboundTrafficPolicy:
  mode: REGISTRY_ONLY
enableAutoMtls: false
connectTimeout: 3s
discoverySelectors:
- matchLabels:
    istio-discovery: enabled
defaultConfig:
  discoveryAddress: istiod.istio-system.svc:15012
`}})
	got := make(chan MeshSettings, 10)
	e.start(Options{OnMeshConfig: func(m MeshSettings) { got <- m }})
	e.waitFor(func(s *model.Snapshot) string {
		if s.Service("a.team.svc.cluster.local") == nil || s.Service("b.other.svc.cluster.local") != nil {
			return fmt.Sprintf("%d services", len(s.Services()))
		}
		return ""
	})
	m := <-got
	mc := m.Apply(model.DefaultMeshConfig())
	if mc.TrustDomain != "example.org" || !mc.OutboundRegistryOnly || !mc.DisableAutoMTLS || mc.ConnectTimeout != 3*time.Second {
		t.Errorf("mesh config: %+v", mc)
	}
	loaded, err := LoadMeshConfig(context.Background(), e.kube, "istio-system", "istio")
	if err != nil || loaded.TrustDomain != "example.org" {
		t.Errorf("LoadMeshConfig: %+v %v", loaded, err)
	}
	// Dropping the selectors brings every namespace in.
	e.apply(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "istio", Namespace: "istio-system"}, Data: map[string]string{"mesh": "trustDomain: example.org\n"}})
	e.waitFor(func(s *model.Snapshot) string {
		if s.Service("b.other.svc.cluster.local") == nil {
			return "other not included"
		}
		return ""
	})
	if _, err := ParseMeshConfig("outboundTrafficPolicy: {mode: SOMETIMES}"); err == nil {
		t.Error("invalid mode accepted")
	}
	if _, err := ParseSelectors([]string{"a in (b"}); err == nil {
		t.Error("invalid selector accepted")
	}
}

// Resyncs redeliver every object; nothing changed, so nothing is recorded.
func TestResyncRecordsNothing(t *testing.T) {
	e := newEnv(t)
	e.apply(service("default", "echo", map[string]string{"app": "echo"}, port("http", 80, 8080)))
	e.apply(slice("default", "echo-1", "echo", "http", 8080, sliceEP{addr: "10.5.0.1"}))
	e.apply(vs("default", "echo", 100))
	e.start(Options{Resync: time.Second})
	e.waitFor(func(s *model.Snapshot) string {
		if s.Endpoints(echoHost) == nil || len(s.Configs(model.KindVirtualService)) != 1 {
			return "not loaded"
		}
		return ""
	})
	e.agg.Build()
	time.Sleep(2500 * time.Millisecond) // two resyncs
	if _, evs := e.agg.Build(); len(evs) != 0 {
		t.Errorf("resync recorded events: %v", evs)
	}
}

func TestSetTrafficStatePatchesPods(t *testing.T) {
	e := newEnv(t)
	e.apply(service("default", "echo", map[string]string{"app": "echo"}, port("http", 80, 8080)))
	e.apply(pod("default", "p1", "10.6.0.1", "", "", map[string]string{"app": "echo", "version": "v1"}))
	e.apply(pod("default", "p2", "10.6.0.2", "", "", map[string]string{"app": "echo", "version": "v2"}))
	e.apply(slice("default", "echo-1", "echo", "http", 8080, sliceEP{addr: "10.6.0.1", pod: "p1"}, sliceEP{addr: "10.6.0.2", pod: "p2"}))
	e.start(Options{})
	e.waitFor(func(s *model.Snapshot) string {
		if es := s.Endpoints(echoHost); es == nil || len(es.Endpoints) != 2 {
			return "endpoints: " + epSummary(es)
		}
		return ""
	})
	ctx := context.Background()
	if err := e.reg.SetTrafficState(ctx, "default", echoHost, map[string]string{"version": "v2"}, model.StateKeepalive); err != nil {
		t.Fatal(err)
	}
	p2, err := e.kube.CoreV1().Pods("default").Get(ctx, "p2", metav1.GetOptions{})
	if err != nil || p2.Labels[model.TrafficStateLabel] != model.StateKeepalive {
		t.Fatalf("p2 labels %v (%v)", p2.GetLabels(), err)
	}
	if p1, _ := e.kube.CoreV1().Pods("default").Get(ctx, "p1", metav1.GetOptions{}); p1.Labels[model.TrafficStateLabel] != "" {
		t.Errorf("p1 labelled too: %v", p1.Labels)
	}
	for _, tc := range []struct {
		host, state string
		sel         map[string]string
	}{
		{echoHost, "paused", nil},
		{"nope.default.svc.cluster.local", model.StateRunning, nil},
		{echoHost, model.StateRunning, map[string]string{"version": "v9"}},
	} {
		if err := e.reg.SetTrafficState(ctx, "default", tc.host, tc.sel, tc.state); err == nil {
			t.Errorf("SetTrafficState(%s, %v, %s): no error", tc.host, tc.sel, tc.state)
		}
	}
}

func TestMissingCRDsAreSkipped(t *testing.T) {
	e := newEnv(t)
	e.kube.Discovery().(*fakediscovery.FakeDiscovery).Resources = nil
	e.apply(service("default", "echo", nil, port("http", 80, 80)))
	e.start(Options{})
	e.waitFor(func(s *model.Snapshot) string {
		if s.Service(echoHost) == nil {
			return "service missing"
		}
		return ""
	})
	if len(e.reg.istioInf) != 0 {
		t.Errorf("watching %d Istio kinds without CRDs", len(e.reg.istioInf))
	}
}

func TestInvalidServiceKeepsLastGood(t *testing.T) {
	e := newEnv(t)
	e.apply(service("default", "echo", nil, port("http", 80, 8080)))
	e.apply(slice("default", "echo-1", "echo", "http", 8080, sliceEP{addr: "10.7.0.1"}))
	e.start(Options{})
	e.waitFor(func(s *model.Snapshot) string {
		if s.Endpoints(echoHost) == nil {
			return "not loaded"
		}
		return ""
	})
	bad := service("default", "echo", nil, port("http", 80, 8080), port("http", 81, 8081)) // duplicate port name
	e.apply(bad)
	snap := e.waitFor(func(s *model.Snapshot) string {
		if len(s.Errors) == 0 {
			return "no error"
		}
		return ""
	})
	if snap.Errors[0].Location != "kube:Service/default/echo" {
		t.Errorf("error: %+v", snap.Errors[0])
	}
	if s := snap.Service(echoHost); s == nil || len(s.Ports) != 1 || snap.Endpoints(echoHost) == nil {
		t.Errorf("last good service not served: %+v", s)
	}
}

// rejections are the snapshot's errors other than the reference checks
// (IST0101 and the like), which these tests' routes to absent services
// raise by design.
func rejections(s *model.Snapshot) []model.ConfigError {
	var out []model.ConfigError
	for _, e := range s.Errors {
		if e.Code == "" {
			out = append(out, e)
		}
	}
	return out
}
