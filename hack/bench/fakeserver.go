package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/imcloud/im-push-operator/dispatcher/config"
	"github.com/imcloud/im-push-operator/dispatcher/providers/fake"
	fakeapns "github.com/imcloud/im-push-operator/dispatcher/providers/fake/apns"
	fakefcm "github.com/imcloud/im-push-operator/dispatcher/providers/fake/fcm"
)

// fakeHello is the first line a fake server process prints: where it
// listens and the credential it accepts. It goes over a pipe to the harness,
// never to a log.
type fakeHello struct {
	URL         string              `json:"url"`
	Certificate *config.Certificate `json:"certificate"`
}

// fakeStats is the answer of GET /_bench/stats: sends answered 2xx since the
// process started, and the latency samples (request sent by the load process
// → request arrived here) since the last POST /_bench/reset.
type fakeStats struct {
	Delivered int64 `json:"delivered"`
	// BodyBytes: the request bodies of those sends.
	BodyBytes int64   `json:"bodyBytes"`
	Samples   int     `json:"samples"`
	P50       float64 `json:"p50Ms"`
	P99       float64 `json:"p99Ms"`
	P999      float64 `json:"p999Ms"`
}

// sentAtKey is the data key the load process stamps with its send time (Unix
// nanoseconds); providers carry data through unchanged.
const sentAtKey = "benchSentAt"

// fakeStreams is the HTTP/2 stream limit the fakes advertise.
const fakeStreams = 1000

// runFakeServer runs one fake provider as its own process. It serves the
// fake's own handler through a second TLS listener that (1) stamps each
// request's arrival, (2) answers only after the added latency, as a real
// round trip would, and (3) counts what it answered. The fake's own pause
// comes before it parses the request, so it cannot tell arrival from delay.
func runFakeServer(args []string) error {
	fs := flag.NewFlagSet("fakeserver", flag.ExitOnError)
	provider := fs.String("provider", "apns", "apns or fcm")
	latency := fs.Duration("latency", 0, "added latency before each answer")
	_ = fs.Parse(args)

	ca, err := fake.NewCA()
	if err != nil {
		return err
	}
	cert, err := ca.ServerCertificate()
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	url := "https://" + ln.Addr().String()

	w := &wrapper{}
	w.latency.Store(int64(*latency))
	var hello fakeHello
	switch *provider {
	case "apns":
		s, err := fakeapns.Start(ca)
		if err != nil {
			return err
		}
		defer s.Close()
		s.State.Forget()
		data, spec, err := fakeapns.TokenCredential("com.example.chat")
		if err != nil {
			return err
		}
		// The certificate must name the listener clients use.
		s.URL = url
		c := s.Certificate("apns-bench", data, spec)
		s.Allow(c)
		w.inner = s.Config.Handler
		hello = fakeHello{URL: url, Certificate: c}
	case "fcm":
		s, err := fakefcm.Start(ca)
		if err != nil {
			return err
		}
		defer s.Close()
		s.State.Forget()
		// The fake checks the assertion's audience against its URL, so it
		// must be the listener clients use.
		s.URL = url
		data, spec, err := fakefcm.TestCredential("bench", url+"/token")
		if err != nil {
			return err
		}
		c := s.Certificate("fcm-bench", data, spec)
		s.Allow(c)
		w.inner = s.Config.Handler
		hello = fakeHello{URL: url, Certificate: c}
	default:
		return fmt.Errorf("unknown provider %q", *provider)
	}

	srv := &http.Server{
		// APNs documents about 1000 concurrent streams per connection; the
		// dispatcher sizes its workers from what the fake advertises.
		HTTP2:     &http.HTTP2Config{MaxConcurrentStreams: fakeStreams},
		Handler:   w,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, ClientAuth: tls.RequestClientCert},
		ErrorLog:  nil,
	}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	if err := json.NewEncoder(os.Stdout).Encode(hello); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	// The harness closes stdin when it goes away, however it ends.
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); stop() }()
	<-ctx.Done()
	shutdown, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return srv.Shutdown(shutdown)
}

type wrapper struct {
	inner     http.Handler
	latency   atomic.Int64
	delivered atomic.Int64
	bodyBytes atomic.Int64

	mu      sync.Mutex
	samples []arrival
}

// arrival is one stamped request: the load process's send stamp and when it
// arrived here, in Unix nanoseconds.
type arrival [2]int64

func (w *wrapper) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	arrived := time.Now()
	switch r.URL.Path {
	case "/_bench/stats":
		w.stats(rw)
		return
	case "/_bench/arrivals":
		w.mu.Lock()
		s := slices.Clone(w.samples)
		w.mu.Unlock()
		rw.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(rw).Encode(s)
		return
	case "/_bench/reset":
		w.mu.Lock()
		w.samples = w.samples[:0]
		w.mu.Unlock()
		rw.WriteHeader(http.StatusNoContent)
		return
	case "/_bench/latency":
		d, err := time.ParseDuration(r.URL.Query().Get("d"))
		if err != nil {
			http.Error(rw, err.Error(), http.StatusBadRequest)
			return
		}
		w.latency.Store(int64(d))
		rw.WriteHeader(http.StatusNoContent)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	h := &heldResponse{header: http.Header{}}
	w.inner.ServeHTTP(h, r)
	if h.code == 0 {
		h.code = http.StatusOK
	}
	if h.code < 300 && r.URL.Path != "/token" {
		w.delivered.Add(1)
		w.bodyBytes.Add(int64(len(body)))
		if sent, ok := sentAt(body); ok {
			w.mu.Lock()
			w.samples = append(w.samples, arrival{sent.UnixNano(), arrived.UnixNano()})
			w.mu.Unlock()
		}
	}
	if d := time.Duration(w.latency.Load()) - time.Since(arrived); d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
	for k, v := range h.header {
		rw.Header()[k] = v
	}
	rw.WriteHeader(h.code)
	_, _ = rw.Write(h.body.Bytes())
}

// sentAt finds the load process's stamp in a request body without decoding
// it (APNs carries it as a top-level key, FCM inside message.data).
func sentAt(body []byte) (time.Time, bool) {
	key := []byte(`"` + sentAtKey + `":"`)
	i := bytes.Index(body, key)
	if i < 0 {
		return time.Time{}, false
	}
	rest := body[i+len(key):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return time.Time{}, false
	}
	ns, err := strconv.ParseInt(string(rest[:j]), 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.Unix(0, ns), true
}

func (w *wrapper) stats(rw http.ResponseWriter) {
	w.mu.Lock()
	s := make([]time.Duration, len(w.samples))
	for i, a := range w.samples {
		s[i] = time.Duration(a[1] - a[0])
	}
	w.mu.Unlock()
	st := summarize(s)
	st.Delivered, st.BodyBytes = w.delivered.Load(), w.bodyBytes.Load()
	rw.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(rw).Encode(st)
}

// summarize gives the count and quantiles of latency samples (sorting them).
func summarize(s []time.Duration) fakeStats {
	slices.Sort(s)
	return fakeStats{Samples: len(s), P50: quantileMs(s, 0.5), P99: quantileMs(s, 0.99), P999: quantileMs(s, 0.999)}
}

// quantileMs is the q-quantile of sorted samples in milliseconds (nearest rank).
func quantileMs(sorted []time.Duration, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	i = max(0, min(i, len(sorted)-1))
	return float64(sorted[i].Microseconds()) / 1000
}

// heldResponse keeps the fake's answer until the added latency has passed.
type heldResponse struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (h *heldResponse) Header() http.Header { return h.header }

func (h *heldResponse) WriteHeader(code int) {
	if h.code == 0 {
		h.code = code
	}
}

func (h *heldResponse) Write(b []byte) (int, error) {
	if h.code == 0 {
		h.code = http.StatusOK
	}
	return h.body.Write(b)
}

// fakeClient reads and steers a fake server process's /_bench endpoints.
type fakeClient struct {
	URL  string
	HTTP *http.Client
}

func (f *fakeClient) Stats(ctx context.Context) (fakeStats, error) {
	var st fakeStats
	err := f.do(ctx, http.MethodGet, "/_bench/stats", &st)
	return st, err
}

// Arrivals lists the stamped requests since the last reset.
func (f *fakeClient) Arrivals(ctx context.Context) ([]arrival, error) {
	var a []arrival
	err := f.do(ctx, http.MethodGet, "/_bench/arrivals", &a)
	return a, err
}

func (f *fakeClient) Reset(ctx context.Context) error {
	return f.do(ctx, http.MethodPost, "/_bench/reset", nil)
}

func (f *fakeClient) SetLatency(ctx context.Context, d time.Duration) error {
	return f.do(ctx, http.MethodPost, "/_bench/latency?d="+d.String(), nil)
}

func (f *fakeClient) do(ctx context.Context, method, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, f.URL+path, nil)
	if err != nil {
		return err
	}
	resp, err := f.HTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("%s %s: HTTP %d: %s", method, path, resp.StatusCode, b)
	}
	if out == nil {
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

var errUsage = errors.New("usage: bench [flags] | bench fakeserver -provider apns|fcm | bench load (job JSON on stdin)")
