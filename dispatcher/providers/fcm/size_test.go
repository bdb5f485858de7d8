package fcm

import (
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/imcloud/im-push-operator/dispatcher/providers"
)

// TestSizeBoundHolds: for messages as Client.message builds them, with the
// strings JSON expands most (control characters, HTML characters, invalid
// UTF-8), sizeBound is never below the encoded size, so the fast path of
// fitNotification never lets an oversize message through.
func TestSizeBoundHolds(t *testing.T) {
	now := time.Date(2026, 12, 5, 8, 0, 0, 0, time.UTC)
	c := &Client{now: func() time.Time { return now }}
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []string{"a", "\x01", "<", "\"", "\\", "\xff", "消", "\u2028"}
	worst := false // strings of only '<', which JSON writes as 6 bytes
	str := func(max int) string {
		var b strings.Builder
		for range rng.IntN(max + 1) {
			if worst {
				b.WriteByte('<')
				continue
			}
			b.WriteString(alphabet[rng.IntN(len(alphabet))])
		}
		return b.String()
	}
	badge := 99999
	fast := 0
	for i := range 3000 {
		worst = i%3 == 0
		m := &providers.Message{
			ID: str(80), Token: str(200), Title: str(60), Body: str(200), Sound: str(20), ThreadID: str(20),
			CollapseKey: str(70), Expiration: now.Add(time.Duration(rng.IntN(1e6)) * time.Second), Badge: &badge,
			Data: map[string]string{str(10): str(40), str(10): str(40)},
		}
		if i%2 == 0 {
			m.Badge, m.Expiration = nil, time.Time{}
		}
		msg := c.message(m)
		raw, err := json.Marshal(msg)
		if err != nil {
			t.Fatal(err)
		}
		bound := sizeBound(msg, msg.Notification.Title, msg.Notification.Body)
		if bound < len(raw) {
			t.Fatalf("bound %d below the encoded size %d for %q", bound, len(raw), raw)
		}
		if bound <= maxPayload {
			fast++
		}
	}
	if fast == 0 {
		t.Error("no message took the fast path: the bound is too loose to help")
	}
}

// TestFixedJSONCoversTheStructure: with every string one byte long (so each
// field's name is written) and the numbers at their widest, the encoding is
// within fixedJSON; longer strings add at most 6 bytes per byte, which
// sizeBound counts, so it bounds every message.
func TestFixedJSONCoversTheStructure(t *testing.T) {
	now := time.Date(2026, 12, 5, 8, 0, 0, 0, time.UTC)
	c := &Client{now: func() time.Time { return now }}
	badge := -1 << 62
	msg := c.message(&providers.Message{
		ID: "i", Token: "t", Title: "t", Body: "b", Sound: "s", ThreadID: "h", CollapseKey: "c",
		Badge: &badge, Expiration: now.Add(100 * 365 * 24 * time.Hour), Data: map[string]string{"k": "v"},
	})
	raw, err := json.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) > fixedJSON {
		t.Errorf("%d bytes with one-byte strings, above fixedJSON %d: %s", len(raw), fixedJSON, raw)
	}
	t.Logf("%d bytes with one-byte strings: %s", len(raw), raw)
}
