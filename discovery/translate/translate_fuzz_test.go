package translate

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/sextant-mesh/sextant/internal/meshtest"
	"github.com/sextant-mesh/sextant/model"
	"github.com/sextant-mesh/sextant/registry/config"
)

// fuzzMesh turns fuzz bytes into a mesh: services of various protocols and
// resolutions, DestinationRules with subsets, load balancers, port-level
// settings and TLS modes, and VirtualServices with the route features the
// README lists. Each byte picks one choice; missing bytes pick the first.
func fuzzMesh(data []byte) string {
	i := 0
	next := func(n int) int {
		if i >= len(data) {
			return 0
		}
		b := int(data[i])
		i++
		return b % n
	}
	var b strings.Builder
	protocols := []string{"HTTP", "GRPC", "TCP", "TLS", "HTTP2"}
	nsvc := 1 + next(3)
	for s := range nsvc {
		host := fmt.Sprintf("s%d.default.svc.cluster.local", s)
		protocol := protocols[next(len(protocols))]
		port := 80 + s
		fmt.Fprintf(&b, "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: s%d, namespace: default}\nspec:\n  hosts: [%s]\n  ports: [{number: %d, name: p, protocol: %s}]\n", s, host, port, protocol)
		if next(4) == 0 {
			b.WriteString("  resolution: DNS\n")
		} else {
			b.WriteString("  resolution: STATIC\n  endpoints:\n")
			for e := range 1 + next(3) {
				fmt.Fprintf(&b, "  - {address: 10.%d.0.%d, labels: {version: v%d}, locality: r%d/z%d}\n", s+1, e+1, 1+e%2, e%2, e)
			}
		}
		// DestinationRule.
		lbs := []string{"", "ROUND_ROBIN", "LEAST_REQUEST", "RANDOM"}
		tls := []string{"", "DISABLE", "ISTIO_MUTUAL", "SIMPLE"}
		fmt.Fprintf(&b, "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: s%d, namespace: default}\nspec:\n  host: %s\n  trafficPolicy:\n", s, host)
		b.WriteString("    connectionPool: {tcp: {maxConnections: 10}}\n")
		if lb := lbs[next(len(lbs))]; lb != "" {
			fmt.Fprintf(&b, "    loadBalancer: {simple: %s}\n", lb)
		} else if next(2) == 0 {
			b.WriteString("    loadBalancer: {consistentHash: {httpHeaderName: x-user}}\n")
		}
		if t := tls[next(len(tls))]; t != "" {
			fmt.Fprintf(&b, "    tls: {mode: %s}\n", t)
		}
		if next(2) == 0 {
			fmt.Fprintf(&b, "    portLevelSettings:\n    - port: {number: %d}\n      outlierDetection: {consecutive5xxErrors: %d, interval: 5s}\n", port, 1+next(5))
		}
		b.WriteString("  subsets:\n  - {name: v1, labels: {version: v1}}\n  - {name: v2, labels: {version: v2}, trafficPolicy: {connectionPool: {http: {maxRequestsPerConnection: 2}}}}\n")
		// VirtualService.
		if protocol == "TCP" || protocol == "TLS" {
			if protocol == "TCP" {
				w := next(101)
				fmt.Fprintf(&b, "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: s%d, namespace: default}\nspec:\n  hosts: [%s]\n  tcp:\n  - route:\n    - {destination: {host: %s, subset: v1}, weight: %d}\n    - {destination: {host: %s, subset: v2}, weight: %d}\n", s, host, host, w, host, 100-w)
			}
			continue
		}
		fmt.Fprintf(&b, "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: s%d, namespace: default}\nspec:\n  hosts: [%s]\n  http:\n", s, host)
		matches := []string{
			"",
			"    match: [{uri: {prefix: /a}}]\n",
			"    match: [{uri: {exact: /b}, method: {exact: GET}}]\n",
			"    match: [{uri: {regex: \"/c/[0-9]+\"}}]\n",
			"    match: [{queryParams: {q: {exact: \"1\"}}}]\n",
			"    match: [{headers: {x-user: {prefix: gold}}}]\n",
			"    match: [{sourceLabels: {app: client}}]\n",
			fmt.Sprintf("    match: [{port: %d}]\n", port),
		}
		for r := range 1 + next(3) {
			b.WriteString("  -")
			// The first key of the list item goes on the "-" line.
			if m := matches[next(len(matches))]; m != "" {
				b.WriteString(strings.TrimPrefix(m, "   "))
			} else {
				fmt.Fprintf(&b, " name: r%d\n", r)
			}
			switch next(4) {
			case 0:
				fmt.Fprintf(&b, "    redirect: {uri: /moved, authority: new.example.com, redirectCode: %d}\n", []int{301, 302, 308}[next(3)])
				continue
			case 1:
				b.WriteString("    rewrite: {uri: /v2, authority: internal.example.com}\n")
			case 2:
				b.WriteString("    corsPolicy: {allowOrigins: [{exact: \"https://a.example.com\"}], allowMethods: [GET], maxAge: 60s, allowCredentials: true}\n")
			}
			if next(2) == 0 {
				b.WriteString("    timeout: 2s\n    retries: {attempts: 3, perTryTimeout: 1s, retryOn: 5xx}\n")
			}
			if next(3) == 0 {
				b.WriteString("    fault: {abort: {percentage: {value: 1}, httpStatus: 503}}\n")
			}
			w := next(101)
			fmt.Fprintf(&b, "    route:\n    - {destination: {host: %s, subset: v1}, weight: %d}\n    - {destination: {host: %s, subset: v2}, weight: %d}\n", host, w, host, 100-w)
		}
	}
	return b.String()
}

// FuzzTranslate: for any valid mesh the generator makes, every resource
// translated for the golden proxies passes Envoy's ValidateAll, nothing is
// dropped as invalid, and translating the same input again (new snapshot,
// new cache) gives byte-identical resources.
func FuzzTranslate(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{2, 0, 1, 1, 2, 2, 0, 1, 2, 3, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3})
	f.Add([]byte{1, 2, 1, 0, 3, 1, 0, 2, 1, 6, 2, 0, 1, 40, 4, 3, 1, 0, 0, 70})
	f.Add(bytes.Repeat([]byte{7, 3, 1}, 30))
	f.Fuzz(func(t *testing.T, data []byte) {
		mesh := []byte(fuzzMesh(data))
		if res := config.Parse("fuzz.yaml", mesh); !res.Valid() {
			t.Fatalf("the generator made an invalid mesh: %v\n%s", res.Errors, mesh)
		}
		render := func() map[string][]byte {
			snap := meshtest.FromYAML(t, map[string][]byte{"fuzz.yaml": mesh})
			ctx := NewContext(snap, model.DefaultMeshConfig(), NewCache())
			out := map[string][]byte{}
			for _, gp := range goldenProxies {
				p := testProxyIP(t, gp.ip, gp.pod, gp.ns, gp.generator, gp.labels)
				for _, typ := range []string{ClusterType, ListenerType, RouteType} {
					for _, r := range ctx.Resources(p, typ).Resources {
						if v, ok := r.Msg.(validator); ok {
							if err := v.ValidateAll(); err != nil {
								t.Fatalf("%s %s for %s fails ValidateAll: %v\n%s", shortType(typ), r.Name, p.Name, err, mesh)
							}
						}
						b, err := proto.MarshalOptions{Deterministic: true}.Marshal(r.Msg)
						if err != nil {
							t.Fatal(err)
						}
						out[p.Name+" "+typ+" "+r.Name] = b
					}
				}
			}
			for _, e := range ctx.Errors() {
				if strings.Contains(e.Error(), "is invalid, not sent") {
					t.Fatalf("translation made an invalid resource: %v\n%s", e, mesh)
				}
			}
			return out
		}
		a, b := render(), render()
		if len(a) != len(b) {
			t.Fatalf("second translation has %d resources, first %d", len(b), len(a))
		}
		for k, v := range a {
			if !bytes.Equal(v, b[k]) {
				t.Fatalf("%s differs between two translations of the same input\n%s", k, mesh)
			}
		}
	})
}
