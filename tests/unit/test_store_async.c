/*
 * test_store_async.c -- the store's ordered writer pool (store/async.h) through a fake store,
 * without PostgreSQL: batches COPY in parallel but commit in the order they were submitted, a
 * failure makes every later batch roll back as "cascaded", a batch that fails before its turn
 * (a lock not granted within lock_timeout: the deadlock escape) frees the ones after it, the
 * rollups' writer runs outside the order, and destroy finishes what is in flight.
 *
 * The seam is the linker: this file defines the five functions of store/store.h that async.c calls
 * (tc_store_new, _destroy, _write_ordered, _rollups_flush, _rollups_hand_over), so the archive's
 * store.o, which would connect to PostgreSQL, is never linked in. Should async.c call another
 * store function, the link pulls store.o and fails on the duplicate definitions, loudly.
 *
 * Each batch is named by the next_offset of its first offset (its number in the script below).
 * A batch's script says where it fails, whether it waits for a gate the test opens, and whether it
 * holds or needs the fake table lock of the deadlock scenario. Nothing waits on time: the test
 * waits for the fake's events (a batch at its turn, a lock held) under a condition variable, with a
 * generous deadline that only a hang reaches.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "core/timeutil.h"
#include "store/async.h"
#include "store/store.h"

/* Batch numbers of one test: 1..BATCHES_MAX - 1. */
#define BATCHES_MAX 32
/* What the test waits for at most before it calls the pool hung. */
#define HANG_MS 30000
/* A short wait that a correct pool never ends early (the batch is held by a closed gate). */
#define BLOCKED_MS 50

/* What the fake does with one batch. */
typedef struct plan {
    tc_err fail_copy;   /* returned before the turn (the COPY failed) */
    tc_err fail_commit; /* returned after a granted turn (the COMMIT failed) */
    int gated;          /* wait for gate_open before the COPY */
    int holds_table;    /* takes the table lock before its turn, releases it after */
    int needs_table;    /* DDL: waits for the lock another batch holds, up to lock_timeout */
} plan;

struct tc_store {
    int id; /* creation order: the batch writers 0..n-1, then the rollups' writer */
    int lock_timeout_ms;
    int pending; /* the rollups' aggregates it holds (hand over moves them) */
};

/* The fake's whole state, one lock for all of it. */
static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    plan plans[BATCHES_MAX];
    int gate_open[BATCHES_MAX];
    int at_turn[BATCHES_MAX]; /* the batch asked for its turn */
    int table_holder;         /* batch holding the fake table lock, 0 for none */
    int commits[BATCHES_MAX]; /* batches committed, in commit order */
    int ncommits;
    int created, destroyed, fail_new_at; /* fail_new_at: the tc_store_new call that fails (1..) */
    tc_err flush_err;
    int flushes, handed_from, handed_to;
    int64_t flush_mark;
} fk = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

static void fake_reset(void)
{
    pthread_mutex_lock(&fk.lock);
    memset(fk.plans, 0, sizeof(fk.plans));
    memset(fk.gate_open, 0, sizeof(fk.gate_open));
    memset(fk.at_turn, 0, sizeof(fk.at_turn));
    memset(fk.commits, 0, sizeof(fk.commits));
    fk.table_holder = fk.ncommits = fk.created = fk.destroyed = fk.fail_new_at = 0;
    fk.flush_err = TC_OK;
    fk.flushes = fk.handed_from = fk.handed_to = 0;
    fk.flush_mark = -1;
    pthread_mutex_unlock(&fk.lock);
}

static int setup(void **state)
{
    (void)state;
    fake_reset();
    return 0;
}

/* Wait on the fake's condition, with fk.lock held, until the deadline: 0 once it passed. */
static int fake_wait(const struct timespec *until)
{
    return pthread_cond_timedwait(&fk.cond, &fk.lock, until) != ETIMEDOUT;
}

/* ---- the fake store: the functions of store/store.h that async.c calls ---- */

tc_store *tc_store_new(const tc_store_options *opt, char *errstr, size_t errstr_size)
{
    tc_store *s;
    int n;

    pthread_mutex_lock(&fk.lock);
    n = ++fk.created;
    pthread_mutex_unlock(&fk.lock);
    if (n == fk.fail_new_at) {
        tc_err_set(TC_ERR_CONFIG, errstr, errstr_size, "fake store %d refused", n);
        return NULL;
    }
    s = calloc(1, sizeof(*s));
    assert_non_null(s);
    s->id = n - 1;
    s->lock_timeout_ms = opt->lock_timeout_ms;
    return s;
}

void tc_store_destroy(tc_store *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&fk.lock);
    fk.destroyed++;
    pthread_mutex_unlock(&fk.lock);
    free(s);
}

tc_err tc_store_write_ordered(tc_store *s, const tc_batch *b, const tc_dlq_batch *dlq,
                              const tc_partition_offset *offsets, const int64_t *from,
                              size_t noffsets, int (*turn)(void *opaque), void *opaque,
                              char *errstr, size_t errstr_size)
{
    int id = (int)offsets[0].next_offset, ok;
    struct timespec until = tc_time_deadline(HANG_MS);
    plan p;

    (void)b, (void)dlq, (void)from, (void)noffsets;
    if (id <= 0 || id >= BATCHES_MAX) /* cmocka's asserts belong to the test's thread */
        return tc_err_set(TC_ERR_INVALID, errstr, errstr_size, "batch %d: not scripted", id);
    pthread_mutex_lock(&fk.lock);
    p = fk.plans[id];
    while (p.gated && !fk.gate_open[id] && fake_wait(&until))
        ;
    if (p.holds_table) {
        fk.table_holder = id;
        pthread_cond_broadcast(&fk.cond);
    }
    if (p.needs_table) {
        /* The DDL comes after the other batch took the lock (the scenario's order), then waits for
         * it as PostgreSQL would: up to lock_timeout, or, without one, until the hang deadline. */
        while (!fk.table_holder && fake_wait(&until))
            ;
        struct timespec lock_until =
            s->lock_timeout_ms > 0 ? tc_time_deadline(s->lock_timeout_ms) : until;
        while (fk.table_holder && fake_wait(&lock_until))
            ;
        if (fk.table_holder) {
            pthread_mutex_unlock(&fk.lock);
            return tc_err_set(TC_ERR_DB_CONN, errstr, errstr_size,
                              "batch %d: lock not granted within lock_timeout", id);
        }
    }
    pthread_mutex_unlock(&fk.lock);
    if (p.fail_copy != TC_OK)
        return tc_err_set(p.fail_copy, errstr, errstr_size, "batch %d: COPY failed", id);

    pthread_mutex_lock(&fk.lock);
    fk.at_turn[id] = 1;
    pthread_cond_broadcast(&fk.cond);
    pthread_mutex_unlock(&fk.lock);
    ok = turn ? turn(opaque) : 1;

    pthread_mutex_lock(&fk.lock);
    if (fk.table_holder == id) /* the transaction ends: its locks go */
        fk.table_holder = 0;
    pthread_cond_broadcast(&fk.cond);
    if (!ok || p.fail_commit != TC_OK) {
        pthread_mutex_unlock(&fk.lock);
        return ok ? tc_err_set(p.fail_commit, errstr, errstr_size, "batch %d: COMMIT failed", id)
                  : tc_err_set(TC_ERR_DB_CONN, errstr, errstr_size,
                               "batch %d not committed: a batch before it was not written", id);
    }
    fk.commits[fk.ncommits++] = id;
    pthread_mutex_unlock(&fk.lock);
    return TC_OK;
}

tc_err tc_store_rollups_flush(tc_store *s, const tc_partition_offset *marks, const int64_t *from,
                              size_t nmarks, char *errstr, size_t errstr_size)
{
    tc_err err;

    (void)from;
    pthread_mutex_lock(&fk.lock);
    fk.flushes++;
    fk.flush_mark = nmarks ? marks[0].next_offset : -1;
    err = fk.flush_err;
    pthread_mutex_unlock(&fk.lock);
    if (err != TC_OK) /* the aggregates stay for another try, as store.h says */
        return tc_err_set(err, errstr, errstr_size, "fake rollups flush failed");
    s->pending = 0;
    return TC_OK;
}

void tc_store_rollups_hand_over(tc_store *from, tc_store *to)
{
    assert_int_equal(to->pending, 0);
    to->pending = from->pending;
    from->pending = 0;
    pthread_mutex_lock(&fk.lock);
    fk.handed_from = from->id;
    fk.handed_to = to->id;
    pthread_mutex_unlock(&fk.lock);
}

/* ---- helpers ---- */

/* One batch's offsets: partition 0, next_offset = its number (how the fake knows it). */
typedef struct batch {
    tc_partition_offset off;
    int64_t from;
} batch;

static batch batches[BATCHES_MAX];

static void submit(tc_store_async *a, int w, int id)
{
    batches[id].off = (tc_partition_offset){0, id};
    batches[id].from = -1;
    tc_store_async_submit(a, w, NULL, NULL, &batches[id].off, &batches[id].from, 1);
}

/* Batches 1, 2 and 3 on writers 0, 1 and 2. */
static void submit_three(tc_store_async *a)
{
    for (int id = 1; id <= 3; id++)
        submit(a, id - 1, id);
}

static tc_store_async *pool(int writers, int lock_timeout_ms)
{
    tc_store_options o = {0};
    char errstr[TC_ERRSTR_MAX];
    tc_store_async *a;

    o.lock_timeout_ms = lock_timeout_ms;
    a = tc_store_async_new(&o, writers, errstr, sizeof(errstr));
    if (!a)
        fail_msg("tc_store_async_new: %s", errstr);
    return a;
}

/* Wait until batch id asked for its turn; fails the test at the hang deadline. */
static void wait_at_turn(int id)
{
    struct timespec until = tc_time_deadline(HANG_MS);

    pthread_mutex_lock(&fk.lock);
    while (!fk.at_turn[id] && fake_wait(&until))
        ;
    int reached = fk.at_turn[id];
    pthread_mutex_unlock(&fk.lock);
    if (!reached)
        fail_msg("batch %d never reached its turn", id);
}

static void open_gate(int id)
{
    pthread_mutex_lock(&fk.lock);
    fk.gate_open[id] = 1;
    pthread_cond_broadcast(&fk.cond);
    pthread_mutex_unlock(&fk.lock);
}

/* Writer w's outcome: the error, *cascaded, and errstr. */
static tc_err outcome(tc_store_async *a, int w, int *cascaded, char *errstr, size_t errstr_size)
{
    assert_true(tc_store_async_await(a, w, HANG_MS));
    return tc_store_async_wait(a, w, cascaded, errstr, errstr_size);
}

static void assert_committed(const int *want, int n)
{
    pthread_mutex_lock(&fk.lock);
    int got = fk.ncommits;
    int same = got == n && (n == 0 || memcmp(fk.commits, want, (size_t)n * sizeof(*want)) == 0);
    pthread_mutex_unlock(&fk.lock);
    if (!same)
        fail_msg("%d batches committed, expected %d in the order of submission", got, n);
}

/* ---- tests ---- */

static void test_commits_follow_submission_order(void **state)
{
    tc_store_async *a = pool(3, 0);
    char errstr[TC_ERRSTR_MAX];
    int cascaded;

    (void)state;
    fk.plans[1].gated = 1;
    submit_three(a);
    assert_int_equal(tc_store_async_free_writer(a), -1);
    /* 2 and 3 have copied and wait for their turn while 1 is held before its COPY. */
    wait_at_turn(2);
    wait_at_turn(3);
    assert_false(tc_store_async_await(a, 1, BLOCKED_MS));
    assert_false(tc_store_async_done(a, 2));
    assert_committed(NULL, 0);

    open_gate(1);
    for (int w = 0; w < 3; w++)
        assert_int_equal(outcome(a, w, &cascaded, errstr, sizeof(errstr)), TC_OK);
    assert_committed((int[]){1, 2, 3}, 3);
    assert_int_equal(tc_store_async_free_writer(a), 0);
    tc_store_async_destroy(a);
}

static void test_a_failure_cascades_to_the_later_batches(void **state)
{
    tc_store_async *a = pool(3, 0);
    char errstr[TC_ERRSTR_MAX];
    int cascaded;

    (void)state;
    fk.plans[2].fail_commit = TC_ERR_DB;
    fk.plans[2].gated = 1; /* 3 is at its turn before 2 fails */
    submit_three(a);
    wait_at_turn(3);
    open_gate(2);

    assert_int_equal(outcome(a, 0, &cascaded, errstr, sizeof(errstr)), TC_OK);
    assert_int_equal(outcome(a, 1, &cascaded, errstr, sizeof(errstr)), TC_ERR_DB);
    assert_false(cascaded); /* the batch that failed itself */
    assert_non_null(strstr(errstr, "batch 2: COMMIT failed"));
    assert_int_equal(outcome(a, 2, &cascaded, errstr, sizeof(errstr)), TC_ERR_DB_CONN);
    assert_true(cascaded); /* fine itself: written again by the caller */
    assert_true(tc_err_is_retriable(TC_ERR_DB_CONN));
    assert_committed((int[]){1}, 1);

    /* Once every outcome is collected, the chain starts afresh: the retries commit. */
    submit(a, 0, 3);
    assert_int_equal(outcome(a, 0, &cascaded, errstr, sizeof(errstr)), TC_OK);
    assert_committed((int[]){1, 3}, 2);
    tc_store_async_destroy(a);
}

static void test_a_failed_copy_still_finishes_in_its_place(void **state)
{
    tc_store_async *a = pool(3, 0);
    char errstr[TC_ERRSTR_MAX];
    int cascaded;

    (void)state;
    /* 2 fails at once, before its turn, while 1 is still held: 3 must not overtake 1, and must
     * not commit after 2's failure either. */
    fk.plans[1].gated = 1;
    fk.plans[2].fail_copy = TC_ERR_IO;
    submit_three(a);
    wait_at_turn(3);
    assert_false(tc_store_async_await(a, 1, BLOCKED_MS)); /* failed, but not before 1 finished */
    assert_committed(NULL, 0);
    open_gate(1);

    assert_int_equal(outcome(a, 0, &cascaded, errstr, sizeof(errstr)), TC_OK);
    assert_int_equal(outcome(a, 1, &cascaded, errstr, sizeof(errstr)), TC_ERR_IO);
    assert_false(cascaded);
    assert_int_equal(outcome(a, 2, &cascaded, errstr, sizeof(errstr)), TC_ERR_DB_CONN);
    assert_true(cascaded);
    assert_non_null(strstr(errstr, "batch 3 not committed"));
    assert_committed((int[]){1}, 1);
    tc_store_async_destroy(a);
}

static void test_lock_timeout_breaks_the_writers_deadlock(void **state)
{
    tc_store_async *a = pool(2, 200);
    char errstr[TC_ERRSTR_MAX];
    int cascaded;

    (void)state;
    /* 2 holds the table while it waits for its turn; 1's DDL needs the table. Without a
     * lock_timeout each would wait for the other forever, a deadlock PostgreSQL cannot see. */
    fk.plans[1].needs_table = 1;
    fk.plans[2].holds_table = 1;
    submit(a, 0, 1);
    submit(a, 1, 2);

    assert_int_equal(outcome(a, 0, &cascaded, errstr, sizeof(errstr)), TC_ERR_DB_CONN);
    assert_false(cascaded);
    assert_non_null(strstr(errstr, "lock_timeout"));
    assert_int_equal(outcome(a, 1, &cascaded, errstr, sizeof(errstr)), TC_ERR_DB_CONN);
    assert_true(cascaded);
    assert_committed(NULL, 0);

    /* The retry, in order, with no other batch open: both commit. */
    fk.plans[1].needs_table = fk.plans[2].holds_table = 0;
    submit(a, 0, 1);
    submit(a, 1, 2);
    assert_int_equal(outcome(a, 0, &cascaded, errstr, sizeof(errstr)), TC_OK);
    assert_int_equal(outcome(a, 1, &cascaded, errstr, sizeof(errstr)), TC_OK);
    assert_committed((int[]){1, 2}, 2);
    tc_store_async_destroy(a);
}

static void test_every_writer_has_a_store_of_the_options(void **state)
{
    tc_store_async *a = pool(4, 1234);

    (void)state;
    assert_int_equal(tc_store_async_writers(a), 4);
    for (int w = 0; w < 4; w++) {
        assert_int_equal(tc_store_async_store(a, w)->id, w);
        assert_int_equal(tc_store_async_store(a, w)->lock_timeout_ms, 1234);
    }
    assert_int_equal(tc_store_async_rollups_store(a)->id, 4);
    tc_store_async_destroy(a);
    assert_int_equal(fk.created, 5);
    assert_int_equal(fk.destroyed, 5);
}

static void test_refused_pools_say_why_and_leak_nothing(void **state)
{
    tc_store_options o = {0};
    char errstr[TC_ERRSTR_MAX];

    (void)state;
    assert_null(tc_store_async_new(&o, 0, errstr, sizeof(errstr)));
    assert_non_null(strstr(errstr, "0 store writers: expected 1 to 16"));
    assert_null(tc_store_async_new(&o, TC_STORE_WRITERS_MAX + 1, errstr, sizeof(errstr)));
    assert_int_equal(fk.created, 0);

    /* The third store cannot be made: the two made and their threads go. */
    fk.fail_new_at = 3;
    assert_null(tc_store_async_new(&o, 4, errstr, sizeof(errstr)));
    assert_string_equal(errstr, "fake store 3 refused");
    assert_int_equal(fk.destroyed, 2);
}

static void test_rollups_writer_runs_outside_the_order(void **state)
{
    tc_store_async *a = pool(2, 0);
    tc_store_options o = {0};
    tc_partition_offset mark = {0, 77};
    int64_t mark_from = 70;
    char errstr[TC_ERRSTR_MAX];
    tc_store *mine = tc_store_new(&o, errstr, sizeof(errstr)); /* the caller's aggregating store */
    int cascaded;

    (void)state;
    fk.plans[1].gated = 1; /* the batches' chain is held */
    submit(a, 0, 1);
    mine->pending = 5;
    assert_false(tc_store_async_rollups_busy(a));
    tc_store_async_flush_rollups(a, mine, &mark, &mark_from, 1);
    assert_true(tc_store_async_rollups_busy(a));
    assert_true(tc_store_async_rollups_await(a, HANG_MS));
    assert_int_equal(tc_store_async_rollups_wait(a, errstr, sizeof(errstr)), TC_OK);
    assert_false(tc_store_async_rollups_busy(a));
    assert_int_equal(fk.flushes, 1);
    assert_int_equal(fk.flush_mark, 77);
    assert_int_equal(fk.handed_from, mine->id);
    assert_int_equal(fk.handed_to, tc_store_async_rollups_store(a)->id);
    assert_int_equal(mine->pending, 0);

    /* A failed flush keeps its aggregates; from NULL tries them again. */
    mine->pending = 3;
    fk.flush_err = TC_ERR_DB_CONN;
    tc_store_async_flush_rollups(a, mine, &mark, &mark_from, 1);
    assert_true(tc_store_async_rollups_done(a) || tc_store_async_rollups_await(a, HANG_MS));
    assert_int_equal(tc_store_async_rollups_wait(a, errstr, sizeof(errstr)), TC_ERR_DB_CONN);
    assert_string_equal(errstr, "fake rollups flush failed");
    assert_int_equal(tc_store_async_rollups_store(a)->pending, 3);
    fk.flush_err = TC_OK;
    tc_store_async_flush_rollups(a, NULL, &mark, &mark_from, 1);
    assert_int_equal(tc_store_async_rollups_wait(a, errstr, sizeof(errstr)), TC_OK);
    assert_int_equal(tc_store_async_rollups_store(a)->pending, 0);
    assert_int_equal(fk.flushes, 3);

    assert_committed(NULL, 0); /* all the while batch 1 was held */
    open_gate(1);
    assert_int_equal(outcome(a, 0, &cascaded, errstr, sizeof(errstr)), TC_OK);
    tc_store_async_destroy(a);
    tc_store_destroy(mine);
}

static void test_destroy_finishes_what_is_in_flight(void **state)
{
    tc_store_async *a = pool(3, 0);

    (void)state;
    /* Nobody waits for these: destroy lets each finish, in order, before the threads stop. */
    submit_three(a);
    tc_store_async_destroy(a);
    assert_committed((int[]){1, 2, 3}, 3);
    assert_int_equal(fk.destroyed, 4);
}

static void test_wait_without_a_batch_is_ok(void **state)
{
    tc_store_async *a = pool(1, 0);
    char errstr[TC_ERRSTR_MAX] = "";
    int cascaded = 1;

    (void)state;
    assert_true(tc_store_async_done(a, 0));
    assert_int_equal(tc_store_async_wait(a, 0, &cascaded, errstr, sizeof(errstr)), TC_OK);
    assert_false(cascaded);
    assert_int_equal(tc_store_async_rollups_wait(a, errstr, sizeof(errstr)), TC_OK);
    /* One writer: a batch after a failed one starts a chain of its own. */
    fk.plans[1].fail_copy = TC_ERR_DB;
    submit(a, 0, 1);
    assert_int_equal(outcome(a, 0, &cascaded, errstr, sizeof(errstr)), TC_ERR_DB);
    submit(a, 0, 2);
    assert_int_equal(outcome(a, 0, &cascaded, errstr, sizeof(errstr)), TC_OK);
    assert_committed((int[]){2}, 1);
    tc_store_async_destroy(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_commits_follow_submission_order, setup),
        cmocka_unit_test_setup(test_a_failure_cascades_to_the_later_batches, setup),
        cmocka_unit_test_setup(test_a_failed_copy_still_finishes_in_its_place, setup),
        cmocka_unit_test_setup(test_lock_timeout_breaks_the_writers_deadlock, setup),
        cmocka_unit_test_setup(test_every_writer_has_a_store_of_the_options, setup),
        cmocka_unit_test_setup(test_refused_pools_say_why_and_leak_nothing, setup),
        cmocka_unit_test_setup(test_rollups_writer_runs_outside_the_order, setup),
        cmocka_unit_test_setup(test_destroy_finishes_what_is_in_flight, setup),
        cmocka_unit_test_setup(test_wait_without_a_batch_is_ok, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
