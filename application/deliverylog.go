package application

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// noteOf returns the note of the attempt running under ctx, if any.
func noteOf(ctx context.Context) *attemptNote {
	n, _ := ctx.Value(attemptNoteKey{}).(*attemptNote)
	return n
}

// WithTrigger marks the attempts made under ctx as started by trigger
// (TriggerResend, TriggerDeadLetterRetry) with attempt number attempt
// (0: unknown), for the delivery log.
func WithTrigger(ctx context.Context, trigger string, attempt int) context.Context {
	ctx, n := withAttemptNote(ctx, attempt)
	n.trigger = trigger
	return ctx
}

// DeliveryRecorder is an ActionExecutor decorator that records the outcome
// of each attempt in the delivery log, through the DeliveryWriter: event,
// observer, action, endpoint, attempt number, what triggered it, status
// code and the start of the answer (as the executor noted them), latency
// and error. With All false only failed attempts are recorded. A deferral
// (no attempt) and an attempt interrupted by shutdown are not recorded.
type DeliveryRecorder struct {
	next     ports.ActionExecutor
	writer   *DeliveryWriter
	all      bool
	endpoint func(obs *domain.Observer, act *domain.Action) string
	now      func() time.Time
}

var _ ports.ActionExecutor = (*DeliveryRecorder)(nil)

// NewDeliveryRecorder wraps next; endpoint names where an action delivers
// (nil: domain.Endpoint), now is the clock (nil: time.Now).
func NewDeliveryRecorder(next ports.ActionExecutor, writer *DeliveryWriter, all bool, endpoint func(*domain.Observer, *domain.Action) string, now func() time.Time) (*DeliveryRecorder, error) {
	if next == nil || writer == nil {
		return nil, errors.New("delivery recorder: executor and writer are required")
	}
	if endpoint == nil {
		endpoint = domain.Endpoint
	}
	if now == nil {
		now = time.Now
	}
	return &DeliveryRecorder{next: next, writer: writer, all: all, endpoint: endpoint, now: now}, nil
}

// Execute runs act and records the attempt.
func (r *DeliveryRecorder) Execute(ctx context.Context, ev *domain.Event, obs *domain.Observer, act *domain.Action) error {
	rctx, resp := ports.WithResponseNote(ctx)
	start := r.now()
	err := r.next.Execute(rctx, ev, obs, act)
	if err == nil && !r.all {
		return nil
	}
	if _, deferred := domain.AsDeferred(err); deferred || (err != nil && ctx.Err() != nil) {
		return err
	}
	rec := ports.DeliveryRecord{
		At: start, EventID: ev.ID, Observer: obs.Name, Action: act.Name, ActionType: act.Type,
		Endpoint: r.endpoint(obs, act), Latency: r.now().Sub(start), Outcome: ports.DeliverySucceeded, Trigger: TriggerLive,
	}
	if n := noteOf(ctx); n != nil {
		rec.Attempt, rec.Trigger = n.attempt, n.trigger
	}
	status, body := resp.Get()
	rec.StatusCode, rec.Response = status, snippet(body)
	if err != nil {
		rec.Outcome, rec.Error = ports.DeliveryTransient, err.Error()
		if domain.IsPermanent(err) {
			rec.Outcome = ports.DeliveryPermanent
		}
	}
	r.writer.Record(rec)
	return err
}

// snippet turns response bytes into text: at most MaxResponseSnippet
// bytes, an incomplete last character dropped, invalid UTF-8 replaced.
func snippet(b []byte) string {
	b = b[:min(len(b), ports.MaxResponseSnippet)]
	for i := 0; i < utf8.UTFMax && len(b) > 0; i++ {
		if r, size := utf8.DecodeLastRune(b); r != utf8.RuneError || size != 1 {
			break
		}
		b = b[:len(b)-1]
	}
	return strings.ToValidUTF8(string(b), "\uFFFD")
}

// DeliveryWriterConfig tunes the DeliveryWriter.
type DeliveryWriterConfig struct {
	// MaxRecords and MaxBytes bound the records waiting to be written
	// (defaults 10 000 and 16 MiB); beyond them records are dropped.
	MaxRecords int
	MaxBytes   int
	// BatchSize is the most records one Append writes (default 500).
	BatchSize int
	// FlushInterval is the longest a record waits (default 200ms).
	FlushInterval time.Duration
	Logger        *slog.Logger
	Metrics       ports.DeliveryMetrics
	Now           func() time.Time
}

// DeliveryWriter writes delivery records in batches from its own
// goroutine (Run), so recording never blocks an action: the queue is
// bounded by count and bytes, and when it is full (or the log refuses a
// batch three times) records are dropped, counted by a metric and
// reported in a rate-limited warning.
type DeliveryWriter struct {
	log ports.DeliveryLog
	cfg DeliveryWriterConfig

	mu    sync.Mutex
	queue []ports.DeliveryRecord
	bytes int
	wake  chan struct{}
	warn  logLimiter
}

// NewDeliveryWriter builds a writer over log; Run starts it.
func NewDeliveryWriter(log ports.DeliveryLog, cfg DeliveryWriterConfig) (*DeliveryWriter, error) {
	if log == nil || cfg.Logger == nil {
		return nil, errors.New("delivery writer: log and logger are required")
	}
	cfg.MaxRecords = cmp.Or(cfg.MaxRecords, 10_000)
	cfg.MaxBytes = cmp.Or(cfg.MaxBytes, 16<<20)
	cfg.BatchSize = cmp.Or(cfg.BatchSize, 500)
	cfg.FlushInterval = cmp.Or(cfg.FlushInterval, 200*time.Millisecond)
	cfg.Metrics = cmp.Or[ports.DeliveryMetrics](cfg.Metrics, ports.NopDeliveryMetrics{})
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &DeliveryWriter{log: log, cfg: cfg, wake: make(chan struct{}, 1),
		warn: logLimiter{interval: 10 * time.Second, now: cfg.Now}}, nil
}

// recordSize estimates what a record holds in memory.
func recordSize(r ports.DeliveryRecord) int {
	return 128 + len(r.EventID) + len(r.Observer) + len(r.Action) + len(r.Endpoint) + len(r.Error) + len(r.Response)
}

// Record queues rec, or drops it when the queue is full. It never blocks.
func (w *DeliveryWriter) Record(rec ports.DeliveryRecord) {
	size := recordSize(rec)
	w.mu.Lock()
	if len(w.queue) >= w.cfg.MaxRecords || w.bytes+size > w.cfg.MaxBytes {
		w.mu.Unlock()
		w.dropped(1, "the delivery log's queue is full")
		return
	}
	w.queue = append(w.queue, rec)
	w.bytes += size
	full := len(w.queue) >= w.cfg.BatchSize
	w.mu.Unlock()
	if full {
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
}

func (w *DeliveryWriter) dropped(n int, why string) {
	w.cfg.Metrics.DeliveriesDropped(n)
	if ok, suppressed := w.warn.allow(); ok {
		w.cfg.Logger.Warn("delivery records dropped", slog.String("reason", why), slog.Int("records", n),
			slog.Int("suppressed_since_last_warning", suppressed))
	}
}

// Run writes queued records until ctx ends, then writes what is left
// (bounded by a few seconds) and returns nil.
func (w *DeliveryWriter) Run(ctx context.Context) error {
	t := time.NewTicker(w.cfg.FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			for w.flush(fctx) {
			}
			cancel()
			return nil
		case <-t.C:
		case <-w.wake:
		}
		for w.flush(ctx) {
		}
	}
}

// Flush writes what is queued now (for tools and tests).
func (w *DeliveryWriter) Flush(ctx context.Context) {
	for w.flush(ctx) {
	}
}

// flush writes one batch; it reports whether it wrote a full batch (more
// may be waiting).
func (w *DeliveryWriter) flush(ctx context.Context) bool {
	w.mu.Lock()
	n := min(len(w.queue), w.cfg.BatchSize)
	if n == 0 {
		w.mu.Unlock()
		return false
	}
	batch := make([]ports.DeliveryRecord, n)
	copy(batch, w.queue)
	for _, r := range batch {
		w.bytes -= recordSize(r)
	}
	w.queue = append(w.queue[:0], w.queue[n:]...)
	w.mu.Unlock()

	var err error
	for try := range 3 {
		if try > 0 && !sleep(ctx, time.Duration(try)*500*time.Millisecond) {
			break
		}
		actx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err = w.log.Append(actx, batch)
		cancel()
		if err == nil {
			w.cfg.Metrics.DeliveriesLogged(n)
			return n == w.cfg.BatchSize
		}
	}
	w.dropped(n, "the delivery log refused them: "+err.Error())
	return false
}
