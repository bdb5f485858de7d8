package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"
)

// The fuzz targets send arbitrary bodies (and path segments) through the
// whole handler, auth and routing included, and hold every answer to the
// API's contract: a success, or a JSON error with a known code that names
// the problem (or the mux's redirect of an unclean path); never a 5xx other
// than 507 ShardFull, never a panic. What a
// success stored or submitted is checked against the documented limits
// independently of the validation code.

// knownCodes are the codes a client may receive for its own input.
var knownCodes = map[string]int{
	CodeNotFound: http.StatusNotFound, CodeMethodNotAllowed: http.StatusMethodNotAllowed,
	CodeBodyTooLarge: http.StatusRequestEntityTooLarge, CodeInvalidJSON: http.StatusBadRequest,
	CodeUnknownField: http.StatusBadRequest, CodeInvalidField: http.StatusBadRequest,
	CodeUnknownCertificate: http.StatusUnprocessableEntity, CodeShardFull: http.StatusInsufficientStorage,
}

// fuzzFixture is a fixture whose engine never blocks on a full batch.
func fuzzFixture(t *testing.T) *fixture {
	f := newFixture(t)
	f.engine.accepted = make(chan string, MaxBatch+1)
	return f
}

// send serves one request; target's segments are escaped by the caller, so
// it parses as a client would have sent it.
func send(t *testing.T, f *fixture, method, target string, body []byte) *httptest.ResponseRecorder {
	t.Helper()
	if _, err := url.ParseRequestURI(target); err != nil {
		t.Fatalf("target %q: %v", target, err)
	}
	req := httptest.NewRequest(method, target, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+testToken)
	return f.serve(t, req)
}

// checkAnswer fails unless rec is a 2xx or an error body that names its
// problem; it returns whether the request succeeded.
func checkAnswer(t *testing.T, rec *httptest.ResponseRecorder) bool {
	t.Helper()
	if rec.Code >= 200 && rec.Code < 300 {
		return true
	}
	if (rec.Code == http.StatusMovedPermanently || rec.Code == http.StatusTemporaryRedirect) && rec.Header().Get("Location") != "" {
		// The mux redirects a path with empty, . or .. segments to its
		// clean form; the redirected request meets the same checks.
		return false
	}
	var e errorResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil {
		t.Fatalf("status %d with a body that is not a JSON error: %q", rec.Code, rec.Body)
	}
	want, ok := knownCodes[e.Error.Code]
	if !ok || want != rec.Code {
		t.Fatalf("status %d with code %q: not an answer to the caller's input (%s)", rec.Code, e.Error.Code, rec.Body)
	}
	if e.Error.Message == "" {
		t.Fatalf("error without a message: %s", rec.Body)
	}
	if (e.Error.Code == CodeInvalidField || e.Error.Code == CodeUnknownField) && e.Error.Field == "" && !strings.HasPrefix(e.Error.Message, "the body ") {
		t.Fatalf("%s without the field it concerns: %s", e.Error.Code, rec.Body)
	}
	return false
}

// checkNotification holds an accepted notification to the documented limits.
func checkNotification(t *testing.T, f *fixture, before int) {
	t.Helper()
	sub := f.engine.submitted[before:]
	for _, n := range sub {
		if n.ID == "" || utf8.RuneCountInString(n.ID) > MaxNotificationIDLen || !utf8.ValidString(n.ID) {
			t.Fatalf("accepted id of %d bytes", len(n.ID))
		}
		if len(n.Recipients) == 0 || len(n.Recipients) > MaxRecipients {
			t.Fatalf("accepted %d recipients", len(n.Recipients))
		}
		seen := map[string]bool{}
		for _, r := range n.Recipients {
			if r.UserID == "" || len(r.UserID) > MaxIDBytes || !utf8.ValidString(r.UserID) || seen[r.UserID] {
				t.Fatalf("accepted user id %q", r.UserID)
			}
			seen[r.UserID] = true
			if len(r.OnlineDevices) > MaxOnlineDevices {
				t.Fatalf("accepted %d online devices", len(r.OnlineDevices))
			}
		}
		if len(n.Message.Mentions) > MaxMentions {
			t.Fatalf("accepted %d mentions", len(n.Message.Mentions))
		}
	}
}

func FuzzNotification(f *testing.F) {
	f.Add([]byte(`{"id":"m-1","sender":{"id":"alice","displayName":"Alice"},"conversation":{"id":"c1","type":"single"},"recipients":[{"userId":"bob","onlineDevices":["web"]}],"message":{"text":"hi","mentions":["bob"]}}`))
	f.Add([]byte(`{"id":"m-2","sender":{"id":"alice"},"conversation":{"id":"g1","type":"group","name":"Team"},"recipients":[{"userId":"bob"},{"userId":"carol"}],"message":{"text":"@all","mentionAll":true},"push":{"title":"T","body":"B","badge":3,"sound":"default","data":{"k":"v"},"collapseKey":"g1","ttlSeconds":60,"pushType":"alert","force":true}}`))
	f.Add([]byte(`{"id":"m-3","sender":{"id":"a"},"conversation":{"id":"c","type":"single"},"recipients":[{"userId":"b"}],"message":{"transient":true}}`))
	f.Add([]byte(`{"id":"m-4","sender":{"id":"a"},"conversation":{"id":"c","type":"single"},"recipients":[{"userId":"b"},{"userId":"b"}],"message":{}}`))
	f.Add([]byte(`{"id":"m-5","sender":{"id":"a"},"conversation":{"id":"c","type":"single"},"recipients":[{"userId":"` + strings.Repeat("u", 129) + `"}],"message":{}}`))
	var many strings.Builder
	for i := range MaxRecipients + 1 {
		fmt.Fprintf(&many, `{"userId":"u%d"},`, i)
	}
	f.Add([]byte(`{"id":"m-6","sender":{"id":"a"},"conversation":{"id":"c","type":"single"},"recipients":[` + strings.TrimSuffix(many.String(), ",") + `],"message":{}}`))
	f.Add([]byte(`{"id":"m","push":{"badge":-1}}`))
	f.Add([]byte(`{"id":"m","priority":"high"}`))
	f.Add([]byte(strings.Repeat(`[`, 40) + strings.Repeat(`]`, 40)))
	f.Add([]byte("{\"id\":\"\xff\"}"))
	f.Add([]byte(`{"id":"m"} {"id":"n"}`))
	f.Add([]byte(`null`))
	f.Add([]byte(``))
	f.Fuzz(func(t *testing.T, body []byte) {
		f := fuzzFixture(t)
		rec := send(t, f, http.MethodPost, "/v1/notifications", body)
		if checkAnswer(t, rec) {
			if rec.Code != http.StatusAccepted || len(f.engine.submitted) != 1 {
				t.Fatalf("success %d with %d submitted", rec.Code, len(f.engine.submitted))
			}
			checkNotification(t, f, 0)
		} else if len(f.engine.submitted) != 0 {
			t.Fatalf("refused with %d, yet submitted", rec.Code)
		}
	})
}

func FuzzBatch(f *testing.F) {
	one := `{"id":"m-1","sender":{"id":"alice"},"conversation":{"id":"c1","type":"single"},"recipients":[{"userId":"bob"}],"message":{"text":"hi"}}`
	f.Add([]byte(`{"notifications":[` + one + `]}`))
	f.Add([]byte(`{"notifications":[` + one + `,` + strings.Replace(one, "m-1", "m-2", 1) + `,{"id":"bad"},7,null]}`))
	f.Add([]byte(`{"notifications":[]}`))
	f.Add([]byte(`{"notifications":[` + strings.Repeat(one+",", MaxBatch) + one + `]}`))
	f.Add([]byte(`{"notifications":[` + one + `],"atomic":true}`))
	f.Add([]byte(`{"notifications":[` + strings.Repeat(`{"a":`, 30) + `1` + strings.Repeat(`}`, 30) + `]}`))
	f.Add([]byte(`{"notifications":"all"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		f := fuzzFixture(t)
		rec := send(t, f, http.MethodPost, "/v1/notifications:batch", body)
		if !checkAnswer(t, rec) {
			if len(f.engine.submitted) != 0 {
				t.Fatalf("batch refused with %d, yet submitted", rec.Code)
			}
			return
		}
		var resp struct {
			Results []struct {
				Status int `json:"status"`
				Err    *struct {
					Code, Message, Field string
				} `json:"error"`
			} `json:"results"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil || len(resp.Results) == 0 || len(resp.Results) > MaxBatch {
			t.Fatalf("batch answer %s: %v", rec.Body, err)
		}
		accepted := 0
		for i, r := range resp.Results {
			switch {
			case r.Status == http.StatusAccepted && r.Err == nil:
				accepted++
			case r.Err != nil && knownCodes[r.Err.Code] == r.Status && r.Err.Message != "" &&
				(r.Err.Code != CodeInvalidField && r.Err.Code != CodeUnknownField || strings.HasPrefix(r.Err.Field, "notifications") || strings.HasPrefix(r.Err.Message, "the body ")):
			default:
				t.Fatalf("result %d does not name its problem: %s", i, rec.Body)
			}
		}
		if accepted < len(f.engine.submitted) {
			t.Fatalf("%d accepted results but %d submitted", accepted, len(f.engine.submitted))
		}
		checkNotification(t, f, 0)
	})
}

func FuzzBind(f *testing.F) {
	f.Add("alice", "iphone", []byte(`{"certificateName":"ios-prod","token":"a1b2c3d4e5f60718293a4b5c6d7e8f90"}`))
	f.Add("张三", "平板", []byte(`{"certificateName":"huawei","token":"IQAAAACy0kYJAAD"}`))
	f.Add("bob", "d1", []byte(`{"certificateName":"android-old","token":"t"}`))
	f.Add("bob", "d1", []byte(`{"certificateName":"ios-prod","token":"`+strings.Repeat("t", 4000)+`"}`))
	f.Add(strings.Repeat("u", 129), "d1", []byte(`{"certificateName":"ios-prod","token":"t"}`))
	f.Add("bob", "\xc3\x28", []byte(`{"certificateName":"ios-prod","token":"t"}`))
	f.Add("bob", "d1", []byte(`{"certificateName":"ios-prod","token":"t","platform":"ios"}`))
	f.Add("a/b", "..", []byte(`{}`))
	f.Fuzz(func(t *testing.T, user, device string, body []byte) {
		f := fuzzFixture(t)
		rec := send(t, f, http.MethodPut, "/v1/users/"+url.PathEscape(user)+"/devices/"+url.PathEscape(device), body)
		if !checkAnswer(t, rec) {
			return
		}
		if len(user) == 0 || len(user) > MaxIDBytes || !utf8.ValidString(user) || len(device) == 0 || len(device) > MaxIDBytes || !utf8.ValidString(device) {
			t.Fatalf("bound user %q device %q", user, device)
		}
		var req bindRequest
		if err := json.Unmarshal(body, &req); err != nil {
			t.Fatalf("bound from a body that does not decode: %v", err)
		}
		u, err := f.store.Get(context.Background(), user)
		if err != nil || len(u.Devices) != 1 || u.Devices[0].ID != device || u.Devices[0].Bindings[0].Token != req.Token {
			t.Fatalf("store after a %d bind: %+v %v", rec.Code, u, err)
		}
		if len(req.Token) == 0 || len(req.Token) > MaxTokenBytes {
			t.Fatalf("bound a token of %d bytes", len(req.Token))
		}
	})
}

func FuzzSettings(f *testing.F) {
	f.Add("bob", []byte(`{"mode":"MentionsOnly","conversations":{"g1":"None"},"quietHours":{"start":"22:00","end":"07:00","timeZone":"Asia/Shanghai","mentionsBreakThrough":true},"language":"zh-Hans"}`))
	f.Add("bob", []byte(`{"mode":"All","quietHours":{"start":"00:00","end":"00:00"}}`))
	f.Add("bob", []byte(`{"quietHours":{"start":"25:00","end":"07:00","timeZone":"Mars/Olympus"}}`))
	f.Add("bob", []byte(`{"conversations":{"":"None"},"language":"`+strings.Repeat("x", 40)+`"}`))
	f.Add("bob", []byte(`{"volume":11}`))
	f.Add("bob", []byte(`{"quietHours":{"timeZone":"../../etc/passwd"}}`))
	f.Fuzz(func(t *testing.T, user string, body []byte) {
		f := fuzzFixture(t)
		rec := send(t, f, http.MethodPut, "/v1/users/"+url.PathEscape(user)+"/settings", body)
		if !checkAnswer(t, rec) {
			return
		}
		u, err := f.store.Get(context.Background(), user)
		if err != nil {
			t.Fatal(err)
		}
		st := u.Settings
		if len(st.Conversations) > MaxConversationModes || len(st.Language) > MaxLanguageLength {
			t.Fatalf("stored %d conversation modes, language of %d bytes", len(st.Conversations), len(st.Language))
		}
		for id := range st.Conversations {
			if id == "" || len(id) > MaxIDBytes {
				t.Fatalf("stored conversation id of %d bytes", len(id))
			}
		}
	})
}
