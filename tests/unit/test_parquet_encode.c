/*
 * test_parquet_encode.c -- the value encodings of src/lake/parquet_encode.c: the RLE/bit-packing
 * hybrid (exact bytes for hand-computed cases, run boundaries 7/8/9/15/16/17, alternating values,
 * every bit width 0..32 round-tripped through the decoder, corrupt input rejected), PLAIN booleans,
 * the dictionary (bounds, reset) and the page codecs.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "lake/parquet_buf.h"
#include "lake/parquet_encode.h"

static uint64_t rng = 88172645463325252ULL;

static uint64_t xorshift(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* Encode v at width w, check the bytes (if given), decode and compare. */
static void roundtrip(const uint32_t *v, size_t n, int w, const uint8_t *want, size_t want_len)
{
    tc_pq_buf b;
    uint32_t *back = calloc(n ? n : 1, sizeof(*back));

    assert_non_null(back);
    tc_pq_buf_init(&b, 0);
    tc_pq_rle_encode_u32(&b, v, n, w);
    assert_false(b.failed);
    if (want) {
        assert_int_equal(b.len, want_len);
        assert_memory_equal(b.data, want, want_len);
    }
    assert_int_equal(tc_pq_rle_decode_u32(b.data, b.len, w, back, n), (long)b.len);
    if (n)
        assert_memory_equal(back, v, n * sizeof(*v));
    free(back);
    tc_pq_buf_free(&b);
}

static void fill(uint32_t *v, size_t n, uint32_t x)
{
    for (size_t i = 0; i < n; i++)
        v[i] = x;
}

static void test_rle_exact_bytes(void **state)
{
    uint32_t v[64];

    (void)state;
    /* 8 equal values: one RLE run, header 8 << 1 = 0x10, value in one byte. */
    fill(v, 8, 1);
    roundtrip(v, 8, 1, (const uint8_t[]){0x10, 0x01}, 2);
    /* 7 equal values: too short for RLE, one bit-packed group: header (1 << 1) | 1, bits 0x7F. */
    roundtrip(v, 7, 1, (const uint8_t[]){0x03, 0x7F}, 2);
    /* 9: RLE of 9. */
    fill(v, 9, 1);
    roundtrip(v, 9, 1, (const uint8_t[]){0x12, 0x01}, 2);
    /* The spec's bit-packing example: 0..7 at width 3 -> 0x88 0xC6 0xFA. */
    for (uint32_t i = 0; i < 8; i++)
        v[i] = i;
    roundtrip(v, 8, 3, (const uint8_t[]){0x03, 0x88, 0xC6, 0xFA}, 4);
    /* Alternating 0/1 x16 at width 1: two groups, LSB first: 0b10101010. */
    for (int i = 0; i < 16; i++)
        v[i] = (uint32_t)(i & 1);
    roundtrip(v, 16, 1, (const uint8_t[]){0x05, 0xAA, 0xAA}, 3);
    /* RLE value width rounds up to whole bytes: width 9 -> 2 bytes, little-endian. */
    fill(v, 10, 0x1FF);
    roundtrip(v, 10, 9, (const uint8_t[]){0x14, 0xFF, 0x01}, 3);
    /* 3 singles then 20 equal: the run lends 5 values to complete the group of 8, the other 15
     * become an RLE run: [group: 3 + 5] [RLE 15 x 5]. Width 3. */
    v[0] = 1;
    v[1] = 2;
    v[2] = 3;
    fill(v + 3, 20, 5);
    roundtrip(v, 23, 3,
              (const uint8_t[]){0x03, 0xD1, 0xDA, 0xB6, /* 1,2,3,5,5,5,5,5 at 3 bits */ 0x1E, 0x05},
              6);
    /* Width 0: every value is 0; an RLE run has no value bytes. */
    fill(v, 20, 0);
    roundtrip(v, 20, 0, (const uint8_t[]){0x28}, 1);
    /* Width 32 round-trips the top bit. */
    v[0] = 0xFFFFFFFFu;
    v[1] = 0x80000000u;
    roundtrip(v, 2, 32, NULL, 0);
}

/* Runs of 7, 8, 9, 15, 16, 17 around every group alignment, and mixtures of them. */
static void test_rle_run_boundaries(void **state)
{
    static const size_t runs[] = {1, 2, 7, 8, 9, 15, 16, 17, 24, 63, 64, 65};
    uint32_t v[1024];

    (void)state;
    for (size_t lead = 0; lead < 9; lead++) {
        for (size_t ri = 0; ri < sizeof(runs) / sizeof(runs[0]); ri++) {
            for (size_t tail = 0; tail < 3; tail++) {
                size_t n = 0;
                for (size_t i = 0; i < lead; i++)
                    v[n++] = (uint32_t)(i % 3);
                for (size_t i = 0; i < runs[ri]; i++)
                    v[n++] = 6;
                for (size_t i = 0; i < tail; i++)
                    v[n++] = (uint32_t)(i + 1);
                for (int w = 3; w <= 4; w++)
                    roundtrip(v, n, w, NULL, 0);
            }
        }
    }
    /* Back-to-back runs of every length 1..40 with alternating values. */
    {
        size_t n = 0;
        for (size_t len = 1; len <= 40 && n < 900; len++)
            for (size_t i = 0; i < len && n < 1024; i++)
                v[n++] = (uint32_t)(len & 1);
        roundtrip(v, n, 1, NULL, 0);
        roundtrip(v, n, 7, NULL, 0);
    }
    /* Strictly alternating: all bit-packed. */
    for (size_t i = 0; i < 1000; i++)
        v[i] = (uint32_t)(i % 2);
    roundtrip(v, 1000, 1, NULL, 0);
}

/* Every width 0..32 with random data (some runs mixed in) decodes to what was encoded. */
static void test_rle_all_widths(void **state)
{
    enum { N = 777 };
    uint32_t *v = malloc(N * sizeof(*v));

    (void)state;
    assert_non_null(v);
    for (int w = 0; w <= 32; w++) {
        uint32_t mask = w == 32 ? 0xFFFFFFFFu : (uint32_t)((1ull << w) - 1);
        for (int trial = 0; trial < 4; trial++) {
            size_t n = trial == 0 ? 1 : trial == 1 ? 8 : N;
            for (size_t i = 0; i < n; i++) {
                if (trial == 3 && i > 0 && xorshift() % 3 == 0)
                    v[i] = v[i - 1]; /* runs */
                else
                    v[i] = (uint32_t)xorshift() & mask;
            }
            roundtrip(v, n, w, NULL, 0);
        }
    }
    free(v);
}

/* The byte variant used for definition levels encodes the same way. */
static void test_rle_u8(void **state)
{
    uint8_t lv[100];
    uint32_t back[100];
    tc_pq_buf b;

    (void)state;
    for (int i = 0; i < 100; i++)
        lv[i] = (uint8_t)(i < 30 || (i > 50 && i % 3));
    tc_pq_buf_init(&b, 0);
    tc_pq_rle_encode_u8(&b, lv, 100, 1);
    assert_false(b.failed);
    assert_int_equal(tc_pq_rle_decode_u32(b.data, b.len, 1, back, 100), (long)b.len);
    for (int i = 0; i < 100; i++)
        assert_int_equal(back[i], lv[i]);
    /* Wider than a byte is refused. */
    tc_pq_rle_encode_u8(&b, lv, 100, 9);
    assert_true(b.failed);
    tc_pq_buf_free(&b);
}

static void test_rle_decode_rejects(void **state)
{
    uint32_t v[64];

    (void)state;
    /* Bit-packed run with missing bytes. */
    assert_int_equal(tc_pq_rle_decode_u32((const uint8_t[]){0x03, 0x88}, 2, 3, v, 8), -1);
    /* RLE value wider than the bit width. */
    assert_int_equal(tc_pq_rle_decode_u32((const uint8_t[]){0x10, 0x02}, 2, 1, v, 8), -1);
    /* Zero-length RLE run. */
    assert_int_equal(tc_pq_rle_decode_u32((const uint8_t[]){0x00, 0x01}, 2, 1, v, 1), -1);
    /* Runs end before the values asked for. */
    assert_int_equal(tc_pq_rle_decode_u32((const uint8_t[]){0x10, 0x01}, 2, 1, v, 9), -1);
    /* Truncated header varint. */
    assert_int_equal(tc_pq_rle_decode_u32((const uint8_t[]){0x80}, 1, 1, v, 1), -1);
    /* Bad widths. */
    assert_int_equal(tc_pq_rle_decode_u32((const uint8_t[]){0x10, 0x01}, 2, 33, v, 1), -1);
    /* Asking for fewer values than a run holds is fine (padding of the last group). */
    assert_int_equal(tc_pq_rle_decode_u32((const uint8_t[]){0x03, 0x88, 0xC6, 0xFA}, 4, 3, v, 5),
                     4);
    assert_int_equal(v[4], 4);
}

static void test_plain_bool(void **state)
{
    uint8_t v[11] = {1, 0, 0, 0, 0, 0, 0, 1, 1, 0, 7};
    tc_pq_buf b;

    (void)state;
    tc_pq_buf_init(&b, 0);
    tc_pq_plain_bool_encode(&b, v, 11);
    assert_int_equal(b.len, 2);
    assert_int_equal(b.data[0], 0x81);
    assert_int_equal(b.data[1], 0x05); /* bits 8 and 10; nonzero is true */
    tc_pq_buf_free(&b);
}

static void test_dict_bytes(void **state)
{
    tc_pq_dict d;
    uint32_t ix;
    char key[32];

    (void)state;
    /* Bound by bytes: each entry takes 4 + len bytes of PLAIN. */
    tc_pq_dict_init(&d, 0, 4 + 3 + 4 + 4 + 2, 1000);
    assert_int_equal(tc_pq_dict_put_bytes(&d, "abc", 3, &ix), TC_PQ_DICT_ADDED);
    assert_int_equal(ix, 0);
    assert_int_equal(tc_pq_dict_put_bytes(&d, "", 0, &ix), TC_PQ_DICT_ADDED);
    assert_int_equal(ix, 1);
    assert_int_equal(tc_pq_dict_put_bytes(&d, "abc", 3, &ix), TC_PQ_DICT_FOUND);
    assert_int_equal(ix, 0);
    assert_int_equal(tc_pq_dict_put_bytes(&d, "", 0, &ix), TC_PQ_DICT_FOUND);
    assert_int_equal(ix, 1);
    assert_int_equal(tc_pq_dict_put_bytes(&d, "xyz", 3, &ix), TC_PQ_DICT_OVER);
    assert_int_equal(d.n, 2);
    assert_int_equal(tc_pq_dict_put_bytes(&d, "ab", 2, &ix), TC_PQ_DICT_ADDED);
    /* The PLAIN body is exactly length-prefixed entries. */
    assert_int_equal(d.plain.len, 4 + 3 + 4 + 0 + 4 + 2);
    assert_memory_equal(d.plain.data,
                        "\x03\x00\x00\x00"
                        "abc"
                        "\x00\x00\x00\x00"
                        "\x02\x00\x00\x00"
                        "ab",
                        d.plain.len);
    tc_pq_dict_reset(&d);
    assert_int_equal(d.n, 0);
    assert_int_equal(tc_pq_dict_put_bytes(&d, "xyz", 3, &ix), TC_PQ_DICT_ADDED);
    assert_int_equal(ix, 0);
    tc_pq_dict_free(&d);

    /* Bound by entries, and many entries through table growth. */
    tc_pq_dict_init(&d, 0, 1 << 20, 5000);
    for (int i = 0; i < 5000; i++) {
        int n = snprintf(key, sizeof(key), "device-%d", i);
        assert_int_equal(tc_pq_dict_put_bytes(&d, key, (uint32_t)n, &ix), TC_PQ_DICT_ADDED);
        assert_int_equal(ix, (uint32_t)i);
    }
    for (int i = 0; i < 5000; i += 7) {
        int n = snprintf(key, sizeof(key), "device-%d", i);
        assert_int_equal(tc_pq_dict_put_bytes(&d, key, (uint32_t)n, &ix), TC_PQ_DICT_FOUND);
        assert_int_equal(ix, (uint32_t)i);
        uint32_t len;
        const uint8_t *p = tc_pq_dict_bytes(&d, ix, &len);
        assert_int_equal(len, (uint32_t)n);
        assert_memory_equal(p, key, len);
    }
    assert_int_equal(tc_pq_dict_put_bytes(&d, "new", 3, &ix), TC_PQ_DICT_OVER);
    tc_pq_dict_free(&d);
}

static void test_dict_fixed(void **state)
{
    tc_pq_dict d;
    uint32_t ix;
    double a = 0.0, b = -0.0, c = 1.5;

    (void)state;
    tc_pq_dict_init(&d, 8, 1 << 20, 3);
    assert_int_equal(tc_pq_dict_put_fixed(&d, &a, &ix), TC_PQ_DICT_ADDED);
    /* Bitwise keys: -0.0 is its own entry (the value must come back with its sign). */
    assert_int_equal(tc_pq_dict_put_fixed(&d, &b, &ix), TC_PQ_DICT_ADDED);
    assert_int_equal(ix, 1);
    assert_int_equal(tc_pq_dict_put_fixed(&d, &c, &ix), TC_PQ_DICT_ADDED);
    assert_int_equal(tc_pq_dict_put_fixed(&d, &a, &ix), TC_PQ_DICT_FOUND);
    assert_int_equal(ix, 0);
    assert_int_equal(tc_pq_dict_put_fixed(&d, &(double){2.0}, &ix), TC_PQ_DICT_OVER);
    assert_int_equal(d.plain.len, 24);
    tc_pq_dict_free(&d);

    /* 4-byte values, many of them. */
    tc_pq_dict_init(&d, 4, 4 * 10000, 100000);
    for (int32_t i = 0; i < 10000; i++)
        assert_int_equal(tc_pq_dict_put_fixed(&d, &i, &ix), TC_PQ_DICT_ADDED);
    {
        int32_t k = 10000;
        assert_int_equal(tc_pq_dict_put_fixed(&d, &k, &ix), TC_PQ_DICT_OVER); /* bytes bound */
        k = 1234;
        assert_int_equal(tc_pq_dict_put_fixed(&d, &k, &ix), TC_PQ_DICT_FOUND);
        assert_int_equal(ix, 1234);
    }
    tc_pq_dict_free(&d);
}

static void test_codecs(void **state)
{
    static const int codecs[] = {TC_PQ_CODEC_UNCOMPRESSED, TC_PQ_CODEC_SNAPPY, TC_PQ_CODEC_ZSTD};
    uint8_t in[5000], out[5000];
    tc_pq_compressor c;
    tc_pq_buf b;

    (void)state;
    for (size_t i = 0; i < sizeof(in); i++)
        in[i] = (uint8_t)(i % 17 == 0 ? xorshift() : i / 100);
    for (size_t k = 0; k < 3; k++) {
        assert_int_equal(tc_pq_compressor_init(&c, codecs[k], 3), 0);
        tc_pq_buf_init(&b, 0);
        assert_int_equal(tc_pq_compress(&c, &b, in, sizeof(in)), 0);
        if (codecs[k] != TC_PQ_CODEC_UNCOMPRESSED)
            assert_true(b.len < sizeof(in));
        assert_int_equal(tc_pq_decompress(codecs[k], b.data, b.len, out, sizeof(out)), 0);
        assert_memory_equal(in, out, sizeof(in));
        /* A wrong expected size is an error, not a short or long write. */
        assert_int_equal(tc_pq_decompress(codecs[k], b.data, b.len, out, sizeof(out) - 1), -1);
        /* Garbage does not decompress. */
        if (codecs[k] != TC_PQ_CODEC_UNCOMPRESSED) {
            b.data[b.len / 2] ^= 0x5A;
            b.data[0] ^= 0x33;
            assert_int_equal(tc_pq_decompress(codecs[k], b.data, b.len, out, sizeof(out)), -1);
        }
        /* Empty input round-trips too. */
        tc_pq_buf_clear(&b);
        assert_int_equal(tc_pq_compress(&c, &b, "", 0), 0);
        if (codecs[k] != TC_PQ_CODEC_UNCOMPRESSED)
            assert_int_equal(tc_pq_decompress(codecs[k], b.data, b.len, out, 0), 0);
        tc_pq_buf_free(&b);
        tc_pq_compressor_free(&c);
    }
    assert_int_equal(tc_pq_compressor_init(&c, 2 /* GZIP: not ours */, 0), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rle_exact_bytes),
        cmocka_unit_test(test_rle_run_boundaries),
        cmocka_unit_test(test_rle_all_widths),
        cmocka_unit_test(test_rle_u8),
        cmocka_unit_test(test_rle_decode_rejects),
        cmocka_unit_test(test_plain_bool),
        cmocka_unit_test(test_dict_bytes),
        cmocka_unit_test(test_dict_fixed),
        cmocka_unit_test(test_codecs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
