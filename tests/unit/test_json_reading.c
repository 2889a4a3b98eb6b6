/*
 * test_json_reading.c -- the JSON reading decoder.
 *
 * Every decode runs on a malloc'd copy of exactly len bytes that is freed right after the call, so
 * under ASan an over-read past len, or a slice left pointing into the message instead of the arena,
 * is caught as a heap error rather than passing by luck. Every rejection's detail is checked to be
 * non-empty printable ASCII, because details travel to logs and to a text column.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "core/batch.h"
#include "core/reject.h"
#include "core/timeutil.h"
#include "schema/json_reading.h"

/* Rows of the shared test batch; tests decode into row 0 after a reset unless they say otherwise.
 */
#define T_ROWS 16

/* Space for readings assembled by with(). */
#define T_MSG_MAX 8192

#define T_SAMPLE                                                                                   \
    "{\"device_id\":\"sensor-0042\",\"timestamp\":\"2026-11-28T12:00:00.123Z\","                   \
    "\"temperature\":21.5,\"humidity\":40.2,\"pressure\":1013.2,\"battery\":87,"                   \
    "\"latitude\":52.52,\"longitude\":13.405,\"tags\":{\"site\":\"berlin-1\"}}"

/* 2026-11-28T12:00:00.123Z in microseconds. */
#define T_SAMPLE_US INT64_C(1795867200123000)

static tc_batch *B;
static char D[TC_REJECT_DETAIL_MAX];

static int setup(void **state)
{
    (void)state;
    B = tc_batch_new(T_ROWS, 0);
    return B ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    tc_batch_destroy(B);
    return 0;
}

static void check_detail(tc_reject r)
{
    if (r == TC_REJECT_NONE)
        return;
    if (D[0] == '\0')
        fail_msg("rejection %s without a detail", tc_reject_name(r));
    for (const char *p = D; *p; p++) {
        if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
            fail_msg("detail has non-printable byte 0x%02x: %s", (unsigned char)*p, D);
    }
}

/* Decode s[0..n) into row b->n of b, from an exact-size heap copy freed before returning. */
static tc_reject decode_into(tc_batch *b, const char *s, size_t n)
{
    char *copy = malloc(n ? n : 1);
    tc_reject r;

    assert_non_null(copy);
    if (n)
        memcpy(copy, s, n);
    memset(D, 'X', sizeof(D)); /* the decoder must always leave a NUL-terminated detail */
    r = tc_json_reading_decode(b, copy, n, D, sizeof(D));
    free(copy);
    assert_non_null(memchr(D, '\0', sizeof(D)));
    check_detail(r);
    return r;
}

static tc_reject decode_n(const char *s, size_t n)
{
    tc_batch_reset(B);
    assert_int_equal(tc_batch_row_begin(B), TC_OK);
    return decode_into(B, s, n);
}

static tc_reject decode(const char *s)
{
    return decode_n(s, strlen(s));
}

static void expect_n(tc_reject want, const char *s, size_t n)
{
    tc_reject got = decode_n(s, n);

    if (got != want)
        fail_msg("%.*s\n  expected %s, got %s (%s)", (int)(n > 300 ? 300 : n), s,
                 tc_reject_name(want), tc_reject_name(got), D);
}

static void expect(tc_reject want, const char *s)
{
    expect_n(want, s, strlen(s));
}

/* A minimal valid reading with extra members appended: {"device_id":"d","timestamp":0,<members>}.
 */
static const char *with(const char *members)
{
    static char msg[T_MSG_MAX];
    int n = snprintf(msg, sizeof(msg), "{\"device_id\":\"d\",\"timestamp\":0%s%s}",
                     *members ? "," : "", members);

    assert_true(n > 0 && (size_t)n < sizeof(msg));
    return msg;
}

static void assert_slice(tc_slice s, const char *want)
{
    if (want == NULL) {
        assert_null(s.ptr);
        return;
    }
    assert_non_null(s.ptr);
    if (s.len != strlen(want) || memcmp(s.ptr, want, s.len) != 0)
        fail_msg("slice \"%.*s\" != \"%s\"", (int)s.len, s.ptr, want);
    assert_int_equal(s.ptr[s.len], '\0'); /* arena copies are NUL-terminated */
}

/* ---- whole readings ---- */

static void test_sample_reading(void **state)
{
    (void)state;
    assert_int_equal(decode(T_SAMPLE), TC_REJECT_NONE);
    assert_string_equal(D, "");
    assert_slice(B->device_id[0], "sensor-0042");
    assert_int_equal(B->time_us[0], T_SAMPLE_US);
    assert_true(B->metric[TC_M_TEMPERATURE][0] == 21.5);
    assert_true(B->metric[TC_M_HUMIDITY][0] == 40.2);
    assert_true(B->metric[TC_M_PRESSURE][0] == 1013.2);
    assert_true(B->metric[TC_M_BATTERY][0] == 87.0);
    assert_true(B->metric[TC_M_LATITUDE][0] == 52.52);
    assert_true(B->metric[TC_M_LONGITUDE][0] == 13.405);
    for (int m = 0; m < TC_METRIC__COUNT; m++)
        assert_int_equal(B->present[m][0], 1);
    assert_slice(B->tags[0], "{\"site\":\"berlin-1\"}");
    assert_slice(B->extra[0], NULL);
    assert_int_equal(B->n, 0); /* not committed */
}

/* Each metric name lands in its own column (the decoder's lookup agrees with tc_metric_names). */
static void test_metric_columns(void **state)
{
    char members[128];

    (void)state;
    for (int m = 0; m < TC_METRIC__COUNT; m++) {
        snprintf(members, sizeof(members), "\"%s\":%d.25", tc_metric_names[m], m + 1);
        assert_int_equal(decode(with(members)), TC_REJECT_NONE);
        assert_int_equal(tc_metric_lookup(tc_metric_names[m], strlen(tc_metric_names[m])), m);
        for (int k = 0; k < TC_METRIC__COUNT; k++) {
            assert_int_equal(B->present[k][0], k == m);
            if (k == m)
                assert_true(B->metric[k][0] == m + 1.25);
        }
        assert_slice(B->extra[0], NULL);
    }
}

static void test_null_and_absent_metrics(void **state)
{
    (void)state;
    assert_int_equal(decode(with("\"temperature\":null,\"humidity\":null,\"pressure\":1")),
                     TC_REJECT_NONE);
    assert_int_equal(B->present[TC_M_TEMPERATURE][0], 0);
    assert_int_equal(B->present[TC_M_HUMIDITY][0], 0);
    assert_int_equal(B->present[TC_M_PRESSURE][0], 1);
    assert_int_equal(B->present[TC_M_BATTERY][0], 0);
    assert_int_equal(decode(with("")), TC_REJECT_NONE);
    for (int m = 0; m < TC_METRIC__COUNT; m++)
        assert_int_equal(B->present[m][0], 0);
    assert_slice(B->tags[0], NULL);
    assert_slice(B->extra[0], NULL);
}

static void test_metric_values(void **state)
{
    (void)state;
    assert_int_equal(decode(with("\"battery\":87")), TC_REJECT_NONE);
    assert_true(B->metric[TC_M_BATTERY][0] == 87.0);
    assert_int_equal(decode(with("\"battery\":0")), TC_REJECT_NONE);
    assert_true(B->metric[TC_M_BATTERY][0] == 0.0);
    assert_int_equal(decode(with("\"temperature\":-0")), TC_REJECT_NONE);
    assert_true(B->metric[TC_M_TEMPERATURE][0] == 0.0 && signbit(B->metric[TC_M_TEMPERATURE][0]));
    assert_int_equal(decode(with("\"temperature\":-40.125")), TC_REJECT_NONE);
    assert_true(B->metric[TC_M_TEMPERATURE][0] == -40.125);
    assert_int_equal(decode(with("\"pressure\":1.0132E3")), TC_REJECT_NONE);
    assert_true(B->metric[TC_M_PRESSURE][0] == 1013.2);
    assert_int_equal(decode(with("\"pressure\":101320e-2")), TC_REJECT_NONE);
    assert_true(B->metric[TC_M_PRESSURE][0] == 1013.2);
    assert_int_equal(decode(with("\"latitude\":1e-400")), TC_REJECT_NONE); /* underflow is fine */
    assert_true(B->metric[TC_M_LATITUDE][0] == 0.0 && B->present[TC_M_LATITUDE][0] == 1);
    assert_int_equal(decode(with("\"latitude\":4.9e-324")), TC_REJECT_NONE);
    assert_true(B->metric[TC_M_LATITUDE][0] > 0.0);
    assert_int_equal(decode(with("\"pressure\":1.7976931348623157e308")), TC_REJECT_NONE);
    assert_true(B->metric[TC_M_PRESSURE][0] == 1.7976931348623157e308);
    assert_int_equal(decode(with("\"pressure\":1.7976931348623158e308")), TC_REJECT_NONE);
    /* A huge zero is zero, a tiny exponent on zero too. */
    assert_int_equal(decode(with("\"humidity\":0e999999999999999999999")), TC_REJECT_NONE);
    assert_true(B->metric[TC_M_HUMIDITY][0] == 0.0);
    assert_int_equal(decode(with("\"humidity\":0.000e-99999")), TC_REJECT_NONE);
}

static void test_metric_wrong_type(void **state)
{
    static const char *const vals[] = {"\"21.5\"", "true", "false", "{}", "[21.5]", "{\"v\":1}"};
    char members[64];

    (void)state;
    for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
        snprintf(members, sizeof(members), "\"humidity\":%s", vals[i]);
        expect(TC_REJECT_WRONG_TYPE, with(members));
    }
    expect(TC_REJECT_WRONG_TYPE, with("\"temperature\":\"x\""));
    assert_string_equal(D, "field \"temperature\" must be a number, got string");
    expect(TC_REJECT_WRONG_TYPE, with("\"battery\":[1,2]"));
    assert_string_equal(D, "field \"battery\" must be a number, got array");
}

static void test_number_range(void **state)
{
    (void)state;
    expect(TC_REJECT_NUMBER_RANGE, with("\"pressure\":1e400"));
    assert_string_equal(D, "field \"pressure\" does not fit a double: 1e400");
    expect(TC_REJECT_NUMBER_RANGE, with("\"pressure\":-1e400"));
    expect(TC_REJECT_NUMBER_RANGE, with("\"pressure\":1.7976931348623159e308"));
    expect(TC_REJECT_NUMBER_RANGE, with("\"pressure\":1e99999999999999999999999"));
    expect(TC_REJECT_NUMBER_RANGE,
           with("\"pressure\":"
                "1000000000000000000000000000000000000000000000000000000000000000000000000000000"
                "000000000000000000000000000000000000000000000000000000000000000000000000000000"
                "000000000000000000000000000000000000000000000000000000000000000000000000000000"
                "000000000000000000000000000000000000000000000000000000000000000000000000000000"));
}

/* ---- device_id ---- */

static void test_device_id(void **state)
{
    char members[TC_DEVICE_ID_MAX + 64], id[TC_DEVICE_ID_MAX + 2];

    (void)state;
    expect(TC_REJECT_MISSING_FIELD, "{\"timestamp\":0}");
    assert_string_equal(D, "field \"device_id\" is missing");
    expect(TC_REJECT_MISSING_FIELD, "{\"device_id\":null,\"timestamp\":0}");
    assert_string_equal(D, "field \"device_id\" is null");
    expect(TC_REJECT_WRONG_TYPE, "{\"device_id\":42,\"timestamp\":0}");
    assert_string_equal(D, "field \"device_id\" must be a string, got number");
    expect(TC_REJECT_WRONG_TYPE, "{\"device_id\":[\"a\"],\"timestamp\":0}");
    expect(TC_REJECT_WRONG_TYPE, "{\"device_id\":true,\"timestamp\":0}");
    expect(TC_REJECT_INVALID_DEVICE_ID, "{\"device_id\":\"\",\"timestamp\":0}");
    expect(TC_REJECT_INVALID_DEVICE_ID, "{\"device_id\":\"a\\nb\",\"timestamp\":0}");
    expect(TC_REJECT_INVALID_DEVICE_ID, "{\"device_id\":\"a\\u001fb\",\"timestamp\":0}");
    expect(TC_REJECT_INVALID_DEVICE_ID, "{\"device_id\":\"\\t\",\"timestamp\":0}");
    /* A raw control character is not even JSON. */
    expect(TC_REJECT_MALFORMED, "{\"device_id\":\"a\tb\",\"timestamp\":0}");

    /* Exactly TC_DEVICE_ID_MAX bytes is fine, one more is not. */
    memset(id, 'x', sizeof(id));
    id[TC_DEVICE_ID_MAX] = '\0';
    snprintf(members, sizeof(members), "{\"device_id\":\"%s\",\"timestamp\":0}", id);
    assert_int_equal(decode(members), TC_REJECT_NONE);
    assert_int_equal(B->device_id[0].len, TC_DEVICE_ID_MAX);
    id[TC_DEVICE_ID_MAX] = 'x';
    id[TC_DEVICE_ID_MAX + 1] = '\0';
    snprintf(members, sizeof(members), "{\"device_id\":\"%s\",\"timestamp\":0}", id);
    expect(TC_REJECT_INVALID_DEVICE_ID, members);
    /* The limit is on decoded bytes: 255 'x' + "\u00e9" (2 bytes) is 257. */
    memset(id, 'x', TC_DEVICE_ID_MAX - 1);
    id[TC_DEVICE_ID_MAX - 1] = '\0';
    snprintf(members, sizeof(members), "{\"device_id\":\"%s\\u00e9\",\"timestamp\":0}", id);
    expect(TC_REJECT_INVALID_DEVICE_ID, members);
    /* ... while 254 'x' + the escape (6 bytes of JSON, 2 decoded) fits. */
    id[TC_DEVICE_ID_MAX - 2] = '\0';
    snprintf(members, sizeof(members), "{\"device_id\":\"%s\\u00e9\",\"timestamp\":0}", id);
    assert_int_equal(decode(members), TC_REJECT_NONE);
    assert_int_equal(B->device_id[0].len, TC_DEVICE_ID_MAX);
}

static void test_device_id_escapes(void **state)
{
    (void)state;
    assert_int_equal(decode("{\"device_id\":\"dev\\u00e9\\\"x\",\"timestamp\":0}"), TC_REJECT_NONE);
    assert_slice(B->device_id[0], "dev\xc3\xa9\"x");
    assert_int_equal(decode("{\"device_id\":\"\\ud83d\\ude00\",\"timestamp\":0}"), TC_REJECT_NONE);
    assert_slice(B->device_id[0], "\xf0\x9f\x98\x80");
    assert_int_equal(decode("{\"device_id\":\"a\\/b\\\\c\\u20AC\",\"timestamp\":0}"),
                     TC_REJECT_NONE);
    assert_slice(B->device_id[0], "a/b\\c\xe2\x82\xac");
    assert_int_equal(decode("{\"device_id\":\"\\u0041\\u007f\",\"timestamp\":0}"), TC_REJECT_NONE);
    assert_slice(B->device_id[0], "A\x7f");
    /* Raw multi-byte UTF-8 is kept as is. */
    assert_int_equal(decode("{\"device_id\":\"m\xc3\xbcnchen-\xe2\x82\xac-\xf0\x9f\x98\x80\","
                            "\"timestamp\":0}"),
                     TC_REJECT_NONE);
    assert_slice(B->device_id[0], "m\xc3\xbcnchen-\xe2\x82\xac-\xf0\x9f\x98\x80");
}

/* ---- timestamp ---- */

static int64_t ts_of(const char *value)
{
    char msg[1024];
    tc_reject r;

    snprintf(msg, sizeof(msg), "{\"device_id\":\"d\",\"timestamp\":%s}", value);
    r = decode(msg);
    if (r != TC_REJECT_NONE)
        fail_msg("timestamp %s rejected: %s (%s)", value, tc_reject_name(r), D);
    return B->time_us[0];
}

static void ts_reject(tc_reject want, const char *value)
{
    char msg[1024];

    snprintf(msg, sizeof(msg), "{\"device_id\":\"d\",\"timestamp\":%s}", value);
    expect(want, msg);
}

static void test_timestamp_rfc3339(void **state)
{
    (void)state;
    assert_int_equal(ts_of("\"2026-11-28T12:00:00.123Z\""), T_SAMPLE_US);
    assert_int_equal(ts_of("\"2026-11-28T17:30:00.123+05:30\""), T_SAMPLE_US);
    assert_int_equal(ts_of("\"2026-11-28 04:00:00.123-08:00\""), T_SAMPLE_US);
    assert_int_equal(ts_of("\"2026-11-28t12:00:00.123456789z\""), T_SAMPLE_US + 456);
    /* Escapes are decoded before parsing. */
    assert_int_equal(ts_of("\"2026\\u002d11-28T12:00:00.123Z\""), T_SAMPLE_US);
    ts_reject(TC_REJECT_INVALID_TIMESTAMP, "\"2026-02-30T00:00:00Z\"");
    assert_string_equal(D, "field \"timestamp\" is not an RFC 3339 date-time: "
                           "\"2026-02-30T00:00:00Z\"");
    ts_reject(TC_REJECT_INVALID_TIMESTAMP, "\"2026-11-28T24:00:00Z\"");
    ts_reject(TC_REJECT_INVALID_TIMESTAMP, "\"2026-13-01T00:00:00Z\"");
    ts_reject(TC_REJECT_INVALID_TIMESTAMP, "\"2026-11-28T12:00:00\"");
    ts_reject(TC_REJECT_INVALID_TIMESTAMP, "\"\"");
    ts_reject(TC_REJECT_INVALID_TIMESTAMP, "\"yesterday\"");
    ts_reject(TC_REJECT_INVALID_TIMESTAMP,
              "\"2026-11-28T12:00:00.123Z\\u0020\\u0020\\u0020\\u0020\\u0020\\u0020\\u0020"
              "\\u0020\\u0020\\u0020\\u0020\\u0020\\u0020\\u0020\\u0020\\u0020\\u0020\\u0020"
              "\\u0020\\u0020\\u0020\\u0020\\u0020\\u0020\\u0020\\u0020\\u0020\\u0020\\u0020"
              "\\u0020\\u0020\\u0020\\u0020\\u0020\\u0020\\u0020\\u0020\\u0020\\u0020\\u0020"
              "\\u0020\\u0020\\u0020\\u0020\\u0020\"");
}

static void test_timestamp_epoch_ms(void **state)
{
    (void)state;
    assert_int_equal(ts_of("1764331200123"), INT64_C(1764331200123000));
    assert_int_equal(ts_of("1764331200123.5"), INT64_C(1764331200123500));
    assert_int_equal(ts_of("1764331200123.0004"), INT64_C(1764331200123000));
    assert_int_equal(ts_of("1764331200123.999999"), INT64_C(1764331200123999));
    assert_int_equal(ts_of("1.764331200123e12"), INT64_C(1764331200123000));
    assert_int_equal(ts_of("17643312001235E-1"), INT64_C(1764331200123500));
    assert_int_equal(ts_of("0"), 0);
    assert_int_equal(ts_of("-0"), 0);
    assert_int_equal(ts_of("0.0001"), 0);
    /* Rounding toward negative infinity. */
    assert_int_equal(ts_of("-1"), -1000);
    assert_int_equal(ts_of("-1.5"), -1500);
    assert_int_equal(ts_of("-0.0001"), -1);
    assert_int_equal(ts_of("-1.0000001"), -1001);
    assert_int_equal(ts_of("-1.000000"), -1000);
    /* Bounds: years 1..9999. */
    assert_int_equal(ts_of("253402300799999"), INT64_C(253402300799999000));
    assert_int_equal(ts_of("2.53402300799999e14"), INT64_C(253402300799999000));
    assert_int_equal(ts_of("-62135596800000"), INT64_C(-62135596800000000));
    ts_reject(TC_REJECT_INVALID_TIMESTAMP, "253402300799999.001");
    ts_reject(TC_REJECT_INVALID_TIMESTAMP, "253402300800000");
    ts_reject(TC_REJECT_INVALID_TIMESTAMP, "-62135596800000.5");
    ts_reject(TC_REJECT_INVALID_TIMESTAMP, "-62135596800001");
    ts_reject(TC_REJECT_INVALID_TIMESTAMP, "1e20");
    ts_reject(TC_REJECT_INVALID_TIMESTAMP, "1e999999999999999999");
    ts_reject(TC_REJECT_INVALID_TIMESTAMP, "99999999999999999999999999999999999999");
    assert_int_equal(ts_of("1e-999999999999999999"), 0);
    assert_int_equal(ts_of("-1e-999999999999999999"), -1);
}

static void test_timestamp_missing_and_types(void **state)
{
    (void)state;
    expect(TC_REJECT_MISSING_FIELD, "{\"device_id\":\"d\"}");
    assert_string_equal(D, "field \"timestamp\" is missing");
    ts_reject(TC_REJECT_MISSING_FIELD, "null");
    assert_string_equal(D, "field \"timestamp\" is null");
    ts_reject(TC_REJECT_WRONG_TYPE, "true");
    ts_reject(TC_REJECT_WRONG_TYPE, "{\"ms\":1}");
    ts_reject(TC_REJECT_WRONG_TYPE, "[1764331200123]");
    assert_string_equal(D, "field \"timestamp\" must be a string or a number, got array");
    expect(TC_REJECT_MISSING_FIELD, "{}");
}

/* ---- tags and unknown fields ---- */

static void test_tags(void **state)
{
    (void)state;
    assert_int_equal(decode(with("\"tags\":{}")), TC_REJECT_NONE);
    assert_slice(B->tags[0], "{}");
    assert_int_equal(decode(with("\"tags\":null")), TC_REJECT_NONE);
    assert_slice(B->tags[0], NULL);
    /* Kept exactly: whitespace, escapes, nesting, numbers as written. */
    assert_int_equal(decode(with("\"tags\" :\t{ \"site\" : \"berlin-1\",\n\"floor\":-2.50e+1,"
                                 "\"a\\u00e9\":[true,false,null,{\"x\":[]}],\"big\":1e400 } ")),
                     TC_REJECT_NONE);
    assert_slice(B->tags[0], "{ \"site\" : \"berlin-1\",\n\"floor\":-2.50e+1,"
                             "\"a\\u00e9\":[true,false,null,{\"x\":[]}],\"big\":1e400 }");
    /* Duplicate keys inside tags are jsonb's business (last wins), not a rejection. */
    assert_int_equal(decode(with("\"tags\":{\"a\":1,\"a\":2}")), TC_REJECT_NONE);
    expect(TC_REJECT_WRONG_TYPE, with("\"tags\":\"site=berlin\""));
    assert_string_equal(D, "field \"tags\" must be an object, got string");
    expect(TC_REJECT_WRONG_TYPE, with("\"tags\":[\"a\"]"));
    expect(TC_REJECT_WRONG_TYPE, with("\"tags\":7"));
    expect(TC_REJECT_WRONG_TYPE, with("\"tags\":false"));
}

/* Numbers kept for jsonb must be accepted by PostgreSQL numeric input on every version. */
static void test_tags_jsonb_numbers(void **state)
{
    char *msg, *p;
    size_t n = 20000;

    (void)state;
    assert_int_equal(decode(with("\"tags\":{\"a\":1e1000,\"b\":1e-1000,\"c\":-1E+1000}")),
                     TC_REJECT_NONE);
    expect(TC_REJECT_NUMBER_RANGE, with("\"tags\":{\"a\":1e1001}"));
    expect(TC_REJECT_NUMBER_RANGE, with("\"tags\":{\"a\":[1e-1001]}"));
    expect(TC_REJECT_NUMBER_RANGE, with("\"fw\":2e99999"));
    /* 16383 digits after the point fit numeric's display scale, 16384 do not. */
    msg = malloc(n + 100);
    assert_non_null(msg);
    p = msg + sprintf(msg, "{\"device_id\":\"d\",\"timestamp\":0,\"tags\":{\"x\":0.");
    memset(p, '1', 16383);
    strcpy(p + 16383, "}}");
    expect(TC_REJECT_NONE, msg);
    memset(p, '1', 16384);
    strcpy(p + 16384, "}}");
    expect(TC_REJECT_NUMBER_RANGE, msg);
    strcpy(p + 16384, "e1}}"); /* scale 16383 again */
    expect(TC_REJECT_NONE, msg);
    free(msg);
}

static void test_extra_fields(void **state)
{
    (void)state;
    assert_int_equal(decode("{\"fw\": \"1.2.3\" ,\"device_id\":\"d\",\"n\":[1, 2,{\"a\":null}],"
                            "\"timestamp\":0,\"x\\u00e9\":true,\"z\":-0.5e-3,\"o\":{ }}"),
                     TC_REJECT_NONE);
    assert_slice(B->extra[0], "{\"fw\":\"1.2.3\",\"n\":[1, 2,{\"a\":null}],\"x\\u00e9\":true,"
                              "\"z\":-0.5e-3,\"o\":{ }}");
    assert_slice(B->tags[0], NULL);
    assert_int_equal(decode(with("\"Temperature\":1")), TC_REJECT_NONE); /* names are exact */
    assert_slice(B->extra[0], "{\"Temperature\":1}");
    assert_int_equal(B->present[TC_M_TEMPERATURE][0], 0);
    assert_int_equal(decode(with("\"x\":null")), TC_REJECT_NONE);
    assert_slice(B->extra[0], "{\"x\":null}");
    assert_int_equal(decode(with("\"\":\"\"")), TC_REJECT_NONE); /* the empty key is a key */
    assert_slice(B->extra[0], "{\"\":\"\"}");
    /* A known name written with escapes is the known field, not an unknown one. */
    assert_int_equal(decode(with("\"temp\\u0065rature\":3")), TC_REJECT_NONE);
    assert_int_equal(B->present[TC_M_TEMPERATURE][0], 1);
    assert_slice(B->extra[0], NULL);
}

static void test_extra_fields_limit(void **state)
{
    char members[T_MSG_MAX];
    size_t n = 0;

    (void)state;
    for (int i = 0; i < TC_JSON_EXTRA_FIELDS_MAX; i++)
        n += (size_t)snprintf(members + n, sizeof(members) - n, "%s\"f%d\":%d", i ? "," : "", i, i);
    assert_int_equal(decode(with(members)), TC_REJECT_NONE);
    assert_non_null(B->extra[0].ptr);
    assert_true(strncmp(B->extra[0].ptr, "{\"f0\":0,\"f1\":1,", 15) == 0);
    snprintf(members + n, sizeof(members) - n, ",\"one_more\":1");
    expect(TC_REJECT_MALFORMED, with(members));
    assert_string_equal(D, "more than 64 unknown fields (the limit on fields outside the schema)");
}

static void test_duplicates(void **state)
{
    (void)state;
    expect(TC_REJECT_DUPLICATE_FIELD, "{\"device_id\":\"a\",\"timestamp\":0,\"device_id\":\"a\"}");
    assert_string_equal(D, "duplicate field \"device_id\"");
    expect(TC_REJECT_DUPLICATE_FIELD, with("\"humidity\":1,\"humidity\":2"));
    assert_string_equal(D, "duplicate field \"humidity\"");
    expect(TC_REJECT_DUPLICATE_FIELD, with("\"humidity\":null,\"humidity\":2"));
    expect(TC_REJECT_DUPLICATE_FIELD, with("\"tags\":{},\"tags\":null"));
    expect(TC_REJECT_DUPLICATE_FIELD, "{\"device_id\":\"d\",\"timestamp\":0,\"timestamp\":0}");
    /* Names are compared after unescaping. */
    expect(TC_REJECT_DUPLICATE_FIELD,
           "{\"device_id\":\"a\",\"timestamp\":0,\"device\\u005fid\":1}");
    expect(TC_REJECT_DUPLICATE_FIELD, with("\"fw\":1,\"fw\":1"));
    assert_string_equal(D, "duplicate field \"fw\"");
    expect(TC_REJECT_DUPLICATE_FIELD, with("\"fw\":1,\"f\\u0077\":1"));
    expect(TC_REJECT_DUPLICATE_FIELD, with("\"\\u00e9\":1,\"\xc3\xa9\":1"));
    expect(TC_REJECT_DUPLICATE_FIELD, with("\"\\ud83d\\ude00\":1,\"\xf0\x9f\x98\x80\":1"));
    expect(TC_REJECT_DUPLICATE_FIELD, with("\"a\\\"b\":1,\"a\\u0022b\":1"));
    /* Similar but different names are fine. */
    assert_int_equal(decode(with("\"fw\":1,\"fw \":1,\"f\":1,\"fw\\u0000x\":1")),
                     TC_REJECT_INVALID_UTF8);
    assert_int_equal(decode(with("\"fw\":1,\"fw \":1,\"f\":1,\"\\u00e9\":1,\"\\u00e8\":1")),
                     TC_REJECT_NONE);
}

/* ---- strict JSON ---- */

static void test_malformed(void **state)
{
    static const char *const values[] = {
        "NaN",
        "nan",
        "Infinity",
        "-Infinity",
        "inf",
        "01",
        "-01",
        "00",
        "+1",
        ".5",
        "-.5",
        "1.",
        "1.e5",
        "1e",
        "1e+",
        "1e-",
        "-",
        "--1",
        "0x10",
        "1_000",
        "tru",
        "nul",
        "falsey",
        "True",
        "NULL",
        "'x'",
        "\"a",
        "[1,]",
        "[,1]",
        "[1 2]",
        "{\"a\":1,}",
        "{\"a\" 1}",
        "{a:1}",
        "{\"a\":}",
        "{,}",
        "[",
        "]",
        "}",
        "\"\\x41\"",
        "\"\\a\"",
        "\"\\'\"",
        "\"\\U0041\"",
        "\"\\u12\"",
        "\"\\u12G4\"",
        "\"\\\"",
        "1 2",
        "[1]]",
        "{\"a\":1}}",
        "/*c*/1",
        "// c\n1",
        "\"tab\there\"",
        "\"nl\nhere\"",
        "\"\x1f\"",
        "1.5.5",
        "1e5e5",
        "- 1",
        "[\"a\" \"b\"]",
    };
    char members[128];

    (void)state;
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        snprintf(members, sizeof(members), "\"temperature\":%s", values[i]);
        expect(TC_REJECT_MALFORMED, with(members));
        snprintf(members, sizeof(members), "\"tags\":{\"k\":%s}", values[i]);
        expect(TC_REJECT_MALFORMED, with(members));
        snprintf(members, sizeof(members), "\"other\":[%s]", values[i]);
        expect(TC_REJECT_MALFORMED, with(members));
    }
    /* Structure of the top-level object itself. */
    expect(TC_REJECT_MALFORMED, "{\"device_id\":\"d\",\"timestamp\":0,}");
    expect(TC_REJECT_MALFORMED, "{\"device_id\":\"d\" \"timestamp\":0}");
    expect(TC_REJECT_MALFORMED, "{\"device_id\":\"d\",,\"timestamp\":0}");
    expect(TC_REJECT_MALFORMED, "{,\"device_id\":\"d\",\"timestamp\":0}");
    expect(TC_REJECT_MALFORMED, "{'device_id':'d','timestamp':0}");
    expect(TC_REJECT_MALFORMED, "{device_id:\"d\",timestamp:0}");
    expect(TC_REJECT_MALFORMED, "{\"device_id\":\"d\",\"timestamp\":0 /* c */}");
    expect(TC_REJECT_MALFORMED, "{\"device_id\"=\"d\",\"timestamp\":0}");
    expect(TC_REJECT_MALFORMED, "{\"device_id\":\"d\";\"timestamp\":0}");
    expect(TC_REJECT_MALFORMED, "{\"device_id\":\"d\",\"timestamp\":0]");
    expect(TC_REJECT_MALFORMED, "{\"device_id\":\"d\",\"timestamp\":}");
    expect(TC_REJECT_MALFORMED, "{\"device_id\":\"d\",\"timestamp\"}");
    expect(TC_REJECT_MALFORMED,
           "{\"device_id\":\"d\",\"timestamp\":0\x0b}"); /* VT is not JSON ws */
    expect(TC_REJECT_MALFORMED, "{\"device_id\":\"d\",\"timestamp\":0\xc2\xa0}"); /* nor is NBSP */
}

static void test_detail_messages(void **state)
{
    (void)state;
    expect(TC_REJECT_MALFORMED, "{\"device_id\" \"x\"}");
    assert_string_equal(D, "expected ':' after key at byte 13");
    expect(TC_REJECT_MALFORMED, "{\"device_id\":\"x\",\"timestamp\":0 x}");
    assert_string_equal(D, "expected ',' or '}' at byte 31");
    expect(TC_REJECT_MALFORMED, "{\"a\":01}");
    assert_string_equal(D, "leading zero in a number at byte 5");
    expect(TC_REJECT_MALFORMED, "{\"a\":\"x");
    assert_string_equal(D, "unexpected end of input at byte 7 inside a string");
    expect(TC_REJECT_INVALID_UTF8, "{\"a\":\"xyz\xff\"}");
    assert_string_equal(D, "invalid UTF-8 at byte 9");
    expect(TC_REJECT_MALFORMED, "{\"device_id\":\"d\",\"timestamp\":0} {}");
    assert_string_equal(D, "unexpected data after the object at byte 32");
}

/* ---- UTF-8 and escapes ---- */

static void test_invalid_utf8(void **state)
{
    static const char *const bad[] = {
        "\xc0\x80",                 /* overlong NUL */
        "\xc1\xbf",                 /* overlong */
        "\xe0\x80\x80",             /* overlong 3-byte */
        "\xe0\x9f\xbf",             /* overlong 3-byte, top */
        "\xf0\x80\x80\x80",         /* overlong 4-byte */
        "\xf0\x8f\xbf\xbf",         /* overlong 4-byte, top */
        "\xed\xa0\x80",             /* U+D800 encoded */
        "\xed\xbf\xbf",             /* U+DFFF encoded */
        "\xed\xa0\xbd\xed\xb8\x80", /* CESU-8 surrogate pair */
        "\xf4\x90\x80\x80",         /* U+110000 */
        "\xf5\x80\x80\x80",
        "\xf8\x88\x80\x80\x80",
        "\xfe",
        "\xff",
        "\x80", /* lone continuation */
        "\xbf",
        "\xc3",         /* truncated 2-byte, then the closing quote */
        "\xe2\x82",     /* truncated 3-byte */
        "\xf0\x9f\x98", /* truncated 4-byte */
        "\xc3\x28",     /* bad continuation */
        "\xe2\x28\xa1",
        "\xf0\x9f\x28\x80",
    };
    char buf[128];

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        /* In a value, in a key, in device_id, nested in tags. */
        snprintf(buf, sizeof(buf), "\"tags\":{\"k\":\"a%sb\"}", bad[i]);
        expect(TC_REJECT_INVALID_UTF8, with(buf));
        snprintf(buf, sizeof(buf), "\"a%s\":1", bad[i]);
        expect(TC_REJECT_INVALID_UTF8, with(buf));
        snprintf(buf, sizeof(buf), "{\"device_id\":\"%s\",\"timestamp\":0}", bad[i]);
        expect(TC_REJECT_INVALID_UTF8, buf);
        snprintf(buf, sizeof(buf), "\"x\":[[\"%s\"]]", bad[i]);
        expect(TC_REJECT_INVALID_UTF8, with(buf));
    }
    /* Boundaries of every valid range are accepted. */
    assert_int_equal(
        decode(with("\"tags\":{\"k\":\"\xc2\x80\xdf\xbf\xe0\xa0\x80\xed\x9f\xbf"
                    "\xee\x80\x80\xef\xbf\xbf\xf0\x90\x80\x80\xf4\x8f\xbf\xbf\x7f\"}")),
        TC_REJECT_NONE);
}

static void test_escapes(void **state)
{
    static const char *const bad_utf[] = {
        "\\u0000",        "a\\u0000b",      "\\ud83d", "\\ud83dx",
        "\\ud83d\\n",     "\\ud83d\\u0041", "\\ude00", "\\ude00\\ud83d",
        "\\udbff\\udbff", "\\ud800\\ud800", "\\uDFFF", "\\ud83d\\\"",
    };
    char buf[128];

    (void)state;
    for (size_t i = 0; i < sizeof(bad_utf) / sizeof(bad_utf[0]); i++) {
        snprintf(buf, sizeof(buf), "\"tags\":{\"k\":\"%s\"}", bad_utf[i]);
        expect(TC_REJECT_INVALID_UTF8, with(buf));
        snprintf(buf, sizeof(buf), "\"k%s\":0", bad_utf[i]);
        expect(TC_REJECT_INVALID_UTF8, with(buf));
        snprintf(buf, sizeof(buf), "{\"device_id\":\"%s\",\"timestamp\":0}", bad_utf[i]);
        expect(TC_REJECT_INVALID_UTF8, buf);
    }
    assert_int_equal(decode(with("\"tags\":{\"k\":\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u0001\\uFFFF"
                                 "\\ud800\\udc00\\uDBFF\\uDFFF\\u00E9\"}")),
                     TC_REJECT_NONE);
    /* Escapes are kept as written in tags and extra. */
    assert_slice(B->tags[0], "{\"k\":\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u0001\\uFFFF\\ud800\\udc00"
                             "\\uDBFF\\uDFFF\\u00E9\"}");
}

/* ---- message-level structure ---- */

static void test_top_level(void **state)
{
    (void)state;
    expect_n(TC_REJECT_EMPTY, "", 0);
    assert_int_equal(tc_json_reading_decode(B, NULL, 0, NULL, 0), TC_REJECT_EMPTY);
    expect(TC_REJECT_MALFORMED, " ");
    expect(TC_REJECT_MALFORMED, " \t\r\n ");
    expect(TC_REJECT_NOT_OBJECT, "[]");
    assert_string_equal(D, "message is a JSON array, not an object");
    expect(TC_REJECT_NOT_OBJECT, " [1,{\"device_id\":\"d\"}] ");
    expect(TC_REJECT_NOT_OBJECT, "42");
    expect(TC_REJECT_NOT_OBJECT, "1e999"); /* valid JSON, even if no double holds it */
    expect(TC_REJECT_NOT_OBJECT, "\"{}\"");
    expect(TC_REJECT_NOT_OBJECT, "null");
    expect(TC_REJECT_NOT_OBJECT, "true");
    expect(TC_REJECT_MALFORMED, "[1,");
    expect(TC_REJECT_MALFORMED, "[1] x");
    expect(TC_REJECT_MALFORMED, "garbage");
    expect_n(TC_REJECT_MALFORMED, "\0{}", 3);
    expect(TC_REJECT_INVALID_UTF8, "[\"\xff\"]");
    expect(TC_REJECT_MISSING_FIELD, "{}");
    expect(TC_REJECT_MISSING_FIELD, " { } ");
    /* Trailing garbage after a valid reading. */
    expect(TC_REJECT_MALFORMED, "{\"device_id\":\"d\",\"timestamp\":0}x");
    expect(TC_REJECT_MALFORMED, "{\"device_id\":\"d\",\"timestamp\":0}{}");
    expect(TC_REJECT_MALFORMED, "{\"device_id\":\"d\",\"timestamp\":0},");
    expect_n(TC_REJECT_MALFORMED, "{\"device_id\":\"d\",\"timestamp\":0}\0", 32);
    expect(TC_REJECT_NONE, "{\"device_id\":\"d\",\"timestamp\":0} \r\n\t");
    /* The length is what counts, not a NUL: bytes after len are not looked at. */
    expect_n(TC_REJECT_NONE, "{\"device_id\":\"d\",\"timestamp\":0}garbage", 31);
}

static void test_whitespace_everywhere(void **state)
{
    (void)state;
    assert_int_equal(decode(" \t\r\n{ \t\r\n\"device_id\" \t\r\n: \t\r\n\"d\" \t\r\n, \t\r\n"
                            "\"timestamp\"\n:\n0\n,\"tags\" : { \"a\" : [ 1 , { } , [ ] ] } ,"
                            "\"x\" : [ ] , \"temperature\" : null \n} \t\r\n"),
                     TC_REJECT_NONE);
    assert_slice(B->tags[0], "{ \"a\" : [ 1 , { } , [ ] ] }");
    assert_slice(B->extra[0], "{\"x\":[ ]}");
}

/* RFC 8259 section 8.1: senders must not add a BOM; we refuse rather than silently skip it. */
static void test_bom(void **state)
{
    (void)state;
    expect(TC_REJECT_MALFORMED, "\xef\xbb\xbf{\"device_id\":\"d\",\"timestamp\":0}");
    assert_string_equal(D, "byte order mark at byte 0: not allowed in JSON messages (RFC 8259)");
    expect(TC_REJECT_MALFORMED, "\xef\xbb");
    /* A BOM-like sequence inside a string is just a character (U+FEFF). */
    expect(TC_REJECT_NONE, with("\"tags\":{\"k\":\"\xef\xbb\xbf\"}"));
}

static void test_deep_nesting(void **state)
{
    const size_t big = 10u * 1024 * 1024;
    char *msg = malloc(big + 128), *p;

    (void)state;
    assert_non_null(msg);
    /* 10,000 '[' inside tags. */
    p = msg + sprintf(msg, "{\"device_id\":\"d\",\"timestamp\":0,\"tags\":{\"a\":");
    memset(p, '[', 10000);
    strcpy(p + 10000, "1]}}");
    expect(TC_REJECT_TOO_DEEP, msg);
    /* 10 MB of '[' at the top level and of '{"a":' in an unknown field: no stack is consumed. */
    memset(msg, '[', big);
    expect_n(TC_REJECT_TOO_DEEP, msg, big);
    p = msg + sprintf(msg, "{\"device_id\":\"d\",\"timestamp\":0,\"x\":");
    for (; (size_t)(p - msg) + 5 <= big; p += 5)
        memcpy(p, "{\"a\":", 5);
    expect_n(TC_REJECT_TOO_DEEP, msg, (size_t)(p - msg));
    free(msg);
}

/* The limit is exact: TC_JSON_DEPTH_MAX containers including the top-level object. */
static void test_depth_limit(void **state)
{
    char members[256], *p;
    int arrays = TC_JSON_DEPTH_MAX - 2; /* top object + tags object + arrays */

    (void)state;
    p = members + sprintf(members, "\"tags\":{\"a\":");
    memset(p, '[', (size_t)arrays);
    memset(p + arrays, ']', (size_t)arrays);
    strcpy(p + 2 * arrays, "}");
    expect(TC_REJECT_NONE, with(members));
    p = members + sprintf(members, "\"tags\":{\"a\":");
    memset(p, '[', (size_t)arrays + 1);
    memset(p + arrays + 1, ']', (size_t)arrays + 1);
    strcpy(p + 2 * arrays + 2, "}");
    expect(TC_REJECT_TOO_DEEP, with(members));
    assert_string_equal(D, "nesting deeper than 32 levels at byte 73");
    /* Same for unknown fields: top object + 31 arrays. */
    p = members + sprintf(members, "\"x\":");
    memset(p, '[', TC_JSON_DEPTH_MAX - 1);
    memset(p + TC_JSON_DEPTH_MAX - 1, ']', TC_JSON_DEPTH_MAX - 1);
    p[2 * (TC_JSON_DEPTH_MAX - 1)] = '\0';
    expect(TC_REJECT_NONE, with(members));
    p = members + sprintf(members, "\"x\":");
    memset(p, '[', TC_JSON_DEPTH_MAX);
    memset(p + TC_JSON_DEPTH_MAX, ']', TC_JSON_DEPTH_MAX);
    p[2 * TC_JSON_DEPTH_MAX] = '\0';
    expect(TC_REJECT_TOO_DEEP, with(members));
}

/* Every proper prefix of a valid reading is EMPTY (length 0) or MALFORMED: never accepted, never a
 * field-level code, never a crash. The readings cover escapes, UTF-8, surrogates, numbers with
 * exponents, nesting, unknown fields and whitespace, so cuts land inside each construct. */
static void test_truncation(void **state)
{
    static const char rich[] =
        "{\"device_id\":\"dev\\u00e9\\\"x\",\"timestamp\":1764331200123.5,\"temperature\":"
        "-1.5e-3,\"humidity\":null,\"battery\":87,\"tags\":{\"site\":\"m\xc3\xbcnchen\","
        "\"emoji\":\"\\ud83d\\ude00\xf0\x9f\x98\x80\xe2\x82\xac\",\"n\":[1,2.5E+10,true,false,"
        "null,{}],\"e\":[]},\"fw\":\"1.2.3\",\"x\":{\"y\":[[]]},\"longitude\":0}";
    static const char spaced[] =
        " \r\n{ \"device_id\" : \"a\" , \"timestamp\" : \"2026-11-28 12:00:00+01:00\" ,"
        " \"tags\" : null , \"k\" : -0 } \n";
    static const char sample[] = T_SAMPLE;
    static const char *const readings[] = {
        sample,
        rich,
        spaced,
        "{\"timestamp\":-62135596800000,\"device_id\":\"\\/\\\\\\b\\f\\n\\r\\tz\\uABCD\"}",
    };

    (void)state;
    for (size_t i = 0; i < sizeof(readings) / sizeof(readings[0]); i++) {
        const char *s = readings[i];
        size_t n = strlen(s);

        /* The last reading's device_id decodes to control characters: valid JSON, bad id. */
        expect(i == 3 ? TC_REJECT_INVALID_DEVICE_ID : TC_REJECT_NONE, s);
        for (size_t k = 0; k < n; k++) {
            tc_reject r = decode_n(s, k);

            /* A whitespace-padded reading is complete before its trailing whitespace. */
            if (r == TC_REJECT_NONE && i == 2 && k >= n - 2)
                continue;
            if (!(k == 0 ? r == TC_REJECT_EMPTY : r == TC_REJECT_MALFORMED))
                fail_msg("prefix %zu/%zu of reading %zu: got %s (%s)", k, n, i, tc_reject_name(r),
                         D);
        }
    }
}

/* Syntax errors win over schema errors found earlier, whatever their order. */
static void test_error_precedence(void **state)
{
    (void)state;
    expect(TC_REJECT_MALFORMED, "{\"device_id\":5,\"timestamp\":0");
    expect(TC_REJECT_MALFORMED, "{\"device_id\":5,\"timestamp\":0} x");
    expect(TC_REJECT_INVALID_UTF8, "{\"device_id\":5,\"timestamp\":\"\xff\"}");
    expect(TC_REJECT_TOO_DEEP, "{\"temperature\":\"x\",\"a\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[");
    /* The first schema error in message order wins among schema errors. */
    expect(TC_REJECT_WRONG_TYPE,
           "{\"temperature\":\"x\",\"temperature\":1e999,\"device_id\":\"\"}");
    expect(TC_REJECT_DUPLICATE_FIELD, "{\"a\":1,\"a\":\"x\",\"temperature\":\"x\"}");
    expect(TC_REJECT_INVALID_DEVICE_ID, "{\"device_id\":\"\",\"timestamp\":null}");
    /* Missing fields come last. */
    expect(TC_REJECT_NUMBER_RANGE, "{\"pressure\":1e999}");
}

/* ---- numbers against strtod ---- */

static uint64_t rng_state = 0x243F6A8885A308D3u;

static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* Decode text as the temperature and compare the bits with strtod's result. */
static void check_number(const char *text)
{
    static char msg[4200];
    double want = strtod(text, NULL), got;
    int n = snprintf(msg, sizeof(msg), "{\"device_id\":\"d\",\"timestamp\":0,\"temperature\":%s}",
                     text);
    tc_reject r;

    assert_true(n > 0 && (size_t)n < sizeof(msg));
    r = decode(msg);
    if (isinf(want)) {
        if (r != TC_REJECT_NUMBER_RANGE)
            fail_msg("%s overflows but got %s", text, tc_reject_name(r));
        return;
    }
    if (r != TC_REJECT_NONE)
        fail_msg("%s rejected: %s (%s)", text, tc_reject_name(r), D);
    got = B->metric[TC_M_TEMPERATURE][0];
    if (memcmp(&got, &want, sizeof(got)) != 0)
        fail_msg("%s: decoded %.17g, strtod %.17g", text, got, want);
}

/* A random JSON number: int part, optional fraction, optional exponent, with lengths that hit the
 * fast path, the 19-digit boundary, the 64-character boundary and the long path. */
static void random_number(char *out, size_t max_digits)
{
    size_t k = 0, nint = 1 + rng() % max_digits, nfrac;

    if (rng() & 1)
        out[k++] = '-';
    if (rng() % 8 == 0) {
        out[k++] = '0';
    } else {
        out[k++] = (char)('1' + rng() % 9);
        for (size_t i = 1; i < nint; i++)
            out[k++] = (char)('0' + rng() % 10);
    }
    if (rng() & 1) {
        nfrac = 1 + rng() % max_digits;
        out[k++] = '.';
        for (size_t i = 0; i < nfrac; i++)
            out[k++] = (char)(rng() % 4 == 0 ? '0' : '0' + rng() % 10);
    }
    if (rng() & 1) {
        out[k++] = rng() & 1 ? 'e' : 'E';
        if (rng() % 3 == 0)
            out[k++] = rng() & 1 ? '-' : '+';
        k += (size_t)sprintf(out + k, "%d", (int)(rng() % 400));
    }
    out[k] = '\0';
}

static void test_numbers_vs_strtod_edges(void **state)
{
    /* The halfway point between 1 and 1 + 2^-52 followed by a far nonzero digit must round up,
     * and just below it down, however far the difference: both are longer than
     * TC_JSON_NUMBER_MAX, so they take the reduced-digits path. */
    static const char above_half[] =
        "1.0000000000000001110223024625156540423631668090820312500000000000000000000000000000"
        "0000000000000000000000000000000000000000000000000000000000000000000000000000000000001";
    static const char below_half[] =
        "1.0000000000000001110223024625156540423631668090820312499999999999999999999999999999"
        "9999999999999999999999999999999999999999999999999999999999999999999999999999999999999";
    static const char *const edges[] = {
        "0",
        "-0",
        "1",
        "-1",
        "0.1",
        "0.3",
        "1e22",
        "1e23",
        "9007199254740992",
        "9007199254740993",
        "9007199254740994",
        "9007199254740995",
        "18446744073709551615",
        "18446744073709551616",
        "9999999999999999999",
        "10000000000000000000",
        "1234567890123456789012345",
        "0.1e-22",
        "123456789e-22",
        "2.2250738585072011e-308",
        "2.2250738585072014e-308",
        "4.9406564584124654e-324",
        "2.4703282292062327e-324",
        "2.4703282292062328e-324",
        "1.7976931348623157e308",
        "1.7976931348623158e308",
        "1.7976931348623159e308",
        "8.98846567431158e307",
        "3.0e-324",
        "1e-400",
        "1e400",
        "0.000000000000000000000000000000001",
        "123.456e-5",
        "7e-10",
        "89255.0e-22",
        "4.35252958e-12",
        "0.30000000000000004",
        "5e-324",
        "1.0000000000000002",
        /* Exactly halfway between 1 and 1 + 2^-52: ties to even (1.0). */
        "1.00000000000000011102230246251565404236316680908203125",
    };

    (void)state;
    check_number(above_half);
    assert_true(B->metric[TC_M_TEMPERATURE][0] == 1.0000000000000002);
    check_number(below_half);
    assert_true(B->metric[TC_M_TEMPERATURE][0] == 1.0);
    for (size_t i = 0; i < sizeof(edges) / sizeof(edges[0]); i++) {
        char neg[256];

        check_number(edges[i]);
        snprintf(neg, sizeof(neg), "-%s", edges[i]);
        if (edges[i][0] != '-')
            check_number(neg);
    }
}

static void test_numbers_vs_strtod_random(void **state)
{
    char text[4096];

    (void)state;
    /* Short numbers: fast path and the plain strtod path. */
    for (int i = 0; i < 3000; i++) {
        random_number(text, 1 + (size_t)(i % 24));
        check_number(text);
    }
    /* Long numbers: the reduced-digits path. */
    for (int i = 0; i < 300; i++) {
        random_number(text, 40 + (size_t)(i % 5) * 400);
        check_number(text);
    }
    /* printf renderings of random doubles, shortest to over-long. */
    for (int i = 0; i < 2000; i++) {
        uint64_t bits = rng();
        double v;

        memcpy(&v, &bits, sizeof(v));
        if (!isfinite(v))
            continue;
        snprintf(text, sizeof(text),
                 (i & 3) == 0   ? "%.17g"
                 : (i & 3) == 1 ? "%.16e"
                 : (i & 3) == 2 ? "%.15g"
                                : "%.30e",
                 v);
        check_number(text);
    }
}

/* Exact decimal midpoints between adjacent doubles (computed in long double, which holds them
 * exactly), printed in full and nudged by a far digit: the hardest inputs for the long path. */
static void test_numbers_vs_strtod_midpoints(void **state)
{
    char text[4096];

    (void)state;
    if (LDBL_MANT_DIG < 64)
        skip();
    for (int i = 0; i < 400; i++) {
        uint64_t bits = rng() & ~(UINT64_C(1) << 63);
        double lo, hi;
        long double mid;
        char *e;

        memcpy(&lo, &bits, sizeof(lo));
        if (!isfinite(lo) || lo == 0.0 || fpclassify(lo) == FP_SUBNORMAL)
            continue;
        hi = nextafter(lo, INFINITY);
        if (!isfinite(hi))
            continue;
        mid = ((long double)lo + (long double)hi) / 2;
        snprintf(text, sizeof(text), "%.800Le", mid);
        check_number(text);
        /* Nudge: replace the exponent part with a digit just past the exact expansion. */
        e = strchr(text, 'e');
        assert_non_null(e);
        {
            char expo[16], tail[4096];

            snprintf(expo, sizeof(expo), "%s", e);
            snprintf(tail, sizeof(tail), "%.*s1%s", (int)(e - text), text, expo);
            check_number(tail);
        }
    }
}

/* Midpoints between adjacent subnormals, where the exact expansions are longest (~767 digits). */
static void test_numbers_vs_strtod_subnormal_midpoints(void **state)
{
    char text[4096];

    (void)state;
    if (LDBL_MANT_DIG < 64)
        skip();
    for (int i = 0; i < 200; i++) {
        uint64_t bits = rng() & ((UINT64_C(1) << 52) - 1);
        double lo, hi;
        char *e;

        memcpy(&lo, &bits, sizeof(lo));
        hi = nextafter(lo, INFINITY);
        snprintf(text, sizeof(text), "%.800Le", ((long double)lo + (long double)hi) / 2);
        check_number(text);
        e = strchr(text, 'e');
        assert_non_null(e);
        memmove(e + 1, e, strlen(e) + 1);
        *e = '1';
        check_number(text);
    }
}

/* ---- batch memory ---- */

static void test_arena_exhaustion(void **state)
{
    char msg[2048], tags[1500];
    tc_batch *b = tc_batch_new(100000, 300 * 1024);
    tc_reject r = TC_REJECT_NONE;
    size_t rows = 0;

    (void)state;
    assert_non_null(b);
    memset(tags, 'v', sizeof(tags) - 1);
    tags[sizeof(tags) - 1] = '\0';
    snprintf(msg, sizeof(msg), "{\"device_id\":\"dev\",\"timestamp\":0,\"tags\":{\"k\":\"%s\"}}",
             tags);
    for (;;) {
        assert_int_equal(tc_batch_row_begin(b), TC_OK);
        r = decode_into(b, msg, strlen(msg));
        if (r != TC_REJECT_NONE)
            break;
        tc_batch_row_commit(b);
        rows++;
    }
    assert_int_equal(r, TC_JSON_BATCH_FULL);
    assert_string_equal(D, "batch memory is full: flush and decode again");
    assert_true(rows > 100);
    assert_int_equal(b->n, rows);
    assert_slice(b->device_id[rows - 1], "dev");
    /* Flush and retry the same message: it fits now. */
    tc_batch_reset(b);
    assert_int_equal(tc_batch_row_begin(b), TC_OK);
    assert_int_equal(decode_into(b, msg, strlen(msg)), TC_REJECT_NONE);
    assert_slice(b->device_id[0], "dev");
    tc_batch_destroy(b);

    /* An arena that cannot hold the reading even when empty: retrying would loop forever. */
    b = tc_batch_new(10, 1024);
    assert_non_null(b);
    assert_int_equal(tc_batch_row_begin(b), TC_OK);
    assert_int_equal(decode_into(b, msg, strlen(msg)), TC_REJECT_TOO_LARGE);
    tc_batch_destroy(b);
}

/* Rejected readings take no arena space; a full batch of rows is reported as BATCH_FULL. */
static void test_batch_bookkeeping(void **state)
{
    tc_batch *b = tc_batch_new(2, 0);
    const char *ok = "{\"device_id\":\"a\",\"timestamp\":0,\"tags\":{\"k\":1},\"z\":2}";
    const char *bad = "{\"device_id\":\"aaaa\",\"x\":[1],\"tags\":{},\"y\":1}";

    (void)state;
    assert_non_null(b);
    for (int i = 0; i < 100; i++) {
        assert_int_equal(tc_batch_row_begin(b), TC_OK);
        assert_int_equal(decode_into(b, bad, strlen(bad)), TC_REJECT_MISSING_FIELD);
    }
    assert_int_equal(b->arena.used, 0);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(tc_batch_row_begin(b), TC_OK);
        assert_int_equal(decode_into(b, ok, strlen(ok)), TC_REJECT_NONE);
        tc_batch_row_commit(b);
    }
    assert_int_equal(decode_into(b, ok, strlen(ok)), TC_JSON_BATCH_FULL);
    assert_int_equal(b->n, 2);
    tc_batch_destroy(b);
}

/* Rows decoded one after the other keep their own values. */
static void test_rows_independent(void **state)
{
    char msg[256];

    (void)state;
    tc_batch_reset(B);
    for (int i = 0; i < T_ROWS; i++) {
        snprintf(msg, sizeof(msg),
                 "{\"device_id\":\"dev-%d\",\"timestamp\":%d,\"battery\":%d%s,\"u%d\":%d}", i, i, i,
                 i % 2 ? ",\"tags\":{\"i\":1}" : "", i, i);
        assert_int_equal(tc_batch_row_begin(B), TC_OK);
        assert_int_equal(decode_into(B, msg, strlen(msg)), TC_REJECT_NONE);
        tc_batch_row_commit(B);
    }
    for (int i = 0; i < T_ROWS; i++) {
        char want[32];

        snprintf(want, sizeof(want), "dev-%d", i);
        assert_slice(B->device_id[i], want);
        assert_int_equal(B->time_us[i], (int64_t)i * 1000);
        assert_true(B->metric[TC_M_BATTERY][i] == i);
        assert_int_equal(B->present[TC_M_TEMPERATURE][i], 0);
        assert_slice(B->tags[i], i % 2 ? "{\"i\":1}" : NULL);
        snprintf(want, sizeof(want), "{\"u%d\":%d}", i, i);
        assert_slice(B->extra[i], want);
    }
}

/* A detail buffer too small, or none at all, is handled. */
static void test_detail_buffer(void **state)
{
    char small[8];
    const char *msg = "{\"device_id\":5}";

    (void)state;
    tc_batch_reset(B);
    assert_int_equal(tc_batch_row_begin(B), TC_OK);
    assert_int_equal(tc_json_reading_decode(B, msg, strlen(msg), small, sizeof(small)),
                     TC_REJECT_WRONG_TYPE);
    assert_int_equal(strlen(small), sizeof(small) - 1);
    assert_int_equal(tc_json_reading_decode(B, msg, strlen(msg), NULL, 0), TC_REJECT_WRONG_TYPE);
    assert_int_equal(tc_json_reading_decode(B, msg, strlen(msg), small, 0), TC_REJECT_WRONG_TYPE);
    /* Keys quoted in details are sanitised to printable ASCII and cut. */
    expect(TC_REJECT_DUPLICATE_FIELD,
           with("\"\xc3\xa9\\n-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\":1,"
                "\"\xc3\xa9\\n-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\":1"));
    assert_string_equal(D, "duplicate field \"??\\n-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...\"");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sample_reading),
        cmocka_unit_test(test_metric_columns),
        cmocka_unit_test(test_null_and_absent_metrics),
        cmocka_unit_test(test_metric_values),
        cmocka_unit_test(test_metric_wrong_type),
        cmocka_unit_test(test_number_range),
        cmocka_unit_test(test_device_id),
        cmocka_unit_test(test_device_id_escapes),
        cmocka_unit_test(test_timestamp_rfc3339),
        cmocka_unit_test(test_timestamp_epoch_ms),
        cmocka_unit_test(test_timestamp_missing_and_types),
        cmocka_unit_test(test_tags),
        cmocka_unit_test(test_tags_jsonb_numbers),
        cmocka_unit_test(test_extra_fields),
        cmocka_unit_test(test_extra_fields_limit),
        cmocka_unit_test(test_duplicates),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_detail_messages),
        cmocka_unit_test(test_invalid_utf8),
        cmocka_unit_test(test_escapes),
        cmocka_unit_test(test_top_level),
        cmocka_unit_test(test_whitespace_everywhere),
        cmocka_unit_test(test_bom),
        cmocka_unit_test(test_deep_nesting),
        cmocka_unit_test(test_depth_limit),
        cmocka_unit_test(test_truncation),
        cmocka_unit_test(test_error_precedence),
        cmocka_unit_test(test_numbers_vs_strtod_edges),
        cmocka_unit_test(test_numbers_vs_strtod_random),
        cmocka_unit_test(test_numbers_vs_strtod_midpoints),
        cmocka_unit_test(test_numbers_vs_strtod_subnormal_midpoints),
        cmocka_unit_test(test_arena_exhaustion),
        cmocka_unit_test(test_batch_bookkeeping),
        cmocka_unit_test(test_rows_independent),
        cmocka_unit_test(test_detail_buffer),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
