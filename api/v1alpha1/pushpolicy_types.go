package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// MultiDeviceRule decides which of a user's devices get a push.
// +kubebuilder:validation:Enum=AllOffline;AnyOffline
type MultiDeviceRule string

const (
	// AllOffline pushes only when no device of the user is online.
	AllOffline MultiDeviceRule = "AllOffline"
	// AnyOffline pushes to each offline device.
	AnyOffline MultiDeviceRule = "AnyOffline"
)

// ProviderPreference orders the bindings of one device.
// +kubebuilder:validation:Enum=VendorFirst;FCMFirst
type ProviderPreference string

const (
	VendorFirst ProviderPreference = "VendorFirst"
	FCMFirst    ProviderPreference = "FCMFirst"
)

// PushPolicySpec says how offline push behaves for the tenants that use it.
type PushPolicySpec struct {
	// MultiDevice: AllOffline pushes only when no device of the user is online;
	// AnyOffline pushes to each offline device.
	// +kubebuilder:default=AllOffline
	// +optional
	MultiDevice MultiDeviceRule `json:"multiDevice,omitempty"`
	// ProviderPreference orders an Android device's bindings: VendorFirst tries
	// the phone maker's channel before FCM; FCMFirst the reverse.
	// +kubebuilder:default=VendorFirst
	// +optional
	ProviderPreference ProviderPreference `json:"providerPreference,omitempty"`
	// Notification is how a notification looks.
	// +kubebuilder:default={}
	// +optional
	Notification NotificationSpec `json:"notification,omitempty"`
	// QuietHours is the default do-not-disturb window; a user's own settings
	// override it.
	// +optional
	QuietHours *QuietHoursSpec `json:"quietHours,omitempty"`
	// Delivery bounds retries, lifetime and rates.
	// +kubebuilder:default={}
	// +optional
	Delivery DeliverySpec `json:"delivery,omitempty"`
	// Classification holds the values each vendor requires so IM messages are
	// not treated as marketing (defaults mark them as IM).
	// +kubebuilder:default={}
	// +optional
	Classification ClassificationSpec `json:"classification,omitempty"`
}

// NotificationSpec is the content of a notification. Templates are Go
// text/template over .Sender.ID, .Sender.DisplayName, .Conversation.ID,
// .Conversation.Type, .Conversation.Name, .Text, .Mentioned, .MentionAll and
// .Recipient.
type NotificationSpec struct {
	// ShowContent false sends hiddenTitle/hiddenBody instead of the message.
	// +kubebuilder:default=true
	// +optional
	ShowContent *bool `json:"showContent,omitempty"`
	// Title is the default title template.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Title string `json:"title,omitempty"`
	// Body is the default body template.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Body string `json:"body,omitempty"`
	// Translations are per-language title/body templates, picked by the
	// user's language (exact, then base language, then the default).
	// +optional
	// +listType=map
	// +listMapKey=language
	// +kubebuilder:validation:MaxItems=64
	Translations []Translation `json:"translations,omitempty"`
	// HiddenTitle is the title template when showContent is false.
	// +kubebuilder:default="New message"
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	HiddenTitle string `json:"hiddenTitle,omitempty"`
	// HiddenBody is the body template when showContent is false.
	// +kubebuilder:default="You have a new message"
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	HiddenBody string `json:"hiddenBody,omitempty"`
	// Sound is the notification sound ("default" plays the system sound).
	// +kubebuilder:default=default
	// +optional
	// +kubebuilder:validation:MaxLength=64
	Sound string `json:"sound,omitempty"`
	// Badge sets the app icon badge to the number the IM server sends.
	// +kubebuilder:default=true
	// +optional
	Badge *bool `json:"badge,omitempty"`
}

// Translation is a title/body template pair for one language.
type Translation struct {
	// Language is a BCP 47 tag such as "zh" or "zh-Hant".
	// +required
	// +kubebuilder:validation:Pattern=`^[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8})*$`
	Language string `json:"language"`
	// Title template.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Title string `json:"title,omitempty"`
	// Body template.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Body string `json:"body,omitempty"`
}

// QuietHoursSpec is a daily do-not-disturb window; start = end means none,
// end before start crosses midnight.
type QuietHoursSpec struct {
	// Start is HH:MM.
	// +required
	// +kubebuilder:validation:Pattern=`^([01][0-9]|2[0-3]):[0-5][0-9]$`
	Start string `json:"start"`
	// End is HH:MM.
	// +required
	// +kubebuilder:validation:Pattern=`^([01][0-9]|2[0-3]):[0-5][0-9]$`
	End string `json:"end"`
	// TimeZone is an IANA zone such as Asia/Shanghai.
	// +kubebuilder:default=UTC
	// +optional
	// +kubebuilder:validation:MaxLength=64
	TimeZone string `json:"timeZone,omitempty"`
	// MentionsBreakThrough lets a message that mentions the user through.
	// +kubebuilder:default=true
	// +optional
	MentionsBreakThrough *bool `json:"mentionsBreakThrough,omitempty"`
}

// DeliverySpec bounds retries, lifetime and rates.
// +kubebuilder:validation:XValidation:rule="!has(self.backoff) || !has(self.backoff.initial) || !has(self.backoff.max) || duration(self.backoff.initial) <= duration(self.backoff.max)",message="delivery.backoff.initial must not exceed delivery.backoff.max"
type DeliverySpec struct {
	// TTL is how long a notification may wait for delivery.
	// +kubebuilder:default="24h"
	// +optional
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$`
	TTL string `json:"ttl,omitempty"`
	// MaxAttempts bounds provider calls per binding.
	// +kubebuilder:default=5
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=20
	// +optional
	MaxAttempts int32 `json:"maxAttempts,omitempty"`
	// Backoff between attempts (exponential with jitter; Retry-After wins).
	// +kubebuilder:default={}
	// +optional
	Backoff BackoffSpec `json:"backoff,omitempty"`
	// RateLimits per credential, tenant-wide (divided among replicas).
	// +optional
	// +listType=map
	// +listMapKey=certificateName
	// +kubebuilder:validation:MaxItems=64
	RateLimits []RateLimit `json:"rateLimits,omitempty"`
}

// BackoffSpec is an exponential backoff.
type BackoffSpec struct {
	// Initial delay.
	// +kubebuilder:default="1s"
	// +optional
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$`
	Initial string `json:"initial,omitempty"`
	// Max delay.
	// +kubebuilder:default="5m"
	// +optional
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$`
	Max string `json:"max,omitempty"`
}

// RateLimit caps sends through one credential.
type RateLimit struct {
	// CertificateName is the credential's certificateName.
	// +required
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9_.-]{1,32}$`
	CertificateName string `json:"certificateName"`
	// PerSecond is the tenant-wide send rate.
	// +optional
	// +kubebuilder:validation:Minimum=1
	PerSecond int32 `json:"perSecond,omitempty"`
	// DailyCap is the tenant-wide daily send count (vendors with a daily quota).
	// +optional
	// +kubebuilder:validation:Minimum=1
	DailyCap int64 `json:"dailyCap,omitempty"`
}

// ClassificationSpec holds per-vendor IM classification (providers.md §9).
type ClassificationSpec struct {
	// HuaweiCategory is android.category (IM needs approval in the console).
	// +kubebuilder:default=IM
	// +optional
	// +kubebuilder:validation:Pattern=`^[A-Z_]{1,32}$`
	HuaweiCategory string `json:"huaweiCategory,omitempty"`
	// HonorImportance is NORMAL (service and communication) or LOW (marketing).
	// +kubebuilder:default=NORMAL
	// +kubebuilder:validation:Enum=NORMAL;LOW
	// +optional
	HonorImportance string `json:"honorImportance,omitempty"`
	// OPPOCategory is notification.category.
	// +kubebuilder:default=IM
	// +optional
	// +kubebuilder:validation:Pattern=`^[A-Z_]{1,32}$`
	OPPOCategory string `json:"oppoCategory,omitempty"`
	// OPPONotifyLevel is 1 (bar), 2 (+lock screen) or 16 (+banner, ring).
	// +kubebuilder:default=2
	// +kubebuilder:validation:Enum=1;2;16
	// +optional
	OPPONotifyLevel int32 `json:"oppoNotifyLevel,omitempty"`
	// VivoCategory is category (IM for chat).
	// +kubebuilder:default=IM
	// +optional
	// +kubebuilder:validation:Pattern=`^[A-Z_]{1,32}$`
	VivoCategory string `json:"vivoCategory,omitempty"`
	// VivoClassification is 0 (operational) or 1 (system).
	// +kubebuilder:default=1
	// +kubebuilder:validation:Enum=0;1
	// +optional
	VivoClassification *int32 `json:"vivoClassification,omitempty"`
	// MeizuNoticeMsgType is 1 (private, for IM) or 0 (public).
	// +kubebuilder:default=1
	// +kubebuilder:validation:Enum=0;1
	// +optional
	MeizuNoticeMsgType *int32 `json:"meizuNoticeMsgType,omitempty"`
}

// PushPolicy reasons.
const (
	ReasonPolicyValid   = "Valid"
	ReasonInvalidPolicy = "InvalidPolicy"
)

// PushPolicyStatus is the validated state of a policy.
type PushPolicyStatus struct {
	// ObservedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Conditions: Ready (reasons Valid, InvalidPolicy).
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// PushPolicy says how offline push behaves.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=ppol,categories=impush
// +kubebuilder:printcolumn:name="MultiDevice",type=string,JSONPath=`.spec.multiDevice`
// +kubebuilder:printcolumn:name="Preference",type=string,JSONPath=`.spec.providerPreference`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type PushPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +kubebuilder:default={}
	// +optional
	Spec PushPolicySpec `json:"spec,omitempty"`
	// +optional
	Status PushPolicyStatus `json:"status,omitempty"`
}

// PushPolicyList is a list of PushPolicies.
// +kubebuilder:object:root=true
type PushPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []PushPolicy `json:"items"`
}
