package meizu_test

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/imcloud/im-push-operator/dispatcher/config"
	"github.com/imcloud/im-push-operator/dispatcher/providers"
	"github.com/imcloud/im-push-operator/dispatcher/providers/fake"
	fakemeizu "github.com/imcloud/im-push-operator/dispatcher/providers/fake/meizu"
	"github.com/imcloud/im-push-operator/dispatcher/providers/fake/providertest"
	"github.com/imcloud/im-push-operator/dispatcher/providers/meizu"
)

// Known answers computed outside Go. The first is the example in Meizu's own
// API document (MEIZUPUSH/PushAPI README, "接口签名规范"), which prints the
// same digest:
//
//	printf '%s' 'appId=10000messageJson={"title":"title","content":"content","pushTimeInfo":{"offLine":1,"validTime":24}}pushIds=RA50c6348036344485d01776773577c64740465480a6b<APP_SECRET>' | md5sum
//	printf '%s' 'appId=10000messageJson={"a":1}pushIds=pid1secret' | md5sum
const (
	signKATMeizuDoc = "ac076ff25d9900015a681cb5172aa53b"
	signKAT         = "120339b6b72ac7f06967d1c68edcdbbb"
)

func TestSignKnownAnswer(t *testing.T) {
	doc := map[string]string{
		"appId":       "10000",
		"pushIds":     "RA50c6348036344485d01776773577c64740465480a6b",
		"messageJson": `{"title":"title","content":"content","pushTimeInfo":{"offLine":1,"validTime":24}}`,
	}
	if got := meizu.Sign(doc, "<APP_SECRET>"); got != signKATMeizuDoc {
		t.Errorf("Sign(Meizu's example) = %s, want %s", got, signKATMeizuDoc)
	}
	// A sign parameter already present is left out of the digest.
	own := map[string]string{"pushIds": "pid1", "messageJson": `{"a":1}`, "appId": "10000", "sign": "x"}
	if got := meizu.Sign(own, "secret"); got != signKAT {
		t.Errorf("Sign = %s, want %s", got, signKAT)
	}
}

// start is 23:04:05 in Beijing, so the next quota reset is 55 minutes away.
var start = time.Date(2025, 3, 10, 15, 4, 5, 0, time.UTC)

type env struct {
	srv    *fakemeizu.Server
	cert   *config.Certificate
	client providers.Client
}

func setup(t *testing.T) *env {
	t.Helper()
	srv := providertest.Start(t, fakemeizu.Start)
	cert := srv.Certificate("meizu-test")
	c, err := meizu.New(cert, providers.Options{Now: func() time.Time { return start }})
	if err != nil {
		t.Fatal(err)
	}
	return &env{srv: srv, cert: cert, client: c}
}

func msg(token string) *providers.Message {
	return &providers.Message{
		ID:             "n-1",
		Token:          token,
		Title:          "Alice",
		Body:           "hi",
		Classification: config.Classification{MeizuNoticeMsgType: 1},
	}
}

var notifyKeyPattern = regexp.MustCompile(`^[0-9A-Za-z_-]{1,8}$`)

func TestSendPayload(t *testing.T) {
	e := setup(t)
	// Characters that URL encoding changes (& = + % space) show the
	// signature is over raw values.
	title := "Tom & Jerry = 1+1 100% " + strings.Repeat("标", 20)
	m := &providers.Message{
		ID:             "n-1",
		Token:          "pushid-a",
		Title:          title,
		Body:           strings.Repeat("b", 120),
		Data:           map[string]string{"conv": "42", "q": "a=b&c"},
		CollapseKey:    "conv-42",
		Expiration:     start.Add(90 * time.Minute),
		Classification: config.Classification{MeizuNoticeMsgType: 1},
	}
	if res := e.client.Send(context.Background(), m); res.Outcome != providers.Delivered {
		t.Fatalf("Send = %+v, want Delivered", res)
	}
	got := e.srv.State.Received()
	if len(got) != 1 {
		t.Fatalf("received %d sends", len(got))
	}
	key := got[0].Fields["notifyKey"]
	if !notifyKeyPattern.MatchString(key) {
		t.Fatalf("notifyKey %q is not 1..8 of [0-9A-Za-z_-]", key)
	}
	want := []fake.Received{{
		Provider: "Meizu",
		Token:    "pushid-a",
		Title:    string([]rune(title)[:32]),
		Body:     strings.Repeat("b", 100),
		Data:     map[string]string{"conv": "42", "q": "a=b&c"},
		Fields: map[string]string{
			"appId":         e.cert.Meizu.AppID,
			"noticeMsgType": "1",
			"noticeBarType": "0",
			"clickType":     "0",
			"offLine":       "1",
			"validTime":     "2",
			"notifyKey":     key,
		},
	}}
	if diff := cmp.Diff(want, got, cmpopts.IgnoreFields(fake.Received{}, "At")); diff != "" {
		t.Fatalf("received (-want +got):\n%s", diff)
	}
}

func TestNotifyKeyAndValidTime(t *testing.T) {
	e := setup(t)
	send := func(collapse string, exp time.Time) map[string]string {
		t.Helper()
		m := msg("tok")
		m.CollapseKey, m.Expiration = collapse, exp
		if res := e.client.Send(context.Background(), m); res.Outcome != providers.Delivered {
			t.Fatalf("Send = %+v", res)
		}
		rec := e.srv.State.Received()
		return rec[len(rec)-1].Fields
	}
	a := send("conv-1", time.Time{})
	b := send("conv-1", start.Add(10*time.Minute))
	c := send("conv-2", start.Add(100*time.Hour))
	d := send("", start.Add(-time.Hour)) // collapse key from the id "n-1"
	if a["notifyKey"] != b["notifyKey"] || a["notifyKey"] == c["notifyKey"] || d["notifyKey"] == a["notifyKey"] {
		t.Errorf("notifyKeys %q %q %q %q: want equal for one collapse key only", a["notifyKey"], b["notifyKey"], c["notifyKey"], d["notifyKey"])
	}
	for _, tt := range []struct{ got, want string }{{a["validTime"], "24"}, {b["validTime"], "1"}, {c["validTime"], "72"}, {d["validTime"], "1"}} {
		if tt.got != tt.want {
			t.Errorf("validTime = %s, want %s", tt.got, tt.want)
		}
	}
}

func TestLocalRejects(t *testing.T) {
	for name, m := range map[string]*providers.Message{
		"no title": {ID: "n", Token: "t", Body: "b"},
		"no body":  {ID: "n", Token: "t", Title: "a"},
	} {
		t.Run(name, func(t *testing.T) {
			e := setup(t)
			providertest.WantLocalReject(t, e.srv.State, e.client, m)
		})
	}
}

func TestAnswerOutcomes(t *testing.T) {
	midnight := time.Date(2025, 3, 11, 0, 0, 0, 0, providers.Beijing)
	providertest.RunAnswers(t, []providertest.AnswerCase{
		// Per-pushId codes inside value.
		{fake.Answer{Code: "110002"}, providers.DropToken, "110002", 0, time.Time{}},
		{fake.Answer{Code: "110003"}, providers.DropToken, "110003", 0, time.Time{}},
		{fake.Answer{Code: "110005"}, providers.DropToken, "110005", 0, time.Time{}},
		{fake.Answer{Code: "value:110010"}, providers.DropToken, "inactive", 0, time.Time{}},
		{fake.Answer{Code: "110011"}, providers.QuotaExceeded, "110011", 0, midnight},
		{fake.Answer{Code: "201"}, providers.BadCredentials, "201", 0, time.Time{}},
		{fake.Answer{Code: "501"}, providers.Retry, "501", 0, time.Time{}},
		{fake.Answer{Code: "513"}, providers.Retry, "513", 0, time.Time{}},
		{fake.Answer{Code: "519"}, providers.Retry, "519", 0, time.Time{}},
		{fake.Answer{Code: "520"}, providers.Delivered, "520", 0, time.Time{}},
		{fake.Answer{Code: "value:777"}, providers.BadMessage, "777", 0, time.Time{}},
		// Top-level codes.
		{fake.Answer{Code: "500"}, providers.Retry, "500", 0, time.Time{}},
		{fake.Answer{Code: "1001"}, providers.Retry, "1001", 0, time.Time{}},
		{fake.Answer{Code: "1003"}, providers.Retry, "1003", 0, time.Time{}},
		{fake.Answer{Code: "110010", RetryAfter: 4 * time.Second}, providers.Retry, "110010", 4 * time.Second, time.Time{}},
		{fake.Answer{Code: "1005"}, providers.BadMessage, "1005", 0, time.Time{}},
		{fake.Answer{Code: "110004"}, providers.BadMessage, "110004", 0, time.Time{}},
		{fake.Answer{Code: "110032"}, providers.BadMessage, "110032", 0, time.Time{}},
		{fake.Answer{Code: "110053"}, providers.BadMessage, "110053", 0, time.Time{}},
		{fake.Answer{Code: "1006"}, providers.BadCredentials, "1006", 0, time.Time{}},
		{fake.Answer{Code: "110000"}, providers.BadCredentials, "110000", 0, time.Time{}},
		{fake.Answer{Code: "110001"}, providers.BadCredentials, "110001", 0, time.Time{}},
		{fake.Answer{Code: "110009"}, providers.BadCredentials, "110009", 0, time.Time{}},
		{fake.Answer{Code: "110031"}, providers.BadCredentials, "110031", 0, time.Time{}},
		{fake.Answer{Code: "110033"}, providers.BadCredentials, "110033", 0, time.Time{}},
		{fake.Answer{Code: "110019"}, providers.QuotaExceeded, "110019", 0, midnight},
		{fake.Answer{Code: "110051"}, providers.QuotaExceeded, "110051", 0, midnight},
		{fake.Answer{Code: "status:503", RetryAfter: 3 * time.Second}, providers.Retry, "HTTP 503", 3 * time.Second, time.Time{}},
		{fake.Answer{Code: "status:403"}, providers.BadCredentials, "HTTP 403", 0, time.Time{}},
		{fake.Answer{Code: "status:400"}, providers.BadMessage, "HTTP 400", 0, time.Time{}},
		{fake.Answer{Code: "reset"}, providers.Retry, "transport", 0, time.Time{}},
	}, func(t *testing.T, a fake.Answer) providers.Result {
		e := setup(t)
		e.srv.State.Script("tok", a)
		return e.client.Send(context.Background(), msg("tok"))
	})
}

func TestTimeout(t *testing.T) {
	e := setup(t)
	providertest.WantTimeout(t, e.srv.State, e.client, msg("tok"))
}

func TestSignatureRejected(t *testing.T) {
	tests := []struct {
		name   string
		edit   func(c *config.Certificate)
		reason string
	}{
		{"wrong app secret", func(c *config.Certificate) {
			c.Data = map[string][]byte{config.KeyAppSecret: []byte("not-the-secret")}
		}, "1006"},
		{"unknown app id", func(c *config.Certificate) { c.Meizu = &config.MeizuSpec{AppID: "1"} }, "110000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := setup(t)
			cert := *e.cert
			tt.edit(&cert)
			c := providertest.Client(t, meizu.New, &cert, providers.Options{})
			providertest.WantBadCredentials(t, e.srv.State, c, msg("tok"), tt.reason)
		})
	}
}

func TestValidate(t *testing.T) {
	good := func() *config.Certificate {
		return &config.Certificate{
			Name: "c", Provider: config.Meizu,
			Data:  map[string][]byte{config.KeyAppSecret: []byte("s3cret")},
			Meizu: &config.MeizuSpec{AppID: "100999"},
		}
	}
	providertest.Credentials{Good: good, Validate: meizu.Validate, New: meizu.New, Accepted: providertest.SubjectIs("appId 100999")}.RunValidate(t, []providertest.ValidateCase{
		{"good", func(*config.Certificate) {}, "", ""},
		{"no meizu spec", func(c *config.Certificate) { c.Meizu = nil }, providers.ReasonInvalidCredentials, ""},
		{"appID not a number", func(c *config.Certificate) { c.Meizu.AppID = "abc" }, providers.ReasonInvalidCredentials, ""},
		{"no appSecret", func(c *config.Certificate) { c.Data = nil }, providers.ReasonKeyMissing, config.KeyAppSecret},
		{"appSecret with newline", func(c *config.Certificate) { c.Data[config.KeyAppSecret] = []byte("s3cret\r\n") }, providers.ReasonInvalidCredentials, config.KeyAppSecret},
	})
}
