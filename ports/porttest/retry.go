package porttest

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// RetryStores is one isolated retry store and the dead-letter store its
// settlements write to.
type RetryStores struct {
	Retries     ports.RetryStore
	Counter     ports.RetryCounter
	DeadLetters ports.DeadLetterStore
}

// retryEpoch is the suite's clock: times are the caller's, whole
// microseconds (what PostgreSQL keeps).
var retryEpoch = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

func at(d time.Duration) time.Time { return retryEpoch.Add(d) }

// RunRetryStore checks the ports.RetryStore and ports.RetryCounter
// contracts. newStores must return empty, isolated stores on every call.
func RunRetryStore(t *testing.T, newStores func(t *testing.T) RetryStores) {
	t.Helper()

	t.Run("ParkKeepsOrderPerObserverAndEntity", func(t *testing.T) {
		t.Parallel()
		s := newStores(t).Retries
		a1 := mustPark(t, s, retryItem(1, "obs", "Order:1", "https://a:443", time.Minute))
		a2 := mustPark(t, s, retryItem(2, "obs", "Order:1", "https://a:443", 0))
		b1 := mustPark(t, s, retryItem(3, "obs", "Order:2", "https://a:443", 0))
		other := mustPark(t, s, retryItem(4, "other", "Order:1", "https://a:443", 0))
		sameEventOther := retryItem(1, "third", "Order:1", "https://a:443", 0)
		third := mustPark(t, s, sameEventOther)
		for _, c := range []struct {
			name string
			it   ports.RetryItem
			want ports.RetryState
		}{{"first of its key", a1, ports.RetryDue}, {"second of its key", a2, ports.RetryWaiting},
			{"other entity", b1, ports.RetryDue}, {"other observer", other, ports.RetryDue}, {"same event, other observer", third, ports.RetryDue}} {
			if c.it.State != c.want {
				t.Errorf("%s: state %q, want %q", c.name, c.it.State, c.want)
			}
			if c.it.ID == 0 || c.it.CreatedAt.IsZero() {
				t.Errorf("%s: ID %d, CreatedAt %v: not assigned", c.name, c.it.ID, c.it.CreatedAt)
			}
		}
		if a2.ID <= a1.ID {
			t.Errorf("IDs do not grow: %d then %d", a1.ID, a2.ID)
		}
		if !a1.Due.Equal(at(time.Minute)) {
			t.Errorf("Due = %v, want the earliest action due %v", a1.Due, at(time.Minute))
		}
	})

	t.Run("ParkIsIdempotentPerEventAndObserver", func(t *testing.T) {
		t.Parallel()
		st := newStores(t)
		s := st.Retries
		first := mustPark(t, s, retryItem(1, "obs", "Order:1", "https://a:443", 0))
		again := retryItem(1, "obs", "Order:1", "https://b:443", time.Hour)
		got, created, err := s.Park(t.Context(), again)
		if err != nil || created {
			t.Fatalf("Park again = created %v, %v; want the stored item, not created", created, err)
		}
		if got.ID != first.ID || got.State != ports.RetryDue || !slices.Equal(got.Endpoints, first.Endpoints) {
			t.Fatalf("parking the same event and observer again = %+v, want the stored item %+v", got, first)
		}
		c := mustCounts(t, st.Counter)
		if c.Due != 1 || c.Waiting != 0 {
			t.Fatalf("counts after a repeated Park = %+v, want one item", c)
		}
	})

	t.Run("RoundTripsEveryField", func(t *testing.T) {
		t.Parallel()
		s := newStores(t).Retries
		give := retryItem(7, "order-shipped", "", "https://hooks.example.com:443", 0)
		give.Event = sampleEvent(7, domain.EventUpdate)
		give.Event.Source = "db-main"
		give.EntityKey = give.Event.EntityKey() // holds NUL bytes
		give.Actions = append(give.Actions, ports.RetryAction{
			Action: "slack-0badf00d", ActionType: domain.ActionSlack, Endpoint: "https://hooks.slack.com:443",
			Attempts: 0, Due: at(2 * time.Second),
		}, ports.RetryAction{
			Action: "log-12345678", ActionType: domain.ActionLog, Endpoint: "log:order-shipped/log-12345678",
			Attempts: 3, LastError: "transient: Zoë \"quoted\" <tag> & ünïcode", FirstFailure: at(-time.Hour), Due: at(time.Hour),
		})
		stored := mustPark(t, s, give)
		wantEndpoints := []string{"https://hooks.example.com:443", "https://hooks.slack.com:443", "log:order-shipped/log-12345678"}
		if !sameStrings(stored.Endpoints, wantEndpoints) {
			t.Errorf("Endpoints = %v, want %v", stored.Endpoints, wantEndpoints)
		}
		got := claimOne(t, s, "h", at(time.Hour))
		if got.ID != stored.ID || got.Observer != give.Observer || got.EntityKey != give.EntityKey || got.State != ports.RetryDue {
			t.Fatalf("claimed %+v, want item %d of %s/%s", got, stored.ID, give.Observer, give.EntityKey)
		}
		if keys := mustKeys(t, s); len(keys) != 1 || keys[0].EntityKey != give.EntityKey {
			t.Errorf("Keys = %+v, want the entity key %q as parked", keys, give.EntityKey)
		}
		if d := diffEvent(give.Event, got.Event); d != "" {
			t.Errorf("Event: %s", d)
		}
		if d := diffActions(give.Actions, got.Actions); d != "" {
			t.Errorf("Actions: %s", d)
		}
		if !sameStrings(got.Endpoints, wantEndpoints) || !got.Due.Equal(at(0)) {
			t.Errorf("claimed Endpoints %v Due %v, want %v and %v", got.Endpoints, got.Due, wantEndpoints, at(0))
		}
	})

	t.Run("ClaimDueTakesDueHeadsOnce", func(t *testing.T) {
		t.Parallel()
		s := newStores(t).Retries
		now := at(0)
		early := mustPark(t, s, retryItem(1, "obs", "Order:1", "e", -2*time.Second))
		waiting := mustPark(t, s, retryItem(2, "obs", "Order:1", "e", -3*time.Second))
		later := mustPark(t, s, retryItem(3, "obs", "Order:2", "e", -time.Second))
		future := mustPark(t, s, retryItem(4, "obs", "Order:3", "e", time.Second))
		if waiting.State != ports.RetryWaiting {
			t.Fatalf("second item of a key is %q", waiting.State)
		}
		got := mustClaim(t, s, ports.RetryClaim{Holder: "a", Now: now, TTL: time.Minute}, 10, nil)
		if want := []int64{early.ID, later.ID}; !slices.Equal(itemIDs(got), want) {
			t.Fatalf("ClaimDue = %v, want the due heads earliest first %v (not waiting %d, not future %d)", itemIDs(got), want, waiting.ID, future.ID)
		}
		if again := mustClaim(t, s, ports.RetryClaim{Holder: "b", Now: now.Add(59 * time.Second), TTL: time.Minute}, 10, nil); len(again) != 1 || again[0].ID != future.ID {
			t.Fatalf("claim by b within a's claim = %v, want only the now-due item %d", itemIDs(again), future.ID)
		}
		expired := mustClaim(t, s, ports.RetryClaim{Holder: "b", Now: now.Add(61 * time.Second), TTL: time.Minute}, 1, nil)
		if len(expired) != 1 || expired[0].ID != early.ID {
			t.Fatalf("claim after a's claim expired (limit 1) = %v, want %d", itemIDs(expired), early.ID)
		}
		if err := s.Reschedule(t.Context(), early.ID, "a", early.Actions, nil); !errors.Is(err, ports.ErrClaimLost) {
			t.Fatalf("Reschedule by a after b took the item: %v, want ports.ErrClaimLost", err)
		}
		if _, _, err := s.Complete(t.Context(), early, ports.RetryClaim{Holder: "a", Now: now, TTL: time.Minute}, nil); !errors.Is(err, ports.ErrClaimLost) {
			t.Fatalf("Complete by a after b took the item: %v, want ports.ErrClaimLost", err)
		}
		if _, err := s.ClaimDue(t.Context(), ports.RetryClaim{Holder: "a", Now: now, TTL: time.Minute}, 0, nil); err == nil {
			t.Error("ClaimDue with limit 0 succeeded")
		}
	})

	t.Run("ClaimDueSkipsItemsWhoseEveryEndpointIsSkipped", func(t *testing.T) {
		t.Parallel()
		s := newStores(t).Retries
		down := mustPark(t, s, retryItem(1, "obs", "Order:1", "https://down:443", 0))
		up := mustPark(t, s, retryItem(2, "obs", "Order:2", "https://up:443", 0))
		mixed := retryItem(3, "obs", "Order:3", "https://down:443", 0)
		mixed.Actions = append(mixed.Actions, ports.RetryAction{Action: "webhook-2", ActionType: domain.ActionWebhook, Endpoint: "https://up:443", Due: at(0)})
		mixedItem := mustPark(t, s, mixed)
		got := mustClaim(t, s, ports.RetryClaim{Holder: "a", Now: at(0), TTL: time.Minute}, 10, []string{"https://down:443", "https://other:443"})
		if want := []int64{up.ID, mixedItem.ID}; !sameIDs(itemIDs(got), want) {
			t.Fatalf("ClaimDue skipping https://down:443 = %v, want %v (not %d)", itemIDs(got), want, down.ID)
		}
	})

	t.Run("ReleaseDropsOnlyTheHoldersClaims", func(t *testing.T) {
		t.Parallel()
		s := newStores(t).Retries
		first := mustPark(t, s, retryItem(1, "obs", "Order:1", "e", 0))
		second := mustPark(t, s, retryItem(2, "obs", "Order:2", "e", 0))
		third := mustPark(t, s, retryItem(3, "obs", "Order:3", "e", 0))
		lost := mustClaim(t, s, ports.RetryClaim{Holder: "p/1", Now: at(0), TTL: time.Hour}, 2, nil)
		kept := claimOne(t, s, "p/2", at(0))
		if want := []int64{first.ID, second.ID}; !slices.Equal(itemIDs(lost), want) || kept.ID != third.ID {
			t.Fatalf("claims = %v and %d, want %v and %d", itemIDs(lost), kept.ID, want, third.ID)
		}
		n, err := s.Release(t.Context(), "p/1")
		if err != nil || n != 2 {
			t.Fatalf("Release(p/1) = %d, %v; want 2, nil", n, err)
		}
		// Within the hour p/1's claims would have lasted, another holder
		// takes them at once, unchanged; p/2's claim stays.
		again := mustClaim(t, s, ports.RetryClaim{Holder: "q", Now: at(time.Second), TTL: time.Minute}, 10, nil)
		if want := []int64{first.ID, second.ID}; !slices.Equal(itemIDs(again), want) {
			t.Fatalf("claim after Release(p/1) = %v, want %v (not p/2's %d)", itemIDs(again), want, kept.ID)
		}
		if d := diffActions(first.Actions, again[0].Actions); d != "" {
			t.Errorf("released item changed: %s", d)
		}
		if err := s.Reschedule(t.Context(), kept.ID, "p/2", kept.Actions, nil); err != nil {
			t.Errorf("Reschedule by p/2 after Release(p/1): %v", err)
		}
		if n, err := s.Release(t.Context(), "p/1"); err != nil || n != 0 {
			t.Errorf("second Release(p/1) = %d, %v; want 0, nil", n, err)
		}
		if _, err := s.Release(t.Context(), ""); err == nil {
			t.Error("Release of the empty holder succeeded")
		}
	})

	t.Run("RenewExtendsOnlyTheHoldersClaims", func(t *testing.T) {
		t.Parallel()
		s := newStores(t).Retries
		mustPark(t, s, retryItem(1, "obs", "Order:1", "e", 0))
		mustPark(t, s, retryItem(2, "obs", "Order:2", "e", 0))
		held := mustClaim(t, s, ports.RetryClaim{Holder: "p/1", Now: at(0), TTL: time.Minute}, 1, nil) // a minute's claim
		if len(held) != 1 {
			t.Fatalf("claim = %v, want one item", itemIDs(held))
		}
		renewed := held[0]
		if n, err := s.Renew(t.Context(), "p/1", at(time.Hour)); err != nil || n != 1 {
			t.Fatalf("Renew(p/1) = %d, %v; want 1, nil", n, err)
		}
		// Past the minute the claim would have lasted, the renewed item is
		// still held; the other is claimable.
		got := mustClaim(t, s, ports.RetryClaim{Holder: "q", Now: at(2 * time.Minute), TTL: time.Minute}, 10, nil)
		if len(got) != 1 || got[0].ID == renewed.ID {
			t.Fatalf("claim past the first minute = %v, want only the item p/1 does not hold (not %d)", itemIDs(got), renewed.ID)
		}
		if n, err := s.Renew(t.Context(), "nobody", at(time.Hour)); err != nil || n != 0 {
			t.Errorf("Renew of a holder with no claim = %d, %v; want 0, nil", n, err)
		}
		if _, err := s.Renew(t.Context(), "", at(time.Hour)); err == nil {
			t.Error("Renew of the empty holder succeeded")
		}
		// Renewed past its end, the item is claimable again.
		got = mustClaim(t, s, ports.RetryClaim{Holder: "r", Now: at(2 * time.Hour), TTL: time.Minute}, 10, nil)
		if !slices.Contains(itemIDs(got), renewed.ID) {
			t.Errorf("claim after the renewed claim ended = %v, want %d among them", itemIDs(got), renewed.ID)
		}
	})

	t.Run("CompleteClaimsTheNextItemForNext", func(t *testing.T) {
		t.Parallel()
		s := newStores(t).Retries
		first := mustPark(t, s, retryItem(1, "obs", "Order:1", "e", 0))
		second := mustPark(t, s, retryItem(2, "obs", "Order:1", "e", 0))
		cur := claimOne(t, s, "p/1", at(0))
		next, claimed, err := s.Complete(t.Context(), cur, ports.RetryClaim{Holder: "p/1", Next: "p/2", Now: at(0), TTL: time.Hour}, nil)
		if err != nil || !claimed || next.ID != second.ID {
			t.Fatalf("Complete(%d) with Next = %d, %v, %v; want %d claimed", first.ID, next.ID, claimed, err, second.ID)
		}
		if err := s.Reschedule(t.Context(), next.ID, "p/1", next.Actions, nil); !errors.Is(err, ports.ErrClaimLost) {
			t.Fatalf("Reschedule of the next item by Holder = %v, want ports.ErrClaimLost: it is Next's", err)
		}
		if n, err := s.Release(t.Context(), "p/2"); err != nil || n != 1 {
			t.Fatalf("Release(p/2) = %d, %v; want the next item's claim", n, err)
		}
		if got := claimOne(t, s, "q", at(time.Second)); got.ID != second.ID {
			t.Fatalf("claim after Release(p/2) = %d, want %d", got.ID, second.ID)
		}
	})

	t.Run("ConcurrentClaimsNeverShareAnItem", func(t *testing.T) {
		t.Parallel()
		s := newStores(t).Retries
		const n = 60
		for i := range n {
			mustPark(t, s, retryItem(i, "obs", fmt.Sprintf("Order:%d", i), "e", 0))
		}
		var mu sync.Mutex
		seen := map[int64]string{}
		var wg sync.WaitGroup
		for w := range 6 {
			holder := fmt.Sprintf("w%d", w)
			wg.Go(func() {
				for {
					got, err := s.ClaimDue(t.Context(), ports.RetryClaim{Holder: holder, Now: at(0), TTL: time.Minute}, 4, nil)
					if err != nil {
						t.Errorf("ClaimDue: %v", err)
						return
					}
					if len(got) == 0 {
						return
					}
					mu.Lock()
					for _, it := range got {
						if prev, dup := seen[it.ID]; dup {
							t.Errorf("item %d claimed by %s and %s", it.ID, prev, holder)
						}
						seen[it.ID] = holder
					}
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if len(seen) != n {
			t.Fatalf("%d items claimed, want %d", len(seen), n)
		}
	})

	t.Run("RescheduleReplacesActionsAndReleases", func(t *testing.T) {
		t.Parallel()
		st := newStores(t)
		s := st.Retries
		mustPark(t, s, retryItem(1, "obs", "Order:1", "https://a:443", 0))
		it := claimOne(t, s, "h", at(0))
		acts := slices.Clone(it.Actions)
		acts[0].Attempts, acts[0].LastError, acts[0].FirstFailure, acts[0].Due = 5, "transient: 503", at(-time.Minute), at(time.Hour)
		acts = append(acts, ports.RetryAction{Action: "slack-1", ActionType: domain.ActionSlack, Endpoint: "https://b:443", Due: at(30 * time.Minute)})
		dead := sampleDeadLetter(1, "obs")
		if err := s.Reschedule(t.Context(), it.ID, "h", acts, []ports.DeadLetter{dead}); err != nil {
			t.Fatalf("Reschedule: %v", err)
		}
		if got := mustClaim(t, s, ports.RetryClaim{Holder: "h2", Now: at(29 * time.Minute), TTL: time.Minute}, 10, nil); len(got) != 0 {
			t.Fatalf("claimed %v before the new due time", itemIDs(got))
		}
		got := claimOne(t, s, "h2", at(30*time.Minute))
		if d := diffActions(acts, got.Actions); d != "" {
			t.Errorf("Actions after Reschedule: %s", d)
		}
		if !sameStrings(got.Endpoints, []string{"https://a:443", "https://b:443"}) || !got.Due.Equal(at(30*time.Minute)) {
			t.Errorf("Endpoints %v Due %v after Reschedule", got.Endpoints, got.Due)
		}
		dls := mustList(t, st.DeadLetters, ports.DeadLetterFilter{})
		if len(dls) != 1 || diffDeadLetter(dead, dls[0]) != "" {
			t.Fatalf("dead letters after Reschedule = %+v, want %+v", dls, dead)
		}
		if err := s.Reschedule(t.Context(), it.ID+1000, "h2", acts, nil); !errors.Is(err, ports.ErrNotFound) {
			t.Errorf("Reschedule(unknown) = %v, want ports.ErrNotFound", err)
		}
	})

	t.Run("CompleteReleasesTheKeyInOrder", func(t *testing.T) {
		t.Parallel()
		st := newStores(t)
		s := st.Retries
		var items []ports.RetryItem
		for i := range 4 {
			items = append(items, mustPark(t, s, retryItem(i, "obs", "Order:1", "e", time.Duration(-i)*time.Second)))
		}
		c := ports.RetryClaim{Holder: "h", Now: at(0), TTL: time.Minute}
		cur := claimOne(t, s, "h", at(0))
		for i := range items {
			if cur.ID != items[i].ID || cur.Event.ID != items[i].Event.ID {
				t.Fatalf("step %d runs item %d (event %s), want %d in parking order", i, cur.ID, cur.Event.ID, items[i].ID)
			}
			var dead []ports.DeadLetter
			if i == 1 {
				dead = []ports.DeadLetter{sampleDeadLetter(i, "obs")}
			}
			next, ok, err := s.Complete(t.Context(), cur, c, dead)
			if err != nil {
				t.Fatalf("Complete(%d): %v", cur.ID, err)
			}
			if i == len(items)-1 {
				if ok || next.ID != 0 {
					t.Fatalf("Complete of the last item returned %d (claimed %v), want none: the key is empty", next.ID, ok)
				}
				break
			}
			if !ok || next.State != ports.RetryDue || next.ID != items[i+1].ID {
				t.Fatalf("Complete(%d) = %+v, %v; want the next item, due and claimed", cur.ID, next, ok)
			}
			if got := mustClaim(t, s, ports.RetryClaim{Holder: "other", Now: at(0), TTL: time.Minute}, 10, nil); len(got) != 0 {
				t.Fatalf("another holder claimed %v: the next item was not claimed for h", itemIDs(got))
			}
			cur = next
		}
		if keys := mustKeys(t, s); len(keys) != 0 {
			t.Errorf("Keys after completing everything = %v", keys)
		}
		if dls := mustList(t, st.DeadLetters, ports.DeadLetterFilter{}); len(dls) != 1 {
			t.Errorf("dead letters = %d, want the one stored by Complete", len(dls))
		}
		if _, _, err := s.Complete(t.Context(), cur, c, nil); !errors.Is(err, ports.ErrNotFound) {
			t.Errorf("Complete(completed) = %v, want ports.ErrNotFound", err)
		}
	})

	t.Run("CompletePromotesANotYetDueItemWithoutClaimingIt", func(t *testing.T) {
		t.Parallel()
		s := newStores(t).Retries
		mustPark(t, s, retryItem(1, "obs", "Order:1", "e", 0))
		second := mustPark(t, s, retryItem(2, "obs", "Order:1", "e", time.Hour))
		head := claimOne(t, s, "h", at(0))
		next, ok, err := s.Complete(t.Context(), head, ports.RetryClaim{Holder: "h", Now: at(0), TTL: time.Minute}, nil)
		if err != nil || ok || next.ID != second.ID || next.State != ports.RetryDue {
			t.Fatalf("Complete = %d (%s), claimed %v, %v; want item %d promoted but not claimed", next.ID, next.State, ok, err, second.ID)
		}
		got := claimOne(t, s, "other", at(time.Hour))
		if got.ID != second.ID || got.State != ports.RetryDue {
			t.Fatalf("claimed %+v, want the promoted item %d", got, second.ID)
		}
	})

	t.Run("ConcurrentParkAndCompleteNeverStrandAKey", func(t *testing.T) {
		t.Parallel()
		st := newStores(t)
		s := st.Retries
		const keys, rounds = 4, 15
		var wg sync.WaitGroup
		for k := range keys {
			key := fmt.Sprintf("Order:%d", k)
			wg.Go(func() { // the processor: parks the key's events in order
				for i := range rounds {
					if _, _, err := s.Park(t.Context(), retryItem(k*1000+i, "obs", key, "e", 0)); err != nil {
						t.Errorf("Park: %v", err)
						return
					}
				}
			})
		}
		completed := 0
		deadline := time.Now().Add(waitTimeout)
		for completed < keys*rounds && time.Now().Before(deadline) { // the runner: completes heads as they come
			got := mustClaim(t, s, ports.RetryClaim{Holder: "runner", Now: at(0), TTL: time.Minute}, 10, nil)
			for _, it := range got {
				for ok := true; ok; completed++ {
					var err error
					if it, ok, err = s.Complete(t.Context(), it, ports.RetryClaim{Holder: "runner", Now: at(0), TTL: time.Minute}, nil); err != nil {
						t.Fatalf("Complete: %v", err)
					}
				}
			}
		}
		wg.Wait()
		if completed != keys*rounds {
			t.Fatalf("completed %d of %d items: a key was stranded behind a waiting head (counts %+v)", completed, keys*rounds, mustCounts(t, st.Counter))
		}
	})

	t.Run("MakeDueWakesAnEndpoint", func(t *testing.T) {
		t.Parallel()
		s := newStores(t).Retries
		ep := "https://recovered:443"
		far := mustPark(t, s, retryItem(1, "obs", "Order:1", ep, 2*time.Hour))
		behind := mustPark(t, s, retryItem(2, "obs", "Order:1", ep, 2*time.Hour))
		other := mustPark(t, s, retryItem(3, "obs", "Order:2", "https://other:443", 2*time.Hour))
		mixed := retryItem(4, "obs", "Order:3", ep, 2*time.Hour)
		mixed.Actions = append(mixed.Actions, ports.RetryAction{Action: "webhook-2", ActionType: domain.ActionWebhook, Endpoint: "https://other:443", Due: at(3 * time.Hour)})
		mixedItem := mustPark(t, s, mixed)
		n, err := s.MakeDue(t.Context(), ep, at(time.Minute))
		if err != nil || n != 2 {
			t.Fatalf("MakeDue = %d, %v; want the 2 due items on the endpoint", n, err)
		}
		got := mustClaim(t, s, ports.RetryClaim{Holder: "h", Now: at(time.Minute), TTL: time.Minute}, 10, nil)
		if !sameIDs(itemIDs(got), []int64{far.ID, mixedItem.ID}) {
			t.Fatalf("due after MakeDue = %v, want %d and %d (not waiting %d, not other %d)", itemIDs(got), far.ID, mixedItem.ID, behind.ID, other.ID)
		}
		for _, it := range got {
			for _, a := range it.Actions {
				want := at(time.Minute)
				if a.Endpoint != ep {
					want = at(3 * time.Hour)
				}
				if !a.Due.Equal(want) {
					t.Errorf("item %d action %s on %s due %v, want %v", it.ID, a.Action, a.Endpoint, a.Due, want)
				}
				if a.Woken != (a.Endpoint == ep) {
					t.Errorf("item %d action %s on %s woken %v, want %v", it.ID, a.Action, a.Endpoint, a.Woken, a.Endpoint == ep)
				}
			}
		}
		// Woken once: failed again and rescheduled on its backoff, the
		// next recovery leaves it there (a payload the receiver refuses
		// on its own is not retried at every probe).
		for _, it := range got {
			again := slices.Clone(it.Actions)
			for i := range again {
				again[i].Attempts++
				again[i].Due = at(2 * time.Hour)
			}
			if err := s.Reschedule(t.Context(), it.ID, "h", again, nil); err != nil {
				t.Fatalf("Reschedule: %v", err)
			}
		}
		if n, err := s.MakeDue(t.Context(), ep, at(2*time.Minute)); err != nil || n != 0 {
			t.Errorf("second MakeDue = %d, %v; want 0 (every action on the endpoint was woken before)", n, err)
		}
		if got := mustClaim(t, s, ports.RetryClaim{Holder: "h2", Now: at(3 * time.Minute), TTL: time.Minute}, 10, nil); len(got) != 0 {
			t.Errorf("due after the second MakeDue = %v, want none", itemIDs(got))
		}
	})

	t.Run("KeysAndCounts", func(t *testing.T) {
		t.Parallel()
		st := newStores(t)
		s := st.Retries
		mustPark(t, s, retryItem(1, "a", "Order:1", "https://x:443", 0))
		mustPark(t, s, retryItem(2, "a", "Order:1", "https://x:443", 0))
		third := retryItem(3, "b", "Order:1", "https://y:443", 0)
		third.Actions[0].FirstFailure = at(-time.Hour)
		mustPark(t, s, third)
		keys := mustKeys(t, s)
		slices.SortFunc(keys, func(x, y ports.RetryKey) int { return cmp.Compare(x.Observer, y.Observer) })
		want := []ports.RetryKey{{Observer: "a", EntityKey: "Order:1", Items: 2}, {Observer: "b", EntityKey: "Order:1", Items: 1}}
		if !slices.Equal(keys, want) {
			t.Errorf("Keys = %v, want %v", keys, want)
		}
		stop := errors.New("enough")
		calls := 0
		if err := s.Keys(t.Context(), func(ports.RetryKey) error { calls++; return stop }); !errors.Is(err, stop) || calls != 1 {
			t.Errorf("Keys with fn failing at the first key: %d calls, error %v; want 1 call and fn's error", calls, err)
		}
		c := mustCounts(t, st.Counter)
		if c.Due != 2 || c.Waiting != 1 || c.ByObserver["a"] != 2 || c.ByObserver["b"] != 1 ||
			c.ByEndpoint["https://x:443"] != 2 || c.ByEndpoint["https://y:443"] != 1 || !c.OldestFailure.Equal(at(-time.Hour)) {
			t.Errorf("Counts = %+v", c)
		}
		if n, err := s.Repair(t.Context()); err != nil || n != 0 {
			t.Errorf("Repair of a sound store = %d, %v; want 0", n, err)
		}
	})
}
