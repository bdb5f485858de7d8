package controllers_test

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	pushv1 "github.com/imcloud/im-push-operator/api/v1alpha1"
	"github.com/imcloud/im-push-operator/dispatcher/config"
	fakeapns "github.com/imcloud/im-push-operator/dispatcher/providers/fake/apns"
)

func secret(ns, name string, data map[string][]byte) *corev1.Secret {
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Data: data}
}

func huaweiCert(ns, name, certName, secretName string) *pushv1.PushCertificate {
	return &pushv1.PushCertificate{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: pushv1.PushCertificateSpec{
			Provider: pushv1.ProviderHuawei, CertificateName: certName,
			SecretRef: pushv1.LocalObjectReference{Name: secretName},
			Huawei:    &pushv1.HuaweiSpec{AppID: "10086"},
		},
	}
}

func apnsCert(ns, name, secretName string, spec *config.APNsSpec) *pushv1.PushCertificate {
	return &pushv1.PushCertificate{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: pushv1.PushCertificateSpec{
			Provider: pushv1.ProviderAPNs, CertificateName: name,
			SecretRef: pushv1.LocalObjectReference{Name: secretName},
			APNs: &pushv1.APNsSpec{AuthType: pushv1.APNsAuthType(spec.AuthType), TeamID: spec.TeamID, KeyID: spec.KeyID,
				BundleID: spec.BundleID, Environment: "Development"},
		},
	}
}

// readyOf waits for the certificate's Ready condition to have reason.
func readyOf(t *testing.T, ns, name, reason string) *pushv1.PushCertificate {
	t.Helper()
	pc := &pushv1.PushCertificate{}
	eventually(t).Eventually(func(g Gomega) {
		g.Expect(k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, pc)).To(Succeed())
		g.Expect(condition(pc.Status.Conditions, pushv1.ConditionReady).Reason).To(Equal(reason))
		g.Expect(pc.Status.ObservedGeneration).To(Equal(pc.Generation))
	}).Should(Succeed())
	return pc
}

func TestPushCertificateSecretLifecycle(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	g := NewWithT(t)
	g.Expect(k8s.Create(ctx, huaweiCert(ns, "hw", "huawei-prod", "hw-keys"))).To(Succeed())

	pc := readyOf(t, ns, "hw", pushv1.ReasonSecretNotFound)
	g.Expect(condition(pc.Status.Conditions, pushv1.ConditionReady).Message).To(ContainSubstring(`Secret "hw-keys" not found`))
	g.Expect(condition(pc.Status.Conditions, pushv1.ConditionReady).Status).To(Equal(metav1.ConditionFalse))

	// A Secret without the key: the watch on the Secret picks it up.
	s := secret(ns, "hw-keys", map[string][]byte{"wrong": []byte("x")})
	g.Expect(k8s.Create(ctx, s)).To(Succeed())
	pc = readyOf(t, ns, "hw", pushv1.ReasonKeyMissing)
	g.Expect(condition(pc.Status.Conditions, pushv1.ConditionReady).Message).To(ContainSubstring(`"clientSecret"`))

	s.Data = map[string][]byte{config.KeyClientSecret: []byte("   ")}
	g.Expect(k8s.Update(ctx, s)).To(Succeed())
	readyOf(t, ns, "hw", pushv1.ReasonInvalidCredentials)

	s.Data = map[string][]byte{config.KeyClientSecret: []byte("s3cret-value")}
	g.Expect(k8s.Update(ctx, s)).To(Succeed())
	pc = readyOf(t, ns, "hw", pushv1.ReasonValid)
	first := pc.Status.Fingerprint
	g.Expect(first).To(Equal(config.Fingerprint(s.Data)))
	g.Expect(condition(pc.Status.Conditions, pushv1.ConditionExpiringSoon).Status).To(Equal(metav1.ConditionFalse))

	// Rotation: a new secret value gives a new fingerprint, never the data.
	s.Data = map[string][]byte{config.KeyClientSecret: []byte("rotated-value")}
	g.Expect(k8s.Update(ctx, s)).To(Succeed())
	eventually(t).Eventually(func(g Gomega) {
		g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(pc), pc)).To(Succeed())
		g.Expect(pc.Status.Fingerprint).NotTo(Equal(first))
	}).Should(Succeed())
	g.Expect(pc.Status.Fingerprint).NotTo(ContainSubstring("rotated"))
}

func TestPushCertificateAPNs(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	g := NewWithT(t)
	now := clock.Now()

	data, spec, err := fakeapns.TokenCredential("com.example.chat")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(k8s.Create(ctx, secret(ns, "p8", data))).To(Succeed())
	g.Expect(k8s.Create(ctx, apnsCert(ns, "apns-token", "p8", spec))).To(Succeed())
	readyOf(t, ns, "apns-token", pushv1.ReasonValid)

	// A .p8 that is not an EC P-256 key is refused, naming the key.
	g.Expect(k8s.Create(ctx, secret(ns, "bad-p8", map[string][]byte{config.KeyAPNsAuthKey: []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")}))).To(Succeed())
	g.Expect(k8s.Create(ctx, apnsCert(ns, "apns-bad", "bad-p8", spec))).To(Succeed())
	pc := readyOf(t, ns, "apns-bad", pushv1.ReasonInvalidCredentials)
	g.Expect(condition(pc.Status.Conditions, pushv1.ConditionReady).Message).To(ContainSubstring("authKey"))

	// A .p12 expiring in 10 days: Ready, ExpiringSoon True, expiresAt set.
	data, spec, err = fakeapns.P12Credential("com.example.chat", "pw", now.Add(10*24*time.Hour))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(k8s.Create(ctx, secret(ns, "p12", data))).To(Succeed())
	g.Expect(k8s.Create(ctx, apnsCert(ns, "apns-p12", "p12", spec))).To(Succeed())
	pc = readyOf(t, ns, "apns-p12", pushv1.ReasonValid)
	g.Expect(condition(pc.Status.Conditions, pushv1.ConditionExpiringSoon).Status).To(Equal(metav1.ConditionTrue))
	g.Expect(pc.Status.ExpiresAt).NotTo(BeNil())
	g.Expect(pc.Status.ExpiresAt.Time).To(BeTemporally("~", now.Add(10*24*time.Hour), time.Minute))

	// The wrong password is an InvalidCredentials naming the key.
	data[config.KeyAPNsP12Password] = []byte("not-the-password")
	g.Expect(k8s.Create(ctx, secret(ns, "p12-badpw", data))).To(Succeed())
	g.Expect(k8s.Create(ctx, apnsCert(ns, "apns-badpw", "p12-badpw", spec))).To(Succeed())
	readyOf(t, ns, "apns-badpw", pushv1.ReasonInvalidCredentials)

	// An expired certificate.
	data, spec, err = fakeapns.PEMCredential("com.example.chat", now.Add(-time.Hour))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(k8s.Create(ctx, secret(ns, "pem-old", data))).To(Succeed())
	g.Expect(k8s.Create(ctx, apnsCert(ns, "apns-old", "pem-old", spec))).To(Succeed())
	pc = readyOf(t, ns, "apns-old", pushv1.ReasonExpired)
	g.Expect(condition(pc.Status.Conditions, pushv1.ConditionReady).Message).To(ContainSubstring("expired"))
}
