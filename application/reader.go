package application

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/fraiseql/fraiseql-observer/ports"
)

// ReaderConfig tunes a Reader.
type ReaderConfig struct {
	// Name keys the checkpoint (default "default").
	Name string
	// BatchSize is the most rows one Read examines (default 500).
	BatchSize int
	// MaxInFlight bounds events read but not finished (default 10000);
	// reading pauses at the bound.
	MaxInFlight int
	// MaxInFlightBytes bounds the weight (Record.Size) of the events read
	// but not finished (default 64 MiB): reading pauses at the bound, and
	// each read's byte budget is the room left (a read returns at least one
	// record, so the weight may pass the bound by one event, at most the
	// source's per-event limit).
	MaxInFlightBytes int64
	// CheckpointInterval is how often the safe position is saved
	// (default 1s), beside the reads (a save never delays a read); it is
	// also saved at shutdown.
	CheckpointInterval time.Duration
	// RetryMin and RetryMax bound the backoff after source or checkpoint
	// errors (defaults 100ms and 10s).
	RetryMin, RetryMax time.Duration
	// Fence is the lease the reader runs under (RunWithLease's name and
	// holder); when set, every checkpoint save is fenced by it
	// (CheckpointStore.SaveFenced), so a reader that lost its lease never
	// overwrites the checkpoint. A refused save ends the term: Run returns
	// an error wrapping ports.ErrLeaseLost.
	Fence ports.Fence
	// StallAfter is how long the checkpoint may stay put while events are
	// unfinished before the reader counts as stalled (default 5m): Status
	// says ReaderStalled and a warning is logged.
	StallAfter time.Duration
	// CoalesceWait is the pause after a read that reached the end of what
	// was readable (fewer records than asked for) with more than one
	// record: the source is busy, and reading again at once would find the
	// few rows committed during the read, one round trip each. After the
	// pause one read collects what was committed meanwhile: fewer reads
	// per event (less CPU in the service and in the source, more for the
	// application's own writes) for at most this much latency. 0 reads
	// again at once while the rate is below coalesceRampLow (above it the
	// pause grows towards CoalesceWaitMax, if that is set). A read that
	// found one record or none waits for the
	// source instead (EventSource.Wait); a full read reads again at once.
	CoalesceWait time.Duration
	// CoalesceWaitMax is the pause while the writers are busiest (at or
	// below CoalesceWait, the pause stays CoalesceWait): the pause grows from
	// CoalesceWait at coalesceRampLow rows/s to CoalesceWaitMax at
	// coalesceRampHigh rows/s and above (the rate of the read that ends
	// it: its records over the time since the read before it), so that
	// the writers lose less to reads when they commit the most, while at
	// lower rates events wait no longer than CoalesceWait.
	CoalesceWaitMax time.Duration
	Logger          *slog.Logger
	Metrics         ports.Metrics
	Now             func() time.Time
}

// Reader moves events from a source to a Handler and saves the checkpoint:
// the highest position up to which every event is finished. After a crash
// the events after the checkpoint are read again (at-least-once).
type Reader struct {
	source      ports.EventSource
	checkpoints ports.CheckpointStore
	handler     Handler
	cfg         ReaderConfig

	mu     sync.Mutex
	status ReaderStatus
	tr     *tracker // the current term's; nil between terms
}

// ReaderState tells what a reader is doing.
type ReaderState string

// The reader states.
const (
	// ReaderStandby: no term runs (another replica holds the lease, or
	// the process is starting or stopping).
	ReaderStandby ReaderState = "standby"
	// ReaderReading: a term runs and the checkpoint moves.
	ReaderReading ReaderState = "reading"
	// ReaderStalled: a term runs, events are unfinished, and the
	// checkpoint has not moved for longer than StallAfter.
	ReaderStalled ReaderState = "stalled"
)

// ReaderStatus is a snapshot for health checks and the status command.
type ReaderStatus struct {
	// State is standby, reading or stalled.
	State    ReaderState    `json:"state"`
	Running  bool           `json:"running"`
	ReadAt   ports.Position `json:"read_at"` // next read continues after this
	Saved    ports.Position `json:"saved"`   // last saved checkpoint
	InFlight int            `json:"in_flight"`
	// InFlightBytes is the weight of the unfinished events (Record.Size).
	InFlightBytes int64     `json:"in_flight_bytes"`
	LastReadAt    time.Time `json:"last_read_at,omitzero"` // last successful read
	LastError     string    `json:"last_error,omitempty"`  // last read or checkpoint error, "" after a success
	// ProgressAt is when the safe position last moved, or when work
	// became pending after none was (zero between terms).
	ProgressAt time.Time `json:"progress_at,omitzero"`
}

// NewReader builds a reader; Run starts it.
func NewReader(source ports.EventSource, checkpoints ports.CheckpointStore, handler Handler, cfg ReaderConfig) (*Reader, error) {
	if source == nil || checkpoints == nil || handler == nil || cfg.Logger == nil {
		return nil, errors.New("reader: source, checkpoints, handler and logger are required")
	}
	cfg.Name = cmp.Or(cfg.Name, "default")
	cfg.BatchSize = cmp.Or(cfg.BatchSize, 500)
	cfg.MaxInFlight = cmp.Or(cfg.MaxInFlight, 10000)
	cfg.MaxInFlightBytes = cmp.Or(cfg.MaxInFlightBytes, 64<<20)
	cfg.CheckpointInterval = cmp.Or(cfg.CheckpointInterval, time.Second)
	cfg.RetryMin = cmp.Or(cfg.RetryMin, 100*time.Millisecond)
	cfg.RetryMax = cmp.Or(cfg.RetryMax, 10*time.Second)
	cfg.StallAfter = cmp.Or(cfg.StallAfter, 5*time.Minute)
	cfg.Metrics = cmp.Or[ports.Metrics](cfg.Metrics, ports.NopMetrics{})
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.BatchSize < 1 || cfg.MaxInFlight < 1 || cfg.MaxInFlightBytes < 1 || cfg.CheckpointInterval < 0 || cfg.CoalesceWait < 0 {
		return nil, errors.New("reader: batch size, max in flight and max in-flight bytes must be positive, checkpoint interval and coalesce wait not negative")
	}
	if cfg.CoalesceWaitMax < 0 {
		return nil, errors.New("reader: coalesce wait max must not be negative")
	}
	cfg.Metrics.InFlight(cfg.Name, 0) // the series exists from the start: a standby's is 0
	return &Reader{source: source, checkpoints: checkpoints, handler: handler, cfg: cfg}, nil
}

// Status returns a snapshot of the reader's progress.
func (r *Reader) Status() ReaderStatus {
	r.mu.Lock()
	st, tr := r.status, r.tr
	r.mu.Unlock()
	st.State = ReaderStandby
	if st.Running && tr != nil {
		st.InFlight, st.ProgressAt = tr.progress()
		_, st.InFlightBytes = tr.load()
		st.State = ReaderReading
		if r.stalled(st) {
			st.State = ReaderStalled
		}
	}
	return st
}

func (r *Reader) stalled(st ReaderStatus) bool {
	return st.InFlight > 0 && r.cfg.Now().Sub(st.ProgressAt) > r.cfg.StallAfter
}

func (r *Reader) update(f func(s *ReaderStatus)) {
	r.mu.Lock()
	f(&r.status)
	r.mu.Unlock()
}

// Run loads the checkpoint, then reads until ctx ends; it then waits for
// the handler to finish or abandon its work and saves the final
// checkpoint. Source and store errors are logged and retried with backoff;
// Run returns nil after a clean shutdown. When ctx ends with the cause
// ports.ErrLeaseLost (RunWithLease), or a fenced save finds the lease lost,
// the handler is stopped with that cause, no final save is attempted, and
// Run returns an error wrapping ports.ErrLeaseLost.
func (r *Reader) Run(ctx context.Context) error {
	log := r.cfg.Logger.With(slog.String("reader", r.cfg.Name))
	start, err := r.loadCheckpoint(ctx, log)
	if err != nil {
		return err // ctx ended before the checkpoint could be loaded
	}
	// The checkpoint's gauges exist from the start of a term (an alert on
	// a checkpoint that does not move needs the series even when no save
	// follows).
	r.cfg.Metrics.Checkpoint(r.cfg.Name, start)
	tr := newTracker(start, r.cfg.Now)
	r.mu.Lock()
	r.tr = tr
	r.status.Running, r.status.ReadAt, r.status.Saved = true, start, start
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.tr, r.status.Running, r.status.ProgressAt = nil, false, time.Time{}
		r.mu.Unlock()
		r.cfg.Metrics.InFlight(r.cfg.Name, 0) // a standby holds nothing: no stale value from its last term
	}()
	log.Info("reader started", slog.String("checkpoint", start.String()))

	r.handler.Begin() // a new term: the handler may have run a previous one
	handlerDone := make(chan error, 1)
	hctx, stopHandler := context.WithCancelCause(context.WithoutCancel(ctx))
	defer stopHandler(nil)
	go func() { handlerDone <- r.handler.Run(hctx) }()

	// The term ends when ctx ends, or when a fenced save finds the lease
	// lost; the handler learns which (context.Cause), so that the work of
	// a lost term stops at once instead of after a shutdown grace.
	tctx, endTerm := context.WithCancelCause(ctx)
	defer endTerm(nil)
	// Checkpoint saves run beside the reads: a slow save (a commit on a
	// busy database) never holds back the next read.
	saved := start
	saverDone := make(chan struct{})
	go func() {
		defer close(saverDone)
		r.saveLoop(tctx, log, tr, &saved, endTerm)
	}()
	r.readLoop(tctx, log, tr) // returns when the term ends
	<-saverDone

	cause := context.Cause(tctx)
	stopHandler(cause)
	if err := <-handlerDone; err != nil {
		log.Error("handler stopped with an error", slog.String("error", err.Error()))
	}
	if errors.Is(cause, ports.ErrLeaseLost) {
		// No final save: the checkpoint belongs to whoever holds the lease now.
		_, pending := tr.state()
		log.Warn("reader stopped: the lease is lost", slog.String("checkpoint", saved.String()), slog.Int("unfinished", pending))
		return fmt.Errorf("reader %s: %w", r.cfg.Name, cause)
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	r.save(sctx, log, tr, &saved, nil)
	pos, pending := tr.state()
	log.Info("reader stopped", slog.String("checkpoint", pos.String()), slog.Int("unfinished", pending))
	return nil
}

func (r *Reader) loadCheckpoint(ctx context.Context, log *slog.Logger) (ports.Position, error) {
	backoff := r.cfg.RetryMin
	for {
		pos, _, err := r.checkpoints.Load(ctx, r.cfg.Name)
		if err == nil {
			return pos, nil
		}
		log.Warn("cannot load checkpoint, retrying", slog.String("error", err.Error()), slog.Duration("retry_in", backoff))
		r.update(func(s *ReaderStatus) { s.LastError = err.Error() })
		if !sleep(ctx, backoff) {
			return ports.Position{}, ctx.Err()
		}
		backoff = min(backoff*2, r.cfg.RetryMax)
	}
}

// saveLoop saves the safe position every CheckpointInterval until ctx
// ends (the final save is Run's) and reports a stall.
func (r *Reader) saveLoop(ctx context.Context, log *slog.Logger, tr *tracker, saved *ports.Position, endTerm context.CancelCauseFunc) {
	tick := time.NewTicker(r.cfg.CheckpointInterval)
	defer tick.Stop()
	wasStalled := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		r.save(ctx, log, tr, saved, endTerm)
		if ctx.Err() != nil {
			return
		}
		wasStalled = r.reportStall(log, wasStalled)
	}
}

func (r *Reader) readLoop(ctx context.Context, log *slog.Logger, tr *tracker) {
	readPos, _ := tr.state()
	backoff := r.cfg.RetryMin
	var lowSince time.Time // when the room fell below half a batch; zero when it is not
	var lastRead time.Time // when the last read started
	for ctx.Err() == nil {
		pending, weight := tr.load()
		r.cfg.Metrics.InFlight(r.cfg.Name, pending)
		room, roomBytes := r.cfg.MaxInFlight-pending, r.cfg.MaxInFlightBytes-weight
		if room <= 0 || roomBytes <= 0 {
			select { // full: wait until an event finishes
			case <-ctx.Done():
			case <-tr.freed:
			}
			continue
		}
		if pending > 0 && (room < r.lowRoom() || roomBytes < r.cfg.MaxInFlightBytes/8) {
			// Nearly full: wait for room for half a batch (and an eighth
			// of the byte bound), for at most lowRoomWait. Reading as
			// each event finishes read a handful of rows per query when
			// the actions were the bottleneck: the reads' cost went up as
			// the throughput went down. The bound keeps events that hold
			// their room for long (a retry's backoff) from stopping the
			// reads for the others.
			now := time.Now()
			if lowSince.IsZero() {
				lowSince = now
			}
			if left := lowRoomWait - now.Sub(lowSince); left > 0 {
				t := time.NewTimer(left)
				select {
				case <-ctx.Done():
				case <-tr.freed:
				case <-t.C:
				}
				t.Stop()
				continue
			}
		}
		lowSince = time.Time{}
		limit := ports.ReadLimit{Rows: min(r.cfg.BatchSize, room), Bytes: roomBytes}
		readAt := r.cfg.Now()
		cycle := readAt.Sub(lastRead) // since the read before: this read's records arrived within it
		lastRead = readAt
		batch, err := r.source.Read(ctx, readPos, limit)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			log.Warn("read failed, retrying", slog.String("error", err.Error()), slog.Duration("retry_in", backoff))
			r.update(func(s *ReaderStatus) { s.LastError = err.Error() })
			sleep(ctx, backoff)
			backoff = min(backoff*2, r.cfg.RetryMax)
			continue
		}
		backoff = r.cfg.RetryMin
		var got int64 // the batch's weight
		for _, rec := range batch.Records {
			if ctx.Err() != nil {
				// Shutdown or a lost lease: the rest of the batch is not
				// handed (a handler that blocked, a bridge waiting for
				// room to publish, may have held this loop past it); the
				// checkpoint stays before it.
				return
			}
			got += rec.Size
			seq := tr.add(rec.Position, false, rec.Size)
			r.handler.Handle(rec, func() { tr.finish(seq) })
		}
		examined := batch.End != readPos
		if n := len(batch.Records); examined && (n == 0 || batch.Records[n-1].Position.Less(batch.End)) {
			tr.add(batch.End, true, 0) // skipped rows after the last record
		}
		readPos = batch.End
		r.update(func(s *ReaderStatus) { s.ReadAt, s.LastReadAt, s.LastError = readPos, r.cfg.Now(), "" })
		// A read that examined a single row or none, far from the byte
		// budget, reached the end of what was readable while events
		// arrive one at a time: the next read waits for the source
		// instead of coming back empty (at 400 events/s, 2.8 reads per
		// event became 2.0). A read that examined more reads again at
		// once when the row limit cut it, as before: that read finds the
		// rows committed meanwhile, and a Wait would cost more than it
		// saves; one that did not fill the batch pauses CoalesceWait
		// first (growing with the rate of rows: see CoalesceWaitMax).
		// Rows skipped by the source (not events, entities no observer
		// wants) count as examined: a stream of them is read as seldom as
		// one of events. A read cut short by the byte budget reads again
		// at once.
		rows := len(batch.Records) + batch.Skipped
		atEnd := rows < limit.Rows && got <= limit.Bytes/2 // neither the row nor the byte limit cut it
		switch {
		case !examined || atEnd && rows <= 1:
			if err := r.source.Wait(ctx); err != nil && ctx.Err() == nil {
				log.Warn("waiting for events failed", slog.String("error", err.Error()))
				sleep(ctx, backoff)
			}
		case atEnd && (r.cfg.CoalesceWait > 0 || r.cfg.CoalesceWaitMax > 0):
			if pause := r.coalescePause(rows, cycle); pause > 0 {
				sleep(ctx, pause)
			}
		}
	}
}

// The write rates between which the coalescing pause grows from
// CoalesceWait to CoalesceWaitMax. Below the low one (the latency
// figures' rates: 400 to 2 000 events/s) the pause stays CoalesceWait;
// from the high one on, where reads cost the writers most of their
// commit rate, it is CoalesceWaitMax.
const (
	coalesceRampLow  = 2500  // rows/s
	coalesceRampHigh = 10000 // rows/s
)

// coalescePause is the pause after a read of n records that ended a cycle
// of length since the read before it (see CoalesceWaitMax).
func (r *Reader) coalescePause(n int, cycle time.Duration) time.Duration {
	low, high := r.cfg.CoalesceWait, max(r.cfg.CoalesceWaitMax, r.cfg.CoalesceWait)
	if high == low || cycle <= 0 {
		return low
	}
	rate := float64(n) / cycle.Seconds()
	switch {
	case rate <= coalesceRampLow:
		return low
	case rate >= coalesceRampHigh:
		return high
	}
	return low + time.Duration(float64(high-low)*(rate-coalesceRampLow)/(coalesceRampHigh-coalesceRampLow))
}

// lowRoomWait bounds how long the reader waits for room for half a batch
// before it reads into the room there is.
const lowRoomWait = 20 * time.Millisecond

// lowRoom is the free room, in events, below which the reader waits (at
// most lowRoomWait) for more before reading while work is in flight: half
// a batch.
func (r *Reader) lowRoom() int { return max(1, min(r.cfg.BatchSize, r.cfg.MaxInFlight)/2) }

// reportStall logs when the reader becomes stalled, and when it moves
// again; it returns whether it is stalled now.
func (r *Reader) reportStall(log *slog.Logger, was bool) bool {
	st := r.Status()
	now := st.State == ReaderStalled
	switch {
	case now && !was:
		log.Warn("reader stalled: the checkpoint has not moved while events are unfinished",
			slog.Duration("for", r.cfg.Now().Sub(st.ProgressAt).Round(time.Second)), slog.Int("unfinished", st.InFlight),
			slog.String("checkpoint", st.Saved.String()), slog.Duration("stall_after", r.cfg.StallAfter))
	case was && !now:
		log.Info("reader moving again", slog.String("checkpoint", st.Saved.String()))
	}
	return now
}

// save stores the safe position when it moved (fenced by the lease when
// cfg.Fence is set). A save the fence refuses ends the term (endTerm with
// the error; nil at the final save).
func (r *Reader) save(ctx context.Context, log *slog.Logger, tr *tracker, saved *ports.Position, endTerm context.CancelCauseFunc) {
	pos, pending := tr.state()
	r.update(func(s *ReaderStatus) { s.InFlight = pending })
	// The read loop sets the gauge before each read; while it waits for
	// rows (or a handler holds it) the events finish without it.
	r.cfg.Metrics.InFlight(r.cfg.Name, pending)
	if pos == *saved {
		return
	}
	var err error
	if r.cfg.Fence.IsZero() {
		err = r.checkpoints.Save(ctx, r.cfg.Name, pos)
	} else {
		err = r.checkpoints.SaveFenced(ctx, r.cfg.Name, pos, r.cfg.Fence)
	}
	if errors.Is(err, ports.ErrLeaseLost) {
		log.Error("checkpoint save refused: this process no longer holds the lease; ending the term",
			slog.String("lease", r.cfg.Fence.Lease), slog.String("error", err.Error()))
		r.update(func(s *ReaderStatus) { s.LastError = err.Error() })
		if endTerm != nil {
			endTerm(err)
		}
		return
	}
	if err != nil {
		log.Warn("cannot save checkpoint, will retry", slog.String("error", err.Error()))
		r.update(func(s *ReaderStatus) { s.LastError = err.Error() })
		return
	}
	*saved = pos
	r.cfg.Metrics.Checkpoint(r.cfg.Name, pos)
	r.update(func(s *ReaderStatus) { s.Saved = pos })
}

// sleep waits d or until ctx ends; it reports whether the full wait passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
