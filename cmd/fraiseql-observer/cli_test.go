package main

import (
	"context"
	"flag"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observer/bootstrap/config"
	"github.com/fraiseql/fraiseql-observer/internal/testenv"
	"github.com/fraiseql/fraiseql-observer/internal/testsupport"
)

// everyCommand lists every command and subcommand of the grammar, as typed.
func everyCommand() []*command {
	var out []*command
	for _, e := range commandList() {
		switch e := e.(type) {
		case *command:
			out = append(out, e)
		case *group:
			out = append(out, e.subs...)
		}
	}
	return out
}

// Every command, found in the grammar itself (not a hand list), answers
// -h, --help and `help CMD` with its usage on stdout and exit status 0,
// naming each of its flags.
func TestEveryCommandHasHelp(t *testing.T) {
	t.Parallel()
	for _, c := range everyCommand() {
		words := strings.Fields(c.name)
		fs, _ := newFlagSet(c)
		var flags []string
		fs.VisitAll(func(f *flag.Flag) { flags = append(flags, "--"+f.Name) })
		forms := map[string][]string{
			"--help": append(append([]string{}, words...), "--help"),
			"-h":     append(append([]string{}, words...), "-h"),
			"help":   append([]string{"help"}, words...),
		}
		for form, args := range forms {
			t.Run(c.name+" "+form, func(t *testing.T) {
				t.Parallel()
				stdout, stderr, code := runCLI(t, args...)
				if code != 0 || stderr != "" {
					t.Fatalf("exit %d, stderr %q; want 0 and nothing", code, stderr)
				}
				mustContain(t, "usage", stdout, append([]string{"fraiseql-observer " + c.name, "-h, --help"}, flags...)...)
				if c.oneShot && !strings.Contains(stdout, "--wait DURATION") {
					t.Errorf("one-shot command %s has no --wait:\n%s", c.name, stdout)
				}
			})
		}
	}
}

// The exit status and message of each way to call the CLI wrongly, and of
// the top-level help and version.
func TestCLIUsage(t *testing.T) {
	t.Parallel()
	noObservers := writeConfig(t, "", "")
	bridgeOnly := filepath.Join(t.TempDir(), "bridge.toml")
	if err := os.WriteFile(bridgeOnly, []byte(`topology = "multi-database"
role = "bridge"
[[databases]]
name = "a"
url = "postgres://127.0.0.1:1/a"
`), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		args   []string
		code   int
		stdout string
		stderr []string
	}{
		{"nothing", nil, 2, "", []string{"Commands:", "no command given"}},
		{"--help", []string{"--help"}, 0, "Commands:", nil},
		{"-h", []string{"-h"}, 0, "Commands:", nil},
		{"help", []string{"help"}, 0, "dlq retry-all", nil},
		{"--version", []string{"--version"}, 0, "fraiseql-observer ", nil},
		{"version", []string{"version"}, 0, "fraiseql-observer ", nil},
		{"version with an argument", []string{"version", "x"}, 2, "", []string{"version takes no arguments"}},
		{"unknown command", []string{"frobnicate"}, 2, "", []string{"Commands:", `unknown command "frobnicate"`}},
		{"help of an unknown command", []string{"help", "frobnicate"}, 2, "", []string{"Commands:", `unknown command "frobnicate"`}},
		{"help of an unknown subcommand", []string{"help", "dlq", "purge"}, 2, "", []string{"Subcommands:", `unknown dlq subcommand "purge"`}},
		{"dlq --help", []string{"dlq", "--help"}, 0, "dlq retry ID", nil},
		{"help dlq", []string{"help", "dlq"}, 0, "Subcommands:", nil},
		{"dlq without a subcommand", []string{"dlq"}, 2, "", []string{"Subcommands:", "dlq needs a subcommand"}},
		{"unknown dlq subcommand", []string{"dlq", "purge"}, 2, "", []string{"Subcommands:", `unknown dlq subcommand "purge"`}},
		// A file given where --config was meant is refused, not ignored.
		{"validate-config FILE", []string{"validate-config", "broken.toml"}, 2, "",
			[]string{"Usage:\n  fraiseql-observer validate-config", `validate-config takes no arguments (the configuration file is --config FILE), got ["broken.toml"]`}},
		{"run FILE", []string{"run", "config.toml"}, 2, "", []string{"run takes no arguments"}},
		{"run --bogus", []string{"run", "--bogus"}, 2, "", []string{"Usage:\n  fraiseql-observer run", "flag provided but not defined: -bogus"}},
		{"watch without a table", []string{"watch"}, 2, "", []string{"watch takes one table name (schema.table), got 0 arguments"}},
		{"watch two tables", []string{"watch", "a.b", "c.d"}, 2, "", []string{"watch takes one table name (schema.table), got 2 arguments"}},
		// A table name that cannot be one is bad usage (it was a runtime
		// failure, exit 1, after connecting).
		{"watch three parts", []string{"watch", "a.b.c"}, 2, "", []string{`watch: "a.b.c": want SCHEMA.TABLE or TABLE`}},
		{"--version extra", []string{"--version", "extra"}, 2, "", []string{`--version takes no arguments, got ["extra"]`}},
		{"unwatch an empty schema", []string{"unwatch", ".widgets"}, 2, "", []string{`unwatch: ".widgets": want SCHEMA.TABLE or TABLE`}},
		{"debug-event two files", []string{"debug-event", "a", "b"}, 2, "", []string{"at most 1 arguments"}},
		{"status --wait negative", []string{"status", "--wait", "-1s"}, 2, "", []string{"--wait must not be negative"}},
		{"status --wait bad", []string{"status", "--wait", "soon"}, 2, "", []string{"invalid value \"soon\" for flag -wait"}},
		{"dlq show without an id", []string{"dlq", "show"}, 2, "", []string{"dlq show takes one dead-letter id, got 0 arguments"}},
		{"dlq show --observer", []string{"dlq", "show", "1", "--observer", "x"}, 2, "", []string{"Usage:\n  fraiseql-observer dlq show ID", "flag provided but not defined: -observer"}},
		{"validate-config has no --wait", []string{"validate-config", "--wait", "1s"}, 2, "", []string{"flag provided but not defined: -wait"}},
		{"validate-config --json without --print", []string{"validate-config", "--json"}, 2, "", []string{"--json goes with --print"}},
		{"healthcheck --timeout 0", []string{"healthcheck", "--timeout", "0s"}, 2, "", []string{"--timeout 0s: want a positive duration"}},
		{"deliveries --until bad", []string{"deliveries", "--until", "soon"}, 2, "", []string{`--until "soon": want an RFC 3339 time`}},
		{"replay --since bad", []string{"replay", "--since", "soon"}, 2, "", []string{`--since "soon": want an RFC 3339 time`}},
		// run refuses to consume events with nothing to do.
		{"run without observers", []string{"run", "--config", noObservers}, 2, "",
			[]string{noObservers, "observers: no observers configured", "role all of topology postgres-only runs actions"}},
		{"run --topology memory without observers", []string{"run", "--config", noObservers, "--topology", "memory"}, 2, "",
			[]string{"no observers configured"}},
		{"run --topology bogus", []string{"run", "--config", noObservers, "--topology", "bogus"}, 2, "", []string{"topology"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			stdout, stderr, code := runCLI(t, c.args...)
			if code != c.code || !strings.Contains(stdout, c.stdout) {
				t.Fatalf("exit %d, stdout %q, stderr %q; want %d and %q", code, stdout, stderr, c.code, c.stdout)
			}
			mustContain(t, "stderr", stderr, c.stderr...)
		})
	}

	// A bridge-only process runs no actions: it needs no observers.
	cfg, err := config.Load(bridgeOnly, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := requireObservers(cfg); err != nil {
		t.Errorf("bridge-only process without observers: %v, want accepted", err)
	}
}

// freeAddr returns a loopback address nobody listens on, below the
// kernel's ephemeral range (testsupport.FreePort): a port released by a
// listener on :0 may be taken by an outgoing connection before the
// test binds it again.
func freeAddr(t *testing.T) string {
	t.Helper()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(testsupport.FreePort(t)))
}

// One-shot commands fail within seconds when the database is down, with
// an error naming the database and its address, the password redacted,
// and exit status 1; they do not retry unless --wait asks them to.
func TestOneShotCommandsFailFastWhenTheDatabaseIsDown(t *testing.T) {
	t.Parallel()
	addr := freeAddr(t)
	cfg := writeConfig(t, "postgres://postgres:s3cret@"+addr+"/postgres?sslmode=disable&connect_timeout=5", cliObserver)
	var commands [][]string
	for _, c := range everyCommand() {
		if !c.oneShot {
			continue
		}
		args := strings.Fields(c.name)
		switch {
		case c.args == "ID":
			args = append(args, "1")
		case c.args == "SCHEMA.TABLE":
			args = append(args, "public.orders")
		case c.args == "EVENT_ID":
			args = append(args, "7d1c0d5e-0b7c-4d5c-9b1e-1f7c0a3e9a01")
		case c.name == "replay":
			args = append(args, "--since", "1h")
		}
		commands = append(commands, append(args, "--config", cfg))
	}
	if len(commands) < 10 {
		t.Fatalf("only %d one-shot commands found in the grammar", len(commands))
	}
	for _, args := range commands {
		t.Run(strings.Join(args[:len(args)-2], " "), func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			_, stderr, code := runCLI(t, args...)
			took := time.Since(start)
			if code != 1 {
				t.Errorf("exit %d, want 1; stderr %q", code, stderr)
			}
			mustContain(t, "stderr", stderr, "database", addr, "unreachable", "connection refused")
			if strings.Contains(stderr, "s3cret") {
				t.Errorf("the password leaked: %q", stderr)
			}
			if strings.Contains(stderr, "retrying") {
				t.Errorf("retried without --wait: %q", stderr)
			}
			// Retrying (the old behaviour) took 15s; a refused connection
			// fails at once. The bound is generous for a busy machine.
			if took > 10*time.Second {
				t.Errorf("took %s to fail", took)
			}
		})
	}
}

// --wait waits for a database that does not answer yet: it gives up after
// the duration with the last error, and goes on once the database answers.
func TestWaitForTheDatabase(t *testing.T) {
	t.Parallel()
	t.Run("gives up", func(t *testing.T) {
		t.Parallel()
		addr := freeAddr(t)
		cfg := writeConfig(t, "postgres://postgres@"+addr+"/postgres?sslmode=disable", "")
		start := time.Now()
		_, stderr, code := runCLI(t, "migrate", "--config", cfg, "--wait", "1500ms")
		if took := time.Since(start); took < 1500*time.Millisecond {
			t.Errorf("gave up after %s, before --wait 1500ms", took)
		}
		if code != 1 {
			t.Errorf("exit %d, want 1", code)
		}
		mustContain(t, "stderr", stderr, "waited 1.5s", addr, "connection refused", "retrying")
	})
	t.Run("goes on when the database answers", func(t *testing.T) {
		t.Parallel()
		target, err := url.Parse(testenv.NewDatabase(t))
		if err != nil {
			t.Fatal(err)
		}
		addr := freeAddr(t)
		real := target.Host
		target.Host = addr
		cfg := writeConfig(t, target.String(), "")
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		var wg sync.WaitGroup
		defer wg.Wait()
		wg.Go(func() {
			// The database comes up a moment after the command started.
			select {
			case <-time.After(700 * time.Millisecond):
			case <-ctx.Done():
				return
			}
			forward(ctx, t, addr, real)
		})
		stdout, stderr, code := runCLI(t, "migrate", "--config", cfg, "--wait", "60s")
		cancel()
		if code != 0 || !strings.Contains(stdout, "migrated") {
			t.Fatalf("exit %d, stdout %q, stderr %q; want migrated", code, stdout, stderr)
		}
	})
}

// forward accepts connections on addr and forwards them to target until
// ctx ends.
func forward(ctx context.Context, t *testing.T, addr, target string) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Errorf("listen %s: %v", addr, err)
		return
	}
	go func() { <-ctx.Done(); ln.Close() }()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		wg.Go(func() {
			defer c.Close()
			s, err := net.Dial("tcp", target)
			if err != nil {
				return
			}
			defer s.Close()
			go func() { <-ctx.Done(); c.Close(); s.Close() }()
			go func() { _, _ = io.Copy(s, c) }()
			_, _ = io.Copy(c, s)
		})
	}
}

// prune: a configuration without ages is refused; with them, a dry run
// and a prune print each table's count and a total.
func TestPruneCommand(t *testing.T) {
	t.Parallel()
	db := testenv.NewDatabase(t)
	off := writeConfig(t, db, cliObserver+"\n[delivery]\nlog = \"off\"\n")
	deliveries := writeConfig(t, db, cliObserver)
	on := writeConfig(t, db, cliObserver+"\n[retention]\nchange_log = \"720h\"\ndead_letters = \"2160h\"\n")
	if _, stderr, code := runCLI(t, "migrate", "--config", on); code != 0 {
		t.Fatalf("migrate: %s", stderr)
	}
	cases := []struct {
		args   []string
		code   int
		stdout []string
		stderr string
	}{
		{[]string{"prune", "--config", off}, 2, nil, "retention: sets no age and delivery.log is off"},
		{[]string{"prune", "--config", deliveries, "--dry-run"}, 0, []string{
			"delivery_log (database): 0 rows would be deleted",
			"dry run: 0 rows would be pruned, nothing was deleted",
		}, ""},
		{[]string{"prune", "--config", on, "--dry-run"}, 0, []string{
			"change_log (database): no reader has stored a checkpoint yet",
			"dead_letters (database): 0 rows would be deleted",
			"delivery_log (database): 0 rows would be deleted",
			"dry run: 0 rows would be pruned, nothing was deleted",
		}, ""},
		{[]string{"prune", "--config", on}, 0, []string{"dead_letters (database): 0 rows deleted", "pruned 0 rows"}, ""},
		{[]string{"prune", "extra", "--config", on}, 2, nil, "prune takes no arguments"},
	}
	for _, c := range cases {
		stdout, stderr, code := runCLI(t, c.args...)
		if code != c.code || !strings.Contains(stderr, c.stderr) {
			t.Errorf("%v: exit %d, stderr %q; want %d and %q", c.args, code, stderr, c.code, c.stderr)
		}
		mustContain(t, "stdout", stdout, c.stdout...)
	}
}

// --wait waits for the databases the command uses: migrate, watch and
// unwatch the one they work on, the dead-letter, delivery-log and resend
// commands the state database, the others every one. Waiting for every
// one failed `migrate --database src1 --wait 3s` while another source was
// down, though the command does not touch it.
func TestWaitsFor(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name, database string
		want           []string
	}{
		{"migrate", "src1", []string{"databases.src1"}},
		{"migrate", "", []string{"database"}},
		{"watch", "src2", []string{"databases.src2"}},
		{"unwatch", "", []string{"database"}},
		{"dlq stats", "", []string{"database"}},
		{"deliveries", "", []string{"database"}},
		{"resend", "", []string{"database"}},
		{"status", "", nil},
		{"replay", "", nil},
		{"prune", "", nil},
	} {
		inv := &invocation{cmd: &command{name: c.name}, database: c.database}
		if got := waitsFor(inv); !slices.Equal(got, c.want) {
			t.Errorf("%s --database %q waits for %q, want %q", c.name, c.database, got, c.want)
		}
	}
}
