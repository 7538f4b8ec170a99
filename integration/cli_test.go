package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/internal/testsupport"
)

// binDir holds the fraiseql-observer binary built for this test run.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "fraiseql-observer-integration-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration: temp dir:", err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

var build struct {
	once sync.Once
	path string
	err  error
}

// binary builds the command once per test run and returns its path.
func binary(t testing.TB) string {
	t.Helper()
	build.once.Do(func() {
		goTool, err := exec.LookPath("go")
		if err != nil {
			build.err = fmt.Errorf("go tool not found: %w", err)
			return
		}
		out := filepath.Join(binDir, "fraiseql-observer")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, goTool, "build", "-o", out, "github.com/fraiseql/fraiseql-observer/cmd/fraiseql-observer")
		if msg, err := cmd.CombinedOutput(); err != nil {
			build.err = fmt.Errorf("go build: %w\n%s", err, msg)
			return
		}
		build.path = out
	})
	if build.err != nil {
		t.Fatal(build.err)
	}
	return build.path
}

// cliEnv is the process environment without FRAISEQL_* variables, plus
// extra ("KEY=value").
func cliEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "FRAISEQL_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// cli runs the binary to completion and returns its output and exit code.
func cli(t testing.TB, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary(t), args...)
	cmd.Env = env
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatalf("run %v: %v", args, err)
	}
	return out.String(), errOut.String(), code
}

// service is a `run` subprocess: Kill sends SIGKILL, Terminate SIGTERM.
type service struct {
	*testsupport.Process
	stderr *logBuffer
}

// startService runs `fraiseql-observer run --config file`; the test's end
// kills it if it still runs.
func startService(t testing.TB, env []string, file string) *service {
	t.Helper()
	s := &service{stderr: &logBuffer{}}
	cmd := exec.Command(binary(t), "run", "--config", file)
	cmd.Env = env
	cmd.Stderr = s.stderr
	// Registered before StartProcess's own cleanup, so it runs after it:
	// the process is gone and its stderr complete.
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("service stderr (tail):\n%s", s.stderr.tail(6000))
		}
	})
	s.Process = testsupport.StartProcess(t, cmd)
	return s
}

// terminate sends SIGTERM and returns the exit code.
func (s *service) terminate(t testing.TB) int {
	t.Helper()
	return s.Terminate(t, 60*time.Second)
}

// serviceConfig writes a config file for `run` against the database in
// FRAISEQL_DATABASE_URL, with a webhook observer for entity to url.
func serviceConfig(t testing.TB, entity, url string) string {
	t.Helper()
	body := fmt.Sprintf(`
[database]
migrate_on_start = true
max_connections = 3
poll_interval = "200ms"

[reader]
checkpoint_interval = "100ms"
lease_ttl = "3s"

[http]
listen = "127.0.0.1:0"

[logging]
format = "json"

[security]
allowed_networks = ["127.0.0.1/32"]

[[observers]]
name = "orders"
entity = %q
events = ["INSERT", "UPDATE", "DELETE"]
[[observers.actions]]
type = "webhook"
url = %q
`, entity, url)
	return writeFile(t, "config.toml", body)
}

func writeFile(t testing.TB, name, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// Bad configuration is exit status 2 with a message naming the file and
// the key or observer, for validate-config and for run alike.
func TestCLIRejectsBadConfig(t *testing.T) {
	t.Parallel()
	env := cliEnv("FRAISEQL_DATABASE_URL=postgres://postgres@127.0.0.1:1/unused?sslmode=disable")
	cases := []struct {
		name string
		toml string
		want []string // in stderr besides the file name
	}{
		{"unknown key", "[database]\nurll = \"postgres://x\"\n", []string{"database.urll", "unknown key"}},
		{"bad duration", "[reader]\ncheckpoint_interval = \"soon\"\n", []string{"reader.checkpoint_interval", "duration"}},
		{"condition does not parse", `
[[observers]]
name = "shipped"
entity = "Order"
events = ["UPDATE"]
condition = "status == 'shipped' &&"
[[observers.actions]]
type = "webhook"
url = "http://127.0.0.1:1/hook"
`, []string{`"shipped"`, "condition"}},
		{"webhook without url", `
[[observers]]
name = "no-target"
entity = "Order"
events = ["INSERT"]
[[observers.actions]]
type = "webhook"
`, []string{`"no-target"`, "url"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			file := writeFile(t, "bad.toml", c.toml)
			for _, cmd := range []string{"validate-config", "run"} {
				_, stderr, code := cli(t, env, cmd, "--config", file)
				if code != 2 {
					t.Errorf("%s: exit status %d, want 2; stderr:\n%s", cmd, code, stderr)
				}
				for _, want := range append([]string{file}, c.want...) {
					if !strings.Contains(stderr, want) {
						t.Errorf("%s: stderr does not contain %q:\n%s", cmd, want, stderr)
					}
				}
			}
		})
	}
}

func TestCLIExitCodes(t *testing.T) {
	t.Parallel()
	env := cliEnv()
	cases := []struct {
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{[]string{"version"}, 0, "fraiseql-observer ", ""},
		{[]string{"frobnicate"}, 2, "", `unknown command "frobnicate"`},
		{nil, 2, "", "no command given"},
		{[]string{"watch"}, 2, "", "one table name"},
	}
	for _, c := range cases {
		t.Run(strings.Join(append([]string{"args"}, c.args...), " "), func(t *testing.T) {
			t.Parallel()
			stdout, stderr, code := cli(t, env, c.args...)
			if code != c.code {
				t.Errorf("exit status %d, want %d; stderr:\n%s", code, c.code, stderr)
			}
			if !strings.Contains(stdout, c.stdout) {
				t.Errorf("stdout %q does not contain %q", stdout, c.stdout)
			}
			if !strings.Contains(stderr, c.stderr) {
				t.Errorf("stderr %q does not contain %q", stderr, c.stderr)
			}
		})
	}
}

// migrate creates the change log on a fresh database and is idempotent;
// watch captures an ordinary table, and the running service delivers its
// changes as events of the named entity, with the pre-image on UPDATE.
func TestCLIMigrateWatchAndRun(t *testing.T) {
	t.Parallel()
	b := newBundle(t)
	env := cliEnv("FRAISEQL_DATABASE_URL=" + b.dbURL)

	for i := range 2 {
		stdout, stderr, code := cli(t, env, "migrate")
		if code != 0 {
			t.Fatalf("migrate #%d: exit status %d; stderr:\n%s", i+1, code, stderr)
		}
		if !strings.Contains(stdout, "core.tb_entity_change_log") {
			t.Errorf("migrate #%d stdout %q does not name the change log", i+1, stdout)
		}
	}
	var exists bool
	if err := b.pool.QueryRow(t.Context(), `SELECT to_regclass('core.tb_entity_change_log') IS NOT NULL
		AND to_regclass('observer.dead_letters') IS NOT NULL`).Scan(&exists); err != nil || !exists {
		t.Fatalf("after migrate: change log and observer schema exist = %v (%v)", exists, err)
	}

	if _, err := b.pool.Exec(t.Context(), `CREATE TABLE public.orders (
		id uuid PRIMARY KEY DEFAULT gen_random_uuid(), status text NOT NULL, total numeric NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	if stdout, stderr, code := cli(t, env, "watch", "public.orders", "--entity", "Order"); code != 0 {
		t.Fatalf("watch: exit status %d; stdout %q stderr:\n%s", code, stdout, stderr)
	}

	recv := newReceiver(t, nil)
	svc := startService(t, env, serviceConfig(t, "Order", recv.URL()))
	waitFor(t, "service reading", func() bool { return svc.stderr.count("reader started") >= 1 })

	var orderID string
	if err := b.pool.QueryRow(t.Context(), `INSERT INTO public.orders (status, total) VALUES ('new', 100.00) RETURNING id::text`).Scan(&orderID); err != nil {
		t.Fatal(err)
	}
	if _, err := b.pool.Exec(t.Context(), `UPDATE public.orders SET status = 'paid' WHERE id = $1`, orderID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "INSERT and UPDATE delivered", func() bool { return len(recv.delivered()) >= 2 })

	got := recv.delivered()
	if len(got) != 2 {
		t.Fatalf("%d deliveries, want 2", len(got))
	}
	ins, upd := got[0].Event, got[1].Event
	for _, ev := range []domain.Event{ins, upd} {
		if ev.EntityType != "Order" || ev.EntityID != orderID {
			t.Errorf("event %s: entity %s/%s, want Order/%s", ev.ID, ev.EntityType, ev.EntityID, orderID)
		}
	}
	if ins.EventType != domain.EventInsert || ins.Data["status"] != "new" || ins.Before != nil {
		t.Errorf("first event = %s data %v before %v, want INSERT of status new without pre-image", ins.EventType, ins.Data, ins.Before)
	}
	if upd.EventType != domain.EventUpdate || upd.Data["status"] != "paid" || upd.Before["status"] != "new" {
		t.Errorf("second event = %s data %v before %v, want UPDATE to paid with pre-image status new", upd.EventType, upd.Data, upd.Before)
	}
	if c, ok := upd.Changes["status"]; !ok || c.Old != "new" || c.New != "paid" {
		t.Errorf("update changes = %v, want status new -> paid", upd.Changes)
	}
	if _, ok := upd.Changes["total"]; ok {
		t.Errorf("update changes = %v: total did not change", upd.Changes)
	}
	if code := svc.terminate(t); code != 0 {
		t.Errorf("service exit status after SIGTERM = %d, want 0", code)
	}
}

// SIGTERM stops `run` cleanly: exit 0, and the log reports the reader
// stopped with the checkpoint it saved.
func TestCLIRunStopsOnSIGTERM(t *testing.T) {
	t.Parallel()
	b := setup(t)
	env := cliEnv("FRAISEQL_DATABASE_URL=" + b.dbURL)
	recv := newReceiver(t, nil)
	svc := startService(t, env, serviceConfig(t, "Order", recv.URL()))
	waitFor(t, "service reading", func() bool { return svc.stderr.count("reader started") >= 1 })

	ids := b.insert(t, orders(3)...)
	recv.waitDelivered(t, ids)
	last := b.waitCheckpointAtEnd(t)

	if code := svc.terminate(t); code != 0 {
		t.Fatalf("exit status after SIGTERM = %d, want 0", code)
	}
	stopped := svc.stderr.records("reader stopped")
	if len(stopped) != 1 {
		t.Fatalf("%d \"reader stopped\" log records, want 1", len(stopped))
	}
	if cp := stopped[0]["checkpoint"]; cp != last.String() {
		t.Errorf("reader stopped with checkpoint %v, want %s", cp, last)
	}
	if got := b.checkpoint(t); got != last {
		t.Errorf("saved checkpoint %s, want %s", got, last)
	}
	if svc.stderr.count("fraiseql-observer stopped") != 1 {
		t.Errorf("no \"fraiseql-observer stopped\" log record")
	}
}

// TestSIGHUPWhileStarting: a SIGHUP that comes while run waits for its
// database (Go's default for it ends the process) is noted, and the
// observers are reloaded once the start completes; the process keeps
// waiting and exits cleanly on SIGTERM.
func TestSIGHUPWhileStarting(t *testing.T) {
	t.Parallel()
	port := testsupport.FreePort(t) // nothing listens there
	file := writeFile(t, "config.toml", fmt.Sprintf(`
[database]
url = "postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable"
connect_timeout = "200ms"

[http]
listen = ""

[logging]
format = "json"

[[observers]]
name = "orders"
entity = "Order"
events = ["INSERT"]
[[observers.actions]]
type = "log"
`, port))
	svc := startService(t, cliEnv(), file)
	waitFor(t, "the start waiting for the database", func() bool { return svc.stderr.count("database unreachable, retrying") >= 1 })
	svc.Signal(t, syscall.SIGHUP)
	waitFor(t, "the SIGHUP noted", func() bool {
		return svc.stderr.count("SIGHUP while starting: the observers are reloaded once the start completes") >= 1
	})
	time.Sleep(300 * time.Millisecond)
	if svc.Exited() {
		t.Fatalf("the process ended on a SIGHUP while starting: %v", svc.Err())
	}
	if code := svc.Terminate(t, 30*time.Second); code != 0 {
		t.Errorf("exit status %d after SIGTERM, want 0", code)
	}
}
