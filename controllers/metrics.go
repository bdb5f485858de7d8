package controllers

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	pushv1 "github.com/imcloud/im-push-operator/api/v1alpha1"
)

// Metrics the alert rules in config/prometheus read.
var (
	certReady = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "impush_certificate_ready",
		Help: "1 when the PushCertificate is Ready, else 0.",
	}, []string{"namespace", "name", "provider"})
	certExpiry = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "impush_certificate_expiry_timestamp_seconds",
		Help: "When the PushCertificate's credential expires (certificate-based credentials only).",
	}, []string{"namespace", "name", "provider"})
	tenantReady = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "impush_tenant_ready",
		Help: "1 when the AppTenant is Ready, else 0.",
	}, []string{"namespace", "name", "app_key"})
)

func init() {
	metrics.Registry.MustRegister(certReady, certExpiry, tenantReady)
}

func certificateMetrics(pc *pushv1.PushCertificate, st *pushv1.PushCertificateStatus) {
	labels := prometheus.Labels{"namespace": pc.Namespace, "name": pc.Name, "provider": string(pc.Spec.Provider)}
	certReady.With(labels).Set(boolGauge(conditionReason(st.Conditions, pushv1.ConditionReady) == pushv1.ReasonValid))
	if st.ExpiresAt != nil {
		certExpiry.With(labels).Set(float64(st.ExpiresAt.Unix()))
	} else {
		certExpiry.Delete(labels)
	}
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
