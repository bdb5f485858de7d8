package testenv

import (
	"bytes"
	"io"
	"net/http"
	"sync"
	"time"
)

// Record is one request a Recorder saw, kept in the order requests were sent.
type Record struct {
	Method string
	Path   string
	// Status is the response's status code: 0 while the request is in
	// flight, or when the round trip failed without a response.
	Status int
	// Bytes is the length of the request body as sent.
	Bytes int
	// At is the Recorder's clock when the request was sent.
	At time.Time
}

// String is how tests print a request: "METHOD /path".
func (r Record) String() string { return r.Method + " " + r.Path }

// Records is a snapshot of a Recorder, with filters for what tests assert on.
type Records []Record

// Filter returns the records keep accepts, in order.
func (rs Records) Filter(keep func(Record) bool) Records {
	var out Records
	for _, r := range rs {
		if keep(r) {
			out = append(out, r)
		}
	}
	return out
}

// Mutating keeps requests that may write: anything but GET and HEAD, so
// server-side applies (PATCH) count too.
func (rs Records) Mutating() Records {
	return rs.Filter(func(r Record) bool { return r.Method != http.MethodGet && r.Method != http.MethodHead })
}

// Status keeps requests answered with code (e.g. 403, refused by RBAC).
func (rs Records) Status(code int) Records {
	return rs.Filter(func(r Record) bool { return r.Status == code })
}

// Strings returns the records as "METHOD /path", so failure messages list
// requests plainly rather than as structs.
func (rs Records) Strings() []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.String())
	}
	return out
}

// Recorder records every request sent through the transports it wraps, for
// tests that assert on what a client sent to the API server (writes, RBAC
// refusals, bytes). It is safe for concurrent use; the zero value is ready.
type Recorder struct {
	// Now stamps Record.At; nil means time.Now. Tests on a fake clock set
	// it so the times compare with what the code under test saw.
	Now func() time.Time

	mu   sync.Mutex
	recs []*Record // pointers: a response fills in Status after Take
}

// Wrap returns rt recording through r; it fits rest.Config.WrapTransport
// and rest.Config.Wrap. A request is recorded when sent (so send order is
// kept) and its status filled in when answered. The body is read to count
// it and sent from the copy.
func (r *Recorder) Wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(req *http.Request) (*http.Response, error) {
		n := 0
		if req.Body != nil && req.Body != http.NoBody {
			body, err := io.ReadAll(req.Body)
			req.Body.Close()
			if err != nil {
				return nil, err
			}
			// A RoundTripper must not modify the caller's request.
			req = req.Clone(req.Context())
			req.Body = io.NopCloser(bytes.NewReader(body))
			n = len(body)
		}
		now := time.Now
		if r.Now != nil {
			now = r.Now
		}
		rec := &Record{Method: req.Method, Path: req.URL.Path, Bytes: n}
		// Stamped under the lock, so the records' order is their stamps'
		// order: tests check bounds over every prefix of the sends.
		r.mu.Lock()
		rec.At = now()
		r.recs = append(r.recs, rec)
		r.mu.Unlock()
		resp, err := rt.RoundTrip(req)
		if err == nil {
			r.mu.Lock()
			rec.Status = resp.StatusCode
			r.mu.Unlock()
		}
		return resp, err
	})
}

// Records returns a copy of everything recorded so far.
func (r *Recorder) Records() Records {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.snapshot()
}

// Take returns what was recorded so far and forgets it, so a test can look
// at one round of requests at a time.
func (r *Recorder) Take() Records {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.snapshot()
	r.recs = nil
	return out
}

func (r *Recorder) snapshot() Records {
	out := make(Records, 0, len(r.recs))
	for _, rec := range r.recs {
		out = append(out, *rec)
	}
	return out
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }
