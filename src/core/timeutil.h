/*
 * timeutil.h -- wall-clock time, RFC 3339 parsing and formatting, civil-date arithmetic.
 *
 * Thermocline stores every event time as int64 microseconds since 1970-01-01T00:00:00Z (UTC), the
 * resolution of PostgreSQL timestamptz and of Parquet TIMESTAMP(MICROS), so nothing is lost between
 * the two sinks. Conversions never go through the C library's time functions: strptime and mktime
 * depend on the locale and the TZ environment, timegm is not standard C, and all of them work on
 * struct tm with its int fields and odd year origin. Instead the calendar is Howard Hinnant's
 * branch-light days<->civil algorithms on the proleptic Gregorian calendar, which are exact for
 * every year and cost a few integer operations.
 *
 * Leap seconds: like PostgreSQL, a seconds field of 60 is accepted and simply counts as one more
 * second, so 23:59:60Z is the same instant as 00:00:00Z of the next day. Unix time has no leap
 * seconds, so there is nothing better to map it to, and agreeing with the database means a value
 * reads back as the same instant whichever path stored it.
 */
#ifndef TC_CORE_TIMEUTIL_H
#define TC_CORE_TIMEUTIL_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "core/error.h"

#define TC_USEC_PER_SEC 1000000LL
#define TC_USEC_PER_DAY (86400LL * TC_USEC_PER_SEC)

/* Buffer size that always holds tc_time_format_rfc3339 output plus its NUL: the longest string is
 * for INT64_MIN, "-290308-12-21T19:59:05.224192Z" (30 characters). */
#define TC_TIME_RFC3339_MAX 32

/* Current wall-clock time (CLOCK_REALTIME) in microseconds since the epoch. */
int64_t tc_time_now_us(void);
/* CPU time the calling thread has used, in nanoseconds (user and system). A system call, not the
 * vDSO's clock: a few hundred nanoseconds, so callers read it per batch, not per reading. */
uint64_t tc_time_thread_cpu_ns(void);
/* The calling thread's CPU nanoseconds since the reading `since` (0 if the clock failed). */
uint64_t tc_time_thread_cpu_since(uint64_t since);

/* The wall-clock time ms milliseconds from now, the deadline pthread_cond_timedwait wants. */
struct timespec tc_time_deadline(long ms);

/*
 * Parse an RFC 3339 date-time, s[0..len) (not NUL-terminated), into microseconds since the epoch:
 *   YYYY-MM-DD ('T' | 't' | ' ') HH:MM:SS [.fraction] ('Z' | 'z' | ('+' | '-') HH:MM)
 * The fraction has 1..9 digits and is truncated to microseconds. Years 0000..9999 are accepted
 * (range policy is the validator's job); month, day (leap years included), hour 0..23, minute
 * 0..59, second 0..60 (60 = leap second, see above) and offsets up to 23:59 are checked. The whole
 * input must match: no surrounding whitespace. Returns TC_OK, or TC_ERR_INVALID and leaves *out_us
 * alone.
 */
tc_err tc_time_parse_rfc3339(const char *s, size_t len, int64_t *out_us);

/*
 * Format us as "YYYY-MM-DDTHH:MM:SS.ffffffZ" (UTC, always six fraction digits) into buf and
 * NUL-terminate it. Years outside 0000..9999 (possible only far outside any real event time) are
 * written in ISO 8601 expanded form with a sign, e.g. "+10000-01-01T..." or "-0001-12-31T...", so
 * the output is never silently wrong. Returns the length written (without the NUL), or 0 when cap
 * is too small, in which case buf holds "" if cap > 0. TC_TIME_RFC3339_MAX is always enough.
 */
size_t tc_time_format_rfc3339(int64_t us, char *buf, size_t cap);

/* Days since 1970-01-01 of the proleptic Gregorian date y-m-d (m 1..12, d 1..31; year 0 exists and
 * is a leap year, as in ISO 8601). Out-of-range m or d give a meaningless but defined result. */
/* Sleep for ms milliseconds (interrupted sleeps are not resumed: callers loop on their own). */
void tc_time_sleep_ms(long ms);

/* Day number (days since 1970-01-01, floor) of a time in microseconds since the epoch. */
int64_t tc_time_day_of(int64_t us);

int64_t tc_time_days_from_civil(int y, unsigned m, unsigned d);

/* Inverse of tc_time_days_from_civil. days must keep the year within int (|days| < 7.8e11, far
 * beyond the +-1.07e8 days an int64 microsecond count can reach). */
void tc_time_civil_from_days(int64_t days, int *y, unsigned *m, unsigned *d);

#endif
