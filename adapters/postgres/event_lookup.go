package postgres

import (
	"context"
	"fmt"
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

// Event returns the committed row whose event id is id, decoded as the
// ChangeLog reads it (resend reads events with it).
func (s *ChangeLogStats) Event(ctx context.Context, id string) (ports.Record, error) {
	op := "find event " + id
	if !uuidText.MatchString(id) {
		return ports.Record{}, fmt.Errorf("postgres: %s: not a uuid: %w", op, ports.ErrNotFound)
	}
	var r changeRow
	err := s.pool.QueryRow(ctx, `
		SELECT c.pk_entity_change_log, c.txid::text, c.id::text, c.created_at,
		       c.object_type, c.modification_type, coalesce(c.object_key, c.object_id::text, ''),
		       c.object_id::text, c.object_key, c.object_data::text, c.object_data_before::text,
		       coalesce(c.tenant_id::text, ''), coalesce(c.fk_contact::text, '')
		FROM `+s.table+` AS c
		WHERE c.id = $1::uuid AND c.txid < pg_snapshot_xmin(pg_current_snapshot())
		ORDER BY c.txid DESC, c.pk_entity_change_log DESC
		LIMIT 1`, id).Scan(&r.PK, &r.TxID, &r.ID, &r.CreatedAt, &r.ObjectType, &r.ModificationType,
		&r.EntityID, &r.ObjectID, &r.ObjectKey, &r.ObjectData, &r.ObjectDataBefore, &r.TenantID, &r.UserID)
	if err != nil {
		return ports.Record{}, interpretError(op, err)
	}
	txid, err := strconv.ParseUint(r.TxID, 10, 64)
	if err != nil {
		return ports.Record{}, fmt.Errorf("postgres: %s: txid %q: %w", op, r.TxID, err)
	}
	decoder := &ChangeLog{cfg: ChangeLogConfig{Source: s.source}.withDefaults()}
	rec, ok := decoder.record(ports.Position{TxID: txid, Seq: r.PK}, &r)
	if !ok {
		return ports.Record{}, fmt.Errorf("postgres: %s: the row is a %s, not an event: %w", op, text(r.ModificationType), ports.ErrNotFound)
	}
	return rec, nil
}
