/*
 * fuzz_feature_defs.c -- libFuzzer target for tc_feat_defs_parse (features.definitions) and the
 * window accumulator that computes what it accepts.
 *
 * Beyond "no crash, no UB, no leak" (the input is copied to an exact-size NUL-terminated buffer,
 * so ASan sees every read past it):
 *   - a refusal says "features.definitions:LINE:COL: " with LINE and COL at least 1, leaves no
 *     definition, and is the same message on a second parse (deterministic);
 *   - an accepted set obeys defs.h: at most TC_FEAT_DEFS_MAX definitions, unique non-empty names
 *     and metrics of [A-Za-z0-9_], a known aggregate, a window dividing a day, bounds ordered and
 *     given on out_of_range only;
 *   - writing the accepted set out again and parsing that gives the same set (round trip);
 *   - an accumulator fed readings made from the input finishes within its bounds: count <= rows,
 *     share_missing in [0, 1], min <= mean <= max (up to rounding), std >= 0,
 *     out_of_range <= count.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "features/defs.h"
#include "features/window_agg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fz_require(int ok, const char *what, const char *detail)
{
    if (!ok) {
        fprintf(stderr, "invariant violated: %s (%s)\n", what, detail ? detail : "");
        abort();
    }
}

static int fz_ident(const char *s)
{
    return s[0] && strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") ==
                       strlen(s);
}

static void fz_check_set(const tc_feat_defs *d)
{
    fz_require(d->n <= TC_FEAT_DEFS_MAX, "definition count", NULL);
    for (size_t i = 0; i < d->n; i++) {
        const tc_feat_def *f = &d->def[i];

        fz_require(fz_ident(f->name) && strlen(f->name) <= TC_FEAT_NAME_MAX, "name", f->name);
        /* A quality figure of the device has none (checked below). */
        fz_require((!f->metric[0] || fz_ident(f->metric)) &&
                       strlen(f->metric) <= TC_FEAT_METRIC_MAX,
                   "metric", f->metric);
        fz_require((unsigned)f->agg < TC_FA__COUNT, "aggregate", f->name);
        fz_require(f->window_s >= TC_FEAT_WINDOW_MIN_S && 86400 % f->window_s == 0, "window",
                   f->name);
        fz_require(f->lo <= f->hi, "bounds ordered", f->name);
        fz_require(f->agg == TC_FA_OUT_OF_RANGE || (f->lo == -INFINITY && f->hi == INFINITY),
                   "bounds on out_of_range only", f->name);
        fz_require(tc_feat_agg_has_metric(f->agg) ? f->metric[0] != '\0' : f->metric[0] == '\0',
                   "a metric exactly when the aggregate takes one", f->name);
        for (size_t j = 0; j < i; j++)
            fz_require(strcmp(d->def[j].name, f->name) != 0, "unique names", f->name);
    }
}

/* The set written back in the language; the parser must read the same set from it. */
static void fz_round_trip(const tc_feat_defs *d)
{
    static char text[TC_FEAT_TEXT_MAX];
    static tc_feat_defs again;
    char errstr[TC_ERRSTR_MAX], w[16];
    size_t len = 0;

    text[0] = '\0';
    for (size_t i = 0; i < d->n; i++) {
        const tc_feat_def *f = &d->def[i];

        fz_require(tc_feat_window_format(f->window_s, w, sizeof(w)) > 0, "window format", f->name);
        /* A quality figure is the device's: FIGURE(WINDOW). */
        len += (size_t)snprintf(text + len, sizeof(text) - len, "%s = %s(%s%s%s", f->name,
                                tc_feat_agg_name(f->agg), f->metric, f->metric[0] ? ", " : "", w);
        if (f->lo != -INFINITY)
            len += (size_t)snprintf(text + len, sizeof(text) - len, ", min=%.17g", f->lo);
        if (f->hi != INFINITY)
            len += (size_t)snprintf(text + len, sizeof(text) - len, ", max=%.17g", f->hi);
        len += (size_t)snprintf(text + len, sizeof(text) - len, ")\n");
        if (len >= sizeof(text))
            return; /* the set's text form is longer than the cap: nothing to compare */
    }
    fz_require(tc_feat_defs_parse(text, &again, errstr, sizeof(errstr)) == TC_OK, "round trip",
               errstr);
    fz_require(again.n == d->n, "round trip count", NULL);
    for (size_t i = 0; i < d->n; i++) {
        const tc_feat_def *a = &d->def[i], *b = &again.def[i];

        fz_require(!strcmp(a->name, b->name) && !strcmp(a->metric, b->metric) && a->agg == b->agg &&
                       a->window_s == b->window_s && a->lo == b->lo && a->hi == b->hi,
                   "round trip definition", a->name);
    }
}

static void fz_check_agg(const tc_feat_def *f, const uint8_t *data, size_t size)
{
    tc_wagg a;
    double v[TC_FA__COUNT];
    int ok[TC_FA__COUNT];

    tc_wagg_init_def(&a, f, 0);
    for (size_t i = 0; i + 3 <= size && i < 3 * 256; i += 3) {
        double x = (double)(int8_t)data[i] * 0.5;
        int64_t t = (int64_t)(data[i + 1] % 60) * 1000000 * (f->window_s / 60);

        tc_wagg_update(&a, t, x, data[i + 2] % 5 != 0);
    }
    for (int g = 0; g < TC_FA__COUNT; g++)
        ok[g] = tc_wagg_finish(&a, (tc_feat_agg)g, &v[g]);
    fz_require(ok[TC_FA_COUNT] && v[TC_FA_COUNT] <= (double)a.rows, "count <= rows", f->name);
    fz_require(!ok[TC_FA_SHARE_MISSING] ||
                   (v[TC_FA_SHARE_MISSING] >= 0 && v[TC_FA_SHARE_MISSING] <= 1),
               "share_missing in [0, 1]", f->name);
    fz_require(v[TC_FA_OUT_OF_RANGE] <= v[TC_FA_COUNT], "out_of_range <= count", f->name);
    if (ok[TC_FA_MEAN]) {
        fz_require(v[TC_FA_MIN] <= v[TC_FA_MEAN] + 1e-9 && v[TC_FA_MEAN] <= v[TC_FA_MAX] + 1e-9,
                   "min <= mean <= max", f->name);
        fz_require(v[TC_FA_LAST] >= v[TC_FA_MIN] && v[TC_FA_LAST] <= v[TC_FA_MAX], "last in range",
                   f->name);
    }
    fz_require(!ok[TC_FA_STD] || v[TC_FA_STD] >= 0, "std >= 0", f->name);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static tc_feat_defs defs;
    char errstr[TC_ERRSTR_MAX], again[TC_ERRSTR_MAX];
    char *text = malloc(size + 1);
    int line = 0, col = 0;

    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    if (tc_feat_defs_parse(text, &defs, errstr, sizeof(errstr)) != TC_OK) {
        fz_require(defs.n == 0, "refusal keeps nothing", errstr);
        fz_require(strncmp(errstr, "features.definitions", 20) == 0, "message prefix", errstr);
        if (sscanf(errstr, "features.definitions:%d:%d:", &line, &col) == 2)
            fz_require(line >= 1 && col >= 1, "line and column", errstr);
        fz_require(tc_feat_defs_parse(text, &defs, again, sizeof(again)) != TC_OK &&
                       strcmp(errstr, again) == 0,
                   "deterministic refusal", errstr);
    } else {
        fz_check_set(&defs);
        fz_round_trip(&defs);
        for (size_t i = 0; i < defs.n && i < 4; i++)
            fz_check_agg(&defs.def[i], data, size);
    }
    free(text);
    return 0;
}
