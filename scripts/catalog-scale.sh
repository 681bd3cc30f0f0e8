#!/bin/sh
# Creates a scratch PostgreSQL database, applies the catalog migrations and fills it with a large
# synthetic catalog (scripts/catalog-scale.sql). See docs/catalog-plans.md.
#   scripts/catalog-scale.sh [instances] [database]     (defaults: 1000000, yilian_explain)
# Connection: PGHOST/PGUSER/PGPORT as for psql (e.g. PGHOST=127.0.0.1 PGUSER=postgres).
set -eu
instances=${1:-1000000}
db=${2:-yilian_explain}
here=$(cd "$(dirname "$0")/.." && pwd)
createdb "$db"
for f in "$here"/crates/store/migrations/*.sql; do
    psql -q -v ON_ERROR_STOP=1 -d "$db" -f "$f"
done
psql -v ON_ERROR_STOP=1 -d "$db" -v instances="$instances" -f "$here/scripts/catalog-scale.sql"
