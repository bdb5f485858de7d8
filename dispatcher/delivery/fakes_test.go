package delivery

import (
	"encoding/hex"
	"fmt"
	"hash/fnv"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imcloud/im-push-operator/dispatcher/config"
	"github.com/imcloud/im-push-operator/dispatcher/providers"
	"github.com/imcloud/im-push-operator/dispatcher/providers/fake"
	fakeapns "github.com/imcloud/im-push-operator/dispatcher/providers/fake/apns"
	fakefcm "github.com/imcloud/im-push-operator/dispatcher/providers/fake/fcm"
	fakehonor "github.com/imcloud/im-push-operator/dispatcher/providers/fake/honor"
	fakehuawei "github.com/imcloud/im-push-operator/dispatcher/providers/fake/huawei"
	fakemeizu "github.com/imcloud/im-push-operator/dispatcher/providers/fake/meizu"
	fakeoppo "github.com/imcloud/im-push-operator/dispatcher/providers/fake/oppo"
	fakevivo "github.com/imcloud/im-push-operator/dispatcher/providers/fake/vivo"
	fakexiaomi "github.com/imcloud/im-push-operator/dispatcher/providers/fake/xiaomi"
	"github.com/imcloud/im-push-operator/dispatcher/providers/registry"
)

// fakes are the real local provider fakes with one valid credential each,
// for engine tests that send through the real provider clients.
type fakes struct {
	servers map[config.Provider]*fake.Server
	certs   map[config.Provider]*config.Certificate
	// hc is the HTTP client every provider client sends with, so a test can
	// close its idle connections and then see every fake's connections
	// closed: nothing may stay open by itself.
	hc   *http.Client
	once sync.Once
}

// startFakes starts the fakes of ps; they stop, after a check that the
// clients left no connection open, when the test ends.
func startFakes(t *testing.T, ps ...config.Provider) *fakes {
	t.Helper()
	ca, err := fake.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	f := &fakes{servers: map[config.Provider]*fake.Server{}, certs: map[config.Provider]*config.Certificate{}}
	if f.hc, err = providers.NewHTTPClient(string(ca.CertPEM)); err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		name := strings.ToLower(string(p))
		var srv *fake.Server
		var cert *config.Certificate
		switch p {
		case config.APNs:
			s, err := fakeapns.Start(ca)
			if err != nil {
				t.Fatal(err)
			}
			data, spec, err := fakeapns.TokenCredential("com.example.chat")
			if err != nil {
				t.Fatal(err)
			}
			srv, cert = s.Server, s.Certificate(name, data, spec)
			s.Allow(cert)
		case config.FCM:
			s, err := fakefcm.Start(ca)
			if err != nil {
				t.Fatal(err)
			}
			data, spec, err := fakefcm.TestCredential("chat", s.URL+"/token")
			if err != nil {
				t.Fatal(err)
			}
			srv, cert = s.Server, s.Certificate(name, data, spec)
			s.Allow(cert)
		case config.Huawei:
			s, err := fakehuawei.Start(ca)
			if err != nil {
				t.Fatal(err)
			}
			srv, cert = s.Server, s.Certificate(name)
		case config.Honor:
			s, err := fakehonor.Start(ca)
			if err != nil {
				t.Fatal(err)
			}
			srv, cert = s.Server, s.Certificate(name)
		case config.Xiaomi:
			s, err := fakexiaomi.Start(ca)
			if err != nil {
				t.Fatal(err)
			}
			srv, cert = s.Server, s.Certificate(name)
		case config.OPPO:
			s, err := fakeoppo.Start(ca)
			if err != nil {
				t.Fatal(err)
			}
			srv, cert = s.Server, s.Certificate(name)
		case config.Vivo:
			s, err := fakevivo.Start(ca)
			if err != nil {
				t.Fatal(err)
			}
			srv, cert = s.Server, s.Certificate(name)
		case config.Meizu:
			s, err := fakemeizu.Start(ca)
			if err != nil {
				t.Fatal(err)
			}
			srv, cert = s.Server, s.Certificate(name)
		default:
			t.Fatalf("no fake for %s", p)
		}
		f.servers[p], f.certs[p] = srv, cert
	}
	t.Cleanup(func() { f.close(t) })
	return f
}

// close closes the clients' idle connections, checks that the fakes then see
// every connection closed, and stops the fakes. Later calls do nothing.
//
// The transport may still finish a dial it raced against a freed connection
// and park it idle after the first CloseIdleConnections, so idle connections
// are closed again each round; a connection held by a leaked response body
// never goes idle and still fails the check after 10 s.
func (f *fakes) close(t *testing.T) {
	t.Helper()
	f.once.Do(func() {
		for p, srv := range f.servers {
			open := 0
			for range 20 {
				f.hc.CloseIdleConnections()
				if open = srv.State.WaitClosed(500 * time.Millisecond); open == 0 {
					break
				}
			}
			if open != 0 {
				t.Errorf("%s fake: %d connections still open after the client closed its idle ones", p, open)
			}
			srv.Close()
		}
	})
}

// newFakesHarness is newHarness sending through f. Its clock starts at the
// real time, which the clients and fakes read for access tokens, signatures
// and the TTL they send.
func newFakesHarness(t *testing.T, opts Options, f *fakes) *harness {
	t.Helper()
	h := newHarness(t, opts)
	h.clock.mu.Lock()
	h.clock.now = time.Now()
	h.clock.mu.Unlock()
	h.useFakes(f)
	return h
}

// useFakes configures h with the fakes' certificates (named after their
// provider in lower case) and the real clients for them.
func (h *harness) useFakes(f *fakes) {
	h.t.Helper()
	h.cfg.Certificates = nil
	clients := map[string]providers.Client{}
	for p, cert := range f.certs {
		h.cfg.Certificates = append(h.cfg.Certificates, *cert)
		c, err := registry.New(cert, providers.Options{HTTPClient: f.hc})
		if err != nil {
			h.t.Fatal(err)
		}
		clients[f.certs[p].Name] = c
	}
	h.setClients(clients)
}

// fakeToken is a device token the provider's fake accepts: APNs wants hex,
// OPPO a region prefix.
func fakeToken(p config.Provider, id string) string {
	switch p {
	case config.APNs:
		sum := fnv.New128a()
		sum.Write([]byte(id))
		return hex.EncodeToString(sum.Sum(nil)) + hex.EncodeToString(sum.Sum(nil))
	case config.OPPO:
		return "CN_oppo-token-" + id
	}
	return fmt.Sprintf("%s-token-%s-0001", strings.ToLower(string(p)), id)
}

// autoAdvance moves h's clock to each timer the engine arms, at once, so
// backoff, Retry-After and quota pauses pass without real waiting. It runs
// until the engine has drained, so a drain at cleanup cannot wait forever
// for a clock nobody moves.
func (h *harness) autoAdvance() {
	c, drained := h.clock, h.e.drained
	go func() {
		for {
			c.mu.Lock()
			var earliest time.Time
			for tm := range c.timers {
				if earliest.IsZero() || tm.at.Before(earliest) {
					earliest = tm.at
				}
			}
			now, ch := c.now, c.changed
			c.mu.Unlock()
			if !earliest.IsZero() {
				c.Advance(max(0, earliest.Sub(now)))
				continue
			}
			select {
			case <-ch:
			case <-drained:
				return
			}
		}
	}()
}
