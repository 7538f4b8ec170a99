package webhook

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// This file reads an answer for h1.go's client: its head (status line and
// the headers the client follows) and its body (known length or chunked).

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
	return n, unexpectedEOF(err)
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
	var sawClose, sawKeepAlive bool
	followed := -1 // whether the previous header line was one the client follows (-1: none yet)
	for {
		line, err := readHeadLine(br, &budget)
		if err != nil {
			return h, err
		}
		if len(line) == 0 { // close wins; HTTP/1.0 keeps the connection only when asked to
			h.keepAlive = !sawClose && (minor != '0' || sawKeepAlive)
			return h, nil
		}
		if line[0] == ' ' || line[0] == '\t' {
			// Obsolete line folding continues the previous header's value
			// (RFC 9112 5.2: a client replaces it by a space, as net/http
			// does). Of a header the client ignores it changes nothing; of
			// one it follows, or with no header before, it is refused.
			if followed != 0 {
				return h, fmt.Errorf("%w: folded header line", errH1Protocol)
			}
			continue
		}
		name, value, ok := bytes.Cut(line, []byte{':'})
		if !ok {
			return h, fmt.Errorf("%w: header line %q", errH1Protocol, truncate(line))
		}
		value = bytes.TrimSpace(value)
		followed = 0
		if asciiEqualFold(name, "content-length") || asciiEqualFold(name, "transfer-encoding") ||
			asciiEqualFold(name, "connection") || asciiEqualFold(name, "retry-after") {
			followed = 1
		}
		switch {
		case asciiEqualFold(name, "content-length"):
			n, err := strconv.ParseInt(string(value), 10, 64)
			if err != nil || n < 0 || !isDigits(string(value)) || h.contentLength >= 0 && n != h.contentLength {
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
					sawClose = true
				case asciiEqualFold(tok, "keep-alive"):
					sawKeepAlive = true
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
			return 0, unexpectedEOF(err)
		}
		size, _, _ := bytes.Cut(line, []byte{';'}) // chunk extensions ignored
		size = bytes.TrimSpace(size)
		n, err := strconv.ParseInt(string(size), 16, 64)
		if err != nil || n < 0 || len(size) == 0 || size[0] == '+' || size[0] == '-' {
			return 0, fmt.Errorf("%w: chunk size %q", errH1Protocol, truncate(line))
		}
		if n == 0 {
			for { // trailers, up to the empty line
				line, err := readHeadLine(c.r, &budget)
				if err != nil {
					return 0, unexpectedEOF(err)
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
		crlf, perr := c.r.Peek(2)
		switch {
		case perr != nil:
			err = perr
		case crlf[0] != '\r' || crlf[1] != '\n':
			return n, fmt.Errorf("%w: chunk not followed by CRLF", errH1Protocol)
		default:
			_, _ = c.r.Discard(2)
		}
	}
	return n, unexpectedEOF(err)
}

// unexpectedEOF turns the end of the connection inside a body into
// io.ErrUnexpectedEOF (io.EOF is the body's own end).
func unexpectedEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
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
