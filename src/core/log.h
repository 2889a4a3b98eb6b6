/*
 * log.h -- structured logging.
 *
 * One line per event on stderr: JSON lines when stderr is not a terminal (for log shippers), a
 * short human format when it is. Fields are passed as a printf-style message plus optional
 * key/value pairs already formatted by the caller (tc_log_kv), so the hot path never formats a log
 * line it won't emit.
 */
#ifndef TC_CORE_LOG_H
#define TC_CORE_LOG_H

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

#define tc_log_debug(comp, ...)                                                                    \
    do {                                                                                           \
        if (tc_log_enabled(TC_LOG_DEBUG))                                                          \
            tc_log(TC_LOG_DEBUG, comp, __VA_ARGS__);                                               \
    } while (0)
#define tc_log_info(comp, ...)  tc_log(TC_LOG_INFO, comp, __VA_ARGS__)
#define tc_log_warn(comp, ...)  tc_log(TC_LOG_WARN, comp, __VA_ARGS__)
#define tc_log_error(comp, ...) tc_log(TC_LOG_ERROR, comp, __VA_ARGS__)

#endif
