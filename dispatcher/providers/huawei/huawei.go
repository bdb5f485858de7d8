// Package huawei sends notifications through Huawei Push Kit (HMS), v1 API:
// an OAuth client-credentials token from oauth-login.cloud.huawei.com, then one
// POST /v1/{appId}/messages:send per device token (providers.md §3).
//
// Choices the reference leaves open:
//   - The path carries the App ID (Huawei: "clientId = App ID for AppGallery
//     apps"); the OAuth client_id is spec.clientID, defaulting to the App ID.
//   - Badges need the app's launcher Activity class, which the PushCertificate
//     spec has no field for. It is read from the optional, non-secret key
//     "badgeClass" of the credential Secret (KeyBadgeClass); without it the
//     badge block is left out, because Huawei ignores or rejects set_num
//     without a class.
//   - Every message is a notification message: data (pass-through) messages
//     do not reach an app that is not running, which is the offline case this
//     dispatcher serves. Message.PushType and Message.Sound are not mapped.
package huawei

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/imcloud/im-push-operator/dispatcher/config"
	"github.com/imcloud/im-push-operator/dispatcher/providers"
)

// Default hosts; a certificate's endpoint replaces both.
const (
	DefaultAuthURL = "https://oauth-login.cloud.huawei.com"
	DefaultPushURL = "https://push-api.cloud.huawei.com"
)

// Paths on the hosts above.
const (
	TokenPath = "/oauth2/v3/token"
	// SendPath is formatted with the App ID.
	SendPath = "/v1/%s/messages:send"
)

// KeyBadgeClass is the optional credential Secret key naming the launcher
// Activity class that badges are set on.
const KeyBadgeClass = "badgeClass"

// MaxMessageBytes is Huawei's limit on the message body, tokens excluded.
const MaxMessageBytes = 4096

// maxTTL is Huawei's longest ttl (15 days).
const maxTTL = 1296000 * time.Second

// tokenMargin is how long before its expiry the access token is refreshed.
const tokenMargin = 5 * time.Minute

// defaultTokenLifetime is used when the OAuth answer has no expires_in.
const defaultTokenLifetime = time.Hour

// Push Kit answer codes (providers.md §3).
const (
	CodeSuccess        = "80000000"
	CodePartialSuccess = "80100000"
	CodeAllTokensBad   = "80300007"
	CodeAuthFailed     = "80200001"
	CodeTokenExpired   = "80200003"
	CodeJWTExpired     = "80200005"
)

// codeOutcomes maps the documented codes other than success and partial
// success; anything else is classified by its prefix and HTTP status.
var codeOutcomes = map[string]providers.Outcome{
	CodeAllTokensBad: providers.DropToken,
	"80100001":       providers.BadMessage,
	"80100003":       providers.BadMessage,
	"80100004":       providers.BadMessage,
	"80100013":       providers.BadMessage,
	"80100016":       providers.BadMessage,
	"80100018":       providers.BadMessage,
	"80300008":       providers.BadMessage,
	"80300010":       providers.BadMessage,
	// We never ask for high priority, so this is a message problem.
	"80300011":     providers.BadMessage,
	"80100017":     providers.Retry,
	CodeAuthFailed: providers.BadCredentials,
	"80300002":     providers.BadCredentials,
	"80300013":     providers.BadCredentials,
	"80600003":     providers.BadCredentials,
	"81000001":     providers.Retry,
}

type client struct {
	http    *http.Client
	now     func() time.Time
	tokens  *providers.TokenCache
	sendURL string
	badge   string
}

// New returns a Huawei client for cert.
func New(cert *config.Certificate, opts providers.Options) (providers.Client, error) {
	if _, err := Validate(cert); err != nil {
		return nil, fmt.Errorf("huawei certificate %q: %w", cert.Name, err)
	}
	hc, err := opts.HTTP(cert)
	if err != nil {
		return nil, fmt.Errorf("huawei certificate %q: %w", cert.Name, err)
	}
	spec := cert.Huawei
	clientID := clientIDOf(spec)
	secret := strings.TrimSpace(string(cert.Data[config.KeyClientSecret]))
	c := &client{
		http:    hc,
		now:     opts.Clock(),
		sendURL: providers.JoinURL(providers.BaseURL(cert, DefaultPushURL), fmt.Sprintf(SendPath, url.PathEscape(spec.AppID))),
		badge:   strings.TrimSpace(string(cert.Data[KeyBadgeClass])),
	}
	tokenURL := providers.JoinURL(providers.BaseURL(cert, DefaultAuthURL), TokenPath)
	oauth := &providers.ClientCredentials{Vendor: "huawei OAuth", TokenURL: tokenURL, DefaultLifetime: defaultTokenLifetime, HTTP: hc, Now: c.now}
	c.tokens = &providers.TokenCache{
		Now:    c.now,
		Margin: tokenMargin,
		Fetch: func(ctx context.Context) (string, time.Time, error) {
			return oauth.Fetch(ctx, clientID, secret)
		},
	}
	return c, nil
}

func clientIDOf(spec *config.HuaweiSpec) string {
	if spec.ClientID != "" {
		return spec.ClientID
	}
	return spec.AppID
}

func (c *client) Provider() config.Provider { return config.Huawei }

// Send delivers m; an expired access token is refreshed and the send repeated
// once before the answer is classified.
func (c *client) Send(ctx context.Context, m *providers.Message) providers.Result {
	body, err := c.request(m)
	if err != nil {
		return providers.Result{Outcome: providers.BadMessage, Reason: "encode", Err: err}
	}
	return c.tokens.SendOAuth(ctx, func(access string) (providers.Result, bool) {
		return c.send(ctx, body, m.Token, access)
	})
}

// send makes one attempt with the access token; expired reports that Push
// Kit called it expired.
func (c *client) send(ctx context.Context, body *request, token, access string) (providers.Result, bool) {
	reply, err := providers.PostJSON(ctx, c.http, c.sendURL, body, http.Header{"Authorization": {"Bearer " + access}})
	if err != nil {
		return providers.TransportResult(err), false
	}
	res := classify(reply, token, c.now())
	return res, res.Reason == CodeTokenExpired || res.Reason == CodeJWTExpired
}

// answer is Push Kit's reply body; code is a string.
type answer struct {
	Code      string `json:"code"`
	Msg       string `json:"msg"`
	RequestID string `json:"requestId"`
}

// partial is the JSON inside msg of a partial-success answer.
type partial struct {
	Success       int      `json:"success"`
	Failure       int      `json:"failure"`
	IllegalTokens []string `json:"illegal_tokens"`
}

func classify(r *providers.Reply, token string, now time.Time) providers.Result {
	retryAfter := providers.ParseRetryAfter(r.Header, now)
	var a answer
	if err := r.Decode(&a); err != nil || a.Code == "" {
		res := byStatus(r.Status)
		res.RetryAfter = retryAfter
		if err != nil {
			res.Err = err
		} else {
			res.Err = fmt.Errorf("HTTP %d without a code", r.Status)
		}
		return res
	}
	res := providers.Result{Reason: a.Code, RetryAfter: retryAfter}
	switch a.Code {
	case CodeSuccess:
		res.Outcome = providers.Delivered
		return res
	case CodePartialSuccess:
		var p partial
		if err := json.Unmarshal([]byte(a.Msg), &p); err != nil {
			res.Outcome, res.Err = providers.Retry, fmt.Errorf("partial success with undecodable msg: %w", err)
			return res
		}
		switch {
		case slices.Contains(p.IllegalTokens, token):
			res.Outcome = providers.DropToken
		case p.Success > 0:
			res.Outcome = providers.Delivered
		default:
			res.Outcome = providers.Retry
		}
		return res
	case CodeTokenExpired, CodeJWTExpired:
		res.Outcome = providers.Retry
		return res
	}
	if o, ok := codeOutcomes[a.Code]; ok {
		res.Outcome = o
	} else {
		res.Outcome = byPrefix(a.Code, r.Status)
	}
	if res.Outcome != providers.Delivered {
		res.Err = fmt.Errorf("huawei %s: %s", a.Code, a.Msg)
	}
	return res
}

// byPrefix classifies undocumented codes by their family: 801 message, 802
// and 806 authentication, 810 server; the HTTP status decides the rest.
func byPrefix(code string, status int) providers.Outcome {
	switch {
	case strings.HasPrefix(code, "801"):
		return providers.BadMessage
	case strings.HasPrefix(code, "802"), strings.HasPrefix(code, "806"):
		return providers.BadCredentials
	case strings.HasPrefix(code, "810"):
		return providers.Retry
	}
	return byStatus(status).Outcome
}

// byStatus classifies an answer without a usable body.
func byStatus(status int) providers.Result {
	res := providers.Result{Reason: fmt.Sprint(status)}
	switch {
	case status == http.StatusUnauthorized, status == http.StatusForbidden:
		res.Outcome = providers.BadCredentials
	case status == http.StatusBadRequest, status == http.StatusNotFound, status == http.StatusRequestEntityTooLarge:
		res.Outcome = providers.BadMessage
	default:
		res.Outcome = providers.Retry
	}
	return res
}

// request is the send body (providers.md §3).
type request struct {
	ValidateOnly bool    `json:"validate_only"`
	Message      message `json:"message"`
}

type message struct {
	Data    string   `json:"data,omitempty"`
	Android android  `json:"android"`
	Token   []string `json:"token"`
}

type android struct {
	Category     string       `json:"category,omitempty"`
	TTL          string       `json:"ttl,omitempty"`
	Notification notification `json:"notification"`
}

type notification struct {
	Title       string      `json:"title"`
	Body        string      `json:"body"`
	ClickAction clickAction `json:"click_action"`
	NotifyID    int32       `json:"notify_id"`
	Tag         string      `json:"tag,omitempty"`
	Badge       *badge      `json:"badge,omitempty"`
}

// clickAction type 3 opens the app's launcher Activity.
type clickAction struct {
	Type int `json:"type"`
}

type badge struct {
	SetNum int    `json:"set_num"`
	Class  string `json:"class"`
}

func (c *client) request(m *providers.Message) (*request, error) {
	key := providers.CollapseKey(m)
	msg := message{
		Android: android{
			Category: m.Classification.HuaweiCategory,
			TTL:      providers.TTLSeconds(m.Expiration, c.now(), maxTTL),
			Notification: notification{
				Title:       m.Title,
				Body:        m.Body,
				ClickAction: clickAction{Type: 3},
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
		msg.Data = string(data)
	}
	if m.Badge != nil && c.badge != "" {
		msg.Android.Notification.Badge = &badge{SetNum: min(max(*m.Badge, 0), 99), Class: c.badge}
	}
	// Body, then title, are shortened until the request without its token
	// is within MaxMessageBytes; the limit's exact scope is not documented,
	// so the whole request is measured.
	req := &request{Message: msg}
	req.Message.Token = []string{}
	if err := providers.FitJSON(req, MaxMessageBytes, &req.Message.Android.Notification.Body, &req.Message.Android.Notification.Title); err != nil {
		return nil, err
	}
	req.Message.Token = []string{m.Token}
	return req, nil
}

// Validate checks the certificate without any network call.
func Validate(cert *config.Certificate) (providers.CredentialInfo, error) {
	spec := cert.Huawei
	if spec == nil {
		return providers.CredentialInfo{}, &providers.CredentialError{Reason: providers.ReasonInvalidCredentials, Message: "the huawei spec block is missing"}
	}
	if err := digits("appID", spec.AppID); err != nil {
		return providers.CredentialInfo{}, err
	}
	if spec.ClientID != "" {
		if err := digits("clientID", spec.ClientID); err != nil {
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
	return providers.CredentialInfo{Subject: "client " + clientIDOf(spec) + ", app " + spec.AppID}, nil
}

// digits checks a spec id: Huawei App IDs and OAuth client ids are numeric.
func digits(field, v string) error {
	if v == "" {
		return &providers.CredentialError{Reason: providers.ReasonInvalidCredentials, Message: fmt.Sprintf("spec.huawei.%s is required", field)}
	}
	if strings.Trim(v, "0123456789") != "" || len(v) > 32 {
		return &providers.CredentialError{Reason: providers.ReasonInvalidCredentials, Message: fmt.Sprintf("spec.huawei.%s %q is not a numeric Huawei id", field, v)}
	}
	return nil
}
