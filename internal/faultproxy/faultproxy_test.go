package faultproxy

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// echoServer answers every line with the same line.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

func roundTrip(c net.Conn, r *bufio.Reader, line string, wait time.Duration) (string, error) {
	if _, err := c.Write([]byte(line + "\n")); err != nil {
		return "", err
	}
	_ = c.SetReadDeadline(time.Now().Add(wait))
	return r.ReadString('\n')
}

// TestModes: a black-holed connection carries nothing until the proxy passes
// again, then delivers what it held; Refuse cuts open connections and closes
// new ones.
func TestModes(t *testing.T) {
	p, err := Start(echoServer(t))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	if got, err := roundTrip(c, r, "one", 10*time.Second); err != nil || got != "one\n" {
		t.Fatalf("passing: %q, %v", got, err)
	}

	p.Set(Blackhole)
	// Absence can only be shown by waiting; a short wait suffices because a
	// passing proxy answers at once.
	if got, err := roundTrip(c, r, "two", 200*time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("black-holed: got %q, %v; want a read timeout", got, err)
	}
	p.Set(Pass)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if got, err := r.ReadString('\n'); err != nil || got != "two\n" {
		t.Fatalf("after the black hole: %q, %v; want the held line", got, err)
	}

	p.Set(Refuse)
	if _, err := roundTrip(c, r, "three", 10*time.Second); err == nil {
		t.Fatal("an open connection survived Refuse")
	}
	c2, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if _, err := roundTrip(c2, bufio.NewReader(c2), "four", 10*time.Second); err == nil {
		t.Fatal("a new connection was served while refusing")
	}
	p.Set(Pass)
	c3, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	if got, err := roundTrip(c3, bufio.NewReader(c3), "five", 10*time.Second); err != nil || got != "five\n" {
		t.Fatalf("after Refuse: %q, %v", got, err)
	}
	if s := p.Stats(); s.Accepted != 2 || s.Refused != 1 || s.Cut != 1 {
		t.Errorf("stats %+v, want 2 accepted, 1 refused, 1 cut", s)
	}
}
