/*
 * sim_anomaly.h -- labelled anomalies for the simulator: what `simulate --anomalies SPEC` injects
 * and the ground truth `--truth FILE` records.
 *
 * SPEC is a comma-separated list of KIND=SHARE, SHARE being the share (0..1) of each device's
 * readings the kind affects, e.g. "spike=0.01,drift=0.005,stuck=0.005,silent=0.002,late=0.01".
 * Kinds:
 *   spike   one reading of temperature, humidity or pressure off by 10..30 noise half-widths;
 *   drift   a linear ramp to 15..30 half-widths over 60..180 readings, then back (recalibrated);
 *   stuck   the value of the episode's first reading repeated for 20..60 readings;
 *   silent  no readings at all for 12..48 readings' time;
 *   late    6..24 readings held back and sent 12..36 cadences after the episode's last one;
 *   ooo     4..16 readings sent pairwise swapped (out of order).
 * Episodes (all but spike) are placed per device and epoch of TC_SIM_EPOCH readings, at most one
 * per epoch, inside its middle so that detectors see normal readings on both sides; spikes fall
 * outside episodes. A device's first epoch is clean: a fleet has a history before its faults, and
 * detectors (and people) need a baseline to call anything abnormal. Everything is a pure function
 * of (seed, device, step), like the values, so the bench recomputes the truth without the file.
 *
 * Truth lines (JSON): {"device":"sensor-00042","metric":"temperature","kind":"drift",
 * "start":"<RFC 3339>","end":"<RFC 3339>","start_us":...,"end_us":...}; metric is null for silent,
 * late and ooo; start and end are the event times of the first and last reading affected
 * (missing, for silent).
 */
#ifndef TC_INGEST_SIM_ANOMALY_H
#define TC_INGEST_SIM_ANOMALY_H

#include <stdint.h>
#include <stdio.h>

#include "core/error.h"

/* Readings per device in one epoch: at most one episode each. */
#define TC_SIM_EPOCH 360
/* Readings held back at once (late, out of order) by the delivery stream; past it they go out
 * on time rather than being dropped. */
#define TC_SIM_HELD_MAX (1u << 22)

typedef enum tc_sim_akind {
    TC_SIM_A_SPIKE,
    TC_SIM_A_DRIFT,
    TC_SIM_A_STUCK,
    TC_SIM_A_SILENT,
    TC_SIM_A_LATE,
    TC_SIM_A_OOO,
    TC_SIM_A__COUNT
} tc_sim_akind;

typedef struct tc_sim_anomalies {
    double share[TC_SIM_A__COUNT];
} tc_sim_anomalies;

/* "spike", "drift", "stuck", "silent", "late", "ooo"; NULL past the last. */
const char *tc_sim_anomaly_name(int kind);

/* Parse SPEC into a (zeroed first). Errors name the offending item. */
tc_err tc_sim_anomalies_parse(const char *spec, tc_sim_anomalies *a, char *errstr,
                              size_t errstr_size);

/* One injected anomaly. metric: 0 temperature, 1 humidity, 2 pressure; -1 for a device-level
 * kind. Steps are the device's reading numbers. */
typedef struct tc_sim_episode {
    tc_sim_akind kind;
    int metric;
    int64_t first, last; /* steps, inclusive */
    double magnitude;    /* spike: offset; drift: offset at the last step (metric's units) */
    int64_t delay;       /* late: steps after `last` the held readings are sent */
} tc_sim_episode;

/* The episode of device dev's epoch (step / TC_SIM_EPOCH); 0 when none. steps is the fleet's
 * number of steps (episodes end before it). */
int tc_sim_episode_of(const tc_sim_anomalies *a, uint64_t seed, uint64_t dev, int64_t epoch,
                      int64_t steps, tc_sim_episode *ep);
/* A spike at (dev, step), outside episodes; 0 when none. */
int tc_sim_spike_at(const tc_sim_anomalies *a, uint64_t seed, uint64_t dev, int64_t step,
                    int64_t steps, tc_sim_episode *ep);

/* Apply the anomalies of (dev, step) to the three smooth metrics v[0..2] (temperature, humidity,
 * pressure); base(step, v) recomputes them for another step (stuck repeats its first value). */
typedef void (*tc_sim_base_fn)(const void *ctx, int64_t step, double v[3]);
void tc_sim_anomaly_apply(const tc_sim_anomalies *a, uint64_t seed, uint64_t dev, int64_t step,
                          int64_t steps, tc_sim_base_fn base, const void *ctx, double v[3]);

/* Truth that starts at (dev, step): up to two records (an episode and a spike). */
int tc_sim_truth_at(const tc_sim_anomalies *a, uint64_t seed, uint64_t dev, int64_t step,
                    int64_t steps, tc_sim_episode out[2]);
/* Write one truth line; time_of(step) gives the event time of the device's step. */
void tc_sim_truth_write(FILE *f, const char *device, const tc_sim_episode *ep, int64_t first_us,
                        int64_t last_us);

/* The delivery order of readings 0..count-1 (device = i % devices, step = i / devices): silent
 * readings are skipped, late ones come after their episode's delay, out-of-order ones after the
 * reading that follows them. */
typedef struct tc_sim_stream tc_sim_stream;
tc_sim_stream *tc_sim_stream_new(const tc_sim_anomalies *a, uint64_t seed, int devices,
                                 uint64_t count);
void tc_sim_stream_destroy(tc_sim_stream *s);
/* The next reading to send in *i; 0 when all are sent. */
int tc_sim_stream_next(tc_sim_stream *s, uint64_t *i);

#endif
