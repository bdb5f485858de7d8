package delivery

import (
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// limiter adapts how many sends a provider's pool makes at once, below the
// cap its HTTP/2 stream limits allow, in rounds of answers.
//
// Round trips first (the idea of TCP Vegas): while a round's mean stays
// within latencyTolerance of the lowest time seen recently, sends are not
// queueing anywhere, and if some waited for a worker it allows more. Once
// the mean rises past that, sends are queueing somewhere: at the provider,
// on the connection, or for this process's CPU. If none waited, it allows
// fewer, never below floor: more at once would only add goroutines, buffers
// and latency.
//
// If sends waited while the round trips queue, round trips cannot tell
// whether more at once would help: on 2 busy cores the round trips to a
// 20 ms provider doubled from this process's CPU queueing alone, and a rule
// that lowered the limit then sent fewer notifications than more at once
// did; a rule that raised it under a backlog held 1000 sends per provider in
// flight on a CPU-bound dispatcher, each a goroutine, a stream goroutine and
// buffers, for no more answers than a few hundred gave
// (docs/performance-history.md).
// So then it climbs the answer rate (perturb and observe): each round it
// moves the limit by climbStep, keeps moving the same way while the answers
// per second rise with it, turns back when they fall, and steps down when
// they do not change (as many answers with fewer sends at once) and on the
// first such round. Rounds last at least minRoundTime, so a collector cycle
// or a scheduling hiccup does not pass for the limit's effect.
//
// The floor holds only while sends wait. After a round in which none
// waited, the limit is at most twice the most sends that were in flight at
// once, down to idle: jobs go to the worker that has waited longest, so a
// pool sized for a backlog would keep every worker cycling through a
// moderate load. The first send that waits puts the limit back at the floor.
type limiter struct {
	mu sync.Mutex
	// limit is the current allowance: min(idle, cap) <= limit <= cap, and
	// at least min(floor, cap) while sends wait.
	limit, floor, idle, cap float64
	// minCur and minPrev are the lowest round trips of the current and the
	// previous minRTTWindow: the baseline follows a provider that became
	// slower for good within two windows.
	minCur, minPrev time.Duration
	windowStart     time.Time
	// The round being measured: when it started, the sum and number of its
	// round trips, and whether sends were waiting for a worker during it.
	roundStart time.Time
	sum        time.Duration
	n          int
	waiting    bool
	// peak is the most sends in flight at one answer of the round.
	peak int
	// below: the limit is under the floor (read without mu by the queue,
	// which calls backlog only then).
	below atomic.Bool
	// lastRate is the answers per second of the previous round if the
	// limit climbed after it (0 otherwise), and lastDir the way it moved:
	// the climb compares rounds pairwise.
	lastRate float64
	lastDir  float64
}

const (
	// latencyTolerance: a round whose mean round trip exceeds this many
	// times the baseline, plus latencySlack, is queueing.
	latencyTolerance = 2
	// latencySlack absorbs scheduling noise when the baseline is well
	// under a millisecond (a provider in the same cluster, the fakes).
	latencySlack = time.Millisecond
	minRTTWindow = 10 * time.Second
	// roundMin: a round is at least this many answers, and as many as the
	// limit (about one round trip of every worker), so one slow answer or a
	// collector pause does not move the limit.
	roundMin = 16
	// decrease is the factor a slow round multiplies the limit by.
	decrease = 0.9
	// minRoundTime: a round also lasts at least this long, so its answer
	// rate averages over several collector cycles' worth of noise.
	minRoundTime = 200 * time.Millisecond
	// climbStep is the fraction a climbing round moves the limit by, and
	// climbGain the change of the answer rate that counts as one: a step
	// that adds a fifth of the sends must add a twentieth of the answers.
	climbStep = 0.2
	climbGain = 0.05
)

func newLimiter(floor, idle, limit int) *limiter {
	return &limiter{limit: float64(limit), floor: float64(floor), idle: float64(idle), cap: float64(limit)}
}

// setCap sets the upper bound from the stream limits. The limit starts at
// the cap when the cap first grows (optimistic: the round trips bring it
// down if the sends queue) and never stays above it.
func (l *limiter) setCap(c int) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if float64(c) > l.cap && l.limit == l.cap {
		l.limit = float64(c)
	}
	l.cap = float64(c)
	l.limit = min(l.limit, l.cap)
	return int(l.limit)
}

// roundSize is the number of answers a round averages at limit.
func roundSize(limit int) int { return max(roundMin, limit) }

// current is the limit now.
func (l *limiter) current() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return int(l.limit)
}

// observe records one answer's round trip, how many sends were in flight
// with it (itself included) and how many were waiting for a worker when it
// came; it returns the limit and whether it changed, at the end of a round
// or when sends wait with the limit below the floor.
func (l *limiter) observe(now time.Time, rtt time.Duration, inflight, queued int) (int, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	old := int(l.limit)
	if queued > 0 {
		l.backlogLocked()
	}
	if now.Sub(l.windowStart) >= minRTTWindow {
		l.minPrev, l.minCur, l.windowStart = l.minCur, rtt, now
	} else if rtt < l.minCur {
		l.minCur = rtt
	}
	if l.roundStart.IsZero() {
		// The first round began when its first send was made.
		l.roundStart = now.Add(-rtt)
	}
	l.sum += rtt
	l.n++
	l.peak = max(l.peak, inflight)
	elapsed := now.Sub(l.roundStart)
	if l.n < roundSize(int(l.limit)) || elapsed < minRoundTime {
		return int(l.limit), int(l.limit) != old
	}
	mean := l.sum / time.Duration(l.n)
	base := l.minCur
	if l.minPrev > 0 && l.minPrev < base {
		base = l.minPrev
	}
	queueing := mean > latencyTolerance*base+latencySlack
	if queueing && l.waiting {
		l.climb(float64(l.n) / elapsed.Seconds())
	} else {
		l.lastRate, l.lastDir = 0, 0
		switch {
		case queueing:
			l.limit = l.lower(l.limit * decrease)
		case l.waiting:
			l.limit = min(l.cap, l.limit+max(1, math.Sqrt(l.limit)))
		}
	}
	if !l.waiting {
		// What was used, and as much again for a rate that rises.
		l.limit = max(min(l.idle, l.cap), min(l.limit, float64(2*l.peak)))
	}
	l.roundStart, l.sum, l.n, l.waiting, l.peak = now, 0, 0, false, 0
	l.below.Store(l.limit < l.lower(0))
	return int(l.limit), int(l.limit) != old
}

// backlog records that sends wait for a worker: below the floor the limit
// goes back to it now, not a round later. It returns the limit and whether
// it changed.
func (l *limiter) backlog() (int, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	old := int(l.limit)
	l.backlogLocked()
	return int(l.limit), int(l.limit) != old
}

func (l *limiter) backlogLocked() {
	l.waiting = true
	if l.limit < l.lower(0) {
		l.limit = l.lower(0)
		l.below.Store(false)
	}
}

// climb moves the limit after a round of queueing answers, with sends
// waiting, that came at rate per second: the way the previous move went
// while the rate rose with it, back when it fell, and down when it stayed
// (fewer sends for the same answers) or on the first such round.
func (l *limiter) climb(rate float64) {
	dir := -1.0
	switch {
	case l.lastRate == 0:
	case rate > l.lastRate*(1+climbGain):
		dir = l.lastDir
	case rate < l.lastRate*(1-climbGain):
		dir = -l.lastDir
	}
	// At a bound only the other way can be tried.
	switch {
	case dir < 0 && l.limit <= l.lower(0):
		dir = 1
	case dir > 0 && l.limit >= l.cap:
		dir = -1
	}
	if dir > 0 {
		l.limit = min(l.cap, l.limit*(1+climbStep)+1)
	} else {
		l.limit = l.lower(l.limit * (1 - climbStep))
	}
	l.lastRate, l.lastDir = rate, dir
}

// lower is limit, but not below the floor (or the cap when that is lower).
func (l *limiter) lower(limit float64) float64 {
	return max(min(l.floor, l.cap), limit)
}
