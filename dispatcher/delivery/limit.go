package delivery

import (
	"math"
	"sync"
	"time"
)

// limiter adapts how many sends a provider's pool makes at once, below the
// cap its HTTP/2 stream limits allow, from the round-trip times of the
// provider's answers (the idea of TCP Vegas). While a round's mean stays
// within latencyTolerance of the lowest time seen recently and sends were
// waiting, it allows more; once the mean rises past that, sends are queueing
// somewhere (this process's CPU, the connection, the provider) and more of
// them at once only adds goroutines, buffers and latency, so it allows
// fewer, never below floor. Under a backlog (half the queue waiting for this
// provider) it allows more whatever the round trips say: the notifications
// are late already, and only throughput drains them.
//
// Measured on the bench (docs/performance.md): with every send allowed up
// to the 1000-stream cap, a CPU-bound dispatcher at half load held far more
// sends in flight than it needed, which cost stacks and buffers and raised
// the tail latency. Round trips alone cannot tell this process's CPU
// queueing from the provider's: on 2 busy cores the round trips to a 20 ms
// provider doubled from local CPU queueing, the limit stayed at its floor
// with the queue full, and fewer notifications were sent than with 1000 at
// once; hence the backlog rule. A floor of 64 capped a 20 ms provider at
// 3,200 sends/s, hence DefaultMinWorkers.
type limiter struct {
	mu sync.Mutex
	// limit is the current allowance: min(floor, cap) <= limit <= cap.
	limit, floor, cap float64
	// minCur and minPrev are the lowest round trips of the current and the
	// previous minRTTWindow: the baseline follows a provider that became
	// slower for good within two windows.
	minCur, minPrev time.Duration
	windowStart     time.Time
	// The round being measured: the sum and number of its round trips,
	// whether sends were waiting during it, and whether a backlog was.
	sum              time.Duration
	n                int
	waiting, backlog bool
}

const (
	// latencyTolerance: a round whose mean round trip exceeds this many
	// times the baseline, plus latencySlack, lowers the limit.
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
)

func newLimiter(floor, limit int) *limiter {
	return &limiter{limit: float64(limit), floor: float64(floor), cap: float64(limit)}
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

// observe records one answer's round trip, and how many sends were waiting
// for a worker when it came, of at most capacity; at the end of a round it
// returns the new limit and whether it changed.
func (l *limiter) observe(now time.Time, rtt time.Duration, queued, capacity int) (int, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.windowStart) >= minRTTWindow {
		l.minPrev, l.minCur, l.windowStart = l.minCur, rtt, now
	} else if rtt < l.minCur {
		l.minCur = rtt
	}
	l.sum += rtt
	l.n++
	l.waiting = l.waiting || queued > 0
	l.backlog = l.backlog || 2*queued >= capacity
	if l.n < roundSize(int(l.limit)) {
		return int(l.limit), false
	}
	mean := l.sum / time.Duration(l.n)
	base := l.minCur
	if l.minPrev > 0 && l.minPrev < base {
		base = l.minPrev
	}
	old := int(l.limit)
	switch {
	case !l.backlog && mean > latencyTolerance*base+latencySlack:
		l.limit = max(min(l.floor, l.cap), l.limit*decrease)
	case l.backlog || l.waiting:
		l.limit = min(l.cap, l.limit+max(1, math.Sqrt(l.limit)))
	}
	l.sum, l.n, l.waiting, l.backlog = 0, 0, false, false
	return int(l.limit), int(l.limit) != old
}
