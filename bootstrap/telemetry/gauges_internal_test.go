package telemetry

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observer/adapters/memory"
	"github.com/fraiseql/fraiseql-observer/application"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// countRecorder is a change log whose backlog is rows, recording where it
// was counted from.
type countRecorder struct {
	rows  int64
	err   error
	froms []ports.Position
}

func (c *countRecorder) count(_ context.Context, after ports.Position) (int64, error) {
	c.froms = append(c.froms, after)
	return c.rows, c.err
}

// The backlog of a standby replica is measured from the stored checkpoint
// (not the start of the table), and counted at most once a minute; the
// replica that reads counts from its live checkpoint every 5s, and once a
// minute when the backlog is large.
func TestBacklogGauge(t *testing.T) {
	t.Parallel()
	stored := ports.Position{TxID: 900, Seq: 77}
	live := ports.Position{TxID: 950, Seq: 80}
	type step struct {
		after      time.Duration // clock advance before this refresh
		wantCount  bool
		wantFrom   ports.Position
		wantResult int64
	}
	cases := []struct {
		name    string
		running bool
		rows    int64
		steps   []step
	}{
		{"standby measures from the stored checkpoint, once a minute", false, 12, []step{
			{0, true, stored, 12},
			{5 * time.Second, false, ports.Position{}, 12},
			{50 * time.Second, false, ports.Position{}, 12},
			{6 * time.Second, true, stored, 12},
		}},
		{"the reading replica counts from its live checkpoint every 5s", true, 3, []step{
			{0, true, live, 3},
			{2 * time.Second, false, ports.Position{}, 3},
			{3 * time.Second, true, live, 3},
		}},
		{"a large backlog is counted once a minute", true, largeBacklogRows, []step{
			{0, true, live, largeBacklogRows},
			{5 * time.Second, false, ports.Position{}, largeBacklogRows},
			{55 * time.Second, true, live, largeBacklogRows},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			cps := memory.NewCheckpoints()
			if err := cps.Save(t.Context(), "default", stored); err != nil {
				t.Fatal(err)
			}
			rec := &countRecorder{rows: c.rows}
			src := BacklogSource{Reader: "default", Checkpoints: cps, Count: rec.count,
				Status: func() application.ReaderStatus { return application.ReaderStatus{Running: c.running, Saved: live} }}
			g := newBacklogGauge(func() time.Time { return now })
			for i, s := range c.steps {
				now = now.Add(s.after)
				before := len(rec.froms)
				n, counted, err := g.refresh(t.Context(), src)
				if err != nil {
					t.Fatal(err)
				}
				if counted != s.wantCount || n != s.wantResult || (len(rec.froms) > before) != s.wantCount {
					t.Fatalf("step %d: rows %d counted %v (queries %d→%d); want %d, %v", i, n, counted, before, len(rec.froms), s.wantResult, s.wantCount)
				}
				if s.wantCount && rec.froms[len(rec.froms)-1] != s.wantFrom {
					t.Errorf("step %d: counted from %v, want %v", i, rec.froms[len(rec.froms)-1], s.wantFrom)
				}
			}
		})
	}
}

// A failed count keeps the previous figure and is tried again at the next
// poll.
func TestBacklogGaugeCountFails(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	rec := &countRecorder{rows: 5}
	src := BacklogSource{Reader: "default", Checkpoints: memory.NewCheckpoints(), Count: rec.count,
		Status: func() application.ReaderStatus { return application.ReaderStatus{Running: true} }}
	g := newBacklogGauge(func() time.Time { return now })
	if n, counted, err := g.refresh(t.Context(), src); err != nil || !counted || n != 5 {
		t.Fatalf("first refresh: %d %v %v", n, counted, err)
	}
	rec.err = errors.New("database down")
	now = now.Add(5 * time.Second)
	if _, counted, err := g.refresh(t.Context(), src); err == nil || counted {
		t.Fatalf("failed count: counted %v err %v", counted, err)
	}
	rec.err, rec.rows = nil, 9
	if n, counted, err := g.refresh(t.Context(), src); err != nil || !counted || n != 9 {
		t.Fatalf("after the failure: %d %v %v, want a new count", n, counted, err)
	}
}

type ager struct {
	d   time.Duration
	err error
}

func (a ager) OldestTransactionAge(context.Context) (time.Duration, error) { return a.d, a.err }

// The oldest transaction's age is the largest over the databases, and
// unknown (the gauge keeps its value) when one of them does not answer.
func TestOldestTransactionAge(t *testing.T) {
	t.Parallel()
	if d, ok := oldestTransactionAge(t.Context(), []TransactionAger{ager{d: time.Second}, ager{d: time.Minute}}); !ok || d != time.Minute {
		t.Errorf("two answers = %v, %v; want 1m", d, ok)
	}
	if _, ok := oldestTransactionAge(t.Context(), []TransactionAger{ager{d: time.Second}, ager{err: errors.New("down")}}); ok {
		t.Error("with a database down the age was taken as known")
	}
}

// counter is a DeadLetterCounter answering n or err.
type counter struct {
	n   int64
	err error
}

func (c counter) Count(context.Context) (int64, error) { return c.n, c.err }

// dlq_items is the sum of every store the process dead-letters into (a
// bridge's source databases included: a bridge-only process showed 0
// while its sources held dead letters); a store that cannot be counted
// leaves the gauge as it was rather than show a part.
func TestCountAllDeadLetters(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	if n, ok := countAll(ctx, []ports.DeadLetterCounter{counter{n: 2}, counter{n: 3}}); !ok || n != 5 {
		t.Errorf("two stores: %d, %v; want 5", n, ok)
	}
	if _, ok := countAll(ctx, []ports.DeadLetterCounter{counter{n: 2}, counter{err: errors.New("down")}}); ok {
		t.Error("a store that failed: a count was reported")
	}
	if _, ok := countAll(ctx, nil); ok {
		t.Error("no store: a count was reported")
	}
}
