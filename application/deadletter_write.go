package application

import (
	"context"
	"encoding/base64"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// parkDeadLetter stores d durably; nil means it is parked. When the store
// refuses d as it is, for good (an
// error wrapping domain.ErrPermanent: a \u0000 the jsonb column rejects, a
// byte sequence that is not UTF-8, a constraint), it stores the fallback
// form instead, which always can be stored: the event reduced to its
// identity, the original as raw bytes, and the reason (with where, e.g.
// the change-log position). A write that fails transiently (the store is
// down) returns the error: the caller retries later. Should even the
// fallback be refused for good, the item is written to the error log, the
// store of last resort, and nil is returned: a permanent refusal is never
// retried.
func parkDeadLetter(ctx context.Context, sink ports.DeadLetterSink, log *slog.Logger, d ports.DeadLetter, where string) error {
	_, err := sink.Add(ctx, d)
	if err == nil || !domain.IsPermanent(err) {
		return err
	}
	fb := fallbackDeadLetter(d, err, where)
	_, ferr := sink.Add(ctx, fb)
	switch {
	case ferr == nil:
		log.LogAttrs(ctx, slog.LevelWarn, "dead letter refused by the store as it was; stored in fallback form",
			slog.String("event_id", fb.Event.ID), slog.String("observer", fb.Observer), slog.String("action", fb.Action),
			slog.String("where", where), slog.String("refusal", err.Error()))
		return nil
	case !domain.IsPermanent(ferr):
		return ferr
	}
	log.LogAttrs(ctx, slog.LevelError, "dead letter refused by the store in every form; logged here instead",
		slog.String("event_id", fb.Event.ID), slog.String("observer", fb.Observer), slog.String("action", fb.Action),
		slog.String("where", where), slog.String("error", fb.Error), slog.Int("attempts", fb.Attempts),
		slog.String("raw_base64", base64.StdEncoding.EncodeToString(fb.Raw)), slog.String("refusal", ferr.Error()))
	return nil
}

// fallbackDeadLetter is d in a form every store can hold: text fields made
// valid UTF-8 without NUL bytes, the event reduced to its identity (no
// data), and the original kept whole in Raw (the input's raw bytes, or
// the event's JSON envelope).
func fallbackDeadLetter(d ports.DeadLetter, refusal error, where string) ports.DeadLetter {
	raw := d.Raw
	if raw == nil {
		if env, err := d.Event.Envelope(); err == nil {
			raw = env
		} else {
			raw = fmt.Appendf(nil, "%+v", d.Event)
		}
	}
	reason := d.Error + " [stored in fallback form, the original is in raw: " + refusal.Error()
	if where != "" {
		reason += "; at " + where
	}
	reason += "]"
	ev := d.Event
	if !domain.JSONTime(ev.Timestamp) { // it would fail the event's encoding again
		ev.Timestamp = time.Time{}
	}
	return ports.DeadLetter{
		Event: domain.Event{
			ID: storable(ev.ID), EventType: domain.EventType(storable(string(ev.EventType))),
			EntityType: storable(ev.EntityType), EntityID: storable(ev.EntityID),
			TenantID: storable(ev.TenantID), UserID: storable(ev.UserID),
			Timestamp: ev.Timestamp, Source: storable(ev.Source),
		},
		Observer:    storable(d.Observer),
		Action:      storable(d.Action),
		ActionType:  domain.ActionType(storable(string(d.ActionType))),
		Error:       storable(reason),
		Attempts:    d.Attempts,
		Raw:         raw,
		LastRetryAt: d.LastRetryAt,
	}
}

// storable returns s as valid UTF-8 without NUL bytes (each replaced by
// U+FFFD), which text and jsonb columns accept.
func storable(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	return strings.ReplaceAll(s, "\x00", "\uFFFD")
}

// positionOf says where a record came from, for the fallback form's
// reason ("" for a record of the bus, which has no source position).
func positionOf(rec ports.Record) string {
	if rec.Position.IsZero() {
		return ""
	}
	return "source position " + rec.Position.String()
}
