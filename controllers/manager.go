package controllers

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	pushv1 "github.com/imcloud/im-push-operator/api/v1alpha1"
	"github.com/imcloud/im-push-operator/dispatcher/policy"
	"github.com/imcloud/im-push-operator/dispatcher/providers/registry"
)

// Defaults of the manager's flags, which the shipped Deployment and the
// benchmark use: the client QPS and burst let 200 tenants (about 26 objects
// each) settle in well under 30 s, and several reconciles at once overlap
// their API round trips.
const (
	DefaultKubeAPIQPS              = 300
	DefaultKubeAPIBurst            = 600
	DefaultMaxConcurrentReconciles = 8
)

// Scheme holds the built-in kinds and ours.
var Scheme = runtime.NewScheme()

func init() {
	utilruntime.Must(clientgoscheme.AddToScheme(Scheme))
	utilruntime.Must(pushv1.AddToScheme(Scheme))
}

// ManagerOptions configure NewManager.
type ManagerOptions struct {
	Metrics                metricsserver.Options
	HealthProbeBindAddress string
	LeaderElection         bool
	// LeaderElectionNamespace holds the Lease; in a pod, its own namespace
	// when empty (outside one it must be set).
	LeaderElectionNamespace string
	DispatcherImage         string
	// MaxConcurrentReconciles is how many objects each controller reconciles
	// at once (1 when 0).
	MaxConcurrentReconciles int
	// SecondInProcess lets a second manager run in one process (tests):
	// controller names would otherwise clash in the metrics.
	SecondInProcess bool
	// Now is the clock of every reconciler (expiry, condition times).
	Now func() time.Time
}

// NewManager builds the manager with the three controllers: the one place
// that wires them, shared by main, the tests and the demo.
func NewManager(cfg *rest.Config, o ManagerOptions) (ctrl.Manager, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Controller:              config.Controller{MaxConcurrentReconciles: max(1, o.MaxConcurrentReconciles), SkipNameValidation: &o.SecondInProcess},
		Scheme:                  Scheme,
		Metrics:                 o.Metrics,
		HealthProbeBindAddress:  o.HealthProbeBindAddress,
		LeaderElection:          o.LeaderElection,
		LeaderElectionID:        "im-push-operator.push.imcloud.io",
		LeaderElectionNamespace: o.LeaderElectionNamespace,
		Client: client.Options{Cache: &client.CacheOptions{
			// Secret data is never cached: the caches hold Secret metadata
			// only, and data is read with uncached gets.
			DisableFor: []client.Object{&corev1.Secret{}},
		}},
	})
	if err != nil {
		return nil, err
	}
	if err := SetupIndexes(context.Background(), mgr); err != nil {
		return nil, err
	}
	if err := (&PushCertificateReconciler{
		Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(),
		Recorder: mgr.GetEventRecorder("pushcertificate-controller"),
		Validate: registry.Validate, Now: o.Now,
	}).SetupWithManager(mgr); err != nil {
		return nil, err
	}
	if err := (&PushPolicyReconciler{
		Client: mgr.GetClient(), Recorder: mgr.GetEventRecorder("pushpolicy-controller"),
		Validate: policy.ValidatePolicy, Now: o.Now,
	}).SetupWithManager(mgr); err != nil {
		return nil, err
	}
	if err := (&AppTenantReconciler{
		Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), MetadataReader: mgr.GetCache(),
		MaxConcurrentReconciles: o.MaxConcurrentReconciles,
		Recorder:                mgr.GetEventRecorder("apptenant-controller"),
		DispatcherImage:         o.DispatcherImage, Now: o.Now,
	}).SetupWithManager(mgr); err != nil {
		return nil, err
	}
	return mgr, nil
}
