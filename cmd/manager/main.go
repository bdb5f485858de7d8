// Command manager runs the im-push-operator controllers.
package main

import (
	"crypto/tls"
	"flag"
	"net/http"
	"os"

	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/imcloud/im-push-operator/controllers"
)

func main() {
	var (
		metricsAddr, probeAddr, dispatcherImage string
		leaderElect, secureMetrics              bool
		qps                                     float64
		burst, workers                          int
	)
	flag.StringVar(&metricsAddr, "metrics-bind-address", ":8443", "Address of the metrics endpoint (0 disables it).")
	flag.BoolVar(&secureMetrics, "metrics-secure", true, "Serve metrics over HTTPS with authentication and authorization.")
	flag.StringVar(&probeAddr, "health-probe-bind-address", ":8081", "Address of the health probes.")
	flag.BoolVar(&leaderElect, "leader-elect", false, "Elect a leader so only one manager reconciles.")
	flag.StringVar(&dispatcherImage, "dispatcher-image", "ghcr.io/imcloud/im-push-operator:dev", "Image of the dispatcher (an AppTenant may override it).")
	flag.Float64Var(&qps, "kube-api-qps", controllers.DefaultKubeAPIQPS, "Queries per second to the API server.")
	flag.IntVar(&burst, "kube-api-burst", controllers.DefaultKubeAPIBurst, "Burst of queries to the API server.")
	flag.IntVar(&workers, "max-concurrent-reconciles", controllers.DefaultMaxConcurrentReconciles, "Objects each controller reconciles at once.")
	opts := zap.Options{}
	opts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&opts)))
	log := ctrl.Log.WithName("setup")

	cfg := ctrl.GetConfigOrDie()
	cfg.QPS, cfg.Burst = float32(qps), burst
	mgr, err := controllers.NewManager(cfg, controllers.ManagerOptions{
		Metrics: metricsserver.Options{
			BindAddress:    metricsAddr,
			SecureServing:  secureMetrics,
			FilterProvider: filterIf(secureMetrics),
			TLSOpts:        []func(*tls.Config){func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} }},
		},
		HealthProbeBindAddress:  probeAddr,
		LeaderElection:          leaderElect,
		DispatcherImage:         dispatcherImage,
		MaxConcurrentReconciles: workers,
	})
	if err != nil {
		log.Error(err, "creating manager")
		os.Exit(1)
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		log.Error(err, "adding health check")
		os.Exit(1)
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		log.Error(err, "adding ready check")
		os.Exit(1)
	}
	log.Info("starting manager")
	if err := mgr.Start(ctrl.SetupSignalHandler()); err != nil {
		log.Error(err, "running manager")
		os.Exit(1)
	}
}

func filterIf(secure bool) func(*rest.Config, *http.Client) (metricsserver.Filter, error) {
	if secure {
		return filters.WithAuthenticationAndAuthorization
	}
	return nil
}
