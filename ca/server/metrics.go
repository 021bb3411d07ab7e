package server

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sextant-mesh/sextant/ca/trust"
)

// Metrics are Citadel's (security/pkg/server/ca/monitoring.go), plus the
// Sextant-only rate-limit counter.
type Metrics struct {
	CSRs              prometheus.Counter
	AuthnFailures     prometheus.Counter
	CSRParsingErrors  prometheus.Counter
	IDExtractionError prometheus.Counter
	SignErrors        *prometheus.CounterVec // label error: TTL_ERROR, CERT_GEN_ERROR
	Successes         prometheus.Counter
	RateLimited       prometheus.Counter
}

// Error label values of citadel_server_csr_sign_err_count (Istio's caerror
// types).
const (
	signErrTTL     = "TTL_ERROR"
	signErrCertGen = "CERT_GEN_ERROR"
)

// newMetrics registers the CA metrics on reg; the expiry gauges read the
// store at scrape time.
func newMetrics(reg *prometheus.Registry, store *trust.Store, now func() time.Time) (*Metrics, error) {
	m := &Metrics{
		CSRs: prometheus.NewCounter(prometheus.CounterOpts{Name: "citadel_server_csr_count",
			Help: "The number of CSRs received by Citadel server."}),
		AuthnFailures: prometheus.NewCounter(prometheus.CounterOpts{Name: "citadel_server_authentication_failure_count",
			Help: "The number of authentication failures."}),
		CSRParsingErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "citadel_server_csr_parsing_err_count",
			Help: "The number of errors occurred when parsing the CSR."}),
		IDExtractionError: prometheus.NewCounter(prometheus.CounterOpts{Name: "citadel_server_id_extraction_err_count",
			Help: "The number of errors occurred when extracting the ID from CSR."}),
		SignErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "citadel_server_csr_sign_err_count",
			Help: "The number of errors occurred when signing the CSR."}, []string{"error"}),
		Successes: prometheus.NewCounter(prometheus.CounterOpts{Name: "citadel_server_success_cert_issuance_count",
			Help: "The number of certificates issuances that have succeeded."}),
		RateLimited: prometheus.NewCounter(prometheus.CounterOpts{Name: "sextant_ca_csr_rate_limited_total",
			Help: "CSRs refused because their identity exceeded its rate limit."}),
	}
	root := func() float64 { return float64(store.Current().RootNotAfter().Unix()) }
	chain := func() float64 { return float64(store.Current().ChainNotAfter().Unix()) }
	collectors := []prometheus.Collector{m.CSRs, m.AuthnFailures, m.CSRParsingErrors, m.IDExtractionError, m.SignErrors, m.Successes, m.RateLimited,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "citadel_server_root_cert_expiry_timestamp",
			Help: "The unix timestamp, in seconds, when Citadel root cert will expire."}, root),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "citadel_server_root_cert_expiry_seconds",
			Help: "The time remaining, in seconds, before the root cert will expire. A negative value means it has expired."},
			func() float64 { return root() - float64(now().Unix()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "citadel_server_cert_chain_expiry_timestamp",
			Help: "The unix timestamp, in seconds, when Citadel cert chain will expire."}, chain),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "citadel_server_cert_chain_expiry_seconds",
			Help: "The time remaining, in seconds, before the cert chain will expire. A negative value means it has expired."},
			func() float64 { return chain() - float64(now().Unix()) }),
	}
	for _, c := range collectors {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register CA metrics: %w", err)
		}
	}
	// Pre-create the label values so dashboards see zeros.
	m.SignErrors.WithLabelValues(signErrTTL)
	m.SignErrors.WithLabelValues(signErrCertGen)
	return m, nil
}
