/*
 * deadletters.c -- list, count, fetch and redrive dead letters; see deadletters.h.
 */
#include "store/deadletters.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/store_int.h"

/* The schema version that added redriven_at and redrive_count. */
#define TC_STORE_VERSION_REDRIVE 3
#define TC_DLQ_PARAMS_MAX        8
#define TC_DLQ_NUM_MAX           24

typedef struct tc_dlq_query {
    char sql[TC_SQL_MAX];
    const char *values[TC_DLQ_PARAMS_MAX];
    char nums[TC_DLQ_PARAMS_MAX][TC_DLQ_NUM_MAX];
    int n;
} tc_dlq_query;

static void tc_dlq_cat(char *out, size_t cap, const char *s)
{
    size_t len = strlen(out);

    if (len < cap)
        snprintf(out + len, cap - len, "%s", s);
}

/* Append " AND <pre>$k<post>" with value v (a string) as parameter k. */
static void tc_dlq_param_str(tc_dlq_query *q, char *where, size_t cap, const char *pre,
                             const char *post, const char *v)
{
    char buf[160];

    q->values[q->n++] = v;
    snprintf(buf, sizeof(buf), "%s$%d%s", pre, q->n, post);
    tc_dlq_cat(where, cap, " AND ");
    tc_dlq_cat(where, cap, buf);
}

static void tc_dlq_param_i64(tc_dlq_query *q, char *where, size_t cap, const char *pre,
                             const char *post, int64_t v)
{
    snprintf(q->nums[q->n], sizeof(q->nums[q->n]), "%" PRId64, v);
    tc_dlq_param_str(q, where, cap, pre, post, q->nums[q->n]);
}

/* The WHERE clause (always starting "WHERE true") of f. */
static tc_err tc_dlq_where(const tc_store *s, tc_dlq_query *q, const tc_dlq_filter *f,
                           int64_t after_id, char *where, size_t cap, char *errstr,
                           size_t errstr_size)
{
    snprintf(where, cap, "WHERE true");
    if (f->reason && *f->reason)
        tc_dlq_param_str(q, where, cap, "reason = ", "", f->reason);
    if (f->since_us)
        tc_dlq_param_i64(q, where, cap, "received_at >= 'epoch'::timestamptz + ",
                         "::bigint * interval '1 microsecond'", f->since_us);
    if (f->id)
        tc_dlq_param_i64(q, where, cap, "id = ", "::bigint", f->id);
    if (after_id)
        tc_dlq_param_i64(q, where, cap, "id > ", "::bigint", after_id);
    if (f->redriven) {
        if (s->version < TC_STORE_VERSION_REDRIVE)
            return tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                              "schema \"%s\" has no redrive columns yet: run `thermocline migrate`",
                              s->schema_raw);
        tc_dlq_cat(where, cap,
                   f->redriven > 0 ? " AND redriven_at IS NOT NULL" : " AND redriven_at IS NULL");
    }
    return TC_OK;
}

static tc_err tc_dlq_build_select(tc_store *s, tc_dlq_query *q, const tc_dlq_filter *f,
                                  int64_t after_id, int64_t limit, int with_payload,
                                  const char *tail, char *errstr, size_t errstr_size)
{
    char where[1024], tmpl[TC_SQL_MAX];
    const char *redrive = s->version >= TC_STORE_VERSION_REDRIVE
                              ? "(extract(epoch FROM redriven_at) * 1000000)::bigint, redrive_count"
                              : "NULL::bigint, 0";
    tc_err err;

    q->n = 0;
    err = tc_dlq_where(s, q, f, after_id, where, sizeof(where), errstr, errstr_size);
    if (err != TC_OK)
        return err;
    snprintf(tmpl, sizeof(tmpl),
             "SELECT id, (extract(epoch FROM received_at) * 1000000)::bigint, reason, detail,"
             " stage, source_topic, source_partition, source_offset, %s, octet_length(payload),"
             " %s FROM @S.dead_letters %s ORDER BY id",
             redrive, with_payload ? "payload, kafka_key" : "NULL::bytea, NULL::bytea", where);
    if (limit > 0) {
        char lim[48];
        snprintf(lim, sizeof(lim), " LIMIT %" PRId64, limit);
        tc_dlq_cat(tmpl, sizeof(tmpl), lim);
    }
    if (tail)
        tc_dlq_cat(tmpl, sizeof(tmpl), tail);
    if (tc_store_sql(s, tmpl, q->sql, sizeof(q->sql)) < 0)
        return tc_err_set(TC_ERR_INVALID, errstr, errstr_size, "statement too long");
    return TC_OK;
}

static PGresult *tc_dlq_exec(tc_store *s, const tc_dlq_query *q, ExecStatusType want, tc_err *err,
                             char *errstr, size_t errstr_size)
{
    char msg[TC_ERRSTR_MAX];
    PGresult *res = PQexecParams(s->conn, q->sql, q->n, NULL, q->values, NULL, NULL, 0);

    *err = TC_OK;
    if (PQresultStatus(res) != want) {
        *err = tc_store_classify(s, res);
        tc_err_set(*err, errstr, errstr_size, "could not query the dead letters: %s",
                   tc_store_pgmsg(s, res, msg, sizeof(msg)));
        PQclear(res);
        return NULL;
    }
    return res;
}

static int64_t tc_dlq_i64(const PGresult *res, int r, int c)
{
    return PQgetisnull(res, r, c) ? 0 : strtoll(PQgetvalue(res, r, c), NULL, 10);
}

/* Row r of a select built by tc_dlq_build_select, handed to fn. */
static tc_err tc_dlq_emit(const PGresult *res, int r, tc_dlq_row_fn fn, void *opaque,
                          tc_dlq_row *row, char *errstr, size_t errstr_size)
{
    unsigned char *payload = NULL, *key = NULL;
    size_t plen = 0, klen = 0;
    tc_err err;

    memset(row, 0, sizeof(*row));
    row->id = tc_dlq_i64(res, r, 0);
    row->received_us = tc_dlq_i64(res, r, 1);
    row->reason = PQgetvalue(res, r, 2);
    row->detail = PQgetvalue(res, r, 3);
    row->stage = PQgetvalue(res, r, 4);
    row->source_topic = PQgetvalue(res, r, 5);
    row->source_partition = (int32_t)tc_dlq_i64(res, r, 6);
    row->source_offset = tc_dlq_i64(res, r, 7);
    row->redriven_us = tc_dlq_i64(res, r, 8);
    row->redrive_count = (int32_t)tc_dlq_i64(res, r, 9);
    row->payload_bytes = (size_t)tc_dlq_i64(res, r, 10);
    if (!PQgetisnull(res, r, 11)) {
        payload = PQunescapeBytea((const unsigned char *)PQgetvalue(res, r, 11), &plen);
        if (!payload)
            return tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory");
        row->payload = payload;
        row->payload_len = plen;
    }
    if (!PQgetisnull(res, r, 12)) {
        key = PQunescapeBytea((const unsigned char *)PQgetvalue(res, r, 12), &klen);
        if (!key) {
            PQfreemem(payload);
            return tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory");
        }
        row->key = key;
        row->key_len = klen;
    }
    err = fn(opaque, row);
    if (err != TC_OK && errstr && errstr_size && !errstr[0])
        tc_err_set(err, errstr, errstr_size, "stopped at dead letter %" PRId64, row->id);
    PQfreemem(payload);
    PQfreemem(key);
    row->payload = row->key = NULL;
    return err;
}

tc_err tc_store_dlq_list(tc_store *s, const tc_dlq_filter *f, int with_payload, tc_dlq_row_fn fn,
                         void *opaque, char *errstr, size_t errstr_size)
{
    tc_dlq_query q;
    tc_dlq_row row;
    PGresult *res;
    tc_err err = tc_store_connect(s, errstr, errstr_size);

    if (err != TC_OK)
        return err;
    if (errstr && errstr_size)
        errstr[0] = '\0';
    err = tc_dlq_build_select(s, &q, f, f->after_id, f->limit, with_payload, NULL, errstr,
                              errstr_size);
    if (err != TC_OK)
        return err;
    res = tc_dlq_exec(s, &q, PGRES_TUPLES_OK, &err, errstr, errstr_size);
    if (!res)
        return err;
    for (int r = 0; err == TC_OK && r < PQntuples(res); r++)
        err = tc_dlq_emit(res, r, fn, opaque, &row, errstr, errstr_size);
    PQclear(res);
    return err;
}

tc_err tc_store_dlq_get(tc_store *s, int64_t id, tc_dlq_row_fn fn, void *opaque, char *errstr,
                        size_t errstr_size)
{
    tc_dlq_filter f = {.id = id};
    tc_dlq_query q;
    tc_dlq_row row;
    PGresult *res;
    tc_err err = tc_store_connect(s, errstr, errstr_size);

    if (err != TC_OK)
        return err;
    if (errstr && errstr_size)
        errstr[0] = '\0';
    if (id <= 0)
        return tc_err_set(TC_ERR_NOT_FOUND, errstr, errstr_size, "no dead letter %" PRId64, id);
    err = tc_dlq_build_select(s, &q, &f, 0, 1, 1, NULL, errstr, errstr_size);
    if (err != TC_OK)
        return err;
    res = tc_dlq_exec(s, &q, PGRES_TUPLES_OK, &err, errstr, errstr_size);
    if (!res)
        return err;
    if (PQntuples(res) == 0)
        err = tc_err_set(TC_ERR_NOT_FOUND, errstr, errstr_size, "no dead letter %" PRId64, id);
    else
        err = tc_dlq_emit(res, 0, fn, opaque, &row, errstr, errstr_size);
    PQclear(res);
    return err;
}

tc_err tc_store_dlq_count(tc_store *s, const tc_dlq_filter *f, tc_dlq_count_fn fn, void *opaque,
                          char *errstr, size_t errstr_size)
{
    char where[1024], tmpl[TC_SQL_MAX];
    tc_dlq_filter g = *f;
    tc_dlq_query q = {.n = 0};
    PGresult *res;
    tc_err err = tc_store_connect(s, errstr, errstr_size);

    if (err != TC_OK)
        return err;
    g.limit = 0;
    err = tc_dlq_where(s, &q, &g, 0, where, sizeof(where), errstr, errstr_size);
    if (err != TC_OK)
        return err;
    snprintf(tmpl, sizeof(tmpl),
             "SELECT reason, count(*), %s FROM @S.dead_letters %s GROUP BY reason"
             " ORDER BY count(*) DESC, reason",
             s->version >= TC_STORE_VERSION_REDRIVE ? "count(redriven_at)" : "0", where);
    if (tc_store_sql(s, tmpl, q.sql, sizeof(q.sql)) < 0)
        return tc_err_set(TC_ERR_INVALID, errstr, errstr_size, "statement too long");
    res = tc_dlq_exec(s, &q, PGRES_TUPLES_OK, &err, errstr, errstr_size);
    if (!res)
        return err;
    for (int r = 0; err == TC_OK && r < PQntuples(res); r++)
        err = fn(opaque, PQgetvalue(res, r, 0), tc_dlq_i64(res, r, 1), tc_dlq_i64(res, r, 2));
    PQclear(res);
    return err;
}

/* "{1,2,3}" for ids; NULL on OOM. */
static char *tc_dlq_id_array(const int64_t *ids, size_t n)
{
    size_t cap = 3 + n * (TC_DLQ_NUM_MAX + 1), len = 1;
    char *out = malloc(cap);

    if (!out)
        return NULL;
    out[0] = '{';
    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf(out + len, cap - len, "%s%" PRId64, i ? "," : "", ids[i]);
    snprintf(out + len, cap - len, "}");
    return out;
}

static tc_err tc_dlq_mark(tc_store *s, const int64_t *ids, size_t n, char *errstr,
                          size_t errstr_size)
{
    tc_dlq_query q = {.n = 1};
    char *arr;
    PGresult *res;
    tc_err err;

    if (s->version < TC_STORE_VERSION_REDRIVE)
        return tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                          "schema \"%s\" has no redrive columns yet: run `thermocline migrate`",
                          s->schema_raw);
    if (tc_store_sql(s,
                     "UPDATE @S.dead_letters SET redriven_at = now(),"
                     " redrive_count = redrive_count + 1 WHERE id = ANY($1::bigint[])",
                     q.sql, sizeof(q.sql)) < 0)
        return tc_err_set(TC_ERR_INVALID, errstr, errstr_size, "statement too long");
    arr = tc_dlq_id_array(ids, n);
    if (!arr)
        return tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory");
    q.values[0] = arr;
    res = tc_dlq_exec(s, &q, PGRES_COMMAND_OK, &err, errstr, errstr_size);
    PQclear(res);
    free(arr);
    return err;
}

tc_err tc_store_dlq_mark_redriven(tc_store *s, const int64_t *ids, size_t n, char *errstr,
                                  size_t errstr_size)
{
    tc_err err = tc_store_connect(s, errstr, errstr_size);

    if (err != TC_OK || n == 0)
        return err;
    return tc_dlq_mark(s, ids, n, errstr, errstr_size);
}

tc_err tc_store_dlq_redrive(tc_store *s, const tc_dlq_filter *f, size_t page_size,
                            const tc_dlq_redrive_ops *ops, uint64_t *done, char *errstr,
                            size_t errstr_size)
{
    int64_t last = f->after_id, *ids = NULL;
    uint64_t left = f->limit > 0 ? (uint64_t)f->limit : UINT64_MAX;
    tc_err err = tc_store_connect(s, errstr, errstr_size);

    *done = 0;
    if (err != TC_OK)
        return err;
    if (errstr && errstr_size)
        errstr[0] = '\0';
    if (s->version < TC_STORE_VERSION_REDRIVE)
        return tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                          "schema \"%s\" has no redrive columns yet: run `thermocline migrate`",
                          s->schema_raw);
    page_size = page_size ? page_size : 500;
    ids = malloc(page_size * sizeof(*ids));
    if (!ids)
        return tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory");
    while (err == TC_OK && left > 0) {
        int64_t want = (int64_t)(left < page_size ? left : page_size);
        tc_dlq_query q;
        tc_dlq_row row;
        PGresult *res;
        size_t n = 0;
        int rows;

        err = tc_store_exec(s, "BEGIN", "begin redrive", errstr, errstr_size);
        if (err != TC_OK)
            break;
        err = tc_dlq_build_select(s, &q, f, last, want, 1, " FOR UPDATE SKIP LOCKED", errstr,
                                  errstr_size);
        res = err == TC_OK ? tc_dlq_exec(s, &q, PGRES_TUPLES_OK, &err, errstr, errstr_size) : NULL;
        rows = res ? PQntuples(res) : 0;
        for (int r = 0; err == TC_OK && r < rows; r++) {
            err = tc_dlq_emit(res, r, ops->send, ops->opaque, &row, errstr, errstr_size);
            ids[n++] = row.id;
            last = row.id;
        }
        PQclear(res);
        if (err == TC_OK && n) {
            err = ops->flush(ops->opaque);
            if (err != TC_OK && errstr && errstr_size && !errstr[0])
                tc_err_set(err, errstr, errstr_size, "the redriven messages were not delivered");
        }
        if (err == TC_OK && n)
            err = tc_dlq_mark(s, ids, n, errstr, errstr_size);
        if (err == TC_OK)
            err = tc_store_exec(s, "COMMIT", "commit redrive", errstr, errstr_size);
        else
            tc_store_rollback(s, "the redrive");
        if (err == TC_OK)
            *done += n;
        if (rows < want)
            break;
        left -= (uint64_t)n;
    }
    free(ids);
    return err;
}
