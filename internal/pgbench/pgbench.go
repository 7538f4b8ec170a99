// Package pgbench runs PostgreSQL's pgbench to measure the application's
// single-row commit rate on the change log: the shared part of the
// capture benchmark (integration, BenchmarkCaptureCommitRate) and the
// load harness (cmd/fraiseql-bench), so both measure the same thing the
// same way. It imports the standard library only.
package pgbench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// TriggerName is the capture's trigger on the change log (the one the
// migration installs); dropping it leaves the application alone.
const TriggerName = "fraiseql_observer_notify"

// TriggerCountSQL counts the capture's triggers on the change log (0 or
// 1), with TriggerName as $1.
const TriggerCountSQL = `SELECT count(*) FROM pg_trigger WHERE tgrelid = 'core.tb_entity_change_log'::regclass AND tgname = $1`

// InsertSQL is the application's transaction: one change-log row.
const InsertSQL = `INSERT INTO core.tb_entity_change_log (object_type, modification_type, object_id, object_data) ` +
	`VALUES ('Order', 'INSERT', gen_random_uuid(), '{"status": "new", "total": 12.5}');`

// ErrNotFound says no pgbench binary was found.
var ErrNotFound = errors.New("pgbench not found on PATH nor in `pg_config --bindir` (install the PostgreSQL client package)")

// Find returns the pgbench binary: on PATH, else in pg_config's bindir.
func Find() (string, error) {
	if p, err := exec.LookPath("pgbench"); err == nil {
		return p, nil
	}
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		p := filepath.Join(strings.TrimSpace(string(out)), "pgbench")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", ErrNotFound
}

// WriteScript writes the pgbench script (InsertSQL) into dir and returns
// its path.
func WriteScript(dir string) (string, error) {
	p := filepath.Join(dir, "insert.sql")
	if err := os.WriteFile(p, []byte(InsertSQL+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write pgbench script: %w", err)
	}
	return p, nil
}

// Result is one pgbench run.
type Result struct {
	TPS     float64 // commits per second, without the initial connection time
	Commits int64   // transactions processed
}

var (
	tpsLine     = regexp.MustCompile(`tps = ([0-9.]+) \(without initial connection time\)`)
	commitsLine = regexp.MustCompile(`number of transactions actually processed: ([0-9]+)`)
)

// Run runs the script with clients connections (prepared statements, two
// threads) for the given length against dbURL. The context bounds it.
func Run(ctx context.Context, bin, script string, clients int, length time.Duration, dbURL string) (Result, error) {
	secs := max(int(length.Round(time.Second)/time.Second), 1)
	cmd := exec.CommandContext(ctx, bin, "-n", "-M", "prepared", "-f", script,
		"-c", strconv.Itoa(clients), "-j", "2", "-T", strconv.Itoa(secs), dbURL)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return Result{}, fmt.Errorf("pgbench %d clients: %w\n%s", clients, err, out.String())
	}
	return Parse(out.String())
}

// Parse reads tps and the commit count from pgbench's output.
func Parse(out string) (Result, error) {
	m := tpsLine.FindStringSubmatch(out)
	cm := commitsLine.FindStringSubmatch(out)
	if m == nil || cm == nil {
		return Result{}, fmt.Errorf("parse pgbench output: no tps or transaction count in:\n%s", out)
	}
	var r Result
	var err error
	if r.TPS, err = strconv.ParseFloat(m[1], 64); err != nil {
		return Result{}, fmt.Errorf("parse pgbench tps %q: %w", m[1], err)
	}
	if r.Commits, err = strconv.ParseInt(cm[1], 10, 64); err != nil {
		return Result{}, fmt.Errorf("parse pgbench transaction count %q: %w", cm[1], err)
	}
	return r, nil
}
