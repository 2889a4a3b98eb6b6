/*
 * window.h -- a bounded run of the pipeline over offset ranges (`thermocline replay`).
 *
 * A window names one Kafka partition and what the replay asks of it (see src/cli/cmd_replay.c for
 * the whole design):
 * - the store takes offsets [from, to) again, and those at or past store_mark (never stored yet);
 *   the rows of [to, store_mark) stay as they are;
 * - the store's mark in ingest_offsets only ever moves up, past store_mark: a replay inside what
 *   is already stored never lowers it, so a crash in the middle of a replay cannot make a later
 *   `run` store a row twice;
 * - the lake takes what its own (lowered) progress says, as in a normal run;
 * - nothing at or past end is processed, and the window is done once its consumer position reached
 *   end;
 * - offsets listed in skip become dead letters without being decoded (a poisoned message).
 * Partitions without a window are assigned but not processed.
 */
#ifndef TC_PROCESS_WINDOW_H
#define TC_PROCESS_WINDOW_H

#include <stddef.h>
#include <stdint.h>

/* Offsets of one partition dead-lettered unread in one replay. */
#define TC_WINDOW_SKIPS_MAX 16

typedef struct tc_pipeline_window {
    int32_t partition;
    int64_t from;       /* the store's first offset */
    int64_t to;         /* the store's end of the range (exclusive) */
    int64_t store_mark; /* the store's next offset before the replay (-1: nothing stored) */
    int64_t end;        /* consume up to here (exclusive) */
    int64_t skip[TC_WINDOW_SKIPS_MAX];
    size_t nskip;
} tc_pipeline_window;

typedef struct tc_windows tc_windows;

/* Copy n windows; NULL on OOM. */
tc_windows *tc_windows_new(const tc_pipeline_window *w, size_t n);
void tc_windows_destroy(tc_windows *ws);

/* On assignment: the first offset to consume of each windowed partition is its window's start. */
void tc_windows_assign(const tc_windows *ws, const int32_t *parts, size_t n, int64_t *next);

/* Restrict sinks (a mask of which store_bit is the store's) to what the window of partition asks
 * for at offset; an offset at or past end - 1 also marks the window done. */
unsigned tc_windows_sinks(tc_windows *ws, int32_t partition, int64_t offset, unsigned sinks,
                          unsigned store_bit);

/* Nonzero when the store's mark must not move for this offset (it is below store_mark). */
int tc_windows_keeps_store_mark(const tc_windows *ws, int32_t partition, int64_t offset);

/* Nonzero when the message at partition:offset is to be dead-lettered unread. */
int tc_windows_skips(const tc_windows *ws, int32_t partition, int64_t offset);

/* Nonzero once every window is done. */
int tc_windows_done(const tc_windows *ws);

/* The first of parts[0..n) whose window is not done yet, or -1. */
int32_t tc_windows_unfinished(const tc_windows *ws, const int32_t *parts, size_t n);

#endif
