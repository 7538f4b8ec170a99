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
	"os"
	"strconv"
	"sync"
	"time"

	"golang.org/x/net/http/httpguts"
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
		if now.Sub(hc.idleSince) < c.idleTimeout {
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
	addr := hostPort(req.URL.Hostname(), req.URL.Port())
	for attempt := 0; ; attempt++ {
		hc := c.get(addr, time.Now())
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
	stop := context.AfterFunc(ctx, func() { _ = hc.nc.SetDeadline(time.Unix(1, 0)) })
	defer func() {
		if !stop() { // the deadline may be set yet, under another request: not reused
			keep = false
		}
	}()

	writeHead(hc.bw, req, len(body))
	_, werr := hc.bw.Write(body)
	if werr == nil {
		werr = hc.bw.Flush()
	}
	if _, err := hc.br.Peek(1); err != nil {
		return ans, false, false, cmp.Or(werr, err)
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
	case req.Method == http.MethodHead || h.status == http.StatusNoContent || h.status == http.StatusNotModified:
		return ans, h.keepAlive, true, nil
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

// lengthReader reads a body of known length, and reports a connection
// that ends before it as io.ErrUnexpectedEOF.
type lengthReader struct {
	r    *bufio.Reader
	left int64
}

func (l *lengthReader) Read(p []byte) (int, error) {
	if l.left == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// validHeaders checks req's Host and header names and values as net/http
// does: a value cannot smuggle another header.
func validHeaders(req *http.Request) error {
	if !httpguts.ValidHostHeader(req.Host) {
		return fmt.Errorf("%w: Host header %q", errInvalidRequest, req.Host)
	}
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

// hostPort is the dial address of a URL's host and port (80 by default).
func hostPort(host, port string) string {
	if port == "" {
		port = "80"
	}
	return net.JoinHostPort(host, port)
}

// answerHead is what the client reads of an answer's head.
type answerHead struct {
	status        int
	contentLength int64 // -1: not given
	chunked       bool
	keepAlive     bool
	retryAfter    string
}

// readAnswerHead reads a status line and the headers after it.
func readAnswerHead(br *bufio.Reader) (answerHead, error) {
	h := answerHead{contentLength: -1}
	budget := h1MaxHeaderBytes
	line, err := readHeadLine(br, &budget)
	if err != nil {
		return h, err
	}
	// HTTP/1.x SP 3DIGIT [SP reason]
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' ||
		len(line) > 12 && line[12] != ' ' {
		return h, fmt.Errorf("%w: status line %q", errH1Protocol, truncate(line))
	}
	minor := line[7]
	status, err := strconv.Atoi(string(line[9:12]))
	if err != nil || status < 100 {
		return h, fmt.Errorf("%w: status line %q", errH1Protocol, truncate(line))
	}
	h.status = status
	h.keepAlive = minor != '0'
	for {
		line, err := readHeadLine(br, &budget)
		if err != nil {
			return h, err
		}
		if len(line) == 0 {
			return h, nil
		}
		if line[0] == ' ' || line[0] == '\t' { // obsolete line folding
			return h, fmt.Errorf("%w: folded header line", errH1Protocol)
		}
		name, value, ok := bytes.Cut(line, []byte{':'})
		if !ok {
			return h, fmt.Errorf("%w: header line %q", errH1Protocol, truncate(line))
		}
		value = bytes.TrimSpace(value)
		switch {
		case asciiEqualFold(name, "content-length"):
			n, err := strconv.ParseInt(string(value), 10, 64)
			if err != nil || n < 0 || h.contentLength >= 0 && n != h.contentLength {
				return h, fmt.Errorf("%w: Content-Length %q", errH1Protocol, truncate(value))
			}
			h.contentLength = n
		case asciiEqualFold(name, "transfer-encoding"):
			if !asciiEqualFold(value, "chunked") {
				return h, fmt.Errorf("%w: Transfer-Encoding %q", errH1Protocol, truncate(value))
			}
			h.chunked = true
		case asciiEqualFold(name, "connection"):
			for tok := range bytes.SplitSeq(value, []byte{','}) {
				tok = bytes.TrimSpace(tok)
				switch {
				case asciiEqualFold(tok, "close"):
					h.keepAlive = false
				case asciiEqualFold(tok, "keep-alive") && minor == '0':
					h.keepAlive = true
				}
			}
		case asciiEqualFold(name, "retry-after"):
			h.retryAfter = string(value)
		}
		if h.chunked {
			h.contentLength = -1 // Transfer-Encoding overrides Content-Length
		}
	}
}

// readHeadLine reads one line of an answer's head without its CRLF,
// charging it to budget.
func readHeadLine(br *bufio.Reader, budget *int) ([]byte, error) {
	var long []byte
	for {
		part, err := br.ReadSlice('\n')
		*budget -= len(part)
		if *budget < 0 {
			return nil, fmt.Errorf("%w: answer head larger than %d bytes", errH1Protocol, h1MaxHeaderBytes)
		}
		switch {
		case err == nil:
			if long != nil {
				part = append(long, part...)
			}
			return bytes.TrimRight(part, "\r\n"), nil
		case errors.Is(err, bufio.ErrBufferFull):
			long = append(long, part...)
		case errors.Is(err, io.EOF) && len(part)+len(long) == 0:
			return nil, io.ErrUnexpectedEOF
		default:
			return nil, err
		}
	}
}

// chunkedReader reads a chunked body, trailers included, and reports
// io.EOF at its end.
type chunkedReader struct {
	r    *bufio.Reader
	left int64 // bytes left in the current chunk
	done bool
}

func (c *chunkedReader) Read(p []byte) (int, error) {
	if c.done {
		return 0, io.EOF
	}
	if c.left == 0 {
		budget := h1MaxHeaderBytes
		line, err := readHeadLine(c.r, &budget)
		if err != nil {
			return 0, err
		}
		size, _, _ := bytes.Cut(line, []byte{';'}) // chunk extensions ignored
		n, err := strconv.ParseInt(string(bytes.TrimSpace(size)), 16, 64)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("%w: chunk size %q", errH1Protocol, truncate(line))
		}
		if n == 0 {
			for { // trailers, up to the empty line
				line, err := readHeadLine(c.r, &budget)
				if err != nil {
					return 0, err
				}
				if len(line) == 0 {
					c.done = true
					return 0, io.EOF
				}
			}
		}
		c.left = n
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= int64(n)
	if c.left == 0 && err == nil {
		if _, err := c.r.Discard(2); err != nil { // the chunk's CRLF
			return n, err
		}
	}
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// asciiEqualFold reports whether b equals the lower-case ASCII s, ignoring
// case.
func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

// truncate shortens what an error quotes of an answer.
func truncate(b []byte) string {
	if len(b) > 64 {
		return string(b[:64]) + "..."
	}
	return string(b)
}
