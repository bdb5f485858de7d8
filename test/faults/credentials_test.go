package faults

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	pushv1 "github.com/imcloud/im-push-operator/api/v1alpha1"
	"github.com/imcloud/im-push-operator/dispatcher/config"
	"github.com/imcloud/im-push-operator/dispatcher/providers/fake"
	fakeapns "github.com/imcloud/im-push-operator/dispatcher/providers/fake/apns"
	"github.com/imcloud/im-push-operator/hack/localrun"
)

// sent is one notification of a sender and what became of it.
type sent struct {
	seq    int64
	id     string
	status *localrun.Status
	err    error
}

// sender posts notifications to user from four callers, each waiting for
// the final outcome, until stopped.
type sender struct {
	mu   sync.Mutex
	all  []*sent
	seq  atomic.Int64
	stop atomic.Bool
	wg   sync.WaitGroup
}

func send(api *localrun.API, prefix, user string) *sender {
	s := &sender{}
	for range 4 {
		s.wg.Go(func() {
			for !s.stop.Load() {
				n := s.seq.Add(1)
				one := &sent{seq: n, id: fmt.Sprintf("%s-%d", prefix, n)}
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				one.status, one.err = api.Notify(ctx, notification(one.id, "hello", user))
				cancel()
				s.mu.Lock()
				s.all = append(s.all, one)
				s.mu.Unlock()
			}
		})
	}
	return s
}

// count returns how many finished notifications have a device outcome
// with state (and reason, when not empty).
func (s *sender) count(state, reason string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, one := range s.all {
		if one.status == nil {
			continue
		}
		for _, d := range one.status.Devices {
			if d.State == state && (reason == "" || d.Reason == reason) {
				n++
			}
		}
	}
	return n
}

func (s *sender) finish() []*sent {
	s.stop.Store(true)
	s.wg.Wait()
	return s.all
}

func waitCount(t *testing.T, s *sender, what string, state, reason string, n int) {
	t.Helper()
	until(t, what, func() error {
		if got := s.count(state, reason); got < n {
			return fmt.Errorf("%d of %d", got, n)
		}
		return nil
	})
}

// receivedBy returns the fake's successful sends to token by collapse id,
// which the dispatcher takes from the conversation id: "c-" + the
// notification id in these tests.
func receivedBy(state *fake.State, token string) map[string][]fake.Received {
	out := map[string][]fake.Received{}
	for _, r := range state.Received() {
		if r.Token == token && r.Answered == "" {
			out[r.Fields["collapse-id"]] = append(out[r.Fields["collapse-id"]], r)
		}
	}
	return out
}

// TestCredentialRotatedInFlight rotates a tenant's APNs signing key while
// four callers keep sending to one device. Every notification accepted must
// end delivered, exactly once at the fake, and every one posted after the
// dispatcher runs the rotated config must be signed with the new key.
func TestCredentialRotatedInFlight(t *testing.T) {
	ctx := context.Background()
	certs, err := sys.Certificates()
	if err != nil {
		t.Fatal(err)
	}
	tn := install(t, "faults-rotate", "rotate", certs[:1], 1)
	api := tn.apis(t)[0]
	token := apnsToken("rotate-alice")
	if err := api.Bind(ctx, "alice", "iphone", "apns-demo", token); err != nil {
		t.Fatal(err)
	}
	oldKey := certs[0].APNs.KeyID

	s := send(api, "rot", "alice")
	waitCount(t, s, "notifications delivered before the rotation", "delivered", "", 10)
	keyID, err := sys.RotateAPNsKey(ctx, tn.ns, "apns-demo")
	if err != nil {
		t.Fatal(err)
	}
	tn.waitRunning(t, "the dispatcher to run the rotated key", func(c *config.Config) error {
		if cert, ok := c.Certificate("apns-demo"); !ok || cert.APNs.KeyID != keyID {
			return fmt.Errorf("config not rotated yet")
		}
		return nil
	})
	rotatedAt := s.seq.Load()
	waitCount(t, s, "notifications delivered after the rotation", "delivered", "", 10+int(rotatedAt)+20)
	all := s.finish()

	got := receivedBy(sys.APNs.State, token)
	states := map[string]int{}
	signed := map[string]int{}
	for _, one := range all {
		if one.err != nil || !one.status.Complete || len(one.status.Devices) != 1 {
			t.Errorf("%s: %+v, %v", one.id, one.status, one.err)
			continue
		}
		d := one.status.Devices[0]
		states[d.State+":"+d.Reason]++
		if d.State != "delivered" {
			t.Errorf("%s ended %s (%s)", one.id, d.State, d.Reason)
			continue
		}
		recs := got["c-"+one.id]
		if len(recs) != 1 {
			t.Errorf("%s was delivered but reached the fake %d times", one.id, len(recs))
			continue
		}
		kid := recs[0].Fields["kid"]
		switch kid {
		case oldKey:
			signed["old key"]++
		case keyID:
			signed["new key"]++
		default:
			t.Errorf("%s signed with unknown key %q", one.id, kid)
		}
		if one.seq > rotatedAt && kid != keyID {
			t.Errorf("%s, posted after the dispatcher ran the new key, was signed with %q", one.id, kid)
		}
	}
	t.Logf("%d notifications during the rotation: outcomes %v, signed %v; %d posted after the new config was running",
		len(all), states, signed, len(all)-int(rotatedAt))
}

// TestCredentialRevoked revokes a tenant's APNs key at the fake while four
// callers keep sending: every notification must end, delivered before the
// revocation and failed with BadCredentials after it, and the device's
// binding must stay. The user then finds the Secret holding a broken key:
// the PushCertificate turns Ready False with InvalidCredentials naming the
// key and the tenant's CertificatesReady names the certificate; a new key
// brings deliveries back.
func TestCredentialRevoked(t *testing.T) {
	ctx := context.Background()
	certs, err := sys.Certificates()
	if err != nil {
		t.Fatal(err)
	}
	tn := install(t, "faults-revoke", "revoke", certs[:1], 1)
	api := tn.apis(t)[0]
	token := apnsToken("revoke-bob")
	if err := api.Bind(ctx, "bob", "iphone", "apns-demo", token); err != nil {
		t.Fatal(err)
	}

	s := send(api, "rev", "bob")
	waitCount(t, s, "notifications delivered before the revocation", "delivered", "", 5)
	authFailures := sys.APNs.AuthFailures()
	sys.APNs.Revoke(certs[0])
	waitCount(t, s, "notifications failed with BadCredentials", "failed", "BadCredentials", 10)
	all := s.finish()

	states := map[string]int{}
	for _, one := range all {
		if one.err != nil || !one.status.Complete || len(one.status.Devices) != 1 {
			t.Errorf("%s: %+v, %v", one.id, one.status, one.err)
			continue
		}
		d := one.status.Devices[0]
		states[d.State+":"+d.Reason]++
		if d.State != "delivered" && (d.State != "failed" || d.Reason != "BadCredentials") {
			t.Errorf("%s ended %s (%s), want delivered or failed BadCredentials", one.id, d.State, d.Reason)
		}
	}
	devices, err := devicesOf(api, "bob")
	if err != nil || devices["iphone"] != "apns-demo" {
		t.Errorf("bob's binding after the revocation: %v, %v; it must stay", devices, err)
	}
	refusedAtFake := sys.APNs.AuthFailures() - authFailures
	t.Logf("%d notifications around the revocation: %v; the fake refused %d sends for authentication", len(all), states, refusedAtFake)
	if refusedAtFake < states["failed:BadCredentials"] {
		t.Errorf("%d notifications failed BadCredentials but the fake refused only %d sends", states["failed:BadCredentials"], refusedAtFake)
	}

	secret, pc := localrun.CertificateObjects(tn.ns, certs[0])
	updateSecret(t, tn.ns, secret.Name, map[string][]byte{config.KeyAPNsAuthKey: []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")})
	until(t, "PushCertificate Ready False InvalidCredentials", func() error {
		got := &pushv1.PushCertificate{}
		if err := sys.Client.Get(ctx, client.ObjectKeyFromObject(pc), got); err != nil {
			return err
		}
		c := meta(got.Status.Conditions, pushv1.ConditionReady)
		if c.Status != metav1.ConditionFalse || c.Reason != pushv1.ReasonInvalidCredentials || !strings.Contains(c.Message, config.KeyAPNsAuthKey) {
			return fmt.Errorf("Ready %s %s: %s", c.Status, c.Reason, c.Message)
		}
		return nil
	})
	until(t, "tenant CertificatesReady False naming the certificate", func() error {
		at := &pushv1.AppTenant{}
		if err := sys.Client.Get(ctx, client.ObjectKey{Namespace: tn.ns, Name: tn.name}, at); err != nil {
			return err
		}
		c := meta(at.Status.Conditions, pushv1.ConditionCertificatesReady)
		if c.Status != metav1.ConditionFalse || c.Reason != pushv1.ReasonCertificateNotReady || !strings.Contains(c.Message, "apns-demo (InvalidCredentials)") {
			return fmt.Errorf("CertificatesReady %s %s: %s", c.Status, c.Reason, c.Message)
		}
		return nil
	})

	keyID, err := sys.RotateAPNsKey(ctx, tn.ns, "apns-demo")
	if err != nil {
		t.Fatal(err)
	}
	tn.waitRunning(t, "the dispatcher to run the new key", func(c *config.Config) error {
		if cert, ok := c.Certificate("apns-demo"); !ok || cert.APNs.KeyID != keyID {
			return fmt.Errorf("config not rotated yet")
		}
		return nil
	})
	st, err := api.Notify(ctx, notification("rev-after", "back", "bob"))
	if err != nil || len(st.Devices) != 1 || st.Devices[0].State != "delivered" {
		t.Fatalf("after a new key: %+v, %v", st, err)
	}
}

// TestCertificateExpires swaps a tenant's APNs .p12 for one that expires
// seconds later. Once it expires the PushCertificate turns Ready False with
// Expired, the credential leaves the rendered config and the dispatcher's
// running config, sends to the device stop (nothing more reaches the fake)
// and binds naming it are refused as unknown.
func TestCertificateExpires(t *testing.T) {
	ctx := context.Background()
	data, spec, err := fakeapns.P12Credential("com.example.chat", "pw", time.Now().Add(365*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	cert := sys.APNs.Certificate("apns-p12", data, spec)
	sys.APNs.Allow(cert)
	tn := install(t, "faults-expiry", "expiry", []*config.Certificate{cert}, 1)
	api := tn.apis(t)[0]
	token := apnsToken("expiry-dave")
	if err := api.Bind(ctx, "dave", "iphone", "apns-p12", token); err != nil {
		t.Fatal(err)
	}

	notAfter := time.Now().Add(20 * time.Second)
	short, _, err := fakeapns.P12Credential("com.example.chat", "pw", notAfter)
	if err != nil {
		t.Fatal(err)
	}
	sys.APNs.Allow(sys.APNs.Certificate("apns-p12", short, spec))
	secret, pc := localrun.CertificateObjects(tn.ns, cert)
	updateSecret(t, tn.ns, secret.Name, short)
	tn.waitRunning(t, "the dispatcher to run the short-lived certificate", func(c *config.Config) error {
		if got, ok := c.Certificate("apns-p12"); !ok || got.Fingerprint != config.Fingerprint(short) {
			return fmt.Errorf("config not on the short-lived certificate yet")
		}
		return nil
	})
	st, err := api.Notify(ctx, notification("exp-before", "still valid", "dave"))
	if err != nil || len(st.Devices) != 1 || st.Devices[0].State != "delivered" {
		t.Fatalf("before expiry: %+v, %v", st, err)
	}

	until(t, "PushCertificate Ready False Expired", func() error {
		got := &pushv1.PushCertificate{}
		if err := sys.Client.Get(ctx, client.ObjectKeyFromObject(pc), got); err != nil {
			return err
		}
		if c := meta(got.Status.Conditions, pushv1.ConditionReady); c.Status != metav1.ConditionFalse || c.Reason != pushv1.ReasonExpired {
			return fmt.Errorf("Ready %s %s: %s", c.Status, c.Reason, c.Message)
		}
		return nil
	})
	expiredAfter := time.Since(notAfter)
	tn.waitRunning(t, "the dispatcher to run a config without the expired certificate", func(c *config.Config) error {
		if _, ok := c.Certificate("apns-p12"); ok {
			return fmt.Errorf("the expired certificate is still rendered")
		}
		return nil
	})
	atFake := len(receivedBy(sys.APNs.State, token))
	st, err = api.Notify(ctx, notification("exp-after", "expired", "dave"))
	if err != nil {
		t.Fatal(err)
	}
	outcome := states(st)
	if len(st.Devices) != 1 || st.Devices[0].State == "delivered" || st.Devices[0].Reason != "NoUsableBinding" {
		t.Errorf("after expiry the device got %v, want skipped NoUsableBinding", outcome)
	}
	if n := len(receivedBy(sys.APNs.State, token)); n != atFake {
		t.Errorf("the fake received %d more sends after expiry", n-atFake)
	}
	if a, err := bind(api, "erin", "iphone", "apns-p12", token); err != nil || a.status != http.StatusUnprocessableEntity || a.code != "UnknownCertificate" {
		t.Errorf("bind with the expired certificate: %+v, %v; want 422 UnknownCertificate", a, err)
	}
	until(t, "tenant CertificatesReady False naming the expired certificate", func() error {
		at := &pushv1.AppTenant{}
		if err := sys.Client.Get(ctx, client.ObjectKey{Namespace: tn.ns, Name: tn.name}, at); err != nil {
			return err
		}
		c := meta(at.Status.Conditions, pushv1.ConditionCertificatesReady)
		if c.Status != metav1.ConditionFalse || !strings.Contains(c.Message, "apns-p12 (Expired)") {
			return fmt.Errorf("CertificatesReady %s %s: %s", c.Status, c.Reason, c.Message)
		}
		return nil
	})
	t.Logf("condition Expired %v after notAfter; after expiry the device got %v", expiredAfter.Round(100*time.Millisecond), outcome)
}

func states(st *localrun.Status) map[string]string {
	out := map[string]string{}
	for _, d := range st.Devices {
		out[d.User+"/"+d.Device] = d.State + ":" + d.Reason
	}
	return out
}

// updateSecret replaces a Secret's data, as a user editing it would.
func updateSecret(t *testing.T, ns, name string, data map[string][]byte) {
	t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		sec := &corev1.Secret{}
		if err := sys.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, sec); err != nil {
			return err
		}
		sec.Data = data
		return sys.Client.Update(context.Background(), sec)
	})
	if err != nil {
		t.Fatal(err)
	}
}
