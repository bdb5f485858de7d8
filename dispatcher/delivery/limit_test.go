package delivery

import (
	"slices"
	"testing"
	"time"
)

// rounds feeds the limiter n rounds of answers that all took rtt, with
// every worker busy and queued sends waiting, spread evenly over
// minRoundTime from *now, and returns the limit after them.
func rounds(l *limiter, now *time.Time, n int, rtt time.Duration, queued int) int {
	return roundsInFlight(l, now, n, rtt, -1, queued)
}

// roundsInFlight is rounds with inflight sends at each answer (-1: the
// limit's worth).
func roundsInFlight(l *limiter, now *time.Time, n int, rtt time.Duration, inflight, queued int) int {
	limit := l.current()
	for range n {
		size := roundSize(limit)
		for range size {
			*now = now.Add(minRoundTime / time.Duration(size))
			busy := inflight
			if busy < 0 {
				busy = limit
			}
			limit, _ = l.observe(*now, rtt, busy, queued)
		}
	}
	return limit
}

// waitingRounds feeds the limiter n rounds with sends waiting, its answers
// coming at rateOf(limit) per second and each taking as long as Little's
// law says for that many at once, except the first of each round, which
// takes fastest (the provider's own time: some send always meets no
// queue); it returns the limits after each round.
func waitingRounds(l *limiter, now *time.Time, n int, fastest time.Duration, rateOf func(limit int) float64) []int {
	var limits []int
	for range n {
		limit := l.current()
		rate := rateOf(limit)
		gap := time.Duration(float64(time.Second) / rate)
		rtt := fastest
		for {
			*now = now.Add(gap)
			l.observe(*now, rtt, limit, 1)
			if l.n == 0 {
				break
			}
			rtt = time.Duration(float64(limit) / rate * float64(time.Second))
		}
		limits = append(limits, l.current())
	}
	return limits
}

// oneStepBelowCap is where a climb at the cap 1000 dips to: a step down
// from the cap costs answers, so it goes back up.
const oneStepBelowCap = int(1000 * (1 - climbStep))

// inRange fails t unless every limit from the index from on lies in
// [lo, hi].
func inRange(t *testing.T, what string, limits []int, from, lo, hi int) {
	t.Helper()
	if slices.Min(limits[from:]) < lo || slices.Max(limits[from:]) > hi {
		t.Fatalf("limits %s: %v; want those from round %d within [%d, %d]", what, limits, from+1, lo, hi)
	}
}

func TestLimiterStartsAtTheCap(t *testing.T) {
	l := newLimiter(64, 16, 64)
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
// round trips, and the time after that round.
func started(c int, base time.Duration) (*limiter, time.Time) {
	l := newLimiter(64, 16, 64)
	l.setCap(c)
	now := t0
	rounds(l, &now, 1, base, 0)
	return l, now
}

func TestLimiterShrinksWhenRoundTripsQueue(t *testing.T) {
	l, now := started(1000, 20*time.Millisecond)
	// Twice the baseline plus the slack is still fine...
	if got := rounds(l, &now, 5, 40*time.Millisecond, 0); got != 1000 {
		t.Fatalf("limit at twice the baseline %d, want 1000", got)
	}
	// ...more is queueing: with nothing waiting the limit falls by a tenth
	// per round.
	if got := rounds(l, &now, 1, 60*time.Millisecond, 0); got != 900 {
		t.Fatalf("limit after one slow round %d, want 900", got)
	}
	// Never below the floor, however slow.
	if got := rounds(l, &now, 35, time.Second, 0); got != 64 {
		t.Fatalf("limit after many slow rounds %d, want the floor 64", got)
	}
}

func TestLimiterGrowsOnlyWhileSendsWait(t *testing.T) {
	l, now := started(500, time.Millisecond)
	low := rounds(l, &now, 40, 50*time.Millisecond, 0)
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

// With sends waiting, slow round trips are not trusted: the limit climbs
// while the answer rate rises with it (a provider 100 ms away), up to the
// cap, however slow the answers.
func TestLimiterClimbsWithTheAnswerRate(t *testing.T) {
	l, now := started(1000, 20*time.Millisecond)
	low := rounds(l, &now, 30, 100*time.Millisecond, 0)
	if low >= 1000 {
		t.Fatalf("limit did not fall with slow answers and nothing waiting: %d", low)
	}
	provider := func(limit int) float64 { return float64(limit) / 0.1 }
	limits := waitingRounds(l, &now, 60, 100*time.Millisecond, provider)
	if !slices.Contains(limits, 1000) {
		t.Fatalf("limits with answers rising with them %v, want them to reach the cap 1000", limits)
	}
	inRange(t, "with answers rising with them", limits, 40, oneStepBelowCap, 1000)
}

// Where the answers stop rising with the limit past a knee (the process's
// CPU, not the provider, bounds them, and its queueing makes every round
// trip far slower than the provider's 1 ms), the limit comes down from the
// cap and stays near the knee: as many answers with fewer sends, each a
// goroutine and buffers. With answers that do not rise at all, it goes down
// to the floor (and a step above it, trying). And when the provider is the
// bound again, it climbs back.
func TestLimiterStaysNearTheKnee(t *testing.T) {
	const knee = 300
	l, now := started(1000, time.Millisecond)
	limits := waitingRounds(l, &now, 100, time.Millisecond, func(limit int) float64 { return float64(min(limit, knee)) / 0.02 })
	inRange(t, "with a knee at 300", limits, 60, knee*7/10, knee*15/10)

	flat := waitingRounds(l, &now, 100, time.Millisecond, func(int) float64 { return 4000 })
	stepAboveFloor := 64*(1+climbStep) + 1
	inRange(t, "with a flat answer rate", flat, 60, 64, int(stepAboveFloor))

	up := waitingRounds(l, &now, 60, time.Millisecond, func(limit int) float64 { return float64(limit) / 0.02 })
	inRange(t, "once answers rise with them again", up, 40, oneStepBelowCap, 1000)
}

// Noise in the answer rate smaller than climbGain does not move the limit
// off the knee, and the climb finds it from the floor.
func TestLimiterClimbToleratesNoise(t *testing.T) {
	const knee = 400
	l, now := started(1000, time.Millisecond)
	l.limit = 64
	i := 0
	noisy := func(limit int) float64 {
		i++
		noise := 1 + 0.02*float64(i%3-1) // -2%, 0, +2%
		return float64(min(limit, knee)) / 0.02 * noise
	}
	limits := waitingRounds(l, &now, 120, time.Millisecond, noisy)
	inRange(t, "with a knee at 400 and ±2% noise", limits, 80, knee*7/10, knee*15/10)
}

// A provider that became slower for good sets the baseline within two
// windows, and the limit grows again at its new round trip.
func TestLimiterFollowsASlowerProvider(t *testing.T) {
	l, now := started(1000, time.Millisecond)
	rounds(l, &now, 30, 100*time.Millisecond, 0)
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
	l := newLimiter(64, 16, 64)
	if got := l.setCap(10); got != 10 {
		t.Fatalf("limit %d, want the cap 10", got)
	}
	now := t0
	if got := rounds(l, &now, 20, time.Second, 1); got != 10 {
		t.Fatalf("limit %d after slow rounds, want the cap 10", got)
	}
	if got := rounds(l, &now, 20, time.Second, 0); got != 10 {
		t.Fatalf("limit %d after slow rounds, nothing waiting, want the cap 10", got)
	}
}

// While nothing waits, the limit follows the sends in flight, with as many
// again to spare, below the floor down to idle; the first send that waits,
// in an answer or in the queue, restores the floor at once.
func TestLimiterFollowsUseWhileNothingWaits(t *testing.T) {
	l, now := started(1000, 20*time.Millisecond)
	if got := roundsInFlight(l, &now, 1, 20*time.Millisecond, 300, 0); got != 600 {
		t.Fatalf("limit after a round with 300 in flight %d, want 600", got)
	}
	// (Rounds of 600 answers end a little past minRoundTime: two calls.)
	if got := roundsInFlight(l, &now, 2, 20*time.Millisecond, 30, 0); got != 60 {
		t.Fatalf("limit after a round with 30 in flight %d, want 60, below the floor", got)
	}
	if got := roundsInFlight(l, &now, 2, 20*time.Millisecond, 3, 0); got != 16 {
		t.Fatalf("limit after a round with 3 in flight %d, want idle 16", got)
	}
	if !l.below.Load() {
		t.Fatalf("limit %d not marked below the floor", l.current())
	}
	// A send waiting in an answer: back to the floor at once.
	if got, changed := l.observe(now, 20*time.Millisecond, 16, 1); got != 64 || !changed {
		t.Fatalf("limit after an answer with a send waiting %d (changed %v), want the floor 64", got, changed)
	}
	roundsInFlight(l, &now, 3, 20*time.Millisecond, 1, 0)
	if got := l.current(); got != 16 || !l.below.Load() {
		t.Fatalf("limit %d (below %v) after quiet rounds, want 16 below the floor", got, l.below.Load())
	}
	// A send waiting in the queue: the same.
	if got, changed := l.backlog(); got != 64 || !changed || l.below.Load() {
		t.Fatalf("limit after a queued send %d (changed %v, below %v), want the floor 64", got, changed, l.below.Load())
	}
	if got, changed := l.backlog(); got != 64 || changed {
		t.Fatalf("limit after a second queued send %d (changed %v), want 64 unchanged", got, changed)
	}
}
