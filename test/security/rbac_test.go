package security

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	pushv1 "github.com/imcloud/im-push-operator/api/v1alpha1"
	"github.com/imcloud/im-push-operator/dispatcher/config"
)

// TestDispatcherSecretAccess asks the API server, by SubjectAccessReview,
// what the chat-app dispatcher's ServiceAccount may do with every Secret it
// could want: its own shards, config and API token; the other tenant's in
// the same namespace; the user's credential Secrets; a Secret of its own
// name in another namespace. Each is asked for every verb, by name, with a
// metadata.name field selector, with the tenant label selector, and without
// any selector. Only get, list and watch by name (update for shards) on its
// own Secrets may be allowed. Then the same account really tries.
func TestDispatcherSecretAccess(t *testing.T) {
	s := system(t)
	ctx := context.Background()
	cs, err := kubernetes.NewForConfig(s.Config)
	if err != nil {
		t.Fatal(err)
	}
	at := &pushv1.AppTenant{}
	if err := s.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: tenant}, at); err != nil {
		t.Fatal(err)
	}
	shards := func(name string, n int) []string {
		var out []string
		for i := range n {
			out = append(out, fmt.Sprintf("%s-devices-%03d", name, i))
		}
		return out
	}
	own := map[string][]string{} // name → verbs allowed
	for _, n := range shards(tenant, 4) {
		own[n] = []string{"get", "list", "watch", "update"}
	}
	own[config.ConfigSecretName(tenant)] = []string{"get", "list", "watch"}
	own[config.AuthSecretName(tenant)] = []string{"get", "list", "watch"}
	targets := map[string]string{} // name → namespace
	for n := range own {
		targets[n] = ns
	}
	for _, n := range append(shards(other, 2), config.ConfigSecretName(other), config.AuthSecretName(other)) {
		targets[n] = ns
	}
	for _, n := range at.Spec.Certificates {
		targets[n+"-keys"] = ns
	}
	const elsewhere = "sec-elsewhere"
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: elsewhere}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	// Same name, other namespace: keyed apart from the tenant's own below.
	targets[elsewhere+"/"+config.ConfigSecretName(tenant)] = elsewhere

	user := "system:serviceaccount:" + ns + ":" + tenant + "-dispatcher"
	groups := []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"}
	verbs := []string{"get", "list", "watch", "update", "patch", "delete", "create", "deletecollection"}
	type selector struct {
		name  string
		apply func(ra *authorizationv1.ResourceAttributes, secret string)
	}
	selectors := []selector{
		{"by name", func(ra *authorizationv1.ResourceAttributes, n string) { ra.Name = n }},
		{"field selector metadata.name", func(ra *authorizationv1.ResourceAttributes, n string) {
			ra.FieldSelector = &authorizationv1.FieldSelectorAttributes{RawSelector: "metadata.name=" + n}
		}},
		{"label selector", func(ra *authorizationv1.ResourceAttributes, _ string) {
			ra.LabelSelector = &authorizationv1.LabelSelectorAttributes{RawSelector: pushv1.LabelTenant + "=" + tenant}
		}},
		{"no selector", func(*authorizationv1.ResourceAttributes, string) {}},
	}
	asked, allowed := 0, 0
	var wrong []string
	for key, namespace := range targets {
		name := key[strings.LastIndex(key, "/")+1:]
		for _, verb := range verbs {
			for _, sel := range selectors {
				ra := &authorizationv1.ResourceAttributes{Namespace: namespace, Verb: verb, Resource: "secrets"}
				sel.apply(ra, name)
				sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{User: user, Groups: groups, ResourceAttributes: ra}}
				got, err := cs.AuthorizationV1().SubjectAccessReviews().Create(ctx, sar, metav1.CreateOptions{})
				if err != nil {
					t.Fatal(err)
				}
				asked++
				// RBAC grants by resourceNames only to a request naming the
				// object; a field selector alone is not a name.
				want := namespace == ns && key == name && sel.name == "by name" && slices.Contains(own[name], verb)
				if got.Status.Allowed {
					allowed++
				}
				if got.Status.Allowed != want {
					wrong = append(wrong, fmt.Sprintf("%s %s/%s %s: allowed=%v, want %v", verb, namespace, name, sel.name, got.Status.Allowed, want))
				}
			}
		}
	}
	slices.Sort(wrong)
	if len(wrong) > 0 {
		t.Errorf("%d of %d answers wrong:\n%s", len(wrong), asked, strings.Join(wrong, "\n"))
	}

	// The same account for real: its own config Secret reads, the other
	// tenant's and a credential Secret do not, and neither does a list.
	imp := rest.CopyConfig(s.Config)
	imp.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: groups}
	as, err := kubernetes.NewForConfig(imp)
	if err != nil {
		t.Fatal(err)
	}
	secrets := as.CoreV1().Secrets(ns)
	if _, err := secrets.Get(ctx, config.ConfigSecretName(tenant), metav1.GetOptions{}); err != nil {
		t.Fatalf("reading its own config Secret: %v", err)
	}
	if _, err := secrets.List(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + config.ConfigSecretName(tenant)}); err != nil {
		t.Fatalf("listing its own config Secret by name: %v", err)
	}
	for _, n := range []string{config.ConfigSecretName(other), config.AuthSecretName(other), other + "-devices-000", at.Spec.Certificates[0] + "-keys"} {
		if _, err := secrets.Get(ctx, n, metav1.GetOptions{}); !apierrors.IsForbidden(err) {
			t.Errorf("get %s: %v, want Forbidden", n, err)
		}
	}
	for _, opts := range []metav1.ListOptions{{}, {LabelSelector: pushv1.LabelTenant + "=" + tenant}, {FieldSelector: "metadata.name=" + config.ConfigSecretName(other)}} {
		if _, err := secrets.List(ctx, opts); !apierrors.IsForbidden(err) {
			t.Errorf("list %+v: %v, want Forbidden", opts, err)
		}
	}
	t.Logf("%d SubjectAccessReviews (%d Secrets × %d verbs × %d selector forms): %d allowed, %d answers wrong", asked, len(targets), len(verbs), len(selectors), allowed, len(wrong))
}
