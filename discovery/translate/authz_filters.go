package translate

import (
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	rbachttp "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	rbactcp "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

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

// inboundAuthzFor builds p's workload's access control filters, recording
// translation problems once per snapshot.
func (c *Context) inboundAuthzFor(ns string, labels map[string]string) inboundAuthz {
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
	hs, errs := buildRBAC(pols, c.Mesh, flavorHTTP)
	ts, terrs := buildRBAC(pols, c.Mesh, flavorTCP)
	for _, e := range append(errs, terrs...) {
		c.warnOnce("authz\x00"+e.Error(), e)
	}
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
	s, errs := buildRBAC(pols, c.Mesh, flavorGRPC)
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
	for _, a := range []*rbacAction{s.audit, s.deny, s.allow} {
		if a == nil {
			continue
		}
		add(&rbactcp.RBAC{Rules: a.rules, ShadowRules: a.shadow, ShadowRulesStatPrefix: shadowPrefix(a.shadow)})
	}
	return out
}
