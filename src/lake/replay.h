/*
 * replay.h -- the lake's part of `thermocline replay`: move a partition's progress back on purpose.
 *
 * The lake's progress file is one high-water mark per partition and its files are whole commits
 * (part-<topic>-p<P>-<first>-<last>.parquet, one per day of the commit, all with the same range),
 * so a hole cannot be refilled in the middle: the lake replays from the start of the first commit
 * that reaches the replay's first offset, to its end. Rewinding is writing that start as the
 * progress (atomically); the sink's own recovery, on the next assignment, then removes every file
 * from there on, exactly as after a crash before a commit. Rewinding twice to the same offset
 * finds the same start, so a replay that is interrupted and run again rewinds to the same place.
 */
#ifndef TC_LAKE_REPLAY_H
#define TC_LAKE_REPLAY_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

typedef struct tc_lake_rewind {
    int64_t progress; /* the partition's progress before (-1: the lake holds nothing of it) */
    int64_t from;     /* where the lake resumes (-1: from wherever consumption starts) */
    size_t files;     /* committed files at or past `from` that recovery will remove */
    uint64_t rows;    /* ...and the rows they hold (from their footers) */
} tc_lake_rewind;

/*
 * Plan (apply == 0) or do (apply != 0) the rewind of partition `partition` of `topic` in the lake
 * at root to offset `from`. Refused (TC_ERR_INVALID) when a compacted file of the topic holds rows
 * of the partition at or past the rewind point: compaction merged them with other partitions'
 * rows, and recovery could not remove them.
 */
tc_err tc_lake_rewind_partition(const char *root, const char *topic, int32_t partition,
                                int64_t from, int apply, tc_lake_rewind *out, char *errstr,
                                size_t errstr_size);

#endif
