package providers

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
)

// StreamLimited is implemented by clients that send over HTTP/2: their
// MaxConcurrentStreams is the sum of the SETTINGS_MAX_CONCURRENT_STREAMS
// their open connections to the provider advertise, 0 while none is open
// (or when the client cannot tell). The delivery engine sizes a provider's
// concurrent sends from it.
type StreamLimited interface {
	MaxConcurrentStreams() int
}

// StreamPool keeps HTTP/2 connections to each provider host open and reused
// (a new one is dialled only when every open one has all its streams busy),
// and reports the stream limit they advertise, which net/http's own pool
// does not expose.
type StreamPool struct {
	t   *http2.Transport
	tls *tls.Config
	h1  http.RoundTripper
	// dial opens the TCP connection (a net.Dialer's; tests count writes).
	dial func(ctx context.Context, network, addr string) (net.Conn, error)

	mu      sync.Mutex
	conns   map[string][]*http2.ClientConn
	dialing map[string]*dialCall
	// h1Hosts did not negotiate HTTP/2 (a private gateway may not): their
	// requests go through h1.
	h1Hosts map[string]bool
	anyH1   atomic.Bool

	limit atomic.Int64
	calls atomic.Uint32
}

type dialCall struct {
	done chan struct{}
	cc   *http2.ClientConn
	err  error
}

// errNotH2 marks a host that answered the TLS handshake without HTTP/2.
var errNotH2 = errors.New("server did not negotiate HTTP/2")

// sampleEvery: the stream limit is re-read on every this many requests (and
// on every new or dead connection); SETTINGS rarely change mid-connection.
const sampleEvery = 256

// NewStreamClient returns an HTTP client that speaks HTTP/2 over TLS through
// a StreamPool, trusting the system roots plus caBundle and presenting certs
// (APNs certificate auth), never skipping verification. A host that does not
// negotiate HTTP/2 is served over HTTP/1.1 instead. The pool is nil, and the
// client the usual net/http one, when a proxy is configured for endpoint:
// the pool dials directly.
func NewStreamClient(caBundle string, certs []tls.Certificate, endpoint string) (*http.Client, *StreamPool, error) {
	tlsConfig, err := TLSConfig(caBundle)
	if err != nil {
		return nil, nil, err
	}
	tlsConfig.Certificates = certs
	h1 := &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:     tlsConfig.Clone(),
		TLSHandshakeTimeout: 10 * time.Second,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     5 * time.Minute,
		ForceAttemptHTTP2:   true,
	}
	if u, err := url.Parse(endpoint); err == nil && u.Host != "" {
		if proxy, err := http.ProxyFromEnvironment(&http.Request{URL: u}); err != nil || proxy != nil {
			if err := http2.ConfigureTransport(h1); err != nil {
				return nil, nil, err
			}
			return &http.Client{Transport: h1}, nil, nil
		}
	}
	h2TLS := tlsConfig.Clone()
	// Offering http/1.1 too lets a server without HTTP/2 finish the handshake, so
	// the host is found to need HTTP/1.1 instead of failing.
	h2TLS.NextProtos = []string{"h2", "http/1.1"}
	p := &StreamPool{
		tls:     h2TLS,
		h1:      h1,
		dial:    (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		conns:   map[string][]*http2.ClientConn{},
		dialing: map[string]*dialCall{},
		h1Hosts: map[string]bool{},
	}
	p.t = &http2.Transport{
		TLSClientConfig: h2TLS,
		ConnPool:        p,
		// Pings find a dead connection before a send waits on it.
		ReadIdleTimeout: 15 * time.Second,
		PingTimeout:     15 * time.Second,
		IdleConnTimeout: 5 * time.Minute,
	}
	return &http.Client{Transport: poolTransport{p}}, p, nil
}

// MaxConcurrentStreams implements StreamLimited.
func (p *StreamPool) MaxConcurrentStreams() int {
	if p == nil {
		return 0
	}
	return int(p.limit.Load())
}

// GetClientConn implements http2.ClientConnPool: an open connection with a
// free stream, else one dialled (once for all callers waiting on the host).
func (p *StreamPool) GetClientConn(req *http.Request, addr string) (*http2.ClientConn, error) {
	if p.calls.Add(1)%sampleEvery == 0 {
		p.sample()
	}
	for {
		p.mu.Lock()
		for _, cc := range p.conns[addr] {
			if cc.ReserveNewRequest() {
				p.mu.Unlock()
				return cc, nil
			}
		}
		call := p.dialing[addr]
		if call == nil {
			call = &dialCall{done: make(chan struct{})}
			p.dialing[addr] = call
			go p.dialConn(addr, call)
		}
		p.mu.Unlock()
		select {
		case <-call.done:
		case <-req.Context().Done():
			return nil, req.Context().Err()
		}
		if call.err != nil {
			return nil, call.err
		}
		if call.cc.ReserveNewRequest() {
			return call.cc, nil
		}
	}
}

// dialConn dials for every caller waiting on addr, so it is not bound to
// the context of the request that happened to start it.
func (p *StreamPool) dialConn(addr string, call *dialCall) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	call.cc, call.err = p.newConn(ctx, addr)
	p.mu.Lock()
	delete(p.dialing, addr)
	if call.err == nil {
		p.conns[addr] = append(p.conns[addr], call.cc)
	} else if errors.Is(call.err, errNotH2) {
		p.h1Hosts[addr] = true
		p.anyH1.Store(true)
	}
	p.mu.Unlock()
	close(call.done)
	if call.err == nil {
		// The server's SETTINGS come with its first frames; a Ping waits
		// for them, so the limit is known before the first send returns.
		pctx, pcancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = call.cc.Ping(pctx)
		pcancel()
		p.sample()
	}
}

func (p *StreamPool) newConn(ctx context.Context, addr string) (*http2.ClientConn, error) {
	raw, err := p.dial(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	cfg := p.tls.Clone()
	if cfg.ServerName == "" {
		host, _, _ := net.SplitHostPort(addr)
		cfg.ServerName = host
	}
	conn := tls.Client(raw, cfg)
	if err := conn.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, err
	}
	if conn.ConnectionState().NegotiatedProtocol != "h2" {
		conn.Close()
		return nil, errNotH2
	}
	cc, err := p.t.NewClientConn(newCoalescingConn(conn))
	if err != nil {
		conn.Close()
		return nil, err
	}
	return cc, nil
}

// MarkDead implements http2.ClientConnPool.
func (p *StreamPool) MarkDead(cc *http2.ClientConn) {
	p.mu.Lock()
	for addr, list := range p.conns {
		for i, c := range list {
			if c == cc {
				list = append(list[:i:i], list[i+1:]...)
				if len(list) == 0 {
					delete(p.conns, addr)
				} else {
					p.conns[addr] = list
				}
				break
			}
		}
	}
	p.mu.Unlock()
	p.sample()
}

// sample re-reads the stream limit of every open connection.
func (p *StreamPool) sample() {
	p.mu.Lock()
	var sum int64
	for _, list := range p.conns {
		for _, cc := range list {
			if st := cc.State(); !st.Closed && !st.Closing {
				sum += int64(st.MaxConcurrentStreams)
			}
		}
	}
	p.mu.Unlock()
	p.limit.Store(sum)
}

// closeIdle closes the connections with no stream in use.
func (p *StreamPool) closeIdle() {
	p.mu.Lock()
	var idle []*http2.ClientConn
	for _, list := range p.conns {
		for _, cc := range list {
			if st := cc.State(); st.StreamsActive == 0 && st.StreamsReserved == 0 && st.StreamsPending == 0 {
				idle = append(idle, cc)
			}
		}
	}
	p.mu.Unlock()
	for _, cc := range idle {
		_ = cc.Close()
	}
	// Close marks the connections closed at once, but the transport calls
	// MarkDead only when their read loops end: sample now, so the stream
	// limit drops with the connections.
	p.sample()
	if c, ok := p.h1.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// poolTransport sends through the pool's HTTP/2 transport, or over
// HTTP/1.1 to a host that does not speak HTTP/2.
type poolTransport struct{ p *StreamPool }

func (t poolTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	h1 := r.URL.Scheme != "https"
	if !h1 && t.p.anyH1.Load() {
		addr := r.URL.Host
		if r.URL.Port() == "" {
			addr = net.JoinHostPort(r.URL.Hostname(), "443")
		}
		t.p.mu.Lock()
		h1 = t.p.h1Hosts[addr]
		t.p.mu.Unlock()
	}
	if h1 {
		return t.p.h1.RoundTrip(r)
	}
	resp, err := t.p.t.RoundTrip(r)
	if errors.Is(err, errNotH2) {
		return t.p.h1.RoundTrip(r)
	}
	return resp, err
}

// CloseIdleConnections lets http.Client.CloseIdleConnections (and apns2's)
// reach the pool, which http2.Transport cannot do for a pool of its own.
func (t poolTransport) CloseIdleConnections() { t.p.closeIdle() }
