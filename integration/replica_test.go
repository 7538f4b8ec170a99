package integration

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observer/bootstrap"
	"github.com/fraiseql/fraiseql-observer/bootstrap/config"
	"github.com/fraiseql/fraiseql-observer/internal/testsupport"
)

// While the database does not answer, bootstrap.New keeps retrying and
// says so; cancelling its context makes it return an error.
func TestDatabaseUnreachableAtStart(t *testing.T) {
	t.Parallel()
	logs := &logBuffer{}
	cfg := config.Defaults()
	cfg.Database.URL = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/nowhere?sslmode=disable", testsupport.FreePort(t))
	cfg.Database.MigrateOnStart = true
	cfg.HTTP.Listen = "127.0.0.1:0"
	logger := slog.New(slog.NewJSONHandler(logs, nil))

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	type result struct {
		app *bootstrap.App
		err error
	}
	done := make(chan result, 1)
	go func() {
		app, err := bootstrap.New(ctx, cfg, bootstrap.Options{Logger: logger, LookupEnv: noEnv})
		done <- result{app, err}
	}()

	waitFor(t, `two "database unreachable, retrying" logs`, func() bool {
		select {
		case r := <-done:
			t.Fatalf("bootstrap.New returned before cancellation: app %v, err %v", r.app != nil, r.err)
		default:
		}
		return logs.count("database unreachable, retrying") >= 2
	})
	cancel()
	select {
	case r := <-done:
		if r.err == nil {
			r.app.Close()
			t.Fatal("bootstrap.New returned no error after its context was cancelled")
		}
		if r.app != nil {
			t.Errorf("bootstrap.New returned an App with the error %v", r.err)
		}
		if !strings.Contains(r.err.Error(), "unreachable") {
			t.Errorf("error = %q, want it to say the database is unreachable", r.err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("bootstrap.New did not return after its context was cancelled")
	}
	for _, rec := range logs.records("database unreachable, retrying") {
		if db, _ := rec["database"].(string); !strings.Contains(db, "127.0.0.1") {
			t.Errorf("log record %v does not name the database", rec)
		}
	}
}

// Two replicas on one database: one reads at a time (each event is
// delivered once), and when it stops the other takes over within the
// lease TTL and goes on from the checkpoint.
func TestTwoReplicasShareTheWorkThroughTheLease(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r1, r2 := newReceiver(t, nil), newReceiver(t, nil)
	cfg1 := b.config(webhookObserver("orders", "Order", r1.URL(), nil))
	cfg2 := b.config(webhookObserver("orders", "Order", r2.URL(), nil))

	app1 := b.start(t, cfg1)
	app1.waitReading(t)
	app2 := b.start(t, cfg2)
	waitFor(t, "second replica standing by", func() bool { return b.logs.count("lease held by another replica, standing by") >= 1 })

	first := b.insert(t, orders(20)...)
	r1.waitDelivered(t, first)
	b.waitCheckpointAtEnd(t)
	time.Sleep(300 * time.Millisecond)
	if app2.reading(t) {
		t.Fatal("both replicas report an active reader")
	}
	if n := len(r2.all()); n != 0 {
		t.Fatalf("the standby replica delivered %d requests while the other held the lease", n)
	}
	for id, n := range r1.deliveredByWebhookID() {
		if n != 1 {
			t.Errorf("webhook-id %s delivered %d times", id, n)
		}
	}

	// Both apps log "lease acquired" to b.logs for every lease they take
	// (other jobs' too, e.g. the retention job's), so only the reader's lease
	// is counted: app1 has taken it once.
	readerLease := "reader:" + cfg2.Reader.Name
	readerAcquired := func() int {
		n := 0
		for _, rec := range b.logs.records("lease acquired") {
			if rec["lease"] == readerLease {
				n++
			}
		}
		return n
	}
	if n := readerAcquired(); n != 1 {
		t.Fatalf(`%d "lease acquired" records for %q before the takeover, want 1 (the first replica's)`, n, readerLease)
	}
	app1.stop(t)
	stopped := time.Now()
	// The lease's promise: the standby acquires it within the TTL. How
	// long the reader then takes to load its checkpoint and start depends
	// on the machine's load, so it is waited for without a bound here.
	waitFor(t, "standby replica acquires the reader's lease", func() bool { return readerAcquired() >= 2 })
	if took := time.Since(stopped); took > cfg2.Reader.LeaseTTL {
		t.Errorf("takeover took %s, longer than the lease TTL %s", took, cfg2.Reader.LeaseTTL)
	}
	waitFor(t, "standby replica takes over", func() bool { return app2.reading(t) })

	second := b.insert(t, orders(10)...)
	r2.waitDelivered(t, second)
	b.waitCheckpointAtEnd(t)
	time.Sleep(300 * time.Millisecond)
	got := r2.deliveredByWebhookID()
	if len(got) != len(second) {
		t.Errorf("the new active replica delivered %d webhook-ids, want exactly the %d new events", len(got), len(second))
	}
	for id, n := range got {
		if n != 1 {
			t.Errorf("webhook-id %s delivered %d times", id, n)
		}
	}
	if n := len(r1.all()); n != len(first) {
		t.Errorf("the stopped replica's receiver has %d requests, want %d", n, len(first))
	}
}
