/*
 * test_validate.c -- tc_validate_row against the default limits of tc_config_new().
 *
 * Every bound is probed at the limit itself and one representable double beyond it (nextafter), so
 * an off-by-one comparison (< instead of <=) cannot hide; timestamps are probed at the limit and
 * one microsecond past it.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "core/batch.h"
#include "core/config.h"
#include "process/validate.h"

/* 2026-11-28T12:00:00Z, an arbitrary fixed "now". */
#define NOW_US (INT64_C(1795867200) * 1000000)

typedef struct fixture {
    tc_config *cfg;
    tc_batch *b;
    char detail[TC_REJECT_DETAIL_MAX];
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));

    if (!f)
        return -1;
    f->cfg = tc_config_new();
    f->b = tc_batch_new(4, 0);
    if (!f->cfg || !f->b) {
        tc_config_destroy(f->cfg);
        tc_batch_destroy(f->b);
        free(f);
        return -1;
    }
    assert_int_equal(tc_batch_row_begin(f->b), TC_OK);
    f->b->time_us[0] = NOW_US;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;

    tc_batch_destroy(f->b);
    tc_config_destroy(f->cfg);
    free(f);
    return 0;
}

static tc_reject check(fixture *f)
{
    memset(f->detail, 0, sizeof(f->detail));
    return tc_validate_row(f->b, 0, &f->cfg->limits, NOW_US, f->detail, sizeof(f->detail));
}

/* Row 0 with only metric m present, set to v. */
static tc_reject check_metric(fixture *f, int m, double v)
{
    for (int i = 0; i < TC_METRIC__COUNT; i++)
        f->b->present[i][0] = 0;
    f->b->present[m][0] = 1;
    f->b->metric[m][0] = v;
    return check(f);
}

static void expect_ok(fixture *f, int m, double v)
{
    tc_reject r = check_metric(f, m, v);

    if (r != TC_REJECT_NONE)
        fail_msg("%s = %.17g refused as %s: %s", tc_metric_names[m], v, tc_reject_name(r),
                 f->detail);
}

static void expect_out_of_range(fixture *f, int m, double v)
{
    tc_reject r = check_metric(f, m, v);

    if (r != TC_REJECT_OUT_OF_RANGE)
        fail_msg("%s = %.17g gave %s, want out_of_range", tc_metric_names[m], v, tc_reject_name(r));
    if (!strstr(f->detail, tc_metric_names[m]) || !strstr(f->detail, "outside"))
        fail_msg("detail \"%s\" does not name %s", f->detail, tc_metric_names[m]);
}

/* The defaults, stated independently of config.c's table. */
static const double want_min[TC_METRIC__COUNT] = {-50, 0, 300, 0, -90, -180};
static const double want_max[TC_METRIC__COUNT] = {100, 100, 1100, 100, 90, 180};

static void test_default_limits(void **state)
{
    fixture *f = *state;
    const tc_limits *lim = &f->cfg->limits;

    for (int m = 0; m < TC_METRIC__COUNT; m++) {
        assert_true(lim->min[m] == want_min[m]);
        assert_true(lim->max[m] == want_max[m]);
    }
    assert_int_equal(lim->max_future_s, 300);
    assert_int_equal(lim->max_age_s, 2592000);
}

static void test_no_metrics_ok(void **state)
{
    fixture *f = *state;

    assert_int_equal(check(f), TC_REJECT_NONE);
}

static void test_all_metrics_in_range(void **state)
{
    fixture *f = *state;
    static const double v[TC_METRIC__COUNT] = {21.5, 40.2, 1013.2, 87, 52.52, 13.405};

    for (int m = 0; m < TC_METRIC__COUNT; m++) {
        f->b->present[m][0] = 1;
        f->b->metric[m][0] = v[m];
    }
    assert_int_equal(check(f), TC_REJECT_NONE);
}

static void test_bounds_inclusive(void **state)
{
    fixture *f = *state;

    for (int m = 0; m < TC_METRIC__COUNT; m++) {
        expect_ok(f, m, want_min[m]);
        expect_ok(f, m, want_max[m]);
        expect_ok(f, m, nextafter(want_min[m], INFINITY));
        expect_ok(f, m, nextafter(want_max[m], -INFINITY));
        expect_ok(f, m, (want_min[m] + want_max[m]) / 2);
    }
}

static void test_just_outside(void **state)
{
    fixture *f = *state;

    for (int m = 0; m < TC_METRIC__COUNT; m++) {
        expect_out_of_range(f, m, nextafter(want_min[m], -INFINITY));
        expect_out_of_range(f, m, nextafter(want_max[m], INFINITY));
        expect_out_of_range(f, m, want_min[m] - 1000);
        expect_out_of_range(f, m, want_max[m] + 1000);
        expect_out_of_range(f, m, -DBL_MAX);
        expect_out_of_range(f, m, DBL_MAX);
    }
}

static void test_non_finite(void **state)
{
    fixture *f = *state;

    for (int m = 0; m < TC_METRIC__COUNT; m++) {
        expect_out_of_range(f, m, NAN);
        expect_out_of_range(f, m, -NAN);
        expect_out_of_range(f, m, INFINITY);
        expect_out_of_range(f, m, -INFINITY);
    }
}

/* A metric that is absent is not looked at, whatever garbage its column holds. */
static void test_absent_not_checked(void **state)
{
    fixture *f = *state;
    static const double junk[] = {1e300, -1e300, NAN, INFINITY, -INFINITY};

    for (int m = 0; m < TC_METRIC__COUNT; m++) {
        for (size_t j = 0; j < sizeof(junk) / sizeof(junk[0]); j++) {
            for (int i = 0; i < TC_METRIC__COUNT; i++)
                f->b->metric[i][0] = i == m ? junk[j] : want_min[i];
            f->b->present[m][0] = 0;
            assert_int_equal(check(f), TC_REJECT_NONE);
            f->b->present[m][0] = 1;
            assert_int_equal(check(f), TC_REJECT_OUT_OF_RANGE);
            f->b->present[m][0] = 0;
        }
    }
}

/* Only the offending metric is named when the others are fine. */
static void test_detail_names_offender(void **state)
{
    fixture *f = *state;

    for (int bad = 0; bad < TC_METRIC__COUNT; bad++) {
        for (int m = 0; m < TC_METRIC__COUNT; m++) {
            f->b->present[m][0] = 1;
            f->b->metric[m][0] = m == bad ? want_max[m] + 1 : want_max[m];
        }
        assert_int_equal(check(f), TC_REJECT_OUT_OF_RANGE);
        assert_non_null(strstr(f->detail, tc_metric_names[bad]));
        for (int m = 0; m < TC_METRIC__COUNT; m++) {
            if (m != bad)
                assert_null(strstr(f->detail, tc_metric_names[m]));
        }
    }
}

static void test_detail_text(void **state)
{
    fixture *f = *state;

    assert_int_equal(check_metric(f, TC_M_TEMPERATURE, 150), TC_REJECT_OUT_OF_RANGE);
    assert_string_equal(f->detail, "temperature 150 is outside [-50, 100]");
    assert_int_equal(check_metric(f, TC_M_HUMIDITY, -0.5), TC_REJECT_OUT_OF_RANGE);
    assert_string_equal(f->detail, "humidity -0.5 is outside [0, 100]");
    assert_int_equal(check_metric(f, TC_M_PRESSURE, NAN), TC_REJECT_OUT_OF_RANGE);
    assert_non_null(strstr(f->detail, "pressure"));
    assert_non_null(strstr(f->detail, "nan"));
    /* The number as the device wrote it: the shortest form that reads back as the same double
     * (161.55, not %.17g's 161.55000000000001), and all 17 digits where they are needed. */
    assert_int_equal(check_metric(f, TC_M_TEMPERATURE, 161.55), TC_REJECT_OUT_OF_RANGE);
    assert_string_equal(f->detail, "temperature 161.55 is outside [-50, 100]");
    assert_int_equal(check_metric(f, TC_M_TEMPERATURE, 100.1), TC_REJECT_OUT_OF_RANGE);
    assert_string_equal(f->detail, "temperature 100.1 is outside [-50, 100]");
    assert_int_equal(check_metric(f, TC_M_TEMPERATURE, nextafter(100.0, 200.0)),
                     TC_REJECT_OUT_OF_RANGE);
    assert_string_equal(f->detail, "temperature 100.00000000000001 is outside [-50, 100]");
}

/* The limits come from the struct, not from constants in the validator. */
static void test_configured_limits(void **state)
{
    fixture *f = *state;
    char err[TC_ERRSTR_MAX];

    assert_int_equal(tc_config_set(f->cfg, "validation.temperature_max", "30", err, sizeof(err)),
                     TC_OK);
    assert_int_equal(tc_config_set(f->cfg, "validation.battery_min", "5", err, sizeof(err)), TC_OK);
    expect_ok(f, TC_M_TEMPERATURE, 30);
    expect_out_of_range(f, TC_M_TEMPERATURE, 30.01);
    assert_non_null(strstr(f->detail, "[-50, 30]"));
    expect_ok(f, TC_M_BATTERY, 5);
    expect_out_of_range(f, TC_M_BATTERY, 4.99);
}

static void test_timestamp_future(void **state)
{
    fixture *f = *state;
    int64_t limit = NOW_US + 300 * INT64_C(1000000);

    f->b->time_us[0] = limit;
    assert_int_equal(check(f), TC_REJECT_NONE);
    f->b->time_us[0] = limit + 1;
    assert_int_equal(check(f), TC_REJECT_TIMESTAMP_FUTURE);
    assert_non_null(strstr(f->detail, "future"));
    assert_non_null(strstr(f->detail, "300"));
    f->b->time_us[0] = INT64_C(4070908800000000); /* 2099-01-01 */
    assert_int_equal(check(f), TC_REJECT_TIMESTAMP_FUTURE);
    /* With max_future_s 0, now itself is fine and 1 us later is not. */
    f->cfg->limits.max_future_s = 0;
    f->b->time_us[0] = NOW_US;
    assert_int_equal(check(f), TC_REJECT_NONE);
    f->b->time_us[0] = NOW_US + 1;
    assert_int_equal(check(f), TC_REJECT_TIMESTAMP_FUTURE);
}

static void test_timestamp_too_old(void **state)
{
    fixture *f = *state;
    int64_t limit = NOW_US - 2592000 * INT64_C(1000000);

    f->b->time_us[0] = limit;
    assert_int_equal(check(f), TC_REJECT_NONE);
    f->b->time_us[0] = limit - 1;
    assert_int_equal(check(f), TC_REJECT_TIMESTAMP_TOO_OLD);
    assert_non_null(strstr(f->detail, "old"));
    assert_non_null(strstr(f->detail, "2592000"));
    f->b->time_us[0] = 0; /* 1970 */
    assert_int_equal(check(f), TC_REJECT_TIMESTAMP_TOO_OLD);
}

/* A bad timestamp is refused even when every metric is fine, and vice versa. */
static void test_timestamp_with_metrics(void **state)
{
    fixture *f = *state;

    for (int m = 0; m < TC_METRIC__COUNT; m++) {
        f->b->present[m][0] = 1;
        f->b->metric[m][0] = want_min[m];
    }
    f->b->time_us[0] = NOW_US + 301 * INT64_C(1000000);
    assert_int_equal(check(f), TC_REJECT_TIMESTAMP_FUTURE);
    f->b->time_us[0] = NOW_US - 2592001 * INT64_C(1000000);
    assert_int_equal(check(f), TC_REJECT_TIMESTAMP_TOO_OLD);
    f->b->time_us[0] = NOW_US;
    assert_int_equal(check(f), TC_REJECT_NONE);
}

/* The row argument selects the row; other rows are not looked at. */
static void test_row_index(void **state)
{
    fixture *f = *state;
    char detail[TC_REJECT_DETAIL_MAX];

    f->b->present[TC_M_TEMPERATURE][0] = 1;
    f->b->metric[TC_M_TEMPERATURE][0] = 1000; /* row 0 bad */
    tc_batch_row_commit(f->b);
    assert_int_equal(tc_batch_row_begin(f->b), TC_OK);
    f->b->time_us[1] = NOW_US;
    f->b->present[TC_M_TEMPERATURE][1] = 1;
    f->b->metric[TC_M_TEMPERATURE][1] = 20; /* row 1 good */
    assert_int_equal(tc_validate_row(f->b, 1, &f->cfg->limits, NOW_US, detail, sizeof(detail)),
                     TC_REJECT_NONE);
    assert_int_equal(tc_validate_row(f->b, 0, &f->cfg->limits, NOW_US, detail, sizeof(detail)),
                     TC_REJECT_OUT_OF_RANGE);
}

/* A short detail buffer is cut and NUL-terminated, never overrun. */
static void test_detail_truncated(void **state)
{
    fixture *f = *state;
    char buf[16];

    memset(buf, 'X', sizeof(buf));
    f->b->present[TC_M_LONGITUDE][0] = 1;
    f->b->metric[TC_M_LONGITUDE][0] = 181;
    assert_int_equal(tc_validate_row(f->b, 0, &f->cfg->limits, NOW_US, buf, 8),
                     TC_REJECT_OUT_OF_RANGE);
    assert_string_equal(buf, "longitu");
    for (size_t i = 8; i < sizeof(buf); i++)
        assert_int_equal(buf[i], 'X');
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_default_limits),
        T(test_no_metrics_ok),
        T(test_all_metrics_in_range),
        T(test_bounds_inclusive),
        T(test_just_outside),
        T(test_non_finite),
        T(test_absent_not_checked),
        T(test_detail_names_offender),
        T(test_detail_text),
        T(test_configured_limits),
        T(test_timestamp_future),
        T(test_timestamp_too_old),
        T(test_timestamp_with_metrics),
        T(test_row_index),
        T(test_detail_truncated),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
