/*
 * rest_db.c -- the REST API's connection pool and request transactions; see rest_db.h.
 *
 * The pool is a fixed array of slots under one mutex and a condition variable: a slot is free
 * (with or without an open connection) or lent. Connections are opened when first needed and
 * reset when a request finds one broken, so a database restart costs the requests in flight, not
 * the server.
 */
#include "api/rest_db.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"

typedef struct tc_rest_slot {
    PGconn *conn;
    int lent;
    uint32_t prepared; /* bit n: statement n is prepared on conn (tc_rest_db_run) */
} tc_rest_slot;

/* Longest schema name (PostgreSQL's identifiers: 63 bytes), quoted. */
#define TC_REST_IDENT_MAX 160

struct tc_rest_pool {
    char *dsn;
    char api_ident[TC_REST_IDENT_MAX]; /* quoted */
    size_t size;
    tc_rest_slot *slots;
    pthread_mutex_t lock;
    pthread_cond_t freed;
};

static PGconn *tc_rest_connect(const char *dsn, char *errstr, size_t errstr_size)
{
    PGconn *c = PQconnectdb(dsn);

    if (PQstatus(c) != CONNECTION_OK) {
        tc_err_set(TC_ERR_DB_CONN, errstr, errstr_size, "cannot connect to PostgreSQL: %s",
                   c ? PQerrorMessage(c) : "out of memory");
        tc_log_flatten(errstr);
        PQfinish(c);
        return NULL;
    }
    return c;
}

/* "name" with its quotes doubled, into out. */
static int tc_rest_quote_ident(const char *name, char *out, size_t cap)
{
    size_t o = 0;

    if (!*name || strlen(name) > 63)
        return -1;
    out[o++] = '"';
    for (const char *c = name; *c; c++) {
        if (o + 4 > cap)
            return -1;
        if (*c == '"')
            out[o++] = '"';
        out[o++] = *c;
    }
    out[o++] = '"';
    out[o] = '\0';
    return 0;
}

tc_rest_pool *tc_rest_pool_new(const char *dsn, size_t size, const char *api_schema, char *errstr,
                               size_t errstr_size)
{
    tc_rest_pool *p = calloc(1, sizeof(*p));

    if (size == 0 || size > TC_REST_POOL_MAX)
        size = size ? TC_REST_POOL_MAX : 1;
    if (!p || !(p->dsn = strdup(dsn)) || !(p->slots = calloc(size, sizeof(*p->slots)))) {
        if (p)
            free(p->dsn);
        free(p);
        tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory");
        return NULL;
    }
    p->size = size;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->freed, NULL);
    if (tc_rest_quote_ident(api_schema, p->api_ident, sizeof(p->api_ident))) {
        tc_err_set(TC_ERR_CONFIG, errstr, errstr_size, "api.schema: 1 to 63 bytes");
        tc_rest_pool_destroy(p);
        return NULL;
    }
    p->slots[0].conn = tc_rest_connect(dsn, errstr, errstr_size);
    if (!p->slots[0].conn) {
        tc_rest_pool_destroy(p);
        return NULL;
    }
    return p;
}

void tc_rest_pool_destroy(tc_rest_pool *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->size; i++)
        PQfinish(p->slots[i].conn);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->freed);
    free(p->slots);
    free(p->dsn);
    free(p);
}

size_t tc_rest_pool_size(const tc_rest_pool *p)
{
    return p->size;
}

PGconn *tc_rest_pool_get(tc_rest_pool *p, tc_rest_problem *pb)
{
    struct timespec deadline;
    tc_rest_slot *slot = NULL;
    char errstr[TC_ERRSTR_MAX];

    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += TC_REST_POOL_WAIT_MS / 1000;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        /* An open idle connection first, then an unopened slot. */
        for (size_t i = 0; i < p->size && !slot; i++)
            if (!p->slots[i].lent && p->slots[i].conn)
                slot = &p->slots[i];
        for (size_t i = 0; i < p->size && !slot; i++)
            if (!p->slots[i].lent)
                slot = &p->slots[i];
        if (slot || pthread_cond_timedwait(&p->freed, &p->lock, &deadline) == ETIMEDOUT)
            break;
    }
    if (slot)
        slot->lent = 1;
    pthread_mutex_unlock(&p->lock);
    if (!slot) {
        tc_rest_problem_set(pb, 503, NULL, "every database connection of the API is busy");
        return NULL;
    }
    if (slot->conn && PQstatus(slot->conn) != CONNECTION_OK) {
        PQreset(slot->conn);
        slot->prepared = 0; /* a new session */
    }
    if (!slot->conn || PQstatus(slot->conn) != CONNECTION_OK) {
        PQfinish(slot->conn);
        slot->conn = tc_rest_connect(p->dsn, errstr, sizeof(errstr));
        slot->prepared = 0;
    }
    if (!slot->conn) {
        tc_log_warn("serve", "%s", errstr);
        pthread_mutex_lock(&p->lock);
        slot->lent = 0;
        pthread_cond_signal(&p->freed);
        pthread_mutex_unlock(&p->lock);
        tc_rest_problem_set(pb, 503, NULL, "the database is unreachable");
        return NULL;
    }
    return slot->conn;
}

void tc_rest_pool_put(tc_rest_pool *p, PGconn *c)
{
    if (!c)
        return;
    if (PQtransactionStatus(c) != PQTRANS_IDLE) {
        PGresult *r;
        /* A request that stopped midway (client gone, error) left work on the wire. */
        while ((r = PQgetResult(c)))
            PQclear(r);
        if (PQtransactionStatus(c) != PQTRANS_IDLE)
            PQclear(PQexec(c, "ROLLBACK"));
    }
    pthread_mutex_lock(&p->lock);
    for (size_t i = 0; i < p->size; i++) {
        if (p->slots[i].conn == c) {
            p->slots[i].lent = 0;
            break;
        }
    }
    pthread_cond_signal(&p->freed);
    pthread_mutex_unlock(&p->lock);
}

/* ---- transactions ---- */

int tc_rest_db_problem(const PGresult *r, const char *what, tc_rest_problem *pb)
{
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    const char *msg = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;

    if (state && !strcmp(state, "42501"))
        return tc_rest_problem_set(pb, 403, NULL, "your role may not do this (%s)", what);
    if (state && !strncmp(state, "22", 2))
        return tc_rest_problem_set(pb, 400, NULL, "%s: %s", what, msg ? msg : "invalid value");
    if (state && !strcmp(state, "57014"))
        return tc_rest_problem_set(pb, 503, NULL, "%s took longer than %d ms", what,
                                   TC_REST_STATEMENT_TIMEOUT_MS);
    tc_log_error("serve", "%s failed: SQLSTATE %s: %s", what, state ? state : "?",
                 msg ? msg : "(no message)");
    return tc_rest_problem_set(pb, 500, NULL, "%s failed (the server log has the details)", what);
}

static int tc_rest_exec(PGconn *c, const char *sql, int nparams, const char *const *params,
                        const char *what, tc_rest_problem *pb)
{
    /* Without parameters, the simple protocol: it takes several statements at once. */
    PGresult *r =
        nparams ? PQexecParams(c, sql, nparams, NULL, params, NULL, NULL, 0) : PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    int rc = 0;

    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        rc = tc_rest_db_problem(r, what, pb);
    PQclear(r);
    return rc;
}

/* The statement's bytes besides the claims' literal: its fixed text (310 with both options), the
 * role (at most TC_REST_ROLE_MAX), the quoted schema (at most 130) and the version call (128), with
 * room. */
#define TC_REST_BEGIN_SQL_MAX 1024

/* "BEGIN; SET LOCAL ROLE ...; ...; SELECT set_config('request.jwt.claims', '...', true)" for
 * role (a fixed name: one of rest_auth.h's, or the servers' own) and claims (NULL: none), as one
 * string for one round trip: the claims go in as a literal quoted by libpq; generic: prepared
 * statements run with their generic plan. NULL when out of memory. */
static char *tc_rest_begin_sql(tc_rest_pool *p, PGconn *c, const char *role, const char *claims,
                               int generic, const char *version_of)
{
    char *lit = PQescapeLiteral(c, claims ? claims : "", strlen(claims ? claims : ""));
    size_t cap = (lit ? strlen(lit) : 0) + TC_REST_BEGIN_SQL_MAX;
    char *sql = lit ? malloc(cap) : NULL;
    char version[128] = "";

    /* No JIT: the api's statements read few rows, but on a large store their estimates pass
     * jit_above_cost, and compiling a plan cost fleet() 0.5-1 s a call where it runs in 30 ms
     * (docs/api.md, "Performance"). */
    /* enable_seqscan off where the plan is generic: it is made once and kept for the connection's
     * life, and a daily partition empty when it was made (the next day's; today's right after a
     * load) got a scan of the whole partition in it, which the day's readings then made longer
     * with every call: a device's raw day went from 78 to 1,333 ms within a minute of 20,000
     * readings/s (bench/run-api, the plan made when the day was a minute old). Every table the
     * generic statement reads has an index on the device it is read for. */
    /* The version is read by the first statement that takes a snapshot (the SETs take none), so
     * in REPEATABLE READ it and every later statement see the same committed rows. */
    if (version_of)
        snprintf(version, sizeof(version), ", _answer_version('%s')", version_of);
    if (sql)
        snprintf(
            sql, cap,
            "BEGIN%s; SET LOCAL ROLE %s; SET LOCAL search_path = %s;"
            " SET LOCAL TimeZone = 'UTC'; SET LOCAL statement_timeout = %d; SET LOCAL jit = off;%s"
            " SELECT set_config('request.jwt.claims', %s, true)%s",
            version_of ? " ISOLATION LEVEL REPEATABLE READ READ ONLY" : "", role, p->api_ident,
            TC_REST_STATEMENT_TIMEOUT_MS,
            generic
                ? " SET LOCAL plan_cache_mode = force_generic_plan; SET LOCAL enable_seqscan = off;"
                : "",
            lit, version);
    PQfreemem(lit);
    return sql;
}

/* Run sql (taken and freed; NULL: out of memory) in the open transaction, rolled back when it
 * fails. 0, or an HTTP status with pb. */
static int tc_rest_exec_owned(PGconn *c, char *sql, const char *what, tc_rest_problem *pb)
{
    int rc;

    if (!sql)
        return tc_rest_problem_set(pb, 500, NULL, "out of memory");
    rc = tc_rest_exec(c, sql, 0, NULL, what, pb);
    free(sql);
    if (rc)
        PQclear(PQexec(c, "ROLLBACK"));
    return rc;
}

int tc_rest_db_begin(tc_rest_pool *p, PGconn *c, const tc_rest_principal *who, int generic,
                     const char *version_of, int64_t *version, tc_rest_problem *pb)
{
    char *sql =
        tc_rest_begin_sql(p, c, tc_rest_role_name(who->role), who->claims, generic, version_of);
    PGresult *r;
    int rc = 0;

    if (!version_of)
        return tc_rest_exec_owned(c, sql, "starting the request's transaction", pb);
    if (!sql)
        return tc_rest_problem_set(pb, 500, NULL, "out of memory");
    r = PQexec(c, sql); /* the last statement's result: the claims and the version */
    free(sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1 || PQnfields(r) != 2)
        rc = tc_rest_db_problem(r, "starting the request's transaction", pb);
    else
        *version = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
    PQclear(r);
    if (rc)
        PQclear(PQexec(c, "ROLLBACK"));
    return rc;
}

PGresult *tc_rest_db_run(tc_rest_pool *p, PGconn *c, int stmt, const char *sql, int nparams,
                         const char *const *params, int send)
{
    tc_rest_slot *slot = NULL;
    char name[32];

    if (stmt <= 0 || stmt >= 32) {
        if (!send)
            return PQexecParams(c, sql, nparams, NULL, params, NULL, NULL, 0);
        return PQsendQueryParams(c, sql, nparams, NULL, params, NULL, NULL, 0)
                   ? NULL
                   : PQmakeEmptyPGresult(c, PGRES_FATAL_ERROR);
    }
    /* The slot is lent to this thread: its mask is the thread's to read and write. */
    pthread_mutex_lock(&p->lock);
    for (size_t i = 0; i < p->size && !slot; i++)
        if (p->slots[i].conn == c)
            slot = &p->slots[i];
    pthread_mutex_unlock(&p->lock);
    snprintf(name, sizeof(name), "tc_rest_%d", stmt);
    if (slot && !(slot->prepared & (1u << stmt))) {
        PGresult *r = PQprepare(c, name, sql, nparams, NULL);
        if (PQresultStatus(r) != PGRES_COMMAND_OK)
            return r;
        PQclear(r);
        slot->prepared |= 1u << stmt;
    }
    if (!slot) /* not the pool's: never, but then unprepared */
        return tc_rest_db_run(p, c, 0, sql, nparams, params, send);
    if (!send)
        return PQexecPrepared(c, name, nparams, params, NULL, NULL, 0);
    return PQsendQueryPrepared(c, name, nparams, params, NULL, NULL, 0)
               ? NULL
               : PQmakeEmptyPGresult(c, PGRES_FATAL_ERROR);
}

int tc_rest_db_end(PGconn *c, int ok, tc_rest_problem *pb)
{
    PGresult *r;

    if (!ok) {
        /* A query sent in single-row mode may still have results on the wire. */
        while ((r = PQgetResult(c)))
            PQclear(r);
        PQclear(PQexec(c, "ROLLBACK"));
        return 0;
    }
    return tc_rest_exec(c, "COMMIT", 0, NULL, "committing", pb);
}
