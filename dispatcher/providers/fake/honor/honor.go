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
	"encoding/json"
	"io"
	"math/big"
	"net/http"
	"strconv"
	"time"

	"github.com/imcloud/im-push-operator/dispatcher/config"
	"github.com/imcloud/im-push-operator/dispatcher/providers/fake"
	"github.com/imcloud/im-push-operator/dispatcher/providers/fake/internal/hms"
)

// TokenLifetime is the expires_in of issued access tokens.
const TokenLifetime = hms.TokenLifetime

// TimestampWindow is how far a send's timestamp header may be from the
// fake's clock (Honor's own window is not documented).
const TimestampWindow = 5 * time.Minute

// Server is a running Honor fake.
type Server struct {
	*fake.Server
	*hms.Auth
}

// Start serves the fake on a TLS server whose certificate chains to ca.
func Start(ca *fake.CA) (*Server, error) {
	s := &Server{Auth: hms.NewAuth("hn", hms.TokenErrors{
		BadRequest:      map[string]string{"error": "invalid_request", "error_description": "form body expected"},
		BadGrant:        map[string]string{"error": "unsupported_grant_type", "error_description": "Unsupported grant_type"},
		BadClient:       map[string]string{"error": "invalid_client", "error_description": "Invalid client credentials"},
		BadClientStatus: http.StatusUnauthorized,
	})}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /auth/realms/developer/protocol/openid-connect/token", s.Token)
	mux.HandleFunc("POST /api/v1/{app}/sendMessage", s.send)
	srv, err := fake.Start(ca, fake.NewState(string(config.Honor)), mux)
	if err != nil {
		return nil, err
	}
	s.Server = srv
	return s, nil
}

// Allow registers cert's client id, secret and App ID as valid.
func (s *Server) Allow(cert *config.Certificate) {
	s.Register(cert.Honor.ClientID, string(cert.Data[config.KeyClientSecret]), cert.Honor.AppID)
}

// TestCredential returns Secret data and a spec for a new credential; an
// empty appID gets a random numeric one, and the client id is random.
func TestCredential(appID string) (map[string][]byte, *config.HonorSpec) {
	if appID == "" {
		n, _ := rand.Int(rand.Reader, big.NewInt(900000000))
		appID = strconv.FormatInt(100000000+n.Int64(), 10)
	}
	return map[string][]byte{config.KeyClientSecret: []byte(fake.RandomHex(32))},
		&config.HonorSpec{AppID: appID, ClientID: fake.RandomHex(16)}
}

// Certificate makes a new credential, allows it, and returns a certificate
// named name that points at this fake.
func (s *Server) Certificate(name string) *config.Certificate {
	data, spec := TestCredential("")
	cert := s.NewCertificate(name, config.Honor, data)
	cert.Honor = spec
	s.Allow(cert)
	return cert
}

// authorize checks bearer and timestamp; it returns the HTTP status and code
// of the failure, or 0.
func (s *Server) authorize(r *http.Request) (int, int) {
	if code := s.Authorize(r); code != 0 {
		return http.StatusUnauthorized, code
	}
	ms, err := strconv.ParseInt(r.Header.Get("timestamp"), 10, 64)
	if err != nil {
		return http.StatusBadRequest, hms.CodeMissing
	}
	if skew := s.Now().Sub(time.UnixMilli(ms)); skew > TimestampWindow || skew < -TimestampWindow {
		return http.StatusBadRequest, hms.CodeMissing
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
	fake.WriteJSON(w, status, map[string]any{"code": code, "message": msg})
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
		fail(w, http.StatusBadRequest, hms.CodeBadMessage, "illegal message structure")
		return
	}
	dataText, code, msg := hms.CheckBody(raw, req.Data, req.Token)
	if code != 0 {
		fail(w, http.StatusBadRequest, code, msg)
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
	if fake.AnswerBare(w, a) {
		return
	}
	result := map[string]any{"sendResult": true, "requestId": fake.RandomHex(8), "failTokens": []string{}, "expireTokens": []string{}}
	switch a.Code {
	case "":
	case "expireToken":
		result["sendResult"], result["expireTokens"] = false, []string{token}
	case "failToken":
		result["sendResult"], result["failTokens"] = false, []string{token}
	default:
		code, _ := strconv.Atoi(a.Code)
		fail(w, hms.Status(a.Code, http.StatusOK), code, "fake answer "+a.Code)
		return
	}
	fake.WriteJSON(w, http.StatusOK, map[string]any{"code": 200, "message": "success", "data": result})
}
