package main

import (
	"fmt"
	"maps"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// percentile returns the nearest-rank p-th percentile (0 < p <= 1) of
// sorted, 0 for none.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// latencySummary is p50, p99 and max of a set of latencies, in ms.
type latencySummary struct{ P50, P99, Max float64 }

func summarize(lat []time.Duration) latencySummary {
	s := slices.Clone(lat)
	slices.Sort(s)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	return latencySummary{P50: ms(percentile(s, 0.50)), P99: ms(percentile(s, 0.99)), Max: ms(percentile(s, 1))}
}

// sinceCommit is each delivered row's first arrival minus the time its
// insert returned, for the rows written that arrived. An arrival before
// the writer saw its own commit's answer (the writer's goroutine ran late)
// counts as 0: the commit was visible, the delivery was at least that
// quick.
func sinceCommit(arrived map[string]time.Time, rows map[string]written) []time.Duration {
	lat := make([]time.Duration, 0, len(rows))
	for id, w := range rows {
		if got, ok := arrived[id]; ok {
			lat = append(lat, max(got.Sub(w.Committed), 0))
		}
	}
	return lat
}

// commitTimes is each row's insert-and-commit time, as the writer saw it.
func commitTimes(rows map[string]written) []time.Duration {
	d := make([]time.Duration, 0, len(rows))
	for _, w := range rows {
		d = append(d, w.Committed.Sub(w.Start))
	}
	return d
}

// writeTrace writes rows to path as CSV, in the order the inserts
// started: id, the Unix ns of the insert's start, of its return and of
// the row's first arrival (empty when it never arrived).
func writeTrace(path string, rows map[string]written, arrived map[string]time.Time) error {
	ids := slices.SortedFunc(maps.Keys(rows), func(a, b string) int { return rows[a].Start.Compare(rows[b].Start) })
	var b strings.Builder
	b.WriteString("id,start_ns,committed_ns,arrived_ns\n")
	for _, id := range ids {
		w := rows[id]
		fmt.Fprintf(&b, "%s,%d,%d,", id, w.Start.UnixNano(), w.Committed.UnixNano())
		if at, ok := arrived[id]; ok {
			b.WriteString(strconv.FormatInt(at.UnixNano(), 10))
		}
		b.WriteByte('\n')
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o640); err != nil {
		return fmt.Errorf("-trace: %w", err)
	}
	return nil
}

// median is the median of xs (the mean of the middle two for an even
// count), 0 for none.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// cpuPer10k is CPU seconds per 10 000 events.
func cpuPer10k(ticks, hz int64, events int) float64 {
	if events == 0 || hz == 0 {
		return 0
	}
	return float64(ticks) / float64(hz) * 10000 / float64(events)
}
