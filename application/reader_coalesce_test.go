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

// timedReads is a source whose n-th read serves counts[n] records (none
// after the last count; with skip, examines that many rows and returns
// none, as rows no observer wants) and notes when each read and each Wait
// came, since start (a read is noted when it returns, readTime after it
// began); Wait blocks until its context ends.
type timedReads struct {
	mu       sync.Mutex
	skip     bool
	readTime time.Duration
	counts   []int
	start    time.Time
	reads    []time.Duration
	waits    []time.Duration
}

func newTimedReads(counts ...int) *timedReads {
	return &timedReads{counts: counts, start: time.Now()}
}

func (s *timedReads) source() *eventSource {
	return &eventSource{
		ReadFunc: func(_ context.Context, after ports.Position, limit ports.ReadLimit) (ports.Batch, error) {
			time.Sleep(s.readTime)
			s.mu.Lock()
			defer s.mu.Unlock()
			b := ports.Batch{End: after}
			if len(s.reads) >= len(s.counts) {
				return b, nil
			}
			for range min(s.counts[len(s.reads)], limit.Rows) {
				b.End = ports.Position{Seq: b.End.Seq + 1}
				if s.skip {
					b.Skipped++
					continue
				}
				b.Records = append(b.Records, record(b.End.Seq, seqEvent(fmt.Sprint("ent", b.End.Seq), 0)))
			}
			s.reads = append(s.reads, time.Since(s.start))
			return b, nil
		},
		WaitFunc: func(ctx context.Context) error {
			s.mu.Lock()
			s.waits = append(s.waits, time.Since(s.start))
			s.mu.Unlock()
			<-ctx.Done()
			return ctx.Err()
		},
	}
}

// runFor runs a reader of s with cfg for a second of the bubble's time and
// returns when each read and each Wait came.
func (s *timedReads) runFor(t *testing.T, cfg application.ReaderConfig) (reads, waits []time.Duration) {
	t.Helper()
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	r, err := application.NewReader(s.source(), memory.NewCheckpoints(), finishingHandler{}, cfg)
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
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reads, s.waits
}

// A read that found several records without filling the batch is followed
// by a pause of CoalesceWait before the next read; a full read is followed
// by the next read at once; a read of one record waits for the source;
// with CoalesceWait 0 the reader reads again at once. Rows the source
// examined and skipped (Batch.Skipped: rows no observer wants) pace the
// reads as records do.
func TestReaderCoalescesReadsWhileTheSourceIsBusy(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		wait time.Duration
		skip bool
	}{{0, false}, {5 * time.Millisecond, false}, {5 * time.Millisecond, true}} {
		wait := tt.wait
		t.Run(fmt.Sprint("coalesce_wait=", wait, ",skipped=", tt.skip), func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				// Each read serves the next count of records (10 = a full batch).
				src := newTimedReads(3, 10, 4, 1)
				src.skip = tt.skip
				at, waits := src.runFor(t, application.ReaderConfig{BatchSize: 10, CoalesceWait: wait})
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
				at, _ := newTimedReads(100, 100, 30, 2, 1).runFor(t, application.ReaderConfig{
					BatchSize: 1000, CoalesceWait: 2 * time.Millisecond, CoalesceWaitMax: tt.waitMax,
				})
				if fmt.Sprint(at) != fmt.Sprint(tt.wantRead) {
					t.Errorf("reads at %v, want %v", at, tt.wantRead)
				}
			})
		})
	}
}

// With CoalesceWait 0 the pause still grows to CoalesceWaitMax with the
// rate (from 0 at 2 500 rows/s): coalesce_wait = "0s" reads again at once
// only while the writers are slow.
func TestReaderCoalescePauseGrowsFromZero(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		src := newTimedReads(100, 100, 30, 2, 1)
		src.readTime = time.Millisecond
		at, _ := src.runFor(t, application.ReaderConfig{BatchSize: 1000, CoalesceWaitMax: 10 * time.Millisecond})
		if len(at) != 5 {
			t.Fatalf("reads at %v, want 5", at)
		}
		// The first read has no rate: the second starts at once. The
		// second found 100 records in 1ms: 10ms pause. The third, 30 in
		// 11ms (2 727/s): 0.3ms. The fourth, 2 in 1.3ms: none.
		gaps := []time.Duration{at[1] - at[0], at[2] - at[1], at[3] - at[2], at[4] - at[3]}
		want := []time.Duration{time.Millisecond, 11 * time.Millisecond, time.Millisecond + 303030*time.Nanosecond, time.Millisecond}
		for i := range gaps {
			if d := gaps[i] - want[i]; d < -time.Microsecond || d > time.Microsecond {
				t.Errorf("gaps between reads %v, want %v", gaps, want)
				break
			}
		}
	})
}
