package controllers

import (
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	pushv1 "github.com/imcloud/im-push-operator/api/v1alpha1"
	"github.com/imcloud/im-push-operator/dispatcher/config"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func goldenTenant() *pushv1.AppTenant {
	return &pushv1.AppTenant{
		ObjectMeta: metav1.ObjectMeta{Name: "chat", Namespace: "im", UID: "uid-1"},
		Spec: pushv1.AppTenantSpec{
			AppKey:       "chat#prod",
			Certificates: []string{"hw"},
			PolicyRef:    pushv1.LocalObjectReference{Name: "default"},
			Dispatcher: pushv1.DispatcherSpec{
				Replicas: ptr.To(int32(3)),
				AllowedClients: []pushv1.AllowedClient{{
					NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": "im-server"}},
					PodSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"app": "im-server"}},
				}},
			},
			TokenStore: pushv1.TokenStoreSpec{Shards: ptr.To(int32(2)), MaxDevicesPerUser: 10, MaxShardBytes: 262144, WriteBudgetBytesPerSecond: 3 << 20},
		},
	}
}

func golden(t *testing.T, name string, obj any) {
	t.Helper()
	got, err := yaml.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("testdata", "golden", name+".yaml")
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./controllers -run TestBuilders -update)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s differs from the golden file (-want +got):\n%s", name, diff)
	}
}

func TestBuildersGolden(t *testing.T) {
	tn := goldenTenant()
	golden(t, "serviceaccount", ServiceAccount(tn))
	golden(t, "role", Role(tn))
	golden(t, "rolebinding", RoleBinding(tn))
	golden(t, "deployment", Deployment(tn, "example.com/im-push:v1"))
	golden(t, "service", Service(tn))
	golden(t, "pdb", PodDisruptionBudget(tn))
	golden(t, "networkpolicy", NetworkPolicy(tn))
	golden(t, "shard", ShardSecret(tn, 1))

	pp := &pushv1.PushPolicySpec{
		Notification: pushv1.NotificationSpec{Title: "{{.Sender.DisplayName}}", Body: "{{.Text}}",
			Translations: []pushv1.Translation{{Language: "zh", Title: "{{.Sender.DisplayName}}", Body: "{{.Text}}"}}},
		QuietHours: &pushv1.QuietHoursSpec{Start: "22:00", End: "07:00", TimeZone: "Asia/Shanghai"},
		Delivery:   pushv1.DeliverySpec{TTL: "1h", MaxAttempts: 4, RateLimits: []pushv1.RateLimit{{CertificateName: "huawei", PerSecond: 300, DailyCap: 100000}}},
	}
	certs := []config.Certificate{{Name: "huawei", Resource: "hw", Provider: config.Huawei, Fingerprint: "sha256:abc",
		Huawei: &config.HuaweiSpec{AppID: "1", ClientID: "1"}, Data: map[string][]byte{config.KeyClientSecret: []byte("REDACTED-IN-GOLDEN")}}}
	golden(t, "config", RenderConfig(tn, certs, PolicyConfig(pp), pp.Delivery.RateLimits))
}

func TestNoPDBForOneReplica(t *testing.T) {
	tn := goldenTenant()
	tn.Spec.Dispatcher.Replicas = ptr.To(int32(1))
	if pdb := PodDisruptionBudget(tn); pdb != nil {
		t.Fatalf("a single replica got a PDB: %+v", pdb)
	}
}

// The restart hash covers what needs a restart and nothing else.
func TestRestartHash(t *testing.T) {
	tn := goldenTenant()
	base := Deployment(tn, "img:1").Spec.Template.Annotations[AnnotationRestartHash]
	if got := Deployment(tn, "img:1").Spec.Template.Annotations[AnnotationRestartHash]; got != base {
		t.Fatal("hash is not deterministic")
	}
	if got := Deployment(tn, "img:2").Spec.Template.Annotations[AnnotationRestartHash]; got == base {
		t.Fatal("an image change did not change the hash")
	}
	tn.Spec.Dispatcher.Resources = &corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("1Gi")}}
	if got := Deployment(tn, "img:1").Spec.Template.Annotations[AnnotationRestartHash]; got == base {
		t.Fatal("a resources change did not change the hash")
	}
	tn = goldenTenant()
	tn.Spec.Certificates = []string{"other"}
	tn.Spec.AppKey = "changed"
	if got := Deployment(tn, "img:1").Spec.Template.Annotations[AnnotationRestartHash]; got != base {
		t.Fatal("a change that needs no restart changed the hash")
	}
}

func TestRateLimitDividedByReplicas(t *testing.T) {
	tn := goldenTenant()
	cfg := RenderConfig(tn, []config.Certificate{{Name: "a"}}, config.Policy{}, []pushv1.RateLimit{{CertificateName: "a", PerSecond: 300}})
	if cfg.Certificates[0].RateLimit != 100 {
		t.Fatalf("rate limit %v, want 300/3", cfg.Certificates[0].RateLimit)
	}
}
