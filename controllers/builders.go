package controllers

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	pushv1 "github.com/imcloud/im-push-operator/api/v1alpha1"
	"github.com/imcloud/im-push-operator/dispatcher/config"
)

// Everything in this file is pure: it builds the desired objects of a tenant
// from the tenant and what was resolved for it, with no client calls, so the
// output is covered by golden files (testdata/golden).

const (
	// DispatcherPort is the dispatcher's HTTP port (API, probes, metrics).
	DispatcherPort = 8080
	// AnnotationRestartHash covers only what needs a pod restart.
	AnnotationRestartHash = "push.imcloud.io/restart-hash"
	// EnvNamespace and EnvConfigSecret tell the dispatcher where its config is.
	EnvNamespace    = "IMPUSH_NAMESPACE"
	EnvConfigSecret = "IMPUSH_CONFIG_SECRET"
	EnvPodName      = "IMPUSH_POD_NAME"
	// EnvMemoryRequest is the container's memory request in bytes (downward
	// API); the dispatcher keeps its heap under it (see its main.go).
	EnvMemoryRequest = "IMPUSH_MEMORY_REQUEST"
	// terminationGrace must exceed the dispatcher's drain timeout.
	terminationGrace = 30
	drainTimeout     = "25s"
)

// DispatcherName names the tenant's SA, Role, RoleBinding, Deployment,
// Service, PDB and NetworkPolicy.
func DispatcherName(t *pushv1.AppTenant) string { return t.Name + "-dispatcher" }

// Labels are the labels of every object of a tenant and its pods' selector.
func Labels(t *pushv1.AppTenant) map[string]string {
	return map[string]string{
		"app.kubernetes.io/name":       "im-push-dispatcher",
		"app.kubernetes.io/instance":   t.Name,
		"app.kubernetes.io/managed-by": "im-push-operator",
		pushv1.LabelTenant:             t.Name,
	}
}

func selectorLabels(t *pushv1.AppTenant) map[string]string {
	return map[string]string{"app.kubernetes.io/name": "im-push-dispatcher", pushv1.LabelTenant: t.Name}
}

func objectMeta(t *pushv1.AppTenant, name string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: name, Namespace: t.Namespace, Labels: Labels(t)}
}

// Replicas returns the tenant's dispatcher replica count.
func Replicas(t *pushv1.AppTenant) int32 { return ptr.Deref(t.Spec.Dispatcher.Replicas, 2) }

// Shards returns the tenant's shard count.
func Shards(t *pushv1.AppTenant) int32 { return ptr.Deref(t.Spec.TokenStore.Shards, 16) }

// TokenStoreConfig is the store section of the dispatcher config.
func TokenStoreConfig(t *pushv1.AppTenant) config.TokenStore {
	ts := t.Spec.TokenStore
	budget := ts.WriteBudgetBytesPerSecond
	if budget == 0 {
		budget = 1 << 20
	}
	return config.TokenStore{
		Shards:                    Shards(t),
		ShardPrefix:               config.ShardPrefix(t.Name),
		MaxDevicesPerUser:         orInt32(ts.MaxDevicesPerUser, config.DefaultMaxDevicesPerUser),
		MaxShardBytes:             orInt64(ts.MaxShardBytes, config.DefaultMaxShardBytes),
		WriteBudgetBytesPerSecond: int64(math.Ceil(float64(budget) / float64(Replicas(t)))),
	}
}

// RenderConfig builds the dispatcher config from usable certificates and the
// policy. Rate limits are tenant-wide in the PushPolicy and divided by the
// replica count here, so every replica enforces its share.
func RenderConfig(t *pushv1.AppTenant, certs []config.Certificate, policy config.Policy, limits []pushv1.RateLimit) config.Config {
	replicas := Replicas(t)
	byName := map[string]pushv1.RateLimit{}
	for _, l := range limits {
		byName[l.CertificateName] = l
	}
	out := make([]config.Certificate, len(certs))
	for i, c := range certs {
		if l, ok := byName[c.Name]; ok {
			c.RateLimit = float64(l.PerSecond) / float64(replicas)
			c.DailyCap = l.DailyCap
		}
		out[i] = c
	}
	return config.Config{
		Version:        config.Version,
		Tenant:         t.Name,
		Namespace:      t.Namespace,
		AppKey:         t.Spec.AppKey,
		Replicas:       replicas,
		Certificates:   out,
		Policy:         policy,
		TokenStore:     TokenStoreConfig(t),
		AuthSecretName: config.AuthSecretName(t.Name),
	}
}

// ConfigSecret holds the rendered config document.
func ConfigSecret(t *pushv1.AppTenant, doc []byte) *corev1.Secret {
	return &corev1.Secret{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: objectMeta(t, config.ConfigSecretName(t.Name)),
		Type:       corev1.SecretTypeOpaque,
		Data:       map[string][]byte{config.SecretKey: doc},
	}
}

// AuthSecret holds the API bearer token; created once, never rewritten.
func AuthSecret(t *pushv1.AppTenant, token []byte) *corev1.Secret {
	return &corev1.Secret{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: objectMeta(t, config.AuthSecretName(t.Name)),
		Type:       corev1.SecretTypeOpaque,
		Data:       map[string][]byte{config.AuthTokenKey: token},
	}
}

// ShardSecret is an empty shard, pre-created for the dispatcher to fill. It
// has no owner reference so it can outlive the tenant (retainOnDelete).
func ShardSecret(t *pushv1.AppTenant, i int) *corev1.Secret {
	meta := objectMeta(t, TokenStoreConfig(t).ShardName(i))
	meta.Annotations = map[string]string{pushv1.AnnotationFillBytes: "0"}
	return &corev1.Secret{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: meta,
		Type:       pushv1.SecretTypeDeviceTokens,
	}
}

// ServiceAccount is the dispatcher's identity.
func ServiceAccount(t *pushv1.AppTenant) *corev1.ServiceAccount {
	return &corev1.ServiceAccount{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ServiceAccount"},
		ObjectMeta: objectMeta(t, DispatcherName(t)),
	}
}

// Role lets the dispatcher touch only its own Secrets, by name: its shards
// (read and update) and its config and API-token Secrets (read). List and
// watch are granted by name too; the API server honours resourceNames for
// them when the request selects metadata.name.
func Role(t *pushv1.AppTenant) *rbacv1.Role {
	return &rbacv1.Role{
		TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "Role"},
		ObjectMeta: objectMeta(t, DispatcherName(t)),
		Rules: []rbacv1.PolicyRule{
			{
				APIGroups:     []string{""},
				Resources:     []string{"secrets"},
				ResourceNames: TokenStoreConfig(t).ShardNames(),
				Verbs:         []string{"get", "list", "watch", "update"},
			},
			{
				APIGroups:     []string{""},
				Resources:     []string{"secrets"},
				ResourceNames: []string{config.ConfigSecretName(t.Name), config.AuthSecretName(t.Name)},
				Verbs:         []string{"get", "list", "watch"},
			},
		},
	}
}

// RoleBinding binds Role to the ServiceAccount.
func RoleBinding(t *pushv1.AppTenant) *rbacv1.RoleBinding {
	return &rbacv1.RoleBinding{
		TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "RoleBinding"},
		ObjectMeta: objectMeta(t, DispatcherName(t)),
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: DispatcherName(t)},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: DispatcherName(t), Namespace: t.Namespace}},
	}
}

// Image returns the dispatcher image: the tenant's override or the default.
func Image(t *pushv1.AppTenant, defaultImage string) string {
	if t.Spec.Dispatcher.Image != "" {
		return t.Spec.Dispatcher.Image
	}
	return defaultImage
}

func resources(t *pushv1.AppTenant) corev1.ResourceRequirements {
	if r := t.Spec.Dispatcher.Resources; r != nil {
		return *r
	}
	return corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("128Mi")},
		Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")},
	}
}

// DispatcherContainer is the dispatcher container; the restart hash is taken
// over it (image, args, env, resources) and nothing else: credentials and
// policy reach the pods through the watched config Secret without a restart.
func DispatcherContainer(t *pushv1.AppTenant, image string) corev1.Container {
	probe := func(path string, period int32) *corev1.Probe {
		return &corev1.Probe{
			ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: path, Port: intstr.FromString("http")}},
			PeriodSeconds: period, TimeoutSeconds: 2, FailureThreshold: 3,
		}
	}
	return corev1.Container{
		Name:  "dispatcher",
		Image: Image(t, image),
		Args:  []string{"--listen=:" + strconv.Itoa(DispatcherPort), "--drain-timeout=" + drainTimeout},
		Env: []corev1.EnvVar{
			{Name: EnvNamespace, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
			{Name: EnvPodName, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
			{Name: EnvConfigSecret, Value: config.ConfigSecretName(t.Name)},
			{Name: EnvMemoryRequest, ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{ContainerName: "dispatcher", Resource: "requests.memory", Divisor: resource.MustParse("1")}}},
		},
		Ports:          []corev1.ContainerPort{{Name: "http", ContainerPort: DispatcherPort, Protocol: corev1.ProtocolTCP}},
		Resources:      resources(t),
		LivenessProbe:  probe("/healthz", 10),
		ReadinessProbe: probe("/readyz", 5),
		SecurityContext: &corev1.SecurityContext{
			AllowPrivilegeEscalation: ptr.To(false),
			ReadOnlyRootFilesystem:   ptr.To(true),
			RunAsNonRoot:             ptr.To(true),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
	}
}

// RestartHash hashes what a pod restart is needed for.
func RestartHash(c corev1.Container) string {
	b, _ := json.Marshal(struct {
		Image     string
		Args      []string
		Env       []corev1.EnvVar
		Resources corev1.ResourceRequirements
	}{c.Image, c.Args, c.Env, c.Resources})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// Deployment runs the dispatcher replicas.
func Deployment(t *pushv1.AppTenant, image string) *appsv1.Deployment {
	c := DispatcherContainer(t, image)
	return &appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: objectMeta(t, DispatcherName(t)),
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(Replicas(t)),
			Selector: &metav1.LabelSelector{MatchLabels: selectorLabels(t)},
			Strategy: appsv1.DeploymentStrategy{
				Type: appsv1.RollingUpdateDeploymentStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDeployment{
					MaxUnavailable: ptr.To(intstr.FromInt32(0)),
					MaxSurge:       ptr.To(intstr.FromInt32(1)),
				},
			},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{
					Labels:      Labels(t),
					Annotations: map[string]string{AnnotationRestartHash: RestartHash(c)},
				},
				Spec: corev1.PodSpec{
					ServiceAccountName:            DispatcherName(t),
					AutomountServiceAccountToken:  ptr.To(true),
					TerminationGracePeriodSeconds: ptr.To(int64(terminationGrace)),
					SecurityContext: &corev1.PodSecurityContext{
						RunAsNonRoot:   ptr.To(true),
						RunAsUser:      ptr.To(int64(65532)),
						RunAsGroup:     ptr.To(int64(65532)),
						SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
					},
					Containers: []corev1.Container{c},
				},
			},
		},
	}
}

// Service exposes the dispatcher API.
func Service(t *pushv1.AppTenant) *corev1.Service {
	return &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: objectMeta(t, DispatcherName(t)),
		Spec: corev1.ServiceSpec{
			Selector: selectorLabels(t),
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http"), Protocol: corev1.ProtocolTCP}},
		},
	}
}

// Endpoint is the in-cluster URL of the dispatcher API.
func Endpoint(t *pushv1.AppTenant) string {
	return fmt.Sprintf("http://%s.%s.svc", DispatcherName(t), t.Namespace)
}

// PodDisruptionBudget keeps all but one replica up during voluntary
// disruptions; nil when there is a single replica (a PDB would block drains).
func PodDisruptionBudget(t *pushv1.AppTenant) *policyv1.PodDisruptionBudget {
	if Replicas(t) <= 1 {
		return nil
	}
	return &policyv1.PodDisruptionBudget{
		TypeMeta:   metav1.TypeMeta{APIVersion: "policy/v1", Kind: "PodDisruptionBudget"},
		ObjectMeta: objectMeta(t, DispatcherName(t)),
		Spec: policyv1.PodDisruptionBudgetSpec{
			MaxUnavailable: ptr.To(intstr.FromInt32(1)),
			Selector:       &metav1.LabelSelector{MatchLabels: selectorLabels(t)},
		},
	}
}

// NetworkPolicy admits API traffic only from allowedClients (or, when none
// are listed, from pods of the tenant's namespace). Egress stays open: the
// providers are on the internet.
func NetworkPolicy(t *pushv1.AppTenant) *networkingv1.NetworkPolicy {
	var peers []networkingv1.NetworkPolicyPeer
	for _, c := range t.Spec.Dispatcher.AllowedClients {
		peers = append(peers, networkingv1.NetworkPolicyPeer{NamespaceSelector: c.NamespaceSelector, PodSelector: c.PodSelector})
	}
	if len(peers) == 0 {
		peers = []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{}}}
	}
	port := intstr.FromInt32(DispatcherPort)
	return &networkingv1.NetworkPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"},
		ObjectMeta: objectMeta(t, DispatcherName(t)),
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: selectorLabels(t)},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From:  peers,
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: ptr.To(corev1.ProtocolTCP), Port: &port}},
			}},
		},
	}
}

func orInt32(v, def int32) int32 {
	if v == 0 {
		return def
	}
	return v
}

func orInt64(v, def int64) int64 {
	if v == 0 {
		return def
	}
	return v
}
