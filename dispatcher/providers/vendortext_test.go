package providers

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestNotifyIDAndTTL(t *testing.T) {
	// FNV-1a 32 of "conv-42" is 0x560d3e44, computed outside Go:
	// python3 -c "from functools import reduce; h = reduce(lambda h, b: ((h ^ b) * 0x01000193) & 0xffffffff, b'conv-42', 0x811c9dc5); print(hex(h), h & 0x7fffffff)"
	if got := NotifyID("conv-42"); got != 1443708484 {
		t.Errorf("NotifyID(conv-42) = %d", got)
	}
	if got := CollapseKey(&Message{ID: "n-9"}); got != "n-9" {
		t.Errorf("CollapseKey without CollapseKey = %q, want the id", got)
	}
	start := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		exp  time.Time
		want string
	}{
		{time.Time{}, ""},
		{start.Add(-time.Minute), "1s"},
		{start.Add(90 * time.Second), "90s"},
		{start.Add(30 * 24 * time.Hour), "1296000s"},
	} {
		if got := TTLSeconds(tc.exp, start, 15*24*time.Hour); got != tc.want {
			t.Errorf("TTLSeconds(%v) = %q, want %q", tc.exp, got, tc.want)
		}
	}
}

func TestTruncateAndFit(t *testing.T) {
	if got := TruncateBytes("héllo", 2); got != "h" {
		t.Errorf("TruncateBytes cut inside a rune: %q", got)
	}
	if got := TruncateRunes("héllo", 2); got != "hé" {
		t.Errorf("TruncateRunes = %q", got)
	}
	v := struct{ Title, Body string }{"title", strings.Repeat("界", 100)}
	if err := FitJSON(&v, 60, &v.Body, &v.Title); err != nil {
		t.Fatal(err)
	}
	enc, _ := json.Marshal(v)
	if len(enc) > 60 || v.Title != "title" || v.Body == "" {
		t.Errorf("FitJSON gave %d bytes: %s", len(enc), enc)
	}
}

func TestCollapseID(t *testing.T) {
	for key, want := range map[string]string{
		"":                      "n-9",
		strings.Repeat("k", 64): strings.Repeat("k", 64),
		// Computed outside Go: printf 'k%.0s' $(seq 65) | sha256sum
		strings.Repeat("k", 65): "f39cdc2584758c99cf81c1f41d2572f54e17066afffc9d187aeafe5f7cbe2122",
	} {
		if got := CollapseID(&Message{ID: "n-9", CollapseKey: key}); got != want {
			t.Errorf("CollapseID(%d-byte key) = %q, want %q", len(key), got, want)
		}
	}
}
