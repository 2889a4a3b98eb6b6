/*
 * copy.c -- binary COPY encoder; see copy.h.
 */
#include "store/copy.h"

#include <stdlib.h>
#include <string.h>

/* First allocation; the buffer then doubles and is kept across batches. */
#define TC_COPYBUF_INITIAL (256 * 1024)

void tc_copybuf_init(tc_copybuf *b)
{
    memset(b, 0, sizeof(*b));
}

void tc_copybuf_free(tc_copybuf *b)
{
    free(b->data);
    memset(b, 0, sizeof(*b));
}

void tc_copybuf_reset(tc_copybuf *b)
{
    b->len = 0;
    b->failed = 0;
}

/* tc_copy_reserve's slow path: grow the buffer (doubling) so that n more bytes fit, or fail. Out of
 * line, so that the fast path, taken by every field of every row but a few per batch, inlines into
 * each encoder. */
static __attribute__((noinline)) unsigned char *tc_copy_grow(tc_copybuf *b, size_t n)
{
    size_t cap;
    unsigned char *p;

    if (b->failed)
        return NULL;
    cap = b->cap ? b->cap : TC_COPYBUF_INITIAL;
    while (cap - b->len < n) {
        if (cap > SIZE_MAX / 2) {
            b->failed = 1;
            return NULL;
        }
        cap *= 2;
    }
    p = realloc(b->data, cap);
    if (!p) {
        b->failed = 1;
        return NULL;
    }
    b->data = p;
    b->cap = cap;
    p = b->data + b->len;
    b->len += n;
    return p;
}

/* Make room for n more bytes; returns the write position or NULL (and marks the buffer failed). */
static inline unsigned char *tc_copy_reserve(tc_copybuf *b, size_t n)
{
    unsigned char *p;

    if (__builtin_expect(b->failed || b->cap - b->len < n, 0))
        return tc_copy_grow(b, n);
    p = b->data + b->len;
    b->len += n;
    return p;
}

static inline void tc_put_be16(unsigned char *p, uint16_t v)
{
    p[0] = (unsigned char)(v >> 8);
    p[1] = (unsigned char)v;
}

static inline void tc_put_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static inline void tc_put_be64(unsigned char *p, uint64_t v)
{
    tc_put_be32(p, (uint32_t)(v >> 32));
    tc_put_be32(p + 4, (uint32_t)v);
}

void tc_copy_begin(tc_copybuf *b)
{
    static const unsigned char sig[11] = {'P', 'G', 'C', 'O', 'P', 'Y', '\n', 0xff, '\r', '\n', 0};
    unsigned char *p = tc_copy_reserve(b, sizeof(sig) + 8);

    if (!p)
        return;
    memcpy(p, sig, sizeof(sig));
    memset(p + sizeof(sig), 0, 8); /* flags: no OIDs; header extension length: 0 */
}

void tc_copy_end(tc_copybuf *b)
{
    unsigned char *p = tc_copy_reserve(b, 2);

    if (p)
        tc_put_be16(p, 0xffff);
}

void tc_copy_tuple(tc_copybuf *b, int16_t nfields)
{
    unsigned char *p = tc_copy_reserve(b, 2);

    if (p)
        tc_put_be16(p, (uint16_t)nfields);
}

void tc_copy_null(tc_copybuf *b)
{
    unsigned char *p = tc_copy_reserve(b, 4);

    if (p)
        tc_put_be32(p, 0xffffffffu);
}

void tc_copy_int4(tc_copybuf *b, int32_t v)
{
    unsigned char *p = tc_copy_reserve(b, 8);

    if (!p)
        return;
    tc_put_be32(p, 4);
    tc_put_be32(p + 4, (uint32_t)v);
}

void tc_copy_int8(tc_copybuf *b, int64_t v)
{
    unsigned char *p = tc_copy_reserve(b, 12);

    if (!p)
        return;
    tc_put_be32(p, 8);
    tc_put_be64(p + 4, (uint64_t)v);
}

void tc_copy_float8(tc_copybuf *b, double v)
{
    unsigned char *p = tc_copy_reserve(b, 12);
    uint64_t bits;

    if (!p)
        return;
    memcpy(&bits, &v, sizeof(bits));
    tc_put_be32(p, 8);
    tc_put_be64(p + 4, bits);
}

void tc_copy_timestamptz(tc_copybuf *b, int64_t unix_us)
{
    tc_copy_int8(b, unix_us - TC_PG_EPOCH_OFFSET_US);
}

void tc_copy_text(tc_copybuf *b, const char *s, size_t len)
{
    unsigned char *p;

    if (len > INT32_MAX) {
        b->failed = 1;
        return;
    }
    p = tc_copy_reserve(b, 4 + len);
    if (!p)
        return;
    tc_put_be32(p, (uint32_t)len);
    if (len)
        memcpy(p + 4, s, len);
}

void tc_copy_jsonb(tc_copybuf *b, const char *json, size_t len)
{
    unsigned char *p;

    if (len >= INT32_MAX) {
        b->failed = 1;
        return;
    }
    p = tc_copy_reserve(b, 5 + len);
    if (!p)
        return;
    /* jsonb's binary input is a version byte (1) followed by the JSON text. */
    tc_put_be32(p, (uint32_t)len + 1);
    p[4] = 1;
    if (len)
        memcpy(p + 5, json, len);
}

size_t tc_copy_record_begin(tc_copybuf *b, uint32_t ncolumns)
{
    size_t start = b->len;
    unsigned char *p = tc_copy_reserve(b, 8);

    if (p)
        tc_put_be32(p + 4, ncolumns);
    return start;
}

void tc_copy_record_column(tc_copybuf *b, uint32_t type_oid)
{
    unsigned char *p = tc_copy_reserve(b, 4);

    if (p)
        tc_put_be32(p, type_oid);
}

void tc_copy_record_end(tc_copybuf *b, size_t start)
{
    if (!b->failed && b->len >= start + 4)
        tc_put_be32(b->data + start, (uint32_t)(b->len - start - 4));
}

void tc_copy_array_begin(tc_copybuf *b, uint32_t elem_oid, uint32_t n, int has_nulls)
{
    unsigned char *p = tc_copy_reserve(b, 20);

    if (!p)
        return;
    tc_put_be32(p, 1);
    tc_put_be32(p + 4, has_nulls ? 1 : 0);
    tc_put_be32(p + 8, elem_oid);
    tc_put_be32(p + 12, n);
    tc_put_be32(p + 16, 1);
}
