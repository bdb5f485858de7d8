package fake

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// RandomHex returns n random bytes in hex, for the tokens and ids a fake
// hands out.
func RandomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// WriteJSON answers status with v as JSON, labelled as the Chinese vendors
// label theirs.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// AnswerBare carries out the parts of an answer every fake treats alike: it
// sets Retry-After, aborts on "reset", and answers "status:NNN" with that
// bare status (a 400 naming the code if NNN is no number, so a typo in a
// test shows). It reports whether the answer is complete.
func AnswerBare(w http.ResponseWriter, a Answer) bool {
	if a.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(a.RetryAfter/time.Second)))
	}
	if a.Code == "reset" {
		Abort()
	}
	n, ok := strings.CutPrefix(a.Code, "status:")
	if !ok {
		return false
	}
	status, err := strconv.Atoi(n)
	if err != nil {
		http.Error(w, "fake: bad answer code "+a.Code, http.StatusBadRequest)
		return true
	}
	w.WriteHeader(status)
	return true
}
