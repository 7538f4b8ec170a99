package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/fraiseql/fraiseql-observer/application/admin"
	"github.com/fraiseql/fraiseql-observer/bootstrap/operate"
)

// The durable-delivery commands: deliveries (and resend).

// durableFlags are the flags of deliveries and resend.
type durableFlags struct {
	json     bool
	event    string
	observer string
	action   string
	endpoint string
	status   string
	since    string
	until    string
	limit    int
	before   int64
}

// durableCommands are the delivery log's and resend's entries of the
// command table.
func durableCommands() []any {
	return []any{
		&command{name: "deliveries", oneShot: true,
			summary: "attempts of the delivery log [--event ID] [--observer NAME] [--endpoint E] [--status S] [--since T] [--until T] [--json]",
			help: "Lists the delivery log's attempts, newest first, a page at a time (delivery.log = \"failures\" records failed\n" +
				"attempts only; \"all\" every attempt).",
			flags: func(fs *flag.FlagSet, inv *invocation) {
				f := &inv.durable
				fs.BoolVar(&f.json, "json", false, "print JSON (the admin API's shapes)")
				fs.StringVar(&f.event, "event", "", "only attempts for the event `ID`")
				fs.StringVar(&f.observer, "observer", "", "only attempts of the observer `NAME`")
				fs.StringVar(&f.endpoint, "endpoint", "", "only attempts to the `ENDPOINT` (scheme://host:port, as status and the admin API name it)")
				fs.StringVar(&f.status, "status", "", "only attempts with this `STATUS`: ok, failed, or an HTTP status code")
				fs.StringVar(&f.since, "since", "", "only attempts at or after `TIME` (RFC 3339, or a duration such as 2h meaning that long ago)")
				fs.StringVar(&f.until, "until", "", "only attempts before `TIME` (RFC 3339, or a duration meaning that long ago)")
				fs.IntVar(&f.limit, "limit", 0, "print at most `N` attempts (default 100, at most 1000)")
				fs.Int64Var(&f.before, "before", 0, "print attempts with an id smaller than `ID` (paging)")
			},
			run: deliveries},
		&command{name: "resend", args: "EVENT_ID", argsFor: "one event id", minArgs: 1, maxArgs: 1, oneShot: true,
			summary: "re-run the actions of a delivered event [--observer NAME] [--action NAME] [--json]",
			help: "Re-runs the actions of an already delivered event (read from the change log by id), past dedup and the\n" +
				"result cache, and records each attempt in the delivery log; exit status 1 unless every action succeeded.",
			flags: func(fs *flag.FlagSet, inv *invocation) {
				f := &inv.durable
				fs.BoolVar(&f.json, "json", false, "print JSON (the admin API's shapes)")
				fs.StringVar(&f.observer, "observer", "", "only the actions of the observer `NAME`")
				fs.StringVar(&f.action, "action", "", "only the action `NAME` (its name or identity)")
			},
			run: resend},
	}
}

func deliveries(inv *invocation) error {
	f := inv.durable
	q := admin.DeliveryQuery{EventID: f.event, Observer: f.observer, Endpoint: f.endpoint, Status: f.status, Limit: f.limit, Before: f.before}
	now := time.Now()
	for _, t := range []struct {
		name, val string
		dst       *time.Time
	}{{"--since", f.since, &q.Since}, {"--until", f.until, &q.Until}} {
		if t.val == "" {
			continue
		}
		at, err := admin.ParseSince(t.val, now)
		if err != nil {
			return usageErr("%s %v", t.name, err)
		}
		*t.dst = at
	}
	if f.limit < 0 || f.before < 0 {
		return usageErr("deliveries: --limit and --before must not be negative")
	}
	if err := q.Check(); err != nil { // before connecting (or waiting, with --wait)
		return usageErr("deliveries: --%v", err)
	}
	return withOperator(inv, func(ctx context.Context, o *operate.Operator) error {
		page, err := o.Durable().Deliveries(ctx, q)
		if err != nil {
			return err
		}
		return writeDeliveries(inv.stdout, page, f.json)
	})
}

// writeDeliveries prints a page of the delivery log as a table, or JSON.
func writeDeliveries(w io.Writer, page admin.DeliveryPage, asJSON bool) error {
	if asJSON {
		return writeJSON(w, page)
	}
	if len(page.Deliveries) == 0 {
		_, err := fmt.Fprintln(w, "no attempt recorded matches (delivery.log = \"failures\", the default, records failed attempts only; \"off\" none)")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tAT\tEVENT\tOBSERVER/ACTION\tENDPOINT\tATTEMPT\tTRIGGER\tOUTCOME\tSTATUS\tLATENCY\tERROR")
	for _, d := range page.Deliveries {
		status := "-"
		if d.StatusCode != 0 {
			status = fmt.Sprint(d.StatusCode)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s/%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n", d.ID, d.At.UTC().Format(time.RFC3339Nano), d.EventID,
			d.Observer, d.Action, d.Endpoint, d.Attempt, d.Trigger, d.Outcome, status, d.Latency.Round(time.Microsecond), oneLine(d.Error, 120))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if page.NextBefore != 0 {
		fmt.Fprintf(w, "more: --before %d\n", page.NextBefore)
	}
	return nil
}

// oneLine shortens s to n runes on one line.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

func resend(inv *invocation) error {
	f := inv.durable
	req := admin.ResendRequest{EventID: inv.positional[0], Observer: f.observer, Action: f.action}
	return withOperator(inv, func(ctx context.Context, o *operate.Operator) error {
		rep, err := o.Durable().Resend(ctx, req)
		if err != nil {
			return err
		}
		if err := writeResend(inv.stdout, rep, f.json); err != nil {
			return err
		}
		if !rep.OK() {
			return fmt.Errorf("resend of %s: %d succeeded, %d failed", rep.EventID, rep.Succeeded, rep.Failed)
		}
		return nil
	})
}

// writeResend prints what a resend did, or JSON.
func writeResend(w io.Writer, rep admin.ResendReport, asJSON bool) error {
	if asJSON {
		return writeJSON(w, rep)
	}
	fmt.Fprintf(w, "event %s (from %s)\n", rep.EventID, rep.Store)
	for _, r := range rep.Results {
		switch {
		case r.Skipped != "":
			fmt.Fprintf(w, "  %s/%s: skipped (%s)\n", r.Observer, r.Action, r.Skipped)
		case r.Succeeded:
			fmt.Fprintf(w, "  %s/%s: succeeded\n", r.Observer, r.Action)
		default:
			fmt.Fprintf(w, "  %s/%s: failed: %s\n", r.Observer, r.Action, oneLine(r.Error, 200))
		}
	}
	_, err := fmt.Fprintf(w, "%d succeeded, %d failed, %d skipped\n", rep.Succeeded, rep.Failed, rep.Skipped)
	return err
}
