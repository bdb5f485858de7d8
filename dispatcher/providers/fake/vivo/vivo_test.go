package vivo

import (
	"context"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imcloud/im-push-operator/dispatcher/providers"
	"github.com/imcloud/im-push-operator/dispatcher/providers/fake"
	"github.com/imcloud/im-push-operator/dispatcher/providers/fake/providertest"
)

// Known answer computed outside Go:
//
//	printf '%s' '10004appkey1700000000000secret' | md5sum
const signKAT = "a5000121b62843a0f2e075e47026b144"

func TestExpectedSignKnownAnswer(t *testing.T) {
	if got := expectedSign("10004", "appkey", "1700000000000", "secret"); got != signKAT {
		t.Fatalf("expectedSign = %s, want %s", got, signKAT)
	}
}

func TestCheckAuth(t *testing.T) {
	now := time.UnixMilli(1700000000000)
	s := &Server{Tokens: fake.NewTokens(tokenLifetime), apps: map[string]app{"10004": {key: "appkey", secret: "secret"}}}
	s.SetClock(func() time.Time { return now })
	at := func(d time.Duration) int64 { return now.Add(d).UnixMilli() }
	signed := func(d time.Duration) authRequest {
		ts := at(d)
		return authRequest{AppID: "10004", AppKey: "appkey", Timestamp: ts, Sign: expectedSign("10004", "appkey", strconv.FormatInt(ts, 10), "secret")}
	}
	edit := func(f func(r *authRequest)) authRequest {
		r := signed(0)
		f(&r)
		return r
	}
	tests := []struct {
		name string
		req  authRequest
		code int
	}{
		{"valid", authRequest{AppID: "10004", AppKey: "appkey", Timestamp: 1700000000000, Sign: signKAT}, 0},
		{"no appId", edit(func(r *authRequest) { r.AppID = "" }), 10200},
		{"no appKey", edit(func(r *authRequest) { r.AppKey = "" }), 10201},
		{"no timestamp", edit(func(r *authRequest) { r.Timestamp = 0 }), 10203},
		{"no sign", edit(func(r *authRequest) { r.Sign = "" }), 10204},
		{"unknown appId", edit(func(r *authRequest) { r.AppID = "10005" }), 10205},
		{"wrong appKey", edit(func(r *authRequest) { r.AppKey = "other" }), 10202},
		{"9m59s old", signed(-9*time.Minute - 59*time.Second), 0},
		{"10m1s old", signed(-10*time.Minute - time.Second), 10207},
		{"10m1s ahead", signed(10*time.Minute + time.Second), 10207},
		{"sign of another timestamp", edit(func(r *authRequest) { r.Timestamp++ }), 10206},
		{"uppercase sign", edit(func(r *authRequest) { r.Sign = "A5000121B62843A0F2E075E47026B144" }), 10206},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := s.checkAuth(&tt.req); got != tt.code {
				t.Fatalf("checkAuth = %d, want %d", got, tt.code)
			}
		})
	}
}

// TestHTTP drives the fake over the wire: the authToken header, the body
// appId against the token's app, and the payload checks.
func TestHTTP(t *testing.T) {
	s := providertest.Start(t, Start)
	var now atomic.Int64 // milliseconds; handlers read it on other goroutines
	now.Store(1700000000000)
	s.SetClock(func() time.Time { return time.UnixMilli(now.Load()) })
	cert := s.Certificate("c1")
	other := s.Certificate("c2")
	appID, key, secret := cert.Vivo.AppID, string(cert.Data["appKey"]), string(cert.Data["appSecret"])
	post := func(path string, body any, header http.Header) map[string]any {
		t.Helper()
		reply, err := providers.PostJSON(context.Background(), s.Client(), s.URL+path, body, header)
		return providertest.ReplyJSON(t, reply, err)
	}
	ts := now.Load()
	// appId as a JSON number, as one of vivo's documents shows.
	numericID, _ := strconv.Atoi(appID)
	auth := post(authPath, map[string]any{"appId": numericID, "appKey": key, "timestamp": ts, "sign": expectedSign(appID, key, strconv.FormatInt(ts, 10), secret)}, nil)
	if auth["result"] != 0.0 {
		t.Fatalf("auth = %v", auth)
	}
	token := auth["authToken"].(string)
	hdr := http.Header{"authToken": {token}}
	body := func(edit func(m map[string]any)) map[string]any {
		m := map[string]any{"appId": appID, "regId": "r1", "notifyType": 4, "title": "t", "content": "c",
			"timeToLive": 3600, "skipType": 1, "classification": 1, "category": "IM", "notifyId": 7,
			"clientCustomMap": map[string]string{"k": "v"}, "requestId": "req-1"}
		edit(m)
		return m
	}
	none := func(map[string]any) {}
	tests := []struct {
		name   string
		body   map[string]any
		header http.Header
		code   float64
	}{
		{"no authToken", body(none), nil, 10000},
		{"stranger's authToken", body(none), http.Header{"authToken": {"nope"}}, 10000},
		{"another app's appId", body(func(m map[string]any) { m["appId"] = other.Vivo.AppID }), hdr, 10094},
		{"title 41 wide", body(func(m map[string]any) { m["title"] = "标标标标标标标标标标标标标标标标标标标标a" }), hdr, 10050},
		{"ttl 59", body(func(m map[string]any) { m["timeToLive"] = 59 }), hdr, 10050},
		{"notifyId 0", body(func(m map[string]any) { m["notifyId"] = 0 }), hdr, 10050},
		{"no requestId", body(func(m map[string]any) { delete(m, "requestId") }), hdr, 10050},
		{"unknown category", body(func(m map[string]any) { m["category"] = "CHAT" }), hdr, 10096},
		{"operational category as system", body(func(m map[string]any) { m["category"] = "NEWS" }), hdr, 10097},
		{"good", body(none), hdr, 0},
		{"same requestId again", body(none), hdr, 0},
	}
	for _, tt := range tests {
		if got := post(sendPath, tt.body, tt.header); got["result"] != tt.code {
			t.Errorf("%s: answer %v, want result %v", tt.name, got, tt.code)
		}
	}
	if rec := s.State.Received(); len(rec) != 1 || rec[0].Token != "r1" || rec[0].Data["k"] != "v" || rec[0].Fields["appId"] != appID {
		t.Fatalf("received = %+v, want one send", rec)
	}
	now.Add((24 * time.Hour).Milliseconds())
	if got := post(sendPath, body(func(m map[string]any) { m["requestId"] = "req-2" }), hdr); got["result"] != 10000.0 {
		t.Fatalf("send with an expired token: %v", got)
	}
}
