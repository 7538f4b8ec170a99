package memory

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/fraiseql/fraiseql-observer/ports"
)

// Lease grants named leases within one process, judging expiry by the
// injected clock. Safe for concurrent use.
type Lease struct {
	now func() time.Time

	mu     sync.Mutex
	leases map[string]lease
}

type lease struct {
	holder string
	until  time.Time
}

var (
	_ ports.Lease          = (*Lease)(nil)
	_ ports.LeaseInspector = (*Lease)(nil)
)

// NewLease returns a lease table with no holders; now is its clock (nil
// means time.Now).
func NewLease(now func() time.Time) *Lease {
	if now == nil {
		now = time.Now
	}
	return &Lease{now: now, leases: map[string]lease{}}
}

// Acquire takes name for holder when it is free or expired, or renews it
// when holder has it; either way it is held until now+ttl.
func (l *Lease) Acquire(ctx context.Context, name, holder string, ttl time.Duration) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, fmt.Errorf("memory: acquire lease %q: %w", name, err)
	}
	if ttl <= 0 {
		return false, fmt.Errorf("memory: acquire lease %q: ttl %v is not positive", name, ttl)
	}
	if holder == "" {
		return false, fmt.Errorf("memory: acquire lease %q: empty holder", name)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if cur, ok := l.leases[name]; ok && cur.holder != holder && now.Before(cur.until) {
		return false, nil
	}
	l.leases[name] = lease{holder: holder, until: now.Add(ttl)}
	return true, nil
}

// heldLocked reports whether holder has an unexpired lease on name; l.mu
// must be held.
func (l *Lease) heldLocked(name, holder string) bool {
	cur, ok := l.leases[name]
	return ok && cur.holder == holder && l.now().Before(cur.until)
}

// Release frees name if holder has it; otherwise it does nothing.
func (l *Lease) Release(ctx context.Context, name, holder string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memory: release lease %q: %w", name, err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if cur, ok := l.leases[name]; ok && cur.holder == holder {
		delete(l.leases, name)
	}
	return nil
}

// State reads the lease called name. An expired lease keeps naming its
// last holder, with Active false.
func (l *Lease) State(ctx context.Context, name string) (ports.LeaseState, error) {
	if err := ctx.Err(); err != nil {
		return ports.LeaseState{}, fmt.Errorf("memory: read lease %q: %w", name, err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	st := ports.LeaseState{Name: name, Now: l.now()}
	if cur, ok := l.leases[name]; ok {
		st.Holder, st.ExpiresAt, st.Active = cur.holder, cur.until, st.Now.Before(cur.until)
	}
	return st, nil
}
