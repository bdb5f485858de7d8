package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Provider is a push provider.
// +kubebuilder:validation:Enum=APNs;FCM;Huawei;Honor;Xiaomi;OPPO;Vivo;Meizu
type Provider string

const (
	ProviderAPNs   Provider = "APNs"
	ProviderFCM    Provider = "FCM"
	ProviderHuawei Provider = "Huawei"
	ProviderHonor  Provider = "Honor"
	ProviderXiaomi Provider = "Xiaomi"
	ProviderOPPO   Provider = "OPPO"
	ProviderVivo   Provider = "Vivo"
	ProviderMeizu  Provider = "Meizu"
)

// PushCertificateSpec is one provider credential of one app.
// +kubebuilder:validation:XValidation:rule="has(self.apns) == (self.provider == 'APNs')",message="spec.apns must be set exactly when provider is APNs"
// +kubebuilder:validation:XValidation:rule="has(self.fcm) == (self.provider == 'FCM')",message="spec.fcm must be set exactly when provider is FCM"
// +kubebuilder:validation:XValidation:rule="has(self.huawei) == (self.provider == 'Huawei')",message="spec.huawei must be set exactly when provider is Huawei"
// +kubebuilder:validation:XValidation:rule="has(self.honor) == (self.provider == 'Honor')",message="spec.honor must be set exactly when provider is Honor"
// +kubebuilder:validation:XValidation:rule="has(self.xiaomi) == (self.provider == 'Xiaomi')",message="spec.xiaomi must be set exactly when provider is Xiaomi"
// +kubebuilder:validation:XValidation:rule="has(self.oppo) == (self.provider == 'OPPO')",message="spec.oppo must be set exactly when provider is OPPO"
// +kubebuilder:validation:XValidation:rule="has(self.vivo) == (self.provider == 'Vivo')",message="spec.vivo must be set exactly when provider is Vivo"
// +kubebuilder:validation:XValidation:rule="has(self.meizu) == (self.provider == 'Meizu')",message="spec.meizu must be set exactly when provider is Meizu"
type PushCertificateSpec struct {
	// Provider is the push service this credential is for. Immutable.
	// +required
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="provider is immutable"
	Provider Provider `json:"provider"`

	// CertificateName is the name the client SDK uploads together with a
	// device token; it maps a token to this credential. Unique within a tenant.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9_.-]+$`
	CertificateName string `json:"certificateName"`

	// SecretRef names the Secret in this namespace that holds the credential's
	// keys (see the README's table of Secret keys per provider).
	// +required
	SecretRef LocalObjectReference `json:"secretRef"`

	// Endpoint replaces every host of the provider (auth and send; paths are
	// unchanged): a private gateway, or the local fake providers.
	// +optional
	// +kubebuilder:validation:Pattern=`^https://[^\s]+$`
	// +kubebuilder:validation:MaxLength=512
	Endpoint string `json:"endpoint,omitempty"`

	// CABundle is the PEM CA that the endpoint's TLS certificate chains to,
	// trusted in addition to the system roots. TLS is always verified.
	// +optional
	// +kubebuilder:validation:MaxLength=65536
	CABundle string `json:"caBundle,omitempty"`

	// APNs settings; set when provider is APNs.
	// +optional
	APNs *APNsSpec `json:"apns,omitempty"`
	// FCM settings; set when provider is FCM.
	// +optional
	FCM *FCMSpec `json:"fcm,omitempty"`
	// Huawei settings; set when provider is Huawei.
	// +optional
	Huawei *HuaweiSpec `json:"huawei,omitempty"`
	// Honor settings; set when provider is Honor.
	// +optional
	Honor *HonorSpec `json:"honor,omitempty"`
	// Xiaomi settings; set when provider is Xiaomi.
	// +optional
	Xiaomi *XiaomiSpec `json:"xiaomi,omitempty"`
	// OPPO settings; set when provider is OPPO.
	// +optional
	OPPO *OPPOSpec `json:"oppo,omitempty"`
	// Vivo settings; set when provider is Vivo.
	// +optional
	Vivo *VivoSpec `json:"vivo,omitempty"`
	// Meizu settings; set when provider is Meizu.
	// +optional
	Meizu *MeizuSpec `json:"meizu,omitempty"`
}

// APNsAuthType is how the provider authenticates to APNs.
// +kubebuilder:validation:Enum=Token;Certificate
type APNsAuthType string

// APNsEnvironment picks the APNs host.
// +kubebuilder:validation:Enum=Production;Development
type APNsEnvironment string

// APNsSpec configures Apple Push Notification service.
// Token auth reads Secret key `authKey` (.p8); certificate auth reads
// `certificate.p12` + `password`, or `tls.crt` + `tls.key`.
// +kubebuilder:validation:XValidation:rule="self.authType != 'Token' || (has(self.teamID) && has(self.keyID))",message="teamID and keyID are required when authType is Token"
type APNsSpec struct {
	// AuthType is Token (.p8 signing key) or Certificate (.p12 or PEM pair).
	// +kubebuilder:default=Token
	// +optional
	AuthType APNsAuthType `json:"authType,omitempty"`
	// TeamID is the Apple developer team (10 characters); token auth only.
	// +optional
	// +kubebuilder:validation:Pattern=`^[A-Z0-9]{10}$`
	TeamID string `json:"teamID,omitempty"`
	// KeyID is the .p8 key's id (10 characters); token auth only.
	// +optional
	// +kubebuilder:validation:Pattern=`^[A-Z0-9]{10}$`
	KeyID string `json:"keyID,omitempty"`
	// BundleID is the app's bundle id, sent as apns-topic.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=255
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9.-]+$`
	BundleID string `json:"bundleID"`
	// Environment is Production or Development (sandbox) and must match the
	// tokens' origin.
	// +kubebuilder:default=Production
	// +optional
	Environment APNsEnvironment `json:"environment,omitempty"`
}

// FCMSpec configures Firebase Cloud Messaging (Secret key `serviceAccount.json`).
type FCMSpec struct {
	// ProjectID is the Firebase project; read from the service account when empty.
	// +optional
	// +kubebuilder:validation:MaxLength=128
	ProjectID string `json:"projectID,omitempty"`
}

// HuaweiSpec configures Huawei Push Kit (Secret key `clientSecret`).
type HuaweiSpec struct {
	// AppID is the AppGallery app id.
	// +required
	// +kubebuilder:validation:Pattern=`^[0-9]{1,32}$`
	AppID string `json:"appID"`
	// ClientID is the OAuth client id; defaults to AppID.
	// +optional
	// +kubebuilder:validation:Pattern=`^[0-9]{1,32}$`
	ClientID string `json:"clientID,omitempty"`
}

// HonorSpec configures Honor Push (Secret key `clientSecret`).
type HonorSpec struct {
	// AppID is the Honor app id.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=64
	AppID string `json:"appID"`
	// ClientID is the OAuth client id.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=64
	ClientID string `json:"clientID"`
}

// XiaomiRegion picks the MiPush host.
// +kubebuilder:validation:Enum=China;Global;Europe;Russia;India;Singapore
type XiaomiRegion string

// XiaomiSpec configures Xiaomi MiPush (Secret key `appSecret`).
type XiaomiSpec struct {
	// PackageName is the Android package (restricted_package_name).
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=255
	PackageName string `json:"packageName"`
	// Region picks the MiPush host.
	// +kubebuilder:default=China
	// +optional
	Region XiaomiRegion `json:"region,omitempty"`
	// ChannelID is the notification channel registered in the Xiaomi console
	// (a private channel for IM, so messages are not capped).
	// +optional
	// +kubebuilder:validation:MaxLength=64
	ChannelID string `json:"channelID,omitempty"`
}

// OPPOSpec configures OPPO Push (Secret keys `appKey`, `masterSecret`).
type OPPOSpec struct {
	// ChannelID is the notification channel the app created and registered.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	ChannelID string `json:"channelID,omitempty"`
}

// VivoSpec configures vivo Push (Secret keys `appKey`, `appSecret`).
type VivoSpec struct {
	// AppID is the vivo app id.
	// +required
	// +kubebuilder:validation:Pattern=`^[0-9]{1,20}$`
	AppID string `json:"appID"`
}

// MeizuSpec configures Meizu Flyme Push (Secret key `appSecret`).
type MeizuSpec struct {
	// AppID is the Meizu app id.
	// +required
	// +kubebuilder:validation:Pattern=`^[0-9]{1,20}$`
	AppID string `json:"appID"`
}

// PushCertificate condition types and reasons.
const (
	ConditionExpiringSoon = "ExpiringSoon"

	ReasonValid              = "Valid"
	ReasonSecretNotFound     = "SecretNotFound"
	ReasonKeyMissing         = "KeyMissing"
	ReasonInvalidCredentials = "InvalidCredentials"
	ReasonExpired            = "Expired"
	ReasonNotExpiring        = "NotExpiring"
	ReasonExpiresSoon        = "ExpiresSoon"
)

// PushCertificateStatus is the validated state of a credential.
type PushCertificateStatus struct {
	// ObservedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Conditions: Ready (reasons Valid, SecretNotFound, KeyMissing,
	// InvalidCredentials, Expired) and ExpiringSoon.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// ExpiresAt is when a certificate-based credential expires.
	// +optional
	ExpiresAt *metav1.Time `json:"expiresAt,omitempty"`
	// Fingerprint is a hash of the Secret data that validation accepted
	// (never the data itself).
	// +optional
	Fingerprint string `json:"fingerprint,omitempty"`
	// Subject describes the credential without secrets (topic, client id,
	// service-account email).
	// +optional
	Subject string `json:"subject,omitempty"`
}

// PushCertificate is one provider credential of one app.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=pcert,categories=impush
// +kubebuilder:printcolumn:name="Provider",type=string,JSONPath=`.spec.provider`
// +kubebuilder:printcolumn:name="Certificate",type=string,JSONPath=`.spec.certificateName`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Expires",type=date,JSONPath=`.status.expiresAt`
// +kubebuilder:printcolumn:name="Secret",type=string,JSONPath=`.spec.secretRef.name`,priority=1
// +kubebuilder:printcolumn:name="Fingerprint",type=string,JSONPath=`.status.fingerprint`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type PushCertificate struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec PushCertificateSpec `json:"spec"`
	// +optional
	Status PushCertificateStatus `json:"status,omitempty"`
}

// PushCertificateList is a list of PushCertificates.
// +kubebuilder:object:root=true
type PushCertificateList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []PushCertificate `json:"items"`
}
