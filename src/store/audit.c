/*
 * audit.c -- recording and verifying audit events from C; see audit.h.
 *
 * Both calls are one statement on a connection opened for them: the commands that record are
 * rare and short-lived (a redrive, a replay, a retention run), so a connection each costs nothing
 * that matters, and the event cannot join -- or be lost with -- a transaction of the command's.
 * Parameters go as query parameters, never into the SQL text; only the schema name is quoted in.
 */
#include "store/audit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <libpq-fe.h>

/* Statements here name one quoted schema and a fixed text. */
#define TC_AUDIT_SQL_MAX 512

static PGconn *tc_audit_connect(const char *dsn, const char *schema, char *quoted, size_t cap,
                                tc_err *err, char *errstr, size_t errstr_size)
{
    PGconn *conn = PQconnectdb(dsn);
    char *q;

    if (PQstatus(conn) != CONNECTION_OK) {
        *err = tc_err_set(TC_ERR_DB_CONN, errstr, errstr_size,
                          "audit log: cannot connect to PostgreSQL (postgres.dsn): %s",
                          PQerrorMessage(conn));
        PQfinish(conn);
        return NULL;
    }
    q = PQescapeIdentifier(conn, schema, strlen(schema));
    if (!q || strlen(q) >= cap) {
        *err = tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                          "audit log: audit.schema \"%s\" is not a usable schema name", schema);
        PQfreemem(q);
        PQfinish(conn);
        return NULL;
    }
    snprintf(quoted, cap, "%s", q);
    PQfreemem(q);
    return conn;
}

static tc_err tc_audit_failed(PGconn *conn, PGresult *res, const char *what, char *errstr,
                              size_t errstr_size)
{
    const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    tc_err err = PQstatus(conn) != CONNECTION_OK || (state && !strncmp(state, "08", 2))
                     ? TC_ERR_DB_CONN
                     : TC_ERR_DB;

    return tc_err_set(err, errstr, errstr_size, "audit log: could not %s: %s%s", what,
                      PQresultErrorMessage(res),
                      state && !strcmp(state, "3F000") ? " (run `thermocline migrate`)" : "");
}

tc_err tc_audit_record(const char *dsn, const char *audit_schema, const tc_audit_event *ev,
                       char *errstr, size_t errstr_size)
{
    char quoted[2 * 64 + 3], sql[TC_AUDIT_SQL_MAX], rows[24], ms[32];
    const char *params[6];
    PGresult *res;
    PGconn *conn;
    tc_err err = TC_OK;

    if (!ev || !ev->action || !*ev->action)
        return tc_err_set(TC_ERR_INVALID, errstr, errstr_size, "audit log: an action is needed");
    conn = tc_audit_connect(dsn, audit_schema, quoted, sizeof(quoted), &err, errstr, errstr_size);
    if (!conn)
        return err;
    snprintf(sql, sizeof(sql),
             "SELECT %s.record($1, $2, $3::jsonb, $4::bigint, $5, $6::double precision)", quoted);
    snprintf(rows, sizeof(rows), "%lld", (long long)ev->rows);
    snprintf(ms, sizeof(ms), "%.3f", ev->duration_ms);
    params[0] = ev->action;
    params[1] = ev->target;
    params[2] = ev->params;
    params[3] = ev->rows >= 0 ? rows : NULL;
    params[4] = ev->status ? ev->status : "ok";
    params[5] = ev->duration_ms >= 0 ? ms : NULL;
    res = PQexecParams(conn, sql, 6, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        err = tc_audit_failed(conn, res, "record an event", errstr, errstr_size);
    PQclear(res);
    PQfinish(conn);
    return err;
}

tc_err tc_audit_verify(const char *dsn, const char *audit_schema, tc_audit_verify_result *out,
                       char *errstr, size_t errstr_size)
{
    char quoted[2 * 64 + 3], sql[TC_AUDIT_SQL_MAX];
    PGresult *res;
    PGconn *conn;
    tc_err err = TC_OK;

    memset(out, 0, sizeof(*out));
    out->broken_id = -1;
    conn = tc_audit_connect(dsn, audit_schema, quoted, sizeof(quoted), &err, errstr, errstr_size);
    if (!conn)
        return err;
    /* verify() recomputes every row's hash in one pass, ordered by id. */
    snprintf(sql, sizeof(sql),
             "SELECT (SELECT count(*) FROM %s.events), v.id, v.problem FROM (SELECT 1) one"
             " LEFT JOIN LATERAL (SELECT * FROM %s.verify() LIMIT 1) v ON true",
             quoted, quoted);
    res = PQexec(conn, sql);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        err = tc_audit_failed(conn, res, "verify the chain", errstr, errstr_size);
    } else {
        out->events = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
        if (!PQgetisnull(res, 0, 1)) {
            out->broken_id = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
            snprintf(out->problem, sizeof(out->problem), "%s", PQgetvalue(res, 0, 2));
        }
    }
    PQclear(res);
    PQfinish(conn);
    return err;
}
