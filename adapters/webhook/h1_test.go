package webhook_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/textproto"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observer/adapters/webhook"
	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/internal/testsupport"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// rawServer is a receiver scripted at the byte level, for the answers
// net/http's server never gives: each accepted connection is served by
// serve (conn is the connection's number from 0), which reads requests
// with readRequest and writes whatever it wants.
type rawServer struct {
	url      string
	conns    atomic.Int64
	requests atomic.Int64
}

func newRawServer(t *testing.T, serve func(s *rawServer, conn int, c net.Conn, br *bufio.Reader)) *rawServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &rawServer{url: "http://" + ln.Addr().String() + "/hook"}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var open []net.Conn
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range open {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n := int(s.conns.Add(1) - 1)
			mu.Lock()
			open = append(open, c)
			mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				serve(s, n, c, bufio.NewReader(c))
			})
		}
	})
	return s
}

// readRequest reads one request (head and Content-Length body); false at
// the connection's end.
func (s *rawServer) readRequest(br *bufio.Reader) (http.Header, []byte, bool) {
	tp := textproto.NewReader(br)
	if _, err := tp.ReadLine(); err != nil {
		return nil, nil, false
	}
	h, err := tp.ReadMIMEHeader()
	if err != nil {
		return nil, nil, false
	}
	n, _ := strconv.Atoi(h.Get("Content-Length"))
	body := make([]byte, n)
	if _, err := io.ReadFull(br, body); err != nil {
		return nil, nil, false
	}
	s.requests.Add(1)
	return http.Header(h), body, true
}

// deliver runs a webhook action posting an event to s.
func (s *rawServer) deliver(t *testing.T, exec *webhook.Executor) error {
	t.Helper()
	return exec.Execute(t.Context(), newEvent(), testObserver, newAction(s.url, nil))
}

// serveEach answers every request of a connection with answer(conn, i).
func serveEach(answer func(conn, i int) string) func(s *rawServer, conn int, c net.Conn, br *bufio.Reader) {
	return func(s *rawServer, conn int, c net.Conn, br *bufio.Reader) {
		for i := 0; ; i++ {
			if _, _, ok := s.readRequest(br); !ok {
				return
			}
			if _, err := io.WriteString(c, answer(conn, i)); err != nil {
				return
			}
		}
	}
}

func newH1Executor(t *testing.T) *webhook.Executor {
	t.Helper()
	exec, err := webhook.NewExecutor(webhook.Config{Policy: loopbackPolicy(t), Now: func() time.Time { return fixedNow }}, slog.New(&testsupport.Logs{}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(exec.Close)
	return exec
}

// TestCleartextChunkedAnswers reads chunked bodies (with extensions and
// trailers): the error quotes the body, the delivery log keeps a success's
// body, and the connection serves the next request.
func TestCleartextChunkedAnswers(t *testing.T) {
	t.Parallel()
	srv := newRawServer(t, serveEach(func(_, i int) string {
		if i == 0 {
			return "HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\nRetry-After: 7\r\n\r\n" +
				"6;ext=1\r\nhello \r\n5\r\nworld\r\n0\r\nX-Trailer: t\r\n\r\n"
		}
		return "HTTP/1.1 200 OK\r\ntransfer-encoding: Chunked\r\n\r\n3\r\nok!\r\n0\r\n\r\n"
	}))
	exec := newH1Executor(t)
	act := newAction(srv.url, nil)
	err := exec.Execute(t.Context(), newEvent(), testObserver, act)
	var se *webhook.StatusError
	switch {
	case !errors.As(err, &se) || se.StatusCode != 503 || se.Body != "hello world":
		t.Fatalf("Execute = %v, want status 503 quoting %q", err, "hello world")
	case domain.IsPermanent(err):
		t.Fatalf("503 is permanent: %v", err)
	}
	if d := domain.RetryAfter(err); d != 7*time.Second {
		t.Errorf("Retry-After = %v, want 7s", d)
	}
	ctx, note := ports.WithResponseNote(t.Context())
	if err := exec.Execute(ctx, newEvent(), testObserver, act); err != nil {
		t.Fatalf("Execute: %v", err)
	}
	if status, body := note.Get(); status != 200 || string(body) != "ok!" {
		t.Errorf("noted %d %q, want 200 %q", status, body, "ok!")
	}
	if got := srv.conns.Load(); got != 1 {
		t.Errorf("%d connections for 2 requests, want 1", got)
	}
}

// TestCleartextConnectionReuse follows what the answer says of its
// connection: closed after Connection: close, after an HTTP/1.0 answer
// without keep-alive, after a body delimited by the connection's end and
// after a body too long to drain; reused otherwise.
func TestCleartextConnectionReuse(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 100<<10)
	for _, tt := range []struct {
		name   string
		answer string
		conns  int64
	}{
		{"keep-alive", "HTTP/1.1 204 No Content\r\n\r\n", 1},
		{"body drained", "HTTP/1.1 200 OK\r\nContent-Length: 32768\r\n\r\n" + strings.Repeat("y", 32768), 1},
		{"HTTP/1.0 keep-alive", "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok", 1},
		{"Connection: close", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", 3},
		{"HTTP/1.0", "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", 3},
		{"body too long to drain", "HTTP/1.1 200 OK\r\nContent-Length: " + strconv.Itoa(len(long)) + "\r\n\r\n" + long, 3},
		{"body to the end", "HTTP/1.1 200 OK\r\n\r\nthe rest", 3},
		{"HTTP/1.0 close wins", "HTTP/1.0 200 OK\r\nConnection: keep-alive, close\r\nContent-Length: 0\r\n\r\n", 3},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := newRawServer(t, func(s *rawServer, _ int, c net.Conn, br *bufio.Reader) {
				for {
					if _, _, ok := s.readRequest(br); !ok {
						return
					}
					if _, err := io.WriteString(c, tt.answer); err != nil {
						return
					}
					if strings.HasSuffix(tt.answer, "the rest") || strings.Contains(tt.answer, "close") ||
						strings.HasPrefix(tt.answer, "HTTP/1.0 200 OK\r\nContent-Length") {
						return // the server closes
					}
				}
			})
			exec := newH1Executor(t)
			for range 3 {
				if err := srv.deliver(t, exec); err != nil {
					t.Fatalf("Execute: %v", err)
				}
			}
			if got := srv.conns.Load(); got != tt.conns {
				t.Errorf("%d connections for 3 requests, want %d", got, tt.conns)
			}
		})
	}
}

// blindConn is a cleartext connection that counts the requests written
// on it and hides its socket: the check before the reuse of an idle
// connection (closedOrTalking) cannot see that the receiver closed it,
// however long it sat idle, so a request is written on it and only its
// failure tells: the resend path, and no other, replaces it.
type blindConn struct {
	net.Conn // only net.Conn's methods: no SyscallConn
	requests atomic.Int64
}

func (c *blindConn) Write(p []byte) (int, error) {
	if bytes.HasPrefix(p, []byte("POST ")) { // a request's first write starts with its request line
		c.requests.Add(1)
	}
	return c.Conn.Write(p)
}

// blindConns makes exec's cleartext connections blindConns, and returns
// a function listing them in the order they were dialed.
func blindConns(exec *webhook.Executor) func() []*blindConn {
	var mu sync.Mutex
	var conns []*blindConn
	webhook.WrapCleartextConns(exec, func(c net.Conn) net.Conn {
		bc := &blindConn{Conn: c}
		mu.Lock()
		conns = append(conns, bc)
		mu.Unlock()
		return bc
	})
	return func() []*blindConn {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(conns)
	}
}

// TestCleartextStaleConnectionIsReplaced sends again, once, on a new
// connection a request whose kept-alive connection the receiver had
// closed while it was idle: the request was written on the closed
// connection first (the check before reuse is blinded, so only the
// resend can succeed).
func TestCleartextStaleConnectionIsReplaced(t *testing.T) {
	t.Parallel()
	srv := newRawServer(t, func(s *rawServer, _ int, c net.Conn, br *bufio.Reader) {
		if _, _, ok := s.readRequest(br); ok {
			_, _ = io.WriteString(c, "HTTP/1.1 204 No Content\r\n\r\n")
		} // then closed, though the answer said keep-alive
	})
	exec := newH1Executor(t)
	conns := blindConns(exec)
	for i := range 2 {
		if err := srv.deliver(t, exec); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	if got, reqs := srv.conns.Load(), srv.requests.Load(); got != 2 || reqs != 2 {
		t.Errorf("%d connections, %d requests read, want 2 and 2", got, reqs)
	}
	dialed := conns()
	if len(dialed) != 2 || dialed[0].requests.Load() != 2 || dialed[1].requests.Load() != 1 {
		t.Fatalf("requests written per connection dialed: %v, want [2 1] (the second request on the closed connection, then resent on a new one)", written(dialed))
	}
}

// written is how many requests were written on each connection.
func written(conns []*blindConn) []int64 {
	n := make([]int64, len(conns))
	for i, c := range conns {
		n[i] = c.requests.Load()
	}
	return n
}

// TestCleartextNoAnswerIsNotResent fails, transiently, a request whose new
// connection ends without an answer: the receiver may have acted on it,
// and the retry policy decides when to send it again.
func TestCleartextNoAnswerIsNotResent(t *testing.T) {
	t.Parallel()
	srv := newRawServer(t, func(s *rawServer, _ int, _ net.Conn, br *bufio.Reader) {
		s.readRequest(br) // then closed without an answer
	})
	err := srv.deliver(t, newH1Executor(t))
	if err == nil || domain.IsPermanent(err) {
		t.Fatalf("Execute = %v, want a transient error", err)
	}
	if got, reqs := srv.conns.Load(), srv.requests.Load(); got != 1 || reqs != 1 {
		t.Errorf("%d connections, %d requests read, want 1 and 1", got, reqs)
	}
}

// TestCleartextAnswersRead: 1xx answers before the final one are
// skipped; an obsolete folded line continuing a header the client ignores
// is read as that header's (RFC 9112 5.2; net/http, the https path, reads
// it so: such a receiver's every delivery over http:// failed before).
func TestCleartextAnswersRead(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ name, answer string }{
		{"interim answers", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"},
		{"folded header", "HTTP/1.1 200 OK\r\nX-Info: a\r\n b\r\nContent-Length: 0\r\n\r\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := newRawServer(t, serveEach(func(int, int) string { return tt.answer }))
			if err := srv.deliver(t, newH1Executor(t)); err != nil {
				t.Fatalf("Execute: %v", err)
			}
		})
	}
}

// TestCleartextMalformedAnswers fails the request, transiently, on an
// answer that is not HTTP/1.x, and stops reading a head past its bound.
func TestCleartextMalformedAnswers(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ name, answer string }{
		{"not HTTP", "HELLO\r\n\r\n"},
		{"short status", "HTTP/1.1 20\r\n\r\n"},
		{"status letters", "HTTP/1.1 2x0 OK\r\n\r\n"},
		{"HTTP/2 status line", "HTTP/2 200\r\n\r\n"},
		{"switching protocols", "HTTP/1.1 101 Switching Protocols\r\n\r\n"},
		{"negative length", "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n"},
		{"signed length", "HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\nx"},
		{"signed chunk size", "HTTP/1.1 500 x\r\nTransfer-Encoding: chunked\r\n\r\n+3\r\nabc\r\n0\r\n\r\n"},
		{"two lengths", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nx"},
		{"gzip transfer", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"},
		// Folding is read (see TestCleartextAnswersRead) but not of a
		// header the client follows, nor before any header.
		{"folded Content-Length", "HTTP/1.1 200 OK\r\nContent-Length:\r\n  2\r\n\r\nok"},
		{"folded first line", "HTTP/1.1 200 OK\r\n X-A: 1\r\n\r\n"},
		{"header without colon", "HTTP/1.1 200 OK\r\nnonsense\r\n\r\n"},
		{"endless interim", strings.Repeat("HTTP/1.1 100 Continue\r\n\r\n", 20)},
		{"huge head", "HTTP/1.1 200 OK\r\n" + strings.Repeat("X-Pad: "+strings.Repeat("p", 1000)+"\r\n", 1100) + "\r\n"},
		{"cut head", "HTTP/1.1 200 OK\r\nContent-Le"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := newRawServer(t, func(s *rawServer, _ int, c net.Conn, br *bufio.Reader) {
				if _, _, ok := s.readRequest(br); ok {
					_, _ = io.WriteString(c, tt.answer)
				}
			})
			err := srv.deliver(t, newH1Executor(t))
			if err == nil || domain.IsPermanent(err) {
				t.Fatalf("Execute = %v, want a transient error", err)
			}
		})
	}
}

// TestCleartextTruncatedErrorBody quotes what arrived of an error answer's
// body cut short by the connection's end.
func TestCleartextTruncatedErrorBody(t *testing.T) {
	t.Parallel()
	srv := newRawServer(t, func(s *rawServer, _ int, c net.Conn, br *bufio.Reader) {
		if _, _, ok := s.readRequest(br); ok {
			_, _ = io.WriteString(c, "HTTP/1.1 400 Bad Request\r\nContent-Length: 100\r\n\r\nbad field")
		}
	})
	err := srv.deliver(t, newH1Executor(t))
	var se *webhook.StatusError
	if !errors.As(err, &se) || se.StatusCode != 400 || se.Body != "bad field" || !domain.IsPermanent(err) {
		t.Fatalf("Execute = %v, want a permanent 400 quoting %q", err, "bad field")
	}
}

// TestCleartextRefusesHeaderInjection refuses, for good and before
// sending, a header value that would end the header line.
func TestCleartextRefusesHeaderInjection(t *testing.T) {
	t.Parallel()
	srv := newRawServer(t, serveEach(func(int, int) string { return "HTTP/1.1 204 No Content\r\n\r\n" }))
	act := newAction(srv.url, func(wh *domain.WebhookAction) {
		wh.Headers = map[string]string{"X-Note": "a\r\nX-Evil: 1"}
	})
	err := newH1Executor(t).Execute(t.Context(), newEvent(), testObserver, act)
	if err == nil || !domain.IsPermanent(err) || strings.Contains(err.Error(), "X-Evil") {
		t.Fatalf("Execute = %v, want a permanent error that does not quote the value", err)
	}
	if got := srv.requests.Load(); got != 0 {
		t.Errorf("receiver read %d requests, want 0", got)
	}
}

// TestCleartextCancelEndsTheRequest returns as soon as the caller's
// context ends, while the receiver still holds the request.
func TestCleartextCancelEndsTheRequest(t *testing.T) {
	t.Parallel()
	srv := newRawServer(t, func(s *rawServer, _ int, c net.Conn, br *bufio.Reader) {
		s.readRequest(br)
		_, _ = br.ReadByte() // until the client goes
	})
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	err := newH1Executor(t).Execute(ctx, newEvent(), testObserver, newAction(srv.url, nil))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Execute = %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Execute returned %v after the cancel", d)
	}
}

// TestCleartextResendDialsANewConnection sends a request whose kept-alive
// connection the receiver had closed once more on a new connection, not
// on the next idle one, which the receiver closed too. The check before
// reuse is blinded: the request goes on a closed connection first.
func TestCleartextResendDialsANewConnection(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	srv := newRawServer(t, func(s *rawServer, conn int, c net.Conn, br *bufio.Reader) {
		if _, _, ok := s.readRequest(br); !ok {
			return
		}
		if conn < 2 {
			<-release // both first requests in flight at once: two connections
		}
		_, _ = io.WriteString(c, "HTTP/1.1 204 No Content\r\n\r\n")
		if conn < 2 {
			return // then closed, though the answer said keep-alive
		}
		for {
			if _, _, ok := s.readRequest(br); !ok {
				return
			}
			_, _ = io.WriteString(c, "HTTP/1.1 204 No Content\r\n\r\n")
		}
	})
	exec := newH1Executor(t)
	conns := blindConns(exec)
	errs := make(chan error, 2)
	for range 2 {
		go func() { errs <- srv.deliver(t, exec) }()
	}
	for srv.requests.Load() < 2 {
		time.Sleep(time.Millisecond)
	}
	close(release)
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if err := srv.deliver(t, exec); err != nil {
		t.Fatalf("Execute with two closed connections idle: %v", err)
	}
	if got := srv.conns.Load(); got != 3 {
		t.Errorf("%d connections, want 3 (the resend on a new one)", got)
	}
	dialed := conns()
	if len(dialed) != 3 || dialed[0].requests.Load()+dialed[1].requests.Load() != 3 || dialed[2].requests.Load() != 1 {
		t.Fatalf("requests written per connection dialed: %v, want the third request on one closed connection, then on a new one", written(dialed))
	}
}

// TestCleartextIdleConnectionChecked does not send on a connection that
// sat idle while the receiver wrote on it (a 408 before closing it): the
// 408 is not taken for the next request's answer.
func TestCleartextIdleConnectionChecked(t *testing.T) {
	t.Parallel()
	wrote := make(chan struct{})
	srv := newRawServer(t, func(s *rawServer, conn int, c net.Conn, br *bufio.Reader) {
		for {
			if _, _, ok := s.readRequest(br); !ok {
				return
			}
			_, _ = io.WriteString(c, "HTTP/1.1 204 No Content\r\n\r\n")
			if conn == 0 {
				time.Sleep(20 * time.Millisecond)
				_, _ = io.WriteString(c, "HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
				close(wrote)
				<-t.Context().Done() // open until the test ends: only the 408 tells
				return
			}
		}
	})
	exec := newH1Executor(t)
	if err := srv.deliver(t, exec); err != nil {
		t.Fatal(err)
	}
	<-wrote
	time.Sleep(100 * time.Millisecond) // idle past h1CheckAfter (50ms): checked before its reuse
	if err := srv.deliver(t, exec); err != nil {
		t.Fatalf("Execute after the 408 on the idle connection: %v", err)
	}
	if got := srv.conns.Load(); got != 2 {
		t.Errorf("%d connections, want 2", got)
	}
}

// TestCleartextEarlyAnswer reads the answer of a receiver that refuses a
// large body after its head, without reading the rest, and then closes
// the connection or holds it open: the request's status (413, permanent)
// is the outcome, not the failed write nor a timeout.
func TestCleartextEarlyAnswer(t *testing.T) {
	t.Parallel()
	for _, holds := range []bool{false, true} {
		t.Run(fmt.Sprint("holds=", holds), func(t *testing.T) {
			t.Parallel()
			srv := newRawServer(t, func(_ *rawServer, _ int, c net.Conn, br *bufio.Reader) {
				tp := textproto.NewReader(br)
				if _, err := tp.ReadLine(); err != nil {
					return
				}
				if _, err := tp.ReadMIMEHeader(); err != nil {
					return
				}
				_, _ = io.WriteString(c, "HTTP/1.1 413 Content Too Large\r\nContent-Length: 8\r\n\r\ntoo long")
				if holds {
					<-t.Context().Done() // open, reading nothing, until the test ends
					return
				}
				if tc, ok := c.(*net.TCPConn); ok {
					_ = tc.CloseWrite()
				}
				time.Sleep(200 * time.Millisecond) // then closed with the body unread
			})
			ev := newEvent()
			ev.Data = map[string]any{"blob": strings.Repeat("x", 32<<20)}
			// A client that waits for the whole body to be written is
			// stopped by the timeout (a deadline error, not the 413).
			act := newAction(srv.url, func(wh *domain.WebhookAction) { wh.Timeout = 30 * time.Second })
			err := newH1Executor(t).Execute(t.Context(), ev, testObserver, act)
			var se *webhook.StatusError
			if !errors.As(err, &se) || se.StatusCode != 413 || !domain.IsPermanent(err) {
				t.Fatalf("Execute = %.200v, want a permanent 413", err)
			}
		})
	}
}

// TestCleartextHost sends an internationalised Host override in its ASCII
// form, and the URL's host for an empty one.
func TestCleartextHost(t *testing.T) {
	t.Parallel()
	hosts := make(chan string, 2)
	srv := newRawServer(t, func(s *rawServer, _ int, c net.Conn, br *bufio.Reader) {
		for {
			h, _, ok := s.readRequest(br)
			if !ok {
				return
			}
			hosts <- h.Get("Host")
			_, _ = io.WriteString(c, "HTTP/1.1 204 No Content\r\n\r\n")
		}
	})
	exec := newH1Executor(t)
	for _, override := range []string{"bücher.example", ""} {
		act := newAction(srv.url, func(wh *domain.WebhookAction) { wh.Headers = map[string]string{"Host": override} })
		if err := exec.Execute(t.Context(), newEvent(), testObserver, act); err != nil {
			t.Fatalf("Host %q: %v", override, err)
		}
	}
	if got, want := <-hosts, "xn--bcher-kva.example"; got != want {
		t.Errorf("Host = %q, want %q", got, want)
	}
	if got, want := <-hosts, strings.TrimPrefix(strings.TrimSuffix(srv.url, "/hook"), "http://"); got != want {
		t.Errorf("Host for an empty override = %q, want %q", got, want)
	}
}

// Bytes after the end of an answer (a body longer than its
// Content-Length, a 204 with a body) are no request's answer: the
// connection is not reused, and the next delivery gets its own answer.
// Before, it read them as its answer: a 200 for the receiver's 500.
func TestCleartextBytesAfterAnAnswerAreNotTheNextAnswer(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ name, first string }{
		{"body longer than Content-Length", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"},
		{"204 with a body", "HTTP/1.1 204 No Content\r\nContent-Length: 2\r\n\r\nhi"},
		{"204 chunked", "HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := newRawServer(t, func(s *rawServer, _ int, c net.Conn, br *bufio.Reader) {
				for {
					if _, _, ok := s.readRequest(br); !ok {
						return
					}
					answer := "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\nboom"
					if s.requests.Load() == 1 { // the first request over all connections
						answer = tt.first
					}
					if _, err := io.WriteString(c, answer); err != nil {
						return
					}
				}
			})
			exec := newH1Executor(t)
			if err := srv.deliver(t, exec); err != nil {
				t.Fatalf("first: %v", err)
			}
			err := srv.deliver(t, exec)
			var se *webhook.StatusError
			if !errors.As(err, &se) || se.StatusCode != http.StatusInternalServerError {
				t.Fatalf("second Execute = %v, want the receiver's 500", err)
			}
		})
	}
}

// An interim answer (103 Early Hints, 100 Continue) that comes while a
// large body (over h1WriteAlone) is written does not stop the writing:
// the receiver reads the body, then answers. Before, its first byte cut
// the body short, and the delivery waited out its timeout.
func TestCleartextInterimAnswerDuringALargeBody(t *testing.T) {
	t.Parallel()
	srv := newRawServer(t, func(s *rawServer, _ int, c net.Conn, br *bufio.Reader) {
		tp := textproto.NewReader(br)
		if _, err := tp.ReadLine(); err != nil {
			return
		}
		h, err := tp.ReadMIMEHeader()
		if err != nil {
			return
		}
		_, _ = io.WriteString(c, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n")
		n, _ := strconv.Atoi(h.Get("Content-Length"))
		if _, err := io.CopyN(io.Discard, br, int64(n)); err != nil {
			return
		}
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	})
	ev := newEvent()
	ev.Data = map[string]any{"blob": strings.Repeat("x", 32<<20)} // past the sockets' buffers
	act := newAction(srv.url, func(wh *domain.WebhookAction) { wh.Timeout = 10 * time.Second })
	if err := newH1Executor(t).Execute(t.Context(), ev, testObserver, act); err != nil {
		t.Fatalf("Execute = %.300v, want nil (the receiver answered 200)", err)
	}
}
