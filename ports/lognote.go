package ports

import (
	"sync"
	"time"
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
