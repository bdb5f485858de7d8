package security

import (
	"context"
	"fmt"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	pushv1 "github.com/imcloud/im-push-operator/api/v1alpha1"
	"github.com/imcloud/im-push-operator/controllers"
)

// dispatcherDeployment is the Deployment the operator created for tenant.
func dispatcherDeployment(t *testing.T, name string) *appsv1.Deployment {
	t.Helper()
	d := &appsv1.Deployment{}
	if err := system(t).Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name + "-dispatcher"}, d); err != nil {
		t.Fatal(err)
	}
	return d
}

// TestDispatcherPodPassesRestrictedPSS builds a Pod from the pod template
// the operator rendered and server-side dry-runs it into a namespace that
// enforces the restricted Pod Security Standard; a privileged variant of
// the same pod must be refused there, proving the admission is enforcing.
func TestDispatcherPodPassesRestrictedPSS(t *testing.T) {
	s := system(t)
	ctx := context.Background()
	const restricted = "pss-restricted"
	nsObj := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: restricted, Labels: map[string]string{
		"pod-security.kubernetes.io/enforce":         "restricted",
		"pod-security.kubernetes.io/enforce-version": "latest",
	}}}
	if err := s.Client.Create(ctx, nsObj); client.IgnoreAlreadyExists(err) != nil {
		t.Fatal(err)
	}
	// The ServiceAccount admission plugin wants the pod's account to exist.
	d := dispatcherDeployment(t, tenant)
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: restricted, Name: d.Spec.Template.Spec.ServiceAccountName}}
	if err := s.Client.Create(ctx, sa); client.IgnoreAlreadyExists(err) != nil {
		t.Fatal(err)
	}
	pod := func(mutate func(*corev1.PodSpec)) *corev1.Pod {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: restricted, Name: "dispatcher-pss", Labels: d.Spec.Template.Labels, Annotations: d.Spec.Template.Annotations},
			Spec:       *d.Spec.Template.Spec.DeepCopy(),
		}
		if mutate != nil {
			mutate(&p.Spec)
		}
		return p
	}
	if err := s.Client.Create(ctx, pod(nil), client.DryRunAll); err != nil {
		t.Fatalf("the rendered dispatcher pod is refused under restricted: %v", err)
	}

	variants := map[string]func(*corev1.PodSpec){
		"privileged": func(p *corev1.PodSpec) {
			sc := p.Containers[0].SecurityContext
			sc.Privileged, sc.AllowPrivilegeEscalation = ptr.To(true), ptr.To(true)
		},
		"root": func(p *corev1.PodSpec) {
			p.SecurityContext.RunAsNonRoot, p.SecurityContext.RunAsUser = ptr.To(false), ptr.To(int64(0))
		},
		"privilege escalation": func(p *corev1.PodSpec) { p.Containers[0].SecurityContext.AllowPrivilegeEscalation = ptr.To(true) },
		"NET_RAW added": func(p *corev1.PodSpec) {
			p.Containers[0].SecurityContext.Capabilities = &corev1.Capabilities{Add: []corev1.Capability{"NET_RAW"}}
		},
		"no seccomp": func(p *corev1.PodSpec) {
			p.SecurityContext.SeccompProfile = nil
			p.Containers[0].SecurityContext.SeccompProfile = nil
		},
		"host network": func(p *corev1.PodSpec) { p.HostNetwork = true },
	}
	for name, mutate := range variants {
		t.Run(name, func(t *testing.T) {
			err := s.Client.Create(ctx, pod(mutate), client.DryRunAll)
			if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "PodSecurity") {
				t.Fatalf("a %s variant was not refused by PodSecurity: %v", name, err)
			}
		})
	}
	t.Logf("restricted accepts the rendered pod; refuses %d weakened variants", len(variants))
}

// TestDispatcherNetworkPolicy checks the NetworkPolicy the operator wrote as
// an object (no network plugin enforces it here): it selects exactly the
// dispatcher pods, limits ingress to the API port, admits only the tenant
// namespace's pods by default and exactly the allowed clients when listed,
// and leaves egress open for the providers.
func TestDispatcherNetworkPolicy(t *testing.T) {
	s := system(t)
	ctx := context.Background()
	np := &networkingv1.NetworkPolicy{}
	if err := s.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: tenant + "-dispatcher"}, np); err != nil {
		t.Fatal(err)
	}
	d := dispatcherDeployment(t, tenant)
	sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
	if err != nil {
		t.Fatal(err)
	}
	if sel.Empty() || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
		t.Fatalf("podSelector %v does not select the dispatcher pods %v", sel, d.Spec.Template.Labels)
	}
	otherPods := dispatcherDeployment(t, other).Spec.Template.Labels
	if sel.Matches(labels.Set(otherPods)) {
		t.Fatalf("podSelector %v also selects the other tenant's pods", sel)
	}
	if len(np.Spec.PolicyTypes) != 1 || np.Spec.PolicyTypes[0] != networkingv1.PolicyTypeIngress || len(np.Spec.Egress) != 0 {
		t.Fatalf("policy types %v, egress %v: want ingress only", np.Spec.PolicyTypes, np.Spec.Egress)
	}
	if len(np.Spec.Ingress) != 1 {
		t.Fatalf("%d ingress rules, want 1", len(np.Spec.Ingress))
	}
	rule := np.Spec.Ingress[0]
	port := d.Spec.Template.Spec.Containers[0].Ports[0].ContainerPort
	if len(rule.Ports) != 1 || rule.Ports[0].Port == nil || rule.Ports[0].Port.IntValue() != int(port) ||
		rule.Ports[0].Protocol == nil || *rule.Ports[0].Protocol != corev1.ProtocolTCP {
		t.Fatalf("ingress ports %+v, want only TCP %d", rule.Ports, port)
	}
	if len(rule.From) != 1 || rule.From[0].NamespaceSelector != nil || rule.From[0].IPBlock != nil ||
		rule.From[0].PodSelector == nil || len(rule.From[0].PodSelector.MatchLabels)+len(rule.From[0].PodSelector.MatchExpressions) != 0 {
		t.Fatalf("ingress from %+v, want every pod of the tenant's namespace and nothing else", rule.From)
	}

	// With allowed clients listed, exactly those are admitted; rendered by
	// the operator's own builder, as the reconciler does.
	at := &pushv1.AppTenant{}
	if err := s.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: tenant}, at); err != nil {
		t.Fatal(err)
	}
	im := &metav1.LabelSelector{MatchLabels: map[string]string{"app": "im-server"}}
	imNS := &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": "im"}}
	at.Spec.Dispatcher.AllowedClients = []pushv1.AllowedClient{{PodSelector: im, NamespaceSelector: imNS}}
	from := controllers.NetworkPolicy(at).Spec.Ingress[0].From
	if len(from) != 1 || fmt.Sprint(from[0].PodSelector) != fmt.Sprint(im) || fmt.Sprint(from[0].NamespaceSelector) != fmt.Sprint(imNS) {
		t.Fatalf("allowed clients rendered as %+v", from)
	}
	t.Logf("NetworkPolicy %s: selects %v, ingress TCP %d from same-namespace pods only, egress open", np.Name, np.Spec.PodSelector.MatchLabels, port)
}
