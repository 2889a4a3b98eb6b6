/*
 * error.c -- names and classes of tc_err codes.
 */
#include "core/error.h"

#include <stdio.h>

static const char *const tc_err_names[TC_ERR__COUNT] = {
    [TC_OK] = "ok",
    [TC_ERR_NOMEM] = "nomem",
    [TC_ERR_INVALID] = "invalid",
    [TC_ERR_CONFIG] = "config",
    [TC_ERR_IO] = "io",
    [TC_ERR_DB] = "db",
    [TC_ERR_DB_CONN] = "db_conn",
    [TC_ERR_KAFKA] = "kafka",
    [TC_ERR_KAFKA_TRANS] = "kafka_transient",
    [TC_ERR_TIMEOUT] = "timeout",
    [TC_ERR_FULL] = "full",
    [TC_ERR_NOT_FOUND] = "not_found",
    [TC_ERR_STOPPED] = "stopped",
    [TC_ERR_FENCED] = "fenced",
};

const char *tc_err_name(tc_err err)
{
    if ((unsigned)err >= TC_ERR__COUNT)
        return "unknown";
    return tc_err_names[err];
}

int tc_err_is_retriable(tc_err err)
{
    switch (err) {
    case TC_ERR_IO:
    case TC_ERR_DB_CONN:
    case TC_ERR_KAFKA_TRANS:
    case TC_ERR_TIMEOUT:
    case TC_ERR_FULL:
        return 1;
    default:
        return 0;
    }
}

tc_err tc_err_set(tc_err err, char *errstr, size_t errstr_size, const char *fmt, ...)
{
    va_list ap;

    if (errstr && errstr_size > 0) {
        va_start(ap, fmt);
        vsnprintf(errstr, errstr_size, fmt, ap);
        va_end(ap);
    }
    return err;
}
