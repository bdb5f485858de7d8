package controllers_test

import (
	"context"
	"testing"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	pushv1 "github.com/imcloud/im-push-operator/api/v1alpha1"
	"github.com/imcloud/im-push-operator/dispatcher/config"
)

func tenantObj(ns, name string, certs ...string) *pushv1.AppTenant {
	return &pushv1.AppTenant{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: pushv1.AppTenantSpec{
			AppKey: "app#" + name, Certificates: certs,
			PolicyRef:  pushv1.LocalObjectReference{Name: "policy"},
			TokenStore: pushv1.TokenStoreSpec{Shards: ptr.To(int32(4))},
		},
	}
}

// tenantCondition waits until the tenant's condition typ has reason.
func tenantCondition(t *testing.T, ns, name, typ, reason string) (*pushv1.AppTenant, metav1.Condition) {
	t.Helper()
	at := &pushv1.AppTenant{}
	var cond metav1.Condition
	eventually(t).Eventually(func(g Gomega) {
		g.Expect(k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, at)).To(Succeed())
		g.Expect(at.Status.ObservedGeneration).To(Equal(at.Generation))
		cond = condition(at.Status.Conditions, typ)
		g.Expect(cond.Reason).To(Equal(reason), cond.Message)
	}).Should(Succeed())
	return at, cond
}

func renderedConfig(t *testing.T, ns, tenant string) *config.Config {
	t.Helper()
	s := &corev1.Secret{}
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: config.ConfigSecretName(tenant)}, s); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(s.Data[config.SecretKey])
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestAppTenantHappyPath(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	g := NewWithT(t)
	g.Expect(k8s.Create(ctx, policyObj(ns, "policy"))).To(Succeed())
	g.Expect(k8s.Create(ctx, secret(ns, "hw-keys", map[string][]byte{config.KeyClientSecret: []byte("first")}))).To(Succeed())
	g.Expect(k8s.Create(ctx, huaweiCert(ns, "hw", "huawei-prod", "hw-keys"))).To(Succeed())
	g.Expect(k8s.Create(ctx, tenantObj(ns, "chat", "hw"))).To(Succeed())

	// The tenant may first see its certificate before the PushCertificate
	// controller has validated it; wait for both inputs, then the Deployment.
	tenantCondition(t, ns, "chat", pushv1.ConditionCertificatesReady, pushv1.ReasonReady)
	tenantCondition(t, ns, "chat", pushv1.ConditionPolicyReady, pushv1.ReasonReady)
	at, cond := tenantCondition(t, ns, "chat", pushv1.ConditionDispatcherAvailable, pushv1.ReasonDeploymentPending)
	g.Expect(cond.Status).To(Equal(metav1.ConditionFalse))
	ready := condition(at.Status.Conditions, pushv1.ConditionReady)
	g.Expect(ready.Status).To(Equal(metav1.ConditionFalse))
	g.Expect(condition(at.Status.Conditions, pushv1.ConditionCertificatesReady).Status).To(Equal(metav1.ConditionTrue))
	g.Expect(condition(at.Status.Conditions, pushv1.ConditionPolicyReady).Status).To(Equal(metav1.ConditionTrue))
	g.Expect(at.Status.Endpoint).To(Equal("http://chat-dispatcher." + ns + ".svc"))
	g.Expect(at.Status.APITokenSecretName).To(Equal("chat-dispatcher-auth"))
	g.Expect(at.Status.Certificates).To(ConsistOf(pushv1.CertificateSummary{Name: "hw", CertificateName: "huawei-prod", Provider: pushv1.ProviderHuawei, Ready: true}))

	// Owned objects exist with a controller reference to the tenant.
	for _, obj := range []client.Object{&corev1.ServiceAccount{}, &rbacv1.Role{}, &rbacv1.RoleBinding{}, &appsv1.Deployment{}, &corev1.Service{}, &policyv1.PodDisruptionBudget{}, &networkingv1.NetworkPolicy{}} {
		g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "chat-dispatcher"}, obj)).To(Succeed())
		g.Expect(metav1.GetControllerOf(obj).UID).To(Equal(at.UID))
	}
	auth := &corev1.Secret{}
	g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "chat-dispatcher-auth"}, auth)).To(Succeed())
	g.Expect(auth.Data[config.AuthTokenKey]).To(HaveLen(43))
	for i := range 4 {
		shard := &corev1.Secret{}
		g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: config.TokenStore{ShardPrefix: "chat-devices-"}.ShardName(i)}, shard)).To(Succeed())
		g.Expect(string(shard.Type)).To(Equal(pushv1.SecretTypeDeviceTokens))
		g.Expect(shard.OwnerReferences).To(BeEmpty())
	}
	cfg := renderedConfig(t, ns, "chat")
	g.Expect(cfg.AppKey).To(Equal("app#chat"))
	g.Expect(cfg.Certificates).To(HaveLen(1))
	g.Expect(string(cfg.Certificates[0].Data[config.KeyClientSecret])).To(Equal("first"))
	g.Expect(cfg.TokenStore.Shards).To(Equal(int32(4)))

	// Rotating the credential Secret re-renders the config, no restart: the
	// pod template does not change.
	d := &appsv1.Deployment{}
	g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "chat-dispatcher"}, d)).To(Succeed())
	template := d.Spec.Template.DeepCopy()
	s := &corev1.Secret{}
	g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "hw-keys"}, s)).To(Succeed())
	s.Data[config.KeyClientSecret] = []byte("second")
	g.Expect(k8s.Update(ctx, s)).To(Succeed())
	eventually(t).Eventually(func() string {
		return string(renderedConfig(t, ns, "chat").Certificates[0].Data[config.KeyClientSecret])
	}).Should(Equal("second"))
	g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "chat-dispatcher"}, d)).To(Succeed())
	g.Expect(d.Spec.Template).To(Equal(*template))

	// A broken Secret keeps the last good credential in the config.
	s.Data = map[string][]byte{"oops": []byte("x")}
	g.Expect(k8s.Update(ctx, s)).To(Succeed())
	tenantCondition(t, ns, "chat", pushv1.ConditionCertificatesReady, pushv1.ReasonCertificateNotReady)
	g.Expect(string(renderedConfig(t, ns, "chat").Certificates[0].Data[config.KeyClientSecret])).To(Equal("second"))
	s.Data = map[string][]byte{config.KeyClientSecret: []byte("second")}
	g.Expect(k8s.Update(ctx, s)).To(Succeed())
	tenantCondition(t, ns, "chat", pushv1.ConditionCertificatesReady, pushv1.ReasonReady)

	// The Deployment's status (written by a kubelet, or the local runner)
	// drives DispatcherAvailable and Ready.
	g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "chat-dispatcher"}, d)).To(Succeed())
	d.Status = appsv1.DeploymentStatus{ObservedGeneration: d.Generation, Replicas: 2, ReadyReplicas: 2, AvailableReplicas: 2, UpdatedReplicas: 2}
	g.Expect(k8s.Status().Update(ctx, d)).To(Succeed())
	at, _ = tenantCondition(t, ns, "chat", pushv1.ConditionReady, pushv1.ReasonReady)
	g.Expect(at.Status.ReadyReplicas).To(Equal(int32(2)))

	d.Status.AvailableReplicas = 1
	g.Expect(k8s.Status().Update(ctx, d)).To(Succeed())
	_, cond = tenantCondition(t, ns, "chat", pushv1.ConditionDispatcherAvailable, pushv1.ReasonReplicasUnavailable)
	g.Expect(cond.Message).To(Equal("1 of 2 replicas available"))
}

func TestAppTenantBadReferences(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	g := NewWithT(t)
	g.Expect(k8s.Create(ctx, secret(ns, "hw-keys", map[string][]byte{config.KeyClientSecret: []byte("v")}))).To(Succeed())
	g.Expect(k8s.Create(ctx, huaweiCert(ns, "hw-a", "huawei", "hw-keys"))).To(Succeed())
	g.Expect(k8s.Create(ctx, huaweiCert(ns, "hw-b", "huawei", "hw-keys"))).To(Succeed())

	g.Expect(k8s.Create(ctx, tenantObj(ns, "missing", "nope", "hw-a"))).To(Succeed())
	at, cond := tenantCondition(t, ns, "missing", pushv1.ConditionCertificatesReady, pushv1.ReasonCertificateNotFound)
	g.Expect(cond.Message).To(ContainSubstring("nope"))
	g.Expect(condition(at.Status.Conditions, pushv1.ConditionReady).Status).To(Equal(metav1.ConditionFalse))
	_, cond = tenantCondition(t, ns, "missing", pushv1.ConditionPolicyReady, pushv1.ReasonPolicyNotFound)
	g.Expect(cond.Message).To(ContainSubstring(`"policy"`))

	g.Expect(k8s.Create(ctx, tenantObj(ns, "dupes", "hw-a", "hw-b"))).To(Succeed())
	_, cond = tenantCondition(t, ns, "dupes", pushv1.ConditionCertificatesReady, pushv1.ReasonDuplicateCertificate)
	g.Expect(cond.Message).To(ContainSubstring(`certificateName "huawei" is used by hw-a and hw-b`))

	// A policy that is not Ready is named with its reason.
	bad := policyObj(ns, "policy")
	bad.Spec.Notification.Body = "{{.Nope"
	g.Expect(k8s.Create(ctx, bad)).To(Succeed())
	_, cond = tenantCondition(t, ns, "missing", pushv1.ConditionPolicyReady, pushv1.ReasonPolicyNotReady)
	g.Expect(cond.Message).To(ContainSubstring(`PushPolicy "policy" is not Ready`))

	// A certificate named by a tenant cannot go while the tenant names it.
	g.Expect(k8s.Delete(ctx, &pushv1.PushCertificate{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "hw-a"}})).To(Succeed())
	pc := &pushv1.PushCertificate{}
	g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "hw-a"}, pc)).To(Succeed())
	g.Expect(pc.Finalizers).To(ContainElement(pushv1.Finalizer))
	for _, name := range []string{"missing", "dupes"} {
		g.Expect(k8s.Delete(ctx, &pushv1.AppTenant{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}})).To(Succeed())
	}
	eventually(t).Eventually(func() bool {
		return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "hw-a"}, pc))
	}).Should(BeTrue())
}

func TestAppTenantDispatcherRBAC(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	g := NewWithT(t)
	g.Expect(k8s.Create(ctx, policyObj(ns, "policy"))).To(Succeed())
	g.Expect(k8s.Create(ctx, secret(ns, "hw-keys", map[string][]byte{config.KeyClientSecret: []byte("v")}))).To(Succeed())
	g.Expect(k8s.Create(ctx, huaweiCert(ns, "hw", "huawei", "hw-keys"))).To(Succeed())
	g.Expect(k8s.Create(ctx, tenantObj(ns, "one", "hw"))).To(Succeed())
	g.Expect(k8s.Create(ctx, tenantObj(ns, "two", "hw"))).To(Succeed())
	tenantCondition(t, ns, "one", pushv1.ConditionTokenStoreReady, pushv1.ReasonShardsAvailable)
	tenantCondition(t, ns, "two", pushv1.ConditionTokenStoreReady, pushv1.ReasonShardsAvailable)

	sa := "system:serviceaccount:" + ns + ":one-dispatcher"
	cases := []struct {
		verb, name string
		allowed    bool
	}{
		{"get", "one-devices-000", true},
		{"update", "one-devices-003", true},
		{"watch", "one-devices-001", true},
		{"get", "one-dispatcher-config", true},
		{"get", "one-dispatcher-auth", true},
		{"update", "one-dispatcher-config", false},
		{"get", "two-devices-000", false},
		{"get", "two-dispatcher-config", false},
		{"get", "hw-keys", false},
		{"list", "", false},
		{"watch", "", false},
		{"create", "", false},
		{"delete", "one-devices-000", false},
	}
	for _, c := range cases {
		sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User: sa, Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + ns},
			ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: ns, Verb: c.verb, Resource: "secrets", Name: c.name},
		}}
		got, err := clientset.AuthorizationV1().SubjectAccessReviews().Create(ctx, sar, metav1.CreateOptions{})
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(got.Status.Allowed).To(Equal(c.allowed), "%s %q", c.verb, c.name)
	}
}

func TestAppTenantShardFillAndDelete(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	g := NewWithT(t)
	g.Expect(k8s.Create(ctx, policyObj(ns, "policy"))).To(Succeed())
	g.Expect(k8s.Create(ctx, secret(ns, "hw-keys", map[string][]byte{config.KeyClientSecret: []byte("v")}))).To(Succeed())
	g.Expect(k8s.Create(ctx, huaweiCert(ns, "hw", "huawei", "hw-keys"))).To(Succeed())
	tn := tenantObj(ns, "fill", "hw")
	tn.Spec.TokenStore.RetainOnDelete = ptr.To(false)
	g.Expect(k8s.Create(ctx, tn)).To(Succeed())
	tenantCondition(t, ns, "fill", pushv1.ConditionTokenStoreReady, pushv1.ReasonShardsAvailable)

	// The dispatcher records fill in an annotation; past 80% the condition warns.
	shard := &corev1.Secret{}
	g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "fill-devices-002"}, shard)).To(Succeed())
	shard.Annotations[pushv1.AnnotationFillBytes] = "230000"
	g.Expect(k8s.Update(ctx, shard)).To(Succeed())
	_, cond := tenantCondition(t, ns, "fill", pushv1.ConditionTokenStoreReady, pushv1.ReasonShardNearlyFull)
	g.Expect(cond.Status).To(Equal(metav1.ConditionTrue))
	g.Expect(cond.Message).To(ContainSubstring("fill-devices-002 (87%)"))

	// retainOnDelete false: the finalizer deletes the shards.
	g.Expect(k8s.Delete(ctx, tn)).To(Succeed())
	eventually(t).Eventually(func() bool {
		return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "fill-devices-000"}, shard))
	}).Should(BeTrue())
	eventually(t).Eventually(func() bool {
		return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKeyFromObject(tn), tn))
	}).Should(BeTrue())
}
