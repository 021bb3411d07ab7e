package xds

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics are the server's Prometheus metrics, named as Istio names them
// where Istio has one (dashboards keep working) and sextant_* otherwise.
type Metrics struct {
	Registry *prometheus.Registry

	Connections     prometheus.Gauge
	Pushes          *prometheus.CounterVec
	Rejects         *prometheus.CounterVec
	PushTime        *prometheus.HistogramVec
	Convergence     prometheus.Histogram
	QueueTime       prometheus.Histogram
	ConfigSize      *prometheus.HistogramVec
	PushTriggers    *prometheus.CounterVec
	DebounceTime    prometheus.Histogram
	Services        prometheus.Gauge
	ConfigErrors    *prometheus.GaugeVec
	ExpiredNonce    *prometheus.CounterVec
	InboundUpdates  *prometheus.CounterVec
	Marshals        prometheus.CounterFunc
	CacheHits       prometheus.CounterFunc
	CacheMisses     prometheus.CounterFunc
	CacheHitRatio   prometheus.GaugeFunc
	StuckStreams    prometheus.Counter
	RejectedStreams *prometheus.CounterVec
	TranslateErrors prometheus.GaugeFunc
	SnapshotVersion prometheus.Gauge
}

func newMetrics(marshals, hits, misses, translateErrors func() float64) *Metrics {
	r := prometheus.NewRegistry()
	m := &Metrics{
		Registry:    r,
		Connections: prometheus.NewGauge(prometheus.GaugeOpts{Name: "pilot_xds", Help: "Number of connected xDS clients."}),
		Pushes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pilot_xds_pushes",
			Help: "xDS responses sent, by type (cds, eds, lds, rds, sds; *_senderr for failed sends)."}, []string{"type"}),
		Rejects: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pilot_total_xds_rejects",
			Help: "xDS responses rejected (NACKed) by proxies, by type."}, []string{"type"}),
		PushTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "pilot_xds_push_time",
			Help: "Seconds to generate and send one xDS response, by type.", Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10)}, []string{"type"}),
		Convergence: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "pilot_proxy_convergence_time",
			Help: "Seconds from a push being queued until the proxy ACKed it.", Buckets: []float64{.01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}}),
		QueueTime: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "pilot_proxy_queue_time",
			Help: "Seconds a push waited for a push slot.", Buckets: []float64{.001, .01, .05, .1, .25, .5, 1, 5}}),
		ConfigSize: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "pilot_xds_config_size_bytes",
			Help: "Size of xDS responses in bytes.", Buckets: prometheus.ExponentialBuckets(256, 4, 10)}, []string{"type"}),
		PushTriggers: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pilot_push_triggers",
			Help: "Pushes by reason (endpoint, service, config)."}, []string{"type"}),
		DebounceTime: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "pilot_debounce_time",
			Help: "Seconds from the first change to the push it was merged into.", Buckets: []float64{.01, .05, .1, .2, .5, 1, 5, 10}}),
		Services: prometheus.NewGauge(prometheus.GaugeOpts{Name: "pilot_services", Help: "Services in the mesh."}),
		ConfigErrors: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "sextant_config_errors",
			Help: "Rejected config inputs (severity=error) and warnings currently reported."}, []string{"severity"}),
		ExpiredNonce: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pilot_xds_expired_nonce",
			Help: "Requests carrying a nonce that is no longer current."}, []string{"type"}),
		InboundUpdates: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pilot_inbound_updates",
			Help: "Model change events received, by kind."}, []string{"type"}),
		Marshals: prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "sextant_xds_resource_marshals_total",
			Help: "xDS resources built and marshalled (shared resources count once)."}, marshals),
		CacheHits: prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "sextant_xds_cache_hits_total",
			Help: "Resource lookups served from the content-addressed cache."}, hits),
		CacheMisses: prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "sextant_xds_cache_misses_total",
			Help: "Resource lookups that had to build the resource."}, misses),
		CacheHitRatio: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sextant_xds_cache_hit_ratio",
			Help: "Share of resource lookups served from the cache since start (hits / (hits + misses))."}, func() float64 {
			h, m := hits(), misses()
			if h+m == 0 {
				return 0
			}
			return h / (h + m)
		}),
		StuckStreams: prometheus.NewCounter(prometheus.CounterOpts{Name: "pilot_xds_write_timeout",
			Help: "Streams closed because a send did not complete in time."}),
		RejectedStreams: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sextant_xds_rejected_streams_total",
			Help: "Streams refused, by reason."}, []string{"reason"}),
		TranslateErrors: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sextant_translate_errors",
			Help: "Config problems met while translating the current snapshot (conflicts, dangling references, skipped routes)."}, translateErrors),
		SnapshotVersion: prometheus.NewGauge(prometheus.GaugeOpts{Name: "sextant_snapshot_version",
			Help: "Version of the model snapshot being served."}),
	}
	r.MustRegister(m.Connections, m.Pushes, m.Rejects, m.PushTime, m.Convergence, m.QueueTime, m.ConfigSize,
		m.PushTriggers, m.DebounceTime, m.Services, m.ConfigErrors, m.ExpiredNonce, m.InboundUpdates,
		m.Marshals, m.CacheHits, m.CacheMisses, m.CacheHitRatio, m.StuckStreams, m.RejectedStreams, m.TranslateErrors, m.SnapshotVersion,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.initLabels()
	return m
}

// xdsTypeLabels are the values of the "type" label of per-xDS-type metrics.
var xdsTypeLabels = []string{"cds", "eds", "lds", "rds", "sds"}

// initLabels creates every known label set at zero, so each metric is
// exported from the start: a dashboard or alert on, say,
// pilot_total_xds_rejects sees 0 rather than no series until the first
// NACK.
func (m *Metrics) initLabels() {
	for _, t := range xdsTypeLabels {
		m.Pushes.WithLabelValues(t)
		m.Pushes.WithLabelValues(t + "_senderr")
		m.Rejects.WithLabelValues(t)
		m.PushTime.WithLabelValues(t)
		m.ConfigSize.WithLabelValues(t)
		m.ExpiredNonce.WithLabelValues(t)
	}
	for _, r := range []string{"endpoint", "service", "config", "secret"} {
		m.PushTriggers.WithLabelValues(r)
	}
	for _, k := range []string{"endpoint", "service", "config", "errors"} {
		m.InboundUpdates.WithLabelValues(k)
	}
	for _, sev := range []string{"error", "warning"} {
		m.ConfigErrors.WithLabelValues(sev)
	}
	for _, r := range []string{"draining", "bad_node", "admission", "unauthenticated", "identity_mismatch", "name_conflict"} {
		m.RejectedStreams.WithLabelValues(r)
	}
}
