/*
 * rest_db.h -- the REST API's side of PostgreSQL: a bounded pool of libpq connections, a request's
 * transaction run as the caller's role, the mapping of SQL errors to HTTP, and the audit record.
 *
 * Each request borrows one connection (waiting up to TC_REST_POOL_WAIT_MS for a free one, then
 * 503) and runs in one transaction opened by tc_rest_db_begin, the way PostgREST does it:
 *     BEGIN; SET LOCAL ROLE <role>; SET LOCAL search_path = <api schema>;
 *     SELECT set_config('request.jwt.claims', <claims>, true);
 * so the views, functions and row-level security of the `api` schema see the caller, and nothing
 * of it outlives the transaction: a connection goes back to the pool as the service's own login.
 * The role name comes from the fixed list of rest_auth.h, and the claims are a bound parameter;
 * no text of a request is ever spliced into SQL.
 *
 * The audit record (tc_rest_audit, written by rest_audit.h's batched writer) is made after the
 * request's transaction, so a failed request is recorded too, and a request's rows are counted
 * once they are all sent.
 */
#ifndef TC_API_REST_DB_H
#define TC_API_REST_DB_H

#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>

#include "api/rest_auth.h"
#include "api/rest_params.h"
#include "core/error.h"

/* How long a request waits for a free connection before 503. */
#define TC_REST_POOL_WAIT_MS 10000
/* Longest a request's statement may run (SET LOCAL statement_timeout). */
#define TC_REST_STATEMENT_TIMEOUT_MS 30000
/* Connections at most. */
#define TC_REST_POOL_MAX 256
/* Caps of the audit record's texts. */
#define TC_REST_AUDIT_PATH_MAX   512
#define TC_REST_AUDIT_PARAMS_MAX 2048

typedef struct tc_rest_pool tc_rest_pool;

/* size connections to dsn, opened as requests need them (the first is opened now, to fail early
 * on a bad DSN; rest.c's tc_rest_warm opens and warms the others before the server listens).
 * api_schema is the search_path of every request. NULL with errstr set. */
tc_rest_pool *tc_rest_pool_new(const char *dsn, size_t size, const char *api_schema, char *errstr,
                               size_t errstr_size);
void tc_rest_pool_destroy(tc_rest_pool *p);
/* Its number of connections. */
size_t tc_rest_pool_size(const tc_rest_pool *p);

/* A connection for one request, or NULL (none free in time, or the database unreachable) with pb
 * set to 503. */
PGconn *tc_rest_pool_get(tc_rest_pool *p, tc_rest_problem *pb);
/* Give it back; a connection left in a transaction or broken is rolled back or reset first. */
void tc_rest_pool_put(tc_rest_pool *p, PGconn *c);

/* Open the request's transaction as who (see the file comment); generic: the request's prepared
 * statement runs with its generic plan (tc_rest_db_run). version_of (a fixed table name, never a
 * caller's text, or NULL): the transaction is REPEATABLE READ READ ONLY and *version is that
 * table's answer version (api._answer_version) read in its one snapshot, the one every statement
 * of the request then sees (coalesce.h, "Kept answers"). 0, or an HTTP status with pb. */
int tc_rest_db_begin(tc_rest_pool *p, PGconn *c, const tc_rest_principal *who, int generic,
                     const char *version_of, int64_t *version, tc_rest_problem *pb);

/* Run sql with its parameters in the request's transaction. stmt 0: as it is, planned for these
 * values. stmt 1..31: a statement this connection prepares on first use (named after stmt, which
 * must always stand for the same sql) and then reuses; with a transaction begun `generic`, its one
 * generic plan, partitions pruned at run time -- for statements whose planning costs more than
 * their execution (readings(): three resolutions over the daily partitions). send: PQsend* (the
 * caller reads the results; NULL when sent, else a failed result), else the result. The caller
 * clears what is returned. */
PGresult *tc_rest_db_run(tc_rest_pool *p, PGconn *c, int stmt, const char *sql, int nparams,
                         const char *const *params, int send);
/* COMMIT (ok) or ROLLBACK; 0 or 500 with pb. */
int tc_rest_db_end(PGconn *c, int ok, tc_rest_problem *pb);

/* The HTTP status and problem for a failed statement's result: insufficient privilege (42501) is
 * 403, a data exception (class 22) 400, a query cancelled by the statement timeout 503, anything
 * else 500 (its message logged, not returned: it may name internals). */
int tc_rest_db_problem(const PGresult *r, const char *what, tc_rest_problem *pb);

/* One request's audit record (rest_audit.h writes it). */
typedef struct tc_rest_audit {
    const tc_rest_principal *who; /* NULL when unauthenticated */
    const char *method;
    const char *path;
    const char *query; /* raw query string */
    int64_t rows;      /* rows returned, -1 when none were read */
    int status;        /* HTTP */
    int64_t duration_us;
} tc_rest_audit;

#endif
