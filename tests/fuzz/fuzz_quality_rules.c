/*
 * fuzz_quality_rules.c -- libFuzzer target for tc_qr_parse (quality rules YAML) and the
 * evaluator that runs what it accepts.
 *
 * Beyond "no crash, no UB, no leak" (ASan sees every read past libFuzzer's exact-size buffer):
 *   - a refusal comes with a message "fuzz.yaml:LINE:COL: ..." whose line and column are at least
 *     1, and the same input is refused again with the same message (parsing is deterministic);
 *   - an accepted set obeys the header's bounds: at most TC_QR_RULES_MAX rules with unique names
 *     of allowed characters, a known kind and severity, metric indexes below the set's count,
 *     range bounds ordered, durations within TC_QR_FOR_MAX_S, an interval tolerance >= 1;
 *   - every accepted expression evaluates to -1, 0 or 1, on all-unknown values and on values
 *     taken from the input;
 *   - the evaluator fed readings built from the input, then ticked, never has more rules firing
 *     than rules x devices.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quality/rules.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_DEVICES 4

static void fz_require(int ok, const char *what, const char *detail)
{
    if (!ok) {
        fprintf(stderr, "invariant violated: %s (%s)\n", what, detail ? detail : "");
        abort();
    }
}

static void fz_check_set(const tc_qr_set *set)
{
    size_t n = tc_qr_count(set);
    int nm = tc_qr_metric_count(set);

    fz_require(n <= TC_QR_RULES_MAX, "rule count", NULL);
    fz_require(nm >= 0 && nm <= TC_QR_METRICS_MAX, "metric count", NULL);
    for (int m = 0; m < nm; m++)
        fz_require(tc_qr_metric_name(set, m) && tc_qr_metric_name(set, m)[0], "metric name", NULL);
    for (size_t i = 0; i < n; i++) {
        const tc_qr_rule *r = tc_qr_get(set, i);
        fz_require(r->name[0] && strlen(r->name) <= TC_QR_NAME_MAX, "name length", r->name);
        fz_require(strspn(r->name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                   "0123456789_.-") == strlen(r->name),
                   "name characters", r->name);
        for (size_t j = 0; j < i; j++)
            fz_require(strcmp(tc_qr_get(set, j)->name, r->name) != 0, "unique names", r->name);
        fz_require((unsigned)r->kind < TC_QR_KIND__COUNT, "kind", r->name);
        fz_require(r->severity == TC_QR_WARNING || r->severity == TC_QR_CRITICAL, "severity",
                   r->name);
        fz_require(r->for_us >= 0 && r->for_us <= (int64_t)TC_QR_FOR_MAX_S * 1000000, "for",
                   r->name);
        fz_require(r->ntags >= 0 && r->ntags <= TC_QR_TAGS_MAX, "tags", r->name);
        if (r->kind == TC_QR_RANGE || r->kind == TC_QR_RATE || r->kind == TC_QR_STUCK)
            fz_require(r->metric >= 0 && r->metric < nm, "metric index", r->name);
        if (r->kind == TC_QR_RANGE)
            fz_require(!(r->min > r->max) && !(isnan(r->min) && isnan(r->max)), "range bounds",
                       r->name);
        if (r->kind == TC_QR_REQUIRED) {
            fz_require(r->nrequired >= 1 && r->nrequired <= TC_QR_REQUIRED_MAX, "required",
                       r->name);
            for (int k = 0; k < r->nrequired; k++)
                fz_require(r->required[k] >= 0 && r->required[k] < nm, "required index", r->name);
        }
        if (r->kind == TC_QR_INTERVAL)
            fz_require(r->expected_s > 0 && r->tolerance >= 1, "interval", r->name);
        if (r->kind == TC_QR_STUCK)
            fz_require(r->stuck_readings >= 2 || r->stuck_s > 0, "stuck", r->name);
        if (r->kind == TC_QR_EXPR)
            fz_require(r->expr.nops >= 1 && r->expr.nops <= TC_QX_OPS_MAX, "expr ops", r->name);
    }
}

static void fz_on_event(void *opaque, const tc_qr_event *e)
{
    (void)opaque;
    fz_require(e->rule && e->device && (e->firing == 0 || e->firing == 1), "event", NULL);
    fz_require(e->firing ? e->end_us == 0 : e->end_us >= e->start_us, "event times", e->rule->name);
}

static void fz_run(const tc_qr_set *set, const uint8_t *data, size_t size)
{
    double values[TC_QR_METRICS_MAX], nan_values[TC_QR_METRICS_MAX];
    char errstr[TC_ERRSTR_MAX], dev[8];
    tc_qr_tag tags[1] = {{"site", "berlin-1"}};
    tc_qr_eval *e = tc_qr_eval_new(set, FZ_DEVICES, fz_on_event, NULL, errstr, sizeof(errstr));
    int nm = tc_qr_metric_count(set);

    fz_require(e != NULL, "evaluator", errstr);
    for (int m = 0; m < TC_QR_METRICS_MAX; m++) {
        nan_values[m] = NAN;
        values[m] = m < (int)size ? (double)data[m] - 100.0 : 0.0;
    }
    for (size_t i = 0; i < tc_qr_count(set); i++) {
        const tc_qr_rule *r = tc_qr_get(set, i);
        if (r->kind != TC_QR_EXPR)
            continue;
        int a = tc_qx_eval(&r->expr, nan_values), b = tc_qx_eval(&r->expr, values);
        fz_require(a >= -1 && a <= 1 && b >= -1 && b <= 1, "expression result", r->name);
    }
    for (size_t i = 0; i < 64 && i < size; i++) {
        tc_qr_reading rd;
        int k = (int)(i % 5);
        values[i % (size_t)(nm ? nm : 1)] = data[i] == 0xff ? NAN : (double)data[i] - 100.0;
        snprintf(dev, sizeof(dev), "d-%d", k);
        rd = (tc_qr_reading){dev,
                             strlen(dev),
                             (int64_t)i * 1000000 * (1 + data[i] % 4),
                             values,
                             data[i] & 1 ? tags : NULL,
                             data[i] & 1,
                             data[i] % 3};
        tc_qr_eval_reading(e, &rd);
        if (data[i] % 7 == 0)
            tc_qr_eval_tick(e, (int64_t)(i + data[i]) * 1000000);
    }
    fz_require(tc_qr_eval_firing(e) <= tc_qr_count(set) * FZ_DEVICES, "firing count", NULL);
    tc_qr_eval_destroy(e);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err1[TC_ERRSTR_MAX] = "", err2[TC_ERRSTR_MAX] = "";
    tc_qr_set *set = tc_qr_parse((const char *)data, size, "fuzz.yaml", err1, sizeof(err1));
    size_t line = 0, col = 0;

    if (!set) {
        fz_require(sscanf(err1, "fuzz.yaml:%zu:%zu: ", &line, &col) == 2 && line >= 1 && col >= 1,
                   "error names line and column", err1);
        fz_require(tc_qr_parse((const char *)data, size, "fuzz.yaml", err2, sizeof(err2)) == NULL &&
                       !strcmp(err1, err2),
                   "deterministic refusal", err2);
        return 0;
    }
    fz_check_set(set);
    fz_run(set, data, size);
    tc_qr_free(set);
    return 0;
}
