package memory

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fraiseql/fraiseql-observer/ports"
)

// Checkpoints keeps reader positions in memory, with the time of each save
// by its clock. Safe for concurrent use.
type Checkpoints struct {
	now   func() time.Time
	lease *Lease // SaveFenced's fence; nil refuses every fenced save

	mu  sync.RWMutex
	pos map[string]ports.CheckpointRecord
}

var (
	_ ports.CheckpointStore  = (*Checkpoints)(nil)
	_ ports.CheckpointLister = (*Checkpoints)(nil)
)

// NewCheckpoints returns an empty store on the wall clock.
func NewCheckpoints() *Checkpoints { return NewCheckpointsWithClock(nil) }

// NewCheckpointsWithClock returns an empty store whose save times come
// from now (nil means time.Now).
func NewCheckpointsWithClock(now func() time.Time) *Checkpoints {
	if now == nil {
		now = time.Now
	}
	return &Checkpoints{now: now, pos: map[string]ports.CheckpointRecord{}}
}

// NewCheckpointsWithLease returns an empty store on the wall clock whose
// SaveFenced is fenced by lease (the store's "lease table").
func NewCheckpointsWithLease(lease *Lease) *Checkpoints {
	c := NewCheckpointsWithClock(nil)
	c.lease = lease
	return c
}

// Load returns the position saved for name; ok is false when there is none.
func (c *Checkpoints) Load(ctx context.Context, name string) (ports.Position, bool, error) {
	if err := ctx.Err(); err != nil {
		return ports.Position{}, false, fmt.Errorf("memory: load checkpoint %q: %w", name, err)
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	r, ok := c.pos[name]
	return r.Position, ok, nil
}

// Save stores pos for name, replacing what was there.
func (c *Checkpoints) Save(ctx context.Context, name string, pos ports.Position) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memory: save checkpoint %q: %w", name, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pos[name] = ports.CheckpointRecord{Name: name, Position: pos, UpdatedAt: c.now()}
	return nil
}

// SaveFenced stores pos for name only while fence.Holder holds the
// unexpired lease fence.Lease of the store's Lease (checked under the
// lease table's lock, so no Acquire slips in between); otherwise it stores
// nothing and returns an error wrapping ports.ErrLeaseLost. A store made
// without a Lease refuses every fenced save.
func (c *Checkpoints) SaveFenced(ctx context.Context, name string, pos ports.Position, fence ports.Fence) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memory: save checkpoint %q: %w", name, err)
	}
	if c.lease == nil {
		return fmt.Errorf("memory: save checkpoint %q: no lease table to fence with: %w", name, ports.ErrLeaseLost)
	}
	c.lease.mu.Lock()
	defer c.lease.mu.Unlock()
	if !c.lease.heldLocked(fence.Lease, fence.Holder) {
		return fmt.Errorf("memory: save checkpoint %q: %s does not hold lease %q: %w", name, fence.Holder, fence.Lease, ports.ErrLeaseLost)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pos[name] = ports.CheckpointRecord{Name: name, Position: pos, UpdatedAt: c.now()}
	return nil
}

// List returns every stored checkpoint in name order.
func (c *Checkpoints) List(ctx context.Context) ([]ports.CheckpointRecord, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("memory: list checkpoints: %w", err)
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]ports.CheckpointRecord, 0, len(c.pos))
	for _, r := range c.pos {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b ports.CheckpointRecord) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}
