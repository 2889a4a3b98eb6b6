/*
 * schedule.c -- cron schedules in a time zone; see schedule.h.
 *
 * The search walks forward from a candidate minute, in the zone's wall-clock fields: a month that
 * does not match skips to the first of the next month, a day to the next midnight, an hour to
 * the next hour, a minute to the next minute, each skip done by mktime on the wall-clock fields
 * (tm_isdst = -1, so the zone decides) and each candidate instant read back with localtime_r, so
 * the fields matched are the ones the clock really shows at that instant. A skip that would not
 * move forward (mktime may answer the earlier of two equal wall-clock times) is replaced by one
 * minute, which is always correct because the candidate itself did not match. The previous run
 * is found by searching forward from ever further back, since cron fields cannot be walked
 * backwards through the same skips without a second set of rules.
 */
#include "export/schedule.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

/* Where the tz database lives when TZDIR does not say. */
#define TC_SCHED_ZONEINFO "/usr/share/zoneinfo"
#define TC_SCHED_PATH_MAX 256

typedef struct tc_sched_name {
    const char *name, *expr;
} tc_sched_name;

static const tc_sched_name tc_sched_names[] = {
    {"hourly", "0 * * * *"},
    {"daily", "0 0 * * *"},
    {"weekly", "0 0 * * 1"},
    {"monthly", "0 0 1 * *"},
};

static const char *const tc_sched_field_names[5] = {"minute", "hour", "day of month", "month",
                                                    "day of week"};

/* One number of a field: digits only, bounded. Returns the characters read, 0 when none. */
static size_t tc_sched_num(const char *p, size_t n, int *out)
{
    size_t i = 0;
    int v = 0;

    while (i < n && p[i] >= '0' && p[i] <= '9' && i < 3)
        v = v * 10 + (p[i++] - '0');
    if (i < n && p[i] >= '0' && p[i] <= '9')
        return 0; /* four digits or more: out of every field's range */
    *out = v;
    return i;
}

/* Parse one field (n bytes) into bits of [lo, hi]. */
static tc_err tc_sched_field(const char *p, size_t n, int lo, int hi, uint64_t *bits, int *star,
                             const char *what, char *errstr, size_t errstr_size)
{
    size_t i = 0;

    *bits = 0;
    *star = n == 1 && p[0] == '*';
    while (i <= n) {
        int a, b, step = 1;
        size_t k;
        if (i < n && p[i] == '*') {
            a = lo;
            b = hi;
            i++;
        } else {
            k = tc_sched_num(p + i, n - i, &a);
            if (!k)
                goto bad;
            i += k;
            b = a;
            if (i < n && p[i] == '-') {
                i++;
                k = tc_sched_num(p + i, n - i, &b);
                if (!k)
                    goto bad;
                i += k;
            }
        }
        if (i < n && p[i] == '/') {
            i++;
            k = tc_sched_num(p + i, n - i, &step);
            if (!k || step < 1)
                goto bad;
            i += k;
        }
        if (a < lo || b > hi || a > b) {
            tc_err_set(TC_ERR_INVALID, errstr, errstr_size,
                       "schedule: %s field \"%.*s\": %d-%d is outside %d-%d", what, (int)n, p, a, b,
                       lo, hi);
            return TC_ERR_INVALID;
        }
        for (int v = a; v <= b; v += step)
            *bits |= (uint64_t)1 << v;
        if (i == n)
            return TC_OK;
        if (p[i] != ',')
            goto bad;
        i++;
    }
bad:
    tc_err_set(TC_ERR_INVALID, errstr, errstr_size,
               "schedule: %s field \"%.*s\" is not a number, *, a list, a range or a step", what,
               (int)n, p);
    return TC_ERR_INVALID;
}

/* The zone name is a path below the tz database: letters, digits, '_', '-', '+', '/' between
 * names, never "..", and a file there. */
static tc_err tc_sched_check_tz(const char *tz, char *errstr, size_t errstr_size)
{
    char path[TC_SCHED_PATH_MAX];
    const char *dir = getenv("TZDIR");
    struct stat st;
    size_t n = strlen(tz);

    if (n >= TC_SCHED_TZ_MAX) {
        tc_err_set(TC_ERR_INVALID, errstr, errstr_size,
                   "schedule: time zone \"%.40s...\" is too "
                   "long",
                   tz);
        return TC_ERR_INVALID;
    }
    if (!strcmp(tz, "UTC"))
        return TC_OK;
    for (size_t i = 0; i < n; i++) {
        char c = tz[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '_' || c == '-' || c == '+' || (c == '/' && i > 0 && tz[i - 1] != '/');
        if (!ok) {
            tc_err_set(TC_ERR_INVALID, errstr, errstr_size,
                       "schedule: time zone \"%s\" is not a tz database name (like Europe/Paris)",
                       tz);
            return TC_ERR_INVALID;
        }
    }
    snprintf(path, sizeof(path), "%s/%s", dir && *dir ? dir : TC_SCHED_ZONEINFO, tz);
    if (n == 0 || tz[n - 1] == '/' || stat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
        tc_err_set(TC_ERR_INVALID, errstr, errstr_size,
                   "schedule: time zone \"%s\" is not in the system's tz database (%s)", tz, path);
        return TC_ERR_INVALID;
    }
    return TC_OK;
}

tc_err tc_sched_parse(const char *expr, const char *tz, tc_sched *out, char *errstr,
                      size_t errstr_size)
{
    static const int lo[5] = {0, 0, 1, 1, 0}, hi[5] = {59, 23, 31, 12, 7};
    const char *p = expr;
    uint64_t bits[5];
    int star[5];
    tc_err err;

    memset(out, 0, sizeof(*out));
    if (strlen(expr) >= TC_SCHED_EXPR_MAX) {
        tc_err_set(TC_ERR_INVALID, errstr, errstr_size, "schedule \"%.40s...\" is too long", expr);
        return TC_ERR_INVALID;
    }
    if (tz && *tz) {
        if ((err = tc_sched_check_tz(tz, errstr, errstr_size)) != TC_OK)
            return err;
        snprintf(out->tz, sizeof(out->tz), "%s", tz);
    }
    if (*p == '@')
        p++;
    for (size_t k = 0; k < sizeof(tc_sched_names) / sizeof(tc_sched_names[0]); k++)
        if (!strcmp(p, tc_sched_names[k].name)) {
            p = tc_sched_names[k].expr;
            break;
        }
    if (*expr == '@' && p == expr + 1) {
        tc_err_set(TC_ERR_INVALID, errstr, errstr_size,
                   "schedule \"%s\": the names are hourly, daily, weekly and monthly", expr);
        return TC_ERR_INVALID;
    }
    for (int f = 0; f < 5; f++) {
        size_t n;
        while (*p == ' ' || *p == '\t')
            p++;
        n = strcspn(p, " \t");
        if (n == 0) {
            tc_err_set(TC_ERR_INVALID, errstr, errstr_size,
                       "schedule \"%s\": %s field missing (five fields: minute hour day-of-month "
                       "month day-of-week, or hourly, daily, weekly, monthly)",
                       expr, tc_sched_field_names[f]);
            return TC_ERR_INVALID;
        }
        if ((err = tc_sched_field(p, n, lo[f], hi[f], &bits[f], &star[f], tc_sched_field_names[f],
                                  errstr, errstr_size)) != TC_OK)
            return err;
        p += n;
    }
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p) {
        tc_err_set(TC_ERR_INVALID, errstr, errstr_size,
                   "schedule \"%s\": unexpected \"%s\" after the five fields", expr, p);
        return TC_ERR_INVALID;
    }
    out->minute = bits[0];
    out->hour = (uint32_t)bits[1];
    out->dom = (uint32_t)bits[2];
    out->month = (uint16_t)bits[3];
    out->dow = (uint8_t)((bits[4] | (bits[4] >> 7)) & 0x7f); /* 7 is Sunday too */
    out->dom_star = star[2];
    out->dow_star = star[4];
    return TC_OK;
}

/* ---- time-zone computations ---- */

static pthread_mutex_t tc_sched_tz_lock = PTHREAD_MUTEX_INITIALIZER;

typedef struct tc_sched_tz_saved {
    char value[TC_SCHED_PATH_MAX];
    int had;
} tc_sched_tz_saved;

static void tc_sched_tz_enter(const tc_sched *s, tc_sched_tz_saved *saved)
{
    const char *old;

    pthread_mutex_lock(&tc_sched_tz_lock);
    old = getenv("TZ");
    saved->had = old != NULL;
    if (old)
        snprintf(saved->value, sizeof(saved->value), "%s", old);
    setenv("TZ", s->tz[0] ? s->tz : "UTC", 1);
    tzset();
}

static void tc_sched_tz_leave(tc_sched_tz_saved *saved)
{
    if (saved->had)
        setenv("TZ", saved->value, 1);
    else
        unsetenv("TZ");
    tzset();
    pthread_mutex_unlock(&tc_sched_tz_lock);
}

static int tc_sched_day_ok(const tc_sched *s, const struct tm *tm)
{
    int dom = (s->dom >> tm->tm_mday) & 1, dow = (s->dow >> tm->tm_wday) & 1;

    if (s->dom_star || s->dow_star)
        return dom && dow;
    return dom || dow; /* both restricted: either, as cron does */
}

/* The instant of wall-clock fields tm (normalised by mktime), never before floor + 60. */
static int64_t tc_sched_skip(struct tm *tm, int64_t t)
{
    time_t nt;

    tm->tm_isdst = -1;
    nt = mktime(tm);
    return nt == (time_t)-1 || (int64_t)nt <= t ? t + 60 : (int64_t)nt;
}

/* A wall-clock time that happened already, before the clocks went back: not a second run. */
static int tc_sched_repeat(int64_t t, const struct tm *tm)
{
    struct tm before, again;
    time_t e = (time_t)(t - 3 * 3600), r;
    long back;

    localtime_r(&e, &before);
    back = before.tm_gmtoff - tm->tm_gmtoff;
    if (back <= 0)
        return 0;
    r = (time_t)(t - back);
    localtime_r(&r, &again);
    return again.tm_year == tm->tm_year && again.tm_yday == tm->tm_yday &&
           again.tm_hour == tm->tm_hour && again.tm_min == tm->tm_min;
}

/* tc_sched_next with the zone already set. */
static tc_err tc_sched_next_locked(const tc_sched *s, int64_t after, int64_t *out)
{
    int64_t t = after - (after % 60 + 60) % 60 + 60, limit = after + TC_SCHED_HORIZON_S;

    while (t < limit) {
        struct tm tm;
        time_t tt = (time_t)t;
        localtime_r(&tt, &tm);
        if (!((s->month >> (tm.tm_mon + 1)) & 1)) {
            tm.tm_mon++;
            tm.tm_mday = 1;
            tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
            t = tc_sched_skip(&tm, t);
        } else if (!tc_sched_day_ok(s, &tm)) {
            tm.tm_mday++;
            tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
            t = tc_sched_skip(&tm, t);
        } else if (!((s->hour >> tm.tm_hour) & 1)) {
            tm.tm_hour++;
            tm.tm_min = tm.tm_sec = 0;
            t = tc_sched_skip(&tm, t);
        } else if (!((s->minute >> tm.tm_min) & 1) || tc_sched_repeat(t, &tm)) {
            t += 60;
        } else {
            *out = t;
            return TC_OK;
        }
    }
    return TC_ERR_INVALID;
}

tc_err tc_sched_next(const tc_sched *s, int64_t after, int64_t *out)
{
    tc_sched_tz_saved saved;
    tc_err err;

    tc_sched_tz_enter(s, &saved);
    err = tc_sched_next_locked(s, after, out);
    tc_sched_tz_leave(&saved);
    return err;
}

tc_err tc_sched_prev(const tc_sched *s, int64_t at, int64_t *out)
{
    /* Look back 2 hours, then 2 days, 40 days, 400 days, the horizon: the first window holding a
     * run gives the last one by walking forward inside it. */
    static const int64_t back[] = {7200, 2 * 86400, 40 * 86400, 400 * 86400, TC_SCHED_HORIZON_S};
    tc_sched_tz_saved saved;
    tc_err err = TC_ERR_INVALID;

    tc_sched_tz_enter(s, &saved);
    for (size_t k = 0; k < sizeof(back) / sizeof(back[0]) && err != TC_OK; k++) {
        int64_t t = at - back[k], run;
        while (tc_sched_next_locked(s, t, &run) == TC_OK && run <= at) {
            *out = run;
            err = TC_OK;
            t = run;
        }
    }
    tc_sched_tz_leave(&saved);
    return err;
}

tc_err tc_sched_period(const tc_sched *s, int64_t run, int64_t *start)
{
    return tc_sched_prev(s, run - 1, start);
}
