/*
 * store.h -- the operational store: PostgreSQL.
 *
 * The store owns one libpq connection and writes each batch in ONE transaction: the batch's rows
 * (binary COPY into telemetry.readings), its dead letters (binary COPY into telemetry.dead_letters)
 * and, per Kafka partition, the next offset to consume (telemetry.ingest_offsets). Because the
 * offsets commit atomically with the data, the offsets table -- not Kafka's committed offsets -- is
 * the truth about what is stored: after a crash the pipeline resumes exactly where the last
 * committed transaction ended, so no reading is stored twice or lost.
 *
 * Readings are partitioned by day on their event time (declarative range partitioning); the store
 * creates daily partitions ahead of time and on demand for late readings before the COPY, in their
 * own short transaction under an advisory lock so that concurrent pipelines do not race on DDL.
 */
#ifndef TC_STORE_STORE_H
#define TC_STORE_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "core/batch.h"
#include "core/deadletter.h"
#include "core/error.h"

typedef struct tc_store tc_store;

typedef struct tc_store_options {
    const char *dsn;    /* libpq connection string */
    const char *schema; /* e.g. "telemetry" */
    const char *group;  /* consumer group the offsets belong to */
    const char *topic;  /* source topic */
    int partition_days_ahead;
} tc_store_options;

/* Create a store handle (copies the options; does not connect yet). NULL on OOM. */
tc_store *tc_store_new(const tc_store_options *opt);
void tc_store_destroy(tc_store *s);

/* Connect if not connected (or reconnect after a loss). TC_ERR_DB_CONN when unreachable. */
tc_err tc_store_connect(tc_store *s, char *errstr, size_t errstr_size);

/* Create or upgrade the database objects; idempotent and safe to run concurrently. */
tc_err tc_store_migrate(tc_store *s, char *errstr, size_t errstr_size);

/* Create the daily partitions covering [now - days_back, now + days_ahead]. */
tc_err tc_store_ensure_partitions_around(tc_store *s, int64_t now_us, int days_back, char *errstr,
                                         size_t errstr_size);

/* For each of n partitions, the stored next offset, or -1 when nothing is stored yet. */
tc_err tc_store_load_offsets(tc_store *s, const int32_t *partitions, size_t n, int64_t *next,
                             char *errstr, size_t errstr_size);

/* Write rows, dead letters and offsets in one transaction. On a retriable error nothing was
 * written and the caller may call again with the same arguments. */
tc_err tc_store_write(tc_store *s, const tc_batch *b, const tc_dlq_batch *dlq,
                      const tc_partition_offset *offsets, size_t noffsets, char *errstr,
                      size_t errstr_size);

/* Rows and dead letters written since tc_store_new (for progress reports). */
void tc_store_totals(const tc_store *s, uint64_t *rows, uint64_t *dead_letters);

#endif
