package controllers_test

import (
	"context"
	"testing"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	pushv1 "github.com/imcloud/im-push-operator/api/v1alpha1"
)

func policyObj(ns, name string) *pushv1.PushPolicy {
	return &pushv1.PushPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: pushv1.PushPolicySpec{
			Notification: pushv1.NotificationSpec{Title: "{{.Sender.DisplayName}}", Body: "{{.Text}}"},
		},
	}
}

func policyReady(t *testing.T, ns, name string, status metav1.ConditionStatus) metav1.Condition {
	t.Helper()
	pp := &pushv1.PushPolicy{}
	var cond metav1.Condition
	eventually(t).Eventually(func(g Gomega) {
		g.Expect(k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, pp)).To(Succeed())
		g.Expect(pp.Status.ObservedGeneration).To(Equal(pp.Generation))
		cond = condition(pp.Status.Conditions, pushv1.ConditionReady)
		g.Expect(cond.Status).To(Equal(status))
	}).Should(Succeed())
	return cond
}

func TestPushPolicyValidation(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	g := NewWithT(t)

	g.Expect(k8s.Create(ctx, policyObj(ns, "good"))).To(Succeed())
	c := policyReady(t, ns, "good", metav1.ConditionTrue)
	g.Expect(c.Reason).To(Equal(pushv1.ReasonPolicyValid))

	bad := policyObj(ns, "bad-template")
	bad.Spec.Notification.Translations = []pushv1.Translation{{Language: "zh", Title: "{{.Sender.DisplayName", Body: "x"}}
	g.Expect(k8s.Create(ctx, bad)).To(Succeed())
	c = policyReady(t, ns, "bad-template", metav1.ConditionFalse)
	g.Expect(c.Reason).To(Equal(pushv1.ReasonInvalidPolicy))
	g.Expect(c.Message).To(ContainSubstring("spec.notification.translations[0].title"))

	zone := policyObj(ns, "bad-zone")
	zone.Spec.QuietHours = &pushv1.QuietHoursSpec{Start: "22:00", End: "07:00", TimeZone: "Mars/Olympus"}
	g.Expect(k8s.Create(ctx, zone)).To(Succeed())
	c = policyReady(t, ns, "bad-zone", metav1.ConditionFalse)
	g.Expect(c.Message).To(ContainSubstring("spec.quietHours.timeZone"))

	// Fixing it turns Ready True.
	g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(zone), zone)).To(Succeed())
	zone.Spec.QuietHours.TimeZone = "Asia/Shanghai"
	g.Expect(k8s.Update(ctx, zone)).To(Succeed())
	policyReady(t, ns, "bad-zone", metav1.ConditionTrue)
}
