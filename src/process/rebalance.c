/*
 * rebalance.c -- partitions assigned and taken away.
 *
 * On assignment every sink's marks of the new partitions are read and the consumer starts at the
 * lowest (a sink that is behind catches up while the others skip), after a lookback for the dedupe
 * window. On revocation what this member holds is written first, or dropped: never written after
 * the partitions' next owner has read them (a revocation while a sink waits drops it and resumes).
 */
#include "process/pipeline_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void tc_pipeline_marks_unread(tc_pipeline *p, tc_err err, const char *errstr);
static tc_err tc_pipeline_assign(tc_pipeline *p, const int32_t *parts, size_t n, int64_t *next);
static void tc_pipeline_revoke_waiting(tc_pipeline *p, const int32_t *parts, size_t n, int lost);
static void tc_pipeline_revoke(tc_pipeline *p, const int32_t *parts, size_t n, int lost);

/* The sinks' marks of assigned partitions could not be read: not ready until they are. */
static void tc_pipeline_marks_unread(tc_pipeline *p, tc_err err, const char *errstr)
{
    tc_log_warn("pipeline", "%s", errstr);
    p->store_ok = 0;
    snprintf(p->not_ready, sizeof(p->not_ready),
             "waiting for the sinks' offsets of assigned partitions (%s)", tc_err_name(err));
    tc_pipeline_publish(p);
}

tc_err tc_pipeline_on_assign(void *opaque, const int32_t *parts, size_t n, int64_t *next)
{
    tc_pipeline *p = opaque;
    tc_err err;

    if (p->closing || p->fatal || (p->stop && *p->stop))
        return TC_ERR_STOPPED;
    p->in_rebalance = 1;
    err = tc_pipeline_assign(p, parts, n, next);
    p->in_rebalance = 0;
    return err;
}

static tc_err tc_pipeline_assign(tc_pipeline *p, const int32_t *parts, size_t n, int64_t *next)
{
    char errstr[TC_ERRSTR_MAX];
    int64_t *rollup_next = NULL;
    tc_err err;

    for (size_t i = 0; i < n; i++) {
        if (parts[i] >= 0 && parts[i] < TC_TRACKED_MAX)
            continue;
        p->fatal = TC_ERR_CONFIG;
        snprintf(p->fatal_str, sizeof(p->fatal_str),
                 "topic \"%s\" partition %d: a pipeline tracks partitions 0 to %d only",
                 p->cfg->kafka_topic, parts[i], TC_TRACKED_MAX - 1);
        tc_log_error("pipeline", "%s", p->fatal_str);
        return TC_ERR_STOPPED;
    }
    err = tc_store_load_offsets(p->store, parts, n, next, errstr, sizeof(errstr));
    if (err != TC_OK && !tc_err_is_retriable(err)) {
        /* Not a passing outage (say, the tables do not exist): no point waiting for it. */
        tc_log_error("pipeline", "%s", errstr);
        p->fatal = err;
        snprintf(p->fatal_str, sizeof(p->fatal_str), "%s", errstr);
        return TC_ERR_STOPPED;
    }
    if (err == TC_OK && p->windows)
        tc_windows_assign(p->windows, parts, n, next);
    if (err == TC_OK && !p->windows) {
        rollup_next = calloc(n + 1, sizeof(*rollup_next));
        err = rollup_next ? tc_store_load_rollup_offsets(p->store, parts, n, rollup_next, errstr,
                                                         sizeof(errstr))
                          : TC_ERR_NOMEM;
        if (err == TC_OK)
            err = tc_pipeline_rollups_init_marks(p, parts, n, next, rollup_next, errstr,
                                                 sizeof(errstr));
    }
    if (err != TC_OK) {
        tc_pipeline_marks_unread(p, err, errstr);
        free(rollup_next);
        return err;
    }
    for (size_t i = 0; i < n; i++) {
        tc_marks *m = tc_pipeline_marks(p, parts[i]);
        if (!m) {
            free(rollup_next);
            return TC_ERR_NOMEM;
        }
        m->store_next = next[i];
        m->sent_gen = 0; /* the batches in flight have none of it: the next moves from here */
        m->rewind = TC_NO_REWIND;
        m->assigned = 1;
        /* A replay keeps the rollups out of the way: it recomputes what its range feeds. */
        m->rollup_next = m->rollup_durable = rollup_next ? rollup_next[i] : INT64_MAX;
        if (m->rollup_next < next[i]) {
            if (m->rollup_next < 0)
                tc_log_info("pipeline",
                            "partition %d: the rollups resume from the start, the store at %lld",
                            parts[i], (long long)next[i]);
            else
                tc_log_info("pipeline",
                            "partition %d: the rollups resume at %lld, the store at %lld", parts[i],
                            (long long)m->rollup_next, (long long)next[i]);
            next[i] = m->rollup_next;
        }
    }
    free(rollup_next);
    /* The other sinks (a replay's too: each takes what its own marks say, as in a run). Start at
     * the lowest mark: -1 ("nothing yet") is the lowest of all. */
    err = tc_sinkset_open(p->sinks, parts, n, next, errstr, sizeof(errstr));
    if (err != TC_OK) {
        tc_pipeline_marks_unread(p, err, errstr);
        if (!tc_err_is_retriable(err)) {
            p->fatal = err;
            snprintf(p->fatal_str, sizeof(p->fatal_str), "%s", errstr);
            return TC_ERR_STOPPED;
        }
        return err;
    }
    p->check_ends = 1;
    /* Read the stretch before the resume point again, for the dedupe window only. */
    for (size_t i = 0; p->dedupe && !p->windows && p->cfg->dedupe_lookback > 0 && i < n; i++) {
        int64_t from;
        if (next[i] <= 0)
            continue;
        from = next[i] > p->cfg->dedupe_lookback ? next[i] - p->cfg->dedupe_lookback : 0;
        if (tc_pipeline_lookback_prepare(p, parts[i], from, next[i]) == TC_OK)
            next[i] = from;
    }
    return TC_OK;
}

/*
 * Partitions taken away while a sink waits for the store (tc_pipeline_serve) cannot be flushed
 * first: the store is what is slow. What this member holds of them is dropped -- nothing of it is
 * committed, or it is committed from the offsets this member saw, and its next owner's writes are
 * fenced against it -- and tc_pipeline_resume reads the marks of the partitions it keeps again.
 */
static void tc_pipeline_revoke_waiting(tc_pipeline *p, const int32_t *parts, size_t n, int lost)
{
    tc_log_warn("pipeline",
                "%zu partitions %s while waiting for the store; dropping %zu uncommitted readings",
                n, lost ? "lost" : "revoked", p->cur->batch->n + p->cur->dlq->n);
    for (size_t i = 0; i < n; i++) {
        tc_marks *m = tc_pipeline_marks(p, parts[i]);
        if (m)
            m->assigned = 0;
    }
    tc_sinkset_revoke(p->sinks, parts, n, 0);
    p->fenced = 1;
}

void tc_pipeline_on_revoke(void *opaque, const int32_t *parts, size_t n, int lost)
{
    tc_pipeline *p = opaque;

    if (p->serving) {
        tc_pipeline_revoke_waiting(p, parts, n, lost);
        return;
    }
    p->in_rebalance = 1;
    tc_pipeline_revoke(p, parts, n, lost);
    p->in_rebalance = 0;
}

static void tc_pipeline_revoke(tc_pipeline *p, const int32_t *parts, size_t n, int lost)
{
    char errstr[TC_ERRSTR_MAX];
    int written = 0, rollups_written, sinks_written = 1;
    int32_t cut = p->windows && !p->closing ? tc_windows_unfinished(p->windows, parts, n) : -1;

    if (cut >= 0 && !p->fatal) {
        p->fatal = TC_ERR_STOPPED;
        snprintf(p->fatal_str, sizeof(p->fatal_str),
                 "partition %d was taken away during the replay: another member joined group "
                 "\"%s\"",
                 cut, p->cfg->kafka_group);
    }
    if (lost) {
        /* Someone else owns these partitions now; what we hold was never committed and will be
         * read again by the new owner from the sinks' marks. */
        tc_log_warn("pipeline", "partitions lost; dropping %zu uncommitted readings",
                    p->cur->batch->n + p->cur->dlq->n);
        tc_pipeline_settle(p, 1); /* what the writer has is committed, or dropped */
        tc_pipeline_drop(p);
    } else if (tc_pipeline_flush(p) == TC_OK) {
        written = 1;
    } else {
        /* Not written: dropping is safe for the same reason as above. */
        tc_pipeline_drop(p);
    }
    /* The sinks behind process/sink.h make what they took durable, or drop it. */
    if (written &&
        tc_sinkset_flush(p->sinks, tc_time_now_us(), 1, errstr, sizeof(errstr)) != TC_OK) {
        tc_log_warn("pipeline", "%s (the partitions' next owner reads them again)", errstr);
        sinks_written = 0;
    }
    tc_sinkset_revoke(p->sinks, parts, n, written && sinks_written);
    /* The pending aggregates hold rows of these partitions: written now, or never (their next
     * owner reads them again from the rollups' marks, and so do we for the partitions we keep). */
    rollups_written = !lost && tc_pipeline_rollups_flush(p) == TC_OK;
    for (size_t i = 0; i < n; i++) {
        tc_marks *m = tc_pipeline_marks(p, parts[i]);
        if (m)
            m->assigned = 0;
    }
    if (!rollups_written)
        tc_pipeline_rollups_discard(p);
}
