package install

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

const operatorNamespace = "im-push-system"

// TestDefaultInstall installs what `kubectl apply -k config/default` would:
// the namespace and the CRDs for real, then every other object as a
// server-side dry run, which runs the API server's full validation and
// admission without needing the image to exist.
func TestDefaultInstall(t *testing.T) {
	objs := mustBuild(t, "config/default")
	c := getCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// What the operator needs, by kind and name after namePrefix.
	for _, want := range [][2]string{
		{"Namespace", operatorNamespace},
		{"CustomResourceDefinition", "pushcertificates.push.imcloud.io"},
		{"CustomResourceDefinition", "pushpolicies.push.imcloud.io"},
		{"CustomResourceDefinition", "apptenants.push.imcloud.io"},
		{"ServiceAccount", "im-push-controller-manager"},
		{"ClusterRole", "im-push-manager-role"},
		{"ClusterRoleBinding", "im-push-manager-rolebinding"},
		{"Role", "im-push-leader-election-role"},
		{"RoleBinding", "im-push-leader-election-rolebinding"},
		{"ClusterRole", "im-push-metrics-auth-role"},
		{"ClusterRoleBinding", "im-push-metrics-auth-rolebinding"},
		{"ClusterRole", "im-push-metrics-reader"},
		{"Service", "im-push-controller-manager-metrics-service"},
		{"Deployment", "im-push-controller-manager"},
	} {
		find(t, objs, want[0], want[1])
	}

	for _, o := range objs {
		if o.GetKind() == "Namespace" {
			if err := c.apply(ctx, o, "", false); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := c.applyCRDs(ctx, objs); err != nil {
		t.Fatal(err)
	}

	checked := 0
	for _, o := range objs {
		if o.GetKind() == "Namespace" || o.GetKind() == "CustomResourceDefinition" {
			continue
		}
		// Namespaced objects must land in the operator's namespace, not in
		// whatever namespace kubectl happens to default to.
		if _, err := c.resource(o, ""); err != nil {
			t.Errorf("could not check %s: %v", describe(o), err)
			continue
		}
		if ns := o.GetNamespace(); ns != "" && ns != operatorNamespace {
			t.Errorf("%s is in namespace %q, want %q", describe(o), ns, operatorNamespace)
		}
		if err := c.apply(ctx, o, "", true); err != nil {
			t.Errorf("API server rejected: %v", err)
			continue
		}
		checked++
	}
	t.Logf("dry-run applied %d objects", checked)

	t.Run("bindings name the manager's ServiceAccount", func(t *testing.T) {
		for _, o := range objs {
			if o.GetKind() != "ClusterRoleBinding" && o.GetKind() != "RoleBinding" {
				continue
			}
			subjects, _, _ := unstructured.NestedSlice(o.Object, "subjects")
			for _, s := range subjects {
				m := s.(map[string]any)
				if m["name"] != "im-push-controller-manager" || m["namespace"] != operatorNamespace {
					t.Errorf("%s binds %v/%v, want %s/im-push-controller-manager", describe(o), m["namespace"], m["name"], operatorNamespace)
				}
			}
		}
	})

	t.Run("manager deployment", func(t *testing.T) {
		dep := find(t, objs, "Deployment", "im-push-controller-manager")
		containers, _, _ := unstructured.NestedSlice(dep.Object, "spec", "template", "spec", "containers")
		if len(containers) != 1 {
			t.Fatalf("want one container, got %d", len(containers))
		}
		ctr := containers[0].(map[string]any)
		image, _ := ctr["image"].(string)
		if image != "controller:latest" {
			t.Errorf("image %q, want controller:latest (set by `make deploy` through kustomize images)", image)
		}
		args := strings.Join(toStrings(ctr["args"]), " ")
		for _, flag := range []string{"--leader-elect", "--health-probe-bind-address=:8081", "--metrics-bind-address=:8443",
			"--dispatcher-image=$(DISPATCHER_IMAGE)", "--kube-api-qps=", "--kube-api-burst="} {
			if !strings.Contains(args, flag) {
				t.Errorf("args %q lack %s", args, flag)
			}
		}
		// The dispatcher runs from the same image as the manager.
		envs, _ := ctr["env"].([]any)
		found := false
		for _, e := range envs {
			m := e.(map[string]any)
			if m["name"] == "DISPATCHER_IMAGE" {
				found = true
				if m["value"] != image {
					t.Errorf("DISPATCHER_IMAGE %v, want the manager's image %q", m["value"], image)
				}
			}
		}
		if !found {
			t.Error("no DISPATCHER_IMAGE env")
		}
		sc, _, _ := unstructured.NestedMap(ctr, "securityContext")
		if sc["readOnlyRootFilesystem"] != true || sc["allowPrivilegeEscalation"] != false ||
			!slices.Equal(toStrings(mustNested(t, sc, "capabilities", "drop")), []string{"ALL"}) {
			t.Errorf("container securityContext %v: want read-only root, no privilege escalation, drop ALL", sc)
		}
		podSC, _, _ := unstructured.NestedMap(dep.Object, "spec", "template", "spec", "securityContext")
		if podSC["runAsNonRoot"] != true || fmt.Sprint(mustNested(t, podSC, "seccompProfile", "type")) != "RuntimeDefault" {
			t.Errorf("pod securityContext %v: want runAsNonRoot and seccomp RuntimeDefault", podSC)
		}
		for probe, path := range map[string]string{"livenessProbe": "/healthz", "readinessProbe": "/readyz"} {
			got, _, _ := unstructured.NestedString(ctr, probe, "httpGet", "path")
			port, _, _ := unstructured.NestedFieldNoCopy(ctr, probe, "httpGet", "port")
			if got != path || fmt.Sprint(port) != "8081" {
				t.Errorf("%s on %v%s, want 8081%s", probe, port, got, path)
			}
		}
	})
}

// TestSamplesApply applies config/samples for real into a namespace of its
// own and reads every object back.
func TestSamplesApply(t *testing.T) {
	objs := mustBuild(t, "config/samples")
	c := getCluster(t)
	c.installCRDs(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	const ns = "samples"
	c.createNamespace(t, ns)
	kinds := map[string]int{}
	for _, o := range objs {
		if o.GetNamespace() != "" {
			t.Errorf("%s names a namespace; samples are applied with -n", describe(o))
		}
		out, err := c.applyObj(ctx, o, ns, false)
		if err != nil {
			t.Errorf("API server rejected sample: %v", err)
			continue
		}
		if out.GetNamespace() != ns || out.GetUID() == "" {
			t.Errorf("%s was not stored in %s", describe(o), ns)
		}
		kinds[o.GetKind()]++
	}
	want := map[string]int{"Secret": 3, "PushCertificate": 3, "PushPolicy": 1, "AppTenant": 1}
	for k, n := range want {
		if kinds[k] != n {
			t.Errorf("applied %d %s samples, want %d", kinds[k], k, n)
		}
	}

	// The AppTenant names the certificates and policy the samples define.
	tenant := find(t, objs, "AppTenant", "chat-app")
	certs, _, _ := unstructured.NestedStringSlice(tenant.Object, "spec", "certificates")
	for _, name := range certs {
		find(t, objs, "PushCertificate", name)
	}
	policy, _, _ := unstructured.NestedString(tenant.Object, "spec", "policyRef", "name")
	find(t, objs, "PushPolicy", policy)
	for _, o := range objs {
		if o.GetKind() == "PushCertificate" {
			secret, _, _ := unstructured.NestedString(o.Object, "spec", "secretRef", "name")
			find(t, objs, "Secret", secret)
		}
	}
}

// TestPrometheusManifests checks config/prometheus builds and is consistent
// with config/default. The Prometheus Operator's CRDs (ServiceMonitor,
// PodMonitor, PrometheusRule) are not installed here, so the API server cannot
// check these objects; their structure is checked instead.
func TestPrometheusManifests(t *testing.T) {
	objs := mustBuild(t, "config/prometheus")
	def := mustBuild(t, "config/default")

	sm := find(t, objs, "ServiceMonitor", "im-push-controller-manager-metrics-monitor")
	svc := find(t, def, "Service", "im-push-controller-manager-metrics-service")
	if sm.GetNamespace() != svc.GetNamespace() {
		t.Errorf("ServiceMonitor in %q, metrics Service in %q", sm.GetNamespace(), svc.GetNamespace())
	}
	sel, _, _ := unstructured.NestedStringMap(sm.Object, "spec", "selector", "matchLabels")
	if len(sel) == 0 {
		t.Error("ServiceMonitor selects nothing")
	}
	for k, v := range sel {
		if svc.GetLabels()[k] != v {
			t.Errorf("ServiceMonitor selects %s=%s, the metrics Service has %q", k, v, svc.GetLabels()[k])
		}
	}
	endpoints, _, _ := unstructured.NestedSlice(sm.Object, "spec", "endpoints")
	ports, _, _ := unstructured.NestedSlice(svc.Object, "spec", "ports")
	if len(endpoints) != 1 || len(ports) != 1 {
		t.Fatalf("want one endpoint and one Service port, got %d and %d", len(endpoints), len(ports))
	}
	ep, port := endpoints[0].(map[string]any), ports[0].(map[string]any)
	if ep["port"] != port["name"] || ep["scheme"] != "https" || fmt.Sprint(port["port"]) != "8443" {
		t.Errorf("ServiceMonitor endpoint %v does not scrape the Service's https port %v", ep, port)
	}

	find(t, objs, "PodMonitor", "im-push-dispatcher-monitor")

	rule := find(t, objs, "PrometheusRule", "im-push-alerts")
	groups, _, _ := unstructured.NestedSlice(rule.Object, "spec", "groups")
	alerts := map[string]string{}
	for _, g := range groups {
		rules, _, _ := unstructured.NestedSlice(g.(map[string]any), "rules")
		for _, r := range rules {
			m := r.(map[string]any)
			name, _ := m["alert"].(string)
			expr, _ := m["expr"].(string)
			severity, _, _ := unstructured.NestedString(m, "labels", "severity")
			summary, _, _ := unstructured.NestedString(m, "annotations", "summary")
			if name == "" || expr == "" || severity == "" || summary == "" {
				t.Errorf("rule %v needs alert, expr, labels.severity and annotations.summary", m)
			}
			alerts[name] = expr
		}
	}
	// The metric names the manager and the dispatcher export.
	for alert, metric := range map[string]string{
		"PushCertificateExpiringSoon":         "impush_certificate_expiry_timestamp_seconds",
		"PushCertificateExpired":              "impush_certificate_expiry_timestamp_seconds",
		"PushCertificateNotReady":             "impush_certificate_ready == 0",
		"AppTenantNotReady":                   "impush_tenant_ready == 0",
		"PushDispatcherDroppingNotifications": "rate(impush_dispatcher_notifications_dropped_total[5m]) > 0",
	} {
		if expr, ok := alerts[alert]; !ok {
			t.Errorf("no alert %s", alert)
		} else if !strings.Contains(expr, metric) {
			t.Errorf("alert %s: expr %q does not use %q", alert, expr, metric)
		}
	}
}

func toStrings(v any) []string {
	list, _ := v.([]any)
	out := make([]string, 0, len(list))
	for _, x := range list {
		out = append(out, fmt.Sprint(x))
	}
	return out
}

func mustNested(t *testing.T, m map[string]any, fields ...string) any {
	t.Helper()
	v, ok, err := unstructured.NestedFieldNoCopy(m, fields...)
	if err != nil || !ok {
		t.Errorf("%s not set in %v", strings.Join(fields, "."), m)
	}
	return v
}
