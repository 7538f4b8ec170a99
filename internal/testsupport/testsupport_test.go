package testsupport_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observer/internal/testsupport"
)

func TestClockMovesOnlyWhenTold(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	c := testsupport.NewClock(start)
	if got := c.Now(); !got.Equal(start) {
		t.Fatalf("Now = %v, want %v", got, start)
	}
	c.Advance(90 * time.Second)
	if got := c.Now(); !got.Equal(start.Add(90 * time.Second)) {
		t.Fatalf("after Advance: Now = %v", got)
	}
	c.Set(start.Add(-time.Hour))
	if got := c.Now(); !got.Equal(start.Add(-time.Hour)) {
		t.Fatalf("after Set: Now = %v", got)
	}
}

func TestBufferTakesConcurrentWriters(t *testing.T) {
	t.Parallel()
	var b testsupport.Buffer
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for range 100 {
				fmt.Fprintf(&b, "%d\n", i)
			}
		})
	}
	wg.Wait()
	if n := strings.Count(b.String(), "\n"); n != 800 {
		t.Fatalf("%d lines, want 800", n)
	}
}

func TestLogsKeepsRecordsAtOrAboveMin(t *testing.T) {
	t.Parallel()
	var hooked []string
	h := &testsupport.Logs{Min: slog.LevelInfo, Hook: func(r testsupport.Record) { hooked = append(hooked, r.Message) }}
	log := slog.New(h)
	log.Debug("hidden")
	log.Info("first", slog.String("k", "v"), slog.Int("n", 3), slog.Any("list", []string{"a"}))
	log.Warn("second")
	recs := h.Records()
	if len(recs) != 2 || recs[0].Message != "first" || recs[1].Level != slog.LevelWarn {
		t.Fatalf("records = %+v", recs)
	}
	if recs[0].Attrs["k"] != "v" || recs[0].Attrs["n"] != int64(3) || recs[0].Attrs["list"].([]string)[0] != "a" {
		t.Errorf("attrs = %v", recs[0].Attrs)
	}
	if got := h.Find("second"); len(got) != 1 {
		t.Errorf("Find(second) = %v", got)
	}
	if strings.Join(hooked, ",") != "first,second" {
		t.Errorf("hook saw %v", hooked)
	}
	all := &testsupport.Logs{}
	slog.New(all).Debug("kept")
	all.WaitFor(t, "kept", time.Second)
}

// sleeper starts a process that runs until it is signalled.
func sleeper(t *testing.T) *testsupport.Process {
	t.Helper()
	return testsupport.StartProcess(t, exec.Command(testsupport.Binary(t, "sleep"), "600"))
}

func TestProcessKillAndTerminate(t *testing.T) {
	t.Parallel()
	t.Run("kill", func(t *testing.T) {
		t.Parallel()
		p := sleeper(t)
		if p.Exited() {
			t.Fatal("exited at once")
		}
		p.Kill(t)
		if !p.Exited() || p.Err() == nil {
			t.Fatalf("after Kill: exited %v, err %v", p.Exited(), p.Err())
		}
	})
	t.Run("terminate", func(t *testing.T) {
		t.Parallel()
		p := sleeper(t)
		if code := p.Terminate(t, 30*time.Second); code != -1 { // killed by a signal: no exit code
			t.Fatalf("exit code %d, want -1 for a signalled process", code)
		}
	})
}

// echoServer answers each line with the same line.
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
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	return ln.Addr().String()
}

func roundTrip(c net.Conn, r *bufio.Reader, msg string, wait time.Duration) (string, error) {
	if err := c.SetDeadline(time.Now().Add(wait)); err != nil {
		return "", err
	}
	if _, err := io.WriteString(c, msg+"\n"); err != nil {
		return "", err
	}
	line, err := r.ReadString('\n')
	return strings.TrimSuffix(line, "\n"), err
}

// dialHello connects to addr (closed at the test's end) and checks that
// a line makes the round trip.
func dialHello(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	r := bufio.NewReader(c)
	if got, err := roundTrip(c, r, "hello", 10*time.Second); err != nil || got != "hello" {
		t.Fatalf("forwarded round trip = %q, %v", got, err)
	}
	return c, r
}

func TestProxyForwardsFreezesAndCuts(t *testing.T) {
	t.Parallel()
	p := testsupport.StartProxy(t, echoServer(t))
	c, r := dialHello(t, p.Addr())

	p.Freeze()
	select {
	case <-p.Held():
		t.Fatal("Held closed before a byte was held")
	default:
	}
	if got, err := roundTrip(c, r, "anyone?", 300*time.Millisecond); err == nil {
		t.Fatalf("frozen proxy answered %q", got)
	}
	select {
	case <-p.Held():
	case <-time.After(10 * time.Second):
		t.Fatal("Held not closed after the client wrote to the frozen proxy")
	}
	// A new connection is accepted and stays silent.
	c2, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatalf("frozen proxy refused a connection: %v", err)
	}
	defer c2.Close()
	if got, err := roundTrip(c2, bufio.NewReader(c2), "hi", 300*time.Millisecond); err == nil {
		t.Fatalf("frozen proxy answered a new connection: %q", got)
	}

	p.Cut()
	if err := c.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ReadByte(); err == nil {
		t.Fatal("connection still open after Cut")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	var d net.Dialer
	if c3, err := d.DialContext(ctx, "tcp", p.Addr()); err == nil {
		_ = c3.Close()
		t.Fatal("cut proxy accepted a connection")
	}
}

func TestProxyDropsOneMatchingAnswer(t *testing.T) {
	t.Parallel()
	p := testsupport.StartProxy(t, echoServer(t))
	dropped := p.DropAnswer(func(b []byte) bool { return strings.Contains(string(b), "secret") })
	c, r := dialHello(t, p.Addr())
	if got, err := roundTrip(c, r, "a secret", 10*time.Second); err == nil {
		t.Fatalf("the matching answer was forwarded: %q", got)
	}
	select {
	case <-dropped:
	case <-time.After(10 * time.Second):
		t.Fatal("DropAnswer's channel not closed after the drop")
	}
	// The connection is gone; a new one forwards everything again.
	c2, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if got, err := roundTrip(c2, bufio.NewReader(c2), "another secret", 10*time.Second); err != nil || got != "another secret" {
		t.Fatalf("round trip after the drop = %q, %v; only the first match is dropped", got, err)
	}
}

func TestReceiverAnswersByPath(t *testing.T) {
	t.Parallel()
	r := testsupport.StartReceiver(t)
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for path, want := range map[string]int{"/ok": 204, "/status/503/x": 503, "/status/301": 301, "/status/400/a/b": 400} {
		resp, err := client.Post(r.URL+path, "application/json", strings.NewReader(`{"p":"`+path+`"}`))
		if err != nil {
			t.Fatalf("POST %s: %v", path, err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("POST %s = %d, want %d", path, resp.StatusCode, want)
		}
	}
	if n := len(r.Requests()); n != 4 {
		t.Fatalf("%d requests recorded, want 4", n)
	}
	ctx, cancel := context.WithCancel(t.Context())
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.URL+"/hang/x", nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			_ = resp.Body.Close()
		}
		done <- err
	}()
	select {
	case <-r.Hung():
	case <-time.After(10 * time.Second):
		t.Fatal("Hung not closed after a /hang request")
	}
	cancel()
	if err := <-done; err == nil {
		t.Fatal("a /hang request got an answer")
	}
}

func TestPostgresClusterRestarts(t *testing.T) {
	t.Parallel()
	pg := testsupport.StartPostgres(t)
	dial := func() error {
		c, err := net.DialTimeout("tcp", pg.Addr(), time.Second)
		if err == nil {
			_ = c.Close()
		}
		return err
	}
	if err := dial(); err != nil {
		t.Fatalf("the cluster does not listen: %v", err)
	}
	pg.Crash(t)
	if err := dial(); err == nil {
		t.Fatal("the crashed cluster still listens")
	}
	pg.Start(t)
	if err := dial(); err != nil {
		t.Fatalf("the restarted cluster does not listen: %v", err)
	}
	if !strings.HasPrefix(pg.URL("postgres"), "postgres://postgres@127.0.0.1:") {
		t.Fatalf("URL = %q", pg.URL("postgres"))
	}
}

func TestNATSServerKilledAndRestarted(t *testing.T) {
	t.Parallel()
	nodes := testsupport.StartNATSCluster(t, 3)
	if got := testsupport.URLs(nodes); strings.Count(got, ",") != 2 {
		t.Fatalf("URLs = %q", got)
	}
	nodes[1].Kill(t)
	nodes[1].Start(t)
	nodes[1].WaitHealthy(t, time.Minute)
}

func TestFreePortIsBelowTheEphemeralRangeAndNotRepeated(t *testing.T) {
	lo, hi := testsupport.PortRange()
	seen := map[int]bool{}
	for range 50 {
		p := testsupport.FreePort(t)
		if p < lo || p >= hi {
			t.Fatalf("port %d outside %d-%d", p, lo, hi)
		}
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		seen[p] = true
	}
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		var start int
		if _, err := fmt.Sscan(string(b), &start); err == nil && start > 12000 && hi > start {
			t.Fatalf("range %d-%d reaches into the ephemeral range starting at %d", lo, hi, start)
		}
	}
}

func TestBufferWithMaxKeepsTheEnd(t *testing.T) {
	w := &testsupport.Buffer{Max: 8}
	for _, s := range []string{"abc", "defgh", "ijk"} {
		if n, err := w.Write([]byte(s)); n != len(s) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", s, n, err)
		}
	}
	if got := w.String(); got != "defghijk" {
		t.Fatalf("kept %q, want the last 8 bytes %q", got, "defghijk")
	}
}
