/*
 * serve.c -- keeping the group membership while the pipeline waits, and Kafka's commit.
 *
 * Every wait of the pipeline thread -- a writer held up by a lock, a back-off, a sink's flush
 * reporting busy -- polls Kafka with the partitions paused instead of sleeping: the group evicts a
 * member silent for max.poll.interval.ms, and an evicted member's batch would be written after the
 * partitions' next owner has read them. What a poll hands out meanwhile is read again (a rewind
 * per partition). Kafka's committed offsets are the minimum of every sink's durable mark: lag
 * monitoring only, the sinks' own marks are what a restart reads.
 */
#include "process/pipeline_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A sink that has waited this long for a store serves the consumer meanwhile, in slices of this
 * much (tc_pipeline_serve): the group evicts a member that does not poll for
 * max.poll.interval.ms, and an evicted member's batch would be written after its partitions'
 * next owner has read them. */
#define TC_SERVE_AFTER_MS 1000
#define TC_SERVE_SLICE_MS 100

/*
 * Keep the group membership while a sink waits (a writer held up by a lock, a back-off): poll
 * Kafka for up to ms with the partitions paused, so that max.poll.interval.ms does not run out, and
 * serve the rebalances that come meanwhile (a revocation then only sets p->fenced; see
 * tc_pipeline_on_revoke). A message a poll hands out all the same (fetched before the pause, or of
 * a partition assigned since) is not processed now: its partition is read again from it when the
 * loop resumes the partitions (tc_pipeline_unpause). Inside a rebalance callback, which must not
 * poll, and before the run, it only sleeps.
 */
void tc_pipeline_serve(tc_pipeline *p, int ms)
{
    char errstr[TC_ERRSTR_MAX];
    size_t n;

    if (p->in_rebalance || p->serving || !p->stop) {
        tc_time_sleep_ms(ms);
        return;
    }
    p->serving = 1;
    if (!p->paused) {
        if (tc_consumer_pause(p->consumer, 1, errstr, sizeof(errstr)) != TC_OK)
            tc_log_warn("pipeline", "%s", errstr);
        p->paused = 1;
    }
    n = tc_consumer_poll(p->consumer, ms, p->serve_msgs, TC_SERVE_FETCH_MAX);
    for (size_t i = 0; i < n; i++) {
        tc_marks *m = tc_pipeline_marks(p, p->serve_msgs[i].partition);
        if (m && (m->rewind == TC_NO_REWIND || p->serve_msgs[i].offset < m->rewind))
            m->rewind = p->serve_msgs[i].offset;
        p->rewinds = 1;
        tc_consumer_release(p->consumer, &p->serve_msgs[i]);
    }
    p->serving = 0;
}

/* After a wait that served the consumer: resume the partitions, and read again what its polls
 * handed out. */
void tc_pipeline_unpause(tc_pipeline *p)
{
    char errstr[TC_ERRSTR_MAX];
    tc_partition_offset one;

    if (!p->paused)
        return;
    p->paused = 0;
    if (tc_consumer_pause(p->consumer, 0, errstr, sizeof(errstr)) != TC_OK)
        tc_log_warn("pipeline", "%s", errstr);
    for (size_t i = 0; p->rewinds && i < p->nmarks; i++) {
        if (p->marks[i].rewind == TC_NO_REWIND)
            continue;
        one = (tc_partition_offset){(int32_t)i, p->marks[i].rewind};
        p->marks[i].rewind = TC_NO_REWIND;
        if (p->marks[i].assigned &&
            tc_consumer_seek(p->consumer, &one, 1, errstr, sizeof(errstr)) != TC_OK && !p->fatal) {
            p->fatal = TC_ERR_KAFKA_TRANS;
            snprintf(p->fatal_str, sizeof(p->fatal_str), "%s", errstr);
        }
    }
    p->rewinds = 0;
}

/* Wait for the primary's batch on place w to be done, serving the consumer after a while. */
void tc_pipeline_await(tc_pipeline *p, int place)
{
    const tc_sink_primary_ops *po = p->primary.ops->primary;
    int waited = 0;

    while (!po->await(p->primary.ctx, place, TC_SERVE_SLICE_MS)) {
        waited += TC_SERVE_SLICE_MS;
        if (waited >= TC_SERVE_AFTER_MS)
            tc_pipeline_serve(p, 0);
    }
}

/* Sleep ms (a back-off) serving the consumer, in slices that check for a stop. 1 when a stop was
 * asked, or with fence set when the pipeline was fenced meanwhile. */
int tc_pipeline_wait(tc_pipeline *p, long ms, int fence)
{
    for (long slept = 0; slept < ms; slept += 50) {
        if ((p->stop && *p->stop) || (fence && p->fenced))
            return 1;
        tc_pipeline_serve(p, 50);
    }
    return 0;
}

/* tc_sinkset's wait while a sink's flush is busy. */
void tc_pipeline_sinks_wait(void *opaque, int ms)
{
    tc_pipeline_serve(opaque, ms);
}

/* How often the loop looks whether the sinks' durable marks moved on their own (every partition's
 * marks of every sink are read: with thousands of partitions, not at every turn). */
#define TC_KAFKA_CHECK_US 250000LL

/* The offsets Kafka's commit would carry now into p->kafka_offs: the lowest durable mark of every
 * sink, per assigned partition. Returns their count; *sum is a checksum of them. */
static size_t tc_pipeline_kafka_offsets(tc_pipeline *p, uint64_t *sum)
{
    tc_partition_offset *offs = p->kafka_offs;
    size_t n = 0;

    *sum = 0;
    for (size_t i = 0; i < p->nmarks; i++) {
        tc_marks *m = &p->marks[i];
        int64_t next;
        if (!m->assigned)
            continue;
        next = tc_pipeline_primary_next(p, (int32_t)i);
        next = tc_sinkset_durable_min(p->sinks, (int32_t)i, next);
        if (next < 0)
            continue;
        offs[n++] = (tc_partition_offset){(int32_t)i, next};
        *sum = *sum * 1000003u + (uint64_t)i * 7919u + (uint64_t)next;
    }
    return n;
}

/* Tell Kafka how far every sink is (informational: lag monitoring). */
void tc_pipeline_commit_kafka(tc_pipeline *p, int wait)
{
    size_t n = tc_pipeline_kafka_offsets(p, &p->kafka_sum);

    tc_consumer_commit(p->consumer, p->kafka_offs, n, wait);
}

/* The same, only when the offsets moved since the last commit: after a sink made rows durable by
 * its own policy (a flush of the rollups, a lake file rolled by age), with no batch to commit them
 * with. */
void tc_pipeline_commit_kafka_moved(tc_pipeline *p)
{
    uint64_t sum;
    size_t n;

    if (p->now_us - p->kafka_checked_us < TC_KAFKA_CHECK_US)
        return;
    p->kafka_checked_us = p->now_us;
    n = tc_pipeline_kafka_offsets(p, &sum);
    if (n && sum != p->kafka_sum) {
        p->kafka_sum = sum;
        tc_consumer_commit(p->consumer, p->kafka_offs, n, 0);
    }
}

/* Sleep *backoff_ms (doubling it for next time, up to TC_RETRY_MAX_MS); 1 when a stop was asked
 * meanwhile. A back-off of 0 is a retry at once, whatever is asked, then TC_RETRY_MIN_MS. */
int tc_pipeline_backoff(tc_pipeline *p, long *backoff_ms)
{
    if (*backoff_ms == 0) {
        *backoff_ms = TC_RETRY_MIN_MS;
        return 0;
    }
    if (tc_pipeline_wait(p, *backoff_ms, 0))
        return 1;
    *backoff_ms = *backoff_ms * 2 > TC_RETRY_MAX_MS ? TC_RETRY_MAX_MS : *backoff_ms * 2;
    return 0;
}
