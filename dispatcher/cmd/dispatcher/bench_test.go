package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/imcloud/im-push-operator/dispatcher/config"
	"github.com/imcloud/im-push-operator/dispatcher/delivery"
	"github.com/imcloud/im-push-operator/dispatcher/policy"
	"github.com/imcloud/im-push-operator/dispatcher/providers"
	"github.com/imcloud/im-push-operator/dispatcher/server"
	"github.com/imcloud/im-push-operator/dispatcher/store"
)

// answering is a provider client that accepts every message at once and
// counts them: what is left of a send is the dispatcher's own work.
type answering struct {
	sent atomic.Int64
	done chan struct{}
	want int64
}

func (a *answering) Provider() config.Provider { return config.APNs }

func (a *answering) Send(context.Context, *providers.Message) providers.Result {
	if a.sent.Add(1) == a.want {
		close(a.done)
	}
	return providers.Result{Outcome: providers.Delivered}
}

type benchSource struct{ cfg *config.Config }

func (s benchSource) Config() (*config.Config, string) { return s.cfg, "bench" }
func (s benchSource) Token() []byte                    { return []byte("bench-token") }

// BenchmarkNotification is the dispatcher's own cost per notification,
// from the HTTP handler the dispatcher serves (FastHandler: decode,
// validation, Submit with its store reads, policy and queueing) through a worker to a provider client that answers
// at once, with 20,000 one-device users in the store: for one recipient per
// request, and for group messages of 500 recipients (where ns/delivery, and
// B/op and allocs/op over 500, compare with the single case). It is the
// part of `make bench`'s "dispatcher CPU beyond the client library" that
// needs no network, the load or a fake, so it can be profiled alone:
//
//	go test -run '^$' -bench Notification/recipients=1$ -cpuprofile cpu.out ./dispatcher/cmd/dispatcher
func BenchmarkNotification(b *testing.B) {
	for _, recipients := range []int{1, 500} {
		b.Run(fmt.Sprintf("recipients=%d", recipients), func(b *testing.B) { benchmarkNotification(b, recipients) })
	}
}

func benchmarkNotification(b *testing.B, recipients int) {
	const users = 20000
	cfg := &config.Config{
		Version: config.Version, Tenant: "bench", Namespace: "ns", Replicas: 1,
		Certificates: []config.Certificate{{Name: "apns", Provider: config.APNs, Fingerprint: "f"}},
		Policy: config.Policy{
			MultiDevice: policy.AnyOffline, ProviderPreference: policy.VendorFirst, ShowContent: true,
			TTL: metav1.Duration{Duration: time.Hour}, MaxAttempts: 3,
			BackoffInitial: metav1.Duration{Duration: time.Second}, BackoffMax: metav1.Duration{Duration: 10 * time.Second},
			// The templates of `make bench`'s tenant (hack/bench).
			Templates: []config.Template{{Title: "{{.Sender.DisplayName}}", Body: "{{.Text}}"}},
		},
		TokenStore: config.TokenStore{Shards: 64},
	}
	tokens := store.NewMemory(cfg.TokenStore, nil)
	for i := range users {
		user := fmt.Sprintf("user-%05d", i)
		if err := tokens.Bind(context.Background(), user, "phone", store.Binding{CertificateName: "apns", Token: fmt.Sprintf("%064x", i)}); err != nil {
			b.Fatal(err)
		}
	}
	client := &answering{done: make(chan struct{}), want: int64(b.N * recipients)}
	engine := delivery.New(delivery.Options{Store: tokens, Logger: logr.Discard(), Registerer: prometheus.NewRegistry()})
	defer engine.Drain(context.Background())
	if err := engine.SetConfig(cfg, map[string]providers.Client{"apns": client}); err != nil {
		b.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	src := benchSource{cfg}
	srv := server.New(server.Options{Store: tokens, Engine: engineAPI{engine}, Config: src, Token: src,
		Metrics: server.NewMetrics(reg), Gatherer: reg, Logger: logr.Discard()})

	conversation := `{"id":"c-1","type":"single"}`
	if recipients > 1 {
		conversation = `{"id":"g-1","type":"group","name":"Bench group"}`
	}
	bodies := make([][]byte, 1024)
	for i := range bodies {
		var to bytes.Buffer
		for r := range recipients {
			if r > 0 {
				to.WriteByte(',')
			}
			fmt.Fprintf(&to, `{"userId":"user-%05d"}`, (i*19+r*37)%users)
		}
		bodies[i] = []byte(`{"id":"` + fmt.Sprintf("n-%d", i) + `","sender":{"id":"bench-sender","displayName":"Bench"},` +
			`"conversation":` + conversation + `,"recipients":[` + to.String() + `],` +
			`"message":{"text":"hello from the benchmark"},"push":{"data":{"sentAt":"1765000000000000000"}}}`)
	}
	// The handler the dispatcher serves (FastHandler) on a request context
	// per goroutine, reset for each request as fasthttp's server does.
	handler := srv.FastHandler()
	var next atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		var ctx fasthttp.RequestCtx
		ctx.Init(&fasthttp.Request{}, nil, nil)
		for pb.Next() {
			i := next.Add(1)
			body := bytes.Replace(bodies[i%int64(len(bodies))], []byte(`"n-`), fmt.Appendf(nil, `"%d-n-`, i), 1)
			for {
				ctx.Request.Reset()
				ctx.Request.Header.SetMethod(http.MethodPost)
				ctx.Request.SetRequestURI("/v1/notifications")
				ctx.Request.Header.Set("Authorization", "Bearer bench-token")
				ctx.Request.Header.SetContentType("application/json")
				ctx.Request.SetBodyRaw(body)
				ctx.Response.Reset()
				handler(&ctx)
				code := ctx.Response.StatusCode()
				if code == http.StatusAccepted {
					break
				}
				if code != http.StatusTooManyRequests {
					b.Fatalf("POST /v1/notifications: %d %s", code, ctx.Response.Body())
				}
				// The queue is full: back off as a client would, while
				// its workers catch up.
				time.Sleep(time.Millisecond)
			}
		}
	})
	<-client.done
	b.StopTimer()
	if recipients > 1 {
		deliveries := float64(b.N * recipients)
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/deliveries, "ns/delivery")
	}
}
