package fake

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/imcloud/im-push-operator/dispatcher/providers"
)

// Replay is an http.RoundTripper for fuzzing a client's answer parsing: the
// requests Match selects get the scripted answer, byte for byte, as if the
// provider had sent it; every other request goes to Next (a fake), so the
// client's authentication still works and only the answer under test is
// arbitrary.
type Replay struct {
	Next  http.RoundTripper
	Match func(*http.Request) bool
	// Status 0 fails the matched round trip as a reset connection does;
	// anything else is clamped to a status a server can send (200-599).
	Status int
	Header http.Header
	Body   []byte

	matched, calls atomic.Int64
}

// MaxCalls bounds the requests of one Send: a token request, the send, and
// once more each after the provider refused the access token. More means a
// library is retrying inside what the engine counts as one attempt.
const MaxCalls = 4

// RoundTrip implements http.RoundTripper.
func (r *Replay) RoundTrip(req *http.Request) (*http.Response, error) {
	r.calls.Add(1)
	if !r.Match(req) {
		return r.Next.RoundTrip(req)
	}
	r.matched.Add(1)
	if req.Body != nil {
		_, _ = io.Copy(io.Discard, req.Body)
		_ = req.Body.Close()
	}
	if r.Status == 0 {
		return nil, errors.New("fake: connection reset")
	}
	status := ClampStatus(r.Status)
	h := r.Header.Clone()
	if h == nil {
		h = http.Header{}
	}
	return &http.Response{
		StatusCode: status, Status: fmt.Sprintf("%d %s", status, http.StatusText(status)),
		Proto: "HTTP/2.0", ProtoMajor: 2,
		Header: h, Body: io.NopCloser(bytes.NewReader(r.Body)), ContentLength: int64(len(r.Body)),
		Request: req,
	}, nil
}

// CloseIdleConnections passes through to Next (apns2 calls it).
func (r *Replay) CloseIdleConnections() {
	if c, ok := r.Next.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// Check is what a fuzz target asserts after one Send: the scripted answer
// was asked for, at most MaxCalls requests were made, and the result passes
// CheckResult.
func (r *Replay) Check(res providers.Result, before time.Time, secrets map[string][]byte) error {
	if r.matched.Load() == 0 {
		return errors.New("the client never made the request under test")
	}
	if n := r.calls.Load(); n > MaxCalls {
		return fmt.Errorf("one Send made %d requests (%v %q: %v)", n, res.Outcome, res.Reason, res.Err)
	}
	return CheckResult(res, before, secrets)
}

// ClampStatus maps any int onto 0 (no answer) or 200-599.
func ClampStatus(s int) int {
	if s == 0 || s >= 200 && s <= 599 {
		return s
	}
	if s < 0 {
		s = -(s + 1)
	}
	return 200 + s%400
}

// PathSuffix matches requests whose path ends with suffix.
func PathSuffix(suffix string) func(*http.Request) bool {
	return func(r *http.Request) bool { return strings.HasSuffix(r.URL.Path, suffix) }
}

// CheckResult is what every provider must hold to whatever it was answered:
// a known outcome, no negative Retry-After, a quota pause that ends in the
// future, and no credential in the reason or error (they reach logs and the
// notification status). secrets are the credential Secret's values.
func CheckResult(res providers.Result, before time.Time, secrets map[string][]byte) error {
	if res.Outcome < providers.Delivered || res.Outcome > providers.QuotaExceeded {
		return fmt.Errorf("unknown outcome %v", res.Outcome)
	}
	if res.RetryAfter < 0 {
		return fmt.Errorf("negative RetryAfter %v", res.RetryAfter)
	}
	if res.Outcome == providers.QuotaExceeded && !res.ResumeAt.After(before) {
		return fmt.Errorf("QuotaExceeded with ResumeAt %v, not after %v", res.ResumeAt, before)
	}
	text := res.Reason
	if res.Err != nil {
		text += " " + res.Err.Error()
	}
	for key, v := range secrets {
		for _, part := range secretParts(v) {
			if strings.Contains(text, part) {
				return fmt.Errorf("result shows Secret key %q: reason %q", key, res.Reason)
			}
		}
	}
	return nil
}

// secretParts are the pieces of a Secret value worth searching for: the
// value, or each long line of a PEM or JSON document.
func secretParts(v []byte) []string {
	var out []string
	for _, line := range strings.Split(string(v), "\n") {
		if line = strings.TrimSpace(line); len(line) >= 12 && !strings.HasPrefix(line, "-----") {
			out = append(out, line)
		}
	}
	return out
}
