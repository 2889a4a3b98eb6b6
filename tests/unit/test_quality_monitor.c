/*
 * test_quality_monitor.c -- the quality monitor's engine without a database (a dry monitor,
 * dsn ""): lanes per partition, marks that move with the batches and become durable at a flush,
 * revocation dropping exactly the partitions' lanes, rows of partitions not held refused, dead
 * letters counted once (not again below a lane's mark), the flush due rules, and the /metrics
 * page: every family present, no label but the bounded ones. What reaches PostgreSQL is checked
 * by tests/integration/test_quality_sink.py.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/batch.h"
#include "core/deadletter.h"
#include "quality/monitor.h"

#define T0 INT64_C(1764900000000000)

static tc_qmon *dry_monitor(void)
{
    char errstr[TC_ERRSTR_MAX] = "";
    tc_qmon_options o;
    tc_qmon *m;

    tc_qmon_options_default(&o);
    o.dsn = "";
    o.max_devices = 16;
    m = tc_qmon_new(&o, errstr, sizeof(errstr));
    if (!m)
        fail_msg("%s", errstr);
    return m;
}

/* n readings of devices d0..d3 at 10 s steps from step, partition = device % 2. */
static void fill(tc_batch *b, int step, int n)
{
    tc_batch_reset(b);
    for (int k = 0; k < n; k++) {
        size_t r = b->n;
        char id[8];
        int d = k % 4;

        snprintf(id, sizeof(id), "d%d", d);
        assert_int_equal(tc_batch_row_begin(b), TC_OK);
        b->time_us[r] = T0 + (int64_t)(step + k / 4) * 10000000;
        b->device_id[r].ptr = tc_arena_strndup(&b->arena, id, strlen(id));
        b->device_id[r].len = (uint32_t)strlen(id);
        b->metric[0][r] = 20.0 + (k % 7) * 0.1;
        b->present[0][r] = 1;
        b->partition[r] = d % 2;
        b->offset[r] = step + k;
        tc_batch_row_commit(b);
    }
}

static void test_lanes_marks_and_revocation(void **state)
{
    char errstr[TC_ERRSTR_MAX] = "";
    int32_t parts[2] = {0, 1};
    int64_t next[2];
    tc_batch *b = tc_batch_new(64, 0);
    tc_qmon *m = dry_monitor();
    tc_partition_offset marks[2] = {{0, 40}, {1, 41}};
    tc_qmon_stats st;

    (void)state;
    assert_int_equal(tc_qmon_open(m, parts, 2, next, errstr, sizeof(errstr)), TC_OK);
    assert_true(next[0] == TC_QMON_MARK_ABSENT && next[1] == TC_QMON_MARK_ABSENT);
    assert_int_equal(tc_qmon_pending(m), 0);
    fill(b, 0, 40);
    tc_qmon_add(m, b, NULL, NULL, marks, 2, T0 + 1000000000);
    tc_qmon_get_stats(m, &st);
    assert_int_equal(st.readings, 40);
    assert_int_equal(st.lanes, 2);
    assert_int_equal(st.devices, 4);
    assert_true(tc_qmon_pending(m));
    /* Taken, not durable, until a flush. */
    assert_true(tc_qmon_durable(m, 0) == TC_QMON_MARK_ABSENT);
    assert_int_equal(tc_qmon_flush(m, errstr, sizeof(errstr)), TC_OK);
    assert_true(tc_qmon_durable(m, 0) == 40 && tc_qmon_durable(m, 1) == 41);
    assert_int_equal(tc_qmon_pending(m), 0);
    tc_qmon_get_stats(m, &st);
    assert_int_equal(st.flushes, 1);
    assert_int_equal(st.readings_durable, 40);

    /* Partition 1 goes: its rows are refused, partition 0's counted. */
    tc_qmon_revoke(m, &parts[1], 1);
    assert_true(tc_qmon_durable(m, 1) == TC_QMON_MARK_ABSENT);
    fill(b, 40, 8);
    tc_qmon_add(m, b, NULL, NULL, NULL, 0, T0);
    tc_qmon_get_stats(m, &st);
    assert_int_equal(st.lanes, 1);
    assert_int_equal(st.readings, 44);
    assert_int_equal(st.refused, 4);

    /* A mask keeps rows from the monitor; the reset forgets every lane. */
    {
        uint8_t mask[8] = {1, 0, 0, 0, 0, 0, 0, 0};
        tc_qmon_add(m, b, mask, NULL, NULL, 0, T0);
        tc_qmon_get_stats(m, &st);
        assert_int_equal(st.readings, 45);
    }
    tc_qmon_reset(m);
    tc_qmon_get_stats(m, &st);
    assert_int_equal(st.lanes, 0);
    assert_int_equal(tc_qmon_pending(m), 0);
    tc_qmon_destroy(m);
    tc_batch_destroy(b);
}

static void test_dead_letters_once(void **state)
{
    char errstr[TC_ERRSTR_MAX] = "";
    int32_t part = 0;
    int64_t next;
    tc_qmon *m = dry_monitor();
    tc_dlq_batch *d = tc_dlq_batch_new(8, 0);
    tc_partition_offset mark = {0, 3};
    tc_qmon_stats st;

    (void)state;
    assert_int_equal(tc_qmon_open(m, &part, 1, &next, errstr, sizeof(errstr)), TC_OK);
    assert_int_equal(
        tc_dlq_batch_add(d, TC_REJECT_DUPLICATE, "validate", "again", "{}", 2, "d0", 2, 0, 1, T0),
        TC_OK);
    assert_int_equal(
        tc_dlq_batch_add(d, TC_REJECT_MALFORMED, "decode", "bad", "{", 1, NULL, 0, 0, 2, T0),
        TC_OK);
    /* A partition not held: not this member's. */
    assert_int_equal(
        tc_dlq_batch_add(d, TC_REJECT_MALFORMED, "decode", "bad", "{", 1, NULL, 0, 5, 2, T0),
        TC_OK);
    tc_qmon_add(m, NULL, NULL, d, &mark, 1, T0);
    tc_qmon_get_stats(m, &st);
    assert_int_equal(st.dead_letters, 2);
    assert_int_equal(st.dead_by_reason[TC_REJECT_DUPLICATE], 1);
    assert_int_equal(st.dead_by_reason[TC_REJECT_MALFORMED], 1);
    assert_true(tc_qmon_due(m, T0) || tc_qmon_pending(m));
    /* The same letters again (a sink catching up below its mark): not counted twice. */
    tc_qmon_add(m, NULL, NULL, d, &mark, 1, T0);
    tc_qmon_get_stats(m, &st);
    assert_int_equal(st.dead_letters, 2);
    tc_qmon_destroy(m);
    tc_dlq_batch_destroy(d);
}

static void test_metrics_page(void **state)
{
    tc_qmon_stats st;
    tc_jbuf b;
    const char *families[] = {"thermocline_quality_readings_total",
                              "thermocline_quality_dead_letters_total{reason=\"duplicate\"} 3",
                              ("thermocline_quality_findings_opened_total{kind=\"spike\","
                               "source=\"detector\"} 2"),
                              "thermocline_quality_findings_open 5",
                              "thermocline_quality_delay_seconds{quantile=\"0.99\"}",
                              "thermocline_quality_rules_reloads_total{result=\"refused\"} 1",
                              "thermocline_quality_last_flush_timestamp_seconds"};

    (void)state;
    memset(&st, 0, sizeof(st));
    st.readings = 10;
    st.dead_by_reason[TC_REJECT_DUPLICATE] = 3;
    st.opened_by_kind[0] = 2;
    st.open_now = 5;
    st.reloads_refused = 1;
    tc_qm_sketch_add(&st.delay, 250);
    tc_jbuf_init(&b, 0);
    tc_qmon_render_metrics(&st, &b);
    assert_false(tc_jbuf_failed(&b));
    for (size_t i = 0; i < sizeof(families) / sizeof(families[0]); i++)
        if (!strstr(b.data, families[i]))
            fail_msg("no %s in\n%s", families[i], b.data);
    /* Bounded labels only. */
    for (const char *p = b.data; (p = strchr(p, '{')) != NULL; p++)
        assert_true(!strncmp(p, "{reason=", 8) || !strncmp(p, "{kind=", 6) ||
                    !strncmp(p, "{quantile=", 10) || !strncmp(p, "{result=", 8));
    tc_jbuf_free(&b);
}

/* The sink's flush: started, then polled. A dry monitor (no database, no writer thread) is done
 * at once; nothing moves before the start, and a poll with nothing under way reports TC_OK. */
static void test_flush_start_and_poll(void **state)
{
    char errstr[TC_ERRSTR_MAX] = "";
    int32_t parts[2] = {0, 1};
    int64_t next[2];
    tc_batch *b = tc_batch_new(64, 0);
    tc_qmon *m = dry_monitor();
    tc_partition_offset marks[2] = {{0, 20}, {1, 21}};
    tc_qmon_stats st;
    tc_err err = TC_ERR_DB;

    (void)state;
    assert_int_equal(tc_qmon_open(m, parts, 2, next, errstr, sizeof(errstr)), TC_OK);
    assert_int_equal(tc_qmon_flush_poll(m, 0, &err, errstr, sizeof(errstr)), 0);
    assert_int_equal(err, TC_OK);
    fill(b, 0, 20);
    tc_qmon_add(m, b, NULL, NULL, marks, 2, T0 + 1000000000);
    assert_true(tc_qmon_durable(m, 0) == TC_QMON_MARK_ABSENT);
    assert_int_equal(tc_qmon_flush_start(m, errstr, sizeof(errstr)), TC_OK);
    assert_int_equal(tc_qmon_flushing(m), 0);
    assert_true(tc_qmon_durable(m, 0) == 20 && tc_qmon_durable(m, 1) == 21);
    assert_int_equal(tc_qmon_pending(m), 0);
    assert_int_equal(tc_qmon_flush_poll(m, 1, &err, errstr, sizeof(errstr)), 0);
    assert_int_equal(err, TC_OK);
    tc_qmon_get_stats(m, &st);
    assert_int_equal(st.flushes, 1);
    assert_int_equal(st.readings_durable, 20);
    tc_qmon_destroy(m);
    tc_batch_destroy(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lanes_marks_and_revocation),
        cmocka_unit_test(test_flush_start_and_poll),
        cmocka_unit_test(test_dead_letters_once),
        cmocka_unit_test(test_metrics_page),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
