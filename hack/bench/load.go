package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sideshow/apns2"
	"github.com/sideshow/apns2/token"
	"github.com/valyala/fasthttp"
	"golang.org/x/net/http2"

	"github.com/imcloud/im-push-operator/dispatcher/config"
	"github.com/imcloud/im-push-operator/dispatcher/providers"
	"github.com/imcloud/im-push-operator/dispatcher/providers/apns"
	"github.com/imcloud/im-push-operator/dispatcher/providers/fcm"
)

// Load job kinds.
const (
	// jobCeiling: the bare client library sends straight to the fake, as
	// fast as it can with Concurrency goroutines, or at Rate (open loop).
	jobCeiling = "ceiling"
	// jobMax: notifications to the dispatcher as fast as it accepts them.
	jobMax = "max"
	// jobRate: notifications to the dispatcher at a fixed rate (open loop).
	jobRate = "rate"
	// jobBind: device bindings to the dispatcher, by Writers closed-loop
	// writers, or at Rate per second when Rate > 0.
	jobBind = "bind"
)

// loadJob is what the harness asks the load process to do (JSON on stdin).
type loadJob struct {
	Kind     string `json:"kind"`
	Provider string `json:"provider,omitempty"`
	// Certificate and FakeURL: the ceiling's credential and the fake, whose
	// /_bench endpoints every delivery job reads.
	Certificate *config.Certificate `json:"certificate,omitempty"`
	FakeURL     string              `json:"fakeURL,omitempty"`
	FakeCA      string              `json:"fakeCA,omitempty"`
	// Dispatcher's API, API token and process id (for its CPU time).
	DispatcherURL string `json:"dispatcherURL,omitempty"`
	Token         string `json:"token,omitempty"`
	DispatcherPID int    `json:"dispatcherPID,omitempty"`
	// FakePID: the fake's process id (for its CPU time).
	FakePID int `json:"fakePID,omitempty"`
	// UserPrefix+%05d for 0 <= i < Users are the recipients (each with one device).
	UserPrefix string `json:"userPrefix,omitempty"`
	Users      int    `json:"users,omitempty"`
	// DeviceTokens, for the ceiling: the token of user i is TokenOf(i).
	Recipients  int           `json:"recipients,omitempty"`
	Concurrency int           `json:"concurrency,omitempty"`
	Rate        float64       `json:"rate,omitempty"`
	Warmup      time.Duration `json:"warmup"`
	Window      time.Duration `json:"window"`
	// Ceiling jobs: the provider message the dispatcher makes of the load's
	// notifications (ceilingMessage) and its time to live.
	Message    *providers.Message `json:"message,omitempty"`
	MessageTTL time.Duration      `json:"messageTTL,omitempty"`
	// Bind jobs: certificate name and the user id prefix to bind under.
	CertificateName string `json:"certificateName,omitempty"`
}

// loadResult is what the load process measured in its window.
type loadResult struct {
	Seconds float64 `json:"seconds"`
	// Delivered: sends the fake answered 2xx within the window.
	Delivered int64   `json:"delivered"`
	PerSecond float64 `json:"perSecond"`
	// BodyBytes: the bodies of those sends, in bytes.
	BodyBytes int64 `json:"bodyBytes"`
	// Requests to the dispatcher within the window, and those refused
	// (429/503: queue full) or failed otherwise.
	Requests int64 `json:"requests"`
	Refused  int64 `json:"refused"`
	Errors   int64 `json:"errors"`
	// LastError is the text of one failure, for the report.
	LastError string `json:"lastError,omitempty"`
	// DispatcherCPU is the dispatcher's user+system CPU seconds in the window.
	DispatcherCPU float64 `json:"dispatcherCPU"`
	// LoadCPU and FakeCPU: the same for the load process itself (which is
	// the client library in a ceiling job) and for the fake.
	LoadCPU float64 `json:"loadCPU"`
	FakeCPU float64 `json:"fakeCPU"`
	// MachineBusy is the share of the machine's CPU time (all cores) that
	// was not idle in the window, 0 to 1.
	MachineBusy float64 `json:"machineBusy"`
	// MachineSteal is the share of it the hypervisor gave to other guests
	// (steal): CPU the window wanted and did not get, from outside.
	MachineSteal float64   `json:"machineSteal"`
	Latency      fakeStats `json:"latency"`
	// Accepted (rate jobs to the dispatcher): from the acceptedAt of each
	// notification's receipt to its request arriving at the fake, for the
	// notifications accepted within the window; Unmatched of them had not
	// arrived 2 s after it.
	Accepted  fakeStats `json:"accepted"`
	Unmatched int       `json:"unmatched"`
	// Bound lists the users whose binding the dispatcher confirmed (bind jobs).
	Bound []string `json:"bound,omitempty"`
	// Late counts open-loop sends that started more than 10 ms late.
	Late int64 `json:"late"`
}

// runLoad is the load process: one job from stdin, one result on stdout.
func runLoad() error {
	var job loadJob
	if err := json.NewDecoder(os.Stdin).Decode(&job); err != nil {
		return fmt.Errorf("reading the job: %w", err)
	}
	ctx := context.Background()
	var (
		res *loadResult
		err error
	)
	switch job.Kind {
	case jobCeiling:
		res, err = runCeiling(ctx, job)
	case jobMax, jobRate:
		res, err = runNotify(ctx, job)
	case jobBind:
		res, err = runBind(ctx, job)
	default:
		err = fmt.Errorf("unknown job kind %q", job.Kind)
	}
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(res)
}

// TokenOf is the device token of benchmark user i of a provider: 64 hex
// characters for APNs (as Apple's), 152 characters for FCM (as Google's).
func TokenOf(provider string, i int) string {
	h := fmt.Sprintf("%064x", uint64(i)*0x9e3779b97f4a7c15+1)
	if provider == string(config.FCM) {
		return "bench" + h + ":APA91b" + h + h[:17]
	}
	return h[len(h)-64:]
}

// window runs work (already running) through warm-up and the window,
// sampling the fake's count and the dispatcher's CPU at both ends.
type window struct {
	fake          *fakeClient
	pid, fakePID  int
	start, end    time.Time
	before, after fakeStats
	// CPU seconds at the start: dispatcher, this process, the fake; and the
	// machine's CPU ticks (busy, steal, total).
	cpu0, self0, fake0 float64
	cpu0Machine        cpuTicks
}

func (w *window) begin(ctx context.Context) error {
	if w.fake != nil {
		if err := w.fake.Reset(ctx); err != nil {
			return err
		}
		st, err := w.fake.Stats(ctx)
		if err != nil {
			return err
		}
		w.before = st
	}
	w.cpu0, w.self0, w.fake0 = cpuOf(w.pid), cpuOf(os.Getpid()), cpuOf(w.fakePID)
	w.cpu0Machine, _ = machineCPU()
	w.start = time.Now()
	return nil
}

// cpuOf is cpuSeconds, 0 for no process (pid 0) or an unreadable one.
func cpuOf(pid int) float64 {
	if pid <= 0 {
		return 0
	}
	s, _ := cpuSeconds(pid)
	return s
}

func (w *window) finish(ctx context.Context, res *loadResult) error {
	w.end = time.Now()
	res.DispatcherCPU = cpuOf(w.pid) - w.cpu0
	res.LoadCPU = cpuOf(os.Getpid()) - w.self0
	res.FakeCPU = cpuOf(w.fakePID) - w.fake0
	if t, err := machineCPU(); err == nil && t.total > w.cpu0Machine.total {
		total := t.total - w.cpu0Machine.total
		res.MachineBusy = (t.busy - w.cpu0Machine.busy) / total
		res.MachineSteal = (t.steal - w.cpu0Machine.steal) / total
	}
	if w.fake != nil {
		st, err := w.fake.Stats(ctx)
		if err != nil {
			return err
		}
		w.after = st
		res.Delivered = st.Delivered - w.before.Delivered
		res.BodyBytes = st.BodyBytes - w.before.BodyBytes
		res.Latency = st
	}
	res.Seconds = w.end.Sub(w.start).Seconds()
	res.PerSecond = float64(res.Delivered) / res.Seconds
	return nil
}

func fakeAdmin(job loadJob) (*fakeClient, error) {
	tlsConfig, err := providers.TLSConfig(job.FakeCA)
	if err != nil {
		return nil, err
	}
	return &fakeClient{URL: job.FakeURL, HTTP: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsConfig}}}, nil
}

// measure runs the workers (each loops until stop is closed) through the
// warm-up and the window, then stops them.
func measure(ctx context.Context, job loadJob, workers int, loop func(stop <-chan struct{}, counting *atomic.Bool), res *loadResult) error {
	w := &window{pid: job.DispatcherPID, fakePID: job.FakePID}
	if job.FakeURL != "" {
		f, err := fakeAdmin(job)
		if err != nil {
			return err
		}
		w.fake = f
	}
	stop := make(chan struct{})
	var counting atomic.Bool
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() { defer wg.Done(); loop(stop, &counting) }()
	}
	time.Sleep(job.Warmup)
	if err := w.begin(ctx); err != nil {
		close(stop)
		wg.Wait()
		return err
	}
	counting.Store(true)
	time.Sleep(job.Window)
	counting.Store(false)
	err := w.finish(ctx, res)
	close(stop)
	wg.Wait()
	return err
}

// runCeiling sends straight to the fake with the bare client library:
// closed loop with job.Concurrency goroutines, or open loop at job.Rate.
func runCeiling(ctx context.Context, job loadJob) (*loadResult, error) {
	send, err := ceilingSender(job)
	if err != nil {
		return nil, err
	}
	res := &loadResult{}
	var (
		next   atomic.Int64
		errs   atomic.Int64
		late   atomic.Int64
		lastMu sync.Mutex
	)
	one := func(counting *atomic.Bool) {
		i := int(next.Add(1)) % job.Users
		if err := send(ctx, i); err != nil && counting.Load() {
			errs.Add(1)
			lastMu.Lock()
			res.LastError = err.Error()
			lastMu.Unlock()
		}
	}
	workers, loop := job.Concurrency, closedLoop(one)
	if job.Rate > 0 {
		workers, loop = 1, openLoop(job.Rate, 512, &late, one)
	}
	err = measure(ctx, job, workers, loop, res)
	res.Errors, res.Late = errs.Load(), late.Load()
	return res, err
}

// closedLoop is a worker loop calling send back to back until stopped.
func closedLoop(send func(counting *atomic.Bool)) func(stop <-chan struct{}, counting *atomic.Bool) {
	return func(stop <-chan struct{}, counting *atomic.Bool) {
		for {
			select {
			case <-stop:
				return
			default:
			}
			send(counting)
		}
	}
}

// openLoop is a pacer calling send rate times a second, each in its own
// goroutine (at most inFlight at once), whether or not earlier ones
// returned. Calls that start more than 10 ms late while counting are added
// to late.
func openLoop(rate float64, inFlight int, late *atomic.Int64, send func(counting *atomic.Bool)) func(stop <-chan struct{}, counting *atomic.Bool) {
	return func(stop <-chan struct{}, counting *atomic.Bool) {
		interval := time.Duration(float64(time.Second) / rate)
		sem := make(chan struct{}, inFlight)
		var wg sync.WaitGroup
		defer wg.Wait()
		start := time.Now()
		for i := 0; ; i++ {
			due := start.Add(time.Duration(i) * interval)
			if d := time.Until(due); d > 0 {
				select {
				case <-stop:
					return
				case <-time.After(d):
				}
			} else if d < -10*time.Millisecond && counting.Load() {
				late.Add(1)
			}
			select {
			case <-stop:
				return
			case sem <- struct{}{}:
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				send(counting)
			}()
		}
	}
}

// ceilingSender returns a function sending one notification to benchmark
// user i through the provider's client library.
func ceilingSender(job loadJob) (func(context.Context, int) error, error) {
	cert := job.Certificate
	if job.Message == nil {
		return nil, fmt.Errorf("ceiling job for %s without the dispatcher's message", job.Provider)
	}
	switch config.Provider(job.Provider) {
	case config.APNs:
		key, err := token.AuthKeyFromBytes(cert.Data[config.KeyAPNsAuthKey])
		if err != nil {
			return nil, err
		}
		tlsConfig, err := providers.TLSConfig(cert.CABundle)
		if err != nil {
			return nil, err
		}
		// apns2's own transport, trusting the fake's CA.
		c := &apns2.Client{
			Host:       cert.Endpoint,
			HTTPClient: &http.Client{Transport: &http2.Transport{TLSClientConfig: tlsConfig, ReadIdleTimeout: apns2.ReadIdleTimeout}},
			Token:      &token.Token{AuthKey: key, KeyID: cert.APNs.KeyID, TeamID: cert.APNs.TeamID},
		}
		// The request the dispatcher's APNs client makes of the message:
		// the same headers (apns-id, collapse id, expiration, push type,
		// priority) and payload bytes.
		return func(ctx context.Context, i int) error {
			resp, err := c.PushWithContext(ctx, apns.Notification(ceilingSend(job, i), cert.APNs.BundleID))
			if err != nil {
				return err
			}
			if !resp.Sent() {
				return fmt.Errorf("APNs answered %d %s", resp.StatusCode, resp.Reason)
			}
			return nil
		}, nil
	case config.FCM:
		// The FCM Admin SDK, as the dispatcher's provider client wraps it.
		c, err := fcm.New(cert, providers.Options{})
		if err != nil {
			return nil, err
		}
		return func(ctx context.Context, i int) error {
			if r := c.Send(ctx, ceilingSend(job, i)); r.Outcome != providers.Delivered {
				return fmt.Errorf("FCM: %s %s %v", r.Outcome, r.Reason, r.Err)
			}
			return nil
		}, nil
	}
	return nil, fmt.Errorf("no ceiling for provider %q", job.Provider)
}

// ceilingSend is the job's message for one send to benchmark user i: what
// the dispatcher sends for a notification to that user, which has a new ID
// (the API's idempotency key, also the apns-id), the user's token, the
// load's send stamp and an expiration from now. The data map is the
// message's own, as the dispatcher makes one per notification.
func ceilingSend(job loadJob, i int) *providers.Message {
	now := time.Now()
	m := *job.Message
	m.ID, m.Token, m.Expiration = newID(), TokenOf(job.Provider, i), now.Add(job.MessageTTL)
	m.Data = maps.Clone(m.Data)
	if m.Data == nil {
		m.Data = map[string]string{}
	}
	m.Data[sentAtKey] = strconv.FormatInt(now.UnixNano(), 10)
	return &m
}

// newID returns a fresh UUID (version 4 in form, as the API and apns-id
// want): a random base drawn once per process plus a counter, appended in
// place, rather than 16 random bytes, a hex string and four concatenations
// per ID, which the load and the ceiling paid on every request.
func newID() string { return string(appendID(nil)) }

var (
	idBase = func() (b [16]byte) { _, _ = rand.Read(b[:]); return b }()
	idSeq  atomic.Uint64
)

// appendID appends what newID returns.
func appendID(dst []byte) []byte {
	b := idBase
	binary.BigEndian.PutUint64(b[8:], binary.BigEndian.Uint64(b[8:])+idSeq.Add(1))
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var h [32]byte
	hex.Encode(h[:], b[:])
	dst = append(dst, h[0:8]...)
	dst = append(dst, '-')
	dst = append(dst, h[8:12]...)
	dst = append(dst, '-')
	dst = append(dst, h[12:16]...)
	dst = append(dst, '-')
	dst = append(dst, h[16:20]...)
	dst = append(dst, '-')
	return append(dst, h[20:]...)
}

// dispatcherClient posts to the dispatcher's API over kept-alive HTTP/1.1
// connections, with fasthttp rather than net/http: the load shares the
// machine's two CPUs with the dispatcher and the fake, and the IM server it
// stands for would run elsewhere, so the cheaper the load the more of the
// machine measures the dispatcher (net/http's client costs about three
// goroutine hand-offs per request; fasthttp's none). The dispatcher's side
// of the connection is the same either way.
type dispatcherClient struct {
	base, auth string
	http       *fasthttp.HostClient
}

// maxLoadConns lets the load open a connection per request in flight, as
// net/http's client does: fasthttp refuses at once when MaxConns are busy,
// and an open loop must not wait for one either (its offered rate would drop
// while binds wait for the store's write budget).
const maxLoadConns = 1 << 16

func newDispatcherClient(job loadJob) (*dispatcherClient, error) {
	u, err := url.Parse(job.DispatcherURL)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		// The harness serves the dispatcher's API on plain loopback HTTP.
		return nil, fmt.Errorf("dispatcher URL %q: want http://host:port", job.DispatcherURL)
	}
	return &dispatcherClient{
		base: strings.TrimSuffix(job.DispatcherURL, "/"), auth: "Bearer " + job.Token,
		http: &fasthttp.HostClient{
			Addr: u.Host, MaxConns: maxLoadConns, MaxIdleConnDuration: time.Minute,
			ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second,
		},
	}, nil
}

// call sends one request and returns the status and the answer's body.
func (d *dispatcherClient) call(method, path string, body []byte) (int, []byte, error) {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.Header.SetMethod(method)
	req.SetRequestURI(d.base + path)
	req.Header.Set("Authorization", d.auth)
	req.Header.SetContentType("application/json")
	req.SetBodyRaw(body)
	if err := d.http.Do(req, resp); err != nil {
		return 0, nil, err
	}
	return resp.StatusCode(), bytes.Clone(resp.Body()), nil
}

// notificationBody builds a notification to n consecutive users starting at
// first (wrapping), stamped with the send time, which it returns too. The
// body is appended by hand, not marshalled: every value in it is an ASCII
// identifier or number the harness makes (nothing to escape), and what the
// load spends here is CPU the dispatcher path loses on this shared machine
// (marshalling the body took a fifth of the load's CPU per request).
// load_test.go checks it decodes to the request the API documents.
func notificationBody(job loadJob, first int) ([]byte, int64) {
	conversation := `"c-1","type":"single"`
	if job.Recipients > 1 {
		conversation = `"g-1","type":"group"`
	}
	b := make([]byte, 0, 384+job.Recipients*(len(job.UserPrefix)+16))
	b = append(b, `{"id":"`...)
	b = appendID(b)
	b = append(b, `","sender":{"id":"bench-sender","displayName":"Bench"},"conversation":{"id":`...)
	b = append(b, conversation...)
	b = append(b, `},"recipients":[`...)
	for k := range job.Recipients {
		if k > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"userId":"`...)
		b = appendUserID(b, job.UserPrefix, (first+k)%job.Users)
		b = append(b, `"}`...)
	}
	b = append(b, `],"message":{"text":"hello from the benchmark"},"push":{"data":{"`+sentAtKey+`":"`...)
	stamp := time.Now().UnixNano()
	b = strconv.AppendInt(b, stamp, 10)
	b = append(b, `"}}}`...)
	return b, stamp
}

// appendUserID appends prefix and i as at least five digits: the users the
// harness installs are prefix+%05d.
func appendUserID(b []byte, prefix string, i int) []byte {
	b = append(b, prefix...)
	for d := 10000; d > 1 && i < d; d /= 10 {
		b = append(b, '0')
	}
	return strconv.AppendInt(b, int64(i), 10)
}

// runNotify posts notifications: closed loop (jobMax) with Concurrency
// workers backing off briefly when the dispatcher's queue is full, or open
// loop at job.Rate (jobRate).
func runNotify(ctx context.Context, job loadJob) (*loadResult, error) {
	if job.Recipients < 1 {
		job.Recipients = 1
	}
	d, err := newDispatcherClient(job)
	if err != nil {
		return nil, err
	}
	res := &loadResult{}
	var (
		next                    atomic.Int64
		requests, refused, errs atomic.Int64
		late                    atomic.Int64
		lastMu                  sync.Mutex
		workers                 int
		loop                    func(stop <-chan struct{}, counting *atomic.Bool)
		// accepted: send stamp → acceptedAt of each notification accepted
		// within the window (rate jobs).
		acceptedMu sync.Mutex
		accepted   = map[int64]int64{}
	)
	recordErr := func(err error) { lastMu.Lock(); res.LastError = err.Error(); lastMu.Unlock() }
	post := func(counting *atomic.Bool) {
		first := int(next.Add(int64(job.Recipients))) % job.Users
		body, stamp := notificationBody(job, first)
		code, answer, err := d.call(http.MethodPost, "/v1/notifications", body)
		c := counting.Load()
		switch {
		case err == nil && code == http.StatusAccepted && c && job.Kind == jobRate:
			var receipt struct {
				AcceptedAt time.Time `json:"acceptedAt"`
			}
			if json.Unmarshal(answer, &receipt) == nil {
				acceptedMu.Lock()
				accepted[stamp] = receipt.AcceptedAt.UnixNano()
				acceptedMu.Unlock()
			}
		case err != nil:
			if c {
				errs.Add(1)
				recordErr(err)
			}
			time.Sleep(10 * time.Millisecond)
		case code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable:
			if c {
				refused.Add(1)
			}
			// The queue holds seconds of work: a short pause cannot starve
			// it, and hammering would spend the dispatcher's CPU on refusals.
			time.Sleep(20 * time.Millisecond)
		case code != http.StatusAccepted:
			if c {
				errs.Add(1)
				recordErr(fmt.Errorf("HTTP %d", code))
			}
		}
		if c {
			requests.Add(1)
		}
	}
	if job.Kind == jobMax {
		workers, loop = job.Concurrency, closedLoop(post)
	} else {
		workers, loop = 1, openLoop(job.Rate, 512, &late, post)
	}
	err = measure(ctx, job, workers, loop, res)
	res.Requests, res.Refused, res.Errors, res.Late = requests.Load(), refused.Load(), errs.Load(), late.Load()
	if err == nil && job.Kind == jobRate {
		res.Accepted, res.Unmatched, err = acceptedToArrival(ctx, job, accepted)
	}
	return res, err
}

// acceptedToArrival matches the notifications accepted in the window with
// their requests' arrivals at the fake, waiting up to 2 s for the last
// ones so that the slowest are not left out, and summarizes acceptedAt →
// arrival.
func acceptedToArrival(ctx context.Context, job loadJob, accepted map[int64]int64) (fakeStats, int, error) {
	f, err := fakeAdmin(job)
	if err != nil {
		return fakeStats{}, 0, err
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		arrivals, err := f.Arrivals(ctx)
		if err != nil {
			return fakeStats{}, 0, err
		}
		var s []time.Duration
		for _, a := range arrivals {
			if at, ok := accepted[a[0]]; ok {
				s = append(s, time.Duration(a[1]-at))
			}
		}
		if len(s) >= len(accepted) || time.Now().After(deadline) {
			return summarize(s), len(accepted) - len(s), nil
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// runBind binds one device for new users: Concurrency closed-loop writers,
// or open loop at job.Rate. Only bindings the dispatcher confirmed (204)
// within the window are listed in Bound, for the harness to count back.
func runBind(ctx context.Context, job loadJob) (*loadResult, error) {
	d, err := newDispatcherClient(job)
	if err != nil {
		return nil, err
	}
	res := &loadResult{}
	var (
		mu      sync.Mutex
		seq     atomic.Int64
		errs    atomic.Int64
		reqs    atomic.Int64
		counted = func(user string, counting bool, err error) {
			if !counting {
				return
			}
			reqs.Add(1)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs.Add(1)
				res.LastError = err.Error()
				return
			}
			res.Bound = append(res.Bound, user)
		}
	)
	bind := func(counting *atomic.Bool) {
		i := int(seq.Add(1))
		user := fmt.Sprintf("%s%06d", job.UserPrefix, i)
		body, _ := json.Marshal(map[string]string{"certificateName": job.CertificateName, "token": TokenOf(job.Provider, 1_000_000+i)})
		c := counting.Load()
		code, _, err := d.call(http.MethodPut, "/v1/users/"+user+"/devices/phone", body)
		if err == nil && code != http.StatusNoContent {
			err = fmt.Errorf("HTTP %d", code)
		}
		// A binding confirmed after the window closed still counts as
		// written: it is looked for when counting back.
		counted(user, c, err)
		if err != nil {
			time.Sleep(10 * time.Millisecond)
		}
	}
	var (
		workers int
		loop    func(stop <-chan struct{}, counting *atomic.Bool)
	)
	if job.Rate <= 0 {
		workers, loop = job.Concurrency, closedLoop(bind)
	} else {
		// Unbounded in practice: binds wait for the store's write budget,
		// and the offered rate must not drop while they do.
		var late atomic.Int64
		workers, loop = 1, openLoop(job.Rate, 1<<20, &late, bind)
	}
	err = measure(ctx, job, workers, loop, res)
	res.Requests, res.Errors = reqs.Load(), errs.Load()
	res.PerSecond = float64(len(res.Bound)) / math.Max(res.Seconds, 1e-9)
	return res, err
}
