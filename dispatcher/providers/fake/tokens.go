package fake

import (
	"sync"
	"time"
)

// Tokens are the access tokens a fake issued, each bound to an app and
// expiring by the fake's Clock. Fakes embed it.
type Tokens struct {
	Clock
	lifetime time.Duration

	mu     sync.Mutex
	tokens map[string]issued
	issued int
}

type issued struct {
	app     string
	expires time.Time
}

// NewTokens returns an empty store whose tokens live for lifetime.
func NewTokens(lifetime time.Duration) *Tokens {
	return &Tokens{lifetime: lifetime, tokens: map[string]issued{}}
}

// TokensIssued returns how many tokens the fake has issued.
func (t *Tokens) TokensIssued() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.issued
}

// ExpireTokens makes every token issued so far expired, as a vendor
// revoking tokens early would: they are still known, and refused as expired.
func (t *Tokens) ExpireTokens() {
	now := t.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	for tok, is := range t.tokens {
		is.expires = now
		t.tokens[tok] = is
	}
}

// RevokeTokens forgets every issued token: they are refused as unknown.
func (t *Tokens) RevokeTokens() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.tokens = map[string]issued{}
}

// Issue records token as issued for app and returns the time it was issued.
func (t *Tokens) Issue(token, app string) time.Time {
	now := t.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	t.tokens[token] = issued{app: app, expires: now.Add(t.lifetime)}
	t.issued++
	return now
}

// Check returns the app token was issued for, whether it was issued (and
// not revoked), and whether it is unexpired.
func (t *Tokens) Check(token string) (app string, known, live bool) {
	now := t.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	is, known := t.tokens[token]
	return is.app, known, known && now.Before(is.expires)
}
