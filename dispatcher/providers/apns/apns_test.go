package apns_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"

	"github.com/imcloud/im-push-operator/dispatcher/config"
	"github.com/imcloud/im-push-operator/dispatcher/providers"
	"github.com/imcloud/im-push-operator/dispatcher/providers/apns"
	"github.com/imcloud/im-push-operator/dispatcher/providers/fake"
	fakeapns "github.com/imcloud/im-push-operator/dispatcher/providers/fake/apns"
	"github.com/imcloud/im-push-operator/dispatcher/providers/fake/providertest"
)

const (
	bundle = "io.imcloud.chat"
	token1 = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90"
)

type credentialKind string

const (
	kindToken credentialKind = "token"
	kindP12   credentialKind = "p12"
	kindPEM   credentialKind = "pem"
)

func credentialFor(t *testing.T, srv *fakeapns.Server, kind credentialKind) *config.Certificate {
	t.Helper()
	var (
		data map[string][]byte
		spec *config.APNsSpec
		err  error
	)
	switch kind {
	case kindToken:
		data, spec, err = fakeapns.TokenCredential(bundle)
	case kindP12:
		data, spec, err = fakeapns.P12Credential(bundle, "s3cret", time.Now().Add(365*24*time.Hour))
	case kindPEM:
		data, spec, err = fakeapns.PEMCredential(bundle, time.Now().Add(365*24*time.Hour))
	}
	if err != nil {
		t.Fatal(err)
	}
	return srv.Certificate("ios-"+string(kind), data, spec)
}

// newClient registers a fresh credential of kind with the fake and returns a
// client for it.
func newClient(t *testing.T, srv *fakeapns.Server, kind credentialKind, now func() time.Time) providers.Client {
	t.Helper()
	cert := credentialFor(t, srv, kind)
	srv.Allow(cert)
	return providertest.Client(t, apns.New, cert, providers.Options{Now: now})
}

func send(_ *testing.T, c providers.Client, m *providers.Message) providers.Result {
	return providertest.Send(c, m, 10*time.Second)
}

func intp(i int) *int { return &i }

func TestSendDelivers(t *testing.T) {
	srv := providertest.Start(t, fakeapns.Start)
	expires := time.Unix(1893456000, 0)
	for _, kind := range []credentialKind{kindToken, kindP12, kindPEM} {
		t.Run(string(kind), func(t *testing.T) {
			srv.State.Reset()
			c := newClient(t, srv, kind, nil)
			res := send(t, c, &providers.Message{
				ID: "0F8FAD5B-D9CB-469F-A165-70867728950E", Token: token1,
				Title: "Alice", Body: "hi", Badge: intp(0), Sound: "default",
				Data: map[string]string{"conv": "42", "aps": "must not replace aps"}, CollapseKey: "conv-42",
				ThreadID: "conv-42", Expiration: expires,
			})
			if res.Outcome != providers.Delivered {
				t.Fatalf("Send = %+v, want Delivered", res)
			}
			got := srv.State.WaitFor(1, 5*time.Second)
			if len(got) != 1 {
				t.Fatalf("fake recorded %d sends, want 1", len(got))
			}
			r := got[0]
			if r.Token != token1 || r.Title != "Alice" || r.Body != "hi" {
				t.Errorf("recorded token/title/body %q/%q/%q", r.Token, r.Title, r.Body)
			}
			if diff := cmp.Diff(map[string]string{"conv": "42"}, r.Data); diff != "" {
				t.Errorf("custom data (-want +got):\n%s", diff)
			}
			want := map[string]string{
				"topic": bundle, "push-type": "alert", "priority": "10", "collapse-id": "conv-42",
				"expiration": "1893456000", "apns-id": "0f8fad5b-d9cb-469f-a165-70867728950e",
				"badge": "0", "sound": "default", "thread-id": "conv-42",
			}
			for k, v := range want {
				if r.Fields[k] != v {
					t.Errorf("field %s = %q, want %q", k, r.Fields[k], v)
				}
			}
			wantAuth := map[credentialKind]string{kindToken: "token", kindP12: "certificate", kindPEM: "certificate"}[kind]
			if r.Fields["auth"] != wantAuth {
				t.Errorf("auth = %q, want %q", r.Fields["auth"], wantAuth)
			}
		})
	}
}

func TestPushTypes(t *testing.T) {
	srv := providertest.Start(t, fakeapns.Start)
	c := newClient(t, srv, kindToken, nil)
	longKey := "conversation/" + strings.Repeat("x", 70)
	tests := []struct {
		name   string
		msg    providers.Message
		fields map[string]string
		title  string
	}{
		{
			name:   "voip goes to the .voip topic at priority 10",
			msg:    providers.Message{ID: "n1", Title: "Call", PushType: "voip"},
			fields: map[string]string{"topic": bundle + ".voip", "push-type": "voip", "priority": "10", "collapse-id": "n1"},
			title:  "Call",
		},
		{
			name:   "background is priority 5, content-available, no alert",
			msg:    providers.Message{ID: "n2", Title: "hidden", Badge: intp(3), PushType: "background"},
			fields: map[string]string{"topic": bundle, "push-type": "background", "priority": "5", "content-available": "1"},
		},
		{
			// echo -n "conversation/$(printf 'x%.0s' {1..70})" | sha256sum
			name:   "a collapse key over 64 bytes becomes its SHA-256",
			msg:    providers.Message{ID: "not-a-uuid", Title: "t", CollapseKey: longKey},
			fields: map[string]string{"collapse-id": "adde2b9f602e46d312a378ddb5ba016f40fb20b4202249a736c77bbc3debc91a"},
			title:  "t",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv.State.Reset()
			tc.msg.Token = token1
			if res := send(t, c, &tc.msg); res.Outcome != providers.Delivered {
				t.Fatalf("Send = %+v", res)
			}
			r := srv.State.WaitFor(1, 5*time.Second)[0]
			for k, v := range tc.fields {
				if r.Fields[k] != v {
					t.Errorf("field %s = %q, want %q", k, r.Fields[k], v)
				}
			}
			if r.Title != tc.title {
				t.Errorf("title %q, want %q", r.Title, tc.title)
			}
			if tc.msg.PushType == "background" && r.Fields["badge"] != "" {
				t.Errorf("background push carries badge %q", r.Fields["badge"])
			}
			if tc.msg.ID == "not-a-uuid" && r.Fields["apns-id"] != "" {
				t.Errorf("apns-id %q sent for a non-UUID notification id", r.Fields["apns-id"])
			}
		})
	}
}

func TestLongBodyIsTruncatedOnRuneBoundary(t *testing.T) {
	srv := providertest.Start(t, fakeapns.Start)
	c := newClient(t, srv, kindToken, nil)
	body := strings.Repeat("消息", 1000) // 6000 bytes
	if res := send(t, c, &providers.Message{ID: "n", Token: token1, Title: "Alice", Body: body}); res.Outcome != providers.Delivered {
		t.Fatalf("Send = %+v", res)
	}
	r := srv.State.WaitFor(1, 5*time.Second)[0]
	if !utf8.ValidString(r.Body) || !strings.HasSuffix(r.Body, "…") || len(r.Body) > 4096 || len(r.Body) < 3500 {
		t.Errorf("body of %d bytes, valid UTF-8 %v, suffix %q", len(r.Body), utf8.ValidString(r.Body), r.Body[len(r.Body)-3:])
	}
}

func TestAnswersMapToOutcomes(t *testing.T) {
	srv := providertest.Start(t, fakeapns.Start)
	clk := providertest.NewClock(time.Now().Truncate(time.Second))
	// A token bound 750 ms into a second must count as bound before an
	// invalidation APNs stamps in that same millisecond.
	clk.Add(750 * time.Millisecond)
	srv.SetClock(clk.Now)
	c := newClient(t, srv, kindToken, clk.Now)
	tests := []struct {
		answer       fake.Answer
		outcome      providers.Outcome
		reason       string
		retryAfter   time.Duration
		invalidSince bool
	}{
		{answer: fake.Answer{Code: "Unregistered"}, outcome: providers.DropToken, reason: "Unregistered", invalidSince: true},
		{answer: fake.Answer{Code: "ExpiredToken"}, outcome: providers.DropToken, reason: "ExpiredToken", invalidSince: true},
		{answer: fake.Answer{Code: "BadDeviceToken"}, outcome: providers.DropToken, reason: "BadDeviceToken"},
		{answer: fake.Answer{Code: "DeviceTokenNotForTopic"}, outcome: providers.DropToken, reason: "DeviceTokenNotForTopic"},
		{answer: fake.Answer{Code: "TopicDisallowed"}, outcome: providers.BadCredentials, reason: "TopicDisallowed"},
		{answer: fake.Answer{Code: "InvalidProviderToken"}, outcome: providers.BadCredentials, reason: "InvalidProviderToken"},
		{answer: fake.Answer{Code: "BadCertificateEnvironment"}, outcome: providers.BadCredentials, reason: "BadCertificateEnvironment"},
		{answer: fake.Answer{Code: "TooManyProviderTokenUpdates"}, outcome: providers.BadCredentials, reason: "TooManyProviderTokenUpdates"},
		{answer: fake.Answer{Code: "PayloadTooLarge"}, outcome: providers.BadMessage, reason: "PayloadTooLarge"},
		{answer: fake.Answer{Code: "BadCollapseId"}, outcome: providers.BadMessage, reason: "BadCollapseId"},
		{answer: fake.Answer{Code: "TooManyRequests", RetryAfter: 2 * time.Minute}, outcome: providers.Retry, reason: "TooManyRequests", retryAfter: 2 * time.Minute},
		{answer: fake.Answer{Code: "InternalServerError"}, outcome: providers.Retry, reason: "InternalServerError"},
		{answer: fake.Answer{Code: "ServiceUnavailable", RetryAfter: 30 * time.Second}, outcome: providers.Retry, reason: "ServiceUnavailable", retryAfter: 30 * time.Second},
		{answer: fake.Answer{Code: "Shutdown"}, outcome: providers.Retry, reason: "Shutdown"},
		{answer: fake.Answer{Code: "status:502"}, outcome: providers.Retry, reason: "HTTP 502"},
		{answer: fake.Answer{Code: "status:410"}, outcome: providers.DropToken, reason: "HTTP 410"},
		{answer: fake.Answer{Code: "reset"}, outcome: providers.Retry, reason: "transport"},
	}
	for _, tc := range tests {
		t.Run(tc.answer.Code, func(t *testing.T) {
			srv.State.Reset()
			tc.answer.Times = 1
			srv.State.Script(token1, tc.answer)
			res := send(t, c, &providers.Message{ID: "n", Token: token1, Title: "t", Body: "b"})
			if res.Outcome != tc.outcome || res.Reason != tc.reason || res.RetryAfter != tc.retryAfter {
				t.Errorf("Send = %v/%q/%v, want %v/%q/%v (err %v)", res.Outcome, res.Reason, res.RetryAfter, tc.outcome, tc.reason, tc.retryAfter, res.Err)
			}
			if tc.invalidSince && (res.InvalidSince.Before(clk.Now()) || res.InvalidSince.Sub(clk.Now()) >= time.Second) {
				t.Errorf("InvalidSince = %v, want within the second from the fake's clock %v", res.InvalidSince, clk.Now())
			}
		})
	}
}

func TestUnknownCredentialsAreRejected(t *testing.T) {
	srv := providertest.Start(t, fakeapns.Start)
	for _, tc := range []struct {
		kind   credentialKind
		reason string
	}{
		{kindToken, "InvalidProviderToken"},
		{kindP12, "BadCertificate"},
	} {
		t.Run(string(tc.kind), func(t *testing.T) {
			cert := credentialFor(t, srv, tc.kind) // never passed to Allow
			c, err := apns.New(cert, providers.Options{})
			if err != nil {
				t.Fatal(err)
			}
			res := send(t, c, &providers.Message{ID: "n", Token: token1, Title: "t"})
			if res.Outcome != providers.BadCredentials || res.Reason != tc.reason {
				t.Errorf("Send = %v/%q, want BadCredentials/%s", res.Outcome, res.Reason, tc.reason)
			}
		})
	}
}

func TestWrongTopicIsBadCredentials(t *testing.T) {
	srv := providertest.Start(t, fakeapns.Start)
	cert := credentialFor(t, srv, kindToken)
	srv.Allow(cert)
	other := *cert
	spec := *cert.APNs
	spec.BundleID = "io.other.app"
	other.APNs = &spec
	c, err := apns.New(&other, providers.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if res := send(t, c, &providers.Message{ID: "n", Token: token1, Title: "t"}); res.Outcome != providers.BadCredentials || res.Reason != "TopicDisallowed" {
		t.Errorf("Send = %v/%q, want BadCredentials/TopicDisallowed", res.Outcome, res.Reason)
	}
}

func TestExpiredProviderTokenIsResignedOnce(t *testing.T) {
	srv := providertest.Start(t, fakeapns.Start)
	c := newClient(t, srv, kindToken, nil)
	srv.State.Script(token1, fake.Answer{Code: "ExpiredProviderToken", Times: 1})
	if res := send(t, c, &providers.Message{ID: "n", Token: token1, Title: "t"}); res.Outcome != providers.Delivered {
		t.Fatalf("Send = %+v, want Delivered after re-signing", res)
	}
	got := srv.State.WaitFor(2, 5*time.Second)
	if len(got) != 2 || got[0].Answered != "ExpiredProviderToken" || got[1].Answered != "" {
		t.Fatalf("recorded %+v, want an ExpiredProviderToken answer then a success", got)
	}
	if got[0].Fields["jwt"] == got[1].Fields["jwt"] {
		t.Error("the retry reused the rejected provider token")
	}
}

func TestProviderTokenFollowsTheClock(t *testing.T) {
	srv := providertest.Start(t, fakeapns.Start)
	clk := providertest.NewClock(time.Now().Truncate(time.Second))
	srv.SetClock(clk.Now)
	c := newClient(t, srv, kindToken, clk.Now)
	m := &providers.Message{ID: "n", Token: token1, Title: "t"}
	if res := send(t, c, m); res.Outcome != providers.Delivered {
		t.Fatalf("first Send = %+v", res)
	}
	clk.Add(2 * time.Hour)
	if res := send(t, c, m); res.Outcome != providers.Delivered {
		t.Fatalf("Send two hours later = %+v, want a fresh provider token", res)
	}
	got := srv.State.WaitFor(2, 5*time.Second)
	if got[0].Fields["jwt"] == got[1].Fields["jwt"] {
		t.Error("provider token was not renewed after two hours")
	}
	if n := srv.AuthFailures(); n != 0 {
		t.Errorf("%d sends were refused: the token was not renewed before it expired", n)
	}

	// Only APNs' clock moves: the client's token is too old for it and
	// re-signing with the client's clock cannot help.
	srv.State.Reset()
	clk.Add(-2 * time.Hour)
	c = newClient(t, srv, kindToken, clk.Now)
	srv.SetClock(func() time.Time { return clk.Now().Add(2 * time.Hour) })
	if res := send(t, c, m); res.Outcome != providers.Retry || res.Reason != "ExpiredProviderToken" {
		t.Errorf("Send with a skewed clock = %v/%q, want Retry/ExpiredProviderToken", res.Outcome, res.Reason)
	}
}

func TestValidate(t *testing.T) {
	notAfter := time.Now().Add(90 * 24 * time.Hour).Truncate(time.Second)
	expired := time.Now().Add(-24 * time.Hour).Truncate(time.Second)
	tokenData, tokenSpec, err := fakeapns.TokenCredential(bundle)
	if err != nil {
		t.Fatal(err)
	}
	p12Data, p12Spec, err := fakeapns.P12Credential(bundle, "pw", notAfter)
	if err != nil {
		t.Fatal(err)
	}
	oldP12Data, _, err := fakeapns.P12Credential(bundle, "pw", expired)
	if err != nil {
		t.Fatal(err)
	}
	pemData, pemSpec, err := fakeapns.PEMCredential(bundle, notAfter)
	if err != nil {
		t.Fatal(err)
	}
	otherPEM, _, err := fakeapns.PEMCredential(bundle, notAfter)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := genP384()
	if err != nil {
		t.Fatal(err)
	}
	with := func(d map[string][]byte, k string, v []byte) map[string][]byte {
		out := map[string][]byte{}
		for kk, vv := range d {
			out[kk] = vv
		}
		if v == nil {
			delete(out, k)
		} else {
			out[k] = v
		}
		return out
	}
	specWith := func(s *config.APNsSpec, f func(*config.APNsSpec)) *config.APNsSpec {
		c := *s
		f(&c)
		return &c
	}
	tests := []struct {
		name      string
		data      map[string][]byte
		spec      *config.APNsSpec
		reason    string
		key       string
		expiresAt *time.Time
		subject   string
	}{
		{name: "token", data: tokenData, spec: tokenSpec, subject: bundle},
		{name: "token without authKey", data: with(tokenData, config.KeyAPNsAuthKey, nil), spec: tokenSpec, reason: providers.ReasonKeyMissing, key: config.KeyAPNsAuthKey},
		{name: "token with garbage authKey", data: with(tokenData, config.KeyAPNsAuthKey, []byte("not a key")), spec: tokenSpec, reason: providers.ReasonInvalidCredentials, key: config.KeyAPNsAuthKey},
		{name: "token with a P-384 key", data: with(tokenData, config.KeyAPNsAuthKey, p384), spec: tokenSpec, reason: providers.ReasonInvalidCredentials, key: config.KeyAPNsAuthKey},
		{name: "token with a short team id", data: tokenData, spec: specWith(tokenSpec, func(s *config.APNsSpec) { s.TeamID = "ABC" }), reason: providers.ReasonInvalidCredentials},
		{name: "token with a lower-case key id", data: tokenData, spec: specWith(tokenSpec, func(s *config.APNsSpec) { s.KeyID = "abcdefghij" }), reason: providers.ReasonInvalidCredentials},
		{name: "token without bundle id", data: tokenData, spec: specWith(tokenSpec, func(s *config.APNsSpec) { s.BundleID = "" }), reason: providers.ReasonInvalidCredentials},
		{name: "bad environment", data: tokenData, spec: specWith(tokenSpec, func(s *config.APNsSpec) { s.Environment = "Staging" }), reason: providers.ReasonInvalidCredentials},
		{name: "p12", data: p12Data, spec: p12Spec, expiresAt: &notAfter, subject: bundle},
		{name: "p12 subject from the certificate UID", data: p12Data, spec: specWith(p12Spec, func(s *config.APNsSpec) { s.BundleID = "" }), expiresAt: &notAfter, subject: bundle},
		{name: "expired p12 still validates", data: oldP12Data, spec: p12Spec, expiresAt: &expired, subject: bundle},
		{name: "p12 with wrong password", data: with(p12Data, config.KeyAPNsP12Password, []byte("wrong")), spec: p12Spec, reason: providers.ReasonInvalidCredentials, key: config.KeyAPNsP12Password},
		{name: "p12 without password key", data: with(p12Data, config.KeyAPNsP12Password, nil), spec: p12Spec, reason: providers.ReasonKeyMissing, key: config.KeyAPNsP12Password},
		{name: "p12 garbage", data: with(p12Data, config.KeyAPNsP12, []byte("garbage")), spec: p12Spec, reason: providers.ReasonInvalidCredentials, key: config.KeyAPNsP12},
		{name: "pem pair", data: pemData, spec: pemSpec, expiresAt: &notAfter, subject: bundle},
		{name: "pem pair that does not match", data: with(pemData, config.KeyTLSKey, otherPEM[config.KeyTLSKey]), spec: pemSpec, reason: providers.ReasonInvalidCredentials, key: config.KeyTLSKey},
		{name: "pem without key", data: with(pemData, config.KeyTLSKey, nil), spec: pemSpec, reason: providers.ReasonKeyMissing, key: config.KeyTLSKey},
		{name: "certificate auth with no keys", data: map[string][]byte{}, spec: pemSpec, reason: providers.ReasonKeyMissing, key: config.KeyAPNsP12},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			info, err := apns.Validate(&config.Certificate{Name: "c", Provider: config.APNs, Data: tc.data, APNs: tc.spec})
			if tc.reason != "" {
				ce, ok := err.(*providers.CredentialError)
				if !ok {
					t.Fatalf("Validate error = %v, want a *CredentialError", err)
				}
				if ce.Reason != tc.reason || ce.Key != tc.key {
					t.Errorf("Validate = %s/%q (%s), want %s/%q", ce.Reason, ce.Key, ce.Message, tc.reason, tc.key)
				}
				return
			}
			if err != nil {
				t.Fatalf("Validate: %v", err)
			}
			if info.Subject != tc.subject {
				t.Errorf("Subject = %q, want %q", info.Subject, tc.subject)
			}
			if (info.ExpiresAt == nil) != (tc.expiresAt == nil) || (tc.expiresAt != nil && !info.ExpiresAt.Equal(*tc.expiresAt)) {
				t.Errorf("ExpiresAt = %v, want %v", info.ExpiresAt, tc.expiresAt)
			}
		})
	}
}

// genP384 returns a PKCS#8 EC key on a curve APNs does not sign with.
func genP384() ([]byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}
