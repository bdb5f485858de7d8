package fcm

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"

	"github.com/imcloud/im-push-operator/dispatcher/config"
	"github.com/imcloud/im-push-operator/dispatcher/providers/fake"
)

// TestCredential returns the Secret data of a new service account of
// projectID (a fresh RSA 2048 key, serviceAccount.json shaped like Google's)
// whose token_uri is tokenURI, and an FCM spec that leaves the project to the
// JSON. Pass the fake's URL + "/token" (a certificate's endpoint overrides it
// anyway).
func TestCredential(projectID, tokenURI string) (map[string][]byte, *config.FCMSpec, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	email := "push-" + fake.RandomHex(3) + "@" + projectID + ".iam.gserviceaccount.com"
	sa, err := json.MarshalIndent(map[string]string{
		"type":                        "service_account",
		"project_id":                  projectID,
		"private_key_id":              fake.RandomHex(20),
		"private_key":                 string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"client_email":                email,
		"client_id":                   "1" + fake.RandomHex(10),
		"auth_uri":                    "https://accounts.google.com/o/oauth2/auth",
		"token_uri":                   tokenURI,
		"auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
		"universe_domain":             "googleapis.com",
	}, "", "  ")
	if err != nil {
		return nil, nil, err
	}
	return map[string][]byte{config.KeyFCMServiceAcct: sa}, &config.FCMSpec{}, nil
}
