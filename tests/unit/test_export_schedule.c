/*
 * test_export_schedule.c -- cron schedules in a time zone (export/schedule.h) and the parser of
 * export.schedules (export/spec.h).
 *
 * Expected instants are written as UTC civil times worked out by hand from the zone's rules
 * (Europe/Paris: CET = UTC+1, CEST = UTC+2 from 2026-03-29 01:00Z to 2026-10-25 01:00Z), so the
 * test does not check libc against itself. The DST cases: a daily run at local midnight across
 * both transitions (23- and 25-hour periods), a run at 02:30, which does not exist on the spring
 * night and exists twice on the autumn one, and hourly runs through the repeated hour.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "core/timeutil.h"
#include "export/schedule.h"
#include "export/spec.h"

static int64_t utc(int y, unsigned mo, unsigned d, int h, int mi)
{
    return tc_time_days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60;
}

static tc_sched parse_ok(const char *expr, const char *tz)
{
    tc_sched s;
    char err[256];

    if (tc_sched_parse(expr, tz, &s, err, sizeof(err)) != TC_OK)
        fail_msg("refused \"%s\" in %s: %s", expr, tz ? tz : "UTC", err);
    return s;
}

static int64_t next_of(const tc_sched *s, int64_t after)
{
    int64_t t = 0;

    assert_int_equal(tc_sched_next(s, after, &t), TC_OK);
    return t;
}

static int64_t prev_of(const tc_sched *s, int64_t at)
{
    int64_t t = 0;

    assert_int_equal(tc_sched_prev(s, at, &t), TC_OK);
    return t;
}

static void test_names_in_utc(void **state)
{
    tc_sched d = parse_ok("daily", NULL), w = parse_ok("@weekly", ""),
             h = parse_ok("hourly", "UTC"), m = parse_ok("monthly", NULL);
    int64_t start = 0;

    (void)state;
    assert_int_equal(next_of(&d, utc(2026, 12, 5, 10, 0)), utc(2026, 12, 6, 0, 0));
    /* strictly after; prev includes the instant itself */
    assert_int_equal(next_of(&d, utc(2026, 12, 6, 0, 0)), utc(2026, 12, 7, 0, 0));
    assert_int_equal(prev_of(&d, utc(2026, 12, 6, 0, 0)), utc(2026, 12, 6, 0, 0));
    assert_int_equal(prev_of(&d, utc(2026, 12, 5, 23, 59)), utc(2026, 12, 5, 0, 0));
    assert_int_equal(tc_sched_period(&d, utc(2026, 12, 6, 0, 0), &start), TC_OK);
    assert_int_equal(start, utc(2026, 12, 5, 0, 0));
    /* weekly: Mondays (2026-12-05 is a Saturday) */
    assert_int_equal(next_of(&w, utc(2026, 12, 5, 10, 0)), utc(2026, 12, 7, 0, 0));
    assert_int_equal(prev_of(&w, utc(2026, 12, 5, 10, 0)), utc(2026, 11, 30, 0, 0));
    assert_int_equal(next_of(&h, utc(2026, 12, 5, 10, 0)), utc(2026, 12, 5, 11, 0));
    assert_int_equal(next_of(&m, utc(2026, 12, 5, 10, 0)), utc(2027, 1, 1, 0, 0));
    assert_int_equal(prev_of(&m, utc(2026, 3, 1, 0, 0)), utc(2026, 3, 1, 0, 0));
}

static void test_cron_fields(void **state)
{
    tc_sched s = parse_ok("*/15 9-17 * * 1-5", NULL), either = parse_ok("0 0 1 * 0", NULL),
             sun7 = parse_ok("0 12 * * 7", NULL), list = parse_ok("5,35 0-23/6 * 1,7 *", NULL),
             leap = parse_ok("0 0 29 2 *", NULL);

    (void)state;
    /* Friday 17:50 -> Monday 09:00 */
    assert_int_equal(next_of(&s, utc(2026, 12, 4, 17, 50)), utc(2026, 12, 7, 9, 0));
    assert_int_equal(next_of(&s, utc(2026, 12, 7, 9, 0)), utc(2026, 12, 7, 9, 15));
    /* both day fields restricted: the 1st of a month or a Sunday */
    assert_int_equal(next_of(&either, utc(2026, 12, 5, 12, 0)), utc(2026, 12, 6, 0, 0));
    assert_int_equal(next_of(&either, utc(2026, 12, 27, 0, 0)), utc(2027, 1, 1, 0, 0));
    assert_int_equal(next_of(&sun7, utc(2026, 12, 5, 12, 0)), utc(2026, 12, 6, 12, 0));
    assert_int_equal(next_of(&list, utc(2026, 12, 5, 12, 0)), utc(2027, 1, 1, 0, 5));
    assert_int_equal(next_of(&list, utc(2027, 1, 1, 0, 5)), utc(2027, 1, 1, 0, 35));
    assert_int_equal(next_of(&list, utc(2027, 1, 1, 0, 35)), utc(2027, 1, 1, 6, 5));
    assert_int_equal(next_of(&leap, utc(2026, 12, 5, 0, 0)), utc(2028, 2, 29, 0, 0));
    assert_int_equal(prev_of(&leap, utc(2026, 12, 5, 0, 0)), utc(2024, 2, 29, 0, 0));
}

static void test_daily_across_dst_in_paris(void **state)
{
    tc_sched d = parse_ok("daily", "Europe/Paris");
    int64_t start = 0;

    (void)state;
    /* local midnight: 23:00Z in winter, 22:00Z in summer */
    assert_int_equal(next_of(&d, utc(2026, 3, 28, 12, 0)), utc(2026, 3, 28, 23, 0));
    assert_int_equal(next_of(&d, utc(2026, 3, 28, 23, 0)), utc(2026, 3, 29, 22, 0));
    /* the spring day is 23 hours long, the autumn one 25 */
    assert_int_equal(tc_sched_period(&d, utc(2026, 3, 29, 22, 0), &start), TC_OK);
    assert_int_equal(start, utc(2026, 3, 28, 23, 0));
    assert_int_equal(tc_sched_period(&d, utc(2026, 10, 25, 23, 0), &start), TC_OK);
    assert_int_equal(start, utc(2026, 10, 24, 22, 0));
    assert_int_equal(next_of(&d, utc(2026, 10, 24, 22, 0)), utc(2026, 10, 25, 23, 0));
}

static void test_missing_and_repeated_wall_clock(void **state)
{
    tc_sched s = parse_ok("30 2 * * *", "Europe/Paris"), h = parse_ok("0 * * * *", "Europe/Paris");
    int64_t start = 0;

    (void)state;
    /* 2026-03-29 02:30 does not exist: no run that night; the period spans two days */
    assert_int_equal(next_of(&s, utc(2026, 3, 28, 1, 30)), utc(2026, 3, 30, 0, 30));
    assert_int_equal(tc_sched_period(&s, utc(2026, 3, 30, 0, 30), &start), TC_OK);
    assert_int_equal(start, utc(2026, 3, 28, 1, 30));
    /* 2026-10-25 02:30 happens twice (00:30Z CEST, 01:30Z CET): one run, the first */
    assert_int_equal(next_of(&s, utc(2026, 10, 24, 12, 0)), utc(2026, 10, 25, 0, 30));
    assert_int_equal(next_of(&s, utc(2026, 10, 25, 0, 30)), utc(2026, 10, 26, 1, 30));
    /* hourly through the repeated hour: 02:00 runs once, at 00:00Z; the next run is 03:00 CET */
    assert_int_equal(next_of(&h, utc(2026, 10, 24, 23, 30)), utc(2026, 10, 25, 0, 0));
    assert_int_equal(next_of(&h, utc(2026, 10, 25, 0, 0)), utc(2026, 10, 25, 2, 0));
    /* and through the missing one: 01:00 CET (00:00Z), then 03:00 CEST (01:00Z) */
    assert_int_equal(next_of(&h, utc(2026, 3, 29, 0, 0)), utc(2026, 3, 29, 1, 0));
    /* the caller's TZ is left as it was */
    assert_null(getenv("TZ"));
}

static void test_refusals(void **state)
{
    static const char *const bad[] = {
        "",           "* * * *",      "* * * * * *",  "60 * * * *",  "* 24 * * *",  "* * 0 * *",
        "* * * 13 *", "* * * * 8",    "a * * * *",    "*/0 * * * *", "5-1 * * * *", "1- * * * *",
        "@yearly",    "1,,2 * * * *", "0001 * * * *", "daily x",     "-1 * * * *",  "*/ * * * *",
    };
    tc_sched s;
    char err[256];
    int64_t t;

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        if (tc_sched_parse(bad[i], NULL, &s, err, sizeof(err)) != TC_ERR_INVALID)
            fail_msg("accepted \"%s\"", bad[i]);
        assert_non_null(strstr(err, "schedule"));
    }
    assert_int_equal(tc_sched_parse("daily", "Mars/Base", &s, err, sizeof(err)), TC_ERR_INVALID);
    assert_non_null(strstr(err, "Mars/Base"));
    assert_int_equal(tc_sched_parse("daily", "../../etc/passwd", &s, err, sizeof(err)),
                     TC_ERR_INVALID);
    assert_int_equal(tc_sched_parse("daily", "/etc/localtime", &s, err, sizeof(err)),
                     TC_ERR_INVALID);
    /* parses, but never runs */
    s = parse_ok("0 0 30 2 *", NULL);
    assert_int_equal(tc_sched_next(&s, utc(2026, 1, 1, 0, 0), &t), TC_ERR_INVALID);
}

static void test_specs(void **state)
{
    tc_export_spec specs[4];
    size_t n = 0;
    char err[512];

    (void)state;
    assert_int_equal(
        tc_export_specs_parse(" name=a schedule=daily tz=Europe/Paris format=csv compress=gzip "
                              "profile=public out=/x/a tags=site=paris-2,fw=1.0.0 ;\n"
                              "name=b schedule=\"0 6 * * 1\" format=parquet metrics=temperature "
                              "devices=sensor-0* lookback=3 out=\"/x/with space\";",
                              specs, 4, &n, err, sizeof(err)),
        TC_OK);
    assert_int_equal(n, 2);
    assert_string_equal(specs[0].name, "a");
    assert_int_equal(specs[0].format, TC_EXPORT_CSV);
    assert_int_equal(specs[0].compress, TC_EXPORT_GZIP);
    assert_string_equal(specs[0].profile, "public");
    assert_string_equal(specs[0].schedule.tz, "Europe/Paris");
    assert_int_equal(specs[0].ntags, 2);
    assert_string_equal(specs[0].tag_key[1], "fw");
    assert_string_equal(specs[0].tag_value[1], "1.0.0");
    assert_int_equal(specs[0].lookback, TC_EXPORT_LOOKBACK_DEFAULT);
    assert_string_equal(specs[1].schedule_text, "0 6 * * 1");
    assert_string_equal(specs[1].out, "/x/with space");
    assert_int_equal(specs[1].lookback, 3);
    assert_string_equal(specs[1].devices, "sensor-0*");

    static const char *const bad[] = {
        "name=a schedule=daily format=csv",                          /* no out */
        "name=a schedule=daily format=xml out=/x",                   /* format */
        "name=a schedule=daily format=parquet compress=gzip out=/x", /* gzip parquet */
        "name=a schedule=daily format=csv out=/x color=red",         /* unknown key */
        "name=a name=b schedule=daily format=csv out=/x",            /* twice */
        "name=a schedule=daily format=csv out=/x; name=a schedule=daily format=csv out=/y",
        "name=a/b schedule=daily format=csv out=/x",               /* name chars */
        "name=a schedule=\"0 6 * * 1 format=csv out=/x",           /* open quote */
        "name=a schedule=daily format=csv out=/x lookback=0",      /* lookback */
        "name=a schedule=daily tz=Nowhere/City format=csv out=/x", /* zone */
        "name=a schedule=\"61 * * * *\" format=csv out=/x",        /* schedule */
        "name=a schedule=daily format=csv out=/x profile=secret",  /* profile */
        "name=a schedule=daily format=csv out=/x tags=site",       /* tags */
        "name=a schedule",                                         /* no '=' */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        if (tc_export_specs_parse(bad[i], specs, 4, &n, err, sizeof(err)) != TC_ERR_CONFIG)
            fail_msg("accepted \"%s\"", bad[i]);
        assert_non_null(strstr(err, "export.schedules"));
    }
    assert_int_equal(tc_export_specs_parse("name=a schedule=daily format=csv out=/1;"
                                           "name=b schedule=daily format=csv out=/2",
                                           specs, 1, &n, err, sizeof(err)),
                     TC_ERR_CONFIG);
    assert_int_equal(tc_export_specs_parse("name=a schedule=daily format=csv out=/1;"
                                           "name=b schedule=weekly format=csv out=/1",
                                           specs, 4, &n, err, sizeof(err)),
                     TC_ERR_CONFIG);
    assert_non_null(strstr(err, "same out"));
    assert_int_equal(tc_export_specs_parse("  ;; ", specs, 4, &n, err, sizeof(err)), TC_OK);
    assert_int_equal(n, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names_in_utc),
        cmocka_unit_test(test_cron_fields),
        cmocka_unit_test(test_daily_across_dst_in_paris),
        cmocka_unit_test(test_missing_and_repeated_wall_clock),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_specs),
    };
    unsetenv("TZ");
    return cmocka_run_group_tests(tests, NULL, NULL);
}
