/*
 * batch.h -- the columnar batch, the one data type every room of Thermocline speaks.
 *
 * Readings are decoded once, straight into columns (a struct of arrays), because both sinks want
 * columns: Parquet writes them as they are and binary COPY walks them row by row. A batch is
 * allocated once with a fixed row capacity and reused: tc_batch_reset() forgets the rows and resets
 * the arena that holds their strings, so the hot path does no malloc per reading.
 *
 * Filling a row: the decoder writes the fields of row b->n (tc_batch_row_begin clears it), then the
 * caller either keeps it with tc_batch_row_commit() or drops it by not committing (a rejected
 * reading); strings it copied into the arena stay there until the next reset, which is bounded by
 * the arena cap.
 */
#ifndef TC_CORE_BATCH_H
#define TC_CORE_BATCH_H

#include <stddef.h>
#include <stdint.h>

#include "core/arena.h"
#include "core/error.h"

/* The metrics the telemetry schema (version 1) names. Order is the column order everywhere. */
typedef enum tc_metric {
    TC_M_TEMPERATURE,
    TC_M_HUMIDITY,
    TC_M_PRESSURE,
    TC_M_BATTERY,
    TC_M_LATITUDE,
    TC_M_LONGITUDE,
    TC_METRIC__COUNT
} tc_metric;

/* Column names of the metrics, indexed by tc_metric ("temperature", ...). */
extern const char *const tc_metric_names[TC_METRIC__COUNT];

/* Look a metric up by field name; returns -1 when the name is not a metric. */
int tc_metric_lookup(const char *name, size_t len);

/* A string owned by the batch arena (or by the message it points into); ptr NULL means SQL NULL. */
typedef struct tc_slice {
    const char *ptr;
    uint32_t len;
} tc_slice;

/* Device ids longer than this are rejected: they are keys, not payloads. */
#define TC_DEVICE_ID_MAX 256

/* Metrics beyond the six of schema version 1 that a batch can carry as columns (see
 * tc_batch_dyn_column). A stream that keeps inventing new numeric fields gets this many columns,
 * the rest stay in `extra`: columns are schema, not data. */
#define TC_BATCH_DYN_MAX 64
/* Longest name of such a column (PostgreSQL's identifier limit is 63 bytes). */
#define TC_BATCH_DYN_NAME_MAX 63

/* Upper bound on a batch's row capacity; the configured batch size must not exceed it. */
#define TC_BATCH_ROWS_MAX 1000000

typedef struct tc_batch {
    size_t cap; /* row capacity */
    size_t n;   /* committed rows */

    int64_t *time_us;    /* event time, microseconds since 1970-01-01T00:00:00Z */
    tc_slice *device_id; /* never NULL in a committed row */
    double *metric[TC_METRIC__COUNT];
    uint8_t *present[TC_METRIC__COUNT]; /* 1 = value present, 0 = NULL */
    tc_slice *tags;                     /* JSON object text, or NULL */
    tc_slice *extra;    /* JSON object text of fields the schema does not name, or NULL */
    int32_t *partition; /* source Kafka partition */
    int64_t *offset;    /* source Kafka offset */
    /* Registry version of the telemetry subject the reading was read as (the writer schema's for
     * Avro, the detected one for JSON); 0 = none known, stored as NULL. */
    int32_t *schema_version;

    /* Metrics that appeared in the stream after schema version 1 (schema evolution): numeric
     * fields the decoder found unknown, promoted to columns. Known columns stay across resets, so
     * ndyn only grows; a column a row lacks is NULL there. */
    size_t ndyn;
    char *dyn_name[TC_BATCH_DYN_MAX];
    double *dyn[TC_BATCH_DYN_MAX];
    uint8_t *dyn_present[TC_BATCH_DYN_MAX];

    tc_arena arena; /* strings of the rows above */
} tc_batch;

/* Allocate a batch for cap rows whose strings may take up to arena_cap bytes (0 = unbounded).
 * Returns NULL when out of memory or cap is 0 or above TC_BATCH_ROWS_MAX. Free with
 * tc_batch_destroy. */
tc_batch *tc_batch_new(size_t cap, size_t arena_cap);
void tc_batch_destroy(tc_batch *b);

/* Forget all rows and their strings. */
void tc_batch_reset(tc_batch *b);

/* Clear row b->n so a decoder can fill it. Returns TC_ERR_FULL when the batch has no free row. */
tc_err tc_batch_row_begin(tc_batch *b);

/* Index of the dynamic column called name (added when new), or -1 when the name is not a valid
 * column name (lower-case letters, digits and '_', not starting with a digit, at most
 * TC_BATCH_DYN_NAME_MAX bytes, not a name of the fixed schema), when TC_BATCH_DYN_MAX columns
 * exist already, or when out of memory. */
int tc_batch_dyn_column(tc_batch *b, const char *name, size_t len);

/* Nonzero when name is one of the fixed columns of schema version 1. */
int tc_batch_is_fixed_column(const char *name, size_t len);

/* Keep the row filled at b->n. */
void tc_batch_row_commit(tc_batch *b);

/* Start dst empty, with src's dynamic columns in src's order (a subset of src's rows follows). */
void tc_batch_reset_like(tc_batch *dst, const tc_batch *src);
/* Append row i of src to dst, which has src's dynamic columns and a free row. The strings stay
 * src's (dst borrows them): dst is valid only while src is unchanged. */
void tc_batch_copy_row(tc_batch *dst, const tc_batch *src, size_t i);

/* The next Kafka offset to consume for one partition: what a batch's transaction records. */
typedef struct tc_partition_offset {
    int32_t partition;
    int64_t next_offset;
} tc_partition_offset;

static inline int tc_batch_full(const tc_batch *b)
{
    return b->n >= b->cap;
}

#endif
