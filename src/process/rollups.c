/*
 * rollups.c -- the rollups and the latest state per device: a sink written in the background.
 *
 * The rows of every batch the store has committed join pending aggregates in memory (grouped per
 * device and bucket, so a device's bucket costs one upsert per flush, not one per batch), written
 * every postgres.rollup_interval_ms by a writer of their own (store/async.h) in a transaction that
 * also moves their marks, conditionally on the marks this member read (fencing). After a crash the
 * rows between the rollups' marks and the store's are read again and given to the rollups only, so
 * they stay exactly once.
 */
#include "process/pipeline_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Pending aggregate groups (per rollup table) that force a rollup flush before the interval is
 * up. While the rollups' writer is busy the aggregates grow, and the larger the set it gets next,
 * the fewer upserts per reading: a device-hour is written once per flush, whatever the readings
 * it got. A backlog read at 150K readings/s from 10,000 devices at a 10 s cadence makes some 30,000
 * one-minute groups a second; at 20,000 the rollups took half of PostgreSQL's CPU in the end-to-end
 * benchmark, at 40,000 two fifths (the one-hour and latest-state rows are written half as often).
 * A bucket group is 224 bytes, a latest-state one 336; with the arrays' doubling and two sets (the
 * one aggregating, the one being written) this many stay under 50 MB. */
#define TC_ROLLUP_GROUPS_MAX 40000

static size_t tc_pipeline_rollup_marks(tc_pipeline *p, tc_partition_offset *marks, int64_t *from);
static void tc_pipeline_rollups_durable(tc_pipeline *p, const tc_partition_offset *marks, size_t n);

/*
 * Where no rollup mark is stored, the rollups are where the store is: a schema written by a release
 * that kept them in each batch's transaction, or nothing stored yet (-1). That is recorded before
 * any row is given to them, so that a crash before their first flush finds a mark.
 */
tc_err tc_pipeline_rollups_init_marks(tc_pipeline *p, const int32_t *parts, size_t n,
                                      const int64_t *store_next, int64_t *rollup_next, char *errstr,
                                      size_t errstr_size)
{
    tc_partition_offset init[TC_PENDING_MAX];
    int64_t absent[TC_PENDING_MAX];
    size_t k = 0;
    tc_err err;

    for (size_t i = 0; i < n; i++) {
        if (rollup_next[i] != TC_STORE_MARK_ABSENT)
            continue;
        rollup_next[i] = store_next[i];
        absent[k] = TC_STORE_MARK_ABSENT; /* fenced: only where still none is stored */
        init[k++] = (tc_partition_offset){parts[i], store_next[i]};
        if (k == TC_PENDING_MAX) {
            err = tc_store_save_rollup_offsets(p->store, init, absent, k, errstr, errstr_size);
            if (err != TC_OK)
                return err;
            k = 0;
        }
    }
    return k ? tc_store_save_rollup_offsets(p->store, init, absent, k, errstr, errstr_size) : TC_OK;
}

/*
 * The rollups and the latest state per device are a third sink, deferred: the rows of every batch
 * the store has committed join pending aggregates in memory (grouped per device and bucket, so a
 * device's bucket costs one upsert per flush, not one per batch), and tc_pipeline_rollups_flush
 * writes them every postgres.rollup_interval_ms (0: after every batch) in a transaction of their
 * own that also moves their marks. After a crash the rows between the rollups' marks and the
 * store's are read again and given to the rollups only, so they stay exactly once.
 */
tc_err tc_pipeline_rollups_take(tc_pipeline *p, tc_slot *s)
{
    for (size_t i = 0; i < s->batch->n; i++) {
        p->rollup_mask[i] = (s->sinks[i] & TC_SINK_ROLLUP) != 0;
        p->rollup_rows += p->rollup_mask[i];
    }
    if (tc_store_rollups_add(p->store, s->batch, p->rollup_mask) != TC_OK) {
        /* Part of the batch is in the aggregates: only a restart from the marks is exact. */
        p->fatal = TC_ERR_NOMEM;
        snprintf(p->fatal_str, sizeof(p->fatal_str),
                 "out of memory aggregating rollups (the next run resumes them from their marks)");
        return TC_ERR_NOMEM;
    }
    for (size_t i = 0; i < s->nrollup_pending; i++) {
        tc_marks *m = tc_pipeline_marks(p, s->rollup_pending[i].partition);
        if (m)
            m->rollup_next = s->rollup_pending[i].next_offset;
    }
    s->nrollup_pending = 0;
    return TC_OK;
}

/* The marks the pending aggregates take the rollups to: their next offset per partition, where it
 * is past what is written. */
static size_t tc_pipeline_rollup_marks(tc_pipeline *p, tc_partition_offset *marks, int64_t *from)
{
    size_t n = 0;

    for (size_t i = 0; i < p->nmarks; i++) {
        tc_marks *m = &p->marks[i];
        if (m->rollup_next > m->rollup_durable && m->rollup_next != INT64_MAX) {
            from[n] = m->rollup_durable; /* fencing: stored where this member last saw it */
            marks[n++] = (tc_partition_offset){(int32_t)i, m->rollup_next};
        }
    }
    return n;
}

/* The rollups' marks of a flush that succeeded become durable. */
static void tc_pipeline_rollups_durable(tc_pipeline *p, const tc_partition_offset *marks, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p->marks[marks[i].partition].rollup_durable = marks[i].next_offset;
    tc_pipeline_commit_kafka(p, 0);
}

/*
 * The outcome of the rollups' writer (store/async.h), when its flush is over or block is set. A
 * retriable failure leaves the aggregates with the writer, to be tried again (rollup_retry); any
 * other is fatal.
 */
tc_err tc_pipeline_rollups_collect(tc_pipeline *p, int block)
{
    char errstr[TC_ERRSTR_MAX];
    tc_err err;

    if (!tc_store_async_rollups_busy(p->writers) ||
        (!block && !tc_store_async_rollups_done(p->writers)))
        return TC_OK;
    tc_pipeline_await(p, -1);
    err = tc_store_async_rollups_wait(p->writers, errstr, sizeof(errstr));
    p->rollup_retry = err != TC_OK;
    if (err == TC_OK) {
        tc_pipeline_rollups_durable(p, p->rollup_flight, p->nrollup_flight);
        return TC_OK;
    }
    if (err == TC_ERR_FENCED) {
        p->rollup_retry = 0; /* its aggregates go: tc_pipeline_resume reads their rows again */
        return tc_pipeline_fence(p, errstr);
    }
    if (!tc_err_is_retriable(err)) {
        tc_log_error("pipeline", "%s", errstr);
        p->fatal = err;
        snprintf(p->fatal_str, sizeof(p->fatal_str), "%s", errstr);
        return err;
    }
    p->rollup_failures++;
    tc_log_warn("pipeline", "%s; rollups retried at the next interval", errstr);
    return TC_OK;
}

/* Forget the pending aggregates and read their rows again: after the rollups lost partitions they
 * held rows of, or could not write them before handing partitions over. */
void tc_pipeline_rollups_discard(tc_pipeline *p)
{
    tc_partition_offset *from = malloc((p->nmarks + 1) * sizeof(*from));
    char errstr[TC_ERRSTR_MAX];
    size_t n = 0;

    tc_pipeline_rollups_collect(p, 1); /* a flush that went through keeps its marks */
    tc_store_rollups_clear(p->store);
    tc_store_rollups_clear(tc_store_async_rollups_store(p->writers));
    p->rollup_retry = 0;
    for (size_t i = 0; i < p->nmarks; i++) {
        tc_marks *m = &p->marks[i];
        if (m->rollup_next == m->rollup_durable)
            continue;
        m->rollup_next = m->rollup_durable;
        if (m->assigned && from)
            from[n++] = (tc_partition_offset){(int32_t)i, m->rollup_durable};
    }
    if (!from && !p->fatal) { /* the marks are lowered: only reading again keeps them exact */
        p->fatal = TC_ERR_NOMEM;
        snprintf(p->fatal_str, sizeof(p->fatal_str), "out of memory reading the rollups again");
    }
    if (n && tc_consumer_seek(p->consumer, from, n, errstr, sizeof(errstr)) != TC_OK && !p->fatal) {
        p->fatal = TC_ERR_KAFKA_TRANS;
        snprintf(p->fatal_str, sizeof(p->fatal_str), "%s", errstr);
    }
    free(from);
}

/*
 * Write every pending aggregate now, retrying with back-off until written or a stop is requested
 * (a revocation, the end of the run, aggregates too large to wait): first what the rollups' writer
 * holds, then what has been aggregated since, on the pipeline's own connection.
 */
tc_err tc_pipeline_rollups_flush(tc_pipeline *p)
{
    tc_partition_offset *marks = p->rollup_sync;
    int64_t *from = p->rollup_sync_from;
    char errstr[TC_ERRSTR_MAX];
    /* The first retry goes at once, even when a stop was asked: this flush is often the last one
     * (a stop's), and its usual failure -- a connection the database closed when it restarted --
     * is over on a new connection. Given up, it would leave the rollups, and Kafka's committed
     * offsets, behind the store until the next run. */
    long backoff = 0;
    size_t n;
    tc_err err;

    p->rollups_flushed_us = p->now_us;
    while ((err = tc_pipeline_rollups_collect(p, 1)) == TC_OK && p->rollup_retry) {
        if (tc_pipeline_backoff(p, &backoff))
            return TC_ERR_STOPPED;
        tc_store_async_flush_rollups(p->writers, NULL, p->rollup_flight, p->rollup_flight_from,
                                     p->nrollup_flight);
    }
    if (err != TC_OK)
        return err;
    n = tc_pipeline_rollup_marks(p, marks, from);
    if (n == 0)
        return TC_OK;
    backoff = 0;
    while ((err = tc_store_rollups_flush(p->store, marks, from, n, errstr, sizeof(errstr))) !=
           TC_OK) {
        if (err == TC_ERR_FENCED) {
            tc_store_rollups_clear(p->store);
            return tc_pipeline_fence(p, errstr);
        }
        if (!tc_err_is_retriable(err)) {
            tc_log_error("pipeline", "%s", errstr);
            p->fatal = err;
            snprintf(p->fatal_str, sizeof(p->fatal_str), "%s", errstr);
            return err;
        }
        tc_log_warn("pipeline", "%s; rollups retried with back-off", errstr);
        if (tc_pipeline_backoff(p, &backoff))
            return TC_ERR_STOPPED;
    }
    tc_pipeline_rollups_durable(p, marks, n);
    return TC_OK;
}

/*
 * Every postgres.rollup_interval_ms (or sooner when the aggregates grow large), hand the pending
 * aggregates to the rollups' writer and go on: the upserts of a second's aggregates take a good
 * part of a second, which the pipeline spends decoding instead. At most one flush is in flight; a
 * failed one is tried again at the next interval, before newer aggregates go. Aggregates that reach
 * TC_ROLLUP_GROUPS_MAX while the writer is still busy, or failing, are the back-pressure: written
 * now, waiting.
 */
tc_err tc_pipeline_rollups_due(tc_pipeline *p)
{
    int full = tc_store_rollups_pending(p->store) >= TC_ROLLUP_GROUPS_MAX;
    tc_err err = tc_pipeline_rollups_collect(p, 0);

    if (err != TC_OK)
        return err;
    if (!full && p->now_us - p->rollups_flushed_us < p->cfg->pg_rollup_interval_ms * 1000LL)
        return TC_OK;
    if (full && (tc_store_async_rollups_busy(p->writers) || p->rollup_retry))
        return tc_pipeline_rollups_flush(p);
    if (tc_store_async_rollups_busy(p->writers))
        return TC_OK; /* the last flush is still being written: the next interval takes these */
    p->rollups_flushed_us = p->now_us;
    if (p->rollup_retry) {
        tc_store_async_flush_rollups(p->writers, NULL, p->rollup_flight, p->rollup_flight_from,
                                     p->nrollup_flight);
        return TC_OK;
    }
    p->nrollup_flight = tc_pipeline_rollup_marks(p, p->rollup_flight, p->rollup_flight_from);
    if (p->nrollup_flight)
        tc_store_async_flush_rollups(p->writers, p->store, p->rollup_flight, p->rollup_flight_from,
                                     p->nrollup_flight);
    return TC_OK;
}
