package nats

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/internal/testenv"
)

func TestActionPublisherPublishesTheEnvelope(t *testing.T) {
	t.Parallel()
	c := dial(t, testConfig(t))
	prefix := testenv.Name("act")
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
	if msg.Subject != prefix+".orders.UPDATE" || msg.Header.Get(nats.MsgIdHdr) != ev.ID {
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

func TestValidSubject(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"a", "a.b.c", "orders.UPDATE", "x-y_z.1"} {
		if err := ValidSubject(ok); err != nil {
			t.Errorf("ValidSubject(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "a..b", ".a", "a.", "a.*", "a.>", "a b", "a\tb"} {
		if err := ValidSubject(bad); err == nil {
			t.Errorf("ValidSubject(%q) accepted", bad)
		}
	}
}
