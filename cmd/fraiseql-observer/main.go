// Command fraiseql-observer turns PostgreSQL data changes into reliable
// actions. See README.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fraiseql/fraiseql-observer/application/admin"
	"github.com/fraiseql/fraiseql-observer/bootstrap"
	"github.com/fraiseql/fraiseql-observer/bootstrap/actions"
	"github.com/fraiseql/fraiseql-observer/bootstrap/config"
	"github.com/fraiseql/fraiseql-observer/bootstrap/operate"
	"github.com/fraiseql/fraiseql-observer/bootstrap/telemetry"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// exitError carries an exit status.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func usageErr(format string, a ...any) error {
	return &exitError{code: 2, err: fmt.Errorf(format, a...)}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "fraiseql-observer:", err)
		os.Exit(exitCode(err))
	}
}

func exitCode(err error) int {
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	var ce *config.ConfigError
	var re *admin.RequestError
	if errors.As(err, &ce) || errors.As(err, &re) {
		return 2
	}
	return 1
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	inv, err := parseArgs(args, stdout, stderr)
	if errors.Is(err, errHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	if inv.wait < 0 {
		return usageErr("%s: --wait must not be negative", inv.cmd.name)
	}
	inv.ctx = ctx
	return inv.cmd.run(inv)
}

func printVersion(inv *invocation) error {
	fmt.Fprintf(inv.stdout, "fraiseql-observer %s (%s, %s/%s)\n", buildVersion(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return nil
}

func status(inv *invocation) error {
	return withOperator(inv, func(ctx context.Context, o *operate.Operator) error {
		rep, err := o.State.Status(ctx)
		if err != nil {
			return err
		}
		return writeStatus(inv.stdout, rep, inv.op.json)
	})
}

func replay(inv *invocation) error {
	if inv.op.since == "" {
		return usageErr("replay needs --since TIME (RFC 3339, or a duration such as 2h meaning that long ago)")
	}
	since, err := admin.ParseSince(inv.op.since, time.Now())
	if err != nil {
		return &exitError{code: 2, err: fmt.Errorf("--since %w", err)}
	}
	return withOperator(inv, func(ctx context.Context, o *operate.Operator) error {
		res, err := o.State.Replay(ctx, inv.op.reader, since)
		if err != nil {
			return err
		}
		return writeReplay(inv.stdout, res, inv.op.json)
	})
}

func buildVersion() string {
	if version != "dev" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return version
}

func loadConfig(file string) (config.Config, error) {
	return config.Load(file, os.Environ())
}

// prepare loads the configuration and builds the logger of a command;
// for a one-shot command with --wait it then waits for the databases.
func prepare(inv *invocation) (config.Config, *slog.Logger, error) {
	cfg, err := loadConfig(inv.configFile)
	if err != nil {
		return cfg, nil, err
	}
	logger := telemetry.NewLogger(inv.stderr, cfg.Logging.Level, cfg.Logging.Format)
	if inv.cmd.oneShot && inv.wait > 0 {
		if err := operate.WaitForDatabases(inv.ctx, cfg, inv.wait, logger, waitsFor(inv)...); err != nil {
			return cfg, nil, withFile(err, inv.configFile)
		}
	}
	return cfg, logger, nil
}

// waitsFor names the databases inv's command uses, for --wait: migrate,
// watch and unwatch the one they work on ([database], or the source
// --database names), the dead-letter, delivery-log and resend commands
// the state database; nil for the others (status, replay, prune: every
// database).
func waitsFor(inv *invocation) []string {
	switch name := inv.cmd.name; {
	case name == "migrate" || name == "watch" || name == "unwatch":
		if inv.database != "" {
			return []string{"databases." + inv.database}
		}
		return []string{"database"}
	case strings.HasPrefix(name, "dlq") || name == "deliveries" || name == "resend":
		return []string{"database"}
	}
	return nil
}

// unknownEnvWarning follows the name of a FRAISEQL_* variable that
// configures nothing (config.UnknownEnv), in run's log and
// validate-config's warnings.
const unknownEnvWarning = "configures nothing: it is not a configuration key's variable (tables such as [[observers]] have none), nor named by an *_env key"

func validateConfig(inv *invocation) error {
	if inv.op.json && !inv.print {
		return usageErr("validate-config: --json goes with --print (it prints the effective configuration as JSON)")
	}
	return checkConfig(inv.configFile, os.Environ(), inv.print, inv.op.json, inv.stdout, inv.stderr)
}

// checkConfig loads the configuration with environ as the environment,
// checks every *_env reference and the observers, and prints a summary,
// or with print the effective configuration (secrets redacted). Unset
// optional references and FRAISEQL_* variables that configure nothing are
// warnings on stderr.
func checkConfig(file string, environ []string, print, asJSON bool, stdout, stderr io.Writer) error {
	cfg, err := config.Load(file, environ)
	if err != nil {
		return err
	}
	lookup := lookupIn(environ)
	optional, err := config.CheckEnv(cfg, lookup)
	if err != nil {
		return err
	}
	obs, err := actions.LoadObservers(cfg, lookup)
	if err != nil {
		return err
	}
	if err := observersRequired(cfg, len(obs)); err != nil {
		return withFile(err, cfg.File)
	}
	if err := bootstrap.Preflight(context.Background(), cfg); err != nil {
		return err
	}
	if keys := cfg.TracingKeysSet(); len(keys) > 0 && !cfg.TracingOn(lookup) {
		fmt.Fprintf(stderr, "warning: %s: %s have no effect\n", config.TracingOff, strings.Join(keys, ", "))
	}
	for _, idle := range cfg.IdleKeys() {
		fmt.Fprintf(stderr, "warning: %s: %s have no effect\n", idle.Why, strings.Join(idle.Keys, ", "))
	}
	for _, r := range optional {
		fmt.Fprintf(stderr, "warning: %s: environment variable %s is not set: %s\n", r.Key, r.Variable, r.Effect)
	}
	for _, msg := range actions.UnusedEndpointOverrides(cfg, obs) {
		fmt.Fprintf(stderr, "warning: %s\n", msg)
	}
	for _, name := range config.UnknownEnv(cfg, environ) {
		fmt.Fprintf(stderr, "warning: %s %s\n", name, unknownEnvWarning)
	}
	if print {
		tree, err := bootstrap.EffectiveConfig(cfg)
		if err != nil {
			return err
		}
		return writeEffectiveConfig(stdout, cfg.File, tree, asJSON)
	}
	fmt.Fprintf(stdout, "configuration ok: topology %s, %d observer(s)\n", cfg.Topology, len(obs))
	for _, o := range obs {
		cond := o.Condition.Source()
		if cond == "" {
			cond = "(always)"
		}
		fmt.Fprintf(stdout, "  %s: %s %v when %s -> %d action(s)\n", o.Name, o.Entity, o.Events, cond, len(o.Actions))
	}
	return nil
}

// lookupIn looks variables up in environ ("NAME=value" entries; the last
// one wins, as in os.Getenv).
func lookupIn(environ []string) func(string) (string, bool) {
	m := make(map[string]string, len(environ))
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

// healthcheck asks the running service's /readyz at http.listen.
func healthcheck(inv *invocation) error {
	if inv.timeout <= 0 {
		return usageErr("healthcheck: --timeout %s: want a positive duration", inv.timeout)
	}
	cfg, err := loadConfig(inv.configFile)
	if err != nil {
		return err
	}
	detail, err := operate.Healthcheck(inv.ctx, cfg, inv.timeout)
	if err != nil {
		return err
	}
	parts := make([]string, 0, len(detail))
	for _, k := range slices.Sorted(maps.Keys(detail)) {
		parts = append(parts, k+" "+detail[k])
	}
	fmt.Fprintf(inv.stdout, "ready: %s\n", strings.Join(parts, ", "))
	return nil
}

func runService(inv *invocation) error {
	ctx, file := inv.ctx, inv.configFile
	cfg, err := loadConfig(file)
	if err != nil {
		return err
	}
	if inv.topology != "" {
		if err := cfg.SetTopology(config.Topology(inv.topology)); err != nil {
			return withFile(err, file)
		}
	}
	if err := requireObservers(cfg); err != nil {
		return err
	}
	logger := telemetry.NewLogger(inv.stderr, cfg.Logging.Level, cfg.Logging.Format)
	for _, name := range config.UnknownEnv(cfg, os.Environ()) {
		logger.Warn(name+" "+unknownEnvWarning, slog.String("variable", name))
	}
	for _, idle := range cfg.IdleKeys() {
		logger.Warn(idle.Why+": these keys have no effect", slog.Any("keys", idle.Keys))
	}
	// SIGHUP reloads the observers. It is caught from here on: during a
	// start that waits for the database, Go's default would end the
	// process; one that comes then reloads once the start completes.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	var (
		mu      sync.Mutex
		running *bootstrap.App
		pending bool // a SIGHUP came while starting: reload once started
	)
	go func() {
		for range hup {
			mu.Lock()
			app := running
			pending = app == nil
			mu.Unlock()
			if app != nil {
				_ = app.Reload() // logs its outcome; a bad file keeps the running observers
			} else {
				logger.Info("SIGHUP while starting: the observers are reloaded once the start completes")
			}
		}
	}()
	app, err := bootstrap.New(ctx, cfg, bootstrap.Options{Logger: logger, Version: buildVersion()})
	if err != nil {
		if ctx.Err() != nil {
			return nil // interrupted while waiting for the database
		}
		return withFile(err, file)
	}
	defer app.Close()
	defer func() { // before Close: a SIGHUP during the shutdown reloads nothing
		signal.Stop(hup)
		mu.Lock()
		running = nil
		mu.Unlock()
	}()
	mu.Lock()
	running = app
	reload := pending
	mu.Unlock()
	if reload {
		_ = app.Reload()
	}
	logger.Info("fraiseql-observer started", "version", buildVersion(), "topology", cfg.Topology)
	if err := app.Run(ctx); err != nil {
		return err
	}
	logger.Info("fraiseql-observer stopped")
	return nil
}

// requireObservers refuses a process that would run actions without any
// observer: every event would be consumed and nothing done. A bridge-only
// process runs no actions and needs none.
func requireObservers(cfg config.Config) error {
	if !cfg.Role.RunsWorker() {
		return nil
	}
	obs, err := actions.LoadObservers(cfg, os.LookupEnv)
	if err != nil {
		return withFile(err, cfg.File)
	}
	return observersRequired(cfg, len(obs))
}

// observersRequired is requireObservers' rule over n loaded observers
// (validate-config applies it too, so that it passes no configuration
// run refuses).
func observersRequired(cfg config.Config, n int) error {
	if n > 0 || !cfg.Role.RunsWorker() {
		return nil
	}
	where := "observers"
	if cfg.ObserversFile != "" {
		where = "observers (and observers_file " + cfg.ObserversFile + ")"
	}
	return withFile(&config.ConfigError{Key: "observers", Msg: fmt.Sprintf(
		"no observers configured in %s: role %s of topology %s runs actions, and every event would be consumed with none run",
		where, cfg.Role, cfg.Topology)}, cfg.File)
}

func withFile(err error, file string) error {
	var ce *config.ConfigError
	if errors.As(err, &ce) && ce.File == "" {
		ce.File = file
	}
	return err
}

func migrate(inv *invocation) error {
	cfg, logger, err := prepare(inv)
	if err != nil {
		return err
	}
	warnings, err := bootstrap.Migrate(inv.ctx, cfg, logger, inv.database)
	if err != nil {
		return withFile(err, inv.configFile)
	}
	db := cfg.Database
	wake := "notify channel " + db.NotifyChannel
	if db.Wake == config.WakePoll {
		wake = `database.wake = "poll": no notify trigger`
	}
	fmt.Fprintf(inv.stdout, "migrated%s: change log %s (%s), observer schema %s\n",
		inDatabase(inv.database), db.ChangeLogTable, wake, db.ObserverSchema)
	for _, w := range warnings {
		fmt.Fprintf(inv.stdout, "warning: %s\n", w)
	}
	return nil
}

func watch(inv *invocation) error {
	on, table, entity := inv.cmd.name == "watch", inv.positional[0], inv.entity
	if parts := strings.Split(table, "."); len(parts) > 2 || slices.Contains(parts, "") {
		// The argument is wrong whatever the database says: usage.
		return usageErr("%s: %q: want SCHEMA.TABLE or TABLE", inv.cmd.name, table)
	}
	cfg, logger, err := prepare(inv)
	if err != nil {
		return err
	}
	if err := bootstrap.Watch(inv.ctx, cfg, logger, on, table, entity, inv.database); err != nil {
		return withFile(err, inv.configFile)
	}
	if !on {
		fmt.Fprintf(inv.stdout, "unwatched %s%s\n", table, inDatabase(inv.database))
		return nil
	}
	if entity == "" {
		entity = table[strings.LastIndex(table, ".")+1:]
	}
	fmt.Fprintf(inv.stdout, "watching %s%s: changes become %s events in %s\n", table, inDatabase(inv.database), entity, cfg.Database.ChangeLogTable)
	return nil
}

// inDatabase names a --database in a message ("" for [database]).
func inDatabase(name string) string {
	if name == "" {
		return ""
	}
	return " in database " + name
}
