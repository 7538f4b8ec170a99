package ports

import (
	"context"
	"sync"
	"time"

	"github.com/fraiseql/fraiseql-observer/domain"
)

// The outcomes of a delivery attempt.
const (
	DeliverySucceeded = "succeeded"
	DeliveryTransient = "transient" // failed; retryable
	DeliveryPermanent = "permanent" // failed; retrying cannot help
)

// MaxResponseSnippet bounds the response bytes a delivery record keeps.
const MaxResponseSnippet = 1024

// DeliveryRecord is the outcome of one attempt of one action for one
// event.
type DeliveryRecord struct {
	ID         int64             `json:"id"`
	At         time.Time         `json:"at"` // when the attempt started
	EventID    string            `json:"event_id"`
	Observer   string            `json:"observer"`
	Action     string            `json:"action"`
	ActionType domain.ActionType `json:"action_type"`
	Endpoint   string            `json:"endpoint"`
	// Attempt numbers the action's attempts for the event, from 1 (0 when
	// unknown, e.g. an operator's resend).
	Attempt int `json:"attempt"`
	// Trigger says what ran it: "live", "retry", "resend", "dlq_retry".
	Trigger string `json:"trigger"`
	// Outcome is DeliverySucceeded, DeliveryTransient or
	// DeliveryPermanent.
	Outcome    string        `json:"outcome"`
	StatusCode int           `json:"status_code,omitempty"` // 0 when the action has none (or no answer came)
	Latency    time.Duration `json:"latency_ns"`
	Error      string        `json:"error,omitempty"`
	// Response is the start of the answer's body, at most
	// MaxResponseSnippet bytes.
	Response string `json:"response,omitempty"`
}

// DeliveryFilter narrows List; zero values mean no filter.
type DeliveryFilter struct {
	EventID  string
	Observer string
	Endpoint string
	// Failed keeps only failed attempts; Succeeded only successful ones.
	Failed, Succeeded bool
	StatusCode        int
	Since, Until      time.Time // At >= Since, At < Until
	// BeforeID pages: records with ID < BeforeID (newest first).
	BeforeID int64
	// Limit bounds the answer; 0 means the adapter's default (100).
	Limit int
}

// DeliveryLog keeps the outcome of delivery attempts.
//
// Append stores records (IDs are assigned; texts a store cannot hold,
// such as NUL bytes or invalid UTF-8, are stored with replacement
// characters). List returns the records matching f, newest first (by ID).
// Prune deletes the records whose At is before before and returns how
// many it deleted. Safe for concurrent use.
type DeliveryLog interface {
	Append(ctx context.Context, records []DeliveryRecord) error
	List(ctx context.Context, f DeliveryFilter) ([]DeliveryRecord, error)
	Prune(ctx context.Context, before time.Time) (int64, error)
}

// ResponseNote is where an action executor leaves what the endpoint
// answered (status code and the start of the body), for the delivery log.
// Safe for concurrent use.
type ResponseNote struct {
	mu     sync.Mutex
	status int
	body   []byte
}

type responseNoteKey struct{}

// WithResponseNote returns a context carrying a fresh note, and the note.
func WithResponseNote(ctx context.Context) (context.Context, *ResponseNote) {
	n := &ResponseNote{}
	return context.WithValue(ctx, responseNoteKey{}, n), n
}

// NoteResponse records the answer of the call made under ctx, when the
// caller asked for it (WithResponseNote); body is copied, at most
// MaxResponseSnippet bytes.
func NoteResponse(ctx context.Context, status int, body []byte) {
	n, ok := ctx.Value(responseNoteKey{}).(*ResponseNote)
	if !ok {
		return
	}
	body = body[:min(len(body), MaxResponseSnippet)]
	n.mu.Lock()
	n.status, n.body = status, append(n.body[:0], body...)
	n.mu.Unlock()
}

// WantsResponse reports whether the caller asked for the answer (so an
// executor reads the body only then).
func WantsResponse(ctx context.Context) bool {
	_, ok := ctx.Value(responseNoteKey{}).(*ResponseNote)
	return ok
}

// Get returns the recorded status code (0 when none) and body.
func (n *ResponseNote) Get() (int, []byte) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.status, n.body
}
