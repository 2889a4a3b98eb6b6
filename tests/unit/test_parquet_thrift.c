/*
 * test_parquet_thrift.c -- the Thrift compact protocol of src/lake/thrift_compact.c against bytes
 * computed by hand from the protocol spec: zigzag varints, short and long field headers (deltas
 * above 15, ids going down), bools in the type nibble, short and long list headers, nested structs,
 * and the reader's bounds (truncation, lying list sizes, nesting depth, varint overflow).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "lake/parquet_buf.h"
#include "lake/thrift_compact.h"

static void assert_bytes(const tc_pq_buf *b, const uint8_t *want, size_t n)
{
    assert_false(b->failed);
    assert_int_equal(b->len, n);
    assert_memory_equal(b->data, want, n);
}

static void test_zigzag(void **state)
{
    (void)state;
    assert_int_equal(tc_thrift_zigzag32(0), 0);
    assert_int_equal(tc_thrift_zigzag32(-1), 1);
    assert_int_equal(tc_thrift_zigzag32(1), 2);
    assert_int_equal(tc_thrift_zigzag32(-2), 3);
    assert_int_equal(tc_thrift_zigzag32(2), 4);
    assert_int_equal(tc_thrift_zigzag32(INT32_MAX), 0xFFFFFFFEu);
    assert_int_equal(tc_thrift_zigzag32(INT32_MIN), 0xFFFFFFFFu);
    assert_true(tc_thrift_zigzag64(INT64_MAX) == 0xFFFFFFFFFFFFFFFEull);
    assert_true(tc_thrift_zigzag64(INT64_MIN) == 0xFFFFFFFFFFFFFFFFull);
    assert_true(tc_thrift_zigzag64(-3) == 5);
}

static void test_varint(void **state)
{
    tc_pq_buf b;
    /* The spec's own example: 50399 = 0xDF 0x89 0x03. */
    static const uint8_t w50399[] = {0xDF, 0x89, 0x03};
    static const uint8_t wmax[] = {0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01};

    (void)state;
    tc_pq_buf_init(&b, 0);
    tc_pq_buf_put_uvarint(&b, 50399);
    assert_bytes(&b, w50399, 3);
    tc_pq_buf_clear(&b);
    tc_pq_buf_put_uvarint(&b, 127);
    tc_pq_buf_put_uvarint(&b, 128);
    tc_pq_buf_put_uvarint(&b, 0);
    assert_bytes(&b, (const uint8_t[]){0x7F, 0x80, 0x01, 0x00}, 4);
    tc_pq_buf_clear(&b);
    tc_pq_buf_put_uvarint(&b, UINT64_MAX);
    assert_bytes(&b, wmax, sizeof(wmax));
    tc_pq_buf_free(&b);
}

/* A struct exercising every field-header form. */
static void test_struct_fields(void **state)
{
    tc_pq_buf b;
    tc_thrift_writer w;
    static const uint8_t want[] = {
        0x15, 0x0A,             /* field 1 i32 5: delta 1, type 5; zigzag(5) = 10 */
        0x05, 0x22, 0x01,       /* field 17 i32 -1: delta 16 > 15, long form: type, zigzag(17)=34 */
        0x11,                   /* field 18 bool true: delta 1, type 1, no value */
        0x22,                   /* field 20 bool false: delta 2, type 2 */
        0x04, 0x06, 0xE8, 0x07, /* field 3 i16 500: id goes down, long form; zigzag(500)=1000 */
        0x16, 0x03,             /* field 4 i64 -2: delta 1, type 6; zigzag(-2) = 3 */
        0x48, 0x03, 'a',  'b',  'c',                   /* field 8 binary "abc": delta 4, type 8 */
        0x13, 0xFF,                                    /* field 9 i8 -1 */
        0x17, 0,    0,    0,    0,   0, 0, 0xF0, 0x3F, /* field 10 double 1.0, little-endian */
        0x00,                                          /* stop */
    };

    (void)state;
    tc_pq_buf_init(&b, 0);
    tc_thrift_writer_init(&w, &b);
    tc_thrift_struct_begin(&w);
    tc_thrift_field_i32(&w, 1, 5);
    tc_thrift_field_i32(&w, 17, -1);
    tc_thrift_field_bool(&w, 18, 1);
    tc_thrift_field_bool(&w, 20, 0);
    tc_thrift_field_i16(&w, 3, 500);
    tc_thrift_field_i64(&w, 4, -2);
    tc_thrift_field_binary(&w, 8, "abc", 3);
    tc_thrift_field_i8(&w, 9, -1);
    tc_thrift_field_double(&w, 10, 1.0);
    tc_thrift_struct_end(&w);
    assert_false(tc_thrift_writer_failed(&w));
    assert_bytes(&b, want, sizeof(want));
    tc_pq_buf_free(&b);
}

/* Lists: short header below 15 elements, long header from 15 on; nested struct ids restart. */
static void test_lists_and_nesting(void **state)
{
    tc_pq_buf b;
    tc_thrift_writer w;
    uint8_t want[64];
    size_t n = 0;

    (void)state;
    tc_pq_buf_init(&b, 0);
    tc_thrift_writer_init(&w, &b);
    tc_thrift_struct_begin(&w);
    tc_thrift_field_list_begin(&w, 1, TC_THRIFT_I32, 3); /* 0x19, then 0x35 */
    for (int i = 0; i < 3; i++)
        tc_thrift_elem_i32(&w, i - 1);                    /* -1, 0, 1 -> 1, 0, 2 */
    tc_thrift_field_list_begin(&w, 2, TC_THRIFT_I32, 15); /* 0x19, 0xF5 0x0F */
    for (int i = 0; i < 15; i++)
        tc_thrift_elem_i32(&w, 0);
    tc_thrift_field_list_begin(&w, 3, TC_THRIFT_I64, 200); /* 0x19, 0xF6 0xC8 0x01 */
    for (int i = 0; i < 200; i++)
        tc_thrift_elem_i64(&w, 0);
    tc_thrift_field_struct_begin(&w, 20); /* long form: 0x0C 0x28 */
    tc_thrift_field_i32(&w, 1, 1);        /* nested: delta from 0 -> 0x15 0x02 */
    tc_thrift_struct_end(&w);             /* 0x00 */
    tc_thrift_field_i32(&w, 21, 0);       /* back in the outer struct: delta 1 -> 0x15 0x00 */
    tc_thrift_field_list_begin(&w, 22, TC_THRIFT_LIST_BOOL, 2); /* 0x19 0x22 */
    tc_thrift_elem_bool(&w, 1);
    tc_thrift_elem_bool(&w, 0);
    tc_thrift_struct_end(&w);
    assert_false(tc_thrift_writer_failed(&w));

    want[n++] = 0x19;
    want[n++] = 0x35;
    want[n++] = 0x01;
    want[n++] = 0x00;
    want[n++] = 0x02;
    want[n++] = 0x19;
    want[n++] = 0xF5;
    want[n++] = 0x0F;
    memset(want + n, 0, 15);
    n += 15;
    want[n++] = 0x19;
    want[n++] = 0xF6;
    want[n++] = 0xC8;
    want[n++] = 0x01;
    assert_true(b.len > n + 200);
    assert_memory_equal(b.data, want, n);
    for (size_t i = 0; i < 200; i++)
        assert_int_equal(b.data[n + i], 0);
    {
        static const uint8_t tail[] = {0x0C, 0x28, 0x15, 0x02, 0x00, 0x15,
                                       0x00, 0x19, 0x22, 0x01, 0x00, 0x00};
        assert_int_equal(b.len, n + 200 + sizeof(tail));
        assert_memory_equal(b.data + n + 200, tail, sizeof(tail));
    }

    /* The reader sees the same structure, and skipping handles every piece of it. */
    {
        tc_thrift_reader r;
        int16_t last = 0, id;
        uint8_t t, et;
        uint32_t cnt;
        int32_t v;
        int ids = 0;

        tc_thrift_reader_init(&r, b.data, b.len);
        assert_int_equal(tc_thrift_read_field(&r, &last, &t, &id), 1);
        assert_int_equal(id, 1);
        assert_int_equal(t, TC_THRIFT_LIST);
        assert_int_equal(tc_thrift_read_list(&r, &et, &cnt), 0);
        assert_int_equal(et, TC_THRIFT_I32);
        assert_int_equal(cnt, 3);
        for (int i = 0; i < 3; i++) {
            assert_int_equal(tc_thrift_read_i32(&r, &v), 0);
            assert_int_equal(v, i - 1);
        }
        while (tc_thrift_read_field(&r, &last, &t, &id) == 1) {
            assert_int_equal(tc_thrift_skip(&r, t), 0);
            ids += id;
        }
        assert_null(r.err);
        assert_int_equal(ids, 2 + 3 + 20 + 21 + 22);
        assert_int_equal(tc_thrift_reader_pos(&r), b.len);
    }
    tc_pq_buf_free(&b);
}

/* The reader round-trips every writer form, including extreme values. */
static void test_reader_roundtrip(void **state)
{
    tc_pq_buf b;
    tc_thrift_writer w;
    tc_thrift_reader r;
    int16_t last = 0, id, i16;
    uint8_t t;
    int32_t i32;
    int64_t i64;
    int8_t i8;
    double d;
    const uint8_t *p;
    uint32_t n;

    (void)state;
    tc_pq_buf_init(&b, 0);
    tc_thrift_writer_init(&w, &b);
    tc_thrift_struct_begin(&w);
    tc_thrift_field_i32(&w, 1, INT32_MIN);
    tc_thrift_field_i64(&w, 300, INT64_MIN);
    tc_thrift_field_i64(&w, 2, INT64_MAX);
    tc_thrift_field_i16(&w, 3, INT16_MIN);
    tc_thrift_field_i8(&w, 4, INT8_MIN);
    tc_thrift_field_double(&w, 5, -0.0);
    tc_thrift_field_binary(&w, 6, "", 0);
    tc_thrift_field_bool(&w, 7, 1);
    tc_thrift_struct_end(&w);
    assert_false(tc_thrift_writer_failed(&w));

    tc_thrift_reader_init(&r, b.data, b.len);
    assert_int_equal(tc_thrift_read_field(&r, &last, &t, &id), 1);
    assert_int_equal(id, 1);
    assert_int_equal(tc_thrift_read_i32(&r, &i32), 0);
    assert_true(i32 == INT32_MIN);
    assert_int_equal(tc_thrift_read_field(&r, &last, &t, &id), 1);
    assert_int_equal(id, 300);
    assert_int_equal(tc_thrift_read_i64(&r, &i64), 0);
    assert_true(i64 == INT64_MIN);
    assert_int_equal(tc_thrift_read_field(&r, &last, &t, &id), 1);
    assert_int_equal(id, 2);
    assert_int_equal(tc_thrift_read_i64(&r, &i64), 0);
    assert_true(i64 == INT64_MAX);
    assert_int_equal(tc_thrift_read_field(&r, &last, &t, &id), 1);
    assert_int_equal(tc_thrift_read_i16(&r, &i16), 0);
    assert_true(i16 == INT16_MIN);
    assert_int_equal(tc_thrift_read_field(&r, &last, &t, &id), 1);
    assert_int_equal(tc_thrift_read_i8(&r, &i8), 0);
    assert_true(i8 == INT8_MIN);
    assert_int_equal(tc_thrift_read_field(&r, &last, &t, &id), 1);
    assert_int_equal(tc_thrift_read_double(&r, &d), 0);
    assert_true(d == 0.0 && 1.0 / d < 0);
    assert_int_equal(tc_thrift_read_field(&r, &last, &t, &id), 1);
    assert_int_equal(tc_thrift_read_binary(&r, &p, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(tc_thrift_read_field(&r, &last, &t, &id), 1);
    assert_int_equal(t, TC_THRIFT_BOOL_TRUE);
    assert_int_equal(id, 7);
    assert_int_equal(tc_thrift_read_field(&r, &last, &t, &id), 0);
    assert_null(r.err);
    tc_pq_buf_free(&b);
}

static int read_all(const uint8_t *p, size_t n)
{
    tc_thrift_reader r;

    tc_thrift_reader_init(&r, p, n);
    return tc_thrift_skip(&r, TC_THRIFT_STRUCT);
}

/* Hostile input: every rejection is an error, never a read past the end. */
static void test_reader_rejects(void **state)
{
    uint8_t deep[2 * (TC_THRIFT_MAX_DEPTH + 4)];
    tc_thrift_reader r;
    uint64_t u;

    (void)state;
    /* Truncated: a struct with no stop byte, a binary longer than the input, a cut varint. */
    assert_int_equal(read_all((const uint8_t[]){0x15, 0x02}, 2), -1);
    assert_int_equal(read_all((const uint8_t[]){0x18, 0x05, 'a'}, 3), -1);
    assert_int_equal(read_all((const uint8_t[]){0x16, 0x80}, 2), -1);
    /* A list claiming more elements than there are bytes. */
    assert_int_equal(read_all((const uint8_t[]){0x19, 0xF5, 0xFF, 0xFF, 0x03, 0x00}, 6), -1);
    /* A map claiming too many pairs. */
    assert_int_equal(read_all((const uint8_t[]){0x1B, 0x7F, 0x55, 0x00}, 4), -1);
    /* Unknown type id 14. */
    assert_int_equal(read_all((const uint8_t[]){0x1E, 0x00}, 2), -1);
    /* Nesting deeper than the bound: struct fields inside struct fields. */
    for (size_t i = 0; i < sizeof(deep); i++)
        deep[i] = 0x1C;
    assert_int_equal(read_all(deep, sizeof(deep)), -1);
    /* Varint of 11 bytes / overflowing 64 bits. */
    {
        uint8_t v[11];
        memset(v, 0xFF, sizeof(v));
        tc_thrift_reader_init(&r, v, sizeof(v));
        assert_int_equal(tc_thrift_read_uvarint(&r, &u), -1);
        assert_non_null(r.err);
        v[9] = 0x02;
        tc_thrift_reader_init(&r, v, 10);
        assert_int_equal(tc_thrift_read_uvarint(&r, &u), -1);
    }
    /* i32 out of range. */
    {
        tc_thrift_reader_init(&r, (const uint8_t[]){0xFF, 0xFF, 0xFF, 0xFF, 0x7F}, 5);
        int32_t x;
        assert_int_equal(tc_thrift_read_i32(&r, &x), -1);
    }
    /* The error is sticky and the cursor parked: later reads fail too. */
    {
        int8_t b;
        assert_int_equal(tc_thrift_read_i8(&r, &b), -1);
    }
    /* Well-formed: the empty struct, a map, a set of strings, a nested list. */
    assert_int_equal(read_all((const uint8_t[]){0x00}, 1), 0);
    assert_int_equal(read_all((const uint8_t[]){0x1B, 0x01, 0x58, 0x02, 0x01, 'x', 0x00}, 7), 0);
    assert_int_equal(read_all((const uint8_t[]){0x1A, 0x28, 0x01, 'a', 0x00, 0x00}, 6), 0);
    assert_int_equal(read_all((const uint8_t[]){0x19, 0x19, 0x15, 0x02, 0x00}, 5), 0);
}

/* The writer refuses to nest deeper than it can track (and says so). */
static void test_writer_depth(void **state)
{
    tc_pq_buf b;
    tc_thrift_writer w;

    (void)state;
    tc_pq_buf_init(&b, 0);
    tc_thrift_writer_init(&w, &b);
    tc_thrift_struct_begin(&w);
    for (int i = 0; i < TC_THRIFT_MAX_DEPTH + 2; i++)
        tc_thrift_field_struct_begin(&w, 1);
    assert_true(tc_thrift_writer_failed(&w));
    tc_pq_buf_free(&b);

    /* A field outside any struct is an error too. */
    tc_pq_buf_init(&b, 0);
    tc_thrift_writer_init(&w, &b);
    tc_thrift_field_i32(&w, 1, 1);
    assert_true(tc_thrift_writer_failed(&w));
    tc_pq_buf_free(&b);
}

/* The buffer's hard limit makes appends fail, stickily. */
static void test_buf_limit(void **state)
{
    tc_pq_buf b;
    uint8_t x[300];

    (void)state;
    memset(x, 7, sizeof(x));
    tc_pq_buf_init(&b, 512);
    tc_pq_buf_put(&b, x, sizeof(x));
    assert_false(b.failed);
    tc_pq_buf_put(&b, x, sizeof(x));
    assert_true(b.failed);
    assert_int_equal(b.len, 300);
    tc_pq_buf_put_u8(&b, 1);
    assert_int_equal(b.len, 300);
    tc_pq_buf_clear(&b);
    assert_false(b.failed);
    tc_pq_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_zigzag),           cmocka_unit_test(test_varint),
        cmocka_unit_test(test_struct_fields),    cmocka_unit_test(test_lists_and_nesting),
        cmocka_unit_test(test_reader_roundtrip), cmocka_unit_test(test_reader_rejects),
        cmocka_unit_test(test_writer_depth),     cmocka_unit_test(test_buf_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
