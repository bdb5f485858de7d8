package store

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/imcloud/im-push-operator/dispatcher/config"
	"github.com/imcloud/im-push-operator/dispatcher/kube"
	"github.com/imcloud/im-push-operator/internal/testenv"
)

func testConfig(shards int32) config.TokenStore {
	return config.TokenStore{Shards: shards, ShardPrefix: "chat-devices-"}
}

// readShards decodes every shard Secret straight from the API server.
func readShards(t *testing.T, cs kubernetes.Interface, ns string, cfg config.TokenStore) map[string]User {
	t.Helper()
	users := map[string]User{}
	for _, name := range cfg.ShardNames() {
		sec, err := cs.CoreV1().Secrets(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for key, raw := range sec.Data {
			u, err := decodeUser(raw)
			if err != nil {
				t.Fatalf("shard %s key %s: %v", name, key, err)
			}
			users[key] = u
		}
	}
	return users
}

// TestSecretsReplicasDoNotLoseBindings has two store instances (two
// dispatcher replicas) bind and unbind different devices of the same users
// at once; afterwards both caches and the Secrets hold exactly the last
// state of every device.
func TestSecretsReplicasDoNotLoseBindings(t *testing.T) {
	_, cs := apiServer(t)
	ns := testenv.Namespace(t, cs, "store")
	cfg := testConfig(2)
	createShards(t, cs, ns, cfg)
	var conflicts sync.Map
	opts := SecretsOptions{Metrics: MetricsHooks{OnConflict: func(shard string) { conflicts.Store(shard, true) }}}
	replicas := []*Secrets{startSecrets(t, adminClient(t), ns, cfg, opts), startSecrets(t, adminClient(t), ns, cfg, opts)}

	users := []string{"alice", "bob", "carol"}
	const workers, opsEach = 4, 50
	// want[user][device] = token; each worker owns its devices, so its own
	// record of what it did is the truth for them.
	wants := make([]map[string]map[string]string, workers)
	var wg sync.WaitGroup
	for w := range workers {
		want := map[string]map[string]string{}
		for _, u := range users {
			want[u] = map[string]string{}
		}
		wants[w] = want
		s := replicas[w%2]
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for i := range opsEach {
				u := users[rng.IntN(len(users))]
				d := fmt.Sprintf("w%d-d%d", w, rng.IntN(2))
				if rng.IntN(3) == 0 {
					_, had := want[u][d]
					found, err := s.Unbind(ctx, u, d)
					if err != nil || found != had {
						t.Errorf("worker %d: Unbind(%s, %s) = %v, %v; want found %v", w, u, d, found, err, had)
					}
					delete(want[u], d)
					continue
				}
				token := fmt.Sprintf("tok-w%d-%d", w, i)
				if err := s.Bind(ctx, u, d, Binding{CertificateName: "fcm", Token: token}); err != nil {
					t.Errorf("worker %d: Bind(%s, %s): %v", w, u, d, err)
				}
				want[u][d] = token
			}
		}()
	}
	wg.Wait()

	want := map[string]map[string]string{}
	bindings := 0
	for _, u := range users {
		want[u] = map[string]string{}
		for _, wm := range wants {
			for d, tok := range wm[u] {
				want[u][d] = tok
				bindings++
			}
		}
	}
	t.Logf("%d bindings left after %d calls; conflicts seen: %v", bindings, workers*opsEach, syncMapKeys(&conflicts))

	for i, s := range replicas {
		eventually(t, fmt.Sprintf("replica %d's cache to hold exactly the final bindings", i), func() bool {
			for _, u := range users {
				got, err := s.Get(ctx, u)
				if err != nil || !cmp.Equal(want[u], deviceTokens(got)) {
					return false
				}
			}
			return true
		})
	}
	stored := readShards(t, cs, ns, cfg)
	count := 0
	for _, u := range users {
		got := deviceTokens(stored[UserKey(u)])
		if diff := cmp.Diff(want[u], got); diff != "" {
			t.Errorf("stored devices of %s (-want +got):\n%s", u, diff)
		}
		count += len(got)
	}
	if count != bindings {
		t.Errorf("the Secrets hold %d bindings, want %d", count, bindings)
	}
}

func syncMapKeys(m *sync.Map) []string {
	var keys []string
	m.Range(func(k, _ any) bool { keys = append(keys, k.(string)); return true })
	return keys
}

// putGate holds the first PUT to the API server until released, so a test
// can queue calls behind a write in flight.
type putGate struct {
	rt      http.RoundTripper
	entered chan struct{}
	release chan struct{}
	mu      sync.Mutex
	puts    int
}

func (g *putGate) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method == http.MethodPut {
		g.mu.Lock()
		g.puts++
		first := g.puts == 1
		g.mu.Unlock()
		if first {
			close(g.entered)
			<-g.release
		}
	}
	return g.rt.RoundTrip(req)
}

func (g *putGate) count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.puts
}

func gatedClient(t *testing.T, cfg *rest.Config) (*kube.Client, *putGate) {
	gate := &putGate{entered: make(chan struct{}), release: make(chan struct{})}
	gated := rest.CopyConfig(cfg)
	gated.Wrap(func(rt http.RoundTripper) http.RoundTripper { gate.rt = rt; return gate })
	return kube.NewForConfigOrDie(gated), gate
}

// TestSecretsGroupCommit queues calls behind a write in flight and checks
// they go out as one Update, where the one call that would overflow the
// shard is refused and the others commit.
func TestSecretsGroupCommit(t *testing.T) {
	restCfg, cs := apiServer(t)
	ns := testenv.Namespace(t, cs, "store")
	cfg := testConfig(1)
	cfg.MaxShardBytes = 4096
	createShards(t, cs, ns, cfg)
	gated, gate := gatedClient(t, restCfg)
	var mu sync.Mutex
	var batches []int
	s := startSecrets(t, gated, ns, cfg, SecretsOptions{Metrics: MetricsHooks{OnBatch: func(_ string, n int) {
		mu.Lock()
		defer mu.Unlock()
		batches = append(batches, n)
	}}})

	errs := make(chan error, 12)
	bind := func(user, token string) {
		go func() { errs <- s.Bind(ctx, user, "d1", Binding{CertificateName: "fcm", Token: token}) }()
	}
	bind("first", "tok-first")
	<-gate.entered
	for i := range 10 {
		bind(fmt.Sprintf("user-%d", i), fmt.Sprintf("tok-%d", i))
		eventually(t, "the call to queue", func() bool { return len(s.shards[0].queue) == i+1 })
	}
	bind("big", strings.Repeat("b", 3000))
	eventually(t, "the big call to queue", func() bool { return len(s.shards[0].queue) == 11 })
	close(gate.release)

	var full []error
	for range 12 {
		if err := <-errs; err != nil {
			full = append(full, err)
		}
	}
	if len(full) != 1 || !errors.Is(full[0], ErrShardFull) || !strings.Contains(full[0].Error(), "chat-devices-000") {
		t.Fatalf("errors = %v, want exactly one ErrShardFull naming the shard", full)
	}
	if n := gate.count(); n != 2 {
		t.Errorf("%d Updates for 12 calls, want 2 (one in flight, one for the queued batch)", n)
	}
	mu.Lock()
	if !cmp.Equal(batches, []int{1, 11}) {
		t.Errorf("batch sizes = %v, want [1 11]", batches)
	}
	mu.Unlock()
	stored := readShards(t, cs, ns, cfg)
	if _, ok := stored[UserKey("big")]; ok {
		t.Error("the refused record was stored")
	}
	if len(stored) != 11 {
		t.Errorf("%d records stored, want 11", len(stored))
	}
}

// TestSecretsFillAnnotation checks the annotation the operator reads fill
// from, and that Memory counts fill the same way.
func TestSecretsFillAnnotation(t *testing.T) {
	_, cs := apiServer(t)
	ns := testenv.Namespace(t, cs, "store")
	cfg := testConfig(1)
	createShards(t, cs, ns, cfg)
	clk := newClock()
	s := startSecrets(t, adminClient(t), ns, cfg, SecretsOptions{Now: clk.Now})
	// The same calls on a Memory store must account the same bytes.
	mem := NewMemory(cfg, clk.Now)
	name := cfg.ShardName(0)

	check := func(want int64) {
		t.Helper()
		sec, err := cs.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var size int64
		for k, v := range sec.Data {
			size += int64(len(k) + len(v))
		}
		if want < 0 {
			want = size
		}
		if got := sec.Annotations[AnnotationFillBytes]; got != strconv.FormatInt(want, 10) || size != want {
			t.Errorf("fill annotation %q and data size %d, want %d", got, size, want)
		}
		if got := s.ShardFill()[name]; got != want {
			t.Errorf("ShardFill = %d, want %d", got, want)
		}
		if got := mem.ShardFill()[name]; got != want {
			t.Errorf("Memory ShardFill = %d, want %d", got, want)
		}
		if sec.Labels[LabelTenant] != "chat" || sec.Type != SecretType {
			t.Errorf("labels %v and type %q were not kept", sec.Labels, sec.Type)
		}
	}
	for _, st := range []Store{s, mem} {
		for i := range 5 {
			mustBind(t, st, fmt.Sprintf("user-%d", i), "d1", Binding{CertificateName: "fcm", Token: "token"})
		}
	}
	check(-1)
	for _, st := range []Store{s, mem} {
		for i := range 5 {
			if _, err := st.DeleteUser(ctx, fmt.Sprintf("user-%d", i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	check(0)
}

// TestSecretsCacheFollowsOtherReplica: one replica's writes reach the other's
// cache through its watch.
func TestSecretsCacheFollowsOtherReplica(t *testing.T) {
	_, cs := apiServer(t)
	ns := testenv.Namespace(t, cs, "store")
	cfg := testConfig(2)
	createShards(t, cs, ns, cfg)
	a := startSecrets(t, adminClient(t), ns, cfg, SecretsOptions{})
	b := startSecrets(t, adminClient(t), ns, cfg, SecretsOptions{})

	mustBind(t, a, "alice", "phone", Binding{CertificateName: "apns", Token: "tok-a"})
	eventually(t, "b to see alice's phone", func() bool {
		u, err := b.Get(ctx, "alice")
		return err == nil && cmp.Equal(deviceTokens(u), map[string]string{"phone": "tok-a"})
	})
	if _, err := a.Unbind(ctx, "alice", "phone"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "b to see alice's phone go", func() bool {
		u, err := b.Get(ctx, "alice")
		return err == nil && len(u.Devices) == 0
	})
	eventually(t, "both replicas to report the same fill", func() bool { return cmp.Equal(a.ShardFill(), b.ShardFill()) })
}

// TestSecretsRemoveTokenAcrossReplicas: a replica whose cache predates the
// re-registration of the same token must not delete it.
func TestSecretsRemoveTokenAcrossReplicas(t *testing.T) {
	_, cs := apiServer(t)
	ns := testenv.Namespace(t, cs, "store")
	cfg := testConfig(1)
	createShards(t, cs, ns, cfg)
	clk := newClock()
	a := startSecrets(t, adminClient(t), ns, cfg, SecretsOptions{Now: clk.Now})
	b := startSecrets(t, adminClient(t), ns, cfg, SecretsOptions{Now: clk.Now})

	mustBind(t, a, "u", "d1", Binding{CertificateName: "apns", Token: "same"})
	sent := clk.Now()
	eventually(t, "b to see the binding it will send to", func() bool {
		u, err := b.Get(ctx, "u")
		return err == nil && len(u.Devices) == 1
	})
	seen := b.shards[0].current()
	rebound := clk.Advance(time.Second)
	mustBind(t, a, "u", "d1", Binding{CertificateName: "apns", Token: "same"})
	eventually(t, "b's watch to deliver the re-registration", func() bool { return b.shards[0].current() != seen })
	// Put b's cache back to before the re-registration, as if its watch
	// lagged: its write must conflict, re-read and then leave the binding.
	b.shards[0].mu.Lock()
	b.shards[0].secret, b.shards[0].rv = seen, seen.ResourceVersion
	b.shards[0].mu.Unlock()
	var conflicts atomic.Int32
	b.opts.Metrics.OnConflict = func(string) { conflicts.Add(1) }
	wantFound(t, "compare-and-delete of the re-registered token", false)(b.RemoveToken(ctx, "u", "d1", "apns", "same", sent))
	if conflicts.Load() != 1 {
		t.Errorf("%d conflicts, want 1 (the stale write)", conflicts.Load())
	}
	stored := readShards(t, cs, ns, cfg)[UserKey("u")]
	if len(stored.Devices) != 1 || !stored.Devices[0].Bindings[0].BoundAt.Equal(rebound) {
		t.Fatalf("stored record %+v, want the binding re-registered at %v", stored, rebound)
	}
	wantFound(t, "compare-and-delete after the re-registration", true)(b.RemoveToken(ctx, "u", "d1", "apns", "same", rebound))
	eventually(t, "a to see the token removed", func() bool {
		u, err := a.Get(ctx, "u")
		return err == nil && len(u.Devices) == 0
	})
}

// TestSecretsStartNeedsEveryShard: the store never creates shards; a missing
// or foreign Secret keeps it not ready.
func TestSecretsStartNeedsEveryShard(t *testing.T) {
	_, cs := apiServer(t)
	ns := testenv.Namespace(t, cs, "store")
	cfg := testConfig(2)
	if _, err := cs.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: cfg.ShardName(0), Namespace: ns}, Type: SecretType,
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	s := NewSecrets(adminClient(t), ns, cfg, SecretsOptions{})
	err := s.Start(ctx)
	if err == nil || !strings.Contains(err.Error(), ns+"/chat-devices-001") || !apierrors.IsNotFound(err) {
		t.Fatalf("Start = %v, want not found naming chat-devices-001", err)
	}
	if s.Ready() {
		t.Error("Ready with a shard missing")
	}
	if err := s.Bind(ctx, "u", "d1", Binding{CertificateName: "fcm", Token: "t"}); !errors.Is(err, ErrNotReady) {
		t.Errorf("Bind before a successful Start = %v, want ErrNotReady", err)
	}
	if _, err := s.Get(ctx, "u"); !errors.Is(err, ErrNotReady) {
		t.Errorf("Get before a successful Start = %v, want ErrNotReady", err)
	}
	if _, err := cs.CoreV1().Secrets(ns).Get(ctx, cfg.ShardName(1), metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the store created the missing shard (get: %v)", err)
	}

	if _, err := cs.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: cfg.ShardName(1), Namespace: ns}, Type: corev1.SecretTypeOpaque,
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(ctx); err == nil || !strings.Contains(err.Error(), "not a token store shard") {
		t.Fatalf("Start over an Opaque Secret = %v, want a refusal", err)
	}
}

// TestSecretsShardDeletedAndRecreated: a shard deleted under a running store
// makes it not ready and fails writes to it; the operator re-creating it
// brings it back.
func TestSecretsShardDeletedAndRecreated(t *testing.T) {
	_, cs := apiServer(t)
	ns := testenv.Namespace(t, cs, "store")
	cfg := testConfig(1)
	createShards(t, cs, ns, cfg)
	runCtx, stop := context.WithCancel(context.Background())
	defer stop()
	s := NewSecrets(adminClient(t), ns, cfg, SecretsOptions{})
	if err := s.Start(runCtx); err != nil {
		t.Fatal(err)
	}
	if err := cs.CoreV1().Secrets(ns).Delete(ctx, cfg.ShardName(0), metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the store to become not ready", func() bool { return !s.Ready() })
	if err := s.Bind(ctx, "u", "d1", Binding{CertificateName: "fcm", Token: "t"}); !errors.Is(err, ErrNotReady) {
		t.Errorf("Bind into a deleted shard = %v, want ErrNotReady", err)
	}
	createShards(t, cs, ns, cfg)
	eventually(t, "the store to be ready again", s.Ready)
	mustBind(t, s, "u", "d1", Binding{CertificateName: "fcm", Token: "t"})

	stop()
	eventually(t, "a stopped store to be not ready", func() bool { return !s.Ready() })
	if _, err := s.Get(ctx, "u"); !errors.Is(err, ErrNotReady) {
		t.Errorf("Get after stop = %v, want ErrNotReady", err)
	}
}

// dispatcherVerbs are all the store needs on its shard Secrets.
var dispatcherVerbs = []string{"get", "watch", "update"}

// TestSecretsRunsAsRestrictedServiceAccount runs the store as a
// ServiceAccount whose Role grants only dispatcherVerbs on the shard names,
// as the operator renders it, with a token from the TokenRequest API.
func TestSecretsRunsAsRestrictedServiceAccount(t *testing.T) {
	restCfg, cs := apiServer(t)
	ns := testenv.Namespace(t, cs, "store")
	cfg := testConfig(2)
	createShards(t, cs, ns, cfg)
	other := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "someone-else", Namespace: ns}, StringData: map[string]string{"k": "v"}}
	if _, err := cs.CoreV1().Secrets(ns).Create(ctx, other, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "chat-dispatcher", Namespace: ns}}
	if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, sa, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	role := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "chat-dispatcher", Namespace: ns},
		Rules: []rbacv1.PolicyRule{{
			APIGroups: []string{""}, Resources: []string{"secrets"},
			ResourceNames: cfg.ShardNames(), Verbs: dispatcherVerbs,
		}},
	}
	if _, err := cs.RbacV1().Roles(ns).Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	binding := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "chat-dispatcher", Namespace: ns},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: sa.Name, Namespace: ns}},
	}
	if _, err := cs.RbacV1().RoleBindings(ns).Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	expiry := int64(3600)
	tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa.Name,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &expiry}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	restricted := kube.NewForConfigOrDie(&rest.Config{
		Host:            restCfg.Host,
		TLSClientConfig: rest.TLSClientConfig{CAData: restCfg.CAData},
		BearerToken:     tr.Status.Token,
	})
	secrets := restricted.Secrets(ns)
	// RBAC reaches the authorizer through its informers; wait for the binding.
	eventually(t, "the Role to take effect", func() bool {
		_, err := secrets.Get(ctx, cfg.ShardName(0), metav1.GetOptions{})
		return err == nil
	})
	if _, err := secrets.Get(ctx, other.Name, metav1.GetOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("get of another Secret = %v, want forbidden", err)
	}
	if _, err := secrets.List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("list of the namespace's Secrets = %v, want forbidden", err)
	}
	if _, err := secrets.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "new"}}, metav1.CreateOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("create = %v, want forbidden", err)
	}

	s := startSecrets(t, restricted, ns, cfg, SecretsOptions{})
	admin := startSecrets(t, adminClient(t), ns, cfg, SecretsOptions{})
	for _, u := range []string{"alice", "bob", "carol", "dave"} {
		mustBind(t, s, u, "phone", Binding{CertificateName: "fcm", Token: "tok-" + u})
	}
	wantFound(t, "unbind as the ServiceAccount", true)(s.Unbind(ctx, "dave", "phone"))
	// Another writer's change reaches the restricted store through its watches.
	mustBind(t, admin, "erin", "phone", Binding{CertificateName: "fcm", Token: "tok-erin"})
	eventually(t, "the restricted store to see erin", func() bool {
		u, err := s.Get(ctx, "erin")
		return err == nil && len(u.Devices) == 1
	})
	stored := readShards(t, cs, ns, cfg)
	if len(stored) != 4 {
		t.Errorf("%d records stored, want 4", len(stored))
	}
	sec, err := cs.CoreV1().Secrets(ns).Get(ctx, cfg.ShardName(ShardIndex("alice", cfg.Shards)), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	managers := map[string]bool{}
	for _, mf := range sec.ManagedFields {
		managers[mf.Manager] = true
	}
	if !managers[DefaultFieldManager] {
		t.Errorf("field managers %v lack %s", managers, DefaultFieldManager)
	}
}

// TestSecretsWriteBudget: once the bytes-per-second budget is spent, a write
// waits for it, and a caller that gives up first leaves nothing written.
func TestSecretsWriteBudget(t *testing.T) {
	_, cs := apiServer(t)
	ns := testenv.Namespace(t, cs, "store")
	cfg := testConfig(1)
	// One byte a second with a burst of one second: the first write already
	// waits far beyond its caller's deadline.
	cfg.MaxShardBytes = 1024
	cfg.WriteBudgetBytesPerSecond = 1
	createShards(t, cs, ns, cfg)
	var written atomic.Int64
	s := startSecrets(t, adminClient(t), ns, cfg, SecretsOptions{Metrics: MetricsHooks{OnWrite: func(_ string, n int) { written.Add(int64(n)) }}})

	for i := 0; ; i++ {
		user := fmt.Sprintf("user-%d", i)
		callCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := s.Bind(callCtx, user, "d1", Binding{CertificateName: "fcm", Token: "token"})
		cancel()
		if err == nil {
			if i > 10 {
				t.Fatalf("%d writes of %d bytes in all passed a 1024-byte budget", i+1, written.Load())
			}
			continue
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Bind(%s) = %v, want the caller's deadline", user, err)
		}
		if written.Load() > 1024 {
			t.Errorf("%d bytes written, above the 1024-byte burst", written.Load())
		}
		if _, ok := readShards(t, cs, ns, cfg)[UserKey(user)]; ok {
			t.Errorf("%s was written although its caller gave up waiting for the budget", user)
		}
		return
	}
}
