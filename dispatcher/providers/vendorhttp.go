package providers

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// TokenCache holds an access token obtained by a vendor's auth call (Huawei and
// Honor OAuth, OPPO and vivo auth tokens): fetched once, shared by concurrent
// sends, refreshed Margin before it expires, and dropped when the vendor says
// it is invalid.
type TokenCache struct {
	// Fetch obtains a fresh token and its expiry.
	Fetch func(ctx context.Context) (token string, expiresAt time.Time, err error)
	// Now is the clock; nil = time.Now.
	Now func() time.Time
	// Margin is how long before expiry the token is refreshed.
	Margin time.Duration

	mu      sync.Mutex
	token   string
	expires time.Time
}

// Get returns a valid token, fetching one when there is none or it is about to
// expire. Concurrent callers wait for one fetch.
func (c *TokenCache) Get(ctx context.Context) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now
	if c.Now != nil {
		now = c.Now
	}
	if c.token != "" && now().Add(c.Margin).Before(c.expires) {
		return c.token, nil
	}
	tok, exp, err := c.Fetch(ctx)
	if err != nil {
		return "", err
	}
	c.token, c.expires = tok, exp
	return tok, nil
}

// Invalidate forgets token if it is still the cached one, so the next Get
// fetches a new one (a vendor answered "token expired/invalid").
func (c *TokenCache) Invalidate(token string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.token == token {
		c.token = ""
	}
}

// Send calls send with the cached token. When the vendor rejects the token
// (expired, or revoked before its expiry), the token is dropped, a new one
// fetched and send called once more; rejected then reports that the new one
// was rejected too (and it is dropped as well). authFailed turns a failed
// fetch into the send's result.
func (c *TokenCache) Send(ctx context.Context, authFailed func(error) Result, send func(token string) (res Result, rejected bool)) (res Result, rejected bool) {
	for attempt := 0; attempt < 2; attempt++ {
		token, err := c.Get(ctx)
		if err != nil {
			return authFailed(err), false
		}
		if res, rejected = send(token); !rejected {
			return res, false
		}
		c.Invalidate(token)
	}
	return res, true
}

// SendOAuth is Send for the vendors whose access tokens come from an OAuth
// token endpoint (Huawei, Honor): a failed fetch is classified by
// AuthResult, and a send whose fresh token was rejected too is the
// credential's fault (BadCredentials).
func (c *TokenCache) SendOAuth(ctx context.Context, send func(token string) (res Result, rejected bool)) Result {
	res, rejected := c.Send(ctx, AuthResult, send)
	if rejected {
		res.Outcome = BadCredentials
	}
	return res
}

// AuthCodeError is a token request the vendor answered in its own envelope
// with a failure code (OPPO's code, vivo's result): the vendors that sign
// their token requests instead of using OAuth.
type AuthCodeError struct {
	// Vendor names the vendor in the message; Field is its name for the code.
	Vendor, Field string
	Code          int
	Message       string
	Header        http.Header
}

func (e *AuthCodeError) Error() string {
	return fmt.Sprintf("%s auth: %s %d: %s", e.Vendor, e.Field, e.Code, e.Message)
}

// AuthReplyError is a token request's reply without the vendor's envelope
// (a gateway's or load balancer's page), or an envelope without a token.
type AuthReplyError struct {
	Vendor string
	Reply  *Reply
	Err    error
}

func (e *AuthReplyError) Error() string {
	return fmt.Sprintf("%s auth: HTTP %d: %v", e.Vendor, e.Reply.Status, e.Err)
}

// CodeAuthResult is the outcome of a send whose token request failed with
// err, for the vendors of AuthCodeError: the vendor's code as codeResult
// classifies its send answers, a reply without the envelope by its HTTP
// status, anything else as a transport failure.
func CodeAuthResult(err error, now time.Time, codeResult func(code int, h http.Header) Result) Result {
	if ae, ok := errors.AsType[*AuthCodeError](err); ok {
		res := codeResult(ae.Code, ae.Header)
		res.Err = err
		return res
	}
	if re, ok := errors.AsType[*AuthReplyError](err); ok {
		return StatusResult(re.Reply, now, err)
	}
	return TransportResult(err)
}

// StatusResult classifies a vendor reply that carries none of the vendor's
// own answer envelope (a gateway's or load balancer's page) by its HTTP
// status: 401/403 are the credential, other 4xx but 408 and 429 the
// request, and the rest (5xx, 408, 429, a 2xx that could not be read)
// transient. vivo documents a 500 as "retry"; OPPO and Meizu document none.
func StatusResult(r *Reply, now time.Time, err error) Result {
	res := Result{Reason: fmt.Sprintf("HTTP %d", r.Status), Err: err}
	switch {
	case r.Status == http.StatusUnauthorized || r.Status == http.StatusForbidden:
		res.Outcome = BadCredentials
	case r.Status >= 400 && r.Status < 500 && r.Status != http.StatusTooManyRequests && r.Status != http.StatusRequestTimeout:
		res.Outcome = BadMessage
	default:
		res.Outcome = Retry
		res.RetryAfter = ParseRetryAfter(r.Header, now)
	}
	return res
}

// Reply is a provider's HTTP answer, body read in full.
type Reply struct {
	Status int
	Header http.Header
	Body   []byte
}

// maxReply bounds how much of an answer is read.
const maxReply = 1 << 20

// Do sends req and reads the reply. A transport failure is returned as error.
func Do(client *http.Client, req *http.Request) (*Reply, error) {
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxReply))
	if err != nil {
		return nil, err
	}
	return &Reply{Status: resp.StatusCode, Header: resp.Header, Body: body}, nil
}

// PostForm sends an application/x-www-form-urlencoded POST.
func PostForm(ctx context.Context, client *http.Client, url string, form url.Values, header http.Header) (*Reply, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded;charset=UTF-8")
	return Do(client, req)
}

// PostJSON sends v as a JSON POST.
func PostJSON(ctx context.Context, client *http.Client, url string, v any, header http.Header) (*Reply, error) {
	body, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json;charset=UTF-8")
	return Do(client, req)
}

// Decode unmarshals a reply body, with the status in the error.
func (r *Reply) Decode(v any) error {
	if err := json.Unmarshal(r.Body, v); err != nil {
		return fmt.Errorf("HTTP %d: undecodable answer: %w", r.Status, err)
	}
	return nil
}
