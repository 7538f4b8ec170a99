package nats

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go"

	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// ActionPublisher runs `nats` actions: it publishes the event envelope on
// the action's rendered subject, for other services, and returns once the
// server has it (a flush round trip). Safe for concurrent use.
type ActionPublisher struct {
	c *Conn
}

var _ ports.ActionExecutor = (*ActionPublisher)(nil)

// NewActionPublisher publishes through c.
func NewActionPublisher(c *Conn) *ActionPublisher { return &ActionPublisher{c: c} }

// Execute publishes ev. Event values stay one subject token each (dots,
// wildcards and spaces become '_'); a subject that still renders invalid
// (a missing value, a wildcard in the template, longer than 1024 bytes)
// or a message over the server's max_payload fails permanently, before
// anything is sent; a lost connection is transient.
func (p *ActionPublisher) Execute(ctx context.Context, ev *domain.Event, obs *domain.Observer, act *domain.Action) error {
	if act.NATS == nil || act.NATS.Subject == nil {
		return domain.Permanent(errors.New("nats: action without subject"))
	}
	subject, missing := act.NATS.Subject.Render(ev, domain.EscapeSubjectToken)
	if len(missing) > 0 {
		return domain.Permanent(fmt.Errorf("nats: subject template: the event has no value for %s", strings.Join(missing, ", ")))
	}
	if err := domain.ValidSubject(subject); err != nil {
		return domain.Permanent(fmt.Errorf("nats: %w", err))
	}
	body, err := ev.Envelope()
	if err != nil {
		return domain.Permanent(fmt.Errorf("nats: encode event: %w", err))
	}
	msg := nats.NewMsg(subject)
	msg.Data = body
	// A JetStream stream on the subject dedupes retries of this delivery
	// (the id is per event, observer and action: another action's message
	// of the same event is not a duplicate).
	msg.Header.Set(nats.MsgIdHdr, domain.DeliveryID(ev.ID, domain.ObserverName(obs), act.Name))
	// Sending a message over max_payload would make the server close the
	// connection the bridge and the consumer share, on every retry.
	if err := checkMessage(p.c.nc, msg); err != nil {
		return domain.Permanent(fmt.Errorf("nats: publish event %s to %s: %w", ev.ID, domain.QuoteSubject(subject), err))
	}
	if err := p.c.nc.PublishMsg(msg); err != nil {
		return domain.Transient(interpretError("publish "+subject, err), 0)
	}
	if err := p.c.Ping(ctx); err != nil {
		return domain.Transient(fmt.Errorf("nats: publish %s: not confirmed: %w", subject, err), 0)
	}
	return nil
}
