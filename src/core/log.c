/*
 * log.c -- structured logging; see log.h.
 *
 * The line is assembled in a fixed buffer and written with one fwrite so that lines from
 * librdkafka's threads (which log through us) never interleave mid-line.
 */
#include "core/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* A log line longer than this is cut: logs describe, they do not carry payloads. */
#define TC_LOG_LINE_MAX 2048

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

/* Append s to buf as the body of a JSON string (escaping quotes, backslashes and controls). */
static size_t tc_log_json_escape(char *buf, size_t pos, size_t cap, const char *s)
{
    for (; *s && pos + 7 < cap; s++) {
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

void tc_log(tc_log_level level, const char *comp, const char *fmt, ...)
{
    char msg[TC_LOG_LINE_MAX], line[TC_LOG_LINE_MAX + 128], ts[80];
    struct timespec now;
    struct tm tm;
    size_t pos;
    va_list ap;

    if (level < tc_log_min)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    tc_log_flatten(msg);

    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    snprintf(ts, sizeof(ts), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, now.tv_nsec / 1000000);

    if (tc_log_json) {
        pos = (size_t)snprintf(line, sizeof(line), "{\"ts\":\"%s\",\"level\":\"%s\",\"comp\":\"",
                               ts, tc_log_names[level]);
        pos = tc_log_json_escape(line, pos, sizeof(line) - 4, comp);
        pos += (size_t)snprintf(line + pos, sizeof(line) - pos, "\",\"msg\":\"");
        pos = tc_log_json_escape(line, pos, sizeof(line) - 4, msg);
        pos += (size_t)snprintf(line + pos, sizeof(line) - pos, "\"}\n");
    } else {
        pos = (size_t)snprintf(line, sizeof(line), "%s %-5s [%s] %s\n", ts + 11,
                               tc_log_names[level], comp, msg);
    }
    if (pos >= sizeof(line))
        pos = sizeof(line) - 1;
    fwrite(line, 1, pos, stderr);
}
