package config

import (
	"net/url"
	"strconv"
	"strings"

	security "istio.io/api/security/v1beta1"

	"github.com/sextant-mesh/sextant/model"
)

func validatePeerAuthentication(oe *objectErrors, pa *security.PeerAuthentication) {
	validateSelectorLabels(oe, "spec.selector.matchLabels", pa.GetSelector().GetMatchLabels())
	if len(pa.GetPortLevelMtls()) > 0 && len(pa.GetSelector().GetMatchLabels()) == 0 {
		oe.add("spec.portLevelMtls", "portLevelMtls requires a workload selector")
	}
	for port := range pa.GetPortLevelMtls() {
		if port < 1 || port > 65535 {
			oe.add("spec.portLevelMtls["+strconv.FormatUint(uint64(port), 10)+"]",
				"port number %d is out of range 1-65535", port)
		}
	}
}

func validateAuthorizationPolicy(oe *objectErrors, ap *security.AuthorizationPolicy) {
	validateSelectorLabels(oe, "spec.selector.matchLabels", ap.GetSelector().GetMatchLabels())
	targets := 0
	for _, set := range []bool{ap.GetSelector() != nil, ap.GetTargetRef() != nil, len(ap.GetTargetRefs()) > 0} {
		if set {
			targets++
		}
	}
	if targets > 1 {
		oe.add("spec", "only one of selector, targetRef or targetRefs may be set")
	}
	custom := ap.GetAction() == security.AuthorizationPolicy_CUSTOM
	switch {
	case custom && ap.GetProvider().GetName() == "":
		oe.add("spec.provider.name", "action CUSTOM requires a provider")
	case !custom && ap.GetProvider() != nil:
		oe.add("spec.provider", "provider can only be used with action CUSTOM")
	}
	for i, r := range ap.GetRules() {
		f := idx("spec.rules", i)
		for j, from := range r.GetFrom() {
			validateSource(oe, idx(f+".from", j)+".source", from.GetSource())
		}
		for j, to := range r.GetTo() {
			validateOperation(oe, idx(f+".to", j)+".operation", to.GetOperation())
		}
		for j, c := range r.GetWhen() {
			cf := idx(f+".when", j)
			if c.GetKey() == "" {
				oe.add(cf+".key", "key is required")
			}
			if len(c.GetValues()) == 0 && len(c.GetNotValues()) == 0 {
				oe.add(cf, "at least one of values or notValues is required")
			}
			if k := c.GetKey(); k != "" && !model.AuthzConditionKeySupported(k) {
				oe.warn(cf+".key", "condition key %q is not supported: %s", k, failClosed(ap.GetAction()))
			}
		}
	}
}

// failClosed says what translation does with a part it cannot express.
func failClosed(a security.AuthorizationPolicy_Action) string {
	if a == security.AuthorizationPolicy_ALLOW {
		return "the rule is left out (allows nothing)"
	}
	return "the condition is ignored (the rule matches more)"
}

func validateSource(oe *objectErrors, f string, s *security.Source) {
	if s == nil {
		oe.add(f, "source is required")
		return
	}
	lists := [][]string{
		s.GetPrincipals(), s.GetNotPrincipals(), s.GetRequestPrincipals(), s.GetNotRequestPrincipals(),
		s.GetNamespaces(), s.GetNotNamespaces(), s.GetServiceAccounts(), s.GetNotServiceAccounts(),
		s.GetIpBlocks(), s.GetNotIpBlocks(), s.GetRemoteIpBlocks(), s.GetNotRemoteIpBlocks(),
		s.GetTrustDomains(), s.GetNotTrustDomains(),
	}
	if allEmpty(lists) {
		oe.add(f, "source must set at least one field")
	}
	for _, pair := range []struct {
		field  string
		blocks []string
	}{
		{"ipBlocks", s.GetIpBlocks()}, {"notIpBlocks", s.GetNotIpBlocks()},
		{"remoteIpBlocks", s.GetRemoteIpBlocks()}, {"notRemoteIpBlocks", s.GetNotRemoteIpBlocks()},
	} {
		for i, b := range pair.blocks {
			if !isIPOrCIDR(b) {
				oe.add(idx(f+"."+pair.field, i), "invalid IP block %q: must be an IP address or CIDR prefix", b)
			}
		}
	}
}

func validateOperation(oe *objectErrors, f string, o *security.Operation) {
	if o == nil {
		oe.add(f, "operation is required")
		return
	}
	lists := [][]string{
		o.GetHosts(), o.GetNotHosts(), o.GetPorts(), o.GetNotPorts(),
		o.GetMethods(), o.GetNotMethods(), o.GetPaths(), o.GetNotPaths(),
	}
	if allEmpty(lists) {
		oe.add(f, "operation must set at least one field")
	}
	for _, pair := range []struct {
		field string
		ports []string
	}{{"ports", o.GetPorts()}, {"notPorts", o.GetNotPorts()}} {
		for i, p := range pair.ports {
			if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
				oe.add(idx(f+"."+pair.field, i), "invalid port %q: must be a number in 1-65535", p)
			}
		}
	}
}

func allEmpty(lists [][]string) bool {
	for _, l := range lists {
		if len(l) > 0 {
			return false
		}
	}
	return true
}

func validateRequestAuthentication(oe *objectErrors, ra *security.RequestAuthentication) {
	validateSelectorLabels(oe, "spec.selector.matchLabels", ra.GetSelector().GetMatchLabels())
	if ra.GetSelector() != nil && (ra.GetTargetRef() != nil || len(ra.GetTargetRefs()) > 0) {
		oe.add("spec", "only one of selector, targetRef or targetRefs may be set")
	}
	for i, r := range ra.GetJwtRules() {
		f := idx("spec.jwtRules", i)
		if r.GetIssuer() == "" {
			oe.add(f+".issuer", "issuer is required")
		}
		if u := r.GetJwksUri(); u != "" {
			parsed, err := url.Parse(u)
			if err != nil || (parsed.Scheme != "http" && parsed.Scheme != "https") || parsed.Host == "" {
				oe.add(f+".jwksUri", "jwksUri %q must be an http or https URL", u)
			}
		}
		for j, h := range r.GetFromHeaders() {
			if strings.TrimSpace(h.GetName()) == "" {
				oe.add(idx(f+".fromHeaders", j)+".name", "header name is required")
			}
		}
		for j, c := range r.GetOutputClaimToHeaders() {
			cf := idx(f+".outputClaimToHeaders", j)
			if c.GetHeader() == "" {
				oe.add(cf+".header", "header is required")
			}
			if c.GetClaim() == "" {
				oe.add(cf+".claim", "claim is required")
			}
		}
		validateDuration(oe, f+".timeout", r.GetTimeout())
	}
}
