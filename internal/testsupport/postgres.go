package testsupport

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// PostgresCluster is a private PostgreSQL cluster that a test may stop,
// crash and restart: made with initdb in a temp directory, served by
// pg_ctl on a free loopback port (and a Unix socket in its own directory),
// trust authentication for user postgres. The machine's own cluster is
// never touched. When the test runs as root the server runs as the
// postgres OS user (initdb refuses root). The test's end stops it and
// removes its directory.
type PostgresCluster struct {
	bindir string
	dir    string // data directory (and socket directory)
	port   int
	runAs  string // OS user the server runs as ("" = this process's)
}

// StartPostgres makes and starts a private cluster. Without PostgreSQL's
// programs (pg_config --bindir) the test is skipped, except under CI=true.
func StartPostgres(t testing.TB) *PostgresCluster {
	t.Helper()
	pgConfig := Binary(t, "pg_config")
	out, err := exec.Command(pgConfig, "--bindir").Output()
	if err != nil {
		t.Fatalf("pg_config --bindir: %v", err)
	}
	c := &PostgresCluster{bindir: strings.TrimSpace(string(out)), port: FreePort(t)}
	if os.Geteuid() == 0 {
		c.runAs = "postgres"
	}
	c.dir, err = os.MkdirTemp("", "fraiseql-test-pg-")
	if err != nil {
		t.Fatalf("temp dir: %v", err)
	}
	t.Cleanup(func() {
		_, _ = c.stop(10*time.Second, "immediate") // already stopped is fine
		_ = os.RemoveAll(c.dir)
	})
	if c.runAs != "" {
		u, err := user.Lookup(c.runAs)
		if err != nil {
			t.Fatalf("look up OS user %s (the server cannot run as root): %v", c.runAs, err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(c.dir, uid, gid); err != nil {
			t.Fatalf("chown %s: %v", c.dir, err)
		}
	}
	if msg, err := c.command(2*time.Minute, "initdb", "-D", c.dir, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"); err != nil {
		t.Fatalf("initdb: %v\n%s", err, msg)
	}
	c.Start(t)
	return c
}

// URL is the address of database db on the cluster.
func (c *PostgresCluster) URL(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", c.port, db)
}

// Addr is the cluster's host:port.
func (c *PostgresCluster) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(c.port)) }

// Start starts the server and waits until it accepts connections. fsync
// is off (a test never crashes the machine, only the server, and the
// kernel keeps what was written); synchronous_commit stays on: with it
// off, a crash loses transactions that had reported their commit.
func (c *PostgresCluster) Start(t testing.TB) {
	t.Helper()
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=50",
		c.port, c.dir)
	if msg, err := c.command(2*time.Minute, "pg_ctl", "-D", c.dir, "-l", filepath.Join(c.dir, "server.log"), "-o", opts, "-w", "-t", "60", "start"); err != nil {
		t.Fatalf("pg_ctl start: %v\n%s\n%s", err, msg, c.log())
	}
}

// Crash stops the server at once, as a crash would (pg_ctl stop -m
// immediate: no checkpoint, connections cut; the next start recovers).
func (c *PostgresCluster) Crash(t testing.TB) {
	t.Helper()
	if msg, err := c.stop(time.Minute, "immediate"); err != nil {
		t.Fatalf("pg_ctl stop: %v\n%s", err, msg)
	}
}

// Restart crashes the server and starts it again on the same port.
func (c *PostgresCluster) Restart(t testing.TB) {
	t.Helper()
	c.Crash(t)
	c.Start(t)
}

func (c *PostgresCluster) stop(timeout time.Duration, mode string) ([]byte, error) {
	return c.command(timeout, "pg_ctl", "-D", c.dir, "-m", mode, "-w", "stop")
}

// log is the tail of the server's log, for failure messages.
func (c *PostgresCluster) log() string {
	b, _ := os.ReadFile(filepath.Join(c.dir, "server.log"))
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// command runs one of PostgreSQL's programs, as the server's OS user.
func (c *PostgresCluster) command(timeout time.Duration, prog string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	path := filepath.Join(c.bindir, prog)
	var cmd *exec.Cmd
	if c.runAs != "" {
		cmd = exec.CommandContext(ctx, "runuser", append([]string{"-u", c.runAs, "--", path}, args...)...)
	} else {
		cmd = exec.CommandContext(ctx, path, args...)
	}
	cmd.Dir = c.dir // the server's user may not reach this process's directory
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.Bytes(), err
}
