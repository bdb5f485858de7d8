package main

import (
	"math"
	"runtime/debug"
	"testing"
)

func TestSetMemoryLimitFromRequest(t *testing.T) {
	before := debug.SetMemoryLimit(-1)
	beforeGC := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetMemoryLimit(before); debug.SetGCPercent(beforeGC) })
	const mi = 1 << 20
	for _, c := range []struct {
		name string
		env  map[string]string
		file int64
		want int64
		// wantGC is the GOGC percent after the call (100 is the default
		// the test starts each case with).
		wantGC int
	}{
		{"request less the file pages and margin", map[string]string{envMemoryRequest: "134217728"}, 23 * mi, (128 - 23 - 8) * mi, gcPercentUnderLimit},
		{"no file pages known", map[string]string{envMemoryRequest: "134217728"}, 0, (128 - 8) * mi, gcPercentUnderLimit},
		{"at least half the request", map[string]string{envMemoryRequest: "67108864"}, 40 * mi, 32 * mi, gcPercentUnderLimit},
		{"GOGC wins over the percent, not the limit", map[string]string{envMemoryRequest: "134217728", "GOGC": "150"}, 23 * mi, (128 - 23 - 8) * mi, 100},
		{"GOMEMLIMIT wins", map[string]string{envMemoryRequest: "134217728", "GOMEMLIMIT": "1GiB"}, 23 * mi, 0, 100},
		{"no request", map[string]string{}, 23 * mi, 0, 100},
		{"garbage", map[string]string{envMemoryRequest: "128Mi"}, 23 * mi, 0, 100},
	} {
		debug.SetMemoryLimit(math.MaxInt64)
		debug.SetGCPercent(100)
		got := setMemoryLimit(func(k string) string { return c.env[k] }, c.file)
		if got != c.want {
			t.Errorf("%s: setMemoryLimit = %d, want %d", c.name, got, c.want)
		}
		want := c.want
		if want == 0 {
			want = math.MaxInt64
		}
		if rt := debug.SetMemoryLimit(-1); rt != want {
			t.Errorf("%s: runtime limit %d, want %d", c.name, rt, want)
		}
		if gc := debug.SetGCPercent(100); gc != c.wantGC {
			t.Errorf("%s: GOGC %d, want %d", c.name, gc, c.wantGC)
		}
	}
}

// TestFileResidentBytes: this test binary's own mapped pages are resident
// while it runs, so /proc/self/status reports some, and fewer than its
// whole resident set.
func TestFileResidentBytes(t *testing.T) {
	got := fileResidentBytes()
	if got < 1<<20 || got > 1<<30 {
		t.Fatalf("fileResidentBytes = %d, want between 1 MiB and 1 GiB", got)
	}
}

// TestGCPercentReadsTheRuntime: the start-up log reports the percent the
// runtime has, including off.
func TestGCPercentReadsTheRuntime(t *testing.T) {
	before := debug.SetGCPercent(gcPercentUnderLimit)
	t.Cleanup(func() { debug.SetGCPercent(before) })
	if got := gcPercent(); got != gcPercentUnderLimit {
		t.Errorf("gcPercent = %d, want %d", got, gcPercentUnderLimit)
	}
	debug.SetGCPercent(-1)
	if got := gcPercent(); got != -1 {
		t.Errorf("gcPercent with the collector off = %d, want -1", got)
	}
}
