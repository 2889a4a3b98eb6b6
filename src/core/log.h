/*
 * log.h -- structured logging.
 *
 * One line per event on stderr: JSON lines when stderr is not a terminal (for log shippers), a
 * short human format when it is. Fields are passed as a printf-style message plus optional
 * key/value pairs already formatted by the caller (tc_log_kv), so the hot path never formats a log
 * line it won't emit.
 *
 * A line about one input -- a message of a topic, a device's reading -- is logged with
 * tc_log_in and carries what locates it as fields of their own (JSON: "topic", "partition",
 * "offset", "device_id" after "msg"; human: in parentheses after the message), so that a log
 * pipeline can filter and join on them instead of parsing sentences. The names are stable
 * (docs/observability.md).
 */
#ifndef TC_CORE_LOG_H
#define TC_CORE_LOG_H

#include <stddef.h>
#include <stdint.h>

typedef enum tc_log_level { TC_LOG_DEBUG, TC_LOG_INFO, TC_LOG_WARN, TC_LOG_ERROR } tc_log_level;
typedef enum tc_log_format { TC_LOG_AUTO, TC_LOG_JSON, TC_LOG_HUMAN } tc_log_format;

void tc_log_setup(tc_log_level level, tc_log_format format);
int tc_log_parse_level(const char *s, tc_log_level *out);
int tc_log_parse_format(const char *s, tc_log_format *out);
int tc_log_enabled(tc_log_level level);
/* Make msg one line in place: each run of line breaks and tabs (with the spaces around it) becomes
 * one space, a trailing one goes. tc_log does it to every message. */
void tc_log_flatten(char *msg);

/* Log a message from component comp ("pipeline", "store", ...). */
void tc_log(tc_log_level level, const char *comp, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A device id longer than this is cut in a log line (ids are capped far below it anyway). */
#define TC_LOG_DEVICE_MAX 256

/* What locates an input. Borrowed for the call only; a field unknown is NULL or negative. */
typedef struct tc_log_input {
    const char *topic;     /* NUL-terminated */
    int32_t partition;     /* < 0: unknown */
    int64_t offset;        /* < 0: unknown */
    const char *device_id; /* device_len bytes, not NUL-terminated (a Kafka key, a batch's id) */
    size_t device_len;
} tc_log_input;

/* No field known: start from this and set what is. */
#define TC_LOG_INPUT_NONE ((tc_log_input){NULL, -1, -1, NULL, 0})

/* Log a message about the input in (NULL: none) from component comp. */
void tc_log_in(tc_log_level level, const char *comp, const tc_log_input *in, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/*
 * A cap on the lines one call site logs per second, for lines whose number the input decides (a
 * dead letter each): past per_s in a second, lines are counted instead, and the next line allowed
 * gets their count in *skipped. One limiter per call site, used from one thread; zero-initialise.
 */
typedef struct tc_log_limit {
    int64_t second; /* the monotonic second counted */
    unsigned n;     /* lines allowed in it */
    uint64_t skipped;
} tc_log_limit;

/* 1 when the call site may log a line now; *skipped is set to the lines held back before it. */
int tc_log_limit_take(tc_log_limit *l, unsigned per_s, uint64_t *skipped);

#define tc_log_debug(comp, ...)                                                                    \
    do {                                                                                           \
        if (tc_log_enabled(TC_LOG_DEBUG))                                                          \
            tc_log(TC_LOG_DEBUG, comp, __VA_ARGS__);                                               \
    } while (0)
#define tc_log_info(comp, ...)  tc_log(TC_LOG_INFO, comp, __VA_ARGS__)
#define tc_log_warn(comp, ...)  tc_log(TC_LOG_WARN, comp, __VA_ARGS__)
#define tc_log_error(comp, ...) tc_log(TC_LOG_ERROR, comp, __VA_ARGS__)

#endif
