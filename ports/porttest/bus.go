package porttest

import (
	"context"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// BusHarness is an event bus under test: a publisher and a way to open
// consumers on the one shared subscription. NewConsumer is called once per
// simulated worker process. The bus must remember message ids for longer
// than a test (its duplicate window) and redeliver an unfinished message
// after an ack wait of a few seconds at most.
type BusHarness struct {
	Publisher   ports.EventPublisher
	NewConsumer func(t *testing.T) ports.EventConsumer
}

// RunEventBus checks the ports.EventPublisher, ports.EventConsumer and
// ports.Delivery contracts. newHarness must return an empty, isolated bus
// on every call.
func RunEventBus(t *testing.T, newHarness func(t *testing.T) BusHarness) {
	t.Helper()

	t.Run("PublishedEventsArriveIntact", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t)
		want := map[string]domain.Event{}
		for i, kind := range []domain.EventType{domain.EventInsert, domain.EventUpdate, domain.EventDelete, domain.EventCustom} {
			ev := sampleEvent(i, kind)
			ev.Source = "db.eu *>" // characters a subject-based bus must escape
			want[ev.ID] = ev
			if r := busPublish(t, h.Publisher, ev); r.Err != nil || r.Duplicate {
				t.Fatalf("publish %s: %+v", kind, r)
			}
		}
		got := busCollect(t, h.NewConsumer(t), len(want), func(ctx context.Context, d ports.Delivery) error { return d.Ack(ctx) })
		for _, g := range got {
			ev, err := domain.DecodeEvent(g.data)
			if err != nil {
				t.Fatalf("DecodeEvent: %v", err)
			}
			w, ok := want[ev.ID]
			if !ok {
				t.Fatalf("unexpected event %s", ev.ID)
			}
			if d := diffEvent(w, ev); d != "" {
				t.Fatalf("event %s: %s", ev.ID, d)
			}
			if g.attempt != 1 {
				t.Fatalf("event %s: first delivery has Attempt %d", ev.ID, g.attempt)
			}
		}
	})

	t.Run("HeadersArriveWithTheEvent", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t)
		want := ports.Headers{"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "tracestate": "congo=t61rcWkgMzE"}
		with, without := sampleEvent(1, domain.EventInsert), sampleEvent(2, domain.EventInsert)
		if r := busPublishHeaders(t, h.Publisher, with, want); r.Err != nil {
			t.Fatalf("publish: %v", r.Err)
		}
		if r := busPublish(t, h.Publisher, without); r.Err != nil {
			t.Fatalf("publish: %v", r.Err)
		}
		got := busCollect(t, h.NewConsumer(t), 2, func(ctx context.Context, d ports.Delivery) error { return d.Ack(ctx) })
		for _, g := range got {
			ev, err := domain.DecodeEvent(g.data)
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case ev.ID == with.ID && !maps.Equal(g.headers, want):
				t.Errorf("headers of %s = %v, want exactly %v", ev.ID, g.headers, want)
			case ev.ID == without.ID && len(g.headers) != 0:
				t.Errorf("headers of %s = %v, want none", ev.ID, g.headers)
			}
		}
	})

	t.Run("SameIDIsADuplicate", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t)
		ev := sampleEvent(1, domain.EventInsert)
		first := busPublish(t, h.Publisher, ev)
		second := busPublish(t, h.Publisher, ev)
		if first.Err != nil || first.Duplicate {
			t.Fatalf("first publication: %+v", first)
		}
		if second.Err != nil || !second.Duplicate || second.Sequence != first.Sequence {
			t.Fatalf("second publication: %+v, want a duplicate of sequence %d", second, first.Sequence)
		}
		other := sampleEvent(2, domain.EventInsert)
		if r := busPublish(t, h.Publisher, other); r.Err != nil || r.Duplicate || r.Sequence <= first.Sequence {
			t.Fatalf("publication of another id: %+v", r)
		}
		got := busCollect(t, h.NewConsumer(t), 2, func(ctx context.Context, d ports.Delivery) error { return d.Ack(ctx) })
		if len(got) != 2 {
			t.Fatalf("consumed %d messages, want 2", len(got))
		}
	})

	t.Run("NakRedeliversWithAttemptCount", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t)
		if r := busPublish(t, h.Publisher, sampleEvent(1, domain.EventInsert)); r.Err != nil {
			t.Fatalf("publish: %v", r.Err)
		}
		got := busCollect(t, h.NewConsumer(t), 3, func(ctx context.Context, d ports.Delivery) error {
			if d.Attempt() < 3 {
				return d.Nak(ctx, 0)
			}
			return d.Ack(ctx)
		})
		for i, g := range got {
			if g.attempt != i+1 {
				t.Fatalf("delivery %d has Attempt %d, want %d", i, g.attempt, i+1)
			}
		}
	})

	t.Run("ConsumeReturnsNilAfterCancel", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t)
		ctx, cancel := context.WithCancel(t.Context())
		errc := make(chan error, 1)
		go func() { errc <- h.NewConsumer(t).Consume(ctx, 2, func(context.Context, ports.Delivery) {}) }()
		cancel()
		select {
		case err := <-errc:
			if err != nil {
				t.Fatalf("Consume after cancel = %v, want nil", err)
			}
		case <-time.After(waitTimeout):
			t.Fatal("Consume did not return after cancel")
		}
	})
}

type busDelivery struct {
	data    []byte
	attempt int
	headers ports.Headers
}

func busPublish(t *testing.T, p ports.EventPublisher, ev domain.Event) ports.PublishResult {
	t.Helper()
	return busPublishHeaders(t, p, ev, nil)
}

func busPublishHeaders(t *testing.T, p ports.EventPublisher, ev domain.Event, hdr ports.Headers) ports.PublishResult {
	t.Helper()
	ch := make(chan ports.PublishResult, 2)
	if err := p.Publish(t.Context(), ev, hdr, func(r ports.PublishResult) { ch <- r }); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	var r ports.PublishResult
	select {
	case r = <-ch:
	case <-time.After(waitTimeout):
		t.Fatalf("done not called for %s", ev.ID)
	}
	return r
}

// busCollect consumes until n deliveries were seen, deciding each with
// act, then stops the consumer and returns them in arrival order.
func busCollect(t *testing.T, c ports.EventConsumer, n int, act func(context.Context, ports.Delivery) error) []busDelivery {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var (
		mu   sync.Mutex
		got  []busDelivery
		full = make(chan struct{})
	)
	errc := make(chan error, 1)
	go func() {
		errc <- c.Consume(ctx, 2, func(ctx context.Context, d ports.Delivery) {
			mu.Lock()
			got = append(got, busDelivery{data: append([]byte(nil), d.Data()...), attempt: d.Attempt(), headers: d.Headers()})
			if len(got) == n {
				close(full)
			}
			mu.Unlock()
			if err := act(context.WithoutCancel(ctx), d); err != nil {
				t.Errorf("deciding delivery: %v", err)
			}
		})
	}()
	select {
	case <-full:
	case <-time.After(waitTimeout):
		mu.Lock()
		t.Errorf("saw %d of %d deliveries", len(got), n)
		mu.Unlock()
	}
	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Errorf("Consume = %v, want nil after cancel", err)
		}
	case <-time.After(waitTimeout):
		t.Error("Consume did not return after cancel")
	}
	mu.Lock()
	defer mu.Unlock()
	return got[:min(len(got), n)]
}
