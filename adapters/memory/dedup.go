package memory

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/fraiseql/fraiseql-observer/ports"
)

// Deduplicator claims events within one process (the postgres-only and
// memory topologies), judging expiry by the injected clock. Safe for
// concurrent use.
//
// Its table is bounded in entries and bytes (WithMaxEntries, WithMaxBytes;
// an entry weighs its event id, its claim's token and a fixed overhead).
// Expired claims and done marks are dropped as writes come. When the table
// is full, a write evicts the oldest done marks, counted in
// Stats().Evicted. An evicted done mark is forgotten before its window
// ends: a later duplicate of that event is claimed and runs again, as
// after a restart (nothing here survives one).
//
// Live claims are never evicted: that would let a second claimer run the
// event while its holder still does. When only live claims are left, a
// claim of an event with no live entry is answered ClaimBusy (the caller
// looks again later, as for another holder's claim: the event is delayed,
// neither lost nor run twice) and a done mark of an event with no entry
// is dropped, both counted in Stats().Refused. Live claims are the events
// running in this process, which the reader's in-flight bound keeps far
// below the default count, so with the defaults this does not happen. An
// event id too heavy for the byte bound on its own is refused with an
// error.
type Deduplicator struct {
	now func() time.Time

	mu    sync.Mutex
	table table[dedupEntry]
}

type dedupEntry struct {
	token string // holder of the claim; empty for a done mark
	done  bool
}

// dedupSize is what the entry of eventID held by token (empty for a done
// mark) weighs in the table.
func dedupSize(eventID, token string) int64 {
	return int64(len(eventID)+len(token)) + entryOverhead
}

var _ ports.Deduplicator = (*Deduplicator)(nil)

// NewDeduplicator returns an empty deduplicator; now is its clock (nil
// means time.Now). Its table holds at most DefaultMaxEntries entries of
// DefaultMaxBytes bytes in all unless opts say otherwise.
func NewDeduplicator(now func() time.Time, opts ...TableOption) *Deduplicator {
	if now == nil {
		now = time.Now
	}
	return &Deduplicator{now: now, table: newTable[dedupEntry](opts)}
}

// Stats reports the table's size and the entries evicted or refused for
// room so far.
func (d *Deduplicator) Stats() TableStats {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.table.stats()
}

// Claim takes eventID for token until now+lease, extends token's own claim,
// or reports the event done or busy.
func (d *Deduplicator) Claim(ctx context.Context, eventID, token string, lease time.Duration) (ports.ClaimResult, error) {
	res, err := d.ClaimMany(ctx, []string{eventID}, token, lease)
	if err != nil {
		return 0, err
	}
	return res[0], nil
}

// ClaimMany claims every id as Claim would, under one lock.
func (d *Deduplicator) ClaimMany(ctx context.Context, eventIDs []string, token string, lease time.Duration) ([]ports.ClaimResult, error) {
	for _, id := range eventIDs {
		if err := d.checkClaim(ctx, id, token, lease); err != nil {
			return nil, err
		}
	}
	res := make([]ports.ClaimResult, len(eventIDs))
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.now()
	for i, id := range eventIDs {
		res[i] = d.claimLocked(now, id, token, lease)
	}
	return res, nil
}

func (d *Deduplicator) checkClaim(ctx context.Context, eventID, token string, lease time.Duration) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memory: claim %q: %w", eventID, err)
	}
	switch {
	case eventID == "":
		return fmt.Errorf("memory: claim: empty event id")
	case token == "":
		return fmt.Errorf("memory: claim %q: empty token", eventID)
	case lease <= 0:
		return fmt.Errorf("memory: claim %q: lease %v is not positive", eventID, lease)
	}
	return d.table.checkFits("claim", eventID, dedupSize(eventID, token))
}

func (d *Deduplicator) claimLocked(now time.Time, eventID, token string, lease time.Duration) ports.ClaimResult {
	cur, ok := d.table.get(eventID)
	if ok && now.Before(cur.until) {
		switch {
		case cur.val.done:
			return ports.ClaimDone
		case cur.val.token != token:
			return ports.ClaimBusy
		}
	}
	// Free, expired or token's own: a renewal always finds room (its entry
	// makes it), a new claim only if something but live claims can go.
	if !d.table.set(now, eventID, dedupEntry{token: token}, now.Add(lease), pinned, dedupSize(eventID, token)) {
		return ports.ClaimBusy
	}
	return ports.ClaimAcquired
}

// MarkDone records eventID as processed until now+window, replacing any
// claim.
func (d *Deduplicator) MarkDone(ctx context.Context, eventID string, window time.Duration) error {
	return d.MarkDoneMany(ctx, []string{eventID}, window)
}

// MarkDoneMany marks every id done as MarkDone would, under one lock.
func (d *Deduplicator) MarkDoneMany(ctx context.Context, eventIDs []string, window time.Duration) error {
	if len(eventIDs) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memory: mark done %q: %w", eventIDs[0], err)
	}
	if window <= 0 {
		return fmt.Errorf("memory: mark done %q: window %v is not positive", eventIDs[0], window)
	}
	for _, id := range eventIDs {
		if err := d.table.checkFits("mark done", id, dedupSize(id, "")); err != nil {
			return err
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.now()
	for _, id := range eventIDs {
		// Replacing a claim frees room; a new mark may find none left but
		// live claims, and is then dropped (counted refused).
		d.table.set(now, id, dedupEntry{done: true}, now.Add(window), evictable, dedupSize(id, ""))
	}
	return nil
}

// Release drops token's unexpired claim on eventID; anything else (another
// holder's claim, a done mark, no entry) is left as it is.
func (d *Deduplicator) Release(ctx context.Context, eventID, token string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memory: release %q: %w", eventID, err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if cur, ok := d.table.get(eventID); ok && !cur.val.done && cur.val.token == token {
		d.table.remove(eventID)
	}
	return nil
}
