package delivery

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/imcloud/im-push-operator/dispatcher/config"
	"github.com/imcloud/im-push-operator/dispatcher/policy"
	"github.com/imcloud/im-push-operator/dispatcher/providers"
	"github.com/imcloud/im-push-operator/dispatcher/store"
	"github.com/imcloud/im-push-operator/internal/testenv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// t0 is 12:00 in Beijing.
var t0 = time.Date(2026, 3, 10, 4, 0, 0, 0, time.UTC)

// maxSource makes every jitter draw its maximum, so backoff is predictable.
type maxSource struct{}

func (maxSource) Uint64() uint64 { return ^uint64(0) }

// client is a scripted providers.Client: answer decides each call (n counts
// from 1); every message sent is also delivered on sent.
type client struct {
	provider config.Provider
	answer   func(ctx context.Context, m *providers.Message, n int) providers.Result
	n        atomic.Int32
	sent     chan providers.Message
}

func newClient(p config.Provider, answer func(ctx context.Context, m *providers.Message, n int) providers.Result) *client {
	return &client{provider: p, answer: answer, sent: make(chan providers.Message, 1000)}
}

// answers returns results in order, repeating the last.
func answers(rs ...providers.Result) func(context.Context, *providers.Message, int) providers.Result {
	return func(_ context.Context, _ *providers.Message, n int) providers.Result {
		return rs[min(n, len(rs))-1]
	}
}

func (c *client) Provider() config.Provider { return c.provider }

func (c *client) Send(ctx context.Context, m *providers.Message) providers.Result {
	n := int(c.n.Add(1))
	c.sent <- *m
	return c.answer(ctx, m, n)
}

func (c *client) calls() int { return int(c.n.Load()) }

// next returns the next message sent, failing after a generous real-time
// bound (a hang, not synchronisation).
func (c *client) next(t *testing.T) providers.Message {
	t.Helper()
	select {
	case m := <-c.sent:
		return m
	case <-time.After(10 * time.Second):
		t.Fatal("no message sent")
		return providers.Message{}
	}
}

var (
	delivered = providers.Result{Outcome: providers.Delivered}
	dropToken = providers.Result{Outcome: providers.DropToken, Reason: "Unregistered"}
	retry     = providers.Result{Outcome: providers.Retry, Reason: "503"}
)

type harness struct {
	t       *testing.T
	clock   *fakeClock
	store   *store.Memory
	reg     *prometheus.Registry
	e       *Engine
	cfg     *config.Config
	clients map[string]providers.Client
}

func newHarness(t *testing.T, opts Options) *harness {
	t.Helper()
	h := &harness{t: t, clock: newFakeClock(t0), reg: prometheus.NewRegistry()}
	h.store = store.NewMemory(config.TokenStore{Shards: 1}, h.clock.Now)
	opts.Store, opts.Clock, opts.Registerer = h.store, h.clock, h.reg
	if opts.Rand == nil {
		opts.Rand = rand.New(maxSource{})
	}
	h.e = New(opts)
	h.cfg = &config.Config{
		Version: config.Version, Tenant: "chat", Namespace: "ns", Replicas: 1,
		Certificates: []config.Certificate{
			{Name: "hw", Provider: config.Huawei, Fingerprint: "a"},
			{Name: "fcm", Provider: config.FCM, Fingerprint: "b"},
		},
		Policy: config.Policy{
			MultiDevice: policy.AnyOffline, ProviderPreference: policy.VendorFirst, ShowContent: true,
			TTL:            metav1.Duration{Duration: time.Hour},
			MaxAttempts:    3,
			BackoffInitial: metav1.Duration{Duration: time.Second},
			BackoffMax:     metav1.Duration{Duration: 10 * time.Second},
		},
		TokenStore: config.TokenStore{Shards: 1},
	}
	t.Cleanup(func() {
		if h.e != nil {
			// Bounded: after a failed test deliveries may wait on the fake
			// clock for ever, and the test should end with its failure.
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			h.e.Drain(ctx)
		}
	})
	return h
}

// setClients applies h.cfg with clients.
func (h *harness) setClients(clients map[string]providers.Client) {
	h.t.Helper()
	h.clients = clients
	if err := h.e.SetConfig(h.cfg, clients); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) bind(user, device, cert, token string) {
	h.t.Helper()
	if err := h.store.Bind(context.Background(), user, device, store.Binding{CertificateName: cert, Token: token}); err != nil {
		h.t.Fatal(err)
	}
}

func notification(id string, users ...string) *policy.Notification {
	n := &policy.Notification{
		ID:           id,
		Sender:       policy.Sender{ID: "alice"},
		Conversation: policy.Conversation{ID: "c1", Type: policy.ConversationSingle},
		Message:      policy.Message{Text: "hi"},
	}
	for _, u := range users {
		n.Recipients = append(n.Recipients, policy.Recipient{UserID: u})
	}
	return n
}

func (h *harness) submit(n *policy.Notification) Receipt {
	h.t.Helper()
	r, err := h.e.Submit(n)
	if err != nil {
		h.t.Fatalf("Submit(%s): %v", n.ID, err)
	}
	return r
}

func (h *harness) wait(id string) Status {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := h.e.Wait(ctx, id)
	if err != nil {
		h.t.Fatalf("Wait(%s): %v; status %+v", id, err, st)
	}
	return st
}

// advanceToTimer waits for the engine to arm a timer due by limit and moves
// the clock to it.
func (h *harness) advanceToTimer(limit time.Time) time.Time {
	h.t.Helper()
	at := h.clock.waitTimer(h.t, limit)
	h.clock.Advance(at.Sub(h.clock.Now()))
	return at
}

// waitParked waits until n entries sit in the delay heap.
func (h *harness) waitParked(n int) {
	h.t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		h.clock.mu.Lock()
		ch := h.clock.changed
		h.clock.mu.Unlock()
		h.e.heapMu.Lock()
		parked := len(h.e.delays)
		h.e.heapMu.Unlock()
		if parked >= n {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			h.t.Fatalf("%d entries parked, want %d", parked, n)
		}
	}
}

// metric sums the samples of name whose labels include match: counters'
// and gauges' values, histograms' counts of observations.
func (h *harness) metric(name string, match map[string]string) float64 {
	return h.sum(name, match, func(m *dto.Metric) float64 {
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
		return 0
	})
}

// histogramSum sums the observations of the histograms name whose labels
// include match.
func (h *harness) histogramSum(name string, match map[string]string) float64 {
	return h.sum(name, match, func(m *dto.Metric) float64 { return m.GetHistogram().GetSampleSum() })
}

// sum adds value(m) over the samples m of name whose labels include match.
func (h *harness) sum(name string, match map[string]string, value func(*dto.Metric) float64) float64 {
	h.t.Helper()
	mfs, err := h.reg.Gather()
	if err != nil {
		h.t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for k, v := range match {
				if label(m, k) != v {
					continue next
				}
			}
			sum += value(m)
		}
	}
	return sum
}

// value reads one counter or gauge, as prometheus/testutil.ToFloat64 does
// (testutil itself needs a module go.mod does not list).
func value(t *testing.T, m prometheus.Metric) float64 {
	t.Helper()
	var pb dto.Metric
	if err := m.Write(&pb); err != nil {
		t.Fatal(err)
	}
	switch {
	case pb.Counter != nil:
		return pb.Counter.GetValue()
	case pb.Gauge != nil:
		return pb.Gauge.GetValue()
	}
	t.Fatalf("%s is neither counter nor gauge", m.Desc())
	return 0
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// drain stops the engine and checks that every accepted delivery was
// accounted for exactly once.
func (h *harness) drain(ctx context.Context) int {
	h.t.Helper()
	dropped := h.e.Drain(ctx)
	accepted := value(h.t, h.e.metrics.deliveriesAccepted)
	final := 0.0
	for _, o := range []State{Delivered, Failed, Dropped} {
		final += h.metric("impush_dispatcher_deliveries_total", map[string]string{"outcome": string(o)})
	}
	if accepted != final {
		h.t.Errorf("accepted %v deliveries, %v delivered+failed+dropped", accepted, final)
	}
	if got := value(h.t, h.e.metrics.queueDepth); got != 0 {
		h.t.Errorf("queue depth %v after drain", got)
	}
	h.e = nil
	return dropped
}

func outcome(t *testing.T, st Status, device string) DeviceOutcome {
	t.Helper()
	for _, o := range st.Outcomes {
		if o.Device == device {
			return o
		}
	}
	t.Fatalf("no outcome for device %q in %+v", device, st)
	return DeviceOutcome{}
}

func wantOutcome(t *testing.T, got DeviceOutcome, state State, reason, cert string, attempts int) {
	t.Helper()
	if got.State != state || got.Reason != reason || got.Certificate != cert || got.Attempts != attempts {
		t.Errorf("outcome %+v, want state %s reason %q certificate %s attempts %d", got, state, reason, cert, attempts)
	}
}

func hasBinding(t *testing.T, s store.Store, user, device, cert string) bool {
	t.Helper()
	u, err := s.Get(context.Background(), user)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range u.Devices {
		if d.ID != device {
			continue
		}
		for _, b := range d.Bindings {
			if b.CertificateName == cert {
				return true
			}
		}
	}
	return false
}

func TestDelivered(t *testing.T) {
	h := newHarness(t, Options{})
	hw := newClient(config.Huawei, answers(delivered))
	h.setClients(map[string]providers.Client{"hw": hw})
	h.bind("bob", "phone", "hw", "tok-bob-hw")
	h.bind("carol", "web", "unknown", "tok-x")

	r := h.submit(notification("n1", "bob", "carol", "nobody"))
	if r.Deliveries != 1 || r.Skipped != 2 || r.Duplicate {
		t.Errorf("receipt %+v, want 1 delivery and 2 skips", r)
	}
	st := h.wait("n1")
	if !st.Done {
		t.Error("status not done after Wait")
	}
	wantOutcome(t, outcome(t, st, "phone"), Delivered, "", "hw", 1)
	wantOutcome(t, outcome(t, st, "web"), Skipped, string(policy.NoUsableBinding), "", 0)
	m := hw.next(t)
	if m.Token != "tok-bob-hw" || m.ID != "n1" || m.Body == "" {
		t.Errorf("sent %+v", m)
	}
	if got := h.metric("impush_dispatcher_deliveries_total", map[string]string{"provider": "Huawei", "certificate": "hw", "outcome": "delivered"}); got != 1 {
		t.Errorf("delivered metric %v", got)
	}
	if got := h.metric("impush_dispatcher_deliveries_total", map[string]string{"outcome": "skipped"}); got != 2 {
		t.Errorf("skipped metric %v", got)
	}
	if got := value(t, h.e.metrics.accepted); got != 1 {
		t.Errorf("accepted notifications %v", got)
	}
	if got := h.metric("impush_dispatcher_provider_call_duration_seconds", map[string]string{"outcome": "Delivered"}); got != 1 {
		t.Errorf("call histogram count %v", got)
	}
	h.drain(context.Background())
}

func TestRetryAfterThenSuccess(t *testing.T) {
	h := newHarness(t, Options{})
	hw := newClient(config.Huawei, answers(providers.Result{Outcome: providers.Retry, Reason: "429", RetryAfter: 30 * time.Second}, delivered))
	h.setClients(map[string]providers.Client{"hw": hw})
	h.bind("bob", "phone", "hw", "tok")

	h.submit(notification("n1", "bob"))
	// Retry-After (30s) is longer than any backoff (max 10s), so it wins.
	if at := h.advanceToTimer(t0.Add(time.Hour)); !at.Equal(t0.Add(30 * time.Second)) {
		t.Errorf("retry at %v, want %v", at, t0.Add(30*time.Second))
	}
	wantOutcome(t, outcome(t, h.wait("n1"), "phone"), Delivered, "", "hw", 2)
	if got := h.metric("impush_dispatcher_retries_total", map[string]string{"certificate": "hw"}); got != 1 {
		t.Errorf("retries %v", got)
	}
	// Two calls, one delivery: the queue wait is its first call's only.
	if got := h.metric("impush_dispatcher_queue_wait_seconds", map[string]string{"provider": "Huawei"}); got != 1 {
		t.Errorf("queue wait observations %v, want 1", got)
	}
	h.drain(context.Background())
}

// The send latency runs from acceptance to the first call's request written
// to the provider's connection, as net/http reports it through the call's
// context; a call that writes no request is not observed.
func TestSendLatencyFromAcceptanceToRequestWritten(t *testing.T) {
	h := newHarness(t, Options{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
	}))
	tr := &http.Transport{}
	t.Cleanup(func() { tr.CloseIdleConnections(); srv.Close() })
	post := func(ctx context.Context) {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL, strings.NewReader(`{"to":"tok"}`))
		if err != nil {
			t.Error(err)
			return
		}
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Error(err)
			return
		}
		_ = resp.Body.Close()
	}
	huawei, fcm := map[string]string{"provider": "Huawei"}, map[string]string{"provider": "FCM"}
	// Each call takes 3 ms before its request is written and 2 ms more for
	// the answer; the first is answered with a retry, so a second call
	// writes a request too. The write is observed on the goroutine that
	// wrote it, which the answer can overtake: time moves on once it is.
	viaHTTP := newClient(config.Huawei, func(ctx context.Context, m *providers.Message, n int) providers.Result {
		h.clock.Advance(3 * time.Millisecond)
		post(ctx)
		testenv.Eventually(t, "the first write observed", 10*time.Second, func() bool {
			return h.metric("impush_dispatcher_send_latency_seconds", huawei) >= 1
		})
		h.clock.Advance(2 * time.Millisecond)
		if n == 1 {
			return providers.Result{Outcome: providers.Retry, Reason: "503", RetryAfter: time.Second}
		}
		return delivered
	})
	h.setClients(map[string]providers.Client{"hw": viaHTTP, "fcm": newClient(config.FCM, answers(delivered))})
	h.bind("bob", "phone", "hw", "tok")
	h.bind("eve", "phone", "fcm", "tok2")

	h.submit(notification("n1", "bob"))
	h.advanceToTimer(t0.Add(time.Hour))
	wantOutcome(t, outcome(t, h.wait("n1"), "phone"), Delivered, "", "hw", 2)
	h.submit(notification("n2", "eve"))
	wantOutcome(t, outcome(t, h.wait("n2"), "phone"), Delivered, "", "fcm", 1)

	for _, p := range []map[string]string{huawei, fcm} {
		if got := h.metric("impush_dispatcher_queue_wait_seconds", p); got != 1 {
			t.Errorf("%v queue wait observations %v, want 1 (one per delivery)", p, got)
		}
	}
	// Bob's first call only; eve's client wrote no request.
	if got := h.metric("impush_dispatcher_send_latency_seconds", fcm); got != 0 {
		t.Errorf("FCM send latency observations %v, want none", got)
	}
	if got := h.metric("impush_dispatcher_send_latency_seconds", huawei); got != 1 {
		t.Fatalf("Huawei send latency observations %v, want 1", got)
	}
	if got := h.histogramSum("impush_dispatcher_send_latency_seconds", huawei); math.Abs(got-0.003) > 1e-9 {
		t.Errorf("send latency %vs, want 0.003s (acceptance to the first request written)", got)
	}
	h.drain(context.Background())
}

func TestMaxAttemptsExhausted(t *testing.T) {
	h := newHarness(t, Options{})
	hw := newClient(config.Huawei, answers(retry))
	h.setClients(map[string]providers.Client{"hw": hw})
	h.bind("bob", "phone", "hw", "tok")

	h.submit(notification("n1", "bob"))
	// Full jitter at its maximum: 1s, then 2s.
	for _, want := range []time.Duration{time.Second, 3 * time.Second} {
		if at := h.advanceToTimer(t0.Add(time.Hour)); !at.Equal(t0.Add(want)) {
			t.Errorf("retry at %v, want t0+%v", at, want)
		}
	}
	o := outcome(t, h.wait("n1"), "phone")
	wantOutcome(t, o, Failed, ReasonMaxAttempts, "hw", 3)
	if o.ProviderReason != "503" {
		t.Errorf("provider reason %q", o.ProviderReason)
	}
	if got := h.metric("impush_dispatcher_binding_failures_total", map[string]string{"reason": ReasonMaxAttempts}); got != 1 {
		t.Errorf("failures metric %v", got)
	}
	h.drain(context.Background())
}

func TestTTLExpiry(t *testing.T) {
	h := newHarness(t, Options{})
	hw := newClient(config.Huawei, answers(providers.Result{Outcome: providers.Retry, RetryAfter: 10 * time.Second}))
	h.setClients(map[string]providers.Client{"hw": hw})
	h.bind("bob", "phone", "hw", "tok")

	n := notification("n1", "bob")
	n.Push = &policy.Push{TTLSeconds: 5}
	h.submit(n)
	wantOutcome(t, outcome(t, h.wait("n1"), "phone"), Failed, ReasonExpired, "hw", 1)
	if m := hw.next(t); !m.Expiration.Equal(t0.Add(5 * time.Second)) {
		t.Errorf("expiration %v", m.Expiration)
	}
	h.drain(context.Background())
}

func TestDropTokenRemovesBindingAndFallsBack(t *testing.T) {
	h := newHarness(t, Options{})
	hw := newClient(config.Huawei, answers(dropToken))
	fcm := newClient(config.FCM, answers(delivered))
	h.setClients(map[string]providers.Client{"hw": hw, "fcm": fcm})
	h.bind("bob", "phone", "fcm", "tok-fcm")
	h.bind("bob", "phone", "hw", "tok-hw")

	h.submit(notification("n1", "bob"))
	o := outcome(t, h.wait("n1"), "phone")
	wantOutcome(t, o, Delivered, "", "fcm", 2)
	if hw.next(t).Token != "tok-hw" || fcm.next(t).Token != "tok-fcm" {
		t.Error("bindings not tried vendor first")
	}
	if hasBinding(t, h.store, "bob", "phone", "hw") {
		t.Error("invalid hw binding still stored")
	}
	if !hasBinding(t, h.store, "bob", "phone", "fcm") {
		t.Error("fcm binding removed")
	}
	if got := h.metric("impush_dispatcher_tokens_removed_total", map[string]string{"provider": "Huawei", "certificate": "hw"}); got != 1 {
		t.Errorf("tokens removed %v", got)
	}
	h.drain(context.Background())
}

func TestTokenReboundDuringSendIsKept(t *testing.T) {
	h := newHarness(t, Options{})
	hw := newClient(config.Huawei, func(context.Context, *providers.Message, int) providers.Result {
		// The app registers the same token again while the send is out.
		h.clock.Advance(time.Second)
		h.bind("bob", "phone", "hw", "tok-hw")
		return dropToken
	})
	h.setClients(map[string]providers.Client{"hw": hw})
	h.bind("bob", "phone", "hw", "tok-hw")

	h.submit(notification("n1", "bob"))
	wantOutcome(t, outcome(t, h.wait("n1"), "phone"), Failed, ReasonTokenInvalid, "hw", 1)
	if !hasBinding(t, h.store, "bob", "phone", "hw") {
		t.Error("binding re-bound after the send was removed")
	}
	if got := h.metric("impush_dispatcher_tokens_removed_total", nil); got != 0 {
		t.Errorf("tokens removed %v", got)
	}
	h.drain(context.Background())
}

func TestCircuitBreakerStopsMassDeletion(t *testing.T) {
	h := newHarness(t, Options{BreakerMinAnswers: 5, BreakerInvalidRatio: 0.9})
	hw := newClient(config.Huawei, answers(dropToken))
	h.setClients(map[string]providers.Client{"hw": hw})
	users := []string{"u0", "u1", "u2", "u3", "u4", "u5", "u6", "u7", "u8", "u9"}
	for _, u := range users {
		h.bind(u, "phone", "hw", "tok-"+u)
	}

	h.submit(notification("n1", users...))
	st := h.wait("n1")
	reasons := map[string]int{}
	for _, o := range st.Outcomes {
		reasons[o.Reason]++
	}
	// Answers 1-4 are below the minimum; the 5th opens the breaker.
	if reasons[ReasonTokenInvalid] != 4 || reasons[ReasonCredentialSuspect] != 6 {
		t.Errorf("reasons %v, want 4 TokenInvalid and 6 CredentialSuspect", reasons)
	}
	kept := 0
	for _, u := range users {
		if hasBinding(t, h.store, u, "phone", "hw") {
			kept++
		}
	}
	if kept != 6 {
		t.Errorf("%d bindings kept, want 6", kept)
	}
	if got := h.metric("impush_dispatcher_tokens_removed_total", nil); got != 4 {
		t.Errorf("tokens removed %v", got)
	}
	if got := h.metric("impush_dispatcher_credential_suspect", map[string]string{"certificate": "hw"}); got != 1 {
		t.Errorf("suspect gauge %v", got)
	}
	if got := h.metric("impush_dispatcher_binding_failures_total", map[string]string{"reason": ReasonCredentialSuspect}); got != 6 {
		t.Errorf("CredentialSuspect failures %v", got)
	}
	h.drain(context.Background())
}

func TestBadCredentialsTriesNextBindingAndBadMessageDoesNot(t *testing.T) {
	h := newHarness(t, Options{})
	hw := newClient(config.Huawei, answers(providers.Result{Outcome: providers.BadCredentials, Reason: "80200003"}))
	fcm := newClient(config.FCM, answers(providers.Result{Outcome: providers.BadMessage, Reason: "INVALID_ARGUMENT"}))
	h.setClients(map[string]providers.Client{"hw": hw, "fcm": fcm})
	h.bind("bob", "phone", "hw", "tok-hw")
	h.bind("bob", "phone", "fcm", "tok-fcm")
	h.bind("bob", "tablet", "fcm", "tok-fcm2")
	h.bind("bob", "tablet", "hw", "tok-hw2")

	h.submit(notification("n1", "bob"))
	st := h.wait("n1")
	// phone: hw refuses the credential, fcm refuses the message.
	wantOutcome(t, outcome(t, st, "phone"), Failed, ReasonBadMessage, "fcm", 2)
	// tablet: hw first (vendor first), then fcm.
	wantOutcome(t, outcome(t, st, "tablet"), Failed, ReasonBadMessage, "fcm", 2)
	if got := h.metric("impush_dispatcher_binding_failures_total", map[string]string{"certificate": "hw", "reason": ReasonBadCredentials}); got != 2 {
		t.Errorf("BadCredentials failures %v", got)
	}
	if !hasBinding(t, h.store, "bob", "phone", "hw") {
		t.Error("BadCredentials removed a token")
	}
	h.drain(context.Background())
}

func TestQuotaPausesAndResumes(t *testing.T) {
	h := newHarness(t, Options{})
	resume := t0.Add(time.Hour)
	hw := newClient(config.Huawei, func(context.Context, *providers.Message, int) providers.Result {
		if h.clock.Now().Before(resume) {
			return providers.Result{Outcome: providers.QuotaExceeded, Reason: "80300008", ResumeAt: resume}
		}
		return delivered
	})
	h.setClients(map[string]providers.Client{"hw": hw})
	h.bind("bob", "phone", "hw", "tok-bob")
	h.bind("carol", "phone", "hw", "tok-carol")

	n1 := notification("n1", "bob")
	n1.Push = &policy.Push{TTLSeconds: 7200}
	h.submit(n1)
	hw.next(t)
	// n1's job and the resume check.
	h.waitParked(2)
	if got := h.metric("impush_dispatcher_credential_paused", map[string]string{"certificate": "hw"}); got != 1 {
		t.Errorf("paused gauge %v", got)
	}
	n2 := notification("n2", "carol")
	n2.Push = &policy.Push{TTLSeconds: 7200}
	h.submit(n2)
	// n2 waits without calling the paused credential.
	h.waitParked(3)
	if hw.calls() != 1 {
		t.Errorf("%d calls while paused", hw.calls())
	}
	if at := h.advanceToTimer(t0.Add(2 * time.Hour)); !at.Equal(resume) {
		t.Errorf("resumed at %v, want %v", at, resume)
	}
	// The quota answer is not an attempt.
	wantOutcome(t, outcome(t, h.wait("n1"), "phone"), Delivered, "", "hw", 1)
	wantOutcome(t, outcome(t, h.wait("n2"), "phone"), Delivered, "", "hw", 1)
	if got := h.metric("impush_dispatcher_credential_paused", map[string]string{"certificate": "hw"}); got != 0 {
		t.Errorf("paused gauge %v after resume", got)
	}

	// A pause that outlasts the message's TTL fails it at once.
	hw2 := newClient(config.Huawei, answers(providers.Result{Outcome: providers.QuotaExceeded, ResumeAt: h.clock.Now().Add(48 * time.Hour)}))
	h.setClients(map[string]providers.Client{"hw": hw2})
	h.submit(notification("n3", "bob"))
	wantOutcome(t, outcome(t, h.wait("n3"), "phone"), Failed, ReasonQuotaExceeded, "hw", 0)
	h.drain(context.Background())
}

func TestQuotaMovesToNextBinding(t *testing.T) {
	h := newHarness(t, Options{})
	hw := newClient(config.Huawei, answers(providers.Result{Outcome: providers.QuotaExceeded, ResumeAt: t0.Add(time.Hour)}))
	fcm := newClient(config.FCM, answers(delivered))
	h.setClients(map[string]providers.Client{"hw": hw, "fcm": fcm})
	h.bind("bob", "phone", "hw", "tok-hw")
	h.bind("bob", "phone", "fcm", "tok-fcm")

	h.submit(notification("n1", "bob"))
	wantOutcome(t, outcome(t, h.wait("n1"), "phone"), Delivered, "", "fcm", 1)
	h.drain(context.Background())
}

func TestDailyCapPausesUntilBeijingMidnight(t *testing.T) {
	h := newHarness(t, Options{})
	h.cfg.Certificates[0].DailyCap = 2
	h.cfg.Replicas = 2 // this replica's share: 1 a day
	hw := newClient(config.Huawei, answers(delivered))
	h.setClients(map[string]providers.Client{"hw": hw})
	h.bind("bob", "phone", "hw", "tok-bob")
	h.bind("carol", "phone", "hw", "tok-carol")

	// The second send finds the cap reached; the pause (until Beijing
	// midnight) outlasts the policy's one-hour TTL, so it fails at once.
	h.submit(notification("n1", "bob", "carol"))
	st := h.wait("n1")
	failed := 0
	for _, o := range st.Outcomes {
		if o.State == Failed && o.Reason == ReasonQuotaExceeded {
			failed++
		}
	}
	if failed != 1 || hw.calls() != 1 {
		t.Errorf("%d failed on the cap, %d calls; want 1 and 1", failed, hw.calls())
	}

	h.cfg.Policy.TTL = metav1.Duration{Duration: 24 * time.Hour}
	h.setClients(map[string]providers.Client{"hw": hw})
	h.submit(notification("n2", "bob"))
	// t0 is 12:00 in Beijing: the day ends 12 hours later.
	midnight := t0.Add(12 * time.Hour)
	if at := h.advanceToTimer(t0.Add(24 * time.Hour)); !at.Equal(midnight) {
		t.Errorf("resumed at %v, want Beijing midnight %v", at, midnight)
	}
	wantOutcome(t, outcome(t, h.wait("n2"), "phone"), Delivered, "", "hw", 1)
	h.drain(context.Background())
}

func TestRateLimitSpacesSends(t *testing.T) {
	h := newHarness(t, Options{})
	h.cfg.Certificates[0].RateLimit = 1
	hw := newClient(config.Huawei, answers(delivered))
	h.setClients(map[string]providers.Client{"hw": hw})
	h.bind("bob", "phone", "hw", "tok-bob")
	h.bind("carol", "phone", "hw", "tok-carol")

	h.submit(notification("n1", "bob", "carol"))
	if at := h.advanceToTimer(t0.Add(time.Hour)); !at.Equal(t0.Add(time.Second)) {
		t.Errorf("second send at %v, want t0+1s", at)
	}
	st := h.wait("n1")
	for _, o := range st.Outcomes {
		wantOutcome(t, o, Delivered, "", "hw", 1)
	}
	h.drain(context.Background())
}

func TestIdempotentResubmission(t *testing.T) {
	h := newHarness(t, Options{})
	hw := newClient(config.Huawei, answers(delivered))
	h.setClients(map[string]providers.Client{"hw": hw})
	h.bind("bob", "phone", "hw", "tok")

	first := h.submit(notification("n1", "bob"))
	h.wait("n1")
	again := h.submit(notification("n1", "bob"))
	if !again.Duplicate || again.AcceptedAt != first.AcceptedAt || again.Deliveries != 1 {
		t.Errorf("resubmission receipt %+v, first %+v", again, first)
	}
	if hw.calls() != 1 {
		t.Errorf("%d sends for one id", hw.calls())
	}
	if got := value(t, h.e.metrics.accepted); got != 1 {
		t.Errorf("accepted %v", got)
	}

	// Past the window the id is new again.
	h.clock.Advance(DefaultIdempotencyWindow + time.Second)
	if r := h.submit(notification("n1", "bob")); r.Duplicate {
		t.Error("id still a duplicate after the window")
	}
	h.wait("n1")
	if hw.calls() != 2 {
		t.Errorf("%d sends", hw.calls())
	}
	h.drain(context.Background())
}

func TestIdempotencyIsBounded(t *testing.T) {
	h := newHarness(t, Options{IdempotencyMax: 2})
	h.setClients(map[string]providers.Client{"hw": newClient(config.Huawei, answers(delivered))})
	for _, id := range []string{"a", "b", "c"} {
		h.submit(notification(id, "nobody"))
	}
	if _, ok := h.e.Status("a"); ok {
		t.Error("oldest record kept beyond IdempotencyMax")
	}
	if _, ok := h.e.Status("c"); !ok {
		t.Error("newest record missing")
	}
	h.drain(context.Background())
}

// countingStore counts the users read through it.
type countingStore struct {
	store.Store
	gets atomic.Int32
}

func (c *countingStore) Get(ctx context.Context, user string) (store.User, error) {
	c.gets.Add(1)
	return c.Store.Get(ctx, user)
}

// A notification with more recipients than the queue has room is refused
// before any recipient is read, and one that fits exactly still goes in.
func TestQueueFullRefusedBeforeReadingStore(t *testing.T) {
	h := newHarness(t, Options{QueueSize: 3, QueueWait: -1})
	counting := &countingStore{Store: h.store}
	h.e.store = counting
	release := make(chan struct{})
	hw := newClient(config.Huawei, func(ctx context.Context, _ *providers.Message, _ int) providers.Result {
		<-release
		return delivered
	})
	h.setClients(map[string]providers.Client{"hw": hw})
	for _, u := range []string{"bob", "carol", "dave"} {
		h.bind(u, "phone", "hw", "tok-"+u)
	}

	h.submit(notification("n1", "bob"))
	if _, err := h.e.Submit(notification("n2", "bob", "carol", "dave")); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("3 recipients with room for 2: %v, want ErrQueueFull", err)
	}
	if got := counting.gets.Load(); got != 1 {
		t.Errorf("store read %d times, want 1 (n1 only): the refused notification was read", got)
	}
	if got := h.metric("impush_dispatcher_notifications_dropped_total", map[string]string{"reason": ReasonQueueFull}); got != 3 {
		t.Errorf("QueueFull drops %v, want 3 (one per recipient)", got)
	}
	if _, ok := h.e.Status("n2"); ok {
		t.Error("refused notification recorded")
	}
	// Exactly the room left: accepted.
	if r := h.submit(notification("n3", "carol", "dave")); r.Deliveries != 2 {
		t.Errorf("n3 deliveries %d, want 2", r.Deliveries)
	}
	if got := value(t, h.e.metrics.queueDepth); got != 3 {
		t.Errorf("queue depth %v, want 3", got)
	}
	// Admit is the same first check, for the API before it decodes a body.
	if got := h.e.Room(); got != 0 {
		t.Errorf("Room() = %d on a full queue, want 0", got)
	}
	if err := h.e.Admit("n4", 1); !errors.Is(err, ErrQueueFull) {
		t.Errorf("Admit on a full queue: %v, want ErrQueueFull", err)
	}
	if err := h.e.Admit("n1", 1); err != nil {
		t.Errorf("Admit of the accepted n1: %v, want nil (Submit answers its receipt)", err)
	}
	if got := h.metric("impush_dispatcher_notifications_dropped_total", map[string]string{"reason": ReasonQueueFull}); got != 4 {
		t.Errorf("QueueFull drops %v, want 4 (n2's 3 and Admit's 1)", got)
	}
	close(release)
	h.wait("n1")
	h.wait("n3")
	if got := h.e.Room(); got != 3 {
		t.Errorf("Room() = %d once the queue is empty, want 3", got)
	}
	if err := h.e.Admit("n4", 3); err != nil {
		t.Errorf("Admit of 3 into an empty queue of 3: %v", err)
	}
	h.drain(context.Background())
}

func TestQueueFull(t *testing.T) {
	h := newHarness(t, Options{QueueSize: 2, QueueWait: -1})
	release := make(chan struct{})
	hw := newClient(config.Huawei, func(ctx context.Context, _ *providers.Message, _ int) providers.Result {
		<-release
		return delivered
	})
	h.setClients(map[string]providers.Client{"hw": hw})
	h.bind("bob", "phone", "hw", "tok-1")
	h.bind("bob", "tablet", "hw", "tok-2")
	h.bind("carol", "phone", "hw", "tok-3")

	h.submit(notification("n1", "bob"))
	if _, err := h.e.Submit(notification("n2", "carol")); !errors.Is(err, ErrQueueFull) {
		t.Errorf("Submit on a full queue: %v, want ErrQueueFull", err)
	}
	if _, ok := h.e.Status("n2"); ok {
		t.Error("refused notification recorded")
	}
	if got := h.metric("impush_dispatcher_notifications_dropped_total", map[string]string{"reason": ReasonQueueFull}); got != 1 {
		t.Errorf("QueueFull drops %v", got)
	}
	if got := value(t, h.e.metrics.queueDepth); got != 2 {
		t.Errorf("queue depth %v", got)
	}
	close(release)
	h.wait("n1")
	h.submit(notification("n2", "carol"))
	h.wait("n2")
	h.drain(context.Background())
}

// A notification that finds the queue full waits for room (QueueWait)
// instead of being refused: it goes in once a delivery ends, it is refused
// when no room comes in time, and Drain sends the waiting ones away.
func TestQueueFullWaitsForRoom(t *testing.T) {
	setup := func(t *testing.T, wait time.Duration) (*harness, chan struct{}) {
		h := newHarness(t, Options{QueueSize: 1, QueueWait: wait})
		release := make(chan struct{})
		hw := newClient(config.Huawei, func(ctx context.Context, _ *providers.Message, _ int) providers.Result {
			select {
			case <-release:
				return delivered
			case <-ctx.Done():
				return retry
			}
		})
		h.setClients(map[string]providers.Client{"hw": hw})
		for _, u := range []string{"bob", "carol"} {
			h.bind(u, "phone", "hw", "tok-"+u)
		}
		h.submit(notification("n1", "bob"))
		return h, release
	}
	type result struct {
		r   Receipt
		err error
	}
	submitting := func(t *testing.T, h *harness, n *policy.Notification) chan result {
		done := make(chan result, 1)
		go func() {
			r, err := h.e.Submit(n)
			done <- result{r, err}
		}()
		// Until it waits: no sleep, the engine's own count says when.
		for h.e.roomWaiters.Load() != 1 {
			select {
			case res := <-done:
				t.Fatalf("Submit on a full queue returned without waiting for room: %+v", res)
			default:
				runtime.Gosched()
			}
		}
		return done
	}
	queueFullDrops := func(h *harness) float64 {
		return h.metric("impush_dispatcher_notifications_dropped_total", map[string]string{"reason": ReasonQueueFull})
	}

	t.Run("room comes", func(t *testing.T) {
		h, release := setup(t, time.Hour)
		done := submitting(t, h, notification("n2", "carol"))
		close(release)
		res := <-done
		if res.err != nil || res.r.Deliveries != 1 {
			t.Fatalf("Submit after room came: %+v, want 1 delivery", res)
		}
		h.wait("n2")
		if got := queueFullDrops(h); got != 0 {
			t.Errorf("QueueFull drops %v, want 0: the notification was accepted", got)
		}
		h.drain(context.Background())
	})
	t.Run("no room in time", func(t *testing.T) {
		h, release := setup(t, 20*time.Millisecond)
		// Admit waits as Submit does (the API asks it before decoding).
		if err := h.e.Admit("n2", 1); !errors.Is(err, ErrQueueFull) {
			t.Fatalf("Admit with no room in time: %v, want ErrQueueFull", err)
		}
		if got := queueFullDrops(h); got != 1 {
			t.Errorf("QueueFull drops %v, want 1: refused once, however long it waited", got)
		}
		// More recipients than the queue holds: refused without waiting.
		h.e.opts.QueueWait = time.Hour
		if _, err := h.e.Submit(notification("n3", "bob", "carol")); !errors.Is(err, ErrQueueFull) {
			t.Fatalf("Submit of more recipients than the queue holds: %v, want ErrQueueFull", err)
		}
		close(release)
		h.drain(context.Background())
	})
	t.Run("drain", func(t *testing.T) {
		h, _ := setup(t, time.Hour)
		done := submitting(t, h, notification("n2", "carol"))
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		h.drain(ctx)
		if res := <-done; !errors.Is(res.err, ErrDraining) {
			t.Fatalf("a notification waiting for room at drain: %+v, want ErrDraining", res)
		}
	})
}

func TestSetConfigSwapUsesNewClientForNextAttempt(t *testing.T) {
	h := newHarness(t, Options{})
	started, release := make(chan struct{}), make(chan struct{})
	old := newClient(config.Huawei, func(context.Context, *providers.Message, int) providers.Result {
		close(started)
		<-release
		return retry
	})
	rotated := newClient(config.Huawei, answers(delivered))
	h.setClients(map[string]providers.Client{"hw": old})
	h.bind("bob", "phone", "hw", "tok")

	h.submit(notification("n1", "bob"))
	<-started
	h.cfg.Certificates[0].Fingerprint = "rotated"
	h.setClients(map[string]providers.Client{"hw": rotated})
	close(release)
	h.advanceToTimer(t0.Add(time.Hour))
	wantOutcome(t, outcome(t, h.wait("n1"), "phone"), Delivered, "", "hw", 2)
	if old.calls() != 1 || rotated.calls() != 1 {
		t.Errorf("old client %d calls, new %d; want 1 and 1", old.calls(), rotated.calls())
	}
	h.drain(context.Background())
}

func TestCertificateRemovedFallsBack(t *testing.T) {
	h := newHarness(t, Options{})
	started, release := make(chan struct{}), make(chan struct{})
	hw := newClient(config.Huawei, func(context.Context, *providers.Message, int) providers.Result {
		close(started)
		<-release
		return retry
	})
	fcm := newClient(config.FCM, answers(delivered))
	h.setClients(map[string]providers.Client{"hw": hw, "fcm": fcm})
	h.bind("bob", "phone", "hw", "tok-hw")
	h.bind("bob", "phone", "fcm", "tok-fcm")

	h.submit(notification("n1", "bob"))
	<-started
	h.setClients(map[string]providers.Client{"fcm": fcm})
	close(release)
	h.advanceToTimer(t0.Add(time.Hour))
	wantOutcome(t, outcome(t, h.wait("n1"), "phone"), Delivered, "", "fcm", 2)
	if got := h.metric("impush_dispatcher_binding_failures_total", map[string]string{"reason": ReasonCertificateRemoved}); got != 1 {
		t.Errorf("CertificateRemoved failures %v", got)
	}
	h.drain(context.Background())
}

func TestNotReady(t *testing.T) {
	h := newHarness(t, Options{})
	if _, err := h.e.Submit(notification("n1", "bob")); !errors.Is(err, ErrNotReady) {
		t.Errorf("Submit without config: %v", err)
	}
	if h.e.Ready() {
		t.Error("Ready without config")
	}
	if _, err := h.e.Submit(&policy.Notification{}); !errors.Is(err, ErrInvalidNotification) {
		t.Errorf("Submit without id: %v", err)
	}
	if _, err := h.e.Wait(context.Background(), "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Wait for unknown id: %v", err)
	}
	h.drain(context.Background())
}

func TestDrainFinishesRetriesAndDropsNothing(t *testing.T) {
	h := newHarness(t, Options{})
	hw := newClient(config.Huawei, answers(retry, delivered))
	h.setClients(map[string]providers.Client{"hw": hw})
	h.bind("bob", "phone", "hw", "tok")
	h.bind("carol", "phone", "hw", "tok2")

	h.submit(notification("n1", "bob", "carol"))
	at := h.clock.waitTimer(t, t0.Add(time.Hour))

	var wg sync.WaitGroup
	dropped := -1
	wg.Add(1)
	go func() {
		defer wg.Done()
		dropped = h.e.Drain(context.Background())
	}()
	// Drain waits for the retry, which the clock releases only once Drain
	// has started (the engine stops being ready); released earlier, the
	// retry could finish before Drain and a Drain that does not wait would
	// pass.
	for deadline := time.Now().Add(10 * time.Second); h.e.Ready(); runtime.Gosched() {
		if time.Now().After(deadline) {
			t.Fatal("Drain did not start")
		}
	}
	h.clock.Advance(at.Sub(h.clock.Now()))
	wg.Wait()
	if dropped != 0 {
		t.Errorf("dropped %d with healthy clients", dropped)
	}
	st, _ := h.e.Status("n1")
	for _, o := range st.Outcomes {
		wantOutcome(t, o, Delivered, "", "hw", o.Attempts)
	}
	h.drain(context.Background())
}

func TestDrainCountsStalledAsDropped(t *testing.T) {
	h := newHarness(t, Options{ProviderWorkers: map[config.Provider]int{config.Huawei: 1}})
	started := make(chan struct{}, 10)
	hw := newClient(config.Huawei, func(ctx context.Context, _ *providers.Message, _ int) providers.Result {
		started <- struct{}{}
		<-ctx.Done()
		return providers.TransportResult(ctx.Err())
	})
	fcm := newClient(config.FCM, answers(providers.Result{Outcome: providers.Retry, RetryAfter: 30 * time.Minute}))
	h.setClients(map[string]providers.Client{"hw": hw, "fcm": fcm})
	for _, u := range []string{"a", "b", "c"} {
		h.bind(u, "phone", "hw", "tok-"+u)
	}
	h.bind("d", "phone", "fcm", "tok-d")

	h.submit(notification("n1", "a", "b", "c", "d"))
	<-started                               // one hw call in flight, two queued behind it
	h.clock.waitTimer(t, t0.Add(time.Hour)) // d waits to retry

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	e := h.e
	if dropped := h.drain(ctx); dropped != 4 {
		t.Errorf("dropped %d, want 4", dropped)
	}
	st, _ := e.Status("n1")
	for _, o := range st.Outcomes {
		if o.State != Dropped || o.Reason != ReasonShutdown {
			t.Errorf("outcome %+v, want dropped at shutdown", o)
		}
	}
	if got := value(t, e.metrics.dropped.WithLabelValues(ReasonShutdown)); got != 4 {
		t.Errorf("Shutdown drops metric %v", got)
	}
	if _, err := e.Submit(notification("n2", "a")); !errors.Is(err, ErrDraining) {
		t.Errorf("Submit after Drain: %v", err)
	}
}

// limitedClient reports an HTTP/2 stream limit, as the APNs and FCM clients do.
type limitedClient struct {
	*client
	streams int
}

func (c limitedClient) MaxConcurrentStreams() int { return c.streams }

// togetherSends answers notification "first" at once and every other send
// only when n of them are in flight together: with fewer workers they never
// are, and those sends end only with their call timeout.
func togetherSends(n int32) func(context.Context, *providers.Message, int) providers.Result {
	var inFlight atomic.Int32
	all := make(chan struct{})
	var once sync.Once
	return func(ctx context.Context, m *providers.Message, _ int) providers.Result {
		if m.ID == "first" {
			return delivered
		}
		if inFlight.Add(1) == n {
			once.Do(func() { close(all) })
		}
		select {
		case <-all:
			return delivered
		case <-ctx.Done():
			return providers.TransportResult(ctx.Err())
		}
	}
}

// A provider's workers grow from DefaultWorkers to its clients' stream limit,
// capped at MaxWorkers, and that many sends are then in flight at once.
func TestWorkersSizedFromStreamLimit(t *testing.T) {
	const maxWorkers = DefaultWorkers + 36
	h := newHarness(t, Options{MaxWorkers: maxWorkers, QueueSize: 1000})
	hw := limitedClient{streams: 250, client: newClient(config.Huawei, togetherSends(maxWorkers))}
	h.setClients(map[string]providers.Client{"hw": hw})
	if got := h.metric("impush_dispatcher_provider_workers", map[string]string{"provider": "Huawei"}); got != DefaultWorkers {
		t.Fatalf("workers before any send %v, want %d", got, DefaultWorkers)
	}
	h.bind("first", "phone", "hw", "tok-first")
	h.submit(notification("first", "first"))
	h.wait("first")
	// The worker resizes its pool after the attempt it settled, so the
	// gauge may lag the outcome by a moment: poll it, yielding, not sleeping.
	deadline := time.Now().Add(10 * time.Second)
	for h.metric("impush_dispatcher_provider_workers", map[string]string{"provider": "Huawei"}) != maxWorkers && time.Now().Before(deadline) {
		runtime.Gosched()
	}
	if got := h.metric("impush_dispatcher_provider_workers", map[string]string{"provider": "Huawei"}); got != maxWorkers {
		t.Fatalf("workers after a send %v, want %d (250 streams capped)", got, maxWorkers)
	}
	if got := h.metric("impush_dispatcher_provider_max_workers", map[string]string{"provider": "Huawei"}); got != maxWorkers {
		t.Fatalf("max workers after a send %v, want %d (250 streams capped)", got, maxWorkers)
	}
	var ids []string
	for i := range maxWorkers {
		u := fmt.Sprintf("u%03d", i)
		h.bind(u, "phone", "hw", "tok-"+u)
		id := "n-" + u
		n := notification(id, u)
		n.ID = id
		h.submit(n)
		ids = append(ids, id)
	}
	// Every send waits until all maxWorkers are in flight together: with
	// fewer workers this never happens and the waits below time out.
	for _, id := range ids {
		st := h.wait(id)
		if st.Outcomes[0].State != Delivered {
			t.Fatalf("%s: %+v", id, st.Outcomes[0])
		}
	}
	h.drain(context.Background())
}

// Answers slower than twice the fastest one, while sends wait for a
// worker, lower the workers below the stream limit but not below the floor:
// the sends are queueing, and more at once would only hold more memory. The
// cap stays the stream limit.
func TestWorkersFollowRoundTrips(t *testing.T) {
	// Above the floor. The slow sends are all held until every job is
	// queued, so the first round (as many answers as the limit) ends with
	// jobs still waiting: backlog of them are left after it.
	const (
		streams = DefaultMinWorkers + 144
		backlog = 150
		jobs    = 2*streams + backlog
	)
	h := newHarness(t, Options{})
	var slow atomic.Bool
	release, release1 := heldSends(t)
	var mu sync.Mutex
	var seen []int32 // the pool's target at answers that found jobs waiting
	hw := limitedClient{streams: streams, client: newClient(config.Huawei, func(context.Context, *providers.Message, int) providers.Result {
		if slow.Load() {
			<-release
			h.clock.Advance(10 * time.Millisecond)
			if p := h.e.pools[config.Huawei]; len(p.jobs) > 0 {
				mu.Lock()
				seen = append(seen, p.target.Load())
				mu.Unlock()
			}
		}
		return delivered
	})}
	h.setClients(map[string]providers.Client{"hw": hw})
	h.bind("first", "phone", "hw", "tok-first")
	h.submit(notification("first", "first"))
	h.wait("first")
	workers := map[string]string{"provider": "Huawei"}
	deadline := time.Now().Add(10 * time.Second)
	for h.metric("impush_dispatcher_provider_workers", workers) != streams && time.Now().Before(deadline) {
		runtime.Gosched()
	}
	if got := h.metric("impush_dispatcher_provider_workers", workers); got != streams {
		t.Fatalf("workers after the first answer %v, want the stream limit %d", got, streams)
	}
	slow.Store(true)
	for i := range jobs {
		u := fmt.Sprintf("u%03d", i)
		h.bind(u, "phone", "hw", "tok-"+u)
		h.submit(notification("n-"+u, u))
	}
	release1()
	for i := range jobs {
		if st := h.wait(fmt.Sprintf("n-u%03d", i)); st.Outcomes[0].State != Delivered {
			t.Fatalf("n-u%03d: %+v", i, st.Outcomes[0])
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) == 0 || slices.Min(seen) >= streams || slices.Min(seen) < DefaultMinWorkers {
		t.Errorf("workers at answers with jobs waiting: lowest %v of %d, want fewer than %d and at least the floor %d", lowest(seen), len(seen), streams, DefaultMinWorkers)
	}
	if got := h.metric("impush_dispatcher_provider_max_workers", workers); got != streams {
		t.Errorf("max workers %v, want the stream limit %d", got, streams)
	}
	h.drain(context.Background())
}

// heldSends returns a channel that held sends wait on and the function that
// closes it, once. It is also a cleanup, registered after the harness's and
// so run before its drain: a failing test does not leave sends hanging.
func heldSends(t *testing.T) (<-chan struct{}, func()) {
	release := make(chan struct{})
	var once sync.Once
	open := func() { once.Do(func() { close(release) }) }
	t.Cleanup(open)
	return release, open
}

func lowest(v []int32) any {
	if len(v) == 0 {
		return "none"
	}
	return slices.Min(v)
}

// A pool whose sends come one at a time keeps few workers, below the floor:
// its limit follows the sends in flight. A burst whose sends wait brings it
// back to the floor before any of them is answered.
func TestWorkersFollowUseAndComeBackWithABacklog(t *testing.T) {
	// A cap just above the floor: a round is as many answers as the limit.
	const streams = DefaultMinWorkers + 10
	h := newHarness(t, Options{QueueSize: 1000})
	workers := map[string]string{"provider": "Huawei"}
	var held atomic.Bool
	release, release1 := heldSends(t)
	hw := limitedClient{streams: streams, client: newClient(config.Huawei, func(context.Context, *providers.Message, int) providers.Result {
		if held.Load() {
			<-release
		}
		// Rounds last minRoundTime of the engine's clock.
		h.clock.Advance(20 * time.Millisecond)
		return delivered
	})}
	h.setClients(map[string]providers.Client{"hw": hw})
	// One at a time: a round as long as the limit (the cap, at first),
	// then rounds of IdleWorkers answers, each with one send in flight.
	// Workers beyond the limit leave after a job, so as many sends again
	// let them all go.
	for i := range 2 * streams {
		u := fmt.Sprintf("q%03d", i)
		h.bind(u, "phone", "hw", "tok-"+u)
		h.submit(notification("n-"+u, u))
		h.wait("n-" + u)
	}
	p := h.e.pools[config.Huawei]
	deadline := time.Now().Add(10 * time.Second)
	for p.running.Load() != IdleWorkers && time.Now().Before(deadline) {
		runtime.Gosched()
	}
	if got, running := h.metric("impush_dispatcher_provider_workers", workers), p.running.Load(); got != IdleWorkers || running != IdleWorkers {
		t.Fatalf("workers after sends one at a time %v (%d running), want %d", got, running, IdleWorkers)
	}
	held.Store(true)
	const burst = DefaultMinWorkers + 10
	for i := range burst {
		u := fmt.Sprintf("b%03d", i)
		h.bind(u, "phone", "hw", "tok-"+u)
		h.submit(notification("n-"+u, u))
	}
	// No send has been answered; the queued ones must have raised the
	// limit. Poll, yielding: workers start as jobs queue.
	deadline = time.Now().Add(10 * time.Second)
	for h.metric("impush_dispatcher_provider_workers", workers) < DefaultMinWorkers && time.Now().Before(deadline) {
		runtime.Gosched()
	}
	if got := h.metric("impush_dispatcher_provider_workers", workers); got != DefaultMinWorkers {
		t.Fatalf("workers with %d sends waiting and none answered %v, want the floor %d", burst, got, DefaultMinWorkers)
	}
	release1()
	for i := range burst {
		if st := h.wait(fmt.Sprintf("n-b%03d", i)); st.Outcomes[0].State != Delivered {
			t.Fatalf("n-b%03d: %+v", i, st.Outcomes[0])
		}
	}
	h.drain(context.Background())
}

// A fixed Workers is never resized.
func TestFixedWorkersNotResized(t *testing.T) {
	h := newHarness(t, Options{Workers: 3})
	hw := limitedClient{streams: 500, client: newClient(config.Huawei, answers(delivered))}
	h.setClients(map[string]providers.Client{"hw": hw})
	h.bind("bob", "phone", "hw", "tok")
	h.submit(notification("n1", "bob"))
	h.wait("n1")
	if got := h.metric("impush_dispatcher_provider_workers", map[string]string{"provider": "Huawei"}); got != 3 {
		t.Errorf("workers %v, want 3", got)
	}
	h.drain(context.Background())
}

// Workers idle for IdleWorkerTimeout leave, down to IdleWorkers, and come
// back as jobs queue: after the pool shrank, a burst again gets every worker
// of the target in flight at once.
func TestIdleWorkersLeaveAndComeBack(t *testing.T) {
	const maxWorkers = DefaultWorkers + 16
	h := newHarness(t, Options{MaxWorkers: maxWorkers, QueueSize: 1000, IdleWorkerTimeout: 20 * time.Millisecond})
	hw := limitedClient{streams: 250, client: newClient(config.Huawei, togetherSends(maxWorkers))}
	h.setClients(map[string]providers.Client{"hw": hw})
	h.bind("first", "phone", "hw", "tok-first")
	h.submit(notification("first", "first"))
	h.wait("first")
	pool := func() *pool {
		h.e.mu.Lock()
		defer h.e.mu.Unlock()
		return h.e.pools[config.Huawei]
	}()
	// Poll, yielding, not sleeping: the idle timers run on real time.
	deadline := time.Now().Add(10 * time.Second)
	for (pool.target.Load() != maxWorkers || pool.running.Load() != IdleWorkers) && time.Now().Before(deadline) {
		runtime.Gosched()
	}
	if r, tg := pool.running.Load(), pool.target.Load(); r != IdleWorkers || tg != maxWorkers {
		t.Fatalf("after idling: %d workers running for a target of %d, want %d for %d", r, tg, IdleWorkers, maxWorkers)
	}
	var ids []string
	for i := range maxWorkers {
		u := fmt.Sprintf("u%03d", i)
		h.bind(u, "phone", "hw", "tok-"+u)
		id := "n-" + u
		h.submit(notification(id, u))
		ids = append(ids, id)
	}
	// Every send waits until all maxWorkers are in flight together: if the
	// pool did not grow back, this never happens and the waits time out.
	for _, id := range ids {
		if st := h.wait(id); st.Outcomes[0].State != Delivered {
			t.Fatalf("%s: %+v", id, st.Outcomes[0])
		}
	}
	h.drain(context.Background())
}
