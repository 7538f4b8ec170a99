package webhook_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"

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
	// Without a note a success's body is not read (only drained, when the
	// connection can be reused): an answer whose body runs to the
	// connection's end, which the receiver holds open, ends the delivery
	// at its head. Reading the body would wait for the receiver, here
	// until the test ends (the request's timeout is longer than the wait).
	srv := newRawServer(t, func(s *rawServer, _ int, c net.Conn, br *bufio.Reader) {
		if _, _, ok := s.readRequest(br); ok {
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\n\r\n"+strings.Repeat("x", 100)) // no length: to the end
			<-t.Context().Done()
		}
	})
	exec := newH1Executor(t)
	act := newAction(srv.url, func(w *domain.WebhookAction) { w.Timeout = time.Hour })
	done := make(chan error, 1)
	go func() { done <- exec.Execute(context.Background(), newEvent(), testObserver, act) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Execute without a note still waits for the body of a 200 the receiver holds open: the body is read")
	}
}
