/*
 * scheduled.h -- the scheduled exports' passes: each closed period exported once, and again when
 * late data changed it.
 *
 * The output directories are the state. A period [start, end) of export NAME lives in
 * `<out>/<start as YYYYMMDDTHHMMZ, UTC>/`, whole (export.h swaps it in atomically) with its
 * manifest. A pass at time now looks at the `lookback` latest closed periods (end <= now) and
 * exports every one whose directory is missing -- never exported, or a crash before its swap --
 * or whose manifest's lake_digest differs from the digest of the lake files the period reads now
 * (late readings landed in its days, or compaction rewrote them): re-exported, replacing the
 * directory in one step. A period older than the lookback is left as it is. No state file can
 * disagree with the exports, since there is none.
 */
#ifndef TC_EXPORT_SCHEDULED_H
#define TC_EXPORT_SCHEDULED_H

#include <pthread.h>
#include <stdint.h>

#include "export/spec.h"

/* What a pass needs besides the spec: the lake and the masking rules. */
typedef struct tc_export_sched_env {
    const char *lake_dir;
    const char *personal_columns;
    int personal_digits;
    tc_mask_level viewer_level; /* the "public" profile's level */
} tc_export_sched_env;

/* Per scheduled export, since the process started (read under lock by /metrics). */
typedef struct tc_export_sched_stats {
    uint64_t exports;           /* periods exported */
    uint64_t late_reexports;    /* of which re-exports of a changed period */
    uint64_t failures;          /* exports that failed (retried at the next pass) */
    uint64_t rows;              /* rows written */
    int64_t last_success_us;    /* 0: none yet */
    int64_t last_period_end_us; /* end of the latest period exported whole */
} tc_export_sched_stats;

/* Directory name of a period starting at start_s: "YYYYMMDDTHHMMZ". */
void tc_export_period_name(int64_t start_s, char out[32]);

/* One pass of sp at now_s (Unix seconds). Counters go to st under lock (may be NULL). Returns the
 * number of periods that failed; each failure is logged with the export, the period and why. */
int tc_export_sched_pass(const tc_export_sched_env *env, const tc_export_spec *sp, int64_t now_s,
                         tc_export_sched_stats *st, pthread_mutex_t *lock);

#endif
