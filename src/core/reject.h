/*
 * reject.h -- why a reading was refused.
 *
 * Every reading that is not stored becomes a dead letter carrying one of these codes (a stable,
 * short, greppable name that operators filter on) and a detail message that locates the problem
 * ("temperature 150 is outside [-50, 100]"). Codes are only ever appended: their names are data.
 */
#ifndef TC_CORE_REJECT_H
#define TC_CORE_REJECT_H

#include <stddef.h>

/* Detail messages are cut at this size; they describe, they do not quote whole payloads. */
#define TC_REJECT_DETAIL_MAX 256

typedef enum tc_reject {
    TC_REJECT_NONE = 0,
    TC_REJECT_EMPTY,             /* zero-length message */
    TC_REJECT_TOO_LARGE,         /* message above the configured size cap */
    TC_REJECT_MALFORMED,         /* not JSON (syntax error, truncated, trailing bytes, NaN) */
    TC_REJECT_NOT_OBJECT,        /* valid JSON but not an object at top level */
    TC_REJECT_TOO_DEEP,          /* nesting beyond the decoder's depth limit */
    TC_REJECT_INVALID_UTF8,      /* invalid UTF-8, lone surrogate or \u0000 in a string */
    TC_REJECT_DUPLICATE_FIELD,   /* the same top-level field twice */
    TC_REJECT_MISSING_FIELD,     /* device_id or timestamp absent (or null) */
    TC_REJECT_WRONG_TYPE,        /* a field of the wrong JSON type */
    TC_REJECT_INVALID_DEVICE_ID, /* empty, too long or with control characters */
    TC_REJECT_INVALID_TIMESTAMP, /* not RFC 3339 nor epoch milliseconds, or impossible date */
    TC_REJECT_NUMBER_RANGE,      /* a number that does not fit a double */
    TC_REJECT_OUT_OF_RANGE,      /* a metric outside its configured limits */
    TC_REJECT_TIMESTAMP_FUTURE,  /* event time too far in the future */
    TC_REJECT_TIMESTAMP_TOO_OLD, /* event time older than the maximum age */
    TC_REJECT_STORE_REFUSED,     /* the database refused the row (permanent error) */
    TC_REJECT_UNKNOWN_SCHEMA,    /* Avro: the schema id is not in the registry (or none is set) */
    TC_REJECT_SCHEMA_MISMATCH,   /* Avro: the writer schema cannot feed a reading */
    TC_REJECT_DUPLICATE,         /* a device's resend of a reading already taken (dedupe window) */
    TC_REJECT__COUNT
} tc_reject;

/* Stable name, e.g. "out_of_range". */
const char *tc_reject_name(tc_reject r);

#endif
