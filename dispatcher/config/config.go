// Package config is the versioned contract between the operator and the
// dispatcher: the operator renders a Config into the tenant's config Secret
// (key SecretKey) and every dispatcher replica gets and watches that Secret by
// name. Credentials travel inside it, so the Secret is the only place they sit
// besides the user's own credential Secrets.
package config

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Version is the schema version of Config. A dispatcher refuses a config of
// another version (and keeps running the last good one).
const Version = "dispatcher.push.imcloud.io/v1"

// SecretKey is the key of the config Secret that holds the JSON document.
const SecretKey = "config.json"

// Provider names; the same strings as the PushCertificate provider enum.
type Provider string

const (
	APNs   Provider = "APNs"
	FCM    Provider = "FCM"
	Huawei Provider = "Huawei"
	Honor  Provider = "Honor"
	Xiaomi Provider = "Xiaomi"
	OPPO   Provider = "OPPO"
	Vivo   Provider = "Vivo"
	Meizu  Provider = "Meizu"
)

// Providers lists every provider, in the order vendor channels are preferred
// over FCM (VendorFirst); APNs is only ever the binding of an iOS device.
var Providers = []Provider{Huawei, Honor, Xiaomi, OPPO, Vivo, Meizu, FCM, APNs}

// Config is everything one dispatcher replica needs to serve one tenant.
type Config struct {
	Version   string `json:"version"`
	Tenant    string `json:"tenant"`
	Namespace string `json:"namespace"`
	AppKey    string `json:"appKey"`
	// Replicas is the replica count the rate limits were divided by.
	Replicas     int32         `json:"replicas"`
	Certificates []Certificate `json:"certificates"`
	Policy       Policy        `json:"policy"`
	TokenStore   TokenStore    `json:"tokenStore"`
	// AuthSecretName is the Secret holding the API bearer token (key AuthTokenKey).
	AuthSecretName string `json:"authSecretName"`
}

// AuthTokenKey is the key of the API-token Secret.
const AuthTokenKey = "token"

// Certificate is one provider credential, resolved from a Ready PushCertificate
// and the data of its Secret.
type Certificate struct {
	// Name is the certificateName the client SDK uploads with its token.
	Name string `json:"name"`
	// Resource is the PushCertificate object's name (for logs and metrics).
	Resource string   `json:"resource"`
	Provider Provider `json:"provider"`
	// Fingerprint is the hash of Data that the operator validated.
	Fingerprint string `json:"fingerprint"`
	// Endpoint, when set, replaces every host of the provider (auth and send);
	// paths stay the provider's own. Used for private gateways and the fakes.
	Endpoint string `json:"endpoint,omitempty"`
	// CABundle is PEM; the endpoint's TLS chain must verify against it or the
	// system roots. TLS verification is never skipped.
	CABundle string `json:"caBundle,omitempty"`
	// Data is the credential Secret's data (keys per DESIGN.md's table).
	Data map[string][]byte `json:"data"`
	// RateLimit is this replica's share of the tenant-wide per-second limit
	// (0 = unlimited); DailyCap is the tenant-wide daily cap (0 = none).
	RateLimit float64 `json:"rateLimit,omitempty"`
	DailyCap  int64   `json:"dailyCap,omitempty"`

	APNs   *APNsSpec   `json:"apns,omitempty"`
	FCM    *FCMSpec    `json:"fcm,omitempty"`
	Huawei *HuaweiSpec `json:"huawei,omitempty"`
	Honor  *HonorSpec  `json:"honor,omitempty"`
	Xiaomi *XiaomiSpec `json:"xiaomi,omitempty"`
	OPPO   *OPPOSpec   `json:"oppo,omitempty"`
	Vivo   *VivoSpec   `json:"vivo,omitempty"`
	Meizu  *MeizuSpec  `json:"meizu,omitempty"`
}

// Secret keys per provider (DESIGN.md "Provider Secret keys").
const (
	KeyAPNsAuthKey     = "authKey"
	KeyAPNsP12         = "certificate.p12"
	KeyAPNsP12Password = "password"
	KeyTLSCert         = "tls.crt"
	KeyTLSKey          = "tls.key"
	KeyFCMServiceAcct  = "serviceAccount.json"
	KeyClientSecret    = "clientSecret" // Huawei, Honor
	KeyAppSecret       = "appSecret"    // Xiaomi, vivo, Meizu
	KeyAppKey          = "appKey"       // OPPO, vivo
	KeyMasterSecret    = "masterSecret" // OPPO
)

type APNsAuthType string

const (
	APNsToken       APNsAuthType = "Token"
	APNsCertificate APNsAuthType = "Certificate"
)

type APNsSpec struct {
	AuthType    APNsAuthType `json:"authType"`
	TeamID      string       `json:"teamID,omitempty"`
	KeyID       string       `json:"keyID,omitempty"`
	BundleID    string       `json:"bundleID"`
	Environment string       `json:"environment"` // Production | Development
}

type FCMSpec struct {
	ProjectID string `json:"projectID,omitempty"`
}

type HuaweiSpec struct {
	AppID    string `json:"appID"`
	ClientID string `json:"clientID,omitempty"`
}

type HonorSpec struct {
	AppID    string `json:"appID"`
	ClientID string `json:"clientID"`
}

type XiaomiSpec struct {
	PackageName string `json:"packageName"`
	Region      string `json:"region,omitempty"`
	ChannelID   string `json:"channelID,omitempty"`
}

type OPPOSpec struct {
	ChannelID string `json:"channelID,omitempty"`
}

type VivoSpec struct {
	AppID string `json:"appID"`
}

type MeizuSpec struct {
	AppID string `json:"appID"`
}

// Policy is the rendered PushPolicy.
type Policy struct {
	MultiDevice        string `json:"multiDevice"`        // AllOffline | AnyOffline
	ProviderPreference string `json:"providerPreference"` // VendorFirst | FCMFirst
	ShowContent        bool   `json:"showContent"`
	// Templates: Language "" is the default; Go text/template strings.
	Templates []Template `json:"templates"`
	// HiddenTitle/HiddenBody are rendered when ShowContent is false.
	HiddenTitle string      `json:"hiddenTitle"`
	HiddenBody  string      `json:"hiddenBody"`
	Sound       string      `json:"sound,omitempty"`
	Badge       bool        `json:"badge"`
	QuietHours  *QuietHours `json:"quietHours,omitempty"`

	TTL            metav1.Duration `json:"ttl"`
	MaxAttempts    int32           `json:"maxAttempts"`
	BackoffInitial metav1.Duration `json:"backoffInitial"`
	BackoffMax     metav1.Duration `json:"backoffMax"`

	Classification Classification `json:"classification"`
}

type Template struct {
	Language string `json:"language,omitempty"`
	Title    string `json:"title"`
	Body     string `json:"body"`
}

// QuietHours: Start == End means no quiet hours. Times are "HH:MM".
type QuietHours struct {
	Start                string `json:"start"`
	End                  string `json:"end"`
	TimeZone             string `json:"timeZone"`
	MentionsBreakThrough bool   `json:"mentionsBreakThrough"`
}

// Classification holds the values each vendor needs so an IM message is not
// treated as marketing (providers.md §9).
type Classification struct {
	HuaweiCategory     string `json:"huaweiCategory"`     // IM
	HonorImportance    string `json:"honorImportance"`    // NORMAL
	OPPOCategory       string `json:"oppoCategory"`       // IM
	OPPONotifyLevel    int32  `json:"oppoNotifyLevel"`    // 2
	VivoCategory       string `json:"vivoCategory"`       // IM
	VivoClassification int32  `json:"vivoClassification"` // 1
	MeizuNoticeMsgType int32  `json:"meizuNoticeMsgType"` // 1
}

// TokenStore describes the tenant's shard Secrets.
type TokenStore struct {
	Shards int32 `json:"shards"`
	// ShardPrefix + fmt.Sprintf("%03d", i) is shard i's Secret name.
	ShardPrefix       string `json:"shardPrefix"`
	MaxDevicesPerUser int32  `json:"maxDevicesPerUser"`
	MaxShardBytes     int64  `json:"maxShardBytes"`
	// WriteBudgetBytesPerSecond bounds this replica's Secret update request
	// bytes into the API server: the AppTenant's tenant-wide budget divided by
	// the replica count. Over any T seconds a replica sends at most
	// (T+1)×budget bytes.
	WriteBudgetBytesPerSecond int64 `json:"writeBudgetBytesPerSecond"`
}

// ShardName returns the name of shard i.
func (t TokenStore) ShardName(i int) string { return fmt.Sprintf("%s%03d", t.ShardPrefix, i) }

// ShardNames returns every shard's Secret name.
func (t TokenStore) ShardNames() []string {
	names := make([]string, t.Shards)
	for i := range names {
		names[i] = t.ShardName(i)
	}
	return names
}

// ShardPrefix returns the shard Secret name prefix for a tenant.
func ShardPrefix(tenant string) string { return tenant + "-devices-" }

// ConfigSecretName and AuthSecretName name the tenant's operator-written Secrets.
func ConfigSecretName(tenant string) string { return tenant + "-dispatcher-config" }
func AuthSecretName(tenant string) string   { return tenant + "-dispatcher-auth" }

// Defaults applied by Load for anything the renderer left zero.
const (
	DefaultMaxDevicesPerUser = 10
	DefaultMaxShardBytes     = 256 << 10
	MaxShardBytesLimit       = 1000 << 10
	// DefaultWriteBudget is one replica's share when the config leaves it
	// zero: the AppTenant default of 1 MiB/s over its default 2 replicas.
	DefaultWriteBudget = 512 << 10
)

// Parse decodes and validates a config document.
func Parse(data []byte) (*Config, error) {
	var c Config
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("decoding dispatcher config: %w", err)
	}
	if c.Version != Version {
		return nil, fmt.Errorf("dispatcher config version %q is not %q", c.Version, Version)
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// Validate checks what the dispatcher relies on.
func (c *Config) Validate() error {
	var errs []error
	if c.Tenant == "" || c.Namespace == "" {
		errs = append(errs, errors.New("tenant and namespace are required"))
	}
	if c.TokenStore.Shards < 1 {
		errs = append(errs, errors.New("tokenStore.shards must be at least 1"))
	}
	if c.TokenStore.MaxShardBytes > MaxShardBytesLimit {
		errs = append(errs, fmt.Errorf("tokenStore.maxShardBytes %d is above %d", c.TokenStore.MaxShardBytes, MaxShardBytesLimit))
	}
	seen := map[string]bool{}
	for _, cert := range c.Certificates {
		if seen[cert.Name] {
			errs = append(errs, fmt.Errorf("certificate name %q appears twice", cert.Name))
		}
		seen[cert.Name] = true
	}
	return errors.Join(errs...)
}

// WithDefaults returns a copy with zero values filled in.
func (c Config) WithDefaults() Config {
	if c.TokenStore.MaxDevicesPerUser == 0 {
		c.TokenStore.MaxDevicesPerUser = DefaultMaxDevicesPerUser
	}
	if c.TokenStore.MaxShardBytes == 0 {
		c.TokenStore.MaxShardBytes = DefaultMaxShardBytes
	}
	if c.TokenStore.WriteBudgetBytesPerSecond == 0 {
		c.TokenStore.WriteBudgetBytesPerSecond = DefaultWriteBudget
	}
	p := &c.Policy
	if p.MaxAttempts == 0 {
		p.MaxAttempts = 5
	}
	if p.TTL.Duration == 0 {
		p.TTL.Duration = 24 * time.Hour
	}
	if p.BackoffInitial.Duration == 0 {
		p.BackoffInitial.Duration = time.Second
	}
	if p.BackoffMax.Duration == 0 {
		p.BackoffMax.Duration = 5 * time.Minute
	}
	return c
}

// Certificate returns the certificate with the given certificateName.
func (c *Config) Certificate(name string) (*Certificate, bool) {
	for i := range c.Certificates {
		if c.Certificates[i].Name == name {
			return &c.Certificates[i], true
		}
	}
	return nil, false
}

// Marshal encodes the config deterministically (sorted maps, stable order).
func (c *Config) Marshal() ([]byte, error) {
	sorted := *c
	sorted.Certificates = append([]Certificate(nil), c.Certificates...)
	sort.Slice(sorted.Certificates, func(i, j int) bool { return sorted.Certificates[i].Name < sorted.Certificates[j].Name })
	return json.Marshal(sorted)
}

// Hash is the hex SHA-256 of a rendered document; the dispatcher reports the
// hash it runs.
func Hash(doc []byte) string {
	sum := sha256.Sum256(doc)
	return hex.EncodeToString(sum[:])
}

// Fingerprint hashes credential data independent of map order; it is what the
// PushCertificate status shows and what the renderer compares against.
func Fingerprint(data map[string][]byte) string {
	keys := make([]string, 0, len(data))
	for k := range data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	h := sha256.New()
	for _, k := range keys {
		fmt.Fprintf(h, "%d:%s%d:", len(k), k, len(data[k]))
		h.Write(data[k])
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))[:32]
}
