package apns

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"regexp"

	"github.com/sideshow/apns2/token"
	"software.sslmate.com/src/go-pkcs12"

	"github.com/imcloud/im-push-operator/dispatcher/config"
	"github.com/imcloud/im-push-operator/dispatcher/providers"
)

// Apple team and key ids are 10 upper-case alphanumerics.
var appleID = regexp.MustCompile(`^[A-Z0-9]{10}$`)

// oidUID is the subject attribute Apple puts the bundle id (the default
// topic) in.
var oidUID = asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 1}

// credential is a parsed APNs credential: either a .p8 signing key or a TLS
// client certificate.
type credential struct {
	spec config.APNsSpec
	// authKey is set for token auth.
	authKey *ecdsa.PrivateKey
	// client is set for certificate auth.
	client *tls.Certificate
	// topic is the bundle id pushes go to (spec, else the certificate's UID).
	topic string
	info  providers.CredentialInfo
}

// Validate checks the APNs spec and Secret keys offline: the .p8 must be a
// P-256 key, the .p12 must open with its password, the PEM pair must match.
// A certificate's NotAfter is returned in ExpiresAt even when it is in the
// past: deciding against a clock is the caller's business.
func Validate(cert *config.Certificate) (providers.CredentialInfo, error) {
	c, err := load(cert)
	if err != nil {
		return providers.CredentialInfo{}, err
	}
	return c.info, nil
}

func specError(format string, args ...any) *providers.CredentialError {
	return &providers.CredentialError{Reason: providers.ReasonInvalidCredentials, Message: "apns: " + fmt.Sprintf(format, args...)}
}

func load(cert *config.Certificate) (*credential, error) {
	if cert.APNs == nil {
		return nil, specError("the certificate has no apns block")
	}
	c := &credential{spec: *cert.APNs}
	switch c.spec.Environment {
	case "", environmentProduction, environmentDevelopment:
	default:
		return nil, specError("environment %q is neither %s nor %s", c.spec.Environment, environmentProduction, environmentDevelopment)
	}
	switch c.spec.AuthType {
	case config.APNsToken:
		if err := c.loadToken(cert.Data); err != nil {
			return nil, err
		}
	case config.APNsCertificate:
		if err := c.loadCertificate(cert.Data); err != nil {
			return nil, err
		}
	default:
		return nil, specError("authType %q is neither %s nor %s", c.spec.AuthType, config.APNsToken, config.APNsCertificate)
	}
	c.info.Subject = c.topic
	return c, nil
}

func (c *credential) loadToken(data map[string][]byte) error {
	if !appleID.MatchString(c.spec.TeamID) {
		return specError("teamID %q is not 10 upper-case letters or digits", c.spec.TeamID)
	}
	if !appleID.MatchString(c.spec.KeyID) {
		return specError("keyID %q is not 10 upper-case letters or digits", c.spec.KeyID)
	}
	if c.spec.BundleID == "" {
		return specError("bundleID is required with token authentication")
	}
	if err := providers.RequireKeys(data, config.KeyAPNsAuthKey); err != nil {
		return err
	}
	key, err := token.AuthKeyFromBytes(data[config.KeyAPNsAuthKey])
	if err != nil {
		return providers.Invalid(config.KeyAPNsAuthKey, "not a PKCS#8 EC private key (.p8): %v", err)
	}
	if key.Curve != elliptic.P256() {
		return providers.Invalid(config.KeyAPNsAuthKey, "the key is on %s, APNs signs with P-256", key.Curve.Params().Name)
	}
	c.authKey = key
	c.topic = c.spec.BundleID
	return nil
}

func (c *credential) loadCertificate(data map[string][]byte) error {
	var (
		pair tls.Certificate
		err  error
	)
	switch {
	case len(data[config.KeyAPNsP12]) > 0:
		// An empty password is legitimate for a .p12, an absent key is not:
		// it is more likely a Secret written with the wrong key name.
		password, ok := data[config.KeyAPNsP12Password]
		if !ok {
			return providers.MissingKey(config.KeyAPNsP12Password)
		}
		pair, err = fromP12(data[config.KeyAPNsP12], string(password))
		if err != nil {
			return err
		}
	case len(data[config.KeyTLSCert]) > 0:
		if err := providers.RequireKeys(data, config.KeyTLSKey); err != nil {
			return err
		}
		pair, err = tls.X509KeyPair(data[config.KeyTLSCert], data[config.KeyTLSKey])
		if err != nil {
			return providers.Invalid(config.KeyTLSKey, "does not form a key pair with %s: %v", config.KeyTLSCert, err)
		}
	default:
		return providers.MissingKey(config.KeyAPNsP12)
	}
	leaf := pair.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return providers.Invalid(config.KeyTLSCert, "unparseable certificate: %v", err)
		}
		pair.Leaf = leaf
	}
	c.client = &pair
	c.topic = c.spec.BundleID
	if c.topic == "" {
		c.topic = subjectUID(leaf)
	}
	if c.topic == "" {
		return specError("bundleID is empty and the certificate subject has no UID to take the topic from")
	}
	notAfter := leaf.NotAfter
	c.info.ExpiresAt = &notAfter
	return nil
}

func fromP12(p12 []byte, password string) (tls.Certificate, error) {
	key, leaf, chain, err := pkcs12.DecodeChain(p12, password)
	if errors.Is(err, pkcs12.ErrIncorrectPassword) {
		return tls.Certificate{}, providers.Invalid(config.KeyAPNsP12Password, "does not open %s", config.KeyAPNsP12)
	}
	if err != nil {
		return tls.Certificate{}, providers.Invalid(config.KeyAPNsP12, "cannot be decoded: %v", err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return tls.Certificate{}, providers.Invalid(config.KeyAPNsP12, "holds a %T, not a signing key", key)
	}
	if pub, ok := signer.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(leaf.PublicKey) {
		return tls.Certificate{}, providers.Invalid(config.KeyAPNsP12, "its private key does not match its certificate")
	}
	pair := tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: key, Leaf: leaf}
	for _, ca := range chain {
		pair.Certificate = append(pair.Certificate, ca.Raw)
	}
	return pair, nil
}

func subjectUID(cert *x509.Certificate) string {
	for _, n := range cert.Subject.Names {
		if n.Type.Equal(oidUID) {
			if s, ok := n.Value.(string); ok {
				return s
			}
		}
	}
	return ""
}
