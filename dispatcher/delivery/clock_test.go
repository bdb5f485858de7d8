package delivery

import (
	"sync"
	"testing"
	"time"
)

// fakeClock moves only when a test advances it. Tests wait for the engine to
// arm a timer (waitTimer) instead of sleeping.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	timers  map[*fakeTimer]bool
	changed chan struct{}
}

func newFakeClock(now time.Time) *fakeClock {
	return &fakeClock{now: now, timers: map[*fakeTimer]bool{}, changed: make(chan struct{})}
}

type fakeTimer struct {
	c     *fakeClock
	at    time.Time
	ch    chan time.Time
	fired bool
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) TimerAt(due time.Time) Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{c: c, at: due, ch: make(chan time.Time, 1)}
	if !due.After(c.now) {
		t.fired = true
		t.ch <- c.now
		return t
	}
	c.timers[t] = true
	c.notify()
	return t
}

func (t *fakeTimer) C() <-chan time.Time { return t.ch }

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	active := t.c.timers[t]
	delete(t.c.timers, t)
	t.c.notify()
	return active
}

// notify wakes waiters; called with mu held.
func (c *fakeClock) notify() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// Advance moves time forward and fires the timers that are due.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	for t := range c.timers {
		if !t.at.After(c.now) {
			delete(c.timers, t)
			t.ch <- c.now
		}
	}
	c.notify()
}

// waitTimer blocks until a timer is armed whose deadline is at or before
// limit and returns the earliest such deadline.
func (c *fakeClock) waitTimer(t *testing.T, limit time.Time) time.Time {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		c.mu.Lock()
		var earliest time.Time
		for tm := range c.timers {
			if !tm.at.After(limit) && (earliest.IsZero() || tm.at.Before(earliest)) {
				earliest = tm.at
			}
		}
		ch := c.changed
		c.mu.Unlock()
		if !earliest.IsZero() {
			return earliest
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("no timer armed at or before %v", limit)
		}
	}
}
