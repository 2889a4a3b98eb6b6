/*
 * status.c -- what the pipeline tells the outside: the /readyz and /metrics snapshot, the progress
 * log line.
 *
 * The HTTP threads never read the pipeline: the loop publishes a snapshot (process/observe.h) once
 * per turn, each sink's state included, and a progress line goes to the log every two seconds.
 */
#include "process/pipeline_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void tc_pipeline_publish_sink(tc_observe_status *st, const char *name, int ready,
                                     uint64_t rows, uint64_t failures);

/* One built-in sink's line of the status (its taken rows are all durable or retried). */
static void tc_pipeline_publish_sink(tc_observe_status *st, const char *name, int ready,
                                     uint64_t rows, uint64_t failures)
{
    tc_observe_sink *k = &st->sinks[st->nsinks++];

    snprintf(k->name, sizeof(k->name), "%s", name);
    k->ready = ready;
    k->rows = k->rows_durable = rows;
    k->failures = failures;
}

/* Hand the HTTP threads a fresh snapshot of the pipeline's status, each sink's included. */
void tc_pipeline_publish(tc_pipeline *p)
{
    tc_sinkset_status gen[TC_SINKSET_MAX];
    const char *reason = NULL;
    tc_observe_status st;
    size_t ngen;

    if (!p->obs)
        return;
    memset(&st, 0, sizeof(st));
    st.stats = p->stats;
    st.partitions = tc_consumer_assigned(p->consumer);
    st.store_ok = p->primary_ok;
    st.consuming = st.partitions > 0;
    st.last_commit_us = p->last_commit_us;
    tc_pipeline_publish_sink(&st, p->primary.name, p->primary_ok, p->stats.stored,
                             p->stats.retries);
    st.sinks[st.nsinks - 1].commit = p->primary_commit;
    ngen = tc_sinkset_status_get(p->sinks, gen, TC_SINKSET_MAX);
    for (size_t i = 0; i < ngen && st.nsinks < TC_OBSERVE_SINKS_MAX; i++) {
        tc_observe_sink *k = &st.sinks[st.nsinks++];
        memcpy(k->name, gen[i].name, sizeof(k->name));
        k->name[sizeof(k->name) - 1] = '\0';
        k->ready = gen[i].ready;
        k->rows = gen[i].stats.rows;
        k->rows_durable = gen[i].stats.rows_durable;
        k->pending = gen[i].stats.pending;
        k->failures = gen[i].failures;
        k->recoveries = gen[i].recoveries;
        k->cpu_measured = 1;
        k->cpu_ns = gen[i].cpu_ns;
        k->commit = gen[i].commit;
        if (!gen[i].ready && !reason)
            reason = gen[i].reason;
    }
    st.nlag = tc_consumer_lag(p->consumer, st.lag_partition, st.lag, TC_OBSERVE_LAG_MAX);
    snprintf(st.reason, sizeof(st.reason), "%s",
             !p->primary_ok ? p->not_ready
             : reason       ? reason
                            : "no Kafka partition assigned (yet)");
    tc_observe_publish(p->obs, &st);
}

/* The progress line, with each sink behind process/sink.h: rows made durable, the CPU it has cost
 * (tc_sinkset_status.cpu_ns), and its state. */
void tc_pipeline_progress(tc_pipeline *p, int64_t *last_us, uint64_t *last_count)
{
    double secs = (double)(p->now_us - *last_us) / 1e6;
    uint64_t done = p->stats.stored + p->stats.dead_letters;
    tc_sinkset_status st[TC_SINKSET_MAX];
    size_t n = tc_sinkset_status_get(p->sinks, st, TC_SINKSET_MAX);
    char sinks[TC_SINKSET_MAX * (TC_SINK_NAME_MAX + 72)];
    int len = 0;

    sinks[0] = '\0';
    for (size_t i = 0; i < n && (size_t)len < sizeof(sinks); i++)
        len += snprintf(sinks + len, sizeof(sinks) - (size_t)len, ", %s %llu (cpu %.3f s)%s",
                        st[i].name, (unsigned long long)st[i].stats.rows_durable,
                        (double)st[i].cpu_ns / 1e9, st[i].ready ? "" : " (not ready: recovering)");
    tc_log_info("pipeline",
                "progress: %.0f readings/s, stored %llu, dead letters %llu, batches %llu, "
                "partitions %zu%s",
                secs > 0 ? (double)(done - *last_count) / secs : 0.0,
                (unsigned long long)p->stats.stored, (unsigned long long)p->stats.dead_letters,
                (unsigned long long)p->stats.batches, tc_consumer_assigned(p->consumer), sinks);
    *last_us = p->now_us;
    *last_count = done;
}
