/*
 * test_parquet_read.c -- the verifier of src/lake/parquet_read.c rejecting corrupt files: truncated
 * files and footers, bad magic, a footer length past the file, page headers with negative or
 * oversized sizes, corrupt compressed pages; and surviving (no crash, no over-read under ASan)
 * every single-byte corruption and every truncation of a small valid file.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "core/batch.h"
#include "lake/parquet.h"
#include "lake/parquet_buf.h"
#include "lake/parquet_format.h"
#include "lake/parquet_read.h"
#include "lake/thrift_compact.h"

typedef struct memfile {
    uint8_t *p;
    size_t n;
} memfile;

static tc_err mem_sink(void *ctx, const void *p, size_t n, char *errstr, size_t errstr_size)
{
    memfile *m = ctx;
    uint8_t *q = realloc(m->p, m->n + n);

    if (!q)
        return tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "oom");
    memcpy(q + m->n, p, n);
    m->p = q;
    m->n += n;
    return TC_OK;
}

/* One REQUIRED INT32 column, one row, uncompressed: the first page header sits at offset 4 and
 * starts 0x15 0x00 (type DATA_PAGE) 0x15 0x08 (uncompressed 4) 0x15 0x08 (compressed 4). */
static memfile tiny_file(tc_parquet_codec codec, size_t rows)
{
    memfile m = {0};
    tc_parquet_column cols[] = {{"v", TC_PQ_INT32, 0, TC_PQ_DICT_OFF},
                                {"s", TC_PQ_STRING, 1, TC_PQ_DICT_AUTO}};
    int32_t v[64];
    tc_slice s[64];
    uint8_t pres[64];
    tc_parquet_values vals[] = {{v, NULL}, {s, pres}};
    tc_parquet_options o;
    char err[TC_ERRSTR_MAX];
    tc_parquet_writer *w;

    for (size_t i = 0; i < 64; i++) {
        v[i] = 7 + (int32_t)i;
        s[i] = (tc_slice){"ab", (uint32_t)(i % 3)};
        pres[i] = i % 4 != 1;
    }
    tc_parquet_options_default(&o);
    o.codec = codec;
    o.page_rows = 5;
    w = tc_parquet_writer_new_sink(mem_sink, &m, rows == 1 ? cols : cols, rows == 1 ? 1 : 2, &o,
                                   err, sizeof(err));
    assert_non_null(w);
    assert_int_equal(tc_parquet_write(w, vals, rows, err, sizeof(err)), TC_OK);
    assert_int_equal(tc_parquet_add_kv(w, "k", "v", err, sizeof(err)), TC_OK);
    assert_int_equal(tc_parquet_close(w, err, sizeof(err)), TC_OK);
    tc_parquet_writer_destroy(w);
    return m;
}

static tc_err check(const uint8_t *p, size_t n, char *err, size_t errsz)
{
    err[0] = '\0';
    return tc_parquet_verify_buf(p, n, TC_PQ_VERIFY_DEEP, NULL, err, errsz);
}

static void test_valid(void **state)
{
    memfile m = tiny_file(TC_PQ_UNCOMPRESSED, 1);
    char err[TC_ERRSTR_MAX];

    (void)state;
    assert_int_equal(check(m.p, m.n, err, sizeof(err)), TC_OK);
    /* The layout the corruption tests below rely on. */
    {
        static const uint8_t head[] = {0x15, 0x00, 0x15, 0x08, 0x15, 0x08};
        assert_memory_equal(m.p + 4, head, sizeof(head));
    }
    free(m.p);
}

static void test_magic_and_footer_length(void **state)
{
    memfile m = tiny_file(TC_PQ_UNCOMPRESSED, 1);
    char err[TC_ERRSTR_MAX];
    uint8_t *c = malloc(m.n);
    uint32_t flen = tc_pq_load_le32(m.p + m.n - 8);

    (void)state;
    assert_non_null(c);
    /* Truncated by a byte: the trailing magic is gone. */
    assert_int_equal(check(m.p, m.n - 1, err, sizeof(err)), TC_ERR_INVALID);
    assert_non_null(strstr(err, "magic"));
    /* Too short to be anything. */
    assert_int_equal(check(m.p, 11, err, sizeof(err)), TC_ERR_INVALID);
    assert_int_equal(check(m.p, 0, err, sizeof(err)), TC_ERR_INVALID);
    /* Bad leading magic. */
    memcpy(c, m.p, m.n);
    c[0] = 'X';
    assert_int_equal(check(c, m.n, err, sizeof(err)), TC_ERR_INVALID);
    assert_non_null(strstr(err, "magic"));
    /* Encrypted-footer magic is named as such. */
    memcpy(c, m.p, m.n);
    memcpy(c + m.n - 4, "PARE", 4);
    assert_int_equal(check(c, m.n, err, sizeof(err)), TC_ERR_INVALID);
    assert_non_null(strstr(err, "encrypted"));
    /* Footer length past the file, and zero. */
    memcpy(c, m.p, m.n);
    tc_pq_store_le32(c + m.n - 8, (uint32_t)m.n);
    assert_int_equal(check(c, m.n, err, sizeof(err)), TC_ERR_INVALID);
    assert_non_null(strstr(err, "footer length"));
    tc_pq_store_le32(c + m.n - 8, 0xFFFFFFFFu);
    assert_int_equal(check(c, m.n, err, sizeof(err)), TC_ERR_INVALID);
    tc_pq_store_le32(c + m.n - 8, 0);
    assert_int_equal(check(c, m.n, err, sizeof(err)), TC_ERR_INVALID);
    /* Footer length off by one either way: the footer no longer parses (or no longer ends). */
    tc_pq_store_le32(c + m.n - 8, flen - 1);
    assert_int_equal(check(c, m.n, err, sizeof(err)), TC_ERR_INVALID);
    tc_pq_store_le32(c + m.n - 8, flen + 1);
    assert_int_equal(check(c, m.n, err, sizeof(err)), TC_ERR_INVALID);
    /* Truncated footer: the file cut in the middle of the footer, magic and length re-appended. */
    {
        size_t keep = m.n - 8 - flen / 2;
        memcpy(c, m.p, keep);
        tc_pq_store_le32(c + keep, flen - flen / 2);
        memcpy(c + keep + 4, "PAR1", 4);
        assert_int_equal(check(c, keep + 8, err, sizeof(err)), TC_ERR_INVALID);
        assert_non_null(strstr(err, "footer"));
    }
    free(c);
    free(m.p);
}

static void test_bad_page_headers(void **state)
{
    memfile m = tiny_file(TC_PQ_UNCOMPRESSED, 1);
    char err[TC_ERRSTR_MAX];
    uint8_t *c = malloc(m.n);
    tc_parquet_page_header h;
    size_t used;

    (void)state;
    assert_non_null(c);
    /* compressed_page_size 4 -> -4 (zigzag 8 -> 7): same length, negative size. */
    memcpy(c, m.p, m.n);
    c[9] = 0x07;
    assert_int_equal(check(c, m.n, err, sizeof(err)), TC_ERR_INVALID);
    assert_non_null(strstr(err, "negative"));
    /* uncompressed_page_size negative. */
    memcpy(c, m.p, m.n);
    c[7] = 0x01;
    assert_int_equal(check(c, m.n, err, sizeof(err)), TC_ERR_INVALID);
    assert_non_null(strstr(err, "negative"));
    /* compressed size larger than the chunk. */
    memcpy(c, m.p, m.n);
    c[9] = 0x7E; /* 63 */
    assert_int_equal(check(c, m.n, err, sizeof(err)), TC_ERR_INVALID);
    assert_non_null(strstr(err, "past the column chunk"));
    /* A smaller size leaves the page walk off the chunk's end. */
    memcpy(c, m.p, m.n);
    c[9] = 0x06;
    c[7] = 0x06;
    assert_int_equal(check(c, m.n, err, sizeof(err)), TC_ERR_INVALID);
    /* Page type DICTIONARY with a data page sub-header. */
    memcpy(c, m.p, m.n);
    c[5] = 0x04;
    assert_int_equal(check(c, m.n, err, sizeof(err)), TC_ERR_INVALID);

    /* The page-header parser on its own. */
    {
        tc_pq_buf b;
        tc_thrift_writer w;
        tc_pq_buf_init(&b, 0);
        tc_thrift_writer_init(&w, &b);
        tc_thrift_struct_begin(&w);
        tc_thrift_field_i32(&w, 1, TC_PQF_DATA_PAGE);
        tc_thrift_field_i32(&w, 2, 10);
        tc_thrift_field_i32(&w, 3, -1);
        tc_thrift_field_struct_begin(&w, 5);
        tc_thrift_field_i32(&w, 1, 3);
        tc_thrift_field_i32(&w, 2, 0);
        tc_thrift_field_i32(&w, 3, 3);
        tc_thrift_field_i32(&w, 4, 3);
        tc_thrift_struct_end(&w);
        tc_thrift_struct_end(&w);
        assert_int_equal(tc_parquet_parse_page_header(b.data, b.len, &h, &used, err, sizeof(err)),
                         TC_ERR_INVALID);
        /* Fixed size, but a negative value count. */
        tc_pq_buf_clear(&b);
        tc_thrift_writer_init(&w, &b);
        tc_thrift_struct_begin(&w);
        tc_thrift_field_i32(&w, 1, TC_PQF_DICTIONARY_PAGE);
        tc_thrift_field_i32(&w, 2, 10);
        tc_thrift_field_i32(&w, 3, 10);
        tc_thrift_field_struct_begin(&w, 7);
        tc_thrift_field_i32(&w, 1, -3);
        tc_thrift_field_i32(&w, 2, 0);
        tc_thrift_struct_end(&w);
        tc_thrift_struct_end(&w);
        assert_int_equal(tc_parquet_parse_page_header(b.data, b.len, &h, &used, err, sizeof(err)),
                         TC_ERR_INVALID);
        /* Missing required sub-header field. */
        tc_pq_buf_clear(&b);
        tc_thrift_writer_init(&w, &b);
        tc_thrift_struct_begin(&w);
        tc_thrift_field_i32(&w, 1, TC_PQF_DICTIONARY_PAGE);
        tc_thrift_field_i32(&w, 2, 10);
        tc_thrift_field_i32(&w, 3, 10);
        tc_thrift_field_struct_begin(&w, 7);
        tc_thrift_field_i32(&w, 1, 3);
        tc_thrift_struct_end(&w);
        tc_thrift_struct_end(&w);
        assert_int_equal(tc_parquet_parse_page_header(b.data, b.len, &h, &used, err, sizeof(err)),
                         TC_ERR_INVALID);
        /* And a good one. */
        tc_pq_buf_clear(&b);
        tc_thrift_writer_init(&w, &b);
        tc_thrift_struct_begin(&w);
        tc_thrift_field_i32(&w, 1, TC_PQF_DICTIONARY_PAGE);
        tc_thrift_field_i32(&w, 2, 10);
        tc_thrift_field_i32(&w, 3, 9);
        tc_thrift_field_struct_begin(&w, 7);
        tc_thrift_field_i32(&w, 1, 3);
        tc_thrift_field_i32(&w, 2, 0);
        tc_thrift_struct_end(&w);
        tc_thrift_struct_end(&w);
        assert_int_equal(tc_parquet_parse_page_header(b.data, b.len, &h, &used, err, sizeof(err)),
                         TC_OK);
        assert_int_equal(used, b.len);
        assert_int_equal(h.compressed_size, 9);
        assert_int_equal(h.num_values, 3);
        tc_pq_buf_free(&b);
    }
    free(c);
    free(m.p);
}

/* Deep mode notices a corrupt compressed body; the page walk alone does not look inside. */
static void test_corrupt_page_body(void **state)
{
    memfile m = tiny_file(TC_PQ_SNAPPY, 40);
    char err[TC_ERRSTR_MAX];
    tc_parquet_info *info = NULL;
    uint8_t *c = malloc(m.n);
    tc_parquet_page_header h;
    size_t used;

    (void)state;
    assert_non_null(c);
    assert_int_equal(tc_parquet_verify_buf(m.p, m.n, TC_PQ_VERIFY_DEEP, &info, err, sizeof(err)),
                     TC_OK);
    assert_int_equal(info->rgs[0].cols[0].data_pages, 8); /* 40 rows, 5 per page */
    tc_parquet_info_free(info);
    assert_int_equal(tc_parquet_parse_page_header(m.p + 4, m.n - 4, &h, &used, err, sizeof(err)),
                     TC_OK);
    memcpy(c, m.p, m.n);
    c[4 + used] ^= 0x40; /* the snappy length prefix of the first page body */
    assert_int_equal(tc_parquet_verify_buf(c, m.n, TC_PQ_VERIFY_PAGES, NULL, err, sizeof(err)),
                     TC_OK);
    assert_int_equal(tc_parquet_verify_buf(c, m.n, TC_PQ_VERIFY_DEEP, NULL, err, sizeof(err)),
                     TC_ERR_INVALID);
    assert_non_null(strstr(err, "decompress"));
    free(c);
    free(m.p);
}

/* Every byte flipped, every truncation: errors or success, never a crash or an over-read. */
static void test_every_corruption(void **state)
{
    memfile m = tiny_file(TC_PQ_SNAPPY, 12);
    char err[TC_ERRSTR_MAX];
    uint8_t *c = malloc(m.n + 8);
    size_t rejected = 0;

    (void)state;
    assert_non_null(c);
    for (size_t i = 0; i < m.n; i++) {
        static const uint8_t flips[] = {0xFF, 0x01, 0x80};
        for (size_t f = 0; f < sizeof(flips); f++) {
            memcpy(c, m.p, m.n);
            c[i] ^= flips[f];
            rejected += check(c, m.n, err, sizeof(err)) != TC_OK;
        }
    }
    /* Most single-byte changes are caught (values inside pages need not be). */
    assert_true(rejected > m.n);
    for (size_t k = 0; k < m.n; k++) {
        /* Cut at k, then put a plausible trailer back on. */
        memcpy(c, m.p, k);
        memcpy(c + k, m.p + m.n - 8, 8);
        (void)check(c, k + 8, err, sizeof(err));
        assert_int_equal(check(m.p, k, err, sizeof(err)), TC_ERR_INVALID);
    }
    free(c);
    free(m.p);
}

/* The footer parser alone, on bytes that are not a footer at all. */
static void test_footer_garbage(void **state)
{
    uint8_t junk[512];
    char err[TC_ERRSTR_MAX];
    tc_parquet_info *info = NULL;
    uint64_t x = 0x1234567;

    (void)state;
    for (int round = 0; round < 2000; round++) {
        size_t n = (size_t)(round % 500) + 1;
        for (size_t i = 0; i < n; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            junk[i] = (uint8_t)x;
        }
        if (tc_parquet_parse_footer(junk, n, &info, err, sizeof(err)) == TC_OK)
            tc_parquet_info_free(info);
    }
    assert_int_equal(tc_parquet_parse_footer((const uint8_t[]){0x00}, 1, &info, err, sizeof(err)),
                     TC_ERR_INVALID);
    assert_non_null(strstr(err, "required"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid),
        cmocka_unit_test(test_magic_and_footer_length),
        cmocka_unit_test(test_bad_page_headers),
        cmocka_unit_test(test_corrupt_page_body),
        cmocka_unit_test(test_every_corruption),
        cmocka_unit_test(test_footer_garbage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
