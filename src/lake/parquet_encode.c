/*
 * parquet_encode.c -- RLE/bit-packing hybrid, PLAIN booleans, dictionaries, page codecs; see
 * parquet_encode.h for the design.
 */
#include "lake/parquet_encode.h"

#include <snappy-c.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

/* Run lengths are int32 in every reader (Encodings.md: runs must be in [1, 2^31 - 1]). Literal
 * runs are cut at a multiple of 8 below that bound. */
#define TC_PQ_RLE_RUN_MAX     ((size_t)INT32_MAX)
#define TC_PQ_BITPACK_RUN_MAX ((size_t)INT32_MAX & ~(size_t)7)

/* Initial hash table size of a dictionary: small enough to be cheap for a column that turns out
 * to hold few distinct values, a power of two as the probing requires. */
#define TC_PQ_DICT_SLOTS_MIN 256

static inline uint32_t tc_pq_get(const void *v, int u8, size_t i)
{
    return u8 ? ((const uint8_t *)v)[i] : ((const uint32_t *)v)[i];
}

/* Bit-pack `count` values starting at v[start] as ceil(count / 8) groups, zero-padding the last. */
static void tc_pq_emit_bitpacked(tc_pq_buf *out, const void *v, int u8, size_t start, size_t count,
                                 int width)
{
    size_t groups = (count + 7) / 8, nbytes = groups * (size_t)width;
    uint64_t acc = 0;
    unsigned bits = 0;
    uint8_t *p;

    tc_pq_buf_put_uvarint(out, (uint64_t)groups << 1 | 1);
    if (tc_pq_buf_reserve(out, nbytes) != 0)
        return;
    p = tc_pq_buf_tail(out);
    for (size_t i = 0; i < groups * 8; i++) {
        uint32_t x = i < count ? tc_pq_get(v, u8, start + i) : 0;
        /* bits < 8 before the OR and width <= 32, so the accumulator never exceeds 40 bits. */
        acc |= (uint64_t)x << bits;
        bits += (unsigned)width;
        while (bits >= 8) {
            *p++ = (uint8_t)acc;
            acc >>= 8;
            bits -= 8;
        }
    }
    /* 8 values of any width fill whole bytes, so nothing is left in acc. */
    out->len += nbytes;
}

static void tc_pq_emit_rle(tc_pq_buf *out, uint32_t value, size_t run, int width)
{
    int vbytes = (width + 7) / 8;

    tc_pq_buf_put_uvarint(out, (uint64_t)run << 1);
    for (int i = 0; i < vbytes; i++)
        tc_pq_buf_put_u8(out, (uint8_t)(value >> (8 * i)));
}

static void tc_pq_emit_literals(tc_pq_buf *out, const void *v, int u8, size_t start, size_t count,
                                int width)
{
    while (count > 0) {
        size_t k = count < TC_PQ_BITPACK_RUN_MAX ? count : TC_PQ_BITPACK_RUN_MAX;
        tc_pq_emit_bitpacked(out, v, u8, start, k, width);
        start += k;
        count -= k;
    }
}

static void tc_pq_rle_encode(tc_pq_buf *out, const void *v, int u8, size_t n, int width)
{
    size_t lit = 0, i = 0;

    while (i < n) {
        uint32_t x = tc_pq_get(v, u8, i);
        size_t j = i + 1;
        while (j < n && tc_pq_get(v, u8, j) == x)
            j++;
        if (j - i >= TC_PQ_RLE_MIN_RUN) {
            /* Complete the pending literals' last group of 8 with the head of this run. */
            size_t pad = (8 - (i - lit) % 8) % 8;
            size_t run = j - i - pad;
            if (run >= TC_PQ_RLE_MIN_RUN) {
                tc_pq_emit_literals(out, v, u8, lit, i + pad - lit, width);
                while (run > 0) {
                    size_t k = run < TC_PQ_RLE_RUN_MAX ? run : TC_PQ_RLE_RUN_MAX;
                    tc_pq_emit_rle(out, x, k, width);
                    run -= k;
                }
                lit = j;
            }
        }
        i = j;
    }
    /* Trailing literals: the last group may be padded, the reader stops at the value count. */
    if (lit < n)
        tc_pq_emit_literals(out, v, u8, lit, n - lit, width);
}

void tc_pq_rle_encode_u32(tc_pq_buf *out, const uint32_t *v, size_t n, int width)
{
    if (width < 0 || width > TC_PQ_RLE_MAX_WIDTH) {
        out->failed = 1;
        return;
    }
    tc_pq_rle_encode(out, v, 0, n, width);
}

void tc_pq_rle_encode_u8(tc_pq_buf *out, const uint8_t *v, size_t n, int width)
{
    if (width < 0 || width > 8) {
        out->failed = 1;
        return;
    }
    tc_pq_rle_encode(out, v, 1, n, width);
}

long tc_pq_rle_decode_u32(const uint8_t *in, size_t len, int width, uint32_t *v, size_t n)
{
    size_t pos = 0, got = 0;
    uint64_t mask = width == 32 ? 0xFFFFFFFFu : (((uint64_t)1 << width) - 1);
    int vbytes = (width + 7) / 8;

    if (width < 0 || width > TC_PQ_RLE_MAX_WIDTH || len > (size_t)INT64_MAX)
        return -1;
    while (got < n) {
        uint64_t h = 0;
        unsigned shift = 0;
        /* varint header, at most 10 bytes */
        for (;;) {
            if (pos >= len || shift > 63)
                return -1;
            uint8_t b = in[pos++];
            h |= (uint64_t)(b & 0x7F) << shift;
            if (!(b & 0x80))
                break;
            shift += 7;
        }
        if (h & 1) {
            uint64_t groups = h >> 1;
            if (groups == 0 || groups > TC_PQ_BITPACK_RUN_MAX / 8)
                return -1;
            size_t nbytes = (size_t)groups * (size_t)width;
            if (nbytes > len - pos)
                return -1;
            size_t take = (size_t)groups * 8;
            if (take > n - got)
                take = n - got;
            const uint8_t *g = in + pos;
            for (size_t i = 0; i < take; i++) {
                uint64_t bit = (uint64_t)i * (uint64_t)width, acc = 0;
                size_t byte = (size_t)(bit >> 3);
                for (size_t k = 0; k < 5 && byte + k < nbytes; k++)
                    acc |= (uint64_t)g[byte + k] << (8 * k);
                v[got + i] = (uint32_t)((acc >> (bit & 7)) & mask);
            }
            got += take;
            pos += nbytes;
        } else {
            uint64_t run = h >> 1;
            uint64_t x = 0;
            if (run == 0 || run > TC_PQ_RLE_RUN_MAX)
                return -1;
            if ((size_t)vbytes > len - pos)
                return -1;
            for (int k = 0; k < vbytes; k++)
                x |= (uint64_t)in[pos + (size_t)k] << (8 * k);
            pos += (size_t)vbytes;
            if (x > mask)
                return -1;
            size_t take = run < n - got ? (size_t)run : n - got;
            for (size_t i = 0; i < take; i++)
                v[got + i] = (uint32_t)x;
            got += take;
        }
    }
    return (long)pos;
}

void tc_pq_plain_bool_encode(tc_pq_buf *out, const uint8_t *v, size_t n)
{
    size_t nbytes = (n + 7) / 8;
    uint8_t *p;

    if (tc_pq_buf_reserve(out, nbytes) != 0)
        return;
    p = tc_pq_buf_tail(out);
    memset(p, 0, nbytes);
    for (size_t i = 0; i < n; i++)
        p[i >> 3] |= (uint8_t)((v[i] != 0) << (i & 7));
    out->len += nbytes;
}

uint64_t tc_pq_hash_bytes(const void *p, size_t n)
{
    const uint8_t *s = p;
    uint64_t h = 0x9E3779B97F4A7C15ULL ^ (uint64_t)n, w;

    while (n >= 8) {
        memcpy(&w, s, 8);
        h = (h ^ w) * 0xbf58476d1ce4e5b9ULL;
        h ^= h >> 31;
        s += 8;
        n -= 8;
    }
    if (n > 0) {
        w = 0;
        memcpy(&w, s, n);
        h = (h ^ w) * 0x94d049bb133111ebULL;
    }
    return tc_pq_hash_u64(h);
}

/* ---- dictionary ---- */

/* Table position of a slot key: fixed-width keys are raw values (mixed here), byte-array keys are
 * already hashes. */
static inline uint64_t tc_pq_slot_hash(const tc_pq_dict *d, uint64_t key)
{
    return d->width ? tc_pq_hash_u64(key) : key;
}

void tc_pq_dict_init(tc_pq_dict *d, int width, size_t max_bytes, size_t max_entries)
{
    memset(d, 0, sizeof(*d));
    d->width = width;
    tc_pq_buf_init(&d->plain, 0);
    d->max_bytes = max_bytes;
    d->max_entries = max_entries;
}

void tc_pq_dict_free(tc_pq_dict *d)
{
    tc_pq_buf_free(&d->plain);
    free(d->entries);
    free(d->slots);
    d->entries = NULL;
    d->slots = NULL;
    d->n = d->nslots = d->entries_cap = 0;
}

void tc_pq_dict_reset(tc_pq_dict *d)
{
    tc_pq_buf_clear(&d->plain);
    d->n = 0;
    if (d->slots)
        memset(d->slots, 0, d->nslots * sizeof(*d->slots));
}

/* Make room for one more entry: table at most half full, entry array large enough. The slots keep
 * their keys, so growing the table rehashes without touching the entries. */
static int tc_pq_dict_make_room(tc_pq_dict *d)
{
    if (d->width == 0 && d->n + 1 > d->entries_cap) {
        size_t cap = d->entries_cap ? d->entries_cap * 2 : TC_PQ_DICT_SLOTS_MIN / 2;
        tc_pq_dict_entry *e = realloc(d->entries, cap * sizeof(*e));
        if (!e)
            return -1;
        d->entries = e;
        d->entries_cap = cap;
    }
    if ((d->n + 1) * 2 > d->nslots) {
        size_t nslots = d->nslots ? d->nslots * 2 : TC_PQ_DICT_SLOTS_MIN;
        tc_pq_dict_slot *s = calloc(nslots, sizeof(*s));
        if (!s)
            return -1;
        for (size_t i = 0; i < d->nslots; i++) {
            if (!d->slots[i].idx1)
                continue;
            size_t j = (size_t)tc_pq_slot_hash(d, d->slots[i].key) & (nslots - 1);
            while (s[j].idx1)
                j = (j + 1) & (nslots - 1);
            s[j] = d->slots[i];
        }
        free(d->slots);
        d->slots = s;
        d->nslots = nslots;
    }
    return 0;
}

/* Claim the empty slot for key (after make_room) and record entry n there. */
static void tc_pq_dict_claim(tc_pq_dict *d, uint64_t key)
{
    size_t j = (size_t)tc_pq_slot_hash(d, key) & (d->nslots - 1);

    while (d->slots[j].idx1)
        j = (j + 1) & (d->nslots - 1);
    d->slots[j].key = key;
    d->slots[j].idx1 = (uint32_t)d->n + 1;
}

int tc_pq_dict_put_fixed(tc_pq_dict *d, const void *p, uint32_t *idx)
{
    size_t w = (size_t)d->width;
    uint64_t k = 0;

    /* Constant-size copies (4 or 8 bytes) compile to plain loads; keys compare as integers, in the
     * slot itself: one cache line per probe, the entries are never read back. */
    if (w == 8)
        memcpy(&k, p, 8);
    else
        memcpy(&k, p, 4);
    if (d->nslots) {
        size_t j = (size_t)tc_pq_hash_u64(k) & (d->nslots - 1);
        while (d->slots[j].idx1) {
            if (d->slots[j].key == k) {
                *idx = d->slots[j].idx1 - 1;
                return TC_PQ_DICT_FOUND;
            }
            j = (j + 1) & (d->nslots - 1);
        }
    }
    if (d->n + 1 > d->max_entries || d->plain.len + w > d->max_bytes)
        return TC_PQ_DICT_OVER;
    if (tc_pq_dict_make_room(d) != 0)
        return TC_PQ_DICT_NOMEM;
    tc_pq_buf_put(&d->plain, p, w);
    if (d->plain.failed)
        return TC_PQ_DICT_NOMEM;
    tc_pq_dict_claim(d, k);
    *idx = (uint32_t)d->n++;
    return TC_PQ_DICT_ADDED;
}

int tc_pq_dict_put_bytes(tc_pq_dict *d, const void *p, uint32_t len, uint32_t *idx)
{
    /* The slot keeps the full 64-bit hash: a mismatch is settled without reading the entry. */
    uint64_t h = tc_pq_hash_bytes(p, len);

    if (d->nslots) {
        size_t j = (size_t)h & (d->nslots - 1);
        while (d->slots[j].idx1) {
            if (d->slots[j].key == h) {
                uint32_t e = d->slots[j].idx1 - 1;
                if (d->entries[e].len == len &&
                    (len == 0 || memcmp(d->plain.data + d->entries[e].off, p, len) == 0)) {
                    *idx = e;
                    return TC_PQ_DICT_FOUND;
                }
            }
            j = (j + 1) & (d->nslots - 1);
        }
    }
    if (d->n + 1 > d->max_entries || d->plain.len + 4 + (size_t)len > d->max_bytes)
        return TC_PQ_DICT_OVER;
    if (tc_pq_dict_make_room(d) != 0)
        return TC_PQ_DICT_NOMEM;
    tc_pq_buf_put_le32(&d->plain, len);
    d->entries[d->n].off = (uint32_t)d->plain.len;
    d->entries[d->n].len = len;
    tc_pq_buf_put(&d->plain, p, len);
    if (d->plain.failed)
        return TC_PQ_DICT_NOMEM;
    tc_pq_dict_claim(d, h);
    *idx = (uint32_t)d->n++;
    return TC_PQ_DICT_ADDED;
}

/* ---- codecs ---- */

int tc_pq_compressor_init(tc_pq_compressor *c, int codec, int level)
{
    c->codec = codec;
    c->level = level;
    c->zctx = NULL;
    switch (codec) {
    case TC_PQ_CODEC_UNCOMPRESSED:
    case TC_PQ_CODEC_SNAPPY:
        return 0;
    case TC_PQ_CODEC_ZSTD:
        c->zctx = ZSTD_createCCtx();
        return c->zctx ? 0 : -1;
    default:
        return -1;
    }
}

void tc_pq_compressor_free(tc_pq_compressor *c)
{
    if (c->zctx)
        ZSTD_freeCCtx(c->zctx);
    c->zctx = NULL;
}

int tc_pq_compress(tc_pq_compressor *c, tc_pq_buf *out, const void *in, size_t n)
{
    size_t bound, got;

    switch (c->codec) {
    case TC_PQ_CODEC_UNCOMPRESSED:
        tc_pq_buf_put(out, in, n);
        return out->failed ? -1 : 0;
    case TC_PQ_CODEC_SNAPPY:
        bound = snappy_max_compressed_length(n);
        if (tc_pq_buf_reserve(out, bound) != 0)
            return -1;
        got = bound;
        if (snappy_compress(in, n, (char *)tc_pq_buf_tail(out), &got) != SNAPPY_OK)
            return -1;
        out->len += got;
        return 0;
    case TC_PQ_CODEC_ZSTD:
        bound = ZSTD_compressBound(n);
        if (tc_pq_buf_reserve(out, bound) != 0)
            return -1;
        got = ZSTD_compressCCtx(c->zctx, tc_pq_buf_tail(out), bound, in, n, c->level);
        if (ZSTD_isError(got))
            return -1;
        out->len += got;
        return 0;
    default:
        return -1;
    }
}

int tc_pq_decompress_check(int codec, const void *in, size_t n, size_t out_len)
{
    size_t got;
    unsigned long long fcs;

    switch (codec) {
    case TC_PQ_CODEC_UNCOMPRESSED:
        return n == out_len ? 0 : -1;
    case TC_PQ_CODEC_SNAPPY:
        return snappy_uncompressed_length(in, n, &got) == SNAPPY_OK && got == out_len ? 0 : -1;
    case TC_PQ_CODEC_ZSTD:
        /* The first frame's declared size (a page may hold several frames, each at most the
         * page; a frame may omit its size, and then only decompressing can tell). */
        fcs = ZSTD_getFrameContentSize(in, n);
        if (fcs == ZSTD_CONTENTSIZE_ERROR)
            return -1;
        return fcs == ZSTD_CONTENTSIZE_UNKNOWN || fcs <= out_len ? 0 : -1;
    default:
        return -1;
    }
}

int tc_pq_decompress(int codec, const void *in, size_t n, void *out, size_t out_len)
{
    size_t got;

    switch (codec) {
    case TC_PQ_CODEC_UNCOMPRESSED:
        if (n != out_len)
            return -1;
        if (n)
            memcpy(out, in, n);
        return 0;
    case TC_PQ_CODEC_SNAPPY:
        /* snappy states the length up front; check it before trusting the stream. */
        if (snappy_uncompressed_length(in, n, &got) != SNAPPY_OK || got != out_len)
            return -1;
        got = out_len;
        if (snappy_uncompress(in, n, out, &got) != SNAPPY_OK || got != out_len)
            return -1;
        return 0;
    case TC_PQ_CODEC_ZSTD:
        got = ZSTD_decompress(out, out_len, in, n);
        if (ZSTD_isError(got) || got != out_len)
            return -1;
        return 0;
    default:
        return -1;
    }
}
