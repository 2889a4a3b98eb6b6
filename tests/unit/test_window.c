/*
 * test_window.c -- the replay's windows (process/window.h), without Kafka: where each partition
 * starts, which offsets the store takes again and which it keeps, when its mark may move, the
 * skipped offsets, and when the replay is done.
 *
 * One window is used throughout unless a test says otherwise: partition 3, the store takes
 * [100, 150) again, it had stored up to 200 (store_mark), and the replay consumes up to 250.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "process/window.h"

#define STORE (1u << 0)
#define LAKE  (1u << 1)
#define BOTH  (STORE | LAKE)

static const tc_pipeline_window W3 = {
    .partition = 3, .from = 100, .to = 150, .store_mark = 200, .end = 250};

static void test_assign_starts_each_windowed_partition_at_its_window(void **state)
{
    tc_pipeline_window w[2] = {W3, W3};
    tc_windows *ws;
    int32_t parts[3] = {1, 3, 5};
    int64_t next[3] = {7, 8, 9};

    (void)state;
    w[1].partition = 5;
    w[1].from = 40;
    ws = tc_windows_new(w, 2);
    assert_non_null(ws);
    tc_windows_assign(ws, parts, 3, next);
    assert_int_equal(next[0], 7); /* no window: left where it was */
    assert_int_equal(next[1], 100);
    assert_int_equal(next[2], 40);
    tc_windows_destroy(ws);
}

static void test_store_takes_the_range_and_what_was_never_stored(void **state)
{
    tc_windows *ws = tc_windows_new(&W3, 1);

    (void)state;
    assert_non_null(ws);
    /* Below the window (a lake rewound further): the lake only. */
    assert_int_equal(tc_windows_sinks(ws, 3, 99, BOTH, STORE), LAKE);
    /* [from, to): both again. */
    assert_int_equal(tc_windows_sinks(ws, 3, 100, BOTH, STORE), BOTH);
    assert_int_equal(tc_windows_sinks(ws, 3, 149, BOTH, STORE), BOTH);
    /* [to, store_mark): the store keeps its rows, it must not get them twice. */
    assert_int_equal(tc_windows_sinks(ws, 3, 150, BOTH, STORE), LAKE);
    assert_int_equal(tc_windows_sinks(ws, 3, 199, BOTH, STORE), LAKE);
    /* From store_mark on, never stored: both. */
    assert_int_equal(tc_windows_sinks(ws, 3, 200, BOTH, STORE), BOTH);
    assert_int_equal(tc_windows_sinks(ws, 3, 248, BOTH, STORE), BOTH);
    /* At or past end, and on a partition without a window: nothing. */
    assert_int_equal(tc_windows_sinks(ws, 3, 250, BOTH, STORE), 0);
    assert_int_equal(tc_windows_sinks(ws, 4, 120, BOTH, STORE), 0);
    /* Sinks the caller had already ruled out stay out. */
    assert_int_equal(tc_windows_sinks(ws, 3, 120, LAKE, STORE), LAKE);
    tc_windows_destroy(ws);
}

static void test_store_mark_only_moves_past_what_was_stored(void **state)
{
    tc_windows *ws = tc_windows_new(&W3, 1);

    (void)state;
    assert_non_null(ws);
    /* A replay inside what is stored never lowers the mark: a crash mid-replay cannot make a later
     * run store a row twice. */
    assert_true(tc_windows_keeps_store_mark(ws, 3, 100));
    assert_true(tc_windows_keeps_store_mark(ws, 3, 198));
    assert_true(tc_windows_keeps_store_mark(ws, 3, 199)); /* its next offset is 200: no move */
    assert_false(tc_windows_keeps_store_mark(ws, 3, 200));
    assert_false(tc_windows_keeps_store_mark(ws, 4, 100)); /* no window: no rule */
    tc_windows_destroy(ws);

    /* Nothing stored yet (-1): every offset moves it. */
    tc_pipeline_window fresh = W3;
    fresh.store_mark = -1;
    ws = tc_windows_new(&fresh, 1);
    assert_non_null(ws);
    assert_false(tc_windows_keeps_store_mark(ws, 3, 0));
    assert_int_equal(tc_windows_sinks(ws, 3, 160, BOTH, STORE), BOTH);
    tc_windows_destroy(ws);
}

static void test_skips_name_exact_offsets_of_their_partition(void **state)
{
    tc_pipeline_window w = W3;
    tc_windows *ws;

    (void)state;
    w.skip[0] = 120;
    w.skip[1] = 7;
    w.nskip = 2;
    ws = tc_windows_new(&w, 1);
    assert_non_null(ws);
    assert_true(tc_windows_skips(ws, 3, 120));
    assert_true(tc_windows_skips(ws, 3, 7));
    assert_false(tc_windows_skips(ws, 3, 121));
    assert_false(tc_windows_skips(ws, 2, 120));
    tc_windows_destroy(ws);
}

static void test_done_once_every_window_reached_its_end(void **state)
{
    tc_pipeline_window w[3] = {W3, W3, W3};
    int32_t parts[3] = {3, 4, 6};
    tc_windows *ws;

    (void)state;
    w[1].partition = 4;
    w[2].partition = 6;
    w[2].from = w[2].end = 300; /* nothing to consume: done before it starts */
    ws = tc_windows_new(w, 3);
    assert_non_null(ws);
    assert_false(tc_windows_done(ws));
    assert_int_equal(tc_windows_unfinished(ws, parts, 3), 3);

    tc_windows_sinks(ws, 3, 248, BOTH, STORE);
    assert_int_equal(tc_windows_unfinished(ws, parts, 3), 3);
    tc_windows_sinks(ws, 3, 249, BOTH, STORE); /* end - 1: partition 3 is done */
    assert_int_equal(tc_windows_unfinished(ws, parts, 3), 4);
    tc_windows_sinks(ws, 3, 249, BOTH, STORE); /* seen twice (a rebalance): counted once */
    assert_false(tc_windows_done(ws));

    /* An offset past the end is not processed, and says nothing of the window's end: the
     * consumer's position does (window.h). */
    assert_int_equal(tc_windows_sinks(ws, 4, 260, BOTH, STORE), 0);
    assert_false(tc_windows_done(ws));
    tc_windows_sinks(ws, 4, 249, BOTH, STORE);
    assert_true(tc_windows_done(ws));
    assert_int_equal(tc_windows_unfinished(ws, parts, 3), -1);
    tc_windows_destroy(ws);

    /* No windows at all: done at once. */
    ws = tc_windows_new(NULL, 0);
    assert_non_null(ws);
    assert_true(tc_windows_done(ws));
    tc_windows_destroy(ws);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_assign_starts_each_windowed_partition_at_its_window),
        cmocka_unit_test(test_store_takes_the_range_and_what_was_never_stored),
        cmocka_unit_test(test_store_mark_only_moves_past_what_was_stored),
        cmocka_unit_test(test_skips_name_exact_offsets_of_their_partition),
        cmocka_unit_test(test_done_once_every_window_reached_its_end),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
