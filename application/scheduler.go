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

// Handler takes records from a Reader. Handle must not block for long; it
// calls finish exactly once when the record is finished (every action
// succeeded, was dead-lettered or logged, or the record was skipped), and
// never for work abandoned at shutdown. Run works until ctx ends, then
// finishes or abandons what is in progress and returns; the Reader saves
// its final checkpoint after Run returned. A handler serves one reader
// term after another (the reader stops when its lease is lost and starts
// again when it is regained): Begin starts a term, before the term's Run
// and its first Handle; records handed in after Run returned and before
// the next Begin are dropped.
type Handler interface {
	Begin()
	Handle(rec ports.Record, finish func())
	Run(ctx context.Context) error
}

// SchedulerConfig tunes the Scheduler.
type SchedulerConfig struct {
	// MaxConcurrent is how many events run actions at the same time
	// (default 32).
	MaxConcurrent int
	Logger        *slog.Logger
	Now           func() time.Time
	// ShutdownGrace bounds how long Run waits for steps in progress
	// after its context ends (default 30s); their actions see a context
	// that ends after the grace period.
	ShutdownGrace time.Duration
	// Batch, when positive, has events started and prepared ahead of
	// their first step, and finished after their last, up to Batch at a
	// time (RunProcessor.Prepare and Finish with many runs: with Dedup,
	// one round trip claims a batch and one marks a batch done; while
	// work is queued, the finishing lingers for more done runs, see
	// linger). The workers do not wait for the finishing: they go on with other
	// entities, and the entity's next event starts once its predecessor
	// is finished. Zero starts and finishes each event in the worker
	// that steps it.
	Batch int
	// Unwanted, when set, tells the events that need no run (see
	// Processor.Unwanted): Handle finishes them at once, unqueued. Their
	// entity's order does not matter: they do nothing.
	Unwanted func(ports.Record) bool
}

// Scheduler runs events through a RunProcessor: events of the same entity
// one after the other in arrival order, different entities in parallel up
// to MaxConcurrent. A run waiting for a retry holds back only its own
// entity; its worker goes on with other entities meanwhile.
type Scheduler struct {
	proc RunProcessor
	cfg  SchedulerConfig

	mu       sync.Mutex
	entities map[string]*entityQueue
	ready    []*entityQueue
	timers   map[*entityQueue]*time.Timer
	closed   bool
	wake     chan struct{}
	// fresh holds queues whose head is not started yet, for the
	// preparer; finishing holds runs that are done, for the finisher
	// (both only when cfg.Batch > 0). ahead counts the runs prepared and
	// not yet stepped: at most 2*cfg.Batch, so that runs (and their
	// claims) are made shortly before the workers need them, not for
	// every event in flight.
	fresh     []*entityQueue
	ahead     int
	finishing []finishing
	prepWake  chan struct{}
	finWake   chan struct{}
	// spare holds emptied queues for reuse (at most maxSpareQueues): a
	// drain of distinct entities would otherwise allocate a queue, its
	// slice and a run holder per event.
	spare []*entityQueue
}

// maxSpareQueues bounds Scheduler.spare.
const maxSpareQueues = 256

type entityQueue struct {
	key   string
	runs  []*queuedRun
	first queuedRun     // the run of a queue's first event
	slot  [1]*queuedRun // runs' first backing array
}

// finishing is a done run waiting for the finisher.
type finishing struct {
	q    *entityQueue
	head *queuedRun
}

type queuedRun struct {
	rec    ports.Record
	run    *Run // nil until started
	finish func()
	ahead  bool // prepared, not yet stepped (counted in Scheduler.ahead)
}

var _ Handler = (*Scheduler)(nil)

// NewScheduler builds a scheduler; call Run to start its workers.
func NewScheduler(proc RunProcessor, cfg SchedulerConfig) (*Scheduler, error) {
	if proc == nil || cfg.Logger == nil {
		return nil, errors.New("scheduler: processor and logger are required")
	}
	cfg.MaxConcurrent = cmp.Or(cfg.MaxConcurrent, 32)
	if cfg.MaxConcurrent < 1 {
		return nil, errors.New("scheduler: max concurrent must be at least 1")
	}
	if cfg.Batch < 0 {
		return nil, errors.New("scheduler: batch must not be negative")
	}
	cfg.ShutdownGrace = cmp.Or(cfg.ShutdownGrace, 30*time.Second)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Scheduler{
		proc:     proc,
		cfg:      cfg,
		entities: map[string]*entityQueue{},
		timers:   map[*entityQueue]*time.Timer{},
		wake:     make(chan struct{}, cfg.MaxConcurrent),
		prepWake: make(chan struct{}, 1),
		finWake:  make(chan struct{}, 1),
	}, nil
}

// Handle queues rec behind earlier events of its entity, or finishes it at
// once when cfg.Unwanted says it needs no run.
func (s *Scheduler) Handle(rec ports.Record, finish func()) {
	if s.cfg.Unwanted != nil && s.cfg.Unwanted(rec) {
		finish()
		return
	}
	key := rec.Event.EntityKey()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return // shutting down: the record is re-read after restart
	}
	if q, ok := s.entities[key]; ok {
		q.runs = append(q.runs, &queuedRun{rec: rec, finish: finish})
		return
	}
	var q *entityQueue
	if n := len(s.spare); n > 0 {
		q, s.spare[n-1] = s.spare[n-1], nil
		s.spare = s.spare[:n-1]
	} else {
		q = &entityQueue{}
	}
	q.key = key
	q.first = queuedRun{rec: rec, finish: finish}
	q.slot[0] = &q.first
	q.runs = q.slot[:1]
	s.entities[key] = q
	s.pushHeadLocked(q)
}

// pushHeadLocked makes q's unstarted head runnable: through the preparer
// when batching, else straight to the workers; s.mu must be held.
func (s *Scheduler) pushHeadLocked(q *entityQueue) {
	if s.cfg.Batch > 0 && q.runs[0].run == nil {
		s.fresh = append(s.fresh, q)
		signal(s.prepWake)
		return
	}
	s.pushReadyLocked(q)
}

// signal wakes the goroutine waiting on c (capacity 1) unless a wake-up is
// pending already.
func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// recycleLocked keeps an emptied queue, deleted from s.entities and on no
// list or timer, for a later entity; s.mu must be held.
func (s *Scheduler) recycleLocked(q *entityQueue) {
	if len(s.spare) >= maxSpareQueues {
		return
	}
	*q = entityQueue{}
	s.spare = append(s.spare, q)
}

// pushReadyLocked makes q runnable; s.mu must be held.
func (s *Scheduler) pushReadyLocked(q *entityQueue) {
	s.ready = append(s.ready, q)
	select {
	case s.wake <- struct{}{}:
	default: // enough wake-ups are pending for every worker
	}
}

func (s *Scheduler) popReady() *entityQueue {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.ready) == 0 {
		return nil
	}
	q := s.ready[0]
	s.ready[0] = nil
	s.ready = s.ready[1:]
	return q
}

// Pending reports how many entities have queued or running events.
func (s *Scheduler) Pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.entities)
}

// Run works until ctx ends, then waits (up to ShutdownGrace) for steps in
// progress, abandons every unfinished run and returns. When ctx ends with
// the cause ports.ErrLeaseLost (the reader's term ended with its lease),
// or the lease is lost during the grace (LeaseLost), the actions in
// progress see their context cancelled at once instead.
// Records handed in from then on are dropped (the reader reads them
// again) until Begin.
func (s *Scheduler) Run(ctx context.Context) error {
	// Actions get a context that outlives ctx by the grace period, so a
	// shutdown lets in-flight requests complete.
	work, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	var wg, helpers sync.WaitGroup
	for range s.cfg.MaxConcurrent {
		wg.Go(func() { s.worker(ctx, work) })
	}
	finished := make(chan struct{})
	if s.cfg.Batch > 0 {
		helpers.Go(func() { s.preparer(ctx, work) })
		helpers.Go(func() { s.finisher(ctx, work, finished) })
	}
	<-ctx.Done()
	if errors.Is(context.Cause(ctx), ports.ErrLeaseLost) {
		// Another replica owns the work now: stop this term's actions at
		// once (they are abandoned and re-run by the new holder).
		cancelWork()
	}
	grace := time.AfterFunc(s.cfg.ShutdownGrace, cancelWork)
	if lost := LeaseLost(ctx); lost != nil { // lost during the grace: stop then
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			select {
			case <-lost:
				cancelWork()
			case <-stop:
			}
		}()
	}
	wg.Wait()
	close(finished) // no run becomes done any more: the finisher ends once it finished every one
	helpers.Wait()
	grace.Stop()

	s.mu.Lock()
	s.closed = true
	for q, t := range s.timers {
		t.Stop()
		delete(s.timers, q)
	}
	var abandon []*Run
	for _, q := range s.entities {
		for _, r := range q.runs {
			if r.run != nil {
				abandon = append(abandon, r.run)
			}
		}
	}
	s.entities = map[string]*entityQueue{}
	s.ready, s.fresh, s.ahead = nil, nil, 0
	s.mu.Unlock()

	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	for _, r := range abandon {
		s.proc.Abandon(actx, r)
	}
	if len(abandon) > 0 {
		s.cfg.Logger.Info("unfinished events left for the next start", slog.Int("events", len(abandon)))
	}
	return nil
}

// Begin readies the scheduler for another term after a Run returned (a
// reader that regains its lease runs it again and re-reads what was
// abandoned); records handed in before Begin are dropped.
func (s *Scheduler) Begin() {
	s.mu.Lock()
	s.closed = false
	s.mu.Unlock()
}

func (s *Scheduler) worker(ctx, work context.Context) {
	for {
		if ctx.Err() != nil {
			return
		}
		q := s.popReady()
		if q == nil {
			select {
			case <-ctx.Done():
				return
			case <-s.wake:
				continue
			}
		}
		s.process(ctx, work, q)
	}
}

// process runs one step of the entity's head event.
func (s *Scheduler) process(ctx, work context.Context, q *entityQueue) {
	s.mu.Lock()
	head := q.runs[0]
	if head.ahead {
		head.ahead = false
		s.ahead--
		if s.ahead <= s.cfg.Batch && len(s.fresh) > 0 {
			signal(s.prepWake) // room for another batch
		}
	}
	s.mu.Unlock()

	if head.run == nil {
		head.run = s.proc.Start(work, head.rec)
	}
	next, done := s.proc.Step(work, head.run)
	if done && s.cfg.Batch > 0 {
		s.mu.Lock()
		s.finishing = append(s.finishing, finishing{q: q, head: head})
		s.mu.Unlock()
		signal(s.finWake)
		return
	}
	if done {
		s.proc.Finish(work, head.run)
		head.finish()
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case done:
		s.advanceLocked(ctx, q)
	case ctx.Err() != nil:
		// Shutting down: leave the run for Run to abandon.
	default:
		if s.cfg.Batch > 0 {
			// A lingering finisher asks again whether work is queued.
			signal(s.finWake)
		}
		wait := max(next.Sub(s.cfg.Now()), 0)
		s.timers[q] = time.AfterFunc(wait, func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			if _, ok := s.timers[q]; !ok {
				return // stopped by shutdown
			}
			delete(s.timers, q)
			s.pushReadyLocked(q)
		})
	}
}

// advanceLocked drops q's finished head and makes the next event runnable,
// or retires the queue; s.mu must be held.
func (s *Scheduler) advanceLocked(ctx context.Context, q *entityQueue) {
	if q.runs[0] == &q.first {
		q.first = queuedRun{} // let the event go while the queue lives on
	}
	q.runs[0] = nil
	q.runs = q.runs[1:]
	if len(q.runs) == 0 {
		delete(s.entities, q.key)
		s.recycleLocked(q)
		return
	}
	if ctx.Err() == nil {
		s.pushHeadLocked(q)
	}
}

// preparer starts the heads of fresh queues, prepares them together (up to
// cfg.Batch at a time, and 2*cfg.Batch not yet stepped) and hands them to
// the workers, until ctx ends.
func (s *Scheduler) preparer(ctx, work context.Context) {
	qs := make([]*entityQueue, 0, s.cfg.Batch)
	heads := make([]*queuedRun, 0, s.cfg.Batch)
	runs := make([]*Run, 0, s.cfg.Batch)
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.prepWake:
		}
		for ctx.Err() == nil {
			qs, heads, runs = qs[:0], heads[:0], runs[:0]
			s.mu.Lock()
			n := max(min(len(s.fresh), s.cfg.Batch, 2*s.cfg.Batch-s.ahead), 0)
			for _, q := range s.fresh[:n] {
				h := q.runs[0]
				h.ahead = true
				qs, heads = append(qs, q), append(heads, h)
			}
			s.ahead += n
			s.fresh = shiftOut(s.fresh, n)
			s.mu.Unlock()
			if n == 0 {
				break
			}
			for _, h := range heads {
				h.run = s.proc.Start(work, h.rec)
				runs = append(runs, h.run)
			}
			s.proc.Prepare(work, runs...)
			s.mu.Lock()
			for _, q := range qs {
				s.pushReadyLocked(q)
			}
			s.mu.Unlock()
			clear(qs[:n])
			clear(heads[:n])
			clear(runs[:n])
		}
	}
}

const (
	// lingerRuns and lingerMax bound the finisher's linger (and a
	// gang's): it waits for up to lingerRuns runs, lingerMax at most.
	lingerRuns = 32
	lingerMax  = time.Millisecond
)

// linger lets done runs gather for the finisher while the workers have
// more queued work (so more runs become done soon): until lingerRuns are
// done (a batch, when smaller), no work is queued any more, lingerMax
// passed or stop is closed. Without it, a finisher that is woken by each
// run marks one event done per round trip. With no work queued (a low
// rate) it returns at once, so a done mark is not delayed when no other
// run would share it; and once the queue ran dry it returns at the next
// run's end, since an entity's next event becomes runnable only after the
// finisher finished the one before (a few busy entities would otherwise
// wait lingerMax per event).
func (s *Scheduler) linger(stop <-chan struct{}) {
	enough := min(lingerRuns, max(s.cfg.Batch, 1))
	lingerUntil(s.finWake, stop, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.finishing) >= enough || len(s.ready) == 0 && s.ahead == 0
	})
}

// lingerUntil waits until enough reports true, lingerMax passed or stop is
// closed (a nil stop never is); it asks enough first and again at each
// signal on wake. The finisher's linger and a gang's share it.
func lingerUntil(wake, stop <-chan struct{}, enough func() bool) {
	if enough() {
		return
	}
	t := time.NewTimer(lingerMax)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			return
		case <-stop:
			return
		case <-wake:
			if enough() {
				return
			}
		}
	}
}

// finisher finishes done runs together (up to cfg.Batch at a time), then
// lets their entities go on. Once stop is closed (no run becomes done any
// more) it finishes what is left and returns.
func (s *Scheduler) finisher(ctx, work context.Context, stop <-chan struct{}) {
	batch := make([]finishing, 0, s.cfg.Batch)
	runs := make([]*Run, 0, s.cfg.Batch)
	for {
		stopping := false
		select {
		case <-s.finWake:
		case <-stop:
			stopping = true
		}
		for {
			if !stopping {
				s.linger(stop)
			}
			batch, runs = batch[:0], runs[:0]
			s.mu.Lock()
			n := min(len(s.finishing), s.cfg.Batch)
			batch = append(batch, s.finishing[:n]...)
			s.finishing = shiftOut(s.finishing, n)
			s.mu.Unlock()
			if n == 0 {
				break
			}
			for _, f := range batch {
				runs = append(runs, f.head.run)
			}
			s.proc.Finish(work, runs...)
			for _, f := range batch {
				f.head.finish()
			}
			s.mu.Lock()
			for _, f := range batch {
				s.advanceLocked(ctx, f.q)
			}
			s.mu.Unlock()
			clear(batch[:n])
			clear(runs[:n])
		}
		if stopping {
			return
		}
	}
}

// shiftOut drops the first n elements of xs, moving the rest to the front
// and zeroing the slots left behind: a shifted-out entry kept there would
// keep its finished run, and that run's event, alive.
func shiftOut[T any](xs []T, n int) []T {
	m := copy(xs, xs[n:])
	clear(xs[m:])
	return xs[:m]
}
