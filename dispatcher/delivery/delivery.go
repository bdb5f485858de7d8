// Package delivery is the dispatcher's delivery engine (DESIGN.md "Flow of
// one notification", steps 4 and 5): it turns an accepted notification into
// one job per device, sends each through the device's bindings in policy
// order, and records every device's outcome.
//
// # API
//
//	e := delivery.New(delivery.Options{Store: st, Logger: log, Registerer: reg})
//	err := e.SetConfig(cfg, clients)     // clients keyed by certificate name; call again on every reload
//	rcpt, err := e.Submit(n)             // 202 when err == nil; ErrQueueFull → 429, ErrNotReady/ErrDraining → 503
//	st, ok := e.Status(id)               // GET /v1/notifications/{id}
//	st, err := e.Wait(ctx, id)           // ?wait=true: returns when every outcome is final or ctx ends
//	dropped := e.Drain(ctx)              // SIGTERM: stop accepting, finish until ctx ends, drop the rest
//
// Submit reads each recipient from the store, runs policy.Decide and queues
// every device delivery, all or nothing: when the queue (Options.QueueSize
// device deliveries held in memory, queued, waiting or in flight) cannot take
// all of them, nothing is queued and ErrQueueFull is returned. Before any of
// that work it refuses with ErrQueueFull when the queue has less room than
// the notification has recipients (counting one delivery per recipient);
// only then does it count the deliveries exactly. "Accepted"
// means held in this replica's memory. A notification id seen within the
// idempotency window returns the first receipt with Duplicate set and sends
// nothing (a nil error). An invalid recipient user id is a skip with reason
// InvalidUser; any other store error fails the whole Submit.
//
// # Sending
//
// Jobs wait in per-provider queues served by Options.Workers goroutines per
// provider. Each attempt uses the client of the config current when it
// starts, so SetConfig rotates credentials without dropping anything: a call
// in flight finishes with its old client, the next attempt uses the new one.
// Every provider call runs under CallTimeout and is one attempt, whatever the
// client retries inside. Waiting (backoff, rate-limit slots, quota pauses)
// happens in a delay heap driven by Options.Clock, never in a worker.
//
// Per answer:
//   - Delivered: the device is delivered.
//   - Retry: backoff with full jitter, from BackoffInitial doubling to
//     BackoffMax, or the provider's Retry-After when longer. MaxAttempts
//     counts every provider call of the device across its bindings (quota
//     answers excepted); past it the device fails with MaxAttempts, and when
//     the next attempt would fall after the message's expiration (its TTL)
//     with Expired. A transient failure does not move to the next binding.
//   - DropToken: the binding is removed with the store's compare-and-delete
//     (same token, bound no later than the send started, or than the
//     provider's InvalidSince when earlier), then the next binding is tried;
//     with none left the device fails with TokenInvalid. When the
//     credential's breaker is open (within BreakerWindow at least
//     BreakerMinAnswers answers, BreakerInvalidRatio of them token-invalid)
//     nothing is removed: the binding fails with CredentialSuspect, which is
//     logged, counted and shown by impush_dispatcher_credential_suspect.
//   - BadCredentials: the binding fails (counted per certificate), the next
//     binding is tried.
//   - BadMessage: the device fails; another binding would get the same
//     message.
//   - QuotaExceeded: the credential is paused until ResumeAt (next midnight
//     of its day zone when the provider gave none). A device with another
//     binding moves on to it; otherwise it waits for the resume, unless that
//     is past its expiration (failed, QuotaExceeded). Waiting never burns an
//     attempt, and the quota answer itself is not counted as one.
//
// # Limits
//
// A certificate's RateLimit (this replica's share, per second; 0 = no limit)
// feeds a token bucket with burst max(1, ceil(rate)). DailyCap is tenant-wide,
// so each replica allows ceil(DailyCap/Replicas) sends per day; reaching it
// pauses the credential until the day ends. Days are Beijing days for the
// Chinese vendors (their quotas reset at Beijing midnight) and UTC days for
// APNs and FCM. Limiter state, daily counts and pauses survive SetConfig;
// the breaker restarts when the credential's fingerprint changes.
//
// # Accounting
//
// Every accepted device delivery ends exactly once as delivered, failed or
// dropped, so once the engine is idle
//
//	impush_dispatcher_deliveries_accepted_total ==
//	  sum(impush_dispatcher_deliveries_total{outcome=~"delivered|failed|dropped"})
//
// Skips are counted in impush_dispatcher_deliveries_total{outcome="skipped"}
// with empty provider and certificate. impush_dispatcher_notifications_dropped_total
// counts device deliveries by reason: Shutdown (accepted, left when Drain's
// context ended; equal to the dropped outcomes) and QueueFull (refused by
// Submit, never accepted; one per recipient when refused before the store
// was read). Other metrics: impush_dispatcher_notifications_accepted_total,
// impush_dispatcher_retries_total{provider,certificate},
// impush_dispatcher_queue_depth, impush_dispatcher_credential_paused{certificate},
// impush_dispatcher_credential_suspect{certificate},
// impush_dispatcher_tokens_removed_total{provider,certificate},
// impush_dispatcher_binding_failures_total{provider,certificate,reason},
// impush_dispatcher_provider_call_duration_seconds{provider,certificate,outcome}
// impush_dispatcher_queue_wait_seconds{provider} (acceptance to first call)
// and impush_dispatcher_send_latency_seconds{provider} (acceptance to the
// first call's request written to the provider's connection).
//
// Outcomes stay queryable for at least IdempotencyWindow after acceptance
// (longer while still pending) and at most IdempotencyMax notifications are
// kept. Drain must be called to stop the engine's goroutines; clients must
// return when their context ends, or Drain waits for them.
package delivery

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/imcloud/im-push-operator/dispatcher/config"
	"github.com/imcloud/im-push-operator/dispatcher/policy"
	"github.com/imcloud/im-push-operator/dispatcher/providers"
	"github.com/imcloud/im-push-operator/dispatcher/store"
)

// Errors Submit and Wait return.
var (
	// ErrQueueFull: the deliveries do not fit in the queue; answer 429.
	ErrQueueFull = errors.New("delivery queue is full")
	// ErrDraining: Drain has started; answer 503.
	ErrDraining = errors.New("dispatcher is shutting down")
	// ErrNotReady: no config has been set yet; answer 503.
	ErrNotReady = errors.New("dispatcher has no config yet")
	// ErrInvalidNotification: the notification is nil or has no id.
	ErrInvalidNotification = errors.New("notification must have an id")
	// ErrNotFound: no notification with that id within the window.
	ErrNotFound = errors.New("notification not found")
)

// Defaults for zero Options fields.
const (
	DefaultQueueSize         = 10000
	DefaultIdempotencyWindow = 10 * time.Minute
	// DefaultIdempotencyMax: a finished record costs about 300 bytes, and
	// 100,000 of them (the bound before 2026-12-05) were a quarter of the
	// dispatcher's default 128 MiB memory request, which its soft memory
	// limit follows. 25,000 still cover 25 s of retries at 1,000
	// notifications/s, and the full 10-minute window up to about 40/s.
	DefaultIdempotencyMax = 25000
	DefaultCallTimeout    = 10 * time.Second
	// DefaultQueueWait is as long as the API's 429 tells a client to wait
	// before it retries (Retry-After: 1), so waiting for room never keeps
	// a notification out longer than a refusal would.
	DefaultQueueWait = time.Second
	// DefaultWorkers is a provider's concurrent sends until its clients
	// report an HTTP/2 stream limit, and for clients that cannot.
	DefaultWorkers = 64
	// DefaultMaxWorkers caps the concurrent sends per provider sized from
	// stream limits (APNs documents about 1000 streams per connection;
	// every send in flight holds a goroutine and its buffers).
	DefaultMaxWorkers = 1000
	// DefaultMinWorkers is the fewest concurrent sends the round-trip
	// limiter (limit.go) goes down to below a stream-limit cap while sends
	// wait: about 10,000 sends/s to a provider 25 ms away, the round trip a
	// 20 ms provider stretches to when the dispatcher's CPU is busy on 2
	// cores, so a round trip that rises with local CPU load cannot
	// throttle the rate the CPU allows (128 capped the 20 ms one-recipient
	// rate near 5,000/s; docs/performance-history.md, 2026-12-08). While
	// none wait the limit follows the sends in flight instead, below it.
	DefaultMinWorkers = 256
	// DefaultIdleWorkerTimeout: a worker idle this long leaves (see
	// IdleWorkers). Jobs go round-robin to waiting workers, so a pool of n
	// keeps them all while it gets more than n/30 jobs a second, and a
	// provider without traffic stops holding up to a thousand goroutines'
	// stacks (about 8 MiB).
	DefaultIdleWorkerTimeout = 30 * time.Second
	// IdleWorkers: workers a pool keeps however long they are idle; they
	// take the first jobs after a quiet spell while the pool grows back.
	IdleWorkers                = 16
	DefaultBreakerWindow       = time.Minute
	DefaultBreakerMinAnswers   = 20
	DefaultBreakerInvalidRatio = 0.9
)

// Options configure an Engine. Zero fields take the defaults above.
type Options struct {
	// Store is the token store: users are read on Submit and invalid tokens
	// removed through it. Required.
	Store store.Store
	// Clock drives backoff, TTL, pauses and rate limits; RealClock when nil.
	Clock  Clock
	Logger logr.Logger
	// Registerer receives the metrics; a fresh registry when nil.
	Registerer prometheus.Registerer
	// QueueSize bounds the device deliveries held in memory.
	QueueSize int
	// QueueWait is how long Submit and Admit wait (real time) for room in
	// a full queue before they answer ErrQueueFull; negative: not at all.
	QueueWait         time.Duration
	IdempotencyWindow time.Duration
	IdempotencyMax    int
	// CallTimeout bounds one provider call (real time).
	CallTimeout time.Duration
	// Rand draws backoff jitter; a randomly seeded source when nil.
	Rand *rand.Rand
	// Workers, when set, fixes the number of concurrent sends per
	// provider; ProviderWorkers fixes it for single providers. Otherwise a
	// provider gets DefaultWorkers until its clients report the stream
	// limit their HTTP/2 connections advertise (providers.StreamLimited);
	// then at most the sum of those limits, capped by MaxWorkers, and below
	// that cap as many as the provider's round-trip times show are useful
	// (limit.go): never fewer than DefaultMinWorkers (unless the cap is
	// lower) while sends wait for a worker, and as many as are in use,
	// twice over and at least IdleWorkers, while none do.
	Workers         int
	ProviderWorkers map[config.Provider]int
	MaxWorkers      int
	// IdleWorkerTimeout: an adaptive pool's worker that waits this long for
	// a job leaves, down to IdleWorkers per pool; the pool grows back as
	// jobs queue (see worker.go). Fixed pools keep their workers.
	IdleWorkerTimeout time.Duration
	// Breaker thresholds (see the package comment).
	BreakerWindow       time.Duration
	BreakerMinAnswers   int
	BreakerInvalidRatio float64
}

func (o Options) withDefaults() Options {
	if o.Clock == nil {
		o.Clock = RealClock{}
	}
	if o.Logger.GetSink() == nil {
		o.Logger = logr.Discard()
	}
	if o.Registerer == nil {
		o.Registerer = prometheus.NewRegistry()
	}
	if o.QueueSize <= 0 {
		o.QueueSize = DefaultQueueSize
	}
	if o.QueueWait == 0 {
		o.QueueWait = DefaultQueueWait
	}
	if o.IdempotencyWindow <= 0 {
		o.IdempotencyWindow = DefaultIdempotencyWindow
	}
	if o.IdempotencyMax <= 0 {
		o.IdempotencyMax = DefaultIdempotencyMax
	}
	if o.CallTimeout <= 0 {
		o.CallTimeout = DefaultCallTimeout
	}
	if o.Rand == nil {
		o.Rand = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	if o.MaxWorkers <= 0 {
		o.MaxWorkers = DefaultMaxWorkers
	}
	if o.IdleWorkerTimeout <= 0 {
		o.IdleWorkerTimeout = DefaultIdleWorkerTimeout
	}
	if o.BreakerWindow <= 0 {
		o.BreakerWindow = DefaultBreakerWindow
	}
	if o.BreakerMinAnswers <= 0 {
		o.BreakerMinAnswers = DefaultBreakerMinAnswers
	}
	if o.BreakerInvalidRatio <= 0 {
		o.BreakerInvalidRatio = DefaultBreakerInvalidRatio
	}
	return o
}

// Engine queues, sends, retries and accounts for device deliveries.
type Engine struct {
	opts    Options
	store   store.Store
	clock   Clock
	log     logr.Logger
	metrics *metrics

	// ctx is cancelled when Drain gives up, aborting calls in flight.
	ctx    context.Context
	cancel context.CancelFunc
	stop   chan struct{}
	wg     sync.WaitGroup

	state atomic.Pointer[snapshot]

	randMu sync.Mutex
	rand   *rand.Rand

	heapMu sync.Mutex
	delays delayHeap
	seq    uint64
	wake   chan struct{}

	// Notifications waiting for room in a full queue (admit) wait on
	// roomFreed, which signalRoom closes and replaces whenever the held
	// count falls to a multiple of roomStep (a hundredth of the queue) or
	// the engine drains: often enough for a waiter's room to come soon
	// after it exists, rarely enough that waking the waiters costs little.
	roomWaiters atomic.Int32
	roomStep    int64
	roomMu      sync.Mutex
	roomFreed   chan struct{}

	// pending counts the accepted deliveries not yet final. It grows only
	// under mu (Submit checks the room and adds in one step) and shrinks
	// without it as deliveries end (finish); atomic, so that Room, asked by
	// the API on every request under load, and the queue-depth gauge read
	// it without mu.
	pending atomic.Int64

	// mu guards everything below.
	mu       sync.Mutex
	pools    map[config.Provider]*pool
	certs    map[string]*certState
	records  map[string]*record
	order    []*record
	draining bool
	stopped  bool
	// idle is closed, once (idleClosed), when nothing is held while
	// draining.
	idle       chan struct{}
	idleClosed bool
	drained    chan struct{}
	// shutdownDrops counts deliveries dropped at shutdown (finish, without mu).
	shutdownDrops atomic.Int64
}

// New returns an engine with no config: Submit answers ErrNotReady until
// SetConfig. Call Drain to stop it.
func New(opts Options) *Engine {
	opts = opts.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	e := &Engine{
		opts:    opts,
		store:   opts.Store,
		clock:   opts.Clock,
		log:     opts.Logger,
		ctx:     ctx,
		cancel:  cancel,
		stop:    make(chan struct{}),
		rand:    opts.Rand,
		wake:    make(chan struct{}, 1),
		pools:   map[config.Provider]*pool{},
		certs:   map[string]*certState{},
		records: map[string]*record{},
		idle:    make(chan struct{}),
		drained: make(chan struct{}),
	}
	e.metrics = newMetrics(opts.Registerer, func() float64 { return float64(e.pending.Load()) })
	e.roomFreed = make(chan struct{})
	e.roomStep = int64(max(opts.QueueSize/100, 1))
	e.wg.Add(1)
	go e.scheduler()
	return e
}

// snapshot is one config with its clients; replaced whole by SetConfig.
type snapshot struct {
	cfg      *config.Config
	renderer *policy.Renderer
	certs    map[string]*certRuntime
}

type certRuntime struct {
	cert   *config.Certificate
	client providers.Client
	state  *certState
	// delivered are its metric series for the outcome nearly every send
	// has, looked up on first use and not per send: the lookup hashes
	// three labels each time, 3% of BenchmarkNotification's CPU.
	delivered func() deliveredSeries
}

type deliveredSeries struct {
	deliveries prometheus.Counter
	call       prometheus.Observer
}

func (e *Engine) newCertRuntime(cert *config.Certificate, client providers.Client, st *certState) *certRuntime {
	prov := string(cert.Provider)
	return &certRuntime{cert: cert, client: client, state: st, delivered: sync.OnceValue(func() deliveredSeries {
		return deliveredSeries{
			deliveries: e.metrics.deliveries.WithLabelValues(prov, cert.Name, string(Delivered)),
			call:       e.metrics.callDuration.WithLabelValues(prov, cert.Name, providers.Delivered.String()),
		}
	})}
}

func (s *snapshot) providerOf(name string) (config.Provider, bool) {
	c, ok := s.certs[name]
	if !ok {
		return "", false
	}
	return c.cert.Provider, true
}

// SetConfig swaps in a config and its clients (keyed by certificate name)
// atomically. A certificate without a client is treated as absent: its
// bindings are not used. On error (the policy's templates do not parse) the
// previous config stays.
func (e *Engine) SetConfig(cfg *config.Config, clients map[string]providers.Client) error {
	c := cfg.WithDefaults()
	c.Certificates = append([]config.Certificate(nil), cfg.Certificates...)
	renderer, err := policy.NewRenderer(&c.Policy)
	if err != nil {
		return fmt.Errorf("tenant %s policy: %w", c.Tenant, err)
	}
	now := e.clock.Now()
	snap := &snapshot{cfg: &c, renderer: renderer, certs: map[string]*certRuntime{}}
	bc := breakerConfig{Window: e.opts.BreakerWindow, MinAnswers: e.opts.BreakerMinAnswers, InvalidRatio: e.opts.BreakerInvalidRatio}

	e.mu.Lock()
	defer e.mu.Unlock()
	for i := range c.Certificates {
		cert := &c.Certificates[i]
		client := clients[cert.Name]
		if client == nil {
			continue
		}
		st := e.certs[cert.Name]
		if st == nil {
			st = newCertState(cert.Name, bc)
			e.certs[cert.Name] = st
		}
		st.configure(cert, c.Replicas, now)
		snap.certs[cert.Name] = e.newCertRuntime(cert, client, st)
		e.ensurePool(cert.Provider)
	}
	for name := range e.certs {
		if _, ok := snap.certs[name]; !ok {
			delete(e.certs, name)
			e.metrics.paused.DeleteLabelValues(name)
			e.metrics.suspect.DeleteLabelValues(name)
		}
	}
	e.state.Store(snap)
	return nil
}

// ensurePool starts a provider's workers once. Pools stay for the engine's
// life: jobs may still be routed to them after their certificates go.
// Called with e.mu held.
func (e *Engine) ensurePool(p config.Provider) {
	if _, ok := e.pools[p]; ok || e.stopped {
		return
	}
	// Capacity QueueSize: at most QueueSize jobs exist, so a send to a pool
	// never blocks.
	pl := &pool{provider: p, jobs: make(chan *job, e.opts.QueueSize), fixed: e.opts.Workers,
		queueWait:   e.metrics.queueWait.WithLabelValues(string(p)),
		sendLatency: e.metrics.sendLatency.WithLabelValues(string(p))}
	if w := e.opts.ProviderWorkers[p]; w > 0 {
		pl.fixed = w
	}
	e.pools[p] = pl
	n := DefaultWorkers
	if pl.fixed > 0 {
		n = pl.fixed
	} else {
		pl.lim = newLimiter(DefaultMinWorkers, IdleWorkers, n)
	}
	pl.target.Store(int32(n))
	e.metrics.workers.WithLabelValues(string(p)).Set(float64(n))
	e.grow(pl, n)
}

// Ready reports whether Submit can accept: a config is set and Drain has
// not started.
func (e *Engine) Ready() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.state.Load() != nil && !e.draining
}

// Submit decides and queues n; see the package comment. It does not block on
// providers, only on reading the recipients from the store and, while the
// queue is full, on room for up to QueueWait.
func (e *Engine) Submit(n *policy.Notification) (Receipt, error) {
	if n == nil || n.ID == "" {
		return Receipt{}, ErrInvalidNotification
	}
	snap := e.state.Load()
	if snap == nil {
		return Receipt{}, ErrNotReady
	}
	if r, err := e.admit(n.ID, len(n.Recipients)); r != nil || err != nil {
		return dup(r), err
	}

	now := e.clock.Now()
	rec := newRecord(Receipt{ID: n.ID, AcceptedAt: now})
	// Sized for one delivery per recipient, so that a group message does
	// not grow them step by step.
	jobs := make([]*job, 0, len(n.Recipients))
	seen := make(map[string]bool, len(n.Recipients))
	rec.reserve(len(n.Recipients))
	// One data map for every recipient's deliveries, not one each.
	data := policy.Data(n)
	for _, r := range n.Recipients {
		if seen[r.UserID] {
			continue
		}
		seen[r.UserID] = true
		// No deadline: Get reads the store's cache and does not block
		// (store.Store), and a timeout context per notification was 2% of
		// the dispatcher's own CPU per notification (BenchmarkNotification).
		user, err := e.store.Get(e.ctx, r.UserID)
		if errors.Is(err, store.ErrInvalidUser) {
			rec.add(DeviceOutcome{User: r.UserID, State: Skipped, Reason: ReasonInvalidUser})
			continue
		}
		if err != nil {
			return Receipt{}, fmt.Errorf("reading user %q: %w", r.UserID, err)
		}
		d := policy.Decide(snap.renderer, policy.Input{Notification: n, Recipient: r, User: user, ProviderOf: snap.providerOf, Now: now, Data: data})
		for _, err := range d.RenderErrors {
			e.log.V(1).Info("template failed, default text used", "notification", n.ID, "error", err.Error())
		}
		for _, s := range d.Skipped {
			rec.add(DeviceOutcome{User: r.UserID, Device: s.DeviceID, State: Skipped, Reason: string(s.Reason)})
		}
		for k := range d.Deliveries {
			dl := &d.Deliveries[k]
			b := dl.Bindings[0]
			idx := rec.add(DeviceOutcome{User: r.UserID, Device: dl.DeviceID, Certificate: b.CertificateName, Provider: b.Provider, State: Pending})
			jobs = append(jobs, &job{rec: rec, idx: idx, user: r.UserID, device: dl.DeviceID, bindings: dl.Bindings, msg: &dl.Message})
		}
	}
	rec.receipt.Deliveries = len(jobs)
	rec.receipt.Skipped = len(rec.outcomes) - len(jobs)
	rec.seal(len(jobs))

	e.mu.Lock()
	defer e.mu.Unlock()
	if e.draining {
		return Receipt{}, ErrDraining
	}
	e.evict(now, 1)
	if old := e.records[n.ID]; old != nil {
		return dup(old), nil
	}
	if int(e.pending.Load())+len(jobs) > e.opts.QueueSize {
		e.metrics.dropped.WithLabelValues(ReasonQueueFull).Add(float64(len(jobs)))
		return Receipt{}, ErrQueueFull
	}
	e.records[n.ID] = rec
	e.order = append(e.order, rec)
	e.pending.Add(int64(len(jobs)))
	e.metrics.accepted.Inc()
	e.metrics.deliveriesAccepted.Add(float64(len(jobs)))
	e.metrics.skipped().Add(float64(rec.receipt.Skipped))
	for _, j := range jobs {
		e.routeLocked(j)
	}
	return rec.receipt, nil
}

// existing returns the record of id if it is known, or the error Submit
// must return before doing any work: ErrQueueFull when the queue has less
// room than recipients. Each recipient normally yields at least one
// delivery, and refusing here costs nothing, whereas finding the queue full
// after reading every recipient from the store and running the policy
// would spend the CPU the queue's workers need exactly when it is short
// (a 500-recipient group message under overload). A notification that would
// have needed fewer deliveries than recipients may so be refused while the
// queue is nearly full; the caller retries it like any 429.
func (e *Engine) existing(id string, recipients int) (*record, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.draining {
		return nil, ErrDraining
	}
	e.evict(e.clock.Now(), 0)
	if r := e.records[id]; r != nil {
		return r, nil
	}
	if int(e.pending.Load())+recipients > e.opts.QueueSize {
		return nil, ErrQueueFull
	}
	return nil, nil
}

// admit is existing, waiting up to QueueWait for room while the queue is
// full. Under overload the queue is full most of the time, and each
// refusal costs the client a retry and the dispatcher another request to
// read and answer: in `make bench`'s group windows nine in ten requests
// were refused, each a body of 500 recipients read for nothing. A
// notification that can never fit (more recipients than the queue holds)
// is refused at once.
func (e *Engine) admit(id string, recipients int) (*record, error) {
	r, err := e.existing(id, recipients)
	if errors.Is(err, ErrQueueFull) && e.opts.QueueWait > 0 && recipients <= e.opts.QueueSize {
		r, err = e.waitForRoom(id, recipients)
	}
	if errors.Is(err, ErrQueueFull) {
		e.metrics.dropped.WithLabelValues(ReasonQueueFull).Add(float64(recipients))
	}
	return r, err
}

func (e *Engine) waitForRoom(id string, recipients int) (*record, error) {
	// Counted as waiting before the first check, so that a delivery ending
	// after that check signals it.
	e.roomWaiters.Add(1)
	defer e.roomWaiters.Add(-1)
	deadline := time.NewTimer(e.opts.QueueWait)
	defer deadline.Stop()
	for {
		e.roomMu.Lock()
		freed := e.roomFreed
		e.roomMu.Unlock()
		r, err := e.existing(id, recipients)
		if !errors.Is(err, ErrQueueFull) {
			return r, err
		}
		select {
		case <-freed:
		case <-deadline.C:
			return e.existing(id, recipients)
		}
	}
}

// signalRoom wakes the notifications waiting for room (admit).
func (e *Engine) signalRoom() {
	e.roomMu.Lock()
	close(e.roomFreed)
	e.roomFreed = make(chan struct{})
	e.roomMu.Unlock()
}

// Room is how many more device deliveries the queue takes now.
func (e *Engine) Room() int {
	return e.opts.QueueSize - int(e.pending.Load())
}

// Admit is Submit's first check alone, for a caller that has not decoded
// the notification yet: ErrQueueFull if recipients do not fit in the queue
// within QueueWait, ErrDraining while draining, nil if it may be accepted
// or id was accepted already (Submit then answers its receipt).
func (e *Engine) Admit(id string, recipients int) error {
	_, err := e.admit(id, recipients)
	return err
}

func dup(r *record) Receipt {
	if r == nil {
		return Receipt{}
	}
	rc := r.receipt
	rc.Duplicate = true
	return rc
}

// evict forgets the oldest records so that room more fit within the size
// bound, and those older than the window once they are done. Called with
// e.mu held.
func (e *Engine) evict(now time.Time, room int) {
	for len(e.order) > 0 {
		r := e.order[0]
		over := len(e.order)+room > e.opts.IdempotencyMax
		old := now.Sub(r.receipt.AcceptedAt) > e.opts.IdempotencyWindow && r.isDone()
		if !over && !old {
			return
		}
		e.order[0] = nil
		e.order = e.order[1:]
		if e.records[r.receipt.ID] == r {
			delete(e.records, r.receipt.ID)
		}
	}
}

// Status returns the outcomes of notification id, if it is still known.
func (e *Engine) Status(id string) (Status, bool) {
	e.mu.Lock()
	r := e.records[id]
	e.mu.Unlock()
	if r == nil {
		return Status{}, false
	}
	return r.status(), true
}

// Wait blocks until every outcome of notification id is final or ctx ends,
// and returns the status then (with ctx's error if it ended first).
func (e *Engine) Wait(ctx context.Context, id string) (Status, error) {
	e.mu.Lock()
	r := e.records[id]
	e.mu.Unlock()
	if r == nil {
		return Status{}, ErrNotFound
	}
	select {
	case <-r.doneChan():
		return r.status(), nil
	case <-ctx.Done():
		return r.status(), ctx.Err()
	}
}

// closeIdleLocked closes idle for Drain once it drains and nothing is
// held. Called with e.mu held.
func (e *Engine) closeIdleLocked() {
	if e.draining && !e.idleClosed && e.pending.Load() == 0 {
		e.idleClosed = true
		close(e.idle)
	}
}

// Drain stops accepting (Submit answers ErrDraining), lets queued, retrying
// and in-flight deliveries finish until ctx ends, then aborts calls in flight,
// marks every delivery left dropped (reason Shutdown), stops all goroutines
// and returns how many were dropped. Later calls wait for the first and
// return 0.
func (e *Engine) Drain(ctx context.Context) int {
	e.mu.Lock()
	if e.draining {
		e.mu.Unlock()
		<-e.drained
		return 0
	}
	e.draining = true
	e.closeIdleLocked()
	e.mu.Unlock()
	e.signalRoom() // waiters for room answer ErrDraining

	select {
	case <-e.idle:
	case <-ctx.Done():
	}
	e.cancel()
	e.mu.Lock()
	e.stopped = true
	e.mu.Unlock()
	close(e.stop)
	e.wg.Wait()

	// Only this goroutine is left; whatever is still queued or waiting
	// is dropped.
	for _, pl := range e.pools {
		for len(pl.jobs) > 0 {
			e.finish(<-pl.jobs, Dropped, ReasonShutdown, "")
		}
	}
	for _, d := range e.delays {
		if d.job != nil {
			e.finish(d.job, Dropped, ReasonShutdown, "")
		}
	}
	e.delays = nil
	dropped := int(e.shutdownDrops.Load())
	if dropped > 0 {
		e.log.Info("dropped deliveries at shutdown", "count", dropped)
	} else {
		e.log.Info("drained with nothing dropped")
	}
	close(e.drained)
	return dropped
}
