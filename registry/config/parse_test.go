package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	networking "istio.io/api/networking/v1alpha3"
	security "istio.io/api/security/v1beta1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/sextant-mesh/sextant/model"
)

func parseFile(t *testing.T, name string) *Result {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return Parse(name, data)
}

func TestParseValidFiles(t *testing.T) {
	for _, tc := range []struct {
		file  string
		kinds []string
	}{
		{"mesh.yaml", []string{
			KindServiceEntry, KindServiceEntry, KindWorkloadEntry, "VirtualService", "DestinationRule",
			"Sidecar", "PeerAuthentication", "AuthorizationPolicy", "RequestAuthentication", "Telemetry",
		}},
		{"kube.yaml", []string{KindService, KindService, KindService}},
		{"slices.yaml", []string{KindEndpointSlice}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			res := parseFile(t, tc.file)
			if len(res.Errors) != 0 {
				t.Fatalf("unexpected errors: %v", res.Errors)
			}
			if !res.Valid() {
				t.Fatal("Valid() = false")
			}
			var kinds []string
			for _, o := range res.Objects {
				kinds = append(kinds, o.Kind)
			}
			if strings.Join(kinds, ",") != strings.Join(tc.kinds, ",") {
				t.Fatalf("kinds = %v, want %v", kinds, tc.kinds)
			}
		})
	}
}

func TestParseObjectFields(t *testing.T) {
	res := parseFile(t, "mesh.yaml")
	se := res.Objects[0]
	if se.Location != "mesh.yaml:2 (doc 1)" {
		t.Errorf("Location = %q, want the first content line after the comment", se.Location)
	}
	if se.ID() != "ServiceEntry shop/payments" {
		t.Errorf("ID = %q", se.ID())
	}
	if want := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC); !se.CreationTime.Equal(want) {
		t.Errorf("CreationTime = %v, want %v", se.CreationTime, want)
	}
	if se.Labels["team"] != "billing" {
		t.Errorf("Labels = %v", se.Labels)
	}
	spec, ok := se.Spec.(*networking.ServiceEntry)
	if !ok {
		t.Fatalf("Spec is %T", se.Spec)
	}
	if spec.GetResolution() != networking.ServiceEntry_STATIC || len(spec.GetEndpoints()) != 2 ||
		spec.GetEndpoints()[0].GetPorts()["http"] != 28080 {
		t.Errorf("spec not decoded: %v", spec)
	}
	// The second document starts after the "---" on line 30.
	if got := res.Objects[1].Location; got != "mesh.yaml:31 (doc 2)" {
		t.Errorf("doc 2 Location = %q", got)
	}
	if _, ok := res.Objects[7].Spec.(*security.AuthorizationPolicy); !ok {
		t.Errorf("AuthorizationPolicy spec is %T", res.Objects[7].Spec)
	}

	kube := parseFile(t, "kube.yaml")
	svc, ok := kube.Objects[0].Spec.(*corev1.Service)
	if !ok || svc.Spec.Ports[1].TargetPort.StrVal != "grpc" {
		t.Fatalf("Service not decoded: %#v", kube.Objects[0].Spec)
	}
	if _, ok := parseFile(t, "slices.yaml").Objects[0].Spec.(*discoveryv1.EndpointSlice); !ok {
		t.Fatal("EndpointSlice not decoded")
	}
}

func TestParseDefaultsNamespace(t *testing.T) {
	res := Parse("x.yaml", []byte(`
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: r}
spec: {host: r}
---
apiVersion: v1
kind: Service
metadata: {name: s}
spec: {ports: [{port: 80}]}
`))
	if len(res.Errors) != 0 {
		t.Fatal(res.Errors)
	}
	for _, o := range res.Objects {
		if o.Namespace != "default" {
			t.Errorf("%s: namespace %q, want default", o.Kind, o.Namespace)
		}
		if !o.CreationTime.IsZero() {
			t.Errorf("%s: creation time %v, want zero", o.Kind, o.CreationTime)
		}
	}
	if ns := res.Objects[1].Spec.(*corev1.Service).Namespace; ns != "default" {
		t.Errorf("decoded Service namespace = %q", ns)
	}
}

func TestParseJSON(t *testing.T) {
	single := `{"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
 "metadata": {"name": "a"}, "spec": {"host": "a"}}`
	res := Parse("one.json", []byte(single))
	if len(res.Errors) != 0 || len(res.Objects) != 1 || res.Objects[0].Location != "one.json:1 (doc 1)" {
		t.Fatalf("single object: errors %v, objects %d, location %q", res.Errors, len(res.Objects), res.Objects[0].Location)
	}
	list := `[
  {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
   "metadata": {"name": "a"}, "spec": {"host": "a"}},
  {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
   "metadata": {"name": "b"}, "spec": {"host": "b", "bogus": 1}}
]`
	res = Parse("list.json", []byte(list))
	if len(res.Objects) != 1 || len(res.Errors) != 1 {
		t.Fatalf("objects %d, errors %v", len(res.Objects), res.Errors)
	}
	e := res.Errors[0]
	if e.Location != "list.json:5:53 (doc 2)" || e.Object != "DestinationRule default/b" || e.Field != "spec.bogus" {
		t.Errorf("error = %+v", e)
	}
}

func TestParseEmptyDocumentsSkipped(t *testing.T) {
	res := Parse("e.yaml", []byte("---\n# only a comment\n---\n\n---\napiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {ports: [{port: 80}]}\n"))
	if len(res.Errors) != 0 || len(res.Objects) != 1 {
		t.Fatalf("errors %v, objects %d", res.Errors, len(res.Objects))
	}
	if got := res.Objects[0].Location; got != "e.yaml:6 (doc 1)" {
		t.Errorf("Location = %q", got)
	}
}

// wantErr describes an expected ConfigError: every non-empty field must
// match (Location, Object and Field exactly, Message as a substring).
type wantErr struct {
	loc, obj, field, msg string
	warning              bool
}

func (w wantErr) matches(e model.ConfigError) bool {
	return (w.loc == "" || e.Location == w.loc) && (w.obj == "" || e.Object == w.obj) &&
		(w.field == "" || e.Field == w.field) && strings.Contains(e.Message, w.msg) && e.Warning == w.warning
}

const (
	vsHead = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: vs, namespace: ns1}\nspec:\n"
	drHead = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: dr}\nspec:\n"
	seHead = "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: se}\nspec:\n"
)

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		input string
		valid bool // no non-warning errors expected
		want  wantErr
	}{{
		name: "broken YAML in the second document",
		input: vsHead + "  hosts: [a]\n  http: [{route: [{destination: {host: a}}]}]\n---\n" +
			"apiVersion: v1\nkind: Service\nmetadata: {name: s\nspec: {}\n",
		want: wantErr{loc: "in.yaml:10 (doc 2)", msg: "invalid YAML: did not find expected ',' or '}'"},
	}, {
		name:  "unknown field in spec",
		input: vsHead + "  hosts: [a]\n  http:\n  - route:\n    - destination: {host: a}\n      wieght: 100\n",
		want:  wantErr{loc: "in.yaml:9:7 (doc 1)", obj: "VirtualService ns1/vs", field: "spec.http[0].route[0].wieght", msg: `unknown field "wieght"`},
	}, {
		name:  "unknown top-level field",
		input: drHead + "  host: a\nextra: 1\n",
		want:  wantErr{obj: "DestinationRule default/dr", field: "extra", msg: "unknown field"},
	}, {
		name:  "wrong type in spec",
		input: drHead + "  host: [a]\n",
		want:  wantErr{field: "spec.host", msg: "must be a string, not a list"},
	}, {
		name:  "invalid enum",
		input: seHead + "  hosts: [a.com]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  resolution: MAGIC\n",
		want:  wantErr{field: "spec.resolution", msg: `invalid value "MAGIC"`},
	}, {
		name:  "duration without seconds suffix",
		input: vsHead + "  hosts: [a]\n  http: [{route: [{destination: {host: a}}], timeout: 1m}]\n",
		want:  wantErr{field: "spec.http[0].timeout", msg: `invalid duration "1m"`},
	}, {
		name:  "two members of a oneof",
		input: vsHead + "  hosts: [a]\n  http:\n  - match: [{uri: {exact: /a, prefix: /b}}]\n    route: [{destination: {host: a}}]\n",
		want:  wantErr{field: "spec.http[0].match[0].uri", msg: `only one of "exact" and "prefix" may be set`},
	}, {
		name:  "unknown kind is a warning",
		input: "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw}\nspec: {}\n",
		valid: true,
		want:  wantErr{loc: "in.yaml:1 (doc 1)", msg: "unknown kind Gateway", warning: true},
	}, {
		name:  "unknown apiVersion is a warning",
		input: "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n",
		valid: true,
		want:  wantErr{msg: "unknown kind Deployment (apiVersion apps/v1), ignored", warning: true},
	}, {
		name:  "missing kind",
		input: "apiVersion: v1\nmetadata: {name: x}\n",
		want:  wantErr{msg: "apiVersion and kind are required"},
	}, {
		name:  "missing name",
		input: "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nspec: {host: a}\n",
		want:  wantErr{obj: "DestinationRule default/<unnamed>", field: "metadata.name", msg: "name is required"},
	}, {
		name:  "weights do not sum to 100",
		input: vsHead + "  hosts: [a]\n  http:\n  - route:\n    - {destination: {host: a, subset: v1}, weight: 50}\n    - {destination: {host: a, subset: v2}, weight: 40}\n",
		want:  wantErr{obj: "VirtualService ns1/vs", field: "spec.http[0].route", msg: "weights must sum to 100, got 90"},
	}, {
		name:  "unset weights of two destinations",
		input: vsHead + "  hosts: [a]\n  tcp:\n  - route:\n    - {destination: {host: a, subset: v1}}\n    - {destination: {host: b}}\n",
		want:  wantErr{field: "spec.tcp[0].route", msg: "got 0"},
	}, {
		name:  "negative weight",
		input: vsHead + "  hosts: [a]\n  http:\n  - route:\n    - {destination: {host: a}, weight: 110}\n    - {destination: {host: b}, weight: -10}\n",
		want:  wantErr{field: "spec.http[0].route[1].weight", msg: "must not be negative"},
	}, {
		name:  "single destination with weight 0 is fine",
		input: vsHead + "  hosts: [a]\n  http:\n  - route:\n    - {destination: {host: a}, weight: 0}\n",
		valid: true,
	}, {
		name:  "bad uri regex",
		input: vsHead + "  hosts: [a]\n  http:\n  - match: [{uri: {regex: \"a(b\"}}]\n    route: [{destination: {host: a}}]\n",
		want:  wantErr{field: "spec.http[0].match[0].uri.regex", msg: `invalid regex "a(b"`},
	}, {
		name:  "bad header regex (RE2 has no lookahead)",
		input: vsHead + "  hosts: [a]\n  http:\n  - match: [{headers: {x-user: {regex: \"(?!bob)\"}}}]\n    route: [{destination: {host: a}}]\n",
		want:  wantErr{field: `spec.http[0].match[0].headers["x-user"].regex`, msg: "invalid regex"},
	}, {
		name:  "upper-case header name",
		input: vsHead + "  hosts: [a]\n  http:\n  - match: [{headers: {X-User: {exact: a}}}]\n    route: [{destination: {host: a}}]\n",
		want:  wantErr{field: `spec.http[0].match[0].headers["X-User"]`, msg: "must be lower case"},
	}, {
		name:  "route and redirect",
		input: vsHead + "  hosts: [a]\n  http:\n  - redirect: {uri: /x}\n    route: [{destination: {host: a}}]\n",
		want:  wantErr{field: "spec.http[0]", msg: "both route and redirect"},
	}, {
		name:  "no route",
		input: vsHead + "  hosts: [a]\n  http:\n  - match: [{uri: {prefix: /}}]\n",
		want:  wantErr{field: "spec.http[0].route", msg: "must have a route, redirect or directResponse"},
	}, {
		name:  "empty destination host",
		input: vsHead + "  hosts: [a]\n  http:\n  - route: [{destination: {subset: v1}}]\n",
		want:  wantErr{field: "spec.http[0].route[0].destination.host", msg: "destination host is required"},
	}, {
		name:  "negative timeout",
		input: vsHead + "  hosts: [a]\n  http:\n  - route: [{destination: {host: a}}]\n    timeout: -2s\n",
		want:  wantErr{field: "spec.http[0].timeout", msg: "must not be negative"},
	}, {
		name:  "negative retry attempts",
		input: vsHead + "  hosts: [a]\n  http:\n  - route: [{destination: {host: a}}]\n    retries: {attempts: -1}\n",
		want:  wantErr{field: "spec.http[0].retries.attempts", msg: "must not be negative"},
	}, {
		name:  "fault percentage over 100",
		input: vsHead + "  hosts: [a]\n  http:\n  - route: [{destination: {host: a}}]\n    fault: {abort: {httpStatus: 500, percentage: {value: 150}}}\n",
		want:  wantErr{field: "spec.http[0].fault.abort.percentage", msg: "out of range 0-100"},
	}, {
		name:  "mirror percentage over 100",
		input: vsHead + "  hosts: [a]\n  http:\n  - route: [{destination: {host: a}}]\n    mirror: {host: b}\n    mirrorPercentage: {value: 101}\n",
		want:  wantErr{field: "spec.http[0].mirrorPercentage", msg: "out of range 0-100"},
	}, {
		name:  "vs without hosts",
		input: vsHead + "  http: [{route: [{destination: {host: a}}]}]\n",
		want:  wantErr{field: "spec.hosts", msg: "at least one host"},
	}, {
		name:  "wildcard vs host on the mesh gateway",
		input: vsHead + "  hosts: ['*']\n  http: [{route: [{destination: {host: a}}]}]\n",
		want:  wantErr{field: "spec.hosts[0]", msg: "not allowed for virtual services bound to the mesh gateway"},
	}, {
		name:  "bad vs host",
		input: vsHead + "  hosts: [foo.*.com]\n  http: [{route: [{destination: {host: a}}]}]\n",
		want:  wantErr{field: "spec.hosts[0]", msg: "wildcard is only allowed as the whole first label"},
	}, {
		name:  "tls sni not covered by hosts",
		input: vsHead + "  hosts: [a.example.com]\n  tls:\n  - match: [{sniHosts: [b.example.com]}]\n    route: [{destination: {host: b.example.com}}]\n",
		want:  wantErr{field: "spec.tls[0].match[0].sniHosts[0]", msg: "not covered"},
	}, {
		name:  "duplicate subset names",
		input: drHead + "  host: reviews\n  subsets:\n  - {name: v1, labels: {version: v1}}\n  - {name: v1, labels: {version: v2}}\n",
		want:  wantErr{obj: "DestinationRule default/dr", field: "spec.subsets[1].name", msg: `duplicate subset name "v1" (also spec.subsets[0])`},
	}, {
		name:  "subset without name",
		input: drHead + "  host: reviews\n  subsets: [{labels: {version: v1}}]\n",
		want:  wantErr{field: "spec.subsets[0].name", msg: "subset name is required"},
	}, {
		name:  "bad destination rule host",
		input: drHead + "  host: \"bad_host!\"\n",
		want:  wantErr{field: "spec.host", msg: `invalid host "bad_host!"`},
	}, {
		name:  "destination rule without host",
		input: drHead + "  subsets: [{name: v1}]\n",
		want:  wantErr{field: "spec.host", msg: "host is required"},
	}, {
		name:  "outlier percentage",
		input: drHead + "  host: a\n  trafficPolicy: {outlierDetection: {maxEjectionPercent: 150}}\n",
		want:  wantErr{field: "spec.trafficPolicy.outlierDetection.maxEjectionPercent", msg: "out of range 0-100"},
	}, {
		name:  "negative connection pool",
		input: drHead + "  host: a\n  subsets:\n  - name: v1\n    trafficPolicy: {connectionPool: {http: {maxRetries: -1}}}\n",
		want:  wantErr{field: "spec.subsets[0].trafficPolicy.connectionPool.http.maxRetries", msg: "must not be negative"},
	}, {
		name:  "ring size",
		input: drHead + "  host: a\n  trafficPolicy: {loadBalancer: {consistentHash: {useSourceIp: true, ringHash: {minimumRingSize: 100000000}}}}\n",
		want:  wantErr{field: "spec.trafficPolicy.loadBalancer.consistentHash.ringHash.minimumRingSize", msg: "is more than"},
	}, {
		name:  "empty traffic policy",
		input: drHead + "  host: a\n  trafficPolicy: {}\n",
		want:  wantErr{field: "spec.trafficPolicy", msg: "at least one field"},
	}, {
		name:  "service entry without hosts",
		input: seHead + "  ports: [{number: 80, name: http, protocol: HTTP}]\n",
		want:  wantErr{field: "spec.hosts", msg: "at least one host"},
	}, {
		name:  "service entry without ports",
		input: seHead + "  hosts: [a.com]\n",
		want:  wantErr{field: "spec.ports", msg: "at least one port"},
	}, {
		name:  "service entry bad host",
		input: seHead + "  hosts: [\"-a.com\"]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n",
		want:  wantErr{field: "spec.hosts[0]", msg: `invalid host "-a.com"`},
	}, {
		name:  "service entry duplicate port number",
		input: seHead + "  hosts: [a.com]\n  ports:\n  - {number: 80, name: http, protocol: HTTP}\n  - {number: 80, name: tcp, protocol: TCP}\n",
		want:  wantErr{field: "spec.ports[1].number", msg: "duplicate port number 80"},
	}, {
		name:  "service entry duplicate port name",
		input: seHead + "  hosts: [a.com]\n  ports:\n  - {number: 80, name: http, protocol: HTTP}\n  - {number: 81, name: http, protocol: HTTP}\n",
		want:  wantErr{field: "spec.ports[1].name", msg: `duplicate port name "http"`},
	}, {
		name:  "service entry port out of range",
		input: seHead + "  hosts: [a.com]\n  ports: [{number: 70000, name: http, protocol: HTTP}]\n",
		want:  wantErr{field: "spec.ports[0].number", msg: "out of range 1-65535"},
	}, {
		name:  "service entry unknown protocol",
		input: seHead + "  hosts: [a.com]\n  ports: [{number: 80, name: http, protocol: GOPHER}]\n",
		want:  wantErr{field: "spec.ports[0].protocol", msg: `unsupported protocol "GOPHER"`},
	}, {
		name:  "static resolution needs IP endpoints",
		input: seHead + "  hosts: [a.com]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  resolution: STATIC\n  endpoints: [{address: a.example.com}]\n",
		want:  wantErr{field: "spec.endpoints[0].address", msg: "must be an IP address or unix:// socket"},
	}, {
		name:  "static resolution with unix socket",
		input: seHead + "  hosts: [a.com]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  resolution: STATIC\n  endpoints: [{address: unix:///var/run/a.sock}]\n",
		valid: true,
	}, {
		name:  "endpoint port not declared",
		input: seHead + "  hosts: [a.com]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  resolution: STATIC\n  endpoints: [{address: 1.2.3.4, ports: {grpc: 90}}]\n",
		want:  wantErr{field: `spec.endpoints[0].ports["grpc"]`, msg: `port "grpc" is not declared`},
	}, {
		name:  "DNS wildcard without endpoints",
		input: seHead + "  hosts: [\"*.a.com\"]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  resolution: DNS\n",
		want:  wantErr{field: "spec.hosts[0]", msg: "not allowed with resolution DNS and no endpoints"},
	}, {
		name:  "selector and endpoints",
		input: seHead + "  hosts: [a.com]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  resolution: STATIC\n  workloadSelector: {labels: {app: a}}\n  endpoints: [{address: 1.2.3.4}]\n",
		want:  wantErr{field: "spec.workloadSelector", msg: "only one of workloadSelector or endpoints"},
	}, {
		name:  "sidecar host without namespace",
		input: "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: default}\nspec:\n  egress: [{hosts: [foo.com]}]\n",
		want:  wantErr{field: "spec.egress[0].hosts[0]", msg: "namespace/host form"},
	}, {
		name:  "sidecar bad namespace",
		input: "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: default}\nspec:\n  egress: [{hosts: [\"Bad_NS/*\"]}]\n",
		want:  wantErr{field: "spec.egress[0].hosts[0]", msg: `invalid namespace "Bad_NS"`},
	}, {
		name:  "workload entry without address",
		input: "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {name: we}\nspec: {labels: {app: a}}\n",
		want:  wantErr{obj: "WorkloadEntry default/we", field: "spec.address", msg: "address is required"},
	}, {
		name:  "workload entry port out of range",
		input: "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {name: we}\nspec: {address: 1.2.3.4, ports: {http: 0}}\n",
		want:  wantErr{field: `spec.ports["http"]`, msg: "out of range 1-65535"},
	}, {
		name:  "peer authentication port without selector",
		input: "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: pa}\nspec:\n  portLevelMtls: {8080: {mode: DISABLE}}\n",
		want:  wantErr{field: "spec.portLevelMtls", msg: "requires a workload selector"},
	}, {
		name:  "authorization condition without values",
		input: "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: ap}\nspec:\n  rules: [{when: [{key: \"request.auth.claims[iss]\"}]}]\n",
		want:  wantErr{field: "spec.rules[0].when[0]", msg: "values or notValues"},
	}, {
		name:  "request authentication without issuer",
		input: "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: ra}\nspec:\n  jwtRules: [{jwksUri: \"ftp://x\"}]\n",
		want:  wantErr{field: "spec.jwtRules[0].issuer", msg: "issuer is required"},
	}, {
		name:  "telemetry tag override UPSERT without value",
		input: "apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: t}\nspec:\n  metrics: [{overrides: [{tagOverrides: {x: {operation: UPSERT}}}]}]\n",
		want:  wantErr{obj: "Telemetry default/t", field: `spec.metrics[0].overrides[0].tagOverrides["x"].value`, msg: "requires a value"},
	}, {
		name:  "telemetry unknown field",
		input: "apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: t}\nspec:\n  metric: []\n",
		want:  wantErr{field: "spec.metric", msg: "unknown field"},
	}, {
		name:  "telemetry unsupported provider is a warning",
		input: "apiVersion: telemetry.istio.io/v1alpha1\nkind: Telemetry\nmetadata: {name: t}\nspec:\n  accessLogging: [{providers: [{name: otel}]}]\n",
		valid: true,
		want:  wantErr{field: "spec.accessLogging[0].providers[0].name", msg: `"otel" is not supported`, warning: true},
	}, {
		name:  "service unknown field is strict",
		input: "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  ports: [{port: 80, targetPrt: 8080}]\n",
		want:  wantErr{obj: "Service default/s", field: "spec.ports[0].targetPrt", msg: `unknown field "targetPrt"`},
	}, {
		name:  "service field names are case-sensitive",
		input: "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  Ports: [{port: 80}]\n",
		want:  wantErr{field: "spec.Ports", msg: "unknown field"},
	}, {
		name:  "service duplicate port names",
		input: "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  ports: [{name: http, port: 80}, {name: http, port: 81}]\n",
		want:  wantErr{field: "spec.ports[1].name", msg: "duplicate port name"},
	}, {
		name:  "service bad name",
		input: "apiVersion: v1\nkind: Service\nmetadata: {name: 1abc}\nspec:\n  ports: [{port: 80}]\n",
		want:  wantErr{field: "metadata.name", msg: "RFC 1035"},
	}, {
		name:  "endpoint slice without service label",
		input: "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: es}\naddressType: IPv4\nendpoints: [{addresses: [1.2.3.4]}]\n",
		want:  wantErr{obj: "EndpointSlice default/es", field: `metadata.labels["kubernetes.io/service-name"]`, msg: "is required"},
	}, {
		name:  "endpoint slice address of the wrong type",
		input: "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: es, labels: {kubernetes.io/service-name: s}}\naddressType: IPv4\nendpoints: [{addresses: [\"::1\"]}]\n",
		want:  wantErr{field: "endpoints[0].addresses[0]", msg: "not a valid IPv4 address"},
	}, {
		name:  "endpoint slice without address type",
		input: "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: es, labels: {kubernetes.io/service-name: s}}\nendpoints: [{addresses: [1.2.3.4]}]\n",
		want:  wantErr{field: "addressType", msg: "addressType is required"},
	}, {
		name:  "duplicate object in one input",
		input: drHead + "  host: a\n---\n" + drHead + "  host: b\n",
		want:  wantErr{loc: "in.yaml:9:12 (doc 2)", field: "metadata.name", msg: "duplicate object: also defined at in.yaml:1 (doc 1)"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			res := Parse("in.yaml", []byte(tc.input))
			if res.Valid() != tc.valid {
				t.Errorf("Valid() = %v, want %v; errors: %v", res.Valid(), tc.valid, res.Errors)
			}
			if tc.want == (wantErr{}) {
				if len(res.Errors) != 0 {
					t.Errorf("unexpected errors: %v", res.Errors)
				}
				return
			}
			for _, e := range res.Errors {
				if tc.want.matches(e) {
					return
				}
			}
			t.Errorf("no error matches %+v; got:", tc.want)
			for _, e := range res.Errors {
				t.Errorf("  %s (warning=%v)", e.Error(), e.Warning)
			}
		})
	}
}

func TestParseKeepsValidObjectsOfInvalidInput(t *testing.T) {
	res := Parse("in.yaml", []byte(drHead+"  host: a\n---\n"+vsHead+"  hosts: [a]\n"))
	if res.Valid() {
		t.Fatal("Valid() = true for a VirtualService without routes")
	}
	if len(res.Objects) != 1 || res.Objects[0].Kind != "DestinationRule" {
		t.Fatalf("Objects = %v, want only the DestinationRule", res.Objects)
	}
}

// TestParseCached: a second parse reuses the objects of unchanged documents
// (same pointers' specs), re-decodes the changed one, keeps locations
// current, and still reports duplicates and errors.
func TestParseCached(t *testing.T) {
	doc := func(name, ip string) string {
		return "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata:\n  name: " + name + "\n  namespace: default\nspec:\n  address: " + ip + "\n"
	}
	in1 := doc("a", "10.0.0.1") + "---\n" + doc("b", "10.0.0.2")
	res1, cache := ParseCached("f.yaml", []byte(in1), DocCache{})
	if !res1.Valid() || len(res1.Objects) != 2 || len(cache) != 2 {
		t.Fatalf("first parse: %d objects, %d cached, errors %v", len(res1.Objects), len(cache), res1.Errors)
	}
	// b changes; a moves down by one document.
	in2 := doc("c", "10.0.0.3") + "---\n" + doc("a", "10.0.0.1") + "---\n" + doc("b", "10.0.0.9")
	res2, cache2 := ParseCached("f.yaml", []byte(in2), cache)
	if !res2.Valid() || len(res2.Objects) != 3 || len(cache2) != 3 {
		t.Fatalf("second parse: %d objects, %d cached, errors %v", len(res2.Objects), len(cache2), res2.Errors)
	}
	if res2.Objects[1].Spec != res1.Objects[0].Spec {
		t.Error("unchanged document a was decoded again")
	}
	if res2.Objects[2].Spec == res1.Objects[1].Spec {
		t.Error("changed document b was not decoded again")
	}
	if got := res2.Objects[1].Location; got != "f.yaml:9 (doc 2)" {
		t.Errorf("moved document's location = %q, want f.yaml:9 (doc 2)", got)
	}
	if res1.Objects[0].Location != "f.yaml:1 (doc 1)" {
		t.Errorf("the first result's object changed location to %q", res1.Objects[0].Location)
	}
	// A cached document repeated is still a duplicate.
	res3, _ := ParseCached("f.yaml", []byte(in1+"---\n"+doc("a", "10.0.0.1")), cache2)
	if res3.Valid() {
		t.Fatal("duplicate of a cached document accepted")
	}
	if want := "WorkloadEntry default/a"; len(res3.Errors) != 1 || res3.Errors[0].Object != want {
		t.Fatalf("errors %+v, want one naming %s", res3.Errors, want)
	}
}

// Parts of an AuthorizationPolicy that Sextant cannot enforce exactly are
// warnings (the object is kept and translated failing closed), so that
// sextantctl analyze shows them.
func TestAuthorizationPolicyFailClosedWarnings(t *testing.T) {
	res := Parse("ap.yaml", []byte(`apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ap, namespace: default}
spec:
  rules: [{when: [{key: "request.regex.headers[x]", values: [a]}]}]
`))
	if len(res.Objects) != 1 {
		t.Fatalf("objects = %d, want it kept", len(res.Objects))
	}
	var msgs []string
	for _, e := range res.Errors {
		if !e.Warning {
			t.Errorf("error, want warning: %v", e)
		}
		msgs = append(msgs, e.Error())
	}
	all := strings.Join(msgs, "\n")
	for _, want := range []string{`condition key "request.regex.headers[x]" is not supported: the rule is left out`} {
		if !strings.Contains(all, want) {
			t.Errorf("missing warning %q in:\n%s", want, all)
		}
	}
}

// Errors point at the field's own line and column, in any document, also
// for YAML syntax errors (whose line goes into the location, not the
// message).
func TestErrorPositions(t *testing.T) {
	var b strings.Builder
	for i := range 50 {
		fmt.Fprintf(&b, "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: dr%d}\nspec:\n  host: a\n", i)
	}
	// Document 51 starts on line 301.
	b.WriteString(`---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: vs
  labels: {"a.b/c": ok}
spec:
  hosts: [a]
  http:
  - route:
    - destination: {host: a}
      weight: 60
    - destination: {host: a}
      weight: 50
---
apiVersion: v1
kind: Service
metadata: {name: s
spec: {}
`)
	res := Parse("many.yaml", []byte(b.String()))
	got := map[string]string{}
	for _, e := range res.Errors {
		got[e.Field+"|"+e.Message] = e.Location
	}
	for key, want := range map[string]string{
		"spec.http[0].route|destination weights must sum to 100, got 110": "many.yaml:310:5 (doc 51)",
		"|invalid YAML: did not find expected ',' or '}'":                 "many.yaml:318 (doc 52)",
	} {
		if got[key] != want {
			t.Errorf("%s: location %q, want %q (all: %v)", key, got[key], want, res.Errors)
		}
	}
	pos := newPosition([]byte("metadata:\n  labels: {\"a.b/c\": ok}\nspec:\n  x: [1, {y: 2}]\n"), 10)
	for field, want := range map[string][2]int{
		`metadata.labels["a.b/c"]`: {11, 12},
		`spec.x[1].y`:              {13, 11},
		`spec.missing`:             {12, 1}, // the nearest written ancestor
		`nothing`:                  {0, 0},
	} {
		if l, c := pos.of(field); l != want[0] || c != want[1] {
			t.Errorf("of(%s) = %d:%d, want %d:%d", field, l, c, want[0], want[1])
		}
	}
}
