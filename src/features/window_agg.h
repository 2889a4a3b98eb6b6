/*
 * window_agg.h -- the accumulator of one feature over one device's window: every aggregate of
 * defs.h from one pass over the readings, mergeable, in constant memory.
 *
 * The offline build (a day's lake files) and the online sink (the stream) both feed readings to
 * a tc_wagg and finish it with tc_wagg_finish, so the two compute a feature with the same
 * arithmetic. Readings may come in any order; merge joins two accumulators of the same window
 * (say two lake files of one day) with the result of having fed both one after the other, up to
 * rounding.
 *
 * Numerics. The mean and the sum of squared deviations follow Welford (update) and Chan et al.
 * (merge), never the sum of squares, which loses every digit when the values are large and close
 * (a pressure of 1013.25 hPa varying in its hundredths). The slope is the least-squares one,
 * cov(t, x) / var(t), with the co-moment kept the same way over times in seconds since the
 * window's start, centred on their running mean: no t^2 of epoch microseconds.
 *
 * What each aggregate gives (1 = defined, 0 = NULL):
 *   count          values present (non-finite values count as missing); always defined
 *   mean, min, max count >= 1
 *   std            count >= 2: sqrt(M2 / (count - 1)), the sample deviation (pandas' std())
 *   last           count >= 1: the value with the latest time; on equal times the one fed last
 *                  (merge: the right-hand side's)
 *   slope          count >= 2 and the times not all equal: value units per second
 *   share_missing  rows >= 1: (rows - count) / rows, rows = readings of the device in the window
 *   out_of_range   values < lo or > hi (the definition's bounds); always defined
 *   anomalies and the quality figures are not computed from the readings: undefined here, their
 *   values come from the quality monitor's tables (quality_src.h); rows still counts readings.
 *
 * Ownership: a plain value, no pointers (TC_WAGG_BYTES): copy or store it as it is.
 */
#ifndef TC_FEATURES_WINDOW_AGG_H
#define TC_FEATURES_WINDOW_AGG_H

#include <stdint.h>

#include "features/defs.h"

/* The size of one accumulator: what a (device, feature, window) costs in memory. */
#define TC_WAGG_BYTES 120

typedef struct tc_wagg {
    int64_t start_us;     /* the window's start (UTC, µs): times are taken relative to it */
    int64_t rows;         /* readings fed (with or without the value) */
    int64_t n;            /* values present */
    double mean, m2;      /* of the values: Welford */
    double min, max;      /* of the values */
    double t_mean;        /* of the times, seconds since start_us */
    double t_m2, c_tx;    /* sum of squared time deviations; co-moment of times and values */
    int64_t last_us;      /* time of the last value */
    double last;          /* the last value */
    int64_t out_of_range; /* values outside [lo, hi] */
    double lo, hi;        /* out_of_range's bounds (defs.h: -inf / +inf when not given) */
} tc_wagg;

/* An empty accumulator of the window starting at start_us, with out_of_range's bounds lo, hi. */
void tc_wagg_init(tc_wagg *a, int64_t start_us, double lo, double hi);

/* The same for definition d and the window holding time_us (tc_wagg_window_start). */
void tc_wagg_init_def(tc_wagg *a, const tc_feat_def *d, int64_t time_us);

/* Start of the window of window_s seconds holding time_us (floor, also before 1970). */
int64_t tc_wagg_window_start(int64_t time_us, int64_t window_s);

/* Feed one reading of the device: present = 0 (or a non-finite x) when it lacks the metric. */
void tc_wagg_update(tc_wagg *a, int64_t time_us, double x, int present);

/* a += b: b's readings joined to a's (the same window and bounds; b counts as read after a). */
void tc_wagg_merge(tc_wagg *a, const tc_wagg *b);

/* The aggregate's value into *out; returns 1, or 0 when it is undefined (NULL, *out = NaN). */
int tc_wagg_finish(const tc_wagg *a, tc_feat_agg agg, double *out);

#endif
