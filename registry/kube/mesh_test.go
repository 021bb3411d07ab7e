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
