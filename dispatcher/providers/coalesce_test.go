package providers

import (
	"bytes"
	"context"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// countingConn counts the writes (system calls) made on a TCP connection.
type countingConn struct {
	net.Conn
	writes *atomic.Int64
}

func (c countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

func countWrites(p *StreamPool) *atomic.Int64 {
	var n atomic.Int64
	d := p.dial
	p.dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := d(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return countingConn{c, &n}, nil
	}
	return &n
}

func post(t *testing.T, hc *http.Client, url string, body io.Reader) string {
	t.Helper()
	resp, err := hc.Post(url, "application/json", body)
	return readAnswer(t, resp, err)
}

// A request with a body reaches the connection in one write, not one for
// its headers and one for its body.
func TestStreamPoolWritesARequestOnce(t *testing.T) {
	srv, ca, _ := tlsServer(t, true, 100)
	hc, pool, err := NewStreamClient(ca, nil, srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	writes := countWrites(pool)
	body := `{"message":{"token":"abc","notification":{"title":"hi"}}}`
	if got := post(t, hc, srv.URL, strings.NewReader(body)); got != "HTTP/2.0" {
		t.Fatalf("answer %q, want HTTP/2.0", got)
	}
	const n = 40
	before := writes.Load()
	for range n {
		post(t, hc, srv.URL, strings.NewReader(body))
	}
	// Flow-control updates for the answers may add a write now and then;
	// headers and body written apart would make it 2n.
	if got := writes.Load() - before; got < n || got > n+n/4 {
		t.Fatalf("%d requests took %d writes, want about %d", n, got, n)
	}
}

// Headers whose body does not follow are written after holdFor: a server
// that answers only once it has the headers is not kept waiting for a body
// the client sends only after that.
func TestStreamPoolWritesHeadersWhoseBodyWaits(t *testing.T) {
	started := make(chan struct{})
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/wait" {
			close(started)
		}
		b, _ := io.ReadAll(r.Body)
		_, _ = w.Write(b)
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	ca := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}))
	hc, _, err := NewStreamClient(ca, nil, srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	// A warm connection: on a new one, the SETTINGS acknowledgement the
	// read loop writes would carry the headers out before the timer.
	if got := post(t, hc, srv.URL, strings.NewReader("warm")); got != "warm" {
		t.Fatalf("answer %q, want warm", got)
	}
	pr, pw := io.Pipe()
	answer := make(chan string, 1)
	go func() {
		resp, err := hc.Post(srv.URL+"/wait", "text/plain", pr)
		if err != nil {
			answer <- err.Error()
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		answer <- string(b)
	}()
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("the server never saw the request's headers")
	}
	_, _ = pw.Write([]byte("late body"))
	_ = pw.Close()
	if got := <-answer; got != "late body" {
		t.Fatalf("answer %q, want the late body", got)
	}
}

func TestOpensBody(t *testing.T) {
	frames := func(write func(fr *http2.Framer)) []byte {
		var b bytes.Buffer
		write(http2.NewFramer(&b, nil))
		return b.Bytes()
	}
	var hb bytes.Buffer
	_ = hpack.NewEncoder(&hb).WriteField(hpack.HeaderField{Name: ":method", Value: "POST"})
	headers := func(fr *http2.Framer, endStream, endHeaders bool) {
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: hb.Bytes(), EndStream: endStream, EndHeaders: endHeaders})
	}
	opening := frames(func(fr *http2.Framer) { headers(fr, false, true) })
	for name, c := range map[string]struct {
		p    []byte
		want bool
	}{
		"headers opening a body": {opening, true},
		"after other frames": {frames(func(fr *http2.Framer) {
			_ = fr.WriteData(1, true, []byte("x"))
			headers(fr, false, true)
		}), true},
		"headers without a body": {frames(func(fr *http2.Framer) { headers(fr, true, true) }), false},
		"headers continued":      {frames(func(fr *http2.Framer) { headers(fr, false, false) }), false},
		"data":                   {frames(func(fr *http2.Framer) { _ = fr.WriteData(3, true, []byte("body")) }), false},
		"settings":               {frames(func(fr *http2.Framer) { _ = fr.WriteSettings() }), false},
		"preface":                {[]byte(http2.ClientPreface), false},
		"cut short":              {opening[:len(opening)-1], false},
		"a partial frame header": {append(append([]byte{}, opening...), 0, 0), false},
		"nothing":                {nil, false},
	} {
		if got := opensBody(c.p); got != c.want {
			t.Errorf("%s: opensBody = %v, want %v", name, got, c.want)
		}
	}
}
