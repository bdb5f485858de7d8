// Package apns sends notifications through Apple Push Notification service
// with github.com/sideshow/apns2, authenticated by a .p8 signing key (token
// auth) or a TLS client certificate (.p12 or PEM pair), and maps APNs reasons
// onto provider outcomes as providers.md §2 tabulates.
package apns

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v4"
	"github.com/sideshow/apns2"
	"github.com/sideshow/apns2/token"

	"github.com/imcloud/im-push-operator/dispatcher/config"
	"github.com/imcloud/im-push-operator/dispatcher/providers"
)

const (
	environmentProduction  = "Production"
	environmentDevelopment = "Development"

	// APNs answers PayloadTooLarge above these sizes.
	maxPayload     = 4096
	maxVoIPPayload = 5120

	pushTypeAlert      = "alert"
	pushTypeBackground = "background"
	pushTypeVoIP       = "voip"
)

// canonicalUUID reports whether s is 8-4-4-4-12 hex digits, the only form
// APNs accepts in apns-id. By hand and not a regexp: it runs on every send,
// and the regexp was a fifth of building the request.
func canonicalUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := range len(s) {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return false
			}
		}
	}
	return true
}

// Client sends to APNs with one credential. It keeps its HTTP/2 connection
// open across sends, as Apple asks.
type Client struct {
	apns *apns2.Client
	cred *credential
	now  func() time.Time
	// streams is nil when the HTTP client came from the options.
	streams *providers.StreamPool
}

// New builds a client from an APNs certificate. The host is the production or
// sandbox gateway by spec.environment, unless the certificate sets endpoint.
func New(cert *config.Certificate, opts providers.Options) (providers.Client, error) {
	cred, err := load(cert)
	if err != nil {
		return nil, fmt.Errorf("apns certificate %q: %w", cert.Name, err)
	}
	host := apns2.HostProduction
	if cred.spec.Environment == environmentDevelopment {
		host = apns2.HostDevelopment
	}
	host = providers.BaseURL(cert, host)
	hc, streams, err := httpClient(cert, cred, host, opts)
	if err != nil {
		return nil, fmt.Errorf("apns certificate %q: %w", cert.Name, err)
	}
	c := &Client{cred: cred, now: opts.Clock(), streams: streams}
	c.apns = &apns2.Client{Host: host, HTTPClient: hc}
	if cred.authKey != nil {
		c.apns.Token = &token.Token{AuthKey: cred.authKey, KeyID: cred.spec.KeyID, TeamID: cred.spec.TeamID}
	} else {
		c.apns.Certificate = *cred.client
	}
	return c, nil
}

// httpClient returns an HTTP/2 client trusting the CABundle, carrying the
// client certificate for certificate auth, and wrapped so Send can read the
// answer's headers (apns2 drops them, and Retry-After lives there). Its
// connections stay open and are reused, and the stream pool reports the
// stream limit APNs advertises on them.
func httpClient(cert *config.Certificate, cred *credential, host string, opts providers.Options) (*http.Client, *providers.StreamPool, error) {
	var base *http.Client
	var streams *providers.StreamPool
	if opts.HTTPClient != nil {
		base = opts.HTTPClient
	} else {
		var certs []tls.Certificate
		if cred.client != nil {
			certs = []tls.Certificate{*cred.client}
		}
		var err error
		if base, streams, err = providers.NewStreamClient(cert.CABundle, certs, host); err != nil {
			return nil, nil, err
		}
	}
	rt := base.Transport
	if rt == nil {
		rt = http.DefaultTransport
	}
	wrapped := *base
	wrapped.Transport = headerCapture{base: rt}
	return &wrapped, streams, nil
}

// headerKey carries a *http.Header into the round trip to receive the answer's headers.
type headerKey struct{}

type headerCapture struct{ base http.RoundTripper }

func (h headerCapture) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := h.base.RoundTrip(r)
	if err == nil {
		if dst, ok := r.Context().Value(headerKey{}).(*http.Header); ok {
			*dst = resp.Header
		}
	}
	return resp, err
}

// CloseIdleConnections is required by apns2.Client.CloseIdleConnections.
func (h headerCapture) CloseIdleConnections() {
	if c, ok := h.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// Provider implements providers.Client.
func (c *Client) Provider() config.Provider { return config.APNs }

// MaxConcurrentStreams implements providers.StreamLimited.
func (c *Client) MaxConcurrentStreams() int { return c.streams.MaxConcurrentStreams() }

// Send pushes one notification. An ExpiredProviderToken answer re-signs the
// JWT and tries once more before the answer is classified.
func (c *Client) Send(ctx context.Context, m *providers.Message) providers.Result {
	n := Notification(m, c.cred.topic)
	res := c.push(ctx, n, false)
	if res.Reason == apns2.ReasonExpiredProviderToken && c.apns.Token != nil {
		res = c.push(ctx, n, true)
	}
	return res
}

func (c *Client) push(ctx context.Context, n *apns2.Notification, resign bool) providers.Result {
	if c.apns.Token != nil {
		if err := c.sign(resign); err != nil {
			return providers.Result{Outcome: providers.BadCredentials, Reason: "JWTSigning", Err: err}
		}
	}
	var header http.Header
	resp, err := c.apns.PushWithContext(context.WithValue(ctx, headerKey{}, &header), n)
	if err != nil {
		return providers.TransportResult(err)
	}
	res := classify(resp, header, c.now())
	if res.Reason == apns2.ReasonShutdown {
		// The server is going away: let the next send open a new connection.
		c.apns.CloseIdleConnections()
	}
	return res
}

// sign makes sure the provider token was signed less than
// token.TokenTimeout ago by the injected clock, or re-signs it (always when
// force). apns2 signs with time.Now itself; signing here keeps the client's
// clock authoritative, and apns2's GenerateIfExpired then finds the token
// fresh. The claims are the ones apns2 and Apple use.
func (c *Client) sign(force bool) error {
	t := c.apns.Token
	t.Lock()
	defer t.Unlock()
	now := c.now().Unix()
	if !force && t.Bearer != "" && now >= t.IssuedAt && now < t.IssuedAt+token.TokenTimeout {
		return nil
	}
	jt := &jwt.Token{
		Header: map[string]any{"alg": "ES256", "kid": t.KeyID},
		Claims: jwt.MapClaims{"iss": t.TeamID, "iat": now},
		Method: jwt.SigningMethodES256,
	}
	bearer, err := jt.SignedString(t.AuthKey)
	if err != nil {
		return fmt.Errorf("apns: signing provider token: %w", err)
	}
	t.IssuedAt, t.Bearer = now, bearer
	return nil
}

// Notification is the apns2 request Send makes of m for an app's topic (its
// bundle id): headers and payload bytes. The benchmark's ceiling sends it
// with the bare apns2 client, so that it sends what the dispatcher does.
func Notification(m *providers.Message, topic string) *apns2.Notification {
	pushType := m.PushType
	if pushType == "" {
		pushType = pushTypeAlert
	}
	n := &apns2.Notification{
		DeviceToken: m.Token,
		Topic:       topic,
		PushType:    apns2.EPushType(pushType),
		Priority:    apns2.PriorityHigh,
		CollapseID:  providers.CollapseID(m),
		Expiration:  m.Expiration,
	}
	if canonicalUUID(m.ID) {
		n.ApnsID = strings.ToLower(m.ID)
	}
	limit := maxPayload
	switch pushType {
	case pushTypeBackground:
		n.Priority = apns2.PriorityLow
	case pushTypeVoIP:
		n.Topic += ".voip"
		limit = maxVoIPPayload
	}
	n.Payload = fitPayload(m, pushType, limit)
	return n
}

// fitPayload encodes the payload, shortening the body (then the title) on
// a rune boundary until the JSON fits limit bytes. apns2 sends these bytes
// as they are. Custom data alone too large is sent as it is: APNs answers
// PayloadTooLarge.
func fitPayload(m *providers.Message, pushType string, limit int) []byte {
	title, body := m.Title, m.Body
	for {
		raw := encodePayload(m, pushType, title, body)
		over := len(raw) - limit
		switch {
		case over <= 0:
			return raw
		case body != "":
			body = truncate(body, len(body)-over-len(ellipsis))
		case title != "":
			title = truncate(title, len(title)-over-len(ellipsis))
		default:
			return raw
		}
	}
}

// apsDict is the payload's "aps" dictionary. A struct, not apns2's payload
// builder: that one is a map of interfaces, and building and encoding it was
// about an eighth of the dispatcher's allocations per APNs send.
type apsDict struct {
	Alert            *apsAlert `json:"alert,omitempty"`
	Badge            *int      `json:"badge,omitempty"`
	Sound            string    `json:"sound,omitempty"`
	ThreadID         string    `json:"thread-id,omitempty"`
	ContentAvailable int       `json:"content-available,omitempty"`
}

type apsAlert struct {
	Title string `json:"title,omitempty"`
	Body  string `json:"body,omitempty"`
}

// encodePayload is {"aps":{...}} with the custom data keys beside "aps" at
// the top level, where apps read them. A data key "aps" is left out.
func encodePayload(m *providers.Message, pushType, title, body string) []byte {
	var p struct {
		APS apsDict `json:"aps"`
	}
	if pushType == pushTypeBackground {
		p.APS.ContentAvailable = 1
	} else {
		if title != "" || body != "" {
			p.APS.Alert = &apsAlert{Title: title, Body: body}
		}
		p.APS.Badge, p.APS.Sound = m.Badge, m.Sound
	}
	p.APS.ThreadID = m.ThreadID
	// Neither can fail: strings and ints only (invalid UTF-8 becomes U+FFFD).
	raw, _ := json.Marshal(p)
	data := m.Data
	if _, ok := data["aps"]; ok {
		// Data is shared by the notification's deliveries: copy, never delete.
		data = maps.Clone(data)
		delete(data, "aps")
	}
	if len(data) == 0 {
		return raw
	}
	custom, _ := json.Marshal(data)
	// {"aps":{...}} + {"k":"v"} -> {"aps":{...},"k":"v"}
	raw[len(raw)-1] = ','
	return append(raw, custom[1:]...)
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

// classify maps an APNs answer onto an outcome (providers.md §2).
func classify(resp *apns2.Response, header http.Header, now time.Time) providers.Result {
	if resp.Sent() {
		return providers.Result{Outcome: providers.Delivered}
	}
	r := providers.Result{Reason: resp.Reason}
	if r.Reason == "" {
		r.Reason = fmt.Sprintf("HTTP %d", resp.StatusCode)
	}
	switch resp.Reason {
	case apns2.ReasonUnregistered, apns2.ReasonExpiredToken:
		r.Outcome = providers.DropToken
		// APNs sends milliseconds but apns2 keeps whole seconds; the end of
		// that second is the latest instant the timestamp can stand for, so
		// a token bound earlier in the same second is still removed.
		if !resp.Timestamp.IsZero() {
			r.InvalidSince = resp.Timestamp.Add(time.Second - time.Nanosecond)
		}
	case apns2.ReasonBadDeviceToken, apns2.ReasonDeviceTokenNotForTopic, apns2.ReasonMissingDeviceToken:
		r.Outcome = providers.DropToken
	case apns2.ReasonBadTopic, apns2.ReasonMissingTopic, apns2.ReasonTopicDisallowed,
		apns2.ReasonInvalidProviderToken, apns2.ReasonMissingProviderToken, apns2.ReasonBadCertificate,
		apns2.ReasonBadCertificateEnvironment, apns2.ReasonForbidden, apns2.ReasonTooManyProviderTokenUpdates:
		r.Outcome = providers.BadCredentials
	case apns2.ReasonBadCollapseID, apns2.ReasonBadExpirationDate, apns2.ReasonBadPriority,
		apns2.ReasonPayloadEmpty, apns2.ReasonInvalidPushType, apns2.ReasonBadMessageID,
		apns2.ReasonDuplicateHeaders, apns2.ReasonBadPath, apns2.ReasonMethodNotAllowed, apns2.ReasonPayloadTooLarge:
		r.Outcome = providers.BadMessage
	case apns2.ReasonExpiredProviderToken, apns2.ReasonTooManyRequests, apns2.ReasonIdleTimeout,
		apns2.ReasonInternalServerError, apns2.ReasonServiceUnavailable, apns2.ReasonShutdown:
		r.Outcome = providers.Retry
	default:
		r.Outcome = byStatus(resp.StatusCode)
	}
	if r.Outcome == providers.Retry {
		r.RetryAfter = providers.ParseRetryAfter(header, now)
	}
	return r
}

// byStatus classifies a reason this package does not know by its status.
func byStatus(status int) providers.Outcome {
	switch {
	case status == http.StatusGone:
		return providers.DropToken
	case status == http.StatusForbidden:
		return providers.BadCredentials
	case status == http.StatusTooManyRequests || status >= 500:
		return providers.Retry
	default:
		return providers.BadMessage
	}
}
