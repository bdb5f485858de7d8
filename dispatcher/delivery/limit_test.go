package delivery

import (
	"testing"
	"time"
)

// testQueue is the queue capacity the tests' answers report.
const testQueue = 100

// rounds feeds the limiter n rounds of answers that all took rtt and saw
// queued sends waiting, starting at *now and 100 µs apart, and returns the
// limit after them.
func rounds(l *limiter, now *time.Time, n int, rtt time.Duration, queued int) int {
	limit := l.current()
	for range n {
		for size := roundSize(limit); size > 0; size-- {
			*now = now.Add(100 * time.Microsecond)
			limit, _ = l.observe(*now, rtt, queued, testQueue)
		}
	}
	return limit
}

func TestLimiterStartsAtTheCap(t *testing.T) {
	l := newLimiter(64, 64)
	if got := l.setCap(1000); got != 1000 {
		t.Fatalf("limit after the first cap %d, want 1000", got)
	}
	now := t0
	// Steady round trips and nobody waiting: nothing to change.
	if got := rounds(l, &now, 10, 20*time.Millisecond, 0); got != 1000 {
		t.Fatalf("limit with steady round trips %d, want 1000", got)
	}
	// A lower cap clamps the limit.
	if got := l.setCap(250); got != 250 {
		t.Fatalf("limit after a lower cap %d, want 250", got)
	}
}

// started is a limiter with floor 64 capped at c, after one round of base
// round trips with a send waiting, and the time after that round.
func started(c int, base time.Duration) (*limiter, time.Time) {
	l := newLimiter(64, 64)
	l.setCap(c)
	now := t0
	rounds(l, &now, 1, base, 1)
	return l, now
}

func TestLimiterShrinksWhenRoundTripsQueue(t *testing.T) {
	l, now := started(1000, 20*time.Millisecond)
	// Twice the baseline plus the slack is still fine...
	if got := rounds(l, &now, 5, 40*time.Millisecond, 1); got != 1000 {
		t.Fatalf("limit at twice the baseline %d, want 1000", got)
	}
	// ...more is queueing: the limit falls by a tenth per round.
	if got := rounds(l, &now, 1, 60*time.Millisecond, 1); got != 900 {
		t.Fatalf("limit after one slow round %d, want 900", got)
	}
	// Never below the floor, however slow.
	if got := rounds(l, &now, 100, time.Second, 1); got != 64 {
		t.Fatalf("limit after many slow rounds %d, want the floor 64", got)
	}
}

// Under a backlog the limit grows however slow the answers: the round trips
// may be this process's own CPU queueing, and only throughput drains it.
func TestLimiterGrowsUnderABacklog(t *testing.T) {
	l, now := started(1000, 20*time.Millisecond)
	low := rounds(l, &now, 30, 100*time.Millisecond, testQueue/2-1)
	if low >= 1000 {
		t.Fatalf("limit did not fall with slow answers and less than half the queue waiting: %d", low)
	}
	if got := rounds(l, &now, 1, 100*time.Millisecond, testQueue/2); got <= low {
		t.Fatalf("limit after a slow round with half the queue waiting %d, want more than %d", got, low)
	}
	if got := rounds(l, &now, 200, 100*time.Millisecond, testQueue); got != 1000 {
		t.Fatalf("limit after slow rounds with a full queue %d, want the cap 1000", got)
	}
}

func TestLimiterGrowsOnlyWhileSendsWait(t *testing.T) {
	l, now := started(500, time.Millisecond)
	low := rounds(l, &now, 40, 50*time.Millisecond, 1)
	if low >= 500 {
		t.Fatalf("limit did not fall: %d", low)
	}
	// Fast again, but nothing waits for a worker: no reason to grow.
	if got := rounds(l, &now, 10, time.Millisecond, 0); got != low {
		t.Fatalf("limit grew to %d without waiting sends, want %d", got, low)
	}
	// Sends waiting: it grows back, up to the cap and no further.
	if got := rounds(l, &now, 200, time.Millisecond, 1); got != 500 {
		t.Fatalf("limit after fast rounds with waiting sends %d, want the cap 500", got)
	}
}

// A provider that became slower for good sets the baseline within two
// windows, and the limit grows again at its new round trip.
func TestLimiterFollowsASlowerProvider(t *testing.T) {
	l, now := started(1000, time.Millisecond)
	rounds(l, &now, 30, 100*time.Millisecond, 1)
	if got := l.current(); got > 100 {
		t.Fatalf("limit %d after the provider slowed down, want it lowered", got)
	}
	now = now.Add(2 * minRTTWindow)
	rounds(l, &now, 1, 100*time.Millisecond, 1)
	now = now.Add(minRTTWindow)
	if got := rounds(l, &now, 300, 100*time.Millisecond, 1); got != 1000 {
		t.Fatalf("limit %d at the provider's new steady round trip, want the cap 1000", got)
	}
}

// A cap below the floor (a provider advertising few streams) wins.
func TestLimiterCapBelowFloor(t *testing.T) {
	l := newLimiter(64, 64)
	if got := l.setCap(10); got != 10 {
		t.Fatalf("limit %d, want the cap 10", got)
	}
	now := t0
	if got := rounds(l, &now, 20, time.Second, 1); got != 10 {
		t.Fatalf("limit %d after slow rounds, want the cap 10", got)
	}
}
