package translate

import (
	"strings"
	"testing"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	extauthzhttp "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	jwtv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/wrapperspb"
	security "istio.io/api/security/v1beta1"

	"github.com/sextant-mesh/sextant/internal/meshtest"
	"github.com/sextant-mesh/sextant/model"
)

func apConfig(ns, name string, ap *security.AuthorizationPolicy) *model.Config {
	return &model.Config{Key: model.ConfigKey{Kind: model.KindAuthorizationPolicy, Namespace: ns, Name: name}, Spec: ap}
}

func errStrings(errs []error) string {
	var s []string
	for _, e := range errs {
		s = append(s, e.Error())
	}
	return strings.Join(s, "\n")
}

func TestRBACEmptyPolicyDeniesAllowsNothing(t *testing.T) {
	pols := authzPolicies{allow: []*model.Config{apConfig("default", "deny-all", &security.AuthorizationPolicy{})}}
	for _, f := range []rbacFlavor{flavorHTTP, flavorTCP, flavorGRPC} {
		s, errs := buildRBAC(pols, model.DefaultMeshConfig(), f, nil)
		if len(errs) != 0 {
			t.Fatalf("flavor %d: errors %v", f, errs)
		}
		if s.allow == nil || s.allow.rules == nil || s.allow.rules.Action != rbacv3.RBAC_ALLOW {
			t.Fatalf("flavor %d: want an ALLOW filter, got %+v", f, s.allow)
		}
		if len(s.allow.rules.Policies) != 1 {
			t.Fatalf("flavor %d: want the never-matching policy, got %v", f, sortedPolicyNames(s.allow.rules))
		}
		for _, p := range s.allow.rules.Policies {
			if diff := cmp.Diff(rbacMatchNever(), p, protocmp.Transform()); diff != "" {
				t.Errorf("flavor %d: policy differs from match-never: %s", f, diff)
			}
		}
	}
}

// An ALLOW rule that needs HTTP fields is left out on TCP (so the ALLOW
// filter allows nothing); a DENY rule with HTTP fields denies all TCP.
func TestRBACHTTPFieldsOnTCP(t *testing.T) {
	rule := &security.Rule{To: []*security.Rule_To{{Operation: &security.Operation{Methods: []string{"GET"}}}}}
	pols := authzPolicies{
		allow: []*model.Config{apConfig("default", "get", &security.AuthorizationPolicy{Rules: []*security.Rule{rule}})},
		deny:  []*model.Config{apConfig("default", "no-get", &security.AuthorizationPolicy{Action: security.AuthorizationPolicy_DENY, Rules: []*security.Rule{rule}})},
	}
	s, errs := buildRBAC(pols, model.DefaultMeshConfig(), flavorTCP, nil)
	if len(errs) != 0 {
		t.Fatalf("HTTP-only fields on TCP are Istio's documented behaviour, not errors: %v", errs)
	}
	if n := len(s.allow.rules.Policies); n != 0 {
		t.Errorf("ALLOW on TCP has %d policies, want 0 (rule dropped)", n)
	}
	p := s.deny.rules.Policies["ns[default]-policy[no-get]-rule[0]"]
	if p == nil {
		t.Fatalf("DENY rule missing on TCP: %v", sortedPolicyNames(s.deny.rules))
	}
	want := &rbacv3.Permission{Rule: &rbacv3.Permission_AndRules{AndRules: &rbacv3.Permission_Set{Rules: []*rbacv3.Permission{permAny()}}}}
	if diff := cmp.Diff(want, p.Permissions[0], protocmp.Transform()); diff != "" {
		t.Errorf("DENY on TCP should match any request: %s", diff)
	}
	// On HTTP both rules keep the method.
	hs, _ := buildRBAC(pols, model.DefaultMeshConfig(), flavorHTTP, nil)
	if len(hs.allow.rules.Policies) != 1 {
		t.Errorf("ALLOW on HTTP lost its rule")
	}
}

// Proxyless gRPC servers cannot read JWT metadata: an ALLOW rule on
// requestPrincipals is left out; a DENY condition on it is ignored (the
// rule denies more). Both are reported.
func TestRBACGRPCFailsClosed(t *testing.T) {
	rule := &security.Rule{
		From: []*security.Rule_From{{Source: &security.Source{RequestPrincipals: []string{"*"}}}},
		To:   []*security.Rule_To{{Operation: &security.Operation{Paths: []string{"/pkg.Svc/Get"}}}},
	}
	pols := authzPolicies{
		allow: []*model.Config{apConfig("default", "jwt", &security.AuthorizationPolicy{Rules: []*security.Rule{rule}})},
		deny:  []*model.Config{apConfig("default", "jwt-deny", &security.AuthorizationPolicy{Action: security.AuthorizationPolicy_DENY, Rules: []*security.Rule{rule}})},
	}
	s, errs := buildRBAC(pols, model.DefaultMeshConfig(), flavorGRPC, nil)
	if len(errs) != 2 {
		t.Fatalf("want 2 reported problems, got:\n%s", errStrings(errs))
	}
	if len(s.allow.rules.Policies) != 0 {
		t.Errorf("ALLOW rule with requestPrincipals must be left out for gRPC")
	}
	p := s.deny.rules.Policies["default-jwt-deny-0"]
	if p == nil {
		t.Fatalf("DENY rule missing: %v", sortedPolicyNames(s.deny.rules))
	}
	want := &rbacv3.Principal{Identifier: &rbacv3.Principal_AndIds{AndIds: &rbacv3.Principal_Set{Ids: []*rbacv3.Principal{princAny()}}}}
	if diff := cmp.Diff(want, p.Principals[0], protocmp.Transform()); diff != "" {
		t.Errorf("DENY principal should be widened to any: %s", diff)
	}
}

func TestRBACCustomWithoutProviderDenies(t *testing.T) {
	pols := authzPolicies{custom: []*model.Config{apConfig("default", "ext", &security.AuthorizationPolicy{
		Action: security.AuthorizationPolicy_CUSTOM, ActionDetail: &security.AuthorizationPolicy_Provider{Provider: &security.AuthorizationPolicy_ExtensionProvider{Name: "opa"}},
		Rules: []*security.Rule{{}},
	})}}
	s, errs := buildRBAC(pols, model.DefaultMeshConfig(), flavorHTTP, nil)
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "denied") {
		t.Fatalf("want one report, got %v", errs)
	}
	if s.custom == nil || s.custom.Action != rbacv3.RBAC_DENY || len(s.custom.Policies) != 1 {
		t.Fatalf("CUSTOM without a provider must deny its traffic: %+v", s.custom)
	}
	filters := httpRBACFilters(s)
	if len(filters) != 1 || filters[0].Name != RBACHTTPFilter {
		t.Errorf("filters = %v", filters)
	}
}

func TestTrustDomainAliases(t *testing.T) {
	mesh := model.DefaultMeshConfig()
	mesh.TrustDomain = "new.example"
	mesh.TrustDomainAliases = []string{"old.example"}
	got := trustDomainAliases(mesh, []string{
		"cluster.local/ns/a/sa/b", // the local alias: every trust domain of the mesh
		"old.example/ns/a/sa/c",   // an alias: every trust domain
		"other.example/ns/a/sa/d", // foreign: as written
		"*/ns/a/sa/e",             // any trust domain: as written
		"sleep",                   // not an identity: as written
	})
	want := []string{
		"new.example/ns/a/sa/b", "old.example/ns/a/sa/b",
		"new.example/ns/a/sa/c", "old.example/ns/a/sa/c",
		"other.example/ns/a/sa/d", "*/ns/a/sa/e", "sleep",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("aliases (-want +got):\n%s", diff)
	}
}

func TestRequestPrincipalSplitsAtLastSlash(t *testing.T) {
	p := requestPrincipal("https://issuer.example.com/alice")
	ids := p.GetAndIds().GetIds()
	if len(ids) != 2 {
		t.Fatalf("want iss and sub matchers, got %v", p)
	}
	if got := ids[0].GetMetadata().GetValue().GetStringMatch().GetExact(); got != "https://issuer.example.com" {
		t.Errorf("iss = %q", got)
	}
	if got := ids[1].GetMetadata().GetValue().GetStringMatch().GetExact(); got != "alice" {
		t.Errorf("sub = %q", got)
	}
	if f := ids[0].GetMetadata().GetFilter(); f != JWTAuthnFilter {
		t.Errorf("filter = %q", f)
	}
}

func TestKnownConditionKey(t *testing.T) {
	for k, want := range map[string]bool{
		"request.auth.claims[groups]":              true,
		"request.auth.claims[a][b]":                true,
		"request.headers[x-user]":                  true,
		"request.headers":                          false,
		"experimental.envoy.filters.a.b[c]":        true,
		"source.ip":                                true,
		"destination.port":                         true,
		"request.regex.headers[x]":                 false,
		"source.unknown":                           false,
		"connection.sni":                           true,
		"request.auth.principal":                   true,
		"request.auth.audiences":                   true,
		"request.auth.presenter":                   true,
		"remote.ip":                                true,
		"source.namespace":                         true,
		"source.principal":                         true,
		"destination.ip":                           true,
		"experimental.envoy.filters.network.mysql": false,
	} {
		if got := KnownConditionKey(k); got != want {
			t.Errorf("KnownConditionKey(%q) = %v, want %v", k, got, want)
		}
	}
}

// Keys fetched by discovery/jwks (a KindJWKS config) are inlined for the
// jwksUri instead of the key set that refuses every token.
func TestJWTFetchedKeysInlined(t *testing.T) {
	agg := model.NewAggregator()
	if err := meshtest.Load(agg.NewShard("file"), map[string][]byte{"ra.yaml": []byte(`apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: default}
spec:
  jwtRules:
  - {issuer: "https://issuer.example", jwksUri: "https://issuer.example/jwks"}
`)}); err != nil {
		t.Fatal(err)
	}
	translateJWT := func() (string, []error) {
		snap, _ := agg.Build()
		ctx := NewContext(snap, model.DefaultMeshConfig(), NewCache())
		f, _ := ctx.jwtFilter("default", nil)
		cfg := &jwtv3.JwtAuthentication{}
		if err := f.GetTypedConfig().UnmarshalTo(cfg); err != nil {
			t.Fatal(err)
		}
		return cfg.Providers["origins-0"].GetLocalJwks().GetInlineString(), ctx.Errors()
	}
	if got, errs := translateJWT(); got != FailedJWKS || len(errs) != 1 {
		t.Fatalf("before the fetch: keys %q, errors %v", got, errs)
	}
	keys := `{"keys":[{"kty":"oct","kid":"fetched"}]}`
	sh := agg.NewShard("jwks")
	sh.Update(func(tx *model.Txn) {
		tx.SetConfig(&model.Config{Key: model.ConfigKey{Kind: model.KindJWKS, Name: "https://issuer.example/jwks"}, Spec: wrapperspb.String(keys)})
	})
	sh.MarkSynced()
	if got, errs := translateJWT(); got != keys || len(errs) != 0 {
		t.Fatalf("after the fetch: keys %q, errors %v", got, errs)
	}
}

// CUSTOM with mesh extensionProviders: RBAC shadow rules select what
// ext_authz checks, per provider; an unknown provider, and an HTTP
// provider on a TCP chain, deny instead.
func TestCustomExtAuthz(t *testing.T) {
	snap := meshtest.FromYAML(t, map[string][]byte{"mesh.yaml": []byte(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}, {number: 3306, name: tcp, protocol: TCP}]
  endpoints: [{address: 10.1.0.1, labels: {app: reviews}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: authz, namespace: istio-system}
spec:
  hosts: [authz.istio-system.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 8000, name: http, protocol: HTTP}, {number: 9000, name: grpc, protocol: GRPC}]
  endpoints: [{address: 10.5.0.1}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: http-check, namespace: default}
spec:
  selector: {matchLabels: {app: reviews}}
  action: CUSTOM
  provider: {name: http-authz}
  rules: [{to: [{operation: {paths: [/admin/*]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: grpc-check, namespace: default}
spec:
  selector: {matchLabels: {app: reviews}}
  action: CUSTOM
  provider: {name: grpc-authz}
  rules: [{}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: unknown-check, namespace: default}
spec:
  selector: {matchLabels: {app: reviews}}
  action: CUSTOM
  provider: {name: nobody}
  rules: [{to: [{operation: {ports: ["9080"]}}]}]
`)})
	mesh := model.DefaultMeshConfig()
	mesh.ExtensionProviders = []model.ExtAuthzProvider{
		{Name: "http-authz", Service: "authz.istio-system.svc.cluster.local", Port: 8000, PathPrefix: "/check", IncludeRequestHeadersInCheck: []string{"x-user"}},
		{Name: "grpc-authz", GRPC: true, Service: "istio-system/authz.istio-system.svc.cluster.local", Port: 9000, FailOpen: true},
	}
	ctx := NewContext(snap, mesh, NewCache())
	p := testProxyIP(t, "10.1.0.1", "reviews", "default", "", map[string]string{"app": "reviews"})
	vi := ctx.Resources(p, ListenerType).Get(VirtualInbound)
	if vi == nil {
		t.Fatal("no virtualInbound")
	}
	l := vi.Msg.(*listenerv3.Listener)
	if err := l.ValidateAll(); err != nil {
		t.Fatalf("virtualInbound fails ValidateAll: %v", err)
	}
	chain := func(name string) *listenerv3.FilterChain {
		for _, fc := range l.FilterChains {
			if fc.Name == name {
				return fc
			}
		}
		t.Fatalf("no chain %s", name)
		return nil
	}
	hcm := &hcmv3.HttpConnectionManager{}
	if err := chain("inbound|9080||").Filters[0].GetTypedConfig().UnmarshalTo(hcm); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range hcm.HttpFilters {
		names = append(names, f.Name)
	}
	want := []string{RBACHTTPFilter, RBACHTTPFilter, ExtAuthzHTTPFilter, RBACHTTPFilter, ExtAuthzHTTPFilter, CorsFilter, FaultFilter, RouterFilter}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Errorf("HTTP filters (-want +got):\n%s", diff)
	}
	// grpc-authz sorts first.
	ea := &extauthzhttp.ExtAuthz{}
	if err := hcm.HttpFilters[2].GetTypedConfig().UnmarshalTo(ea); err != nil {
		t.Fatal(err)
	}
	if ea.GetGrpcService().GetEnvoyGrpc().GetClusterName() != "outbound|9000||authz.istio-system.svc.cluster.local" || !ea.GetFailureModeAllow() {
		t.Errorf("grpc ext_authz = %v", ea)
	}
	if err := hcm.HttpFilters[4].GetTypedConfig().UnmarshalTo(ea); err != nil {
		t.Fatal(err)
	}
	if ea.GetHttpService().GetServerUri().GetCluster() != "outbound|8000||authz.istio-system.svc.cluster.local" || ea.GetHttpService().GetPathPrefix() != "/check" {
		t.Errorf("http ext_authz = %v", ea)
	}
	var tcpNames []string
	for _, f := range chain("inbound|3306||").Filters {
		tcpNames = append(tcpNames, f.Name)
	}
	// The unknown and the HTTP provider deny (one RBAC), the gRPC provider
	// checks.
	if diff := cmp.Diff([]string{RBACNetworkFilter, RBACNetworkFilter, ExtAuthzNetworkFilter, "envoy.filters.network.tcp_proxy"}, tcpNames); diff != "" {
		t.Errorf("TCP filters (-want +got):\n%s", diff)
	}
	errs := errStrings(ctx.Errors())
	for _, w := range []string{`provider "nobody": the mesh config has no extensionProviders entry`, `provider "http-authz": an HTTP provider cannot check TCP traffic`} {
		if !strings.Contains(errs, w) {
			t.Errorf("missing report %q in:\n%s", w, errs)
		}
	}
}

// grpc-go evaluates connection.sni against "" only: a DENY on it would
// never apply, so for proxyless servers the condition is dropped (the DENY
// rule matches more) and reported.
func TestRBACGRPCNoSNI(t *testing.T) {
	rule := &security.Rule{When: []*security.Condition{{Key: "connection.sni", Values: []string{"a.example.com"}}}}
	pols := authzPolicies{deny: []*model.Config{apConfig("default", "sni", &security.AuthorizationPolicy{Action: security.AuthorizationPolicy_DENY, Rules: []*security.Rule{rule}})}}
	s, errs := buildRBAC(pols, model.DefaultMeshConfig(), flavorGRPC, nil)
	if len(errs) != 1 {
		t.Fatalf("errors = %v", errs)
	}
	want := &rbacv3.Permission{Rule: &rbacv3.Permission_AndRules{AndRules: &rbacv3.Permission_Set{Rules: []*rbacv3.Permission{permAny()}}}}
	if diff := cmp.Diff(want, s.deny.rules.Policies["default-sni-0"].Permissions[0], protocmp.Transform()); diff != "" {
		t.Errorf("DENY on SNI for gRPC should match any request: %s", diff)
	}
}
