package controllers_test

// Tests here call Reconcile directly on a second, counting client, to see
// what one reconcile writes and what it asks to be requeued for.

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	pushv1 "github.com/imcloud/im-push-operator/api/v1alpha1"
	"github.com/imcloud/im-push-operator/controllers"
	"github.com/imcloud/im-push-operator/dispatcher/config"
	"github.com/imcloud/im-push-operator/dispatcher/policy"
	fakeapns "github.com/imcloud/im-push-operator/dispatcher/providers/fake/apns"
	"github.com/imcloud/im-push-operator/dispatcher/providers/registry"
	"github.com/imcloud/im-push-operator/internal/testenv"
)

// reconcilers builds the three reconcilers on a second manager's client (its
// cache carries the same indexes; Secrets are read uncached), with every
// write counted and every event kept. The manager runs no controllers: the
// test calls Reconcile itself.
func reconcilers(t *testing.T) (*testenv.Recorder, *events.FakeRecorder, []func(context.Context, ctrl.Request) (ctrl.Result, error)) {
	t.Helper()
	counter := &testenv.Recorder{}
	c := rest.CopyConfig(cfg)
	c.WrapTransport = counter.Wrap
	mgr, err := ctrl.NewManager(c, ctrl.Options{
		Scheme:  controllers.Scheme,
		Metrics: metricsserver.Options{BindAddress: "0"},
		Client:  client.Options{Cache: &client.CacheOptions{DisableFor: []client.Object{&corev1.Secret{}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := controllers.SetupIndexes(ctx, mgr); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	if !mgr.GetCache().WaitForCacheSync(ctx) {
		t.Fatal("cache did not sync")
	}
	cl := mgr.GetClient()
	rec := events.NewFakeRecorder(100)
	return counter, rec, []func(context.Context, ctrl.Request) (ctrl.Result, error){
		(&controllers.PushCertificateReconciler{Client: cl, APIReader: cl, Recorder: rec, Validate: registry.Validate, Now: clock.Now}).Reconcile,
		(&controllers.PushPolicyReconciler{Client: cl, Recorder: rec, Validate: policy.ValidatePolicy, Now: clock.Now}).Reconcile,
		(&controllers.AppTenantReconciler{Client: cl, APIReader: cl, MetadataReader: mgr.GetCache(), Recorder: rec, DispatcherImage: "example.com/im-push:test", Now: clock.Now}).Reconcile,
	}
}

// TestReconcilingUnchangedObjectsWritesNothing: once a tenant has converged,
// reconciling it (and its certificate and policy) again sends no mutating
// request and emits no event; drift by another writer is still repaired.
func TestReconcilingUnchangedObjectsWritesNothing(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	g := NewWithT(t)
	g.Expect(k8s.Create(ctx, policyObj(ns, "policy"))).To(Succeed())
	g.Expect(k8s.Create(ctx, secret(ns, "hw-keys", map[string][]byte{config.KeyClientSecret: []byte("s3cret")}))).To(Succeed())
	g.Expect(k8s.Create(ctx, huaweiCert(ns, "hw", "huawei-prod", "hw-keys"))).To(Succeed())
	tenant := tenantObj(ns, "chat", "hw")
	tenant.Spec.Dispatcher.Replicas = ptr.To(int32(2))
	g.Expect(k8s.Create(ctx, tenant)).To(Succeed())
	tenantCondition(t, ns, "chat", pushv1.ConditionDispatcherAvailable, pushv1.ReasonDeploymentPending)

	counter, rec, reconcile := reconcilers(t)
	requests := []ctrl.Request{
		{NamespacedName: client.ObjectKey{Namespace: ns, Name: "hw"}},
		{NamespacedName: client.ObjectKey{Namespace: ns, Name: "policy"}},
		{NamespacedName: client.ObjectKey{Namespace: ns, Name: "chat"}},
	}
	once := func() []string {
		for i, r := range reconcile {
			if _, err := r(ctx, requests[i]); err != nil {
				t.Fatal(err)
			}
		}
		return counter.Take().Mutating().Strings()
	}
	// The manager may still be settling (shards observed, status written);
	// wait for one quiet round, then every further round must be quiet too.
	eventually(t).Eventually(once).Should(BeEmpty())
	for range 3 {
		g.Expect(once()).To(BeEmpty(), "reconciling an unchanged tenant wrote")
	}
	g.Expect(rec.Events).To(BeEmpty(), "reconciling an unchanged tenant emitted events")

	// Another writer scales the Deployment: the operator puts it back.
	d := &appsv1.Deployment{}
	key := client.ObjectKey{Namespace: ns, Name: "chat-dispatcher"}
	g.Expect(k8s.Get(ctx, key, d)).To(Succeed())
	d.Spec.Replicas = ptr.To(int32(5))
	g.Expect(k8s.Update(ctx, d)).To(Succeed())
	eventually(t).Eventually(func(g Gomega) {
		g.Expect(k8s.Get(ctx, key, d)).To(Succeed())
		g.Expect(*d.Spec.Replicas).To(Equal(int32(2)))
	}).Should(Succeed())
}

// TestPushCertificateExpiryIsFlaggedOnTime: a certificate is requeued for the
// moment ExpiringSoon must turn True (30 days before expiry) and, once within
// that window, for its expiry; entering the window emits one Warning event.
func TestPushCertificateExpiryIsFlaggedOnTime(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	g := NewWithT(t)
	now := clock.Now()
	_, rec, reconcile := reconcilers(t)
	certReconcile := reconcile[0]

	for _, c := range []struct {
		name    string
		expires time.Duration
		soon    metav1.ConditionStatus
		requeue time.Duration
	}{
		{"apns-40d", 40 * 24 * time.Hour, metav1.ConditionFalse, 10 * 24 * time.Hour},
		{"apns-10d", 10 * 24 * time.Hour, metav1.ConditionTrue, 10 * 24 * time.Hour},
	} {
		data, spec, err := fakeapns.P12Credential("com.example.chat", "pw", now.Add(c.expires))
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(k8s.Create(ctx, secret(ns, c.name, data))).To(Succeed())
		g.Expect(k8s.Create(ctx, apnsCert(ns, c.name, c.name, spec))).To(Succeed())
		pc := readyOf(t, ns, c.name, pushv1.ReasonValid)
		g.Expect(condition(pc.Status.Conditions, pushv1.ConditionExpiringSoon).Status).To(Equal(c.soon), c.name)

		res, err := certReconcile(ctx, ctrl.Request{NamespacedName: client.ObjectKeyFromObject(pc)})
		g.Expect(err).NotTo(HaveOccurred())
		// expiresAt is kept to whole seconds.
		g.Expect(res.RequeueAfter).To(BeNumerically("~", c.requeue, time.Second), c.name)
	}

	// The manager's reconcile emitted the Warning when the condition turned
	// True; a later reconcile (the condition already True) emits none.
	eventually(t).Eventually(func(g Gomega) {
		list := &eventsv1.EventList{}
		g.Expect(k8s.List(ctx, list, client.InNamespace(ns))).To(Succeed())
		var warnings []string
		for _, e := range list.Items {
			if e.Type == corev1.EventTypeWarning && e.Reason == pushv1.ReasonExpiresSoon {
				warnings = append(warnings, e.Regarding.Name+": "+e.Note)
			}
		}
		g.Expect(warnings).To(ConsistOf(HavePrefix("apns-10d: credential expires at")))
	}).Should(Succeed())
	g.Expect(rec.Events).To(BeEmpty())
}
