package memory

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// SourceConfig configures a Source.
type SourceConfig struct {
	// PollInterval bounds how long Wait blocks without an append (default
	// 1s). Appends wake waiters at once; the interval is only a backstop.
	PollInterval time.Duration
	// MaxEventBytes is the per-event limit (default 1 MiB): an event whose
	// data and before weigh more, as JSON, is stored without them, as an
	// invalid entry (ports.ErrEventTooLarge).
	MaxEventBytes int64
	// MaxEntries and MaxBytes bound the log (defaults DefaultLogEntries
	// and DefaultLogBytes; the bytes are each entry's weight, logWeight):
	// the log keeps every entry for replay, so an append past either is
	// refused with ErrLogFull rather than growing the process without end.
	MaxEntries int
	MaxBytes   int64
}

// The default bounds of the log.
const (
	DefaultLogEntries = 1 << 20   // 1 048 576
	DefaultLogBytes   = 512 << 20 // 512 MiB
)

// logEntryOverhead is what an entry weighs besides its payload: the
// record, its event's fields and its timestamp, about.
const logEntryOverhead = 512

// ErrLogFull is the error of an append past the log's bounds (SourceConfig
// MaxEntries, MaxBytes). It wraps ports.ErrUnavailable: the service takes
// no more events until it restarts (the memory topology keeps nothing
// across restarts).
var ErrLogFull = fmt.Errorf("memory: the event log is full: %w", ports.ErrUnavailable)

// defaultMaxEventBytes is the change log's default limit too.
const defaultMaxEventBytes = 1 << 20

// Source is an append-only in-memory event log implementing
// ports.EventSource. Entry n (counting from 1) sits at Position{Seq: n}.
// Safe for concurrent use.
type Source struct {
	now        func() time.Time
	poll       time.Duration
	maxEvent   int64
	maxEntries int
	maxBytes   int64

	mu      sync.Mutex
	entries []ports.Record
	created []time.Time   // per entry: the event's timestamp, else when it was appended
	notify  chan struct{} // closed and replaced on every append
	read    int64         // Seq of the End of the latest Read
	bytes   int64         // the entries' weight (see SourceConfig.MaxBytes)
}

var (
	_ ports.EventSource        = (*Source)(nil)
	_ ports.ChangeLogInspector = (*Source)(nil)
)

// NewSource returns an empty log. now stamps events that have no
// timestamp; nil means time.Now.
func NewSource(now func() time.Time, cfg SourceConfig) (*Source, error) {
	if cfg.PollInterval < 0 {
		return nil, fmt.Errorf("memory: new source: poll interval %v is negative", cfg.PollInterval)
	}
	if cfg.MaxEventBytes < 0 || cfg.MaxEntries < 0 || cfg.MaxBytes < 0 {
		return nil, fmt.Errorf("memory: new source: max event bytes %d, max entries %d and max bytes %d must not be negative",
			cfg.MaxEventBytes, cfg.MaxEntries, cfg.MaxBytes)
	}
	if now == nil {
		now = time.Now
	}
	return &Source{
		now:        now,
		poll:       cmp.Or(cfg.PollInterval, time.Second),
		maxEvent:   cmp.Or(cfg.MaxEventBytes, defaultMaxEventBytes),
		maxEntries: cmp.Or(cfg.MaxEntries, DefaultLogEntries),
		maxBytes:   cmp.Or(cfg.MaxBytes, DefaultLogBytes),
		notify:     make(chan struct{}),
	}, nil
}

// Append validates ev and adds it to the log. An event without ID gets a
// random UUID, one without Timestamp the clock's now; the event type is
// upper-cased. An event that is not valid (an event type other than
// INSERT, UPDATE, DELETE or CUSTOM, an empty entity type) is refused with
// an error wrapping domain.ErrInvalidEvent and nothing is stored.
func (s *Source) Append(ctx context.Context, ev domain.Event) (ports.Position, error) {
	if err := ctx.Err(); err != nil {
		return ports.Position{}, fmt.Errorf("memory: append event: %w", err)
	}
	ev, err := s.normalize(cloneEvent(ev))
	if err != nil {
		return ports.Position{}, fmt.Errorf("memory: append event: %w", err)
	}
	return s.add(ports.Record{Event: ev})
}

// AppendRaw decodes raw as an event envelope (domain.DecodeEvent, with the
// defaults of Append) and adds it to the log. Input that does not decode is
// stored too, as an invalid entry that Read returns with Err wrapping
// domain.ErrInvalidEvent and Raw holding the bytes, so it reaches the
// dead-letter queue like a bad change-log row. The error is non-nil only
// when nothing was stored; callers that want to refuse bad input up front
// decode it themselves and call Append.
func (s *Source) AppendRaw(ctx context.Context, raw []byte) (ports.Position, error) {
	if err := ctx.Err(); err != nil {
		return ports.Position{}, fmt.Errorf("memory: append raw event: %w", err)
	}
	ev, err := s.decode(raw)
	if err != nil {
		// Not an error of the call: the bad input is stored as an invalid
		// entry, which readers receive with Err set.
		return s.add(ports.Record{Event: ev, Err: err, Raw: cloneBytes(raw)})
	}
	return s.add(ports.Record{Event: ev})
}

// LoadJSONLines appends one event per line of r (blank lines are skipped)
// and returns how many it appended. A line that does not decode stops the
// load with an error naming its line number; the lines before it stay
// appended, nothing after it is. (A file read at start: its fault is the
// configuration's. For input that keeps coming, see AppendJSONLines.)
func (s *Source) LoadJSONLines(ctx context.Context, r io.Reader) (int, error) {
	res, err := s.jsonLines(ctx, r, false)
	return res.Appended, err
}

// JSONLinesResult is what AppendJSONLines did.
type JSONLinesResult struct {
	Appended int // events appended
	Invalid  int // lines that were not events, refused (not stored)
	// InvalidLines are the first MaxReportedLines of them: line number
	// (from 1) and why.
	InvalidLines []InvalidLine
}

// InvalidLine is a line of JSON-lines input that was not an event.
type InvalidLine struct {
	Line  int
	Error string
}

// MaxReportedLines bounds JSONLinesResult.InvalidLines.
const MaxReportedLines = 20

// AppendJSONLines appends one event per line of r (blank lines are
// skipped). A line that does not decode does not stop the others: it is
// refused, not stored (the poster is told, by line number: the log and
// the dead-letter queue are not filled with a wrong file), and the lines
// after it go on. The error is for what stops the input (a read error,
// the log full, ctx); what was appended before it stays, and the result
// says how much.
func (s *Source) AppendJSONLines(ctx context.Context, r io.Reader) (JSONLinesResult, error) {
	return s.jsonLines(ctx, r, true)
}

// utf8BOM is the byte-order mark some editors put at the start of a file.
var utf8BOM = []byte("\xef\xbb\xbf")

func (s *Source) jsonLines(ctx context.Context, r io.Reader, skipInvalid bool) (JSONLinesResult, error) {
	br := bufio.NewReader(r)
	var res JSONLinesResult
	for lineNo := 1; ; lineNo++ {
		line, readErr := br.ReadBytes('\n')
		if readErr != nil && !errors.Is(readErr, io.EOF) {
			return res, fmt.Errorf("memory: load json lines: line %d: %w", lineNo, readErr)
		}
		if lineNo == 1 {
			line = bytes.TrimPrefix(line, utf8BOM) // an editor's byte-order mark is not part of the first event
		}
		if line = bytes.TrimSpace(line); len(line) > 0 {
			if err := ctx.Err(); err != nil {
				return res, fmt.Errorf("memory: load json lines: %w", err)
			}
			ev, err := s.decode(line)
			switch {
			case err != nil && !skipInvalid:
				return res, fmt.Errorf("memory: load json lines: line %d: %w", lineNo, err)
			case err != nil:
				res.Invalid++
				if len(res.InvalidLines) < MaxReportedLines {
					res.InvalidLines = append(res.InvalidLines, InvalidLine{Line: lineNo, Error: err.Error()})
				}
			default:
				if _, err := s.add(ports.Record{Event: ev}); err != nil {
					return res, fmt.Errorf("memory: load json lines: line %d: %w", lineNo, err)
				}
				res.Appended++
			}
		}
		if readErr != nil { // io.EOF: the input ended
			return res, nil //nolint:nilerr // io.EOF is the end, not a failure
		}
	}
}

// Event returns the entry whose event id is id.
func (s *Source) Event(ctx context.Context, id string) (ports.Record, error) {
	if err := ctx.Err(); err != nil {
		return ports.Record{}, fmt.Errorf("memory: find event %s: %w", id, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := len(s.entries) - 1; i >= 0; i-- {
		if r := s.entries[i]; r.Event.ID == id && id != "" {
			r.Event, r.Raw = cloneEvent(r.Event), cloneBytes(r.Raw)
			return r, nil
		}
	}
	return ports.Record{}, fmt.Errorf("memory: find event %s: %w", id, ports.ErrNotFound)
}

// Read returns up to limit.Rows entries after `after`, in order, within
// the byte budget limit.Bytes (the first always). Positions with a TxID
// lie after every entry of this log.
func (s *Source) Read(ctx context.Context, after ports.Position, limit ports.ReadLimit) (ports.Batch, error) {
	if limit.Rows <= 0 || limit.Bytes < 0 {
		return ports.Batch{}, fmt.Errorf("memory: read events: limit %+v: rows must be positive, bytes not negative", limit)
	}
	if err := ctx.Err(); err != nil {
		return ports.Batch{}, fmt.Errorf("memory: read events: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	total := int64(len(s.entries))
	start := min(max(after.Seq, 0), total)
	if after.TxID != 0 {
		start = total
	}
	end := min(start+int64(limit.Rows), total)
	b := ports.Batch{End: after}
	if end > start {
		b.Records = make([]ports.Record, 0, end-start)
		var weight int64
		for i, r := range s.entries[start:end] {
			weight += r.Size
			if i > 0 && limit.Bytes > 0 && weight > limit.Bytes {
				end = start + int64(i)
				break
			}
			r.Event = cloneEvent(r.Event)
			r.Raw = cloneBytes(r.Raw)
			b.Records = append(b.Records, r)
		}
		b.End = b.Records[len(b.Records)-1].Position
	}
	if after.TxID == 0 {
		s.read = max(after.Seq, end)
	}
	return b, nil
}

// Wait returns nil at once when the log holds entries after the End of the
// latest Read (so an append between a reader's Read and Wait is never
// missed), otherwise when an append happens or the poll interval passes,
// and ctx.Err() when ctx ends.
func (s *Source) Wait(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	pending := int64(len(s.entries)) > s.read
	ch := s.notify
	s.mu.Unlock()
	if pending {
		return nil
	}
	timer := time.NewTimer(s.poll)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-ch:
		return nil
	case <-timer.C:
		return nil
	}
}

// Len is the number of entries in the log.
func (s *Source) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.entries)
}

// Backlog counts the entries after `after` (none after a position with a
// TxID, which lies after every entry).
func (s *Source) Backlog(ctx context.Context, after ports.Position) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("memory: source backlog: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.countLocked(after, ports.Position{Seq: int64(len(s.entries))}), nil
}

// CountBetween counts the entries after `after` up to and including upTo.
func (s *Source) CountBetween(ctx context.Context, after, upTo ports.Position) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("memory: count entries: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.countLocked(after, upTo), nil
}

// countLocked counts entries p with after < p <= upTo; s.mu must be held.
func (s *Source) countLocked(after, upTo ports.Position) int64 {
	if after.TxID != 0 {
		return 0
	}
	first := max(after.Seq, 0) + 1 // the first entry after `after`
	last := int64(len(s.entries))
	if upTo.TxID == 0 {
		last = min(last, upTo.Seq)
	}
	return max(last-first+1, 0)
}

// FirstSince returns the position of the first entry, in log order, whose
// event timestamp (for an invalid entry: the time it was appended) is at
// or after since.
func (s *Source) FirstSince(ctx context.Context, since time.Time) (ports.Position, bool, error) {
	if err := ctx.Err(); err != nil {
		return ports.Position{}, false, fmt.Errorf("memory: find first entry since: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, at := range s.created {
		if !at.Before(since) {
			return s.entries[i].Position, true, nil
		}
	}
	return ports.Position{}, false, nil
}

// OldestTransactionAge is always 0: the log has no transactions.
func (s *Source) OldestTransactionAge(ctx context.Context) (time.Duration, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("memory: oldest transaction: %w", err)
	}
	return 0, nil
}

// logWeight is what r weighs against the log's byte bound: its payload
// twice (data and before, and the changes derived from them, which are at
// most as large), its raw input, its text fields and an overhead.
func logWeight(r *ports.Record) int64 {
	ev := &r.Event
	texts := len(ev.ID) + len(ev.EntityType) + len(ev.EntityID) + len(ev.TenantID) + len(ev.UserID) + len(ev.Source)
	return 2*r.Size + int64(len(r.Raw)+texts) + logEntryOverhead
}

// add appends r, or refuses it with ErrLogFull past the log's bounds.
func (s *Source) add(r ports.Record) (ports.Position, error) {
	s.weigh(&r)
	weight := logWeight(&r)
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.entries) >= s.maxEntries || s.bytes+weight > s.maxBytes {
		return ports.Position{}, fmt.Errorf("%w (%d entries of at most %d, %d bytes of at most %d)",
			ErrLogFull, len(s.entries), s.maxEntries, s.bytes, s.maxBytes)
	}
	s.bytes += weight
	r.Position = ports.Position{Seq: int64(len(s.entries)) + 1}
	if r.Err != nil {
		r.Err = fmt.Errorf("memory: entry %d: %w", r.Position.Seq, r.Err)
	}
	s.entries = append(s.entries, r)
	created := r.Event.Timestamp
	if created.IsZero() {
		created = s.now()
	}
	s.created = append(s.created, created)
	close(s.notify)
	s.notify = make(chan struct{})
	return r.Position, nil
}

// weigh sets r.Size: an event's data and before as JSON (as the change
// log counts object_data and object_data_before) and its text fields
// (entity type, event type, entity id, user, as the change log counts its
// text columns), an invalid entry's raw bytes. An event over the
// per-event limit becomes an invalid entry that keeps only what
// identifies it, its text fields cut to ports.OversizeTextChars characters.
func (s *Source) weigh(r *ports.Record) {
	if r.Err != nil {
		r.Size = int64(len(r.Raw))
		return
	}
	ev := r.Event
	size := int64(len(ev.EntityType) + len(ev.EventType) + len(ev.EntityID) + len(ev.UserID))
	for _, part := range []map[string]any{ev.Data, ev.Before} {
		if part != nil {
			b, _ := json.Marshal(part) // decoded JSON always encodes
			size += int64(len(b))
		}
	}
	r.Size = size
	if size <= s.maxEvent {
		return
	}
	ev = domain.Event{ID: ev.ID, EventType: domain.EventType(cut(string(ev.EventType))), EntityType: cut(ev.EntityType), EntityID: cut(ev.EntityID),
		TenantID: ev.TenantID, UserID: cut(ev.UserID), Timestamp: ev.Timestamp, Source: ev.Source}
	id := map[string]any{"id": ev.ID, "event_type": ev.EventType, "entity_type": ev.EntityType, "entity_id": ev.EntityID, "size_bytes": size}
	raw, _ := json.Marshal(id)
	*r = ports.Record{
		Event: ev,
		Err: fmt.Errorf("it is %d bytes (data and before as JSON, entity type, event type, entity id and user), over the %d-byte limit (its text fields are cut to %d characters here): %w: %w",
			size, s.maxEvent, ports.OversizeTextChars, ports.ErrEventTooLarge, domain.ErrInvalidEvent),
		Raw:  raw,
		Size: int64(len(raw)),
	}
}

// cut is s's first ports.OversizeTextChars characters.
func cut(s string) string {
	n := 0
	for i := range s {
		if n == ports.OversizeTextChars {
			return s[:i]
		}
		n++
	}
	return s
}

// normalize applies Append's defaults and validation.
func (s *Source) normalize(ev domain.Event) (domain.Event, error) {
	et, err := domain.ParseEventType(string(ev.EventType))
	if err != nil {
		return domain.Event{}, notAnEvent(err)
	}
	ev.EventType = et
	if strings.TrimSpace(ev.EntityType) == "" {
		return domain.Event{}, fmt.Errorf("empty entity_type: %w", domain.ErrInvalidEvent)
	}
	if ev.ID == "" {
		ev.ID = uuid.NewString()
	}
	if ev.Timestamp.IsZero() {
		ev.Timestamp = s.now()
	}
	if ev.Data == nil {
		ev.Data = map[string]any{}
	}
	if ev.Before != nil && ev.Changes == nil && ev.EventType == domain.EventUpdate {
		// As the change log does: an update with a pre-image carries its diff.
		ev.Changes = domain.ComputeChanges(ev.Before, ev.Data)
	}
	return ev, nil
}

// decode turns one envelope into a normalized event. On failure the
// returned event carries the id, entity type and entity id when they could
// be read, and the error wraps domain.ErrInvalidEvent.
func (s *Source) decode(raw []byte) (domain.Event, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil || fields == nil {
		_, err := domain.DecodeEvent(raw)
		if err == nil { // DecodeEvent accepted what is not an object: refuse anyway
			err = fmt.Errorf("decode event: not a single JSON object: %w", domain.ErrInvalidEvent)
		}
		return domain.Event{}, err
	}
	var partial domain.Event
	for key, dst := range map[string]*string{"id": &partial.ID, "entity_type": &partial.EntityType, "entity_id": &partial.EntityID} {
		_ = json.Unmarshal(fields[key], dst) // best effort: absent or not a string leaves it empty
	}
	if partial.ID == "" {
		partial.ID = uuid.NewString()
		fields["id"], _ = json.Marshal(partial.ID)
		var err error
		if raw, err = json.Marshal(fields); err != nil {
			return partial, fmt.Errorf("decode event: %w: %w", err, domain.ErrInvalidEvent)
		}
	}
	ev, err := domain.DecodeEvent(raw)
	if err != nil {
		return partial, notAnEvent(err)
	}
	ev, err = s.normalize(ev)
	if err != nil {
		return partial, fmt.Errorf("decode event: %w", err)
	}
	return ev, nil
}

// notAnEvent reports a NOOP or READ envelope as invalid: unlike change-log
// rows, entries of this log are meant to be events.
func notAnEvent(err error) error {
	if errors.Is(err, domain.ErrSkipEvent) && !errors.Is(err, domain.ErrInvalidEvent) {
		return fmt.Errorf("%v: %w", err, domain.ErrInvalidEvent)
	}
	return err
}
