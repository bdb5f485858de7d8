// Package fcm sends notifications through Firebase Cloud Messaging HTTP v1
// with the Firebase Admin SDK (firebase.google.com/go/v4/messaging), one
// token per request, authenticated by a service account's OAuth2 access
// token, and maps FCM errors onto provider outcomes as providers.md §1
// tabulates.
package fcm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
	"unsafe"

	"firebase.google.com/go/v4/errorutils"
	"firebase.google.com/go/v4/messaging"
	"golang.org/x/net/http/httpguts"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/google"
	"google.golang.org/api/option"

	"github.com/imcloud/im-push-operator/dispatcher/config"
	"github.com/imcloud/im-push-operator/dispatcher/providers"
)

const (
	// Scope is the OAuth2 scope FCM sends need.
	Scope = "https://www.googleapis.com/auth/firebase.messaging"
	// defaultHost serves messages:send under /v1.
	defaultHost = "https://fcm.googleapis.com"
	// maxPayload is FCM's limit for a message to a token.
	maxPayload = 4096
	// maxTTL is the longest android.ttl FCM accepts (28 days).
	maxTTL = 28 * 24 * time.Hour
	// quotaBackoff is the least FCM asks clients to wait after a 429 that
	// carries no Retry-After.
	quotaBackoff = time.Minute
	// tokenMargin renews access tokens this long before they expire.
	tokenMargin = 5 * time.Minute
)

// Client sends to FCM with one service account.
type Client struct {
	messaging *messaging.Client
	tokens    *providers.TokenCache
	now       func() time.Time
	// streams is nil when the HTTP client came from the options.
	streams *providers.StreamPool
}

// New builds a client from an FCM certificate. With cert.Endpoint set, both
// the token exchange (<endpoint>/token) and sends (<endpoint>/v1/...) go there.
func New(cert *config.Certificate, opts providers.Options) (providers.Client, error) {
	sa, err := load(cert)
	if err != nil {
		return nil, fmt.Errorf("fcm certificate %q: %w", cert.Name, err)
	}
	// Connections stay open and are reused; the stream pool reports the
	// stream limit FCM advertises on them.
	hc, streams := opts.HTTPClient, (*providers.StreamPool)(nil)
	if hc == nil {
		if hc, streams, err = providers.NewStreamClient(cert.CABundle, nil, providers.BaseURL(cert, defaultHost)); err != nil {
			return nil, fmt.Errorf("fcm certificate %q: %w", cert.Name, err)
		}
	}
	saJSON := cert.Data[config.KeyFCMServiceAcct]
	if cert.Endpoint != "" {
		if saJSON, err = withTokenURI(saJSON, providers.JoinURL(providers.BaseURL(cert, ""), "token")); err != nil {
			return nil, fmt.Errorf("fcm certificate %q: %w", cert.Name, err)
		}
	}
	now := opts.Clock()
	c := &Client{now: now, streams: streams}
	c.tokens = &providers.TokenCache{
		Now:    now,
		Margin: tokenMargin,
		Fetch: func(ctx context.Context) (string, time.Time, error) {
			return fetchToken(ctx, hc, saJSON)
		},
	}
	rt := hc.Transport
	if rt == nil {
		rt = http.DefaultTransport
	}
	authed := *hc
	authed.Transport = bearer{base: rt}
	c.messaging, err = newMessaging(sa.projectID,
		option.WithHTTPClient(&authed),
		option.WithEndpoint(providers.BaseURL(cert, defaultHost)+"/v1"))
	if err != nil {
		return nil, fmt.Errorf("fcm certificate %q: %w", cert.Name, err)
	}
	return c, nil
}

// sdkVersion goes into the SDK's X-Firebase-Client header; it is the
// firebase.google.com/go/v4 version in go.mod.
const sdkVersion = "4.19.0"

// newMessaging calls messaging.NewClient, which is what firebase.App.Messaging
// does. The root firebase package cannot be built in this module (it imports
// Firestore, Storage and App Check, whose modules are not in go.sum), and
// NewClient takes a *internal.MessagingConfig this module cannot name, so the
// config is made by reflection from NewClient's own signature.
func newMessaging(projectID string, opts ...option.ClientOption) (*messaging.Client, error) {
	newClient := reflect.ValueOf(messaging.NewClient)
	cfg := reflect.New(newClient.Type().In(1).Elem())
	cfg.Elem().FieldByName("ProjectID").SetString(projectID)
	cfg.Elem().FieldByName("Version").SetString(sdkVersion)
	cfg.Elem().FieldByName("Opts").Set(reflect.ValueOf(opts))
	out := newClient.Call([]reflect.Value{reflect.ValueOf(context.Background()), cfg})
	if err, _ := out[1].Interface().(error); err != nil {
		return nil, err
	}
	mc := out[0].Interface().(*messaging.Client)
	if err := disableSDKRetries(mc); err != nil {
		return nil, err
	}
	return mc, nil
}

// disableSDKRetries turns off the SDK's own retry loop (up to 4 retries of a
// 503 or a network error, sleeping inside the call), which the SDK offers no
// option for. The delivery engine owns retries: it frees the worker while
// waiting, honours Retry-After beyond the call timeout, counts the attempts
// and spends them against maxAttempts and the TTL. The SDK's retry loop
// sits in an unexported field (fcmClient.httpClient.RetryConfig), reached
// by reflection; if an SDK version moves it, this fails loudly at client
// construction (every test that builds a client fails) rather than
// retrying twice; TestAnswersMapToOutcomes checks a single 503 is not retried.
func disableSDKRetries(mc *messaging.Client) error {
	field := func(v reflect.Value, name string) (reflect.Value, error) {
		if v.Kind() == reflect.Pointer {
			if v.IsNil() {
				return reflect.Value{}, fmt.Errorf("fcm: the SDK's %s is nil", v.Type())
			}
			v = v.Elem()
		}
		if v.Kind() != reflect.Struct {
			return reflect.Value{}, fmt.Errorf("fcm: the SDK's %s is not a struct", v.Type())
		}
		f := v.FieldByName(name)
		if !f.IsValid() {
			return reflect.Value{}, fmt.Errorf("fcm: the SDK's %s has no field %s; this SDK version is not supported", v.Type(), name)
		}
		return f, nil
	}
	v := reflect.ValueOf(mc)
	for _, name := range []string{"fcmClient", "httpClient", "RetryConfig"} {
		var err error
		if v, err = field(v, name); err != nil {
			return err
		}
	}
	if v.Kind() != reflect.Pointer {
		return fmt.Errorf("fcm: the SDK's RetryConfig is a %s, not a pointer", v.Type())
	}
	// The field is unexported along the way, so it is set through its address.
	reflect.NewAt(v.Type(), unsafe.Pointer(v.UnsafeAddr())).Elem().Set(reflect.Zero(v.Type()))
	return nil
}

// fetchToken runs one JWT-bearer exchange. A new token source each time, so
// an invalidated token is really replaced (oauth2's own source would hand the
// cached one back until it expires by the wall clock).
func fetchToken(ctx context.Context, hc *http.Client, saJSON []byte) (string, time.Time, error) {
	ctx = context.WithValue(ctx, oauth2.HTTPClient, hc)
	creds, err := google.CredentialsFromJSONWithTypeAndParams(ctx, saJSON, google.ServiceAccount, google.CredentialsParams{Scopes: []string{Scope}})
	if err != nil {
		return "", time.Time{}, err
	}
	tok, err := creds.TokenSource.Token()
	if err != nil {
		return "", time.Time{}, err
	}
	// oauth2 accepts a 200 without a usable access_token; passed on, the
	// token fails inside the SDK, which retries that for seconds as a
	// network error.
	if tok.AccessToken == "" || !httpguts.ValidHeaderFieldValue(tok.AccessToken) {
		return "", time.Time{}, errors.New("fcm: the token endpoint answered without a usable access_token")
	}
	return tok.AccessToken, tok.Expiry, nil
}

// withTokenURI rewrites the service account's token_uri, leaving every other
// field as it was.
func withTokenURI(saJSON []byte, uri string) ([]byte, error) {
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(saJSON, &doc); err != nil {
		return nil, fmt.Errorf("decoding %s: %w", config.KeyFCMServiceAcct, err)
	}
	doc["token_uri"], _ = json.Marshal(uri)
	return json.Marshal(doc)
}

// tokenKey carries the access token of one Send into the SDK's round trips.
type tokenKey struct{}

// bearer sets the Authorization header from the request's context. Tokens are
// fetched in Send, not here, so a failed token exchange is classified by this
// package instead of being retried by the SDK as a network error.
type bearer struct{ base http.RoundTripper }

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	tok, _ := r.Context().Value(tokenKey{}).(string)
	if tok == "" {
		return nil, errors.New("fcm: no access token in the request context")
	}
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+tok)
	return b.base.RoundTrip(r)
}

// Provider implements providers.Client.
func (c *Client) Provider() config.Provider { return config.FCM }

// MaxConcurrentStreams implements providers.StreamLimited.
func (c *Client) MaxConcurrentStreams() int { return c.streams.MaxConcurrentStreams() }

// Send sends one message. An UNAUTHENTICATED or PERMISSION_DENIED answer
// without FCM detail drops the access token, fetches a new one and tries
// once more before the answer is classified.
func (c *Client) Send(ctx context.Context, m *providers.Message) providers.Result {
	msg := c.message(m)
	res, tok := c.send(ctx, msg)
	if tok != "" && (res.Reason == reasonUnauthenticated || res.Reason == reasonPermissionDenied) {
		c.tokens.Invalidate(tok)
		res, _ = c.send(ctx, msg)
	}
	return res
}

func (c *Client) send(ctx context.Context, msg *messaging.Message) (providers.Result, string) {
	tok, err := c.tokens.Get(ctx)
	if err != nil {
		return c.tokenError(ctx, err), ""
	}
	_, err = c.messaging.Send(context.WithValue(ctx, tokenKey{}, tok), msg)
	return c.classify(ctx, err), tok
}

const (
	reasonUnauthenticated  = "UNAUTHENTICATED"
	reasonPermissionDenied = "PERMISSION_DENIED"
)

// tokenError classifies a failed token exchange: the OAuth error code when
// Google answered (a refused grant means the service account is wrong or
// deleted), else a transport failure.
func (c *Client) tokenError(ctx context.Context, err error) providers.Result {
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		if ctx.Err() != nil {
			return providers.TransportResult(ctx.Err())
		}
		return providers.TransportResult(err)
	}
	code := re.ErrorCode
	if code == "" {
		var body struct {
			Error string `json:"error"`
		}
		_ = json.Unmarshal(re.Body, &body)
		code = body.Error
	}
	status := 0
	if re.Response != nil {
		status = re.Response.StatusCode
	}
	if code == "" {
		code = "token HTTP " + strconv.Itoa(status)
	}
	r := providers.Result{Reason: code, Err: fmt.Errorf("fcm: access token: %w", err)}
	switch {
	case status == http.StatusTooManyRequests || status >= 500:
		r.Outcome = providers.Retry
		if re.Response != nil {
			r.RetryAfter = providers.ParseRetryAfter(re.Response.Header, c.now())
		}
	default:
		r.Outcome = providers.BadCredentials
	}
	return r
}

// classify maps the SDK's error onto an outcome (providers.md §1).
func (c *Client) classify(ctx context.Context, err error) providers.Result {
	if err == nil {
		return providers.Result{Outcome: providers.Delivered}
	}
	resp := errorutils.HTTPResponse(err)
	if resp == nil {
		if ctx.Err() != nil {
			return providers.TransportResult(ctx.Err())
		}
		if errorutils.IsDeadlineExceeded(err) {
			return providers.Result{Outcome: providers.Retry, Reason: "timeout", Err: err}
		}
		return providers.TransportResult(err)
	}
	r := providers.Result{Err: err}
	retryAfter := providers.ParseRetryAfter(resp.Header, c.now())
	switch {
	case messaging.IsUnregistered(err):
		r.Outcome, r.Reason = providers.DropToken, "UNREGISTERED"
	case messaging.IsSenderIDMismatch(err):
		r.Outcome, r.Reason = providers.DropToken, "SENDER_ID_MISMATCH"
	case messaging.IsThirdPartyAuthError(err):
		r.Outcome, r.Reason = providers.BadCredentials, "THIRD_PARTY_AUTH_ERROR"
	case messaging.IsQuotaExceeded(err), errorutils.IsResourceExhausted(err):
		r.Outcome, r.Reason = providers.Retry, "QUOTA_EXCEEDED"
		if !messaging.IsQuotaExceeded(err) {
			r.Reason = "RESOURCE_EXHAUSTED"
		}
		r.RetryAfter = max(retryAfter, quotaBackoff)
	case messaging.IsUnavailable(err), errorutils.IsUnavailable(err):
		r.Outcome, r.Reason, r.RetryAfter = providers.Retry, "UNAVAILABLE", retryAfter
	case messaging.IsInternal(err), errorutils.IsInternal(err):
		r.Outcome, r.Reason, r.RetryAfter = providers.Retry, "INTERNAL", retryAfter
	case messaging.IsInvalidArgument(err), errorutils.IsInvalidArgument(err):
		r.Outcome, r.Reason = providers.BadMessage, "INVALID_ARGUMENT"
		if aboutToken(err) {
			r.Outcome = providers.DropToken
		}
	case errorutils.IsUnauthenticated(err):
		r.Outcome, r.Reason = providers.BadCredentials, reasonUnauthenticated
	case errorutils.IsPermissionDenied(err):
		r.Outcome, r.Reason = providers.BadCredentials, reasonPermissionDenied
	case errorutils.IsNotFound(err):
		// A 404 without the UNREGISTERED detail names a project or API that
		// does not exist, not a token.
		r.Outcome, r.Reason = providers.BadCredentials, "NOT_FOUND"
	default:
		r.Reason = "HTTP " + strconv.Itoa(resp.StatusCode)
		r.Outcome = providers.BadMessage
		if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500 {
			r.Outcome, r.RetryAfter = providers.Retry, retryAfter
		}
	}
	return r
}

// aboutToken tells an INVALID_ARGUMENT about the registration token (the
// token is malformed: drop it) from one about the payload (fix the message).
func aboutToken(err error) bool {
	msg := strings.ToLower(err.Error())
	return strings.Contains(msg, "registration token") || strings.Contains(msg, "message.token")
}

// message builds the FCM message: notification and data for every platform,
// an android block (high priority, ttl, collapse key and tag, badge as
// notification_count) and an apns block (priority, collapse id, badge,
// sound, thread id), as providers.md §1 and §9 show.
func (c *Client) message(m *providers.Message) *messaging.Message {
	collapse := providers.CollapseID(m)
	background := m.PushType == "background"
	msg := &messaging.Message{Token: m.Token, Data: m.Data}
	android := &messaging.AndroidConfig{Priority: "high", CollapseKey: collapse}
	if !m.Expiration.IsZero() {
		ttl := min(max(m.Expiration.Sub(c.now()), 0), maxTTL).Truncate(time.Second)
		android.TTL = &ttl
	}
	aps := &messaging.Aps{ThreadID: m.ThreadID}
	apnsHeaders := map[string]string{"apns-priority": "10"}
	if collapse != "" {
		apnsHeaders["apns-collapse-id"] = collapse
	}
	if background {
		// Data only: the app handles it; APNs wants priority 5 for it.
		aps.ContentAvailable = true
		apnsHeaders["apns-priority"] = "5"
	} else {
		an := &messaging.AndroidNotification{Tag: collapse, Sound: m.Sound}
		if m.Badge != nil {
			an.NotificationCount = m.Badge
		}
		android.Notification = an
		aps.Badge = m.Badge
		aps.Sound = m.Sound
	}
	msg.Android = android
	msg.APNS = &messaging.APNSConfig{Headers: apnsHeaders, Payload: &messaging.APNSPayload{Aps: aps}}
	if !background {
		fitNotification(msg, m.Title, m.Body)
	}
	return msg
}

// fitNotification sets title and body, shortening the body (then the title)
// on a rune boundary until the request fits FCM's 4096-byte limit. A message
// whose size bound already fits is not encoded to be measured: that was a
// third of the client's JSON work (the SDK encodes the message again).
func fitNotification(msg *messaging.Message, title, body string) {
	for {
		msg.Notification = &messaging.Notification{Title: title, Body: body}
		if sizeBound(msg, title, body) <= maxPayload {
			return
		}
		raw, err := json.Marshal(msg)
		over := len(raw) - maxPayload
		switch {
		case err != nil || over <= 0:
			return
		case body != "":
			body = truncate(body, len(body)-over-len(ellipsis))
		case title != "":
			title = truncate(title, len(title)-over-len(ellipsis))
		default:
			// Data alone is too large; FCM answers INVALID_ARGUMENT.
			return
		}
	}
}

// fixedJSON bounds the encoded size of everything message sets except its
// strings: field names, punctuation and numbers (TestSizeBoundHolds).
const fixedJSON = 768

// sizeBound is at least the encoded size of msg with title and body, for the
// fields message sets: encoding/json writes a string byte as at most 6 bytes
// (\u00XX, or \ufffd for invalid UTF-8) plus its quotes.
func sizeBound(msg *messaging.Message, title, body string) int {
	n := len(msg.Token) + len(title) + len(body)
	for k, v := range msg.Data {
		n += len(k) + len(v) + 6
	}
	if a := msg.Android; a != nil {
		n += len(a.CollapseKey)
		if an := a.Notification; an != nil {
			n += len(an.Tag) + len(an.Sound)
		}
	}
	if a := msg.APNS; a != nil {
		for k, v := range a.Headers {
			n += len(k) + len(v) + 6
		}
		if a.Payload != nil && a.Payload.Aps != nil {
			n += len(a.Payload.Aps.ThreadID) + len(a.Payload.Aps.Sound)
		}
	}
	return fixedJSON + 6*n
}

const ellipsis = "…"

// truncate cuts s to at most n bytes on a rune boundary and marks the cut;
// n <= 0 empties s.
func truncate(s string, n int) string {
	if n <= 0 {
		return ""
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + ellipsis
}
