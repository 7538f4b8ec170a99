package ports

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/fraiseql/fraiseql-observer/domain"
)

// NoteLimiter lets a repeated note (a log line about the same cause) out
// at most once per Every for each key, and counts the ones it held back,
// so that a cause hit by every event logs a line a minute, not one per
// event. Keys come from the configuration (observer and action names):
// the memory is one entry per configured action. Safe for concurrent use;
// the zero value notes once a minute.
type NoteLimiter struct {
	Every time.Duration // default a minute

	mu   sync.Mutex
	keys map[string]*noteKey
}

type noteKey struct {
	last       time.Time
	suppressed int
}

// Allow reports whether a note of key at now may go out, and how many
// were held back since the last one that did.
func (l *NoteLimiter) Allow(key string, now time.Time) (ok bool, suppressed int) {
	every := l.Every
	if every <= 0 {
		every = time.Minute
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.keys == nil {
		l.keys = map[string]*noteKey{}
	}
	k := l.keys[key]
	if k == nil {
		k = &noteKey{}
		l.keys[key] = k
	}
	if !k.last.IsZero() && now.Sub(k.last) < every {
		k.suppressed++
		return false, 0
	}
	suppressed, k.last, k.suppressed = k.suppressed, now, 0
	return true, suppressed
}

// MissingPlaceholders warns, at most once a minute per observer and
// action, that act's template (named in msg) rendered placeholders of ev
// empty, with how many such warnings were held back since the last.
func (l *NoteLimiter) MissingPlaceholders(ctx context.Context, logger *slog.Logger, msg string, ev *domain.Event, obs *domain.Observer, act *domain.Action, missing []string) {
	name := domain.ObserverName(obs)
	ok, held := l.Allow(name+"\x00"+act.Name, time.Now())
	if !ok {
		return
	}
	logger.WarnContext(ctx, msg+" (logged at most once a minute per action)",
		slog.String("event_id", ev.ID), slog.String("observer", name), slog.String("action", act.Name),
		slog.Any("missing_placeholders", missing), slog.Int("held_back", held))
}
