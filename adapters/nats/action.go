package nats

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

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

// ValidSubject reports why s cannot be published to: longer than
// maxSubjectBytes (the server would close the connection), empty tokens,
// wildcards, white space or control characters.
func ValidSubject(s string) error {
	switch {
	case s == "":
		return errors.New("empty subject")
	case len(s) > maxSubjectBytes:
		return fmt.Errorf("subject %s of %d bytes is longer than %d", subjectStart(s), len(s), maxSubjectBytes)
	}
	for _, tok := range strings.Split(s, ".") {
		if tok == "" {
			return fmt.Errorf("subject %q has an empty token", s)
		}
		for _, r := range tok {
			if r == '*' || r == '>' || unicode.IsSpace(r) || unicode.IsControl(r) {
				return fmt.Errorf("subject %q contains %q", s, r)
			}
		}
	}
	return nil
}

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
	if err := ValidSubject(subject); err != nil {
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
		return domain.Permanent(fmt.Errorf("nats: publish event %s to %s: %w", ev.ID, subjectStart(subject), err))
	}
	if err := p.c.nc.PublishMsg(msg); err != nil {
		return domain.Transient(interpretError("publish "+subject, err), 0)
	}
	if err := p.c.Ping(ctx); err != nil {
		return domain.Transient(fmt.Errorf("nats: publish %s: not confirmed: %w", subject, err), 0)
	}
	return nil
}

// subjectStart is s, or its first bytes when it is too long to quote in
// an error whole.
func subjectStart(s string) string {
	const keep = 64
	if len(s) <= keep {
		return fmt.Sprintf("%q", s)
	}
	cut := keep
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return fmt.Sprintf("%q…", s[:cut])
}
