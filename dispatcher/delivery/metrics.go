package delivery

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Metric names are a contract with config/prometheus alert rules and
// dashboards; labels carry only provider, certificate name and reasons from
// a fixed set, never a token or credential.
type metrics struct {
	accepted           prometheus.Counter
	deliveriesAccepted prometheus.Counter
	deliveries         *prometheus.CounterVec
	// skipped is deliveries' series of skips (no binding), which every
	// notification adds to: looked up once, on first use as before, not
	// per notification.
	skipped       func() prometheus.Counter
	dropped       *prometheus.CounterVec
	failures      *prometheus.CounterVec
	retries       *prometheus.CounterVec
	queueDepth    prometheus.GaugeFunc
	paused        *prometheus.GaugeVec
	suspect       *prometheus.GaugeVec
	tokensRemoved *prometheus.CounterVec
	callDuration  *prometheus.HistogramVec
	queueWait     *prometheus.HistogramVec
	sendLatency   *prometheus.HistogramVec
	workers       *prometheus.GaugeVec
	maxWorkers    *prometheus.GaugeVec
}

// newMetrics registers the engine's metrics; queueDepth reads the engine's
// count of deliveries held, so that no delivery's end has to set a gauge in
// order with every other's.
func newMetrics(reg prometheus.Registerer, queueDepth func() float64) *metrics {
	m := &metrics{
		accepted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "impush_dispatcher_notifications_accepted_total",
			Help: "Notifications accepted (202), duplicates excluded.",
		}),
		deliveriesAccepted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "impush_dispatcher_deliveries_accepted_total",
			Help: "Device deliveries accepted; each ends delivered, failed or dropped in impush_dispatcher_deliveries_total.",
		}),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "impush_dispatcher_deliveries_total",
			Help: "Final outcome of each device delivery (delivered, failed, dropped) and each skip, by the binding last tried.",
		}, []string{"provider", "certificate", "outcome"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "impush_dispatcher_notifications_dropped_total",
			Help: "Device deliveries dropped by this replica: Shutdown (accepted, left at drain) or QueueFull (refused with 429).",
		}, []string{"reason"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "impush_dispatcher_binding_failures_total",
			Help: "Bindings given up on, by reason (TokenInvalid, BadCredentials, CredentialSuspect, BadMessage, MaxAttempts, Expired, QuotaExceeded, CertificateRemoved, ...).",
		}, []string{"provider", "certificate", "reason"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "impush_dispatcher_retries_total",
			Help: "Attempts scheduled again after a transient provider answer.",
		}, []string{"provider", "certificate"}),
		queueDepth: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "impush_dispatcher_queue_depth",
			Help: "Device deliveries held in memory: queued, waiting to retry, or in flight.",
		}, queueDepth),
		paused: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "impush_dispatcher_credential_paused",
			Help: "1 while a credential is paused by a provider quota or its daily cap.",
		}, []string{"certificate"}),
		suspect: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "impush_dispatcher_credential_suspect",
			Help: "1 while most of a credential's recent answers say the token is invalid, so tokens are kept.",
		}, []string{"certificate"}),
		tokensRemoved: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "impush_dispatcher_tokens_removed_total",
			Help: "Bindings removed from the token store after a token-invalid answer.",
		}, []string{"provider", "certificate"}),
		callDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "impush_dispatcher_provider_call_duration_seconds",
			Help:    "Duration of one provider call (one attempt), by the outcome of its answer.",
			Buckets: prometheus.DefBuckets,
		}, []string{"provider", "certificate", "outcome"}),
		// Finer than DefBuckets at the low end: a healthy queue waits
		// well under a millisecond.
		queueWait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "impush_dispatcher_queue_wait_seconds",
			Help:    "Time from a notification's acceptance to the start of each delivery's first provider call (store read, policy, queue).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10, 60},
		}, []string{"provider"}),
		// Bounds every millisecond up to 5 ms: the latency a dispatcher
		// adds is judged against a few milliseconds (docs/performance.md).
		sendLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "impush_dispatcher_send_latency_seconds",
			Help:    "Time from a notification's acceptance to each delivery's first provider request written to the provider's connection: the latency the dispatcher adds before the provider's round trip.",
			Buckets: []float64{.00025, .0005, .001, .002, .003, .004, .005, .0075, .01, .025, .05, .1, .25, .5, 1, 2.5, 10, 60},
		}, []string{"provider"}),
		workers: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "impush_dispatcher_provider_workers",
			Help: "Concurrent sends allowed per provider now: adapted to the provider's round-trip times, at most impush_dispatcher_provider_max_workers.",
		}, []string{"provider"}),
		maxWorkers: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "impush_dispatcher_provider_max_workers",
			Help: "Upper bound of concurrent sends per provider: the HTTP/2 stream limits its connections advertise, capped by the dispatcher's maximum.",
		}, []string{"provider"}),
	}
	m.skipped = sync.OnceValue(func() prometheus.Counter { return m.deliveries.WithLabelValues("", "", string(Skipped)) })
	reg.MustRegister(m.workers, m.maxWorkers, m.accepted, m.deliveriesAccepted, m.deliveries, m.dropped, m.failures, m.retries,
		m.queueDepth, m.paused, m.suspect, m.tokensRemoved, m.callDuration, m.queueWait, m.sendLatency)
	return m
}
