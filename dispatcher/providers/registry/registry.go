// Package registry maps a provider name to its client constructor and
// credential validator: the dispatcher builds clients with New, the operator
// validates PushCertificates with Validate, so both read credentials with the
// same code.
package registry

import (
	"fmt"

	"github.com/imcloud/im-push-operator/dispatcher/config"
	"github.com/imcloud/im-push-operator/dispatcher/providers"
	"github.com/imcloud/im-push-operator/dispatcher/providers/apns"
	"github.com/imcloud/im-push-operator/dispatcher/providers/fcm"
	"github.com/imcloud/im-push-operator/dispatcher/providers/honor"
	"github.com/imcloud/im-push-operator/dispatcher/providers/huawei"
	"github.com/imcloud/im-push-operator/dispatcher/providers/meizu"
	"github.com/imcloud/im-push-operator/dispatcher/providers/oppo"
	"github.com/imcloud/im-push-operator/dispatcher/providers/vivo"
	"github.com/imcloud/im-push-operator/dispatcher/providers/xiaomi"
)

type entry struct {
	new      func(*config.Certificate, providers.Options) (providers.Client, error)
	validate func(*config.Certificate) (providers.CredentialInfo, error)
}

var entries = map[config.Provider]entry{
	config.APNs:   {apns.New, apns.Validate},
	config.FCM:    {fcm.New, fcm.Validate},
	config.Huawei: {huawei.New, huawei.Validate},
	config.Honor:  {honor.New, honor.Validate},
	config.Xiaomi: {xiaomi.New, xiaomi.Validate},
	config.OPPO:   {oppo.New, oppo.Validate},
	config.Vivo:   {vivo.New, vivo.Validate},
	config.Meizu:  {meizu.New, meizu.Validate},
}

// New builds the client for a certificate.
func New(cert *config.Certificate, opts providers.Options) (providers.Client, error) {
	e, ok := entries[cert.Provider]
	if !ok {
		return nil, fmt.Errorf("certificate %q: unknown provider %q", cert.Name, cert.Provider)
	}
	c, err := e.new(cert, opts)
	if err != nil {
		return nil, fmt.Errorf("certificate %q (%s): %w", cert.Name, cert.Provider, err)
	}
	return c, nil
}

// Validate checks a certificate's credential without network calls.
func Validate(cert *config.Certificate) (providers.CredentialInfo, error) {
	e, ok := entries[cert.Provider]
	if !ok {
		return providers.CredentialInfo{}, fmt.Errorf("unknown provider %q", cert.Provider)
	}
	return e.validate(cert)
}
