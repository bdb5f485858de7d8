package store

import (
	"context"
	"sync"
	"time"
)

// clock is what the write budget waits on; tests replace it.
type clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// budget is the write budget: a token bucket over the bytes of the requests
// sent, kept as the time it would be full again (GCRA). Every charge moves
// that time n/rate later and may be sent once it is at most burst/rate ahead
// of now, so the bytes of all charges allowed by time T never exceed
// burst + rate×(T − start). A charge larger than the burst just waits longer,
// so nothing is clamped or left uncounted.
type budget struct {
	clock clock
	rate  float64 // bytes per second
	tau   time.Duration

	mu   sync.Mutex
	full time.Time
}

func newBudget(c clock, bytesPerSecond, burst int64) *budget {
	return &budget{clock: c, rate: float64(bytesPerSecond), tau: seconds(float64(burst) / float64(bytesPerSecond))}
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// wait charges n bytes and returns once they may be sent. When ctx ends
// first the charge is taken back if nothing was charged after it, so a
// caller who gave up costs the others nothing; otherwise it stays spent
// (the bound then holds with room to spare).
func (b *budget) wait(ctx context.Context, n int) error {
	b.mu.Lock()
	now := b.clock.Now()
	start := b.full
	if start.Before(now) {
		start = now
	}
	full := start.Add(seconds(float64(n) / b.rate))
	b.full = full
	d := full.Sub(now) - b.tau
	b.mu.Unlock()
	if d <= 0 {
		return nil
	}
	select {
	case <-b.clock.After(d):
		return nil
	case <-ctx.Done():
		b.mu.Lock()
		if b.full.Equal(full) {
			b.full = start
		}
		b.mu.Unlock()
		return ctx.Err()
	}
}
