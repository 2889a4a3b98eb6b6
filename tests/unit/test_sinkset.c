/*
 * test_sinkset.c -- the rules the pipeline applies to every sink behind process/sink.h: the list
 * in pipeline.sinks, the skip rule, Kafka's commit at the minimum of the durable marks, the
 * circuit of a sink failing transiently (not ready, no rows, recovered after its back-off), a
 * permanent failure, fencing, and the CPU each sink is charged -- driven through the testfail
 * sink, whose record file is read back here line by line.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "core/batch.h"
#include "core/config.h"
#include "core/timeutil.h"
#include "process/sinkset.h"

/* The testfail sink's bit in a row's sinks byte: the first sink of the set. */
#define BIT TC_SINKSET_FIRST_BIT

typedef struct fixture {
    char dir[64], control[96], record[96];
    tc_config *cfg;
    tc_sinkset *set;
    tc_sinkset_batch *sb;
    tc_batch *batch;
    uint8_t sinks[64];
} fixture;

static void no_wait(void *opaque, int ms)
{
    (void)opaque;
    (void)ms;
}

static void put(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");

    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* Lines of the record file that start with prefix. */
static int count_lines(const char *path, const char *prefix)
{
    char line[128];
    int n = 0;
    FILE *f = fopen(path, "r");

    if (!f)
        return 0;
    while (fgets(line, sizeof(line), f))
        n += !strncmp(line, prefix, strlen(prefix));
    fclose(f);
    return n;
}

static int teardown(void **state);

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof(*fx));
    char errstr[TC_ERRSTR_MAX];

    if (!fx)
        return -1;
    *state = fx;
    snprintf(fx->dir, sizeof(fx->dir), "/tmp/tc-sinkset-XXXXXX");
    if (!mkdtemp(fx->dir)) {
        free(fx);
        return -1;
    }
    snprintf(fx->control, sizeof(fx->control), "%s/control", fx->dir);
    snprintf(fx->record, sizeof(fx->record), "%s/record", fx->dir);
    fx->cfg = tc_config_new();
    if (!fx->cfg ||
        tc_config_set(fx->cfg, "pipeline.sinks", "store,testfail", errstr, sizeof(errstr)) !=
            TC_OK ||
        tc_config_set(fx->cfg, "testfail.control_file", fx->control, errstr, sizeof(errstr)) !=
            TC_OK ||
        tc_config_set(fx->cfg, "testfail.record_file", fx->record, errstr, sizeof(errstr)) !=
            TC_OK) {
        teardown(state);
        return -1;
    }
    fx->set = tc_sinkset_new(fx->cfg, no_wait, NULL, errstr, sizeof(errstr));
    fx->sb = fx->set ? tc_sinkset_batch_new(fx->set) : NULL;
    fx->batch = tc_batch_new(64, 0);
    if (!fx->sb || !fx->batch) {
        teardown(state);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;

    tc_batch_destroy(fx->batch);
    tc_sinkset_batch_destroy(fx->sb);
    tc_sinkset_destroy(fx->set);
    tc_config_destroy(fx->cfg);
    unlink(fx->control);
    unlink(fx->record);
    rmdir(fx->dir);
    free(fx);
    return 0;
}

/* A batch of rows of partition 0 at offsets [from, to), every one for the testfail sink, noted. */
static void fill(fixture *fx, int64_t from, int64_t to)
{
    tc_batch_reset(fx->batch);
    tc_sinkset_batch_reset(fx->sb);
    for (int64_t o = from; o < to; o++) {
        unsigned bits = tc_sinkset_wants(fx->set, 0, o);
        size_t i = fx->batch->n;
        assert_int_equal(tc_batch_row_begin(fx->batch), TC_OK);
        fx->batch->partition[i] = 0;
        fx->batch->offset[i] = o;
        fx->sinks[i] = (uint8_t)bits;
        tc_batch_row_commit(fx->batch);
        tc_sinkset_note(fx->sb, bits, 0, o);
    }
}

static tc_err take(fixture *fx, int64_t now_us)
{
    char errstr[TC_ERRSTR_MAX];

    return tc_sinkset_take(fx->set, fx->sb, fx->batch, fx->sinks, NULL, now_us, errstr,
                           sizeof(errstr));
}

static void test_list_is_checked(void **state)
{
    char names[TC_SINKS_MAX][TC_SINK_NAME_MAX], errstr[TC_ERRSTR_MAX];
    size_t n = 0;

    (void)state;
    assert_int_equal(tc_sink_parse_list("store, lake,rollups", names, &n, errstr, sizeof(errstr)),
                     TC_OK);
    assert_int_equal(n, 3);
    assert_string_equal(names[1], "lake");
    assert_int_equal(tc_sink_parse_list("store,nope", names, &n, errstr, sizeof(errstr)),
                     TC_ERR_CONFIG);
    assert_non_null(strstr(errstr, "\"nope\""));
    assert_int_equal(tc_sink_parse_list("store,store", names, &n, errstr, sizeof(errstr)),
                     TC_ERR_CONFIG);
    assert_non_null(strstr(errstr, "twice"));
    assert_int_equal(tc_sink_parse_list(" , ", names, &n, errstr, sizeof(errstr)), TC_ERR_CONFIG);
    assert_non_null(tc_sink_find("testfail"));
    assert_null(tc_sink_find("store")); /* built into the pipeline */
    assert_non_null(tc_sink_find("rollups"));
}

/* The rollups are a sink of the set (with postgres.rollups=false still: the latest state), and a
 * replay, which recomputes them itself, leaves them out (TC_SINK_NO_REPLAY): the sink after them
 * then has the first bit. */
static void test_rollups_are_a_sink_left_out_of_a_replay(void **state)
{
    fixture *fx = *state;
    char errstr[TC_ERRSTR_MAX];
    tc_sinkset_status st[TC_SINKSET_MAX];
    tc_sinkset *set;

    assert_int_equal(
        tc_config_set(fx->cfg, "pipeline.sinks", "store,rollups,testfail", errstr, sizeof(errstr)),
        TC_OK);
    set = tc_sinkset_new(fx->cfg, no_wait, NULL, errstr, sizeof(errstr));
    assert_non_null(set);
    assert_int_equal(tc_sinkset_status_get(set, st, TC_SINKSET_MAX), 2);
    assert_string_equal(st[0].name, "rollups");
    assert_string_equal(st[1].name, "testfail");
    tc_sinkset_leave_out(set, TC_SINK_NO_REPLAY);
    assert_int_equal(tc_sinkset_status_get(set, st, TC_SINKSET_MAX), 1);
    assert_string_equal(st[0].name, "testfail");
    assert_int_equal(tc_sinkset_wants(set, 0, 0), BIT);
    tc_sinkset_destroy(set);

    assert_int_equal(tc_config_set(fx->cfg, "postgres.rollups", "false", errstr, sizeof(errstr)),
                     TC_OK);
    set = tc_sinkset_new(fx->cfg, no_wait, NULL, errstr, sizeof(errstr));
    assert_non_null(set);
    assert_int_equal(tc_sinkset_count(set), 2);
    tc_sinkset_destroy(set);
}

static void test_skip_rule_and_commit_minimum(void **state)
{
    fixture *fx = *state;
    char errstr[TC_ERRSTR_MAX];
    int32_t part = 0;
    int64_t next = 100;

    put(fx->record, "mark 0 40\n");
    assert_int_equal(tc_sinkset_open(fx->set, &part, 1, &next, errstr, sizeof(errstr)), TC_OK);
    assert_int_equal(next, 40); /* the consumer starts at the lowest mark */
    assert_int_equal(tc_sinkset_wants(fx->set, 0, 39), 0);
    assert_int_equal(tc_sinkset_wants(fx->set, 0, 40), BIT);
    fill(fx, 40, 50);
    assert_int_equal(take(fx, 1), TC_OK);
    assert_int_equal(count_lines(fx->record, "row 0 "), 10);
    assert_int_equal(tc_sinkset_wants(fx->set, 0, 49), 0);
    assert_int_equal(tc_sinkset_durable_min(fx->set, 0, 100), 50);
    assert_int_equal(tc_sinkset_durable_min(fx->set, 0, 45), 45);
    assert_false(tc_sinkset_behind(fx->set, 0, 50));
    assert_true(tc_sinkset_behind(fx->set, 0, 51));
}

static void test_transient_failure_opens_the_circuit_until_recovered(void **state)
{
    fixture *fx = *state;
    char errstr[TC_ERRSTR_MAX];
    tc_sinkset_status st;
    int32_t part = 0;
    int64_t next = -1, low = 0;
    const int64_t t0 = 1000000000LL;

    assert_int_equal(tc_sinkset_open(fx->set, &part, 1, &next, errstr, sizeof(errstr)), TC_OK);
    fill(fx, 0, 10);
    assert_int_equal(take(fx, t0), TC_OK);
    put(fx->control, "fail-transient\n");
    fill(fx, 10, 20);
    assert_int_equal(take(fx, t0), TC_OK); /* not an error of the run */
    assert_true(tc_sinkset_broken(fx->set));
    assert_int_equal(tc_sinkset_status_get(fx->set, &st, 1), 1);
    assert_false(st.ready);
    assert_non_null(strstr(st.reason, "testfail"));
    assert_int_equal(tc_sinkset_wants(fx->set, 0, 25), 0); /* no rows while broken */
    assert_int_equal(tc_sinkset_durable_min(fx->set, 0, 30), 10);
    /* The back-off first (at most its first 100 ms), then a recovery that fails again. */
    assert_false(tc_sinkset_recover_due(fx->set, t0));
    assert_true(tc_sinkset_recover_due(fx->set, t0 + 200000));
    assert_int_equal(
        tc_sinkset_recover(fx->set, &part, 1, 0, t0 + 200000, &low, errstr, sizeof(errstr)), TC_OK);
    assert_true(tc_sinkset_broken(fx->set));
    assert_int_equal(low, TC_SINK_MARK_ALL); /* nothing recovered: the consumer stays */
    put(fx->control, "ok\n");
    assert_true(tc_sinkset_recover_due(fx->set, t0 + 60000000LL));
    assert_int_equal(
        tc_sinkset_recover(fx->set, &part, 1, 0, t0 + 60000000LL, &low, errstr, sizeof(errstr)),
        TC_OK);
    assert_false(tc_sinkset_broken(fx->set));
    assert_int_equal(low, 10); /* it catches up from its durable mark */
    assert_int_equal(tc_sinkset_wants(fx->set, 0, 10), BIT);
    fill(fx, 10, 20);
    assert_int_equal(take(fx, t0 + 60000000LL), TC_OK);
    assert_int_equal(count_lines(fx->record, "row 0 "), 20); /* 0..19, each once */
    tc_sinkset_status_get(fx->set, &st, 1);
    assert_true(st.ready);
    assert_int_equal(st.recoveries, 1);
    assert_int_equal(st.failures, 2);
}

static void test_permanent_failure_and_fence(void **state)
{
    fixture *fx = *state;
    char errstr[TC_ERRSTR_MAX];
    int32_t part = 0;
    int64_t next = -1;

    assert_int_equal(tc_sinkset_open(fx->set, &part, 1, &next, errstr, sizeof(errstr)), TC_OK);
    fill(fx, 0, 5);
    assert_int_equal(take(fx, 1), TC_OK);
    /* Another member moved partition 0 on: the next write is fenced and writes nothing. */
    FILE *f = fopen(fx->record, "a");
    assert_non_null(f);
    fputs("mark 0 7\n", f);
    fclose(f);
    fill(fx, 5, 9);
    assert_int_equal(
        tc_sinkset_take(fx->set, fx->sb, fx->batch, fx->sinks, NULL, 2, errstr, sizeof(errstr)),
        TC_ERR_FENCED);
    assert_non_null(strstr(errstr, "sink testfail"));
    assert_int_equal(count_lines(fx->record, "row 0 "), 5);
    put(fx->control, "fail-permanent\n");
    assert_int_equal(
        tc_sinkset_take(fx->set, fx->sb, fx->batch, fx->sinks, NULL, 3, errstr, sizeof(errstr)),
        TC_ERR_INVALID);
    assert_non_null(strstr(errstr, "fail-permanent"));
}

/* Each write that made rows durable is one observation of the sink's commit latency (with an
 * fsync: above 0 s, and within a few minutes on any machine); a flush with nothing to write and a
 * failed one are none. */
static void test_commit_latency_per_write(void **state)
{
    fixture *fx = *state;
    char errstr[TC_ERRSTR_MAX];
    tc_sinkset_status st;
    int32_t part = 0;
    int64_t next = -1;
    uint64_t in_buckets = 0;

    assert_int_equal(tc_sinkset_open(fx->set, &part, 1, &next, errstr, sizeof(errstr)), TC_OK);
    tc_sinkset_status_get(fx->set, &st, 1);
    assert_int_equal(st.commit.count, 0);
    fill(fx, 0, 10);
    assert_int_equal(take(fx, 1), TC_OK);
    fill(fx, 10, 15);
    assert_int_equal(take(fx, 2), TC_OK);
    assert_int_equal(tc_sinkset_flush(fx->set, 3, 1, errstr, sizeof(errstr)), TC_OK); /* nothing */
    put(fx->control, "fail-transient\n");
    fill(fx, 15, 20);
    assert_int_equal(take(fx, 4), TC_OK);
    assert_true(tc_sinkset_broken(fx->set));
    tc_sinkset_status_get(fx->set, &st, 1);
    assert_int_equal(st.commit.count, 2);
    for (size_t i = 0; i <= TC_SINKSET_LATENCY_BUCKETS; i++)
        in_buckets += st.commit.counts[i];
    assert_int_equal(in_buckets, 2);
    assert_true(st.commit.sum >= 0 && st.commit.sum < 300);
    assert_int_equal(st.commit.counts[TC_SINKSET_LATENCY_BUCKETS], 0); /* none over a minute */
}

/* CPU a forced flush's wait burns: the consumer served meanwhile, far more than the testfail
 * sink's own calls cost (an open, a write and an fsync of a few lines). */
#define BURN_NS UINT64_C(50000000)

typedef struct burner {
    const char *control;
    uint64_t burned;
} burner;

/* The wait of a forced flush: burn BURN_NS of this thread's CPU, then let the sink's write end. */
static void burn_wait(void *opaque, int ms)
{
    burner *b = opaque;
    uint64_t t0 = tc_time_thread_cpu_ns(), t;
    volatile uint64_t spin = 0;

    (void)ms;
    while ((t = tc_time_thread_cpu_ns()) - t0 < BURN_NS)
        spin++;
    b->burned += t - t0;
    put(b->control, "ok\n");
}

/* A sink is charged the thread's CPU in its calls -- every take and flush adds some -- and not
 * the CPU of the wait while a forced flush finds it busy (the consumer's, in the pipeline). */
static void test_cpu_is_charged_per_call_and_not_while_waiting(void **state)
{
    fixture *fx = *state;
    char errstr[TC_ERRSTR_MAX];
    burner b = {fx->control, 0};
    tc_sinkset *set = tc_sinkset_new(fx->cfg, burn_wait, &b, errstr, sizeof(errstr));
    tc_sinkset_status st;
    int32_t part = 0;
    int64_t next = -1;
    uint64_t after_open, after_take, before, spent;

    assert_non_null(set);
    assert_int_equal(tc_sinkset_open(set, &part, 1, &next, errstr, sizeof(errstr)), TC_OK);
    tc_sinkset_status_get(set, &st, 1);
    after_open = st.cpu_ns;
    assert_true(after_open > 0); /* the open read the record file */
    /* fill() asks and notes the fixture's set; this set has the same one sink: the same bits. */
    fill(fx, 0, 10);
    assert_int_equal(
        tc_sinkset_take(set, fx->sb, fx->batch, fx->sinks, NULL, 1, errstr, sizeof(errstr)), TC_OK);
    tc_sinkset_status_get(set, &st, 1);
    after_take = st.cpu_ns;
    assert_true(after_take > after_open);
    assert_int_equal(count_lines(fx->record, "row "), 10);

    /* Busy: the take's flush writes nothing and does not wait; the forced flush waits (burning
     * BURN_NS) until the word changes, then writes. */
    put(fx->control, "busy\n");
    fill(fx, 10, 20);
    assert_int_equal(
        tc_sinkset_take(set, fx->sb, fx->batch, fx->sinks, NULL, 2, errstr, sizeof(errstr)), TC_OK);
    assert_int_equal(count_lines(fx->record, "row "), 10);
    assert_int_equal(b.burned, 0);
    tc_sinkset_status_get(set, &st, 1);
    before = st.cpu_ns;
    spent = tc_time_thread_cpu_ns();
    assert_int_equal(tc_sinkset_flush(set, 3, 1, errstr, sizeof(errstr)), TC_OK);
    spent = tc_time_thread_cpu_ns() - spent;
    assert_int_equal(count_lines(fx->record, "row "), 20);
    assert_true(b.burned >= BURN_NS);
    tc_sinkset_status_get(set, &st, 1);
    assert_true(st.cpu_ns > before);                        /* the two flush calls */
    assert_true(st.cpu_ns - before < spent - b.burned + 1); /* all but the wait's */
    assert_true(st.cpu_ns - before < BURN_NS / 2);
    tc_sinkset_destroy(set);
}

/* The one back-off of every sink and of the primary's retries: capped exponential with full
 * jitter, each wait within [half, whole] of its step. */
static void test_backoff_step(void **state)
{
    long backoff = 0, step = 100;

    (void)state;
    for (int i = 0; i < 12; i++) {
        long wait = tc_sinkset_backoff_step(&backoff);
        assert_true(wait >= step / 2 && wait <= step);
        step = step * 2 > 10000 ? 10000 : step * 2;
        assert_int_equal(backoff, step);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_list_is_checked),
        cmocka_unit_test_setup_teardown(test_rollups_are_a_sink_left_out_of_a_replay, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_skip_rule_and_commit_minimum, setup, teardown),
        cmocka_unit_test_setup_teardown(test_transient_failure_opens_the_circuit_until_recovered,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_permanent_failure_and_fence, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_latency_per_write, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cpu_is_charged_per_call_and_not_while_waiting, setup,
                                        teardown),
        cmocka_unit_test(test_backoff_step),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
