package xiaomi

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"

	"github.com/imcloud/im-push-operator/dispatcher/config"
	"github.com/imcloud/im-push-operator/dispatcher/providers"
	"github.com/imcloud/im-push-operator/dispatcher/providers/fake"
	"github.com/imcloud/im-push-operator/dispatcher/providers/fake/providertest"
	fakexiaomi "github.com/imcloud/im-push-operator/dispatcher/providers/fake/xiaomi"
)

// 10:00 UTC is 18:00 in Beijing.
var now = time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)

func clock() time.Time { return now }

type env struct {
	fake *fakexiaomi.Server
	cert *config.Certificate
}

func setup(t *testing.T) *env {
	t.Helper()
	srv := providertest.Start(t, fakexiaomi.Start)
	return &env{fake: srv, cert: srv.Certificate("xiaomi-main")}
}

func (e *env) client(t *testing.T) providers.Client {
	t.Helper()
	c, err := New(e.cert, providers.Options{Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func intp(i int) *int { return &i }

func testMessage(token string) *providers.Message {
	return &providers.Message{
		ID:          "n-1",
		Token:       token,
		Title:       "Alice",
		Body:        "hi",
		Badge:       intp(3),
		Data:        map[string]string{"conv": "42"},
		CollapseKey: "conv-42",
		Expiration:  now.Add(time.Hour),
	}
}

func TestSendPayload(t *testing.T) {
	e := setup(t)
	res := e.client(t).Send(context.Background(), testMessage("tok-aaaaaaaaaa"))
	if res.Outcome != providers.Delivered || res.Reason != "0" {
		t.Fatalf("Send = %v %q (%v), want Delivered 0", res.Outcome, res.Reason, res.Err)
	}
	got := e.fake.State.Received()
	if len(got) != 1 {
		t.Fatalf("fake received %d sends, want 1", len(got))
	}
	r := got[0]
	if r.Token != "tok-aaaaaaaaaa" || r.Title != "Alice" || r.Body != "hi" {
		t.Errorf("received token/title/body %q/%q/%q", r.Token, r.Title, r.Body)
	}
	if diff := cmp.Diff(map[string]string{"conv": "42"}, r.Data); diff != "" {
		t.Errorf("extras (-want +got):\n%s", diff)
	}
	want := map[string]string{
		"package": e.cert.Xiaomi.PackageName, "pass_through": "0", "notify_type": "-1", "notify_id": "1443708484",
		"time_to_live": "3600000", "channel_id": "im", "notify_effect": "1", "payload": `{"conv":"42"}`,
	}
	if diff := cmp.Diff(want, r.Fields); diff != "" {
		t.Errorf("fields (-want +got):\n%s", diff)
	}
}

// TestExactRequest pins the form bytes, the key header and each region's host.
func TestExactRequest(t *testing.T) {
	for _, tc := range []struct {
		region, url string
	}{
		{"", "https://api.xmpush.xiaomi.com/v3/message/regid"},
		{"China", "https://api.xmpush.xiaomi.com/v3/message/regid"},
		{"Global", "https://api.xmpush.global.xiaomi.com/v3/message/regid"},
		{"Europe", "https://fr-api.xmpush.global.xiaomi.com/v3/message/regid"},
		{"Russia", "https://ru-api.xmpush.global.xiaomi.com/v3/message/regid"},
		{"India", "https://idmb-api.xmpush.global.xiaomi.com/v3/message/regid"},
		{"Singapore", "https://sgp-api.xmpush.global.xiaomi.com/v3/message/regid"},
	} {
		t.Run("region "+tc.region, func(t *testing.T) {
			rt := &providertest.Recorder{Answer: func(*http.Request) *http.Response {
				return providertest.Reply(200, `{"result":"ok","code":0,"data":{"id":"x"}}`)
			}}
			cert := &config.Certificate{
				Name: "mi", Provider: config.Xiaomi,
				Data:   map[string][]byte{config.KeyAppSecret: []byte("c2VjcmV0+/==\n")},
				Xiaomi: &config.XiaomiSpec{PackageName: "com.example.im", Region: tc.region, ChannelID: "123"},
			}
			c, err := New(cert, providers.Options{HTTPClient: &http.Client{Transport: rt}, Now: clock})
			if err != nil {
				t.Fatal(err)
			}
			m := testMessage("R0")
			m.Title = "A&B"
			m.Body = "你好 =x"
			m.Data = map[string]string{"conv": "42", "channel_id": "spoof"}
			if res := c.Send(context.Background(), m); res.Outcome != providers.Delivered {
				t.Fatalf("Send = %v %q %v", res.Outcome, res.Reason, res.Err)
			}
			want := []providertest.Request{{
				Method:      "POST",
				URL:         tc.url,
				ContentType: "application/x-www-form-urlencoded;charset=UTF-8",
				Auth:        "key=c2VjcmV0+/==",
				Body: "description=%E4%BD%A0%E5%A5%BD+%3Dx&extra.channel_id=123&extra.conv=42&extra.notify_effect=1" +
					"&notify_id=1443708484&notify_type=-1&pass_through=0" +
					"&payload=%7B%22channel_id%22%3A%22spoof%22%2C%22conv%22%3A%2242%22%7D" +
					"&registration_id=R0&restricted_package_name=com.example.im&time_to_live=3600000&title=A%26B",
			}}
			if diff := cmp.Diff(want, rt.Requests()); diff != "" {
				t.Errorf("requests (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSendOutcomes(t *testing.T) {
	// Next Beijing midnight: date -u -d '2026-03-02 00:00 +0800' +%FT%TZ → 2026-03-01T16:00:00Z
	midnight := time.Date(2026, 3, 1, 16, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name       string
		answer     fake.Answer
		outcome    providers.Outcome
		reason     string
		retryAfter time.Duration
		resumeAt   time.Time
	}{
		{"bad regid in a success answer", fake.Answer{Code: "badregid"}, providers.DropToken, "bad_regids", 0, time.Time{}},
		{"no valid target", fake.Answer{Code: "20301"}, providers.DropToken, "20301", 0, time.Time{}},
		{"daily quota", fake.Answer{Code: "10034"}, providers.QuotaExceeded, "10034", 0, midnight},
		{"daily quota, client code", fake.Answer{Code: "200001"}, providers.QuotaExceeded, "200001", 0, midnight},
		{"authentication failed", fake.Answer{Code: "21301"}, providers.BadCredentials, "21301", 0, time.Time{}},
		{"illegal package", fake.Answer{Code: "22022"}, providers.BadCredentials, "22022", 0, time.Time{}},
		{"app blacklisted", fake.Answer{Code: "10031"}, providers.BadCredentials, "10031", 0, time.Time{}},
		{"system busy", fake.Answer{Code: "10002"}, providers.Retry, "10002", 0, time.Time{}},
		{"too frequent", fake.Answer{Code: "10027", RetryAfter: 2 * time.Second}, providers.Retry, "10027", 2 * time.Second, time.Time{}},
		{"internal", fake.Answer{Code: "1"}, providers.Retry, "1", 0, time.Time{}},
		{"bad params", fake.Answer{Code: "10016"}, providers.BadMessage, "10016", 0, time.Time{}},
		{"channel mismatch", fake.Answer{Code: "27001"}, providers.BadMessage, "27001", 0, time.Time{}},
		{"undocumented code", fake.Answer{Code: "99999"}, providers.Retry, "99999", 0, time.Time{}},
		{"service unavailable", fake.Answer{Code: "status:503", RetryAfter: 5 * time.Second}, providers.Retry, "503", 5 * time.Second, time.Time{}},
		{"bare 401", fake.Answer{Code: "status:401"}, providers.BadCredentials, "401", 0, time.Time{}},
		{"connection reset", fake.Answer{Code: "reset"}, providers.Retry, "transport", 0, time.Time{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := setup(t)
			e.fake.State.Script("tok-1", tc.answer)
			res := e.client(t).Send(context.Background(), testMessage("tok-1"))
			if res.Outcome != tc.outcome || res.Reason != tc.reason || res.RetryAfter != tc.retryAfter || !res.ResumeAt.Equal(tc.resumeAt) {
				t.Errorf("Send = %v %q retry-after %v resume %v (%v), want %v %q %v %v",
					res.Outcome, res.Reason, res.RetryAfter, res.ResumeAt, res.Err, tc.outcome, tc.reason, tc.retryAfter, tc.resumeAt)
			}
		})
	}
}

func TestAuthentication(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(c *config.Certificate)
		reason string
	}{
		{"wrong app secret", func(c *config.Certificate) { c.Data[config.KeyAppSecret] = []byte("bm90LXRoZS1zZWNyZXQ=") }, "21301"},
		{"package of another app", func(c *config.Certificate) { c.Xiaomi.PackageName = "com.example.other" }, "22022"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := setup(t)
			tc.mutate(e.cert)
			providertest.WantBadCredentials(t, e.fake.State, e.client(t), testMessage("tok-1"), tc.reason)
		})
	}
}

func TestLimits(t *testing.T) {
	e := setup(t)
	m := testMessage("tok-1")
	m.Title = strings.Repeat("标", 60)
	m.Body = strings.Repeat("题", 200)
	m.Data = map[string]string{"notify_effect": "2"}
	for i := range 12 {
		m.Data[fmt.Sprintf("k%02d", i)] = "v"
	}
	if res := e.client(t).Send(context.Background(), m); res.Outcome != providers.Delivered {
		t.Fatalf("Send = %v %q (%v)", res.Outcome, res.Reason, res.Err)
	}
	r := e.fake.State.Received()[0]
	if n := utf8.RuneCountInString(r.Title); n != MaxTitleRunes {
		t.Errorf("title has %d characters, want %d", n, MaxTitleRunes)
	}
	if n := utf8.RuneCountInString(r.Body); n != MaxDescriptionRunes {
		t.Errorf("description has %d characters, want %d", n, MaxDescriptionRunes)
	}
	if len(r.Data) != MaxExtras || r.Data["k00"] != "v" || r.Data["k09"] != "v" || r.Data["k10"] != "" {
		t.Errorf("extras %v, want k00..k09", r.Data)
	}
	if r.Fields["notify_effect"] != "1" {
		t.Errorf("notify_effect %q: custom data overwrote it", r.Fields["notify_effect"])
	}
	if !strings.Contains(r.Fields["payload"], `"k11":"v"`) {
		t.Errorf("payload %s lacks data beyond the extras limit", r.Fields["payload"])
	}
}

func TestValidate(t *testing.T) {
	good := func() *config.Certificate {
		return &config.Certificate{
			Name: "mi", Provider: config.Xiaomi,
			Data:   map[string][]byte{config.KeyAppSecret: []byte("c2VjcmV0==\n")},
			Xiaomi: &config.XiaomiSpec{PackageName: "com.example.im", Region: "Europe", ChannelID: "123"},
		}
	}
	providertest.Credentials{Good: good, Validate: Validate, New: New,
		Accepted: func(t *testing.T, cert *config.Certificate, info providers.CredentialInfo) {
			if !strings.Contains(info.Subject, cert.Xiaomi.PackageName) {
				t.Errorf("subject %q does not name the package", info.Subject)
			}
		},
	}.RunValidate(t, []providertest.ValidateCase{
		{"good", func(*config.Certificate) {}, "", ""},
		{"good, default region, no channel", func(c *config.Certificate) { c.Xiaomi.Region, c.Xiaomi.ChannelID = "", "" }, "", ""},
		{"no spec", func(c *config.Certificate) { c.Xiaomi = nil }, providers.ReasonInvalidCredentials, ""},
		{"no package", func(c *config.Certificate) { c.Xiaomi.PackageName = "" }, providers.ReasonInvalidCredentials, ""},
		{"one-segment package", func(c *config.Certificate) { c.Xiaomi.PackageName = "example" }, providers.ReasonInvalidCredentials, ""},
		{"package segment starting with a digit", func(c *config.Certificate) { c.Xiaomi.PackageName = "com.1example" }, providers.ReasonInvalidCredentials, ""},
		{"unknown region", func(c *config.Certificate) { c.Xiaomi.Region = "Mars" }, providers.ReasonInvalidCredentials, ""},
		{"channel with a space", func(c *config.Certificate) { c.Xiaomi.ChannelID = "a b" }, providers.ReasonInvalidCredentials, ""},
		{"no secret", func(c *config.Certificate) { delete(c.Data, config.KeyAppSecret) }, providers.ReasonKeyMissing, config.KeyAppSecret},
		{"blank secret", func(c *config.Certificate) { c.Data[config.KeyAppSecret] = []byte(" \n") }, providers.ReasonInvalidCredentials, config.KeyAppSecret},
		{"secret with a newline inside", func(c *config.Certificate) { c.Data[config.KeyAppSecret] = []byte("ab\ncd") }, providers.ReasonInvalidCredentials, config.KeyAppSecret},
	})
}
