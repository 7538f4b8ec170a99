package integration

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/fraiseql/fraiseql-observer/bootstrap/config"
	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/internal/testenv"
)

// TestNATSActionPublishesForOtherServices runs a `nats` action in the
// nats-distributed topology: the worker publishes the event envelope on
// the rendered subject, outside the observer's own stream.
func TestNATSActionPublishesForOtherServices(t *testing.T) {
	t.Parallel()
	b := setup(t)
	e := newJSEnv(t)
	out := testenv.Name("out")
	nc, err := nats.Connect(e.natsURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	sub, err := nc.SubscribeSync(out + ".>")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	cfg := b.config(config.ObserverConfig{
		Name: "publish", Entity: "Order", Events: []string{"INSERT"},
		Actions: []config.ActionConfig{{Type: "nats", Subject: out + ".{{ event.entity_type }}.{{ status }}"}},
	})
	e.configure(&cfg, "all")
	b.start(t, cfg)
	id := b.insert(t, change{Entity: "Order", Kind: "INSERT", Data: `{"status": "new order"}`})[0]
	msg, err := sub.NextMsg(waitTimeout)
	if err != nil {
		t.Fatalf("no message on %s.>: %v", out, err)
	}
	if msg.Subject != out+".Order.new_order" {
		t.Errorf("subject = %q", msg.Subject)
	}
	ev, err := domain.DecodeEvent(msg.Data)
	if err != nil || ev.ID != id || ev.Data["status"] != "new order" {
		t.Errorf("body = %s (%v), want the event %s", msg.Data, err, id)
	}
	if extra, err := sub.NextMsg(300 * time.Millisecond); err == nil {
		t.Errorf("a second message: %s", extra.Data)
	}
}
