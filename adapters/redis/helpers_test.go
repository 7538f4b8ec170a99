package redis

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/internal/testenv"
	"github.com/fraiseql/fraiseql-observer/internal/testsupport"
)

// newPrefix returns a key prefix unique to one test.
func newPrefix() string { return testenv.Name("t") + ":" }

// openClient connects to the test Redis with its own key prefix (a fresh
// one when prefix is empty) and removes the prefix's keys when the test
// ends.
func openClient(t testing.TB, prefix string) *Client {
	t.Helper()
	if prefix == "" {
		prefix = newPrefix()
	}
	c, err := Open(t.Context(), Config{URL: testenv.RedisURL(t), KeyPrefix: prefix})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := c.unlinkMatching(ctx, domain.GlobEscape(prefix)+"*", new(atomic.Int64)); err != nil {
			t.Errorf("remove test keys %s*: %v", prefix, err)
		}
		if err := c.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return c
}

// listenTimeout bounds the wait for a private server to listen: a
// correctness timeout for a loaded machine.
const listenTimeout = 10 * time.Second

// privateRedis starts a throwaway redis-server (with extra arguments, such
// as --requirepass) on a free loopback port and returns its host:port and
// the process, which the test may kill.
func privateRedis(t *testing.T, extra ...string) (addr string, proc *testsupport.Process) {
	t.Helper()
	port := testsupport.FreePort(t)
	args := append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", t.TempDir()}, extra...)
	proc = testsupport.StartProcess(t, exec.Command(testsupport.Binary(t, "redis-server"), args...))
	addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	proc.WaitListening(t, addr, listenTimeout)
	return addr, proc
}

// fakeRedis serves RESP on a loopback port and returns its redis:// URL:
// each command (an array of bulk strings) is answered with answer(args),
// raw RESP. Connections are closed when the test ends.
func fakeRedis(t *testing.T, answer func(args []string) string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() {
				r, w := bufio.NewReader(c), bufio.NewWriter(c)
				for {
					args, err := readCommand(r)
					if err != nil {
						return
					}
					_, _ = w.WriteString(answer(args))
					if r.Buffered() == 0 && w.Flush() != nil {
						return
					}
				}
			})
		}
	}()
	t.Cleanup(func() {
		_ = l.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return "redis://" + l.Addr().String() + "/0"
}

// readCommand reads one RESP array of bulk strings.
func readCommand(r *bufio.Reader) ([]string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	if !strings.HasPrefix(line, "*") {
		return nil, errors.New("not an array")
	}
	n, err := strconv.Atoi(strings.TrimSpace(line[1:]))
	if err != nil || n < 1 {
		return nil, fmt.Errorf("bad array length %q", line)
	}
	args := make([]string, n)
	for i := range args {
		hdr, err := r.ReadString('\n')
		if err != nil {
			return nil, err
		}
		size, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(hdr, "$")))
		if err != nil || size < 0 {
			return nil, fmt.Errorf("bad bulk length %q", hdr)
		}
		buf := make([]byte, size+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, err
		}
		args[i] = string(buf[:size])
	}
	return args, nil
}
