package adminhttp_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observer/adapters/adminhttp"
	"github.com/fraiseql/fraiseql-observer/application"
	"github.com/fraiseql/fraiseql-observer/application/admin"
	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// TestLongRoutesOutliveTheServersTimeouts: a dead-letter retry (one and
// all) whose action runs longer than the server's read and write timeouts
// finishes with its context intact and answers: the write deadline is
// lifted while it works and set again for the answer (startLongRunning),
// and the read deadline does not cancel the request's context (net/http
// clears it before its background read of the connection; a Go release
// that did not would fail here).
func TestLongRoutesOutliveTheServersTimeouts(t *testing.T) {
	t.Parallel()
	const timeout = 200 * time.Millisecond
	const work = 4 * timeout
	b := newBundle(t)
	obs := domain.Observer{Name: "hooks", Entity: "Order", Events: []domain.EventType{domain.EventInsert}, Retry: domain.DefaultRetryPolicy,
		Actions: []domain.Action{{Name: "slow-hook", Type: domain.ActionLog}}}
	m := domain.NewMatcher([]domain.Observer{obs})
	exec := ports.ActionExecutorFunc(func(ctx context.Context, _ *domain.Event, _ *domain.Observer, _ *domain.Action) error {
		select {
		case <-time.After(work):
			return nil
		case <-ctx.Done():
			return fmt.Errorf("cancelled after less than %s: %w", work, context.Cause(ctx))
		}
	})
	retrier := &application.DeadLetterRetrier{Store: b.dl, Executor: exec, Matcher: func() *domain.Matcher { return m }}
	cfg := b.config("tok")
	cfg.DeadLetters = &admin.DeadLetters{Store: b.dl, Retrier: func(context.Context) (*application.DeadLetterRetrier, error) { return retrier, nil }}
	h, err := adminhttp.NewHandler(cfg)
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, h, adminhttp.ServerConfig{ReadTimeout: timeout, WriteTimeout: timeout, IdleTimeout: time.Minute})

	for _, route := range []string{"/api/observers/dlq/%d/retry", "/api/observers/dlq/retry-all"} {
		id := b.addDeadLetter(t, "hooks", "slow-hook", nil)
		path := route
		if strings.Contains(route, "%d") {
			path = fmt.Sprintf(route, id)
		}
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, "http://"+addr+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer tok")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		raw, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		var body map[string]any
		if err := json.Unmarshal(raw, &body); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("%s = %d %s, want 200 and JSON", path, resp.StatusCode, raw)
		}
		if body["status"] != "succeeded" && body["succeeded"] != float64(1) {
			t.Errorf("%s = %s, want the action to succeed after %s (server timeouts %s)", path, raw, work, timeout)
		}
	}
}
