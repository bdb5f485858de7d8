// Package security checks, against a real API server and real dispatcher
// processes (hack/localrun), what an intruder or a careless log line could
// do: read another tenant's Secrets, run a privileged pod, or find a
// credential or device token anywhere it does not belong.
package security

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	crzap "sigs.k8s.io/controller-runtime/pkg/log/zap"

	pushv1 "github.com/imcloud/im-push-operator/api/v1alpha1"
	"github.com/imcloud/im-push-operator/hack/localrun"
	"github.com/imcloud/im-push-operator/internal/testenv"
)

const (
	ns     = "sec"
	tenant = "chat-app"
	// other is a second tenant in the same namespace.
	other = "other-app"
	wait  = 90 * time.Second
)

// logSink collects every line the manager and the dispatcher processes log.
type logSink struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logSink) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logSink) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

var (
	setupOnce sync.Once
	sys       *localrun.System
	logs      = &logSink{}
	canaries  *canarySet
	setupErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if sys != nil {
		if err := sys.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping the local system:", err)
		}
	}
	os.Exit(code)
}

// system starts, once for the package, the API server, the operator, the
// fakes and the tenant chat-app (every provider, canary credentials) plus a
// second tenant in the same namespace.
func system(t *testing.T) *localrun.System {
	t.Helper()
	setupOnce.Do(func() { setupErr = start() })
	if setupErr != nil {
		t.Fatal(setupErr)
	}
	return sys
}

func start() error {
	if _, err := testenv.AssetsDir(); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "im-push-security-")
	if err != nil {
		return err
	}
	bin := filepath.Join(dir, "dispatcher")
	cmd := exec.Command("go", "build", "-o", bin, "./dispatcher/cmd/dispatcher")
	cmd.Dir = testenv.RepoRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building the dispatcher: %v\n%s", err, out)
	}
	logger := crzap.New(crzap.WriteTo(logs), crzap.UseDevMode(false))
	ctx := context.Background()
	if sys, err = localrun.Start(ctx, localrun.Options{DispatcherBinary: bin, Dir: dir, ProcessLog: logs, Logger: logger}); err != nil {
		return err
	}
	certs, err := sys.Certificates()
	if err != nil {
		return err
	}
	if canaries, err = seedCanaries(sys, certs); err != nil {
		return err
	}
	policy := pushv1.PushPolicySpec{Notification: pushv1.NotificationSpec{Title: "{{.Sender.DisplayName}}", Body: "{{.Text}}"}}
	if err := sys.InstallTenant(ctx, ns, tenant, certs, policy, 1); err != nil {
		return err
	}
	// The second tenant shares the namespace and the certificates.
	var names []string
	for _, c := range certs {
		names = append(names, strings.ToLower(c.Name))
	}
	if err := sys.Client.Create(ctx, &pushv1.PushPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: other + "-policy"}, Spec: policy}); err != nil {
		return err
	}
	if err := sys.Client.Create(ctx, &pushv1.AppTenant{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: other},
		Spec: pushv1.AppTenantSpec{
			AppKey: other, Certificates: names,
			PolicyRef:  pushv1.LocalObjectReference{Name: other + "-policy"},
			Dispatcher: pushv1.DispatcherSpec{Replicas: ptrTo(int32(1))},
			TokenStore: pushv1.TokenStoreSpec{Shards: ptrTo(int32(2))},
		},
	}); err != nil {
		return err
	}
	return pollErr(wait, func() error {
		for _, name := range []string{tenant, other} {
			if err := tenantReady(ctx, sys.Client, name); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
		}
		return nil
	})
}

func ptrTo[T any](v T) *T { return &v }

func tenantReady(ctx context.Context, c client.Client, name string) error {
	at := &pushv1.AppTenant{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, at); err != nil {
		return err
	}
	for _, cond := range at.Status.Conditions {
		if cond.Type == pushv1.ConditionReady {
			if cond.Status == metav1.ConditionTrue {
				return nil
			}
			return fmt.Errorf("not Ready: %s: %s", cond.Reason, cond.Message)
		}
	}
	return fmt.Errorf("no Ready condition yet")
}

// pollErr retries f until it returns nil or d passes.
func pollErr(d time.Duration, f func() error) error {
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// until fails t unless f returns nil within the deadline.
func until(t *testing.T, what string, f func() error) {
	t.Helper()
	if err := pollErr(wait, f); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// api returns a client for replica 0 of the tenant's dispatcher.
func api(t *testing.T, name string) *localrun.API {
	t.Helper()
	s := system(t)
	token, err := s.APIToken(context.Background(), ns, name)
	if err != nil {
		t.Fatal(err)
	}
	var reps []localrun.Replica
	until(t, "a ready replica of "+name, func() error {
		reps = s.Runner.Replicas(ns, name)
		if len(reps) == 0 || !reps[0].Ready {
			return fmt.Errorf("replicas %+v", reps)
		}
		return nil
	})
	return &localrun.API{URL: reps[0].URL, Token: token}
}
