package providers

import (
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"
)

func TestCodeAuthResult(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	byCode := func(code int, h http.Header) Result {
		return Result{Outcome: BadCredentials, Reason: fmt.Sprint(code, h.Get("X-Seen"))}
	}
	codeErr := &AuthCodeError{Vendor: "oppo", Field: "code", Code: 16, Message: "sign error", Header: http.Header{"X-Seen": {"!"}}}
	page := &AuthReplyError{Vendor: "vivo", Reply: &Reply{Status: http.StatusServiceUnavailable, Header: http.Header{"Retry-After": {"7"}}}, Err: errors.New("not JSON")}
	tests := []struct {
		name       string
		err        error
		want       Result
		wantErrMsg string
	}{
		{"the vendor's code, classified as its send answers", fmt.Errorf("fetch: %w", codeErr),
			Result{Outcome: BadCredentials, Reason: "16!"}, "fetch: oppo auth: code 16: sign error"},
		{"a page without the envelope, by its HTTP status", page,
			Result{Outcome: Retry, Reason: "HTTP 503", RetryAfter: 7 * time.Second}, "vivo auth: HTTP 503: not JSON"},
		{"no answer at all", errors.New("connection refused"),
			TransportResult(errors.New("connection refused")), "connection refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := CodeAuthResult(tt.err, now, byCode)
			if got.Outcome != tt.want.Outcome || got.Reason != tt.want.Reason || got.RetryAfter != tt.want.RetryAfter {
				t.Errorf("CodeAuthResult = %+v, want %+v", got, tt.want)
			}
			if got.Err == nil || got.Err.Error() != tt.wantErrMsg {
				t.Errorf("error = %v, want %q", got.Err, tt.wantErrMsg)
			}
		})
	}
}
