package server

import (
	"net/http"
	"strings"
	"testing"

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
