/*
 * rebalance.c -- partitions assigned and taken away.
 *
 * On assignment every sink's marks of the new partitions are read and the consumer starts at the
 * lowest (a sink that is behind catches up while the others skip), after a lookback for the dedupe
 * window. On revocation what this member holds is written first, or dropped: never written after
 * the partitions' next owner has read them (a revocation while a sink waits drops it and resumes).
 *
 * A replay must be the group's only member from start to end. A member that joins after the
 * replay's own check may take partitions away (revocation: the replay stops) or be given, first,
 * partitions the replay had not been assigned yet -- then no callback ever tells the replay, which
 * would wait for them forever. So a replay also counts the group's members every few seconds.
 */
#include "process/pipeline_int.h"

#include "ingest/lookup.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void tc_pipeline_marks_unread(tc_pipeline *p, tc_err err, const char *errstr);
static tc_err tc_pipeline_assign(tc_pipeline *p, const int32_t *parts, size_t n, int64_t *next);
static void tc_pipeline_revoke_waiting(tc_pipeline *p, const int32_t *parts, size_t n, int lost);
static void tc_pipeline_revoke(tc_pipeline *p, const int32_t *parts, size_t n, int lost);

/* How often a replay counts its group's members: a join is seen within this (plus the brokers'
 * answer), while a describe per poll would cost a connection every 100 ms. */
#define TC_REPLAY_ALONE_EVERY_US 2000000LL

/* The sinks' marks of assigned partitions could not be read: not ready until they are. */
static void tc_pipeline_marks_unread(tc_pipeline *p, tc_err err, const char *errstr)
{
    tc_log_warn("pipeline", "%s", errstr);
    p->primary_ok = 0;
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
    err = p->primary.ops->open(p->primary.ctx, parts, n, next, errstr, sizeof(errstr));
    if (err != TC_OK && !tc_err_is_retriable(err)) {
        /* Not a passing outage (say, the tables do not exist): no point waiting for it. */
        tc_log_error("pipeline", "%s", errstr);
        p->fatal = err;
        snprintf(p->fatal_str, sizeof(p->fatal_str), "%s", errstr);
        return TC_ERR_STOPPED;
    }
    if (err == TC_OK && p->windows)
        tc_windows_assign(p->windows, parts, n, next);
    if (err != TC_OK) {
        tc_pipeline_marks_unread(p, err, errstr);
        return err;
    }
    for (size_t i = 0; i < n; i++) {
        tc_marks *m = tc_pipeline_marks(p, parts[i]);
        if (!m)
            return TC_ERR_NOMEM;
        m->primary_next = next[i];
        m->rewind = TC_NO_REWIND;
        m->assigned = 1;
    }
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
 * Partitions taken away while a sink waits for the primary (tc_pipeline_serve) cannot be flushed
 * first: the primary is what is slow. What this member holds of them is dropped -- nothing of it is
 * committed, or it is committed from the offsets this member saw, and its next owner's writes are
 * fenced against it -- and tc_pipeline_resume reads the marks of the partitions it keeps again.
 */
static void tc_pipeline_revoke_waiting(tc_pipeline *p, const int32_t *parts, size_t n, int lost)
{
    tc_log_warn("pipeline",
                "%zu partitions %s while waiting for the %s; dropping %zu uncommitted readings", n,
                lost ? "lost" : "revoked", p->primary.name, p->cur->batch->n + p->cur->dlq->n);
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
    int written = 0, sinks_written = 1;
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
        tc_pipeline_settle(p, 1); /* what the primary has in flight is committed, or dropped */
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
    /* Kafka's committed offsets of these partitions at what is durable now: their next owner
     * starts from the sinks' marks, but the group's lag is read from here. */
    if (written && sinks_written)
        tc_pipeline_commit_kafka(p, 0);
    tc_sinkset_revoke(p->sinks, parts, n, written && sinks_written);
    for (size_t i = 0; i < n; i++) {
        tc_marks *m = tc_pipeline_marks(p, parts[i]);
        if (m)
            m->assigned = 0;
    }
}

/* A partition's marks, made (nothing held yet) the first time it is seen; NULL past
 * TC_TRACKED_MAX or out of memory. */
tc_marks *tc_pipeline_marks(tc_pipeline *p, int32_t partition)
{
    tc_marks *m;
    size_t n;

    if (partition < 0 || partition >= TC_TRACKED_MAX)
        return NULL;
    if ((size_t)partition >= p->nmarks) {
        n = (size_t)partition + 1 > p->nmarks * 2 ? (size_t)partition + 1 : p->nmarks * 2;
        m = realloc(p->marks, n * sizeof(*m));
        if (!m)
            return NULL;
        for (size_t i = p->nmarks; i < n; i++)
            m[i] = (tc_marks){.primary_next = TC_SINK_MARK_NONE, .rewind = TC_NO_REWIND};
        p->marks = m;
        p->nmarks = n;
    }
    return &p->marks[partition];
}

/* The primary's share of a resume (tc_pipeline_resume): drop every batch this member holds (in
 * flight, being filled). */
void tc_pipeline_primary_drop(tc_pipeline *p)
{
    tc_pipeline_settle(p, 1);
    tc_pipeline_drop(p);
}

/* Read the primary's marks of parts[0..n) again into low[], as after an assignment (every batch
 * in flight is settled: tc_pipeline_primary_drop). */
tc_err tc_pipeline_primary_reload(tc_pipeline *p, const int32_t *parts, size_t n, int64_t *low,
                                  char *errstr, size_t errstr_size)
{
    tc_err err = p->primary.ops->recover(p->primary.ctx, parts, n, low, errstr, errstr_size);

    for (size_t i = 0; err == TC_OK && i < n; i++)
        p->marks[parts[i]].primary_next = low[i];
    return err;
}

/*
 * A replay (windows set): stop it, with p->fatal, once another member is in the group. Returns
 * whether the replay must stop. A failed lookup is only logged: the next one asks again, and a
 * revocation still stops the replay meanwhile.
 */
int tc_pipeline_replay_alone(tc_pipeline *p)
{
    char errstr[TC_ERRSTR_MAX], who[TC_LOOKUP_MEMBERS_TEXT_MAX];
    size_t members = 0;

    if (!p->windows || p->fatal)
        return p->fatal != 0;
    if (p->now_us - p->alone_checked_us < TC_REPLAY_ALONE_EVERY_US)
        return 0;
    p->alone_checked_us = p->now_us;
    if (tc_kafka_lookup_group(p->cfg, p->cfg->kafka_group, &members, who, sizeof(who), errstr,
                              sizeof(errstr)) != TC_OK) {
        tc_log_warn("replay", "%s (asked again in %lld s)", errstr,
                    (long long)(TC_REPLAY_ALONE_EVERY_US / 1000000));
        return 0;
    }
    if (members <= 1)
        return 0; /* the replay itself, or not joined yet */
    p->fatal = TC_ERR_STOPPED;
    snprintf(p->fatal_str, sizeof(p->fatal_str),
             "another member joined group \"%s\" during the replay (%zu members: %.200s): stop "
             "`thermocline run` of the group, then run the replay again",
             p->cfg->kafka_group, members, who);
    return 1;
}
