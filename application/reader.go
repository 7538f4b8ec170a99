package application

import (
	"cmp"
	"context"
	"errors"
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
	// CheckpointInterval is how often the safe position is saved
	// (default 1s); it is also saved at shutdown.
	CheckpointInterval time.Duration
	// RetryMin and RetryMax bound the backoff after source or checkpoint
	// errors (defaults 100ms and 10s).
	RetryMin, RetryMax time.Duration
	Logger             *slog.Logger
	Metrics            ports.Metrics
	Now                func() time.Time
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
}

// ReaderStatus is a snapshot for health checks and the status command.
type ReaderStatus struct {
	Running    bool           `json:"running"`
	ReadAt     ports.Position `json:"read_at"` // next read continues after this
	Saved      ports.Position `json:"saved"`   // last saved checkpoint
	InFlight   int            `json:"in_flight"`
	LastReadAt time.Time      `json:"last_read_at,omitzero"` // last successful read
	LastError  string         `json:"last_error,omitempty"`  // last read or checkpoint error, "" after a success
}

// NewReader builds a reader; Run starts it.
func NewReader(source ports.EventSource, checkpoints ports.CheckpointStore, handler Handler, cfg ReaderConfig) (*Reader, error) {
	if source == nil || checkpoints == nil || handler == nil || cfg.Logger == nil {
		return nil, errors.New("reader: source, checkpoints, handler and logger are required")
	}
	cfg.Name = cmp.Or(cfg.Name, "default")
	cfg.BatchSize = cmp.Or(cfg.BatchSize, 500)
	cfg.MaxInFlight = cmp.Or(cfg.MaxInFlight, 10000)
	cfg.CheckpointInterval = cmp.Or(cfg.CheckpointInterval, time.Second)
	cfg.RetryMin = cmp.Or(cfg.RetryMin, 100*time.Millisecond)
	cfg.RetryMax = cmp.Or(cfg.RetryMax, 10*time.Second)
	cfg.Metrics = cmp.Or[ports.Metrics](cfg.Metrics, ports.NopMetrics{})
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.BatchSize < 1 || cfg.MaxInFlight < 1 || cfg.CheckpointInterval < 0 {
		return nil, errors.New("reader: batch size and max in flight must be positive")
	}
	return &Reader{source: source, checkpoints: checkpoints, handler: handler, cfg: cfg}, nil
}

// Status returns a snapshot of the reader's progress.
func (r *Reader) Status() ReaderStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.status
}

func (r *Reader) update(f func(s *ReaderStatus)) {
	r.mu.Lock()
	f(&r.status)
	r.mu.Unlock()
}

// Run loads the checkpoint, then reads until ctx ends; it then waits for
// the handler to finish or abandon its work and saves the final
// checkpoint. Source and store errors are logged and retried with backoff;
// Run returns nil after a clean shutdown.
func (r *Reader) Run(ctx context.Context) error {
	log := r.cfg.Logger.With(slog.String("reader", r.cfg.Name))
	start, err := r.loadCheckpoint(ctx, log)
	if err != nil {
		return err // ctx ended before the checkpoint could be loaded
	}
	tr := newTracker(start)
	r.update(func(s *ReaderStatus) { s.Running, s.ReadAt, s.Saved = true, start, start })
	defer r.update(func(s *ReaderStatus) { s.Running = false })
	log.Info("reader started", slog.String("checkpoint", start.String()))

	r.handler.Begin() // a new term: the handler may have run a previous one
	handlerDone := make(chan error, 1)
	hctx, stopHandler := context.WithCancel(context.WithoutCancel(ctx))
	defer stopHandler()
	go func() { handlerDone <- r.handler.Run(hctx) }()

	saved := start
	r.readLoop(ctx, log, tr, &saved)

	stopHandler()
	if err := <-handlerDone; err != nil {
		log.Error("handler stopped with an error", slog.String("error", err.Error()))
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	r.save(sctx, log, tr, &saved)
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

func (r *Reader) readLoop(ctx context.Context, log *slog.Logger, tr *tracker, saved *ports.Position) {
	readPos, _ := tr.state()
	lastSave := r.cfg.Now()
	backoff := r.cfg.RetryMin
	for ctx.Err() == nil {
		if r.cfg.Now().Sub(lastSave) >= r.cfg.CheckpointInterval {
			r.save(ctx, log, tr, saved)
			lastSave = r.cfg.Now()
		}
		_, pending := tr.state()
		r.cfg.Metrics.InFlight(pending)
		room := r.cfg.MaxInFlight - pending
		if room <= 0 {
			select {
			case <-ctx.Done():
			case <-tr.freed:
			case <-time.After(r.cfg.CheckpointInterval):
			}
			continue
		}
		batch, err := r.source.Read(ctx, readPos, min(r.cfg.BatchSize, room))
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
		for _, rec := range batch.Records {
			seq := tr.add(rec.Position, false)
			r.handler.Handle(rec, func() { tr.finish(seq) })
		}
		examined := batch.End != readPos
		if n := len(batch.Records); examined && (n == 0 || batch.Records[n-1].Position.Less(batch.End)) {
			tr.add(batch.End, true) // skipped rows after the last record
		}
		readPos = batch.End
		r.update(func(s *ReaderStatus) { s.ReadAt, s.LastReadAt, s.LastError = readPos, r.cfg.Now(), "" })
		if !examined {
			if err := r.source.Wait(ctx); err != nil && ctx.Err() == nil {
				log.Warn("waiting for events failed", slog.String("error", err.Error()))
				sleep(ctx, backoff)
			}
		}
	}
}

// save stores the safe position when it moved.
func (r *Reader) save(ctx context.Context, log *slog.Logger, tr *tracker, saved *ports.Position) {
	pos, pending := tr.state()
	r.update(func(s *ReaderStatus) { s.InFlight = pending })
	if pos == *saved {
		return
	}
	if err := r.checkpoints.Save(ctx, r.cfg.Name, pos); err != nil {
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
