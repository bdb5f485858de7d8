// Package oppo is a local fake of OPPO Push (providers.md §6): the auth call
// and the unicast notification send, on one TLS server.
//
// Authentication is checked as OPPO does: the auth form's sign must be the
// lowercase hex SHA-256 of app_key + timestamp + master secret, recomputed
// here from the raw form values, and the 13-digit millisecond timestamp must
// lie within 10 minutes of the fake's clock (SetClock); sends must carry an
// auth_token this fake issued, unexpired (24 h), as a form field.
// Auth failures answer OPPO's own codes: 15 missing / 14 unknown app_key,
// 18 missing / 19 invalid timestamp, 17 missing / 16 wrong sign, 29 missing /
// 11 invalid or expired auth_token. Malformed messages answer 40 (missing
// argument), 41 (invalid argument) or 67 (notify_level without category).
//
// Answer codes a test may script (fake.Answer.Code): "" success; any OPPO
// integer code, answered as {"code":N,"message":...} with HTTP 200, among
// them "10000" (invalid registration_id), "33" (daily limit), "11"/"29"
// (auth_token invalid/missing), "-1"/"-2" (unavailable / flow control),
// "13"/"55" (call limits), "14"-"19", "26"-"30", "59" (credentials),
// "40"/"41"/"51"/"67" (bad message); "status:NNN" a bare HTTP status;
// "reset" an aborted exchange. Any other code answers HTTP 400 so a typo in a
// test shows.
package oppo

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/imcloud/im-push-operator/dispatcher/config"
	"github.com/imcloud/im-push-operator/dispatcher/providers/fake"
)

// Paths and limits as OPPO serves them.
const (
	authPath = "/server/v1/auth"
	sendPath = "/server/v1/message/notification/unicast"

	timestampWindow = 10 * time.Minute
	tokenLifetime   = 24 * time.Hour
	maxTitle        = 50
	maxContent      = 50
	maxActionJSON   = 4000
)

var messages = map[int]string{
	0:     "Success",
	-2:    "Service in Flow Control",
	-1:    "Service Currently Unavailable",
	11:    "Invalid AuthToken",
	13:    "App Call Limited",
	14:    "Invalid App Key",
	15:    "Missing App Key",
	16:    "Invalid Signature",
	17:    "Missing Signature",
	18:    "Missing Timestamp",
	19:    "Invalid Timestamp",
	26:    "IP Blacklist",
	27:    "Access Denied",
	28:    "App Disabled",
	29:    "Missing Auth Token",
	30:    "Api Permission Denied",
	33:    "The number of messages exceeds the daily limit",
	40:    "Missing Required Arguments",
	41:    "Invalid Arguments",
	51:    "Invalid Picture",
	55:    "Frequency Limited",
	59:    "No Push Permission",
	67:    "Invalid category or notify_level",
	10000: "Invalid Registration Id",
}

// Server is a running OPPO fake.
type Server struct {
	*fake.Server

	*fake.Tokens

	mu   sync.Mutex
	apps map[string]string // app key → master secret
}

// Start serves the fake on a TLS server with a certificate from ca.
func Start(ca *fake.CA) (*Server, error) {
	s := &Server{Tokens: fake.NewTokens(tokenLifetime), apps: map[string]string{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+authPath, s.auth)
	mux.HandleFunc("POST "+sendPath, s.send)
	srv, err := fake.Start(ca, fake.NewState(string(config.OPPO)), mux)
	if err != nil {
		return nil, err
	}
	s.Server = srv
	return s, nil
}

// Allow registers the certificate's app key and master secret as valid.
func (s *Server) Allow(cert *config.Certificate) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.apps[string(cert.Data[config.KeyAppKey])] = string(cert.Data[config.KeyMasterSecret])
}

// TestCredential returns Secret data and a spec for a test credential derived
// from name: stable across runs, distinct per name.
func TestCredential(name string) (map[string][]byte, *config.OPPOSpec) {
	sum := sha256.Sum256([]byte("fake-oppo/" + name))
	h := hex.EncodeToString(sum[:])
	return map[string][]byte{
		config.KeyAppKey:       []byte(h[:24]),
		config.KeyMasterSecret: []byte(h[24:56]),
	}, &config.OPPOSpec{ChannelID: "im"}
}

// Certificate returns a certificate named name that points at this fake,
// trusts its CA and holds a test credential the fake accepts.
func (s *Server) Certificate(name string) *config.Certificate {
	data, spec := TestCredential(name)
	cert := s.NewCertificate(name, config.OPPO, data)
	cert.OPPO = spec
	s.Allow(cert)
	return cert
}

// expectedSign is OPPO's auth signature over the raw form values.
func expectedSign(appKey, timestamp, masterSecret string) string {
	sum := sha256.Sum256([]byte(appKey + timestamp + masterSecret))
	return hex.EncodeToString(sum[:])
}

// checkAuth verifies an auth form and returns the OPPO code it earns.
func (s *Server) checkAuth(appKey, timestamp, sign string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	secret, known := s.apps[appKey]
	switch {
	case appKey == "":
		return 15
	case !known:
		return 14
	case timestamp == "":
		return 18
	}
	ms, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil || len(timestamp) != 13 {
		return 19
	}
	if d := s.Now().Sub(time.UnixMilli(ms)); d > timestampWindow || d < -timestampWindow {
		return 19
	}
	switch {
	case sign == "":
		return 17
	case sign != expectedSign(appKey, timestamp, secret):
		return 16
	}
	return 0
}

func (s *Server) auth(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		reply(w, 40, nil)
		return
	}
	appKey := r.PostForm.Get("app_key")
	if code := s.checkAuth(appKey, r.PostForm.Get("timestamp"), r.PostForm.Get("sign")); code != 0 {
		reply(w, code, nil)
		return
	}
	token := fake.RandomHex(16)
	now := s.Issue(token, appKey)
	reply(w, 0, map[string]any{"auth_token": token, "create_time": now.UnixMilli()})
}

// tokenCode checks a send's auth_token and returns the OPPO code it earns.
func (s *Server) tokenCode(token string) (appKey string, code int) {
	if token == "" {
		return "", 29
	}
	appKey, _, live := s.Check(token)
	if !live {
		return "", 11
	}
	return appKey, 0
}

type notification struct {
	Title            string `json:"title"`
	Content          string `json:"content"`
	ChannelID        string `json:"channel_id"`
	Category         string `json:"category"`
	NotifyLevel      int    `json:"notify_level"`
	NotifyID         *int64 `json:"notify_id"`
	ClickActionType  int    `json:"click_action_type"`
	ActionParameters string `json:"action_parameters"`
	OffLine          bool   `json:"off_line"`
	OffLineTTL       int64  `json:"off_line_ttl"`
}

type message struct {
	TargetType   int           `json:"target_type"`
	TargetValue  string        `json:"target_value"`
	Notification *notification `json:"notification"`
}

// validate returns the OPPO code a message earns before any scripted answer.
func validate(m *message) (data map[string]string, code int) {
	n := m.Notification
	switch {
	case m.TargetType != 2:
		return nil, 41 // this fake serves registration-id targets only
	case m.TargetValue == "" || n == nil || n.Title == "" || n.Content == "":
		return nil, 40
	case utf8.RuneCountInString(n.Title) > maxTitle || utf8.RuneCountInString(n.Content) > maxContent:
		return nil, 41
	case n.NotifyLevel != 0 && n.Category == "":
		return nil, 67
	case len(n.ActionParameters) > maxActionJSON:
		return nil, 41
	}
	if n.ActionParameters != "" {
		if err := json.Unmarshal([]byte(n.ActionParameters), &data); err != nil {
			return nil, 41
		}
	}
	return data, 0
}

func (s *Server) send(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		reply(w, 40, nil)
		return
	}
	appKey, code := s.tokenCode(r.PostForm.Get("auth_token"))
	if code != 0 {
		reply(w, code, nil)
		return
	}
	raw := r.PostForm.Get("message")
	if raw == "" {
		reply(w, 40, nil)
		return
	}
	var m message
	if err := json.Unmarshal([]byte(raw), &m); err != nil {
		reply(w, 41, nil)
		return
	}
	data, code := validate(&m)
	if code != 0 {
		reply(w, code, nil)
		return
	}
	a := s.State.Next(m.TargetValue)
	s.State.Pause(r, a)
	n := m.Notification
	notifyID := ""
	if n.NotifyID != nil {
		notifyID = strconv.FormatInt(*n.NotifyID, 10)
	}
	s.State.Record(fake.Received{
		Token: m.TargetValue,
		Title: n.Title,
		Body:  n.Content,
		Data:  data,
		Fields: map[string]string{
			"app_key":           appKey,
			"channel_id":        n.ChannelID,
			"category":          n.Category,
			"notify_level":      strconv.Itoa(n.NotifyLevel),
			"notify_id":         notifyID,
			"click_action_type": strconv.Itoa(n.ClickActionType),
			"off_line":          strconv.FormatBool(n.OffLine),
			"off_line_ttl":      strconv.FormatInt(n.OffLineTTL, 10),
		},
		Answered: a.Code,
	})
	if fake.AnswerBare(w, a) {
		return
	}
	if a.Code == "" {
		reply(w, 0, map[string]any{"messageId": fake.RandomHex(12)})
		return
	}
	code, err := strconv.Atoi(a.Code)
	if err != nil {
		http.Error(w, "fake oppo: unknown answer code "+a.Code, http.StatusBadRequest)
		return
	}
	reply(w, code, nil)
}

// reply writes OPPO's envelope; OPPO answers errors with HTTP 200 too.
func reply(w http.ResponseWriter, code int, data any) {
	msg, ok := messages[code]
	if !ok {
		msg = fmt.Sprintf("error %d", code)
	}
	body := map[string]any{"code": code, "message": msg}
	if data != nil {
		body["data"] = data
	}
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	_ = json.NewEncoder(w).Encode(body)
}
