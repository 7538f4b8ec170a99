package webhook

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observer/domain"
)

// TestCleartextIdleConnectionsExpire closes a kept-alive connection once
// it was idle for the idle timeout, without another request to notice,
// and keeps none after closeIdle.
func TestCleartextIdleConnectionsExpire(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	closed := make(chan struct{}, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						closed <- struct{}{} // the client closed its end
						return
					}
					_, _ = io.Copy(io.Discard, req.Body)
					_, _ = io.WriteString(c, "HTTP/1.1 204 No Content\r\n\r\n")
				}
			}()
		}
	}()
	c := &h1Client{dial: (&net.Dialer{}).DialContext, maxIdle: 4, maxIdleTotal: 4, idleTimeout: 50 * time.Millisecond}
	req := &http.Request{Method: http.MethodPost, URL: &url.URL{Scheme: "http", Host: ln.Addr().String(), Path: "/"}, Host: ln.Addr().String(), Header: http.Header{}}
	if _, err := c.do(t.Context(), time.Time{}, req, []byte("{}"), false); err != nil {
		t.Fatal(err)
	}
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("the idle connection was not closed")
	}
	c.mu.Lock()
	n := c.nIdle
	c.mu.Unlock()
	if n != 0 {
		t.Errorf("%d idle connections counted after the reaping, want 0", n)
	}

	c.closeIdle()
	if _, err := c.do(t.Context(), time.Time{}, req, []byte("{}"), false); err != nil {
		t.Fatal(err)
	}
	select {
	case <-closed: // closed after its request, not kept
	case <-time.After(10 * time.Second):
		t.Fatal("a connection was kept after closeIdle")
	}
}

// FuzzReadAnswer reads arbitrary bytes as an answer's head and chunked
// body: an error or a result, never a panic, never more than the bounds.
func FuzzReadAnswer(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc",
		"HTTP/1.1 503 x\r\nTransfer-Encoding: chunked\r\nRetry-After: 5\r\n\r\n3;a=b\r\nabc\r\n0\r\nT: 1\r\n\r\n",
		"HTTP/1.0 204\r\nConnection: keep-alive, Upgrade\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n",
		"HTTP/1.1 100 Continue\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		br := bufio.NewReaderSize(bytes.NewReader(data), h1BufferSize)
		h, err := readAnswerHead(br)
		if err != nil {
			return
		}
		if h.status < 100 || h.status > 999 {
			t.Fatalf("status %d accepted", h.status)
		}
		if h.chunked {
			n, err := io.Copy(io.Discard, io.LimitReader(&chunkedReader{r: br}, maxDrain+1))
			if err == nil && n > int64(len(data)) {
				t.Fatalf("read %d body bytes from %d input bytes", n, len(data))
			}
		}
	})
}

// TestReadHeadLineJoinsLongLines reads a header line longer than the
// buffer whole.
func TestReadHeadLineJoinsLongLines(t *testing.T) {
	t.Parallel()
	long := "X-Long: " + strings.Repeat("v", 3*h1BufferSize)
	br := bufio.NewReaderSize(strings.NewReader(long+"\r\nnext\r\n"), h1BufferSize)
	budget := h1MaxHeaderBytes
	line, err := readHeadLine(br, &budget)
	if err != nil || string(line) != long {
		t.Fatalf("readHeadLine = %d bytes, %v; want %d bytes", len(line), err, len(long))
	}
	if line, err := readHeadLine(br, &budget); err != nil || string(line) != "next" {
		t.Fatalf("then readHeadLine = %q, %v", line, err)
	}
	if _, err := readHeadLine(br, &budget); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("at the end: %v, want io.ErrUnexpectedEOF", err)
	}
}

// TestHTTPSPath sends an https request through net/http's transport (here
// the test server's, which trusts its certificate): the body arrives with
// its length, a failure's status, body and Retry-After are read, and the
// request timeout ends a request the receiver holds.
func TestHTTPSPath(t *testing.T) {
	t.Parallel()
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		switch r.URL.Path {
		case "/hang":
			// Held until the client gives up, then no answer at all: a
			// 200 written then could reach net/http's transport before
			// it drops the connection, and pass for a success.
			<-r.Context().Done()
			panic(http.ErrAbortHandler)
		case "/echo":
			if r.ContentLength != int64(len(body)) || r.Header.Get("Webhook-Id") == "" {
				w.WriteHeader(http.StatusBadRequest)
				return
			}
			w.Header().Set("Retry-After", "9")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write(body)
		}
	}))
	t.Cleanup(srv.Close)
	e, err := NewExecutor(Config{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	e.transport = srv.Client().Transport
	ev := &domain.Event{ID: "e1", EntityType: "Order", EntityID: "o1", EventType: domain.EventInsert, Data: map[string]any{"n": 1.0}}
	act := &domain.Action{Name: "a", Webhook: &domain.WebhookAction{URL: srv.URL + "/echo"}}
	err = e.Execute(t.Context(), ev, &domain.Observer{Name: "o"}, act)
	var se *StatusError
	if !errors.As(err, &se) || se.StatusCode != http.StatusServiceUnavailable || !strings.Contains(se.Body, `"e1"`) {
		t.Fatalf("Execute = %v, want a 503 echoing the envelope", err)
	}
	if d := domain.RetryAfter(err); d != 9*time.Second {
		t.Errorf("Retry-After = %v, want 9s", d)
	}
	act.Webhook.URL, act.Webhook.Timeout = srv.URL+"/hang", 100*time.Millisecond
	err = e.Execute(t.Context(), ev, &domain.Observer{Name: "o"}, act)
	if !errors.Is(err, context.DeadlineExceeded) || domain.IsPermanent(err) {
		t.Fatalf("Execute = %v, want a transient timeout", err)
	}
}

// TestChunkedReaderEnds reads a chunked body to its end, and reports one
// cut short, or a chunk not followed by CRLF, as an error rather than as
// the body's end.
func TestChunkedReaderEnds(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		in      string
		want    string
		wantErr error
	}{
		{"3\r\nabc\r\n0\r\n\r\n", "abc", nil},
		{"3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nT: 1\r\n\r\n", "abcde", nil},
		{"3\r\nabc", "abc", io.ErrUnexpectedEOF},
		{"3\r\nabc\r\n", "abc", io.ErrUnexpectedEOF},
		{"3\r\nabc\r\n5", "abc", io.ErrUnexpectedEOF},
		{"3\r\nabc\r\n0\r\n", "abc", io.ErrUnexpectedEOF},
		{"3\r\nabcXY0\r\n\r\n", "abc", errH1Protocol},
	} {
		got, err := io.ReadAll(&chunkedReader{r: bufio.NewReader(strings.NewReader(tt.in))})
		if string(got) != tt.want || !errors.Is(err, tt.wantErr) && (tt.wantErr != nil || err != nil) {
			t.Errorf("%q: read %q, %v; want %q, %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

// TestDialAddr: the cleartext client dials an internationalised host in
// its ASCII form, as net/http does; it dialled the name as written, which
// the resolver refuses ("no such host", retried for a day as if the
// receiver were down). No name is resolved here.
func TestDialAddr(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ url, want string }{
		{"http://bücher.example:8080/hook", "xn--bcher-kva.example:8080"},
		{"http://BÜCHER.example/hook", "xn--bcher-kva.example:80"},
		{"http://hooks.example.com/x", "hooks.example.com:80"},
		{"http://127.0.0.1:9/x", "127.0.0.1:9"},
		{"http://[::1]:9/x", "[::1]:9"},
	} {
		u, err := url.Parse(tc.url)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := dialAddr(u); err != nil || got != tc.want {
			t.Errorf("dialAddr(%s) = %q, %v; want %q", tc.url, got, err, tc.want)
		}
	}
	u := &url.URL{Scheme: "http", Host: "a\u200b\u0000b.example"}
	if _, err := dialAddr(u); !errors.Is(err, errInvalidRequest) {
		t.Errorf("dialAddr of a host that has no ASCII form: %v, want errInvalidRequest", err)
	}
}
