/*
 * test_sim_anomaly.c -- the simulator's labelled anomalies (ingest/sim_anomaly.h): the SPEC
 * parser's refusals; the delivery stream sends every reading exactly once except the silent ones,
 * late ones after their delay and out-of-order ones after their successor; and the values agree
 * with the truth (stuck repeats, spikes and drifts move the metric they name by their magnitude,
 * nothing else changes).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <cmocka.h>

#include "ingest/sim_anomaly.h"
#include "ingest/simulator.h"

#define DEVICES 50
#define STEPS   (3 * TC_SIM_EPOCH)
#define START   INT64_C(1795824000000000)

static void refused(const char *spec, const char *needle)
{
    char errstr[TC_ERRSTR_MAX] = "";
    tc_sim_anomalies a;

    assert_int_equal(tc_sim_anomalies_parse(spec, &a, errstr, sizeof(errstr)), TC_ERR_INVALID);
    if (!strstr(errstr, needle))
        fail_msg("\"%s\": \"%s\" lacks \"%s\"", spec, errstr, needle);
}

static void test_spec(void **state)
{
    char errstr[TC_ERRSTR_MAX];
    tc_sim_anomalies a;

    (void)state;
    assert_int_equal(tc_sim_anomalies_parse("spike=0.01,drift=0.005,stuck=0.005,silent=0.002,"
                                            "late=0.01,ooo=0.005",
                                            &a, errstr, sizeof(errstr)),
                     TC_OK);
    assert_true(a.share[TC_SIM_A_SPIKE] == 0.01 && a.share[TC_SIM_A_OOO] == 0.005);
    refused("spike", "is not KIND=SHARE");
    refused("jump=0.1", "unknown kind \"jump\"");
    refused("spike=2", "spike=2 is not a share");
    refused("spike=abc", "not a share");
    refused("drift=0.5", "at most one fits");
    refused("spike=0.3", "at most 0.2");
}

static void test_stream_and_truth(void **state)
{
    char errstr[TC_ERRSTR_MAX];
    tc_sim_anomalies a;
    tc_sim_options o = {
        .devices = DEVICES, .count = (uint64_t)DEVICES * STEPS, .seed = 3, .cadence_ms = 10000};
    tc_sim_options plain;
    uint64_t n = o.count, i, sent = 0, order = 0;
    uint64_t *when = malloc(n * sizeof(*when));
    tc_sim_stream *s;
    int kinds[TC_SIM_A__COUNT] = {0};

    (void)state;
    assert_non_null(when);
    assert_int_equal(tc_sim_anomalies_parse("spike=0.01,drift=0.003,stuck=0.01,silent=0.01,"
                                            "late=0.01,ooo=0.01",
                                            &a, errstr, sizeof(errstr)),
                     TC_OK);
    o.anomalies = &a;
    plain = o;
    plain.anomalies = NULL;
    for (i = 0; i < n; i++)
        when[i] = UINT64_MAX;
    s = tc_sim_stream_new(&a, o.seed, o.devices, o.count);
    assert_non_null(s);
    while (tc_sim_stream_next(s, &i)) {
        assert_true(i < n);
        assert_true(when[i] == UINT64_MAX); /* at most once */
        when[i] = order++;
        sent++;
    }
    tc_sim_stream_destroy(s);

    for (uint64_t dev = 0; dev < DEVICES; dev++)
        for (int64_t step = 0; step < STEPS; step++) {
            tc_sim_episode ep[2];
            int k = tc_sim_truth_at(&a, o.seed, dev, step, STEPS, ep);
            for (int e = 0; e < k; e++) {
                uint64_t first = (uint64_t)ep[e].first * DEVICES + dev;
                kinds[ep[e].kind]++;
                assert_true(ep[e].first >= TC_SIM_EPOCH); /* the first epoch is clean */
                for (int64_t st = ep[e].first; st <= ep[e].last; st++) {
                    uint64_t r = (uint64_t)st * DEVICES + dev;
                    tc_sim_reading with, without;
                    tc_sim_reading_at(&o, r, START, &with);
                    tc_sim_reading_at(&plain, r, START, &without);
                    switch (ep[e].kind) {
                    case TC_SIM_A_SILENT:
                        assert_true(when[r] == UINT64_MAX);
                        break;
                    case TC_SIM_A_LATE: {
                        /* Sent after the reading due (last + delay) of the same device. */
                        uint64_t due = (uint64_t)(ep[e].last + ep[e].delay) * DEVICES + dev;
                        if (due < n && when[due] != UINT64_MAX)
                            assert_true(when[r] > when[due]);
                        break;
                    }
                    case TC_SIM_A_OOO:
                        if ((st - ep[e].first) % 2 == 0 && st < ep[e].last)
                            assert_true(when[r] > when[r + DEVICES]);
                        break;
                    case TC_SIM_A_STUCK: {
                        tc_sim_reading f;
                        tc_sim_reading_at(&o, first, START, &f);
                        assert_true(with.metric[ep[e].metric] == f.metric[ep[e].metric]);
                        break;
                    }
                    case TC_SIM_A_DRIFT: {
                        /* A ramp to the magnitude (its sign may flip for humidity's bounds). */
                        double want = fabs(ep[e].magnitude) * (double)(st - ep[e].first + 1) /
                                      (double)(ep[e].last - ep[e].first + 1),
                               got = fabs(with.metric[ep[e].metric] - without.metric[ep[e].metric]);
                        assert_true(fabs(got - want) < 0.011);
                        break;
                    }
                    case TC_SIM_A_SPIKE:
                        assert_true(
                            fabs(fabs(with.metric[ep[e].metric] - without.metric[ep[e].metric]) -
                                 fabs(ep[e].magnitude)) < 0.011);
                        break;
                    default:
                        break;
                    }
                    /* Other metrics are untouched. */
                    for (int m = 0; m < 6; m++)
                        if (m != ep[e].metric)
                            assert_true(with.metric[m] == without.metric[m]);
                }
            }
        }
    /* Every kind happened at these shares on 50 devices x 3 epochs. */
    for (int k = 0; k < TC_SIM_A__COUNT; k++)
        if (!kinds[k])
            fail_msg("no %s in the truth", tc_sim_anomaly_name(k));
    /* Only silent readings are missing. */
    {
        uint64_t silent = 0;
        for (i = 0; i < n; i++)
            silent += when[i] == UINT64_MAX;
        assert_true(sent + silent == n);
        assert_true(silent > 0);
    }
    free(when);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spec),
        cmocka_unit_test(test_stream_and_truth),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
