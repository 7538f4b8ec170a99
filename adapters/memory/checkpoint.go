package memory

import (
	"context"
	"fmt"
	"sync"

	"github.com/fraiseql/fraiseql-observer/ports"
)

// Checkpoints keeps reader positions in memory. Safe for concurrent use.
type Checkpoints struct {
	mu  sync.RWMutex
	pos map[string]ports.Position
}

var _ ports.CheckpointStore = (*Checkpoints)(nil)

// NewCheckpoints returns an empty store.
func NewCheckpoints() *Checkpoints {
	return &Checkpoints{pos: map[string]ports.Position{}}
}

// Load returns the position saved for name; ok is false when there is none.
func (c *Checkpoints) Load(ctx context.Context, name string) (ports.Position, bool, error) {
	if err := ctx.Err(); err != nil {
		return ports.Position{}, false, fmt.Errorf("memory: load checkpoint %q: %w", name, err)
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	p, ok := c.pos[name]
	return p, ok, nil
}

// Save stores pos for name, replacing what was there.
func (c *Checkpoints) Save(ctx context.Context, name string, pos ports.Position) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memory: save checkpoint %q: %w", name, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pos[name] = pos
	return nil
}
