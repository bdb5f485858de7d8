// Package server is the dispatcher's HTTP API: device bindings and user
// settings over the token store, notifications into the delivery engine,
// probes, metrics and the OpenAPI document. Every /v1 request carries the
// tenant's bearer token; every error is a JSON body
// {"error":{"code","message","field"}} (codes in errors.go).
package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/imcloud/im-push-operator/dispatcher/config"
	"github.com/imcloud/im-push-operator/dispatcher/policy"
	"github.com/imcloud/im-push-operator/dispatcher/store"
)

// Engine is what the API needs from the delivery engine. Submit errors that
// wrap ErrQueueFull, ErrDraining or ErrNotReady become 429 and 503 answers.
type Engine interface {
	// Submit accepts a validated notification; a repeated id returns the
	// first receipt.
	Submit(n *policy.Notification) (Receipt, error)
	// Status reports a notification still in the idempotency window.
	Status(id string) (Status, bool)
	// Wait returns once every device of the notification has a final
	// outcome, or when ctx ends (with ctx's error and the latest status).
	Wait(ctx context.Context, id string) (Status, error)
}

// Admitter may be implemented by an Engine so that the API can refuse a
// notification for want of room before decoding its body (admitEarly).
type Admitter interface {
	// Room is how many more device deliveries the queue takes now.
	Room() int
	// Admit returns the error Submit would return, wrapping ErrQueueFull
	// or ErrDraining, if a notification with this id and this many
	// recipients would be refused before any other work; nil if it may be
	// accepted, or if id was accepted already (Submit answers the receipt).
	Admit(id string, recipients int) error
}

// Errors an Engine's Submit wraps.
var (
	ErrQueueFull = errors.New("delivery queue is full")
	ErrDraining  = errors.New("dispatcher is draining")
	ErrNotReady  = errors.New("delivery engine has no config yet")
)

// RetryAfterError may be implemented by a Submit error wrapping ErrQueueFull
// to say when to come back; the default is one second.
type RetryAfterError interface {
	error
	RetryAfter() time.Duration
}

// Receipt is the answer to an accepted notification.
type Receipt struct {
	ID string `json:"id"`
	// Accepted counts the device deliveries queued.
	Accepted int `json:"accepted"`
	// Skipped counts the users and devices policy left out (online,
	// muted, quiet hours, no binding).
	Skipped int `json:"skipped"`
	// Duplicate is true when the id was already accepted in the window.
	Duplicate bool `json:"duplicate,omitempty"`
	// AcceptedAt is when this replica accepted it (for a duplicate, the
	// first time).
	AcceptedAt time.Time `json:"acceptedAt"`
}

// Device states in a Status.
const (
	StatePending   = "pending" // queued, in flight or waiting to retry
	StateDelivered = "delivered"
	StateFailed    = "failed"  // gave up: attempts, TTL, invalid token, bad message or credentials
	StateDropped   = "dropped" // let go at shutdown
	StateSkipped   = "skipped" // policy left it out
)

// Status is a notification's per-device outcomes.
type Status struct {
	ID string `json:"id"`
	// Complete is true when no device is pending.
	Complete bool            `json:"complete"`
	Devices  []DeviceOutcome `json:"devices"`
}

// DeviceOutcome is where one device's delivery stands.
type DeviceOutcome struct {
	User string `json:"user"`
	// Device is empty when policy skipped the whole user.
	Device          string `json:"device,omitempty"`
	CertificateName string `json:"certificateName,omitempty"`
	Provider        string `json:"provider,omitempty"`
	State           string `json:"state"`
	// Reason is the engine's reason for the state; ProviderReason the
	// provider's own code for the last answer.
	Reason         string `json:"reason,omitempty"`
	ProviderReason string `json:"providerReason,omitempty"`
	Attempts       int    `json:"attempts"`
}

// ConfigSource yields the config in use and the hash of its document; nil
// until one has loaded.
type ConfigSource interface {
	Config() (*config.Config, string)
}

// TokenSource yields the current API bearer token; nil until it has loaded.
type TokenSource interface {
	Token() []byte
}

// Options are the server's parts; Store, Engine, Config and Token are required.
type Options struct {
	Store store.Store
	// StoreReady reports whether the token store's cache is synced; nil
	// means always (the in-memory store).
	StoreReady func() bool
	Engine     Engine
	Config     ConfigSource
	Token      TokenSource
	// Metrics records requests; nil registers a fresh set nowhere.
	Metrics *Metrics
	// Gatherer is what /metrics serves; nil serves an empty registry.
	Gatherer prometheus.Gatherer
	Logger   logr.Logger
}

// Server is an http.Handler serving the API; the dispatcher serves it
// through HTTPServer (fasthttp, fast.go).
type Server struct {
	opts     Options
	log      logr.Logger
	mux      *http.ServeMux
	routes   map[string]route
	metrics  *Metrics
	draining atomic.Bool
}

type route struct {
	method, path string
	// public routes skip bearer auth: probes, metrics (the NetworkPolicy
	// limits who reaches them) and the API description.
	public  bool
	handler http.HandlerFunc
}

// New returns a server over opts.
func New(opts Options) *Server {
	s := &Server{opts: opts, log: opts.Logger, mux: http.NewServeMux(), routes: map[string]route{}, metrics: opts.Metrics}
	if s.metrics == nil {
		s.metrics = NewMetrics(prometheus.NewRegistry())
	}
	if s.opts.Gatherer == nil {
		s.opts.Gatherer = prometheus.NewRegistry()
	}
	for _, rt := range s.routeTable() {
		pattern := rt.method + " " + rt.path
		s.routes[pattern] = rt
		s.mux.HandleFunc(pattern, rt.handler)
	}
	return s
}

func (s *Server) routeTable() []route {
	metrics := promhttp.HandlerFor(s.opts.Gatherer, promhttp.HandlerOpts{})
	return []route{
		{method: http.MethodPut, path: "/v1/users/{user}/devices/{device}", handler: s.bindDevice},
		{method: http.MethodDelete, path: "/v1/users/{user}/devices/{device}", handler: s.unbindDevice},
		{method: http.MethodGet, path: "/v1/users/{user}/devices", handler: s.listDevices},
		{method: http.MethodDelete, path: "/v1/users/{user}", handler: s.deleteUser},
		{method: http.MethodPut, path: "/v1/users/{user}/settings", handler: s.putSettings},
		{method: http.MethodPost, path: "/v1/notifications", handler: s.postNotification},
		{method: http.MethodPost, path: "/v1/notifications:batch", handler: s.postBatch},
		{method: http.MethodGet, path: "/v1/notifications/{id}", handler: s.getNotification},
		{method: http.MethodGet, path: "/healthz", public: true, handler: s.healthz},
		{method: http.MethodGet, path: "/readyz", public: true, handler: s.readyz},
		{method: http.MethodGet, path: "/metrics", public: true, handler: metrics.ServeHTTP},
		{method: http.MethodGet, path: "/openapi.json", public: true, handler: serveOpenAPI},
	}
}

// StartDraining makes /readyz fail and refuses every new /v1 request with
// 503, so the Service stops sending traffic while the engine drains.
func (s *Server) StartDraining() { s.draining.Store(true) }

// ServeHTTP routes r, counting it by route pattern and status code.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_, pattern := s.mux.Handler(r)
	rw := &statusWriter{ResponseWriter: w}
	label := pattern
	if label == "" {
		label = "unmatched"
	}
	defer func() { s.metrics.requests.WithLabelValues(label, strconv.Itoa(rw.code())).Inc() }()

	rt, ok := s.routes[pattern]
	switch {
	case !ok:
		s.notRouted(rw, r)
	case rt.public:
		s.mux.ServeHTTP(rw, r)
	case s.draining.Load():
		writeError(rw, newError(http.StatusServiceUnavailable, CodeDraining, "", "this dispatcher replica is shutting down; retry on another"))
	case !s.authorized(r):
		rw.Header().Set("WWW-Authenticate", `Bearer realm="im-push-dispatcher"`)
		writeError(rw, newError(http.StatusUnauthorized, CodeUnauthorized, "", "a valid bearer token is required in the Authorization header"))
	default:
		s.mux.ServeHTTP(rw, r)
	}
}

// notRouted answers what the mux would answer (404, 405 with Allow, or a
// redirect to the clean path) but with JSON errors.
func (s *Server) notRouted(w http.ResponseWriter, r *http.Request) {
	h, _ := s.mux.Handler(r)
	c := &captureWriter{header: http.Header{}}
	h.ServeHTTP(c, r)
	switch c.status {
	case http.StatusMethodNotAllowed:
		w.Header().Set("Allow", c.header.Get("Allow"))
		writeError(w, newError(http.StatusMethodNotAllowed, CodeMethodNotAllowed, "", "%s is not allowed on %s (allowed: %s)", r.Method, r.URL.Path, c.header.Get("Allow")))
	case http.StatusNotFound:
		writeError(w, newError(http.StatusNotFound, CodeNotFound, "", "no such endpoint: %s %s", r.Method, r.URL.Path))
	default:
		for k, v := range c.header {
			w.Header()[k] = v
		}
		w.WriteHeader(c.status)
		_, _ = w.Write(c.body.Bytes())
	}
}

// authorized compares the bearer token in constant time. Both sides are
// hashed first so the comparison does not even reveal the token's length.
func (s *Server) authorized(r *http.Request) bool {
	return s.authorizedBy(r.Header.Get("Authorization"))
}

// authorizedBy checks an Authorization header's value.
func (s *Server) authorizedBy(header string) bool {
	want := s.opts.Token.Token()
	if len(want) == 0 {
		return false
	}
	scheme, got, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || got == "" {
		return false
	}
	g, w := sha256.Sum256([]byte(got)), sha256.Sum256(want)
	return subtle.ConstantTimeCompare(g[:], w[:]) == 1
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "alive"})
}

type readiness struct {
	Status     string   `json:"status"`
	ConfigHash string   `json:"configHash,omitempty"`
	WaitingFor []string `json:"waitingFor,omitempty"`
}

func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	cfg, hash := s.opts.Config.Config()
	var waiting []string
	if cfg == nil {
		waiting = append(waiting, "config")
	}
	if s.opts.StoreReady != nil && !s.opts.StoreReady() {
		waiting = append(waiting, "tokenStore")
	}
	if len(s.opts.Token.Token()) == 0 {
		waiting = append(waiting, "apiToken")
	}
	if s.draining.Load() {
		writeJSON(w, http.StatusServiceUnavailable, readiness{Status: "draining", ConfigHash: hash})
		return
	}
	if len(waiting) > 0 {
		writeJSON(w, http.StatusServiceUnavailable, readiness{Status: "notReady", ConfigHash: hash, WaitingFor: waiting})
		return
	}
	writeJSON(w, http.StatusOK, readiness{Status: "ready", ConfigHash: hash})
}

// statusWriter remembers the status code for the request metric.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) code() int {
	if w.status == 0 {
		return http.StatusOK
	}
	return w.status
}

// Unwrap lets http.ResponseController reach the connection (flush, deadlines).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// captureWriter holds the mux's own small fallback answers.
type captureWriter struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (c *captureWriter) Header() http.Header { return c.header }

func (c *captureWriter) WriteHeader(code int) {
	if c.status == 0 {
		c.status = code
	}
}

func (c *captureWriter) Write(b []byte) (int, error) {
	c.WriteHeader(http.StatusOK)
	return c.body.Write(b)
}
