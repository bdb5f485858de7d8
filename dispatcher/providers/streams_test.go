package providers

import (
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// tlsServer serves 200 over TLS, HTTP/2 advertising streams when h2, and
// counts the connections it accepted and has open.
func tlsServer(t *testing.T, h2 bool, streams int) (srv *httptest.Server, ca string, conns func() (accepted, open int)) {
	t.Helper()
	var mu sync.Mutex
	accepted, open := 0, 0
	srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.Proto)
	}))
	srv.EnableHTTP2 = h2
	srv.Config.HTTP2 = &http.HTTP2Config{MaxConcurrentStreams: streams}
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		mu.Lock()
		defer mu.Unlock()
		switch s {
		case http.StateNew:
			accepted++
			open++
		case http.StateClosed, http.StateHijacked:
			open--
		}
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	ca = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}))
	return srv, ca, func() (int, int) { mu.Lock(); defer mu.Unlock(); return accepted, open }
}

func get(t *testing.T, hc *http.Client, url string) string {
	t.Helper()
	resp, err := hc.Get(url)
	return readAnswer(t, resp, err)
}

// readAnswer is the body of an answer, failing the test on a request error.
func readAnswer(t *testing.T, resp *http.Response, err error) string {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// The pool reuses one connection, reports the stream limit the server
// advertises, and closes it when asked to close idle connections.
func TestStreamPoolReportsLimitAndReuses(t *testing.T) {
	srv, ca, conns := tlsServer(t, true, 300)
	hc, pool, err := NewStreamClient(ca, nil, srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if pool == nil {
		t.Fatal("no stream pool without a proxy")
	}
	if got := pool.MaxConcurrentStreams(); got != 0 {
		t.Errorf("limit before any connection %d, want 0", got)
	}
	for range 10 {
		if proto := get(t, hc, srv.URL); proto != "HTTP/2.0" {
			t.Fatalf("served over %s", proto)
		}
	}
	if got := pool.MaxConcurrentStreams(); got != 300 {
		t.Errorf("limit %d, want the 300 the server advertises", got)
	}
	if accepted, _ := conns(); accepted != 1 {
		t.Errorf("%d connections for 10 requests, want 1 reused", accepted)
	}
	// The caller has read the last body before the HTTP/2 client forgets
	// its stream, so wait until the connection is idle, as it is for good.
	waitIdle(t, pool)
	hc.CloseIdleConnections()
	if got := pool.MaxConcurrentStreams(); got != 0 {
		t.Errorf("limit after closing %d, want 0", got)
	}
	if proto := get(t, hc, srv.URL); proto != "HTTP/2.0" {
		t.Fatalf("served over %s after closing", proto)
	}
	if accepted, _ := conns(); accepted != 2 {
		t.Errorf("%d connections, want a new one after closing", accepted)
	}
}

// waitIdle waits until no connection of pool has a stream in use.
func waitIdle(t *testing.T, pool *StreamPool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		busy := 0
		pool.mu.Lock()
		for _, list := range pool.conns {
			for _, cc := range list {
				busy += cc.State().StreamsActive
			}
		}
		pool.mu.Unlock()
		if busy == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d streams still active", busy)
		}
	}
}

// A server that does not speak HTTP/2 is still served, over HTTP/1.1.
func TestStreamPoolFallsBackToHTTP1(t *testing.T) {
	srv, ca, _ := tlsServer(t, false, 0)
	hc, pool, err := NewStreamClient(ca, nil, srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if proto := get(t, hc, srv.URL); proto != "HTTP/1.1" {
			t.Fatalf("served over %s", proto)
		}
	}
	if got := pool.MaxConcurrentStreams(); got != 0 {
		t.Errorf("limit %d over HTTP/1.1, want 0", got)
	}
}
