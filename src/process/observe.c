/*
 * observe.c -- health, readiness and metrics endpoints; see observe.h.
 */
#include "process/observe.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/http.h"

/* The metrics page is a few dozen lines. */
#define TC_METRICS_MAX 4096

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

static void tc_observe_readyz(void *ctx, const tc_http_request *req, tc_http_response *resp)
{
    tc_observe_status st;
    char body[TC_OBSERVE_REASON_MAX + 64];
    int n;

    (void)req;
    tc_observe_snapshot(ctx, &st);
    if (st.store_ok && st.consuming) {
        n = snprintf(body, sizeof(body), "{\"status\":\"ready\",\"partitions\":%llu}",
                     (unsigned long long)st.partitions);
        tc_http_respond(resp, 200, TC_HTTP_JSON, body, (size_t)n);
        return;
    }
    /* The reason is ours (no quotes or controls), so it needs no JSON escaping. */
    n = snprintf(body, sizeof(body), "{\"status\":\"not ready\",\"reason\":\"%s\"}", st.reason);
    tc_http_respond(resp, 503, TC_HTTP_JSON, body, (size_t)n < sizeof(body) ? (size_t)n : 0);
}

static void tc_observe_metrics(void *ctx, const tc_http_request *req, tc_http_response *resp)
{
    tc_observe_status st;
    char *body = malloc(TC_METRICS_MAX);
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
        st.store_ok && st.consuming, (double)st.last_commit_us / 1e6);
    if (n < 0 || n >= TC_METRICS_MAX) {
        free(body);
        tc_http_respond_error(resp, 500, NULL, 500, "metrics page too long");
        return;
    }
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
