package controllers

import (
	"time"

	pushv1 "github.com/imcloud/im-push-operator/api/v1alpha1"
	"github.com/imcloud/im-push-operator/dispatcher/config"
)

// CertificateConfig turns a PushCertificate and its Secret's data into the
// dispatcher's view of the credential. The same function feeds validation (in
// the PushCertificate controller) and rendering (in the AppTenant controller),
// so what was validated is what the dispatcher runs.
func CertificateConfig(pc *pushv1.PushCertificate, data map[string][]byte) *config.Certificate {
	s := &pc.Spec
	c := &config.Certificate{
		Name:        s.CertificateName,
		Resource:    pc.Name,
		Provider:    config.Provider(s.Provider),
		Fingerprint: config.Fingerprint(data),
		Endpoint:    s.Endpoint,
		CABundle:    s.CABundle,
		Data:        data,
	}
	if a := s.APNs; a != nil {
		c.APNs = &config.APNsSpec{AuthType: config.APNsAuthType(a.AuthType), TeamID: a.TeamID, KeyID: a.KeyID, BundleID: a.BundleID, Environment: string(a.Environment)}
		if c.APNs.AuthType == "" {
			c.APNs.AuthType = config.APNsToken
		}
		if c.APNs.Environment == "" {
			c.APNs.Environment = "Production"
		}
	}
	if f := s.FCM; f != nil {
		c.FCM = &config.FCMSpec{ProjectID: f.ProjectID}
	}
	if h := s.Huawei; h != nil {
		c.Huawei = &config.HuaweiSpec{AppID: h.AppID, ClientID: h.ClientID}
		if c.Huawei.ClientID == "" {
			c.Huawei.ClientID = h.AppID
		}
	}
	if h := s.Honor; h != nil {
		c.Honor = &config.HonorSpec{AppID: h.AppID, ClientID: h.ClientID}
	}
	if x := s.Xiaomi; x != nil {
		c.Xiaomi = &config.XiaomiSpec{PackageName: x.PackageName, Region: string(x.Region), ChannelID: x.ChannelID}
		if c.Xiaomi.Region == "" {
			c.Xiaomi.Region = "China"
		}
	}
	if o := s.OPPO; o != nil {
		c.OPPO = &config.OPPOSpec{ChannelID: o.ChannelID}
	}
	if v := s.Vivo; v != nil {
		c.Vivo = &config.VivoSpec{AppID: v.AppID}
	}
	if m := s.Meizu; m != nil {
		c.Meizu = &config.MeizuSpec{AppID: m.AppID}
	}
	return c
}

// PolicyConfig renders a PushPolicy spec (defaults applied by the API server;
// applied here again so objects created before a default existed still work).
func PolicyConfig(spec *pushv1.PushPolicySpec) config.Policy {
	n := &spec.Notification
	p := config.Policy{
		MultiDevice:        orDefault(string(spec.MultiDevice), string(pushv1.AllOffline)),
		ProviderPreference: orDefault(string(spec.ProviderPreference), string(pushv1.VendorFirst)),
		ShowContent:        boolOr(n.ShowContent, true),
		HiddenTitle:        orDefault(n.HiddenTitle, "New message"),
		HiddenBody:         orDefault(n.HiddenBody, "You have a new message"),
		Sound:              orDefault(n.Sound, "default"),
		Badge:              boolOr(n.Badge, true),
		MaxAttempts:        spec.Delivery.MaxAttempts,
	}
	if n.Title != "" || n.Body != "" {
		p.Templates = append(p.Templates, config.Template{Title: n.Title, Body: n.Body})
	}
	for _, t := range n.Translations {
		p.Templates = append(p.Templates, config.Template{Language: t.Language, Title: t.Title, Body: t.Body})
	}
	if q := spec.QuietHours; q != nil {
		p.QuietHours = &config.QuietHours{Start: q.Start, End: q.End, TimeZone: orDefault(q.TimeZone, "UTC"), MentionsBreakThrough: boolOr(q.MentionsBreakThrough, true)}
	}
	p.TTL.Duration = parseDuration(spec.Delivery.TTL, 24*time.Hour)
	p.BackoffInitial.Duration = parseDuration(spec.Delivery.Backoff.Initial, time.Second)
	p.BackoffMax.Duration = parseDuration(spec.Delivery.Backoff.Max, 5*time.Minute)
	if p.MaxAttempts == 0 {
		p.MaxAttempts = 5
	}
	c := &spec.Classification
	p.Classification = config.Classification{
		HuaweiCategory:     orDefault(c.HuaweiCategory, "IM"),
		HonorImportance:    orDefault(c.HonorImportance, "NORMAL"),
		OPPOCategory:       orDefault(c.OPPOCategory, "IM"),
		OPPONotifyLevel:    c.OPPONotifyLevel,
		VivoCategory:       orDefault(c.VivoCategory, "IM"),
		VivoClassification: int32Or(c.VivoClassification, 1),
		MeizuNoticeMsgType: int32Or(c.MeizuNoticeMsgType, 1),
	}
	if p.Classification.OPPONotifyLevel == 0 {
		p.Classification.OPPONotifyLevel = 2
	}
	return p
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

func boolOr(v *bool, def bool) bool {
	if v == nil {
		return def
	}
	return *v
}

func int32Or(v *int32, def int32) int32 {
	if v == nil {
		return def
	}
	return *v
}

// parseDuration reads a schema-validated duration; the schema's pattern makes
// a parse failure impossible for stored objects, so the default is only a guard.
func parseDuration(s string, def time.Duration) time.Duration {
	if s == "" {
		return def
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return def
	}
	return d
}
