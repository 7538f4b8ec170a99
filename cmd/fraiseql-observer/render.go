package main

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/fraiseql/fraiseql-observer/application/admin"
)

// This file renders the operator commands' results: text for a person, or
// with --json the report types as JSON (the admin API's shapes).

// writeStatus prints rep as text, or as JSON when asJSON.
func writeStatus(w io.Writer, rep admin.StatusReport, asJSON bool) error {
	if asJSON {
		return writeJSON(w, rep)
	}
	fmt.Fprintf(w, "topology: %s\n", rep.Topology)
	for _, d := range rep.Databases {
		fmt.Fprintf(w, "\n%s (%s), database time %s\n", d.Name, d.URL, d.Now.UTC().Format(time.RFC3339))
		if len(d.Checkpoints) == 0 {
			fmt.Fprintln(w, "  checkpoints: none (no reader runs against this database)")
		} else {
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "  CHECKPOINT\tPOSITION\tUPDATED\tBACKLOG\tLEASE")
			for _, c := range d.Checkpoints {
				name := c.Name
				if !c.Configured {
					name += " (not in this configuration)"
				}
				pos, updated := "none (reads from the start)", "-"
				if c.Stored {
					pos = c.Position.String()
					updated = c.UpdatedAt.UTC().Format(time.RFC3339) + " (" + ago(d.Now.Sub(*c.UpdatedAt)) + ")"
				}
				fmt.Fprintf(tw, "  %s\t%s\t%s\t%d\t%s\n", name, pos, updated, c.Backlog, leaseText(c.Lease, d.Now))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
		}
		fmt.Fprintf(w, "  dead letters: %d", d.DeadLetterTotal)
		if d.DeadLetterTotal > 0 {
			parts := make([]string, 0, len(d.DeadLetters))
			for _, obs := range slices.Sorted(maps.Keys(d.DeadLetters)) {
				label := obs
				if label == "" {
					label = "(inputs that were not events)"
				}
				parts = append(parts, fmt.Sprintf("%s: %d", label, d.DeadLetters[obs]))
			}
			fmt.Fprintf(w, " (%s)", strings.Join(parts, ", "))
		}
		fmt.Fprintln(w)
		writeDurable(w, d)
		if d.OldestTxnSeconds > 0 {
			fmt.Fprintf(w, "  oldest open transaction: %s (readers cannot pass rows of younger transactions until it ends)\n",
				time.Duration(d.OldestTxnSeconds*float64(time.Second)).Round(time.Millisecond))
		} else {
			fmt.Fprintln(w, "  oldest open transaction: none")
		}
	}
	return nil
}

func leaseText(l admin.LeaseStatus, now time.Time) string {
	switch {
	case l.Holder == "":
		return "free"
	case !l.Active:
		return fmt.Sprintf("free (expired %s ago, last held by %s)", now.Sub(*l.ExpiresAt).Round(time.Second), l.Holder)
	default:
		return fmt.Sprintf("held by %s until %s (in %s)", l.Holder, l.ExpiresAt.UTC().Format(time.RFC3339), l.ExpiresAt.Sub(now).Round(time.Second))
	}
}

func ago(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	return d.Round(time.Second).String() + " ago"
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// writeDeadLetters prints a listing as a table, or JSON.
func writeDeadLetters(w io.Writer, items []admin.DeadLetterView, limit int, asJSON bool) error {
	next, more := admin.NextAfter(items, limit)
	if asJSON { // GET /dlq's shape, next_after included
		brief := make([]admin.DeadLetterView, len(items))
		for i, d := range items {
			brief[i] = d.Brief()
		}
		out := map[string]any{"items": brief}
		if more {
			out["next_after"] = next
		}
		return writeJSON(w, out)
	}
	if len(items) == 0 {
		_, err := fmt.Fprintln(w, "no dead letters")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tCREATED\tOBSERVER\tACTION\tEVENT\tATTEMPTS\tERROR")
	for _, d := range items {
		obs, act := d.Observer, d.Action
		if obs == "" {
			obs, act = "(input)", "-"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%d\t%s\n", d.ID, d.CreatedAt.UTC().Format(time.RFC3339), obs, act,
			cmp.Or(d.EventID, "-"), d.Attempts, shorten(d.Error, 80))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if more {
		fmt.Fprintf(w, "(%d shown; more may follow: --after %d)\n", len(items), next)
	}
	return nil
}

// writeDeadLetter prints one dead letter in full, or JSON.
func writeDeadLetter(w io.Writer, d admin.DeadLetterView, asJSON bool) error {
	if asJSON {
		return writeJSON(w, d)
	}
	fmt.Fprintf(w, "dead letter %d\n", d.ID)
	if d.Observer == "" {
		fmt.Fprintln(w, "  kind:        input that could not become an event (not retryable)")
	} else {
		fmt.Fprintf(w, "  observer:    %s\n  action:      %s (%s)\n", d.Observer, d.Action, d.ActionType)
	}
	fmt.Fprintf(w, "  event id:    %s\n  attempts:    %d\n  created:     %s\n", cmp.Or(d.EventID, "-"), d.Attempts, d.CreatedAt.UTC().Format(time.RFC3339Nano))
	if d.LastRetryAt != nil {
		fmt.Fprintf(w, "  last retry:  %s\n", d.LastRetryAt.UTC().Format(time.RFC3339Nano))
	}
	fmt.Fprintf(w, "  error:       %s\n", d.Error)
	if d.Event != nil {
		b, err := json.MarshalIndent(d.Event, "  ", "  ")
		if err != nil {
			return fmt.Errorf("encode event: %w", err)
		}
		fmt.Fprintf(w, "  event:\n  %s\n", b)
	}
	if d.Raw != "" {
		fmt.Fprintf(w, "  raw (%s):\n  %s\n", d.RawEncoding, d.Raw)
	}
	return nil
}

// writeDeadLetterStats prints counts per observer, or JSON.
func writeDeadLetterStats(w io.Writer, st admin.DeadLetterStats, asJSON bool) error {
	if asJSON {
		return writeJSON(w, st)
	}
	fmt.Fprintf(w, "dead letters: %d\n", st.Total)
	for _, obs := range slices.Sorted(maps.Keys(st.ByObserver)) {
		label := obs
		if label == "" {
			label = "(inputs that were not events)"
		}
		fmt.Fprintf(w, "  %s: %d\n", label, st.ByObserver[obs])
	}
	return nil
}

// writeRetryResult prints one retry outcome, or JSON.
func writeRetryResult(w io.Writer, r admin.RetryResult, asJSON bool) error {
	if asJSON {
		return writeJSON(w, r)
	}
	_, err := fmt.Fprintln(w, retryLine(r))
	return err
}

func retryLine(r admin.RetryResult) string {
	switch r.Status {
	case admin.RetrySucceeded:
		return fmt.Sprintf("dead letter %d (%s/%s, event %s): succeeded, removed", r.ID, r.Observer, r.Action, r.EventID)
	case admin.RetryFailed:
		return fmt.Sprintf("dead letter %d (%s/%s, event %s): failed again, kept: %s", r.ID, r.Observer, r.Action, r.EventID, r.Error)
	default:
		return fmt.Sprintf("dead letter %d: not retryable: %s", r.ID, r.Error)
	}
}

// writeRetryReport prints each outcome and the summary line "N succeeded,
// M failed, K not retryable", or JSON.
func writeRetryReport(w io.Writer, rep admin.RetryReport, asJSON bool) error {
	if asJSON {
		return writeJSON(w, rep)
	}
	for _, r := range rep.Results {
		fmt.Fprintln(w, retryLine(r))
	}
	if rep.Omitted > 0 {
		fmt.Fprintf(w, "(%d more outcomes not listed: the first %d are)\n", rep.Omitted, len(rep.Results))
	}
	_, err := fmt.Fprintf(w, "%d succeeded, %d failed, %d not retryable\n", rep.Succeeded, rep.Failed, rep.NotRetryable)
	return err
}

func shorten(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// writeReplay prints what Replay did, or JSON.
func writeReplay(w io.Writer, r admin.ReplayResult, asJSON bool) error {
	if asJSON {
		return writeJSON(w, r)
	}
	if !r.Moved {
		pos := "none"
		if r.OldStored {
			pos = r.Old.String()
		}
		_, err := fmt.Fprintf(w, "reader %s (%s): checkpoint unchanged at %s: %s\n", r.Reader, r.Database, pos, r.Reason)
		return err
	}
	fmt.Fprintf(w, "reader %s (%s): checkpoint moved from %s to %s (first row created at or after %s)\n",
		r.Reader, r.Database, r.Old, r.New, r.Since.UTC().Format(time.RFC3339))
	fmt.Fprintf(w, "%d row(s) will be read again; %d row(s) lie after the new checkpoint in total\n", r.Reread, r.Backlog)
	if r.Dedup != "" {
		fmt.Fprintln(w, "note: "+r.Dedup)
	}
	return nil
}

// writeDebugReport prints the dry run, or JSON.
func writeDebugReport(w io.Writer, r admin.DebugReport, asJSON bool) error {
	if asJSON {
		return writeJSON(w, r)
	}
	ev := r.Event
	fmt.Fprintf(w, "event %s: %s %s %s\n", ev.ID, ev.EventType, ev.EntityType, ev.EntityID)
	if r.ChangesComputed {
		fmt.Fprintf(w, "  changes computed from before and data: %s\n", strings.Join(slices.Sorted(maps.Keys(ev.Changes)), ", "))
	}
	if len(r.Matched) == 0 {
		fmt.Fprintln(w, "no observer matches this entity and event kind")
	}
	for _, o := range r.Matched {
		verdict := "actions would run"
		if !o.Result {
			verdict = "actions would NOT run"
		}
		fmt.Fprintf(w, "\nobserver %s: matches\n", o.Name)
		if o.Condition == "" {
			fmt.Fprintf(w, "  condition: (none) => true, %s\n", verdict)
		} else {
			fmt.Fprintf(w, "  condition: %s => %v, %s\n", o.Condition, o.Result, verdict)
			for _, t := range o.Trace[1:] {
				fmt.Fprintf(w, "    %s%s  => %s\n", strings.Repeat("  ", t.Depth-1), t.Expr, traceValue(t.Value))
			}
		}
		for _, a := range o.Actions {
			writeDebugAction(w, a)
		}
	}
	if len(r.NotMatched) > 0 {
		fmt.Fprintln(w, "\nnot matching:")
		for _, s := range r.NotMatched {
			fmt.Fprintf(w, "  %s: %s\n", s.Name, s.Reason)
		}
	}
	return nil
}

func traceValue(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

func writeDebugAction(w io.Writer, a admin.DebugAction) {
	fmt.Fprintf(w, "  action %s (%s):\n", a.Name, a.Type)
	for _, l := range a.Lines {
		fmt.Fprintf(w, "    %s\n", l)
	}
	if len(a.Lines) == 0 {
		fmt.Fprintln(w, "    (no dry-run rendering for this action type)")
	}
	if len(a.Missing) > 0 {
		fmt.Fprintf(w, "    missing placeholders: %s\n", strings.Join(a.Missing, ", "))
	}
	if a.Problem != "" {
		fmt.Fprintf(w, "    problem: %s\n", a.Problem)
	}
}
