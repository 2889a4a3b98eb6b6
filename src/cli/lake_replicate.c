/*
 * lake_replicate.c -- `thermocline lake replicate --to DIR`: one replication (lake/replicate.h), or
 * with --interval S a service that replicates every S seconds and serves the replica's lag on
 * /metrics (and /healthz) at --listen.
 *
 * Why a service of its own rather than a thread of `run`: the replica is another disk (another
 * region later), whose slowness or failure must never hold up ingestion, and a separate process can
 * be scheduled, restarted and monitored on its own
 * (deploy/systemd/thermocline-lake-replica.service). The lag is computed at each scrape from the
 * lake's progress files and the replica's state file, so it grows while a replication is stuck, not
 * only when one finishes.
 */
#include "cli/lake_replicate.h"

#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/http.h"
#include "cli/cli.h"
#include "core/timeutil.h"
#include "lake/replicate.h"

/* The metrics page: a dozen lines. */
#define TC_REPLICA_METRICS_MAX 2048

typedef struct tc_replica_service {
    const char *src, *dst;
    pthread_mutex_t lock;
    uint64_t runs, failures, files_copied, bytes_copied; /* since the service started */
} tc_replica_service;

static void tc_replica_metrics(void *ctx, const tc_http_request *req, tc_http_response *resp)
{
    tc_replica_service *s = ctx;
    tc_lake_replica_lag lag;
    char errstr[TC_ERRSTR_MAX], behind[32] = "NaN";
    char *body = malloc(TC_REPLICA_METRICS_MAX);
    int64_t now = tc_time_now_us();
    int have, n;

    (void)req;
    if (!body) {
        tc_http_respond_error(resp, 500, NULL, 500, "out of memory");
        return;
    }
    /* Before a first replication there is no lag to speak of: NaN, which Prometheus keeps. */
    have = tc_lake_replica_lag_of(s->src, s->dst, &lag, errstr, sizeof(errstr)) == TC_OK;
    if (have)
        snprintf(behind, sizeof(behind), "%" PRId64, lag.behind_offsets);
    pthread_mutex_lock(&s->lock);
    n = snprintf(
        body, TC_REPLICA_METRICS_MAX,
        "# HELP thermocline_lake_replica_behind_offsets Kafka offsets the lake's progress is ahead"
        " of the replica's, summed over partitions.\n"
        "# TYPE thermocline_lake_replica_behind_offsets gauge\n"
        "thermocline_lake_replica_behind_offsets %s\n"
        "# HELP thermocline_lake_replica_lag_seconds Age of the lake snapshot the replica holds.\n"
        "# TYPE thermocline_lake_replica_lag_seconds gauge\n"
        "thermocline_lake_replica_lag_seconds %.3f\n"
        "# HELP thermocline_lake_replica_last_success_timestamp_seconds When the last replication"
        " finished.\n"
        "# TYPE thermocline_lake_replica_last_success_timestamp_seconds gauge\n"
        "thermocline_lake_replica_last_success_timestamp_seconds %.3f\n"
        "# HELP thermocline_lake_replica_runs_total Replications started.\n"
        "# TYPE thermocline_lake_replica_runs_total counter\n"
        "thermocline_lake_replica_runs_total %" PRIu64 "\n"
        "# HELP thermocline_lake_replica_failures_total Replications that failed.\n"
        "# TYPE thermocline_lake_replica_failures_total counter\n"
        "thermocline_lake_replica_failures_total %" PRIu64 "\n"
        "# HELP thermocline_lake_replica_files_copied_total Files copied and verified.\n"
        "# TYPE thermocline_lake_replica_files_copied_total counter\n"
        "thermocline_lake_replica_files_copied_total %" PRIu64 "\n"
        "# HELP thermocline_lake_replica_bytes_copied_total Bytes copied and verified.\n"
        "# TYPE thermocline_lake_replica_bytes_copied_total counter\n"
        "thermocline_lake_replica_bytes_copied_total %" PRIu64 "\n",
        behind, have && lag.snapshot_us ? (double)(now - lag.snapshot_us) / 1e6 : NAN,
        have ? (double)lag.finished_us / 1e6 : 0.0, s->runs, s->failures, s->files_copied,
        s->bytes_copied);
    pthread_mutex_unlock(&s->lock);
    if (n < 0 || n >= TC_REPLICA_METRICS_MAX) {
        free(body);
        tc_http_respond_error(resp, 500, NULL, 500, "metrics page too long");
        return;
    }
    tc_http_respond_owned(resp, 200, "text/plain; version=0.0.4", body, (size_t)n);
}

static void tc_replica_healthz(void *ctx, const tc_http_request *req, tc_http_response *resp)
{
    (void)ctx;
    (void)req;
    tc_http_respond(resp, 200, TC_HTTP_JSON, "{\"status\":\"ok\"}", 15);
}

/* The bandwidth cap: after each file, sleep until the run's average is back under the cap. A
 * file is the unit (files are at most lake.roll_bytes), so the cap holds over a run, not each
 * second. */
typedef struct tc_replica_throttle {
    double bytes_per_us;
    int64_t start_us;
    uint64_t bytes;
} tc_replica_throttle;

static void tc_replica_throttle_copied(void *opaque, const char *relpath, uint64_t bytes)
{
    tc_replica_throttle *t = opaque;
    int64_t due;

    (void)relpath;
    t->bytes += bytes;
    due = t->start_us + (int64_t)((double)t->bytes / t->bytes_per_us);
    while (!tc_cli_stop && tc_time_now_us() < due)
        nanosleep(&(struct timespec){.tv_nsec = 10 * 1000 * 1000}, NULL);
}

static int tc_replica_once(tc_replica_service *s, const tc_lake_replicate_options *o)
{
    char errstr[TC_ERRSTR_MAX];
    tc_lake_replicate_result res;
    int64_t t0 = tc_time_now_us();
    tc_replica_throttle *t = o->opaque;
    tc_err err;

    if (t) {
        t->start_us = t0;
        t->bytes = 0;
    }
    err = tc_lake_replicate(s->src, s->dst, o, &res, errstr, sizeof(errstr));
    double secs = (double)(tc_time_now_us() - t0) / 1e6;

    pthread_mutex_lock(&s->lock);
    s->runs++;
    s->failures += err != TC_OK;
    s->files_copied += res.files_copied;
    s->bytes_copied += res.bytes_copied;
    pthread_mutex_unlock(&s->lock);
    if (err != TC_OK) {
        fprintf(stderr, "thermocline lake replicate: %s\n", errstr);
        return TC_EXIT_FAILURE;
    }
    printf("replicated %s -> %s: %" PRIu64 " files, %" PRIu64 " copied (%" PRIu64
           " bytes), %" PRIu64 " verified by checksum, %" PRIu64 " deleted, %" PRIu64
           " vanished, %" PRIu64 " progress files in %.3f s (%.1f MB/s, %.1f files/s)\n",
           s->src, s->dst, res.files_seen, res.files_copied, res.bytes_copied, res.files_verified,
           res.files_deleted, res.files_vanished, res.progress_files, secs,
           secs > 0 ? (double)res.bytes_copied / 1e6 / secs : 0.0,
           secs > 0 ? (double)res.files_copied / secs : 0.0);
    fflush(stdout);
    return 0;
}

int tc_lake_replicate_cli(const char *lake_dir, const tc_lake_replicate_cli_options *co)
{
    tc_replica_service s = {.src = lake_dir, .dst = co->to};
    tc_lake_replicate_options o = {.checksum_all = co->checksum, .stop = &tc_cli_stop};
    tc_replica_throttle throttle = {.bytes_per_us = co->max_mb_per_s};
    tc_http_server *http = NULL;
    char errstr[TC_ERRSTR_MAX];
    int rc = 0;

    pthread_mutex_init(&s.lock, NULL);
    tc_cli_install_signals();
    if (co->max_mb_per_s > 0) { /* MB/s is bytes per microsecond */
        o.on_copied = tc_replica_throttle_copied;
        o.opaque = &throttle;
    }
    if (co->interval_s <= 0) {
        rc = tc_replica_once(&s, &o);
        pthread_mutex_destroy(&s.lock);
        return rc;
    }
    if (co->listen && *co->listen) {
        http = tc_http_server_new(co->listen, &(tc_http_options){.threads = 1}, errstr,
                                  sizeof(errstr));
        if (!http || tc_http_route(http, "GET", "/metrics", tc_replica_metrics, &s) != TC_OK ||
            tc_http_route(http, "GET", "/healthz", tc_replica_healthz, &s) != TC_OK ||
            tc_http_server_start(http, errstr, sizeof(errstr)) != TC_OK) {
            fprintf(stderr, "thermocline lake replicate: --listen %s: %s\n", co->listen, errstr);
            if (http)
                tc_http_server_destroy(http);
            pthread_mutex_destroy(&s.lock);
            return TC_EXIT_FAILURE;
        }
        fprintf(stderr, "thermocline lake replicate: /metrics on port %u\n",
                tc_http_server_port(http));
    }
    /* A failed replication is logged and tried again at the next interval: the replica keeps its
     * last complete state meanwhile, and the lag on /metrics shows it. */
    while (!tc_cli_stop) {
        int64_t next = tc_time_now_us() + (int64_t)co->interval_s * 1000000;
        tc_replica_once(&s, &o);
        while (!tc_cli_stop && tc_time_now_us() < next)
            nanosleep(&(struct timespec){.tv_nsec = 100 * 1000 * 1000}, NULL);
    }
    if (http)
        tc_http_server_destroy(http);
    pthread_mutex_destroy(&s.lock);
    return 0;
}
