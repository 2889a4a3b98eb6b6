/*
 * rest.c -- the REST API's request pipeline and its streamed responses; see rest.h.
 *
 * Every route goes through tc_rest_handle: authenticate, rate-limit, role floor, parameters,
 * format, then one transaction as the caller's role. A JSON answer is built in memory (a page is
 * bounded by the `limit` parameter's cap); a CSV, NDJSON or Parquet answer is a tc_rest_stream
 * that owns the borrowed connection until the last row is sent or the client goes away, and only
 * then commits (or rolls back), writes the audit record and gives the connection back.
 *
 * Audit records go through the batched writer (rest_audit.h), which returns once the record is
 * committed: a JSON answer is set only after that, and a stream's last bytes are held back until
 * then, so every answer a client receives has its record. A request's own transaction is
 * committed (or rolled back) and its connection given back first: the pool does not wait on the
 * audit log.
 *
 * Reads go through the coalescing table (coalesce.h) under a key of everything that decides their
 * bytes (tc_rest_coalesce_key). A leader alone runs as above; a leader that others joined reads
 * its whole answer (the stream's own code, into memory, under the table's caps) and publishes it,
 * and each member -- the leader too -- writes its own audit record and sends the shared bytes.
 */
#include "api/rest.h"

#include <libpq-fe.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/coalesce.h"
#include "api/rest_audit.h"
#include "api/rest_auth.h"
#include "api/rest_db.h"
#include "api/rest_encode.h"
#include "api/rest_internal.h"
#include "core/json.h"
#include "core/log.h"
#include "core/timeutil.h"

/* Bytes a stream gathers from the database before handing them to the server (the server asks
 * for up to its own block size at a time). */
#define TC_REST_STREAM_CHUNK (64 * 1024)
/* Cap of a JSON answer: a full page of wide rows fits many times over. */
#define TC_REST_JSON_MAX (256 * 1024 * 1024)
/* Rows of a JSON page when `limit` is not given. */
#define TC_REST_LIMIT_DEFAULT 1000
/* Routes one API holds (the table is smaller; the bound is the HTTP router's). */
#define TC_REST_ROUTES_MAX 32
#define TC_REST_PROBLEM_CT "application/problem+json"
/* Ids one write takes (the redrive route's `ids` parameter allows fewer). */
#define TC_REST_ACTION_IDS_MAX 1000

typedef struct tc_rest_binding {
    tc_rest *rest;
    const tc_rest_route *route;
} tc_rest_binding;

struct tc_rest {
    tc_rest_options opt; /* the hooks; its strings are not kept */
    tc_rest_auth *auth;
    tc_rest_pool *pool;
    tc_rest_auditor *auditor;
    tc_coalesce *coalesce; /* NULL: identical reads are not coalesced */
    atomic_uint_least64_t statements;
    tc_rest_cursor_key ck;
    char *openapi;
    size_t openapi_len;
    tc_rest_binding bind[TC_REST_ROUTES_MAX];
};

/* Open every connection of the pool and run the readings statement once on each (generic, as the
 * viewer, for no device), before the first request. A backend's first run of it plans it and opens
 * the relation of every daily partition: 141 ms on a store of 50 M readings, against 3.5 ms once
 * its pages are read (psql, a fresh connection). Opened lazily, each connection made one of the
 * first requests after a start pay that. (bench/run-api's reads still cluster slow in a run's
 * first two seconds with the warm pool: that has another cause, docs/api.md.) A failure is only
 * logged: the request that gets that connection pays instead. */
static void tc_rest_warm(tc_rest *r)
{
    PGconn *conns[TC_REST_POOL_MAX];
    tc_rest_principal who = {.subject = "serve", .role = TC_ROLE_VIEWER, .claims = "{}"};
    size_t n = tc_rest_pool_size(r->pool), got = 0, warmed = 0, failed = 0;
    int64_t t0 = tc_time_now_us();
    tc_rest_problem pb;
    tc_rest_sql q;

    if (tc_rest_routes_warm_sql(t0, &q))
        return;
    while (got < n && (conns[got] = tc_rest_pool_get(r->pool, &pb)) != NULL)
        got++;
    for (size_t i = 0; i < got; i++) {
        PGresult *res = NULL;
        memset(&pb, 0, sizeof(pb));
        if (tc_rest_db_begin(r->pool, conns[i], &who, 1, NULL, NULL, &pb) != 0) {
            if (!failed++)
                tc_log_warn("serve", "warming the API's connections: %s", pb.detail);
        } else {
            res = tc_rest_db_run(r->pool, conns[i], q.prepared, q.text, q.nparams, q.params, 0);
            if (PQresultStatus(res) == PGRES_TUPLES_OK)
                warmed++;
            else if (!failed++)
                tc_log_warn("serve", "warming the API's connections: %s",
                            PQresultErrorMessage(res));
            PQclear(res);
            tc_rest_db_end(conns[i], 0, &pb);
        }
        tc_rest_pool_put(r->pool, conns[i]);
    }
    tc_log_info("serve", "%zu of %zu database connections warmed in %lld ms", warmed, n,
                (long long)((tc_time_now_us() - t0) / 1000));
}

tc_rest *tc_rest_new(const tc_rest_options *opt, char *errstr, size_t errstr_size)
{
    tc_rest_auth_options ao = {opt->jwt_secret, opt->jwks_file, opt->keys_file, opt->rate_per_s,
                               opt->rate_burst};
    tc_rest *r = calloc(1, sizeof(*r));

    if (!r) {
        tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory");
        return NULL;
    }
    r->opt = *opt;
    if (opt->cursor_secret && *opt->cursor_secret) {
        r->ck.secret_len = strlen(opt->cursor_secret);
        if (r->ck.secret_len > sizeof(r->ck.secret))
            r->ck.secret_len = sizeof(r->ck.secret);
        memcpy(r->ck.secret, opt->cursor_secret, r->ck.secret_len);
    } else {
        r->ck.secret_len = 32;
        if (RAND_bytes(r->ck.secret, 32) != 1) {
            tc_err_set(TC_ERR_IO, errstr, errstr_size, "no random bytes for the cursor key");
            tc_rest_destroy(r);
            return NULL;
        }
    }
    r->openapi = tc_rest_openapi(&r->openapi_len);
    r->auth = r->openapi ? tc_rest_auth_new(&ao, errstr, errstr_size) : NULL;
    r->pool = r->auth ? tc_rest_pool_new(opt->pg_dsn, opt->pool_size, opt->api_schema, errstr,
                                         errstr_size)
                      : NULL;
    r->auditor =
        r->pool ? tc_rest_auditor_new(opt->pg_dsn, opt->audit_schema, errstr, errstr_size) : NULL;
    if (r->auditor && opt->coalesce &&
        !(r->coalesce = tc_coalesce_new(opt->coalesce_answer_max, opt->coalesce_total_max)))
        tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory");
    if (!r->auditor || (opt->coalesce && !r->coalesce)) {
        if (!r->openapi)
            tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory");
        tc_rest_destroy(r);
        return NULL;
    }
    tc_rest_warm(r);
    return r;
}

void tc_rest_destroy(tc_rest *r)
{
    if (!r)
        return;
    tc_rest_auditor_destroy(r->auditor);
    tc_coalesce_destroy(r->coalesce);
    tc_rest_pool_destroy(r->pool);
    tc_rest_auth_destroy(r->auth);
    OPENSSL_cleanse(r->ck.secret, sizeof(r->ck.secret));
    free(r->openapi);
    free(r);
}

/* ---- answers ---- */

static void tc_rest_respond_problem(tc_http_response *resp, const tc_rest_problem *pb,
                                    const char *path)
{
    size_t len = 0;
    char *body = tc_rest_problem_json(pb, path, &len);

    tc_http_respond_owned(resp, pb->status, TC_REST_PROBLEM_CT, body, body ? len : 0);
    if (!body)
        resp->status = 500;
    if (pb->status == 401)
        tc_http_add_header(resp, "WWW-Authenticate", "Bearer");
}

/* What one request leaves for its audit record. */
typedef struct tc_rest_req_log {
    const tc_http_request *req;
    const tc_rest_principal *who; /* NULL until authenticated */
    int64_t t0;
    int64_t rows;
} tc_rest_req_log;

static void tc_rest_audit_fill(tc_rest_audit *ev, const tc_rest_req_log *lg, int status)
{
    ev->who = lg->who;
    ev->method = lg->req->method;
    ev->path = lg->req->path;
    ev->query = lg->req->query;
    ev->rows = lg->rows;
    ev->status = status;
    ev->duration_us = tc_time_now_us() - lg->t0;
}

/* Write the request's audit record and wait until it is committed: 0, or -1 (logged). */
static int tc_rest_audit_now(tc_rest *r, const tc_rest_req_log *lg, int status)
{
    tc_rest_audit ev;

    tc_rest_audit_fill(&ev, lg, status);
    return tc_rest_auditor_write(r->auditor, &ev);
}

/* Answer pb, once its audit record is written (a failure to write it is logged: the answer is an
 * error anyway). */
static void tc_rest_fail(tc_rest *r, const tc_rest_req_log *lg, tc_http_response *resp,
                         const tc_rest_problem *pb)
{
    tc_rest_audit_now(r, lg, pb->status);
    tc_rest_respond_problem(resp, pb, lg->req->path);
}

/* ---- streams ---- */

typedef struct tc_rest_stream {
    tc_rest *rest;
    PGconn *conn;
    tc_rest_format fmt;
    tc_jbuf out;
    tc_jbuf line; /* NDJSON: one row's object, reused */
    size_t out_pos;
    tc_rest_pq *pq;
    int started, finished, failed, audited;
    int defer_audit; /* at the end, leave the record to tc_rest_stream_share */
    PGresult *first; /* the query's first result, read by the handler, not yet encoded */
    tc_rest_req_log lg;
    tc_rest_principal who;
    tc_http_request req; /* its strings copied below */
    char *strings;
} tc_rest_stream;

static void tc_rest_stream_free(void *ctx)
{
    tc_rest_stream *st = ctx;
    int status = st->failed ? 500 : st->finished ? 200 : 499; /* 499: the client went away */

    if (!st->finished) {
        PGcancel *cancel = PQgetCancel(st->conn);
        char err[256];
        if (cancel) {
            PQcancel(cancel, err, sizeof(err));
            PQfreeCancel(cancel);
        }
    }
    /* Committed with its audit record when finished; else drained and rolled back on the way to
     * the pool, and recorded as cut short (499) or failed (500). */
    tc_rest_pool_put(st->rest->pool, st->conn);
    if (!st->audited)
        tc_rest_audit_now(st->rest, &st->lg, status);
    PQclear(st->first);
    tc_rest_pq_destroy(st->pq);
    tc_jbuf_free(&st->out);
    tc_jbuf_free(&st->line);
    free(st->strings);
    free(st);
}

/* The first result of the query tells the columns: CSV's header, Parquet's schema. */
static int tc_rest_stream_start(tc_rest_stream *st, const PGresult *res)
{
    char errstr[TC_ERRSTR_MAX];

    st->started = 1;
    if (st->fmt == TC_REST_FMT_CSV)
        tc_rest_csv_header(&st->out, res);
    if (st->fmt == TC_REST_FMT_PARQUET) {
        st->pq = tc_rest_pq_new(res, &st->out, errstr, sizeof(errstr));
        if (!st->pq) {
            tc_log_error("serve", "%s: %s", st->req.path, errstr);
            return -1;
        }
    }
    return 0;
}

static int tc_rest_stream_row(tc_rest_stream *st, const PGresult *res)
{
    char errstr[TC_ERRSTR_MAX];

    st->lg.rows++;
    switch (st->fmt) {
    case TC_REST_FMT_CSV:
        tc_rest_csv_row(&st->out, res, 0);
        break;
    case TC_REST_FMT_PARQUET:
        if (tc_rest_pq_row(st->pq, res, 0, errstr, sizeof(errstr)) != TC_OK) {
            tc_log_error("serve", "%s: %s", st->req.path, errstr);
            return -1;
        }
        break;
    default:
        /* One object per line: a writer of its own, so no comma goes between the lines. */
        tc_jbuf_reset(&st->line);
        tc_rest_json_row(&st->line, res, 0);
        tc_jbuf_append(&st->line, "\n", 1);
        if (tc_jbuf_failed(&st->line))
            return -1;
        tc_jbuf_append(&st->out, st->line.data, st->line.len);
    }
    return tc_jbuf_failed(&st->out) ? -1 : 0;
}

/* Read results until `want` bytes wait in st->out or every row is read: 0, or -1 when the stream
 * failed and must be cut. A failed commit or audit record at the end sets st->failed but returns
 * 0: what was read is sent, then the body is cut. */
static int tc_rest_stream_pull(tc_rest_stream *st, size_t want)
{
    char errstr[TC_ERRSTR_MAX];

    while (!st->finished && st->out.len - st->out_pos < want) {
        PGresult *res = st->first ? st->first : PQgetResult(st->conn);
        ExecStatusType s = res ? PQresultStatus(res) : PGRES_COMMAND_OK;
        int bad = 0;

        st->first = NULL;

        if (!res) {
            tc_rest_problem pb;
            /* Every row is read: commit, then the audit record with their count, before the
             * last bytes go out. */
            st->finished = 1;
            if (tc_rest_db_end(st->conn, 1, &pb) ||
                (!st->defer_audit && tc_rest_audit_now(st->rest, &st->lg, 200)))
                st->failed = 1;
            st->audited = !st->failed && !st->defer_audit;
            break;
        }
        if (s != PGRES_SINGLE_TUPLE && s != PGRES_TUPLES_OK) {
            tc_log_error("serve", "%s: the query failed mid-stream: %s", st->req.path,
                         PQresultErrorMessage(res));
            bad = 1;
        } else if (!st->started) {
            bad = tc_rest_stream_start(st, res);
        }
        if (!bad && s == PGRES_SINGLE_TUPLE)
            bad = tc_rest_stream_row(st, res);
        if (!bad && s == PGRES_TUPLES_OK && st->pq)
            bad = tc_rest_pq_finish(st->pq, errstr, sizeof(errstr)) != TC_OK;
        PQclear(res);
        if (bad) {
            /* Too late for a status: cutting the chunked body tells the client it is not all. */
            st->failed = 1;
            return -1;
        }
    }
    return 0;
}

static long tc_rest_stream_read(void *ctx, char *buf, size_t max)
{
    tc_rest_stream *st = ctx;
    size_t n;

    if (tc_rest_stream_pull(st, TC_REST_STREAM_CHUNK))
        return TC_HTTP_STREAM_ERROR;
    if (st->out_pos == st->out.len)
        return st->failed ? TC_HTTP_STREAM_ERROR : TC_HTTP_STREAM_END;
    n = st->out.len - st->out_pos < max ? st->out.len - st->out_pos : max;
    memcpy(buf, st->out.data + st->out_pos, n);
    st->out_pos += n;
    if (st->out_pos == st->out.len) {
        tc_jbuf_reset(&st->out);
        st->out_pos = 0;
    }
    return (long)n;
}

/* Answer resp with a's bytes, borrowed (a's reference goes with the response). */
static void tc_rest_respond_shared(tc_http_response *resp, tc_rest_format fmt,
                                   tc_coalesce_answer *a)
{
    tc_http_respond_borrowed(resp, 200, tc_rest_format_ctype(fmt), a->data, a->len,
                             tc_coalesce_answer_put, a);
    resp->body_gzip = tc_coalesce_answer_gzip;
}

/* End t's computation with the whole answer (data, malloc'ed, taken) and answer resp from it. When
 * it cannot be shared (a cap), resp owns data and t is left running for the caller to end. */
static void tc_rest_share(tc_rest *r, tc_coalesce_ticket *t, char *data, size_t len, int64_t rows,
                          tc_rest_format fmt, tc_http_response *resp)
{
    if (tc_coalesce_publish(r->coalesce, t, data, len, rows) == 0)
        tc_rest_respond_shared(resp, fmt, t->answer);
    else
        tc_http_respond_owned(resp, 200, tc_rest_format_ctype(fmt), data, len);
}

/* A stream whose computation others joined: read every row into st->out, share it, then write
 * its own audit record (after the publication, so the next computation starts meanwhile): 0 with
 * resp set and st freed. -1 when it cannot be shared (an error, past a cap): st goes on as a
 * stream, starting with what it read, and records itself when it ends. */
static int tc_rest_stream_share(tc_rest *r, tc_rest_stream *st, tc_coalesce_ticket *t,
                                tc_http_response *resp)
{
    tc_rest_problem pb;
    char *data;
    size_t len = 0;

    st->defer_audit = 1;
    while (!st->finished)
        if (tc_rest_stream_pull(st, st->out.len + TC_REST_STREAM_CHUNK) ||
            tc_coalesce_reserve(r->coalesce, t, st->out.len))
            break;
    st->defer_audit = 0;
    if (!st->finished || st->failed)
        return -1;
    data = tc_jbuf_take(&st->out, &len);
    if (data)
        tc_rest_share(r, t, data, len, st->lg.rows, st->fmt, resp);
    st->audited = 1;
    if (!data || tc_rest_audit_now(r, &st->lg, 200)) {
        /* No record, no data: the answer is replaced (and its bytes let go). */
        tc_rest_problem_set(&pb, 500, NULL, "the audit record could not be written");
        tc_rest_respond_problem(resp, &pb, st->req.path);
    }
    tc_rest_stream_free(st); /* committed: only the connection goes back */
    return 0;
}

/* Hand the running query, whose first result is `first` (a row or the end), over to a stream
 * (read whole and shared first when share is given); on failure the caller still owns conn and
 * first. */
static int tc_rest_stream_begin(tc_rest *r, PGconn *conn, PGresult *first, tc_rest_format fmt,
                                const tc_rest_req_log *lg, tc_coalesce_ticket *share,
                                tc_http_response *resp)
{
    tc_rest_stream *st = calloc(1, sizeof(*st));
    size_t lm = strlen(lg->req->method) + 1, lp = strlen(lg->req->path) + 1,
           lq = strlen(lg->req->query) + 1;

    if (!st || !(st->strings = malloc(lm + lp + lq))) {
        free(st);
        return -1;
    }
    st->rest = r;
    st->conn = conn;
    st->first = first;
    st->fmt = fmt;
    tc_jbuf_init(&st->out, TC_REST_JSON_MAX);
    tc_jbuf_init(&st->line, TC_REST_JSON_MAX);
    st->who = *lg->who;
    st->req = *lg->req;
    st->req.method = memcpy(st->strings, lg->req->method, lm);
    st->req.path = memcpy(st->strings + lm, lg->req->path, lp);
    st->req.query = memcpy(st->strings + lm + lp, lg->req->query, lq);
    st->req.body = NULL;
    st->req.authorization = st->req.api_key = st->req.accept = st->req.content_type = NULL;
    st->lg = *lg;
    st->lg.req = &st->req;
    st->lg.who = &st->who;
    st->lg.rows = 0;
    if (share && tc_rest_stream_share(r, st, share, resp) == 0)
        return 0;
    tc_http_respond_stream(resp, 200, tc_rest_format_ctype(fmt), tc_rest_stream_read, st,
                           tc_rest_stream_free);
    return 0;
}

/* ---- JSON answers ---- */

static void tc_rest_json_answer(tc_rest *r, const tc_rest_route *rt, const PGresult *res,
                                int64_t page, tc_rest_req_log *lg, tc_http_response *resp,
                                tc_rest_problem *pb)
{
    int nrows = PQntuples(res), shown = nrows;
    char cursor[TC_REST_CURSOR_MAX];
    tc_jbuf b;
    char *text;
    size_t len = 0;

    tc_jbuf_init(&b, TC_REST_JSON_MAX);
    if (rt->kind == TC_RK_LIST) {
        int key = PQfnumber(res, rt->key_col);
        int key2 = rt->key_col2 ? PQfnumber(res, rt->key_col2) : -1;
        int more = page > 0 && nrows > page;
        char kt[TC_REST_CURSOR_KEY_MAX];
        shown = more ? (int)page : nrows;
        tc_jbuf_obj_begin(&b);
        tc_jbuf_key(&b, "data");
        tc_jbuf_arr_begin(&b);
        for (int i = 0; i < shown; i++)
            tc_rest_json_row(&b, res, i);
        tc_jbuf_arr_end(&b);
        tc_jbuf_key(&b, "next");
        if (more && key >= 0)
            snprintf(kt, sizeof(kt), "%s%c%s", PQgetvalue(res, shown - 1, key), TC_REST_KEY_SEP,
                     key2 >= 0 ? PQgetvalue(res, shown - 1, key2) : "");
        if (more && key >= 0 && (!rt->key_col2 || key2 >= 0) &&
            tc_rest_cursor_make(&r->ck, rt->id, kt, cursor, sizeof(cursor)) == TC_OK)
            tc_jbuf_str(&b, cursor);
        else
            tc_jbuf_null(&b);
        tc_jbuf_obj_end(&b);
    } else {
        if (nrows == 0) {
            tc_rest_problem_set(pb, 404, NULL, "no such %s",
                                rt->kind == TC_RK_ONE ? "device, or no reading yet" : "row");
            return;
        }
        shown = 1;
        tc_rest_json_row(&b, res, 0);
    }
    lg->rows = shown;
    text = tc_jbuf_take(&b, &len);
    if (!text) {
        tc_rest_problem_set(pb, 500, NULL, "the answer is larger than the server builds");
        return;
    }
    tc_http_respond_owned(resp, 200, TC_HTTP_JSON, text, len);
}

/* ---- writes ---- */

/* Redrive: res holds the ids the caller's role could read; they are committed as read, then sent
 * by the hook. The answer says how many were asked for, found and sent. */
static void tc_rest_action(tc_rest *r, PGconn *conn, const PGresult *res, tc_rest_req_log *lg,
                           tc_http_response *resp, tc_rest_problem *pb)
{
    int64_t ids[TC_REST_ACTION_IDS_MAX];
    size_t n = 0;
    uint64_t done = 0;
    char errstr[TC_ERRSTR_MAX], body[128];
    int len;

    for (int i = 0; i < PQntuples(res) && n < TC_REST_ACTION_IDS_MAX; i++)
        ids[n++] = strtoll(PQgetvalue(res, i, 0), NULL, 10);
    if (tc_rest_db_end(conn, 1, pb))
        return;
    if (!r->opt.redrive) {
        tc_rest_problem_set(pb, 503, NULL, "redrive is not available on this server");
        return;
    }
    if (n && r->opt.redrive(r->opt.redrive_ctx, ids, n, &done, errstr, sizeof(errstr)) != TC_OK) {
        tc_log_error("serve", "redrive: %s", errstr);
        tc_rest_problem_set(pb, 503, NULL,
                            "redrive failed after %llu of %zu dead letters (the server log has "
                            "the details)",
                            (unsigned long long)done, n);
        return;
    }
    lg->rows = (int64_t)done;
    len = snprintf(body, sizeof(body), "{\"found\":%zu,\"redriven\":%llu}", n,
                   (unsigned long long)done);
    tc_http_respond(resp, 200, TC_HTTP_JSON, body, (size_t)len);
}

/* ---- the pipeline ---- */

static int tc_rest_param_index(const tc_rest_route *rt, const char *name)
{
    for (size_t i = 0; i < rt->nparams; i++)
        if (!strcmp(rt->params[i].name, name))
            return (int)i;
    return -1;
}

/* The coalescing key of a read (coalesce.h): everything that decides its rows and bytes -- the
 * route, the role and the claims the transaction runs with, the format, the path's and the query's
 * parameters as parsed (a time or a number by its value, so spellings of one value share) -- each
 * field with its length, so no two requests' fields run together. Its length, or 0 when it does
 * not fit (then the request is not coalesced). */
static size_t tc_rest_coalesce_key(const tc_rest_route *rt, const tc_http_request *req,
                                   const tc_rest_principal *who, const tc_rest_param_val *vals,
                                   tc_rest_format fmt, char *key, size_t cap)
{
    size_t n = 0;
    int w;

#define TC_REST_KEY_ADD(fmt_, ...)                                                                 \
    do {                                                                                           \
        w = snprintf(key + n, cap - n, fmt_, __VA_ARGS__);                                         \
        if (w < 0 || (size_t)w >= cap - n)                                                         \
            return 0;                                                                              \
        n += (size_t)w;                                                                            \
    } while (0)
    TC_REST_KEY_ADD("%zu:%s|%d|%d|%zu:%s|", strlen(rt->id), rt->id, (int)who->role, (int)fmt,
                    strlen(who->claims), who->claims);
    for (size_t i = 0; i < req->nparams && i < TC_HTTP_PARAMS_MAX; i++)
        TC_REST_KEY_ADD("p%zu:%s|", strlen(req->params[i]), req->params[i]);
    for (size_t i = 0; i < rt->nparams; i++) {
        tc_rest_ptype ty = rt->params[i].type;
        if (!vals[i].present)
            TC_REST_KEY_ADD("%s", "-|");
        else if (ty == TC_RP_TIME || ty == TC_RP_INT || ty == TC_RP_ENUM)
            TC_REST_KEY_ADD("n%lld|", (long long)vals[i].num);
        else
            TC_REST_KEY_ADD("t%zu:%s|", strlen(vals[i].text), vals[i].text);
    }
#undef TC_REST_KEY_ADD
    return n;
}

/* Answer a versioned leader's request (and its followers, already told) with the kept answer of
 * its version, t->answer: its transaction, which only read the version, ends; it records itself
 * as a request with the answer's rows. */
static void tc_rest_reused(tc_rest *r, PGconn *conn, tc_coalesce_ticket *t, tc_rest_format fmt,
                           tc_rest_req_log *lg, tc_http_response *resp)
{
    tc_rest_problem pb;

    memset(&pb, 0, sizeof(pb));
    tc_rest_db_end(conn, 1, &pb); /* read only: nothing to lose when it fails */
    tc_rest_pool_put(r->pool, conn);
    lg->rows = t->answer->rows;
    if (tc_rest_audit_now(r, lg, 200)) {
        tc_coalesce_answer_put(t->answer);
        t->answer = NULL;
        tc_rest_problem_set(&pb, 500, NULL, "the audit record could not be written");
        return tc_rest_respond_problem(resp, &pb, lg->req->path);
    }
    tc_rest_respond_shared(resp, fmt, t->answer);
}

/* Run a request whose parameters and format are checked: its statement in one transaction as
 * who, the answer, the audit record. lead: the computation this request leads (or NULL), started
 * right before the statement; when others joined it, the answer is built whole and published
 * (resp then borrows it). It is left for the caller to end when it was not published (alone, an
 * error, a cap). */
static void tc_rest_run(tc_rest *r, const tc_rest_route *rt, const tc_http_request *req,
                        tc_rest_param_val *vals, tc_rest_format fmt, tc_rest_req_log *lg,
                        tc_coalesce_ticket *lead, tc_http_response *resp)
{
    tc_coalesce_ticket *share = NULL;
    tc_rest_problem pb;
    tc_rest_call call;
    tc_rest_sql q;
    PGconn *conn = NULL;
    PGresult *res;
    int64_t version = 0;
    int li = tc_rest_param_index(rt, "limit"), ci = tc_rest_param_index(rt, "cursor");

    memset(&pb, 0, sizeof(pb));
    memset(&call, 0, sizeof(call));
    memset(&q, 0, sizeof(q));
    for (size_t i = 0; i < req->nparams && i < 4; i++)
        call.path_params[i] = req->params[i];
    call.vals = vals;
    call.now_us = tc_time_now_us();
    if (ci >= 0 && vals[ci].present) {
        /* "key<SEP>key2": a cursor made by tc_rest_json_answer, its MAC checked already. */
        char *sep = strchr(vals[ci].text, TC_REST_KEY_SEP);
        if (!sep) {
            tc_rest_problem_set(&pb, 400, "cursor", "cursor: not a cursor of this endpoint");
            return tc_rest_fail(r, lg, resp, &pb);
        }
        *sep = '\0';
        call.after = vals[ci].text;
        call.after2 = sep + 1;
    }
    if (li >= 0 && vals[li].present)
        call.limit = vals[li].num + (fmt == TC_REST_FMT_JSON);
    else if (rt->kind == TC_RK_LIST && fmt == TC_REST_FMT_JSON)
        call.limit = TC_REST_LIMIT_DEFAULT + 1;
    if (rt->build(&call, &q, &pb))
        return tc_rest_fail(r, lg, resp, &pb);
    conn = tc_rest_pool_get(r->pool, &pb);
    if (!conn)
        return tc_rest_fail(r, lg, resp, &pb);
    if (lead && q.version_of) {
        /* Versioned (coalesce.h, "Kept answers"): nobody joins after the snapshot, which the
         * transaction takes as it begins; the answer is always built whole, to be kept. */
        tc_coalesce_start(r->coalesce, lead);
        share = lead;
    }
    if (tc_rest_db_begin(r->pool, conn, lg->who, q.prepared > 0, share ? q.version_of : NULL,
                         &version, &pb))
        goto fail;
    if (share) {
        tc_coalesce_versioned(share, version);
        if (tc_coalesce_reuse(r->coalesce, share) == 0)
            return tc_rest_reused(r, conn, share, fmt, lg, resp);
    }
    /* Whoever joined until now shares what this statement reads; nobody joins after it. */
    if (lead && !share && tc_coalesce_start(r->coalesce, lead) > 1)
        share = lead;
    atomic_fetch_add(&r->statements, 1);
    if (fmt != TC_REST_FMT_JSON) {
        res = tc_rest_db_run(r->pool, conn, q.prepared, q.text, q.nparams, q.params, 1);
        if (res || !PQsetSingleRowMode(conn)) {
            tc_rest_db_problem(res, rt->id, &pb);
            PQclear(res);
            goto fail;
        }
        /* The first result before the status goes out: a query PostgreSQL refuses (a role
         * without the right, a bad value) is a 403 or 400 like in JSON, not a cut stream. */
        res = PQgetResult(conn);
        if (PQresultStatus(res) != PGRES_SINGLE_TUPLE && PQresultStatus(res) != PGRES_TUPLES_OK) {
            tc_rest_db_problem(res, rt->id, &pb);
            PQclear(res);
            goto fail;
        }
        if (tc_rest_stream_begin(r, conn, res, fmt, lg, share, resp) == 0)
            return; /* the stream owns conn and res now */
        PQclear(res);
        tc_rest_problem_set(&pb, 500, NULL, "out of memory");
        goto fail;
    }
    res = tc_rest_db_run(r->pool, conn, q.prepared, q.text, q.nparams, q.params, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        tc_rest_db_problem(res, rt->id, &pb);
        PQclear(res);
        goto fail;
    }
    if (rt->kind == TC_RK_ACTION) {
        tc_rest_action(r, conn, res, lg, resp, &pb);
        PQclear(res);
        if (pb.status)
            goto fail;
        /* Committed by tc_rest_action; the dead letters are sent, so a failing record is
         * logged but does not turn the answer into an error. */
        tc_rest_pool_put(r->pool, conn);
        tc_rest_audit_now(r, lg, 200);
        return;
    }
    tc_rest_json_answer(r, rt, res,
                        li >= 0 && vals[li].present ? vals[li].num
                        : rt->kind == TC_RK_LIST    ? TC_REST_LIMIT_DEFAULT
                                                    : 0,
                        lg, resp, &pb);
    PQclear(res);
    if (pb.status || tc_rest_db_end(conn, 1, &pb))
        goto fail;
    tc_rest_pool_put(r->pool, conn);
    if (share && resp->body) {
        /* Published before this request's own record, so the next computation starts meanwhile
         * (each member records itself before it sends). */
        char *body = resp->body;
        resp->body = NULL; /* taken by tc_rest_share */
        tc_rest_share(r, share, body, resp->body_len, lg->rows, fmt, resp);
    }
    if (tc_rest_audit_now(r, lg, 200)) {
        /* No record, no data: the answer built above is replaced. */
        tc_rest_problem_set(&pb, 500, NULL, "the audit record could not be written");
        tc_rest_respond_problem(resp, &pb, req->path);
    }
    return;
fail:
    tc_rest_db_end(conn, 0, &pb);
    tc_rest_pool_put(r->pool, conn);
    tc_rest_fail(r, lg, resp, &pb);
}

static void tc_rest_handle(void *ctx, const tc_http_request *req, tc_http_response *resp)
{
    const tc_rest_binding *bd = ctx;
    tc_rest *r = bd->rest;
    const tc_rest_route *rt = bd->route;
    tc_rest_param_val vals[TC_REST_PARAMS_MAX];
    tc_rest_principal who;
    tc_rest_problem pb;
    tc_rest_format fmt = TC_REST_FMT_JSON;
    tc_rest_req_log lg = {req, NULL, tc_time_now_us(), -1};
    tc_coalesce_ticket t;
    char key[TC_COALESCE_KEY_MAX];
    size_t klen = 0;
    long retry = 0;
    int fi;

    memset(&pb, 0, sizeof(pb));
    if (rt->kind == TC_RK_DOC) {
        tc_http_respond(resp, 200, TC_HTTP_JSON, r->openapi, r->openapi_len);
        return;
    }
    if (tc_rest_authenticate(r->auth, req->authorization, req->api_key, tc_time_now_us() / 1000000,
                             &who, &pb))
        return tc_rest_fail(r, &lg, resp, &pb);
    lg.who = &who;
    if (tc_rest_rate_take(r->auth, who.subject, tc_time_now_us(), &retry, &pb)) {
        char v[32];
        snprintf(v, sizeof(v), "%ld", retry);
        tc_rest_fail(r, &lg, resp, &pb);
        tc_http_add_header(resp, "Retry-After", v);
        return;
    }
    if (who.role < rt->min_role) {
        tc_rest_problem_set(&pb, 403, NULL, "%s needs the role %s or a stronger one", rt->id,
                            tc_rest_role_name(rt->min_role));
        return tc_rest_fail(r, &lg, resp, &pb);
    }
    if (tc_rest_params_parse(rt->params, rt->nparams, req->query, &r->ck, rt->id, vals, &pb))
        return tc_rest_fail(r, &lg, resp, &pb);
    fi = tc_rest_param_index(rt, "format");
    if (rt->streams && tc_rest_format_choose(fi >= 0 && vals[fi].present ? (int)vals[fi].num : -1,
                                             req->accept, &fmt)) {
        tc_rest_problem_set(&pb, 406, "format",
                            "format: this endpoint answers JSON, CSV, NDJSON or Parquet");
        return tc_rest_fail(r, &lg, resp, &pb);
    }
    /* Reads may share a computation with identical ones (coalesce.h); writes never do. */
    if (r->coalesce && (rt->kind == TC_RK_LIST || rt->kind == TC_RK_ONE) &&
        !strcmp(rt->method, "GET"))
        klen = tc_rest_coalesce_key(rt, req, &who, vals, fmt, key, sizeof(key));
    if (!klen)
        return tc_rest_run(r, rt, req, vals, fmt, &lg, NULL, resp);
    switch (tc_coalesce_enter(r->coalesce, key, klen, &t)) {
    case TC_COALESCE_SHARED:
        /* Answered by another request's computation: recorded as itself, with its rows. */
        lg.rows = t.answer->rows;
        if (tc_rest_audit_now(r, &lg, 200)) {
            tc_coalesce_answer_put(t.answer);
            tc_rest_problem_set(&pb, 500, NULL, "the audit record could not be written");
            return tc_rest_respond_problem(resp, &pb, req->path);
        }
        return tc_rest_respond_shared(resp, fmt, t.answer);
    case TC_COALESCE_LEAD:
        /* Alone, it runs as any request (a stream is not held back); else it builds the whole
         * answer for everyone. Ended unshared when it did not publish. */
        tc_rest_run(r, rt, req, vals, fmt, &lg, &t, resp);
        tc_coalesce_unshared(r->coalesce, &t);
        return;
    case TC_COALESCE_FALLBACK:
        break;
    }
    tc_rest_run(r, rt, req, vals, fmt, &lg, NULL, resp);
}

static void tc_rest_metrics(void *ctx, const tc_http_request *req, tc_http_response *resp)
{
    tc_rest *r = ctx;
    tc_coalesce_stats st = {0};
    char body[3072];
    int n;

    (void)req;
    if (r->coalesce)
        tc_coalesce_stats_get(r->coalesce, &st);
    n = snprintf(body, sizeof(body),
                 "# HELP thermocline_api_statements_total Statements the REST API ran for reads"
                 " and writes (one per request that was not answered by another's).\n"
                 "# TYPE thermocline_api_statements_total counter\n"
                 "thermocline_api_statements_total %llu\n"
                 "# HELP thermocline_api_coalesced_total Requests answered by an identical"
                 " request's computation.\n"
                 "# TYPE thermocline_api_coalesced_total counter\n"
                 "thermocline_api_coalesced_total %llu\n"
                 "# HELP thermocline_api_coalesce_fallbacks_total Requests that joined a"
                 " computation whose answer could not be shared, and ran on their own.\n"
                 "# TYPE thermocline_api_coalesce_fallbacks_total counter\n"
                 "thermocline_api_coalesce_fallbacks_total %llu\n"
                 "# HELP thermocline_api_answers_reused_total Reads answered by a kept answer"
                 " of the same version (nothing the answer depends on changed).\n"
                 "# TYPE thermocline_api_answers_reused_total counter\n"
                 "thermocline_api_answers_reused_total %llu\n"
                 "# HELP thermocline_api_answers_kept Answers kept for reuse.\n"
                 "# TYPE thermocline_api_answers_kept gauge\n"
                 "thermocline_api_answers_kept %llu\n"
                 "# HELP thermocline_api_coalesce_held_bytes Bytes of shared answers held.\n"
                 "# TYPE thermocline_api_coalesce_held_bytes gauge\n"
                 "thermocline_api_coalesce_held_bytes %llu\n"
                 "# HELP thermocline_api_coalesce_waiting Requests waiting for an identical"
                 " request's computation, or to start theirs.\n"
                 "# TYPE thermocline_api_coalesce_waiting gauge\n"
                 "thermocline_api_coalesce_waiting %llu\n",
                 (unsigned long long)atomic_load(&r->statements), (unsigned long long)st.shared,
                 (unsigned long long)st.fallbacks, (unsigned long long)st.reused,
                 (unsigned long long)st.kept, (unsigned long long)st.held_bytes,
                 (unsigned long long)st.waiting);
    tc_http_respond(resp, 200, "text/plain; version=0.0.4", body,
                    n > 0 && (size_t)n < sizeof(body) ? (size_t)n : 0);
}

tc_err tc_rest_mount(tc_rest *r, tc_http_server *s)
{
    if (tc_rest_nroutes > TC_REST_ROUTES_MAX)
        return TC_ERR_INVALID;
    for (size_t i = 0; i < tc_rest_nroutes; i++) {
        tc_err err;
        r->bind[i].rest = r;
        r->bind[i].route = &tc_rest_routes[i];
        err = tc_http_route(s, tc_rest_routes[i].method, tc_rest_routes[i].pattern, tc_rest_handle,
                            &r->bind[i]);
        if (err != TC_OK)
            return err;
    }
    return tc_http_route(s, "GET", "/metrics", tc_rest_metrics, r);
}
