package integration

import (
	"context"
	"net/url"
	"regexp"
	"slices"
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
	b, proxy, store, direct := proxiedRetries(t)
	ev := parkUpdate(t, direct, "1")
	var mu sync.Mutex
	var delivered []string
	exec := ports.ActionExecutorFunc(func(_ context.Context, ev *domain.Event, _ *domain.Observer, _ *domain.Action) error {
		mu.Lock()
		delivered = append(delivered, ev.ID)
		mu.Unlock()
		return nil
	})
	dropped := proxy.DropAnswer(updatedRows.Match)
	startRunner(t, b, store, exec)
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
		keys, err := countKeys(t.Context(), direct)
		return err == nil && keys == 0
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

// TestRetryRunnerRecoversTheNextItemOfALostComplete: the connection drops
// after Complete committed (the item deleted, the next item of its entity
// claimed) and before its answer arrived. The runner's retry finds the
// item gone, and releases the holder the next item was claimed for: the
// next item is delivered at the next look, not after the claim's hour.
func TestRetryRunnerRecoversTheNextItemOfALostComplete(t *testing.T) {
	t.Parallel()
	b, proxy, store, direct := proxiedRetries(t)
	first, second := parkUpdate(t, direct, "1"), parkUpdate(t, direct, "1")
	var mu sync.Mutex
	var delivered []string
	var dropped <-chan struct{}
	exec := ports.ActionExecutorFunc(func(_ context.Context, ev *domain.Event, _ *domain.Observer, _ *domain.Action) error {
		mu.Lock()
		defer mu.Unlock()
		if len(delivered) == 0 {
			// Claimed and answered: the next "UPDATE 1" is Complete's
			// promotion of the next item.
			dropped = proxy.DropAnswer(updatedRows.Match)
		}
		delivered = append(delivered, ev.ID)
		return nil
	})
	startRunner(t, b, store, exec)
	waitFor(t, "both items delivered and completed", func() bool {
		mu.Lock()
		n := len(delivered)
		mu.Unlock()
		keys, err := countKeys(t.Context(), direct)
		return n == 2 && err == nil && keys == 0
	})
	mu.Lock()
	defer mu.Unlock()
	select {
	case <-dropped:
	default:
		t.Fatal("Complete's answer never passed the proxy")
	}
	if want := []string{first.ID, second.ID}; !slices.Equal(delivered, want) {
		t.Errorf("delivered %v, want %v in order, each once", delivered, want)
	}
	if n := b.logs.count("cannot settle a parked item; it runs again when its claim expires"); n != 0 {
		t.Errorf("%d items reported unsettled, want none: the lost Complete had completed it", n)
	}
}

// proxiedRetries is a migrated test database, a retry store on it reached
// through a proxy, and one reached directly.
func proxiedRetries(t *testing.T) (b *testBundle, proxy *testsupport.Proxy, store, direct *postgres.Retries) {
	t.Helper()
	b = setup(t)
	u, err := url.Parse(b.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	proxy = testsupport.StartProxy(t, u.Host)
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
	if store, err = postgres.NewRetries(proxied, "observer"); err != nil {
		t.Fatal(err)
	}
	if direct, err = postgres.NewRetries(b.pool, "observer"); err != nil {
		t.Fatal(err)
	}
	return b, proxy, store, direct
}

// parkUpdate parks an UPDATE of Order entity for observer "hooks",
// action "a", due now.
func parkUpdate(t *testing.T, s ports.RetryStore, entity string) domain.Event {
	t.Helper()
	ev := domain.Event{ID: newUUID(), EntityType: "Order", EntityID: entity, EventType: domain.EventUpdate}
	if _, _, err := s.Park(t.Context(), ports.RetryItem{Event: ev, Observer: "hooks", EntityKey: ev.EntityKey(),
		Actions: []ports.RetryAction{{Action: "a", ActionType: domain.ActionWebhook, Endpoint: "https://127.0.0.1:1", Attempts: 1, Due: time.Now()}}}); err != nil {
		t.Fatal(err)
	}
	return ev
}

// hooksMatcher matches "hooks": Order updates, webhook action "a".
func hooksMatcher() *domain.Matcher {
	return domain.NewMatcher([]domain.Observer{{Name: "hooks", Entity: "Order", Events: []domain.EventType{domain.EventUpdate},
		Retry:   domain.RetryPolicy{MaxAge: time.Hour, InitialDelay: time.Second, MaxDelay: time.Minute, Backoff: domain.BackoffExponential},
		Actions: []domain.Action{{Name: "a", Type: domain.ActionWebhook}}}})
}

// startRunner runs a retry runner (holder "p", observer "hooks", polling
// every 50ms, claims of an hour) on store until the test ends.
func startRunner(t *testing.T, b *testBundle, store ports.RetryStore, exec ports.ActionExecutor) {
	t.Helper()
	m := hooksMatcher()
	r, err := application.NewRetryRunner(store, exec, func() *domain.Matcher { return m }, application.RetryRunnerConfig{
		Holder: "p", Logger: b.logger, PollInterval: 50 * time.Millisecond, ClaimTTL: time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

// countKeys counts the keys with parked items in s.
func countKeys(ctx context.Context, s ports.RetryStore) (int, error) {
	n := 0
	err := s.Keys(ctx, func(ports.RetryKey) error { n++; return nil })
	return n, err
}
