package nats

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/internal/testenv"
	"github.com/fraiseql/fraiseql-observer/internal/testsupport"
	"github.com/fraiseql/fraiseql-observer/ports"
	"github.com/fraiseql/fraiseql-observer/ports/porttest"
)

// waitTimeout bounds every wait for an asynchronous outcome; a correctness
// timeout, not a speed target.
const waitTimeout = 20 * time.Second

func testLogger(t testing.TB) *slog.Logger {
	t.Helper()
	if testing.Verbose() {
		w := &tWriter{t: t}
		t.Cleanup(w.stop)
		return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// tWriter logs through t until the test's cleanup stops it: the client
// library calls some handlers (connection closed) asynchronously, after a
// cleanup's Close returned, and t.Log after the test's end panics.
type tWriter struct {
	t       testing.TB
	mu      sync.Mutex
	stopped bool
}

func (w *tWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.stopped {
		w.t.Log(strings.TrimSuffix(string(p), "\n"))
	}
	return len(p), nil
}

func (w *tWriter) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stopped = true
}

// testConfig is a config with the test's own stream and subject prefix.
func testConfig(t testing.TB) Config {
	t.Helper()
	return Config{
		URL: testenv.NATSURL(t),
		Stream: StreamConfig{
			Name:          strings.ToUpper(testenv.Name("S")),
			SubjectPrefix: testenv.Name("t"),
			Storage:       "memory",
		},
	}
}

// dial opens a connection closed at cleanup.
func dial(t testing.TB, cfg Config) *Conn {
	t.Helper()
	c, err := Connect(t.Context(), cfg, testLogger(t))
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

// setup connects with cfg, creates the stream and deletes it at cleanup.
func setup(t testing.TB, cfg Config) *Conn {
	t.Helper()
	c := dial(t, cfg)
	if err := c.EnsureStream(t.Context()); err != nil {
		t.Fatalf("EnsureStream: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := c.DeleteStream(ctx); err != nil && !errors.Is(err, ports.ErrNotFound) {
			t.Errorf("DeleteStream: %v", err)
		}
	})
	return c
}

func newEvent(i int) domain.Event {
	return domain.Event{
		ID:         uuid.NewString(),
		EventType:  domain.EventUpdate,
		EntityType: "Order",
		EntityID:   uuid.NewString(),
		Data:       map[string]any{"index": i, "status": "shipped"},
		Timestamp:  time.Now().UTC().Truncate(time.Microsecond),
		Source:     "main",
	}
}

// publishWait publishes ev and returns its result.
func publishWait(t testing.TB, p *Publisher, ev domain.Event) ports.PublishResult {
	t.Helper()
	ch := make(chan ports.PublishResult, 1)
	if err := p.Publish(t.Context(), ev, nil, func(r ports.PublishResult) { ch <- r }); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	select {
	case r := <-ch:
		return r
	case <-time.After(waitTimeout):
		t.Fatalf("no publish result for %s", ev.ID)
		return ports.PublishResult{}
	}
}

func streamMsgs(t testing.TB, c *Conn) uint64 {
	t.Helper()
	st, err := c.js.Stream(t.Context(), c.cfg.Stream.Name)
	if err != nil {
		t.Fatalf("stream info: %v", err)
	}
	return st.CachedInfo().State.Msgs
}

// runConsumer runs Consume in the background; the returned function
// cancels it and waits for it to return.
func runConsumer(t testing.TB, cons *Consumer, concurrency int, handle func(context.Context, ports.Delivery)) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() { errc <- cons.Consume(ctx, concurrency, handle) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-errc:
				if err != nil {
					t.Errorf("Consume returned %v after cancel, want nil", err)
				}
			case <-time.After(waitTimeout):
				t.Errorf("Consume did not return after cancel")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func newConsumer(t testing.TB, c *Conn) *Consumer {
	t.Helper()
	cons, err := NewConsumer(t.Context(), c)
	if err != nil {
		t.Fatalf("NewConsumer: %v", err)
	}
	return cons
}

func TestEventBusConformance(t *testing.T) {
	t.Parallel()
	porttest.RunEventBus(t, func(t *testing.T) porttest.BusHarness {
		cfg := testConfig(t)
		cfg.Consumer.AckWait = 2 * time.Second
		c := setup(t, cfg)
		return porttest.BusHarness{
			Publisher: NewPublisher(c),
			NewConsumer: func(t *testing.T) ports.EventConsumer {
				return newConsumer(t, dial(t, cfg)) // a process of its own
			},
		}
	})
}

func TestStreamSettingsAppliedAndUpdated(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		set    StreamConfig // Name and SubjectPrefix are filled per test
		want   StreamConfig
		change func(*StreamConfig)
	}{
		{
			name: "non-default settings",
			set: StreamConfig{Storage: "memory", Retention: "workqueue", MaxAge: time.Hour, MaxMsgs: 5000,
				MaxBytes: 10 << 20, DuplicateWindow: 30 * time.Second},
			want: StreamConfig{Storage: "memory", Retention: "workqueue", MaxAge: time.Hour, MaxMsgs: 5000,
				MaxBytes: 10 << 20, DuplicateWindow: 30 * time.Second, Replicas: 1},
			change: func(s *StreamConfig) { s.MaxAge = 2 * time.Hour },
		},
		{
			name: "defaults",
			set:  StreamConfig{},
			want: StreamConfig{Storage: "file", Retention: "limits",
				DuplicateWindow: DefaultDuplicateWindow, Replicas: 1},
			change: func(s *StreamConfig) { s.DuplicateWindow = time.Minute; s.MaxAge = time.Hour },
		},
		{
			name: "negative age is unlimited, interest retention",
			set:  StreamConfig{Storage: "memory", Retention: "interest", MaxAge: -1, MaxBytes: 1 << 20},
			want: StreamConfig{Storage: "memory", Retention: "interest", MaxBytes: 1 << 20,
				DuplicateWindow: DefaultDuplicateWindow, Replicas: 1},
			change: func(s *StreamConfig) { s.MaxAge = 3 * time.Hour; s.MaxBytes = 0 },
		},
		{
			name:   "limits back to unlimited",
			set:    StreamConfig{Storage: "memory", Retention: "workqueue", MaxAge: time.Hour, MaxMsgs: 10, MaxBytes: 1 << 20},
			want:   StreamConfig{Storage: "memory", Retention: "workqueue", MaxAge: time.Hour, MaxMsgs: 10, MaxBytes: 1 << 20, DuplicateWindow: DefaultDuplicateWindow, Replicas: 1},
			change: func(s *StreamConfig) { s.MaxAge, s.MaxMsgs, s.MaxBytes = 0, 0, 0 },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := testConfig(t)
			set := tt.set
			set.Name, set.SubjectPrefix = cfg.Stream.Name, cfg.Stream.SubjectPrefix
			cfg.Stream = set
			c := setup(t, cfg)

			want := tt.want
			want.Name, want.SubjectPrefix = set.Name, set.SubjectPrefix
			got, err := c.StreamSettings(t.Context())
			if err != nil {
				t.Fatalf("StreamSettings: %v", err)
			}
			if got != want {
				t.Fatalf("StreamSettings = %+v\nwant             %+v", got, want)
			}

			// A second process with a changed setting updates the stream.
			changed := cfg
			tt.change(&changed.Stream)
			c2 := dial(t, changed)
			if err := c2.EnsureStream(t.Context()); err != nil {
				t.Fatalf("EnsureStream with a changed setting: %v", err)
			}
			tt.change(&want)
			got, err = c2.StreamSettings(t.Context())
			if err != nil {
				t.Fatalf("StreamSettings: %v", err)
			}
			if got != want {
				t.Fatalf("after update StreamSettings = %+v\nwant                          %+v", got, want)
			}
		})
	}
}

func TestStreamSettingsMissingStream(t *testing.T) {
	t.Parallel()
	c := dial(t, testConfig(t))
	_, err := c.StreamSettings(t.Context())
	if !errors.Is(err, ports.ErrNotFound) {
		t.Fatalf("StreamSettings of a missing stream = %v, want ErrNotFound", err)
	}
}

func TestEnsureStreamRefusesStorageChange(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	setup(t, cfg)
	cfg.Stream.Storage = "file"
	c2 := dial(t, cfg)
	err := c2.EnsureStream(t.Context())
	if err == nil || !strings.Contains(err.Error(), "ensure stream "+cfg.Stream.Name) {
		t.Fatalf("EnsureStream changing storage = %v, want an error naming the stream", err)
	}
}

func TestPublishStoresEveryEventOnce(t *testing.T) {
	t.Parallel()
	c := setup(t, testConfig(t))
	p := NewPublisher(c)
	const n = 1000
	var (
		mu      sync.Mutex
		results = make([][]ports.PublishResult, n)
	)
	for i := range n {
		err := p.Publish(t.Context(), newEvent(i), nil, func(r ports.PublishResult) {
			mu.Lock()
			results[i] = append(results[i], r)
			mu.Unlock()
		})
		if err != nil {
			t.Fatalf("Publish %d: %v", i, err)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	if err := p.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	if p.Pending() != 0 {
		t.Fatalf("Pending after Flush = %d", p.Pending())
	}
	mu.Lock()
	defer mu.Unlock()
	var last uint64
	for i, rs := range results {
		if len(rs) != 1 {
			t.Fatalf("event %d: done called %d times, want once", i, len(rs))
		}
		r := rs[0]
		if r.Err != nil || r.Duplicate {
			t.Fatalf("event %d: result %+v, want stored", i, r)
		}
		if r.Sequence <= last {
			t.Fatalf("event %d: sequence %d after %d, want increasing in publish order", i, r.Sequence, last)
		}
		last = r.Sequence
	}
	if got := streamMsgs(t, c); got != n {
		t.Fatalf("stream holds %d messages, want %d", got, n)
	}
}

func TestPublishDuplicateWithinWindow(t *testing.T) {
	t.Parallel()
	c := setup(t, testConfig(t))
	p := NewPublisher(c)
	ev := newEvent(1)
	first := publishWait(t, p, ev)
	if first.Err != nil || first.Duplicate {
		t.Fatalf("first publication: %+v", first)
	}
	// The same id with a different body (a re-read row) is still a duplicate.
	again := ev
	again.Data = map[string]any{"changed": true}
	second := publishWait(t, p, again)
	if second.Err != nil || !second.Duplicate {
		t.Fatalf("second publication: %+v, want Duplicate", second)
	}
	if second.Sequence != first.Sequence {
		t.Errorf("duplicate sequence = %d, want the first's %d", second.Sequence, first.Sequence)
	}
	if got := streamMsgs(t, c); got != 1 {
		t.Fatalf("stream holds %d messages, want 1", got)
	}
	// A different id is stored.
	if r := publishWait(t, p, newEvent(2)); r.Err != nil || r.Duplicate || r.Sequence != first.Sequence+1 {
		t.Fatalf("new event: %+v", r)
	}
}

func TestPublishBlocksAtMaxPending(t *testing.T) {
	t.Parallel()
	const maxPending = 8
	cfg := testConfig(t)
	cfg.MaxPending = maxPending
	c := setup(t, cfg)
	p := NewPublisher(c)

	// With every done held, the ninth Publish blocks until ctx ends.
	gate := make(chan struct{})
	var got atomic.Int64
	for i := range maxPending {
		if err := p.Publish(t.Context(), newEvent(i), nil, func(ports.PublishResult) { <-gate; got.Add(1) }); err != nil {
			t.Fatalf("Publish %d: %v", i, err)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	err := p.Publish(ctx, newEvent(99), nil, func(ports.PublishResult) { t.Error("done of a refused publication called") })
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Publish beyond MaxPending = %v, want it to block until ctx ends", err)
	}
	close(gate)
	fctx, fcancel := context.WithTimeout(t.Context(), waitTimeout)
	defer fcancel()
	if err := p.Flush(fctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	if got.Load() != maxPending {
		t.Fatalf("%d done calls, want %d", got.Load(), maxPending)
	}

	// Under load from several goroutines the number of publications in
	// flight (Publish returned, done not yet returned) never exceeds the
	// bound, and nothing is dropped.
	var (
		returned, finished atomic.Int64
		maxSeen            atomic.Int64
		libMax             atomic.Int64
		wg                 sync.WaitGroup
	)
	observe := func() {
		inflight := returned.Load() - finished.Load()
		for m := maxSeen.Load(); inflight > m && !maxSeen.CompareAndSwap(m, inflight); m = maxSeen.Load() {
		}
		lib := int64(c.js.PublishAsyncPending())
		for m := libMax.Load(); lib > m && !libMax.CompareAndSwap(m, lib); m = libMax.Load() {
		}
	}
	const perWorker = 100
	for range 4 {
		wg.Go(func() {
			for i := range perWorker {
				err := p.Publish(t.Context(), newEvent(i), nil, func(r ports.PublishResult) {
					if r.Err != nil {
						t.Errorf("publication failed: %v", r.Err)
					}
					time.Sleep(time.Millisecond) // hold the place a little
					observe()
					finished.Add(1)
				})
				if err != nil {
					t.Errorf("Publish: %v", err)
					return
				}
				returned.Add(1)
				observe()
			}
		})
	}
	wg.Wait()
	if err := p.Flush(fctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	if maxSeen.Load() > maxPending || libMax.Load() > maxPending {
		t.Fatalf("in flight reached %d (client library: %d), want at most %d", maxSeen.Load(), libMax.Load(), maxPending)
	}
	if maxSeen.Load() < 2 {
		t.Fatalf("in flight never above %d: the test did not exercise concurrency", maxSeen.Load())
	}
	if finished.Load() != 4*perWorker {
		t.Fatalf("%d publications finished, want %d", finished.Load(), 4*perWorker)
	}
	if got := streamMsgs(t, c); got != maxPending+4*perWorker {
		t.Fatalf("stream holds %d messages, want %d", got, maxPending+4*perWorker)
	}
}

func TestPublishAfterCloseIsUnavailable(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	setup(t, cfg)
	c := dial(t, cfg)
	p := NewPublisher(c)
	c.Close()
	err := p.Publish(t.Context(), newEvent(1), nil, func(ports.PublishResult) { t.Error("done called for a refused publication") })
	if !errors.Is(err, ports.ErrUnavailable) {
		t.Fatalf("Publish after Close = %v, want ErrUnavailable", err)
	}
}

func TestConnectUnreachableIsUnavailable(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.URL = "nats://user:secret@127.0.0.1:1"
	cfg.ConnectTimeout = 2 * time.Second
	_, err := Connect(t.Context(), cfg, testLogger(t))
	if !errors.Is(err, ports.ErrUnavailable) {
		t.Fatalf("Connect to a closed port = %v, want ErrUnavailable", err)
	}
	if strings.Contains(err.Error(), "secret") {
		t.Fatalf("error leaks the password: %v", err)
	}
}

func TestConsumeEndsWithErrorWhenConnectionCloses(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	setup(t, cfg)
	c := dial(t, cfg)
	cons := newConsumer(t, c)
	errc := make(chan error, 1)
	go func() {
		errc <- cons.Consume(t.Context(), 2, func(context.Context, ports.Delivery) {})
	}()
	time.Sleep(100 * time.Millisecond) // let it subscribe; the outcome is the same if not
	c.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, ports.ErrUnavailable) {
			t.Fatalf("Consume after the connection closed = %v, want ErrUnavailable", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("Consume did not return after the connection closed")
	}
}

func TestConsumersShareTheDurable(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	c := setup(t, cfg)
	const n = 2000
	events := make([]domain.Event, n)
	want := map[string]bool{}
	for i := range events {
		events[i] = newEvent(i)
		want[events[i].ID] = true
	}

	var (
		mu     sync.Mutex
		seen   = map[string]int{}
		byCons [2]int
		all    = make(chan struct{})
	)
	// Both consumers are pulling before the first event is published, so
	// which one the server serves does not depend on which started first.
	// Each one idle has exactly one pull request waiting on the durable:
	// the server's count of them shows that both are ready.
	var conss [2]*Consumer
	for k := range conss {
		conss[k] = newConsumer(t, dial(t, cfg)) // a process of its own
	}
	for k, cons := range conss {
		runConsumer(t, cons, 4, func(ctx context.Context, d ports.Delivery) {
			ev, ok := ackEvent(t, ctx, d)
			if !ok {
				return
			}
			mu.Lock()
			defer mu.Unlock()
			seen[ev.ID]++
			byCons[k]++
			if len(seen) == n {
				close(all)
			}
		})
		testsupport.WaitUntil(t, waitTimeout, 20*time.Millisecond, fmt.Sprintf("%d pull requests on the shared durable", k+1), func() bool {
			info, err := conss[0].cons.Info(t.Context())
			if err != nil {
				t.Fatalf("consumer info: %v", err)
			}
			return info.NumWaiting >= k+1
		})
	}

	publishAll(t, c, events)

	select {
	case <-all:
	case <-time.After(waitTimeout):
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("processed %d of %d events", len(seen), n)
	}
	mu.Lock()
	defer mu.Unlock()
	for id, count := range seen {
		if !want[id] {
			t.Fatalf("unknown event %s", id)
		}
		if count != 1 {
			t.Fatalf("event %s processed %d times, want once", id, count)
		}
	}
	if byCons[0] == 0 || byCons[1] == 0 {
		t.Fatalf("consumers processed %v: both were pulling before the first publish, both should get some", byCons)
	}
}

// delivered is what a handler saw of one delivery.
type delivered struct {
	attempt int
	last    bool
	at      time.Time
}

func TestRedelivery(t *testing.T) {
	t.Parallel()
	// ackWait is the consumer's ack wait in every case.
	const ackWait = time.Second
	tests := []struct {
		name       string
		maxDeliver int
		// act decides the fate of a delivery.
		act func(ctx context.Context, d ports.Delivery) error
		// want is the number of deliveries expected in all; check runs on
		// them.
		want  int
		check func(t *testing.T, got []delivered)
	}{
		{
			name: "unacked is redelivered after the ack wait", maxDeliver: 5, want: 2,
			act: func(ctx context.Context, d ports.Delivery) error {
				if d.Attempt() == 1 {
					return nil // neither ack nor nak
				}
				return d.Ack(ctx)
			},
			check: func(t *testing.T, got []delivered) {
				if got[1].attempt != 2 {
					t.Errorf("redelivery attempt = %d, want 2", got[1].attempt)
				}
				// The server's ack-wait timer starts when it sends the
				// message, before the handler takes got[0].at: a late first
				// dispatch shortens the gap seen here. Half the ack wait
				// leaves room for that and still tells a redelivery that
				// waited from one that came (almost) at once.
				if d := got[1].at.Sub(got[0].at); d < ackWait/2 {
					t.Errorf("redelivered after %s, want no sooner than about the %s ack wait", d, ackWait)
				}
			},
		},
		{
			name: "nak with delay waits", maxDeliver: 5, want: 2,
			act: func(ctx context.Context, d ports.Delivery) error {
				if d.Attempt() == 1 {
					return d.Nak(ctx, 300*time.Millisecond)
				}
				return d.Ack(ctx)
			},
			check: func(t *testing.T, got []delivered) {
				if got[1].attempt != 2 {
					t.Errorf("redelivery attempt = %d, want 2", got[1].attempt)
				}
				if d := got[1].at.Sub(got[0].at); d < 250*time.Millisecond {
					t.Errorf("redelivered after %s, want no earlier than the 300ms nak delay", d)
				}
			},
		},
		{
			name: "nak without delay redelivers", maxDeliver: 5, want: 2,
			act: func(ctx context.Context, d ports.Delivery) error {
				if d.Attempt() == 1 {
					return d.Nak(ctx, 0)
				}
				return d.Ack(ctx)
			},
			check: func(t *testing.T, got []delivered) {
				if got[1].attempt != 2 {
					t.Errorf("redelivery attempt = %d, want 2", got[1].attempt)
				}
			},
		},
		{
			name: "term stops redelivery", maxDeliver: 5, want: 1,
			act: func(ctx context.Context, d ports.Delivery) error { return d.Term(ctx) },
		},
		{
			name: "last attempt at max deliver", maxDeliver: 2, want: 2,
			act: func(ctx context.Context, d ports.Delivery) error { return d.Nak(ctx, 0) },
			check: func(t *testing.T, got []delivered) {
				if got[0].last || got[0].attempt != 1 {
					t.Errorf("first delivery %+v, want attempt 1 and not last", got[0])
				}
				if !got[1].last || got[1].attempt != 2 {
					t.Errorf("second delivery %+v, want attempt 2 and last", got[1])
				}
			},
		},
		{
			name: "in progress extends the ack wait", maxDeliver: 5, want: 1,
			act: func(ctx context.Context, d ports.Delivery) error {
				// 1.6s of work against a 1s ack wait, a beat every
				// 200ms: 800ms of slack each for a loaded machine.
				for range 8 {
					time.Sleep(200 * time.Millisecond)
					if err := d.InProgress(ctx); err != nil {
						return err
					}
				}
				return d.Ack(ctx)
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := testConfig(t)
			cfg.Consumer.AckWait = ackWait
			cfg.Consumer.MaxDeliver = tt.maxDeliver
			c := setup(t, cfg)
			cons := newConsumer(t, c)
			ev := newEvent(1)
			if r := publishWait(t, NewPublisher(c), ev); r.Err != nil {
				t.Fatalf("publish: %v", r.Err)
			}
			var (
				mu     sync.Mutex
				got    []delivered
				enough = make(chan struct{})
			)
			runConsumer(t, cons, 2, func(ctx context.Context, d ports.Delivery) {
				mu.Lock()
				got = append(got, delivered{attempt: d.Attempt(), last: d.LastAttempt(), at: time.Now()})
				if len(got) == tt.want {
					close(enough)
				}
				mu.Unlock()
				if err := tt.act(ctx, d); err != nil {
					t.Errorf("attempt %d: %v", d.Attempt(), err)
				}
			})
			select {
			case <-enough:
			case <-time.After(waitTimeout):
				t.Fatalf("saw %d deliveries, want %d", len(got), tt.want)
			}
			// The message must end: no ack pending, nothing left to deliver,
			// and no delivery beyond the expected ones.
			waitConsumerIdle(t, cons)
			time.Sleep(1500 * time.Millisecond) // longer than the ack wait
			mu.Lock()
			defer mu.Unlock()
			if len(got) != tt.want {
				t.Fatalf("saw %d deliveries %+v, want %d", len(got), got, tt.want)
			}
			if tt.check != nil {
				tt.check(t, got)
			}
		})
	}
}

// waitConsumerIdle waits until the consumer has nothing left to deliver
// and nothing awaiting an ack.
func waitConsumerIdle(t *testing.T, cons *Consumer) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		info, err := cons.cons.Info(t.Context())
		if err != nil {
			t.Fatalf("consumer info: %v", err)
		}
		if info.NumPending == 0 && info.NumAckPending == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("consumer not idle: pending %d, ack pending %d", info.NumPending, info.NumAckPending)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestConsumeReturnsAfterCancelWithNoHandlerRunning(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.Consumer.AckWait = time.Second
	c := setup(t, cfg)
	const n = 200
	p := NewPublisher(c)
	for i := range n {
		if err := p.Publish(t.Context(), newEvent(i), nil, func(ports.PublishResult) {}); err != nil {
			t.Fatalf("Publish: %v", err)
		}
	}
	fctx, fcancel := context.WithTimeout(t.Context(), waitTimeout)
	defer fcancel()
	if err := p.Flush(fctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}

	var (
		running  atomic.Int64
		returned atomic.Bool
		mu       sync.Mutex
		acked    = map[string]bool{}
		started  = make(chan struct{}, n)
	)
	handle := func(ctx context.Context, d ports.Delivery) {
		if returned.Load() {
			t.Error("handler started after Consume returned")
		}
		running.Add(1)
		defer running.Add(-1)
		select {
		case started <- struct{}{}:
		default:
		}
		time.Sleep(20 * time.Millisecond) // work that outlives the cancel
		ev, err := domain.DecodeEvent(d.Data())
		if err != nil {
			t.Errorf("DecodeEvent: %v", err)
			return
		}
		if err := d.Ack(context.WithoutCancel(ctx)); err != nil {
			t.Errorf("Ack: %v", err)
			return
		}
		mu.Lock()
		acked[ev.ID] = true
		mu.Unlock()
	}

	cons := newConsumer(t, c)
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() { errc <- cons.Consume(ctx, 4, handle) }()
	for range 10 {
		select {
		case <-started:
		case <-time.After(waitTimeout):
			t.Fatal("handlers did not start")
		}
	}
	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("Consume = %v, want nil after cancel", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("Consume did not return after cancel")
	}
	returned.Store(true)
	if r := running.Load(); r != 0 {
		t.Fatalf("%d handlers still running after Consume returned", r)
	}
	time.Sleep(300 * time.Millisecond) // a late handler would show up here
	mu.Lock()
	first := len(acked)
	mu.Unlock()
	if first == 0 || first == n {
		t.Fatalf("first run acked %d of %d; the cancel should stop it midway", first, n)
	}

	// Nothing is lost: a new Consume gets the rest (released or redelivered
	// after the ack wait).
	returned.Store(false)
	all := make(chan struct{})
	var closeOnce sync.Once
	runConsumer(t, cons, 4, func(ctx context.Context, d ports.Delivery) {
		handle(ctx, d)
		mu.Lock()
		defer mu.Unlock()
		if len(acked) == n {
			closeOnce.Do(func() { close(all) })
		}
	})
	select {
	case <-all:
	case <-time.After(waitTimeout):
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("acked %d of %d events after restart", len(acked), n)
	}
}

func TestEmbedded(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		port    int
		wantURL bool
	}{
		{name: "in-process only", port: -1},
		{name: "random port", port: 0, wantURL: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e, err := StartEmbedded(EmbeddedConfig{StoreDir: t.TempDir(), Port: tt.port}, testLogger(t))
			if err != nil {
				t.Fatalf("StartEmbedded: %v", err)
			}
			defer e.Shutdown()
			if got := e.ClientURL() != ""; got != tt.wantURL {
				t.Fatalf("ClientURL() = %q, want a URL: %v", e.ClientURL(), tt.wantURL)
			}
			cfg := Config{Stream: StreamConfig{Name: "EVENTS", SubjectPrefix: "local"}}
			c, err := ConnectEmbedded(t.Context(), e, cfg, testLogger(t))
			if err != nil {
				t.Fatalf("ConnectEmbedded: %v", err)
			}
			defer c.Close()
			if err := c.EnsureStream(t.Context()); err != nil {
				t.Fatalf("EnsureStream: %v", err)
			}
			if tt.wantURL { // the TCP listener serves the same stream
				cfg.URL = e.ClientURL()
				tcp, err := Connect(t.Context(), cfg, testLogger(t))
				if err != nil {
					t.Fatalf("Connect over TCP: %v", err)
				}
				defer tcp.Close()
				if _, err := tcp.StreamSettings(t.Context()); err != nil {
					t.Fatalf("StreamSettings over TCP: %v", err)
				}
			}
			ev := newEvent(7)
			if r := publishWait(t, NewPublisher(c), ev); r.Err != nil || r.Sequence != 1 {
				t.Fatalf("publish: %+v", r)
			}
			got := make(chan domain.Event, 1)
			stop := runConsumer(t, newConsumer(t, c), 1, func(ctx context.Context, d ports.Delivery) {
				dec, err := domain.DecodeEvent(d.Data())
				if err != nil {
					t.Errorf("DecodeEvent: %v", err)
				}
				if err := d.Ack(ctx); err != nil {
					t.Errorf("Ack: %v", err)
				}
				got <- dec
			})
			select {
			case dec := <-got:
				wantBody, _ := ev.Envelope()
				gotBody, _ := dec.Envelope()
				if string(gotBody) != string(wantBody) {
					t.Fatalf("consumed %s\nwant     %s", gotBody, wantBody)
				}
			case <-time.After(waitTimeout):
				t.Fatal("message not consumed")
			}
			stop()
		})
	}
}

func TestSubject(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name                      string
		source, entity, eventType string
		want                      string
	}{
		{name: "plain", source: "main", entity: "Order", eventType: "INSERT", want: "p.x.main.Order.INSERT"},
		{name: "empty source is default", entity: "Order", eventType: "UPDATE", want: "p.x.default.Order.UPDATE"},
		{name: "dots", source: "db.eu", entity: "shop.Order", eventType: "DELETE", want: "p.x.db_eu.shop_Order.DELETE"},
		{name: "wildcards", source: "*", entity: "Or>der", eventType: "CUSTOM", want: "p.x._.Or_der.CUSTOM"},
		{name: "spaces and controls", source: "a b\tc", entity: "Line\nItem\x00", eventType: "INSERT", want: "p.x.a_b_c.Line_Item_.INSERT"},
		{name: "unicode space", source: "a\u00a0b", entity: "Zoë", eventType: "INSERT", want: "p.x.a_b.Zoë.INSERT"},
		{name: "empty tokens", source: "", entity: "", eventType: "", want: "p.x.default._._"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ev := domain.Event{Source: tt.source, EntityType: tt.entity, EventType: domain.EventType(tt.eventType)}
			got := Subject("p.x", &ev)
			if got != tt.want {
				t.Fatalf("Subject = %q, want %q", got, tt.want)
			}
			if !validSubject(got, false) || strings.Count(got, ".") != 4 {
				t.Fatalf("Subject %q is not five plain tokens", got)
			}
		})
	}
}

func TestConfigValidation(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		mod     func(*Config)
		wantErr string
	}{
		{name: "defaults", mod: func(*Config) {}},
		{name: "bad storage", mod: func(c *Config) { c.Stream.Storage = "disk" }, wantErr: "storage"},
		{name: "bad retention", mod: func(c *Config) { c.Stream.Retention = "forever" }, wantErr: "retention"},
		{name: "stream name with dot", mod: func(c *Config) { c.Stream.Name = "A.B" }, wantErr: "stream name"},
		{name: "wildcard prefix", mod: func(c *Config) { c.Stream.SubjectPrefix = "a.*" }, wantErr: "subject prefix"},
		{name: "window beyond age", mod: func(c *Config) { c.Stream.MaxAge = time.Minute }, wantErr: "duplicate window"},
		{name: "zero age is unlimited", mod: func(c *Config) { c.Stream.MaxAge = 0; c.Stream.DuplicateWindow = time.Hour }},
		{name: "replicas", mod: func(c *Config) { c.Stream.Replicas = 7 }, wantErr: "replicas"},
		{name: "max deliver", mod: func(c *Config) { c.Consumer.MaxDeliver = -5 }, wantErr: "max deliver"},
		{name: "filter", mod: func(c *Config) { c.Consumer.FilterSubject = "a..b" }, wantErr: "filter subject"},
		{name: "filter wildcard ok", mod: func(c *Config) { c.Consumer.FilterSubject = "fraiseql.events.*.Order.>" }},
		{name: "unlimited age ok", mod: func(c *Config) { c.Stream.MaxAge = -1 }},
		{name: "limits stream bounded by count", mod: func(c *Config) { c.Stream.MaxMsgs = 10 }, wantErr: "workqueue"},
		{name: "limits stream bounded by bytes", mod: func(c *Config) { c.Stream.MaxBytes = 1 << 20 }, wantErr: "workqueue"},
		{name: "workqueue stream bounded", mod: func(c *Config) { c.Stream.Retention, c.Stream.MaxMsgs, c.Stream.MaxBytes = "workqueue", 10, 1<<20 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var cfg Config
			tt.mod(&cfg)
			err := cfg.withDefaults().Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Validate = %v, want nil", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("Validate = %v, want an error about %q", err, tt.wantErr)
			}
		})
	}
}

func BenchmarkPublishAsync(b *testing.B) {
	cfg := testConfig(b)
	cfg.Stream.Storage = "file"
	c := setup(b, cfg)
	p := NewPublisher(c)
	events := make([]domain.Event, 1024)
	for i := range events {
		events[i] = newEvent(i)
	}
	var failed atomic.Int64
	done := func(r ports.PublishResult) {
		if r.Err != nil {
			failed.Add(1)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	i := 0
	for b.Loop() {
		ev := events[i%len(events)]
		ev.ID = uuid.NewString()
		if err := p.Publish(b.Context(), ev, nil, done); err != nil {
			b.Fatalf("Publish: %v", err)
		}
		i++
	}
	if err := p.Flush(b.Context()); err != nil {
		b.Fatalf("Flush: %v", err)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	if failed.Load() > 0 {
		b.Fatalf("%d publications failed", failed.Load())
	}
	b.ReportMetric(float64(i)/elapsed.Seconds(), "events/s")
}

// TestPublishRefusedMessagesArePermanent: a message the bus refuses
// whatever the retry (over max_payload, over the stream's message size, an
// over-long subject) fails with a permanent error, so the bridge
// dead-letters it instead of republishing it for ever, and the connection
// keeps serving the next event.
func TestPublishRefusedMessagesArePermanent(t *testing.T) {
	t.Parallel()
	c := setup(t, testConfig(t))
	p := NewPublisher(c)
	huge := newEvent(1)
	huge.Data = map[string]any{"blob": strings.Repeat("x", int(c.nc.MaxPayload())+1)}
	long := newEvent(2)
	long.EntityType = strings.Repeat("E", 2000)
	for name, ev := range map[string]domain.Event{"over max_payload": huge, "over-long subject": long} {
		err := p.Publish(t.Context(), ev, nil, func(ports.PublishResult) { t.Errorf("%s: done called for a refused publication", name) })
		if err == nil || !domain.IsPermanent(err) {
			t.Fatalf("%s: Publish = %v, want a permanent error", name, err)
		}
	}
	if r := publishWait(t, p, newEvent(3)); r.Err != nil {
		t.Fatalf("the next event after refused ones: %v", r.Err)
	}

	// The stream's own limit is answered by the server, in done.
	st, err := c.js.Stream(t.Context(), c.cfg.Stream.Name)
	if err != nil {
		t.Fatal(err)
	}
	sc := st.CachedInfo().Config
	sc.MaxMsgSize = 2048
	if _, err := c.js.UpdateStream(t.Context(), sc); err != nil {
		t.Fatalf("UpdateStream: %v", err)
	}
	big := newEvent(4)
	big.Data = map[string]any{"blob": strings.Repeat("y", 4096)}
	if r := publishWait(t, p, big); r.Err == nil || !domain.IsPermanent(r.Err) {
		t.Fatalf("over the stream's max message size: %+v, want a permanent error", r)
	}
}

// TestPublishReportsInSendOrder: done callbacks come one at a time, in the
// order of the Publish calls (the bridge's checkpoint moves in that order),
// and Flush waits for the held ones.
func TestPublishReportsInSendOrder(t *testing.T) {
	t.Parallel()
	c := setup(t, testConfig(t))
	p := NewPublisher(c)
	const n = 500
	var (
		mu      sync.Mutex
		order   []int
		inDone  atomic.Int32
		overlap atomic.Bool
	)
	hold := make(chan struct{})
	for i := range n {
		err := p.Publish(t.Context(), newEvent(i), nil, func(r ports.PublishResult) {
			if inDone.Add(1) > 1 {
				overlap.Store(true)
			}
			defer inDone.Add(-1)
			if i == 0 {
				<-hold
			}
			if r.Err != nil {
				t.Errorf("event %d: %v", i, r.Err)
			}
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
		})
		if err != nil {
			t.Fatalf("Publish %d: %v", i, err)
		}
	}
	// The first done is held: Flush waits, and nothing after it is reported.
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	err := p.Flush(ctx)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Flush with the first done held = %v, want the deadline", err)
	}
	if p.Pending() != n {
		t.Fatalf("Pending = %d with every done outstanding, want %d", p.Pending(), n)
	}
	close(hold)
	fctx, fcancel := context.WithTimeout(t.Context(), waitTimeout)
	defer fcancel()
	if err := p.Flush(fctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	if p.Pending() != 0 {
		t.Fatalf("Pending after Flush = %d", p.Pending())
	}
	if overlap.Load() {
		t.Error("done callbacks ran concurrently")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(order) != n {
		t.Fatalf("%d done calls, want %d", len(order), n)
	}
	for i, got := range order {
		if got != i {
			t.Fatalf("done #%d was event %d, want publish order", i, got)
		}
	}
}

// A Consume hands its handlers at most MaxBytesInHand of message data
// not finished: with 1 MiB and handlers that hold 300 KB messages until
// released, 3 are in hand however many handlers there are; every message
// is handled once they are released.
func TestConsumeBoundsTheBytesInHand(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.Consumer.MaxBytesInHand = 1 << 20
	c := setup(t, cfg)
	const n, size = 40, 300 << 10
	events := make([]domain.Event, n)
	for i := range events {
		events[i] = newEvent(i)
		events[i].Data["blob"] = strings.Repeat("x", size)
	}
	publishAll(t, c, events)
	var (
		mu             sync.Mutex
		inHand, peak   int
		handled        int
		releaseHandler = make(chan struct{})
	)
	cons := newConsumer(t, dial(t, cfg))
	stop := runConsumer(t, cons, 8, func(ctx context.Context, d ports.Delivery) {
		mu.Lock()
		inHand += len(d.Data())
		peak = max(peak, inHand)
		mu.Unlock()
		select {
		case <-releaseHandler:
		case <-ctx.Done():
		}
		if err := d.Ack(ctx); err != nil {
			t.Errorf("Ack: %v", err)
		}
		mu.Lock()
		inHand -= len(d.Data())
		handled++
		mu.Unlock()
	})
	defer stop()
	testsupport.WaitUntil(t, waitTimeout, 10*time.Millisecond, "handlers holding messages", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return inHand > 0
	})
	time.Sleep(300 * time.Millisecond) // more would be handed out now, were they allowed
	mu.Lock()
	held := peak
	mu.Unlock()
	if held > 1<<20 || held < 2*size {
		t.Errorf("%d bytes in hand at most, want between %d and 1 MiB", held, 2*size)
	}
	// Delivered and not acknowledged: those in hand and those the client
	// buffered, about two pulls of at most 1 MiB (3 messages) each.
	info, err := cons.cons.Info(t.Context())
	if err != nil {
		t.Fatalf("consumer info: %v", err)
	}
	t.Logf("%d messages delivered and not acknowledged", info.NumAckPending)
	if info.NumAckPending > 12 {
		t.Errorf("%d messages delivered and not acknowledged, want at most 12 (3 in hand, two pulls of 1 MiB buffered)", info.NumAckPending)
	}
	close(releaseHandler)
	testsupport.WaitUntil(t, waitTimeout, 10*time.Millisecond, "every message handled", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return handled == n
	})
}

// publishAll publishes events through a Publisher of c and waits for
// every acknowledgement.
func publishAll(t *testing.T, c *Conn, events []domain.Event) {
	t.Helper()
	p := NewPublisher(c)
	for _, ev := range events {
		if err := p.Publish(t.Context(), ev, nil, func(r ports.PublishResult) {
			if r.Err != nil {
				t.Errorf("publication failed: %v", r.Err)
			}
		}); err != nil {
			t.Fatalf("Publish: %v", err)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	if err := p.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
}

// TestConsumeHandsLastDeliveriesAtShutdown: at shutdown the messages
// fetched but not handed out are released for a prompt redelivery, but
// one on its last delivery (max_deliver) would never come again: it goes
// to the handler (whose worker parks or dead-letters it), the client's
// buffered ones included. Before, they were naked (or dropped with the
// buffer) and lost: 3 of 4 reached a handler of one of two consumers.
func TestConsumeHandsLastDeliveriesAtShutdown(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.Consumer.MaxDeliver = 1
	c := setup(t, cfg)
	p := NewPublisher(c)
	const n = 4
	for i := range n {
		if r := publishWait(t, p, newEvent(i)); r.Err != nil {
			t.Fatalf("publish: %v", r.Err)
		}
	}
	cons := newConsumer(t, c)
	var (
		mu      sync.Mutex
		handled = map[string]int{}
		started = make(chan struct{}, n)
	)
	handle := func(hctx context.Context, d ports.Delivery) {
		ev, err := domain.DecodeEvent(d.Data())
		if err != nil {
			t.Errorf("DecodeEvent: %v", err)
			return
		}
		mu.Lock()
		handled[ev.ID]++
		mu.Unlock()
		if !d.LastAttempt() {
			t.Errorf("delivery %d with max_deliver 1 is not the last", d.Attempt())
		}
		started <- struct{}{}
		<-hctx.Done() // the worker's step outlives the cancel
		if err := d.Ack(context.WithoutCancel(hctx)); err != nil {
			t.Errorf("Ack: %v", err)
		}
	}
	// The first consumer (one at a time) takes one message into its
	// handler and has more fetched behind it when it stops.
	ctx, cancel := context.WithCancel(t.Context())
	consumed := make(chan error, 1)
	go func() { consumed <- cons.Consume(ctx, 1, handle) }()
	<-started
	time.Sleep(300 * time.Millisecond) // the next ones fetched, waiting
	cancel()
	select {
	case err := <-consumed:
		if err != nil {
			t.Fatalf("Consume: %v", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("Consume did not return after cancel")
	}
	// A second consumer gets what the first never fetched.
	ctx2, cancel2 := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel2()
	if err := cons.Consume(ctx2, n, handle); err != nil {
		t.Fatalf("second Consume: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(handled) != n {
		t.Fatalf("%d of %d messages on their last delivery reached a handler", len(handled), n)
	}
	for id, k := range handled {
		if k != 1 {
			t.Errorf("event %s handed out %d times, want once", id, k)
		}
	}
}

// TestFullStreamRefusesNewMessages: a stream bounded by count refuses a
// message past the bound (an error the bridge retries, not a refusal for
// good), rather than dropping the oldest one, which no worker had taken:
// every acknowledged event is delivered. Before, the stream discarded its
// oldest message and 2 of 3 acknowledged events were delivered.
func TestFullStreamRefusesNewMessages(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.Stream.Retention, cfg.Stream.MaxMsgs = "workqueue", 2
	c := setup(t, cfg)
	newConsumer(t, c) // the workers' durable exists, none is running
	p := NewPublisher(c)
	events := []domain.Event{newEvent(0), newEvent(1), newEvent(2)}
	for _, ev := range events[:2] {
		if r := publishWait(t, p, ev); r.Err != nil {
			t.Fatalf("publish: %v", r.Err)
		}
	}
	r := publishWait(t, p, events[2])
	if r.Err == nil || domain.IsPermanent(r.Err) {
		t.Fatalf("publish into a full stream: %v, want an error to retry", r.Err)
	}
	got := map[string]bool{}
	var mu sync.Mutex
	stop := runConsumer(t, newConsumer(t, c), 1, func(ctx context.Context, d ports.Delivery) {
		ev, ok := ackEvent(t, ctx, d)
		if !ok {
			return
		}
		mu.Lock()
		got[ev.ID] = true
		mu.Unlock()
	})
	defer stop()
	// The retry, once the workers made room, goes through.
	testsupport.WaitUntil(t, waitTimeout, 50*time.Millisecond, "the publication to go through once the workers made room", func() bool {
		return publishWait(t, p, events[2]).Err == nil
	})
	testsupport.WaitUntil(t, waitTimeout, 20*time.Millisecond, "every acknowledged event delivered", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) == len(events)
	})
}

// TestInterestStreamKeepsEventsPublishedBeforeTheWorkers: an interest
// stream stores a message only for the consumers that exist; the
// workers' durable comes with the stream, so an event the bridge
// publishes before any worker started is kept and delivered. Before, it
// was acknowledged and dropped (0 delivered).
func TestInterestStreamKeepsEventsPublishedBeforeTheWorkers(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.Stream.Retention = "interest"
	c := setup(t, cfg) // the bridge's EnsureStream; no worker yet
	ev := newEvent(0)
	if r := publishWait(t, NewPublisher(c), ev); r.Err != nil {
		t.Fatalf("publish: %v", r.Err)
	}
	if n := streamMsgs(t, c); n != 1 {
		t.Fatalf("the stream holds %d messages after an acknowledged publish, want 1", n)
	}
	got := make(chan string, 1)
	runConsumer(t, newConsumer(t, c), 1, func(ctx context.Context, d ports.Delivery) {
		if e, ok := ackEvent(t, ctx, d); ok {
			got <- e.ID
		}
	})
	select {
	case id := <-got:
		if id != ev.ID {
			t.Errorf("delivered %s, want %s", id, ev.ID)
		}
	case <-time.After(waitTimeout):
		t.Fatal("the event published before the workers started never came")
	}
}

// TestPublishCreatesAMissingStreamAgain: a stream deleted under a running
// bridge (by an operator, or a memory stream lost with its server) is
// created again after a publication finds no stream answering; the
// republished event is stored and delivered. Before, every publication
// failed for good ("no response from stream") until a restart.
func TestPublishCreatesAMissingStreamAgain(t *testing.T) {
	t.Parallel()
	c := setup(t, testConfig(t))
	p := NewPublisher(c)
	if r := publishWait(t, p, newEvent(0)); r.Err != nil {
		t.Fatalf("publish: %v", r.Err)
	}
	if err := c.DeleteStream(t.Context()); err != nil {
		t.Fatalf("DeleteStream: %v", err)
	}
	ev := newEvent(1)
	r := publishWait(t, p, ev)
	if r.Err == nil || !errors.Is(r.Err, ports.ErrUnavailable) {
		t.Fatalf("publish with the stream gone: %v, want an error wrapping ErrUnavailable", r.Err)
	}
	// Republished at the bridge's pace until the stream is there again.
	testsupport.WaitUntil(t, waitTimeout, 100*time.Millisecond, "a publication after the stream was deleted to be stored", func() bool {
		return publishWait(t, p, ev).Err == nil
	})
	if n := streamMsgs(t, c); n != 1 {
		t.Errorf("the stream created again holds %d messages, want the republished one", n)
	}
}

// ackEvent decodes d's event and acks d; false (the test told) when
// either fails.
func ackEvent(t testing.TB, ctx context.Context, d ports.Delivery) (domain.Event, bool) {
	t.Helper()
	ev, err := domain.DecodeEvent(d.Data())
	if err != nil {
		t.Errorf("DecodeEvent: %v", err)
		return ev, false
	}
	if err := d.Ack(ctx); err != nil {
		t.Errorf("Ack: %v", err)
		return ev, false
	}
	return ev, true
}
