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
	IDs []string
	// Committed is when each id's insert returned: its transaction had
	// committed (the answer comes after the commit), so delivery latency
	// measured from it leaves out the writer's own insert and commit.
	Committed map[string]time.Time
	// Commits are the writer's insert-and-commit times (from t_ns to
	// Committed), one per row.
	Commits  []time.Duration
	Achieved float64 // transactions/s
	Dropped  int     // inserts not made: the writers were a whole second behind
}

// writeSteady commits one row per transaction at rate/s for d, with
// writers connections; each row's object_data carries t_ns, the time
// just before its insert, and the result when each insert returned.
func writeSteady(ctx context.Context, pool *pgxpool.Pool, rate int, d time.Duration, writers int) (steadyResult, error) {
	total := int(float64(rate) * d.Seconds())
	jobs := make(chan struct{}, rate)
	var (
		mu        sync.Mutex
		ids       = make([]string, 0, total)
		committed = make(map[string]time.Time, total)
		commits   = make([]time.Duration, 0, total)
		failed    atomic.Value
		wg        sync.WaitGroup
	)
	for range writers {
		wg.Go(func() {
			for range jobs {
				var id string
				start := time.Now()
				err := pool.QueryRow(ctx, `INSERT INTO core.tb_entity_change_log
					(object_type, modification_type, object_id, object_data)
					VALUES ('Order', 'INSERT', gen_random_uuid(), jsonb_build_object('t_ns', $1::bigint))
					RETURNING id::text`, start.UnixNano()).Scan(&id)
				// Scan returns once the statement's ReadyForQuery came,
				// which the server sends after the implicit commit.
				at := time.Now()
				if err != nil {
					failed.CompareAndSwap(nil, err)
					continue
				}
				mu.Lock()
				ids = append(ids, id)
				committed[id] = at
				commits = append(commits, at.Sub(start))
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
	return steadyResult{IDs: ids, Committed: committed, Commits: commits, Achieved: float64(len(ids)) / elapsed.Seconds(), Dropped: dropped}, nil
}
