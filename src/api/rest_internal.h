/*
 * rest_internal.h -- what rest.c, rest_routes.c and rest_openapi.c share: the route table.
 *
 * A route is a method, a path pattern, its query parameters (rest_params.h declarations), the
 * formats it answers in, the weakest role it is meant for, and a function that turns the parsed
 * request into one SQL statement with bound parameters. rest.c runs any route the same way;
 * rest_openapi.c describes every route from the same entry.
 */
#ifndef TC_API_REST_INTERNAL_H
#define TC_API_REST_INTERNAL_H

#include "api/rest_auth.h"
#include "api/rest_encode.h"
#include "api/rest_params.h"

/* Between the two parts of a two-column cursor key (a timestamp never holds it). */
#define TC_REST_KEY_SEP '\x1f'

/* Bound parameters of one statement, and room for the texts computed for them. */
#define TC_REST_SQL_PARAMS_MAX 10
#define TC_REST_SQL_TEXT_MAX   272 /* a tag key (256) and its NUL */

typedef enum tc_rest_kind {
    TC_RK_LIST,   /* rows, paged in JSON by key_col, streamed in the other formats */
    TC_RK_ONE,    /* one row, 404 when none */
    TC_RK_ACTION, /* a write: POST, answers the statement's one row */
    TC_RK_DOC,    /* the OpenAPI document, no authentication */
} tc_rest_kind;

/* A parsed request, as a route's SQL builder sees it. */
typedef struct tc_rest_call {
    const char *path_params[4];    /* decoded {params} in pattern order */
    const tc_rest_param_val *vals; /* in the route's params order */
    const char *after;             /* the key of the cursor, or NULL */
    const char *after2;            /* its second part (routes with key_col2), or NULL */
    int64_t limit;                 /* rows of a JSON page + 1 (to know there is more), or 0 */
    int64_t now_us;
} tc_rest_call;

typedef struct tc_rest_sql {
    const char *text;
    const char *params[TC_REST_SQL_PARAMS_MAX];
    int nparams;
    int prepared; /* 0, or the statement's number for tc_rest_db_run (one per builder) */
    /* NULL, or the one table the answer depends on, whose answer version (api._answer_version,
     * moved by every committed change) lets an identical read reuse a kept answer (coalesce.h) */
    const char *version_of;
    char store[TC_REST_SQL_PARAMS_MAX][TC_REST_SQL_TEXT_MAX]; /* texts the builder computed */
} tc_rest_sql;

typedef int (*tc_rest_build_fn)(const tc_rest_call *call, tc_rest_sql *q, tc_rest_problem *pb);

typedef struct tc_rest_route {
    const char *method;
    const char *pattern; /* "/v1/devices/{device_id}" */
    const char *id;      /* operationId; also the route's name inside its cursors */
    const char *summary; /* one line */
    tc_rest_kind kind;
    tc_rest_role min_role; /* weaker roles get 403 before any SQL runs */
    const tc_rest_param_def *params;
    size_t nparams;
    int streams;          /* answers CSV, NDJSON and Parquet too */
    const char *key_col;  /* TC_RK_LIST: the column the pages are ordered and cut by... */
    const char *key_col2; /* ...and a second one when the first is not unique, or NULL */
    tc_rest_build_fn build;
} tc_rest_route;

extern const tc_rest_route tc_rest_routes[];
extern const size_t tc_rest_nroutes;

/* Bind helpers for builders: the value text, or NULL when absent. */
const char *tc_rest_val(const tc_rest_call *call, size_t i);
/* Bind text as the next parameter: it must live as long as the call (a request's value), NULL
 * for SQL NULL. */
void tc_rest_bind(tc_rest_sql *q, const char *text);
/* Bind a computed text, copied into q->store (cut at TC_REST_SQL_TEXT_MAX - 1 bytes). */
void tc_rest_bind_copy(tc_rest_sql *q, const char *text);

/* The statement a connection of the pool runs once when the server starts (rest.c,
 * tc_rest_warm): the readings route's, as its builder makes it for a device with an empty id
 * (which no reading can have: no rows) over the day before now_us. 0, or the builder's status. */
int tc_rest_routes_warm_sql(int64_t now_us, tc_rest_sql *q);

#endif
