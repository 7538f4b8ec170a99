package email_test

import (
	"context"
	"crypto/tls"
	"log/slog"
	"strconv"
	"sync"

	"github.com/fraiseql/fraiseql-observer/internal/smtptest"
)

// newTLSConfig trusts the test server's certificate.
func newTLSConfig(ts *smtptest.Server) *tls.Config {
	return &tls.Config{RootCAs: ts.CA, MinVersion: tls.VersionTLS12}
}

func itoa(n int) string { return strconv.Itoa(n) }

// recordHandler captures log records for assertions.
type recordHandler struct {
	mu   sync.Mutex
	recs []capturedRecord
}

type capturedRecord struct {
	Level slog.Level
	Msg   string
	attrs map[string]any
}

func (h *recordHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *recordHandler) Handle(_ context.Context, r slog.Record) error {
	rec := capturedRecord{Level: r.Level, Msg: r.Message, attrs: map[string]any{}}
	r.Attrs(func(a slog.Attr) bool {
		rec.attrs[a.Key] = a.Value.Any()
		return true
	})
	h.mu.Lock()
	defer h.mu.Unlock()
	h.recs = append(h.recs, rec)
	return nil
}

func (h *recordHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *recordHandler) WithGroup(string) slog.Handler      { return h }

func (h *recordHandler) records() []capturedRecord {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]capturedRecord(nil), h.recs...)
}
