// Package faultproxy is a TCP proxy that tests put between a client and a
// server (the kube-apiserver) to make the server slow or unreachable for a
// while, then well again. It forwards bytes, so TLS, HTTP/2 and watches pass
// through unchanged and the client's own timeouts and retries are what get
// exercised.
package faultproxy

import (
	"fmt"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/client-go/rest"
)

// Mode is what the proxy does with traffic.
type Mode int

const (
	// Pass forwards everything (after the latency, if one is set).
	Pass Mode = iota
	// Blackhole holds every byte in both directions and opens no new
	// connection to the server, as a network partition does: calls hang
	// until their own deadlines. What was held flows once the proxy passes
	// again, as TCP retransmission would deliver it.
	Blackhole
	// Refuse cuts every open connection and closes new ones at once, as a
	// server that is down or restarting does.
	Refuse
)

func (m Mode) String() string {
	switch m {
	case Blackhole:
		return "blackhole"
	case Refuse:
		return "refuse"
	}
	return "pass"
}

// Stats count what the proxy saw.
type Stats struct {
	// Accepted is how many client connections were accepted and forwarded.
	Accepted int64
	// Refused is how many client connections were closed unforwarded.
	Refused int64
	// Cut is how many open connections Refuse closed.
	Cut int64
}

// Proxy forwards one local address to a target address.
type Proxy struct {
	ln     net.Listener
	target string

	mu      sync.Mutex
	mode    Mode
	latency time.Duration
	// changed is closed and replaced on every change, waking held copies.
	changed chan struct{}
	links   map[*link]struct{}
	closed  bool

	wg                     sync.WaitGroup
	accepted, refused, cut atomic.Int64
}

type link struct {
	client net.Conn

	mu     sync.Mutex
	server net.Conn
	closed bool
}

// attach records the server side; it reports false when the link was closed
// meanwhile (and closes server).
func (l *link) attach(server net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		_ = server.Close()
		return false
	}
	l.server = server
	return true
}

func (l *link) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	l.closed = true
	_ = l.client.Close()
	if l.server != nil {
		_ = l.server.Close()
	}
}

// Start listens on a free local port and forwards to target (host:port).
func Start(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{ln: ln, target: target, changed: make(chan struct{}), links: map[*link]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Front starts a proxy in front of the API server cfg points at and returns
// it with a copy of cfg that goes through it. TLS still verifies: the
// proxy listens on 127.0.0.1, which the API server's certificate names.
func Front(cfg *rest.Config) (*Proxy, *rest.Config, error) {
	u, err := url.Parse(cfg.Host)
	if err != nil || u.Host == "" {
		return nil, nil, fmt.Errorf("API server address %q: not a URL with a host", cfg.Host)
	}
	p, err := Start(u.Host)
	if err != nil {
		return nil, nil, err
	}
	proxied := rest.CopyConfig(cfg)
	u.Host = p.Addr()
	proxied.Host = u.String()
	return p, proxied, nil
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Stats returns the counts so far.
func (p *Proxy) Stats() Stats {
	return Stats{Accepted: p.accepted.Load(), Refused: p.refused.Load(), Cut: p.cut.Load()}
}

// Mode returns the current mode.
func (p *Proxy) Mode() Mode {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mode
}

// SetLatency delays every chunk forwarded, in either direction, by d.
func (p *Proxy) SetLatency(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.latency = d
	p.signalLocked()
}

// Set switches the mode; Refuse also cuts every open connection.
func (p *Proxy) Set(m Mode) {
	p.mu.Lock()
	p.mode = m
	var cut []*link
	if m == Refuse {
		for l := range p.links {
			cut = append(cut, l)
			delete(p.links, l)
		}
	}
	p.signalLocked()
	p.mu.Unlock()
	for _, l := range cut {
		p.cut.Add(1)
		l.close()
	}
}

// Close stops listening and cuts every connection.
func (p *Proxy) Close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.Set(Refuse)
	_ = p.ln.Close()
	p.wg.Wait()
}

func (p *Proxy) signalLocked() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// state returns the mode, latency and the channel closed on the next change.
func (p *Proxy) state() (Mode, time.Duration, <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mode, p.latency, p.changed
}

// waitPass blocks while the proxy black-holes; it reports false when the
// connection must end instead (Refuse, or the link was closed).
func (p *Proxy) waitPass(l *link) bool {
	for {
		mode, _, changed := p.state()
		switch mode {
		case Pass:
			p.mu.Lock()
			_, live := p.links[l]
			p.mu.Unlock()
			return live
		case Refuse:
			return false
		}
		<-changed
	}
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if mode, _, _ := p.state(); mode == Refuse {
			p.refused.Add(1)
			_ = c.Close()
			continue
		}
		l := &link{client: c}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			_ = c.Close()
			return
		}
		p.links[l] = struct{}{}
		p.mu.Unlock()
		p.wg.Add(1)
		go p.serve(l)
	}
}

// serve dials the server once the proxy passes, then copies both ways.
func (p *Proxy) serve(l *link) {
	defer p.wg.Done()
	defer p.drop(l)
	if !p.waitPass(l) {
		p.refused.Add(1)
		return
	}
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	if !l.attach(server) {
		return
	}
	p.accepted.Add(1)
	done := make(chan struct{})
	go func() {
		p.copy(l, l.server, l.client)
		close(done)
	}()
	p.copy(l, l.client, l.server)
	<-done
}

func (p *Proxy) drop(l *link) {
	p.mu.Lock()
	delete(p.links, l)
	p.mu.Unlock()
	l.close()
}

// copy forwards src to dst chunk by chunk, holding each chunk while the
// proxy black-holes and delaying it by the latency.
func (p *Proxy) copy(l *link, dst, src net.Conn) {
	defer l.close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !p.waitPass(l) {
				return
			}
			if _, latency, _ := p.state(); latency > 0 {
				time.Sleep(latency)
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
