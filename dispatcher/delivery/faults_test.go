package delivery

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.uber.org/goleak"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/imcloud/im-push-operator/dispatcher/config"
	"github.com/imcloud/im-push-operator/dispatcher/providers/fake"
)

// faultN is how many notifications each fault test submits.
const faultN = 30

// submitEach binds one device per user to cert with a token for p, submits
// one notification per user and returns the tokens by notification id.
func (h *harness) submitEach(p config.Provider, cert, prefix string, n int) map[string]string {
	h.t.Helper()
	tokens := map[string]string{}
	for i := range n {
		user := fmt.Sprintf("%s-%03d", prefix, i)
		tok := fakeToken(p, user)
		h.bind(user, "phone", cert, tok)
		tokens[user] = tok
	}
	for user := range tokens {
		h.submit(notification("n-"+user, user))
	}
	return tokens
}

// outcomes waits for every notification of tokens and counts their device
// outcomes by state and reason.
func (h *harness) outcomes(tokens map[string]string) map[string]int {
	h.t.Helper()
	got := map[string]int{}
	for user := range tokens {
		o := outcome(h.t, h.wait("n-"+user), "phone")
		got[string(o.State)+"/"+o.Reason]++
	}
	return got
}

// accounted reads the engine's counters: accepted notifications and device
// deliveries, and the final outcomes.
type accounted struct {
	notifications, deliveries, delivered, failed, dropped, retries float64
}

func (h *harness) accounted() accounted {
	h.t.Helper()
	out := func(s State) float64 {
		return h.metric("impush_dispatcher_deliveries_total", map[string]string{"outcome": string(s)})
	}
	return accounted{
		notifications: h.metric("impush_dispatcher_notifications_accepted_total", nil),
		deliveries:    h.metric("impush_dispatcher_deliveries_accepted_total", nil),
		delivered:     out(Delivered),
		failed:        out(Failed),
		dropped:       out(Dropped),
		retries:       h.metric("impush_dispatcher_retries_total", nil),
	}
}

func (a accounted) String() string {
	return fmt.Sprintf("%v accepted: %v delivered, %v failed, %v dropped; %v retries", a.deliveries, a.delivered, a.failed, a.dropped, a.retries)
}

// succeeded counts the tokens the fake answered with success at least once.
func succeeded(s *fake.State, tokens map[string]string) int {
	ok := map[string]bool{}
	for _, r := range s.Received() {
		if r.Answered == "" {
			ok[r.Token] = true
		}
	}
	n := 0
	for _, tok := range tokens {
		if ok[tok] {
			n++
		}
	}
	return n
}

// TestProviderFaultsAreAccounted sends through the real clients to the real
// fakes of APNs, FCM, Huawei and Xiaomi while each fails in one way: 429
// with Retry-After, bare 500 and 503, a call timeout, an aborted stream, a
// reset connection and a GOAWAY mid-stream. A fault that lasts one answer
// per token ends with every notification delivered and received at the
// fake; a fault that lasts ends with every one failed after maxAttempts; a
// Retry-After beyond the TTL fails it as expired. Either way the counters
// add up: accepted = delivered + failed + dropped.
func TestProviderFaultsAreAccounted(t *testing.T) {
	faults := []struct {
		name        string
		answer      fake.Answer
		callTimeout time.Duration
		// endsConn: the fault ends the connection, so other sends on it
		// fail too and retries can exceed one per faulty token.
		endsConn bool
		// slow: a send slowed by the machine's load may time out too.
		slow bool
	}{
		{name: "429 Retry-After", answer: fake.Answer{Code: "status:429", RetryAfter: 2 * time.Second}},
		{name: "500", answer: fake.Answer{Code: "status:500"}},
		{name: "503", answer: fake.Answer{Code: "status:503"}},
		{name: "timeout", answer: fake.Answer{Delay: time.Minute}, callTimeout: time.Second, slow: true},
		{name: "stream reset", answer: fake.Answer{Code: "reset"}},
		{name: "connection reset", answer: fake.Answer{Code: fake.ConnReset}, endsConn: true},
		{name: "GOAWAY", answer: fake.Answer{Code: fake.GoAway}, endsConn: true},
	}
	for _, p := range []config.Provider{config.APNs, config.FCM, config.Huawei, config.Xiaomi} {
		f := startFakes(t, p)
		state, cert := f.servers[p].State, f.certs[p].Name
		for _, fl := range faults {
			t.Run(fmt.Sprintf("%s/%s/recovers", p, fl.name), func(t *testing.T) {
				h := newFakesHarness(t, Options{CallTimeout: fl.callTimeout}, f)
				h.autoAdvance()
				a := fl.answer
				a.Times = 1
				// A fault that ends the connection fails every send in
				// flight on it, so each one costs every device up to an
				// attempt: two of them fit in maxAttempts (3).
				faulty := faultN
				if fl.endsConn {
					faulty = 2
				}
				tokens := map[string]string{}
				for i := range faultN {
					user := fmt.Sprintf("rec-%s-%03d", fl.name, i)
					tokens[user] = fakeToken(p, user)
					if i%(faultN/faulty) == 0 {
						state.Script(tokens[user], a)
					}
				}
				h.submitEach(p, cert, "rec-"+fl.name, faultN)
				if got := h.outcomes(tokens); got["delivered/"] != faultN {
					t.Errorf("outcomes %v, want all %d delivered", got, faultN)
				}
				if n := succeeded(state, tokens); n != faultN {
					t.Errorf("the fake accepted %d of %d tokens", n, faultN)
				}
				// Drained, the engine is idle: every outcome is counted.
				h.drain(context.Background())
				acc := h.accounted()
				t.Log(acc)
				if acc.notifications != faultN || acc.deliveries != faultN || acc.delivered != faultN {
					t.Errorf("%v, want %d notifications all delivered", acc, faultN)
				}
				// Every provider's retries are the engine's (the FCM SDK's
				// own retry loop is off), so each shows in the count.
				exact := !fl.endsConn && !fl.slow
				switch {
				case exact && acc.retries != float64(faulty):
					t.Errorf("%v retries, want one per faulty token (%d)", acc.retries, faulty)
				case acc.retries < float64(faulty):
					t.Errorf("%v retries, want at least one per faulty token (%d)", acc.retries, faulty)
				}
			})
			t.Run(fmt.Sprintf("%s/%s/lasts", p, fl.name), func(t *testing.T) {
				h := newFakesHarness(t, Options{CallTimeout: fl.callTimeout}, f)
				h.autoAdvance()
				for i := range faultN {
					state.Script(fakeToken(p, fmt.Sprintf("perm-%s-%03d", fl.name, i)), fl.answer)
				}
				tokens := h.submitEach(p, cert, "perm-"+fl.name, faultN)
				if got := h.outcomes(tokens); got["failed/"+ReasonMaxAttempts] != faultN {
					t.Errorf("outcomes %v, want all %d failed with %s", got, faultN, ReasonMaxAttempts)
				}
				h.drain(context.Background())
				acc := h.accounted()
				t.Log(acc)
				// Every send fails, so each device makes exactly maxAttempts (3).
				if acc.notifications != faultN || acc.deliveries != faultN || acc.failed != faultN || acc.retries != 2*faultN {
					t.Errorf("%v, want %d failed after %d retries", acc, faultN, 2*faultN)
				}
			})
		}
		t.Run(fmt.Sprintf("%s/Retry-After beyond the TTL", p), func(t *testing.T) {
			h := newFakesHarness(t, Options{}, f)
			h.cfg.Policy.TTL = metav1.Duration{Duration: 30 * time.Second}
			h.useFakes(f)
			h.autoAdvance()
			for i := range faultN {
				// 429, not 503: the FCM SDK would wait out a 503's
				// Retry-After inside the call.
				state.Script(fakeToken(p, fmt.Sprintf("ttl-%03d", i)), fake.Answer{Code: "status:429", RetryAfter: time.Minute})
			}
			tokens := h.submitEach(p, cert, "ttl", faultN)
			if got := h.outcomes(tokens); got["failed/"+ReasonExpired] != faultN {
				t.Errorf("outcomes %v, want all %d failed with %s", got, faultN, ReasonExpired)
			}
			h.drain(context.Background())
			acc := h.accounted()
			t.Log(acc)
			if acc.deliveries != faultN || acc.failed != faultN || acc.retries != 0 {
				t.Errorf("%v, want %d failed without a retry", acc, faultN)
			}
		})
	}
}

// TestRetryAfterHonouredThroughFakes checks, on the engine's clock, that a
// 429's Retry-After from the real fakes schedules the next attempt exactly
// that far ahead (backoff alone would be at most 10s; FCM's client waits at
// least a minute after a 429), and that nothing is sent again before.
func TestRetryAfterHonouredThroughFakes(t *testing.T) {
	for _, p := range []config.Provider{config.APNs, config.FCM, config.Huawei, config.Xiaomi} {
		t.Run(string(p), func(t *testing.T) {
			f := startFakes(t, p)
			state, cert := f.servers[p].State, f.certs[p].Name
			h := newFakesHarness(t, Options{}, f)
			for i := range faultN {
				state.Script(fakeToken(p, fmt.Sprintf("ra-%03d", i)), fake.Answer{Code: "status:429", RetryAfter: 90 * time.Second, Times: 1})
			}
			start := h.clock.Now()
			tokens := h.submitEach(p, cert, "ra", faultN)
			h.waitParked(faultN)
			h.e.heapMu.Lock()
			for _, d := range h.e.delays {
				if !d.due.Equal(start.Add(90 * time.Second)) {
					t.Errorf("retry due at start+%v, want start+90s", d.due.Sub(start))
				}
			}
			h.e.heapMu.Unlock()
			if n := state.Count(); n != faultN {
				t.Errorf("%d sends at the fake before Retry-After passed, want %d", n, faultN)
			}
			// Moves the clock to the retries (and on, should anything wait).
			h.autoAdvance()
			if got := h.outcomes(tokens); got["delivered/"] != faultN {
				t.Errorf("outcomes %v, want all delivered", got)
			}
			h.drain(context.Background())
			if acc := h.accounted(); acc.delivered != faultN || acc.retries != faultN {
				t.Errorf("%v, want %d delivered after one retry each", acc, faultN)
			}
		})
	}
}

// TestErrorClassesThroughFakes answers each provider's own codes from its
// fake and checks what the engine does through the real client: an invalid
// token is removed from the store, a transient answer is retried and
// delivered, wrong credentials fail the binding and keep the token, a bad
// message fails without a retry, and a daily quota pauses the credential
// (impush_dispatcher_credential_paused) until the vendor's reset, after
// which the message goes out.
func TestErrorClassesThroughFakes(t *testing.T) {
	all := []config.Provider{config.APNs, config.FCM, config.Huawei, config.Honor, config.Xiaomi, config.OPPO, config.Vivo, config.Meizu}
	f := startFakes(t, all...)
	// Codes from providers.md, one per class; "" where the provider has no
	// such class.
	codes := map[config.Provider][5]string{
		//               drop token      retry          credentials               bad message        quota
		config.APNs:   {"Unregistered", "ServiceUnavailable", "InvalidProviderToken", "BadExpirationDate", ""},
		config.FCM:    {"UNREGISTERED", "QUOTA_EXCEEDED", "THIRD_PARTY_AUTH_ERROR", "INVALID_PAYLOAD", ""},
		config.Huawei: {"80300007", "81000001", "80600003", "80100003", ""},
		config.Honor:  {"expireToken", "81000001", "80600003", "80100003", ""},
		config.Xiaomi: {"20301", "10027", "21301", "10016", "10034"},
		config.OPPO:   {"10000", "-2", "14", "40", "33"},
		config.Vivo:   {"10302", "10072", "10200", "10096", "10070"},
		config.Meizu:  {"110003", "1003", "110000", "110053", "110019"},
	}
	for _, p := range all {
		state, cert := f.servers[p].State, f.certs[p].Name
		c := codes[p]
		token := func(class string) string { return fakeToken(p, class) }
		send := func(t *testing.T, h *harness, class, code string) DeviceOutcome {
			t.Helper()
			state.Script(token(class), fake.Answer{Code: code, Times: 1})
			h.bind(class, "phone", cert, token(class))
			h.submit(notification("n-"+class, class))
			return outcome(t, h.wait("n-"+class), "phone")
		}
		t.Run(string(p)+"/drop token", func(t *testing.T) {
			h := newFakesHarness(t, Options{}, f)
			wantOutcome(t, send(t, h, "drop", c[0]), Failed, ReasonTokenInvalid, cert, 1)
			if hasBinding(t, h.store, "drop", "phone", cert) {
				t.Error("invalid token still stored")
			}
			if got := h.metric("impush_dispatcher_tokens_removed_total", map[string]string{"certificate": cert}); got != 1 {
				t.Errorf("tokens removed %v", got)
			}
			h.drain(context.Background())
		})
		t.Run(string(p)+"/retry", func(t *testing.T) {
			h := newFakesHarness(t, Options{}, f)
			h.autoAdvance()
			wantOutcome(t, send(t, h, "retry", c[1]), Delivered, "", cert, 2)
			if got := h.metric("impush_dispatcher_retries_total", map[string]string{"certificate": cert}); got != 1 {
				t.Errorf("retries %v", got)
			}
			h.drain(context.Background())
		})
		t.Run(string(p)+"/bad credentials", func(t *testing.T) {
			h := newFakesHarness(t, Options{}, f)
			o := send(t, h, "creds", c[2])
			if o.State != Failed || o.Reason != ReasonBadCredentials {
				t.Errorf("outcome %+v, want failed with %s", o, ReasonBadCredentials)
			}
			if !hasBinding(t, h.store, "creds", "phone", cert) {
				t.Error("a credentials answer removed the token")
			}
			if got := h.metric("impush_dispatcher_binding_failures_total", map[string]string{"certificate": cert, "reason": ReasonBadCredentials}); got != 1 {
				t.Errorf("BadCredentials failures %v", got)
			}
			h.drain(context.Background())
		})
		t.Run(string(p)+"/bad message", func(t *testing.T) {
			h := newFakesHarness(t, Options{}, f)
			wantOutcome(t, send(t, h, "msg", c[3]), Failed, ReasonBadMessage, cert, 1)
			if !hasBinding(t, h.store, "msg", "phone", cert) {
				t.Error("a bad-message answer removed the token")
			}
			h.drain(context.Background())
		})
		if c[4] == "" {
			continue
		}
		t.Run(string(p)+"/quota", func(t *testing.T) {
			h := newFakesHarness(t, Options{}, f)
			// Long enough to wait for the vendor's reset at Beijing midnight.
			h.cfg.Policy.TTL = metav1.Duration{Duration: 48 * time.Hour}
			h.useFakes(f)
			state.Script(token("quota"), fake.Answer{Code: c[4], Times: 1})
			h.bind("quota", "phone", cert, token("quota"))
			h.submit(notification("n-quota", "quota"))
			// The job and the check that ends the pause.
			h.waitParked(2)
			if got := h.metric("impush_dispatcher_credential_paused", map[string]string{"certificate": cert}); got != 1 {
				t.Errorf("paused gauge %v", got)
			}
			beijing := h.clock.Now().In(time.FixedZone("UTC+8", 8*3600))
			midnight := time.Date(beijing.Year(), beijing.Month(), beijing.Day()+1, 0, 0, 0, 0, beijing.Location())
			if at := h.advanceToTimer(midnight.Add(time.Minute)); !at.Equal(midnight) {
				t.Errorf("resumed at %v, want Beijing midnight %v", at, midnight)
			}
			// The quota answer is not an attempt.
			wantOutcome(t, outcome(t, h.wait("n-quota"), "phone"), Delivered, "", cert, 1)
			if got := h.metric("impush_dispatcher_credential_paused", map[string]string{"certificate": cert}); got != 0 {
				t.Errorf("paused gauge %v after the reset", got)
			}
			h.drain(context.Background())
		})
	}
}

// TestDrainThroughFakesLeavesNothingBehind drains an engine sending through
// the real clients: with healthy fakes under load nothing is dropped and
// every device is delivered; with a stalled fake the drain deadline drops
// what is left, counted with reason Shutdown. Afterwards no goroutine of the
// engine or the clients is left and the fakes see every connection closed.
func TestDrainThroughFakesLeavesNothingBehind(t *testing.T) {
	t.Run("healthy", func(t *testing.T) {
		baseline := goleak.IgnoreCurrent()
		f := startFakes(t, config.APNs, config.Huawei)
		h := newFakesHarness(t, Options{}, f)
		for _, p := range []config.Provider{config.APNs, config.Huawei} {
			for i := range faultN {
				user := fmt.Sprintf("%s-%03d", p, i)
				h.bind(user, "phone", f.certs[p].Name, fakeToken(p, user))
			}
		}
		// Submissions race the drain: each is either accepted and then
		// delivered, or refused with ErrDraining.
		first, accepted := make(chan struct{}), make(chan int, 1)
		go func() {
			n := 0
			for i := range faultN {
				for _, p := range []config.Provider{config.APNs, config.Huawei} {
					user := fmt.Sprintf("%s-%03d", p, i)
					if _, err := h.e.Submit(notification("n-"+user, user)); err == nil {
						if n++; n == 1 {
							close(first)
						}
					}
				}
			}
			accepted <- n
		}()
		<-first
		e := h.e
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		dropped := h.drain(ctx)
		n := <-accepted
		if dropped != 0 {
			t.Errorf("dropped %d with healthy providers", dropped)
		}
		if got := value(t, e.metrics.deliveriesAccepted); got != float64(n) {
			t.Errorf("%v deliveries accepted, %d submissions accepted", got, n)
		}
		delivered := 0.0
		for _, p := range []config.Provider{config.APNs, config.Huawei} {
			delivered += float64(f.servers[p].State.Count())
		}
		if delivered != float64(n) {
			t.Errorf("the fakes received %v sends for %d accepted", delivered, n)
		}
		t.Logf("%d accepted before the drain closed, %v received at the fakes, %d dropped", n, delivered, dropped)
		f.close(t)
		goleak.VerifyNone(t, baseline)
	})
	t.Run("stalled", func(t *testing.T) {
		baseline := goleak.IgnoreCurrent()
		f := startFakes(t, config.Huawei)
		h := newFakesHarness(t, Options{}, f)
		state, cert := f.servers[config.Huawei].State, f.certs[config.Huawei].Name
		state.Script(fake.AnyToken, fake.Answer{Delay: time.Hour})
		tokens := h.submitEach(config.Huawei, cert, "stalled", faultN)
		// Every call is out and stuck when the drain starts.
		state.WaitFor(faultN, 10*time.Second)
		e := h.e
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		if dropped := h.drain(ctx); dropped != faultN {
			t.Errorf("dropped %d, want %d", dropped, faultN)
		}
		if got := value(t, e.metrics.dropped.WithLabelValues(ReasonShutdown)); got != faultN {
			t.Errorf("Shutdown drops %v, want %d", got, faultN)
		}
		for user := range tokens {
			st, _ := e.Status("n-" + user)
			if o := outcome(t, st, "phone"); o.State != Dropped || o.Reason != ReasonShutdown {
				t.Errorf("outcome %+v, want dropped at shutdown", o)
			}
		}
		f.close(t)
		goleak.VerifyNone(t, baseline)
	})
}
