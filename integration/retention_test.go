package integration

import (
	"slices"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observer/application/admin"
	"github.com/fraiseql/fraiseql-observer/bootstrap/config"
	"github.com/fraiseql/fraiseql-observer/bootstrap/operate"
)

// retentionFixture fills the change log with n rows, each in its own
// transaction, the first old of them two hours old and the rest new, and
// returns their positions in reading order.
func (b *testBundle) retentionRows(t *testing.T, n, old int) []position {
	t.Helper()
	var out []position
	for i := range n {
		age := "2 hours"
		if i >= old {
			age = "0 seconds"
		}
		var p position
		if err := b.pool.QueryRow(t.Context(), `INSERT INTO core.tb_entity_change_log (created_at, object_type, modification_type, object_id, object_data)
			VALUES (now() - $1::interval, 'Order', 'INSERT', gen_random_uuid(), '{}') RETURNING txid::text::bigint, pk_entity_change_log`,
			age).Scan(&p.TxID, &p.Seq); err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}

func (b *testBundle) saveCheckpoint(t *testing.T, name string, p position) {
	t.Helper()
	if _, err := b.pool.Exec(t.Context(), `INSERT INTO observer.checkpoints (name, txid, seq) VALUES ($1, $2, $3)
		ON CONFLICT (name) DO UPDATE SET txid = excluded.txid, seq = excluded.seq`, name, int64(p.TxID), p.Seq); err != nil {
		t.Fatal(err)
	}
}

func (b *testBundle) seqs(t *testing.T) []int64 {
	t.Helper()
	var out []int64
	for _, r := range b.rows(t) {
		out = append(out, r.Pos.Seq)
	}
	return out
}

func (b *testBundle) retentionConfig() config.Config {
	cfg := b.config(webhookObserver("orders", "Order", "http://127.0.0.1:1/unused", nil))
	cfg.Retention.ChangeLog = time.Hour
	cfg.Retention.DeadLetters = 24 * time.Hour
	cfg.Retention.BatchSize = 3
	return cfg
}

// The prune command's use case on a change log with several readers at
// different checkpoints: only the rows behind all of them and older than
// the age go, in batches of at most batch_size; a dry run deletes nothing
// and counts the same.
func TestPruneBehindEveryReader(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	pos := b.retentionRows(t, 12, 9) // rows 0-8 old, 9-11 new
	b.saveCheckpoint(t, "default", pos[6])
	b.saveCheckpoint(t, "bridge:elsewhere", pos[4]) // a bridge of the same database
	b.saveCheckpoint(t, "old-replay", pos[10])
	if _, err := b.pool.Exec(ctx, `INSERT INTO observer.dead_letters (event_id, event, error, attempts, created_at)
		VALUES ('old1', '{}', 'x', 1, now() - interval '3 days'), ('old2', '{}', 'x', 1, now() - interval '2 days'),
		       ('new', '{}', 'x', 1, now())`); err != nil {
		t.Fatal(err)
	}
	all := b.seqs(t)

	op, err := operate.Open(ctx, b.retentionConfig(), operate.Options{Logger: b.logger, LookupEnv: noEnv})
	if err != nil {
		t.Fatal(err)
	}
	defer op.Close()

	dry, err := op.Prune(ctx, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Rows 0-4: behind bridge:elsewhere (the lowest checkpoint) and old.
	if dry.Total != 7 || dry.Rules[0].Rows != 5 || dry.Rules[1].Rows != 2 {
		t.Errorf("dry run = %+v, want 5 change-log rows and 2 dead letters", dry)
	}
	if got := b.seqs(t); !slices.Equal(got, all) || len(b.deadLetters(t)) != 3 {
		t.Fatalf("the dry run deleted rows: %v of %v", got, all)
	}

	var batches []int64
	rep, err := op.Prune(ctx, false, func(p admin.PruneProgress) {
		if p.Table == admin.TableChangeLog {
			batches = append(batches, p.Batch)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Total != dry.Total {
		t.Errorf("pruned %d rows, the dry run counted %d", rep.Total, dry.Total)
	}
	if !slices.Equal(batches, []int64{3, 2}) {
		t.Errorf("change-log batches %v, want [3 2] (batch_size 3)", batches)
	}
	if got := b.seqs(t); !slices.Equal(got, all[5:]) {
		t.Errorf("change log after prune: %v, want %v", got, all[5:])
	}
	if d := b.deadLetters(t); len(d) != 1 || d[0].EventID != "new" {
		t.Errorf("dead letters after prune: %+v, want the new one only", d)
	}
}

// The running service prunes on its interval, under a lease of its own,
// and counts what it deleted.
func TestServicePrunes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	pos := b.retentionRows(t, 6, 4)
	b.saveCheckpoint(t, "bridge:elsewhere", pos[2])
	cfg := b.retentionConfig()
	cfg.Retention.Interval = 200 * time.Millisecond
	cfg.Delivery.LogRetention = 24 * time.Hour
	app := b.start(t, cfg)
	// The delivery log is pruned by delivery.log_retention: two records
	// older than a day go, the recent one stays.
	if _, err := b.pool.Exec(t.Context(), `INSERT INTO observer.deliveries (at, event_id, observer, action, action_type, endpoint, attempt, trigger, outcome, latency_us)
		SELECT now() - (d || ' hours')::interval, 'e' || d, 'o', 'a', 'webhook', 'http://127.0.0.1', 1, 'event', 'succeeded', 1000
		FROM unnest(ARRAY[49, 30, 1]) AS d`); err != nil {
		t.Fatal(err)
	}
	// The local reader reaches the end; then everything old and behind
	// bridge:elsewhere goes (rows 0-2).
	waitFor(t, "rows behind every checkpoint pruned", func() bool { return len(b.rows(t)) == 3 })
	waitFor(t, "old delivery records pruned", func() bool {
		return app.metric(t, `fraiseql_observer_pruned_rows_total{table="delivery_log"}`) == 2
	})
	var left []string
	rows, err := b.pool.Query(t.Context(), `SELECT event_id FROM observer.deliveries WHERE observer = 'o'`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		left = append(left, id)
	}
	rows.Close()
	if !slices.Equal(left, []string{"e1"}) {
		t.Errorf("delivery log after pruning: %v, want [e1]", left)
	}
	if got, want := b.seqs(t), []int64{pos[3].Seq, pos[4].Seq, pos[5].Seq}; !slices.Equal(got, want) {
		t.Errorf("change log: %v, want %v", got, want)
	}
	if n := app.metric(t, `fraiseql_observer_pruned_rows_total{table="change_log"}`); n != 3 {
		t.Errorf("pruned_rows_total{table=change_log} = %v, want 3", n)
	}
	var holder string
	if err := b.pool.QueryRow(t.Context(), `SELECT holder FROM observer.leases WHERE name = 'retention'`).Scan(&holder); err != nil || holder == "" {
		t.Errorf("retention lease: %q, %v", holder, err)
	}
}
