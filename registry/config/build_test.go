package config

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/sextant-mesh/sextant/model"
)

func buildFiles(t *testing.T, files ...string) *Output {
	t.Helper()
	var results []*Result
	for _, f := range files {
		res := parseFile(t, f)
		if !res.Valid() {
			t.Fatalf("%s: %v", f, res.Errors)
		}
		results = append(results, res)
	}
	return Build("file", results)
}

func service(t *testing.T, out *Output, ns, host string) *model.Service {
	t.Helper()
	for _, s := range out.Services {
		if s.Namespace == ns && s.Hostname == host {
			return s
		}
	}
	t.Fatalf("no service %s/%s", ns, host)
	return nil
}

func endpoints(out *Output, ns, host string) []*model.Endpoint {
	return out.Endpoints[model.ServiceKey{Namespace: ns, Hostname: host}]
}

func addresses(eps []*model.Endpoint) string {
	var out []string
	for _, e := range eps {
		out = append(out, e.Address)
	}
	return strings.Join(out, ",")
}

func TestBuildServiceEntry(t *testing.T) {
	out := buildFiles(t, "mesh.yaml")
	if len(out.Errors) != 0 {
		t.Fatalf("errors: %v", out.Errors)
	}
	created := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	src := model.Source{Registry: "file", Kind: "ServiceEntry", Namespace: "shop", Name: "payments", Location: "mesh.yaml:2 (doc 1)"}
	for _, host := range []string{"payments.example.com", "pay.example.com"} {
		want := &model.Service{
			Hostname:  host,
			Namespace: "shop",
			Ports: []model.Port{
				{Name: "http", Number: 8080, Protocol: model.ProtocolHTTP, TargetPort: 18080},
				{Name: "grpc-api", Number: 9090, Protocol: model.ProtocolGRPC},
			},
			Addresses:    []string{"240.0.0.10"},
			Resolution:   model.ClientSideLB,
			MeshExternal: false,
			Labels:       map[string]string{"team": "billing"},
			ExportTo:     []string{".", "istio-system"},
			CreationTime: created,
			Source:       src,
		}
		if diff := cmp.Diff(want, service(t, out, "shop", host)); diff != "" {
			t.Errorf("service %s (-want +got):\n%s", host, diff)
		}
		wantEps := []*model.Endpoint{{
			Address:        "10.0.0.1",
			Ports:          map[string]uint32{"http": 28080},
			Labels:         map[string]string{"version": "v1", model.TrafficStateLabel: model.StateKeepalive},
			Locality:       "eu-west/eu-west-1a",
			Weight:         3,
			Network:        "net1",
			ServiceAccount: "payments",
			Source:         src,
		}, {
			Address: "10.0.0.2",
			Source:  src,
		}}
		if diff := cmp.Diff(wantEps, endpoints(out, "shop", host), cmpopts.IgnoreUnexported(model.Endpoint{})); diff != "" {
			t.Errorf("endpoints of %s (-want +got):\n%s", host, diff)
		}
	}
	// Each service owns its endpoints: the shard sorts and keeps them.
	a, b := endpoints(out, "shop", "payments.example.com"), endpoints(out, "shop", "pay.example.com")
	if a[0] == b[0] {
		t.Error("services share endpoint objects")
	}
}

func TestBuildServiceEntryResolutions(t *testing.T) {
	res := mustParse(t, "se.yaml", `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext}
spec:
  hosts: [api.example.com]
  ports: [{number: 443, name: https, protocol: HTTPS}]
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: rr}
spec:
  hosts: [rr.example.com]
  ports: [{number: 443, name: tls, protocol: TLS}]
  resolution: DNS_ROUND_ROBIN
  endpoints: [{address: lb.example.com}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: any}
spec:
  hosts: ["*.wild.example.com"]
  ports: [{number: 80, name: tcp, protocol: TCP}]
`)
	out := Build("file", []*Result{res})
	for _, tc := range []struct {
		host string
		res  model.Resolution
		eps  string
	}{
		{"api.example.com", model.DNSLB, "api.example.com"}, // the host itself, as Istio does
		{"rr.example.com", model.DNSRoundRobinLB, "lb.example.com"},
		{"*.wild.example.com", model.Passthrough, ""},
	} {
		svc := service(t, out, "default", tc.host)
		if svc.Resolution != tc.res || !svc.MeshExternal {
			t.Errorf("%s: resolution %v, external %v", tc.host, svc.Resolution, svc.MeshExternal)
		}
		if got := addresses(endpoints(out, "default", tc.host)); got != tc.eps {
			t.Errorf("%s: endpoints %q, want %q", tc.host, got, tc.eps)
		}
	}
}

func TestBuildWorkloadEntrySelection(t *testing.T) {
	other := mustParse(t, "workloads.yaml", `apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: other-ns, namespace: elsewhere}
spec: {address: 10.9.0.1, labels: {app: reviews}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: other-app, namespace: shop}
spec: {address: 10.9.0.2, labels: {app: details}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: ratings-vm, namespace: shop, labels: {app: ratings}}
spec:
  address: 10.9.0.3
  ports: {http-web: 18080, grpc: 17070}
`)
	out := Build("file", []*Result{parseFile(t, "mesh.yaml"), parseFile(t, "kube.yaml"), other})

	// ServiceEntry with workloadSelector app=reviews: only reviews-vm-1,
	// whose metadata label version=v2 overrides its spec label.
	eps := endpoints(out, "shop", "reviews.shop.svc.cluster.local")
	if len(eps) != 1 {
		t.Fatalf("reviews endpoints = %q, want only reviews-vm-1", addresses(eps))
	}
	want := &model.Endpoint{
		Address:        "10.1.0.1",
		Ports:          map[string]uint32{"http": 9080},
		Labels:         map[string]string{"app": "reviews", "version": "v2"},
		ServiceAccount: "reviews",
		Source: model.Source{Registry: "file", Kind: "WorkloadEntry", Namespace: "shop", Name: "reviews-vm-1",
			Location: "mesh.yaml:42 (doc 3)"},
	}
	if diff := cmp.Diff(want, eps[0], cmpopts.IgnoreUnexported(model.Endpoint{})); diff != "" {
		t.Errorf("reviews endpoint (-want +got):\n%s", diff)
	}

	// Kubernetes Service ratings (selector app=ratings) also selects the
	// WorkloadEntry; its ports map by service port name and by named
	// targetPort ("api" targets "grpc").
	var vm *model.Endpoint
	for _, e := range endpoints(out, "shop", "ratings.shop.svc.cluster.local") {
		if e.Address == "10.9.0.3" {
			vm = e
		}
	}
	if vm == nil {
		t.Fatal("ratings-vm is not an endpoint of the ratings Service")
	}
	if diff := cmp.Diff(map[string]uint32{"http-web": 18080, "api": 17070}, vm.Ports); diff != "" {
		t.Errorf("ratings-vm ports (-want +got):\n%s", diff)
	}
	svc := service(t, out, "shop", "ratings.shop.svc.cluster.local")
	if p, _ := svc.Port(80); vm.PortFor(p) != 18080 {
		t.Errorf("PortFor(80) = %d", vm.PortFor(p))
	}
}

func TestBuildKubernetesService(t *testing.T) {
	out := buildFiles(t, "kube.yaml", "slices.yaml")
	if len(out.Errors) != 0 {
		t.Fatalf("errors: %v", out.Errors)
	}
	svc := service(t, out, "shop", "ratings.shop.svc.cluster.local")
	want := &model.Service{
		Hostname:  "ratings.shop.svc.cluster.local",
		Namespace: "shop",
		Ports: []model.Port{
			{Name: "dns", Number: 53, Protocol: model.ProtocolUDP},
			{Name: "http-web", Number: 80, Protocol: model.ProtocolHTTP, TargetPort: 8080},
			{Name: "api", Number: 9000, Protocol: model.ProtocolGRPC},
		},
		Addresses:  []string{"10.96.0.20"},
		Resolution: model.ClientSideLB,
		ExportTo:   []string{".", "istio-system"},
		Selector:   map[string]string{"app": "ratings"},
		Source:     model.Source{Registry: "file", Kind: "Service", Namespace: "shop", Name: "ratings", Location: "kube.yaml:1 (doc 1)"},
	}
	if diff := cmp.Diff(want, svc); diff != "" {
		t.Errorf("service (-want +got):\n%s", diff)
	}

	eps := endpoints(out, "shop", "ratings.shop.svc.cluster.local")
	if got := addresses(eps); got != "10.2.0.1,10.2.0.2,10.2.0.3,10.2.0.4,10.2.0.5" {
		t.Fatalf("endpoints = %q", got)
	}
	wantHealth := []model.Health{model.Healthy, model.Draining, model.Unhealthy, model.Healthy, model.Healthy}
	for i, e := range eps {
		if e.Health != wantHealth[i] {
			t.Errorf("%s: health %v, want %v", e.Address, e.Health, wantHealth[i])
		}
		if diff := cmp.Diff(map[string]uint32{"http-web": 8080, "api": 9443, "dns": 5353}, e.Ports); diff != "" {
			t.Errorf("%s: ports (-want +got):\n%s", e.Address, diff)
		}
		if e.Source.Kind != "EndpointSlice" || e.Source.Name != "ratings-abc" {
			t.Errorf("%s: source %v", e.Address, e.Source)
		}
	}
	if eps[0].Locality != "/us-east-1a" || eps[1].Locality != "" {
		t.Errorf("localities %q, %q", eps[0].Locality, eps[1].Locality)
	}
	// Ports by name: service port 80 (http-web) is served on 8080, 9000 (api) on 9443.
	for number, wantPort := range map[uint32]uint32{80: 8080, 9000: 9443, 53: 5353} {
		p, _ := svc.Port(number)
		if got := eps[0].PortFor(p); got != wantPort {
			t.Errorf("PortFor(%d) = %d, want %d", number, got, wantPort)
		}
	}
}

func TestBuildExternalNameAndHeadless(t *testing.T) {
	out := buildFiles(t, "kube.yaml")
	legacy := service(t, out, "shop", "legacy.shop.svc.cluster.local")
	if legacy.Resolution != model.DNSLB || !legacy.MeshExternal || len(legacy.Addresses) != 0 {
		t.Errorf("ExternalName service: %+v", legacy)
	}
	if got := addresses(endpoints(out, "shop", "legacy.shop.svc.cluster.local")); got != "legacy.example.org" {
		t.Errorf("ExternalName endpoints = %q", got)
	}
	if p := legacy.Ports; len(p) != 1 || p[0].Protocol != model.ProtocolTCP {
		t.Errorf("ExternalName ports = %v", p)
	}
	db := service(t, out, "shop", "db.shop.svc.cluster.local")
	if db.Resolution != model.Passthrough || len(db.Addresses) != 0 {
		t.Errorf("headless service: %+v", db)
	}
}

func TestBuildConfigs(t *testing.T) {
	out := buildFiles(t, "mesh.yaml")
	var keys []string
	for _, c := range out.Configs {
		keys = append(keys, c.Key.String())
		if c.Hash == 0 || c.Hash != model.HashConfig(c) {
			t.Errorf("%s: hash %d", c.Key, c.Hash)
		}
		if c.Source.Registry != "file" || !strings.HasPrefix(c.Source.Location, "mesh.yaml:") {
			t.Errorf("%s: source %v", c.Key, c.Source)
		}
	}
	want := []string{
		"AuthorizationPolicy/shop/reviews-viewer",
		"DestinationRule/shop/reviews",
		"PeerAuthentication/istio-system/default",
		"RequestAuthentication/shop/jwt",
		"Sidecar/shop/default",
		"Telemetry/istio-system/mesh-default",
		"VirtualService/shop/reviews",
	}
	if diff := cmp.Diff(want, keys); diff != "" {
		t.Fatalf("config keys (-want +got):\n%s", diff)
	}
	vs := out.Configs[6].Spec.(*networking.VirtualService)
	if vs.GetHttp()[1].GetRoute()[0].GetWeight() != 90 {
		t.Errorf("VirtualService spec not kept: %v", vs)
	}
	// Building twice gives identical hashes (stable resource versions).
	again := buildFiles(t, "mesh.yaml")
	for i, c := range again.Configs {
		if c.Hash != out.Configs[i].Hash {
			t.Errorf("%s: hash changed between builds", c.Key)
		}
	}
}

func TestBuildServiceConflict(t *testing.T) {
	entry := func(name, created, addr string) string {
		return "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\n" +
			"metadata: {name: " + name + ", creationTimestamp: \"" + created + "\"}\n" +
			"spec:\n  hosts: [db.example.com]\n  ports: [{number: 5432, name: tcp, protocol: TCP}]\n" +
			"  resolution: STATIC\n  endpoints: [{address: " + addr + "}]\n"
	}
	newer := mustParse(t, "new.yaml", entry("db-new", "2025-01-01T00:00:00Z", "10.0.0.2"))
	older := mustParse(t, "old.yaml", entry("db-old", "2020-01-01T00:00:00Z", "10.0.0.1"))
	out := Build("file", []*Result{newer, older})
	svc := service(t, out, "default", "db.example.com")
	if svc.Source.Name != "db-old" {
		t.Errorf("winner = %s, want the older db-old", svc.Source.Name)
	}
	if got := addresses(endpoints(out, "default", "db.example.com")); got != "10.0.0.1" {
		t.Errorf("endpoints = %q, want only the winner's", got)
	}
	if len(out.Errors) != 1 || !out.Errors[0].Warning || out.Errors[0].Registry != "file" ||
		out.Errors[0].Object != "ServiceEntry default/db-new" {
		t.Fatalf("errors = %+v", out.Errors)
	}
	if got := out.ErrorsFor("new.yaml"); len(got) != 1 {
		t.Errorf("ErrorsFor(new.yaml) = %v", got)
	}
	if got := out.ErrorsFor("old.yaml"); len(got) != 0 {
		t.Errorf("ErrorsFor(old.yaml) = %v", got)
	}
}
