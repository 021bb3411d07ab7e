package translate

import (
	"strings"
	"testing"

	"github.com/sextant-mesh/sextant/internal/meshtest"
)

// ClusterNamesForHost names every cluster an endpoint change of a host can
// affect: each port, with and without the subsets of exact and wildcard
// DestinationRules, and nothing from rules for other hosts.
func TestClusterNamesForHost(t *testing.T) {
	snap := meshtest.FromYAML(t, map[string][]byte{"m.yaml": []byte(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api, namespace: default}
spec:
  hosts: [api.example.com]
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}, {number: 81, name: grpc, protocol: GRPC}]
  endpoints: [{address: 10.0.0.1, labels: {v: a}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: exact, namespace: default}
spec:
  host: api.example.com
  subsets: [{name: a, labels: {v: a}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: wild, namespace: other}
spec:
  host: "*.example.com"
  subsets: [{name: w, labels: {v: w}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: unrelated, namespace: default}
spec:
  host: db.example.org
  subsets: [{name: x, labels: {v: x}}]
`)})
	got := strings.Join(ClusterNamesForHost(snap, "api.example.com"), " ")
	want := "outbound|80|a|api.example.com outbound|80|w|api.example.com outbound|80||api.example.com " +
		"outbound|81|a|api.example.com outbound|81|w|api.example.com outbound|81||api.example.com"
	if got != want {
		t.Errorf("ClusterNamesForHost:\n got %s\nwant %s", got, want)
	}
	if n := ClusterNamesForHost(snap, "missing.example.com"); n != nil {
		t.Errorf("unknown host: %v", n)
	}
}
