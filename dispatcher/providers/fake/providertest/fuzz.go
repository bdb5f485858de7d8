package providertest

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/imcloud/im-push-operator/dispatcher/config"
	"github.com/imcloud/im-push-operator/dispatcher/providers"
	"github.com/imcloud/im-push-operator/dispatcher/providers/fake"
)

// Seed is one answer a fuzz target starts from. It is an alias of an
// unnamed struct so seed tables can stay positional (vet allows that).
type Seed = struct {
	Status     int
	RetryAfter string
	Body       string
	// AtAuth answers the token request instead of the send.
	AtAuth bool
}

// Fuzz is a provider's FuzzAnswer: the real client gets arbitrary answers to
// its send (or, with atAuth, to its token request) while every other request
// goes to the fake, and whatever the provider says, Send must not panic and
// must return a result fake.Replay.Check accepts.
type Fuzz struct {
	Seeds []Seed
	// Fake carries the requests not under test (the fake's transport).
	Fake http.RoundTripper
	// Send and Auth are the path suffixes of the send and the token
	// request. A provider with no token request leaves Auth empty, and
	// atAuth then fuzzes the send too.
	Send, Auth string
	// Header goes with every fuzzed answer, beside Retry-After.
	Header http.Header
	// IDHeader, if set, carries the fuzzed id (seeded with ID) in each answer.
	IDHeader, ID string
	// Status, if set, replaces a fuzzed send status (one the client's
	// library would retry by itself with sleeps).
	Status func(status int) int
	New    NewFunc
	Cert   *config.Certificate
	// Message makes the message each run sends.
	Message func() *providers.Message
	// Check, if set, is a provider's own assertion on each result.
	Check func(t *testing.T, res providers.Result)
}

// Run adds the seeds to f and fuzzes.
func (fz *Fuzz) Run(f *testing.F) {
	for _, s := range fz.Seeds {
		f.Add(s.Status, s.RetryAfter, fz.ID, []byte(s.Body), s.AtAuth)
	}
	f.Fuzz(func(t *testing.T, status int, retryAfter, id string, body []byte, atAuth bool) {
		path := fz.Send
		switch {
		case atAuth && fz.Auth != "":
			path = fz.Auth
		case fz.Status != nil:
			status = fz.Status(status)
		}
		h := http.Header{}
		for k, v := range fz.Header {
			h[k] = v
		}
		h.Set("Retry-After", retryAfter)
		if fz.IDHeader != "" {
			h.Set(fz.IDHeader, id)
		}
		rp := &fake.Replay{Next: fz.Fake, Match: fake.PathSuffix(path), Status: status, Header: h, Body: body}
		c := Client(t, fz.New, fz.Cert, providers.Options{HTTPClient: &http.Client{Transport: rp}})
		before := time.Now()
		res := c.Send(context.Background(), fz.Message())
		if err := rp.Check(res, before, fz.Cert.Data); err != nil {
			t.Fatal(err)
		}
		if fz.Check != nil {
			fz.Check(t, res)
		}
	})
}
