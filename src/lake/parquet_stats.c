/*
 * parquet_stats.c -- Statistics of the Parquet writer: the cold half (life cycle, merge, and the
 * Thrift encoding with the format's ordering and truncation rules); see parquet_stats.h.
 */
#include "lake/parquet_stats.h"

#include "lake/parquet_format.h"

void tc_pq_stats_init(tc_pq_stats *s)
{
    memset(s, 0, sizeof(*s));
    tc_pq_buf_init(&s->bmin, 0);
    tc_pq_buf_init(&s->bmax, 0);
}

void tc_pq_stats_reset(tc_pq_stats *s)
{
    s->has = 0;
    s->nulls = 0;
    s->nans = 0;
    tc_pq_buf_clear(&s->bmin);
    tc_pq_buf_clear(&s->bmax);
}

void tc_pq_stats_free(tc_pq_stats *s)
{
    tc_pq_buf_free(&s->bmin);
    tc_pq_buf_free(&s->bmax);
}

/* Fold page statistics into the chunk's. */
void tc_pq_stats_merge(tc_pq_stats *into, const tc_pq_stats *from, int width)
{
    into->nulls += from->nulls;
    into->nans += from->nans;
    if (!from->has)
        return;
    if (width == 0) {
        if (!into->has) {
            tc_pq_buf_set(&into->bmin, from->bmin.data, from->bmin.len);
            tc_pq_buf_set(&into->bmax, from->bmax.data, from->bmax.len);
            into->has = 1;
            return;
        }
        if (tc_pq_bytes_cmp(from->bmin.data, from->bmin.len, into->bmin.data, into->bmin.len) < 0)
            tc_pq_buf_set(&into->bmin, from->bmin.data, from->bmin.len);
        if (tc_pq_bytes_cmp(from->bmax.data, from->bmax.len, into->bmax.data, into->bmax.len) > 0)
            tc_pq_buf_set(&into->bmax, from->bmax.data, from->bmax.len);
        return;
    }
    if (!into->has) {
        into->imin = from->imin;
        into->imax = from->imax;
        into->dmin = from->dmin;
        into->dmax = from->dmax;
        into->has = 1;
        return;
    }
    tc_pq_stats_int(into, from->imin, from->imax);
    tc_pq_stats_dbl(into, from->dmin, from->dmax);
}

int tc_pq_stats_failed(const tc_pq_stats *s)
{
    return s->bmin.failed || s->bmax.failed;
}

/* Encode a fixed-width bound as PLAIN bytes into out[8]; returns its length. */
static size_t tc_pq_stat_plain(const tc_pq_stats_col *c, const tc_pq_stats *s, int is_max,
                               uint8_t *out)
{
    int64_t i = is_max ? s->imax : s->imin;
    double d = is_max ? s->dmax : s->dmin;
    uint32_t u32;
    uint64_t u64;
    float f;

    switch (c->phys) {
    case TC_PQF_BOOLEAN:
        out[0] = (uint8_t)(i != 0);
        return 1;
    case TC_PQF_INT32:
        tc_pq_store_le32(out, (uint32_t)(int32_t)i);
        return 4;
    case TC_PQF_INT64:
        u64 = (uint64_t)i;
        for (int k = 0; k < 8; k++)
            out[k] = (uint8_t)(u64 >> (8 * k));
        return 8;
    case TC_PQF_FLOAT:
    case TC_PQF_DOUBLE:
        /* The spec's TYPE_ORDER rule: a zero bound is written -0.0 as min and +0.0 as max, so a
         * reader pruning on it never drops the other zero. */
        if (d == 0.0)
            d = is_max ? 0.0 : -0.0;
        if (c->phys == TC_PQF_FLOAT) {
            f = (float)d;
            memcpy(&u32, &f, 4);
            tc_pq_store_le32(out, u32);
            return 4;
        }
        memcpy(&u64, &d, 8);
        for (int k = 0; k < 8; k++)
            out[k] = (uint8_t)(u64 >> (8 * k));
        return 8;
    default:
        return 0;
    }
}

/* Length of the longest prefix of p[0..n) that is at most max bytes and, for STRING, does not split
 * a UTF-8 sequence (the cut must not land before a continuation byte). */
static size_t tc_pq_prefix_len(const tc_pq_stats_col *c, const uint8_t *p, size_t n, size_t max)
{
    size_t cut;

    if (n <= max)
        return n;
    cut = max;
    if (c->type == TC_PQ_STRING)
        while (cut > 0 && (p[cut] & 0xC0) == 0x80)
            cut--;
    return cut;
}

/* Write a Statistics struct as field `id`. distinct < 0 = unknown. */
void tc_pq_write_stats(tc_thrift_writer *tw, int16_t id, const tc_pq_stats_col *c,
                       const tc_pq_stats *s, int64_t distinct, size_t lim, tc_pq_buf *tmp)
{
    uint8_t mn[8], mx[8];
    size_t mnlen = 0, mxlen = 0;
    const uint8_t *minp = mn, *maxp = mx;
    int has_min = s->has, min_exact = 1, max_exact = 1;
    int has_max = has_min;

    if (s->has && c->phys == TC_PQF_BYTE_ARRAY) {
        minp = s->bmin.data;
        mnlen = s->bmin.len;
        maxp = s->bmax.data;
        mxlen = s->bmax.len;
        if (lim && mnlen > lim) {
            /* A prefix sorts before the value: still a lower bound. */
            mnlen = tc_pq_prefix_len(c, minp, mnlen, lim);
            min_exact = 0;
        }
        if (lim && mxlen > lim) {
            /* Upper bound: a prefix with its last byte incremented sorts after the value. For
             * STRING only an ASCII byte below 0x7F may be incremented (the result stays valid
             * UTF-8); for BYTES any byte below 0xFF. Without such a byte there is no shorter upper
             * bound and max is omitted. */
            size_t k = tc_pq_prefix_len(c, maxp, mxlen, lim);
            uint8_t top = c->type == TC_PQ_STRING ? 0x7F : 0xFF;
            while (k > 0 && maxp[k - 1] >= top)
                k--;
            tc_pq_buf_clear(tmp);
            if (k > 0) {
                tc_pq_buf_put(tmp, maxp, k);
                if (!tmp->failed)
                    tmp->data[k - 1]++;
            }
            has_max = k > 0 && !tmp->failed;
            maxp = tmp->data;
            mxlen = k;
            max_exact = 0;
        }
    } else if (s->has) {
        mnlen = tc_pq_stat_plain(c, s, 0, mn);
        mxlen = tc_pq_stat_plain(c, s, 1, mx);
    }

    tc_thrift_field_struct_begin(tw, id);
    if (s->has && c->phys != TC_PQF_BYTE_ARRAY) {
        /* Legacy signed-order min/max: for these types signed order is the type's order. */
        tc_thrift_field_binary(tw, 1, mx, mxlen);
        tc_thrift_field_binary(tw, 2, mn, mnlen);
    }
    tc_thrift_field_i64(tw, 3, s->nulls);
    if (distinct >= 0)
        tc_thrift_field_i64(tw, 4, distinct);
    if (has_max)
        tc_thrift_field_binary(tw, 5, maxp, mxlen);
    if (has_min)
        tc_thrift_field_binary(tw, 6, minp, mnlen);
    if (has_max)
        tc_thrift_field_bool(tw, 7, max_exact);
    if (has_min)
        tc_thrift_field_bool(tw, 8, min_exact);
    if (c->phys == TC_PQF_FLOAT || c->phys == TC_PQF_DOUBLE)
        tc_thrift_field_i64(tw, 9, s->nans); /* TYPE_ORDER floats: nan_count must be set */
    tc_thrift_struct_end(tw);
}
