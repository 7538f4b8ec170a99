package webhook_test

import (
	"context"
	"strings"
	"testing"

	"github.com/fraiseql/fraiseql-observer/adapters/webhook"
	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// TestExecuteNotesTheResponse: when the caller asks (the delivery log),
// the executor leaves the status code and at most 1 KiB of the body.
func TestExecuteNotesTheResponse(t *testing.T) {
	t.Parallel()
	b := setup(t, webhook.Config{})
	cases := []struct {
		name       string
		status     string
		bodySize   string
		wantStatus int
		wantBody   int
	}{
		{"success with a body", "201", "10", 201, 10},
		{"success without a body", "204", "", 204, 0},
		{"failure with a long body", "503", "4000", 503, ports.MaxResponseSnippet},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			act := newAction(b.srv.URL+"/hook", func(w *domain.WebhookAction) {
				w.Headers = map[string]string{"X-Test-Status": tc.status, "X-Test-Body-Size": tc.bodySize}
			})
			ctx, note := ports.WithResponseNote(t.Context())
			err := b.exec.Execute(ctx, newEvent(), testObserver, act)
			if (err != nil) != (tc.wantStatus >= 300) {
				t.Fatalf("Execute = %v", err)
			}
			status, body := note.Get()
			if status != tc.wantStatus || len(body) != tc.wantBody || strings.Trim(string(body), "x") != "" {
				t.Errorf("note = %d, %d bytes; want %d, %d bytes of the body", status, len(body), tc.wantStatus, tc.wantBody)
			}
			if err != nil && len(err.Error()) > 600 {
				t.Errorf("the error quotes %d bytes: the error keeps its own short quote", len(err.Error()))
			}
		})
	}
	// Without a note nothing is read beyond what an error quotes.
	act := newAction(b.srv.URL+"/hook", func(w *domain.WebhookAction) { w.Headers = map[string]string{"X-Test-Status": "200"} })
	if err := b.exec.Execute(context.Background(), newEvent(), testObserver, act); err != nil {
		t.Fatal(err)
	}
}
