package testsupport

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"
)

// Record is one log record as Logs keeps it.
type Record struct {
	Level   slog.Level
	Message string
	// Attrs holds the record's attributes by key, each as
	// slog.Value.Any() returns it (string, int64, []string, ...).
	Attrs map[string]any
}

// Logs is a slog.Handler that keeps the records it handles, for
// assertions. The zero value keeps every level. Safe for concurrent use.
//
// WithAttrs and WithGroup return the handler itself: attributes added with
// Logger.With are not recorded.
type Logs struct {
	// Min is the lowest level enabled; nil enables every level.
	Min slog.Leveler
	// Hook, when set, runs on each record in the logging goroutine, after
	// the record is kept. Set it before anything logs.
	Hook func(Record)

	mu   sync.Mutex
	recs []Record
}

var _ slog.Handler = (*Logs)(nil)

// Enabled reports whether l is at or above Min.
func (h *Logs) Enabled(_ context.Context, l slog.Level) bool {
	return h.Min == nil || l >= h.Min.Level()
}

// Handle keeps r.
func (h *Logs) Handle(_ context.Context, r slog.Record) error {
	rec := Record{Level: r.Level, Message: r.Message, Attrs: make(map[string]any, r.NumAttrs())}
	r.Attrs(func(a slog.Attr) bool {
		rec.Attrs[a.Key] = a.Value.Resolve().Any()
		return true
	})
	h.mu.Lock()
	h.recs = append(h.recs, rec)
	hook := h.Hook
	h.mu.Unlock()
	if hook != nil {
		hook(rec)
	}
	return nil
}

// WithAttrs returns h; the attributes are not recorded.
func (h *Logs) WithAttrs([]slog.Attr) slog.Handler { return h }

// WithGroup returns h.
func (h *Logs) WithGroup(string) slog.Handler { return h }

// Records returns the records kept so far, oldest first.
func (h *Logs) Records() []Record {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Record(nil), h.recs...)
}

// Find returns the records whose message is msg.
func (h *Logs) Find(msg string) []Record {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []Record
	for _, r := range h.recs {
		if r.Message == msg {
			out = append(out, r)
		}
	}
	return out
}

// WaitFor waits until a record with message msg arrived; the test fails
// after timeout.
func (h *Logs) WaitFor(t testing.TB, msg string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for len(h.Find(msg)) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no %q log record within %v", msg, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
