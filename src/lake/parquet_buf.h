/*
 * parquet_buf.h -- the growable byte buffer every encoder of the lake room writes into.
 *
 * Encoders append many small pieces (a varint, a page header field, a 4-byte length) and checking
 * each append would bury the encoding logic in error handling. So the buffer's failure is sticky:
 * an append that cannot grow the buffer (out of memory, or past the buffer's own hard limit) sets
 * b->failed and every later append is a no-op; the owner checks b->failed once, when the piece it
 * was building is complete. Hot loops call tc_pq_buf_reserve() once and then write through
 * tc_pq_buf_tail() without further checks.
 *
 * Ownership: the buffer owns data; tc_pq_buf_free() releases it. The struct itself is the caller's.
 */
#ifndef TC_LAKE_PARQUET_BUF_H
#define TC_LAKE_PARQUET_BUF_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Default hard limit of one buffer: a Parquet page or column chunk larger than this is a bug or an
 * attack, not telemetry (page sizes are int32 in the format, so 2 GiB is the format's own bound).
 */
#define TC_PQ_BUF_LIMIT_DEFAULT ((size_t)2 << 30)

typedef struct tc_pq_buf {
    uint8_t *data;
    size_t len;   /* bytes written */
    size_t cap;   /* bytes allocated */
    size_t limit; /* hard limit on cap */
    int failed;   /* sticky: an append did not fit */
} tc_pq_buf;

/* Initialise an empty buffer; limit 0 selects TC_PQ_BUF_LIMIT_DEFAULT. Allocates nothing. */
void tc_pq_buf_init(tc_pq_buf *b, size_t limit);

/* Release the memory; the buffer may be initialised again afterwards. */
void tc_pq_buf_free(tc_pq_buf *b);

/* Forget the contents (and the failed flag), keep the memory. */
static inline void tc_pq_buf_clear(tc_pq_buf *b)
{
    b->len = 0;
    b->failed = 0;
}

/* Exchange the contents of two buffers (a filter's output becomes the input of the next step
 * without a copy). */
static inline void tc_pq_buf_swap(tc_pq_buf *a, tc_pq_buf *b)
{
    tc_pq_buf t = *a;
    *a = *b;
    *b = t;
}

/* Slow path of tc_pq_buf_reserve: grow so that extra more bytes fit. Returns 0, or -1 (and sets
 * failed) when memory or the limit says no. */
int tc_pq_buf_grow(tc_pq_buf *b, size_t extra);

/* Make room for extra more bytes. Returns 0, or -1 with b->failed set. */
static inline int tc_pq_buf_reserve(tc_pq_buf *b, size_t extra)
{
    if (b->failed)
        return -1;
    if (b->cap - b->len >= extra)
        return 0;
    return tc_pq_buf_grow(b, extra);
}

/* Where the next byte goes; valid after a successful reserve. */
static inline uint8_t *tc_pq_buf_tail(tc_pq_buf *b)
{
    return b->data + b->len;
}

static inline void tc_pq_buf_put(tc_pq_buf *b, const void *p, size_t n)
{
    if (n == 0 || tc_pq_buf_reserve(b, n) != 0)
        return;
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

static inline void tc_pq_buf_put_u8(tc_pq_buf *b, uint8_t v)
{
    if (tc_pq_buf_reserve(b, 1) != 0)
        return;
    b->data[b->len++] = v;
}

/* Little-endian fixed-width integers, the byte order of everything in Parquet. */
static inline void tc_pq_store_le32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static inline uint32_t tc_pq_load_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline void tc_pq_buf_put_le32(tc_pq_buf *b, uint32_t v)
{
    if (tc_pq_buf_reserve(b, 4) != 0)
        return;
    tc_pq_store_le32(b->data + b->len, v);
    b->len += 4;
}

/* Unsigned LEB128, the varint of both Thrift compact and the RLE/bit-packing hybrid. */
static inline void tc_pq_buf_put_uvarint(tc_pq_buf *b, uint64_t v)
{
    if (tc_pq_buf_reserve(b, 10) != 0) /* 10 bytes: ceil(64 / 7) */
        return;
    uint8_t *p = b->data + b->len;
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    b->len = (size_t)(p - b->data);
}

#endif
