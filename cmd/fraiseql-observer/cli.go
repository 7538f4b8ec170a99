package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/fraiseql/fraiseql-observer/bootstrap/config"
)

// This file is the command line's grammar: the commands, their flags and
// positional arguments, and their usage texts. Parsing is strict: an
// unknown command, flag or subcommand, or an argument a command does not
// take, is a usage error (exit status 2) that shows that command's usage;
// -h/--help on any command prints its usage on stdout (exit status 0).
//
// The standard flag package does the parsing: the grammar is small (one
// level of subcommands, for dlq), and a CLI library would change the
// accepted spellings (-config, interspersed flags) and the usage texts
// that scripts and the compose files rely on without removing much code.

// command is one command, or one subcommand of a group ("dlq list").
type command struct {
	name    string // as typed: "status", "dlq list"
	args    string // the positional arguments in the synopsis: "SCHEMA.TABLE"
	argsFor string // what they are, for errors: "one table name (schema.table)"
	minArgs int
	maxArgs int
	summary string // one line, for the list of commands
	help    string // what it does, for its own usage
	// oneShot commands connect to the deployment's databases: they fail
	// at once when one does not answer, unless --wait says how long to
	// wait for it.
	oneShot bool
	flags   func(fs *flag.FlagSet, inv *invocation)
	run     func(inv *invocation) error
}

// group is a command made of subcommands (dlq).
type group struct {
	name    string
	summary string
	subs    []*command
}

// invocation is a parsed command line.
type invocation struct {
	cmd        *command
	positional []string
	ctx        context.Context
	stdout     io.Writer
	stderr     io.Writer

	configFile string
	wait       time.Duration
	topology   string        // run
	entity     string        // watch
	database   string        // migrate, watch, unwatch: a [[databases]] name
	dryRun     bool          // prune
	print      bool          // validate-config
	durable    durableFlags  // deliveries, resend
	timeout    time.Duration // healthcheck
	op         opFlags
}

const tableArg = "one table name (schema.table)"

// errHelp ends parsing when help was asked for (printed already).
var errHelp = errors.New("help requested")

func configFlag(fs *flag.FlagSet, inv *invocation) {
	fs.StringVar(&inv.configFile, "config", os.Getenv("FRAISEQL_CONFIG"), "read the configuration from `FILE` (TOML; default $FRAISEQL_CONFIG)")
}

func jsonFlag(fs *flag.FlagSet, inv *invocation) {
	fs.BoolVar(&inv.op.json, "json", false, "print JSON (the admin API's shapes)")
}

func databaseFlag(fs *flag.FlagSet, inv *invocation) {
	fs.StringVar(&inv.database, "database", "", "the [[databases]] entry `NAME` to work on (multi-database; default [database])")
}

// commandList is every command, in the order of the usage text. It is a
// function so that the commands' run functions may refer to it (help).
func commandList() []any {
	dlqID := func(name, summary, help string) *command {
		return &command{name: "dlq " + name, args: "ID", argsFor: "one dead-letter id", minArgs: 1, maxArgs: 1, oneShot: true, summary: summary, help: help,
			flags: func(fs *flag.FlagSet, inv *invocation) {
				if name != "remove" {
					jsonFlag(fs, inv)
				}
			},
			run: runDLQ}
	}
	observerFlag := func(fs *flag.FlagSet, inv *invocation, what string) {
		fs.StringVar(&inv.op.observer, "observer", "", "only dead letters of the observer `NAME` ("+what+")")
	}
	return []any{
		&command{name: "run", summary: "run the service (topology from the config or --topology)",
			help: "Runs the service until SIGINT or SIGTERM: reads the change log (or the bus) and runs the actions.\n" +
				"The configuration must have observers unless the process only bridges (role = \"bridge\").",
			flags: func(fs *flag.FlagSet, inv *invocation) {
				fs.StringVar(&inv.topology, "topology", "", "override the topology: `NAME` is one of "+strings.Join(config.TopologyNames(), ", "))
			},
			run: runService},
		&command{name: "migrate", oneShot: true, summary: "create or adapt the change-log table and the observer schema [--database NAME]",
			help: "Creates or adapts the change-log table, its trigger and the observer schema (checkpoints, dead letters, leases)\n" +
				"in [database], or with --database NAME in that [[databases]] entry (multi-database).",
			flags: databaseFlag, run: migrate},
		&command{name: "validate-config", summary: "load and check the configuration and observers, then exit",
			help: "Loads the configuration (--config FILE, then FRAISEQL_* variables) and the observers, checks them and every *_env\n" +
				"variable as run would, and prints a summary, or with --print the effective configuration (secrets redacted).",
			flags: func(fs *flag.FlagSet, inv *invocation) {
				fs.BoolVar(&inv.print, "print", false, "print the effective configuration (TOML), secrets redacted")
				fs.BoolVar(&inv.op.json, "json", false, "with --print: print it as JSON")
			},
			run: validateConfig},
		&command{name: "watch", args: "SCHEMA.TABLE", argsFor: tableArg, minArgs: 1, maxArgs: 1, oneShot: true,
			summary: "capture changes of an ordinary table [--entity NAME] [--database NAME]",
			help: "Installs a trigger that writes the table's inserts, updates and deletes to the change log.\nThe table needs a single-column primary key." +
				"\nIn the multi-database topology --database names the [[databases]] entry the table is in.",
			flags: func(fs *flag.FlagSet, inv *invocation) {
				fs.StringVar(&inv.entity, "entity", "", "entity type `NAME` of the captured events (default: the table name)")
				databaseFlag(fs, inv)
			},
			run: watch},
		&command{name: "unwatch", args: "SCHEMA.TABLE", argsFor: tableArg, minArgs: 1, maxArgs: 1, oneShot: true,
			summary: "stop capturing changes of a table [--database NAME]", help: "Removes the capture trigger installed by watch.",
			flags: databaseFlag, run: watch},
		&command{name: "status", oneShot: true, summary: "checkpoints, backlog, leases, dead letters, oldest open transaction [--json]",
			help:  "Prints each reader's checkpoint, its backlog and lease, the dead letters per observer and the age of the oldest open transaction.",
			flags: jsonFlag, run: status},
		&group{name: "dlq", summary: "the dead-letter queue: list, show, retry, retry-all, remove, stats", subs: []*command{
			{name: "dlq list", oneShot: true, summary: "list dead letters [--observer NAME] [--limit N] [--after ID] [--json]",
				help: "Lists dead letters in id order, a page at a time.",
				flags: func(fs *flag.FlagSet, inv *invocation) {
					jsonFlag(fs, inv)
					observerFlag(fs, inv, "default: all")
					fs.IntVar(&inv.op.limit, "limit", 0, "list at most `N` items (default 100, at most 1000)")
					fs.Int64Var(&inv.op.after, "after", 0, "list items with an id greater than `ID` (paging)")
				},
				run: runDLQ},
			dlqID("show", "one dead letter in full (event, error, attempts, raw input) [--json]",
				"Prints one dead letter in full: the event, the error, the attempts and, for inputs that never became events, the raw bytes."),
			dlqID("retry", "re-run that action once and print the real outcome [--json]",
				"Re-runs the parked action once with the configured observers and executors; on success the item is removed, on failure it stays (exit status 1)."),
			{name: "dlq retry-all", oneShot: true, summary: "re-run every dead letter [--observer NAME] [--json]",
				help: "Re-runs every dead letter (of one observer with --observer) and prints each outcome and a summary; exit status 1 unless all succeeded.",
				flags: func(fs *flag.FlagSet, inv *invocation) {
					jsonFlag(fs, inv)
					observerFlag(fs, inv, "default: all")
				},
				run: runDLQ},
			dlqID("remove", "delete a dead letter", "Deletes one dead letter."),
			{name: "dlq stats", oneShot: true, summary: "dead letters per observer [--json]",
				help: "Counts the dead letters per observer.", flags: jsonFlag, run: runDLQ},
		}},
		&command{name: "debug-event", args: "[FILE | -]", maxArgs: 1,
			summary: "dry-run an event (JSON) against the observers [--file F | -] [--json]",
			help:    "Reads one event envelope (JSON) from FILE, --file or standard input (-) and prints what every observer and action would do, without side effects.",
			flags: func(fs *flag.FlagSet, inv *invocation) {
				jsonFlag(fs, inv)
				fs.StringVar(&inv.op.file, "file", "", "read the event from `FILE` (- for standard input)")
			},
			run: debugEvent},
		&command{name: "replay", oneShot: true,
			summary: "move a reader's checkpoint back to re-process events since --since T [--reader NAME] [--json]",
			help:    "Moves a reader's checkpoint back to just before the first change-log row created at or after --since; it takes the reader's lease for the move.",
			flags: func(fs *flag.FlagSet, inv *invocation) {
				jsonFlag(fs, inv)
				fs.StringVar(&inv.op.since, "since", "", "re-process events created at or after `TIME` (RFC 3339, or a duration such as 2h meaning that long ago)")
				fs.StringVar(&inv.op.reader, "reader", "", "the reader (checkpoint `NAME`) to move (default: the configuration's only reader)")
			},
			run: replay},
		&command{name: "prune", oneShot: true, summary: "delete what [retention] lets go: old change-log rows, dead letters [--dry-run]",
			help: "Deletes, in small batches, the change-log rows behind every stored checkpoint and older than retention.change_log,\n" +
				"and the dead letters older than retention.dead_letters, printing progress and a final count.",
			flags: func(fs *flag.FlagSet, inv *invocation) {
				fs.BoolVar(&inv.dryRun, "dry-run", false, "count what would be deleted, delete nothing")
			},
			run: prune},
		&command{name: "healthcheck", summary: "ask the running service's /readyz: exit 0 when ready, 1 otherwise [--timeout D]",
			help: "Asks the running service's /readyz at http.listen (for container healthchecks): exit status 0 when ready,\n" +
				"1 when not ready or unreachable, 2 when http.listen is empty or port 0.",
			flags: func(fs *flag.FlagSet, inv *invocation) {
				fs.DurationVar(&inv.timeout, "timeout", 5*time.Second, "how long to wait for the answer (`DURATION`)")
			},
			run: healthcheck},
		durableCommands()[0], durableCommands()[1],
		&command{name: "version", summary: "print the version", help: "Prints the version, the Go version and the platform.", run: printVersion},
		&command{name: "help", args: "[COMMAND [SUBCOMMAND]]", maxArgs: 2, summary: "show the usage of a command",
			help: "Shows the usage of the command given, or of every command.", run: help},
	}
}

const usageHead = `fraiseql-observer turns PostgreSQL data changes into reliable actions.

Usage:
  fraiseql-observer <command> [flags] [arguments]
  fraiseql-observer <command> --help

Commands:
`

const usageTail = `
Every command reads --config FILE (default: $FRAISEQL_CONFIG), then
FRAISEQL_* environment variables (e.g. FRAISEQL_DATABASE_URL). Commands
that connect to the databases fail at once when one does not answer,
unless --wait DURATION says how long to wait for it.
Exit status: 0 ok, 1 runtime failure, 2 bad usage or configuration.
`

// writeUsage prints the list of commands.
func writeUsage(w io.Writer) {
	var b strings.Builder
	b.WriteString(usageHead)
	line := func(name, summary string) {
		if len(name) > 22 {
			fmt.Fprintf(&b, "  %s\n  %-22s %s\n", name, "", summary)
			return
		}
		fmt.Fprintf(&b, "  %-22s %s\n", name, summary)
	}
	for _, c := range commandList() {
		switch c := c.(type) {
		case *command:
			line(strings.TrimSpace(c.name+" "+c.args), c.summary)
		case *group:
			for _, s := range c.subs {
				line(strings.TrimSpace(s.name+" "+s.args), s.summary)
			}
		}
	}
	b.WriteString(usageTail)
	_, _ = io.WriteString(w, b.String())
}

// writeGroupUsage prints a group's subcommands.
func writeGroupUsage(w io.Writer, g *group) {
	fmt.Fprintf(w, "Usage:\n  fraiseql-observer %s <subcommand> [flags] [arguments]\n\n%s.\n\nSubcommands:\n", g.name, upperFirst(g.summary))
	for _, s := range g.subs {
		fmt.Fprintf(w, "  %-22s %s\n", strings.TrimSpace(s.name+" "+s.args), s.summary)
	}
	fmt.Fprintf(w, "\nRun 'fraiseql-observer %s <subcommand> --help' for its flags.\n", g.name)
}

// writeCommandUsage prints a command's synopsis, what it does and its
// flags.
func writeCommandUsage(w io.Writer, c *command) {
	fs, _ := newFlagSet(c)
	synopsis := strings.TrimSpace("fraiseql-observer " + c.name + " " + c.args)
	var b strings.Builder
	fmt.Fprintf(&b, "Usage:\n  %s [flags]\n\n%s\n\nFlags:\n", synopsis, c.help)
	fs.VisitAll(func(f *flag.Flag) {
		name, usage := flag.UnquoteUsage(f)
		spec := "--" + f.Name
		if name != "" {
			spec += " " + name
		}
		if !zeroDefault(f.DefValue) && !strings.Contains(usage, "default") {
			usage += " (default " + f.DefValue + ")"
		}
		fmt.Fprintf(&b, "  %s\n        %s\n", spec, usage)
	})
	b.WriteString("  -h, --help\n        show this help\n")
	_, _ = io.WriteString(w, b.String())
}

// zeroDefault reports whether a flag's default is its type's zero value,
// which the usage does not print.
func zeroDefault(v string) bool {
	switch v {
	case "", "0", "false", "0s":
		return true
	}
	return false
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// newFlagSet returns c's flags bound to a new invocation.
func newFlagSet(c *command) (*flag.FlagSet, *invocation) {
	inv := &invocation{cmd: c}
	fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported with the command's usage
	fs.Usage = func() {}
	configFlag(fs, inv)
	if c.flags != nil {
		c.flags(fs, inv)
	}
	if c.oneShot {
		fs.DurationVar(&inv.wait, "wait", 0, "wait up to `DURATION` for a database that does not answer (default: fail at once)")
	}
	return fs, inv
}

// lookup finds the command named by args (one word, or two for a group);
// rest is what follows the name. g is set when args name a group without
// a valid subcommand.
func lookup(args []string) (c *command, g *group, rest []string, err error) {
	for _, e := range commandList() {
		switch e := e.(type) {
		case *command:
			if e.name == args[0] {
				return e, nil, args[1:], nil
			}
		case *group:
			if e.name != args[0] {
				continue
			}
			if len(args) < 2 || strings.HasPrefix(args[1], "-") {
				return nil, e, args[1:], nil
			}
			for _, s := range e.subs {
				if s.name == e.name+" "+args[1] {
					return s, nil, args[2:], nil
				}
			}
			return nil, e, args[1:], usageErr("unknown %s subcommand %q", e.name, args[1])
		}
	}
	return nil, nil, nil, usageErr("unknown command %q", args[0])
}

// isHelp reports whether arg asks for help.
func isHelp(arg string) bool {
	return arg == "-h" || arg == "--help" || arg == "-help"
}

// parseArgs parses a command line (without the program name) into an
// invocation. Help asked for is printed on stdout and reported as errHelp;
// a usage error is printed (with the usage of what was named) on stderr
// and returned as an *exitError with status 2.
func parseArgs(args []string, stdout, stderr io.Writer) (*invocation, error) {
	if len(args) == 0 {
		writeUsage(stderr)
		return nil, usageErr("no command given")
	}
	switch {
	case isHelp(args[0]):
		writeUsage(stdout)
		return nil, errHelp
	case args[0] == "--version" || args[0] == "-version":
		if len(args) > 1 { // as `version extra` is refused
			writeUsage(stderr)
			return nil, usageErr("%s takes no arguments, got %q", args[0], args[1:])
		}
		return &invocation{cmd: &command{name: "version", run: printVersion}, stdout: stdout, stderr: stderr}, nil
	}
	c, g, rest, err := lookup(args)
	switch {
	case err != nil && g != nil:
		fmt.Fprintln(stderr)
		writeGroupUsage(stderr, g)
		return nil, err
	case err != nil:
		writeUsage(stderr)
		return nil, err
	case g != nil && len(rest) > 0 && isHelp(rest[0]):
		writeGroupUsage(stdout, g)
		return nil, errHelp
	case g != nil:
		writeGroupUsage(stderr, g)
		return nil, usageErr("%s needs a subcommand", g.name)
	}
	fs, inv := newFlagSet(c)
	inv.stdout, inv.stderr = stdout, stderr
	positional, err := parseInterspersed(fs, rest)
	if errors.Is(err, flag.ErrHelp) {
		writeCommandUsage(stdout, c)
		return nil, errHelp
	}
	if err == nil {
		err = checkArgs(c, positional)
	}
	if err != nil {
		writeCommandUsage(stderr, c)
		var ee *exitError
		if !errors.As(err, &ee) {
			err = usageErr("%s: %v", c.name, err)
		}
		return nil, err
	}
	inv.positional = positional
	return inv, nil
}

// checkArgs refuses a number of positional arguments c does not take.
func checkArgs(c *command, positional []string) error {
	n := len(positional)
	switch {
	case n >= c.minArgs && n <= c.maxArgs:
		return nil
	case c.maxArgs == 0:
		hint := ""
		if c.name == "run" || c.name == "validate-config" {
			hint = " (the configuration file is --config FILE)"
		}
		return usageErr("%s takes no arguments%s, got %q", c.name, hint, positional)
	case c.minArgs == c.maxArgs:
		return usageErr("%s takes %s, got %d arguments", c.name, cmp.Or(c.argsFor, c.args), n)
	default:
		return usageErr("%s takes at most %d arguments (%s), got %q", c.name, c.maxArgs, c.args, positional)
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

// help prints the usage of the command named by the arguments, or of
// every command.
func help(inv *invocation) error {
	if len(inv.positional) == 0 {
		writeUsage(inv.stdout)
		return nil
	}
	c, g, rest, err := lookup(inv.positional)
	switch {
	case err != nil && g != nil: // an unknown subcommand: the group's list
		writeGroupUsage(inv.stderr, g)
		return err
	case err != nil: // an unknown command: the list, as without help
		writeUsage(inv.stderr)
		return err
	case g != nil && len(rest) == 0:
		writeGroupUsage(inv.stdout, g)
		return nil
	case len(rest) > 0:
		return usageErr("help: unexpected %q", rest)
	}
	writeCommandUsage(inv.stdout, c)
	return nil
}
