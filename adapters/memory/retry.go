package memory

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/fraiseql/fraiseql-observer/ports"
)

// Retries parks unfinished actions in memory, for the memory topology:
// the same ordering and claims as the durable store, lost on restart.
// Dead letters of settled items go to the DeadLetters it was built with.
// At most DefaultRetryItems items and DefaultRetryBytes (their events and
// actions, plus an overhead each) are kept: a Park past either fails with
// an error wrapping ports.ErrUnavailable, so that the processor keeps the
// actions in memory and the event in flight (the reader's bounds then
// hold the stream back) rather than the store growing the process without
// end. Safe for concurrent use.
type Retries struct {
	dead *DeadLetters
	now  func() time.Time

	mu       sync.Mutex
	lastID   int64
	items    map[int64]*retryItem
	keys     map[ports.RetryKey][]int64 // parking order
	parked   map[eventObserver]int64
	bytes    int64
	maxItems int
	maxBytes int64
}

// The default bounds of a Retries.
const (
	DefaultRetryItems = 100_000
	DefaultRetryBytes = 256 << 20 // 256 MiB
)

type retryItem struct {
	ports.RetryItem
	holder string
	until  time.Time
	weight int64 // against the byte bound (retryWeight)
	event  int64 // its event's part of weight (eventWeight, once at Park: the event never changes)
}

// retryWeight is what it weighs against the byte bound: its event (event,
// its eventWeight) and actions, plus an overhead.
func retryWeight(it ports.RetryItem, event int64) int64 {
	w := event + int64(len(it.Observer)+len(it.EntityKey)) + logEntryOverhead
	for _, a := range it.Actions {
		w += int64(len(a.Action)+len(a.Endpoint)+len(a.LastError)) + 64
	}
	return w
}

// WithBounds sets the store's bounds (n items, b bytes; 0 keeps the
// default) and returns it.
func (s *Retries) WithBounds(n int, b int64) *Retries {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.maxItems, s.maxBytes = cmp.Or(n, s.maxItems), cmp.Or(b, s.maxBytes)
	return s
}

type eventObserver struct{ event, observer string }

var (
	_ ports.RetryStore   = (*Retries)(nil)
	_ ports.RetryCounter = (*Retries)(nil)
)

// NewRetries returns an empty store whose dead letters go to dead; now
// stamps CreatedAt (nil means time.Now).
func NewRetries(dead *DeadLetters, now func() time.Time) *Retries {
	if now == nil {
		now = time.Now
	}
	return &Retries{dead: dead, now: now, items: map[int64]*retryItem{}, keys: map[ports.RetryKey][]int64{}, parked: map[eventObserver]int64{},
		maxItems: DefaultRetryItems, maxBytes: DefaultRetryBytes}
}

// derive fills the fields the store owns from the actions.
func derive(it *ports.RetryItem) {
	it.Endpoints = it.Endpoints[:0:0]
	it.Due = time.Time{}
	for _, a := range it.Actions {
		if !slices.Contains(it.Endpoints, a.Endpoint) {
			it.Endpoints = append(it.Endpoints, a.Endpoint)
		}
		if it.Due.IsZero() || a.Due.Before(it.Due) {
			it.Due = a.Due
		}
	}
	slices.Sort(it.Endpoints)
}

func cloneItem(it ports.RetryItem) ports.RetryItem {
	it.Event = cloneEvent(it.Event)
	it.Actions = slices.Clone(it.Actions)
	it.Endpoints = slices.Clone(it.Endpoints)
	return it
}

func keyOf(it ports.RetryItem) ports.RetryKey {
	return ports.RetryKey{Observer: it.Observer, EntityKey: it.EntityKey}
}

// Park stores item, due when its key has no other item, else waiting.
func (s *Retries) Park(ctx context.Context, item ports.RetryItem) (ports.RetryItem, bool, error) {
	if err := ctx.Err(); err != nil {
		return ports.RetryItem{}, false, fmt.Errorf("memory: park retry: %w", err)
	}
	if len(item.Actions) == 0 {
		return ports.RetryItem{}, false, fmt.Errorf("memory: park retry of event %s: no actions", item.Event.ID)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if id, ok := s.parked[eventObserver{item.Event.ID, item.Observer}]; ok {
		return cloneItem(s.items[id].RetryItem), false, nil
	}
	it := cloneItem(item)
	derive(&it)
	event := eventWeight(it.Event)
	weight := retryWeight(it, event)
	if len(s.items) >= s.maxItems || s.bytes+weight > s.maxBytes {
		return ports.RetryItem{}, false, fmt.Errorf("memory: park retry of event %s: the store is full (%d items of at most %d, %d bytes of at most %d): %w",
			item.Event.ID, len(s.items), s.maxItems, s.bytes, s.maxBytes, ports.ErrUnavailable)
	}
	s.bytes += weight
	s.lastID++
	it.ID, it.CreatedAt = s.lastID, s.now()
	k := keyOf(it)
	it.State = ports.RetryDue
	if len(s.keys[k]) > 0 {
		it.State = ports.RetryWaiting
	}
	s.keys[k] = append(s.keys[k], it.ID)
	s.items[it.ID] = &retryItem{RetryItem: it, weight: weight, event: event}
	s.parked[eventObserver{it.Event.ID, it.Observer}] = it.ID
	return cloneItem(it), true, nil
}

// ClaimDue claims up to limit due, unclaimed items, earliest Due first.
func (s *Retries) ClaimDue(ctx context.Context, c ports.RetryClaim, limit int, skip []string) ([]ports.RetryItem, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("memory: claim retries: %w", err)
	}
	if limit < 1 || c.Holder == "" || c.TTL <= 0 {
		return nil, fmt.Errorf("memory: claim retries: limit %d, holder %q and ttl %v must be set", limit, c.Holder, c.TTL)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var due []*retryItem
	for _, it := range s.items {
		if it.State != ports.RetryDue || it.Due.After(c.Now) || (it.holder != "" && it.until.After(c.Now)) {
			continue
		}
		if len(skip) > 0 && allIn(it.Endpoints, skip) {
			continue
		}
		due = append(due, it)
	}
	slices.SortFunc(due, func(a, b *retryItem) int {
		return cmp.Or(a.Due.Compare(b.Due), cmp.Compare(a.ID, b.ID))
	})
	out := make([]ports.RetryItem, 0, min(limit, len(due)))
	for _, it := range due[:min(limit, len(due))] {
		it.holder, it.until = c.Holder, c.Now.Add(c.TTL)
		out = append(out, cloneItem(it.RetryItem))
	}
	return out, nil
}

func allIn(endpoints, set []string) bool {
	for _, e := range endpoints {
		if !slices.Contains(set, e) {
			return false
		}
	}
	return true
}

// held returns the item id if holder claimed it; s.mu must be held.
func (s *Retries) held(op string, id int64, holder string) (*retryItem, error) {
	it, ok := s.items[id]
	switch {
	case !ok:
		return nil, fmt.Errorf("memory: %s retry %d: %w", op, id, ports.ErrNotFound)
	case it.holder != holder:
		return nil, fmt.Errorf("memory: %s retry %d: held by %q: %w", op, id, it.holder, ports.ErrClaimLost)
	}
	return it, nil
}

// Reschedule replaces the actions of a claimed item and releases it.
func (s *Retries) Reschedule(ctx context.Context, id int64, holder string, actions []ports.RetryAction, dead []ports.DeadLetter) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memory: reschedule retry %d: %w", id, err)
	}
	if len(actions) == 0 {
		return fmt.Errorf("memory: reschedule retry %d: no actions left (complete it instead)", id)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	it, err := s.held("reschedule", id, holder)
	if err != nil {
		return err
	}
	if err := s.deadLetter(ctx, dead); err != nil {
		return err
	}
	it.Actions = slices.Clone(actions)
	derive(&it.RetryItem)
	it.holder, it.until = "", time.Time{}
	w := retryWeight(it.RetryItem, it.event) // its actions and their errors changed
	s.bytes += w - it.weight
	it.weight = w
	return nil
}

// Complete deletes a claimed item and makes the next of its key due.
func (s *Retries) Complete(ctx context.Context, item ports.RetryItem, c ports.RetryClaim, dead []ports.DeadLetter) (ports.RetryItem, bool, error) {
	id := item.ID
	if err := ctx.Err(); err != nil {
		return ports.RetryItem{}, false, fmt.Errorf("memory: complete retry %d: %w", id, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	it, err := s.held("complete", id, c.Holder)
	if err != nil {
		return ports.RetryItem{}, false, err
	}
	if err := s.deadLetter(ctx, dead); err != nil {
		return ports.RetryItem{}, false, err
	}
	k := keyOf(it.RetryItem)
	s.bytes -= it.weight
	delete(s.items, id)
	delete(s.parked, eventObserver{it.Event.ID, it.Observer})
	s.keys[k] = slices.DeleteFunc(s.keys[k], func(x int64) bool { return x == id })
	if len(s.keys[k]) == 0 {
		delete(s.keys, k)
		return ports.RetryItem{}, false, nil
	}
	next := s.items[s.keys[k][0]]
	next.State = ports.RetryDue
	if next.Due.After(c.Now) || c.TTL <= 0 || (next.holder != "" && next.until.After(c.Now)) {
		return cloneItem(next.RetryItem), false, nil
	}
	next.holder, next.until = cmp.Or(c.Next, c.Holder), c.Now.Add(c.TTL)
	return cloneItem(next.RetryItem), true, nil
}

// deadLetter stores dead; s.mu must be held. The dead-letter store has its
// own lock and never calls back.
func (s *Retries) deadLetter(ctx context.Context, dead []ports.DeadLetter) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memory: settle retry: %w", err)
	}
	if _, err := s.dead.addAll(dead, false); err != nil {
		return fmt.Errorf("memory: settle retry: %w", err)
	}
	return nil
}

// Release drops holder's claims.
func (s *Retries) Release(ctx context.Context, holder string) (int64, error) {
	return s.eachOfHolder(ctx, "release", holder, func(it *retryItem) { it.holder, it.until = "", time.Time{} })
}

// Renew extends holder's claims to until.
func (s *Retries) Renew(ctx context.Context, holder string, until time.Time) (int64, error) {
	return s.eachOfHolder(ctx, "renew", holder, func(it *retryItem) { it.until = until })
}

// eachOfHolder applies change to every item holder claimed and returns
// how many; verb names the call in errors.
func (s *Retries) eachOfHolder(ctx context.Context, verb, holder string, change func(*retryItem)) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("memory: %s claims of %q: %w", verb, holder, err)
	}
	if holder == "" {
		return 0, fmt.Errorf("memory: %s claims: empty holder", verb)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var n int64
	for _, it := range s.items {
		if it.holder == holder {
			change(it)
			n++
		}
	}
	return n, nil
}

// MakeDue makes the actions of endpoint in due items due at now.
func (s *Retries) MakeDue(ctx context.Context, endpoint string, now time.Time) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("memory: make %s due: %w", endpoint, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var n int64
	for _, it := range s.items {
		if it.State != ports.RetryDue || !slices.Contains(it.Endpoints, endpoint) {
			continue
		}
		changed := false
		for i := range it.Actions {
			if a := &it.Actions[i]; a.Endpoint == endpoint && a.Due.After(now) && !a.Woken {
				a.Due, a.Woken, changed = now, true, true
			}
		}
		if changed {
			derive(&it.RetryItem)
			n++
		}
	}
	return n, nil
}

// Keys calls fn for each key with parked items, under the store's lock.
func (s *Retries) Keys(ctx context.Context, fn func(ports.RetryKey) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memory: retry keys: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, ids := range s.keys {
		k.Items = int64(len(ids))
		if err := fn(k); err != nil {
			return err
		}
	}
	return nil
}

// Repair makes the first item of each key due.
func (s *Retries) Repair(ctx context.Context) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("memory: repair retries: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var n int64
	for _, ids := range s.keys {
		if head := s.items[ids[0]]; head.State == ports.RetryWaiting {
			head.State = ports.RetryDue
			n++
		}
	}
	return n, nil
}

// Counts counts items by state, observer and endpoint.
func (s *Retries) Counts(ctx context.Context) (ports.RetryCounts, error) {
	if err := ctx.Err(); err != nil {
		return ports.RetryCounts{}, fmt.Errorf("memory: count retries: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c := ports.RetryCounts{ByObserver: map[string]int64{}, ByEndpoint: map[string]int64{}}
	for _, it := range s.items {
		if it.State == ports.RetryDue {
			c.Due++
		} else {
			c.Waiting++
		}
		c.ByObserver[it.Observer]++
		for _, e := range it.Endpoints {
			c.ByEndpoint[e]++
		}
		for _, a := range it.Actions {
			if !a.FirstFailure.IsZero() && (c.OldestFailure.IsZero() || a.FirstFailure.Before(c.OldestFailure)) {
				c.OldestFailure = a.FirstFailure
			}
		}
	}
	return c, nil
}
