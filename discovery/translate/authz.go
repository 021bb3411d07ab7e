package translate

import (
	"fmt"
	"net/netip"
	"regexp"
	"sort"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	uritemplate "github.com/envoyproxy/go-control-plane/envoy/extensions/path/match/uri_template/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	security "istio.io/api/security/v1beta1"

	"github.com/sextant-mesh/sextant/model"
)

// Filter names and metadata keys of access control, as istiod emits them.
const (
	RBACHTTPFilter    = "envoy.filters.http.rbac"
	RBACNetworkFilter = "envoy.filters.network.rbac"
	// RBACGRPCDenyFilter is the DENY filter's name for proxyless gRPC, which
	// requires unique HTTP filter names.
	RBACGRPCDenyFilter = "envoy.filters.http.rbac.DENY"
	// JWTAuthnFilter publishes a verified token's payload as dynamic
	// metadata under jwtPayloadKey; request principals and claims are
	// matched there, as Istio does.
	JWTAuthnFilter = "envoy.filters.http.jwt_authn"
	jwtPayloadKey  = "payload"

	rbacTCPStatPrefix     = "tcp."
	dryRunAllowStatPrefix = "istio_dry_run_allow_"
	dryRunDenyStatPrefix  = "istio_dry_run_deny_"
	dryRunAnnotation      = "istio.io/dry-run"
	badCustomSuffix       = "-deny-due-to-bad-CUSTOM-action"
	extAuthzPrefix        = "istio-ext-authz-"
)

// AuthzError is an AuthorizationPolicy, or a part of one, that Sextant
// could not translate exactly. What was sent instead never allows more than
// the policy does: an ALLOW rule is left out; a DENY condition is widened.
type AuthzError struct {
	Policy string // namespace/name
	Rule   int    // -1 for the whole policy
	Msg    string
}

func (e *AuthzError) Error() string {
	if e.Rule < 0 {
		return "AuthorizationPolicy " + e.Policy + ": " + e.Msg
	}
	return "AuthorizationPolicy " + e.Policy + " rule " + strconv.Itoa(e.Rule) + ": " + e.Msg
}

// authzPolicies are the AuthorizationPolicies that apply to one workload,
// by action, each list oldest first.
type authzPolicies struct {
	custom, deny, allow, audit []*model.Config
	hash                       uint64
}

func (a authzPolicies) empty() bool {
	return len(a.custom)+len(a.deny)+len(a.allow)+len(a.audit) == 0
}

// authzPoliciesFor selects, as Istio does for a sidecar or proxyless
// server, the policies of the root namespace and of the workload's
// namespace whose selector is empty or matches its labels. Policies with
// targetRef(s) bind gateways and waypoints, not workloads, and are skipped.
func (c *Context) authzPoliciesFor(ns string, labels map[string]string) authzPolicies {
	var out authzPolicies
	h := &model.Hasher{}
	for _, cfg := range c.Snap.Configs(model.KindAuthorizationPolicy) {
		ap := cfg.Spec.(*security.AuthorizationPolicy)
		if cfg.Key.Namespace != ns && cfg.Key.Namespace != c.Mesh.RootNamespace {
			continue
		}
		if ap.GetTargetRef() != nil || len(ap.GetTargetRefs()) > 0 {
			continue
		}
		if !model.LabelsMatch(ap.GetSelector().GetMatchLabels(), labels) {
			continue
		}
		h.U64(cfg.Hash)
		switch ap.GetAction() {
		case security.AuthorizationPolicy_CUSTOM:
			out.custom = append(out.custom, cfg)
		case security.AuthorizationPolicy_DENY:
			out.deny = append(out.deny, cfg)
		case security.AuthorizationPolicy_AUDIT:
			out.audit = append(out.audit, cfg)
		default:
			out.allow = append(out.allow, cfg)
		}
	}
	out.hash = h.Sum()
	return out
}

// rbacFlavor is the consumer of generated RBAC: Envoy's HTTP filter,
// Envoy's network filter, or grpc-go's RBAC (HTTP, with fewer matchers).
type rbacFlavor int

const (
	flavorHTTP rbacFlavor = iota
	flavorTCP
	flavorGRPC
)

// rbacSet is the RBAC configs for one workload and flavor, in Istio's
// evaluation order. A nil entry means no filter.
type rbacSet struct {
	// ext are the external authorization checks of CUSTOM policies, per
	// provider (sorted by name).
	ext []extAuthzCheck
	// custom denies the traffic of CUSTOM policies that cannot be sent to
	// their provider (unknown provider, gRPC servers, an HTTP provider on
	// TCP): failing closed.
	custom *rbacv3.RBAC
	audit  *rbacAction
	deny   *rbacAction
	allow  *rbacAction
}

// extAuthzCheck is one provider's check: the shadow rules whose match
// makes ext_authz call the provider, and where the provider is.
type extAuthzCheck struct {
	provider model.ExtAuthzProvider
	cluster  string
	rules    *rbacv3.RBAC
}

// ExtAuthzClusterFunc finds the cluster of an extension provider's
// service, or says why there is none.
type ExtAuthzClusterFunc func(p model.ExtAuthzProvider) (string, error)

// rbacAction is one action's enforced and dry-run rules.
type rbacAction struct {
	rules, shadow *rbacv3.RBAC
}

// policyName is the RBAC policy name of a rule, as istiod names them (its
// gRPC generator uses a shorter form).
func policyName(f rbacFlavor, ns, name string, rule int) string {
	if f == flavorGRPC {
		return ns + "-" + name + "-" + strconv.Itoa(rule)
	}
	return "ns[" + ns + "]-policy[" + name + "]-rule[" + strconv.Itoa(rule) + "]"
}

// rbacMatchNever is the policy of a policy without rules: it matches
// nothing, so an ALLOW policy without rules denies everything and a DENY
// policy without rules denies nothing.
func rbacMatchNever() *rbacv3.Policy {
	return &rbacv3.Policy{
		Permissions: []*rbacv3.Permission{{Rule: &rbacv3.Permission_NotRule{NotRule: permAny()}}},
		Principals:  []*rbacv3.Principal{{Identifier: &rbacv3.Principal_NotId{NotId: princAny()}}},
	}
}

// buildRBAC translates the policies for one flavor. Problems are returned
// as errors (each names the policy and rule) and the output fails closed.
// clusterOf resolves CUSTOM providers' services (nil: none resolve).
func buildRBAC(pols authzPolicies, mesh model.MeshConfig, f rbacFlavor, clusterOf ExtAuthzClusterFunc) (rbacSet, []error) {
	b := &rbacBuilder{mesh: mesh, flavor: f}
	var out rbacSet
	ext := map[string]*extAuthzCheck{}
	for _, cfg := range pols.custom {
		ap := cfg.Spec.(*security.AuthorizationPolicy)
		name := ap.GetProvider().GetName()
		prov, why := findProvider(mesh, name)
		var cluster string
		if why == "" && clusterOf != nil {
			c, err := clusterOf(prov)
			if err != nil {
				why = err.Error()
			}
			cluster = c
		} else if why == "" {
			why = "its service cannot be resolved"
		}
		switch {
		case why != "":
		case f == flavorGRPC:
			why = "proxyless gRPC servers have no external authorization"
		case f == flavorTCP && !prov.GRPC:
			why = "an HTTP provider cannot check TCP traffic"
		}
		if why != "" {
			b.errs = append(b.errs, &AuthzError{Policy: cfg.Key.Namespace + "/" + cfg.Key.Name, Rule: -1,
				Msg: fmt.Sprintf("action CUSTOM, provider %q: %s; the traffic this policy selects is denied", name, why)})
			if out.custom == nil {
				out.custom = &rbacv3.RBAC{Action: rbacv3.RBAC_DENY, Policies: map[string]*rbacv3.Policy{}}
			}
			for n, p := range b.action(cfg, rbacv3.RBAC_DENY) {
				out.custom.Policies[extAuthzPrefix+n+badCustomSuffix] = p
			}
			continue
		}
		e := ext[name]
		if e == nil {
			e = &extAuthzCheck{provider: prov, cluster: cluster, rules: &rbacv3.RBAC{Action: rbacv3.RBAC_DENY, Policies: map[string]*rbacv3.Policy{}}}
			ext[name] = e
		}
		for n, p := range b.action(cfg, rbacv3.RBAC_DENY) {
			e.rules.Policies[extAuthzPrefix+n] = p
		}
	}
	for _, n := range sortedMapKeys(ext) {
		out.ext = append(out.ext, *ext[n])
	}
	if f != flavorGRPC {
		out.audit = b.build(pols.audit, rbacv3.RBAC_LOG)
	}
	out.deny = b.build(pols.deny, rbacv3.RBAC_DENY)
	out.allow = b.build(pols.allow, rbacv3.RBAC_ALLOW)
	return out, b.errs
}

// findProvider returns the mesh's extension provider called name, or why
// there is none.
func findProvider(mesh model.MeshConfig, name string) (model.ExtAuthzProvider, string) {
	for _, p := range mesh.ExtensionProviders {
		if p.Name == name {
			return p, ""
		}
	}
	return model.ExtAuthzProvider{}, "the mesh config has no extensionProviders entry of that name (envoyExtAuthzHttp or envoyExtAuthzGrpc)"
}

func sortedMapKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

type rbacBuilder struct {
	mesh   model.MeshConfig
	flavor rbacFlavor
	errs   []error
}

func (b *rbacBuilder) build(list []*model.Config, action rbacv3.RBAC_Action) *rbacAction {
	if len(list) == 0 {
		return nil
	}
	out := &rbacAction{}
	for _, cfg := range list {
		dry := cfg.Annotations[dryRunAnnotation] == "true"
		if dry && b.flavor == flavorGRPC {
			continue // grpc-go has no shadow rules; a dry run enforces nothing
		}
		dst := &out.rules
		if dry {
			dst = &out.shadow
		}
		if *dst == nil {
			*dst = &rbacv3.RBAC{Action: action, Policies: map[string]*rbacv3.Policy{}}
		}
		for name, p := range b.action(cfg, action) {
			(*dst).Policies[name] = p
		}
	}
	if out.rules == nil && out.shadow == nil {
		return nil
	}
	return out
}

// action returns the RBAC policies of one AuthorizationPolicy's rules.
func (b *rbacBuilder) action(cfg *model.Config, action rbacv3.RBAC_Action) map[string]*rbacv3.Policy {
	ap := cfg.Spec.(*security.AuthorizationPolicy)
	out := map[string]*rbacv3.Policy{}
	if len(ap.GetRules()) == 0 {
		out[policyName(b.flavor, cfg.Key.Namespace, cfg.Key.Name, 0)] = rbacMatchNever()
		return out
	}
	for i, r := range ap.GetRules() {
		rg := &ruleGen{b: b, policy: cfg.Key.Namespace + "/" + cfg.Key.Name, ns: cfg.Key.Namespace, rule: i, action: action}
		if p := rg.generate(r); p != nil {
			out[policyName(b.flavor, cfg.Key.Namespace, cfg.Key.Name, i)] = p
		}
	}
	return out
}

// ruleGen translates one rule. Istio's semantics for a value that cannot
// be expressed: in an ALLOW rule the whole rule is dropped (it allows
// less); in a DENY or AUDIT rule the value is ignored (it denies more).
type ruleGen struct {
	b       *rbacBuilder
	policy  string
	ns      string
	rule    int
	action  rbacv3.RBAC_Action
	dropped bool
}

// cond is one attribute with its values and notValues.
type cond struct {
	key               string
	values, notValues []string
}

// problem records why a value could not be translated. HTTP-only fields on
// a TCP chain are Istio's documented behaviour and are not reported.
func (g *ruleGen) problem(httpOnly bool, format string, args ...any) {
	if g.action == rbacv3.RBAC_ALLOW {
		g.dropped = true
	}
	if httpOnly {
		return
	}
	msg := fmt.Sprintf(format, args...)
	if g.action == rbacv3.RBAC_ALLOW {
		msg += "; the rule is left out (allows nothing)"
	} else {
		msg += "; the condition is ignored (the rule matches more)"
	}
	g.b.errs = append(g.b.errs, &AuthzError{Policy: g.policy, Rule: g.rule, Msg: msg})
}

// Attribute keys of `when` conditions.
const (
	keyRequestHeaders   = "request.headers"
	keySourceIP         = "source.ip"
	keyRemoteIP         = "remote.ip"
	keySourceNamespace  = "source.namespace"
	keySourcePrincipal  = "source.principal"
	keySourceSA         = "source.serviceAccount"
	keyRequestPrincipal = "request.auth.principal"
	keyRequestAudiences = "request.auth.audiences"
	keyRequestPresenter = "request.auth.presenter"
	keyRequestClaims    = "request.auth.claims"
	keyDestIP           = "destination.ip"
	keyDestPort         = "destination.port"
	keyConnSNI          = "connection.sni"
	keyEnvoyFilter      = "experimental.envoy.filters."
	// internal keys for `to` fields
	keyHost   = ":authority"
	keyMethod = ":method"
	keyPath   = "path"
)

// isPermissionKey tells the `when` keys that describe the destination
// (permissions) from those that describe the source (principals).
func isPermissionKey(k string) bool {
	return k == keyDestIP || k == keyDestPort || k == keyConnSNI || strings.HasPrefix(k, keyEnvoyFilter)
}

// KnownConditionKey reports whether Sextant translates a `when` key.
func KnownConditionKey(k string) bool { return model.AuthzConditionKeySupported(k) }

func (g *ruleGen) generate(r *security.Rule) *rbacv3.Policy {
	if r == nil {
		g.problem(false, "empty rule")
		return nil
	}
	var basePerm, basePrinc []cond
	for _, w := range r.GetWhen() {
		c := cond{w.GetKey(), w.GetValues(), w.GetNotValues()}
		if !KnownConditionKey(c.key) {
			g.problem(false, "condition key %q is not supported", c.key)
			continue
		}
		if isPermissionKey(c.key) {
			basePerm = append(basePerm, c)
		} else {
			basePrinc = append(basePrinc, c)
		}
	}
	var princLists [][]cond
	for _, from := range r.GetFrom() {
		s := from.GetSource()
		var l []cond
		add := func(k string, v, nv []string) {
			if len(v)+len(nv) > 0 {
				l = append(l, cond{k, v, nv})
			}
		}
		add(keySourcePrincipal, s.GetPrincipals(), s.GetNotPrincipals())
		add(keyRequestPrincipal, s.GetRequestPrincipals(), s.GetNotRequestPrincipals())
		add(keySourceNamespace, s.GetNamespaces(), s.GetNotNamespaces())
		add(keySourceSA, s.GetServiceAccounts(), s.GetNotServiceAccounts())
		add(keyRemoteIP, s.GetRemoteIpBlocks(), s.GetNotRemoteIpBlocks())
		add(keySourceIP, s.GetIpBlocks(), s.GetNotIpBlocks())
		if len(s.GetTrustDomains())+len(s.GetNotTrustDomains()) > 0 {
			g.problem(false, "source.trustDomains is not supported")
		}
		princLists = append(princLists, append(l, basePrinc...))
	}
	if len(r.GetFrom()) == 0 {
		princLists = append(princLists, basePrinc)
	}
	var permLists [][]cond
	for _, to := range r.GetTo() {
		o := to.GetOperation()
		var l []cond
		add := func(k string, v, nv []string) {
			if len(v)+len(nv) > 0 {
				l = append(l, cond{k, v, nv})
			}
		}
		add(keyHost, o.GetHosts(), o.GetNotHosts())
		add(keyMethod, o.GetMethods(), o.GetNotMethods())
		add(keyPath, o.GetPaths(), o.GetNotPaths())
		add(keyDestPort, o.GetPorts(), o.GetNotPorts())
		permLists = append(permLists, append(l, basePerm...))
	}
	if len(r.GetTo()) == 0 {
		permLists = append(permLists, basePerm)
	}
	pol := &rbacv3.Policy{}
	for _, l := range permLists {
		var and []*rbacv3.Permission
		for _, c := range l {
			and = append(and, g.permissions(c)...)
		}
		if len(and) == 0 {
			and = append(and, permAny())
		}
		pol.Permissions = append(pol.Permissions, &rbacv3.Permission{Rule: &rbacv3.Permission_AndRules{AndRules: &rbacv3.Permission_Set{Rules: and}}})
	}
	for _, l := range princLists {
		var and []*rbacv3.Principal
		for _, c := range l {
			and = append(and, g.principals(c)...)
		}
		if len(and) == 0 {
			and = append(and, princAny())
		}
		pol.Principals = append(pol.Principals, &rbacv3.Principal{Identifier: &rbacv3.Principal_AndIds{AndIds: &rbacv3.Principal_Set{Ids: and}}})
	}
	if g.dropped {
		return nil
	}
	return pol
}

func (g *ruleGen) permissions(c cond) []*rbacv3.Permission {
	var out []*rbacv3.Permission
	for i, vals := range [][]string{c.values, c.notValues} {
		var or []*rbacv3.Permission
		for _, v := range vals {
			if p := g.permission(c.key, v); p != nil {
				or = append(or, p)
			}
		}
		if len(or) == 0 {
			continue
		}
		p := &rbacv3.Permission{Rule: &rbacv3.Permission_OrRules{OrRules: &rbacv3.Permission_Set{Rules: or}}}
		if i == 1 {
			p = &rbacv3.Permission{Rule: &rbacv3.Permission_NotRule{NotRule: p}}
		}
		out = append(out, p)
	}
	return out
}

func (g *ruleGen) principals(c cond) []*rbacv3.Principal {
	var out []*rbacv3.Principal
	for i, vals := range [][]string{c.values, c.notValues} {
		if len(vals) == 0 {
			continue
		}
		var or []*rbacv3.Principal
		switch c.key {
		case keySourcePrincipal:
			vals = trustDomainAliases(g.b.mesh, vals)
		case keyRequestAudiences, keyRequestPresenter, keyRequestPrincipal:
			// Matched as one list, as Istio's extended JWT matchers do.
			if p := g.jwtPrincipal(c.key, vals); p != nil {
				or = append(or, p)
			}
			vals = nil
		default:
			if strings.HasPrefix(c.key, keyRequestClaims) {
				if p := g.jwtPrincipal(c.key, vals); p != nil {
					or = append(or, p)
				}
				vals = nil
			}
		}
		for _, v := range vals {
			if p := g.principal(c.key, v); p != nil {
				or = append(or, p)
			}
		}
		if len(or) == 0 {
			continue
		}
		p := &rbacv3.Principal{Identifier: &rbacv3.Principal_OrIds{OrIds: &rbacv3.Principal_Set{Ids: or}}}
		if i == 1 {
			p = &rbacv3.Principal{Identifier: &rbacv3.Principal_NotId{NotId: p}}
		}
		out = append(out, p)
	}
	return out
}

func (g *ruleGen) httpOnly(key string) bool {
	if g.b.flavor == flavorTCP {
		g.problem(true, "%s is HTTP only", key)
		return true
	}
	return false
}

func (g *ruleGen) notForGRPC(key string) bool {
	if g.b.flavor == flavorGRPC {
		g.problem(false, "%s cannot be enforced by proxyless gRPC servers", key)
		return true
	}
	return false
}

func (g *ruleGen) permission(key, v string) *rbacv3.Permission {
	switch {
	case key == keyHost:
		if g.httpOnly("to.operation.hosts") {
			return nil
		}
		return &rbacv3.Permission{Rule: &rbacv3.Permission_Header{Header: hostMatcher(v)}}
	case key == keyMethod:
		if g.httpOnly("to.operation.methods") {
			return nil
		}
		return &rbacv3.Permission{Rule: &rbacv3.Permission_Header{Header: authzHeaderMatcher(keyMethod, v)}}
	case key == keyPath:
		if g.httpOnly("to.operation.paths") {
			return nil
		}
		if strings.Contains(v, "{*}") || strings.Contains(v, "{**}") {
			if g.notForGRPC("path template " + strconv.Quote(v)) {
				return nil
			}
			t := strings.ReplaceAll(strings.ReplaceAll(v, "{**}", "**"), "{*}", "*")
			return &rbacv3.Permission{Rule: &rbacv3.Permission_UriTemplate{UriTemplate: &corev3.TypedExtensionConfig{
				Name: "uri-template", TypedConfig: mustAnyOf(&uritemplate.UriTemplateMatchConfig{PathTemplate: t}),
			}}}
		}
		return &rbacv3.Permission{Rule: &rbacv3.Permission_UrlPath{UrlPath: &matcherv3.PathMatcher{Rule: &matcherv3.PathMatcher_Path{Path: stringMatcherWithPrefix(v, "")}}}}
	case key == keyDestPort:
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil || n > 65535 {
			g.problem(false, "invalid port %q", v)
			return nil
		}
		return &rbacv3.Permission{Rule: &rbacv3.Permission_DestinationPort{DestinationPort: uint32(n)}}
	case key == keyDestIP:
		cidr, err := cidrRange(v)
		if err != nil {
			g.problem(false, "destination.ip: %v", err)
			return nil
		}
		return &rbacv3.Permission{Rule: &rbacv3.Permission_DestinationIp{DestinationIp: cidr}}
	case key == keyConnSNI:
		// grpc-go matches requested_server_name against "" only.
		if g.notForGRPC(key) {
			return nil
		}
		return &rbacv3.Permission{Rule: &rbacv3.Permission_RequestedServerName{RequestedServerName: stringMatcherWithPrefix(v, "")}}
	case strings.HasPrefix(key, keyEnvoyFilter):
		if g.notForGRPC(key) {
			return nil
		}
		rest := strings.TrimSuffix(strings.TrimPrefix(key, "experimental."), "]")
		filter, field, _ := strings.Cut(rest, "[")
		mm := &matcherv3.MetadataMatcher{Filter: filter, Path: []*matcherv3.MetadataMatcher_PathSegment{metaKey(field)}}
		if strings.HasPrefix(v, "[") && strings.HasSuffix(v, "]") {
			mm.Value = &matcherv3.ValueMatcher{MatchPattern: &matcherv3.ValueMatcher_ListMatch{ListMatch: &matcherv3.ListMatcher{
				MatchPattern: &matcherv3.ListMatcher_OneOf{OneOf: stringValue(stringMatcherWithPrefix(strings.Trim(v, "[]"), ""))},
			}}}
		} else {
			mm.Value = stringValue(stringMatcherWithPrefix(v, ""))
		}
		return &rbacv3.Permission{Rule: &rbacv3.Permission_Metadata{Metadata: mm}}
	}
	g.problem(false, "attribute %q cannot describe the destination", key)
	return nil
}

func (g *ruleGen) principal(key, v string) *rbacv3.Principal {
	switch {
	case key == keySourcePrincipal:
		return authenticated(stringMatcherWithPrefix(v, "spiffe://"))
	case key == keySourceNamespace:
		re := ".*/ns/" + strings.ReplaceAll(regexp.QuoteMeta(v), `\*`, ".*") + "/.*"
		return authenticated(regexMatcher(re))
	case key == keySourceSA:
		ns, sa, ok := strings.Cut(v, "/")
		if !ok {
			ns, sa = g.ns, v
		}
		return authenticated(regexMatcher("spiffe://.+/ns/" + regexp.QuoteMeta(ns) + "/(.+/|)sa/" + regexp.QuoteMeta(sa) + "(/.+)?"))
	case key == keySourceIP, key == keyRemoteIP:
		cidr, err := cidrRange(v)
		if err != nil {
			g.problem(false, "%s: %v", key, err)
			return nil
		}
		if key == keyRemoteIP {
			return &rbacv3.Principal{Identifier: &rbacv3.Principal_RemoteIp{RemoteIp: cidr}}
		}
		return &rbacv3.Principal{Identifier: &rbacv3.Principal_DirectRemoteIp{DirectRemoteIp: cidr}}
	case strings.HasPrefix(key, keyRequestHeaders):
		if g.httpOnly(key) {
			return nil
		}
		names, err := bracketNames(strings.TrimPrefix(key, keyRequestHeaders))
		if err != nil || len(names) != 1 {
			g.problem(false, "%s: want request.headers[<name>]", key)
			return nil
		}
		return &rbacv3.Principal{Identifier: &rbacv3.Principal_Header{Header: authzHeaderMatcher(names[0], v)}}
	}
	g.problem(false, "attribute %q cannot describe the source", key)
	return nil
}

// jwtPrincipal matches a verified token's payload, which jwt_authn
// publishes as metadata.
func (g *ruleGen) jwtPrincipal(key string, vals []string) *rbacv3.Principal {
	if g.httpOnly(key) || g.notForGRPC(key) {
		return nil
	}
	switch {
	case key == keyRequestPrincipal:
		var or []*rbacv3.Principal
		for _, v := range vals {
			or = append(or, requestPrincipal(v))
		}
		if len(or) == 1 {
			return or[0]
		}
		return &rbacv3.Principal{Identifier: &rbacv3.Principal_OrIds{OrIds: &rbacv3.Principal_Set{Ids: or}}}
	case key == keyRequestAudiences:
		return metadataPrincipal(jwtListMatcher([]string{"aud"}, vals))
	case key == keyRequestPresenter:
		return metadataPrincipal(jwtListMatcher([]string{"azp"}, vals))
	}
	claims, err := bracketNames(strings.TrimPrefix(key, keyRequestClaims))
	if err != nil {
		g.problem(false, "%s: %v", key, err)
		return nil
	}
	return metadataPrincipal(jwtListMatcher(claims, vals))
}

var matchAnyString = regexMatcher(".+")

// requestPrincipal matches "<iss>/<sub>" with Istio's wildcards, split at
// the last "/" since issuers are URLs.
func requestPrincipal(v string) *rbacv3.Principal {
	idx := strings.LastIndex(v, "/")
	found := idx >= 0
	iss, sub := v, ""
	if found {
		iss, sub = v[:idx], v[idx+1:]
	}
	var mi, ms *matcherv3.StringMatcher
	switch {
	case v == "*":
		mi, ms = matchAnyString, matchAnyString
	case strings.HasPrefix(v, "*"):
		if found {
			if iss == "*" {
				mi = matchAnyString
			} else {
				mi = suffixMatcher(strings.TrimPrefix(iss, "*"))
			}
			ms = exactMatcher(sub)
		} else {
			mi, ms = matchAnyString, suffixMatcher(strings.TrimPrefix(v, "*"))
		}
	case strings.HasSuffix(v, "*"):
		if found {
			mi = exactMatcher(iss)
			if sub == "*" {
				ms = matchAnyString
			} else {
				ms = prefixMatcher(strings.TrimSuffix(sub, "*"))
			}
		} else {
			mi, ms = prefixMatcher(strings.TrimSuffix(v, "*")), matchAnyString
		}
	default:
		mi, ms = exactMatcher(iss), exactMatcher(sub)
	}
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_AndIds{AndIds: &rbacv3.Principal_Set{Ids: []*rbacv3.Principal{
		metadataPrincipal(jwtClaimMatcher([]string{"iss"}, stringValue(mi))),
		metadataPrincipal(jwtClaimMatcher([]string{"sub"}, stringValue(ms))),
	}}}}
}

func jwtClaimMatcher(claims []string, v *matcherv3.ValueMatcher) *matcherv3.MetadataMatcher {
	path := []*matcherv3.MetadataMatcher_PathSegment{metaKey(jwtPayloadKey)}
	for _, c := range claims {
		path = append(path, metaKey(c))
	}
	return &matcherv3.MetadataMatcher{Filter: JWTAuthnFilter, Path: path, Value: v}
}

// jwtListMatcher matches a claim that is a string or a list containing
// one of vals.
func jwtListMatcher(claims []string, vals []string) *matcherv3.MetadataMatcher {
	var ors []*matcherv3.ValueMatcher
	for _, v := range vals {
		ors = append(ors, stringValue(stringMatcherWithPrefix(v, "")))
	}
	one := &matcherv3.ValueMatcher{MatchPattern: &matcherv3.ValueMatcher_OrMatch{OrMatch: &matcherv3.OrMatcher{ValueMatchers: ors}}}
	either := &matcherv3.ValueMatcher{MatchPattern: &matcherv3.ValueMatcher_OrMatch{OrMatch: &matcherv3.OrMatcher{ValueMatchers: []*matcherv3.ValueMatcher{
		{MatchPattern: &matcherv3.ValueMatcher_ListMatch{ListMatch: &matcherv3.ListMatcher{MatchPattern: &matcherv3.ListMatcher_OneOf{OneOf: one}}}},
		one,
	}}}}
	return jwtClaimMatcher(claims, either)
}

func metaKey(k string) *matcherv3.MetadataMatcher_PathSegment {
	return &matcherv3.MetadataMatcher_PathSegment{Segment: &matcherv3.MetadataMatcher_PathSegment_Key{Key: k}}
}

func stringValue(m *matcherv3.StringMatcher) *matcherv3.ValueMatcher {
	return &matcherv3.ValueMatcher{MatchPattern: &matcherv3.ValueMatcher_StringMatch{StringMatch: m}}
}

func metadataPrincipal(m *matcherv3.MetadataMatcher) *rbacv3.Principal {
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_Metadata{Metadata: m}}
}

func authenticated(m *matcherv3.StringMatcher) *rbacv3.Principal {
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_Authenticated_{Authenticated: &rbacv3.Principal_Authenticated{PrincipalName: m}}}
}

func permAny() *rbacv3.Permission { return &rbacv3.Permission{Rule: &rbacv3.Permission_Any{Any: true}} }
func princAny() *rbacv3.Principal {
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_Any{Any: true}}
}

func exactMatcher(s string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: s}}
}
func prefixMatcher(s string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: s}}
}
func suffixMatcher(s string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Suffix{Suffix: s}}
}
func regexMatcher(re string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: re}}}
}

// stringMatcherWithPrefix is Istio's string matching of policy values:
// "*" is any non-empty value, "*x" a suffix, "x*" a prefix, else exact;
// prefix is prepended to what is matched (spiffe:// for principals).
func stringMatcherWithPrefix(v, prefix string) *matcherv3.StringMatcher {
	switch {
	case v == "*":
		return regexMatcher(".+")
	case strings.HasPrefix(v, "*"):
		if prefix == "" {
			return suffixMatcher(strings.TrimPrefix(v, "*"))
		}
		return regexMatcher(regexp.QuoteMeta(prefix) + ".*" + regexp.QuoteMeta(strings.TrimPrefix(v, "*")))
	case strings.HasSuffix(v, "*"):
		return prefixMatcher(prefix + strings.TrimSuffix(v, "*"))
	}
	return exactMatcher(prefix + v)
}

func authzHeaderMatcher(name, v string) *routev3.HeaderMatcher {
	if v == "*" {
		return &routev3.HeaderMatcher{Name: name, HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}}
	}
	return &routev3.HeaderMatcher{Name: name, HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: stringMatcherWithPrefix(v, "")}}
}

func hostMatcher(v string) *routev3.HeaderMatcher {
	h := authzHeaderMatcher(keyHost, v)
	if sm := h.GetStringMatch(); sm != nil {
		sm.IgnoreCase = true
	}
	return h
}

func cidrRange(v string) (*corev3.CidrRange, error) {
	if strings.Contains(v, "/") {
		p, err := netip.ParsePrefix(v)
		if err != nil {
			return nil, fmt.Errorf("invalid CIDR %q", v)
		}
		return &corev3.CidrRange{AddressPrefix: p.Addr().String(), PrefixLen: wrapU32(uint32(p.Bits()))}, nil
	}
	a, err := netip.ParseAddr(v)
	if err != nil {
		return nil, fmt.Errorf("invalid IP address %q", v)
	}
	return &corev3.CidrRange{AddressPrefix: a.String(), PrefixLen: wrapU32(uint32(a.BitLen()))}, nil
}

// bracketNames parses "[a]" or "[a][b]…" into names.
func bracketNames(s string) ([]string, error) {
	var out []string
	for s != "" {
		if s[0] != '[' {
			return nil, fmt.Errorf("want [<name>], got %q", s)
		}
		end := strings.IndexByte(s, ']')
		if end < 2 || strings.Contains(s[1:end], "[") {
			return nil, fmt.Errorf("want [<name>], got %q", s)
		}
		out = append(out, s[1:end])
		s = s[end+1:]
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("missing [<name>]")
	}
	return out, nil
}

// trustDomainAliases expands principals of the form <td>/ns/N/sa/S to every
// trust domain of the mesh (its own and its aliases) when td is one of them
// or cluster.local, as Istio does.
func trustDomainAliases(mesh model.MeshConfig, principals []string) []string {
	tds := append([]string{mesh.TrustDomain}, mesh.TrustDomainAliases...)
	var out []string
	seen := map[string]bool{}
	add := func(p string) {
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	for _, p := range principals {
		parts := strings.Split(p, "/")
		if len(parts) != 5 || parts[0] == "*" {
			add(p)
			continue
		}
		td := parts[0]
		known := td == model.DefaultDomainSuffix
		for _, t := range tds {
			if t == td || (strings.HasPrefix(td, "*") && strings.HasSuffix(t, td[1:])) {
				known = true
			}
		}
		if !known {
			add(p)
			continue
		}
		for _, t := range tds {
			if strings.HasPrefix(td, "*") && strings.HasSuffix(t, td[1:]) {
				add(p)
				continue
			}
			add(t + "/" + strings.Join(parts[1:], "/"))
		}
	}
	return out
}

// sortedPolicyNames lists an RBAC config's policy names in order.
func sortedPolicyNames(r *rbacv3.RBAC) []string {
	var out []string
	for n := range r.GetPolicies() {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
