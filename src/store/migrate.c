/*
 * migrate.c -- database objects: the store's mode, versioned migrations and daily partitions.
 *
 * Migrations are numbered SQL steps applied in order, each in its own transaction together with its
 * row in @S.schema_migrations, under a transaction-level advisory lock: running `thermocline
 * migrate` twice, or from two machines at once, applies every step exactly once. A step is never
 * edited after release; a change is a new step.
 *
 * Mode. Before the steps, migrate decides the schema's mode once and records it in @S.store_mode:
 * an existing schema keeps the mode its readings table shows (partitioned: plain); a new one is
 * TimescaleDB when postgres.timescaledb is "on", or "auto" and the extension is available and
 * preloaded, and plain otherwise. A step has SQL for both modes and may have SQL for one mode only.
 * Step 1 of plain mode is the released step 1, unchanged; TimescaleDB mode has its own step 1 whose
 * readings table is a hypertable (a hypertable cannot be made from a partitioned table).
 */
#include "store/store_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/timeutil.h"
#include "quality/quality_sql.h"

/* Arbitrary but fixed keys of the advisory locks that serialise DDL between pipelines. */
#define TC_LOCK_MIGRATE "7311001"

/* Oldest TimescaleDB whose API the TimescaleDB steps use (by_range, DML on compressed chunks). */
#define TC_TIMESCALEDB_MIN_MAJOR 2
#define TC_TIMESCALEDB_MIN_MINOR 13

typedef struct tc_migration {
    int version;
    const char *what;
    const char *sql;       /* both modes (run first), or NULL */
    const char *plain;     /* plain mode only, or NULL */
    const char *timescale; /* TimescaleDB mode only, or NULL */
} tc_migration;

/* The metric columns in tc_metric order (tests/unit/test_rollup.c checks the order). */
#define TC_METRICS_SQL(X) X(temperature) X(humidity) X(pressure) X(battery) X(latitude) X(longitude)
/* Per metric: rollup table columns, plain-mode view columns, continuous-aggregate columns. */
#define TC_ROLLUP_COLS(m)                                                                          \
    ", " #m "_n bigint NOT NULL DEFAULT 0, " #m "_sum double precision NOT NULL DEFAULT 0, " #m    \
    "_min double precision, " #m "_max double precision"
#define TC_VIEW_COLS(m)                                                                            \
    ", " #m "_sum / nullif(" #m "_n, 0) AS " #m "_avg, " #m "_min, " #m "_max, " #m "_n"
#define TC_ROLLUP_KEPT(m) ", " #m "_n, " #m "_sum, " #m "_min, " #m "_max"
#define TC_CAGG_COLS(m)                                                                            \
    ", avg(" #m ") AS " #m "_avg, min(" #m ") AS " #m "_min, max(" #m ") AS " #m "_max, count(" #m \
    ") AS " #m "_n"
/* Per metric: rollup_tag_1h's columns (what a mean needs). */
#define TC_TAG_COLS(m)                                                                             \
    ", " #m "_n bigint NOT NULL DEFAULT 0, " #m "_sum double precision NOT NULL DEFAULT 0"
#define TC_METRIC_COLS(m) ", " #m
#define TC_METRIC_DEFS(m) ", " #m " double precision"

/* Rollup table NAME with buckets of one UNIT, and its view VIEW (plain mode). */
/* clang-format off */
#define TC_ROLLUP_TABLE(name, view, unit)                                                          \
    "CREATE TABLE @S." name " (device_id text NOT NULL, bucket timestamptz NOT NULL,"              \
    " n bigint NOT NULL" TC_METRICS_SQL(TC_ROLLUP_COLS) ", PRIMARY KEY (device_id, bucket))"       \
    " WITH (fillfactor = 70);"                                                                     \
    "CREATE INDEX " name "_bucket_brin ON @S." name " USING brin (bucket);"                        \
    "COMMENT ON TABLE @S." name " IS 'Readings per device and " unit ", maintained in the"         \
    " transaction of each batch (plain mode).';"                                                   \
    "CREATE VIEW @S." view " AS SELECT device_id, bucket, n" TC_METRICS_SQL(TC_VIEW_COLS)          \
    " FROM @S." name ";"

/* Continuous aggregate VIEW with buckets of WIDTH (TimescaleDB mode) and its refresh policy. */
#define TC_CAGG(view, width, schedule)                                                             \
    "CREATE MATERIALIZED VIEW @S." view " WITH (timescaledb.continuous,"                           \
    " timescaledb.materialized_only = false) AS SELECT device_id, time_bucket(INTERVAL '" width    \
    "', time) AS bucket, count(*) AS n" TC_METRICS_SQL(TC_CAGG_COLS) " FROM @S.readings"           \
    " GROUP BY device_id, bucket WITH NO DATA;"                                                    \
    "SELECT add_continuous_aggregate_policy('@S." view "', start_offset => INTERVAL '@A seconds'," \
    " end_offset => INTERVAL '" width "', schedule_interval => INTERVAL '" schedule "');"
/* clang-format on */

static const tc_migration tc_migrations[] = {
    {1, "readings, dead letters and ingest offsets", NULL,
     /* plain: the released step 1, never to be edited */
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
     " in the same transaction as the rows: the source of truth for exactly-once.';",
     /* TimescaleDB: the same objects, with readings a hypertable instead of partitioned */
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
     ");"
     "SELECT create_hypertable('@S.readings', by_range('time', INTERVAL '@C seconds'));"
     "CREATE INDEX readings_device_time_idx ON @S.readings (device_id, time DESC);"
     "COMMENT ON TABLE @S.readings IS 'IoT readings, one row per valid reading: a TimescaleDB"
     " hypertable on event time.';"
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
    /* clang-format off */
    {2, "lake files, latest reading per device, rollups or continuous aggregates, retention",
     /* both modes */
     "CREATE TABLE @S.lake_files ("
     "  path text PRIMARY KEY,"
     "  day date NOT NULL,"
     "  kafka_partition int NOT NULL,"
     "  first_offset bigint NOT NULL,"
     "  last_offset bigint NOT NULL,"
     "  rows bigint NOT NULL,"
     "  bytes bigint NOT NULL,"
     "  committed_at timestamptz NOT NULL DEFAULT now()"
     ");"
     "CREATE INDEX lake_files_day_idx ON @S.lake_files (day);"
     "COMMENT ON TABLE @S.lake_files IS 'Parquet files of the data lake; plain-mode retention drops"
     " a day only when these hold all of its rows.';"
     "CREATE TABLE @S.latest_state ("
     "  device_id text PRIMARY KEY,"
     "  time timestamptz NOT NULL" TC_METRICS_SQL(TC_METRIC_DEFS) ","
     "  tags jsonb,"
     "  extra jsonb,"
     "  kafka_partition integer NOT NULL,"
     "  kafka_offset bigint NOT NULL,"
     "  updated_at timestamptz NOT NULL DEFAULT now()"
     ") WITH (fillfactor = 70);"
     "COMMENT ON TABLE @S.latest_state IS 'Latest reading per device, upserted (only when newer)"
     " in the transaction of each batch.';"
     "CREATE VIEW @S.latest AS SELECT device_id, time" TC_METRICS_SQL(TC_METRIC_COLS)
     ", tags, extra, kafka_partition, kafka_offset FROM @S.latest_state;",
     /* plain */
     "CREATE INDEX readings_time_brin ON @S.readings USING brin (time);"
     TC_ROLLUP_TABLE("rollup_1m", "readings_1m", "minute")
     TC_ROLLUP_TABLE("rollup_1h", "readings_1h", "hour"),
     /* TimescaleDB */
     "ALTER TABLE @S.readings SET (timescaledb.compress, timescaledb.compress_segmentby ="
     " 'device_id', timescaledb.compress_orderby = 'time DESC');"
     "SELECT add_compression_policy('@S.readings', INTERVAL '@Z seconds') WHERE @Z > 0;"
     "SELECT add_retention_policy('@S.readings', INTERVAL '@R seconds') WHERE @R > 0;"
     TC_CAGG("readings_1m", "1 minute", "1 minute")
     TC_CAGG("readings_1h", "1 hour", "30 minutes")
     "SELECT add_retention_policy('@S.readings_1m', INTERVAL '@R seconds') WHERE @R > 0;"},
    /* clang-format on */
    {3, "dead-letter redrive marks",
     "ALTER TABLE @S.dead_letters ADD COLUMN IF NOT EXISTS redriven_at timestamptz,"
     " ADD COLUMN IF NOT EXISTS redrive_count integer NOT NULL DEFAULT 0;"
     "COMMENT ON COLUMN @S.dead_letters.redriven_at IS 'When `thermocline dlq redrive` last sent"
     " the payload back to the source topic (NULL: never).';",
     NULL, NULL},
    /* A nullable column without a default: a catalog-only change, also on compressed chunks. */
    {4, "schema version per reading",
     "ALTER TABLE @S.readings ADD COLUMN IF NOT EXISTS schema_version integer;"
     "COMMENT ON COLUMN @S.readings.schema_version IS 'Version of the telemetry subject in the"
     " schema registry the reading was read as: the writer schema of an Avro reading, the version"
     " detected from the fields of a JSON one (NULL: no registry, or no version matched).';",
     NULL, NULL},
    /* Closed buckets (ddl.c, tc_rollup_materialize): W and H start where no rollup row is at or
     * past them. An empty schema starts at -infinity: everything is still open, and the first
     * materialization aggregates what is stored by then. A schema with rollups starts at the next
     * hour at least, past every bucket its tables hold, so the views never count a bucket twice;
     * the sink keeps adding to the tables, as before, until the first materialization. */
    {5, "closed rollup buckets written once, open ones computed by the views", NULL,
     "CREATE TABLE @S.rollup_state ("
     "  id boolean PRIMARY KEY DEFAULT true CHECK (id),"
     "  materialized_1m timestamptz NOT NULL,"
     "  materialized_1h timestamptz NOT NULL,"
     "  materialized_at timestamptz,"
     "  CHECK (materialized_1h <= materialized_1m)"
     ");"
     "INSERT INTO @S.rollup_state (materialized_1m, materialized_1h) SELECT w, w FROM (SELECT"
     " CASE WHEN EXISTS (SELECT 1 FROM @S.rollup_1m) OR EXISTS (SELECT 1 FROM @S.rollup_1h)"
     " THEN greatest(date_trunc('hour', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC',"
     " (SELECT max(bucket) FROM @S.rollup_1h), (SELECT date_trunc('hour', max(bucket)"
     " AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' FROM @S.rollup_1m)) + INTERVAL '1 hour'"
     " ELSE '-infinity'::timestamptz END AS w) s;"
     "COMMENT ON TABLE @S.rollup_state IS 'Plain mode: rollup_1m holds the minutes before"
     " materialized_1m, rollup_1h the hours before materialized_1h; the views readings_1m and"
     " readings_1h compute the later buckets from the readings.';",
     NULL},
    /* A device's hours over a month, or a site's over a week, are hundreds to tens of thousands
     * of rollup_1h rows, and the closing writes an hour of every device at once: one device's rows
     * lie one a page, so reading them cost a heap page each (29,000 pages for 34,500 rows of one
     * site's week, 1.3 s of a 2 s fleet() call, measured on bench/run-api's store). With the
     * columns the api reads in the key's index, they come from a few leaf pages in key order
     * (an index-only scan, once the pages are all-visible: rollup_1h is written once per closed
     * hour, so autovacuum is asked to look after 1% of it is new rather than 20%). The price: a
     * late reading's upsert is no longer a HOT update (one index entry more), rare once the hours
     * are closed. rollup_1m keeps its narrow key: it is written 60 times as much, and the api reads
     * at most a week of it for one device. Metrics added by schema evolution are not in the api's
     * views, so not in the index. */
    /* clang-format off */
    {6, "the key of rollup_1h covers the columns the api reads", NULL,
     "CREATE UNIQUE INDEX rollup_1h_covering ON @S.rollup_1h (device_id, bucket) INCLUDE (n"
     TC_METRICS_SQL(TC_ROLLUP_KEPT) ");"
     "ALTER TABLE @S.rollup_1h DROP CONSTRAINT rollup_1h_pkey,"
     " ADD CONSTRAINT rollup_1h_pkey PRIMARY KEY USING INDEX rollup_1h_covering;"
     "ALTER TABLE @S.rollup_1h SET (autovacuum_vacuum_insert_scale_factor = 0.01);",
     NULL},
    /* A site's week is 84,000 rollup_1h rows of its devices (10,000 devices, 20 sites): 100 ms of
     * CPU a call however they are stored. The hourly figures per tag value are precomputed here,
     * per site (the api's row-level security tag), so that a caller who sees some sites sums only
     * theirs: one row per (site, tag, value, hour), 168 for a site's week. A row with tag NULL
     * holds the site's whole hour (fleet()'s group of the devices without the tag is that less
     * the tag's values). device_tag_history is the tags each device's hours count toward: the
     * closing appends a device's tags when they changed (tc_rollup_materialize, ddl.c), and every
     * later change to a closed hour (a late reading, a replay) counts toward the tags the hour
     * was counted with. The api's migration keeps the table (a trigger on rollup_1h, api_sql.c):
     * the site tag is its configuration, and it fills the table again when that changes
     * (rollup_tag_state). Only the fixed metrics' sums: fleet() shows their means. */
    {7, "hourly rollup per site and tag value", NULL,
     "CREATE TABLE @S.device_tag_history (device_id text NOT NULL, since timestamptz NOT NULL,"
     " tags jsonb, PRIMARY KEY (device_id, since));"
     "COMMENT ON TABLE @S.device_tag_history IS 'Plain mode: the tags a device''s closed hours"
     " count toward in rollup_tag_1h, from since on (the first row at -infinity).';"
     "CREATE TABLE @S.rollup_tag_1h (site text, tag text, value text, bucket timestamptz NOT"
     " NULL, devices bigint NOT NULL, n bigint NOT NULL" TC_METRICS_SQL(TC_TAG_COLS) ")"
     " WITH (fillfactor = 90);"
     "CREATE UNIQUE INDEX rollup_tag_1h_key ON @S.rollup_tag_1h (tag, value, bucket, site)"
     " NULLS NOT DISTINCT;"
     "COMMENT ON TABLE @S.rollup_tag_1h IS 'Plain mode: rollup_1h''s closed hours per site (the"
     " api''s site tag), tag and value of the tags in device_tag_history; tag NULL: the site''s"
     " whole hour.';"
     "CREATE TABLE @S.rollup_tag_state (id boolean PRIMARY KEY DEFAULT true CHECK (id),"
     " site_tag text);"
     "INSERT INTO @S.rollup_tag_state (site_tag) VALUES (NULL);"
     "COMMENT ON TABLE @S.rollup_tag_state IS 'Plain mode: the site tag rollup_tag_1h was filled"
     " with (NULL: not yet filled; the api''s migration fills it).';",
     NULL},
    /* Retention drops a day of readings as a partition, but deleted the day's minutes from
     * rollup_1m row by row (14.4 M rows for 10,000 devices reporting every minute), and an hour
     * is closed from rollup_1m's minutes through the BRIN on bucket, which only narrows the read
     * while the rows lie in time order. A closing of many minutes at once (a backfill, a bulk
     * load) inserts them device by device, so the first hour closed after it, whose minutes lie
     * among them, reads all of it: on bench/run-api's bulk-loaded store of 50 M readings (a key
     * of 2.5 GB) the planner walked the whole key, 50.8 s cold and 3.7 s warm for one hour;
     * from a day's partition, 40 ms. A partition a day bounds both by a day. The rows already
     * stored stay where they are, as the partition of everything before the first minute still
     * open (W: the table holds nothing from there on, step 5): no copy, one read of them to
     * check the bound (26 s on that store). The days' partitions are made with readings'
     * (ddl.c, tc_ddl_rollup_partition); the views are made again over the partitioned table (a
     * view names its table by OID, which the rename carried to the old one). */
    {8, "rollup_1m partitioned by day", NULL,
     "ALTER TABLE @S.rollup_1m RENAME TO rollup_1m_before;"
     "ALTER INDEX @S.rollup_1m_pkey RENAME TO rollup_1m_before_pkey;"
     "ALTER INDEX @S.rollup_1m_bucket_brin RENAME TO rollup_1m_before_bucket_brin;"
     "CREATE TABLE @S.rollup_1m (LIKE @S.rollup_1m_before INCLUDING DEFAULTS)"
     " PARTITION BY RANGE (bucket);"
     "ALTER TABLE @S.rollup_1m ADD PRIMARY KEY (device_id, bucket);"
     "CREATE INDEX rollup_1m_bucket_brin ON @S.rollup_1m USING brin (bucket);"
     "COMMENT ON TABLE @S.rollup_1m IS 'Readings per device and minute, closed minutes only"
     " (plain mode); a partition a day, rollup_1m_pYYYYMMDD, and rollup_1m_before for the minutes"
     " stored before the table was partitioned.';"
     "ALTER TABLE @S.rollup_state ADD COLUMN days_1m_from timestamptz NOT NULL"
     " DEFAULT '-infinity';"
     "COMMENT ON COLUMN @S.rollup_state.days_1m_from IS 'Where the daily partitions of rollup_1m"
     " start: the minutes before it are in rollup_1m_before.';"
     "DO $step$ DECLARE f timestamptz; r record;"
     " BEGIN"
     "  SELECT CASE WHEN EXISTS (SELECT 1 FROM @S.rollup_1m_before) THEN s.materialized_1m END"
     "   INTO f FROM @S.rollup_state s;"
     "  FOR r IN SELECT a.privilege_type AS p, a.grantee AS g FROM pg_class c, aclexplode(c.relacl) a"
     "   WHERE c.oid = '@S.rollup_1m_before'::regclass AND a.grantee <> c.relowner LOOP"
     "   EXECUTE format('GRANT %s ON %s.rollup_1m TO %s', r.p, '@S', CASE WHEN r.g = 0 THEN 'PUBLIC'"
     "    ELSE quote_ident(pg_get_userbyid(r.g)) END);"
     "  END LOOP;"
     "  IF to_regclass('@S.rollup_1m_live') IS NOT NULL THEN PERFORM @S.tc_ddl_rollup_views();"
     "  ELSE DROP VIEW IF EXISTS @S.readings_1m;" /* step 1's: the ddl's tail makes the views */
     "  END IF;"
     "  IF f IS NULL THEN DROP TABLE @S.rollup_1m_before;"
     "  ELSE"
     "   EXECUTE format('ALTER TABLE %s.rollup_1m ATTACH PARTITION %s.rollup_1m_before"
     " FOR VALUES FROM (MINVALUE) TO (%L)', '@S', '@S', f);"
     "   UPDATE @S.rollup_state SET days_1m_from = f;"
     "  END IF;"
     " END $step$;",
     NULL},
    /* fleet() added the open hours (from H on) to rollup_tag_1h's closed ones from the devices'
     * own rows: a site's devices' minutes since H and their readings since W, every call. On a
     * store ingesting 20,000 readings/s from 10,000 devices, a site of 2,000 devices has some
     * 240,000 readings past W (which trails the clock by 30 to 100 s) and up to 120,000 minutes
     * past H: 460-620 ms a call, where the closed week took 2 ms. The open hours' closed minutes
     * (before W) are kept here per site, tag, value and hour as rollup_tag_1h keeps the closed
     * hours -- by triggers, on rollup_1m (api_sql.c) -- and fleet()'s hours end at W: the
     * readings of the last minute or two are in a device's own reads, not in the fleet's. The
     * api's migration fills the table (rollup_tag_state.open_site_tag). */
    {9, "closed minutes of the open hours per site and tag value", NULL,
     "CREATE TABLE @S.rollup_tag_open (LIKE @S.rollup_tag_1h INCLUDING DEFAULTS)"
     " WITH (fillfactor = 50);"
     "CREATE UNIQUE INDEX rollup_tag_open_key ON @S.rollup_tag_open (tag, value, bucket, site)"
     " NULLS NOT DISTINCT;"
     "COMMENT ON TABLE @S.rollup_tag_open IS 'Plain mode: rollup_1m''s closed minutes of the"
     " hours still open (from H on) per site, tag, value and hour, as rollup_tag_1h; rows of"
     " hours closed since are left to be deleted.';"
     "ALTER TABLE @S.rollup_tag_state ADD COLUMN open_site_tag text;"
     "COMMENT ON COLUMN @S.rollup_tag_state.open_site_tag IS 'The site tag rollup_tag_open was"
     " filled with (NULL: not yet filled).';",
     NULL},
    /* clang-format on */
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

/* Expand tmpl (see tc_store_sql) into a new string; NULL when out of memory. */
static char *tc_store_sql_alloc(const tc_store *s, const char *tmpl)
{
    size_t cap = strlen(tmpl) + 1;
    char *out;

    for (const char *p = tmpl; (p = strchr(p, '@')) != NULL; p++)
        cap += TC_IDENT_MAX + 24;
    out = malloc(cap);
    if (out && tc_store_sql(s, tmpl, out, cap) < 0) {
        free(out);
        out = NULL;
    }
    return out;
}

/* Run tmpl (expanded) expecting no rows. */
static tc_err tc_store_exec_tmpl(tc_store *s, const char *tmpl, const char *what, char *errstr,
                                 size_t errstr_size)
{
    char *sql = tc_store_sql_alloc(s, tmpl);
    tc_err err;

    if (!sql)
        return tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory building SQL");
    err = tc_store_exec(s, sql, what, errstr, errstr_size);
    free(sql);
    return err;
}

/* Run a query whose answer is one text value (row 0, column col of the result): copied into out;
 * *found is 0 when there is no row or the value is NULL. */
tc_err tc_store_query_value(tc_store *s, const char *tmpl, const char *param, int col, char *out,
                            size_t cap, int *found, char *errstr, size_t errstr_size)
{
    char sql[TC_SQL_MAX], msg[TC_ERRSTR_MAX];
    PGresult *res;
    tc_err err = TC_OK;

    *found = 0;
    if (cap)
        out[0] = '\0';
    if (tc_store_sql(s, tmpl, sql, sizeof(sql)) < 0)
        return tc_err_set(TC_ERR_INVALID, errstr, errstr_size, "statement too long");
    res = PQexecParams(s->conn, sql, param ? 1 : 0, NULL, param ? &param : NULL, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        err = tc_store_classify(s, res);
        tc_err_set(err, errstr, errstr_size, "could not query the database: %s",
                   tc_store_pgmsg(s, res, msg, sizeof(msg)));
    } else if (PQntuples(res) > 0 && PQnfields(res) > col && !PQgetisnull(res, 0, col)) {
        snprintf(out, cap, "%s", PQgetvalue(res, 0, col));
        *found = 1;
    }
    PQclear(res);
    return err;
}

tc_err tc_store_load_state(tc_store *s, char *errstr, size_t errstr_size)
{
    char val[64];
    int found;
    tc_err err;

    s->mode = TC_STORE_PLAIN;
    s->version = 0;
    /* Two digits: does schema_migrations exist, does store_mode exist. */
    err = tc_store_query_value(
        s,
        "SELECT (to_regclass('@S.schema_migrations') IS NOT NULL)::int::text ||"
        " (to_regclass('@S.store_mode') IS NOT NULL)::int",
        NULL, 0, val, sizeof(val), &found, errstr, errstr_size);
    if (err != TC_OK || val[0] != '1')
        return err;
    err = tc_store_query_value(s, "SELECT max(version) FROM @S.schema_migrations", NULL, 0, val + 2,
                               sizeof(val) - 2, &found, errstr, errstr_size);
    if (err != TC_OK)
        return err;
    s->version = found ? atoi(val + 2) : 0;
    if (val[1] != '1')
        return TC_OK; /* migrated before the mode table existed: plain */
    err = tc_store_query_value(s, "SELECT mode FROM @S.store_mode", NULL, 0, val, sizeof(val),
                               &found, errstr, errstr_size);
    if (err == TC_OK && found && !strcmp(val, "timescaledb"))
        s->mode = TC_STORE_TIMESCALEDB;
    return err;
}

/* "2.28.3" -> is it at least the version the TimescaleDB steps need? */
static int tc_store_timescaledb_recent(const char *version)
{
    int major = 0, minor = 0;

    if (sscanf(version, "%d.%d", &major, &minor) != 2)
        return 0;
    return major > TC_TIMESCALEDB_MIN_MAJOR ||
           (major == TC_TIMESCALEDB_MIN_MAJOR && minor >= TC_TIMESCALEDB_MIN_MINOR);
}

/* Can this server run TimescaleDB mode? If not, why not (into why). */
static tc_err tc_store_timescaledb_usable(tc_store *s, int *usable, char *why, size_t why_size,
                                          char *errstr, size_t errstr_size)
{
    char version[64], preload[512];
    int found, found2;
    tc_err err;

    *usable = 0;
    err = tc_store_query_value(s,
                               "SELECT coalesce(installed_version, default_version) FROM"
                               " pg_available_extensions WHERE name = 'timescaledb'",
                               NULL, 0, version, sizeof(version), &found, errstr, errstr_size);
    if (err != TC_OK)
        return err;
    if (!found) {
        snprintf(why, why_size, "the timescaledb extension is not installed on the server");
        return TC_OK;
    }
    if (!tc_store_timescaledb_recent(version)) {
        snprintf(why, why_size, "timescaledb %s is older than %d.%d", version,
                 TC_TIMESCALEDB_MIN_MAJOR, TC_TIMESCALEDB_MIN_MINOR);
        return TC_OK;
    }
    err = tc_store_query_value(s, "SELECT current_setting('shared_preload_libraries')", NULL, 0,
                               preload, sizeof(preload), &found2, errstr, errstr_size);
    if (err != TC_OK)
        return err;
    if (!strstr(preload, "timescaledb")) {
        snprintf(why, why_size, "timescaledb %s is installed but not in shared_preload_libraries",
                 version);
        return TC_OK;
    }
    *usable = 1;
    return TC_OK;
}

/* Decide the schema's mode and record it; called inside the migration lock's transaction. */
static tc_err tc_store_decide_mode(tc_store *s, char *errstr, size_t errstr_size)
{
    char val[64], why[256] = "", sql[TC_SQL_MAX];
    const char *recorded_by = "recorded in store_mode";
    int found, usable = 0;
    tc_store_mode mode;
    tc_err err;

    err = tc_store_query_value(s, "SELECT mode FROM @S.store_mode", NULL, 0, val, sizeof(val),
                               &found, errstr, errstr_size);
    if (err != TC_OK)
        return err;
    if (!found) {
        /* A schema from before the mode table: its readings table says. */
        recorded_by = "its readings table is partitioned";
        err = tc_store_query_value(s,
                                   "SELECT c.relkind FROM pg_class c JOIN pg_namespace n ON"
                                   " n.oid = c.relnamespace WHERE n.nspname = $1 AND"
                                   " c.relname = 'readings'",
                                   s->schema_raw, 0, val, sizeof(val), &found, errstr, errstr_size);
        if (err != TC_OK)
            return err;
        if (found)
            snprintf(val, sizeof(val), "%s", strcmp(val, "p") == 0 ? "plain" : "timescaledb");
    }
    if (found) {
        mode = strcmp(val, "timescaledb") == 0 ? TC_STORE_TIMESCALEDB : TC_STORE_PLAIN;
        if ((mode == TC_STORE_PLAIN && !strcmp(s->want_mode, "on")) ||
            (mode == TC_STORE_TIMESCALEDB && !strcmp(s->want_mode, "off")))
            return tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                              "schema \"%s\" is in %s mode (%s) and postgres.timescaledb=%s cannot"
                              " change that; migrate into a new schema instead",
                              s->schema_raw, tc_store_mode_name(mode), recorded_by, s->want_mode);
    } else if (!strcmp(s->want_mode, "off")) {
        mode = TC_STORE_PLAIN;
    } else {
        err = tc_store_timescaledb_usable(s, &usable, why, sizeof(why), errstr, errstr_size);
        if (err != TC_OK)
            return err;
        if (!usable && !strcmp(s->want_mode, "on"))
            return tc_err_set(TC_ERR_CONFIG, errstr, errstr_size, "postgres.timescaledb=on but %s",
                              why);
        if (!usable)
            tc_log_info("store", "plain-PostgreSQL mode: %s", why);
        mode = usable ? TC_STORE_TIMESCALEDB : TC_STORE_PLAIN;
    }
    if (mode == TC_STORE_TIMESCALEDB) {
        err = tc_store_exec(s, "CREATE EXTENSION IF NOT EXISTS timescaledb",
                            "create the timescaledb extension", errstr, errstr_size);
        if (err != TC_OK)
            return err;
    }
    snprintf(val, sizeof(val), "%s", tc_store_mode_name(mode));
    snprintf(why, sizeof(why),
             "INSERT INTO @S.store_mode (mode) VALUES ('%s') ON CONFLICT (id) DO NOTHING", val);
    if (tc_store_sql(s, why, sql, sizeof(sql)) < 0)
        return TC_ERR_INVALID;
    err = tc_store_exec(s, sql, "record the store mode", errstr, errstr_size);
    if (err == TC_OK && !found)
        tc_log_info("store", "schema \"%s\": %s mode", s->schema_raw, val);
    s->mode = mode;
    return err;
}

static tc_err tc_store_apply(tc_store *s, const tc_migration *m, char *errstr, size_t errstr_size)
{
    char sql[TC_SQL_MAX], what[512];
    const char *own = s->mode == TC_STORE_TIMESCALEDB ? m->timescale : m->plain;
    int applied = 0;
    tc_err err;

    err = tc_store_begin(s, "SELECT pg_advisory_xact_lock(" TC_LOCK_MIGRATE ")", "lock migrations",
                         errstr, errstr_size);
    if (err != TC_OK)
        return err;
    err = tc_store_migration_applied(s, m->version, &applied, errstr, errstr_size);
    if (err == TC_OK && !applied) {
        snprintf(what, sizeof(what), "apply migration %d (%s)", m->version, m->what);
        if (m->sql)
            err = tc_store_exec_tmpl(s, m->sql, what, errstr, errstr_size);
        if (err == TC_OK && own)
            err = tc_store_exec_tmpl(s, own, what, errstr, errstr_size);
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
    tc_store_rollback(s, "the migration");
    return err;
}

/* The online features sink's tables (src/features/sink_online.h), idempotent like the quality
 * monitor's and outside the numbered steps for the same reason: every schema has them whether or
 * not the sink runs, and a later change is a statement appended here (ADD COLUMN IF NOT EXISTS).
 * One row per device x feature x window start: the value and the accumulator's state, which a
 * write merges into (so the state columns are the window_agg.h fields). */
static const char tc_store_features_ddl[] =
    "CREATE TABLE IF NOT EXISTS @S.features_online ("
    " device_id text NOT NULL, feature text NOT NULL, window_start timestamptz NOT NULL,"
    " window_end timestamptz NOT NULL, window_s integer NOT NULL, metric text NOT NULL,"
    " aggregate text NOT NULL, value double precision, rows bigint NOT NULL, n bigint NOT NULL,"
    " mean double precision, m2 double precision, min double precision, max double precision,"
    " t_mean double precision, t_m2 double precision, c_tx double precision, last_us bigint,"
    " last double precision, anomalies bigint NOT NULL,"
    " updated_at timestamptz NOT NULL DEFAULT now(),"
    " PRIMARY KEY (device_id, feature, window_start));"
    "CREATE INDEX IF NOT EXISTS features_online_window_idx ON @S.features_online"
    " (feature, window_start);"
    "COMMENT ON TABLE @S.features_online IS 'Online features (the features sink): per device,"
    " feature of features.definitions and window [window_start, window_end), the value over"
    " the readings held so far, and the accumulator state the next write merges into.';"
    "CREATE TABLE IF NOT EXISTS @S.features_online_offsets ("
    " group_id text NOT NULL, topic text NOT NULL, partition integer NOT NULL,"
    " next_offset bigint NOT NULL, updated_at timestamptz NOT NULL DEFAULT now(),"
    " PRIMARY KEY (group_id, topic, partition));"
    "COMMENT ON TABLE @S.features_online_offsets IS 'The features sink''s marks: next offset"
    " per partition, committed with the windows they cover.';";

static tc_err tc_store_features_migrate(tc_store *s, char *errstr, size_t errstr_size)
{
    tc_err err = tc_store_begin(s, "SELECT pg_advisory_xact_lock(" TC_LOCK_MIGRATE ")",
                                "lock migrations", errstr, errstr_size);

    if (err == TC_OK)
        err = tc_store_exec_tmpl(s, tc_store_features_ddl, "create the online features' tables",
                                 errstr, errstr_size);
    if (err == TC_OK)
        return tc_store_exec(s, "COMMIT", "commit the online features' tables", errstr,
                             errstr_size);
    tc_store_rollback(s, "the online features' tables");
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
                     " applied_at timestamptz NOT NULL DEFAULT now());"
                     "CREATE TABLE IF NOT EXISTS @S.store_mode ("
                     " id boolean PRIMARY KEY DEFAULT true CHECK (id),"
                     " mode text NOT NULL CHECK (mode IN ('plain', 'timescaledb')),"
                     " decided_at timestamptz NOT NULL DEFAULT now())",
                     sql, sizeof(sql)) < 0)
        return TC_ERR_INVALID;
    err = tc_store_exec(s, sql, "create schema", errstr, errstr_size);
    if (err == TC_OK)
        err = tc_store_decide_mode(s, errstr, errstr_size);
    if (err == TC_OK) {
        err = tc_store_exec(s, "COMMIT", "commit the store mode", errstr, errstr_size);
    } else {
        tc_store_rollback(s, "the store mode");
        return err;
    }
    for (size_t i = 0; err == TC_OK && i < TC_MIGRATION_COUNT; i++)
        err = tc_store_apply(s, &tc_migrations[i], errstr, errstr_size);
    /* The quality monitor's tables (idempotent, its own lock): every schema has them, so the
     * quality sink and `thermocline quality` find them whether or not the sink runs. */
    if (err == TC_OK)
        err = tc_quality_migrate(s->conn, s->schema, s->mode == TC_STORE_TIMESCALEDB, errstr,
                                 errstr_size);
    if (err == TC_OK)
        err = tc_store_features_migrate(s, errstr, errstr_size);
    if (err == TC_OK)
        err = tc_store_ddl_migrate(s, errstr, errstr_size);
    if (err == TC_OK)
        err = tc_store_load_state(s, errstr, errstr_size);
    /* Statements prepared before the objects existed would be stale. */
    if (err == TC_OK && s->prepared) {
        err = tc_store_exec(s, "DEALLOCATE ALL", "forget prepared statements", errstr, errstr_size);
        s->prepared = 0;
    }
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

void tc_store_forget_days(tc_store *s)
{
    s->ndays = 0;
    s->days_next = 0;
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
    char sql[128], day_text[16];
    int begun = 0;
    tc_err err = TC_OK;

    if (s->mode == TC_STORE_TIMESCALEDB)
        return TC_OK; /* the hypertable makes its chunks itself */
    for (int64_t day = first; day <= last && err == TC_OK; day++) {
        if (tc_store_day_known(s, day))
            continue;
        if (!begun) {
            err = tc_store_exec(s, "BEGIN", "begin transaction", errstr, errstr_size);
            if (err != TC_OK)
                return err;
            begun = 1;
        }
        /* The owner's function (ddl.c): it takes the partitions' advisory lock itself. */
        tc_store_day_text(day, day_text, sizeof(day_text), 0);
        snprintf(sql, sizeof(sql), "SELECT @S.tc_ddl_add_partition('%s')", day_text);
        err = tc_store_ddl_call(s, sql, NULL, "create partition", errstr, errstr_size);
    }
    if (!begun)
        return TC_OK;
    if (err == TC_OK)
        err = tc_store_exec(s, "COMMIT", "commit partitions", errstr, errstr_size);
    else
        tc_store_rollback(s, "the new partitions");
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

/*
 * Schema evolution: a metric new to the stream becomes a nullable double column of readings,
 * added online. ADD COLUMN of a nullable column without a default only touches the catalog, so the
 * exclusive lock it takes is held for a moment; it runs in its own short transaction under the
 * partitions' advisory lock, before the batch's COPY, and IF NOT EXISTS makes concurrent pipelines
 * (and restarts, which forget what they added) harmless. Columns are only ever added.
 */
tc_err tc_store_ensure_columns(tc_store *s, const tc_batch *b, char *errstr, size_t errstr_size)
{
    /* A text[] literal of the names: checked by tc_batch_dyn_column, [a-z_][a-z0-9_]*. */
    char names[TC_BATCH_DYN_MAX * (TC_BATCH_DYN_NAME_MAX + 1) + 3];
    size_t pos = 1;
    tc_err err;

    if (b->ndyn <= s->ncolumns)
        return TC_OK;
    names[0] = '{';
    for (size_t d = s->ncolumns; d < b->ndyn; d++)
        pos += (size_t)snprintf(names + pos, sizeof(names) - pos, "%s%s",
                                d > s->ncolumns ? "," : "", b->dyn_name[d]);
    snprintf(names + pos, sizeof(names) - pos, "}");
    /* The owner's function (ddl.c), in a statement of its own: the partitions' advisory lock and
     * ADD COLUMN IF NOT EXISTS there make concurrent pipelines and restarts harmless. */
    err = tc_store_ddl_call(s, "SELECT @S.tc_ddl_add_metric_columns($1::text[])", names,
                            "add a metric column", errstr, errstr_size);
    if (err == TC_OK) {
        for (size_t d = s->ncolumns; d < b->ndyn; d++)
            tc_log_info("store", "readings has a new column \"%s\"", b->dyn_name[d]);
        s->ncolumns = b->ndyn;
    }
    return err;
}

/*
 * Schema evolution of the rollups (plain mode): a dynamic metric gets the four columns a fixed one
 * has in rollup_1m and rollup_1h, and the views readings_1m / readings_1h show its avg, min, max
 * and n after the columns they had. Like the fixed ones, "<m>_n" and "<m>_sum" are NOT NULL DEFAULT
 * 0: a bucket written before the metric existed then holds 0 of it, and the upsert's t.x +
 * EXCLUDED.x adds to it (NULL + x would lose x). A constant default is stored in the catalog
 * (PostgreSQL 11+), so the columns are, like readings', a catalog-only change.
 *
 * A view can only gain columns at its end (CREATE OR REPLACE VIEW), so its definition is generated
 * from the metric columns the table really has, in the order they were added: correct whatever
 * added them (another pipeline, an earlier run) and however many there are. The views are locked
 * before their tables, as a query over a view locks them (locking the table first could deadlock
 * with such a query), and with lock_timeout: a long query on a view makes the DDL give up and try
 * again at the next flush instead of holding up the rollups -- and everything queued behind it.
 * The partitions' advisory lock serialises the DDL of concurrent pipelines (and with retention).
 * All of this is the owner's function tc_ddl_add_rollup_columns (ddl.c): the pipeline only asks.
 */
/* Does the view of rollup table t lack a column of rollup r's metrics [from, r->ndyn)? The
 * columns and the view change in one transaction, so the view having "<m>_n" means all is there:
 * what a restarted pipeline meets, and then it takes no lock at all. */
static tc_err tc_store_rollup_view_lacks(tc_store *s, size_t t, const tc_rollup *r, size_t from,
                                         int *lacks, char *errstr, size_t errstr_size)
{
    /* A text[] literal of "<m>_n" names: [a-z0-9_], nothing to escape. */
    char names[TC_BATCH_DYN_MAX * (TC_BATCH_DYN_NAME_MAX + 4) + 3], tmpl[256], val[24];
    size_t pos = 1, want = 0;
    int found = 0;
    tc_err err;

    *lacks = 0;
    names[0] = '{';
    for (size_t d = from; d < r->ndyn; d++) {
        if (!tc_store_rollup_metric_fits(r->dyn_name[d]))
            continue;
        pos += (size_t)snprintf(names + pos, sizeof(names) - pos, "%s%s_n", want ? "," : "",
                                r->dyn_name[d]);
        want++;
    }
    snprintf(names + pos, sizeof(names) - pos, "}");
    if (want == 0)
        return TC_OK;
    snprintf(tmpl, sizeof(tmpl),
             "SELECT count(*) FROM pg_attribute WHERE attrelid = '@S.%s'::regclass AND attnum > 0"
             " AND NOT attisdropped AND attname = ANY($1::text[])",
             tc_store_rollup_tables[t].view);
    err = tc_store_query_value(s, tmpl, names, 0, val, sizeof(val), &found, errstr, errstr_size);
    if (err == TC_OK)
        *lacks = !found || strtoull(val, NULL, 10) < want;
    return err;
}

/* Is m an element of the text[] literal names ("{a,b}")? */
static int tc_store_names_have(const char *names, const char *m)
{
    size_t n = strlen(m);

    for (const char *p = names + 1; *p && *p != '}'; p += strcspn(p, ",}"), p += *p == ',') {
        if (strncmp(p, m, n) == 0 && (p[n] == ',' || p[n] == '}'))
            return 1;
    }
    return 0;
}

tc_err tc_store_ensure_rollup_columns(tc_store *s, char *errstr, size_t errstr_size)
{
    char names[TC_BATCH_DYN_MAX * (TC_BATCH_DYN_NAME_MAX + 1) + 3];
    size_t pos = 1;
    int need = 0, lacks[TC_STORE_ROLLUP_TABLES] = {0};
    tc_err err = TC_OK;

    for (size_t t = 0; err == TC_OK && t < TC_STORE_ROLLUP_TABLES; t++) {
        const tc_rollup *r = tc_store_rollup_of(s, t);
        if (r->ndyn > s->rollup_columns[t])
            err = tc_store_rollup_view_lacks(s, t, r, s->rollup_columns[t], &lacks[t], errstr,
                                             errstr_size);
        need |= lacks[t];
    }
    if (err != TC_OK)
        return err;
    if (!need)
        goto done;
    /* Every metric some view lacks, once: the function adds to both tables (IF NOT EXISTS). The
     * list is read (tc_store_names_have) while it grows, so it is a terminated string from the
     * start: an unterminated one let the stack's leftovers of an earlier call, the same names,
     * pass for this list's, and the function was called with none ("between 1 and 64"). */
    names[0] = '{';
    names[1] = '\0';
    for (size_t t = 0; t < TC_STORE_ROLLUP_TABLES; t++) {
        const tc_rollup *r = tc_store_rollup_of(s, t);
        for (size_t d = s->rollup_columns[t]; lacks[t] && d < r->ndyn; d++) {
            const char *m = r->dyn_name[d];
            if (!tc_store_rollup_metric_fits(m) || tc_store_names_have(names, m))
                continue;
            pos +=
                (size_t)snprintf(names + pos, sizeof(names) - pos, "%s%s", pos > 1 ? "," : "", m);
        }
    }
    snprintf(names + pos, sizeof(names) - pos, "}");
    err = tc_store_ddl_call(s, "SELECT @S.tc_ddl_add_rollup_columns($1::text[])", names,
                            "add rollup columns", errstr, errstr_size);
    /* A lock not granted in time (a long query on a view) is the moment's, not the statement's. */
    if (err == TC_ERR_DB && !strcmp(s->sqlstate, "55P03"))
        err = TC_ERR_DB_CONN;
    if (err != TC_OK)
        return err;
done:
    for (size_t t = 0; t < TC_STORE_ROLLUP_TABLES; t++) {
        const tc_rollup *r = tc_store_rollup_of(s, t);
        for (size_t d = s->rollup_columns[t]; d < r->ndyn; d++) {
            if (!tc_store_rollup_metric_fits(r->dyn_name[d])) {
                if (t == 0) /* once per metric: both rollups know the same ones */
                    tc_log_warn("store",
                                "metric \"%s\" gets no rollup columns: \"%s_sum\" would exceed"
                                " PostgreSQL's 63-byte identifiers (it stays in readings and the"
                                " lake)",
                                r->dyn_name[d], r->dyn_name[d]);
            } else {
                tc_log_info("store", "%s and %s have columns for the metric \"%s\"",
                            tc_store_rollup_tables[t].table, tc_store_rollup_tables[t].view,
                            r->dyn_name[d]);
            }
        }
        s->rollup_columns[t] = r->ndyn;
    }
    return TC_OK;
}
