package nats

import (
	"context"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/internal/testenv"
	"github.com/fraiseql/fraiseql-observer/internal/testsupport"
	"github.com/fraiseql/fraiseql-observer/ports/porttest"
)

func TestActionPublisherPublishesTheEnvelope(t *testing.T) {
	t.Parallel()
	c := dial(t, testConfig(t))
	prefix := testenv.Name("act")
	sub := subscribeAll(t, prefix)
	p := NewActionPublisher(c)
	ev := newEvent(1)
	act := func(subject string) *domain.Action {
		return &domain.Action{Name: "nats-1", Type: domain.ActionNATS, NATS: &domain.NATSAction{Subject: domain.MustCompileTemplate(subject)}}
	}
	if err := p.Execute(t.Context(), &ev, &domain.Observer{Name: "o"}, act(prefix+".orders.{{ event.event_type }}")); err != nil {
		t.Fatal(err)
	}
	msg, err := sub.NextMsg(10 * time.Second)
	if err != nil {
		t.Fatalf("no message: %v", err)
	}
	if msg.Subject != prefix+".orders.UPDATE" || msg.Header.Get(nats.MsgIdHdr) != domain.DeliveryID(ev.ID, "o", "nats-1") {
		t.Errorf("subject %q, msg id %q", msg.Subject, msg.Header.Get(nats.MsgIdHdr))
	}
	got, err := domain.DecodeEvent(msg.Data)
	if err != nil || got.ID != ev.ID || got.EntityID != ev.EntityID {
		t.Errorf("body = %s (%v)", msg.Data, err)
	}
	// A value with dots and spaces stays one token.
	ev.Data["status"] = "in transit. now *"
	if err := p.Execute(t.Context(), &ev, &domain.Observer{Name: "o"}, act(prefix+".status.{{ status }}")); err != nil {
		t.Fatal(err)
	}
	if msg, err := sub.NextMsg(10 * time.Second); err != nil || msg.Subject != prefix+".status.in_transit__now__" {
		t.Errorf("escaped subject: %v %v", msg, err)
	}
	for name, subject := range map[string]string{
		"missing value":     prefix + ".{{ nope }}",
		"wildcard template": prefix + ".*",
		"empty token":       prefix + "..x",
	} {
		if err := p.Execute(t.Context(), &ev, &domain.Observer{Name: "o"}, act(subject)); err == nil || !domain.IsPermanent(err) {
			t.Errorf("%s: err = %v, want permanent", name, err)
		}
	}
}

// TestActionPublisherRefusesOverlongMessages: a subject rendered from an
// event field past the server's control-line limit, or a body past its
// max_payload, fails permanently before anything is sent; the server never
// closes the connection (shared with the bridge and the consumer), and
// the next publication goes through it.
func TestActionPublisherRefusesOverlongMessages(t *testing.T) {
	t.Parallel()
	c := dial(t, testConfig(t))
	prefix := testenv.Name("actlong")
	sub := subscribeAll(t, prefix)
	p := NewActionPublisher(c)
	act := &domain.Action{Name: "nats-1", Type: domain.ActionNATS, NATS: &domain.NATSAction{Subject: domain.MustCompileTemplate(prefix + ".{{ status }}")}}
	long := newEvent(1)
	long.Data["status"] = strings.Repeat("s", 5000)
	huge := newEvent(2)
	huge.Data["blob"] = strings.Repeat("x", int(c.nc.MaxPayload())+1)
	for name, tt := range map[string]struct {
		ev   domain.Event
		want string
	}{
		"over-long subject": {long, "longer than 1024"},
		"over max_payload":  {huge, "max_payload"},
	} {
		err := p.Execute(t.Context(), &tt.ev, &domain.Observer{Name: "o"}, act)
		if err == nil || !domain.IsPermanent(err) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want a permanent error naming %q", name, err, tt.want)
		}
		if err != nil && len(err.Error()) > 1000 {
			t.Errorf("%s: the error quotes the whole subject: %d bytes", name, len(err.Error()))
		}
	}
	ok := newEvent(3)
	if err := p.Execute(t.Context(), &ok, &domain.Observer{Name: "o"}, act); err != nil {
		t.Fatalf("the next publication: %v", err)
	}
	if msg, err := sub.NextMsg(10 * time.Second); err != nil || !strings.HasPrefix(msg.Header.Get(nats.MsgIdHdr), ok.ID+".") {
		t.Fatalf("the next publication did not arrive: %v %v", msg, err)
	}
	if n := c.nc.Stats().Reconnects; n != 0 {
		t.Errorf("the connection was dropped and reconnected %d times", n)
	}
}

// natsPassword is planted in every server URL of the conformance suite; the
// test server requires no authentication, so it is carried, not checked.
const natsPassword = "NATSPASSWORD-2b7d41"

func TestActionPublisherConformance(t *testing.T) {
	t.Parallel()
	serverURL, err := url.Parse(testenv.NATSURL(t))
	if err != nil {
		t.Fatal(err)
	}
	// target publishes through a connection of its own, via a proxy the
	// test can freeze or cut, with a password in the URL.
	target := func(t *testing.T, subject string) (porttest.ActionTarget, *testsupport.Proxy) {
		t.Helper()
		proxy := testsupport.StartProxy(t, serverURL.Host)
		cfg := testConfig(t)
		cfg.URL = "nats://conformance:" + natsPassword + "@" + proxy.Addr()
		act := &domain.Action{Name: "nats-1", Type: domain.ActionNATS, NATS: &domain.NATSAction{Subject: domain.MustCompileTemplate(subject)}}
		// Not dial: its test logger would log the asynchronous close after
		// the test ended.
		c, err := Connect(t.Context(), cfg, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatalf("Connect: %v", err)
		}
		t.Cleanup(c.Close)
		return porttest.ActionTarget{Executor: NewActionPublisher(c), Action: act}, proxy
	}
	prefix := testenv.Name("conf")
	publish := func(subject string) func(t *testing.T) porttest.ActionTarget {
		return func(t *testing.T) porttest.ActionTarget {
			tg, _ := target(t, subject)
			return tg
		}
	}
	porttest.RunActionExecutor(t, porttest.ActionHarness{
		Features: porttest.ActionFeatures{TransientFailures: true, PermanentFailures: true, Blocks: true},
		Success: func(t *testing.T) porttest.ActionTarget {
			subject := testenv.Name(prefix)
			seen := subscribeIDs(t, subject+".>")
			tg, _ := target(t, subject+".{{ event.entity_type }}.{{ event.event_type }}")
			tg.Took = func(_ context.Context, ev *domain.Event) (bool, error) { return seen(ev.ID), nil }
			return tg
		},
		Transient: map[string]func(t *testing.T) porttest.ActionTarget{
			"server gone": func(t *testing.T) porttest.ActionTarget {
				tg, proxy := target(t, prefix+".gone")
				proxy.Cut()
				return tg
			},
		},
		Permanent: map[string]func(t *testing.T) porttest.ActionTarget{
			"wildcard subject":         publish(prefix + ".*"),
			"value missing from event": publish(prefix + ".{{ nope }}"),
			"empty token":              publish(prefix + "..x"),
		},
		Blocking: func(t *testing.T) porttest.ActionTarget {
			tg, proxy := target(t, prefix+".silent")
			proxy.Freeze()
			tg.Reached = porttest.ReachedWhen(proxy.Held())
			return tg
		},
		Secrets: []string{natsPassword},
	})
}

// subscribeIDs subscribes to subject on the test server and returns a
// function reporting whether a message of that event (a Nats-Msg-Id
// "event id.suffix") arrived.
func subscribeIDs(t *testing.T, subject string) func(id string) bool {
	t.Helper()
	nc, err := nats.Connect(testenv.NATSURL(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	var mu sync.Mutex
	ids := map[string]bool{}
	if _, err := nc.Subscribe(subject, func(m *nats.Msg) {
		mu.Lock()
		event, _, _ := strings.Cut(m.Header.Get(nats.MsgIdHdr), ".")
		ids[event] = true
		mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return func(id string) bool {
		mu.Lock()
		defer mu.Unlock()
		return ids[id]
	}
}

// subscribeAll subscribes, on a connection of its own, to every subject
// under prefix, ready when it returns.
func subscribeAll(t *testing.T, prefix string) *nats.Subscription {
	t.Helper()
	nc, err := nats.Connect(testenv.NATSURL(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	sub, err := nc.SubscribeSync(prefix + ".>")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return sub
}

// TestActionPublisherTwoActionsOfOneEventBothReachAStream: a JetStream
// stream on the subjects dedupes by Nats-Msg-Id; two actions (of one or two
// observers) publishing the same event are two deliveries, both kept,
// while a retry of one delivery is a duplicate.
func TestActionPublisherTwoActionsOfOneEventBothReachAStream(t *testing.T) {
	t.Parallel()
	c := dial(t, testConfig(t))
	prefix := testenv.Name("dup")
	name := strings.ReplaceAll(prefix, ".", "_")
	if _, err := c.js.CreateStream(t.Context(), jetstream.StreamConfig{Name: name, Subjects: []string{prefix + ".>"},
		Storage: jetstream.MemoryStorage, Duplicates: time.Minute}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.js.DeleteStream(context.Background(), name) })
	p := NewActionPublisher(c)
	ev := newEvent(1)
	act := func(n string) *domain.Action {
		return &domain.Action{Name: n, Type: domain.ActionNATS, NATS: &domain.NATSAction{Subject: domain.MustCompileTemplate(prefix + ".orders")}}
	}
	for _, d := range []struct{ obs, act string }{{"o", "a"}, {"o", "b"}, {"other", "a"}, {"o", "a"}} { // the last: a retry
		if err := p.Execute(t.Context(), &ev, &domain.Observer{Name: d.obs}, act(d.act)); err != nil {
			t.Fatal(err)
		}
	}
	testsupport.WaitUntil(t, waitTimeout, 10*time.Millisecond, "three messages stored", func() bool {
		info, err := c.js.Stream(t.Context(), name)
		return err == nil && info.CachedInfo().State.Msgs == 3
	})
	// Each Execute confirmed its publication (a ping after it), so the
	// retry was in the stream's hands before the count: still 3.
	if info, err := c.js.Stream(t.Context(), name); err != nil || info.CachedInfo().State.Msgs != 3 {
		t.Fatalf("stream holds %v messages (%v), want 3: one per action, the retry a duplicate", info.CachedInfo().State.Msgs, err)
	}
}
