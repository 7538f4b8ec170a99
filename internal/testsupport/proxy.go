package testsupport

import (
	"net"
	"sync"
	"testing"
	"time"
)

// Proxy is a TCP proxy on 127.0.0.1 in front of a server. A test points a
// client at Addr, lets it connect, then makes the server stop answering
// (Freeze) or go away (Cut) without touching the server itself, which may
// be the machine's own service. Safe for concurrent use.
type Proxy struct {
	ln     net.Listener
	target string

	mu     sync.Mutex
	frozen bool
	cut    bool
	conns  map[net.Conn]struct{}
	thaw   chan struct{} // closed by Cut: ends every held copy
	held   chan struct{} // closed the first time a frozen proxy holds a client's bytes
	holdOn sync.Once
	// drop and dropped: see DropAnswer.
	drop    func([]byte) bool
	dropped chan struct{}
}

// StartProxy listens on a free loopback port and forwards each connection
// to target (host:port). The test's end cuts it.
func StartProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("proxy: listen: %v", err)
	}
	p := &Proxy{
		ln: ln, target: target,
		conns: map[net.Conn]struct{}{},
		thaw:  make(chan struct{}),
		held:  make(chan struct{}),
	}
	go p.accept()
	t.Cleanup(p.Cut)
	return p
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Freeze stops every byte in both directions from now on. Connections,
// new ones included, stay open and silent: a server that accepts but never
// answers.
func (p *Proxy) Freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.frozen = true
}

// Held is closed once the frozen proxy has held back bytes a client sent:
// a request reached the (silent) server.
func (p *Proxy) Held() <-chan struct{} { return p.held }

// Cut closes every connection and stops listening: the server looks gone
// (connections refused). Safe to call more than once.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut {
		return
	}
	p.cut = true
	close(p.thaw)
	_ = p.ln.Close()
	for c := range p.conns {
		_ = c.Close()
	}
	clear(p.conns)
}

// track registers c; false when the proxy is already cut (c is closed).
func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut {
		_ = c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

// DropAnswer makes the proxy drop the next bytes a server sends that match
// (one read's worth) and close that connection, both ways, instead of
// forwarding them: the server did the work, the client never hears the
// answer (for PostgreSQL, a statement committed and the connection lost
// before its reply). Only the first match is dropped; the returned channel
// is closed then.
func (p *Proxy) DropAnswer(match func([]byte) bool) <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.drop, p.dropped = match, make(chan struct{})
	return p.dropped
}

// dropping reports whether b is the answer DropAnswer waits for, and then
// stops waiting.
func (p *Proxy) dropping(b []byte) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drop == nil || !p.drop(b) {
		return false
	}
	p.drop = nil
	close(p.dropped)
	return true
}

func (p *Proxy) isFrozen() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.frozen
}

func (p *Proxy) accept() {
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return // closed by Cut
		}
		if !p.track(client) {
			return
		}
		go p.serve(client)
	}
}

func (p *Proxy) serve(client net.Conn) {
	if p.isFrozen() {
		p.copy(nil, client, true) // never dial: hold what the client sends
		return
	}
	server, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		_ = client.Close()
		return
	}
	if !p.track(server) {
		_ = client.Close()
		return
	}
	go p.copy(server, client, true)
	p.copy(client, server, false)
}

// copy moves bytes from src to dst until either closes. Once the proxy is
// frozen, what it reads is held: nothing more is written and the copy
// waits for Cut. fromClient marks the client-to-server direction, whose
// held bytes close Held.
func (p *Proxy) copy(dst, src net.Conn, fromClient bool) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if p.isFrozen() || dst == nil {
				if fromClient {
					p.holdOn.Do(func() { close(p.held) })
				}
				<-p.thaw
				return
			}
			if !fromClient && p.dropping(buf[:n]) {
				_ = src.Close()
				_ = dst.Close()
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				_ = src.Close()
				return
			}
		}
		if err != nil {
			// One side is gone: end the pair.
			_ = src.Close()
			if dst != nil {
				_ = dst.Close()
			}
			return
		}
	}
}
