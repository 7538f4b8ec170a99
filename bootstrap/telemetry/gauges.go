package telemetry

import (
	"context"
	"time"

	promadapter "github.com/fraiseql/fraiseql-observer/adapters/prometheus"
	"github.com/fraiseql/fraiseql-observer/application"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// How often the gauges that need a query are refreshed. The backlog is a
// count of change-log rows, so it is counted at most every
// backlogActiveEvery by the replica that reads, and at most every
// backlogSlowEvery by a standby replica (which measures from the stored
// checkpoint of the replica that reads) or when the last count found a
// large backlog (counting it is itself expensive, and the figure matters
// to the minute there).
const (
	gaugeEvery         = 5 * time.Second
	backlogActiveEvery = 5 * time.Second
	backlogSlowEvery   = time.Minute
	largeBacklogRows   = 100_000
)

// BacklogSource is one reader of a change log: the reader's live status,
// the store of its checkpoint and the count of rows after a position.
type BacklogSource struct {
	Reader      string // the checkpoint name, and the metric's label
	Status      func() application.ReaderStatus
	Checkpoints ports.CheckpointStore
	Count       func(ctx context.Context, after ports.Position) (int64, error)
}

// backlogGauge decides when each reader's backlog is counted again, and
// from which position.
type backlogGauge struct {
	now  func() time.Time
	last map[string]backlogCount
}

type backlogCount struct {
	at   time.Time
	rows int64
}

func newBacklogGauge(now func() time.Time) *backlogGauge {
	return &backlogGauge{now: now, last: map[string]backlogCount{}}
}

// refresh returns the reader's backlog, counted again when it is due
// (counted reports that): a reader that reads counts from its live saved
// checkpoint; a standby one from the stored checkpoint of the replica that
// reads (not from the start of the table).
func (g *backlogGauge) refresh(ctx context.Context, src BacklogSource) (rows int64, counted bool, err error) {
	st := src.Status()
	every := backlogSlowEvery
	if st.Running {
		every = backlogActiveEvery
	}
	prev, seen := g.last[src.Reader]
	if seen && prev.rows >= largeBacklogRows {
		every = backlogSlowEvery
	}
	if seen && g.now().Sub(prev.at) < every {
		return prev.rows, false, nil
	}
	after := st.Saved
	if !st.Running {
		pos, ok, err := src.Checkpoints.Load(ctx, src.Reader)
		if err != nil {
			return prev.rows, false, err
		}
		if ok {
			after = pos
		}
	}
	n, err := src.Count(ctx, after)
	if err != nil {
		return prev.rows, false, err
	}
	g.last[src.Reader] = backlogCount{at: g.now(), rows: n}
	return n, true, nil
}

// Gauges refreshes the gauges that need a query: backlog per reader,
// dead-letter count, the oldest open transaction, and the parked retries.
type Gauges struct {
	Metrics  *promadapter.Metrics
	Delivery *promadapter.DeliveryMetrics
	// DeadLetters count the dead letters this process keeps: its state
	// store's, and each source database's a bridge dead-letters into
	// (the gauge is their sum; none: not set).
	DeadLetters []ports.DeadLetterCounter
	// Backlogs are the change logs this process reads, with their readers.
	Backlogs []BacklogSource
	// ChangeLogs are the change logs whose oldest open transaction is
	// watched.
	ChangeLogs []TransactionAger
	// Retries counts the parked retries (nil: none are kept here).
	Retries ports.RetryCounter
}

// TransactionAger tells the age of the oldest open transaction of a
// change log's database (postgres.ChangeLog).
type TransactionAger interface {
	OldestTransactionAge(ctx context.Context) (time.Duration, error)
}

// oldestTransactionAge is the oldest open transaction's age over
// agers; ok is false unless every one answered (a failed query says
// nothing of its oldest transaction: 0 would look healthy through an
// outage, so the gauge keeps its last value).
func oldestTransactionAge(ctx context.Context, agers []TransactionAger) (oldest time.Duration, ok bool) {
	for _, a := range agers {
		d, err := a.OldestTransactionAge(ctx)
		if err != nil {
			return 0, false
		}
		oldest = max(oldest, d)
	}
	return oldest, true
}

// countAll sums the counters' counts; false when there are none or one
// failed (the gauge keeps its value rather than show a part).
func countAll(ctx context.Context, counters []ports.DeadLetterCounter) (int64, bool) {
	var total int64
	for _, c := range counters {
		n, err := c.Count(ctx)
		if err != nil {
			return 0, false
		}
		total += n
	}
	return total, len(counters) > 0
}

// Run refreshes the gauges every few seconds until ctx ends.
func (g Gauges) Run(ctx context.Context) {
	t := time.NewTicker(gaugeEvery)
	defer t.Stop()
	backlog := newBacklogGauge(time.Now)
	for {
		qctx, cancel := context.WithTimeout(ctx, gaugeEvery)
		if n, ok := countAll(qctx, g.DeadLetters); ok {
			g.Metrics.SetDLQItems(n)
		}
		for _, src := range g.Backlogs {
			if n, counted, err := backlog.refresh(qctx, src); err == nil && counted {
				g.Metrics.SetBacklog(src.Reader, n)
			}
		}
		if oldest, ok := oldestTransactionAge(qctx, g.ChangeLogs); ok {
			g.Metrics.SetOldestTransactionAge(oldest)
		}
		if g.Retries != nil {
			if c, err := g.Retries.Counts(qctx); err == nil {
				g.Delivery.RetryItems(c.Due, c.Waiting)
			}
		}
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
