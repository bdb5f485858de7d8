package oppo

import (
	"context"
	"net/url"
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
//	printf '%s' 'appkey1700000000000secret' | sha256sum
const signKAT = "2e40dd50a55be3227d415931c7db4aede3b6d25cd61d8761b732d90d2ad0eb4b"

func TestExpectedSignKnownAnswer(t *testing.T) {
	if got := expectedSign("appkey", "1700000000000", "secret"); got != signKAT {
		t.Fatalf("expectedSign = %s, want %s", got, signKAT)
	}
}

func TestCheckAuth(t *testing.T) {
	now := time.UnixMilli(1700000000000)
	s := &Server{Tokens: fake.NewTokens(tokenLifetime), apps: map[string]string{"appkey": "secret"}}
	s.SetClock(func() time.Time { return now })
	ms := func(d time.Duration) string { return strconv.FormatInt(now.Add(d).UnixMilli(), 10) }
	tests := []struct {
		name, appKey, ts, sign string
		code                   int
	}{
		{"valid", "appkey", "1700000000000", signKAT, 0},
		{"missing app_key", "", "1700000000000", signKAT, 15},
		{"unknown app_key", "other", "1700000000000", signKAT, 14},
		{"missing timestamp", "appkey", "", signKAT, 18},
		{"seconds not millis", "appkey", "1700000000", expectedSign("appkey", "1700000000", "secret"), 19},
		{"9m59s old", "appkey", ms(-9*time.Minute - 59*time.Second), expectedSign("appkey", ms(-9*time.Minute-59*time.Second), "secret"), 0},
		{"10m1s old", "appkey", ms(-10*time.Minute - time.Second), expectedSign("appkey", ms(-10*time.Minute-time.Second), "secret"), 19},
		{"10m1s ahead", "appkey", ms(10*time.Minute + time.Second), expectedSign("appkey", ms(10*time.Minute+time.Second), "secret"), 19},
		{"missing sign", "appkey", "1700000000000", "", 17},
		{"uppercase sign", "appkey", "1700000000000", "2E40DD50A55BE3227D415931C7DB4AEDE3B6D25CD61D8761B732D90D2AD0EB4B", 16},
		{"sign with app secret order swapped", "appkey", "1700000000000", expectedSign("secret", "1700000000000", "appkey"), 16},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := s.checkAuth(tt.appKey, tt.ts, tt.sign); got != tt.code {
				t.Fatalf("checkAuth = %d, want %d", got, tt.code)
			}
		})
	}
}

// TestHTTP drives the fake over the wire: auth, then sends with good and bad
// auth_tokens and payloads.
func TestHTTP(t *testing.T) {
	s := providertest.Start(t, Start)
	var now atomic.Int64 // milliseconds; handlers read it on other goroutines
	now.Store(1700000000000)
	s.SetClock(func() time.Time { return time.UnixMilli(now.Load()) })
	cert := s.Certificate("c1")
	appKey, secret := string(cert.Data["appKey"]), string(cert.Data["masterSecret"])
	hc := s.Client()
	post := func(path string, form url.Values) map[string]any {
		t.Helper()
		reply, err := providers.PostForm(context.Background(), hc, s.URL+path, form, nil)
		return providertest.ReplyJSON(t, reply, err)
	}
	ts := "1700000000000"
	auth := post(authPath, url.Values{"app_key": {appKey}, "timestamp": {ts}, "sign": {expectedSign(appKey, ts, secret)}})
	if auth["code"] != 0.0 {
		t.Fatalf("auth = %v", auth)
	}
	token := auth["data"].(map[string]any)["auth_token"].(string)
	good := `{"target_type":2,"target_value":"CN_x","notification":{"title":"t","content":"c","category":"IM","notify_level":2,"action_parameters":"{\"k\":\"v\"}"}}`
	tests := []struct {
		name  string
		form  url.Values
		code  float64
		after func()
	}{
		{"no auth_token", url.Values{"message": {good}}, 29, nil},
		{"auth_token as a stranger", url.Values{"auth_token": {"nope"}, "message": {good}}, 11, nil},
		{"no message", url.Values{"auth_token": {token}}, 40, nil},
		{"alias target", url.Values{"auth_token": {token}, "message": {`{"target_type":5,"target_value":"a","notification":{"title":"t","content":"c"}}`}}, 41, nil},
		{"notify_level without category", url.Values{"auth_token": {token}, "message": {`{"target_type":2,"target_value":"x","notification":{"title":"t","content":"c","notify_level":2}}`}}, 67, nil},
		{"action_parameters not JSON", url.Values{"auth_token": {token}, "message": {`{"target_type":2,"target_value":"x","notification":{"title":"t","content":"c","action_parameters":"k=v"}}`}}, 41, nil},
		{"good", url.Values{"auth_token": {token}, "message": {good}}, 0, func() { now.Add((24 * time.Hour).Milliseconds()) }},
		{"expired auth_token", url.Values{"auth_token": {token}, "message": {good}}, 11, nil},
	}
	for _, tt := range tests {
		got := post(sendPath, tt.form)
		if got["code"] != tt.code {
			t.Errorf("%s: answer %v, want code %v", tt.name, got, tt.code)
		}
		if tt.after != nil {
			tt.after()
		}
	}
	rec := s.State.Received()
	if len(rec) != 1 || rec[0].Token != "CN_x" || rec[0].Data["k"] != "v" || rec[0].Fields["app_key"] != appKey {
		t.Fatalf("received = %+v", rec)
	}
}
