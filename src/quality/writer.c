/*
 * writer.c -- the quality monitor's writer thread; see writer.h. A mutex and a condition
 * variable guard three states (idle, running, done): the caller moves idle -> running
 * (tc_qw_start), the thread running -> done, the caller's poll done -> idle. The thread touches
 * nothing of the caller's but the statements it was given, and only while running.
 */
#include "quality/writer.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/timeutil.h"
#include "quality/quality_sql.h"

enum { TC_QW_IDLE, TC_QW_RUNNING, TC_QW_DONE };

struct tc_qw {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    int state, quit;
    const tc_qw_stmt *stmts;
    size_t nstmts;
    tc_err err;
    char errstr[TC_ERRSTR_MAX];
    uint64_t cpu_ns; /* the thread's CPU in its jobs so far (under mu) */
    /* the thread's alone */
    char *dsn, *schema;
    PGconn *conn;
    char *schema_quoted;
};

tc_err tc_qw_pgerr(PGconn *conn, PGresult *res, const char *what, char *errstr, size_t errstr_size)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    tc_err err = PQstatus(conn) != CONNECTION_OK || (state && !strncmp(state, "08", 2)) ||
                         (state && (!strcmp(state, "40001") || !strcmp(state, "40P01")))
                     ? TC_ERR_DB_CONN
                     : TC_ERR_DB;

    return tc_err_set(err, errstr, errstr_size, "quality: %s: %s", what,
                      res ? PQresultErrorMessage(res) : PQerrorMessage(conn));
}

tc_err tc_qw_exec(PGconn *conn, const char *schema_quoted, const char *tmpl, int n,
                  const char *const *values, const int *lengths, const int *formats, PGresult **out,
                  const char *what, char *errstr, size_t errstr_size)
{
    char *sql = tc_quality_sql_expand(tmpl, schema_quoted);
    PGresult *res;
    ExecStatusType st;
    tc_err err = TC_OK;

    if (out)
        *out = NULL;
    if (!sql)
        return tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "quality: out of memory");
    res = PQexecParams(conn, sql, n, NULL, values, lengths, formats, 0);
    free(sql);
    st = PQresultStatus(res);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        err = tc_qw_pgerr(conn, res, what, errstr, errstr_size);
    if (err == TC_OK && out)
        *out = res;
    else
        PQclear(res);
    return err;
}

tc_err tc_qw_connect(PGconn **conn, char **schema_quoted, const char *dsn, const char *schema,
                     char *errstr, size_t errstr_size)
{
    if (*conn && PQstatus(*conn) == CONNECTION_OK)
        return TC_OK;
    if (*conn)
        PQfinish(*conn);
    if (*schema_quoted)
        PQfreemem(*schema_quoted);
    *schema_quoted = NULL;
    *conn = PQconnectdb(dsn);
    if (PQstatus(*conn) != CONNECTION_OK)
        return tc_err_set(TC_ERR_DB_CONN, errstr, errstr_size,
                          "quality: cannot connect to PostgreSQL (postgres.dsn): %s",
                          PQerrorMessage(*conn));
    *schema_quoted = PQescapeIdentifier(*conn, schema, strlen(schema));
    if (!*schema_quoted)
        return tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "quality: out of memory");
    return TC_OK;
}

/* One job: BEGIN, the statements, COMMIT (ROLLBACK at the first failure). */
static tc_err tc_qw_run(tc_qw *w, const tc_qw_stmt *stmts, size_t n, char *errstr,
                        size_t errstr_size)
{
    tc_err err = tc_qw_connect(&w->conn, &w->schema_quoted, w->dsn, w->schema, errstr, errstr_size);

    if (err == TC_OK)
        err = tc_qw_exec(w->conn, w->schema_quoted, "BEGIN", 0, NULL, NULL, NULL, NULL, "begin",
                         errstr, errstr_size);
    /* No JIT: the fleet's device count is priced past jit_above_cost, and compiling it took 80 to
     * 220 ms of a 100 to 340 ms statement, the continued minutes' 20 to 40 ms of 55 to 80
     * (auto_explain, 3 M readings; docs/quality.md "What a flush costs PostgreSQL"). A flush's
     * statements each run once with their own parameters: compiled code is never reused. */
    if (err == TC_OK)
        err = tc_qw_exec(w->conn, w->schema_quoted, "SET LOCAL jit = off", 0, NULL, NULL, NULL,
                         NULL, "set jit", errstr, errstr_size);
    if (err != TC_OK) {
        if (w->conn && PQtransactionStatus(w->conn) != PQTRANS_IDLE)
            PQclear(PQexec(w->conn, "ROLLBACK"));
        return err;
    }
    for (size_t i = 0; err == TC_OK && i < n; i++) {
        const tc_qw_stmt *s = &stmts[i];
        PGresult *res = NULL;

        err = tc_qw_exec(w->conn, w->schema_quoted, s->tmpl, s->nparams, s->values, s->lengths,
                         s->formats, s->fence ? &res : NULL, s->what, errstr, errstr_size);
        if (err == TC_OK && s->fence && strcmp(PQcmdTuples(res), "1") != 0)
            err = tc_err_set(TC_ERR_FENCED, errstr, errstr_size, "%s", s->fence_msg);
        PQclear(res);
    }
    if (err == TC_OK)
        return tc_qw_exec(w->conn, w->schema_quoted, "COMMIT", 0, NULL, NULL, NULL, NULL, "commit",
                          errstr, errstr_size);
    PQclear(PQexec(w->conn, "ROLLBACK"));
    return err;
}

static void *tc_qw_main(void *arg)
{
    tc_qw *w = arg;

    pthread_mutex_lock(&w->mu);
    for (;;) {
        char errstr[TC_ERRSTR_MAX] = "";
        tc_err err;
        uint64_t cpu;

        while (!w->quit && w->state != TC_QW_RUNNING)
            pthread_cond_wait(&w->cond, &w->mu);
        if (w->state != TC_QW_RUNNING) /* quit, nothing to finish */
            break;
        pthread_mutex_unlock(&w->mu);
        cpu = tc_time_thread_cpu_ns();
        err = tc_qw_run(w, w->stmts, w->nstmts, errstr, sizeof(errstr));
        cpu = tc_time_thread_cpu_since(cpu);
        pthread_mutex_lock(&w->mu);
        w->cpu_ns += cpu;
        w->err = err;
        memcpy(w->errstr, errstr, sizeof(errstr));
        w->state = TC_QW_DONE;
        pthread_cond_broadcast(&w->cond);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

tc_qw *tc_qw_new(const char *dsn, const char *schema, char *errstr, size_t errstr_size)
{
    tc_qw *w = calloc(1, sizeof(*w));

    if (!w || !(w->dsn = strdup(dsn)) || !(w->schema = strdup(schema))) {
        if (w)
            free(w->dsn);
        free(w);
        tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "quality: out of memory");
        return NULL;
    }
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cond, NULL);
    if (pthread_create(&w->thread, NULL, tc_qw_main, w) != 0) {
        pthread_cond_destroy(&w->cond);
        pthread_mutex_destroy(&w->mu);
        free(w->schema);
        free(w->dsn);
        free(w);
        tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "quality: the writer's thread cannot start");
        return NULL;
    }
    return w;
}

void tc_qw_destroy(tc_qw *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->mu);
    w->quit = 1;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    pthread_cond_destroy(&w->cond);
    pthread_mutex_destroy(&w->mu);
    if (w->schema_quoted)
        PQfreemem(w->schema_quoted);
    if (w->conn)
        PQfinish(w->conn);
    free(w->schema);
    free(w->dsn);
    free(w);
}

int tc_qw_start(tc_qw *w, const tc_qw_stmt *stmts, size_t n)
{
    int started = 0;

    pthread_mutex_lock(&w->mu);
    if (w->state == TC_QW_IDLE) {
        w->stmts = stmts;
        w->nstmts = n;
        w->state = TC_QW_RUNNING;
        started = 1;
        pthread_cond_broadcast(&w->cond);
    }
    pthread_mutex_unlock(&w->mu);
    return started ? 0 : -1;
}

int tc_qw_poll(tc_qw *w, int wait, tc_err *err, char *errstr, size_t errstr_size)
{
    int out;

    pthread_mutex_lock(&w->mu);
    while (wait && w->state == TC_QW_RUNNING)
        pthread_cond_wait(&w->cond, &w->mu);
    out = w->state == TC_QW_RUNNING ? 1 : w->state == TC_QW_DONE ? 2 : 0;
    if (out == 2) {
        *err = w->err;
        if (w->err != TC_OK)
            snprintf(errstr, errstr_size, "%s", w->errstr);
        w->state = TC_QW_IDLE;
        w->stmts = NULL;
        w->nstmts = 0;
    }
    pthread_mutex_unlock(&w->mu);
    return out;
}

int tc_qw_busy(tc_qw *w)
{
    int busy;

    pthread_mutex_lock(&w->mu);
    busy = w->state != TC_QW_IDLE;
    pthread_mutex_unlock(&w->mu);
    return busy;
}

uint64_t tc_qw_cpu_ns(tc_qw *w)
{
    uint64_t ns;

    if (!w)
        return 0;
    pthread_mutex_lock(&w->mu);
    ns = w->cpu_ns;
    pthread_mutex_unlock(&w->mu);
    return ns;
}
