package domain

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func validWebhook() Action {
	return Action{Name: "webhook-1", Type: ActionWebhook, Webhook: &WebhookAction{
		URL: "https://example.com/hook", Method: "POST", Timeout: 5 * time.Second,
	}}
}

func TestActionValidate(t *testing.T) {
	t.Parallel()
	tpl := MustCompileTemplate("k:{{ event.entity_id }}")
	tests := []struct {
		name        string
		action      Action
		errMentions string
	}{
		{name: "webhook", action: validWebhook()},
		{name: "webhook http put", action: Action{Type: ActionWebhook, Webhook: &WebhookAction{URL: "http://x", Method: "PUT", Timeout: time.Second}}},
		{name: "webhook without config", action: Action{Type: ActionWebhook}, errMentions: "url"},
		{name: "webhook without url", action: Action{Type: ActionWebhook, Webhook: &WebhookAction{Method: "POST", Timeout: time.Second}}, errMentions: "url"},
		{name: "webhook with another scheme", action: Action{Type: ActionWebhook, Webhook: &WebhookAction{URL: "ftp://x", Method: "POST", Timeout: time.Second}}, errMentions: "http://"},
		{name: "webhook with bad method", action: Action{Type: ActionWebhook, Webhook: &WebhookAction{URL: "https://x", Method: "TRACE", Timeout: time.Second}}, errMentions: `"TRACE"`},
		{name: "webhook without method", action: Action{Type: ActionWebhook, Webhook: &WebhookAction{URL: "https://x", Timeout: time.Second}}, errMentions: "method"},
		{name: "webhook without timeout", action: Action{Type: ActionWebhook, Webhook: &WebhookAction{URL: "https://x", Method: "POST"}}, errMentions: "timeout"},
		{name: "log", action: Action{Type: ActionLog, Log: &LogAction{Level: "warn"}}},
		{name: "log without config", action: Action{Type: ActionLog}, errMentions: "log"},
		{name: "log with bad level", action: Action{Type: ActionLog, Log: &LogAction{Level: "loud"}}, errMentions: `"loud"`},
		{name: "slack", action: Action{Type: ActionSlack, Slack: &SlackAction{WebhookURL: "https://hooks.slack.com/x"}}},
		{name: "slack without url", action: Action{Type: ActionSlack, Slack: &SlackAction{Channel: "#x"}}, errMentions: "webhook_url"},
		{name: "email with to", action: emailAction(func(e *EmailAction) {})},
		{name: "email with to template", action: emailAction(func(e *EmailAction) { e.To, e.ToTemplate = nil, tpl })},
		{name: "email with subject template and html body only", action: emailAction(func(e *EmailAction) {
			e.Subject, e.SubjectTemplate, e.BodyTemplate, e.HTMLBodyTemplate = "", tpl, nil, tpl
		})},
		{name: "email with every field", action: emailAction(func(e *EmailAction) {
			e.ToTemplate, e.Cc, e.Bcc, e.ReplyTo, e.HTMLBodyTemplate = tpl, []string{"c@example.com"}, []string{"b@example.com"}, "r@example.com", tpl
		})},
		{name: "email without config", action: Action{Type: ActionEmail}, errMentions: "to_template"},
		{name: "email without recipient", action: emailAction(func(e *EmailAction) { e.To = nil }), errMentions: "to_template"},
		{name: "email with empty to template", action: emailAction(func(e *EmailAction) { e.To, e.ToTemplate = nil, MustCompileTemplate("") }), errMentions: "to"},
		{name: "email with an empty to entry", action: emailAction(func(e *EmailAction) { e.To = append(e.To, " ") }), errMentions: "to[1]"},
		{name: "email with an empty cc entry", action: emailAction(func(e *EmailAction) { e.Cc = []string{""} }), errMentions: "cc[0]"},
		{name: "email with an empty bcc entry", action: emailAction(func(e *EmailAction) { e.Bcc = []string{""} }), errMentions: "bcc[0]"},
		{name: "email without subject", action: emailAction(func(e *EmailAction) { e.Subject = "" }), errMentions: "subject_template"},
		{name: "email with both subjects", action: emailAction(func(e *EmailAction) { e.SubjectTemplate = tpl }), errMentions: "not both"},
		{name: "email without body", action: emailAction(func(e *EmailAction) { e.BodyTemplate = nil }), errMentions: "html_body_template"},
		{name: "email with empty bodies", action: emailAction(func(e *EmailAction) {
			e.BodyTemplate, e.HTMLBodyTemplate = MustCompileTemplate(""), MustCompileTemplate("")
		}), errMentions: "body_template"},
		{name: "cache", action: Action{Type: ActionCache, Cache: &CacheAction{KeyPattern: tpl, Operation: "invalidate"}}},
		{name: "cache with default operation", action: Action{Type: ActionCache, Cache: &CacheAction{KeyPattern: tpl}}},
		{name: "cache without pattern", action: Action{Type: ActionCache, Cache: &CacheAction{Operation: "invalidate"}}, errMentions: "key_pattern"},
		{name: "cache with unknown operation", action: Action{Type: ActionCache, Cache: &CacheAction{KeyPattern: tpl, Operation: "warm"}}, errMentions: `"warm"`},
		{name: "database", action: Action{Type: ActionDatabase, Database: &DatabaseAction{FunctionName: "app.on_order"}}},
		{name: "database without function", action: Action{Type: ActionDatabase, Database: &DatabaseAction{}}, errMentions: "function_name"},
		{name: "nats", action: Action{Type: ActionNATS, NATS: &NATSAction{Subject: tpl}}},
		{name: "nats without subject", action: Action{Type: ActionNATS, NATS: &NATSAction{}}, errMentions: "subject"},
		{name: "unknown type", action: Action{Type: "sms"}, errMentions: `"sms"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.action.Validate()
			if tt.errMentions == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want an error naming %q", tt.errMentions)
			}
			if !strings.Contains(err.Error(), tt.errMentions) {
				t.Errorf("error %q does not name %q", err, tt.errMentions)
			}
		})
	}
}

// emailAction is a complete email action changed by edit.
func emailAction(edit func(*EmailAction)) Action {
	e := &EmailAction{To: []string{"a@example.com"}, Subject: "Order shipped", BodyTemplate: MustCompileTemplate("{{ status }}")}
	edit(e)
	return Action{Type: ActionEmail, Email: e}
}

func validObserver(name string) Observer {
	return Observer{
		Name:      name,
		Entity:    "Order",
		Events:    []EventType{EventUpdate},
		OnFailure: FailureDLQ,
		Retry:     DefaultRetryPolicy,
		Actions:   []Action{validWebhook()},
	}
}

func TestObserverValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		mutate   func(o *Observer)
		mentions []string
	}{
		{name: "valid", mutate: func(*Observer) {}},
		{name: "wildcard entity and log failure", mutate: func(o *Observer) { o.Entity, o.OnFailure = "*", FailureLog }},
		{name: "all event kinds", mutate: func(o *Observer) { o.Events = []EventType{EventInsert, EventUpdate, EventDelete, EventCustom} }},
		{name: "two distinct actions", mutate: func(o *Observer) {
			o.Actions = append(o.Actions, Action{Name: "log-2", Type: ActionLog, Log: &LogAction{Level: "info"}})
		}},
		{name: "no name", mutate: func(o *Observer) { o.Name = "" }, mentions: []string{"name"}},
		{name: "no entity", mutate: func(o *Observer) { o.Entity = "" }, mentions: []string{`"obs"`, "entity"}},
		{name: "no events", mutate: func(o *Observer) { o.Events = nil }, mentions: []string{`"obs"`, "events"}},
		{name: "unknown event", mutate: func(o *Observer) { o.Events = []EventType{EventInsert, "MERGE"} }, mentions: []string{`"obs"`, "events", `"MERGE"`}},
		{name: "noop event", mutate: func(o *Observer) { o.Events = []EventType{"NOOP"} }, mentions: []string{`"obs"`, "events", `"NOOP"`}},
		{name: "bad on_failure", mutate: func(o *Observer) { o.OnFailure = "drop" }, mentions: []string{`"obs"`, "on_failure", `"drop"`}},
		{name: "empty on_failure", mutate: func(o *Observer) { o.OnFailure = "" }, mentions: []string{`"obs"`, "on_failure"}},
		{name: "bad retry", mutate: func(o *Observer) { o.Retry.MaxAttempts = -1 }, mentions: []string{`"obs"`, "retry", "max_attempts"}},
		{name: "no actions", mutate: func(o *Observer) { o.Actions = nil }, mentions: []string{`"obs"`, "actions"}},
		{name: "invalid action", mutate: func(o *Observer) {
			o.Actions = append(o.Actions, Action{Name: "log-2", Type: ActionLog, Log: &LogAction{Level: "x"}})
		}, mentions: []string{`"obs"`, "actions[1]", "log level"}},
		{name: "duplicate action names", mutate: func(o *Observer) { o.Actions = append(o.Actions, validWebhook()) }, mentions: []string{`"obs"`, "actions[1]", "duplicate", `"webhook-1"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			o := validObserver("obs")
			tt.mutate(&o)
			err := o.Validate()
			if len(tt.mentions) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want an error naming %q", tt.mentions)
			}
			for _, m := range tt.mentions {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not name %q", err, m)
				}
			}
		})
	}
}

func TestValidateObservers(t *testing.T) {
	t.Parallel()
	broken := validObserver("broken")
	broken.Actions = nil
	tests := []struct {
		name     string
		obs      []Observer
		mentions []string
	}{
		{name: "none", obs: nil},
		{name: "distinct names", obs: []Observer{validObserver("a"), validObserver("b")}},
		{name: "duplicate names", obs: []Observer{validObserver("a"), validObserver("b"), validObserver("a")}, mentions: []string{`"a"`, "twice"}},
		{name: "invalid member", obs: []Observer{validObserver("a"), broken}, mentions: []string{`"broken"`, "actions"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := ValidateObservers(tt.obs)
			if len(tt.mentions) == 0 {
				if err != nil {
					t.Fatalf("ValidateObservers() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("ValidateObservers() = nil, want an error naming %q", tt.mentions)
			}
			for _, m := range tt.mentions {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not name %q", err, m)
				}
			}
		})
	}
}

func TestObserverHandles(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		events []EventType
		t      EventType
		want   bool
	}{
		{name: "listed", events: []EventType{EventInsert, EventUpdate}, t: EventUpdate, want: true},
		{name: "not listed", events: []EventType{EventInsert}, t: EventDelete, want: false},
		{name: "lower-case in configuration", events: []EventType{"update"}, t: EventUpdate, want: true},
		{name: "none", events: nil, t: EventInsert, want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			o := Observer{Events: tt.events}
			if got := o.Handles(tt.t); got != tt.want {
				t.Errorf("Handles(%q) with %q = %v, want %v", tt.t, tt.events, got, tt.want)
			}
		})
	}
}

func TestMatcher(t *testing.T) {
	t.Parallel()
	mk := func(name, entity string, events ...EventType) Observer {
		o := validObserver(name)
		o.Entity, o.Events = entity, events
		return o
	}
	obs := []Observer{
		mk("any-insert", "*", EventInsert),
		mk("order-update", "Order", EventUpdate),
		mk("any-all", "*", EventInsert, EventUpdate, EventDelete, EventCustom),
		mk("order-insert-update", "Order", EventInsert, EventUpdate),
		mk("user-insert", "User", EventInsert),
		mk("order-delete", "Order", EventDelete),
		mk("order-lower", "Order", "insert"),
	}
	m := NewMatcher(obs)
	tests := []struct {
		entity string
		typ    EventType
		want   []string
	}{
		{entity: "Order", typ: EventInsert, want: []string{"order-insert-update", "order-lower", "any-insert", "any-all"}},
		{entity: "Order", typ: EventUpdate, want: []string{"order-update", "order-insert-update", "any-all"}},
		{entity: "Order", typ: EventDelete, want: []string{"order-delete", "any-all"}},
		{entity: "User", typ: EventInsert, want: []string{"user-insert", "any-insert", "any-all"}},
		{entity: "User", typ: EventUpdate, want: []string{"any-all"}},
		{entity: "Invoice", typ: EventInsert, want: []string{"any-insert", "any-all"}},
		{entity: "order", typ: EventDelete, want: []string{"any-all"}},
		{entity: "Invoice", typ: EventCustom, want: []string{"any-all"}},
	}
	for _, tt := range tests {
		t.Run(tt.entity+" "+string(tt.typ), func(t *testing.T) {
			t.Parallel()
			got := m.Match(&Event{EntityType: tt.entity, EventType: tt.typ})
			names := make([]string, len(got))
			for i, o := range got {
				names[i] = o.Name
			}
			if strings.Join(names, ",") != strings.Join(tt.want, ",") {
				t.Errorf("Match(%s %s) = %q, want %q", tt.entity, tt.typ, names, tt.want)
			}
		})
	}

	t.Run("observers in configuration order", func(t *testing.T) {
		t.Parallel()
		all := m.Observers()
		if len(all) != len(obs) {
			t.Fatalf("Observers() has %d entries, want %d", len(all), len(obs))
		}
		for i, o := range all {
			if o.Name != obs[i].Name {
				t.Errorf("Observers()[%d] = %q, want %q", i, o.Name, obs[i].Name)
			}
		}
	})

	t.Run("lookup by name", func(t *testing.T) {
		t.Parallel()
		o, ok := m.Observer("order-delete")
		if !ok || o.Name != "order-delete" || o.Entity != "Order" {
			t.Errorf("Observer(order-delete) = %+v, %v", o, ok)
		}
		if o, ok := m.Observer("nope"); ok || o != nil {
			t.Errorf("Observer(nope) = %+v, %v; want nil, false", o, ok)
		}
	})
}

func TestMatcherEmpty(t *testing.T) {
	t.Parallel()
	m := NewMatcher(nil)
	if got := m.Match(&Event{EntityType: "Order", EventType: EventInsert}); len(got) != 0 {
		t.Errorf("Match on empty matcher = %v", got)
	}
	if got := m.Observers(); len(got) != 0 {
		t.Errorf("Observers() on empty matcher = %v", got)
	}
	if _, ok := m.Observer("x"); ok {
		t.Error("Observer(x) found on empty matcher")
	}
}

// Entities lists the entity types observers name, once each and sorted;
// an observer of "*" takes every entity; no observers want none.
func TestMatcherEntities(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		entities []string
		want     string
		every    bool
	}{
		{nil, "[]", false},
		{[]string{"Order", "Invoice", "Order"}, "[Invoice Order]", false},
		{[]string{"Order", "*"}, "[]", true},
	} {
		obs := make([]Observer, len(tt.entities))
		for i, e := range tt.entities {
			obs[i] = Observer{Name: "o" + e + strings.Repeat("x", i), Entity: e}
		}
		got, every := NewMatcher(obs).Entities()
		if every != tt.every || fmt.Sprint(got) != tt.want || (every && got != nil) {
			t.Errorf("Entities of %v = %v, %v; want %s, %v", tt.entities, got, every, tt.want, tt.every)
		}
	}
}

// Acting keeps Match's order, drops the observers whose condition is
// false and counts them.
func TestMatcherActing(t *testing.T) {
	t.Parallel()
	paid, err := CompileCondition("status == 'paid'")
	if err != nil {
		t.Fatal(err)
	}
	obs := []Observer{
		{Name: "any", Entity: "*", Events: []EventType{EventInsert}},
		{Name: "paid", Entity: "Order", Events: []EventType{EventInsert}, Condition: paid},
		{Name: "all", Entity: "Order", Events: []EventType{EventInsert}},
	}
	m := NewMatcher(obs)
	names := func(os []*Observer) (out []string) {
		for _, o := range os {
			out = append(out, o.Name)
		}
		return out
	}
	for _, tt := range []struct {
		status, want string
		skipped      int
	}{{"paid", "[paid all any]", 0}, {"new", "[all any]", 1}} {
		acting, skipped := m.Acting(&Event{EventType: EventInsert, EntityType: "Order", Data: map[string]any{"status": tt.status}})
		if got := fmt.Sprint(names(acting)); got != tt.want || skipped != tt.skipped {
			t.Errorf("status %s: Acting = %s, %d; want %s, %d", tt.status, got, skipped, tt.want, tt.skipped)
		}
	}
}
