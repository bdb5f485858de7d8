package apns_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v4"
	"github.com/sideshow/apns2/token"

	"github.com/imcloud/im-push-operator/dispatcher/config"
	"github.com/imcloud/im-push-operator/dispatcher/providers/fake"
	fakeapns "github.com/imcloud/im-push-operator/dispatcher/providers/fake/apns"
)

// TestProviderTokenChecks sends hand-made requests so the fake's own checks
// are exercised, not just the client's happy path.
func TestProviderTokenChecks(t *testing.T) {
	ca, err := fake.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	srv, err := fakeapns.Start(ca)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	data, spec, err := fakeapns.TokenCredential("io.example.app")
	if err != nil {
		t.Fatal(err)
	}
	srv.Allow(srv.Certificate("c", data, spec))
	key, err := token.AuthKeyFromBytes(data[config.KeyAPNsAuthKey])
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	sign := func(kid, iss string, iat time.Time) string {
		tok := &jwt.Token{Header: map[string]any{"alg": "ES256", "kid": kid}, Claims: jwt.MapClaims{"iss": iss, "iat": iat.Unix()}, Method: jwt.SigningMethodES256}
		s, err := tok.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	good := sign(spec.KeyID, spec.TeamID, now)
	tests := []struct {
		name    string
		auth    string
		headers map[string]string
		path    string
		status  int
		reason  string
	}{
		{name: "valid", auth: good, status: 200},
		{name: "no authorization", status: 403, reason: "MissingProviderToken"},
		{name: "other team", auth: sign(spec.KeyID, "ZZZZZZZZZZ", now), status: 403, reason: "InvalidProviderToken"},
		{name: "unknown key id", auth: sign("ZZZZZZZZZZ", spec.TeamID, now), status: 403, reason: "InvalidProviderToken"},
		{name: "tampered", auth: good[:len(good)-4] + "AAAA", status: 403, reason: "InvalidProviderToken"},
		{name: "issued over an hour ago", auth: sign(spec.KeyID, spec.TeamID, now.Add(-61*time.Minute)), status: 403, reason: "ExpiredProviderToken"},
		{name: "issued in the future", auth: sign(spec.KeyID, spec.TeamID, now.Add(10*time.Minute)), status: 403, reason: "InvalidProviderToken"},
		{name: "no topic", auth: good, headers: map[string]string{"apns-topic": ""}, status: 400, reason: "MissingTopic"},
		{name: "other topic", auth: good, headers: map[string]string{"apns-topic": "io.other"}, status: 400, reason: "TopicDisallowed"},
		{name: "background at priority 10", auth: good, headers: map[string]string{"apns-push-type": "background", "apns-priority": "10"}, status: 400, reason: "BadPriority"},
		{name: "non-UUID apns-id", auth: good, headers: map[string]string{"apns-id": "abc"}, status: 400, reason: "BadMessageId"},
		{name: "non-hex token", auth: good, path: "/3/device/not-hex", status: 400, reason: "BadDeviceToken"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := tc.path
			if path == "" {
				path = "/3/device/abcdef0123"
			}
			req, err := http.NewRequest(http.MethodPost, srv.URL+path, strings.NewReader(`{"aps":{"alert":"hi"}}`))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("apns-topic", "io.example.app")
			if tc.auth != "" {
				req.Header.Set("authorization", "bearer "+tc.auth)
			}
			for k, v := range tc.headers {
				if v == "" {
					req.Header.Del(k)
				} else {
					req.Header.Set(k, v)
				}
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			raw, _ := io.ReadAll(resp.Body)
			body := string(raw)
			if resp.StatusCode != tc.status || (tc.reason != "" && !strings.Contains(body, `"`+tc.reason+`"`)) {
				t.Errorf("got %d %s, want %d %s", resp.StatusCode, body, tc.status, tc.reason)
			}
			if resp.ProtoMajor != 2 {
				t.Errorf("protocol %s, want HTTP/2", resp.Proto)
			}
		})
	}
}
