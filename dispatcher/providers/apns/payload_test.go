package apns

import (
	"encoding/json"
	"maps"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/sideshow/apns2/payload"

	"github.com/imcloud/im-push-operator/dispatcher/providers"
)

// TestEncodePayloadMatchesApns2Builder checks the struct encoding against
// the payload apns2's own builder makes of the same message, as JSON values
// (key order aside).
func TestEncodePayloadMatchesApns2Builder(t *testing.T) {
	zero, three := 0, 3
	tests := []struct {
		name     string
		m        providers.Message
		pushType string
	}{
		{"alert with everything", providers.Message{Title: "Alice", Body: "hi \"there\" <b>\x01", Badge: &zero, Sound: "default", ThreadID: "c-1", Data: map[string]string{"conv": "42", "z": "", "a": "ü"}}, pushTypeAlert},
		{"body only", providers.Message{Body: "hi"}, pushTypeAlert},
		{"title only, badge", providers.Message{Title: "t", Badge: &three}, pushTypeAlert},
		{"no text", providers.Message{Data: map[string]string{"k": "v"}}, pushTypeAlert},
		{"data key aps is left out", providers.Message{Title: "t", Data: map[string]string{"aps": "x", "k": "v"}}, pushTypeAlert},
		{"only aps in data", providers.Message{Title: "t", Data: map[string]string{"aps": "x"}}, pushTypeAlert},
		{"background", providers.Message{Title: "hidden", Badge: &three, Sound: "s", ThreadID: "c-2", Data: map[string]string{"k": "v"}}, pushTypeBackground},
		{"voip", providers.Message{Title: "Call", Body: "from Bob"}, pushTypeVoIP},
		{"invalid UTF-8", providers.Message{Title: "a\xffb"}, pushTypeAlert},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			data := maps.Clone(tc.m.Data)
			got := encodePayload(&tc.m, tc.pushType, tc.m.Title, tc.m.Body)
			if diff := cmp.Diff(tc.m.Data, data); diff != "" {
				t.Fatalf("encodePayload changed the shared data map (-after +before):\n%s", diff)
			}
			want, err := json.Marshal(builderPayload(&tc.m, tc.pushType))
			if err != nil {
				t.Fatal(err)
			}
			var g, w any
			if err := json.Unmarshal(got, &g); err != nil {
				t.Fatalf("encodePayload made invalid JSON %s: %v", got, err)
			}
			if err := json.Unmarshal(want, &w); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(w, g); diff != "" {
				t.Errorf("payload (-apns2 builder +encodePayload):\n%s\ngot %s", diff, got)
			}
		})
	}
}

// builderPayload is the payload as apns2's builder makes it, which the
// client used before encodePayload.
func builderPayload(m *providers.Message, pushType string) *payload.Payload {
	p := payload.NewPayload()
	if pushType == pushTypeBackground {
		p.ContentAvailable()
	} else {
		if m.Title != "" {
			p.AlertTitle(m.Title)
		}
		if m.Body != "" {
			p.AlertBody(m.Body)
		}
		if m.Badge != nil {
			p.Badge(*m.Badge)
		}
		if m.Sound != "" {
			p.Sound(m.Sound)
		}
	}
	if m.ThreadID != "" {
		p.ThreadID(m.ThreadID)
	}
	for k, v := range m.Data {
		if k != "aps" {
			p.Custom(k, v)
		}
	}
	return p
}

// BenchmarkPayload compares the struct encoding with apns2's builder on a
// typical IM message.
func BenchmarkPayload(b *testing.B) {
	m := &providers.Message{Title: "Alice", Body: "hello from the benchmark", ThreadID: "c-1", Sound: "default", Data: map[string]string{"conversationId": "c-1", "messageId": "m-1"}}
	b.Run("struct", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			encodePayload(m, pushTypeAlert, m.Title, m.Body)
		}
	})
	b.Run("apns2-builder", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal(builderPayload(m, pushTypeAlert)); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func TestCanonicalUUID(t *testing.T) {
	for s, want := range map[string]bool{
		"0f8fad5b-d9cb-469f-a165-70867728950e":   true,
		"0F8FAD5B-D9CB-469F-A165-70867728950E":   true,
		"0f8fad5b-d9cb-469f-a165-70867728950":    false, // short
		"0f8fad5b-d9cb-469f-a165-70867728950e0":  false, // long
		"0f8fad5bd-9cb-469f-a165-70867728950e":   false, // dash moved
		"0f8fad5b-d9cb-469f-a165-70867728950g":   false, // not hex
		"{0f8fad5b-d9cb-469f-a165-70867728950e}": false, // braces
		"not-a-uuid":                             false,
		"":                                       false,
	} {
		if got := canonicalUUID(s); got != want {
			t.Errorf("canonicalUUID(%q) = %v, want %v", s, got, want)
		}
	}
}
