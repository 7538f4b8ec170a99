package webhook

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/idna"
)

// This file is the executor's client for cleartext (http://) endpoints: an
// HTTP/1.1 client that writes the request and reads the answer on the
// caller's goroutine, over a pool of kept-alive connections. net/http's
// transport hands every request to two goroutines of its connection and
// back, which cost as much CPU as the rest of a delivery; https keeps
// net/http (TLS, HTTP/2). The client speaks only what a webhook needs: one
// request with a body of known length, an answer whose status, Retry-After
// and first bytes are read, the rest drained (up to maxDrain) so the
// connection is reused.

const (
	// h1BufferSize is each connection's read and write buffer.
	h1BufferSize = 4 << 10
	// h1MaxHeaderBytes bounds an answer's status line and headers; a
	// larger head fails the request (as net/http's default limit does).
	h1MaxHeaderBytes = 1 << 20
	// h1MaxInterim bounds the 1xx answers read before the final one.
	h1MaxInterim = 8
	// h1CheckAfter is how long a connection may stay idle before its reuse
	// checks that the server did not close it, or send on it, meanwhile
	// (closedOrTalking): a connection in steady use is not checked.
	h1CheckAfter = 50 * time.Millisecond
)

var (
	// errH1Protocol marks an answer that is not HTTP/1.x.
	errH1Protocol = errors.New("malformed HTTP response")
	// errInvalidRequest marks a request that cannot be written (a header
	// that would break the message): no retry makes it valid.
	errInvalidRequest = errors.New("invalid request")
)

// h1Client sends requests to cleartext endpoints. Safe for concurrent use.
type h1Client struct {
	dial         func(ctx context.Context, network, addr string) (net.Conn, error)
	maxIdle      int           // idle connections kept per host:port
	maxIdleTotal int           // and over all hosts
	idleTimeout  time.Duration // an idle connection older than this is closed

	mu     sync.Mutex
	idle   map[string][]*h1Conn // host:port → idle connections, most recent last
	nIdle  int                  // connections in idle
	reaper *time.Timer          // closes expired idle connections while there are some
	closed bool
}

// h1Conn is one connection with its buffers.
type h1Conn struct {
	nc        net.Conn
	br        *bufio.Reader
	bw        *bufio.Writer
	idleSince time.Time
}

// h1Answer is what the executor reads of an answer.
type h1Answer struct {
	status     int
	retryAfter string
	snippet    []byte // the body's first bytes, when asked for
}

// get returns an idle connection to addr, or nil.
func (c *h1Client) get(addr string, now time.Time) *h1Conn {
	c.mu.Lock()
	defer c.mu.Unlock()
	conns := c.idle[addr]
	for len(conns) > 0 {
		hc := conns[len(conns)-1]
		conns[len(conns)-1] = nil
		conns = conns[:len(conns)-1]
		c.nIdle--
		idle := now.Sub(hc.idleSince)
		if idle < c.idleTimeout && (idle < h1CheckAfter || !hc.closedOrTalking()) {
			c.idle[addr] = conns
			return hc
		}
		_ = hc.nc.Close()
	}
	delete(c.idle, addr)
	return nil
}

// put keeps hc for reuse, or closes it when the pool for addr is full or
// the client closed.
func (c *h1Client) put(addr string, hc *h1Conn, now time.Time) {
	c.mu.Lock()
	if c.closed || len(c.idle[addr]) >= c.maxIdle || c.nIdle >= c.maxIdleTotal {
		c.mu.Unlock()
		_ = hc.nc.Close()
		return
	}
	if c.idle == nil {
		c.idle = make(map[string][]*h1Conn)
	}
	hc.idleSince = now
	c.idle[addr] = append(c.idle[addr], hc)
	c.nIdle++
	if c.reaper == nil {
		c.reaper = time.AfterFunc(c.idleTimeout, c.reap)
	}
	c.mu.Unlock()
}

// reap closes the idle connections that expired, and runs again while
// some are left.
func (c *h1Client) reap() {
	now := time.Now()
	var expired []*h1Conn
	c.mu.Lock()
	for addr, conns := range c.idle {
		kept := conns[:0]
		for _, hc := range conns {
			if now.Sub(hc.idleSince) >= c.idleTimeout {
				expired = append(expired, hc)
				continue
			}
			kept = append(kept, hc)
		}
		clear(conns[len(kept):])
		if len(kept) == 0 {
			delete(c.idle, addr)
		} else {
			c.idle[addr] = kept
		}
	}
	c.nIdle -= len(expired)
	if c.nIdle > 0 && !c.closed {
		c.reaper.Reset(c.idleTimeout / 2)
	} else {
		c.reaper = nil
	}
	c.mu.Unlock()
	for _, hc := range expired {
		_ = hc.nc.Close()
	}
}

// closeIdle closes every idle connection, and from then on each
// connection after its request: requests still work, nothing is kept.
func (c *h1Client) closeIdle() {
	c.mu.Lock()
	idle := c.idle
	c.idle, c.nIdle, c.closed = nil, 0, true
	if c.reaper != nil {
		c.reaper.Stop()
		c.reaper = nil
	}
	c.mu.Unlock()
	for _, conns := range idle {
		for _, hc := range conns {
			_ = hc.nc.Close()
		}
	}
}

// do sends req (its method, URL, Host and headers) with body and reads
// the answer, with snippetSize(status, wants) bytes of its body at most.
// ctx, and deadline unless zero, bound it all. A kept-alive connection
// that fails before any byte of the answer arrives (the server closed it
// while idle) is replaced once by a new one.
func (c *h1Client) do(ctx context.Context, deadline time.Time, req *http.Request, body []byte, wants bool) (h1Answer, error) {
	if err := validHeaders(req); err != nil {
		return h1Answer{}, err
	}
	if d, ok := ctx.Deadline(); ok && (deadline.IsZero() || d.Before(deadline)) {
		deadline = d
	}
	addr, err := dialAddr(req.URL)
	if err != nil {
		return h1Answer{}, err
	}
	for attempt := 0; ; attempt++ {
		var hc *h1Conn
		if attempt == 0 { // a resend always goes on a new connection
			hc = c.get(addr, time.Now())
		}
		reused := hc != nil
		if !reused {
			dialCtx := ctx
			if !deadline.IsZero() {
				var cancel context.CancelFunc
				dialCtx, cancel = context.WithDeadline(ctx, deadline)
				defer cancel()
			}
			nc, err := c.dial(dialCtx, "tcp", addr)
			if err != nil {
				return h1Answer{}, err
			}
			hc = &h1Conn{nc: nc, br: bufio.NewReaderSize(nc, h1BufferSize), bw: bufio.NewWriterSize(nc, h1BufferSize)}
		}
		ans, keep, started, err := hc.roundTrip(ctx, deadline, req, body, wants)
		switch {
		case err == nil && keep:
			c.put(addr, hc, time.Now())
			return ans, nil
		case err == nil:
			_ = hc.nc.Close()
			return ans, nil
		}
		_ = hc.nc.Close()
		if ctx.Err() != nil {
			return h1Answer{}, fmt.Errorf("%w (%w)", ctx.Err(), err)
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			// The connection's deadline is ctx's or the request's timeout.
			return h1Answer{}, fmt.Errorf("%w (%w)", context.DeadlineExceeded, err)
		}
		if !reused || started || attempt > 0 {
			return h1Answer{}, err
		}
	}
}

// roundTrip writes the request and reads the answer on hc. keep reports
// whether hc may serve another request; started whether any byte of the
// answer arrived.
func (hc *h1Conn) roundTrip(ctx context.Context, deadline time.Time, req *http.Request, body []byte, wants bool) (ans h1Answer, keep, started bool, err error) {
	if err := hc.nc.SetDeadline(deadline); err != nil {
		return ans, false, false, err
	}
	defer func() {
		// Bytes after the answer belong to no request of ours: kept, they
		// would be read as the next request's answer (a 200 standing in
		// for a 500).
		if keep && hc.br.Buffered() > 0 {
			keep = false
		}
	}()
	stop := context.AfterFunc(ctx, func() { _ = hc.nc.SetDeadline(time.Unix(1, 0)) })
	defer func() {
		if !stop() { // the deadline may be set yet, under another request: not reused
			keep = false
		}
	}()

	werr, perr := hc.send(req, body)
	if perr != nil {
		return ans, false, false, cmp.Or(werr, perr)
	}
	// An answer came, even if the request could not be written whole: a
	// receiver may answer early (413) and close without reading the body.
	// The connection is not reused then.
	defer func() {
		if werr != nil {
			keep = false
		}
	}()
	var h answerHead
	for interim := 0; ; interim++ {
		if h, err = readAnswerHead(hc.br); err != nil {
			return ans, false, true, err
		}
		if h.status >= 200 || h.status == http.StatusSwitchingProtocols {
			break
		}
		if interim == h1MaxInterim {
			return ans, false, true, fmt.Errorf("%w: more than %d interim (1xx) answers", errH1Protocol, h1MaxInterim)
		}
	}
	if h.status == http.StatusSwitchingProtocols {
		return ans, false, true, fmt.Errorf("%w: unexpected 101 Switching Protocols", errH1Protocol)
	}
	ans.status, ans.retryAfter = h.status, h.retryAfter
	var b io.Reader
	switch {
	case req.Method == http.MethodHead:
		return ans, h.keepAlive, true, nil
	case h.status == http.StatusNoContent || h.status == http.StatusNotModified:
		// No body, whatever the head says; one that announces a body may
		// send it: the connection is not reused then.
		return ans, h.keepAlive && !h.chunked && h.contentLength <= 0, true, nil
	case h.chunked:
		b = &chunkedReader{r: hc.br}
	case h.contentLength >= 0:
		if h.contentLength == 0 {
			return ans, h.keepAlive, true, nil
		}
		b = &lengthReader{r: hc.br, left: h.contentLength}
	default: // delimited by the connection's end
		b, h.keepAlive = hc.br, false
	}
	if size := snippetSize(h.status, wants); size > 0 {
		buf := make([]byte, size)
		n := 0
		for n < size && err == nil {
			var m int
			m, err = b.Read(buf[n:])
			n += m
		}
		ans.snippet = buf[:n]
		switch {
		case errors.Is(err, io.EOF): // the whole body
			return ans, h.keepAlive, true, nil
		case err != nil: // the status is known: the answer counts, the connection does not
			return ans, false, true, nil
		}
	}
	if !h.keepAlive {
		return ans, false, true, nil
	}
	n, err := io.Copy(io.Discard, io.LimitReader(b, maxDrain+1))
	return ans, err == nil && n <= maxDrain, true, nil
}

// h1WriteAlone is the body size up to which the request is written
// before the answer is awaited: the socket's buffer takes it. A larger
// body is written while the answer is awaited, so that a receiver that
// answers early (413) and stops reading is heard, not waited out.
const h1WriteAlone = 64 << 10

// send writes req with body and waits for the first byte of the answer.
// werr is the write's error (an answer may still have come); perr, when
// set, means no answer came.
func (hc *h1Conn) send(req *http.Request, body []byte) (werr, perr error) {
	write := func() error {
		writeHead(hc.bw, req, len(body))
		if _, err := hc.bw.Write(body); err != nil {
			return err
		}
		return hc.bw.Flush()
	}
	if len(body) <= h1WriteAlone {
		werr = write()
		_, perr = hc.br.Peek(1)
		return werr, perr
	}
	done := make(chan error, 1)
	go func() { done <- write() }()
	perr = hc.awaitFinal()
	select {
	case werr = <-done:
	default: // answered (or failed) before the body was written: stop writing
		_ = hc.nc.SetWriteDeadline(time.Unix(1, 0))
		werr = <-done
		if werr == nil {
			werr = errors.New("answered before the request was written")
		}
	}
	return werr, perr
}

// awaitFinal waits for the first byte of a final answer while the body is
// being written: an interim answer (1xx: 100 Continue, 103 Early Hints)
// is read and skipped, the writing going on (before, its first byte
// stopped the body's write, and the receiver, waiting for the body, never
// answered). An error means no answer came.
func (hc *h1Conn) awaitFinal() error {
	for range h1MaxInterim {
		if _, err := hc.br.Peek(1); err != nil {
			return err
		}
		if !hc.interimAhead() || !hc.skipHead() {
			return nil
		}
	}
	return nil
}

// interimAhead reports whether the answer read next begins with an
// interim head: "HTTP/1.x 1xx", but 101. Fewer bytes (a short, malformed
// answer) and a 101 are the answer's reader's to report.
func (hc *h1Conn) interimAhead() bool {
	b, err := hc.br.Peek(12)
	return err == nil && bytes.HasPrefix(b, []byte("HTTP/1.")) && b[9] == '1' && string(b[9:12]) != "101"
}

// skipHead reads an answer's head; false when it is malformed (what is
// left is the answer's reader's to report).
func (hc *h1Conn) skipHead() bool {
	_, err := readAnswerHead(hc.br)
	return err == nil
}

// validHeaders checks req's Host and header names and values as net/http
// does: a value cannot smuggle another header.
func validHeaders(req *http.Request) error {
	host := cmp.Or(req.Host, req.URL.Host) // an empty Host override: the URL's, as net/http
	host, err := httpguts.PunycodeHostPort(host)
	if err != nil || !httpguts.ValidHostHeader(host) {
		return fmt.Errorf("%w: Host header %q", errInvalidRequest, req.Host)
	}
	req.Host = removeZone(host)
	for k, vs := range req.Header {
		if !httpguts.ValidHeaderFieldName(k) {
			return fmt.Errorf("%w: header name %q", errInvalidRequest, k)
		}
		for _, v := range vs {
			if !httpguts.ValidHeaderFieldValue(v) {
				return fmt.Errorf("%w: a value of header %q holds a line break or control character", errInvalidRequest, k)
			}
		}
	}
	return nil
}

// writeHead writes req's request line and headers (checked by
// validHeaders), with a Content-Length for a body of n bytes, into w; w's
// error, sticky, shows at its Flush.
func writeHead(w *bufio.Writer, req *http.Request, n int) {
	_, _ = w.WriteString(req.Method)
	_ = w.WriteByte(' ')
	_, _ = w.WriteString(req.URL.RequestURI())
	_, _ = w.WriteString(" HTTP/1.1\r\nHost: ")
	_, _ = w.WriteString(req.Host)
	_, _ = w.WriteString("\r\n")
	for k, vs := range req.Header {
		if k == "Host" || k == "Content-Length" || k == "Transfer-Encoding" || k == "Connection" {
			continue // written here, or not ours to set (as net/http ignores them)
		}
		for _, v := range vs {
			_, _ = w.WriteString(k)
			_, _ = w.WriteString(": ")
			_, _ = w.WriteString(v)
			_, _ = w.WriteString("\r\n")
		}
	}
	if n > 0 || req.Method == http.MethodPost || req.Method == http.MethodPut || req.Method == http.MethodPatch {
		var digits [20]byte
		_, _ = w.WriteString("Content-Length: ")
		_, _ = w.Write(strconv.AppendInt(digits[:0], int64(n), 10))
		_, _ = w.WriteString("\r\n")
	}
	_, _ = w.WriteString("\r\n")
}

// removeZone drops the zone of an IPv6 literal host ("[fe80::1%en0]:80"),
// which has no meaning to the receiver, as net/http does.
func removeZone(host string) string {
	if !strings.HasPrefix(host, "[") {
		return host
	}
	i := strings.LastIndex(host, "]")
	if i < 0 {
		return host
	}
	j := strings.LastIndex(host[:i], "%")
	if j < 0 {
		return host
	}
	return host[:j] + host[i:]
}

// dialAddr is the host:port u's connections go to, port 80 by default: an
// internationalised host in its ASCII form (punycode, through idna.Lookup,
// net/http's profile), as net/http dials it (the resolver refuses other
// names; the Host header is converted apart, in validHeaders). An ASCII
// host is dialled as written, as net/http does (Lookup would refuse an
// underscore).
func dialAddr(u *url.URL) (string, error) {
	host := u.Hostname()
	if strings.ContainsFunc(host, func(r rune) bool { return r >= utf8.RuneSelf }) {
		ascii, err := idna.Lookup.ToASCII(host)
		if err != nil {
			return "", fmt.Errorf("%w: host %q: %w", errInvalidRequest, host, err)
		}
		host = ascii
	}
	return net.JoinHostPort(host, cmp.Or(u.Port(), "80")), nil
}
