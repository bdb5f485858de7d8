package providers

import (
	"crypto/tls"
	"encoding/binary"
	"sync"
	"time"
)

// coalescingConn sends a request's HEADERS and DATA frames in one TLS record
// and one write system call. x/net/http2 flushes after a request's headers
// and again after its body, so every provider send with a body (all of them)
// cost two writes to the connection, each a system call that on loopback or a
// fast network also delivers the bytes within it: 14% of the dispatcher's
// CPU in the FCM windows of make bench (docs/performance-history.md). A write
// that ends in HEADERS opening a body is held back and goes out with the
// next write, which is nearly always that body, written by the same
// goroutine a few microseconds later.
//
// The server cannot answer such a request before its body arrives, so
// holding its headers delays nothing. If the body does not follow within
// holdFor (its reader blocks, or flow control holds it), a timer writes the
// headers alone, as the transport would have.
type coalescingConn struct {
	*tls.Conn

	mu   sync.Mutex
	held []byte
	// heldAt is when held began; the timer, once armed, fires at most
	// holdFor later and re-arms while what it finds is younger. It is not
	// reset for every request: a timer becoming the runtime's earliest
	// wakes the network poller with a system call of its own, which at a
	// moderate rate cost as much as the write saved.
	heldAt time.Time
	armed  bool
	timer  *time.Timer
	// err is the first failed write; once set every write returns it, and
	// the connection is closed so that the transport's read loop fails its
	// streams (their notifications are retried, not lost).
	err error
}

// holdFor bounds how long headers wait for their body.
const holdFor = 2 * time.Millisecond

func newCoalescingConn(c *tls.Conn) *coalescingConn {
	cc := &coalescingConn{Conn: c}
	cc.timer = time.AfterFunc(time.Hour, cc.flushHeld)
	cc.timer.Stop()
	return cc
}

func (c *coalescingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, c.err
	}
	if len(c.held) > 0 {
		c.held = append(c.held, p...)
		if err := c.flushLocked(); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	if opensBody(p) {
		c.held = append(c.held, p...)
		c.heldAt = time.Now()
		if !c.armed {
			c.armed = true
			c.timer.Reset(holdFor)
		}
		return len(p), nil
	}
	n, err := c.Conn.Write(p)
	if err != nil {
		c.fail(err)
	}
	return n, err
}

// flushHeld writes headers whose body did not follow in time.
func (c *coalescingConn) flushHeld() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.held) == 0 || c.err != nil {
		c.armed = false
		return
	}
	if wait := holdFor - time.Since(c.heldAt); wait > 0 {
		c.timer.Reset(wait)
		return
	}
	c.armed = false
	_ = c.flushLocked()
}

// flushLocked writes what is held (with what Write appended to it) and
// empties it; under c.mu.
func (c *coalescingConn) flushLocked() error {
	_, err := c.Conn.Write(c.held)
	c.held = c.held[:0]
	if err != nil {
		c.fail(err)
	}
	return err
}

// fail records a write error and closes the connection: the transport
// believed held bytes written, so it must learn from its read loop that
// the connection is gone.
func (c *coalescingConn) fail(err error) {
	c.err = err
	_ = c.Close()
}

// Close does what the transport's own close does for a *tls.Conn, which it
// cannot see through this wrapper: a tls.Conn's Close writes an alert and
// can hang on an unresponsive peer, so the TCP connection is closed under it
// after closeWait. It takes no lock, as a write blocked on such a peer holds
// c.mu until the connection closes.
func (c *coalescingConn) Close() error {
	c.timer.Stop()
	force := time.AfterFunc(closeWait, func() { _ = c.Conn.NetConn().Close() })
	defer force.Stop()
	return c.Conn.Close()
}

// closeWait is x/net/http2's wait before closing the TCP connection.
const closeWait = 250 * time.Millisecond

// HTTP/2 frame header fields (RFC 9113 §4.1) this file reads.
const (
	frameHeaderLen  = 9
	frameHeaders    = 0x1
	flagEndStream   = 0x1
	flagEndHeaders  = 0x4
	frameTypeOffset = 3
	frameFlagOffset = 4
)

// opensBody reports whether p is whole HTTP/2 frames, the last a HEADERS
// frame that ends its header block but not its stream: a request whose
// body comes next. Anything else (the preface, SETTINGS, a request without
// a body, a header block continued) is written at once.
func opensBody(p []byte) bool {
	last := -1
	for i := 0; i < len(p); {
		if len(p)-i < frameHeaderLen {
			return false
		}
		n := int(p[i])<<16 | int(binary.BigEndian.Uint16(p[i+1:]))
		last = i
		i += frameHeaderLen + n
		if i > len(p) {
			return false
		}
	}
	if last < 0 || p[last+frameTypeOffset] != frameHeaders {
		return false
	}
	flags := p[last+frameFlagOffset]
	return flags&flagEndHeaders != 0 && flags&flagEndStream == 0
}
