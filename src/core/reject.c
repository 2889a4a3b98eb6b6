/*
 * reject.c -- names of the rejection codes; see reject.h.
 */
#include "core/reject.h"

static const char *const tc_reject_names[TC_REJECT__COUNT] = {
    [TC_REJECT_NONE] = "none",
    [TC_REJECT_EMPTY] = "empty_message",
    [TC_REJECT_TOO_LARGE] = "too_large",
    [TC_REJECT_MALFORMED] = "malformed_json",
    [TC_REJECT_NOT_OBJECT] = "not_an_object",
    [TC_REJECT_TOO_DEEP] = "too_deep",
    [TC_REJECT_INVALID_UTF8] = "invalid_utf8",
    [TC_REJECT_DUPLICATE_FIELD] = "duplicate_field",
    [TC_REJECT_MISSING_FIELD] = "missing_field",
    [TC_REJECT_WRONG_TYPE] = "wrong_type",
    [TC_REJECT_INVALID_DEVICE_ID] = "invalid_device_id",
    [TC_REJECT_INVALID_TIMESTAMP] = "invalid_timestamp",
    [TC_REJECT_NUMBER_RANGE] = "number_out_of_range",
    [TC_REJECT_OUT_OF_RANGE] = "out_of_range",
    [TC_REJECT_TIMESTAMP_FUTURE] = "timestamp_in_future",
    [TC_REJECT_TIMESTAMP_TOO_OLD] = "timestamp_too_old",
    [TC_REJECT_STORE_REFUSED] = "store_refused",
    [TC_REJECT_UNKNOWN_SCHEMA] = "unknown_schema",
    [TC_REJECT_SCHEMA_MISMATCH] = "schema_mismatch",
    [TC_REJECT_DUPLICATE] = "duplicate",
};

const char *tc_reject_name(tc_reject r)
{
    if ((unsigned)r >= TC_REJECT__COUNT)
        return "unknown";
    return tc_reject_names[r];
}
