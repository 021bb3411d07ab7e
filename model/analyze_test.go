package model

import (
	"strings"
	"testing"
	"time"

	networking "istio.io/api/networking/v1alpha3"
)

func TestReferenceWarnings(t *testing.T) {
	const reviews = "reviews.shop.svc.cluster.local"
	agg := NewAggregator()
	services, routing := agg.NewShard("kube"), agg.NewShard("file")
	services.Update(func(tx *Txn) {
		tx.SetService(svc("shop", reviews, time.Time{}))
		tx.SetEndpoints(ServiceKey{Namespace: "shop", Hostname: reviews}, []*Endpoint{
			{Address: "10.0.0.1", Labels: map[string]string{"app": "reviews", "version": "v1"}},
		})
	})
	cfg := func(kind Kind, name string, spec *networking.VirtualService, dr *networking.DestinationRule) *Config {
		c := &Config{Key: ConfigKey{Kind: kind, Namespace: "shop", Name: name},
			Source: Source{Registry: "file", Kind: string(kind), Namespace: "shop", Name: name, Location: "mesh.yaml:1 (doc 1)"}}
		if spec != nil {
			c.Spec = spec
		} else {
			c.Spec = dr
		}
		return c
	}
	route := func(host, subset string) *networking.HTTPRouteDestination {
		return &networking.HTTPRouteDestination{Destination: &networking.Destination{Host: host, Subset: subset}}
	}
	routing.Update(func(tx *Txn) {
		tx.SetConfig(cfg(KindVirtualService, "reviews", &networking.VirtualService{
			Hosts: []string{"reviews", "ghost"},
			Http: []*networking.HTTPRoute{{Route: []*networking.HTTPRouteDestination{
				route("reviews", "v1"),     // fine
				route("reviews", "v3"),     // no such subset
				route("reveiws", "v1"),     // a typo: only the host is reported
				route("*.example.com", ""), // wildcards are not checked
			}}},
		}, nil))
		tx.SetConfig(cfg(KindVirtualService, "edge", &networking.VirtualService{
			Hosts: []string{"www.example.com"}, Gateways: []string{"istio-system/ingress"},
			Http: []*networking.HTTPRoute{{Route: []*networking.HTTPRouteDestination{route(reviews, "")}}},
		}, nil))
		tx.SetConfig(cfg(KindDestinationRule, "reviews", nil, &networking.DestinationRule{
			Host: "reviews",
			Subsets: []*networking.Subset{
				{Name: "v1", Labels: map[string]string{"version": "v1"}},
				{Name: "v2", Labels: map[string]string{"version": "v2", "app": "reviews"}},
			},
		}))
	})
	services.MarkSynced()
	routing.MarkSynced()
	snap, _ := agg.Build()
	var got []string
	for _, e := range snap.Errors {
		if !e.Warning || e.Registry != "file" || e.Location != "mesh.yaml:1 (doc 1)" {
			t.Errorf("want a warning at the object's location: %+v", e)
		}
		got = append(got, e.Object+": "+e.Field+": ["+e.Code+"] "+e.Message)
	}
	want := []string{
		`DestinationRule shop/reviews: spec.subsets[1].labels: [IST0127] No matching workloads for this resource with the following labels: app=reviews,version=v2`,
		`VirtualService shop/reviews: spec.hosts[1]: [IST0101] Referenced host not found: "ghost"`,
		`VirtualService shop/reviews: spec.http[0].route[1].destination.subset: [IST0101] Referenced host+subset in destinationrule not found: "reviews+v3"`,
		`VirtualService shop/reviews: spec.http[0].route[2].destination.host: [IST0101] Referenced host not found: "reveiws"`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("warnings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if e, w := CountErrors(snap.Errors); e != 0 || w != 4 {
		t.Errorf("CountErrors = %d errors, %d warnings; want 0, 4", e, w)
	}

	// Fixing the references clears the warnings.
	routing.Update(func(tx *Txn) {
		tx.SetConfig(cfg(KindVirtualService, "reviews", &networking.VirtualService{
			Hosts: []string{"reviews"},
			Http:  []*networking.HTTPRoute{{Route: []*networking.HTTPRouteDestination{route("reviews", "v1")}}},
		}, nil))
		tx.SetConfig(cfg(KindDestinationRule, "reviews", nil, &networking.DestinationRule{
			Host: "reviews", Subsets: []*networking.Subset{{Name: "v1", Labels: map[string]string{"version": "v1"}}},
		}))
	})
	if snap, _ := agg.Build(); len(snap.Errors) != 0 {
		t.Errorf("warnings after the fix: %v", snap.Errors)
	}
}
