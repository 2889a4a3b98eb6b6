/*
 * test_simulator.c -- tc_sim_format: determinism, and that what it calls valid passes the real
 * decoder and validator while every kind of invalid reading is refused by them, for the reason its
 * name promises.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "core/batch.h"
#include "core/config.h"
#include "core/reject.h"
#include "core/timeutil.h"
#include "ingest/simulator.h"
#include "process/validate.h"
#include "schema/json_reading.h"

#define BUF_MAX 1024
/* The number of invalid kinds the simulator documents (tc_sim_invalid_name 0..13). */
#define KINDS 14

typedef struct fixture {
    tc_config *cfg;
    tc_batch *b;
    int64_t now_us;
    char detail[TC_REJECT_DETAIL_MAX];
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));

    if (!f)
        return -1;
    f->cfg = tc_config_new();
    f->b = tc_batch_new(1, 0);
    if (!f->cfg || !f->b) {
        tc_config_destroy(f->cfg);
        tc_batch_destroy(f->b);
        free(f);
        return -1;
    }
    f->now_us = tc_time_now_us();
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

static tc_sim_options options(uint64_t seed, double invalid_ratio)
{
    tc_sim_options o = {
        .devices = 25,
        .count = 0,
        .rate = 0,
        .invalid_ratio = invalid_ratio,
        .seed = seed,
        .start_us = 0,
        .cadence_ms = 1000,
    };
    return o;
}

/* A start time an hour ago: every reading of the tests (at most 400 steps of 1 s) is recent. */
static int64_t recent_start(const fixture *f)
{
    return f->now_us - INT64_C(3600000000);
}

/* Decode and validate one message as the pipeline does; the row is left uncommitted. */
static tc_reject classify(fixture *f, const char *buf, size_t len)
{
    tc_reject r;

    tc_batch_reset(f->b);
    assert_int_equal(tc_batch_row_begin(f->b), TC_OK);
    f->detail[0] = '\0';
    r = tc_json_reading_decode(f->b, buf, len, f->detail, sizeof(f->detail));
    assert_int_not_equal(r, TC_JSON_BATCH_FULL);
    if (r != TC_REJECT_NONE)
        return r;
    return tc_validate_row(f->b, f->b->n, &f->cfg->limits, f->now_us, f->detail, sizeof(f->detail));
}

static int kind_index(const char *name)
{
    for (int k = 0; tc_sim_invalid_name(k); k++) {
        if (strcmp(tc_sim_invalid_name(k), name) == 0)
            return k;
    }
    fail_msg("no invalid kind named \"%s\"", name);
    return -1;
}

static void test_invalid_names(void **state)
{
    int k;

    (void)state;
    for (k = 0; tc_sim_invalid_name(k); k++) {
        assert_true(strlen(tc_sim_invalid_name(k)) > 0);
        for (int j = 0; j < k; j++)
            assert_string_not_equal(tc_sim_invalid_name(k), tc_sim_invalid_name(j));
    }
    assert_int_equal(k, KINDS);
    assert_null(tc_sim_invalid_name(-1));
    assert_null(tc_sim_invalid_name(KINDS));
}

static void test_deterministic(void **state)
{
    fixture *f = *state;
    tc_sim_options a = options(42, 0.1), c = options(43, 0.1);
    char b1[BUF_MAX], b2[BUF_MAX];
    int differ = 0, k1, k2;
    int64_t start = recent_start(f);

    for (uint64_t i = 0; i < 500; i++) {
        size_t n1 = tc_sim_format(&a, i, start, b1, sizeof(b1), &k1);
        size_t n2;

        memset(b2, 0, sizeof(b2));
        n2 = tc_sim_format(&a, i, start, b2, sizeof(b2), &k2);
        assert_int_equal(n1, n2);
        assert_int_equal(k1, k2);
        assert_memory_equal(b1, b2, n1);
        /* Another seed gives another fleet. */
        n2 = tc_sim_format(&c, i, start, b2, sizeof(b2), &k2);
        if (n1 != n2 || memcmp(b1, b2, n1) != 0)
            differ++;
    }
    assert_true(differ > 450);
    /* Another start time shifts the timestamps (of valid readings; some invalid kinds carry a
     * fixed one). */
    a.invalid_ratio = 0;
    tc_sim_format(&a, 0, start, b1, sizeof(b1), &k1);
    tc_sim_format(&a, 0, start + INT64_C(86400000000), b2, sizeof(b2), &k2);
    assert_int_equal(k1, -1);
    assert_string_not_equal(b1, b2);
}

/* Reading i does not depend on which readings were generated before it. */
static void test_random_access(void **state)
{
    fixture *f = *state;
    tc_sim_options o = options(7, 0.3);
    char first[BUF_MAX], again[BUF_MAX];
    int k1, k2;
    size_t n1, n2;

    n1 = tc_sim_format(&o, 333, recent_start(f), first, sizeof(first), &k1);
    for (uint64_t i = 0; i < 333; i++)
        tc_sim_format(&o, i, recent_start(f), again, sizeof(again), &k2);
    n2 = tc_sim_format(&o, 333, recent_start(f), again, sizeof(again), &k2);
    assert_int_equal(n1, n2);
    assert_int_equal(k1, k2);
    assert_memory_equal(first, again, n1);
}

static void test_valid_readings_pass(void **state)
{
    fixture *f = *state;
    tc_sim_options o = options(1, 0.0);
    char buf[BUF_MAX];
    int kind;

    for (uint64_t i = 0; i < 2000; i++) {
        size_t n = tc_sim_format(&o, i, recent_start(f), buf, sizeof(buf), &kind);
        tc_reject r;

        assert_int_equal(kind, -1);
        assert_true(n > 0 && n < sizeof(buf));
        assert_int_equal(strlen(buf), n);
        r = classify(f, buf, n);
        if (r != TC_REJECT_NONE)
            fail_msg("valid reading %llu refused (%s: %s): %s", (unsigned long long)i,
                     tc_reject_name(r), f->detail, buf);
        /* Every metric, the device id and the tags are there. */
        for (int m = 0; m < TC_METRIC__COUNT; m++)
            assert_int_equal(f->b->present[m][0], 1);
        assert_non_null(f->b->device_id[0].ptr);
        assert_true(f->b->device_id[0].len > 0);
        assert_non_null(f->b->tags[0].ptr);
        assert_null(f->b->extra[0].ptr);
    }
}

/* The device id and timestamp follow from (device, step): reading i is device i % devices. */
static void test_fleet_layout(void **state)
{
    fixture *f = *state;
    tc_sim_options o = options(5, 0.0);
    char buf[BUF_MAX], want[32];
    int kind;
    int64_t start = recent_start(f), prev[25];

    for (uint64_t i = 0; i < 250; i++) {
        size_t n = tc_sim_format(&o, i, start, buf, sizeof(buf), &kind);
        uint64_t dev = i % 25;

        assert_int_equal(classify(f, buf, n), TC_REJECT_NONE);
        snprintf(want, sizeof(want), "sensor-%05llu", (unsigned long long)dev);
        assert_int_equal(f->b->device_id[0].len, strlen(want));
        assert_memory_equal(f->b->device_id[0].ptr, want, strlen(want));
        /* Timestamps are whole milliseconds, within start .. start + (step + 2) cadences, and
         * increase from one step of a device to the next. */
        assert_int_equal(f->b->time_us[0] % 1000, 0);
        assert_true(f->b->time_us[0] >= start - 1000000);
        assert_true(f->b->time_us[0] <= start + (int64_t)(i / 25 + 2) * 1000000);
        if (i >= 25)
            assert_true(f->b->time_us[0] > prev[dev]);
        prev[dev] = f->b->time_us[0];
    }
}

static void test_valid_values_within_limits(void **state)
{
    fixture *f = *state;
    tc_sim_options o = options(2024, 0.0);
    const tc_limits *lim = &f->cfg->limits;
    char buf[BUF_MAX];
    int kind;
    double lo[TC_METRIC__COUNT], hi[TC_METRIC__COUNT];

    o.devices = 100; /* 10,000 readings = 100 steps of 100 devices */
    for (int m = 0; m < TC_METRIC__COUNT; m++) {
        lo[m] = 1e300;
        hi[m] = -1e300;
    }
    for (uint64_t i = 0; i < 10000; i++) {
        size_t n = tc_sim_format(&o, i, recent_start(f), buf, sizeof(buf), &kind);

        assert_int_equal(kind, -1);
        assert_int_equal(classify(f, buf, n), TC_REJECT_NONE);
        for (int m = 0; m < TC_METRIC__COUNT; m++) {
            double v = f->b->metric[m][0];

            if (!(v >= lim->min[m] && v <= lim->max[m]))
                fail_msg("reading %llu: %s %.17g outside [%g, %g]", (unsigned long long)i,
                         tc_metric_names[m], v, lim->min[m], lim->max[m]);
            lo[m] = v < lo[m] ? v : lo[m];
            hi[m] = v > hi[m] ? v : hi[m];
        }
    }
    /* The series vary: not a constant fleet. */
    for (int m = 0; m < TC_METRIC__COUNT; m++)
        assert_true(hi[m] - lo[m] > 1.0);
}

/* With invalid_ratio 0 nothing is invalid; with 1 everything is. */
static void test_invalid_ratio_extremes(void **state)
{
    fixture *f = *state;
    tc_sim_options none = options(3, 0.0), all = options(3, 1.0), some = options(3, 0.25);
    char buf[BUF_MAX];
    int kind, invalid = 0;

    for (uint64_t i = 0; i < 2000; i++) {
        tc_sim_format(&none, i, recent_start(f), buf, sizeof(buf), &kind);
        assert_int_equal(kind, -1);
        tc_sim_format(&all, i, recent_start(f), buf, sizeof(buf), &kind);
        assert_true(kind >= 0 && kind < KINDS);
        tc_sim_format(&some, i, recent_start(f), buf, sizeof(buf), &kind);
        invalid += kind >= 0;
    }
    /* 25% of 2000 is 500; the binomial standard deviation is ~19. */
    assert_true(invalid > 400 && invalid < 600);
}

static const struct {
    const char *name;
    tc_reject want; /* TC_REJECT__COUNT: any refusal */
} expected[] = {
    {"truncated_json", TC_REJECT_MALFORMED},
    {"missing_device_id", TC_REJECT_MISSING_FIELD},
    {"missing_timestamp", TC_REJECT_MISSING_FIELD},
    {"temperature_too_high", TC_REJECT_OUT_OF_RANGE},
    {"humidity_negative", TC_REJECT_OUT_OF_RANGE},
    {"bad_timestamp", TC_REJECT_INVALID_TIMESTAMP},
    {"future_timestamp", TC_REJECT_TIMESTAMP_FUTURE},
    {"wrong_type", TC_REJECT_WRONG_TYPE},
    {"invalid_utf8", TC_REJECT_INVALID_UTF8},
    {"latitude_out_of_range", TC_REJECT_OUT_OF_RANGE},
    {"not_an_object", TC_REJECT_NOT_OBJECT},
    {"nan_literal", TC_REJECT_MALFORMED},
    {"ancient_timestamp", TC_REJECT_TIMESTAMP_TOO_OLD},
    {"empty_message", TC_REJECT_EMPTY},
};

static void test_invalid_kinds_refused(void **state)
{
    fixture *f = *state;
    tc_sim_options o = options(99, 1.0);
    char buf[BUF_MAX];
    int seen[KINDS] = {0}, want_of_kind[KINDS];
    int kind;

    assert_int_equal(sizeof(expected) / sizeof(expected[0]), KINDS);
    for (int k = 0; k < KINDS; k++)
        want_of_kind[k] = -1;
    for (size_t e = 0; e < KINDS; e++)
        want_of_kind[kind_index(expected[e].name)] = (int)e;
    for (int k = 0; k < KINDS; k++)
        assert_int_not_equal(want_of_kind[k], -1);

    for (uint64_t i = 0; i < 2000; i++) {
        size_t n = tc_sim_format(&o, i, recent_start(f), buf, sizeof(buf), &kind);
        tc_reject r;
        int e;

        assert_true(kind >= 0 && kind < KINDS);
        seen[kind]++;
        e = want_of_kind[kind];
        if (strcmp(expected[e].name, "empty_message") == 0)
            assert_int_equal(n, 0);
        else
            assert_true(n > 0);
        r = classify(f, buf, n);
        if (r == TC_REJECT_NONE)
            fail_msg("invalid reading %llu of kind %s was accepted: %.*s", (unsigned long long)i,
                     expected[e].name, (int)n, buf);
        if (r != expected[e].want)
            fail_msg("reading %llu of kind %s refused as %s (%s), want %s: %.*s",
                     (unsigned long long)i, expected[e].name, tc_reject_name(r), f->detail,
                     tc_reject_name(expected[e].want), (int)n, buf);
    }
    for (int k = 0; k < KINDS; k++) {
        if (seen[k] == 0)
            fail_msg("kind %s never produced in 2000 readings", tc_sim_invalid_name(k));
    }
}

/* The detail of a refused reading says what is wrong with it. */
static void test_invalid_details(void **state)
{
    fixture *f = *state;
    tc_sim_options o = options(11, 1.0);
    int temp = kind_index("temperature_too_high"), lat = kind_index("latitude_out_of_range");
    int found = 0, kind;
    char buf[BUF_MAX];

    for (uint64_t i = 0; i < 2000; i++) {
        size_t n = tc_sim_format(&o, i, recent_start(f), buf, sizeof(buf), &kind);

        if (kind != temp && kind != lat)
            continue;
        assert_int_equal(classify(f, buf, n), TC_REJECT_OUT_OF_RANGE);
        assert_non_null(strstr(f->detail, kind == temp ? "temperature" : "latitude"));
        assert_non_null(strstr(f->detail, "outside"));
        found++;
    }
    assert_true(found > 0);
}

/* A buffer too small for the reading is filled, NUL-terminated and never overrun. */
static void test_small_buffer(void **state)
{
    fixture *f = *state;
    tc_sim_options o = options(1, 0.0);
    char buf[64];
    int kind;
    size_t n;

    memset(buf, 'X', sizeof(buf));
    n = tc_sim_format(&o, 0, recent_start(f), buf, 32, &kind);
    assert_int_equal(n, 31);
    assert_int_equal(buf[31], '\0');
    assert_int_equal(strlen(buf), 31);
    assert_int_equal(buf[32], 'X');
    assert_memory_equal(buf, "{\"device_id\":\"sensor-00000\",\"ti", 31);
}

/* printf's text of reading r of device devid at ts: what the simulator sent before it wrote its
 * numbers by hand, and the reference the hand-written text is held to. */
static int printf_text(const tc_sim_reading *r, const char *devid, const char *ts, char *buf,
                       size_t cap)
{
    static const char *const sites[] = {"berlin-1", "paris-2", "oslo-1", "lima-3", "pune-1"};

    return snprintf(buf, cap,
                    "{\"device_id\":\"%s\",\"timestamp\":\"%s\",\"temperature\":%.2f,"
                    "\"humidity\":%.2f,\"pressure\":%.2f,\"battery\":%.2f,\"latitude\":%.5f,"
                    "\"longitude\":%.5f,\"tags\":{\"site\":\"%s\",\"fw\":\"1.%d.0\"}}",
                    devid, ts, r->metric[0], r->metric[1], r->metric[2], r->metric[3], r->metric[4],
                    r->metric[5], sites[r->device % 5], (int)(r->device % 7));
}

/* Every valid reading's JSON text is the bytes printf writes for its values, anomalies' values
 * (spikes, drifts) included, over fleets whose positions span both hemispheres. */
static void test_json_text_is_printf_text(void **state)
{
    fixture *f = *state;
    tc_sim_anomalies an;
    char errstr[256], buf[BUF_MAX], want[BUF_MAX], ts[64], devid[32];
    int checked = 0;

    assert_int_equal(
        tc_sim_anomalies_parse("spike=0.05,drift=0.05,stuck=0.02", &an, errstr, sizeof(errstr)),
        TC_OK);
    for (uint64_t seed = 1; seed <= 4; seed++) {
        tc_sim_options o = options(seed, 0.0);
        o.devices = 400;
        o.count = 400 * 50;
        o.anomalies = seed % 2 ? &an : NULL;
        for (uint64_t i = 0; i < o.count; i++) {
            tc_sim_reading r;
            int kind;
            size_t n = tc_sim_format(&o, i, recent_start(f), buf, sizeof(buf), &kind);

            assert_int_equal(kind, -1);
            tc_sim_reading_at(&o, i, recent_start(f), &r);
            tc_time_format_rfc3339(r.t_us, ts, sizeof(ts));
            snprintf(devid, sizeof(devid), "sensor-%05llu", (unsigned long long)r.device);
            assert_int_equal(n, (size_t)printf_text(&r, devid, ts, want, sizeof(want)));
            assert_string_equal(buf, want);
            checked++;
        }
    }
    assert_int_equal(checked, 4 * 400 * 50);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_invalid_names),
        T(test_deterministic),
        T(test_random_access),
        T(test_valid_readings_pass),
        T(test_fleet_layout),
        T(test_valid_values_within_limits),
        T(test_invalid_ratio_extremes),
        T(test_invalid_kinds_refused),
        T(test_invalid_details),
        T(test_small_buffer),
        T(test_json_text_is_printf_text),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
