/*
 * sink.c -- the quality sink; see sink.h. Everything with a state of its own is in monitor.c:
 * this file maps the sink interface's callbacks and marks onto it.
 */
#include "quality/sink.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alert/alert.h"
#include "core/log.h"
#include "core/timeutil.h"
#include "quality/alert_restore.h"
#include "quality/monitor.h"

/* SIGHUPs received (the handler's side) and the published /metrics snapshot (the HTTP side). */
static volatile sig_atomic_t tc_quality_sighups;
static pthread_mutex_t tc_quality_pub_lock = PTHREAD_MUTEX_INITIALIZER;
static tc_qmon_stats tc_quality_pub;
static int tc_quality_pub_live;

/* How long closing waits for the findings' alerts to reach the Alertmanagers. */
#define TC_QUALITY_ALERT_FLUSH_MS 5000

typedef struct tc_quality_sink {
    const tc_config *cfg; /* borrowed: outlives the sink */
    tc_qmon *mon;
    tc_alerter *alerter;  /* NULL: alerting.alertmanager_urls is empty */
    sig_atomic_t sighups; /* the last generation this sink reloaded at */
} tc_quality_sink;

/* A finding the monitor committed, pushed to Alertmanager (alert/alert.h): opened fires it,
 * resolved resolves it. One alert per finding's labels: a detector's finding is
 * ThermoclineQualityAnomaly (label detector: its kind), a rule's ThermoclineQualityRule (label
 * rule); device_id and metric label both. Called on the pipeline thread after the flush's commit,
 * so an alert never announces what a crash could take back; tc_alerter_* only queue. */
static void tc_quality_sink_alert(void *opaque, const tc_qmon_event *ev)
{
    tc_quality_sink *s = opaque;
    char summary[TC_ALERT_TEXT_MAX], desc[TC_ALERT_TEXT_MAX], errstr[TC_ERRSTR_MAX];
    tc_alert al = {
        .name = ev->rule ? "ThermoclineQualityRule" : "ThermoclineQualityAnomaly",
        .severity = ev->severity ? ev->severity : "warning",
        .device_id = ev->device,
        .metric = ev->metric,
        .rule = ev->rule,
        .detector = ev->rule ? NULL : ev->kind,
        .summary = summary,
        .description = desc,
        .runbook_url = ev->rule ? "docs/operations.md#alert-thermoclinequalityrule"
                                : "docs/operations.md#alert-thermoclinequalityanomaly",
    };
    tc_err err;

    snprintf(summary, sizeof(summary), "%s%s%s%s %s%s", ev->rule ? "rule " : "",
             ev->rule ? ev->rule : "", ev->rule ? ": " : "", ev->kind,
             ev->metric ? "on " : "of the device", ev->metric ? ev->metric : "");
    if (ev->observed == ev->observed && ev->expected == ev->expected) /* not NaN */
        snprintf(desc, sizeof(desc), "observed %.6g, expected %.6g (see quality anomalies)",
                 ev->observed, ev->expected);
    else
        snprintf(desc, sizeof(desc), "see thermocline quality anomalies --device %s", ev->device);
    err = ev->end_us ? tc_alerter_resolve(s->alerter, &al, errstr, sizeof(errstr))
                     : tc_alerter_fire(s->alerter, &al, errstr, sizeof(errstr));
    if (err != TC_OK) {
        tc_log_input in = {NULL, ev->partition, -1, ev->device, strlen(ev->device)};
        tc_log_in(TC_LOG_WARN, "quality", &in,
                  "the alert of a finding of device %s was not queued: %s", ev->device, errstr);
    }
}

void tc_quality_sink_sighup(void)
{
    tc_quality_sighups = tc_quality_sighups + 1;
}

void tc_quality_sink_render_metrics(tc_jbuf *b)
{
    tc_qmon_stats st;
    int live;

    pthread_mutex_lock(&tc_quality_pub_lock);
    st = tc_quality_pub;
    live = tc_quality_pub_live;
    pthread_mutex_unlock(&tc_quality_pub_lock);
    if (live)
        tc_qmon_render_metrics(&st, b);
}

static void tc_quality_sink_publish(tc_quality_sink *s)
{
    tc_qmon_stats st;

    tc_qmon_get_stats(s->mon, &st);
    pthread_mutex_lock(&tc_quality_pub_lock);
    tc_quality_pub = st;
    tc_quality_pub_live = 1;
    pthread_mutex_unlock(&tc_quality_pub_lock);
}

/* A SIGHUP since the last callback: parse the rules again (a refused file changes nothing). */
static void tc_quality_sink_reload(tc_quality_sink *s)
{
    char errstr[TC_ERRSTR_MAX];
    sig_atomic_t gen = tc_quality_sighups;

    if (gen == s->sighups)
        return;
    s->sighups = gen;
    if (tc_qmon_reload(s->mon, errstr, sizeof(errstr)) == TC_OK)
        tc_log_info("quality", "rules reloaded");
    else
        tc_log_error("quality", "rules not reloaded, the running ones stay in force: %s", errstr);
}

static void tc_quality_sink_marks(int64_t *next, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (next[i] == TC_QMON_MARK_ABSENT)
            next[i] = TC_SINK_MARK_NONE;
}

/* The findings of newly held partitions fire (or resolve) again: a restart does not leave them to
 * expire at Alertmanager (alert_restore.h). Those resolved within the 4 re-send intervals an
 * alert's endsAt reaches, plus one, are resolved. Best effort: alerts never stop the sink. */
static void tc_quality_sink_restore_alerts(tc_quality_sink *s, const int32_t *parts, size_t n)
{
    char errstr[TC_ERRSTR_MAX];
    size_t count = 0;

    if (!s->alerter)
        return;
    if (tc_quality_alert_restore(s->cfg->pg_dsn, s->cfg->pg_schema, parts, n,
                                 (int)(5 * s->cfg->alerting_resend_s),
                                 (size_t)s->cfg->alerting_queue_max, tc_quality_sink_alert, s,
                                 &count, errstr, sizeof(errstr)) != TC_OK)
        tc_log_warn("quality", "%s (the open findings' alerts expire at Alertmanager meanwhile)",
                    errstr);
    else if (count)
        tc_log_info("quality", "%zu findings of %zu partitions sent to Alertmanager again", count,
                    n);
}

static tc_err tc_quality_sink_open(void *ctx, const int32_t *parts, size_t n, int64_t *next,
                                   char *errstr, size_t errstr_size)
{
    tc_quality_sink *s = ctx;
    tc_err err = tc_qmon_open(s->mon, parts, n, next, errstr, errstr_size);

    if (err == TC_OK)
        tc_quality_sink_restore_alerts(s, parts, n);
    tc_quality_sink_marks(next, n);
    tc_quality_sink_publish(s);
    return err;
}

static tc_err tc_quality_sink_append(void *ctx, const tc_sink_rows *rows, char *errstr,
                                     size_t errstr_size)
{
    tc_quality_sink *s = ctx;

    (void)errstr;
    (void)errstr_size;
    tc_quality_sink_reload(s);
    /* The delay is measured to the wall clock: event times are wall-clock times too. */
    tc_qmon_add(s->mon, rows->batch, rows->mask, rows->dlq, rows->advance, rows->nadvance,
                tc_time_now_us());
    return TC_OK;
}

static tc_err tc_quality_sink_flush(void *ctx, int64_t now_us, int force, int *busy, char *errstr,
                                    size_t errstr_size)
{
    tc_quality_sink *s = ctx;
    tc_err err = TC_OK;

    (void)now_us;
    *busy = 0;
    tc_quality_sink_reload(s);
    /* The write runs on the monitor's writer thread: a flush only starts one, and reports *busy
     * until a later call sees it done (its marks move and its findings are alerted then). */
    if (tc_qmon_flush_poll(s->mon, 0, &err, errstr, errstr_size))
        *busy = 1;
    else if (err == TC_OK &&
             (force ? tc_qmon_pending(s->mon) : tc_qmon_due(s->mon, tc_time_now_us()))) {
        err = tc_qmon_flush_start(s->mon, errstr, errstr_size);
        *busy = err == TC_OK && tc_qmon_flushing(s->mon);
    }
    tc_quality_sink_publish(s);
    return err;
}

static int64_t tc_quality_sink_durable(void *ctx, int32_t partition)
{
    int64_t d = tc_qmon_durable(((tc_quality_sink *)ctx)->mon, partition);

    return d == TC_QMON_MARK_ABSENT ? TC_SINK_MARK_NONE : d;
}

/* What quality_offsets holds for a partition another member has (run --exit-when-idle): the
 * store may have the topic whole while the quality figures of a killed member's partitions are
 * still to be made. */
static int64_t tc_quality_sink_stored(void *ctx, int32_t partition)
{
    int64_t d = tc_qmon_stored(((tc_quality_sink *)ctx)->mon, partition);

    return d == TC_QMON_MARK_ABSENT ? TC_SINK_MARK_NONE : d;
}

static tc_err tc_quality_sink_recover(void *ctx, const int32_t *parts, size_t n, int64_t *next,
                                      char *errstr, size_t errstr_size)
{
    tc_quality_sink *s = ctx;

    tc_qmon_reset(s->mon);
    return tc_quality_sink_open(ctx, parts, n, next, errstr, errstr_size);
}

static tc_err tc_quality_sink_revoke(void *ctx, const int32_t *parts, size_t n, int commit,
                                     char *errstr, size_t errstr_size)
{
    (void)commit; /* flushed first when commit is set; either way the lanes go */
    (void)errstr;
    (void)errstr_size;
    tc_qmon_revoke(((tc_quality_sink *)ctx)->mon, parts, n);
    return TC_OK;
}

static void tc_quality_sink_stats(void *ctx, tc_sink_stats *out)
{
    tc_qmon_stats st;

    tc_qmon_get_stats(((tc_quality_sink *)ctx)->mon, &st);
    memset(out, 0, sizeof(*out));
    out->rows = st.readings;
    out->flushes = st.flushes;
    out->rows_durable = st.readings_durable;
    out->pending = st.readings - st.readings_durable;
}

/* The writer's thread and the alerter's: the rest of the sink's work is on the pipeline thread. */
static uint64_t tc_quality_sink_thread_cpu_ns(void *ctx)
{
    tc_quality_sink *s = ctx;

    return tc_qmon_writer_cpu_ns(s->mon) + tc_alerter_cpu_ns(s->alerter);
}

static void tc_quality_sink_close(void *ctx)
{
    tc_quality_sink *s = ctx;

    pthread_mutex_lock(&tc_quality_pub_lock);
    tc_quality_pub_live = 0;
    pthread_mutex_unlock(&tc_quality_pub_lock);
    tc_qmon_destroy(s->mon);
    if (s->alerter && tc_alerter_flush(s->alerter, TC_QUALITY_ALERT_FLUSH_MS))
        tc_log_warn("quality", "some findings' alerts did not reach every Alertmanager in %d ms",
                    TC_QUALITY_ALERT_FLUSH_MS);
    tc_alerter_destroy(s->alerter);
    free(s);
}

static const tc_sink_ops tc_quality_sink_ops = {
    .name = "quality",
    .open = tc_quality_sink_open,
    .append = tc_quality_sink_append,
    .flush = tc_quality_sink_flush,
    .durable = tc_quality_sink_durable,
    .recover = tc_quality_sink_recover,
    .revoke = tc_quality_sink_revoke,
    .stats = tc_quality_sink_stats,
    .close = tc_quality_sink_close,
    .stored = tc_quality_sink_stored,
    .thread_cpu_ns = tc_quality_sink_thread_cpu_ns,
};

tc_err tc_quality_sink_new(const tc_config *cfg, tc_sink *out, char *errstr, size_t errstr_size)
{
    tc_quality_sink *s = calloc(1, sizeof(*s));
    tc_qmon_options o;

    if (!s)
        return tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "quality sink: out of memory");
    tc_qmon_options_default(&o);
    s->cfg = cfg;
    o.dsn = cfg->pg_dsn;
    o.schema = cfg->pg_schema;
    o.group = cfg->kafka_group;
    o.topic = cfg->kafka_topic;
    o.rules_file = cfg->quality_rules_file;
    o.max_devices = (size_t)cfg->quality_max_devices;
    o.late_after_s = (double)cfg->quality_late_after_s;
    o.flush_interval_ms = cfg->quality_flush_interval_ms;
    o.tick_s = cfg->quality_tick_s;
    o.detect_location = cfg->quality_detect_location != 0;
    s->sighups = tc_quality_sighups;
    s->mon = tc_qmon_new(&o, errstr, errstr_size);
    if (s->mon && cfg->alerting_alertmanager_urls && *cfg->alerting_alertmanager_urls &&
        !(s->alerter = tc_alerter_new_from_config(cfg, errstr, errstr_size))) {
        tc_qmon_destroy(s->mon);
        s->mon = NULL;
    }
    if (!s->mon) {
        free(s);
        return TC_ERR_CONFIG;
    }
    if (s->alerter)
        tc_qmon_set_listener(s->mon, tc_quality_sink_alert, s);
    memset(out, 0, sizeof(*out));
    out->ops = &tc_quality_sink_ops;
    out->ctx = s;
    snprintf(out->name, sizeof(out->name), "%s", tc_quality_sink_ops.name);
    return TC_OK;
}
