package fcm_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"

	"github.com/imcloud/im-push-operator/dispatcher/config"
	"github.com/imcloud/im-push-operator/dispatcher/providers"
	"github.com/imcloud/im-push-operator/dispatcher/providers/fake"
	fakefcm "github.com/imcloud/im-push-operator/dispatcher/providers/fake/fcm"
	"github.com/imcloud/im-push-operator/dispatcher/providers/fake/providertest"
	"github.com/imcloud/im-push-operator/dispatcher/providers/fcm"
)

const (
	project = "im-demo"
	token1  = "dGVzdC10b2tlbi0x:APA91bHexampleRegistrationToken"
)

// credential returns a certificate for a new service account of project;
// its token_uri points at Google, so the endpoint override is what makes the
// exchange reach the fake.
func credential(t testing.TB, srv *fakefcm.Server) *config.Certificate {
	t.Helper()
	data, spec, err := fakefcm.TestCredential(project, "https://oauth2.googleapis.com/token")
	if err != nil {
		t.Fatal(err)
	}
	return srv.Certificate("android-fcm", data, spec)
}

func newClient(t *testing.T, srv *fakefcm.Server, now func() time.Time) providers.Client {
	t.Helper()
	cert := credential(t, srv)
	srv.Allow(cert)
	return providertest.Client(t, fcm.New, cert, providers.Options{Now: now})
}

func send(_ *testing.T, c providers.Client, m *providers.Message) providers.Result {
	return providertest.Send(c, m, 15*time.Second)
}

func intp(i int) *int { return &i }

func TestSendDelivers(t *testing.T) {
	srv := providertest.Start(t, fakefcm.Start)
	clk := providertest.NewClock(time.Now())
	c := newClient(t, srv, clk.Now)
	res := send(t, c, &providers.Message{
		ID: "n-1", Token: token1, Title: "Alice", Body: "hi", Badge: intp(3), Sound: "default",
		Data: map[string]string{"conv": "42", "type": "im"}, CollapseKey: "conv-42", ThreadID: "conv-42",
		Expiration: clk.Now().Add(time.Hour),
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
	if diff := cmp.Diff(map[string]string{"conv": "42", "type": "im"}, r.Data); diff != "" {
		t.Errorf("data (-want +got):\n%s", diff)
	}
	delete(r.Fields, "account")
	want := map[string]string{
		"project":                                 project,
		"android.priority":                        "high",
		"android.ttl":                             "3600s",
		"android.collapse_key":                    "conv-42",
		"android.notification.tag":                "conv-42",
		"android.notification.sound":              "default",
		"android.notification.notification_count": "3",
		"apns.headers.apns-priority":              "10",
		"apns.headers.apns-collapse-id":           "conv-42",
		"apns.aps.badge":                          "3",
		"apns.aps.sound":                          "default",
		"apns.aps.thread-id":                      "conv-42",
	}
	if diff := cmp.Diff(want, r.Fields); diff != "" {
		t.Errorf("fields (-want +got):\n%s", diff)
	}
}

func TestBackgroundIsDataOnly(t *testing.T) {
	srv := providertest.Start(t, fakefcm.Start)
	c := newClient(t, srv, nil)
	if res := send(t, c, &providers.Message{ID: "n", Token: token1, Title: "hidden", Badge: intp(1), PushType: "background", Data: map[string]string{"k": "v"}}); res.Outcome != providers.Delivered {
		t.Fatalf("Send = %+v", res)
	}
	r := srv.State.WaitFor(1, 5*time.Second)[0]
	if r.Title != "" || r.Fields["apns.aps.badge"] != "" || r.Fields["apns.aps.content-available"] != "1" || r.Fields["apns.headers.apns-priority"] != "5" {
		t.Errorf("background send recorded title %q fields %v", r.Title, r.Fields)
	}
}

func TestLongBodyIsTruncatedOnRuneBoundary(t *testing.T) {
	srv := providertest.Start(t, fakefcm.Start)
	c := newClient(t, srv, nil)
	body := strings.Repeat("消息", 1000) // 6000 bytes
	if res := send(t, c, &providers.Message{ID: "n", Token: token1, Title: "Alice", Body: body}); res.Outcome != providers.Delivered {
		t.Fatalf("Send = %+v", res)
	}
	r := srv.State.WaitFor(1, 5*time.Second)[0]
	if !utf8.ValidString(r.Body) || !strings.HasSuffix(r.Body, "…") || len(r.Body) > 4096 || len(r.Body) < 3000 {
		t.Errorf("body of %d bytes, valid UTF-8 %v", len(r.Body), utf8.ValidString(r.Body))
	}
}

func TestAnswersMapToOutcomes(t *testing.T) {
	srv := providertest.Start(t, fakefcm.Start)
	c := newClient(t, srv, nil)
	tests := []struct {
		name       string
		answers    []fake.Answer
		outcome    providers.Outcome
		reason     string
		retryAfter time.Duration
	}{
		{name: "unregistered", answers: []fake.Answer{{Code: "UNREGISTERED"}}, outcome: providers.DropToken, reason: "UNREGISTERED"},
		{name: "malformed token", answers: []fake.Answer{{Code: "INVALID_ARGUMENT"}}, outcome: providers.DropToken, reason: "INVALID_ARGUMENT"},
		{name: "bad payload", answers: []fake.Answer{{Code: "INVALID_PAYLOAD"}}, outcome: providers.BadMessage, reason: "INVALID_ARGUMENT"},
		{name: "sender id mismatch", answers: []fake.Answer{{Code: "SENDER_ID_MISMATCH"}}, outcome: providers.DropToken, reason: "SENDER_ID_MISMATCH"},
		{name: "device quota with Retry-After", answers: []fake.Answer{{Code: "QUOTA_EXCEEDED", RetryAfter: 90 * time.Second}}, outcome: providers.Retry, reason: "QUOTA_EXCEEDED", retryAfter: 90 * time.Second},
		{name: "device quota backs off a minute", answers: []fake.Answer{{Code: "QUOTA_EXCEEDED"}}, outcome: providers.Retry, reason: "QUOTA_EXCEEDED", retryAfter: time.Minute},
		{name: "project quota", answers: []fake.Answer{{Code: "RESOURCE_EXHAUSTED", RetryAfter: 30 * time.Second}}, outcome: providers.Retry, reason: "RESOURCE_EXHAUSTED", retryAfter: time.Minute},
		{name: "unavailable", answers: []fake.Answer{{Code: "UNAVAILABLE", RetryAfter: 3 * time.Minute}}, outcome: providers.Retry, reason: "UNAVAILABLE", retryAfter: 3 * time.Minute},
		// Within the SDK's 2-minute cap its own loop would have slept it out
		// holding the worker; with that loop off it reaches the engine.
		{name: "unavailable, 30 s Retry-After", answers: []fake.Answer{{Code: "UNAVAILABLE", RetryAfter: 30 * time.Second}}, outcome: providers.Retry, reason: "UNAVAILABLE", retryAfter: 30 * time.Second},
		{name: "internal", answers: []fake.Answer{{Code: "INTERNAL"}}, outcome: providers.Retry, reason: "INTERNAL"},
		{name: "APNs key in console", answers: []fake.Answer{{Code: "THIRD_PARTY_AUTH_ERROR"}}, outcome: providers.BadCredentials, reason: "THIRD_PARTY_AUTH_ERROR"},
		{name: "unauthenticated twice", answers: []fake.Answer{{Code: "UNAUTHENTICATED", Times: 2}}, outcome: providers.BadCredentials, reason: "UNAUTHENTICATED"},
		{name: "permission denied twice", answers: []fake.Answer{{Code: "PERMISSION_DENIED", Times: 2}}, outcome: providers.BadCredentials, reason: "PERMISSION_DENIED"},
		{name: "bare 502", answers: []fake.Answer{{Code: "status:502"}}, outcome: providers.Retry, reason: "HTTP 502"},
		{name: "bare 404", answers: []fake.Answer{{Code: "status:404"}}, outcome: providers.BadCredentials, reason: "NOT_FOUND"},
		// One failure, then success if asked again: the SDK's own retry loop
		// is off (disableSDKRetries), so the one attempt reports the failure
		// and the engine retries it. With the loop on, these were Delivered.
		{name: "one unavailable is not retried inside the call", answers: []fake.Answer{{Code: "UNAVAILABLE", Times: 1}}, outcome: providers.Retry, reason: "UNAVAILABLE"},
		{name: "one reset is not retried inside the call", answers: []fake.Answer{{Code: "reset", Times: 1}}, outcome: providers.Retry, reason: "transport"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv.State.Reset()
			for _, a := range tc.answers {
				if a.Times == 0 {
					a.Times = 1
				}
				srv.State.Script(token1, a)
			}
			res := send(t, c, &providers.Message{ID: "n", Token: token1, Title: "t", Body: "b"})
			if res.Outcome != tc.outcome || res.Reason != tc.reason || res.RetryAfter != tc.retryAfter {
				t.Errorf("Send = %v/%q/%v, want %v/%q/%v (err %v)", res.Outcome, res.Reason, res.RetryAfter, tc.outcome, tc.reason, tc.retryAfter, res.Err)
			}
		})
	}
}

func TestUnreachableEndpointIsRetry(t *testing.T) {
	srv := providertest.Start(t, fakefcm.Start)
	cert := credential(t, srv)
	srv.Allow(cert)
	c, err := fcm.New(cert, providers.Options{})
	if err != nil {
		t.Fatal(err)
	}
	// Get an access token first, so the failure is the send's.
	if res := send(t, c, &providers.Message{ID: "n", Token: token1}); res.Outcome != providers.Delivered {
		t.Fatalf("Send = %+v", res)
	}
	srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	// The SDK's own retry loop is off, so the failure comes back at once
	// (it used to retry until the deadline and answer "timeout").
	if res := c.Send(ctx, &providers.Message{ID: "n", Token: token1}); res.Outcome != providers.Retry || res.Reason != "transport" || ctx.Err() != nil {
		t.Errorf("Send to a closed endpoint = %v/%q (%v) with the context %v, want Retry/transport before the deadline", res.Outcome, res.Reason, res.Err, ctx.Err())
	}
}

func TestAccessTokenRefresh(t *testing.T) {
	srv := providertest.Start(t, fakefcm.Start)
	clk := providertest.NewClock(time.Now())
	c := newClient(t, srv, clk.Now)
	m := &providers.Message{ID: "n", Token: token1, Title: "t"}
	step := func(name string, wantIssued, wantRejected int) {
		t.Helper()
		if res := send(t, c, m); res.Outcome != providers.Delivered {
			t.Fatalf("%s: Send = %+v", name, res)
		}
		if got := srv.TokensIssued(); got != wantIssued {
			t.Errorf("%s: %d access tokens issued, want %d", name, got, wantIssued)
		}
		if got := srv.Rejected(); got != wantRejected {
			t.Errorf("%s: %d sends refused, want %d", name, got, wantRejected)
		}
	}
	step("first send", 1, 0)
	step("cached token", 1, 0)

	srv.ExpireTokens()
	step("token expired at Google: refused once, refreshed, resent", 2, 1)

	srv.State.Script(token1, fake.Answer{Code: "UNAUTHENTICATED", Times: 1})
	step("scripted UNAUTHENTICATED: refreshed, resent", 3, 1)

	clk.Add(2 * time.Hour)
	step("past expiry by the client's clock: refreshed before sending", 4, 1)
}

func TestCredentialsRefusedAtTokenEndpoint(t *testing.T) {
	srv := providertest.Start(t, fakefcm.Start)
	registered := credential(t, srv)
	srv.Allow(registered)
	var regSA map[string]any
	if err := json.Unmarshal(registered.Data[config.KeyFCMServiceAcct], &regSA); err != nil {
		t.Fatal(err)
	}
	// Same client_email, another key: the assertion's signature is wrong.
	forged := credential(t, srv)
	var sa map[string]any
	if err := json.Unmarshal(forged.Data[config.KeyFCMServiceAcct], &sa); err != nil {
		t.Fatal(err)
	}
	sa["client_email"] = regSA["client_email"]
	forgedJSON, _ := json.Marshal(sa)
	forged.Data = map[string][]byte{config.KeyFCMServiceAcct: forgedJSON}

	otherProject := credential(t, srv)
	srv.Allow(otherProject)
	otherProject.FCM = &config.FCMSpec{ProjectID: "someone-else"}

	for _, tc := range []struct {
		name   string
		cert   *config.Certificate
		reason string
	}{
		{"unknown service account", credential(t, srv), "invalid_client"},
		{"wrong signing key", forged, "invalid_grant"},
		{"project the account may not send to", otherProject, "PERMISSION_DENIED"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := fcm.New(tc.cert, providers.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if res := send(t, c, &providers.Message{ID: "n", Token: token1}); res.Outcome != providers.BadCredentials || res.Reason != tc.reason {
				t.Errorf("Send = %v/%q (%v), want BadCredentials/%s", res.Outcome, res.Reason, res.Err, tc.reason)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	data, spec, err := fakefcm.TestCredential(project, "https://oauth2.googleapis.com/token")
	if err != nil {
		t.Fatal(err)
	}
	var sa map[string]any
	if err := json.Unmarshal(data[config.KeyFCMServiceAcct], &sa); err != nil {
		t.Fatal(err)
	}
	email := sa["client_email"].(string)
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecDER, _ := x509.MarshalPKCS8PrivateKey(ecKey)
	edit := func(k string, v any) map[string][]byte {
		m := map[string]any{}
		for kk, vv := range sa {
			m[kk] = vv
		}
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
		raw, _ := json.Marshal(m)
		return map[string][]byte{config.KeyFCMServiceAcct: raw}
	}
	tests := []struct {
		name    string
		data    map[string][]byte
		spec    *config.FCMSpec
		reason  string
		subject string
	}{
		{name: "good", data: data, spec: spec, subject: email},
		{name: "project from spec only", data: edit("project_id", nil), spec: &config.FCMSpec{ProjectID: "p"}, subject: email},
		{name: "no project anywhere", data: edit("project_id", nil), spec: spec, reason: providers.ReasonInvalidCredentials},
		{name: "missing key", data: map[string][]byte{}, spec: spec, reason: providers.ReasonKeyMissing},
		{name: "not JSON", data: map[string][]byte{config.KeyFCMServiceAcct: []byte("{nope")}, spec: spec, reason: providers.ReasonInvalidCredentials},
		{name: "wrong type", data: edit("type", "authorized_user"), spec: spec, reason: providers.ReasonInvalidCredentials},
		{name: "no client_email", data: edit("client_email", nil), spec: spec, reason: providers.ReasonInvalidCredentials},
		{name: "garbage private key", data: edit("private_key", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), spec: spec, reason: providers.ReasonInvalidCredentials},
		{name: "EC private key", data: edit("private_key", string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: ecDER}))), spec: spec, reason: providers.ReasonInvalidCredentials},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			info, err := fcm.Validate(&config.Certificate{Name: "c", Provider: config.FCM, Data: tc.data, FCM: tc.spec})
			if tc.reason != "" {
				ce, ok := err.(*providers.CredentialError)
				if !ok {
					t.Fatalf("Validate error = %v, want a *CredentialError", err)
				}
				if ce.Reason != tc.reason || ce.Key != config.KeyFCMServiceAcct {
					t.Errorf("Validate = %s/%q (%s), want %s/%q", ce.Reason, ce.Key, ce.Message, tc.reason, config.KeyFCMServiceAcct)
				}
				return
			}
			if err != nil {
				t.Fatalf("Validate: %v", err)
			}
			if info.Subject != tc.subject || info.ExpiresAt != nil {
				t.Errorf("Validate = %+v, want subject %q and no expiry", info, tc.subject)
			}
		})
	}
}
