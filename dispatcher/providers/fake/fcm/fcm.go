// Package fcm is a local fake of Google's OAuth2 token endpoint and FCM HTTP
// v1 on one TLS server:
//
//   - POST /token takes the JWT-bearer grant a service account makes. The
//     assertion must be RS256-signed by the key of a service account
//     registered with Allow, with iss = its client_email, aud = this
//     endpoint's URL, a scope that includes firebase.messaging, and a
//     lifetime of at most an hour that includes now. It answers an opaque
//     access token valid for an hour.
//   - POST /v1/projects/{project}/messages:send needs a Bearer token issued
//     by /token, unexpired, for a service account of that project.
//
// Answer codes it knows (fake.Answer.Code), each with FCM's status and error
// body: "" success ({"name": ...}); UNREGISTERED (404); INVALID_ARGUMENT
// (400, "The registration token is not a valid FCM registration token");
// INVALID_PAYLOAD (400 INVALID_ARGUMENT about the payload); SENDER_ID_MISMATCH
// (403); QUOTA_EXCEEDED (429 with the FcmError detail); RESOURCE_EXHAUSTED
// (429 project quota, google.rpc.ErrorInfo detail only); UNAVAILABLE (503);
// INTERNAL (500); THIRD_PARTY_AUTH_ERROR (401); UNAUTHENTICATED (401, no
// FcmError detail); PERMISSION_DENIED (403, no FcmError detail); "status:NNN"
// a bare status; "reset" aborts the stream. Answer.RetryAfter sets
// Retry-After. An unknown code answers 400 INVALID_ARGUMENT.
package fcm

import (
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v4"

	"github.com/imcloud/im-push-operator/dispatcher/config"
	"github.com/imcloud/im-push-operator/dispatcher/providers/fake"
)

// Provider is the name the fake records sends under.
const Provider = "FCM"

const (
	scope          = "https://www.googleapis.com/auth/firebase.messaging"
	grantType      = "urn:ietf:params:oauth:grant-type:jwt-bearer"
	accessLifetime = time.Hour
	// maxAssertion is the longest assertion lifetime Google accepts.
	maxAssertion = time.Hour
	// skew is the clock difference tolerated on iat.
	skew = 5 * time.Minute
)

// Server is a running FCM fake.
type Server struct {
	*fake.Server
	fake.Clock

	mu       sync.Mutex
	accounts map[string]account // by client_email
	tokens   map[string]issued  // by access token
	issued   int
	rejected int
}

type account struct {
	key       *rsa.PublicKey
	projectID string
}

type issued struct {
	email     string
	projectID string
	expires   time.Time
}

// Start serves the fake on a TLS server with a certificate from ca.
func Start(ca *fake.CA) (*Server, error) {
	s := &Server{accounts: map[string]account{}, tokens: map[string]issued{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /token", s.token)
	mux.HandleFunc("POST /v1/projects/{project}/messages:send", s.send)
	srv, err := fake.Start(ca, fake.NewState(Provider), mux)
	if err != nil {
		return nil, err
	}
	s.Server = srv
	return s, nil
}

// Allow registers a service account (its public key and project: the spec's
// projectID, else the JSON's project_id). A service account that cannot be
// parsed registers nothing, so its token requests fail as at Google.
func (s *Server) Allow(cert *config.Certificate) {
	var sa struct {
		ProjectID   string `json:"project_id"`
		ClientEmail string `json:"client_email"`
		PrivateKey  string `json:"private_key"`
	}
	if json.Unmarshal(cert.Data[config.KeyFCMServiceAcct], &sa) != nil {
		return
	}
	key, err := jwt.ParseRSAPrivateKeyFromPEM([]byte(sa.PrivateKey))
	if err != nil {
		return
	}
	project := sa.ProjectID
	if cert.FCM != nil && cert.FCM.ProjectID != "" {
		project = cert.FCM.ProjectID
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.accounts[sa.ClientEmail] = account{key: &key.PublicKey, projectID: project}
}

// TokensIssued returns how many access tokens /token has issued.
func (s *Server) TokensIssued() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.issued
}

// Rejected returns how many sends were refused for authentication (they are
// not recorded in State).
func (s *Server) Rejected() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rejected
}

// ExpireTokens makes every access token issued so far expired, as if an hour
// had passed at Google.
func (s *Server) ExpireTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for t := range s.tokens {
		s.tokens[t] = issued{}
	}
}

// Certificate returns an FCM certificate pointing at this fake (endpoint and
// caBundle set) with the given Secret data and spec.
func (s *Server) Certificate(name string, data map[string][]byte, spec *config.FCMSpec) *config.Certificate {
	cert := s.NewCertificate(name, config.FCM, data)
	cert.Fingerprint, cert.FCM = config.Fingerprint(data), spec
	return cert
}

func oauthError(w http.ResponseWriter, status int, code, description string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": description})
}

// token implements the JWT-bearer grant (RFC 7523) as oauth2.googleapis.com does.
func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil || r.PostForm.Get("grant_type") != grantType {
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type", "Invalid grant_type: "+r.PostForm.Get("grant_type"))
		return
	}
	var acct account
	var email string
	claims := jwt.MapClaims{}
	parser := jwt.NewParser(jwt.WithValidMethods([]string{"RS256"}), jwt.WithoutClaimsValidation())
	_, err := parser.ParseWithClaims(r.PostForm.Get("assertion"), claims, func(t *jwt.Token) (any, error) {
		email, _ = claims["iss"].(string)
		s.mu.Lock()
		a, ok := s.accounts[email]
		s.mu.Unlock()
		if !ok {
			return nil, fmt.Errorf("unknown service account")
		}
		acct = a
		return a.key, nil
	})
	if err != nil {
		if acct.key == nil {
			oauthError(w, http.StatusUnauthorized, "invalid_client", "The OAuth client was not found.")
			return
		}
		oauthError(w, http.StatusBadRequest, "invalid_grant", "Invalid JWT Signature.")
		return
	}
	now := s.Now()
	iat, exp := claimTime(claims, "iat"), claimTime(claims, "exp")
	switch {
	case claims["aud"] != s.URL+"/token":
		oauthError(w, http.StatusBadRequest, "invalid_grant", "Invalid JWT: Failed audience check.")
		return
	case iat.IsZero() || exp.IsZero() || exp.Sub(iat) > maxAssertion || now.Before(iat.Add(-skew)) || !now.Before(exp):
		oauthError(w, http.StatusBadRequest, "invalid_grant", "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.")
		return
	case !hasScope(claims["scope"], scope):
		oauthError(w, http.StatusBadRequest, "invalid_scope", "Invalid OAuth scope or ID token audience provided.")
		return
	}
	tok := "ya29.fake-" + fake.RandomHex(24)
	s.mu.Lock()
	s.tokens[tok] = issued{email: email, projectID: acct.projectID, expires: now.Add(accessLifetime)}
	s.issued++
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"access_token": tok, "expires_in": int(accessLifetime/time.Second) - 1, "token_type": "Bearer",
	})
}

func claimTime(c jwt.MapClaims, name string) time.Time {
	if f, ok := c[name].(float64); ok {
		return time.Unix(int64(f), 0)
	}
	return time.Time{}
}

func hasScope(v any, want string) bool {
	s, _ := v.(string)
	for _, sc := range strings.Fields(s) {
		if sc == want {
			return true
		}
	}
	return false
}

// fcmDetail is the FcmError detail the Admin SDK reads the errorCode from.
func fcmDetail(code string) map[string]string {
	return map[string]string{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": code}
}

type googleError struct {
	status  int
	grpc    string
	message string
	details []map[string]string
}

// errorsByCode are FCM's answers for each scriptable code.
var errorsByCode = map[string]googleError{
	"UNREGISTERED":           {404, "NOT_FOUND", "Requested entity was not found.", []map[string]string{fcmDetail("UNREGISTERED")}},
	"INVALID_ARGUMENT":       {400, "INVALID_ARGUMENT", "The registration token is not a valid FCM registration token", []map[string]string{fcmDetail("INVALID_ARGUMENT")}},
	"INVALID_PAYLOAD":        {400, "INVALID_ARGUMENT", "Invalid value at 'message.android.ttl' (type.googleapis.com/google.protobuf.Duration), Field 'ttl', Illegal duration format", []map[string]string{fcmDetail("INVALID_ARGUMENT")}},
	"SENDER_ID_MISMATCH":     {403, "PERMISSION_DENIED", "SenderId mismatch", []map[string]string{fcmDetail("SENDER_ID_MISMATCH")}},
	"QUOTA_EXCEEDED":         {429, "RESOURCE_EXHAUSTED", "Quota exceeded for message rate to this device.", []map[string]string{fcmDetail("QUOTA_EXCEEDED")}},
	"RESOURCE_EXHAUSTED":     {429, "RESOURCE_EXHAUSTED", "Quota exceeded for quota metric 'Send requests' and limit 'Send requests per minute'.", []map[string]string{{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "RATE_LIMIT_EXCEEDED", "domain": "googleapis.com"}}},
	"UNAVAILABLE":            {503, "UNAVAILABLE", "The service is currently unavailable.", []map[string]string{fcmDetail("UNAVAILABLE")}},
	"INTERNAL":               {500, "INTERNAL", "Internal error encountered.", []map[string]string{fcmDetail("INTERNAL")}},
	"THIRD_PARTY_AUTH_ERROR": {401, "UNAUTHENTICATED", "Auth error from APNS or Web Push Service", []map[string]string{fcmDetail("THIRD_PARTY_AUTH_ERROR")}},
	"UNAUTHENTICATED":        {401, "UNAUTHENTICATED", "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.", nil},
	"PERMISSION_DENIED":      {403, "PERMISSION_DENIED", "Permission 'cloudmessaging.messages.create' denied on resource (or it may not exist).", nil},
}

func (s *Server) fail(w http.ResponseWriter, e googleError, retryAfter time.Duration) {
	if retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(retryAfter/time.Second)))
	}
	body := map[string]any{"code": e.status, "message": e.message, "status": e.grpc}
	if e.details != nil {
		body["details"] = e.details
	}
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(e.status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": body})
}

// authorize checks the bearer token against the tokens /token issued.
func (s *Server) authorize(r *http.Request, project string) (string, *googleError) {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	now := s.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	is, known := s.tokens[tok]
	switch {
	case !ok || !known || !now.Before(is.expires):
		s.rejected++
		e := errorsByCode["UNAUTHENTICATED"]
		return "", &e
	case is.projectID != project:
		s.rejected++
		e := errorsByCode["PERMISSION_DENIED"]
		e.message = fmt.Sprintf("Permission 'cloudmessaging.messages.create' denied on resource '//cloudresourcemanager.googleapis.com/projects/%s' (or it may not exist).", project)
		return "", &e
	}
	return is.email, nil
}

// wireMessage is the part of an FCM v1 message the fake reads.
type wireMessage struct {
	ValidateOnly bool `json:"validate_only"`
	Message      struct {
		Token        string            `json:"token"`
		Topic        string            `json:"topic"`
		Condition    string            `json:"condition"`
		Data         map[string]string `json:"data"`
		Notification *struct {
			Title string `json:"title"`
			Body  string `json:"body"`
		} `json:"notification"`
		Android *struct {
			Priority     string `json:"priority"`
			TTL          string `json:"ttl"`
			CollapseKey  string `json:"collapse_key"`
			Notification *struct {
				Tag               string `json:"tag"`
				ChannelID         string `json:"channel_id"`
				Sound             string `json:"sound"`
				NotificationCount *int   `json:"notification_count"`
			} `json:"notification"`
		} `json:"android"`
		APNS *struct {
			Headers map[string]string `json:"headers"`
			Payload struct {
				Aps struct {
					Badge            *int   `json:"badge"`
					Sound            string `json:"sound"`
					ThreadID         string `json:"thread-id"`
					ContentAvailable int    `json:"content-available"`
				} `json:"aps"`
			} `json:"payload"`
		} `json:"apns"`
	} `json:"message"`
}

func (s *Server) send(w http.ResponseWriter, r *http.Request) {
	project := r.PathValue("project")
	email, authErr := s.authorize(r, project)
	if authErr != nil {
		s.fail(w, *authErr, 0)
		return
	}
	var req wireMessage
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&req); err != nil {
		e := errorsByCode["INVALID_PAYLOAD"]
		e.message = "Invalid JSON payload received. " + err.Error()
		s.fail(w, e, 0)
		return
	}
	m := req.Message
	if m.Token == "" {
		e := errorsByCode["INVALID_PAYLOAD"]
		e.message = "Recipient of the message is not set."
		s.fail(w, e, 0)
		return
	}
	rec := fake.Received{Token: m.Token, Data: m.Data, Fields: map[string]string{"project": project, "account": email}}
	if req.ValidateOnly {
		rec.Fields["validate_only"] = "true"
	}
	if m.Notification != nil {
		rec.Title, rec.Body = m.Notification.Title, m.Notification.Body
	}
	if a := m.Android; a != nil {
		set(rec.Fields, "android.priority", a.Priority)
		set(rec.Fields, "android.ttl", a.TTL)
		set(rec.Fields, "android.collapse_key", a.CollapseKey)
		if n := a.Notification; n != nil {
			set(rec.Fields, "android.notification.tag", n.Tag)
			set(rec.Fields, "android.notification.channel_id", n.ChannelID)
			set(rec.Fields, "android.notification.sound", n.Sound)
			if n.NotificationCount != nil {
				rec.Fields["android.notification.notification_count"] = strconv.Itoa(*n.NotificationCount)
			}
		}
	}
	if a := m.APNS; a != nil {
		for k, v := range a.Headers {
			set(rec.Fields, "apns.headers."+k, v)
		}
		aps := a.Payload.Aps
		if aps.Badge != nil {
			rec.Fields["apns.aps.badge"] = strconv.Itoa(*aps.Badge)
		}
		set(rec.Fields, "apns.aps.sound", aps.Sound)
		set(rec.Fields, "apns.aps.thread-id", aps.ThreadID)
		if aps.ContentAvailable != 0 {
			rec.Fields["apns.aps.content-available"] = strconv.Itoa(aps.ContentAvailable)
		}
	}

	a := s.State.Next(m.Token)
	rec.Answered = a.Code
	s.State.Pause(r, a)
	s.State.Record(rec)
	switch {
	case a.Code == "":
		w.Header().Set("Content-Type", "application/json; charset=UTF-8")
		_ = json.NewEncoder(w).Encode(map[string]string{"name": "projects/" + project + "/messages/0:" + fake.RandomHex(8)})
	case a.Code == "reset":
		fake.Abort()
	case strings.HasPrefix(a.Code, "status:"):
		code, err := strconv.Atoi(strings.TrimPrefix(a.Code, "status:"))
		if err != nil {
			code = http.StatusInternalServerError
		}
		if a.RetryAfter > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(int(a.RetryAfter/time.Second)))
		}
		w.WriteHeader(code)
	default:
		e, ok := errorsByCode[a.Code]
		if !ok {
			e = googleError{400, "INVALID_ARGUMENT", a.Code, []map[string]string{fcmDetail("INVALID_ARGUMENT")}}
		}
		s.fail(w, e, a.RetryAfter)
	}
}

func set(m map[string]string, k, v string) {
	if v != "" {
		m[k] = v
	}
}
