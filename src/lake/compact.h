/*
 * compact.h -- `lake compact`: merge the small files of a closed day into a few large ones.
 *
 * A day directory (<root>/telemetry/year=Y/month=M/day=D) collects one file per Kafka partition
 * and commit: with one-minute rolls, thousands of small files a day. Compaction reads them back
 * (parquet_values.h) and writes their rows, unchanged and in file-name order, into files of up to
 * target_bytes named compact-<YYYYMMDD>-<n>-<unix seconds>.parquet, whose key-value metadata lists
 * the Kafka coordinates they cover (kafka.topic; kafka.partitions = "P:first-last,..." with the
 * lowest first_offset and the highest last_offset of each partition; thermocline.rows;
 * thermocline.compacted_files). The output's columns are the union by name of the inputs'; a column
 * only some inputs have must be OPTIONAL and is NULL in the others' rows.
 *
 * The swap is atomic for readers: the new day is built outside the tables, in
 * <root>/_thermocline/compact/YYYY-MM-DD (same file system; not a hidden name next to the day,
 * because DuckDB's globs match hidden names), every file and the directory are fsynced, the two
 * directories are exchanged with renameat2(RENAME_EXCHANGE), both parents are fsynced, and only
 * then is the old day (now in the staging directory) removed. A reader listing the day sees all
 * old files or all new ones. A crash at any point leaves at most the staging directory, which the
 * next compaction of that day removes (before the exchange it holds the new files, after it the
 * old ones: either way it is garbage, and no reader of telemetry/ ever sees it).
 *
 * Safety: the day must be closed (at least min_age_days old in UTC; today never) unless forced;
 * compaction holds the day's lock exclusively (tc_lake_day_lock), and refuses a day that has a
 * temporary file (a commit in progress), a file it does not know, or a part file whose commit has
 * not reached its partition's progress file (recovery would delete it; compacting it would keep a
 * row that is written again).
 */
#ifndef TC_LAKE_COMPACT_H
#define TC_LAKE_COMPACT_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "lake/parquet.h"

typedef struct tc_lake_compact_options {
    int min_age_days; /* a day is closed when today - day >= this (clamped to >= 1); default 2 */
    uint64_t target_bytes;  /* output file size goal (inputs are never split); default 512 MiB */
    int force;              /* compact even a day that is not closed */
    int dry_run;            /* check and plan only; res says what would be done */
    tc_parquet_codec codec; /* default TC_PQ_SNAPPY, like the sink */
    int64_t now_us;         /* 0 = the clock (tests set it) */
} tc_lake_compact_options;

typedef struct tc_lake_compact_result {
    int compacted;  /* 1 when the day was swapped (or, dry run, would be) */
    size_t inputs;  /* files merged */
    size_t outputs; /* files written */
    uint64_t rows;  /* rows copied */
    uint64_t bytes_in, bytes_out;
    char note[160]; /* why nothing was done, when compacted = 0 */
} tc_lake_compact_result;

#define TC_LAKE_COMPACT_TARGET_DEFAULT ((uint64_t)512 << 20)

void tc_lake_compact_options_default(tc_lake_compact_options *o);

/*
 * Lock of one day (days since 1970-01-01, UTC) of the lake at root, for every topic:
 * <root>/_thermocline/locks/day-YYYY-MM-DD.lock, taken with flock (blocking). Compaction holds it
 * exclusively for the whole day's compaction; the lake sink must hold it shared (exclusive = 0)
 * around the rename of a finished file into the day directory (and its directory fsync). Returns
 * the fd to close (which releases the lock), or -1 with errno set.
 */
int tc_lake_day_lock(const char *root, int64_t day, int exclusive);

/* Compact one day. TC_OK with res->compacted = 0 and res->note when there is nothing to do (no
 * directory, no file, or already a single compacted file); TC_ERR_INVALID when refused (not closed,
 * writer active, unknown file, uncommitted part file, incompatible columns); TC_ERR_IO/NOMEM on
 * failure, in which case the day is left as it was (only a hidden directory may remain). */
tc_err tc_lake_compact_day(const char *root, int y, int m, int d, const tc_lake_compact_options *o,
                           tc_lake_compact_result *res, char *errstr, size_t errstr_size);

#endif
