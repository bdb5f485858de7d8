package main

import (
	"math"
	"runtime/debug"
	"testing"
)

func TestSetMemoryLimitFromRequest(t *testing.T) {
	before := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(before) })
	for _, c := range []struct {
		name string
		env  map[string]string
		want int64
	}{
		{"request", map[string]string{envMemoryRequest: "134217728"}, 134217728},
		{"GOMEMLIMIT wins", map[string]string{envMemoryRequest: "134217728", "GOMEMLIMIT": "1GiB"}, 0},
		{"no request", map[string]string{}, 0},
		{"garbage", map[string]string{envMemoryRequest: "128Mi"}, 0},
	} {
		debug.SetMemoryLimit(math.MaxInt64)
		got := setMemoryLimit(func(k string) string { return c.env[k] })
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
	}
}
