/*
 * quality_sql.c -- the quality monitor's DDL and its migration, and the statements (and their
 * rows' documents) a flush sends; see quality_sql.h.
 *
 * Every DDL statement is CREATE ... IF NOT EXISTS, so the migration is a no-op when the objects are
 * there and needs no version row of its own; a later change to these objects is a new statement
 * appended here (ALTER ... ADD COLUMN IF NOT EXISTS), never an edit of an existing one.
 */
#include "quality/quality_sql.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Arbitrary but fixed: next to the store's 7311001 (migrations) and 7311002 (partitions). */
#define TC_QUALITY_LOCK "7311003"
/* Longest quoted schema name. */
#define TC_QUALITY_SCHEMA_MAX 256

/* Present-count columns of the built-in metrics. */
#define TC_Q_METRIC_N                                                                              \
    " temperature_n bigint NOT NULL DEFAULT 0, humidity_n bigint NOT NULL DEFAULT 0,"              \
    " pressure_n bigint NOT NULL DEFAULT 0, battery_n bigint NOT NULL DEFAULT 0,"                  \
    " latitude_n bigint NOT NULL DEFAULT 0, longitude_n bigint NOT NULL DEFAULT 0,"
#define TC_Q_FIGURES                                                                               \
    " readings bigint NOT NULL DEFAULT 0," TC_Q_METRIC_N " late bigint NOT NULL DEFAULT 0,"        \
    " out_of_order bigint NOT NULL DEFAULT 0, gaps bigint NOT NULL DEFAULT 0,"                     \
    " gap_max_s double precision, dead_letters bigint NOT NULL DEFAULT 0,"                         \
    " duplicates bigint NOT NULL DEFAULT 0, delay_p50_ms double precision,"                        \
    " delay_p99_ms double precision, delay_sketch integer[],"

static const char tc_quality_ddl[] =
    "CREATE TABLE IF NOT EXISTS @S.quality_1m ("
    " device_id text NOT NULL, bucket timestamptz NOT NULL," TC_Q_FIGURES
    " PRIMARY KEY (device_id, bucket));"
    "CREATE INDEX IF NOT EXISTS quality_1m_bucket_idx ON @S.quality_1m (bucket);"
    "COMMENT ON TABLE @S.quality_1m IS 'Data quality per device and minute of event time"
    " (docs/quality.md): completeness is <metric>_n / readings; delay_sketch holds the"
    " event-to-ingest delay histogram (4 buckets per octave of milliseconds), mergeable by"
    " adding.';"
    "CREATE TABLE IF NOT EXISTS @S.quality_fleet_1m ("
    " bucket timestamptz PRIMARY KEY," TC_Q_FIGURES " devices bigint NOT NULL DEFAULT 0);"
    "COMMENT ON TABLE @S.quality_fleet_1m IS 'Data quality of the whole fleet per minute; delay"
    " quantiles from the merged sketch.';"
    "CREATE TABLE IF NOT EXISTS @S.quality_dead_letters_1m ("
    " bucket timestamptz NOT NULL, reason text NOT NULL, n bigint NOT NULL DEFAULT 0,"
    " PRIMARY KEY (bucket, reason));"
    "CREATE TABLE IF NOT EXISTS @S.anomalies ("
    " id bigserial PRIMARY KEY, device_id text NOT NULL, metric text,"
    " kind text NOT NULL CHECK (kind IN ('spike', 'drift', 'stuck', 'rate', 'silence', 'range',"
    " 'required', 'interval', 'expr')),"
    " rule text, severity text NOT NULL DEFAULT 'warning' CHECK (severity IN ('warning',"
    " 'critical')),"
    " start_time timestamptz NOT NULL, end_time timestamptz CHECK (end_time >= start_time),"
    " score double precision, observed double precision, expected double precision,"
    " status text GENERATED ALWAYS AS (CASE WHEN end_time IS NULL THEN 'open' ELSE 'resolved'"
    " END) STORED, updated_at timestamptz NOT NULL DEFAULT now());"
    "CREATE UNIQUE INDEX IF NOT EXISTS anomalies_finding_key ON @S.anomalies"
    " (device_id, coalesce(metric, ''), kind, coalesce(rule, ''), start_time);"
    "CREATE INDEX IF NOT EXISTS anomalies_open_idx ON @S.anomalies (device_id, start_time)"
    " WHERE end_time IS NULL;"
    "CREATE INDEX IF NOT EXISTS anomalies_start_idx ON @S.anomalies (start_time);"
    "COMMENT ON TABLE @S.anomalies IS 'Findings of the quality detectors and rules: one row per"
    " finding, opened once and resolved when the condition clears.';"
    "CREATE TABLE IF NOT EXISTS @S.quality_offsets ("
    " group_id text NOT NULL, topic text NOT NULL, partition integer NOT NULL,"
    " next_offset bigint NOT NULL, detector_state bytea,"
    " updated_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (group_id, topic, partition));"
    "COMMENT ON TABLE @S.quality_offsets IS 'The quality sink''s marks: next offset per partition"
    " and the detectors'' checkpoint, committed together.';"
    /* Appended for the quality sink (monitor.c): the partition whose lane found an anomaly, so a
     * member taking the partition over restores the rules' open findings of its devices only; and
     * the delay sketch's arithmetic, so a minute written in several flushes merges its sketches
     * and its quantiles come from the merged one (the same buckets as metrics.c). */
    "ALTER TABLE @S.anomalies ADD COLUMN IF NOT EXISTS kafka_partition integer;"
    "CREATE OR REPLACE FUNCTION @S.tc_quality_sketch_add(a integer[], b integer[])"
    " RETURNS integer[] LANGUAGE sql IMMUTABLE AS $f$ SELECT CASE WHEN a IS NULL THEN b"
    " WHEN b IS NULL THEN a ELSE ARRAY(SELECT coalesce(x, 0) + coalesce(y, 0)"
    " FROM unnest(a, b) AS t(x, y)) END $f$;"
    "CREATE OR REPLACE FUNCTION @S.tc_quality_sketch_quantile(s integer[], q double precision)"
    " RETURNS double precision LANGUAGE sql IMMUTABLE AS $f$"
    " SELECT CASE WHEN i = 1 THEN 0.5 ELSE power(2, (2.0 * (i - 1) - 1.0) / 8.0) END"
    " FROM (SELECT i, sum(v) OVER (ORDER BY i) AS c, sum(v) OVER () AS total"
    " FROM unnest(s) WITH ORDINALITY AS t(v, i)) x"
    " WHERE total > 0 AND c >= greatest(1, ceil(q * total)) ORDER BY i LIMIT 1 $f$;"
    /* Sketches summed over rows (`quality summary`, the api views). */
    "CREATE OR REPLACE AGGREGATE @S.tc_quality_sketch_sum(integer[])"
    " (sfunc = @S.tc_quality_sketch_add, stype = integer[]);"
    /* The partition's event-time watermark, so lateness after a restart is judged as before. */
    "ALTER TABLE @S.quality_offsets ADD COLUMN IF NOT EXISTS watermark_us bigint;"
    /* The checkpoint is rewritten at every flush and compresses little (floats): not compressed. */
    "ALTER TABLE @S.quality_offsets ALTER COLUMN detector_state SET STORAGE EXTERNAL;"
    /* The detectors' checkpoint a device a row (quality/ckpt.h): a flush rewrites only the
     * devices that changed. Records are ~300-800 bytes, rewritten in place: room on the page for
     * the new version keeps the updates HOT (no index entry per flush). */
    "CREATE TABLE IF NOT EXISTS @S.quality_detector_state ("
    " group_id text NOT NULL, topic text NOT NULL, partition integer NOT NULL,"
    " device_id text NOT NULL, state bytea NOT NULL,"
    " PRIMARY KEY (group_id, topic, partition, device_id)) WITH (fillfactor = 50);"
    "COMMENT ON TABLE @S.quality_detector_state IS 'The quality sink''s detector checkpoint:"
    " one record per device, written with the partition''s mark in quality_offsets.';"
    /* The row type of a flush's metric rows (quality_sql.h, tc_quality_sql_row_bin): they go
     * as one binary array of it, which PostgreSQL reads at a fraction of the cost of expanding
     * a JSON document. CREATE TYPE has no IF NOT EXISTS. */
    "DO $t$ BEGIN CREATE TYPE @S.quality_row AS (device_id text, m bigint, readings bigint,"
    " n1 bigint, n2 bigint, n3 bigint, n4 bigint, n5 bigint, n6 bigint, late bigint,"
    " ooo bigint, gaps bigint, gap_max double precision, sk0 integer, sk integer[],"
    " q50 integer, q99 integer, pr bigint, m50 integer, m99 integer);"
    " EXCEPTION WHEN duplicate_object THEN NULL; END $t$;"
    /* A device's new minute, most of a flush's rows (tc_quality_sql_new_row_bin): its counts in
     * integer, which a device's minute never outgrows, and none of a continued part's columns --
     * 12 bytes a count and 17 columns instead of 16 and 20, a quarter fewer bytes a row. */
    "DO $t$ BEGIN CREATE TYPE @S.quality_new_row AS (device_id text, m integer, readings integer,"
    " n1 integer, n2 integer, n3 integer, n4 integer, n5 integer, n6 integer, late integer,"
    " ooo integer, gaps integer, gap_max double precision, sk0 integer, sk integer[],"
    " q50 integer, q99 integer);"
    " EXCEPTION WHEN duplicate_object THEN NULL; END $t$;"
    /* A sketch is stored from its first bucket that counts: subscript b + 1 holds bucket b, and
     * the array's lower bound says where it starts (a backfill's delays sit ~90 buckets along, and
     * the zeros before them were two thirds of a quality_1m row's bytes). Sketches add by
     * subscript, so rows stored from bucket 0 before this merge with those stored since; the sum
     * spans both arrays' bounds. PL/pgSQL: the loop assigns in place, where the SQL form built an
     * array from a zipped unnest (11 against 15 us for two sketches of ~95 buckets). */
    "CREATE OR REPLACE FUNCTION @S.tc_quality_sketch_add(a integer[], b integer[])"
    " RETURNS integer[] LANGUAGE plpgsql IMMUTABLE AS $f$ DECLARE lo integer; hi integer;"
    " s integer[]; BEGIN"
    " IF a IS NULL THEN RETURN b; END IF; IF b IS NULL THEN RETURN a; END IF;"
    " IF cardinality(a) = 0 THEN RETURN b; END IF; IF cardinality(b) = 0 THEN RETURN a; END IF;"
    " lo := least(array_lower(a, 1), array_lower(b, 1));"
    " hi := greatest(array_upper(a, 1), array_upper(b, 1));"
    " s := array_fill(0, ARRAY[hi - lo + 1], ARRAY[lo]);"
    " FOR i IN lo..hi LOOP s[i] := coalesce(a[i], 0) + coalesce(b[i], 0); END LOOP;"
    " RETURN s; END $f$;"
    "CREATE OR REPLACE FUNCTION @S.tc_quality_sketch_quantile(s integer[], q double precision)"
    " RETURNS double precision LANGUAGE sql IMMUTABLE AS $f$"
    " SELECT CASE WHEN i = 1 THEN 0.5 ELSE power(2, (2.0 * (i - 1) - 1.0) / 8.0) END"
    " FROM (SELECT i, sum(s[i]) OVER (ORDER BY i) AS c, sum(s[i]) OVER () AS total"
    " FROM generate_subscripts(s, 1) AS i) x"
    " WHERE total > 0 AND c >= greatest(1, ceil(q * total)) ORDER BY i LIMIT 1 $f$;";

static const char tc_quality_ddl_timescaledb[] =
    "SELECT create_hypertable('@S.quality_1m', by_range('bucket', INTERVAL '1 day'),"
    " if_not_exists => true);";

const char *tc_quality_sql_ddl(void)
{
    return tc_quality_ddl;
}

const char *tc_quality_sql_timescaledb(void)
{
    return tc_quality_ddl_timescaledb;
}

char *tc_quality_sql_expand(const char *tmpl, const char *schema)
{
    size_t n = 0, slen = strlen(schema), cap = strlen(tmpl) + 1;
    char *out, *o;

    for (const char *p = tmpl; (p = strstr(p, "@S")) != NULL; p += 2)
        n++;
    cap += n * slen;
    out = malloc(cap);
    if (!out)
        return NULL;
    o = out;
    for (const char *p = tmpl; *p;) {
        if (p[0] == '@' && p[1] == 'S') {
            memcpy(o, schema, slen);
            o += slen;
            p += 2;
        } else {
            *o++ = *p++;
        }
    }
    *o = '\0';
    return out;
}

static tc_err tc_quality_exec(PGconn *conn, const char *sql, const char *what, char *errstr,
                              size_t errstr_size)
{
    PGresult *res = PQexec(conn, sql);
    ExecStatusType st = PQresultStatus(res);
    tc_err err = TC_OK;

    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        err = PQstatus(conn) != CONNECTION_OK || (state && !strncmp(state, "08", 2))
                  ? TC_ERR_DB_CONN
                  : TC_ERR_DB;
        tc_err_set(err, errstr, errstr_size, "quality migration: %s: %s", what,
                   PQresultErrorMessage(res));
    }
    PQclear(res);
    return err;
}

tc_err tc_quality_migrate(PGconn *conn, const char *schema_quoted, int timescaledb, char *errstr,
                          size_t errstr_size)
{
    char *ddl, *ts = NULL;
    tc_err err;

    if (!schema_quoted || !*schema_quoted || strlen(schema_quoted) > TC_QUALITY_SCHEMA_MAX)
        return tc_err_set(TC_ERR_INVALID, errstr, errstr_size,
                          "quality migration: a quoted schema name of 1..%d bytes is needed",
                          TC_QUALITY_SCHEMA_MAX);
    ddl = tc_quality_sql_expand(tc_quality_ddl, schema_quoted);
    if (timescaledb)
        ts = tc_quality_sql_expand(tc_quality_ddl_timescaledb, schema_quoted);
    if (!ddl || (timescaledb && !ts)) {
        free(ddl);
        free(ts);
        return tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "quality migration: out of memory");
    }
    /* "already exists, skipping" notices would fill the log at every start. */
    err = tc_quality_exec(conn,
                          "BEGIN; SET LOCAL client_min_messages = warning;"
                          " SELECT pg_advisory_xact_lock(" TC_QUALITY_LOCK ")",
                          "lock", errstr, errstr_size);
    if (err == TC_OK)
        err = tc_quality_exec(conn, ddl, "create the quality tables", errstr, errstr_size);
    if (err == TC_OK && ts)
        err = tc_quality_exec(conn, ts, "make quality_1m a hypertable", errstr, errstr_size);
    if (err == TC_OK)
        err = tc_quality_exec(conn, "COMMIT", "commit", errstr, errstr_size);
    else
        PQclear(PQexec(conn, "ROLLBACK"));
    free(ddl);
    free(ts);
    return err;
}

/* ---- the monitor's writes (quality_sql.h) ---- */

/* Microseconds since the epoch in SQL, exactly (an interval times a bigint stays integral). */
#define TC_QSQL_TS(x)  "('epoch'::timestamptz + (" x ") * interval '1 microsecond')"
#define TC_QSQL_MIN(x) "('epoch'::timestamptz + (" x ") * interval '1 minute')"

/* The upsert of quality_1m (fleet 0) or quality_fleet_1m (fleet 1): counts add, the longest gap
 * is the longer, sketches add and the quantiles come from the sum. */
#define TC_QSQL_ADD(c) " " c " = q." c " + EXCLUDED." c ","
#define TC_QSQL_UPSERT_COLS                                                                        \
    " readings, temperature_n, humidity_n, pressure_n, battery_n, latitude_n, longitude_n, late,"  \
    " out_of_order, gaps, gap_max_s, delay_sketch, delay_p50_ms, delay_p99_ms)"
/* A sketch bucket's geometric middle in ms (metrics.h): 0.5 for bucket 0, NULL for none. */
#define TC_QSQL_BUCKET_MS(b)                                                                       \
    "CASE WHEN " b " = 0 THEN 0.5 WHEN " b " > 0 THEN 2 ^ ((2 * " b " - 1) / 8.0::float8) END"
#define TC_QSQL_UPSERT_SELECT_FROM(from)                                                           \
    " r.readings, r.n1, r.n2, r.n3, r.n4, r.n5, r.n6, r.late, r.ooo, r.gaps,"                      \
    " r.gap_max, r.sk, " TC_QSQL_BUCKET_MS("r.q50") ", " TC_QSQL_BUCKET_MS("r.q99") " FROM " from
/* The rows' binary array of @S.quality_row (tc_quality_sql_row_bin), and of @S.quality_new_row
 * (tc_quality_sql_new_row_bin): the same names, so the same SELECT list reads both. */
#define TC_QSQL_ROWS          "unnest($1::@S.quality_row[]) AS r"
#define TC_QSQL_NEW_ROWS      "unnest($1::@S.quality_new_row[]) AS r"
#define TC_QSQL_UPSERT_SELECT TC_QSQL_UPSERT_SELECT_FROM(TC_QSQL_ROWS)
#define TC_QSQL_UPSERT_SET                                                                         \
    " DO UPDATE SET" TC_QSQL_ADD("readings") TC_QSQL_ADD("temperature_n") TC_QSQL_ADD(             \
        "humidity_n") TC_QSQL_ADD("pressure_n") TC_QSQL_ADD("battery_n") TC_QSQL_ADD("latitude_n") \
        TC_QSQL_ADD("longitude_n") TC_QSQL_ADD("late") TC_QSQL_ADD("out_of_order") TC_QSQL_ADD(    \
            "gaps") " gap_max_s = greatest(q.gap_max_s, EXCLUDED.gap_max_s),"                      \
                    " delay_sketch = @S.tc_quality_sketch_add(q.delay_sketch, "                    \
                    "EXCLUDED.delay_sketch),"                                                      \
                    " delay_p50_ms = "                                                             \
                    "@S.tc_quality_sketch_quantile(@S.tc_quality_sketch_add(q.delay_sketch,"       \
                    " EXCLUDED.delay_sketch), 0.5),"                                               \
                    " delay_p99_ms = "                                                             \
                    "@S.tc_quality_sketch_quantile(@S.tc_quality_sketch_add(q.delay_sketch,"       \
                    " EXCLUDED.delay_sketch), 0.99)"

/* A device's rows that continue a minute this lane wrote (`pr` set: the readings it stored for
 * it) update the stored row when it holds exactly those readings, taking the quantiles of the
 * parts' summed sketch from the document (m50, m99) instead of summing and ranking in SQL, which
 * cost a row five SQL function calls (~130 us); a row the stored one does not match is upserted.
 *
 * Only such rows are given to this statement, the others to tc_quality_sql_insert_rows. Given
 * all of a flush's rows, the planner took every one for a candidate of the UPDATE (it cannot see
 * that `pr IS NOT NULL` keeps a tenth) and joined them with quality_1m by hashing the whole
 * table: a backfill of 3 M readings spent 0.4 to 0.8 s a statement scanning it for 1,000 to 1,700
 * rows (auto_explain, docs/quality.md "What a flush costs PostgreSQL"). Alone, the rows are
 * counted from the array itself, and the join is a key lookup a row. */
/* clang-format off */
const char tc_quality_sql_write_rows[] =
    "WITH r AS MATERIALIZED (SELECT * FROM " TC_QSQL_ROWS "),"
    " u AS (UPDATE @S.quality_1m AS q SET"
    " readings = q.readings + r.readings,"
    " temperature_n = q.temperature_n + r.n1, humidity_n = q.humidity_n + r.n2,"
    " pressure_n = q.pressure_n + r.n3, battery_n = q.battery_n + r.n4,"
    " latitude_n = q.latitude_n + r.n5, longitude_n = q.longitude_n + r.n6,"
    " late = q.late + r.late, out_of_order = q.out_of_order + r.ooo, gaps = q.gaps + r.gaps,"
    " gap_max_s = greatest(q.gap_max_s, r.gap_max),"
    " delay_sketch = @S.tc_quality_sketch_add(q.delay_sketch, r.sk),"
    " delay_p50_ms = " TC_QSQL_BUCKET_MS("r.m50") ","
    " delay_p99_ms = " TC_QSQL_BUCKET_MS("r.m99")
    " FROM r WHERE r.pr IS NOT NULL AND q.device_id = r.device_id"
    " AND q.bucket = " TC_QSQL_MIN("r.m") " AND q.readings = r.pr"
    " RETURNING q.device_id, q.bucket)"
    " INSERT INTO @S.quality_1m AS q (device_id, bucket," TC_QSQL_UPSERT_COLS
    " SELECT r.device_id, " TC_QSQL_MIN("r.m") "," TC_QSQL_UPSERT_SELECT_FROM("r")
    " WHERE NOT EXISTS (SELECT 1 FROM u WHERE u.device_id = r.device_id"
    " AND u.bucket = " TC_QSQL_MIN("r.m") ")"
    " ON CONFLICT (device_id, bucket)" TC_QSQL_UPSERT_SET;
/* clang-format on */

/* A device's rows that continue no minute this lane wrote: upserted, with no UPDATE to try
 * first and no anti-join with its result (a tenth of the statement's time, on 35,000 rows). */
const char tc_quality_sql_insert_rows[] =
    "INSERT INTO @S.quality_1m AS q (device_id, bucket," TC_QSQL_UPSERT_COLS
    " SELECT r.device_id, " TC_QSQL_MIN("r.m") "," TC_QSQL_UPSERT_SELECT_FROM(
        TC_QSQL_NEW_ROWS) " ON CONFLICT (device_id, bucket)" TC_QSQL_UPSERT_SET;

const char tc_quality_sql_write_fleet[] =
    "WITH f AS (INSERT INTO @S.quality_fleet_1m AS q (bucket," TC_QSQL_UPSERT_COLS
    " SELECT " TC_QSQL_MIN("r.m") "," TC_QSQL_UPSERT_SELECT
                                  " ON CONFLICT (bucket)" TC_QSQL_UPSERT_SET
                                  " RETURNING bucket) SELECT count(*) FROM f";

/* Dead letters: per minute and reason, per device and minute, per fleet minute. */
const char tc_quality_sql_write_dead[] =
    "WITH d AS (SELECT * FROM json_to_recordset($1::json) AS d(device_id text, m bigint,"
    " reason text, dup int)),"
    " r AS (INSERT INTO @S.quality_dead_letters_1m AS q (bucket, reason, n)"
    " SELECT " TC_QSQL_MIN(
        "m") ", reason, count(*) FROM d GROUP BY 1, 2"
             " ON CONFLICT (bucket, reason) DO UPDATE SET n = q.n + EXCLUDED.n RETURNING 1),"
             " v AS (INSERT INTO @S.quality_1m AS q (device_id, bucket, dead_letters, duplicates)"
             " SELECT device_id, " TC_QSQL_MIN(
                 "m") ", count(*), sum(dup) FROM d"
                      " WHERE device_id IS NOT NULL GROUP BY 1, 2 ON CONFLICT (device_id, bucket) "
                      "DO UPDATE SET"
                      " dead_letters = q.dead_letters + EXCLUDED.dead_letters,"
                      " duplicates = q.duplicates + EXCLUDED.duplicates RETURNING 1)"
                      " INSERT INTO @S.quality_fleet_1m AS q (bucket, dead_letters, duplicates)"
                      " SELECT " TC_QSQL_MIN(
                          "m") ", count(*), sum(dup) FROM d GROUP BY 1"
                               " ON CONFLICT (bucket) DO UPDATE SET dead_letters = q.dead_letters "
                               "+ EXCLUDED.dead_letters,"
                               " duplicates = q.duplicates + EXCLUDED.duplicates";

/* The fleet's device count of the minutes written: derived, so flushes and members agree. */
const char tc_quality_sql_write_devices[] =
    "UPDATE @S.quality_fleet_1m f SET devices = (SELECT count(*) FROM @S.quality_1m q"
    " WHERE q.bucket = f.bucket AND q.readings > 0)"
    " WHERE f.bucket IN (SELECT " TC_QSQL_MIN(
        "x::bigint") " FROM json_array_elements_text($1::json) AS x)";

/* Findings: the last event of each finding wins (opened and resolved in one flush). */
const char tc_quality_sql_write_events[] =
    "INSERT INTO @S.anomalies AS a (device_id, metric, kind, rule, severity, start_time, end_time,"
    " score, observed, expected, kafka_partition)"
    " SELECT DISTINCT ON (e.device_id, coalesce(e.metric, ''), e.kind, coalesce(e.rule, ''),"
    " e.s) e.device_id, e.metric, e.kind, e.rule, e.severity, " TC_QSQL_TS(
        "e.s") ","
               " CASE WHEN e.e > 0 THEN " TC_QSQL_TS(
                   "greatest(e.e, e.s)") " END, e.score, e.observed,"
                                         " e.expected, e.p FROM json_to_recordset($1::json) AS "
                                         "e(seq bigint, device_id text,"
                                         " metric text, kind text, rule text, severity text, s "
                                         "bigint, e bigint,"
                                         " score double precision, observed double precision, "
                                         "expected double precision, p int)"
                                         " ORDER BY e.device_id, coalesce(e.metric, ''), e.kind, "
                                         "coalesce(e.rule, ''), e.s,"
                                         " e.seq DESC"
                                         " ON CONFLICT (device_id, coalesce(metric, ''), kind, "
                                         "coalesce(rule, ''), start_time)"
                                         " DO UPDATE SET end_time = EXCLUDED.end_time, score = "
                                         "coalesce(EXCLUDED.score, a.score),"
                                         " observed = coalesce(EXCLUDED.observed, a.observed),"
                                         " expected = coalesce(EXCLUDED.expected, a.expected), "
                                         "updated_at = now()";

/* The row types' OIDs, for the rows' binary arrays ($1: the schema, unquoted). */
const char tc_quality_sql_row_type[] =
    "SELECT (SELECT t.oid FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace"
    " WHERE n.nspname = $1 AND t.typname = 'quality_row'),"
    " (SELECT t.oid FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace"
    " WHERE n.nspname = $1 AND t.typname = 'quality_new_row')";

/* ---- the binary array of the rows ---- */

/* The bucket holding a sketch's q-quantile (tc_qm_sketch_quantile's), -1 when it is empty; the
 * buckets of s that count all lie in [lo, end) (the others are 0, so the ranks are the whole
 * sketch's). */
static int tc_quality_sql_quantile_bucket(const tc_qm_sketch *s, double q, int lo, int end)
{
    uint64_t rank = (uint64_t)ceil(q * (double)s->count), seen = 0;

    if (!s->count)
        return -1;
    for (int i = lo; i < end; i++) {
        seen += s->b[i];
        if (seen >= (rank < 1 ? 1 : rank))
            return i;
    }
    return TC_QM_SKETCH_BUCKETS - 1;
}

/* [*lo, *end) as a row states it for one of its sketches (tc_qm_row: an end of 0 is all). */
static void tc_quality_sql_bounds(int lo, int end, int *lo_out, int *end_out)
{
    *end_out = end > 0 && end <= TC_QM_SKETCH_BUCKETS ? end : TC_QM_SKETCH_BUCKETS;
    *lo_out = end > 0 && lo < *end_out ? lo : 0;
}

/* PostgreSQL's binary forms (the wire's, big-endian): an array is its dimensions, its element
 * type and each element as a length and bytes; a record is its column count, then each column
 * as its type, a length (-1: NULL) and bytes. Built-in types' OIDs are fixed (pg_type.dat). */
#define TC_QSQL_OID_INT8   20u
#define TC_QSQL_OID_INT4   23u
#define TC_QSQL_OID_TEXT   25u
#define TC_QSQL_OID_FLOAT8 701u
#define TC_QSQL_OID_INT4S  1007u /* integer[] */
/* Columns of @S.quality_row and of @S.quality_new_row, in their order, and their present counts
 * (n1..n6). */
#define TC_QSQL_ROW_COLS     20
#define TC_QSQL_NEW_ROW_COLS 17
#define TC_QSQL_ROW_METRICS  6

static unsigned char *tc_qsql_u32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
    return p + 4;
}

static unsigned char *tc_qsql_u64(unsigned char *p, uint64_t v)
{
    return tc_qsql_u32(tc_qsql_u32(p, (uint32_t)(v >> 32)), (uint32_t)v);
}

/* A column: its type, length and value. */
static unsigned char *tc_qsql_int8(unsigned char *p, int64_t v)
{
    return tc_qsql_u64(tc_qsql_u32(tc_qsql_u32(p, TC_QSQL_OID_INT8), 8), (uint64_t)v);
}

static unsigned char *tc_qsql_int4(unsigned char *p, int32_t v)
{
    return tc_qsql_u32(tc_qsql_u32(tc_qsql_u32(p, TC_QSQL_OID_INT4), 4), (uint32_t)v);
}

static unsigned char *tc_qsql_null(unsigned char *p, uint32_t oid)
{
    return tc_qsql_u32(tc_qsql_u32(p, oid), UINT32_MAX);
}

void tc_quality_sql_rows_begin(tc_jbuf *j)
{
    static const char header[TC_QUALITY_SQL_ROWS_HEADER];

    tc_jbuf_append(j, header, sizeof(header));
}

void tc_quality_sql_rows_end(tc_jbuf *j, uint32_t type_oid, size_t n)
{
    unsigned char *p = (unsigned char *)j->data;

    if (tc_jbuf_failed(j) || !p || j->len < TC_QUALITY_SQL_ROWS_HEADER)
        return;
    p = tc_qsql_u32(p, 1);        /* dimensions */
    p = tc_qsql_u32(p, 0);        /* no NULL element */
    p = tc_qsql_u32(p, type_oid); /* element type */
    p = tc_qsql_u32(p, (uint32_t)n);
    (void)tc_qsql_u32(p, 1); /* lower bound */
}

/* A row's element up to its figures: its length (written by tc_qsql_row_end), its column count
 * and the device id (NULL for the fleet's). The whole element is built in one piece, its device
 * id included (a builder call a field cost more than the figures, as the JSON before it did). */
static unsigned char *tc_qsql_row_device(unsigned char *buf, const tc_qm_row *r, uint32_t cols)
{
    unsigned char *p = tc_qsql_u32(buf + 4, cols);
    size_t dlen = r->device ? strnlen(r->device, TC_QM_DEVICE_ID_MAX) : 0;

    if (!r->device)
        return tc_qsql_null(p, TC_QSQL_OID_TEXT);
    p = tc_qsql_u32(tc_qsql_u32(p, TC_QSQL_OID_TEXT), (uint32_t)dlen);
    memcpy(p, r->device, dlen);
    return p + dlen;
}

/* The columns after the figures, the same in both row types: the longest gap, the delay sketch
 * (the bulk: 8 bytes a bucket) and a new row's quantiles. */
static unsigned char *tc_qsql_row_delays(unsigned char *p, const tc_qm_row *r)
{
    unsigned char *sk;
    int nb, b0, lo;

    if (r->gaps && isfinite(r->gap_max_s)) {
        uint64_t bits;
        memcpy(&bits, &r->gap_max_s, sizeof(bits));
        p = tc_qsql_u64(tc_qsql_u32(tc_qsql_u32(p, TC_QSQL_OID_FLOAT8), 8), bits);
    } else {
        p = tc_qsql_null(p, TC_QSQL_OID_FLOAT8);
    }
    /* The sketch from its first bucket that counts (sk0) to its last (at least one bucket), with
     * its subscripts starting at sk0 + 1 -- stored so, without the zeros before it: the SQL adds
     * sketches by subscript, whatever their bounds (a missing bucket is 0), and a device minute's
     * few delays fall in a bucket or two, wherever they are. */
    tc_quality_sql_bounds(r->delay_lo, r->delay_end, &lo, &nb);
    while (nb > lo + 1 && !r->delay.b[nb - 1])
        nb--;
    if (nb == lo + 1 && !r->delay.b[lo])
        lo = 0, nb = 1; /* no bucket counts: one 0, as the whole sketch scanned would give */
    for (b0 = lo; b0 < nb - 1 && !r->delay.b[b0]; b0++)
        ;
    p = tc_qsql_int4(p, b0);
    p = tc_qsql_u32(p, TC_QSQL_OID_INT4S);
    sk = p;
    p += 4; /* the array's length, once written */
    p = tc_qsql_u32(p, 1);
    p = tc_qsql_u32(p, 0);
    p = tc_qsql_u32(p, TC_QSQL_OID_INT4);
    p = tc_qsql_u32(p, (uint32_t)(nb - b0));
    p = tc_qsql_u32(p, (uint32_t)b0 + 1); /* lower bound: subscript b + 1 is bucket b */
    for (int i = b0; i < nb; i++)
        p = tc_qsql_u32(tc_qsql_u32(p, 4), r->delay.b[i]);
    (void)tc_qsql_u32(sk, (uint32_t)(p - sk - 4));
    /* A new row's quantiles, from its own sketch here, as bucket numbers (-1: none); a row that
     * exists takes them from the merged sketch in SQL (tc_quality_sql_write_rows). */
    p = tc_qsql_int4(p, tc_quality_sql_quantile_bucket(&r->delay, 0.5, b0, nb));
    return tc_qsql_int4(p, tc_quality_sql_quantile_bucket(&r->delay, 0.99, b0, nb));
}

/* The element's length at its start, and the element into j. */
static void tc_qsql_row_end(tc_jbuf *j, unsigned char *buf, const unsigned char *p)
{
    (void)tc_qsql_u32(buf, (uint32_t)(p - buf - 4));
    tc_jbuf_append(j, (const char *)buf, (size_t)(p - buf));
}

void tc_quality_sql_row_bin(tc_jbuf *j, const tc_qm_row *r, int metrics)
{
    unsigned char buf[TC_QUALITY_SQL_ROW_BIN_MAX],
        *p = tc_qsql_row_device(buf, r, TC_QSQL_ROW_COLS);
    int lo, end;

    /* Minutes since the epoch (a minute's start is a multiple of one). */
    p = tc_qsql_int8(p, r->minute_us / TC_QM_MINUTE_US);
    p = tc_qsql_int8(p, r->readings);
    for (int i = 0; i < TC_QSQL_ROW_METRICS; i++)
        p = tc_qsql_int8(p, i < metrics ? r->present[i] : 0);
    p = tc_qsql_int8(p, r->late);
    p = tc_qsql_int8(p, r->out_of_order);
    p = tc_qsql_int8(p, r->gaps);
    p = tc_qsql_row_delays(p, r);
    /* A part of a minute whose earlier parts this lane wrote (metrics.h): the readings they
     * stored and the quantiles of all the parts' sketch, which the statement takes when the
     * stored row holds those readings and nothing else; NULLs otherwise. */
    if (r->continues) {
        tc_quality_sql_bounds(r->whole_lo, r->whole_end, &lo, &end);
        p = tc_qsql_int8(p, r->written);
        p = tc_qsql_int4(p, tc_quality_sql_quantile_bucket(&r->whole, 0.5, lo, end));
        p = tc_qsql_int4(p, tc_quality_sql_quantile_bucket(&r->whole, 0.99, lo, end));
    } else {
        p = tc_qsql_null(p, TC_QSQL_OID_INT8);
        p = tc_qsql_null(p, TC_QSQL_OID_INT4);
        p = tc_qsql_null(p, TC_QSQL_OID_INT4);
    }
    tc_qsql_row_end(j, buf, p);
}

int tc_quality_sql_new_row_bin(tc_jbuf *j, const tc_qm_row *r, int metrics)
{
    unsigned char buf[TC_QUALITY_SQL_ROW_BIN_MAX], *p;
    int64_t minute = r->minute_us / TC_QM_MINUTE_US;
    uint32_t any = r->readings | r->late | r->out_of_order | r->gaps;

    for (int i = 0; i < TC_QSQL_ROW_METRICS && i < metrics; i++)
        any |= r->present[i];
    /* A figure past integer's range (none exceeds the readings, and a device does not send 2^31
     * in a minute) or a minute past the year 6053 goes in the wide record, as continued parts. */
    if (!r->device || r->continues || any > INT32_MAX || minute < INT32_MIN || minute > INT32_MAX)
        return 0;
    p = tc_qsql_row_device(buf, r, TC_QSQL_NEW_ROW_COLS);
    p = tc_qsql_int4(p, (int32_t)minute);
    p = tc_qsql_int4(p, (int32_t)r->readings);
    for (int i = 0; i < TC_QSQL_ROW_METRICS; i++)
        p = tc_qsql_int4(p, i < metrics ? (int32_t)r->present[i] : 0);
    p = tc_qsql_int4(p, (int32_t)r->late);
    p = tc_qsql_int4(p, (int32_t)r->out_of_order);
    p = tc_qsql_int4(p, (int32_t)r->gaps);
    tc_qsql_row_end(j, buf, tc_qsql_row_delays(p, r));
    return 1;
}
