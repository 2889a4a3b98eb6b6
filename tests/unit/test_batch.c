/*
 * test_batch.c -- the memory and bookkeeping types of src/core: the arena, the columnar batch, the
 * dead-letter batch, metric lookup, rejection names and error codes.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "core/arena.h"
#include "core/batch.h"
#include "core/deadletter.h"
#include "core/error.h"
#include "core/reject.h"

/* ---- arena ---- */

static void test_arena_alignment(void **state)
{
    tc_arena a;

    (void)state;
    tc_arena_init(&a, 4096, 0);
    assert_null(a.head);
    assert_int_equal(a.reserved, 0);
    for (size_t n = 0; n < 200; n++) {
        unsigned char *p = tc_arena_alloc(&a, n % 37);

        assert_non_null(p);
        assert_int_equal((uintptr_t)p % 8, 0);
        memset(p, 0xab, n % 37); /* ASan checks the bytes are really ours */
    }
    /* Odd sizes count rounded up to 8. */
    tc_arena_reset(&a);
    assert_non_null(tc_arena_alloc(&a, 3));
    assert_int_equal(a.used, 8);
    assert_non_null(tc_arena_alloc(&a, 9));
    assert_int_equal(a.used, 24);
    tc_arena_free(&a);
}

static void test_arena_distinct(void **state)
{
    tc_arena a;
    char *p[64];

    (void)state;
    tc_arena_init(&a, 256, 0);
    for (int i = 0; i < 64; i++) {
        p[i] = tc_arena_alloc(&a, 24);
        assert_non_null(p[i]);
        memset(p[i], 'a' + i % 26, 24);
    }
    for (int i = 0; i < 64; i++) {
        for (int j = 0; j < 24; j++)
            assert_int_equal(p[i][j], 'a' + i % 26);
    }
    tc_arena_free(&a);
}

static void test_arena_strndup(void **state)
{
    tc_arena a;
    char src[] = "sensor-0042xyz";
    char *s;

    (void)state;
    tc_arena_init(&a, 0, 0); /* 0 = default block size */
    assert_true(a.block_size > 0);
    s = tc_arena_strndup(&a, src, 11);
    assert_non_null(s);
    assert_ptr_not_equal(s, src);
    src[0] = 'X';
    assert_string_equal(s, "sensor-0042");
    s = tc_arena_strndup(&a, NULL, 0);
    assert_non_null(s);
    assert_string_equal(s, "");
    tc_arena_free(&a);
}

static void test_arena_cap(void **state)
{
    tc_arena a;

    (void)state;
    tc_arena_init(&a, 1024, 2048);
    assert_non_null(tc_arena_alloc(&a, 1000));
    assert_int_equal(a.reserved, 1024);
    assert_non_null(tc_arena_alloc(&a, 1000)); /* second block */
    assert_int_equal(a.reserved, 2048);
    assert_null(tc_arena_alloc(&a, 1000)); /* a third would pass the cap */
    assert_int_equal(a.reserved, 2048);
    assert_non_null(tc_arena_alloc(&a, 24)); /* what still fits in the current block is fine */
    assert_null(tc_arena_alloc(&a, 4096));   /* too big for any block within the cap */
    assert_null(tc_arena_alloc(&a, SIZE_MAX));
    assert_null(tc_arena_alloc(&a, SIZE_MAX / 2 + 1));
    assert_int_equal(a.reserved, 2048);
    tc_arena_free(&a);
    assert_int_equal(a.reserved, 0);
    assert_int_equal(a.used, 0);
}

/* An allocation larger than a block gets a block of its own size, even with no cap. */
static void test_arena_large(void **state)
{
    tc_arena a;
    unsigned char *p, *q;

    (void)state;
    tc_arena_init(&a, 1024, 0);
    p = tc_arena_alloc(&a, 10000);
    assert_non_null(p);
    memset(p, 1, 10000);
    assert_true(a.reserved >= 10000);
    q = tc_arena_alloc(&a, 16);
    assert_non_null(q);
    memset(q, 2, 16);
    assert_int_equal(p[9999], 1);
    /* Within a cap: a large allocation that fits the cap succeeds. */
    tc_arena_free(&a);
    tc_arena_init(&a, 1024, 8192);
    assert_non_null(tc_arena_alloc(&a, 8000));
    assert_null(tc_arena_alloc(&a, 1024));
    tc_arena_free(&a);
}

/* Reset keeps the blocks: the same workload again reserves nothing more, even at the cap. */
static void test_arena_reset_reuses(void **state)
{
    tc_arena a;
    size_t reserved = 0;

    (void)state;
    tc_arena_init(&a, 1024, 4096);
    for (int round = 0; round < 50; round++) {
        for (int i = 0; i < 8; i++) {
            char *p = tc_arena_alloc(&a, 500);

            assert_non_null(p);
            memset(p, round, 500);
        }
        assert_int_equal(a.used, 8 * 504);
        if (round == 0)
            reserved = a.reserved;
        else
            assert_int_equal(a.reserved, reserved);
        assert_true(a.reserved <= 4096);
        tc_arena_reset(&a);
        assert_int_equal(a.used, 0);
        assert_null(a.head);
        assert_int_equal(a.reserved, reserved);
    }
    tc_arena_free(&a);
    /* Initialised again after free, it works like new. */
    tc_arena_init(&a, 64, 0);
    assert_non_null(tc_arena_alloc(&a, 8));
    tc_arena_free(&a);
}

/* ---- batch ---- */

static void test_batch_new_bounds(void **state)
{
    tc_batch *b;

    (void)state;
    assert_null(tc_batch_new(0, 0));
    assert_null(tc_batch_new(TC_BATCH_ROWS_MAX + 1, 0));
    assert_null(tc_batch_new(SIZE_MAX, 0));
    b = tc_batch_new(1, 0);
    assert_non_null(b);
    assert_int_equal(b->cap, 1);
    assert_int_equal(b->n, 0);
    tc_batch_destroy(b);
    b = tc_batch_new(TC_BATCH_ROWS_MAX, 1 << 20);
    assert_non_null(b);
    assert_int_equal(b->cap, TC_BATCH_ROWS_MAX);
    assert_int_equal(b->arena.cap, 1 << 20);
    b->time_us[TC_BATCH_ROWS_MAX - 1] = 1; /* every column really has cap rows */
    b->offset[TC_BATCH_ROWS_MAX - 1] = 1;
    b->present[TC_M_LONGITUDE][TC_BATCH_ROWS_MAX - 1] = 1;
    tc_batch_destroy(b);
    tc_batch_destroy(NULL);
}

static void fill_row(tc_batch *b, size_t i, tc_arena *a)
{
    b->time_us[i] = 123456789;
    b->device_id[i] = (tc_slice){tc_arena_strndup(a, "dev", 3), 3};
    b->tags[i] = (tc_slice){"{}", 2};
    b->extra[i] = (tc_slice){"{\"x\":1}", 7};
    b->partition[i] = 5;
    b->offset[i] = 77;
    for (int m = 0; m < TC_METRIC__COUNT; m++) {
        b->present[m][i] = 1;
        b->metric[m][i] = 1.5 + m;
    }
}

static void assert_row_clear(const tc_batch *b, size_t i)
{
    assert_int_equal(b->time_us[i], 0);
    assert_null(b->device_id[i].ptr);
    assert_int_equal(b->device_id[i].len, 0);
    assert_null(b->tags[i].ptr);
    assert_int_equal(b->tags[i].len, 0);
    assert_null(b->extra[i].ptr);
    assert_int_equal(b->extra[i].len, 0);
    assert_int_equal(b->partition[i], -1);
    assert_int_equal(b->offset[i], -1);
    for (int m = 0; m < TC_METRIC__COUNT; m++) {
        assert_int_equal(b->present[m][i], 0);
        assert_true(b->metric[m][i] == 0.0);
    }
}

static void test_batch_row_begin_clears(void **state)
{
    tc_batch *b = tc_batch_new(3, 0);

    (void)state;
    assert_non_null(b);
    /* A dropped (uncommitted) row is cleared by the next begin. */
    assert_int_equal(tc_batch_row_begin(b), TC_OK);
    fill_row(b, 0, &b->arena);
    assert_int_equal(tc_batch_row_begin(b), TC_OK);
    assert_int_equal(b->n, 0);
    assert_row_clear(b, 0);
    /* A committed row of a batch that was reset is cleared too. */
    fill_row(b, 0, &b->arena);
    tc_batch_row_commit(b);
    assert_int_equal(tc_batch_row_begin(b), TC_OK);
    fill_row(b, 1, &b->arena);
    tc_batch_row_commit(b);
    tc_batch_reset(b);
    assert_int_equal(b->n, 0);
    assert_int_equal(b->arena.used, 0);
    assert_int_equal(tc_batch_row_begin(b), TC_OK);
    assert_row_clear(b, 0);
    /* begin touches only row n: row 1 still holds what was written. */
    assert_int_equal(b->offset[1], 77);
    tc_batch_destroy(b);
}

static void test_batch_commit_and_full(void **state)
{
    tc_batch *b = tc_batch_new(3, 0);

    (void)state;
    assert_non_null(b);
    for (size_t i = 0; i < 3; i++) {
        assert_false(tc_batch_full(b));
        assert_int_equal(tc_batch_row_begin(b), TC_OK);
        b->offset[i] = (int64_t)i * 10;
        tc_batch_row_commit(b);
        assert_int_equal(b->n, i + 1);
    }
    assert_true(tc_batch_full(b));
    assert_int_equal(tc_batch_row_begin(b), TC_ERR_FULL);
    tc_batch_row_commit(b); /* committing past the end does nothing */
    assert_int_equal(b->n, 3);
    /* The committed rows kept their values. */
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(b->offset[i], (int64_t)i * 10);
    tc_batch_reset(b);
    assert_int_equal(b->n, 0);
    assert_false(tc_batch_full(b));
    assert_int_equal(tc_batch_row_begin(b), TC_OK);
    tc_batch_destroy(b);
}

/* The batch arena honours the arena cap given to tc_batch_new. */
static void test_batch_arena_cap(void **state)
{
    tc_batch *b = tc_batch_new(10, 256 * 1024);
    size_t reserved;

    (void)state;
    assert_non_null(b);
    assert_non_null(tc_arena_alloc(&b->arena, 200 * 1024));
    assert_null(tc_arena_alloc(&b->arena, 200 * 1024));
    reserved = b->arena.reserved;
    tc_batch_reset(b);
    assert_non_null(tc_arena_alloc(&b->arena, 200 * 1024));
    assert_int_equal(b->arena.reserved, reserved);
    tc_batch_destroy(b);
}

/* ---- dead letters ---- */

static void test_dlq_copies(void **state)
{
    tc_dlq_batch *d = tc_dlq_batch_new(4, 0);
    char payload[] = "{\"device_id\":";
    char key[] = "sensor-7";
    char detail[] = "truncated";
    const tc_dead_letter *dl;

    (void)state;
    assert_non_null(d);
    assert_int_equal(tc_dlq_batch_add(d, TC_REJECT_MALFORMED, "decode", detail, payload,
                                      strlen(payload), key, strlen(key), 3, 1234, 99),
                     TC_OK);
    assert_int_equal(d->n, 1);
    memset(payload, '#', strlen(payload));
    memset(key, '#', strlen(key));
    memset(detail, '#', strlen(detail));
    dl = &d->items[0];
    assert_int_equal(dl->reason, TC_REJECT_MALFORMED);
    assert_string_equal(dl->stage, "decode");
    assert_string_equal(dl->detail, "truncated");
    assert_int_equal(dl->payload.len, 13);
    assert_memory_equal(dl->payload.ptr, "{\"device_id\":", 13);
    assert_int_equal(dl->key.len, 8);
    assert_memory_equal(dl->key.ptr, "sensor-7", 8);
    assert_int_equal(dl->partition, 3);
    assert_int_equal(dl->offset, 1234);
    assert_int_equal(dl->received_us, 99);
    tc_dlq_batch_destroy(d);
}

/* Binary payloads with NUL bytes are kept whole; a NULL key stays NULL. */
static void test_dlq_binary_and_null(void **state)
{
    tc_dlq_batch *d = tc_dlq_batch_new(4, 0);
    static const char bin[] = {'a', 0, (char)0xff, 'b'};

    (void)state;
    assert_non_null(d);
    assert_int_equal(tc_dlq_batch_add(d, TC_REJECT_INVALID_UTF8, "decode", "bad", bin, sizeof(bin),
                                      NULL, 0, 0, 1, 2),
                     TC_OK);
    assert_int_equal(d->items[0].payload.len, 4);
    assert_memory_equal(d->items[0].payload.ptr, bin, 4);
    assert_null(d->items[0].key.ptr);
    assert_int_equal(d->items[0].key.len, 0);
    /* An empty message: payload NULL, key empty but present. */
    assert_int_equal(tc_dlq_batch_add(d, TC_REJECT_EMPTY, "decode", "", NULL, 0, "", 0, 0, 2, 3),
                     TC_OK);
    assert_null(d->items[1].payload.ptr);
    assert_int_equal(d->items[1].payload.len, 0);
    assert_non_null(d->items[1].key.ptr);
    assert_int_equal(d->items[1].key.len, 0);
    assert_string_equal(d->items[1].detail, "");
    tc_dlq_batch_destroy(d);
}

static void test_dlq_full_by_count(void **state)
{
    tc_dlq_batch *d = tc_dlq_batch_new(2, 0);

    (void)state;
    assert_non_null(d);
    assert_int_equal(d->cap, 2);
    assert_int_equal(tc_dlq_batch_add(d, TC_REJECT_EMPTY, "decode", "a", "x", 1, NULL, 0, 0, 0, 0),
                     TC_OK);
    assert_int_equal(tc_dlq_batch_add(d, TC_REJECT_EMPTY, "decode", "b", "y", 1, NULL, 0, 0, 1, 0),
                     TC_OK);
    assert_int_equal(tc_dlq_batch_add(d, TC_REJECT_EMPTY, "decode", "c", "z", 1, NULL, 0, 0, 2, 0),
                     TC_ERR_FULL);
    assert_int_equal(d->n, 2);
    assert_string_equal(d->items[1].detail, "b");
    tc_dlq_batch_reset(d);
    assert_int_equal(d->n, 0);
    assert_int_equal(d->arena.used, 0);
    assert_int_equal(tc_dlq_batch_add(d, TC_REJECT_EMPTY, "decode", "c", "z", 1, NULL, 0, 0, 2, 0),
                     TC_OK);
    assert_int_equal(d->n, 1);
    assert_string_equal(d->items[0].detail, "c");
    assert_int_equal(d->items[0].offset, 2);
    tc_dlq_batch_destroy(d);
}

static void test_dlq_full_by_arena(void **state)
{
    /* The dead-letter arena uses 256 KiB blocks, so a 256 KiB cap is one block. */
    tc_dlq_batch *d = tc_dlq_batch_new(100, 256 * 1024);
    size_t big = 150 * 1024;
    char *payload = malloc(big);

    (void)state;
    assert_non_null(d);
    assert_non_null(payload);
    memset(payload, 'p', big);
    assert_int_equal(
        tc_dlq_batch_add(d, TC_REJECT_TOO_LARGE, "decode", "1", payload, big, "k", 1, 0, 10, 0),
        TC_OK);
    assert_int_equal(
        tc_dlq_batch_add(d, TC_REJECT_TOO_LARGE, "decode", "2", payload, big, "k", 1, 0, 11, 0),
        TC_ERR_FULL);
    assert_int_equal(d->n, 1);
    assert_true(d->arena.reserved <= 256 * 1024);
    /* Small letters still fit in what is left. */
    assert_int_equal(tc_dlq_batch_add(d, TC_REJECT_EMPTY, "decode", "3", "x", 1, NULL, 0, 0, 12, 0),
                     TC_OK);
    assert_int_equal(d->n, 2);
    assert_int_equal(d->items[1].offset, 12);
    /* After a reset (the flush), the big one fits again. */
    tc_dlq_batch_reset(d);
    assert_int_equal(
        tc_dlq_batch_add(d, TC_REJECT_TOO_LARGE, "decode", "2", payload, big, "k", 1, 0, 11, 0),
        TC_OK);
    assert_int_equal(d->items[0].payload.len, big);
    assert_int_equal(d->items[0].payload.ptr[big - 1], 'p');
    free(payload);
    tc_dlq_batch_destroy(d);
}

/* ---- names ---- */

static void test_metric_lookup(void **state)
{
    (void)state;
    for (int m = 0; m < TC_METRIC__COUNT; m++) {
        assert_int_equal(tc_metric_lookup(tc_metric_names[m], strlen(tc_metric_names[m])), m);
    }
    assert_int_equal(tc_metric_lookup("temperature", 11), TC_M_TEMPERATURE);
    assert_int_equal(tc_metric_lookup("longitude", 9), TC_M_LONGITUDE);
    /* The name is (ptr, len), not NUL-terminated: a prefix or longer text is no match. */
    assert_int_equal(tc_metric_lookup("temperatures", 11), TC_M_TEMPERATURE);
    assert_int_equal(tc_metric_lookup("temperatures", 12), -1);
    assert_int_equal(tc_metric_lookup("temp", 4), -1);
    assert_int_equal(tc_metric_lookup("Temperature", 11), -1);
    assert_int_equal(tc_metric_lookup("device_id", 9), -1);
    assert_int_equal(tc_metric_lookup("", 0), -1);
    assert_int_equal(tc_metric_lookup("humidity\0", 9), -1);
}

static void test_reject_names(void **state)
{
    (void)state;
    for (int r = 0; r < TC_REJECT__COUNT; r++) {
        const char *name = tc_reject_name((tc_reject)r);

        assert_non_null(name);
        assert_true(strlen(name) > 0);
        assert_string_not_equal(name, "unknown");
        for (const char *c = name; *c; c++)
            assert_true((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '_');
        for (int s = 0; s < r; s++)
            assert_string_not_equal(name, tc_reject_name((tc_reject)s));
    }
    /* The names are data (dead-letter rows, dashboards): pin the ones operators filter on. */
    assert_string_equal(tc_reject_name(TC_REJECT_NONE), "none");
    assert_string_equal(tc_reject_name(TC_REJECT_MALFORMED), "malformed_json");
    assert_string_equal(tc_reject_name(TC_REJECT_OUT_OF_RANGE), "out_of_range");
    assert_string_equal(tc_reject_name(TC_REJECT_TIMESTAMP_FUTURE), "timestamp_in_future");
    assert_string_equal(tc_reject_name(TC_REJECT_TIMESTAMP_TOO_OLD), "timestamp_too_old");
    assert_string_equal(tc_reject_name(TC_REJECT__COUNT), "unknown");
    assert_string_equal(tc_reject_name((tc_reject)-1), "unknown");
}

static void test_err_names(void **state)
{
    (void)state;
    for (int e = 0; e < TC_ERR__COUNT; e++) {
        const char *name = tc_err_name((tc_err)e);

        assert_non_null(name);
        assert_string_not_equal(name, "unknown");
        for (int s = 0; s < e; s++)
            assert_string_not_equal(name, tc_err_name((tc_err)s));
    }
    assert_string_equal(tc_err_name(TC_OK), "ok");
    assert_string_equal(tc_err_name(TC_ERR_DB_CONN), "db_conn");
    assert_string_equal(tc_err_name(TC_ERR_FULL), "full");
    assert_string_equal(tc_err_name(TC_ERR__COUNT), "unknown");
    assert_string_equal(tc_err_name((tc_err)-1), "unknown");
}

static void test_err_retriable(void **state)
{
    (void)state;
    /* Retriable: the same call may succeed later. */
    assert_true(tc_err_is_retriable(TC_ERR_IO));
    assert_true(tc_err_is_retriable(TC_ERR_DB_CONN));
    assert_true(tc_err_is_retriable(TC_ERR_KAFKA_TRANS));
    assert_true(tc_err_is_retriable(TC_ERR_TIMEOUT));
    assert_true(tc_err_is_retriable(TC_ERR_FULL));
    /* Fatal: retrying cannot help. */
    assert_false(tc_err_is_retriable(TC_OK));
    assert_false(tc_err_is_retriable(TC_ERR_NOMEM));
    assert_false(tc_err_is_retriable(TC_ERR_INVALID));
    assert_false(tc_err_is_retriable(TC_ERR_CONFIG));
    assert_false(tc_err_is_retriable(TC_ERR_DB));
    assert_false(tc_err_is_retriable(TC_ERR_KAFKA));
    assert_false(tc_err_is_retriable(TC_ERR_NOT_FOUND));
    assert_false(tc_err_is_retriable(TC_ERR_STOPPED));
    assert_false(tc_err_is_retriable(TC_ERR__COUNT));
}

static void test_err_set(void **state)
{
    char buf[8];

    (void)state;
    memset(buf, 'X', sizeof(buf));
    assert_int_equal(tc_err_set(TC_ERR_DB, buf, 5, "%s %d", "abc", 42), TC_ERR_DB);
    assert_string_equal(buf, "abc "); /* cut and NUL-terminated */
    assert_int_equal(buf[5], 'X');
    assert_int_equal(tc_err_set(TC_ERR_IO, NULL, 0, "ignored"), TC_ERR_IO);
    assert_int_equal(tc_err_set(TC_ERR_IO, buf, 0, "ignored"), TC_ERR_IO);
    assert_string_equal(buf, "abc ");
}

static void test_dyn_columns(void **state)
{
    tc_batch *b = tc_batch_new(4, 0);
    char name[80];
    int d;

    (void)state;
    assert_non_null(b);
    assert_int_equal(tc_batch_row_begin(b), TC_OK);
    tc_batch_row_commit(b); /* a row that predates the column */
    d = tc_batch_dyn_column(b, "co2", 3);
    assert_int_equal(d, 0);
    assert_int_equal(tc_batch_dyn_column(b, "co2", 3), 0); /* found, not added twice */
    assert_int_equal(b->ndyn, 1);
    assert_int_equal(b->dyn_present[0][0], 0); /* NULL in the earlier row */
    assert_int_equal(tc_batch_row_begin(b), TC_OK);
    b->dyn[0][1] = 415.5;
    b->dyn_present[0][1] = 1;
    tc_batch_row_commit(b);
    tc_batch_reset(b);
    assert_int_equal(b->ndyn, 1); /* columns outlive batches */
    assert_int_equal(tc_batch_row_begin(b), TC_OK);
    assert_int_equal(b->dyn_present[0][0], 0); /* row_begin clears dynamic columns too */
    /* Names that are not columns: fixed ones, bad characters, too long, leading digit. */
    assert_int_equal(tc_batch_dyn_column(b, "temperature", 11), -1);
    assert_int_equal(tc_batch_dyn_column(b, "kafka_offset", 12), -1);
    assert_int_equal(tc_batch_dyn_column(b, "CO2", 3), -1);
    assert_int_equal(tc_batch_dyn_column(b, "co-2", 4), -1);
    assert_int_equal(tc_batch_dyn_column(b, "2co", 3), -1);
    assert_int_equal(tc_batch_dyn_column(b, "", 0), -1);
    memset(name, 'a', sizeof(name));
    assert_int_equal(tc_batch_dyn_column(b, name, TC_BATCH_DYN_NAME_MAX), 1);
    assert_int_equal(tc_batch_dyn_column(b, name, TC_BATCH_DYN_NAME_MAX + 1), -1);
    /* The cap. */
    for (int i = (int)b->ndyn; i < TC_BATCH_DYN_MAX; i++) {
        snprintf(name, sizeof(name), "m%d", i);
        assert_int_equal(tc_batch_dyn_column(b, name, strlen(name)), i);
    }
    assert_int_equal(tc_batch_dyn_column(b, "one_too_many", 12), -1);
    tc_batch_destroy(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_arena_alignment),
        cmocka_unit_test(test_arena_distinct),
        cmocka_unit_test(test_arena_strndup),
        cmocka_unit_test(test_arena_cap),
        cmocka_unit_test(test_arena_large),
        cmocka_unit_test(test_arena_reset_reuses),
        cmocka_unit_test(test_batch_new_bounds),
        cmocka_unit_test(test_batch_row_begin_clears),
        cmocka_unit_test(test_batch_commit_and_full),
        cmocka_unit_test(test_batch_arena_cap),
        cmocka_unit_test(test_dlq_copies),
        cmocka_unit_test(test_dlq_binary_and_null),
        cmocka_unit_test(test_dlq_full_by_count),
        cmocka_unit_test(test_dlq_full_by_arena),
        cmocka_unit_test(test_metric_lookup),
        cmocka_unit_test(test_dyn_columns),
        cmocka_unit_test(test_reject_names),
        cmocka_unit_test(test_err_names),
        cmocka_unit_test(test_err_retriable),
        cmocka_unit_test(test_err_set),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
