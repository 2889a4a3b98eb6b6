/*
 * test_features.c -- feature definitions (parser, errors located) and the window accumulator.
 *
 * Expected figures are worked out by hand (or by the two-pass textbook formulas written here,
 * never with the accumulator's own update), and the numerics are checked where a naive formula
 * breaks: values near 1e9 varying in units (the sum of squares loses them), epoch-sized times
 * (the slope's t^2 would), and merge against feeding the same readings in one pass.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "features/defs.h"
#include "features/quality_src.h"
#include "features/window_agg.h"

#define US 1000000LL
/* 2026-12-05 00:00:00 UTC: epoch-sized times, as the lake's. */
#define DAY0_US (1796428800LL * US)

static void assert_close(double got, double want, double rel)
{
    double tol = rel * fmax(1.0, fabs(want));

    if (!(fabs(got - want) <= tol))
        fail_msg("got %.17g, want %.17g (tolerance %.3g)", got, want, tol);
}

static double finish(const tc_wagg *a, tc_feat_agg agg)
{
    double v;

    tc_wagg_finish(a, agg, &v);
    return v;
}

static void test_parse_every_aggregate(void **state)
{
    static const char text[] =
        "# the fleet's features\n"
        "temp_count_1h = count(temperature, 1h)\n"
        "temp_mean_1h=mean(temperature,1h); temp_std_1d = std( temperature , 1d )\n"
        "p_min_15m = min(pressure, 15m)\n"
        "p_max_1h = max(pressure, 1h)   # trailing comment\n"
        "b_last_1d = last(battery, 1d)\n"
        "t_slope_1h = slope(temperature, 1h)\n"
        "h_missing_1h = share_missing(humidity, 1h);\n"
        "cold_1h = out_of_range(temperature, 1h, min=-5, max=8.5)\n"
        "hot_1d = out_of_range(co2_ppm, 1d, max=1e3)\n"
        "t_found_1h = anomalies(temperature, 1h)\n"
        "late_1h = late( 1h ); ooo_1h = out_of_order(1h); dead_1d = dead_letters(1d)\n"
        "dup_1h = duplicates(1h); gaps_1h = gaps(1h); gmax_1d = gap_max_s(1d)\n"
        "p50_1h = delay_p50_ms(1h); p99_15m = delay_p99_ms(15m)\n";
    char errstr[TC_ERRSTR_MAX] = "";
    tc_feat_defs *d = malloc(sizeof(*d));

    (void)state;
    assert_non_null(d);
    assert_int_equal(tc_feat_defs_parse(text, d, errstr, sizeof(errstr)), TC_OK);
    assert_int_equal(d->n, 19);
    assert_string_equal(d->def[0].name, "temp_count_1h");
    assert_int_equal(d->def[0].agg, TC_FA_COUNT);
    assert_int_equal(d->def[0].window_s, 3600);
    assert_int_equal(d->def[0].line, 2);
    assert_int_equal(d->def[2].agg, TC_FA_STD);
    assert_int_equal(d->def[2].window_s, 86400);
    assert_string_equal(d->def[2].metric, "temperature");
    assert_int_equal(d->def[3].window_s, 900);
    assert_int_equal(d->def[7].agg, TC_FA_SHARE_MISSING);
    assert_int_equal(d->def[8].agg, TC_FA_OUT_OF_RANGE);
    assert_true(d->def[8].lo == -5 && d->def[8].hi == 8.5);
    assert_true(d->def[9].lo == -INFINITY && d->def[9].hi == 1000);
    assert_string_equal(d->def[9].metric, "co2_ppm");
    assert_true(d->def[0].lo == -INFINITY && d->def[0].hi == INFINITY);
    /* The quality monitor's: findings of a metric, figures of the device (no metric). */
    assert_int_equal(d->def[10].agg, TC_FA_ANOMALIES);
    assert_string_equal(d->def[10].metric, "temperature");
    assert_int_equal(d->def[11].agg, TC_FA_LATE);
    assert_string_equal(d->def[11].metric, "");
    assert_int_equal(d->def[11].window_s, 3600);
    assert_int_equal(d->def[12].agg, TC_FA_OUT_OF_ORDER);
    assert_int_equal(d->def[13].agg, TC_FA_DEAD_LETTERS);
    assert_int_equal(d->def[14].agg, TC_FA_DUPLICATES);
    assert_int_equal(d->def[15].agg, TC_FA_GAPS);
    assert_int_equal(d->def[16].agg, TC_FA_GAP_MAX_S);
    assert_int_equal(d->def[17].agg, TC_FA_DELAY_P50_MS);
    assert_int_equal(d->def[18].agg, TC_FA_DELAY_P99_MS);
    assert_int_equal(d->def[18].window_s, 900);
    for (size_t i = 0; i < d->n; i++)
        assert_int_equal(tc_feat_agg_from_quality(d->def[i].agg), i >= 10);
    assert_true(tc_feat_defs_need_quality(d));
    assert_ptr_equal(tc_feat_defs_find(d, "b_last_1d"), &d->def[5]);
    assert_null(tc_feat_defs_find(d, "nope"));
    assert_int_equal(tc_feat_defs_parse("m = mean(temperature, 1h)", d, errstr, sizeof(errstr)),
                     TC_OK);
    assert_false(tc_feat_defs_need_quality(d));
    assert_int_equal(tc_feat_defs_parse("", d, errstr, sizeof(errstr)), TC_OK);
    assert_int_equal(d->n, 0);
    assert_int_equal(tc_feat_defs_parse(NULL, d, errstr, sizeof(errstr)), TC_OK);
    free(d);
}

/* Each bad text is refused with the message naming its line and column. */
static void test_parse_errors_locate_the_input(void **state)
{
    static const struct {
        const char *text, *want;
    } cases[] = {
        {"a = median(temperature, 1h)", "features.definitions:1:5: unknown aggregate \"median\""},
        {"a = mean(temperature, 1h)\na = max(temperature, 1h)",
         "features.definitions:2:2: feature \"a\" is defined twice"},
        {"a = mean(temperature, 7m)", "features.definitions:1:23: window must divide a day"},
        {"a = mean(temperature, 2d)", "features.definitions:1:23: window must divide a day"},
        {"a = mean(temperature, 1w)", "features.definitions:1:23: expected a window unit"},
        {"a = mean(temperature, 1h, min=3)",
         "features.definitions:1:27: min= and max= belong to out_of_range, not to mean"},
        {"a = out_of_range(temperature, 1h)", "needs min= and/or max="},
        {"a = out_of_range(temperature, 1h, min=3, max=1)", "min is above max"},
        {"a = out_of_range(temperature, 1h, min=3, min=1)", "parameter \"min\" given twice"},
        {"a = out_of_range(temperature, 1h, min=nan)",
         "features.definitions:1:39: expected a finite"},
        /* The findings are the quality monitor's: no bounds of their own. */
        {"a = anomalies(temperature, 1h, max=3)",
         "features.definitions:1:32: min= and max= belong to out_of_range, not to anomalies"},
        /* A quality figure is the device's: no metric. */
        {"a = late(temperature, 1h)",
         "features.definitions:1:10: late is a figure of the device: late(WINDOW), no metric"},
        {"a = gaps(1h, max=3)", "min= and max= belong to out_of_range, not to gaps"},
        {"a = delay_p99_ms(7m)", "features.definitions:1:18: window must divide a day"},
        {"a = mean(temperature, 1h) b = max(x, 1h)", "features.definitions:1:27: expected ';'"},
        {"a-b = mean(temperature, 1h)", "features.definitions:1:2: expected '='"},
        {"a = mean(temperature 1h)", "features.definitions:1:22: expected ','"},
        {"a = mean(temperature, 1h", "features.definitions:1:25: expected ')'"},
        {"\n\n  = mean(temperature, 1h)", "features.definitions:3:3: expected a feature name"},
    };
    char errstr[TC_ERRSTR_MAX];
    tc_feat_defs *d = malloc(sizeof(*d));

    (void)state;
    assert_non_null(d);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        errstr[0] = '\0';
        d->n = 99;
        if (tc_feat_defs_parse(cases[i].text, d, errstr, sizeof(errstr)) != TC_ERR_CONFIG)
            fail_msg("accepted: %s", cases[i].text);
        assert_int_equal(d->n, 0);
        if (!strstr(errstr, cases[i].want))
            fail_msg("%s: got \"%s\", want \"%s\"", cases[i].text, errstr, cases[i].want);
    }
    free(d);
}

static void test_parse_caps(void **state)
{
    char errstr[TC_ERRSTR_MAX];
    tc_feat_defs *d = malloc(sizeof(*d));
    size_t cap = (TC_FEAT_DEFS_MAX + 2) * 40;
    char *text = malloc(cap), name[TC_FEAT_NAME_MAX + 40];
    size_t len = 0;

    (void)state;
    assert_non_null(d);
    assert_non_null(text);
    for (int i = 0; i <= TC_FEAT_DEFS_MAX; i++)
        len += (size_t)snprintf(text + len, cap - len, "f%d = mean(temperature, 1h)\n", i);
    assert_int_equal(tc_feat_defs_parse(text, d, errstr, sizeof(errstr)), TC_ERR_CONFIG);
    assert_non_null(strstr(errstr, "more than 128 definitions"));
    memset(name, 'x', TC_FEAT_NAME_MAX + 1);
    snprintf(name + TC_FEAT_NAME_MAX + 1, 32, " = mean(temperature, 1h)");
    assert_int_equal(tc_feat_defs_parse(name, d, errstr, sizeof(errstr)), TC_ERR_CONFIG);
    assert_non_null(strstr(errstr, "longer than 63 bytes"));
    name[TC_FEAT_NAME_MAX] = ' ';
    name[TC_FEAT_NAME_MAX + 1] = '\0';
    strcat(name, "= mean(temperature, 1h)");
    assert_int_equal(tc_feat_defs_parse(name, d, errstr, sizeof(errstr)), TC_OK);
    assert_int_equal(strlen(d->def[0].name), TC_FEAT_NAME_MAX);
    free(text);
    free(d);
}

static void test_window_names(void **state)
{
    char buf[16];

    (void)state;
    assert_int_equal(tc_feat_window_format(3600, buf, sizeof(buf)), 2);
    assert_string_equal(buf, "1h");
    tc_feat_window_format(86400, buf, sizeof(buf));
    assert_string_equal(buf, "1d");
    tc_feat_window_format(900, buf, sizeof(buf));
    assert_string_equal(buf, "15m");
    assert_int_equal(tc_feat_window_format(900, buf, 3), -1);
    assert_string_equal(tc_feat_agg_name(TC_FA_SHARE_MISSING), "share_missing");
    assert_int_equal(tc_feat_agg_parse("slope", 5), TC_FA_SLOPE);
    assert_int_equal(tc_feat_agg_parse("slopes", 6), -1);
}

static void test_window_start_floors(void **state)
{
    (void)state;
    assert_int_equal(tc_wagg_window_start(DAY0_US + 3599 * US, 3600), DAY0_US);
    assert_int_equal(tc_wagg_window_start(DAY0_US + 3600 * US, 3600), DAY0_US + 3600 * US);
    assert_int_equal(tc_wagg_window_start(DAY0_US + 86399 * US, 86400), DAY0_US);
    /* Before 1970: floor, not truncation towards zero. */
    assert_int_equal(tc_wagg_window_start(-1, 3600), -3600 * US);
    assert_int_equal(tc_wagg_window_start(-3600 * US, 3600), -3600 * US);
}

/* Values 1, 2, 3, 4 a minute apart and one reading without the value. */
static void test_every_aggregate_by_hand(void **state)
{
    tc_wagg a;
    double v;

    (void)state;
    tc_wagg_init(&a, DAY0_US, 1.5, 3.5);
    tc_wagg_update(&a, DAY0_US + 180 * US, 4, 1); /* out of order: last is still 4 */
    tc_wagg_update(&a, DAY0_US, 1, 1);
    tc_wagg_update(&a, DAY0_US + 60 * US, 2, 1);
    tc_wagg_update(&a, DAY0_US + 120 * US, 3, 1);
    tc_wagg_update(&a, DAY0_US + 200 * US, 0, 0);
    tc_wagg_update(&a, DAY0_US + 210 * US, NAN, 1); /* non-finite: missing */
    assert_close(finish(&a, TC_FA_COUNT), 4, 0);
    assert_close(finish(&a, TC_FA_MEAN), 2.5, 1e-15);
    assert_close(finish(&a, TC_FA_STD), sqrt(5.0 / 3.0), 1e-15);
    assert_close(finish(&a, TC_FA_MIN), 1, 0);
    assert_close(finish(&a, TC_FA_MAX), 4, 0);
    assert_close(finish(&a, TC_FA_LAST), 4, 0);
    assert_close(finish(&a, TC_FA_SLOPE), 1.0 / 60.0, 1e-15);
    assert_close(finish(&a, TC_FA_SHARE_MISSING), 2.0 / 6.0, 1e-15);
    assert_close(finish(&a, TC_FA_OUT_OF_RANGE), 2, 0); /* 1 < 1.5 and 4 > 3.5 */
    /* Undefined figures are NULL. */
    tc_wagg_init(&a, DAY0_US, -INFINITY, INFINITY);
    assert_int_equal(tc_wagg_finish(&a, TC_FA_SHARE_MISSING, &v), 0);
    assert_int_equal(tc_wagg_finish(&a, TC_FA_COUNT, &v), 1);
    tc_wagg_update(&a, DAY0_US + US, 7, 1);
    assert_int_equal(tc_wagg_finish(&a, TC_FA_STD, &v), 0);
    assert_true(isnan(v));
    assert_int_equal(tc_wagg_finish(&a, TC_FA_SLOPE, &v), 0);
    assert_int_equal(tc_wagg_finish(&a, TC_FA_MEAN, &v), 1);
    tc_wagg_update(&a, DAY0_US + US, 9, 1); /* same time: slope stays undefined, last is 9 */
    assert_int_equal(tc_wagg_finish(&a, TC_FA_SLOPE, &v), 0);
    assert_close(finish(&a, TC_FA_LAST), 9, 0);
    assert_close(finish(&a, TC_FA_STD), sqrt(2), 1e-15);
}

/* 1e9 + {4, 7, 13, 16}: variance 30 exactly; the sum of squares (~4e18) cannot hold it. */
static void test_std_is_stable_for_large_values(void **state)
{
    static const double d[] = {4, 7, 13, 16};
    tc_wagg a;

    (void)state;
    tc_wagg_init(&a, DAY0_US, -INFINITY, INFINITY);
    for (int i = 0; i < 4; i++)
        tc_wagg_update(&a, DAY0_US + i * 900 * US, 1e9 + d[i], 1);
    assert_close(finish(&a, TC_FA_STD), sqrt(30), 1e-9);
    assert_close(finish(&a, TC_FA_MEAN), 1e9 + 10, 1e-15);
}

/* A slope of 0.001 units/s over a day of readings at epoch times; two-pass reference. */
static void test_slope_matches_two_pass(void **state)
{
    enum { N = 1440 };
    static double t[N], x[N];
    double mt = 0, mx = 0, stt = 0, stx = 0;
    tc_wagg a;
    uint32_t seed = 12345;

    (void)state;
    tc_wagg_init(&a, DAY0_US, -INFINITY, INFINITY);
    for (int i = 0; i < N; i++) {
        seed = seed * 1664525u + 1013904223u;
        t[i] = i * 60.0 + 7;
        x[i] = 1013.25 + 0.001 * t[i] + ((double)(seed >> 8) / 16777216.0 - 0.5) * 0.01;
        tc_wagg_update(&a, DAY0_US + (int64_t)t[i] * US, x[i], 1);
        mt += t[i] / N;
        mx += x[i] / N;
    }
    for (int i = 0; i < N; i++) {
        stt += (t[i] - mt) * (t[i] - mt);
        stx += (t[i] - mt) * (x[i] - mx);
    }
    assert_close(finish(&a, TC_FA_SLOPE), stx / stt, 1e-9);
    assert_close(finish(&a, TC_FA_SLOPE), 0.001, 1e-3);
}

/* Merging two halves (any split) gives the figures of one pass over all, up to rounding. */
static void test_merge_equals_one_pass(void **state)
{
    enum { N = 500 };
    tc_wagg whole, left, right, empty;
    uint32_t seed = 99;

    (void)state;
    for (int split = 0; split <= N; split += 125) {
        tc_wagg_init(&whole, DAY0_US, 10, 20);
        tc_wagg_init(&left, DAY0_US, 10, 20);
        tc_wagg_init(&right, DAY0_US, 10, 20);
        for (int i = 0; i < N; i++) {
            int64_t tu = DAY0_US + (int64_t)((i * 7919) % 3600) * US;
            int present = i % 11 != 0;
            double x;

            seed = seed * 1664525u + 1013904223u;
            x = 15 + ((double)(seed >> 8) / 16777216.0 - 0.5) * 12;
            tc_wagg_update(&whole, tu, x, present);
            tc_wagg_update(i < split ? &left : &right, tu, x, present);
        }
        tc_wagg_merge(&left, &right);
        for (int g = 0; g < TC_FA__COUNT; g++) {
            double w, m;
            int dw = tc_wagg_finish(&whole, (tc_feat_agg)g, &w);

            assert_int_equal(tc_wagg_finish(&left, (tc_feat_agg)g, &m), dw);
            if (dw)
                assert_close(m, w, 1e-12);
        }
    }
    /* Merging an empty accumulator changes nothing; into an empty one copies. */
    tc_wagg_init(&empty, DAY0_US, 10, 20);
    tc_wagg_merge(&left, &empty);
    assert_close(finish(&left, TC_FA_STD), finish(&whole, TC_FA_STD), 1e-12);
    tc_wagg_merge(&empty, &whole);
    assert_close(finish(&empty, TC_FA_SLOPE), finish(&whole, TC_FA_SLOPE), 0);
    assert_int_equal(empty.rows, whole.rows);
}

static void test_merge_last_on_equal_times(void **state)
{
    tc_wagg a, b;

    (void)state;
    tc_wagg_init(&a, DAY0_US, -INFINITY, INFINITY);
    tc_wagg_init(&b, DAY0_US, -INFINITY, INFINITY);
    tc_wagg_update(&a, DAY0_US + 5 * US, 1, 1);
    tc_wagg_update(&b, DAY0_US + 5 * US, 2, 1);
    tc_wagg_merge(&a, &b);
    assert_close(finish(&a, TC_FA_LAST), 2, 0);
    tc_wagg_init(&b, DAY0_US, -INFINITY, INFINITY);
    tc_wagg_update(&b, DAY0_US + 4 * US, 3, 1);
    tc_wagg_merge(&a, &b);
    assert_close(finish(&a, TC_FA_LAST), 2, 0);
}

static void test_init_def(void **state)
{
    tc_feat_defs d;
    char errstr[TC_ERRSTR_MAX];
    tc_wagg a;

    (void)state;
    assert_int_equal(
        tc_feat_defs_parse("c = out_of_range(temperature, 1h, max=30)", &d, errstr, sizeof(errstr)),
        TC_OK);
    tc_wagg_init_def(&a, &d.def[0], DAY0_US + 5400 * US);
    assert_int_equal(a.start_us, DAY0_US + 3600 * US);
    tc_wagg_update(&a, DAY0_US + 5400 * US, 31, 1);
    tc_wagg_update(&a, DAY0_US + 5401 * US, 30, 1);
    assert_close(finish(&a, TC_FA_OUT_OF_RANGE), 1, 0);
    assert_int_equal(sizeof(tc_wagg), TC_WAGG_BYTES);
}

/* The quality features' statements and empty values: one per quality aggregate, none for the
 * readings' aggregates; the counts are 0 without a row of the tables, the rest undefined. */
static void test_quality_sources(void **state)
{
    char sql[TC_FQ_SQL_MAX];
    double v;

    (void)state;
    for (int g = 0; g < TC_FA__COUNT; g++) {
        int quality = tc_feat_agg_from_quality((tc_feat_agg)g);

        for (int horizon = 0; horizon < 2; horizon++) {
            int n = tc_fq_refresh_sql((tc_feat_agg)g, horizon, sql, sizeof(sql));

            if (!quality) {
                assert_int_equal(n, -1);
                continue;
            }
            assert_true(n > 0 && (size_t)n < sizeof(sql));
            /* anomalies reads the findings, the figures quality_1m; only changed rows are set. */
            assert_non_null(
                strstr(sql, g == TC_FA_ANOMALIES ? "@S.anomalies a" : "@S.quality_1m q"));
            assert_non_null(strstr(sql, "IS DISTINCT FROM"));
            assert_true(!horizon == !strstr(sql, "seconds'"));
        }
        if (quality && g != TC_FA_GAP_MAX_S && g != TC_FA_DELAY_P50_MS && g != TC_FA_DELAY_P99_MS)
            assert_true(tc_fq_empty((tc_feat_agg)g, &v) == 1 && v == 0);
        else if (quality)
            assert_true(tc_fq_empty((tc_feat_agg)g, &v) == 0 && isnan(v));
    }
    assert_int_equal(tc_fq_refresh_sql(TC_FA_LATE, 1, sql, 64), -1); /* too small: refused */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_every_aggregate),
        cmocka_unit_test(test_parse_errors_locate_the_input),
        cmocka_unit_test(test_parse_caps),
        cmocka_unit_test(test_window_names),
        cmocka_unit_test(test_window_start_floors),
        cmocka_unit_test(test_every_aggregate_by_hand),
        cmocka_unit_test(test_std_is_stable_for_large_values),
        cmocka_unit_test(test_slope_matches_two_pass),
        cmocka_unit_test(test_merge_equals_one_pass),
        cmocka_unit_test(test_merge_last_on_equal_times),
        cmocka_unit_test(test_init_def),
        cmocka_unit_test(test_quality_sources),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
