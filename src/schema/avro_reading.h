/*
 * avro_reading.h -- decoder of one Confluent-framed Avro telemetry reading, the Avro sibling of
 * json_reading.h, and the cache of compiled writer schemas fetched from a schema registry.
 *
 * A message is the Confluent wire format: byte 0 (magic), a big-endian int32 schema id, then the
 * Avro binary encoding of one record written with that schema (the "writer schema"). The writer
 * schema is compiled once (tc_avro_plan_new) against the fixed reader shape of the batch
 * (telemetry schema v1) into a plan: one step per writer field, saying which column it feeds and
 * how its bytes are read. Decoding then walks the plan and the bytes together, with no malloc and
 * no generic value tree.
 *
 * Writer fields, by name:
 *   device_id    string (or bytes), optionally in a union with null (null -> MISSING_FIELD);
 *                1..TC_DEVICE_ID_MAX bytes, no control characters (else INVALID_DEVICE_ID)
 *   timestamp    long with logicalType timestamp-millis (also without a logical type),
 *                timestamp-micros or timestamp-nanos (local-timestamp-* alike, taken as UTC), or an
 *                RFC 3339 string; optionally in a union with null. Years 1..9999 (else
 *                INVALID_TIMESTAMP). Nanoseconds are floored to microseconds.
 *   temperature, humidity, pressure, battery, latitude, longitude
 *                int, long, float or double, or a union of those and null (Avro promotion to
 *                double). NaN and infinities are stored: validation refuses them. A metric the
 *                writer does not have is NULL.
 *   tags         map (values rendered as JSON, normally strings), optionally in a union with null,
 *                stored as JSON object text in b->tags
 *   anything else is kept as a member of the b->extra JSON object text, in writer order, rendered
 * as JSON: records as objects, arrays, maps as objects, unions as their value, enums as their
 * symbol, bytes and fixed as strings of code points U+0001..U+00FF per byte (Avro's JSON encoding)
 * except that a 0x00 byte becomes U+2400 (jsonb cannot hold U+0000; no other byte maps there, so it
 * stays lossless), non-finite doubles and floats as the strings "NaN", "Infinity", "-Infinity". The
 * plan is refused (NULL, errstr says why) when the schema is not valid Avro, its root is not a
 * record, device_id or timestamp is absent, a named field has a type that cannot be read as its
 * column (e.g. a string temperature), or a field other than timestamp carries a logical type other
 * than uuid (decimal, date, time-*, timestamp-*, ...): it would be stored as its underlying bytes
 * or number, a silently wrong value, so its messages are dead letters with that reason instead.
 *
 * Rejections while decoding:
 *   MALFORMED      truncated body, varint longer than 10 bytes (or an int beyond 32 bits), negative
 *                  or out-of-bounds lengths and block counts, union index or enum index out of
 *                  range, a boolean byte other than 0/1, bytes left after the record, nesting
 *                  deeper than TC_AVRO_DEPTH_MAX, more than TC_AVRO_ITEMS_MAX zero-width items
 *   INVALID_UTF8   a string that is not valid UTF-8, or that holds U+0000 where it is kept as JSON
 *   MISSING_FIELD, INVALID_DEVICE_ID, INVALID_TIMESTAMP as above
 * Like the JSON decoder, structural errors stop decoding at once while field errors are remembered
 * and reported only if the whole body is well formed, so a truncated message is always MALFORMED.
 * Nothing is read past len. Strings are copied into the batch arena in one allocation only once the
 * reading is accepted.
 */
#ifndef TC_SCHEMA_AVRO_READING_H
#define TC_SCHEMA_AVRO_READING_H

#include <stddef.h>
#include <stdint.h>

#include "core/batch.h"
#include "core/error.h"
#include "core/reject.h"
#include "schema/json_reading.h"    /* TC_JSON_BATCH_FULL */
#include "schema/registry_client.h" /* tc_registry_client_options */

/* Nesting of kept values, the extra object counting as one (same bound as the JSON decoder). */
#define TC_AVRO_DEPTH_MAX 32
/* Items of zero-width types (null, empty records) one message may declare in arrays and maps. */
#define TC_AVRO_ITEMS_MAX 65536
/* Bytes of the Confluent header: magic byte 0 and a big-endian int32 schema id. */
#define TC_AVRO_FRAME_BYTES 5

typedef struct tc_avro_plan tc_avro_plan;

/* Compile writer_schema_json[0..len) against the reading shape. NULL with errstr set (see above).
 */
tc_avro_plan *tc_avro_plan_new(const char *writer_schema_json, size_t len, char *errstr,
                               size_t errstr_size);
void tc_avro_plan_free(tc_avro_plan *plan);

/*
 * Decode the Avro body buf[0..len) (after the 5-byte header) into row b->n of b, cleared by the
 * caller with tc_batch_row_begin(). Same contract as tc_json_reading_decode: TC_REJECT_NONE, a
 * rejection with a printable detail, or TC_JSON_BATCH_FULL; the row is never committed here. A plan
 * is read-only while decoding, so threads may share one.
 */
tc_reject tc_avro_reading_decode(tc_batch *b, const tc_avro_plan *plan, const char *buf, size_t len,
                                 char *detail, size_t detail_size);

/* 1 when buf is Confluent-framed (len >= 5 and buf[0] == 0), with the schema id; 0 otherwise. The
 * body starts at buf + TC_AVRO_FRAME_BYTES. */
int tc_avro_frame(const char *buf, size_t len, int32_t *schema_id);

/* ---- the schema cache ---- */

#define TC_SCHEMA_CACHE_MAX_DEFAULT     4096
#define TC_SCHEMA_CACHE_TIMEOUT_DEFAULT 5000 /* ms, per registry request */

typedef struct tc_schema_cache tc_schema_cache;

/*
 * A cache of plans by schema id over the registry registry names (its URL, TLS files and
 * credentials: registry_client.h), holding at most max_plans ids (0 = TC_SCHEMA_CACHE_MAX_DEFAULT;
 * the least recently used is evicted beyond that), with timeout_ms per registry request (0 =
 * default, whatever registry says). NULL with errstr set when a setting is invalid or memory is
 * short. Not thread-safe: one cache per pipeline thread.
 */
tc_schema_cache *tc_schema_cache_new(const tc_registry_client_options *registry, size_t max_plans,
                                     int timeout_ms, char *errstr, size_t errstr_size);
void tc_schema_cache_destroy(tc_schema_cache *c);

/*
 * The plan of schema id: from the cache, or fetched (GET /schemas/ids/{id}), compiled and cached.
 * Ids are immutable, so an answer is cached forever (until evicted), refusals included:
 *   TC_OK             *plan is set; it stays valid until the next tc_schema_cache_get or destroy
 *   TC_ERR_NOT_FOUND  the registry says 404 / error_code 40403: dead-letter the message
 *   TC_ERR_INVALID    the schema exists but cannot be read as a reading (no device_id, not Avro,
 *                     wrong field types): dead-letter the message (errstr says why)
 *   TC_ERR_IO, TC_ERR_TIMEOUT
 *                     registry unreachable, 5xx, 429, or an unreadable answer: retriable, nothing
 * is cached; pause and call again TC_ERR_CONFIG     any other answer (401, 403, a 404 that is not
 * 40403: wrong URL?): fatal TC_ERR_NOMEM      out of memory
 */
tc_err tc_schema_cache_get(tc_schema_cache *c, int32_t id, const tc_avro_plan **plan, char *errstr,
                           size_t errstr_size);

/* Ids currently cached (answers and refusals), and registry requests made so far. */
size_t tc_schema_cache_size(const tc_schema_cache *c);
unsigned long tc_schema_cache_fetches(const tc_schema_cache *c);

#endif
