// Package meizu sends notifications through Meizu Flyme Push, providers.md
// §8: no access token; every form request is signed with an MD5 over its
// sorted parameters and the app secret, and one notification goes to one
// pushId.
package meizu

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/imcloud/im-push-operator/dispatcher/config"
	"github.com/imcloud/im-push-operator/dispatcher/providers"
)

// DefaultURL is Meizu's host; a certificate's endpoint replaces it.
const (
	DefaultURL = "https://server-api-push.meizu.com"
	SendPath   = "/garcia/api/server/push/varnished/pushByPushId"
)

const (
	maxTitle   = 32  // runes
	maxContent = 100 // runes
	// validTime is whole hours within 1..72; 24 when a message has no expiration.
	minValidHours     = 1
	maxValidHours     = 72
	defaultValidHours = 24

	offlineOn       = 1
	standardBar     = 0
	clickOpenApp    = 0
	notificationsOn = 1
)

type client struct {
	appID     string
	appSecret string
	baseURL   string
	http      *http.Client
	now       func() time.Time
}

// New builds a Meizu client from a certificate (spec meizu.appID, Secret key
// appSecret).
func New(cert *config.Certificate, opts providers.Options) (providers.Client, error) {
	if _, err := Validate(cert); err != nil {
		return nil, fmt.Errorf("meizu certificate %q: %w", cert.Name, err)
	}
	hc, err := opts.HTTP(cert)
	if err != nil {
		return nil, fmt.Errorf("meizu certificate %q: %w", cert.Name, err)
	}
	return &client{
		appID:     cert.Meizu.AppID,
		appSecret: string(cert.Data[config.KeyAppSecret]),
		baseURL:   providers.BaseURL(cert, DefaultURL),
		http:      hc,
		now:       opts.Clock(),
	}, nil
}

// Validate checks the certificate's app id and secret without any network call.
func Validate(cert *config.Certificate) (providers.CredentialInfo, error) {
	if cert.Meizu == nil || cert.Meizu.AppID == "" {
		return providers.CredentialInfo{}, &providers.CredentialError{Reason: providers.ReasonInvalidCredentials, Message: "spec meizu.appID is required"}
	}
	if _, err := strconv.ParseUint(cert.Meizu.AppID, 10, 63); err != nil {
		return providers.CredentialInfo{}, &providers.CredentialError{Reason: providers.ReasonInvalidCredentials,
			Message: fmt.Sprintf("spec meizu.appID %q is not a number", cert.Meizu.AppID)}
	}
	if err := providers.RequireKeys(cert.Data, config.KeyAppSecret); err != nil {
		return providers.CredentialInfo{}, err
	}
	for _, r := range string(cert.Data[config.KeyAppSecret]) {
		if unicode.IsSpace(r) || !unicode.IsPrint(r) {
			// A trailing newline from `kubectl create secret --from-file`
			// would otherwise surface only as code 1006 at the first send.
			return providers.CredentialInfo{}, providers.Invalid(config.KeyAppSecret, "contains whitespace or control characters (a trailing newline?)")
		}
	}
	return providers.CredentialInfo{Subject: "appId " + cert.Meizu.AppID}, nil
}

func (c *client) Provider() config.Provider { return config.Meizu }

// Sign is Meizu's request signature: lowercase hex MD5 of every parameter but
// sign, sorted by name and written as name=value with raw (not URL-encoded)
// values and nothing between pairs, followed by the app secret.
func Sign(params map[string]string, appSecret string) string {
	keys := make([]string, 0, len(params))
	for k := range params {
		if k != "sign" {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(params[k])
	}
	b.WriteString(appSecret)
	sum := md5.Sum([]byte(b.String()))
	return hex.EncodeToString(sum[:])
}

type noticeBarInfo struct {
	NoticeMsgType int32  `json:"noticeMsgType"`
	NoticeBarType int    `json:"noticeBarType"`
	Title         string `json:"title"`
	Content       string `json:"content"`
}

type clickTypeInfo struct {
	ClickType  int               `json:"clickType"`
	Parameters map[string]string `json:"parameters,omitempty"`
}

type pushTimeInfo struct {
	OffLine   int   `json:"offLine"`
	ValidTime int64 `json:"validTime"`
}

type notificationType struct {
	Vibrate int `json:"vibrate"`
	Lights  int `json:"lights"`
	Sound   int `json:"sound"`
}

type advanceInfo struct {
	NotifyKey        string           `json:"notifyKey"`
	NotificationType notificationType `json:"notificationType"`
}

type messageJSON struct {
	NoticeBarInfo noticeBarInfo `json:"noticeBarInfo"`
	ClickTypeInfo clickTypeInfo `json:"clickTypeInfo"`
	PushTimeInfo  pushTimeInfo  `json:"pushTimeInfo"`
	AdvanceInfo   advanceInfo   `json:"advanceInfo"`
}

// answer is Meizu's reply: code is a string (a number is accepted too), value
// maps per-pushId codes to pushIds when code is 200 and is "" otherwise.
type answer struct {
	Code    *json.Number    `json:"code"`
	Message string          `json:"message"`
	Value   json.RawMessage `json:"value"`
}

// Send delivers one notification to one pushId.
func (c *client) Send(ctx context.Context, m *providers.Message) providers.Result {
	if m.Title == "" || m.Body == "" {
		return providers.Result{Outcome: providers.BadMessage, Reason: "EmptyTitleOrBody"}
	}
	body, _ := json.Marshal(messageJSON{ // plain fields always encode
		NoticeBarInfo: noticeBarInfo{
			NoticeMsgType: m.Classification.MeizuNoticeMsgType,
			NoticeBarType: standardBar,
			Title:         providers.TruncateRunes(m.Title, maxTitle),
			Content:       providers.TruncateRunes(m.Body, maxContent),
		},
		ClickTypeInfo: clickTypeInfo{ClickType: clickOpenApp, Parameters: m.Data},
		PushTimeInfo:  pushTimeInfo{OffLine: offlineOn, ValidTime: validHours(m.Expiration, c.now())},
		AdvanceInfo: advanceInfo{
			NotifyKey:        notifyKey(m),
			NotificationType: notificationType{Vibrate: notificationsOn, Lights: notificationsOn, Sound: notificationsOn},
		},
	})
	params := map[string]string{"appId": c.appID, "pushIds": m.Token, "messageJson": string(body)}
	form := url.Values{"sign": {Sign(params, c.appSecret)}}
	for k, v := range params {
		form.Set(k, v)
	}
	reply, err := providers.PostForm(ctx, c.http, providers.JoinURL(c.baseURL, SendPath), form, nil)
	if err != nil {
		return providers.TransportResult(err)
	}
	var ans answer
	if err := reply.Decode(&ans); err != nil || ans.Code == nil {
		if err == nil {
			err = errors.New("answer has no code")
		}
		return providers.StatusResult(reply, c.now(), err)
	}
	code := ans.Code.String()
	if code != "200" {
		return c.codeResult(code, reply.Header)
	}
	return c.valueResult(ans.Value, m.Token)
}

// notifyKey is 8 characters of [0-9A-Za-z_-]: the base64url encoding of 48
// bits of FNV-1a 64 over the collapse key (or the notification id).
func notifyKey(m *providers.Message) string {
	key := providers.CollapseKey(m)
	h := fnv.New64a()
	h.Write([]byte(key))
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], h.Sum64())
	return base64.RawURLEncoding.EncodeToString(b[:6])
}

// validHours is the hours left until expiration, rounded up, within 1..72.
func validHours(exp, now time.Time) int64 {
	if exp.IsZero() {
		return defaultValidHours
	}
	h := int64((exp.Sub(now) + time.Hour - 1) / time.Hour)
	return min(max(h, minValidHours), maxValidHours)
}

// valueResult reads the per-pushId map of a code-200 answer; our pushId
// absent from it means delivered.
func (c *client) valueResult(value json.RawMessage, token string) providers.Result {
	var failed map[string][]string
	if v := bytes.TrimSpace(value); len(v) > 0 && v[0] == '{' {
		if err := json.Unmarshal(v, &failed); err != nil {
			return providers.Result{Outcome: providers.Retry, Reason: "200", Err: fmt.Errorf("undecodable value: %w", err)}
		}
	}
	keys := make([]string, 0, len(failed))
	for k := range failed {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if !slices.Contains(failed[k], token) {
			continue
		}
		res := providers.Result{Reason: k}
		switch k {
		case "110002", "110003", "110005":
			// Unsubscribed or illegal pushId; 110005 is the alias form.
			res.Outcome = providers.DropToken
		case "110010":
			// Inside value (unlike the top-level rate limit) 110010 means
			// the pushId is inactive: the user switched push off. Nothing
			// will reach this device, so the binding goes; the app uploads
			// the token again when the user turns push back on.
			res.Outcome = providers.DropToken
			res.Reason = "inactive"
		case "110011":
			res.Outcome = providers.QuotaExceeded
			res.ResumeAt = providers.NextMidnight(c.now(), providers.Beijing)
		case "201":
			res.Outcome = providers.BadCredentials
		case "501", "513", "519":
			res.Outcome = providers.Retry
		case "520":
			// Collapsed with the device's other recent messages: shown.
			res.Outcome = providers.Delivered
		default:
			res.Outcome = providers.BadMessage
		}
		return res
	}
	return providers.Result{Outcome: providers.Delivered}
}

// codeResult maps a top-level code other than 200 (providers.md §8 "Errors").
func (c *client) codeResult(code string, h http.Header) providers.Result {
	now := c.now()
	res := providers.Result{Reason: code}
	switch code {
	case "500", "1001", "1003", "110010":
		res.Outcome = providers.Retry
		res.RetryAfter = providers.ParseRetryAfter(h, now)
	case "1006", "110000", "110001", "110009", "110031", "110033":
		res.Outcome = providers.BadCredentials
	case "110019", "110051":
		res.Outcome = providers.QuotaExceeded
		res.ResumeAt = providers.NextMidnight(now, providers.Beijing)
	default:
		// 1005/110004/110032 (bad parameters), 110053 (pass-through limit)
		// and any code Meizu added since: Meizu refused the request itself.
		res.Outcome = providers.BadMessage
	}
	return res
}
