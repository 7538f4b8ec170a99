package integration

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observer/bootstrap/config"
)

// A transaction that commits late must not be skipped: while it is open,
// later transactions' events are held back; after it commits, both are
// delivered exactly once. Whether the reader is woken by NOTIFY or polls.
func TestLateCommitDeliversBothOnce(t *testing.T) {
	t.Parallel()
	for _, wake := range []string{config.WakeNotify, config.WakePoll} {
		t.Run("wake="+wake, func(t *testing.T) {
			t.Parallel()
			testLateCommitDeliversBothOnce(t, wake)
		})
	}
}

func testLateCommitDeliversBothOnce(t *testing.T, wake string) {
	b := setup(t)
	recv := newReceiver(t, nil)
	cfg := b.config(webhookObserver("all-orders", "Order", recv.URL(), nil))
	b.useWake(t, &cfg, wake)
	app := b.start(t, cfg)
	app.waitReading(t)
	ctx := t.Context()

	tx1, err := b.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx1.Rollback(ctx) }()
	early := insertTx(t, tx1, change{Entity: "Order", Kind: "INSERT", Data: `{"tx": 1}`})

	late := b.insert(t, change{Entity: "Order", Kind: "INSERT", Data: `{"tx": 2}`})[0]

	// tx1 is open: nothing after it may be delivered. A reader that went by
	// row order or commit time would deliver tx2's row now.
	time.Sleep(time.Second)
	if got := recv.all(); len(got) != 0 {
		t.Fatalf("delivered while an earlier transaction was open: %d receipts (first event %s)", len(got), got[0].Event.ID)
	}

	if err := tx1.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	recv.waitDelivered(t, []string{early, late})
	b.waitCheckpointAtEnd(t)
	time.Sleep(300 * time.Millisecond) // room for a duplicate to show up

	got := recv.deliveredByEvent()
	if len(got) != 2 || got[early] != 1 || got[late] != 1 {
		t.Fatalf("deliveries per event = %v, want exactly one each of %s and %s", got, early, late)
	}
	if n := len(recv.all()); n != 2 {
		t.Fatalf("receiver got %d requests, want 2", n)
	}
}

// A new App on the same database resumes from the checkpoint the stopped
// one saved: it delivers exactly the events written while no App ran.
func TestRestartResumesFromCheckpoint(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const n, m = 5, 4
	entity := newUUID() // one entity: events are delivered in log order

	first := newReceiver(t, nil)
	app1 := b.start(t, b.config(webhookObserver("orders", "Order", first.URL(), nil)))
	var before []string
	for i := range n {
		before = append(before, b.insert(t, change{Entity: "Order", Kind: "UPDATE", ID: entity, Data: `{"phase": "first", "i": ` + strconv.Itoa(i) + `}`})...)
	}
	first.waitDelivered(t, before)
	app1.stop(t)
	saved := b.checkpoint(t)
	if last := b.rows(t)[n-1].Pos; saved != last {
		t.Fatalf("checkpoint after a clean stop = %s, want the last delivered row %s", saved, last)
	}

	var after []string
	for i := range m {
		after = append(after, b.insert(t, change{Entity: "Order", Kind: "UPDATE", ID: entity, Data: `{"phase": "second", "i": ` + strconv.Itoa(i) + `}`})...)
	}

	second := newReceiver(t, nil)
	b.start(t, b.config(webhookObserver("orders", "Order", second.URL(), nil)))
	second.waitDelivered(t, after)
	b.waitCheckpointAtEnd(t)
	time.Sleep(300 * time.Millisecond)

	if got := first.deliveredByWebhookID(); len(got) != n {
		t.Errorf("first instance delivered %d webhook-ids, want %d: %v", len(got), n, got)
	}
	for id, c := range first.deliveredByWebhookID() {
		if c != 1 {
			t.Errorf("first instance delivered webhook-id %s %d times", id, c)
		}
	}
	got := second.deliveredByWebhookID()
	if len(got) != m {
		t.Errorf("second instance delivered %d webhook-ids, want exactly the %d new events: %v", len(got), m, got)
	}
	for id, c := range got {
		if c != 1 {
			t.Errorf("second instance delivered webhook-id %s %d times", id, c)
		}
	}
	byEvent := second.deliveredByEvent()
	for _, id := range before {
		if byEvent[id] != 0 {
			t.Errorf("event %s, finished before the restart, delivered again", id)
		}
	}
}

// A receiver that fails twice with 503 gets the event on the third
// attempt; nothing is dead-lettered.
func TestTransientFailureRecovers(t *testing.T) {
	t.Parallel()
	b := setup(t)
	recv := newReceiver(t, func(rc receipt) int {
		if rc.Attempt <= 2 {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	app := b.start(t, b.config(webhookObserver("orders", "Order", recv.URL(),
		retryPolicy(5, 20*time.Millisecond, 200*time.Millisecond, "exponential"))))
	id := b.insert(t, change{Entity: "Order", Kind: "INSERT", Data: `{"total": 10}`})[0]

	recv.waitDelivered(t, []string{id})
	b.waitCheckpointAtEnd(t)

	all := recv.all()
	if len(all) != 3 {
		t.Fatalf("receiver got %d requests, want 3 (503, 503, 200)", len(all))
	}
	for i, rc := range all {
		if rc.WebhookID != all[0].WebhookID || rc.Event.ID != id {
			t.Errorf("request %d: webhook-id %s event %s, want the same delivery %s of %s", i+1, rc.WebhookID, rc.Event.ID, all[0].WebhookID, id)
		}
	}
	if dl := b.deadLetters(t); len(dl) != 0 {
		t.Fatalf("dead letters = %+v, want none", dl)
	}
	if got := app.metric(t, `fraiseql_observer_retries_scheduled_total{action_type="webhook"}`); got != 2 {
		t.Errorf("retries_scheduled_total = %v, want 2", got)
	}
	if got := app.metric(t, `fraiseql_observer_events_processed_total{outcome="ok"}`); got != 1 {
		t.Errorf(`events_processed_total{outcome="ok"} = %v, want 1`, got)
	}
}

// A 400 is permanent: the action is dead-lettered at once, exactly once,
// with the error text and one attempt.
func TestPermanentFailureDeadLettersOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	recv := newReceiver(t, func(receipt) int { return http.StatusBadRequest })
	orders := webhookObserver("orders", "Order", recv.URL(), retryPolicy(5, 20*time.Millisecond, 200*time.Millisecond, "fixed"))
	action := actionIdentity(t, orders, 0)
	b.start(t, b.config(orders))
	id := b.insert(t, change{Entity: "Order", Kind: "INSERT", Data: `{"total": 10}`})[0]
	after := b.insert(t, change{Entity: "Order", Kind: "INSERT", Data: `{"total": 11}`})[0]

	waitFor(t, "two dead letters", func() bool { return len(b.deadLetters(t)) >= 2 })
	b.waitCheckpointAtEnd(t)
	time.Sleep(300 * time.Millisecond)

	dls := b.deadLetters(t)
	if len(dls) != 2 {
		t.Fatalf("dead letters = %+v, want one per event", dls)
	}
	byEvent := map[string]deadLetter{}
	for _, d := range dls {
		byEvent[d.EventID] = d
	}
	for i, want := range []string{id, after} { // different entities: any order
		d, ok := byEvent[want]
		if !ok || d.Observer != "orders" || d.Action != action {
			t.Errorf("dead letter for event %s = %+v, want one of orders/%s", want, d, action)
		}
		if d.Attempts != 1 {
			t.Errorf("dead letter %d attempts = %d, want 1", i, d.Attempts)
		}
		if !strings.Contains(d.Error, "status 400") {
			t.Errorf("dead letter %d error = %q, want it to name status 400", i, d.Error)
		}
	}
	if n := len(recv.all()); n != 2 {
		t.Errorf("receiver got %d requests, want 2 (one per event, no retry)", n)
	}
}

// While one entity's event waits for retries, other entities keep
// flowing; that entity's later events wait until the failing one is
// finished (here: dead-lettered).
func TestFailingEntityHoldsBackOnlyItself(t *testing.T) {
	t.Parallel()
	b := setup(t)
	entityA := newUUID()
	others := make([]string, 25) // entities B..Z
	for i := range others {
		others[i] = newUUID()
	}

	// A's first event (marked "fail") fails with 503 while B..Z are not all
	// delivered, and with 400 (permanent) once they are, after at least two
	// attempts. If a retrying event held back the whole stream, B..Z would
	// never arrive and the wait below would time out.
	othersIn := map[string]bool{} // guarded by the receiver's lock
	recv := newReceiver(t, func(rc receipt) int {
		if rc.Event.EntityID != entityA {
			othersIn[rc.Event.EntityID] = true
		}
		if rc.Event.Data["fail"] != true {
			return http.StatusNoContent
		}
		if len(othersIn) == len(others) && rc.Attempt >= 2 {
			return http.StatusBadRequest
		}
		return http.StatusServiceUnavailable
	})
	b.start(t, b.config(webhookObserver("orders", "Order", recv.URL(),
		retryPolicy(100, 250*time.Millisecond, 250*time.Millisecond, "fixed"))))

	ids := b.insert(t,
		change{Entity: "Order", Kind: "UPDATE", ID: entityA, Data: `{"a": 1, "fail": true}`},
		change{Entity: "Order", Kind: "UPDATE", ID: entityA, Data: `{"a": 2}`})
	waitFor(t, "A's first event failed once (retry pending)", func() bool { return len(recv.all()) >= 1 })

	var otherIDs []string
	for _, e := range others {
		otherIDs = append(otherIDs, b.insert(t, change{Entity: "Order", Kind: "UPDATE", ID: e, Data: `{"b": 1}`})...)
	}
	lastA := b.insert(t, change{Entity: "Order", Kind: "UPDATE", ID: entityA, Data: `{"a": 3}`})[0]

	recv.waitDelivered(t, append(append([]string{}, otherIDs...), ids[1], lastA))
	b.waitCheckpointAtEnd(t)

	all := recv.all()
	var finalA receipt // the answer that finished A's first event
	aAttempts := 0
	for _, rc := range all {
		if rc.Event.ID == ids[0] {
			aAttempts++
			finalA = rc
		}
	}
	if finalA.Status != http.StatusBadRequest {
		t.Fatalf("A's first event ended with %d after %d attempts, want 400 once B..Z were in", finalA.Status, aAttempts)
	}
	seqOf := map[string]int{}
	for _, rc := range recv.delivered() {
		seqOf[rc.Event.ID] = rc.Seq
	}
	if seqOf[ids[1]] < finalA.Seq || seqOf[lastA] < finalA.Seq {
		t.Errorf("A's later events (answers %d, %d) delivered before A's failing event finished (answer %d)", seqOf[ids[1]], seqOf[lastA], finalA.Seq)
	}
	if seqOf[lastA] < seqOf[ids[1]] {
		t.Errorf("A's events out of order: %s (answer %d) before %s (answer %d)", lastA, seqOf[lastA], ids[1], seqOf[ids[1]])
	}

	dls := b.deadLetters(t)
	if len(dls) != 1 || dls[0].EventID != ids[0] || dls[0].Attempts != aAttempts || !strings.Contains(dls[0].Error, "status 400") {
		t.Fatalf("dead letters = %+v, want one for %s with %d attempts and status 400", dls, ids[0], aAttempts)
	}
	if n := recv.deliveredByEvent(); n[ids[1]] != 1 || n[lastA] != 1 {
		t.Errorf("A's later events delivered %d and %d times, want once each", n[ids[1]], n[lastA])
	}
}

// Rows that cannot become events are dead-lettered with the reason; the
// stream goes on.
func TestInvalidRowsAreDeadLettered(t *testing.T) {
	t.Parallel()
	b := setup(t)
	recv := newReceiver(t, nil)
	b.start(t, b.config(webhookObserver("orders", "*", recv.URL(), nil)))

	ids := b.insert(t,
		change{Entity: "Order", Kind: "BOGUS", Data: `{"x": 1}`},
		change{Entity: "Order", Kind: "INSERT", Data: `[1,2]`},
		change{Entity: "Order", Kind: "INSERT", Data: `{"valid": true}`},
	)
	recv.waitDelivered(t, ids[2:])
	b.waitCheckpointAtEnd(t)

	dls := b.deadLetters(t)
	if len(dls) != 2 {
		t.Fatalf("dead letters = %+v, want two", dls)
	}
	cases := []struct {
		eventID string
		reason  []string
	}{
		{ids[0], []string{"modification type", "BOGUS"}},
		{ids[1], []string{"object_data", "not a JSON object"}},
	}
	byEvent := map[string]deadLetter{}
	for _, d := range dls {
		byEvent[d.EventID] = d
	}
	for i, c := range cases { // different entities: any order
		d, ok := byEvent[c.eventID]
		if !ok {
			t.Errorf("no dead letter for event %s (row %d)", c.eventID, i+1)
			continue
		}
		for _, want := range c.reason {
			if !strings.Contains(d.Error, want) {
				t.Errorf("dead letter %d error = %q, want it to contain %q", i, d.Error, want)
			}
		}
		if d.Observer != "" || d.Action != "" || len(d.Raw) == 0 {
			t.Errorf("dead letter %d: observer %q action %q raw %d bytes, want an input dead letter with the raw row", i, d.Observer, d.Action, len(d.Raw))
		}
	}
	if got := recv.deliveredByEvent(); len(got) != 1 || got[ids[2]] != 1 {
		t.Errorf("deliveries = %v, want only the valid row once", got)
	}
}

// Cancelling Run while deliveries are in flight lets them complete, saves
// a checkpoint covering exactly the finished prefix, and a restart
// delivers the rest.
func TestGracefulShutdownLosesNothing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	slow := newReceiver(t, nil)
	slow.delay = 500 * time.Millisecond
	cfg := b.config(webhookObserver("orders", "Order", slow.URL(), nil))
	cfg.Performance.MaxConcurrentActions = 2
	app := b.start(t, cfg)

	ids := b.insert(t, orders(10)...)
	waitFor(t, "two deliveries done and more in flight", func() bool {
		return len(slow.delivered()) >= 2 && slow.inFlight() >= 1
	})
	inFlight := slow.inFlight()
	app.stop(t)

	if n := slow.inFlight(); n != 0 {
		t.Fatalf("%d deliveries still in flight after Run returned", n)
	}
	var done []string
	for _, rc := range slow.all() {
		if rc.Status == 0 {
			t.Errorf("delivery of %s was cut off by the shutdown", rc.Event.ID)
		}
		done = append(done, rc.Event.ID)
	}
	if len(done) >= len(ids) {
		t.Fatalf("all %d events delivered before the shutdown; the test needs some left", len(ids))
	}
	t.Logf("at cancel: %d in flight; delivered before Run returned: %d of %d", inFlight, len(done), len(ids))

	// The checkpoint is the end of the longest prefix, in log order, of
	// finished events.
	rows := b.rows(t)
	var want position
	prefix := map[string]bool{}
	for _, r := range rows {
		if !slices.Contains(done, r.EventID) {
			break
		}
		want = r.Pos
		prefix[r.EventID] = true
	}
	if got := b.checkpoint(t); got != want {
		t.Fatalf("checkpoint after shutdown = %s, want %s (end of the finished prefix)", got, want)
	}

	fast := newReceiver(t, nil)
	b.start(t, b.config(webhookObserver("orders", "Order", fast.URL(), nil)))
	var rest []string
	for _, id := range ids {
		if !slices.Contains(done, id) {
			rest = append(rest, id)
		}
	}
	fast.waitDelivered(t, rest)
	b.waitCheckpointAtEnd(t)
	for id := range fast.deliveredByEvent() {
		if prefix[id] {
			t.Errorf("event %s, covered by the checkpoint, delivered again after the restart", id)
		}
	}
}
