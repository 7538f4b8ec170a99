package application_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observer/adapters/memory"
	"github.com/fraiseql/fraiseql-observer/application"
	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// fakePublisher acknowledges publications asynchronously; the first
// failFirst publications fail.
type fakePublisher struct {
	mu        sync.Mutex
	stored    map[string]int // event id -> times stored or seen
	order     []string
	failFirst atomic.Int32
}

func (p *fakePublisher) Publish(_ context.Context, ev domain.Event, _ ports.Headers, done func(ports.PublishResult)) error {
	go func() {
		if p.failFirst.Add(-1) >= 0 {
			done(ports.PublishResult{Err: errors.New("ack timeout")})
			return
		}
		p.mu.Lock()
		p.stored[ev.ID]++
		dup := p.stored[ev.ID] > 1
		if !dup {
			p.order = append(p.order, ev.ID)
		}
		p.mu.Unlock()
		done(ports.PublishResult{Duplicate: dup})
	}()
	return nil
}

func TestBridgeFinishesOnlyAfterAck(t *testing.T) {
	t.Parallel()
	src, err := memory.NewSource(nil, memory.SourceConfig{PollInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	for i := range 50 {
		if _, err := src.Append(ctx, domain.Event{EventType: domain.EventInsert, EntityType: "Order", EntityID: string(rune('a' + i%5)), Data: map[string]any{}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := src.AppendRaw(ctx, []byte(`{"not":"an event"}`)); err != nil {
		t.Fatal(err)
	}
	pub := &fakePublisher{stored: map[string]int{}}
	pub.failFirst.Store(3) // three failed acks are republished
	dlq := memory.NewDeadLetters(nil)
	bridge, err := application.NewBridge(pub, dlq, application.BridgeConfig{RetryDelay: 5 * time.Millisecond, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	cps := memory.NewCheckpoints()
	reader, err := application.NewReader(src, cps, bridge, application.ReaderConfig{Name: "bridge", CheckpointInterval: 10 * time.Millisecond, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- reader.Run(rctx) }()
	eventually(t, "every event published and the checkpoint at the end", func() bool {
		pos, _, _ := cps.Load(ctx, "bridge")
		return pos.Seq == 51
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	pub.mu.Lock()
	defer pub.mu.Unlock()
	if len(pub.stored) != 50 {
		t.Errorf("stored %d distinct events, want 50", len(pub.stored))
	}
	if n, _ := dlq.Count(ctx); n != 1 {
		t.Errorf("dead letters = %d, want the invalid entry", n)
	}
	published, _ := bridge.Counts()
	if published != 50 {
		t.Errorf("bridge counted %d publications, want 50", published)
	}
}

// fakeDelivery records how the worker ended a message.
type fakeDelivery struct {
	data       []byte
	headers    ports.Headers
	attempt    int
	last       bool
	mu         sync.Mutex
	outcome    string
	nakDelay   time.Duration
	inProgress atomic.Int32
}

func (d *fakeDelivery) Data() []byte           { return d.data }
func (d *fakeDelivery) Headers() ports.Headers { return d.headers }
func (d *fakeDelivery) Attempt() int           { return d.attempt }
func (d *fakeDelivery) LastAttempt() bool      { return d.last }
func (d *fakeDelivery) end(o string, delay time.Duration) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.outcome != "" {
		return errors.New("message ended twice")
	}
	d.outcome, d.nakDelay = o, delay
	return nil
}
func (d *fakeDelivery) Ack(context.Context) error                    { return d.end("ack", 0) }
func (d *fakeDelivery) Nak(_ context.Context, t time.Duration) error { return d.end("nak", t) }
func (d *fakeDelivery) Term(context.Context) error                   { return d.end("term", 0) }
func (d *fakeDelivery) InProgress(context.Context) error             { d.inProgress.Add(1); return nil }

// fakeConsumer hands a fixed list of deliveries to the handler, one after
// the other, or all at once when concurrent.
type fakeConsumer struct {
	deliveries []*fakeDelivery
	concurrent bool
}

func (c *fakeConsumer) Consume(ctx context.Context, _ int, handle func(context.Context, ports.Delivery)) error {
	var wg sync.WaitGroup
	for _, d := range c.deliveries {
		if c.concurrent {
			wg.Go(func() { handle(ctx, d) })
			continue
		}
		handle(ctx, d)
	}
	wg.Wait()
	return nil
}

func TestWorkerAcksNaksAndDeadLetters(t *testing.T) {
	t.Parallel()
	for _, batch := range []int{0, 3} {
		t.Run(fmt.Sprintf("batch=%d", batch), func(t *testing.T) {
			t.Parallel()
			testWorkerAcksNaksAndDeadLetters(t, batch)
		})
	}
}

// testWorkerAcksNaksAndDeadLetters runs one delivery of each kind through a
// worker with the given Batch (deliveries handed in concurrently when
// batching).
func testWorkerAcksNaksAndDeadLetters(t *testing.T, batch int) {
	evOf := func(entity, id string) []byte {
		b, err := domain.Event{ID: id, EventType: domain.EventInsert, EntityType: entity, EntityID: id, Data: map[string]any{}}.Envelope()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	ev := func(id string) []byte { return evOf("Order", id) }
	var slowCalls atomic.Int32
	exec := ports.ActionExecutorFunc(func(_ context.Context, e *domain.Event, _ *domain.Observer, _ *domain.Action) error {
		switch e.ID {
		case "flaky", "hopeless":
			return domain.Transient(errors.New("503"), 0)
		case "rejected":
			return domain.Permanent(errors.New("400"))
		case "slow":
			slowCalls.Add(1)
			time.Sleep(120 * time.Millisecond)
		}
		return nil
	})
	proc, dlq := hookProcessor(t, exec, 5)
	ok := &fakeDelivery{data: ev("ok"), attempt: 1}
	flaky := &fakeDelivery{data: ev("flaky"), attempt: 2}
	rejected := &fakeDelivery{data: ev("rejected"), attempt: 1}
	hopeless := &fakeDelivery{data: ev("hopeless"), attempt: 3, last: true}
	finalAttempt := &fakeDelivery{data: ev("flaky"), attempt: 5}
	garbage := &fakeDelivery{data: []byte("{not json"), attempt: 1}
	slow := &fakeDelivery{data: ev("slow"), attempt: 1}
	unwanted := &fakeDelivery{data: evOf("Invoice", "unwanted"), attempt: 1} // no observer of Invoice
	consumer := &fakeConsumer{deliveries: []*fakeDelivery{ok, flaky, rejected, hopeless, finalAttempt, garbage, slow, unwanted}, concurrent: batch > 0}
	rp := &recordingProc{RunProcessor: proc}
	wm := newMetrics()
	w, err := application.NewWorker(consumer, rp, dlq, application.WorkerConfig{InProgressInterval: 30 * time.Millisecond, Logger: discardLogger(), Batch: batch,
		Unwanted: proc.Unwanted, Metrics: wm})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Run(t.Context()); err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name string
		d    *fakeDelivery
		want string
	}{
		{"success acks", ok, "ack"},
		{"transient naks", flaky, "nak"},
		{"permanent is dead-lettered and acked", rejected, "ack"},
		{"last delivery dead-letters and terminates", hopeless, "term"},
		{"last attempt of the retry policy dead-letters and acks", finalAttempt, "ack"},
		{"garbage is dead-lettered and terminated", garbage, "term"},
		{"slow acks", slow, "ack"},
		{"an event no observer acts on acks at once", unwanted, "ack"},
	}
	for _, c := range checks {
		if c.d.outcome != c.want {
			t.Errorf("%s: outcome %q, want %q", c.name, c.d.outcome, c.want)
		}
	}
	if finished, _ := rp.state(); slices.Contains(finished, "unwanted") {
		t.Error("the event no observer acts on went through a run")
	}
	if flaky.nakDelay < 900*time.Millisecond || flaky.nakDelay > time.Second {
		t.Errorf("nak delay %s, want the policy's 1s", flaky.nakDelay)
	}
	if slow.inProgress.Load() == 0 {
		t.Error("a slow action sent no in-progress signal")
	}
	items, err := dlq.List(t.Context(), ports.DeadLetterFilter{})
	if err != nil {
		t.Fatal(err)
	}
	byEvent := map[string]ports.DeadLetter{}
	for _, it := range items {
		byEvent[it.Event.ID] = it
	}
	if len(items) != 4 {
		t.Fatalf("dead letters = %d (%v), want rejected, hopeless, flaky's last attempt and the garbage", len(items), byEvent)
	}
	if d := byEvent["hopeless"]; d.Action != "hook" || d.Attempts != 3 {
		t.Errorf("hopeless dead letter = %+v", d)
	}
	if d := byEvent[""]; string(d.Raw) != "{not json" {
		t.Errorf("garbage dead letter raw = %q", d.Raw)
	}
	// The garbage never reaches the processor: the worker counts it.
	if events, _, dead, _ := wm.snapshot(); events["invalid"] != 1 || dead != 1 {
		t.Errorf("worker metrics: %v events, %d dead-lettered; want the garbage counted as invalid and dead-lettered", events, dead)
	}
}

// ackProbe is a fakeDelivery whose Ack records the event's dedup state at
// that moment.
type ackProbe struct {
	*fakeDelivery
	id      string
	dedup   *fakeDedup
	atAckMu sync.Mutex
	atAck   string
}

func (a *ackProbe) Ack(ctx context.Context) error {
	a.atAckMu.Lock()
	a.atAck = a.dedup.state(a.id)
	a.atAckMu.Unlock()
	return a.fakeDelivery.Ack(ctx)
}

// probeConsumer hands its deliveries to the handler all at once.
type probeConsumer struct{ deliveries []*ackProbe }

func (c *probeConsumer) Consume(ctx context.Context, _ int, handle func(context.Context, ports.Delivery)) error {
	var wg sync.WaitGroup
	for _, d := range c.deliveries {
		wg.Go(func() { handle(ctx, d) })
	}
	wg.Wait()
	return nil
}

// With Batch, the worker claims messages beyond its Concurrency while the
// first ones run, claims each event once (the step uses the prepared
// claim), steps at most Concurrency at once and acks a message only after
// its event was marked done.
func TestWorkerBatchClaimsAheadAndAcksAfterTheDoneMark(t *testing.T) {
	t.Parallel()
	const messages, concurrency, batch = 12, 2, 6
	release := make(chan struct{})
	w, consumer, dedup, most, _ := batchWorker(t, messages, concurrency, batch, release)
	bg := runInBackground(t, w.Run)
	claimed := func() int {
		n := 0
		for _, d := range consumer.deliveries {
			if dedup.state(d.id) == "me" {
				n++
			}
		}
		return n
	}
	eventually(t, "messages claimed beyond the ones running", func() bool { return claimed() > concurrency })
	close(release)
	if err := bg.Wait(t); err != nil {
		t.Fatal(err)
	}
	for _, d := range consumer.deliveries {
		if d.outcome != "ack" || d.atAck != "done" {
			t.Errorf("%s: outcome %q, dedup state at the ack %q; want ack after done", d.id, d.outcome, d.atAck)
		}
	}
	if got := dedup.calls.Load(); got != messages {
		t.Errorf("%d claims for %d messages, want one each (the steps use the prepared claims)", got, messages)
	}
	if got := most.Load(); got > concurrency {
		t.Errorf("%d steps ran at once, want at most %d", got, concurrency)
	}
}

// At shutdown, messages prepared and waiting for a step slot are released
// (their claims dropped) and naked for redelivery at once; the one
// running finishes and is acked.
func TestWorkerBatchShutdownReleasesWaitingMessages(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	w, consumer, dedup, _, _ := batchWorker(t, 3, 1, 4, release)
	bg := runInBackground(t, w.Run)
	eventually(t, "every message claimed", func() bool { return claimedAll(consumer, dedup) })
	bg.Cancel()
	eventually(t, "the waiting messages naked", func() bool {
		naked := 0
		for _, d := range consumer.deliveries {
			d.mu.Lock()
			if d.outcome == "nak" && d.nakDelay == 0 {
				naked++
			}
			d.mu.Unlock()
		}
		return naked == 2
	})
	close(release)
	if err := bg.Wait(t); err != nil {
		t.Fatal(err)
	}
	acked := 0
	for _, d := range consumer.deliveries {
		switch {
		case d.outcome == "ack" && dedup.state(d.id) == "done":
			acked++
		case d.outcome == "nak" && dedup.state(d.id) == "":
		default:
			t.Errorf("%s: outcome %q, dedup state %q; want acked and done, or naked and released", d.id, d.outcome, dedup.state(d.id))
		}
	}
	if acked != 1 {
		t.Errorf("%d acked, want the 1 running at shutdown", acked)
	}
}

// claimedAll reports whether every message of consumer is claimed by
// the worker ("me").
func claimedAll(consumer *probeConsumer, dedup *fakeDedup) bool {
	for _, d := range consumer.deliveries {
		if dedup.state(d.id) != "me" {
			return false
		}
	}
	return true
}

// batchWorker builds a worker (Concurrency concurrency, Batch batch) over
// Dedup with a fakeDedup, for messages messages handed in at once, whose
// action waits for release; most is the most steps seen running at once.
func batchWorker(t *testing.T, messages, concurrency, batch int, release chan struct{}, opts ...func(*application.WorkerConfig)) (*application.Worker, *probeConsumer, *fakeDedup, *atomic.Int32, *memory.DeadLetters) {
	t.Helper()
	var running, most atomic.Int32
	exec := ports.ActionExecutorFunc(func(ctx context.Context, _ *domain.Event, _ *domain.Observer, _ *domain.Action) error {
		n := running.Add(1)
		defer running.Add(-1)
		for {
			m := most.Load()
			if n <= m || most.CompareAndSwap(m, n) {
				break
			}
		}
		return untilReleased(ctx, release)
	})
	base, dlq := hookProcessor(t, exec, 3)
	dedup := newFakeDedup()
	proc, err := application.NewDedup(base, dedup, application.DedupConfig{Token: "me", Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	consumer := &probeConsumer{}
	for i := range messages {
		id := fmt.Sprint("m", i)
		b, err := domain.Event{ID: id, EventType: domain.EventInsert, EntityType: "Order", EntityID: id, Data: map[string]any{}}.Envelope()
		if err != nil {
			t.Fatal(err)
		}
		consumer.deliveries = append(consumer.deliveries, &ackProbe{fakeDelivery: &fakeDelivery{data: b, attempt: 1}, id: id, dedup: dedup})
	}
	cfg := application.WorkerConfig{Concurrency: concurrency, Batch: batch, Logger: discardLogger()}
	for _, o := range opts {
		o(&cfg)
	}
	w, err := application.NewWorker(consumer, proc, dlq, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return w, consumer, dedup, &most, dlq
}

// A step still running ShutdownGrace after shutdown has its actions
// cancelled: the worker returns, the run is abandoned (claim released)
// and the message naked for redelivery at once.
func TestWorkerShutdownGraceCancelsTheStep(t *testing.T) {
	t.Parallel()
	never := make(chan struct{}) // the action would wait for ever
	w, consumer, dedup, _, _ := batchWorker(t, 1, 1, 0, never, func(c *application.WorkerConfig) { c.ShutdownGrace = 100 * time.Millisecond })
	bg := runInBackground(t, w.Run)
	d := consumer.deliveries[0]
	eventually(t, "the message running", func() bool { return dedup.state(d.id) == "me" })
	bg.Cancel()
	if err := bg.Wait(t); err != nil {
		t.Fatal(err)
	}
	d.mu.Lock()
	outcome, delay := d.outcome, d.nakDelay
	d.mu.Unlock()
	if outcome != "nak" || delay != 0 || dedup.state(d.id) != "" {
		t.Errorf("after the grace: outcome %q (delay %v), dedup state %q; want naked at once and the claim released", outcome, delay, dedup.state(d.id))
	}
}

// TestWorkerLastDeliveryAtShutdownIsParked: at shutdown, a message on its
// last delivery (the broker will not deliver it again) whose step was cut
// off by the grace, or that still waited for a step slot, is
// dead-lettered and terminated, not naked: before, it was naked into
// nothing and its actions were neither retried nor dead-lettered.
func TestWorkerLastDeliveryAtShutdownIsParked(t *testing.T) {
	t.Parallel()
	never := make(chan struct{}) // the action would wait for ever
	w, consumer, dedup, _, dlq := batchWorker(t, 3, 1, 4, never, func(c *application.WorkerConfig) { c.ShutdownGrace = 100 * time.Millisecond })
	for _, d := range consumer.deliveries[:2] {
		d.last = true // the third is not: it is naked for a later delivery
	}
	bg := runInBackground(t, w.Run)
	eventually(t, "every message claimed", func() bool { return claimedAll(consumer, dedup) })
	bg.Cancel()
	if err := bg.Wait(t); err != nil {
		t.Fatal(err)
	}
	for _, d := range consumer.deliveries {
		d.mu.Lock()
		outcome := d.outcome
		d.mu.Unlock()
		want := "nak"
		if d.last {
			want = "term"
		}
		if outcome != want {
			t.Errorf("%s (last delivery %v): outcome %q, want %q", d.id, d.last, outcome, want)
		}
	}
	items, err := dlq.List(t.Context(), ports.DeadLetterFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 2 {
		t.Errorf("%d dead letters, want the 2 messages on their last delivery", len(items))
	}
}

func TestNewWorkerRefusesANegativeBatch(t *testing.T) {
	t.Parallel()
	proc := newProcessor(t, nil, ports.ActionExecutorFunc(func(context.Context, *domain.Event, *domain.Observer, *domain.Action) error { return nil }),
		memory.NewDeadLetters(nil), application.ProcessorConfig{})
	if _, err := application.NewWorker(&fakeConsumer{}, proc, memory.NewDeadLetters(nil), application.WorkerConfig{Logger: discardLogger(), Batch: -1}); err == nil {
		t.Fatal("NewWorker accepted batch -1")
	}
}

// hookProcessor is a Processor over one observer of Order inserts with one
// webhook action run by exec, retried up to maxAttempts a second apart,
// dead-lettering into the returned store.
func hookProcessor(t *testing.T, exec ports.ActionExecutor, maxAttempts int) (*application.Processor, *memory.DeadLetters) {
	t.Helper()
	obs := []domain.Observer{{
		Name: "o", Entity: "Order", Events: []domain.EventType{domain.EventInsert}, OnFailure: domain.FailureDLQ,
		Retry:   domain.RetryPolicy{MaxAttempts: maxAttempts, InitialDelay: time.Second, MaxDelay: time.Second, Backoff: domain.BackoffFixed},
		Actions: []domain.Action{{Name: "hook", Type: domain.ActionWebhook}},
	}}
	dlq := memory.NewDeadLetters(nil)
	proc, err := application.NewProcessor(domain.NewMatcher(obs), application.ProcessorConfig{Executor: exec, DeadLetters: dlq, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	return proc, dlq
}

// TestWorkerSameEventTwiceAtOnceRunsOnce: the bus delivers an event again
// while the first delivery still runs in the same worker (an ack wait
// that ran out). The dedup store knows one token per process, so the
// second found the claim its own: both ran the action. The second is told
// busy now, and once the first finished it is skipped as done.
func TestWorkerSameEventTwiceAtOnceRunsOnce(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	release := make(chan struct{})
	exec := ports.ActionExecutorFunc(func(ctx context.Context, _ *domain.Event, _ *domain.Observer, _ *domain.Action) error {
		calls.Add(1)
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil
	})
	base, dlq := hookProcessor(t, exec, 3)
	proc, err := application.NewDedup(base, memory.NewDeduplicator(time.Now), application.DedupConfig{Token: "worker-1", Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	body, err := domain.Event{ID: "ev-twice", EventType: domain.EventInsert, EntityType: "Order", EntityID: "o1", Data: map[string]any{}}.Envelope()
	if err != nil {
		t.Fatal(err)
	}
	first, second := &fakeDelivery{data: body, attempt: 1}, &fakeDelivery{data: body, attempt: 2}
	w, err := application.NewWorker(&fakeConsumer{deliveries: []*fakeDelivery{first, second}, concurrent: true}, proc, dlq,
		application.WorkerConfig{Concurrency: 4, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	time.AfterFunc(300*time.Millisecond, func() { close(release) })
	if err := w.Run(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("the action ran %d times for one event delivered twice at once to one worker, want 1", n)
	}
}

// deferringProcessor is a processor whose one action the endpoint puts
// off until, the first putOffs calls (every call when negative), then
// fails transiently; real counts the attempts made.
func deferringProcessor(t *testing.T, putOffs int32, reason domain.DeferReason, policy domain.RetryPolicy) (application.RunProcessor, *memory.DeadLetters, *atomic.Int32) {
	t.Helper()
	var calls, real atomic.Int32
	exec := ports.ActionExecutorFunc(func(context.Context, *domain.Event, *domain.Observer, *domain.Action) error {
		if n := calls.Add(1); putOffs < 0 || n <= putOffs {
			return &domain.DeferredError{Endpoint: "x", Reason: reason, Until: time.Now().Add(20 * time.Millisecond)}
		}
		real.Add(1)
		return domain.Transient(errors.New("503"), 0)
	})
	obs := []domain.Observer{{Name: "o", Entity: "Order", Events: []domain.EventType{domain.EventInsert}, OnFailure: domain.FailureDLQ,
		Retry: policy, Actions: []domain.Action{{Name: "hook", Type: domain.ActionWebhook}}}}
	dlq := memory.NewDeadLetters(nil)
	proc, err := application.NewProcessor(domain.NewMatcher(obs), application.ProcessorConfig{Executor: exec, DeadLetters: dlq,
		Logger: discardLogger(), Retries: memory.NewRetries(dlq, nil)})
	if err != nil {
		t.Fatal(err)
	}
	return proc, dlq, &real
}

// A delivery whose action its endpoint only puts off (a rate limit, a
// concurrency cap) is not an attempt: the worker steps it again holding
// the message, instead of naking it (the broker's delivery count is the
// next delivery's attempt number). Before, two put-off deliveries and one
// failure dead-lettered the action at max_attempts 3 after one attempt,
// and a cap that put off every delivery gave it up at max_deliver after
// none.
func TestWorkerPutOffIsNoAttempt(t *testing.T) {
	t.Parallel()
	body, err := domain.Event{ID: "e1", EventType: domain.EventInsert, EntityType: "Order", EntityID: "e1", Data: map[string]any{}}.Envelope()
	if err != nil {
		t.Fatal(err)
	}
	policy := domain.RetryPolicy{MaxAttempts: 3, InitialDelay: time.Second, MaxDelay: time.Second, Backoff: domain.BackoffFixed, InMemoryAttempts: 3}
	t.Run("rate limit, then a failure", func(t *testing.T) {
		t.Parallel()
		proc, dlq, real := deferringProcessor(t, 2, domain.DeferRate, policy)
		d := deliverOnce(t, proc, dlq, body)
		if d.outcome != "nak" || real.Load() != 1 {
			t.Errorf("outcome %q after %d attempts, want one attempt, then a nak for the retry", d.outcome, real.Load())
		}
		if items, _ := dlq.List(t.Context(), ports.DeadLetterFilter{}); len(items) != 0 {
			t.Errorf("%d dead letters after one attempt of three", len(items))
		}
	})
	t.Run("put off three times", func(t *testing.T) {
		t.Parallel()
		proc, dlq, real := deferringProcessor(t, 3, domain.DeferConcurrency, policy)
		deliverOnce(t, proc, dlq, body)
		if real.Load() != 1 {
			t.Errorf("%d attempts within the delivery, want the one after three put-offs", real.Load())
		}
	})
}

// deliverOnce has a worker over proc handle body once, as its first
// delivery, and returns the delivery (its outcome).
func deliverOnce(t *testing.T, proc application.RunProcessor, dlq *memory.DeadLetters, body []byte) *fakeDelivery {
	t.Helper()
	d := &fakeDelivery{data: body, attempt: 1}
	w, err := application.NewWorker(&fakeConsumer{deliveries: []*fakeDelivery{d}}, proc, dlq, application.WorkerConfig{Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Run(t.Context()); err != nil {
		t.Fatal(err)
	}
	return d
}
