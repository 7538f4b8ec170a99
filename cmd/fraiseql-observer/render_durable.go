package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/fraiseql/fraiseql-observer/ports"
)

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
