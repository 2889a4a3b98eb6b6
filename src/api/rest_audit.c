/*
 * rest_audit.c -- the REST API's batched audit writer; see rest_audit.h.
 *
 * A ring of queued records under one mutex, and one thread. A record is a JSON object made by the
 * request's thread (so the writer only joins texts) with a pointer to its writer's outcome, an int
 * on that thread's stack: the writer thread sets it, under the mutex, once the batch is settled,
 * and a request never returns before that, so the pointer is always valid. Batches go in queue
 * order, which is the order of the chain.
 *
 * A batch whose connection broke is tried once more on a fresh connection: if the first attempt
 * had committed and only its answer was lost, the records are in the log twice (two rows, the
 * chain intact), which is better than a request without a record.
 */
#include "api/rest_audit.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/json.h"
#include "core/log.h"
#include "core/timeutil.h"

/* Log a failing batch at most this often (warned_us is the thread's alone). */
#define TC_REST_AUDIT_WARN_US (60 * 1000000LL)
/* "SELECT <quoted schema>.record_requests($1::jsonb)". */
#define TC_REST_AUDIT_SQL_MAX 256
/* One record's JSON at most: the path and query caps, the claims', and the fixed fields. */
#define TC_REST_AUDIT_RECORD_MAX                                                                   \
    (2 * (TC_REST_AUDIT_PATH_MAX + TC_REST_AUDIT_PARAMS_MAX + TC_REST_CLAIMS_MAX) + 1024)

typedef struct tc_rest_audit_item {
    char *json;
    size_t len;
    int *outcome; /* the writer's: 1 committed, -1 failed */
} tc_rest_audit_item;

struct tc_rest_auditor {
    char *dsn;
    char sql[TC_REST_AUDIT_SQL_MAX];
    PGconn *conn; /* the thread's */
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t queued;  /* a record arrived, or stop */
    pthread_cond_t room;    /* the ring has room */
    pthread_cond_t settled; /* a batch's outcomes are set */
    tc_rest_audit_item ring[TC_REST_AUDIT_QUEUE_MAX];
    size_t head, count;
    int stopping, started;
    tc_rest_audit_item batch[TC_REST_AUDIT_BATCH_MAX]; /* the thread's */
    int64_t records, batches, warned_us;
};

/* A connection as thermocline_authenticator with the batch's statement timeout; NULL (errstr
 * set) when it cannot be had. */
static PGconn *tc_rest_audit_connect(const char *dsn, char *errstr, size_t errstr_size)
{
    PGconn *c = PQconnectdb(dsn);
    char sql[TC_REST_AUDIT_SQL_MAX];
    PGresult *r;

    if (PQstatus(c) != CONNECTION_OK) {
        tc_err_set(TC_ERR_DB_CONN, errstr, errstr_size,
                   "audit writer: cannot connect to PostgreSQL: %s",
                   c ? PQerrorMessage(c) : "out of memory");
        tc_log_flatten(errstr);
        PQfinish(c);
        return NULL;
    }
    snprintf(sql, sizeof(sql), "SET ROLE thermocline_authenticator; SET statement_timeout = %d",
             TC_REST_AUDIT_STATEMENT_TIMEOUT_MS);
    r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        tc_err_set(TC_ERR_DB, errstr, errstr_size,
                   "audit writer: cannot act as thermocline_authenticator (the server's login "
                   "must be a member; run `thermocline migrate`): %s",
                   PQresultErrorMessage(r));
        tc_log_flatten(errstr);
        PQclear(r);
        PQfinish(c);
        return NULL;
    }
    PQclear(r);
    return c;
}

static void tc_rest_audit_warn(tc_rest_auditor *a, size_t n, const char *why)
{
    int64_t now = tc_time_now_us();

    if (now - a->warned_us < TC_REST_AUDIT_WARN_US)
        return;
    a->warned_us = now;
    tc_log_error("serve",
                 "cannot write the audit records of %zu requests (they were answered "
                 "with 500 or are logged here only): %s",
                 n, why);
}

/* One attempt at the batch's statement; 0 when committed. *broken: the connection is gone. */
static int tc_rest_audit_exec(tc_rest_auditor *a, const char *doc, int *broken, char *why,
                              size_t why_size)
{
    char errstr[TC_ERRSTR_MAX];
    const char *params[1] = {doc};
    PGresult *r;
    int rc = 0;

    *broken = 0;
    if (!a->conn || PQstatus(a->conn) != CONNECTION_OK) {
        PQfinish(a->conn);
        a->conn = tc_rest_audit_connect(a->dsn, errstr, sizeof(errstr));
        if (!a->conn) {
            snprintf(why, why_size, "%s", errstr);
            *broken = 1;
            return -1;
        }
    }
    r = PQexecParams(a->conn, a->sql, 1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        snprintf(why, why_size, "%s", PQresultErrorMessage(r));
        tc_log_flatten(why);
        *broken = PQstatus(a->conn) != CONNECTION_OK;
        rc = -1;
    }
    PQclear(r);
    return rc;
}

/* Write a->batch[0..n) as one JSON array in one statement (so one transaction). */
static int tc_rest_audit_flush(tc_rest_auditor *a, size_t n)
{
    char why[TC_ERRSTR_MAX];
    size_t len = 2;
    char *doc, *p;
    int broken = 0, rc;

    for (size_t i = 0; i < n; i++)
        len += a->batch[i].len + 1;
    doc = malloc(len + 1);
    if (!doc) {
        tc_rest_audit_warn(a, n, "out of memory");
        return -1;
    }
    p = doc;
    *p++ = '[';
    for (size_t i = 0; i < n; i++) {
        if (i)
            *p++ = ',';
        memcpy(p, a->batch[i].json, a->batch[i].len);
        p += a->batch[i].len;
    }
    *p++ = ']';
    *p = '\0';
    rc = tc_rest_audit_exec(a, doc, &broken, why, sizeof(why));
    if (rc && broken) /* the database restarted, say: once more on a new connection */
        rc = tc_rest_audit_exec(a, doc, &broken, why, sizeof(why));
    if (rc)
        tc_rest_audit_warn(a, n, why);
    free(doc);
    return rc;
}

static void *tc_rest_audit_main(void *arg)
{
    tc_rest_auditor *a = arg;

    pthread_mutex_lock(&a->lock);
    for (;;) {
        size_t n = 0, bytes = 0;
        int rc;

        while (!a->count && !a->stopping)
            pthread_cond_wait(&a->queued, &a->lock);
        if (!a->count)
            break; /* stopping, and all is written */
        while (n < TC_REST_AUDIT_BATCH_MAX && a->count &&
               (n == 0 || bytes + a->ring[a->head].len <= TC_REST_AUDIT_BATCH_BYTES)) {
            bytes += a->ring[a->head].len;
            a->batch[n++] = a->ring[a->head];
            a->head = (a->head + 1) % TC_REST_AUDIT_QUEUE_MAX;
            a->count--;
        }
        pthread_cond_broadcast(&a->room);
        pthread_mutex_unlock(&a->lock);

        rc = tc_rest_audit_flush(a, n);

        pthread_mutex_lock(&a->lock);
        for (size_t i = 0; i < n; i++) {
            *a->batch[i].outcome = rc ? -1 : 1;
            free(a->batch[i].json);
        }
        if (!rc) {
            a->records += (int64_t)n;
            a->batches++;
        }
        pthread_cond_broadcast(&a->settled);
    }
    pthread_mutex_unlock(&a->lock);
    return NULL;
}

tc_rest_auditor *tc_rest_auditor_new(const char *dsn, const char *audit_schema, char *errstr,
                                     size_t errstr_size)
{
    tc_rest_auditor *a = calloc(1, sizeof(*a));
    char *q;

    if (!a || !(a->dsn = strdup(dsn))) {
        free(a);
        tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory");
        return NULL;
    }
    a->conn = tc_rest_audit_connect(dsn, errstr, errstr_size);
    if (!a->conn) {
        free(a->dsn);
        free(a);
        return NULL;
    }
    q = PQescapeIdentifier(a->conn, audit_schema, strlen(audit_schema));
    if (!q || strlen(q) > 2 * 63 + 2) {
        tc_err_set(TC_ERR_CONFIG, errstr, errstr_size, "audit.schema: 1 to 63 bytes");
        PQfreemem(q);
        PQfinish(a->conn);
        free(a->dsn);
        free(a);
        return NULL;
    }
    snprintf(a->sql, sizeof(a->sql), "SELECT %s.record_requests($1::jsonb)", q);
    PQfreemem(q);
    pthread_mutex_init(&a->lock, NULL);
    pthread_cond_init(&a->queued, NULL);
    pthread_cond_init(&a->room, NULL);
    pthread_cond_init(&a->settled, NULL);
    if (pthread_create(&a->thread, NULL, tc_rest_audit_main, a)) {
        tc_err_set(TC_ERR_IO, errstr, errstr_size, "audit writer: cannot start its thread");
        tc_rest_auditor_destroy(a);
        return NULL;
    }
    a->started = 1;
    return a;
}

void tc_rest_auditor_destroy(tc_rest_auditor *a)
{
    if (!a)
        return;
    pthread_mutex_lock(&a->lock);
    a->stopping = 1;
    pthread_cond_signal(&a->queued);
    pthread_mutex_unlock(&a->lock);
    if (a->started)
        pthread_join(a->thread, NULL);
    if (a->records)
        tc_log_info("serve", "audit: %lld requests recorded in %lld transactions",
                    (long long)a->records, (long long)a->batches);
    PQfinish(a->conn);
    pthread_mutex_destroy(&a->lock);
    pthread_cond_destroy(&a->queued);
    pthread_cond_destroy(&a->room);
    pthread_cond_destroy(&a->settled);
    free(a->dsn);
    free(a);
}

/* ev as record_requests() reads it: {"at", "role", "claims", "action", "target", "params",
 * "rows", "status", "ms"}; NULL when out of memory. */
static char *tc_rest_audit_json(const tc_rest_audit *ev, size_t *len)
{
    /* 499: the client went away before the last row (nginx's code for it). */
    const char *status = ev->status < 400    ? "ok"
                         : ev->status == 499 ? "aborted"
                         : ev->status < 500  ? "refused"
                                             : "failed";
    int64_t now = tc_time_now_us();
    time_t secs = (time_t)(now / 1000000);
    char at[64], target[TC_REST_AUDIT_PATH_MAX + 16];
    struct tm tm;
    tc_jbuf b;

    gmtime_r(&secs, &tm);
    snprintf(at, sizeof(at), "%04d-%02d-%02dT%02d:%02d:%02d.%06lldZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
             (long long)(now % 1000000));
    snprintf(target, sizeof(target), "%s %.*s", ev->method, TC_REST_AUDIT_PATH_MAX, ev->path);
    tc_jbuf_init(&b, TC_REST_AUDIT_RECORD_MAX);
    tc_jbuf_obj_begin(&b);
    tc_jbuf_key(&b, "at");
    tc_jbuf_str(&b, at);
    tc_jbuf_key(&b, "role");
    tc_jbuf_str(&b, ev->who ? tc_rest_role_name(ev->who->role) : "thermocline_authenticator");
    if (ev->who && ev->who->claims[0]) {
        /* As record() stores them: the object when it parses (always, for claims made by
         * rest_auth.c), else the text as a JSON string. */
        tc_json_doc *doc =
            tc_json_parse(ev->who->claims, strlen(ev->who->claims), NULL, NULL, NULL, 0);
        tc_jbuf_key(&b, "claims");
        if (doc)
            tc_jbuf_raw(&b, ev->who->claims, strlen(ev->who->claims));
        else
            tc_jbuf_str(&b, ev->who->claims);
        tc_json_free(doc);
    }
    tc_jbuf_key(&b, "action");
    tc_jbuf_str(&b, "api.request");
    tc_jbuf_key(&b, "target");
    tc_jbuf_str(&b, target);
    tc_jbuf_key(&b, "params");
    tc_jbuf_obj_begin(&b);
    tc_jbuf_key(&b, "query");
    tc_jbuf_strn(&b, ev->query, strnlen(ev->query, TC_REST_AUDIT_PARAMS_MAX));
    tc_jbuf_key(&b, "http_status");
    tc_jbuf_int(&b, ev->status);
    tc_jbuf_obj_end(&b);
    tc_jbuf_key(&b, "rows");
    if (ev->rows >= 0)
        tc_jbuf_int(&b, ev->rows);
    else
        tc_jbuf_null(&b);
    tc_jbuf_key(&b, "status");
    tc_jbuf_str(&b, status);
    tc_jbuf_key(&b, "ms");
    tc_jbuf_double(&b, (double)ev->duration_us / 1000.0);
    tc_jbuf_obj_end(&b);
    return tc_jbuf_take(&b, len);
}

int tc_rest_auditor_write(tc_rest_auditor *a, const tc_rest_audit *ev)
{
    size_t len = 0;
    char *json = tc_rest_audit_json(ev, &len);
    int outcome = 0;

    if (!json) {
        tc_log_error("serve", "cannot write the audit record of %s %s: out of memory", ev->method,
                     ev->path);
        return -1;
    }
    pthread_mutex_lock(&a->lock);
    while (a->count == TC_REST_AUDIT_QUEUE_MAX)
        pthread_cond_wait(&a->room, &a->lock);
    a->ring[(a->head + a->count) % TC_REST_AUDIT_QUEUE_MAX] =
        (tc_rest_audit_item){json, len, &outcome};
    a->count++;
    pthread_cond_signal(&a->queued);
    while (!outcome)
        pthread_cond_wait(&a->settled, &a->lock);
    pthread_mutex_unlock(&a->lock);
    return outcome > 0 ? 0 : -1;
}

void tc_rest_auditor_counts(tc_rest_auditor *a, int64_t *records, int64_t *batches)
{
    pthread_mutex_lock(&a->lock);
    *records = a->records;
    *batches = a->batches;
    pthread_mutex_unlock(&a->lock);
}
