/*
 * deadletter.h -- the batch of readings that were refused.
 *
 * A refused reading is never dropped: it travels beside the columnar batch as a dead letter (raw
 * payload bytes, Kafka key, reason code, detail, source coordinates) and is written in the same
 * transaction as the batch's rows and offsets. Payloads are copied into the dead-letter arena
 * because the Kafka message they came from is released right after decoding.
 */
#ifndef TC_CORE_DEADLETTER_H
#define TC_CORE_DEADLETTER_H

#include <stddef.h>
#include <stdint.h>

#include "core/arena.h"
#include "core/batch.h"
#include "core/error.h"
#include "core/reject.h"

typedef struct tc_dead_letter {
    tc_reject reason;
    const char *detail; /* NUL-terminated, in the arena */
    const char *stage;  /* static string: "decode", "validate", "store" */
    tc_slice payload;   /* raw message value; ptr may be NULL for an empty message */
    tc_slice key;       /* raw message key, or NULL */
    int32_t partition;
    int64_t offset;
    int64_t received_us;
} tc_dead_letter;

typedef struct tc_dlq_batch {
    tc_dead_letter *items;
    size_t n, cap;
    tc_arena arena;
} tc_dlq_batch;

/* cap letters whose payloads may take arena_cap bytes in all (0 = unbounded). NULL on OOM. */
tc_dlq_batch *tc_dlq_batch_new(size_t cap, size_t arena_cap);
void tc_dlq_batch_destroy(tc_dlq_batch *d);
void tc_dlq_batch_reset(tc_dlq_batch *d);

/* Whether a dead letter of these sizes is sure to fit now (tc_dlq_batch_add cannot answer FULL):
 * a free item, and room under the arena's cap for each copy in a block of its own. */
int tc_dlq_batch_room(const tc_dlq_batch *d, size_t payload_len, size_t key_len, size_t detail_len);

/* Append a dead letter, copying payload, key and detail. TC_ERR_FULL when out of room (flush
 * first). */
tc_err tc_dlq_batch_add(tc_dlq_batch *d, tc_reject reason, const char *stage, const char *detail,
                        const void *payload, size_t payload_len, const void *key, size_t key_len,
                        int32_t partition, int64_t offset, int64_t received_us);

#endif
