// Package hms is what the Huawei and Honor fakes share, Honor's push being
// Huawei's (HMS) renamed: an OAuth client-credentials token endpoint issuing
// bearer tokens bound to an App ID, the 802… codes that refuse such a token,
// the checks on a send body (data a JSON string, tokens present, at most
// MaxMessageBytes without the tokens), and the HTTP status an answer code's
// prefix picks.
package hms

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/imcloud/im-push-operator/dispatcher/providers/fake"
)

// TokenLifetime is the expires_in of issued access tokens.
const TokenLifetime = time.Hour

// MaxMessageBytes is the limit on a send body without its tokens.
const MaxMessageBytes = 4096

// Codes the fakes answer a send's authentication or body with.
const (
	CodeAuthFailed   = 80200001
	CodeTokenExpired = 80200003
	CodeMissing      = 80100001
	CodeBadMessage   = 80100003
	CodeTooLarge     = 80300008
)

// TokenErrors are a vendor's answers to a bad token request: not a form,
// another grant type, an unknown client or wrong secret (with its status).
type TokenErrors struct {
	BadRequest, BadGrant, BadClient any
	BadClientStatus                 int
}

// Auth is the OAuth side of a fake: registered clients and the tokens
// issued to them.
type Auth struct {
	*fake.Tokens
	prefix string
	errs   TokenErrors

	mu      sync.Mutex
	clients map[string]client // by client id
}

type client struct {
	secret string
	appID  string
}

// NewAuth returns an Auth whose tokens start with prefix.
func NewAuth(prefix string, errs TokenErrors) *Auth {
	return &Auth{Tokens: fake.NewTokens(TokenLifetime), prefix: prefix, errs: errs, clients: map[string]client{}}
}

// Register makes clientID with secret (trimmed) a valid client of appID.
func (a *Auth) Register(clientID, secret, appID string) {
	a.mu.Lock()
	a.clients[clientID] = client{secret: strings.TrimSpace(secret), appID: appID}
	a.mu.Unlock()
}

// Token is the client-credentials token endpoint.
func (a *Auth) Token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
		fake.WriteJSON(w, http.StatusBadRequest, a.errs.BadRequest)
		return
	}
	if r.PostForm.Get("grant_type") != "client_credentials" {
		fake.WriteJSON(w, http.StatusBadRequest, a.errs.BadGrant)
		return
	}
	a.mu.Lock()
	c, ok := a.clients[r.PostForm.Get("client_id")]
	a.mu.Unlock()
	if !ok || c.secret != r.PostForm.Get("client_secret") {
		fake.WriteJSON(w, a.errs.BadClientStatus, a.errs.BadClient)
		return
	}
	tok := a.prefix + fake.RandomHex(24)
	a.Issue(tok, c.appID)
	fake.WriteJSON(w, http.StatusOK, map[string]any{"access_token": tok, "expires_in": int(TokenLifetime / time.Second), "token_type": "Bearer"})
}

// Authorize checks a send's bearer token against the App ID in its path
// ({app}); it returns the code refusing it, or 0.
func (a *Auth) Authorize(r *http.Request) int {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	app, known, live := a.Check(tok)
	switch {
	case !ok || !known || app != r.PathValue("app"):
		return CodeAuthFailed
	case !live:
		return CodeTokenExpired
	}
	return 0
}

// CheckBody checks a decoded send body (raw, its data and tokens): it
// returns data decoded from its JSON string, or the code and message
// refusing the body.
func CheckBody(raw []byte, data json.RawMessage, tokens []string) (dataText string, code int, msg string) {
	if len(data) > 0 && json.Unmarshal(data, &dataText) != nil {
		return "", CodeBadMessage, "data must be a string"
	}
	if len(tokens) == 0 {
		return "", CodeMissing, "token is required"
	}
	size := len(raw) - (len(tokens) - 1) // the commas between tokens
	for _, t := range tokens {
		size -= len(t) + 2 // the token and its quotes
	}
	if size > MaxMessageBytes {
		return "", CodeTooLarge, "The message body size exceeds the default value"
	}
	return dataText, 0, ""
}

// Status is the HTTP status of an answer code: 802… (authentication) 401,
// 810… (internal) 500, any other otherwise.
func Status(code string, otherwise int) int {
	switch {
	case strings.HasPrefix(code, "802"):
		return http.StatusUnauthorized
	case strings.HasPrefix(code, "810"):
		return http.StatusInternalServerError
	}
	return otherwise
}
