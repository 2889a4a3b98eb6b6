/*
 * quality_src.c -- the quality monitor's findings and figures as features; what they count and
 * why they are read from PostgreSQL is in quality_src.h.
 *
 * One SQL aggregate expression per feature (tc_fq_agg_expr) is the definition: the offline query
 * groups the day's rows of quality_1m or anomalies by (device, window) with it, the online UPDATE
 * applies it to one row's window, so the two cannot drift apart. Times cross into SQL as epoch
 * microseconds (bigint, exact) and come back through extract(epoch), which is numeric and exact
 * in PostgreSQL 14 and later: no float rounding of a window's edge.
 */
#include "features/quality_src.h"

#include <inttypes.h>
#include <libpq-fe.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Epoch microseconds <-> timestamptz, exactly. */
#define TC_FQ_TS(p)   "('epoch'::timestamptz + " p "::bigint * interval '1 microsecond')"
#define TC_FQ_US(x)   "(extract(epoch FROM " x ") * 1000000)::bigint"
#define TC_FQ_STR_(x) #x
#define TC_FQ_STR(x)  TC_FQ_STR_(x)
/* The findings of a feature's window [S, E) (timestamptz expressions) on device D, metric M. */
#define TC_FQ_OVERLAP(D, M, S, E)                                                                  \
    " a.device_id = " D " AND a.metric = " M " AND a.start_time < " E                              \
    " AND (a.end_time IS NULL OR a.end_time >= " S ")"

struct tc_fq {
    PGconn *conn;
    char *schema_q; /* the quoted schema */
};

/* The value of a window over its quality_1m rows q (or, for anomalies, its findings). */
static const char *tc_fq_agg_expr(tc_feat_agg agg)
{
    switch (agg) {
    case TC_FA_ANOMALIES:
        return "count(*)::float8";
    case TC_FA_LATE:
        return "coalesce(sum(q.late), 0)::float8";
    case TC_FA_OUT_OF_ORDER:
        return "coalesce(sum(q.out_of_order), 0)::float8";
    case TC_FA_DEAD_LETTERS:
        return "coalesce(sum(q.dead_letters), 0)::float8";
    case TC_FA_DUPLICATES:
        return "coalesce(sum(q.duplicates), 0)::float8";
    case TC_FA_GAPS:
        return "coalesce(sum(q.gaps), 0)::float8";
    case TC_FA_GAP_MAX_S:
        return "max(q.gap_max_s)";
    case TC_FA_DELAY_P50_MS:
        return "@S.tc_quality_sketch_quantile(@S.tc_quality_sketch_sum(q.delay_sketch), 0.5)";
    case TC_FA_DELAY_P99_MS:
        return "@S.tc_quality_sketch_quantile(@S.tc_quality_sketch_sum(q.delay_sketch), 0.99)";
    default:
        return NULL;
    }
}

int tc_fq_empty(tc_feat_agg agg, double *out)
{
    if (agg == TC_FA_GAP_MAX_S || agg == TC_FA_DELAY_P50_MS || agg == TC_FA_DELAY_P99_MS) {
        *out = NAN;
        return 0;
    }
    *out = 0;
    return 1;
}

int tc_fq_refresh_sql(tc_feat_agg agg, int horizon, char *out, size_t cap)
{
    const char *expr = tc_fq_agg_expr(agg);
    char value[TC_FQ_SQL_MAX / 2];
    int n;

    if (!expr)
        return -1;
    if (agg == TC_FA_ANOMALIES)
        n = snprintf(value, sizeof(value),
                     "(SELECT %s FROM @S.anomalies a WHERE" TC_FQ_OVERLAP(
                         "f.device_id", "f.metric", "f.window_start", "f.window_end") ")",
                     expr);
    else
        n = snprintf(value, sizeof(value),
                     "(SELECT %s FROM @S.quality_1m q WHERE q.device_id = f.device_id"
                     " AND q.bucket >= f.window_start AND q.bucket < f.window_end)",
                     expr);
    if (n < 0 || (size_t)n >= sizeof(value))
        return -1;
    /* The rows of the write reached through their keys (the primary key's index); the horizon's
     * by a scan of the feature's rows. */
    n = snprintf(
        out, cap,
        "UPDATE @S.features_online o SET value = x.v, updated_at = now() FROM"
        " (SELECT f.device_id, f.feature, f.window_start, %s AS v FROM %s"
        " WHERE f.feature = $1%s) x WHERE o.device_id = x.device_id"
        " AND o.feature = x.feature AND o.window_start = x.window_start"
        " AND o.value IS DISTINCT FROM x.v",
        value,
        horizon ? "@S.features_online f"
                : "pg_temp.tc_features_online_in i JOIN @S.features_online f"
                  " ON f.device_id = i.device_id AND f.feature = i.feature"
                  " AND f.window_start = " TC_FQ_TS("i.start_us"),
        horizon ? " AND (f.window_end > now() - interval '" TC_FQ_STR(
                      TC_FQ_HORIZON_S) " seconds' OR EXISTS (SELECT 1 FROM "
                                       "pg_temp.tc_features_online_in i"
                                       " WHERE i.device_id = f.device_id AND i.feature = f.feature"
                                       " AND " TC_FQ_TS("i.start_us") " = f.window_start))"
                : "");
    return n < 0 || (size_t)n >= cap ? -1 : n;
}

/* The quality sink commits its findings and figures with its marks: their text moves with them. */
const char tc_fq_progress_sql[] =
    "SELECT count(*) || ':' || coalesce(sum(next_offset), 0) || ':' ||"
    " coalesce(max(updated_at)::text, '') FROM @S.quality_offsets WHERE topic = $1";

/* ---- the offline side ---- */

/* tmpl with every "@S" replaced by the quoted schema into out. */
static int tc_fq_expand(const tc_fq *q, const char *tmpl, char *out, size_t cap)
{
    size_t len = 0, sl = strlen(q->schema_q);

    for (const char *p = tmpl; *p;) {
        if (p[0] == '@' && p[1] == 'S') {
            if (len + sl >= cap)
                return -1;
            memcpy(out + len, q->schema_q, sl);
            len += sl;
            p += 2;
        } else {
            if (len + 1 >= cap)
                return -1;
            out[len++] = *p++;
        }
    }
    out[len] = '\0';
    return (int)len;
}

static tc_err tc_fq_pgerr(tc_fq *q, PGresult *res, const char *what, char *errstr,
                          size_t errstr_size)
{
    char msg[512];
    size_t len;

    snprintf(msg, sizeof(msg), "%s", res ? PQresultErrorMessage(res) : PQerrorMessage(q->conn));
    len = strlen(msg);
    while (len && (msg[len - 1] == '\n' || msg[len - 1] == ' '))
        msg[--len] = '\0';
    return tc_err_set(PQstatus(q->conn) == CONNECTION_OK ? TC_ERR_DB : TC_ERR_DB_CONN, errstr,
                      errstr_size, "quality features: %s: %s", what, msg);
}

tc_fq *tc_fq_new(const char *dsn, const char *schema, char *errstr, size_t errstr_size)
{
    tc_fq *q = calloc(1, sizeof(*q));
    char *o;

    if (!q || !(q->schema_q = malloc(strlen(schema) * 2 + 3))) {
        free(q);
        tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "quality features: out of memory");
        return NULL;
    }
    o = q->schema_q;
    *o++ = '"';
    for (const char *p = schema; *p; p++) {
        if (*p == '"')
            *o++ = '"';
        *o++ = *p;
    }
    *o++ = '"';
    *o = '\0';
    q->conn = PQconnectdb(dsn);
    if (PQstatus(q->conn) != CONNECTION_OK) {
        tc_fq_pgerr(q, NULL,
                    "connect to PostgreSQL (postgres.dsn), where the quality monitor's "
                    "findings and figures are",
                    errstr, errstr_size);
        tc_fq_destroy(q);
        return NULL;
    }
    PQclear(PQexec(q->conn, "SET TIME ZONE 'UTC'"));
    return q;
}

void tc_fq_destroy(tc_fq *q)
{
    if (!q)
        return;
    PQfinish(q->conn);
    free(q->schema_q);
    free(q);
}

void tc_fq_rows_free(tc_fq_rows *r)
{
    for (size_t i = 0; i < r->n; i++)
        free(r->device[i]);
    free(r->device);
    free(r->start);
    free(r->value);
    memset(r, 0, sizeof(*r));
}

/* Run tmpl (with "@S") with text parameters; the result, or NULL with errstr set. */
static PGresult *tc_fq_query(tc_fq *q, const char *tmpl, int n, const char *const *params,
                             const char *what, char *errstr, size_t errstr_size)
{
    char sql[TC_FQ_SQL_MAX];
    PGresult *res;

    if (tc_fq_expand(q, tmpl, sql, sizeof(sql)) < 0) {
        tc_err_set(TC_ERR_INVALID, errstr, errstr_size, "quality features: %s: schema too long",
                   what);
        return NULL;
    }
    res = PQexecParams(q->conn, sql, n, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        tc_fq_pgerr(q, res, what, errstr, errstr_size);
        PQclear(res);
        return NULL;
    }
    return res;
}

tc_err tc_fq_day(tc_fq *q, const tc_feat_def *d, int64_t day, tc_fq_rows *out, char *errstr,
                 size_t errstr_size)
{
    const char *expr = tc_fq_agg_expr(d->agg);
    char tmpl[TC_FQ_SQL_MAX], from[24], to[24], w[24];
    const char *params[4] = {from, to, w, d->metric};
    PGresult *res;
    size_t n;
    int len;

    tc_fq_rows_free(out);
    if (!expr)
        return tc_err_set(TC_ERR_INVALID, errstr, errstr_size,
                          "quality features: \"%s\" is not a quality aggregate", d->name);
    snprintf(from, sizeof(from), "%" PRId64, day * 86400 * 1000000);
    snprintf(to, sizeof(to), "%" PRId64, (day + 1) * 86400 * 1000000);
    snprintf(w, sizeof(w), "%" PRId64, d->window_s * 1000000);
    /* Device ids sorted as bytes (COLLATE "C"), the order build.c sorts its windows in. */
    if (d->agg == TC_FA_ANOMALIES)
        /* Each finding in every window of the day it overlaps: from the window holding its start
         * (or the day's first) to the one holding its end (or the day's last, while open). */
        len = snprintf(
            tmpl, sizeof(tmpl),
            "SELECT a.device_id, w.ws, %s FROM @S.anomalies a CROSS JOIN LATERAL"
            " generate_series(greatest(" TC_FQ_US(
                "a.start_time") ", $1::bigint) / $3::bigint"
                                " * $3::bigint, least(coalesce(" TC_FQ_US(
                                    "a.end_time") ", $2::bigint - 1),"
                                                  " $2::bigint - 1) / $3::bigint * $3::bigint, "
                                                  "$3::bigint) AS w(ws)"
                                                  " WHERE" TC_FQ_OVERLAP(
                                                      "a.device_id", "$4", TC_FQ_TS("$1"),
                                                      TC_FQ_TS(
                                                          "$2")) " GROUP BY 1, 2 ORDER BY "
                                                                 "a.device_id COLLATE \"C\", 2",
            expr);
    else
        len = snprintf(
            tmpl, sizeof(tmpl),
            "SELECT q.device_id, " TC_FQ_US(
                "q.bucket") " / $3::bigint * $3::bigint,"
                            " %s FROM @S.quality_1m q WHERE q.bucket >= " TC_FQ_TS(
                                "$1") " AND"
                                      " q.bucket < " TC_FQ_TS("$2") " GROUP BY 1, 2 ORDER BY "
                                                                    "q.device_id COLLATE \"C\", 2",
            expr);
    if (len < 0 || (size_t)len >= sizeof(tmpl))
        return tc_err_set(TC_ERR_INVALID, errstr, errstr_size, "quality features: query too long");
    res = tc_fq_query(q, tmpl, d->agg == TC_FA_ANOMALIES ? 4 : 3, params, d->name, errstr,
                      errstr_size);
    if (!res)
        return PQstatus(q->conn) == CONNECTION_OK ? TC_ERR_DB : TC_ERR_DB_CONN;
    n = (size_t)PQntuples(res);
    if (n > TC_FQ_ROWS_MAX) {
        PQclear(res);
        return tc_err_set(TC_ERR_FULL, errstr, errstr_size,
                          "quality features: \"%s\": more than %zu windows in one day", d->name,
                          TC_FQ_ROWS_MAX);
    }
    if (n && (!(out->device = calloc(n, sizeof(*out->device))) ||
              !(out->start = malloc(n * sizeof(*out->start))) ||
              !(out->value = malloc(n * sizeof(*out->value))))) {
        PQclear(res);
        tc_fq_rows_free(out);
        return tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "quality features: out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        if (!(out->device[i] = strdup(PQgetvalue(res, (int)i, 0)))) {
            PQclear(res);
            tc_fq_rows_free(out);
            return tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "quality features: out of memory");
        }
        out->n = i + 1;
        out->start[i] = strtoll(PQgetvalue(res, (int)i, 1), NULL, 10);
        out->value[i] =
            PQgetisnull(res, (int)i, 2) ? NAN : strtod(PQgetvalue(res, (int)i, 2), NULL);
    }
    PQclear(res);
    return TC_OK;
}

tc_err tc_fq_day_fingerprint(tc_fq *q, int64_t day, uint64_t *fp, char *errstr, size_t errstr_size)
{
    char from[24], to[24];
    const char *params[2] = {from, to};
    const char *text;
    PGresult *res;

    snprintf(from, sizeof(from), "%" PRId64, day * 86400 * 1000000);
    snprintf(to, sizeof(to), "%" PRId64, (day + 1) * 86400 * 1000000);
    res = tc_fq_query(
        q,
        /* The quality sink's upserts only add to a minute's counts (and a longer gap to its
         * longest, with a gap counted; the delay sketch moves with readings): their sums change
         * with any write (floats: only the max, exact, never a sum of them), and
         * cost a scan, not a text of every row with its sketch. Findings are few: whole rows. */
        "SELECT (SELECT concat_ws(':', count(*), sum(readings), sum(late), sum(out_of_order),"
        " sum(gaps), sum(dead_letters), sum(duplicates), max(gap_max_s))"
        " FROM @S.quality_1m q WHERE q.bucket >= " TC_FQ_TS("$1") " AND q.bucket < " TC_FQ_TS(
            "$2") ") || '/' || (SELECT count(*) || ':' ||"
                  " coalesce(sum(hashtextextended(a::text, 0)), 0) FROM @S.anomalies a"
                  " WHERE a.start_time < " TC_FQ_TS("$2") " AND (a.end_time IS NULL OR"
                                                          " a.end_time >= " TC_FQ_TS("$1") "))",
        2, params, "fingerprint a day's findings and figures", errstr, errstr_size);
    if (!res)
        return PQstatus(q->conn) == CONNECTION_OK ? TC_ERR_DB : TC_ERR_DB_CONN;
    text = PQgetvalue(res, 0, 0);
    for (const char *p = text; *p; p++)
        *fp = (*fp ^ (unsigned char)*p) * 1099511628211ULL;
    PQclear(res);
    return TC_OK;
}
