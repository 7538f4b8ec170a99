package memory

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/fraiseql/fraiseql-observer/ports"
)

// defaultDeliveryCap bounds the records a DeliveryLog keeps, and
// DefaultDeliveryBytes their bytes.
const (
	defaultDeliveryCap   = 100_000
	DefaultDeliveryBytes = 64 << 20 // 64 MiB
)

// DeliveryLog keeps delivery records in memory, for the memory topology:
// the newest maxRecords within DefaultDeliveryBytes (their texts plus an
// overhead each; older ones are dropped first), lost on restart. Safe for
// concurrent use.
type DeliveryLog struct {
	max      int
	maxBytes int64

	mu      sync.Mutex
	lastID  int64
	records []ports.DeliveryRecord // ascending ID
	bytes   int64                  // deliveryWeight of records
}

// deliveryWeight is what r weighs against the byte bound.
func deliveryWeight(r ports.DeliveryRecord) int64 {
	return int64(len(r.EventID)+len(r.Observer)+len(r.Action)+len(r.ActionType)+len(r.Endpoint)+
		len(r.Trigger)+len(r.Outcome)+len(r.Error)+len(r.Response)) + 128
}

var _ ports.DeliveryLog = (*DeliveryLog)(nil)

// NewDeliveryLog returns an empty log keeping at most maxRecords (0 means
// 100 000).
func NewDeliveryLog(maxRecords int) *DeliveryLog {
	if maxRecords <= 0 {
		maxRecords = defaultDeliveryCap
	}
	return &DeliveryLog{max: maxRecords, maxBytes: DefaultDeliveryBytes}
}

// WithMaxBytes sets the byte bound (0 keeps the default) and returns l.
func (l *DeliveryLog) WithMaxBytes(b int64) *DeliveryLog {
	l.mu.Lock()
	defer l.mu.Unlock()
	if b > 0 {
		l.maxBytes = b
	}
	return l
}

// Append stores records with new IDs.
func (l *DeliveryLog) Append(ctx context.Context, records []ports.DeliveryRecord) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memory: append deliveries: %w", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range records {
		l.lastID++
		r.ID = l.lastID
		l.records = append(l.records, r)
		l.bytes += deliveryWeight(r)
	}
	over := max(len(l.records)-l.max, 0)
	for _, r := range l.records[:over] {
		l.bytes -= deliveryWeight(r)
	}
	for over < len(l.records)-1 && l.bytes > l.maxBytes { // the newest stays
		l.bytes -= deliveryWeight(l.records[over])
		over++
	}
	if over > 0 {
		l.records = append(l.records[:0:0], l.records[over:]...)
	}
	return nil
}

// List returns the records matching f, newest first.
func (l *DeliveryLog) List(ctx context.Context, f ports.DeliveryFilter) ([]ports.DeliveryRecord, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("memory: list deliveries: %w", err)
	}
	if f.Limit < 0 {
		return nil, fmt.Errorf("memory: list deliveries: limit %d is negative", f.Limit)
	}
	limit := f.Limit
	if limit == 0 {
		limit = defaultListLimit
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []ports.DeliveryRecord
	for i := len(l.records) - 1; i >= 0 && len(out) < limit; i-- {
		if r := l.records[i]; matches(r, f) {
			out = append(out, r)
		}
	}
	return out, nil
}

func matches(r ports.DeliveryRecord, f ports.DeliveryFilter) bool {
	failed := r.Outcome != ports.DeliverySucceeded
	switch {
	case f.EventID != "" && r.EventID != f.EventID,
		f.Observer != "" && r.Observer != f.Observer,
		f.Endpoint != "" && r.Endpoint != f.Endpoint,
		f.Failed && !failed,
		f.Succeeded && failed,
		f.StatusCode != 0 && r.StatusCode != f.StatusCode,
		!f.Since.IsZero() && r.At.Before(f.Since),
		!f.Until.IsZero() && !r.At.Before(f.Until),
		f.BeforeID != 0 && r.ID >= f.BeforeID:
		return false
	}
	return true
}

// Prune deletes the records older than before.
func (l *DeliveryLog) Prune(ctx context.Context, before time.Time) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("memory: prune deliveries: %w", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	kept := l.records[:0]
	for _, r := range l.records {
		if !r.At.Before(before) {
			kept = append(kept, r)
		}
	}
	n := int64(len(l.records) - len(kept))
	clear(l.records[len(kept):])
	l.records = kept
	l.bytes = 0
	for _, r := range kept {
		l.bytes += deliveryWeight(r)
	}
	return n, nil
}
