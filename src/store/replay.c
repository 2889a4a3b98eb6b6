/*
 * replay.c -- resetting and settling a replayed range in PostgreSQL; see replay.h.
 *
 * Rollups are recomputed rather than decremented: a sum taken apart and put back together in
 * floating point does not come back to the same bits, min and max cannot be taken apart at all,
 * and a bucket recomputed from its rows is the same whatever happened to it before. Buckets are
 * UTC minutes and hours, as the batch writer makes them (rollup.c).
 *
 * Deleting by (kafka_partition, kafka_offset) scans readings: no index leads with those columns,
 * and none is added for an operator command. Every statement of a reset runs in one transaction, so
 * a crash leaves the range either untouched or reset.
 */
#include "store/replay.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/store_int.h"

/* Arbitrary but fixed: the namespace of replay locks (the key is hashed from the names). */
#define TC_LOCK_REPLAY "7311003"

/* Run tmpl (expanded, see tc_store_sql) with the text parameters; *affected gets the row count
 * (PQcmdTuples) or, for a query, the first value of the first row. */
static tc_err tc_replay_exec(tc_store *s, const char *tmpl, int nparams, const char *const *params,
                             int64_t *affected, const char *what, char *errstr, size_t errstr_size)
{
    char sql[TC_SQL_MAX], msg[TC_ERRSTR_MAX];
    PGresult *res;
    ExecStatusType st;
    tc_err err = TC_OK;

    if (tc_store_sql(s, tmpl, sql, sizeof(sql)) < 0)
        return tc_err_set(TC_ERR_INVALID, errstr, errstr_size, "statement too long (%s)", what);
    res = PQexecParams(s->conn, sql, nparams, NULL, params, NULL, NULL, 0);
    st = PQresultStatus(res);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        err = tc_store_classify(s, res);
        tc_err_set(err, errstr, errstr_size, "could not %s: %s", what,
                   tc_store_pgmsg(s, res, msg, sizeof(msg)));
    } else if (affected) {
        if (st == PGRES_TUPLES_OK)
            *affected = PQntuples(res) > 0 && !PQgetisnull(res, 0, 0)
                            ? strtoll(PQgetvalue(res, 0, 0), NULL, 10)
                            : 0;
        else
            *affected = strtoll(PQcmdTuples(res), NULL, 10);
    }
    PQclear(res);
    return err;
}

tc_err tc_store_replay_lock(tc_store *s, int *held, char *errstr, size_t errstr_size)
{
    const char *params[3] = {s->schema_raw, s->group, s->topic};
    int64_t got = 0;
    tc_err err = tc_store_connect(s, errstr, errstr_size);

    *held = 0;
    if (err == TC_OK)
        err = tc_replay_exec(s,
                             "SELECT pg_try_advisory_lock(" TC_LOCK_REPLAY
                             ", hashtext($1 || '/' || $2 || '/' || $3))::int",
                             3, params, &got, "take the replay lock", errstr, errstr_size);
    *held = got == 1;
    return err;
}

tc_err tc_store_replay_count(tc_store *s, int32_t partition, int64_t from, int64_t to,
                             int64_t *readings, int64_t *dead_letters, char *errstr,
                             size_t errstr_size)
{
    char p[16], f[24], t[24];
    const char *params[4] = {p, f, t, s->topic};
    tc_err err = tc_store_connect(s, errstr, errstr_size);

    snprintf(p, sizeof(p), "%d", partition);
    snprintf(f, sizeof(f), "%" PRId64, from);
    snprintf(t, sizeof(t), "%" PRId64, to);
    if (err == TC_OK)
        err =
            tc_replay_exec(s,
                           "SELECT count(*) FROM @S.readings WHERE kafka_partition = $1::int"
                           " AND kafka_offset >= $2::bigint AND kafka_offset < $3::bigint",
                           3, params, readings, "count the range's readings", errstr, errstr_size);
    if (err == TC_OK)
        err = tc_replay_exec(s,
                             "SELECT count(*) FROM @S.dead_letters WHERE source_topic = $4"
                             " AND source_partition = $1::int AND source_offset >= $2::bigint"
                             " AND source_offset < $3::bigint",
                             4, params, dead_letters, "count the range's dead letters", errstr,
                             errstr_size);
    return err;
}

/* Recompute the buckets of rollup `table` (width `unit`: minute or hour) that the deleted readings
 * (in tc_replay_gone) fell in. */
/* Every metric of a rollup table -- fixed, and those schema evolution added: an m with all of m_n,
 * m_sum, m_min and m_max -- that readings has a column for, in the order the table got them: the
 * rest of the INSERT's column list, then the SELECT's count and aggregates (one text value). */
#define TC_REPLAY_METRICS_SQL(table)                                                               \
    "SELECT coalesce(string_agg(format(', %1$I, %2$I, %3$I, %4$I', c.m || '_n', c.m || '_sum',"    \
    " c.m || '_min', c.m || '_max'), '' ORDER BY c.attnum), '') || ') SELECT r.device_id,"         \
    " k.bucket, count(*)' || coalesce(string_agg(format(', count(r.%1$I), coalesce(sum(r.%1$I),"   \
    " 0), min(r.%1$I), max(r.%1$I)', c.m), '' ORDER BY c.attnum), '') FROM (SELECT"                \
    " left(a.attname, -2) AS m, a.attnum FROM pg_attribute a WHERE a.attrelid = '@S." table        \
    "'::regclass AND a.attnum > 0 AND NOT a.attisdropped AND a.attname LIKE '%\\_n') c WHERE"      \
    " (SELECT count(*) FROM pg_attribute b WHERE b.attrelid = '@S." table "'::regclass AND"        \
    " b.attnum > 0 AND NOT b.attisdropped AND b.attname IN (c.m || '_sum', c.m || '_min',"         \
    " c.m || '_max')) = 3 AND EXISTS (SELECT 1 FROM pg_attribute x WHERE x.attrelid ="             \
    " '@S.readings'::regclass AND x.attnum > 0 AND NOT x.attisdropped AND x.attname = c.m)"

static tc_err tc_replay_rollup(tc_store *s, const char *table, const char *unit, char *errstr,
                               size_t errstr_size)
{
    char tmpl[TC_SQL_MAX], bucket[128], closed[64 + TC_IDENT_MAX], *sql;
    size_t pos = 0;
    int found = 0, w;
    tc_err err;

    snprintf(bucket, sizeof(bucket),
             "date_trunc('%s', g.time AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'", unit);
    /* Closed buckets only: the views compute the open ones from the readings (store.h). */
    closed[0] = '\0';
    if (s->version >= TC_STORE_VERSION_CLOSED_ROLLUPS)
        snprintf(closed, sizeof(closed),
                 " WHERE k.bucket < (SELECT materialized_1%c FROM %s.rollup_state)",
                 unit[0] == 'm' ? 'm' : 'h', s->schema);
    snprintf(tmpl, sizeof(tmpl),
             "DELETE FROM @S.%s t USING (SELECT DISTINCT g.device_id, %s AS bucket FROM"
             " tc_replay_gone g) k WHERE t.device_id = k.device_id AND t.bucket = k.bucket",
             table, bucket);
    err = tc_replay_exec(s, tmpl, 0, NULL, NULL, "remove the range's rollup buckets", errstr,
                         errstr_size);
    if (err != TC_OK)
        return err;
    sql = malloc(TC_ROLLUP_SQL_MAX);
    if (!sql)
        return tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory building SQL");
    w = snprintf(sql, TC_ROLLUP_SQL_MAX, "INSERT INTO %s.%s (device_id, bucket, n", s->schema,
                 table);
    pos = (size_t)w;
    err = tc_store_query_value(s,
                               strcmp(table, "rollup_1m") ? TC_REPLAY_METRICS_SQL("rollup_1h")
                                                          : TC_REPLAY_METRICS_SQL("rollup_1m"),
                               NULL, 0, sql + pos, TC_ROLLUP_SQL_MAX - pos, &found, errstr,
                               errstr_size);
    if (err == TC_OK) {
        pos += strlen(sql + pos);
        w = snprintf(sql + pos, TC_ROLLUP_SQL_MAX - pos,
                     " FROM (SELECT DISTINCT g.device_id, %s AS bucket FROM tc_replay_gone g) k"
                     " JOIN %s.readings r ON r.device_id = k.device_id AND r.time >= k.bucket"
                     " AND r.time < k.bucket + INTERVAL '1 %s'%s GROUP BY r.device_id, k.bucket",
                     bucket, s->schema, unit, closed);
        if (!found || w < 0 || (size_t)w >= TC_ROLLUP_SQL_MAX - pos)
            err = tc_err_set(TC_ERR_INVALID, errstr, errstr_size, "could not recompute \"%s\": %s",
                             table, found ? "statement too long" : "no metric columns found");
        else
            err =
                tc_store_exec(s, sql, "recompute the range's rollup buckets", errstr, errstr_size);
    }
    free(sql);
    return err;
}

/* Put back the latest reading of some devices from the readings: those whose latest row is in the
 * range (params given), or those of tc_replay_gone (params NULL). */
static tc_err tc_replay_latest(tc_store *s, const char *const *params, char *errstr,
                               size_t errstr_size)
{
    char tmpl[TC_SQL_MAX], cols[512];
    size_t pos = 0;
    tc_err err;

    cols[0] = '\0';
    for (int m = 0; m < TC_METRIC__COUNT; m++) {
        int w = snprintf(cols + pos, sizeof(cols) - pos, ", %s", tc_metric_names[m]);
        pos += w > 0 ? (size_t)w : 0;
    }
    if (params)
        err = tc_replay_exec(
            s,
            "CREATE TEMP TABLE tc_replay_devices ON COMMIT DROP AS"
            " SELECT device_id FROM @S.latest_state WHERE kafka_partition = $1::int"
            " AND kafka_offset >= $2::bigint AND kafka_offset < $3::bigint",
            3, params, NULL, "find the range's latest readings", errstr, errstr_size);
    else
        err = tc_replay_exec(s,
                             "CREATE TEMP TABLE tc_replay_devices ON COMMIT DROP AS"
                             " SELECT DISTINCT device_id FROM tc_replay_gone",
                             0, NULL, NULL, "find the range's devices", errstr, errstr_size);
    if (err == TC_OK)
        err = tc_replay_exec(s,
                             "DELETE FROM @S.latest_state l USING tc_replay_devices d"
                             " WHERE l.device_id = d.device_id",
                             0, NULL, NULL, "remove the range's latest readings", errstr,
                             errstr_size);
    if (err != TC_OK)
        return err;
    /* The same order as the batch writer's "only when newer": (time, partition, offset). */
    snprintf(tmpl, sizeof(tmpl),
             "INSERT INTO @S.latest_state (device_id, time%s, tags, extra, kafka_partition,"
             " kafka_offset) SELECT DISTINCT ON (r.device_id) r.device_id, r.time%s, r.tags,"
             " r.extra, r.kafka_partition, r.kafka_offset FROM @S.readings r JOIN"
             " tc_replay_devices d ON d.device_id = r.device_id"
             " ORDER BY r.device_id, r.time DESC, r.kafka_partition DESC, r.kafka_offset DESC",
             cols, cols);
    return tc_replay_exec(s, tmpl, 0, NULL, NULL, "recompute the latest readings", errstr,
                          errstr_size);
}

/* Recompute what the rows of tc_replay_gone feed: their rollup buckets (plain mode) and their
 * devices' latest rows (params: the range, whose rows are left out; NULL: none left out). */
static tc_err tc_replay_derived(tc_store *s, const char *const *params, char *errstr,
                                size_t errstr_size)
{
    tc_err err = TC_OK;

    if (s->mode == TC_STORE_PLAIN && s->rollups) {
        /* W and H held still until this transaction ends (as a rollups' flush does). */
        if (s->version >= TC_STORE_VERSION_CLOSED_ROLLUPS)
            err = tc_replay_exec(s, "SELECT @S.tc_rollup_thresholds()", 0, NULL, NULL,
                                 "read the rollups' closed buckets", errstr, errstr_size);
        if (err == TC_OK)
            err = tc_replay_rollup(s, "rollup_1m", "minute", errstr, errstr_size);
        if (err == TC_OK)
            err = tc_replay_rollup(s, "rollup_1h", "hour", errstr, errstr_size);
    }
    return err == TC_OK ? tc_replay_latest(s, params, errstr, errstr_size) : err;
}

tc_err tc_store_replay_reset(tc_store *s, int32_t partition, int64_t from, int64_t to,
                             int64_t *deleted, char *errstr, size_t errstr_size)
{
    char p[16], f[24], t[24];
    const char *params[3] = {p, f, t};
    int derived = 0;
    tc_err err = tc_store_connect(s, errstr, errstr_size);

    *deleted = 0;
    if (err != TC_OK)
        return err;
    snprintf(p, sizeof(p), "%d", partition);
    snprintf(f, sizeof(f), "%" PRId64, from);
    snprintf(t, sizeof(t), "%" PRId64, to);
    derived = s->version >= TC_STORE_VERSION_ROLLUPS;
    err = tc_store_exec(s, "BEGIN", "begin the replay's reset", errstr, errstr_size);
    if (err == TC_OK)
        err = tc_replay_exec(s,
                             "CREATE TEMP TABLE tc_replay_gone (device_id text, time timestamptz)"
                             " ON COMMIT DROP",
                             0, NULL, NULL, "prepare the reset", errstr, errstr_size);
    if (err == TC_OK)
        err =
            tc_replay_exec(s,
                           "WITH d AS (DELETE FROM @S.readings WHERE kafka_partition = $1::int"
                           " AND kafka_offset >= $2::bigint AND kafka_offset < $3::bigint"
                           " RETURNING device_id, time)"
                           " INSERT INTO tc_replay_gone SELECT device_id, time FROM d",
                           3, params, deleted, "delete the range's readings", errstr, errstr_size);
    if (err == TC_OK && derived)
        err = tc_replay_derived(s, params, errstr, errstr_size);
    if (err == TC_OK)
        err = tc_store_exec(s, "COMMIT", "commit the replay's reset", errstr, errstr_size);
    if (err != TC_OK) {
        tc_store_rollback(s, "the replay's reset");
        *deleted = 0;
    }
    return err;
}

tc_err tc_store_replay_settle(tc_store *s, int32_t partition, int64_t from, int64_t to,
                              int64_t *removed, char *errstr, size_t errstr_size)
{
    char p[16], f[24], t[24];
    const char *params[4] = {p, f, t, s->topic};
    int64_t accepted = 0, twins = 0;
    int derived = s->version >= TC_STORE_VERSION_ROLLUPS;
    tc_err err = tc_store_connect(s, errstr, errstr_size);

    *removed = 0;
    if (err != TC_OK)
        return err;
    snprintf(p, sizeof(p), "%d", partition);
    snprintf(f, sizeof(f), "%" PRId64, from);
    snprintf(t, sizeof(t), "%" PRId64, to);
    err = tc_store_exec(s, "BEGIN", "begin settling dead letters", errstr, errstr_size);
    /* Refused before, a reading now. */
    if (err == TC_OK)
        err =
            tc_replay_exec(s,
                           "DELETE FROM @S.dead_letters d USING @S.readings r"
                           " WHERE d.source_topic = $4 AND d.source_partition = $1::int"
                           " AND d.source_offset >= $2::bigint AND d.source_offset < $3::bigint"
                           " AND r.kafka_partition = $1::int AND r.kafka_offset = d.source_offset",
                           4, params, &accepted, "remove the dead letters that are readings now",
                           errstr, errstr_size);
    /* Refused again: the oldest row stays, with the newest content. */
    if (err == TC_OK)
        err = tc_replay_exec(
            s,
            "WITH r AS (SELECT id, min(id) OVER w AS keep, max(id) OVER w AS newest FROM"
            " @S.dead_letters WHERE source_topic = $4 AND source_partition = $1::int"
            " AND source_offset >= $2::bigint AND source_offset < $3::bigint"
            " WINDOW w AS (PARTITION BY source_offset)),"
            " u AS (UPDATE @S.dead_letters k SET reason = n.reason, detail = n.detail,"
            " stage = n.stage, payload = n.payload, kafka_key = n.kafka_key FROM r JOIN"
            " @S.dead_letters n ON n.id = r.newest WHERE k.id = r.id AND r.id = r.keep"
            " AND r.newest <> r.keep AND (k.reason, k.stage) IS DISTINCT FROM (n.reason, n.stage))"
            " DELETE FROM @S.dead_letters d USING r WHERE d.id = r.id AND r.id <> r.keep",
            4, params, &twins, "merge the range's repeated dead letters", errstr, errstr_size);
    /* The range's rows are back: recompute what they feed once more, now from all of them. This
     * makes the rollups exact whatever the pipeline fed them meanwhile (a replay gives them
     * nothing: they are recomputed here). */
    if (err == TC_OK && derived)
        err = tc_replay_exec(s,
                             "CREATE TEMP TABLE tc_replay_gone ON COMMIT DROP AS SELECT device_id,"
                             " time FROM @S.readings WHERE kafka_partition = $1::int"
                             " AND kafka_offset >= $2::bigint AND kafka_offset < $3::bigint",
                             3, params, NULL, "find the range's readings", errstr, errstr_size);
    if (err == TC_OK && derived)
        err = tc_replay_derived(s, NULL, errstr, errstr_size);
    /* The range's buckets are exact now, and nothing below the range was missing from the rollups
     * (the replay starts at their mark at the latest): their mark joins the store's. */
    if (err == TC_OK) {
        const char *mark_params[4] = {p, s->topic, s->group, s->rollup_group};
        err = tc_replay_exec(
            s,
            "INSERT INTO @S.ingest_offsets AS o (group_id, topic, partition, next_offset)"
            " SELECT $4, topic, partition, next_offset FROM @S.ingest_offsets"
            " WHERE group_id = $3 AND topic = $2 AND partition = $1::int"
            " ON CONFLICT (group_id, topic, partition) DO UPDATE"
            " SET next_offset = EXCLUDED.next_offset, updated_at = now()"
            " WHERE o.next_offset <> EXCLUDED.next_offset",
            4, mark_params, NULL, "move the rollups' mark", errstr, errstr_size);
    }
    if (err == TC_OK)
        err = tc_store_exec(s, "COMMIT", "commit settling dead letters", errstr, errstr_size);
    if (err != TC_OK) {
        tc_store_rollback(s, "the settling of dead letters");
        return err;
    }
    *removed = accepted + twins;
    return TC_OK;
}
