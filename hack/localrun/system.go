package localrun

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	pushv1 "github.com/imcloud/im-push-operator/api/v1alpha1"
	"github.com/imcloud/im-push-operator/controllers"
	"github.com/imcloud/im-push-operator/dispatcher/config"
	"github.com/imcloud/im-push-operator/dispatcher/providers/fake"
	fakeapns "github.com/imcloud/im-push-operator/dispatcher/providers/fake/apns"
	fakefcm "github.com/imcloud/im-push-operator/dispatcher/providers/fake/fcm"
	fakehonor "github.com/imcloud/im-push-operator/dispatcher/providers/fake/honor"
	fakehuawei "github.com/imcloud/im-push-operator/dispatcher/providers/fake/huawei"
	fakemeizu "github.com/imcloud/im-push-operator/dispatcher/providers/fake/meizu"
	fakeoppo "github.com/imcloud/im-push-operator/dispatcher/providers/fake/oppo"
	fakevivo "github.com/imcloud/im-push-operator/dispatcher/providers/fake/vivo"
	fakexiaomi "github.com/imcloud/im-push-operator/dispatcher/providers/fake/xiaomi"
	"github.com/imcloud/im-push-operator/internal/testenv"
)

// Options configure Start.
type Options struct {
	// DispatcherBinary is the dispatcher executable the runner starts.
	DispatcherBinary string
	// Dir holds kubeconfigs and logs; a temporary one is made (and removed
	// by Stop) when empty.
	Dir string
	// ProcessLog receives the dispatcher processes' output; nil discards.
	ProcessLog io.Writer
	Logger     logr.Logger
	// APIServerRoute, when set, returns the config the operator and the
	// dispatcher processes reach the API server with, given the direct one
	// (tests put a fault-injecting proxy in between). The runner, playing
	// kubelet, and System.Client always connect directly.
	APIServerRoute func(*rest.Config) (*rest.Config, error)
}

// System is everything `make demo` and the end-to-end test run.
type System struct {
	Env *envtest.Environment
	// Config is an admin rest.Config; Kubeconfig a file holding it.
	Config     *rest.Config
	Kubeconfig string
	Client     client.WithWatch
	Runner     *Runner
	CA         *fake.CA
	APNs       *fakeapns.Server
	FCM        *fakefcm.Server
	Huawei     *fakehuawei.Server
	Honor      *fakehonor.Server
	Xiaomi     *fakexiaomi.Server
	OPPO       *fakeoppo.Server
	Vivo       *fakevivo.Server
	Meizu      *fakemeizu.Server
	Dir        string

	ownDir  bool
	cancel  context.CancelFunc
	stopped []chan error
	servers []*fake.Server
}

// Start brings up the API server and etcd (with the CRDs installed), the
// operator, every fake provider and the dispatcher runner.
func Start(ctx context.Context, o Options) (_ *System, err error) {
	// The operator logs through controller-runtime's logger; an unset one
	// would print a warning with a stack trace.
	ctrllog.SetLogger(o.Logger)
	s := &System{Dir: o.Dir}
	if s.Dir == "" {
		if s.Dir, err = os.MkdirTemp("", "im-push-local-"); err != nil {
			return nil, err
		}
		s.ownDir = true
	}
	defer func() {
		if err != nil {
			_ = s.Stop()
		}
	}()
	if s.Env, s.Config, err = testenv.Start(true); err != nil {
		return nil, err
	}
	s.Kubeconfig = filepath.Join(s.Dir, "admin.kubeconfig")
	if err := WriteKubeconfig(s.Kubeconfig, s.Config, ""); err != nil {
		return nil, err
	}
	if s.Client, err = client.NewWithWatch(s.Config, client.Options{Scheme: controllers.Scheme}); err != nil {
		return nil, err
	}
	if err := s.startFakes(); err != nil {
		return nil, err
	}

	routed := s.Config
	if o.APIServerRoute != nil {
		if routed, err = o.APIServerRoute(s.Config); err != nil {
			return nil, err
		}
	}
	runCtx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	mgr, err := controllers.NewManager(routed, controllers.ManagerOptions{
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		DispatcherImage:        "local/im-push-dispatcher:dev",
		// A test may start a System again in the same process (go test
		// -count), each with its own API server; controller-runtime's
		// check that controller names are unique assumes one manager per
		// process.
		SecondInProcess: true,
	})
	if err != nil {
		return nil, err
	}
	s.Runner = &Runner{Binary: o.DispatcherBinary, Config: s.Config, DispatcherConfig: routed, Dir: s.Dir, Log: o.ProcessLog, Logger: o.Logger}
	for _, run := range []func(context.Context) error{mgr.Start, s.Runner.Run} {
		done := make(chan error, 1)
		s.stopped = append(s.stopped, done)
		go func() { done <- run(runCtx) }()
	}
	return s, nil
}

func (s *System) startFakes() error {
	var err error
	if s.CA, err = fake.NewCA(); err != nil {
		return err
	}
	var e error
	keep := func(srv *fake.Server, startErr error) {
		if startErr != nil {
			err = errors.Join(err, startErr)
			return
		}
		s.servers = append(s.servers, srv)
	}
	if s.APNs, e = fakeapns.Start(s.CA); e == nil {
		keep(s.APNs.Server, nil)
	} else {
		keep(nil, e)
	}
	if s.FCM, e = fakefcm.Start(s.CA); e == nil {
		keep(s.FCM.Server, nil)
	} else {
		keep(nil, e)
	}
	if s.Huawei, e = fakehuawei.Start(s.CA); e == nil {
		keep(s.Huawei.Server, nil)
	} else {
		keep(nil, e)
	}
	if s.Honor, e = fakehonor.Start(s.CA); e == nil {
		keep(s.Honor.Server, nil)
	} else {
		keep(nil, e)
	}
	if s.Xiaomi, e = fakexiaomi.Start(s.CA); e == nil {
		keep(s.Xiaomi.Server, nil)
	} else {
		keep(nil, e)
	}
	if s.OPPO, e = fakeoppo.Start(s.CA); e == nil {
		keep(s.OPPO.Server, nil)
	} else {
		keep(nil, e)
	}
	if s.Vivo, e = fakevivo.Start(s.CA); e == nil {
		keep(s.Vivo.Server, nil)
	} else {
		keep(nil, e)
	}
	if s.Meizu, e = fakemeizu.Start(s.CA); e == nil {
		keep(s.Meizu.Server, nil)
	} else {
		keep(nil, e)
	}
	return err
}

// Stop stops the runner (and so every dispatcher process), the operator,
// the fakes and the API server, and removes the temporary directory.
func (s *System) Stop() error {
	var errs []error
	if s.cancel != nil {
		s.cancel()
		for _, done := range s.stopped {
			if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
				errs = append(errs, err)
			}
		}
	}
	for _, srv := range s.servers {
		srv.Close()
	}
	if s.Env != nil {
		errs = append(errs, s.Env.Stop())
	}
	if s.ownDir {
		errs = append(errs, os.RemoveAll(s.Dir))
	}
	return errors.Join(errs...)
}

// Certificates makes one credential at every fake provider, named
// "<provider>-demo" (lower case), ready to install with InstallTenant.
func (s *System) Certificates() ([]*config.Certificate, error) {
	apnsData, apnsSpec, err := fakeapns.TokenCredential("com.example.chat")
	if err != nil {
		return nil, err
	}
	apns := s.APNs.Certificate("apns-demo", apnsData, apnsSpec)
	s.APNs.Allow(apns)
	fcmData, fcmSpec, err := fakefcm.TestCredential("chat-demo", s.FCM.URL+"/token")
	if err != nil {
		return nil, err
	}
	fcm := s.FCM.Certificate("fcm-demo", fcmData, fcmSpec)
	s.FCM.Allow(fcm)
	return []*config.Certificate{
		apns, fcm,
		s.Huawei.Certificate("huawei-demo"), s.Honor.Certificate("honor-demo"), s.Xiaomi.Certificate("xiaomi-demo"),
		s.OPPO.Certificate("oppo-demo"), s.Vivo.Certificate("vivo-demo"), s.Meizu.Certificate("meizu-demo"),
	}, nil
}

// CertificateObjects is the inverse of controllers.CertificateConfig: the
// Secret and PushCertificate that render into c.
func CertificateObjects(namespace string, c *config.Certificate) (*corev1.Secret, *pushv1.PushCertificate) {
	name := c.Resource
	if name == "" {
		name = c.Name
	}
	name = strings.ToLower(name)
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name + "-keys"}, Data: c.Data}
	pc := &pushv1.PushCertificate{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec: pushv1.PushCertificateSpec{
			Provider: pushv1.Provider(c.Provider), CertificateName: c.Name,
			SecretRef: pushv1.LocalObjectReference{Name: secret.Name},
			Endpoint:  c.Endpoint, CABundle: c.CABundle,
		},
	}
	switch {
	case c.APNs != nil:
		pc.Spec.APNs = &pushv1.APNsSpec{AuthType: pushv1.APNsAuthType(c.APNs.AuthType), TeamID: c.APNs.TeamID, KeyID: c.APNs.KeyID, BundleID: c.APNs.BundleID, Environment: pushv1.APNsEnvironment(c.APNs.Environment)}
	case c.FCM != nil:
		pc.Spec.FCM = &pushv1.FCMSpec{ProjectID: c.FCM.ProjectID}
	case c.Huawei != nil:
		pc.Spec.Huawei = &pushv1.HuaweiSpec{AppID: c.Huawei.AppID, ClientID: c.Huawei.ClientID}
	case c.Honor != nil:
		pc.Spec.Honor = &pushv1.HonorSpec{AppID: c.Honor.AppID, ClientID: c.Honor.ClientID}
	case c.Xiaomi != nil:
		pc.Spec.Xiaomi = &pushv1.XiaomiSpec{PackageName: c.Xiaomi.PackageName, Region: pushv1.XiaomiRegion(c.Xiaomi.Region), ChannelID: c.Xiaomi.ChannelID}
	case c.OPPO != nil:
		pc.Spec.OPPO = &pushv1.OPPOSpec{ChannelID: c.OPPO.ChannelID}
	case c.Vivo != nil:
		pc.Spec.Vivo = &pushv1.VivoSpec{AppID: c.Vivo.AppID}
	case c.Meizu != nil:
		pc.Spec.Meizu = &pushv1.MeizuSpec{AppID: c.Meizu.AppID}
	}
	return secret, pc
}

// InstallTenant creates the namespace (if needed), a Secret and
// PushCertificate per credential, the policy and an AppTenant named tenant.
func (s *System) InstallTenant(ctx context.Context, namespace, tenant string, certs []*config.Certificate, policy pushv1.PushPolicySpec, replicas int32) error {
	c := s.Client
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}); client.IgnoreAlreadyExists(err) != nil {
		return err
	}
	var names []string
	for _, cert := range certs {
		secret, pc := CertificateObjects(namespace, cert)
		if err := errors.Join(c.Create(ctx, secret), c.Create(ctx, pc)); err != nil {
			return fmt.Errorf("creating certificate %s: %w", pc.Name, err)
		}
		names = append(names, pc.Name)
	}
	if err := c.Create(ctx, &pushv1.PushPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: tenant + "-policy"}, Spec: policy}); err != nil {
		return err
	}
	return c.Create(ctx, &pushv1.AppTenant{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: tenant},
		Spec: pushv1.AppTenantSpec{
			AppKey: tenant, Certificates: names,
			PolicyRef:  pushv1.LocalObjectReference{Name: tenant + "-policy"},
			Dispatcher: pushv1.DispatcherSpec{Replicas: &replicas},
			TokenStore: pushv1.TokenStoreSpec{Shards: ptrTo(int32(4))},
		},
	})
}

func ptrTo[T any](v T) *T { return &v }

// APIToken reads the tenant's dispatcher API token.
func (s *System) APIToken(ctx context.Context, namespace, tenant string) (string, error) {
	sec := &corev1.Secret{}
	if err := s.Client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: config.AuthSecretName(tenant)}, sec); err != nil {
		return "", err
	}
	return string(sec.Data[config.AuthTokenKey]), nil
}

// RotateAPNsKey gives the tenant's APNs certificate a new signing key: a new
// .p8 in its Secret and the new key and team ids in the PushCertificate, as
// a user rotating a key in a cluster would. The fake APNs accepts the new key.
func (s *System) RotateAPNsKey(ctx context.Context, namespace, certificate string) (keyID string, err error) {
	data, spec, err := fakeapns.TokenCredential("com.example.chat")
	if err != nil {
		return "", err
	}
	s.APNs.Allow(s.APNs.Certificate(certificate, data, spec))
	return spec.KeyID, retry.RetryOnConflict(retry.DefaultRetry, func() error {
		pc := &pushv1.PushCertificate{}
		if err := s.Client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: certificate}, pc); err != nil {
			return err
		}
		sec := &corev1.Secret{}
		if err := s.Client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: pc.Spec.SecretRef.Name}, sec); err != nil {
			return err
		}
		if pc.Spec.APNs.KeyID != spec.KeyID {
			pc.Spec.APNs.KeyID, pc.Spec.APNs.TeamID = spec.KeyID, spec.TeamID
			if err := s.Client.Update(ctx, pc); err != nil {
				return err
			}
		}
		sec.Data = data
		return s.Client.Update(ctx, sec)
	})
}
