package controllers

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	pushv1 "github.com/imcloud/im-push-operator/api/v1alpha1"
	"github.com/imcloud/im-push-operator/dispatcher/config"
)

// ShardWarnFraction is the fill at which TokenStoreReady warns.
const ShardWarnFraction = 0.8

// AppTenantReconciler turns an AppTenant into its dispatcher and everything
// the dispatcher needs (DESIGN.md "Secrets and who writes what").
type AppTenantReconciler struct {
	client.Client
	// APIReader reads Secret data uncached (credentials, the last config).
	APIReader client.Reader
	// MetadataReader reads Secret metadata (shards, the API-token Secret)
	// from the manager's metadata cache; the client would send those reads to
	// the API server, as it bypasses its cache for every Secret form. The
	// client when nil.
	MetadataReader client.Reader
	// MaxConcurrentReconciles is how many tenants reconcile at once (1 when 0).
	MaxConcurrentReconciles int
	Recorder                recorder.EventRecorder
	DispatcherImage         string
	Now                     func() time.Time
}

// Reason: watch tenants; update adds and removes the shard finalizer.
// +kubebuilder:rbac:groups=push.imcloud.io,resources=apptenants,verbs=get;list;watch;update
// Reason: status is written by server-side apply (patch) once per reconcile.
// +kubebuilder:rbac:groups=push.imcloud.io,resources=apptenants/status,verbs=get;update;patch
// Reason: owner references with blockOwnerDeletion on the tenant's objects.
// +kubebuilder:rbac:groups=push.imcloud.io,resources=apptenants/finalizers,verbs=update
// Reason: create the shard and API-token Secrets, apply the config Secret, delete shards
// on tenant deletion; update because the dispatcher Role grants it on shards and RBAC
// lets no one grant what they do not hold.
// +kubebuilder:rbac:groups="",resources=secrets,verbs=create;update;patch;delete
// Reason: owned objects, applied (patch) and watched; removal is left to owner-reference GC.
// +kubebuilder:rbac:groups="",resources=serviceaccounts;services,verbs=get;list;watch;create;update;patch
// Reason: the dispatcher Deployment, applied and watched for DispatcherAvailable.
// +kubebuilder:rbac:groups=apps,resources=deployments,verbs=get;list;watch;create;update;patch
// Reason: the dispatcher's name-scoped Role and its RoleBinding, applied and watched.
// +kubebuilder:rbac:groups=rbac.authorization.k8s.io,resources=roles;rolebindings,verbs=get;list;watch;create;update;patch
// Reason: the PDB, applied; deleted when the tenant drops to one replica.
// +kubebuilder:rbac:groups=policy,resources=poddisruptionbudgets,verbs=get;list;watch;create;update;patch;delete
// Reason: the dispatcher NetworkPolicy, applied and watched.
// +kubebuilder:rbac:groups=networking.k8s.io,resources=networkpolicies,verbs=get;list;watch;create;update;patch

// Reconcile converges one tenant.
func (r *AppTenantReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	t := &pushv1.AppTenant{}
	if err := r.Get(ctx, req.NamespacedName, t); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !t.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, r.finalize(ctx, t)
	}
	if !controllerutil.ContainsFinalizer(t, pushv1.Finalizer) {
		controllerutil.AddFinalizer(t, pushv1.Finalizer)
		if err := r.Update(ctx, t); err != nil {
			return ctrl.Result{}, err
		}
	}

	old := t.Status.DeepCopy()
	status, err := r.converge(ctx, t)
	if err != nil {
		return ctrl.Result{}, err
	}
	if err := applyStatus(ctx, r.Client, t, old, status); err != nil {
		return ctrl.Result{}, fmt.Errorf("writing status of AppTenant %s: %w", req.NamespacedName, err)
	}
	tenantReady.WithLabelValues(t.Namespace, t.Name, t.Spec.AppKey).Set(boolGauge(conditionReason(status.Conditions, pushv1.ConditionReady) == pushv1.ReasonReady))
	return ctrl.Result{}, nil
}

// converge applies every object and computes the status.
func (r *AppTenantReconciler) converge(ctx context.Context, t *pushv1.AppTenant) (*pushv1.AppTenantStatus, error) {
	status := t.Status.DeepCopy()
	status.ObservedGeneration = t.Generation
	status.AppKey = t.Spec.AppKey
	status.Endpoint = Endpoint(t)
	status.APITokenSecretName = config.AuthSecretName(t.Name)
	status.Replicas = Replicas(t)
	conds := conditions{list: &status.Conditions, generation: t.Generation, now: r.Now()}

	previous, configSecret, configRead := r.previousConfig(ctx, t)
	if configSecret == nil {
		return nil, configRead
	}
	certs, summaries, err := r.resolveCertificates(ctx, t, previous, conds)
	if err != nil {
		return nil, err
	}
	status.Certificates = summaries
	policy, limits, policyOK, err := r.resolvePolicy(ctx, t, conds)
	if err != nil {
		return nil, err
	}

	var (
		mu        sync.Mutex
		conflicts []string
	)
	apply := func(desired, existing client.Object) error {
		conflict, err := r.applyOwned(ctx, t, desired, existing)
		if conflict != "" {
			mu.Lock()
			conflicts = append(conflicts, conflict)
			mu.Unlock()
		}
		return err
	}
	if err := parallel(
		func() error { return apply(ServiceAccount(t), &corev1.ServiceAccount{}) },
		func() error { return apply(Role(t), &rbacv1.Role{}) },
		func() error { return apply(RoleBinding(t), &rbacv1.RoleBinding{}) },
	); err != nil {
		return nil, err
	}
	if c, err := r.ensureAuthSecret(ctx, t); err != nil {
		return nil, err
	} else if c != "" {
		conflicts = append(conflicts, c)
	}
	if err := r.reconcileShards(ctx, t, conds); err != nil {
		return nil, err
	}
	if policyOK {
		cfg := RenderConfig(t, certs, policy, limits)
		doc, err := cfg.Marshal()
		if err != nil {
			return nil, fmt.Errorf("rendering dispatcher config: %w", err)
		}
		// The full Secret read above (uncached), so its data is compared too.
		conflict, err := r.applyOver(ctx, t, ConfigSecret(t, doc), configSecret, configRead)
		if conflict != "" {
			conflicts = append(conflicts, conflict)
		}
		if err != nil {
			return nil, err
		}
		status.ConfigHash = config.Hash(doc)
	}
	if err := parallel(
		func() error { return apply(Deployment(t, r.DispatcherImage), &appsv1.Deployment{}) },
		func() error { return apply(Service(t), &corev1.Service{}) },
		func() error { return apply(NetworkPolicy(t), &networkingv1.NetworkPolicy{}) },
		func() error { return r.reconcilePDB(ctx, t, apply) },
	); err != nil {
		return nil, err
	}
	slices.Sort(conflicts) // found concurrently; a stable message writes nothing new
	if err := r.dispatcherAvailable(ctx, t, status, conds, conflicts); err != nil {
		return nil, err
	}
	summarize(status, conds)
	return status, nil
}

// parallel runs independent writes at once, so a reconcile waits for the
// slowest round trip rather than their sum; it returns all their errors.
func parallel(fns ...func() error) error {
	errs := make([]error, len(fns))
	var wg sync.WaitGroup
	for i, f := range fns {
		wg.Go(func() { errs[i] = f() })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// previousConfig reads the config the operator rendered last, if any: it
// supplies the last good credential of a certificate whose Secret changed
// and was not validated yet, or failed validation. The Secret read (and
// the read's error) is returned too, so applying the new config does not
// read it again.
func (r *AppTenantReconciler) previousConfig(ctx context.Context, t *pushv1.AppTenant) (*config.Config, *corev1.Secret, error) {
	s := &corev1.Secret{}
	err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: t.Namespace, Name: config.ConfigSecretName(t.Name)}, s)
	if apierrors.IsNotFound(err) {
		return nil, s, err
	}
	if err != nil {
		return nil, nil, fmt.Errorf("reading config Secret: %w", err)
	}
	cfg, perr := config.Parse(s.Data[config.SecretKey])
	if perr != nil {
		// An unreadable previous config only loses the last-good fallback.
		log.FromContext(ctx).Info("previous dispatcher config unreadable; rendering afresh", "error", perr.Error())
		return nil, s, nil
	}
	return cfg, s, nil
}

// resolveCertificates returns the credentials to render and the summaries,
// and sets CertificatesReady.
func (r *AppTenantReconciler) resolveCertificates(ctx context.Context, t *pushv1.AppTenant, previous *config.Config, conds conditions) ([]config.Certificate, []pushv1.CertificateSummary, error) {
	var (
		usable    []config.Certificate
		summaries []pushv1.CertificateSummary
		notFound  []string
		notReady  []string
		byCertNm  = map[string][]string{}
	)
	found := map[string]*pushv1.PushCertificate{}
	for _, name := range t.Spec.Certificates {
		pc := &pushv1.PushCertificate{}
		err := r.Get(ctx, types.NamespacedName{Namespace: t.Namespace, Name: name}, pc)
		if apierrors.IsNotFound(err) {
			notFound = append(notFound, name)
			summaries = append(summaries, pushv1.CertificateSummary{Name: name})
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		found[name] = pc
		byCertNm[pc.Spec.CertificateName] = append(byCertNm[pc.Spec.CertificateName], name)
	}
	var dupes []string
	for cn, names := range byCertNm {
		if len(names) > 1 {
			dupes = append(dupes, fmt.Sprintf("certificateName %q is used by %s", cn, strings.Join(names, " and ")))
		}
	}
	slices.Sort(dupes)

	for _, name := range t.Spec.Certificates {
		pc, ok := found[name]
		if !ok {
			continue
		}
		ready := conditionReason(pc.Status.Conditions, pushv1.ConditionReady) == pushv1.ReasonValid && pc.Status.ObservedGeneration == pc.Generation
		duplicate := len(byCertNm[pc.Spec.CertificateName]) > 1
		summary := pushv1.CertificateSummary{Name: name, CertificateName: pc.Spec.CertificateName, Provider: pc.Spec.Provider, ExpiresAt: pc.Status.ExpiresAt}
		if !ready {
			reason := conditionReason(pc.Status.Conditions, pushv1.ConditionReady)
			if reason == "" {
				reason = "NotValidatedYet"
			}
			notReady = append(notReady, fmt.Sprintf("%s (%s)", name, reason))
		}
		if !duplicate {
			cert, err := r.credential(ctx, pc, ready, previous)
			if err != nil {
				return nil, nil, err
			}
			if cert != nil {
				usable = append(usable, *cert)
			}
			summary.Ready = ready && cert != nil
		}
		summaries = append(summaries, summary)
	}

	switch {
	case len(notFound) > 0:
		conds.set(pushv1.ConditionCertificatesReady, metav1.ConditionFalse, pushv1.ReasonCertificateNotFound, "PushCertificate not found: "+strings.Join(notFound, ", "))
	case len(dupes) > 0:
		conds.set(pushv1.ConditionCertificatesReady, metav1.ConditionFalse, pushv1.ReasonDuplicateCertificate, strings.Join(dupes, "; "))
	case len(notReady) > 0:
		conds.set(pushv1.ConditionCertificatesReady, metav1.ConditionFalse, pushv1.ReasonCertificateNotReady, "PushCertificate not Ready: "+strings.Join(notReady, ", "))
	default:
		conds.set(pushv1.ConditionCertificatesReady, metav1.ConditionTrue, pushv1.ReasonReady, fmt.Sprintf("%d certificates ready", len(usable)))
	}
	return usable, summaries, nil
}

// credential returns the credential to render for a certificate: its current
// Secret data when that hashes to the validated fingerprint, else the last
// good one from the previous config (a rotation in progress, or a broken
// Secret, never stops delivery through a credential that worked), else nil.
// An expired credential is never rendered.
func (r *AppTenantReconciler) credential(ctx context.Context, pc *pushv1.PushCertificate, ready bool, previous *config.Config) (*config.Certificate, error) {
	if conditionReason(pc.Status.Conditions, pushv1.ConditionReady) == pushv1.ReasonExpired {
		return nil, nil
	}
	if ready && pc.Status.Fingerprint != "" {
		s := &corev1.Secret{}
		err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: pc.Namespace, Name: pc.Spec.SecretRef.Name}, s)
		if err != nil && !apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("reading Secret %s/%s: %w", pc.Namespace, pc.Spec.SecretRef.Name, err)
		}
		if err == nil {
			if c := CertificateConfig(pc, s.Data); c.Fingerprint == pc.Status.Fingerprint {
				return c, nil
			}
		}
	}
	if previous != nil {
		if c, ok := previous.Certificate(pc.Spec.CertificateName); ok && c.Resource == pc.Name && c.Provider == config.Provider(pc.Spec.Provider) {
			c.RateLimit, c.DailyCap = 0, 0
			return c, nil
		}
	}
	return nil, nil
}

// resolvePolicy reads the policy and sets PolicyReady.
func (r *AppTenantReconciler) resolvePolicy(ctx context.Context, t *pushv1.AppTenant, conds conditions) (config.Policy, []pushv1.RateLimit, bool, error) {
	pp := &pushv1.PushPolicy{}
	err := r.Get(ctx, types.NamespacedName{Namespace: t.Namespace, Name: t.Spec.PolicyRef.Name}, pp)
	if apierrors.IsNotFound(err) {
		conds.set(pushv1.ConditionPolicyReady, metav1.ConditionFalse, pushv1.ReasonPolicyNotFound, fmt.Sprintf("PushPolicy %q not found", t.Spec.PolicyRef.Name))
		return config.Policy{}, nil, false, nil
	}
	if err != nil {
		return config.Policy{}, nil, false, err
	}
	if conditionReason(pp.Status.Conditions, pushv1.ConditionReady) != pushv1.ReasonPolicyValid || pp.Status.ObservedGeneration != pp.Generation {
		msg := fmt.Sprintf("PushPolicy %q is not Ready", pp.Name)
		for _, c := range pp.Status.Conditions {
			if c.Type == pushv1.ConditionReady {
				msg += ": " + c.Message
			}
		}
		conds.set(pushv1.ConditionPolicyReady, metav1.ConditionFalse, pushv1.ReasonPolicyNotReady, msg)
		return config.Policy{}, nil, false, nil
	}
	conds.set(pushv1.ConditionPolicyReady, metav1.ConditionTrue, pushv1.ReasonReady, fmt.Sprintf("PushPolicy %q is Ready", pp.Name))
	return PolicyConfig(&pp.Spec), pp.Spec.Delivery.RateLimits, true, nil
}

func secretMeta() *metav1.PartialObjectMetadata {
	m := &metav1.PartialObjectMetadata{}
	m.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
	return m
}

// applyOwned applies desired with a controller reference to t, unless an
// object of that name is controlled by someone else: that one is left alone,
// with a Warning event, and named in the returned conflict.
func (r *AppTenantReconciler) applyOwned(ctx context.Context, t *pushv1.AppTenant, desired, existing client.Object) (string, error) {
	err := r.Get(ctx, client.ObjectKeyFromObject(desired), existing)
	return r.applyOver(ctx, t, desired, existing, err)
}

// applyOver is applyOwned with existing already read; readErr is the read's.
func (r *AppTenantReconciler) applyOver(ctx context.Context, t *pushv1.AppTenant, desired, existing client.Object, readErr error) (string, error) {
	key := client.ObjectKeyFromObject(desired)
	kind := desired.GetObjectKind().GroupVersionKind().Kind
	err := readErr
	switch {
	case apierrors.IsNotFound(err):
		existing = nil
	case err != nil:
		return "", fmt.Errorf("reading %s %s: %w", kind, key, err)
	default:
		if owner := metav1.GetControllerOf(existing); owner == nil || owner.UID != t.UID {
			conflict := fmt.Sprintf("%s %q exists and is not controlled by this AppTenant", kind, key.Name)
			r.Recorder.Eventf(t, existing, corev1.EventTypeWarning, pushv1.ReasonOwnedObjectConflict, "Apply", "%s; left alone", conflict)
			return conflict, nil
		}
	}
	if err := controllerutil.SetControllerReference(t, desired, r.Scheme()); err != nil {
		return "", err
	}
	if _, err := applyObject(ctx, r.Client, desired, existing); err != nil {
		return "", fmt.Errorf("applying %s %s: %w", kind, key, err)
	}
	return "", nil
}

// ensureAuthSecret creates the API-token Secret once; it is never rewritten,
// so the IM server's token stays valid across reconciles and upgrades.
func (r *AppTenantReconciler) ensureAuthSecret(ctx context.Context, t *pushv1.AppTenant) (string, error) {
	m := secretMeta()
	name := config.AuthSecretName(t.Name)
	err := r.metadata().Get(ctx, types.NamespacedName{Namespace: t.Namespace, Name: name}, m)
	if err == nil {
		if owner := metav1.GetControllerOf(m); owner == nil || owner.UID != t.UID {
			conflict := fmt.Sprintf("Secret %q exists and is not controlled by this AppTenant", name)
			r.Recorder.Eventf(t, nil, corev1.EventTypeWarning, pushv1.ReasonOwnedObjectConflict, "Apply", "%s; left alone", conflict)
			return conflict, nil
		}
		return "", nil
	}
	if !apierrors.IsNotFound(err) {
		return "", err
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	s := AuthSecret(t, []byte(base64.RawURLEncoding.EncodeToString(raw)))
	if err := controllerutil.SetControllerReference(t, s, r.Scheme()); err != nil {
		return "", err
	}
	if err := r.Create(ctx, s); err != nil && !apierrors.IsAlreadyExists(err) {
		return "", fmt.Errorf("creating API-token Secret: %w", err)
	}
	return "", nil
}

// reconcileShards pre-creates missing shard Secrets (the dispatcher only
// updates them) and reads their fill from metadata; sets TokenStoreReady.
func (r *AppTenantReconciler) reconcileShards(ctx context.Context, t *pushv1.AppTenant, conds conditions) error {
	ts := TokenStoreConfig(t)
	var (
		created   int
		conflicts []string
		full      []string
	)
	var missing []int
	for i := range int(ts.Shards) {
		name := ts.ShardName(i)
		m := secretMeta()
		err := r.metadata().Get(ctx, types.NamespacedName{Namespace: t.Namespace, Name: name}, m)
		if apierrors.IsNotFound(err) {
			missing = append(missing, i)
			continue
		}
		if err != nil {
			return err
		}
		if m.Labels[pushv1.LabelTenant] != t.Name {
			conflicts = append(conflicts, name)
			continue
		}
		if fill, err := strconv.ParseInt(m.Annotations[pushv1.AnnotationFillBytes], 10, 64); err == nil && float64(fill) >= ShardWarnFraction*float64(ts.MaxShardBytes) {
			full = append(full, fmt.Sprintf("%s (%d%%)", name, fill*100/ts.MaxShardBytes))
		}
	}
	// Absent from the cache: created without asking the API server first
	// (one the cache has not seen yet answers AlreadyExists), all at once, so
	// a new tenant's shards cost one round trip of time, not sixteen.
	errs := make([]error, len(missing))
	var wg sync.WaitGroup
	for j, i := range missing {
		wg.Go(func() {
			if err := r.Create(ctx, ShardSecret(t, i)); err != nil && !apierrors.IsAlreadyExists(err) {
				errs[j] = fmt.Errorf("creating shard Secret %s: %w", ts.ShardName(i), err)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	created = len(missing)
	switch {
	case len(conflicts) > 0:
		conds.set(pushv1.ConditionTokenStoreReady, metav1.ConditionFalse, pushv1.ReasonShardConflict, "shard Secrets exist but belong to another tenant: "+strings.Join(conflicts, ", "))
	case created > 0:
		conds.set(pushv1.ConditionTokenStoreReady, metav1.ConditionFalse, pushv1.ReasonShardsPending, fmt.Sprintf("created %d of %d shard Secrets; waiting to observe them", created, ts.Shards))
	case len(full) > 0:
		msg := fmt.Sprintf("shards above %d%% of %d bytes: %s; raise tokenStore.maxShardBytes or move to a new tenant with more shards", int(ShardWarnFraction*100), ts.MaxShardBytes, strings.Join(full, ", "))
		if conditionReason(*conds.list, pushv1.ConditionTokenStoreReady) != pushv1.ReasonShardNearlyFull {
			r.Recorder.Eventf(t, nil, corev1.EventTypeWarning, pushv1.ReasonShardNearlyFull, "Reconcile", "%s", msg)
		}
		conds.set(pushv1.ConditionTokenStoreReady, metav1.ConditionTrue, pushv1.ReasonShardNearlyFull, msg)
	default:
		conds.set(pushv1.ConditionTokenStoreReady, metav1.ConditionTrue, pushv1.ReasonShardsAvailable, fmt.Sprintf("%d shard Secrets available", ts.Shards))
	}
	return nil
}

// metadata is where Secret metadata is read from.
func (r *AppTenantReconciler) metadata() client.Reader {
	if r.MetadataReader != nil {
		return r.MetadataReader
	}
	return r.Client
}

// reconcilePDB applies the PDB, or deletes ours when there is one replica.
func (r *AppTenantReconciler) reconcilePDB(ctx context.Context, t *pushv1.AppTenant, apply func(desired, existing client.Object) error) error {
	if pdb := PodDisruptionBudget(t); pdb != nil {
		return apply(pdb, &policyv1.PodDisruptionBudget{})
	}
	existing := &policyv1.PodDisruptionBudget{}
	err := r.Get(ctx, types.NamespacedName{Namespace: t.Namespace, Name: DispatcherName(t)}, existing)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if owner := metav1.GetControllerOf(existing); owner != nil && owner.UID == t.UID {
		return client.IgnoreNotFound(r.Delete(ctx, existing))
	}
	return nil
}

// dispatcherAvailable reads the Deployment's status into DispatcherAvailable.
func (r *AppTenantReconciler) dispatcherAvailable(ctx context.Context, t *pushv1.AppTenant, status *pushv1.AppTenantStatus, conds conditions, conflicts []string) error {
	if len(conflicts) > 0 {
		conds.set(pushv1.ConditionDispatcherAvailable, metav1.ConditionFalse, pushv1.ReasonOwnedObjectConflict, strings.Join(conflicts, "; "))
		return nil
	}
	d := &appsv1.Deployment{}
	err := r.Get(ctx, types.NamespacedName{Namespace: t.Namespace, Name: DispatcherName(t)}, d)
	if apierrors.IsNotFound(err) {
		conds.set(pushv1.ConditionDispatcherAvailable, metav1.ConditionFalse, pushv1.ReasonDeploymentPending, "Deployment not observed yet")
		return nil
	}
	if err != nil {
		return err
	}
	want := ptr.Deref(d.Spec.Replicas, 1)
	status.ReadyReplicas = d.Status.AvailableReplicas
	switch {
	case d.Status.ObservedGeneration < d.Generation:
		conds.set(pushv1.ConditionDispatcherAvailable, metav1.ConditionFalse, pushv1.ReasonDeploymentPending, fmt.Sprintf("Deployment generation %d not yet observed (at %d)", d.Generation, d.Status.ObservedGeneration))
	case d.Status.AvailableReplicas < want:
		conds.set(pushv1.ConditionDispatcherAvailable, metav1.ConditionFalse, pushv1.ReasonReplicasUnavailable, fmt.Sprintf("%d of %d replicas available", d.Status.AvailableReplicas, want))
	default:
		conds.set(pushv1.ConditionDispatcherAvailable, metav1.ConditionTrue, pushv1.ReasonReplicasAvailable, fmt.Sprintf("%d of %d replicas available", d.Status.AvailableReplicas, want))
	}
	return nil
}

// summarize sets Ready from the finer conditions: True only when all are.
func summarize(status *pushv1.AppTenantStatus, conds conditions) {
	for _, typ := range []string{pushv1.ConditionCertificatesReady, pushv1.ConditionPolicyReady, pushv1.ConditionTokenStoreReady, pushv1.ConditionDispatcherAvailable} {
		for _, c := range status.Conditions {
			if c.Type == typ && c.Status != metav1.ConditionTrue {
				conds.set(pushv1.ConditionReady, metav1.ConditionFalse, c.Reason, typ+": "+c.Message)
				return
			}
		}
	}
	conds.set(pushv1.ConditionReady, metav1.ConditionTrue, pushv1.ReasonReady, "dispatcher is serving with every certificate and the policy")
}

// finalize deletes the shard Secrets unless retainOnDelete, then lets the
// tenant go; owned objects go with it through their owner references.
func (r *AppTenantReconciler) finalize(ctx context.Context, t *pushv1.AppTenant) error {
	if !controllerutil.ContainsFinalizer(t, pushv1.Finalizer) {
		return nil
	}
	if !ptr.Deref(t.Spec.TokenStore.RetainOnDelete, true) {
		for _, name := range TokenStoreConfig(t).ShardNames() {
			m := secretMeta()
			m.Name, m.Namespace = name, t.Namespace
			if err := r.Get(ctx, client.ObjectKeyFromObject(m), m); err != nil {
				if apierrors.IsNotFound(err) {
					continue
				}
				return err
			}
			if m.Labels[pushv1.LabelTenant] != t.Name {
				continue
			}
			if err := r.Delete(ctx, m); client.IgnoreNotFound(err) != nil {
				return fmt.Errorf("deleting shard Secret %s: %w", name, err)
			}
		}
	}
	tenantReady.DeleteLabelValues(t.Namespace, t.Name, t.Spec.AppKey)
	controllerutil.RemoveFinalizer(t, pushv1.Finalizer)
	return r.Update(ctx, t)
}

// SetupIndexes registers the field indexes the controllers' map functions use.
func SetupIndexes(ctx context.Context, mgr ctrl.Manager) error {
	idx := mgr.GetFieldIndexer()
	return errors.Join(
		idx.IndexField(ctx, &pushv1.PushCertificate{}, indexSecretRef, func(o client.Object) []string {
			return []string{o.(*pushv1.PushCertificate).Spec.SecretRef.Name}
		}),
		idx.IndexField(ctx, &pushv1.AppTenant{}, indexCertificates, func(o client.Object) []string {
			return o.(*pushv1.AppTenant).Spec.Certificates
		}),
		idx.IndexField(ctx, &pushv1.AppTenant{}, indexPolicyRef, func(o client.Object) []string {
			return []string{o.(*pushv1.AppTenant).Spec.PolicyRef.Name}
		}),
	)
}

// SetupWithManager wires the watches: owned objects, the certificates and
// policy a tenant names, and shard Secrets (by label; metadata only).
func (r *AppTenantReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Now == nil {
		r.Now = time.Now
	}
	return ctrl.NewControllerManagedBy(mgr).
		// Not on our own status writes: they change neither spec, labels,
		// annotations, finalizers nor deletion.
		For(&pushv1.AppTenant{}, builder.WithPredicates(predicate.Or(
			predicate.GenerationChangedPredicate{}, predicate.LabelChangedPredicate{},
			predicate.AnnotationChangedPredicate{}, metadataChanged{}))).
		WithOptions(controller.Options{MaxConcurrentReconciles: max(1, r.MaxConcurrentReconciles)}).
		Owns(&appsv1.Deployment{}).
		Owns(&corev1.Service{}).
		Owns(&corev1.ServiceAccount{}).
		Owns(&rbacv1.Role{}).
		Owns(&rbacv1.RoleBinding{}).
		Owns(&policyv1.PodDisruptionBudget{}).
		Owns(&networkingv1.NetworkPolicy{}).
		Owns(&corev1.Secret{}, builder.OnlyMetadata).
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(shardToTenant), builder.OnlyMetadata).
		Watches(&pushv1.PushCertificate{}, handler.EnqueueRequestsFromMapFunc(r.mapBy(indexCertificates))).
		Watches(&pushv1.PushPolicy{}, handler.EnqueueRequestsFromMapFunc(r.mapBy(indexPolicyRef))).
		Named("apptenant").
		Complete(r)
}

// metadataChanged passes updates that change finalizers or deletion.
type metadataChanged struct{ predicate.Funcs }

func (metadataChanged) Update(e event.UpdateEvent) bool {
	if e.ObjectOld == nil || e.ObjectNew == nil {
		return true
	}
	return !slices.Equal(e.ObjectOld.GetFinalizers(), e.ObjectNew.GetFinalizers()) ||
		!e.ObjectOld.GetDeletionTimestamp().Equal(e.ObjectNew.GetDeletionTimestamp())
}

func shardToTenant(_ context.Context, o client.Object) []reconcile.Request {
	tenant := o.GetLabels()[pushv1.LabelTenant]
	if tenant == "" || !strings.HasPrefix(o.GetName(), config.ShardPrefix(tenant)) {
		return nil
	}
	return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: tenant}}}
}

func (r *AppTenantReconciler) mapBy(index string) handler.MapFunc {
	return func(ctx context.Context, o client.Object) []reconcile.Request {
		var list pushv1.AppTenantList
		if err := r.List(ctx, &list, client.InNamespace(o.GetNamespace()), client.MatchingFields{index: o.GetName()}); err != nil {
			log.FromContext(ctx).Error(err, "mapping to AppTenants", "index", index)
			return nil
		}
		reqs := make([]reconcile.Request, len(list.Items))
		for i := range list.Items {
			reqs[i] = reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])}
		}
		return reqs
	}
}
