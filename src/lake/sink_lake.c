/*
 * sink_lake.c -- the lake behind the pipeline's sink interface (process/sink.h).
 *
 * An adapter, nothing more: the lake (lake/sink.h) already keeps the contract -- a progress file
 * per partition is its durable mark, replaced under a lock only from the progress it was read at
 * (fencing), open files are what it has only taken, and recovery from the progress files removes
 * what a crashed commit left. open and recover are tc_lake_open_partitions, append is
 * tc_lake_append plus tc_lake_advance, flush is tc_lake_commit_due (lake.roll_bytes and
 * lake.roll_seconds are its policy), revoke is tc_lake_close_partition.
 *
 * A failed call drops every open file at once (what is only taken goes anyway, and a file system
 * that turned read-only can then be remounted while the sink backs off); the durable marks stay
 * readable until recover reads the progress files again.
 */
#include "lake/sink_lake.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "lake/layout.h"
#include "lake/sink.h"

/* Partitions the adapter remembers as open (the pipeline tracks no more). */
#define TC_LAKE_SINK_PARTS 16384

typedef struct tc_lake_sink {
    tc_lake *lake;
    const char *root, *topic; /* the configuration's (borrowed) */
    uint8_t open[TC_LAKE_SINK_PARTS];
    int64_t durable[TC_LAKE_SINK_PARTS]; /* the marks while the files are dropped after a failure */
    int dropped;                         /* a failure dropped the open files: durable[] answers */
    tc_sink_stats st;
} tc_lake_sink;

static tc_err tc_lake_sink_codec(const char *name, tc_parquet_codec *out)
{
    if (!strcmp(name, "snappy"))
        *out = TC_PQ_SNAPPY;
    else if (!strcmp(name, "zstd"))
        *out = TC_PQ_ZSTD;
    else if (!strcmp(name, "none"))
        *out = TC_PQ_UNCOMPRESSED;
    else
        return TC_ERR_CONFIG;
    return TC_OK;
}

static void tc_lake_sink_committed(void *opaque, const tc_lake_file_info *f)
{
    tc_lake_sink *k = opaque;

    k->st.rows_durable += f->rows;
    k->st.flushes++;
}

static int tc_lake_sink_part_ok(int32_t partition)
{
    return partition >= 0 && partition < TC_LAKE_SINK_PARTS;
}

/* After a failure: drop the open files of every partition, remembering the durable marks. */
static tc_err tc_lake_sink_failed(tc_lake_sink *k, tc_err err)
{
    char errstr[TC_ERRSTR_MAX];

    for (int32_t p = 0; p < TC_LAKE_SINK_PARTS; p++) {
        if (!k->open[p])
            continue;
        k->durable[p] = tc_lake_durable(k->lake, p);
        tc_lake_close_partition(k->lake, p, 0, errstr, sizeof(errstr));
    }
    k->dropped = 1;
    k->st.pending = 0;
    return err;
}

static tc_err tc_lake_sink_open(void *ctx, const int32_t *parts, size_t n, int64_t *next,
                                char *errstr, size_t errstr_size)
{
    tc_lake_sink *k = ctx;
    tc_err err = tc_lake_open_partitions(k->lake, parts, n, next, errstr, errstr_size);

    for (size_t i = 0; err == TC_OK && i < n; i++) {
        if (tc_lake_sink_part_ok(parts[i]))
            k->open[parts[i]] = 1;
    }
    return err;
}

static tc_err tc_lake_sink_append(void *ctx, const tc_sink_rows *rows, char *errstr,
                                  size_t errstr_size)
{
    tc_lake_sink *k = ctx;
    tc_err err;

    if (k->dropped)
        return tc_err_set(TC_ERR_IO, errstr, errstr_size, "lake: not recovered yet");
    err =
        rows->nrows ? tc_lake_append(k->lake, rows->batch, rows->mask, errstr, errstr_size) : TC_OK;
    if (err != TC_OK)
        return tc_lake_sink_failed(k, err);
    for (size_t i = 0; i < rows->nadvance; i++)
        tc_lake_advance(k->lake, rows->advance[i].partition, rows->advance[i].next_offset);
    k->st.rows += rows->nrows;
    k->st.pending += rows->nrows;
    return TC_OK;
}

static tc_err tc_lake_sink_flush(void *ctx, int64_t now_us, int force, int *busy, char *errstr,
                                 size_t errstr_size)
{
    tc_lake_sink *k = ctx;
    uint64_t before = k->st.rows_durable;
    tc_err err;

    *busy = 0;
    if (k->dropped)
        return tc_err_set(TC_ERR_IO, errstr, errstr_size, "lake: not recovered yet");
    err = tc_lake_commit_due(k->lake, now_us, force, errstr, errstr_size);
    if (err != TC_OK)
        return tc_lake_sink_failed(k, err);
    k->st.pending -=
        k->st.rows_durable - before < k->st.pending ? k->st.rows_durable - before : k->st.pending;
    return TC_OK;
}

static int64_t tc_lake_sink_durable(void *ctx, int32_t partition)
{
    tc_lake_sink *k = ctx;

    if (k->dropped && tc_lake_sink_part_ok(partition) && k->open[partition])
        return k->durable[partition];
    return tc_lake_durable(k->lake, partition);
}

/* The partition's progress file, whoever writes it now. */
static int64_t tc_lake_sink_stored(void *ctx, int32_t partition)
{
    tc_lake_sink *k = ctx;
    char errstr[TC_ERRSTR_MAX];
    int64_t next;

    if (tc_lake_progress_read(k->root, k->topic, partition, &next, errstr, sizeof(errstr)) != TC_OK)
        return TC_SINK_MARK_NONE; /* unreadable: not known to be whole */
    return next < 0 ? TC_SINK_MARK_NONE : next;
}

static tc_err tc_lake_sink_recover(void *ctx, const int32_t *parts, size_t n, int64_t *next,
                                   char *errstr, size_t errstr_size)
{
    tc_lake_sink *k = ctx;
    tc_err err = tc_lake_open_partitions(k->lake, parts, n, next, errstr, errstr_size);

    if (err != TC_OK)
        return err;
    memset(k->open, 0, sizeof(k->open));
    for (size_t i = 0; i < n; i++) {
        if (tc_lake_sink_part_ok(parts[i]))
            k->open[parts[i]] = 1;
    }
    if (k->dropped)
        tc_log_info("lake", "recovered %zu partitions from their last commit", n);
    k->dropped = 0;
    k->st.pending = 0;
    return TC_OK;
}

static tc_err tc_lake_sink_revoke(void *ctx, const int32_t *parts, size_t n, int commit,
                                  char *errstr, size_t errstr_size)
{
    tc_lake_sink *k = ctx;
    tc_err first = TC_OK;

    for (size_t i = 0; i < n; i++) {
        tc_err err =
            tc_lake_close_partition(k->lake, parts[i], commit && !k->dropped, errstr, errstr_size);
        if (tc_lake_sink_part_ok(parts[i]))
            k->open[parts[i]] = 0;
        if (err != TC_OK && first == TC_OK)
            first = err;
    }
    return first;
}

static void tc_lake_sink_stats(void *ctx, tc_sink_stats *out)
{
    *out = ((tc_lake_sink *)ctx)->st;
}

static void tc_lake_sink_close(void *ctx)
{
    tc_lake_sink *k = ctx;

    tc_lake_destroy(k->lake);
    free(k);
}

static const tc_sink_ops tc_lake_sink_ops = {
    .name = "lake",
    .open = tc_lake_sink_open,
    .append = tc_lake_sink_append,
    .flush = tc_lake_sink_flush,
    .durable = tc_lake_sink_durable,
    .recover = tc_lake_sink_recover,
    .revoke = tc_lake_sink_revoke,
    .stats = tc_lake_sink_stats,
    .close = tc_lake_sink_close,
    .stored = tc_lake_sink_stored,
};

tc_err tc_sink_lake_new(const tc_config *cfg, tc_sink *out, char *errstr, size_t errstr_size)
{
    tc_lake_options lo = {
        .root = cfg->lake_dir,
        .topic = cfg->kafka_topic,
        .roll_bytes = (uint64_t)cfg->lake_roll_bytes,
        .roll_us = cfg->lake_roll_seconds * 1000000LL,
        .row_group_rows = (size_t)cfg->lake_row_group_rows,
        .row_group_bytes = (size_t)cfg->lake_row_group_bytes,
    };
    tc_lake_sink *k;

    out->ops = NULL;
    if (!cfg->lake_dir || !*cfg->lake_dir)
        return TC_OK; /* lake.dir empty: the lake is off (a shorthand) */
    if (tc_lake_sink_codec(cfg->lake_codec, &lo.codec) != TC_OK)
        return tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                          "invalid lake.codec \"%s\": expected snappy, zstd or none",
                          cfg->lake_codec);
    k = calloc(1, sizeof(*k));
    if (!k)
        return tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory");
    k->root = cfg->lake_dir;
    k->topic = cfg->kafka_topic;
    k->lake = tc_lake_new(&lo, errstr, errstr_size);
    if (!k->lake) {
        free(k);
        return TC_ERR_CONFIG;
    }
    tc_lake_on_commit(k->lake, tc_lake_sink_committed, k);
    out->ops = &tc_lake_sink_ops;
    out->ctx = k;
    snprintf(out->name, sizeof(out->name), "%s", tc_lake_sink_ops.name);
    return TC_OK;
}
