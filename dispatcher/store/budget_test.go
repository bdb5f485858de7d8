package store

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/rest"

	"github.com/imcloud/im-push-operator/internal/testenv"

	"github.com/imcloud/im-push-operator/dispatcher/kube"
)

// stepClock is a budget clock that never sleeps: a wait moves it to the end
// of the wait at once, so the test runs at API-server speed while the budget
// sees the time it asked for.
type stepClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *stepClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *stepClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if end := c.t.Add(d); end.After(c.t) {
		c.t = end
	}
	ch := make(chan time.Time, 1)
	ch <- c.t
	return ch
}

// countingClient records every request with its body size and the budget
// clock's time when it was sent; sent returns the Secret PUTs (the shard
// updates) in the order they left the client.
func countingClient(t *testing.T, cfg *rest.Config, clk *stepClock) (*kube.Client, func() testenv.Records) {
	t.Helper()
	rec := &testenv.Recorder{Now: clk.Now}
	wrapped := rest.CopyConfig(cfg)
	wrapped.Wrap(rec.Wrap)
	return kube.NewForConfigOrDie(wrapped), func() testenv.Records {
		return rec.Records().Filter(func(r testenv.Record) bool {
			return r.Method == http.MethodPut && strings.Contains(r.Path, "/secrets/")
		})
	}
}

// TestSecretsWriteBudgetBoundsRequestBytes: concurrent binds on two shards
// against a small budget; counting the request bodies as they leave the
// client, every prefix of the sends stays within burst + budget × elapsed
// on the budget's clock. Charging the shard's data bytes instead of the
// request (metadata, managedFields and encoding come on top) breaks it.
func TestSecretsWriteBudgetBoundsRequestBytes(t *testing.T) {
	restCfg, cs := apiServer(t)
	ns := testenv.Namespace(t, cs, "store")
	cfg := testConfig(2)
	cfg.MaxShardBytes = 64 << 10
	cfg.WriteBudgetBytesPerSecond = 8 << 10
	createShards(t, cs, ns, cfg)
	clk := &stepClock{t: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)}
	start := clk.Now()
	counted, sent := countingClient(t, restCfg, clk)
	s := newSecrets(counted, ns, cfg, SecretsOptions{}, clk)
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := s.Start(runCtx); err != nil {
		t.Fatal(err)
	}

	const writers, perWriter = 6, 25
	var wg sync.WaitGroup
	errs := make(chan error, writers*perWriter)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWriter {
				errs <- s.Bind(runCtx, fmt.Sprintf("user-%d-%d", w, i), "d1", Binding{CertificateName: "fcm", Token: strings.Repeat("t", 100)})
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}

	puts := sent()
	if len(puts) == 0 {
		t.Fatal("no Secret update was sent")
	}
	rate, burst := float64(cfg.WriteBudgetBytesPerSecond), float64(cfg.WriteBudgetBytesPerSecond)
	total := 0
	for i, p := range puts {
		total += p.Bytes
		allowed := burst + rate*p.At.Sub(start).Seconds()
		if float64(total) > allowed+1 {
			t.Fatalf("after %d updates %d bytes were sent by %s, above burst + budget × elapsed = %.0f",
				i+1, total, p.At.Sub(start), allowed)
		}
	}
	if elapsed := puts[len(puts)-1].At.Sub(start); elapsed < time.Duration(float64(total)/rate*0.5*float64(time.Second)) {
		t.Errorf("%d bytes sent in %s of budget time: the budget hardly waited", total, elapsed)
	}
	t.Logf("%d updates, %d bytes, %s of budget time", len(puts), total, puts[len(puts)-1].At.Sub(start))
}
