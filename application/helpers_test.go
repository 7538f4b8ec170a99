package application_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observer/application"
	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/internal/testsupport"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// waitTimeout is the generous correctness deadline of every poll.
const waitTimeout = 10 * time.Second

var errBoom = errors.New("boom")

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// untilReleased waits until release is closed (nil) or ctx ends (its
// error): an action that hangs until the test lets it go.
func untilReleased(ctx context.Context, release <-chan struct{}) error {
	select {
	case <-release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// blockedUntil is an executor whose every action waits until release is
// closed or its context ends.
func blockedUntil(release <-chan struct{}) ports.ActionExecutorFunc {
	return func(ctx context.Context, _ *domain.Event, _ *domain.Observer, _ *domain.Action) error {
		return untilReleased(ctx, release)
	}
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	testsupport.WaitUntil(t, waitTimeout, 2*time.Millisecond, what, cond)
}

// newClock is the tests' settable time source.
func newClock() *testsupport.Clock {
	return testsupport.NewClock(time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC))
}

// metrics records what the application measures.
type metrics struct {
	ports.NopMetrics

	mu               sync.Mutex
	events           map[string]int
	retries          int
	deadLettered     int
	conditionSkipped int
	checkpoints      []ports.Position
	inFlight         int // the last InFlight
}

func (m *metrics) InFlight(_ string, n int) {
	m.mu.Lock()
	m.inFlight = n
	m.mu.Unlock()
}

func (m *metrics) lastInFlight() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.inFlight
}

var _ ports.Metrics = (*metrics)(nil)

func newMetrics() *metrics { return &metrics{events: map[string]int{}} }

func (m *metrics) EventProcessed(outcome string) {
	m.mu.Lock()
	m.events[outcome]++
	m.mu.Unlock()
}

func (m *metrics) RetryScheduled(domain.ActionType) {
	m.mu.Lock()
	m.retries++
	m.mu.Unlock()
}

func (m *metrics) DeadLettered() {
	m.mu.Lock()
	m.deadLettered++
	m.mu.Unlock()
}

func (m *metrics) ConditionSkipped() {
	m.mu.Lock()
	m.conditionSkipped++
	m.mu.Unlock()
}

func (m *metrics) Checkpoint(_ string, pos ports.Position) {
	m.mu.Lock()
	m.checkpoints = append(m.checkpoints, pos)
	m.mu.Unlock()
}

func (m *metrics) snapshot() (events map[string]int, retries, deadLettered, skipped int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	events = make(map[string]int, len(m.events))
	for k, v := range m.events {
		events[k] = v
	}
	return events, m.retries, m.deadLettered, m.conditionSkipped
}

// execCall is one recorded executor call.
type execCall struct {
	EventID  string
	EntityID string
	Observer string
	Action   string
}

func (c execCall) String() string { return c.Observer + "/" + c.Action + "@" + c.EventID }

// callLog records executor calls.
type callLog struct {
	mu    sync.Mutex
	calls []execCall
}

func (l *callLog) add(c execCall) {
	l.mu.Lock()
	l.calls = append(l.calls, c)
	l.mu.Unlock()
}

func (l *callLog) all() []execCall {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.calls)
}

func (l *callLog) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.calls)
}

// count reports the calls for one event.
func (l *callLog) count(eventID string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, c := range l.calls {
		if c.EventID == eventID {
			n++
		}
	}
	return n
}

// recording returns an executor that records each call and then answers
// with behave (nil behave succeeds).
func recording(behave ports.ActionExecutorFunc) (ports.ActionExecutorFunc, *callLog) {
	log := &callLog{}
	return func(ctx context.Context, ev *domain.Event, obs *domain.Observer, act *domain.Action) error {
		log.add(execCall{EventID: ev.ID, EntityID: ev.EntityID, Observer: obs.Name, Action: act.Name})
		if behave == nil {
			return nil
		}
		return behave(ctx, ev, obs, act)
	}, log
}

// deadLetterSink is a fake sink whose Add is a function field.
type deadLetterSink struct {
	AddFunc func(ctx context.Context, d ports.DeadLetter) (int64, error)
}

var _ ports.DeadLetterSink = (*deadLetterSink)(nil)

func (s *deadLetterSink) Add(ctx context.Context, d ports.DeadLetter) (int64, error) {
	return s.AddFunc(ctx, d)
}

// failingFirst returns a sink that fails the first n writes and passes
// the others to next; calls counts every write.
func failingFirst(n int, next ports.DeadLetterSink) (*deadLetterSink, *atomic.Int32) {
	calls := &atomic.Int32{}
	return &deadLetterSink{AddFunc: func(ctx context.Context, d ports.DeadLetter) (int64, error) {
		if int(calls.Add(1)) <= n {
			return 0, fmt.Errorf("dead letters: %w", ports.ErrUnavailable)
		}
		return next.Add(ctx, d)
	}}, calls
}

// fixedRetry retries up to max attempts with a fixed delay.
func fixedRetry(maxAttempts int, delay time.Duration) domain.RetryPolicy {
	return domain.RetryPolicy{MaxAttempts: maxAttempts, InitialDelay: delay, MaxDelay: delay, Backoff: domain.BackoffFixed}
}

// observer builds an observer of entity for INSERT and UPDATE events with
// one webhook-typed action per name.
func observer(name, entity string, actions ...string) domain.Observer {
	o := domain.Observer{
		Name:      name,
		Entity:    entity,
		Events:    []domain.EventType{domain.EventInsert, domain.EventUpdate},
		OnFailure: domain.FailureDLQ,
		Retry:     fixedRetry(3, 10*time.Millisecond),
	}
	for _, a := range actions {
		o.Actions = append(o.Actions, domain.Action{Name: a, Type: domain.ActionWebhook})
	}
	return o
}

func withCondition(t testing.TB, o domain.Observer, src string) domain.Observer {
	t.Helper()
	c, err := domain.CompileCondition(src)
	if err != nil {
		t.Fatalf("compile condition %q: %v", src, err)
	}
	o.Condition = c
	return o
}

// event builds an INSERT event.
func event(id, entityType, entityID string, data map[string]any) domain.Event {
	if data == nil {
		data = map[string]any{}
	}
	return domain.Event{
		ID: id, EventType: domain.EventInsert, EntityType: entityType, EntityID: entityID,
		Data: data, Timestamp: time.Date(2025, 3, 1, 11, 0, 0, 0, time.UTC),
	}
}

func record(seq int64, ev domain.Event) ports.Record {
	return ports.Record{Position: ports.Position{Seq: seq}, Event: ev}
}

// finishLog records the finish callbacks a Handler makes.
type finishLog struct {
	mu    sync.Mutex
	order []string
	count map[string]int
}

func newFinishLog() *finishLog { return &finishLog{count: map[string]int{}} }

func (f *finishLog) finisher(id string) func() {
	return func() {
		f.mu.Lock()
		f.order = append(f.order, id)
		f.count[id]++
		f.mu.Unlock()
	}
}

func (f *finishLog) has(id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.count[id] > 0
}

func (f *finishLog) times(id string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.count[id]
}

func (f *finishLog) len() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.order)
}

// recordingProc wraps a RunProcessor and records Finish and Abandon.
type recordingProc struct {
	application.RunProcessor

	mu        sync.Mutex
	finished  []string
	abandoned []string
}

func (p *recordingProc) Finish(ctx context.Context, runs ...*application.Run) {
	p.mu.Lock()
	for _, run := range runs {
		p.finished = append(p.finished, run.Event().ID)
	}
	p.mu.Unlock()
	p.RunProcessor.Finish(ctx, runs...)
}

func (p *recordingProc) Abandon(ctx context.Context, run *application.Run) {
	p.mu.Lock()
	p.abandoned = append(p.abandoned, run.Event().ID)
	p.mu.Unlock()
	p.RunProcessor.Abandon(ctx, run)
}

func (p *recordingProc) state() (finished, abandoned []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.finished), slices.Clone(p.abandoned)
}

// background is a Run method started in a goroutine.
type background struct {
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	err    error
}

// runInBackground starts run with a context that Cancel or Stop ends;
// cleanup stops it too.
func runInBackground(t testing.TB, run func(ctx context.Context) error) *background {
	t.Helper()
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	b := &background{cancel: cancel, done: make(chan error, 1)}
	go func() { b.done <- run(ctx) }()
	t.Cleanup(func() { _ = b.Stop(t) })
	return b
}

// Cancel ends run's context without waiting.
func (b *background) Cancel() { b.cancel() }

// Wait waits for run to return and returns its error; the test fails when
// it does not return in time.
func (b *background) Wait(t testing.TB) error {
	t.Helper()
	b.once.Do(func() {
		select {
		case b.err = <-b.done:
		case <-time.After(waitTimeout):
			t.Errorf("run did not return within %v", waitTimeout)
		}
	})
	return b.err
}

// Stop cancels run and waits for it.
func (b *background) Stop(t testing.TB) error {
	t.Helper()
	b.cancel()
	return b.Wait(t)
}

// newProcessor builds a processor with a discarding logger.
func newProcessor(t testing.TB, obs []domain.Observer, exec ports.ActionExecutor, sink ports.DeadLetterSink, cfg application.ProcessorConfig) *application.Processor {
	t.Helper()
	cfg.Executor, cfg.DeadLetters = exec, sink
	if cfg.Logger == nil {
		cfg.Logger = discardLogger()
	}
	p, err := application.NewProcessor(domain.NewMatcher(obs), cfg)
	if err != nil {
		t.Fatalf("new processor: %v", err)
	}
	return p
}
