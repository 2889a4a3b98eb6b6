/*
 * async.h -- the store's batch writers: threads of their own, commits in order.
 *
 * Written inline, a batch costs the pipeline its decoding plus its transaction: while PostgreSQL
 * runs the COPY and the commit the pipeline waits, and while the pipeline decodes the next batch
 * PostgreSQL idles. A tc_store_async is a pool of writers, each a thread with a tc_store of its own
 * (its own connection, partition cache and prepared statements) that runs one batch's transaction
 * at a time. The caller hands a batch to a free writer (tc_store_async_submit), decodes the next
 * one meanwhile, and collects each outcome (tc_store_async_wait), oldest first.
 *
 * Order. Batches mix partitions, and a batch's transaction moves each partition's stored offset to
 * the end of that batch; if a later batch committed while an earlier one failed, the offsets would
 * say the earlier rows are stored. So the writers COPY in parallel but COMMIT in the order the
 * batches were submitted: each waits, with its transaction open, until the batch before it has
 * committed or failed. After a failure, every batch submitted after it rolls back instead (its
 * outcome says "cascaded"), and the caller writes them again, in order, once it has dealt with the
 * failed one. With one writer there is nothing to order: one batch is written while the next is
 * decoded.
 *
 * Because a writer may wait for its turn while its transaction holds locks, another writer's DDL
 * (a new daily partition, a new metric column) could wait for it forever, a deadlock PostgreSQL
 * cannot see. Writers therefore run with a lock_timeout (tc_store_options.lock_timeout_ms) when
 * there are several: the DDL gives up, its batch fails as retriable, and the retry comes when no
 * other batch is open.
 *
 * Ownership: what submit is given (rows, dead letters, offsets) stays the caller's, who must
 * neither change nor free it until tc_store_async_wait has returned for that writer. Between a
 * wait and the next submit the writer's store is idle and the caller may use it directly
 * (tc_store_async_store), say to retry the batch that failed.
 */
#ifndef TC_STORE_ASYNC_H
#define TC_STORE_ASYNC_H

#include <stddef.h>

#include "core/batch.h"
#include "core/deadletter.h"
#include "core/error.h"
#include "store/store.h"

typedef struct tc_store_async tc_store_async;

/* Most writers of one pool: a connection each, and PostgreSQL's default max_connections is 100. */
#define TC_STORE_WRITERS_MAX 16

/* A pool of `writers` (1..TC_STORE_WRITERS_MAX) writers with stores made from opt (connected on
 * their first write). NULL with errstr set when a thread cannot start or memory is short. */
tc_store_async *tc_store_async_new(const tc_store_options *opt, int writers, char *errstr,
                                   size_t errstr_size);
/* Waits for the batches in flight (their outcomes are lost), stops the threads, closes the
 * stores. */
void tc_store_async_destroy(tc_store_async *a);

int tc_store_async_writers(const tc_store_async *a);
/* A writer with no batch (-1 when every one has one). */
int tc_store_async_free_writer(const tc_store_async *a);

/* Start the transaction of rows, dead letters and offsets on free writer w; it commits after the
 * batches submitted before it. from: fencing, as tc_store_write (the caller's until the wait). */
void tc_store_async_submit(tc_store_async *a, int w, const tc_batch *rows, const tc_dlq_batch *dlq,
                           const tc_partition_offset *offsets, const int64_t *from,
                           size_t noffsets);
/* 1 when writer w's batch is committed (or failed): wait will not block. */
int tc_store_async_done(tc_store_async *a, int w);
/* Wait up to timeout_ms for writer w's batch to be done: 1 when it is (wait will not block). For
 * a caller that must do something else now and then while it waits (serve the consumer). */
int tc_store_async_await(tc_store_async *a, int w, int timeout_ms);
/* Block until writer w's batch is done and free the writer: TC_OK when committed, else the error
 * with errstr filled, and *cascaded set when the batch only rolled back because one submitted
 * before it failed (it was fine itself: write it again). TC_OK when w has no batch. */
tc_err tc_store_async_wait(tc_store_async *a, int w, int *cascaded, char *errstr,
                           size_t errstr_size);

/* Writer w's store, for the caller's own use while w has no batch (tc_store_refused_rows after a
 * failed batch, a retry of it). */
tc_store *tc_store_async_store(tc_store_async *a, int w);

/*
 * The rollups' writer, one more thread and connection, outside the commit order of the batches
 * (the rollups have marks of their own). Writing the aggregates of a second of readings from
 * 10,000 devices is three upserts of 10,000 rows, a third of a second that the caller would
 * otherwise spend waiting; instead it hands them over and aggregates the next rows meanwhile.
 *
 * tc_store_async_flush_rollups moves the pending aggregates of `from` to the writer's store
 * (tc_store_rollups_hand_over: the writer must hold none, i.e. its last flush succeeded) and
 * starts tc_store_rollups_flush of them with marks; with from NULL it tries again the aggregates
 * it holds after a failed flush. marks (and marks_from, the fencing of tc_store_rollups_flush)
 * stay the caller's until the wait. One flush at a time.
 */
void tc_store_async_flush_rollups(tc_store_async *a, tc_store *from,
                                  const tc_partition_offset *marks, const int64_t *marks_from,
                                  size_t nmarks);
int tc_store_async_rollups_busy(const tc_store_async *a);
/* 1 when the flush is over: wait will not block. */
int tc_store_async_rollups_done(tc_store_async *a);
/* tc_store_async_await for the rollups' writer. */
int tc_store_async_rollups_await(tc_store_async *a, int timeout_ms);
/* Block until the flush is over: its result (TC_OK when none is in flight). On failure the
 * writer's store keeps the aggregates for another try. */
tc_err tc_store_async_rollups_wait(tc_store_async *a, char *errstr, size_t errstr_size);
/* The rollups' writer's store (idle between a wait and the next flush). */
tc_store *tc_store_async_rollups_store(tc_store_async *a);

#endif
