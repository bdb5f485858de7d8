package store

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imcloud/im-push-operator/dispatcher/kube"
	"github.com/imcloud/im-push-operator/internal/faultproxy"
	"github.com/imcloud/im-push-operator/internal/testenv"
)

// faultCallTimeout stands in for the API's per-call store deadline
// (server.storeWaitTimeout), shortened so black-holed calls end quickly.
const faultCallTimeout = time.Second

// bindLedger records every bind of a fault test and what it was answered.
type bindLedger struct {
	ns    string
	seq   atomic.Int64
	mu    sync.Mutex
	acked map[string]string // user → token, answered nil
	// refused: user → token, answered with an error.
	refused map[string]string
	// kinds counts the errors by kind.
	kinds map[string]int
	// unexpected holds errors that are neither the caller's deadline nor
	// ErrUnavailable naming the shard.
	unexpected []error
}

func newLedger(ns string) *bindLedger {
	return &bindLedger{ns: ns, acked: map[string]string{}, refused: map[string]string{}, kinds: map[string]int{}}
}

// bind binds a new user's one device with a fresh token under a deadline.
func (l *bindLedger) bind(s Store, phase string) error {
	user := fmt.Sprintf("%s-%d", phase, l.seq.Add(1))
	token := "tok-" + user
	callCtx, cancel := context.WithTimeout(ctx, faultCallTimeout)
	defer cancel()
	err := s.Bind(callCtx, user, "phone", Binding{CertificateName: "fcm", Token: token})
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case err == nil:
		l.acked[user] = token
		l.kinds[phase+" acknowledged"]++
		return nil
	case errors.Is(err, context.DeadlineExceeded):
		l.kinds[phase+" refused: caller's deadline"]++
	case errors.Is(err, ErrUnavailable) && strings.Contains(err.Error(), "token store shard Secret "+l.ns+"/"):
		l.kinds[phase+" refused: API server unavailable"]++
	default:
		l.unexpected = append(l.unexpected, err)
	}
	l.refused[user] = token
	return err
}

func (l *bindLedger) snapshot() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return maps.Clone(l.kinds)
}

func (l *bindLedger) count(phase string, acked bool) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for k, v := range l.kinds {
		if strings.HasPrefix(k, phase+" ") && strings.HasSuffix(k, " acknowledged") == acked {
			n += v
		}
	}
	return n
}

// TestSecretsAPIServerAway puts a proxy between a store and the API server
// and makes the server slow, then black-holed, then refusing connections,
// binding from four callers all along. Every bind must be answered within
// its deadline, either acknowledged or refused with the caller's deadline or
// ErrUnavailable naming the shard; every acknowledged binding must be in the
// shard Secrets read straight from the API server; reads are served from
// the cache throughout; and once the server is back the store writes again
// and its watch follows other writers.
func TestSecretsAPIServerAway(t *testing.T) {
	restCfg, cs := apiServer(t)
	ns := testenv.Namespace(t, cs, "store")
	cfg := testConfig(2)
	createShards(t, cs, ns, cfg)
	proxy, proxied, err := faultproxy.Front(restCfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(proxy.Close)
	s := startSecrets(t, kube.NewForConfigOrDie(proxied), ns, cfg, SecretsOptions{})

	before := map[string]string{}
	for i := range 4 {
		user := fmt.Sprintf("before-%d", i)
		before[user] = "tok-" + user
		mustBind(t, s, user, "phone", Binding{CertificateName: "fcm", Token: before[user]})
	}
	var reads, readFailures atomic.Int64
	readBefore := func() {
		for user, token := range before {
			u, err := s.Get(ctx, user)
			reads.Add(1)
			if err != nil || deviceTokens(u)["phone"] != token {
				readFailures.Add(1)
				t.Errorf("read of %s during the fault: %v, %v", user, deviceTokens(u), err)
			}
		}
	}

	ledger := newLedger(ns)
	// run binds from four callers until done says the phase has seen enough,
	// or 400 calls did not get there.
	run := func(phase string, done func() bool) {
		var wg sync.WaitGroup
		var stop atomic.Bool
		var calls atomic.Int32
		for range 4 {
			wg.Go(func() {
				for !stop.Load() {
					if calls.Add(1) > 400 {
						t.Errorf("%s: 400 binds did not produce the outcomes the phase waits for; by phase: %v", phase, ledger.snapshot())
						stop.Store(true)
						return
					}
					start := time.Now()
					_ = ledger.bind(s, phase)
					if d := time.Since(start); d > faultCallTimeout+5*time.Second {
						t.Errorf("%s: a bind took %v, past its %v deadline", phase, d, faultCallTimeout)
					}
					readBefore()
					if done() {
						stop.Store(true)
					}
				}
			})
		}
		wg.Wait()
	}

	phases := []struct {
		name  string
		fault func()
		done  func() bool
	}{
		{"slow", func() { proxy.SetLatency(100 * time.Millisecond) },
			func() bool { return ledger.count("slow", true) >= 12 }},
		// Slow enough that writes commit after their callers gave up: the
		// case "refused, but maybe written" is about.
		{"slower", func() { proxy.SetLatency(300 * time.Millisecond) },
			func() bool { return ledger.count("slower", false) >= 8 }},
		{"blackholed", func() { proxy.SetLatency(0); proxy.Set(faultproxy.Blackhole) },
			func() bool { return ledger.count("blackholed", false) >= 12 }},
		{"refusing", func() { proxy.Set(faultproxy.Refuse) },
			func() bool { return ledger.count("refusing", false) >= 12 }},
	}
	for _, ph := range phases {
		ph.fault()
		run(ph.name, ph.done)
		if !s.Ready() {
			t.Errorf("the store turned not ready while the API server was %s", ph.name)
		}
	}
	if n := ledger.count("blackholed", true) + ledger.count("refusing", true); n != 0 {
		t.Errorf("%d binds acknowledged while the API server was unreachable", n)
	}

	proxy.Set(faultproxy.Pass)
	recovered := time.Now()
	eventually(t, "a bind to be acknowledged once the API server is back", func() bool {
		return ledger.bind(s, "recovering") == nil
	})
	for range 10 {
		if err := ledger.bind(s, "after"); err != nil {
			t.Errorf("bind after recovery: %v", err)
		}
	}
	other := startSecrets(t, adminClient(t), ns, cfg, SecretsOptions{})
	mustBind(t, other, "other-writer", "phone", Binding{CertificateName: "fcm", Token: "tok-other"})
	eventually(t, "the store's watch to deliver another writer's bind", func() bool {
		u, err := s.Get(ctx, "other-writer")
		return err == nil && deviceTokens(u)["phone"] == "tok-other"
	})
	caughtUp := time.Since(recovered)

	stored := readShards(t, cs, ns, cfg)
	ledger.mu.Lock()
	defer ledger.mu.Unlock()
	for _, err := range ledger.unexpected {
		t.Errorf("a bind failed with neither its deadline nor ErrUnavailable naming the shard: %v", err)
	}
	lost := 0
	for user, token := range ledger.acked {
		if got := deviceTokens(stored[UserKey(user)])["phone"]; got != token {
			lost++
			t.Errorf("acknowledged bind of %s is not stored (got %q)", user, got)
		}
	}
	for user, token := range before {
		if deviceTokens(stored[UserKey(user)])["phone"] != token {
			t.Errorf("%s, bound before the fault, is gone", user)
		}
	}
	refusedStored := 0
	for user := range ledger.refused {
		if _, ok := stored[UserKey(user)]; ok {
			refusedStored++
		}
	}
	t.Logf("binds: %d acknowledged (%d stored, %d lost), %d refused (%d of them written anyway); by phase: %v",
		len(ledger.acked), len(ledger.acked)-lost, lost, len(ledger.refused), refusedStored, ledger.kinds)
	t.Logf("reads from the cache during the fault: %d, %d failed; proxy %+v; cache caught up %v after the API server came back",
		reads.Load(), readFailures.Load(), proxy.Stats(), caughtUp.Round(10*time.Millisecond))
}
