package integration

import (
	"bytes"
	"fmt"
	"net/mail"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observer/bootstrap/config"
	"github.com/fraiseql/fraiseql-observer/internal/smtptest"
)

// TestEmailActionRetriesAndDeadLetters runs the email action end to end,
// change log to SMTP server: a 4xx answer is retried and the message then
// delivered once; a 5xx answer and a rendered address that is not one are
// dead-lettered at once, the error naming the reply or the field.
func TestEmailActionRetriesAndDeadLetters(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var mu sync.Mutex
	rcpts := map[string]int{}
	ts := smtptest.Start(t, smtptest.Config{Reply: func(cmd, arg string) error {
		if cmd != "RCPT" {
			return nil
		}
		mu.Lock()
		defer mu.Unlock()
		rcpts[arg]++
		switch {
		case arg == "busy@example.com" && rcpts[arg] == 1:
			return smtptest.Reply(451, "mailbox busy, try later")
		case arg == "gone@example.com":
			return smtptest.Reply(550, "no such user")
		}
		return nil
	}})
	cfg := b.config(config.ObserverConfig{
		Name: "notify", Entity: "Customer", Events: []string{"INSERT"},
		Retry: retryPolicy(5, 20*time.Millisecond, 200*time.Millisecond, "fixed"),
		Actions: []config.ActionConfig{{
			Type: "email", ToTemplate: "{{ name }} <{{ email }}>", SubjectTemplate: "Welcome {{ name }}",
			BodyTemplate: "Hello {{ name }}", HTMLBodyTemplate: "<p>Hello {{ name }}</p>",
		}},
	})
	cfg.Email = config.Defaults().Email
	cfg.Email.Host, cfg.Email.Port, cfg.Email.From, cfg.Email.TLS = ts.Host, ts.Port, "Shop <shop@example.com>", "none"
	app := b.start(t, cfg)
	ids := b.insert(t,
		change{Entity: "Customer", Kind: "INSERT", Data: `{"name": "Busy", "email": "busy@example.com"}`},
		change{Entity: "Customer", Kind: "INSERT", Data: `{"name": "Gone", "email": "gone@example.com"}`},
		change{Entity: "Customer", Kind: "INSERT", Data: `{"name": "Bad", "email": "not-an-address"}`},
	)
	busy, gone, bad := ids[0], ids[1], ids[2]

	waitFor(t, "two dead letters", func() bool { return len(b.deadLetters(t)) >= 2 })
	msg := ts.Next(t)
	b.waitCheckpointAtEnd(t)

	parsed, err := mail.ReadMessage(bytes.NewReader(msg.Data))
	if err != nil {
		t.Fatal(err)
	}
	if got := parsed.Header.Get("X-FraiseQL-Event-ID"); got != busy || strings.Join(msg.Rcpts, ",") != "busy@example.com" {
		t.Errorf("delivered message: event %s to %v, want event %s to busy@example.com", got, msg.Rcpts, busy)
	}
	ts.None(t) // delivered once, nothing else
	mu.Lock()
	if rcpts["busy@example.com"] != 2 || rcpts["gone@example.com"] != 1 {
		t.Errorf("RCPT attempts = %v, want busy twice (451, then accepted) and gone once (550 is final)", rcpts)
	}
	mu.Unlock()

	byEvent := map[string]deadLetter{}
	for _, d := range b.deadLetters(t) {
		byEvent[d.EventID] = d
	}
	if len(byEvent) != 2 {
		t.Fatalf("dead letters = %+v, want gone's and bad's", byEvent)
	}
	if d := byEvent[gone]; !strings.HasPrefix(d.Action, "email-") || d.Attempts != 1 || !strings.Contains(d.Error, "550") {
		t.Errorf("dead letter of the 550 = %+v, want one attempt and the reply", d)
	}
	if d := byEvent[bad]; d.Attempts != 1 || !strings.Contains(d.Error, "to_template") || !strings.Contains(d.Error, "not-an-address") {
		t.Errorf("dead letter of the bad address = %+v, want one attempt naming to_template and the value", d)
	}
	if got := app.metric(t, `fraiseql_observer_retries_scheduled_total{action_type="email"}`); got != 1 {
		t.Errorf("retries_scheduled_total{email} = %v, want 1", got)
	}
}

// TestEmailEndpointBreaker: email actions share one endpoint, the SMTP
// server (smtp://host:port): while it answers 4xx the circuit opens, the
// events park without an attempt, the delivery log names that endpoint,
// and when the server is back the backlog is delivered and the circuit
// closes.
func TestEmailEndpointBreaker(t *testing.T) {
	// Not parallel: it measures how soon the backlog goes once the
	// receiver is back (probe interval, then the parked items made due),
	// which the suite's parallel tests (private clusters, crash tests)
	// would stretch on a small machine. Sequential tests run before them.
	b := setup(t)
	var down atomic.Bool
	down.Store(true)
	ts := smtptest.Start(t, smtptest.Config{Reply: func(cmd, _ string) error {
		if cmd == "RCPT" && down.Load() {
			return smtptest.Reply(421, "service not available")
		}
		return nil
	}})
	policy := durablePolicy(1, time.Minute)
	initial := 20 * time.Second
	policy.InitialDelay = &initial
	cfg := b.config(config.ObserverConfig{
		Name: "notify", Entity: "Customer", Events: []string{"INSERT"}, Retry: policy,
		Actions: []config.ActionConfig{{Type: "email", ToTemplate: "{{ email }}", SubjectTemplate: "Hi", BodyTemplate: "Hello"}},
	})
	cfg.Email = config.Defaults().Email
	cfg.Email.Host, cfg.Email.Port, cfg.Email.From, cfg.Email.TLS = ts.Host, ts.Port, "shop@example.com", "none"
	cfg.Delivery.BreakerFailures = 3
	cfg.Delivery.ProbeInterval = time.Second
	app := b.start(t, cfg)
	endpoint := fmt.Sprintf("smtp://%s:%d", ts.Host, ts.Port)
	state := `fraiseql_observer_endpoint_state{endpoint="` + endpoint + `"}`

	var changes []change
	for i := range 6 {
		changes = append(changes, change{Entity: "Customer", Kind: "INSERT", Data: fmt.Sprintf(`{"email": "c%d@example.com"}`, i)})
	}
	b.insert(t, changes...)
	waitFor(t, "the SMTP server's circuit open", func() bool { return app.metric(t, state) == 2 })
	var endpoints []string
	waitFor(t, "the failures in the delivery log", func() bool {
		endpoints = endpoints[:0]
		rows, err := b.pool.Query(t.Context(), `SELECT DISTINCT endpoint FROM observer.deliveries WHERE action_type = 'email'`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		for rows.Next() {
			var e string
			if err := rows.Scan(&e); err != nil {
				t.Fatal(err)
			}
			endpoints = append(endpoints, e)
		}
		return len(endpoints) > 0
	})
	if len(endpoints) != 1 || endpoints[0] != endpoint {
		t.Errorf("delivery log endpoints = %v, want [%s]", endpoints, endpoint)
	}

	// The server is back; the parked events are due only in 14-19s, so the
	// next new event is the probe that closes the circuit, and closing it
	// makes the backlog due at once.
	down.Store(false)
	changes = append(changes, change{Entity: "Customer", Kind: "INSERT", Data: `{"email": "late@example.com"}`})
	b.insert(t, changes[len(changes)-1])
	got := map[string]bool{}
	for range changes {
		msg := ts.Next(t)
		got[strings.Join(msg.Rcpts, ",")] = true
	}
	if len(got) != len(changes) {
		t.Errorf("delivered to %v, want each of the %d customers", got, len(changes))
	}
	waitFor(t, "the circuit closed", func() bool { return app.metric(t, state) == 0 })
	waitFor(t, "the retry store empty", func() bool { return b.parkedItems(t) == 0 })
	if dl := b.deadLetters(t); len(dl) != 0 {
		t.Errorf("dead letters = %+v, want none", dl)
	}
}
