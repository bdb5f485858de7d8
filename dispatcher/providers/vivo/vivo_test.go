package vivo_test

import (
	"context"
	"hash/fnv"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/imcloud/im-push-operator/dispatcher/config"
	"github.com/imcloud/im-push-operator/dispatcher/providers"
	"github.com/imcloud/im-push-operator/dispatcher/providers/fake"
	"github.com/imcloud/im-push-operator/dispatcher/providers/fake/providertest"
	fakevivo "github.com/imcloud/im-push-operator/dispatcher/providers/fake/vivo"
	"github.com/imcloud/im-push-operator/dispatcher/providers/vivo"
)

// Known answer computed outside Go:
//
//	printf '%s' '10004appkey1700000000000secret' | md5sum
const signKAT = "a5000121b62843a0f2e075e47026b144"

func TestSignKnownAnswer(t *testing.T) {
	if got := vivo.Sign("10004", "appkey", 1700000000000, "secret"); got != signKAT {
		t.Fatalf("Sign = %s, want %s", got, signKAT)
	}
}

// start is 23:04:05 in Beijing, so the next quota reset is 55 minutes away.
var start = time.Date(2025, 3, 10, 15, 4, 5, 0, time.UTC)

type env struct {
	*providertest.Env[*fakevivo.Server]
	client providers.Client
}

// setup starts a fake and a client sharing one injected clock; the client
// trusts the fake through the certificate's caBundle, as in production.
func setup(t *testing.T) *env {
	e := providertest.NewEnv(t, fakevivo.Start, "vivo-test", start, vivo.New)
	return &env{Env: e, client: e.Client(t)}
}

func msg(id, token string) *providers.Message {
	return &providers.Message{
		ID:             id,
		Token:          token,
		Title:          "Alice",
		Body:           "hi",
		Classification: config.Classification{VivoCategory: "IM", VivoClassification: 1},
	}
}

func notifyID(s string) string {
	h := fnv.New32a()
	h.Write([]byte(s))
	return strconv.FormatUint(uint64(h.Sum32()%2147483647+1), 10)
}

func TestSendPayload(t *testing.T) {
	e := setup(t)
	m := &providers.Message{
		ID:             "n-1",
		Token:          "regid-a",
		Title:          "éé" + strings.Repeat("标", 25), // 54 wide: "éé" + 18 fit
		Body:           "a" + strings.Repeat("文", 60),  // 121 wide: "a" + 49 fit
		Data:           map[string]string{"conv": "42"},
		CollapseKey:    "conv-42",
		Expiration:     start.Add(2 * time.Hour),
		Classification: config.Classification{VivoCategory: "IM", VivoClassification: 1},
	}
	if res := e.client.Send(context.Background(), m); res.Outcome != providers.Delivered {
		t.Fatalf("Send = %+v, want Delivered", res)
	}
	got := e.Fake.State.Received()
	if len(got) != 1 {
		t.Fatalf("received %d sends", len(got))
	}
	requestID := got[0].Fields["requestId"]
	if requestID == "" || len(requestID) > 64 {
		t.Fatalf("requestId %q is empty or longer than 64", requestID)
	}
	want := []fake.Received{{
		Provider: "Vivo",
		Token:    "regid-a",
		Title:    "éé" + strings.Repeat("标", 18),
		Body:     "a" + strings.Repeat("文", 49),
		Data:     map[string]string{"conv": "42"},
		Fields: map[string]string{
			"appId":          e.Cert.Vivo.AppID,
			"notifyType":     "4",
			"timeToLive":     "7200",
			"skipType":       "1",
			"networkType":    "-1",
			"classification": "1",
			"category":       "IM",
			"notifyId":       notifyID("conv-42"),
			"requestId":      requestID,
		},
	}}
	if diff := cmp.Diff(want, got, cmpopts.IgnoreFields(fake.Received{}, "At")); diff != "" {
		t.Fatalf("received (-want +got):\n%s", diff)
	}
}

func TestTimeToLiveAndDefaults(t *testing.T) {
	tests := []struct {
		name           string
		expiration     time.Duration // from start; 0 = none
		class          config.Classification
		ttl            string
		classification string
		category       string
	}{
		{"no expiration", 0, config.Classification{}, "86400", "", ""},
		{"10 s left", 10 * time.Second, config.Classification{VivoCategory: "IM"}, "60", "", "IM"},
		{"3 days left", 72 * time.Hour, config.Classification{VivoCategory: "IM", VivoClassification: 1}, "86400", "1", "IM"},
		{"already expired", -time.Hour, config.Classification{}, "60", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := setup(t)
			m := msg("n-1", "tok")
			m.Classification = tt.class
			if tt.expiration != 0 {
				m.Expiration = start.Add(tt.expiration)
			}
			if res := e.client.Send(context.Background(), m); res.Outcome != providers.Delivered {
				t.Fatalf("Send = %+v", res)
			}
			f := e.Fake.State.Received()[0].Fields
			if f["timeToLive"] != tt.ttl || f["classification"] != tt.classification || f["category"] != tt.category || f["notifyId"] != notifyID("n-1") {
				t.Fatalf("fields = %v", f)
			}
		})
	}
}

// TestRequestIDDedupes shows a resend of one notification to one device
// carries the same requestId (vivo answers it without delivering twice),
// while another device gets its own.
func TestRequestIDDedupes(t *testing.T) {
	e := setup(t)
	for _, token := range []string{"tok-a", "tok-a", "tok-b"} {
		if res := e.client.Send(context.Background(), msg("n-1", token)); res.Outcome != providers.Delivered {
			t.Fatalf("Send = %+v", res)
		}
	}
	got := e.Fake.State.Received()
	if len(got) != 2 || got[0].Token != "tok-a" || got[1].Token != "tok-b" {
		t.Fatalf("received %+v, want one send each to tok-a and tok-b", got)
	}
	if got[0].Fields["requestId"] == got[1].Fields["requestId"] {
		t.Fatal("two devices share a requestId")
	}
}

func TestLocalRejects(t *testing.T) {
	big := map[string]string{"x": strings.Repeat("y", 1024)}
	for name, m := range map[string]*providers.Message{
		"no title":   {ID: "n", Token: "t", Body: "b"},
		"no body":    {ID: "n", Token: "t", Title: "a"},
		"large data": {ID: "n", Token: "t", Title: "a", Body: "b", Data: big},
	} {
		t.Run(name, func(t *testing.T) {
			e := setup(t)
			providertest.WantLocalReject(t, e.Fake.State, e.client, m)
		})
	}
}

func TestCategoryRejectedByFake(t *testing.T) {
	tests := []struct {
		class  config.Classification
		reason string
	}{
		{config.Classification{VivoCategory: "MARKETING", VivoClassification: 1}, "10097"},
		{config.Classification{VivoCategory: "CHAT"}, "10096"},
	}
	for _, tt := range tests {
		t.Run(tt.reason, func(t *testing.T) {
			e := setup(t)
			m := msg("n-1", "tok")
			m.Classification = tt.class
			if res := e.client.Send(context.Background(), m); res.Outcome != providers.BadMessage || res.Reason != tt.reason {
				t.Fatalf("Send = %v %q, want BadMessage %q", res.Outcome, res.Reason, tt.reason)
			}
		})
	}
}

func TestAnswerOutcomes(t *testing.T) {
	midnight := time.Date(2025, 3, 11, 0, 0, 0, 0, providers.Beijing)
	providertest.RunAnswers(t, []providertest.AnswerCase{
		{fake.Answer{Code: "invalidUser:1"}, providers.DropToken, "invalidUser:1", 0, time.Time{}},
		{fake.Answer{Code: "invalidUser:2"}, providers.DropToken, "invalidUser:2", 0, time.Time{}},
		{fake.Answer{Code: "invalidUser:3"}, providers.DropToken, "invalidUser:3", 0, time.Time{}},
		{fake.Answer{Code: "invalidUser:4"}, providers.BadMessage, "invalidUser:4", 0, time.Time{}},
		{fake.Answer{Code: "10302"}, providers.DropToken, "10302", 0, time.Time{}},
		{fake.Answer{Code: "10070"}, providers.QuotaExceeded, "10070", 0, midnight},
		{fake.Answer{Code: "10252"}, providers.QuotaExceeded, "10252", 0, midnight},
		{fake.Answer{Code: "10254"}, providers.QuotaExceeded, "10254", 0, midnight},
		{fake.Answer{Code: "10072", RetryAfter: 5 * time.Second}, providers.Retry, "10072", 5 * time.Second, time.Time{}},
		{fake.Answer{Code: "10094"}, providers.BadCredentials, "10094", 0, time.Time{}},
		{fake.Answer{Code: "10200"}, providers.BadCredentials, "10200", 0, time.Time{}},
		{fake.Answer{Code: "10299"}, providers.BadCredentials, "10299", 0, time.Time{}},
		{fake.Answer{Code: "10096"}, providers.BadMessage, "10096", 0, time.Time{}},
		{fake.Answer{Code: "10097"}, providers.BadMessage, "10097", 0, time.Time{}},
		{fake.Answer{Code: "10050"}, providers.BadMessage, "10050", 0, time.Time{}},
		{fake.Answer{Code: "status:500"}, providers.Retry, "HTTP 500", 0, time.Time{}},
		{fake.Answer{Code: "status:503", RetryAfter: 3 * time.Second}, providers.Retry, "HTTP 503", 3 * time.Second, time.Time{}},
		{fake.Answer{Code: "status:401"}, providers.BadCredentials, "HTTP 401", 0, time.Time{}},
		{fake.Answer{Code: "status:400"}, providers.BadMessage, "HTTP 400", 0, time.Time{}},
		{fake.Answer{Code: "reset"}, providers.Retry, "transport", 0, time.Time{}},
	}, func(t *testing.T, a fake.Answer) providers.Result {
		e := setup(t)
		e.Fake.State.Script("tok", a)
		return e.client.Send(context.Background(), msg("n-1", "tok"))
	})
}

func TestTimeout(t *testing.T) {
	e := setup(t)
	providertest.WantTimeout(t, e.Fake.State, e.client, msg("n-1", "tok"))
}

func TestRejectedTokenRefreshedOnce(t *testing.T) {
	providertest.Resend[*env]{
		Setup:  setup,
		Send:   func(e *env, id string) providers.Result { return e.client.Send(context.Background(), msg(id, "tok")) },
		State:  func(e *env) *fake.State { return e.Fake.State },
		Issued: func(e *env) int { return e.Fake.TokensIssued() },
	}.Run(t, []providertest.ResendCase[*env]{
		{
			Name:     "authorization failed once",
			Prepare:  func(e *env) { e.Fake.State.Script("tok", fake.Answer{Code: "10000", Times: 1}) },
			Outcome:  providers.Delivered,
			Answered: []string{"", "10000", ""},
		},
		{
			Name:     "token revoked at the fake",
			Prepare:  func(e *env) { e.Fake.RevokeTokens() },
			Outcome:  providers.Delivered,
			Answered: []string{"", ""},
		},
		{
			Name:     "rejected twice",
			Prepare:  func(e *env) { e.Fake.State.Script("tok", fake.Answer{Code: "10000", Times: 2}) },
			Outcome:  providers.Retry,
			Reason:   "10000",
			Answered: []string{"", "10000", "10000"},
		},
	})
}

func TestTokenRefreshedHourly(t *testing.T) {
	e := setup(t)
	for i, step := range []struct {
		advance time.Duration
		auths   int
	}{{0, 1}, {59 * time.Minute, 1}, {2 * time.Minute, 2}, {59 * time.Minute, 2}, {2 * time.Minute, 3}} {
		e.Clock.Add(step.advance)
		if res := e.client.Send(context.Background(), msg(strconv.Itoa(i), "tok")); res.Outcome != providers.Delivered {
			t.Fatalf("Send = %+v", res)
		}
		if got := e.Fake.TokensIssued(); got != step.auths {
			t.Fatalf("after %v: auth calls = %d, want %d", e.Clock.Now().Sub(start), got, step.auths)
		}
	}
}

func TestAuthFailures(t *testing.T) {
	tests := []struct {
		name   string
		edit   func(c *config.Certificate)
		skew   time.Duration
		reason string
	}{
		{"wrong app secret", func(c *config.Certificate) { c.Data[config.KeyAppSecret] = []byte("not-the-secret") }, 0, "10206"},
		{"wrong app key", func(c *config.Certificate) { c.Data[config.KeyAppKey] = []byte("not-the-key") }, 0, "10202"},
		{"unknown app id", func(c *config.Certificate) { c.Vivo = &config.VivoSpec{AppID: "1"} }, 0, "10205"},
		{"clock 11 minutes ahead", func(*config.Certificate) {}, 11 * time.Minute, "10207"},
		{"clock 11 minutes behind", func(*config.Certificate) {}, -11 * time.Minute, "10207"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := setup(t)
			cert := *e.Cert
			cert.Data = map[string][]byte{}
			for k, v := range e.Cert.Data {
				cert.Data[k] = v
			}
			tt.edit(&cert)
			c := providertest.Client(t, vivo.New, &cert, providers.Options{Now: func() time.Time { return e.Clock.Now().Add(tt.skew) }})
			providertest.WantBadCredentials(t, e.Fake.State, c, msg("n-1", "tok"), tt.reason)
		})
	}
}

func TestValidate(t *testing.T) {
	good := func() *config.Certificate {
		return &config.Certificate{
			Name: "c", Provider: config.Vivo,
			Data: map[string][]byte{config.KeyAppKey: []byte("ak"), config.KeyAppSecret: []byte("s3cret")},
			Vivo: &config.VivoSpec{AppID: "10004"},
		}
	}
	providertest.Credentials{Good: good, Validate: vivo.Validate, New: vivo.New, Accepted: providertest.SubjectIs("appId 10004")}.RunValidate(t, []providertest.ValidateCase{
		{"good", func(*config.Certificate) {}, "", ""},
		{"no vivo spec", func(c *config.Certificate) { c.Vivo = nil }, providers.ReasonInvalidCredentials, ""},
		{"appID not a number", func(c *config.Certificate) { c.Vivo.AppID = "com.example" }, providers.ReasonInvalidCredentials, ""},
		{"no appKey", func(c *config.Certificate) { delete(c.Data, config.KeyAppKey) }, providers.ReasonKeyMissing, config.KeyAppKey},
		{"no appSecret", func(c *config.Certificate) { delete(c.Data, config.KeyAppSecret) }, providers.ReasonKeyMissing, config.KeyAppSecret},
		{"appSecret with newline", func(c *config.Certificate) { c.Data[config.KeyAppSecret] = []byte("s3cret\n") }, providers.ReasonInvalidCredentials, config.KeyAppSecret},
	})
}
