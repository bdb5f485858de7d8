// Package providertest holds what the provider clients' tests share: a fake
// started per test, a clock a client and its fake both read, the fuzz target
// for answer parsing, and the checks every table of results or credentials
// repeats. Only tests import it (it imports testing).
package providertest

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/imcloud/im-push-operator/dispatcher/config"
	"github.com/imcloud/im-push-operator/dispatcher/providers"
	"github.com/imcloud/im-push-operator/dispatcher/providers/fake"
)

// NewFunc builds a provider client; every provider's New is one.
type NewFunc func(*config.Certificate, providers.Options) (providers.Client, error)

// Start starts a fake (fakehuawei.Start, ...) with a new CA and closes it
// when the test ends.
func Start[S interface{ Close() }](t testing.TB, start func(*fake.CA) (S, error)) S {
	t.Helper()
	ca, err := fake.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	srv, err := start(ca)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	return srv
}

// Client builds a client or fails the test.
func Client(t testing.TB, newClient NewFunc, cert *config.Certificate, opts providers.Options) providers.Client {
	t.Helper()
	c, err := newClient(cert, opts)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Clock is a settable clock a client and its fake share, so token expiry
// and quota resets are tested without sleeping.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a clock standing at t.
func NewClock(t time.Time) *Clock { return &Clock{t: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Add moves the clock by d.
func (c *Clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// WantRefused fails t unless err is a CredentialError with reason and key,
// and unless newClient refuses cert as Validate did.
func WantRefused(t testing.TB, newClient NewFunc, cert *config.Certificate, err error, reason, key string) {
	t.Helper()
	var ce *providers.CredentialError
	if !errors.As(err, &ce) || ce.Reason != reason || ce.Key != key {
		t.Fatalf("Validate = %v, want CredentialError %s key %q", err, reason, key)
	}
	if _, err := newClient(cert, providers.Options{}); err == nil {
		t.Fatal("New accepted an invalid certificate")
	}
}

// AnswerCase is a scripted answer and the result a client must make of it
// (an alias, as Seed is, for positional tables).
type AnswerCase = struct {
	Answer     fake.Answer
	Outcome    providers.Outcome
	Reason     string
	RetryAfter time.Duration
	ResumeAt   time.Time
}

// RunAnswers runs each case as a subtest named by its code: send scripts
// the answer on a fresh fake and returns what the client made of it.
func RunAnswers(t *testing.T, cases []AnswerCase, send func(t *testing.T, a fake.Answer) providers.Result) {
	for _, tt := range cases {
		t.Run(tt.Answer.Code, func(t *testing.T) {
			res := send(t, tt.Answer)
			if res.Outcome != tt.Outcome || res.Reason != tt.Reason || res.RetryAfter != tt.RetryAfter {
				t.Fatalf("Send = %v %q retryAfter %v (%v), want %v %q retryAfter %v", res.Outcome, res.Reason, res.RetryAfter, res.Err, tt.Outcome, tt.Reason, tt.RetryAfter)
			}
			if !res.ResumeAt.Equal(tt.ResumeAt) {
				t.Fatalf("ResumeAt = %v, want %v", res.ResumeAt, tt.ResumeAt)
			}
		})
	}
}

// Send sends m with a deadline, so a hung exchange fails the test instead
// of hanging it.
func Send(c providers.Client, m *providers.Message, timeout time.Duration) providers.Result {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return c.Send(ctx, m)
}

// WantTimeout checks that a send the fake holds past the caller's deadline
// is a Retry "timeout".
func WantTimeout(t testing.TB, state *fake.State, c providers.Client, m *providers.Message) {
	t.Helper()
	state.Script(m.Token, fake.Answer{Delay: time.Minute})
	if res := Send(c, m, 200*time.Millisecond); res.Outcome != providers.Retry || res.Reason != "timeout" {
		t.Fatalf("Send = %v %q, want Retry timeout", res.Outcome, res.Reason)
	}
}

// WantBadCredentials checks that sending m is refused as BadCredentials
// with reason, before anything reaches the fake's record.
func WantBadCredentials(t testing.TB, state *fake.State, c providers.Client, m *providers.Message, reason string) {
	t.Helper()
	res := c.Send(context.Background(), m)
	if res.Outcome != providers.BadCredentials || res.Reason != reason {
		t.Errorf("Send = %v %q (%v), want BadCredentials %q", res.Outcome, res.Reason, res.Err, reason)
	}
	if n := state.Count(); n != 0 {
		t.Errorf("fake received %d sends, want 0", n)
	}
}

// SendCase is answers scripted for a token, the result the client must make
// of them and how many sends the fake records (resends included).
type SendCase = struct {
	Name       string
	Answers    []fake.Answer
	Outcome    providers.Outcome
	Reason     string
	RetryAfter time.Duration
	Sends      int
}

// RunSends runs each case as a subtest: send scripts the answers on a fresh
// fake and returns the result and the fake's state.
func RunSends(t *testing.T, cases []SendCase, send func(t *testing.T, answers []fake.Answer) (providers.Result, *fake.State)) {
	for _, tc := range cases {
		t.Run(tc.Name, func(t *testing.T) {
			res, state := send(t, tc.Answers)
			if res.Outcome != tc.Outcome || res.Reason != tc.Reason || res.RetryAfter != tc.RetryAfter {
				t.Errorf("Send = %v %q retry-after %v (%v), want %v %q %v", res.Outcome, res.Reason, res.RetryAfter, res.Err, tc.Outcome, tc.Reason, tc.RetryAfter)
			}
			if n := state.Count(); n != tc.Sends {
				t.Errorf("fake recorded %d sends, want %d", n, tc.Sends)
			}
		})
	}
}

// ValidateCase edits a good certificate; an empty Reason means Validate
// must accept the result.
type ValidateCase = struct {
	Name   string
	Edit   func(*config.Certificate)
	Reason string
	Key    string
}

// Credentials is what RunValidate checks a provider's credentials with.
type Credentials struct {
	// Good returns a fresh valid certificate.
	Good     func() *config.Certificate
	Validate func(*config.Certificate) (providers.CredentialInfo, error)
	New      NewFunc
	// Accepted checks what Validate said of a certificate it accepted.
	Accepted func(t *testing.T, cert *config.Certificate, info providers.CredentialInfo)
}

// RunValidate runs each case as a subtest: Validate and New must both
// accept the edited certificate or both refuse it, Validate with the case's
// reason and key.
func (cr Credentials) RunValidate(t *testing.T, cases []ValidateCase) {
	for _, tc := range cases {
		t.Run(tc.Name, func(t *testing.T) {
			cert := cr.Good()
			tc.Edit(cert)
			info, err := cr.Validate(cert)
			if tc.Reason != "" {
				WantRefused(t, cr.New, cert, err, tc.Reason, tc.Key)
				return
			}
			if err != nil {
				t.Fatalf("Validate: %v", err)
			}
			cr.Accepted(t, cert, info)
			if _, err := cr.New(cert, providers.Options{}); err != nil {
				t.Errorf("New: %v", err)
			}
		})
	}
}

// SubjectIs is an Accepted that wants the subject Validate names to be want.
func SubjectIs(want string) func(*testing.T, *config.Certificate, providers.CredentialInfo) {
	return func(t *testing.T, _ *config.Certificate, info providers.CredentialInfo) {
		if info.Subject != want {
			t.Errorf("Subject = %q, want %q", info.Subject, want)
		}
	}
}

// Request is what a Recorder keeps of a request: enough to pin its bytes.
type Request struct {
	Method, URL, ContentType, Auth, Timestamp, Body string
}

// Recorder is a transport that records each request and answers it with
// Answer, for tests that pin the exact requests to a vendor's real hosts.
type Recorder struct {
	Answer func(*http.Request) *http.Response

	mu   sync.Mutex
	reqs []Request
}

// RoundTrip implements http.RoundTripper.
func (rt *Recorder) RoundTrip(r *http.Request) (*http.Response, error) {
	body, _ := io.ReadAll(r.Body)
	rt.mu.Lock()
	rt.reqs = append(rt.reqs, Request{r.Method, r.URL.String(), r.Header.Get("Content-Type"), r.Header.Get("Authorization"), r.Header.Get("timestamp"), string(body)})
	rt.mu.Unlock()
	return rt.Answer(r), nil
}

// Requests returns the requests recorded so far.
func (rt *Recorder) Requests() []Request {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return append([]Request(nil), rt.reqs...)
}

// Reply is an answer with status and a JSON body.
func Reply(status int, body string) *http.Response {
	return &http.Response{StatusCode: status, Header: http.Header{"Content-Type": {"application/json"}}, Body: io.NopCloser(strings.NewReader(body))}
}

// TokenRefresh checks an OAuth client's access-token cache: one token for
// two sends, a new one within Refresh of the clock, and, once the vendor
// refuses the token as expired (Expire), a new token and the send repeated.
type TokenRefresh struct {
	Client  providers.Client
	Message func() *providers.Message
	Clock   *Clock
	// Refresh is how far the clock moves to bring the token within the
	// client's refresh margin of its expiry.
	Refresh time.Duration
	Issued  func() int
	// Expire makes the fake refuse the current token as expired.
	Expire func()
	State  *fake.State
}

// Run runs the check.
func (tr TokenRefresh) Run(t *testing.T) {
	t.Helper()
	send := func(step string) {
		t.Helper()
		if res := tr.Client.Send(context.Background(), tr.Message()); res.Outcome != providers.Delivered {
			t.Fatalf("%s: Send = %v %q (%v)", step, res.Outcome, res.Reason, res.Err)
		}
	}
	send("first")
	send("cached")
	if n := tr.Issued(); n != 1 {
		t.Fatalf("after two sends %d tokens issued, want 1 (cached)", n)
	}
	tr.Clock.Add(tr.Refresh)
	send("near expiry")
	if n := tr.Issued(); n != 2 {
		t.Fatalf("near expiry %d tokens issued, want 2", n)
	}
	tr.Expire()
	send("expired at the vendor")
	if n := tr.Issued(); n != 3 {
		t.Fatalf("after the expired-token answer %d tokens issued, want 3", n)
	}
	// The send refused for its token failed authentication and is not recorded.
	if n := tr.State.Count(); n != 4 {
		t.Errorf("fake recorded %d sends, want 4", n)
	}
}

// WantTruncated sends m with a body of 12000 bytes and checks the fake got
// a prefix of it, cut at a rune boundary to at least minBytes, and the
// title whole.
func WantTruncated(t testing.TB, state *fake.State, c providers.Client, m *providers.Message, minBytes int) {
	t.Helper()
	m.Body = strings.Repeat("消息", 2000)
	if res := c.Send(context.Background(), m); res.Outcome != providers.Delivered {
		t.Fatalf("Send = %v %q (%v)", res.Outcome, res.Reason, res.Err)
	}
	r := state.Received()[0]
	if !utf8.ValidString(r.Body) || !strings.HasPrefix(m.Body, r.Body) || len(r.Body) < minBytes || r.Title != m.Title {
		t.Errorf("body of %d bytes (valid UTF-8 %v), title %q: want a rune-boundary prefix of at least %d bytes and the title kept", len(r.Body), utf8.ValidString(r.Body), r.Title, minBytes)
	}
}

// WantLocalReject checks that the client refuses m as BadMessage without
// sending it.
func WantLocalReject(t testing.TB, state *fake.State, c providers.Client, m *providers.Message) {
	t.Helper()
	if res := c.Send(context.Background(), m); res.Outcome != providers.BadMessage {
		t.Fatalf("Send = %+v, want BadMessage", res)
	}
	if n := state.Count(); n != 0 {
		t.Fatalf("fake received %d sends, want 0", n)
	}
}

// ResendCase makes the fake refuse the client's token (Prepare) after a
// first delivered send; the second send must end as Outcome and Reason,
// with the fake having answered Answered to the sends it recorded.
type ResendCase[E any] struct {
	Name     string
	Prepare  func(E)
	Outcome  providers.Outcome
	Reason   string
	Answered []string
}

// Resend runs ResendCases for a provider whose client authenticates once
// more, and only once, when its token is refused.
type Resend[E any] struct {
	Setup func(t *testing.T) E
	// Send sends the message with id to the scripted token.
	Send   func(e E, id string) providers.Result
	State  func(e E) *fake.State
	Issued func(e E) int
}

// Run runs each case as a subtest.
func (r Resend[E]) Run(t *testing.T, cases []ResendCase[E]) {
	for _, tt := range cases {
		t.Run(tt.Name, func(t *testing.T) {
			e := r.Setup(t)
			if res := r.Send(e, "n-1"); res.Outcome != providers.Delivered {
				t.Fatalf("first Send = %+v", res)
			}
			tt.Prepare(e)
			res := r.Send(e, "n-2")
			if res.Outcome != tt.Outcome || res.Reason != tt.Reason {
				t.Fatalf("Send = %v %q, want %v %q", res.Outcome, res.Reason, tt.Outcome, tt.Reason)
			}
			if got := r.Issued(e); got != 2 {
				t.Errorf("auth calls = %d, want 2", got)
			}
			var answered []string
			for _, rec := range r.State(e).Received() {
				answered = append(answered, rec.Answered)
			}
			if !slices.Equal(tt.Answered, answered) {
				t.Errorf("answers %q, want %q", answered, tt.Answered)
			}
		})
	}
}

// Fake is what NewEnv needs of a provider's fake.
type Fake interface {
	Close()
	SetClock(func() time.Time)
	Certificate(name string) *config.Certificate
}

// Env is a fake, a certificate that points at it, and the clock both the
// fake and the clients read.
type Env[S Fake] struct {
	Fake  S
	Cert  *config.Certificate
	Clock *Clock
	New   NewFunc
}

// NewEnv starts a fake, makes a certificate named name for it and sets both
// on a Clock standing at at.
func NewEnv[S Fake](t testing.TB, start func(*fake.CA) (S, error), name string, at time.Time, newClient NewFunc) *Env[S] {
	t.Helper()
	srv := Start(t, start)
	clk := NewClock(at)
	srv.SetClock(clk.Now)
	return &Env[S]{Fake: srv, Cert: srv.Certificate(name), Clock: clk, New: newClient}
}

// Client builds a client for Cert as it stands now, reading Clock.
func (e *Env[S]) Client(t testing.TB) providers.Client {
	t.Helper()
	return Client(t, e.New, e.Cert, providers.Options{Now: e.Clock.Now})
}

// ReplyJSON fails t unless the request succeeded with a JSON object, and
// returns the object: for tests that drive a fake over the wire.
func ReplyJSON(t testing.TB, reply *providers.Reply, err error) map[string]any {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if err := json.Unmarshal(reply.Body, &out); err != nil {
		t.Fatalf("HTTP %d %s: %v", reply.Status, reply.Body, err)
	}
	return out
}

// TokenRequest asks an OAuth token endpoint for a client-credentials token
// and returns the status and the decoded answer.
func TokenRequest(t testing.TB, hc *http.Client, tokenURL, clientID, secret string) (int, map[string]any) {
	t.Helper()
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {clientID}, "client_secret": {secret}}
	resp, err := hc.PostForm(tokenURL, form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body
}
