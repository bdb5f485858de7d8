package controllers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	pushv1 "github.com/imcloud/im-push-operator/api/v1alpha1"
	"github.com/imcloud/im-push-operator/dispatcher/config"
	"github.com/imcloud/im-push-operator/dispatcher/providers"
)

// ExpiryWarning is how long before expiry ExpiringSoon turns True.
const ExpiryWarning = 30 * 24 * time.Hour

// Field index names.
const (
	indexSecretRef    = "spec.secretRef.name"
	indexCertificates = "spec.certificates"
	indexPolicyRef    = "spec.policyRef.name"
)

// ValidateFunc checks a credential without network calls (the providers'
// own Validate functions, so what is validated is what the dispatcher loads).
type ValidateFunc func(*config.Certificate) (providers.CredentialInfo, error)

// PushCertificateReconciler validates credentials.
type PushCertificateReconciler struct {
	client.Client
	// APIReader reads Secret data uncached: the manager caches Secret
	// metadata only.
	APIReader client.Reader
	Recorder  recorder.EventRecorder
	Validate  ValidateFunc
	Now       func() time.Time
}

// Reason: watch certificates; update adds and removes the in-use finalizer.
// +kubebuilder:rbac:groups=push.imcloud.io,resources=pushcertificates,verbs=get;list;watch;update
// Reason: status (validity, expiry, fingerprint) by server-side apply.
// +kubebuilder:rbac:groups=push.imcloud.io,resources=pushcertificates/status,verbs=get;update;patch
// Reason: the finalizer that holds a certificate while a tenant names it.
// +kubebuilder:rbac:groups=push.imcloud.io,resources=pushcertificates/finalizers,verbs=update
// Reason: list/watch credential Secrets' metadata to follow changes, get their data
// uncached to validate; also held so the dispatcher Role may grant them.
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch
// Reason: Warning events (invalid credentials, expiry, conflicts); patch aggregates repeats.
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile validates one PushCertificate against its Secret.
func (r *PushCertificateReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	pc := &pushv1.PushCertificate{}
	if err := r.Get(ctx, req.NamespacedName, pc); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	inUse, err := r.usedBy(ctx, pc)
	if err != nil {
		return ctrl.Result{}, err
	}
	if done, err := r.guardDeletion(ctx, pc, inUse); done || err != nil {
		return ctrl.Result{}, err
	}

	old := pc.Status.DeepCopy()
	status, requeue, err := r.compute(ctx, pc)
	if err != nil {
		return ctrl.Result{}, err
	}
	if err := applyStatus(ctx, r.Client, pc, old, status); err != nil {
		return ctrl.Result{}, fmt.Errorf("writing status of PushCertificate %s: %w", req.NamespacedName, err)
	}
	certificateMetrics(pc, status)
	return ctrl.Result{RequeueAfter: requeue}, nil
}

// usedBy lists the tenants that name this certificate.
func (r *PushCertificateReconciler) usedBy(ctx context.Context, pc *pushv1.PushCertificate) ([]string, error) {
	var tenants pushv1.AppTenantList
	if err := r.List(ctx, &tenants, client.InNamespace(pc.Namespace), client.MatchingFields{indexCertificates: pc.Name}); err != nil {
		return nil, err
	}
	names := make([]string, 0, len(tenants.Items))
	for _, t := range tenants.Items {
		if t.DeletionTimestamp.IsZero() {
			names = append(names, t.Name)
		}
	}
	slices.Sort(names)
	return names, nil
}

// guardDeletion keeps a finalizer on a certificate while a tenant names it,
// so deleting it waits until no tenant uses it. done is true when the object
// is being deleted (nothing else to do).
func (r *PushCertificateReconciler) guardDeletion(ctx context.Context, pc *pushv1.PushCertificate, inUse []string) (bool, error) {
	has := controllerutil.ContainsFinalizer(pc, pushv1.Finalizer)
	deleting := !pc.DeletionTimestamp.IsZero()
	switch {
	case deleting && len(inUse) > 0:
		r.Recorder.Eventf(pc, nil, corev1.EventTypeWarning, "InUse", "Delete", "deletion waits: still named by AppTenant %v", inUse)
		return true, nil
	case deleting:
		if has {
			controllerutil.RemoveFinalizer(pc, pushv1.Finalizer)
			return true, r.Update(ctx, pc)
		}
		return true, nil
	case len(inUse) > 0 && !has:
		controllerutil.AddFinalizer(pc, pushv1.Finalizer)
		return false, r.Update(ctx, pc)
	case len(inUse) == 0 && has:
		controllerutil.RemoveFinalizer(pc, pushv1.Finalizer)
		return false, r.Update(ctx, pc)
	}
	return false, nil
}

// compute validates and returns the new status and when to look again.
func (r *PushCertificateReconciler) compute(ctx context.Context, pc *pushv1.PushCertificate) (*pushv1.PushCertificateStatus, time.Duration, error) {
	now := r.Now()
	status := pc.Status.DeepCopy()
	status.ObservedGeneration = pc.Generation
	conds := conditions{list: &status.Conditions, generation: pc.Generation, now: now}
	notReady := func(reason, msg string) (*pushv1.PushCertificateStatus, time.Duration, error) {
		conds.set(pushv1.ConditionReady, metav1.ConditionFalse, reason, msg)
		conds.set(pushv1.ConditionExpiringSoon, metav1.ConditionUnknown, reason, "the credential could not be validated")
		status.Fingerprint, status.ExpiresAt, status.Subject = "", nil, ""
		if pc.Status.Fingerprint != "" || conditionReason(pc.Status.Conditions, pushv1.ConditionReady) != reason {
			r.Recorder.Eventf(pc, nil, corev1.EventTypeWarning, reason, "Validate", "%s", msg)
		}
		return status, 0, nil
	}

	secret := &corev1.Secret{}
	err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: pc.Namespace, Name: pc.Spec.SecretRef.Name}, secret)
	if apierrors.IsNotFound(err) {
		return notReady(pushv1.ReasonSecretNotFound, fmt.Sprintf("Secret %q not found in namespace %q", pc.Spec.SecretRef.Name, pc.Namespace))
	}
	if err != nil {
		return nil, 0, fmt.Errorf("reading Secret %s/%s: %w", pc.Namespace, pc.Spec.SecretRef.Name, err)
	}
	cert := CertificateConfig(pc, secret.Data)
	info, err := r.Validate(cert)
	if err != nil {
		var ce *providers.CredentialError
		if errors.As(err, &ce) {
			return notReady(ce.Reason, fmt.Sprintf("Secret %q: %s", pc.Spec.SecretRef.Name, ce.Message))
		}
		return notReady(pushv1.ReasonInvalidCredentials, fmt.Sprintf("Secret %q: %v", pc.Spec.SecretRef.Name, err))
	}

	status.Fingerprint = cert.Fingerprint
	status.Subject = info.Subject
	status.ExpiresAt = nil
	var requeue time.Duration
	if info.ExpiresAt != nil {
		exp := metav1.NewTime(info.ExpiresAt.UTC().Truncate(time.Second))
		status.ExpiresAt = &exp
		left := exp.Sub(now)
		if left <= 0 {
			return notReady(pushv1.ReasonExpired, fmt.Sprintf("credential in Secret %q expired at %s", pc.Spec.SecretRef.Name, exp.Format(time.RFC3339)))
		}
		if left <= ExpiryWarning {
			msg := fmt.Sprintf("credential expires at %s (in %d days)", exp.Format(time.RFC3339), int(left.Hours()/24))
			if conditionReason(pc.Status.Conditions, pushv1.ConditionExpiringSoon) != pushv1.ReasonExpiresSoon {
				r.Recorder.Eventf(pc, nil, corev1.EventTypeWarning, pushv1.ReasonExpiresSoon, "Validate", "%s", msg)
			}
			conds.set(pushv1.ConditionExpiringSoon, metav1.ConditionTrue, pushv1.ReasonExpiresSoon, msg)
			requeue = left
		} else {
			conds.set(pushv1.ConditionExpiringSoon, metav1.ConditionFalse, pushv1.ReasonNotExpiring, fmt.Sprintf("credential expires at %s", exp.Format(time.RFC3339)))
			requeue = left - ExpiryWarning
		}
	} else {
		conds.set(pushv1.ConditionExpiringSoon, metav1.ConditionFalse, pushv1.ReasonNotExpiring, "credential does not expire")
	}
	conds.set(pushv1.ConditionReady, metav1.ConditionTrue, pushv1.ReasonValid, fmt.Sprintf("%s credential %s is valid", pc.Spec.Provider, info.Subject))
	log.FromContext(ctx).V(1).Info("credential valid", "fingerprint", cert.Fingerprint)
	return status, requeue, nil
}

// conditionReason returns the reason of a condition, "" when absent.
func conditionReason(conds []metav1.Condition, typ string) string {
	for _, c := range conds {
		if c.Type == typ {
			return c.Reason
		}
	}
	return ""
}

// SetupWithManager wires the watches: the certificate, its Secret (metadata
// only, mapped through a field index), and tenants (for the finalizer).
func (r *PushCertificateReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Now == nil {
		r.Now = time.Now
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&pushv1.PushCertificate{}).
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(r.secretToCertificates), builder.OnlyMetadata).
		Watches(&pushv1.AppTenant{}, handler.EnqueueRequestsFromMapFunc(tenantToCertificates)).
		Named("pushcertificate").
		Complete(r)
}

func (r *PushCertificateReconciler) secretToCertificates(ctx context.Context, o client.Object) []reconcile.Request {
	var list pushv1.PushCertificateList
	if err := r.List(ctx, &list, client.InNamespace(o.GetNamespace()), client.MatchingFields{indexSecretRef: o.GetName()}); err != nil {
		log.FromContext(ctx).Error(err, "mapping Secret to PushCertificates")
		return nil
	}
	reqs := make([]reconcile.Request, len(list.Items))
	for i, pc := range list.Items {
		reqs[i] = reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&pc)}
	}
	return reqs
}

func tenantToCertificates(_ context.Context, o client.Object) []reconcile.Request {
	t := o.(*pushv1.AppTenant)
	reqs := make([]reconcile.Request, len(t.Spec.Certificates))
	for i, name := range t.Spec.Certificates {
		reqs[i] = reconcile.Request{NamespacedName: types.NamespacedName{Namespace: t.Namespace, Name: name}}
	}
	return reqs
}
