package honor

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/imcloud/im-push-operator/dispatcher/config"
	"github.com/imcloud/im-push-operator/dispatcher/providers/fake/providertest"
)

// TestAuthChecks proves the fake refuses what Honor refuses, so a client bug
// in authentication fails the client's tests.
func TestAuthChecks(t *testing.T) {
	s := providertest.Start(t, Start)
	now := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	s.SetClock(func() time.Time { return now })
	a, b := s.Certificate("a"), s.Certificate("b")
	hc := s.Client()

	token := func(cert *config.Certificate, secret string) (int, map[string]any) {
		return providertest.TokenRequest(t, hc, s.URL+"/auth/realms/developer/protocol/openid-connect/token", cert.Honor.ClientID, secret)
	}
	if status, body := token(a, "wrong"); status != http.StatusUnauthorized || body["error"] != "invalid_client" {
		t.Errorf("wrong secret: %d %v, want 401 invalid_client", status, body)
	}
	status, body := token(a, string(a.Data[config.KeyClientSecret]))
	if status != http.StatusOK {
		t.Fatalf("good secret: %d %v", status, body)
	}
	tokA := body["access_token"].(string)

	ms := func(t time.Time) string { return strconv.FormatInt(t.UnixMilli(), 10) }
	ok := `{"android":{"notification":{"title":"t","body":"b"}},"token":["x"]}`
	for _, tc := range []struct {
		name, app, bearer, timestamp, body string
		status, code                       int
	}{
		{"good", a.Honor.AppID, tokA, ms(now), ok, 200, 200},
		{"good, timestamp inside the window", a.Honor.AppID, tokA, ms(now.Add(-TimestampWindow)), ok, 200, 200},
		{"unknown bearer", a.Honor.AppID, "forged", ms(now), ok, 401, 80200001},
		{"token of another app", b.Honor.AppID, tokA, ms(now), ok, 401, 80200001},
		{"no timestamp", a.Honor.AppID, tokA, "", ok, 400, 80100001},
		{"stale timestamp", a.Honor.AppID, tokA, ms(now.Add(-TimestampWindow - time.Second)), ok, 400, 80100001},
		{"timestamp in seconds", a.Honor.AppID, tokA, strconv.FormatInt(now.Unix(), 10), ok, 400, 80100001},
		{"data not a string", a.Honor.AppID, tokA, ms(now), `{"data":{"k":"v"},"token":["x"]}`, 400, 80100003},
		{"no token", a.Honor.AppID, tokA, ms(now), `{"token":[]}`, 400, 80100001},
	} {
		req, _ := http.NewRequest(http.MethodPost, s.URL+"/api/v1/"+tc.app+"/sendMessage", strings.NewReader(tc.body))
		req.Header.Set("Authorization", "Bearer "+tc.bearer)
		if tc.timestamp != "" {
			req.Header.Set("timestamp", tc.timestamp)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var ans struct{ Code int }
		_ = json.NewDecoder(resp.Body).Decode(&ans)
		resp.Body.Close()
		if resp.StatusCode != tc.status || ans.Code != tc.code {
			t.Errorf("%s: %d %d, want %d %d", tc.name, resp.StatusCode, ans.Code, tc.status, tc.code)
		}
	}
	if n := s.State.Count(); n != 2 {
		t.Errorf("recorded %d sends, want only the 2 good ones", n)
	}
	s.ExpireTokens()
	req, _ := http.NewRequest(http.MethodPost, s.URL+"/api/v1/"+a.Honor.AppID+"/sendMessage", strings.NewReader(ok))
	req.Header.Set("Authorization", "Bearer "+tokA)
	req.Header.Set("timestamp", ms(now))
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var ans struct{ Code int }
	_ = json.NewDecoder(resp.Body).Decode(&ans)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || ans.Code != 80200003 {
		t.Errorf("expired token: %d %d, want 401 80200003", resp.StatusCode, ans.Code)
	}
}
