/*
 * sink_store.h -- the store (PostgreSQL's readings, ingest_offsets and dead letters, written by the
 * ordered writer pool of store/async.h) behind the pipeline's sink interface (process/sink.h), as
 * its primary: TC_SINK_PRIMARY | TC_SINK_KEEPS_ROWS, with the batches in flight of
 * tc_sink_primary_ops. The pipeline names no part of it: it drives the places (the writers), the
 * marks (durable()), the refusals and the dead letters through the callbacks.
 *
 * Marks. Per partition the store keeps `next`, the next offset ingest_offsets holds as far as this
 * member knows: read at open/recover, moved when a batch's transaction has committed (collect or
 * rewrite returning TC_OK). It is durable(): the pipeline's skip rule for the store and Kafka's
 * commit use it.
 *
 * Fencing and order -- why exactly once holds with batches in flight on several writers:
 *  1. Each batch's transaction writes its rows, its dead letters and the new next offset of every
 *     partition it touches; the offsets update is conditional on the row still holding `from`, the
 *     offset this member believes stored before the batch (store.h, tc_store_write). One
 *     transaction: the rows are stored if and only if the offsets moved.
 *  2. `from` of a partition is the `to` of the latest batch submitted before it that touches the
 *     partition, or `next` when none in flight does (a generation counter: a batch submitted when
 *     no place holds one starts a new generation, so a `sent` of an older one is never used).
 *  3. The writers commit in submit order (async.h); after a failure, every later batch rolls back
 *     ("cascaded") and is written again in the same order, once the failed one is written, with
 *     the `from` computed at submit: the chain of from -> to is unbroken.
 *  4. So a batch commits only if ingest_offsets still holds what this member last wrote or read.
 *     Another member that took the partition over (this one evicted while stalled) moved it on,
 *     or will: this member's write then finds another value, rolls back and fails with
 *     TC_ERR_FENCED; the pipeline drops what it holds and recovers (reads the marks again). Two
 *     members can never both commit rows of the same offset.
 *  5. A replay (unfenced) moves the marks from whatever is stored, only ever up (store.h): its
 *     windows, not the marks, say what it owns.
 *
 * Not thread-safe: the pipeline thread calls every callback; the writers' threads are the pool's.
 */
#ifndef TC_STORE_SINK_STORE_H
#define TC_STORE_SINK_STORE_H

#include "process/sink.h"

/* Partitions the store keeps marks of (ids 0 .. TC_SINK_STORE_PARTS - 1), as the pipeline. */
#define TC_SINK_STORE_PARTS 16384

/* pipeline.sinks "store", the primary: postgres.* (postgres.writers places). The rollups' columns
 * follow "rollups" in pipeline.sinks (postgres.rollups=false, or rollups left out: none). */
tc_err tc_sink_store_new(const tc_config *cfg, tc_sink *out, char *errstr, size_t errstr_size);

#endif
