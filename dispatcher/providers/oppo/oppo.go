// Package oppo sends notifications through OPPO Push (ColorOS, OnePlus,
// realme), providers.md §6: an auth call signed with SHA-256 gives an
// auth_token that every send carries as a form field, and a unicast send
// per registration id.
package oppo

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/imcloud/im-push-operator/dispatcher/config"
	"github.com/imcloud/im-push-operator/dispatcher/providers"
)

// Real hosts: registration ids of the China service go to ChinaURL, the others
// to GlobalURL (see china). A certificate's endpoint replaces both.
const (
	ChinaURL  = "https://api.push.oppomobile.com"
	GlobalURL = "https://api-intl.push.oppomobile.com"

	AuthPath = "/server/v1/auth"
	SendPath = "/server/v1/message/notification/unicast"
)

const (
	// tokenLifetime is how long OPPO keeps an auth_token valid. The expiry is
	// counted on our clock from the fetch, not from the answer's create_time,
	// so clock skew with OPPO cannot make us hold an expired token.
	tokenLifetime = 24 * time.Hour
	// refreshMargin makes the cache fetch a new token once the current one is
	// an hour old, as OPPO asks ("refresh hourly"), leaving 23 h of slack.
	refreshMargin = 23 * time.Hour

	maxTitle      = 50 // runes
	maxContent    = 50 // runes, standard style
	maxActionJSON = 4000
	maxOfflineTTL = 10 * 24 * time.Hour
	// defaultOfflineTTL applies when a message carries no expiration.
	defaultOfflineTTL = 24 * time.Hour

	targetRegistrationID = 2
)

// OPPO answer codes the client acts on (providers.md §6 "Errors").
const (
	codeOK           = 0
	codeInvalidToken = 11
	codeMissingToken = 29
)

type client struct {
	appKey       string
	masterSecret string
	channelID    string
	chinaURL     string
	globalURL    string
	http         *http.Client
	now          func() time.Time
	// tokens holds one auth_token cache per base URL: a token is fetched from
	// the host it is used on (one cache when an endpoint serves both).
	tokens map[string]*providers.TokenCache
}

// New builds an OPPO client from a certificate (Secret keys appKey and
// masterSecret, optional spec oppo.channelID).
func New(cert *config.Certificate, opts providers.Options) (providers.Client, error) {
	if _, err := Validate(cert); err != nil {
		return nil, fmt.Errorf("oppo certificate %q: %w", cert.Name, err)
	}
	hc, err := opts.HTTP(cert)
	if err != nil {
		return nil, fmt.Errorf("oppo certificate %q: %w", cert.Name, err)
	}
	c := &client{
		appKey:       string(cert.Data[config.KeyAppKey]),
		masterSecret: string(cert.Data[config.KeyMasterSecret]),
		chinaURL:     providers.BaseURL(cert, ChinaURL),
		globalURL:    providers.BaseURL(cert, GlobalURL),
		http:         hc,
		now:          opts.Clock(),
		tokens:       map[string]*providers.TokenCache{},
	}
	if cert.OPPO != nil {
		c.channelID = cert.OPPO.ChannelID
	}
	for _, base := range []string{c.chinaURL, c.globalURL} {
		if c.tokens[base] == nil {
			c.tokens[base] = &providers.TokenCache{Fetch: c.fetcher(base), Now: c.now, Margin: refreshMargin}
		}
	}
	return c, nil
}

// Validate checks the certificate's keys without any network call.
func Validate(cert *config.Certificate) (providers.CredentialInfo, error) {
	if err := providers.RequireKeys(cert.Data, config.KeyAppKey, config.KeyMasterSecret); err != nil {
		return providers.CredentialInfo{}, err
	}
	for _, key := range []string{config.KeyAppKey, config.KeyMasterSecret} {
		if err := providers.NoSpace(key, cert.Data[key]); err != nil {
			return providers.CredentialInfo{}, err
		}
	}
	return providers.CredentialInfo{Subject: "appKey " + string(cert.Data[config.KeyAppKey])}, nil
}

func (c *client) Provider() config.Provider { return config.OPPO }

// Sign is OPPO's auth signature: lowercase hex SHA-256 of app key, 13-digit
// millisecond timestamp and master secret, concatenated.
func Sign(appKey string, timestampMillis int64, masterSecret string) string {
	sum := sha256.Sum256([]byte(appKey + strconv.FormatInt(timestampMillis, 10) + masterSecret))
	return hex.EncodeToString(sum[:])
}

// china reports whether a registration id belongs to OPPO's China service:
// split on "_", one part, or two with the first "CN", or three with the
// second "CN" (providers.md §6 "Endpoints").
func china(regID string) bool {
	parts := strings.Split(regID, "_")
	switch len(parts) {
	case 1:
		return true
	case 2:
		return parts[0] == "CN"
	case 3:
		return parts[1] == "CN"
	}
	return false
}

func (c *client) baseURL(regID string) string {
	if china(regID) {
		return c.chinaURL
	}
	return c.globalURL
}

// answer is OPPO's reply envelope; Code is a pointer so a body without one is
// not mistaken for success.
type answer struct {
	Code    *int            `json:"code"`
	Message string          `json:"message"`
	Data    json.RawMessage `json:"data"`
}

func (c *client) fetcher(base string) func(ctx context.Context) (string, time.Time, error) {
	return func(ctx context.Context) (string, time.Time, error) {
		now := c.now()
		ts := now.UnixMilli()
		form := url.Values{
			"app_key":   {c.appKey},
			"timestamp": {strconv.FormatInt(ts, 10)},
			"sign":      {Sign(c.appKey, ts, c.masterSecret)},
		}
		reply, err := providers.PostForm(ctx, c.http, providers.JoinURL(base, AuthPath), form, nil)
		if err != nil {
			return "", time.Time{}, err
		}
		var ans answer
		if err := reply.Decode(&ans); err != nil || ans.Code == nil {
			if err == nil {
				err = errors.New("answer has no code")
			}
			return "", time.Time{}, &providers.AuthReplyError{Vendor: "oppo", Reply: reply, Err: err}
		}
		if *ans.Code != codeOK {
			return "", time.Time{}, &providers.AuthCodeError{Vendor: "oppo", Field: "code", Code: *ans.Code, Message: ans.Message, Header: reply.Header}
		}
		var data struct {
			AuthToken string `json:"auth_token"`
		}
		if err := json.Unmarshal(ans.Data, &data); err != nil || data.AuthToken == "" {
			return "", time.Time{}, &providers.AuthReplyError{Vendor: "oppo", Reply: reply, Err: errors.New("answer has no auth_token")}
		}
		return data.AuthToken, now.Add(tokenLifetime), nil
	}
}

type notification struct {
	Title     string `json:"title"`
	Content   string `json:"content"`
	ChannelID string `json:"channel_id,omitempty"`
	Category  string `json:"category,omitempty"`
	// NotifyLevel is only valid together with Category (else code 67).
	NotifyLevel      int32  `json:"notify_level,omitempty"`
	NotifyID         int32  `json:"notify_id"`
	ClickActionType  int    `json:"click_action_type"`
	ActionParameters string `json:"action_parameters,omitempty"`
	OffLine          bool   `json:"off_line"`
	OffLineTTL       int64  `json:"off_line_ttl"`
}

type message struct {
	TargetType           int          `json:"target_type"`
	TargetValue          string       `json:"target_value"`
	VerifyRegistrationID bool         `json:"verify_registration_id"`
	Notification         notification `json:"notification"`
}

// Send delivers one notification to one registration id.
func (c *client) Send(ctx context.Context, m *providers.Message) providers.Result {
	body, bad := c.message(m)
	if bad != nil {
		return *bad
	}
	base := c.baseURL(m.Token)
	// A rejected token is replaced and the send tried once more.
	res, _ := c.tokens[base].Send(ctx, c.authResult, func(token string) (providers.Result, bool) {
		return c.unicast(ctx, base, token, body)
	})
	return res
}

// unicast posts one message; rejected reports an auth_token OPPO refused.
func (c *client) unicast(ctx context.Context, base, token string, body []byte) (res providers.Result, rejected bool) {
	form := url.Values{"auth_token": {token}, "message": {string(body)}}
	reply, err := providers.PostForm(ctx, c.http, providers.JoinURL(base, SendPath), form, nil)
	if err != nil {
		return providers.TransportResult(err), false
	}
	var ans answer
	if err := reply.Decode(&ans); err != nil || ans.Code == nil {
		if err == nil {
			err = errors.New("answer has no code")
		}
		return providers.StatusResult(reply, c.now(), err), false
	}
	code := *ans.Code
	return c.codeResult(code, reply.Header), code == codeInvalidToken || code == codeMissingToken
}

func (c *client) message(m *providers.Message) ([]byte, *providers.Result) {
	if m.Title == "" || m.Body == "" {
		return nil, &providers.Result{Outcome: providers.BadMessage, Reason: "EmptyTitleOrBody"}
	}
	n := notification{
		Title:           providers.TruncateRunes(m.Title, maxTitle),
		Content:         providers.TruncateRunes(m.Body, maxContent),
		ChannelID:       c.channelID,
		Category:        m.Classification.OPPOCategory,
		NotifyID:        notifyID(m),
		ClickActionType: 0, // open the app
		OffLine:         true,
		OffLineTTL:      offlineTTL(m.Expiration, c.now()),
	}
	if n.Category != "" {
		n.NotifyLevel = m.Classification.OPPONotifyLevel
	}
	if len(m.Data) > 0 {
		params, _ := json.Marshal(m.Data) // a map of strings always encodes
		if len(params) > maxActionJSON {
			return nil, &providers.Result{Outcome: providers.BadMessage, Reason: "DataTooLarge",
				Err: fmt.Errorf("action_parameters is %d bytes, OPPO allows %d", len(params), maxActionJSON)}
		}
		n.ActionParameters = string(params)
	}
	body, _ := json.Marshal(message{TargetType: targetRegistrationID, TargetValue: m.Token, Notification: n}) // plain fields always encode
	return body, nil
}

// notifyID is FNV-1a 32 of the collapse key (or the notification id), kept
// positive and non-zero: the same key replaces the previous notification.
func notifyID(m *providers.Message) int32 {
	key := providers.CollapseKey(m)
	h := fnv.New32a()
	h.Write([]byte(key))
	if id := int32(h.Sum32() & 0x7fffffff); id != 0 {
		return id
	}
	return 1
}

// offlineTTL is the seconds left until expiration, within 1 s..10 days.
func offlineTTL(exp, now time.Time) int64 {
	if exp.IsZero() {
		return int64(defaultOfflineTTL / time.Second)
	}
	d := min(max(exp.Sub(now), time.Second), maxOfflineTTL)
	return int64((d + time.Second - 1) / time.Second)
}

// codeResult maps an OPPO answer code (providers.md §6 "Errors").
func (c *client) codeResult(code int, h http.Header) providers.Result {
	now := c.now()
	res := providers.Result{Reason: strconv.Itoa(code)}
	switch code {
	case codeOK:
		return providers.Result{Outcome: providers.Delivered}
	case -2, -1, 13, 55, codeInvalidToken, codeMissingToken:
		// 11/29 land here only after the one retry with a fresh token.
		res.Outcome = providers.Retry
		res.RetryAfter = providers.ParseRetryAfter(h, now)
	case 14, 15, 16, 17, 18, 19, 26, 27, 28, 30, 59:
		res.Outcome = providers.BadCredentials
	case 33:
		res.Outcome = providers.QuotaExceeded
		res.ResumeAt = providers.NextMidnight(now, providers.Beijing)
	case 10000:
		res.Outcome = providers.DropToken
	default:
		// 40/41/51/67 and any code OPPO added since: OPPO looked at the
		// request and refused it, so sending it unchanged again is pointless.
		res.Outcome = providers.BadMessage
	}
	return res
}

func (c *client) authResult(err error) providers.Result {
	return providers.CodeAuthResult(err, c.now(), c.codeResult)
}
