// Package fake holds what every local fake provider shares: a throwaway CA and
// TLS server (HTTP/2 where the provider speaks it), a per-token script of
// answers so tests can make a provider fail in any way, a recorder of what was
// delivered, and admin endpoints (/_fake/...) so a fake running as its own
// process (demo, benchmarks) can be scripted and read over HTTP.
//
// The provider-specific fakes live in sub-packages (fake/apns, fake/huawei, ...)
// and check authentication exactly as the provider does.
package fake

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"time"

	"golang.org/x/net/http2"
)

// CA is a self-signed certificate authority that issues the fakes' server
// certificates; clients trust it through the PushCertificate's caBundle.
type CA struct {
	cert    *x509.Certificate
	key     *ecdsa.PrivateKey
	CertPEM []byte
}

// NewCA creates a CA valid for a day.
func NewCA() (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "im-push-operator fake providers CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{cert: cert, key: key, CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}, nil
}

// ServerCertificate issues a certificate for 127.0.0.1, ::1 and localhost.
func (ca *CA) ServerCertificate() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "localhost"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der, ca.cert.Raw}, PrivateKey: key}, nil
}

// Pool returns a cert pool holding only this CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// Answer is one scripted reaction of a fake to a send for a token.
type Answer struct {
	// Code is provider-specific: the reason/errorCode/code the fake answers
	// with ("Unregistered", "UNREGISTERED", "80300007", "10000", ...). Empty
	// means success. Each fake documents the codes it knows; "status:NNN"
	// answers a bare HTTP status. "reset" aborts the exchange (an HTTP/2
	// RST_STREAM). Every fake also knows the connection faults GoAway and
	// ConnReset, which Pause carries out.
	Code string `json:"code,omitempty"`
	// Delay is added before answering.
	Delay time.Duration `json:"delay,omitempty"`
	// RetryAfter sets a Retry-After header (seconds) when non-zero.
	RetryAfter time.Duration `json:"retryAfter,omitempty"`
	// Times is how many sends this answer applies to; 0 means every send.
	Times int `json:"times,omitempty"`
}

// Connection faults: answer codes that end the connection the send came on,
// whatever the provider. Other exchanges on that connection end too.
const (
	// GoAway sends an HTTP/2 GOAWAY admitting every stream (so the client
	// cannot tell whether this send was processed and may not retry it
	// silently) and closes the connection without answering. On HTTP/1.1 it
	// closes the connection.
	GoAway = "goaway"
	// ConnReset resets the TCP connection (RST) without answering.
	ConnReset = "connreset"
)

// AnyToken scripts an answer for every token that has no script of its own.
const AnyToken = "*"

// Received is one send the fake accepted (authentication passed).
type Received struct {
	Provider string            `json:"provider"`
	Token    string            `json:"token"`
	Title    string            `json:"title,omitempty"`
	Body     string            `json:"body,omitempty"`
	Data     map[string]string `json:"data,omitempty"`
	// Fields holds provider-specific values a test may check (topic,
	// push type, collapse id, category, channel id, badge, key id...).
	Fields map[string]string `json:"fields,omitempty"`
	// Answered is the code the fake answered with ("" = success).
	Answered string    `json:"answered,omitempty"`
	At       time.Time `json:"at"`
}

// State is the script and record of one fake, safe for concurrent use.
type State struct {
	Provider string

	mu       sync.Mutex
	scripts  map[string][]Answer
	received []Received
	authFail int
	latency  time.Duration
	changed  chan struct{}
	// opened and open count connections (Instrument).
	opened, open int
	// forgetting: keep no records (Forget).
	forgetting bool
}

// NewState returns an empty state for a provider.
func NewState(provider string) *State {
	return &State{Provider: provider, scripts: map[string][]Answer{}, changed: make(chan struct{})}
}

// Script appends answers for token (or AnyToken).
func (s *State) Script(token string, answers ...Answer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.scripts[token] = append(s.scripts[token], answers...)
}

// Reset forgets scripts, records and latency.
func (s *State) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.scripts = map[string][]Answer{}
	s.received = nil
	s.latency = 0
	s.authFail = 0
	s.notifyLocked()
}

// SetLatency adds a fixed delay to every answer (a real round trip).
func (s *State) SetLatency(d time.Duration) {
	s.mu.Lock()
	s.latency = d
	s.mu.Unlock()
}

// Forget makes Record keep nothing from now on: a fake serving a benchmark
// answers millions of sends, which the record would hold forever. Received,
// Count and WaitFor see no later sends.
func (s *State) Forget() {
	s.mu.Lock()
	s.forgetting = true
	s.mu.Unlock()
}

// Latency returns the configured latency.
func (s *State) Latency() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.latency
}

// Next pops the answer for a send to token.
func (s *State) Next(token string) Answer {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, key := range []string{token, AnyToken} {
		q := s.scripts[key]
		if len(q) == 0 {
			continue
		}
		a := q[0]
		if a.Times > 0 {
			a.Times--
			if a.Times == 0 {
				s.scripts[key] = q[1:]
			} else {
				q[0] = a
			}
		}
		return a
	}
	return Answer{}
}

// Record stores a send and wakes waiters.
func (s *State) Record(r Received) {
	if r.At.IsZero() {
		r.At = time.Now()
	}
	r.Provider = s.Provider
	s.mu.Lock()
	if s.forgetting {
		s.mu.Unlock()
		return
	}
	s.received = append(s.received, r)
	s.notifyLocked()
	s.mu.Unlock()
}

func (s *State) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// Received returns a copy of everything recorded so far.
func (s *State) Received() []Received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Received(nil), s.received...)
}

// Count returns how many sends were recorded.
func (s *State) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.received)
}

// Changed returns a channel closed at the next Record or Reset: wait on it
// instead of sleeping.
func (s *State) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// WaitFor blocks until at least n sends are recorded or timeout passes, and
// returns what was recorded.
func (s *State) WaitFor(n int, timeout time.Duration) []Received {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		ch := s.Changed()
		if got := s.Received(); len(got) >= n {
			return got
		}
		select {
		case <-ch:
		case <-deadline.C:
			return s.Received()
		}
	}
}

// Connections returns how many connections the fake has accepted and how
// many of them are still open.
func (s *State) Connections() (opened, open int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.opened, s.open
}

// WaitClosed blocks until no connection is open or timeout passes, and
// returns how many are open.
func (s *State) WaitClosed(timeout time.Duration) int {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		ch := s.Changed()
		if _, open := s.Connections(); open == 0 {
			return 0
		}
		select {
		case <-ch:
		case <-deadline.C:
			_, open := s.Connections()
			return open
		}
	}
}

type connKey struct{}

// Instrument counts srv's connections (Connections, WaitClosed) and lets its
// handlers reach the connection a request came on (GoAway, ConnReset). Call it
// before srv starts; Start does.
func (s *State) Instrument(srv *httptest.Server) {
	srv.Config.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
		return context.WithValue(ctx, connKey{}, c)
	}
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		s.mu.Lock()
		defer s.mu.Unlock()
		switch st {
		case http.StateNew:
			s.opened++
			s.open++
		case http.StateClosed, http.StateHijacked:
			s.open--
		default:
			return
		}
		s.notifyLocked()
	}
}

// Admin serves the /_fake/ endpoints: POST /_fake/script {"token":..,"answers":[..]},
// GET /_fake/received, POST /_fake/reset, POST /_fake/latency {"latency":"20ms"}.
func (s *State) Admin() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /_fake/script", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Token   string   `json:"token"`
			Answers []Answer `json:"answers"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Token == "" {
			http.Error(w, `{"error":"want {\"token\":..,\"answers\":[..]}"}`, http.StatusBadRequest)
			return
		}
		s.Script(req.Token, req.Answers...)
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /_fake/received", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(s.Received())
	})
	mux.HandleFunc("POST /_fake/reset", func(w http.ResponseWriter, r *http.Request) {
		s.Reset()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /_fake/latency", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Latency string `json:"latency"`
		}
		d, err := time.Duration(0), json.NewDecoder(r.Body).Decode(&req)
		if err == nil {
			d, err = time.ParseDuration(req.Latency)
		}
		if err != nil {
			http.Error(w, `{"error":"want {\"latency\":\"20ms\"}"}`, http.StatusBadRequest)
			return
		}
		s.SetLatency(d)
		w.WriteHeader(http.StatusNoContent)
	})
	return mux
}

// Server is a running fake: a TLS server whose handler is the provider's
// protocol plus the admin endpoints.
type Server struct {
	*httptest.Server
	State *State
	CA    *CA
}

// Start serves handler over TLS with a certificate from ca. HTTP/2 is offered
// (APNs requires it; the others accept it as their real servers do). tune
// adjusts the TLS config before the server starts (APNs asks for client
// certificates).
func Start(ca *CA, state *State, handler http.Handler, tune ...func(*tls.Config)) (*Server, error) {
	cert, err := ca.ServerCertificate()
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/_fake/", state.Admin())
	mux.Handle("/", handler)
	srv := httptest.NewUnstartedServer(mux)
	srv.EnableHTTP2 = true
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	for _, f := range tune {
		f(srv.TLS)
	}
	state.Instrument(srv)
	srv.StartTLS()
	return &Server{Server: srv, State: state, CA: ca}, nil
}

// Client returns an HTTP client that trusts the fake's CA (for tests that
// bypass caBundle plumbing; production code builds its own from caBundle).
func (s *Server) Client() *http.Client { return s.Server.Client() }

// Abort ends the exchange without an HTTP answer (a reset stream or
// connection, as the client sees it). Call it from a handler only.
func Abort() {
	panic(http.ErrAbortHandler)
}

// Pause waits for the answer's delay plus the state's latency, or until the
// request is cancelled; then it carries out a connection fault (GoAway,
// ConnReset), which ends the handler. Every fake calls it right before
// answering.
func (s *State) Pause(r *http.Request, a Answer) {
	if d := a.Delay + s.Latency(); d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-r.Context().Done():
		}
		t.Stop()
	}
	switch a.Code {
	case GoAway:
		endConn(r, true)
	case ConnReset:
		endConn(r, false)
	}
}

// endConn ends the connection r came on (Instrument must have run) and the
// handler with it. The GOAWAY frame is written beside the HTTP/2 server's
// own writes; the connection closes right after, so a frame it interleaves
// with changes only which error the client reports, not that the exchange
// failed.
func endConn(r *http.Request, goAway bool) {
	c, ok := r.Context().Value(connKey{}).(net.Conn)
	if !ok {
		Abort()
	}
	if tc, ok := c.(*tls.Conn); ok && !goAway {
		c = tc.NetConn()
	}
	switch {
	case goAway && r.ProtoMajor == 2:
		_ = http2.NewFramer(c, nil).WriteGoAway(math.MaxInt32, http2.ErrCodeNo, []byte("fake goaway"))
	case !goAway:
		if tcp, ok := c.(*net.TCPConn); ok {
			// Linger 0: close with RST instead of FIN.
			_ = tcp.SetLinger(0)
		}
	}
	_ = c.Close()
	Abort()
}
