// Package xiaomi sends notifications through Xiaomi MiPush: one form POST
// /v3/message/regid per device token, authenticated by the static header
// "Authorization: key=<appSecret>" (providers.md §5).
//
// Choices the reference leaves open:
//   - 20301 ("no valid target") drops the token, as clients do for
//     single-regId sends (UNCONFIRMED in providers.md).
//   - payload carries Message.Data as a JSON object, URL-encoded once by the
//     form encoding; Data is also sent as extra.<key> pairs (at most 10, at
//     most 1024 characters together, keys in sorted order, MiPush's own extra
//     names skipped) so apps that read extras get it without parsing.
//   - Every message is a notification (pass_through 0): pass-through messages
//     do not reach an app that is not running, which is the offline case.
//     MiPush has no badge (MIUI counts notifications), so Message.Badge is
//     not sent; notify_type is -1 (sound, vibration and lights).
package xiaomi

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
	"unicode/utf8"

	"github.com/imcloud/im-push-operator/dispatcher/config"
	"github.com/imcloud/im-push-operator/dispatcher/providers"
)

// SendPath is the single-target send on every regional host.
const SendPath = "/v3/message/regid"

// regions maps the spec's region to its host; "" is China.
var regions = map[string]string{
	"China":     "https://api.xmpush.xiaomi.com",
	"Global":    "https://api.xmpush.global.xiaomi.com",
	"Europe":    "https://fr-api.xmpush.global.xiaomi.com",
	"Russia":    "https://ru-api.xmpush.global.xiaomi.com",
	"India":     "https://idmb-api.xmpush.global.xiaomi.com",
	"Singapore": "https://sgp-api.xmpush.global.xiaomi.com",
}

// DefaultRegion is used when the spec names none.
const DefaultRegion = "China"

// Limits from MiPush's server API: title under 50 characters, description
// under 128, at most 10 custom extras of at most 1024 characters, time to
// live at most two weeks.
const (
	MaxTitleRunes       = 49
	MaxDescriptionRunes = 127
	MaxExtras           = 10
	MaxExtraChars       = 1024
	maxTTL              = 14 * 24 * time.Hour
)

// reservedExtras are MiPush's own extra.* names, which custom data must not
// overwrite.
var reservedExtras = map[string]bool{
	"channel_id": true, "notify_effect": true, "intent_uri": true, "web_uri": true,
	"notify_foreground": true, "only_send_once": true, "callback": true, "callback.type": true,
	"callback.param": true, "sound_uri": true, "ticker": true, "locale": true, "locale_not_in": true,
	"model": true, "model_not_in": true, "app_version": true, "app_version_not_in": true, "jobkey": true,
}

// MiPush result codes (providers.md §5).
const (
	codeOK         = 0
	codeNoTarget   = 20301
	reasonBadRegID = "bad_regids"
)

var codeOutcomes = map[int]providers.Outcome{
	codeNoTarget: providers.DropToken,
	21301:        providers.BadCredentials,
	21302:        providers.BadCredentials,
	22000:        providers.BadCredentials,
	22006:        providers.BadCredentials,
	22007:        providers.BadCredentials,
	22022:        providers.BadCredentials,
	10031:        providers.BadCredentials,
	10036:        providers.BadCredentials,
	1:            providers.Retry,
	10001:        providers.Retry,
	10002:        providers.Retry,
	10003:        providers.Retry,
	10027:        providers.Retry,
	10037:        providers.Retry,
	10034:        providers.QuotaExceeded,
	200001:       providers.QuotaExceeded,
	10008:        providers.BadMessage,
	10016:        providers.BadMessage,
	10017:        providers.BadMessage,
	65009:        providers.BadMessage,
	65014:        providers.BadMessage,
	65015:        providers.BadMessage,
	27001:        providers.BadMessage,
}

type client struct {
	http    *http.Client
	now     func() time.Time
	sendURL string
	header  http.Header
	pkg     string
	channel string
}

// New returns a Xiaomi client for cert.
func New(cert *config.Certificate, opts providers.Options) (providers.Client, error) {
	if _, err := Validate(cert); err != nil {
		return nil, fmt.Errorf("xiaomi certificate %q: %w", cert.Name, err)
	}
	hc, err := opts.HTTP(cert)
	if err != nil {
		return nil, fmt.Errorf("xiaomi certificate %q: %w", cert.Name, err)
	}
	spec := cert.Xiaomi
	secret := strings.TrimSpace(string(cert.Data[config.KeyAppSecret]))
	return &client{
		http:    hc,
		now:     opts.Clock(),
		sendURL: providers.JoinURL(providers.BaseURL(cert, regions[regionOf(spec)]), SendPath),
		header:  http.Header{"Authorization": {"key=" + secret}},
		pkg:     spec.PackageName,
		channel: spec.ChannelID,
	}, nil
}

func regionOf(spec *config.XiaomiSpec) string {
	if spec.Region == "" {
		return DefaultRegion
	}
	return spec.Region
}

func (c *client) Provider() config.Provider { return config.Xiaomi }

// Send delivers m with one form POST.
func (c *client) Send(ctx context.Context, m *providers.Message) providers.Result {
	form, err := c.form(m)
	if err != nil {
		return providers.Result{Outcome: providers.BadMessage, Reason: "encode", Err: err}
	}
	reply, err := providers.PostForm(ctx, c.http, c.sendURL, form, c.header)
	if err != nil {
		return providers.TransportResult(err)
	}
	return classify(reply, m.Token, c.now())
}

type answer struct {
	Result      string `json:"result"`
	Code        *int   `json:"code"`
	Reason      string `json:"reason"`
	Description string `json:"description"`
	Data        struct {
		ID        string `json:"id"`
		BadRegIDs string `json:"bad_regids"`
	} `json:"data"`
}

func classify(r *providers.Reply, token string, now time.Time) providers.Result {
	retryAfter := providers.ParseRetryAfter(r.Header, now)
	var a answer
	if err := r.Decode(&a); err != nil || a.Code == nil {
		res := providers.Result{Outcome: byStatus(r.Status), Reason: strconv.Itoa(r.Status), RetryAfter: retryAfter, Err: err}
		if err == nil {
			res.Err = fmt.Errorf("HTTP %d without a code", r.Status)
		}
		return res
	}
	code := *a.Code
	res := providers.Result{Reason: strconv.Itoa(code), RetryAfter: retryAfter}
	if code == codeOK {
		res.Outcome = providers.Delivered
		if slices.Contains(strings.Split(a.Data.BadRegIDs, ","), token) {
			res.Outcome, res.Reason = providers.DropToken, reasonBadRegID
		}
		return res
	}
	res.Err = fmt.Errorf("xiaomi %d: %s %s", code, a.Reason, a.Description)
	o, ok := codeOutcomes[code]
	if !ok {
		o = byStatus(r.Status)
	}
	res.Outcome = o
	if o == providers.QuotaExceeded {
		res.ResumeAt = providers.NextMidnight(now, providers.Beijing)
	}
	return res
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

func (c *client) form(m *providers.Message) (url.Values, error) {
	key := providers.CollapseKey(m)
	f := url.Values{
		"registration_id":         {m.Token},
		"restricted_package_name": {c.pkg},
		"pass_through":            {"0"},
		"notify_type":             {"-1"},
		"title":                   {providers.TruncateRunes(m.Title, MaxTitleRunes)},
		"description":             {providers.TruncateRunes(m.Body, MaxDescriptionRunes)},
		"notify_id":               {strconv.FormatInt(int64(providers.NotifyID(key)), 10)},
		"extra.notify_effect":     {"1"},
	}
	if c.channel != "" {
		f.Set("extra.channel_id", c.channel)
	}
	if !m.Expiration.IsZero() {
		d := min(max(m.Expiration.Sub(c.now()), time.Second), maxTTL)
		f.Set("time_to_live", strconv.FormatInt(d.Milliseconds(), 10))
	}
	if len(m.Data) > 0 {
		payload, err := json.Marshal(m.Data)
		if err != nil {
			return nil, err
		}
		f.Set("payload", string(payload))
		addExtras(f, m.Data)
	}
	return f, nil
}

// addExtras adds custom data as extra.<k> within MiPush's limits.
func addExtras(f url.Values, data map[string]string) {
	keys := make([]string, 0, len(data))
	for k := range data {
		if k != "" && !reservedExtras[k] {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	n, chars := 0, 0
	for _, k := range keys {
		size := utf8.RuneCountInString(k) + utf8.RuneCountInString(data[k])
		if n == MaxExtras || chars+size > MaxExtraChars {
			continue
		}
		f.Set("extra."+k, data[k])
		n, chars = n+1, chars+size
	}
}

// Validate checks the certificate without any network call.
func Validate(cert *config.Certificate) (providers.CredentialInfo, error) {
	spec := cert.Xiaomi
	if spec == nil {
		return providers.CredentialInfo{}, specError("the xiaomi spec block is missing")
	}
	if !validPackage(spec.PackageName) {
		return providers.CredentialInfo{}, specError(fmt.Sprintf("spec.xiaomi.packageName %q is not an Android package name", spec.PackageName))
	}
	if _, ok := regions[regionOf(spec)]; !ok {
		return providers.CredentialInfo{}, specError(fmt.Sprintf("spec.xiaomi.region %q is not one of China, Global, Europe, Russia, India, Singapore", spec.Region))
	}
	if strings.ContainsFunc(spec.ChannelID, func(r rune) bool { return r <= ' ' || r > '~' }) {
		return providers.CredentialInfo{}, specError(fmt.Sprintf("spec.xiaomi.channelID %q holds a character that is not visible ASCII", spec.ChannelID))
	}
	if err := providers.RequireKeys(cert.Data, config.KeyAppSecret); err != nil {
		return providers.CredentialInfo{}, err
	}
	secret := strings.TrimSpace(string(cert.Data[config.KeyAppSecret]))
	if secret == "" {
		return providers.CredentialInfo{}, providers.Invalid(config.KeyAppSecret, "is blank")
	}
	if i := strings.IndexFunc(secret, func(r rune) bool { return r <= ' ' || r > '~' }); i >= 0 {
		return providers.CredentialInfo{}, providers.Invalid(config.KeyAppSecret, "holds a character that is not visible ASCII at byte %d", i)
	}
	return providers.CredentialInfo{Subject: "package " + spec.PackageName + ", region " + regionOf(spec)}, nil
}

func specError(msg string) *providers.CredentialError {
	return &providers.CredentialError{Reason: providers.ReasonInvalidCredentials, Message: msg}
}

// validPackage checks Android's applicationId rule: at least two
// dot-separated segments, each a letter followed by letters, digits or _.
func validPackage(p string) bool {
	segs := strings.Split(p, ".")
	if len(segs) < 2 || len(p) > 255 {
		return false
	}
	for _, s := range segs {
		if s == "" {
			return false
		}
		for i, r := range s {
			letter := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z'
			if !letter && (i == 0 || r != '_' && (r < '0' || r > '9')) {
				return false
			}
		}
	}
	return true
}
