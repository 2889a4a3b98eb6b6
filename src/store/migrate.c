/*
 * migrate.c -- database objects: versioned migrations and daily partitions.
 *
 * Migrations are numbered SQL steps applied in order, each in its own transaction together with its
 * row in @S.schema_migrations, under a transaction-level advisory lock: running `thermocline
 * migrate` twice, or from two machines at once, applies every step exactly once. A step is never
 * edited after release; a change is a new step.
 */
#include "store/store_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/timeutil.h"

/* Arbitrary but fixed keys of the advisory locks that serialise DDL between pipelines. */
#define TC_LOCK_MIGRATE    "7311001"
#define TC_LOCK_PARTITIONS "7311002"

typedef struct tc_migration {
    int version;
    const char *what;
    const char *sql;
} tc_migration;

static const tc_migration tc_migrations[] = {
    {1, "readings, dead letters and ingest offsets",
     "CREATE TABLE @S.readings ("
     "  time timestamptz NOT NULL,"
     "  device_id text NOT NULL,"
     "  temperature double precision,"
     "  humidity double precision,"
     "  pressure double precision,"
     "  battery double precision,"
     "  latitude double precision,"
     "  longitude double precision,"
     "  tags jsonb,"
     "  extra jsonb,"
     "  kafka_partition integer NOT NULL,"
     "  kafka_offset bigint NOT NULL,"
     "  ingested_at timestamptz NOT NULL DEFAULT now()"
     ") PARTITION BY RANGE (time);"
     "CREATE INDEX readings_device_time_idx ON @S.readings (device_id, time DESC);"
     "COMMENT ON TABLE @S.readings IS 'IoT readings, one row per valid reading, partitioned by"
     " day of event time (UTC).';"
     "CREATE TABLE @S.dead_letters ("
     "  id bigserial PRIMARY KEY,"
     "  received_at timestamptz NOT NULL,"
     "  reason text NOT NULL,"
     "  detail text NOT NULL,"
     "  stage text NOT NULL,"
     "  payload bytea NOT NULL,"
     "  kafka_key bytea,"
     "  source_topic text NOT NULL,"
     "  source_partition integer NOT NULL,"
     "  source_offset bigint NOT NULL"
     ");"
     "CREATE INDEX dead_letters_reason_idx ON @S.dead_letters (reason, received_at);"
     "CREATE INDEX dead_letters_source_idx ON @S.dead_letters"
     "  (source_topic, source_partition, source_offset);"
     "COMMENT ON TABLE @S.dead_letters IS 'Readings that were refused, with the reason; never"
     " silently lost.';"
     "CREATE TABLE @S.ingest_offsets ("
     "  group_id text NOT NULL,"
     "  topic text NOT NULL,"
     "  partition integer NOT NULL,"
     "  next_offset bigint NOT NULL,"
     "  updated_at timestamptz NOT NULL DEFAULT now(),"
     "  PRIMARY KEY (group_id, topic, partition)"
     ");"
     "COMMENT ON TABLE @S.ingest_offsets IS 'Next Kafka offset to consume per partition, committed"
     " in the same transaction as the rows: the source of truth for exactly-once.';"},
};

#define TC_MIGRATION_COUNT (sizeof(tc_migrations) / sizeof(tc_migrations[0]))

static tc_err tc_store_migration_applied(tc_store *s, int version, int *applied, char *errstr,
                                         size_t errstr_size)
{
    char sql[TC_SQL_MAX], tmpl[128];
    PGresult *res;
    tc_err err = TC_OK;

    snprintf(tmpl, sizeof(tmpl), "SELECT 1 FROM @S.schema_migrations WHERE version = %d", version);
    if (tc_store_sql(s, tmpl, sql, sizeof(sql)) < 0)
        return TC_ERR_INVALID;
    res = PQexec(s->conn, sql);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        err = tc_store_classify(s, res);
        tc_err_set(err, errstr, errstr_size, "could not read migrations: %s",
                   PQresultErrorMessage(res));
    } else {
        *applied = PQntuples(res) > 0;
    }
    PQclear(res);
    return err;
}

static tc_err tc_store_apply(tc_store *s, const tc_migration *m, char *errstr, size_t errstr_size)
{
    char sql[TC_SQL_MAX], what[128], inner[TC_ERRSTR_MAX];
    int applied = 0;
    tc_err err;

    err = tc_store_exec(s, "BEGIN; SELECT pg_advisory_xact_lock(" TC_LOCK_MIGRATE ")",
                        "lock migrations", errstr, errstr_size);
    if (err != TC_OK)
        return err;
    err = tc_store_migration_applied(s, m->version, &applied, errstr, errstr_size);
    if (err == TC_OK && !applied) {
        snprintf(what, sizeof(what), "apply migration %d (%s)", m->version, m->what);
        if (tc_store_sql(s, m->sql, sql, sizeof(sql)) < 0)
            err = tc_err_set(TC_ERR_INVALID, errstr, errstr_size, "migration %d too long",
                             m->version);
        else
            err = tc_store_exec(s, sql, what, errstr, errstr_size);
        snprintf(what, sizeof(what),
                 "INSERT INTO @S.schema_migrations (version, description) VALUES (%d, '%s')",
                 m->version, m->what);
        if (err == TC_OK && tc_store_sql(s, what, sql, sizeof(sql)) == 0)
            err = tc_store_exec(s, sql, "record migration", errstr, errstr_size);
        if (err == TC_OK)
            tc_log_info("store", "applied migration %d: %s", m->version, m->what);
    }
    if (err == TC_OK)
        return tc_store_exec(s, "COMMIT", "commit migration", errstr, errstr_size);
    tc_store_exec(s, "ROLLBACK", "roll back migration", inner, sizeof(inner));
    return err;
}

tc_err tc_store_migrate(tc_store *s, char *errstr, size_t errstr_size)
{
    char sql[TC_SQL_MAX];
    tc_err err;

    err = tc_store_connect(s, errstr, errstr_size);
    if (err != TC_OK)
        return err;
    /* CREATE SCHEMA IF NOT EXISTS can still race with itself; the lock makes it safe. */
    if (tc_store_sql(s,
                     "BEGIN; SELECT pg_advisory_xact_lock(" TC_LOCK_MIGRATE ");"
                     "CREATE SCHEMA IF NOT EXISTS @S;"
                     "CREATE TABLE IF NOT EXISTS @S.schema_migrations ("
                     " version integer PRIMARY KEY, description text NOT NULL,"
                     " applied_at timestamptz NOT NULL DEFAULT now()); COMMIT",
                     sql, sizeof(sql)) < 0)
        return TC_ERR_INVALID;
    err = tc_store_exec(s, sql, "create schema", errstr, errstr_size);
    for (size_t i = 0; err == TC_OK && i < TC_MIGRATION_COUNT; i++)
        err = tc_store_apply(s, &tc_migrations[i], errstr, errstr_size);
    return err;
}

static int tc_store_day_known(const tc_store *s, int64_t day)
{
    for (size_t i = 0; i < s->ndays; i++) {
        if (s->days[i] == day)
            return 1;
    }
    return 0;
}

static void tc_store_day_remember(tc_store *s, int64_t day)
{
    if (s->ndays < TC_STORE_DAYS_CACHE) {
        s->days[s->ndays++] = day;
    } else {
        s->days[s->days_next] = day; /* round-robin: forgetting only costs a no-op DDL */
        s->days_next = (s->days_next + 1) % TC_STORE_DAYS_CACHE;
    }
}

/* Format a day number (days since 1970-01-01) as YYYY-MM-DD, or YYYYMMDD when compact. */
static void tc_store_day_text(int64_t day, char *out, size_t cap, int compact)
{
    unsigned m, d;
    int y;

    tc_time_civil_from_days(day, &y, &m, &d);
    snprintf(out, cap, compact ? "%04d%02u%02u" : "%04d-%02u-%02u", y, m, d);
}

tc_err tc_store_ensure_days(tc_store *s, int64_t first, int64_t last, char *errstr,
                            size_t errstr_size)
{
    char sql[TC_SQL_MAX], tmpl[512], name[16], from[16], to[16], inner[TC_ERRSTR_MAX];
    int locked = 0;
    tc_err err = TC_OK;

    for (int64_t day = first; day <= last && err == TC_OK; day++) {
        if (tc_store_day_known(s, day))
            continue;
        if (!locked) {
            err = tc_store_exec(s, "BEGIN; SELECT pg_advisory_xact_lock(" TC_LOCK_PARTITIONS ")",
                                "lock partitions", errstr, errstr_size);
            if (err != TC_OK)
                return err;
            locked = 1;
        }
        tc_store_day_text(day, name, sizeof(name), 1);
        tc_store_day_text(day, from, sizeof(from), 0);
        tc_store_day_text(day + 1, to, sizeof(to), 0);
        snprintf(tmpl, sizeof(tmpl),
                 "CREATE TABLE IF NOT EXISTS @S.readings_p%s PARTITION OF @S.readings"
                 " FOR VALUES FROM ('%s 00:00:00+00') TO ('%s 00:00:00+00')",
                 name, from, to);
        if (tc_store_sql(s, tmpl, sql, sizeof(sql)) < 0)
            err = TC_ERR_INVALID;
        else
            err = tc_store_exec(s, sql, "create partition", errstr, errstr_size);
    }
    if (!locked)
        return TC_OK;
    if (err == TC_OK)
        err = tc_store_exec(s, "COMMIT", "commit partitions", errstr, errstr_size);
    else
        tc_store_exec(s, "ROLLBACK", "roll back partitions", inner, sizeof(inner));
    /* Only after the commit are the partitions real. */
    for (int64_t day = first; err == TC_OK && day <= last; day++) {
        if (!tc_store_day_known(s, day))
            tc_store_day_remember(s, day);
    }
    return err;
}

tc_err tc_store_ensure_partitions_around(tc_store *s, int64_t now_us, int days_back, char *errstr,
                                         size_t errstr_size)
{
    int64_t today = tc_time_day_of(now_us);
    tc_err err = tc_store_connect(s, errstr, errstr_size);

    if (err != TC_OK)
        return err;
    return tc_store_ensure_days(s, today - days_back, today + s->days_ahead, errstr, errstr_size);
}
