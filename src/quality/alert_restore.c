/*
 * alert_restore.c -- the quality sink's alerts after a restart; see alert_restore.h.
 *
 * The resolved findings come first and the open ones after, oldest first: a device whose finding
 * cleared and opened again under the same labels ends up firing, as it is.
 */
#include "quality/alert_restore.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <libpq-fe.h>

#include "core/log.h"
#include "quality/quality_sql.h"

/* A partition number and its comma in the array literal. */
#define TC_QUALITY_RESTORE_PART_CHARS 12

static const char tc_quality_restore_sql[] =
    "SELECT device_id, metric, kind, rule, severity, kafka_partition,"
    " (extract(epoch FROM start_time) * 1000000)::bigint,"
    " coalesce((extract(epoch FROM end_time) * 1000000)::bigint, 0), score, observed, expected"
    " FROM @S.anomalies WHERE kafka_partition = ANY($1::int[])"
    " AND (end_time IS NULL OR updated_at > now() - make_interval(secs => $2::int))"
    " ORDER BY end_time IS NULL, start_time LIMIT $3::int";

static const char *tc_quality_restore_text(const PGresult *res, int row, int col)
{
    return PQgetisnull(res, row, col) ? NULL : PQgetvalue(res, row, col);
}

static double tc_quality_restore_double(const PGresult *res, int row, int col)
{
    return PQgetisnull(res, row, col) ? NAN : strtod(PQgetvalue(res, row, col), NULL);
}

/* "{0,3,7}": the partitions as a PostgreSQL array literal (NULL when out of memory). */
static char *tc_quality_restore_parts(const int32_t *parts, size_t n)
{
    size_t cap = 3 + n * TC_QUALITY_RESTORE_PART_CHARS, len = 1;
    char *s = malloc(cap);

    if (!s)
        return NULL;
    s[0] = '{';
    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf(s + len, cap - len, "%s%d", i ? "," : "", parts[i]);
    snprintf(s + len, cap - len, "}");
    return s;
}

tc_err tc_quality_alert_restore(const char *dsn, const char *schema, const int32_t *parts, size_t n,
                                int resolved_within_s, size_t max, tc_qmon_event_fn fn,
                                void *opaque, size_t *count, char *errstr, size_t errstr_size)
{
    char within[16], limit[16];
    const char *params[3] = {NULL, within, limit};
    char *quoted = NULL, *sql = NULL, *arr = NULL;
    PGconn *conn;
    PGresult *res = NULL;
    tc_err err = TC_OK;
    int rows;

    *count = 0;
    if (n == 0)
        return TC_OK;
    conn = PQconnectdb(dsn);
    if (PQstatus(conn) != CONNECTION_OK) {
        err = tc_err_set(TC_ERR_DB_CONN, errstr, errstr_size,
                         "quality: cannot connect to PostgreSQL (postgres.dsn) to restore the "
                         "findings' alerts: %s",
                         PQerrorMessage(conn));
        goto out;
    }
    quoted = PQescapeIdentifier(conn, schema, strlen(schema));
    sql = quoted ? tc_quality_sql_expand(tc_quality_restore_sql, quoted) : NULL;
    arr = tc_quality_restore_parts(parts, n);
    if (!sql || !arr) {
        err = tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "quality: out of memory");
        goto out;
    }
    params[0] = arr;
    snprintf(within, sizeof(within), "%d", resolved_within_s);
    if (max > TC_QUALITY_RESTORE_MAX)
        max = TC_QUALITY_RESTORE_MAX;
    snprintf(limit, sizeof(limit), "%zu", max + 1);
    res = PQexecParams(conn, sql, 3, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        err = tc_err_set(TC_ERR_DB, errstr, errstr_size,
                         "quality: reading the findings of schema \"%s\" to restore their alerts: "
                         "%s",
                         schema, PQresultErrorMessage(res));
        goto out;
    }
    rows = PQntuples(res);
    if ((size_t)rows > max) {
        tc_log_warn("quality",
                    "over %zu findings to restore the alerts of (alerting.queue_max): the newest "
                    "are left to expire at Alertmanager",
                    max);
        rows = (int)max;
    }
    for (int i = 0; i < rows; i++) {
        tc_qmon_event ev = {
            .device = PQgetvalue(res, i, 0),
            .metric = tc_quality_restore_text(res, i, 1),
            .kind = PQgetvalue(res, i, 2),
            .rule = tc_quality_restore_text(res, i, 3),
            .severity = PQgetvalue(res, i, 4),
            .partition = (int32_t)strtol(PQgetvalue(res, i, 5), NULL, 10),
            .start_us = strtoll(PQgetvalue(res, i, 6), NULL, 10),
            .end_us = strtoll(PQgetvalue(res, i, 7), NULL, 10),
            .score = tc_quality_restore_double(res, i, 8),
            .observed = tc_quality_restore_double(res, i, 9),
            .expected = tc_quality_restore_double(res, i, 10),
        };
        fn(opaque, &ev);
    }
    *count = (size_t)rows;
out:
    PQclear(res);
    free(arr);
    free(sql);
    if (quoted)
        PQfreemem(quoted);
    PQfinish(conn);
    return err;
}
