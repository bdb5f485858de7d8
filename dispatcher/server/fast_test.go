package server

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/valyala/fasthttp/fasthttputil"

	"github.com/imcloud/im-push-operator/dispatcher/policy"
)

// serve answers req as the dispatcher does, through HTTPServer (fasthttp
// and FastHandler) over an in-memory connection, as a recorder. The
// request is written as net/http's client writes it, its target as given.
func (f *fixture) serve(t *testing.T, req *http.Request) *httptest.ResponseRecorder {
	t.Helper()
	if f.served != f.srv {
		f.startHTTPServer()
	}
	conn, err := f.listener.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// A server that refuses a request early (headers over the bound)
	// answers and closes before the rest is written: the write fails, and
	// the answer is still there to read.
	werr := req.Write(conn)
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		t.Fatalf("%s %s: writing: %v; reading the answer: %v", req.Method, req.RequestURI, werr, err)
	}
	defer resp.Body.Close()
	rec := httptest.NewRecorder()
	maps.Copy(rec.Header(), resp.Header)
	rec.WriteHeader(resp.StatusCode)
	if _, err := io.Copy(rec.Body, resp.Body); err != nil {
		t.Fatal(err)
	}
	return rec
}

// startHTTPServer serves f.srv (a test may replace it) on a new in-memory
// listener until the fixture's test ends.
func (f *fixture) startHTTPServer() {
	t := f.t
	ln := fasthttputil.NewInmemoryListener()
	srv := f.srv.HTTPServer()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	f.served, f.listener = f.srv, ln
	// Closing the listener ends Serve; each serve closes its connection.
	// (Shutdown would poll its connections every 100 ms, a tenth of a
	// second per fixture; cmd/dispatcher's tests shut the server down.)
	t.Cleanup(func() {
		if err := ln.Close(); err != nil {
			t.Errorf("closing the listener: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("serving: %v", err)
		}
	})
}

// TestBothTransportsAnswerAlike sends the same notification requests to
// ServeHTTP, the reference, and through HTTPServer, whose FastHandler
// serves most of them itself: every answer's status, headers that matter,
// body and request metric must match.
func TestBothTransportsAnswerAlike(t *testing.T) {
	valid, err := json.Marshal(notification("n1", "bob"))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, method, target, body, token, contentType string
		setup                                          func(f *fixture)
		// repeat sends the request twice and compares the second answer.
		repeat bool
	}{
		{name: "accepted", body: string(valid)},
		{name: "accepted, wait=false", target: "/v1/notifications?wait=false", body: string(valid)},
		{name: "repeated id", body: string(valid), repeat: true},
		{name: "not JSON", body: `{"id":`},
		{name: "not UTF-8", body: "{\"id\":\"\xff\"}"},
		{name: "too deep", body: strings.Repeat("[", MaxDepth+1)},
		{name: "unknown field", body: `{"id":"n1","colour":"red"}`},
		{name: "no recipients", body: `{"id":"n1","sender":{"id":"a"},"conversation":{"id":"c","type":"single"},"recipients":[]}`},
		{name: "empty body", body: ""},
		{name: "multipart body", body: "--b\r\nContent-Disposition: form-data; name=\"id\"\r\n\r\nn1\r\n--b--\r\n", contentType: "multipart/form-data; boundary=b"},
		{name: "body too large", body: `{"id":"` + strings.Repeat("x", MaxBodyBytes) + `"}`},
		{name: "queue full", body: string(valid), setup: func(f *fixture) { f.engine.submitErr = queueFull{} }},
		{name: "engine not ready", body: string(valid), setup: func(f *fixture) { f.engine.submitErr = ErrNotReady }},
		{name: "engine fails", body: string(valid), setup: func(f *fixture) { f.engine.submitErr = fmt.Errorf("surprise") }},
		{name: "draining", body: string(valid), setup: func(f *fixture) { f.srv.StartDraining() }},
		{name: "wrong token", body: string(valid), token: "not-the-token"},
		{name: "bad wait", target: "/v1/notifications?wait=maybe", body: string(valid)},
		{name: "unclean path", target: "/v1//notifications", body: string(valid)},
		{name: "wrong method", method: http.MethodPut, body: ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			method, target, token := tc.method, tc.target, tc.token
			if method == "" {
				method = http.MethodPost
			}
			if target == "" {
				target = "/v1/notifications"
			}
			if token == "" {
				token = testToken
			}
			sends := 1
			if tc.repeat {
				sends = 2
			}
			answer := func(f *fixture, send func(*http.Request) *httptest.ResponseRecorder) *httptest.ResponseRecorder {
				if tc.setup != nil {
					tc.setup(f)
				}
				var rec *httptest.ResponseRecorder
				for range sends {
					req := httptest.NewRequest(method, target, strings.NewReader(tc.body))
					req.Header.Set("Authorization", "Bearer "+token)
					if tc.contentType != "" {
						req.Header.Set("Content-Type", tc.contentType)
					}
					rec = send(req)
				}
				return rec
			}
			ref := newFixture(t)
			want := answer(ref, func(req *http.Request) *httptest.ResponseRecorder {
				rec := httptest.NewRecorder()
				ref.srv.ServeHTTP(rec, req)
				return rec
			})
			fast := newFixture(t)
			got := answer(fast, func(req *http.Request) *httptest.ResponseRecorder { return fast.serve(t, req) })

			if got.Code != want.Code {
				t.Fatalf("status = %d, want %d as ServeHTTP answers; body %s", got.Code, want.Code, got.Body)
			}
			for _, h := range []string{"Content-Type", "X-Content-Type-Options", "Retry-After", "WWW-Authenticate", "Location"} {
				if g, w := got.Header().Get(h), want.Header().Get(h); g != w {
					t.Errorf("%s = %q, want %q", h, g, w)
				}
			}
			if g, w := comparable(t, got.Body.Bytes()), comparable(t, want.Body.Bytes()); g != w {
				t.Errorf("body = %s, want %s", g, w)
			}
			if g, w := requestCounts(t, fast), requestCounts(t, ref); g != w {
				t.Errorf("request metrics = %s, want %s", g, w)
			}
		})
	}
}

// comparable is a JSON body without the receipt's time, or the body as it
// is when it is not JSON.
func comparable(t *testing.T, body []byte) string {
	t.Helper()
	var v map[string]any
	if json.Unmarshal(body, &v) != nil {
		return string(body)
	}
	delete(v, "acceptedAt")
	out, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// requestCounts is the fixture's request counter series as text.
func requestCounts(t *testing.T, f *fixture) string {
	t.Helper()
	families, err := f.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, fam := range families {
		if fam.GetName() != "impush_dispatcher_http_requests_total" {
			continue
		}
		for _, m := range fam.GetMetric() {
			for _, l := range m.GetLabel() {
				fmt.Fprintf(&b, "%s=%s ", l.GetName(), l.GetValue())
			}
			fmt.Fprintf(&b, "%v; ", m.GetCounter().GetValue())
		}
	}
	return b.String()
}

// TestHTTPServerLimits checks the limits of the HTTP server itself: a body a
// little over MaxBodyBytes is read and refused by the route, a much larger
// one by fasthttp before any handler runs, both with the API's JSON error;
// headers over maxHeaderBytes are refused.
func TestHTTPServerLimits(t *testing.T) {
	f := newFixture(t)
	for _, target := range []string{"/v1/notifications", "/v1/users/bob/settings"} {
		req := httptest.NewRequest(http.MethodPost, target, bytes.NewReader(make([]byte, MaxBodyBytes+1)))
		if target != "/v1/notifications" {
			req.Method = http.MethodPut
		}
		req.Header.Set("Authorization", "Bearer "+testToken)
		expectError(t, f.serve(t, req), http.StatusRequestEntityTooLarge, CodeBodyTooLarge, "")
	}
	want := "code=413 route=POST /v1/notifications 1; code=413 route=PUT /v1/users/{user}/settings 1; "
	if got := requestCounts(t, f); got != want {
		t.Errorf("request metrics = %s, want %s", got, want)
	}

	// 64 MiB announced: refused on its headers, before a byte is read.
	req := httptest.NewRequest(http.MethodPost, "/v1/notifications", nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	req.ContentLength = 64 << 20
	conn, err := f.listener.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := fmt.Fprintf(conn, "POST /v1/notifications HTTP/1.1\r\nHost: dispatcher\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\n\r\n", testToken, req.ContentLength); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	maps.Copy(rec.Header(), resp.Header)
	rec.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(rec.Body, resp.Body)
	expectError(t, rec, http.StatusRequestEntityTooLarge, CodeBodyTooLarge, "")
	if got := requestCounts(t, f); !strings.Contains(got, "code=413 route=unread 1;") {
		t.Errorf("request metrics = %s, want the 64 MiB request counted as unread", got)
	}

	req = httptest.NewRequest(http.MethodGet, "/v1/users/bob/devices", nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	req.Header.Set("X-Padding", strings.Repeat("p", maxHeaderBytes))
	if rec := f.serve(t, req); rec.Code != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("headers over %d bytes: status %d, body %s", maxHeaderBytes, rec.Code, rec.Body)
	}
	req.Header.Set("X-Padding", strings.Repeat("p", maxHeaderBytes/2))
	if rec := f.serve(t, req); rec.Code != http.StatusOK {
		t.Errorf("headers of half the bound: status %d, body %s", rec.Code, rec.Body)
	}
}

// TestFastHandlerRecoversPanics: net/http's server recovers a handler's
// panic and drops the connection; the dispatcher must not die on one either.
func TestFastHandlerRecoversPanics(t *testing.T) {
	f := newFixture(t)
	f.srv.opts.Engine = panicky{f.engine}
	for _, target := range []string{"/v1/notifications", "/v1/notifications?wait=false"} {
		rec := f.do(t, http.MethodPost, target, notification("n1", "bob"))
		expectError(t, rec, http.StatusInternalServerError, CodeInternal, "")
	}
	if rec := f.do(t, http.MethodGet, "/healthz", nil); rec.Code != http.StatusOK {
		t.Fatalf("after the panics: healthz %d", rec.Code)
	}
}

type panicky struct{ *engine }

func (panicky) Submit(*policy.Notification) (Receipt, error) { panic("engine bug") }
