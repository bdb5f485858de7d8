package store

import (
	"time"
	"unicode/utf8"
)

// canonicalUser reads raw when it is exactly what encoding/json writes for a
// User with empty settings: the form applyOps stores, so nearly every record
// a delivery reads. Fields come in declaration order, with no whitespace, no
// escapes and no unknown names. ok is false for anything else (settings,
// other letter case, repeated or unknown names, escapes, invalid UTF-8,
// malformed times or JSON), and decodeUser then reads raw with the general
// decoder, which is the authority on what a record means; for the inputs
// this accepts, both read the same User (FuzzDecodeUserMatchesEncodingJSON).
//
// Why by hand: decoding the record was the largest part of the delivery
// engine's own cost per recipient of a group message, and the general
// decoder's reflection and field matching were most of that (BenchmarkSecretsGet,
// docs/performance-history.md). Each string is its own allocation: one
// copy of the whole record that they all slice was as fast and allocated
// 60% more bytes per read.
func canonicalUser(raw []byte) (u User, ok bool) {
	r := recordReader{b: raw}
	if !r.lit(`{"v":`) {
		return User{}, false
	}
	if u.Version, ok = r.uint(); !ok {
		return User{}, false
	}
	if r.lit(`,"devices":`) {
		if u.Devices, ok = array(&r, r.device); !ok {
			return User{}, false
		}
	}
	r.lit(`,"settings":{}`)
	if !r.lit(`}`) || r.i != len(r.b) {
		return User{}, false
	}
	return u, true
}

// recordReader walks a record's bytes b from offset i.
type recordReader struct {
	b []byte
	i int
}

// lit consumes lit if the input continues with it.
func (r *recordReader) lit(lit string) bool {
	if len(r.b)-r.i < len(lit) || string(r.b[r.i:r.i+len(lit)]) != lit {
		return false
	}
	r.i += len(lit)
	return true
}

// uint reads a JSON integer of at most 9 digits without a sign.
func (r *recordReader) uint() (int, bool) {
	start, n := r.i, 0
	for r.i < len(r.b) && r.b[r.i] >= '0' && r.b[r.i] <= '9' && r.i-start < 9 {
		n = n*10 + int(r.b[r.i]-'0')
		r.i++
	}
	digits := r.i - start
	if digits == 0 || (digits > 1 && r.b[start] == '0') || (r.i < len(r.b) && r.b[r.i] >= '0' && r.b[r.i] <= '9') {
		return 0, false
	}
	// A fraction or an exponent: the general decoder decides.
	if r.i < len(r.b) && (r.b[r.i] == '.' || r.b[r.i] == 'e' || r.b[r.i] == 'E') {
		return 0, false
	}
	return n, true
}

// quoted reads a JSON string without escapes or control characters and
// returns its bytes, and whether they are all ASCII.
func (r *recordReader) quoted() (raw []byte, ascii, ok bool) {
	if !r.lit(`"`) {
		return nil, false, false
	}
	start := r.i
	ascii = true
	for ; r.i < len(r.b); r.i++ {
		switch c := r.b[r.i]; {
		case c == '"':
			r.i++
			return r.b[start : r.i-1], ascii, true
		case c == '\\' || c < 0x20:
			return nil, false, false
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return nil, false, false
}

// str reads a string whose bytes are valid UTF-8 (encoding/json reads such
// a string as its bytes).
func (r *recordReader) str() (string, bool) {
	raw, ascii, ok := r.quoted()
	if !ok || (!ascii && !utf8.Valid(raw)) {
		return "", false
	}
	return string(raw), true
}

// time reads a string as time.Time's UnmarshalJSON does (strict RFC 3339
// on the bytes as they are, which refuses anything not ASCII).
func (r *recordReader) time() (time.Time, bool) {
	var t time.Time
	raw, _, ok := r.quoted()
	if !ok || t.UnmarshalText(raw) != nil {
		return time.Time{}, false
	}
	return t, true
}

// array reads a JSON array of elements elem reads, or null (nil); an empty
// array is empty and not nil, as encoding/json reads it.
func array[T any](r *recordReader, elem func() (T, bool)) ([]T, bool) {
	if r.lit(`null`) {
		return nil, true
	}
	if !r.lit(`[`) {
		return nil, false
	}
	vs := make([]T, 0, 1)
	if r.lit(`]`) {
		return vs, true
	}
	for {
		v, ok := elem()
		if !ok {
			return nil, false
		}
		vs = append(vs, v)
		if r.lit(`]`) {
			return vs, true
		}
		if !r.lit(`,`) {
			return nil, false
		}
	}
}

func (r *recordReader) device() (d Device, ok bool) {
	if !r.lit(`{"id":`) {
		return d, false
	}
	if d.ID, ok = r.str(); !ok || !r.lit(`,"bindings":`) {
		return d, false
	}
	if d.Bindings, ok = array(r, r.binding); !ok || !r.lit(`,"updatedAt":`) {
		return d, false
	}
	if d.UpdatedAt, ok = r.time(); !ok || !r.lit(`}`) {
		return d, false
	}
	return d, true
}

func (r *recordReader) binding() (b Binding, ok bool) {
	if !r.lit(`{"certificateName":`) {
		return b, false
	}
	if b.CertificateName, ok = r.str(); !ok || !r.lit(`,"token":`) {
		return b, false
	}
	if b.Token, ok = r.str(); !ok || !r.lit(`,"boundAt":`) {
		return b, false
	}
	if b.BoundAt, ok = r.time(); !ok || !r.lit(`}`) {
		return b, false
	}
	return b, true
}
