/*
 * sink.h -- the lake sink: readings to Parquet files, exactly once, Hive-partitioned by day.
 *
 * Layout: <root>/telemetry/year=YYYY/month=MM/day=DD/part-<topic>-p<P>-<first>-<last>.parquet,
 * partitioned by the reading's event time in UTC (a late reading goes to its own day). Each Kafka
 * partition has its own open files, one per day it has readings for, written under a hidden
 * temporary name (.part-...tmp) that readers skip. Names, paths and progress files are
 * lake/layout.h's.
 *
 * Commit (per Kafka partition, when its open files reach lake.roll_bytes or lake.roll_seconds, on
 * revocation and at shutdown): every open file is finished, fsynced, renamed to its final name and
 * its directory fsynced; then the partition's progress -- the next Kafka offset the lake does not
 * yet hold -- is written to <root>/_thermocline/progress/<topic>/<P> the same way. The progress
 * file is the commit point. <first>-<last> in a file name is the offset range of the commit that
 * made it, shared by the files of all days in that commit.
 *
 * Recovery (on partition assignment): read the progress; delete temporary files of the partition,
 * and final files whose range starts at or after the progress (renamed by a commit that crashed
 * before writing its progress); resume from the progress. So a crash, a restart, a rebalance or a
 * replay never leaves a partial file visible and never writes a reading twice. (A reader that
 * lists the directory during such a crash window may see a complete file that recovery then
 * removes and writes again; it never sees a row twice or half a file.)
 *
 * Fencing (several members writing one lake). A commit holds the partition's progress lock (an
 * flock on <root>/_thermocline/progress/<topic>/.<P>.lock) and goes on only while the progress
 * file says what this sink last read or wrote: otherwise another member has committed the
 * partition since (it owns it now, or owned it while this one stalled), and the commit removes
 * what it renamed, discards its open files and fails with TC_ERR_FENCED (read the progress again:
 * tc_lake_open_partitions). Files are renamed into place without replacing one of the same name
 * (link, then unlink). Recovery reads the progress and removes what lies past it under the same
 * locks, so it never removes the files of a commit under way. Open files are named per member
 * (.part-<topic>-p<P>-<first>-open-<pid>-<random>.tmp); each member holds an flock on
 * <root>/_thermocline/members/<pid>-<random>.lock while it lives, and a recovery removes another
 * member's open files only once that lock is free (the member is gone); it also removes the open
 * files of gone members in partitions it does not recover, whose own recovery may have run while
 * their member still lived.
 *
 * Not thread-safe; one sink belongs to the pipeline thread.
 */
#ifndef TC_LAKE_SINK_H
#define TC_LAKE_SINK_H

#include <stddef.h>
#include <stdint.h>

#include "core/batch.h"
#include "core/error.h"
#include "lake/parquet.h"

typedef struct tc_lake tc_lake;

typedef struct tc_lake_options {
    const char *root;       /* lake root folder (created if missing) */
    const char *topic;      /* source topic: part of file names and progress */
    uint64_t roll_bytes;    /* commit a partition's files once one reaches this size */
    int64_t roll_us;        /* ...or once its oldest uncommitted reading waited this long */
    tc_parquet_codec codec; /* page codec */
    size_t row_group_rows;  /* rows per row group */
    size_t row_group_bytes; /* memory bound of one open file's row group */
} tc_lake_options;

/* A committed file, as reported to the caller (for the store's catalogue of lake files). */
typedef struct tc_lake_file_info {
    char path[4096];
    int64_t day; /* days since 1970-01-01 */
    int32_t partition;
    int64_t first_offset, last_offset;
    uint64_t rows, bytes;
} tc_lake_file_info;

/* Called for each file a commit made durable. */
typedef void (*tc_lake_committed_fn)(void *opaque, const tc_lake_file_info *f);

/* Create the sink (options copied). NULL on error, with errstr. */
tc_lake *tc_lake_new(const tc_lake_options *opt, char *errstr, size_t errstr_size);
void tc_lake_destroy(tc_lake *l); /* open files are discarded, never committed */

void tc_lake_on_commit(tc_lake *l, tc_lake_committed_fn fn, void *opaque);

/* Recover partitions parts[0..n) (see above) and report each one's next offset in next[] (-1 when
 * the lake holds nothing of it yet). */
tc_err tc_lake_open_partitions(tc_lake *l, const int32_t *parts, size_t n, int64_t *next,
                               char *errstr, size_t errstr_size);

/* Append the rows of b whose mask byte is nonzero (mask NULL: all rows). Rows of a partition must
 * come in offset order. */
tc_err tc_lake_append(tc_lake *l, const tc_batch *b, const uint8_t *mask, char *errstr,
                      size_t errstr_size);

/* Record that partition p has been consumed up to next_offset (exclusive) -- including messages
 * that did not become rows (dead letters) -- so that the next commit covers them. */
void tc_lake_advance(tc_lake *l, int32_t partition, int64_t next_offset);

/* Commit the partitions that are due at now_us (all with force). */
tc_err tc_lake_commit_due(tc_lake *l, int64_t now_us, int force, char *errstr, size_t errstr_size);

/* Commit (commit != 0) or discard the open files of partition p, and forget it. */
tc_err tc_lake_close_partition(tc_lake *l, int32_t partition, int commit, char *errstr,
                               size_t errstr_size);

/* The next offset of partition p that the lake has in open or committed files (-1: none). */
int64_t tc_lake_advanced(const tc_lake *l, int32_t partition);

/* The next offset of partition p that the lake holds durably (-1: none, or not open). */
int64_t tc_lake_durable(const tc_lake *l, int32_t partition);

/* The committed progress of any partition of the topic, read from its progress file (-1: none),
 * whether or not this sink has it open. */
int64_t tc_lake_progress(const tc_lake *l, int32_t partition);

/* Column layout of lake files (exposed for `lake` tools and tests). */
size_t tc_lake_columns(const tc_parquet_column **cols);

#endif
