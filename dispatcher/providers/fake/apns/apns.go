// Package apns is a local fake of the APNs provider API: an HTTP/2 TLS server
// on POST /3/device/{token} that authenticates like APNs (an ES256 provider
// token whose kid, iss and iat are checked against the keys registered with
// Allow, or a TLS client certificate that chains to a registered one), checks
// the request headers, records accepted sends and answers with APNs' own
// statuses and reasons.
//
// Answer codes it knows (fake.Answer.Code): "" success (200 with apns-id);
// "Unregistered" and "ExpiredToken" (410 with a timestamp); BadCollapseId,
// BadDeviceToken, BadExpirationDate, BadMessageId, BadPriority, BadTopic,
// DeviceTokenNotForTopic, DuplicateHeaders, IdleTimeout, InvalidPushType,
// MissingDeviceToken, MissingTopic, PayloadEmpty, TopicDisallowed (400);
// BadCertificate, BadCertificateEnvironment, ExpiredProviderToken, Forbidden,
// InvalidProviderToken, MissingProviderToken (403); BadPath (404);
// MethodNotAllowed (405); PayloadTooLarge (413); TooManyProviderTokenUpdates,
// TooManyRequests (429); InternalServerError (500); ServiceUnavailable,
// Shutdown (503); "status:NNN" a bare status; "reset" aborts the stream.
// Answer.RetryAfter sets Retry-After. An unknown code answers 400 with it as
// the reason.
//
// Device tokens must be hexadecimal, as APNs requires; others get
// BadDeviceToken before any script is consulted.
package apns

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v4"
	"github.com/sideshow/apns2/token"

	"github.com/imcloud/im-push-operator/dispatcher/config"
	"github.com/imcloud/im-push-operator/dispatcher/providers/fake"
)

// Provider is the name the fake records sends under.
const Provider = "APNs"

// providerTokenLifetime: APNs refuses provider tokens issued more than an hour ago.
const providerTokenLifetime = time.Hour

var (
	hexToken      = regexp.MustCompile(`^[0-9a-fA-F]+$`)
	canonicalUUID = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
	pushTypes     = map[string]bool{"alert": true, "background": true, "voip": true, "complication": true, "fileprovider": true, "mdm": true, "liveactivity": true, "pushtotalk": true, "location": true}
)

// statusOf is the HTTP status APNs answers each reason with.
var statusOf = map[string]int{
	"BadCollapseId": 400, "BadDeviceToken": 400, "BadExpirationDate": 400, "BadMessageId": 400,
	"BadPriority": 400, "BadTopic": 400, "DeviceTokenNotForTopic": 400, "DuplicateHeaders": 400,
	"IdleTimeout": 400, "InvalidPushType": 400, "MissingDeviceToken": 400, "MissingTopic": 400,
	"PayloadEmpty": 400, "TopicDisallowed": 400,
	"BadCertificate": 403, "BadCertificateEnvironment": 403, "ExpiredProviderToken": 403,
	"Forbidden": 403, "InvalidProviderToken": 403, "MissingProviderToken": 403,
	"BadPath": 404, "MethodNotAllowed": 405, "ExpiredToken": 410, "Unregistered": 410,
	"PayloadTooLarge": 413, "TooManyProviderTokenUpdates": 429, "TooManyRequests": 429,
	"InternalServerError": 500, "ServiceUnavailable": 503, "Shutdown": 503,
}

// Server is a running APNs fake.
type Server struct {
	*fake.Server
	fake.Clock

	mu sync.Mutex
	// keys: signing keys by key id.
	keys map[string]signingKey
	// certs: registered client certificates (trust anchors) and the topics
	// each may push to, by SHA-256 of the certificate.
	certs map[[32]byte]certEntry
	// authFailures counts sends refused for authentication.
	authFailures int
}

type signingKey struct {
	pub    *ecdsa.PublicKey
	teamID string
	topics map[string]bool
}

type certEntry struct {
	cert   *x509.Certificate
	topics map[string]bool
}

// Start serves the fake on a TLS server with a certificate from ca. The
// server asks for a client certificate (without requiring one) so
// certificate authentication can be checked.
func Start(ca *fake.CA) (*Server, error) {
	s := &Server{keys: map[string]signingKey{}, certs: map[[32]byte]certEntry{}}
	srv, err := fake.Start(ca, fake.NewState(Provider), http.HandlerFunc(s.serve), func(c *tls.Config) {
		c.ClientAuth = tls.RequestClientCert
	})
	if err != nil {
		return nil, err
	}
	s.Server = srv
	return s, nil
}

// AuthFailures returns how many sends were refused for authentication
// (they are not recorded in State).
func (s *Server) AuthFailures() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.authFailures
}

// Allow registers a credential as valid: for token auth the public half of
// its .p8 under its key id and team; for certificate auth its client
// certificate (and any chain in the .p12) as a trust anchor. A credential
// that cannot be parsed registers nothing, so sends with it fail
// authentication as they would at Apple.
func (s *Server) Allow(cert *config.Certificate) {
	if cert.APNs == nil {
		return
	}
	spec := cert.APNs
	s.mu.Lock()
	defer s.mu.Unlock()
	switch spec.AuthType {
	case config.APNsToken:
		key, err := token.AuthKeyFromBytes(cert.Data[config.KeyAPNsAuthKey])
		if err != nil {
			return
		}
		s.keys[spec.KeyID] = signingKey{pub: &key.PublicKey, teamID: spec.TeamID, topics: topics(spec.BundleID)}
	case config.APNsCertificate:
		for _, c := range clientChain(cert.Data) {
			t := topics(spec.BundleID)
			if uid := subjectUID(c); uid != "" {
				t[uid] = true
			}
			s.certs[sha256.Sum256(c.Raw)] = certEntry{cert: c, topics: t}
		}
	}
}

// Revoke forgets a credential Allow registered, as revoking a key or a
// certificate at Apple does: sends with it then fail authentication.
func (s *Server) Revoke(cert *config.Certificate) {
	if cert.APNs == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch cert.APNs.AuthType {
	case config.APNsToken:
		delete(s.keys, cert.APNs.KeyID)
	case config.APNsCertificate:
		for _, c := range clientChain(cert.Data) {
			delete(s.certs, sha256.Sum256(c.Raw))
		}
	}
}

func topics(bundleID string) map[string]bool {
	t := map[string]bool{}
	if bundleID != "" {
		t[bundleID] = true
	}
	return t
}

// authenticate returns the topics the request may push to, or the 403
// reason APNs would answer.
func (s *Server) authenticate(r *http.Request) (map[string]bool, map[string]string, string) {
	now := s.Now()
	if auth := r.Header.Get("Authorization"); auth != "" {
		bearer, ok := strings.CutPrefix(auth, "bearer ")
		if !ok {
			return nil, nil, "MissingProviderToken"
		}
		return s.checkJWT(bearer, now)
	}
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		return s.checkCertificate(r.TLS.PeerCertificates, now)
	}
	return nil, nil, "MissingProviderToken"
}

func (s *Server) checkJWT(bearer string, now time.Time) (map[string]bool, map[string]string, string) {
	var (
		key signingKey
		kid string
	)
	claims := jwt.MapClaims{}
	parser := jwt.NewParser(jwt.WithValidMethods([]string{"ES256"}), jwt.WithoutClaimsValidation())
	_, err := parser.ParseWithClaims(bearer, claims, func(t *jwt.Token) (any, error) {
		kid, _ = t.Header["kid"].(string)
		s.mu.Lock()
		k, ok := s.keys[kid]
		s.mu.Unlock()
		if !ok {
			return nil, fmt.Errorf("unknown key id %q", kid)
		}
		key = k
		return k.pub, nil
	})
	if err != nil {
		return nil, nil, "InvalidProviderToken"
	}
	if iss, _ := claims["iss"].(string); iss != key.teamID {
		return nil, nil, "InvalidProviderToken"
	}
	iatF, ok := claims["iat"].(float64)
	if !ok {
		return nil, nil, "InvalidProviderToken"
	}
	iat := time.Unix(int64(iatF), 0)
	if now.Sub(iat) > providerTokenLifetime {
		return nil, nil, "ExpiredProviderToken"
	}
	if iat.Sub(now) > time.Minute {
		return nil, nil, "InvalidProviderToken"
	}
	return key.topics, map[string]string{"auth": "token", "kid": kid, "team": key.teamID, "iat": strconv.FormatInt(iat.Unix(), 10), "jwt": fingerprint(bearer)}, ""
}

// fingerprint identifies a provider token in records without exposing it.
func fingerprint(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:8])
}

func (s *Server) checkCertificate(chain []*x509.Certificate, now time.Time) (map[string]bool, map[string]string, string) {
	roots := x509.NewCertPool()
	s.mu.Lock()
	for _, e := range s.certs {
		roots.AddCert(e.cert)
	}
	s.mu.Unlock()
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	verified, err := chain[0].Verify(x509.VerifyOptions{
		Roots: roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return nil, nil, "BadCertificate"
	}
	allowed := map[string]bool{}
	s.mu.Lock()
	for _, c := range verified[0] {
		for t := range s.certs[sha256.Sum256(c.Raw)].topics {
			allowed[t] = true
		}
	}
	s.mu.Unlock()
	return allowed, map[string]string{"auth": "certificate", "subject": chain[0].Subject.CommonName}, ""
}

type errorBody struct {
	Reason    string `json:"reason"`
	Timestamp int64  `json:"timestamp,omitempty"`
}

func (s *Server) fail(w http.ResponseWriter, reason string, retryAfter time.Duration) {
	if retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(retryAfter/time.Second)))
	}
	status, ok := statusOf[reason]
	if !ok {
		status = http.StatusBadRequest
	}
	body := errorBody{Reason: reason}
	if status == http.StatusGone {
		body.Timestamp = s.Now().UnixMilli()
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("apns-id", apnsID(r))
	deviceToken, ok := strings.CutPrefix(r.URL.Path, "/3/device/")
	if !ok {
		s.fail(w, "BadPath", 0)
		return
	}
	if r.Method != http.MethodPost {
		s.fail(w, "MethodNotAllowed", 0)
		return
	}
	allowed, authFields, reason := s.authenticate(r)
	if reason != "" {
		s.mu.Lock()
		s.authFailures++
		s.mu.Unlock()
		s.fail(w, reason, 0)
		return
	}
	fields, reason := checkHeaders(r, allowed)
	if reason == "" && deviceToken == "" {
		reason = "MissingDeviceToken"
	}
	if reason == "" && !hexToken.MatchString(deviceToken) {
		reason = "BadDeviceToken"
	}
	if reason != "" {
		s.fail(w, reason, 0)
		return
	}
	limit := 4096
	if fields["push-type"] == "voip" {
		limit = 5120
	}
	raw, err := io.ReadAll(io.LimitReader(r.Body, int64(limit)+1))
	switch {
	case err != nil:
		fake.Abort()
	case len(raw) == 0:
		s.fail(w, "PayloadEmpty", 0)
		return
	case len(raw) > limit:
		s.fail(w, "PayloadTooLarge", 0)
		return
	}
	for k, v := range authFields {
		fields[k] = v
	}
	rec := decodePayload(raw, fields)
	rec.Token = deviceToken

	a := s.State.Next(deviceToken)
	rec.Answered = a.Code
	s.State.Pause(r, a)
	s.State.Record(rec)
	switch {
	case a.Code == "":
		w.WriteHeader(http.StatusOK)
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
		s.fail(w, a.Code, a.RetryAfter)
	}
}

// checkHeaders validates the apns-* headers as APNs does and returns them
// for the record.
func checkHeaders(r *http.Request, allowed map[string]bool) (map[string]string, string) {
	h := r.Header
	for _, name := range []string{"apns-topic", "apns-push-type", "apns-priority", "apns-collapse-id", "apns-expiration", "apns-id"} {
		if len(h.Values(name)) > 1 {
			return nil, "DuplicateHeaders"
		}
	}
	f := map[string]string{
		"topic":       h.Get("apns-topic"),
		"push-type":   h.Get("apns-push-type"),
		"priority":    h.Get("apns-priority"),
		"collapse-id": h.Get("apns-collapse-id"),
		"expiration":  h.Get("apns-expiration"),
		"apns-id":     h.Get("apns-id"),
	}
	if f["push-type"] == "" {
		f["push-type"] = "alert"
	}
	if f["priority"] == "" {
		f["priority"] = "10"
	}
	switch {
	case f["topic"] == "":
		return nil, "MissingTopic"
	case !allowed[strings.TrimSuffix(f["topic"], ".voip")]:
		return nil, "TopicDisallowed"
	case !pushTypes[f["push-type"]]:
		return nil, "InvalidPushType"
	case f["priority"] != "10" && f["priority"] != "5" && f["priority"] != "1":
		return nil, "BadPriority"
	case f["push-type"] == "background" && f["priority"] == "10":
		return nil, "BadPriority"
	case len(f["collapse-id"]) > 64:
		return nil, "BadCollapseId"
	case f["apns-id"] != "" && !canonicalUUID.MatchString(f["apns-id"]):
		return nil, "BadMessageId"
	}
	if e := f["expiration"]; e != "" {
		if _, err := strconv.ParseInt(e, 10, 64); err != nil {
			return nil, "BadExpirationDate"
		}
	}
	for k, v := range f {
		if v == "" {
			delete(f, k)
		}
	}
	return f, ""
}

// decodePayload reads the aps dictionary into the record's fields and the
// top-level custom keys into Data.
func decodePayload(raw []byte, fields map[string]string) fake.Received {
	rec := fake.Received{Fields: fields}
	var doc map[string]json.RawMessage
	if json.Unmarshal(raw, &doc) != nil {
		fields["payload"] = "undecodable"
		return rec
	}
	var aps struct {
		Alert            json.RawMessage `json:"alert"`
		Badge            *int            `json:"badge"`
		Sound            string          `json:"sound"`
		ThreadID         string          `json:"thread-id"`
		ContentAvailable int             `json:"content-available"`
	}
	_ = json.Unmarshal(doc["aps"], &aps)
	var alert struct{ Title, Body string }
	if json.Unmarshal(aps.Alert, &alert) != nil {
		_ = json.Unmarshal(aps.Alert, &alert.Body)
	}
	rec.Title, rec.Body = alert.Title, alert.Body
	if aps.Badge != nil {
		fields["badge"] = strconv.Itoa(*aps.Badge)
	}
	if aps.Sound != "" {
		fields["sound"] = aps.Sound
	}
	if aps.ThreadID != "" {
		fields["thread-id"] = aps.ThreadID
	}
	if aps.ContentAvailable != 0 {
		fields["content-available"] = strconv.Itoa(aps.ContentAvailable)
	}
	for k, v := range doc {
		if k == "aps" {
			continue
		}
		if rec.Data == nil {
			rec.Data = map[string]string{}
		}
		var str string
		if json.Unmarshal(v, &str) == nil {
			rec.Data[k] = str
		} else {
			rec.Data[k] = string(v)
		}
	}
	return rec
}

// apnsID echoes the request's apns-id or makes one, as APNs does.
func apnsID(r *http.Request) string {
	if id := r.Header.Get("apns-id"); canonicalUUID.MatchString(id) {
		return strings.ToLower(id)
	}
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// Certificate returns an APNs certificate pointing at this fake (endpoint and
// caBundle set) with the given Secret data and spec.
func (s *Server) Certificate(name string, data map[string][]byte, spec *config.APNsSpec) *config.Certificate {
	cert := s.NewCertificate(name, config.APNs, data)
	cert.Fingerprint, cert.APNs = config.Fingerprint(data), spec
	return cert
}
