/*
 * test_mask.c -- the masking rules shared by the api schema and the exports (core/mask.h).
 *
 * The rounding is checked against what PostgreSQL's round(v::numeric, d) answers (worked out by
 * hand from float8 -> numeric's 15 significant digits and numeric's halves away from zero), on
 * the values where a binary round(v * 10^d) / 10^d differs: 1.005 and 2.675 are stored a hair
 * below the half, yet PostgreSQL rounds them up.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "core/mask.h"

static void test_round_like_postgres(void **state)
{
    (void)state;
    assert_true(tc_mask_round(1.005, 2) == 1.01);
    assert_true(tc_mask_round(-1.005, 2) == -1.01);
    assert_true(tc_mask_round(2.675, 2) == 2.68);
    assert_true(tc_mask_round(48.856613, 2) == 48.86);
    assert_true(tc_mask_round(48.854999, 2) == 48.85);
    assert_true(tc_mask_round(2.352222, 0) == 2.0);
    assert_true(tc_mask_round(2.5, 0) == 3.0);
    assert_true(tc_mask_round(-2.5, 0) == -3.0);
    assert_true(tc_mask_round(9.995, 2) == 10.0);
    assert_true(tc_mask_round(99999.9999996, 6) == 100000.0);
    assert_true(tc_mask_round(0.0049, 2) == 0.0);
    assert_true(tc_mask_round(0.005, 2) == 0.01);
    assert_true(tc_mask_round(1e-9, 6) == 0.0);
    assert_true(tc_mask_round(123456.789, 0) == 123457.0);
    assert_true(tc_mask_round(-77.0364, 3) == -77.036);
    assert_true(tc_mask_round(0.0, 2) == 0.0);
    assert_true(isnan(tc_mask_round(NAN, 2)));
    assert_true(isinf(tc_mask_round(INFINITY, 2)));
}

static void test_levels_and_columns(void **state)
{
    int present = 1;

    (void)state;
    assert_true(tc_mask_value(TC_MASK_FULL, 2, 48.856613, &present) == 48.856613);
    assert_int_equal(present, 1);
    assert_true(tc_mask_value(TC_MASK_COARSE, 2, 48.856613, &present) == 48.86);
    /* 1.005 * 100 is 100.49999999999999 in binary: a binary rounding says 1.00 */
    assert_true(tc_mask_value(TC_MASK_COARSE, 2, 1.005, &present) == 1.01);
    assert_true(tc_mask_value(TC_MASK_COARSE, 2, -2.675, &present) == -2.68);
    assert_int_equal(present, 1);
    tc_mask_value(TC_MASK_HIDDEN, 2, 48.856613, &present);
    assert_int_equal(present, 0);

    assert_true(tc_mask_is_personal("latitude,longitude", "latitude", 8, 0));
    assert_true(tc_mask_is_personal(" latitude , longitude ", "longitude", 9, 0));
    assert_false(tc_mask_is_personal("latitude,longitude", "lat", 3, 0));
    assert_false(tc_mask_is_personal("latitude", "latitude_avg", 12, 0));
    assert_true(tc_mask_is_personal("latitude", "latitude_avg", 12, 1));
    assert_true(tc_mask_is_personal("latitude", "latitude_max", 12, 1));
    assert_false(tc_mask_is_personal("latitude", "latitude_n", 10, 1));
    assert_false(tc_mask_is_personal("", "latitude", 8, 0));
    assert_false(tc_mask_is_personal(NULL, "latitude", 8, 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_like_postgres),
        cmocka_unit_test(test_levels_and_columns),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
