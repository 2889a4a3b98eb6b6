/*
 * quality_src.h -- the features that come from the quality monitor, not from the readings:
 * `anomalies` (the monitor's findings) and the quality figures (late, out_of_order, dead_letters,
 * duplicates, gaps, gap_max_s, delay_p50_ms, delay_p99_ms), per device and window.
 *
 * Where they are read. The quality sink (src/quality) commits its findings to
 * <schema>.anomalies and its figures per device and minute to <schema>.quality_1m, in one
 * transaction with its marks; those tables are the only durable record of them (the lake holds
 * readings only). So both sides read PostgreSQL, with one SQL expression per aggregate, kept here:
 *   offline  `features build` reads a day's values grouped by (device, window) (tc_fq_day) and
 *            joins them to the windows the lake's readings make; a day's fingerprint of both
 *            tables (tc_fq_day_fingerprint) joins the lake files' in the build's state, so a day
 *            whose findings or figures changed is rebuilt;
 *   online   the features sink sets the value of these features' rows with the same expression
 *            correlated on the row (tc_fq_refresh_sql): in its write transaction for the windows
 *            the write touches, and for every window that ended less than TC_FQ_HORIZON_S ago
 *            whenever the quality sink's marks (quality_offsets) moved (sink_online.h).
 * Both take the same rows of the same tables, so for a window whose figures and findings no
 * longer change, the two agree exactly.
 *
 * What a window counts (the window is [start, end), aligned to the UTC day as every feature's):
 *   anomalies     findings of the definition's metric (anomalies.metric) on the device that
 *                 overlap the window: start_time < end and (end_time IS NULL, still open, or
 *                 end_time >= start); a finding spanning three windows counts in each. Findings
 *                 without a metric (cross-metric rules) belong to no metric's feature;
 *   late, out_of_order, dead_letters, duplicates, gaps
 *                 sums of quality_1m over the device's minutes in the window (0 when none);
 *   gap_max_s     the longest gap of those minutes (NULL when none);
 *   delay_p50_ms, delay_p99_ms
 *                 the quantile of the minutes' delay sketches merged (the monitor's
 *                 tc_quality_sketch_* functions: within 9.05 %, docs/quality.md; NULL when none).
 * A window exists when the device has a reading in it (as for every feature), so dead letters of
 * a device without a valid reading in the window make no row.
 *
 * Limits (online). A value follows the quality sink's commits, not the readings: it is right once
 * both sinks have committed the window's readings and the horizon was refreshed after that (at
 * most TC_FQ_REFRESH_MIN_S later, and at a clean stop). A change to a window that ended more than
 * TC_FQ_HORIZON_S ago (by the clock; a finding resolved days later, a replay of old data) is not
 * followed online; `features build` has it.
 *
 * Ownership: tc_fq owns its PostgreSQL connection; tc_fq_rows owns its arrays. Not thread-safe.
 */
#ifndef TC_FEATURES_QUALITY_SRC_H
#define TC_FEATURES_QUALITY_SRC_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "features/defs.h"

/* How long after its end a window's quality features are still refreshed online, seconds. */
#define TC_FQ_HORIZON_S 172800
/* The shortest time between two refreshes of that horizon online (but the last, at a clean stop),
 * seconds: one costs about 2.5 ms per row of a delay quantile of 1 h (60 minute rows' sketches
 * merged by the monitor's SQL functions) -- 22 s for 200 devices' two days -- and 0.1 ms per row of
 * a sum. */
#define TC_FQ_REFRESH_MIN_S 60
/* Longest SQL text one statement here makes. */
#define TC_FQ_SQL_MAX 4096
/* (device, window) values one day's query may return per feature. */
#define TC_FQ_ROWS_MAX ((size_t)1 << 26)

typedef struct tc_fq tc_fq;

/* One day's values of one feature, sorted by device id (bytes, as strcmp) and window start. */
typedef struct tc_fq_rows {
    size_t n;
    char **device;  /* malloc'ed, NUL-terminated */
    int64_t *start; /* window start, µs */
    double *value;  /* NaN: undefined */
} tc_fq_rows;

/* Connect to dsn (postgres.dsn) for the tables of schema (postgres.schema). NULL with errstr. */
tc_fq *tc_fq_new(const char *dsn, const char *schema, char *errstr, size_t errstr_size);
void tc_fq_destroy(tc_fq *q);

/* The values of definition d (a quality aggregate) in day (days since 1970, >= 0) into out
 * (emptied first). Windows with no row of the tables are not in out: tc_fq_empty gives them. */
tc_err tc_fq_day(tc_fq *q, const tc_feat_def *d, int64_t day, tc_fq_rows *out, char *errstr,
                 size_t errstr_size);
void tc_fq_rows_free(tc_fq_rows *r);

/* The value of a window without any row of the tables: 0 for the counts (returns 1), NaN for
 * gap_max_s and the delays (returns 0). */
int tc_fq_empty(tc_feat_agg agg, double *out);

/* A fingerprint of what the tables hold for day: every quality_1m row of its minutes and every
 * finding overlapping it. */
tc_err tc_fq_day_fingerprint(tc_fq *q, int64_t day, uint64_t *fp, char *errstr, size_t errstr_size);

/* The UPDATE the online sink runs for one quality feature, with "@S" where the schema goes and
 * $1 = the feature's name: every row of it in features_online whose key is in
 * pg_temp.tc_features_online_in (the write's rows) -- and with horizon, every row whose window
 * ended less than TC_FQ_HORIZON_S ago -- gets its value, when it differs. -1 when agg is not a
 * quality aggregate or out is too small. */
int tc_fq_refresh_sql(tc_feat_agg agg, int horizon, char *out, size_t cap);

/* The query whose text changes whenever the quality sink commits ($1 = the topic). */
extern const char tc_fq_progress_sql[];

#endif
