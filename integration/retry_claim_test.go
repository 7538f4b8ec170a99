package integration

import (
	"context"
	"net/url"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fraiseql/fraiseql-observer/adapters/postgres"
	"github.com/fraiseql/fraiseql-observer/application"
	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/internal/testsupport"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// updatedRows matches PostgreSQL's CommandComplete of an UPDATE that
// changed rows ("UPDATE 1"): the claim's answer, sent after its commit.
var updatedRows = regexp.MustCompile(`UPDATE [1-9]`)

// TestRetryRunnerRecoversAClaimWhoseAnswerWasLost: the connection to
// PostgreSQL drops after the runner's claim committed and before its
// answer arrived. The runner releases what that call claimed: the item is
// delivered at the next look, not after the claim's hour, which would hold
// its entity's later events back as long.
func TestRetryRunnerRecoversAClaimWhoseAnswerWasLost(t *testing.T) {
	t.Parallel()
	b := setup(t)
	u, err := url.Parse(b.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := testsupport.StartProxy(t, u.Host)
	u.Host = proxy.Addr()
	pcfg, err := pgxpool.ParseConfig(u.String())
	if err != nil {
		t.Fatal(err)
	}
	pcfg.MaxConns = 2
	proxied, err := pgxpool.NewWithConfig(t.Context(), pcfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(proxied.Close)
	store, err := postgres.NewRetries(proxied, "observer")
	if err != nil {
		t.Fatal(err)
	}
	direct, err := postgres.NewRetries(b.pool, "observer")
	if err != nil {
		t.Fatal(err)
	}

	ev := domain.Event{ID: newUUID(), EntityType: "Order", EntityID: "1", EventType: domain.EventUpdate}
	if _, _, err := direct.Park(t.Context(), ports.RetryItem{Event: ev, Observer: "hooks", EntityKey: ev.EntityKey(),
		Actions: []ports.RetryAction{{Action: "a", ActionType: domain.ActionWebhook, Endpoint: "https://127.0.0.1:1", Attempts: 1, Due: time.Now()}}}); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var delivered []string
	exec := ports.ActionExecutorFunc(func(_ context.Context, ev *domain.Event, _ *domain.Observer, _ *domain.Action) error {
		mu.Lock()
		delivered = append(delivered, ev.ID)
		mu.Unlock()
		return nil
	})
	m := domain.NewMatcher([]domain.Observer{{Name: "hooks", Entity: "Order", Events: []domain.EventType{domain.EventUpdate},
		Retry:   domain.RetryPolicy{MaxAge: time.Hour, InitialDelay: time.Second, MaxDelay: time.Minute, Backoff: domain.BackoffExponential},
		Actions: []domain.Action{{Name: "a", Type: domain.ActionWebhook}}}})
	dropped := proxy.DropAnswer(updatedRows.Match)
	r, err := application.NewRetryRunner(store, exec, func() *domain.Matcher { return m }, application.RetryRunnerConfig{
		Holder: "p", Logger: b.logger, PollInterval: 50 * time.Millisecond, ClaimTTL: time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	select {
	case <-dropped:
	case <-time.After(30 * time.Second):
		t.Fatal("the claim's answer never passed the proxy")
	}
	waitFor(t, "the item whose claim's answer was lost delivered", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(delivered) > 0
	})
	waitFor(t, "the item completed", func() bool {
		keys, err := direct.Keys(t.Context())
		return err == nil && len(keys) == 0
	})
	mu.Lock()
	defer mu.Unlock()
	if len(delivered) != 1 || delivered[0] != ev.ID {
		t.Errorf("delivered %v, want %s once", delivered, ev.ID)
	}
	if n := b.logs.count("cannot claim parked retries, will retry"); n != 1 {
		t.Errorf("%d claim failures logged, want the one the lost answer caused", n)
	}
}
