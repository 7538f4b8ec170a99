package postgres

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// Only rows at or before the position and created before the time go,
// at most limit per statement, oldest first; the count is what Prune
// deletes.
func TestChangeLogPruner(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool := newTestPool(t)
	if err := Migrate(ctx, pool, MigrateConfig{}); err != nil {
		t.Fatal(err)
	}
	// Eight rows, each in a transaction of its own; rows 0-5 are two hours
	// old, 6 and 7 new.
	var positions []ports.Position
	for i := range 8 {
		age := "2 hours"
		if i >= 6 {
			age = "0 seconds"
		}
		var txid string
		var pk int64
		if err := pool.QueryRow(ctx, `INSERT INTO core.tb_entity_change_log (created_at, object_type, modification_type, object_data)
			VALUES (now() - $1::interval, 'Order', 'INSERT', '{}') RETURNING txid::text, pk_entity_change_log`, age).Scan(&txid, &pk); err != nil {
			t.Fatal(err)
		}
		tx, _ := strconv.ParseUint(txid, 10, 64)
		positions = append(positions, ports.Position{TxID: tx, Seq: pk})
	}
	p, err := NewChangeLogPruner(pool, "")
	if err != nil {
		t.Fatal(err)
	}
	remaining := func() []int64 {
		t.Helper()
		rows, err := pool.Query(ctx, `SELECT pk_entity_change_log FROM core.tb_entity_change_log ORDER BY txid, pk_entity_change_log`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out []int64
		for rows.Next() {
			var pk int64
			if err := rows.Scan(&pk); err != nil {
				t.Fatal(err)
			}
			out = append(out, pk)
		}
		return out
	}

	if _, err := p.CountPrunable(ctx, ports.Cutoff{Before: time.Now()}); err == nil {
		t.Error("CountPrunable without a position: no error")
	}
	if _, err := p.Prune(ctx, ports.Cutoff{Before: time.Now()}, 10); err == nil {
		t.Error("Prune without a position: no error")
	}

	// Every reader passed row 4 (the fifth); row 7 is past it but new.
	cut := ports.Cutoff{Before: time.Now().Add(-time.Hour), UpTo: &positions[4]}
	n, err := p.CountPrunable(ctx, cut)
	if err != nil || n != 5 {
		t.Fatalf("CountPrunable = %d, %v; want 5", n, err)
	}
	if got := remaining(); len(got) != 8 {
		t.Fatalf("CountPrunable deleted rows: %v", got)
	}
	var batches []int64
	for {
		n, err := p.Prune(ctx, cut, 2)
		if err != nil {
			t.Fatal(err)
		}
		batches = append(batches, n)
		if n < 2 {
			break
		}
	}
	if !slices.Equal(batches, []int64{2, 2, 1}) {
		t.Errorf("batches = %v, want [2 2 1]", batches)
	}
	want := []int64{positions[5].Seq, positions[6].Seq, positions[7].Seq}
	if got := remaining(); !slices.Equal(got, want) {
		t.Errorf("remaining rows %v, want %v", got, want)
	}

	// New rows stay even when every reader passed them.
	cut = ports.Cutoff{Before: time.Now().Add(-time.Hour), UpTo: &positions[7]}
	if n, err := p.Prune(ctx, cut, 100); err != nil || n != 1 {
		t.Errorf("Prune up to the last row = %d, %v; want 1 (row 5; 6 and 7 are new)", n, err)
	}
}

// Dead letters go when neither parked nor retried since the cutoff.
func TestDeadLetterPruner(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool, newSchema := newStateSchemas(t)
	schema := newSchema(t)
	dl, err := NewDeadLetters(pool, schema)
	if err != nil {
		t.Fatal(err)
	}
	var ids []int64
	for i := range 4 {
		id, err := dl.Add(ctx, ports.DeadLetter{Event: domain.Event{ID: "e" + strconv.Itoa(i), EventType: domain.EventInsert, EntityType: "Order", EntityID: "o"},
			Observer: "o", Action: "a", ActionType: domain.ActionLog, Error: "boom", Attempts: 1})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	// 0 and 1 are old, 1 retried a minute ago; 2 and 3 are new.
	if _, err := pool.Exec(ctx, `UPDATE `+dl.table+` SET created_at = now() - interval '3 days' WHERE id = ANY($1)`, ids[:2]); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `UPDATE `+dl.table+` SET last_retry_at = now() - interval '1 minute' WHERE id = $1`, ids[1]); err != nil {
		t.Fatal(err)
	}
	cut := ports.Cutoff{Before: time.Now().Add(-24 * time.Hour)}
	if n, err := dl.CountPrunable(ctx, cut); err != nil || n != 1 {
		t.Fatalf("CountPrunable = %d, %v; want 1", n, err)
	}
	if n, err := dl.Prune(ctx, cut, 10); err != nil || n != 1 {
		t.Fatalf("Prune = %d, %v; want 1", n, err)
	}
	if _, err := dl.Get(ctx, ids[0]); err == nil {
		t.Error("the old dead letter is still there")
	}
	for _, id := range ids[1:] {
		if _, err := dl.Get(ctx, id); err != nil {
			t.Errorf("dead letter %d: %v, want kept", id, err)
		}
	}
	if _, err := dl.Prune(ctx, ports.Cutoff{Before: time.Now(), UpTo: &ports.Position{}}, 10); err == nil {
		t.Error("Prune of dead letters with a position: no error")
	}
}

// Delivery records go when older than the cutoff, at most limit per
// statement, oldest first.
func TestDeliveryLogPruner(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool, newSchema := newStateSchemas(t)
	log, err := NewDeliveryLog(pool, newSchema(t))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	var recs []ports.DeliveryRecord
	for i, age := range []time.Duration{72 * time.Hour, 48 * time.Hour, 30 * time.Hour, time.Hour, 0} {
		recs = append(recs, ports.DeliveryRecord{At: now.Add(-age), EventID: "e" + strconv.Itoa(i), Observer: "o", Action: "a",
			ActionType: domain.ActionWebhook, Attempt: 1, Outcome: ports.DeliverySucceeded})
	}
	if err := log.Append(ctx, recs); err != nil {
		t.Fatal(err)
	}
	p := log.Pruner()
	cut := ports.Cutoff{Before: now.Add(-24 * time.Hour)}
	if n, err := p.CountPrunable(ctx, cut); err != nil || n != 3 {
		t.Fatalf("CountPrunable = %d, %v; want 3", n, err)
	}
	if n, err := p.Prune(ctx, cut, 2); err != nil || n != 2 {
		t.Fatalf("Prune(limit 2) = %d, %v; want 2", n, err)
	}
	left, err := log.List(ctx, ports.DeliveryFilter{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range left {
		ids = append(ids, r.EventID)
	}
	slices.Sort(ids)
	if want := []string{"e2", "e3", "e4"}; !slices.Equal(ids, want) {
		t.Fatalf("after the first prune: %v, want %v (oldest first)", ids, want)
	}
	if n, err := p.Prune(ctx, cut, 10); err != nil || n != 1 {
		t.Fatalf("second Prune = %d, %v; want 1", n, err)
	}
	if _, err := p.Prune(ctx, ports.Cutoff{Before: now, UpTo: &ports.Position{}}, 10); err == nil {
		t.Error("Prune of delivery records with a position: no error")
	}
}

// A pass's last Prune, which finds the rows left too young, reads at most
// limit rows of the change log: before, the age was filtered inside the
// scan, which then read every row up to the position (a scan of the whole
// change log, about a second for 2M rows, at the end of every pass).
func TestChangeLogPruneReadsAtMostTheLimit(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool := newTestPool(t)
	if err := Migrate(ctx, pool, MigrateConfig{}); err != nil {
		t.Fatal(err)
	}
	const young, limit = 20000, 100
	if _, err := pool.Exec(ctx, `INSERT INTO core.tb_entity_change_log (object_type, modification_type, object_data)
		SELECT 'Order', 'INSERT', '{}' FROM generate_series(1, $1)`, young); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `ANALYZE core.tb_entity_change_log`); err != nil {
		t.Fatal(err)
	}
	var txid string
	var pk int64
	if err := pool.QueryRow(ctx, `SELECT txid::text, pk_entity_change_log FROM core.tb_entity_change_log
		ORDER BY txid DESC, pk_entity_change_log DESC LIMIT 1`).Scan(&txid, &pk); err != nil {
		t.Fatal(err)
	}
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	var plan []map[string]any
	if err := tx.QueryRow(ctx, `EXPLAIN (ANALYZE, FORMAT JSON) `+changeLogPruneSQL("core.tb_entity_change_log"),
		txid, pk, time.Now().Add(-time.Hour), limit).Scan(&plan); err != nil {
		t.Fatal(err)
	}
	var read float64 // rows the plan's scans of the change log read
	var walk func(n map[string]any)
	walk = func(n map[string]any) {
		if typ, _ := n["Node Type"].(string); strings.Contains(typ, "Scan") && n["Relation Name"] == "tb_entity_change_log" {
			rows, _ := n["Actual Rows"].(float64)
			removed, _ := n["Rows Removed by Filter"].(float64) // read, then filtered out
			loops, _ := n["Actual Loops"].(float64)
			read += rows*loops + removed
		}
		children, _ := n["Plans"].([]any)
		for _, c := range children {
			walk(c.(map[string]any))
		}
	}
	for _, p := range plan {
		walk(p["Plan"].(map[string]any))
	}
	if read > limit {
		t.Errorf("a Prune that deletes nothing read %.0f rows of %d (limit %d); plan: %v", read, young, limit, plan)
	}
}
