package server

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/imcloud/im-push-operator/dispatcher/policy"
)

// TestDecodeJSON pins what the one-pass decoding answers: the errors
// encoding/json's Decoder gave (the field, with its index), and for no
// value or data after it, which the Decoder told apart only by reading on,
// a message that says what and where.
func TestDecodeJSON(t *testing.T) {
	cases := []struct {
		name, body    string
		code, field   string
		messageHas    string
		wantRecipient string
	}{
		{name: "valid", body: ` {"id":"n1","recipients":[{"userId":"u1"}]} ` + "\n", wantRecipient: "u1"},
		{name: "empty", body: "", code: CodeInvalidJSON, field: "p", messageHas: "request body is empty"},
		{name: "only whitespace", body: " \n\t", code: CodeInvalidJSON, field: "p", messageHas: "request body is empty"},
		{name: "data after the value", body: `{"id":"n1"} {}`, code: CodeInvalidJSON, field: "p", messageHas: "at byte 13: invalid character '{' after top-level value"},
		{name: "truncated", body: `{"id":"n1"`, code: CodeInvalidJSON, field: "p", messageHas: "unexpected end of JSON input"},
		{name: "unknown field", body: `{"id":"n1","priority":"high"}`, code: CodeUnknownField, field: "p.priority", messageHas: "unknown field p.priority"},
		{name: "wrong type in an array", body: `{"recipients":[{"userId":"a"},{"userId":3}]}`, code: CodeInvalidField, field: "p.recipients[1].userId", messageHas: "must be a string"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var n policy.Notification
			e := decodeJSON([]byte(c.body), &n, "p")
			if c.code == "" {
				if e != nil {
					t.Fatalf("decodeJSON(%q) = %+v, want no error", c.body, e)
				}
				if len(n.Recipients) != 1 || n.Recipients[0].UserID != c.wantRecipient {
					t.Fatalf("recipients = %+v, want one %q", n.Recipients, c.wantRecipient)
				}
				return
			}
			if e == nil {
				t.Fatalf("decodeJSON(%q) accepted it", c.body)
			}
			if e.status != http.StatusBadRequest || e.Code != c.code || e.Field != c.field || !strings.Contains(e.Message, c.messageHas) {
				t.Fatalf("decodeJSON(%q) = %d %s %q %q, want 400 %s %q and a message with %q", c.body, e.status, e.Code, e.Field, e.Message, c.code, c.field, c.messageHas)
			}
		})
	}
}

// The receipt appended by hand must be exactly what encoding/json's Encoder
// writes, and give way to it whenever the id needs escaping.
func TestReceiptAppendsAsEncodingJSON(t *testing.T) {
	at := time.Date(2026, 12, 7, 18, 5, 1, 123456789, time.UTC)
	ids := []string{"n-1", "a b.c:d_e~f", "", `quo"te`, `back\slash`, "<script>", "a&b", "tab\there", "del\x7f", "ünïcode", "😀", "\xff"}
	times := []time.Time{at, at.Truncate(time.Second), at.In(time.FixedZone("CET", 3600)), time.Time{},
		at.In(time.FixedZone("odd", 3601)), time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}
	for _, id := range ids {
		for _, when := range times {
			for _, dup := range []bool{false, true} {
				r := Receipt{ID: id, Accepted: 3, Skipped: 1200, Duplicate: dup, AcceptedAt: when}
				var want bytes.Buffer
				wantErr := json.NewEncoder(&want).Encode(r)
				rec := httptest.NewRecorder()
				answerJSON(httpAnswer{rec}, http.StatusAccepted, r)
				if wantErr != nil {
					if rec.Body.Len() != 0 {
						t.Errorf("%+v: encoding/json fails (%v) but the answer is %q", r, wantErr, rec.Body.String())
					}
					continue
				}
				if got := rec.Body.String(); got != want.String() {
					t.Errorf("%+v:\n got %q\nwant %q", r, got, want.String())
				}
			}
		}
	}
	// The fast path is taken for plain ids.
	if _, ok := (Receipt{ID: "n-1", AcceptedAt: at}).appendJSON(nil); !ok {
		t.Error("a plain id was not appended by hand")
	}
}
