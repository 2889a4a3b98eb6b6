/*
 * schedule.h -- when a scheduled export runs, and which period each run exports.
 *
 * A schedule is cron's five fields (minute hour day-of-month month day-of-week: numbers, `*`,
 * lists `a,b`, ranges `a-b`, steps `* /n` and `a-b/n`; day of week 0-7 with 0 and 7 Sunday;
 * when both day fields are restricted a day matches either, as in cron) or a name: `hourly`
 * (0 * * * *), `daily` (0 0 * * *), `weekly` (0 0 * * 1: Monday, the ISO week) and `monthly`
 * (0 0 1 * *), with or without a leading '@'. The fields are read in a time zone (a name of the
 * system's tz database, e.g. Europe/Paris; UTC by default).
 *
 * Periods: the runs of a schedule cut time into consecutive periods, and the run at t exports
 * [previous run, t). So no reading ever falls between two periods, whatever the time zone does:
 * a run whose wall-clock time does not exist (02:30 on the night clocks go forward) does not
 * happen, and its period joins the next one; a wall-clock time that happens twice (the night
 * clocks go back) runs once, at its first occurrence.
 *
 * Time zones come from libc (TZ, tzset, localtime_r, mktime), whose zone is the process's: the
 * computations set TZ for their duration under a lock and restore it, so they must not race a
 * thread of the same process that reads local time (Thermocline logs and stores in UTC only).
 * Untrusted input: config files; the parser bounds every number and never reads past the text.
 */
#ifndef TC_EXPORT_SCHEDULE_H
#define TC_EXPORT_SCHEDULE_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

/* Longest schedule expression and time-zone name accepted. */
#define TC_SCHED_EXPR_MAX 128
#define TC_SCHED_TZ_MAX   64
/* How far ahead a run is looked for: a schedule that never fires in this span is refused
 * ("0 0 30 2 *" never does). Eight years covers 29 February. */
#define TC_SCHED_HORIZON_S ((int64_t)8 * 366 * 86400)

typedef struct tc_sched {
    uint64_t minute; /* bit m: minute m (0-59) */
    uint32_t hour;   /* bit h (0-23) */
    uint32_t dom;    /* bit d (1-31) */
    uint16_t month;  /* bit m (1-12) */
    uint8_t dow;     /* bit d (0-6, Sunday 0) */
    int dom_star, dow_star;
    char tz[TC_SCHED_TZ_MAX]; /* "" = UTC */
} tc_sched;

/* Parse expr (a name or five fields) in time zone tz (NULL or "" = UTC). The zone must be a name
 * of the tz database present on this system (UTC always is). errstr names the field at fault. */
tc_err tc_sched_parse(const char *expr, const char *tz, tc_sched *out, char *errstr,
                      size_t errstr_size);

/* The first run strictly after `after` (Unix seconds): *out. TC_ERR_INVALID when there is none
 * within TC_SCHED_HORIZON_S. */
tc_err tc_sched_next(const tc_sched *s, int64_t after, int64_t *out);

/* The last run at or before `at`: *out. TC_ERR_INVALID when there is none within the horizon. */
tc_err tc_sched_prev(const tc_sched *s, int64_t at, int64_t *out);

/* The period of the run at `run` (a run time): [*start, run), *start the run before it. */
tc_err tc_sched_period(const tc_sched *s, int64_t run, int64_t *start);

#endif
