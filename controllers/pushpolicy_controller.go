package controllers

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	pushv1 "github.com/imcloud/im-push-operator/api/v1alpha1"
	"github.com/imcloud/im-push-operator/dispatcher/config"
)

// PolicyValidateFunc checks what the schema cannot: templates parse and
// render, the time zone exists (the dispatcher's policy.ValidatePolicy).
type PolicyValidateFunc func(*config.Policy) error

// PushPolicyReconciler validates policies.
type PushPolicyReconciler struct {
	client.Client
	Recorder recorder.EventRecorder
	Validate PolicyValidateFunc
	Now      func() time.Time
}

// Reason: read and watch policies to validate them and render tenant config.
// +kubebuilder:rbac:groups=push.imcloud.io,resources=pushpolicies,verbs=get;list;watch
// Reason: the policy's validation status by server-side apply.
// +kubebuilder:rbac:groups=push.imcloud.io,resources=pushpolicies/status,verbs=get;update;patch

// Reconcile validates one PushPolicy.
func (r *PushPolicyReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	pp := &pushv1.PushPolicy{}
	if err := r.Get(ctx, req.NamespacedName, pp); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	old := pp.Status.DeepCopy()
	status := pp.Status.DeepCopy()
	status.ObservedGeneration = pp.Generation
	conds := conditions{list: &status.Conditions, generation: pp.Generation, now: r.Now()}
	rendered := PolicyConfig(&pp.Spec)
	if err := r.Validate(&rendered); err != nil {
		msg := specPaths(&rendered, err.Error())
		if conditionReason(pp.Status.Conditions, pushv1.ConditionReady) != pushv1.ReasonInvalidPolicy {
			r.Recorder.Eventf(pp, nil, corev1.EventTypeWarning, pushv1.ReasonInvalidPolicy, "Validate", "%s", msg)
		}
		conds.set(pushv1.ConditionReady, metav1.ConditionFalse, pushv1.ReasonInvalidPolicy, msg)
	} else {
		conds.set(pushv1.ConditionReady, metav1.ConditionTrue, pushv1.ReasonPolicyValid, "policy is valid")
	}
	if err := applyStatus(ctx, r.Client, pp, old, status); err != nil {
		return ctrl.Result{}, fmt.Errorf("writing status of PushPolicy %s: %w", req.NamespacedName, err)
	}
	return ctrl.Result{}, nil
}

// SetupWithManager registers the controller.
func (r *PushPolicyReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Now == nil {
		r.Now = time.Now
	}
	return ctrl.NewControllerManagedBy(mgr).For(&pushv1.PushPolicy{}).Named("pushpolicy").Complete(r)
}

// specPaths rewrites the rendered policy's template paths
// (spec.notification.templates[i]) into the PushPolicy's own fields: the
// default template is spec.notification, the others are translations.
func specPaths(p *config.Policy, msg string) string {
	translation := 0
	var pairs []string
	for i, t := range p.Templates {
		from := fmt.Sprintf("spec.notification.templates[%d]", i)
		to := "spec.notification"
		if t.Language != "" {
			to = fmt.Sprintf("spec.notification.translations[%d]", translation)
			translation++
		}
		pairs = append(pairs, from+".", to+".", from, to)
	}
	return strings.NewReplacer(pairs...).Replace(msg)
}
