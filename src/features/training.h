/*
 * training.h -- `thermocline features training-set`: labels joined with the offline features as
 * of each label's time, point in time.
 *
 * Labels: a CSV file with a header naming device_id (or device), time and label, in any order
 * (other columns ignored; no quoting: device ids and labels hold no ',' or '"'), or a Parquet file
 * (name ending .parquet) with columns device_id (STRING), time (TIMESTAMP or INT64 µs) and label
 * (a number, a boolean or a string). A CSV time is RFC 3339 or seconds since the epoch.
 *
 * Point in time. For a label (device, T) the value of a feature is that of the device's window
 * that closed last at or before T: window_end <= T. A window still open at T (window_start <= T <
 * window_end) holds readings after T and is never used, nor is any later one; so no feature of a
 * training row is computed from data after its label's time. A device without a closed window of
 * the feature ending within TC_TRAINING_LOOKBACK_DAYS before T (window_end >= T - 7 days) gets
 * NULL: an older window is stale, not the device's state at T.
 *
 * Output: Parquet, one row per label in the labels' order: device_id, time, label (DOUBLE when
 * every label is a number or a boolean, else STRING), then one nullable DOUBLE column per feature,
 * named as the feature. Written to a temporary file and renamed (fsynced), so the file is whole or
 * absent.
 *
 * Memory: the labels, and the windows of each feature over the labels' days (plus the lookback),
 * one feature at a time; capped by TC_TRAINING_LABELS_MAX and TC_TRAINING_WINDOWS_MAX.
 */
#ifndef TC_FEATURES_TRAINING_H
#define TC_FEATURES_TRAINING_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "features/defs.h"

/* Labels one training set may hold. */
#define TC_TRAINING_LABELS_MAX ((size_t)1 << 24)
/* Windows of one feature held for the join. */
#define TC_TRAINING_WINDOWS_MAX ((size_t)1 << 27)
/* How far back before a label's day the latest closed window is looked for. */
#define TC_TRAINING_LOOKBACK_DAYS 7
/* Longest CSV line of the labels file. */
#define TC_TRAINING_LINE_MAX 4096

typedef struct tc_training_options {
    const char *features_dir; /* <features> (build.h) */
    const tc_feat_defs *defs; /* the features joined, in this order; not owned */
    const char *labels_path;
    const char *out_path;
} tc_training_options;

/* Make the training set; *rows (may be NULL) receives the rows written. Errors name the file and,
 * for CSV labels, the line. */
tc_err tc_training_set(const tc_training_options *opt, uint64_t *rows, char *errstr,
                       size_t errstr_size);

#endif
