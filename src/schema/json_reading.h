/*
 * json_reading.h -- streaming, allocation-free decoder of one JSON telemetry reading.
 *
 * A reading is one JSON object (schema version 1):
 *
 *   {"device_id":"sensor-0042","timestamp":"2026-11-28T12:00:00.123Z","temperature":21.5,
 *    "humidity":40.2,"pressure":1013.2,"battery":87,"latitude":52.52,"longitude":13.405,
 *    "tags":{"site":"berlin-1"}}
 *
 * The decoder makes one pass over the bytes and writes straight into the columns of row b->n of a
 * tc_batch: there is no DOM, no malloc, and nothing is read past len (the message is not
 * NUL-terminated; it is the Kafka payload as delivered). Strings that outlive the message (device
 * id, tags, unknown fields) are copied into the batch arena in one allocation, and only once the
 * whole reading has been accepted, so rejected readings cost no arena space.
 *
 * What is accepted is strict RFC 8259 JSON that PostgreSQL's jsonb input also accepts, because the
 * tags and extra texts are shipped to a jsonb column by binary COPY, where one bad row fails the
 * whole batch:
 *   - valid UTF-8 everywhere (no overlongs, no UTF-8-encoded surrogates, nothing above U+10FFFF);
 *   - \u escapes form proper surrogate pairs and \u0000 is refused (text/jsonb cannot hold NUL);
 *   - numbers inside tags and unknown fields must fit PostgreSQL numeric on every supported
 *     version: written exponent within +-1000 (versions before 15 refuse more), at most 131072
 *     digits before and 16383 after the decimal point (the storage format's limits);
 *   - nesting at most TC_JSON_DEPTH_MAX containers deep, the top-level object counting as one;
 *   - a byte order mark is refused (MALFORMED): RFC 8259 forbids sending one, and accepting it here
 *     would only hide a misconfigured producer.
 *
 * Fields:
 *   device_id    required string, 1..TC_DEVICE_ID_MAX bytes after unescaping, no control characters
 *   timestamp    required: RFC 3339 string (tc_time_parse_rfc3339) or a number of epoch
 *                milliseconds, fraction allowed, converted exactly and rounded toward negative
 *                infinity to microseconds; years 1..9999 only
 *   temperature, humidity, pressure, battery, latitude, longitude
 *                number (stored as double; one that overflows a double is NUMBER_RANGE) or null
 *   tags         object (its exact text is kept) or null
 *   anything else is kept, byte for byte, as members of the b->extra JSON object text.
 *
 * Which error wins: syntax errors (MALFORMED, INVALID_UTF8, TOO_DEEP) stop the decoder at once;
 * schema errors (WRONG_TYPE, DUPLICATE_FIELD, INVALID_*, NUMBER_RANGE) are remembered, the first
 * one in message order wins, and parsing continues, so a message that is not even JSON (e.g. a
 * truncated one) is always reported as MALFORMED, never as a field problem. MISSING_FIELD is
 * checked last.
 *
 * Numbers become doubles exactly as strtod would round them: up to 19 significant digits and a
 * small exponent are converted exactly with Clinger's fast path; the rest goes through strtod on a
 * bounded copy. strtod reads the decimal point from the locale; Thermocline never calls setlocale,
 * so the "C" locale (and its '.') is in effect. A program embedding this decoder must keep
 * LC_NUMERIC at "C".
 */
#ifndef TC_SCHEMA_JSON_READING_H
#define TC_SCHEMA_JSON_READING_H

#include <stddef.h>

#include "core/batch.h"
#include "core/reject.h"

/*
 * Returned (instead of a rejection) when the reading is valid but the batch arena cannot hold its
 * strings, or when the batch has no free row: "batch full, flush and retry this message". The
 * caller flushes the batch (tc_batch_reset after the sink has it), calls tc_batch_row_begin again
 * and decodes the same message again. It is not a tc_reject value, so no reading is ever
 * dead-lettered with it. When even an empty arena cannot hold the reading, retrying could never
 * succeed, so the decoder returns TC_REJECT_TOO_LARGE instead.
 */
#define TC_JSON_BATCH_FULL TC_REJECT__COUNT

/* Maximum nesting, the top-level object included (so tags may nest 31 levels). Telemetry tags are
 * flat in practice; 32 leaves room for real documents while bounding the validator's state to one
 * 64-bit word. */
#define TC_JSON_DEPTH_MAX 32

/* Unknown top-level fields kept per reading. Duplicate detection compares each new unknown key
 * with the ones seen before, so this cap bounds that quadratic work (64*63/2 comparisons). */
#define TC_JSON_EXTRA_FIELDS_MAX 64

/* Numbers up to this many characters are handed to strtod as they are, copied into a stack buffer.
 * Longer ones (legal, but never produced by a sensor) are first reduced to their first 768
 * significant digits plus one sticky digit, which provably rounds the same: no decimal midpoint
 * between two doubles has more than 767 significant digits. */
#define TC_JSON_NUMBER_MAX 64

/* Messages above this size are refused as TOO_LARGE: strings are addressed with 32-bit lengths
 * (tc_slice.len), and the extra text can be slightly longer than the message. Real size caps are
 * configured far below. */
#define TC_JSON_INPUT_MAX ((size_t)1 << 31)

/*
 * Decode the JSON object buf[0..len) into row b->n of b, which the caller has cleared with
 * tc_batch_row_begin(). The row is not committed. Returns TC_REJECT_NONE on success, a rejection
 * code with a human-readable detail (printable ASCII, cut to detail_size) otherwise, or
 * TC_JSON_BATCH_FULL (see above). On anything but success the row's contents are unspecified and it
 * must not be committed. detail may be NULL.
 */
tc_reject tc_json_reading_decode(tc_batch *b, const char *buf, size_t len, char *detail,
                                 size_t detail_size);

#endif
