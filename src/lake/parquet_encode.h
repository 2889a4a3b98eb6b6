/*
 * parquet_encode.h -- the value-level encodings of Parquet: the RLE/bit-packing hybrid (definition
 * levels, dictionary indices), PLAIN booleans, dictionaries, and the page codecs.
 *
 * These are pure functions over arrays and tc_pq_buf buffers (sticky failure, see parquet_buf.h);
 * parquet.c strings them into pages. The hybrid encoder works on a whole page's values at once (the
 * writer keeps them in an array until the page is cut), which lets it choose runs by looking ahead
 * instead of the usual streaming state machine: a run of >= TC_PQ_RLE_MIN_RUN equal values becomes
 * an RLE run, everything else is bit-packed in groups of 8. A bit-packed run can only end on a
 * multiple of 8 values (a reader cannot tell padding from values mid-stream), so when a long run
 * starts at a position that would leave a partial group, its first values are lent to the group.
 *
 * The decoder exists for the unit tests and for `lake verify --deep` (definition levels); it is
 * strict: every run must fit the input, and it never writes more values than asked.
 */
#ifndef TC_LAKE_PARQUET_ENCODE_H
#define TC_LAKE_PARQUET_ENCODE_H

#include <stddef.h>
#include <stdint.h>

#include "lake/parquet_buf.h"

/* Shortest run worth an RLE run: at 8 equal values the RLE run (2+ bytes) is never larger than the
 * bit-packed group it replaces, and every bit-packed group boundary stays reachable. */
#define TC_PQ_RLE_MIN_RUN 8

/* Widest value the hybrid encodes: dictionary indices and levels are at most 32 bits. */
#define TC_PQ_RLE_MAX_WIDTH 32

/* Bits needed to represent v (0 for 0). */
static inline int tc_pq_bit_width(uint64_t v)
{
    return v ? 64 - __builtin_clzll(v) : 0;
}

/* Append the hybrid encoding of v[0..n) at bit width `width` (0..32) to out (no length prefix).
 * Values must fit in `width` bits. */
void tc_pq_rle_encode_u32(tc_pq_buf *out, const uint32_t *v, size_t n, int width);
/* Same for byte-sized values (definition levels). */
void tc_pq_rle_encode_u8(tc_pq_buf *out, const uint8_t *v, size_t n, int width);

/* Decode exactly n values of bit width `width` from in[0..len) into v. Returns the number of input
 * bytes consumed, or -1 when the input is corrupt or too short. */
long tc_pq_rle_decode_u32(const uint8_t *in, size_t len, int width, uint32_t *v, size_t n);

/* PLAIN BOOLEAN: bit-pack v[0..n) (nonzero = true), LSB first, padded to a byte. */
void tc_pq_plain_bool_encode(tc_pq_buf *out, const uint8_t *v, size_t n);

/* 64-bit hash of a byte string (multiply-xorshift over 8-byte words). Not cryptographic; only the
 * dictionary's open addressing uses it, and a collision costs a memcmp, not correctness. */
uint64_t tc_pq_hash_bytes(const void *p, size_t n);

static inline uint64_t tc_pq_hash_u64(uint64_t x)
{
    /* A full-avalanche finaliser: the table indexes by the high bits. */
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

/*
 * Dictionary of one column chunk. Entries are stored already PLAIN-encoded in `plain` -- exactly
 * the body of the dictionary page -- so emitting the page is a copy. For BYTE_ARRAY an entry is a
 * 4-byte length then the bytes; for fixed-width types, `width` bytes. The hash table maps values to
 * entry indices by open addressing (linear probing, load <= 1/2).
 */
typedef struct tc_pq_dict_entry {
    uint32_t off; /* offset of the value bytes in plain (after the length prefix) */
    uint32_t len;
} tc_pq_dict_entry;

/* A hash table slot: the key (a fixed-width value's bits, or a byte string's 64-bit hash) next to
 * its entry, so that a probe touches one cache line. */
typedef struct tc_pq_dict_slot {
    uint64_t key;
    uint32_t idx1; /* entry index + 1; 0 = empty */
} tc_pq_dict_slot;

typedef struct tc_pq_dict {
    int width;                 /* fixed value width in bytes, 0 for BYTE_ARRAY */
    tc_pq_buf plain;           /* PLAIN-encoded entries */
    tc_pq_dict_entry *entries; /* BYTE_ARRAY only */
    size_t n;                  /* entries */
    size_t entries_cap;
    tc_pq_dict_slot *slots;
    size_t nslots;      /* power of two */
    size_t max_bytes;   /* bound on plain.len */
    size_t max_entries; /* bound on n */
} tc_pq_dict;

/* Result of an insert-or-find. */
enum { TC_PQ_DICT_FOUND = 0, TC_PQ_DICT_ADDED = 1, TC_PQ_DICT_OVER = -1, TC_PQ_DICT_NOMEM = -2 };

void tc_pq_dict_init(tc_pq_dict *d, int width, size_t max_bytes, size_t max_entries);
void tc_pq_dict_free(tc_pq_dict *d);
/* Forget all entries (next column chunk), keep the memory. */
void tc_pq_dict_reset(tc_pq_dict *d);

/* Find or add a fixed-width value (width bytes at p, width 4 or 8, compared bitwise). Sets *idx.
 * Returns TC_PQ_DICT_FOUND/ADDED, TC_PQ_DICT_OVER when adding would pass a bound (nothing added),
 * or TC_PQ_DICT_NOMEM. */
int tc_pq_dict_put_fixed(tc_pq_dict *d, const void *p, uint32_t *idx);
/* Same for a byte string. */
int tc_pq_dict_put_bytes(tc_pq_dict *d, const void *p, uint32_t len, uint32_t *idx);

/* Bytes of entry i (BYTE_ARRAY dictionaries). */
static inline const uint8_t *tc_pq_dict_bytes(const tc_pq_dict *d, uint32_t i, uint32_t *len)
{
    *len = d->entries[i].len;
    return d->plain.data + d->entries[i].off;
}

/* Page codecs, numbered as parquet.thrift's CompressionCodec. */
enum { TC_PQ_CODEC_UNCOMPRESSED = 0, TC_PQ_CODEC_SNAPPY = 1, TC_PQ_CODEC_ZSTD = 6 };

/* Compression context (zstd keeps one to avoid a malloc per page). */
typedef struct tc_pq_compressor {
    int codec;
    int level;
    void *zctx; /* ZSTD_CCtx */
} tc_pq_compressor;

/* Returns 0, or -1 when the codec is unknown or out of memory. */
int tc_pq_compressor_init(tc_pq_compressor *c, int codec, int level);
void tc_pq_compressor_free(tc_pq_compressor *c);

/* Append the compressed form of in[0..n) to out (for UNCOMPRESSED, a copy). Returns 0 or -1. */
int tc_pq_compress(tc_pq_compressor *c, tc_pq_buf *out, const void *in, size_t n);

/* Cheap plausibility check before allocating out_len bytes for a page: does the compressed stream
 * itself claim that size (snappy's length prefix, zstd's frame content size when present)? Returns
 * 0 when plausible, -1 when it certainly is not. */
int tc_pq_decompress_check(int codec, const void *in, size_t n, size_t out_len);

/* Decompress in[0..n) with codec into exactly out_len bytes at out. Returns 0, or -1 when the data
 * is corrupt or does not decompress to exactly out_len bytes. */
int tc_pq_decompress(int codec, const void *in, size_t n, void *out, size_t out_len);

#endif
