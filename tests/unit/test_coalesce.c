/*
 * test_coalesce.c -- the table of identical reads' computations (api/coalesce.h).
 *
 * Requests are threads that call tc_coalesce_enter and record what they were told; the test plays
 * the leaders (it ends their computations) and waits for the table's `waiting` count before each
 * step, so every interleaving below is the one named, whatever the machine's speed.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "api/coalesce.h"

/* How long a step may take before the test fails (a loaded machine is slow, not stuck). */
#define WAIT_MS 30000

typedef struct req {
    tc_coalesce *c;
    const char *key;
    pthread_t thread;
    tc_coalesce_role role;
    tc_coalesce_ticket t;
} req;

static void *req_main(void *arg)
{
    req *r = arg;

    r->role = tc_coalesce_enter(r->c, r->key, strlen(r->key), &r->t);
    return NULL;
}

static void req_start(req *r, tc_coalesce *c, const char *key)
{
    memset(r, 0, sizeof(*r));
    r->c = c;
    r->key = key;
    assert_int_equal(pthread_create(&r->thread, NULL, req_main, r), 0);
}

static void req_join(req *r)
{
    assert_int_equal(pthread_join(r->thread, NULL), 0);
}

static tc_coalesce_stats stats(tc_coalesce *c)
{
    tc_coalesce_stats s;

    tc_coalesce_stats_get(c, &s);
    return s;
}

/* Poll until n requests wait in the table. */
static void wait_waiting(tc_coalesce *c, uint64_t n)
{
    for (int i = 0; i < WAIT_MS && stats(c).waiting != n; i++) {
        struct timespec ts = {0, 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    assert_int_equal(stats(c).waiting, n);
}

static char *dup_text(const char *s)
{
    char *d = malloc(strlen(s) + 1);

    assert_non_null(d);
    memcpy(d, s, strlen(s) + 1);
    return d;
}

/* `first` leads a computation of "k" and starts it; `next` arrives while it runs, to lead the
 * one after. */
static void first_and_next(tc_coalesce *c, tc_coalesce_ticket *first, req *next)
{
    assert_int_equal(tc_coalesce_enter(c, "k", 1, first), TC_COALESCE_LEAD);
    assert_int_equal(tc_coalesce_start(c, first), 1);
    req_start(next, c, "k");
    wait_waiting(c, 1);
}

static void test_alone_leads_and_leaves_nothing(void **state)
{
    tc_coalesce *c = tc_coalesce_new(0, 0);
    tc_coalesce_ticket t;

    (void)state;
    for (int i = 0; i < 2; i++) {
        assert_int_equal(tc_coalesce_enter(c, "k", 1, &t), TC_COALESCE_LEAD);
        assert_int_equal(tc_coalesce_start(c, &t), 1);
        assert_int_equal(t.members, 1);
        tc_coalesce_unshared(c, &t);
    }
    assert_int_equal(stats(c).computations, 2);
    assert_int_equal(stats(c).waiting, 0);
    tc_coalesce_destroy(c);
}

static void test_arrivals_during_a_run_share_the_next(void **state)
{
    tc_coalesce *c = tc_coalesce_new(0, 0);
    tc_coalesce_ticket first;
    req next, f1, f2;

    (void)state;
    /* Arrived while `first` runs: the next computation's leader and two followers. */
    first_and_next(c, &first, &next);
    req_start(&f1, c, "k");
    req_start(&f2, c, "k");
    wait_waiting(c, 3);
    tc_coalesce_unshared(c, &first);
    req_join(&next);
    assert_int_equal(next.role, TC_COALESCE_LEAD);
    assert_int_equal(tc_coalesce_start(c, &next.t), 3);
    assert_int_equal(stats(c).waiting, 2); /* the followers wait for its answer */
    assert_int_equal(tc_coalesce_publish(c, &next.t, dup_text("rows"), 4, 7), 0);
    req_join(&f1);
    req_join(&f2);
    assert_int_equal(f1.role, TC_COALESCE_SHARED);
    assert_int_equal(f2.role, TC_COALESCE_SHARED);
    assert_ptr_equal(f1.t.answer, next.t.answer);
    assert_string_equal(f1.t.answer->data, "rows");
    assert_int_equal(f1.t.answer->rows, 7);
    assert_int_equal(stats(c).shared, 2);
    assert_int_equal(stats(c).held_bytes, 4);
    tc_coalesce_answer_put(f1.t.answer);
    tc_coalesce_answer_put(next.t.answer);
    assert_int_equal(stats(c).held_bytes, 4); /* f2 still sends it */
    tc_coalesce_answer_put(f2.t.answer);
    assert_int_equal(stats(c).held_bytes, 0);
    tc_coalesce_destroy(c);
}

static void test_a_started_computation_takes_nobody(void **state)
{
    tc_coalesce *c = tc_coalesce_new(0, 0);
    tc_coalesce_ticket first;
    req second, late;

    (void)state;
    first_and_next(c, &first, &second);
    tc_coalesce_unshared(c, &first);
    req_join(&second); /* runs now, alone */
    assert_int_equal(tc_coalesce_start(c, &second.t), 1);
    /* Arrives while `second` runs: it must not get second's answer, whose rows may be older than
     * its arrival, but lead the one after. */
    req_start(&late, c, "k");
    wait_waiting(c, 1);
    assert_int_equal(tc_coalesce_publish(c, &second.t, dup_text("old"), 3, 1), 0);
    req_join(&late);
    assert_int_equal(late.role, TC_COALESCE_LEAD);
    assert_int_equal(tc_coalesce_start(c, &late.t), 1);
    assert_null(late.t.answer);
    tc_coalesce_answer_put(second.t.answer);
    tc_coalesce_unshared(c, &late.t);
    assert_int_equal(stats(c).shared, 0);
    tc_coalesce_destroy(c);
}

static void test_a_computation_not_started_takes_arrivals(void **state)
{
    tc_coalesce *c = tc_coalesce_new(0, 0);
    tc_coalesce_ticket first;
    req f;

    (void)state;
    /* Led, its statement not sent yet (the leader waits for a connection): whatever it reads is
     * newer than f, which joins it instead of waiting for the next one. */
    assert_int_equal(tc_coalesce_enter(c, "k", 1, &first), TC_COALESCE_LEAD);
    req_start(&f, c, "k");
    wait_waiting(c, 1);
    assert_int_equal(tc_coalesce_start(c, &first), 2);
    assert_int_equal(tc_coalesce_publish(c, &first, dup_text("new"), 3, 1), 0);
    req_join(&f);
    assert_int_equal(f.role, TC_COALESCE_SHARED);
    assert_ptr_equal(f.t.answer, first.answer);
    tc_coalesce_answer_put(f.t.answer);
    tc_coalesce_answer_put(first.answer);
    assert_int_equal(stats(c).computations, 1);
    tc_coalesce_destroy(c);
}

static void test_other_keys_never_wait(void **state)
{
    tc_coalesce *c = tc_coalesce_new(0, 0);
    tc_coalesce_ticket a, b, a2;

    (void)state;
    assert_int_equal(tc_coalesce_enter(c, "viewer|s0", 9, &a), TC_COALESCE_LEAD);
    /* Same bytes up to a shorter length, then another key: neither joins nor waits. */
    assert_int_equal(tc_coalesce_enter(c, "viewer|s1", 9, &b), TC_COALESCE_LEAD);
    assert_int_equal(tc_coalesce_enter(c, "viewer|s", 8, &a2), TC_COALESCE_LEAD);
    tc_coalesce_unshared(c, &a);
    tc_coalesce_unshared(c, &b);
    tc_coalesce_unshared(c, &a2);
    assert_int_equal(stats(c).computations, 3);
    tc_coalesce_destroy(c);
}

static void test_unshared_sends_followers_back(void **state)
{
    tc_coalesce *c = tc_coalesce_new(0, 0);
    tc_coalesce_ticket first;
    req next, f;

    (void)state;
    first_and_next(c, &first, &next);
    req_start(&f, c, "k");
    wait_waiting(c, 2);
    tc_coalesce_unshared(c, &first);
    req_join(&next);
    assert_int_equal(tc_coalesce_start(c, &next.t), 2);
    /* An error, or an answer past a cap: the follower answers on its own. */
    tc_coalesce_unshared(c, &next.t);
    req_join(&f);
    assert_int_equal(f.role, TC_COALESCE_FALLBACK);
    assert_null(f.t.answer);
    assert_int_equal(stats(c).fallbacks, 1);
    tc_coalesce_destroy(c);
}

static void test_caps(void **state)
{
    tc_coalesce *c = tc_coalesce_new(100, 150);
    tc_coalesce_ticket a, b;
    char *data = dup_text("0123456789");

    (void)state;
    assert_int_equal(tc_coalesce_enter(c, "a", 1, &a), TC_COALESCE_LEAD);
    assert_int_equal(tc_coalesce_enter(c, "b", 1, &b), TC_COALESCE_LEAD);
    assert_int_equal(tc_coalesce_reserve(c, &a, 100), 0);
    assert_int_equal(tc_coalesce_reserve(c, &a, 101), -1); /* one answer's cap */
    assert_int_equal(tc_coalesce_reserve(c, &b, 50), 0);
    assert_int_equal(tc_coalesce_reserve(c, &b, 51), -1); /* every answer's cap */
    assert_int_equal(stats(c).held_bytes, 150);
    tc_coalesce_unshared(c, &a);
    assert_int_equal(stats(c).held_bytes, 50);
    assert_int_equal(tc_coalesce_reserve(c, &b, 60), 0);
    /* Past the cap the answer stays the caller's and the computation runs on. */
    assert_int_equal(tc_coalesce_publish(c, &b, data, 120, 1), -1);
    assert_int_equal(tc_coalesce_publish(c, &b, data, 10, 1), 0);
    assert_int_equal(stats(c).held_bytes, 10);
    tc_coalesce_answer_put(b.answer);
    assert_int_equal(stats(c).held_bytes, 0);
    tc_coalesce_destroy(c);
}

static void test_key_too_long_falls_back(void **state)
{
    tc_coalesce *c = tc_coalesce_new(0, 0);
    static char key[TC_COALESCE_KEY_MAX + 1];
    tc_coalesce_ticket t;

    (void)state;
    memset(key, 'k', sizeof(key));
    assert_int_equal(tc_coalesce_enter(c, key, sizeof(key), &t), TC_COALESCE_FALLBACK);
    assert_int_equal(tc_coalesce_enter(c, key, sizeof(key) - 1, &t), TC_COALESCE_LEAD);
    tc_coalesce_unshared(c, &t);
    tc_coalesce_destroy(c);
}

/* Lead a computation of key alone, versioned v: reused (1, t->answer set) or computed and published
 * with text (0). */
static int lead_versioned(tc_coalesce *c, const char *key, int64_t v, const char *text,
                          tc_coalesce_ticket *t)
{
    assert_int_equal(tc_coalesce_enter(c, key, strlen(key), t), TC_COALESCE_LEAD);
    assert_int_equal(tc_coalesce_start(c, t), 1);
    tc_coalesce_versioned(t, v);
    if (tc_coalesce_reuse(c, t) == 0)
        return 1;
    assert_int_equal(tc_coalesce_publish(c, t, dup_text(text), strlen(text), 1), 0);
    return 0;
}

static void test_a_versioned_answer_is_reused_at_its_version_only(void **state)
{
    tc_coalesce *c = tc_coalesce_new(0, 0);
    tc_coalesce_ticket t1, t2, t3, t4, plain;

    (void)state;
    assert_int_equal(lead_versioned(c, "k", 5, "five", &t1), 0);
    tc_coalesce_answer_put(t1.answer);
    assert_int_equal(stats(c).kept, 1);
    assert_int_equal(stats(c).held_bytes, 4); /* the kept answer's */
    /* Same key, same version: the kept bytes, no computation. */
    assert_int_equal(lead_versioned(c, "k", 5, "unused", &t2), 1);
    assert_string_equal(t2.answer->data, "five");
    assert_int_equal(stats(c).reused, 1);
    tc_coalesce_answer_put(t2.answer);
    /* The table changed: computed again, and kept in its place. */
    assert_int_equal(lead_versioned(c, "k", 6, "six", &t3), 0);
    assert_string_equal(t3.answer->data, "six");
    tc_coalesce_answer_put(t3.answer);
    assert_int_equal(stats(c).kept, 1);
    assert_int_equal(stats(c).held_bytes, 3);
    /* An older version is not served from the newer answer (nor the other way round). */
    assert_int_equal(lead_versioned(c, "k", 5, "five again", &t4), 0);
    tc_coalesce_answer_put(t4.answer);
    /* A computation that is not versioned neither reuses nor keeps. */
    assert_int_equal(tc_coalesce_enter(c, "k", 1, &plain), TC_COALESCE_LEAD);
    assert_int_equal(tc_coalesce_start(c, &plain), 1);
    assert_int_equal(tc_coalesce_reuse(c, &plain), -1);
    tc_coalesce_unshared(c, &plain);
    assert_int_equal(stats(c).reused, 1);
    tc_coalesce_destroy(c); /* frees the kept answer (ASan: no leak) */
}

static void test_followers_of_a_reusing_leader_get_the_kept_answer(void **state)
{
    tc_coalesce *c = tc_coalesce_new(0, 0);
    tc_coalesce_ticket t1, lead;
    req f;

    (void)state;
    assert_int_equal(lead_versioned(c, "k", 1, "one", &t1), 0);
    tc_coalesce_answer_put(t1.answer);
    assert_int_equal(tc_coalesce_enter(c, "k", 1, &lead), TC_COALESCE_LEAD);
    req_start(&f, c, "k");
    wait_waiting(c, 1);
    assert_int_equal(tc_coalesce_start(c, &lead), 2);
    tc_coalesce_versioned(&lead, 1);
    assert_int_equal(tc_coalesce_reuse(c, &lead), 0);
    req_join(&f);
    assert_int_equal(f.role, TC_COALESCE_SHARED);
    assert_ptr_equal(f.t.answer, lead.answer);
    assert_string_equal(f.t.answer->data, "one");
    tc_coalesce_answer_put(f.t.answer);
    tc_coalesce_answer_put(lead.answer);
    assert_int_equal(stats(c).held_bytes, 3); /* still kept */
    tc_coalesce_destroy(c);
}

static void test_kept_answers_are_bounded(void **state)
{
    tc_coalesce *c = tc_coalesce_new(100, 150);
    tc_coalesce_ticket t, big;
    char key[16];

    (void)state;
    /* By count: the least recently used key goes. */
    for (int i = 0; i < TC_COALESCE_KEPT_MAX + 1; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        assert_int_equal(lead_versioned(c, key, 1, "x", &t), 0);
        tc_coalesce_answer_put(t.answer);
        if (i == TC_COALESCE_KEPT_MAX - 1) { /* k0 used again: k1 is the oldest when full */
            assert_int_equal(lead_versioned(c, "k0", 1, "x", &t), 1);
            tc_coalesce_answer_put(t.answer);
        }
    }
    assert_int_equal(stats(c).kept, TC_COALESCE_KEPT_MAX);
    assert_int_equal(lead_versioned(c, "k0", 1, "y", &t), 1);
    tc_coalesce_answer_put(t.answer);
    assert_int_equal(lead_versioned(c, "k1", 1, "y", &t), 0);
    tc_coalesce_answer_put(t.answer);
    tc_coalesce_destroy(c);
    /* By bytes: a computation in progress drops kept answers to fit under the total. */
    c = tc_coalesce_new(100, 150);
    assert_int_equal(lead_versioned(c, "a", 1,
                                    "0123456789012345678901234567890123456789"
                                    "0123456789012345678901234567890123456789",
                                    &t),
                     0);
    tc_coalesce_answer_put(t.answer);
    assert_int_equal(stats(c).held_bytes, 80);
    assert_int_equal(tc_coalesce_enter(c, "b", 1, &big), TC_COALESCE_LEAD);
    assert_int_equal(tc_coalesce_reserve(c, &big, 100), 0);
    assert_int_equal(stats(c).kept, 0);
    assert_int_equal(stats(c).held_bytes, 100);
    tc_coalesce_unshared(c, &big);
    tc_coalesce_destroy(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alone_leads_and_leaves_nothing),
        cmocka_unit_test(test_arrivals_during_a_run_share_the_next),
        cmocka_unit_test(test_a_started_computation_takes_nobody),
        cmocka_unit_test(test_a_computation_not_started_takes_arrivals),
        cmocka_unit_test(test_other_keys_never_wait),
        cmocka_unit_test(test_unshared_sends_followers_back),
        cmocka_unit_test(test_caps),
        cmocka_unit_test(test_key_too_long_falls_back),
        cmocka_unit_test(test_a_versioned_answer_is_reused_at_its_version_only),
        cmocka_unit_test(test_followers_of_a_reusing_leader_get_the_kept_answer),
        cmocka_unit_test(test_kept_answers_are_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
