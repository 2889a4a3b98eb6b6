/*
 * build.h -- `thermocline features build`: the offline features, materialised from the lake.
 *
 *   <features>/<NAME>/year=YYYY/month=MM/day=DD/part-YYYYMMDD.parquet
 *       device_id     STRING     the device
 *       window_start  TIMESTAMP  UTC, µs: the window is [window_start, window_end)
 *       window_end    TIMESTAMP  when the window closes: a training set at time T uses the
 *                                windows with window_end <= T only (training.h)
 *       value         DOUBLE     the aggregate (NULL when undefined: window_agg.h)
 *       readings      INT64      readings of the device in the window
 *   <features>/_thermocline/state        what was built from what (below)
 *
 * <features> is features.dir, by default <lake.dir>/features; the Hive partitioning is the
 * lake's, so the readers that read the lake read the features the same way (docs/ml.md). One
 * file per feature and day, rows sorted by device and window.
 *
 * Incremental. Windows divide a day (defs.h), so a lake day makes exactly its features' day, and
 * a day is rebuilt as a whole or not at all. The state file records, per lake day, a fingerprint
 * of the day's committed lake files (name, size, modification time: a new commit, a compaction, a
 * replay and a retention all change it) -- joined, when a definition reads the quality monitor's
 * findings or figures (quality_src.h), with a fingerprint of the day's rows of those tables in
 * PostgreSQL -- and, once, a fingerprint of the definitions: a day whose
 * files are unchanged since its last build is skipped; changed definitions rebuild every day.
 * Open (uncommitted) lake files are not read: a build sees the lake's committed state. A day is
 * listed and read under its shared lake day lock (compact.h), so a compaction never swaps the
 * files of a day being read.
 *
 * Atomic. Each feature file is written to a temporary name, fsynced and renamed over the old one
 * (directory fsynced); the state is rewritten the same way (core/durable.h) after each day's
 * files, so a kill leaves every file either the old one or the new one, and the next build redoes
 * the days the state does not yet record. A day whose rebuild finds no window of a feature
 * removes that feature's file of the day.
 *
 * Memory: one accumulator (TC_WAGG_BYTES plus its key) per (device, feature, window) of the day
 * being built (per run of a window when readings come out of time order), capped by
 * TC_FEATURES_WINDOWS_MAX; the lake is read a row group at a time.
 *
 * Not thread-safe; one build at a time per features directory (the state has no lock).
 */
#ifndef TC_FEATURES_BUILD_H
#define TC_FEATURES_BUILD_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "features/defs.h"

/* Accumulators one day's build may hold: (device, feature, window) triples. */
#define TC_FEATURES_WINDOWS_MAX ((size_t)1 << 26)
/* Lake days the state file records. */
#define TC_FEATURES_DAYS_MAX 100000
/* The state file, under <features>/. */
#define TC_FEATURES_STATE_DIR  "_thermocline"
#define TC_FEATURES_STATE_FILE "state"

typedef struct tc_features_build_options {
    const char *lake_root;    /* lake.dir */
    const char *features_dir; /* NULL or "": <lake_root>/features */
    const tc_feat_defs *defs; /* not owned */
    int full;                 /* rebuild every day, whatever the state says */
    /* Where the quality monitor's findings and figures are (quality_src.h): read only when a
     * definition is one of them. */
    const char *pg_dsn;    /* postgres.dsn */
    const char *pg_schema; /* postgres.schema */
} tc_features_build_options;

typedef struct tc_features_build_stats {
    uint64_t days;          /* lake days seen */
    uint64_t days_built;    /* rebuilt (new or changed) */
    uint64_t rows_read;     /* lake rows read */
    uint64_t windows;       /* feature rows written */
    uint64_t files_written; /* feature files written */
} tc_features_build_stats;

/* Build what is new or changed. stats may be NULL. Errors name the file. */
tc_err tc_features_build(const tc_features_build_options *opt, tc_features_build_stats *stats,
                         char *errstr, size_t errstr_size);

/* <features> of opt into out: features_dir, or <lake_root>/features. -1 when it does not fit. */
int tc_features_dir(const tc_features_build_options *opt, char *out, size_t cap);

/* The day directory <features>/<name>/year=YYYY/month=MM/day=DD of day (days since 1970). */
int tc_features_day_dir(char *out, size_t cap, const char *features, const char *name, int64_t day);

#endif
