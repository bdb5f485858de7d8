package configwatch

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imcloud/im-push-operator/dispatcher/config"
	"github.com/imcloud/im-push-operator/dispatcher/kube"
	"github.com/imcloud/im-push-operator/internal/faultproxy"
	"github.com/imcloud/im-push-operator/internal/testenv"
)

// TestAPIServerAwayKeepsLastGood runs a watcher whose connection to the API
// server is cut and refused while its config and token Secrets change. The
// config and token in use stay throughout; once the server is back the
// watcher catches up with what changed meanwhile, and when that is a broken
// config it rejects it and keeps the last good one.
func TestAPIServerAwayKeepsLastGood(t *testing.T) {
	proxy, proxied, err := faultproxy.Front(restConfig)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(proxy.Close)
	const secret = "chat-dispatcher-config"
	ns := testenv.Namespace(t, client, "cw-apiserver-away")
	// The Secrets are written by an admin client that goes around the proxy.
	h := &harness{t: t, ns: ns, configs: make(chan Event, 16), tokens: make(chan Event, 16), applied: &applied{}}
	h.w = New(Options{
		Client: kube.NewForConfigOrDie(proxied), Namespace: ns, ConfigSecret: secret,
		NewClient: newClient, Apply: h.applied.apply,
		Notify: func(e Event) {
			if e.Kind == TokenLoaded {
				h.tokens <- e
			} else {
				h.configs <- e
			}
		},
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { h.w.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	first := document(t, "chat", fcm("android", map[string][]byte{config.KeyFCMServiceAcct: []byte("{}")}))
	h.put(secret, map[string][]byte{config.SecretKey: first})
	expectLoaded(t, h, first)
	h.put("chat-auth", map[string][]byte{config.AuthTokenKey: []byte("first-token")})
	next(t, h.tokens)

	// From here on a config and a token must be in use at every moment.
	var checks, dropped atomic.Int64
	stopWatching := make(chan struct{})
	watching := make(chan struct{})
	go func() {
		defer close(watching)
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stopWatching:
				return
			case <-tick.C:
			}
			checks.Add(1)
			if cfg, _ := h.w.Config(); cfg == nil || len(h.w.Token()) == 0 {
				dropped.Add(1)
			}
		}
	}()

	// away refuses the watcher's connections until it has tried to
	// reconnect at least twice.
	away := func(change func()) {
		t.Helper()
		proxy.Set(faultproxy.Refuse)
		refused := proxy.Stats().Refused
		change()
		deadline := time.Now().Add(30 * time.Second)
		for proxy.Stats().Refused < refused+2 {
			if time.Now().After(deadline) {
				t.Fatal("the watcher did not try to reconnect within 30s")
			}
			time.Sleep(10 * time.Millisecond)
		}
		proxy.Set(faultproxy.Pass)
	}

	second := document(t, "chat", fcm("android", map[string][]byte{config.KeyFCMServiceAcct: []byte(`{"v":2}`)}))
	away(func() {
		h.put(secret, map[string][]byte{config.SecretKey: second})
		h.put("chat-auth", map[string][]byte{config.AuthTokenKey: []byte("rotated-token")})
	})
	expectLoaded(t, h, second)
	next(t, h.tokens)
	if got := string(h.w.Token()); got != "rotated-token" {
		t.Fatalf("token after the API server came back = %q", got)
	}

	broken := document(t, "chat", fcm("android", map[string][]byte{"broken": nil}))
	away(func() { h.put(secret, map[string][]byte{config.SecretKey: broken}) })
	expectRejected(t, h, broken, second)
	if _, _, n := h.applied.last(); n != 2 {
		t.Fatalf("%d configs reached the engine, want 2 (the broken one must not)", n)
	}
	close(stopWatching)
	<-watching
	if dropped.Load() > 0 {
		t.Errorf("no config or token in use at %d of %d checks", dropped.Load(), checks.Load())
	}
	t.Logf("config and token in use at all %d checks; proxy %+v", checks.Load(), proxy.Stats())
}
