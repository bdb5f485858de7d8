package oppo_test

import (
	"context"
	"hash/fnv"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/imcloud/im-push-operator/dispatcher/config"
	"github.com/imcloud/im-push-operator/dispatcher/providers"
	"github.com/imcloud/im-push-operator/dispatcher/providers/fake"
	fakeoppo "github.com/imcloud/im-push-operator/dispatcher/providers/fake/oppo"
	"github.com/imcloud/im-push-operator/dispatcher/providers/fake/providertest"
	"github.com/imcloud/im-push-operator/dispatcher/providers/oppo"
)

// Known answer computed outside Go:
//
//	printf '%s' 'appkey1700000000000secret' | sha256sum
const signKAT = "2e40dd50a55be3227d415931c7db4aede3b6d25cd61d8761b732d90d2ad0eb4b"

func TestSignKnownAnswer(t *testing.T) {
	if got := oppo.Sign("appkey", 1700000000000, "secret"); got != signKAT {
		t.Fatalf("Sign = %s, want %s", got, signKAT)
	}
}

// start is 23:04:05 in Beijing, so the next quota reset is 55 minutes away.
var start = time.Date(2025, 3, 10, 15, 4, 5, 0, time.UTC)

type env struct {
	*providertest.Env[*fakeoppo.Server]
	client providers.Client
}

// setup starts a fake and a client sharing one injected clock; the client
// trusts the fake through the certificate's caBundle, as in production.
func setup(t *testing.T) *env {
	e := providertest.NewEnv(t, fakeoppo.Start, "oppo-test", start, oppo.New)
	return &env{Env: e, client: e.Client(t)}
}

func msg(token string) *providers.Message {
	return &providers.Message{
		ID:             "n-1",
		Token:          token,
		Title:          "Alice",
		Body:           "hi",
		Classification: config.Classification{OPPOCategory: "IM", OPPONotifyLevel: 2},
	}
}

func fnv32(s string) string {
	h := fnv.New32a()
	h.Write([]byte(s))
	return strconv.FormatUint(uint64(h.Sum32()&0x7fffffff), 10)
}

func TestSendPayload(t *testing.T) {
	e := setup(t)
	m := &providers.Message{
		ID:          "n-1",
		Token:       "CN_token-a",
		Title:       strings.Repeat("标", 60),
		Body:        strings.Repeat("b", 70),
		Data:        map[string]string{"conv": "42", "from": "alice"},
		CollapseKey: "conv-42",
		Expiration:  start.Add(2 * time.Hour),
		Classification: config.Classification{
			OPPOCategory: "IM", OPPONotifyLevel: 2,
		},
	}
	if res := e.client.Send(context.Background(), m); res.Outcome != providers.Delivered {
		t.Fatalf("Send = %+v, want Delivered", res)
	}
	got := e.Fake.State.Received()
	want := []fake.Received{{
		Provider: "OPPO",
		Token:    "CN_token-a",
		Title:    strings.Repeat("标", 50),
		Body:     strings.Repeat("b", 50),
		Data:     map[string]string{"conv": "42", "from": "alice"},
		Fields: map[string]string{
			"app_key":           string(e.Cert.Data[config.KeyAppKey]),
			"channel_id":        "im",
			"category":          "IM",
			"notify_level":      "2",
			"notify_id":         fnv32("conv-42"),
			"click_action_type": "0",
			"off_line":          "true",
			"off_line_ttl":      "7200",
		},
	}}
	if diff := cmp.Diff(want, got, cmpopts.IgnoreFields(fake.Received{}, "At")); diff != "" {
		t.Fatalf("received (-want +got):\n%s", diff)
	}
}

func TestSendDefaults(t *testing.T) {
	e := setup(t)
	m := msg("tok-plain")
	m.Classification = config.Classification{OPPONotifyLevel: 2} // level without category is not sent
	if res := e.client.Send(context.Background(), m); res.Outcome != providers.Delivered {
		t.Fatalf("Send = %+v, want Delivered", res)
	}
	r := e.Fake.State.Received()[0]
	for k, want := range map[string]string{
		"notify_id":    fnv32("n-1"),
		"off_line_ttl": "86400",
		"category":     "",
		"notify_level": "0",
	} {
		if r.Fields[k] != want {
			t.Errorf("%s = %q, want %q", k, r.Fields[k], want)
		}
	}
	if r.Data != nil {
		t.Errorf("data = %v, want none", r.Data)
	}
}

func TestLocalRejects(t *testing.T) {
	big := map[string]string{"x": strings.Repeat("y", 4000)}
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

func TestAnswerOutcomes(t *testing.T) {
	providertest.RunAnswers(t, []providertest.AnswerCase{
		{fake.Answer{Code: "10000"}, providers.DropToken, "10000", 0, time.Time{}},
		{fake.Answer{Code: "33"}, providers.QuotaExceeded, "33", 0, time.Date(2025, 3, 11, 0, 0, 0, 0, providers.Beijing)},
		{fake.Answer{Code: "-1"}, providers.Retry, "-1", 0, time.Time{}},
		{fake.Answer{Code: "-2", RetryAfter: 7 * time.Second}, providers.Retry, "-2", 7 * time.Second, time.Time{}},
		{fake.Answer{Code: "13"}, providers.Retry, "13", 0, time.Time{}},
		{fake.Answer{Code: "55"}, providers.Retry, "55", 0, time.Time{}},
		{fake.Answer{Code: "14"}, providers.BadCredentials, "14", 0, time.Time{}},
		{fake.Answer{Code: "16"}, providers.BadCredentials, "16", 0, time.Time{}},
		{fake.Answer{Code: "19"}, providers.BadCredentials, "19", 0, time.Time{}},
		{fake.Answer{Code: "26"}, providers.BadCredentials, "26", 0, time.Time{}},
		{fake.Answer{Code: "28"}, providers.BadCredentials, "28", 0, time.Time{}},
		{fake.Answer{Code: "30"}, providers.BadCredentials, "30", 0, time.Time{}},
		{fake.Answer{Code: "59"}, providers.BadCredentials, "59", 0, time.Time{}},
		{fake.Answer{Code: "40"}, providers.BadMessage, "40", 0, time.Time{}},
		{fake.Answer{Code: "41"}, providers.BadMessage, "41", 0, time.Time{}},
		{fake.Answer{Code: "51"}, providers.BadMessage, "51", 0, time.Time{}},
		{fake.Answer{Code: "67"}, providers.BadMessage, "67", 0, time.Time{}},
		{fake.Answer{Code: "12345"}, providers.BadMessage, "12345", 0, time.Time{}},
		{fake.Answer{Code: "status:503", RetryAfter: 3 * time.Second}, providers.Retry, "HTTP 503", 3 * time.Second, time.Time{}},
		{fake.Answer{Code: "status:502"}, providers.Retry, "HTTP 502", 0, time.Time{}},
		{fake.Answer{Code: "status:403"}, providers.BadCredentials, "HTTP 403", 0, time.Time{}},
		{fake.Answer{Code: "status:404"}, providers.BadMessage, "HTTP 404", 0, time.Time{}},
		{fake.Answer{Code: "reset"}, providers.Retry, "transport", 0, time.Time{}},
	}, func(t *testing.T, a fake.Answer) providers.Result {
		e := setup(t)
		e.Fake.State.Script("tok", a)
		return e.client.Send(context.Background(), msg("tok"))
	})
}

func TestTimeout(t *testing.T) {
	e := setup(t)
	providertest.WantTimeout(t, e.Fake.State, e.client, msg("tok"))
}

func TestRejectedTokenRefreshedOnce(t *testing.T) {
	providertest.Resend[*env]{
		Setup:  setup,
		Send:   func(e *env, _ string) providers.Result { return e.client.Send(context.Background(), msg("tok")) },
		State:  func(e *env) *fake.State { return e.Fake.State },
		Issued: func(e *env) int { return e.Fake.TokensIssued() },
	}.Run(t, []providertest.ResendCase[*env]{
		{
			Name:     "invalid auth_token",
			Prepare:  func(e *env) { e.Fake.State.Script("tok", fake.Answer{Code: "11", Times: 1}) },
			Outcome:  providers.Delivered,
			Answered: []string{"", "11", ""},
		},
		{
			Name:     "missing auth_token",
			Prepare:  func(e *env) { e.Fake.State.Script("tok", fake.Answer{Code: "29", Times: 1}) },
			Outcome:  providers.Delivered,
			Answered: []string{"", "29", ""},
		},
		{
			Name:     "token revoked at the fake",
			Prepare:  func(e *env) { e.Fake.RevokeTokens() },
			Outcome:  providers.Delivered,
			Answered: []string{"", ""},
		},
		{
			Name:     "rejected twice",
			Prepare:  func(e *env) { e.Fake.State.Script("tok", fake.Answer{Code: "11", Times: 2}) },
			Outcome:  providers.Retry,
			Reason:   "11",
			Answered: []string{"", "11", "11"},
		},
	})
}

func TestTokenRefreshedHourly(t *testing.T) {
	e := setup(t)
	for _, step := range []struct {
		advance time.Duration
		auths   int
	}{{0, 1}, {30 * time.Minute, 1}, {29 * time.Minute, 1}, {2 * time.Minute, 2}, {59 * time.Minute, 2}, {2 * time.Minute, 3}} {
		e.Clock.Add(step.advance)
		if res := e.client.Send(context.Background(), msg("tok")); res.Outcome != providers.Delivered {
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
		mutate func(e *env) *config.Certificate
		skew   time.Duration
		reason string
	}{
		{"wrong master secret", func(e *env) *config.Certificate {
			c := *e.Cert
			c.Data = map[string][]byte{config.KeyAppKey: e.Cert.Data[config.KeyAppKey], config.KeyMasterSecret: []byte("not-the-secret")}
			return &c
		}, 0, "16"},
		{"unknown app key", func(e *env) *config.Certificate {
			c := *e.Cert
			c.Data = map[string][]byte{config.KeyAppKey: []byte("someone-else"), config.KeyMasterSecret: e.Cert.Data[config.KeyMasterSecret]}
			return &c
		}, 0, "14"},
		{"clock 11 minutes ahead", func(e *env) *config.Certificate { return e.Cert }, 11 * time.Minute, "19"},
		{"clock 11 minutes behind", func(e *env) *config.Certificate { return e.Cert }, -11 * time.Minute, "19"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := setup(t)
			c := providertest.Client(t, oppo.New, tt.mutate(e), providers.Options{Now: func() time.Time { return e.Clock.Now().Add(tt.skew) }})
			providertest.WantBadCredentials(t, e.Fake.State, c, msg("tok"), tt.reason)
		})
	}
}

// redirect sends every request to the fake and records which host it was
// meant for.
type redirect struct {
	to    *url.URL
	next  http.RoundTripper
	mu    sync.Mutex
	hosts []string
}

func (r *redirect) RoundTrip(req *http.Request) (*http.Response, error) {
	r.mu.Lock()
	r.hosts = append(r.hosts, req.URL.Host+req.URL.Path)
	r.mu.Unlock()
	out := req.Clone(req.Context())
	out.URL.Scheme, out.URL.Host, out.Host = r.to.Scheme, r.to.Host, ""
	return r.next.RoundTrip(out)
}

func TestRegionHosts(t *testing.T) {
	tests := []struct {
		token string
		host  string
	}{
		{"plainregid", "api.push.oppomobile.com"},
		{"CN_abc", "api.push.oppomobile.com"},
		{"OPPO_CN_abc", "api.push.oppomobile.com"},
		{"SG_abc", "api-intl.push.oppomobile.com"},
		{"OPPO_EU_abc", "api-intl.push.oppomobile.com"},
		{"a_b_c_d", "api-intl.push.oppomobile.com"},
	}
	for _, tt := range tests {
		t.Run(tt.token, func(t *testing.T) {
			e := setup(t)
			to, _ := url.Parse(e.Fake.URL)
			rt := &redirect{to: to, next: e.Fake.Client().Transport}
			cert := *e.Cert
			cert.Endpoint = ""
			c, err := oppo.New(&cert, providers.Options{HTTPClient: &http.Client{Transport: rt}, Now: e.Clock.Now})
			if err != nil {
				t.Fatal(err)
			}
			if res := c.Send(context.Background(), msg(tt.token)); res.Outcome != providers.Delivered {
				t.Fatalf("Send = %+v", res)
			}
			want := []string{tt.host + oppo.AuthPath, tt.host + oppo.SendPath}
			if diff := cmp.Diff(want, rt.hosts); diff != "" {
				t.Fatalf("requests (-want +got):\n%s", diff)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	good := func() *config.Certificate {
		return &config.Certificate{Name: "c", Provider: config.OPPO,
			Data: map[string][]byte{config.KeyAppKey: []byte("ak123"), config.KeyMasterSecret: []byte("ms456")}}
	}
	providertest.Credentials{Good: good, Validate: oppo.Validate, New: oppo.New, Accepted: providertest.SubjectIs("appKey ak123")}.RunValidate(t, []providertest.ValidateCase{
		{"good", func(*config.Certificate) {}, "", ""},
		{"no appKey", func(c *config.Certificate) { delete(c.Data, config.KeyAppKey) }, providers.ReasonKeyMissing, config.KeyAppKey},
		{"empty masterSecret", func(c *config.Certificate) { c.Data[config.KeyMasterSecret] = nil }, providers.ReasonKeyMissing, config.KeyMasterSecret},
		{"masterSecret with newline", func(c *config.Certificate) { c.Data[config.KeyMasterSecret] = []byte("ms456\n") }, providers.ReasonInvalidCredentials, config.KeyMasterSecret},
		{"appKey with space", func(c *config.Certificate) { c.Data[config.KeyAppKey] = []byte("ak 123") }, providers.ReasonInvalidCredentials, config.KeyAppKey},
	})
}
