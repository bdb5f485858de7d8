package v1alpha1

// Condition types and reasons shared by the kinds.
const (
	// ConditionReady summarises an object: True when it can be used.
	ConditionReady = "Ready"

	// LabelTenant marks objects that belong to a tenant (shard Secrets too).
	LabelTenant = "push.imcloud.io/tenant"
	// AnnotationFillBytes is written by the dispatcher on each shard Secret.
	AnnotationFillBytes = "push.imcloud.io/fill-bytes"
	// AnnotationAppliedHash is the hash of what the operator last applied to
	// an owned object; with it an unchanged tenant reconciles without writes.
	AnnotationAppliedHash = "push.imcloud.io/applied-hash"
	// SecretTypeDeviceTokens is the type of the shard Secrets.
	SecretTypeDeviceTokens = "push.imcloud.io/device-tokens"
	// Finalizer guards certificates in use and tenants' shard Secrets.
	Finalizer = "push.imcloud.io/finalizer"
)

// LocalObjectReference names an object in the same namespace.
type LocalObjectReference struct {
	// Name of the object.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
}
