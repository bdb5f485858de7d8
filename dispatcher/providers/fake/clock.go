package fake

import (
	"sync"
	"time"
)

// Clock is a fake's clock: time.Now until a test replaces it with SetClock,
// so tests move time without sleeping. Fakes embed it; the zero value works.
type Clock struct {
	mu  sync.Mutex
	now func() time.Time
}

// SetClock replaces the clock the fake judges time by (token expiry,
// request timestamps, certificate validity).
func (c *Clock) SetClock(now func() time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = now
}

// Now reads the clock.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.now == nil {
		return time.Now()
	}
	return c.now()
}
