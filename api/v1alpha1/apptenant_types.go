package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// AppTenantSpec is one IM app.
type AppTenantSpec struct {
	// AppKey is the IM app's id; it appears in status, logs and metrics.
	// +required
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9][A-Za-z0-9_.#-]{0,127}$`
	AppKey string `json:"appKey"`
	// Certificates names the PushCertificates (in this namespace) the tenant
	// delivers through; their certificateNames must be unique.
	// +required
	// +listType=set
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=253
	Certificates []string `json:"certificates"`
	// PolicyRef names the PushPolicy (in this namespace).
	// +required
	PolicyRef LocalObjectReference `json:"policyRef"`
	// Dispatcher sizes and exposes the tenant's dispatcher.
	// +kubebuilder:default={}
	// +optional
	Dispatcher DispatcherSpec `json:"dispatcher,omitempty"`
	// TokenStore configures the Secrets-backed device-token store.
	// +kubebuilder:default={}
	// +optional
	TokenStore TokenStoreSpec `json:"tokenStore,omitempty"`
}

// DispatcherSpec sizes and exposes the dispatcher Deployment.
type DispatcherSpec struct {
	// Replicas of the dispatcher; rate limits are divided among them.
	// +kubebuilder:default=2
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=50
	// +optional
	Replicas *int32 `json:"replicas,omitempty"`
	// Image overrides the operator's --dispatcher-image.
	// +optional
	// +kubebuilder:validation:MaxLength=512
	Image string `json:"image,omitempty"`
	// Resources of the dispatcher container (defaults: 100m CPU, 128Mi
	// memory requested; 256Mi limit).
	// +optional
	Resources *corev1.ResourceRequirements `json:"resources,omitempty"`
	// AllowedClients are the peers (the IM server) that may reach the
	// dispatcher's API; rendered into a NetworkPolicy. Empty allows only pods
	// in the tenant's namespace.
	// +optional
	// +kubebuilder:validation:MaxItems=16
	AllowedClients []AllowedClient `json:"allowedClients,omitempty"`
}

// AllowedClient selects pods that may call the dispatcher.
// +kubebuilder:validation:XValidation:rule="has(self.namespaceSelector) || has(self.podSelector)",message="allowedClients entries need namespaceSelector or podSelector"
type AllowedClient struct {
	// NamespaceSelector selects namespaces; with podSelector, pods in them.
	// +optional
	NamespaceSelector *metav1.LabelSelector `json:"namespaceSelector,omitempty"`
	// PodSelector selects pods (in the tenant's namespace when no
	// namespaceSelector is given).
	// +optional
	PodSelector *metav1.LabelSelector `json:"podSelector,omitempty"`
}

// TokenStoreSpec configures the device-token shards.
// +kubebuilder:validation:XValidation:rule="!has(oldSelf.shards) || (has(self.shards) && self.shards == oldSelf.shards)",message="tokenStore.shards is immutable once set"
type TokenStoreSpec struct {
	// Shards is the number of shard Secrets; immutable once set (users are
	// placed by hash modulo this number).
	// +kubebuilder:default=16
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1024
	// +optional
	Shards *int32 `json:"shards,omitempty"`
	// MaxDevicesPerUser caps a user's devices; the least recently bound goes.
	// +kubebuilder:default=10
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	// +optional
	MaxDevicesPerUser int32 `json:"maxDevicesPerUser,omitempty"`
	// MaxShardBytes caps one shard Secret (below the 1 MiB Secret limit).
	// +kubebuilder:default=262144
	// +kubebuilder:validation:Minimum=4096
	// +kubebuilder:validation:Maximum=1024000
	// +optional
	MaxShardBytes int64 `json:"maxShardBytes,omitempty"`
	// WriteBudgetBytesPerSecond bounds the tenant's writes into the API
	// server (divided among replicas).
	// +kubebuilder:default=1048576
	// +kubebuilder:validation:Minimum=4096
	// +optional
	WriteBudgetBytesPerSecond int64 `json:"writeBudgetBytesPerSecond,omitempty"`
	// RetainOnDelete keeps the shard Secrets when the tenant is deleted, so a
	// re-created tenant adopts its devices.
	// +kubebuilder:default=true
	// +optional
	RetainOnDelete *bool `json:"retainOnDelete,omitempty"`
}

// AppTenant condition types and reasons.
const (
	ConditionCertificatesReady   = "CertificatesReady"
	ConditionPolicyReady         = "PolicyReady"
	ConditionTokenStoreReady     = "TokenStoreReady"
	ConditionDispatcherAvailable = "DispatcherAvailable"

	ReasonReady                  = "Ready"
	ReasonNotReady               = "NotReady"
	ReasonCertificateNotFound    = "CertificateNotFound"
	ReasonCertificateNotReady    = "CertificateNotReady"
	ReasonDuplicateCertificate   = "DuplicateCertificateName"
	ReasonPolicyNotFound         = "PolicyNotFound"
	ReasonPolicyNotReady         = "PolicyNotReady"
	ReasonShardsPending          = "ShardsPending"
	ReasonShardsAvailable        = "ShardsAvailable"
	ReasonShardNearlyFull        = "ShardNearlyFull"
	ReasonShardConflict          = "ShardConflict"
	ReasonDeploymentPending      = "DeploymentPending"
	ReasonReplicasUnavailable    = "ReplicasUnavailable"
	ReasonReplicasAvailable      = "ReplicasAvailable"
	ReasonOwnedObjectConflict    = "OwnedObjectConflict"
	ReasonWaitingForDependencies = "WaitingForDependencies"
)

// CertificateSummary is a tenant's view of one of its certificates.
type CertificateSummary struct {
	// Name of the PushCertificate.
	Name string `json:"name"`
	// CertificateName the SDK uploads.
	// +optional
	CertificateName string `json:"certificateName,omitempty"`
	// Provider of the credential.
	// +optional
	Provider Provider `json:"provider,omitempty"`
	// Ready is whether the certificate is Ready and in use.
	Ready bool `json:"ready"`
	// ExpiresAt for expiring credentials.
	// +optional
	ExpiresAt *metav1.Time `json:"expiresAt,omitempty"`
}

// AppTenantStatus reports what the tenant became.
type AppTenantStatus struct {
	// ObservedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Conditions: Ready (summary), CertificatesReady, PolicyReady,
	// TokenStoreReady, DispatcherAvailable.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// AppKey echoes spec.appKey.
	// +optional
	AppKey string `json:"appKey,omitempty"`
	// Endpoint is the dispatcher API's in-cluster URL.
	// +optional
	Endpoint string `json:"endpoint,omitempty"`
	// APITokenSecretName is the Secret (key "token") holding the bearer token
	// the IM server uses.
	// +optional
	APITokenSecretName string `json:"apiTokenSecretName,omitempty"`
	// Certificates summarises each named certificate.
	// +optional
	// +listType=map
	// +listMapKey=name
	Certificates []CertificateSummary `json:"certificates,omitempty"`
	// Replicas desired.
	// +optional
	Replicas int32 `json:"replicas,omitempty"`
	// ReadyReplicas available.
	// +optional
	ReadyReplicas int32 `json:"readyReplicas,omitempty"`
	// ConfigHash is the hash of the dispatcher config the operator rendered.
	// +optional
	ConfigHash string `json:"configHash,omitempty"`
}

// AppTenant is one IM app served by its own dispatcher.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=tenant,categories=impush
// +kubebuilder:printcolumn:name="AppKey",type=string,JSONPath=`.spec.appKey`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Replicas",type=integer,JSONPath=`.status.readyReplicas`
// +kubebuilder:printcolumn:name="Endpoint",type=string,JSONPath=`.status.endpoint`,priority=1
// +kubebuilder:printcolumn:name="Certificates",type=string,JSONPath=`.status.conditions[?(@.type=="CertificatesReady")].status`,priority=1
// +kubebuilder:printcolumn:name="Policy",type=string,JSONPath=`.status.conditions[?(@.type=="PolicyReady")].status`,priority=1
// +kubebuilder:printcolumn:name="TokenStore",type=string,JSONPath=`.status.conditions[?(@.type=="TokenStoreReady")].status`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type AppTenant struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec AppTenantSpec `json:"spec"`
	// +optional
	Status AppTenantStatus `json:"status,omitempty"`
}

// AppTenantList is a list of AppTenants.
// +kubebuilder:object:root=true
type AppTenantList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []AppTenant `json:"items"`
}
