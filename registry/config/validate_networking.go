package config

import (
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/sextant-mesh/sextant/model"
)

func validateServiceEntry(oe *objectErrors, se *networking.ServiceEntry) {
	if len(se.GetHosts()) == 0 {
		oe.add("spec.hosts", "service entry must have at least one host")
	}
	for i, h := range se.GetHosts() {
		f := idx("spec.hosts", i)
		if h == "*" {
			oe.add(f, "invalid host \"*\": a service entry cannot match every host")
		} else if why := checkWildcardHost(h); why != "" {
			oe.add(f, "%s", why)
		}
	}
	for i, a := range se.GetAddresses() {
		if !isIPOrCIDR(a) {
			oe.add(idx("spec.addresses", i), "invalid address %q: must be an IP address or CIDR prefix", a)
		}
	}
	if len(se.GetPorts()) == 0 {
		oe.add("spec.ports", "service entry must have at least one port")
	}
	portNames := map[string]bool{}
	names := map[string]int{}
	numbers := map[uint32]int{}
	for i, p := range se.GetPorts() {
		f := idx("spec.ports", i)
		switch {
		case p.GetName() == "":
			oe.add(f+".name", "port name is required")
		case !isDNSLabel(p.GetName()):
			oe.add(f+".name", "invalid port name %q: must be an RFC 1123 label", p.GetName())
		}
		if j, dup := names[p.GetName()]; dup && p.GetName() != "" {
			oe.add(f+".name", "duplicate port name %q (also spec.ports[%d])", p.GetName(), j)
		}
		names[p.GetName()] = i
		portNames[p.GetName()] = true
		validatePortNumber(oe, f+".number", p.GetNumber())
		if j, dup := numbers[p.GetNumber()]; dup {
			oe.add(f+".number", "duplicate port number %d (also spec.ports[%d])", p.GetNumber(), j)
		}
		numbers[p.GetNumber()] = i
		validateProtocol(oe, f+".protocol", p.GetProtocol())
		if p.GetTargetPort() != 0 {
			validatePortNumber(oe, f+".targetPort", p.GetTargetPort())
		}
	}
	if ws := se.GetWorkloadSelector(); ws != nil {
		if len(se.GetEndpoints()) > 0 {
			oe.add("spec.workloadSelector", "only one of workloadSelector or endpoints may be set")
		}
		if len(ws.GetLabels()) == 0 {
			oe.warn("spec.workloadSelector.labels", "empty workloadSelector selects no workloads")
		}
		validateSelectorLabels(oe, "spec.workloadSelector.labels", ws.GetLabels())
	}
	res := se.GetResolution()
	switch res {
	case networking.ServiceEntry_NONE:
		if len(se.GetEndpoints()) > 0 {
			oe.add("spec.endpoints", "endpoints are not allowed with resolution NONE")
		}
	case networking.ServiceEntry_STATIC:
		if len(se.GetEndpoints()) == 0 && se.GetWorkloadSelector() == nil {
			oe.warn("spec.endpoints", "resolution STATIC without endpoints or workloadSelector: the service has no endpoints")
		}
		for i, ep := range se.GetEndpoints() {
			if a := ep.GetAddress(); a != "" && !isIP(a) && !isUnixAddress(a) {
				oe.add(idx("spec.endpoints", i)+".address",
					"endpoint address %q must be an IP address or unix:// socket with resolution STATIC", a)
			}
		}
	case networking.ServiceEntry_DNS, networking.ServiceEntry_DNS_ROUND_ROBIN:
		if len(se.GetEndpoints()) == 0 && se.GetWorkloadSelector() == nil {
			for i, h := range se.GetHosts() {
				if strings.HasPrefix(h, "*") {
					oe.add(idx("spec.hosts", i), "wildcard host %q is not allowed with resolution %s and no endpoints", h, res)
				}
			}
		}
		if res == networking.ServiceEntry_DNS_ROUND_ROBIN && len(se.GetEndpoints()) > 1 {
			oe.add("spec.endpoints", "resolution DNS_ROUND_ROBIN allows at most one endpoint")
		}
		for i, ep := range se.GetEndpoints() {
			if a := ep.GetAddress(); a != "" && !isIP(a) && !isDNSName(a) {
				oe.add(idx("spec.endpoints", i)+".address",
					"endpoint address %q must be a DNS name or an IP address with resolution %s", a, res)
			}
		}
	default:
		oe.add("spec.resolution", "resolution %s is not supported", res)
	}
	for i, ep := range se.GetEndpoints() {
		validateWorkload(oe, idx("spec.endpoints", i), ep, portNames)
	}
	validateExportTo(oe, "spec.exportTo", se.GetExportTo())
}

// validateWorkload checks a WorkloadEntry, standalone (declared == nil) or
// inline in a ServiceEntry whose port names are declared.
func validateWorkload(oe *objectErrors, field string, we *networking.WorkloadEntry, declared map[string]bool) {
	addr := we.GetAddress()
	switch {
	case addr == "":
		oe.add(field+".address", "address is required")
	case isUnixAddress(addr):
		if len(we.GetPorts()) > 0 {
			oe.add(field+".ports", "unix domain socket endpoint %q cannot have ports", addr)
		}
	case !isIP(addr) && !isDNSName(addr):
		oe.add(field+".address", "invalid address %q: must be an IP address, a DNS name or a unix:// socket", addr)
	}
	for _, name := range slices.Sorted(maps.Keys(we.GetPorts())) {
		f := key(field+".ports", name)
		if declared != nil && !declared[name] {
			oe.add(f, "port %q is not declared in spec.ports", name)
		}
		validatePortNumber(oe, f, we.GetPorts()[name])
	}
	for _, k := range slices.Sorted(maps.Keys(we.GetLabels())) {
		if k == "" {
			oe.add(field+".labels", "label keys must not be empty")
		}
	}
}

func validateVirtualService(oe *objectErrors, vs *networking.VirtualService) {
	if len(vs.GetHosts()) == 0 {
		oe.add("spec.hosts", "virtual service must have at least one host")
	}
	mesh := len(vs.GetGateways()) == 0
	for i, g := range vs.GetGateways() {
		if g == "mesh" {
			mesh = true
		}
		if g == "" {
			oe.add(idx("spec.gateways", i), "gateway name must not be empty")
		}
	}
	for i, h := range vs.GetHosts() {
		f := idx("spec.hosts", i)
		switch {
		case h == "*":
			if mesh {
				oe.add(f, "wildcard host \"*\" is not allowed for virtual services bound to the mesh gateway")
			}
		case isIP(h):
		default:
			if why := checkWildcardHost(h); why != "" {
				oe.add(f, "%s", why)
			}
		}
	}
	if len(vs.GetHttp()) == 0 && len(vs.GetTcp()) == 0 && len(vs.GetTls()) == 0 {
		oe.add("spec", "http, tcp or tls must be provided in virtual service")
	}
	for i, r := range vs.GetHttp() {
		validateHTTPRoute(oe, idx("spec.http", i), r)
	}
	for i, r := range vs.GetTcp() {
		f := idx("spec.tcp", i)
		for j, m := range r.GetMatch() {
			mf := idx(f+".match", j)
			validateSubnets(oe, mf+".destinationSubnets", m.GetDestinationSubnets())
			if m.GetSourceSubnet() != "" && !isIPOrCIDR(m.GetSourceSubnet()) {
				oe.add(mf+".sourceSubnet", "invalid subnet %q", m.GetSourceSubnet())
			}
			if m.GetPort() != 0 {
				validatePortNumber(oe, mf+".port", m.GetPort())
			}
		}
		validateRouteDestinations(oe, f+".route", r.GetRoute(), "TCP")
	}
	for i, r := range vs.GetTls() {
		f := idx("spec.tls", i)
		if len(r.GetMatch()) == 0 {
			oe.add(f+".match", "TLS route must have at least one match condition")
		}
		for j, m := range r.GetMatch() {
			mf := idx(f+".match", j)
			if len(m.GetSniHosts()) == 0 {
				oe.add(mf+".sniHosts", "TLS match must have at least one SNI host")
			}
			for k, sni := range m.GetSniHosts() {
				sf := idx(mf+".sniHosts", k)
				if why := checkWildcardHost(sni); why != "" {
					oe.add(sf, "%s", why)
				} else if !sniCovered(sni, vs.GetHosts()) {
					oe.add(sf, "SNI host %q is not covered by the virtual service's hosts", sni)
				}
			}
			validateSubnets(oe, mf+".destinationSubnets", m.GetDestinationSubnets())
			if m.GetPort() != 0 {
				validatePortNumber(oe, mf+".port", m.GetPort())
			}
		}
		validateRouteDestinations(oe, f+".route", r.GetRoute(), "TLS")
	}
	validateExportTo(oe, "spec.exportTo", vs.GetExportTo())
}

func sniCovered(sni string, hosts []string) bool {
	for _, h := range hosts {
		if h == sni || model.HostMatches(h, sni) {
			return true
		}
	}
	return false
}

func validateSubnets(oe *objectErrors, field string, subnets []string) {
	for i, s := range subnets {
		if !isIPOrCIDR(s) {
			oe.add(idx(field, i), "invalid subnet %q: must be an IP address or CIDR prefix", s)
		}
	}
}

func validateRouteDestinations(oe *objectErrors, field string, route []*networking.RouteDestination, kind string) {
	if len(route) == 0 {
		oe.add(field, "%s route must have at least one destination", kind)
	}
	weights := make([]int32, len(route))
	for i, rd := range route {
		weights[i] = rd.GetWeight()
		validateDestination(oe, idx(field, i)+".destination", rd.GetDestination())
	}
	validateWeights(oe, field, weights)
}

// validateWeights applies the rule that the weights of several destinations
// must add up to 100; a single destination may leave its weight unset.
func validateWeights(oe *objectErrors, field string, weights []int32) {
	var total int64
	negative := false
	for i, w := range weights {
		if w < 0 {
			oe.add(idx(field, i)+".weight", "weight %d must not be negative", w)
			negative = true
		}
		total += int64(w)
	}
	switch {
	case negative:
	case len(weights) > 1 && total != 100:
		oe.add(field, "destination weights must sum to 100, got %d", total)
	case len(weights) == 1 && total > 100:
		oe.add(idx(field, 0)+".weight", "weight %d is more than 100", total)
	}
}

func validateDestination(oe *objectErrors, field string, d *networking.Destination) {
	if d == nil {
		oe.add(field, "destination is required")
		return
	}
	switch h := d.GetHost(); {
	case h == "":
		oe.add(field+".host", "destination host is required")
	case h == "*":
		oe.add(field+".host", "invalid destination host \"*\"")
	default:
		if why := checkWildcardHost(h); why != "" && !isIP(h) {
			oe.add(field+".host", "%s", why)
		}
	}
	if s := d.GetSubset(); s != "" && !isDNSLabel(s) {
		oe.add(field+".subset", "invalid subset name %q: must be an RFC 1123 label", s)
	}
	if d.GetPort() != nil {
		validatePortNumber(oe, field+".port.number", d.GetPort().GetNumber())
	}
}

func validateHTTPRoute(oe *objectErrors, f string, r *networking.HTTPRoute) {
	hasRoute := len(r.GetRoute()) > 0
	if r.GetRedirect() != nil && hasRoute {
		oe.add(f, "HTTP route cannot contain both route and redirect")
	}
	if r.GetDirectResponse() != nil && hasRoute {
		oe.add(f, "HTTP route cannot contain both route and directResponse")
	}
	if r.GetRedirect() != nil && r.GetDirectResponse() != nil {
		oe.add(f, "HTTP route cannot contain both redirect and directResponse")
	}
	if r.GetDelegate() != nil && (hasRoute || r.GetRedirect() != nil || r.GetDirectResponse() != nil) {
		oe.add(f+".delegate", "delegate cannot be combined with route, redirect or directResponse")
	}
	if !hasRoute && r.GetRedirect() == nil && r.GetDirectResponse() == nil && r.GetDelegate() == nil {
		oe.add(f+".route", "HTTP route must have a route, redirect or directResponse")
	}
	if r.GetRedirect() != nil && r.GetRewrite() != nil {
		oe.add(f, "HTTP route cannot contain both rewrite and redirect")
	}
	for i, m := range r.GetMatch() {
		validateHTTPMatch(oe, idx(f+".match", i), m)
	}
	weights := make([]int32, len(r.GetRoute()))
	for i, rd := range r.GetRoute() {
		weights[i] = rd.GetWeight()
		validateDestination(oe, idx(f+".route", i)+".destination", rd.GetDestination())
	}
	validateWeights(oe, f+".route", weights)
	if rd := r.GetRedirect(); rd != nil {
		if rd.GetUri() == "" && rd.GetAuthority() == "" && rd.GetScheme() == "" && rd.GetRedirectPort() == nil {
			oe.add(f+".redirect", "redirect must set uri, authority, scheme or port")
		}
		switch rd.GetRedirectCode() {
		case 0, 301, 302, 303, 307, 308:
		default:
			oe.add(f+".redirect.redirectCode", "redirect code %d must be 301, 302, 303, 307 or 308", rd.GetRedirectCode())
		}
		if p, ok := rd.GetRedirectPort().(*networking.HTTPRedirect_Port); ok {
			validatePortNumber(oe, f+".redirect.port", p.Port)
		}
	}
	if dr := r.GetDirectResponse(); dr != nil && (dr.GetStatus() < 200 || dr.GetStatus() > 599) {
		oe.add(f+".directResponse.status", "status %d is out of range 200-599", dr.GetStatus())
	}
	if rw := r.GetRewrite(); rw != nil && rw.GetUriRegexRewrite() != nil {
		if rw.GetUri() != "" {
			oe.add(f+".rewrite", "rewrite cannot set both uri and uriRegexRewrite")
		}
		validateRegex(oe, f+".rewrite.uriRegexRewrite.match", rw.GetUriRegexRewrite().GetMatch())
	}
	validateDuration(oe, f+".timeout", r.GetTimeout())
	if rt := r.GetRetries(); rt != nil {
		if rt.GetAttempts() < 0 {
			oe.add(f+".retries.attempts", "attempts %d must not be negative", rt.GetAttempts())
		}
		validateDuration(oe, f+".retries.perTryTimeout", rt.GetPerTryTimeout())
		validateDuration(oe, f+".retries.backoff", rt.GetBackoff())
		validateRetryOn(oe, f+".retries.retryOn", rt.GetRetryOn())
	}
	if ft := r.GetFault(); ft != nil {
		validateFault(oe, f+".fault", ft)
	}
	if r.GetMirror() != nil && len(r.GetMirrors()) > 0 {
		oe.add(f, "HTTP route cannot contain both mirror and mirrors")
	}
	if r.GetMirror() != nil {
		validateDestination(oe, f+".mirror", r.GetMirror())
	}
	validatePercentage(oe, f+".mirrorPercentage", r.GetMirrorPercentage())
	if mp := r.GetMirrorPercent(); mp != nil && mp.GetValue() > 100 {
		oe.add(f+".mirrorPercent", "percentage %d is out of range 0-100", mp.GetValue())
	}
	for i, m := range r.GetMirrors() {
		mf := idx(f+".mirrors", i)
		validateDestination(oe, mf+".destination", m.GetDestination())
		validatePercentage(oe, mf+".percentage", m.GetPercentage())
	}
	if c := r.GetCorsPolicy(); c != nil {
		for i, o := range c.GetAllowOrigins() {
			validateStringMatch(oe, idx(f+".corsPolicy.allowOrigins", i), o, false)
		}
		validateDuration(oe, f+".corsPolicy.maxAge", c.GetMaxAge())
	}
}

func validateHTTPMatch(oe *objectErrors, f string, m *networking.HTTPMatchRequest) {
	validateStringMatch(oe, f+".uri", m.GetUri(), false)
	validateStringMatch(oe, f+".scheme", m.GetScheme(), false)
	validateStringMatch(oe, f+".method", m.GetMethod(), false)
	validateStringMatch(oe, f+".authority", m.GetAuthority(), false)
	for _, pair := range []struct {
		field   string
		headers map[string]*networking.StringMatch
	}{{"headers", m.GetHeaders()}, {"withoutHeaders", m.GetWithoutHeaders()}} {
		for _, name := range slices.Sorted(maps.Keys(pair.headers)) {
			hf := key(f+"."+pair.field, name)
			switch {
			case name == "":
				oe.add(f+"."+pair.field, "header name must not be empty")
			case strings.ToLower(name) != name:
				oe.add(hf, "header name %q must be lower case", name)
			}
			validateStringMatch(oe, hf, pair.headers[name], true)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(m.GetQueryParams())) {
		qf := key(f+".queryParams", name)
		sm := m.GetQueryParams()[name]
		if _, ok := sm.GetMatchType().(*networking.StringMatch_Prefix); ok {
			oe.add(qf, "query parameters support only exact and regex matches")
			continue
		}
		validateStringMatch(oe, qf, sm, true)
	}
	if m.GetPort() != 0 {
		validatePortNumber(oe, f+".port", m.GetPort())
	}
}

// isRetryPolicy reports whether p is an Envoy retry_on value Istio accepts
// (HTTP status codes aside).
func isRetryPolicy(p string) bool {
	switch p {
	case "5xx", "gateway-error", "reset", "reset-before-request", "connect-failure",
		"envoy-ratelimited", "retriable-4xx", "refused-stream", "retriable-status-codes",
		"retriable-headers", "http3-post-connect-failure",
		"cancelled", "deadline-exceeded", "internal", "resource-exhausted", "unavailable":
		return true
	}
	return false
}

func validateRetryOn(oe *objectErrors, field, retryOn string) {
	if retryOn == "" {
		return
	}
	for _, p := range strings.Split(retryOn, ",") {
		p = strings.TrimSpace(p)
		if isRetryPolicy(p) {
			continue
		}
		if code, err := strconv.Atoi(p); err == nil && code >= 100 && code <= 599 {
			continue
		}
		oe.add(field, "unknown retry policy %q", p)
	}
}

func validateFault(oe *objectErrors, f string, ft *networking.HTTPFaultInjection) {
	if ft.GetDelay() == nil && ft.GetAbort() == nil {
		oe.add(f, "fault must have an abort and/or a delay")
	}
	if d := ft.GetDelay(); d != nil {
		validatePercentage(oe, f+".delay.percentage", d.GetPercentage())
		if d.GetPercent() < 0 || d.GetPercent() > 100 {
			oe.add(f+".delay.percent", "percentage %d is out of range 0-100", d.GetPercent())
		}
		switch t := d.GetHttpDelayType().(type) {
		case nil:
			oe.add(f+".delay", "delay must set fixedDelay")
		case *networking.HTTPFaultInjection_Delay_FixedDelay:
			validatePositiveDuration(oe, f+".delay.fixedDelay", t.FixedDelay)
		case *networking.HTTPFaultInjection_Delay_ExponentialDelay:
			validatePositiveDuration(oe, f+".delay.exponentialDelay", t.ExponentialDelay)
		}
	}
	if a := ft.GetAbort(); a != nil {
		validatePercentage(oe, f+".abort.percentage", a.GetPercentage())
		switch t := a.GetErrorType().(type) {
		case nil:
			oe.add(f+".abort", "abort must set httpStatus or grpcStatus")
		case *networking.HTTPFaultInjection_Abort_HttpStatus:
			if t.HttpStatus < 200 || t.HttpStatus > 599 {
				oe.add(f+".abort.httpStatus", "HTTP status %d is out of range 200-599", t.HttpStatus)
			}
		case *networking.HTTPFaultInjection_Abort_GrpcStatus:
			if t.GrpcStatus == "" {
				oe.add(f+".abort.grpcStatus", "grpcStatus must not be empty")
			}
		}
	}
}

func validateDestinationRule(oe *objectErrors, dr *networking.DestinationRule) {
	if dr.GetHost() == "" {
		oe.add("spec.host", "host is required")
	} else if why := checkWildcardHost(dr.GetHost()); why != "" {
		oe.add("spec.host", "%s", why)
	}
	if tp := dr.GetTrafficPolicy(); tp != nil {
		validateTrafficPolicy(oe, "spec.trafficPolicy", tp)
	}
	names := map[string]int{}
	for i, s := range dr.GetSubsets() {
		f := idx("spec.subsets", i)
		switch {
		case s.GetName() == "":
			oe.add(f+".name", "subset name is required")
		case !isDNSLabel(s.GetName()):
			oe.add(f+".name", "invalid subset name %q: must be an RFC 1123 label", s.GetName())
		}
		if j, dup := names[s.GetName()]; dup && s.GetName() != "" {
			oe.add(f+".name", "duplicate subset name %q (also spec.subsets[%d])", s.GetName(), j)
		}
		names[s.GetName()] = i
		validateSelectorLabels(oe, f+".labels", s.GetLabels())
		if tp := s.GetTrafficPolicy(); tp != nil {
			validateTrafficPolicy(oe, f+".trafficPolicy", tp)
		}
	}
	if ws := dr.GetWorkloadSelector(); ws != nil {
		validateSelectorLabels(oe, "spec.workloadSelector.matchLabels", ws.GetMatchLabels())
	}
	validateExportTo(oe, "spec.exportTo", dr.GetExportTo())
}

func validateTrafficPolicy(oe *objectErrors, f string, tp *networking.TrafficPolicy) {
	if tp.GetLoadBalancer() == nil && tp.GetConnectionPool() == nil && tp.GetOutlierDetection() == nil &&
		tp.GetTls() == nil && len(tp.GetPortLevelSettings()) == 0 && tp.GetTunnel() == nil &&
		tp.GetProxyProtocol() == nil && tp.GetRetryBudget() == nil {
		oe.add(f, "traffic policy must set at least one field")
	}
	validateLoadBalancer(oe, f+".loadBalancer", tp.GetLoadBalancer())
	validateConnectionPool(oe, f+".connectionPool", tp.GetConnectionPool())
	validateOutlierDetection(oe, f+".outlierDetection", tp.GetOutlierDetection())
	validateClientTLS(oe, f+".tls", tp.GetTls())
	if rb := tp.GetRetryBudget(); rb != nil && rb.GetPercent() != nil {
		if v := rb.GetPercent().GetValue(); v < 0 || v > 100 {
			oe.add(f+".retryBudget.percent", "percentage %v is out of range 0-100", v)
		}
	}
	ports := map[uint32]int{}
	for i, pl := range tp.GetPortLevelSettings() {
		pf := idx(f+".portLevelSettings", i)
		if pl.GetPort() == nil {
			oe.add(pf+".port", "port is required")
		} else {
			n := pl.GetPort().GetNumber()
			validatePortNumber(oe, pf+".port.number", n)
			if j, dup := ports[n]; dup {
				oe.add(pf+".port.number", "duplicate port %d (also %s)", n, idx(f+".portLevelSettings", j))
			}
			ports[n] = i
		}
		validateLoadBalancer(oe, pf+".loadBalancer", pl.GetLoadBalancer())
		validateConnectionPool(oe, pf+".connectionPool", pl.GetConnectionPool())
		validateOutlierDetection(oe, pf+".outlierDetection", pl.GetOutlierDetection())
		validateClientTLS(oe, pf+".tls", pl.GetTls())
	}
}

// Envoy's limits for consistent-hash load balancers.
const (
	maxRingSize   = 8 * 1024 * 1024
	maxMaglevSize = 5000011
)

func validateLoadBalancer(oe *objectErrors, f string, lb *networking.LoadBalancerSettings) {
	if lb == nil {
		return
	}
	if ch := lb.GetConsistentHash(); ch != nil {
		cf := f + ".consistentHash"
		if ch.GetMinimumRingSize() > maxRingSize {
			oe.add(cf+".minimumRingSize", "minimumRingSize %d is more than %d", ch.GetMinimumRingSize(), maxRingSize)
		}
		if rh := ch.GetRingHash(); rh != nil && rh.GetMinimumRingSize() > maxRingSize {
			oe.add(cf+".ringHash.minimumRingSize", "minimumRingSize %d is more than %d", rh.GetMinimumRingSize(), maxRingSize)
		}
		if mg := ch.GetMaglev(); mg != nil && mg.GetTableSize() != 0 {
			if n := mg.GetTableSize(); n > maxMaglevSize || !isPrime(n) {
				oe.add(cf+".maglev.tableSize", "tableSize %d must be a prime number no larger than %d", n, maxMaglevSize)
			}
		}
		switch k := ch.GetHashKey().(type) {
		case *networking.LoadBalancerSettings_ConsistentHashLB_HttpHeaderName:
			if k.HttpHeaderName == "" {
				oe.add(cf+".httpHeaderName", "httpHeaderName must not be empty")
			}
		case *networking.LoadBalancerSettings_ConsistentHashLB_HttpQueryParameterName:
			if k.HttpQueryParameterName == "" {
				oe.add(cf+".httpQueryParameterName", "httpQueryParameterName must not be empty")
			}
		case *networking.LoadBalancerSettings_ConsistentHashLB_HttpCookie:
			if k.HttpCookie.GetName() == "" {
				oe.add(cf+".httpCookie.name", "cookie name is required")
			}
			validateDuration(oe, cf+".httpCookie.ttl", k.HttpCookie.GetTtl())
		}
	}
	if ll := lb.GetLocalityLbSetting(); ll != nil {
		lf := f + ".localityLbSetting"
		if len(ll.GetDistribute()) > 0 && len(ll.GetFailover()) > 0 {
			oe.add(lf, "cannot set both distribute and failover")
		}
		for i, d := range ll.GetDistribute() {
			var total uint64
			for _, w := range d.GetTo() {
				total += uint64(w)
			}
			if total != 100 {
				oe.add(idx(lf+".distribute", i)+".to", "weights must sum to 100, got %d", total)
			}
		}
		for i, fo := range ll.GetFailover() {
			if fo.GetFrom() == fo.GetTo() {
				oe.add(idx(lf+".failover", i), "failover from and to must differ (both %q)", fo.GetFrom())
			}
		}
	}
}

func isPrime(n uint64) bool {
	if n < 2 {
		return false
	}
	for d := uint64(2); d*d <= n; d++ {
		if n%d == 0 {
			return false
		}
	}
	return true
}

func nonNegative(oe *objectErrors, field string, v int32) {
	if v < 0 {
		oe.add(field, "%d must not be negative", v)
	}
}

func validateConnectionPool(oe *objectErrors, f string, cp *networking.ConnectionPoolSettings) {
	if cp == nil {
		return
	}
	if t := cp.GetTcp(); t != nil {
		nonNegative(oe, f+".tcp.maxConnections", t.GetMaxConnections())
		validateDuration(oe, f+".tcp.connectTimeout", t.GetConnectTimeout())
		validateDuration(oe, f+".tcp.maxConnectionDuration", t.GetMaxConnectionDuration())
		validateDuration(oe, f+".tcp.idleTimeout", t.GetIdleTimeout())
		validateDuration(oe, f+".tcp.tcpKeepalive.time", t.GetTcpKeepalive().GetTime())
		validateDuration(oe, f+".tcp.tcpKeepalive.interval", t.GetTcpKeepalive().GetInterval())
	}
	if h := cp.GetHttp(); h != nil {
		nonNegative(oe, f+".http.http1MaxPendingRequests", h.GetHttp1MaxPendingRequests())
		nonNegative(oe, f+".http.http2MaxRequests", h.GetHttp2MaxRequests())
		nonNegative(oe, f+".http.maxRequestsPerConnection", h.GetMaxRequestsPerConnection())
		nonNegative(oe, f+".http.maxRetries", h.GetMaxRetries())
		nonNegative(oe, f+".http.maxConcurrentStreams", h.GetMaxConcurrentStreams())
		validateDuration(oe, f+".http.idleTimeout", h.GetIdleTimeout())
	}
}

func validateOutlierDetection(oe *objectErrors, f string, od *networking.OutlierDetection) {
	if od == nil {
		return
	}
	nonNegative(oe, f+".consecutiveErrors", od.GetConsecutiveErrors())
	if v := od.GetMaxEjectionPercent(); v < 0 || v > 100 {
		oe.add(f+".maxEjectionPercent", "percentage %d is out of range 0-100", v)
	}
	if v := od.GetMinHealthPercent(); v < 0 || v > 100 {
		oe.add(f+".minHealthPercent", "percentage %d is out of range 0-100", v)
	}
	if v := od.GetFailurePercentageThreshold(); v != nil && v.GetValue() > 100 {
		oe.add(f+".failurePercentageThreshold", "percentage %d is out of range 0-100", v.GetValue())
	}
	validatePositiveDuration(oe, f+".interval", od.GetInterval())
	validatePositiveDuration(oe, f+".baseEjectionTime", od.GetBaseEjectionTime())
}

func validateClientTLS(oe *objectErrors, f string, tls *networking.ClientTLSSettings) {
	if tls == nil {
		return
	}
	switch tls.GetMode() {
	case networking.ClientTLSSettings_MUTUAL:
		if tls.GetCredentialName() == "" && (tls.GetClientCertificate() == "" || tls.GetPrivateKey() == "") {
			oe.add(f, "mode MUTUAL requires clientCertificate and privateKey, or credentialName")
		}
	case networking.ClientTLSSettings_ISTIO_MUTUAL:
		if tls.GetClientCertificate() != "" || tls.GetPrivateKey() != "" || tls.GetCaCertificates() != "" ||
			tls.GetCredentialName() != "" {
			oe.add(f, "mode ISTIO_MUTUAL cannot set certificates or credentialName")
		}
	}
}

func validateSidecar(oe *objectErrors, sc *networking.Sidecar) {
	if len(sc.GetEgress()) == 0 && len(sc.GetIngress()) == 0 && sc.GetOutboundTrafficPolicy() == nil &&
		sc.GetInboundConnectionPool() == nil {
		oe.add("spec", "sidecar must set at least one of egress, ingress, outboundTrafficPolicy or inboundConnectionPool")
	}
	if ws := sc.GetWorkloadSelector(); ws != nil {
		validateSelectorLabels(oe, "spec.workloadSelector.labels", ws.GetLabels())
	}
	catchAll := -1
	for i, e := range sc.GetEgress() {
		f := idx("spec.egress", i)
		if e.GetPort() == nil {
			if catchAll >= 0 {
				oe.add(f, "only one egress listener may omit the port (spec.egress[%d] already does)", catchAll)
			} else {
				catchAll = i
			}
		} else {
			validateSidecarPort(oe, f+".port", e.GetPort())
		}
		if len(e.GetHosts()) == 0 {
			oe.add(f+".hosts", "egress listener must have at least one host")
		}
		for j, h := range e.GetHosts() {
			validateSidecarHost(oe, idx(f+".hosts", j), h)
		}
	}
	if catchAll >= 0 && catchAll != len(sc.GetEgress())-1 {
		oe.add(idx("spec.egress", catchAll), "the egress listener without a port must be the last one")
	}
	for i, in := range sc.GetIngress() {
		f := idx("spec.ingress", i)
		if in.GetPort() == nil {
			oe.add(f+".port", "port is required")
		} else {
			validateSidecarPort(oe, f+".port", in.GetPort())
		}
		if de := in.GetDefaultEndpoint(); de != "" && !isUnixAddress(de) {
			host, port, err := net.SplitHostPort(de)
			n, perr := strconv.Atoi(port)
			if err != nil || !isIP(host) || perr != nil || n < 1 || n > 65535 {
				oe.add(f+".defaultEndpoint", "defaultEndpoint %q must be IP:port or unix:///path", de)
			}
		}
	}
	if op := sc.GetOutboundTrafficPolicy(); op != nil && op.GetEgressProxy() != nil {
		validateDestination(oe, "spec.outboundTrafficPolicy.egressProxy", op.GetEgressProxy())
	}
}

func validateSidecarPort(oe *objectErrors, f string, p *networking.SidecarPort) {
	validatePortNumber(oe, f+".number", p.GetNumber())
	if p.GetProtocol() != "" {
		validateProtocol(oe, f+".protocol", p.GetProtocol())
	}
	if p.GetName() != "" && !isDNSLabel(p.GetName()) {
		oe.add(f+".name", "invalid port name %q", p.GetName())
	}
}

// validateSidecarHost checks an egress host in "namespace/host" form, where
// namespace is "*", "." (the Sidecar's own), "~" (none) or a namespace.
func validateSidecarHost(oe *objectErrors, f, h string) {
	ns, host, ok := strings.Cut(h, "/")
	if !ok {
		oe.add(f, "host %q must be in namespace/host form", h)
		return
	}
	if ns != "*" && ns != "." && ns != "~" && !isLowerDNSLabel(ns) {
		oe.add(f, "invalid namespace %q in host %q: must be \"*\", \".\", \"~\" or a namespace", ns, h)
	}
	if why := checkWildcardHost(host); why != "" {
		oe.add(f, "%s", why)
	}
}
