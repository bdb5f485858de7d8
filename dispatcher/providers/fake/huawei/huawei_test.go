package huawei

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/imcloud/im-push-operator/dispatcher/config"
	"github.com/imcloud/im-push-operator/dispatcher/providers/fake/providertest"
)

// TestAuthChecks proves the fake refuses what Huawei refuses, so a client bug
// in authentication fails the client's tests.
func TestAuthChecks(t *testing.T) {
	s := providertest.Start(t, Start)
	a, b := s.Certificate("a"), s.Certificate("b")
	hc := s.Client()

	token := func(cert *config.Certificate, secret string) (int, map[string]any) {
		return providertest.TokenRequest(t, hc, s.URL+"/oauth2/v3/token", cert.Huawei.AppID, secret)
	}
	send := func(appID, bearer, body string) (int, string) {
		req, _ := http.NewRequest(http.MethodPost, s.URL+"/v1/"+appID+"/messages:send", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+bearer)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var ans struct{ Code string }
		_ = json.NewDecoder(resp.Body).Decode(&ans)
		return resp.StatusCode, ans.Code
	}

	if status, body := token(a, "wrong"); status != http.StatusBadRequest || body["error"] != float64(1101) {
		t.Errorf("wrong secret: %d %v, want 400 error 1101", status, body)
	}
	status, body := token(a, string(a.Data[config.KeyClientSecret]))
	if status != http.StatusOK {
		t.Fatalf("good secret: %d %v", status, body)
	}
	tokA := body["access_token"].(string)
	ok := `{"message":{"android":{"notification":{"title":"t","body":"b"}},"token":["x"]}}`
	for _, tc := range []struct {
		name, app, bearer, body string
		status                  int
		code                    string
	}{
		{"good", a.Huawei.AppID, tokA, ok, 200, "80000000"},
		{"unknown bearer", a.Huawei.AppID, "forged", ok, 401, "80200001"},
		{"token of another app", b.Huawei.AppID, tokA, ok, 401, "80200001"},
		{"data not a string", a.Huawei.AppID, tokA, `{"message":{"data":{"k":"v"},"token":["x"]}}`, 400, "80100003"},
		{"no token", a.Huawei.AppID, tokA, `{"message":{"token":[]}}`, 400, "80100001"},
		{"too large", a.Huawei.AppID, tokA, `{"message":{"android":{"notification":{"body":"` + strings.Repeat("x", 4096) + `"}},"token":["x"]}}`, 400, "80300008"},
	} {
		if status, code := send(tc.app, tc.bearer, tc.body); status != tc.status || code != tc.code {
			t.Errorf("%s: %d %q, want %d %q", tc.name, status, code, tc.status, tc.code)
		}
	}
	if n := s.State.Count(); n != 1 {
		t.Errorf("recorded %d sends, want only the good one", n)
	}
}
