package admin_test

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observer/adapters/memory"
	"github.com/fraiseql/fraiseql-observer/application/admin"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// rowTable is a ports.Pruner over rows in memory, with the adapters'
// semantics: rows at or before UpTo (when positioned) and created before
// the cutoff go, oldest first, at most limit per call.
type rowTable struct {
	mu         sync.Mutex
	positioned bool
	rows       []row
	calls      []int64 // rows deleted per Prune call
}

type row struct {
	pos     ports.Position
	created time.Time
}

var _ ports.Pruner = (*rowTable)(nil)

func (t *rowTable) prunable(cut ports.Cutoff) ([]int, error) {
	if t.positioned != (cut.UpTo != nil) {
		return nil, errString("cutoff does not fit the table")
	}
	var out []int
	for i, r := range t.rows {
		if r.created.Before(cut.Before) && (cut.UpTo == nil || !cut.UpTo.Less(r.pos)) {
			out = append(out, i)
		}
	}
	return out, nil
}

func (t *rowTable) Prune(_ context.Context, cut ports.Cutoff, limit int) (int64, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	idx, err := t.prunable(cut)
	if err != nil {
		return 0, err
	}
	idx = idx[:min(limit, len(idx))]
	for i := len(idx) - 1; i >= 0; i-- {
		t.rows = slices.Delete(t.rows, idx[i], idx[i]+1)
	}
	t.calls = append(t.calls, int64(len(idx)))
	return int64(len(idx)), nil
}

func (t *rowTable) CountPrunable(_ context.Context, cut ports.Cutoff) (int64, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	idx, err := t.prunable(cut)
	return int64(len(idx)), err
}

func (t *rowTable) seqs() []int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []int64
	for _, r := range t.rows {
		out = append(out, r.pos.Seq)
	}
	return out
}

type errString string

func (e errString) Error() string { return string(e) }

type prunedMetrics struct {
	mu   sync.Mutex
	rows map[string]int64
}

func (m *prunedMetrics) Pruned(table string, n int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rows[table] += n
}

// retentionBundle: a change log of rows 1..10 (1-6 two days old, 7-10
// new) and four dead letters (two old), with checkpoints stored by three
// readers.
type retentionBundle struct {
	now     time.Time
	log     *rowTable
	dead    *rowTable
	cps     *memory.Checkpoints
	metrics *prunedMetrics
}

func newRetentionBundle(t *testing.T, checkpoints map[string]int64) *retentionBundle {
	t.Helper()
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	b := &retentionBundle{now: now, log: &rowTable{positioned: true}, dead: &rowTable{}, cps: memory.NewCheckpoints(),
		metrics: &prunedMetrics{rows: map[string]int64{}}}
	for i := int64(1); i <= 10; i++ {
		created := now.Add(-48 * time.Hour)
		if i > 6 {
			created = now.Add(-time.Minute)
		}
		b.log.rows = append(b.log.rows, row{pos: ports.Position{TxID: 100 + uint64(i), Seq: i}, created: created})
	}
	for i := int64(1); i <= 4; i++ {
		created := now.Add(-10 * 24 * time.Hour)
		if i > 2 {
			created = now
		}
		b.dead.rows = append(b.dead.rows, row{pos: ports.Position{Seq: i}, created: created})
	}
	for name, seq := range checkpoints {
		if err := b.cps.Save(t.Context(), name, ports.Position{TxID: 100 + uint64(seq), Seq: seq}); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

func (b *retentionBundle) retention(t *testing.T, batch int, readers ...string) *admin.Retention {
	t.Helper()
	r, err := admin.NewRetention(admin.RetentionConfig{
		Rules: []admin.RetentionRule{
			{Table: admin.TableChangeLog, Where: "db", Age: 24 * time.Hour, Pruner: b.log, Checkpoints: b.cps, Readers: readers},
			{Table: admin.TableDeadLetters, Where: "db", Age: 7 * 24 * time.Hour, Pruner: b.dead},
		},
		BatchSize: batch, Pause: time.Millisecond, Now: func() time.Time { return b.now },
		Logger: slog.New(slog.DiscardHandler), Metrics: b.metrics,
	})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// With readers at different checkpoints, only the rows behind all of them
// and older than the age go, in batches of at most batch_size; a dry run
// deletes nothing and counts the same.
func TestRetentionPrunesBehindEveryReader(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	b := newRetentionBundle(t, map[string]int64{"default": 5, "bridge:default": 3, "old-reader": 8})
	r := b.retention(t, 2, "default")

	dry, err := r.Prune(ctx, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !dry.DryRun || dry.Total != 5 || dry.Rules[0].Rows != 3 || dry.Rules[1].Rows != 2 {
		t.Errorf("dry run = %+v, want 3 change-log rows and 2 dead letters", dry)
	}
	if len(b.log.seqs()) != 10 || len(b.dead.seqs()) != 4 || len(b.log.calls) != 0 {
		t.Fatalf("the dry run deleted: change log %v, dead letters %v", b.log.seqs(), b.dead.seqs())
	}

	var progress []admin.PruneProgress
	rep, err := r.Prune(ctx, false, func(p admin.PruneProgress) { progress = append(progress, p) })
	if err != nil {
		t.Fatal(err)
	}
	if rep.Total != dry.Total || rep.Rules[0].Rows != 3 || rep.Rules[1].Rows != 2 {
		t.Errorf("prune = %+v, want what the dry run counted", rep)
	}
	// Rows 1-3 are behind every checkpoint (the lowest is bridge:default's
	// 3) and old; 4-6 are old but bridge:default has not passed them.
	if got := b.log.seqs(); !slices.Equal(got, []int64{4, 5, 6, 7, 8, 9, 10}) {
		t.Errorf("change log after prune: %v", got)
	}
	if got := b.dead.seqs(); !slices.Equal(got, []int64{3, 4}) {
		t.Errorf("dead letters after prune: %v", got)
	}
	if !slices.Equal(b.log.calls, []int64{2, 1}) {
		t.Errorf("change-log batches %v, want [2 1] (batch_size 2)", b.log.calls)
	}
	if len(progress) != 4 || progress[0].Batch != 2 || progress[0].Done || progress[1].Total != 3 || !progress[1].Done {
		t.Errorf("progress = %+v", progress)
	}
	if b.metrics.rows["change_log"] != 3 || b.metrics.rows["dead_letters"] != 2 {
		t.Errorf("metrics = %v", b.metrics.rows)
	}
	if rep, err := r.Prune(ctx, false, nil); err != nil || rep.Total != 0 {
		t.Errorf("second prune = %+v, %v; want nothing left", rep, err)
	}
}

// Nothing of the change log goes while a configured reader has no
// checkpoint (it reads from the start), nor when none is stored.
func TestRetentionWaitsForEveryReader(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		stored  map[string]int64
		readers []string
		note    string
	}{
		{"a reader without a checkpoint", map[string]int64{"bridge:default": 9}, []string{"default"}, "reader default has no checkpoint"},
		{"no checkpoint at all", nil, nil, "no reader has stored a checkpoint"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			b := newRetentionBundle(t, c.stored)
			for _, dry := range []bool{true, false} {
				rep, err := b.retention(t, 100, c.readers...).Prune(t.Context(), dry, nil)
				if err != nil {
					t.Fatal(err)
				}
				if rep.Rules[0].Rows != 0 || !strings.Contains(rep.Rules[0].Note, c.note) {
					t.Errorf("dry %v: change log %+v, want nothing and %q", dry, rep.Rules[0], c.note)
				}
				if rep.Rules[1].Rows != 2 {
					t.Errorf("dry %v: dead letters %+v, want 2 (they do not wait for readers)", dry, rep.Rules[1])
				}
			}
			if len(b.log.seqs()) != 10 {
				t.Errorf("change log pruned: %v", b.log.seqs())
			}
		})
	}
}

// Run prunes at once and on every interval until its context ends.
func TestRetentionRun(t *testing.T) {
	t.Parallel()
	b := newRetentionBundle(t, map[string]int64{"default": 10})
	r := b.retention(t, 100, "default")
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx, time.Hour) }()
	deadline := time.Now().Add(10 * time.Second)
	for len(b.log.seqs()) != 4 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v", err)
	}
	if got := b.log.seqs(); !slices.Equal(got, []int64{7, 8, 9, 10}) {
		t.Errorf("change log after Run: %v, want the new rows only", got)
	}
}
