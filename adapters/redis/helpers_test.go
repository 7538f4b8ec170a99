package redis

import (
	"context"
	"net"
	"os/exec"
	"strconv"
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
		if _, err := c.unlinkMatching(ctx, domain.GlobEscape(prefix)+"*"); err != nil {
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
