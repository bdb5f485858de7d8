// Command dispatcher serves one tenant's offline-push API: it follows the
// tenant's config Secret, keeps device tokens in the shard Secrets, and
// delivers notifications through the push providers. On SIGTERM or SIGINT it
// stops accepting, drains within --drain-timeout, and exits 0.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"github.com/imcloud/im-push-operator/dispatcher/config"
	"github.com/imcloud/im-push-operator/dispatcher/configwatch"
	"github.com/imcloud/im-push-operator/dispatcher/delivery"
	"github.com/imcloud/im-push-operator/dispatcher/kube"
	"github.com/imcloud/im-push-operator/dispatcher/providers"
	"github.com/imcloud/im-push-operator/dispatcher/providers/registry"
	"github.com/imcloud/im-push-operator/dispatcher/server"
	"github.com/imcloud/im-push-operator/dispatcher/store"
)

// Environment the Deployment sets (controllers.DispatcherContainer).
const (
	envNamespace    = "IMPUSH_NAMESPACE"
	envConfigSecret = "IMPUSH_CONFIG_SECRET"
	envPodName      = "IMPUSH_POD_NAME"
	// envMemoryRequest: the container's memory request in bytes.
	envMemoryRequest = "IMPUSH_MEMORY_REQUEST"
)

// setMemoryLimit sets the runtime's soft memory limit from the pod's memory
// request, unless $GOMEMLIMIT sets one, and returns it (0: none set); with
// it, GOGC gcPercentUnderLimit unless $GOGC sets one. The
// limit is the request less fileResident (the process's file-backed
// resident pages, see fileResidentBytes) and fileMargin, and at least half
// the request.
//
// Why the request and not the limit: the request is what the scheduler
// reserved for the pod, and a pod above its request is among the first
// evicted under node memory pressure. With the default GOGC alone the heap
// grows to twice the live data before a collection, far above the request
// under load. The limit stays the kill line: the soft limit lets the heap
// grow past it when live data needs it, with the collector's CPU capped by
// the runtime.
//
// Why less the file pages: the request budgets the container's whole
// resident memory, and the binary's mapped pages (about 23 MiB) are part of
// it while the Go runtime's limit counts only its own memory; with the
// whole request as the limit the dispatcher's peak RSS in make bench was
// 143 MiB for a 128 MiB request, with this 120-127 MiB, at a cost in
// collector CPU under a long group-message backlog
// (docs/performance-history.md, "Peak RSS"; a larger request lifts the
// limit with it). An earlier, larger build with 100,000 idempotency
// records had its collector running nearly nonstop at 90% of the request;
// the half-request floor keeps a small request with a large binary from
// doing the same.
func setMemoryLimit(getenv func(string) string, fileResident int64) int64 {
	if getenv("GOMEMLIMIT") != "" {
		return 0
	}
	req, err := strconv.ParseInt(getenv(envMemoryRequest), 10, 64)
	if err != nil || req <= 0 {
		return 0
	}
	limit := max(req-fileResident-fileMargin, req/2)
	debug.SetMemoryLimit(limit)
	if getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercentUnderLimit)
	}
	return limit
}

// gcPercentUnderLimit is the collector's GOGC once the soft limit bounds
// the heap (unless $GOGC sets one). With the default 100 the heap was
// collected at twice its live data: under make bench's saturated load a
// live heap of 25-38 MiB had goals of 50-76 MiB, below a limit of about
// 99 MiB, and collections every 0.2 s took about 6% of the machine's CPU
// (gctrace, docs/performance-history.md, 2026-12-07 20:15). At 300 the
// heap grows into the budget the request reserved and the limit, not
// GOGC, decides most collections; an idle dispatcher's small live heap
// still gets a small goal. The dispatcher's CPU beyond its client library
// was lower in 23 of 32 alternated windows, its peak RSS 121.6-124.6 MiB
// against 118.4-120.5.
const gcPercentUnderLimit = 300

// gcPercent is the collector's GOGC as the runtime has it (-1: off), read
// back rather than derived again from the environment.
func gcPercent() int64 {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	// Off is -1 in the runtime, a huge number as the metric's uint64.
	if s[0].Value.Kind() != metrics.KindUint64 || s[0].Value.Uint64() > math.MaxInt32 {
		return -1
	}
	return int64(s[0].Value.Uint64())
}

// fileMargin covers binary pages first touched after start (under load,
// about 0.5 MiB more) and the runtime's overshoot of its soft limit: with
// 4 MiB one run of make bench peaked 4 KiB over a 128 MiB request
// (docs/performance-history.md, changes of 2026-12-07 15:35–17:00), and
// with 6 MiB one peaked 0.1 MiB over once the pools kept 256 workers or
// more in flight (changes of 2026-12-08 02:30).
const fileMargin = 8 << 20

// fileResidentBytes is RssFile from /proc/self/status (0 where there is
// none): the binary's and libraries' pages resident now.
func fileResidentBytes() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		v, ok := strings.CutPrefix(line, "RssFile:")
		if !ok {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			return 0
		}
		return kb << 10
	}
	return 0
}

// shutdownGrace bounds closing the HTTP server after the drain; the pod's
// termination grace (30s) covers the drain timeout (25s) plus this.
const shutdownGrace = 3 * time.Second

type options struct {
	listen       string
	drainTimeout time.Duration
	kubeconfig   string
	namespace    string
	configSecret string
	// pprofListen serves net/http/pprof when set; empty (the default) does not.
	pprofListen string
}

func main() {
	var appKey atomic.Value
	appKey.Store("")
	log := newLogger(os.Stderr, &appKey).WithValues("pod", os.Getenv(envPodName))
	klog.SetLogger(log.WithName("client-go"))

	var o options
	flag.StringVar(&o.listen, "listen", ":8080", "Address of the HTTP API, probes and metrics.")
	flag.DurationVar(&o.drainTimeout, "drain-timeout", 25*time.Second, "How long to finish accepted deliveries after SIGTERM before dropping the rest.")
	flag.StringVar(&o.kubeconfig, "kubeconfig", "", "Kubeconfig to reach the API server (default: in-cluster).")
	flag.StringVar(&o.namespace, "namespace", os.Getenv(envNamespace), "Namespace of the tenant (default $"+envNamespace+").")
	flag.StringVar(&o.configSecret, "config-secret", os.Getenv(envConfigSecret), "Name of the tenant's config Secret (default $"+envConfigSecret+").")
	flag.StringVar(&o.pprofListen, "pprof-listen", "", "Address to serve net/http/pprof on, for profiling (default: off). Bind it to localhost: it has no authentication.")
	flag.Parse()

	if err := start(o, log, &appKey); err != nil {
		log.Error(err, "dispatcher failed")
		os.Exit(1)
	}
}

func start(o options, log logr.Logger, appKey *atomic.Value) error {
	if limit := setMemoryLimit(os.Getenv, fileResidentBytes()); limit > 0 {
		log.Info("soft memory limit set from the memory request less the binary's resident pages", "bytes", limit, "GOGC", gcPercent())
	}
	if o.namespace == "" || o.configSecret == "" {
		return fmt.Errorf("--namespace and --config-secret (or $%s and $%s) are required", envNamespace, envConfigSecret)
	}
	restCfg, err := restConfig(o.kubeconfig)
	if err != nil {
		return err
	}
	lis, err := net.Listen("tcp", o.listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", o.listen, err)
	}
	if o.pprofListen != "" {
		if err := servePprof(o.pprofListen, log); err != nil {
			return err
		}
	}
	signals, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	return run(signals, o, restCfg, lis, log, appKey)
}

// run serves on lis until signals ends, then drains and shuts down.
func run(signals context.Context, o options, restCfg *rest.Config, lis net.Listener, log logr.Logger, appKey *atomic.Value) error {
	client, err := kube.NewForConfig(restCfg)
	if err != nil {
		return fmt.Errorf("building the API client: %w", err)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := server.NewMetrics(reg)
	storeMetrics := store.NewMetrics(reg)

	// The store, watcher and engine outlive the signal: accepted deliveries
	// still read and clean tokens while draining.
	runCtx, stopRun := context.WithCancel(context.Background())
	defer stopRun()

	tokens := &lateStore{}
	engine := delivery.New(delivery.Options{Store: tokens, Logger: log.WithName("delivery"), Registerer: reg})
	var watcher *configwatch.Watcher
	watcher = configwatch.New(configwatch.Options{
		Client:       client,
		Namespace:    o.namespace,
		ConfigSecret: o.configSecret,
		NewClient: func(cert *config.Certificate) (providers.Client, error) {
			return registry.New(cert, providers.Options{})
		},
		Apply:  engine.SetConfig,
		Logger: log.WithName("config"),
		Notify: func(e configwatch.Event) {
			switch e.Kind {
			case configwatch.ConfigLoaded:
				metrics.ConfigReloaded(true)
				metrics.ConfigApplied(e.Hash)
				if cfg, _ := watcher.Config(); cfg != nil {
					appKey.Store(cfg.AppKey)
				}
			case configwatch.ConfigRejected:
				metrics.ConfigReloaded(false)
			}
		},
	})
	go watcher.Run(runCtx)

	srv := server.New(server.Options{
		Store: tokens, StoreReady: tokens.Ready, Engine: engineAPI{engine},
		Config: watcher, Token: watcher, Metrics: metrics, Gatherer: reg, Logger: log.WithName("api"),
	})
	httpServer := srv.HTTPServer()
	serveErr := make(chan error, 1)
	go func() { serveErr <- httpServer.Serve(lis) }()
	log.Info("serving", "listen", lis.Addr().String(), "namespace", o.namespace, "configSecret", o.configSecret)

	go startStore(runCtx, client, o.namespace, watcher, tokens, storeMetrics, log)

	select {
	case <-signals.Done():
	case err := <-serveErr:
		return fmt.Errorf("serving HTTP: %w", err)
	}
	log.Info("shutting down: refusing new requests and draining", "drainTimeout", o.drainTimeout.String())
	srv.StartDraining()
	drainCtx, cancelDrain := context.WithTimeout(context.Background(), o.drainTimeout)
	dropped := engine.Drain(drainCtx)
	cancelDrain()
	log.Info("drained", "dropped", dropped)

	shutdownCtx, cancelShutdown := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancelShutdown()
	if err := httpServer.ShutdownWithContext(shutdownCtx); err != nil {
		log.Info("closing HTTP connections", "error", err.Error())
	}
	log.Info("stopped")
	return nil
}

// startStore waits for the first config, then loads the token store it
// names, retrying while shards are missing or unreadable, until ctx ends.
// The shard layout is fixed for the process: tokenStore.shards never changes
// once set.
func startStore(ctx context.Context, client *kube.Client, namespace string, watcher *configwatch.Watcher, tokens *lateStore, sm *store.Metrics, log logr.Logger) {
	select {
	case <-watcher.Loaded():
	case <-ctx.Done():
		return
	}
	cfg, _ := watcher.Config()
	ts := cfg.WithDefaults().TokenStore
	st := store.NewSecrets(client, namespace, ts, store.SecretsOptions{Logger: log.WithName("store"), Metrics: sm.Hooks()})
	delay := time.Second
	for {
		err := st.Start(ctx)
		if err == nil {
			tokens.set(st)
			sm.Observe(st)
			return
		}
		if ctx.Err() != nil {
			return
		}
		log.Error(err, "loading the token store; retrying", "shards", ts.Shards, "retryIn", delay.String())
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		delay = min(2*delay, 30*time.Second)
	}
}

// servePprof serves the profiling endpoints on their own listener, never on
// the API's: the API port is reachable by the tenant's clients.
func servePprof(addr string, log logr.Logger) error {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listening on %s for pprof: %w", addr, err)
	}
	// Contention is what a CPU profile cannot show: sample 1 in 10 mutex
	// waits and about one blocking event per 100 µs spent blocked, only when
	// profiling is asked for, since both cost on every contended lock.
	runtime.SetMutexProfileFraction(10)
	runtime.SetBlockProfileRate(int((100 * time.Microsecond).Nanoseconds()))
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	log.Info("serving pprof", "listen", lis.Addr().String())
	go func() { _ = (&http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}).Serve(lis) }()
	return nil
}

func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig != "" {
		cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("reading kubeconfig %s: %w", kubeconfig, err)
		}
		return tuned(cfg), nil
	}
	cfg, err := rest.InClusterConfig()
	if err != nil {
		if errors.Is(err, rest.ErrNotInCluster) {
			return nil, fmt.Errorf("not in a cluster: pass --kubeconfig: %w", err)
		}
		return nil, err
	}
	return tuned(cfg), nil
}

// tuned lifts client-go's default 5 requests per second: shard writes are
// already bounded by the token store's byte budget.
func tuned(cfg *rest.Config) *rest.Config {
	cfg.QPS, cfg.Burst = 50, 100
	cfg.UserAgent = "im-push-dispatcher"
	return cfg
}
