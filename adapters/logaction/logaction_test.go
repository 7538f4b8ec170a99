package logaction_test

import (
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observer/adapters/logaction"
	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/internal/testsupport"
)

type testBundle struct {
	exec    *logaction.Executor
	handler *testsupport.Logs
}

func setup(t *testing.T, minLevel slog.Level) *testBundle {
	t.Helper()
	h := &testsupport.Logs{Min: minLevel}
	return &testBundle{exec: logaction.NewExecutor(slog.New(h)), handler: h}
}

func newEvent() *domain.Event {
	return &domain.Event{
		ID:         "0b9e7d0c-6c6f-4f5e-9a57-6d0f7e1c2a11",
		EventType:  domain.EventUpdate,
		EntityType: "Order",
		EntityID:   "5f1c2f5a-8f6b-4a8e-9b0e-2a7c1c9f0d33",
		Data: map[string]any{
			"status":   "shipped",
			"customer": map[string]any{"email": "a@example.com"},
			"note":     "ok\n12:00:00 ERR lease lost\r\x1b[31mred\u0085\tend",
		},
		Timestamp: time.Date(2026, 3, 4, 5, 0, 0, 0, time.UTC),
	}
}

func TestExecute(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name        string
		level       string
		template    string // "" means no template
		wantLevel   slog.Level
		wantMsg     string
		wantMissing []string
	}{
		{name: "default message", level: "info", wantLevel: slog.LevelInfo, wantMsg: "event observed"},
		{name: "empty level is info", level: "", wantLevel: slog.LevelInfo, wantMsg: "event observed"},
		{name: "debug", level: "debug", template: "order {{ event.entity_id }} is {{ status }}", wantLevel: slog.LevelDebug,
			wantMsg: "order 5f1c2f5a-8f6b-4a8e-9b0e-2a7c1c9f0d33 is shipped"},
		{name: "warn nested path", level: "warn", template: "mail {{ customer.email }}", wantLevel: slog.LevelWarn, wantMsg: "mail a@example.com"},
		{name: "error unescaped", level: "error", template: `"{{ status }}" <{{ event.event_type }}>`, wantLevel: slog.LevelError, wantMsg: `"shipped" <UPDATE>`},
		// The event's data cannot forge a log line or reach the terminal:
		// a text handler writes the message as it is.
		{name: "control characters escaped", level: "info", template: "note: {{ note }}", wantLevel: slog.LevelInfo,
			wantMsg: `note: ok\n12:00:00 ERR lease lost\r\u001b[31mred\u0085` + "\tend"},
		{name: "missing placeholders", level: "info", template: "x={{ nope }} y={{ before.status }} s={{ status }}", wantLevel: slog.LevelInfo,
			wantMsg: "x= y= s=shipped", wantMissing: []string{"nope", "before.status"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, slog.LevelDebug)
			act := &domain.Action{Name: "log-1", Type: domain.ActionLog, Log: &domain.LogAction{Level: tt.level}}
			if tt.template != "" {
				act.Log.MessageTemplate = domain.MustCompileTemplate(tt.template)
			}
			ev := newEvent()
			if err := b.exec.Execute(t.Context(), ev, &domain.Observer{Name: "order-shipped"}, act); err != nil {
				t.Fatalf("Execute: %v", err)
			}
			recs := b.handler.Records()
			if len(recs) != 1 {
				t.Fatalf("got %d records, want 1", len(recs))
			}
			r := recs[0]
			if r.Level != tt.wantLevel {
				t.Errorf("level = %v, want %v", r.Level, tt.wantLevel)
			}
			if r.Message != tt.wantMsg {
				t.Errorf("message = %q, want %q", r.Message, tt.wantMsg)
			}
			want := map[string]string{
				"event_id":    ev.ID,
				"event_type":  "UPDATE",
				"entity_type": "Order",
				"entity_id":   ev.EntityID,
				"observer":    "order-shipped",
				"action":      "log-1",
			}
			for k, v := range want {
				if got, ok := r.Attrs[k].(string); !ok || got != v {
					t.Errorf("attribute %s = %v, want %q", k, r.Attrs[k], v)
				}
			}
			got, present := r.Attrs["missing_placeholders"]
			if tt.wantMissing == nil {
				if present {
					t.Errorf("missing_placeholders = %v, want absent", got)
				}
				return
			}
			if list, _ := got.([]string); !slices.Equal(list, tt.wantMissing) {
				t.Errorf("missing_placeholders = %v, want %v", got, tt.wantMissing)
			}
		})
	}
}

func TestExecuteBelowHandlerLevel(t *testing.T) {
	t.Parallel()
	b := setup(t, slog.LevelWarn)
	act := &domain.Action{Name: "log-1", Type: domain.ActionLog, Log: &domain.LogAction{Level: "info"}}
	if err := b.exec.Execute(t.Context(), newEvent(), &domain.Observer{Name: "o"}, act); err != nil {
		t.Fatalf("Execute: %v", err)
	}
	if recs := b.handler.Records(); len(recs) != 0 {
		t.Fatalf("got %d records below the handler's level, want 0", len(recs))
	}
}

func TestExecuteInvalid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		act  *domain.Action
	}{
		{"no log config", &domain.Action{Name: "log-1", Type: domain.ActionLog}},
		{"bad level", &domain.Action{Name: "log-1", Type: domain.ActionLog, Log: &domain.LogAction{Level: "loud"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, slog.LevelDebug)
			err := b.exec.Execute(t.Context(), newEvent(), &domain.Observer{Name: "o"}, tt.act)
			if !domain.IsPermanent(err) {
				t.Fatalf("Execute = %v, want a permanent error", err)
			}
			if recs := b.handler.Records(); len(recs) != 0 {
				t.Errorf("got %d records for an invalid action", len(recs))
			}
		})
	}
}

func TestNewExecutorNilLogger(t *testing.T) {
	t.Parallel()
	defer func() {
		if recover() == nil {
			t.Fatal("NewExecutor(nil) did not panic")
		}
	}()
	logaction.NewExecutor(nil)
}
