package server

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
)

// Error codes of the JSON error body. Callers branch on the code, so each is
// stable; the message is for people.
const (
	CodeUnauthorized       = "Unauthorized"       // 401
	CodeNotFound           = "NotFound"           // 404
	CodeMethodNotAllowed   = "MethodNotAllowed"   // 405
	CodeBodyTooLarge       = "BodyTooLarge"       // 413
	CodeInvalidJSON        = "InvalidJSON"        // 400: not JSON, not UTF-8, too deep, trailing data
	CodeUnknownField       = "UnknownField"       // 400: a field the API does not have
	CodeInvalidField       = "InvalidField"       // 400: a field with a bad value
	CodeUnknownCertificate = "UnknownCertificate" // 422: certificateName not in the running config
	CodeQueueFull          = "QueueFull"          // 429, with Retry-After
	CodeInternal           = "Internal"           // 500
	CodeDraining           = "Draining"           // 503: shutting down, try another replica
	CodeNotReady           = "NotReady"           // 503: config, token store or engine not loaded yet
	CodeShardFull          = "ShardFull"          // 507: the user's token-store shard is at its byte cap
)

// apiError is an error answer. Field is the JSON path of the offending field
// (recipients[3].userId), or the path parameter (user, device), when there is one.
type apiError struct {
	status     int
	Code       string `json:"code"`
	Message    string `json:"message"`
	Field      string `json:"field,omitempty"`
	retryAfter time.Duration
}

func (e *apiError) Error() string { return e.Code + ": " + e.Message }

func newError(status int, code, field, format string, args ...any) *apiError {
	return &apiError{status: status, Code: code, Field: field, Message: fmt.Sprintf(format, args...)}
}

func invalidField(field, format string, args ...any) *apiError {
	return newError(http.StatusBadRequest, CodeInvalidField, field, format, args...)
}

func writeError(w http.ResponseWriter, e *apiError) { answerError(httpAnswer{w}, e) }

func writeJSON(w http.ResponseWriter, status int, v any) { answerJSON(httpAnswer{w}, status, v) }

// answer is where an answer is written: net/http's ResponseWriter
// (httpAnswer) or fasthttp's RequestCtx (fastAnswer, fast.go), so both
// transports write the same headers and bodies.
type answer interface {
	io.Writer
	setHeader(key, value string)
	writeHeader(status int)
}

type httpAnswer struct{ http.ResponseWriter }

func (a httpAnswer) setHeader(k, v string)  { a.Header().Set(k, v) }
func (a httpAnswer) writeHeader(status int) { a.WriteHeader(status) }

func answerError(w answer, e *apiError) {
	if e.retryAfter > 0 {
		w.setHeader("Retry-After", strconv.Itoa(int((e.retryAfter+time.Second-1)/time.Second)))
	}
	answerJSON(w, e.status, errorBody{Error: e})
}

type errorBody struct {
	Error *apiError `json:"error"`
}

func answerJSON(w answer, status int, v any) {
	w.setHeader("Content-Type", "application/json")
	w.setHeader("X-Content-Type-Options", "nosniff")
	w.writeHeader(status)
	// The status is sent; an encoding error now can only be a broken connection.
	if r, ok := v.(Receipt); ok {
		if b, ok := r.appendJSON(make([]byte, 0, 128)); ok {
			_, _ = w.Write(b)
			return
		}
	}
	_ = json.NewEncoder(w).Encode(v)
}

// appendJSON appends r as encoding/json's Encoder writes it, newline
// included, or reports false when r's id has a byte that encoding needs to
// escape. The receipt answers nearly every notification, and encoding it
// by reflection was a tenth of the API handler's CPU (`make bench`'s
// one-recipient windows, 2026-12-07).
func (r Receipt) appendJSON(b []byte) ([]byte, bool) {
	for i := 0; i < len(r.ID); i++ {
		// Quote, backslash, control bytes, non-ASCII and the HTML
		// characters the Encoder escapes by default.
		if c := r.ID[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return b, false
		}
	}
	// Times that time.Time's MarshalJSON refuses take encoding/json's path
	// and its error.
	if y := r.AcceptedAt.Year(); y < 0 || y > 9999 {
		return b, false
	}
	if _, offset := r.AcceptedAt.Zone(); offset%60 != 0 {
		return b, false
	}
	b = append(b, `{"id":"`...)
	b = append(b, r.ID...)
	b = append(b, `","accepted":`...)
	b = strconv.AppendInt(b, int64(r.Accepted), 10)
	b = append(b, `,"skipped":`...)
	b = strconv.AppendInt(b, int64(r.Skipped), 10)
	if r.Duplicate {
		b = append(b, `,"duplicate":true`...)
	}
	b = append(b, `,"acceptedAt":"`...)
	b = r.AcceptedAt.AppendFormat(b, time.RFC3339Nano)
	return append(b, "\"}\n"...), true
}
