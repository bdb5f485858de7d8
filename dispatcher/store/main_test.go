package store

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/imcloud/im-push-operator/dispatcher/config"
	"github.com/imcloud/im-push-operator/dispatcher/kube"
	"github.com/imcloud/im-push-operator/internal/testenv"
)

// The API server starts on first use, so Memory-only runs need no binaries.
var (
	envOnce sync.Once
	env     *envtest.Environment
	envCfg  *rest.Config
	envErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if env != nil {
		if err := env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping envtest:", err)
		}
	}
	os.Exit(code)
}

// apiServer returns the admin rest config and client of the shared envtest.
func apiServer(t *testing.T) (*rest.Config, kubernetes.Interface) {
	t.Helper()
	envOnce.Do(func() { env, envCfg, envErr = testenv.Start(false) })
	if envErr != nil {
		t.Fatal(envErr)
	}
	return envCfg, kubernetes.NewForConfigOrDie(envCfg)
}

// adminClient is the store's client of the shared envtest, as admin.
func adminClient(t *testing.T) *kube.Client {
	t.Helper()
	cfg, _ := apiServer(t)
	return kube.NewForConfigOrDie(cfg)
}

// createShards does what the operator does: empty shard Secrets of the
// token-store type, labelled with the tenant.
func createShards(t *testing.T, cs kubernetes.Interface, ns string, cfg config.TokenStore) {
	t.Helper()
	for _, name := range cfg.ShardNames() {
		sec := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{LabelTenant: "chat"}},
			Type:       SecretType,
		}
		if _, err := cs.CoreV1().Secrets(ns).Create(context.Background(), sec, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
}

// startSecrets starts a store that stops when the test ends.
func startSecrets(t *testing.T, client *kube.Client, ns string, cfg config.TokenStore, opts SecretsOptions) *Secrets {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	s := NewSecrets(client, ns, cfg, opts)
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if !s.Ready() {
		t.Fatal("store not ready after Start")
	}
	return s
}

// fakeClock is a settable clock shared by stores in one test.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 3, 1, 9, 0, 0, 123456789, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
	return c.t
}

// eventually polls cond until it holds, or stops the test after 30 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	if !testenv.Eventually(t, what, 30*time.Second, cond) {
		t.FailNow()
	}
}
