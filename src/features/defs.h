/*
 * defs.h -- feature definitions: what the feature store computes, declared in the configuration.
 *
 * One setting (features.definitions) holds every definition, separated by ';' or newlines:
 *
 *   temp_mean_1h = mean(temperature, 1h)
 *   temp_slope_1d = slope(temperature, 1d)
 *   hum_missing_1h = share_missing(humidity, 1h)
 *   cold_1h = out_of_range(temperature, 1h, min=-5, max=8)
 *   temp_anomalies_1h = anomalies(temperature, 1h)
 *   late_1h = late(1h)
 *
 * that is NAME = AGGREGATE(METRIC, WINDOW [, min=NUMBER] [, max=NUMBER]), or NAME =
 * FIGURE(WINDOW) for a quality figure of the device (below), which belongs to no metric. The
 * configuration holds scalars only (config.h refuses YAML sequences), and one line per feature
 * reads like the SQL it stands for, so the definitions are a small language of their own rather
 * than a YAML tree.
 *
 *   NAME       [A-Za-z0-9_]{1,63}, unique: it names the feature's directory under the lake
 *              (<lake>/features/<NAME>/) and its column in a training set, so no '/', '.' or '-'.
 *   METRIC     a lake column of readings: one of the six built-in metrics or a promoted one
 *              ([A-Za-z0-9_]{1,63}; a metric the lake lacks gives missing values, not an error).
 *   WINDOW     <N>m, <N>h or <N>d, dividing a day (1m .. 1d): windows are aligned to the UTC day,
 *              [start, start + window), so a window never spans two of the lake's day partitions.
 *   AGGREGATE  count, mean, std, min, max, last, slope, share_missing, out_of_range (window_agg.h
 *              says what each computes), and anomalies: the quality monitor's findings of the
 *              metric (telemetry.anomalies) that overlap the window (quality_src.h). min= / max=
 *              are the bounds of out_of_range (a value below min or above max is one) and are
 *              refused on every other aggregate.
 *   FIGURE     late, out_of_order, dead_letters, duplicates, gaps, gap_max_s, delay_p50_ms,
 *              delay_p99_ms: the quality monitor's figures of the device (telemetry.quality_1m)
 *              over the window's minutes (quality_src.h).
 *
 * Errors locate the input: "features.definitions:LINE:COL: ..." (1-based, COL in bytes), and name
 * the definition. Nothing of an invalid text is kept.
 *
 * The offline build (`thermocline features build`) and the online features sink parse the same
 * text with this parser and compute with the same accumulator (window_agg.h), so a model serving
 * predictions reads the values it was trained on.
 *
 * Ownership: tc_feat_defs is a plain value (no pointers): copy it, share it read-only.
 */
#ifndef TC_FEATURES_DEFS_H
#define TC_FEATURES_DEFS_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

/* Definitions one configuration may hold. */
#define TC_FEAT_DEFS_MAX 128
/* Longest feature name and metric name (bytes, without the NUL). */
#define TC_FEAT_NAME_MAX   63
#define TC_FEAT_METRIC_MAX 63
/* Longest definitions text. */
#define TC_FEAT_TEXT_MAX (64 * 1024)
/* Window bounds, seconds: a window divides a day. */
#define TC_FEAT_WINDOW_MIN_S 60
#define TC_FEAT_WINDOW_MAX_S 86400

typedef enum tc_feat_agg {
    TC_FA_COUNT,         /* values present */
    TC_FA_MEAN,          /* arithmetic mean */
    TC_FA_STD,           /* sample standard deviation (n - 1), as pandas' std() */
    TC_FA_MIN,           /* smallest value */
    TC_FA_MAX,           /* largest value */
    TC_FA_LAST,          /* value of the latest reading (the later-read one on equal times) */
    TC_FA_SLOPE,         /* least-squares slope, value units per second */
    TC_FA_SHARE_MISSING, /* readings without the metric / readings of the device */
    TC_FA_OUT_OF_RANGE,  /* values outside [min, max] */
    /* From the quality monitor's tables, not from the readings (quality_src.h). */
    TC_FA_ANOMALIES,    /* findings of the metric overlapping the window */
    TC_FA_LATE,         /* late readings (quality_1m.late, summed over the window's minutes) */
    TC_FA_OUT_OF_ORDER, /* readings out of order (summed) */
    TC_FA_DEAD_LETTERS, /* the device's refused readings (summed) */
    TC_FA_DUPLICATES,   /* duplicates dropped (summed) */
    TC_FA_GAPS,         /* gaps between readings (summed) */
    TC_FA_GAP_MAX_S,    /* the longest gap, seconds (max) */
    TC_FA_DELAY_P50_MS, /* event-to-ingest delay, median of the merged sketch */
    TC_FA_DELAY_P99_MS, /* the same, 99th percentile */
    TC_FA__COUNT
} tc_feat_agg;

typedef struct tc_feat_def {
    char name[TC_FEAT_NAME_MAX + 1];
    char metric[TC_FEAT_METRIC_MAX + 1];
    int64_t window_s; /* divides 86400 */
    tc_feat_agg agg;
    double lo, hi; /* out_of_range's bounds: -inf / +inf when not given */
    int line;      /* where the definition starts, for messages */
} tc_feat_def;

typedef struct tc_feat_defs {
    size_t n;
    tc_feat_def def[TC_FEAT_DEFS_MAX];
} tc_feat_defs;

/* Parse text (NUL-terminated; NULL or blank: no definitions) into out. Comments run from '#' to
 * the end of the line. TC_ERR_CONFIG with errstr "features.definitions:LINE:COL: ..." on any
 * error; out is then empty. */
tc_err tc_feat_defs_parse(const char *text, tc_feat_defs *out, char *errstr, size_t errstr_size);

/* The definition named name, or NULL. */
const tc_feat_def *tc_feat_defs_find(const tc_feat_defs *defs, const char *name);

/* Aggregate names ("count", ..., "delay_p99_ms") and back; -1 for an unknown name. */
const char *tc_feat_agg_name(tc_feat_agg agg);
int tc_feat_agg_parse(const char *name, size_t len);

/* Where an aggregate's value comes from: the readings (window_agg.h), or the quality monitor's
 * tables in PostgreSQL (quality_src.h); and whether it takes a metric (a quality figure is the
 * device's: FIGURE(WINDOW), metric ""). */
int tc_feat_agg_from_quality(tc_feat_agg agg);
int tc_feat_agg_has_metric(tc_feat_agg agg);

/* Whether any definition reads the quality monitor's tables. */
int tc_feat_defs_need_quality(const tc_feat_defs *defs);

/* Write a window as the text the parser takes ("1h", "15m", "1d"); returns the length or -1. */
int tc_feat_window_format(int64_t window_s, char *out, size_t cap);

#endif
