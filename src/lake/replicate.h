/*
 * replicate.h -- `lake replicate`: copy the lake to a second location (another disk, standing in
 * for another region), incrementally, with every copy verified by checksum.
 *
 * What is copied: every final file of <src>/telemetry/year=*\/month=*\/day=*\/ (part-* and
 * compact-*; hidden temporary files are commits in progress and are not), and the progress files
 * of <src>/_thermocline/progress/, so the replica is a lake `thermocline run` can be pointed at.
 *
 * Order, which is what keeps the replica consistent at every instant:
 *   1. the source's progress files are read first (the snapshot);
 *   2. each data file missing from the replica, or whose size or mtime differ (or, with
 *      checksum_all, whose checksum differs), is copied to a hidden temporary name next to its
 *      final place while its CRC-32C is computed, fsynced, dropped from the page cache and read
 *      back from the disk; only when both checksums agree is it renamed to its final name (mtime
 *      set to the source's) and the directory fsynced;
 *   3. replica files the source no longer has (merged by `lake compact`, removed by recovery) are
 *      deleted;
 *   4. the snapshot's progress is written to the replica (temporary name, fsync, rename), then the
 *      state file <dst>/_thermocline/replica/state.
 * Every file a snapshot's progress covers was renamed into the source before that progress was
 * written, so after step 2 the replica holds it: a replica's progress never claims a file it lacks.
 * A file copied past the snapshot is harmless: a sink started on the replica deletes part files at
 * or past its progress, as after any crash.
 *
 * Resumable: a kill at any point leaves complete files under final names, at most one temporary
 * file per directory (removed by the next run) and the previous progress and state. The next run
 * skips what was copied (same size and mtime) and goes on. Two replications into one replica
 * exclude each other (flock on <dst>/_thermocline/replica/lock; the second fails at once).
 *
 * Each day directory of the source is walked under its day lock, taken shared
 * (tc_lake_day_lock): `lake compact` holds it exclusively while it swaps a day, so a replication
 * never lists a day half swapped; it waits for the compaction to finish.
 *
 * Readers of the replica see no partial file. Between steps 2 and 3 after a compaction, a reader
 * of the replica may see a day's compacted file next to the part files it replaced (the source's
 * swap is atomic, the replica's is not); the next step removes them.
 */
#ifndef TC_LAKE_REPLICATE_H
#define TC_LAKE_REPLICATE_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

/* Topic partitions whose progress a snapshot carries. */
#define TC_LAKE_REPLICA_PROGRESS_MAX 4096
/* Longest topic name (Kafka's limit is 249). */
#define TC_LAKE_REPLICA_TOPIC_MAX 256

typedef struct tc_lake_replicate_options {
    int checksum_all; /* compare every file present on both sides by checksum, not size + mtime */
    /* Called after each copied file (tests use it to be killed mid-way); may be NULL. */
    void (*on_copied)(void *opaque, const char *relpath, uint64_t bytes);
    /* Called when a copy is written and fsynced, before it is read back: fault injection for the
     * tests (a disk that returns other bytes than it was given); NULL in the command. */
    void (*on_written)(void *opaque, const char *tmp_path);
    void *opaque;
    const volatile sig_atomic_t
        *stop; /* nonzero: stop between files (TC_ERR_STOPPED); may be NULL */
} tc_lake_replicate_options;

typedef struct tc_lake_replicate_result {
    uint64_t files_seen;     /* data files in the source */
    uint64_t files_copied;   /* copied (new or changed) */
    uint64_t bytes_copied;   /* their size */
    uint64_t files_verified; /* checksum_all: present on both sides with equal checksums */
    uint64_t files_deleted;  /* removed from the replica */
    uint64_t files_vanished; /* listed in the source but gone before they could be copied */
    uint64_t progress_files; /* progress files in the snapshot */
    int64_t snapshot_us;     /* when the source's progress was read (wall clock) */
    int64_t finished_us;
} tc_lake_replicate_result;

/* Replicate the lake at src into dst (created if missing). dst must not be src nor inside it.
 * TC_ERR_INVALID when refused (same place, no lake at src, another replication running),
 * TC_ERR_IO with the path on a failed or mismatching copy (the replica keeps what it had),
 * TC_ERR_STOPPED when *o->stop was set. */
tc_err tc_lake_replicate(const char *src, const char *dst, const tc_lake_replicate_options *o,
                         tc_lake_replicate_result *res, char *errstr, size_t errstr_size);

/* How far the replica at dst is behind the lake at src: the sum over the source's partitions of
 * (source progress - replica progress), in Kafka offsets, and the snapshot time of the last
 * completed replication (0 when none). TC_ERR_NOT_FOUND when dst has no state file yet. */
typedef struct tc_lake_replica_lag {
    int64_t behind_offsets;
    int64_t snapshot_us;
    int64_t finished_us;
    uint64_t partitions;
} tc_lake_replica_lag;

tc_err tc_lake_replica_lag_of(const char *src, const char *dst, tc_lake_replica_lag *out,
                              char *errstr, size_t errstr_size);

#endif
