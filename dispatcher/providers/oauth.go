package providers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// ClientCredentials fetches OAuth 2.0 access tokens with the client
// credentials grant (RFC 6749 §4.4), as Huawei and Honor authenticate.
type ClientCredentials struct {
	// Vendor names the endpoint in errors ("huawei OAuth").
	Vendor string
	// TokenURL is the token endpoint.
	TokenURL string
	// DefaultLifetime applies when the answer has no expires_in.
	DefaultLifetime time.Duration
	HTTP            *http.Client
	Now             func() time.Time
}

// tokenAnswer is RFC 6749 §5.1 and §5.2; Huawei sends error as a number,
// Honor as a string, so it is kept raw.
type tokenAnswer struct {
	AccessToken string          `json:"access_token"`
	ExpiresIn   int64           `json:"expires_in"`
	Error       json.RawMessage `json:"error"`
	SubError    json.RawMessage `json:"sub_error"`
	Description string          `json:"error_description"`
}

// AuthError is a refused or failed token request, already classified: a
// 5xx or 429 is Retry, anything else BadCredentials.
type AuthError struct{ Result Result }

func (e *AuthError) Error() string { return e.Result.Err.Error() }
func (e *AuthError) Unwrap() error { return e.Result.Err }

// AuthResult is the outcome of a send whose token could not be obtained.
func AuthResult(err error) Result {
	var ae *AuthError
	if errors.As(err, &ae) {
		return ae.Result
	}
	return TransportResult(err)
}

// Fetch obtains a token for clientID and its expiry; it suits
// TokenCache.Fetch.
func (c *ClientCredentials) Fetch(ctx context.Context, clientID, secret string) (string, time.Time, error) {
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {clientID}, "client_secret": {secret}}
	reply, err := PostForm(ctx, c.HTTP, c.TokenURL, form, nil)
	if err != nil {
		return "", time.Time{}, err
	}
	var a tokenAnswer
	decodeErr := reply.Decode(&a)
	if reply.Status == http.StatusOK && decodeErr == nil && a.AccessToken != "" {
		lifetime := time.Duration(a.ExpiresIn) * time.Second
		if lifetime <= 0 {
			lifetime = c.DefaultLifetime
		}
		return a.AccessToken, c.Now().Add(lifetime), nil
	}
	res := Result{Outcome: BadCredentials, Reason: strings.Trim(string(a.Error), `"`)}
	if res.Reason == "" {
		res.Reason = strconv.Itoa(reply.Status)
	}
	if reply.Status >= 500 || reply.Status == http.StatusTooManyRequests {
		res.Outcome = Retry
		res.RetryAfter = ParseRetryAfter(reply.Header, c.Now())
	}
	if decodeErr != nil {
		res.Err = fmt.Errorf("%s: %w", c.Vendor, decodeErr)
	} else {
		detail := a.Description
		if sub := strings.Trim(string(a.SubError), `"`); sub != "" {
			detail = "sub_error " + sub + ": " + detail
		}
		res.Err = fmt.Errorf("%s HTTP %d: error %s: %s", c.Vendor, reply.Status, res.Reason, detail)
	}
	return "", time.Time{}, &AuthError{Result: res}
}
