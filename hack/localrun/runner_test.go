package localrun

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

func TestResourceFieldAsTheKubeletPassesIt(t *testing.T) {
	r := corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("128Mi"), corev1.ResourceCPU: resource.MustParse("100m")},
		Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")},
	}
	for _, c := range []struct {
		field, divisor, want string
	}{
		{"requests.memory", "", "134217728"},
		{"limits.memory", "1Mi", "256"},
		{"requests.cpu", "", "1"}, // rounded up, as the kubelet does
		{"requests.cpu", "1m", "100"},
		{"limits.cpu", "", ""},
		{"bogus", "", ""},
	} {
		f := &corev1.ResourceFieldSelector{Resource: c.field}
		if c.divisor != "" {
			f.Divisor = resource.MustParse(c.divisor)
		}
		if got := resourceField(r, f); got != c.want {
			t.Errorf("%s (divisor %q) = %q, want %q", c.field, c.divisor, got, c.want)
		}
	}
}
