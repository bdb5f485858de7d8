// Package honor is a local fake of Honor Push: the OpenID Connect token
// endpoint (POST /auth/realms/developer/protocol/openid-connect/token) and
// the send endpoint (POST /api/v1/{appId}/sendMessage) on one TLS server.
//
// Authentication is checked as Honor does: the token endpoint wants
// grant_type=client_credentials and a client_id/client_secret pair registered
// with Allow (else 401 {"error":"invalid_client"}), and issues access tokens
// valid for TokenLifetime by the fake's clock (SetClock). A send needs
// "Authorization: Bearer <token>" with a token issued for the App ID in the
// path (else HTTP 401 code 80200001; expired: HTTP 401 code 80200003) and a
// "timestamp" header in Unix milliseconds within TimestampWindow of the
// fake's clock (else HTTP 400 code 80100001). Honor's error codes are not
// documented (providers.md §4); these follow the Huawei-style codes open-source
// clients report.
//
// The body is checked: token non-empty (80100001), data a JSON string
// (80100003), the request without its tokens at most 4096 bytes (80300008).
// Accepted sends are recorded with Fields app_id, importance, ttl, notify_id,
// tag, click_action_type, target_user_type, badge_set_num and badge_class
// (when present); Data is data decoded as a JSON object.
//
// Answer codes (fake.Answer.Code) for a token:
//   - "" success: 200 {"code":200,"message":"success","data":{"sendResult":true,...}}
//   - "expireToken": 200, the token listed in data.expireTokens
//   - "failToken": 200, the token listed in data.failTokens
//   - a number: 802… codes as HTTP 401, 810… codes as HTTP 500, others as
//     HTTP 200, with {"code":<n>,"message":...} ("80300007", "80100003",
//     "80300002", "80200003", "81000001", ...)
//   - "status:NNN": a bare HTTP status (e.g. "status:503")
//   - "reset": the stream is aborted
//
// Retry-After is set on any answer whose RetryAfter is non-zero.
package honor

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"math/big"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/imcloud/im-push-operator/dispatcher/config"
	"github.com/imcloud/im-push-operator/dispatcher/providers/fake"
)

// TokenLifetime is the expires_in of issued access tokens.
const TokenLifetime = time.Hour

// TimestampWindow is how far a send's timestamp header may be from the
// fake's clock (Honor's own window is not documented).
const TimestampWindow = 5 * time.Minute

const maxMessageBytes = 4096

// Server is a running Honor fake.
type Server struct {
	*fake.Server

	mu      sync.Mutex
	now     func() time.Time
	clients map[string]client // by client id
	tokens  map[string]issued // by access token
	issues  int
}

type client struct {
	secret string
	appID  string
}

type issued struct {
	appID   string
	expires time.Time
}

// Start serves the fake on a TLS server whose certificate chains to ca.
func Start(ca *fake.CA) (*Server, error) {
	s := &Server{now: time.Now, clients: map[string]client{}, tokens: map[string]issued{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /auth/realms/developer/protocol/openid-connect/token", s.token)
	mux.HandleFunc("POST /api/v1/{app}/sendMessage", s.send)
	srv, err := fake.Start(ca, fake.NewState(string(config.Honor)), mux)
	if err != nil {
		return nil, err
	}
	s.Server = srv
	return s, nil
}

// SetClock replaces the clock that issues and expires access tokens and
// checks timestamps.
func (s *Server) SetClock(now func() time.Time) {
	s.mu.Lock()
	s.now = now
	s.mu.Unlock()
}

// TokensIssued returns how many access tokens the token endpoint issued.
func (s *Server) TokensIssued() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.issues
}

// ExpireTokens makes every access token issued so far expired, as a vendor
// revoking tokens early would; the next send with one is answered 80200003.
func (s *Server) ExpireTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	for tok, t := range s.tokens {
		t.expires = now
		s.tokens[tok] = t
	}
}

// Allow registers cert's client id, secret and App ID as valid.
func (s *Server) Allow(cert *config.Certificate) {
	s.mu.Lock()
	s.clients[cert.Honor.ClientID] = client{secret: strings.TrimSpace(string(cert.Data[config.KeyClientSecret])), appID: cert.Honor.AppID}
	s.mu.Unlock()
}

// TestCredential returns Secret data and a spec for a new credential; an
// empty appID gets a random numeric one, and the client id is random.
func TestCredential(appID string) (map[string][]byte, *config.HonorSpec) {
	if appID == "" {
		n, _ := rand.Int(rand.Reader, big.NewInt(900000000))
		appID = strconv.FormatInt(100000000+n.Int64(), 10)
	}
	return map[string][]byte{config.KeyClientSecret: []byte(randomHex(32))},
		&config.HonorSpec{AppID: appID, ClientID: randomHex(16)}
}

// Certificate makes a new credential, allows it, and returns a certificate
// named name that points at this fake.
func (s *Server) Certificate(name string) *config.Certificate {
	data, spec := TestCredential("")
	cert := &config.Certificate{
		Name:     name,
		Resource: name,
		Provider: config.Honor,
		Endpoint: s.URL,
		CABundle: string(s.CA.CertPEM),
		Data:     data,
		Honor:    spec,
	}
	s.Allow(cert)
	return cert
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request", "error_description": "form body expected"})
		return
	}
	if r.PostForm.Get("grant_type") != "client_credentials" {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "unsupported_grant_type", "error_description": "Unsupported grant_type"})
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.clients[r.PostForm.Get("client_id")]
	if !ok || c.secret != r.PostForm.Get("client_secret") {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_client", "error_description": "Invalid client credentials"})
		return
	}
	tok := "hn" + randomHex(24)
	s.issues++
	s.tokens[tok] = issued{appID: c.appID, expires: s.now().Add(TokenLifetime)}
	writeJSON(w, http.StatusOK, map[string]any{"access_token": tok, "expires_in": int(TokenLifetime / time.Second), "token_type": "Bearer"})
}

// authorize checks bearer and timestamp; it returns the HTTP status and code
// of the failure, or 0.
func (s *Server) authorize(r *http.Request) (int, int) {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	t, known := s.tokens[tok]
	switch {
	case !ok || !known || t.appID != r.PathValue("app"):
		return http.StatusUnauthorized, 80200001
	case !now.Before(t.expires):
		return http.StatusUnauthorized, 80200003
	}
	ms, err := strconv.ParseInt(r.Header.Get("timestamp"), 10, 64)
	if err != nil {
		return http.StatusBadRequest, 80100001
	}
	if skew := now.Sub(time.UnixMilli(ms)); skew > TimestampWindow || skew < -TimestampWindow {
		return http.StatusBadRequest, 80100001
	}
	return 0, 0
}

type sendRequest struct {
	Data    json.RawMessage `json:"data"`
	Android struct {
		TTL            string `json:"ttl"`
		TargetUserType *int   `json:"targetUserType"`
		Notification   *struct {
			Title       string `json:"title"`
			Body        string `json:"body"`
			ClickAction struct {
				Type int `json:"type"`
			} `json:"clickAction"`
			Importance string `json:"importance"`
			NotifyID   *int64 `json:"notifyId"`
			Tag        string `json:"tag"`
			Badge      *struct {
				SetNum     *int   `json:"setNum"`
				BadgeClass string `json:"badgeClass"`
			} `json:"badge"`
		} `json:"notification"`
	} `json:"android"`
	Token []string `json:"token"`
}

func fail(w http.ResponseWriter, status, code int, msg string) {
	writeJSON(w, status, map[string]any{"code": code, "message": msg})
}

func (s *Server) send(w http.ResponseWriter, r *http.Request) {
	if status, code := s.authorize(r); status != 0 {
		fail(w, status, code, "authentication failed")
		return
	}
	raw, err := io.ReadAll(r.Body)
	if err != nil {
		fake.Abort()
	}
	var req sendRequest
	if err := json.Unmarshal(raw, &req); err != nil {
		fail(w, http.StatusBadRequest, 80100003, "illegal message structure")
		return
	}
	var dataText string
	if len(req.Data) > 0 && json.Unmarshal(req.Data, &dataText) != nil {
		fail(w, http.StatusBadRequest, 80100003, "data must be a string")
		return
	}
	if len(req.Token) == 0 {
		fail(w, http.StatusBadRequest, 80100001, "token is required")
		return
	}
	size := len(raw) - (len(req.Token) - 1)
	for _, t := range req.Token {
		size -= len(t) + 2
	}
	if size > maxMessageBytes {
		fail(w, http.StatusBadRequest, 80300008, "message body too large")
		return
	}

	token := req.Token[0]
	a := s.State.Next(token)
	s.State.Record(received(r.PathValue("app"), token, dataText, &req, a.Code))
	s.State.Pause(r, a)
	answer(w, a, token)
}

func received(appID, token, dataText string, req *sendRequest, code string) fake.Received {
	rec := fake.Received{Token: token, Answered: code, Fields: map[string]string{"app_id": appID}}
	set := func(k, v string) {
		if v != "" {
			rec.Fields[k] = v
		}
	}
	an := &req.Android
	set("ttl", an.TTL)
	if an.TargetUserType != nil {
		set("target_user_type", strconv.Itoa(*an.TargetUserType))
	}
	if n := an.Notification; n != nil {
		rec.Title, rec.Body = n.Title, n.Body
		set("click_action_type", strconv.Itoa(n.ClickAction.Type))
		set("importance", n.Importance)
		set("tag", n.Tag)
		if n.NotifyID != nil {
			set("notify_id", strconv.FormatInt(*n.NotifyID, 10))
		}
		if b := n.Badge; b != nil {
			if b.SetNum != nil {
				set("badge_set_num", strconv.Itoa(*b.SetNum))
			}
			set("badge_class", b.BadgeClass)
		}
	}
	if dataText != "" {
		_ = json.Unmarshal([]byte(dataText), &rec.Data)
	}
	return rec
}

func answer(w http.ResponseWriter, a fake.Answer, token string) {
	if a.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(a.RetryAfter/time.Second)))
	}
	result := map[string]any{"sendResult": true, "requestId": randomHex(8), "failTokens": []string{}, "expireTokens": []string{}}
	switch {
	case a.Code == "reset":
		fake.Abort()
	case strings.HasPrefix(a.Code, "status:"):
		status, err := strconv.Atoi(strings.TrimPrefix(a.Code, "status:"))
		if err != nil {
			status = http.StatusInternalServerError
		}
		w.WriteHeader(status)
		return
	case a.Code == "expireToken":
		result["sendResult"], result["expireTokens"] = false, []string{token}
	case a.Code == "failToken":
		result["sendResult"], result["failTokens"] = false, []string{token}
	case a.Code != "":
		code, _ := strconv.Atoi(a.Code)
		status := http.StatusOK
		switch {
		case strings.HasPrefix(a.Code, "802"):
			status = http.StatusUnauthorized
		case strings.HasPrefix(a.Code, "810"):
			status = http.StatusInternalServerError
		}
		fail(w, status, code, "fake answer "+a.Code)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"code": 200, "message": "success", "data": result})
}
