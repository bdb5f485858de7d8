// Package faults injects faults into the whole system running on one machine
// (hack/localrun: the API server, the operator, the fake providers and the
// dispatcher processes) and counts what becomes of every call: the API
// server slow or away, credentials rotated, revoked or expiring underneath.
//
// The API server is made unreachable with a TCP proxy (internal/faultproxy)
// that both the operator and every dispatcher process reach it through;
// the test's own client and the runner playing kubelet connect directly, so
// the test can change objects and read the shard Secrets during the outage.
// A proxy was chosen over stopping the kube-apiserver process because
// envtest regenerates the serving certificates when it starts the process
// again, which would break every client's trust rather than its connection.
package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	pushv1 "github.com/imcloud/im-push-operator/api/v1alpha1"
	"github.com/imcloud/im-push-operator/dispatcher/config"
	"github.com/imcloud/im-push-operator/dispatcher/store"
	"github.com/imcloud/im-push-operator/hack/localrun"
	"github.com/imcloud/im-push-operator/internal/faultproxy"
	"github.com/imcloud/im-push-operator/internal/testenv"
)

const wait = 90 * time.Second

var (
	sys   *localrun.System
	proxy *faultproxy.Proxy
	logs  = &processLog{}
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "im-push-faults-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	bin, err := localrun.BuildDispatcher(dir, testenv.RepoRoot())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	sys, err = localrun.Start(context.Background(), localrun.Options{
		DispatcherBinary: bin, ProcessLog: logs,
		APIServerRoute: func(cfg *rest.Config) (*rest.Config, error) {
			p, routed, err := faultproxy.Front(cfg)
			proxy = p
			return routed, err
		},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	code := m.Run()
	if err := sys.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "stopping the system:", err)
	}
	proxy.Close()
	if code != 0 {
		logs.dump()
	}
	return code
}

// processLog keeps the dispatcher processes' last lines, printed when a
// test failed.
type processLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *processLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, strings.TrimRight(string(p), "\n"))
	if len(l.lines) > 400 {
		l.lines = l.lines[len(l.lines)-400:]
	}
	return len(p), nil
}

func (l *processLog) dump() {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintln(os.Stderr, "last dispatcher log lines:")
	for _, line := range l.lines {
		fmt.Fprintln(os.Stderr, line)
	}
}

// until polls f until it returns nil or the deadline passes.
func until(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(wait)
	var err error
	for time.Now().Before(deadline) {
		if err = f(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: %v", what, err)
}

// tenant is one installed tenant and its dispatcher replicas' APIs.
type tenant struct {
	ns, name string
	token    string
}

// install creates a tenant with certs and waits until it is Ready with
// replicas serving.
func install(t *testing.T, ns, name string, certs []*config.Certificate, replicas int32) *tenant {
	t.Helper()
	ctx := context.Background()
	policy := pushv1.PushPolicySpec{Notification: pushv1.NotificationSpec{Title: "{{.Sender.DisplayName}}", Body: "{{.Text}}"}}
	if err := sys.InstallTenant(ctx, ns, name, certs, policy, replicas); err != nil {
		t.Fatal(err)
	}
	tn := &tenant{ns: ns, name: name}
	tn.waitReady(t, replicas)
	token, err := sys.APIToken(ctx, ns, name)
	if err != nil {
		t.Fatal(err)
	}
	tn.token = token
	return tn
}

// waitReady waits for the tenant's Ready condition with replicas ready
// processes.
func (tn *tenant) waitReady(t *testing.T, replicas int32) {
	t.Helper()
	until(t, fmt.Sprintf("tenant %s/%s Ready with %d replicas", tn.ns, tn.name, replicas), func() error {
		at := &pushv1.AppTenant{}
		if err := sys.Client.Get(context.Background(), client.ObjectKey{Namespace: tn.ns, Name: tn.name}, at); err != nil {
			return err
		}
		if at.Status.ObservedGeneration != at.Generation {
			return fmt.Errorf("status observed generation %d of %d", at.Status.ObservedGeneration, at.Generation)
		}
		c := meta(at.Status.Conditions, pushv1.ConditionReady)
		if c.Status != metav1.ConditionTrue {
			return fmt.Errorf("Ready %s: %s: %s", c.Status, c.Reason, c.Message)
		}
		ready := 0
		for _, r := range sys.Runner.Replicas(tn.ns, tn.name) {
			if r.Ready {
				ready++
			}
		}
		if ready != int(replicas) {
			return fmt.Errorf("%d of %d replicas ready", ready, replicas)
		}
		return nil
	})
}

func meta(conds []metav1.Condition, typ string) metav1.Condition {
	for _, c := range conds {
		if c.Type == typ {
			return c
		}
	}
	return metav1.Condition{Type: typ, Status: metav1.ConditionUnknown, Reason: "Absent"}
}

// apis returns a client per dispatcher replica.
func (tn *tenant) apis(t *testing.T) []*localrun.API {
	t.Helper()
	var out []*localrun.API
	for _, r := range sys.Runner.Replicas(tn.ns, tn.name) {
		out = append(out, &localrun.API{URL: r.URL, Token: tn.token})
	}
	if len(out) == 0 {
		t.Fatal("no dispatcher replicas")
	}
	return out
}

// storedUsers decodes every shard Secret of the tenant straight from the API
// server, by user key.
func (tn *tenant) storedUsers(t *testing.T) map[string]store.User {
	t.Helper()
	at := &pushv1.AppTenant{}
	if err := sys.Client.Get(context.Background(), client.ObjectKey{Namespace: tn.ns, Name: tn.name}, at); err != nil {
		t.Fatal(err)
	}
	users := map[string]store.User{}
	ts := config.TokenStore{Shards: *at.Spec.TokenStore.Shards, ShardPrefix: config.ShardPrefix(tn.name)}
	for _, name := range ts.ShardNames() {
		sec := &corev1.Secret{}
		if err := sys.Client.Get(context.Background(), client.ObjectKey{Namespace: tn.ns, Name: name}, sec); err != nil {
			t.Fatal(err)
		}
		for key, raw := range sec.Data {
			var u store.User
			if err := json.Unmarshal(raw, &u); err != nil {
				t.Fatalf("shard %s key %s: %v", name, key, err)
			}
			users[key] = u
		}
	}
	return users
}

// configSecret returns the tenant's rendered dispatcher config and its hash.
func (tn *tenant) configSecret(t *testing.T) (*config.Config, string) {
	t.Helper()
	sec := &corev1.Secret{}
	if err := sys.Client.Get(context.Background(), client.ObjectKey{Namespace: tn.ns, Name: config.ConfigSecretName(tn.name)}, sec); err != nil {
		t.Fatal(err)
	}
	doc := sec.Data[config.SecretKey]
	cfg, err := config.Parse(doc)
	if err != nil {
		t.Fatal(err)
	}
	return cfg, config.Hash(doc)
}

// runningHash is the config hash a replica reports on /readyz.
func runningHash(api *localrun.API) (string, error) {
	resp, err := http.Get(api.URL + "/readyz")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var r struct {
		ConfigHash string `json:"configHash"`
	}
	return r.ConfigHash, json.NewDecoder(resp.Body).Decode(&r)
}

// waitRunning waits until every replica runs the config Secret's current
// version, which must satisfy ok.
func (tn *tenant) waitRunning(t *testing.T, what string, ok func(*config.Config) error) {
	t.Helper()
	until(t, what, func() error {
		cfg, hash := tn.configSecret(t)
		if err := ok(cfg); err != nil {
			return err
		}
		for _, api := range tn.apis(t) {
			got, err := runningHash(api)
			if err != nil {
				return err
			}
			if got != hash {
				return fmt.Errorf("replica %s runs config %.12s, the Secret holds %.12s", api.URL, got, hash)
			}
		}
		return nil
	})
}

func notification(id, text string, users ...string) map[string]any {
	var recipients []map[string]any
	for _, u := range users {
		recipients = append(recipients, map[string]any{"userId": u, "onlineDevices": []string{}})
	}
	return map[string]any{
		"id":           id,
		"sender":       map[string]string{"id": "carol", "displayName": "Carol"},
		"conversation": map[string]string{"id": "c-" + id, "type": "single"},
		"recipients":   recipients,
		"message":      map[string]any{"text": text},
	}
}

// apnsToken is a device token of the form APNs accepts.
func apnsToken(seed string) string {
	return fmt.Sprintf("%064x", []byte(seed))[:64]
}
