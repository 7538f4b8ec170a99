package memory

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/fraiseql/fraiseql-observer/ports"
)

// minSweepSize is the number of entries below which expired ones are not
// swept: small tables are cheaper to keep than to scan.
const minSweepSize = 1024

// Deduplicator claims events within one process (the postgres-only and
// memory topologies), judging expiry by the injected clock. Expired claims
// and done marks are swept lazily when the table has doubled since the last
// sweep, so memory stays proportional to the live entries. Safe for
// concurrent use.
type Deduplicator struct {
	now func() time.Time

	mu      sync.Mutex
	entries map[string]dedupEntry
	sweepAt int
}

type dedupEntry struct {
	token string // holder of the claim; empty for a done mark
	done  bool
	until time.Time
}

var _ ports.Deduplicator = (*Deduplicator)(nil)

// NewDeduplicator returns an empty deduplicator; now is its clock (nil
// means time.Now).
func NewDeduplicator(now func() time.Time) *Deduplicator {
	if now == nil {
		now = time.Now
	}
	return &Deduplicator{now: now, entries: map[string]dedupEntry{}, sweepAt: minSweepSize}
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
		if err := checkClaim(ctx, id, token, lease); err != nil {
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

func checkClaim(ctx context.Context, eventID, token string, lease time.Duration) error {
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
	return nil
}

func (d *Deduplicator) claimLocked(now time.Time, eventID, token string, lease time.Duration) ports.ClaimResult {
	cur, ok := d.entries[eventID]
	if ok && now.Before(cur.until) {
		switch {
		case cur.done:
			return ports.ClaimDone
		case cur.token != token:
			return ports.ClaimBusy
		}
	}
	d.entries[eventID] = dedupEntry{token: token, until: now.Add(lease)}
	if !ok {
		d.sweepLocked(now)
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
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.now()
	for _, id := range eventIDs {
		_, existed := d.entries[id]
		d.entries[id] = dedupEntry{done: true, until: now.Add(window)}
		if !existed {
			d.sweepLocked(now)
		}
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
	if cur, ok := d.entries[eventID]; ok && !cur.done && cur.token == token {
		delete(d.entries, eventID)
	}
	return nil
}

// sweepLocked drops expired entries once the table has grown to sweepAt,
// then sets the next threshold to twice the live entries.
func (d *Deduplicator) sweepLocked(now time.Time) {
	if len(d.entries) < d.sweepAt {
		return
	}
	for id, e := range d.entries {
		if !now.Before(e.until) {
			delete(d.entries, id)
		}
	}
	d.sweepAt = max(minSweepSize, 2*len(d.entries))
}
