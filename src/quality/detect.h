/*
 * detect.h -- streaming anomaly detectors per (device, metric) series, with bounded memory.
 *
 * A tc_qd holds one state per device (silence) and one per (device, metric) series (spikes,
 * drift, stuck values, implausible rate of change). Readings are fed in arrival order, one at a
 * time (tc_qd_observe) or a columnar batch at a time (tc_qd_observe_batch, the same result,
 * faster); silence is checked against a clock the caller advances (tc_qd_tick, the pipeline's
 * event-time watermark or the wall clock). Nothing allocates after tc_qd_new: devices
 * beyond max_devices are counted (tc_qd_stats.devices_refused) and not watched.
 *
 * Detectors (formulas and limits in docs/quality.md):
 *   spike    robust z = |x - median5| / (1.4826 * MAD), where median5 is the exact median of the
 *            series' last five values (a fixed window: nine branch-free minimums and maximums cost
 * a few nanoseconds, and two outliers in a row cannot move it) and MAD is a streaming estimate of
 * the median of |x - median5|: the "frugal" multiplicative quantile update mad *= exp(+-eta), which
 * needs one float instead of a window of residuals. A window of MADs would cost 4 bytes a reading
 * kept; the estimate converges in ~1/eta readings. A candidate (z >= spike_z) becomes a spike once
 * the series returns (z < spike_z_close) within spike_max_len readings; if it stays away it was a
 * level shift, left to drift. drift    two-sided CUSUM of (x - slow EWMA) / sigma with allowance
 * drift_k and threshold drift_h, sigma = 1.4826 * MAD; opens at h, resolves when both sums fall
 * back below h / 4. Covers level shifts (steps) and drifts (ramps) faster than the EWMA follows.
 *   stuck    the same value (bit-equal after the sensor's quantisation) for stuck_n readings, or
 *            for stuck_s seconds over at least 2 readings; stuck_n grows to 4 x the series' usual
 *            run of equal values (an EWMA), so a slow battery that repeats its value is not stuck.
 *   rate     |x - previous| / seconds between them > rate_max[metric] (0: off).
 *   silence  per device: now - last reading > silence_factor x the device's usual interval (EWMA
 *            of inter-arrival times, out-of-order readings excluded), and > silence_min_s.
 *
 * Findings. Each (series, kind) is a small state machine: closed -> open (emit, end_us = 0) ->
 * resolved (emit again with end_us) -> closed, with hysteresis between the open and resolve
 * conditions, so a condition gives one finding, never one per reading. A finding is opened once:
 * after a restart from a checkpoint the open ones stay open and are not emitted again.
 *
 * Memory (stated and checked by tests/unit/test_quality_detect.c): TC_QD_SERIES_BYTES per series
 * (two cache lines in two arrays: one holds everything a reading touches, the other what only
 * findings do, so a device's reading state is six contiguous lines) and TC_QD_DEVICE_BYTES per
 * device plus its id; 100,000 devices x 6 metrics take tc_qd_memory_for(100000, 6) = ~87 MB.
 *
 * Checkpoint (tc_qd_save / tc_qd_load): "TCQD", format version, the options' fingerprint, then
 * every device and its series, little-endian field by field, and an FNV-1a 64 checksum of all that
 * precedes it (version 2 and later: over 64-bit words; version 1, over bytes, still loads). A
 * series is, from version 3, a 32-bit mask of its fields that are not zero followed by those
 * fields: a series never fed (a device's latitude and longitude while location is not watched)
 * is 4 bytes instead of 124, and one without findings leaves most of its cold fields out -- a
 * device's record under half version 2's, which wrote every field (version 2 still loads).
 * tc_qd_load validates everything (lengths, counts against the caps, finite numbers, the
 * checksum, one encoding a state) before it replaces anything: a bad checkpoint is refused and the
 * detector keeps its state.
 * tc_qd_save_changed writes the same format a device at a time, only the devices changed since a
 * given cut (incremental checkpoints; see below), and tc_qd_merge reads such records back.
 *
 * Ownership: the tc_qd owns its state; findings passed to the emit callback live for the call only.
 * Not thread-safe: one tc_qd per pipeline thread.
 */
#ifndef TC_QUALITY_DETECT_H
#define TC_QUALITY_DETECT_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

/* Metrics per series set (the six built-in metrics and two promoted ones). */
#define TC_QD_METRICS_MAX 8
/* Longest device id watched (longer ones are refused, counted). */
#define TC_QD_DEVICE_ID_MAX 128
/* Most devices one detector can watch. */
#define TC_QD_DEVICES_MAX 10000000
/* Bytes of one series' state and one device's (without its id). */
#define TC_QD_SERIES_BYTES 128
#define TC_QD_DEVICE_BYTES 32
/* Checkpoint format version written (3: a series' zero fields left out; 2: a word-wise checksum);
 * versions 1 and 2 still load. */
#define TC_QD_CHECKPOINT_VERSION 3

typedef enum tc_qd_kind {
    TC_QD_SPIKE,
    TC_QD_DRIFT,
    TC_QD_STUCK,
    TC_QD_RATE,
    TC_QD_SILENCE,
    TC_QD_KIND__COUNT
} tc_qd_kind;

/* "spike", "drift", "stuck", "rate", "silence"; NULL past the last. */
const char *tc_qd_kind_name(tc_qd_kind kind);

typedef struct tc_qd_finding {
    const char *device; /* NUL-terminated, valid during the callback */
    int metric;         /* index into the caller's metrics; -1 for silence */
    tc_qd_kind kind;
    int64_t start_us; /* first reading (or expected reading) in the condition */
    int64_t end_us;   /* 0 while open; last time the condition held once resolved */
    double
        score; /* kind-specific strength: z, CUSUM sum / h, run length, rate / max, gap / usual */
    double observed; /* the value (rate, seconds of silence) that opened it, or the peak */
    double expected; /* what the series predicted: median, EWMA, usual interval */
} tc_qd_finding;

typedef void (*tc_qd_emit_fn)(void *opaque, const tc_qd_finding *f);

typedef struct tc_qd_options {
    int metrics;                          /* series per device, 1..TC_QD_METRICS_MAX */
    size_t max_devices;                   /* 1..TC_QD_DEVICES_MAX */
    double spike_z;                       /* robust z that opens a spike candidate (default 7) */
    double spike_z_close;                 /* z below which the series is back (default 3.5) */
    int spike_max_len;                    /* readings a spike may last (default 3) */
    double mad_eta;                       /* frugal MAD step (default 0.05) */
    double drift_alpha;                   /* baseline smoothing weight (default 0.01) */
    double drift_k;                       /* CUSUM allowance in sigmas (default 2.5) */
    double drift_h;                       /* CUSUM threshold in sigmas (default 40) */
    int stuck_n;                          /* default 12 */
    double stuck_s;                       /* default 0: off */
    double silence_factor;                /* default 4 */
    double silence_min_s;                 /* default 1 */
    int warmup;                           /* readings before spikes may fire (default 40) */
    double resolution[TC_QD_METRICS_MAX]; /* sensor quantum: floor of MAD (default 0.01) */
    double rate_max[TC_QD_METRICS_MAX];   /* implausible change per second; 0 = off */
    /* Series fed readings: bit m for metric m (default: all `metrics`). A series left out keeps
     * its place in the state and the checkpoint, unchanged, so that a detector watching more or
     * fewer series loads the same checkpoints (tc_qd_resolve_unwatched closes what it can no
     * longer see). Silence is per device and always watched. */
    uint32_t watch;
} tc_qd_options;

/* The defaults above for `metrics` series per device. */
void tc_qd_options_default(tc_qd_options *o, int metrics, size_t max_devices);

typedef struct tc_qd_stats {
    size_t devices;
    uint64_t devices_refused; /* readings of devices beyond max_devices or with too long ids */
    uint64_t opened[TC_QD_KIND__COUNT];
    uint64_t resolved[TC_QD_KIND__COUNT];
    uint64_t open_now;
} tc_qd_stats;

typedef struct tc_qd tc_qd;

/* NULL with errstr set on invalid options or out of memory. emit may be NULL. */
tc_qd *tc_qd_new(const tc_qd_options *o, tc_qd_emit_fn emit, void *opaque, char *errstr,
                 size_t errstr_size);
void tc_qd_destroy(tc_qd *d);

/* One reading of device (len bytes) at event time t_us: values[m] counts where present[m] != 0
 * (present may be NULL: all present). Non-finite values are ignored. */
void tc_qd_observe(tc_qd *d, const char *device, size_t len, int64_t t_us, const double *values,
                   const uint8_t *present);
/* Readings to look up before any is used in tc_qd_observe_batch. */
#define TC_QD_BATCH_GROUP 32

/* n readings of a columnar batch at once: reading k is device ids[k] (lens[k] bytes) at t_us[k],
 * metric m's value values[m][r], counted where present[m][r] != 0 (present NULL: all), r being
 * rows[k] (rows NULL: k) -- the caller's columns are read in place, a selection of their rows
 * named by rows, without copying the values out. The same
 * as n calls of tc_qd_observe, in order, but faster: it looks a group of devices up first and
 * prefetches their state, so the cache misses of different devices overlap. index_out (n
 * entries, or NULL) receives each reading's device index in tc_qd_ids, -1 for one refused: the
 * quality metrics sharing the table take them instead of looking the devices up again. */
void tc_qd_observe_batch(tc_qd *d, size_t n, const char *const *ids, const size_t *lens,
                         const int64_t *t_us, const double *const *values,
                         const uint8_t *const *present, const size_t *rows, long *index_out);
/* The detector's device id table (owned by it), to share with tc_qm_options.ids. */
struct tc_qids *tc_qd_ids(tc_qd *d);
/* Open silence findings for devices quiet past their usual interval at now_us. Cost: one pass
 * over the devices; call it every few seconds, not per reading. */
void tc_qd_tick(tc_qd *d, int64_t now_us);

void tc_qd_get_stats(const tc_qd *d, tc_qd_stats *st);
/* Bytes the detector holds now, and what devices x metrics would take (ids of 16 bytes). */
size_t tc_qd_memory(const tc_qd *d);
size_t tc_qd_memory_for(size_t devices, int metrics);

/* Serialise the state into a new buffer (*out, *len; the caller frees it). */
tc_err tc_qd_save(const tc_qd *d, unsigned char **out, size_t *len, char *errstr,
                  size_t errstr_size);
/* The same into a buffer of the caller's: *buf (*cap bytes; NULL, 0: none) when it is large
 * enough (tc_qd_save_size), else a new one of that size in its place (the old one freed); *len
 * receives the checkpoint's length. A flush that keeps its buffer writes each checkpoint over
 * pages already faulted in (a whole checkpoint is ~400 bytes a device: 40 MB for 100,000). On
 * error *buf stays the caller's. */
tc_err tc_qd_save_reuse(const tc_qd *d, unsigned char **buf, size_t *cap, size_t *len, char *errstr,
                        size_t errstr_size);
/* The checksum a checkpoint of format `version` (1, or 2 and later) ends with, over its n bytes
 * before it (the fuzz target makes checkpoints that pass it). */
uint64_t tc_qd_checksum(const unsigned char *p, size_t n, uint64_t version);
/* The most bytes tc_qd_save would write now (every field of every series; fewer are written). */
size_t tc_qd_save_size(const tc_qd *d);
/* Replace the state with a checkpoint's. On error (errstr says what and at which byte) the
 * detector is unchanged. The checkpoint must come from a detector with the same options'
 * metrics count (the watched ones may differ). */
tc_err tc_qd_load(tc_qd *d, const unsigned char *buf, size_t len, char *errstr, size_t errstr_size);
/* Resolve every open finding of a series the options do not watch (a checkpoint's from a detector
 * that watched it): no reading will ever close it. Emitted as resolved at the series' last
 * reading, the devices stamped as changed (their next checkpoint records it). Returns how many. */
size_t tc_qd_resolve_unwatched(tc_qd *d);

/*
 * Incremental checkpoints. Every device carries the generation it last changed in (a reading
 * taken, a silence opened); tc_qd_save_changed cuts the current generation and hands over, one by
 * one, the devices changed after `since` -- each as a checkpoint of its own (the format above
 * with one device), so a store keeps one record per device and rewrites only those that moved.
 * The caller passes the cut of the last checkpoint it made durable as the next `since` (0: every
 * device), so a checkpoint that failed to be written is covered by the next one. fn returns
 * nonzero to stop (out of memory). A flush of a fleet that all reports writes every device, as
 * tc_qd_save does; a large fleet of sparse reporters writes only the few that reported.
 */
typedef int (*tc_qd_record_fn)(void *opaque, const char *device, size_t len,
                               const unsigned char *record, size_t record_len);
tc_err tc_qd_save_changed(tc_qd *d, uint32_t since, tc_qd_record_fn fn, void *opaque, uint32_t *cut,
                          char *errstr, size_t errstr_size);
/* Devices changed after generation since (what tc_qd_save_changed would write), and devices. */
size_t tc_qd_changed(const tc_qd *d, uint32_t since);
size_t tc_qd_devices(const tc_qd *d);
/* Cut the generation without writing (before a whole tc_qd_save that replaces every record). */
uint32_t tc_qd_cut(tc_qd *d);
/* Add the devices of checkpoints bufs[0..n) (tc_qd_save_changed's records, or whole checkpoints)
 * to the state, replacing those it holds; they count as unchanged (generation 0). A device in two
 * of them, a bad record (errstr: "record N: ...", 1-based) or more devices than max_devices
 * refuse all of them, with the detector unchanged (only running out of memory while merging into
 * a detector that holds devices already can leave part merged). Devices tc_qd_load brings in
 * count as unchanged too. */
tc_err tc_qd_merge(tc_qd *d, const unsigned char *const *bufs, const size_t *lens, size_t n,
                   char *errstr, size_t errstr_size);

/* Median of five (exposed for tests). */
float tc_qd_median5(const float v[5]);

#endif
