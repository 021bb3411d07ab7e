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

const reviewsVS = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: shop}
spec:
  hosts: [reviews]
  http:
  - route:
    - {destination: {host: reviews, subset: v1}, weight: 50}
    - {destination: {host: reviews.shop.svc.cluster.local, subset: v3}, weight: 50}
`

func TestValidateSetMissingSubset(t *testing.T) {
	vs := mustParse(t, "vs.yaml", reviewsVS)
	for _, tc := range []struct {
		name string
		dr   string
		want []string // messages of the warnings, in order
	}{{
		name: "no destination rule",
		want: []string{
			`spec.http[0].route[0].destination.subset: subset "v1" is not defined: no DestinationRule for host reviews.shop.svc.cluster.local`,
			`spec.http[0].route[1].destination.subset: subset "v3" is not defined: no DestinationRule for host reviews.shop.svc.cluster.local`,
		},
	}, {
		name: "destination rule lacks one subset",
		dr: `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: shop}
spec:
  host: reviews
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
`,
		want: []string{
			`spec.http[0].route[1].destination.subset: subset "v3" is not defined in DestinationRule shop/reviews for host reviews.shop.svc.cluster.local`,
		},
	}, {
		name: "wildcard destination rule in another namespace has both",
		dr: `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: all, namespace: istio-system}
spec:
  host: "*.shop.svc.cluster.local"
  subsets: [{name: v1}, {name: v3}]
`,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			results := []*Result{vs}
			if tc.dr != "" {
				results = append(results, mustParse(t, "dr.yaml", tc.dr))
			}
			errs := ValidateSet(results)
			var got []string
			for _, e := range errs {
				if !e.Warning {
					t.Errorf("missing subset must be a warning: %v", e)
				}
				if e.Location != "vs.yaml:1 (doc 1)" || e.Object != "VirtualService shop/reviews" {
					t.Errorf("error does not name the VirtualService: %+v", e)
				}
				got = append(got, e.Field+": "+e.Message)
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
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
