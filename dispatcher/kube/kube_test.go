package kube

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/imcloud/im-push-operator/internal/testenv"
)

// TestDispatcherLinksNoClientset guards the reason this package exists: the
// dispatcher binary must not link client-go's generated clientset or its
// all-groups scheme, which cost every dispatcher pod about 9.5 MiB of RSS.
func TestDispatcherLinksNoClientset(t *testing.T) {
	cmd := exec.Command("go", "list", "-deps", "./dispatcher/cmd/dispatcher")
	cmd.Dir = testenv.RepoRoot()
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 100 {
		t.Fatalf("go list gave %d packages; expected the dispatcher's dependencies", len(deps))
	}
	for _, d := range deps {
		if d == "k8s.io/client-go/kubernetes" || d == "k8s.io/client-go/kubernetes/scheme" || strings.HasPrefix(d, "k8s.io/client-go/kubernetes/typed/") {
			t.Errorf("the dispatcher links %s", d)
		}
	}
}
