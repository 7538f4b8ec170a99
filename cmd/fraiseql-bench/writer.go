package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// writeBacklog inserts rows change-log rows in transactions of 10 000 and
// returns their event ids.
func writeBacklog(ctx context.Context, pool *pgxpool.Pool, rows int) ([]string, error) {
	ids := make([]string, 0, rows)
	for done := 0; done < rows; {
		n := min(10000, rows-done)
		r, err := pool.Query(ctx, `INSERT INTO core.tb_entity_change_log
			(object_type, modification_type, object_id, object_data)
			SELECT 'Order', 'INSERT', gen_random_uuid(), jsonb_build_object('n', g, 'status', 'new')
			FROM generate_series($1::int, $2::int) AS g
			RETURNING id::text`, done+1, done+n)
		if err != nil {
			return nil, fmt.Errorf("insert backlog: %w", err)
		}
		for r.Next() {
			var id string
			if err := r.Scan(&id); err != nil {
				r.Close()
				return nil, fmt.Errorf("insert backlog: %w", err)
			}
			ids = append(ids, id)
		}
		r.Close()
		if err := r.Err(); err != nil {
			return nil, fmt.Errorf("insert backlog: %w", err)
		}
		done += n
	}
	return ids, nil
}

// steadyResult is what a steady-rate writer did.
type steadyResult struct {
	// Rows are the ids inserted, each with when its insert started and
	// when it returned.
	Rows     map[string]written
	Achieved float64 // transactions/s
	Dropped  int     // inserts not made: the writers were a whole second behind
}

// written is one row's insert: Start is its t_ns, Committed when the
// insert returned, which is after its transaction committed (the server
// answers ReadyForQuery after the implicit commit), so that delivery
// latency measured from it leaves out the writer's own insert and commit.
type written struct{ Start, Committed time.Time }

// steadyInsertSQL is a steady phase's insert; $1 the row's t_ns.
const steadyInsertSQL = `INSERT INTO core.tb_entity_change_log
	(object_type, modification_type, object_id, object_data)
	VALUES ('Order', 'INSERT', gen_random_uuid(), jsonb_build_object('t_ns', $1::bigint))
	RETURNING id::text`

// writeSteady commits one row per transaction at rate/s for d, with
// writers connections; each row's object_data carries t_ns, the time
// just before its insert, and the result when each insert returned.
func writeSteady(ctx context.Context, pool *pgxpool.Pool, rate int, d time.Duration, writers int) (steadyResult, error) {
	if err := warmPool(ctx, pool, writers); err != nil {
		return steadyResult{}, err
	}
	total := int(float64(rate) * d.Seconds())
	jobs := make(chan struct{}, rate)
	var (
		mu     sync.Mutex
		rows   = make(map[string]written, total)
		failed atomic.Value
		wg     sync.WaitGroup
	)
	for range writers {
		wg.Go(func() {
			for range jobs {
				var id string
				start := time.Now()
				err := pool.QueryRow(ctx, steadyInsertSQL, start.UnixNano()).Scan(&id)
				at := time.Now() // after the commit (see written)
				if err != nil {
					failed.CompareAndSwap(nil, err)
					continue
				}
				mu.Lock()
				rows[id] = written{Start: start, Committed: at}
				mu.Unlock()
			}
		})
	}
	// Each tick releases every insert due by now, so a late tick does not
	// lower the rate.
	tick := time.NewTicker(time.Second / time.Duration(min(rate, 1000)))
	start := time.Now()
	sent, dropped := 0, 0
	for sent+dropped < total && ctx.Err() == nil {
		<-tick.C
		due := min(int(time.Since(start).Seconds()*float64(rate)), total)
		for sent+dropped < due {
			select {
			case jobs <- struct{}{}:
				sent++
			default:
				dropped++
			}
		}
	}
	tick.Stop()
	close(jobs)
	wg.Wait()
	elapsed := time.Since(start)
	if err, _ := failed.Load().(error); err != nil {
		return steadyResult{}, fmt.Errorf("insert at %d/s: %w", rate, err)
	}
	if err := ctx.Err(); err != nil {
		return steadyResult{}, fmt.Errorf("insert at %d/s: %w", rate, err)
	}
	return steadyResult{Rows: rows, Achieved: float64(len(rows)) / elapsed.Seconds(), Dropped: dropped}, nil
}

// warmPool readies n of pool's connections before a steady phase, as an
// application's are in its steady state: each is opened and runs the
// phase's insert once in a transaction it rolls back (the statement
// prepared, the server's caches of the table, its trigger and function
// loaded; a rolled-back row is never read and its notification never
// sent). Without it the first inserts of a phase took 30-180 ms on a busy
// machine, connecting or loading, and held back every later row until
// they committed.
func warmPool(ctx context.Context, pool *pgxpool.Pool, n int) error {
	conns := make([]*pgxpool.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Release()
		}
	}()
	for range n {
		c, err := pool.Acquire(ctx)
		if err != nil {
			return fmt.Errorf("ready the writer's connections: %w", err)
		}
		conns = append(conns, c)
		tx, err := c.Begin(ctx)
		if err != nil {
			return fmt.Errorf("ready the writer's connections: %w", err)
		}
		var id string
		err = tx.QueryRow(ctx, steadyInsertSQL, int64(0)).Scan(&id)
		if rerr := tx.Rollback(ctx); err == nil {
			err = rerr
		}
		if err != nil {
			return fmt.Errorf("ready the writer's connections: %w", err)
		}
	}
	return nil
}
