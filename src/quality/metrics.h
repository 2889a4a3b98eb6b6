/*
 * metrics.h -- the quality metrics' arithmetic: per device and per fleet, per minute of event time.
 *
 * A tc_qm accumulates, for every (device, minute) and for the fleet's minute, what
 * telemetry.quality_1m stores (quality_sql.c):
 *   readings        valid readings whose event time falls in the minute;
 *   present[m]      of those, how many carry metric m (completeness = present[m] / readings, over
 *                   the metrics the reading's schema version declares: the caller passes those);
 *   late            readings whose event time is older than the watermark by more than
 *                   late_after_s when they arrive;
 *   out_of_order    readings older than the device's latest event time seen before them;
 *   gaps            in-order readings that come more than gap_factor x the device's usual interval
 *                   (EWMA of in-order inter-arrival times) after the previous one, and the longest;
 *   delay           event-to-ingest delay in a log-bucket histogram (tc_qm_sketch) giving p50/p99.
 *
 * The sketch: bucket 0 holds delays under 1 ms; bucket i >= 1 holds [2^((i-1)/4), 2^(i/4)) ms, four
 * buckets per octave, up to 2^((TC_QM_SKETCH_BUCKETS-1)/4) ms (~7.8 hours; longer delays land in
 * the last bucket). A quantile is reported as the geometric middle of its bucket, so its relative
 * error is at most 2^(1/8) - 1 = 9.05 % (exactly: the true value lies within a factor 2^(1/8) of
 * the answer), whatever the distribution; delays under 1 ms read as 0.5 ms. Sketches merge by
 * adding their buckets, so per-device minutes, fleet minutes and pipelines combine without error
 * growth.
 *
 * Memory: TC_QM_DEVICE_BYTES per device seen plus its id, and one row of TC_QM_ROW_BYTES per
 * (device, minute) with readings not yet flushed, out of a pool of max_rows allocated at tc_qm_new
 * (untouched until used); a row whose delays fall in more than six buckets (a device's of many
 * readings or spread delays) also holds a whole sketch (sizeof(tc_qm_sketch), 408 bytes) from a
 * pool of its own, until it is flushed. A reading whose row does not fit is counted in
 * rows_refused. tc_qm_flush hands over every row of a minute before a given one and frees it: the
 * sink calls it once the watermark is past a minute plus late_after_s (later readings of that
 * minute make a new row, which the store adds to the stored one). The fleet's row of a minute is
 * not held: the flush makes it from the devices' rows of that minute it hands over (their sum:
 * every figure adds, gap_max_s is the largest), so it costs a reading nothing.
 *
 * What was handed over: a device's minute is often handed over in parts (a flush takes the minute
 * still open, its later readings go in the next), and the store then adds the part to the stored
 * row and must recompute the row's quantiles from the summed sketch -- in SQL, the dearest part
 * of the write by far. So the metrics remember, per device, the latest minute handed over, the
 * readings handed over for it and, while they fall in at most six buckets, the sum of their
 * sketches (TC_QM_WRITTEN_BYTES a device, allocated for max_devices, touched when used). A row of
 * that minute handed over again comes with `continues` set, `written` the readings handed over
 * before it and `whole` the sum of every part's sketch, its own included: the store, if the
 * stored row holds exactly `written` readings (then nothing but these parts is in it: each
 * reading adds one to the sketch), takes the quantiles from `whole`; otherwise (a row written
 * before a restart, or by another member) it sums in SQL as before.
 *
 * Ownership: rows passed to the flush callback live for the call only. Not thread-safe.
 */
#ifndef TC_QUALITY_METRICS_H
#define TC_QUALITY_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

#define TC_QM_METRICS_MAX    8
#define TC_QM_SKETCH_BUCKETS 100
#define TC_QM_SKETCH_PER_OCT 4
#define TC_QM_DEVICE_ID_MAX  128
#define TC_QM_DEVICES_MAX    10000000
#define TC_QM_ROWS_MAX       100000000
#define TC_QM_DEVICE_BYTES   32
#define TC_QM_MINUTE_US      INT64_C(60000000)
/* Bytes of a row held, its delay sketch sparse (metrics.c). */
#define TC_QM_ROW_BYTES 128
/* Bytes a device's memory of what was handed over takes (metrics.c). */
#define TC_QM_WRITTEN_BYTES 48

typedef struct tc_qm_sketch {
    uint64_t count;
    uint32_t b[TC_QM_SKETCH_BUCKETS];
} tc_qm_sketch;

/* The bucket of a delay in milliseconds (negative and NaN count as 0). */
int tc_qm_sketch_bucket(double ms);
void tc_qm_sketch_add(tc_qm_sketch *s, double ms);
void tc_qm_sketch_merge(tc_qm_sketch *into, const tc_qm_sketch *from);
/* The q-quantile (0..1) in milliseconds: the geometric middle of the bucket holding the
 * ceil(q x count)-th smallest value; 0 when empty. */
double tc_qm_sketch_quantile(const tc_qm_sketch *s, double q);

typedef struct tc_qm_options {
    size_t max_devices;  /* 1..TC_QM_DEVICES_MAX */
    size_t max_rows;     /* (device, minute) rows held at once; default 4 x max_devices + 1024 */
    int metrics;         /* 1..TC_QM_METRICS_MAX (default 6) */
    double late_after_s; /* quality.late_after_s (default 60) */
    double gap_factor;   /* default 3 */
    /* A device id table to share (tc_qd_ids of the detectors), not owned; its max must equal
     * max_devices. NULL: the metrics keep their own. */
    struct tc_qids *ids;
} tc_qm_options;

void tc_qm_options_default(tc_qm_options *o, size_t max_devices);

/* One minute's figures; device is NULL for the fleet's row. */
typedef struct tc_qm_row {
    const char *device;
    int64_t minute_us; /* start of the minute (UTC) */
    uint32_t readings, late, out_of_order, gaps;
    uint32_t present[TC_QM_METRICS_MAX];
    double gap_max_s;
    tc_qm_sketch delay;
    /* A device's row of the minute it was last handed over for, its sketch known (see above):
     * the readings handed over for that minute before this row, and every part's sketch summed
     * with this one's. Unset for the fleet's rows. */
    int continues;
    uint32_t written;
    tc_qm_sketch whole;
    /* Where the buckets that count may be: [delay_lo, delay_end) of delay and [whole_lo,
     * whole_end) of whole, every other bucket 0; an end of 0 says nothing (the whole sketch).
     * A device's minute counts its delays in a bucket or two of a hundred: its encoder and its
     * quantiles read those instead of scanning the hundred four to six times (quality_sql.c). */
    uint8_t delay_lo, delay_end, whole_lo, whole_end;
} tc_qm_row;

typedef struct tc_qm_totals {
    uint64_t readings, late, out_of_order, gaps;
    uint64_t devices_refused, rows_refused;
    size_t devices, rows_held;
} tc_qm_totals;

typedef struct tc_qm tc_qm;

tc_qm *tc_qm_new(const tc_qm_options *o, char *errstr, size_t errstr_size);
void tc_qm_destroy(tc_qm *q);

/* The bucket of a delay in microseconds: tc_qm_sketch_bucket(delay_us / 1e3), the same for every
 * delay, found by comparisons with q's table of the buckets' first delays (the bucket a reading
 * counts its delay in). */
int tc_qm_delay_bucket(const tc_qm *q, int64_t delay_us);

/* One valid reading: device (len bytes), its event time, when it was ingested, the watermark
 * (latest event time seen before it, or the caller's), and which of the first `metrics` metrics it
 * carries (present NULL: all; values are not used beyond presence and may be NULL). */
void tc_qm_observe(tc_qm *q, const char *device, size_t len, int64_t event_us, int64_t ingest_us,
                   int64_t watermark_us, const double *values, const uint8_t *present, int metrics);

/* Readings looked up before any is counted in tc_qm_observe_batch. */
#define TC_QM_BATCH_GROUP 32

/* n readings of a columnar batch at once: reading k is device ids[k] (lens[k] bytes) with times
 * event_us[k], ingest_us[k] and watermark_us[k], carrying metric m where present[m][k] != 0
 * (present NULL: all). The same as n calls of tc_qm_observe, in order, but faster: devices are
 * looked up a group at a time and their rows prefetched, so the cache misses overlap. */
void tc_qm_observe_batch(tc_qm *q, size_t n, const char *const *ids, const size_t *lens,
                         const int64_t *event_us, const int64_t *ingest_us,
                         const int64_t *watermark_us, const uint8_t *const *present, int metrics);

/* The same with the devices given as indexes in the shared id table (options.ids), as
 * tc_qd_observe_batch's index_out has them: -1 is a refused reading; and presence read in place
 * from the caller's columns, present[m][rows[k]] for reading k (rows NULL: present[m][k]). */
void tc_qm_observe_batch_at(tc_qm *q, size_t n, const long *index, const int64_t *event_us,
                            const int64_t *ingest_us, const int64_t *watermark_us,
                            const uint8_t *const *present, const size_t *rows, int metrics);

typedef void (*tc_qm_row_fn)(void *opaque, const tc_qm_row *row);
/* Hand over and free every row of a minute before before_us (device rows, then the fleet's,
 * oldest minute first within each). */
void tc_qm_flush(tc_qm *q, int64_t before_us, tc_qm_row_fn fn, void *opaque);

void tc_qm_get_totals(const tc_qm *q, tc_qm_totals *t);

#endif
