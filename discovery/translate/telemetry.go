package translate

import (
	"sort"

	udpatype "github.com/cncf/xds/go/udpa/type/v1"
	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	fileaccesslog "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/file/v3"
	celfilter "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/filters/cel/v3"
	grpcstats "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/grpc_stats/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxy "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	alpn "istio.io/api/envoy/config/filter/http/alpn/v2alpha1"
	"istio.io/api/envoy/extensions/stats"
	telemetry "istio.io/api/telemetry/v1alpha1"

	"github.com/sextant-mesh/sextant/discovery/proxy"
	"github.com/sextant-mesh/sextant/model"
)

// Names of Istio's own filters, which only Istio's Envoy build has.
const (
	MetadataExchangeFilter = "istio.metadata_exchange"
	AlpnFilter             = "istio.alpn"
	StatsFilter            = "istio.stats"
	GrpcStatsFilter        = "envoy.filters.http.grpc_stats"
)

// envoyTextLogFormat is Istio's default access log line (telemetry_logging.go
// EnvoyTextLogFormat), used by the built-in "envoy" provider.
const envoyTextLogFormat = "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% " +
	"%PROTOCOL%\" %RESPONSE_CODE% %RESPONSE_FLAGS% " +
	"%RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% " +
	"\"%UPSTREAM_TRANSPORT_FAILURE_REASON%\" %BYTES_RECEIVED% %BYTES_SENT% " +
	"%DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" " +
	"\"%REQ(USER-AGENT)%\" \"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\" " +
	"%UPSTREAM_CLUSTER_RAW% %UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% " +
	"%DOWNSTREAM_REMOTE_ADDRESS% %REQUESTED_SERVER_NAME% %ROUTE_NAME%\n"

// metricToPrometheus maps Telemetry API metric names to the names the
// istio.stats filter reports (istio_ prefixed), as istiod does.
var metricToPrometheus = map[string]string{
	"REQUEST_COUNT":          "requests_total",
	"REQUEST_DURATION":       "request_duration_milliseconds",
	"REQUEST_SIZE":           "request_bytes",
	"RESPONSE_SIZE":          "response_bytes",
	"TCP_OPENED_CONNECTIONS": "tcp_connections_opened_total",
	"TCP_CLOSED_CONNECTIONS": "tcp_connections_closed_total",
	"TCP_SENT_BYTES":         "tcp_sent_bytes_total",
	"TCP_RECEIVED_BYTES":     "tcp_received_bytes_total",
	"GRPC_REQUEST_MESSAGES":  "request_messages_total",
	"GRPC_RESPONSE_MESSAGES": "response_messages_total",
}

// telemetryConfig is the client-side (outbound) telemetry of one proxy
// after merging the root-namespace, namespace and workload Telemetry
// resources, in that order, as istiod does.
type telemetryConfig struct {
	// metrics is true when the prometheus provider is active and client
	// metrics are not disabled: the istio.stats filter is added.
	metrics   bool
	overrides map[string]*metricOverride
	reporting *durationpb.Duration
	// accessLog is true when the "envoy" provider logs client traffic.
	accessLog bool
	logFilter string
	hash      uint64
}

type metricOverride struct {
	disabled *bool
	tags     map[string]*telemetry.MetricsOverrides_TagOverride
}

// applicableTelemetries returns the Telemetry resources that apply to p:
// the root namespace's and p's namespace's selector-less ones (the oldest
// of each) and every one in p's namespace whose selector matches p.
func (c *Context) applicableTelemetries(p *proxy.Proxy) []*model.Config {
	var root, ns *model.Config
	var workload []*model.Config
	for _, cfg := range c.Snap.Configs(model.KindTelemetry) {
		t := cfg.Spec.(*telemetry.Telemetry)
		if t.GetTargetRef() != nil || len(t.GetTargetRefs()) > 0 {
			continue // gateways and waypoints only
		}
		sel := t.GetSelector().GetMatchLabels()
		switch {
		case len(sel) == 0 && cfg.Key.Namespace == c.Mesh.RootNamespace:
			if root == nil {
				root = cfg
			}
		case len(sel) == 0 && cfg.Key.Namespace == p.Namespace:
			if ns == nil {
				ns = cfg
			}
		case len(sel) > 0 && cfg.Key.Namespace == p.Namespace && model.LabelsMatch(sel, p.Labels):
			workload = append(workload, cfg)
		}
	}
	var out []*model.Config
	for _, cfg := range []*model.Config{root, ns} {
		if cfg != nil {
			out = append(out, cfg)
		}
	}
	return append(out, workload...)
}

func clientMode(m telemetry.WorkloadMode) bool {
	return m == telemetry.WorkloadMode_CLIENT || m == telemetry.WorkloadMode_CLIENT_AND_SERVER
}

func hasProvider(refs []*telemetry.ProviderRef, name string) bool {
	for _, r := range refs {
		if r.GetName() == name {
			return true
		}
	}
	return false
}

// telemetryFor merges the Telemetry resources that apply to p for its
// outbound (client) traffic. Istio's default mesh config enables the
// prometheus metrics provider and no access log provider.
func (c *Context) telemetryFor(p *proxy.Proxy) telemetryConfig {
	cfgs := c.applicableTelemetries(p)
	tc := telemetryConfig{metrics: true, overrides: map[string]*metricOverride{}}
	h := &model.Hasher{}
	prometheus := true
	allDisabled := false
	var logProviders []*telemetry.ProviderRef
	logDisabled := false
	for _, cfg := range cfgs {
		h.U64(cfg.Hash)
		t := cfg.Spec.(*telemetry.Telemetry)
		for _, m := range t.GetMetrics() {
			if len(m.GetProviders()) > 0 {
				prometheus = hasProvider(m.GetProviders(), telemetryPrometheus)
				if !prometheus {
					continue
				}
			}
			if m.GetReportingInterval() != nil {
				tc.reporting = m.GetReportingInterval()
			}
			for _, o := range m.GetOverrides() {
				if !clientMode(o.GetMatch().GetMode()) {
					continue
				}
				names := metricNames(o.GetMatch())
				if isAllMetrics(o.GetMatch()) && o.GetDisabled() != nil {
					allDisabled = o.GetDisabled().GetValue()
					if allDisabled {
						continue
					}
				}
				for _, n := range names {
					mo := tc.overrides[n]
					if mo == nil {
						mo = &metricOverride{}
						tc.overrides[n] = mo
					}
					if o.GetDisabled() != nil {
						d := o.GetDisabled().GetValue()
						mo.disabled = &d
					}
					for k, v := range o.GetTagOverrides() {
						if mo.tags == nil {
							mo.tags = map[string]*telemetry.MetricsOverrides_TagOverride{}
						}
						mo.tags[k] = v
					}
				}
			}
		}
		for _, l := range t.GetAccessLogging() {
			if l.GetMatch() != nil && !clientMode(l.GetMatch().GetMode()) {
				continue
			}
			if len(l.GetProviders()) > 0 {
				logProviders = l.GetProviders()
			}
			if l.GetDisabled() != nil {
				logDisabled = l.GetDisabled().GetValue()
			}
			if l.GetFilter() != nil {
				tc.logFilter = l.GetFilter().GetExpression()
			}
		}
	}
	tc.metrics = prometheus && !allDisabled
	tc.accessLog = !logDisabled && hasProvider(logProviders, telemetryEnvoyLog)
	tc.hash = h.Sum()
	return tc
}

// The built-in provider names Sextant applies (see registry/config).
const (
	telemetryPrometheus = "prometheus"
	telemetryEnvoyLog   = "envoy"
)

var allMetricNames = func() []string {
	out := make([]string, 0, len(metricToPrometheus))
	for k := range metricToPrometheus {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}()

func isAllMetrics(m *telemetry.MetricSelector) bool {
	switch mm := m.GetMetricMatch().(type) {
	case *telemetry.MetricSelector_CustomMetric:
		return false
	case *telemetry.MetricSelector_Metric:
		return mm.Metric == telemetry.MetricSelector_ALL_METRICS
	}
	return true
}

func metricNames(m *telemetry.MetricSelector) []string {
	switch mm := m.GetMetricMatch().(type) {
	case *telemetry.MetricSelector_CustomMetric:
		return []string{mm.CustomMetric}
	case *telemetry.MetricSelector_Metric:
		if mm.Metric != telemetry.MetricSelector_ALL_METRICS {
			return []string{mm.Metric.String()}
		}
	}
	return allMetricNames
}

// statsConfig is istiod's generateStatsConfig for the sidecar outbound
// class: the stats.PluginConfig the istio.stats filter reads.
func (tc telemetryConfig) statsConfig() *stats.PluginConfig {
	cfg := &stats.PluginConfig{TcpReportingDuration: tc.reporting}
	names := make([]string, 0, len(tc.overrides))
	for n := range tc.overrides {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		o := tc.overrides[n]
		name, ok := metricToPrometheus[n]
		if !ok {
			name = n // a custom metric
		}
		mc := &stats.MetricConfig{Name: name, Dimensions: map[string]string{}, Drop: o.disabled != nil && *o.disabled}
		tags := make([]string, 0, len(o.tags))
		for t := range o.tags {
			tags = append(tags, t)
		}
		sort.Strings(tags)
		for _, t := range tags {
			if o.tags[t].GetOperation() == telemetry.MetricsOverrides_TagOverride_REMOVE {
				mc.TagsToRemove = append(mc.TagsToRemove, t)
			} else {
				mc.Dimensions[t] = o.tags[t].GetValue()
			}
		}
		cfg.Metrics = append(cfg.Metrics, mc)
	}
	return cfg
}

// accessLogs is the HCM access log of the "envoy" provider: Envoy's file
// logger writing Istio's default format to stdout, with the Telemetry's CEL
// filter. Both are stock Envoy extensions.
func (tc telemetryConfig) accessLogs() []*accesslogv3.AccessLog {
	if !tc.accessLog {
		return nil
	}
	fl := &fileaccesslog.FileAccessLog{
		Path: "/dev/stdout",
		AccessLogFormat: &fileaccesslog.FileAccessLog_LogFormat{LogFormat: &corev3.SubstitutionFormatString{
			Format: &corev3.SubstitutionFormatString_TextFormatSource{TextFormatSource: &corev3.DataSource{
				Specifier: &corev3.DataSource_InlineString{InlineString: envoyTextLogFormat},
			}},
		}},
	}
	al := &accesslogv3.AccessLog{
		Name:       "envoy.access_loggers.file",
		ConfigType: &accesslogv3.AccessLog_TypedConfig{TypedConfig: mustAnyOf(fl)},
	}
	if tc.logFilter != "" {
		al.Filter = &accesslogv3.AccessLogFilter{FilterSpecifier: &accesslogv3.AccessLogFilter_ExtensionFilter{
			ExtensionFilter: &accesslogv3.ExtensionFilter{
				Name:       "envoy.access_loggers.extension_filters.cel",
				ConfigType: &accesslogv3.ExtensionFilter_TypedConfig{TypedConfig: mustAnyOf(&celfilter.ExpressionFilter{Expression: tc.logFilter})},
			},
		}}
	}
	return []*accesslogv3.AccessLog{al}
}

// withTCPAccessLog adds the access log to every tcp_proxy of an outbound
// listener (its TCP routes and passthrough chains), as istiod's
// setTCPAccessLog does for the envoy provider.
func withTCPAccessLog(l *listenerv3.Listener, logs []*accesslogv3.AccessLog) *listenerv3.Listener {
	if len(logs) == 0 {
		return l
	}
	chains := append([]*listenerv3.FilterChain(nil), l.GetFilterChains()...)
	if l.GetDefaultFilterChain() != nil {
		chains = append(chains, l.GetDefaultFilterChain())
	}
	for _, fc := range chains {
		for i, f := range fc.GetFilters() {
			if f.GetName() != "envoy.filters.network.tcp_proxy" {
				continue
			}
			tp := &tcpproxy.TcpProxy{}
			if err := f.GetTypedConfig().UnmarshalTo(tp); err != nil {
				continue // built here, so it always decodes
			}
			tp.AccessLog = logs
			fc.Filters[i] = tcpProxyFilter(tp.GetStatPrefix(), tp)
		}
	}
	return l
}

// withTCPStats puts Istio's stats filter in front of every tcp_proxy of l
// that reaches a destination (not BlackHoleCluster), for Istio's Envoy
// with metrics on, as istiod's TCP stats filter, so istio_tcp_* metrics
// are produced on both sides. Other proxies are left as they are.
func withTCPStats(l *listenerv3.Listener, istioProxy bool, tc telemetryConfig) *listenerv3.Listener {
	if !istioProxy || !tc.metrics {
		return l
	}
	stats := &listenerv3.Filter{Name: StatsFilter, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAnyOf(tc.statsConfig())}}
	chains := append([]*listenerv3.FilterChain(nil), l.GetFilterChains()...)
	if l.GetDefaultFilterChain() != nil {
		chains = append(chains, l.GetDefaultFilterChain())
	}
	for _, fc := range chains {
		var out []*listenerv3.Filter
		for _, f := range fc.GetFilters() {
			if f.GetName() == "envoy.filters.network.tcp_proxy" {
				tp := &tcpproxy.TcpProxy{}
				if err := f.GetTypedConfig().UnmarshalTo(tp); err == nil && tp.GetCluster() != BlackHoleCluster {
					out = append(out, stats)
				}
			}
			out = append(out, f)
		}
		fc.Filters = out
	}
	return l
}

// outboundMetadataExchange is istiod's SidecarOutboundMetadataFilter: Istio's
// peer_metadata filter, sent as a TypedStruct because its proto is Istio's
// own (the type URL names it; Envoy resolves it, Go registries need not).
func outboundMetadataExchange() *hcmv3.HttpFilter {
	v, _ := structpb.NewStruct(map[string]any{
		"upstream_discovery": []any{
			map[string]any{"istio_headers": map[string]any{}},
			map[string]any{"workload_discovery": map[string]any{}},
		},
		"upstream_propagation": []any{
			map[string]any{"istio_headers": map[string]any{}},
		},
	})
	ts := &udpatype.TypedStruct{TypeUrl: "type.googleapis.com/io.istio.http.peer_metadata.Config", Value: v}
	return &hcmv3.HttpFilter{Name: MetadataExchangeFilter, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAnyOf(ts)}}
}

// inboundMetadataExchange is istiod's inbound istio.metadata_exchange:
// it learns the caller's workload from the request's Istio headers (or its
// workload discovery) so server-side metrics carry source labels.
func inboundMetadataExchange() *hcmv3.HttpFilter {
	v, _ := structpb.NewStruct(map[string]any{
		"downstream_discovery": []any{
			map[string]any{"istio_headers": map[string]any{}},
			map[string]any{"workload_discovery": map[string]any{}},
		},
		"downstream_propagation": []any{
			map[string]any{"istio_headers": map[string]any{}},
		},
	})
	ts := &udpatype.TypedStruct{TypeUrl: "type.googleapis.com/io.istio.http.peer_metadata.Config", Value: v}
	return &hcmv3.HttpFilter{Name: MetadataExchangeFilter, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAnyOf(ts)}}
}

// alpnFilter is istiod's istio.alpn: it sets the ALPN of upstream mTLS
// connections to istio-http/1.0, istio-http/1.1 or istio-h2, so the
// server's inbound chains can tell HTTP from TCP.
func alpnFilter() *hcmv3.HttpFilter {
	cfg := &alpn.FilterConfig{AlpnOverride: []*alpn.FilterConfig_AlpnOverride{
		{UpstreamProtocol: alpn.FilterConfig_HTTP10, AlpnOverride: []string{"istio-http/1.0", "istio", "http/1.0"}},
		{UpstreamProtocol: alpn.FilterConfig_HTTP11, AlpnOverride: []string{"istio-http/1.1", "istio", "http/1.1"}},
		{UpstreamProtocol: alpn.FilterConfig_HTTP2, AlpnOverride: []string{"istio-h2", "istio", "h2"}},
	}}
	return &hcmv3.HttpFilter{Name: AlpnFilter, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAnyOf(cfg)}}
}

func grpcStatsFilter() *hcmv3.HttpFilter {
	cfg := &grpcstats.FilterConfig{
		EmitFilterState:        true,
		PerMethodStatSpecifier: &grpcstats.FilterConfig_StatsForAllMethods{StatsForAllMethods: wrapperspb.Bool(false)},
	}
	return &hcmv3.HttpFilter{Name: GrpcStatsFilter, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAnyOf(cfg)}}
}

// inboundHTTPFilters is the HTTP filter chain of a sidecar's inbound HCMs:
// metadata exchange first (Istio's Envoy only), then the workload's access
// control (authz), gRPC stats for gRPC ports, CORS and fault, the stats
// filter (the same configuration as outbound: the filter takes the
// reporter, destination, from the listener's direction), the router. Any
// other Envoy gets access control and the stock filters.
func inboundHTTPFilters(istioProxy, grpc bool, tc telemetryConfig, authz []*hcmv3.HttpFilter) []*hcmv3.HttpFilter {
	base := httpFilters()
	if !istioProxy {
		return append(append([]*hcmv3.HttpFilter(nil), authz...), base...)
	}
	out := []*hcmv3.HttpFilter{inboundMetadataExchange()}
	out = append(out, authz...)
	if grpc {
		out = append(out, grpcStatsFilter())
	}
	out = append(out, base[:len(base)-1]...) // CORS, fault
	if tc.metrics {
		// As istiod's inbound stats: the destination service comes from
		// the inbound cluster, never from the Host header.
		cfg := tc.statsConfig()
		cfg.DisableHostHeaderFallback = true
		out = append(out, &hcmv3.HttpFilter{Name: StatsFilter, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAnyOf(cfg)}})
	}
	return append(out, base[len(base)-1]) // router last
}

// outboundHTTPFilters is the HTTP filter chain of a sidecar's outbound HCM.
// A proxy running Istio's Envoy (ISTIO_VERSION in its metadata) gets
// Istio's filters in istiod's order: metadata exchange first, gRPC stats
// for gRPC ports, ALPN, then CORS and fault, the stats filter, the router.
// Any other Envoy gets only stock filters.
func outboundHTTPFilters(istioProxy, grpc bool, tc telemetryConfig) []*hcmv3.HttpFilter {
	base := httpFilters()
	if !istioProxy {
		return base
	}
	out := []*hcmv3.HttpFilter{outboundMetadataExchange()}
	if grpc {
		out = append(out, grpcStatsFilter())
	}
	out = append(out, alpnFilter())
	out = append(out, base[:len(base)-1]...) // CORS, fault
	if tc.metrics {
		out = append(out, &hcmv3.HttpFilter{Name: StatsFilter, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAnyOf(tc.statsConfig())}})
	}
	return append(out, base[len(base)-1]) // router last
}
