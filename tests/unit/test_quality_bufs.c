/*
 * test_quality_bufs.c -- the pool of a quality flush's buffers (quality/bufs.h): a request takes
 * the smallest kept buffer that holds it (a small document leaves the large buffer to the large
 * one), a larger request replaces the largest by one a quarter larger than asked (which the next
 * request a little larger still fits), want 0 takes the smallest, the pool keeps at most
 * TC_QBUFS_MAX and drops the smallest past it, and a tc_jbuf writes into a kept buffer.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "quality/bufs.h"

static void test_best_fit(void **state)
{
    tc_qbufs b = {0};
    size_t cap = 1;
    void *small = malloc(100), *large = malloc(10000), *p;

    (void)state;
    assert_null(tc_qbufs_get(&b, 0, &cap)); /* nothing kept, nothing wanted */
    assert_int_equal(cap, 0);
    tc_qbufs_put(&b, large, 10000);
    tc_qbufs_put(&b, small, 100);
    tc_qbufs_put(&b, NULL, 5); /* ignored */
    assert_int_equal(b.n, 2);
    p = tc_qbufs_get(&b, 50, &cap);
    assert_ptr_equal(p, small);
    assert_int_equal(cap, 100);
    tc_qbufs_put(&b, p, cap);
    p = tc_qbufs_get(&b, 0, &cap);
    assert_ptr_equal(p, small);
    tc_qbufs_put(&b, p, cap);
    p = tc_qbufs_get(&b, 5000, &cap);
    assert_ptr_equal(p, large);
    assert_int_equal(cap, 10000);
    tc_qbufs_put(&b, p, cap);
    p = tc_qbufs_get(&b, 20000, &cap); /* larger than any: a new one instead of the largest */
    assert_non_null(p);
    assert_int_equal(cap, 25000); /* and a quarter more, for the next request a little larger */
    memset(p, 1, cap);
    assert_int_equal(b.n, 1);
    tc_qbufs_put(&b, p, cap);
    large = p;
    p = tc_qbufs_get(&b, 24000, &cap);
    assert_ptr_equal(p, large);
    tc_qbufs_put(&b, p, cap);
    tc_qbufs_free(&b);
    assert_int_equal(b.n, 0);
}

static void test_cap_and_jbuf(void **state)
{
    tc_qbufs b = {0};
    tc_jbuf j;

    (void)state;
    for (size_t i = 0; i < TC_QBUFS_MAX + 5; i++)
        tc_qbufs_put(&b, malloc(1000 + i), 1000 + i);
    assert_int_equal(b.n, TC_QBUFS_MAX);
    for (size_t i = 0; i < b.n; i++)
        assert_true(b.cap[i] >= 1005); /* the five smallest went */
    tc_qbufs_jbuf(&b, &j, 1u << 20, 1020);
    assert_int_equal(j.cap, 1020);
    assert_int_equal(b.n, TC_QBUFS_MAX - 1);
    tc_jbuf_arr_begin(&j);
    tc_jbuf_int(&j, 42);
    tc_jbuf_arr_end(&j);
    assert_string_equal(j.data, "[42]");
    tc_qbufs_jbuf_done(&b, &j);
    assert_null(j.data);
    assert_int_equal(b.n, TC_QBUFS_MAX);
    tc_qbufs_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_best_fit),
        cmocka_unit_test(test_cap_and_jbuf),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
