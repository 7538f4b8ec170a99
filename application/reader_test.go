package application_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/fraiseql/fraiseql-observer/adapters/memory"
	"github.com/fraiseql/fraiseql-observer/application"
	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// handlerSpy wraps a Handler and records what the reader hands it.
type handlerSpy struct {
	next application.Handler

	mu       sync.Mutex
	handled  []ports.Position
	finished map[ports.Position]int
	inFlight int
	peak     int
}

var _ application.Handler = (*handlerSpy)(nil)

func (h *handlerSpy) Begin() { h.next.Begin() }

func (h *handlerSpy) Handle(rec ports.Record, finish func()) {
	h.mu.Lock()
	h.handled = append(h.handled, rec.Position)
	h.inFlight++
	h.peak = max(h.peak, h.inFlight)
	h.mu.Unlock()
	h.next.Handle(rec, func() {
		h.mu.Lock()
		h.inFlight--
		h.finished[rec.Position]++
		h.mu.Unlock()
		finish()
	})
}

func (h *handlerSpy) Run(ctx context.Context) error { return h.next.Run(ctx) }

func (h *handlerSpy) handledPositions() []ports.Position {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.handled)
}

func (h *handlerSpy) finishedAll(seqs ...int64) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, s := range seqs {
		if h.finished[ports.Position{Seq: s}] == 0 {
			return false
		}
	}
	return true
}

func (h *handlerSpy) finishCounts() map[ports.Position]int {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make(map[ports.Position]int, len(h.finished))
	for k, v := range h.finished {
		out[k] = v
	}
	return out
}

func (h *handlerSpy) peakInFlight() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.peak
}

// eventSource is a fake source whose methods are function fields.
type eventSource struct {
	ReadFunc func(ctx context.Context, after ports.Position, limit ports.ReadLimit) (ports.Batch, error)
	WaitFunc func(ctx context.Context) error
}

var _ ports.EventSource = (*eventSource)(nil)

func (s *eventSource) Read(ctx context.Context, after ports.Position, limit ports.ReadLimit) (ports.Batch, error) {
	return s.ReadFunc(ctx, after, limit)
}

func (s *eventSource) Wait(ctx context.Context) error { return s.WaitFunc(ctx) }

// checkpointStore is a fake store whose methods are function fields.
type checkpointStore struct {
	LoadFunc func(ctx context.Context, name string) (ports.Position, bool, error)
	SaveFunc func(ctx context.Context, name string, pos ports.Position) error
}

var _ ports.CheckpointStore = (*checkpointStore)(nil)

func (s *checkpointStore) Load(ctx context.Context, name string) (ports.Position, bool, error) {
	return s.LoadFunc(ctx, name)
}

func (s *checkpointStore) Save(ctx context.Context, name string, pos ports.Position) error {
	return s.SaveFunc(ctx, name, pos)
}

func (s *checkpointStore) SaveFenced(ctx context.Context, name string, pos ports.Position, _ ports.Fence) error {
	return s.SaveFunc(ctx, name, pos)
}

type pipeline struct {
	reader  *application.Reader
	spy     *handlerSpy
	dlq     *memory.DeadLetters
	metrics *metrics
}

type pipelineSetup struct {
	source      ports.EventSource
	checkpoints ports.CheckpointStore
	exec        ports.ActionExecutor
	retry       domain.RetryPolicy // zero: fixedRetry(3, 2ms)
	grace       time.Duration      // scheduler shutdown grace (zero: its default)
	reader      application.ReaderConfig
}

// newPipeline builds reader → scheduler → processor with one observer of
// every entity. Reader timings default to a few milliseconds.
func newPipeline(t testing.TB, s pipelineSetup) *pipeline {
	t.Helper()
	p := &pipeline{dlq: memory.NewDeadLetters(nil), metrics: newMetrics()}
	obs := observer("obs", "*", "act")
	obs.Retry = fixedRetry(3, 2*time.Millisecond)
	if s.retry != (domain.RetryPolicy{}) {
		obs.Retry = s.retry
	}
	proc := newProcessor(t, []domain.Observer{obs}, s.exec, p.dlq, application.ProcessorConfig{})
	sched, err := application.NewScheduler(proc, application.SchedulerConfig{Logger: discardLogger(), ShutdownGrace: s.grace})
	if err != nil {
		t.Fatalf("new scheduler: %v", err)
	}
	p.spy = &handlerSpy{next: sched, finished: map[ports.Position]int{}}
	cfg := s.reader
	cfg.Logger = discardLogger()
	cfg.Metrics = p.metrics
	if cfg.CheckpointInterval == 0 {
		cfg.CheckpointInterval = 5 * time.Millisecond
	}
	if cfg.RetryMin == 0 {
		cfg.RetryMin, cfg.RetryMax = time.Millisecond, 5*time.Millisecond
	}
	p.reader, err = application.NewReader(s.source, s.checkpoints, p.spy, cfg)
	if err != nil {
		t.Fatalf("new reader: %v", err)
	}
	return p
}

func newMemorySource(t testing.TB) *memory.Source {
	t.Helper()
	src, err := memory.NewSource(nil, memory.SourceConfig{PollInterval: 5 * time.Millisecond})
	if err != nil {
		t.Fatalf("new source: %v", err)
	}
	return src
}

// appendEvents appends one event per entity name (IDs "<entity>-<n>",
// counting per entity) and returns the event IDs by position.
func appendEvents(t testing.TB, src *memory.Source, entities ...string) []string {
	t.Helper()
	counts := map[string]int{}
	var ids []string
	for _, e := range entities {
		ev := seqEvent(e, counts[e])
		counts[e]++
		if _, err := src.Append(t.Context(), ev); err != nil {
			t.Fatalf("append: %v", err)
		}
		ids = append(ids, ev.ID)
	}
	return ids
}

func savedAt(t testing.TB, cps ports.CheckpointStore, want int64) func() bool {
	return func() bool {
		pos, ok, err := cps.Load(t.Context(), "default")
		return err == nil && ok && pos == ports.Position{Seq: want}
	}
}

func loadCheckpoint(t testing.TB, cps ports.CheckpointStore) ports.Position {
	t.Helper()
	pos, _, err := cps.Load(t.Context(), "default")
	if err != nil {
		t.Fatalf("load checkpoint: %v", err)
	}
	return pos
}

func positions(seqs ...int64) []ports.Position {
	var out []ports.Position
	for _, s := range seqs {
		out = append(out, ports.Position{Seq: s})
	}
	return out
}

func seqRange(from, to int64) []int64 {
	var out []int64
	for s := from; s <= to; s++ {
		out = append(out, s)
	}
	return out
}

func TestReaderDeliversEveryEvent(t *testing.T) {
	t.Parallel()
	for _, batch := range []int{1, 4, 500} {
		t.Run(fmt.Sprint("batch ", batch), func(t *testing.T) {
			t.Parallel()
			src, cps := newMemorySource(t), memory.NewCheckpoints()
			exec, calls := recording(nil)
			p := newPipeline(t, pipelineSetup{source: src, checkpoints: cps, exec: exec, reader: application.ReaderConfig{BatchSize: batch}})
			var entities []string
			for i := range 30 {
				entities = append(entities, fmt.Sprint("ent", i%5))
			}
			ids := appendEvents(t, src, entities...)
			run := runInBackground(t, p.reader.Run)
			eventually(t, "checkpoint at 30", savedAt(t, cps, 30))

			// Events appended while the reader waits are delivered too.
			ids = append(ids, appendEvents(t, src, "late0", "late1", "late0")...)
			eventually(t, "checkpoint at 33", savedAt(t, cps, 33))
			// The status notes a save just after the store took it.
			eventually(t, "status saved at 33", func() bool { return p.reader.Status().Saved == ports.Position{Seq: 33} })
			if st := p.reader.Status(); !st.Running || st.Saved != (ports.Position{Seq: 33}) || st.ReadAt != (ports.Position{Seq: 33}) || st.LastReadAt.IsZero() {
				t.Errorf("Status() = %+v, want running, saved and read at 33", st)
			}
			if err := run.Stop(t); err != nil {
				t.Fatalf("Run = %v, want nil", err)
			}
			if p.reader.Status().Running {
				t.Errorf("Status().Running after Run returned")
			}

			if got, want := p.spy.handledPositions(), positions(seqRange(1, 33)...); !slices.Equal(got, want) {
				t.Errorf("handled %v, want %v", got, want)
			}
			for _, id := range ids {
				if n := calls.count(id); n != 1 {
					t.Errorf("event %s executed %d times, want 1", id, n)
				}
			}
			for pos, n := range p.spy.finishCounts() {
				if n != 1 {
					t.Errorf("record %v finished %d times, want 1", pos, n)
				}
			}
			p.metrics.mu.Lock()
			last := p.metrics.checkpoints[len(p.metrics.checkpoints)-1]
			p.metrics.mu.Unlock()
			if last != (ports.Position{Seq: 33}) {
				t.Errorf("last checkpoint metric %v, want 33", last)
			}
		})
	}
}

func TestReaderCheckpointWaitsForUnfinishedEvent(t *testing.T) {
	t.Parallel()
	src, cps := newMemorySource(t), memory.NewCheckpoints()
	var released atomic.Bool
	exec, calls := recording(func(_ context.Context, ev *domain.Event, _ *domain.Observer, _ *domain.Action) error {
		if ev.ID == "X-0" && !released.Load() {
			return domain.Transient(errBoom, 0)
		}
		return nil
	})
	p := newPipeline(t, pipelineSetup{source: src, checkpoints: cps, exec: exec, retry: fixedRetry(1_000_000, 2*time.Millisecond)})
	// positions:          1    2    3    4    5    6    7
	appendEvents(t, src, "A", "B", "X", "C", "D", "X", "E")
	runInBackground(t, p.reader.Run)

	eventually(t, "the other entities finished and X-0 retried", func() bool {
		return p.spy.finishedAll(1, 2, 4, 5, 7) && calls.count("X-0") >= 3
	})
	eventually(t, "checkpoint at 2", savedAt(t, cps, 2))
	time.Sleep(30 * time.Millisecond) // several checkpoint intervals
	if got := loadCheckpoint(t, cps); got != (ports.Position{Seq: 2}) {
		t.Fatalf("checkpoint %v passed the unfinished event at 3", got)
	}
	if calls.count("X-1") != 0 {
		t.Fatalf("X-1 ran before X-0 finished")
	}

	released.Store(true)
	eventually(t, "checkpoint at 7", savedAt(t, cps, 7))
	if !p.spy.finishedAll(3, 6) || calls.count("X-1") != 1 {
		t.Errorf("X events not finished after the checkpoint passed them")
	}
}

func TestReaderRestartRedeliversAfterCheckpoint(t *testing.T) {
	t.Parallel()
	src, cps := newMemorySource(t), memory.NewCheckpoints()
	// positions:          1    2    3    4    5
	appendEvents(t, src, "A", "B", "X", "X", "C")

	// First run: X-0 never completes, so stay unfinished.
	exec1, calls1 := recording(func(ctx context.Context, ev *domain.Event, _ *domain.Observer, _ *domain.Action) error {
		if ev.EntityID == "X" {
			<-ctx.Done()
			return ctx.Err()
		}
		return nil
	})
	first := newPipeline(t, pipelineSetup{source: src, checkpoints: cps, exec: exec1, grace: 20 * time.Millisecond})
	run1 := runInBackground(t, first.reader.Run)
	eventually(t, "A, B and C finished", func() bool { return first.spy.finishedAll(1, 2, 5) && calls1.count("X-0") == 1 })
	if err := run1.Stop(t); err != nil {
		t.Fatalf("first Run = %v", err)
	}
	if got := loadCheckpoint(t, cps); got != (ports.Position{Seq: 2}) {
		t.Fatalf("checkpoint after the first run = %v, want 2 (X-0 at 3 unfinished)", got)
	}

	// Second run: everything after the checkpoint comes again, nothing
	// before it.
	exec2, calls2 := recording(nil)
	second := newPipeline(t, pipelineSetup{source: src, checkpoints: cps, exec: exec2})
	run2 := runInBackground(t, second.reader.Run)
	eventually(t, "checkpoint at 5", savedAt(t, cps, 5))
	if err := run2.Stop(t); err != nil {
		t.Fatalf("second Run = %v", err)
	}
	if got, want := second.spy.handledPositions(), positions(3, 4, 5); !slices.Equal(got, want) {
		t.Errorf("second run handled %v, want %v", got, want)
	}
	var got []string
	for _, c := range calls2.all() {
		got = append(got, c.EventID)
	}
	if want := []string{"X-0", "X-1", "C-0"}; !sameElements(got, want) {
		t.Errorf("second run executed %v, want %v", got, want)
	}
}

func sameElements(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

func TestReaderMaxInFlight(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name        string
		maxInFlight int
		sameEntity  bool
	}{
		{name: "different entities", maxInFlight: 4},
		{name: "one entity", maxInFlight: 3, sameEntity: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			src, cps := newMemorySource(t), memory.NewCheckpoints()
			release := make(chan struct{})
			exec := blockedUntil(release)
			p := newPipeline(t, pipelineSetup{source: src, checkpoints: cps, exec: exec,
				reader: application.ReaderConfig{MaxInFlight: tt.maxInFlight, BatchSize: 10}})
			var entities []string
			for i := range 20 {
				if tt.sameEntity {
					entities = append(entities, "one")
				} else {
					entities = append(entities, fmt.Sprint("ent", i))
				}
			}
			appendEvents(t, src, entities...)
			runInBackground(t, p.reader.Run)

			eventually(t, "the bound reached", func() bool { return len(p.spy.handledPositions()) == tt.maxInFlight })
			time.Sleep(30 * time.Millisecond) // room for a wrong extra read
			if got := len(p.spy.handledPositions()); got != tt.maxInFlight {
				t.Fatalf("%d records handed to the handler while all were blocked, want %d", got, tt.maxInFlight)
			}
			if n := p.metrics.lastInFlight(); n != tt.maxInFlight {
				t.Errorf("events_in_flight %d while blocked, want %d", n, tt.maxInFlight)
			}
			close(release)
			eventually(t, "checkpoint at 20", savedAt(t, cps, 20))
			if got := p.spy.peakInFlight(); got != tt.maxInFlight {
				t.Errorf("at most %d records in flight, want %d", got, tt.maxInFlight)
			}
		})
	}
}

// A term that ends leaves events_in_flight at 0 (a standby holds
// nothing), not at the count of its last read.
func TestReaderInFlightGaugeEndsAtZero(t *testing.T) {
	t.Parallel()
	src, cps := newMemorySource(t), memory.NewCheckpoints()
	release := make(chan struct{})
	p := newPipeline(t, pipelineSetup{source: src, checkpoints: cps, exec: blockedUntil(release),
		reader: application.ReaderConfig{MaxInFlight: 4, BatchSize: 10}, grace: 10 * time.Millisecond})
	appendEvents(t, src, numbered("ent", 8)...)
	bg := runInBackground(t, p.reader.Run)
	eventually(t, "4 events in flight", func() bool { return p.metrics.lastInFlight() == 4 })
	_ = bg.Stop(t)
	close(release)
	if n := p.metrics.lastInFlight(); n != 0 {
		t.Errorf("events_in_flight %d after the term ended, want 0", n)
	}
}

// While the reader waits for new rows, events_in_flight follows the
// events it handed as they finish (by the next checkpoint save at the
// latest), rather than keeping the count of its last loop: a quiet
// stream after a burst showed events in flight for as long as it stayed
// quiet.
func TestReaderInFlightGaugeFollowsFinishesWhileIdle(t *testing.T) {
	t.Parallel()
	src, cps := newMemorySource(t), memory.NewCheckpoints()
	release := make(chan struct{})
	// A source with nothing more to say: its Wait ends only with the term.
	quiet := &eventSource{ReadFunc: src.Read, WaitFunc: func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }}
	p := newPipeline(t, pipelineSetup{source: quiet, checkpoints: cps, exec: blockedUntil(release),
		reader: application.ReaderConfig{BatchSize: 10, CheckpointInterval: 10 * time.Millisecond}})
	appendEvents(t, src, numbered("ent", 3)...)
	runInBackground(t, p.reader.Run)
	eventually(t, "3 events in flight", func() bool { return p.metrics.lastInFlight() == 3 })
	close(release)
	eventually(t, "checkpoint at 3", savedAt(t, cps, 3))
	eventually(t, "events_in_flight back to 0 while the reader waits", func() bool { return p.metrics.lastInFlight() == 0 })
}

// numbered returns n names: prefix0, prefix1, ...
func numbered(prefix string, n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprint(prefix, i)
	}
	return names
}

// TestReaderReadsHalfABatchWhenFull: at the in-flight bound, the reader
// waits until half a batch of room is free before its next read, rather
// than reading a row or two as each event finishes (which multiplied the
// reads when the actions were the bottleneck).
func TestReaderReadsHalfABatchWhenFull(t *testing.T) {
	t.Parallel()
	// In a bubble (fake time): the 50µs pace between tokens is exact, so
	// room comes back well within lowRoomWait however loaded the machine.
	synctest.Test(t, func(t *testing.T) {
		mem := newMemorySource(t)
		appendEvents(t, mem, numbered("ent", 200)...)
		var (
			mu    sync.Mutex
			reads []int // each read's row limit
		)
		src := &eventSource{
			ReadFunc: func(ctx context.Context, after ports.Position, limit ports.ReadLimit) (ports.Batch, error) {
				mu.Lock()
				reads = append(reads, limit.Rows)
				mu.Unlock()
				return mem.Read(ctx, after, limit)
			},
			WaitFunc: mem.Wait,
		}
		tokens := make(chan struct{})
		exec := ports.ActionExecutorFunc(func(ctx context.Context, _ *domain.Event, _ *domain.Observer, _ *domain.Action) error {
			select { // one event finishes per token
			case <-tokens:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
		cps := memory.NewCheckpoints()
		p := newPipeline(t, pipelineSetup{source: src, checkpoints: cps, exec: exec,
			reader: application.ReaderConfig{MaxInFlight: 20, BatchSize: 10}})
		runInBackground(t, p.reader.Run)
		for range 200 {
			select {
			case tokens <- struct{}{}:
			case <-time.After(10 * time.Second):
				t.Fatal("no event took a token for 10s")
			}
			time.Sleep(50 * time.Microsecond) // finishes one at a time, reads in between
		}
		eventually(t, "checkpoint at 200", savedAt(t, cps, 200))
		mu.Lock()
		defer mu.Unlock()
		// A read below half a batch happens only when the room stayed short
		// for lowRoomWait (20ms): rare here, where an event finishes every
		// ~50µs; before, nearly every read was of one or two rows.
		small := 0
		for _, rows := range reads {
			if rows < 5 {
				small++
			}
		}
		if small > len(reads)/10 || len(reads) > 60 {
			t.Fatalf("%d reads, %d of them below half a batch (5 rows): %v; want at most 60, and few small", len(reads), small, reads)
		}
		if p.spy.peakInFlight() > 20 {
			t.Errorf("peak in flight %d, want at most 20", p.spy.peakInFlight())
		}
	})
}

// TestReaderReadsPastEventsHoldingTheirRoom: events that keep their room
// (an action that does not finish) leave less than half a batch free; the
// reader still reads into what is left, after a short wait, so the other
// events move on.
func TestReaderReadsPastEventsHoldingTheirRoom(t *testing.T) {
	t.Parallel()
	mem := newMemorySource(t)
	appendEvents(t, mem, append(numbered("stuck", 16), numbered("free", 30)...)...)
	release := make(chan struct{})
	var freeDone atomic.Int32
	exec := ports.ActionExecutorFunc(func(ctx context.Context, ev *domain.Event, _ *domain.Observer, _ *domain.Action) error {
		if strings.HasPrefix(ev.EntityID, "stuck") {
			return untilReleased(ctx, release)
		}
		freeDone.Add(1)
		return nil
	})
	p := newPipeline(t, pipelineSetup{source: mem, checkpoints: memory.NewCheckpoints(), exec: exec,
		reader: application.ReaderConfig{MaxInFlight: 20, BatchSize: 10}})
	runInBackground(t, p.reader.Run)
	eventually(t, "the 30 other events done while 16 hold their room", func() bool { return freeDone.Load() == 30 })
	close(release) // before the reader's shutdown, which waits for the actions
	if got := p.spy.peakInFlight(); got > 20 {
		t.Errorf("peak in flight %d, want at most 20", got)
	}
}

// TestReaderMaxInFlightBytes: reading pauses when the unfinished events
// weigh MaxInFlightBytes (Record.Size), whatever their count, and goes on
// as they finish. Before, only the count was bounded: big events filled
// memory (40 rows of 10 MiB took the process to 2 GB).
func TestReaderMaxInFlightBytes(t *testing.T) {
	t.Parallel()
	src, cps := newMemorySource(t), memory.NewCheckpoints()
	for i := range 20 {
		if _, err := src.Append(t.Context(), event(fmt.Sprint("e-", i), "order", fmt.Sprint("ent", i),
			map[string]any{"blob": strings.Repeat("x", 1000)})); err != nil {
			t.Fatal(err)
		}
	}
	first, err := src.Read(t.Context(), ports.Position{}, ports.ReadLimit{Rows: 1})
	if err != nil || first.Records[0].Size < 1000 {
		t.Fatalf("the source does not weigh its events: %+v, %v", first, err)
	}
	size := first.Records[0].Size
	release := make(chan struct{})
	exec := blockedUntil(release)
	p := newPipeline(t, pipelineSetup{source: src, checkpoints: cps, exec: exec,
		reader: application.ReaderConfig{MaxInFlightBytes: 3 * size, BatchSize: 10}})
	runInBackground(t, p.reader.Run)

	eventually(t, "the byte bound reached", func() bool { return len(p.spy.handledPositions()) == 3 })
	time.Sleep(30 * time.Millisecond) // room for a wrong extra read
	if got := len(p.spy.handledPositions()); got != 3 {
		t.Fatalf("%d records of %d bytes handed to the handler under a %d-byte bound, want 3", got, size, 3*size)
	}
	if st := p.reader.Status(); st.InFlightBytes != 3*size {
		t.Errorf("status in-flight bytes = %d, want %d", st.InFlightBytes, 3*size)
	}
	close(release)
	eventually(t, "checkpoint at 20", savedAt(t, cps, 20))
	if got := p.spy.peakInFlight(); got != 3 {
		t.Errorf("at most %d records in flight, want 3", got)
	}
}

// failFirst counts calls and reports whether this one is among the first n.
func failFirst(n int) func() bool {
	var calls atomic.Int32
	return func() bool { return int(calls.Add(1)) <= n }
}

func TestReaderRetriesStoreErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name                            string
		failReads, failLoads, failSaves int
	}{
		{name: "source reads fail", failReads: 3},
		{name: "checkpoint loads fail", failLoads: 3},
		{name: "checkpoint saves fail", failSaves: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			mem, memCps := newMemorySource(t), memory.NewCheckpoints()
			readFails, loadFails, saveFails := failFirst(tt.failReads), failFirst(tt.failLoads), failFirst(tt.failSaves)
			var failed atomic.Int32
			src := &eventSource{
				ReadFunc: func(ctx context.Context, after ports.Position, limit ports.ReadLimit) (ports.Batch, error) {
					if readFails() {
						failed.Add(1)
						return ports.Batch{}, fmt.Errorf("read: %w", ports.ErrUnavailable)
					}
					return mem.Read(ctx, after, limit)
				},
				WaitFunc: mem.Wait,
			}
			cps := &checkpointStore{
				LoadFunc: func(ctx context.Context, name string) (ports.Position, bool, error) {
					if loadFails() {
						failed.Add(1)
						return ports.Position{}, false, fmt.Errorf("load: %w", ports.ErrUnavailable)
					}
					return memCps.Load(ctx, name)
				},
				SaveFunc: func(ctx context.Context, name string, pos ports.Position) error {
					if saveFails() {
						failed.Add(1)
						return fmt.Errorf("save: %w", ports.ErrUnavailable)
					}
					return memCps.Save(ctx, name, pos)
				},
			}
			exec, calls := recording(nil)
			p := newPipeline(t, pipelineSetup{source: src, checkpoints: cps, exec: exec})
			ids := appendEvents(t, mem, "A", "B", "A", "C", "B", "A")
			runInBackground(t, p.reader.Run)
			eventually(t, "checkpoint at 6", savedAt(t, memCps, 6))
			if got, want := int(failed.Load()), tt.failReads+tt.failLoads+tt.failSaves; got != want {
				t.Errorf("%d injected failures happened, want %d", got, want)
			}
			for _, id := range ids {
				if calls.count(id) != 1 {
					t.Errorf("event %s executed %d times, want 1", id, calls.count(id))
				}
			}
		})
	}
}

// scriptedSource serves entries 1..len(script): 'E' is an event, 'S' an
// entry the source examines but skips (a NOOP row).
func scriptedSource(script string) *eventSource {
	return &eventSource{
		ReadFunc: func(_ context.Context, after ports.Position, limit ports.ReadLimit) (ports.Batch, error) {
			b := ports.Batch{End: after}
			for seq := after.Seq + 1; seq <= int64(len(script)) && seq <= after.Seq+int64(limit.Rows); seq++ {
				b.End = ports.Position{Seq: seq}
				if script[seq-1] == 'E' {
					b.Records = append(b.Records, record(seq, seqEvent(fmt.Sprint("ent", seq), 0)))
				}
			}
			return b, nil
		},
		WaitFunc: func(ctx context.Context) error {
			sleepCtx(ctx, 2*time.Millisecond)
			return ctx.Err()
		},
	}
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

func TestReaderSkippedEntriesAdvanceCheckpoint(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		script      string
		batch       int
		wantHandled []int64
	}{
		{name: "skips after the last record of a batch", script: "ESSESS", batch: 2, wantHandled: []int64{1, 4}},
		{name: "skips only", script: "SSSSS", batch: 2},
		{name: "skips before a record", script: "SSE", batch: 10, wantHandled: []int64{3}},
		{name: "skips in one large batch", script: "ESESSS", batch: 100, wantHandled: []int64{1, 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cps := memory.NewCheckpoints()
			exec, _ := recording(nil)
			p := newPipeline(t, pipelineSetup{source: scriptedSource(tt.script), checkpoints: cps, exec: exec,
				reader: application.ReaderConfig{BatchSize: tt.batch}})
			runInBackground(t, p.reader.Run)
			eventually(t, "checkpoint at the last entry", savedAt(t, cps, int64(len(tt.script))))
			if got, want := p.spy.handledPositions(), positions(tt.wantHandled...); !slices.Equal(got, want) {
				t.Errorf("handled %v, want %v", got, want)
			}
		})
	}
}

func TestReaderShutdownSavesFinalCheckpoint(t *testing.T) {
	t.Parallel()
	src, cps := newMemorySource(t), memory.NewCheckpoints()
	exec, _ := recording(nil)
	p := newPipeline(t, pipelineSetup{source: src, checkpoints: cps, exec: exec,
		reader: application.ReaderConfig{CheckpointInterval: time.Hour}})
	appendEvents(t, src, "A", "B", "A", "C")
	run := runInBackground(t, p.reader.Run)
	eventually(t, "every event finished", func() bool { return p.spy.finishedAll(1, 2, 3, 4) })
	if _, ok, _ := cps.Load(t.Context(), "default"); ok {
		t.Fatalf("checkpoint saved before the interval passed")
	}
	if err := run.Stop(t); err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
	if got := loadCheckpoint(t, cps); got != (ports.Position{Seq: 4}) {
		t.Errorf("checkpoint after shutdown = %v, want 4", got)
	}
}

// TestReaderReadsWhileASaveHangs: a checkpoint save that does not return
// holds back neither the reads nor the events; the checkpoint follows once
// the store answers again.
func TestReaderReadsWhileASaveHangs(t *testing.T) {
	t.Parallel()
	src, memCps := newMemorySource(t), memory.NewCheckpoints()
	hang := make(chan struct{})
	var saving sync.Once
	entered := make(chan struct{})
	cps := &checkpointStore{
		LoadFunc: memCps.Load,
		SaveFunc: func(ctx context.Context, name string, pos ports.Position) error {
			saving.Do(func() { close(entered) })
			select {
			case <-hang:
			case <-ctx.Done():
				return ctx.Err()
			}
			return memCps.Save(ctx, name, pos)
		},
	}
	exec, _ := recording(nil)
	p := newPipeline(t, pipelineSetup{source: src, checkpoints: cps, exec: exec})
	run := runInBackground(t, p.reader.Run)
	appendEvents(t, src, "A")
	eventually(t, "the first save under way", func() bool {
		select {
		case <-entered:
			return true
		default:
			return false
		}
	})
	appendEvents(t, src, "B", "C")
	eventually(t, "events read and finished while the save hangs", func() bool { return p.spy.finishedAll(1, 2, 3) })
	close(hang)
	eventually(t, "checkpoint at 3", savedAt(t, memCps, 3))
	if err := run.Stop(t); err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
}

// TestReaderWaitsAfterAShortRead: a read that returned one record (or
// none) is followed by Wait, not by a read that would come back empty; a
// full read, or one that found several records, is followed by the next
// read at once.
func TestReaderWaitsAfterAShortRead(t *testing.T) {
	t.Parallel()
	const batch = 4
	var (
		mu    sync.Mutex
		calls []string
		next  int64
	)
	// Reads return, in turn, a full batch, two records, one, then nothing.
	sizes := []int{batch, 2, 1}
	src := &eventSource{
		ReadFunc: func(_ context.Context, after ports.Position, limit ports.ReadLimit) (ports.Batch, error) {
			mu.Lock()
			defer mu.Unlock()
			calls = append(calls, fmt.Sprintf("read(%d)", limit.Rows))
			b := ports.Batch{End: after}
			if len(sizes) > 0 {
				n := sizes[0]
				sizes = sizes[1:]
				for range n {
					next++
					b.Records = append(b.Records, record(next, seqEvent(fmt.Sprint("e", next), 0)))
				}
				b.End = b.Records[len(b.Records)-1].Position
			}
			return b, nil
		},
		WaitFunc: func(ctx context.Context) error {
			mu.Lock()
			calls = append(calls, "wait")
			mu.Unlock()
			select {
			case <-ctx.Done():
			case <-time.After(time.Millisecond):
			}
			return nil
		},
	}
	exec, _ := recording(nil)
	p := newPipeline(t, pipelineSetup{source: src, checkpoints: memory.NewCheckpoints(), exec: exec, reader: application.ReaderConfig{BatchSize: batch}})
	run := runInBackground(t, p.reader.Run)
	eventually(t, "the batches finished", func() bool { return p.spy.finishedAll(1, 2, 3, 4, 5, 6, 7) })
	eventually(t, "a few calls", func() bool { mu.Lock(); defer mu.Unlock(); return len(calls) >= 5 })
	if err := run.Stop(t); err != nil {
		t.Fatalf("Run = %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{"read(4)", "read(4)", "read(4)", "wait", "read(4)"}
	if !slices.Equal(calls[:5], want) {
		t.Errorf("calls = %v, want them to start with %v", calls, want)
	}
}

func TestNewReaderValidates(t *testing.T) {
	t.Parallel()
	src, cps := newMemorySource(t), memory.NewCheckpoints()
	handler := &handlerSpy{}
	tests := []struct {
		name    string
		source  ports.EventSource
		cps     ports.CheckpointStore
		handler application.Handler
		cfg     application.ReaderConfig
		ok      bool
	}{
		{name: "defaults", source: src, cps: cps, handler: handler, cfg: application.ReaderConfig{Logger: discardLogger()}, ok: true},
		{name: "no source", cps: cps, handler: handler, cfg: application.ReaderConfig{Logger: discardLogger()}},
		{name: "no checkpoints", source: src, handler: handler, cfg: application.ReaderConfig{Logger: discardLogger()}},
		{name: "no handler", source: src, cps: cps, cfg: application.ReaderConfig{Logger: discardLogger()}},
		{name: "no logger", source: src, cps: cps, handler: handler},
		{name: "negative batch", source: src, cps: cps, handler: handler, cfg: application.ReaderConfig{Logger: discardLogger(), BatchSize: -1}},
		{name: "negative max in flight", source: src, cps: cps, handler: handler, cfg: application.ReaderConfig{Logger: discardLogger(), MaxInFlight: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r, err := application.NewReader(tt.source, tt.cps, tt.handler, tt.cfg)
			if (err == nil) != tt.ok || (r != nil) != tt.ok {
				t.Errorf("NewReader = %v, %v; want ok=%v", r, err, tt.ok)
			}
		})
	}
}

// TestReaderStates: standby between terms, reading while the checkpoint
// moves, stalled once it has not moved for StallAfter while events are
// unfinished, reading again when it moves.
func TestReaderStates(t *testing.T) {
	t.Parallel()
	clock := newClock()
	release := make(chan struct{})
	exec := blockedUntil(release)
	src, cps := newMemorySource(t), memory.NewCheckpoints()
	proc := newProcessor(t, []domain.Observer{observer("obs", "*", "act")}, exec, memory.NewDeadLetters(nil), application.ProcessorConfig{})
	sched, err := application.NewScheduler(proc, application.SchedulerConfig{Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	reader, err := application.NewReader(src, cps, sched, application.ReaderConfig{
		StallAfter: time.Minute, CheckpointInterval: time.Millisecond, Logger: discardLogger(), Now: clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	state := func() application.ReaderState { return reader.Status().State }
	if s := state(); s != application.ReaderStandby {
		t.Fatalf("before Run: %q, want standby", s)
	}
	run := runInBackground(t, reader.Run)
	eventually(t, "reading", func() bool { return state() == application.ReaderReading })
	appendEvents(t, src, "a")
	eventually(t, "the event in flight", func() bool { return reader.Status().InFlight == 1 })
	clock.Advance(59 * time.Second)
	if s := state(); s != application.ReaderReading {
		t.Fatalf("before StallAfter: %q, want reading", s)
	}
	clock.Advance(2 * time.Second)
	if s := state(); s != application.ReaderStalled {
		t.Fatalf("after StallAfter with the event unfinished: %q, want stalled", s)
	}
	close(release)
	eventually(t, "reading again once the checkpoint moved", func() bool { return state() == application.ReaderReading })
	if err := run.Stop(t); err != nil {
		t.Fatal(err)
	}
	if s := state(); s != application.ReaderStandby {
		t.Fatalf("after Run: %q, want standby", s)
	}
}

// The scheduler's shutdown grace ends when the lease is lost during it:
// an action still running after the shutdown sees its context cancelled
// once the renewals have failed long enough, not after the grace (a
// minute here), so it cannot go on beside the replica that takes over.
func TestSchedulerGraceEndsWhenTheLeaseIsLost(t *testing.T) {
	t.Parallel()
	src, cps := newMemorySource(t), memory.NewCheckpoints()
	started, stopped := make(chan struct{}, 1), make(chan struct{})
	exec, _ := recording(func(ctx context.Context, _ *domain.Event, _ *domain.Observer, _ *domain.Action) error {
		started <- struct{}{}
		<-ctx.Done()
		close(stopped)
		return ctx.Err()
	})
	p := newPipeline(t, pipelineSetup{source: src, checkpoints: cps, exec: exec, grace: time.Minute})
	var shutdown atomic.Bool
	fake := &lease{
		AcquireFunc: func(ctx context.Context, _, _ string, _ time.Duration) (bool, error) {
			if shutdown.Load() {
				return hang(ctx) // the store stops answering
			}
			return true, nil
		},
		ReleaseFunc: func(context.Context, string, string) error { return nil },
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- application.RunWithLease(ctx, fake, leaseConfig("me", 300*time.Millisecond), p.reader.Run)
	}()
	appendEvents(t, src, "A")
	select {
	case <-started:
	case <-time.After(waitTimeout):
		t.Fatal("the action never started")
	}
	shutdown.Store(true)
	cancel()
	select {
	case <-stopped:
	case <-time.After(waitTimeout): // the grace is a minute
		t.Fatal("the action still runs: the lost lease did not end the shutdown grace")
	}
	if err := <-done; err != nil {
		t.Errorf("RunWithLease = %v", err)
	}
}

// A term sets the checkpoint gauges from the loaded checkpoint at once,
// before any save: an alert on a checkpoint that does not move needs the
// series after a restart too.
func TestReaderReportsTheLoadedCheckpoint(t *testing.T) {
	t.Parallel()
	src, cps := newMemorySource(t), memory.NewCheckpoints()
	saved := ports.Position{Seq: 7}
	if err := cps.Save(t.Context(), "default", saved); err != nil {
		t.Fatal(err)
	}
	p := newPipeline(t, pipelineSetup{source: src, checkpoints: cps, exec: blockedUntil(make(chan struct{})),
		reader: application.ReaderConfig{Name: "default"}})
	bg := runInBackground(t, p.reader.Run)
	eventually(t, "the checkpoint reported", func() bool {
		p.metrics.mu.Lock()
		defer p.metrics.mu.Unlock()
		return len(p.metrics.checkpoints) > 0
	})
	_ = bg.Stop(t)
	p.metrics.mu.Lock()
	defer p.metrics.mu.Unlock()
	if p.metrics.checkpoints[0] != saved {
		t.Errorf("first checkpoint reported %v, want the loaded %v", p.metrics.checkpoints[0], saved)
	}
}

// cancelOnFirst is a handler whose first Handle ends the reader's context
// (a shutdown or a lost lease while a handler held the read loop, as a
// bridge waiting for room to publish does).
type cancelOnFirst struct {
	cancel  context.CancelFunc
	handled atomic.Int32
}

func (h *cancelOnFirst) Begin() {}
func (h *cancelOnFirst) Handle(_ ports.Record, finish func()) {
	if h.handled.Add(1) == 1 {
		h.cancel()
	}
	finish()
}
func (h *cancelOnFirst) Run(ctx context.Context) error { <-ctx.Done(); return nil }

// TestReaderStopsHandingABatchAtShutdown: once the reader's context ends,
// the rest of the batch read is not handed to the handler. Before, every
// record of the batch (up to batch_size) was handed after a shutdown or a
// lost lease, which a bridge then published beside the new holder.
func TestReaderStopsHandingABatchAtShutdown(t *testing.T) {
	t.Parallel()
	src := newMemorySource(t)
	for i := range 5 {
		if _, err := src.Append(t.Context(), event(fmt.Sprint("e", i), "Order", fmt.Sprint(i), nil)); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	h := &cancelOnFirst{cancel: cancel}
	r, err := application.NewReader(src, memory.NewCheckpoints(), h, application.ReaderConfig{Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	if n := h.handled.Load(); n != 1 {
		t.Errorf("%d records handed after the context ended, want only the 1 that ended it", n-1)
	}
}
