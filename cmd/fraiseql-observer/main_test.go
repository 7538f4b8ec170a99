package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fraiseql/fraiseql-observer/internal/testenv"
)

// writeConfig writes a configuration file for the database url (none when
// url is "") and returns its path.
func writeConfig(t *testing.T, url, extra string) string {
	t.Helper()
	body := "[http]\nlisten = \"\"\n" + extra
	if url != "" {
		body = "[database]\nurl = \"" + url + "\"\n" + body
	}
	file := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

const cliObserver = `
[[observers]]
name = "orders"
entity = "Order"
events = ["INSERT"]
condition = "total > 100"
[[observers.actions]]
type = "log"
message_template = "big order {{ event.entity_id }}"
`

func runCLI(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(t.Context(), args, &out, &errOut)
	if err != nil {
		code = exitCode(err)
		errOut.WriteString(err.Error())
	}
	return out.String(), errOut.String(), code
}

func TestOperatorCommandUsage(t *testing.T) {
	t.Parallel()
	memory := filepath.Join(t.TempDir(), "memory.toml")
	if err := os.WriteFile(memory, []byte("topology = \"memory\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		args   []string
		stderr string
	}{
		{[]string{"dlq"}, "needs a subcommand"},
		{[]string{"dlq", "purge"}, `unknown dlq subcommand "purge"`},
		{[]string{"dlq", "show"}, "one dead-letter id"},
		{[]string{"dlq", "show", "abc"}, "not a dead-letter id"},
		{[]string{"dlq", "retry", "0"}, "not a dead-letter id"},
		{[]string{"dlq", "show", "1", "--observer", "x"}, "flag provided but not defined: -observer"},
		{[]string{"dlq", "list", "--limit", "-1"}, "must not be negative"},
		{[]string{"dlq", "list", "--bogus"}, "flag provided but not defined"},
		{[]string{"replay"}, "needs --since"},
		{[]string{"replay", "--since", "last tuesday"}, "RFC 3339"},
		{[]string{"status", "extra"}, "takes no arguments"},
		{[]string{"status", "--config", memory}, "memory topology"},
		{[]string{"debug-event", "--file", "/nonexistent/event.json"}, "read event"},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			t.Parallel()
			_, stderr, code := runCLI(t, c.args...)
			if code != 2 || !strings.Contains(stderr, c.stderr) {
				t.Errorf("exit %d, stderr %q; want 2 and %q", code, stderr, c.stderr)
			}
		})
	}
}

func TestDebugEventCommand(t *testing.T) {
	t.Parallel()
	cfg := writeConfig(t, "", cliObserver)
	dir := t.TempDir()
	good := filepath.Join(dir, "event.json")
	if err := os.WriteFile(good, []byte(`{"id": "e1", "event_type": "INSERT", "entity_type": "Order", "entity_id": "o1", "data": {"total": 250}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`{"event_type": "INSERT"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code := runCLI(t, "debug-event", "--config", cfg, "--file", good)
	if code != 0 || !strings.Contains(stdout, "total > 100 => true") || !strings.Contains(stdout, "log at info: big order o1") {
		t.Errorf("debug-event: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	stdout, _, code = runCLI(t, "debug-event", "--config", cfg, good, "--json")
	if code != 0 || !strings.Contains(stdout, `"result": true`) {
		t.Errorf("debug-event --json: exit %d\n%s", code, stdout)
	}
	if _, stderr, code := runCLI(t, "debug-event", "--config", cfg, "--file", bad); code != 2 || !strings.Contains(stderr, "missing id or entity_type") {
		t.Errorf("bad event: exit %d, stderr %q", code, stderr)
	}
}

func TestOperatorCommandsAgainstDatabase(t *testing.T) {
	t.Parallel()
	cfg := writeConfig(t, testenv.NewDatabase(t), cliObserver)

	// Before migrate, the state tables are missing: a runtime failure that
	// says what to do.
	if _, stderr, code := runCLI(t, "dlq", "stats", "--config", cfg); code != 1 || !strings.Contains(stderr, "migrate") {
		t.Errorf("dlq stats before migrate: exit %d, stderr %q", code, stderr)
	}
	if _, stderr, code := runCLI(t, "migrate", "--config", cfg); code != 0 {
		t.Fatalf("migrate: exit %d: %s", code, stderr)
	}
	cases := []struct {
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{[]string{"status"}, 0, "default", ""},
		{[]string{"status", "--json"}, 0, `"dead_letters_total": 0`, ""},
		{[]string{"dlq", "list"}, 0, "no dead letters", ""},
		{[]string{"dlq", "list", "--json"}, 0, `"items": []`, ""},
		{[]string{"dlq", "stats"}, 0, "dead letters: 0", ""},
		{[]string{"dlq", "show", "42"}, 1, "", "dead letter 42: not found"},
		{[]string{"dlq", "retry", "42"}, 1, "", "not found"},
		{[]string{"dlq", "remove", "42"}, 1, "", "not found"},
		{[]string{"dlq", "retry-all"}, 0, "0 succeeded, 0 failed, 0 not retryable", ""},
		{[]string{"replay", "--since", "2h"}, 0, "checkpoint unchanged", ""},
		{[]string{"replay", "--since", "2h", "--reader", "elsewhere"}, 2, "", `"elsewhere" is not a reader`},
	}
	for _, c := range cases {
		stdout, stderr, code := runCLI(t, append(c.args, "--config", cfg)...)
		if code != c.code || !strings.Contains(stdout, c.stdout) || !strings.Contains(stderr, c.stderr) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want %d, %q, %q", c.args, code, stdout, stderr, c.code, c.stdout, c.stderr)
		}
	}
}

// TestMigrateWarnsAboutNullableContractColumns: migrate accepts an
// existing change log that allows NULL in contract columns and prints a
// warning naming them, once (not also in its log).
func TestMigrateWarnsAboutNullableContractColumns(t *testing.T) {
	t.Parallel()
	url := testenv.NewDatabase(t)
	testenv.Exec(t, url, `CREATE SCHEMA core; CREATE TABLE core.tb_entity_change_log (
		pk_entity_change_log bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, id uuid, created_at timestamptz,
		object_type text, modification_type text NOT NULL, object_id uuid, object_data jsonb)`)
	stdout, stderr, code := runCLI(t, "migrate", "--config", writeConfig(t, url, ""))
	if code != 0 {
		t.Fatalf("migrate: exit %d: %s", code, stderr)
	}
	if !strings.Contains(stdout, "warning: change log core.tb_entity_change_log allows NULL in id, created_at, object_type:") {
		t.Fatalf("migrate output does not warn about the nullable columns:\n%s", stdout)
	}
	if n := strings.Count(stdout+stderr, "allows NULL in"); n != 1 {
		t.Errorf("the warning is shown %d times, want once:\nstdout:\n%s\nstderr:\n%s", n, stdout, stderr)
	}
}

// TestWatchInASourceDatabase: in the multi-database topology migrate and
// watch --database NAME work on that [[databases]] entry (whose bridge
// reads its change log); watch without it is refused, naming the entries.
func TestWatchInASourceDatabase(t *testing.T) {
	t.Parallel()
	state, orders := testenv.NewDatabase(t), testenv.NewDatabase(t)
	cfg := writeConfig(t, state, `topology = "multi-database"
[[databases]]
name = "orders"
url = "`+orders+`"
[redis]
url = "redis://127.0.0.1:6379/0"
[nats]
url = "nats://127.0.0.1:4222"
`+cliObserver)
	// topology must come before any table: move it to the top.
	body, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitN(string(body), "topology = \"multi-database\"\n", 2)
	if err := os.WriteFile(cfg, []byte("topology = \"multi-database\"\n"+lines[0]+lines[1]), 0o600); err != nil {
		t.Fatal(err)
	}

	if _, stderr, code := runCLI(t, "migrate", "--config", cfg, "--database", "orders"); code != 0 {
		t.Fatalf("migrate --database orders: exit %d: %s", code, stderr)
	}
	testenv.Exec(t, orders, `CREATE TABLE items (id int PRIMARY KEY)`)
	if _, stderr, code := runCLI(t, "watch", "public.items", "--config", cfg); code != 2 || !strings.Contains(stderr, "name one with --database (orders)") {
		t.Errorf("watch without --database: exit %d, stderr %q; want refused naming orders", code, stderr)
	}
	stdout, stderr, code := runCLI(t, "watch", "public.items", "--config", cfg, "--database", "orders")
	if code != 0 || !strings.Contains(stdout, "watching public.items in database orders") {
		t.Fatalf("watch --database orders: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	testenv.Exec(t, orders, `INSERT INTO items VALUES (1)`)
	testenv.Exec(t, orders, `DO $$ BEGIN
		IF (SELECT count(*) FROM core.tb_entity_change_log WHERE object_type = 'items') <> 1 THEN
			RAISE EXCEPTION 'want 1 change-log row of items in the source database';
		END IF; END $$`)
}
