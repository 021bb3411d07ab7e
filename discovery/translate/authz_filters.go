package translate

import (
	"fmt"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	extauthzhttp "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	rbachttp "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	extauthztcp "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/ext_authz/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	rbactcp "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/sextant-mesh/sextant/discovery/proxy"
	"github.com/sextant-mesh/sextant/model"
)

func wrapU32(v uint32) *wrapperspb.UInt32Value { return wrapperspb.UInt32(v) }

// inboundAuthz is the access control of one workload's inbound chains:
// the filters of HTTP chains and of TCP chains.
type inboundAuthz struct {
	http []*hcmv3.HttpFilter
	tcp  []*listenerv3.Filter
	// hash covers the policies that produced the filters.
	hash uint64
}

// inboundAuthzFor returns the access control filters of p's workload,
// built once per snapshot for every namespace and label set (sidecars of
// one workload share them), recording translation problems once.
func (c *Context) inboundAuthzFor(p *proxy.Proxy) inboundAuthz {
	key := p.Namespace + "\x00" + p.LabelsKey()
	if v, ok := c.authz.Load(key); ok {
		return v.(inboundAuthz)
	}
	out := c.buildInboundAuthz(p.Namespace, p.Labels)
	c.authz.Store(key, out)
	return out
}

func (c *Context) buildInboundAuthz(ns string, labels map[string]string) inboundAuthz {
	pols := c.authzPoliciesFor(ns, labels)
	jwt, jwtHash := c.jwtFilter(ns, labels)
	out := inboundAuthz{hash: (&model.Hasher{}).U64(pols.hash).U64(jwtHash).Sum()}
	if jwt != nil {
		// Authentication first: RBAC matches the payload it publishes.
		out.http = append(out.http, jwt)
	}
	if pols.empty() {
		return out
	}
	hs, errs := buildRBAC(pols, c.Mesh, flavorHTTP, c.extAuthzCluster)
	ts, terrs := buildRBAC(pols, c.Mesh, flavorTCP, c.extAuthzCluster)
	for _, e := range append(errs, terrs...) {
		c.warnOnce("authz\x00"+e.Error(), e)
	}
	// Whether a provider's service resolves depends on the snapshot, not
	// only on the policies.
	h := (&model.Hasher{}).U64(out.hash)
	for _, s := range []rbacSet{hs, ts} {
		for _, e := range s.ext {
			h.Str(e.cluster).U64(c.Snap.ServiceHash(serviceOfCluster(e.cluster)))
		}
		h.U64(uint64(len(s.custom.GetPolicies())))
	}
	out.hash = h.Sum()
	out.http = append(out.http, httpRBACFilters(hs)...)
	out.tcp = tcpRBACFilters(ts)
	return out
}

// grpcAuthzFilters builds the RBAC HTTP filters of a proxyless gRPC server
// as istiod's gRPC generator does: DENY then ALLOW, with unique names.
func (c *Context) grpcAuthzFilters(ns string, labels map[string]string) ([]*hcmv3.HttpFilter, uint64) {
	pols := c.authzPoliciesFor(ns, labels)
	if pols.empty() {
		return nil, pols.hash
	}
	s, errs := buildRBAC(pols, c.Mesh, flavorGRPC, nil)
	for _, e := range errs {
		c.warnOnce("authz\x00"+e.Error(), e)
	}
	var out []*hcmv3.HttpFilter
	deny := s.custom
	if s.deny != nil && s.deny.rules != nil {
		if deny == nil {
			deny = s.deny.rules
		} else {
			for n, p := range s.deny.rules.Policies {
				deny.Policies[n] = p
			}
		}
	}
	if deny != nil && len(deny.Policies) > 0 {
		out = append(out, httpFilter(RBACGRPCDenyFilter, &rbachttp.RBAC{Rules: deny}))
	}
	// Unlike istiod, an ALLOW filter is sent even when no rule could be
	// translated: ALLOW policies that select the workload mean everything
	// they do not allow is denied.
	if s.allow != nil && s.allow.rules != nil {
		out = append(out, httpFilter(RBACHTTPFilter, &rbachttp.RBAC{Rules: s.allow.rules}))
	}
	return out, pols.hash
}

func httpFilter(name string, m proto.Message) *hcmv3.HttpFilter {
	return &hcmv3.HttpFilter{Name: name, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAnyOf(m)}}
}

func shadowPrefix(r *rbacv3.RBAC) string {
	switch r.GetAction() {
	case rbacv3.RBAC_ALLOW:
		return dryRunAllowStatPrefix
	case rbacv3.RBAC_DENY:
		return dryRunDenyStatPrefix
	}
	return ""
}

// httpRBACFilters orders Envoy's HTTP RBAC filters as istiod does: CUSTOM
// first, then AUDIT, DENY, ALLOW.
func httpRBACFilters(s rbacSet) []*hcmv3.HttpFilter {
	var out []*hcmv3.HttpFilter
	if s.custom != nil {
		out = append(out, httpFilter(RBACHTTPFilter, &rbachttp.RBAC{Rules: s.custom}))
	}
	for _, e := range s.ext {
		// The RBAC filter only evaluates (shadow rules) and records the
		// matched policy; ext_authz then checks requests that matched.
		out = append(out,
			httpFilter(RBACHTTPFilter, &rbachttp.RBAC{ShadowRules: e.rules, ShadowRulesStatPrefix: extAuthzStatPrefix}),
			httpFilter(ExtAuthzHTTPFilter, extAuthzHTTP(e)))
	}
	for _, a := range []*rbacAction{s.audit, s.deny, s.allow} {
		if a == nil {
			continue
		}
		out = append(out, httpFilter(RBACHTTPFilter, &rbachttp.RBAC{Rules: a.rules, ShadowRules: a.shadow, ShadowRulesStatPrefix: shadowPrefix(a.shadow)}))
	}
	return out
}

func tcpRBACFilters(s rbacSet) []*listenerv3.Filter {
	var out []*listenerv3.Filter
	add := func(r *rbactcp.RBAC) {
		r.StatPrefix = rbacTCPStatPrefix
		out = append(out, &listenerv3.Filter{Name: RBACNetworkFilter, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAnyOf(r)}})
	}
	if s.custom != nil {
		add(&rbactcp.RBAC{Rules: s.custom})
	}
	for _, e := range s.ext {
		add(&rbactcp.RBAC{ShadowRules: e.rules, ShadowRulesStatPrefix: extAuthzStatPrefix})
		out = append(out, &listenerv3.Filter{Name: ExtAuthzNetworkFilter, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAnyOf(&extauthztcp.ExtAuthz{
			StatPrefix:            rbacTCPStatPrefix,
			GrpcService:           grpcServiceOf(e),
			FailureModeAllow:      e.provider.FailOpen,
			TransportApiVersion:   corev3.ApiVersion_V3,
			FilterEnabledMetadata: extAuthzEnabled(RBACNetworkFilter),
		})}})
	}
	for _, a := range []*rbacAction{s.audit, s.deny, s.allow} {
		if a == nil {
			continue
		}
		add(&rbactcp.RBAC{Rules: a.rules, ShadowRules: a.shadow, ShadowRulesStatPrefix: shadowPrefix(a.shadow)})
	}
	return out
}

// Names and keys of external authorization, as istiod emits them.
const (
	ExtAuthzHTTPFilter     = "envoy.filters.http.ext_authz"
	ExtAuthzNetworkFilter  = "envoy.filters.network.ext_authz"
	extAuthzStatPrefix     = "istio_ext_authz_"
	defaultExtAuthzTimeout = 600 * time.Second
)

// extAuthzEnabled turns ext_authz on for requests whose RBAC shadow rules
// matched a CUSTOM policy (the effective policy id the RBAC filter records).
func extAuthzEnabled(rbacFilter string) *matcherv3.MetadataMatcher {
	return &matcherv3.MetadataMatcher{
		Filter: rbacFilter,
		Path:   []*matcherv3.MetadataMatcher_PathSegment{metaKey(extAuthzStatPrefix + "shadow_effective_policy_id")},
		Value:  stringValue(prefixMatcher(strings.TrimSuffix(extAuthzPrefix, "-"))),
	}
}

func providerTimeout(p model.ExtAuthzProvider) *durationpb.Duration {
	if p.Timeout > 0 {
		return durationpb.New(p.Timeout)
	}
	return durationpb.New(defaultExtAuthzTimeout)
}

func grpcServiceOf(e extAuthzCheck) *corev3.GrpcService {
	return &corev3.GrpcService{
		TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: e.cluster, Authority: serviceOfCluster(e.cluster)}},
		Timeout:         providerTimeout(e.provider),
	}
}

func extAuthzHTTP(e extAuthzCheck) *extauthzhttp.ExtAuthz {
	cfg := &extauthzhttp.ExtAuthz{
		TransportApiVersion:   corev3.ApiVersion_V3,
		FailureModeAllow:      e.provider.FailOpen,
		FilterEnabledMetadata: extAuthzEnabled(RBACHTTPFilter),
	}
	if e.provider.StatusOnError != 0 {
		cfg.StatusOnError = &typev3.HttpStatus{Code: typev3.StatusCode(e.provider.StatusOnError)}
	}
	if e.provider.GRPC {
		cfg.Services = &extauthzhttp.ExtAuthz_GrpcService{GrpcService: grpcServiceOf(e)}
		return cfg
	}
	hs := &extauthzhttp.HttpService{
		ServerUri: &corev3.HttpUri{
			Uri:              "http://" + serviceOfCluster(e.cluster),
			HttpUpstreamType: &corev3.HttpUri_Cluster{Cluster: e.cluster},
			Timeout:          providerTimeout(e.provider),
		},
		PathPrefix: e.provider.PathPrefix,
	}
	if len(e.provider.IncludeRequestHeadersInCheck) > 0 {
		var pats []*matcherv3.StringMatcher
		for _, h := range e.provider.IncludeRequestHeadersInCheck {
			m := stringMatcherWithPrefix(h, "")
			m.IgnoreCase = true
			pats = append(pats, m)
		}
		cfg.AllowedHeaders = &matcherv3.ListStringMatcher{Patterns: pats}
	}
	cfg.Services = &extauthzhttp.ExtAuthz_HttpService{HttpService: hs}
	return cfg
}

// serviceOfCluster is the host of an outbound cluster name.
func serviceOfCluster(name string) string {
	_, _, host, err := ParseClusterName(name)
	if err != nil {
		return ""
	}
	return host
}

// extAuthzCluster resolves a provider's service as Istio does: a FQDN or
// "namespace/host"; the service and its port must be in the mesh.
func (c *Context) extAuthzCluster(p model.ExtAuthzProvider) (string, error) {
	host := p.Service
	if _, h, ok := strings.Cut(host, "/"); ok {
		host = h
	}
	svc := c.Snap.Service(host)
	if svc == nil {
		return "", fmt.Errorf("service %q is not in the mesh", p.Service)
	}
	if _, ok := svc.Port(p.Port); !ok {
		return "", fmt.Errorf("service %q has no port %d", p.Service, p.Port)
	}
	return ClusterName(p.Port, "", svc.Hostname), nil
}
