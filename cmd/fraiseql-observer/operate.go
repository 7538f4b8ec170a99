package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/fraiseql/fraiseql-observer/application/admin"
	"github.com/fraiseql/fraiseql-observer/bootstrap"
	"github.com/fraiseql/fraiseql-observer/bootstrap/config"
)

// stdin is where debug-event reads "-" (a variable so tests can replace it).
var stdin io.Reader = os.Stdin

// opFlags are the flags of the operator commands.
type opFlags struct {
	json     bool
	observer string
	limit    int
	after    int64
	file     string
	since    string
	reader   string
}

func (f *opFlags) register(fs *flag.FlagSet, cmd string) {
	fs.BoolVar(&f.json, "json", false, "print JSON")
	switch cmd {
	case "dlq":
		fs.StringVar(&f.observer, "observer", "", "only dead letters of this observer (list, retry-all)")
		fs.IntVar(&f.limit, "limit", 0, "list at most N items (default 100)")
		fs.Int64Var(&f.after, "after", 0, "list items with an id greater than ID (paging)")
	case "debug-event":
		fs.StringVar(&f.file, "file", "", "read the event from this file (- for standard input)")
	case "replay":
		fs.StringVar(&f.since, "since", "", "re-process events created at or after this time (RFC 3339, or a duration such as 2h)")
		fs.StringVar(&f.reader, "reader", "", "the reader (checkpoint name) to move (default: the configuration's only reader)")
	}
}

// withOperator opens the configuration's databases for one operator
// command.
func withOperator(ctx context.Context, file string, stderr io.Writer, f func(o *bootstrap.Operator) error) error {
	cfg, err := loadConfig(file)
	if err != nil {
		return err
	}
	logger := bootstrap.NewLogger(stderr, cfg.Logging.Level, cfg.Logging.Format)
	o, err := bootstrap.OpenOperator(ctx, cfg, bootstrap.Options{Logger: logger})
	if err != nil {
		return withFile(err, file)
	}
	defer o.Close()
	return withFile(f(o), file)
}

// dlqFlags lists the flags each dlq subcommand accepts (besides --config).
var dlqFlags = map[string][]string{
	"list":      {"json", "observer", "limit", "after"},
	"show":      {"json"},
	"retry":     {"json"},
	"retry-all": {"json", "observer"},
	"remove":    {},
	"stats":     {"json"},
}

func dlq(ctx context.Context, file string, fs *flag.FlagSet, positional []string, op opFlags, stdout, stderr io.Writer) error {
	if len(positional) == 0 {
		return usageErr("dlq needs a subcommand: list, show ID, retry ID, retry-all, remove ID or stats")
	}
	sub, rest := positional[0], positional[1:]
	allowed, ok := dlqFlags[sub]
	if !ok {
		return usageErr("unknown dlq subcommand %q (list, show, retry, retry-all, remove, stats)", sub)
	}
	var bad error
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "config" || bad != nil {
			return
		}
		for _, a := range allowed {
			if a == f.Name {
				return
			}
		}
		bad = usageErr("dlq %s does not take --%s", sub, f.Name)
	})
	if bad != nil {
		return bad
	}
	var id int64
	switch sub {
	case "show", "retry", "remove":
		if len(rest) != 1 {
			return usageErr("dlq %s takes one dead-letter id, got %d arguments", sub, len(rest))
		}
		n, err := strconv.ParseInt(rest[0], 10, 64)
		if err != nil || n < 1 {
			return usageErr("dlq %s: %q is not a dead-letter id (a positive integer)", sub, rest[0])
		}
		id = n
	default:
		if len(rest) != 0 {
			return usageErr("dlq %s takes no arguments, got %q", sub, rest)
		}
	}
	if op.limit < 0 || op.after < 0 {
		return usageErr("dlq list: --limit and --after must not be negative")
	}
	return withOperator(ctx, file, stderr, func(o *bootstrap.Operator) error {
		d, err := o.DeadLetters()
		if err != nil {
			return err
		}
		switch sub {
		case "list":
			items, err := d.List(ctx, admin.DeadLetterQuery{Observer: op.observer, Limit: op.limit, AfterID: op.after})
			if err != nil {
				return err
			}
			return writeDeadLetters(stdout, items, op.limit, op.json)
		case "show":
			d, err := d.Get(ctx, id)
			if err != nil {
				return err
			}
			return writeDeadLetter(stdout, d, op.json)
		case "remove":
			if err := d.Remove(ctx, id); err != nil {
				return err
			}
			_, err := fmt.Fprintf(stdout, "dead letter %d removed\n", id)
			return err
		case "stats":
			st, err := d.Stats(ctx)
			if err != nil {
				return err
			}
			return writeDeadLetterStats(stdout, st, op.json)
		case "retry":
			res, err := d.Retry(ctx, id)
			if err != nil {
				return err
			}
			if err := writeRetryResult(stdout, res, op.json); err != nil {
				return err
			}
			switch res.Status {
			case admin.RetrySucceeded:
				return nil
			case admin.RetryFailed:
				return fmt.Errorf("dead letter %d failed again: %s", id, res.Error)
			default:
				return fmt.Errorf("dead letter %d cannot be retried: %s", id, res.Error)
			}
		default: // retry-all
			rep, err := d.RetryAll(ctx, op.observer)
			if err != nil {
				return err
			}
			if err := writeRetryReport(stdout, rep, op.json); err != nil {
				return err
			}
			if !rep.OK() {
				return fmt.Errorf("%d of %d dead letters did not succeed", rep.Failed+rep.NotRetryable, len(rep.Results))
			}
			return nil
		}
	})
}

func debugEvent(file string, positional []string, op opFlags, stdout io.Writer) error {
	src := op.file
	switch {
	case len(positional) == 1 && src == "":
		src = positional[0]
	case len(positional) > 0:
		return usageErr("debug-event reads one event: --file F, or - for standard input")
	case src == "":
		src = "-"
	}
	var (
		input []byte
		err   error
	)
	if src == "-" {
		input, err = io.ReadAll(io.LimitReader(stdin, 16<<20))
	} else {
		input, err = os.ReadFile(src)
	}
	if err != nil {
		return usageErr("debug-event: read event: %v", err)
	}
	cfg, err := loadConfig(file)
	if err != nil {
		return err
	}
	rep, err := bootstrap.DebugEvent(cfg, os.LookupEnv, input)
	if err != nil {
		if _, ok := err.(*config.ConfigError); ok {
			return err
		}
		return &exitError{code: 2, err: fmt.Errorf("debug-event: %w", err)}
	}
	return writeDebugReport(stdout, rep, op.json)
}
