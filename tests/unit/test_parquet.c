/*
 * test_parquet.c -- the Parquet writer of src/lake/parquet.c, checked through the deep verifier of
 * parquet_read.c: file layout and metadata, statistics edge cases (all-null, no-null, empty and
 * long strings, NaN, +-Inf, -0.0/+0.0, booleans), dictionary encoding and its overflow fallback,
 * page and row-group cutting, key-value metadata, argument checking that leaves the writer usable,
 * and I/O errors (a failing sink, a full disk) surfacing as sticky TC_ERR_IO.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <fcntl.h>
#include <unistd.h>
#include <cmocka.h>

#include "core/batch.h"
#include "lake/parquet.h"
#include "lake/parquet_format.h"
#include "lake/parquet_read.h"

/* ---- in-memory output ---- */

typedef struct memfile {
    uint8_t *p;
    size_t n, cap;
    size_t fail_after; /* fail a write that would pass this many bytes; 0 = never */
} memfile;

static tc_err mem_sink(void *ctx, const void *p, size_t n, char *errstr, size_t errstr_size)
{
    memfile *m = ctx;

    if (m->fail_after && m->n + n > m->fail_after)
        return tc_err_set(TC_ERR_IO, errstr, errstr_size, "write: No space left on device");
    if (m->n + n > m->cap) {
        size_t cap = (m->n + n) * 2;
        uint8_t *q = realloc(m->p, cap);
        if (!q)
            return tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "oom");
        m->p = q;
        m->cap = cap;
    }
    memcpy(m->p + m->n, p, n);
    m->n += n;
    return TC_OK;
}

static tc_parquet_info *verify(const memfile *m)
{
    char err[TC_ERRSTR_MAX] = "";
    tc_parquet_info *info = NULL;
    tc_err rc = tc_parquet_verify_buf(m->p, m->n, TC_PQ_VERIFY_DEEP, &info, err, sizeof(err));

    if (rc != TC_OK)
        fail_msg("verify: %s", err);
    return info;
}

static tc_parquet_options small_opts(void)
{
    tc_parquet_options o;

    tc_parquet_options_default(&o);
    return o;
}

static void write_one(memfile *m, const tc_parquet_column *cols, size_t ncols,
                      const tc_parquet_options *o, const tc_parquet_values *v, size_t nrows)
{
    char err[TC_ERRSTR_MAX] = "";
    tc_parquet_writer *w =
        tc_parquet_writer_new_sink(mem_sink, m, cols, ncols, o, err, sizeof(err));

    if (!w)
        fail_msg("new: %s", err);
    if (tc_parquet_write(w, v, nrows, err, sizeof(err)) != TC_OK)
        fail_msg("write: %s", err);
    if (tc_parquet_close(w, err, sizeof(err)) != TC_OK)
        fail_msg("close: %s", err);
    tc_parquet_writer_destroy(w);
}

static int64_t le64(tc_pq_view v)
{
    uint64_t x = 0;

    assert_int_equal(v.n, 8);
    for (int i = 0; i < 8; i++)
        x |= (uint64_t)v.p[i] << (8 * i);
    return (int64_t)x;
}

static double ledbl(tc_pq_view v)
{
    int64_t x = le64(v);
    double d;

    memcpy(&d, &x, 8);
    return d;
}

static int view_is(tc_pq_view v, const char *s)
{
    return v.n == strlen(s) && memcmp(v.p, s, v.n) == 0;
}

/* ---- layout ---- */

static void test_one_row_layout(void **state)
{
    memfile m = {0};
    tc_parquet_column cols[] = {
        {"time", TC_PQ_TIMESTAMP_US, 0, TC_PQ_DICT_AUTO},
        {"device_id", TC_PQ_STRING, 0, TC_PQ_DICT_AUTO},
        {"temperature", TC_PQ_DOUBLE, 1, TC_PQ_DICT_AUTO},
        {"ok", TC_PQ_BOOLEAN, 1, TC_PQ_DICT_AUTO},
    };
    int64_t t = 1700000000123456LL;
    tc_slice dev = {"dev-1", 5};
    double temp = 21.5;
    uint8_t ok = 1, present = 0;
    tc_parquet_values v[] = {{&t, NULL}, {&dev, NULL}, {&temp, NULL}, {&ok, &present}};
    tc_parquet_options o = small_opts();
    tc_parquet_info *info;

    (void)state;
    write_one(&m, cols, 4, &o, v, 1);
    assert_memory_equal(m.p, "PAR1", 4);
    assert_memory_equal(m.p + m.n - 4, "PAR1", 4);
    info = verify(&m);
    assert_int_equal(info->num_rows, 1);
    assert_int_equal(info->version, 2);
    assert_int_equal(info->nrg, 1);
    assert_int_equal(info->nleaves, 4);
    assert_int_equal(info->ncolumn_orders, 4);
    assert_true(info->has_created_by);
    assert_true(view_is(info->created_by, tc_parquet_created_by()));
    assert_true(strncmp(tc_parquet_created_by(), "thermocline version ", 20) == 0);
    /* Schema: root + 4 leaves with their annotations. */
    assert_int_equal(info->nschema, 5);
    assert_int_equal(info->schema[0].num_children, 4);
    assert_int_equal(info->schema[1].type, TC_PQF_INT64);
    assert_int_equal(info->schema[1].repetition, TC_PQF_REQUIRED);
    assert_int_equal(info->schema[1].converted_type, TC_PQF_CT_TIMESTAMP_MICROS);
    assert_int_equal(info->schema[1].logical, TC_PQF_LT_TIMESTAMP);
    assert_int_equal(info->schema[1].ts_unit, TC_PQF_UNIT_MICROS);
    assert_true(info->schema[1].ts_utc);
    assert_int_equal(info->schema[2].type, TC_PQF_BYTE_ARRAY);
    assert_int_equal(info->schema[2].converted_type, TC_PQF_CT_UTF8);
    assert_int_equal(info->schema[2].logical, TC_PQF_LT_STRING);
    assert_int_equal(info->schema[3].repetition, TC_PQF_OPTIONAL);
    assert_int_equal(info->schema[3].logical, -1);
    /* Chunks: the first starts right after the magic; the string column is dictionary-encoded. */
    tc_parquet_rg_info *rg = &info->rgs[0];
    assert_int_equal(rg->num_rows, 1);
    assert_int_equal(rg->file_offset, 4);
    assert_int_equal(rg->cols[0].data_page_offset, 4);
    assert_int_equal(rg->cols[0].dictionary_page_offset, -1);
    assert_int_equal(rg->cols[0].file_offset, 0);
    assert_true(rg->cols[1].dictionary_page_offset > 0);
    assert_int_equal(rg->cols[1].dict_pages, 1);
    assert_int_equal(rg->cols[1].dict_entries, 1);
    assert_true(rg->cols[1].encodings & (1u << TC_PQF_ENC_RLE_DICTIONARY));
    assert_int_equal(rg->cols[1].stats.distinct_count, 1);
    assert_true(view_is(rg->cols[1].stats.min_value, "dev-1"));
    assert_true(view_is(rg->cols[1].stats.max_value, "dev-1"));
    assert_int_equal(rg->cols[0].codec, TC_PQ_SNAPPY);
    {
        int64_t sum = 0;
        for (size_t c = 0; c < 4; c++)
            sum += rg->cols[c].total_compressed_size;
        assert_int_equal(rg->total_compressed_size, sum);
    }
    /* The all-null boolean: null_count 1, no min/max, no dictionary. */
    assert_int_equal(rg->cols[3].stats.null_count, 1);
    assert_false(rg->cols[3].stats.set & TC_PQ_ST_MIN_VALUE);
    assert_int_equal(rg->cols[3].nulls_counted, 1);
    /* Timestamp statistics, legacy and new. */
    assert_int_equal(le64(rg->cols[0].stats.min_value), t);
    assert_int_equal(le64(rg->cols[0].stats.max), t);
    tc_parquet_info_free(info);
    free(m.p);
}

static void test_empty_file(void **state)
{
    memfile m = {0};
    tc_parquet_column cols[] = {{"x", TC_PQ_INT32, 1, TC_PQ_DICT_AUTO}};
    char err[TC_ERRSTR_MAX];
    tc_parquet_writer *w;
    tc_parquet_info *info;

    (void)state;
    w = tc_parquet_writer_new_sink(mem_sink, &m, cols, 1, NULL, err, sizeof(err));
    assert_non_null(w);
    assert_int_equal(tc_parquet_add_kv(w, "k", NULL, err, sizeof(err)), TC_OK);
    assert_int_equal(tc_parquet_flush_row_group(w, err, sizeof(err)), TC_OK); /* empty: no-op */
    assert_int_equal(tc_parquet_close(w, err, sizeof(err)), TC_OK);
    /* After close only destroy is valid. */
    assert_int_equal(tc_parquet_write(w, NULL, 0, err, sizeof(err)), TC_ERR_INVALID);
    tc_parquet_writer_destroy(w);
    info = verify(&m);
    assert_int_equal(info->num_rows, 0);
    assert_int_equal(info->nrg, 0);
    assert_int_equal(info->nkv, 1);
    assert_true(view_is(info->kv[0].key, "k"));
    assert_false(info->kv[0].has_value);
    tc_parquet_info_free(info);
    free(m.p);
}

/* ---- statistics ---- */

static void test_float_stats(void **state)
{
    memfile m = {0};
    tc_parquet_column cols[] = {
        {"a", TC_PQ_DOUBLE, 1, TC_PQ_DICT_OFF}, /* NaN, +-Inf and normal values */
        {"b", TC_PQ_DOUBLE, 0, TC_PQ_DICT_ON},  /* zeros: min -0.0, max +0.0 */
        {"c", TC_PQ_FLOAT, 1, TC_PQ_DICT_OFF},  /* all NaN: no min/max */
        {"d", TC_PQ_DOUBLE, 0, TC_PQ_DICT_OFF}, /* +0.0 and 1: min written as -0.0 */
        {"e", TC_PQ_FLOAT, 0, TC_PQ_DICT_OFF},  /* -1 and -0.0: max written as +0.0 */
    };
    double a[6] = {NAN, 1.5, -INFINITY, INFINITY, NAN, -2.0};
    uint8_t ap[6] = {1, 1, 1, 1, 1, 0};
    double b[6] = {0.0, -0.0, 0.0, -0.0, 0.0, 0.0};
    float c[6] = {NAN, NAN, NAN, NAN, NAN, NAN};
    uint8_t cp[6] = {1, 0, 1, 1, 1, 1};
    double d[6] = {0.0, 1.0, 1.0, 0.0, 1.0, 1.0};
    float e[6] = {-1.0f, -0.0f, -1.0f, -1.0f, -0.0f, -1.0f};
    tc_parquet_values v[] = {{a, ap}, {b, NULL}, {c, cp}, {d, NULL}, {e, NULL}};
    tc_parquet_options o = small_opts();
    tc_parquet_info *info;
    tc_parquet_chunk_info *ck;

    (void)state;
    o.page_rows = 4; /* two pages per chunk: page and chunk statistics both matter */
    write_one(&m, cols, 5, &o, v, 6);
    info = verify(&m);
    ck = info->rgs[0].cols;
    /* a: NaN never a bound; the infinities are. */
    assert_true(ledbl(ck[0].stats.min_value) == -INFINITY);
    assert_true(ledbl(ck[0].stats.max_value) == INFINITY);
    assert_int_equal(ck[0].stats.nan_count, 2);
    assert_int_equal(ck[0].stats.null_count, 1);
    assert_true(ck[0].stats.set & TC_PQ_ST_MIN); /* legacy fields too */
    /* b: zero bounds carry the spec's signs. */
    assert_true(ledbl(ck[1].stats.min_value) == 0.0 && signbit(ledbl(ck[1].stats.min_value)));
    assert_true(ledbl(ck[1].stats.max_value) == 0.0 && !signbit(ledbl(ck[1].stats.max_value)));
    assert_false(ck[1].stats.set & TC_PQ_ST_DISTINCT); /* floats never claim distinct_count */
    /* c: all NaN -> no bounds, nan_count says why. */
    assert_false(ck[2].stats.set & (TC_PQ_ST_MIN_VALUE | TC_PQ_ST_MAX_VALUE | TC_PQ_ST_MIN));
    assert_int_equal(ck[2].stats.nan_count, 5);
    assert_int_equal(ck[2].stats.null_count, 1);
    /* d: min is +0.0 in the data, written -0.0. */
    assert_true(signbit(ledbl(ck[3].stats.min_value)));
    assert_true(ledbl(ck[3].stats.max_value) == 1.0);
    /* e (FLOAT): max is -0.0 in the data, written +0.0; 4-byte values. */
    assert_int_equal(ck[4].stats.max_value.n, 4);
    {
        float f;
        memcpy(&f, ck[4].stats.max_value.p, 4);
        assert_true(f == 0.0f && !signbit(f));
        memcpy(&f, ck[4].stats.min_value.p, 4);
        assert_true(f == -1.0f);
    }
    tc_parquet_info_free(info);
    free(m.p);
}

static void test_string_stats(void **state)
{
    enum { LONG = 100000 };
    memfile m = {0};
    tc_parquet_column cols[] = {
        {"s", TC_PQ_STRING, 1, TC_PQ_DICT_AUTO},
        {"b", TC_PQ_BYTES, 0, TC_PQ_DICT_OFF},
        {"u", TC_PQ_STRING, 0, TC_PQ_DICT_OFF},
    };
    char *longs = malloc(LONG), *longz = malloc(LONG);
    tc_slice s[5], b[5], u[5];
    tc_parquet_values v[] = {{s, NULL}, {b, NULL}, {u, NULL}};
    tc_parquet_options o = small_opts();
    tc_parquet_info *info;
    tc_parquet_chunk_info *ck;

    (void)state;
    assert_non_null(longs);
    assert_non_null(longz);
    memset(longs, 'm', LONG);
    memset(longz, 0xFF, LONG);
    longz[0] = 'z';
    /* s: empty string is the minimum; a 100 KB value is the maximum (truncated: 'm' x 63 + 'n'). */
    s[0] = (tc_slice){"", 0};
    s[1] = (tc_slice){longs, LONG};
    s[2] = (tc_slice){NULL, 0}; /* NULL by slice */
    s[3] = (tc_slice){"abc", 3};
    s[4] = (tc_slice){"", 0};
    /* b: unsigned order: 0xFF > 'z' > 0x00; the max is 100 KB of 0xFF after 'z'. */
    b[0] = (tc_slice){"\x00", 1};
    b[1] = (tc_slice){"\x05", 1};
    b[2] = (tc_slice){longz, LONG};
    b[3] = (tc_slice){"z", 1};
    b[4] = (tc_slice){"\x10", 1};
    /* u: multi-byte UTF-8 straddling the truncation point. */
    u[0] = (tc_slice){"\xc3\xa9\xc3\xa9\xc3\xa9", 6};
    u[1] = (tc_slice){"\xc3\xa9\xc3\xa9", 4};
    u[2] = (tc_slice){"\xe6\x97\xa5\xe6\x97\xa5", 6};
    u[3] = (tc_slice){"a\xe6\x97\xa5\xe6\x97\xa5", 7};
    u[4] = (tc_slice){"a", 1};
    o.stats_max_bytes = 64;
    write_one(&m, cols, 3, &o, v, 5);
    info = verify(&m);
    ck = info->rgs[0].cols;
    assert_int_equal(ck[0].stats.null_count, 1);
    assert_int_equal(ck[0].stats.min_value.n, 0);
    assert_true(ck[0].stats.min_exact);
    assert_int_equal(ck[0].stats.max_value.n, 64);
    assert_false(ck[0].stats.max_exact);
    assert_memory_equal(ck[0].stats.max_value.p, longs, 63);
    assert_int_equal(ck[0].stats.max_value.p[63], 'n');
    assert_int_equal(ck[0].stats.distinct_count, 3); /* "", long, "abc" */
    /* b: min 0x00; the max would be 'z' + 0xFF...: trailing 0xFF dropped, 'z' -> '{'. */
    assert_true(ck[1].stats.min_value.n == 1 && ck[1].stats.min_value.p[0] == 0);
    assert_true(view_is(ck[1].stats.max_value, "{"));
    assert_false(ck[1].stats.set & TC_PQ_ST_MIN); /* no legacy bounds for byte arrays */
    tc_parquet_info_free(info);
    free(m.p);

    /* Truncation at 3 bytes: UTF-8 sequences are never split. */
    memset(&m, 0, sizeof(m));
    o.stats_max_bytes = 3;
    write_one(&m, cols, 3, &o, v, 5);
    info = verify(&m);
    ck = info->rgs[0].cols;
    /* u: min "a" (exact); max "日日" -> prefix "日" has no ASCII byte to increment: omitted. */
    assert_true(view_is(ck[2].stats.min_value, "a"));
    assert_false(ck[2].stats.set & TC_PQ_ST_MAX_VALUE);
    /* s: the long max "mmm..." -> "mmn". */
    assert_true(view_is(ck[0].stats.max_value, "mmn"));
    tc_parquet_info_free(info);
    free(m.p);

    /* The same with the min long: prefix at a UTF-8 boundary. */
    memset(&m, 0, sizeof(m));
    u[4] = (tc_slice){"\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9", 8};
    u[3] = (tc_slice){"\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9", 10};
    u[0] = u[1] = u[2] = u[3];
    write_one(&m, cols, 3, &o, v, 5);
    info = verify(&m);
    ck = info->rgs[0].cols;
    assert_true(view_is(ck[2].stats.min_value, "\xc3\xa9")); /* 2 bytes, not 3 */
    assert_false(ck[2].stats.min_exact);
    tc_parquet_info_free(info);
    free(m.p);
    free(longs);
    free(longz);
}

static void test_int_bool_stats_all_null(void **state)
{
    enum { N = 1000 };
    memfile m = {0};
    tc_parquet_column cols[] = {
        {"i", TC_PQ_INT32, 1, TC_PQ_DICT_ON},   /* all null, dictionary requested */
        {"j", TC_PQ_INT64, 1, TC_PQ_DICT_OFF},  /* no nulls in an OPTIONAL column */
        {"k", TC_PQ_BOOLEAN, 0, TC_PQ_DICT_ON}, /* booleans ignore the dictionary */
        {"s", TC_PQ_STRING, 1, TC_PQ_DICT_ON},  /* all null string */
    };
    static int32_t i32[N];
    static int64_t i64[N];
    static uint8_t bo[N], none[N];
    static tc_slice st[N];
    tc_parquet_values v[] = {{i32, none}, {i64, NULL}, {bo, NULL}, {st, none}};
    tc_parquet_options o = small_opts();
    tc_parquet_info *info;
    tc_parquet_chunk_info *ck;

    (void)state;
    for (int r = 0; r < N; r++) {
        i32[r] = r;
        i64[r] = INT64_MIN + r;
        bo[r] = 1;
        st[r] = (tc_slice){"x", 1};
    }
    write_one(&m, cols, 4, &o, v, N);
    info = verify(&m);
    ck = info->rgs[0].cols;
    assert_int_equal(ck[0].stats.null_count, N);
    assert_int_equal(ck[0].nulls_counted, N);
    assert_false(ck[0].stats.set & TC_PQ_ST_MIN_VALUE);
    assert_int_equal(ck[0].dict_pages, 0); /* no values: no dictionary page */
    assert_int_equal(ck[1].stats.null_count, 0);
    assert_int_equal(le64(ck[1].stats.min_value), INT64_MIN);
    assert_int_equal(le64(ck[1].stats.max_value), INT64_MIN + N - 1);
    assert_int_equal(ck[2].stats.min_value.n, 1);
    assert_int_equal(ck[2].stats.min_value.p[0], 1);
    assert_int_equal(ck[2].stats.max_value.p[0], 1);
    assert_false(ck[2].encodings & (1u << TC_PQF_ENC_RLE_DICTIONARY));
    assert_int_equal(ck[3].stats.null_count, N);
    assert_int_equal(ck[3].dict_pages, 0);
    tc_parquet_info_free(info);
    free(m.p);
}

/* ---- dictionary, pages, row groups ---- */

static void test_dictionary_fallback(void **state)
{
    enum { N = 5000 };
    memfile m = {0};
    tc_parquet_column cols[] = {
        {"dev", TC_PQ_STRING, 1, TC_PQ_DICT_AUTO},
        {"n", TC_PQ_INT64, 0, TC_PQ_DICT_ON},
    };
    static char names[N][16];
    static tc_slice dev[N];
    static uint8_t pres[N];
    static int64_t n[N];
    tc_parquet_values v[] = {{dev, pres}, {n, NULL}};
    tc_parquet_options o = small_opts();
    tc_parquet_info *info;
    tc_parquet_chunk_info *ck;

    (void)state;
    for (int r = 0; r < N; r++) {
        int k = snprintf(names[r], sizeof(names[r]), "dev-%d", r);
        dev[r] = (tc_slice){names[r], (uint32_t)k};
        pres[r] = r % 10 != 3;
        n[r] = r < 2000 ? r % 7 : r; /* low cardinality first, then overflowing */
    }
    o.dict_max_entries = 1000; /* "dev" overflows after 1000 distinct values */
    o.dict_max_bytes = 1 << 20;
    o.page_rows = 700;
    o.row_group_rows = 4000; /* the second row group starts a fresh dictionary */
    write_one(&m, cols, 2, &o, v, N);
    info = verify(&m);
    assert_int_equal(info->nrg, 2);
    ck = &info->rgs[0].cols[0];
    assert_int_equal(ck->dict_pages, 1);
    assert_int_equal(ck->dict_entries, 1000);
    assert_true(ck->encodings & (1u << TC_PQF_ENC_RLE_DICTIONARY));
    assert_true(ck->encodings & (1u << TC_PQF_ENC_PLAIN));
    assert_false(ck->stats.set & TC_PQ_ST_DISTINCT); /* fell back: not exact any more */
    assert_int_equal(ck->nulls_counted, 400);
    assert_true(view_is(ck->stats.min_value, "dev-0"));
    assert_true(view_is(ck->stats.max_value, "dev-999")); /* "dev-999" > "dev-3999" bytewise */
    /* Pages: 4000 rows at 700 per page, plus the cut at the fallback. */
    assert_true(ck->data_pages >= 6);
    ck = &info->rgs[0].cols[1];
    /* Numbers: dictionary of 7 values, then 2000 distinct > 1000 entries -> fallback. */
    assert_int_equal(ck->dict_pages, 1);
    assert_true(ck->encodings & (1u << TC_PQF_ENC_PLAIN));
    /* Second row group: 1000 rows, 1000 distinct ids -> all fit the fresh dictionary. */
    ck = &info->rgs[1].cols[0];
    assert_int_equal(ck->dict_pages, 1);
    assert_int_equal(ck->stats.distinct_count, ck->dict_entries);
    assert_int_equal(info->rgs[1].num_rows, 1000);
    tc_parquet_info_free(info);
    free(m.p);

    /* A dictionary bound smaller than the first value: PLAIN from the start, no dictionary page. */
    memset(&m, 0, sizeof(m));
    o.dict_max_bytes = 4;
    write_one(&m, cols, 1, &o, v, 100);
    info = verify(&m);
    ck = &info->rgs[0].cols[0];
    assert_int_equal(ck->dict_pages, 0);
    assert_int_equal(ck->dictionary_page_offset, -1);
    assert_false(ck->encodings & (1u << TC_PQF_ENC_RLE_DICTIONARY));
    tc_parquet_info_free(info);
    free(m.p);
}

static void test_many_row_groups_and_pages(void **state)
{
    enum { N = 10007 };
    memfile m = {0};
    tc_parquet_column cols[] = {
        {"i", TC_PQ_INT32, 1, TC_PQ_DICT_OFF},
        {"s", TC_PQ_STRING, 0, TC_PQ_DICT_OFF},
    };
    static int32_t i32[N];
    static uint8_t pres[N];
    static tc_slice s[N];
    tc_parquet_options o = small_opts();
    char err[TC_ERRSTR_MAX];
    tc_parquet_writer *w;
    tc_parquet_info *info;
    int64_t total = 0;

    (void)state;
    for (int r = 0; r < N; r++) {
        i32[r] = r * 3 - 5000;
        pres[r] = (uint8_t)((r / 9) % 2); /* runs of 9 nulls / 9 values */
        s[r] = (tc_slice){"hello world", (uint32_t)(r % 12)};
    }
    o.row_group_rows = 100;
    o.page_bytes = 64; /* a handful of values per page */
    o.codec = TC_PQ_ZSTD;
    w = tc_parquet_writer_new_sink(mem_sink, &m, cols, 2, &o, err, sizeof(err));
    assert_non_null(w);
    /* Rows in uneven batches, crossing row-group boundaries inside a call. */
    for (size_t done = 0; done < N;) {
        size_t k = done % 3 == 0 ? 1 : 333;
        tc_parquet_values part[2] = {{i32 + done, pres + done}, {s + done, NULL}};
        if (k > N - done)
            k = N - done;
        assert_int_equal(tc_parquet_write(w, part, k, err, sizeof(err)), TC_OK);
        done += k;
    }
    assert_int_equal(tc_parquet_writer_rows(w), N);
    assert_int_equal(tc_parquet_close(w, err, sizeof(err)), TC_OK);
    assert_int_equal(tc_parquet_writer_bytes(w), m.n);
    tc_parquet_writer_destroy(w);
    info = verify(&m);
    assert_int_equal(info->nrg, (N + 99) / 100);
    for (size_t g = 0; g < info->nrg; g++) {
        assert_true(info->rgs[g].num_rows <= 100);
        if (info->rgs[g].num_rows == 100)
            assert_true(info->rgs[g].cols[1].data_pages > 1);
        total += info->rgs[g].num_rows;
    }
    assert_int_equal(total, N);
    assert_int_equal(info->rgs[0].cols[0].codec, TC_PQ_ZSTD);
    tc_parquet_info_free(info);
    free(m.p);
}

/* ---- arguments and errors ---- */

static void test_bad_arguments(void **state)
{
    memfile m = {0};
    tc_parquet_column cols[] = {
        {"a", TC_PQ_INT32, 0, TC_PQ_DICT_AUTO},
        {"s", TC_PQ_STRING, 0, TC_PQ_DICT_AUTO},
    };
    tc_parquet_column dup[] = {
        {"a", TC_PQ_INT32, 0, TC_PQ_DICT_AUTO},
        {"a", TC_PQ_INT64, 0, TC_PQ_DICT_AUTO},
    };
    tc_parquet_column bad_type[] = {{"a", (tc_parquet_type)99, 0, TC_PQ_DICT_AUTO}};
    tc_parquet_column no_name[] = {{"", TC_PQ_INT32, 0, TC_PQ_DICT_AUTO}};
    int32_t a[2] = {1, 2};
    uint8_t pres[2] = {1, 0};
    tc_slice s[2] = {{"x", 1}, {NULL, 0}};
    tc_slice s_ok[2] = {{"x", 1}, {"y", 1}};
    char err[TC_ERRSTR_MAX];
    tc_parquet_options o = small_opts();
    tc_parquet_writer *w;
    tc_parquet_info *info;

    (void)state;
    assert_null(tc_parquet_writer_new_sink(mem_sink, &m, dup, 2, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "duplicate"));
    assert_null(tc_parquet_writer_new_sink(mem_sink, &m, bad_type, 1, NULL, err, sizeof(err)));
    assert_null(tc_parquet_writer_new_sink(mem_sink, &m, no_name, 1, NULL, err, sizeof(err)));
    assert_null(tc_parquet_writer_new_sink(mem_sink, &m, cols, 0, NULL, err, sizeof(err)));
    assert_null(tc_parquet_writer_new(-1, cols, 2, NULL, err, sizeof(err)));
    o.page_rows = 0;
    assert_null(tc_parquet_writer_new_sink(mem_sink, &m, cols, 2, &o, err, sizeof(err)));
    o = small_opts();
    o.codec = (tc_parquet_codec)2; /* GZIP: not offered */
    assert_null(tc_parquet_writer_new_sink(mem_sink, &m, cols, 2, &o, err, sizeof(err)));

    w = tc_parquet_writer_new_sink(mem_sink, &m, cols, 2, NULL, err, sizeof(err));
    assert_non_null(w);
    /* REQUIRED with a presence map; REQUIRED string NULL; no values: all refused... */
    assert_int_equal(
        tc_parquet_write(w, (tc_parquet_values[]){{a, pres}, {s_ok, NULL}}, 2, err, sizeof(err)),
        TC_ERR_INVALID);
    assert_int_equal(
        tc_parquet_write(w, (tc_parquet_values[]){{a, NULL}, {s, NULL}}, 2, err, sizeof(err)),
        TC_ERR_INVALID);
    assert_non_null(strstr(err, "REQUIRED"));
    assert_int_equal(
        tc_parquet_write(w, (tc_parquet_values[]){{NULL, NULL}, {s_ok, NULL}}, 2, err, sizeof(err)),
        TC_ERR_INVALID);
    assert_int_equal(tc_parquet_add_kv(w, NULL, "v", err, sizeof(err)), TC_ERR_INVALID);
    /* ...and the writer is still usable: nothing half-written. */
    assert_int_equal(
        tc_parquet_write(w, (tc_parquet_values[]){{a, NULL}, {s_ok, NULL}}, 2, err, sizeof(err)),
        TC_OK);
    assert_int_equal(tc_parquet_add_kv(w, "origin", "unit test", err, sizeof(err)), TC_OK);
    assert_int_equal(tc_parquet_close(w, err, sizeof(err)), TC_OK);
    tc_parquet_writer_destroy(w);
    tc_parquet_writer_destroy(NULL);
    info = verify(&m);
    assert_int_equal(info->num_rows, 2);
    assert_true(view_is(info->kv[0].value, "unit test"));
    tc_parquet_info_free(info);
    free(m.p);
}

static void test_io_errors(void **state)
{
    tc_parquet_column cols[] = {{"a", TC_PQ_INT64, 0, TC_PQ_DICT_OFF}};
    static int64_t a[50000];
    tc_parquet_values v[] = {{a, NULL}};
    char err[TC_ERRSTR_MAX];
    tc_parquet_options o = small_opts();
    tc_parquet_writer *w;
    int fd;

    (void)state;
    for (int i = 0; i < 50000; i++)
        a[i] = (int64_t)i * 7919;
    /* A sink that fails mid-file: the error surfaces, sticks, and close refuses to finish. */
    for (size_t fail_at = 1; fail_at < 400000; fail_at = fail_at * 3 + 1) {
        memfile m = {0};
        tc_err rc;
        m.fail_after = fail_at;
        o.row_group_rows = 10000;
        o.codec = TC_PQ_UNCOMPRESSED;
        w = tc_parquet_writer_new_sink(mem_sink, &m, cols, 1, &o, err, sizeof(err));
        assert_non_null(w);
        rc = tc_parquet_write(w, v, 50000, err, sizeof(err));
        if (rc == TC_OK)
            rc = tc_parquet_close(w, err, sizeof(err));
        assert_int_equal(rc, TC_ERR_IO);
        assert_true(tc_err_is_retriable(rc));
        assert_non_null(strstr(err, "No space"));
        err[0] = '\0';
        assert_int_equal(tc_parquet_close(w, err, sizeof(err)), TC_ERR_IO);
        assert_non_null(strstr(err, "No space"));
        assert_int_equal(tc_parquet_write(w, v, 1, err, sizeof(err)), TC_ERR_IO);
        tc_parquet_writer_destroy(w);
        free(m.p);
    }
    /* A real full disk: /dev/full answers every write with ENOSPC. */
    fd = open("/dev/full", O_WRONLY);
    if (fd >= 0) {
        w = tc_parquet_writer_new(fd, cols, 1, NULL, err, sizeof(err));
        assert_non_null(w);
        assert_int_equal(tc_parquet_write(w, v, 1000, err, sizeof(err)), TC_OK); /* buffered */
        assert_int_equal(tc_parquet_close(w, err, sizeof(err)), TC_ERR_IO);
        assert_non_null(strstr(err, "No space left on device"));
        tc_parquet_writer_destroy(w);
        close(fd);
    }
}

/* Writing to a real file descriptor and verifying by path and by fd. */
static void test_fd_roundtrip(void **state)
{
    char path[] = "/tmp/tc_parquet_test_XXXXXX";
    tc_parquet_column cols[] = {{"v", TC_PQ_DOUBLE, 1, TC_PQ_DICT_AUTO}};
    double d[3] = {1, 2, 3};
    uint8_t p[3] = {1, 0, 1};
    tc_parquet_values v[] = {{d, p}};
    char err[TC_ERRSTR_MAX];
    tc_parquet_writer *w;
    tc_parquet_info *info = NULL;
    int fd;

    (void)state;
    fd = mkstemp(path);
    assert_true(fd >= 0);
    w = tc_parquet_writer_new(fd, cols, 1, NULL, err, sizeof(err));
    assert_non_null(w);
    assert_int_equal(tc_parquet_write(w, v, 3, err, sizeof(err)), TC_OK);
    assert_int_equal(tc_parquet_close(w, err, sizeof(err)), TC_OK);
    tc_parquet_writer_destroy(w);
    assert_int_equal(tc_parquet_verify_fd(fd, TC_PQ_VERIFY_DEEP, &info, err, sizeof(err)), TC_OK);
    assert_int_equal(info->num_rows, 3);
    assert_int_equal(info->rgs[0].cols[0].nulls_counted, 1);
    tc_parquet_info_free(info);
    close(fd);
    assert_int_equal(tc_parquet_verify_path(path, TC_PQ_VERIFY_PAGES, NULL, err, sizeof(err)),
                     TC_OK);
    unlink(path);
    assert_int_equal(tc_parquet_verify_path(path, TC_PQ_VERIFY_PAGES, NULL, err, sizeof(err)),
                     TC_ERR_IO);
}

/* The row-group byte bound flushes before the row bound does. */
static void test_row_group_bytes_bound(void **state)
{
    enum { N = 20000 };
    memfile m = {0};
    tc_parquet_column cols[] = {{"a", TC_PQ_INT64, 0, TC_PQ_DICT_OFF}};
    static int64_t a[N];
    tc_parquet_options o = small_opts();
    char err[TC_ERRSTR_MAX];
    tc_parquet_writer *w;
    tc_parquet_info *info;

    (void)state;
    for (int i = 0; i < N; i++)
        a[i] = (int64_t)((unsigned)i * 2654435761u);
    o.codec = TC_PQ_UNCOMPRESSED;
    o.page_rows = 1000;
    o.row_group_bytes = 40000; /* ~5000 rows of 8 bytes */
    w = tc_parquet_writer_new_sink(mem_sink, &m, cols, 1, &o, err, sizeof(err));
    assert_non_null(w);
    for (int i = 0; i < N; i += 1000) {
        assert_int_equal(
            tc_parquet_write(w, (tc_parquet_values[]){{a + i, NULL}}, 1000, err, sizeof(err)),
            TC_OK);
        assert_true(tc_parquet_writer_buffered(w) < 40000 + 8000);
    }
    assert_int_equal(tc_parquet_close(w, err, sizeof(err)), TC_OK);
    tc_parquet_writer_destroy(w);
    info = verify(&m);
    assert_true(info->nrg >= 4);
    tc_parquet_info_free(info);
    free(m.p);
}

/* Long values: 300 x 100 KB strings in one call, a 4 MiB row-group bound. The writer cuts its
 * steps by payload bytes, so buffered memory stays near the bound instead of the call's 30 MB. */
static void test_long_values_bounded(void **state)
{
    enum { N = 300, LEN = 100000 };
    memfile m = {0};
    tc_parquet_column cols[] = {{"blob", TC_PQ_BYTES, 0, TC_PQ_DICT_AUTO},
                                {"n", TC_PQ_INT32, 0, TC_PQ_DICT_AUTO}};
    char *big = malloc((size_t)N * LEN);
    static tc_slice s[N];
    static int32_t n[N];
    tc_parquet_options o = small_opts();
    char err[TC_ERRSTR_MAX];
    tc_parquet_writer *w;
    tc_parquet_info *info;

    (void)state;
    assert_non_null(big);
    for (size_t i = 0; i < (size_t)N * LEN; i++)
        big[i] = (char)(i * 2654435761u >> 13); /* incompressible-ish */
    for (int r = 0; r < N; r++) {
        s[r] = (tc_slice){big + (size_t)r * LEN, LEN};
        n[r] = r;
    }
    o.row_group_bytes = (size_t)4 << 20;
    o.codec = TC_PQ_UNCOMPRESSED;
    w = tc_parquet_writer_new_sink(mem_sink, &m, cols, 2, &o, err, sizeof(err));
    assert_non_null(w);
    assert_int_equal(
        tc_parquet_write(w, (tc_parquet_values[]){{s, NULL}, {n, NULL}}, N, err, sizeof(err)),
        TC_OK);
    assert_true(tc_parquet_writer_buffered(w) < ((size_t)4 << 20) + ((size_t)8 << 20) + LEN);
    assert_int_equal(tc_parquet_close(w, err, sizeof(err)), TC_OK);
    tc_parquet_writer_destroy(w);
    info = verify(&m);
    assert_true(info->nrg >= 3);
    assert_int_equal(info->num_rows, N);
    /* Each 100 KB value is its own page (page_bytes 1 MiB: ten per page at most). */
    assert_true(info->rgs[0].cols[0].data_pages >= 2);
    tc_parquet_info_free(info);
    free(m.p);
    free(big);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_row_layout),
        cmocka_unit_test(test_empty_file),
        cmocka_unit_test(test_float_stats),
        cmocka_unit_test(test_string_stats),
        cmocka_unit_test(test_int_bool_stats_all_null),
        cmocka_unit_test(test_dictionary_fallback),
        cmocka_unit_test(test_many_row_groups_and_pages),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_io_errors),
        cmocka_unit_test(test_fd_roundtrip),
        cmocka_unit_test(test_row_group_bytes_bound),
        cmocka_unit_test(test_long_values_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
