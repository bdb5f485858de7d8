package server

import (
	"encoding/json"
	"net/http"
	"sync"
	"testing"
)

// admitting is the engine double with room in its queue: Admit refuses
// what does not fit, as delivery.Engine does, and records its calls.
type admitting struct {
	*engine
	mu     sync.Mutex
	room   int
	admits []string
}

func (a *admitting) Room() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.room
}

func (a *admitting) Admit(id string, recipients int) error {
	a.mu.Lock()
	a.admits = append(a.admits, id)
	room := a.room
	a.mu.Unlock()
	if _, known := a.Status(id); known || recipients <= room {
		return nil
	}
	return queueFull{}
}

func (a *admitting) calls() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.admits...)
}

func TestAdmitEarly(t *testing.T) {
	f := newFixture(t)
	a := &admitting{engine: f.engine, room: MaxRecipients}
	f.srv = New(Options{Store: f.store, Engine: a, Config: f.src, Token: f.src, Metrics: f.metrics, Gatherer: f.reg})
	post := func(body any) int {
		t.Helper()
		return f.do(t, http.MethodPost, "/v1/notifications", body).Code
	}

	// Room for the largest notification: no scan, no Admit.
	if code := post(notification("n1", "bob", "carol", "dave")); code != http.StatusAccepted {
		t.Fatalf("n1 with room: %d", code)
	}
	if got := a.calls(); len(got) != 0 {
		t.Fatalf("Admit called with room for MaxRecipients: %v", got)
	}

	a.mu.Lock()
	a.room = 2
	a.mu.Unlock()
	rec := f.do(t, http.MethodPost, "/v1/notifications", notification("n2", "bob", "carol", "dave"))
	expectError(t, rec, http.StatusTooManyRequests, CodeQueueFull, "")
	if got := rec.Header().Get("Retry-After"); got != "3" {
		t.Errorf("Retry-After = %q, want the engine's hint rounded up (3)", got)
	}
	if len(f.engine.submitted) != 1 {
		t.Errorf("the refused n2 reached Submit: %d submitted", len(f.engine.submitted))
	}
	if code := post(notification("n3", "bob", "carol")); code != http.StatusAccepted {
		t.Errorf("n3 fitting the room exactly: %d", code)
	}
	if got := a.calls(); len(got) != 2 || got[0] != "n2" || got[1] != "n3" {
		t.Errorf("Admit calls %v, want [n2 n3]", got)
	}

	// Room for as many recipients as the body could hold: no scan either.
	body, err := json.Marshal(notification("n5", "bob"))
	if err != nil {
		t.Fatal(err)
	}
	a.mu.Lock()
	a.room = mostRecipients(body)
	a.mu.Unlock()
	if code := post(body); code != http.StatusAccepted || len(a.calls()) != 2 {
		t.Errorf("n5 with room for its body's most recipients: %d, Admit calls %v", code, a.calls())
	}

	// A repeat of an accepted notification gets its receipt, full queue or not.
	a.mu.Lock()
	a.room = 0
	a.mu.Unlock()
	if code := post(notification("n1", "bob", "carol", "dave")); code != http.StatusAccepted {
		t.Errorf("repeat of n1 on a full queue: %d, want 202 with the first receipt", code)
	}
	// A body the scan cannot read is left to the decoder, which names the fault.
	rec = f.do(t, http.MethodPost, "/v1/notifications", `{"id":"n4","recipients":[{"userId":"bob"},]}`)
	expectError(t, rec, http.StatusBadRequest, CodeInvalidJSON, "")
}

func TestPeekRecipients(t *testing.T) {
	cases := []struct {
		name, body string
		id         string
		recipients int
		ok         bool
	}{
		{"id first", `{"id":"n1","recipients":[{"userId":"a"},{"userId":"b"}]}`, "n1", 2, true},
		{"recipients first", `{"sender":{"id":"s"},"recipients":[{"userId":"a","onlineDevices":["d"]}],"id":"n2"}`, "n2", 1, true},
		{"nested recipients ignored", `{"id":"n3","message":{"recipients":[1,2,3]},"recipients":[]}`, "n3", 0, true},
		{"escaped names", `{"\u0069d":"n\u0034","recipients":[{}]}`, "n4", 1, true},
		{"stops once both are found", `{"id":"n5","recipients":[{},{}],"message":{"text":` + "\x00", "n5", 2, true},
		{"no recipients", `{"id":"n6"}`, "", 0, false},
		{"no id", `{"recipients":[{}]}`, "", 0, false},
		{"id not a string", `{"id":6,"recipients":[]}`, "", 0, false},
		{"recipients not an array", `{"id":"n7","recipients":{"userId":"a"}}`, "", 0, false},
		{"truncated", `{"id":"n8","recipients":[{"userId":"a"}`, "", 0, false},
		{"trailing comma", `{"id":"n9","recipients":[{"userId":"a"},]}`, "", 0, false},
		{"not an object", `[{"id":"n10"}]`, "", 0, false},
		{"empty", ``, "", 0, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id, n, ok := peekRecipients([]byte(tc.body))
			if ok != tc.ok || (ok && (id != tc.id || n != tc.recipients)) {
				t.Errorf("peekRecipients(%q) = %q, %d, %v; want %q, %d, %v", tc.body, id, n, ok, tc.id, tc.recipients, tc.ok)
			}
		})
	}
}
