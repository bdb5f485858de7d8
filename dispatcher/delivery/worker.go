package delivery

import (
	"context"
	"net/http/httptrace"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/imcloud/im-push-operator/dispatcher/config"

	"github.com/imcloud/im-push-operator/dispatcher/policy"
	"github.com/imcloud/im-push-operator/dispatcher/providers"
)

// job is one device delivery. Exactly one goroutine owns it at a time: a
// pool queue, a worker, the delay heap, or Drain at the end.
type job struct {
	rec      *record
	idx      int
	user     string
	device   string
	bindings []policy.Binding
	// msg is the policy's Delivery.Message, this job's alone; each attempt
	// sets its binding's token in it.
	msg *providers.Message
	// bi is the binding being tried.
	bi       int
	attempts int
	// reserved: the rate limiter already granted this job's next send.
	reserved bool
	// called: a provider call was made for this job (queue wait observed).
	called bool
}

func (j *job) binding() policy.Binding { return j.bindings[j.bi] }

// pool is one provider's queue and its workers.
type pool struct {
	provider config.Provider
	jobs     chan *job
	// fixed > 0: that many workers, never resized.
	fixed int
	// lim adapts the workers below the stream limits; nil when fixed.
	lim *limiter
	// running workers converge on target: resize starts more, and workers
	// beyond it exit after their job.
	running  atomic.Int32
	target   atomic.Int32
	sized    atomic.Bool
	attempts atomic.Uint32
	// busy counts the sends in flight, for the limiter.
	busy atomic.Int32
	// maxWorkers is the cap from the stream limits (0 until known).
	maxWorkers atomic.Int32
	// queueWait and sendLatency are the provider's histogram children,
	// looked up once and not per delivery.
	queueWait, sendLatency prometheus.Observer
}

// sendTrace observes when a worker's provider call has written its request
// to the connection: the client libraries send through net/http or
// x/net/http2, which call httptrace's WroteRequest from the context. With
// acceptance it gives the latency the dispatcher adds before the provider's
// own round trip (impush_dispatcher_send_latency_seconds). One per worker,
// reused for every call, so a call allocates nothing for it.
//
// It observes in the hook, not after the call returns: both libraries call
// WroteRequest after flushing the request, on the goroutine that wrote it,
// and the answer can reach the caller first.
type sendTrace struct {
	clock    Clock
	observer prometheus.Observer
	// accepted is the acceptance (UnixNano) of the delivery whose first
	// call this is, 0 when its write is not to be observed (a retry, or
	// observed already). The first write observes it: a vendor client that
	// fetches its access token with the call's context (about hourly) has
	// that request observed instead of the send. A write
	// reported so late that the worker has started another first call
	// takes that call's acceptance; such an observation is off, and is
	// counted as zero when it would be negative.
	accepted atomic.Int64
	// ctx is the engine's context carrying the trace.
	ctx context.Context
}

func (e *Engine) newSendTrace(p *pool) *sendTrace {
	st := &sendTrace{clock: e.clock, observer: p.sendLatency}
	st.ctx = httptrace.WithClientTrace(e.ctx, &httptrace.ClientTrace{WroteRequest: st.wroteRequest})
	return st
}

func (st *sendTrace) wroteRequest(info httptrace.WroteRequestInfo) {
	if info.Err != nil {
		return
	}
	if at := st.accepted.Swap(0); at != 0 {
		st.observer.Observe(max(0, time.Duration(st.clock.Now().UnixNano()-at)).Seconds())
	}
}

// resizeEvery: a pool re-reads its clients' stream limits every this many
// attempts, and after every attempt until a limit is known (the first
// connection's SETTINGS arrive with its first answer).
const resizeEvery = 512

func (e *Engine) worker(p *pool) {
	defer e.wg.Done()
	st := e.newSendTrace(p)
	idle := time.NewTimer(e.opts.IdleWorkerTimeout)
	defer idle.Stop()
	for {
		select {
		case <-e.stop:
			return
		case <-idle.C:
			if p.fixed == 0 && e.leaveIdle(p) {
				return
			}
			idle.Reset(e.opts.IdleWorkerTimeout)
			continue
		case j := <-p.jobs:
			e.attempt(p, j, st)
		}
		idle.Reset(e.opts.IdleWorkerTimeout)
		if p.fixed == 0 && (!p.sized.Load() || p.attempts.Add(1)%resizeEvery == 0) {
			e.resize(p)
		}
		if p.shrink() {
			return
		}
	}
}

// shrink reports whether this worker is one too many and leaves.
func (p *pool) shrink() bool {
	for {
		r := p.running.Load()
		if r <= p.target.Load() {
			return false
		}
		if p.running.CompareAndSwap(r, r-1) {
			return true
		}
	}
}

// leaveIdle reports whether an idle worker of p leaves: while more than
// IdleWorkers run and no job waits. Its pool's target stays, and the pool
// grows back to it as jobs queue (routeLocked). Under e.mu, which
// routeLocked holds while it queues a job and counts the workers: a job
// queued before keeps this worker (whose timer may have won the select
// against it), and one queued after sees it gone and starts another, so a
// job is never left queued for workers that are all busy.
func (e *Engine) leaveIdle(p *pool) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(p.jobs) == 0 && p.leaveIdle()
}

// leaveIdle takes one worker off running while more than IdleWorkers run.
func (p *pool) leaveIdle() bool {
	for {
		r := p.running.Load()
		if r <= IdleWorkers {
			return false
		}
		if p.running.CompareAndSwap(r, r-1) {
			return true
		}
	}
}

// grow starts workers until n are running. Called by a running worker or
// under e.mu before Drain stops the engine, so the WaitGroup is never at
// zero here.
func (e *Engine) grow(p *pool, n int) {
	for {
		r := p.running.Load()
		if int(r) >= n {
			return
		}
		if p.running.CompareAndSwap(r, r+1) {
			e.wg.Add(1)
			go e.worker(p)
		}
	}
}

// resize caps the pool's workers at the sum of the stream limits its
// provider's clients report, at most MaxWorkers, and sets them to the
// limiter's allowance below that; nothing changes while no client reports
// a limit.
func (e *Engine) resize(p *pool) {
	snap := e.state.Load()
	if snap == nil {
		return
	}
	limit := 0
	for _, c := range snap.certs {
		if c.cert.Provider != p.provider {
			continue
		}
		if sl, ok := c.client.(providers.StreamLimited); ok {
			limit += sl.MaxConcurrentStreams()
		}
	}
	if limit <= 0 {
		return
	}
	c := min(limit, e.opts.MaxWorkers)
	p.sized.Store(true)
	if old := p.maxWorkers.Swap(int32(c)); old != int32(c) {
		e.metrics.maxWorkers.WithLabelValues(string(p.provider)).Set(float64(c))
		e.log.V(1).Info("capped provider workers at the HTTP/2 stream limit", "provider", string(p.provider), "streams", limit, "maxWorkers", c)
	}
	e.setTarget(p, p.lim.setCap(c))
}

// setTarget makes n the pool's workers: more start now, and workers beyond
// n leave after their current job.
func (e *Engine) setTarget(p *pool, n int) {
	if old := p.target.Swap(int32(n)); int(old) != n {
		e.metrics.workers.WithLabelValues(string(p.provider)).Set(float64(n))
	}
	select {
	case <-e.stop:
	default:
		e.grow(p, n)
	}
}

// answered reports whether an outcome is the provider's answer to the
// send, whose round trip the limiter can use: not a transport failure or
// a throttling answer, which say nothing about queueing here.
func answered(o providers.Outcome) bool {
	return o != providers.Retry && o != providers.QuotaExceeded
}

// route queues j for the provider of its current binding.
func (e *Engine) route(j *job) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.routeLocked(j)
}

func (e *Engine) routeLocked(j *job) {
	// The pool exists: bindings are resolved against a config whose
	// providers all got pools before it was published, and pools stay.
	p := e.pools[j.binding().Provider]
	p.jobs <- j
	if p.lim != nil && len(p.jobs) > 0 && p.lim.below.Load() && !e.stopped {
		// A quiet pool's limit follows its use, below the floor; a job
		// that waits restores the floor before any answer comes back.
		if n, changed := p.lim.backlog(); changed {
			e.setTarget(p, n)
		}
	}
	// Workers that left while idle come back as jobs wait for them, up to
	// the target; e.mu is held, so Drain has not stopped the engine when
	// stopped is false.
	if r, t := p.running.Load(), p.target.Load(); r < t && !e.stopped {
		if waiting := int32(len(p.jobs)); waiting > 0 {
			e.grow(p, int(min(t, r+waiting)))
		}
	}
}

// attempt makes one send of j, from pool p, with the worker's trace st, or
// decides it cannot be made now.
func (e *Engine) attempt(p *pool, j *job, st *sendTrace) {
	if e.ctx.Err() != nil {
		e.finish(j, Dropped, ReasonShutdown, "")
		return
	}
	snap := e.state.Load()
	now := e.clock.Now()
	if !now.Before(j.msg.Expiration) {
		e.fail(j, ReasonExpired, "")
		return
	}
	b := j.binding()
	c := snap.certs[b.CertificateName]
	if c == nil {
		e.giveUp(j, ReasonCertificateRemoved, "")
		return
	}
	adm := c.state.admit(now, j)
	if !adm.pausedUntil.IsZero() {
		if adm.newlyPaused {
			e.paused(c, adm.pausedUntil, "DailyCap")
		}
		e.waitPause(j, adm.pausedUntil, ReasonQuotaExceeded)
		return
	}
	if adm.delay > 0 {
		e.later(j, now.Add(adm.delay))
		return
	}

	if !j.called {
		j.called = true
		p.queueWait.Observe(now.Sub(j.rec.receipt.AcceptedAt).Seconds())
		st.accepted.Store(j.rec.receipt.AcceptedAt.UnixNano())
	} else {
		st.accepted.Store(0)
	}
	// In place, not a copy per attempt: a copy escapes to the heap through
	// the Client interface, a quarter of a kilobyte per send.
	j.msg.Token = b.Token
	ctx, cancel := context.WithTimeout(st.ctx, e.opts.CallTimeout)
	p.busy.Add(1)
	res := c.client.Send(ctx, j.msg)
	inflight := int(p.busy.Add(-1)) + 1
	cancel()
	end := e.clock.Now()
	prov, cert := string(c.cert.Provider), c.cert.Name
	// The cached series only when the job's binding names this
	// certificate's provider, as finish's labels do.
	cached := res.Outcome == providers.Delivered && b.Provider == c.cert.Provider
	if cached {
		c.delivered().call.Observe(end.Sub(now).Seconds())
	} else {
		e.metrics.callDuration.WithLabelValues(prov, cert, res.Outcome.String()).Observe(end.Sub(now).Seconds())
	}
	if p.lim != nil && answered(res.Outcome) {
		if n, changed := p.lim.observe(end, end.Sub(now), inflight, len(p.jobs)); changed {
			e.setTarget(p, n)
		}
	}
	if res.Outcome != providers.QuotaExceeded {
		j.attempts++
	}
	j.rec.attempted(j.idx, cert, c.cert.Provider, j.attempts, res.Reason)
	if e.ctx.Err() != nil && res.Outcome == providers.Retry {
		e.finish(j, Dropped, ReasonShutdown, res.Reason)
		return
	}

	open, changed := c.state.answer(end, res.Outcome == providers.DropToken)
	if changed {
		if open {
			e.metrics.suspect.WithLabelValues(cert).Set(1)
			e.log.Info("most answers say tokens are invalid; suspecting the credential and keeping tokens",
				"certificate", cert, "provider", prov)
		} else {
			e.metrics.suspect.WithLabelValues(cert).Set(0)
			e.log.Info("token-invalid answers back to normal; removing invalid tokens again", "certificate", cert, "provider", prov)
		}
	}

	switch res.Outcome {
	case providers.Delivered:
		if cached {
			e.end(j, Delivered, "", res.Reason, c.delivered().deliveries)
			return
		}
		e.finish(j, Delivered, "", res.Reason)
	case providers.Retry:
		e.retry(j, snap, res, end)
	case providers.DropToken:
		if open {
			e.giveUp(j, ReasonCredentialSuspect, res.Reason)
			return
		}
		e.removeToken(j, c, now, res)
		e.giveUp(j, ReasonTokenInvalid, res.Reason)
	case providers.BadCredentials:
		e.log.Info("provider rejected the credential", "certificate", cert, "provider", prov, "reason", res.Reason, "error", errString(res.Err))
		e.giveUp(j, ReasonBadCredentials, res.Reason)
	case providers.BadMessage:
		e.fail(j, ReasonBadMessage, res.Reason)
	case providers.QuotaExceeded:
		until, extended := c.state.pause(end, res.ResumeAt)
		if extended {
			e.paused(c, until, res.Reason)
		}
		e.waitPause(j, until, ReasonQuotaExceeded)
	default:
		e.fail(j, ReasonUnknownOutcome, res.Reason)
	}
}

// removeToken deletes the binding only if it is still the token this send
// used, bound no later than the send started: a device that re-registered
// meanwhile keeps its new binding.
func (e *Engine) removeToken(j *job, c *certRuntime, start time.Time, res providers.Result) {
	b := j.binding()
	notAfter := start
	if !res.InvalidSince.IsZero() && res.InvalidSince.Before(notAfter) {
		notAfter = res.InvalidSince
	}
	ctx, cancel := context.WithTimeout(e.ctx, e.opts.CallTimeout)
	defer cancel()
	removed, err := e.store.RemoveToken(ctx, j.user, j.device, b.CertificateName, b.Token, notAfter)
	log := e.log.WithValues("user", j.user, "device", j.device, "certificate", b.CertificateName, "token", providers.ShortToken(b.Token))
	switch {
	case err != nil:
		log.Error(err, "removing invalid token")
	case removed:
		e.metrics.tokensRemoved.WithLabelValues(string(c.cert.Provider), c.cert.Name).Inc()
		log.V(1).Info("removed invalid token", "reason", res.Reason)
	default:
		log.V(1).Info("invalid token was re-bound or removed meanwhile; kept", "reason", res.Reason)
	}
}

// retry schedules j's next attempt after a transient failure, or fails it
// when attempts or time have run out.
func (e *Engine) retry(j *job, snap *snapshot, res providers.Result, now time.Time) {
	p := &snap.cfg.Policy
	if j.attempts >= int(p.MaxAttempts) {
		e.fail(j, ReasonMaxAttempts, res.Reason)
		return
	}
	delay := max(e.backoff(j.attempts, p.BackoffInitial.Duration, p.BackoffMax.Duration), res.RetryAfter)
	due := now.Add(delay)
	if !due.Before(j.msg.Expiration) {
		e.fail(j, ReasonExpired, res.Reason)
		return
	}
	b := j.binding()
	e.metrics.retries.WithLabelValues(string(b.Provider), b.CertificateName).Inc()
	e.later(j, due)
}

// backoff is full jitter: uniform in [0, min(max, initial·2^(attempts-1))].
func (e *Engine) backoff(attempts int, initial, maxDelay time.Duration) time.Duration {
	ceiling := initial
	for i := 1; i < attempts && ceiling < maxDelay; i++ {
		ceiling *= 2
	}
	ceiling = min(ceiling, maxDelay)
	if ceiling <= 0 {
		return 0
	}
	e.randMu.Lock()
	defer e.randMu.Unlock()
	return time.Duration(e.rand.Int64N(int64(ceiling) + 1))
}

// waitPause handles a job whose credential is paused until until: it moves
// to the device's next binding if there is one, else waits for the resume
// unless that is past the message's expiration.
func (e *Engine) waitPause(j *job, until time.Time, reason string) {
	if j.bi+1 < len(j.bindings) {
		e.giveUp(j, reason, "")
		return
	}
	if !until.Before(j.msg.Expiration) {
		e.fail(j, reason, "")
		return
	}
	e.later(j, until)
}

// paused records that a credential was paused and arranges for the gauge to
// clear when the pause ends.
func (e *Engine) paused(c *certRuntime, until time.Time, reason string) {
	e.metrics.paused.WithLabelValues(c.cert.Name).Set(1)
	e.log.Info("credential paused by quota", "certificate", c.cert.Name, "provider", string(c.cert.Provider), "until", until, "reason", reason)
	e.push(delayed{due: until, certificate: c.cert.Name})
}

func (e *Engine) resumeCheck(name string, now time.Time) {
	e.mu.Lock()
	st := e.certs[name]
	e.mu.Unlock()
	if st != nil && !st.pausedAt(now) {
		e.metrics.paused.WithLabelValues(name).Set(0)
	}
}

// giveUp fails the current binding and moves to the next, or fails the
// device when it was the last.
func (e *Engine) giveUp(j *job, reason, providerReason string) {
	if j.bi+1 >= len(j.bindings) {
		e.fail(j, reason, providerReason)
		return
	}
	e.countFailure(j, reason)
	j.bi++
	j.reserved = false
	b := j.binding()
	j.rec.rebound(j.idx, b.CertificateName, b.Provider)
	e.route(j)
}

// fail ends the device as failed on its current binding.
func (e *Engine) fail(j *job, reason, providerReason string) {
	e.countFailure(j, reason)
	b := j.binding()
	e.log.V(1).Info("delivery failed", "notification", j.rec.receipt.ID, "user", j.user, "device", j.device,
		"certificate", b.CertificateName, "token", providers.ShortToken(b.Token), "reason", reason, "providerReason", providerReason, "attempts", j.attempts)
	e.finish(j, Failed, reason, providerReason)
}

func (e *Engine) countFailure(j *job, reason string) {
	b := j.binding()
	e.metrics.failures.WithLabelValues(string(b.Provider), b.CertificateName, reason).Inc()
}

// finish records j's final outcome. Every job passes through end exactly
// once, nearly all through finish.
func (e *Engine) finish(j *job, s State, reason, providerReason string) {
	b := j.binding()
	e.end(j, s, reason, providerReason, e.metrics.deliveries.WithLabelValues(string(b.Provider), b.CertificateName, string(s)))
}

// end is finish with the deliveries series of j's binding and state s
// already looked up.
func (e *Engine) end(j *job, s State, reason, providerReason string, deliveries prometheus.Counter) {
	deliveries.Inc()
	if s == Dropped {
		e.metrics.dropped.WithLabelValues(reason).Inc()
		e.shutdownDrops.Add(1)
	}
	// The count of held deliveries (the queue's room and its gauge) changes
	// before the record shows the outcome, so whoever saw the notification
	// done sees it too. Not under e.mu: Submit holds it while it queues a
	// group message's deliveries, and every worker ending a delivery queued
	// behind it (in BenchmarkNotification's group case, most of the engine's
	// lock waits). Drain waits for the workers before it returns, so no
	// record is settled after it.
	left := e.pending.Add(-1)
	if left == 0 {
		e.mu.Lock()
		e.closeIdleLocked()
		e.mu.Unlock()
	}
	if left%e.roomStep == 0 && e.roomWaiters.Load() > 0 {
		e.signalRoom()
	}
	j.rec.settle(j.idx, s, reason, j.attempts, providerReason)
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
