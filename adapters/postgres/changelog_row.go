package postgres

// This file decodes change-log rows: the row as read, its raw JSON form,
// and the record (an event, or an invalid input to dead-letter).

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// changeRow is one change-log row as read; it is also the Raw form of a
// row that cannot become an event. The contract columns are read as
// nullable: an existing table may allow NULL in them, and such a row must
// become an invalid record, not fail the whole read.
type changeRow struct {
	PK   int64  `json:"pk_entity_change_log"`
	TxID string `json:"txid"`
	// Nullable columns scan into pgtype values rather than pointers: a
	// pointer destination costs the reader an allocation per column and
	// row. The JSON form (null when not Valid) is the same.
	ID               pgtype.Text        `json:"id"`
	CreatedAt        pgtype.Timestamptz `json:"created_at"`
	ObjectType       pgtype.Text        `json:"object_type"`
	ModificationType pgtype.Text        `json:"modification_type"`
	EntityID         pgtype.Text        `json:"-"`
	ObjectID         pgtype.Text        `json:"object_id"`
	ObjectKey        pgtype.Text        `json:"object_key"`
	ObjectData       []byte             `json:"-"` // JSON text; nil for NULL
	ObjectDataBefore []byte             `json:"-"`
	TenantID         string             `json:"tenant_id"`
	UserID           string             `json:"fk_contact"`
	// Size is the row's weight (rowSize): object_data and
	// object_data_before as JSON text, and the text columns, in bytes
	// (counted by the database, also for a row read without its payload).
	Size int64 `json:"size_bytes"`
	// unrenderable: read without its payload, which PostgreSQL could not
	// render as text (Size is then the stored size).
	unrenderable bool
}

// rawJSON is the row as a JSON object (the invalid record's Raw): its
// columns, then object_data and object_data_before as the database wrote
// them (null when NULL or not read). The payload is spliced in, not passed
// through encoding/json, which would refuse one nested deeper than its
// limit and leave the dead letter without the data.
func (r *changeRow) rawJSON() []byte {
	head, err := json.Marshal(r)
	if err != nil || len(head) < 2 { // strings and numbers: cannot fail
		head = []byte(fmt.Sprintf(`{"pk_entity_change_log":%d}`, r.PK))
	}
	raw := append(head[:len(head)-1:len(head)-1], `,"object_data":`...)
	raw = appendJSONOrNull(raw, r.ObjectData)
	raw = append(raw, `,"object_data_before":`...)
	raw = appendJSONOrNull(raw, r.ObjectDataBefore)
	return append(raw, '}')
}

func appendJSONOrNull(dst, v []byte) []byte {
	if v == nil {
		return append(dst, "null"...)
	}
	return append(dst, v...)
}

// nullContractColumns names the contract columns the row has NULL in:
// id, created_at, object_type, modification_type, and the entity (object_id
// or object_key) of an INSERT, UPDATE or DELETE (a CUSTOM event may
// concern no entity).
func (r *changeRow) nullContractColumns() []string {
	var missing []string
	for _, c := range []struct {
		name string
		null bool
	}{
		{"id", !r.ID.Valid},
		{"created_at", !r.CreatedAt.Valid},
		{"object_type", !r.ObjectType.Valid},
		{"modification_type", !r.ModificationType.Valid},
	} {
		if c.null {
			missing = append(missing, c.name)
		}
	}
	if !r.EntityID.Valid && r.ModificationType.Valid {
		switch strings.ToUpper(strings.TrimSpace(r.ModificationType.String)) {
		case "INSERT", "UPDATE", "DELETE":
			missing = append(missing, "object_id")
		}
	}
	return missing
}

// text is the string of a nullable text column ("" for NULL).
func text(t pgtype.Text) string {
	if !t.Valid {
		return ""
	}
	return t.String
}

// record turns a row into a Record; ok is false for rows that are not
// events (NOOP, READ).
func (c *ChangeLog) record(pos ports.Position, r *changeRow) (ports.Record, bool) {
	var (
		ev  domain.Event
		err error
	)
	if missing := r.nullContractColumns(); len(missing) > 0 {
		err = fmt.Errorf("NULL in %s: %w", strings.Join(missing, ", "), domain.ErrInvalidEvent)
	} else if r.CreatedAt.InfinityModifier != pgtype.Finite {
		err = fmt.Errorf("created_at is %s, not a point in time: %w", r.CreatedAt.InfinityModifier, domain.ErrInvalidEvent)
	} else if r.unrenderable || r.Size > c.cfg.MaxEventBytes {
		// Read without its payload (see readSQL): park it, move on.
		if _, perr := domain.ParseEventType(r.ModificationType.String); errors.Is(perr, domain.ErrSkipEvent) {
			return ports.Record{}, false // a NOOP or READ row: skipped whatever its size
		}
		if r.unrenderable {
			err = fmt.Errorf("its payload (object_data and object_data_before, %d bytes as stored) cannot be rendered as JSON text by PostgreSQL (over its limit of 1 GB for one value): %w: %w",
				r.Size, ports.ErrEventTooLarge, domain.ErrInvalidEvent)
		} else {
			err = fmt.Errorf("it is %d bytes (object_data and object_data_before as JSON text, object_type, modification_type, object_key and fk_contact), over the %d-byte limit (reader.max_event_bytes; its text columns are cut to %d characters here): %w: %w",
				r.Size, c.cfg.MaxEventBytes, ports.OversizeTextChars, ports.ErrEventTooLarge, domain.ErrInvalidEvent)
		}
	} else {
		ev, err = domain.NewEventFromChange(domain.RawChange{
			ID:               r.ID.String,
			CreatedAt:        r.CreatedAt.Time,
			ObjectType:       r.ObjectType.String,
			ModificationType: r.ModificationType.String,
			ObjectID:         text(r.EntityID),
			ObjectData:       r.ObjectData,
			ObjectDataBefore: r.ObjectDataBefore,
			TenantID:         r.TenantID,
			UserID:           r.UserID,
			Source:           c.cfg.Source,
		})
	}
	switch {
	case err == nil:
		return ports.Record{Position: pos, Event: ev, Size: r.Size}, true
	case errors.Is(err, domain.ErrSkipEvent):
		return ports.Record{}, false
	}
	if !errors.Is(err, domain.ErrInvalidEvent) {
		err = fmt.Errorf("%w: %w", domain.ErrInvalidEvent, err)
	}
	raw := r.rawJSON()
	var created time.Time
	if r.CreatedAt.Valid && r.CreatedAt.InfinityModifier == pgtype.Finite && domain.JSONTime(r.CreatedAt.Time) {
		created = r.CreatedAt.Time
	}
	return ports.Record{
		Position: pos,
		Event: domain.Event{
			ID:         text(r.ID),
			EntityType: text(r.ObjectType),
			EntityID:   text(r.EntityID),
			TenantID:   r.TenantID,
			UserID:     r.UserID,
			Timestamp:  created,
			Source:     c.cfg.Source,
		},
		Err:  fmt.Errorf("change log row %d: %w", r.PK, err),
		Raw:  raw,
		Size: int64(len(raw)),
	}, true
}
