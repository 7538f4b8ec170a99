package bootstrap

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/url"
	"slices"
	"strings"

	"github.com/fraiseql/fraiseql-observer/adapters/logaction"
	natsadapter "github.com/fraiseql/fraiseql-observer/adapters/nats"
	"github.com/fraiseql/fraiseql-observer/adapters/slack"
	"github.com/fraiseql/fraiseql-observer/adapters/webhook"
	"github.com/fraiseql/fraiseql-observer/domain"
)

// DebugReport is a dry run of one event against the configured observers:
// which observers match, how their conditions evaluate and what each
// action would do. Building it has no side effects (no network, no
// database).
type DebugReport struct {
	Event domain.Event `json:"event"`
	// ChangesComputed is true when changes were derived from before and
	// data (the input had a pre-image and no changes).
	ChangesComputed bool `json:"changes_computed"`
	// Matched are the observers whose entity and event kinds fit the event.
	Matched []DebugObserver `json:"matched"`
	// NotMatched are the other observers, with the reason.
	NotMatched []DebugSkip `json:"not_matched"`
}

// DebugObserver is one matching observer's evaluation.
type DebugObserver struct {
	Name      string `json:"name"`
	Condition string `json:"condition"` // "" when the observer has none (always true)
	// Result is the condition's value; the actions run only when true.
	Result  bool          `json:"result"`
	Trace   []DebugTrace  `json:"trace,omitempty"`
	Actions []DebugAction `json:"actions"`
}

// DebugTrace is one sub-expression of a condition and its value.
type DebugTrace struct {
	Expr   string `json:"expr"`
	Column int    `json:"column"`
	Depth  int    `json:"depth"`
	Value  any    `json:"value"`
}

// DebugSkip is an observer that does not match, and why.
type DebugSkip struct {
	Name   string `json:"name"`
	Reason string `json:"reason"`
}

// DebugAction is what one action would do with the event. Secrets are
// never included: a signing secret shows as Signing "signed", and header
// values and URL parts that may hold credentials are redacted.
type DebugAction struct {
	Name string `json:"name"`
	Type string `json:"type"`
	// Missing lists the template placeholders the event has no value for.
	Missing []string `json:"missing_placeholders,omitempty"`
	// Problem says why the action would fail without sending anything.
	Problem string `json:"problem,omitempty"`

	Webhook  *DebugWebhook  `json:"webhook,omitempty"`
	Log      *DebugLog      `json:"log,omitempty"`
	Cache    *DebugCache    `json:"cache,omitempty"`
	Slack    *DebugSlack    `json:"slack,omitempty"`
	Database *DebugDatabase `json:"database,omitempty"`
	NATS     *DebugNATS     `json:"nats,omitempty"`
}

// DebugNATS is where a nats action would publish the event.
type DebugNATS struct {
	Subject string `json:"subject"`
}

// DebugSlack is the message a slack action would post. Only the webhook
// URL's host is shown: its path is the secret.
type DebugSlack struct {
	Host    string `json:"host"`
	Channel string `json:"channel,omitempty"`
	Text    string `json:"text"`
}

// DebugDatabase is the call a database action would make.
type DebugDatabase struct {
	Function string `json:"function"`
	Argument string `json:"argument"`
}

// DebugWebhook is the request a webhook action would send.
type DebugWebhook struct {
	Method  string            `json:"method"`
	URL     string            `json:"url"`
	Headers map[string]string `json:"headers"`
	Signing string            `json:"signing"` // "signed" or "unsigned"
	Body    string            `json:"body"`
}

// DebugLog is the record a log action would write.
type DebugLog struct {
	Level   string `json:"level"`
	Message string `json:"message"`
}

// DebugCache is what a cache action would invalidate.
type DebugCache struct {
	// Pattern is the rendered key pattern, event values glob-escaped, with
	// redis.key_prefix in front.
	Pattern string `json:"pattern"`
	// Mode is "UNLINK <key>" for a single key or "SCAN MATCH + UNLINK" for
	// a pattern with wildcards.
	Mode string `json:"mode"`
}

// DebugEventID stands in for the id of an event given to debug-event
// without one.
const DebugEventID = "00000000-0000-0000-0000-000000000000"

// DecodeDebugEvent reads an event in the envelope format of
// domain.DecodeEvent (id, event_type, entity_type, entity_id, data,
// before, changes, tenant_id, user_id, timestamp, source). An event
// without an id gets the placeholder DebugEventID (a dry run needs none).
// When before is present and changes is absent on an UPDATE, changes are
// computed as the change log does; computed reports it.
func DecodeDebugEvent(input []byte) (ev domain.Event, computed bool, err error) {
	input = bytes.TrimSpace(input)
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(input))
	dec.UseNumber() // re-encoding keeps numbers exactly as written
	if dec.Decode(&m) == nil && m != nil && !dec.More() {
		if _, ok := m["id"]; !ok {
			m["id"] = DebugEventID
			if b, err := json.Marshal(m); err == nil {
				input = b
			}
		}
	}
	ev, err = domain.DecodeEvent(input)
	if err != nil {
		return ev, false, err
	}
	if ev.Before != nil && ev.Changes == nil && ev.EventType == domain.EventUpdate {
		ev.Changes = domain.ComputeChanges(ev.Before, ev.Data)
		computed = true
	}
	return ev, computed, nil
}

// DebugEvent dry-runs input (an event envelope as JSON) against the
// observers of cfg, resolving *_env values through lookupEnv.
func DebugEvent(cfg Config, lookupEnv func(string) (string, bool), input []byte) (DebugReport, error) {
	ev, computed, err := DecodeDebugEvent(input)
	if err != nil {
		return DebugReport{}, err
	}
	observers, err := LoadObservers(cfg, lookupEnv)
	if err != nil {
		return DebugReport{}, err
	}
	rep := DebugReport{Event: ev, ChangesComputed: computed, Matched: []DebugObserver{}, NotMatched: []DebugSkip{}}
	m := domain.NewMatcher(observers)
	matched := map[string]bool{}
	for _, o := range m.Match(&ev) {
		matched[o.Name] = true
		rep.Matched = append(rep.Matched, debugObserver(cfg, &ev, o))
	}
	for _, o := range m.Observers() {
		if matched[o.Name] {
			continue
		}
		reason := fmt.Sprintf("handles %s events, not %s", eventList(o.Events), ev.EventType)
		if o.Entity != "*" && o.Entity != ev.EntityType {
			reason = fmt.Sprintf("entity %s, not %s", o.Entity, ev.EntityType)
		}
		rep.NotMatched = append(rep.NotMatched, DebugSkip{Name: o.Name, Reason: reason})
	}
	return rep, nil
}

func eventList(ts []domain.EventType) string {
	s := make([]string, len(ts))
	for i, t := range ts {
		s[i] = string(t)
	}
	return strings.Join(s, ", ")
}

func debugObserver(cfg Config, ev *domain.Event, o *domain.Observer) DebugObserver {
	d := DebugObserver{Name: o.Name, Condition: o.Condition.Source(), Result: o.Condition.Eval(ev)}
	for _, t := range o.Condition.Explain(ev) {
		d.Trace = append(d.Trace, DebugTrace{Expr: t.Expr, Column: t.Column, Depth: t.Depth, Value: t.Value})
	}
	for i := range o.Actions {
		d.Actions = append(d.Actions, debugAction(cfg, ev, o, &o.Actions[i]))
	}
	return d
}

func debugAction(cfg Config, ev *domain.Event, o *domain.Observer, a *domain.Action) DebugAction {
	d := DebugAction{Name: a.Name, Type: string(a.Type)}
	switch {
	case a.Webhook != nil:
		wh := a.Webhook
		body, missing := "", []string(nil)
		if wh.BodyTemplate != nil {
			body, missing = wh.BodyTemplate.Render(ev, domain.EscapeJSON)
		} else if b, err := ev.Envelope(); err == nil {
			body = string(b)
		} else {
			d.Problem = "the event envelope cannot be encoded: " + err.Error()
		}
		headers := map[string]string{
			"Content-Type":      "application/json",
			"webhook-id":        webhook.MessageID(ev.ID, o.Name, a.Name),
			"webhook-timestamp": "(unix time of sending)",
		}
		for k, v := range wh.Headers {
			headers[k] = redactHeader(k, v)
		}
		signing := "unsigned"
		if len(wh.SigningSecrets) > 0 {
			signing = "signed"
		}
		d.Missing = missing
		d.Webhook = &DebugWebhook{Method: wh.Method, URL: redactURL(wh.URL), Headers: headers, Signing: signing, Body: body}
	case a.Log != nil:
		msg, missing := logaction.DefaultMessage, []string(nil)
		if a.Log.MessageTemplate != nil {
			msg, missing = a.Log.MessageTemplate.Render(ev, domain.EscapeNone)
		}
		d.Missing = missing
		d.Log = &DebugLog{Level: a.Log.Level, Message: msg}
	case a.Cache != nil:
		rendered, missing := a.Cache.KeyPattern.Render(ev, domain.EscapeGlob)
		d.Missing = missing
		pattern := domain.GlobEscape(cfg.Redis.KeyPrefix) + rendered
		mode := "UNLINK " + domain.GlobUnescape(pattern)
		if domain.HasGlob(pattern) {
			mode = "SCAN MATCH + UNLINK"
		}
		switch {
		case len(missing) > 0:
			d.Problem = "the event has no value for " + strings.Join(missing, ", ") + ": the invalidation fails permanently rather than widen the pattern"
		case rendered == "":
			d.Problem = "the pattern renders empty: the invalidation fails permanently"
		}
		d.Cache = &DebugCache{Pattern: pattern, Mode: mode}
	case a.Slack != nil:
		tmpl := a.Slack.MessageTemplate
		if tmpl == nil {
			tmpl = domain.MustCompileTemplate(slack.DefaultMessage)
		}
		text, missing := tmpl.Render(ev, domain.EscapeNone)
		d.Missing = missing
		host := "(unparsable url)"
		if u, err := url.Parse(a.Slack.WebhookURL); err == nil {
			host = u.Host
		}
		d.Slack = &DebugSlack{Host: host, Channel: a.Slack.Channel, Text: text}
	case a.NATS != nil:
		subject, missing := a.NATS.Subject.Render(ev, domain.EscapeSubjectToken)
		d.Missing = missing
		d.NATS = &DebugNATS{Subject: subject}
		if len(missing) > 0 || natsadapter.ValidSubject(subject) != nil {
			d.Problem = "the subject is not publishable: the action fails permanently"
		}
	case a.Database != nil:
		arg, err := json.Marshal(struct {
			Event  domain.Event   `json:"event"`
			Params map[string]any `json:"params"`
		}{*ev, a.Database.Params})
		if err != nil {
			d.Problem = "the argument cannot be encoded: " + err.Error()
		}
		d.Database = &DebugDatabase{Function: a.Database.FunctionName, Argument: string(arg)}
	}
	return d
}

// sensitiveHeader reports header names whose values are credentials.
func sensitiveHeader(name string) bool {
	n := strings.ToLower(name)
	if n == "authorization" || n == "proxy-authorization" || n == "cookie" {
		return true
	}
	for _, s := range []string{"token", "secret", "key", "password", "auth", "signature"} {
		if strings.Contains(n, s) {
			return true
		}
	}
	return false
}

func redactHeader(name, value string) string {
	if sensitiveHeader(name) {
		return "(redacted)"
	}
	return value
}

// redactURL hides the password and the query values of u, which may hold
// credentials.
func redactURL(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "(unparsable url)"
	}
	if p.RawQuery != "" {
		q := p.Query()
		for k := range q {
			q[k] = []string{"redacted"}
		}
		p.RawQuery = q.Encode()
	}
	return p.Redacted()
}

// WriteDebugReport prints the dry run, or JSON.
func WriteDebugReport(w io.Writer, r DebugReport, asJSON bool) error {
	if asJSON {
		return writeJSONTo(w, r)
	}
	ev := r.Event
	fmt.Fprintf(w, "event %s: %s %s %s\n", ev.ID, ev.EventType, ev.EntityType, ev.EntityID)
	if r.ChangesComputed {
		fmt.Fprintf(w, "  changes computed from before and data: %s\n", strings.Join(slices.Sorted(maps.Keys(ev.Changes)), ", "))
	}
	if len(r.Matched) == 0 {
		fmt.Fprintln(w, "no observer matches this entity and event kind")
	}
	for _, o := range r.Matched {
		verdict := "actions would run"
		if !o.Result {
			verdict = "actions would NOT run"
		}
		fmt.Fprintf(w, "\nobserver %s: matches\n", o.Name)
		if o.Condition == "" {
			fmt.Fprintf(w, "  condition: (none) => true, %s\n", verdict)
		} else {
			fmt.Fprintf(w, "  condition: %s => %v, %s\n", o.Condition, o.Result, verdict)
			for _, t := range o.Trace[1:] {
				fmt.Fprintf(w, "    %s%s  => %s\n", strings.Repeat("  ", t.Depth-1), t.Expr, traceValue(t.Value))
			}
		}
		for _, a := range o.Actions {
			writeDebugAction(w, a)
		}
	}
	if len(r.NotMatched) > 0 {
		fmt.Fprintln(w, "\nnot matching:")
		for _, s := range r.NotMatched {
			fmt.Fprintf(w, "  %s: %s\n", s.Name, s.Reason)
		}
	}
	return nil
}

func traceValue(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

func writeDebugAction(w io.Writer, a DebugAction) {
	fmt.Fprintf(w, "  action %s (%s):\n", a.Name, a.Type)
	switch {
	case a.Webhook != nil:
		wh := a.Webhook
		fmt.Fprintf(w, "    %s %s (%s)\n", wh.Method, wh.URL, wh.Signing)
		for _, k := range slices.Sorted(maps.Keys(wh.Headers)) {
			fmt.Fprintf(w, "    %s: %s\n", k, wh.Headers[k])
		}
		fmt.Fprintf(w, "    body: %s\n", wh.Body)
	case a.Log != nil:
		fmt.Fprintf(w, "    log at %s: %s\n", a.Log.Level, a.Log.Message)
	case a.Cache != nil:
		fmt.Fprintf(w, "    invalidate %s (%s)\n", a.Cache.Pattern, a.Cache.Mode)
	case a.Slack != nil:
		fmt.Fprintf(w, "    post to Slack (%s) %s: %s\n", a.Slack.Host, a.Slack.Channel, a.Slack.Text)
	case a.NATS != nil:
		fmt.Fprintf(w, "    publish the event on %s\n", a.NATS.Subject)
	case a.Database != nil:
		fmt.Fprintf(w, "    SELECT %s($1::jsonb) with $1 = %s\n", a.Database.Function, a.Database.Argument)
	default:
		fmt.Fprintln(w, "    (no dry-run rendering for this action type)")
	}
	if len(a.Missing) > 0 {
		fmt.Fprintf(w, "    missing placeholders: %s\n", strings.Join(a.Missing, ", "))
	}
	if a.Problem != "" {
		fmt.Fprintf(w, "    problem: %s\n", a.Problem)
	}
}
