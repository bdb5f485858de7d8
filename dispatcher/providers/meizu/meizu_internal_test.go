package meizu

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/imcloud/im-push-operator/dispatcher/providers"
)

// TestValueResult covers value maps the single-pushId fake never produces:
// entries for other pushIds, and the empty forms Meizu uses.
func TestValueResult(t *testing.T) {
	c := &client{now: time.Now}
	tests := []struct {
		value   string
		outcome providers.Outcome
		reason  string
	}{
		{`{"110002":["other"]}`, providers.Delivered, ""},
		{`{}`, providers.Delivered, ""},
		{`""`, providers.Delivered, ""},
		{``, providers.Delivered, ""},
		{`{"110002":["other","tok"]}`, providers.DropToken, "110002"},
		{`{"520":["tok"],"110003":["other"]}`, providers.Delivered, "520"},
		{`{"110002":"tok"}`, providers.Retry, "200"},
	}
	for _, tt := range tests {
		res := c.valueResult(json.RawMessage(tt.value), "tok")
		if res.Outcome != tt.outcome || res.Reason != tt.reason {
			t.Errorf("valueResult(%s) = %v %q, want %v %q", tt.value, res.Outcome, res.Reason, tt.outcome, tt.reason)
		}
	}
}
