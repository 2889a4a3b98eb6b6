/*
 * defs.c -- the feature definitions parser; the language is in defs.h.
 *
 * A hand-written scanner over the text with a line and column kept at every step, so each error
 * points at the byte that broke the rule. No allocation: the result is a fixed-size value, and a
 * definition beyond TC_FEAT_DEFS_MAX, a name beyond its cap or a text beyond TC_FEAT_TEXT_MAX is
 * refused, not grown for. Numbers go through strtod on a bounded copy, so a number never reads
 * past its token.
 */
#include "features/defs.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Longest number token (min=/max=). */
#define TC_FEAT_NUMBER_MAX 63

static const char *const tc_feat_agg_names[TC_FA__COUNT] = {
    [TC_FA_COUNT] = "count",
    [TC_FA_MEAN] = "mean",
    [TC_FA_STD] = "std",
    [TC_FA_MIN] = "min",
    [TC_FA_MAX] = "max",
    [TC_FA_LAST] = "last",
    [TC_FA_SLOPE] = "slope",
    [TC_FA_SHARE_MISSING] = "share_missing",
    [TC_FA_OUT_OF_RANGE] = "out_of_range",
    [TC_FA_ANOMALIES] = "anomalies",
    [TC_FA_LATE] = "late",
    [TC_FA_OUT_OF_ORDER] = "out_of_order",
    [TC_FA_DEAD_LETTERS] = "dead_letters",
    [TC_FA_DUPLICATES] = "duplicates",
    [TC_FA_GAPS] = "gaps",
    [TC_FA_GAP_MAX_S] = "gap_max_s",
    [TC_FA_DELAY_P50_MS] = "delay_p50_ms",
    [TC_FA_DELAY_P99_MS] = "delay_p99_ms",
};

int tc_feat_agg_from_quality(tc_feat_agg agg)
{
    return agg >= TC_FA_ANOMALIES && agg < TC_FA__COUNT;
}

int tc_feat_agg_has_metric(tc_feat_agg agg)
{
    return agg <= TC_FA_ANOMALIES;
}

int tc_feat_defs_need_quality(const tc_feat_defs *defs)
{
    for (size_t i = 0; i < defs->n; i++)
        if (tc_feat_agg_from_quality(defs->def[i].agg))
            return 1;
    return 0;
}

const char *tc_feat_agg_name(tc_feat_agg agg)
{
    return (unsigned)agg < TC_FA__COUNT ? tc_feat_agg_names[agg] : "?";
}

int tc_feat_agg_parse(const char *name, size_t len)
{
    for (int i = 0; i < TC_FA__COUNT; i++) {
        if (strlen(tc_feat_agg_names[i]) == len && memcmp(tc_feat_agg_names[i], name, len) == 0)
            return i;
    }
    return -1;
}

int tc_feat_window_format(int64_t window_s, char *out, size_t cap)
{
    int n;

    if (window_s % 86400 == 0)
        n = snprintf(out, cap, "%lldd", (long long)(window_s / 86400));
    else if (window_s % 3600 == 0)
        n = snprintf(out, cap, "%lldh", (long long)(window_s / 3600));
    else
        n = snprintf(out, cap, "%lldm", (long long)(window_s / 60));
    return n < 0 || (size_t)n >= cap ? -1 : n;
}

const tc_feat_def *tc_feat_defs_find(const tc_feat_defs *defs, const char *name)
{
    for (size_t i = 0; i < defs->n; i++) {
        if (strcmp(defs->def[i].name, name) == 0)
            return &defs->def[i];
    }
    return NULL;
}

typedef struct tc_feat_scan {
    const char *p;
    int line, col;
    char *errstr;
    size_t errstr_size;
} tc_feat_scan;

static tc_err tc_feat_fail(const tc_feat_scan *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static tc_err tc_feat_fail(const tc_feat_scan *s, const char *fmt, ...)
{
    char msg[TC_ERRSTR_MAX];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return tc_err_set(TC_ERR_CONFIG, s->errstr, s->errstr_size, "features.definitions:%d:%d: %s",
                      s->line, s->col, msg);
}

static void tc_feat_advance(tc_feat_scan *s, size_t n)
{
    for (size_t i = 0; i < n && *s->p; i++, s->p++) {
        if (*s->p == '\n') {
            s->line++;
            s->col = 1;
        } else {
            s->col++;
        }
    }
}

/* Skip spaces and tabs (and comments); with newlines too when nl is set. */
static void tc_feat_skip(tc_feat_scan *s, int nl)
{
    for (;;) {
        if (*s->p == ' ' || *s->p == '\t' || *s->p == '\r' || (nl && *s->p == '\n')) {
            tc_feat_advance(s, 1);
        } else if (*s->p == '#') {
            while (*s->p && *s->p != '\n')
                tc_feat_advance(s, 1);
        } else {
            return;
        }
    }
}

static int tc_feat_is_ident(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

/* An identifier into out (cap includes the NUL); what names it in messages. */
static tc_err tc_feat_ident(tc_feat_scan *s, char *out, size_t cap, const char *what)
{
    size_t n = 0;

    while (tc_feat_is_ident(s->p[n]))
        n++;
    if (n == 0)
        return tc_feat_fail(s, "expected %s ([A-Za-z0-9_]+)", what);
    if (n >= cap) {
        char lim[32];

        snprintf(lim, sizeof(lim), "%zu", cap - 1);
        return tc_feat_fail(s, "%s longer than %s bytes", what, lim);
    }
    memcpy(out, s->p, n);
    out[n] = '\0';
    tc_feat_advance(s, n);
    return TC_OK;
}

static tc_err tc_feat_expect(tc_feat_scan *s, char c, const char *context)
{
    char want[2] = {c, 0};

    tc_feat_skip(s, 0);
    if (*s->p != c)
        return tc_feat_fail(s, "expected '%s' %s", want, context);
    tc_feat_advance(s, 1);
    tc_feat_skip(s, 0);
    return TC_OK;
}

static tc_err tc_feat_window(tc_feat_scan *s, int64_t *window_s)
{
    long long n = 0;
    size_t i = 0;
    int64_t unit;

    while (s->p[i] >= '0' && s->p[i] <= '9' && i < 6)
        n = n * 10 + (s->p[i++] - '0');
    if (i == 0 || (s->p[i] >= '0' && s->p[i] <= '9'))
        return tc_feat_fail(s, "expected a window: <N>m, <N>h or <N>d");
    switch (s->p[i]) {
    case 'm':
        unit = 60;
        break;
    case 'h':
        unit = 3600;
        break;
    case 'd':
        unit = 86400;
        break;
    default:
        return tc_feat_fail(s, "expected a window unit m, h or d after the number");
    }
    if (tc_feat_is_ident(s->p[i + 1]))
        return tc_feat_fail(s, "expected a window: <N>m, <N>h or <N>d");
    *window_s = n * unit;
    if (*window_s < TC_FEAT_WINDOW_MIN_S || *window_s > TC_FEAT_WINDOW_MAX_S ||
        TC_FEAT_WINDOW_MAX_S % *window_s != 0)
        return tc_feat_fail(s,
                            "window must divide a day, from 1m to 1d (1m, 5m, 15m, 1h, 6h, 1d...)");
    tc_feat_advance(s, i + 1);
    return TC_OK;
}

static tc_err tc_feat_number(tc_feat_scan *s, double *out)
{
    char buf[TC_FEAT_NUMBER_MAX + 1];
    size_t n = 0;
    char *end;

    while (s->p[n] && strchr("0123456789+-.eE", s->p[n]) && n < TC_FEAT_NUMBER_MAX)
        n++;
    memcpy(buf, s->p, n);
    buf[n] = '\0';
    *out = n ? strtod(buf, &end) : 0;
    if (n == 0 || *end != '\0' || !isfinite(*out))
        return tc_feat_fail(s, "expected a finite number");
    tc_feat_advance(s, n);
    return TC_OK;
}

/* min=NUMBER or max=NUMBER, after a ','. */
static tc_err tc_feat_bound(tc_feat_scan *s, tc_feat_def *d, int *seen)
{
    char key[8];
    tc_err err = tc_feat_ident(s, key, sizeof(key), "min= or max=");

    if (err != TC_OK)
        return err;
    if (strcmp(key, "min") != 0 && strcmp(key, "max") != 0)
        return tc_feat_fail(s, "unknown parameter \"%s\" (min or max)", key);
    if (*seen & (key[1] == 'i' ? 1 : 2))
        return tc_feat_fail(s, "parameter \"%s\" given twice", key);
    *seen |= key[1] == 'i' ? 1 : 2;
    if ((err = tc_feat_expect(s, '=', "after the parameter's name")) != TC_OK)
        return err;
    return tc_feat_number(s, key[1] == 'i' ? &d->lo : &d->hi);
}

static tc_err tc_feat_one(tc_feat_scan *s, tc_feat_defs *out)
{
    tc_feat_def *d = &out->def[out->n];
    char agg[TC_FEAT_NAME_MAX + 1];
    int seen = 0, a;
    tc_err err;

    memset(d, 0, sizeof(*d));
    d->lo = -INFINITY;
    d->hi = INFINITY;
    d->line = s->line;
    if ((err = tc_feat_ident(s, d->name, sizeof(d->name), "a feature name")) != TC_OK)
        return err;
    if (tc_feat_defs_find(out, d->name))
        return tc_feat_fail(s, "feature \"%s\" is defined twice", d->name);
    if ((err = tc_feat_expect(s, '=', "after the feature's name")) != TC_OK)
        return err;
    {
        tc_feat_scan at = *s;

        if ((err = tc_feat_ident(s, agg, sizeof(agg), "an aggregate")) != TC_OK)
            return err;
        if ((a = tc_feat_agg_parse(agg, strlen(agg))) < 0)
            return tc_feat_fail(&at,
                                "unknown aggregate \"%s\" (count, mean, std, min, max, last, "
                                "slope, share_missing, out_of_range, anomalies; figures: late, "
                                "out_of_order, dead_letters, duplicates, gaps, gap_max_s, "
                                "delay_p50_ms, delay_p99_ms)",
                                agg);
        d->agg = (tc_feat_agg)a;
    }
    if ((err = tc_feat_expect(s, '(', "after the aggregate")) != TC_OK)
        return err;
    /* A quality figure is the device's: its only argument is the window. */
    if (tc_feat_agg_has_metric(d->agg) &&
        ((err = tc_feat_ident(s, d->metric, sizeof(d->metric), "a metric")) != TC_OK ||
         (err = tc_feat_expect(s, ',', "between the metric and the window")) != TC_OK))
        return err;
    if (!tc_feat_agg_has_metric(d->agg) && !(*s->p >= '0' && *s->p <= '9'))
        return tc_feat_fail(s, "%s is a figure of the device: %s(WINDOW), no metric",
                            tc_feat_agg_name(d->agg), tc_feat_agg_name(d->agg));
    if ((err = tc_feat_window(s, &d->window_s)) != TC_OK)
        return err;
    tc_feat_skip(s, 0);
    while (*s->p == ',') {
        tc_feat_advance(s, 1);
        tc_feat_skip(s, 0);
        if (d->agg != TC_FA_OUT_OF_RANGE)
            return tc_feat_fail(s, "min= and max= belong to out_of_range, not to %s",
                                tc_feat_agg_name(d->agg));
        if ((err = tc_feat_bound(s, d, &seen)) != TC_OK)
            return err;
        tc_feat_skip(s, 0);
    }
    if ((err = tc_feat_expect(s, ')', "closing the definition")) != TC_OK)
        return err;
    if (d->agg == TC_FA_OUT_OF_RANGE && !seen)
        return tc_feat_fail(s, "out_of_range of \"%s\" needs min= and/or max=", d->name);
    if (d->lo > d->hi)
        return tc_feat_fail(s, "min is above max in \"%s\"", d->name);
    if (*s->p && *s->p != ';' && *s->p != '\n')
        return tc_feat_fail(s, "expected ';' or a new line after the definition of \"%s\"",
                            d->name);
    out->n++;
    return TC_OK;
}

tc_err tc_feat_defs_parse(const char *text, tc_feat_defs *out, char *errstr, size_t errstr_size)
{
    tc_feat_scan s = {text ? text : "", 1, 1, errstr, errstr_size};
    tc_err err = TC_OK;

    out->n = 0;
    if (strlen(s.p) > TC_FEAT_TEXT_MAX)
        return tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                          "features.definitions: longer than %d bytes", TC_FEAT_TEXT_MAX);
    for (;;) {
        tc_feat_skip(&s, 1);
        while (*s.p == ';') {
            tc_feat_advance(&s, 1);
            tc_feat_skip(&s, 1);
        }
        if (!*s.p)
            break;
        if (out->n == TC_FEAT_DEFS_MAX) {
            char lim[16];

            snprintf(lim, sizeof(lim), "%d", TC_FEAT_DEFS_MAX);
            err = tc_feat_fail(&s, "more than %s definitions", lim);
            break;
        }
        if ((err = tc_feat_one(&s, out)) != TC_OK)
            break;
    }
    if (err != TC_OK)
        out->n = 0;
    return err;
}
