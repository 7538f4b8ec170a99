package main

import (
	"math"
	"slices"
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

// sinceCommit is each delivered id's first arrival minus the time its
// insert returned (committed), for the ids in both. An arrival before the
// writer saw its own commit's answer (the writer's goroutine ran late)
// counts as 0: the commit was visible, the delivery was at least that
// quick.
func sinceCommit(arrived, committed map[string]time.Time) []time.Duration {
	lat := make([]time.Duration, 0, len(committed))
	for id, at := range committed {
		if got, ok := arrived[id]; ok {
			lat = append(lat, max(got.Sub(at), 0))
		}
	}
	return lat
}

// cpuPer10k is CPU seconds per 10 000 events.
func cpuPer10k(ticks, hz int64, events int) float64 {
	if events == 0 || hz == 0 {
		return 0
	}
	return float64(ticks) / float64(hz) * 10000 / float64(events)
}
