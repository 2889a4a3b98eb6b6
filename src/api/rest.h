/*
 * rest.h -- the REST API of `thermocline serve`: /v1 over the `api` schema of PostgreSQL.
 *
 * One object holds what the API needs for its life: the authenticator (rest_auth.h), the pool of
 * connections (rest_db.h) and the cursor key. tc_rest_mount adds its routes to an HTTP server
 * (api/http.h); every request then goes through the same steps, in rest.c: authenticate (401),
 * rate-limit (429), check the parameters against the route's declarations (400), run one
 * transaction as the caller's role (403 when PostgreSQL refuses), encode, audit. The routes, their
 * parameters and their SQL are one table (rest_routes.c), from which the OpenAPI document is
 * generated too (rest_openapi.c).
 *
 * Range reads in CSV, NDJSON or Parquet are streamed: rows come from libpq's single-row mode and
 * go out as chunks while the database still sends the rest, so a response of any length holds a
 * bounded buffer (TC_REST_STREAM_CHUNK) and, for Parquet, one row group. JSON answers are pages of
 * at most 10,000 rows (the `limit` parameter's bound) with an opaque, signed `next` cursor.
 *
 * Identical reads (same route, parameters, format, role and claims) arriving together share one
 * computation when `coalesce` is on (api/coalesce.h): one statement, one encoding, the bytes sent
 * to each; every request is still rate-limited and audited as itself. GET /metrics (no
 * credentials; counters only) counts the statements run and the requests answered that way.
 */
#ifndef TC_API_REST_H
#define TC_API_REST_H

#include <stddef.h>
#include <stdint.h>

#include "api/http.h"
#include "core/error.h"

typedef struct tc_rest_options {
    const char *pg_dsn;
    const char *api_schema;   /* the views and functions read */
    const char *audit_schema; /* where record() is */
    size_t pool_size;
    const char *jwt_secret;    /* HS256 */
    const char *jwks_file;     /* RS256 / ES256 */
    const char *keys_file;     /* API keys */
    const char *cursor_secret; /* NULL or "": random */
    double rate_per_s;
    int64_t rate_burst;
    /* Identical reads share one computation (api/coalesce.h), each answer's bytes under
     * coalesce_answer_max and all of them under coalesce_total_max (0: the defaults). */
    int coalesce;
    size_t coalesce_answer_max, coalesce_total_max;
    /* Send the dead letters ids[0..n) back to the topic (`serve` gives one over the store and a
     * Kafka producer); *done counts those sent. NULL: redrive answers 503. Called after the
     * caller's role was checked and the ids read as that role, from any server thread. */
    tc_err (*redrive)(void *ctx, const int64_t *ids, size_t n, uint64_t *done, char *errstr,
                      size_t errstr_size);
    void *redrive_ctx;
} tc_rest_options;

typedef struct tc_rest tc_rest;

/* NULL with errstr set (a key file, the DSN, ...). Connects once to fail early. */
tc_rest *tc_rest_new(const tc_rest_options *opt, char *errstr, size_t errstr_size);
/* Add the /v1 routes to s (before it starts). */
tc_err tc_rest_mount(tc_rest *r, tc_http_server *s);
/* After the server is stopped. NULL is fine. */
void tc_rest_destroy(tc_rest *r);

/* The OpenAPI 3.1 document (malloc'ed JSON; NULL when out of memory). */
char *tc_rest_openapi(size_t *len);

#endif
