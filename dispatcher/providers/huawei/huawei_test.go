package huawei

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
	fakehuawei "github.com/imcloud/im-push-operator/dispatcher/providers/fake/huawei"
	"github.com/imcloud/im-push-operator/dispatcher/providers/fake/providertest"
)

var start = time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)

func setup(t *testing.T) *providertest.Env[*fakehuawei.Server] {
	return providertest.NewEnv(t, fakehuawei.Start, "huawei-main", start, New)
}

func intp(i int) *int { return &i }

func testMessage(token string) *providers.Message {
	return &providers.Message{
		ID:             "n-1",
		Token:          token,
		Title:          "Alice",
		Body:           "hi",
		Badge:          intp(3),
		Data:           map[string]string{"conv": "42"},
		CollapseKey:    "conv-42",
		Expiration:     start.Add(time.Hour),
		Classification: config.Classification{HuaweiCategory: "IM"},
	}
}

func TestSendPayload(t *testing.T) {
	for _, tc := range []struct {
		name       string
		badgeClass string
		want       map[string]string
	}{
		{
			name: "no badge class: no badge block",
			want: map[string]string{"category": "IM", "ttl": "3600s", "tag": "conv-42", "notify_id": "1443708484", "click_action_type": "3"},
		},
		{
			name:       "badge class from the Secret",
			badgeClass: "com.example.MainActivity\n",
			want: map[string]string{"category": "IM", "ttl": "3600s", "tag": "conv-42", "notify_id": "1443708484", "click_action_type": "3",
				"badge_set_num": "3", "badge_class": "com.example.MainActivity"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := setup(t)
			if tc.badgeClass != "" {
				e.Cert.Data[KeyBadgeClass] = []byte(tc.badgeClass)
			}
			res := e.Client(t).Send(context.Background(), testMessage("tok-aaaaaaaaaa"))
			if res.Outcome != providers.Delivered || res.Reason != CodeSuccess {
				t.Fatalf("Send = %v %q (%v), want Delivered 80000000", res.Outcome, res.Reason, res.Err)
			}
			got := e.Fake.State.Received()
			if len(got) != 1 {
				t.Fatalf("fake received %d sends, want 1", len(got))
			}
			r := got[0]
			tc.want["app_id"] = e.Cert.Huawei.AppID
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

// TestExactRequests pins the bytes of the token and send requests, and that a
// certificate without endpoint goes to Huawei's real hosts.
func TestExactRequests(t *testing.T) {
	rt := &providertest.Recorder{Answer: func(r *http.Request) *http.Response {
		if strings.HasSuffix(r.URL.Path, "/token") {
			return providertest.Reply(200, `{"access_token":"AT1","expires_in":3600,"token_type":"Bearer"}`)
		}
		return providertest.Reply(200, `{"code":"80000000","msg":"Success","requestId":"r1"}`)
	}}
	cert := &config.Certificate{
		Name: "hw", Provider: config.Huawei,
		Data:   map[string][]byte{config.KeyClientSecret: []byte("s3cr&t=+\n"), KeyBadgeClass: []byte("com.example.Main")},
		Huawei: &config.HuaweiSpec{AppID: "10001", ClientID: "20002"},
	}
	c, err := New(cert, providers.Options{HTTPClient: &http.Client{Transport: rt}, Now: func() time.Time { return start }})
	if err != nil {
		t.Fatal(err)
	}
	m := testMessage("T0")
	m.Title = `Al"ice`
	m.Body = "你好"
	if res := c.Send(context.Background(), m); res.Outcome != providers.Delivered {
		t.Fatalf("Send = %v %q %v", res.Outcome, res.Reason, res.Err)
	}
	want := []providertest.Request{
		{
			Method: "POST", URL: "https://oauth-login.cloud.huawei.com/oauth2/v3/token",
			ContentType: "application/x-www-form-urlencoded;charset=UTF-8",
			Body:        "client_id=20002&client_secret=s3cr%26t%3D%2B&grant_type=client_credentials",
		},
		{
			Method: "POST", URL: "https://push-api.cloud.huawei.com/v1/10001/messages:send",
			ContentType: "application/json;charset=UTF-8", Auth: "Bearer AT1",
			Body: `{"validate_only":false,"message":{"data":"{\"conv\":\"42\"}","android":{"category":"IM","ttl":"3600s",` +
				`"notification":{"title":"Al\"ice","body":"你好","click_action":{"type":3},"notify_id":1443708484,"tag":"conv-42",` +
				`"badge":{"set_num":3,"class":"com.example.Main"}}},"token":["T0"]}}`,
		},
	}
	if diff := cmp.Diff(want, rt.Requests()); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
}

func TestSendOutcomes(t *testing.T) {
	providertest.RunSends(t, []providertest.SendCase{
		{"all tokens invalid", []fake.Answer{{Code: "80300007"}}, providers.DropToken, "80300007", 0, 1},
		{"partial success lists our token", []fake.Answer{{Code: "80100000"}}, providers.DropToken, "80100000", 0, 1},
		{"bad parameters", []fake.Answer{{Code: "80100003"}}, providers.BadMessage, "80100003", 0, 1},
		{"body too large", []fake.Answer{{Code: "80300008"}}, providers.BadMessage, "80300008", 0, 1},
		{"undocumented 801 code", []fake.Answer{{Code: "80100099"}}, providers.BadMessage, "80100099", 0, 1},
		{"app may not push", []fake.Answer{{Code: "80300002"}}, providers.BadCredentials, "80300002", 0, 1},
		{"OAuth service failed", []fake.Answer{{Code: "80600003"}}, providers.BadCredentials, "80600003", 0, 1},
		{"auth failed", []fake.Answer{{Code: "80200001"}}, providers.BadCredentials, "80200001", 0, 1},
		{"topic tasks", []fake.Answer{{Code: "80100017"}}, providers.Retry, "80100017", 0, 1},
		{"internal error", []fake.Answer{{Code: "81000001"}}, providers.Retry, "81000001", 0, 1},
		{"flow control", []fake.Answer{{Code: "status:503", RetryAfter: 7 * time.Second}}, providers.Retry, "503", 7 * time.Second, 1},
		{"bad gateway", []fake.Answer{{Code: "status:502"}}, providers.Retry, "502", 0, 1},
		{"bare 401", []fake.Answer{{Code: "status:401"}}, providers.BadCredentials, "401", 0, 1},
		{"connection reset", []fake.Answer{{Code: "reset"}}, providers.Retry, "transport", 0, 1},
		{"token expired once: refreshed and resent", []fake.Answer{{Code: "80200003", Times: 1}}, providers.Delivered, "80000000", 0, 2},
		{"JWT expired once: refreshed and resent", []fake.Answer{{Code: "80200005", Times: 1}}, providers.Delivered, "80000000", 0, 2},
		{"token expired twice: credentials", []fake.Answer{{Code: "80200003", Times: 2}}, providers.BadCredentials, "80200003", 0, 2},
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
		Refresh: fakehuawei.TokenLifetime - tokenMargin + time.Second,
		Issued:  e.Fake.TokensIssued,
		// The fake's clock alone moves past expiry: the send is answered 80200003.
		Expire: func() { e.Fake.SetClock(func() time.Time { return e.Clock.Now().Add(2 * time.Hour) }) },
		State:  e.Fake.State,
	}.Run(t)
}

func TestWrongSecret(t *testing.T) {
	e := setup(t)
	e.Cert.Data[config.KeyClientSecret] = []byte("not-the-secret")
	providertest.WantBadCredentials(t, e.Fake.State, e.Client(t), testMessage("tok-1"), "1101")
}

func TestTruncation(t *testing.T) {
	e := setup(t)
	providertest.WantTruncated(t, e.Fake.State, e.Client(t), testMessage("tok-1"), 3500) // near 4096
}

func TestClassifyPartial(t *testing.T) {
	for _, tc := range []struct {
		msg     string
		outcome providers.Outcome
	}{
		{`{"success":1,"failure":1,"illegal_tokens":["other"]}`, providers.Delivered},
		{`{"success":0,"failure":1,"illegal_tokens":["mine"]}`, providers.DropToken},
		{`{"success":0,"failure":1,"illegal_tokens":[]}`, providers.Retry},
	} {
		body := `{"code":"80100000","msg":` + strings.ReplaceAll(`"`+strings.ReplaceAll(tc.msg, `"`, `\"`)+`"`, "\n", "") + `}`
		res := classify(&providers.Reply{Status: 200, Header: http.Header{}, Body: []byte(body)}, "mine", start)
		if res.Outcome != tc.outcome || res.Reason != CodePartialSuccess {
			t.Errorf("msg %s: %v %q, want %v", tc.msg, res.Outcome, res.Reason, tc.outcome)
		}
	}
}

func TestValidate(t *testing.T) {
	good := func() *config.Certificate {
		return &config.Certificate{
			Name: "hw", Provider: config.Huawei,
			Data:   map[string][]byte{config.KeyClientSecret: []byte("0123abcd\n")},
			Huawei: &config.HuaweiSpec{AppID: "10001"},
		}
	}
	providertest.Credentials{Good: good, Validate: Validate, New: New,
		Accepted: func(t *testing.T, cert *config.Certificate, info providers.CredentialInfo) {
			if !strings.Contains(info.Subject, cert.Huawei.AppID) {
				t.Errorf("subject %q does not name the app", info.Subject)
			}
		},
	}.RunValidate(t, []providertest.ValidateCase{
		{"good", func(*config.Certificate) {}, "", ""},
		{"good with client id and badge class", func(c *config.Certificate) {
			c.Huawei.ClientID = "20002"
			c.Data[KeyBadgeClass] = []byte("com.example.Main")
		}, "", ""},
		{"no spec", func(c *config.Certificate) { c.Huawei = nil }, providers.ReasonInvalidCredentials, ""},
		{"no app id", func(c *config.Certificate) { c.Huawei.AppID = "" }, providers.ReasonInvalidCredentials, ""},
		{"app id not numeric", func(c *config.Certificate) { c.Huawei.AppID = "com.example" }, providers.ReasonInvalidCredentials, ""},
		{"client id not numeric", func(c *config.Certificate) { c.Huawei.ClientID = "abc" }, providers.ReasonInvalidCredentials, ""},
		{"no secret", func(c *config.Certificate) { delete(c.Data, config.KeyClientSecret) }, providers.ReasonKeyMissing, config.KeyClientSecret},
		{"blank secret", func(c *config.Certificate) { c.Data[config.KeyClientSecret] = []byte(" \n") }, providers.ReasonInvalidCredentials, config.KeyClientSecret},
		{"secret with a space", func(c *config.Certificate) { c.Data[config.KeyClientSecret] = []byte("ab cd") }, providers.ReasonInvalidCredentials, config.KeyClientSecret},
		{"blank badge class", func(c *config.Certificate) { c.Data[KeyBadgeClass] = []byte("") }, providers.ReasonInvalidCredentials, KeyBadgeClass},
	})
}
