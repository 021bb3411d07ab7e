package translate

import (
	"net/http"
	"sort"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	faultcommon "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/common/fault/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	previoushosts "github.com/envoyproxy/go-control-plane/envoy/extensions/retry/host/previous_hosts/v3"
	previouspriorities "github.com/envoyproxy/go-control-plane/envoy/extensions/retry/priority/previous_priorities/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/sextant-mesh/sextant/discovery/proxy"
	"github.com/sextant-mesh/sextant/model"
)

// Filter names, as Envoy and gRPC know them.
const (
	FaultFilter  = "envoy.filters.http.fault"
	RouterFilter = "envoy.filters.http.router"
	CorsFilter   = "envoy.filters.http.cors"
)

// routeInputs hashes everything the routes of (svc, port) depend on for p,
// so routes can be cached across snapshots.
func (c *Context) routeInputs(p *proxy.Proxy, svc *model.Service, vs *model.Config) uint64 {
	// The proxy's namespace matters only through what it selects (the
	// VirtualService and DestinationRules, hashed below) and sourceNamespace
	// matches; proxies of every namespace share routes otherwise.
	h := &model.Hasher{}
	h.Str(string(p.Generator)).U64(c.Snap.ServiceHash(svc.Hostname)).U64(c.meshHash)
	if vs == nil {
		return h.Sum()
	}
	h.U64(vs.Hash)
	if c.Snap.LabelsMatter() {
		h.Str(p.LabelsKey())
	}
	if usesSourceNamespace(vs.Spec.(*networking.VirtualService)) {
		h.Str(p.Namespace)
	}
	// Destination services decide cluster names (their ports) and hash
	// policies (their DestinationRules).
	spec := vs.Spec.(*networking.VirtualService)
	seen := map[string]bool{}
	for _, r := range spec.GetHttp() {
		for _, d := range r.GetRoute() {
			c.hashDest(h, p, d.GetDestination(), vs.Key.Namespace, seen)
		}
		if m := r.GetMirror(); m != nil {
			c.hashDest(h, p, m, vs.Key.Namespace, seen)
		}
	}
	return h.Sum()
}

func usesSourceNamespace(vs *networking.VirtualService) bool {
	for _, r := range vs.GetHttp() {
		for _, m := range r.GetMatch() {
			if m.GetSourceNamespace() != "" {
				return true
			}
		}
	}
	for _, r := range vs.GetTcp() {
		for _, m := range r.GetMatch() {
			if m.GetSourceNamespace() != "" {
				return true
			}
		}
	}
	return false
}

func (c *Context) hashDest(h *model.Hasher, p *proxy.Proxy, d *networking.Destination, ns string, seen map[string]bool) {
	host := model.ResolveHost(d.GetHost(), ns)
	if seen[host] {
		return
	}
	seen[host] = true
	h.Str(host).U64(c.Snap.ServiceHash(host))
	if svc := c.Snap.Service(host); svc != nil {
		if dr := c.Snap.DestinationRule(host, p.Namespace, svc.Namespace); dr != nil {
			h.U64(dr.Hash)
		}
	}
}

// virtualService returns the VirtualService that applies to host for p, and
// records a warning when several claim it.
func (c *Context) virtualService(p *proxy.Proxy, host string) *model.Config {
	list := c.Snap.VirtualServices(host, p.Namespace)
	if len(list) == 0 {
		return nil
	}
	for _, other := range list[1:] {
		c.warnOnce("vs-conflict\x00"+host+"\x00"+other.Key.String(), &RouteError{
			VirtualService: other.Key.Namespace + "/" + other.Key.Name,
			Msg:            "host " + host + " is also claimed by VirtualService " + list[0].Key.Namespace + "/" + list[0].Key.Name + ", which is older and wins; this one is ignored for that host",
		})
	}
	return list[0]
}

// httpRoutes builds the routes for traffic to svc:port as seen by p.
func (c *Context) httpRoutes(p *proxy.Proxy, svc *model.Service, port model.Port, vs *model.Config) []*routev3.Route {
	grpc := p.Generator == proxy.GenGRPC
	if vs == nil {
		return []*routev3.Route{c.defaultRoute(p, svc, port, grpc)}
	}
	spec := vs.Spec.(*networking.VirtualService)
	var out []*routev3.Route
	for _, r := range spec.GetHttp() {
		matches := r.GetMatch()
		if len(matches) == 0 {
			matches = []*networking.HTTPMatchRequest{nil}
		}
		for _, m := range matches {
			if m != nil {
				if m.GetPort() != 0 && m.GetPort() != port.Number {
					continue
				}
				if len(m.GetSourceLabels()) > 0 && !model.LabelsMatch(m.GetSourceLabels(), p.Labels) {
					continue
				}
				if ns := m.GetSourceNamespace(); ns != "" && ns != p.Namespace {
					continue
				}
			}
			rt := c.buildRoute(p, svc, port, vs, r, m, grpc)
			if rt != nil {
				out = append(out, rt)
			}
		}
	}
	return out
}

func (c *Context) defaultRoute(p *proxy.Proxy, svc *model.Service, port model.Port, grpc bool) *routev3.Route {
	action := &routev3.RouteAction{
		ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: ClusterName(port.Number, "", svc.Hostname)},
	}
	if !grpc {
		action.Timeout = durationpb.New(0)
	}
	// istiod gives proxyless clients the same default retry policy as
	// sidecars (BuildDefaultHTTPOutboundRoute); grpc-go keeps the codes it
	// knows (unavailable, cancelled) and ignores the rest.
	action.RetryPolicy = defaultRetryPolicy()
	c.addHashPolicy(p, action, svc.Hostname, "", port.Number)
	if len(action.HashPolicy) > 0 {
		// With consistent hashing a retry must stay on the hashed host, so
		// istiod drops the previous-hosts predicate.
		action.RetryPolicy.RetryHostPredicate = nil
	}
	return &routev3.Route{
		Name:   "default",
		Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
		Action: &routev3.Route_Route{Route: action},
	}
}

func defaultRetryPolicy() *routev3.RetryPolicy {
	return &routev3.RetryPolicy{
		RetryOn:                       "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes",
		NumRetries:                    wrapperspb.UInt32(2),
		HostSelectionRetryMaxAttempts: 5,
		RetryHostPredicate: []*routev3.RetryPolicy_RetryHostPredicate{{
			Name:       "envoy.retry_host_predicates.previous_hosts",
			ConfigType: &routev3.RetryPolicy_RetryHostPredicate_TypedConfig{TypedConfig: mustAnyOf(&previoushosts.PreviousHostsPredicate{})},
		}},
	}
}

func (c *Context) buildRoute(p *proxy.Proxy, svc *model.Service, port model.Port, vs *model.Config, r *networking.HTTPRoute, m *networking.HTTPMatchRequest, grpc bool) *routev3.Route {
	rt := &routev3.Route{Name: r.GetName(), Match: routeMatch(m, grpc), Metadata: istioConfigMetadata("virtual-service", vs.Key)}
	if m != nil && m.GetName() != "" {
		if rt.Name != "" {
			rt.Name += "." + m.GetName()
		} else {
			rt.Name = m.GetName()
		}
	}
	switch {
	case r.GetRedirect() != nil:
		rt.Action = &routev3.Route_Redirect{Redirect: redirectAction(r.GetRedirect())}
	case r.GetDirectResponse() != nil:
		dr := r.GetDirectResponse()
		act := &routev3.DirectResponseAction{Status: dr.GetStatus()}
		if b := dr.GetBody(); b != nil {
			if s := b.GetString_(); s != "" {
				act.Body = &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: s}}
			} else if by := b.GetBytes(); len(by) > 0 {
				act.Body = &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: by}}
			}
		}
		rt.Action = &routev3.Route_DirectResponse{DirectResponse: act}
	default:
		action := c.routeAction(p, svc, port, vs, r, grpc)
		if action == nil {
			return nil
		}
		rt.Action = &routev3.Route_Route{Route: action}
	}
	if f := r.GetFault(); f != nil {
		if a := faultConfig(f); a != nil {
			rt.TypedPerFilterConfig = map[string]*anypb.Any{FaultFilter: a}
		}
	}
	if h := r.GetHeaders(); h != nil && !grpc {
		rt.RequestHeadersToAdd = headerOptions(h.GetRequest())
		rt.RequestHeadersToRemove = h.GetRequest().GetRemove()
		rt.ResponseHeadersToAdd = headerOptions(h.GetResponse())
		rt.ResponseHeadersToRemove = h.GetResponse().GetRemove()
	}
	return rt
}

func (c *Context) routeAction(p *proxy.Proxy, svc *model.Service, port model.Port, vs *model.Config, r *networking.HTTPRoute, grpc bool) *routev3.RouteAction {
	dests := r.GetRoute()
	action := &routev3.RouteAction{}
	var clusters []*routev3.WeightedCluster_ClusterWeight
	for _, d := range dests {
		w := d.GetWeight()
		if len(dests) == 1 && w == 0 {
			w = 100
		}
		if w == 0 {
			continue // gRPC drops zero weights; Envoy never picks them.
		}
		name := c.destCluster(d.GetDestination(), vs, port)
		cw := &routev3.WeightedCluster_ClusterWeight{Name: name, Weight: wrapperspb.UInt32(uint32(w))}
		if h := d.GetHeaders(); h != nil && !grpc {
			cw.RequestHeadersToAdd = headerOptions(h.GetRequest())
			cw.RequestHeadersToRemove = h.GetRequest().GetRemove()
			cw.ResponseHeadersToAdd = headerOptions(h.GetResponse())
			cw.ResponseHeadersToRemove = h.GetResponse().GetRemove()
		}
		clusters = append(clusters, cw)
	}
	switch len(clusters) {
	case 0:
		c.addErr(&RouteError{VirtualService: vs.Key.Namespace + "/" + vs.Key.Name, Msg: "route " + r.GetName() + " has no destination with weight > 0; skipped"})
		return nil
	case 1:
		if len(clusters[0].RequestHeadersToAdd)+len(clusters[0].RequestHeadersToRemove)+len(clusters[0].ResponseHeadersToAdd)+len(clusters[0].ResponseHeadersToRemove) == 0 {
			action.ClusterSpecifier = &routev3.RouteAction_Cluster{Cluster: clusters[0].Name}
			break
		}
		fallthrough
	default:
		action.ClusterSpecifier = &routev3.RouteAction_WeightedClusters{WeightedClusters: &routev3.WeightedCluster{Clusters: clusters}}
	}
	if t := r.GetTimeout(); t != nil {
		if grpc {
			action.MaxStreamDuration = &routev3.RouteAction_MaxStreamDuration{MaxStreamDuration: t, GrpcTimeoutHeaderMax: t}
		} else {
			action.Timeout = t
		}
	} else if !grpc {
		action.Timeout = durationpb.New(0)
	}
	if rp := retryPolicy(r.GetRetries(), grpc); rp != nil {
		action.RetryPolicy = rp
	}
	if rw := r.GetRewrite(); rw != nil {
		if rw.GetUri() != "" {
			action.PrefixRewrite = rw.GetUri()
		}
		if rw.GetAuthority() != "" {
			action.HostRewriteSpecifier = &routev3.RouteAction_HostRewriteLiteral{HostRewriteLiteral: rw.GetAuthority()}
		}
		if rr := rw.GetUriRegexRewrite(); rr != nil {
			action.RegexRewrite = &matcherv3.RegexMatchAndSubstitute{
				Pattern:      &matcherv3.RegexMatcher{Regex: rr.GetMatch()},
				Substitution: rr.GetRewrite(),
			}
		}
	}
	if !grpc {
		mirrors := r.GetMirrors()
		if m := r.GetMirror(); m != nil {
			mirrors = append([]*networking.HTTPMirrorPolicy{{Destination: m, Percentage: r.GetMirrorPercentage()}}, mirrors...)
		}
		for _, mp := range mirrors {
			pol := &routev3.RouteAction_RequestMirrorPolicy{Cluster: c.destCluster(mp.GetDestination(), vs, port)}
			pct := 100.0
			if mp.GetPercentage() != nil {
				pct = mp.GetPercentage().GetValue()
			}
			pol.RuntimeFraction = &corev3.RuntimeFractionalPercent{DefaultValue: fraction(pct)}
			action.RequestMirrorPolicies = append(action.RequestMirrorPolicies, pol)
		}
	}
	if len(dests) > 0 {
		d := dests[0].GetDestination()
		cl := c.destCluster(d, vs, port)
		num, subset, host, err := ParseClusterName(cl)
		if err == nil {
			c.addHashPolicy(p, action, host, subset, num)
		}
	}
	if len(dests) == 1 && len(action.HashPolicy) > 0 && action.RetryPolicy != nil && !r.GetRetries().GetRetryIgnorePreviousHosts().GetValue() {
		action.RetryPolicy.RetryHostPredicate = nil // as in defaultRoute
	}
	return action
}

// istioConfigMetadata names the Istio object a resource came from, in
// Istio's form (filter_metadata istio.config), which istioctl and
// sextantctl read to fill their DESTINATION RULE and VIRTUAL SERVICE columns.
func istioConfigMetadata(kind string, k model.ConfigKey) *corev3.Metadata {
	md, _ := structpb.NewStruct(map[string]any{
		"config": "/apis/networking.istio.io/v1/namespaces/" + k.Namespace + "/" + kind + "/" + k.Name,
	})
	return &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"istio": md}}
}

// RouteError is a piece of routing config skipped during translation.
type RouteError struct {
	VirtualService string
	Msg            string
}

func (e *RouteError) Error() string { return "VirtualService " + e.VirtualService + ": " + e.Msg }

// destCluster resolves a route destination to an outbound cluster name. A
// destination without a port uses the service's only port, else the port
// the traffic arrived on, as Istio does.
func (c *Context) destCluster(d *networking.Destination, vs *model.Config, port model.Port) string {
	host := model.ResolveHost(d.GetHost(), vs.Key.Namespace)
	num := d.GetPort().GetNumber()
	dsvc := c.Snap.Service(host)
	if num == 0 {
		if dsvc != nil && len(dsvc.Ports) == 1 {
			num = dsvc.Ports[0].Number
		} else {
			num = port.Number
		}
	}
	name := ClusterName(num, d.GetSubset(), host)
	if dsvc == nil {
		c.warnOnce("missing-host\x00"+name+"\x00"+vs.Key.String(), &RouteError{VirtualService: vs.Key.Namespace + "/" + vs.Key.Name, Msg: "route destination " + host + " is not a known service; requests routed there fail (503)"})
	}
	return name
}

func (c *Context) addHashPolicy(p *proxy.Proxy, action *routev3.RouteAction, host, subset string, port uint32) {
	svc := c.Snap.Service(host)
	if svc == nil {
		return
	}
	drc := c.Snap.DestinationRule(host, p.Namespace, svc.Namespace)
	if drc == nil {
		return
	}
	// The policy of the destination's subset and port wins, as for its
	// cluster's load balancer.
	pol := effectivePolicy(drc.Spec.(*networking.DestinationRule), port, subset)
	ch := pol.lb.GetConsistentHash()
	if ch == nil {
		return
	}
	var hp *routev3.RouteAction_HashPolicy
	switch {
	case ch.GetHttpHeaderName() != "":
		hp = &routev3.RouteAction_HashPolicy{PolicySpecifier: &routev3.RouteAction_HashPolicy_Header_{Header: &routev3.RouteAction_HashPolicy_Header{HeaderName: ch.GetHttpHeaderName()}}}
	case ch.GetHttpCookie() != nil:
		ck := ch.GetHttpCookie()
		hp = &routev3.RouteAction_HashPolicy{PolicySpecifier: &routev3.RouteAction_HashPolicy_Cookie_{Cookie: &routev3.RouteAction_HashPolicy_Cookie{Name: ck.GetName(), Path: ck.GetPath(), Ttl: ck.GetTtl()}}}
	case ch.GetUseSourceIp():
		hp = &routev3.RouteAction_HashPolicy{PolicySpecifier: &routev3.RouteAction_HashPolicy_ConnectionProperties_{ConnectionProperties: &routev3.RouteAction_HashPolicy_ConnectionProperties{SourceIp: true}}}
	case ch.GetHttpQueryParameterName() != "":
		hp = &routev3.RouteAction_HashPolicy{PolicySpecifier: &routev3.RouteAction_HashPolicy_QueryParameter_{QueryParameter: &routev3.RouteAction_HashPolicy_QueryParameter{Name: ch.GetHttpQueryParameterName()}}}
	}
	if hp != nil {
		action.HashPolicy = append(action.HashPolicy, hp)
	}
}

// grpcRetryCodes are the retry_on values gRPC understands.
var grpcRetryCodes = map[string]bool{"cancelled": true, "deadline-exceeded": true, "internal": true, "resource-exhausted": true, "unavailable": true}

func retryPolicy(r *networking.HTTPRetry, grpc bool) *routev3.RetryPolicy {
	if r == nil {
		// No VirtualService retries: the mesh default, for sidecars and
		// proxyless clients alike (istiod's retry.ConvertPolicy(nil)).
		return defaultRetryPolicy()
	}
	if r.GetAttempts() == 0 {
		return nil
	}
	on := r.GetRetryOn()
	if on == "" {
		on = "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
	}
	if grpc {
		var kept []string
		for _, s := range strings.Split(on, ",") {
			if s = strings.TrimSpace(s); grpcRetryCodes[s] {
				kept = append(kept, s)
			}
		}
		if len(kept) == 0 {
			kept = []string{"unavailable"}
		}
		on = strings.Join(kept, ",")
		return &routev3.RetryPolicy{RetryOn: on, NumRetries: wrapperspb.UInt32(uint32(r.GetAttempts())), PerTryTimeout: r.GetPerTryTimeout()}
	}
	// As istiod's retry.ConvertPolicy: the default policy with the
	// VirtualService's settings on top.
	out := defaultRetryPolicy()
	out.NumRetries = wrapperspb.UInt32(uint32(r.GetAttempts()))
	if r.GetRetryOn() != "" {
		out.RetryOn, out.RetriableStatusCodes = parseRetryOn(r.GetRetryOn())
		if len(out.RetriableStatusCodes) > 0 && !strings.Contains(out.RetryOn, "retriable-status-codes") {
			out.RetryOn += ",retriable-status-codes"
		}
	}
	out.PerTryTimeout = r.GetPerTryTimeout()
	if v := r.GetRetryIgnorePreviousHosts(); v != nil && !v.GetValue() {
		out.RetryHostPredicate = nil
	}
	if r.GetRetryRemoteLocalities().GetValue() {
		out.RetryPriority = &routev3.RetryPolicy_RetryPriority{
			Name:       "envoy.retry_priorities.previous_priorities",
			ConfigType: &routev3.RetryPolicy_RetryPriority_TypedConfig{TypedConfig: mustAnyOf(&previouspriorities.PreviousPrioritiesConfig{UpdateFrequency: 2})},
		}
	}
	if b := r.GetBackoff(); b != nil {
		out.RetryBackOff = &routev3.RetryPolicy_RetryBackOff{BaseInterval: b}
	}
	return out
}

// parseRetryOn splits Istio's retryOn into Envoy's retry_on and the HTTP
// status codes it lists (istiod's parseRetryOn).
func parseRetryOn(s string) (string, []uint32) {
	var on []string
	var codes []uint32
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		if n, err := strconv.Atoi(part); err == nil && http.StatusText(n) != "" {
			codes = append(codes, uint32(n))
			continue
		}
		on = append(on, part)
	}
	return strings.Join(on, ","), codes
}

func routeMatch(m *networking.HTTPMatchRequest, grpc bool) *routev3.RouteMatch {
	rm := &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}}
	if m == nil {
		return rm
	}
	switch u := m.GetUri().GetMatchType().(type) {
	case *networking.StringMatch_Exact:
		rm.PathSpecifier = &routev3.RouteMatch_Path{Path: u.Exact}
	case *networking.StringMatch_Prefix:
		rm.PathSpecifier = &routev3.RouteMatch_Prefix{Prefix: u.Prefix}
	case *networking.StringMatch_Regex:
		rm.PathSpecifier = &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: u.Regex}}
	}
	if m.GetIgnoreUriCase() {
		rm.CaseSensitive = wrapperspb.Bool(false)
	}
	names := make([]string, 0, len(m.GetHeaders()))
	for k := range m.GetHeaders() {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		if hm := headerMatcher(k, m.GetHeaders()[k], false); hm != nil {
			rm.Headers = append(rm.Headers, hm)
		}
	}
	names = names[:0]
	for k := range m.GetWithoutHeaders() {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		if hm := headerMatcher(k, m.GetWithoutHeaders()[k], true); hm != nil {
			rm.Headers = append(rm.Headers, hm)
		}
	}
	if m.GetMethod() != nil {
		rm.Headers = append(rm.Headers, headerMatcher(":method", m.GetMethod(), false))
	}
	if m.GetAuthority() != nil {
		rm.Headers = append(rm.Headers, headerMatcher(":authority", m.GetAuthority(), false))
	}
	if m.GetScheme() != nil && !grpc {
		rm.Headers = append(rm.Headers, headerMatcher(":scheme", m.GetScheme(), false))
	}
	if !grpc {
		names = names[:0]
		for k := range m.GetQueryParams() {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			sm := stringMatcher(m.GetQueryParams()[k])
			qm := &routev3.QueryParameterMatcher{Name: k}
			if sm == nil {
				qm.QueryParameterMatchSpecifier = &routev3.QueryParameterMatcher_PresentMatch{PresentMatch: true}
			} else {
				qm.QueryParameterMatchSpecifier = &routev3.QueryParameterMatcher_StringMatch{StringMatch: sm}
			}
			rm.QueryParameters = append(rm.QueryParameters, qm)
		}
	}
	return rm
}

func stringMatcher(s *networking.StringMatch) *matcherv3.StringMatcher {
	switch v := s.GetMatchType().(type) {
	case *networking.StringMatch_Exact:
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: v.Exact}}
	case *networking.StringMatch_Prefix:
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: v.Prefix}}
	case *networking.StringMatch_Regex:
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: v.Regex}}}
	}
	return nil
}

func headerMatcher(name string, s *networking.StringMatch, invert bool) *routev3.HeaderMatcher {
	hm := &routev3.HeaderMatcher{Name: name, InvertMatch: invert}
	if sm := stringMatcher(s); sm != nil {
		hm.HeaderMatchSpecifier = &routev3.HeaderMatcher_StringMatch{StringMatch: sm}
	} else {
		hm.HeaderMatchSpecifier = &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}
	}
	return hm
}

func redirectAction(r *networking.HTTPRedirect) *routev3.RedirectAction {
	ra := &routev3.RedirectAction{}
	if r.GetUri() != "" {
		ra.PathRewriteSpecifier = &routev3.RedirectAction_PathRedirect{PathRedirect: r.GetUri()}
	}
	if r.GetAuthority() != "" {
		ra.HostRedirect = r.GetAuthority()
	}
	if r.GetScheme() != "" {
		ra.SchemeRewriteSpecifier = &routev3.RedirectAction_SchemeRedirect{SchemeRedirect: r.GetScheme()}
	}
	if pt := r.GetPort(); pt != 0 {
		ra.PortRedirect = pt
	}
	switch r.GetRedirectCode() {
	case 302:
		ra.ResponseCode = routev3.RedirectAction_FOUND
	case 303:
		ra.ResponseCode = routev3.RedirectAction_SEE_OTHER
	case 307:
		ra.ResponseCode = routev3.RedirectAction_TEMPORARY_REDIRECT
	case 308:
		ra.ResponseCode = routev3.RedirectAction_PERMANENT_REDIRECT
	default:
		ra.ResponseCode = routev3.RedirectAction_MOVED_PERMANENTLY
	}
	return ra
}

func fraction(pct float64) *typev3.FractionalPercent {
	return &typev3.FractionalPercent{Numerator: uint32(pct * 10000), Denominator: typev3.FractionalPercent_MILLION}
}

func faultConfig(f *networking.HTTPFaultInjection) *anypb.Any {
	hf := &faultv3.HTTPFault{}
	if d := f.GetDelay(); d != nil && d.GetFixedDelay() != nil {
		pct := 100.0
		if d.GetPercentage() != nil {
			pct = d.GetPercentage().GetValue()
		} else if d.GetPercent() != 0 { //nolint:staticcheck // deprecated integer percent
			pct = float64(d.GetPercent()) //nolint:staticcheck
		}
		hf.Delay = &faultcommon.FaultDelay{
			FaultDelaySecifier: &faultcommon.FaultDelay_FixedDelay{FixedDelay: d.GetFixedDelay()},
			Percentage:         fraction(pct),
		}
	}
	if a := f.GetAbort(); a != nil {
		pct := 100.0
		if a.GetPercentage() != nil {
			pct = a.GetPercentage().GetValue()
		}
		fa := &faultv3.FaultAbort{Percentage: fraction(pct)}
		switch {
		case a.GetHttpStatus() != 0:
			fa.ErrorType = &faultv3.FaultAbort_HttpStatus{HttpStatus: uint32(a.GetHttpStatus())}
		case a.GetGrpcStatus() != "":
			fa.ErrorType = &faultv3.FaultAbort_GrpcStatus{GrpcStatus: grpcCode(a.GetGrpcStatus())}
		default:
			fa = nil
		}
		hf.Abort = fa
	}
	if hf.Delay == nil && hf.Abort == nil {
		return nil
	}
	a, err := newAny(hf)
	if err != nil {
		return nil
	}
	return a
}

var grpcCodes = []string{"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"}

func grpcCode(s string) uint32 {
	for i, c := range grpcCodes {
		if strings.EqualFold(c, s) {
			return uint32(i)
		}
	}
	return 2 // UNKNOWN
}

func headerOptions(op *networking.Headers_HeaderOperations) []*corev3.HeaderValueOption {
	var out []*corev3.HeaderValueOption
	add := func(m map[string]string, action corev3.HeaderValueOption_HeaderAppendAction) {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			out = append(out, &corev3.HeaderValueOption{
				Header:       &corev3.HeaderValue{Key: k, Value: m[k]},
				AppendAction: action,
			})
		}
	}
	add(op.GetSet(), corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD)
	add(op.GetAdd(), corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD)
	return out
}
