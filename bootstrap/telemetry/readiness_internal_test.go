package telemetry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observer/ports"
)

// /readyz's detail names the kind of a failure, never the error's text
// (which names users, hosts and ports); the log has the error, once per
// change of kind, and the recovery; a required dependency that fails makes
// the process not ready, an optional one does not; a check the prober gave
// up on is not logged.
func TestCheckDependencies(t *testing.T) {
	t.Parallel()
	secret := "failed to connect to `user=alice database=orders`: 10.1.2.3:5432 (db.internal): dial error"
	var dbErr, redisErr error
	deps := []Dependency{
		{Name: "database", Required: true, Ping: func(context.Context) error { return dbErr }},
		{Name: "redis", Suffix: ", failing open", Ping: func(context.Context) error { return redisErr }},
	}
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	var l readyLog
	check := func(ctx context.Context) (bool, map[string]string) {
		detail := map[string]string{}
		return checkDependencies(ctx, deps, &l, logger, detail), detail
	}

	if ok, detail := check(t.Context()); !ok || detail["database"] != "ok" || detail["redis"] != "ok" || logs.Len() != 0 {
		t.Fatalf("all answering: ok %v, detail %v, log %q", ok, detail, logs.String())
	}

	redisErr = fmt.Errorf("redis: ping 10.1.2.3:6379: %w: read tcp 10.9.9.9:41000->10.1.2.3:6379: connection reset", ports.ErrUnavailable)
	for i := range 3 {
		dbErr = fmt.Errorf("postgres: ping: %w: %s (attempt %d)", ports.ErrUnavailable, secret, i) // new text at each probe
		ok, detail := check(t.Context())
		if ok {
			t.Errorf("probe %d: ready with the database down", i)
		}
		if detail["database"] != "unreachable (the service log has the error)" ||
			detail["redis"] != "unreachable (the service log has the error), failing open" {
			t.Errorf("probe %d: detail %v", i, detail)
		}
		for k, v := range detail {
			for _, leak := range []string{"alice", "orders", "10.1.2.3", "db.internal", "5432", "6379"} {
				if strings.Contains(v, leak) {
					t.Errorf("probe %d: detail[%s] = %q names %q", i, k, v, leak)
				}
			}
		}
	}
	if n := strings.Count(logs.String(), "readiness check failed"); n != 2 || !strings.Contains(logs.String(), "user=alice") {
		t.Errorf("log after three failing probes (two dependencies):\n%s\nwant one line each, with the error", logs.String())
	}

	logs.Reset()
	dbErr = errors.New("postgres: ping: permission denied for database orders")
	if ok, detail := check(t.Context()); ok || detail["database"] != "failing (the service log has the error)" {
		t.Errorf("another kind of failure: ok %v, detail %v", ok, detail)
	}
	if n := strings.Count(logs.String(), "readiness check failed"); n != 1 {
		t.Errorf("a new kind of failure logged %d times, want once:\n%s", n, logs.String())
	}

	logs.Reset()
	dbErr = nil
	if ok, _ := check(t.Context()); !ok {
		t.Error("not ready with only the optional dependency down")
	}
	if n := strings.Count(logs.String(), "readiness check passes again"); n != 1 {
		t.Errorf("recovery logged %d times, want once:\n%s", n, logs.String())
	}

	logs.Reset()
	gone, cancel := context.WithCancel(t.Context())
	cancel()
	dbErr = context.Canceled
	if ok, _ := check(gone); ok {
		t.Error("ready although the database check failed")
	}
	if logs.Len() != 0 {
		t.Errorf("a check the prober gave up on was logged:\n%s", logs.String())
	}
}

// /readyz answers from the last check for readyCacheFor: a caller asking
// in a loop does not ping the dependencies per request; a caller whose
// request ends while another checks does not wait; a check cut short by
// its caller is not kept.
func TestReadyCache(t *testing.T) {
	t.Parallel()
	var c readyCache
	checks := 0
	check := func() (bool, map[string]string) {
		checks++
		return checks%2 == 1, map[string]string{"database": fmt.Sprint(checks)}
	}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(t time.Time) func() time.Time { return func() time.Time { return t } }
	for i := range 5 {
		ok, detail := c.get(t.Context(), at(t0.Add(time.Duration(i)*100*time.Millisecond)), check)
		if !ok || detail["database"] != "1" {
			t.Fatalf("probe %d within the second: %v %v, want the first check's answer", i, ok, detail)
		}
		detail["database"] = "changed by the caller"
	}
	if ok, detail := c.get(t.Context(), at(t0.Add(readyCacheFor)), check); ok || detail["database"] != "2" || checks != 2 {
		t.Fatalf("after %s: %v %v (%d checks), want a second check", readyCacheFor, ok, detail, checks)
	}

	held, release, third := make(chan struct{}), make(chan struct{}), make(chan struct{})
	go func() {
		defer close(third)
		c.get(t.Context(), at(t0.Add(2*readyCacheFor)), func() (bool, map[string]string) {
			close(held)
			<-release
			return check()
		})
	}()
	<-held
	waiting, stopWaiting := context.WithCancel(t.Context())
	answered := make(chan bool, 1)
	go func() { ok, _ := c.get(waiting, at(t0.Add(2*readyCacheFor)), check); answered <- ok }()
	stopWaiting()
	select {
	case ok := <-answered:
		if ok {
			t.Error("a caller that stopped waiting was told ready")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a caller whose request ended still waits for another's check")
	}
	close(release)
	<-third // the third check, kept

	cut, cutShort := context.WithCancel(t.Context())
	c.get(cut, at(t0.Add(3*readyCacheFor)), func() (bool, map[string]string) { cutShort(); return check() }) // the fourth, cut short
	if _, detail := c.get(t.Context(), at(t0.Add(3*readyCacheFor+time.Millisecond)), check); detail["database"] != "5" || checks != 5 {
		t.Fatalf("after a check cut short: %v (%d checks), want a fresh check (5)", detail, checks)
	}
}
