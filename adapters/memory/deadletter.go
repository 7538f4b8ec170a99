package memory

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// defaultListLimit is what List returns when the filter sets no Limit.
const defaultListLimit = 100

// DeadLetters keeps dead letters in memory, for the memory topology. Items
// are lost on restart. At most DefaultDeadLetters items and
// DefaultDeadLetterBytes (their raw input, error and event payload, plus
// an overhead each) are kept: an Add past either fails with an error
// wrapping ports.ErrUnavailable (the writer retries and says why) rather
// than growing the process without end. Safe for concurrent use.
type DeadLetters struct {
	now func() time.Time

	mu       sync.Mutex
	lastID   int64
	items    []ports.DeadLetter // ascending ID
	weights  []int64            // per item, as items
	bytes    int64
	maxItems int
	maxBytes int64
}

// The default bounds of a DeadLetters.
const (
	DefaultDeadLetters     = 1 << 20   // 1 048 576
	DefaultDeadLetterBytes = 512 << 20 // 512 MiB
)

var (
	_ ports.DeadLetterStore   = (*DeadLetters)(nil)
	_ ports.DeadLetterCounter = (*DeadLetters)(nil)
)

// NewDeadLetters returns an empty store; now stamps CreatedAt (nil means
// time.Now).
func NewDeadLetters(now func() time.Time) *DeadLetters {
	if now == nil {
		now = time.Now
	}
	return &DeadLetters{now: now, maxItems: DefaultDeadLetters, maxBytes: DefaultDeadLetterBytes}
}

// WithBounds sets the store's bounds (n items, b bytes; 0 keeps the
// default) and returns it.
func (s *DeadLetters) WithBounds(n int, b int64) *DeadLetters {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.maxItems, s.maxBytes = cmp.Or(n, s.maxItems), cmp.Or(b, s.maxBytes)
	return s
}

// deadLetterWeight is what d weighs against the byte bound: its raw
// input, its texts and its event, plus an overhead.
func deadLetterWeight(d ports.DeadLetter) int64 {
	return int64(len(d.Raw)+len(d.Error)+len(d.Observer)+len(d.Action)) + logEntryOverhead + eventWeight(d.Event)
}

// eventWeight is ev's size as JSON (0 when it cannot be encoded), its
// part of a stored item's weight.
func eventWeight(ev domain.Event) int64 {
	b, err := json.Marshal(ev)
	if err != nil {
		return 0
	}
	return int64(len(b))
}

// Add stores a copy of d with a new ID and CreatedAt and returns the ID.
func (s *DeadLetters) Add(ctx context.Context, d ports.DeadLetter) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("memory: add dead letter: %w", err)
	}
	ids, err := s.addAll([]ports.DeadLetter{d}, true)
	if err != nil {
		return 0, err
	}
	return ids[0], nil
}

// addAll stores copies of ds, all or none: with bounded, none when they
// do not all fit (an error wrapping ports.ErrUnavailable). The retry
// store's settle adds unbounded: its items move here from the retry
// store, which held them already, and a refusal there would re-run the
// item's actions after its claim expired.
func (s *DeadLetters) addAll(ds []ports.DeadLetter, bounded bool) ([]int64, error) {
	copies, weights := make([]ports.DeadLetter, len(ds)), make([]int64, len(ds))
	var total int64
	for i, d := range ds {
		copies[i] = clone(d)
		weights[i] = deadLetterWeight(copies[i])
		total += weights[i]
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if bounded && (len(s.items)+len(ds) > s.maxItems || s.bytes+total > s.maxBytes) {
		return nil, fmt.Errorf("memory: add dead letter: the store is full (%d items of at most %d, %d bytes of at most %d; remove or retry some): %w",
			len(s.items), s.maxItems, s.bytes, s.maxBytes, ports.ErrUnavailable)
	}
	ids := make([]int64, len(copies))
	for i, d := range copies {
		s.lastID++
		d.ID = s.lastID
		d.CreatedAt = s.now()
		s.items = append(s.items, d)
		ids[i] = d.ID
	}
	s.weights = append(s.weights, weights...)
	s.bytes += total
	return ids, nil
}

// List returns copies of the items matching f in ascending ID order.
func (s *DeadLetters) List(ctx context.Context, f ports.DeadLetterFilter) ([]ports.DeadLetter, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("memory: list dead letters: %w", err)
	}
	if f.Limit < 0 {
		return nil, fmt.Errorf("memory: list dead letters: limit %d is negative", f.Limit)
	}
	limit := f.Limit
	if limit == 0 {
		limit = defaultListLimit
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	start, found := s.find(f.AfterID)
	if found {
		start++
	}
	var out []ports.DeadLetter
	for _, d := range s.items[start:] {
		if len(out) == limit {
			break
		}
		switch {
		case f.Observer != "" && d.Observer != f.Observer:
		case f.Brief:
			d.Event, d.Raw = domain.Event{ID: d.Event.ID}, nil
			out = append(out, d)
		default:
			out = append(out, clone(d))
		}
	}
	return out, nil
}

// Get returns a copy of the item with id, or ports.ErrNotFound.
func (s *DeadLetters) Get(ctx context.Context, id int64) (ports.DeadLetter, error) {
	if err := ctx.Err(); err != nil {
		return ports.DeadLetter{}, fmt.Errorf("memory: get dead letter %d: %w", id, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	i, ok := s.find(id)
	if !ok {
		return ports.DeadLetter{}, fmt.Errorf("memory: get dead letter %d: %w", id, ports.ErrNotFound)
	}
	return clone(s.items[i]), nil
}

// Remove deletes the item with id, or returns ports.ErrNotFound.
func (s *DeadLetters) Remove(ctx context.Context, id int64) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memory: remove dead letter %d: %w", id, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	i, ok := s.find(id)
	if !ok {
		return fmt.Errorf("memory: remove dead letter %d: %w", id, ports.ErrNotFound)
	}
	s.bytes -= s.weights[i]
	s.items = slices.Delete(s.items, i, i+1)
	s.weights = slices.Delete(s.weights, i, i+1)
	return nil
}

// MarkRetried records a failed retry of the item with id: one more
// attempt, errText and at replace Error and LastRetryAt. An unknown id is
// ports.ErrNotFound.
func (s *DeadLetters) MarkRetried(ctx context.Context, id int64, errText string, at time.Time) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memory: mark dead letter %d retried: %w", id, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	i, ok := s.find(id)
	if !ok {
		return fmt.Errorf("memory: mark dead letter %d retried: %w", id, ports.ErrNotFound)
	}
	s.items[i].Attempts++
	delta := int64(len(errText) - len(s.items[i].Error))
	s.weights[i] += delta
	s.bytes += delta
	s.items[i].Error = errText
	s.items[i].LastRetryAt = at
	return nil
}

// Stats counts items per observer.
func (s *DeadLetters) Stats(ctx context.Context) (map[string]int, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("memory: dead letter stats: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	stats := map[string]int{}
	for _, d := range s.items {
		stats[d.Observer]++
	}
	return stats, nil
}

// Count is the number of items, for the dlq_items metric.
func (s *DeadLetters) Count(ctx context.Context) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("memory: count dead letters: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return int64(len(s.items)), nil
}

// find returns the index of the first item with ID >= id and whether its
// ID is id. Callers hold mu.
func (s *DeadLetters) find(id int64) (int, bool) {
	return slices.BinarySearchFunc(s.items, id, func(d ports.DeadLetter, id int64) int {
		switch {
		case d.ID < id:
			return -1
		case d.ID > id:
			return 1
		}
		return 0
	})
}

func clone(d ports.DeadLetter) ports.DeadLetter {
	d.Event = cloneEvent(d.Event)
	d.Raw = cloneBytes(d.Raw)
	return d
}
