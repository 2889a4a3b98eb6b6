/*
 * test_dedupe.c -- the dedupe window: fingerprints, the verdict by offset, generations.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "core/batch.h"
#include "process/dedupe.h"

static void add_row(tc_batch *b, const char *dev, int64_t t, double temp, const char *extra)
{
    size_t i = b->n;

    assert_int_equal(tc_batch_row_begin(b), 0);
    b->device_id[i] = (tc_slice){dev, (uint32_t)strlen(dev)};
    b->time_us[i] = t;
    b->metric[TC_M_TEMPERATURE][i] = temp;
    b->present[TC_M_TEMPERATURE][i] = 1;
    if (extra)
        b->extra[i] = (tc_slice){extra, (uint32_t)strlen(extra)};
    tc_batch_row_commit(b);
}

static void test_fingerprint(void **state)
{
    tc_batch *b = tc_batch_new(8, 0);

    (void)state;
    add_row(b, "d1", 1000, 20.5, NULL);
    add_row(b, "d1", 1000, 20.5, NULL);        /* same content */
    add_row(b, "d1", 1000, 21.5, NULL);        /* other content */
    add_row(b, "d1", 1001, 20.5, NULL);        /* other time */
    add_row(b, "d2", 1000, 20.5, NULL);        /* other device */
    add_row(b, "d1", 1000, 20.5, "{\"x\":1}"); /* other extra */
    assert_true(tc_dedupe_fingerprint(b, 0, NULL, 0) == tc_dedupe_fingerprint(b, 1, NULL, 0));
    for (size_t i = 2; i < b->n; i++)
        assert_true(tc_dedupe_fingerprint(b, 0, NULL, 0) != tc_dedupe_fingerprint(b, i, NULL, 0));
    /* With a message id, the content does not count; the id does. */
    assert_true(tc_dedupe_fingerprint(b, 0, "\"m-1\"", 5) ==
                tc_dedupe_fingerprint(b, 2, "\"m-1\"", 5));
    assert_true(tc_dedupe_fingerprint(b, 0, "\"m-1\"", 5) !=
                tc_dedupe_fingerprint(b, 0, "\"m-2\"", 5));
    assert_true(tc_dedupe_fingerprint(b, 0, "\"m-1\"", 5) != tc_dedupe_fingerprint(b, 0, NULL, 0));
    tc_batch_destroy(b);
}

static void test_verdict_by_offset(void **state)
{
    tc_dedupe *d = tc_dedupe_new(1000, 60000000);

    (void)state;
    assert_non_null(d);
    assert_int_equal(tc_dedupe_check(d, 42, 0, 10, 5), 0); /* first seen */
    assert_int_equal(tc_dedupe_check(d, 42, 0, 10, 5), 0); /* the same message read again */
    assert_int_equal(tc_dedupe_check(d, 42, 0, 15, 5), 1); /* a later copy */
    assert_int_equal(tc_dedupe_check(d, 42, 1, 15, 5), 0); /* another partition: not looked for */
    assert_int_equal(tc_dedupe_check(d, 42, 0, 7, 5), 0); /* an earlier copy, read after a rewind */
    assert_int_equal(tc_dedupe_check(d, 42, 0, 10, 5), 1); /* ...is now the original */
    assert_int_equal(tc_dedupe_size(d), 2);
    tc_dedupe_destroy(d);
    assert_null(tc_dedupe_new(1, 1));
}

static void test_generations(void **state)
{
    tc_dedupe *d = tc_dedupe_new(100, INT64_MAX / 2); /* 50 per generation */

    (void)state;
    for (uint64_t fp = 1; fp <= 120; fp++)
        assert_int_equal(tc_dedupe_check(d, fp, 0, (int64_t)fp, 0), 0);
    assert_true(tc_dedupe_size(d) <= 100);
    /* The last 50 are always remembered; the first ones are gone. */
    for (uint64_t fp = 71; fp <= 120; fp++)
        assert_int_equal(tc_dedupe_check(d, fp, 0, 1000, 0), 1);
    assert_int_equal(tc_dedupe_check(d, 1, 0, 1000, 0), 0);
    tc_dedupe_destroy(d);

    /* By event time: a generation spanning more than the window is rotated. */
    d = tc_dedupe_new(1000, 10);
    assert_int_equal(tc_dedupe_check(d, 7, 0, 1, 100), 0);
    assert_int_equal(tc_dedupe_check(d, 8, 0, 2, 105), 0);
    assert_int_equal(tc_dedupe_check(d, 9, 0, 3, 120), 0); /* rotates: 7 and 8 are older now */
    assert_int_equal(tc_dedupe_check(d, 7, 0, 4, 121), 1);
    assert_int_equal(tc_dedupe_check(d, 10, 0, 5, 140), 0); /* rotates again: 7 and 8 dropped */
    assert_int_equal(tc_dedupe_check(d, 8, 0, 6, 141), 0);
    tc_dedupe_destroy(d);
}

/* Partitions at different points of event time (a backlog next to live data) must not make the
 * window rotate at every reading: it did when a generation's start was its first reading's time. */
static void test_interleaved_times_keep_the_window(void **state)
{
    tc_dedupe *d = tc_dedupe_new(22, 300000000); /* 11 per generation, 300 s */

    (void)state;
    /* Odd fingerprints at t = 1000 s, even ones at t = 0: the insert that finds the generation full
     * (fp 12) is an old one. */
    for (uint64_t fp = 1; fp <= 20; fp++)
        assert_int_equal(tc_dedupe_check(d, fp, 0, (int64_t)fp, fp & 1 ? 1000000000LL : 0), 0);
    assert_int_equal(tc_dedupe_size(d), 20);
    assert_int_equal(tc_dedupe_check(d, 1, 0, 500, 0), 1);
    tc_dedupe_destroy(d);
}

/* One fingerprint on many partitions is as many entries, each with its own offset (the partition
 * is folded into the table's key), and a rotation drops the older generation's entries only:
 * both generations share the table's slots. */
static void test_one_fingerprint_on_many_partitions(void **state)
{
    tc_dedupe *d = tc_dedupe_new(1000, INT64_MAX / 2); /* 500 per generation */

    (void)state;
    for (int32_t p = 0; p < 400; p++)
        assert_int_equal(tc_dedupe_check(d, 77, p, 100 + p, 0), 0);
    assert_int_equal(tc_dedupe_size(d), 400);
    for (int32_t p = 0; p < 400; p++) {
        assert_int_equal(tc_dedupe_check(d, 77, p, 100 + p, 0), 0); /* itself, read again */
        assert_int_equal(tc_dedupe_check(d, 77, p, 101 + p, 0), 1); /* a later copy */
    }
    /* 500 more fill the generation and rotate once: the 400 are the older generation now... */
    for (uint64_t fp = 1000; fp < 1500; fp++)
        assert_int_equal(tc_dedupe_check(d, fp, 0, (int64_t)fp, 0), 0);
    assert_int_equal(tc_dedupe_check(d, 77, 399, 1000, 0), 1);
    /* ...and the next 500 rotate again: they are gone, the 500 stay. */
    for (uint64_t fp = 2000; fp < 2500; fp++)
        assert_int_equal(tc_dedupe_check(d, fp, 0, (int64_t)fp, 0), 0);
    assert_int_equal(tc_dedupe_check(d, 1499, 0, 5000, 0), 1);
    assert_int_equal(tc_dedupe_check(d, 77, 0, 5000, 0), 0);
    assert_true(tc_dedupe_size(d) <= 1000);
    tc_dedupe_destroy(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fingerprint),
        cmocka_unit_test(test_verdict_by_offset),
        cmocka_unit_test(test_generations),
        cmocka_unit_test(test_interleaved_times_keep_the_window),
        cmocka_unit_test(test_one_fingerprint_on_many_partitions),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
