/*
 * replay.h -- the store's part of `thermocline replay` (see src/cli/cmd_replay.c for the design).
 *
 * Before a range of a partition is consumed again, its readings are deleted and what is derived
 * from them -- the plain-mode rollups of the buckets they fell in, and the latest reading of the
 * devices whose latest they were -- is recomputed from the readings that remain, in one
 * transaction; ingest_offsets is left alone (the store's mark never moves back). Dead letters of
 * the range are kept; once the range is consumed again, settling them leaves exactly one per
 * refused offset -- the oldest row, so its id, received_at and redrive marks survive; it takes the
 * newest reason, stage and detail only when the reason or stage changed (a detail may quote the
 * clock: "timestamp is N s old") -- and none for an offset that is now a reading.
 * Settling also recomputes the rollup buckets and latest rows of the range's readings once more,
 * from all readings: exact whether the pipeline fed them in each batch or deferred. */
#ifndef TC_STORE_REPLAY_H
#define TC_STORE_REPLAY_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "store/store.h"

/* Take the session-level advisory lock of replays of (schema, group, topic); *held is 0 when
 * another session has it. Released by tc_store_destroy (or when the process dies). */
tc_err tc_store_replay_lock(tc_store *s, int *held, char *errstr, size_t errstr_size);

/* Count readings and dead letters of partition with offsets in [from, to). */
tc_err tc_store_replay_count(tc_store *s, int32_t partition, int64_t from, int64_t to,
                             int64_t *readings, int64_t *dead_letters, char *errstr,
                             size_t errstr_size);

/* Delete the readings of partition with offsets in [from, to) and recompute rollups and latest
 * (see above); *deleted is how many readings went. */
tc_err tc_store_replay_reset(tc_store *s, int32_t partition, int64_t from, int64_t to,
                             int64_t *deleted, char *errstr, size_t errstr_size);

/* Settle the dead letters of partition with offsets in [from, to) (see above); *removed is how
 * many rows went. */
tc_err tc_store_replay_settle(tc_store *s, int32_t partition, int64_t from, int64_t to,
                              int64_t *removed, char *errstr, size_t errstr_size);

#endif
