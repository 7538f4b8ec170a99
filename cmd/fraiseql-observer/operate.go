package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/fraiseql/fraiseql-observer/application/admin"
	"github.com/fraiseql/fraiseql-observer/bootstrap/actions"
	"github.com/fraiseql/fraiseql-observer/bootstrap/config"
	"github.com/fraiseql/fraiseql-observer/bootstrap/operate"
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

// withOperator opens the configuration's databases for one operator
// command (waiting for them first with --wait) and runs f.
func withOperator(inv *invocation, f func(ctx context.Context, o *operate.Operator) error) error {
	cfg, logger, err := prepare(inv)
	if err != nil {
		return err
	}
	o, err := operate.Open(inv.ctx, cfg, operate.Options{Logger: logger})
	if err != nil {
		return withFile(err, inv.configFile)
	}
	defer o.Close()
	return withFile(f(inv.ctx, o), inv.configFile)
}

func runDLQ(inv *invocation) error {
	sub := strings.TrimPrefix(inv.cmd.name, "dlq ")
	op, stdout := inv.op, inv.stdout
	var id int64
	if inv.cmd.minArgs == 1 {
		n, err := strconv.ParseInt(inv.positional[0], 10, 64)
		if err != nil || n < 1 {
			return usageErr("dlq %s: %q is not a dead-letter id (a positive integer)", sub, inv.positional[0])
		}
		id = n
	}
	if op.limit < 0 || op.after < 0 {
		return usageErr("dlq list: --limit and --after must not be negative")
	}
	return withOperator(inv, func(ctx context.Context, o *operate.Operator) error {
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
			// Progress on stderr (stdout may be --json), at most every 2s.
			last := time.Now()
			rep, err := d.RetryAllProgress(ctx, op.observer, func(r admin.RetryReport) {
				if time.Since(last) >= 2*time.Second {
					last = time.Now()
					fmt.Fprintf(inv.stderr, "retried %d dead letters so far: %d succeeded, %d failed, %d not retryable\n",
						r.Total(), r.Succeeded, r.Failed, r.NotRetryable)
				}
			})
			if err != nil {
				if rep.Total() > 0 { // what was done before the stop
					if werr := writeRetryReport(stdout, rep, op.json); werr != nil {
						return errors.Join(err, werr)
					}
				}
				return err
			}
			if err := writeRetryReport(stdout, rep, op.json); err != nil {
				return err
			}
			if !rep.OK() {
				return fmt.Errorf("%d of %d dead letters did not succeed", rep.Failed+rep.NotRetryable, rep.Total())
			}
			return nil
		}
	})
}

func debugEvent(inv *invocation) error {
	positional, op, stdout := inv.positional, inv.op, inv.stdout
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
		const maxInput = 16 << 20
		input, err = io.ReadAll(io.LimitReader(stdin, maxInput+1))
		if err == nil && len(input) > maxInput {
			err = fmt.Errorf("standard input is over %d MiB: one event is expected", maxInput>>20)
		}
	} else {
		input, err = os.ReadFile(src)
	}
	if err != nil {
		return usageErr("debug-event: read event: %v", err)
	}
	cfg, err := loadConfig(inv.configFile)
	if err != nil {
		return err
	}
	rep, err := actions.DebugEvent(cfg, os.LookupEnv, input)
	if err != nil {
		if _, ok := err.(*config.ConfigError); ok {
			return err
		}
		return &exitError{code: 2, err: fmt.Errorf("debug-event: %w", err)}
	}
	return writeDebugReport(stdout, rep, op.json)
}

// prune applies [retention] once, printing each batch and a final count.
func prune(inv *invocation) error {
	out := inv.stdout
	return withOperator(inv, func(ctx context.Context, o *operate.Operator) error {
		rep, err := o.Prune(ctx, inv.dryRun, func(p admin.PruneProgress) {
			where := p.Table + " (" + p.Where + ")"
			switch {
			case p.Note != "":
				fmt.Fprintf(out, "%s: %s\n", where, p.Note)
			case inv.dryRun:
				fmt.Fprintf(out, "%s: %d rows would be deleted\n", where, p.Total)
			case p.Done:
				fmt.Fprintf(out, "%s: %d rows deleted\n", where, p.Total)
			default:
				fmt.Fprintf(out, "%s: deleted %d rows, %d so far\n", where, p.Batch, p.Total)
			}
		})
		if err != nil {
			return err
		}
		if rep.DryRun {
			_, err = fmt.Fprintf(out, "dry run: %d rows would be pruned, nothing was deleted\n", rep.Total)
		} else {
			_, err = fmt.Fprintf(out, "pruned %d rows\n", rep.Total)
		}
		return err
	})
}
