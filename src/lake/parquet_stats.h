/*
 * parquet_stats.h -- Statistics of the Parquet writer's pages and column chunks.
 *
 * The writer folds every value into the statistics of the page in progress (the inline helpers
 * below sit in its hot loops), folds each finished page into its column chunk's, and writes both
 * as Thrift Statistics structs: the page's in the data page header, the chunk's in ColumnMetaData.
 * The ordering rules (type-defined order, NaN, signed zeros, truncation of long BYTE_ARRAY bounds)
 * are described in parquet.h; they live here so that the page builder reads as page building.
 *
 * Ownership: a tc_pq_stats owns its two bound buffers; tc_pq_stats_free releases them.
 */
#ifndef TC_LAKE_PARQUET_STATS_H
#define TC_LAKE_PARQUET_STATS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "lake/parquet.h"
#include "lake/parquet_buf.h"
#include "lake/thrift_compact.h"

/* Statistics of a page or a column chunk. Integers (and booleans) in i*, FLOAT/DOUBLE in d* (a
 * float widens to double exactly), BYTE_ARRAY bounds copied into b* (the caller's arrays do not
 * outlive the write call). */
typedef struct tc_pq_stats {
    int has; /* min/max hold a value */
    int64_t imin, imax;
    double dmin, dmax;
    tc_pq_buf bmin, bmax;
    int64_t nulls;
    int64_t nans;
} tc_pq_stats;

/* What the Statistics writer needs to know of a column. */
typedef struct tc_pq_stats_col {
    int phys;             /* TC_PQF_* physical type */
    tc_parquet_type type; /* STRING bounds are cut at UTF-8 boundaries */
} tc_pq_stats_col;

void tc_pq_stats_init(tc_pq_stats *s);
void tc_pq_stats_reset(tc_pq_stats *s);
void tc_pq_stats_free(tc_pq_stats *s);

/* Fold page statistics into the chunk's (width 0: BYTE_ARRAY bounds). */
void tc_pq_stats_merge(tc_pq_stats *into, const tc_pq_stats *from, int width);

/* A bound buffer could not grow (out of memory): the statistics are incomplete. */
int tc_pq_stats_failed(const tc_pq_stats *s);

/* Write a Statistics struct as field `id` of the struct tw is in. distinct < 0 = unknown; lim: the
 * BYTE_ARRAY bound length above which bounds are truncated (0 = never); tmp: scratch for a
 * truncated max (its failed flag reports out of memory). */
void tc_pq_write_stats(tc_thrift_writer *tw, int16_t id, const tc_pq_stats_col *c,
                       const tc_pq_stats *s, int64_t distinct, size_t lim, tc_pq_buf *tmp);

static inline void tc_pq_stats_int(tc_pq_stats *s, int64_t mn, int64_t mx)
{
    if (!s->has) {
        s->imin = mn;
        s->imax = mx;
        s->has = 1;
        return;
    }
    if (mn < s->imin)
        s->imin = mn;
    if (mx > s->imax)
        s->imax = mx;
}

static inline void tc_pq_stats_dbl(tc_pq_stats *s, double mn, double mx)
{
    if (!s->has) {
        s->dmin = mn;
        s->dmax = mx;
        s->has = 1;
        return;
    }
    if (mn < s->dmin)
        s->dmin = mn;
    if (mx > s->dmax)
        s->dmax = mx;
}

/* Unsigned byte-wise order, shorter first on a common prefix (BYTE_ARRAY's type-defined order). */
static inline int tc_pq_bytes_cmp(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
    size_t n = alen < blen ? alen : blen;
    int c = n ? memcmp(a, b, n) : 0;

    if (c)
        return c;
    return alen < blen ? -1 : alen > blen;
}

static inline void tc_pq_buf_set(tc_pq_buf *b, const void *p, size_t n)
{
    tc_pq_buf_clear(b);
    if (n)
        tc_pq_buf_put(b, p, n);
    else
        tc_pq_buf_reserve(b, 1); /* an empty min is a value: keep data non-NULL */
}

static inline void tc_pq_stats_bytes(tc_pq_stats *s, const uint8_t *p, size_t n)
{
    if (!s->has) {
        tc_pq_buf_set(&s->bmin, p, n);
        tc_pq_buf_set(&s->bmax, p, n);
        s->has = 1;
        return;
    }
    if (tc_pq_bytes_cmp(p, n, s->bmin.data, s->bmin.len) < 0)
        tc_pq_buf_set(&s->bmin, p, n);
    else if (tc_pq_bytes_cmp(p, n, s->bmax.data, s->bmax.len) > 0)
        tc_pq_buf_set(&s->bmax, p, n);
}

#endif
