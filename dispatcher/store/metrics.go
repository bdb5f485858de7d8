package store

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the token store's Prometheus series; Hooks feeds them from a
// Secrets store and Observe names the store whose shard fill is reported.
type Metrics struct {
	writes    *prometheus.CounterVec
	bytes     *prometheus.CounterVec
	calls     *prometheus.CounterVec
	conflicts *prometheus.CounterVec
	full      *prometheus.CounterVec
	fillDesc  *prometheus.Desc
	source    atomic.Pointer[Secrets]
}

// NewMetrics registers the token store series with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	counter := func(name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, []string{"shard"})
	}
	m := &Metrics{
		writes:    counter("impush_dispatcher_store_writes_total", "Shard Secret updates committed."),
		bytes:     counter("impush_dispatcher_store_written_bytes_total", "Shard data bytes sent in committed updates."),
		calls:     counter("impush_dispatcher_store_calls_total", "Bind, unbind and remove calls handled by group commits."),
		conflicts: counter("impush_dispatcher_store_conflicts_total", "Shard updates refused because another replica wrote first (retried)."),
		full:      counter("impush_dispatcher_store_shard_full_total", "Writes refused because the shard reached maxShardBytes."),
		fillDesc:  prometheus.NewDesc("impush_dispatcher_store_shard_fill_bytes", "Data bytes held by each shard Secret, as cached.", []string{"shard"}, nil),
	}
	reg.MustRegister(m.writes, m.bytes, m.calls, m.conflicts, m.full, m)
	return m
}

// Hooks returns the callbacks a Secrets store calls on its writes.
func (m *Metrics) Hooks() MetricsHooks {
	return MetricsHooks{
		OnWrite: func(shard string, bytes int) {
			m.writes.WithLabelValues(shard).Inc()
			m.bytes.WithLabelValues(shard).Add(float64(bytes))
		},
		OnBatch:     func(shard string, ops int) { m.calls.WithLabelValues(shard).Add(float64(ops)) },
		OnConflict:  func(shard string) { m.conflicts.WithLabelValues(shard).Inc() },
		OnShardFull: func(shard string) { m.full.WithLabelValues(shard).Inc() },
	}
}

// Observe makes s the store whose shard fill is reported.
func (m *Metrics) Observe(s *Secrets) { m.source.Store(s) }

// Describe implements prometheus.Collector for the fill gauge.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) { ch <- m.fillDesc }

// Collect reads the fill from the store's cache at scrape time, so writes by
// other replicas show too.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	s := m.source.Load()
	if s == nil {
		return
	}
	for shard, fill := range s.ShardFill() {
		ch <- prometheus.MustNewConstMetric(m.fillDesc, prometheus.GaugeValue, float64(fill), shard)
	}
}
