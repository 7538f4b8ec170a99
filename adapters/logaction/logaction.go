// Package logaction runs log actions: it writes one structured log record
// per event, at the configured level, with the rendered message template.
package logaction

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"unicode"

	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// DefaultMessage is logged when the action has no message template.
const DefaultMessage = "event observed"

// Executor runs log actions. Safe for concurrent use.
type Executor struct {
	logger *slog.Logger
}

var _ ports.ActionExecutor = (*Executor)(nil)

// NewExecutor returns an Executor writing to logger. It panics when logger
// is nil: that is a wiring mistake, not a runtime condition.
func NewExecutor(logger *slog.Logger) *Executor {
	if logger == nil {
		panic("logaction: new executor: logger is nil")
	}
	return &Executor{logger: logger}
}

// Execute logs ev at act.Log.Level with the rendered message and the
// attributes event_id, event_type, entity_type, entity_id, observer and
// action; placeholders that could not be filled are listed in
// missing_placeholders. A bad level or a missing config is permanent.
func (e *Executor) Execute(ctx context.Context, ev *domain.Event, obs *domain.Observer, act *domain.Action) error {
	if act == nil || act.Log == nil {
		return domain.Permanent(errors.New("log action: no log config"))
	}
	if ev == nil {
		return domain.Permanent(errors.New("log action: no event"))
	}
	level, err := parseLevel(act.Log.Level)
	if err != nil {
		return domain.Permanent(fmt.Errorf("log action %q: %w", act.Name, err))
	}
	if !e.logger.Enabled(ctx, level) {
		return nil
	}
	msg, missing := DefaultMessage, []string(nil)
	if act.Log.MessageTemplate != nil {
		msg, missing = act.Log.MessageTemplate.Render(ev, domain.EscapeNone)
		msg = oneLine(msg)
	}
	observer := ""
	if obs != nil {
		observer = obs.Name
	}
	attrs := []slog.Attr{
		slog.String("event_id", ev.ID),
		slog.String("event_type", string(ev.EventType)),
		slog.String("entity_type", ev.EntityType),
		slog.String("entity_id", ev.EntityID),
		slog.String("observer", observer),
		slog.String("action", act.Name),
	}
	if len(missing) > 0 {
		attrs = append(attrs, slog.Any("missing_placeholders", missing))
	}
	e.logger.LogAttrs(ctx, level, msg, attrs...)
	return nil
}

// oneLine escapes the control characters of a rendered message (line
// breaks, ESC, DEL, C1), which the event's data puts there: a text
// handler writes the message as it is, so a "\n12:00 ERR lease lost" in a
// field would forge a log line, and an escape sequence would reach the
// operator's terminal. Tabs stay; a message without any is returned as
// it is.
func oneLine(msg string) string {
	if !strings.ContainsFunc(msg, func(r rune) bool { return r != '\t' && unicode.IsControl(r) }) {
		return msg
	}
	var b strings.Builder
	for _, r := range msg {
		switch {
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r != '\t' && unicode.IsControl(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// parseLevel maps debug, info, warn (warning) and error to slog levels;
// empty is info. slog's own forms such as "INFO+2" are accepted too.
func parseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "info":
		return slog.LevelInfo, nil
	case "debug":
		return slog.LevelDebug, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("log level %q is not one of debug, info, warn, error", s)
	}
	return l, nil
}
