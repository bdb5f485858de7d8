package fcm

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"

	"github.com/imcloud/im-push-operator/dispatcher/config"
	"github.com/imcloud/im-push-operator/dispatcher/providers"
)

// serviceAccount is what this package reads from serviceAccount.json.
type serviceAccount struct {
	Type        string `json:"type"`
	ProjectID   string `json:"project_id"`
	ClientEmail string `json:"client_email"`
	PrivateKey  string `json:"private_key"`
	TokenURI    string `json:"token_uri"`
}

// account is a checked service account and the project sends go to.
type account struct {
	email     string
	projectID string
}

// Validate checks serviceAccount.json offline: a service_account with a
// client_email and an RSA private key, and a project id from the spec or the
// JSON. Subject is the client_email.
func Validate(cert *config.Certificate) (providers.CredentialInfo, error) {
	a, err := load(cert)
	if err != nil {
		return providers.CredentialInfo{}, err
	}
	return providers.CredentialInfo{Subject: a.email}, nil
}

func load(cert *config.Certificate) (*account, error) {
	const key = config.KeyFCMServiceAcct
	if err := providers.RequireKeys(cert.Data, key); err != nil {
		return nil, err
	}
	var sa serviceAccount
	if err := json.Unmarshal(cert.Data[key], &sa); err != nil {
		return nil, providers.Invalid(key, "not JSON: %v", err)
	}
	if sa.Type != "service_account" {
		return nil, providers.Invalid(key, "type is %q, want service_account", sa.Type)
	}
	if sa.ClientEmail == "" {
		return nil, providers.Invalid(key, "client_email is empty")
	}
	if err := checkRSAKey(sa.PrivateKey); err != nil {
		return nil, providers.Invalid(key, "private_key: %v", err)
	}
	a := &account{email: sa.ClientEmail, projectID: sa.ProjectID}
	if cert.FCM != nil && cert.FCM.ProjectID != "" {
		a.projectID = cert.FCM.ProjectID
	}
	if a.projectID == "" {
		return nil, providers.Invalid(key, "project_id is empty and the certificate sets no projectID")
	}
	return a, nil
}

// checkRSAKey accepts what golang.org/x/oauth2 signs with: an RSA key in
// PKCS#8 (what Google issues) or PKCS#1 PEM.
func checkRSAKey(p string) error {
	block, _ := pem.Decode([]byte(p))
	if block == nil {
		return fmt.Errorf("no PEM block")
	}
	if k, err := x509.ParsePKCS8PrivateKey(block.Bytes); err == nil {
		if _, ok := k.(*rsa.PrivateKey); !ok {
			return fmt.Errorf("a %T, not an RSA key", k)
		}
		return nil
	}
	if _, err := x509.ParsePKCS1PrivateKey(block.Bytes); err != nil {
		return fmt.Errorf("not a PKCS#8 or PKCS#1 RSA private key")
	}
	return nil
}
