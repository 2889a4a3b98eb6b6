/*
 * test_kafka_plan.c -- the replication a created topic gets (tc_kafka_topic_plan).
 *
 * The plan is what keeps one configuration valid on a single development broker and on a
 * three-broker cluster: the replication factor is capped by the brokers the cluster reports (a
 * higher one makes CreateTopics fail), and min.insync.replicas by the replication factor (a higher
 * one makes every acks=all write fail with NOT_ENOUGH_REPLICAS). Each case states the numbers a
 * broker would accept, worked out by hand.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "ingest/kafka.h"

static void expect_plan(int64_t rf, int64_t isr, int brokers, int want_rf, int want_isr,
                        int rf_capped, int isr_capped)
{
    tc_topic_plan p = tc_kafka_topic_plan(rf, isr, brokers);

    assert_int_equal(p.replication_factor, want_rf);
    assert_int_equal(p.min_insync_replicas, want_isr);
    assert_int_equal(!!p.rf_capped, rf_capped);
    assert_int_equal(!!p.isr_capped, isr_capped);
}

/* The defaults (3, 2) on a three-broker cluster and on bigger ones: taken as they are. */
static void test_defaults_on_a_cluster(void **state)
{
    (void)state;
    expect_plan(3, 2, 3, 3, 2, 0, 0);
    expect_plan(3, 2, 5, 3, 2, 0, 0);
}

/* The defaults on one development broker: one replica, and one in sync (not two, which no write
 * could ever reach). */
static void test_defaults_on_one_broker(void **state)
{
    (void)state;
    expect_plan(3, 2, 1, 1, 1, 1, 1);
}

/* Two brokers: two replicas, both in sync. */
static void test_two_brokers(void **state)
{
    (void)state;
    expect_plan(3, 2, 2, 2, 2, 1, 0);
}

/* A min.insync above the replication factor asked for is lowered even with brokers to spare. */
static void test_isr_above_rf(void **state)
{
    (void)state;
    expect_plan(2, 3, 5, 2, 2, 0, 1);
    expect_plan(1, 1, 3, 1, 1, 0, 0);
}

/* An unknown broker count (0) leaves the replication factor to the broker to judge. */
static void test_unknown_brokers(void **state)
{
    (void)state;
    expect_plan(3, 2, 0, 3, 2, 0, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_on_a_cluster), cmocka_unit_test(test_defaults_on_one_broker),
        cmocka_unit_test(test_two_brokers),           cmocka_unit_test(test_isr_above_rf),
        cmocka_unit_test(test_unknown_brokers),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
