/*
 * shape.h -- schema evolution applied to one decoded row, next to the catalog it reads.
 *
 * A row decoded from JSON or Avro has the columns of schema version 1 and, in `extra`, whatever
 * else its device sent. Shaping gives it the rest of what the telemetry subject's versions say:
 * which version it is (the Avro writer schema's, or the one its JSON fields match, see catalog.h),
 * the defaults of the fields it lacks (of the newest version for Avro -- the reader schema -- of
 * the detected one for JSON), and its unknown numeric fields as dynamic columns of the batch, so
 * that the store and the lake gain them from this batch on. Parsing `extra` allocates, but only for
 * readings that carry unknown fields: the schema-v1 readings of the hot path cost a mask and a
 * table lookup.
 *
 * Not thread-safe: the batch and the catalog belong to the caller's thread.
 */
#ifndef TC_SCHEMA_SHAPE_H
#define TC_SCHEMA_SHAPE_H

#include <stddef.h>
#include <stdint.h>

#include "core/batch.h"
#include "core/json.h"
#include "core/reject.h"
#include "schema/catalog.h"

/*
 * Shape row `row` of b (being decoded: tc_batch_row_begin was called, b->n not yet counted).
 * catalog NULL: no registry, only the promotion of unknown numeric fields. writer_id >= 0: the
 * row's Avro writer schema id. *dyn_logged counts the dynamic columns announced in the log so far
 * (a new one is logged once). With message_id set, the row's "message_id" field, if it has one, is
 * appended to it as JSON text and *has_message_id says whether it was (for the dedupe window's
 * fingerprint). Returns TC_REJECT_NONE, or TC_JSON_BATCH_FULL when the batch's arena cannot hold a
 * default (write the batch and decode the row again into the next one).
 */
tc_reject tc_shape_row(tc_batch *b, size_t row, tc_catalog *catalog, int32_t writer_id,
                       size_t *dyn_logged, tc_jbuf *message_id, int *has_message_id);

#endif
