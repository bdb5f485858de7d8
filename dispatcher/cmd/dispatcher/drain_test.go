package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/imcloud/im-push-operator/dispatcher/config"
	"github.com/imcloud/im-push-operator/dispatcher/providers/fake"
	fakeapns "github.com/imcloud/im-push-operator/dispatcher/providers/fake/apns"
	fakehuawei "github.com/imcloud/im-push-operator/dispatcher/providers/fake/huawei"
	"github.com/imcloud/im-push-operator/hack/localrun"
	"github.com/imcloud/im-push-operator/internal/testenv"
)

// process is a dispatcher binary serving one tenant of the test API server.
type process struct {
	cmd  *exec.Cmd
	url  string
	logs *syncBuffer
	// exited is closed when the process has exited, with err its result.
	exited chan struct{}
	err    error
}

// startProcess runs bin for the tenant in namespace and waits until it is
// ready.
func startProcess(t *testing.T, bin, namespace string, drainTimeout time.Duration) *process {
	t.Helper()
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := localrun.WriteKubeconfig(kubeconfig, restCfg, ""); err != nil {
		t.Fatal(err)
	}
	p := &process{logs: &syncBuffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command(bin, "--listen", "127.0.0.1:0", "--drain-timeout", drainTimeout.String(),
		"--kubeconfig", kubeconfig, "--namespace", namespace, "--config-secret", config.ConfigSecretName("chat"))
	p.cmd.Stderr = p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
	})

	deadline := time.Now().Add(30 * time.Second)
	for ; time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if p.url == "" {
			if line := p.logLine("serving"); line != nil {
				p.url = "http://" + line["listen"].(string)
			}
			continue
		}
		if resp, err := http.Get(p.url + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
	}
	t.Fatalf("dispatcher not ready within 30s:\n%s", p.logs)
	return nil
}

// logLine returns the last JSON log line with message msg.
func (p *process) logLine(msg string) map[string]any {
	var found map[string]any
	sc := bufio.NewScanner(strings.NewReader(p.logs.String()))
	for sc.Scan() {
		var line map[string]any
		if json.Unmarshal(sc.Bytes(), &line) == nil && line["msg"] == msg {
			found = line
		}
	}
	return found
}

// load posts notifications, one device each, round robin over users, until
// the dispatcher stops answering.
type load struct {
	accepted, refused, afterRefused, other atomic.Int64
	done                                   chan struct{}
}

func startLoad(url string, users []string) *load {
	l := &load{done: make(chan struct{})}
	hc := &http.Client{Timeout: 10 * time.Second}
	go func() {
		defer close(l.done)
		for i := 0; ; i++ {
			body := fmt.Sprintf(`{"id":"load-%d","sender":{"id":"alice"},"conversation":{"id":"c1","type":"single"},"recipients":[{"userId":%q}],"message":{"text":"hi"}}`,
				i, users[i%len(users)])
			req, _ := http.NewRequest(http.MethodPost, url+"/v1/notifications", strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+apiToken)
			resp, err := hc.Do(req)
			if err != nil {
				// Shut down: the listener is closed.
				return
			}
			resp.Body.Close()
			switch resp.StatusCode {
			case http.StatusAccepted:
				l.accepted.Add(1)
				if l.refused.Load() > 0 {
					l.afterRefused.Add(1)
				}
			case http.StatusServiceUnavailable:
				l.refused.Add(1)
			default:
				l.other.Add(1)
			}
		}
	}()
	return l
}

// waitAccepted waits until the load has n notifications accepted.
func (l *load) waitAccepted(t *testing.T, n int64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for l.accepted.Load() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d notifications accepted within 30s, want %d", l.accepted.Load(), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// sigterm signals p and waits for it to exit within the pod's grace period
// (drain timeout plus the HTTP shutdown grace, and a margin for a loaded
// machine); it returns how long that took.
func (p *process) sigterm(t *testing.T, drainTimeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.exited:
		if p.err != nil {
			t.Fatalf("dispatcher exited with %v:\n%s", p.err, p.logs)
		}
	case <-time.After(drainTimeout + shutdownGrace + 5*time.Second):
		t.Fatalf("dispatcher still running %v after SIGTERM:\n%s", drainTimeout+shutdownGrace+5*time.Second, p.logs)
	}
	return time.Since(start)
}

// received counts the sends each fake answered with success.
func received(states ...*fake.State) int {
	n := 0
	for _, s := range states {
		for _, r := range s.Received() {
			if r.Answered == "" {
				n++
			}
		}
	}
	return n
}

// TestSIGTERMUnderLoad runs the dispatcher binary against the test API server
// and the APNs and Huawei fakes, fires notifications at it, and sends
// SIGTERM. It must refuse new notifications with 503 from then on, exit 0
// within the grace period, and account for every accepted notification:
// with healthy providers all of them reach the fakes and none is dropped;
// with a stalled provider what is left when the drain timeout ends is
// reported dropped at shutdown. Either way the fakes see every connection
// closed afterwards.
func TestSIGTERMUnderLoad(t *testing.T) {
	bin, err := localrun.BuildDispatcher(t.TempDir(), testenv.RepoRoot())
	if err != nil {
		t.Fatal(err)
	}
	client := kubernetes.NewForConfigOrDie(restCfg)
	ca, err := fake.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	apns, err := fakeapns.Start(ca)
	if err != nil {
		t.Fatal(err)
	}
	defer apns.Close()
	huawei, err := fakehuawei.Start(ca)
	if err != nil {
		t.Fatal(err)
	}
	defer huawei.Close()
	apnsData, apnsSpec, err := fakeapns.TokenCredential("com.example.chat")
	if err != nil {
		t.Fatal(err)
	}
	apnsCert := apns.Certificate("apns", apnsData, apnsSpec)
	apns.Allow(apnsCert)
	certs := []config.Certificate{*apnsCert, *huawei.Certificate("huawei")}

	// tenant creates a namespace with users bound half to APNs, half to
	// Huawei (only Huawei when huaweiOnly), and starts the dispatcher.
	tenant := func(t *testing.T, prefix string, drainTimeout time.Duration, huaweiOnly bool) (*process, []string) {
		namespace, _ := createTenant(t, client, prefix, certs)
		p := startProcess(t, bin, namespace, drainTimeout)
		api := &localrun.API{URL: p.url, Token: apiToken}
		var users []string
		for i := range 20 {
			user := fmt.Sprintf("user-%02d", i)
			cert, token := "huawei", fmt.Sprintf("huawei-token-%s-0001", user)
			if i%2 == 0 && !huaweiOnly {
				cert, token = "apns", fmt.Sprintf("%064x", i+1)
			}
			if err := api.Bind(context.Background(), user, "phone", cert, token); err != nil {
				t.Fatal(err)
			}
			users = append(users, user)
		}
		return p, users
	}

	t.Run("healthy providers", func(t *testing.T) {
		apns.State.Reset()
		huawei.State.Reset()
		// A round trip long enough that sends are in flight at SIGTERM.
		apns.State.SetLatency(100 * time.Millisecond)
		huawei.State.SetLatency(100 * time.Millisecond)
		const drainTimeout = 15 * time.Second
		p, users := tenant(t, "drain-healthy", drainTimeout, false)
		l := startLoad(p.url, users)
		l.waitAccepted(t, 50)
		took := p.sigterm(t, drainTimeout)
		<-l.done

		accepted := int(l.accepted.Load())
		t.Logf("%d accepted, %d refused with 503 while draining; exit %v after SIGTERM", accepted, l.refused.Load(), took.Round(time.Millisecond))
		if l.refused.Load() == 0 || l.afterRefused.Load() != 0 || l.other.Load() != 0 {
			t.Errorf("%d refused, %d accepted after a refusal, %d other answers: want 503 for everything after SIGTERM",
				l.refused.Load(), l.afterRefused.Load(), l.other.Load())
		}
		drained := p.logLine("drained")
		if drained == nil || drained["dropped"] != float64(0) {
			t.Errorf("drained line %v, want dropped 0:\n%s", drained, p.logs)
		}
		if got := received(apns.State, huawei.State); got != accepted {
			t.Errorf("the fakes received %d sends for %d accepted notifications", got, accepted)
		}
		for _, s := range []*fake.State{apns.State, huawei.State} {
			if open := s.WaitClosed(10 * time.Second); open != 0 {
				t.Errorf("%s fake: %d connections open after the dispatcher exited", s.Provider, open)
			}
		}
	})

	t.Run("stalled provider", func(t *testing.T) {
		apns.State.Reset()
		huawei.State.Reset()
		huawei.State.Script(fake.AnyToken, fake.Answer{Delay: time.Hour})
		const drainTimeout = 2 * time.Second
		p, users := tenant(t, "drain-stalled", drainTimeout, true)
		l := startLoad(p.url, users)
		l.waitAccepted(t, 20)
		took := p.sigterm(t, drainTimeout)
		<-l.done

		accepted := int(l.accepted.Load())
		t.Logf("%d accepted, %d refused with 503 while draining; exit %v after SIGTERM", accepted, l.refused.Load(), took.Round(time.Millisecond))
		if l.afterRefused.Load() != 0 || l.other.Load() != 0 {
			t.Errorf("%d accepted after a refusal, %d other answers", l.afterRefused.Load(), l.other.Load())
		}
		// Nothing can be delivered or fail: accepted = dropped.
		drained := p.logLine("drained")
		if drained == nil || drained["dropped"] != float64(accepted) {
			t.Errorf("drained line %v, want dropped %d:\n%s", drained, accepted, p.logs)
		}
		if line := p.logLine("dropped deliveries at shutdown"); line == nil || line["count"] != float64(accepted) {
			t.Errorf("engine's shutdown line %v, want count %d", line, accepted)
		}
		if open := huawei.State.WaitClosed(10 * time.Second); open != 0 {
			t.Errorf("Huawei fake: %d connections open after the dispatcher exited", open)
		}
	})
}
