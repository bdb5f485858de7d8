// Command demo runs the whole system on this machine with no cluster and
// tells what happens: `make demo`.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	pushv1 "github.com/imcloud/im-push-operator/api/v1alpha1"
	"github.com/imcloud/im-push-operator/dispatcher/providers/fake"
	"github.com/imcloud/im-push-operator/hack/localrun"
)

const (
	ns     = "chat"
	tenant = "chat-app"
)

func main() {
	bin := flag.String("dispatcher", "bin/dispatcher", "dispatcher binary")
	noWait := flag.Bool("no-wait", false, "exit after the story instead of waiting for Ctrl-C")
	flag.Parse()
	if err := run(*bin, *noWait); err != nil {
		fmt.Fprintln(os.Stderr, "demo failed:", err)
		os.Exit(1)
	}
}

func step(format string, args ...any) { fmt.Printf("\n==> "+format+"\n", args...) }
func say(format string, args ...any)  { fmt.Printf("    "+format+"\n", args...) }

func run(bin string, noWait bool) error {
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()

	step("Starting a local control plane (kube-apiserver + etcd built from Go modules), the operator and eight fake providers")
	logf, err := os.CreateTemp("", "im-push-demo-dispatchers-*.log")
	if err != nil {
		return err
	}
	defer os.Remove(logf.Name())
	sys, err := localrun.Start(ctx, localrun.Options{DispatcherBinary: bin, ProcessLog: logf})
	if err != nil {
		return err
	}
	defer func() {
		step("Stopping every process the demo started and removing its files")
		if err := sys.Stop(); err != nil {
			say("stop: %v", err)
		}
	}()
	say("API server: %s (kubeconfig %s)", sys.Config.Host, sys.Kubeconfig)

	step("Applying credential Secrets (made for the fakes, with the fakes' CA as caBundle), 8 PushCertificates, a PushPolicy and the AppTenant %s/%s", ns, tenant)
	certs, err := sys.Certificates()
	if err != nil {
		return err
	}
	policy := pushv1.PushPolicySpec{Notification: pushv1.NotificationSpec{Title: "{{.Sender.DisplayName}}", Body: "{{.Text}}"}}
	if err := sys.InstallTenant(ctx, ns, tenant, certs, policy, 1); err != nil {
		return err
	}
	say("The operator renders the dispatcher Deployment; the local runner starts it as a process with a ServiceAccount token.")
	if err := waitReady(ctx, sys); err != nil {
		return err
	}
	kubectl(sys, "get", "impush", "-n", ns, "-o", "wide")

	token, err := sys.APIToken(ctx, ns, tenant)
	if err != nil {
		return err
	}
	api := &localrun.API{URL: sys.Runner.Replicas(ns, tenant)[0].URL, Token: token}

	step("Registering devices over the dispatcher API (%s)", api.URL)
	apnsTok := strings.Repeat("a1", 32)
	for _, b := range [][4]string{
		{"alice", "iphone", "apns-demo", apnsTok}, {"alice", "mate60", "huawei-demo", "huawei-token-alice"},
		{"alice", "mate60", "fcm-demo", "fcm-token-alice"}, {"bob", "redmi", "xiaomi-demo", "xiaomi-token-bob"},
		{"bob", "reno", "oppo-demo", "CN_oppo-token-bob"}, {"bob", "x100", "vivo-demo", "vivo-token-bob"},
		{"bob", "pro7", "meizu-demo", "meizu-token-bob"}, {"bob", "magic6", "honor-demo", "honor-token-bob"},
	} {
		if err := api.Bind(ctx, b[0], b[1], b[2], b[3]); err != nil {
			return err
		}
		say("%-5s %-7s → %s", b[0], b[1], b[2])
	}

	send := func(title string, n map[string]any) error {
		step("%s", title)
		before := counts(sys)
		st, err := api.Notify(ctx, n)
		if err != nil {
			return err
		}
		for _, d := range st.Devices {
			dev := d.Device
			if dev == "" {
				dev = "(all devices)"
			}
			say("%-5s %-14s %-9s %-12s %s", d.User, dev, d.State, d.Provider, d.Reason)
		}
		for _, f := range fakes(sys) {
			for _, r := range f.Received()[before[f.Provider]:] {
				if r.Answered != "" {
					say("  %-7s answered %s to %s…", f.Provider, r.Answered, r.Token[:8])
					continue
				}
				say("  %-7s received %q / %q for %s…", f.Provider, r.Title, r.Body, r.Token[:8])
			}
		}
		return nil
	}
	msg := func(id, text string, recipients ...map[string]any) map[string]any {
		return map[string]any{"id": id, "sender": map[string]string{"id": "carol", "displayName": "Carol"},
			"conversation": map[string]string{"id": "dm-" + id, "type": "single"},
			"recipients":   recipients, "message": map[string]any{"text": text}}
	}
	rcpt := func(user string, online ...string) map[string]any {
		return map[string]any{"userId": user, "onlineDevices": online}
	}

	if err := send("A message to offline Alice and Bob: every device gets it through its own provider (vendor first)", msg("m1", "Dinner at 8?", rcpt("alice"), rcpt("bob"))); err != nil {
		return err
	}
	if err := send("Alice's desktop is online: AllOffline skips her phones", msg("m2", "Still on?", rcpt("alice", "desktop"))); err != nil {
		return err
	}
	tr := msg("m3", "typing…", rcpt("alice"))
	tr["message"] = map[string]any{"text": "typing…", "transient": true}
	if err := send("A transient message (typing indicator) never pushes", tr); err != nil {
		return err
	}
	now := time.Now().UTC()
	if err := api.Do(ctx, "PUT", "/v1/users/bob/settings", map[string]any{"quietHours": map[string]any{
		"start": now.Add(-time.Hour).Format("15:04"), "end": now.Add(time.Hour).Format("15:04"), "timeZone": "UTC", "mentionsBreakThrough": true}}, 204, nil); err != nil {
		return err
	}
	if err := send("Bob set quiet hours around now: a plain message is held back", msg("m4", "ping", rcpt("bob"))); err != nil {
		return err
	}
	mention := msg("m5", "@bob the build is red", rcpt("bob"))
	mention["message"] = map[string]any{"text": "@bob the build is red", "mentions": []string{"bob"}}
	if err := send("…but a mention breaks through", mention); err != nil {
		return err
	}
	sys.Huawei.State.Script("huawei-token-alice", fake.Answer{Code: "80300007"})
	if err := send("Huawei says Alice's token is invalid: it is removed from the store and FCM is tried next", msg("m6", "See you", rcpt("alice"))); err != nil {
		return err
	}

	step("Rotating the APNs signing key in its Secret: no restart")
	keyID, err := sys.RotateAPNsKey(ctx, ns, "apns-demo")
	if err != nil {
		return err
	}
	for i := 0; ; i++ {
		if _, err := api.Notify(ctx, msg(fmt.Sprintf("rot-%d", i), "new key", rcpt("alice"))); err != nil {
			return err
		}
		r := sys.APNs.State.Received()
		if kid := r[len(r)-1].Fields["kid"]; kid == keyID {
			say("APNs request %d after the rotation is signed with the new key id %s (same dispatcher process)", i+1, kid)
			break
		}
		if i > 100 {
			return fmt.Errorf("the new key was not used")
		}
		time.Sleep(200 * time.Millisecond)
	}

	step("The tenant, as kubectl sees it")
	kubectl(sys, "get", "impush", "-n", ns, "-o", "wide")
	kubectl(sys, "describe", "apptenant", "-n", ns, tenant)
	step("Try it by hand")
	say("export KUBECONFIG=%s", sys.Kubeconfig)
	say("kubectl get impush -A -o wide")
	say("TOKEN=$(kubectl get secret -n %s %s-dispatcher-auth -o jsonpath='{.data.token}' | base64 -d)", ns, tenant)
	say("curl -H \"Authorization: Bearer $TOKEN\" %s/v1/users/alice/devices", api.URL)
	say("dispatcher logs: %s", logf.Name())
	if noWait {
		return nil
	}
	say("Press Ctrl-C to stop.")
	<-ctx.Done()
	return nil
}

func waitReady(ctx context.Context, sys *localrun.System) error {
	deadline := time.Now().Add(2 * time.Minute)
	last := ""
	for time.Now().Before(deadline) {
		at := &pushv1.AppTenant{}
		if err := sys.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: tenant}, at); err == nil {
			for _, c := range at.Status.Conditions {
				if c.Type == pushv1.ConditionReady {
					if line := fmt.Sprintf("Ready=%s %s: %s", c.Status, c.Reason, c.Message); line != last {
						say("%s", line)
						last = line
					}
					if c.Status == metav1.ConditionTrue {
						return nil
					}
				}
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("tenant not Ready after 2 minutes")
}

func fakes(sys *localrun.System) []*fake.State {
	return []*fake.State{sys.APNs.State, sys.FCM.State, sys.Huawei.State, sys.Honor.State, sys.Xiaomi.State, sys.OPPO.State, sys.Vivo.State, sys.Meizu.State}
}

func counts(sys *localrun.System) map[string]int {
	out := map[string]int{}
	for _, f := range fakes(sys) {
		out[f.Provider] = f.Count()
	}
	return out
}

func kubectl(sys *localrun.System, args ...string) {
	fmt.Printf("    $ kubectl %s\n", strings.Join(args, " "))
	cmd := exec.Command("kubectl", append([]string{"--kubeconfig", sys.Kubeconfig}, args...)...)
	out, err := cmd.CombinedOutput()
	for _, l := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		fmt.Println("    " + l)
	}
	if err != nil {
		say("(kubectl: %v)", err)
	}
}
