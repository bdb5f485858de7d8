// Package configwatch keeps a dispatcher on its tenant's config: it gets and
// watches the config Secret by name through the API (DESIGN.md "Secrets and
// who writes what"), builds provider clients for each new version and hands
// both to the delivery engine. A version that does not parse, whose clients
// cannot be built or that the engine refuses is rejected and the last good
// one stays. It also follows the API-token Secret the config names, so a
// rotated token is used without a restart.
//
// Both Secrets are watched with a metadata.name field selector, which the
// dispatcher's name-scoped RBAC (get, list, watch by resourceNames) allows.
package configwatch

import (
	"bytes"
	"context"
	"fmt"
	"sync"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"

	"github.com/imcloud/im-push-operator/dispatcher/config"
	"github.com/imcloud/im-push-operator/dispatcher/kube"
	"github.com/imcloud/im-push-operator/dispatcher/providers"
)

// EventKind says what an Event reports.
type EventKind string

const (
	// ConfigLoaded: a new config version is in use.
	ConfigLoaded EventKind = "ConfigLoaded"
	// ConfigRejected: a new config version was refused; the last good one stays.
	ConfigRejected EventKind = "ConfigRejected"
	// TokenLoaded: a new API token is in use.
	TokenLoaded EventKind = "TokenLoaded"
)

// Event reports one change, for metrics and tests.
type Event struct {
	Kind EventKind
	// Hash is the config document's hash (config events).
	Hash string
	// Err says why a version was rejected.
	Err error
}

// Options configure a Watcher. Client, Namespace, ConfigSecret, NewClient and
// Apply are required.
type Options struct {
	Client       *kube.Client
	Namespace    string
	ConfigSecret string
	// NewClient builds one certificate's provider client (registry.New).
	NewClient func(*config.Certificate) (providers.Client, error)
	// Apply puts a config and its clients, keyed by certificate name, in
	// use (the engine's SetConfig); an error rejects the version.
	Apply  func(*config.Config, map[string]providers.Client) error
	Logger logr.Logger
	// Notify, when set, is called with every event, one at a time per
	// Secret; it must not block.
	Notify func(Event)
}

// Watcher holds the config and API token in use.
type Watcher struct {
	opts Options
	log  logr.Logger

	loaded     chan struct{}
	loadedOnce sync.Once

	mu   sync.Mutex
	cfg  *config.Config
	hash string
	// rejected is the hash of the newest refused document, so a relist
	// that brings it again is not retried or logged again.
	rejected   string
	token      []byte
	authName   string
	stopAuth   context.CancelFunc
	runContext context.Context
}

// New returns a watcher; Run starts it.
func New(opts Options) *Watcher {
	return &Watcher{
		opts:   opts,
		log:    opts.Logger.WithValues("namespace", opts.Namespace, "configSecret", opts.ConfigSecret),
		loaded: make(chan struct{}),
	}
}

// Run watches until ctx ends.
func (w *Watcher) Run(ctx context.Context) {
	w.mu.Lock()
	w.runContext = ctx
	w.mu.Unlock()
	w.watchSecret(ctx, w.opts.ConfigSecret, w.configChanged)
	<-ctx.Done()
}

// Loaded is closed once the first config is in use.
func (w *Watcher) Loaded() <-chan struct{} { return w.loaded }

// Config returns the config in use and its document's hash; nil before the
// first one loads.
func (w *Watcher) Config() (*config.Config, string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.cfg, w.hash
}

// Token returns the API bearer token in use; nil before it loads.
func (w *Watcher) Token() []byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.token
}

func (w *Watcher) notify(e Event) {
	if w.opts.Notify != nil {
		w.opts.Notify(e)
	}
}

// configChanged loads one version of the config Secret. The informer calls
// it from one goroutine, so versions are handled in order.
func (w *Watcher) configChanged(sec *corev1.Secret) {
	doc := sec.Data[config.SecretKey]
	hash := config.Hash(doc)
	w.mu.Lock()
	seen := hash == w.hash || hash == w.rejected
	w.mu.Unlock()
	if seen {
		return
	}
	log := w.log.WithValues("hash", hash, "resourceVersion", sec.ResourceVersion)
	cfg, err := w.load(doc)
	if err != nil {
		w.mu.Lock()
		w.rejected = hash
		w.mu.Unlock()
		// Parse and client errors name fields and certificates, never
		// credential bytes, so they are safe to log.
		log.Error(err, "rejected dispatcher config; keeping the last good one")
		w.notify(Event{Kind: ConfigRejected, Hash: hash, Err: err})
		return
	}
	w.mu.Lock()
	w.cfg, w.hash, w.rejected = cfg, hash, ""
	w.mu.Unlock()
	log.Info("dispatcher config in use", "tenant", cfg.Tenant, "certificates", len(cfg.Certificates))
	w.notify(Event{Kind: ConfigLoaded, Hash: hash})
	w.loadedOnce.Do(func() { close(w.loaded) })
	w.followAuth(cfg)
}

// load parses doc, builds its clients and applies it.
func (w *Watcher) load(doc []byte) (*config.Config, error) {
	if len(doc) == 0 {
		return nil, fmt.Errorf("config Secret %s has no key %s", w.opts.ConfigSecret, config.SecretKey)
	}
	cfg, err := config.Parse(doc)
	if err != nil {
		return nil, err
	}
	clients := make(map[string]providers.Client, len(cfg.Certificates))
	for i := range cfg.Certificates {
		cert := &cfg.Certificates[i]
		c, err := w.opts.NewClient(cert)
		if err != nil {
			return nil, fmt.Errorf("building the client of certificate %q: %w", cert.Name, err)
		}
		clients[cert.Name] = c
	}
	if err := w.opts.Apply(cfg, clients); err != nil {
		return nil, fmt.Errorf("delivery engine refused the config: %w", err)
	}
	return cfg, nil
}

// followAuth watches the API-token Secret cfg names, moving to another one
// if a new config names another. The token in use stays until the new
// Secret's token loads.
func (w *Watcher) followAuth(cfg *config.Config) {
	name := cfg.AuthSecretName
	if name == "" {
		name = config.AuthSecretName(cfg.Tenant)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if name == w.authName || w.runContext == nil {
		return
	}
	if w.stopAuth != nil {
		w.stopAuth()
	}
	ctx, cancel := context.WithCancel(w.runContext)
	w.authName, w.stopAuth = name, cancel
	w.watchSecret(ctx, name, w.tokenChanged)
}

func (w *Watcher) tokenChanged(sec *corev1.Secret) {
	token := sec.Data[config.AuthTokenKey]
	log := w.log.WithValues("authSecret", sec.Name, "resourceVersion", sec.ResourceVersion)
	if len(token) == 0 {
		log.Info("API-token Secret has no token; keeping the token in use", "key", config.AuthTokenKey)
		return
	}
	w.mu.Lock()
	if sec.Name != w.authName || bytes.Equal(token, w.token) {
		w.mu.Unlock()
		return
	}
	w.token = bytes.Clone(token)
	w.mu.Unlock()
	log.Info("API token in use")
	w.notify(Event{Kind: TokenLoaded})
}

// watchSecret runs an informer over the one Secret name until ctx ends,
// calling changed with each version. A deleted Secret changes nothing: the
// last good contents stay in use.
func (w *Watcher) watchSecret(ctx context.Context, name string, changed func(*corev1.Secret)) {
	secrets := w.opts.Client.Secrets(w.opts.Namespace)
	selector := fields.OneTermEqualSelector("metadata.name", name).String()
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.FieldSelector = selector
			return secrets.List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = selector
			return secrets.Watch(ctx, o)
		},
	}
	log := w.log.WithValues("secret", name)
	inf := cache.NewSharedIndexInformer(lw, &corev1.Secret{}, 0, cache.Indexers{})
	handle := func(obj any) {
		if sec, ok := obj.(*corev1.Secret); ok && sec.Name == name {
			changed(sec)
		}
	}
	// Registration and the error handler only fail on a started informer.
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    handle,
		UpdateFunc: func(_, obj any) { handle(obj) },
		DeleteFunc: func(any) { log.Info("Secret was deleted; keeping what it last held") },
	})
	_ = inf.SetWatchErrorHandlerWithContext(func(_ context.Context, _ *cache.Reflector, err error) {
		log.Info("watching Secret failed; retrying", "error", err.Error())
	})
	go inf.RunWithContext(ctx)
}
