package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp/fasthttputil"

	"github.com/imcloud/im-push-operator/dispatcher/config"
	"github.com/imcloud/im-push-operator/dispatcher/policy"
	"github.com/imcloud/im-push-operator/dispatcher/store"
)

const testToken = "tenant-a-token-0123456789abcdef"

// source is the config and token a test runs with.
type source struct {
	mu    sync.Mutex
	cfg   *config.Config
	hash  string
	token []byte
}

func (s *source) Config() (*config.Config, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cfg, s.hash
}

func (s *source) Token() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.token
}

// engine is a delivery engine double: Submit records, outcomes are set by
// the test, Wait returns once complete or when its context ends.
type engine struct {
	mu        sync.Mutex
	submitErr error
	submitted []policy.Notification
	statuses  map[string]Status
	changed   chan struct{}
	// accepted receives each new id after Submit stored it.
	accepted chan string
}

func newEngine() *engine {
	return &engine{statuses: map[string]Status{}, changed: make(chan struct{}), accepted: make(chan string, 16)}
}

func (e *engine) Submit(n *policy.Notification) (Receipt, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.submitErr != nil {
		return Receipt{}, e.submitErr
	}
	if _, dup := e.statuses[n.ID]; dup {
		return Receipt{ID: n.ID, Accepted: len(n.Recipients), Duplicate: true}, nil
	}
	e.submitted = append(e.submitted, *n)
	st := Status{ID: n.ID}
	for _, r := range n.Recipients {
		st.Devices = append(st.Devices, DeviceOutcome{User: r.UserID, Device: "d1", State: StatePending})
	}
	e.statuses[n.ID] = st
	e.accepted <- n.ID
	return Receipt{ID: n.ID, Accepted: len(n.Recipients)}, nil
}

func (e *engine) Status(id string) (Status, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	st, ok := e.statuses[id]
	return st, ok
}

func (e *engine) set(st Status) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.statuses[st.ID] = st
	close(e.changed)
	e.changed = make(chan struct{})
}

func (e *engine) Wait(ctx context.Context, id string) (Status, error) {
	for {
		e.mu.Lock()
		st, changed := e.statuses[id], e.changed
		e.mu.Unlock()
		if st.Complete {
			return st, nil
		}
		select {
		case <-ctx.Done():
			return st, ctx.Err()
		case <-changed:
		}
	}
}

type fixture struct {
	srv     *Server
	store   *store.Memory
	engine  *engine
	src     *source
	reg     *prometheus.Registry
	metrics *Metrics
	// t is the test the fixture was made for; served is the Server
	// listener serves (serve starts another when a test replaces srv,
	// which tests do before they send requests).
	t        *testing.T
	served   *Server
	listener *fasthttputil.InmemoryListener
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	cfg := &config.Config{
		Version: config.Version, Tenant: "chat", Namespace: "ns", AppKey: "app-key",
		Certificates: []config.Certificate{{Name: "ios-prod", Provider: config.APNs}, {Name: "huawei", Provider: config.Huawei}},
		TokenStore:   config.TokenStore{Shards: 2, ShardPrefix: "chat-devices-", MaxShardBytes: 2048},
	}
	f := &fixture{
		t:      t,
		store:  store.NewMemory(cfg.TokenStore, nil),
		engine: newEngine(),
		src:    &source{cfg: cfg, hash: "cafe01", token: []byte(testToken)},
		reg:    prometheus.NewRegistry(),
	}
	f.metrics = NewMetrics(f.reg)
	f.srv = New(Options{
		Store: f.store, Engine: f.engine, Config: f.src, Token: f.src,
		Metrics: f.metrics, Gatherer: f.reg,
	})
	// Started now, not on a first request a test may make from several
	// goroutines at once.
	f.startHTTPServer()
	return f
}

// do sends a request with the tenant's token and returns the recorder.
func (f *fixture) do(t *testing.T, method, target string, body any) *httptest.ResponseRecorder {
	t.Helper()
	return f.doToken(t, method, target, body, testToken)
}

func (f *fixture) doToken(t *testing.T, method, target string, body any, token string) *httptest.ResponseRecorder {
	t.Helper()
	var rd *bytes.Reader
	switch b := body.(type) {
	case nil:
		rd = bytes.NewReader(nil)
	case string:
		rd = bytes.NewReader([]byte(b))
	case []byte:
		rd = bytes.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(data)
	}
	req := httptest.NewRequest(method, target, rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return f.serve(t, req)
}

type errorResponse struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Field   string `json:"field"`
	} `json:"error"`
}

func decodeErr(t *testing.T, rec *httptest.ResponseRecorder) errorResponse {
	t.Helper()
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("error Content-Type = %q, want application/json; body %s", ct, rec.Body)
	}
	var e errorResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil {
		t.Fatalf("error body %q is not JSON: %v", rec.Body, err)
	}
	if e.Error.Code == "" || e.Error.Message == "" {
		t.Fatalf("error body %s lacks code or message", rec.Body)
	}
	return e
}

func expectError(t *testing.T, rec *httptest.ResponseRecorder, status int, code, field string) errorResponse {
	t.Helper()
	if rec.Code != status {
		t.Fatalf("status = %d, want %d; body %s", rec.Code, status, rec.Body)
	}
	e := decodeErr(t, rec)
	if e.Error.Code != code || e.Error.Field != field {
		t.Fatalf("error = %s/%q, want %s/%q (message %q)", e.Error.Code, e.Error.Field, code, field, e.Error.Message)
	}
	return e
}

func notification(id string, users ...string) map[string]any {
	var rcpts []map[string]any
	for _, u := range users {
		rcpts = append(rcpts, map[string]any{"userId": u})
	}
	return map[string]any{
		"id":           id,
		"sender":       map[string]any{"id": "alice", "displayName": "Alice"},
		"conversation": map[string]any{"id": "c1", "type": "single"},
		"recipients":   rcpts,
		"message":      map[string]any{"text": "hi"},
	}
}

func TestAuth(t *testing.T) {
	f := newFixture(t)
	for name, token := range map[string]string{
		"no token":              "",
		"wrong token":           "not-the-token",
		"another tenant's":      "tenant-b-token-0123456789abcdef",
		"token with extra byte": testToken + "x",
	} {
		t.Run(name, func(t *testing.T) {
			rec := f.doToken(t, http.MethodGet, "/v1/users/bob/devices", nil, token)
			expectError(t, rec, http.StatusUnauthorized, CodeUnauthorized, "")
			if rec.Header().Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
		})
	}
	t.Run("basic scheme", func(t *testing.T) {
		req := httptest.NewRequest(http.MethodGet, "/v1/users/bob/devices", nil)
		req.SetBasicAuth("x", testToken)
		rec := httptest.NewRecorder()
		f.srv.ServeHTTP(rec, req)
		expectError(t, rec, http.StatusUnauthorized, CodeUnauthorized, "")
	})
	t.Run("token not loaded", func(t *testing.T) {
		f := newFixture(t)
		f.src.token = nil
		expectError(t, f.doToken(t, http.MethodGet, "/v1/users/bob/devices", nil, ""), http.StatusUnauthorized, CodeUnauthorized, "")
	})
	t.Run("right token", func(t *testing.T) {
		if rec := f.do(t, http.MethodGet, "/v1/users/bob/devices", nil); rec.Code != http.StatusOK {
			t.Fatalf("status = %d, body %s", rec.Code, rec.Body)
		}
	})
	t.Run("rotated token", func(t *testing.T) {
		f := newFixture(t)
		f.src.token = []byte("rotated")
		expectError(t, f.do(t, http.MethodGet, "/v1/users/bob/devices", nil), http.StatusUnauthorized, CodeUnauthorized, "")
		if rec := f.doToken(t, http.MethodGet, "/v1/users/bob/devices", nil, "rotated"); rec.Code != http.StatusOK {
			t.Fatalf("status with rotated token = %d", rec.Code)
		}
	})
	t.Run("probes are public", func(t *testing.T) {
		for _, p := range []string{"/healthz", "/readyz", "/metrics", "/openapi.json"} {
			if rec := f.doToken(t, http.MethodGet, p, nil, ""); rec.Code != http.StatusOK {
				t.Errorf("GET %s without token = %d", p, rec.Code)
			}
		}
	})
}

func TestDeviceLifecycle(t *testing.T) {
	f := newFixture(t)
	token := "0123456789abcdefTAIL"
	if rec := f.do(t, http.MethodPut, "/v1/users/bob/devices/phone", map[string]string{"certificateName": "ios-prod", "token": token}); rec.Code != http.StatusNoContent {
		t.Fatalf("bind = %d %s", rec.Code, rec.Body)
	}
	u, err := f.store.Get(context.Background(), "bob")
	if err != nil || len(u.Devices) != 1 || u.Devices[0].Bindings[0].Token != token {
		t.Fatalf("store after bind = %+v, %v", u, err)
	}

	rec := f.do(t, http.MethodGet, "/v1/users/bob/devices", nil)
	var list devicesResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &list); err != nil || rec.Code != http.StatusOK {
		t.Fatalf("list = %d %s", rec.Code, rec.Body)
	}
	if strings.Contains(rec.Body.String(), "TAIL") {
		t.Fatalf("list shows the whole token: %s", rec.Body)
	}
	if len(list.Devices) != 1 || list.Devices[0].ID != "phone" || list.Devices[0].Bindings[0].Token != "01234567…" ||
		list.Devices[0].Bindings[0].CertificateName != "ios-prod" {
		t.Fatalf("list = %+v", list)
	}

	if rec := f.do(t, http.MethodDelete, "/v1/users/bob/devices/phone", nil); rec.Code != http.StatusNoContent {
		t.Fatalf("unbind = %d %s", rec.Code, rec.Body)
	}
	expectError(t, f.do(t, http.MethodDelete, "/v1/users/bob/devices/phone", nil), http.StatusNotFound, CodeNotFound, "device")

	f.do(t, http.MethodPut, "/v1/users/bob/devices/phone", map[string]string{"certificateName": "huawei", "token": token})
	if rec := f.do(t, http.MethodDelete, "/v1/users/bob", nil); rec.Code != http.StatusNoContent {
		t.Fatalf("delete user = %d %s", rec.Code, rec.Body)
	}
	expectError(t, f.do(t, http.MethodDelete, "/v1/users/bob", nil), http.StatusNotFound, CodeNotFound, "user")
	if rec := f.do(t, http.MethodGet, "/v1/users/bob/devices", nil); !strings.Contains(rec.Body.String(), `"devices":[]`) {
		t.Fatalf("list of a forgotten user = %s", rec.Body)
	}
}

func TestSettings(t *testing.T) {
	f := newFixture(t)
	body := `{"mode":"MentionsOnly","conversations":{"g1":"None"},"quietHours":{"start":"22:00","end":"07:00","timeZone":"Asia/Shanghai","mentionsBreakThrough":true},"language":"zh-Hans"}`
	if rec := f.do(t, http.MethodPut, "/v1/users/bob/settings", body); rec.Code != http.StatusNoContent {
		t.Fatalf("put settings = %d %s", rec.Code, rec.Body)
	}
	u, err := f.store.Get(context.Background(), "bob")
	if err != nil {
		t.Fatal(err)
	}
	if s := u.Settings; s.Mode != "MentionsOnly" || s.Conversations["g1"] != "None" || s.QuietHours == nil ||
		s.QuietHours.TimeZone != "Asia/Shanghai" || !s.QuietHours.MentionsBreakThrough || s.Language != "zh-Hans" {
		t.Fatalf("stored settings = %+v", u.Settings)
	}
}

// TestBadInput covers every 4xx answer of the API: each names its code and,
// where one field is at fault, the field.
func TestBadInput(t *testing.T) {
	long := strings.Repeat("u", 129)
	bind := func(cert, token string) map[string]string {
		return map[string]string{"certificateName": cert, "token": token}
	}
	withField := func(path string, v any) map[string]any {
		n := notification("n1", "bob")
		parts := strings.Split(path, ".")
		m := n
		for _, p := range parts[:len(parts)-1] {
			if _, ok := m[p]; !ok {
				m[p] = map[string]any{}
			}
			m = m[p].(map[string]any)
		}
		m[parts[len(parts)-1]] = v
		return n
	}
	many := func(n int) []map[string]any {
		out := make([]map[string]any, n)
		for i := range out {
			out[i] = map[string]any{"userId": fmt.Sprintf("u%d", i)}
		}
		return out
	}
	deep := strings.Repeat(`{"a":`, 40) + "1" + strings.Repeat("}", 40)
	big := `{"certificateName":"ios-prod","token":"` + strings.Repeat("x", MaxBodyBytes) + `"}`

	cases := []struct {
		name         string
		method, path string
		body         any
		status       int
		code, field  string
	}{
		{"bind: user too long", "PUT", "/v1/users/" + long + "/devices/d1", bind("ios-prod", "t"), 400, CodeInvalidField, "user"},
		{"bind: user not UTF-8", "PUT", "/v1/users/%FF/devices/d1", bind("ios-prod", "t"), 400, CodeInvalidField, "user"},
		{"bind: device too long", "PUT", "/v1/users/bob/devices/" + long, bind("ios-prod", "t"), 400, CodeInvalidField, "device"},
		{"bind: device not UTF-8", "PUT", "/v1/users/bob/devices/%C3%28", bind("ios-prod", "t"), 400, CodeInvalidField, "device"},
		{"bind: no certificateName", "PUT", "/v1/users/bob/devices/d1", bind("", "t"), 400, CodeInvalidField, "certificateName"},
		{"bind: empty token", "PUT", "/v1/users/bob/devices/d1", bind("ios-prod", ""), 400, CodeInvalidField, "token"},
		{"bind: token too long", "PUT", "/v1/users/bob/devices/d1", bind("ios-prod", strings.Repeat("t", 4097)), 400, CodeInvalidField, "token"},
		{"bind: unknown certificate", "PUT", "/v1/users/bob/devices/d1", bind("android-old", "t"), 422, CodeUnknownCertificate, "certificateName"},
		{"bind: unknown field", "PUT", "/v1/users/bob/devices/d1", `{"certificateName":"ios-prod","token":"t","platform":"ios"}`, 400, CodeUnknownField, "platform"},
		{"bind: token not a string", "PUT", "/v1/users/bob/devices/d1", `{"certificateName":"ios-prod","token":5}`, 400, CodeInvalidField, "token"},
		{"bind: not JSON", "PUT", "/v1/users/bob/devices/d1", `{"certificateName":`, 400, CodeInvalidJSON, ""},
		{"bind: empty body", "PUT", "/v1/users/bob/devices/d1", "", 400, CodeInvalidJSON, ""},
		{"bind: trailing data", "PUT", "/v1/users/bob/devices/d1", `{"certificateName":"ios-prod","token":"t"} {}`, 400, CodeInvalidJSON, ""},
		{"bind: body not UTF-8", "PUT", "/v1/users/bob/devices/d1", []byte("{\"certificateName\":\"ios-prod\",\"token\":\"\xff\"}"), 400, CodeInvalidJSON, ""},
		{"bind: too deep", "PUT", "/v1/users/bob/devices/d1", deep, 400, CodeInvalidJSON, ""},
		{"bind: body too large", "PUT", "/v1/users/bob/devices/d1", big, 413, CodeBodyTooLarge, ""},
		{"unbind: device too long", "DELETE", "/v1/users/bob/devices/" + long, nil, 400, CodeInvalidField, "device"},
		{"unbind: unknown device", "DELETE", "/v1/users/bob/devices/d9", nil, 404, CodeNotFound, "device"},
		{"list: user too long", "GET", "/v1/users/" + long + "/devices", nil, 400, CodeInvalidField, "user"},
		{"delete user: too long", "DELETE", "/v1/users/" + long, nil, 400, CodeInvalidField, "user"},
		{"delete user: unknown", "DELETE", "/v1/users/nobody", nil, 404, CodeNotFound, "user"},

		{"settings: mode", "PUT", "/v1/users/bob/settings", `{"mode":"Loud"}`, 400, CodeInvalidField, "mode"},
		{"settings: conversation mode", "PUT", "/v1/users/bob/settings", `{"conversations":{"g1":"Sometimes"}}`, 400, CodeInvalidField, `conversations["g1"]`},
		{"settings: conversation id", "PUT", "/v1/users/bob/settings", `{"conversations":{"":"None"}}`, 400, CodeInvalidField, `conversations[""]`},
		{"settings: quiet start", "PUT", "/v1/users/bob/settings", `{"quietHours":{"start":"25:00","end":"07:00"}}`, 400, CodeInvalidField, "quietHours.start"},
		{"settings: quiet end", "PUT", "/v1/users/bob/settings", `{"quietHours":{"start":"22:00","end":"7am"}}`, 400, CodeInvalidField, "quietHours.end"},
		{"settings: time zone", "PUT", "/v1/users/bob/settings", `{"quietHours":{"start":"22:00","end":"07:00","timeZone":"Mars/Olympus"}}`, 400, CodeInvalidField, "quietHours.timeZone"},
		{"settings: language", "PUT", "/v1/users/bob/settings", `{"language":"zh Hans!"}`, 400, CodeInvalidField, "language"},
		{"settings: unknown field", "PUT", "/v1/users/bob/settings", `{"volume":11}`, 400, CodeUnknownField, "volume"},
		{"settings: quietHours not an object", "PUT", "/v1/users/bob/settings", `{"quietHours":"22-07"}`, 400, CodeInvalidField, "quietHours"},
		{"settings: user too long", "PUT", "/v1/users/" + long + "/settings", `{}`, 400, CodeInvalidField, "user"},

		{"notify: no id", "POST", "/v1/notifications", withField("id", ""), 400, CodeInvalidField, "id"},
		{"notify: id too long", "POST", "/v1/notifications", withField("id", strings.Repeat("é", 129)), 400, CodeInvalidField, "id"},
		{"notify: no sender", "POST", "/v1/notifications", withField("sender.id", ""), 400, CodeInvalidField, "sender.id"},
		{"notify: no conversation id", "POST", "/v1/notifications", withField("conversation.id", ""), 400, CodeInvalidField, "conversation.id"},
		{"notify: conversation type", "POST", "/v1/notifications", withField("conversation.type", "channel"), 400, CodeInvalidField, "conversation.type"},
		{"notify: push type", "POST", "/v1/notifications", withField("push.pushType", "loud"), 400, CodeInvalidField, "push.pushType"},
		{"notify: negative badge", "POST", "/v1/notifications", withField("push.badge", -1), 400, CodeInvalidField, "push.badge"},
		{"notify: negative ttl", "POST", "/v1/notifications", withField("push.ttlSeconds", -5), 400, CodeInvalidField, "push.ttlSeconds"},
		{"notify: no recipients", "POST", "/v1/notifications", withField("recipients", []any{}), 400, CodeInvalidField, "recipients"},
		{"notify: too many recipients", "POST", "/v1/notifications", withField("recipients", many(MaxRecipients+1)), 400, CodeInvalidField, "recipients"},
		{"notify: empty user", "POST", "/v1/notifications", withField("recipients", []any{map[string]any{"userId": "a"}, map[string]any{"userId": ""}}), 400, CodeInvalidField, "recipients[1].userId"},
		{"notify: user too long", "POST", "/v1/notifications", withField("recipients", []any{map[string]any{"userId": long}}), 400, CodeInvalidField, "recipients[0].userId"},
		{"notify: repeated user", "POST", "/v1/notifications", withField("recipients", []any{map[string]any{"userId": "a"}, map[string]any{"userId": "a"}}), 400, CodeInvalidField, "recipients[1].userId"},
		{"notify: online device too long", "POST", "/v1/notifications", withField("recipients", []any{map[string]any{"userId": "a", "onlineDevices": []string{"ok", long}}}), 400, CodeInvalidField, "recipients[0].onlineDevices[1]"},
		{"notify: too many mentions", "POST", "/v1/notifications", withField("message.mentions", make([]string, MaxMentions+1)), 400, CodeInvalidField, "message.mentions"},
		{"notify: recipients not an array", "POST", "/v1/notifications", withField("recipients", "bob"), 400, CodeInvalidField, "recipients"},
		{"notify: userId not a string", "POST", "/v1/notifications", withField("recipients", []any{map[string]any{"userId": "a"}, map[string]any{"userId": 7}}), 400, CodeInvalidField, "recipients[1].userId"},
		{"notify: unknown field", "POST", "/v1/notifications", withField("priority", "high"), 400, CodeUnknownField, "priority"},
		{"notify: unknown nested field", "POST", "/v1/notifications", withField("message.html", "<b>"), 400, CodeUnknownField, "html"},
		{"notify: too deep", "POST", "/v1/notifications", deep, 400, CodeInvalidJSON, ""},
		{"notify: too large", "POST", "/v1/notifications", big, 413, CodeBodyTooLarge, ""},
		{"notify: wait not a boolean", "POST", "/v1/notifications?wait=maybe", notification("n1", "bob"), 400, CodeInvalidField, "wait"},
		{"notify: timeout not a duration", "POST", "/v1/notifications?wait=true&timeout=soon", notification("n1", "bob"), 400, CodeInvalidField, "timeout"},
		{"notify: timeout negative", "POST", "/v1/notifications?wait=true&timeout=-1s", notification("n1", "bob"), 400, CodeInvalidField, "timeout"},

		{"batch: empty", "POST", "/v1/notifications:batch", `{"notifications":[]}`, 400, CodeInvalidField, "notifications"},
		{"batch: too many", "POST", "/v1/notifications:batch", map[string]any{"notifications": make([]map[string]any, MaxBatch+1)}, 400, CodeInvalidField, "notifications"},
		{"batch: unknown envelope field", "POST", "/v1/notifications:batch", `{"notifications":[],"atomic":true}`, 400, CodeUnknownField, "atomic"},
		{"batch: too large", "POST", "/v1/notifications:batch", big, 413, CodeBodyTooLarge, ""},

		{"status: unknown id", "GET", "/v1/notifications/never", nil, 404, CodeNotFound, "id"},
		{"status: id too long", "GET", "/v1/notifications/" + strings.Repeat("n", 129), nil, 400, CodeInvalidField, "id"},

		{"no such endpoint", "GET", "/v1/nothing", nil, 404, CodeNotFound, ""},
		{"method not allowed", "PATCH", "/v1/notifications", `{}`, 405, CodeMethodNotAllowed, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			rec := f.do(t, tc.method, tc.path, tc.body)
			expectError(t, rec, tc.status, tc.code, tc.field)
			if n := len(f.engine.submitted); n != 0 {
				t.Errorf("a refused request submitted %d notifications", n)
			}
		})
	}
}

func TestMethodNotAllowedSaysAllow(t *testing.T) {
	f := newFixture(t)
	rec := f.do(t, http.MethodPost, "/v1/users/bob/devices/d1", `{}`)
	expectError(t, rec, http.StatusMethodNotAllowed, CodeMethodNotAllowed, "")
	if allow := rec.Header().Get("Allow"); !strings.Contains(allow, "PUT") || !strings.Contains(allow, "DELETE") {
		t.Fatalf("Allow = %q", allow)
	}
}

func TestShardFull(t *testing.T) {
	f := newFixture(t)
	rec := f.do(t, http.MethodPut, "/v1/users/bob/devices/d1", map[string]string{"certificateName": "ios-prod", "token": strings.Repeat("t", 4000)})
	expectError(t, rec, http.StatusInsufficientStorage, CodeShardFull, "")
}

// notReadyStore is a token store whose shards have not loaded.
type notReadyStore struct{ store.Store }

func (notReadyStore) Get(context.Context, string) (store.User, error) {
	return store.User{}, store.ErrNotReady
}
func (notReadyStore) Bind(context.Context, string, string, store.Binding) error {
	return fmt.Errorf("shard chat-devices-000: %w", store.ErrNotReady)
}

func TestStoreNotReady(t *testing.T) {
	f := newFixture(t)
	ready := false
	f.srv = New(Options{Store: notReadyStore{f.store}, StoreReady: func() bool { return ready }, Engine: f.engine, Config: f.src, Token: f.src})
	expectError(t, f.do(t, http.MethodPut, "/v1/users/bob/devices/d1", map[string]string{"certificateName": "ios-prod", "token": "t"}),
		http.StatusServiceUnavailable, CodeNotReady, "")
	expectError(t, f.do(t, http.MethodGet, "/v1/users/bob/devices", nil), http.StatusServiceUnavailable, CodeNotReady, "")

	rec := f.do(t, http.MethodGet, "/readyz", nil)
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), `"tokenStore"`) {
		t.Fatalf("readyz = %d %s", rec.Code, rec.Body)
	}
	ready = true
	if rec := f.do(t, http.MethodGet, "/readyz", nil); rec.Code != http.StatusOK {
		t.Fatalf("readyz with a synced store = %d %s", rec.Code, rec.Body)
	}
}

func TestNoConfigYet(t *testing.T) {
	f := newFixture(t)
	f.src.cfg, f.src.hash = nil, ""
	expectError(t, f.do(t, http.MethodPut, "/v1/users/bob/devices/d1", map[string]string{"certificateName": "ios-prod", "token": "t"}),
		http.StatusServiceUnavailable, CodeNotReady, "")
	rec := f.do(t, http.MethodGet, "/readyz", nil)
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), `"config"`) {
		t.Fatalf("readyz = %d %s", rec.Code, rec.Body)
	}
}

func TestSubmitErrors(t *testing.T) {
	cases := []struct {
		err    error
		status int
		code   string
	}{
		{fmt.Errorf("provider queue apns: %w", ErrQueueFull), http.StatusTooManyRequests, CodeQueueFull},
		{ErrDraining, http.StatusServiceUnavailable, CodeDraining},
		{ErrNotReady, http.StatusServiceUnavailable, CodeNotReady},
		{fmt.Errorf("surprise"), http.StatusInternalServerError, CodeInternal},
	}
	for _, tc := range cases {
		t.Run(tc.code, func(t *testing.T) {
			f := newFixture(t)
			f.engine.submitErr = tc.err
			rec := f.do(t, http.MethodPost, "/v1/notifications", notification("n1", "bob"))
			e := expectError(t, rec, tc.status, tc.code, "")
			if tc.status == http.StatusTooManyRequests && rec.Header().Get("Retry-After") != "1" {
				t.Errorf("Retry-After = %q", rec.Header().Get("Retry-After"))
			}
			if tc.code == CodeInternal && strings.Contains(e.Error.Message, "surprise") {
				t.Errorf("internal detail leaked: %q", e.Error.Message)
			}
		})
	}
}

type queueFull struct{}

func (queueFull) Error() string             { return "queue full" }
func (queueFull) Unwrap() error             { return ErrQueueFull }
func (queueFull) RetryAfter() time.Duration { return 2500 * time.Millisecond }

func TestQueueFullRetryAfterHint(t *testing.T) {
	f := newFixture(t)
	f.engine.submitErr = queueFull{}
	rec := f.do(t, http.MethodPost, "/v1/notifications", notification("n1", "bob"))
	expectError(t, rec, http.StatusTooManyRequests, CodeQueueFull, "")
	if got := rec.Header().Get("Retry-After"); got != "3" {
		t.Fatalf("Retry-After = %q, want 3 (rounded up)", got)
	}
}

func TestNotify(t *testing.T) {
	f := newFixture(t)
	n := notification("n1", "bob", "carol")
	n["push"] = map[string]any{"pushType": "voip", "badge": 3, "data": map[string]string{"k": "v"}}
	rec := f.do(t, http.MethodPost, "/v1/notifications", n)
	if rec.Code != http.StatusAccepted {
		t.Fatalf("post = %d %s", rec.Code, rec.Body)
	}
	var r Receipt
	if err := json.Unmarshal(rec.Body.Bytes(), &r); err != nil || r.ID != "n1" || r.Accepted != 2 || r.Duplicate {
		t.Fatalf("receipt = %s", rec.Body)
	}
	got := f.engine.submitted[0]
	if got.Push == nil || got.Push.PushType != "voip" || *got.Push.Badge != 3 || got.Recipients[1].UserID != "carol" {
		t.Fatalf("engine got %+v", got)
	}

	rec = f.do(t, http.MethodPost, "/v1/notifications", n)
	if err := json.Unmarshal(rec.Body.Bytes(), &r); err != nil || rec.Code != http.StatusAccepted || !r.Duplicate {
		t.Fatalf("repeat = %d %s", rec.Code, rec.Body)
	}

	rec = f.do(t, http.MethodGet, "/v1/notifications/n1", nil)
	var st Status
	if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil || rec.Code != http.StatusOK || len(st.Devices) != 2 || st.Devices[0].State != StatePending {
		t.Fatalf("status = %d %s", rec.Code, rec.Body)
	}
}

func TestNotifyWait(t *testing.T) {
	t.Run("complete", func(t *testing.T) {
		f := newFixture(t)
		done := make(chan *httptest.ResponseRecorder)
		go func() { done <- f.do(t, http.MethodPost, "/v1/notifications?wait=true", notification("n1", "bob")) }()
		// The answer waits for the outcome, whenever it comes after Submit.
		<-f.engine.accepted
		select {
		case rec := <-done:
			t.Fatalf("answered before completion: %d %s", rec.Code, rec.Body)
		default:
		}
		f.engine.set(Status{ID: "n1", Complete: true, Devices: []DeviceOutcome{{User: "bob", Device: "d1", State: StateDelivered, Attempts: 1}}})
		rec := <-done
		var w waitResponse
		if err := json.Unmarshal(rec.Body.Bytes(), &w); err != nil || rec.Code != http.StatusOK || !w.Complete || w.Devices[0].State != StateDelivered || w.ID != "n1" {
			t.Fatalf("wait = %d %s", rec.Code, rec.Body)
		}
	})
	t.Run("deadline reports pending", func(t *testing.T) {
		f := newFixture(t)
		rec := f.do(t, http.MethodPost, "/v1/notifications?wait=true&timeout=1ms", notification("n1", "bob"))
		var w waitResponse
		if err := json.Unmarshal(rec.Body.Bytes(), &w); err != nil || rec.Code != http.StatusOK || w.Complete || w.Devices[0].State != StatePending || w.Accepted != 1 {
			t.Fatalf("wait = %d %s", rec.Code, rec.Body)
		}
	})
}

func TestBatch(t *testing.T) {
	f := newFixture(t)
	bad := notification("n2", "bob")
	bad["conversation"] = map[string]any{"id": "c1", "type": "broadcast"}
	unknown := notification("n3", "bob")
	unknown["bogus"] = true
	body := map[string]any{"notifications": []any{notification("n1", "bob"), bad, unknown, "not an object"}}
	rec := f.do(t, http.MethodPost, "/v1/notifications:batch", body)
	if rec.Code != http.StatusOK {
		t.Fatalf("batch = %d %s", rec.Code, rec.Body)
	}
	var resp struct {
		Results []struct {
			Status   int    `json:"status"`
			ID       string `json:"id"`
			Accepted int    `json:"accepted"`
			Error    *struct {
				Code, Field string
			} `json:"error"`
		} `json:"results"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil || len(resp.Results) != 4 {
		t.Fatalf("batch body = %s", rec.Body)
	}
	r := resp.Results
	if r[0].Status != 202 || r[0].ID != "n1" || r[0].Accepted != 1 || r[0].Error != nil {
		t.Errorf("item 0 = %+v", r[0])
	}
	if r[1].Status != 400 || r[1].Error == nil || r[1].Error.Code != CodeInvalidField || r[1].Error.Field != "notifications[1].conversation.type" {
		t.Errorf("item 1 = %+v", r[1])
	}
	if r[2].Status != 400 || r[2].Error == nil || r[2].Error.Code != CodeUnknownField || r[2].Error.Field != "notifications[2].bogus" {
		t.Errorf("item 2 = %+v", r[2])
	}
	if r[3].Status != 400 || r[3].Error == nil || r[3].Error.Code != CodeInvalidField || r[3].Error.Field != "notifications[3]" {
		t.Errorf("item 3 = %+v", r[3])
	}
	if len(f.engine.submitted) != 1 {
		t.Errorf("submitted %d, want 1", len(f.engine.submitted))
	}
}

func TestDraining(t *testing.T) {
	f := newFixture(t)
	f.srv.StartDraining()
	expectError(t, f.do(t, http.MethodPost, "/v1/notifications", notification("n1", "bob")), http.StatusServiceUnavailable, CodeDraining, "")
	expectError(t, f.do(t, http.MethodPut, "/v1/users/bob/devices/d1", map[string]string{"certificateName": "ios-prod", "token": "t"}), http.StatusServiceUnavailable, CodeDraining, "")
	if rec := f.do(t, http.MethodGet, "/readyz", nil); rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "draining") {
		t.Fatalf("readyz while draining = %d %s", rec.Code, rec.Body)
	}
	if rec := f.do(t, http.MethodGet, "/healthz", nil); rec.Code != http.StatusOK {
		t.Fatalf("healthz while draining = %d", rec.Code)
	}
}

func TestReadyzShowsHash(t *testing.T) {
	f := newFixture(t)
	rec := f.do(t, http.MethodGet, "/readyz", nil)
	var r readiness
	if err := json.Unmarshal(rec.Body.Bytes(), &r); err != nil || rec.Code != http.StatusOK || r.ConfigHash != "cafe01" || r.Status != "ready" {
		t.Fatalf("readyz = %d %s", rec.Code, rec.Body)
	}
}

func TestMetrics(t *testing.T) {
	f := newFixture(t)
	f.do(t, http.MethodPost, "/v1/notifications", notification("n1", "bob"))
	f.doToken(t, http.MethodGet, "/v1/users/bob/devices", nil, "")
	f.do(t, http.MethodGet, "/nowhere", nil)
	f.metrics.ConfigReloaded(true)
	f.metrics.ConfigReloaded(false)
	f.metrics.ConfigApplied("old")
	f.metrics.ConfigApplied("cafe01")
	rec := f.do(t, http.MethodGet, "/metrics", nil)
	for _, want := range []string{
		`impush_dispatcher_http_requests_total{code="202",route="POST /v1/notifications"} 1`,
		`impush_dispatcher_http_requests_total{code="401",route="GET /v1/users/{user}/devices"} 1`,
		`impush_dispatcher_http_requests_total{code="404",route="unmatched"} 1`,
		`impush_dispatcher_config_reloads_total{result="success"} 1`,
		`impush_dispatcher_config_reloads_total{result="failure"} 1`,
		`impush_dispatcher_config_info{hash="cafe01"} 1`,
	} {
		if !strings.Contains(rec.Body.String(), want) {
			t.Errorf("metrics lack %s:\n%s", want, rec.Body)
		}
	}
	if strings.Contains(rec.Body.String(), `hash="old"`) {
		t.Errorf("config_info still shows the replaced hash")
	}
}
