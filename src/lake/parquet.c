/*
 * parquet.c -- the Parquet writer; see parquet.h for the design.
 *
 * Layout of this file: the per-column page builder (append values, cut a page), the
 * row-group flush (dictionary page, data pages, RowGroup metadata), the footer, and the public API.
 */
#include "lake/parquet.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lake/parquet_crypt.h"
#include "lake/parquet_encode.h"
#include "lake/parquet_format.h"
#include "lake/parquet_stats.h"
#include "lake/thrift_compact.h"

#ifndef TC_VERSION
#define TC_VERSION "0.0.0"
#endif

/* A constant, not a git hash: builds must be reproducible from a tarball. Bump it whenever the
 * bytes the writer produces change in a way a reader could care about (readers key workarounds on
 * it). */
#define TC_PQ_BUILD "tc-pqw-1"

/* Rows handed to the columns per step of tc_parquet_write: small enough that the row-group byte
 * bound is checked often, large enough that the per-step overhead vanishes. A step also ends once
 * its STRING/BYTES payload passes TC_PQ_SLICE_BYTES, so that long values cannot overshoot the
 * row-group byte bound by more than that (plus one value). */
#define TC_PQ_SLICE_ROWS  65536
#define TC_PQ_SLICE_BYTES ((size_t)8 << 20)

/* RowGroup.ordinal is an i16: written only while it fits. */
#define TC_PQ_ORDINAL_MAX 32767

/* Defaults (see tc_parquet_options in parquet.h for the reasons). The entry bound equals 1 MiB of
 * 4-byte values, so for every type the byte bound is what cuts a dictionary (as in Arrow, whose
 * file sizes we match); the entry bound only caps the hash table of short strings. */
#define TC_PQ_DEF_ROW_GROUP_ROWS  ((size_t)1 << 20)
#define TC_PQ_DEF_ROW_GROUP_BYTES ((size_t)128 << 20)
#define TC_PQ_DEF_PAGE_BYTES      ((size_t)1 << 20)
#define TC_PQ_DEF_PAGE_ROWS       20000
#define TC_PQ_DEF_DICT_BYTES      ((size_t)1 << 20)
#define TC_PQ_DEF_DICT_ENTRIES    262144
#define TC_PQ_DEF_STATS_BYTES     64

typedef struct tc_pq_col {
    char *name;
    tc_parquet_type type;
    int optional;
    int phys;           /* TC_PQF_* physical type */
    int width;          /* PLAIN bytes per value: 4 or 8; 0 = BYTE_ARRAY; 1 = BOOLEAN (bits) */
    tc_pq_stats_col sc; /* phys and type again, for the statistics writer */
    int dict_wanted;    /* start every chunk with a dictionary */
    int dict_mode;      /* the chunk in progress is still dictionary-encoding */
    int fallback;       /* the dictionary just overflowed: cut the page, go PLAIN */
    tc_pq_dict dict;

    /* page in progress */
    size_t page_n;    /* levels (rows) in the page */
    size_t page_vals; /* non-null values in the page */
    uint8_t *levels;  /* [page_rows] definition levels (OPTIONAL) */
    uint32_t *idx;    /* [page_rows] dictionary indices (dictionary columns) */
    uint8_t *bools;   /* [page_rows] values (BOOLEAN) */
    tc_pq_buf plain;  /* PLAIN-encoded values (fixed width and BYTE_ARRAY) */
    tc_pq_stats ps;

    /* column chunk in progress */
    tc_pq_buf pages; /* data pages: header + compressed body each */
    tc_pq_stats cs;
    int64_t chunk_values;
    int64_t chunk_unc; /* uncompressed size of the data pages, headers included */
    uint32_t pages_dict, pages_plain;

    int slot; /* encryption key slot (TC_PQC_KEY_*), -1 in plain files */

    /* set by the row-group flush for the metadata */
    int64_t dict_off, data_off, total_unc, total_comp;
} tc_pq_col;

struct tc_parquet_writer {
    tc_parquet_sink_fn sink;
    void *sink_ctx;
    int fd;
    tc_parquet_options opt;
    size_t ncols;
    tc_pq_col *cols;
    tc_pq_compressor comp;
    tc_pq_buf body;   /* page body being assembled; also the footer */
    tc_pq_buf zbuf;   /* compressed page body */
    tc_pq_buf hdr;    /* page header */
    tc_pq_buf tmp;    /* truncated statistics values */
    tc_pq_buf rgmeta; /* serialised RowGroup structs of the row groups written */
    tc_pq_fcrypt *fc; /* data keys of this file; NULL: a plain file */
    tc_pq_buf ebuf;   /* an encrypted module */
    tc_pq_buf cmeta;  /* a ColumnMetaData serialised apart, to be encrypted */
    uint32_t nrg;
    size_t rg_rows;
    size_t buffered; /* bytes of pages held for the row group in progress */
    uint64_t rows;
    uint64_t pos; /* bytes written */
    int started;  /* the leading magic is out */
    int closed;
    char **kv; /* 2 * nkv strings: key, value (value may be NULL) */
    size_t nkv;
    tc_err failed; /* sticky: TC_OK while the writer is usable */
    char failmsg[TC_ERRSTR_MAX];
};

/* ---- errors ---- */

static tc_err tc_pq_fail(tc_parquet_writer *w, tc_err err, char *errstr, size_t errstr_size,
                         const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Make err sticky (the writer's output is now incomplete) and report it. */
static tc_err tc_pq_fail(tc_parquet_writer *w, tc_err err, char *errstr, size_t errstr_size,
                         const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(w->failmsg, sizeof(w->failmsg), fmt, ap);
    va_end(ap);
    w->failed = err;
    return tc_err_set(err, errstr, errstr_size, "%s", w->failmsg);
}

static tc_err tc_pq_usable(const tc_parquet_writer *w, char *errstr, size_t errstr_size)
{
    if (!w)
        return tc_err_set(TC_ERR_INVALID, errstr, errstr_size, "parquet: no writer");
    if (w->failed != TC_OK)
        return tc_err_set(w->failed, errstr, errstr_size, "%s", w->failmsg);
    if (w->closed)
        return tc_err_set(TC_ERR_INVALID, errstr, errstr_size, "parquet: writer already closed");
    return TC_OK;
}

/* ---- output ---- */

static tc_err tc_pq_fd_sink(void *ctx, const void *p, size_t n, char *errstr, size_t errstr_size)
{
    const int fd = *(const int *)ctx;
    const uint8_t *s = p;

    while (n > 0) {
        /* write(2) may write less than asked (a signal, a nearly full disk): loop until all is out
         * or it fails; a full disk then reports ENOSPC rather than a short file. */
        size_t want = n > (size_t)SSIZE_MAX ? (size_t)SSIZE_MAX : n;
        ssize_t k = write(fd, s, want);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            return tc_err_set(TC_ERR_IO, errstr, errstr_size, "parquet: write: %s",
                              strerror(errno));
        }
        if (k == 0)
            return tc_err_set(TC_ERR_IO, errstr, errstr_size, "parquet: write wrote nothing");
        s += k;
        n -= (size_t)k;
    }
    return TC_OK;
}

static tc_err tc_pq_out(tc_parquet_writer *w, const void *p, size_t n, char *errstr,
                        size_t errstr_size)
{
    char msg[TC_ERRSTR_MAX];
    tc_err err;

    if (n == 0)
        return TC_OK;
    msg[0] = '\0';
    err = w->sink(w->sink_ctx, p, n, msg, sizeof(msg));
    if (err != TC_OK)
        return tc_pq_fail(w, err, errstr, errstr_size, "%s",
                          msg[0] ? msg : "parquet: write failed");
    w->pos += n;
    return TC_OK;
}

static tc_err tc_pq_start(tc_parquet_writer *w, char *errstr, size_t errstr_size)
{
    if (w->started)
        return TC_OK;
    w->started = 1;
    return tc_pq_out(w, w->fc ? TC_PQC_MAGIC : TC_PQF_MAGIC, TC_PQF_MAGIC_LEN, errstr, errstr_size);
}

/* ---- encryption ---- */

/* Seal pt[0..n) as a module of column c (type and ordinals per the spec) into w->ebuf. */
static tc_err tc_pq_seal(tc_parquet_writer *w, const tc_pq_col *c, int type, int page,
                         const uint8_t *pt, size_t n, char *errstr, size_t errstr_size)
{
    int col = (int)(c - w->cols);

    if (page > TC_PQC_ORDINAL_MAX || w->nrg > TC_PQC_ORDINAL_MAX)
        return tc_pq_fail(w, TC_ERR_INVALID, errstr, errstr_size,
                          "parquet: column %s: an encrypted file holds at most %d row groups of "
                          "%d pages a column (AAD ordinals are 16-bit)",
                          c->name, TC_PQC_ORDINAL_MAX + 1, TC_PQC_ORDINAL_MAX + 1);
    tc_pq_buf_clear(&w->ebuf);
    if (tc_pq_fcrypt_seal(w->fc, c->slot, type, (int)w->nrg, col, page, pt, n, &w->ebuf) != 0)
        return tc_pq_fail(w, TC_ERR_NOMEM, errstr, errstr_size,
                          "parquet: column %s: encryption failed", c->name);
    return TC_OK;
}

/* ---- page builder ---- */

static inline int tc_pq_page_bw(const tc_pq_col *c)
{
    /* Bit width of the indices: enough for the largest index. At least 1: a width of 0 is legal but
     * not every reader has been exercised with it. */
    int bw = c->dict.n > 1 ? tc_pq_bit_width(c->dict.n - 1) : 1;
    return bw ? bw : 1;
}

/* Uncompressed size the page would have now (levels and indices estimated from their bit widths).
 */
static inline size_t tc_pq_page_est(const tc_pq_col *c)
{
    size_t est = c->plain.len;

    if (c->optional)
        est += c->page_n / 8;
    if (c->dict_mode)
        est += c->page_vals * (size_t)tc_pq_page_bw(c) / 8;
    if (c->width == 1)
        est += c->page_vals / 8;
    return est;
}

static inline int tc_pq_page_full(const tc_parquet_writer *w, const tc_pq_col *c)
{
    return c->page_n >= w->opt.page_rows || tc_pq_page_est(c) >= w->opt.page_bytes;
}

static inline int tc_pq_present(const tc_pq_col *c, const tc_parquet_values *v, size_t r)
{
    if (v->present)
        return v->present[r] != 0;
    if (c->width == 0)
        return ((const tc_slice *)v->values)[r].ptr != NULL;
    return 1;
}

/* Encode the page in progress, compress it, append header + body to the chunk buffer. */
static tc_err tc_pq_finish_page(tc_parquet_writer *w, tc_pq_col *c, char *errstr,
                                size_t errstr_size)
{
    tc_thrift_writer tw;
    const uint8_t *src, *payload;
    size_t srclen, paylen;
    /* A page without values decodes the same under any encoding; calling it PLAIN keeps an all-null
     * chunk free of an empty dictionary page. */
    int dict_page = c->dict_mode && c->page_vals > 0;
    int encoding = dict_page ? TC_PQF_ENC_RLE_DICTIONARY : TC_PQF_ENC_PLAIN;

    if (c->optional || dict_page || c->width == 1 || c->dict_mode) {
        tc_pq_buf *b = &w->body;
        tc_pq_buf_clear(b);
        if (c->optional) {
            /* v1 data page: definition levels carry a 4-byte length prefix; max level 1 -> 1 bit.
             */
            size_t at = b->len;
            tc_pq_buf_put_le32(b, 0);
            tc_pq_rle_encode_u8(b, c->levels, c->page_n, 1);
            if (!b->failed)
                tc_pq_store_le32(b->data + at, (uint32_t)(b->len - at - 4));
        }
        if (dict_page) {
            int bw = tc_pq_page_bw(c);
            tc_pq_buf_put_u8(b, (uint8_t)bw); /* dictionary indices: 1-byte width, no length */
            tc_pq_rle_encode_u32(b, c->idx, c->page_vals, bw);
        } else if (c->width == 1) {
            tc_pq_plain_bool_encode(b, c->bools, c->page_vals);
        } else {
            tc_pq_buf_put(b, c->plain.data, c->plain.len);
        }
        if (b->failed)
            return tc_pq_fail(w, TC_ERR_NOMEM, errstr, errstr_size, "parquet: out of memory");
        src = b->data;
        srclen = b->len;
    } else {
        /* REQUIRED PLAIN page: the body is the values buffer as it is. */
        src = c->plain.data;
        srclen = c->plain.len;
    }
    if (srclen > INT32_MAX)
        return tc_pq_fail(w, TC_ERR_INVALID, errstr, errstr_size,
                          "parquet: column %s: page of %zu bytes exceeds the format's limit",
                          c->name, srclen);
    if (w->opt.codec == TC_PQ_UNCOMPRESSED) {
        payload = src;
        paylen = srclen;
    } else {
        tc_pq_buf_clear(&w->zbuf);
        if (tc_pq_compress(&w->comp, &w->zbuf, src ? src : (const uint8_t *)"", srclen) != 0)
            return tc_pq_fail(w, TC_ERR_NOMEM, errstr, errstr_size,
                              "parquet: column %s: page compression failed", c->name);
        payload = w->zbuf.data;
        paylen = w->zbuf.len;
    }
    if (w->fc) {
        /* compressed_page_size is the module's size: readers skip pages by it. */
        tc_err e = tc_pq_seal(w, c, TC_PQC_DATA_PAGE, (int)(c->pages_dict + c->pages_plain),
                              payload, paylen, errstr, errstr_size);
        if (e != TC_OK)
            return e;
        tc_pq_buf_swap(&w->ebuf, &w->zbuf);
        payload = w->zbuf.data;
        paylen = w->zbuf.len;
    }
    if (paylen > INT32_MAX)
        return tc_pq_fail(w, TC_ERR_INVALID, errstr, errstr_size,
                          "parquet: column %s: compressed page exceeds the format's limit",
                          c->name);

    tc_pq_buf_clear(&w->hdr);
    tc_thrift_writer_init(&tw, &w->hdr);
    tc_thrift_struct_begin(&tw); /* PageHeader */
    tc_thrift_field_i32(&tw, 1, TC_PQF_DATA_PAGE);
    tc_thrift_field_i32(&tw, 2, (int32_t)srclen);
    tc_thrift_field_i32(&tw, 3, (int32_t)paylen);
    tc_thrift_field_struct_begin(&tw, 5); /* DataPageHeader */
    tc_thrift_field_i32(&tw, 1, (int32_t)c->page_n);
    tc_thrift_field_i32(&tw, 2, encoding);
    tc_thrift_field_i32(&tw, 3, TC_PQF_ENC_RLE);
    tc_thrift_field_i32(&tw, 4, TC_PQF_ENC_RLE);
    tc_pq_write_stats(&tw, 5, &c->sc, &c->ps, -1, w->opt.stats_max_bytes, &w->tmp);
    tc_thrift_struct_end(&tw);
    tc_thrift_struct_end(&tw);
    if (tc_thrift_writer_failed(&tw))
        return tc_pq_fail(w, TC_ERR_NOMEM, errstr, errstr_size, "parquet: out of memory");
    if (w->fc) {
        tc_err e = tc_pq_seal(w, c, TC_PQC_DATA_PAGE_HEADER, (int)(c->pages_dict + c->pages_plain),
                              w->hdr.data, w->hdr.len, errstr, errstr_size);
        if (e != TC_OK)
            return e;
        tc_pq_buf_swap(&w->ebuf, &w->hdr);
    }

    tc_pq_buf_put(&c->pages, w->hdr.data, w->hdr.len);
    if (paylen)
        tc_pq_buf_put(&c->pages, payload, paylen);
    tc_pq_stats_merge(&c->cs, &c->ps, c->width);
    if (c->pages.failed || tc_pq_stats_failed(&c->cs))
        return tc_pq_fail(w, TC_ERR_NOMEM, errstr, errstr_size,
                          "parquet: column %s: out of memory buffering the row group", c->name);
    c->chunk_unc += (int64_t)(w->hdr.len + srclen);
    c->chunk_values += (int64_t)c->page_n;
    w->buffered += w->hdr.len + paylen;
    if (dict_page)
        c->pages_dict++;
    else
        c->pages_plain++;

    c->page_n = 0;
    c->page_vals = 0;
    tc_pq_buf_clear(&c->plain);
    tc_pq_stats_reset(&c->ps);
    return TC_OK;
}

/* Append up to n rows (from row r0 of v) to the page in progress in dictionary mode; stops when the
 * page is full or the dictionary overflows (c->fallback set, that row not consumed). */
static size_t tc_pq_append_dict(tc_parquet_writer *w, tc_pq_col *c, const tc_parquet_values *v,
                                size_t r0, size_t n, int *nomem)
{
    size_t i, room = w->opt.page_rows - c->page_n;
    const size_t bits_max = w->opt.page_bytes * 8;
    uint32_t ix = 0;
    int rc;

    if (n > room)
        n = room;
    for (i = 0; i < n; i++) {
        size_t r = r0 + i;
        int here = tc_pq_present(c, v, r);
        if (here) {
            if (c->width == 0) {
                const tc_slice *s = (const tc_slice *)v->values + r;
                rc = tc_pq_dict_put_bytes(&c->dict, s->ptr, s->len, &ix);
            } else {
                rc = tc_pq_dict_put_fixed(&c->dict,
                                          (const uint8_t *)v->values + r * (size_t)c->width, &ix);
            }
            if (rc == TC_PQ_DICT_OVER) {
                c->fallback = 1;
                break;
            }
            if (rc == TC_PQ_DICT_NOMEM) {
                *nomem = 1;
                break;
            }
            c->idx[c->page_vals++] = ix;
            switch (c->type) {
            case TC_PQ_BOOLEAN:
                break; /* booleans never use a dictionary */
            case TC_PQ_INT32: {
                int32_t x = ((const int32_t *)v->values)[r];
                tc_pq_stats_int(&c->ps, x, x);
                break;
            }
            case TC_PQ_INT64:
            case TC_PQ_TIMESTAMP_US: {
                int64_t x = ((const int64_t *)v->values)[r];
                tc_pq_stats_int(&c->ps, x, x);
                break;
            }
            case TC_PQ_FLOAT: {
                float x = ((const float *)v->values)[r];
                if (x != x)
                    c->ps.nans++;
                else
                    tc_pq_stats_dbl(&c->ps, x, x);
                break;
            }
            case TC_PQ_DOUBLE: {
                double x = ((const double *)v->values)[r];
                if (x != x)
                    c->ps.nans++;
                else
                    tc_pq_stats_dbl(&c->ps, x, x);
                break;
            }
            default: {
                uint32_t len;
                const uint8_t *p = tc_pq_dict_bytes(&c->dict, ix, &len);
                tc_pq_stats_bytes(&c->ps, p, len);
                break;
            }
            }
        } else {
            c->ps.nulls++;
        }
        if (c->optional)
            c->levels[c->page_n] = (uint8_t)here;
        c->page_n++;
        if (c->page_vals * (size_t)tc_pq_page_bw(c) + c->page_n >= bits_max) {
            i++;
            break;
        }
    }
    return i;
}

/* PLAIN mode, BYTE_ARRAY: 4-byte length + bytes per value. */
static size_t tc_pq_append_bytes(tc_parquet_writer *w, tc_pq_col *c, const tc_parquet_values *v,
                                 size_t r0, size_t n)
{
    size_t i, room = w->opt.page_rows - c->page_n;
    const tc_slice *s = (const tc_slice *)v->values + r0;

    if (n > room)
        n = room;
    for (i = 0; i < n; i++) {
        int here = tc_pq_present(c, v, r0 + i);
        if (here) {
            uint32_t len = s[i].len;
            if (tc_pq_buf_reserve(&c->plain, 4 + (size_t)len) == 0) {
                uint8_t *p = tc_pq_buf_tail(&c->plain);
                tc_pq_store_le32(p, len);
                if (len)
                    memcpy(p + 4, s[i].ptr, len);
                c->plain.len += 4 + (size_t)len;
            }
            tc_pq_stats_bytes(&c->ps, (const uint8_t *)s[i].ptr, len);
            c->page_vals++;
        } else {
            c->ps.nulls++;
        }
        if (c->optional)
            c->levels[c->page_n] = (uint8_t)here;
        c->page_n++;
        if (c->plain.len + c->page_n / 8 >= w->opt.page_bytes) {
            i++;
            break;
        }
    }
    return i;
}

/* PLAIN mode, fixed width and BOOLEAN: how many of n rows fit in the page, then a bulk loop. */
static size_t tc_pq_append_fixed(tc_parquet_writer *w, tc_pq_col *c, const tc_parquet_values *v,
                                 size_t r0, size_t n)
{
    size_t room = w->opt.page_rows - c->page_n, est = tc_pq_page_est(c), fit;
    const uint8_t *pres = v->present ? v->present + r0 : NULL;
    size_t vals = 0;

    /* Bytes left in the page, as values (booleans take a bit). At least one row always fits. */
    fit = est < w->opt.page_bytes ? w->opt.page_bytes - est : 0;
    fit = c->width == 1 ? fit * 8 : fit / (size_t)c->width;
    if (fit == 0)
        fit = 1;
    if (n > room)
        n = room;
    if (n > fit)
        n = fit;

    if (c->optional) {
        if (pres)
            for (size_t i = 0; i < n; i++)
                c->levels[c->page_n + i] = pres[i] != 0;
        else
            memset(c->levels + c->page_n, 1, n);
    }

#define TC_PQ_FIXED_LOOP(CT, STATS)                                                                \
    do {                                                                                           \
        const CT *a = (const CT *)v->values + r0;                                                  \
        CT *dst;                                                                                   \
        if (tc_pq_buf_reserve(&c->plain, n * sizeof(CT)) != 0)                                     \
            break;                                                                                 \
        dst = (CT *)(void *)tc_pq_buf_tail(&c->plain);                                             \
        for (size_t i = 0; i < n; i++) {                                                           \
            if (pres && !pres[i])                                                                  \
                continue;                                                                          \
            CT x = a[i];                                                                           \
            memcpy(dst + vals, &x, sizeof(CT));                                                    \
            vals++;                                                                                \
            STATS;                                                                                 \
        }                                                                                          \
        c->plain.len += vals * sizeof(CT);                                                         \
    } while (0)

    switch (c->type) {
    case TC_PQ_INT32: {
        int32_t mn = INT32_MAX, mx = INT32_MIN;
        TC_PQ_FIXED_LOOP(int32_t, {
            mn = x < mn ? x : mn;
            mx = x > mx ? x : mx;
        });
        if (vals)
            tc_pq_stats_int(&c->ps, mn, mx);
        break;
    }
    case TC_PQ_INT64:
    case TC_PQ_TIMESTAMP_US: {
        int64_t mn = INT64_MAX, mx = INT64_MIN;
        TC_PQ_FIXED_LOOP(int64_t, {
            mn = x < mn ? x : mn;
            mx = x > mx ? x : mx;
        });
        if (vals)
            tc_pq_stats_int(&c->ps, mn, mx);
        break;
    }
    case TC_PQ_FLOAT: {
        float mn = 0, mx = 0;
        int any = 0;
        TC_PQ_FIXED_LOOP(float, {
            if (x != x) {
                c->ps.nans++;
            } else if (!any) {
                mn = mx = x;
                any = 1;
            } else {
                mn = x < mn ? x : mn;
                mx = x > mx ? x : mx;
            }
        });
        if (any)
            tc_pq_stats_dbl(&c->ps, mn, mx);
        break;
    }
    case TC_PQ_DOUBLE: {
        double mn = 0, mx = 0;
        int any = 0;
        TC_PQ_FIXED_LOOP(double, {
            if (x != x) {
                c->ps.nans++;
            } else if (!any) {
                mn = mx = x;
                any = 1;
            } else {
                mn = x < mn ? x : mn;
                mx = x > mx ? x : mx;
            }
        });
        if (any)
            tc_pq_stats_dbl(&c->ps, mn, mx);
        break;
    }
    case TC_PQ_BOOLEAN: {
        const uint8_t *a = (const uint8_t *)v->values + r0;
        int64_t mn = 1, mx = 0;
        for (size_t i = 0; i < n; i++) {
            if (pres && !pres[i])
                continue;
            uint8_t x = a[i] != 0;
            c->bools[c->page_vals + vals++] = x;
            mn = x < mn ? x : mn;
            mx = x > mx ? x : mx;
        }
        if (vals)
            tc_pq_stats_int(&c->ps, mn, mx);
        break;
    }
    default:
        break;
    }
#undef TC_PQ_FIXED_LOOP

    c->ps.nulls += (int64_t)(n - vals);
    c->page_vals += vals;
    c->page_n += n;
    return n;
}

/* Append rows [r0, r0 + n) of v to column c, cutting pages as they fill. */
static tc_err tc_pq_col_write(tc_parquet_writer *w, tc_pq_col *c, const tc_parquet_values *v,
                              size_t r0, size_t n, char *errstr, size_t errstr_size)
{
    tc_err err;

    while (n > 0) {
        size_t used;
        int nomem = 0;

        if (tc_pq_page_full(w, c) && (err = tc_pq_finish_page(w, c, errstr, errstr_size)) != TC_OK)
            return err;
        if (c->dict_mode)
            used = tc_pq_append_dict(w, c, v, r0, n, &nomem);
        else if (c->width == 0)
            used = tc_pq_append_bytes(w, c, v, r0, n);
        else
            used = tc_pq_append_fixed(w, c, v, r0, n);
        if (nomem || c->plain.failed || tc_pq_stats_failed(&c->ps))
            return tc_pq_fail(w, TC_ERR_NOMEM, errstr, errstr_size,
                              "parquet: column %s: out of memory", c->name);
        if (c->fallback) {
            /* Dictionary full: the page so far keeps its indices, the rest of the chunk is PLAIN.
             */
            if (c->page_n > 0 && (err = tc_pq_finish_page(w, c, errstr, errstr_size)) != TC_OK)
                return err;
            c->fallback = 0;
            c->dict_mode = 0;
        }
        r0 += used;
        n -= used;
    }
    return TC_OK;
}

/* ---- row group ---- */

/* The fields of c's ColumnMetaData (the caller opens and closes the struct). */
static void tc_pq_write_col_meta(tc_parquet_writer *w, tc_thrift_writer *tw, const tc_pq_col *c)
{
    int has_dict = c->dict_off >= 0;
    int has_plain = has_dict || c->pages_plain > 0;
    uint32_t nenc = (uint32_t)has_plain + 1 + (c->pages_dict > 0);
    uint32_t nstats = (uint32_t)has_dict + (c->pages_dict > 0) + (c->pages_plain > 0);
    /* distinct_count is exact only when every value went through the dictionary; floats are keyed
     * by their bits there (-0.0 and +0.0 are two entries), so they never report it. */
    int64_t distinct = (c->pages_dict > 0 && c->pages_plain == 0 && c->phys != TC_PQF_FLOAT &&
                        c->phys != TC_PQF_DOUBLE)
                           ? (int64_t)c->dict.n
                           : -1;

    tc_thrift_field_i32(tw, 1, c->phys);
    tc_thrift_field_list_begin(tw, 2, TC_THRIFT_I32, nenc);
    if (has_plain)
        tc_thrift_elem_i32(tw, TC_PQF_ENC_PLAIN);
    tc_thrift_elem_i32(tw, TC_PQF_ENC_RLE); /* the levels encoding every v1 page header names */
    if (c->pages_dict > 0)
        tc_thrift_elem_i32(tw, TC_PQF_ENC_RLE_DICTIONARY);
    tc_thrift_field_list_begin(tw, 3, TC_THRIFT_BINARY, 1);
    tc_thrift_elem_binary(tw, c->name, strlen(c->name));
    tc_thrift_field_i32(tw, 4, (int32_t)w->opt.codec);
    tc_thrift_field_i64(tw, 5, c->chunk_values);
    tc_thrift_field_i64(tw, 6, c->total_unc);
    tc_thrift_field_i64(tw, 7, c->total_comp);
    tc_thrift_field_i64(tw, 9, c->data_off);
    if (has_dict)
        tc_thrift_field_i64(tw, 11, c->dict_off);
    tc_pq_write_stats(tw, 12, &c->sc, &c->cs, distinct, w->opt.stats_max_bytes, &w->tmp);
    tc_thrift_field_list_begin(tw, 13, TC_THRIFT_STRUCT, nstats); /* encoding_stats */
    if (has_dict) {
        tc_thrift_struct_begin(tw);
        tc_thrift_field_i32(tw, 1, TC_PQF_DICTIONARY_PAGE);
        tc_thrift_field_i32(tw, 2, TC_PQF_ENC_PLAIN);
        tc_thrift_field_i32(tw, 3, 1);
        tc_thrift_struct_end(tw);
    }
    if (c->pages_dict > 0) {
        tc_thrift_struct_begin(tw);
        tc_thrift_field_i32(tw, 1, TC_PQF_DATA_PAGE);
        tc_thrift_field_i32(tw, 2, TC_PQF_ENC_RLE_DICTIONARY);
        tc_thrift_field_i32(tw, 3, (int32_t)c->pages_dict);
        tc_thrift_struct_end(tw);
    }
    if (c->pages_plain > 0) {
        tc_thrift_struct_begin(tw);
        tc_thrift_field_i32(tw, 1, TC_PQF_DATA_PAGE);
        tc_thrift_field_i32(tw, 2, TC_PQF_ENC_PLAIN);
        tc_thrift_field_i32(tw, 3, (int32_t)c->pages_plain);
        tc_thrift_struct_end(tw);
    }
}

/* c's ColumnChunk. In an encrypted file (encrypted footer mode) it also carries crypto_metadata;
 * a column under its own key has its ColumnMetaData (statistics included) serialised apart,
 * encrypted with that key, in encrypted_column_metadata instead of meta_data. */
static tc_err tc_pq_write_chunk_meta(tc_parquet_writer *w, tc_thrift_writer *tw, const tc_pq_col *c,
                                     char *errstr, size_t errstr_size)
{
    int own_key = w->fc && c->slot != TC_PQC_KEY_FOOTER;

    tc_thrift_struct_begin(tw);    /* ColumnChunk */
    tc_thrift_field_i64(tw, 2, 0); /* file_offset: deprecated, 0 when no external metadata */
    if (!own_key) {
        tc_thrift_field_struct_begin(tw, 3); /* ColumnMetaData */
        tc_pq_write_col_meta(w, tw, c);
        tc_thrift_struct_end(tw);
    }
    if (w->fc) {
        tc_thrift_field_struct_begin(tw, 8); /* ColumnCryptoMetaData */
        if (!own_key) {
            tc_thrift_field_struct_begin(tw, 1); /* ENCRYPTION_WITH_FOOTER_KEY */
        } else {
            const char *meta = tc_pq_fcrypt_key_metadata(w->fc, c->slot);
            tc_thrift_field_struct_begin(tw, 2); /* ENCRYPTION_WITH_COLUMN_KEY */
            tc_thrift_field_list_begin(tw, 1, TC_THRIFT_BINARY, 1);
            tc_thrift_elem_binary(tw, c->name, strlen(c->name));
            tc_thrift_field_binary(tw, 2, meta, strlen(meta));
        }
        tc_thrift_struct_end(tw);
        tc_thrift_struct_end(tw);
    }
    if (own_key) {
        tc_thrift_writer cw;
        tc_err err;
        tc_pq_buf_clear(&w->cmeta);
        tc_thrift_writer_init(&cw, &w->cmeta);
        tc_thrift_struct_begin(&cw);
        tc_pq_write_col_meta(w, &cw, c);
        tc_thrift_struct_end(&cw);
        if (tc_thrift_writer_failed(&cw))
            return tc_pq_fail(w, TC_ERR_NOMEM, errstr, errstr_size, "parquet: out of memory");
        if ((err = tc_pq_seal(w, c, TC_PQC_COLUMN_META, -1, w->cmeta.data, w->cmeta.len, errstr,
                              errstr_size)) != TC_OK)
            return err;
        tc_thrift_field_binary(tw, 9, w->ebuf.data, w->ebuf.len);
    }
    tc_thrift_struct_end(tw); /* ColumnChunk */
    return TC_OK;
}

/* Write the dictionary page of c (header + compressed PLAIN entries). */
static tc_err tc_pq_write_dict_page(tc_parquet_writer *w, tc_pq_col *c, char *errstr,
                                    size_t errstr_size)
{
    tc_thrift_writer tw;
    const uint8_t *payload;
    size_t paylen, unc = c->dict.plain.len;
    tc_err err;

    if (w->opt.codec == TC_PQ_UNCOMPRESSED) {
        payload = c->dict.plain.data;
        paylen = unc;
    } else {
        tc_pq_buf_clear(&w->zbuf);
        if (tc_pq_compress(&w->comp, &w->zbuf, unc ? c->dict.plain.data : (const uint8_t *)"",
                           unc) != 0)
            return tc_pq_fail(w, TC_ERR_NOMEM, errstr, errstr_size,
                              "parquet: column %s: dictionary compression failed", c->name);
        payload = w->zbuf.data;
        paylen = w->zbuf.len;
    }
    if (w->fc) {
        if ((err = tc_pq_seal(w, c, TC_PQC_DICT_PAGE, -1, payload, paylen, errstr, errstr_size)) !=
            TC_OK)
            return err;
        tc_pq_buf_swap(&w->ebuf, &w->zbuf);
        payload = w->zbuf.data;
        paylen = w->zbuf.len;
    }
    tc_pq_buf_clear(&w->hdr);
    tc_thrift_writer_init(&tw, &w->hdr);
    tc_thrift_struct_begin(&tw); /* PageHeader */
    tc_thrift_field_i32(&tw, 1, TC_PQF_DICTIONARY_PAGE);
    tc_thrift_field_i32(&tw, 2, (int32_t)unc);
    tc_thrift_field_i32(&tw, 3, (int32_t)paylen);
    tc_thrift_field_struct_begin(&tw, 7); /* DictionaryPageHeader */
    tc_thrift_field_i32(&tw, 1, (int32_t)c->dict.n);
    /* PLAIN, as the spec asks of new writers (PLAIN_DICTIONARY is its deprecated alias). */
    tc_thrift_field_i32(&tw, 2, TC_PQF_ENC_PLAIN);
    tc_thrift_struct_end(&tw);
    tc_thrift_struct_end(&tw);
    if (tc_thrift_writer_failed(&tw))
        return tc_pq_fail(w, TC_ERR_NOMEM, errstr, errstr_size, "parquet: out of memory");
    if (w->fc) {
        if ((err = tc_pq_seal(w, c, TC_PQC_DICT_PAGE_HEADER, -1, w->hdr.data, w->hdr.len, errstr,
                              errstr_size)) != TC_OK)
            return err;
        tc_pq_buf_swap(&w->ebuf, &w->hdr);
    }
    c->dict_off = (int64_t)w->pos;
    if ((err = tc_pq_out(w, w->hdr.data, w->hdr.len, errstr, errstr_size)) != TC_OK)
        return err;
    if ((err = tc_pq_out(w, payload, paylen, errstr, errstr_size)) != TC_OK)
        return err;
    c->total_unc += (int64_t)(w->hdr.len + unc);
    c->total_comp += (int64_t)(w->hdr.len + paylen);
    return TC_OK;
}

static void tc_pq_chunk_reset(tc_pq_col *c)
{
    tc_pq_buf_clear(&c->pages);
    tc_pq_stats_reset(&c->cs);
    tc_pq_dict_reset(&c->dict);
    c->dict_mode = c->dict_wanted;
    c->chunk_values = 0;
    c->chunk_unc = 0;
    c->pages_dict = 0;
    c->pages_plain = 0;
}

static tc_err tc_pq_flush(tc_parquet_writer *w, char *errstr, size_t errstr_size)
{
    tc_thrift_writer tw;
    int64_t rg_start, total_unc = 0, total_comp = 0;
    tc_err err;

    if (w->rg_rows == 0)
        return TC_OK;
    if ((err = tc_pq_start(w, errstr, errstr_size)) != TC_OK)
        return err;
    for (size_t i = 0; i < w->ncols; i++) {
        tc_pq_col *c = &w->cols[i];
        if (c->page_n > 0 && (err = tc_pq_finish_page(w, c, errstr, errstr_size)) != TC_OK)
            return err;
    }
    rg_start = (int64_t)w->pos;
    for (size_t i = 0; i < w->ncols; i++) {
        tc_pq_col *c = &w->cols[i];
        c->dict_off = -1;
        c->total_unc = 0;
        c->total_comp = 0;
        if (c->pages_dict > 0 && (err = tc_pq_write_dict_page(w, c, errstr, errstr_size)) != TC_OK)
            return err;
        c->data_off = (int64_t)w->pos;
        if ((err = tc_pq_out(w, c->pages.data, c->pages.len, errstr, errstr_size)) != TC_OK)
            return err;
        c->total_unc += c->chunk_unc;
        c->total_comp += (int64_t)c->pages.len;
        total_unc += c->total_unc;
        total_comp += c->total_comp;
    }

    /* The RowGroup struct is self-contained, so it is serialised now and spliced into the footer's
     * row_groups list at close: only metadata outlives the flush. */
    tc_thrift_writer_init(&tw, &w->rgmeta);
    tc_thrift_struct_begin(&tw);
    tc_thrift_field_list_begin(&tw, 1, TC_THRIFT_STRUCT, (uint32_t)w->ncols);
    for (size_t i = 0; i < w->ncols; i++)
        if ((err = tc_pq_write_chunk_meta(w, &tw, &w->cols[i], errstr, errstr_size)) != TC_OK)
            return err;
    tc_thrift_field_i64(&tw, 2, total_unc);
    tc_thrift_field_i64(&tw, 3, (int64_t)w->rg_rows);
    tc_thrift_field_i64(&tw, 5, rg_start);
    tc_thrift_field_i64(&tw, 6, total_comp);
    if (w->nrg <= TC_PQ_ORDINAL_MAX)
        tc_thrift_field_i16(&tw, 7, (int16_t)w->nrg);
    tc_thrift_struct_end(&tw);
    if (tc_thrift_writer_failed(&tw))
        return tc_pq_fail(w, TC_ERR_NOMEM, errstr, errstr_size,
                          "parquet: out of memory for row group metadata");
    if (w->tmp.failed)
        return tc_pq_fail(w, TC_ERR_NOMEM, errstr, errstr_size, "parquet: out of memory");

    for (size_t i = 0; i < w->ncols; i++)
        tc_pq_chunk_reset(&w->cols[i]);
    w->nrg++;
    w->rg_rows = 0;
    w->buffered = 0;
    return TC_OK;
}

static size_t tc_pq_buffered_total(const tc_parquet_writer *w)
{
    size_t n = w->buffered;

    for (size_t i = 0; i < w->ncols; i++)
        n += w->cols[i].dict.plain.len + w->cols[i].plain.len;
    return n;
}

/* ---- footer ---- */

static void tc_pq_write_schema(tc_parquet_writer *w, tc_thrift_writer *tw)
{
    tc_thrift_field_list_begin(tw, 2, TC_THRIFT_STRUCT, (uint32_t)w->ncols + 1);
    tc_thrift_struct_begin(tw); /* root */
    tc_thrift_field_string(tw, 4, "schema");
    tc_thrift_field_i32(tw, 5, (int32_t)w->ncols);
    tc_thrift_struct_end(tw);
    for (size_t i = 0; i < w->ncols; i++) {
        const tc_pq_col *c = &w->cols[i];
        tc_thrift_struct_begin(tw);
        tc_thrift_field_i32(tw, 1, c->phys);
        tc_thrift_field_i32(tw, 3, c->optional ? TC_PQF_OPTIONAL : TC_PQF_REQUIRED);
        tc_thrift_field_string(tw, 4, c->name);
        if (c->type == TC_PQ_STRING) {
            tc_thrift_field_i32(tw, 6, TC_PQF_CT_UTF8);
            tc_thrift_field_struct_begin(tw, 10); /* LogicalType */
            tc_thrift_field_struct_begin(tw, TC_PQF_LT_STRING);
            tc_thrift_struct_end(tw);
            tc_thrift_struct_end(tw);
        } else if (c->type == TC_PQ_TIMESTAMP_US) {
            tc_thrift_field_i32(tw, 6, TC_PQF_CT_TIMESTAMP_MICROS);
            tc_thrift_field_struct_begin(tw, 10); /* LogicalType */
            tc_thrift_field_struct_begin(tw, TC_PQF_LT_TIMESTAMP);
            tc_thrift_field_bool(tw, 1, 1);      /* isAdjustedToUTC */
            tc_thrift_field_struct_begin(tw, 2); /* TimeUnit */
            tc_thrift_field_struct_begin(tw, TC_PQF_UNIT_MICROS);
            tc_thrift_struct_end(tw);
            tc_thrift_struct_end(tw);
            tc_thrift_struct_end(tw);
            tc_thrift_struct_end(tw);
        }
        tc_thrift_struct_end(tw);
    }
}

/* Encrypted footer mode: w->body (the FileMetaData) becomes FileCryptoMetaData followed by the
 * FileMetaData sealed with the footer key. */
static tc_err tc_pq_encrypt_footer(tc_parquet_writer *w, char *errstr, size_t errstr_size)
{
    tc_thrift_writer tw;
    size_t aadlen;
    const uint8_t *aad = tc_pq_fcrypt_file_aad(w->fc, &aadlen);
    const char *meta = tc_pq_fcrypt_key_metadata(w->fc, TC_PQC_KEY_FOOTER);

    tc_pq_buf_clear(&w->ebuf);
    tc_thrift_writer_init(&tw, &w->ebuf);
    tc_thrift_struct_begin(&tw);          /* FileCryptoMetaData */
    tc_thrift_field_struct_begin(&tw, 1); /* EncryptionAlgorithm */
    tc_thrift_field_struct_begin(&tw, 1); /* AES_GCM_V1 */
    tc_thrift_field_binary(&tw, 2, aad, aadlen);
    tc_thrift_struct_end(&tw);
    tc_thrift_struct_end(&tw);
    tc_thrift_field_binary(&tw, 2, meta, strlen(meta));
    tc_thrift_struct_end(&tw);
    if (tc_thrift_writer_failed(&tw) ||
        tc_pq_fcrypt_seal(w->fc, TC_PQC_KEY_FOOTER, TC_PQC_FOOTER, -1, -1, -1, w->body.data,
                          w->body.len, &w->ebuf) != 0)
        return tc_pq_fail(w, TC_ERR_NOMEM, errstr, errstr_size,
                          "parquet: cannot encrypt the footer");
    tc_pq_buf_swap(&w->ebuf, &w->body);
    return TC_OK;
}

static tc_err tc_pq_write_footer(tc_parquet_writer *w, char *errstr, size_t errstr_size)
{
    tc_thrift_writer tw;
    tc_pq_buf *b = &w->body;
    uint8_t tail[8];
    tc_err err;

    tc_pq_buf_clear(b);
    tc_thrift_writer_init(&tw, b);
    tc_thrift_struct_begin(&tw); /* FileMetaData */
    tc_thrift_field_i32(&tw, 1, TC_PQF_FILE_VERSION);
    tc_pq_write_schema(w, &tw);
    tc_thrift_field_i64(&tw, 3, (int64_t)w->rows);
    tc_thrift_field_list_begin(&tw, 4, TC_THRIFT_STRUCT, w->nrg);
    tc_pq_buf_put(b, w->rgmeta.data, w->rgmeta.len);
    if (w->nkv) {
        tc_thrift_field_list_begin(&tw, 5, TC_THRIFT_STRUCT, (uint32_t)w->nkv);
        for (size_t i = 0; i < w->nkv; i++) {
            tc_thrift_struct_begin(&tw);
            tc_thrift_field_string(&tw, 1, w->kv[2 * i]);
            if (w->kv[2 * i + 1])
                tc_thrift_field_string(&tw, 2, w->kv[2 * i + 1]);
            tc_thrift_struct_end(&tw);
        }
    }
    tc_thrift_field_string(&tw, 6, tc_parquet_created_by());
    /* column_orders: TypeDefinedOrder for every leaf, which makes min_value/max_value meaningful.
     */
    tc_thrift_field_list_begin(&tw, 7, TC_THRIFT_STRUCT, (uint32_t)w->ncols);
    for (size_t i = 0; i < w->ncols; i++) {
        tc_thrift_struct_begin(&tw);
        tc_thrift_field_struct_begin(&tw, 1);
        tc_thrift_struct_end(&tw);
        tc_thrift_struct_end(&tw);
    }
    tc_thrift_struct_end(&tw);
    if (tc_thrift_writer_failed(&tw) || b->len > UINT32_MAX)
        return tc_pq_fail(w, TC_ERR_NOMEM, errstr, errstr_size,
                          "parquet: out of memory for the footer");
    if (w->fc && (err = tc_pq_encrypt_footer(w, errstr, errstr_size)) != TC_OK)
        return err;
    if (b->len > UINT32_MAX)
        return tc_pq_fail(w, TC_ERR_NOMEM, errstr, errstr_size, "parquet: footer too large");
    tc_pq_store_le32(tail, (uint32_t)b->len);
    memcpy(tail + 4, w->fc ? TC_PQC_MAGIC : TC_PQF_MAGIC, TC_PQF_MAGIC_LEN);
    if ((err = tc_pq_out(w, b->data, b->len, errstr, errstr_size)) != TC_OK)
        return err;
    return tc_pq_out(w, tail, sizeof(tail), errstr, errstr_size);
}

/* ---- public API ---- */

const char *tc_parquet_created_by(void)
{
    return "thermocline version " TC_VERSION " (build " TC_PQ_BUILD ")";
}

void tc_parquet_options_default(tc_parquet_options *o)
{
    memset(o, 0, sizeof(*o));
    o->codec = TC_PQ_SNAPPY;
    o->zstd_level = 1;
    o->row_group_rows = TC_PQ_DEF_ROW_GROUP_ROWS;
    o->row_group_bytes = TC_PQ_DEF_ROW_GROUP_BYTES;
    o->page_bytes = TC_PQ_DEF_PAGE_BYTES;
    o->page_rows = TC_PQ_DEF_PAGE_ROWS;
    o->dict_max_bytes = TC_PQ_DEF_DICT_BYTES;
    o->dict_max_entries = TC_PQ_DEF_DICT_ENTRIES;
    o->dictionary_numbers = 0;
    o->stats_max_bytes = TC_PQ_DEF_STATS_BYTES;
    o->crypt = tc_pq_crypt_installed();
}

static tc_err tc_pq_check_options(const tc_parquet_options *o, char *errstr, size_t errstr_size)
{
    if (o->codec != TC_PQ_UNCOMPRESSED && o->codec != TC_PQ_SNAPPY && o->codec != TC_PQ_ZSTD)
        return tc_err_set(TC_ERR_CONFIG, errstr, errstr_size, "parquet: unknown codec %d",
                          (int)o->codec);
    if (o->row_group_rows == 0 || o->row_group_rows > INT64_MAX)
        return tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                          "parquet: row_group_rows must be > 0");
    if (o->row_group_bytes == 0)
        return tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                          "parquet: row_group_bytes must be > 0");
    if (o->page_bytes == 0 || o->page_bytes > TC_PQ_PAGE_BYTES_MAX)
        return tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                          "parquet: page_bytes must be in 1..%zu", TC_PQ_PAGE_BYTES_MAX);
    if (o->page_rows == 0 || o->page_rows > TC_PQ_PAGE_ROWS_MAX)
        return tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                          "parquet: page_rows must be in 1..%zu", TC_PQ_PAGE_ROWS_MAX);
    if (o->dict_max_bytes > TC_PQ_DICT_BYTES_MAX || o->dict_max_entries > UINT32_MAX - 1)
        return tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                          "parquet: dictionary bound too large");
    return TC_OK;
}

static void tc_pq_col_free(tc_pq_col *c)
{
    free(c->name);
    free(c->levels);
    free(c->idx);
    free(c->bools);
    tc_pq_buf_free(&c->plain);
    tc_pq_buf_free(&c->pages);
    tc_pq_stats_free(&c->ps);
    tc_pq_stats_free(&c->cs);
    tc_pq_dict_free(&c->dict);
}

static tc_err tc_pq_col_init(tc_parquet_writer *w, tc_pq_col *c, const tc_parquet_column *def,
                             char *errstr, size_t errstr_size)
{
    static const int phys[TC_PQ_TYPE__COUNT] = {
        [TC_PQ_BOOLEAN] = TC_PQF_BOOLEAN,  [TC_PQ_INT32] = TC_PQF_INT32,
        [TC_PQ_INT64] = TC_PQF_INT64,      [TC_PQ_FLOAT] = TC_PQF_FLOAT,
        [TC_PQ_DOUBLE] = TC_PQF_DOUBLE,    [TC_PQ_STRING] = TC_PQF_BYTE_ARRAY,
        [TC_PQ_BYTES] = TC_PQF_BYTE_ARRAY, [TC_PQ_TIMESTAMP_US] = TC_PQF_INT64,
    };
    static const int width[TC_PQ_TYPE__COUNT] = {
        [TC_PQ_BOOLEAN] = 1, [TC_PQ_INT32] = 4,  [TC_PQ_INT64] = 8, [TC_PQ_FLOAT] = 4,
        [TC_PQ_DOUBLE] = 8,  [TC_PQ_STRING] = 0, [TC_PQ_BYTES] = 0, [TC_PQ_TIMESTAMP_US] = 8,
    };
    size_t namelen;
    size_t rows = w->opt.page_rows;

    memset(c, 0, sizeof(*c));
    c->slot = -1;
    tc_pq_buf_init(&c->plain, 0);
    tc_pq_buf_init(&c->pages, 0);
    tc_pq_stats_init(&c->ps);
    tc_pq_stats_init(&c->cs);
    tc_pq_dict_init(&c->dict, 0, 0, 0);
    if (!def->name || (namelen = strlen(def->name)) == 0 || namelen > TC_PQ_NAME_MAX)
        return tc_err_set(TC_ERR_INVALID, errstr, errstr_size,
                          "parquet: column names must be 1..%d bytes", TC_PQ_NAME_MAX);
    if ((unsigned)def->type >= TC_PQ_TYPE__COUNT)
        return tc_err_set(TC_ERR_INVALID, errstr, errstr_size, "parquet: column %s: bad type",
                          def->name);
    c->type = def->type;
    c->optional = def->optional != 0;
    c->phys = phys[def->type];
    c->width = width[def->type];
    c->sc = (tc_pq_stats_col){c->phys, c->type};
    switch (def->dictionary) {
    case TC_PQ_DICT_ON:
        c->dict_wanted = 1;
        break;
    case TC_PQ_DICT_OFF:
        c->dict_wanted = 0;
        break;
    case TC_PQ_DICT_AUTO:
        c->dict_wanted = c->width == 0 || w->opt.dictionary_numbers;
        break;
    default:
        return tc_err_set(TC_ERR_INVALID, errstr, errstr_size,
                          "parquet: column %s: bad dictionary mode", def->name);
    }
    if (c->type == TC_PQ_BOOLEAN)
        c->dict_wanted = 0; /* one bit per value already: a dictionary cannot win */
    if (w->opt.dict_max_bytes == 0 || w->opt.dict_max_entries == 0)
        c->dict_wanted = 0;
    c->dict_mode = c->dict_wanted;
    c->dict.width = c->width;
    c->dict.max_bytes = w->opt.dict_max_bytes;
    c->dict.max_entries = w->opt.dict_max_entries;
    c->name = strdup(def->name);
    if (c->optional)
        c->levels = malloc(rows);
    if (c->dict_wanted)
        c->idx = malloc(rows * sizeof(*c->idx));
    if (c->type == TC_PQ_BOOLEAN)
        c->bools = malloc(rows);
    if (!c->name || (c->optional && !c->levels) || (c->dict_wanted && !c->idx) ||
        (c->type == TC_PQ_BOOLEAN && !c->bools))
        return tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "parquet: out of memory");
    return TC_OK;
}

tc_parquet_writer *tc_parquet_writer_new_sink(tc_parquet_sink_fn sink, void *ctx,
                                              const tc_parquet_column *cols, size_t ncols,
                                              const tc_parquet_options *opt, char *errstr,
                                              size_t errstr_size)
{
    tc_parquet_writer *w = NULL;

    if (!sink || !cols || ncols == 0 || ncols > TC_PQ_COLUMNS_MAX) {
        tc_err_set(TC_ERR_INVALID, errstr, errstr_size, "parquet: need a sink and 1..%d columns",
                   TC_PQ_COLUMNS_MAX);
        goto fail;
    }
    w = calloc(1, sizeof(*w));
    if (!w) {
        tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "parquet: out of memory");
        goto fail;
    }
    w->sink = sink;
    w->sink_ctx = ctx;
    w->fd = -1;
    tc_pq_buf_init(&w->body, 0);
    tc_pq_buf_init(&w->zbuf, 0);
    tc_pq_buf_init(&w->hdr, 0);
    tc_pq_buf_init(&w->tmp, 0);
    tc_pq_buf_init(&w->rgmeta, 0);
    tc_pq_buf_init(&w->ebuf, 0);
    tc_pq_buf_init(&w->cmeta, 0);
    if (opt)
        w->opt = *opt;
    else
        tc_parquet_options_default(&w->opt);
    if (tc_pq_check_options(&w->opt, errstr, errstr_size) != TC_OK)
        goto fail;
    if (tc_pq_compressor_init(&w->comp, (int)w->opt.codec, w->opt.zstd_level) != 0) {
        tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "parquet: cannot set up the codec");
        goto fail;
    }
    w->cols = calloc(ncols, sizeof(*w->cols));
    if (!w->cols) {
        tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "parquet: out of memory");
        goto fail;
    }
    for (size_t i = 0; i < ncols; i++) {
        w->ncols = i + 1; /* so that destroy frees what init allocated */
        if (tc_pq_col_init(w, &w->cols[i], &cols[i], errstr, errstr_size) != TC_OK)
            goto fail;
        for (size_t j = 0; j < i; j++) {
            if (strcmp(w->cols[j].name, w->cols[i].name) == 0) {
                tc_err_set(TC_ERR_INVALID, errstr, errstr_size, "parquet: duplicate column name %s",
                           cols[i].name);
                goto fail;
            }
        }
    }
    if (w->opt.crypt) {
        if (!(w->fc = tc_pq_fcrypt_new_write(w->opt.crypt, errstr, errstr_size)))
            goto fail;
        for (size_t i = 0; i < ncols; i++)
            w->cols[i].slot = tc_pq_fcrypt_slot_of(w->fc, w->cols[i].name);
    }
    return w;
fail:
    tc_parquet_writer_destroy(w);
    return NULL;
}

tc_parquet_writer *tc_parquet_writer_new(int fd, const tc_parquet_column *cols, size_t ncols,
                                         const tc_parquet_options *opt, char *errstr,
                                         size_t errstr_size)
{
    tc_parquet_writer *w;

    if (fd < 0) {
        tc_err_set(TC_ERR_INVALID, errstr, errstr_size, "parquet: bad file descriptor");
        return NULL;
    }
    /* The sink context must outlive the call: point it at the writer's own copy of fd. */
    w = tc_parquet_writer_new_sink(tc_pq_fd_sink, NULL, cols, ncols, opt, errstr, errstr_size);
    if (w) {
        w->fd = fd;
        w->sink_ctx = &w->fd;
    }
    return w;
}

/* Check a write call's arguments before anything is encoded, so a bad call changes nothing. */
static tc_err tc_pq_check_values(const tc_parquet_writer *w, const tc_parquet_values *cols,
                                 size_t nrows, char *errstr, size_t errstr_size)
{
    for (size_t i = 0; i < w->ncols; i++) {
        const tc_pq_col *c = &w->cols[i];
        const tc_parquet_values *v = &cols[i];
        if (!v->values)
            return tc_err_set(TC_ERR_INVALID, errstr, errstr_size, "parquet: column %s: no values",
                              c->name);
        if (!c->optional && v->present)
            return tc_err_set(TC_ERR_INVALID, errstr, errstr_size,
                              "parquet: column %s is REQUIRED but has a presence map", c->name);
        if (c->width != 0)
            continue;
        const tc_slice *s = v->values;
        for (size_t r = 0; r < nrows; r++) {
            int here = v->present ? v->present[r] != 0 : s[r].ptr != NULL;
            if (!here)
                continue;
            if (!s[r].ptr && s[r].len > 0)
                return tc_err_set(TC_ERR_INVALID, errstr, errstr_size,
                                  "parquet: column %s row %zu: present but no bytes", c->name, r);
            if (s[r].len > TC_PQ_VALUE_MAX)
                return tc_err_set(TC_ERR_INVALID, errstr, errstr_size,
                                  "parquet: column %s row %zu: value of %u bytes is over %zu",
                                  c->name, r, (unsigned)s[r].len, TC_PQ_VALUE_MAX);
        }
        if (!c->optional && !v->present)
            for (size_t r = 0; r < nrows; r++)
                if (!s[r].ptr)
                    return tc_err_set(TC_ERR_INVALID, errstr, errstr_size,
                                      "parquet: column %s is REQUIRED but row %zu is NULL", c->name,
                                      r);
    }
    return TC_OK;
}

/* Rows of the next step, starting at row r0: at most k, fewer when the byte payload is large. */
static size_t tc_pq_slice_rows(const tc_parquet_writer *w, const tc_parquet_values *cols, size_t r0,
                               size_t k)
{
    size_t bytes = 0;

    for (size_t r = 0; r < k; r++) {
        for (size_t i = 0; i < w->ncols; i++)
            if (w->cols[i].width == 0)
                bytes += ((const tc_slice *)cols[i].values)[r0 + r].len;
        if (bytes >= TC_PQ_SLICE_BYTES)
            return r + 1;
    }
    return k;
}

tc_err tc_parquet_write(tc_parquet_writer *w, const tc_parquet_values *cols, size_t nrows,
                        char *errstr, size_t errstr_size)
{
    tc_err err;
    size_t done = 0;

    if ((err = tc_pq_usable(w, errstr, errstr_size)) != TC_OK)
        return err;
    if (nrows == 0)
        return TC_OK;
    if (!cols)
        return tc_err_set(TC_ERR_INVALID, errstr, errstr_size, "parquet: no columns");
    if ((err = tc_pq_check_values(w, cols, nrows, errstr, errstr_size)) != TC_OK)
        return err;
    while (done < nrows) {
        size_t k = nrows - done;
        if (k > TC_PQ_SLICE_ROWS)
            k = TC_PQ_SLICE_ROWS;
        if (k > w->opt.row_group_rows - w->rg_rows)
            k = w->opt.row_group_rows - w->rg_rows;
        k = tc_pq_slice_rows(w, cols, done, k);
        for (size_t i = 0; i < w->ncols; i++)
            if ((err = tc_pq_col_write(w, &w->cols[i], &cols[i], done, k, errstr, errstr_size)) !=
                TC_OK)
                return err;
        w->rg_rows += k;
        w->rows += k;
        done += k;
        if (w->rg_rows >= w->opt.row_group_rows ||
            tc_pq_buffered_total(w) >= w->opt.row_group_bytes)
            if ((err = tc_pq_flush(w, errstr, errstr_size)) != TC_OK)
                return err;
    }
    return TC_OK;
}

tc_err tc_parquet_flush_row_group(tc_parquet_writer *w, char *errstr, size_t errstr_size)
{
    tc_err err;

    if ((err = tc_pq_usable(w, errstr, errstr_size)) != TC_OK)
        return err;
    return tc_pq_flush(w, errstr, errstr_size);
}

tc_err tc_parquet_add_kv(tc_parquet_writer *w, const char *key, const char *value, char *errstr,
                         size_t errstr_size)
{
    char **kv, *k, *v = NULL;
    tc_err err;

    if ((err = tc_pq_usable(w, errstr, errstr_size)) != TC_OK)
        return err;
    if (!key || strlen(key) > TC_PQ_KV_BYTES_MAX || (value && strlen(value) > TC_PQ_KV_BYTES_MAX))
        return tc_err_set(TC_ERR_INVALID, errstr, errstr_size,
                          "parquet: key-value entries need a key, each at most %zu bytes",
                          TC_PQ_KV_BYTES_MAX);
    if (w->nkv >= TC_PQ_KV_MAX)
        return tc_err_set(TC_ERR_INVALID, errstr, errstr_size,
                          "parquet: more than %d key-value entries", TC_PQ_KV_MAX);
    kv = realloc(w->kv, (w->nkv + 1) * 2 * sizeof(*kv));
    if (!kv)
        return tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "parquet: out of memory");
    w->kv = kv;
    k = strdup(key);
    if (value)
        v = strdup(value);
    if (!k || (value && !v)) {
        free(k);
        free(v);
        return tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "parquet: out of memory");
    }
    w->kv[2 * w->nkv] = k;
    w->kv[2 * w->nkv + 1] = v;
    w->nkv++;
    return TC_OK;
}

tc_err tc_parquet_close(tc_parquet_writer *w, char *errstr, size_t errstr_size)
{
    tc_err err;

    if ((err = tc_pq_usable(w, errstr, errstr_size)) != TC_OK)
        return err;
    if ((err = tc_pq_flush(w, errstr, errstr_size)) != TC_OK)
        return err;
    if ((err = tc_pq_start(w, errstr, errstr_size)) != TC_OK)
        return err;
    if ((err = tc_pq_write_footer(w, errstr, errstr_size)) != TC_OK)
        return err;
    w->closed = 1;
    return TC_OK;
}

void tc_parquet_writer_destroy(tc_parquet_writer *w)
{
    if (!w)
        return;
    for (size_t i = 0; i < w->ncols; i++)
        tc_pq_col_free(&w->cols[i]);
    free(w->cols);
    for (size_t i = 0; i < 2 * w->nkv; i++)
        free(w->kv[i]);
    free(w->kv);
    tc_pq_compressor_free(&w->comp);
    tc_pq_buf_free(&w->body);
    tc_pq_buf_free(&w->zbuf);
    tc_pq_buf_free(&w->hdr);
    tc_pq_buf_free(&w->tmp);
    tc_pq_buf_free(&w->rgmeta);
    tc_pq_buf_free(&w->ebuf);
    tc_pq_buf_free(&w->cmeta);
    tc_pq_fcrypt_destroy(w->fc);
    free(w);
}

uint64_t tc_parquet_writer_rows(const tc_parquet_writer *w)
{
    return w ? w->rows : 0;
}

uint64_t tc_parquet_writer_bytes(const tc_parquet_writer *w)
{
    return w ? w->pos : 0;
}

size_t tc_parquet_writer_buffered(const tc_parquet_writer *w)
{
    return w ? tc_pq_buffered_total(w) : 0;
}
