package fake

import "github.com/imcloud/im-push-operator/dispatcher/config"

// NewCertificate returns a certificate named name for provider holding data
// that points at this fake and trusts its CA; the caller adds the
// provider's spec.
func (s *Server) NewCertificate(name string, provider config.Provider, data map[string][]byte) *config.Certificate {
	return &config.Certificate{
		Name:     name,
		Resource: name,
		Provider: provider,
		Endpoint: s.URL,
		CABundle: string(s.CA.CertPEM),
		Data:     data,
	}
}
