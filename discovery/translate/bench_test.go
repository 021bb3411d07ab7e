package translate

import (
	"fmt"
	"strings"
	"testing"

	"github.com/sextant-mesh/sextant/internal/meshtest"
	"github.com/sextant-mesh/sextant/model"
)

// benchMesh is services × endpoints ServiceEntries in 10 namespaces, each
// with a DestinationRule with two subsets and a 90/10 VirtualService.
func benchMesh(services, endpoints int) map[string][]byte {
	var b strings.Builder
	for s := range services {
		ns := fmt.Sprintf("ns%d", s%10)
		host := fmt.Sprintf("svc-%d.%s.svc.cluster.local", s, ns)
		fmt.Fprintf(&b, "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: svc-%d, namespace: %s}\nspec:\n  hosts: [%s]\n  resolution: STATIC\n  ports: [{number: 8080, name: http, protocol: HTTP}]\n  endpoints:\n", s, ns, host)
		for e := range endpoints {
			fmt.Fprintf(&b, "  - {address: 10.%d.%d.%d, labels: {version: v%d}, locality: r/z%d}\n", 1+s/250, s%250, e+1, e%2+1, e%3)
		}
		fmt.Fprintf(&b, "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: svc-%d, namespace: %s}\nspec:\n  host: %s\n  subsets:\n  - {name: v1, labels: {version: v1}}\n  - {name: v2, labels: {version: v2}}\n", s, ns, host)
		fmt.Fprintf(&b, "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: svc-%d, namespace: %s}\nspec:\n  hosts: [%s]\n  http:\n  - route:\n    - {destination: {host: %s, subset: v1}, weight: 90}\n    - {destination: {host: %s, subset: v2}, weight: 10}\n", s, ns, host, host, host)
	}
	return map[string][]byte{"mesh.yaml": []byte(b.String())}
}

// translateProxy builds everything one proxy receives.
func translateProxy(ctx *Context, b *testing.B, gen string) (resources, bytes int) {
	p := testProxy(b, "bench", "ns0", gen, map[string]string{"app": "bench"})
	for _, typ := range []string{ClusterType, ListenerType, RouteType} {
		for _, r := range ctx.Resources(p, typ).Resources {
			resources++
			bytes += len(r.Any.GetValue())
		}
	}
	for _, r := range ctx.Resources(p, ClusterType).Resources {
		if e := ctx.Endpoint(p, r.Name); e != nil {
			resources++
			bytes += len(e.Any.GetValue())
		}
	}
	return resources, bytes
}

// BenchmarkTranslateCold: a full translation of 1,000 services × 10
// endpoints for one proxy with an empty cache (every resource built and
// marshalled).
func BenchmarkTranslateCold(b *testing.B) {
	benchPerGenerator(b, meshtest.FromYAML(b, benchMesh(1000, 10)))
}

// benchPerGenerator translates snap from an empty cache for a proxyless
// and a sidecar proxy, reporting what one proxy receives.
func benchPerGenerator(b *testing.B, snap *model.Snapshot) {
	for _, gen := range []string{"grpc", ""} {
		name := gen
		if name == "" {
			name = "sidecar"
		}
		b.Run(name, func(b *testing.B) {
			var res, bytes int
			b.ReportAllocs()
			for b.Loop() {
				ctx := NewContext(snap, model.DefaultMeshConfig(), NewCache())
				res, bytes = translateProxy(ctx, b, gen)
			}
			b.ReportMetric(float64(res), "resources/proxy")
			b.ReportMetric(float64(bytes), "bytes/proxy")
		})
	}
}

// BenchmarkTranslateWarm: the same with the content cache already holding
// every resource (a new snapshot where nothing changed): cost of lookups.
func BenchmarkTranslateWarm(b *testing.B) {
	snap := meshtest.FromYAML(b, benchMesh(1000, 10))
	cache := NewCache()
	translateProxy(NewContext(snap, model.DefaultMeshConfig(), cache), b, "grpc")
	b.ReportAllocs()
	for b.Loop() {
		translateProxy(NewContext(snap, model.DefaultMeshConfig(), cache), b, "grpc")
	}
}

// BenchmarkTranslateScoped: the same mesh with a Sidecar in ns0 importing
// only its own namespace (100 of the 1,000 services).
func BenchmarkTranslateScoped(b *testing.B) {
	mesh := benchMesh(1000, 10)
	mesh["sidecar.yaml"] = []byte("apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: default, namespace: ns0}\nspec:\n  egress:\n  - hosts: [\"./*\"]\n")
	benchPerGenerator(b, meshtest.FromYAML(b, mesh))
}
