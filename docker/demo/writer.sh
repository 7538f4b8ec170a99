#!/bin/sh
# Demo writer of the compose files: every WRITER_INTERVAL seconds it creates
# an entity (an INSERT change-log row, status WRITER_FROM) and then moves it
# to WRITER_TO (an UPDATE row with the pre-image), so the observers fire.
# Runs in the postgres image (psql); connection from PGHOST, PGUSER,
# PGPASSWORD, PGDATABASE. It waits for the change-log table, which the
# observer creates when it starts (database.migrate_on_start).
set -eu
entity="${WRITER_ENTITY:-Order}"
from="${WRITER_FROM:-pending}"
to="${WRITER_TO:-shipped}"
interval="${WRITER_INTERVAL:-3}"

until [ "$(psql -qtAc "SELECT to_regclass('core.tb_entity_change_log') IS NOT NULL" 2>/dev/null)" = "t" ]; do
  echo "writer: waiting for core.tb_entity_change_log in $PGHOST/$PGDATABASE"
  sleep 1
done

n=0
while :; do
  n=$((n + 1))
  id="$(psql -qtAc 'SELECT gen_random_uuid()')"
  psql -q -v ON_ERROR_STOP=1 -v id="$id" -v entity="$entity" -v from="$from" -v to="$to" -v n="$n" <<'SQL'
INSERT INTO core.tb_entity_change_log (object_type, modification_type, object_id, object_data)
VALUES (:'entity', 'INSERT', :'id', jsonb_build_object('status', :'from', 'number', :n::int,
        'customer', jsonb_build_object('email', 'customer' || :n || '@example.com')));
INSERT INTO core.tb_entity_change_log (object_type, modification_type, object_id, object_data, object_data_before)
VALUES (:'entity', 'UPDATE', :'id',
        jsonb_build_object('status', :'to', 'number', :n::int, 'customer', jsonb_build_object('email', 'customer' || :n || '@example.com')),
        jsonb_build_object('status', :'from', 'number', :n::int, 'customer', jsonb_build_object('email', 'customer' || :n || '@example.com')));
SQL
  echo "writer: $entity $id $from -> $to"
  sleep "$interval"
done
