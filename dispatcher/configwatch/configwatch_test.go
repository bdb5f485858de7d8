package configwatch

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/imcloud/im-push-operator/dispatcher/config"
	"github.com/imcloud/im-push-operator/dispatcher/kube"
	"github.com/imcloud/im-push-operator/dispatcher/providers"
	"github.com/imcloud/im-push-operator/internal/testenv"
)

var (
	client     kubernetes.Interface
	restConfig *rest.Config
	// watchClient is the watcher's own client (admin).
	watchClient *kube.Client
)

func TestMain(m *testing.M) {
	env, cfg, err := testenv.Start(false)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	restConfig = cfg
	client = kubernetes.NewForConfigOrDie(cfg)
	watchClient = kube.NewForConfigOrDie(cfg)
	code := m.Run()
	if err := env.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "stopping envtest:", err)
	}
	os.Exit(code)
}

// stubClient stands in for a provider client; the watcher only builds them.
type stubClient struct{ cert string }

func (stubClient) Provider() config.Provider { return config.FCM }
func (stubClient) Send(context.Context, *providers.Message) providers.Result {
	return providers.Result{Outcome: providers.Delivered}
}

// applied records what reached the engine.
type applied struct {
	mu      sync.Mutex
	tenants []string
	clients []map[string]providers.Client
	refuse  bool
}

func (a *applied) apply(cfg *config.Config, clients map[string]providers.Client) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.refuse {
		return errors.New("templates do not parse")
	}
	a.tenants = append(a.tenants, cfg.Tenant)
	a.clients = append(a.clients, clients)
	return nil
}

func (a *applied) last() (string, map[string]providers.Client, int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := len(a.tenants)
	if n == 0 {
		return "", nil, 0
	}
	return a.tenants[n-1], a.clients[n-1], n
}

// newClient fails for certificates whose data holds "broken", as registry.New
// fails for a credential it cannot read.
func newClient(cert *config.Certificate) (providers.Client, error) {
	if _, broken := cert.Data["broken"]; broken {
		return nil, fmt.Errorf("certificate %q (FCM): key %q: not a service account", cert.Name, config.KeyFCMServiceAcct)
	}
	return stubClient{cert: cert.Name}, nil
}

func document(t *testing.T, tenant string, certs ...config.Certificate) []byte {
	t.Helper()
	c := config.Config{
		Version: config.Version, Tenant: tenant, Namespace: "default", AppKey: "key-" + tenant,
		Certificates: certs, TokenStore: config.TokenStore{Shards: 1, ShardPrefix: "x-"},
		AuthSecretName: tenant + "-auth",
	}
	doc, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

func fcm(name string, data map[string][]byte) config.Certificate {
	return config.Certificate{Name: name, Provider: config.FCM, Data: data}
}

type harness struct {
	t       *testing.T
	ns      string
	configs chan Event
	tokens  chan Event
	applied *applied
	w       *Watcher
}

func start(t *testing.T, prefix, secret string) *harness {
	t.Helper()
	ns := testenv.Namespace(t, client, prefix)
	h := &harness{t: t, ns: ns, configs: make(chan Event, 16), tokens: make(chan Event, 16), applied: &applied{}}
	h.w = New(Options{
		Client: watchClient, Namespace: ns, ConfigSecret: secret,
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
	return h
}

func (h *harness) put(name string, data map[string][]byte) {
	h.t.Helper()
	secrets := client.CoreV1().Secrets(h.ns)
	sec, err := secrets.Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		if _, err := secrets.Create(context.Background(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: data}, metav1.CreateOptions{}); err != nil {
			h.t.Fatal(err)
		}
		return
	}
	sec.Data = data
	if _, err := secrets.Update(context.Background(), sec, metav1.UpdateOptions{}); err != nil {
		h.t.Fatal(err)
	}
}

func next(t *testing.T, ch <-chan Event) Event {
	t.Helper()
	select {
	case e := <-ch:
		return e
	case <-time.After(30 * time.Second):
		t.Fatal("no event within 30s")
	}
	return Event{}
}

func expectLoaded(t *testing.T, h *harness, doc []byte) {
	t.Helper()
	e := next(t, h.configs)
	if e.Kind != ConfigLoaded || e.Hash != config.Hash(doc) {
		t.Fatalf("event = %+v, want ConfigLoaded %s", e, config.Hash(doc))
	}
	if _, hash := h.w.Config(); hash != config.Hash(doc) {
		t.Fatalf("hash in use = %s, want %s", hash, config.Hash(doc))
	}
}

func expectRejected(t *testing.T, h *harness, doc []byte, keep []byte) {
	t.Helper()
	e := next(t, h.configs)
	if e.Kind != ConfigRejected || e.Hash != config.Hash(doc) || e.Err == nil {
		t.Fatalf("event = %+v, want ConfigRejected %s", e, config.Hash(doc))
	}
	if cfg, hash := h.w.Config(); hash != config.Hash(keep) || cfg == nil {
		t.Fatalf("after a rejected version the hash in use is %s, want the last good %s", hash, config.Hash(keep))
	}
}

func TestUpdatesAndRejections(t *testing.T) {
	h := start(t, "cw-updates", "chat-dispatcher-config")
	select {
	case <-h.w.Loaded():
		t.Fatal("loaded before the Secret exists")
	default:
	}
	if cfg, _ := h.w.Config(); cfg != nil || h.w.Token() != nil {
		t.Fatal("config or token before the Secrets exist")
	}

	first := document(t, "chat", fcm("android", map[string][]byte{config.KeyFCMServiceAcct: []byte("{}")}))
	h.put("chat-dispatcher-config", map[string][]byte{config.SecretKey: first})
	expectLoaded(t, h, first)
	<-h.w.Loaded()
	if tenant, clients, _ := h.applied.last(); tenant != "chat" || clients["android"] == nil {
		t.Fatalf("engine got %q %v", tenant, clients)
	}

	t.Run("API token is read and rotated", func(t *testing.T) {
		h.put("chat-auth", map[string][]byte{config.AuthTokenKey: []byte("first-token")})
		next(t, h.tokens)
		if got := string(h.w.Token()); got != "first-token" {
			t.Fatalf("token = %q", got)
		}
		h.put("chat-auth", map[string][]byte{config.AuthTokenKey: []byte("rotated-token")})
		next(t, h.tokens)
		if got := string(h.w.Token()); got != "rotated-token" {
			t.Fatalf("token = %q", got)
		}
	})

	second := document(t, "chat", fcm("android", map[string][]byte{config.KeyFCMServiceAcct: []byte(`{"v":2}`)}), fcm("android-2", nil))
	t.Run("an update is picked up", func(t *testing.T) {
		h.put("chat-dispatcher-config", map[string][]byte{config.SecretKey: second})
		expectLoaded(t, h, second)
		if _, clients, n := h.applied.last(); n != 2 || len(clients) != 2 || clients["android-2"] == nil {
			t.Fatalf("engine got %d configs, last clients %v", n, clients)
		}
	})

	broken := []struct {
		name string
		doc  []byte
	}{
		{"not JSON", []byte(`{"version":`)},
		{"another version", []byte(`{"version":"dispatcher.push.imcloud.io/v0","tenant":"chat","namespace":"default"}`)},
		{"invalid", document(t, "")},
		{"a client cannot be built", document(t, "chat", fcm("android", map[string][]byte{"broken": nil}))},
		{"no document", nil},
	}
	for _, tc := range broken {
		t.Run("rejected: "+tc.name, func(t *testing.T) {
			h.put("chat-dispatcher-config", map[string][]byte{config.SecretKey: tc.doc})
			expectRejected(t, h, tc.doc, second)
			if _, _, n := h.applied.last(); n != 2 {
				t.Fatalf("a rejected version reached the engine (%d configs)", n)
			}
		})
	}

	t.Run("refused by the engine", func(t *testing.T) {
		h.applied.mu.Lock()
		h.applied.refuse = true
		h.applied.mu.Unlock()
		doc := document(t, "chat", fcm("android", nil), fcm("android-3", nil))
		h.put("chat-dispatcher-config", map[string][]byte{config.SecretKey: doc})
		expectRejected(t, h, doc, second)
		h.applied.mu.Lock()
		h.applied.refuse = false
		h.applied.mu.Unlock()
	})

	t.Run("recovers with the next good version", func(t *testing.T) {
		third := document(t, "chat", fcm("android", nil))
		h.put("chat-dispatcher-config", map[string][]byte{config.SecretKey: third})
		expectLoaded(t, h, third)
		if string(h.w.Token()) != "rotated-token" {
			t.Fatalf("token after reload = %q", h.w.Token())
		}
	})
}

func TestConfigReadyBeforeStart(t *testing.T) {
	// The Secret exists before the watcher starts: the first list loads it.
	ns := testenv.Namespace(t, client, "cw-existing")
	doc := document(t, "mail")
	for name, data := range map[string]map[string][]byte{
		"mail-dispatcher-config": {config.SecretKey: doc},
		"mail-auth":              {config.AuthTokenKey: []byte("t")},
	} {
		if _, err := client.CoreV1().Secrets(ns).Create(context.Background(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: data}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	configs, tokens := make(chan Event, 4), make(chan Event, 4)
	w := New(Options{Client: watchClient, Namespace: ns, ConfigSecret: "mail-dispatcher-config", NewClient: newClient,
		Apply: func(*config.Config, map[string]providers.Client) error { return nil },
		Notify: func(e Event) {
			if e.Kind == TokenLoaded {
				tokens <- e
			} else {
				configs <- e
			}
		}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	if e := next(t, configs); e.Kind != ConfigLoaded || e.Hash != config.Hash(doc) {
		t.Fatalf("event = %+v", e)
	}
	next(t, tokens)
	if cfg, _ := w.Config(); cfg.Tenant != "mail" || string(w.Token()) != "t" {
		t.Fatalf("config %+v, token %q", cfg, w.Token())
	}
}
