package config

import (
	telemetry "istio.io/api/telemetry/v1alpha1"
	"maps"
	"slices"
)

// Providers Sextant applies: Istio's built-in "prometheus" (the istio.stats
// filter) for metrics and "envoy" (Envoy's file access log on stdout) for
// access logging. Other names refer to meshConfig extensionProviders, which
// Sextant does not read.
const (
	telemetryMetricsProvider = "prometheus"
	telemetryLoggingProvider = "envoy"
)

func validateTelemetry(oe *objectErrors, t *telemetry.Telemetry) {
	validateSelectorLabels(oe, "spec.selector.matchLabels", t.GetSelector().GetMatchLabels())
	if t.GetTargetRef() != nil || len(t.GetTargetRefs()) > 0 {
		oe.warn("spec.targetRefs", "targetRef(s) select gateways and waypoints, which Sextant does not serve; this Telemetry is ignored")
	}
	if len(t.GetTracing()) > 0 {
		oe.warn("spec.tracing", "tracing is not applied by Sextant; ignored")
	}
	for i, m := range t.GetMetrics() {
		f := idx("spec.metrics", i)
		for j, p := range m.GetProviders() {
			if p.GetName() == "" {
				oe.add(idx(f+".providers", j)+".name", "provider name is required")
			} else if p.GetName() != telemetryMetricsProvider {
				oe.warn(idx(f+".providers", j)+".name", "metrics provider %q is not supported (only %q); it gets no metrics", p.GetName(), telemetryMetricsProvider)
			}
		}
		if d := m.GetReportingInterval(); d != nil && d.AsDuration() <= 0 {
			oe.add(f+".reportingInterval", "must be positive")
		}
		for j, o := range m.GetOverrides() {
			of := idx(f+".overrides", j)
			if cm, ok := o.GetMatch().GetMetricMatch().(*telemetry.MetricSelector_CustomMetric); ok && cm.CustomMetric == "" {
				oe.add(of+".match.customMetric", "must not be empty")
			}
			for _, name := range slices.Sorted(maps.Keys(o.GetTagOverrides())) {
				to := o.GetTagOverrides()[name]
				tf := key(of+".tagOverrides", name)
				if name == "" {
					oe.add(tf, "tag name must not be empty")
				}
				if to.GetOperation() == telemetry.MetricsOverrides_TagOverride_UPSERT && to.GetValue() == "" {
					oe.add(tf+".value", "operation UPSERT requires a value (a CEL expression)")
				}
				if to.GetOperation() == telemetry.MetricsOverrides_TagOverride_REMOVE && to.GetValue() != "" {
					oe.add(tf+".value", "operation REMOVE takes no value")
				}
			}
		}
	}
	for i, l := range t.GetAccessLogging() {
		f := idx("spec.accessLogging", i)
		for j, p := range l.GetProviders() {
			if p.GetName() == "" {
				oe.add(idx(f+".providers", j)+".name", "provider name is required")
			} else if p.GetName() != telemetryLoggingProvider {
				oe.warn(idx(f+".providers", j)+".name", "access log provider %q is not supported (only %q); nothing is logged for it", p.GetName(), telemetryLoggingProvider)
			}
		}
	}
}
