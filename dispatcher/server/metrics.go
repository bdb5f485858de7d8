package server

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the server's and the config loader's series.
type Metrics struct {
	requests   *prometheus.CounterVec
	reloads    *prometheus.CounterVec
	configInfo *prometheus.GaugeVec
}

// NewMetrics registers the series with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "impush_dispatcher_http_requests_total",
			Help: "HTTP requests by route pattern and status code.",
		}, []string{"route", "code"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "impush_dispatcher_config_reloads_total",
			Help: "Config Secret versions loaded (result=success) or rejected (result=failure).",
		}, []string{"result"}),
		configInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "impush_dispatcher_config_info",
			Help: "1 for the hash of the config document in use.",
		}, []string{"hash"}),
	}
	reg.MustRegister(m.requests, m.reloads, m.configInfo)
	return m
}

// ConfigReloaded counts one config version loaded or rejected.
func (m *Metrics) ConfigReloaded(ok bool) {
	result := "failure"
	if ok {
		result = "success"
	}
	m.reloads.WithLabelValues(result).Inc()
}

// ConfigApplied makes hash the only config_info series.
func (m *Metrics) ConfigApplied(hash string) {
	m.configInfo.Reset()
	m.configInfo.WithLabelValues(hash).Set(1)
}
