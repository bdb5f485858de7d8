package honor

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/imcloud/im-push-operator/dispatcher/config"
	"github.com/imcloud/im-push-operator/dispatcher/providers"
	"github.com/imcloud/im-push-operator/dispatcher/providers/fake"
	fakehonor "github.com/imcloud/im-push-operator/dispatcher/providers/fake/honor"
	"github.com/imcloud/im-push-operator/dispatcher/providers/fake/providertest"
)

var start = time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)

func setup(t *testing.T) *providertest.Env[*fakehonor.Server] {
	return providertest.NewEnv(t, fakehonor.Start, "honor-main", start, New)
}

func intp(i int) *int { return &i }

func testMessage(token string) *providers.Message {
	return &providers.Message{
		ID:             "n-1",
		Token:          token,
		Title:          "Alice",
		Body:           "hi",
		Badge:          intp(120),
		Data:           map[string]string{"conv": "42"},
		CollapseKey:    "conv-42",
		Expiration:     start.Add(time.Hour),
		Classification: config.Classification{HonorImportance: "NORMAL"},
	}
}

func TestSendPayload(t *testing.T) {
	base := map[string]string{"importance": "NORMAL", "ttl": "3600s", "tag": "conv-42", "notify_id": "1443708484",
		"click_action_type": "3", "target_user_type": "0"}
	with := func(extra map[string]string) map[string]string {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	for _, tc := range []struct {
		name       string
		badgeClass string
		want       map[string]string
	}{
		{"no badge class: no badge block", "", with(nil)},
		{"badge class from the Secret, badge capped at 99", "com.example.MainActivity\n",
			with(map[string]string{"badge_set_num": "99", "badge_class": "com.example.MainActivity"})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := setup(t)
			if tc.badgeClass != "" {
				e.Cert.Data[KeyBadgeClass] = []byte(tc.badgeClass)
			}
			res := e.Client(t).Send(context.Background(), testMessage("tok-aaaaaaaaaa"))
			if res.Outcome != providers.Delivered || res.Reason != "200" {
				t.Fatalf("Send = %v %q (%v), want Delivered 200", res.Outcome, res.Reason, res.Err)
			}
			got := e.Fake.State.Received()
			if len(got) != 1 {
				t.Fatalf("fake received %d sends, want 1", len(got))
			}
			r := got[0]
			tc.want["app_id"] = e.Cert.Honor.AppID
			if r.Token != "tok-aaaaaaaaaa" || r.Title != "Alice" || r.Body != "hi" {
				t.Errorf("received token/title/body %q/%q/%q", r.Token, r.Title, r.Body)
			}
			if diff := cmp.Diff(map[string]string{"conv": "42"}, r.Data); diff != "" {
				t.Errorf("data (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.want, r.Fields); diff != "" {
				t.Errorf("fields (-want +got):\n%s", diff)
			}
		})
	}
}

// TestExactRequests pins the bytes of the token and send requests, the
// headers, and Honor's real hosts when no endpoint is set.
func TestExactRequests(t *testing.T) {
	rt := &providertest.Recorder{Answer: func(r *http.Request) *http.Response {
		if strings.HasSuffix(r.URL.Path, "/token") {
			return providertest.Reply(200, `{"access_token":"AT1","expires_in":3600,"token_type":"Bearer"}`)
		}
		return providertest.Reply(200, `{"code":200,"message":"success","data":{"sendResult":true,"requestId":"r1","failTokens":[],"expireTokens":[]}}`)
	}}
	cert := &config.Certificate{
		Name: "hn", Provider: config.Honor,
		Data:  map[string][]byte{config.KeyClientSecret: []byte("s3cr&t\n"), KeyBadgeClass: []byte("com.example.Main")},
		Honor: &config.HonorSpec{AppID: "104411047", ClientID: "abc123"},
	}
	c, err := New(cert, providers.Options{HTTPClient: &http.Client{Transport: rt}, Now: func() time.Time { return start }})
	if err != nil {
		t.Fatal(err)
	}
	m := testMessage("T0")
	m.Badge = intp(2)
	m.Data = nil
	if res := c.Send(context.Background(), m); res.Outcome != providers.Delivered {
		t.Fatalf("Send = %v %q %v", res.Outcome, res.Reason, res.Err)
	}
	want := []providertest.Request{
		{
			Method: "POST", URL: "https://iam.developer.hihonor.com/auth/realms/developer/protocol/openid-connect/token",
			ContentType: "application/x-www-form-urlencoded;charset=UTF-8",
			Body:        "client_id=abc123&client_secret=s3cr%26t&grant_type=client_credentials",
		},
		{
			Method: "POST", URL: "https://push-api.cloud.hihonor.com/api/v1/104411047/sendMessage",
			ContentType: "application/json;charset=UTF-8", Auth: "Bearer AT1",
			Timestamp: "1772359200000", // date -ud 2026-03-01T10:00:00Z +%s%3N
			Body: `{"android":{"ttl":"3600s","targetUserType":0,"notification":{"title":"Alice","body":"hi","clickAction":{"type":3},` +
				`"importance":"NORMAL","notifyId":1443708484,"tag":"conv-42","badge":{"setNum":2,"badgeClass":"com.example.Main"}}},"token":["T0"]}`,
		},
	}
	if diff := cmp.Diff(want, rt.Requests()); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
}

func TestSendOutcomes(t *testing.T) {
	providertest.RunSends(t, []providertest.SendCase{
		{"expired token listed", []fake.Answer{{Code: "expireToken"}}, providers.DropToken, "expireToken", 0, 1},
		{"failed token listed", []fake.Answer{{Code: "failToken"}}, providers.Retry, "failToken", 0, 1},
		{"all tokens invalid", []fake.Answer{{Code: "80300007"}}, providers.DropToken, "80300007", 0, 1},
		{"bad parameters", []fake.Answer{{Code: "80100003"}}, providers.BadMessage, "80100003", 0, 1},
		{"app may not push", []fake.Answer{{Code: "80300002"}}, providers.BadCredentials, "80300002", 0, 1},
		{"internal error", []fake.Answer{{Code: "81000001"}}, providers.Retry, "81000001", 0, 1},
		{"flow control", []fake.Answer{{Code: "status:503", RetryAfter: 3 * time.Second}}, providers.Retry, "503", 3 * time.Second, 1},
		{"bare 500", []fake.Answer{{Code: "status:500"}}, providers.Retry, "500", 0, 1},
		{"bare 400", []fake.Answer{{Code: "status:400"}}, providers.BadMessage, "400", 0, 1},
		{"connection reset", []fake.Answer{{Code: "reset"}}, providers.Retry, "transport", 0, 1},
		{"401 once: refreshed and resent", []fake.Answer{{Code: "status:401", Times: 1}}, providers.Delivered, "200", 0, 2},
		{"expired code once: refreshed and resent", []fake.Answer{{Code: "80200003", Times: 1}}, providers.Delivered, "200", 0, 2},
		{"401 twice: credentials", []fake.Answer{{Code: "status:401", Times: 2}}, providers.BadCredentials, "401", 0, 2},
		{"auth failed twice: credentials", []fake.Answer{{Code: "80200001", Times: 2}}, providers.BadCredentials, "80200001", 0, 2},
	}, func(t *testing.T, answers []fake.Answer) (providers.Result, *fake.State) {
		e := setup(t)
		e.Fake.State.Script("tok-1", answers...)
		return e.Client(t).Send(context.Background(), testMessage("tok-1")), e.Fake.State
	})
}

func TestTokenRefresh(t *testing.T) {
	e := setup(t)
	providertest.TokenRefresh{
		Client:  e.Client(t),
		Message: func() *providers.Message { return testMessage("tok-1") },
		Clock:   e.Clock,
		Refresh: fakehonor.TokenLifetime - tokenMargin + time.Second,
		Issued:  e.Fake.TokensIssued,
		// Honor revokes the token before the client thinks it expires: 401 80200003.
		Expire: e.Fake.ExpireTokens,
		State:  e.Fake.State,
	}.Run(t)
}

func TestWrongSecret(t *testing.T) {
	e := setup(t)
	e.Cert.Data[config.KeyClientSecret] = []byte("not-the-secret")
	providertest.WantBadCredentials(t, e.Fake.State, e.Client(t), testMessage("tok-1"), "invalid_client")
}

func TestTruncation(t *testing.T) {
	e := setup(t)
	providertest.WantTruncated(t, e.Fake.State, e.Client(t), testMessage("tok-1"), 3500) // near 4096
}

func TestValidate(t *testing.T) {
	good := func() *config.Certificate {
		return &config.Certificate{
			Name: "hn", Provider: config.Honor,
			Data:  map[string][]byte{config.KeyClientSecret: []byte("0123abcd\n")},
			Honor: &config.HonorSpec{AppID: "104411047", ClientID: "abc123"},
		}
	}
	providertest.Credentials{Good: good, Validate: Validate, New: New,
		Accepted: func(t *testing.T, cert *config.Certificate, info providers.CredentialInfo) {
			if !strings.Contains(info.Subject, cert.Honor.ClientID) {
				t.Errorf("subject %q does not name the client", info.Subject)
			}
		},
	}.RunValidate(t, []providertest.ValidateCase{
		{"good", func(*config.Certificate) {}, "", ""},
		{"good with badge class", func(c *config.Certificate) { c.Data[KeyBadgeClass] = []byte("com.example.Main") }, "", ""},
		{"no spec", func(c *config.Certificate) { c.Honor = nil }, providers.ReasonInvalidCredentials, ""},
		{"no app id", func(c *config.Certificate) { c.Honor.AppID = "" }, providers.ReasonInvalidCredentials, ""},
		{"no client id", func(c *config.Certificate) { c.Honor.ClientID = "" }, providers.ReasonInvalidCredentials, ""},
		{"app id with a slash", func(c *config.Certificate) { c.Honor.AppID = "1/2" }, providers.ReasonInvalidCredentials, ""},
		{"no secret", func(c *config.Certificate) { delete(c.Data, config.KeyClientSecret) }, providers.ReasonKeyMissing, config.KeyClientSecret},
		{"blank secret", func(c *config.Certificate) { c.Data[config.KeyClientSecret] = []byte("\n") }, providers.ReasonInvalidCredentials, config.KeyClientSecret},
		{"secret with a space", func(c *config.Certificate) { c.Data[config.KeyClientSecret] = []byte("ab cd") }, providers.ReasonInvalidCredentials, config.KeyClientSecret},
	})
}
