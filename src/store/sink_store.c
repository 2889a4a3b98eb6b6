/*
 * sink_store.c -- the store as the pipeline's primary sink (sink_store.h).
 *
 * A thin adapter: the writing is store.c's and the order async.h's. What lives here is what the
 * pipeline used to keep about the store by name: the marks of every partition and the fencing
 * `from` of every batch in flight (the ordering argument is in the header), the pool of writers
 * (the places), and the isolation of the rows PostgreSQL refuses, by bisection on the writer where
 * the batch failed.
 */
#include "store/sink_store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "store/async.h"
#include "store/store.h"

/* lock_timeout of the writers' sessions when there are several (async.h): long enough for any
 * lock a batch's transaction waits for in normal operation, short enough to be a hiccup. */
#define TC_SINK_STORE_LOCK_TIMEOUT_MS 5000

/* One partition: the next offset stored (-1: nothing yet), and the fencing chain of the batches in
 * flight (sent, valid while gen is the store's current generation). */
typedef struct tc_store_mark {
    int64_t next;
    int64_t sent;
    uint32_t gen;
} tc_store_mark;

/* A place (writer) and the batch it holds: the marks it moves once committed, and the `from` of
 * each (the caller's advance array stays the caller's until collect). */
typedef struct tc_store_place {
    const tc_partition_offset *advance;
    size_t nadvance;
    int64_t *from; /* TC_SINK_ADVANCE_MAX entries */
    size_t rows;
    int busy;
} tc_store_place;

typedef struct tc_sink_store {
    const tc_config *cfg;
    tc_store *store;         /* the pipeline thread's connection: marks, dead letters, DDL */
    tc_store_async *writers; /* the places */
    tc_store_place places[TC_STORE_WRITERS_MAX];
    int inflight;         /* batches submitted and not collected */
    uint32_t gen;         /* the fencing chain's generation (0: none) */
    int unfenced;         /* a replay */
    tc_store_mark *marks; /* TC_SINK_STORE_PARTS */
    tc_batch *probe;      /* rows of a refused batch, probed to find the refused ones */
    tc_sink_stats stats;
} tc_sink_store;

static int tc_sink_store_part_ok(int32_t partition)
{
    return partition >= 0 && partition < TC_SINK_STORE_PARTS;
}

/* A batch committed: its partitions' marks move to its advance. */
static void tc_sink_store_moved(tc_sink_store *ss, const tc_partition_offset *adv, size_t n,
                                size_t rows)
{
    for (size_t i = 0; i < n; i++) {
        if (tc_sink_store_part_ok(adv[i].partition))
            ss->marks[adv[i].partition].next = adv[i].next_offset;
    }
    ss->stats.rows_durable += rows;
    ss->stats.flushes++;
}

static tc_err tc_sink_store_open(void *ctx, const int32_t *parts, size_t n, int64_t *next,
                                 char *errstr, size_t errstr_size)
{
    tc_sink_store *ss = ctx;
    tc_err err = tc_store_load_offsets(ss->store, parts, n, next, errstr, errstr_size);

    for (size_t i = 0; err == TC_OK && i < n; i++) {
        if (!tc_sink_store_part_ok(parts[i]))
            continue;
        ss->marks[parts[i]].next = next[i];
        ss->marks[parts[i]].gen = 0; /* the batches in flight have none of it: moves from here */
    }
    return err;
}

/* Rows go through submit (tc_sink_primary_ops): the generic append is not the primary's. */
static tc_err tc_sink_store_append(void *ctx, const tc_sink_rows *rows, char *errstr,
                                   size_t errstr_size)
{
    (void)ctx;
    (void)rows;
    return tc_err_set(TC_ERR_INVALID, errstr, errstr_size,
                      "sink store: rows go through its batches in flight (submit)");
}

/* Everything submitted is made durable by collect and rewrite: nothing is due here. */
static tc_err tc_sink_store_flush(void *ctx, int64_t now_us, int force, int *busy, char *errstr,
                                  size_t errstr_size)
{
    (void)ctx;
    (void)now_us;
    (void)force;
    (void)errstr;
    (void)errstr_size;
    *busy = 0;
    return TC_OK;
}

static int64_t tc_sink_store_durable(void *ctx, int32_t partition)
{
    const tc_sink_store *ss = ctx;

    return tc_sink_store_part_ok(partition) ? ss->marks[partition].next : TC_SINK_MARK_NONE;
}

/* The pipeline has collected every batch in flight before it recovers: read the marks again. */
static tc_err tc_sink_store_recover(void *ctx, const int32_t *parts, size_t n, int64_t *next,
                                    char *errstr, size_t errstr_size)
{
    return tc_sink_store_open(ctx, parts, n, next, errstr, errstr_size);
}

/* Nothing is held past the batches in flight, which the pipeline collects first. */
static tc_err tc_sink_store_revoke(void *ctx, const int32_t *parts, size_t n, int commit,
                                   char *errstr, size_t errstr_size)
{
    (void)ctx;
    (void)parts;
    (void)n;
    (void)commit;
    (void)errstr;
    (void)errstr_size;
    return TC_OK;
}

static void tc_sink_store_stats(void *ctx, tc_sink_stats *out)
{
    const tc_sink_store *ss = ctx;

    *out = ss->stats;
}

static void tc_sink_store_close(void *ctx)
{
    tc_sink_store *ss = ctx;

    if (!ss)
        return;
    tc_store_async_destroy(ss->writers);
    tc_store_destroy(ss->store);
    for (int w = 0; w < TC_STORE_WRITERS_MAX; w++)
        free(ss->places[w].from);
    free(ss->marks);
    tc_batch_destroy(ss->probe);
    free(ss);
}

static tc_err tc_sink_store_start(void *ctx, int64_t now_us, char *errstr, size_t errstr_size)
{
    tc_sink_store *ss = ctx;
    tc_err err = tc_store_connect(ss->store, errstr, errstr_size);

    if (err == TC_OK)
        err = tc_store_ensure_partitions_around(
            ss->store, now_us, (int)(ss->cfg->limits.max_age_s / 86400) + 1, errstr, errstr_size);
    return err;
}

static int tc_sink_store_free_place(void *ctx)
{
    tc_sink_store *ss = ctx;

    return tc_store_async_free_writer(ss->writers);
}

/*
 * Fencing (the header, 2.): the stored offset each partition of the batch moves from -- where the
 * batches before it in flight take it, or, when none has it, where the store stands.
 */
static void tc_sink_store_submit(void *ctx, int w, const tc_sink_rows *rows)
{
    tc_sink_store *ss = ctx;
    tc_store_place *pl = &ss->places[w];

    if (ss->inflight == 0 && ++ss->gen == 0) /* 0: "none" in tc_store_mark.gen */
        ss->gen = 1;
    for (size_t i = 0; i < rows->nadvance; i++) {
        int32_t part = rows->advance[i].partition;
        tc_store_mark *m;
        if (!tc_sink_store_part_ok(part)) { /* cannot be: assigned partitions have marks */
            pl->from[i] = -1;
            continue;
        }
        m = &ss->marks[part];
        pl->from[i] = m->gen == ss->gen ? m->sent : m->next;
        m->sent = rows->advance[i].next_offset;
        m->gen = ss->gen;
    }
    pl->advance = rows->advance;
    pl->nadvance = rows->nadvance;
    pl->rows = rows->batch->n;
    pl->busy = 1;
    ss->inflight++;
    ss->stats.rows += rows->batch->n;
    tc_store_async_submit(ss->writers, w, rows->batch, rows->dlq, rows->advance,
                          ss->unfenced ? NULL : pl->from, rows->nadvance);
}

static int tc_sink_store_done(void *ctx, int w)
{
    tc_sink_store *ss = ctx;

    return tc_store_async_done(ss->writers, w);
}

static int tc_sink_store_await(void *ctx, int w, int timeout_ms)
{
    tc_sink_store *ss = ctx;

    return tc_store_async_await(ss->writers, w, timeout_ms);
}

static tc_err tc_sink_store_collect(void *ctx, int w, int *cascaded, char *errstr,
                                    size_t errstr_size)
{
    tc_sink_store *ss = ctx;
    tc_store_place *pl = &ss->places[w];
    tc_err err = tc_store_async_wait(ss->writers, w, cascaded, errstr, errstr_size);

    if (!pl->busy)
        return err;
    pl->busy = 0;
    ss->inflight--;
    if (err == TC_OK)
        tc_sink_store_moved(ss, pl->advance, pl->nadvance, pl->rows);
    return err;
}

static tc_err tc_sink_store_rewrite(void *ctx, int w, const tc_sink_rows *rows, char *errstr,
                                    size_t errstr_size)
{
    tc_sink_store *ss = ctx;
    const tc_store_place *pl = &ss->places[w];
    tc_err err;

    if (!rows->batch->n && !rows->dlq->n && !rows->nadvance)
        return TC_OK;
    err =
        tc_store_write(tc_store_async_store(ss->writers, w), rows->batch, rows->dlq, rows->advance,
                       ss->unfenced ? NULL : pl->from, rows->nadvance, errstr, errstr_size);
    if (err == TC_OK)
        tc_sink_store_moved(ss, rows->advance, rows->nadvance, rows->batch->n);
    return err;
}

/*
 * Find the rows of [lo, hi) PostgreSQL refuses by bisection -- COPYs of halves in transactions
 * that are rolled back, O(k log n) for k bad rows -- on st, the writer where the batch failed
 * (idle now). TC_ERR_INVALID past cap.
 */
static tc_err tc_sink_store_bisect(tc_sink_store *ss, tc_store *st, const tc_batch *rows, size_t lo,
                                   size_t hi, tc_sink_refusal *out, size_t cap, size_t *n)
{
    char errstr[TC_ERRSTR_MAX];
    tc_err err;

    tc_batch_reset_like(ss->probe, rows);
    for (size_t i = lo; i < hi; i++)
        tc_batch_copy_row(ss->probe, rows, i);
    err = tc_store_probe_rows(st, ss->probe, errstr, sizeof(errstr));
    if (err == TC_OK || !tc_store_refused_rows(st))
        return err;
    if (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        err = tc_sink_store_bisect(ss, st, rows, lo, mid, out, cap, n);
        return err == TC_OK ? tc_sink_store_bisect(ss, st, rows, mid, hi, out, cap, n) : err;
    }
    if (*n >= cap)
        return TC_ERR_INVALID;
    out[*n].row = lo;
    snprintf(out[*n].why, sizeof(out[0].why), "%.*s", (int)sizeof(out[0].why) - 1, errstr);
    (*n)++;
    return TC_OK;
}

/*
 * PostgreSQL refused the batch because of some rows' values (a value too long for a column an
 * operator narrowed, a CHECK added to readings). More than cap of them, or every row of a batch
 * of several, is not some rows but the schema: the caller stops the run.
 */
static tc_err tc_sink_store_refused(void *ctx, int w, const tc_batch *rows, tc_sink_refusal *out,
                                    size_t cap, size_t *n, char *errstr, size_t errstr_size)
{
    tc_sink_store *ss = ctx;
    tc_store *st = tc_store_async_store(ss->writers, w);
    tc_err err;

    *n = 0;
    if (!rows->n || !tc_store_refused_rows(st))
        return TC_OK;
    err = tc_sink_store_bisect(ss, st, rows, 0, rows->n, out, cap, n);
    if (err == TC_ERR_INVALID || (err == TC_OK && rows->n > 1 && *n == rows->n))
        return tc_err_set(TC_ERR_INVALID, errstr, errstr_size,
                          "PostgreSQL refuses %s %zu rows of one batch of topic \"%s\" "
                          "(first: %s): stopping rather than dead-lettering the stream",
                          err == TC_ERR_INVALID ? "more than" : "all the",
                          err == TC_ERR_INVALID ? cap : rows->n, ss->cfg->kafka_topic,
                          *n ? out[0].why : "?");
    if (err != TC_OK)
        return tc_err_set(err, errstr, errstr_size, "could not isolate refused rows: %s",
                          tc_err_name(err));
    return TC_OK;
}

static tc_err tc_sink_store_dead_letters(void *ctx, int32_t partition, int64_t from, int64_t to,
                                         int64_t *out, size_t cap, size_t *n, char *errstr,
                                         size_t errstr_size)
{
    tc_sink_store *ss = ctx;

    return tc_store_dead_offsets(ss->store, partition, from, to, out, cap, n, errstr, errstr_size);
}

static tc_err tc_sink_store_stored_many(void *ctx, const int32_t *parts, size_t n, int64_t *next,
                                        char *errstr, size_t errstr_size)
{
    tc_sink_store *ss = ctx;

    return tc_store_load_offsets(ss->store, parts, n, next, errstr, errstr_size);
}

static void tc_sink_store_unfenced(void *ctx)
{
    tc_sink_store *ss = ctx;

    ss->unfenced = 1;
}

static const tc_sink_primary_ops tc_sink_store_primary = {
    .start = tc_sink_store_start,
    .free_place = tc_sink_store_free_place,
    .submit = tc_sink_store_submit,
    .done = tc_sink_store_done,
    .await = tc_sink_store_await,
    .collect = tc_sink_store_collect,
    .rewrite = tc_sink_store_rewrite,
    .refused = tc_sink_store_refused,
    .dead_letters = tc_sink_store_dead_letters,
    .stored_many = tc_sink_store_stored_many,
    .unfenced = tc_sink_store_unfenced,
};

static const tc_sink_ops tc_sink_store_ops = {
    .name = "store",
    .flags = TC_SINK_PRIMARY | TC_SINK_KEEPS_ROWS,
    .max_in_flight = 0, /* postgres.writers: the places (free_place) */
    .open = tc_sink_store_open,
    .append = tc_sink_store_append,
    .flush = tc_sink_store_flush,
    .durable = tc_sink_store_durable,
    .recover = tc_sink_store_recover,
    .revoke = tc_sink_store_revoke,
    .stats = tc_sink_store_stats,
    .close = tc_sink_store_close,
    .stored = NULL,
    .primary = &tc_sink_store_primary,
};

/* Whether pipeline.sinks names a sink (the list was checked when the set was made). */
static int tc_sink_store_listed(const tc_config *cfg, const char *name)
{
    char names[TC_SINKS_MAX][TC_SINK_NAME_MAX], errstr[TC_ERRSTR_MAX];
    size_t n = 0;

    if (tc_sink_parse_list(cfg->pipeline_sinks, names, &n, errstr, sizeof(errstr)) != TC_OK)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (!strcmp(names[i], name))
            return 1;
    }
    return 0;
}

tc_err tc_sink_store_new(const tc_config *cfg, tc_sink *out, char *errstr, size_t errstr_size)
{
    tc_sink_store *ss = calloc(1, sizeof(*ss));
    tc_store_options so;
    size_t cap = tc_config_batch_cap(cfg);

    if (!ss)
        return tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory");
    ss->cfg = cfg;
    tc_store_options_from_config(&so, cfg);
    /* Shorthands: postgres.rollups=false, or rollups left out of pipeline.sinks. */
    if (!tc_sink_store_listed(cfg, "rollups"))
        so.rollups = -1;
    ss->store = tc_store_new(&so, errstr, errstr_size);
    if (!ss->store) {
        tc_sink_store_close(ss);
        return TC_ERR_CONFIG;
    }
    /* Writers wait for their turn to commit with their transaction open: a lock that DDL of
     * another writer waits for (async.h). The timeout turns that deadlock into a retry. */
    so.lock_timeout_ms = cfg->pg_writers > 1 ? TC_SINK_STORE_LOCK_TIMEOUT_MS : 0;
    ss->writers = tc_store_async_new(&so, (int)cfg->pg_writers, errstr, errstr_size);
    ss->marks = malloc(TC_SINK_STORE_PARTS * sizeof(*ss->marks));
    ss->probe = tc_batch_new(cap, 0);
    if (!ss->writers) { /* errstr says why: the count of postgres.writers, a thread */
        tc_sink_store_close(ss);
        return TC_ERR_CONFIG;
    }
    if (!ss->marks || !ss->probe) {
        tc_sink_store_close(ss);
        return tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory allocating batches");
    }
    for (size_t i = 0; i < TC_SINK_STORE_PARTS; i++)
        ss->marks[i] = (tc_store_mark){.next = TC_SINK_MARK_NONE, .sent = TC_SINK_MARK_NONE};
    for (int w = 0; w < tc_store_async_writers(ss->writers); w++) {
        ss->places[w].from = malloc(TC_SINK_ADVANCE_MAX * sizeof(*ss->places[w].from));
        if (!ss->places[w].from) {
            tc_sink_store_close(ss);
            return tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory");
        }
    }
    out->ops = &tc_sink_store_ops;
    out->ctx = ss;
    return TC_OK;
}
