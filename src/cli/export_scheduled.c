/*
 * export_scheduled.c -- the loop of `thermocline export --scheduled`; see export_scheduled.h.
 *
 * One thread runs the passes (the time-zone computations set TZ, see export/schedule.h); the
 * HTTP server's thread only reads the counters under their lock. A failed period is logged,
 * counted and tried again at the next pass: its directory was never swapped in, so the period is
 * still missing (or still the previous whole export) until it succeeds.
 */
#include "cli/export_scheduled.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/http.h"
#include "cli/cli.h"
#include "core/json.h"
#include "core/log.h"
#include "core/timeutil.h"
#include "export/scheduled.h"

/* The metrics page: a few lines per export. */
#define TC_EXPORT_METRICS_PAGE_MAX ((size_t)64 << 10)

typedef struct tc_export_service {
    tc_export_spec *specs;
    size_t n;
    tc_export_sched_stats stats[TC_EXPORT_SPECS_MAX];
    pthread_mutex_t lock;
} tc_export_service;

tc_mask_level tc_export_viewer_level(const tc_config *cfg)
{
    return !strcmp(cfg->api_personal_viewer, "hide") ? TC_MASK_HIDDEN : TC_MASK_COARSE;
}

/* One family: HELP, TYPE and a sample per export. */
static void tc_export_family(tc_jbuf *b, const tc_export_service *s, const char *name,
                             const char *type, const char *help, int which)
{
    char line[512];

    snprintf(line, sizeof(line), "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
    tc_jbuf_append(b, line, strlen(line));
    for (size_t i = 0; i < s->n; i++) {
        const tc_export_sched_stats *st = &s->stats[i];
        double v = which == 0   ? (double)st->exports
                   : which == 1 ? (double)st->late_reexports
                   : which == 2 ? (double)st->failures
                   : which == 3 ? (double)st->rows
                   : which == 4 ? (double)st->last_success_us / 1e6
                                : (double)st->last_period_end_us / 1e6;
        snprintf(line, sizeof(line), "%s{export=\"%s\"} %.17g\n", name, s->specs[i].name, v);
        tc_jbuf_append(b, line, strlen(line));
    }
}

static void tc_export_metrics(void *ctx, const tc_http_request *req, tc_http_response *resp)
{
    tc_export_service *s = ctx;
    tc_jbuf b;
    char *body;
    size_t len;

    (void)req;
    tc_jbuf_init(&b, TC_EXPORT_METRICS_PAGE_MAX);
    pthread_mutex_lock(&s->lock);
    tc_export_family(&b, s, "thermocline_export_periods_total", "counter",
                     "Periods exported whole (re-exports included).", 0);
    tc_export_family(&b, s, "thermocline_export_late_reexports_total", "counter",
                     "Closed periods exported again because their lake files changed.", 1);
    tc_export_family(&b, s, "thermocline_export_failures_total", "counter",
                     "Period exports that failed (retried at the next pass).", 2);
    tc_export_family(&b, s, "thermocline_export_rows_total", "counter",
                     "Rows written by the exports.", 3);
    tc_export_family(&b, s, "thermocline_export_last_success_timestamp_seconds", "gauge",
                     "When the export last finished a period (0: never).", 4);
    tc_export_family(&b, s, "thermocline_export_last_period_end_timestamp_seconds", "gauge",
                     "End of the latest period exported whole (0: none).", 5);
    pthread_mutex_unlock(&s->lock);
    body = tc_jbuf_take(&b, &len);
    tc_jbuf_free(&b);
    if (!body) {
        tc_http_respond_error(resp, 500, NULL, 500, "metrics page too long");
        return;
    }
    tc_http_respond_owned(resp, 200, "text/plain; version=0.0.4", body, len);
}

int tc_export_scheduled_main(const tc_config *cfg, int once, const char *listen, int64_t now_us)
{
    static tc_export_service s; /* 64 specs of ~10 KiB: not on the stack */
    tc_export_sched_env env = {.lake_dir = cfg->lake_dir,
                               .personal_columns = cfg->api_personal_columns,
                               .personal_digits = (int)cfg->api_personal_digits,
                               .viewer_level = tc_export_viewer_level(cfg)};
    tc_http_server *http = NULL;
    char errstr[1024];
    int failures = 0;

    s.specs = calloc(TC_EXPORT_SPECS_MAX, sizeof(*s.specs));
    if (!s.specs) {
        fprintf(stderr, "thermocline export: out of memory\n");
        return TC_EXIT_FAILURE;
    }
    if (tc_export_specs_parse(cfg->export_schedules, s.specs, TC_EXPORT_SPECS_MAX, &s.n, errstr,
                              sizeof(errstr)) != TC_OK) {
        fprintf(stderr, "thermocline export: %s\n", errstr);
        free(s.specs);
        return TC_EXIT_USAGE;
    }
    if (s.n == 0) {
        fprintf(stderr, "thermocline export: export.schedules names no export (docs/exports.md)\n");
        free(s.specs);
        return TC_EXIT_USAGE;
    }
    pthread_mutex_init(&s.lock, NULL);
    tc_cli_install_signals();
    if (!listen)
        listen = cfg->export_listen;
    if (listen && *listen) {
        http = tc_http_server_new(listen, &(tc_http_options){.threads = 1}, errstr, sizeof(errstr));
        if (!http || tc_http_route(http, "GET", "/metrics", tc_export_metrics, &s) != TC_OK ||
            tc_http_server_start(http, errstr, sizeof(errstr)) != TC_OK) {
            fprintf(stderr, "thermocline export: --listen %s: %s\n", listen, errstr);
            if (http)
                tc_http_server_destroy(http);
            pthread_mutex_destroy(&s.lock);
            free(s.specs);
            return TC_EXIT_FAILURE;
        }
        fprintf(stderr, "thermocline export: /metrics on port %u\n", tc_http_server_port(http));
    }
    tc_log_info("export", "scheduled exports: %zu, checked every %" PRId64 " s", s.n,
                cfg->export_check_interval_s);
    while (!tc_cli_stop) {
        int64_t now = once && now_us ? now_us : tc_time_now_us();
        int64_t next = tc_time_now_us() + cfg->export_check_interval_s * TC_USEC_PER_SEC;
        failures = 0;
        for (size_t i = 0; i < s.n && !tc_cli_stop; i++)
            failures += tc_export_sched_pass(&env, &s.specs[i], now / TC_USEC_PER_SEC, &s.stats[i],
                                             &s.lock);
        if (once)
            break;
        while (!tc_cli_stop && tc_time_now_us() < next)
            nanosleep(&(struct timespec){.tv_nsec = 100 * 1000 * 1000}, NULL);
    }
    if (http)
        tc_http_server_destroy(http);
    pthread_mutex_destroy(&s.lock);
    free(s.specs);
    return once && failures ? TC_EXIT_FAILURE : 0;
}
