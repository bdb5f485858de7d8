package providers

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"hash/fnv"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// CollapseKey is the string notifications replace each other by on the
// device: the message's collapse key, or its id.
func CollapseKey(m *Message) string {
	if m.CollapseKey != "" {
		return m.CollapseKey
	}
	return m.ID
}

// MaxCollapseID is the longest collapse id APNs takes (apns-collapse-id,
// 64 bytes); FCM messages carry the same value for Android and APNs.
const MaxCollapseID = 64

// CollapseID is CollapseKey when it fits MaxCollapseID bytes, else its
// SHA-256 in hex (64 bytes): deterministic, and two long keys sharing a
// prefix do not collapse into each other.
func CollapseID(m *Message) string {
	key := CollapseKey(m)
	if len(key) <= MaxCollapseID {
		return key
	}
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// NotifyID maps a collapse key onto 0..2147483647 with FNV-1a 32, so equal
// keys replace each other where a vendor wants a numeric notify id.
func NotifyID(key string) int32 {
	h := fnv.New32a()
	h.Write([]byte(key))
	return int32(h.Sum32() & 0x7fffffff)
}

// TruncateBytes cuts s to at most n bytes on a rune boundary.
func TruncateBytes(s string, n int) string {
	if n <= 0 {
		return ""
	}
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// TruncateRunes cuts s to at most n characters, for vendors whose limits
// count characters.
func TruncateRunes(s string, n int) string {
	i := 0
	for pos := range s {
		if i == n {
			return s[:pos]
		}
		i++
	}
	return s
}

// FitJSON shortens each of fields in turn (the first as far as needed
// before the next is touched) until v marshals to at most limit bytes; what
// cannot be made to fit is left for the vendor to refuse.
func FitJSON(v any, limit int, fields ...*string) error {
	for _, field := range fields {
		for {
			enc, err := json.Marshal(v)
			if err != nil {
				return err
			}
			over := len(enc) - limit
			if over <= 0 {
				return nil
			}
			if *field == "" {
				break
			}
			*field = TruncateBytes(*field, len(*field)-over)
		}
	}
	return nil
}

// VisibleASCII accepts a Secret value that is non-blank visible ASCII once
// surrounding whitespace (a trailing newline from a file) is trimmed.
func VisibleASCII(key string, v []byte) error {
	s := strings.TrimSpace(string(v))
	if s == "" {
		return Invalid(key, "is blank")
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return Invalid(key, "holds a character that is not visible ASCII at byte %d", i)
		}
	}
	return nil
}

// NoSpace accepts a Secret value without whitespace or control characters
// anywhere: vendors that sign with the value fail on a stray newline.
func NoSpace(key string, v []byte) error {
	for _, r := range string(v) {
		if unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return Invalid(key, "contains whitespace or control characters (a trailing newline?)")
		}
	}
	return nil
}

// TTLSeconds renders the time left until exp as "<n>s", between one second
// and limit; empty (the vendor's default) when exp is zero.
func TTLSeconds(exp, now time.Time, limit time.Duration) string {
	if exp.IsZero() {
		return ""
	}
	d := min(max(exp.Sub(now), time.Second), limit)
	return strconv.FormatInt(int64(d/time.Second), 10) + "s"
}
