package install

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// TestManifestsUpToDate regenerates the CRDs, the manager's ClusterRole and
// the deepcopy code into temporary directories (never into the tree) and
// fails, naming each stale file, when the committed ones differ: run
// `make manifests generate` and commit the result.
func TestManifestsUpToDate(t *testing.T) {
	gen := controllerGenBin(t)

	t.Run("crd and rbac", func(t *testing.T) {
		out := t.TempDir()
		crdOut, rbacOut := filepath.Join(out, "crd"), filepath.Join(out, "rbac")
		// The same generators and paths as `make manifests`.
		if _, err := run(repoRoot, gen, "rbac:roleName=manager-role", "crd",
			"paths=./api/...", "paths=./controllers/...",
			"output:crd:artifacts:config="+crdOut, "output:rbac:artifacts:config="+rbacOut); err != nil {
			t.Fatal(err)
		}

		var stale []string
		stale = append(stale, compareDirs(t, crdOut, filepath.Join(repoRoot, "config", "crd", "bases"), "config/crd/bases")...)

		committedRole := filepath.Join(repoRoot, "config", "rbac", "role.yaml")
		generatedRole := filepath.Join(rbacOut, "role.yaml")
		if _, err := os.Stat(generatedRole); err == nil {
			stale = append(stale, compareFiles(t, generatedRole, committedRole, "config/rbac/role.yaml")...)
		} else {
			// No +kubebuilder:rbac markers yet: controller-gen writes no
			// role, and the committed one must then grant nothing.
			role := mustParse(t, string(readFile(t, committedRole)))
			rules, _ := role.Object["rules"].([]any)
			if role.GetKind() != "ClusterRole" || role.GetName() != "manager-role" || len(rules) != 0 {
				stale = append(stale, "config/rbac/role.yaml: controller-gen generates no role (no RBAC markers), but the committed one is not an empty ClusterRole manager-role")
			}
		}
		if len(stale) > 0 {
			t.Errorf("generated manifests are stale; run `make manifests` and commit:\n%s", strings.Join(stale, "\n"))
		}
	})

	t.Run("deepcopy", func(t *testing.T) {
		// controller-gen object writes next to the types, so it runs on a copy
		// of the module's API packages.
		tmp := t.TempDir()
		for _, p := range []string{"go.mod", "go.sum", "hack/boilerplate.go.txt", "api"} {
			copyTree(t, filepath.Join(repoRoot, p), filepath.Join(tmp, p))
		}
		// The same generator as `make generate`.
		if _, err := run(tmp, gen, `object:headerFile=hack/boilerplate.go.txt`, "paths=./api/..."); err != nil {
			t.Fatal(err)
		}
		var stale []string
		err := filepath.WalkDir(filepath.Join(tmp, "api"), func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || d.Name() != "zz_generated.deepcopy.go" {
				return err
			}
			rel, _ := filepath.Rel(tmp, p)
			stale = append(stale, compareFiles(t, p, filepath.Join(repoRoot, rel), filepath.ToSlash(rel))...)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(stale) > 0 {
			t.Errorf("generated deepcopy code is stale; run `make generate` and commit:\n%s", strings.Join(stale, "\n"))
		}
	})
}

// compareDirs compares the YAML files of a generated directory with the
// committed one, both ways.
func compareDirs(t *testing.T, generated, committed, label string) []string {
	t.Helper()
	gen, com := yamlFiles(t, generated), yamlFiles(t, committed)
	var stale []string
	for name := range gen {
		if !com[name] {
			stale = append(stale, fmt.Sprintf("%s/%s: generated but not committed", label, name))
			continue
		}
		stale = append(stale, compareFiles(t, filepath.Join(generated, name), filepath.Join(committed, name), label+"/"+name)...)
	}
	for name := range com {
		if !gen[name] {
			stale = append(stale, fmt.Sprintf("%s/%s: committed but no longer generated", label, name))
		}
	}
	sort.Strings(stale)
	return stale
}

func yamlFiles(t *testing.T, dir string) map[string]bool {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]bool{}
	for _, e := range entries {
		if !e.IsDir() && strings.HasSuffix(e.Name(), ".yaml") {
			files[e.Name()] = true
		}
	}
	return files
}

// compareFiles returns a one-line summary of how committed differs from
// generated, or nothing when they are byte-for-byte equal.
func compareFiles(t *testing.T, generated, committed, label string) []string {
	t.Helper()
	g := readFile(t, generated)
	c, err := os.ReadFile(committed)
	if err != nil {
		return []string{fmt.Sprintf("%s: %v", label, err)}
	}
	if bytes.Equal(g, c) {
		return nil
	}
	return []string{label + ": " + diffSummary(g, c)}
}

// diffSummary names the first line where the committed file departs from the
// generated one.
func diffSummary(generated, committed []byte) string {
	gl := strings.Split(string(generated), "\n")
	cl := strings.Split(string(committed), "\n")
	for i := 0; i < len(gl) || i < len(cl); i++ {
		var g, c string
		if i < len(gl) {
			g = gl[i]
		}
		if i < len(cl) {
			c = cl[i]
		}
		if g != c || i >= len(gl) || i >= len(cl) {
			return fmt.Sprintf("differs from line %d (generated %d lines, committed %d): generated %q, committed %q",
				i+1, len(gl), len(cl), g, c)
		}
	}
	return "differs"
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// copyTree copies a file or a directory tree.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}
