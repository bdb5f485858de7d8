// Package providers declares what the delivery engine needs from a push
// provider: one Send method and a name. Each provider lives in its own
// sub-package (apns, fcm, huawei, honor, xiaomi, oppo, vivo, meizu) and maps the
// provider's answers onto the Outcomes below, as providers.md tabulates.
package providers

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"golang.org/x/net/http2"

	"github.com/imcloud/im-push-operator/dispatcher/config"
)

// Message is one notification to one device token, already rendered by policy.
type Message struct {
	// ID is the notification id; collapse and dedupe ids derive from it.
	ID    string
	Token string
	Title string
	Body  string
	// Badge is nil when no badge is to be set. Badge and Data are shared by
	// every delivery of a notification, across workers: clients must only
	// read them.
	Badge *int
	Sound string
	Data  map[string]string
	// CollapseKey groups notifications that may replace each other (usually
	// the conversation); empty means derive from ID.
	CollapseKey string
	// ThreadID groups notifications on the device (the conversation id).
	ThreadID string
	// Expiration is when the provider should stop trying to deliver.
	Expiration time.Time
	// PushType: alert (default), background or voip.
	PushType string
	// Classification values from the policy.
	Classification config.Classification
}

// Outcome is what a provider's answer means for the notification and the token.
type Outcome int

const (
	// Delivered: the provider accepted the message.
	Delivered Outcome = iota
	// Retry: transient; try again after RetryAfter (or backoff).
	Retry
	// DropToken: the token is invalid; remove the binding (compare-and-delete).
	DropToken
	// BadCredentials: the credential or app configuration is wrong; keep tokens.
	BadCredentials
	// BadMessage: the request is invalid; do not retry it unchanged.
	BadMessage
	// QuotaExceeded: a daily cap was hit; pause the credential until ResumeAt.
	QuotaExceeded
)

func (o Outcome) String() string {
	switch o {
	case Delivered:
		return "Delivered"
	case Retry:
		return "Retry"
	case DropToken:
		return "DropToken"
	case BadCredentials:
		return "BadCredentials"
	case BadMessage:
		return "BadMessage"
	case QuotaExceeded:
		return "QuotaExceeded"
	}
	return fmt.Sprintf("Outcome(%d)", int(o))
}

// Result is the classified answer to one Send.
type Result struct {
	Outcome Outcome
	// Reason is the provider's own code or reason ("Unregistered",
	// "80300007", "UNREGISTERED", "timeout"); safe for logs and metric labels.
	Reason string
	// RetryAfter is the provider's Retry-After hint, if any.
	RetryAfter time.Duration
	// ResumeAt is when a QuotaExceeded credential may send again.
	ResumeAt time.Time
	// InvalidSince is when the provider last knew the token invalid (APNs 410
	// timestamp); zero when unknown.
	InvalidSince time.Time
	// Err carries transport or decoding detail; never credentials.
	Err error
}

// Client sends to one provider with one credential.
type Client interface {
	Provider() config.Provider
	// Send must not modify m, nor keep it after returning: the engine
	// sends the same Message again on a retry.
	Send(ctx context.Context, m *Message) Result
}

// Options are what every client constructor accepts besides its certificate.
type Options struct {
	// HTTPClient overrides the client built from the certificate's CABundle.
	HTTPClient *http.Client
	// Now is the clock (token expiry, timestamps, quota reset); nil = time.Now.
	Now func() time.Time
}

// Clock returns o.Now or time.Now.
func (o Options) Clock() func() time.Time {
	if o.Now != nil {
		return o.Now
	}
	return time.Now
}

// HTTP returns o.HTTPClient or one built for the certificate.
func (o Options) HTTP(cert *config.Certificate) (*http.Client, error) {
	if o.HTTPClient != nil {
		return o.HTTPClient, nil
	}
	return NewHTTPClient(cert.CABundle)
}

// NewHTTPClient returns a client that speaks HTTP/2 over TLS, keeps
// connections open, and trusts the system roots plus caBundle (PEM). It never
// skips verification.
func NewHTTPClient(caBundle string) (*http.Client, error) {
	tlsConfig, err := TLSConfig(caBundle)
	if err != nil {
		return nil, err
	}
	tr := &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:     tlsConfig,
		TLSHandshakeTimeout: 10 * time.Second,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     5 * time.Minute,
		ForceAttemptHTTP2:   true,
	}
	if err := http2.ConfigureTransport(tr); err != nil {
		return nil, err
	}
	return &http.Client{Transport: tr}, nil
}

// TLSConfig trusts the system roots plus caBundle.
func TLSConfig(caBundle string) (*tls.Config, error) {
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if strings.TrimSpace(caBundle) != "" && !pool.AppendCertsFromPEM([]byte(caBundle)) {
		return nil, errors.New("caBundle holds no PEM certificate")
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// BaseURL returns the certificate's endpoint override, or def.
func BaseURL(cert *config.Certificate, def string) string {
	if cert.Endpoint != "" {
		return strings.TrimRight(cert.Endpoint, "/")
	}
	return def
}

// CredentialError says why a credential cannot be used; the PushCertificate
// controller turns it into the Ready condition's reason and message.
type CredentialError struct {
	// Reason is KeyMissing or InvalidCredentials (or Expired).
	Reason string
	// Key is the Secret key concerned, when there is one.
	Key     string
	Message string
}

const (
	ReasonKeyMissing         = "KeyMissing"
	ReasonInvalidCredentials = "InvalidCredentials"
	ReasonExpired            = "Expired"
)

func (e *CredentialError) Error() string { return e.Message }

// MissingKey returns a KeyMissing error for key.
func MissingKey(key string) *CredentialError {
	return &CredentialError{Reason: ReasonKeyMissing, Key: key, Message: fmt.Sprintf("Secret has no key %q", key)}
}

// Invalid returns an InvalidCredentials error about key.
func Invalid(key, format string, args ...any) *CredentialError {
	return &CredentialError{Reason: ReasonInvalidCredentials, Key: key, Message: fmt.Sprintf("key %q: ", key) + fmt.Sprintf(format, args...)}
}

// RequireKeys returns a KeyMissing error for the first absent or empty key.
func RequireKeys(data map[string][]byte, keys ...string) error {
	for _, k := range keys {
		if len(data[k]) == 0 {
			return MissingKey(k)
		}
	}
	return nil
}

// CredentialInfo is what validation learned about a credential.
type CredentialInfo struct {
	// ExpiresAt is set for credentials that expire (APNs certificates).
	ExpiresAt *time.Time
	// Subject describes the credential without secrets (topic, client id).
	Subject string
}

// ParseRetryAfter reads a Retry-After header (seconds or HTTP date).
func ParseRetryAfter(h http.Header, now time.Time) time.Duration {
	v := h.Get("Retry-After")
	if v == "" {
		return 0
	}
	var secs int
	if _, err := fmt.Sscanf(v, "%d", &secs); err == nil && secs >= 0 {
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// TransportResult classifies an error from the HTTP round trip itself:
// always Retry, with a reason that names the kind of failure.
func TransportResult(err error) Result {
	reason := "transport"
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		reason = "timeout"
	case errors.Is(err, context.Canceled):
		reason = "canceled"
	}
	return Result{Outcome: Retry, Reason: reason, Err: err}
}

// ShortToken returns the first 8 characters of a token, the most any log shows.
func ShortToken(token string) string {
	if len(token) <= 8 {
		return token
	}
	return token[:8] + "…"
}

// NextMidnight returns the next midnight in loc after now (CN vendors reset
// daily quotas at Beijing midnight).
func NextMidnight(now time.Time, loc *time.Location) time.Time {
	t := now.In(loc)
	return time.Date(t.Year(), t.Month(), t.Day()+1, 0, 0, 0, 0, loc)
}

// Beijing is UTC+8 with no DST; fixed so no tzdata is needed.
var Beijing = time.FixedZone("Asia/Shanghai", 8*3600)

// JoinURL joins a base URL and a path.
func JoinURL(base, path string) string {
	u, err := url.JoinPath(base, path)
	if err != nil {
		return strings.TrimRight(base, "/") + "/" + strings.TrimLeft(path, "/")
	}
	return u
}
