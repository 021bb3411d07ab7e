package main

import (
	"cmp"
	"fmt"
	"io"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	jwtv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	rbachttp "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	rbactcp "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	uritemplate "github.com/envoyproxy/go-control-plane/envoy/extensions/path/match/uri_template/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/spf13/cobra"
)

func newAuthzCommand(e *env, g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "authz",
		Short: "Inspect the access control sent to proxies",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return &usageError{fmt.Errorf("%s needs a subcommand: check", cmd.CommandPath())}
		},
	}
	check := &cobra.Command{
		Use:   "check <pod>.<namespace>",
		Short: "Show the authorization rules on a proxy's inbound chains, as sent",
		Long: `Show the access control the control plane last sent a proxy, read from
the inbound listeners as pushed (/debug/config_dump): every RBAC rule in
evaluation order (CUSTOM, AUDIT, DENY, ALLOW), the AuthorizationPolicy and
rule it came from, the chains it is on, and what it matches in words; and
the JWT issuers RequestAuthentications verify. A workload with ALLOW rules
denies whatever none of them matches. Like 'istioctl x authz check', but
from the control plane's side.`,
		Example:           `  sextantctl authz check reviews-v1-7d8f.default`,
		Args:              proxyArg,
		ValidArgsFunction: completeProxies(e, g),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client(cmd, e)
			if err != nil {
				return err
			}
			raw, err := c.ConfigDump(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			d, err := decodeDump(args[0], raw)
			if err != nil {
				return err
			}
			return writeAuthz(cmd.OutOrStdout(), d)
		},
	}
	cmd.AddCommand(check)
	return cmd
}

// authzRow is one rule as sent, with the chains that carry it.
type authzRow struct {
	order          int // CUSTOM, AUDIT, DENY, ALLOW
	action, policy string
	rule           string
	what           string
	chains         []string
}

var actionOrder = map[string]int{"CUSTOM": 0, "AUDIT": 1, "DENY": 2, "ALLOW": 3}

func writeAuthz(w io.Writer, d *dump) error {
	rows := map[string]*authzRow{}
	var issuers []string
	seenIss := map[string]bool{}
	add := func(chain string, r *rbacv3.RBAC, dryRun bool) {
		if r == nil {
			return
		}
		action := r.GetAction().String()
		if action == "LOG" {
			action = "AUDIT"
		}
		if len(r.GetPolicies()) == 0 && r.GetAction() == rbacv3.RBAC_ALLOW && !dryRun {
			// ALLOW policies select the workload but none of their rules
			// applies here (e.g. HTTP-only rules on a TCP chain).
			key := "ALLOW\x00-"
			if rows[key] == nil {
				rows[key] = &authzRow{order: actionOrder["ALLOW"], action: "ALLOW", policy: "-", rule: "-", what: "nothing: every request on these chains is denied"}
			}
			if !contains(rows[key].chains, chain) {
				rows[key].chains = append(rows[key].chains, chain)
			}
		}
		for _, name := range sortedKeys(r.GetPolicies()) {
			a := action
			policy, rule := splitPolicyName(name)
			custom := strings.HasPrefix(name, "istio-ext-authz-")
			switch {
			case strings.HasSuffix(name, "-deny-due-to-bad-CUSTOM-action"):
				a = "CUSTOM (denied)"
			case custom:
				// Shadow rules that select what ext_authz checks.
				a, dryRun = "CUSTOM (checked)", false
			}
			if dryRun {
				a += " (dry run)"
			}
			what := describePolicy(r.GetPolicies()[name])
			key := a + "\x00" + name + "\x00" + what
			row := rows[key]
			if row == nil {
				row = &authzRow{order: actionOrder[strings.Fields(a)[0]], action: a, policy: policy, rule: rule, what: what}
				rows[key] = row
			}
			if !contains(row.chains, chain) {
				row.chains = append(row.chains, chain)
			}
		}
	}
	for _, lr := range d.listeners {
		l := lr.msg
		if l.GetTrafficDirection() != corev3.TrafficDirection_INBOUND && !strings.HasPrefix(l.GetName(), "xds.istio.io/grpc/lds/inbound/") {
			continue
		}
		for _, fc := range l.GetFilterChains() {
			chain := chainLabel(l, fc)
			for _, f := range fc.GetFilters() {
				tc := f.GetTypedConfig()
				switch {
				case isType(tc, "envoy.extensions.filters.network.rbac.v3.RBAC"):
					r := &rbactcp.RBAC{}
					if tc.UnmarshalTo(r) == nil {
						add(chain+" (TCP)", r.GetRules(), false)
						add(chain+" (TCP)", r.GetShadowRules(), true)
					}
				case isType(tc, hcmTypeName):
					h := &hcmv3.HttpConnectionManager{}
					if tc.UnmarshalTo(h) != nil {
						continue
					}
					for _, hf := range h.GetHttpFilters() {
						htc := hf.GetTypedConfig()
						switch {
						case isType(htc, "envoy.extensions.filters.http.rbac.v3.RBAC"):
							r := &rbachttp.RBAC{}
							if htc.UnmarshalTo(r) == nil {
								add(chain+" (HTTP)", r.GetRules(), false)
								add(chain+" (HTTP)", r.GetShadowRules(), true)
							}
						case isType(htc, "envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication"):
							j := &jwtv3.JwtAuthentication{}
							if htc.UnmarshalTo(j) == nil {
								for _, n := range sortedKeys(j.GetProviders()) {
									if iss := j.GetProviders()[n].GetIssuer(); !seenIss[iss] {
										seenIss[iss] = true
										issuers = append(issuers, iss)
									}
								}
							}
						}
					}
				}
			}
		}
	}
	list := make([]*authzRow, 0, len(rows))
	for _, r := range rows {
		list = append(list, r)
	}
	slices.SortFunc(list, func(a, b *authzRow) int {
		return cmp.Or(cmp.Compare(a.order, b.order), strings.Compare(a.action, b.action),
			strings.Compare(a.policy, b.policy), strings.Compare(a.rule, b.rule), strings.Compare(a.what, b.what))
	})
	if len(list) == 0 {
		fmt.Fprintf(w, "%s: no authorization rules on its inbound chains; all traffic mTLS settings admit is allowed\n", d.proxy)
	} else {
		tw := newTable(w)
		row(tw, "ACTION", "POLICY", "RULE", "CHAINS", "MATCHES")
		for _, r := range list {
			row(tw, r.action, r.policy, r.rule, strings.Join(r.chains, ", "), r.what)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if len(issuers) > 0 {
		fmt.Fprintf(w, "\nJWT issuers verified (invalid tokens get 401; requests without a token pass to RBAC): %s\n", strings.Join(issuers, ", "))
	}
	return nil
}

// chainLabel names a filter chain for humans: the inbound port or the
// passthrough role.
func chainLabel(l *listenerv3.Listener, fc *listenerv3.FilterChain) string {
	if p := fc.GetFilterChainMatch().GetDestinationPort(); p != nil {
		return strconv.Itoa(int(p.GetValue()))
	}
	if strings.HasPrefix(l.GetName(), "xds.istio.io/grpc/lds/inbound/") {
		return strings.TrimPrefix(l.GetName(), "xds.istio.io/grpc/lds/inbound/")
	}
	return "passthrough"
}

var policyNameRE = regexp.MustCompile(`ns\[([^\]]*)\]-policy\[([^\]]*)\]-rule\[(\d+)\]`)

// splitPolicyName reads Istio's ns[NS]-policy[NAME]-rule[N].
func splitPolicyName(n string) (policy, rule string) {
	if m := policyNameRE.FindStringSubmatch(n); m != nil {
		return m[1] + "/" + m[2], m[3]
	}
	return n, "-"
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// describePolicy says what a rule matches: from whom, to what.
func describePolicy(p *rbacv3.Policy) string {
	var from, to []string
	for _, pr := range p.GetPrincipals() {
		from = append(from, describePrincipal(pr))
	}
	for _, pe := range p.GetPermissions() {
		to = append(to, describePermission(pe))
	}
	if isNever(p) {
		return "nothing (a policy without rules)"
	}
	return "from " + strings.Join(from, " or ") + "; to " + strings.Join(to, " or ")
}

func isNever(p *rbacv3.Policy) bool {
	return len(p.GetPermissions()) == 1 && p.GetPermissions()[0].GetNotRule().GetAny() &&
		len(p.GetPrincipals()) == 1 && p.GetPrincipals()[0].GetNotId().GetAny()
}

func joinDesc(parts []string, sep string) string {
	if len(parts) == 1 {
		return parts[0]
	}
	return "(" + strings.Join(parts, sep) + ")"
}

func describePrincipal(p *rbacv3.Principal) string {
	switch {
	case p.GetAny():
		return "anyone"
	case p.GetAndIds() != nil:
		var parts []string
		for _, x := range p.GetAndIds().GetIds() {
			if x.GetAny() && len(p.GetAndIds().GetIds()) > 1 {
				continue
			}
			parts = append(parts, describePrincipal(x))
		}
		return joinDesc(parts, " and ")
	case p.GetOrIds() != nil:
		var parts []string
		for _, x := range p.GetOrIds().GetIds() {
			parts = append(parts, describePrincipal(x))
		}
		return joinDesc(parts, " or ")
	case p.GetNotId() != nil:
		return "not " + describePrincipal(p.GetNotId())
	case p.GetAuthenticated() != nil:
		return "peer identity " + describeStringMatch(p.GetAuthenticated().GetPrincipalName())
	case p.GetDirectRemoteIp() != nil:
		return "source IP " + cidr(p.GetDirectRemoteIp())
	case p.GetRemoteIp() != nil:
		return "remote IP " + cidr(p.GetRemoteIp())
	case p.GetHeader() != nil:
		return describeHeaderMatch(p.GetHeader())
	case p.GetMetadata() != nil:
		return describeMetadata(p.GetMetadata())
	}
	return "(unrecognised principal)"
}

func describePermission(p *rbacv3.Permission) string {
	switch {
	case p.GetAny():
		return "any request"
	case p.GetAndRules() != nil:
		var parts []string
		for _, x := range p.GetAndRules().GetRules() {
			if x.GetAny() && len(p.GetAndRules().GetRules()) > 1 {
				continue
			}
			parts = append(parts, describePermission(x))
		}
		return joinDesc(parts, " and ")
	case p.GetOrRules() != nil:
		var parts []string
		for _, x := range p.GetOrRules().GetRules() {
			parts = append(parts, describePermission(x))
		}
		return joinDesc(parts, " or ")
	case p.GetNotRule() != nil:
		return "not " + describePermission(p.GetNotRule())
	case p.GetHeader() != nil:
		return describeHeaderMatch(p.GetHeader())
	case p.GetUrlPath() != nil:
		return "path " + describeStringMatch(p.GetUrlPath().GetPath())
	case p.GetUriTemplate() != nil:
		t := &uritemplate.UriTemplateMatchConfig{}
		if p.GetUriTemplate().GetTypedConfig().UnmarshalTo(t) == nil {
			return "path template " + t.GetPathTemplate()
		}
		return "path template"
	case p.GetDestinationPort() != 0:
		return "port " + strconv.Itoa(int(p.GetDestinationPort()))
	case p.GetDestinationIp() != nil:
		return "destination IP " + cidr(p.GetDestinationIp())
	case p.GetRequestedServerName() != nil:
		return "SNI " + describeStringMatch(p.GetRequestedServerName())
	case p.GetMetadata() != nil:
		return describeMetadata(p.GetMetadata())
	}
	return "(unrecognised permission)"
}

func cidr(c *corev3.CidrRange) string {
	return c.GetAddressPrefix() + "/" + strconv.Itoa(int(c.GetPrefixLen().GetValue()))
}

func describeHeaderMatch(h *routev3.HeaderMatcher) string {
	name := "header " + h.GetName()
	switch h.GetName() {
	case ":method":
		name = "method"
	case ":authority":
		name = "host"
	}
	if h.GetPresentMatch() {
		return name + " present"
	}
	return name + " " + describeStringMatch(h.GetStringMatch())
}

func describeStringMatch(s *matcherv3.StringMatcher) string {
	if s == nil {
		return "(any)"
	}
	var out string
	switch {
	case s.GetSafeRegex() != nil:
		out = "~" + s.GetSafeRegex().GetRegex()
	case s.GetPrefix() != "":
		out = s.GetPrefix() + "*"
	case s.GetSuffix() != "":
		out = "*" + s.GetSuffix()
	case s.GetContains() != "":
		out = "*" + s.GetContains() + "*"
	default:
		out = s.GetExact()
	}
	if s.GetIgnoreCase() {
		out += " (any case)"
	}
	return out
}

// describeMetadata reads the JWT payload matchers Sextant sends, and any
// other dynamic metadata matcher.
func describeMetadata(m *matcherv3.MetadataMatcher) string {
	var path []string
	for _, s := range m.GetPath() {
		path = append(path, s.GetKey())
	}
	subject := "metadata " + m.GetFilter() + "[" + strings.Join(path, "][") + "]"
	if m.GetFilter() == "envoy.filters.http.jwt_authn" && len(path) > 1 && path[0] == "payload" {
		subject = "JWT claim " + strings.Join(path[1:], ".")
	}
	out := subject + " " + describeValue(m.GetValue())
	if m.GetInvert() {
		out = "not " + out
	}
	return out
}

func describeValue(v *matcherv3.ValueMatcher) string {
	switch {
	case v.GetStringMatch() != nil:
		return describeStringMatch(v.GetStringMatch())
	case v.GetListMatch() != nil:
		return "has " + describeValue(v.GetListMatch().GetOneOf())
	case v.GetOrMatch() != nil:
		ms := v.GetOrMatch().GetValueMatchers()
		if len(ms) == 2 && ms[0].GetListMatch() != nil && describeValue(ms[0].GetListMatch().GetOneOf()) == describeValue(ms[1]) {
			// Istio's "a string claim, or a list claim holding one of".
			return describeValue(ms[1])
		}
		var parts []string
		for _, x := range v.GetOrMatch().GetValueMatchers() {
			d := describeValue(x)
			if !contains(parts, d) {
				parts = append(parts, d)
			}
		}
		return joinDesc(parts, " or ")
	case v.GetPresentMatch():
		return "present"
	}
	return "(value)"
}
