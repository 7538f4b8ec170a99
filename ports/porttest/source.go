package porttest

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// SourceHarness is an event source under test plus the means to write to
// it.
//
// Append commits one event so that a later Read may return it. The suite
// appends valid events as the change log represents them (UUID ids, a
// microsecond UTC timestamp, Changes computed from Before on UPDATE, Data
// equal to the before-image on DELETE) with an empty Source; a source that
// stamps its own name must be built with an empty one for the suite.
// AppendInvalid commits one entry that cannot become an event; nil when the
// source cannot hold such entries. MaxEventBytes is the per-event limit the
// source was built with.
type SourceHarness struct {
	Source        ports.EventSource
	Append        func(ctx context.Context, ev domain.Event) error
	AppendInvalid func(ctx context.Context) error
	MaxEventBytes int64
}

// RunEventSource checks the ports.EventSource contract. newHarness must
// return an empty, isolated source on every call.
//
// A Read may legitimately hold entries back (the change log waits for older
// transactions anywhere in the cluster), so the suite reads until what it
// appended shows up, within a generous correctness timeout.
func RunEventSource(t *testing.T, newHarness func(t *testing.T) SourceHarness) {
	t.Helper()

	t.Run("EmptySource", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t)
		b, err := h.Source.Read(t.Context(), ports.Position{}, ports.ReadLimit{Rows: 10})
		if err != nil {
			t.Fatalf("Read: %v", err)
		}
		if len(b.Records) != 0 || b.End != (ports.Position{}) {
			t.Fatalf("Read of an empty source = %d records, End %+v; want none, End zero", len(b.Records), b.End)
		}
	})

	t.Run("AppendedEventsComeBackInOrderWithAllFields", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t)
		want := []domain.Event{
			sampleEvent(1, domain.EventInsert),
			sampleEvent(2, domain.EventUpdate),
			sampleEvent(3, domain.EventDelete),
			sampleEvent(4, domain.EventCustom),
			sampleEvent(5, domain.EventInsert),
		}
		want[4].Data = map[string]any{}
		for _, ev := range want {
			mustAppend(t, h, ev)
		}
		got, _ := readUntil(t, h.Source, ports.Position{}, 100, len(want))
		for i := range want {
			if got[i].Err != nil {
				t.Fatalf("record %d: Err = %v", i, got[i].Err)
			}
			if d := diffEvent(want[i], got[i].Event); d != "" {
				t.Fatalf("record %d (%s): %s", i, want[i].EventType, d)
			}
		}
	})

	t.Run("ReadAfterEndReturnsOnlyNewer", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t)
		first := []domain.Event{sampleEvent(1, domain.EventInsert), sampleEvent(2, domain.EventInsert)}
		for _, ev := range first {
			mustAppend(t, h, ev)
		}
		_, end := readUntil(t, h.Source, ports.Position{}, 100, len(first))
		b := mustRead(t, h.Source, end, 100)
		if len(b.Records) != 0 || b.End != end {
			t.Fatalf("Read at End = %d records, End %+v; want none, End %+v", len(b.Records), b.End, end)
		}
		second := []domain.Event{sampleEvent(3, domain.EventUpdate), sampleEvent(4, domain.EventDelete)}
		for _, ev := range second {
			mustAppend(t, h, ev)
		}
		got, _ := readUntil(t, h.Source, end, 100, len(second))
		for i := range second {
			if !end.Less(got[i].Position) {
				t.Fatalf("record %d at %+v, not after %+v", i, got[i].Position, end)
			}
			if d := diffEvent(second[i], got[i].Event); d != "" {
				t.Fatalf("record %d: %s", i, d)
			}
		}
		all := mustRead(t, h.Source, ports.Position{}, 100)
		if len(all.Records) != len(first)+len(second) {
			t.Fatalf("Read from the start = %d records, want %d", len(all.Records), len(first)+len(second))
		}
	})

	t.Run("LimitIsRespectedAndEndIsLastExamined", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t)
		var want []domain.Event
		for i := range 5 {
			ev := sampleEvent(i, domain.EventInsert)
			want = append(want, ev)
			mustAppend(t, h, ev)
		}
		all, _ := readUntil(t, h.Source, ports.Position{}, 100, len(want)) // all five are visible now
		after := ports.Position{}
		for i, size := range []int{2, 2, 1, 0} {
			b := mustRead(t, h.Source, after, 2)
			if len(b.Records) != size {
				t.Fatalf("read #%d with limit 2 = %d records, want %d", i, len(b.Records), size)
			}
			checkBatch(t, b, after, 2)
			for j, r := range b.Records {
				k := 2*i + j
				if r.Position != all[k].Position || r.Event.ID != want[k].ID {
					t.Fatalf("read #%d record %d = %s at %+v, want %s at %+v", i, j, r.Event.ID, r.Position, want[k].ID, all[k].Position)
				}
			}
			after = b.End
		}
		if after != all[len(all)-1].Position {
			t.Fatalf("final End = %+v, want the last record's %+v", after, all[len(all)-1].Position)
		}
	})

	t.Run("ConcurrentAppendsAreAllRead", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t)
		const writers, each = 4, 5
		var (
			wg   sync.WaitGroup
			mu   sync.Mutex
			sent = map[string]bool{}
			errs = make(chan error, writers*each)
		)
		for w := range writers {
			wg.Go(func() {
				for i := range each {
					ev := sampleEvent(w*each+i, domain.EventInsert)
					mu.Lock()
					sent[ev.ID] = true
					mu.Unlock()
					if err := h.Append(t.Context(), ev); err != nil {
						errs <- err
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("Append: %v", err)
		}
		got, _ := readUntil(t, h.Source, ports.Position{}, 7, writers*each)
		for _, r := range got {
			if !sent[r.Event.ID] {
				t.Fatalf("event %q read twice or never appended", r.Event.ID)
			}
			delete(sent, r.Event.ID)
		}
	})

	t.Run("WaitReturnsAfterAppend", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t)
		mustRead(t, h.Source, ports.Position{}, 10)
		ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- h.Source.Wait(ctx) }()
		time.Sleep(50 * time.Millisecond) // give Wait a chance to block first; either order must work
		mustAppend(t, h, sampleEvent(1, domain.EventInsert))
		if err := <-done; err != nil {
			t.Fatalf("Wait after Append = %v, want nil within %v", err, waitTimeout)
		}
		readUntil(t, h.Source, ports.Position{}, 10, 1)
	})

	t.Run("WaitReturnsContextError", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t)
		ctx, cancel := context.WithCancel(t.Context())
		time.AfterFunc(100*time.Millisecond, cancel)
		deadline := time.Now().Add(waitTimeout)
		for {
			// Spurious wake-ups are allowed: wait again until the error shows.
			err := h.Source.Wait(ctx)
			if err != nil {
				if !errors.Is(err, context.Canceled) {
					t.Fatalf("Wait with a cancelled ctx = %v, want context.Canceled", err)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("Wait kept returning nil %v after its ctx was cancelled", waitTimeout)
			}
		}
	})

	t.Run("InvalidEntryIsARecordAndTheStreamContinues", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t)
		if h.AppendInvalid == nil {
			t.Skip("source cannot hold invalid entries")
		}
		before, after := sampleEvent(1, domain.EventInsert), sampleEvent(2, domain.EventUpdate)
		mustAppend(t, h, before)
		if err := h.AppendInvalid(t.Context()); err != nil {
			t.Fatalf("AppendInvalid: %v", err)
		}
		mustAppend(t, h, after)
		got, _ := readUntil(t, h.Source, ports.Position{}, 100, 3)
		if got[0].Err != nil || got[2].Err != nil {
			t.Fatalf("valid records carry errors: %v, %v", got[0].Err, got[2].Err)
		}
		if !errors.Is(got[1].Err, domain.ErrInvalidEvent) {
			t.Fatalf("invalid record Err = %v, want one wrapping domain.ErrInvalidEvent", got[1].Err)
		}
		if len(got[1].Raw) == 0 {
			t.Fatal("invalid record has no Raw bytes")
		}
		if d := diffEvent(before, got[0].Event); d != "" {
			t.Fatalf("record before the invalid one: %s", d)
		}
		if d := diffEvent(after, got[2].Event); d != "" {
			t.Fatalf("record after the invalid one: %s", d)
		}
	})

	t.Run("ByteBudgetEndsARead", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t)
		for i := range 5 {
			ev := sampleEvent(i, domain.EventInsert)
			ev.Data["blob"] = strings.Repeat("x", 1000)
			mustAppend(t, h, ev)
		}
		all, _ := readUntil(t, h.Source, ports.Position{}, 100, 5)
		size := all[0].Size
		if size < 1000 {
			t.Fatalf("Size = %d, want the payload's weight (at least the 1000-byte blob)", size)
		}
		for _, tc := range []struct {
			budget int64
			want   int
		}{
			{2*size + size/2, 2}, // stops before the record that would go over
			{2 * size, 2},        // exactly two fit
			{1, 1},               // the first record always comes, so a read makes progress
			{0, 5},               // no byte bound
		} {
			b, err := h.Source.Read(t.Context(), ports.Position{}, ports.ReadLimit{Rows: 100, Bytes: tc.budget})
			if err != nil {
				t.Fatalf("Read: %v", err)
			}
			if len(b.Records) != tc.want || b.End != b.Records[len(b.Records)-1].Position {
				t.Fatalf("byte budget %d (records of %d bytes): %d records, End %+v; want %d ending at the last", tc.budget, size, len(b.Records), b.End, tc.want)
			}
		}
	})

	t.Run("OversizeEntryIsAnInvalidRecordWithoutItsPayload", func(t *testing.T) {
		t.Parallel()
		h, big, rec := readOversize(t, newHarness(t), func(ev *domain.Event, limit int) { ev.Data["blob"] = strings.Repeat("y", limit) })
		if !errors.Is(rec.Err, ports.ErrEventTooLarge) || !errors.Is(rec.Err, domain.ErrInvalidEvent) {
			t.Fatalf("oversize record Err = %v, want ErrEventTooLarge and ErrInvalidEvent", rec.Err)
		}
		if rec.Event.ID != big.ID || len(rec.Raw) == 0 {
			t.Fatalf("oversize record = id %q, raw %d bytes; want its id and what identifies it", rec.Event.ID, len(rec.Raw))
		}
		if int64(len(rec.Raw)) >= h.MaxEventBytes || rec.Size >= h.MaxEventBytes || len(rec.Event.Data) > 0 {
			t.Fatalf("oversize record carries its payload: raw %d bytes, size %d, data %d keys", len(rec.Raw), rec.Size, len(rec.Event.Data))
		}
	})

	// The text fields weigh with the payload: a user id (the change log's
	// fk_contact) over the limit makes the event too large, and the
	// record does not carry it whole.
	t.Run("OversizeTextFieldIsAnInvalidRecordWithoutIt", func(t *testing.T) {
		t.Parallel()
		h, big, rec := readOversize(t, newHarness(t), func(ev *domain.Event, limit int) { ev.UserID = strings.Repeat("u", limit) })
		if !errors.Is(rec.Err, ports.ErrEventTooLarge) || rec.Event.ID != big.ID {
			t.Fatalf("record of a %d-byte user id: id %q, Err %v; want ErrEventTooLarge", len(big.UserID), rec.Event.ID, rec.Err)
		}
		if int64(len(rec.Raw)) >= h.MaxEventBytes || rec.Size >= h.MaxEventBytes || rec.Event.UserID != big.UserID[:ports.OversizeTextChars] {
			t.Fatalf("oversize record: raw %d bytes, size %d, user id %d bytes; want the user id's first %d characters", len(rec.Raw), rec.Size, len(rec.Event.UserID), ports.OversizeTextChars)
		}
	})
}

// readOversize appends an event grown over h's per-event limit by grow
// (given the limit) and a small one after it, reads both, checks that the
// small one flows, and returns the grown event and the record read for
// it. It skips the test when the harness does not say the limit.
func readOversize(t *testing.T, h SourceHarness, grow func(ev *domain.Event, limit int)) (SourceHarness, domain.Event, ports.Record) {
	t.Helper()
	if h.MaxEventBytes == 0 {
		t.Skip("the harness does not say its source's per-event limit")
	}
	big := sampleEvent(1, domain.EventInsert)
	grow(&big, int(h.MaxEventBytes))
	small := sampleEvent(2, domain.EventInsert)
	mustAppend(t, h, big)
	mustAppend(t, h, small)
	got, _ := readUntil(t, h.Source, ports.Position{}, 100, 2)
	if got[1].Err != nil || got[1].Event.ID != small.ID {
		t.Fatalf("record after the oversize one = %+v", got[1])
	}
	return h, big, got[0]
}

func mustAppend(t *testing.T, h SourceHarness, ev domain.Event) {
	t.Helper()
	if err := h.Append(t.Context(), ev); err != nil {
		t.Fatalf("Append(%s): %v", ev.ID, err)
	}
}

func mustRead(t *testing.T, src ports.EventSource, after ports.Position, limit int) ports.Batch {
	t.Helper()
	b, err := src.Read(t.Context(), after, ports.ReadLimit{Rows: limit})
	if err != nil {
		t.Fatalf("Read(%+v, %d): %v", after, limit, err)
	}
	checkBatch(t, b, after, limit)
	return b
}

// checkBatch asserts what holds for every batch of a source the suite
// wrote: at most limit records, positions strictly increasing after
// `after`, and End at the last record (the suite writes no skipped
// entries) or at `after` when empty.
func checkBatch(t *testing.T, b ports.Batch, after ports.Position, limit int) {
	t.Helper()
	if len(b.Records) > limit {
		t.Fatalf("Read(%+v, %d) returned %d records", after, limit, len(b.Records))
	}
	prev := after
	for i, r := range b.Records {
		if !prev.Less(r.Position) {
			t.Fatalf("record %d at %+v does not follow %+v", i, r.Position, prev)
		}
		prev = r.Position
	}
	if b.End != prev {
		t.Fatalf("Read(%+v, %d): End = %+v, want %+v (the last record, or after when empty)", after, limit, b.End, prev)
	}
}

// readUntil reads from after, continuing from each batch's End, until n
// records arrived; more than n is a failure.
func readUntil(t *testing.T, src ports.EventSource, after ports.Position, limit, n int) ([]ports.Record, ports.Position) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	var got []ports.Record
	for len(got) < n {
		b := mustRead(t, src, after, limit)
		got = append(got, b.Records...)
		after = b.End
		if len(b.Records) > 0 {
			continue
		}
		if time.Now().After(deadline) {
			t.Fatalf("read %d of %d records within %v", len(got), n, waitTimeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(got) != n {
		t.Fatalf("read %d records, want %d", len(got), n)
	}
	if extra := mustRead(t, src, after, limit); len(extra.Records) > 0 {
		t.Fatalf("read %d more records than the %d appended", len(extra.Records), n)
	}
	return got, after
}
