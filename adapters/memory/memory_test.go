package memory_test

import (
	"context"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observer/adapters/memory"
	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/ports"
	"github.com/fraiseql/fraiseql-observer/ports/porttest"
)

func TestCheckpointsConformance(t *testing.T) {
	t.Parallel()
	porttest.RunCheckpointStore(t, func(*testing.T) ports.CheckpointStore { return memory.NewCheckpoints() })
}

func TestCheckpointsFencedConformance(t *testing.T) {
	t.Parallel()
	porttest.RunFencedCheckpointStore(t, func(*testing.T) (ports.CheckpointStore, ports.Lease) {
		l := memory.NewLease(time.Now)
		return memory.NewCheckpointsWithLease(l), l
	})
}

func TestDeadLettersConformance(t *testing.T) {
	t.Parallel()
	porttest.RunDeadLetterStore(t, func(*testing.T) ports.DeadLetterStore { return memory.NewDeadLetters(time.Now) })
}

func TestLeaseConformance(t *testing.T) {
	t.Parallel()
	porttest.RunLease(t, func(*testing.T) ports.Lease { return memory.NewLease(time.Now) })
}

func TestSourceConformance(t *testing.T) {
	t.Parallel()
	porttest.RunEventSource(t, func(t *testing.T) porttest.SourceHarness {
		// A long poll interval proves that appends, not polling, wake Wait.
		const maxEvent = 64 << 10
		src, err := memory.NewSource(time.Now, memory.SourceConfig{PollInterval: time.Minute, MaxEventBytes: maxEvent})
		if err != nil {
			t.Fatal(err)
		}
		return porttest.SourceHarness{
			MaxEventBytes: maxEvent,
			Source:        src,
			Append: func(ctx context.Context, ev domain.Event) error {
				_, err := src.Append(ctx, ev)
				return err
			},
			AppendInvalid: func(ctx context.Context) error {
				_, err := src.AppendRaw(ctx, []byte(`{"id":"x-1","entity_type":"Order","event_type":"BOGUS"}`))
				return err
			},
		}
	})
}

func newSource(t *testing.T, now func() time.Time, poll time.Duration) *memory.Source {
	t.Helper()
	src, err := memory.NewSource(now, memory.SourceConfig{PollInterval: poll})
	if err != nil {
		t.Fatalf("NewSource: %v", err)
	}
	return src
}

func TestCheckpointListerConformance(t *testing.T) {
	t.Parallel()
	porttest.RunCheckpointLister(t, func(*testing.T) porttest.ListingCheckpointStore { return memory.NewCheckpoints() })
}

func TestLeaseInspectorConformance(t *testing.T) {
	t.Parallel()
	porttest.RunLeaseInspector(t, func(*testing.T) porttest.InspectableLease { return memory.NewLease(time.Now) })
}

func TestChangeLogInspectorConformance(t *testing.T) {
	t.Parallel()
	porttest.RunChangeLogInspector(t, func(t *testing.T) porttest.InspectorHarness {
		src := newSource(t, time.Now, time.Minute)
		return porttest.InspectorHarness{
			Inspector: src,
			Source:    src,
			Append: func(ctx context.Context, ev domain.Event) error {
				_, err := src.Append(ctx, ev)
				return err
			},
		}
	})
}

// An entry that is not an event has no timestamp: FirstSince takes the
// time it was appended.
func TestSourceFirstSinceInvalidEntry(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	src := newSource(t, func() time.Time { return now }, time.Minute)
	pos, err := src.AppendRaw(t.Context(), []byte(`{"id":"x-1","entity_type":"Order","event_type":"BOGUS"}`))
	if err != nil {
		t.Fatal(err)
	}
	if got, ok, err := src.FirstSince(t.Context(), now); err != nil || !ok || got != pos {
		t.Errorf("FirstSince(append time) = %s, %v, %v; want %s", got, ok, err, pos)
	}
	if _, ok, err := src.FirstSince(t.Context(), now.Add(time.Second)); err != nil || ok {
		t.Errorf("FirstSince(after the append) = %v, %v; want none", ok, err)
	}
}
