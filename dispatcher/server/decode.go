package server

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf8"

	// encoding/json's API and errors on the v2 decoder: 10 allocations
	// and about 6% of the time fewer per notification than encoding/json
	// (BenchmarkNotification), and its type errors carry array indexes
	// (recipients.3.userId, shown as recipients[3].userId).
	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	json "github.com/go-json-experiment/json/v1"
)

const (
	// MaxBodyBytes bounds every request body.
	MaxBodyBytes = 1 << 20
	// MaxDepth bounds JSON nesting; no valid request comes near it, so
	// anything deeper is refused before the decoder walks it.
	MaxDepth = 32
)

// readBody reads the whole body within MaxBodyBytes and checks it (checkBody).
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, *apiError) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return nil, errBodyTooLarge()
		}
		return nil, newError(http.StatusBadRequest, CodeInvalidJSON, "", "reading request body: %v", err)
	}
	return body, checkBody(body)
}

func errBodyTooLarge() *apiError {
	return newError(http.StatusRequestEntityTooLarge, CodeBodyTooLarge, "", "request body is larger than %d bytes", MaxBodyBytes)
}

// checkBody checks that a body is within MaxBodyBytes, UTF-8 (the decoder
// would otherwise silently replace bad bytes) and no deeper than MaxDepth.
func checkBody(body []byte) *apiError {
	if len(body) > MaxBodyBytes {
		return errBodyTooLarge()
	}
	if !utf8.Valid(body) {
		return newError(http.StatusBadRequest, CodeInvalidJSON, "", "request body is not valid UTF-8")
	}
	if err := checkDepth(body); err != nil {
		return newError(http.StatusBadRequest, CodeInvalidJSON, "", "%v", err)
	}
	return nil
}

// readJSON reads r's body (readBody) and decodes it into v (decodeJSON);
// on an error it answers it and returns false.
func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	body, e := readBody(w, r)
	if e == nil {
		e = decodeJSON(body, v, "")
	}
	if e != nil {
		writeError(w, e)
		return false
	}
	return true
}

// checkDepth counts brackets outside strings, so a deeply nested body is
// refused before the decoder walks it. It does not check the syntax: the
// decoder does, and on a malformed body the count may be off but the
// decoder refuses that body anyway. A byte loop and not json.Decoder.Token:
// that was a second full parse, a tenth of the dispatcher's CPU per request.
func checkDepth(data []byte) error {
	depth, inString, escaped := 0, false, false
	for _, c := range data {
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == '{' || c == '[':
			depth++
			if depth > MaxDepth {
				return fmt.Errorf("request body nests deeper than %d levels", MaxDepth)
			}
		case c == '}' || c == ']':
			depth--
		}
	}
	return nil
}

// peekRecipients finds a notification body's top-level id and the number
// of its recipients by scanning tokens, without decoding anything: ok is
// false unless it found both (a body the decoder will refuse, or one whose
// fields are not where a notification has them). It stops as soon as it has
// them, so a message after the recipients is not even scanned.
func peekRecipients(body []byte) (id string, recipients int, ok bool) {
	// The body is UTF-8 already (readBody), and duplicate names are the
	// decoder's to refuse.
	d := jsontext.NewDecoder(bytes.NewReader(body), jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true))
	if t, err := d.ReadToken(); err != nil || t.Kind() != '{' {
		return "", 0, false
	}
	haveID, haveRecipients := false, false
	for !haveID || !haveRecipients {
		name, err := d.ReadToken()
		if err != nil || name.Kind() != '"' {
			return "", 0, false // the object ended, or is malformed
		}
		switch name.String() {
		case "id":
			v, err := d.ReadToken()
			if err != nil || v.Kind() != '"' {
				return "", 0, false
			}
			id, haveID = v.String(), true
		case "recipients":
			if t, err := d.ReadToken(); err != nil || t.Kind() != '[' {
				return "", 0, false
			}
			for d.PeekKind() != ']' {
				if err := d.SkipValue(); err != nil {
					return "", 0, false
				}
				recipients++
			}
			if _, err := d.ReadToken(); err != nil {
				return "", 0, false
			}
			haveRecipients = true
		default:
			if err := d.SkipValue(); err != nil {
				return "", 0, false
			}
		}
	}
	return id, recipients, true
}

// decodeOptions are those of encoding/json's Decoder with
// DisallowUnknownFields: the same bodies accepted and refused (the texts
// of syntax errors name the byte, see TestDecodeJSON).
var decodeOptions = jsonv2.JoinOptions(json.DefaultOptionsV1(), jsonv2.RejectUnknownMembers(true))

// decodeJSON decodes exactly one JSON value into v, refusing unknown fields
// and anything after the value. prefix is prepended to field paths in
// errors (notifications[2]). One pass over the body: a Decoder reads the
// value once to find its end and then decodes it, which made decoding 7% of
// the dispatcher's CPU under single-recipient load (docs/performance.md).
func decodeJSON(data []byte, v any, prefix string) *apiError {
	if len(bytes.TrimSpace(data)) == 0 {
		return newError(http.StatusBadRequest, CodeInvalidJSON, prefix, "request body is empty")
	}
	if err := jsonv2.Unmarshal(data, v, decodeOptions); err != nil {
		return decodeError(err, prefix)
	}
	return nil
}

func decodeError(err error, prefix string) *apiError {
	if e, ok := errors.AsType[*json.UnmarshalTypeError](err); ok {
		field := joinField(prefix, indexPath(e.Field))
		return newError(http.StatusBadRequest, CodeInvalidField, field, "%s must be %s, not a JSON %s", orBody(field), jsonKind(e.Type), e.Value)
	}
	if e, ok := errors.AsType[*json.SyntaxError](err); ok {
		return newError(http.StatusBadRequest, CodeInvalidJSON, prefix, "invalid JSON at byte %d: %v", e.Offset, e)
	}
	// encoding/json has no typed error for unknown fields; its message is
	// `json: unknown field "name"` (%q) and has been since DisallowUnknownFields came.
	if quoted, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		name, uerr := strconv.Unquote(quoted)
		if uerr != nil {
			name = quoted
		}
		if name == "" {
			// A key "" would otherwise give an error that names nothing.
			name = `""`
		}
		field := joinField(prefix, name)
		return newError(http.StatusBadRequest, CodeUnknownField, field, "unknown field %s", field)
	}
	return newError(http.StatusBadRequest, CodeInvalidJSON, prefix, "invalid JSON: %v", err)
}

// indexPath writes the decoder's array indexes as the API's other errors
// do: recipients.3.userId becomes recipients[3].userId. (A numeric key of a
// map, as in push.data, reads as an index too; the field is still found.)
func indexPath(field string) string {
	parts := strings.Split(field, ".")
	var b strings.Builder
	for i, p := range parts {
		if _, err := strconv.ParseUint(p, 10, 64); err == nil && i > 0 {
			b.WriteString("[" + p + "]")
			continue
		}
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(p)
	}
	return b.String()
}

func joinField(prefix, field string) string {
	switch {
	case prefix == "":
		return field
	case field == "":
		return prefix
	}
	return prefix + "." + field
}

func orBody(field string) string {
	if field == "" {
		return "the body"
	}
	return field
}

// jsonKind names the JSON kind a Go type decodes from.
func jsonKind(t reflect.Type) string {
	if t == nil {
		return "a value"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Map, reflect.Struct:
		return "an object"
	case reflect.Pointer:
		return jsonKind(t.Elem())
	}
	return "a " + t.String()
}
