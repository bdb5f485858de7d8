package testenv

import (
	"testing"
	"time"
)

// Eventually polls cond every 10 ms until it holds and reports whether it
// did within timeout; when it did not, it marks t failed, naming what. It
// does not stop the test, so any goroutine may call it; the test's own
// goroutine stops with t.FailNow when it must.
func Eventually(t testing.TB, what string, timeout time.Duration, cond func() bool) bool {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Errorf("timed out after %v waiting for %s", timeout, what)
			return false
		}
		<-tick.C
	}
	return true
}
