/*
 * log.c -- structured logging; see log.h.
 *
 * The line is assembled in a fixed buffer and written with one fwrite so that lines from
 * librdkafka's threads (which log through us) never interleave mid-line.
 */
#include "core/log.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* A log line longer than this is cut: logs describe, they do not carry payloads. */
#define TC_LOG_LINE_MAX 2048
/* Room kept after the message for an input's fields: a topic name (249 characters) and a device
 * id (TC_LOG_DEVICE_MAX), escaped. A long message is cut before them, so a JSON line stays whole.
 */
#define TC_LOG_FIELDS_MAX 2048

static tc_log_level tc_log_min = TC_LOG_INFO;
static int tc_log_json = 0;

static const char *const tc_log_names[] = {"debug", "info", "warn", "error"};

void tc_log_setup(tc_log_level level, tc_log_format format)
{
    tc_log_min = level;
    if (format == TC_LOG_AUTO)
        tc_log_json = !isatty(STDERR_FILENO);
    else
        tc_log_json = format == TC_LOG_JSON;
}

int tc_log_parse_level(const char *s, tc_log_level *out)
{
    for (int i = 0; i <= TC_LOG_ERROR; i++) {
        if (strcmp(s, tc_log_names[i]) == 0) {
            *out = (tc_log_level)i;
            return 0;
        }
    }
    return -1;
}

int tc_log_parse_format(const char *s, tc_log_format *out)
{
    if (strcmp(s, "auto") == 0)
        *out = TC_LOG_AUTO;
    else if (strcmp(s, "json") == 0)
        *out = TC_LOG_JSON;
    else if (strcmp(s, "human") == 0)
        *out = TC_LOG_HUMAN;
    else
        return -1;
    return 0;
}

int tc_log_enabled(tc_log_level level)
{
    return level >= tc_log_min;
}

/* Append s[0..len) to buf as the body of a JSON string (escaping quotes, backslashes and
 * controls); a NUL ends it early. */
static size_t tc_log_json_escape_n(char *buf, size_t pos, size_t cap, const char *s, size_t len)
{
    for (const char *end = s + len; s < end && *s && pos + 7 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            buf[pos++] = '\\';
            buf[pos++] = (char)c;
        } else if (c < 0x20) {
            pos += (size_t)snprintf(buf + pos, cap - pos, "\\u%04x", c);
        } else {
            buf[pos++] = (char)c;
        }
    }
    return pos;
}

static size_t tc_log_json_escape(char *buf, size_t pos, size_t cap, const char *s)
{
    return tc_log_json_escape_n(buf, pos, cap, s, strlen(s));
}

/* printf at buf[*pos] within cap, *pos left at the end of what fits (at most cap - 1). */
__attribute__((format(printf, 4, 5))) static void tc_log_put(char *buf, size_t *pos, size_t cap,
                                                             const char *fmt, ...)
{
    va_list ap;
    int n;

    if (*pos + 1 >= cap)
        return;
    va_start(ap, fmt);
    n = vsnprintf(buf + *pos, cap - *pos, fmt, ap);
    va_end(ap);
    if (n > 0)
        *pos = *pos + (size_t)n < cap ? *pos + (size_t)n : cap - 1;
}

/* The input's fields: JSON members after "msg", or " (topic "t" partition 3 ...)" for people. */
static void tc_log_fields(char *buf, size_t *pos, size_t cap, const tc_log_input *in, int json)
{
    size_t dev = in->device_len < TC_LOG_DEVICE_MAX ? in->device_len : TC_LOG_DEVICE_MAX;
    int any = 0;

#define TC_LOG_SEP (json ? "," : any ? " " : " (")
    if (in->topic) {
        tc_log_put(buf, pos, cap, json ? "%s\"topic\":\"" : "%stopic \"", TC_LOG_SEP);
        *pos = tc_log_json_escape(buf, *pos, cap, in->topic);
        tc_log_put(buf, pos, cap, "\"");
        any = 1;
    }
    if (in->partition >= 0) {
        tc_log_put(buf, pos, cap, json ? "%s\"partition\":%d" : "%spartition %d", TC_LOG_SEP,
                   (int)in->partition);
        any = 1;
    }
    if (in->offset >= 0) {
        tc_log_put(buf, pos, cap, json ? "%s\"offset\":%" PRId64 : "%soffset %" PRId64, TC_LOG_SEP,
                   in->offset);
        any = 1;
    }
    if (in->device_id) {
        tc_log_put(buf, pos, cap, json ? "%s\"device_id\":\"" : "%sdevice \"", TC_LOG_SEP);
        *pos = tc_log_json_escape_n(buf, *pos, cap, in->device_id, dev);
        tc_log_put(buf, pos, cap, "\"");
        any = 1;
    }
#undef TC_LOG_SEP
    if (!json && any)
        tc_log_put(buf, pos, cap, ")");
}

/* One log record is one line: a multi-line message (PostgreSQL's "ERROR: ...\nDETAIL: ...\n\t...")
 * has each run of line breaks and tabs, with the spaces around it, made one space, so that it
 * reads as a sentence in both formats instead of "\u000a\u0009" noise in JSON. */
void tc_log_flatten(char *msg)
{
    char *w = msg;

    for (const char *r = msg; *r;) {
        const char *run = r;
        int breaks = 0;
        while (*r == ' ' || *r == '\n' || *r == '\r' || *r == '\t')
            breaks |= *r++ != ' ';
        if (r == run) {
            *w++ = *r++;
        } else if (!breaks) {
            while (run < r)
                *w++ = *run++;
        } else if (*r && w != msg) {
            *w++ = ' ';
        }
    }
    *w = '\0';
}

__attribute__((format(printf, 4, 0))) static void
tc_log_v(tc_log_level level, const char *comp, const tc_log_input *in, const char *fmt, va_list ap)
{
    char msg[TC_LOG_LINE_MAX], line[TC_LOG_LINE_MAX + 128 + TC_LOG_FIELDS_MAX], ts[80];
    /* Room kept at the end for the record's closing ("}\n"), however long the message, and
     * before it for the fields. */
    const size_t body = sizeof(line) - 4, text = body - TC_LOG_FIELDS_MAX;
    struct timespec now;
    struct tm tm;
    size_t pos = 0;

    vsnprintf(msg, sizeof(msg), fmt, ap);
    tc_log_flatten(msg);

    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    snprintf(ts, sizeof(ts), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, now.tv_nsec / 1000000);

    if (tc_log_json) {
        tc_log_put(line, &pos, body, "{\"ts\":\"%s\",\"level\":\"%s\",\"comp\":\"", ts,
                   tc_log_names[level]);
        pos = tc_log_json_escape(line, pos, text, comp);
        tc_log_put(line, &pos, text, "\",\"msg\":\"");
        pos = tc_log_json_escape(line, pos, text, msg);
        tc_log_put(line, &pos, body, "\"");
        if (in)
            tc_log_fields(line, &pos, body, in, 1);
        tc_log_put(line, &pos, sizeof(line), "}\n");
    } else {
        tc_log_put(line, &pos, text, "%s %-5s [%s] %s", ts + 11, tc_log_names[level], comp, msg);
        if (in)
            tc_log_fields(line, &pos, body, in, 0);
        tc_log_put(line, &pos, sizeof(line), "\n");
    }
    fwrite(line, 1, pos, stderr);
}

void tc_log(tc_log_level level, const char *comp, const char *fmt, ...)
{
    va_list ap;

    if (level < tc_log_min)
        return;
    va_start(ap, fmt);
    tc_log_v(level, comp, NULL, fmt, ap);
    va_end(ap);
}

void tc_log_in(tc_log_level level, const char *comp, const tc_log_input *in, const char *fmt, ...)
{
    va_list ap;

    if (level < tc_log_min)
        return;
    va_start(ap, fmt);
    tc_log_v(level, comp, in, fmt, ap);
    va_end(ap);
}

int tc_log_limit_take(tc_log_limit *l, unsigned per_s, uint64_t *skipped)
{
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    if ((int64_t)now.tv_sec != l->second) {
        l->second = (int64_t)now.tv_sec;
        l->n = 0;
    }
    if (l->n >= per_s) {
        l->skipped++;
        return 0;
    }
    l->n++;
    *skipped = l->skipped;
    l->skipped = 0;
    return 1;
}
