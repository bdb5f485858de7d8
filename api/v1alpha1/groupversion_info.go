// Package v1alpha1 contains the im-push-operator API: PushCertificate,
// PushPolicy and AppTenant.
// +kubebuilder:object:generate=true
// +groupName=push.imcloud.io
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// GroupVersion is the API group and version of these kinds.
	GroupVersion = schema.GroupVersion{Group: "push.imcloud.io", Version: "v1alpha1"}

	// SchemeBuilder registers the kinds with a scheme. It is apimachinery's
	// builder, not controller-runtime's (deprecated there), so that importing
	// the API types does not pull in controller-runtime.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)

	// AddToScheme adds the kinds to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion,
		&PushCertificate{}, &PushCertificateList{},
		&PushPolicy{}, &PushPolicyList{},
		&AppTenant{}, &AppTenantList{},
	)
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
