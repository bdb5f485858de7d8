// Package honor sends notifications through Honor Push: an OAuth
// client-credentials token from Honor's IAM, then one
// POST /api/v1/{appId}/sendMessage per device token (providers.md §4).
//
// Honor's server API is thinly documented (UNCONFIRMED in providers.md), so:
//   - Hosts are the first guide's (iam.developer.hihonor.com,
//     push-api.cloud.hihonor.com); a certificate's endpoint replaces both,
//     which is how a later host change is followed without a release.
//   - A token in data.failTokens is answered Retry (reason "failToken"); the
//     delivery engine's maxAttempts bounds the retries.
//   - Huawei-style 8xxxxxxx codes, which some clients report, are mapped as
//     Huawei's (providers.md §3).
//   - The message size limit is taken to be Huawei's 4096 bytes.
//   - Badges need the launcher Activity class, which the PushCertificate spec
//     has no field for: it is read from the optional Secret key "badgeClass"
//     (KeyBadgeClass), and the badge is left out without it.
//   - Every message is a notification (offline apps do not get data
//     messages); Message.PushType and Message.Sound are not mapped.
package honor

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/imcloud/im-push-operator/dispatcher/config"
	"github.com/imcloud/im-push-operator/dispatcher/providers"
)

// Default hosts (UNCONFIRMED); a certificate's endpoint replaces both.
const (
	DefaultAuthURL = "https://iam.developer.hihonor.com"
	DefaultPushURL = "https://push-api.cloud.hihonor.com"
)

// Paths on the hosts above.
const (
	TokenPath = "/auth/realms/developer/protocol/openid-connect/token"
	// SendPath is formatted with the App ID.
	SendPath = "/api/v1/%s/sendMessage"
)

// KeyBadgeClass is the optional credential Secret key naming the launcher
// Activity class that badges are set on.
const KeyBadgeClass = "badgeClass"

// MaxMessageBytes is the assumed limit on the request without its tokens.
const MaxMessageBytes = 4096

const (
	maxTTL                 = 1296000 * time.Second
	tokenMargin            = 5 * time.Minute
	defaultTokenLifetime   = time.Hour
	reasonExpireToken      = "expireToken"
	reasonFailToken        = "failToken"
	codeSuccess            = 200
	codeHuaweiStyleSuccess = 80000000
)

// codeOutcomes maps Huawei-style codes (providers.md §3).
var codeOutcomes = map[int]providers.Outcome{
	80300007: providers.DropToken,
	80100001: providers.BadMessage,
	80100003: providers.BadMessage,
	80100004: providers.BadMessage,
	80100013: providers.BadMessage,
	80100016: providers.BadMessage,
	80100018: providers.BadMessage,
	80300008: providers.BadMessage,
	80300010: providers.BadMessage,
	80300011: providers.BadMessage,
	80100017: providers.Retry,
	80200001: providers.BadCredentials,
	80300002: providers.BadCredentials,
	80300013: providers.BadCredentials,
	80600003: providers.BadCredentials,
	81000001: providers.Retry,
}

// expiredCodes are the codes that mean "get a new access token".
var expiredCodes = map[int]bool{80200003: true, 80200005: true, http.StatusUnauthorized: true}

type client struct {
	http    *http.Client
	now     func() time.Time
	tokens  *providers.TokenCache
	sendURL string
	badge   string
}

// New returns an Honor client for cert.
func New(cert *config.Certificate, opts providers.Options) (providers.Client, error) {
	if _, err := Validate(cert); err != nil {
		return nil, fmt.Errorf("honor certificate %q: %w", cert.Name, err)
	}
	hc, err := opts.HTTP(cert)
	if err != nil {
		return nil, fmt.Errorf("honor certificate %q: %w", cert.Name, err)
	}
	spec := cert.Honor
	secret := strings.TrimSpace(string(cert.Data[config.KeyClientSecret]))
	c := &client{
		http:    hc,
		now:     opts.Clock(),
		sendURL: providers.JoinURL(providers.BaseURL(cert, DefaultPushURL), fmt.Sprintf(SendPath, url.PathEscape(spec.AppID))),
		badge:   strings.TrimSpace(string(cert.Data[KeyBadgeClass])),
	}
	tokenURL := providers.JoinURL(providers.BaseURL(cert, DefaultAuthURL), TokenPath)
	oauth := &providers.ClientCredentials{Vendor: "honor token endpoint", TokenURL: tokenURL, DefaultLifetime: defaultTokenLifetime, HTTP: hc, Now: c.now}
	c.tokens = &providers.TokenCache{
		Now:    c.now,
		Margin: tokenMargin,
		Fetch: func(ctx context.Context) (string, time.Time, error) {
			return oauth.Fetch(ctx, spec.ClientID, secret)
		},
	}
	return c, nil
}

func (c *client) Provider() config.Provider { return config.Honor }

// Send delivers m; on an authentication answer the access token is
// refreshed and the send repeated once, after which it is BadCredentials.
func (c *client) Send(ctx context.Context, m *providers.Message) providers.Result {
	body, err := c.request(m)
	if err != nil {
		return providers.Result{Outcome: providers.BadMessage, Reason: "encode", Err: err}
	}
	return c.tokens.SendOAuth(ctx, func(access string) (providers.Result, bool) {
		return c.send(ctx, body, m.Token, access)
	})
}

// send makes one attempt with the access token; expired reports an
// authentication answer.
func (c *client) send(ctx context.Context, body *request, token, access string) (providers.Result, bool) {
	header := http.Header{
		"Authorization": {"Bearer " + access},
		"Timestamp":     {strconv.FormatInt(c.now().UnixMilli(), 10)},
	}
	reply, err := providers.PostJSON(ctx, c.http, c.sendURL, body, header)
	if err != nil {
		return providers.TransportResult(err), false
	}
	return classify(reply, token, c.now())
}

type answer struct {
	Code    *int   `json:"code"`
	Message string `json:"message"`
	Data    *struct {
		SendResult   bool     `json:"sendResult"`
		RequestID    string   `json:"requestId"`
		FailTokens   []string `json:"failTokens"`
		ExpireTokens []string `json:"expireTokens"`
	} `json:"data"`
}

// classify maps one answer; expired reports an authentication failure that
// a new access token may cure.
func classify(r *providers.Reply, token string, now time.Time) (providers.Result, bool) {
	retryAfter := providers.ParseRetryAfter(r.Header, now)
	var a answer
	decodeErr := r.Decode(&a)
	if decodeErr != nil || a.Code == nil {
		res := providers.Result{Reason: strconv.Itoa(r.Status), RetryAfter: retryAfter, Err: decodeErr}
		if res.Err == nil {
			res.Err = fmt.Errorf("HTTP %d without a code", r.Status)
		}
		res.Outcome = byStatus(r.Status)
		return res, r.Status == http.StatusUnauthorized
	}
	code := *a.Code
	res := providers.Result{Reason: strconv.Itoa(code), RetryAfter: retryAfter}
	switch {
	case r.Status == http.StatusUnauthorized || expiredCodes[code]:
		res.Outcome, res.Err = providers.BadCredentials, fmt.Errorf("honor %d: %s", code, a.Message)
		return res, true
	case code == codeSuccess || code == codeHuaweiStyleSuccess:
		res.Outcome = providers.Delivered
		if d := a.Data; d != nil {
			switch {
			case slices.Contains(d.ExpireTokens, token):
				res.Outcome, res.Reason = providers.DropToken, reasonExpireToken
			case slices.Contains(d.FailTokens, token):
				res.Outcome, res.Reason = providers.Retry, reasonFailToken
			}
		}
		return res, false
	}
	if o, ok := codeOutcomes[code]; ok {
		res.Outcome = o
	} else {
		res.Outcome = byStatus(r.Status)
	}
	res.Err = fmt.Errorf("honor %d: %s", code, a.Message)
	return res, false
}

// byStatus classifies by HTTP status what the body does not say.
func byStatus(status int) providers.Outcome {
	switch status {
	case http.StatusUnauthorized, http.StatusForbidden:
		return providers.BadCredentials
	case http.StatusBadRequest, http.StatusNotFound, http.StatusRequestEntityTooLarge:
		return providers.BadMessage
	}
	return providers.Retry
}

// request is the send body: no message wrapper, camelCase keys.
type request struct {
	Data    string   `json:"data,omitempty"`
	Android android  `json:"android"`
	Token   []string `json:"token"`
}

type android struct {
	TTL string `json:"ttl,omitempty"`
	// TargetUserType 0 is a formal (not test) message.
	TargetUserType int          `json:"targetUserType"`
	Notification   notification `json:"notification"`
}

type notification struct {
	Title       string      `json:"title"`
	Body        string      `json:"body"`
	ClickAction clickAction `json:"clickAction"`
	Importance  string      `json:"importance,omitempty"`
	NotifyID    int32       `json:"notifyId"`
	Tag         string      `json:"tag,omitempty"`
	Badge       *badge      `json:"badge,omitempty"`
}

// clickAction type 3 opens the app's launcher Activity.
type clickAction struct {
	Type int `json:"type"`
}

type badge struct {
	SetNum     int    `json:"setNum"`
	BadgeClass string `json:"badgeClass"`
}

func (c *client) request(m *providers.Message) (*request, error) {
	key := providers.CollapseKey(m)
	req := &request{
		Android: android{
			TTL: providers.TTLSeconds(m.Expiration, c.now(), maxTTL),
			Notification: notification{
				Title:       m.Title,
				Body:        m.Body,
				ClickAction: clickAction{Type: 3},
				Importance:  m.Classification.HonorImportance,
				NotifyID:    providers.NotifyID(key),
				Tag:         key,
			},
		},
	}
	if len(m.Data) > 0 {
		data, err := json.Marshal(m.Data)
		if err != nil {
			return nil, err
		}
		req.Data = string(data)
	}
	if m.Badge != nil && c.badge != "" {
		req.Android.Notification.Badge = &badge{SetNum: min(max(*m.Badge, 0), 99), BadgeClass: c.badge}
	}
	// Body, then title, are shortened until the request without its token
	// is within MaxMessageBytes.
	req.Token = []string{}
	if err := providers.FitJSON(req, MaxMessageBytes, &req.Android.Notification.Body, &req.Android.Notification.Title); err != nil {
		return nil, err
	}
	req.Token = []string{m.Token}
	return req, nil
}

// Validate checks the certificate without any network call.
func Validate(cert *config.Certificate) (providers.CredentialInfo, error) {
	spec := cert.Honor
	if spec == nil {
		return providers.CredentialInfo{}, &providers.CredentialError{Reason: providers.ReasonInvalidCredentials, Message: "the honor spec block is missing"}
	}
	for _, f := range []struct{ name, value string }{{"appID", spec.AppID}, {"clientID", spec.ClientID}} {
		if err := specID(f.name, f.value); err != nil {
			return providers.CredentialInfo{}, err
		}
	}
	if err := providers.RequireKeys(cert.Data, config.KeyClientSecret); err != nil {
		return providers.CredentialInfo{}, err
	}
	if err := providers.VisibleASCII(config.KeyClientSecret, cert.Data[config.KeyClientSecret]); err != nil {
		return providers.CredentialInfo{}, err
	}
	if v, ok := cert.Data[KeyBadgeClass]; ok {
		if err := providers.VisibleASCII(KeyBadgeClass, v); err != nil {
			return providers.CredentialInfo{}, err
		}
	}
	return providers.CredentialInfo{Subject: "client " + spec.ClientID + ", app " + spec.AppID}, nil
}

// specID checks a required id; Honor documents no format, so only visible
// ASCII without a slash (it goes into a path) is demanded.
func specID(field, v string) error {
	if v == "" {
		return &providers.CredentialError{Reason: providers.ReasonInvalidCredentials, Message: fmt.Sprintf("spec.honor.%s is required", field)}
	}
	for i := 0; i < len(v); i++ {
		if v[i] <= ' ' || v[i] > '~' || v[i] == '/' {
			return &providers.CredentialError{Reason: providers.ReasonInvalidCredentials, Message: fmt.Sprintf("spec.honor.%s %q holds a character not allowed in an id", field, v)}
		}
	}
	return nil
}
