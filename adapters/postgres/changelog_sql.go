package postgres

import (
	"strconv"
	"strings"

	"github.com/fraiseql/fraiseql-observer/ports"
)

// readSQL is the change log's read, over table (quoted). Its parameters:
// $1 and $2 the position read after (txid as text, pk), $3 the row limit,
// $4 the per-event limit, $5 the byte budget, $6 the size (payload as
// stored and text columns) up to which a payload is weighed as stored,
// $7 the object_type values wanted (NULL: every row).
//
// q: the next $3 readable rows with their size (rowSize): their payload
// (object_data and object_data_before as JSON text, counted by the
// database; a row whose payload as stored and text columns are at most $6
// bytes cannot be over the limit and its payload is weighed by its stored
// size, which spares rendering it twice) and their unbounded
// text columns (textColumnsSize); a row over the limit ships those cut
// to ports.OversizeTextChars characters (cut), enough to name it in its dead letter, so
// that a 50 MB object_key weighs as it should and is not shipped whole; a row not wanted (an
// entity outside $7) weighs nothing and ships its position, the wanted
// flag and size 0 alone (every other column NULL, tenant and contact
// empty: rendering them as text was about a fifth of a skipped row's
// cost). The window keeps the running total of what will be shipped (a
// row over the per-event limit $4 ships no payload) and the
// rows within the byte budget $5 (the first always) are returned, with
// their payload rendered only when it is within the limit (the jsonb
// values pass the window as they are stored). One index scan, no join, no
// sort. Every column is qualified: an unqualified ORDER BY txid would sort
// by the txid::text output column.
func readSQL(table string) string {
	return `
			SELECT b.pk_entity_change_log, b.txid::text AS txid_text, b.wanted,
			       CASE WHEN b.wanted THEN b.id::text END, CASE WHEN b.wanted THEN b.created_at END,
			       CASE WHEN b.wanted THEN ` + cut("b.object_type", "$4") + ` END, CASE WHEN b.wanted THEN ` + cut("b.modification_type", "$4") + ` END,
			       CASE WHEN b.wanted THEN coalesce(` + cut("b.object_key", "$4") + `, b.object_id::text) END,
			       CASE WHEN b.wanted THEN b.object_id::text END, CASE WHEN b.wanted THEN ` + cut("b.object_key", "$4") + ` END,
			       CASE WHEN b.wanted AND b.size <= $4 THEN b.object_data::text END,
			       CASE WHEN b.wanted AND b.size <= $4 THEN b.object_data_before::text END,
			       CASE WHEN b.wanted THEN coalesce(b.tenant_id::text, '') ELSE '' END,
			       CASE WHEN b.wanted THEN coalesce(` + cut("b.fk_contact", "$4") + `, '') ELSE '' END, b.size
			FROM (
				SELECT q.*, sum(CASE WHEN q.size <= $4 THEN q.size ELSE 0 END) OVER w AS running, row_number() OVER w AS n
				FROM (
					SELECT r.*,
					       CASE WHEN NOT r.wanted THEN 0 ELSE ` + rowSize("r", "$6", "r.texts") + ` END AS size
					FROM (
						SELECT c.pk_entity_change_log, c.txid, c.id, c.created_at, c.object_type, c.modification_type,
						       c.object_id, c.object_key, c.object_data, c.object_data_before, c.tenant_id, c.fk_contact,
						       ` + wantedSQL + ` AS wanted,
						       CASE WHEN ` + wantedSQL + ` THEN ` + textColumnsSize("c") + ` END AS texts
						FROM ` + table + ` AS c
						WHERE (c.txid, c.pk_entity_change_log) > ($1::text::xid8, $2::bigint)
						  AND c.txid < pg_snapshot_xmin(pg_current_snapshot())
						ORDER BY c.txid, c.pk_entity_change_log
						LIMIT $3
					) AS r
				) AS q
				WINDOW w AS (ORDER BY q.txid, q.pk_entity_change_log ROWS UNBOUNDED PRECEDING)
			) AS b
			WHERE b.n = 1 OR b.running <= $5
			ORDER BY b.txid, b.pk_entity_change_log`
}

// wantedSQL tells a row of an entity some observer names (readSQL's $7;
// NULL: every entity): written twice in readSQL's innermost select, so
// that a skipped row's text columns are not weighed.
const wantedSQL = `($7::text[] IS NULL OR c.object_type IS NULL OR c.object_type = ANY ($7::text[]))`

// SetEntities sets the object_type values whose rows the next reads
// return (see ChangeLogConfig.Entities; nil: every row). Call it when the
// observers change: a row skipped before the call stays skipped.
func (c *ChangeLog) SetEntities(entities []string) {
	if entities == nil {
		c.entities.Store(nil)
		return
	}
	e := append([]string{}, entities...)
	c.entities.Store(&e)
}

// cut is column of row b as it is shipped: whole within the per-event
// limit (the parameter limit), its first ports.OversizeTextChars characters in a row
// over it.
func cut(column, limit string) string {
	return "CASE WHEN b.size <= " + limit + " THEN " + column + "::text ELSE left(" + column + "::text, " + strconv.Itoa(ports.OversizeTextChars) + ") END"
}

// rowSize is what row weighs against the per-event limit and the byte
// budget: its payload (object_data and object_data_before) as JSON text,
// or as stored when that and its text columns together are at most the
// parameter stored (limit/textPerStoredByte: such a row cannot be over the
// limit, and its payload is not rendered twice), and its text columns
// (texts: a column of row, textColumnsSize computed once in a subquery
// with a LIMIT, which the planner keeps; written here twice, the
// expression would be evaluated twice). The sums are bigint: six int4
// terms of up to 1 GB each could overflow.
func rowSize(row, stored, texts string) string {
	asStored := "coalesce(pg_column_size(" + row + ".object_data), 0)::bigint + coalesce(pg_column_size(" + row + ".object_data_before), 0)"
	return "CASE WHEN " + asStored + " + " + texts + " <= " + stored + " THEN " + asStored +
		" ELSE coalesce(octet_length(" + row + ".object_data::text), 0)::bigint + coalesce(octet_length(" + row + ".object_data_before::text), 0) END + " +
		texts
}

// textColumnsSize is the bytes of row's unbounded text columns, counted
// with the payload against the per-event limit and the byte budget (the
// uuid, timestamp and xid8 columns are fixed and small). octet_length
// of a stored text reads its length word, not the value; ::text lets an
// existing table whose fk_contact (say) is another type be read too.
func textColumnsSize(row string) string {
	var b strings.Builder
	for i, col := range []string{"object_type", "modification_type", "object_key", "fk_contact"} {
		if i > 0 {
			b.WriteString(" + ")
		}
		b.WriteString("coalesce(octet_length(" + row + "." + col + "::text), 0)::bigint")
	}
	return b.String()
}
