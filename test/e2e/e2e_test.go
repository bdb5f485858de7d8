// Package e2e drives the whole system on one machine, as `make demo` shows
// it: the API server, the operator, every fake provider, and the tenant's
// dispatcher run as a local process under its own ServiceAccount token.
package e2e

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	pushv1 "github.com/imcloud/im-push-operator/api/v1alpha1"
	"github.com/imcloud/im-push-operator/dispatcher/config"
	"github.com/imcloud/im-push-operator/dispatcher/providers/fake"
	"github.com/imcloud/im-push-operator/dispatcher/store"
	"github.com/imcloud/im-push-operator/hack/localrun"
	"github.com/imcloud/im-push-operator/internal/testenv"
)

const (
	ns     = "chat"
	tenant = "chat-app"
	wait   = 60 * time.Second
)

// buildDispatcher compiles the dispatcher binary the runner starts.
func buildDispatcher(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "dispatcher")
	cmd := exec.Command("go", "build", "-o", bin, "./dispatcher/cmd/dispatcher")
	cmd.Dir = testenv.RepoRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the dispatcher: %v\n%s", err, out)
	}
	return bin
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

func tenantCondition(ctx context.Context, c client.Client, typ string) (metav1.Condition, error) {
	at := &pushv1.AppTenant{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: tenant}, at); err != nil {
		return metav1.Condition{}, err
	}
	for _, cond := range at.Status.Conditions {
		if cond.Type == typ {
			return cond, nil
		}
	}
	return metav1.Condition{}, fmt.Errorf("no %s condition yet", typ)
}

func states(st *localrun.Status) map[string]string {
	out := map[string]string{}
	for _, d := range st.Devices {
		out[d.User+"/"+d.Device] = d.State + ":" + d.Reason
	}
	return out
}

func received(s *fake.State, token string) []fake.Received {
	var out []fake.Received
	for _, r := range s.Received() {
		if r.Token == token && r.Answered == "" {
			out = append(out, r)
		}
	}
	return out
}

func notification(id, sender, text string, recipients ...map[string]any) map[string]any {
	return map[string]any{
		"id":           id,
		"sender":       map[string]string{"id": sender, "displayName": strings.ToUpper(sender[:1]) + sender[1:]},
		"conversation": map[string]string{"id": "c-" + id, "type": "single"},
		"recipients":   recipients,
		"message":      map[string]any{"text": text},
	}
}

func recipient(user string, online ...string) map[string]any {
	return map[string]any{"userId": user, "onlineDevices": online}
}

func TestEndToEnd(t *testing.T) {
	ctx := context.Background()
	bin := buildDispatcher(t)
	sys, err := localrun.Start(ctx, localrun.Options{DispatcherBinary: bin, ProcessLog: testLog{t}})
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			_ = sys.Stop()
		}
	}()

	certs, err := sys.Certificates()
	if err != nil {
		t.Fatal(err)
	}
	if err := sys.InstallTenant(ctx, ns, tenant, certs, pushv1.PushPolicySpec{
		Notification: pushv1.NotificationSpec{Title: "{{.Sender.DisplayName}}", Body: "{{.Text}}"},
	}, 1); err != nil {
		t.Fatal(err)
	}

	t.Log("the tenant becomes Ready once its dispatcher serves")
	until(t, "tenant Ready", func() error {
		c, err := tenantCondition(ctx, sys.Client, pushv1.ConditionReady)
		if err == nil && c.Status != metav1.ConditionTrue {
			err = fmt.Errorf("%s: %s", c.Reason, c.Message)
		}
		return err
	})
	token, err := sys.APIToken(ctx, ns, tenant)
	if err != nil {
		t.Fatal(err)
	}
	reps := sys.Runner.Replicas(ns, tenant)
	if len(reps) != 1 || !reps[0].Ready {
		t.Fatalf("replicas: %+v", reps)
	}
	api := &localrun.API{URL: reps[0].URL, Token: token}

	apnsTok := strings.Repeat("a1", 32)
	binds := []struct{ user, device, cert, token string }{
		{"alice", "iphone", "apns-demo", apnsTok},
		{"alice", "mate", "huawei-demo", "huawei-token-alice-0001"},
		{"alice", "mate", "fcm-demo", "fcm-token-alice-mate"},
		{"bob", "redmi", "xiaomi-demo", "xiaomi-token-bob"},
		{"bob", "reno", "oppo-demo", "CN_oppo-token-bob"},
		{"bob", "x100", "vivo-demo", "vivo-token-bob"},
		{"bob", "meizu", "meizu-demo", "meizu-token-bob"},
		{"bob", "magic", "honor-demo", "honor-token-bob"},
		{"erin", "pixel", "fcm-demo", "fcm-token-erin"},
	}
	for _, b := range binds {
		if err := api.Bind(ctx, b.user, b.device, b.cert, b.token); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("every provider receives in its own format", func(t *testing.T) {
		st, err := api.Notify(ctx, notification("n1", "carol", "hello", recipient("alice"), recipient("bob"), recipient("erin")))
		if err != nil {
			t.Fatal(err)
		}
		got := states(st)
		for _, key := range []string{"alice/iphone", "alice/mate", "bob/redmi", "bob/reno", "bob/x100", "bob/meizu", "bob/magic", "erin/pixel"} {
			if !strings.HasPrefix(got[key], "delivered") {
				t.Errorf("%s: %s (all: %v)", key, got[key], got)
			}
		}
		for _, c := range []struct {
			state *fake.State
			token string
		}{
			{sys.APNs.State, apnsTok}, {sys.Huawei.State, "huawei-token-alice-0001"}, {sys.Xiaomi.State, "xiaomi-token-bob"},
			{sys.OPPO.State, "CN_oppo-token-bob"}, {sys.Vivo.State, "vivo-token-bob"}, {sys.Meizu.State, "meizu-token-bob"},
			{sys.Honor.State, "honor-token-bob"}, {sys.FCM.State, "fcm-token-erin"},
		} {
			r := received(c.state, c.token)
			if len(r) != 1 || r[0].Title != "Carol" || r[0].Body != "hello" {
				t.Errorf("%s received %+v", c.state.Provider, r)
			}
		}
		// VendorFirst: Alice's Huawei phone got it through Huawei, not FCM.
		if n := len(received(sys.FCM.State, "fcm-token-alice-mate")); n != 0 {
			t.Errorf("FCM received %d for a device whose vendor channel worked", n)
		}
		if r := received(sys.Huawei.State, "huawei-token-alice-0001"); len(r) == 1 && r[0].Fields["category"] != "IM" {
			t.Errorf("Huawei category %q, want IM", r[0].Fields["category"])
		}
		// Every client library reports its request written (httptrace), so
		// each provider's send latency has this notification's delivery
		// (observed by the goroutine that wrote it, which the answer can
		// overtake: polled).
		until(t, "every provider's send latency observed once", func() error {
			resp, err := http.Get(api.URL + "/metrics")
			if err != nil {
				return err
			}
			metrics, err := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if err != nil {
				return err
			}
			for _, p := range []string{"APNs", "FCM", "Huawei", "Honor", "Xiaomi", "OPPO", "Vivo", "Meizu"} {
				if want := `impush_dispatcher_send_latency_seconds_count{provider="` + p + `"} 1`; !strings.Contains(string(metrics), want) {
					return fmt.Errorf("metrics lack %s", want)
				}
			}
			return nil
		})
	})

	t.Run("policy skips", func(t *testing.T) {
		before := sys.APNs.State.Count()
		st, err := api.Notify(ctx, notification("n2", "carol", "are you there", recipient("alice", "desktop")))
		if err != nil {
			t.Fatal(err)
		}
		if got := states(st); got["alice/"] != "skipped:DeviceOnline" {
			t.Errorf("AllOffline with a device online: %v", got)
		}
		tr := notification("n3", "carol", "typing", recipient("alice"))
		tr["message"] = map[string]any{"text": "typing", "transient": true}
		st, err = api.Notify(ctx, tr)
		if err != nil {
			t.Fatal(err)
		}
		if got := states(st); got["alice/"] != "skipped:Transient" {
			t.Errorf("transient: %v", got)
		}
		if sys.APNs.State.Count() != before {
			t.Error("a skipped notification reached APNs")
		}
	})

	t.Run("quiet hours let mentions through", func(t *testing.T) {
		now := time.Now().UTC()
		settings := map[string]any{"quietHours": map[string]any{
			"start": now.Add(-time.Hour).Format("15:04"), "end": now.Add(time.Hour).Format("15:04"),
			"timeZone": "UTC", "mentionsBreakThrough": true,
		}}
		if err := api.Do(ctx, "PUT", "/v1/users/bob/settings", settings, 204, nil); err != nil {
			t.Fatal(err)
		}
		st, err := api.Notify(ctx, notification("n4", "carol", "late", recipient("bob")))
		if err != nil {
			t.Fatal(err)
		}
		if got := states(st); got["bob/"] != "skipped:QuietHours" {
			t.Errorf("quiet hours: %v", got)
		}
		m := notification("n5", "carol", "@bob urgent", recipient("bob"))
		m["message"] = map[string]any{"text": "@bob urgent", "mentions": []string{"bob"}}
		st, err = api.Notify(ctx, m)
		if err != nil {
			t.Fatal(err)
		}
		if got := states(st); !strings.HasPrefix(got["bob/redmi"], "delivered") {
			t.Errorf("mention during quiet hours: %v", got)
		}
	})

	t.Run("an invalid token is removed and the next binding used", func(t *testing.T) {
		sys.Huawei.State.Script("huawei-token-alice-0001", fake.Answer{Code: "80300007"})
		st, err := api.Notify(ctx, notification("n6", "carol", "again", recipient("alice")))
		if err != nil {
			t.Fatal(err)
		}
		if got := states(st); !strings.HasPrefix(got["alice/mate"], "delivered") {
			t.Errorf("fallback to FCM: %v", got)
		}
		if n := len(received(sys.FCM.State, "fcm-token-alice-mate")); n != 1 {
			t.Errorf("FCM received %d, want 1", n)
		}
		shard := &corev1.Secret{}
		name := config.TokenStore{ShardPrefix: config.ShardPrefix(tenant)}.ShardName(store.ShardIndex("alice", 4))
		until(t, "token gone from the shard Secret", func() error {
			if err := sys.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, shard); err != nil {
				return err
			}
			rec := string(shard.Data[base64.RawURLEncoding.EncodeToString([]byte("alice"))])
			if strings.Contains(rec, "huawei-token-alice-0001") || !strings.Contains(rec, "fcm-token-alice-mate") {
				return fmt.Errorf("alice's record: %s", rec)
			}
			return nil
		})
	})

	t.Run("each provider's invalid-token answer removes the token", func(t *testing.T) {
		// One device per provider so every binding is tried (no fallback
		// hides a failure); each token is scripted with the provider's own
		// "this token is gone" answer (providers.md).
		cases := []struct {
			state       *fake.State
			cert, token string
			code        string
		}{
			{sys.APNs.State, "apns-demo", strings.Repeat("d4", 32), "Unregistered"},
			{sys.FCM.State, "fcm-demo", "fcm-token-dave", "UNREGISTERED"},
			{sys.Huawei.State, "huawei-demo", "huawei-token-dave-0001", "80300007"},
			{sys.Honor.State, "honor-demo", "honor-token-dave", "expireToken"},
			{sys.Xiaomi.State, "xiaomi-demo", "xiaomi-token-dave", "badregid"},
			{sys.OPPO.State, "oppo-demo", "CN_oppo-token-dave", "10000"},
			{sys.Vivo.State, "vivo-demo", "vivo-token-dave", "invalidUser:1"},
			{sys.Meizu.State, "meizu-demo", "meizu-token-dave", "110002"},
		}
		for _, c := range cases {
			if err := api.Bind(ctx, "dave", "dev-"+c.cert, c.cert, c.token); err != nil {
				t.Fatal(err)
			}
			c.state.Script(c.token, fake.Answer{Code: c.code})
		}
		st, err := api.Notify(ctx, notification("n7", "carol", "gone", recipient("dave")))
		if err != nil {
			t.Fatal(err)
		}
		got := states(st)
		for _, c := range cases {
			if s := got["dave/dev-"+c.cert]; !strings.HasPrefix(s, "failed") {
				t.Errorf("%s answered %s: device state %q (all: %v)", c.state.Provider, c.code, s, got)
			}
		}
		until(t, "every token of dave removed", func() error {
			var devices struct {
				Devices []struct {
					ID       string `json:"id"`
					Bindings []struct {
						CertificateName string `json:"certificateName"`
					} `json:"bindings"`
				} `json:"devices"`
			}
			if err := api.Do(ctx, "GET", "/v1/users/dave/devices", nil, 200, &devices); err != nil {
				return err
			}
			var left []string
			for _, d := range devices.Devices {
				for _, b := range d.Bindings {
					left = append(left, b.CertificateName)
				}
			}
			if len(left) > 0 {
				return fmt.Errorf("bindings left: %v", left)
			}
			return nil
		})
	})

	t.Run("a rotated credential is used without a restart", func(t *testing.T) {
		pid := sys.Runner.Replicas(ns, tenant)[0].PID
		keyID, err := sys.RotateAPNsKey(ctx, ns, "apns-demo")
		if err != nil {
			t.Fatal(err)
		}
		i := 0
		until(t, "APNs request signed with the new key", func() error {
			i++
			if _, err := api.Notify(ctx, notification(fmt.Sprintf("rot-%d", i), "carol", "rotated", recipient("alice"))); err != nil {
				return err
			}
			r := received(sys.APNs.State, apnsTok)
			if kid := r[len(r)-1].Fields["kid"]; kid != keyID {
				return fmt.Errorf("signed with %q, want %q", kid, keyID)
			}
			return nil
		})
		if got := sys.Runner.Replicas(ns, tenant)[0].PID; got != pid {
			t.Errorf("the dispatcher restarted (pid %d → %d)", pid, got)
		}
	})

	t.Run("a killed dispatcher turns DispatcherAvailable False, then True", func(t *testing.T) {
		w, err := sys.Client.Watch(ctx, &pushv1.AppTenantList{}, client.InNamespace(ns))
		if err != nil {
			t.Fatal(err)
		}
		defer w.Stop()
		if err := sys.Runner.Kill(ns, tenant, 0); err != nil {
			t.Fatal(err)
		}
		var seen []metav1.ConditionStatus
		timeout := time.After(wait)
		for !slices.Equal(seen, []metav1.ConditionStatus{metav1.ConditionFalse, metav1.ConditionTrue}) {
			select {
			case ev := <-w.ResultChan():
				at, ok := ev.Object.(*pushv1.AppTenant)
				if !ok || ev.Type != watch.Modified {
					continue
				}
				for _, c := range at.Status.Conditions {
					if c.Type == pushv1.ConditionDispatcherAvailable && (len(seen) == 0 || seen[len(seen)-1] != c.Status) {
						if len(seen) > 0 || c.Status == metav1.ConditionFalse {
							seen = append(seen, c.Status)
						}
					}
				}
			case <-timeout:
				t.Fatalf("DispatcherAvailable went %v", seen)
			}
		}
	})

	t.Run("stop leaves no process behind", func(t *testing.T) {
		pids := []int{}
		for _, r := range sys.Runner.Replicas(ns, tenant) {
			pids = append(pids, r.PID)
		}
		stopped = true
		if err := sys.Stop(); err != nil {
			t.Fatal(err)
		}
		for _, pid := range pids {
			if err := syscall.Kill(pid, 0); err == nil {
				t.Errorf("dispatcher pid %d still running", pid)
			}
		}
		if _, err := os.Stat(sys.Dir); !os.IsNotExist(err) {
			t.Errorf("temporary directory %s left behind", sys.Dir)
		}
	})
}

// testLog sends the dispatcher processes' output to the test log.
type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
