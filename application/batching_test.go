package application_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observer/adapters/memory"
	"github.com/fraiseql/fraiseql-observer/application"
	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// fakeBatches is a webhook-typed executor that records the batches it is
// given; outcome decides each batch's answer (nil: success).
type fakeBatches struct {
	mu      sync.Mutex
	batches []ports.ActionBatch
	single  int
	pad     int // bytes added to each body
	outcome func(b ports.ActionBatch) error
}

func (f *fakeBatches) Execute(context.Context, *domain.Event, *domain.Observer, *domain.Action) error {
	f.mu.Lock()
	f.single++
	f.mu.Unlock()
	return nil
}

func (f *fakeBatches) BatchBody(_ context.Context, ev *domain.Event, _ *domain.Observer, _ *domain.Action) ([]byte, error) {
	if ev.ID == "bad" {
		return nil, domain.Permanent(errors.New("cannot render"))
	}
	return fmt.Appendf(nil, `{"id":%q,"pad":%q}`, ev.ID, strings.Repeat("x", f.pad)), nil
}

func (f *fakeBatches) ExecuteBatch(_ context.Context, b ports.ActionBatch) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.batches = append(f.batches, b)
	if f.outcome != nil {
		return f.outcome(b) // under f.mu: the outcome's state needs no lock of its own
	}
	return nil
}

func (f *fakeBatches) all() []ports.ActionBatch {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]ports.ActionBatch(nil), f.batches...)
}

func eventIDs(b ports.ActionBatch) []string {
	ids := make([]string, len(b.Events))
	for i, e := range b.Events {
		ids[i] = e.Event.ID
	}
	return ids
}

// batchedObserver has one batched webhook action "hook".
func batchedObserver(limits domain.Batching) domain.Observer {
	o := observer("obs", "*")
	o.Actions = []domain.Action{{Name: "hook", Type: domain.ActionWebhook,
		Webhook: &domain.WebhookAction{URL: "http://127.0.0.1:1/h", Method: "POST", Timeout: time.Second, Batch: &limits}}}
	return o
}

func newBatcher(t testing.TB, f *fakeBatches) *application.Batcher {
	t.Helper()
	d := application.NewDispatcher(map[domain.ActionType]ports.ActionExecutor{domain.ActionWebhook: f})
	b, err := application.NewBatcher(d, application.BatcherConfig{Bodies: d, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// executeAll runs ev for each id concurrently and returns their errors.
func executeAll(ctx context.Context, b ports.ActionExecutor, obs *domain.Observer, ids ...string) []error {
	errs := make([]error, len(ids))
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Go(func() {
			ev := event(id, "order", id, nil)
			errs[i] = b.Execute(ctx, &ev, obs, &obs.Actions[0])
		})
	}
	wg.Wait()
	return errs
}

func TestBatcherFlushesByCount(t *testing.T) {
	t.Parallel()
	f := &fakeBatches{}
	b := newBatcher(t, f)
	obs := batchedObserver(domain.Batching{MaxEvents: 3, MaxBytes: 1 << 20, MaxWait: time.Hour})
	for i, err := range executeAll(t.Context(), b, &obs, "e1", "e2", "e3", "e4", "e5", "e6") {
		if err != nil {
			t.Fatalf("member %d: %v", i, err)
		}
	}
	got := f.all()
	if len(got) != 2 || len(got[0].Events) != 3 || len(got[1].Events) != 3 {
		t.Fatalf("batches = %v, want two of 3 (max_events; max_wait an hour)", got)
	}
	for _, bt := range got {
		if bt.ID != domain.BatchID("obs", "hook", eventIDs(bt)) {
			t.Errorf("batch id %s is not the id of its events %v", bt.ID, eventIDs(bt))
		}
	}
}

func TestBatcherFlushesByWait(t *testing.T) {
	t.Parallel()
	f := &fakeBatches{}
	b := newBatcher(t, f)
	obs := batchedObserver(domain.Batching{MaxEvents: 100, MaxBytes: 1 << 20, MaxWait: 20 * time.Millisecond})
	for _, err := range executeAll(t.Context(), b, &obs, "e1", "e2") {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := f.all(); len(got) != 1 || len(got[0].Events) != 2 {
		t.Fatalf("batches = %v, want one of 2 sent after max_wait", got)
	}
}

func TestBatcherFlushesByBytes(t *testing.T) {
	t.Parallel()
	f := &fakeBatches{pad: 300}
	b := newBatcher(t, f)
	obs := batchedObserver(domain.Batching{MaxEvents: 100, MaxBytes: 1024, MaxWait: 50 * time.Millisecond})
	for _, err := range executeAll(t.Context(), b, &obs, "e1", "e2", "e3", "e4", "e5", "e6", "e7") {
		if err != nil {
			t.Fatal(err)
		}
	}
	total := 0
	for _, bt := range f.all() {
		size := 128
		for _, e := range bt.Events {
			size += len(e.Body) + 1
		}
		if size > 1024 {
			t.Errorf("batch of %d events weighs %d bytes, over max_bytes 1024", len(bt.Events), size)
		}
		total += len(bt.Events)
	}
	if total != 7 {
		t.Fatalf("%d events sent, want 7", total)
	}
}

func TestBatcherBoundsBatchSize(t *testing.T) {
	t.Parallel()
	f := &fakeBatches{}
	b := newBatcher(t, f)
	obs := batchedObserver(domain.Batching{MaxEvents: 10, MaxBytes: 1 << 20, MaxWait: 5 * time.Millisecond})
	ids := make([]string, 95)
	for i := range ids {
		ids[i] = fmt.Sprint("e", i)
	}
	for _, err := range executeAll(t.Context(), b, &obs, ids...) {
		if err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]int{}
	for _, bt := range f.all() {
		if len(bt.Events) > 10 {
			t.Errorf("batch of %d events, over max_events 10", len(bt.Events))
		}
		for _, id := range eventIDs(bt) {
			seen[id]++
		}
	}
	for _, id := range ids {
		if seen[id] != 1 {
			t.Errorf("event %s sent %d times, want once", id, seen[id])
		}
	}
}

func TestBatcherFansOutTheOutcome(t *testing.T) {
	t.Parallel()
	limits := domain.Batching{MaxEvents: 3, MaxBytes: 1 << 20, MaxWait: time.Hour}
	t.Run("permanent", func(t *testing.T) {
		t.Parallel()
		f := &fakeBatches{outcome: func(ports.ActionBatch) error { return domain.Permanent(errors.New("status 400")) }}
		obs := batchedObserver(limits)
		for i, err := range executeAll(t.Context(), newBatcher(t, f), &obs, "a", "b", "c") {
			if !domain.IsPermanent(err) || !strings.Contains(err.Error(), "status 400") || !strings.Contains(err.Error(), "batch batch_") {
				t.Errorf("member %d: %v, want the batch's permanent failure", i, err)
			}
		}
	})
	t.Run("transient: one retry time for all", func(t *testing.T) {
		t.Parallel()
		f := &fakeBatches{outcome: func(ports.ActionBatch) error { return domain.Transient(errors.New("status 503"), 0) }}
		obs := batchedObserver(limits)
		obs.Retry = domain.RetryPolicy{InitialDelay: time.Second, MaxDelay: time.Minute, Backoff: domain.BackoffExponential, MaxAttempts: 5}
		longest := obs.Retry.Delay(1, 0.999999)
		var after []time.Duration
		for _, err := range executeAll(t.Context(), newBatcher(t, f), &obs, "a", "b", "c") {
			if err == nil || domain.IsPermanent(err) {
				t.Fatalf("got %v, want a transient failure", err)
			}
			after = append(after, domain.RetryAfter(err))
		}
		for _, d := range after {
			if d != after[0] || d < longest {
				t.Fatalf("retry-after %v, want one value for every member, at least the policy's longest delay %v", after, longest)
			}
		}
	})
	t.Run("receiver's retry-after wins when longer", func(t *testing.T) {
		t.Parallel()
		f := &fakeBatches{outcome: func(ports.ActionBatch) error { return domain.Transient(errors.New("status 429"), time.Hour) }}
		obs := batchedObserver(limits)
		for _, err := range executeAll(t.Context(), newBatcher(t, f), &obs, "a", "b", "c") {
			if domain.RetryAfter(err) != time.Hour {
				t.Fatalf("retry-after %v, want the receiver's hour", domain.RetryAfter(err))
			}
		}
	})
	t.Run("an event that cannot render fails alone", func(t *testing.T) {
		t.Parallel()
		f := &fakeBatches{}
		obs := batchedObserver(domain.Batching{MaxEvents: 2, MaxBytes: 1 << 20, MaxWait: time.Hour})
		errs := executeAll(t.Context(), newBatcher(t, f), &obs, "bad", "a", "b")
		if !domain.IsPermanent(errs[0]) || errs[1] != nil || errs[2] != nil {
			t.Fatalf("errors = %v, want only the bad event's", errs)
		}
	})
}

func TestBatcherKeepsTheIDOfARetriedBatch(t *testing.T) {
	t.Parallel()
	failed := map[string]bool{}
	f := &fakeBatches{}
	f.outcome = func(b ports.ActionBatch) error {
		if !failed[b.ID] {
			failed[b.ID] = true
			return domain.Transient(errors.New("status 503"), 0)
		}
		return nil
	}
	b := newBatcher(t, f)
	obs := batchedObserver(domain.Batching{MaxEvents: 3, MaxBytes: 1 << 20, MaxWait: 30 * time.Millisecond})
	obs.Retry = fixedRetry(3, time.Millisecond)
	if errs := executeAll(t.Context(), b, &obs, "a", "b", "c"); errs[0] == nil {
		t.Fatal("first attempt succeeded, want the injected failure")
	}
	// The members come back (in another order, with a stranger).
	errs := executeAll(t.Context(), b, &obs, "new", "c", "a", "b")
	for i, err := range errs {
		if err != nil && i > 0 {
			t.Fatalf("retry of a member: %v", err)
		}
	}
	got := f.all()
	if len(got) < 2 || got[1].ID != got[0].ID {
		t.Fatalf("batches %v: the retried batch should be resent with id %s", got, got[0].ID)
	}
	if ids := eventIDs(got[1]); len(ids) != 3 || strings.Contains(strings.Join(ids, ","), "new") {
		t.Fatalf("resent batch holds %v, want exactly the failed batch's events", ids)
	}
}

func TestBatcherMemberThatStopsWaitingLeaves(t *testing.T) {
	t.Parallel()
	f := &fakeBatches{}
	b := newBatcher(t, f)
	obs := batchedObserver(domain.Batching{MaxEvents: 2, MaxBytes: 1 << 20, MaxWait: time.Hour})
	ctx, cancel := context.WithCancel(t.Context())
	ev := event("gone", "order", "x", nil)
	done := make(chan error, 1)
	go func() { done <- b.Execute(ctx, &ev, &obs, &obs.Actions[0]) }()
	time.Sleep(10 * time.Millisecond)
	cancel()
	if err := <-done; err == nil || domain.IsPermanent(err) {
		t.Fatalf("cancelled member: %v, want a transient error", err)
	}
	for _, err := range executeAll(t.Context(), b, &obs, "a", "b") {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := f.all(); len(got) != 1 || strings.Join(slices.Sorted(slices.Values(eventIDs(got[0]))), ",") != "a,b" {
		t.Fatalf("batches = %v, want one of a,b without the member that left", got)
	}
}

func TestBatcherPassesUnbatchedActions(t *testing.T) {
	t.Parallel()
	f := &fakeBatches{}
	b := newBatcher(t, f)
	obs := observer("obs", "*", "plain")
	ev := event("e", "order", "x", nil)
	if err := b.Execute(t.Context(), &ev, &obs, &obs.Actions[0]); err != nil {
		t.Fatal(err)
	}
	if f.single != 1 || len(f.all()) != 0 {
		t.Fatalf("single %d, batches %d: an unbatched action goes as it is", f.single, len(f.all()))
	}
}

// TestBatcherKeepsEntityOrder runs events of several entities through the
// scheduler and a processor over the batcher, with every batch failing
// its first attempt: each entity's events are delivered in order, no batch
// holds two events of one entity, every failed batch is sent again with
// the same id, and each event succeeds exactly once.
func TestBatcherKeepsEntityOrder(t *testing.T) {
	t.Parallel()
	const entities, perEntity = 25, 8
	failed := map[string]bool{}
	f := &fakeBatches{}
	f.outcome = func(b ports.ActionBatch) error {
		if !failed[b.ID] {
			failed[b.ID] = true
			return domain.Transient(errors.New("status 503"), 0)
		}
		return nil
	}
	obs := batchedObserver(domain.Batching{MaxEvents: 10, MaxBytes: 1 << 20, MaxWait: 300 * time.Millisecond})
	obs.Retry = fixedRetry(10, 5*time.Millisecond)
	d := application.NewDispatcher(map[domain.ActionType]ports.ActionExecutor{domain.ActionWebhook: f})
	bt, err := application.NewBatcher(d, application.BatcherConfig{Bodies: d, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	dlq := memory.NewDeadLetters(nil)
	proc := newProcessor(t, []domain.Observer{obs}, bt, dlq, application.ProcessorConfig{})
	sched, err := application.NewScheduler(proc, application.SchedulerConfig{MaxConcurrent: 64, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	finished := newFinishLog()
	bg := runInBackground(t, sched.Run)
	handleRounds(sched, finished, "ent", entities, perEntity)
	eventually(t, "every event finished", func() bool { return finished.len() == entities*perEntity })
	if err := bg.Stop(t); err != nil {
		t.Fatal(err)
	}
	next := map[string]int{}
	sent := map[string]int{}
	resent := 0
	for _, b := range f.all() {
		inBatch := map[string]bool{}
		for _, e := range b.Events {
			if inBatch[e.Event.EntityID] {
				t.Errorf("batch %s holds two events of %s", b.ID, e.Event.EntityID)
			}
			inBatch[e.Event.EntityID] = true
		}
		if sent[b.ID]++; sent[b.ID] == 2 {
			resent++
		}
		if sent[b.ID] == 1 {
			continue // failed: the first attempt of every batch
		}
		for _, e := range b.Events {
			want := fmt.Sprintf("%s-%d", e.Event.EntityID, next[e.Event.EntityID])
			if e.Event.ID != want {
				t.Fatalf("delivered %s, want %s next (entity order)", e.Event.ID, want)
			}
			next[e.Event.EntityID]++
		}
	}
	for e := range entities {
		if got := next[fmt.Sprint("ent", e)]; got != perEntity {
			t.Errorf("ent%d: %d events delivered, want %d", e, got, perEntity)
		}
	}
	if resent == 0 {
		t.Fatal("no failed batch was sent again with its id")
	}
	if n, _ := dlq.Count(t.Context()); n != 0 {
		t.Fatalf("%d dead letters, want none", n)
	}
}

// TestBatcherBatchIsOneAttemptForTheGuard: below the batcher, the
// endpoint guard sees one attempt per batch (a concurrency cap of 1 lets
// a batch of 3 through), and what it defers, every member gets.
func TestBatcherBatchIsOneAttemptForTheGuard(t *testing.T) {
	t.Parallel()
	f := &fakeBatches{}
	d := application.NewDispatcher(map[domain.ActionType]ports.ActionExecutor{domain.ActionWebhook: f})
	guard, err := application.NewEndpointGuard(d, application.EndpointGuardConfig{
		Default: application.EndpointPolicy{MaxConcurrent: 1, Rate: 0.001, Burst: 1}, Logger: discardLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	b, err := application.NewBatcher(guard, application.BatcherConfig{Bodies: d, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	obs := batchedObserver(domain.Batching{MaxEvents: 3, MaxBytes: 1 << 20, MaxWait: time.Hour})
	for _, err := range executeAll(t.Context(), b, &obs, "a", "b", "c") {
		if err != nil {
			t.Fatalf("member: %v (a batch is one attempt for the guard)", err)
		}
	}
	st := guard.Status()
	if len(st) != 1 || st[0].Succeeded != 1 {
		t.Fatalf("guard status %+v, want one successful attempt", st)
	}
	// The rate limit (burst 1) defers the next batch: every member is told.
	for _, err := range executeAll(t.Context(), b, &obs, "d", "e", "f") {
		if _, ok := domain.AsDeferred(err); !ok {
			t.Fatalf("member: %v, want the guard's deferral", err)
		}
	}
	if len(f.all()) != 1 {
		t.Fatalf("%d batches sent, want 1", len(f.all()))
	}
}

// blockingBatches holds each batch until its context ends.
type blockingBatches struct {
	fakeBatches
	started   chan struct{}
	cancelled chan error
}

func (f *blockingBatches) ExecuteBatch(ctx context.Context, _ ports.ActionBatch) error {
	close(f.started)
	<-ctx.Done()
	f.cancelled <- ctx.Err()
	return domain.Transient(ctx.Err(), 0)
}

func TestBatcherCancelsTheRequestWhenEveryMemberLeft(t *testing.T) {
	t.Parallel()
	f := &blockingBatches{started: make(chan struct{}), cancelled: make(chan error, 1)}
	d := application.NewDispatcher(map[domain.ActionType]ports.ActionExecutor{domain.ActionWebhook: f})
	b, err := application.NewBatcher(d, application.BatcherConfig{Bodies: d, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	obs := batchedObserver(domain.Batching{MaxEvents: 2, MaxBytes: 1 << 20, MaxWait: time.Hour})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan []error, 1)
	go func() { done <- executeAll(ctx, b, &obs, "a", "b") }()
	<-f.started // the batch is in flight
	cancel()
	for _, err := range <-done {
		if err == nil || domain.IsPermanent(err) {
			t.Fatalf("member: %v, want a transient error", err)
		}
	}
	select {
	case err := <-f.cancelled:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("request context: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the request of a batch every member left was not cancelled")
	}
}

func TestDispatcherRefusesBatchesOfATypeThatCannot(t *testing.T) {
	t.Parallel()
	d := application.NewDispatcher(map[domain.ActionType]ports.ActionExecutor{
		domain.ActionLog: ports.ActionExecutorFunc(func(context.Context, *domain.Event, *domain.Observer, *domain.Action) error { return nil }),
	})
	ev := event("e", "order", "x", nil)
	act := &domain.Action{Name: "l", Type: domain.ActionLog}
	if _, err := d.BatchBody(t.Context(), &ev, &domain.Observer{Name: "o"}, act); !domain.IsPermanent(err) {
		t.Errorf("BatchBody of a log action: %v, want a permanent failure", err)
	}
	if err := d.ExecuteBatch(t.Context(), ports.ActionBatch{Action: act}); !domain.IsPermanent(err) {
		t.Errorf("ExecuteBatch of a log action: %v, want a permanent failure", err)
	}
}
