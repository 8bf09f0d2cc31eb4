#!/bin/bash
# A hot standby of $PRIMARY_HOST: cloned on first start, then streaming from slot replica1.
set -euo pipefail
export PGDATA=${PGDATA:-/var/lib/postgresql/data}
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  mkdir -p "$PGDATA"
  chown postgres:postgres "$PGDATA"
  chmod 700 "$PGDATA"
  until gosu postgres pg_isready -h "$PRIMARY_HOST" -U replicator; do sleep 1; done
  gosu postgres env PGPASSWORD="$PGPASSWORD" pg_basebackup -h "$PRIMARY_HOST" -U replicator \
    -D "$PGDATA" -R -X stream -S replica1 -c fast
fi
exec gosu postgres postgres -c hot_standby=on -c max_connections=400 -c shared_buffers=1GB \
  -c hot_standby_feedback=on
