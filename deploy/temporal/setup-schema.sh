#!/bin/sh
# Creates and migrates Temporal's two databases in PostgreSQL (run by the one-shot `temporal-schema` job in
# the temporalio/admin-tools image; every step is idempotent, so the job may run again after an upgrade).
set -eu
tool="temporal-sql-tool --plugin postgres12 --ep ${POSTGRES_SEEDS} -p ${DB_PORT} -u ${POSTGRES_USER}"
schema=/etc/temporal/schema/postgresql/v12
for database in temporal temporal_visibility; do
    case "$database" in
        temporal) versioned="$schema/temporal/versioned" ;;
        *) versioned="$schema/visibility/versioned" ;;
    esac
    $tool --db "$database" create || echo "database $database exists"
    $tool --db "$database" setup-schema -v 0.0 || echo "schema of $database set up already"
    $tool --db "$database" update-schema -d "$versioned"
done
echo "Temporal's schema is up to date"
