package kube

import (
	"reflect"
	"testing"

	"github.com/sextant-mesh/sextant/model"
)

func TestParseMeshConfigTrustDomainAliases(t *testing.T) {
	m, err := ParseMeshConfig("trustDomain: new.example\ntrustDomainAliases: [old.example, cluster.local]\n")
	if err != nil {
		t.Fatal(err)
	}
	got := m.Apply(model.DefaultMeshConfig())
	if got.TrustDomain != "new.example" || !reflect.DeepEqual(got.TrustDomainAliases, []string{"old.example", "cluster.local"}) {
		t.Errorf("applied mesh config: %+v", got)
	}
}

func TestParseMeshConfigExtensionProviders(t *testing.T) {
	m, err := ParseMeshConfig(`extensionProviders:
- name: opa
  envoyExtAuthzGrpc: {service: opa.opa.svc.cluster.local, port: 9191, timeout: 2s}
- name: http
  envoyExtAuthzHttp: {service: ext.foo.svc.cluster.local, port: 8000, pathPrefix: /check, includeRequestHeadersInCheck: [x-user], statusOnError: "503", failOpen: true}
- name: zipkin
  zipkin: {service: zipkin.istio-system.svc.cluster.local, port: 9411}
`)
	if err != nil {
		t.Fatal(err)
	}
	want := []model.ExtAuthzProvider{
		{Name: "opa", GRPC: true, Service: "opa.opa.svc.cluster.local", Port: 9191, Timeout: 2e9},
		{Name: "http", Service: "ext.foo.svc.cluster.local", Port: 8000, PathPrefix: "/check", IncludeRequestHeadersInCheck: []string{"x-user"}, StatusOnError: 503, FailOpen: true},
	}
	if got := m.Apply(model.DefaultMeshConfig()).ExtensionProviders; !reflect.DeepEqual(got, want) {
		t.Errorf("providers = %+v", got)
	}
	if _, err := ParseMeshConfig("extensionProviders: [{name: x, envoyExtAuthzGrpc: {service: a}}]"); err == nil {
		t.Error("provider without a port accepted")
	}
}
