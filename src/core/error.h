/*
 * error.h -- the one error enum of Thermocline.
 *
 * Every fallible function returns a tc_err and, where it has something to say, fills a
 * caller-provided error string buffer of TC_ERRSTR_MAX bytes (librdkafka's convention: errstr +
 * size). An error is either retriable (the same call may succeed later: a dead database, an
 * unreachable broker, a full disk) or fatal (retrying cannot help: bad configuration, a bug);
 * tc_err_is_retriable() tells which, so the pipeline decides between back-off-and-retry and stop
 * without string matching.
 */
#ifndef TC_CORE_ERROR_H
#define TC_CORE_ERROR_H

#include <stdarg.h>
#include <stddef.h>

/* Large enough for a PostgreSQL error message with its context line and a librdkafka error. */
#define TC_ERRSTR_MAX 512

typedef enum tc_err {
    TC_OK = 0,
    TC_ERR_NOMEM,       /* allocation failed (fatal) */
    TC_ERR_INVALID,     /* invalid argument or input (fatal for the call) */
    TC_ERR_CONFIG,      /* bad configuration (fatal) */
    TC_ERR_IO,          /* local I/O failure (retriable: disk full, read-only fs) */
    TC_ERR_DB,          /* database refused the statement (fatal for that statement) */
    TC_ERR_DB_CONN,     /* database unreachable or connection lost (retriable) */
    TC_ERR_KAFKA,       /* Kafka error (fatal) */
    TC_ERR_KAFKA_TRANS, /* transient Kafka error (retriable) */
    TC_ERR_TIMEOUT,     /* an operation did not finish in time (retriable) */
    TC_ERR_FULL,        /* a bounded buffer is full: flush first (retriable) */
    TC_ERR_NOT_FOUND,   /* the thing asked for does not exist */
    TC_ERR_STOPPED,     /* shutdown requested */
    TC_ERR_FENCED,      /* a durable write found its partition moved on by another owner: not
                         * retried, the writer gives the partition's batch up and resumes from
                         * what is stored (fencing, docs/design.md) */
    TC_ERR__COUNT
} tc_err;

/* Short stable name of an error code, e.g. "db_conn". */
const char *tc_err_name(tc_err err);

/* Nonzero when the operation that failed with err may succeed if retried later. */
int tc_err_is_retriable(tc_err err);

/* Format into errstr (size errstr_size, always NUL-terminated when errstr_size > 0); returns err.
 */
tc_err tc_err_set(tc_err err, char *errstr, size_t errstr_size, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
