package apns

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"math/big"
	"time"

	"software.sslmate.com/src/go-pkcs12"

	"github.com/imcloud/im-push-operator/dispatcher/config"
)

// oidUID is the subject attribute Apple puts the bundle id in.
var oidUID = asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 1}

// TokenCredential returns the Secret data (a fresh P-256 .p8 under authKey)
// and a token-auth spec with random team and key ids for bundleID.
func TokenCredential(bundleID string) (map[string][]byte, *config.APNsSpec, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	p8 := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	spec := &config.APNsSpec{
		AuthType: config.APNsToken, TeamID: appleID(), KeyID: appleID(),
		BundleID: bundleID, Environment: "Development",
	}
	return map[string][]byte{config.KeyAPNsAuthKey: p8}, spec, nil
}

// P12Credential returns the Secret data (certificate.p12 encrypted with
// go-pkcs12's Modern encoder, and its password) of a self-signed APNs client
// certificate for bundleID valid until notAfter, and a certificate-auth spec.
func P12Credential(bundleID, password string, notAfter time.Time) (map[string][]byte, *config.APNsSpec, error) {
	cert, key, err := ClientCertificate(bundleID, notAfter)
	if err != nil {
		return nil, nil, err
	}
	p12, err := pkcs12.Modern.Encode(key, cert, nil, password)
	if err != nil {
		return nil, nil, err
	}
	data := map[string][]byte{config.KeyAPNsP12: p12, config.KeyAPNsP12Password: []byte(password)}
	return data, certificateSpec(bundleID), nil
}

// PEMCredential is P12Credential as a tls.crt/tls.key pair.
func PEMCredential(bundleID string, notAfter time.Time) (map[string][]byte, *config.APNsSpec, error) {
	cert, key, err := ClientCertificate(bundleID, notAfter)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	data := map[string][]byte{
		config.KeyTLSCert: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}),
		config.KeyTLSKey:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}),
	}
	return data, certificateSpec(bundleID), nil
}

func certificateSpec(bundleID string) *config.APNsSpec {
	return &config.APNsSpec{AuthType: config.APNsCertificate, BundleID: bundleID, Environment: "Development"}
}

// ClientCertificate makes a self-signed client certificate shaped like an
// Apple push certificate: UID = bundleID, CN "Apple Development IOS Push
// Services: <bundleID>". P-256 keeps generation fast; Apple issues RSA.
func ClientCertificate(bundleID string, notAfter time.Time) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		return nil, nil, err
	}
	notBefore := notAfter.Add(-365 * 24 * time.Hour)
	if now := time.Now(); notBefore.After(now) {
		notBefore = now.Add(-time.Hour)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			CommonName:         "Apple Development IOS Push Services: " + bundleID,
			OrganizationalUnit: []string{appleID()},
			ExtraNames:         []pkix.AttributeTypeAndValue{{Type: oidUID, Value: bundleID}},
		},
		NotBefore:   notBefore,
		NotAfter:    notAfter,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	return cert, key, nil
}

// appleID returns a random 10-character team or key id.
func appleID() string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	b := make([]byte, 10)
	for i := range b {
		n, err := rand.Int(rand.Reader, big.NewInt(int64(len(alphabet))))
		if err != nil {
			panic(fmt.Sprintf("crypto/rand: %v", err))
		}
		b[i] = alphabet[n.Int64()]
	}
	return string(b)
}

// clientChain returns the certificates in a certificate-auth Secret.
func clientChain(data map[string][]byte) []*x509.Certificate {
	if p12 := data[config.KeyAPNsP12]; len(p12) > 0 {
		_, leaf, chain, err := pkcs12.DecodeChain(p12, string(data[config.KeyAPNsP12Password]))
		if err != nil {
			return nil
		}
		return append([]*x509.Certificate{leaf}, chain...)
	}
	pair, err := tls.X509KeyPair(data[config.KeyTLSCert], data[config.KeyTLSKey])
	if err != nil {
		return nil
	}
	var certs []*x509.Certificate
	for _, der := range pair.Certificate {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil
		}
		certs = append(certs, c)
	}
	return certs
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
