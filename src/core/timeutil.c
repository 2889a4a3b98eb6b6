/*
 * timeutil.c -- RFC 3339 parsing/formatting and civil-date arithmetic; see timeutil.h.
 *
 * The parser is a fixed-layout scanner: RFC 3339 full-date/partial-time have fixed widths, so every
 * field sits at a known offset and is read with a small digit helper; only the fraction and the
 * offset have variable position. No locale, no libc time conversion, no allocation.
 */
#include "core/timeutil.h"

#include <time.h>

/* Longest fraction RFC 3339 practice produces (nanoseconds). Longer ones are refused rather than
 * truncated, so a garbled value is not mistaken for a valid one. */
#define TC_TIME_FRAC_DIGITS_MAX 9

/* Fraction digits that survive: we store microseconds. */
#define TC_TIME_FRAC_DIGITS_KEPT 6

/* Offsets beyond +-23:59 do not exist in RFC 3339 (time-numoffset has a two-digit hour, and
 * real-world offsets stay within +-14:00); 23 is the grammar's bound. */
#define TC_TIME_OFFSET_HOUR_MAX 23

/* Length of "YYYY-MM-DDTHH:MM:SS", the fixed-width prefix every RFC 3339 date-time starts with. */
#define TC_TIME_FIXED_LEN 19

int64_t tc_time_now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * TC_USEC_PER_SEC + ts.tv_nsec / 1000;
}

uint64_t tc_time_thread_cpu_ns(void)
{
    struct timespec ts;

    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0)
        return 0;
    return (uint64_t)ts.tv_sec * UINT64_C(1000000000) + (uint64_t)ts.tv_nsec;
}

uint64_t tc_time_thread_cpu_since(uint64_t since)
{
    uint64_t now = tc_time_thread_cpu_ns();

    return now > since ? now - since : 0;
}

struct timespec tc_time_deadline(long ms)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000L;
    ts.tv_sec += ts.tv_nsec / 1000000000L;
    ts.tv_nsec %= 1000000000L;
    return ts;
}

/* Howard Hinnant's days_from_civil (http://howardhinnant.github.io/date_algorithms.html): shift the
 * year to start on March 1 so the leap day is the last day of the shifted year, then count whole
 * 400-year eras (146097 days each) plus the day of the era. */
int64_t tc_time_days_from_civil(int y, unsigned m, unsigned d)
{
    int64_t yy = (int64_t)y - (m <= 2);
    int64_t era = (yy >= 0 ? yy : yy - 399) / 400;
    uint64_t yoe = (uint64_t)(yy - era * 400);                      /* [0, 399] */
    uint64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1; /* [0, 365] */
    uint64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;           /* [0, 146096] */

    return era * 146097 + (int64_t)doe - 719468;
}

/* Hinnant's civil_from_days, the exact inverse of the above. */
void tc_time_civil_from_days(int64_t days, int *y, unsigned *m, unsigned *d)
{
    int64_t z = days + 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    uint64_t doe = (uint64_t)(z - era * 146097);                          /* [0, 146096] */
    uint64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365; /* [0, 399] */
    int64_t yy = (int64_t)yoe + era * 400;
    uint64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100); /* [0, 365] */
    uint64_t mp = (5 * doy + 2) / 153;                      /* [0, 11] */

    *d = (unsigned)(doy - (153 * mp + 2) / 5 + 1);
    *m = (unsigned)(mp < 10 ? mp + 3 : mp - 9);
    *y = (int)(yy + (*m <= 2));
}

static int tc_time_is_leap(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static unsigned tc_time_days_in_month(int y, unsigned m)
{
    static const unsigned char dim[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

    return m == 2 && tc_time_is_leap(y) ? 29 : dim[m - 1];
}

/* Read exactly n decimal digits at s into *v; 0 on success, -1 if any is not a digit. */
static int tc_time_digits(const char *s, unsigned n, unsigned *v)
{
    unsigned acc = 0;

    for (unsigned i = 0; i < n; i++) {
        unsigned c = (unsigned)(unsigned char)s[i] - '0';

        if (c > 9)
            return -1;
        acc = acc * 10 + c;
    }
    *v = acc;
    return 0;
}

tc_err tc_time_parse_rfc3339(const char *s, size_t len, int64_t *out_us)
{
    unsigned year, mon, day, hour, min, sec, oh = 0, om = 0, frac = 0;
    int64_t secs, off = 0;
    size_t i = TC_TIME_FIXED_LEN;

    /* The shortest valid form, "YYYY-MM-DDTHH:MM:SSZ", is the fixed prefix plus one byte. */
    if (len < TC_TIME_FIXED_LEN + 1)
        return TC_ERR_INVALID;
    if (tc_time_digits(s, 4, &year) || s[4] != '-' || tc_time_digits(s + 5, 2, &mon) ||
        s[7] != '-' || tc_time_digits(s + 8, 2, &day))
        return TC_ERR_INVALID;
    if (s[10] != 'T' && s[10] != 't' && s[10] != ' ')
        return TC_ERR_INVALID;
    if (tc_time_digits(s + 11, 2, &hour) || s[13] != ':' || tc_time_digits(s + 14, 2, &min) ||
        s[16] != ':' || tc_time_digits(s + 17, 2, &sec))
        return TC_ERR_INVALID;
    if (mon < 1 || mon > 12 || day < 1 || day > tc_time_days_in_month((int)year, mon))
        return TC_ERR_INVALID;
    if (hour > 23 || min > 59 || sec > 60)
        return TC_ERR_INVALID;

    if (s[i] == '.') {
        size_t start = ++i;
        unsigned nd;

        while (i < len && (unsigned)(unsigned char)s[i] - '0' <= 9) {
            if (i - start < TC_TIME_FRAC_DIGITS_KEPT)
                frac = frac * 10 + (unsigned)(s[i] - '0');
            i++;
        }
        nd = (unsigned)(i - start);
        if (nd == 0 || nd > TC_TIME_FRAC_DIGITS_MAX)
            return TC_ERR_INVALID;
        /* Scale a short fraction up to microseconds: ".5" is 500000 us. */
        for (; nd < TC_TIME_FRAC_DIGITS_KEPT; nd++)
            frac *= 10;
    }
    if (i >= len)
        return TC_ERR_INVALID;
    if (s[i] == 'Z' || s[i] == 'z') {
        if (i + 1 != len)
            return TC_ERR_INVALID;
    } else if (s[i] == '+' || s[i] == '-') {
        /* time-numoffset is exactly "+HH:MM". */
        if (len - i != 6 || tc_time_digits(s + i + 1, 2, &oh) || s[i + 3] != ':' ||
            tc_time_digits(s + i + 4, 2, &om))
            return TC_ERR_INVALID;
        if (oh > TC_TIME_OFFSET_HOUR_MAX || om > 59)
            return TC_ERR_INVALID;
        off = (int64_t)oh * 3600 + om * 60;
        /* Local time = UTC + offset, so UTC = local - offset. */
        if (s[i] == '+')
            off = -off;
    } else {
        return TC_ERR_INVALID;
    }

    secs = tc_time_days_from_civil((int)year, mon, day) * 86400 + (int64_t)hour * 3600 + min * 60 +
           sec + off;
    *out_us = secs * TC_USEC_PER_SEC + frac;
    return TC_OK;
}

/* Write v as exactly n digits, most significant first (v < 10^n). */
static void tc_time_put_digits(char *p, unsigned n, uint64_t v)
{
    while (n-- > 0) {
        p[n] = (char)('0' + v % 10);
        v /= 10;
    }
}

size_t tc_time_format_rfc3339(int64_t us, char *buf, size_t cap)
{
    /* Floor division without multiplying back: days * TC_USEC_PER_DAY can overflow for INT64_MIN.
     */
    int64_t days = us / TC_USEC_PER_DAY, rem = us % TC_USEC_PER_DAY;
    char tmp[TC_TIME_RFC3339_MAX];
    unsigned m, d, ydigits = 4;
    uint64_t yabs, sod;
    size_t n = 0;
    int y;

    if (rem < 0) {
        rem += TC_USEC_PER_DAY;
        days--;
    }
    tc_time_civil_from_days(days, &y, &m, &d);
    yabs = y < 0 ? (uint64_t)(-(int64_t)y) : (uint64_t)y;
    if (y < 0)
        tmp[n++] = '-';
    else if (y > 9999)
        tmp[n++] = '+';
    for (uint64_t t = yabs; t >= 10000; t /= 10)
        ydigits++;
    tc_time_put_digits(tmp + n, ydigits, yabs);
    n += ydigits;
    tmp[n++] = '-';
    tc_time_put_digits(tmp + n, 2, m);
    n += 2;
    tmp[n++] = '-';
    tc_time_put_digits(tmp + n, 2, d);
    n += 2;
    tmp[n++] = 'T';
    sod = (uint64_t)rem / TC_USEC_PER_SEC;
    tc_time_put_digits(tmp + n, 2, sod / 3600);
    n += 2;
    tmp[n++] = ':';
    tc_time_put_digits(tmp + n, 2, sod / 60 % 60);
    n += 2;
    tmp[n++] = ':';
    tc_time_put_digits(tmp + n, 2, sod % 60);
    n += 2;
    tmp[n++] = '.';
    tc_time_put_digits(tmp + n, 6, (uint64_t)rem % TC_USEC_PER_SEC);
    n += 6;
    tmp[n++] = 'Z';

    if (n + 1 > cap) {
        if (cap > 0)
            buf[0] = '\0';
        return 0;
    }
    for (size_t k = 0; k < n; k++)
        buf[k] = tmp[k];
    buf[n] = '\0';
    return n;
}

int64_t tc_time_day_of(int64_t us)
{
    return us >= 0 ? us / TC_USEC_PER_DAY : -((-us + TC_USEC_PER_DAY - 1) / TC_USEC_PER_DAY);
}

void tc_time_sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

    nanosleep(&ts, NULL);
}
