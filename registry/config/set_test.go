package config

import (
	"strings"
	"testing"
)

func mustParse(t *testing.T, location, input string) *Result {
	t.Helper()
	res := Parse(location, []byte(input))
	if !res.Valid() {
		t.Fatalf("%s: unexpected errors: %v", location, res.Errors)
	}
	return res
}

func TestValidateSetDuplicatesAcrossInputs(t *testing.T) {
	newer := mustParse(t, "a.yaml", `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: r, namespace: shop, creationTimestamp: "2024-05-01T00:00:00Z"}
spec: {host: r}
`)
	older := mustParse(t, "b.yaml", `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: r, namespace: shop, creationTimestamp: "2023-05-01T00:00:00Z"}
spec: {host: r}
`)
	errs := ValidateSet([]*Result{newer, older})
	if len(errs) != 1 {
		t.Fatalf("errors = %v, want one", errs)
	}
	e := errs[0]
	if e.Warning || e.Location != "a.yaml:1 (doc 1)" || e.Object != "DestinationRule shop/r" ||
		!strings.Contains(e.Message, "also defined at b.yaml:1 (doc 1), which wins") {
		t.Errorf("error = %+v; want the newer object reported as the loser", e)
	}
}

func TestValidateSetSliceWithoutService(t *testing.T) {
	res := mustParse(t, "s.yaml", `apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: ghost-1, namespace: shop, labels: {kubernetes.io/service-name: ghost}}
addressType: IPv4
endpoints: [{addresses: [10.0.0.1]}]
`)
	errs := ValidateSet([]*Result{res})
	if len(errs) != 1 || !errs[0].Warning || !strings.Contains(errs[0].Message, "Service shop/ghost is not defined") {
		t.Fatalf("errors = %v", errs)
	}
}
