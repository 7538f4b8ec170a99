package postgres

// readSQL is the change log's read, over table (quoted). Its parameters:
// $1 and $2 the position read after (txid as text, pk), $3 the row limit,
// $4 the per-event payload limit, $5 the byte budget, $6 the stored size
// up to which a payload is weighed as stored, $7 the object_type values
// wanted (NULL: every row).
//
// q: the next $3 readable rows with the size of their payload (object_data
// and object_data_before as JSON text, counted by the database; a payload
// stored in at most $6 bytes cannot be over the limit and is weighed by
// its stored size, which spares rendering it twice); a row not wanted (an
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
			       CASE WHEN b.wanted THEN b.object_type END, CASE WHEN b.wanted THEN b.modification_type END,
			       CASE WHEN b.wanted THEN coalesce(b.object_key, b.object_id::text) END,
			       CASE WHEN b.wanted THEN b.object_id::text END, CASE WHEN b.wanted THEN b.object_key END,
			       CASE WHEN b.wanted AND b.size <= $4 THEN b.object_data::text END,
			       CASE WHEN b.wanted AND b.size <= $4 THEN b.object_data_before::text END,
			       CASE WHEN b.wanted THEN coalesce(b.tenant_id::text, '') ELSE '' END,
			       CASE WHEN b.wanted THEN coalesce(b.fk_contact::text, '') ELSE '' END, b.size
			FROM (
				SELECT q.*, sum(CASE WHEN q.size <= $4 THEN q.size ELSE 0 END) OVER w AS running, row_number() OVER w AS n
				FROM (
					SELECT r.*,
					       CASE WHEN NOT r.wanted THEN 0
					            WHEN coalesce(pg_column_size(r.object_data), 0) + coalesce(pg_column_size(r.object_data_before), 0) <= $6
					            THEN coalesce(pg_column_size(r.object_data), 0) + coalesce(pg_column_size(r.object_data_before), 0)
					            ELSE coalesce(octet_length(r.object_data::text), 0) + coalesce(octet_length(r.object_data_before::text), 0)
					       END AS size
					FROM (
						SELECT c.pk_entity_change_log, c.txid, c.id, c.created_at, c.object_type, c.modification_type,
						       c.object_id, c.object_key, c.object_data, c.object_data_before, c.tenant_id, c.fk_contact,
						       ($7::text[] IS NULL OR c.object_type IS NULL OR c.object_type = ANY ($7::text[])) AS wanted
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
