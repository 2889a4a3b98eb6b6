/*
 * observe.c -- health, readiness and metrics endpoints; see observe.h.
 *
 * The metrics page is written into a growing buffer capped at TC_METRICS_MAX. Histograms have
 * fixed bucket bounds (below): Prometheus sums them across processes, so every process must use
 * the same ones. The per-slot Kafka timestamps are plain arrays grown by doubling and kept between
 * batches (a slot is reused for every batch it carries), bounded by TC_OBSERVE_TS_MAX: a batch with
 * more messages observes only its first TC_OBSERVE_TS_MAX delays.
 */
#include "process/observe.h"

#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/http.h"
#include "core/log.h"
#include "core/reject.h"
#include "core/timeutil.h"
#include "process/observe_storage.h"
#include "quality/sink.h"

/* The metrics page: a few hundred lines (one per partition's lag, per table, per reason). */
#define TC_METRICS_MAX (1024 * 1024)
/* /readyz's body: the reason and each sink's state. */
#define TC_READYZ_MAX (TC_OBSERVE_REASON_MAX + 128 + TC_OBSERVE_SINKS_MAX * 48)
/* Slots (batches in flight) the observer tracks: the pipeline has writers + 1. */
#define TC_OBSERVE_SLOTS_MAX 64
/* Kafka timestamps kept per batch; later messages of a larger batch are not observed. */
#define TC_OBSERVE_TS_MAX (1 << 20)

/* End-to-end delay buckets, seconds: the SLA is a p99 under 1 s. */
static const double tc_delay_bounds[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                         1,     2.5,  5,     10,   30,  60,   300};
#define TC_DELAY_BUCKETS (sizeof(tc_delay_bounds) / sizeof(tc_delay_bounds[0]))
/* Batch size buckets, readings (stored + dead letters). */
static const double tc_batch_bounds[] = {1,    10,    100,   500,   1000,  2000,
                                         5000, 10000, 20000, 50000, 100000};
#define TC_BATCH_BUCKETS (sizeof(tc_batch_bounds) / sizeof(tc_batch_bounds[0]))

typedef struct tc_histogram {
    uint64_t counts[16]; /* per bucket, not cumulative; the last one is +Inf */
    uint64_t count;
    double sum;
} tc_histogram;

typedef struct tc_observe_slot {
    const void *slot;
    int64_t *ts_ms;
    size_t n, cap;
} tc_observe_slot;

struct tc_observe {
    const tc_config *cfg;
    tc_http_server *http;
    pthread_mutex_t lock;
    tc_observe_status st;
    tc_histogram delay, batch;
    uint64_t by_reason[TC_REJECT__COUNT];
    int64_t newest_ms; /* Kafka timestamp of the newest message committed (0: none yet) */
    /* pipeline thread only */
    tc_observe_slot slots[TC_OBSERVE_SLOTS_MAX];
    size_t nslots;
    int64_t not_ready_since_us; /* 0: ready */
    int not_ready_alert;        /* ThermoclineNotReady is firing */
    /* owned helpers */
    tc_storage_sampler *storage;
    tc_alerter *alerter;
};

static void tc_histogram_observe(tc_histogram *h, const double *bounds, size_t nb, double v)
{
    size_t i = 0;

    while (i < nb && v > bounds[i])
        i++;
    h->counts[i]++;
    h->count++;
    h->sum += v;
}

/* One series of a histogram: labels is "" or `sink="lake",` (with the comma). */
static void tc_histogram_series(tc_jbuf *b, const char *name, const char *labels,
                                const uint64_t *counts, uint64_t count, double sum,
                                const double *bounds, size_t nb)
{
    uint64_t cum = 0;
    const char *open = *labels ? "{" : "", *close = *labels ? "}" : "";
    char bare[TC_OBSERVE_SINK_NAME_MAX + 16];

    /* The _sum and _count lines take the labels without the trailing comma. */
    snprintf(bare, sizeof(bare), "%.*s", *labels ? (int)strlen(labels) - 1 : 0, labels);
    for (size_t i = 0; i < nb; i++) {
        cum += counts[i];
        tc_observe_printf(b, "%s_bucket{%sle=\"%g\"} %llu\n", name, labels, bounds[i],
                          (unsigned long long)cum);
    }
    tc_observe_printf(b, "%s_bucket{%sle=\"+Inf\"} %llu\n%s_sum%s%s%s %.6f\n%s_count%s%s%s %llu\n",
                      name, labels, (unsigned long long)count, name, open, bare, close, sum, name,
                      open, bare, close, (unsigned long long)count);
}

static void tc_histogram_write(tc_jbuf *b, const char *name, const char *help,
                               const tc_histogram *h, const double *bounds, size_t nb)
{
    tc_observe_printf(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    tc_histogram_series(b, name, "", h->counts, h->count, h->sum, bounds, nb);
}

/* ---- endpoints ---- */

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

/* The process' CPU, memory, start time and descriptors, the client libraries' standard names. */
static void tc_observe_write_process(tc_jbuf *b)
{
    char buf[1024], *p;
    FILE *f = fopen("/proc/self/stat", "r");
    unsigned long long utime = 0, stime = 0, start = 0, vsize = 0;
    long long rss = 0, btime = 0;
    long ticks = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
    size_t fds = 0;
    DIR *d;

    if (!f)
        return;
    p = fgets(buf, sizeof(buf), f) ? strrchr(buf, ')') : NULL; /* the name may hold spaces */
    fclose(f);
    /* After ") ": state(3) ... utime(14) stime(15) ... starttime(22) vsize(23) rss(24). */
    if (!p || sscanf(p + 2,
                     "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d %*d "
                     "%*d %llu %llu %lld",
                     &utime, &stime, &start, &vsize, &rss) != 5)
        return;
    if ((f = fopen("/proc/stat", "r"))) {
        while (fgets(buf, sizeof(buf), f))
            if (sscanf(buf, "btime %lld", &btime) == 1)
                break;
        fclose(f);
    }
    if ((d = opendir("/proc/self/fd"))) {
        while (readdir(d))
            fds++;
        closedir(d);
        fds = fds > 3 ? fds - 3 : 0; /* ".", ".." and the listing's own */
    }
    tc_observe_printf(b,
                      "# HELP process_cpu_seconds_total User and system CPU time spent, seconds.\n"
                      "# TYPE process_cpu_seconds_total counter\n"
                      "process_cpu_seconds_total %.2f\n"
                      "# HELP process_resident_memory_bytes Resident memory size.\n"
                      "# TYPE process_resident_memory_bytes gauge\n"
                      "process_resident_memory_bytes %lld\n"
                      "# HELP process_virtual_memory_bytes Virtual memory size.\n"
                      "# TYPE process_virtual_memory_bytes gauge\n"
                      "process_virtual_memory_bytes %llu\n"
                      "# HELP process_start_time_seconds Start time since the epoch.\n"
                      "# TYPE process_start_time_seconds gauge\n"
                      "process_start_time_seconds %.2f\n"
                      "# HELP process_open_fds Open file descriptors.\n"
                      "# TYPE process_open_fds gauge\n"
                      "process_open_fds %zu\n",
                      (double)(utime + stime) / (double)ticks, rss * page, vsize,
                      (double)btime + (double)start / (double)ticks, fds);
}

static void tc_observe_write_alerter(tc_observe *o, tc_jbuf *b)
{
    tc_alerter_stats as;
    char url[32];

    if (!o->alerter)
        return;
    tc_alerter_get_stats(o->alerter, &as);
    tc_observe_printf(
        b,
        "# HELP thermocline_alerts_firing Alerts this process holds open at Alertmanager.\n"
        "# TYPE thermocline_alerts_firing gauge\n"
        "thermocline_alerts_firing %llu\n"
        "# HELP thermocline_alerts_held Alerts held (firing, or resolved and not yet delivered "
        "to every Alertmanager); at most alerting.queue_max.\n"
        "# TYPE thermocline_alerts_held gauge\n"
        "thermocline_alerts_held %llu\n"
        "# HELP thermocline_alert_posts_total POSTs to Alertmanagers, by result.\n"
        "# TYPE thermocline_alert_posts_total counter\n"
        "thermocline_alert_posts_total{result=\"ok\"} %llu\n"
        "thermocline_alert_posts_total{result=\"failed\"} %llu\n"
        "# HELP thermocline_alerts_dropped_total Alerts lost to the alerting.queue_max cap: "
        "resolutions evicted undelivered, or new alerts refused.\n"
        "# TYPE thermocline_alerts_dropped_total counter\n"
        "thermocline_alerts_dropped_total{kind=\"resolved\"} %llu\n"
        "thermocline_alerts_dropped_total{kind=\"firing\"} %llu\n"
        "# HELP thermocline_alertmanager_up 1 when the last POST to this Alertmanager was "
        "accepted.\n"
        "# TYPE thermocline_alertmanager_up gauge\n",
        (unsigned long long)as.firing, (unsigned long long)as.held, (unsigned long long)as.posts_ok,
        (unsigned long long)as.posts_failed, (unsigned long long)as.dropped_resolved,
        (unsigned long long)as.dropped_firing);
    for (size_t u = 0; u < as.nurls; u++) {
        snprintf(url, sizeof(url), "%zu", u);
        tc_observe_printf(b, "thermocline_alertmanager_up{index=\"%s\"} %llu\n", url,
                          (unsigned long long)as.urls_up[u]);
    }
}

/* The per-sink families (label sink="..."). */
static void tc_observe_write_sinks(tc_jbuf *b, const tc_observe_status *st)
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
        tc_observe_printf(b, "# HELP %s %s\n# TYPE %s %s\n", fam[f].name, fam[f].help, fam[f].name,
                          fam[f].type);
        for (size_t i = 0; i < st->nsinks; i++) {
            const tc_observe_sink *k = &st->sinks[i];
            const uint64_t v[] = {(uint64_t)k->ready, k->rows,     k->rows_durable,
                                  k->pending,         k->failures, k->recoveries};
            tc_observe_printf(b, "%s{sink=\"%s\"} %llu\n", fam[f].name, k->name,
                              (unsigned long long)v[f]);
        }
    }
    /* The sink set's sinks: the CPU each has cost (sinkset.h, tc_sinkset_status.cpu_ns). */
    tc_observe_printf(b, "# HELP thermocline_sink_cpu_seconds_total CPU time the sink has used: "
                         "the pipeline thread's in its calls and its own threads'.\n"
                         "# TYPE thermocline_sink_cpu_seconds_total counter\n");
    for (size_t i = 0; i < st->nsinks; i++) {
        const tc_observe_sink *k = &st->sinks[i];
        if (k->cpu_measured)
            tc_observe_printf(b, "thermocline_sink_cpu_seconds_total{sink=\"%s\"} %.6f\n", k->name,
                              (double)k->cpu_ns / 1e9);
    }
    /* Sinks driven through the sink set, once they have committed (sinkset.h). */
    tc_observe_printf(b, "# HELP thermocline_sink_commit_duration_seconds From a sink's flush to "
                         "its rows being durable, per write.\n"
                         "# TYPE thermocline_sink_commit_duration_seconds histogram\n");
    for (size_t i = 0; i < st->nsinks; i++) {
        const tc_observe_sink *k = &st->sinks[i];
        char labels[TC_OBSERVE_SINK_NAME_MAX + 16];
        if (!k->commit.count)
            continue;
        snprintf(labels, sizeof(labels), "sink=\"%s\",", k->name);
        tc_histogram_series(b, "thermocline_sink_commit_duration_seconds", labels, k->commit.counts,
                            k->commit.count, k->commit.sum, tc_sinkset_latency_bounds,
                            TC_SINKSET_LATENCY_BUCKETS);
    }
}

static void tc_observe_metrics(void *ctx, const tc_http_request *req, tc_http_response *resp)
{
    tc_observe *o = ctx;
    tc_observe_status st;
    tc_histogram delay, batch;
    uint64_t by_reason[TC_REJECT__COUNT];
    int64_t newest_ms;
    tc_jbuf b;
    char *body;
    size_t len = 0;

    (void)req;
    pthread_mutex_lock(&o->lock);
    st = o->st;
    delay = o->delay;
    batch = o->batch;
    newest_ms = o->newest_ms;
    memcpy(by_reason, o->by_reason, sizeof(by_reason));
    pthread_mutex_unlock(&o->lock);
    tc_jbuf_init(&b, TC_METRICS_MAX);
    tc_observe_printf(
        &b,
        "# HELP thermocline_build_info Version of this process (always 1).\n"
        "# TYPE thermocline_build_info gauge\n"
        "thermocline_build_info{version=\"%s\"} 1\n"
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
        "thermocline_batches_total %llu\n",
        TC_VERSION, (unsigned long long)st.stats.consumed, (unsigned long long)st.stats.stored,
        (unsigned long long)st.stats.dead_letters, (unsigned long long)st.stats.batches);
    tc_observe_printf(
        &b,
        "# HELP thermocline_store_retries_total Batch writes retried after a retriable error.\n"
        "# TYPE thermocline_store_retries_total counter\n"
        "thermocline_store_retries_total %llu\n"
        "# HELP thermocline_batches_partition_cap_total Batches written early: a reading of one "
        "Kafka partition more than pipeline.partitions_per_batch.\n"
        "# TYPE thermocline_batches_partition_cap_total counter\n"
        "thermocline_batches_partition_cap_total %llu\n",
        (unsigned long long)st.stats.retries, (unsigned long long)st.stats.partition_flushes);
    tc_observe_printf(
        &b,
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
        (unsigned long long)st.stats.fenced, (unsigned long long)st.partitions,
        tc_observe_ready(&st), (double)st.last_commit_us / 1e6);
    /* Freshness of the fleet this process serves (label site: alerting.site), so that the rule can
     * take the newest over every member of a group: one member's quiet partitions are not a
     * stale fleet. The Kafka timestamp, not the device's clock: a device set in the future would
     * hide the others' silence. */
    tc_observe_printf(&b, "# HELP thermocline_newest_reading_timestamp_seconds Kafka timestamp of "
                          "the newest message committed (0: none yet).\n"
                          "# TYPE thermocline_newest_reading_timestamp_seconds gauge\n"
                          "thermocline_newest_reading_timestamp_seconds{site=\"");
    tc_observe_label(&b, o->cfg->alerting_site ? o->cfg->alerting_site : "");
    tc_observe_printf(&b, "\"} %.3f\n", (double)newest_ms / 1e3);
    tc_observe_printf(&b, "# HELP thermocline_dead_letters_by_reason_total Dead letters committed, "
                          "by reason code (docs/design.md).\n"
                          "# TYPE thermocline_dead_letters_by_reason_total counter\n");
    for (int r = 1; r < TC_REJECT__COUNT; r++)
        tc_observe_printf(&b, "thermocline_dead_letters_by_reason_total{reason=\"%s\"} %llu\n",
                          tc_reject_name((tc_reject)r), (unsigned long long)by_reason[r]);
    tc_observe_printf(&b,
                      "# HELP thermocline_dedupe_hits_total Resends of a reading already taken, "
                      "caught by the dedupe window.\n"
                      "# TYPE thermocline_dedupe_hits_total counter\n"
                      "thermocline_dedupe_hits_total %llu\n"
                      "# HELP thermocline_consumer_lag_messages Messages of a partition not "
                      "consumed yet (high watermark minus position).\n"
                      "# TYPE thermocline_consumer_lag_messages gauge\n",
                      (unsigned long long)by_reason[TC_REJECT_DUPLICATE]);
    for (size_t i = 0; i < st.nlag; i++)
        tc_observe_printf(&b, "thermocline_consumer_lag_messages{partition=\"%d\"} %lld\n",
                          st.lag_partition[i], (long long)st.lag[i]);
    tc_histogram_write(&b, "thermocline_end_to_end_delay_seconds",
                       "Delay from a message's Kafka timestamp to the commit of its batch to "
                       "PostgreSQL.",
                       &delay, tc_delay_bounds, TC_DELAY_BUCKETS);
    tc_histogram_write(&b, "thermocline_batch_readings",
                       "Readings of a committed batch (stored and dead letters).", &batch,
                       tc_batch_bounds, TC_BATCH_BUCKETS);
    tc_observe_write_process(&b);
    if (o->storage)
        tc_storage_sampler_write(o->storage, &b);
    tc_observe_write_alerter(o, &b);
    tc_observe_write_sinks(&b, &st);
    /* The quality sink's fleet-level figures, when it runs (its own snapshot: quality/sink.h). */
    tc_quality_sink_render_metrics(&b);
    body = tc_jbuf_take(&b, &len);
    tc_jbuf_free(&b);
    if (!body) {
        tc_http_respond_error(resp, 500, NULL, 500, "metrics page too long or out of memory");
        return;
    }
    tc_http_respond_owned(resp, 200, "text/plain; version=0.0.4", body, len);
}

/* ---- notes from the pipeline thread ---- */

static tc_observe_slot *tc_observe_slot_of(tc_observe *o, const void *slot, int add)
{
    for (size_t i = 0; i < o->nslots; i++)
        if (o->slots[i].slot == slot)
            return &o->slots[i];
    if (!add || o->nslots == TC_OBSERVE_SLOTS_MAX)
        return NULL;
    o->slots[o->nslots].slot = slot;
    return &o->slots[o->nslots++];
}

void tc_observe_note_message(tc_observe *o, const void *slot, int64_t ts_ms)
{
    tc_observe_slot *s;

    if (!o || ts_ms < 0 || !(s = tc_observe_slot_of(o, slot, 1)) || s->n >= TC_OBSERVE_TS_MAX)
        return;
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 1024;
        int64_t *ts = realloc(s->ts_ms, cap * sizeof(*ts));
        if (!ts)
            return; /* not observed: a metric is not worth failing the pipeline for */
        s->ts_ms = ts;
        s->cap = cap;
    }
    s->ts_ms[s->n++] = ts_ms;
}

void tc_observe_note_commit(tc_observe *o, const void *slot, size_t rows, const tc_dlq_batch *dlq)
{
    tc_observe_slot *s;
    double now_ms = (double)tc_time_now_us() / 1000.0;

    if (!o)
        return;
    s = tc_observe_slot_of(o, slot, 0);
    pthread_mutex_lock(&o->lock);
    for (size_t i = 0; s && i < s->n; i++) {
        double d = (now_ms - (double)s->ts_ms[i]) / 1000.0;
        if (s->ts_ms[i] > o->newest_ms)
            o->newest_ms = s->ts_ms[i];
        tc_histogram_observe(&o->delay, tc_delay_bounds, TC_DELAY_BUCKETS, d < 0 ? 0 : d);
    }
    tc_histogram_observe(&o->batch, tc_batch_bounds, TC_BATCH_BUCKETS,
                         (double)(rows + (dlq ? dlq->n : 0)));
    for (size_t i = 0; dlq && i < dlq->n; i++)
        if (dlq->items[i].reason > 0 && dlq->items[i].reason < TC_REJECT__COUNT)
            o->by_reason[dlq->items[i].reason]++;
    pthread_mutex_unlock(&o->lock);
    if (s)
        s->n = 0;
}

void tc_observe_note_discard(tc_observe *o, const void *slot)
{
    tc_observe_slot *s = o ? tc_observe_slot_of(o, slot, 0) : NULL;

    if (s)
        s->n = 0;
}

/* ---- the pipeline's own alert ---- */

static void tc_observe_alert_readiness(tc_observe *o, const tc_observe_status *st)
{
    int64_t now = tc_time_now_us(), after = o->cfg->alerting_not_ready_after_s * 1000000;
    char desc[TC_OBSERVE_REASON_MAX + 64], errstr[256];
    tc_alert al = {.name = "ThermoclineNotReady",
                   .severity = "critical",
                   .summary = "Thermocline has not been ready to ingest",
                   .description = desc,
                   .runbook_url = "docs/operations.md#alert-thermoclinenotready"};

    if (!o->alerter || after <= 0)
        return;
    if (tc_observe_ready(st)) {
        o->not_ready_since_us = 0;
        if (o->not_ready_alert &&
            tc_alerter_resolve(o->alerter, &al, errstr, sizeof(errstr)) == TC_OK)
            o->not_ready_alert = 0;
        desc[0] = '\0';
        return;
    }
    if (!o->not_ready_since_us)
        o->not_ready_since_us = now;
    if (o->not_ready_alert || now - o->not_ready_since_us < after)
        return;
    snprintf(desc, sizeof(desc), "not ready for %lld s: %s",
             (long long)((now - o->not_ready_since_us) / 1000000), st->reason);
    if (tc_alerter_fire(o->alerter, &al, errstr, sizeof(errstr)) == TC_OK)
        o->not_ready_alert = 1;
    else
        tc_log_warn("observe", "%s", errstr);
}

/* ---- lifetime ---- */

tc_observe *tc_observe_new(const tc_config *cfg, char *errstr, size_t errstr_size)
{
    tc_observe *o = calloc(1, sizeof(*o));
    /* One thread: these endpoints are cheap and scraped every few seconds. */
    tc_http_options opt = {.threads = 1};

    if (!o) {
        tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory");
        return NULL;
    }
    o->cfg = cfg;
    pthread_mutex_init(&o->lock, NULL);
    snprintf(o->st.reason, sizeof(o->st.reason), "starting");
    tc_http_options_from_config(&opt, cfg); /* TLS and limits (docs/security.md) */
    o->http = tc_http_server_new(cfg->http_listen, &opt, errstr, errstr_size);
    if (!o->http || tc_http_route(o->http, "GET", "/healthz", tc_observe_healthz, o) != TC_OK ||
        tc_http_route(o->http, "GET", "/readyz", tc_observe_readyz, o) != TC_OK ||
        tc_http_route(o->http, "GET", "/metrics", tc_observe_metrics, o) != TC_OK) {
        tc_observe_destroy(o);
        return NULL;
    }
    if (cfg->alerting_alertmanager_urls && *cfg->alerting_alertmanager_urls &&
        !(o->alerter = tc_alerter_new_from_config(cfg, errstr, errstr_size))) {
        tc_observe_destroy(o);
        return NULL;
    }
    if (!(o->storage = tc_storage_sampler_new(cfg, errstr, errstr_size))) {
        tc_observe_destroy(o);
        return NULL;
    }
    /* Last: the handlers read alerter and storage without the lock, so both are set before the
     * first request can arrive (a scrape racing the start was a data race under TSan). */
    if (tc_http_server_start(o->http, errstr, errstr_size) != TC_OK) {
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
    tc_observe_alert_readiness(o, st);
}

tc_alerter *tc_observe_alerter(tc_observe *o)
{
    return o ? o->alerter : NULL;
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
    tc_storage_sampler_destroy(o->storage);
    if (o->alerter) /* a resolution or last alert gets its chance to leave */
        tc_alerter_flush(o->alerter, 2000);
    tc_alerter_destroy(o->alerter);
    for (size_t i = 0; i < o->nslots; i++)
        free(o->slots[i].ts_ms);
    pthread_mutex_destroy(&o->lock);
    free(o);
}
