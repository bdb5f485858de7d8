// Package install tests what a user installs: the generated manifests are up
// to date, `kustomize build config/default` is accepted by a real API server,
// the samples apply, and the CRDs' validation rejects bad objects with a
// message naming the field.
package install

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	"github.com/imcloud/im-push-operator/internal/testenv"
)

const fieldManager = "install-test"

// repoRoot is the repository the manifests are read from.
var repoRoot = testenv.RepoRoot()

// The API server is started on first use, so the tests that need none
// (manifests, prometheus) do not wait for it, and stopped by TestMain.
var (
	clusterOnce sync.Once
	clusterEnv  *envtest.Environment
	clusterC    *cluster
	clusterErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if clusterEnv != nil {
		if err := clusterEnv.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping kube-apiserver and etcd:", err)
		}
	}
	os.Exit(code)
}

// cluster is a real kube-apiserver with a dynamic client and a RESTMapper
// that can be refreshed once CRDs are installed.
type cluster struct {
	dyn    dynamic.Interface
	mapper *restmapper.DeferredDiscoveryRESTMapper

	crdsOnce sync.Once
	crdsErr  error
}

func getCluster(t *testing.T) *cluster {
	t.Helper()
	clusterOnce.Do(func() {
		var cfg *rest.Config
		clusterEnv, cfg, clusterErr = testenv.Start(false)
		if clusterErr != nil {
			return
		}
		c := &cluster{}
		if c.dyn, clusterErr = dynamic.NewForConfig(cfg); clusterErr != nil {
			return
		}
		disc, err := discovery.NewDiscoveryClientForConfig(cfg)
		if err != nil {
			clusterErr = err
			return
		}
		c.mapper = restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(disc))
		clusterC = c
	})
	if clusterErr != nil {
		t.Fatal(clusterErr)
	}
	return clusterC
}

// installCRDs applies `kustomize build config/crd` once per test binary and
// waits until the CRDs are served.
func (c *cluster) installCRDs(t *testing.T) {
	t.Helper()
	c.crdsOnce.Do(func() {
		objs, err := build(kustomizeBin(t), "config/crd")
		if err != nil {
			c.crdsErr = err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		c.crdsErr = c.applyCRDs(ctx, objs)
	})
	if c.crdsErr != nil {
		t.Fatalf("installing CRDs: %v", c.crdsErr)
	}
}

// applyCRDs applies the CustomResourceDefinitions among objs for real, waits
// for each to be Established and refreshes the RESTMapper.
func (c *cluster) applyCRDs(ctx context.Context, objs []*unstructured.Unstructured) error {
	var names []string
	for _, o := range objs {
		if o.GetKind() != "CustomResourceDefinition" {
			continue
		}
		if err := c.apply(ctx, o, "", false); err != nil {
			return err
		}
		names = append(names, o.GetName())
	}
	if len(names) == 0 {
		return errors.New("no CustomResourceDefinition found")
	}
	crds := c.dyn.Resource(schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"})
	for _, name := range names {
		err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			crd, err := crds.Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			conds, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
			for _, cond := range conds {
				m, _ := cond.(map[string]any)
				if m["type"] == "Established" && m["status"] == "True" {
					return true, nil
				}
			}
			return false, nil
		})
		if err != nil {
			return fmt.Errorf("CRD %s not Established: %w", name, err)
		}
	}
	c.mapper.Reset()
	return nil
}

// apply server-side applies obj (into namespace ns when obj is namespaced
// and names none), optionally as a dry run.
func (c *cluster) apply(ctx context.Context, obj *unstructured.Unstructured, ns string, dryRun bool) error {
	_, err := c.applyObj(ctx, obj, ns, dryRun)
	return err
}

func (c *cluster) applyObj(ctx context.Context, obj *unstructured.Unstructured, ns string, dryRun bool) (*unstructured.Unstructured, error) {
	ri, err := c.resource(obj, ns)
	if err != nil {
		return nil, err
	}
	opts := metav1.ApplyOptions{FieldManager: fieldManager, Force: true}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	out, err := ri.Apply(ctx, obj.GetName(), obj, opts)
	if err != nil {
		return nil, fmt.Errorf("applying %s: %w", describe(obj), err)
	}
	return out, nil
}

// resource maps obj to its REST resource, scoped to its namespace (or ns).
func (c *cluster) resource(obj *unstructured.Unstructured, ns string) (dynamic.ResourceInterface, error) {
	gvk := obj.GroupVersionKind()
	m, err := c.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return nil, fmt.Errorf("%s: kind unknown to the API server: %w", describe(obj), err)
	}
	if m.Scope.Name() != meta.RESTScopeNameNamespace {
		return c.dyn.Resource(m.Resource), nil
	}
	if obj.GetNamespace() != "" {
		ns = obj.GetNamespace()
	}
	if ns == "" {
		return nil, fmt.Errorf("%s: namespaced object without a namespace", describe(obj))
	}
	return c.dyn.Resource(m.Resource).Namespace(ns), nil
}

// createNamespace applies a namespace for real.
func (c *cluster) createNamespace(t *testing.T, name string) {
	t.Helper()
	ns := &unstructured.Unstructured{}
	ns.SetAPIVersion("v1")
	ns.SetKind("Namespace")
	ns.SetName(name)
	if err := c.apply(context.Background(), ns, "", false); err != nil {
		t.Fatal(err)
	}
}

func describe(obj *unstructured.Unstructured) string {
	name := obj.GetName()
	if obj.GetNamespace() != "" {
		name = obj.GetNamespace() + "/" + name
	}
	return obj.GetKind() + " " + name
}

// toolPath finds a pinned tool: the path in envVar (the Makefile sets it),
// else bin/<name>-<version> with the version pinned by the Makefile's
// versionVar. Missing both is a failure: `make test` installs the tools.
func toolPath(t *testing.T, envVar, name, versionVar string) string {
	t.Helper()
	if p := os.Getenv(envVar); p != "" {
		return p
	}
	mk, err := os.ReadFile(filepath.Join(repoRoot, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^` + versionVar + `\s*\?=\s*(\S+)`).FindSubmatch(mk)
	if m == nil {
		t.Fatalf("%s not found in the Makefile", versionVar)
	}
	p := filepath.Join(repoRoot, "bin", name+"-"+string(m[1]))
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s is not set and %s does not exist: run the tests with `make test`, which installs it", envVar, p)
	}
	return p
}

func kustomizeBin(t *testing.T) string {
	return toolPath(t, "KUSTOMIZE", "kustomize", "KUSTOMIZE_VERSION")
}

func controllerGenBin(t *testing.T) string {
	return toolPath(t, "CONTROLLER_GEN", "controller-gen", "CONTROLLER_TOOLS_VERSION")
}

// run runs a command in dir and returns its standard output.
func run(dir, name string, args ...string) ([]byte, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s %s: %w\n%s", filepath.Base(name), strings.Join(args, " "), err, stderr.String())
	}
	return stdout.Bytes(), nil
}

// build runs `kustomize build dir` (relative to the repository) and parses
// the output.
func build(kustomize, dir string) ([]*unstructured.Unstructured, error) {
	out, err := run(repoRoot, kustomize, "build", dir)
	if err != nil {
		return nil, err
	}
	objs, err := parseYAML(out)
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w", dir, err)
	}
	return objs, nil
}

func mustBuild(t *testing.T, dir string) []*unstructured.Unstructured {
	t.Helper()
	objs, err := build(kustomizeBin(t), dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) == 0 {
		t.Fatalf("kustomize build %s produced no objects", dir)
	}
	return objs
}

// parseYAML splits a multi-document YAML stream into objects; every document
// must have apiVersion, kind and a name.
func parseYAML(data []byte) ([]*unstructured.Unstructured, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var objs []*unstructured.Unstructured
	for i := 0; ; i++ {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, err
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		m := map[string]any{}
		if err := yaml.Unmarshal(doc, &m); err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		if len(m) == 0 {
			continue
		}
		obj := &unstructured.Unstructured{Object: m}
		if obj.GetAPIVersion() == "" || obj.GetKind() == "" || obj.GetName() == "" {
			return nil, fmt.Errorf("document %d lacks apiVersion, kind or metadata.name", i)
		}
		objs = append(objs, obj)
	}
}

func mustParse(t *testing.T, doc string) *unstructured.Unstructured {
	t.Helper()
	objs, err := parseYAML([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 1 {
		t.Fatalf("want one object, got %d", len(objs))
	}
	return objs[0]
}

// find returns the object of that kind and name, failing when there is none.
func find(t *testing.T, objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	t.Helper()
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	t.Fatalf("no %s %q in the build output", kind, name)
	return nil
}
