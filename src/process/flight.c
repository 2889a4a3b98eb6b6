/*
 * flight.c -- the batch slots and the primary sink's batches in flight: filling, dispatching,
 * settling.
 *
 * There is one slot per place of the primary (tc_sink_primary_ops: the store's writers) and one
 * more: the pipeline fills one while the primary has the others in flight, and settles the
 * batches oldest first -- retrying a failed write with back-off, isolating refused rows, then the
 * other sinks (process/sink.h) and Kafka's offsets -- so every sink takes the batches in the order
 * they were read. A batch holds readings of at most pipeline.partitions_per_batch partitions: a
 * reading of one more sends it to a writer first, never cutting an offset short.
 */
#include "process/pipeline_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Dead letters per batch before it is written regardless of its row count: a burst of garbage must
 * not pile up in memory. */
#define TC_DLQ_PER_BATCH 10000

/* A batch past pipeline.batch_size looks for a free writer every this many rows: settling takes
 * the writers' lock, which a check per reading would take ten thousand times a batch. */
#define TC_GROW_CHECK_ROWS 64

static void tc_pipeline_slot_reset(tc_slot *s);
static int tc_pipeline_pending_has(const tc_partition_offset *pending, size_t n, size_t cap,
                                   int32_t partition);
static tc_err tc_pipeline_write_slot(tc_pipeline *p, tc_slot *s, const tc_batch *rows, char *errstr,
                                     size_t errstr_size);
static tc_sink_rows tc_pipeline_primary_given(const tc_pipeline *p, const tc_slot *s,
                                              const tc_batch *rows);
static tc_err tc_pipeline_written(tc_pipeline *p, tc_slot *s, tc_err err, int cascaded,
                                  char *errstr, size_t errstr_size);
static tc_err tc_pipeline_settle_oldest(tc_pipeline *p, int lost);
static tc_slot *tc_pipeline_free_slot(tc_pipeline *p);

/* Forget a slot's batch: written and settled, or never to be (it is read again). */
static void tc_pipeline_slot_reset(tc_slot *s)
{
    tc_batch_reset(s->batch);
    s->submit_us = 0;
    tc_dlq_batch_reset(s->dlq);
    s->npending = 0;
    s->primary_rows = 0;
    s->rows = NULL;
    s->place = -1;
    tc_sinkset_batch_reset(s->gen);
}

tc_err tc_pipeline_slot_init(tc_slot *s, const tc_config *cfg, const tc_sinkset *sinks)
{
    size_t cap = tc_config_batch_cap(cfg);

    s->batch = tc_batch_new(cap, (size_t)cfg->batch_memory_bytes);
    s->filtered = tc_batch_new(cap, 0);
    s->sinks = calloc(cap, 1);
    /* The dead-letter arena must hold the largest payload we keep, plus detail and key. */
    s->dlq = tc_dlq_batch_new(TC_DLQ_PER_BATCH,
                              (size_t)cfg->batch_memory_bytes + 2 * TC_DLQ_PAYLOAD_MAX);
    s->place = -1;
    s->gen = tc_sinkset_batch_new(sinks);
    return s->batch && s->filtered && s->sinks && s->dlq && s->gen ? TC_OK : TC_ERR_NOMEM;
}

void tc_pipeline_slot_free(tc_slot *s)
{
    tc_batch_destroy(s->batch);
    tc_batch_destroy(s->filtered);
    free(s->sinks);
    tc_dlq_batch_destroy(s->dlq);
    tc_sinkset_batch_destroy(s->gen);
}

/* Forget the batch being filled (the ones in flight are the primary's until settled). */
void tc_pipeline_drop(tc_pipeline *p)
{
    p->late.on = 0; /* the row waiting for its verdict goes with the batch: it is read again */
    tc_observe_note_discard(p->obs, p->cur);
    tc_pipeline_slot_reset(p->cur);
    p->batch_started_us = 0;
}

void tc_pipeline_note(tc_partition_offset *pending, size_t *npending, int32_t partition,
                      int64_t offset)
{
    for (size_t i = 0; i < *npending; i++) {
        if (pending[i].partition == partition) {
            if (offset + 1 > pending[i].next_offset)
                pending[i].next_offset = offset + 1;
            return;
        }
    }
    /* tc_pipeline_room_for has made room: a batch never holds rows of a partition it has no
     * offset for (written, its offset would not move, and a restart would write them again). */
    if (*npending < TC_PENDING_MAX)
        pending[(*npending)++] = (tc_partition_offset){partition, offset + 1};
}

static int tc_pipeline_pending_has(const tc_partition_offset *pending, size_t n, size_t cap,
                                   int32_t partition)
{
    if (n < cap)
        return 1; /* room for one more anyway */
    for (size_t i = 0; i < n; i++) {
        if (pending[i].partition == partition)
            return 1;
    }
    return 0;
}

/*
 * Whether the batch being filled can take a message of this partition: it tracks the offsets of
 * at most pipeline.partitions_per_batch partitions (TC_PENDING_MAX at most) per sink. A message of
 * one more partition makes the batch go to a writer first, and starts the next one: with a topic
 * of more partitions than that, batches are smaller, never cut short of an offset.
 */
tc_err tc_pipeline_room_for(tc_pipeline *p, int32_t partition)
{
    size_t cap = (size_t)p->cfg->partitions_per_batch;
    const tc_slot *s = p->cur;

    if (cap > TC_PENDING_MAX)
        cap = TC_PENDING_MAX;
    if (tc_pipeline_pending_has(s->pending, s->npending, cap, partition) &&
        tc_sinkset_room(s->gen, partition, cap))
        return TC_OK;
    if (p->stats.partition_flushes++ == 0)
        tc_log_info("pipeline",
                    "a batch holds readings of %zu partitions (pipeline.partitions_per_batch): "
                    "written early, before a reading of partition %d (logged once; see "
                    "thermocline_batches_partition_cap_total)",
                    cap, partition);
    return tc_pipeline_dispatch(p);
}

/* What the primary is given of a slot: its rows, the dead letters, its marks' advance. */
static tc_sink_rows tc_pipeline_primary_given(const tc_pipeline *p, const tc_slot *s,
                                              const tc_batch *rows)
{
    return (tc_sink_rows){.batch = rows,
                          .mask = NULL,
                          .nrows = rows->n,
                          .advance = s->pending,
                          .nadvance = s->npending,
                          .dlq = s->dlq,
                          .now_us = p->now_us};
}

/* One more attempt at writing a slot's batch on its place (idle: collected). */
static tc_err tc_pipeline_write_slot(tc_pipeline *p, tc_slot *s, const tc_batch *rows, char *errstr,
                                     size_t errstr_size)
{
    tc_sink_rows given = tc_pipeline_primary_given(p, s, rows);

    return p->primary.ops->primary->rewrite(p->primary.ctx, s->place, &given, errstr, errstr_size);
}

/*
 * The primary's outcome of a slot: retry what failed (refused rows become dead letters, retriable
 * failures are tried again with back-off until written or a stop is requested; a batch that only
 * rolled back because one before it failed is written again at once), then what follows a durable
 * batch -- the other sinks, Kafka's offsets (the primary's marks moved when it was durable). Every
 * batch before it is settled, and its place is idle.
 */
static tc_err tc_pipeline_written(tc_pipeline *p, tc_slot *s, tc_err err, int cascaded,
                                  char *errstr, size_t errstr_size)
{
    const tc_batch *rows = s->rows;
    long backoff = 0, wait;

    if (p->fatal) /* the run is over: nothing more is written */
        return p->fatal;
    if (p->fenced) /* read again from the stored marks (tc_pipeline_resume), committed or not */
        return TC_ERR_FENCED;
    if (err != TC_OK && cascaded)
        err = tc_pipeline_write_slot(p, s, rows, errstr, errstr_size);
    while (err != TC_OK) {
        if (err == TC_ERR_FENCED)
            return tc_pipeline_fence(p, errstr);
        if (err == TC_ERR_DB && rows->n) {
            size_t before = s->dlq->n;
            err = tc_pipeline_isolate_refused(p, s, rows, errstr, errstr_size);
            if (err == TC_OK && s->dlq->n > before) {
                rows = tc_pipeline_primary_rows(s); /* the batch without them */
                err = tc_pipeline_write_slot(p, s, rows, errstr, errstr_size);
                continue;
            }
            if (err == TC_OK)
                err = TC_ERR_DB;
        }
        p->primary_ok = 0;
        snprintf(p->not_ready, sizeof(p->not_ready), "the %s refused the last write (%s)",
                 p->primary.name, tc_err_name(err));
        tc_pipeline_publish(p);
        if (!tc_err_is_retriable(err)) {
            tc_log_error("pipeline", "%s", errstr);
            p->fatal = err;
            snprintf(p->fatal_str, sizeof(p->fatal_str), "%s", errstr);
            return err;
        }
        p->stats.retries++;
        wait = tc_sinkset_backoff_step(&backoff); /* the same back-off as every sink's */
        tc_log_warn("pipeline", "%s; retrying in %ld ms", errstr, wait);
        if (tc_pipeline_wait(p, wait, 1))
            return *p->stop ? TC_ERR_STOPPED : TC_ERR_FENCED;
        err = tc_pipeline_write_slot(p, s, rows, errstr, errstr_size);
    }
    p->primary_ok = 1;
    p->last_commit_us = tc_time_now_us();
    if (s->submit_us) /* the same family as every other sink's:
                         thermocline_sink_commit_duration_seconds */
        tc_sinkset_latency_observe(&p->primary_commit,
                                   (double)(p->last_commit_us - s->submit_us) / 1e6);
    /* The dead letters are durable in the primary; their Kafka copy is a convenience for
     * Kafka-native tooling, so a failure to send it is logged, not fatal. */
    if (p->dlq_mirror && s->dlq->n &&
        tc_dlq_mirror_send(p->dlq_mirror, s->dlq, p->cfg->kafka_topic, errstr, errstr_size) !=
            TC_OK)
        tc_log_warn("pipeline", "dead-letter mirror: %s", errstr);
    for (size_t i = 0; i < s->npending; i++) {
        tc_marks *m = tc_pipeline_marks(p, s->pending[i].partition);
        if (m)
            m->primary_next = s->pending[i].next_offset;
    }
    p->stats.stored += rows->n;
    p->stats.dead_letters += s->dlq->n;
    p->stats.batches++;
    tc_observe_note_commit(p->obs, s, rows->n, s->dlq);
    /* The primary has the batch; the other sinks follow. One that fails (a full disk under the
     * lake) stops taking rows until it has recovered, then reads its share again from Kafka, while
     * the batch is done with for the others (the primary must not get it twice). */
    err = tc_sinkset_take(p->sinks, s->gen, s->batch, s->sinks, s->dlq, p->now_us, errstr,
                          errstr_size);
    if (err == TC_ERR_FENCED)
        return tc_pipeline_fence(p, errstr);
    if (err != TC_OK) {
        tc_log_error("pipeline", "%s", errstr);
        p->fatal = err;
        snprintf(p->fatal_str, sizeof(p->fatal_str), "%s", errstr);
        return err;
    }
    tc_pipeline_commit_kafka(p, 0);
    return TC_OK;
}

/*
 * Collect the oldest batch in flight and settle it (tc_pipeline_written). With lost set, the
 * partitions have a new owner already: a batch the primary could not store is dropped, not retried
 * (the owner reads it again from the marks). A failure also drops the batch being filled: the run
 * stops, or a resume rewinds the consumer to before it.
 */
static tc_err tc_pipeline_settle_oldest(tc_pipeline *p, int lost)
{
    char errstr[TC_ERRSTR_MAX];
    tc_slot *s = p->flight[p->flight_head];
    int cascaded;
    tc_err err;

    p->flight_head = (p->flight_head + 1) % p->nslots;
    p->nflight--;
    tc_pipeline_await(p, s->place);
    err = p->primary.ops->primary->collect(p->primary.ctx, s->place, &cascaded, errstr,
                                           sizeof(errstr));
    if (err != TC_OK)
        p->chain_broken = 1; /* the batches after it roll back: settle them before any other */
    if (err == TC_OK || !lost)
        err = tc_pipeline_written(p, s, err, cascaded, errstr, sizeof(errstr));
    tc_observe_note_discard(p->obs, s); /* its notes, unless committed: it is read again */
    tc_pipeline_slot_reset(s);
    if (p->nflight == 0)
        p->chain_broken = 0;
    if (err != TC_OK)
        tc_pipeline_drop(p);
    return err;
}

/* Settle every batch in flight, oldest first, even after a failure (a batch committed must have
 * its marks moved before a sink's recovery rewinds the consumer); the first error is returned. */
tc_err tc_pipeline_settle(tc_pipeline *p, int lost)
{
    tc_err first = TC_OK, err;

    while (p->nflight) {
        err = tc_pipeline_settle_oldest(p, lost);
        if (first == TC_OK)
            first = err;
    }
    return first;
}

/* Settle the batches in flight the primary is done with, without waiting. */
tc_err tc_pipeline_settle_done(tc_pipeline *p)
{
    tc_err err = TC_OK;

    while (err == TC_OK && p->nflight &&
           p->primary.ops->primary->done(p->primary.ctx, p->flight[p->flight_head]->place))
        err = tc_pipeline_settle_oldest(p, 0);
    return err;
}

/* A slot neither being filled nor in flight (there is one more slot than places). */
static tc_slot *tc_pipeline_free_slot(tc_pipeline *p)
{
    for (size_t i = 0; i < p->nslots; i++) {
        if (&p->slots[i] != p->cur && p->slots[i].place < 0)
            return &p->slots[i];
    }
    return NULL;
}

/*
 * Whether the batch being filled goes to a writer now, before it takes another reading: when it is
 * full (pipeline.batch_size_max); when it holds pipeline.batch_size readings, a writer is free and
 * no more messages are waiting (the last poll did not fill its array); or, timed_out, when it has
 * waited pipeline.batch_timeout_ms and a writer is free. Otherwise it goes on filling: a COPY of
 * ten thousand rows costs PostgreSQL much less than ten of a thousand (each COPY sets up its
 * partitions' insert buffers afresh), and the pipeline decodes instead of waiting for a writer.
 * Finished writers are settled first, so that they count as free. Past pipeline.batch_size this
 * is checked every TC_GROW_CHECK_ROWS rows.
 */
tc_err tc_pipeline_batch_due(tc_pipeline *p, int timed_out, int *due)
{
    const tc_batch *b = p->cur->batch;
    size_t size = (size_t)p->cfg->batch_size;
    tc_err err;

    *due = b->n >= b->cap;
    if (*due || (!timed_out && (b->n < size || (b->n - size) % TC_GROW_CHECK_ROWS != 0)))
        return TC_OK;
    if ((err = tc_pipeline_settle_done(p)) != TC_OK)
        return err;
    *due = p->chain_broken ||
           ((timed_out || !p->backlog) && p->primary.ops->primary->free_place(p->primary.ctx) >= 0);
    return TC_OK;
}

/*
 * Hand the batch being filled to a free place of the primary and start filling a free slot: the
 * primary writes up to postgres.writers batches while the next is decoded. When every place has a
 * batch, the oldest is settled first; after a failure, all of them are.
 */
tc_err tc_pipeline_dispatch(tc_pipeline *p)
{
    const tc_sink_primary_ops *po = p->primary.ops->primary;
    tc_slot *s = p->cur, *next;
    tc_sink_rows given;
    tc_err err;
    int w = -1;

    if (p->fenced) { /* read again after tc_pipeline_resume */
        tc_pipeline_drop(p);
        return TC_ERR_FENCED;
    }
    /* The last row's dedupe verdict before the batch leaves (decode.c). */
    if ((err = tc_pipeline_dedupe_settle(p)) != TC_OK)
        return err;
    err = p->chain_broken ? tc_pipeline_settle(p, 0) : TC_OK;
    while (err == TC_OK && (w = po->free_place(p->primary.ctx)) < 0)
        err = tc_pipeline_settle_oldest(p, 0);
    if (err != TC_OK)
        return err;
    if (s->batch->n == 0 && s->dlq->n == 0 && s->npending == 0 && tc_sinkset_batch_empty(s->gen)) {
        p->batch_started_us = 0;
        return TC_OK;
    }
    next = tc_pipeline_free_slot(p);
    if (!next) /* cannot be: a free place leaves a slot that is neither filled nor in flight */
        return TC_ERR_INVALID;
    s->rows = tc_pipeline_primary_rows(s);
    s->place = w;
    /* A batch with nothing for the primary (another sink catching up) still goes through a place,
     * which commits an empty transaction in its turn: the sinks take the batches in order. */
    s->submit_us = tc_time_now_us();
    given = tc_pipeline_primary_given(p, s, s->rows);
    po->submit(p->primary.ctx, w, &given);
    p->flight[(p->flight_head + p->nflight) % p->nslots] = s;
    p->nflight++;
    p->cur = next;
    /* The same dynamic columns in the same order: the store adds them by position. */
    tc_batch_reset_like(p->cur->batch, s->batch);
    p->batch_started_us = 0;
    return TC_OK;
}

/* Write the batch being filled and those in flight, and settle them all. */
tc_err tc_pipeline_flush(tc_pipeline *p)
{
    tc_err err = tc_pipeline_dispatch(p);

    return err == TC_OK ? tc_pipeline_settle(p, 0) : err;
}

/* The primary's skip mark of a partition (TC_SINK_MARK_NONE: nothing yet): its durable mark once
 * the batches in flight are settled, which they are before anything moves the consumer back. */
int64_t tc_pipeline_primary_next(const tc_pipeline *p, int32_t partition)
{
    return partition >= 0 && (size_t)partition < p->nmarks ? p->marks[partition].primary_next
                                                           : TC_SINK_MARK_NONE;
}

/* Which sinks a message at this offset is for (0: every one already has it). */
unsigned tc_pipeline_sinks_for(tc_pipeline *p, int32_t partition, int64_t offset)
{
    int64_t next = tc_pipeline_primary_next(p, partition);
    unsigned sinks = 0;

    if (next < 0 || offset >= next)
        sinks |= TC_ROW_PRIMARY;
    sinks |= tc_sinkset_wants(p->sinks, partition, offset);
    if (p->windows)
        sinks = tc_windows_sinks(p->windows, partition, offset, sinks, TC_ROW_PRIMARY);
    return sinks;
}

/* Record the message's offset with the sinks it was meant for. */
void tc_pipeline_note_offset(tc_pipeline *p, unsigned sinks, int32_t partition, int64_t offset)
{
    if ((sinks & TC_ROW_PRIMARY) &&
        !(p->windows && tc_windows_keeps_store_mark(p->windows, partition, offset)))
        tc_pipeline_note(p->cur->pending, &p->cur->npending, partition, offset);
    tc_sinkset_note(p->cur->gen, sinks, partition, offset);
}

/* Start the primary at the start of a run (connect, prepare); a failure is only logged (not
 * ready: the first write retries it). */
tc_err tc_pipeline_primary_start(tc_pipeline *p, int64_t now_us, char *errstr, size_t errstr_size)
{
    tc_err err = p->primary.ops->primary->start(p->primary.ctx, now_us, errstr, errstr_size);

    p->primary_ok = err == TC_OK;
    if (err != TC_OK) {
        tc_log_warn("pipeline", "%s (will retry when writing)", errstr);
        snprintf(p->not_ready, sizeof(p->not_ready), "the %s is unreachable (%s)", p->primary.name,
                 tc_err_name(err));
    }
    return err;
}

/* 1 when batches are in flight and no place is free: a batch past its time must wait. */
int tc_pipeline_places_busy(tc_pipeline *p)
{
    return p->nflight && p->primary.ops->primary->free_place(p->primary.ctx) < 0;
}

/* Make everything the primary has been given durable: the batch being filled and those in
 * flight. */
tc_err tc_pipeline_primary_flush(tc_pipeline *p)
{
    return tc_pipeline_flush(p);
}
