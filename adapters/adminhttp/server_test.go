package adminhttp_test

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observer/adapters/adminhttp"
)

// serve runs NewServer(h, cfg) on a loopback port until the test ends.
func serve(t *testing.T, h http.Handler, cfg adminhttp.ServerConfig) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := adminhttp.NewServer(h, cfg)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

// closedWithin reports whether the server closes conn within d (a read
// returns EOF or a reset); anything the server still sends is drained.
func closedWithin(t *testing.T, conn net.Conn, d time.Duration) bool {
	t.Helper()
	if err := conn.SetReadDeadline(time.Now().Add(d)); err != nil {
		t.Fatal(err)
	}
	_, err := io.Copy(io.Discard, conn)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false
	}
	return true // EOF (nil from io.Copy) or a reset
}

// TestServerTimeouts: an idle keep-alive connection and a request whose
// body never arrives are both closed by the server. Without IdleTimeout
// and ReadTimeout (only ReadHeaderTimeout was set) both stayed open for
// ever, each holding a goroutine.
func TestServerTimeouts(t *testing.T) {
	t.Parallel()
	const timeout = 300 * time.Millisecond
	const bound = 5 * time.Second // correctness bound, far above the timeouts
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	})
	addr := serve(t, h, adminhttp.ServerConfig{ReadTimeout: timeout, IdleTimeout: timeout, WriteTimeout: timeout})

	t.Run("IdleKeepAlive", func(t *testing.T) {
		t.Parallel()
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if _, err := io.WriteString(conn, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("status %d", resp.StatusCode)
		}
		if !closedWithin(t, conn, bound) {
			t.Fatalf("an idle keep-alive connection is still open after %v", bound)
		}
	})

	t.Run("BodyNeverArrives", func(t *testing.T) {
		t.Parallel()
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if _, err := io.WriteString(conn, "POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly a part"); err != nil {
			t.Fatal(err)
		}
		if !closedWithin(t, conn, bound) {
			t.Fatalf("a request whose body never arrives still holds its connection after %v", bound)
		}
	})
}

func TestNewServerDefaults(t *testing.T) {
	t.Parallel()
	srv := adminhttp.NewServer(http.NotFoundHandler(), adminhttp.ServerConfig{})
	if srv.ReadHeaderTimeout <= 0 || srv.ReadTimeout <= 0 || srv.WriteTimeout <= 0 || srv.IdleTimeout <= 0 || srv.MaxHeaderBytes <= 0 {
		t.Fatalf("a zero ServerConfig leaves a limit unset: %+v", srv)
	}
}
