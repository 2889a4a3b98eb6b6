/*
 * test_copy.c -- the binary COPY encoder, byte for byte.
 *
 * Expected bytes are written out by hand from the PostgreSQL documentation ("COPY ... Binary
 * Format") and the types' send functions (big-endian integers, IEEE 754 doubles, jsonb version 1,
 * timestamptz as microseconds since 2000-01-01), never computed with the encoder's own helpers.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "store/copy.h"

/* The encoder's first allocation (copy.c); a buffer grows past it by doubling. */
#define INITIAL_CAP (256 * 1024)

/* The buffer holds exactly these bytes and no append failed. */
#define EXPECT_BYTES(b, ...)                                                                       \
    do {                                                                                           \
        static const unsigned char want_[] = {__VA_ARGS__};                                        \
        assert_false((b)->failed);                                                                 \
        assert_int_equal((b)->len, sizeof(want_));                                                 \
        assert_memory_equal((b)->data, want_, sizeof(want_));                                      \
    } while (0)

static int setup(void **state)
{
    tc_copybuf *b = malloc(sizeof(*b));

    if (!b)
        return -1;
    tc_copybuf_init(b);
    *state = b;
    return 0;
}

static int teardown(void **state)
{
    tc_copybuf *b = *state;

    tc_copybuf_free(b);
    free(b);
    return 0;
}

static void test_init_is_empty(void **state)
{
    tc_copybuf *b = *state;

    assert_null(b->data);
    assert_int_equal(b->len, 0);
    assert_int_equal(b->cap, 0);
    assert_false(b->failed);
}

static void test_header(void **state)
{
    tc_copybuf *b = *state;

    tc_copy_begin(b);
    /* 11-byte signature, int32 flags 0, int32 header extension length 0. */
    EXPECT_BYTES(b, 'P', 'G', 'C', 'O', 'P', 'Y', '\n', 0xff, '\r', '\n', 0x00, 0, 0, 0, 0, 0, 0, 0,
                 0);
    assert_int_equal(b->len, 19);
}

static void test_trailer(void **state)
{
    tc_copybuf *b = *state;

    tc_copy_end(b);
    EXPECT_BYTES(b, 0xff, 0xff);
}

static void test_tuple_count(void **state)
{
    tc_copybuf *b = *state;

    tc_copy_tuple(b, 12);
    tc_copy_tuple(b, 0x1234);
    EXPECT_BYTES(b, 0x00, 0x0c, 0x12, 0x34);
}

static void test_null(void **state)
{
    tc_copybuf *b = *state;

    tc_copy_null(b);
    EXPECT_BYTES(b, 0xff, 0xff, 0xff, 0xff);
}

static void test_int4(void **state)
{
    tc_copybuf *b = *state;

    tc_copy_int4(b, 0x01020304);
    tc_copy_int4(b, -2);
    tc_copy_int4(b, INT32_MIN);
    EXPECT_BYTES(b, 0, 0, 0, 4, 0x01, 0x02, 0x03, 0x04, /* */
                 0, 0, 0, 4, 0xff, 0xff, 0xff, 0xfe,    /* */
                 0, 0, 0, 4, 0x80, 0x00, 0x00, 0x00);
}

static void test_int8(void **state)
{
    tc_copybuf *b = *state;

    tc_copy_int8(b, INT64_C(0x0102030405060708));
    tc_copy_int8(b, -1);
    tc_copy_int8(b, INT64_MIN);
    EXPECT_BYTES(b, 0, 0, 0, 8, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, /* */
                 0, 0, 0, 8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,    /* */
                 0, 0, 0, 8, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00);
}

static void test_float8_values(void **state)
{
    tc_copybuf *b = *state;

    tc_copy_float8(b, 1.0);                                   /* 0x3ff0000000000000 */
    tc_copy_float8(b, -2.5);                                  /* 0xc004000000000000 */
    tc_copy_float8(b, 0.1);                                   /* 0x3fb999999999999a */
    tc_copy_float8(b, 0.0);                                   /* all zero */
    tc_copy_float8(b, -0.0);                                  /* sign bit only */
    EXPECT_BYTES(b, 0, 0, 0, 8, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0, /* */
                 0, 0, 0, 8, 0xc0, 0x04, 0, 0, 0, 0, 0, 0,    /* */
                 0, 0, 0, 8, 0x3f, 0xb9, 0x99, 0x99, 0x99, 0x99, 0x99, 0x9a, /* */
                 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0,                         /* */
                 0, 0, 0, 8, 0x80, 0, 0, 0, 0, 0, 0, 0);
}

static void test_float8_special(void **state)
{
    tc_copybuf *b = *state;
    const unsigned char *p;
    uint64_t bits = 0;

    tc_copy_float8(b, INFINITY);
    tc_copy_float8(b, -INFINITY);
    tc_copy_float8(b, NAN);
    assert_false(b->failed);
    assert_int_equal(b->len, 36);
    p = b->data;
    assert_memory_equal(p, ((const unsigned char[]){0, 0, 0, 8, 0x7f, 0xf0, 0, 0, 0, 0, 0, 0}), 12);
    assert_memory_equal(p + 12, ((const unsigned char[]){0, 0, 0, 8, 0xff, 0xf0, 0, 0, 0, 0, 0, 0}),
                        12);
    /* NaN: whatever payload the compiler picked, it must travel unchanged and big-endian: all
     * exponent bits set and a nonzero mantissa. */
    assert_memory_equal(p + 24, ((const unsigned char[]){0, 0, 0, 8}), 4);
    for (int i = 0; i < 8; i++)
        bits = bits << 8 | p[28 + i];
    assert_int_equal(bits & UINT64_C(0x7ff0000000000000), UINT64_C(0x7ff0000000000000));
    assert_int_not_equal(bits & UINT64_C(0x000fffffffffffff), 0);
    {
        double nan = NAN;
        uint64_t native;

        memcpy(&native, &nan, sizeof(native));
        assert_int_equal(bits, native);
    }
}

static void test_float8_nan_payload(void **state)
{
    tc_copybuf *b = *state;
    uint64_t in = UINT64_C(0xfff8000000000123);
    double v;

    memcpy(&v, &in, sizeof(v));
    tc_copy_float8(b, v);
    EXPECT_BYTES(b, 0, 0, 0, 8, 0xff, 0xf8, 0, 0, 0, 0, 0x01, 0x23);
}

static void test_text(void **state)
{
    tc_copybuf *b = *state;

    tc_copy_text(b, "sensor-1", 8);
    tc_copy_text(b, "a\0b", 3); /* bytea: embedded NUL bytes are data */
    EXPECT_BYTES(b, 0, 0, 0, 8, 's', 'e', 'n', 's', 'o', 'r', '-', '1', /* */
                 0, 0, 0, 3, 'a', 0, 'b');
}

static void test_text_empty(void **state)
{
    tc_copybuf *b = *state;

    /* Empty text is a zero length, not NULL (-1); a NULL pointer with length 0 is fine. */
    tc_copy_text(b, "", 0);
    tc_copy_text(b, NULL, 0);
    EXPECT_BYTES(b, 0, 0, 0, 0, 0, 0, 0, 0);
}

static void test_jsonb(void **state)
{
    tc_copybuf *b = *state;

    tc_copy_jsonb(b, "{\"a\":1}", 7);
    tc_copy_jsonb(b, "", 0);
    EXPECT_BYTES(b, 0, 0, 0, 8, 0x01, '{', '"', 'a', '"', ':', '1', '}', /* */
                 0, 0, 0, 1, 0x01);
}

static void test_timestamptz(void **state)
{
    tc_copybuf *b = *state;

    /* Unix epoch: 946684800 s before PostgreSQL's epoch, -946684800000000 us, which is
     * 0xfffca2fec4c82000 in two's complement. */
    tc_copy_timestamptz(b, 0);
    /* 2000-01-01T00:00:00Z is PostgreSQL's zero. */
    tc_copy_timestamptz(b, INT64_C(946684800000000));
    /* One microsecond after it. */
    tc_copy_timestamptz(b, INT64_C(946684800000001));
    EXPECT_BYTES(b, 0, 0, 0, 8, 0xff, 0xfc, 0xa2, 0xfe, 0xc4, 0xc8, 0x20, 0x00, /* */
                 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0,                            /* */
                 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 1);
    assert_int_equal(TC_PG_EPOCH_OFFSET_US, INT64_C(946684800000000));
}

/* A whole stream: header, one tuple of every kind of field, trailer. */
static void test_stream(void **state)
{
    tc_copybuf *b = *state;

    tc_copy_begin(b);
    tc_copy_tuple(b, 3);
    tc_copy_int4(b, 7);
    tc_copy_null(b);
    tc_copy_text(b, "x", 1);
    tc_copy_end(b);
    EXPECT_BYTES(b, 'P', 'G', 'C', 'O', 'P', 'Y', '\n', 0xff, '\r', '\n', 0, /* signature */
                 0, 0, 0, 0, 0, 0, 0, 0,                                     /* flags, ext */
                 0, 3,                                                       /* field count */
                 0, 0, 0, 4, 0, 0, 0, 7,                                     /* int4 7 */
                 0xff, 0xff, 0xff, 0xff,                                     /* NULL */
                 0, 0, 0, 1, 'x',                                            /* text */
                 0xff, 0xff);                                                /* trailer */
}

/* 1 MB of text in 1000-byte pieces grows the buffer past its first 256 KiB several times; every
 * piece must survive the reallocations intact and in order. */
static void test_growth(void **state)
{
    tc_copybuf *b = *state;
    enum { PIECE = 1000, PIECES = 1000 };
    char piece[PIECE];
    size_t pos = 0;

    tc_copy_text(b, "x", 1);
    assert_int_equal(b->cap, INITIAL_CAP);
    tc_copybuf_reset(b);
    for (int i = 0; i < PIECES; i++) {
        for (int j = 0; j < PIECE; j++)
            piece[j] = (char)('a' + (i * 7 + j) % 26);
        tc_copy_text(b, piece, PIECE);
    }
    assert_false(b->failed);
    assert_int_equal(b->len, (size_t)PIECES * (4 + PIECE));
    assert_true(b->cap >= b->len);
    assert_true(b->cap > INITIAL_CAP);
    assert_int_equal(b->cap % INITIAL_CAP, 0); /* doubling from the initial size */
    for (int i = 0; i < PIECES; i++) {
        const unsigned char *p = b->data + pos;

        assert_memory_equal(p, ((const unsigned char[]){0, 0, 0x03, 0xe8}), 4);
        for (int j = 0; j < PIECE; j++) {
            if (p[4 + j] != (unsigned char)('a' + (i * 7 + j) % 26))
                fail_msg("piece %d byte %d is %d", i, j, p[4 + j]);
        }
        pos += 4 + PIECE;
    }

    /* A single value larger than the current capacity. */
    tc_copybuf_reset(b);
    {
        size_t big = 3 * (size_t)INITIAL_CAP * 4, cap_before = b->cap;
        char *s = malloc(big);

        assert_non_null(s);
        memset(s, 'z', big);
        s[big - 1] = 'E';
        tc_copy_text(b, s, big);
        free(s);
        assert_false(b->failed);
        assert_int_equal(b->len, 4 + big);
        assert_true(b->cap > cap_before);
        assert_int_equal(b->data[0], (big >> 24) & 0xff);
        assert_int_equal(b->data[1], (big >> 16) & 0xff);
        assert_int_equal(b->data[2], (big >> 8) & 0xff);
        assert_int_equal(b->data[3], big & 0xff);
        assert_int_equal(b->data[4], 'z');
        assert_int_equal(b->data[4 + big - 1], 'E');
    }
}

static void test_reset_keeps_capacity(void **state)
{
    tc_copybuf *b = *state;
    unsigned char *data;
    size_t cap;

    for (int i = 0; i < 100; i++)
        tc_copy_text(b, "0123456789012345678901234567890123456789", 40);
    data = b->data;
    cap = b->cap;
    assert_int_equal(b->len, 100 * 44);
    tc_copybuf_reset(b);
    assert_int_equal(b->len, 0);
    assert_int_equal(b->cap, cap);
    assert_ptr_equal(b->data, data);
    assert_false(b->failed);
    /* And writing again starts at the beginning. */
    tc_copy_int4(b, 1);
    EXPECT_BYTES(b, 0, 0, 0, 4, 0, 0, 0, 1);
    assert_ptr_equal(b->data, data);
}

static void test_reset_clears_failed(void **state)
{
    tc_copybuf *b = *state;

    b->failed = 1;
    tc_copy_int4(b, 1); /* a failed buffer ignores appends until reset */
    assert_int_equal(b->len, 0);
    tc_copybuf_reset(b);
    assert_false(b->failed);
    tc_copy_int4(b, 2);
    EXPECT_BYTES(b, 0, 0, 0, 4, 0, 0, 0, 2);
}

static void test_free_then_reuse(void **state)
{
    tc_copybuf *b = *state;

    tc_copy_int8(b, 5);
    tc_copybuf_free(b);
    assert_null(b->data);
    assert_int_equal(b->len, 0);
    assert_int_equal(b->cap, 0);
    tc_copy_int8(b, 6);
    EXPECT_BYTES(b, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 6);
}

/* An array of two records (record_send inside array_send): each element's length covers its
 * column count and its columns, each column its type OID, length and value. */
static void test_array_of_records(void **state)
{
    tc_copybuf *b = *state;
    size_t start;

    tc_copy_array_begin(b, 16384, 2, 0);
    start = tc_copy_record_begin(b, 2);
    assert_int_equal(start, 20);
    tc_copy_record_column(b, TC_OID_TEXT);
    tc_copy_text(b, "ab", 2);
    tc_copy_record_column(b, TC_OID_INT8);
    tc_copy_int8(b, 7);
    tc_copy_record_end(b, start);
    start = tc_copy_record_begin(b, 1);
    tc_copy_record_column(b, TC_OID_FLOAT8);
    tc_copy_null(b);
    tc_copy_record_end(b, start);
    EXPECT_BYTES(b, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0x40, 0, 0, 0, 0, 2, 0, 0, 0, 1, /* header */
                 0, 0, 0, 30, 0, 0, 0, 2,                                          /* 2 columns */
                 0, 0, 0, 25, 0, 0, 0, 2, 'a', 'b',                                /* text */
                 0, 0, 0, 20, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 7,                  /* int8 */
                 0, 0, 0, 12, 0, 0, 0, 1,                                          /* 1 column */
                 0, 0, 2, 189, 0xff, 0xff, 0xff, 0xff);                            /* NULL */
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_init_is_empty),
        T(test_header),
        T(test_trailer),
        T(test_tuple_count),
        T(test_null),
        T(test_int4),
        T(test_int8),
        T(test_float8_values),
        T(test_float8_special),
        T(test_float8_nan_payload),
        T(test_text),
        T(test_text_empty),
        T(test_jsonb),
        T(test_timestamptz),
        T(test_stream),
        T(test_growth),
        T(test_reset_keeps_capacity),
        T(test_reset_clears_failed),
        T(test_free_then_reuse),
        T(test_array_of_records),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
