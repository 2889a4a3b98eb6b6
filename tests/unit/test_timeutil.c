/*
 * test_timeutil.c -- RFC 3339 parsing/formatting and the civil-date algorithms.
 *
 * The calendar is checked against independent facts (known day numbers, every day of 1900..2100
 * walked one by one with a naive month table) rather than against itself, and the parser against
 * hand-computed instants for each grammar variant, then round-tripped through the formatter over
 * random instants of years 0000..9999.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "core/timeutil.h"

/* 2026-11-28T12:00:00Z in seconds since the epoch (20785 days * 86400 + 12 h), computed by hand. */
#define T_20261128_NOON INT64_C(1795867200)

static int64_t parse_ok(const char *s)
{
    int64_t us = INT64_MIN;

    if (tc_time_parse_rfc3339(s, strlen(s), &us) != TC_OK)
        fail_msg("rejected valid timestamp \"%s\"", s);
    return us;
}

static void parse_bad(const char *s)
{
    int64_t us = 42;

    if (tc_time_parse_rfc3339(s, strlen(s), &us) != TC_ERR_INVALID)
        fail_msg("accepted invalid timestamp \"%s\"", s);
    assert_int_equal(us, 42); /* untouched on failure */
}

static void test_days_known(void **state)
{
    (void)state;
    assert_int_equal(tc_time_days_from_civil(1970, 1, 1), 0);
    assert_int_equal(tc_time_days_from_civil(1969, 12, 31), -1);
    assert_int_equal(tc_time_days_from_civil(2000, 3, 1), 11017);
    assert_int_equal(tc_time_days_from_civil(2026, 11, 28), 20785);
    assert_int_equal(tc_time_days_from_civil(1, 1, 1), -719162);
    assert_int_equal(tc_time_days_from_civil(0, 1, 1), -719528);
    assert_int_equal(tc_time_days_from_civil(9999, 12, 31), 2932896);
    assert_int_equal(tc_time_days_from_civil(-1, 12, 31), -719529);
}

/* Walk every day of 1900..2100 with a naive calendar and compare both directions. */
static void test_days_walk(void **state)
{
    static const unsigned dim[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int64_t days = tc_time_days_from_civil(1900, 1, 1);

    (void)state;
    assert_int_equal(days, -25567);
    for (int y = 1900; y <= 2100; y++) {
        int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;

        for (unsigned m = 1; m <= 12; m++) {
            unsigned n = dim[m - 1] + (m == 2 && leap);

            for (unsigned d = 1; d <= n; d++, days++) {
                int yy;
                unsigned mm, dd;

                assert_int_equal(tc_time_days_from_civil(y, m, d), days);
                tc_time_civil_from_days(days, &yy, &mm, &dd);
                assert_int_equal(yy, y);
                assert_int_equal(mm, m);
                assert_int_equal(dd, d);
            }
        }
    }
}

/* Round trip over a wide range, including negative years and era boundaries. */
static void test_days_roundtrip(void **state)
{
    (void)state;
    for (int64_t days = -3000000; days <= 3000000; days += 7) {
        int y;
        unsigned m, d;

        tc_time_civil_from_days(days, &y, &m, &d);
        assert_true(m >= 1 && m <= 12 && d >= 1 && d <= 31);
        assert_int_equal(tc_time_days_from_civil(y, m, d), days);
    }
}

static void test_parse_variants(void **state)
{
    const int64_t noon = T_20261128_NOON * 1000000;

    (void)state;
    assert_int_equal(parse_ok("2026-11-28T12:00:00Z"), noon);
    assert_int_equal(parse_ok("2026-11-28t12:00:00z"), noon);
    assert_int_equal(parse_ok("2026-11-28 12:00:00Z"), noon);
    assert_int_equal(parse_ok("2026-11-28T17:30:00+05:30"), noon);
    assert_int_equal(parse_ok("2026-11-28T04:00:00-08:00"), noon);
    assert_int_equal(parse_ok("2026-11-28T12:00:00+00:00"), noon);
    assert_int_equal(parse_ok("2026-11-28T12:00:00-00:00"), noon);
    assert_int_equal(parse_ok("2026-11-29T11:59:00+23:59"), noon);
    assert_int_equal(parse_ok("2026-11-27T12:01:00-23:59"), noon);
    /* Offsets crossing a day and a year boundary. */
    assert_int_equal(parse_ok("2027-01-01T01:00:00+02:00"),
                     (tc_time_days_from_civil(2026, 12, 31) * 86400 + 23 * 3600) * 1000000);
    assert_int_equal(parse_ok("1970-01-01T00:00:00Z"), 0);
    assert_int_equal(parse_ok("1969-12-31T23:59:59.999999Z"), -1);
}

static void test_parse_fractions(void **state)
{
    const int64_t noon = T_20261128_NOON * 1000000;

    (void)state;
    assert_int_equal(parse_ok("2026-11-28T12:00:00.1Z"), noon + 100000);
    assert_int_equal(parse_ok("2026-11-28T12:00:00.12Z"), noon + 120000);
    assert_int_equal(parse_ok("2026-11-28T12:00:00.123Z"), noon + 123000);
    assert_int_equal(parse_ok("2026-11-28T12:00:00.1234Z"), noon + 123400);
    assert_int_equal(parse_ok("2026-11-28T12:00:00.12345Z"), noon + 123450);
    assert_int_equal(parse_ok("2026-11-28T12:00:00.123456Z"), noon + 123456);
    /* 7..9 digits are truncated, not rounded. */
    assert_int_equal(parse_ok("2026-11-28T12:00:00.1234567Z"), noon + 123456);
    assert_int_equal(parse_ok("2026-11-28T12:00:00.12345678Z"), noon + 123456);
    assert_int_equal(parse_ok("2026-11-28T12:00:00.123456999Z"), noon + 123456);
    assert_int_equal(parse_ok("2026-11-28T12:00:00.000000Z"), noon);
    assert_int_equal(parse_ok("2026-11-28T12:00:00.5+01:00"), noon - 3600000000LL + 500000);
    /* Before the epoch the fraction still adds (it is part of the local wall time). */
    assert_int_equal(parse_ok("1969-12-31T23:59:59.5Z"), -500000);
}

static void test_parse_calendar(void **state)
{
    (void)state;
    /* Feb 29 exists in leap years only; 1900 is not one, 2000 is. */
    parse_ok("2024-02-29T00:00:00Z");
    parse_ok("2000-02-29T00:00:00Z");
    parse_ok("0000-02-29T00:00:00Z");
    parse_bad("2026-02-29T00:00:00Z");
    parse_bad("1900-02-29T00:00:00Z");
    parse_bad("2100-02-29T00:00:00Z");
    parse_bad("2026-02-30T00:00:00Z");
    parse_bad("2026-04-31T00:00:00Z");
    parse_bad("2026-11-31T00:00:00Z");
    parse_ok("2026-12-31T23:59:59Z");
    parse_bad("2026-13-01T00:00:00Z");
    parse_bad("2026-00-01T00:00:00Z");
    parse_bad("2026-01-00T00:00:00Z");
    parse_bad("2026-01-32T00:00:00Z");
    /* Whole year range. */
    assert_int_equal(parse_ok("0000-01-01T00:00:00Z"), INT64_C(-62167219200) * 1000000);
    assert_int_equal(parse_ok("0001-01-01T00:00:00Z"), INT64_C(-62135596800) * 1000000);
    assert_int_equal(parse_ok("9999-12-31T23:59:59.999999Z"), INT64_C(253402300799999999));
}

static void test_parse_clock(void **state)
{
    (void)state;
    parse_ok("2026-11-28T23:59:59Z");
    parse_bad("2026-11-28T24:00:00Z");
    parse_bad("2026-11-28T23:60:00Z");
    parse_bad("2026-11-28T23:59:61Z");
    parse_bad("2026-11-28T12:00:00+24:00");
    parse_bad("2026-11-28T12:00:00+05:60");
    /* Leap second: like PostgreSQL, :60 rolls into the next minute. */
    assert_int_equal(parse_ok("2016-12-31T23:59:60Z"), parse_ok("2017-01-01T00:00:00Z"));
    assert_int_equal(parse_ok("2016-12-31T23:59:60.5Z"), parse_ok("2017-01-01T00:00:00.5Z"));
    assert_int_equal(parse_ok("2026-11-28T12:30:60+01:00"), parse_ok("2026-11-28T11:31:00Z"));
}

static void test_parse_syntax(void **state)
{
    static const char *const bad[] = {
        "",
        "2026",
        "2026-11-28",
        "2026-11-28T12:00:00",             /* no offset */
        "2026-11-28T12:00Z",               /* no seconds */
        "2026-11-28T12:00:00.Z",           /* empty fraction */
        "2026-11-28T12:00:00.1234567890Z", /* 10 fraction digits */
        "2026-11-28T12:00:00,5Z",          /* comma fraction */
        "2026-11-28X12:00:00Z",
        "2026-11-28T12:00:00ZZ",
        "2026-11-28T12:00:00Z ",
        " 2026-11-28T12:00:00Z",
        "2026-11-28T12:00:00+0530",
        "2026-11-28T12:00:00+05",
        "2026-11-28T12:00:00+05:30:00",
        "2026-11-28T12:00:00+5:30",
        "2026-11-28T12:00:00UTC",
        "26-11-28T12:00:00Z",
        "+2026-11-28T12:00:00Z",
        "2026/11/28T12:00:00Z",
        "2026-1-28T12:00:00Z",
        "2026-11-28T1:00:00Z",
        "2026-11-28T12:0a:00Z",
        "2026-11-28T12:00:00.12a4Z",
        "2026-11-28T12:00:00.-1Z",
        "-026-11-28T12:00:00Z",
        "2026-11-28T12:00:00.123",
    };

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        parse_bad(bad[i]);
}

/* The parser honours len: bytes beyond it are never read, and a prefix is not a timestamp. */
static void test_parse_len(void **state)
{
    const char *s = "2026-11-28T12:00:00.123Z";
    size_t n = strlen(s);
    int64_t us;

    (void)state;
    for (size_t k = 0; k < n; k++) {
        char *copy = malloc(k ? k : 1);

        assert_non_null(copy);
        memcpy(copy, s, k);
        assert_int_equal(tc_time_parse_rfc3339(copy, k, &us), TC_ERR_INVALID);
        free(copy);
    }
    /* A longer buffer with len cut at a valid end: "...00Z" inside "...00Zjunk". */
    assert_int_equal(tc_time_parse_rfc3339("2026-11-28T12:00:00Zjunk", 20, &us), TC_OK);
    assert_int_equal(us, T_20261128_NOON * 1000000);
}

static void test_format(void **state)
{
    char buf[TC_TIME_RFC3339_MAX];

    (void)state;
    assert_int_equal(tc_time_format_rfc3339(0, buf, sizeof(buf)), 27);
    assert_string_equal(buf, "1970-01-01T00:00:00.000000Z");
    tc_time_format_rfc3339(-1, buf, sizeof(buf));
    assert_string_equal(buf, "1969-12-31T23:59:59.999999Z");
    tc_time_format_rfc3339(T_20261128_NOON * 1000000 + 123456, buf, sizeof(buf));
    assert_string_equal(buf, "2026-11-28T12:00:00.123456Z");
    tc_time_format_rfc3339(INT64_C(-62135596800) * 1000000, buf, sizeof(buf));
    assert_string_equal(buf, "0001-01-01T00:00:00.000000Z");
    tc_time_format_rfc3339(INT64_C(253402300799999999), buf, sizeof(buf));
    assert_string_equal(buf, "9999-12-31T23:59:59.999999Z");
    tc_time_format_rfc3339(INT64_C(253402300800000000), buf, sizeof(buf));
    assert_string_equal(buf, "+10000-01-01T00:00:00.000000Z");
    tc_time_format_rfc3339(INT64_C(-62167219200) * 1000000 - 1, buf, sizeof(buf));
    assert_string_equal(buf, "-0001-12-31T23:59:59.999999Z");
    /* Extremes of int64 do not overflow and fit the documented cap. */
    assert_int_equal(tc_time_format_rfc3339(INT64_MIN, buf, sizeof(buf)), 30);
    assert_string_equal(buf, "-290308-12-21T19:59:05.224192Z");
    assert_int_equal(tc_time_format_rfc3339(INT64_MAX, buf, sizeof(buf)), 30);
    assert_string_equal(buf, "+294247-01-10T04:00:54.775807Z");
}

static void test_format_small_buffer(void **state)
{
    char buf[28];

    (void)state;
    memset(buf, 'x', sizeof(buf));
    assert_int_equal(tc_time_format_rfc3339(0, buf, 27), 0); /* needs 28 with the NUL */
    assert_string_equal(buf, "");
    assert_int_equal(tc_time_format_rfc3339(0, buf, 0), 0);
    assert_int_equal(tc_time_format_rfc3339(0, buf, 28), 27);
}

/* Format then parse gives the same instant, for random instants across years 0000..9999. */
static void test_roundtrip_random(void **state)
{
    const int64_t lo = INT64_C(-62167219200) * 1000000, hi = INT64_C(253402300799999999);
    uint64_t x = 0x9E3779B97F4A7C15u;
    char buf[TC_TIME_RFC3339_MAX];

    (void)state;
    for (int i = 0; i < 200000; i++) {
        int64_t us, back = 0;
        size_t n;

        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        us = lo + (int64_t)(x % (uint64_t)(hi - lo + 1));
        n = tc_time_format_rfc3339(us, buf, sizeof(buf));
        assert_int_equal(n, 27);
        assert_int_equal(tc_time_parse_rfc3339(buf, n, &back), TC_OK);
        assert_int_equal(back, us);
    }
}

/* Parse agrees with the C library's UTC conversion where that is available and unambiguous. */
static void test_parse_vs_gmtime(void **state)
{
    (void)state;
    for (time_t t = -2208988800; t < 4102444800; t += 86400 * 37 + 3661) {
        struct tm tm;
        char s[64];

        assert_non_null(gmtime_r(&t, &tm));
        strftime(s, sizeof(s), "%Y-%m-%dT%H:%M:%SZ", &tm);
        assert_int_equal(parse_ok(s), (int64_t)t * 1000000);
    }
}

static void test_now(void **state)
{
    int64_t now = tc_time_now_us();
    int64_t t = (int64_t)time(NULL) * 1000000;

    (void)state;
    assert_true(now > INT64_C(1704067200) * 1000000); /* after 2024-01-01 */
    assert_true(now - t < 2000000 && t - now < 2000000);
}

static void test_deadline(void **state)
{
    int64_t before = tc_time_now_us();
    struct timespec d = tc_time_deadline(1999); /* carries into the seconds */
    int64_t at = (int64_t)d.tv_sec * 1000000 + d.tv_nsec / 1000;

    (void)state;
    assert_true(d.tv_nsec >= 0 && d.tv_nsec < 1000000000L);
    assert_true(at >= before + 1999000);
    assert_true(at < tc_time_now_us() + 1999000 + 1000);
}

static void test_day_of(void **state)
{
    (void)state;
    assert_int_equal(tc_time_day_of(0), 0);
    assert_int_equal(tc_time_day_of(TC_USEC_PER_DAY - 1), 0);
    assert_int_equal(tc_time_day_of(TC_USEC_PER_DAY), 1);
    /* Floor, not truncation, before the epoch: 1969-12-31T23:59:59.999999Z is day -1. */
    assert_int_equal(tc_time_day_of(-1), -1);
    assert_int_equal(tc_time_day_of(-TC_USEC_PER_DAY), -1);
    assert_int_equal(tc_time_day_of(-TC_USEC_PER_DAY - 1), -2);
    assert_int_equal(tc_time_day_of(tc_time_days_from_civil(2026, 11, 28) * TC_USEC_PER_DAY + 5),
                     tc_time_days_from_civil(2026, 11, 28));
}

/* The thread's CPU clock: it moves with work done on this thread, not with time spent waiting,
 * and a reading after `since` never goes below it. */
static void test_thread_cpu(void **state)
{
    uint64_t t0, busy, idle;
    volatile double x = 1.0;

    (void)state;
    t0 = tc_time_thread_cpu_ns();
    assert_true(t0 > 0);
    for (long i = 0; i < 20000000; i++)
        x = x * 1.0000001 + 1e-9;
    busy = tc_time_thread_cpu_since(t0);
    assert_true(busy > 1000000); /* twenty million dependent steps: well over a millisecond */
    t0 = tc_time_thread_cpu_ns();
    tc_time_sleep_ms(200);
    idle = tc_time_thread_cpu_since(t0);
    assert_true(idle < 50000000); /* 200 ms asleep: not 50 ms of CPU */
    assert_int_equal(tc_time_thread_cpu_since(UINT64_MAX), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_days_known),
        cmocka_unit_test(test_days_walk),
        cmocka_unit_test(test_days_roundtrip),
        cmocka_unit_test(test_parse_variants),
        cmocka_unit_test(test_parse_fractions),
        cmocka_unit_test(test_parse_calendar),
        cmocka_unit_test(test_parse_clock),
        cmocka_unit_test(test_parse_syntax),
        cmocka_unit_test(test_parse_len),
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_thread_cpu),
        cmocka_unit_test(test_format_small_buffer),
        cmocka_unit_test(test_roundtrip_random),
        cmocka_unit_test(test_parse_vs_gmtime),
        cmocka_unit_test(test_now),
        cmocka_unit_test(test_deadline),
        cmocka_unit_test(test_day_of),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
