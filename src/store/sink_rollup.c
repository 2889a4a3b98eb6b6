/*
 * sink_rollup.c -- the 1-minute and 1-hour rollups and the latest state per device, a sink behind
 * process/sink.h.
 *
 * The rows of every batch the primary (the store) has committed join pending aggregates in memory
 * (tc_store_rollups_add: grouped per device and bucket, so a device's bucket costs one upsert per
 * flush, not one per batch). Every postgres.rollup_interval_ms -- or sooner, when the aggregates
 * reach TC_SINK_ROLLUP_GROUPS_MAX -- they are handed to a writer thread of their own
 * (store/async.h's rollups' writer) and written in one transaction that also moves the rollups'
 * marks (group "<group>/rollups" in ingest_offsets), conditionally on the marks this member read
 * (fencing): the durable mark. What is aggregated but not written is what the sink has only
 * taken; a failure, a fence or a revocation that cannot write drops all of it, and the pipeline
 * reads those rows again from the durable marks, giving them to the rollups only. So the rollups
 * stay exactly once.
 *
 * The aggregates mix partitions: a revocation that cannot write (commit == 0) drops them all, and
 * when partitions this member keeps had rows among them, the next flush fails retriably so that
 * the pipeline recovers the sink and reads those partitions again from their marks.
 *
 * Where no rollups' mark is stored, the rollups stand where the store does (a schema written by a
 * release that kept them in each batch's transaction, or nothing stored yet): open records that
 * mark before any row is given, so that a crash before the first flush finds one.
 *
 * A replay (`thermocline replay`) recomputes the rollups of its range itself: the sink is flagged
 * TC_SINK_NO_REPLAY and the pipeline leaves it out of a replay.
 *
 * Closed buckets (plain mode; store.h). The tables hold the minutes before W and the hours before
 * H (rollup_state); a flush writes only groups below them -- readings that came late -- and the
 * other buckets stay in readings, where the views compute them, until a materialization
 * (tc_rollup_materialize, ddl.c) closes them set-based. So a device-minute costs PostgreSQL one
 * row written once, not an upsert per flush that touched it. And the sink does not aggregate what
 * a flush would not write: each set of aggregates (the rows of one flush) is given bounds when it
 * starts empty -- W and H as last read, by the flush or the closing before -- and leaves out the
 * readings of minutes at or past its W bound and of hours at or past its H bound, noting the least
 * bucket it left out (rollup.h). In steady operation that is almost every reading (the open minute
 * and hour), which then costs a bucket and a comparison, not two hash aggregations. Exactly once,
 * for a reading r of offset o, minute m and hour h:
 *   1. r is in readings before the sink sees it (the primary committed it first).
 *   2. A flush decides for the groups of its rows under W' and H' read FOR SHARE in the
 *      transaction that writes them and moves the marks past o; a materialization takes the same
 *      row FOR UPDATE, so it runs wholly before or wholly after such a flush.
 *   3. Before: it aggregates the readings of [W, W') below the marks it sees, which do not include
 *      o yet; the flush then reads W' and must write r (m < W'). If r was aggregated, its group
 *      is written. If it was left out (m at or past the bound B), m lies in [B, W'): the flush
 *      finds the least bucket left out below W' and adds, in the same transaction, the readings
 *      of its own offset ranges in [B', W') -- B' that least bucket, at or past B -- from readings
 *      (tc_rollup_late, one set-based upsert). Those are exactly the rows it left out below W':
 *      the rows of its ranges are the rows it was given (the readings of other offsets are other
 *      flushes'), and every one of them below B was aggregated, none at or past it. After: the
 *      flush saw m >= W' and wrote nothing of r; the materialization sees the marks past o and
 *      aggregates r (m < its W).
 *   4. The same for the hours, with H and the H bound, independently: a reading may be
 *      aggregated for its minute and left out for its hour. rollup_1h is aggregated from
 *      rollup_1m when H moves: every reading of an hour below H is in rollup_1m by then or,
 *      flushed later, written to both by the flush (h < H' <= W', so m < W' too).
 * Bounds only ever err low (W and H only move on), so a stale one costs the late path's statement,
 * never a reading: the closings of this sink's own flushes or of another member of the group, and
 * W and H moved to infinity, all find the rows of the flush still in their ranges. In steady
 * operation the buckets left out are the open minute and hour, past any W' the flush can read, and
 * the late path runs only for readings a closing passed over while they waited in the aggregates
 * (some seconds at most, one flush interval). A schema without tc_rollup_late (functions made by
 * an older `thermocline migrate`) gets no bounds: every reading is aggregated, as before.
 * When to materialize is a matter of cost only: W moves to the minute that ended
 * postgres.rollup_close_after_ms ago, every TC_ROLLUP_CLOSE_EVERY_US, when the sink is caught up
 * (its newest readings are recent) -- a backlog, a backfill, leaves its buckets open and so cheap,
 * to be closed in one statement when it is through -- at the latest every
 * TC_ROLLUP_CLOSE_MAX_US, and at every stop.
 */
#include "store/sink_rollup.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/timeutil.h"
#include "store/async.h"
#include "store/store.h"

/* Partitions the sink tracks (as the pipeline: ids 0 .. TC_SINK_ROLLUP_PARTS - 1). */
#define TC_SINK_ROLLUP_PARTS 16384

/* Pending aggregate groups (per rollup table) that force a flush before the interval is up. While
 * the rollups' writer is busy the aggregates grow, and the larger the set it gets next, the fewer
 * upserts per reading: a device-hour is written once per flush, whatever the readings it got. A
 * backlog read at 150K readings/s from 10,000 devices at a 10 s cadence makes some 30,000
 * one-minute groups a second; at 20,000 the rollups took half of PostgreSQL's CPU in the
 * end-to-end benchmark, at 40,000 two fifths (the one-hour and latest-state rows are written half
 * as often). A bucket group is 224 bytes, a latest-state one 336; with the arrays' doubling and
 * two sets (the one aggregating, the one being written) this many stay under 50 MB. Reached while
 * the writer is still busy, they are the back-pressure: flush waits for the writer. */
#define TC_SINK_ROLLUP_GROUPS_MAX 40000

/* How often buckets are closed (each a statement aggregating the readings of the minutes passed
 * over, and the hours from those minutes): often enough that the views' open part stays a minute
 * or two of readings, rarely enough that its fixed cost does not matter. */
#define TC_ROLLUP_CLOSE_EVERY_US (10LL * 1000000LL)
/* Caught up: the newest reading aggregated since the last closing is at most this much older than
 * the minute about to close. Further behind, the readings are a backlog whose buckets would all be
 * late if closed now. */
#define TC_ROLLUP_CAUGHT_UP_US (60LL * 1000000LL)
/* ...and closed anyway after this long: a fleet whose clocks lag must not leave the views computing
 * hours from the readings. */
#define TC_ROLLUP_CLOSE_MAX_US (300LL * 1000000LL)

typedef struct tc_rollup_sink {
    const tc_config *cfg;   /* borrowed: postgres.rollup_interval_ms is read at each flush */
    tc_store *store;        /* marks, and the aggregates being filled */
    tc_store_async *writer; /* its rollups' writer writes a flush in the background */
    uint8_t open[TC_SINK_ROLLUP_PARTS];
    int64_t taken[TC_SINK_ROLLUP_PARTS];   /* next offset aggregated: pending, in flight, written */
    int64_t durable[TC_SINK_ROLLUP_PARTS]; /* next offset written */
    /* The flush in flight: the marks it moves, and the marks it moves them from (fencing). */
    tc_partition_offset flight[TC_SINK_ROLLUP_PARTS];
    int64_t flight_from[TC_SINK_ROLLUP_PARTS];
    size_t nflight;
    int busy;              /* a flush is in flight on the writer */
    int retry;             /* the writer holds the aggregates of a failed flush, for another try */
    int retrying;          /* the flush in flight is such a try */
    uint64_t rows_pending; /* rows aggregated and not handed to the writer */
    uint64_t rows_flight;  /* rows of the flush in flight */
    int64_t flushed_us;    /* when the last flush was started */
    int dropped;           /* a revocation dropped rows of kept partitions: recover them */
    /* Closing buckets: when last asked, and the newest event time aggregated since (INT64_MIN:
     * nothing since). */
    int64_t closed_us;
    int64_t newest_us;
    /* W and H as last read (INT64_MAX: none known, or no bucket to be left out): the bounds of the
     * next aggregates, which leave out the buckets from there on. late: the schema has
     * tc_rollup_late, without which no bucket may be left out. */
    int64_t w_us, h_us;
    int late;
    tc_sink_stats st;
} tc_rollup_sink;

static int tc_rollup_sink_part_ok(int32_t partition)
{
    return partition >= 0 && partition < TC_SINK_ROLLUP_PARTS;
}

/*
 * The rollups' marks of parts[0..n) into next[]: stored, or, where none is, the store's mark,
 * recorded now (only where still none is stored: fenced against another member doing the same).
 */
static tc_err tc_rollup_sink_marks(tc_rollup_sink *k, const int32_t *parts, size_t n, int64_t *next,
                                   char *errstr, size_t errstr_size)
{
    int64_t *store_next = NULL, *absent = NULL;
    tc_partition_offset *init = NULL;
    size_t m = 0;
    tc_err err;

    for (size_t i = 0; i < n; i++) {
        if (!tc_rollup_sink_part_ok(parts[i]))
            return tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                              "rollups: partition %d is past the %d partitions tracked", parts[i],
                              TC_SINK_ROLLUP_PARTS);
    }
    err = tc_store_load_rollup_offsets(k->store, parts, n, next, errstr, errstr_size);
    for (size_t i = 0; err == TC_OK && i < n; i++)
        m += next[i] == TC_STORE_MARK_ABSENT;
    if (err != TC_OK || m == 0)
        return err;
    store_next = malloc(n * sizeof(*store_next));
    absent = malloc(n * sizeof(*absent));
    init = malloc(n * sizeof(*init));
    err = store_next && absent && init
              ? tc_store_load_offsets(k->store, parts, n, store_next, errstr, errstr_size)
              : tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "rollups: out of memory");
    m = 0;
    for (size_t i = 0; err == TC_OK && i < n; i++) {
        if (next[i] != TC_STORE_MARK_ABSENT)
            continue;
        next[i] = store_next[i];
        absent[m] = TC_STORE_MARK_ABSENT;
        init[m++] = (tc_partition_offset){parts[i], store_next[i]};
    }
    if (err == TC_OK && m)
        err = tc_store_save_rollup_offsets(k->store, init, absent, m, errstr, errstr_size);
    free(store_next);
    free(absent);
    free(init);
    return err;
}

/* Leave out of the aggregates the buckets open when W and H were last read -- only when none are
 * pending: the buckets left out must be the same for every reading of a flush (see the top of the
 * file). */
static void tc_rollup_sink_bound(tc_rollup_sink *k)
{
    if (k->rows_pending == 0)
        tc_store_rollups_skip(k->store, k->late ? k->w_us : INT64_MAX,
                              k->late ? k->h_us : INT64_MAX);
}

/* The outcome of the flush in flight (waiting for it): its marks become durable, or the error
 * (the writer then keeps the aggregates, and flight[] their marks, for another try). */
static tc_err tc_rollup_sink_collect(tc_rollup_sink *k, char *errstr, size_t errstr_size)
{
    tc_err err;

    if (!k->busy)
        return TC_OK;
    k->busy = 0;
    err = tc_store_async_rollups_wait(k->writer, errstr, errstr_size);
    if (err != TC_OK)
        return err;
    k->retry = k->retrying = 0;
    tc_store_rollups_closed(tc_store_async_rollups_store(k->writer), &k->w_us, &k->h_us);
    for (size_t i = 0; i < k->nflight; i++)
        k->durable[k->flight[i].partition] = k->flight[i].next_offset;
    k->st.rows_durable += k->rows_flight;
    k->st.flushes++;
    k->rows_flight = 0;
    k->nflight = 0;
    return TC_OK;
}

/* Drop every aggregate, the writer's included (a flush in flight is waited for first: when it went
 * through, its marks are durable). 1 when an open partition had rows among them. */
static int tc_rollup_sink_drop(tc_rollup_sink *k)
{
    char errstr[TC_ERRSTR_MAX];
    int held = 0;

    while (k->busy && !tc_store_async_rollups_await(k->writer, TC_SINK_SLICE_MS))
        ;
    if (tc_rollup_sink_collect(k, errstr, sizeof(errstr)) != TC_OK)
        tc_log_warn("rollups", "%s (their rows are read again)", errstr);
    for (int32_t p = 0; p < TC_SINK_ROLLUP_PARTS; p++)
        held |= k->open[p] && k->taken[p] > k->durable[p];
    tc_store_rollups_clear(k->store);
    tc_store_rollups_clear(tc_store_async_rollups_store(k->writer));
    k->rows_pending = k->rows_flight = 0;
    k->nflight = 0;
    k->retry = k->retrying = 0;
    for (int32_t p = 0; p < TC_SINK_ROLLUP_PARTS; p++)
        k->taken[p] = k->durable[p];
    tc_rollup_sink_bound(k);
    return held;
}

static tc_err tc_rollup_sink_open(void *ctx, const int32_t *parts, size_t n, int64_t *next,
                                  char *errstr, size_t errstr_size)
{
    tc_rollup_sink *k = ctx;
    tc_err err = tc_rollup_sink_marks(k, parts, n, next, errstr, errstr_size);

    if (err == TC_OK)
        err = tc_store_rollups_load_closed(k->store, &k->w_us, &k->h_us, errstr, errstr_size);
    if (err == TC_OK) {
        k->late = k->w_us != INT64_MAX;
        tc_rollup_sink_bound(k);
    }
    for (size_t i = 0; err == TC_OK && i < n; i++) {
        k->open[parts[i]] = 1;
        k->taken[parts[i]] = k->durable[parts[i]] = next[i];
    }
    return err;
}

static tc_err tc_rollup_sink_append(void *ctx, const tc_sink_rows *rows, char *errstr,
                                    size_t errstr_size)
{
    tc_rollup_sink *k = ctx;

    if (rows->nrows && tc_store_rollups_add(k->store, rows->batch, rows->mask) != TC_OK)
        /* Part of the batch is in the aggregates: only a restart from the marks is exact. */
        return tc_err_set(TC_ERR_NOMEM, errstr, errstr_size,
                          "out of memory aggregating rollups (the next run resumes them from "
                          "their marks)");
    for (size_t i = 0; i < rows->batch->n; i++) {
        if ((!rows->mask || rows->mask[i]) && rows->batch->time_us[i] > k->newest_us)
            k->newest_us = rows->batch->time_us[i];
    }
    for (size_t i = 0; i < rows->nadvance; i++) {
        if (tc_rollup_sink_part_ok(rows->advance[i].partition))
            k->taken[rows->advance[i].partition] = rows->advance[i].next_offset;
    }
    k->st.rows += rows->nrows;
    k->rows_pending += rows->nrows;
    return TC_OK;
}

/* Whether this flush should close buckets too (see the top of the file). */
static int tc_rollup_sink_close_due(const tc_rollup_sink *k, int64_t now_us, int force)
{
    int64_t after_us = k->cfg->pg_rollup_close_after_ms * 1000LL;

    if (!k->cfg->pg_rollups || k->st.rows == 0)
        return 0;
    if (force) /* once a stop or a revocation, for what came since the last closing */
        return k->newest_us != INT64_MIN;
    if (now_us - k->closed_us < TC_ROLLUP_CLOSE_EVERY_US)
        return 0;
    return k->newest_us == INT64_MIN ||
           k->newest_us >= now_us - after_us - TC_ROLLUP_CAUGHT_UP_US ||
           now_us - k->closed_us >= TC_ROLLUP_CLOSE_MAX_US;
}

/* Ask the writer's next flush to close buckets, when due. */
static void tc_rollup_sink_ask_close(tc_rollup_sink *k, int64_t now_us, int force)
{
    if (!tc_rollup_sink_close_due(k, now_us, force))
        return;
    tc_store_rollups_materialize_next(tc_store_async_rollups_store(k->writer),
                                      k->cfg->pg_rollup_close_after_ms * 1000LL);
    k->closed_us = now_us;
    k->newest_us = INT64_MIN;
}

/* Hand the writer a flush: the pending aggregates with the marks they take the rollups to, or
 * (retry) again the aggregates it kept after a failure. */
static void tc_rollup_sink_start(tc_rollup_sink *k, int retry)
{
    k->busy = 1;
    k->retrying = retry;
    if (retry) {
        tc_store_async_flush_rollups(k->writer, NULL, k->flight, k->flight_from, k->nflight);
        return;
    }
    k->rows_flight = k->rows_pending;
    k->rows_pending = 0;
    tc_store_async_flush_rollups(k->writer, k->store, k->flight, k->flight_from, k->nflight);
    tc_rollup_sink_bound(k); /* the next aggregates, empty */
}

/*
 * A failed flush. A fence or a permanent error goes to the pipeline. A retriable one (a connection
 * the database closed when it restarted, columns another pipeline added) keeps the aggregates with
 * the writer: tried again at the next interval -- or at once when everything is asked for (a stop,
 * a revocation); failing again then, it goes to the pipeline, which drops the aggregates and reads
 * their rows again once the database is back.
 */
static tc_err tc_rollup_sink_failed(tc_rollup_sink *k, tc_err err, int64_t now_us, int force,
                                    int *busy, const char *errstr)
{
    if (err == TC_ERR_FENCED || !tc_err_is_retriable(err) || (force && k->retrying))
        return err;
    k->retry = 1;
    if (force) {
        tc_rollup_sink_start(k, 1);
        *busy = 1;
        return TC_OK;
    }
    tc_log_warn("rollups", "%s; rollups retried at the next interval", errstr);
    k->flushed_us = now_us;
    return TC_OK;
}

/*
 * Collect a finished flush; then, when the interval is up, the aggregates are large or force asks
 * for everything, hand the writer the aggregates (or again those of a failed flush). force: *busy
 * until every taken mark is durable.
 */
static tc_err tc_rollup_sink_flush(void *ctx, int64_t now_us, int force, int *busy, char *errstr,
                                   size_t errstr_size)
{
    tc_rollup_sink *k = ctx;
    int full = tc_store_rollups_pending(k->store) >= TC_SINK_ROLLUP_GROUPS_MAX;
    tc_err err;

    *busy = 0;
    if (k->dropped) {
        k->dropped = 0;
        return tc_err_set(TC_ERR_DB_CONN, errstr, errstr_size,
                          "rollups: aggregates dropped with revoked partitions; reading the "
                          "partitions kept again from their marks");
    }
    if (k->busy && full && !force) /* the back-pressure: wait for the writer */
        while (!tc_store_async_rollups_await(k->writer, TC_SINK_SLICE_MS))
            ;
    if (k->busy && !tc_store_async_rollups_done(k->writer)) {
        *busy = force;
        return TC_OK;
    }
    if (k->busy && (err = tc_rollup_sink_collect(k, errstr, errstr_size)) != TC_OK)
        return tc_rollup_sink_failed(k, err, now_us, force, busy, errstr);
    if (!force && !full && now_us - k->flushed_us < k->cfg->pg_rollup_interval_ms * 1000LL)
        return TC_OK;
    k->flushed_us = now_us;
    if (k->retry) {
        tc_rollup_sink_start(k, 1);
        *busy = force;
        return TC_OK;
    }
    k->nflight = 0;
    for (int32_t p = 0; p < TC_SINK_ROLLUP_PARTS; p++) {
        if (!k->open[p] || k->taken[p] <= k->durable[p])
            continue;
        k->flight_from[k->nflight] = k->durable[p];
        k->flight[k->nflight++] = (tc_partition_offset){p, k->taken[p]};
    }
    /* Nothing to write: a flush only when buckets are to be closed (an idle pipeline's, whose
     * newest readings are in open buckets still). */
    if (k->nflight == 0 && !tc_rollup_sink_close_due(k, now_us, force))
        return TC_OK;
    tc_rollup_sink_ask_close(k, now_us, force);
    tc_rollup_sink_start(k, 0);
    *busy = force;
    return TC_OK;
}

static int64_t tc_rollup_sink_durable(void *ctx, int32_t partition)
{
    tc_rollup_sink *k = ctx;

    return tc_rollup_sink_part_ok(partition) ? k->durable[partition] : TC_SINK_MARK_NONE;
}

static tc_err tc_rollup_sink_recover(void *ctx, const int32_t *parts, size_t n, int64_t *next,
                                     char *errstr, size_t errstr_size)
{
    tc_rollup_sink *k = ctx;

    (void)tc_rollup_sink_drop(k);
    k->dropped = 0;
    return tc_rollup_sink_open(ctx, parts, n, next, errstr, errstr_size);
}

static tc_err tc_rollup_sink_revoke(void *ctx, const int32_t *parts, size_t n, int commit,
                                    char *errstr, size_t errstr_size)
{
    tc_rollup_sink *k = ctx;

    (void)errstr;
    (void)errstr_size;
    for (size_t i = 0; i < n; i++) {
        if (tc_rollup_sink_part_ok(parts[i]))
            k->open[parts[i]] = 0;
    }
    /* Not written: the aggregates mix partitions, so they all go; the partitions kept that had rows
     * among them are read again (the next flush fails, and the pipeline recovers the sink). */
    if (!commit)
        k->dropped |= tc_rollup_sink_drop(k);
    return TC_OK;
}

static void tc_rollup_sink_stats(void *ctx, tc_sink_stats *out)
{
    tc_rollup_sink *k = ctx;

    *out = k->st;
    out->pending = tc_store_rollups_pending(k->store);
}

static void tc_rollup_sink_close(void *ctx)
{
    tc_rollup_sink *k = ctx;

    if (!k)
        return;
    tc_store_async_destroy(k->writer); /* waits for a flush in flight */
    tc_store_destroy(k->store);
    free(k);
}

static int64_t tc_rollup_sink_stored(void *ctx, int32_t partition)
{
    tc_rollup_sink *k = ctx;
    char errstr[TC_ERRSTR_MAX];
    int64_t next;

    if (tc_store_load_rollup_offsets(k->store, &partition, 1, &next, errstr, sizeof(errstr)) !=
        TC_OK)
        return TC_SINK_MARK_NONE; /* not known now: asked again at the next check */
    return next == TC_STORE_MARK_ABSENT ? TC_SINK_MARK_ALL : next;
}

static const tc_sink_ops tc_rollup_sink_ops = {
    .name = "rollups",
    .flags = TC_SINK_NO_REPLAY,
    .open = tc_rollup_sink_open,
    .append = tc_rollup_sink_append,
    .flush = tc_rollup_sink_flush,
    .durable = tc_rollup_sink_durable,
    .recover = tc_rollup_sink_recover,
    .revoke = tc_rollup_sink_revoke,
    .stats = tc_rollup_sink_stats,
    .close = tc_rollup_sink_close,
    .stored = tc_rollup_sink_stored,
};

tc_err tc_sink_rollup_new(const tc_config *cfg, tc_sink *out, char *errstr, size_t errstr_size)
{
    tc_store_options so;
    tc_rollup_sink *k;

    out->ops = NULL;
    k = calloc(1, sizeof(*k));
    if (!k)
        return tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory");
    k->cfg = cfg;
    /* postgres.rollups=false leaves the rollup tables out; the latest state is written still. */
    tc_store_options_from_config(&so, cfg);
    k->store = tc_store_new(&so, errstr, errstr_size);
    /* One batch writer that never gets a batch (it connects on its first write only) and the
     * rollups' writer this sink uses. */
    k->writer = k->store ? tc_store_async_new(&so, 1, errstr, errstr_size) : NULL;
    if (!k->writer) {
        tc_store_destroy(k->store);
        free(k);
        return TC_ERR_NOMEM;
    }
    for (int32_t p = 0; p < TC_SINK_ROLLUP_PARTS; p++)
        k->taken[p] = k->durable[p] = TC_SINK_MARK_NONE;
    k->newest_us = INT64_MIN;
    k->w_us = k->h_us = INT64_MAX;
    k->closed_us = tc_time_now_us(); /* a backlog read from the start is not closed at once */
    out->ops = &tc_rollup_sink_ops;
    out->ctx = k;
    snprintf(out->name, sizeof(out->name), "%s", tc_rollup_sink_ops.name);
    return TC_OK;
}
