package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/fraiseql/fraiseql-observer/application/admin"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// writeDurable prints the parked retries and the endpoints' circuits of
// one store's status.
func writeDurable(w io.Writer, d admin.DatabaseStatus) {
	writeParked(w, d.ParkedRetries)
	for _, e := range d.Endpoints {
		fmt.Fprintf(w, "  endpoint %s: %s since %s", e.Endpoint, e.State, e.Since.UTC().Format(time.RFC3339))
		if e.State != "closed" {
			fmt.Fprintf(w, ", %d consecutive failures", e.ConsecutiveFailures)
			if e.NextProbe != nil {
				fmt.Fprintf(w, ", next probe %s", e.NextProbe.UTC().Format(time.RFC3339))
			}
			if e.LastError != "" {
				fmt.Fprintf(w, ", last error: %s", oneLine(e.LastError, 120))
			}
		}
		fmt.Fprintf(w, " (reported by %s at %s)\n", e.Holder, e.ReportedAt.UTC().Format(time.RFC3339))
	}
}

// writeParked prints the parked retries of a status report.
func writeParked(w io.Writer, c *ports.RetryCounts) {
	if c == nil {
		return
	}
	fmt.Fprintf(w, "  parked retries: %d due, %d waiting behind an earlier event of their entity", c.Due, c.Waiting)
	if !c.OldestFailure.IsZero() {
		fmt.Fprintf(w, "; oldest first failure %s", c.OldestFailure.UTC().Format(time.RFC3339))
	}
	fmt.Fprintln(w)
	for _, part := range []struct {
		label string
		m     map[string]int64
	}{{"by observer", c.ByObserver}, {"by endpoint", c.ByEndpoint}} {
		if len(part.m) == 0 {
			continue
		}
		items := make([]string, 0, len(part.m))
		for _, k := range slices.Sorted(maps.Keys(part.m)) {
			items = append(items, fmt.Sprintf("%s: %d", k, part.m[k]))
		}
		fmt.Fprintf(w, "    %s: %s\n", part.label, strings.Join(items, ", "))
	}
}
