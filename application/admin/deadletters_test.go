package admin_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observer/adapters/memory"
	"github.com/fraiseql/fraiseql-observer/application"
	"github.com/fraiseql/fraiseql-observer/application/admin"
	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// dlqBundle is the dead-letter commands on a memory store, retrying with
// an executor whose "fail-hook" action fails.
type dlqBundle struct {
	dl    *memory.DeadLetters
	cmds  *admin.DeadLetters
	mu    sync.Mutex
	calls []string
}

func setupDLQ(t *testing.T) *dlqBundle {
	t.Helper()
	b := &dlqBundle{dl: memory.NewDeadLetters(nil)}
	obs := domain.Observer{Name: "hooks", Entity: "Order", Events: []domain.EventType{domain.EventInsert},
		Retry: domain.DefaultRetryPolicy, OnFailure: domain.FailureDLQ,
		Actions: []domain.Action{
			{Name: "ok-hook", Type: domain.ActionLog, Log: &domain.LogAction{Level: "info"}},
			{Name: "fail-hook", Type: domain.ActionLog, Log: &domain.LogAction{Level: "info"}},
		}}
	m := domain.NewMatcher([]domain.Observer{obs})
	exec := ports.ActionExecutorFunc(func(_ context.Context, ev *domain.Event, _ *domain.Observer, act *domain.Action) error {
		b.mu.Lock()
		b.calls = append(b.calls, act.Name+"@"+ev.EntityID)
		b.mu.Unlock()
		if act.Name == "fail-hook" {
			return errors.New("receiver down: 500")
		}
		return nil
	})
	retrier := &application.DeadLetterRetrier{Store: b.dl, Executor: exec, Matcher: func() *domain.Matcher { return m }, Now: time.Now}
	b.cmds = &admin.DeadLetters{Store: b.dl, Retrier: func(context.Context) (*application.DeadLetterRetrier, error) { return retrier, nil }}
	return b
}

func (b *dlqBundle) add(t *testing.T, d ports.DeadLetter) int64 {
	t.Helper()
	id, err := b.dl.Add(t.Context(), d)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func (b *dlqBundle) action(t *testing.T, entityID, observer, action string) int64 {
	t.Helper()
	return b.add(t, ports.DeadLetter{Event: domain.Event{ID: "ev-" + entityID, EventType: domain.EventInsert, EntityType: "Order", EntityID: entityID},
		Observer: observer, Action: action, ActionType: domain.ActionLog, Error: "boom", Attempts: 5})
}

func TestDeadLetterCommands(t *testing.T) {
	t.Parallel()
	b := setupDLQ(t)
	ctx := t.Context()
	first := b.action(t, "o1", "hooks", "ok-hook")
	second := b.action(t, "o2", "hooks", "fail-hook")
	binary := b.add(t, ports.DeadLetter{Error: "not an event", Raw: []byte{0xff, 0xfe}, Attempts: 1})
	text := b.add(t, ports.DeadLetter{Error: "not an event", Raw: []byte("garbage"), Attempts: 1})

	for _, c := range []struct {
		q    admin.DeadLetterQuery
		want []int64
	}{
		{admin.DeadLetterQuery{}, []int64{first, second, binary, text}},
		{admin.DeadLetterQuery{Observer: "hooks"}, []int64{first, second}},
		{admin.DeadLetterQuery{Limit: 2, AfterID: first}, []int64{second, binary}},
		{admin.DeadLetterQuery{Observer: "nobody"}, nil},
	} {
		items, err := b.cmds.List(ctx, c.q)
		if err != nil {
			t.Fatal(err)
		}
		var got []int64
		for _, it := range items {
			got = append(got, it.ID)
		}
		if len(got) != len(c.want) || len(got) > 0 && (got[0] != c.want[0] || got[len(got)-1] != c.want[len(c.want)-1]) {
			t.Errorf("List(%+v) = %v, want %v", c.q, got, c.want)
		}
	}
	var re *admin.RequestError
	if _, err := b.cmds.List(ctx, admin.DeadLetterQuery{Limit: -1}); !errors.As(err, &re) {
		t.Errorf("List with a negative limit: %v, want a RequestError", err)
	}
	if v, err := b.cmds.Get(ctx, binary); err != nil || v.RawEncoding != "base64" || v.Raw != "//4=" {
		t.Errorf("Get(binary) = %+v, %v", v, err)
	}
	if v, err := b.cmds.Get(ctx, text); err != nil || v.RawEncoding != "text" || v.Raw != "garbage" || v.Brief().Raw != "" {
		t.Errorf("Get(text) = %+v, %v", v, err)
	}
	if _, err := b.cmds.Get(ctx, 999); !errors.Is(err, ports.ErrNotFound) || !strings.Contains(err.Error(), "dead letter 999") {
		t.Errorf("Get(unknown) = %v", err)
	}
	if st, err := b.cmds.Stats(ctx); err != nil || st.Total != 4 || st.ByObserver["hooks"] != 2 || st.ByObserver[""] != 2 {
		t.Errorf("Stats = %+v, %v", st, err)
	}
	if err := b.cmds.Remove(ctx, text); err != nil {
		t.Fatal(err)
	}
	if err := b.cmds.Remove(ctx, text); !errors.Is(err, ports.ErrNotFound) {
		t.Errorf("second Remove = %v, want not found", err)
	}
}

func TestDeadLetterRetry(t *testing.T) {
	t.Parallel()
	b := setupDLQ(t)
	ctx := t.Context()
	ok := b.action(t, "o1", "hooks", "ok-hook")
	fail := b.action(t, "o2", "hooks", "fail-hook")
	gone := b.action(t, "o3", "removed-observer", "x")
	input := b.add(t, ports.DeadLetter{Error: "not an event", Raw: []byte("x")})

	res, err := b.cmds.Retry(ctx, ok)
	if err != nil || res.Status != admin.RetrySucceeded {
		t.Fatalf("Retry(ok) = %+v, %v", res, err)
	}
	if _, err := b.cmds.Get(ctx, ok); !errors.Is(err, ports.ErrNotFound) {
		t.Errorf("a succeeded item stays: %v", err)
	}
	res, err = b.cmds.Retry(ctx, fail)
	if err != nil || res.Status != admin.RetryFailed || !strings.Contains(res.Error, "500") {
		t.Fatalf("Retry(fail) = %+v, %v", res, err)
	}
	if v, _ := b.cmds.Get(ctx, fail); v.Attempts != 6 || v.LastRetryAt == nil {
		t.Errorf("failed retry recorded as %+v, want 6 attempts", v)
	}
	for _, id := range []int64{gone, input} {
		if res, err := b.cmds.Retry(ctx, id); err != nil || res.Status != admin.RetryNotRetryable || res.Error == "" {
			t.Errorf("Retry(%d) = %+v, %v; want not retryable with a reason", id, res, err)
		}
	}
	if _, err := b.cmds.Retry(ctx, 999); !errors.Is(err, ports.ErrNotFound) {
		t.Errorf("Retry(unknown) = %v", err)
	}

	rep, err := b.cmds.RetryAll(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK() || rep.Succeeded != 0 || rep.Failed != 1 || rep.NotRetryable != 2 || len(rep.Results) != 3 {
		t.Errorf("RetryAll = %+v, want 1 failed and 2 not retryable", rep)
	}
	b.mu.Lock()
	calls := append([]string(nil), b.calls...)
	b.mu.Unlock()
	if len(calls) != 3 || calls[0] != "ok-hook@o1" {
		t.Errorf("executor calls = %v, want each retryable action once per retry", calls)
	}
}

// brokenStore fails MarkRetried and Remove for the ids listed, as a store
// does for a value it refuses (PostgreSQL's SQLSTATE class 22) or when it
// goes down.
type brokenStore struct {
	*memory.DeadLetters
	markFails, removeFails map[int64]error
}

func (s *brokenStore) MarkRetried(ctx context.Context, id int64, errText string, at time.Time) error {
	if err := s.markFails[id]; err != nil {
		return err
	}
	return s.DeadLetters.MarkRetried(ctx, id, errText, at)
}

func (s *brokenStore) Remove(ctx context.Context, id int64) error {
	if err := s.removeFails[id]; err != nil {
		return err
	}
	return s.DeadLetters.Remove(ctx, id)
}

// TestDeadLetterRetryAllGoesPastAnItemTheStoreCannotRecord: an item whose
// failed retry cannot be marked, or whose success cannot be removed, is
// reported failed with the store's error and the items after it are still
// retried (else every retry-all would stop at that item). A store that is
// unavailable ends the run with an error.
func TestDeadLetterRetryAllGoesPastAnItemTheStoreCannotRecord(t *testing.T) {
	t.Parallel()
	b := setupDLQ(t)
	ctx := t.Context()
	unmarkable := b.action(t, "o1", "hooks", "fail-hook")
	unremovable := b.action(t, "o2", "hooks", "ok-hook")
	fail := b.action(t, "o3", "hooks", "fail-hook")
	ok := b.action(t, "o4", "hooks", "ok-hook")
	store := &brokenStore{DeadLetters: b.dl,
		markFails:   map[int64]error{unmarkable: fmt.Errorf("mark: invalid byte sequence (SQLSTATE 22021): %w", domain.ErrPermanent)},
		removeFails: map[int64]error{unremovable: errors.New("remove: constraint violated")},
	}
	retrier, err := b.cmds.Retrier(ctx)
	if err != nil {
		t.Fatal(err)
	}
	retrier.Store, b.cmds.Store = store, store

	rep, err := b.cmds.RetryAll(ctx, "")
	if err != nil {
		t.Fatalf("RetryAll = %v, want the broken items reported and the rest retried", err)
	}
	if len(rep.Results) != 4 || rep.Succeeded != 1 || rep.Failed != 3 || rep.OK() {
		t.Fatalf("RetryAll = %+v, want 4 results: 1 succeeded, 3 failed", rep)
	}
	want := map[int64][]string{
		unmarkable:  {"receiver down: 500", "SQLSTATE 22021"},
		unremovable: {"the action succeeded", "constraint violated"},
		fail:        {"receiver down: 500"},
	}
	for _, res := range rep.Results {
		if res.ID == ok {
			if res.Status != admin.RetrySucceeded {
				t.Errorf("item after the broken ones: %+v, want succeeded", res)
			}
			continue
		}
		if res.Status != admin.RetryFailed || res.EventID == "" || res.Observer != "hooks" {
			t.Errorf("item %d: %+v, want failed and named", res.ID, res)
		}
		for _, w := range want[res.ID] {
			if !strings.Contains(res.Error, w) {
				t.Errorf("item %d: error %q, want it to name %q", res.ID, res.Error, w)
			}
		}
	}
	if _, err := b.dl.Get(ctx, ok); !errors.Is(err, ports.ErrNotFound) {
		t.Errorf("the succeeded item after the broken ones stays: %v", err)
	}
	if v, err := b.dl.Get(ctx, fail); err != nil || v.Attempts != 6 {
		t.Errorf("the failed item after the broken ones: %+v, %v; want its retry recorded", v, err)
	}

	// An unreachable store fails every later item too: the run stops.
	store.markFails[unmarkable] = fmt.Errorf("mark: connection refused: %w", ports.ErrUnavailable)
	b.mu.Lock()
	b.calls = nil
	b.mu.Unlock()
	rep, err = b.cmds.RetryAll(ctx, "")
	if !errors.Is(err, ports.ErrUnavailable) || len(rep.Results) != 1 || rep.Results[0].ID != unmarkable || rep.Failed != 1 {
		t.Fatalf("RetryAll with the store down = %+v, %v; want ErrUnavailable after the first item", rep, err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.calls) != 1 {
		t.Errorf("executor calls after the store went down: %v, want none past the first item", b.calls)
	}
}

func TestDeadLetterRetryWithoutActions(t *testing.T) {
	t.Parallel()
	dl := memory.NewDeadLetters(nil)
	cmds := &admin.DeadLetters{Store: dl, Retrier: func(context.Context) (*application.DeadLetterRetrier, error) { return nil, admin.ErrNoActions }}
	if _, err := cmds.Retry(t.Context(), 1); !errors.Is(err, admin.ErrNoActions) {
		t.Errorf("Retry = %v, want ErrNoActions", err)
	}
	if rep, err := cmds.RetryAll(t.Context(), ""); !errors.Is(err, admin.ErrNoActions) || rep.Results == nil {
		t.Errorf("RetryAll = %+v, %v; want ErrNoActions and an empty report", rep, err)
	}
}

func TestParseSince(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		in   string
		want time.Time
		ok   bool
	}{
		{"2h", now.Add(-2 * time.Hour), true},
		{"2026-04-30T10:00:00Z", time.Date(2026, 4, 30, 10, 0, 0, 0, time.UTC), true},
		{"2026-04-30T10:00:00+02:00", time.Date(2026, 4, 30, 8, 0, 0, 0, time.UTC), true},
		{"-2h", time.Time{}, false},
		{"yesterday", time.Time{}, false},
	}
	for _, c := range cases {
		got, err := admin.ParseSince(c.in, now)
		if (err == nil) != c.ok || c.ok && !got.Equal(c.want) {
			t.Errorf("ParseSince(%q) = %v, %v; want %v (ok %v)", c.in, got, err, c.want, c.ok)
		}
	}
}

// A retry-all of more than MaxRetryResults items counts every outcome but
// lists only the first MaxRetryResults.
func TestDeadLetterRetryAllListsTheFirstOutcomes(t *testing.T) {
	t.Parallel()
	b := setupDLQ(t)
	const n = admin.MaxRetryResults + 5
	for i := range n {
		b.action(t, fmt.Sprint("o", i), "hooks", "ok-hook")
	}
	rep, err := b.cmds.RetryAll(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	if rep.Succeeded != n || rep.Total() != n || len(rep.Results) != admin.MaxRetryResults || rep.Omitted != 5 {
		t.Errorf("report: %d succeeded (total %d), %d listed, %d omitted; want %d, %d, %d, 5",
			rep.Succeeded, rep.Total(), len(rep.Results), rep.Omitted, n, n, admin.MaxRetryResults)
	}
}

// RetryAllProgress reports the counts so far after each item: an item
// may take a webhook's whole timeout, and the CLI promises a line every
// 2s. Before, it reported after each page of 100 (99 slow items: one
// report, at the end).
func TestDeadLetterRetryAllReportsProgress(t *testing.T) {
	t.Parallel()
	b := setupDLQ(t)
	const n = 2*admin.DefaultLimit + 50
	for i := range n {
		b.action(t, fmt.Sprint("o", i), "hooks", "ok-hook")
	}
	var seen []int
	rep, err := b.cmds.RetryAllProgress(t.Context(), "", func(r admin.RetryReport) { seen = append(seen, r.Succeeded) })
	if err != nil || rep.Succeeded != n {
		t.Fatalf("report %d succeeded, %v; want %d", rep.Succeeded, err, n)
	}
	want := make([]int, n)
	for i := range want {
		want[i] = i + 1
	}
	if !slices.Equal(seen, want) {
		t.Errorf("progress after %d calls ended at %v, want one call per item (1 to %d)", len(seen), seen[max(0, len(seen)-3):], n)
	}
}

// A listing asks for at most MaxListLimit items (each holds its event).
func TestDeadLetterListRefusesAPageOverTheBound(t *testing.T) {
	t.Parallel()
	b := setupDLQ(t)
	var re *admin.RequestError
	if _, err := b.cmds.List(t.Context(), admin.DeadLetterQuery{Limit: admin.MaxListLimit + 1}); !errors.As(err, &re) || re.Key != "limit" {
		t.Errorf("List over the bound = %v, want a RequestError naming limit", err)
	}
	if _, err := b.cmds.List(t.Context(), admin.DeadLetterQuery{Limit: admin.MaxListLimit}); err != nil {
		t.Errorf("List at the bound: %v", err)
	}
}
