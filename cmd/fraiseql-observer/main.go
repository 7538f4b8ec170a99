// Command fraiseql-observer turns PostgreSQL data changes into reliable
// actions. See README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
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
  validate-config   load and check the configuration and observers, then exit
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
  deliveries        attempts of the delivery log [--event ID] [--observer NAME]
                    [--endpoint E] [--status ok|failed|CODE] [--since T] [--until T]
                    [--limit N] [--before ID] [--json]
  resend EVENT_ID   re-run the actions of a delivered event (no dedup, no cached
                    results), recorded in the delivery log [--observer NAME]
                    [--action NAME] [--json]
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

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return usageErr("no command given")
	}
	cmd, args := args[0], args[1:]
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	configFile := fs.String("config", os.Getenv("FRAISEQL_CONFIG"), "configuration file (TOML)")
	var topology, entity *string
	var op opFlags
	var df durableFlags
	switch cmd {
	case "run":
		topology = fs.String("topology", "", "override the topology: "+strings.Join(config.TopologyNames(), ", "))
	case "watch":
		entity = fs.String("entity", "", "entity type of the captured events (default: the table name)")
	case "status", "dlq", "debug-event", "replay":
		op.register(fs, cmd)
	case "deliveries", "resend":
		df.register(fs, cmd)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	positional, err := parseInterspersed(fs, args)
	if err != nil {
		return &exitError{code: 2, err: err}
	}

	switch cmd {
	case "version":
		fmt.Fprintf(stdout, "fraiseql-observer %s (%s, %s/%s)\n", buildVersion(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
		return nil
	case "validate-config":
		return validateConfig(*configFile, stdout)
	case "run":
		return runService(ctx, *configFile, *topology, stderr)
	case "migrate":
		return migrate(ctx, *configFile, stdout, stderr)
	case "watch", "unwatch":
		if len(positional) != 1 {
			return usageErr("%s takes one table name (schema.table), got %d arguments", cmd, len(positional))
		}
		name := ""
		if entity != nil {
			name = *entity
		}
		return watch(ctx, cmd == "watch", *configFile, positional[0], name, stdout, stderr)
	case "status":
		if len(positional) != 0 {
			return usageErr("status takes no arguments, got %q", positional)
		}
		return withOperator(ctx, *configFile, stderr, func(o *bootstrap.Operator) error {
			rep, err := o.State.Status(ctx)
			if err != nil {
				return err
			}
			return writeStatus(stdout, rep, op.json)
		})
	case "dlq":
		return dlq(ctx, *configFile, fs, positional, op, stdout, stderr)
	case "deliveries":
		return deliveries(ctx, *configFile, positional, df, stdout, stderr)
	case "resend":
		return resend(ctx, *configFile, positional, df, stdout, stderr)
	case "debug-event":
		return debugEvent(*configFile, positional, op, stdout)
	case "replay":
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
		return withOperator(ctx, *configFile, stderr, func(o *bootstrap.Operator) error {
			res, err := o.State.Replay(ctx, op.reader, since)
			if err != nil {
				return err
			}
			return writeReplay(stdout, res, op.json)
		})
	default:
		fmt.Fprint(stderr, usage)
		return usageErr("unknown command %q", cmd)
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

func validateConfig(file string, stdout io.Writer) error {
	cfg, err := loadConfig(file)
	if err != nil {
		return err
	}
	obs, err := config.LoadObservers(cfg, os.LookupEnv)
	if err != nil {
		return err
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

func runService(ctx context.Context, file, topology string, stderr io.Writer) error {
	cfg, err := loadConfig(file)
	if err != nil {
		return err
	}
	if topology != "" {
		cfg.Topology = config.Topology(topology)
		if err := cfg.Validate(); err != nil {
			return err
		}
	}
	logger := bootstrap.NewLogger(stderr, cfg.Logging.Level, cfg.Logging.Format)
	app, err := bootstrap.New(ctx, cfg, bootstrap.Options{Logger: logger})
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
