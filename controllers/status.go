package controllers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	pushv1 "github.com/imcloud/im-push-operator/api/v1alpha1"
)

// FieldOwner is the one field manager the operator writes with.
const FieldOwner = client.FieldOwner("im-push-operator")

// conditions collects a status's conditions; SetStatusCondition keeps each
// condition's lastTransitionTime unless its status changes, so an unchanged
// object computes an identical status and nothing is written.
type conditions struct {
	list       *[]metav1.Condition
	generation int64
	now        time.Time
}

func (c conditions) set(typ string, status metav1.ConditionStatus, reason, message string) {
	meta.SetStatusCondition(c.list, metav1.Condition{
		Type: typ, Status: status, Reason: reason, Message: message,
		ObservedGeneration: c.generation, LastTransitionTime: metav1.NewTime(c.now),
	})
}

// applyStatus writes status with server-side apply, only when it differs from
// what the object already has.
func applyStatus(ctx context.Context, c client.Client, obj client.Object, old, status any) error {
	if equality.Semantic.DeepEqual(old, status) {
		return nil
	}
	st, err := runtime.DefaultUnstructuredConverter.ToUnstructured(status)
	if err != nil {
		return err
	}
	gvk, err := c.GroupVersionKindFor(obj)
	if err != nil {
		return err
	}
	u := &unstructured.Unstructured{Object: map[string]any{"status": st}}
	u.SetGroupVersionKind(gvk)
	u.SetName(obj.GetName())
	u.SetNamespace(obj.GetNamespace())
	return c.Status().Apply(ctx, client.ApplyConfigurationFromUnstructured(u), FieldOwner, client.ForceOwnership)
}

// applyObject writes a desired object with server-side apply under FieldOwner,
// unless existing (nil when absent) already holds it: an unchanged tenant
// then reconciles with reads only. The desired object carries the hash of
// what is applied, so a field dropped from desired still triggers an apply,
// and every desired value is compared with existing, so drift by another
// writer is still repaired.
func applyObject(ctx context.Context, c client.Client, desired, existing client.Object) (applied bool, err error) {
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(desired)
	if err != nil {
		return false, err
	}
	delete(u, "status")
	m, _ := u["metadata"].(map[string]any)
	if m == nil {
		m = map[string]any{}
		u["metadata"] = m
	}
	delete(m, "creationTimestamp")
	doc, err := json.Marshal(u)
	if err != nil {
		return false, err
	}
	sum := sha256.Sum256(doc)
	ann, _ := m["annotations"].(map[string]any)
	if ann == nil {
		ann = map[string]any{}
		m["annotations"] = ann
	}
	ann[pushv1.AnnotationAppliedHash] = hex.EncodeToString(sum[:16])
	if existing != nil {
		have, err := runtime.DefaultUnstructuredConverter.ToUnstructured(existing)
		if err != nil {
			return false, err
		}
		// Typed reads leave TypeMeta empty; the key identifies the kind.
		have["apiVersion"], have["kind"] = u["apiVersion"], u["kind"]
		if contains(have, u) {
			return false, nil
		}
	}
	return true, c.Apply(ctx, client.ApplyConfigurationFromUnstructured(&unstructured.Unstructured{Object: u}), FieldOwner, client.ForceOwnership)
}

// contains reports whether every value set in want has the same value in
// have. Maps may hold more keys in have (server defaults, other managers);
// lists must match element by element.
func contains(have, want any) bool {
	switch w := want.(type) {
	case map[string]any:
		h, ok := have.(map[string]any)
		if !ok {
			return len(w) == 0 && have == nil
		}
		for k, wv := range w {
			hv, ok := h[k]
			if !ok {
				if isEmpty(wv) {
					continue
				}
				return false
			}
			if !contains(hv, wv) {
				return false
			}
		}
		return true
	case []any:
		h, ok := have.([]any)
		if !ok || len(h) != len(w) {
			return len(w) == 0 && have == nil
		}
		for i := range w {
			if !contains(h[i], w[i]) {
				return false
			}
		}
		return true
	default:
		return equality.Semantic.DeepEqual(have, want)
	}
}

// isEmpty is true for values server-side apply treats as unset.
func isEmpty(v any) bool {
	switch x := v.(type) {
	case nil:
		return true
	case map[string]any:
		return len(x) == 0
	case []any:
		return len(x) == 0
	}
	return false
}
