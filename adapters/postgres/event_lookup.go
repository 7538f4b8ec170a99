package postgres

import (
	"context"
	"fmt"
	"math"
	"regexp"
	"strconv"

	"github.com/fraiseql/fraiseql-observer/ports"
)

var uuidText = regexp.MustCompile(`^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$`)

// WithSource returns stats whose events carry source (a multi-database
// entry's name), as the ChangeLog of that database reads them.
func (s *ChangeLogStats) WithSource(source string) *ChangeLogStats {
	c := *s
	c.source = source
	return &c
}

// WithMaxEventBytes returns stats whose Event weighs rows against n (the
// reader's reader.max_event_bytes; 0: DefaultMaxEventBytes), as the
// ChangeLog reading them does.
func (s *ChangeLogStats) WithMaxEventBytes(n int64) *ChangeLogStats {
	c := *s
	c.maxEventBytes = n
	return &c
}

// Event returns the committed row whose event id is id, decoded as the
// ChangeLog reads it (resend reads events with it): a row over the
// per-event limit, or whose payload PostgreSQL cannot render, is an
// invalid record (ports.ErrEventTooLarge) read without its payload. The
// search scans the change log (id has no index: one would cost the
// application's every insert), within longOpTimeout.
func (s *ChangeLogStats) Event(ctx context.Context, id string) (ports.Record, error) {
	op := "find event " + id
	if !uuidText.MatchString(id) {
		return ports.Record{}, fmt.Errorf("postgres: %s: not a uuid: %w", op, ports.ErrNotFound)
	}
	cfg := ChangeLogConfig{Source: s.source, MaxEventBytes: s.maxEventBytes}.withDefaults()
	r, err := s.lookup(ctx, id, cfg.MaxEventBytes, cfg.MaxEventBytes/textPerStoredByte)
	if unrenderable(err) && ctx.Err() == nil {
		r, err = s.lookup(ctx, id, -1, math.MaxInt32) // measured as stored, nothing rendered
		r.unrenderable = true
	}
	if err != nil {
		return ports.Record{}, interpretError(op, err)
	}
	txid, err := strconv.ParseUint(r.TxID, 10, 64)
	if err != nil {
		return ports.Record{}, fmt.Errorf("postgres: %s: txid %q: %w", op, r.TxID, err)
	}
	decoder := &ChangeLog{cfg: cfg}
	rec, ok := decoder.record(ports.Position{TxID: txid, Seq: r.PK}, &r)
	if !ok {
		return ports.Record{}, fmt.Errorf("postgres: %s: the row is a %s, not an event: %w", op, text(r.ModificationType), ports.ErrNotFound)
	}
	return rec, nil
}

// lookup reads the row of event id as readSQL does: weighed (rowSize,
// with payloads stored in at most stored bytes weighed as stored), its
// payload only within maxEvent and its text columns cut over it.
func (s *ChangeLogStats) lookup(ctx context.Context, id string, maxEvent, stored int64) (changeRow, error) {
	ctx, cancel := withLongOpTimeout(ctx)
	defer cancel()
	var r changeRow
	err := s.pool.QueryRow(ctx, `
		SELECT b.pk_entity_change_log, b.txid::text, b.id::text, b.created_at,
		       `+cut("b.object_type", "$2")+`, `+cut("b.modification_type", "$2")+`,
		       coalesce(`+cut("b.object_key", "$2")+`, b.object_id::text, ''),
		       b.object_id::text, `+cut("b.object_key", "$2")+`,
		       CASE WHEN b.size <= $2 THEN b.object_data::text END, CASE WHEN b.size <= $2 THEN b.object_data_before::text END,
		       coalesce(b.tenant_id::text, ''), coalesce(`+cut("b.fk_contact", "$2")+`, ''), b.size
		FROM (
			SELECT t.*, `+rowSize("t", "$3", "t.texts")+` AS size
			FROM (
				SELECT c.*, `+textColumnsSize("c")+` AS texts
				FROM `+s.table+` AS c
				WHERE c.id = $1::uuid AND c.txid < pg_snapshot_xmin(pg_current_snapshot())
				ORDER BY c.txid DESC, c.pk_entity_change_log DESC
				LIMIT 1
			) AS t
		) AS b`, id, maxEvent, stored).Scan(&r.PK, &r.TxID, &r.ID, &r.CreatedAt, &r.ObjectType, &r.ModificationType,
		&r.EntityID, &r.ObjectID, &r.ObjectKey, &r.ObjectData, &r.ObjectDataBefore, &r.TenantID, &r.UserID, &r.Size)
	return r, err
}
