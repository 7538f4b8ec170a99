// Command fraiseql-observer turns PostgreSQL data changes into reliable
// actions. See README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/fraiseql/fraiseql-observer/application/admin"
	"github.com/fraiseql/fraiseql-observer/bootstrap"
	"github.com/fraiseql/fraiseql-observer/bootstrap/config"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `fraiseql-observer turns PostgreSQL data changes into reliable actions.

Usage:
  fraiseql-observer <command> [--config FILE] [flags]

Commands:
  run               run the service (topology from the config or --topology)
  migrate           create or adapt the change-log table and the observer schema
  validate-config   load and check the configuration, its *_env variables and the
                    observers, then exit [--print [--json]: the effective
                    configuration, secrets redacted]
  watch TABLE       capture changes of an ordinary table (schema.table) [--entity NAME]
  unwatch TABLE     stop capturing changes of a table
  status            checkpoints, backlog, leases, dead letters, oldest open transaction [--json]
  dlq list          list dead letters [--observer NAME] [--limit N] [--after ID] [--json]
  dlq show ID       one dead letter in full (event, error, attempts, raw input) [--json]
  dlq retry ID      re-run that action once and print the real outcome [--json]
  dlq retry-all     re-run every dead letter [--observer NAME] [--json]
  dlq remove ID     delete a dead letter
  dlq stats         dead letters per observer [--json]
  debug-event       dry-run an event (JSON) against the observers [--file F | -] [--json]
  replay --since T  move a reader's checkpoint back to re-process events created
                    since T (RFC 3339, or a duration such as 2h) [--reader NAME] [--json]
  healthcheck       ask the running service's /readyz at http.listen: exit 0 when
                    ready, 1 otherwise (for container healthchecks) [--timeout D]
  version           print the version

Every command reads --config FILE (default: $FRAISEQL_CONFIG), then
FRAISEQL_* environment variables (e.g. FRAISEQL_DATABASE_URL).
Exit status: 0 ok, 1 runtime failure, 2 bad usage or configuration.
`

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

// commands are the commands run knows.
var commands = []string{"run", "migrate", "validate-config", "watch", "unwatch", "status", "dlq",
	"debug-event", "replay", "healthcheck", "version"}

// invocation is a parsed command line.
type invocation struct {
	cmd        string
	positional []string
	fs         *flag.FlagSet
	configFile string
	topology   string        // run
	entity     string        // watch
	print      bool          // validate-config
	json       bool          // validate-config --print
	timeout    time.Duration // healthcheck
	op         opFlags
}

// parseArgs parses a command line (without the program name): the
// command, its flags (which may follow positional arguments) and the
// positional arguments. An unknown command or flag is a usage error.
func parseArgs(args []string, stderr io.Writer) (*invocation, error) {
	if len(args) == 0 {
		return nil, usageErr("no command given")
	}
	inv := &invocation{cmd: args[0]}
	if !slices.Contains(commands, inv.cmd) {
		return nil, usageErr("unknown command %q", inv.cmd)
	}
	fs := flag.NewFlagSet(inv.cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&inv.configFile, "config", os.Getenv(config.EnvConfigFile), "configuration file (TOML)")
	switch inv.cmd {
	case "run":
		fs.StringVar(&inv.topology, "topology", "", "override the topology: "+strings.Join(config.TopologyNames(), ", "))
	case "watch":
		fs.StringVar(&inv.entity, "entity", "", "entity type of the captured events (default: the table name)")
	case "validate-config":
		fs.BoolVar(&inv.print, "print", false, "print the effective configuration (TOML), secrets redacted")
		fs.BoolVar(&inv.json, "json", false, "with --print: print it as JSON")
	case "healthcheck":
		fs.DurationVar(&inv.timeout, "timeout", 5*time.Second, "how long to wait for the answer")
	case "status", "dlq", "debug-event", "replay":
		inv.op.register(fs, inv.cmd)
	}
	positional, err := parseInterspersed(fs, args[1:])
	if err != nil {
		return nil, &exitError{code: 2, err: err}
	}
	inv.fs, inv.positional = fs, positional
	return inv, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
		fmt.Fprint(stdout, usage)
		return nil
	}
	inv, err := parseArgs(args, stderr)
	if err != nil {
		var ee *exitError
		if errors.As(err, &ee) && ee.code == 2 && (len(args) == 0 || !slices.Contains(commands, args[0])) {
			fmt.Fprint(stderr, usage)
		}
		return err
	}
	cmd, positional, op, configFile := inv.cmd, inv.positional, inv.op, inv.configFile
	switch cmd {
	case "version":
		fmt.Fprintf(stdout, "fraiseql-observer %s (%s, %s/%s)\n", buildVersion(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
		return nil
	case "validate-config":
		if len(positional) != 0 {
			return usageErr("validate-config takes no arguments (the file is --config FILE), got %q", positional)
		}
		return validateConfig(configFile, os.Environ(), inv.print, inv.json, stdout, stderr)
	case "healthcheck":
		if len(positional) != 0 {
			return usageErr("healthcheck takes no arguments, got %q", positional)
		}
		return healthcheck(ctx, configFile, inv.timeout, stdout)
	case "run":
		return runService(ctx, configFile, inv.topology, stderr)
	case "migrate":
		return migrate(ctx, configFile, stdout, stderr)
	case "watch", "unwatch":
		if len(positional) != 1 {
			return usageErr("%s takes one table name (schema.table), got %d arguments", cmd, len(positional))
		}
		return watch(ctx, cmd == "watch", configFile, positional[0], inv.entity, stdout, stderr)
	case "status":
		if len(positional) != 0 {
			return usageErr("status takes no arguments, got %q", positional)
		}
		return withOperator(ctx, configFile, stderr, func(o *bootstrap.Operator) error {
			rep, err := o.State.Status(ctx)
			if err != nil {
				return err
			}
			return writeStatus(stdout, rep, op.json)
		})
	case "dlq":
		return dlq(ctx, configFile, inv.fs, positional, op, stdout, stderr)
	case "debug-event":
		return debugEvent(configFile, positional, op, stdout)
	default: // replay
		if len(positional) != 0 {
			return usageErr("replay takes no arguments, got %q", positional)
		}
		if op.since == "" {
			return usageErr("replay needs --since TIME (RFC 3339, or a duration such as 2h meaning that long ago)")
		}
		since, err := admin.ParseSince(op.since, time.Now())
		if err != nil {
			return &exitError{code: 2, err: err}
		}
		return withOperator(ctx, configFile, stderr, func(o *bootstrap.Operator) error {
			res, err := o.State.Replay(ctx, op.reader, since)
			if err != nil {
				return err
			}
			return writeReplay(stdout, res, op.json)
		})
	}
}

// parseInterspersed lets flags follow positional arguments.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return positional, nil
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
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

// validateConfig loads the configuration with environ as the environment,
// checks every *_env reference and the observers, and prints a summary,
// or with print the effective configuration (secrets redacted). Unset
// optional references and FRAISEQL_* variables that configure nothing are
// warnings on stderr.
func validateConfig(file string, environ []string, print, asJSON bool, stdout, stderr io.Writer) error {
	cfg, err := config.Load(file, environ)
	if err != nil {
		return err
	}
	lookup := lookupIn(environ)
	optional, err := config.CheckEnv(cfg, lookup)
	if err != nil {
		return err
	}
	obs, err := bootstrap.LoadObservers(cfg, lookup)
	if err != nil {
		return err
	}
	for _, r := range optional {
		fmt.Fprintf(stderr, "warning: %s: environment variable %s is not set: %s\n", r.Key, r.Variable, r.Effect)
	}
	for _, name := range config.UnknownEnv(cfg, environ) {
		fmt.Fprintf(stderr, "warning: %s configures nothing: it is not a configuration key's variable, nor named by an *_env key\n", name)
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

// healthcheck asks the running service's /readyz (exit 0 when ready, 1
// otherwise).
func healthcheck(ctx context.Context, file string, timeout time.Duration, stdout io.Writer) error {
	cfg, err := loadConfig(file)
	if err != nil {
		return err
	}
	detail, err := bootstrap.Healthcheck(ctx, cfg, timeout)
	if err != nil {
		return err
	}
	parts := make([]string, 0, len(detail))
	for _, k := range slices.Sorted(maps.Keys(detail)) {
		parts = append(parts, k+" "+detail[k])
	}
	fmt.Fprintf(stdout, "ready: %s\n", strings.Join(parts, ", "))
	return nil
}

func runService(ctx context.Context, file, topology string, stderr io.Writer) error {
	cfg, err := loadConfig(file)
	if err != nil {
		return err
	}
	if topology != "" {
		if err := cfg.SetTopology(config.Topology(topology)); err != nil {
			return withFile(err, file)
		}
	}
	logger := bootstrap.NewLogger(stderr, cfg.Logging.Level, cfg.Logging.Format)
	app, err := bootstrap.New(ctx, cfg, bootstrap.Options{Logger: logger, Version: buildVersion()})
	if err != nil {
		if ctx.Err() != nil {
			return nil // interrupted while waiting for the database
		}
		return withFile(err, file)
	}
	defer app.Close()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for range hup {
			_ = app.Reload() // logs its outcome; a bad file keeps the running observers
		}
	}()
	logger.Info("fraiseql-observer started", "version", buildVersion(), "topology", cfg.Topology)
	if err := app.Run(ctx); err != nil {
		return err
	}
	logger.Info("fraiseql-observer stopped")
	return nil
}

func withFile(err error, file string) error {
	var ce *config.ConfigError
	if errors.As(err, &ce) && ce.File == "" {
		ce.File = file
	}
	return err
}

func migrate(ctx context.Context, file string, stdout, stderr io.Writer) error {
	cfg, err := loadConfig(file)
	if err != nil {
		return err
	}
	logger := bootstrap.NewLogger(stderr, cfg.Logging.Level, cfg.Logging.Format)
	if err := bootstrap.Migrate(ctx, cfg, logger); err != nil {
		return err
	}
	db := cfg.Database
	fmt.Fprintf(stdout, "migrated: change log %s (notify channel %s), observer schema %s\n",
		db.ChangeLogTable, db.NotifyChannel, db.ObserverSchema)
	return nil
}

func watch(ctx context.Context, on bool, file, table, entity string, stdout, stderr io.Writer) error {
	cfg, err := loadConfig(file)
	if err != nil {
		return err
	}
	logger := bootstrap.NewLogger(stderr, cfg.Logging.Level, cfg.Logging.Format)
	if err := bootstrap.Watch(ctx, cfg, logger, on, table, entity); err != nil {
		return err
	}
	if !on {
		fmt.Fprintf(stdout, "unwatched %s\n", table)
		return nil
	}
	if entity == "" {
		entity = table[strings.LastIndex(table, ".")+1:]
	}
	fmt.Fprintf(stdout, "watching %s: changes become %s events in %s\n", table, entity, cfg.Database.ChangeLogTable)
	return nil
}
