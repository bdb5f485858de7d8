// Package huawei is a local fake of Huawei Push Kit: the OAuth token endpoint
// (POST /oauth2/v3/token) and the v1 send endpoint
// (POST /v1/{appId}/messages:send) on one TLS server.
//
// Authentication is checked as Huawei does: the token endpoint wants
// grant_type=client_credentials and a client_id/client_secret pair registered
// with Allow; it issues random access tokens valid for TokenLifetime by the
// fake's clock (SetClock). A send needs "Authorization: Bearer <token>" with a
// token this fake issued for the App ID in the path: an unknown token or one
// of another app is answered 401 code 80200001, an expired one 401 code
// 80200003, so a client's refresh can be proven with an injected clock.
//
// The body is checked too: message.token non-empty (else 80100001),
// message.data a JSON string (else 80100003), the whole request without its
// tokens at most 4096 bytes (else 80300008). Accepted sends are recorded with
// Fields app_id, category, ttl, notify_id, tag, click_action_type,
// badge_set_num and badge_class (when present); Data is message.data decoded
// as a JSON object.
//
// Answer codes (fake.Answer.Code) for a token:
//   - "" success: 200 {"code":"80000000","msg":"Success"}
//   - "80100000": partial success, msg lists the token in illegal_tokens
//   - "80200001", "80200003", "80200005": HTTP 401 with that code
//   - "81000001" and any other "810…" code: HTTP 500 with that code
//   - any other code ("80300007", "80300002", "80100003", "80600003",
//     "80100017", ...): HTTP 400 {"code":<code>,"msg":...}; Huawei does not
//     document the status of each code, clients must read the body
//   - "status:NNN": a bare HTTP status, no body (e.g. "status:503" flow control)
//   - "reset": the stream is aborted
//
// Retry-After is set on any answer whose RetryAfter is non-zero.
package huawei

import (
	"crypto/rand"
	"encoding/json"
	"io"
	"math/big"
	"net/http"
	"strconv"

	"github.com/imcloud/im-push-operator/dispatcher/config"
	"github.com/imcloud/im-push-operator/dispatcher/providers/fake"
	"github.com/imcloud/im-push-operator/dispatcher/providers/fake/internal/hms"
)

// TokenLifetime is the expires_in of issued access tokens.
const TokenLifetime = hms.TokenLifetime

// Server is a running Huawei fake.
type Server struct {
	*fake.Server
	*hms.Auth
}

// Start serves the fake on a TLS server whose certificate chains to ca.
func Start(ca *fake.CA) (*Server, error) {
	// Huawei's token errors: {"error":<n>,"sub_error":<n>,"error_description":...}.
	s := &Server{Auth: hms.NewAuth("hw", hms.TokenErrors{
		BadRequest:      map[string]any{"error": 1102, "sub_error": 20001, "error_description": "invalid request"},
		BadGrant:        map[string]any{"error": 1102, "sub_error": 20003, "error_description": "unsupported grant_type"},
		BadClient:       map[string]any{"error": 1101, "sub_error": 20152, "error_description": "invalid client"},
		BadClientStatus: http.StatusBadRequest,
	})}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /oauth2/v3/token", s.Token)
	mux.HandleFunc("POST /v1/{app}/messages:send", s.send)
	srv, err := fake.Start(ca, fake.NewState(string(config.Huawei)), mux)
	if err != nil {
		return nil, err
	}
	s.Server = srv
	return s, nil
}

// Allow registers cert's client id, secret and App ID as valid.
func (s *Server) Allow(cert *config.Certificate) {
	spec := cert.Huawei
	id := spec.ClientID
	if id == "" {
		id = spec.AppID
	}
	s.Register(id, string(cert.Data[config.KeyClientSecret]), spec.AppID)
}

// TestCredential returns Secret data and a spec for a new credential; an
// empty appID gets a random numeric one.
func TestCredential(appID string) (map[string][]byte, *config.HuaweiSpec) {
	if appID == "" {
		n, _ := rand.Int(rand.Reader, big.NewInt(900000000))
		appID = strconv.FormatInt(100000000+n.Int64(), 10)
	}
	return map[string][]byte{config.KeyClientSecret: []byte(fake.RandomHex(32))}, &config.HuaweiSpec{AppID: appID}
}

// Certificate makes a new credential, allows it, and returns a certificate
// named name that points at this fake.
func (s *Server) Certificate(name string) *config.Certificate {
	data, spec := TestCredential("")
	cert := s.NewCertificate(name, config.Huawei, data)
	cert.Huawei = spec
	s.Allow(cert)
	return cert
}

func fail(w http.ResponseWriter, status, code int, msg string) {
	fake.WriteJSON(w, status, map[string]string{"code": strconv.Itoa(code), "msg": msg, "requestId": fake.RandomHex(8)})
}

type sendRequest struct {
	ValidateOnly bool `json:"validate_only"`
	Message      struct {
		Data    json.RawMessage `json:"data"`
		Android struct {
			Category     string `json:"category"`
			TTL          string `json:"ttl"`
			Notification *struct {
				Title       string `json:"title"`
				Body        string `json:"body"`
				ClickAction struct {
					Type int `json:"type"`
				} `json:"click_action"`
				NotifyID *int64 `json:"notify_id"`
				Tag      string `json:"tag"`
				Badge    *struct {
					SetNum *int   `json:"set_num"`
					Class  string `json:"class"`
				} `json:"badge"`
			} `json:"notification"`
		} `json:"android"`
		Token []string `json:"token"`
	} `json:"message"`
}

func (s *Server) send(w http.ResponseWriter, r *http.Request) {
	if code := s.Authorize(r); code != 0 {
		fail(w, http.StatusUnauthorized, code, "Oauth authentication error")
		return
	}
	raw, err := io.ReadAll(r.Body)
	if err != nil {
		fake.Abort()
	}
	var req sendRequest
	if err := json.Unmarshal(raw, &req); err != nil {
		fail(w, http.StatusBadRequest, hms.CodeBadMessage, "Illegal message structure")
		return
	}
	m := &req.Message
	dataText, code, msg := hms.CheckBody(raw, m.Data, m.Token)
	if code != 0 {
		fail(w, http.StatusBadRequest, code, msg)
		return
	}

	token := m.Token[0]
	a := s.State.Next(token)
	s.State.Record(received(r.PathValue("app"), token, dataText, &req, a.Code))
	s.State.Pause(r, a)
	answer(w, a, token)
}

func received(appID, token, dataText string, req *sendRequest, code string) fake.Received {
	rec := fake.Received{Token: token, Answered: code, Fields: map[string]string{"app_id": appID}}
	an := &req.Message.Android
	set := func(k, v string) {
		if v != "" {
			rec.Fields[k] = v
		}
	}
	set("category", an.Category)
	set("ttl", an.TTL)
	if n := an.Notification; n != nil {
		rec.Title, rec.Body = n.Title, n.Body
		set("click_action_type", strconv.Itoa(n.ClickAction.Type))
		set("tag", n.Tag)
		if n.NotifyID != nil {
			set("notify_id", strconv.FormatInt(*n.NotifyID, 10))
		}
		if b := n.Badge; b != nil {
			if b.SetNum != nil {
				set("badge_set_num", strconv.Itoa(*b.SetNum))
			}
			set("badge_class", b.Class)
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
	body := map[string]string{"code": a.Code, "msg": "fake answer " + a.Code, "requestId": fake.RandomHex(8)}
	switch a.Code {
	case "":
		body["code"], body["msg"] = "80000000", "Success"
		fake.WriteJSON(w, http.StatusOK, body)
	case "80100000":
		msg, _ := json.Marshal(map[string]any{"success": 0, "failure": 1, "illegal_tokens": []string{token}})
		body["msg"] = string(msg)
		fake.WriteJSON(w, http.StatusOK, body)
	default:
		fake.WriteJSON(w, hms.Status(a.Code, http.StatusBadRequest), body)
	}
}
