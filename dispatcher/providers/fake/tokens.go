package fake

import (
	"sync"
	"time"
)

// Tokens are the access tokens a fake issued, each bound to an app and
// expiring by the fake's clock, which SetClock replaces so tests move time
// without sleeping. Fakes embed it.
type Tokens struct {
	lifetime time.Duration

	mu     sync.Mutex
	now    func() time.Time
	tokens map[string]issued
	issued int
}

type issued struct {
	app     string
	expires time.Time
}

// NewTokens returns an empty store whose tokens live for lifetime.
func NewTokens(lifetime time.Duration) *Tokens {
	return &Tokens{lifetime: lifetime, now: time.Now, tokens: map[string]issued{}}
}

// SetClock replaces the clock tokens are issued and expired by (and that a
// fake checks request timestamps against).
func (t *Tokens) SetClock(now func() time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.now = now
}

// Now reads the fake's clock.
func (t *Tokens) Now() time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.now()
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
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
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
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	t.tokens[token] = issued{app: app, expires: now.Add(t.lifetime)}
	t.issued++
	return now
}

// Check returns the app token was issued for, whether it was issued (and
// not revoked), and whether it is unexpired.
func (t *Tokens) Check(token string) (app string, known, live bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	is, known := t.tokens[token]
	return is.app, known, known && t.now().Before(is.expires)
}
