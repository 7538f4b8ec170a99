package domain

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// ActionType names an action kind.
type ActionType string

// The action kinds.
const (
	ActionWebhook  ActionType = "webhook"
	ActionSlack    ActionType = "slack"
	ActionEmail    ActionType = "email"
	ActionCache    ActionType = "cache"
	ActionDatabase ActionType = "database"
	ActionNATS     ActionType = "nats"
	ActionLog      ActionType = "log"
)

// Action is one configured action of an observer. Exactly one of the typed
// configs matching Type is set.
type Action struct {
	// Name identifies the action within its observer: the configured
	// name, or an identity derived from the action's configuration
	// ("<type>-<hash>", see the configuration), so it does not depend on
	// the action's position. It keys dead letters, parked retries, cached
	// results, webhook-id and the delivery log.
	Name string
	Type ActionType

	Webhook  *WebhookAction
	Log      *LogAction
	Slack    *SlackAction
	Email    *EmailAction
	Cache    *CacheAction
	Database *DatabaseAction
	NATS     *NATSAction
}

// WebhookAction posts to an HTTP endpoint.
type WebhookAction struct {
	URL     string // resolved from url or url_env
	Method  string
	Headers map[string]string
	// SecretHeaders are header values taken from the environment
	// (headers_env): credentials such as an Authorization token. They are
	// sent like Headers and never shown: not by the dry run, nor in logs,
	// errors or dead letters.
	SecretHeaders map[string]string
	BodyTemplate  *Template // nil: the event envelope
	Timeout       time.Duration
	// SigningSecrets are the Standard Webhooks keys ("whsec_" + base64),
	// resolved from signing_secret(s) or their _env forms; the request is
	// signed with each (several while a receiver rotates). Never logged.
	SigningSecrets []string
	// Batch, when set, delivers the action's events in batches: one
	// request carries several events (nil: one request per event).
	Batch *Batching
}

// Batching bounds the batches of a batched action: a batch is sent when it
// holds MaxEvents events, when one more would take its body over MaxBytes,
// or MaxWait after its first event joined, whichever comes first.
type Batching struct {
	MaxEvents int
	MaxBytes  int
	MaxWait   time.Duration
}

// The bounds of a Batching.
const (
	MaxBatchEvents = 10000
	MinBatchBytes  = 1 << 10
	MaxBatchBytes  = 16 << 20
	MaxBatchWait   = 10 * time.Second
)

// Validate checks b's bounds; errors name the key (batch.max_events, ...).
func (b *Batching) Validate() error {
	switch {
	case b.MaxEvents < 1 || b.MaxEvents > MaxBatchEvents:
		return fmt.Errorf("batch.max_events must be 1 to %d, got %d", MaxBatchEvents, b.MaxEvents)
	case b.MaxBytes < MinBatchBytes || b.MaxBytes > MaxBatchBytes:
		return fmt.Errorf("batch.max_bytes must be %d to %d, got %d", MinBatchBytes, MaxBatchBytes, b.MaxBytes)
	case b.MaxWait <= 0 || b.MaxWait > MaxBatchWait:
		return fmt.Errorf("batch.max_wait must be positive and at most %s, got %s", MaxBatchWait, b.MaxWait)
	}
	return nil
}

// BatchingOf returns the batching of a (nil when a is not batched).
func BatchingOf(a *Action) *Batching {
	if a == nil || a.Webhook == nil {
		return nil
	}
	return a.Webhook.Batch
}

// BatchID is the identity of a batch of an observer's action: derived
// from the observer, the action and the ids of its events in order, so a
// batch sent again with exactly the same events keeps its id and any other
// batch has another. It reads "batch_" and 32 hex digits.
func BatchID(observer, action string, eventIDs []string) string {
	h := sha256.New()
	h.Write([]byte(observer))
	h.Write([]byte{0})
	h.Write([]byte(action))
	for _, id := range eventIDs {
		h.Write([]byte{0})
		h.Write([]byte(id))
	}
	return "batch_" + hex.EncodeToString(h.Sum(nil)[:16])
}

// LogAction writes a log record.
type LogAction struct {
	Level           string // debug, info, warn, error
	MessageTemplate *Template
}

// SlackAction posts to a Slack incoming webhook.
type SlackAction struct {
	WebhookURL      string
	Channel         string
	MessageTemplate *Template
}

// EmailAction sends mail through the configured SMTP server. Addresses
// are RFC 5322 ("a@example.com" or "Name <a@example.com>"); the adapter
// checks them. Values in the subject and the text body are written as they
// are, in the HTML body HTML-escaped.
type EmailAction struct {
	To               []string  // to: fixed recipients
	ToTemplate       *Template // to_template: renders one or more comma-separated recipients
	Cc               []string  // cc: copy recipients, shown in the Cc header
	Bcc              []string  // bcc: blind copies, in the SMTP envelope only, never in a header
	ReplyTo          string    // reply_to
	Subject          string    // subject: a fixed subject
	SubjectTemplate  *Template // subject_template: a rendered subject
	BodyTemplate     *Template // body_template: the text/plain part
	HTMLBodyTemplate *Template // html_body_template: the text/html part (multipart/alternative with a text part)
}

// CacheAction invalidates Redis keys. The keys are the application's:
// KeyPrefix (literal, may be empty) is put in front of the rendered
// pattern, and nothing else is.
type CacheAction struct {
	KeyPattern *Template
	Operation  string // "invalidate" (empty means invalidate)
	// KeyPrefix is put in front of the rendered pattern (the application's
	// key namespace, not the observer's redis.key_prefix).
	KeyPrefix string
	// Timeout bounds the UNLINK or the whole SCAN+UNLINK walk (0: the
	// executor's default).
	Timeout time.Duration
}

// DatabaseAction calls a PostgreSQL function.
type DatabaseAction struct {
	FunctionName string
	Params       map[string]any
	// Timeout bounds the call (0: the executor's default).
	Timeout time.Duration
}

var identPart = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_$]*$`)

// SplitFunctionName checks the function name of a database action,
// optionally schema-qualified ("notify_shipping" or "app.notify_shipping"),
// and returns its one or two identifiers. Anything else is refused, so a
// name can never carry SQL.
func SplitFunctionName(name string) ([]string, error) {
	parts := strings.Split(name, ".")
	if len(parts) > 2 {
		return nil, fmt.Errorf("function name %q: use name or schema.name", name)
	}
	for _, p := range parts {
		if !identPart.MatchString(p) || len(p) > 63 {
			return nil, fmt.Errorf("function name %q: %q is not an identifier (letters, digits, _ and $, at most 63)", name, p)
		}
	}
	return parts, nil
}

// NATSAction publishes the event.
type NATSAction struct {
	Subject *Template
}

// Validate checks that the typed config for Type is present and complete.
func (a Action) Validate() error {
	switch a.Type {
	case ActionWebhook:
		if a.Webhook == nil || a.Webhook.URL == "" {
			return fmt.Errorf("webhook action needs url or url_env")
		}
		if !strings.HasPrefix(a.Webhook.URL, "http://") && !strings.HasPrefix(a.Webhook.URL, "https://") {
			return fmt.Errorf("webhook url must start with http:// or https://")
		}
		switch a.Webhook.Method {
		case "POST", "PUT", "PATCH", "GET", "DELETE":
		default:
			return fmt.Errorf("webhook method %q is not one of POST, PUT, PATCH, GET, DELETE", a.Webhook.Method)
		}
		if a.Webhook.Timeout <= 0 {
			return fmt.Errorf("webhook timeout must be positive")
		}
		if a.Webhook.Batch != nil {
			return a.Webhook.Batch.Validate()
		}
	case ActionLog:
		if a.Log == nil {
			return fmt.Errorf("log action has no config")
		}
		switch a.Log.Level {
		case "debug", "info", "warn", "error":
		default:
			return fmt.Errorf("log level %q is not one of debug, info, warn, error", a.Log.Level)
		}
	case ActionSlack:
		if a.Slack == nil || a.Slack.WebhookURL == "" {
			return fmt.Errorf("slack action needs webhook_url or webhook_url_env")
		}
	case ActionEmail:
		return a.Email.validate()
	case ActionCache:
		if a.Cache == nil || a.Cache.KeyPattern.IsZero() {
			return fmt.Errorf("cache action needs key_pattern")
		}
		if a.Cache.Operation != "" && a.Cache.Operation != "invalidate" {
			return fmt.Errorf("cache action %q is not supported (only invalidate)", a.Cache.Operation)
		}
	case ActionDatabase:
		if a.Database == nil || a.Database.FunctionName == "" {
			return fmt.Errorf("database action needs function_name")
		}
	case ActionNATS:
		if a.NATS == nil || a.NATS.Subject.IsZero() {
			return fmt.Errorf("nats action needs subject")
		}
	default:
		return fmt.Errorf("unknown action type %q", a.Type)
	}
	return nil
}

func (e *EmailAction) validate() error {
	if e == nil || (len(e.To) == 0 && e.ToTemplate.IsZero()) {
		return fmt.Errorf("email action needs to or to_template")
	}
	for _, list := range []struct {
		key   string
		addrs []string
	}{{"to", e.To}, {"cc", e.Cc}, {"bcc", e.Bcc}} {
		for i, addr := range list.addrs {
			if strings.TrimSpace(addr) == "" {
				return fmt.Errorf("email %s[%d] is empty", list.key, i)
			}
		}
	}
	switch {
	case e.Subject == "" && e.SubjectTemplate.IsZero():
		return fmt.Errorf("email action needs subject or subject_template")
	case e.Subject != "" && !e.SubjectTemplate.IsZero():
		return fmt.Errorf("email action takes subject or subject_template, not both")
	}
	if e.BodyTemplate.IsZero() && e.HTMLBodyTemplate.IsZero() {
		return fmt.Errorf("email action needs body_template or html_body_template")
	}
	return nil
}

// IsHeaderValue reports whether s may be sent as an HTTP header's value:
// no control character (CR, LF, NUL, ESC, DEL...) but the horizontal tab
// (RFC 9110: field-vchar, SP and HTAB). net/http refuses the others, over
// https as an error like a network failure's.
func IsHeaderValue(s string) bool {
	for i := range len(s) {
		if c := s[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// IsHTTPToken reports whether s is an HTTP token (RFC 9110 5.6.2), the
// form of a method and of a header field name.
func IsHTTPToken(s string) bool {
	if s == "" {
		return false
	}
	for i := range len(s) {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// DeliveryID names one action's delivery of an event: stable across
// retries, distinct between the actions (and observers) of the same event.
// It is the webhook-id of webhooks and the Nats-Msg-Id of nats actions,
// so that a receiver (or a JetStream stream) dedupes retries of one
// delivery and never drops another action's.
func DeliveryID(eventID, observer, action string) string {
	return eventID + "." + DeliveryIDSuffix(observer, action)
}

// DeliveryIDSuffix is the part of DeliveryID after the event id.
func DeliveryIDSuffix(observer, action string) string {
	sum := sha256.Sum256([]byte(JoinNames('/', observer, action)))
	return hex.EncodeToString(sum[:6])
}

// JoinNames joins parts with sep so that different parts never join the
// same: in each part '%' is written %25 and sep as %XX (names may hold
// any printable character, so ("orders/shipped", "notify") and
// ("orders", "shipped/notify") joined plainly by '/' were one). Parts
// holding neither join as they are.
func JoinNames(sep byte, parts ...string) string {
	var b strings.Builder
	n := len(parts) // the separators, and a little room for escapes
	for _, p := range parts {
		n += len(p)
	}
	b.Grow(n) // one allocation for plain names: a result-cache key per action of every event
	for i, p := range parts {
		if i > 0 {
			b.WriteByte(sep)
		}
		if strings.IndexByte(p, sep) < 0 && strings.IndexByte(p, '%') < 0 {
			b.WriteString(p)
			continue
		}
		for j := range len(p) {
			if c := p[j]; c == sep || c == '%' {
				const hexDigits = "0123456789ABCDEF"
				b.WriteByte('%')
				b.WriteByte(hexDigits[c>>4])
				b.WriteByte(hexDigits[c&0xf])
			} else {
				b.WriteByte(c)
			}
		}
	}
	return b.String()
}
