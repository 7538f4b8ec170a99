package application_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/fraiseql/fraiseql-observer/adapters/memory"
	"github.com/fraiseql/fraiseql-observer/application"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// finishingHandler finishes every record at once.
type finishingHandler struct{}

func (finishingHandler) Begin()                               {}
func (finishingHandler) Handle(_ ports.Record, finish func()) { finish() }
func (finishingHandler) Run(ctx context.Context) error        { <-ctx.Done(); return nil }

// A read that found several records without filling the batch is followed
// by a pause of CoalesceWait before the next read; a full read is followed
// by the next read at once; a read of one record waits for the source;
// with CoalesceWait 0 the reader reads again at once.
func TestReaderCoalescesReadsWhileTheSourceIsBusy(t *testing.T) {
	t.Parallel()
	for _, wait := range []time.Duration{0, 5 * time.Millisecond} {
		t.Run(fmt.Sprint("coalesce_wait=", wait), func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				// Each read serves the next count of records (10 = a full batch).
				counts := []int{3, 10, 4, 1}
				var (
					mu    sync.Mutex
					at    []time.Duration // each read's time since the start
					waits []time.Duration // each Wait's time since the start
				)
				start := time.Now()
				src := &eventSource{
					ReadFunc: func(_ context.Context, after ports.Position, limit ports.ReadLimit) (ports.Batch, error) {
						mu.Lock()
						defer mu.Unlock()
						b := ports.Batch{End: after}
						if len(at) >= len(counts) {
							return b, nil
						}
						for range min(counts[len(at)], limit.Rows) {
							b.End = ports.Position{Seq: b.End.Seq + 1}
							b.Records = append(b.Records, record(b.End.Seq, seqEvent(fmt.Sprint("ent", b.End.Seq), 0)))
						}
						at = append(at, time.Since(start))
						return b, nil
					},
					WaitFunc: func(ctx context.Context) error {
						mu.Lock()
						waits = append(waits, time.Since(start))
						mu.Unlock()
						<-ctx.Done()
						return ctx.Err()
					},
				}
				r, err := application.NewReader(src, memory.NewCheckpoints(), finishingHandler{}, application.ReaderConfig{
					BatchSize: 10, CoalesceWait: wait, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
				})
				if err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithCancel(t.Context())
				done := make(chan error, 1)
				go func() { done <- r.Run(ctx) }()
				time.Sleep(time.Second)
				synctest.Wait()
				cancel()
				if err := <-done; err != nil {
					t.Fatal(err)
				}
				mu.Lock()
				defer mu.Unlock()
				// 3 of 10: pause; 10 of 10: at once; 4 of 10: pause; 1: Wait.
				want := []time.Duration{0, wait, wait, 2 * wait}
				if fmt.Sprint(at) != fmt.Sprint(want) {
					t.Errorf("reads at %v, want %v", at, want)
				}
				if len(waits) != 1 || waits[0] != 2*wait {
					t.Errorf("waits at %v, want one at %v (after the read of one record)", waits, 2*wait)
				}
			})
		})
	}
}

// The pause after a read that found several records grows with the rate
// at which they came (records over the time since the read before):
// CoalesceWait up to 2 500 rows/s, CoalesceWaitMax from 10 000 rows/s,
// linear between; a CoalesceWaitMax at or below CoalesceWait keeps the
// pause fixed.
func TestReaderCoalescePauseGrowsWithTheWriteRate(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name     string
		waitMax  time.Duration
		wantRead []time.Duration
	}{
		// 100 records (first read: no rate yet) -> 2ms; 100 in 2ms
		// (50 000/s) -> 10ms; 30 in 10ms (3 000/s) -> 2ms + 8ms*500/7500;
		// 2 in 2.533ms (790/s) -> 2ms; then one record: Wait.
		{"ramp", 10 * time.Millisecond, []time.Duration{0, 2 * time.Millisecond, 12 * time.Millisecond, 14533333 * time.Nanosecond, 16533333 * time.Nanosecond}},
		{"fixed", time.Millisecond, []time.Duration{0, 2 * time.Millisecond, 4 * time.Millisecond, 6 * time.Millisecond, 8 * time.Millisecond}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				counts := []int{100, 100, 30, 2, 1}
				var (
					mu sync.Mutex
					at []time.Duration
				)
				start := time.Now()
				src := &eventSource{
					ReadFunc: func(_ context.Context, after ports.Position, limit ports.ReadLimit) (ports.Batch, error) {
						mu.Lock()
						defer mu.Unlock()
						b := ports.Batch{End: after}
						if len(at) >= len(counts) {
							return b, nil
						}
						for range min(counts[len(at)], limit.Rows) {
							b.End = ports.Position{Seq: b.End.Seq + 1}
							b.Records = append(b.Records, record(b.End.Seq, seqEvent(fmt.Sprint("ent", b.End.Seq), 0)))
						}
						at = append(at, time.Since(start))
						return b, nil
					},
					WaitFunc: func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() },
				}
				r, err := application.NewReader(src, memory.NewCheckpoints(), finishingHandler{}, application.ReaderConfig{
					BatchSize: 1000, CoalesceWait: 2 * time.Millisecond, CoalesceWaitMax: tt.waitMax,
					Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
				})
				if err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithCancel(t.Context())
				done := make(chan error, 1)
				go func() { done <- r.Run(ctx) }()
				time.Sleep(time.Second)
				synctest.Wait()
				cancel()
				if err := <-done; err != nil {
					t.Fatal(err)
				}
				mu.Lock()
				defer mu.Unlock()
				if fmt.Sprint(at) != fmt.Sprint(tt.wantRead) {
					t.Errorf("reads at %v, want %v", at, tt.wantRead)
				}
			})
		})
	}
}
