/*
 * rest_routes.c -- the /v1 routes: their parameters and the one SQL statement each runs.
 *
 * Every statement reads the `api` schema only (views and functions; the storage tables behind
 * them are not the API's business): names are unqualified, and the request's transaction sets
 * search_path to that schema alone (api.schema; rest_db.c), and takes every value from the request
 * as a bound parameter
 * ($n), so no parameter can change what the statement is. A NULL parameter means "no filter":
 * "($1::text IS NULL OR ...)". JSON pages are cut with "key > cursor ORDER BY key LIMIT n+1"
 * (keyset pagination: no OFFSET, so a page costs the same wherever it is, and rows that arrive
 * meanwhile neither repeat nor shift a page).
 *
 * The downsampling of a range read is chosen by its length unless resolution= says: raw up to a
 * day, per minute up to a week, per hour beyond (TC_REST_RAW_MAX_US, TC_REST_MINUTE_MAX_US).
 */
#include <stdio.h>
#include <string.h>

#include "api/rest_internal.h"

/* Longest range one request may read, and the ranges of each automatic resolution. */
#define TC_REST_RANGE_MAX_US  (400LL * 86400 * 1000000)
#define TC_REST_RAW_MAX_US    (86400LL * 1000000)
#define TC_REST_MINUTE_MAX_US (7LL * 86400 * 1000000)
/* Rows of a JSON page at most (the `limit` parameter's bound) and by default. */
#define TC_REST_PAGE_MAX     10000
#define TC_REST_PAGE_DEFAULT 1000
/* Dead letters one redrive request may name. */
#define TC_REST_REDRIVE_MAX 1000

#define TC_REST_RESOLUTIONS "auto|raw|1m|1h"

const char *tc_rest_val(const tc_rest_call *call, size_t i)
{
    return call->vals[i].present ? call->vals[i].text : NULL;
}

void tc_rest_bind(tc_rest_sql *q, const char *text)
{
    q->params[q->nparams++] = text;
}

void tc_rest_bind_copy(tc_rest_sql *q, const char *text)
{
    size_t n = strlen(text);

    n = n < sizeof(q->store[0]) ? n : sizeof(q->store[0]) - 1;
    memcpy(q->store[q->nparams], text, n);
    q->store[q->nparams][n] = '\0';
    q->params[q->nparams] = q->store[q->nparams];
    q->nparams++;
}

/* Bind an integer (the page limit; 0 = none, bound as NULL, which LIMIT takes as ALL). */
static void tc_rest_bind_limit(tc_rest_sql *q, int64_t n)
{
    char t[32];

    snprintf(t, sizeof(t), "%lld", (long long)n);
    if (n > 0)
        tc_rest_bind_copy(q, t);
    else
        tc_rest_bind(q, NULL);
}

/* The tag filter "key:value" as two parameters (NULL, NULL when absent). */
static void tc_rest_bind_tag(tc_rest_sql *q, const tc_rest_param_val *v)
{
    if (!v->present) {
        tc_rest_bind(q, NULL);
        tc_rest_bind(q, NULL);
        return;
    }
    snprintf(q->store[q->nparams], sizeof(q->store[0]), "%.*s", (int)v->tag_split, v->text);
    q->params[q->nparams] = q->store[q->nparams];
    q->nparams++;
    q->params[q->nparams++] = v->text + v->tag_split + 1; /* lives as long as the call */
}

static int tc_rest_bind_glob(tc_rest_sql *q, const tc_rest_param_val *v, tc_rest_problem *pb)
{
    char like[TC_REST_SQL_TEXT_MAX * 2];

    if (!v->present) {
        tc_rest_bind(q, NULL);
        return 0;
    }
    if (tc_rest_glob_to_like(v->text, like, sizeof(q->store[0])) != TC_OK)
        return tc_rest_problem_set(pb, 400, "glob", "glob: at most %d bytes once escaped",
                                   TC_REST_SQL_TEXT_MAX - 1);
    tc_rest_bind_copy(q, like);
    return 0;
}

/* from/to (defaults: the last day up to now) as two parameters (epoch seconds); *span_us gets
 * the range's length. */
static int tc_rest_bind_span(const tc_rest_call *call, size_t from_i, size_t to_i, tc_rest_sql *q,
                             int64_t *span_us, tc_rest_problem *pb)
{
    int64_t to = call->vals[to_i].present ? call->vals[to_i].num : call->now_us;
    int64_t from = call->vals[from_i].present ? call->vals[from_i].num : to - TC_REST_RAW_MAX_US;
    char t[40];

    if (from >= to)
        return tc_rest_problem_set(pb, 400, "from", "from: must be before to");
    if (to - from > TC_REST_RANGE_MAX_US)
        return tc_rest_problem_set(pb, 400, "from", "from: the range is longer than 400 days");
    snprintf(t, sizeof(t), "%.6f", (double)from / 1e6);
    tc_rest_bind_copy(q, t);
    snprintf(t, sizeof(t), "%.6f", (double)to / 1e6);
    tc_rest_bind_copy(q, t);
    *span_us = to - from;
    return 0;
}

/* The range and the resolution ("auto" is the api schema's choice: raw up to a day, per minute
 * up to a week, per hour beyond), three parameters. */
static int tc_rest_bind_range(const tc_rest_call *call, size_t from_i, size_t to_i, size_t res_i,
                              tc_rest_sql *q, tc_rest_problem *pb)
{
    int64_t span = 0;

    if (tc_rest_bind_span(call, from_i, to_i, q, &span, pb))
        return pb->status;
    tc_rest_bind(q, call->vals[res_i].present ? call->vals[res_i].text : "auto");
    return 0;
}

/* ---- parameters ---- */

#define P_LIMIT                                                                                    \
    {                                                                                              \
        "limit", TC_RP_INT, 0, 1, TC_REST_PAGE_MAX, NULL, "rows of a JSON page (default 1000)"     \
    }
#define P_CURSOR                                                                                   \
    {                                                                                              \
        "cursor", TC_RP_CURSOR, 0, 0, 0, NULL, "the `next` of the previous page, as it was given"  \
    }
#define P_FORMAT                                                                                   \
    {                                                                                              \
        "format", TC_RP_ENUM, 0, 0, 0, TC_REST_FORMATS,                                            \
            "response format (else the Accept header; JSON by default)"                            \
    }
#define P_FROM                                                                                     \
    {                                                                                              \
        "from", TC_RP_TIME, 0, 0, 0, NULL, "start of the range, RFC 3339 (default: to - 24 h)"     \
    }
#define P_TO                                                                                       \
    {                                                                                              \
        "to", TC_RP_TIME, 0, 0, 0, NULL, "end of the range, exclusive (default: now)"              \
    }
#define P_RES                                                                                      \
    {                                                                                              \
        "resolution", TC_RP_ENUM, 0, 0, 0, TC_REST_RESOLUTIONS,                                    \
            "raw readings, per minute or per hour (auto: by the range's length)"                   \
    }
#define P_TAG                                                                                      \
    {                                                                                              \
        "tag", TC_RP_TAG, 0, 0, 0, NULL, "devices with this tag, KEY:VALUE"                        \
    }
#define P_GLOB                                                                                     \
    {                                                                                              \
        "glob", TC_RP_STRING, 0, 0, 60, NULL, "device ids matching this glob (* and ?)"            \
    }

static const tc_rest_param_def tc_p_none[1] = {{"-", TC_RP_STRING, 0, 0, 0, NULL, NULL}};
static const tc_rest_param_def tc_p_devices[] = {P_TAG, P_GLOB, P_LIMIT, P_CURSOR, P_FORMAT};
static const tc_rest_param_def tc_p_readings[] = {P_FROM, P_TO, P_RES, P_LIMIT, P_CURSOR, P_FORMAT};
static const tc_rest_param_def tc_p_fleet[] = {
    {"tag", TC_RP_STRING, 1, 0, 63, NULL, "the tag whose values group the devices (site, ...)"},
    {"value", TC_RP_STRING, 0, 0, 200, NULL, "only the fleet with this value of the tag"},
    P_FROM,
    P_TO,
    {"resolution", TC_RP_ENUM, 0, 0, 0, "auto|1m|1h",
     "per minute or per hour (auto: per minute up to 7 days)"},
    P_LIMIT,
    P_CURSOR,
    P_FORMAT};
static const tc_rest_param_def tc_p_dead[] = {
    {"reason", TC_RP_STRING, 0, 0, 64, NULL, "only dead letters refused for this reason"},
    P_LIMIT,
    P_CURSOR,
    P_FORMAT};
static const tc_rest_param_def tc_p_redrive[] = {
    {"ids", TC_RP_IDS, 1, 0, TC_REST_REDRIVE_MAX, NULL,
     "ids of the dead letters to send back to the topic, comma separated"}};
static const tc_rest_param_def tc_p_range[] = {
    {"device_id", TC_RP_STRING, 0, 0, 256, NULL, "only this device"},
    P_FROM,
    P_TO,
    P_LIMIT,
    P_CURSOR,
    P_FORMAT};

/* ---- statements ---- */

/* tag, glob, the cursor's device and the limit: the filters of /v1/devices and /v1/latest. */
static int tc_rest_bind_devices(const tc_rest_call *c, tc_rest_sql *q, tc_rest_problem *pb)
{
    tc_rest_bind_tag(q, &c->vals[0]);
    if (tc_rest_bind_glob(q, &c->vals[1], pb))
        return pb->status;
    tc_rest_bind(q, c->after);
    tc_rest_bind_limit(q, c->limit);
    return 0;
}

static int tc_b_devices(const tc_rest_call *c, tc_rest_sql *q, tc_rest_problem *pb)
{
    q->text = "SELECT * FROM devices WHERE ($1::text IS NULL OR tags ->> $1 = $2)"
              " AND ($3::text IS NULL OR device_id LIKE $3)"
              " AND ($4::text IS NULL OR device_id > $4) ORDER BY device_id LIMIT $5";
    return tc_rest_bind_devices(c, q, pb);
}

static int tc_b_latest_all(const tc_rest_call *c, tc_rest_sql *q, tc_rest_problem *pb)
{
    q->text = "SELECT * FROM latest WHERE ($1::text IS NULL OR tags ->> $1 = $2)"
              " AND ($3::text IS NULL OR device_id LIKE $3)"
              " AND ($4::text IS NULL OR device_id > $4) ORDER BY device_id LIMIT $5";
    /* The view reads latest_state alone (and the caller's claims, in the coalescing key). */
    q->version_of = "latest_state";
    return tc_rest_bind_devices(c, q, pb);
}

static int tc_b_device(const tc_rest_call *c, tc_rest_sql *q, tc_rest_problem *pb)
{
    (void)pb;
    q->text = "SELECT * FROM devices WHERE device_id = $1";
    tc_rest_bind(q, c->path_params[0]);
    return 0;
}

static int tc_b_latest(const tc_rest_call *c, tc_rest_sql *q, tc_rest_problem *pb)
{
    (void)pb;
    q->text = "SELECT * FROM latest WHERE device_id = $1";
    tc_rest_bind(q, c->path_params[0]);
    return 0;
}

static int tc_b_readings(const tc_rest_call *c, tc_rest_sql *q, tc_rest_problem *pb)
{
    q->text = "SELECT * FROM readings($1, to_timestamp($2::double precision),"
              " to_timestamp($3::double precision), $4) r"
              " WHERE ($5::timestamptz IS NULL OR r.time > $5) ORDER BY r.time LIMIT $6";
    /* Planned once per connection: its planning (every resolution over every daily partition)
     * cost more than a day's raw rows. */
    q->prepared = 1;
    tc_rest_bind(q, c->path_params[0]);
    if (tc_rest_bind_range(c, 0, 1, 2, q, pb))
        return pb->status;
    tc_rest_bind(q, c->after);
    tc_rest_bind_limit(q, c->limit);
    return 0;
}

int tc_rest_routes_warm_sql(int64_t now_us, tc_rest_sql *q)
{
    static const tc_rest_param_val none[TC_REST_PARAMS_MAX];
    tc_rest_call call = {.path_params = {""}, .vals = none, .now_us = now_us};
    tc_rest_problem pb;

    memset(q, 0, sizeof(*q));
    return tc_b_readings(&call, q, &pb);
}

static int tc_b_fleet(const tc_rest_call *c, tc_rest_sql *q, tc_rest_problem *pb)
{
    /* value goes into fleet(), which then reads only those devices' rollups. */
    q->text = "SELECT * FROM fleet($1, to_timestamp($2::double precision),"
              " to_timestamp($3::double precision), $4, $5) f"
              " WHERE ($6::timestamptz IS NULL OR (f.bucket, f.tag_value) > ($6, $7))"
              " ORDER BY f.bucket, f.tag_value LIMIT $8";
    tc_rest_bind(q, tc_rest_val(c, 0));
    if (tc_rest_bind_range(c, 2, 3, 4, q, pb))
        return pb->status;
    tc_rest_bind(q, tc_rest_val(c, 1));
    tc_rest_bind(q, c->after);
    tc_rest_bind(q, c->after2);
    tc_rest_bind_limit(q, c->limit);
    return 0;
}

static int tc_b_dead(const tc_rest_call *c, tc_rest_sql *q, tc_rest_problem *pb)
{
    (void)pb;
    q->text = "SELECT * FROM dead_letters WHERE ($1::text IS NULL OR reason = $1)"
              " AND ($2::bigint IS NULL OR id > $2) ORDER BY id LIMIT $3";
    tc_rest_bind(q, tc_rest_val(c, 0));
    tc_rest_bind(q, c->after);
    tc_rest_bind_limit(q, c->limit);
    return 0;
}

static int tc_b_redrive(const tc_rest_call *c, tc_rest_sql *q, tc_rest_problem *pb)
{
    (void)pb;
    q->text = "SELECT id FROM dead_letters WHERE id = ANY (string_to_array($1, ',')::bigint[])"
              " ORDER BY id";
    tc_rest_bind(q, c->vals[0].text);
    return 0;
}

/* device_id, from, to, the cursor's one or two parts and the limit: /v1/quality, /v1/anomalies. */
static int tc_rest_bind_device_span(const tc_rest_call *c, int two_keys, tc_rest_sql *q,
                                    tc_rest_problem *pb)
{
    int64_t span = 0;

    tc_rest_bind(q, tc_rest_val(c, 0));
    if (tc_rest_bind_span(c, 1, 2, q, &span, pb))
        return pb->status;
    tc_rest_bind(q, c->after);
    if (two_keys)
        tc_rest_bind(q, c->after2);
    tc_rest_bind_limit(q, c->limit);
    return 0;
}

static int tc_b_quality(const tc_rest_call *c, tc_rest_sql *q, tc_rest_problem *pb)
{
    q->text = "SELECT * FROM quality WHERE ($1::text IS NULL OR device_id = $1)"
              " AND bucket >= to_timestamp($2::double precision)"
              " AND bucket < to_timestamp($3::double precision)"
              " AND ($4::timestamptz IS NULL OR (bucket, device_id) > ($4, $5))"
              " ORDER BY bucket, device_id LIMIT $6";
    return tc_rest_bind_device_span(c, 1, q, pb);
}

static int tc_b_anomalies(const tc_rest_call *c, tc_rest_sql *q, tc_rest_problem *pb)
{
    q->text = "SELECT * FROM anomalies WHERE ($1::text IS NULL OR device_id = $1)"
              " AND start_time >= to_timestamp($2::double precision)"
              " AND start_time < to_timestamp($3::double precision)"
              " AND ($4::bigint IS NULL OR id > $4) ORDER BY id LIMIT $5";
    return tc_rest_bind_device_span(c, 0, q, pb);
}

#define N(a) (sizeof(a) / sizeof(a[0]))

const tc_rest_route tc_rest_routes[] = {
    {"GET", "/v1/openapi.json", "openapi", "this document", TC_RK_DOC, TC_ROLE_VIEWER, tc_p_none, 0,
     0, NULL, NULL, NULL},
    {"GET", "/v1/devices", "listDevices", "devices, with tags, first and last seen", TC_RK_LIST,
     TC_ROLE_VIEWER, tc_p_devices, N(tc_p_devices), 1, "device_id", NULL, tc_b_devices},
    {"GET", "/v1/devices/{device_id}", "getDevice", "one device", TC_RK_ONE, TC_ROLE_VIEWER,
     tc_p_none, 0, 0, NULL, NULL, tc_b_device},
    {"GET", "/v1/devices/{device_id}/latest", "getLatest", "a device's latest reading", TC_RK_ONE,
     TC_ROLE_VIEWER, tc_p_none, 0, 0, NULL, NULL, tc_b_latest},
    {"GET", "/v1/devices/{device_id}/readings", "getReadings",
     "a device's readings over a range, raw or downsampled", TC_RK_LIST, TC_ROLE_VIEWER,
     tc_p_readings, N(tc_p_readings), 1, "time", NULL, tc_b_readings},
    {"GET", "/v1/latest", "listLatest", "the latest reading of every device", TC_RK_LIST,
     TC_ROLE_VIEWER, tc_p_devices, N(tc_p_devices), 1, "device_id", NULL, tc_b_latest_all},
    {"GET", "/v1/fleet", "getFleet", "aggregates of the devices grouped by a tag, per bucket",
     TC_RK_LIST, TC_ROLE_VIEWER, tc_p_fleet, N(tc_p_fleet), 1, "bucket", "tag_value", tc_b_fleet},
    {"GET", "/v1/dead-letters", "listDeadLetters", "refused readings and why (operator)",
     TC_RK_LIST, TC_ROLE_VIEWER, tc_p_dead, N(tc_p_dead), 1, "id", NULL, tc_b_dead},
    {"POST", "/v1/dead-letters/redrive", "redriveDeadLetters",
     "send dead letters back to the topic (operator)", TC_RK_ACTION, TC_ROLE_OPERATOR, tc_p_redrive,
     N(tc_p_redrive), 0, NULL, NULL, tc_b_redrive},
    {"GET", "/v1/quality", "getQuality", "data-quality figures per device and minute", TC_RK_LIST,
     TC_ROLE_VIEWER, tc_p_range, N(tc_p_range), 1, "bucket", "device_id", tc_b_quality},
    {"GET", "/v1/anomalies", "listAnomalies", "anomalies the quality monitor found", TC_RK_LIST,
     TC_ROLE_VIEWER, tc_p_range, N(tc_p_range), 1, "id", NULL, tc_b_anomalies},
};
const size_t tc_rest_nroutes = N(tc_rest_routes);
