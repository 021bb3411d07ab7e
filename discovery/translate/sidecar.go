package translate

import (
	"net"
	"sort"
	"strconv"
	"strings"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	corsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	httpinspector "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/http_inspector/v3"
	originaldst "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/original_dst/v3"
	tlsinspector "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxy "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/sextant-mesh/sextant/discovery/proxy"
	"github.com/sextant-mesh/sextant/model"
)

// Istio's names for the capture listeners and their filter chains.
const (
	VirtualOutbound           = "virtualOutbound"
	VirtualInbound            = "virtualInbound"
	InboundPassthroughCluster = "InboundPassthroughCluster"
	outboundPort              = 15001
	inboundPort               = 15006
)

// InboundClusterName is Istio's inbound cluster name.
func InboundClusterName(port uint32) string {
	return "inbound|" + strconv.FormatUint(uint64(port), 10) + "||"
}

// newAny packs m with deterministic marshalling. An Any's bytes are made
// once and then embedded as they are, so map fields (Struct metadata,
// TypedStruct) must not come out in a per-process random order: replicas
// and restarts must produce byte-identical resources and versions.
func newAny(m proto.Message) (*anypb.Any, error) {
	a := &anypb.Any{}
	if err := anypb.MarshalFrom(a, m, proto.MarshalOptions{Deterministic: true}); err != nil {
		return nil, err
	}
	return a, nil
}

func mustAnyOf(m proto.Message) *anypb.Any {
	a, err := newAny(m)
	if err != nil {
		panic(err) // only for unregistered types: a programming error
	}
	return a
}

func socketAddress(addr string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: addr, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

// inboundPort is one port the proxy's own workload serves.
type inboundPortInfo struct {
	port     uint32 // the port traffic arrives on (endpoint/target port)
	protocol model.Protocol
	name     string
	// defaultEndpoint is a Sidecar ingress listener's target
	// (127.0.0.1:8080, 0.0.0.0:8080 or unix://…); empty means the original
	// destination.
	defaultEndpoint string
}

// workloadPorts finds the inbound ports of the proxy's workload: the
// service instances at its addresses, or the Sidecar's ingress listeners.
func (c *Context) workloadPorts(p *proxy.Proxy) []inboundPortInfo {
	seen := map[uint32]bool{}
	var out []inboundPortInfo
	if sc := c.Snap.Sidecar(p.Namespace, p.Labels); sc != nil {
		for _, in := range sc.Spec.(*networking.Sidecar).GetIngress() {
			n := in.GetPort().GetNumber()
			if n == 0 || seen[n] {
				continue
			}
			seen[n] = true
			out = append(out, inboundPortInfo{port: n, protocol: model.ParseProtocol(in.GetPort().GetProtocol()), name: in.GetPort().GetName(),
				defaultEndpoint: in.GetDefaultEndpoint()})
		}
		if len(out) > 0 {
			return out
		}
	}
	for _, inst := range c.claimableInstances(p) {
		for _, sp := range inst.Service.Ports {
			n := inst.Endpoint.PortFor(sp)
			if seen[n] {
				continue
			}
			seen[n] = true
			out = append(out, inboundPortInfo{port: n, protocol: sp.Protocol, name: sp.Name})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].port < out[j].port })
	return out
}

// inboundClusters builds inbound|port|| for the workload's ports. Like
// Istio, they forward to the original destination bound from 127.0.0.6, so
// applications listening on the pod IP or localhost both work.
func (c *Context) inboundClusters(ports []inboundPortInfo) []*Resource {
	var out []*Resource
	for _, ip := range ports {
		name := InboundClusterName(ip.port)
		ep := ip.defaultEndpoint
		c.add(&out, ClusterType, name, (&model.Hasher{}).U64(c.meshHash).Str(ep).Sum(), func() proto.Message {
			cl := inboundCluster(name, c.Mesh)
			if ep != "" {
				toDefaultEndpoint(cl, ep)
			}
			return cl
		})
	}
	c.add(&out, ClusterType, InboundPassthroughCluster, c.meshHash, func() proto.Message {
		cl := inboundCluster(InboundPassthroughCluster, c.Mesh)
		cl.TypedExtensionProtocolOptions = passthroughProtocolOptions()
		return cl
	})
	return out
}

func inboundCluster(name string, mesh model.MeshConfig) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_ORIGINAL_DST},
		LbPolicy:             clusterv3.Cluster_CLUSTER_PROVIDED,
		ConnectTimeout:       durationpb.New(mesh.ConnectTimeout),
		UpstreamBindConfig:   &corev3.BindConfig{SourceAddress: &corev3.SocketAddress{Address: "127.0.0.6", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 0}}},
		CircuitBreakers:      &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{unlimited()}},
	}
}

// toDefaultEndpoint sends an inbound cluster to a Sidecar ingress
// listener's defaultEndpoint instead of the original destination. Istio's
// 0.0.0.0 means "the workload's address"; a sidecar reaches it on loopback.
func toDefaultEndpoint(cl *clusterv3.Cluster, ep string) {
	cl.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC}
	cl.LbPolicy = clusterv3.Cluster_ROUND_ROBIN
	cl.UpstreamBindConfig = nil
	var addr *corev3.Address
	if path, ok := strings.CutPrefix(ep, "unix://"); ok {
		addr = &corev3.Address{Address: &corev3.Address_Pipe{Pipe: &corev3.Pipe{Path: path}}}
	} else {
		host, port, _ := strings.Cut(ep, ":")
		if host == "0.0.0.0" || host == "" {
			host = "127.0.0.1"
		}
		n, _ := strconv.ParseUint(port, 10, 32)
		addr = socketAddress(host, uint32(n))
	}
	cl.LoadAssignment = &endpointv3.ClusterLoadAssignment{ClusterName: cl.Name, Endpoints: []*endpointv3.LocalityLbEndpoints{{
		LbEndpoints: []*endpointv3.LbEndpoint{{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: addr}}}},
	}}}
}

func unlimited() *clusterv3.CircuitBreakers_Thresholds {
	const max = ^uint32(0)
	return &clusterv3.CircuitBreakers_Thresholds{
		MaxConnections: wrapperspb.UInt32(max), MaxPendingRequests: wrapperspb.UInt32(max),
		MaxRequests: wrapperspb.UInt32(max), MaxRetries: wrapperspb.UInt32(max), TrackRemaining: true,
	}
}

// httpFilters is the sidecar HTTP filter chain: CORS and fault (configured
// per route), then the router.
func httpFilters() []*hcmv3.HttpFilter {
	return []*hcmv3.HttpFilter{
		{Name: CorsFilter, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAnyOf(&corsv3.Cors{})}},
		{Name: FaultFilter, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAnyOf(&faultv3.HTTPFault{})}},
		{Name: RouterFilter, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAnyOf(&routerv3.Router{})}},
	}
}

func tcpProxyFilter(statPrefix string, route *tcpproxy.TcpProxy) *listenerv3.Filter {
	route.StatPrefix = statPrefix
	return &listenerv3.Filter{Name: "envoy.filters.network.tcp_proxy", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAnyOf(route)}}
}

func tcpToCluster(cluster string) *tcpproxy.TcpProxy {
	return &tcpproxy.TcpProxy{ClusterSpecifier: &tcpproxy.TcpProxy_Cluster{Cluster: cluster}}
}

func hcmFilter(h *hcmv3.HttpConnectionManager) *listenerv3.Filter {
	return &listenerv3.Filter{Name: "envoy.filters.network.http_connection_manager", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAnyOf(h)}}
}

func listenerFilter(name string, m proto.Message) *listenerv3.ListenerFilter {
	return &listenerv3.ListenerFilter{Name: name, ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: mustAnyOf(m)}}
}

// sidecarListenersAndRoutes builds LDS and RDS for an Envoy sidecar with
// Istio's names: virtualOutbound/virtualInbound capture listeners, one
// 0.0.0.0_<port> listener per HTTP port (RDS "<port>"), and <vip>_<port>
// listeners for TCP services.
func (c *Context) sidecarListenersAndRoutes(p *proxy.Proxy, services []*model.Service) (ls, rs []*Resource) {
	// Group visible service ports: HTTP ports share a listener and a route
	// config per port number; TCP ports get a listener per VIP.
	httpPorts := map[uint32][]*model.Service{}
	type tcpKey struct {
		bind string
		port uint32
	}
	tcpListeners := map[tcpKey][]*model.Service{}
	for _, svc := range services {
		if svc.Resolution == model.Passthrough && len(svc.Addresses) == 0 {
			continue
		}
		for _, port := range svc.Ports {
			if port.Protocol.IsHTTP() {
				httpPorts[port.Number] = append(httpPorts[port.Number], svc)
				continue
			}
			bind := "0.0.0.0"
			if len(svc.Addresses) > 0 && !strings.Contains(svc.Addresses[0], "/") {
				bind = svc.Addresses[0]
			}
			k := tcpKey{bind, port.Number}
			tcpListeners[k] = append(tcpListeners[k], svc)
		}
	}
	ph := p.Namespace + "|" + p.LabelsKey()
	istioProxy := p.IstioVersion != ""
	tel := c.telemetryFor(p)
	// HTTP listeners and route configs.
	for port, svcs := range httpPorts {
		if _, clash := tcpListeners[tcpKey{"0.0.0.0", port}]; clash {
			c.addErr(&RouteError{VirtualService: "-", Msg: "port " + strconv.Itoa(int(port)) + " is HTTP for some services and TCP without a VIP for others; TCP services on it are not routable"})
			delete(tcpListeners, tcpKey{"0.0.0.0", port})
		}
		name := "0.0.0.0_" + strconv.Itoa(int(port))
		rname := strconv.Itoa(int(port))
		port := port
		grpc := false
		for _, svc := range svcs {
			if sp, _ := svc.Port(port); sp.Protocol == model.ProtocolGRPC {
				grpc = true
			}
		}
		lh := (&model.Hasher{}).U64(c.meshHash).U64(tel.hash)
		for _, b := range []bool{istioProxy, grpc} {
			if b {
				lh.Str("1")
			} else {
				lh.Str("0")
			}
		}
		c.add(&ls, ListenerType, name, lh.Sum(), func() proto.Message {
			return withTCPStats(withTCPAccessLog(httpOutboundListener(name, rname, port, c.Mesh, outboundHTTPFilters(istioProxy, grpc, tel), tel.accessLogs()), tel.accessLogs()), istioProxy, tel)
		})
		h := &model.Hasher{}
		h.Str(ph).U64(c.meshHash)
		for _, svc := range svcs {
			h.U64(c.routeInputs(p, svc, c.virtualService(p, svc.Hostname)))
		}
		svcs := svcs
		c.add(&rs, RouteType, rname, h.Sum(), func() proto.Message { return c.outboundRouteConfig(p, rname, port, svcs) })
	}
	for k, svcs := range tcpListeners {
		name := k.bind + "_" + strconv.Itoa(int(k.port))
		h := &model.Hasher{}
		h.Str(ph).U64(c.meshHash)
		for _, svc := range svcs {
			h.U64(c.routeInputs(p, svc, c.virtualService(p, svc.Hostname)))
		}
		k, svcs := k, svcs
		h.U64(tel.hash)
		if istioProxy {
			h.Str("istio-proxy")
		}
		c.add(&ls, ListenerType, name, h.Sum(), func() proto.Message {
			return withTCPStats(withTCPAccessLog(c.tcpOutboundListener(p, name, k.bind, k.port, svcs), tel.accessLogs()), istioProxy, tel)
		})
	}
	if p.InterceptionNone {
		return ls, rs
	}
	vh := (&model.Hasher{}).U64(c.meshHash).U64(tel.hash)
	if istioProxy {
		vh.Str("istio-proxy")
	}
	c.add(&ls, ListenerType, VirtualOutbound, vh.Sum(), func() proto.Message {
		return withTCPStats(withTCPAccessLog(virtualOutboundListener(c.Mesh), tel.accessLogs()), istioProxy, tel)
	})
	ports := c.workloadPorts(p)
	modes, modesHash := c.inboundModes(p, ports)
	pass := c.workloadMode(p)
	authz := c.inboundAuthzFor(p)
	ih := &model.Hasher{}
	ih.U64(modesHash).U64(c.meshHash).U64(uint64(pass)).U64(authz.hash).U64(tel.hash)
	if istioProxy {
		ih.Str("istio-proxy")
	}
	for _, ip := range ports {
		ih.U64(uint64(ip.port)).Str(string(ip.protocol))
	}
	inHTTP := inboundHTTP{filters: func(grpc bool) []*hcmv3.HttpFilter {
		return inboundHTTPFilters(istioProxy, grpc, tel, authz.http)
	}, logs: tel.accessLogs()}
	c.add(&ls, ListenerType, VirtualInbound, ih.Sum(), func() proto.Message {
		return withTCPStats(virtualInboundListener(c.Mesh, ports, modes, pass, authz, inHTTP), istioProxy, tel)
	})
	return ls, rs
}

// plaintextHTTPALPNs are the application protocols http_inspector reports
// for plaintext HTTP that the HTTP chain takes, istiod's plaintextHTTPALPNs
// with PILOT_HTTP10 off (its default): HTTP/1.0 is not matched, so it
// passes through as raw TCP instead of being rejected by the HCM.
var plaintextHTTPALPNs = []string{"http/1.1", "h2c"}

// httpOutboundListener is 0.0.0.0_<port> as istiod builds it for HTTP
// services on a wildcard bind: tls_inspector and http_inspector sniff the
// connection; plaintext HTTP goes to the HCM (RDS "<port>"), anything else
// (TLS, raw TCP, HTTP/1.0) to the PassthroughFilterChain, which forwards to
// the original destination (BlackHoleCluster with REGISTRY_ONLY). Without
// that chain a TLS or TCP connection to a host outside the mesh on a port
// some mesh service serves as HTTP would be broken by the HCM.
func httpOutboundListener(name, routeName string, port uint32, mesh model.MeshConfig, filters []*hcmv3.HttpFilter, logs []*accesslogv3.AccessLog) *listenerv3.Listener {
	fallthroughCluster := PassthroughCluster
	if mesh.OutboundRegistryOnly {
		fallthroughCluster = BlackHoleCluster
	}
	return &listenerv3.Listener{
		Name:             name,
		Address:          socketAddress("0.0.0.0", port),
		BindToPort:       wrapperspb.Bool(false),
		TrafficDirection: corev3.TrafficDirection_OUTBOUND,
		ListenerFilters: []*listenerv3.ListenerFilter{
			// istiod adds tls_inspector whenever it adds http_inspector on
			// outbound, so Envoy does not inject one of its own.
			listenerFilter("envoy.filters.listener.tls_inspector", &tlsinspector.TlsInspector{InitialReadBufferSize: wrapperspb.UInt32(512)}),
			listenerFilter("envoy.filters.listener.http_inspector", &httpinspector.HttpInspector{}),
		},
		// A server-first protocol sends nothing for the inspectors to read:
		// after the timeout it continues to the fallthrough chain. Istio's
		// default protocolDetectionTimeout is 0 (no timeout).
		ContinueOnListenerFiltersTimeout: true,
		ListenerFiltersTimeout:           durationpb.New(0),
		FilterChains: []*listenerv3.FilterChain{{
			FilterChainMatch: &listenerv3.FilterChainMatch{
				TransportProtocol:    "raw_buffer",
				ApplicationProtocols: plaintextHTTPALPNs,
			},
			Filters: []*listenerv3.Filter{hcmFilter(&hcmv3.HttpConnectionManager{
				StatPrefix: "outbound_0.0.0.0_" + routeName,
				RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
					ConfigSource: adsSource(), RouteConfigName: routeName,
				}},
				HttpFilters:      filters,
				AccessLog:        logs,
				UseRemoteAddress: wrapperspb.Bool(false),
			})},
		}},
		DefaultFilterChain: &listenerv3.FilterChain{
			FilterChainMatch: &listenerv3.FilterChainMatch{},
			Name:             "PassthroughFilterChain",
			Filters:          []*listenerv3.Filter{tcpProxyFilter(fallthroughCluster, tcpToCluster(fallthroughCluster))},
		},
	}
}

// tcpOutboundListener routes TCP (and TLS by SNI) traffic for the services
// behind one VIP:port, applying VirtualService tcp and tls routes.
func (c *Context) tcpOutboundListener(p *proxy.Proxy, name, bind string, port uint32, svcs []*model.Service) *listenerv3.Listener {
	l := &listenerv3.Listener{
		Name:             name,
		Address:          socketAddress(bind, port),
		BindToPort:       wrapperspb.Bool(false),
		TrafficDirection: corev3.TrafficDirection_OUTBOUND,
	}
	var tlsChains []*listenerv3.FilterChain
	var plain *listenerv3.FilterChain
	for _, svc := range svcs {
		sp, _ := svc.Port(port)
		vs := c.virtualService(p, svc.Hostname)
		if sp.Protocol == model.ProtocolTLS || sp.Protocol == model.ProtocolHTTPS {
			chains := c.tlsChains(p, svc, sp, vs)
			tlsChains = append(tlsChains, chains...)
			continue
		}
		if plain != nil {
			continue // first service (oldest/sorted) wins the plain TCP chain
		}
		plain = &listenerv3.FilterChain{Filters: []*listenerv3.Filter{tcpProxyFilter("outbound|"+strconv.Itoa(int(port))+"||"+svc.Hostname, c.tcpRoute(p, svc, sp, vs))}}
	}
	if len(tlsChains) > 0 {
		l.ListenerFilters = []*listenerv3.ListenerFilter{listenerFilter("envoy.filters.listener.tls_inspector", &tlsinspector.TlsInspector{})}
		l.FilterChains = tlsChains
	}
	if plain != nil {
		l.FilterChains = append(l.FilterChains, plain)
	}
	return l
}

// tcpRoute applies the first matching VirtualService tcp route.
func (c *Context) tcpRoute(p *proxy.Proxy, svc *model.Service, port model.Port, vs *model.Config) *tcpproxy.TcpProxy {
	def := tcpToCluster(ClusterName(port.Number, "", svc.Hostname))
	if vs == nil {
		return def
	}
	spec := vs.Spec.(*networking.VirtualService)
	for _, r := range spec.GetTcp() {
		if !l4Matches(r.GetMatch(), port.Number, p) {
			continue
		}
		return c.weightedTCP(r.GetRoute(), vs, port)
	}
	return def
}

func l4Matches(ms []*networking.L4MatchAttributes, port uint32, p *proxy.Proxy) bool {
	if len(ms) == 0 {
		return true
	}
	for _, m := range ms {
		if m.GetPort() != 0 && m.GetPort() != port {
			continue
		}
		if len(m.GetSourceLabels()) > 0 && !model.LabelsMatch(m.GetSourceLabels(), p.Labels) {
			continue
		}
		if ns := m.GetSourceNamespace(); ns != "" && ns != p.Namespace {
			continue
		}
		return true
	}
	return false
}

func (c *Context) weightedTCP(dests []*networking.RouteDestination, vs *model.Config, port model.Port) *tcpproxy.TcpProxy {
	var wcs []*tcpproxy.TcpProxy_WeightedCluster_ClusterWeight
	for _, d := range dests {
		w := d.GetWeight()
		if len(dests) == 1 && w == 0 {
			w = 100
		}
		if w == 0 {
			continue
		}
		wcs = append(wcs, &tcpproxy.TcpProxy_WeightedCluster_ClusterWeight{Name: c.destCluster(d.GetDestination(), vs, port), Weight: uint32(w)})
	}
	switch len(wcs) {
	case 0:
		return tcpToCluster(BlackHoleCluster)
	case 1:
		return tcpToCluster(wcs[0].Name)
	}
	return &tcpproxy.TcpProxy{ClusterSpecifier: &tcpproxy.TcpProxy_WeightedClusters{WeightedClusters: &tcpproxy.TcpProxy_WeightedCluster{Clusters: wcs}}}
}

// tlsChains builds SNI-matched chains from VirtualService tls routes, or one
// chain for the service's own host.
func (c *Context) tlsChains(p *proxy.Proxy, svc *model.Service, port model.Port, vs *model.Config) []*listenerv3.FilterChain {
	stat := "outbound|" + strconv.Itoa(int(port.Number)) + "||" + svc.Hostname
	if vs != nil {
		var out []*listenerv3.FilterChain
		for _, r := range vs.Spec.(*networking.VirtualService).GetTls() {
			for _, m := range r.GetMatch() {
				if m.GetPort() != 0 && m.GetPort() != port.Number {
					continue
				}
				out = append(out, &listenerv3.FilterChain{
					FilterChainMatch: &listenerv3.FilterChainMatch{ServerNames: m.GetSniHosts(), TransportProtocol: "tls"},
					Filters:          []*listenerv3.Filter{tcpProxyFilter(stat, c.weightedTCP(r.GetRoute(), vs, port))},
				})
			}
		}
		if len(out) > 0 {
			return out
		}
	}
	return []*listenerv3.FilterChain{{
		FilterChainMatch: &listenerv3.FilterChainMatch{ServerNames: []string{svc.Hostname}, TransportProtocol: "tls"},
		Filters:          []*listenerv3.Filter{tcpProxyFilter(stat, tcpToCluster(ClusterName(port.Number, "", svc.Hostname)))},
	}}
}

// outboundRouteConfig is RDS "<port>": a virtual host per service with
// Istio's domains, then a catch-all for unknown hosts.
func (c *Context) outboundRouteConfig(p *proxy.Proxy, name string, port uint32, svcs []*model.Service) *routev3.RouteConfiguration {
	// Like istiod, sidecar outbound routes ignore the port in the authority
	// (the listener already chose the port), so domains carry no port.
	rc := &routev3.RouteConfiguration{Name: name, ValidateClusters: wrapperspb.Bool(false), IgnorePortInHostMatching: true}
	used := map[string]bool{}
	sorted := append([]*model.Service(nil), svcs...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Hostname < sorted[j].Hostname })
	for _, svc := range sorted {
		sp, _ := svc.Port(port)
		var domains []string
		for _, d := range domainsFor(svc, port, p.Namespace, false) {
			if used[d] {
				continue // another service claimed it first
			}
			used[d] = true
			domains = append(domains, d)
		}
		if len(domains) == 0 {
			continue
		}
		vs := c.virtualService(p, svc.Hostname)
		vh := &routev3.VirtualHost{
			Name:    svc.Hostname + ":" + strconv.Itoa(int(port)),
			Domains: domains,
			Routes:  c.httpRoutes(p, svc, sp, vs),
		}
		if vs != nil {
			if cors := corsPolicy(vs.Spec.(*networking.VirtualService)); cors != nil {
				vh.TypedPerFilterConfig = map[string]*anypb.Any{CorsFilter: mustAnyOf(cors)}
			}
		}
		rc.VirtualHosts = append(rc.VirtualHosts, vh)
	}
	rc.VirtualHosts = append(rc.VirtualHosts, c.catchAllHost())
	return rc
}

func (c *Context) catchAllHost() *routev3.VirtualHost {
	if c.Mesh.OutboundRegistryOnly {
		return &routev3.VirtualHost{Name: "block_all", Domains: []string{"*"}, Routes: []*routev3.Route{{
			Name:   "block_all",
			Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
			Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{Status: 502}},
		}}}
	}
	return &routev3.VirtualHost{Name: "allow_any", Domains: []string{"*"}, Routes: []*routev3.Route{{
		Name:  "allow_any",
		Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
		Action: &routev3.Route_Route{Route: &routev3.RouteAction{
			ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: PassthroughCluster},
			Timeout:          durationpb.New(0),
		}},
	}}}
}

// domainsFor lists the authorities that reach svc:port as istiod builds
// them (generateVirtualHostDomains and GenerateAltVirtualHosts with
// PILOT_ENABLE_ABSOLUTE_FQDN_VHOST_DOMAIN on, its default): the FQDN, its
// absolute form with a trailing dot, the Kubernetes short forms (the bare
// name only from the same namespace) and the VIPs. Sidecar route configs
// set ignore_port_in_host_matching, so they list each name once; gRPC
// matches the authority with its port, so withPort adds "name:port" after
// each name, as istiod does for proxyless clients.
func domainsFor(svc *model.Service, port uint32, proxyNS string, withPort bool) []string {
	ps := strconv.Itoa(int(port))
	out := make([]string, 0, 16)
	add := func(n string) {
		if strings.Contains(n, ":") && !strings.HasPrefix(n, "[") {
			n = "[" + n + "]" // an IPv6 VIP
		}
		out = append(out, n)
		if withPort {
			out = append(out, n+":"+ps)
		}
	}
	add(svc.Hostname)
	if net.ParseIP(svc.Hostname) == nil {
		add(svc.Hostname + ".")
	}
	suffix := ".svc." + model.DefaultDomainSuffix
	if strings.HasSuffix(svc.Hostname, suffix) {
		base := strings.TrimSuffix(svc.Hostname, suffix) // name.ns
		if name, ns, ok := strings.Cut(base, "."); ok && ns != "" && !strings.Contains(ns, ".") {
			if ns == proxyNS {
				add(name)
				add(base + ".svc")
				add(base)
			} else {
				add(base)
				add(base + ".svc")
			}
		}
	}
	for _, a := range svc.Addresses {
		if strings.Contains(a, "/") || a == "0.0.0.0" || a == "" {
			continue // CIDR addresses are not authorities
		}
		add(a)
	}
	return out
}

func corsPolicy(vs *networking.VirtualService) *routev3.CorsPolicy {
	for _, r := range vs.GetHttp() {
		cp := r.GetCorsPolicy()
		if cp == nil {
			continue
		}
		out := &routev3.CorsPolicy{
			AllowMethods:  strings.Join(cp.GetAllowMethods(), ","),
			AllowHeaders:  strings.Join(cp.GetAllowHeaders(), ","),
			ExposeHeaders: strings.Join(cp.GetExposeHeaders(), ","),
		}
		if cp.GetMaxAge() != nil {
			out.MaxAge = strconv.FormatInt(int64(cp.GetMaxAge().AsDuration().Seconds()), 10)
		}
		if cp.GetAllowCredentials() != nil {
			out.AllowCredentials = wrapperspb.Bool(cp.GetAllowCredentials().GetValue())
		}
		for _, o := range cp.GetAllowOrigins() {
			if sm := stringMatcher(o); sm != nil {
				out.AllowOriginStringMatch = append(out.AllowOriginStringMatch, sm)
			}
		}
		return out
	}
	return nil
}

func virtualOutboundListener(mesh model.MeshConfig) *listenerv3.Listener {
	dest := PassthroughCluster
	if mesh.OutboundRegistryOnly {
		dest = BlackHoleCluster
	}
	return &listenerv3.Listener{
		Name:             VirtualOutbound,
		Address:          socketAddress("0.0.0.0", outboundPort),
		UseOriginalDst:   wrapperspb.Bool(true),
		TrafficDirection: corev3.TrafficDirection_OUTBOUND,
		FilterChains: []*listenerv3.FilterChain{
			{
				Name:             "virtualOutbound-blackhole",
				FilterChainMatch: &listenerv3.FilterChainMatch{DestinationPort: wrapperspb.UInt32(outboundPort)},
				Filters:          []*listenerv3.Filter{tcpProxyFilter(BlackHoleCluster, tcpToCluster(BlackHoleCluster))},
			},
		},
		DefaultFilterChain: &listenerv3.FilterChain{
			Name:    "virtualOutbound-catchall-tcp",
			Filters: []*listenerv3.Filter{tcpProxyFilter(dest, tcpToCluster(dest))},
		},
	}
}

// virtualInboundListener has, as istiod's: the loop guard (traffic to
// 15006 itself goes to BlackHoleCluster), filter chains per inbound port of
// the workload (HTTP through an inline route to inbound|port||, TCP
// straight through), shaped by PeerAuthentication (see inboundChains), and
// passthrough chains for every other port (see passthroughChains). Every
// chain that reaches the application carries the workload's access control.
func virtualInboundListener(mesh model.MeshConfig, ports []inboundPortInfo, modes map[uint32]mtlsMode, pass mtlsMode, authz inboundAuthz, inHTTP inboundHTTP) *listenerv3.Listener {
	l := &listenerv3.Listener{
		Name:             VirtualInbound,
		Address:          socketAddress("0.0.0.0", inboundPort),
		TrafficDirection: corev3.TrafficDirection_INBOUND,
		ListenerFilters: []*listenerv3.ListenerFilter{
			listenerFilter("envoy.filters.listener.original_dst", &originaldst.OriginalDst{}),
			listenerFilter("envoy.filters.listener.tls_inspector", &tlsinspector.TlsInspector{}),
			listenerFilter("envoy.filters.listener.http_inspector", &httpinspector.HttpInspector{}),
		},
	}
	l.FilterChains = append(l.FilterChains, &listenerv3.FilterChain{
		Name:             "virtualInbound-blackhole",
		FilterChainMatch: &listenerv3.FilterChainMatch{DestinationPort: wrapperspb.UInt32(inboundPort)},
		Filters:          []*listenerv3.Filter{tcpProxyFilter(BlackHoleCluster, tcpToCluster(BlackHoleCluster))},
	})
	for _, ip := range ports {
		cluster := InboundClusterName(ip.port)
		filters := func() []*listenerv3.Filter {
			if !ip.protocol.IsHTTP() {
				return append(append([]*listenerv3.Filter(nil), authz.tcp...), tcpProxyFilter(cluster, tcpToCluster(cluster)))
			}
			return []*listenerv3.Filter{inboundHCM(cluster, "inbound|http|"+strconv.Itoa(int(ip.port)), cluster,
				inHTTP.filters(ip.protocol == model.ProtocolGRPC), inHTTP.logs)}
		}
		l.FilterChains = append(l.FilterChains, inboundChains(mesh, ip.port, modes[ip.port], ip.protocol.IsHTTP(), filters)...)
	}
	l.FilterChains = append(l.FilterChains, passthroughChains(mesh, pass, authz, inHTTP)...)
	return l
}

// inboundHTTP is what every inbound HCM of a workload carries: its HTTP
// filters (access control, and Istio's telemetry filters for Istio's
// Envoy; gRPC ports add gRPC stats) and its access logs.
type inboundHTTP struct {
	filters func(grpc bool) []*hcmv3.HttpFilter
	logs    []*accesslogv3.AccessLog
}

// inboundHCM is an inbound HTTP connection manager with an inline route
// to cluster, behind the workload's access control filters.
func inboundHCM(routeName, vhost, cluster string, filters []*hcmv3.HttpFilter, logs []*accesslogv3.AccessLog) *listenerv3.Filter {
	return hcmFilter(&hcmv3.HttpConnectionManager{
		StatPrefix: cluster,
		RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: &routev3.RouteConfiguration{
			Name:             routeName,
			ValidateClusters: wrapperspb.Bool(false),
			VirtualHosts: []*routev3.VirtualHost{{
				Name:    vhost,
				Domains: []string{"*"},
				Routes: []*routev3.Route{{
					Name:  "default",
					Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
					Action: &routev3.Route_Route{Route: &routev3.RouteAction{
						ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster},
						Timeout:          durationpb.New(0),
					}},
				}},
			}},
		}},
		HttpFilters: filters,
		AccessLog:   logs,
	})
}

// passthroughChains are istiod's catch-all chains of virtualInbound for
// ports no service declares: HTTP (detected by the HTTP inspector) through
// an HCM, so HTTP access control applies, and TCP straight through, each
// for mesh mTLS and, unless the workload is STRICT, for plaintext (and
// the application's own TLS). Under STRICT, plaintext finds no chain and
// is refused.
func passthroughChains(mesh model.MeshConfig, mode mtlsMode, authz inboundAuthz, inHTTP inboundHTTP) []*listenerv3.FilterChain {
	const catchAllHTTP = "virtualInbound-catchall-http"
	httpFilters := func() []*listenerv3.Filter {
		return []*listenerv3.Filter{inboundHCM(InboundPassthroughCluster, "inbound|http|0", InboundPassthroughCluster, inHTTP.filters(false), inHTTP.logs)}
	}
	tcpFilters := func() []*listenerv3.Filter {
		return append(append([]*listenerv3.Filter(nil), authz.tcp...), tcpProxyFilter(InboundPassthroughCluster, tcpToCluster(InboundPassthroughCluster)))
	}
	mtlsHTTP := &listenerv3.FilterChain{
		Name: catchAllHTTP,
		FilterChainMatch: &listenerv3.FilterChainMatch{TransportProtocol: "tls",
			ApplicationProtocols: []string{"istio-http/1.0", "istio-http/1.1", "istio-h2"}},
		TransportSocket: downstreamMTLS(mesh, true),
		Filters:         httpFilters(),
	}
	mtlsTCP := &listenerv3.FilterChain{
		Name:             VirtualInbound,
		FilterChainMatch: &listenerv3.FilterChainMatch{TransportProtocol: "tls", ApplicationProtocols: istioALPN},
		TransportSocket:  downstreamMTLS(mesh, false),
		Filters:          tcpFilters(),
	}
	plainHTTP := &listenerv3.FilterChain{
		Name: catchAllHTTP,
		FilterChainMatch: &listenerv3.FilterChainMatch{TransportProtocol: "raw_buffer",
			ApplicationProtocols: []string{"http/1.1", "h2c"}},
		Filters: httpFilters(),
	}
	plainTCP := &listenerv3.FilterChain{
		Name:             VirtualInbound,
		FilterChainMatch: &listenerv3.FilterChainMatch{TransportProtocol: "raw_buffer"},
		Filters:          tcpFilters(),
	}
	appTLS := &listenerv3.FilterChain{
		Name:             VirtualInbound,
		FilterChainMatch: &listenerv3.FilterChainMatch{TransportProtocol: "tls"},
		Filters:          tcpFilters(),
	}
	switch mode {
	case mtlsStrict:
		return []*listenerv3.FilterChain{mtlsHTTP, mtlsTCP}
	case mtlsDisable:
		return []*listenerv3.FilterChain{plainHTTP, plainTCP, appTLS}
	}
	return []*listenerv3.FilterChain{mtlsHTTP, plainHTTP, mtlsTCP, plainTCP, appTLS}
}
