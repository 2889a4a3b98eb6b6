/*
 * observe.c -- health, readiness and metrics endpoints; see observe.h.
 */
#include "process/observe.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/http.h"
#include "core/json.h"
#include "quality/sink.h"

/* The metrics page is a few dozen lines, and six per sink. */
#define TC_METRICS_MAX 16384
/* /readyz's body: the reason and each sink's state. */
#define TC_READYZ_MAX (TC_OBSERVE_REASON_MAX + 128 + TC_OBSERVE_SINKS_MAX * 48)

struct tc_observe {
    tc_http_server *http;
    pthread_mutex_t lock;
    tc_observe_status st;
};

static void tc_observe_snapshot(tc_observe *o, tc_observe_status *out)
{
    pthread_mutex_lock(&o->lock);
    *out = o->st;
    pthread_mutex_unlock(&o->lock);
}

static void tc_observe_healthz(void *ctx, const tc_http_request *req, tc_http_response *resp)
{
    (void)ctx;
    (void)req;
    tc_http_respond(resp, 200, TC_HTTP_JSON, "{\"status\":\"ok\"}", 15);
}

static int tc_observe_ready(const tc_observe_status *st)
{
    for (size_t i = 0; i < st->nsinks; i++) {
        if (!st->sinks[i].ready)
            return 0;
    }
    return st->store_ok && st->consuming;
}

/* ,"sinks":{"store":true,...} into body at n (names are ours: no escaping). */
static int tc_observe_sinks_json(const tc_observe_status *st, char *body, size_t size, int n)
{
    n += snprintf(body + n, size - (size_t)n, ",\"sinks\":{");
    for (size_t i = 0; i < st->nsinks && (size_t)n < size; i++)
        n += snprintf(body + n, size - (size_t)n, "%s\"%s\":%s", i ? "," : "", st->sinks[i].name,
                      st->sinks[i].ready ? "true" : "false");
    if ((size_t)n < size)
        n += snprintf(body + n, size - (size_t)n, "}}");
    return n;
}

static void tc_observe_readyz(void *ctx, const tc_http_request *req, tc_http_response *resp)
{
    tc_observe_status st;
    char body[TC_READYZ_MAX];
    int n;

    (void)req;
    tc_observe_snapshot(ctx, &st);
    if (tc_observe_ready(&st)) {
        n = snprintf(body, sizeof(body), "{\"status\":\"ready\",\"partitions\":%llu",
                     (unsigned long long)st.partitions);
        n = tc_observe_sinks_json(&st, body, sizeof(body), n);
        tc_http_respond(resp, 200, TC_HTTP_JSON, body, (size_t)n < sizeof(body) ? (size_t)n : 0);
        return;
    }
    /* The reason is ours (no quotes or controls), so it needs no JSON escaping. */
    n = snprintf(body, sizeof(body), "{\"status\":\"not ready\",\"reason\":\"%s\"", st.reason);
    n = tc_observe_sinks_json(&st, body, sizeof(body), n);
    tc_http_respond(resp, 503, TC_HTTP_JSON, body, (size_t)n < sizeof(body) ? (size_t)n : 0);
}

/* The per-sink families, appended to the page at n. */
static int tc_observe_sink_metrics(const tc_observe_status *st, char *body, int n)
{
    static const struct {
        const char *name, *type, *help;
    } fam[] = {
        {"thermocline_sink_ready", "gauge", "1 while the sink takes readings (circuit closed)."},
        {"thermocline_sink_rows_total", "counter", "Rows the sink took."},
        {"thermocline_sink_rows_durable_total", "counter", "Rows the sink made durable."},
        {"thermocline_sink_pending", "gauge", "Rows (or groups) the sink holds only in memory."},
        {"thermocline_sink_failures_total", "counter",
         "Failed calls of the sink (each opens or keeps open its circuit)."},
        {"thermocline_sink_recoveries_total", "counter", "Recoveries of the sink after a failure."},
    };

    for (size_t f = 0; f < sizeof(fam) / sizeof(fam[0]); f++) {
        n += snprintf(body + n, TC_METRICS_MAX - (size_t)n, "# HELP %s %s\n# TYPE %s %s\n",
                      fam[f].name, fam[f].help, fam[f].name, fam[f].type);
        for (size_t i = 0; i < st->nsinks && n < TC_METRICS_MAX; i++) {
            const tc_observe_sink *k = &st->sinks[i];
            const uint64_t v[] = {(uint64_t)k->ready, k->rows,     k->rows_durable,
                                  k->pending,         k->failures, k->recoveries};
            n += snprintf(body + n, TC_METRICS_MAX - (size_t)n, "%s{sink=\"%s\"} %llu\n",
                          fam[f].name, k->name, (unsigned long long)v[f]);
        }
        if (n >= TC_METRICS_MAX)
            return n;
    }
    return n;
}

static void tc_observe_metrics(void *ctx, const tc_http_request *req, tc_http_response *resp)
{
    tc_observe_status st;
    char *body = malloc(TC_METRICS_MAX);
    tc_jbuf quality;
    int n;

    (void)req;
    if (!body) {
        tc_http_respond_error(resp, 500, NULL, 500, "out of memory");
        return;
    }
    tc_observe_snapshot(ctx, &st);
    n = snprintf(
        body, TC_METRICS_MAX,
        "# HELP thermocline_readings_consumed_total Messages taken from Kafka.\n"
        "# TYPE thermocline_readings_consumed_total counter\n"
        "thermocline_readings_consumed_total %llu\n"
        "# HELP thermocline_readings_stored_total Readings committed to PostgreSQL.\n"
        "# TYPE thermocline_readings_stored_total counter\n"
        "thermocline_readings_stored_total %llu\n"
        "# HELP thermocline_dead_letters_total Refused readings committed as dead letters.\n"
        "# TYPE thermocline_dead_letters_total counter\n"
        "thermocline_dead_letters_total %llu\n"
        "# HELP thermocline_batches_total Transactions committed.\n"
        "# TYPE thermocline_batches_total counter\n"
        "thermocline_batches_total %llu\n"
        "# HELP thermocline_store_retries_total Batch writes retried after a retriable error.\n"
        "# TYPE thermocline_store_retries_total counter\n"
        "thermocline_store_retries_total %llu\n"
        "# HELP thermocline_batches_partition_cap_total Batches written early: a reading of one "
        "Kafka partition more than pipeline.partitions_per_batch.\n"
        "# TYPE thermocline_batches_partition_cap_total counter\n"
        "thermocline_batches_partition_cap_total %llu\n"
        "# HELP thermocline_fenced_writes_total Writes given up because another member had moved "
        "their partition on (it owns it now); the partitions resume from what is stored.\n"
        "# TYPE thermocline_fenced_writes_total counter\n"
        "thermocline_fenced_writes_total %llu\n"
        "# HELP thermocline_partitions_assigned Kafka partitions this process holds.\n"
        "# TYPE thermocline_partitions_assigned gauge\n"
        "thermocline_partitions_assigned %llu\n"
        "# HELP thermocline_ready 1 when /readyz answers 200.\n"
        "# TYPE thermocline_ready gauge\n"
        "thermocline_ready %d\n"
        "# HELP thermocline_last_commit_timestamp_seconds Wall time of the last committed batch.\n"
        "# TYPE thermocline_last_commit_timestamp_seconds gauge\n"
        "thermocline_last_commit_timestamp_seconds %.3f\n",
        (unsigned long long)st.stats.consumed, (unsigned long long)st.stats.stored,
        (unsigned long long)st.stats.dead_letters, (unsigned long long)st.stats.batches,
        (unsigned long long)st.stats.retries, (unsigned long long)st.stats.partition_flushes,
        (unsigned long long)st.stats.fenced, (unsigned long long)st.partitions,
        tc_observe_ready(&st), (double)st.last_commit_us / 1e6);
    if (n > 0 && n < TC_METRICS_MAX)
        n = tc_observe_sink_metrics(&st, body, n);
    if (n < 0 || n >= TC_METRICS_MAX) {
        free(body);
        tc_http_respond_error(resp, 500, NULL, 500, "metrics page too long");
        return;
    }
    /* The quality sink's fleet-level figures, when it runs (its own snapshot: quality/sink.h). */
    tc_jbuf_init(&quality, TC_METRICS_MAX);
    tc_quality_sink_render_metrics(&quality);
    if (quality.len && !tc_jbuf_failed(&quality)) {
        char *more = realloc(body, (size_t)n + quality.len + 1);
        if (more) {
            memcpy(more + n, quality.data, quality.len + 1);
            body = more;
            n += (int)quality.len;
        }
    }
    tc_jbuf_free(&quality);
    tc_http_respond_owned(resp, 200, "text/plain; version=0.0.4", body, (size_t)n);
}

/* The observer on listen_addr with opt's HTTP options (one thread unless they say more). */
static tc_observe *tc_observe_new_opt(const char *listen_addr, const tc_http_options *opt,
                                      char *errstr, size_t errstr_size);

tc_observe *tc_observe_new(const char *listen_addr, char *errstr, size_t errstr_size)
{
    /* One thread: these endpoints are cheap and scraped every few seconds. */
    return tc_observe_new_opt(listen_addr, &(tc_http_options){.threads = 1}, errstr, errstr_size);
}

tc_observe *tc_observe_new_config(const tc_config *cfg, char *errstr, size_t errstr_size)
{
    tc_http_options opt = {.threads = 1};

    tc_http_options_from_config(&opt, cfg);
    return tc_observe_new_opt(cfg->http_listen, &opt, errstr, errstr_size);
}

static tc_observe *tc_observe_new_opt(const char *listen_addr, const tc_http_options *opt,
                                      char *errstr, size_t errstr_size)
{
    tc_observe *o = calloc(1, sizeof(*o));

    if (!o) {
        tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&o->lock, NULL);
    snprintf(o->st.reason, sizeof(o->st.reason), "starting");
    o->http = tc_http_server_new(listen_addr, opt, errstr, errstr_size);
    if (!o->http || tc_http_route(o->http, "GET", "/healthz", tc_observe_healthz, o) != TC_OK ||
        tc_http_route(o->http, "GET", "/readyz", tc_observe_readyz, o) != TC_OK ||
        tc_http_route(o->http, "GET", "/metrics", tc_observe_metrics, o) != TC_OK ||
        tc_http_server_start(o->http, errstr, errstr_size) != TC_OK) {
        tc_observe_destroy(o);
        return NULL;
    }
    return o;
}

void tc_observe_publish(tc_observe *o, const tc_observe_status *st)
{
    pthread_mutex_lock(&o->lock);
    o->st = *st;
    pthread_mutex_unlock(&o->lock);
}

unsigned tc_observe_port(const tc_observe *o)
{
    return tc_http_server_port(o->http);
}

void tc_observe_destroy(tc_observe *o)
{
    if (!o)
        return;
    tc_http_server_destroy(o->http);
    pthread_mutex_destroy(&o->lock);
    free(o);
}
