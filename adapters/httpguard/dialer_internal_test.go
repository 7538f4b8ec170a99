package httpguard

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// pipeResolver answers every A query with addrs (in that order) and every
// other query with no records, over an in-memory connection: no DNS
// server of the machine is asked.
func pipeResolver(t *testing.T, addrs ...netip.Addr) *net.Resolver {
	t.Helper()
	return &net.Resolver{PreferGo: true, Dial: func(context.Context, string, string) (net.Conn, error) {
		client, server := net.Pipe()
		go serveDNS(t, server, addrs)
		return client, nil
	}}
}

// serveDNS answers length-prefixed (TCP-framed) queries on c until the
// client closes it.
func serveDNS(t *testing.T, c net.Conn, addrs []netip.Addr) {
	defer c.Close()
	for {
		var n [2]byte
		if _, err := io.ReadFull(c, n[:]); err != nil {
			return
		}
		q := make([]byte, binary.BigEndian.Uint16(n[:]))
		if _, err := io.ReadFull(c, q); err != nil {
			return
		}
		var p dnsmessage.Parser
		h, err := p.Start(q)
		if err != nil {
			t.Errorf("fake DNS: parse query: %v", err)
			return
		}
		question, err := p.Question()
		if err != nil {
			t.Errorf("fake DNS: parse question: %v", err)
			return
		}
		b := dnsmessage.NewBuilder(make([]byte, 2, 512), dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true})
		b.EnableCompression()
		_ = b.StartQuestions()
		_ = b.Question(question)
		_ = b.StartAnswers()
		if question.Type == dnsmessage.TypeA {
			for _, a := range addrs {
				rh := dnsmessage.ResourceHeader{Name: question.Name, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET, TTL: 60}
				_ = b.AResource(rh, dnsmessage.AResource{A: a.As4()})
			}
		}
		msg, err := b.Finish()
		if err != nil {
			t.Errorf("fake DNS: build answer: %v", err)
			return
		}
		binary.BigEndian.PutUint16(msg, uint16(len(msg)-2))
		if _, err := c.Write(msg); err != nil {
			return
		}
	}
}

// closedPort is a loopback port nothing listens on.
func closedPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	return port
}

// A host with a forbidden address first and an allowed one that refuses
// the connection: the dial failed, but not because of the policy, so its
// error must not read as a refusal (which a webhook dead-letters at once).
// The net package reports the first address's error; without the
// dialer's record of allowed attempts this is ErrForbiddenAddress.
func TestDialerRefusalOnlyWhenEveryAddressIsForbidden(t *testing.T) {
	t.Parallel()
	policy, err := ParsePolicy(false, []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(closedPort(t))
	var tried atomic.Int32
	dial := func(addrs ...netip.Addr) error {
		d := NewDialer(policy, ClientConfig{DialTimeout: 5 * time.Second})
		d.d.Resolver = pipeResolver(t, addrs...)
		control := d.d.ControlContext
		d.d.ControlContext = func(ctx context.Context, network, address string, c syscall.RawConn) error {
			tried.Add(1)
			return control(ctx, network, address, c)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		conn, err := d.DialContext(ctx, "tcp4", net.JoinHostPort("two-addresses.invalid", port))
		if conn != nil {
			_ = conn.Close()
		}
		return err
	}

	forbidden, allowed := netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.1")
	err = dial(forbidden, allowed)
	if tried.Load() != 2 {
		t.Fatalf("the dial tried %d addresses, want both (err %v)", tried.Load(), err)
	}
	if err == nil || errors.Is(err, ErrForbiddenAddress) {
		t.Fatalf("forbidden + refusing allowed address: err = %v, want a dial failure that is not ErrForbiddenAddress", err)
	}
	if !strings.Contains(err.Error(), "127.0.0.2") || !strings.Contains(err.Error(), "allowed some") {
		t.Errorf("error %q should say the policy allowed some addresses and quote the first one's error", err)
	}

	tried.Store(0)
	err = dial(forbidden, netip.MustParseAddr("10.0.0.1"))
	if !errors.Is(err, ErrForbiddenAddress) {
		t.Fatalf("every address forbidden: err = %v, want ErrForbiddenAddress", err)
	}
	if tried.Load() != 2 {
		t.Errorf("the dial tried %d addresses, want both", tried.Load())
	}
}
