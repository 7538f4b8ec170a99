package bootstrap

import (
	"context"
	"time"

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

// backlogSource is one reader of a change log: the reader's live status,
// the store of its checkpoint and the count of rows after a position.
type backlogSource struct {
	reader      string // the checkpoint name, and the metric's label
	status      func() application.ReaderStatus
	checkpoints ports.CheckpointStore
	count       func(ctx context.Context, after ports.Position) (int64, error)
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
func (g *backlogGauge) refresh(ctx context.Context, src backlogSource) (rows int64, counted bool, err error) {
	st := src.status()
	every := backlogSlowEvery
	if st.Running {
		every = backlogActiveEvery
	}
	prev, seen := g.last[src.reader]
	if seen && prev.rows >= largeBacklogRows {
		every = backlogSlowEvery
	}
	if seen && g.now().Sub(prev.at) < every {
		return prev.rows, false, nil
	}
	after := st.Saved
	if !st.Running {
		pos, ok, err := src.checkpoints.Load(ctx, src.reader)
		if err != nil {
			return prev.rows, false, err
		}
		if ok {
			after = pos
		}
	}
	n, err := src.count(ctx, after)
	if err != nil {
		return prev.rows, false, err
	}
	g.last[src.reader] = backlogCount{at: g.now(), rows: n}
	return n, true, nil
}

// backlogSources lists the change logs this process reads, with their
// readers.
func (a *App) backlogSources() []backlogSource {
	var out []backlogSource
	if a.changeLog != nil && a.reader != nil {
		out = append(out, backlogSource{reader: a.cfg.Reader.Name, status: a.reader.Status,
			checkpoints: a.primary.Checkpoints, count: a.changeLog.Backlog})
	}
	for _, b := range a.bridges {
		out = append(out, backlogSource{reader: "bridge:" + b.name, status: b.reader.Status,
			checkpoints: b.store.Checkpoints, count: b.log.Backlog})
	}
	return out
}

// pollGauges refreshes the gauges that need a query: backlog per reader,
// dead-letter count, the oldest open transaction, and the parked retries
// and endpoint states.
func (a *App) pollGauges(ctx context.Context) {
	t := time.NewTicker(gaugeEvery)
	defer t.Stop()
	backlog := newBacklogGauge(time.Now)
	sources := a.backlogSources()
	for {
		qctx, cancel := context.WithTimeout(ctx, gaugeEvery)
		if a.dlqCount != nil {
			if n, err := a.dlqCount.Count(qctx); err == nil {
				a.metrics.SetDLQItems(n)
			}
		}
		for _, src := range sources {
			if n, counted, err := backlog.refresh(qctx, src); err == nil && counted {
				a.metrics.SetBacklog(src.reader, n)
			}
		}
		var oldest time.Duration
		if a.changeLog != nil {
			if d, err := a.changeLog.OldestTransactionAge(qctx); err == nil {
				oldest = d
			}
		}
		for _, b := range a.bridges {
			if d, err := b.log.OldestTransactionAge(qctx); err == nil {
				oldest = max(oldest, d)
			}
		}
		a.metrics.SetOldestTransactionAge(oldest)
		a.pollDurable(qctx)
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
