/*
 * test_parquet_values.c -- the value reader of src/lake/parquet_values.c: random tables written
 * with tc_parquet_write (every type, REQUIRED and OPTIONAL, dictionary on, off and overflowing,
 * every codec, many row groups and pages) read back equal value for value; a read -> write copy
 * read back equal again; corrupt and truncated files rejected or at least survived (ASan).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "core/batch.h"
#include "lake/parquet.h"
#include "lake/parquet_values.h"

typedef struct memfile {
    uint8_t *p;
    size_t n;
} memfile;

static tc_err mem_sink(void *ctx, const void *p, size_t n, char *errstr, size_t errstr_size)
{
    memfile *m = ctx;
    uint8_t *q = realloc(m->p, m->n + n + 1);

    if (!q)
        return tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "oom");
    memcpy(q + m->n, p, n);
    m->p = q;
    m->n += n;
    return TC_OK;
}

static uint64_t rng_state;

static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

#define NCOLS 16

/* A random table: column c has type c / 2, OPTIONAL when c is odd. */
typedef struct table {
    size_t rows;
    tc_parquet_column cols[NCOLS];
    char names[NCOLS][16];
    void *vals[NCOLS];
    uint8_t *present[NCOLS];
    char *strpool;
} table;

static size_t type_width(tc_parquet_type t)
{
    switch (t) {
    case TC_PQ_BOOLEAN:
        return 1;
    case TC_PQ_INT32:
    case TC_PQ_FLOAT:
        return 4;
    case TC_PQ_STRING:
    case TC_PQ_BYTES:
        return sizeof(tc_slice);
    default:
        return 8;
    }
}

static void table_make(table *t, size_t rows, int distinct)
{
    memset(t, 0, sizeof(*t));
    t->rows = rows;
    t->strpool = malloc(4096);
    assert_non_null(t->strpool);
    for (size_t i = 0; i < 4096; i++)
        t->strpool[i] = (char)('a' + rnd() % 26);
    for (int c = 0; c < NCOLS; c++) {
        tc_parquet_type ty = (tc_parquet_type)(c / 2);
        size_t w = type_width(ty);
        snprintf(t->names[c], sizeof(t->names[c]), "c%d", c);
        t->cols[c] = (tc_parquet_column){t->names[c], ty, c % 2, TC_PQ_DICT_AUTO};
        t->vals[c] = calloc(rows ? rows : 1, w);
        assert_non_null(t->vals[c]);
        if (c % 2) {
            t->present[c] = malloc(rows ? rows : 1);
            assert_non_null(t->present[c]);
        }
        for (size_t i = 0; i < rows; i++) {
            uint64_t x = distinct ? rnd() % (uint64_t)distinct : rnd();
            uint8_t *v = (uint8_t *)t->vals[c] + i * w;
            if (t->present[c])
                t->present[c][i] = (rnd() % 5) != 0;
            switch (ty) {
            case TC_PQ_BOOLEAN:
                *v = (uint8_t)(x & 1);
                break;
            case TC_PQ_INT32: {
                int32_t y = (int32_t)(uint32_t)x;
                memcpy(v, &y, 4);
                break;
            }
            case TC_PQ_FLOAT: {
                float f = (float)(int32_t)(x % 100000) / 7.0f;
                memcpy(v, &f, 4);
                break;
            }
            case TC_PQ_DOUBLE: {
                double d = (double)(int64_t)x / 3.0;
                memcpy(v, &d, 8);
                break;
            }
            case TC_PQ_STRING:
            case TC_PQ_BYTES: {
                tc_slice s = {t->strpool + x % 3000, (uint32_t)(rnd() % 40)};
                memcpy(v, &s, sizeof(s));
                break;
            }
            default: {
                int64_t y = (int64_t)x;
                memcpy(v, &y, 8);
            }
            }
        }
    }
}

static void table_free(table *t)
{
    for (int c = 0; c < NCOLS; c++) {
        free(t->vals[c]);
        free(t->present[c]);
    }
    free(t->strpool);
}

static memfile table_write(const table *t, const tc_parquet_options *o)
{
    memfile m = {0};
    char err[TC_ERRSTR_MAX];
    tc_parquet_values v[NCOLS];
    tc_parquet_writer *w =
        tc_parquet_writer_new_sink(mem_sink, &m, t->cols, NCOLS, o, err, sizeof(err));
    size_t done = 0;

    assert_non_null(w);
    while (done < t->rows) {
        size_t k = 1 + (size_t)(rnd() % 1500);
        if (k > t->rows - done)
            k = t->rows - done;
        for (int c = 0; c < NCOLS; c++) {
            v[c].values = (const uint8_t *)t->vals[c] + done * type_width(t->cols[c].type);
            v[c].present = t->present[c] ? t->present[c] + done : NULL;
        }
        assert_int_equal(tc_parquet_write(w, v, k, err, sizeof(err)), TC_OK);
        done += k;
    }
    assert_int_equal(tc_parquet_add_kv(w, "k", "v", err, sizeof(err)), TC_OK);
    assert_int_equal(tc_parquet_close(w, err, sizeof(err)), TC_OK);
    tc_parquet_writer_destroy(w);
    return m;
}

static int mem_fd(const memfile *m)
{
    char path[] = "/tmp/tc_pqv_XXXXXX";
    int fd = mkstemp(path);

    assert_true(fd >= 0);
    unlink(path);
    assert_int_equal(write(fd, m->p, m->n), (ssize_t)m->n);
    return fd;
}

/* Compare row `row` of column c of t with the reader's value. */
static void check_value(const table *t, int c, size_t row, const tc_parquet_values *got, size_t j)
{
    size_t w = type_width(t->cols[c].type);
    int pres = t->present[c] ? t->present[c][row] : 1;

    if (got->present)
        assert_int_equal(got->present[j], pres);
    else
        assert_int_equal(pres, 1);
    if (!pres) {
        if (w == sizeof(tc_slice))
            assert_null(((const tc_slice *)got->values)[j].ptr);
        return;
    }
    if (t->cols[c].type == TC_PQ_STRING || t->cols[c].type == TC_PQ_BYTES) {
        const tc_slice *a = (const tc_slice *)t->vals[c] + row;
        const tc_slice *b = (const tc_slice *)got->values + j;
        assert_non_null(b->ptr);
        assert_int_equal(a->len, b->len);
        assert_memory_equal(a->ptr, b->ptr, a->len);
    } else if (t->cols[c].type == TC_PQ_BOOLEAN) {
        assert_int_equal(((const uint8_t *)t->vals[c])[row] != 0,
                         ((const uint8_t *)got->values)[j]);
    } else {
        assert_memory_equal((const uint8_t *)t->vals[c] + row * w,
                            (const uint8_t *)got->values + j * w, w);
    }
}

/* Read the whole file at fd; compare with t; return the number of row groups. Optionally copy
 * every row group into a new file (*copy). */
static size_t read_compare(const table *t, int fd, memfile *copy)
{
    char err[TC_ERRSTR_MAX];
    tc_parquet_reader *r;
    size_t row = 0, ncols, ngroups;
    const tc_parquet_column *cols;
    tc_parquet_writer *w = NULL;

    assert_int_equal(tc_parquet_reader_open_fd(fd, &r, err, sizeof(err)), TC_OK);
    cols = tc_parquet_reader_columns(r, &ncols);
    assert_int_equal(ncols, NCOLS);
    for (int c = 0; c < NCOLS; c++) {
        assert_string_equal(cols[c].name, t->cols[c].name);
        assert_int_equal(cols[c].type, t->cols[c].type);
        assert_int_equal(cols[c].optional, t->cols[c].optional);
    }
    assert_int_equal(tc_parquet_reader_info(r)->num_rows, (int64_t)t->rows);
    if (copy) {
        tc_parquet_options o;
        tc_parquet_options_default(&o);
        o.codec = TC_PQ_ZSTD;
        w = tc_parquet_writer_new_sink(mem_sink, copy, cols, ncols, &o, err, sizeof(err));
        assert_non_null(w);
    }
    ngroups = tc_parquet_reader_row_groups(r);
    for (size_t g = 0; g < ngroups; g++) {
        const tc_parquet_values *v;
        size_t n;
        assert_int_equal(tc_parquet_reader_read(r, g, &v, &n, err, sizeof(err)), TC_OK);
        assert_true(row + n <= t->rows);
        for (int c = 0; c < NCOLS; c++)
            for (size_t j = 0; j < n; j++)
                check_value(t, c, row + j, &v[c], j);
        if (w)
            assert_int_equal(tc_parquet_write(w, v, n, err, sizeof(err)), TC_OK);
        row += n;
    }
    assert_int_equal(row, t->rows);
    if (w) {
        assert_int_equal(tc_parquet_close(w, err, sizeof(err)), TC_OK);
        tc_parquet_writer_destroy(w);
    }
    tc_parquet_reader_close(r);
    return ngroups;
}

static void test_round_trip(void **state)
{
    static const tc_parquet_codec codecs[] = {TC_PQ_UNCOMPRESSED, TC_PQ_SNAPPY, TC_PQ_ZSTD};
    size_t files = 0, groups = 0;

    (void)state;
    rng_state = 0x9e3779b97f4a7c15ULL;
    for (int ci = 0; ci < 3; ci++) {
        for (int dict = 0; dict < 4; dict++) {
            table t;
            tc_parquet_options o;
            memfile m, copy = {0};
            int fd, fd2;
            size_t rows = (size_t)(rnd() % 6000);

            if (ci == 0 && dict == 0)
                rows = 0;
            /* dict 0: numbers PLAIN, strings dictionary; 1: dictionary everywhere, few distinct
             * values; 2: dictionary overflowing after a few entries; 3: many distinct values */
            table_make(&t, rows, dict == 1 ? 50 : 0);
            tc_parquet_options_default(&o);
            o.codec = codecs[ci];
            o.row_group_rows = 200 + (size_t)(rnd() % 1500);
            o.page_rows = 1 + (size_t)(rnd() % 400);
            o.dictionary_numbers = dict != 0;
            if (dict == 2)
                o.dict_max_entries = 16;
            for (int c = 0; c < NCOLS && dict == 3; c++)
                t.cols[c].dictionary = TC_PQ_DICT_OFF;
            m = table_write(&t, &o);
            fd = mem_fd(&m);
            groups += read_compare(&t, fd, &copy);
            fd2 = mem_fd(&copy);
            read_compare(&t, fd2, NULL);
            close(fd);
            close(fd2);
            free(m.p);
            free(copy.p);
            table_free(&t);
            files++;
        }
    }
    assert_int_equal(files, 12);
    assert_true(groups > 24);
}

/* A small valid file for the corruption tests. */
static memfile small_file(table *t)
{
    tc_parquet_options o;

    rng_state = 12345;
    table_make(t, 300, 20);
    tc_parquet_options_default(&o);
    o.codec = TC_PQ_UNCOMPRESSED;
    o.row_group_rows = 120;
    o.page_rows = 50;
    o.dictionary_numbers = 1;
    return table_write(t, &o);
}

/* Open and read everything; TC_OK only if the whole file decodes. */
static tc_err read_all(const memfile *m)
{
    char err[TC_ERRSTR_MAX];
    tc_parquet_reader *r;
    int fd = mem_fd(m);
    tc_err e = tc_parquet_reader_open_fd(fd, &r, err, sizeof(err));

    if (e == TC_OK) {
        for (size_t g = 0; g < tc_parquet_reader_row_groups(r) && e == TC_OK; g++) {
            const tc_parquet_values *v;
            size_t n;
            e = tc_parquet_reader_read(r, g, &v, &n, err, sizeof(err));
        }
        tc_parquet_reader_close(r);
    }
    close(fd);
    return e;
}

static void test_truncated(void **state)
{
    table t;
    memfile m = small_file(&t);

    (void)state;
    assert_int_equal(read_all(&m), TC_OK);
    for (size_t n = 0; n < m.n; n += 1 + n / 16) {
        memfile cut = {m.p, n};
        assert_int_not_equal(read_all(&cut), TC_OK);
    }
    free(m.p);
    table_free(&t);
}

/* Every single-byte corruption of the data region: rejected or decoded, never a crash or an
 * out-of-bounds access (ASan); most are caught. */
static void test_corrupt_bytes(void **state)
{
    table t;
    memfile m = small_file(&t);
    size_t bad = 0, tried = 0;

    (void)state;
    for (size_t i = 4; i < m.n - 8; i += 3) {
        uint8_t save = m.p[i];
        m.p[i] ^= (uint8_t)((1u << (i % 8)) | 0x40);
        bad += read_all(&m) != TC_OK;
        tried++;
        m.p[i] = save;
    }
    assert_true(bad > tried / 4);
    free(m.p);
    table_free(&t);
}

/* Nested and unsupported shapes are refused at open: a valid file with a FIXED_LEN column cannot
 * be made by our writer, so check the API contract on garbage instead. */
static void test_not_parquet(void **state)
{
    static uint8_t junk[] = "PAR1xxxxPAR1";
    memfile m = {junk, 12};

    (void)state;
    assert_int_not_equal(read_all(&m), TC_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_corrupt_bytes),
        cmocka_unit_test(test_not_parquet),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
