package security

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	pushv1 "github.com/imcloud/im-push-operator/api/v1alpha1"
	"github.com/imcloud/im-push-operator/controllers"
	"github.com/imcloud/im-push-operator/dispatcher/config"
	fakeapns "github.com/imcloud/im-push-operator/dispatcher/providers/fake/apns"
	"github.com/imcloud/im-push-operator/hack/localrun"
	"github.com/imcloud/im-push-operator/internal/testenv"
)

// rbacObject decodes config/rbac/<file> into obj and moves it, and any
// ServiceAccount subject, from kustomize's placeholder namespace to ns.
func rbacObject(t *testing.T, file, ns string, obj client.Object) client.Object {
	t.Helper()
	f, err := os.Open(filepath.Join(testenv.RepoRoot(), "config", "rbac", file))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := yaml.NewYAMLOrJSONDecoder(f, 4096).Decode(obj); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	if obj.GetNamespace() != "" {
		obj.SetNamespace(ns)
	}
	var subjects []rbacv1.Subject
	switch b := obj.(type) {
	case *rbacv1.RoleBinding:
		subjects = b.Subjects
	case *rbacv1.ClusterRoleBinding:
		subjects = b.Subjects
	}
	for i := range subjects {
		subjects[i].Namespace = ns
	}
	return obj
}

// TestOperatorRBACIsSufficient runs the real manager (controllers.NewManager,
// as cmd/manager wires it, leader election on) on its own API server as the
// controller-manager ServiceAccount, bound only to what config/rbac renders:
// the ClusterRole generated from the markers (role.yaml) and the
// leader-election Role. It drives a tenant with a certificate and a policy to
// Ready (every owned object, shards, events), holds the certificate by its
// finalizer while named, deletes the tenant (shards deleted, finalizer
// removed) and then the certificate, and requires that the API server
// refused none of the manager's requests. Removing a needed rule from
// role.yaml makes it fail.
func TestOperatorRBACIsSufficient(t *testing.T) {
	// The package's shared opNS first, so its manager (which cannot skip
	// controller-name validation) is not the second in this process.
	system(t)
	env, admin, err := testenv.Start(true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	ctx := context.Background()
	k, err := client.New(admin, client.Options{Scheme: controllers.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	const (
		opNS = "im-push-system"
		tns  = "rbac-tenants"
		name = "rbac-app"
	)
	for _, n := range []string{opNS, tns} {
		if err := k.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: n}}); err != nil {
			t.Fatal(err)
		}
	}
	sa := rbacObject(t, "service_account.yaml", opNS, &corev1.ServiceAccount{})
	for _, obj := range []client.Object{
		sa,
		rbacObject(t, "role.yaml", opNS, &rbacv1.ClusterRole{}),
		rbacObject(t, "role_binding.yaml", opNS, &rbacv1.ClusterRoleBinding{}),
		rbacObject(t, "leader_election_role.yaml", opNS, &rbacv1.Role{}),
		rbacObject(t, "leader_election_role_binding.yaml", opNS, &rbacv1.RoleBinding{}),
	} {
		if err := k.Create(ctx, obj); err != nil {
			t.Fatalf("creating %T %s: %v", obj, obj.GetName(), err)
		}
	}

	sent := &testenv.Recorder{}
	// The requests the API server answered 403.
	refused := func() []string { return sent.Records().Status(http.StatusForbidden).Strings() }
	cfg := rest.CopyConfig(admin)
	cfg.Impersonate = rest.ImpersonationConfig{
		UserName: "system:serviceaccount:" + opNS + ":" + sa.GetName(),
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + opNS, "system:authenticated"},
	}
	// The API server's authorizer learns new bindings from a watch; wait
	// until it knows them, with a client whose refusals are not counted.
	probe, err := client.New(cfg, client.Options{Scheme: controllers.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	until(t, "the bindings in effect", func() error {
		return errors.Join(
			probe.List(ctx, &pushv1.PushCertificateList{}),
			probe.List(ctx, &pushv1.AppTenantList{}),
			probe.List(ctx, &coordinationv1.LeaseList{}, client.InNamespace(opNS)),
		)
	})
	cfg.WrapTransport = sent.Wrap
	mgr, err := controllers.NewManager(cfg, controllers.ManagerOptions{
		Metrics:                 metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress:  "0",
		LeaderElection:          true,
		LeaderElectionNamespace: opNS,
		DispatcherImage:         "local/im-push-dispatcher:rbac",
		// The package's shared opNS runs its own manager in this process.
		SecondInProcess: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- mgr.Start(runCtx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})

	// Each wait ends early on a refusal, which fails the test with it.
	step := func(what string, f func() error) {
		t.Helper()
		until(t, what, func() error {
			if len(refused()) > 0 {
				return nil
			}
			return f()
		})
		if got := refused(); len(got) > 0 {
			t.Fatalf("waiting for %s, the API server refused the manager under config/rbac: %v", what, got)
		}
	}

	data, spec, err := fakeapns.TokenCredential("com.example.rbac")
	if err != nil {
		t.Fatal(err)
	}
	cert := &config.Certificate{Name: "ios", Resource: name + "-apns", Provider: config.APNs, Data: data, Fingerprint: config.Fingerprint(data), APNs: spec}
	secret, pc := localrun.CertificateObjects(tns, cert)
	for _, obj := range []client.Object{
		secret, pc,
		&pushv1.PushPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: tns, Name: name + "-policy"},
			Spec: pushv1.PushPolicySpec{Notification: pushv1.NotificationSpec{Title: "{{.Sender.DisplayName}}", Body: "{{.Text}}"}}},
		&pushv1.AppTenant{
			ObjectMeta: metav1.ObjectMeta{Namespace: tns, Name: name},
			Spec: pushv1.AppTenantSpec{
				AppKey: name, Certificates: []string{pc.Name},
				PolicyRef:  pushv1.LocalObjectReference{Name: name + "-policy"},
				Dispatcher: pushv1.DispatcherSpec{Replicas: ptrTo(int32(2))},
				// Deleted with the tenant, so the finalizer's deletes run too.
				TokenStore: pushv1.TokenStoreSpec{Shards: ptrTo(int32(2)), RetainOnDelete: ptrTo(false)},
			},
		},
	} {
		if err := k.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}

	// No kubelet runs: mark the dispatcher available once written.
	step("the dispatcher Deployment, marked available", func() error {
		d := &appsv1.Deployment{}
		if err := k.Get(ctx, client.ObjectKey{Namespace: tns, Name: name + "-dispatcher"}, d); err != nil {
			return err
		}
		n := *d.Spec.Replicas
		d.Status = appsv1.DeploymentStatus{ObservedGeneration: d.Generation, Replicas: n, UpdatedReplicas: n, ReadyReplicas: n, AvailableReplicas: n}
		return k.Status().Update(ctx, d)
	})
	step(name+" Ready", func() error {
		at := &pushv1.AppTenant{}
		if err := k.Get(ctx, client.ObjectKey{Namespace: tns, Name: name}, at); err != nil {
			return err
		}
		for _, c := range at.Status.Conditions {
			if c.Type == pushv1.ConditionReady && c.Status == metav1.ConditionTrue {
				return nil
			}
		}
		return fmt.Errorf("not Ready: %+v", at.Status.Conditions)
	})
	owned := []client.Object{
		&corev1.ServiceAccount{}, &rbacv1.Role{}, &rbacv1.RoleBinding{}, &appsv1.Deployment{}, &corev1.Service{},
	}
	for _, obj := range owned {
		if err := k.Get(ctx, client.ObjectKey{Namespace: tns, Name: name + "-dispatcher"}, obj); err != nil {
			t.Errorf("%T: %v", obj, err)
		}
	}
	ts := controllers.TokenStoreConfig(&pushv1.AppTenant{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: pushv1.AppTenantSpec{TokenStore: pushv1.TokenStoreSpec{Shards: ptrTo(int32(2))}}})
	shards := append(ts.ShardNames(), config.ConfigSecretName(name), config.AuthSecretName(name))
	for _, s := range shards {
		if err := k.Get(ctx, client.ObjectKey{Namespace: tns, Name: s}, &corev1.Secret{}); err != nil {
			t.Errorf("Secret %s: %v", s, err)
		}
	}

	// Named by the tenant, the certificate's deletion waits on the finalizer.
	step("the in-use finalizer on the certificate", func() error {
		got := &pushv1.PushCertificate{}
		if err := k.Get(ctx, client.ObjectKeyFromObject(pc), got); err != nil {
			return err
		}
		if !controllerutil.ContainsFinalizer(got, pushv1.Finalizer) {
			return fmt.Errorf("finalizers %v", got.Finalizers)
		}
		return nil
	})
	if err := k.Delete(ctx, pc); err != nil {
		t.Fatal(err)
	}
	if err := k.Delete(ctx, &pushv1.AppTenant{ObjectMeta: metav1.ObjectMeta{Namespace: tns, Name: name}}); err != nil {
		t.Fatal(err)
	}
	gone := func(obj client.Object) func() error {
		return func() error {
			err := k.Get(ctx, client.ObjectKeyFromObject(obj), obj)
			if apierrors.IsNotFound(err) {
				return nil
			}
			if err == nil {
				return fmt.Errorf("%s still there (finalizers %v)", obj.GetName(), obj.GetFinalizers())
			}
			return err
		}
	}
	step("the tenant gone", gone(&pushv1.AppTenant{ObjectMeta: metav1.ObjectMeta{Namespace: tns, Name: name}}))
	for _, s := range ts.ShardNames() {
		step("shard "+s+" deleted", gone(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: tns, Name: s}}))
	}
	step("the certificate gone", gone(&pushv1.PushCertificate{ObjectMeta: pc.ObjectMeta}))

	if got := refused(); len(got) > 0 {
		t.Fatalf("the API server refused the manager %d requests under config/rbac: %v", len(got), got)
	}
}
