// Package testenv starts the real kube-apiserver and etcd that tests run
// against (envtest), built from Go modules by hack/k8s-bin/build.sh. Tests
// fail, never skip, when the binaries are missing.
package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// K8sVersion is the kube-apiserver version the binaries are built at.
const K8sVersion = "v1.37.1"

// AssetsDir returns the directory holding kube-apiserver and etcd:
// KUBEBUILDER_ASSETS when set, else the per-user cache the Makefile fills.
func AssetsDir() (string, error) {
	dir := os.Getenv("KUBEBUILDER_ASSETS")
	if dir == "" {
		base := os.Getenv("IMPUSH_CACHE")
		if base == "" {
			cache, err := os.UserCacheDir()
			if err != nil {
				return "", err
			}
			base = filepath.Join(cache, "im-push-operator")
		}
		dir = filepath.Join(base, "k8s", K8sVersion)
	}
	for _, bin := range []string{"kube-apiserver", "etcd"} {
		if _, err := os.Stat(filepath.Join(dir, bin)); err != nil {
			return "", fmt.Errorf("%s not found in %s: run `make k8s-bin` (or `make test`, which builds it): %w", bin, dir, err)
		}
	}
	return dir, nil
}

// RepoRoot returns the repository root (for CRD paths), from this file's location.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// CRDDir is where the generated CRDs live.
func CRDDir() string { return filepath.Join(RepoRoot(), "config", "crd", "bases") }

// Environment returns an envtest environment using the built binaries and,
// when withCRDs, the project's CRDs (a missing CRD directory is an error).
func Environment(withCRDs bool) (*envtest.Environment, error) {
	dir, err := AssetsDir()
	if err != nil {
		return nil, err
	}
	env := &envtest.Environment{BinaryAssetsDirectory: dir}
	if withCRDs {
		env.CRDDirectoryPaths = []string{CRDDir()}
		env.ErrorIfCRDPathMissing = true
	}
	return env, nil
}

// Start starts an environment and returns it with its rest config.
func Start(withCRDs bool) (*envtest.Environment, *rest.Config, error) {
	env, err := Environment(withCRDs)
	if err != nil {
		return nil, nil, err
	}
	cfg, err := env.Start()
	if err != nil {
		return nil, nil, fmt.Errorf("starting kube-apiserver and etcd: %w", err)
	}
	return env, cfg, nil
}
