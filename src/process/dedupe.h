/*
 * dedupe.h -- the window of recent readings that tells a device's resend from a new reading.
 *
 * A device that did not get an acknowledgement sends the same reading again: same device_id, same
 * timestamp, and the same message_id when it sends one, else the same content. The pipeline keeps a
 * fingerprint of every reading it accepted (64 bits of a hash over those fields) with the Kafka
 * position of its first occurrence, and a reading whose fingerprint is already there at an earlier
 * offset of the same partition is a duplicate. Comparing offsets, not just presence, keeps the
 * verdict the same when a stretch is read again (after a crash, a rebalance or a lake rewind): the
 * original is never taken for a copy of itself. Devices are keyed by device_id, so a device's
 * resends land on its partition; a copy in another partition is not looked for.
 *
 * Memory is bounded by two generations of at most max_entries / 2 fingerprints each: lookups see
 * both, inserts go to the current one, and when it is full -- or holds window_us of event time --
 * the older one is dropped and the current one becomes the older. Both live in one table, a slot
 * of each side by side, so that a lookup costs one cache miss: 32 bytes a slot, at least two slots
 * an entry (16 MB at the default dedupe.max_entries of 400,000). So a fingerprint is remembered
 * for at least the smaller of window_us of event time and max_entries / 2 readings.
 *
 * After a restart the window is empty; the pipeline rebuilds it by reading again the last
 * `dedupe.lookback` messages of each partition before where it resumes (fingerprints only).
 */
#ifndef TC_PROCESS_DEDUPE_H
#define TC_PROCESS_DEDUPE_H

#include <stddef.h>
#include <stdint.h>

#include "core/batch.h"

typedef struct tc_dedupe tc_dedupe;

/* A window remembering at least min(window_us of event time, max_entries / 2) readings; NULL when
 * out of memory or max_entries < 2. */
tc_dedupe *tc_dedupe_new(size_t max_entries, int64_t window_us);
void tc_dedupe_destroy(tc_dedupe *d);

/* The fingerprint of row i of b: device_id, time, and message_id (its JSON text, from `extra`)
 * when not NULL, else the metrics, tags, extra and dynamic columns. Never 0. */
uint64_t tc_dedupe_fingerprint(const tc_batch *b, size_t i, const char *message_id, size_t len);

/*
 * Look the reading up and remember it: 1 when fp was first seen at an earlier offset of the same
 * partition (a duplicate), 0 otherwise (then (partition, offset) is its first occurrence, or stays
 * the earlier one recorded). time_us (the reading's event time) moves the window along.
 */
/* Start loading the slot tc_dedupe_check of (fp, partition) will probe: called as soon as the
 * fingerprint is known, the cache miss overlaps with the row's validation. */
void tc_dedupe_prefetch(const tc_dedupe *d, uint64_t fp, int32_t partition);
int tc_dedupe_check(tc_dedupe *d, uint64_t fp, int32_t partition, int64_t offset, int64_t time_us);

/* Fingerprints remembered now (both generations). */
size_t tc_dedupe_size(const tc_dedupe *d);

#endif
