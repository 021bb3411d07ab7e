package main

import (
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

// ---- clusters ----

func clusterType(c *clusterv3.Cluster) string {
	if ct := c.GetClusterType(); ct != nil {
		return ct.GetName()
	}
	return c.GetType().String()
}

func writeClusters(w io.Writer, rs []resource[*clusterv3.Cluster]) error {
	sortResources(rs, func(a, b *clusterv3.Cluster) bool { return clusterLess(a.GetName(), b.GetName()) })
	tw := newTable(w)
	row(tw, "SERVICE FQDN", "PORT", "SUBSET", "DIRECTION", "TYPE", "DESTINATION RULE")
	for _, r := range rs {
		c := r.msg
		cn := parseClusterName(c.GetName())
		if cn.istio {
			row(tw, cn.host, strconv.Itoa(cn.port), orDash(cn.subset), cn.direction, clusterType(c), istioConfigName(c.GetMetadata()))
		} else {
			row(tw, c.GetName(), "-", "-", "-", clusterType(c), istioConfigName(c.GetMetadata()))
		}
	}
	return tw.Flush()
}

// ---- listeners ----

// listenerRow is one filter chain of a listener.
type listenerRow struct {
	address, port string
	portNum       int
	match, dest   string
}

// listenerPort is the port a listener serves: its socket address port, or
// for an api_listener the port in its host:port name.
func listenerPort(l *listenerv3.Listener) (int, bool) {
	if l.GetApiListener() != nil {
		_, p, ok := splitHostPort(l.GetName())
		return p, ok
	}
	sa := l.GetAddress().GetSocketAddress()
	if sa == nil {
		return 0, false
	}
	return int(sa.GetPortValue()), true
}

func listenerRows(l *listenerv3.Listener) []listenerRow {
	port, ok := listenerPort(l)
	portStr := "-"
	if ok {
		portStr = strconv.Itoa(port)
	}
	if api := l.GetApiListener(); api != nil {
		// A proxyless gRPC client's listener: named host:port, no address.
		return []listenerRow{{address: l.GetName(), port: portStr, portNum: port, match: "ALL", dest: describeHCM(api.GetApiListener())}}
	}
	addr := l.GetAddress().GetSocketAddress().GetAddress()
	if p := l.GetAddress().GetPipe(); p != nil {
		addr = p.GetPath()
	}
	if addr == "" {
		addr = l.GetName()
	}
	chains := slices.Clone(l.GetFilterChains())
	if dc := l.GetDefaultFilterChain(); dc != nil {
		chains = append(chains, dc)
	}
	var out []listenerRow
	for _, fc := range chains {
		out = append(out, listenerRow{address: addr, port: portStr, portNum: port, match: describeChainMatch(fc.GetFilterChainMatch()), dest: describeFilters(fc.GetFilters())})
	}
	if len(out) == 0 {
		out = append(out, listenerRow{address: addr, port: portStr, portNum: port, match: "ALL", dest: "Non-HTTP/Non-TCP"})
	}
	return out
}

// Istio's well-known ALPN sets, named as istioctl names them.
var alpnNames = []struct {
	name  string
	alpns []string
}{
	{"App: HTTP", []string{"http/1.0", "http/1.1", "h2c"}},
	{"App: Istio HTTP Plain", []string{"istio", "istio-http/1.0", "istio-http/1.1", "istio-h2"}},
	{"App: HTTP TLS", []string{"http/1.0", "http/1.1", "h2c", "istio-http/1.0", "istio-http/1.1", "istio-h2"}},
	{"App: TCP TLS", []string{"istio-peer-exchange", "istio"}},
}

func describeChainMatch(m *listenerv3.FilterChainMatch) string {
	if m == nil {
		return "ALL"
	}
	var parts []string
	if len(m.GetServerNames()) > 0 {
		parts = append(parts, "SNI: "+strings.Join(m.GetServerNames(), ","))
	}
	if m.GetTransportProtocol() != "" {
		parts = append(parts, "Trans: "+m.GetTransportProtocol())
	}
	if alpn := m.GetApplicationProtocols(); len(alpn) > 0 {
		desc := "App: " + strings.Join(alpn, ",")
		for _, n := range alpnNames {
			if slices.Equal(n.alpns, alpn) {
				desc = n.name
				break
			}
		}
		parts = append(parts, desc)
	}
	port := ""
	if m.GetDestinationPort() != nil {
		port = ":" + strconv.Itoa(int(m.GetDestinationPort().GetValue()))
	}
	if ranges := m.GetPrefixRanges(); len(ranges) > 0 {
		var cidrs []string
		for _, r := range ranges {
			cidrs = append(cidrs, fmt.Sprintf("%s/%d", r.GetAddressPrefix(), r.GetPrefixLen().GetValue()))
		}
		parts = append(parts, "Addr: "+strings.Join(cidrs, ",")+port)
	} else if port != "" {
		parts = append(parts, "Addr: *"+port)
	}
	if len(parts) == 0 {
		return "ALL"
	}
	return strings.Join(parts, "; ")
}

func isType(a *anypb.Any, name string) bool {
	return a != nil && strings.HasSuffix(a.GetTypeUrl(), "/"+name)
}

const (
	hcmTypeName      = "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
	tcpProxyTypeName = "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"
)

// describeFilters says where a filter chain sends traffic.
func describeFilters(filters []*listenerv3.Filter) string {
	for _, f := range filters {
		tc := f.GetTypedConfig()
		switch {
		case isType(tc, hcmTypeName):
			return describeHCM(tc)
		case isType(tc, tcpProxyTypeName):
			tp := &tcpv3.TcpProxy{}
			if err := tc.UnmarshalTo(tp); err != nil {
				return "TCP (unreadable: " + err.Error() + ")"
			}
			if c := tp.GetCluster(); c != "" {
				return clusterDest(c)
			}
			var names []string
			for _, wc := range tp.GetWeightedClusters().GetClusters() {
				names = append(names, fmt.Sprintf("%s (weight %d)", wc.GetName(), wc.GetWeight()))
			}
			return "Clusters: " + strings.Join(names, ", ")
		}
	}
	return "Non-HTTP/Non-TCP"
}

// clusterDest names a cluster destination; Istio's special clusters
// (BlackHoleCluster, PassthroughCluster) stand alone.
func clusterDest(c string) string {
	if strings.Contains(c, "Cluster") && !strings.Contains(c, "|") {
		return c
	}
	return "Cluster: " + c
}

func describeHCM(a *anypb.Any) string {
	if !isType(a, hcmTypeName) {
		return "Non-HTTP/Non-TCP"
	}
	h := &hcmv3.HttpConnectionManager{}
	if err := a.UnmarshalTo(h); err != nil {
		return "HTTP (unreadable: " + err.Error() + ")"
	}
	if n := h.GetRds().GetRouteConfigName(); n != "" {
		return "Route: " + n
	}
	if rc := h.GetRouteConfig(); rc != nil {
		return describeInlineRoute(rc)
	}
	return "HTTP"
}

func describeInlineRoute(rc *routev3.RouteConfiguration) string {
	vhs := rc.GetVirtualHosts()
	if len(vhs) == 1 && slices.Equal(vhs[0].GetDomains(), []string{"*"}) && len(vhs[0].GetRoutes()) == 1 {
		r := vhs[0].GetRoutes()[0]
		if r.GetMatch().GetPrefix() == "/" && r.GetRoute().GetCluster() != "" {
			return clusterDest(r.GetRoute().GetCluster())
		}
	}
	var parts []string
	for _, vh := range vhs {
		var ms []string
		for _, r := range vh.GetRoutes() {
			ms = append(ms, describeMatch(r.GetMatch()))
		}
		d := strings.Join(ms, ", ")
		if !slices.Equal(vh.GetDomains(), []string{"*"}) {
			d = strings.Join(vh.GetDomains(), "/") + " " + d
		}
		parts = append(parts, d)
	}
	return "Inline Route: " + strings.Join(parts, "; ")
}

func writeListeners(w io.Writer, rs []resource[*listenerv3.Listener]) error {
	var rows []listenerRow
	for _, r := range rs {
		rows = append(rows, listenerRows(r.msg)...)
	}
	sort.SliceStable(rows, func(i, j int) bool {
		if rows[i].portNum != rows[j].portNum {
			return rows[i].portNum < rows[j].portNum
		}
		return rows[i].address < rows[j].address
	})
	tw := newTable(w)
	row(tw, "ADDRESS", "PORT", "MATCH", "DESTINATION")
	for _, r := range rows {
		row(tw, r.address, r.port, r.match, r.dest)
	}
	return tw.Flush()
}

// ---- routes ----

// describeMatch renders a route match: /prefix*, /exact, regex, plus
// header and query conditions.
func describeMatch(m *routev3.RouteMatch) string {
	if m == nil {
		return "-"
	}
	var parts []string
	switch {
	case m.GetPrefix() != "":
		parts = append(parts, m.GetPrefix()+"*")
	case m.GetPath() != "":
		parts = append(parts, m.GetPath())
	case m.GetSafeRegex() != nil:
		parts = append(parts, "regex "+m.GetSafeRegex().GetRegex())
	case m.GetPathSeparatedPrefix() != "":
		parts = append(parts, m.GetPathSeparatedPrefix()+"/*")
	case m.GetConnectMatcher() != nil:
		parts = append(parts, "CONNECT")
	default:
		parts = append(parts, "/*")
	}
	for _, h := range m.GetHeaders() {
		parts = append(parts, "header "+describeHeader(h))
	}
	for _, q := range m.GetQueryParameters() {
		cond := q.GetName()
		if sm := q.GetStringMatch(); sm != nil {
			cond += describeString(sm)
		}
		parts = append(parts, "query "+cond)
	}
	return strings.Join(parts, " ")
}

func describeHeader(h *routev3.HeaderMatcher) string {
	not := ""
	if h.GetInvertMatch() {
		not = "!"
	}
	switch {
	case h.GetStringMatch() != nil:
		return not + h.GetName() + describeString(h.GetStringMatch())
	case h.GetPresentMatch():
		return not + h.GetName() + " present"
	case h.GetExactMatch() != "":
		return not + h.GetName() + "=" + h.GetExactMatch()
	case h.GetPrefixMatch() != "":
		return not + h.GetName() + "=" + h.GetPrefixMatch() + "*"
	}
	return not + h.GetName()
}

func describeString(s *matcherv3.StringMatcher) string {
	switch {
	case s.GetExact() != "":
		return "=" + s.GetExact()
	case s.GetPrefix() != "":
		return "=" + s.GetPrefix() + "*"
	case s.GetSuffix() != "":
		return "=*" + s.GetSuffix()
	case s.GetContains() != "":
		return "=*" + s.GetContains() + "*"
	case s.GetSafeRegex() != nil:
		return "~=" + s.GetSafeRegex().GetRegex()
	}
	return ""
}

// describeDomains lists a virtual host's domains, shortened past two.
func describeDomains(ds []string) string {
	if len(ds) <= 2 {
		return strings.Join(ds, ",")
	}
	return fmt.Sprintf("%s + %d more...", strings.Join(ds[:2], ","), len(ds)-2)
}

// describeAction says where a route sends requests (the wide DESTINATION).
func describeAction(r *routev3.Route) string {
	switch {
	case r.GetRoute() != nil:
		a := r.GetRoute()
		switch {
		case a.GetCluster() != "":
			return a.GetCluster()
		case a.GetWeightedClusters() != nil:
			var total uint64
			cws := a.GetWeightedClusters().GetClusters()
			for _, cw := range cws {
				total += uint64(cw.GetWeight().GetValue())
			}
			var parts []string
			for _, cw := range cws {
				pct := "?"
				if total > 0 {
					pct = strings.TrimSuffix(strconv.FormatFloat(float64(cw.GetWeight().GetValue())*100/float64(total), 'f', 1, 64), ".0")
				}
				parts = append(parts, cw.GetName()+" "+pct+"%")
			}
			return strings.Join(parts, ", ")
		case a.GetClusterHeader() != "":
			return "cluster from header " + a.GetClusterHeader()
		}
		return "route"
	case r.GetRedirect() != nil:
		rd := r.GetRedirect()
		return "redirect to " + rd.GetHostRedirect() + rd.GetPathRedirect()
	case r.GetDirectResponse() != nil:
		return "direct response " + strconv.Itoa(int(r.GetDirectResponse().GetStatus()))
	case r.GetNonForwardingAction() != nil:
		return "non-forwarding"
	}
	return "-"
}

// routeMatches applies --fqdn, --port and --name to one virtual host of a
// route configuration.
func (f *filter) routeMatches(rc *routev3.RouteConfiguration, vh *routev3.VirtualHost) bool {
	if f.name != "" && rc.GetName() != f.name {
		return false
	}
	if f.port != 0 {
		ok := rc.GetName() == strconv.Itoa(f.port)
		if _, p, hp := splitHostPort(rc.GetName()); hp && p == f.port {
			ok = true
		}
		for _, d := range vh.GetDomains() {
			if _, p, hp := splitHostPort(d); hp && p == f.port {
				ok = true
			}
		}
		if !ok {
			return false
		}
	}
	if f.fqdn != "" {
		for _, d := range vh.GetDomains() {
			host, _, _ := splitHostPort(d)
			if f.hostMatches(host) {
				return true
			}
		}
		return false
	}
	return true
}

// routeKept reports whether any virtual host of rc passes the filter.
func (f *filter) routeKept(rc *routev3.RouteConfiguration) bool {
	if len(rc.GetVirtualHosts()) == 0 {
		return f.fqdn == "" && f.port == 0 && (f.name == "" || f.name == rc.GetName())
	}
	for _, vh := range rc.GetVirtualHosts() {
		if f.routeMatches(rc, vh) {
			return true
		}
	}
	return false
}

func writeRoutes(w io.Writer, rs []resource[*routev3.RouteConfiguration], f *filter, wide bool) error {
	sortResources(rs, func(a, b *routev3.RouteConfiguration) bool { return a.GetName() < b.GetName() })
	tw := newTable(w)
	header := []string{"NAME", "VHOST NAME", "DOMAINS", "MATCH", "VIRTUAL SERVICE"}
	if wide {
		header = append(header, "DESTINATION")
	}
	row(tw, header...)
	for _, r := range rs {
		rc := r.msg
		for _, vh := range rc.GetVirtualHosts() {
			if !f.routeMatches(rc, vh) {
				continue
			}
			routes := vh.GetRoutes()
			if len(routes) == 0 {
				cells := []string{rc.GetName(), vh.GetName(), describeDomains(vh.GetDomains()), "-", ""}
				if wide {
					cells = append(cells, "-")
				}
				row(tw, cells...)
				continue
			}
			for _, rt := range routes {
				cells := []string{rc.GetName(), vh.GetName(), describeDomains(vh.GetDomains()), describeMatch(rt.GetMatch()), istioConfigName(rt.GetMetadata())}
				if wide {
					cells = append(cells, describeAction(rt))
				}
				row(tw, cells...)
			}
		}
	}
	return tw.Flush()
}

// ---- endpoints ----

type endpointRow struct {
	endpoint, status, cluster string
}

func endpointAddress(a *corev3.Address) string {
	switch {
	case a.GetSocketAddress() != nil:
		sa := a.GetSocketAddress()
		if sa.GetNamedPort() != "" {
			return net.JoinHostPort(sa.GetAddress(), sa.GetNamedPort())
		}
		return net.JoinHostPort(sa.GetAddress(), strconv.Itoa(int(sa.GetPortValue())))
	case a.GetPipe() != nil:
		return a.GetPipe().GetPath()
	case a.GetEnvoyInternalAddress() != nil:
		return "internal:" + a.GetEnvoyInternalAddress().GetServerListenerName()
	}
	return "-"
}

// healthStatus is what Envoy makes of an EDS health status: UNKNOWN hosts
// are routed to like HEALTHY ones.
func healthStatus(s corev3.HealthStatus) string {
	if s == corev3.HealthStatus_UNKNOWN {
		return corev3.HealthStatus_HEALTHY.String()
	}
	return s.String()
}

func loadAssignmentRows(cluster string, la *endpointv3.ClusterLoadAssignment) []endpointRow {
	var out []endpointRow
	for _, lle := range la.GetEndpoints() {
		for _, lb := range lle.GetLbEndpoints() {
			addr := "-"
			if ep := lb.GetEndpoint(); ep != nil {
				addr = endpointAddress(ep.GetAddress())
			} else if n := lb.GetEndpointName(); n != "" {
				addr = "named:" + n
			}
			out = append(out, endpointRow{endpoint: addr, status: healthStatus(lb.GetHealthStatus()), cluster: cluster})
		}
	}
	return out
}

// endpointRows collects the endpoints of EDS and of clusters that carry
// their endpoints inline (DNS and static clusters), filtered by cluster.
func endpointRows(d *dump, f *filter) []endpointRow {
	var rows []endpointRow
	for _, r := range d.endpoints {
		if f.cluster(r.msg.GetClusterName()) {
			rows = append(rows, loadAssignmentRows(r.msg.GetClusterName(), r.msg)...)
		}
	}
	for _, r := range d.clusters {
		if la := r.msg.GetLoadAssignment(); la != nil && f.cluster(r.msg.GetName()) {
			rows = append(rows, loadAssignmentRows(r.msg.GetName(), la)...)
		}
	}
	sort.SliceStable(rows, func(i, j int) bool {
		if rows[i].cluster != rows[j].cluster {
			return clusterLess(rows[i].cluster, rows[j].cluster)
		}
		return rows[i].endpoint < rows[j].endpoint
	})
	return rows
}

func writeEndpoints(w io.Writer, rows []endpointRow) error {
	tw := newTable(w)
	row(tw, "ENDPOINT", "STATUS", "OUTLIER CHECK", "CLUSTER")
	for _, r := range rows {
		// Outlier ejection happens inside the proxy; the control plane
		// cannot see it.
		row(tw, r.endpoint, r.status, "-", r.cluster)
	}
	return tw.Flush()
}

// ---- secrets ----

type secretRow struct {
	name, typ, status, valid, serial, notAfter, notBefore string
}

// certInfo reads the first certificate of a PEM data source; it never
// looks at private keys.
func certInfo(ds *corev3.DataSource, now time.Time) (valid, serial, notAfter, notBefore string) {
	var data []byte
	switch {
	case ds.GetInlineBytes() != nil:
		data = ds.GetInlineBytes()
	case ds.GetInlineString() != "":
		data = []byte(ds.GetInlineString())
	default:
		return "false", "", "", ""
	}
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return "false", "", "", ""
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return "false", "", "", ""
		}
		ok := !now.Before(cert.NotBefore) && !now.After(cert.NotAfter)
		return strconv.FormatBool(ok), hex.EncodeToString(cert.SerialNumber.Bytes()),
			cert.NotAfter.UTC().Format(time.RFC3339), cert.NotBefore.UTC().Format(time.RFC3339)
	}
}

func secretRows(rs []resource[*tlsv3.Secret], now time.Time) []secretRow {
	var out []secretRow
	for _, r := range rs {
		s := r.msg
		sr := secretRow{name: s.GetName(), status: "ACTIVE", valid: "false"}
		switch {
		case s.GetTlsCertificate() != nil:
			sr.typ = "Cert Chain"
			sr.valid, sr.serial, sr.notAfter, sr.notBefore = certInfo(s.GetTlsCertificate().GetCertificateChain(), now)
		case s.GetValidationContext() != nil:
			sr.typ = "CA"
			sr.valid, sr.serial, sr.notAfter, sr.notBefore = certInfo(s.GetValidationContext().GetTrustedCa(), now)
		case s.GetSessionTicketKeys() != nil:
			sr.typ = "Session Ticket Keys"
			sr.valid = ""
		case s.GetGenericSecret() != nil:
			sr.typ = "Generic"
			sr.valid = ""
		default:
			sr.typ = "-"
			sr.valid = ""
		}
		out = append(out, sr)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

func writeSecrets(w io.Writer, rows []secretRow) error {
	tw := newTable(w)
	row(tw, "RESOURCE NAME", "TYPE", "STATUS", "VALID CERT", "SERIAL NUMBER", "NOT AFTER", "NOT BEFORE")
	for _, r := range rows {
		row(tw, r.name, r.typ, r.status, r.valid, r.serial, r.notAfter, r.notBefore)
	}
	return tw.Flush()
}
