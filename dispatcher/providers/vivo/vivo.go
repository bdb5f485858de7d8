// Package vivo sends notifications through vivo Push, providers.md §7: an
// auth call signed with MD5 gives an authToken that every send carries in the
// authToken header, and one /message/send per registration id.
package vivo

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"net/http"
	"strconv"
	"time"

	"github.com/imcloud/im-push-operator/dispatcher/config"
	"github.com/imcloud/im-push-operator/dispatcher/providers"
)

// DefaultURL is vivo's only host; a certificate's endpoint replaces it.
const (
	DefaultURL = "https://api-push.vivo.com.cn"
	AuthPath   = "/message/auth"
	SendPath   = "/message/send"
)

const (
	// tokenLifetime is how long vivo keeps an authToken valid, counted on our
	// clock from the fetch so skew with vivo cannot keep an expired token.
	tokenLifetime = 24 * time.Hour
	// refreshMargin makes the cache fetch a new token once the current one is
	// an hour old (vivo asks for a refresh every 1–2 h).
	refreshMargin = 23 * time.Hour

	// Title and content limits count a non-ASCII character as two (vivo:
	// "20 Chinese characters, 40 English ones").
	maxTitleWidth   = 40
	maxContentWidth = 100
	maxCustomJSON   = 1024
	minTTL          = time.Minute
	maxTTL          = 24 * time.Hour

	notifyRingAndVibrate = 4
	skipOpenApp          = 1
	anyNetwork           = -1
)

// vivo result codes the client acts on (providers.md §7 "Errors").
const (
	codeOK         = 0
	codeAuthFailed = 10000
)

type client struct {
	appID     string
	appKey    string
	appSecret string
	baseURL   string
	http      *http.Client
	now       func() time.Time
	tokens    *providers.TokenCache
}

// New builds a vivo client from a certificate (spec vivo.appID, Secret keys
// appKey and appSecret).
func New(cert *config.Certificate, opts providers.Options) (providers.Client, error) {
	if _, err := Validate(cert); err != nil {
		return nil, fmt.Errorf("vivo certificate %q: %w", cert.Name, err)
	}
	hc, err := opts.HTTP(cert)
	if err != nil {
		return nil, fmt.Errorf("vivo certificate %q: %w", cert.Name, err)
	}
	c := &client{
		appID:     cert.Vivo.AppID,
		appKey:    string(cert.Data[config.KeyAppKey]),
		appSecret: string(cert.Data[config.KeyAppSecret]),
		baseURL:   providers.BaseURL(cert, DefaultURL),
		http:      hc,
		now:       opts.Clock(),
	}
	c.tokens = &providers.TokenCache{Fetch: c.fetch, Now: c.now, Margin: refreshMargin}
	return c, nil
}

// Validate checks the certificate's app id and keys without any network call.
func Validate(cert *config.Certificate) (providers.CredentialInfo, error) {
	if cert.Vivo == nil || cert.Vivo.AppID == "" {
		return providers.CredentialInfo{}, &providers.CredentialError{Reason: providers.ReasonInvalidCredentials, Message: "spec vivo.appID is required"}
	}
	if _, err := strconv.ParseUint(cert.Vivo.AppID, 10, 63); err != nil {
		return providers.CredentialInfo{}, &providers.CredentialError{Reason: providers.ReasonInvalidCredentials,
			Message: fmt.Sprintf("spec vivo.appID %q is not a number", cert.Vivo.AppID)}
	}
	if err := providers.RequireKeys(cert.Data, config.KeyAppKey, config.KeyAppSecret); err != nil {
		return providers.CredentialInfo{}, err
	}
	for _, key := range []string{config.KeyAppKey, config.KeyAppSecret} {
		if err := providers.NoSpace(key, cert.Data[key]); err != nil {
			return providers.CredentialInfo{}, err
		}
	}
	return providers.CredentialInfo{Subject: "appId " + cert.Vivo.AppID}, nil
}

func (c *client) Provider() config.Provider { return config.Vivo }

// Sign is vivo's auth signature: lowercase hex MD5 of app id, app key,
// millisecond timestamp and app secret, concatenated.
func Sign(appID, appKey string, timestampMillis int64, appSecret string) string {
	sum := md5.Sum([]byte(appID + appKey + strconv.FormatInt(timestampMillis, 10) + appSecret))
	return hex.EncodeToString(sum[:])
}

type authRequest struct {
	AppID     string `json:"appId"`
	AppKey    string `json:"appKey"`
	Timestamp int64  `json:"timestamp"`
	Sign      string `json:"sign"`
}

// answer is vivo's reply to both calls; Result is a pointer so a body
// without one is not mistaken for success.
type answer struct {
	Result      *int   `json:"result"`
	Desc        string `json:"desc"`
	AuthToken   string `json:"authToken"`
	TaskID      string `json:"taskId"`
	InvalidUser *struct {
		// userid is not read: one regId per send, and clients disagree on
		// its JSON type.
		Status int `json:"status"`
	} `json:"invalidUser"`
}

func (c *client) fetch(ctx context.Context) (string, time.Time, error) {
	now := c.now()
	ts := now.UnixMilli()
	req := authRequest{AppID: c.appID, AppKey: c.appKey, Timestamp: ts, Sign: Sign(c.appID, c.appKey, ts, c.appSecret)}
	reply, err := providers.PostJSON(ctx, c.http, providers.JoinURL(c.baseURL, AuthPath), req, nil)
	if err != nil {
		return "", time.Time{}, err
	}
	ans, err := decode(reply)
	if err != nil {
		return "", time.Time{}, &providers.AuthReplyError{Vendor: "vivo", Reply: reply, Err: err}
	}
	if *ans.Result != codeOK {
		return "", time.Time{}, &providers.AuthCodeError{Vendor: "vivo", Field: "result", Code: *ans.Result, Message: ans.Desc, Header: reply.Header}
	}
	if ans.AuthToken == "" {
		return "", time.Time{}, &providers.AuthReplyError{Vendor: "vivo", Reply: reply, Err: errors.New("answer has no authToken")}
	}
	return ans.AuthToken, now.Add(tokenLifetime), nil
}

func decode(reply *providers.Reply) (*answer, error) {
	var ans answer
	if err := reply.Decode(&ans); err != nil {
		return nil, err
	}
	if ans.Result == nil {
		return nil, errors.New("answer has no result")
	}
	return &ans, nil
}

type sendRequest struct {
	AppID       string `json:"appId"`
	RegID       string `json:"regId"`
	NotifyType  int    `json:"notifyType"`
	Title       string `json:"title"`
	Content     string `json:"content"`
	TimeToLive  int64  `json:"timeToLive"`
	SkipType    int    `json:"skipType"`
	NetworkType int    `json:"networkType"`
	// Classification is left out when zero: vivo derives it from the
	// category, and an explicit 0 next to a system category is a mismatch.
	Classification  int32             `json:"classification,omitempty"`
	Category        string            `json:"category,omitempty"`
	NotifyID        int32             `json:"notifyId"`
	ClientCustomMap map[string]string `json:"clientCustomMap,omitempty"`
	RequestID       string            `json:"requestId"`
}

// Send delivers one notification to one regId.
func (c *client) Send(ctx context.Context, m *providers.Message) providers.Result {
	req, bad := c.request(m)
	if bad != nil {
		return *bad
	}
	// A rejected token is replaced and the send tried once more. The
	// requestId is unchanged, so vivo dedupes if both got through.
	res, _ := c.tokens.Send(ctx, c.authResult, func(token string) (providers.Result, bool) {
		return c.send(ctx, token, req)
	})
	return res
}

func (c *client) send(ctx context.Context, token string, req *sendRequest) (res providers.Result, rejected bool) {
	reply, err := providers.PostJSON(ctx, c.http, providers.JoinURL(c.baseURL, SendPath), req, http.Header{"authToken": {token}})
	if err != nil {
		return providers.TransportResult(err), false
	}
	ans, err := decode(reply)
	if err != nil {
		return providers.StatusResult(reply, c.now(), err), false
	}
	if *ans.Result == codeOK && ans.InvalidUser != nil {
		return invalidUserResult(ans.InvalidUser.Status), false
	}
	return c.codeResult(*ans.Result, reply.Header), *ans.Result == codeAuthFailed
}

func (c *client) request(m *providers.Message) (*sendRequest, *providers.Result) {
	if m.Title == "" || m.Body == "" {
		return nil, &providers.Result{Outcome: providers.BadMessage, Reason: "EmptyTitleOrBody"}
	}
	if len(m.Data) > 0 {
		custom, _ := json.Marshal(m.Data) // a map of strings always encodes
		if len(custom) > maxCustomJSON {
			return nil, &providers.Result{Outcome: providers.BadMessage, Reason: "DataTooLarge",
				Err: fmt.Errorf("clientCustomMap is %d bytes, vivo allows %d", len(custom), maxCustomJSON)}
		}
	}
	return &sendRequest{
		AppID:           c.appID,
		RegID:           m.Token,
		NotifyType:      notifyRingAndVibrate,
		Title:           truncateWidth(m.Title, maxTitleWidth),
		Content:         truncateWidth(m.Body, maxContentWidth),
		TimeToLive:      timeToLive(m.Expiration, c.now()),
		SkipType:        skipOpenApp,
		NetworkType:     anyNetwork,
		Classification:  m.Classification.VivoClassification,
		Category:        m.Classification.VivoCategory,
		NotifyID:        notifyID(m),
		ClientCustomMap: m.Data,
		RequestID:       requestID(m),
	}, nil
}

// notifyID maps FNV-1a 32 of the collapse key (or the notification id) into
// vivo's 1..2147483647: the same key replaces the previous notification.
func notifyID(m *providers.Message) int32 {
	key := providers.CollapseKey(m)
	h := fnv.New32a()
	h.Write([]byte(key))
	return int32(h.Sum32()%2147483647) + 1
}

// requestID is the same for every attempt of one notification to one device
// and differs between devices, so vivo's dedupe by requestId makes retries
// safe without merging two devices' sends.
func requestID(m *providers.Message) string {
	sum := sha256.Sum256([]byte(m.ID + "\x00" + m.Token))
	return hex.EncodeToString(sum[:16])
}

// timeToLive is the seconds left until expiration, within vivo's 60 s..1 day.
func timeToLive(exp, now time.Time) int64 {
	d := maxTTL
	if !exp.IsZero() {
		d = min(max(exp.Sub(now), minTTL), maxTTL)
	}
	return int64((d + time.Second - 1) / time.Second)
}

// truncateWidth cuts s on a rune boundary so that ASCII counts one and any
// other character two, as vivo counts title and content length.
func truncateWidth(s string, n int) string {
	w := 0
	for pos, r := range s {
		rw := 1
		if r >= 0x80 {
			rw = 2
		}
		if w+rw > n {
			return s[:pos]
		}
		w += rw
	}
	return s
}

// invalidUserResult maps the invalidUser status of an accepted send.
func invalidUserResult(status int) providers.Result {
	res := providers.Result{Reason: "invalidUser:" + strconv.Itoa(status)}
	switch status {
	case 1, 2, 3:
		// 1 unknown regId, 2 uninstalled / notifications off / data cleared;
		// 3 (offline 90 days, seen in client comments, UNCONFIRMED) is as
		// dead: the app re-registers a token when it runs again.
		res.Outcome = providers.DropToken
	default:
		// 4: not a test device (pushMode 1); anything else vivo refused.
		res.Outcome = providers.BadMessage
	}
	return res
}

// codeResult maps a vivo result code (providers.md §7 "Errors").
func (c *client) codeResult(code int, h http.Header) providers.Result {
	now := c.now()
	res := providers.Result{Reason: strconv.Itoa(code)}
	switch {
	case code == codeOK:
		return providers.Result{Outcome: providers.Delivered}
	case code == 10302:
		res.Outcome = providers.DropToken
	case code == codeAuthFailed || code == 10072:
		// 10000 lands here only after the one retry with a fresh token.
		res.Outcome = providers.Retry
		res.RetryAfter = providers.ParseRetryAfter(h, now)
	case code == 10070 || code == 10252 || code == 10254:
		res.Outcome = providers.QuotaExceeded
		res.ResumeAt = providers.NextMidnight(now, providers.Beijing)
	case code == 10094 || code >= 10200 && code <= 10299:
		res.Outcome = providers.BadCredentials
	default:
		// 10096/10097 and vivo's other parameter codes: vivo looked at the
		// request and refused it, so sending it unchanged again is pointless.
		res.Outcome = providers.BadMessage
	}
	return res
}

func (c *client) authResult(err error) providers.Result {
	return providers.CodeAuthResult(err, c.now(), c.codeResult)
}
