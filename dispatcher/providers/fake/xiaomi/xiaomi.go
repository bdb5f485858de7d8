// Package xiaomi is a local fake of Xiaomi MiPush's single-target send,
// POST /v3/message/regid, on one TLS server (it stands in for any region's
// host).
//
// Authentication is checked as MiPush does: "Authorization: key=<appSecret>"
// must carry a secret registered with Allow (else code 21301), and
// restricted_package_name must be the package registered with that secret
// (else code 22022). MiPush answers errors with HTTP 200 and
// {"result":"error","code":<n>,"reason":...}; so does the fake.
//
// The form is checked: an x-www-form-urlencoded body, registration_id present
// (else 10016), pass_through 0 or 1, and for notifications (pass_through 0) a
// non-blank title under 50 and description under 128 characters (else 10017),
// at most 10 custom extra.* pairs (else 65015), time_to_live at most two
// weeks in ms and notify_id in 0..2147483647 (else 10016). These code choices
// follow providers.md's parameter-error codes; MiPush does not say which code
// each check gives.
//
// Accepted sends are recorded with Title = title, Body = description, Data =
// the custom extra.* pairs (MiPush's own extra names removed), and Fields
// package, pass_through, notify_type, notify_id, time_to_live, channel_id,
// notify_effect, payload (when present).
//
// Answer codes (fake.Answer.Code) for a token:
//   - "" success: {"result":"ok","code":0,"data":{"id":...}}
//   - "badregid": success with the token in data.bad_regids
//   - a number: {"result":"error","code":<n>} ("20301" no valid target,
//     "10034" daily quota, "21301" auth, "22022" package, "10027" too
//     frequent, "10016" params, "27001" channel, ...)
//   - "status:NNN": a bare HTTP status (e.g. "status:503")
//   - "reset": the stream is aborted
//
// Retry-After is set on any answer whose RetryAfter is non-zero.
package xiaomi

import (
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/imcloud/im-push-operator/dispatcher/config"
	"github.com/imcloud/im-push-operator/dispatcher/providers/fake"
)

// ownExtras are MiPush's extra names; other extra.* keys are custom data.
var ownExtras = map[string]bool{
	"channel_id": true, "notify_effect": true, "intent_uri": true, "web_uri": true,
	"notify_foreground": true, "only_send_once": true, "callback": true, "callback.type": true,
	"callback.param": true, "sound_uri": true, "ticker": true, "locale": true, "locale_not_in": true,
	"model": true, "model_not_in": true, "app_version": true, "app_version_not_in": true, "jobkey": true,
}

const maxTTLMillis = 14 * 24 * 3600 * 1000

// Server is a running Xiaomi fake.
type Server struct {
	*fake.Server

	mu       sync.Mutex
	packages map[string]string // appSecret -> package name
}

// Start serves the fake on a TLS server whose certificate chains to ca.
func Start(ca *fake.CA) (*Server, error) {
	s := &Server{packages: map[string]string{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v3/message/regid", s.send)
	srv, err := fake.Start(ca, fake.NewState(string(config.Xiaomi)), mux)
	if err != nil {
		return nil, err
	}
	s.Server = srv
	return s, nil
}

// Allow registers cert's appSecret for its package name.
func (s *Server) Allow(cert *config.Certificate) {
	s.mu.Lock()
	s.packages[strings.TrimSpace(string(cert.Data[config.KeyAppSecret]))] = cert.Xiaomi.PackageName
	s.mu.Unlock()
}

// TestCredential returns Secret data and a spec (region China, channel
// "im") for a new credential of packageName.
func TestCredential(packageName string) (map[string][]byte, *config.XiaomiSpec) {
	b := make([]byte, 18)
	_, _ = rand.Read(b)
	return map[string][]byte{config.KeyAppSecret: []byte(base64.StdEncoding.EncodeToString(b))},
		&config.XiaomiSpec{PackageName: packageName, Region: "China", ChannelID: "im"}
}

// Certificate makes a new credential for a random package, allows it, and
// returns a certificate named name that points at this fake.
func (s *Server) Certificate(name string) *config.Certificate {
	data, spec := TestCredential("com.example.im" + fake.RandomHex(4))
	cert := s.NewCertificate(name, config.Xiaomi, data)
	cert.Xiaomi = spec
	s.Allow(cert)
	return cert
}

func fail(w http.ResponseWriter, code int, reason string) {
	fake.WriteJSON(w, http.StatusOK, map[string]any{"result": "error", "code": code, "reason": reason, "description": reason, "trace_id": fake.RandomHex(8)})
}

func (s *Server) send(w http.ResponseWriter, r *http.Request) {
	secret, ok := strings.CutPrefix(r.Header.Get("Authorization"), "key=")
	s.mu.Lock()
	pkg, known := s.packages[secret]
	s.mu.Unlock()
	if !ok || !known {
		fail(w, 21301, "authentication failed")
		return
	}
	if !strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") || r.ParseForm() != nil {
		fail(w, 10016, "form body expected")
		return
	}
	f := r.PostForm
	if f.Get("restricted_package_name") != pkg {
		fail(w, 22022, "illegal package name")
		return
	}
	if code, reason := check(f); code != 0 {
		fail(w, code, reason)
		return
	}

	token, _, _ := strings.Cut(f.Get("registration_id"), ",")
	a := s.State.Next(token)
	s.State.Record(received(token, f, a.Code))
	s.State.Pause(r, a)
	answer(w, a, token)
}

// check validates the form; it returns a MiPush error code, or 0.
func check(f map[string][]string) (int, string) {
	get := func(k string) string {
		if v := f[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	if get("registration_id") == "" {
		return 10016, "registration_id is required"
	}
	switch get("pass_through") {
	case "0":
		title, desc := get("title"), get("description")
		if strings.TrimSpace(title) == "" || strings.TrimSpace(desc) == "" {
			return 10016, "title and description are required"
		}
		if utf8.RuneCountInString(title) >= 50 || utf8.RuneCountInString(desc) >= 128 {
			return 10017, "title or description too long"
		}
	case "1":
	default:
		return 10016, "pass_through must be 0 or 1"
	}
	if v := get("time_to_live"); v != "" {
		if ms, err := strconv.ParseInt(v, 10, 64); err != nil || ms < 0 || ms > maxTTLMillis {
			return 10016, "time_to_live out of range"
		}
	}
	if v := get("notify_id"); v != "" {
		if id, err := strconv.ParseInt(v, 10, 64); err != nil || id < 0 || id > 2147483647 {
			return 10016, "notify_id out of range"
		}
	}
	custom := 0
	for k := range f {
		if name, ok := strings.CutPrefix(k, "extra."); ok && !ownExtras[name] {
			custom++
		}
	}
	if custom > 10 {
		return 65015, "too many extras"
	}
	return 0, ""
}

func received(token string, f map[string][]string, code string) fake.Received {
	get := func(k string) string {
		if v := f[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	rec := fake.Received{Token: token, Title: get("title"), Body: get("description"), Answered: code, Fields: map[string]string{}}
	for _, k := range []string{"pass_through", "notify_type", "notify_id", "time_to_live", "payload"} {
		if v := get(k); v != "" {
			rec.Fields[k] = v
		}
	}
	rec.Fields["package"] = get("restricted_package_name")
	for k := range f {
		name, ok := strings.CutPrefix(k, "extra.")
		switch {
		case !ok:
		case ownExtras[name]:
			rec.Fields[name] = get(k)
		default:
			if rec.Data == nil {
				rec.Data = map[string]string{}
			}
			rec.Data[name] = get(k)
		}
	}
	return rec
}

func answer(w http.ResponseWriter, a fake.Answer, token string) {
	if fake.AnswerBare(w, a) {
		return
	}
	data := map[string]string{"id": "fake" + fake.RandomHex(8)}
	switch a.Code {
	case "":
	case "badregid":
		data["bad_regids"] = token
	default:
		code, _ := strconv.Atoi(a.Code)
		fail(w, code, "fake answer "+a.Code)
		return
	}
	fake.WriteJSON(w, http.StatusOK, map[string]any{"result": "ok", "code": 0, "data": data, "description": "成功", "info": "Received push messages for 1 REGID", "trace_id": fake.RandomHex(8)})
}
