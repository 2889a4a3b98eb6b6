/*
 * test_features_online.c -- the online features sink's parts that need no database: the
 * constructor's refusals (no definitions, invalid ones), the windows cap (a batch past it is
 * refused, retriably while a write can make room, for good when the map was empty), a flush with
 * nothing held (no write, not busy), and an unreachable PostgreSQL at open as a retriable error.
 * What reaches PostgreSQL (the merge, the fence, kill -9) is tests/integration/
 * test_features_online.py's.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "core/batch.h"
#include "core/config.h"
#include "features/sink_online.h"

static tc_config *config(const char *defs, const char *max_windows)
{
    char errstr[TC_ERRSTR_MAX];
    tc_config *cfg = tc_config_new();

    assert_non_null(cfg);
    assert_int_equal(tc_config_set(cfg, "features.definitions", defs, errstr, sizeof(errstr)),
                     TC_OK);
    assert_int_equal(
        tc_config_set(cfg, "features.online_max_windows", max_windows, errstr, sizeof(errstr)),
        TC_OK);
    /* Batches of at most 3 readings: the caps below (6 windows, 2 definitions) hold one. */
    assert_int_equal(tc_config_set(cfg, "pipeline.batch_size", "3", errstr, sizeof(errstr)), TC_OK);
    assert_int_equal(tc_config_set(cfg, "pipeline.batch_size_max", "3", errstr, sizeof(errstr)),
                     TC_OK);
    /* Nothing listens on port 1: a connection fails at once. */
    assert_int_equal(tc_config_set(cfg, "postgres.dsn", "host=127.0.0.1 port=1 connect_timeout=2",
                                   errstr, sizeof(errstr)),
                     TC_OK);
    return cfg;
}

static void test_refuses_no_or_bad_definitions(void **state)
{
    char errstr[TC_ERRSTR_MAX];
    tc_sink sink;
    tc_config *cfg = config("", "100");

    (void)state;
    assert_int_equal(tc_feat_online_sink_new(cfg, &sink, errstr, sizeof(errstr)), TC_ERR_CONFIG);
    assert_non_null(strstr(errstr, "features.definitions is empty"));
    tc_config_destroy(cfg);

    cfg = config("a = mean(temperature, 1h)\nb = median(temperature, 1h)", "100");
    assert_int_equal(tc_feat_online_sink_new(cfg, &sink, errstr, sizeof(errstr)), TC_ERR_CONFIG);
    assert_non_null(strstr(errstr, "features.definitions:2:"));
    tc_config_destroy(cfg);
}

/* rows readings of devices "d-<first>" .. of partition 0, from offset 0, a minute apart. */
static void fill(tc_batch *b, int first, int rows)
{
    char id[32];

    tc_batch_reset(b);
    for (int i = 0; i < rows; i++) {
        size_t len = (size_t)snprintf(id, sizeof(id), "d-%d", first + i);
        char *copy = tc_arena_alloc(&b->arena, len);

        assert_int_equal(tc_batch_row_begin(b), TC_OK);
        assert_non_null(copy);
        memcpy(copy, id, len);
        b->device_id[b->n] = (tc_slice){copy, (uint32_t)len};
        b->time_us[b->n] = 1700000000000000LL + i * 60000000LL;
        b->metric[TC_M_TEMPERATURE][b->n] = 20.0 + i;
        b->present[TC_M_TEMPERATURE][b->n] = 1;
        b->partition[b->n] = 0;
        b->offset[b->n] = i;
        tc_batch_row_commit(b);
    }
}

static tc_err append(tc_sink *sink, tc_batch *b, char *errstr, size_t errstr_size)
{
    uint8_t mask[16];
    tc_partition_offset adv = {0, (int64_t)b->n};
    tc_sink_rows rows = {.batch = b, .mask = mask, .nrows = b->n, .advance = &adv, .nadvance = 1};

    memset(mask, 1, sizeof(mask));
    return sink->ops->append(sink->ctx, &rows, errstr, errstr_size);
}

static void test_the_windows_cap(void **state)
{
    char errstr[TC_ERRSTR_MAX];
    tc_sink sink;
    tc_sink_stats st;
    tc_config *cfg = config("a = mean(temperature, 1h); b = count(temperature, 1d)", "6");
    tc_batch *b = tc_batch_new(16, 0);
    int busy = 1;

    (void)state;
    assert_non_null(b);
    assert_int_equal(tc_feat_online_sink_new(cfg, &sink, errstr, sizeof(errstr)), TC_OK);
    assert_string_equal(sink.name, "features");

    /* Nothing held: a forced flush writes nothing (no database needed) and is not busy. */
    assert_int_equal(sink.ops->flush(sink.ctx, 0, 1, &busy, errstr, sizeof(errstr)), TC_OK);
    assert_int_equal(busy, 0);

    /* Two devices, two definitions: 4 windows of the 6 allowed. */
    fill(b, 0, 2);
    assert_int_equal(append(&sink, b, errstr, sizeof(errstr)), TC_OK);
    sink.ops->stats(sink.ctx, &st);
    assert_int_equal(st.rows, 2);
    assert_int_equal(st.pending, 4);
    /* The same windows again: no new one. */
    assert_int_equal(append(&sink, b, errstr, sizeof(errstr)), TC_OK);
    sink.ops->stats(sink.ctx, &st);
    assert_int_equal(st.pending, 4);

    /* Two more devices need 4 more: refused, retriably (a write makes room). */
    fill(b, 10, 2);
    assert_int_equal(append(&sink, b, errstr, sizeof(errstr)), TC_ERR_FULL);
    assert_true(tc_err_is_retriable(TC_ERR_FULL));
    assert_non_null(strstr(errstr, "more than 6 windows held"));
    assert_non_null(strstr(errstr, "partition 0 offset"));
    assert_non_null(strstr(errstr, "features.online_max_windows"));

    /* recover drops what is held; reading the marks fails: PostgreSQL is unreachable, which is
     * worth a retry. */
    {
        int32_t part = 0;
        int64_t next = 0;
        tc_err err = sink.ops->recover(sink.ctx, &part, 1, &next, errstr, sizeof(errstr));

        assert_int_equal(err, TC_ERR_DB_CONN);
        assert_true(tc_err_is_retriable(err));
        assert_non_null(strstr(errstr, "postgres.dsn"));
    }
    sink.ops->stats(sink.ctx, &st);
    assert_int_equal(st.pending, 0);

    /* The widest batch there can be fits the empty map. */
    fill(b, 20, 3);
    assert_int_equal(append(&sink, b, errstr, sizeof(errstr)), TC_OK);
    sink.ops->stats(sink.ctx, &st);
    assert_int_equal(st.pending, 6);

    sink.ops->close(sink.ctx);
    tc_batch_destroy(b);
    tc_config_destroy(cfg);
}

/* A cap below what one batch brings is raised to it: a batch arriving at an empty map could
 * never be taken otherwise (no write empties the map further), and the run stopped on it. */
static void test_a_cap_below_one_batch_is_raised(void **state)
{
    char errstr[TC_ERRSTR_MAX];
    tc_sink sink;
    tc_sink_stats st;
    tc_config *cfg = config("a = mean(temperature, 1h); b = count(temperature, 1d)", "1");
    tc_batch *b = tc_batch_new(16, 0);

    (void)state;
    assert_non_null(b);
    assert_int_equal(tc_feat_online_sink_new(cfg, &sink, errstr, sizeof(errstr)), TC_OK);
    fill(b, 0, 3); /* 3 readings x 2 definitions: 6 windows, the raised cap */
    assert_int_equal(append(&sink, b, errstr, sizeof(errstr)), TC_OK);
    sink.ops->stats(sink.ctx, &st);
    assert_int_equal(st.pending, 6);
    /* One more device is past it: retriable, as any full map. */
    fill(b, 10, 1);
    assert_int_equal(append(&sink, b, errstr, sizeof(errstr)), TC_ERR_FULL);
    assert_non_null(strstr(errstr, "more than 6 windows held"));

    sink.ops->close(sink.ctx);
    tc_batch_destroy(b);
    tc_config_destroy(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refuses_no_or_bad_definitions),
        cmocka_unit_test(test_the_windows_cap),
        cmocka_unit_test(test_a_cap_below_one_batch_is_raised),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
