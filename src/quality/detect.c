/*
 * detect.c -- the streaming anomaly detectors; see detect.h for the model.
 *
 * Layout. Devices live in chunks of TC_QD_CHUNK (device structs, then their series), allocated
 * when the first device of a chunk appears, so a detector sized for a million devices costs what
 * its devices use; their ids are interned by a tc_qids (ids.h), whose index is the chunk slot.
 * Series state is kept in float: the values are sensor readings with a few significant digits, and
 * halving the state is what keeps 100,000 devices x 6 metrics in tens of megabytes.
 */
#include "quality/detect.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quality/ids.h"

/* Readings ahead of the one being observed whose state is being fetched: a device's state is
 * seven cache lines, and a whole group's (TC_QD_BATCH_GROUP readings, over 200 lines) asked for
 * at once is more than a core keeps in flight; a few readings ahead keeps a steady number coming.
 */
#define TC_QD_PREFETCH_AHEAD 8
/* Devices per allocation chunk. A chunk's state is zeroed when it is allocated, so its size is
 * memory a detector touches before it has the devices: the pipeline has one detector a partition,
 * and at 4096 a fleet of 10,000 devices over six partitions touched 18 MB for 4.5 MB of state. */
#define TC_QD_CHUNK 1024
/* Weight of a new inter-arrival time in the device's usual interval. */
#define TC_QD_INTERVAL_ALPHA 0.1
/* An inter-arrival time counts at most this many usual intervals (a gap must not teach "usual"). */
#define TC_QD_INTERVAL_CLIP 2.0
/* Readings before drift may fire, in units of 1 / drift_alpha: the baseline's slope settles. */
#define TC_QD_DRIFT_WARMUP 2.0
/* Weight of a finished run's length in the usual run of equal values; runs counted before stuck
 * may fire (a sensor stuck from its first reading is not seen: docs/quality.md). */
#define TC_QD_RUN_ALPHA   0.05
#define TC_QD_RUNS_WARMUP 3
/* The usual run times this is the stuck threshold when larger than stuck_n. */
#define TC_QD_RUN_FACTOR 4.0f
/* A rate finding resolves below this share of rate_max. */
#define TC_QD_RATE_CLOSE 0.5
/* The MAD's step while a series warms up: from the sensor's quantum to a noise 50 times larger in
 * 16 readings, then mad_eta's finer steps. */
#define TC_QD_MAD_ETA_EARLY 0.25
/* Checkpoint header and trailer bytes. */
#define TC_QD_HEADER_BYTES  28
#define TC_QD_TRAILER_BYTES 8

/* One (device, metric) series: two cache lines in two arrays, this one holding everything a
 * reading touches (the chunk arrays are 64-byte aligned) and tc_qd_cold what only findings and
 * spike candidates do. Apart, a device's six hot lines are contiguous and fetched alone: side by
 * side, each hot line came with its cold neighbour (the core fetches lines in 128-byte pairs),
 * twice the memory traffic a reading needs, and 7.7 MB of state for 10,000 devices where 3.8 MB is
 * hot. Bits of `open`: one per tc_qd_kind except silence. */
typedef struct tc_qd_series {
    int64_t last_t;           /* time of the previous value (the newest in win) */
    float win[5];             /* last five values, a ring; win[win_pos - 1] is the previous */
    float mad;                /* streaming median of |x - median5| */
    float ewma, ewma2;        /* drift baseline: EWMA of x and EWMA of that */
    float cusum_hi, cusum_lo; /* in sigmas */
    float avg_run;            /* usual run of equal values */
    uint32_t run_ms;          /* how long the current run of equal values has lasted */
    uint16_t n;               /* readings seen (saturates) */
    uint16_t run_len;
    uint8_t win_pos, pend_n, open, runs;
} tc_qd_series;

typedef struct tc_qd_cold {
    int64_t start[4];                 /* start of each open finding (spike: of the candidate) */
    float peak[4];                    /* strongest score of each open finding */
    float pend_obs, pend_exp, pend_z; /* spike candidate */
    uint32_t pad;
} tc_qd_cold;

_Static_assert(sizeof(tc_qd_series) == 64, "a reading's state is one cache line");
_Static_assert(sizeof(tc_qd_cold) == 64, "a series' findings are one cache line");

typedef struct tc_qd_device {
    int64_t last_t;
    int64_t silence_start;
    float interval_s; /* usual interval between readings */
    uint32_t n;
    uint32_t gen;   /* the generation it last changed in (tc_qd_save_changed) */
    uint8_t silent; /* a silence finding is open */
} tc_qd_device;

_Static_assert(sizeof(tc_qd_series) + sizeof(tc_qd_cold) <= TC_QD_SERIES_BYTES,
               "series state over its stated bound");
_Static_assert(sizeof(tc_qd_device) <= TC_QD_DEVICE_BYTES, "device state over its stated bound");

struct tc_qd {
    tc_qd_options o;
    tc_qd_emit_fn emit;
    void *opaque;
    float mad_step[2][2]; /* [warming up][up]: the MAD's factor */
    /* The drift's options in float, and its steady slope factor alpha / (1 - alpha). */
    float drift_alpha, drift_slope, drift_k, drift_h;
    /* The options a series' reading compares with, converted once (tc_qd_new) instead of at
     * every reading and series; each is the value the comparison it replaces computed, so the
     * verdicts are the same bit for bit:
     *   drift_early_n  the least n with (float)n * drift_alpha >= 1 (below it the weight is 1/n);
     *   drift_warm_n   the least n with n * o.drift_alpha >= TC_QD_DRIFT_WARMUP (65536: never);
     *   run_weight[r]  max(TC_QD_RUN_ALPHA, 1 / (r - 1)), the weight of a finished run in the
     *                  usual run once r runs are counted (a division a reading on noisy data). */
    float spike_z, spike_z_close, stuck_n, res[TC_QD_METRICS_MAX];
    uint32_t warmup, drift_early_n, drift_warm_n;
    float run_weight[UINT8_MAX + 1];
    size_t ndevices, nchunks;
    uint32_t gen; /* the current generation: a device changed now is stamped with it */
    tc_qd_device **dev_chunks;
    tc_qd_series **ser_chunks;
    tc_qd_cold **cold_chunks; /* indexed as ser_chunks */
    tc_qids *ids;
    tc_qd_stats st;
};

static const char *const tc_qd_kind_names[TC_QD_KIND__COUNT] = {"spike", "drift", "stuck", "rate",
                                                                "silence"};

const char *tc_qd_kind_name(tc_qd_kind kind)
{
    return (unsigned)kind < TC_QD_KIND__COUNT ? tc_qd_kind_names[kind] : NULL;
}

void tc_qd_options_default(tc_qd_options *o, int metrics, size_t max_devices)
{
    memset(o, 0, sizeof(*o));
    o->metrics = metrics;
    o->max_devices = max_devices;
    o->spike_z = 7.0;
    o->spike_z_close = 3.5;
    o->spike_max_len = 3;
    o->mad_eta = 0.05;
    o->drift_alpha = 0.01;
    o->drift_k = 2.5;
    o->drift_h = 40.0;
    o->stuck_n = 10;
    o->silence_factor = 4.0;
    o->silence_min_s = 1.0;
    o->warmup = 40;
    for (int m = 0; m < TC_QD_METRICS_MAX; m++)
        o->resolution[m] = 0.01;
    o->watch = metrics >= 1 && metrics <= TC_QD_METRICS_MAX ? (1u << metrics) - 1 : 0;
}

static int tc_qd_positive(double v)
{
    return isfinite(v) && v > 0;
}

static tc_err tc_qd_check(const tc_qd_options *o, char *errstr, size_t errstr_size)
{
    if (o->metrics < 1 || o->metrics > TC_QD_METRICS_MAX)
        return tc_err_set(TC_ERR_INVALID, errstr, errstr_size, "metrics must be 1..%d, got %d",
                          TC_QD_METRICS_MAX, o->metrics);
    if (o->max_devices < 1 || o->max_devices > TC_QD_DEVICES_MAX)
        return tc_err_set(TC_ERR_INVALID, errstr, errstr_size, "max_devices must be 1..%d",
                          TC_QD_DEVICES_MAX);
    if (!tc_qd_positive(o->spike_z) || !tc_qd_positive(o->spike_z_close) ||
        o->spike_z_close >= o->spike_z || o->spike_max_len < 1 || o->spike_max_len > 100)
        return tc_err_set(TC_ERR_INVALID, errstr, errstr_size,
                          "spike: need 0 < spike_z_close < spike_z and spike_max_len 1..100");
    if (!tc_qd_positive(o->mad_eta) || o->mad_eta >= 1 || !tc_qd_positive(o->drift_alpha) ||
        o->drift_alpha >= 1 || !(o->drift_k >= 0) || !tc_qd_positive(o->drift_h))
        return tc_err_set(TC_ERR_INVALID, errstr, errstr_size,
                          "mad_eta and drift_alpha must be in (0, 1), drift_k >= 0, drift_h > 0");
    if (o->stuck_n < 2 || o->stuck_n > 65535 || !(o->stuck_s >= 0) || o->stuck_s > 4e6 ||
        !(o->silence_factor > 1) || !(o->silence_min_s >= 0) || o->warmup < 5 ||
        o->warmup > 10000 || o->drift_alpha < 1e-3)
        return tc_err_set(TC_ERR_INVALID, errstr, errstr_size,
                          "need stuck_n 2..65535, stuck_s 0..4e6, silence_factor > 1, "
                          "silence_min_s >= 0, warmup 5..10000, drift_alpha >= 0.001");
    if (o->watch >> o->metrics)
        return tc_err_set(TC_ERR_INVALID, errstr, errstr_size,
                          "watch 0x%x names a series past the %d metrics", (unsigned)o->watch,
                          o->metrics);
    for (int m = 0; m < o->metrics; m++)
        if (!tc_qd_positive(o->resolution[m]) || !(o->rate_max[m] >= 0))
            return tc_err_set(TC_ERR_INVALID, errstr, errstr_size,
                              "metric %d: resolution must be > 0 and rate_max >= 0", m);
    return TC_OK;
}

/* max for finite floats: fmaxf's NaN rules keep GCC from inlining it (a call a reading and
 * series, through the PLT), and the detectors never hold a NaN. */
static float tc_qd_maxf(float a, float b)
{
    return a > b ? a : b;
}

static float tc_qd_minf(float a, float b)
{
    return a < b ? a : b;
}

/* The per-reading comparisons' thresholds (struct tc_qd): each found by the test it replaces,
 * over the whole range of the counter it is compared with (n saturates at UINT16_MAX). */
static void tc_qd_thresholds(tc_qd *d)
{
    uint32_t n;

    d->spike_z = (float)d->o.spike_z;
    d->spike_z_close = (float)d->o.spike_z_close;
    d->stuck_n = (float)d->o.stuck_n;
    d->warmup = (uint32_t)d->o.warmup;
    for (int m = 0; m < TC_QD_METRICS_MAX; m++)
        d->res[m] = (float)d->o.resolution[m];
    for (n = 1; n <= UINT16_MAX && (float)n * d->drift_alpha < 1.0f; n++)
        ;
    d->drift_early_n = n;
    for (n = 0; n <= UINT16_MAX && !((double)n * d->o.drift_alpha >= TC_QD_DRIFT_WARMUP); n++)
        ;
    d->drift_warm_n = n;
    for (int r = 0; r <= UINT8_MAX; r++)
        d->run_weight[r] = r > 2 ? tc_qd_maxf((float)TC_QD_RUN_ALPHA, 1.0f / (float)(r - 1)) : 0.0f;
}

tc_qd *tc_qd_new(const tc_qd_options *o, tc_qd_emit_fn emit, void *opaque, char *errstr,
                 size_t errstr_size)
{
    tc_qd *d;

    if (tc_qd_check(o, errstr, errstr_size) != TC_OK)
        return NULL;
    d = calloc(1, sizeof(*d));
    if (d) {
        d->o = *o;
        d->emit = emit;
        d->opaque = opaque;
        d->mad_step[0][1] = (float)exp(o->mad_eta);
        d->mad_step[0][0] = (float)exp(-o->mad_eta);
        d->mad_step[1][1] = (float)exp(TC_QD_MAD_ETA_EARLY);
        d->mad_step[1][0] = (float)exp(-TC_QD_MAD_ETA_EARLY);
        d->drift_alpha = (float)o->drift_alpha;
        d->drift_slope = d->drift_alpha / (1.0f - d->drift_alpha);
        d->drift_k = (float)o->drift_k;
        d->drift_h = (float)o->drift_h;
        tc_qd_thresholds(d);
        d->gen = 1;
        d->nchunks = (o->max_devices + TC_QD_CHUNK - 1) / TC_QD_CHUNK;
        d->dev_chunks = calloc(d->nchunks, sizeof(*d->dev_chunks));
        d->ser_chunks = calloc(d->nchunks, sizeof(*d->ser_chunks));
        d->cold_chunks = calloc(d->nchunks, sizeof(*d->cold_chunks));
        d->ids = tc_qids_new(o->max_devices);
    }
    if (!d || !d->dev_chunks || !d->ser_chunks || !d->cold_chunks || !d->ids) {
        tc_qd_destroy(d);
        tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory for %zu devices",
                   o->max_devices);
        return NULL;
    }
    return d;
}

void tc_qd_destroy(tc_qd *d)
{
    if (!d)
        return;
    for (size_t c = 0; d->dev_chunks && c < d->nchunks; c++) {
        free(d->dev_chunks[c]);
        free(d->ser_chunks[c]);
        if (d->cold_chunks)
            free(d->cold_chunks[c]);
    }
    free(d->dev_chunks);
    free(d->ser_chunks);
    free(d->cold_chunks);
    tc_qids_destroy(d->ids);
    free(d);
}

static tc_qd_device *tc_qd_dev(const tc_qd *d, size_t i)
{
    return &d->dev_chunks[i / TC_QD_CHUNK][i % TC_QD_CHUNK];
}

static tc_qd_series *tc_qd_ser(const tc_qd *d, size_t i)
{
    return &d->ser_chunks[i / TC_QD_CHUNK][(i % TC_QD_CHUNK) * (size_t)d->o.metrics];
}

static tc_qd_cold *tc_qd_cold_of(const tc_qd *d, size_t i)
{
    return &d->cold_chunks[i / TC_QD_CHUNK][(i % TC_QD_CHUNK) * (size_t)d->o.metrics];
}

/* Index of device id (len bytes), added when new; -1 when full, too long or out of memory. */
static long tc_qd_find(tc_qd *d, const char *id, size_t len, int add)
{
    long i = tc_qids_find(d->ids, id, len, 0);
    size_t c = d->ndevices / TC_QD_CHUNK;

    if (i >= 0 || !add || d->ndevices >= d->o.max_devices)
        return i;
    /* The state's chunk first: an id the table knows always has its state. */
    if (!d->dev_chunks[c])
        d->dev_chunks[c] = calloc(TC_QD_CHUNK, sizeof(tc_qd_device));
    if (!d->ser_chunks[c]) {
        /* Line-aligned, so each series' reading state is exactly one cache line. */
        size_t bytes = (size_t)TC_QD_CHUNK * (size_t)d->o.metrics * sizeof(tc_qd_series);
        d->ser_chunks[c] = aligned_alloc(64, bytes);
        if (d->ser_chunks[c])
            memset(d->ser_chunks[c], 0, bytes);
    }
    if (!d->cold_chunks[c]) {
        size_t bytes = (size_t)TC_QD_CHUNK * (size_t)d->o.metrics * sizeof(tc_qd_cold);
        d->cold_chunks[c] = aligned_alloc(64, bytes);
        if (d->cold_chunks[c])
            memset(d->cold_chunks[c], 0, bytes);
    }
    if (!d->dev_chunks[c] || !d->ser_chunks[c] || !d->cold_chunks[c])
        return -1; /* retried with the next new device; freed at destroy */
    i = tc_qids_find(d->ids, id, len, 1);
    if (i < 0)
        return -1;
    memset(tc_qd_dev(d, (size_t)i), 0, sizeof(tc_qd_device));
    memset(tc_qd_ser(d, (size_t)i), 0, sizeof(tc_qd_series) * (size_t)d->o.metrics);
    memset(tc_qd_cold_of(d, (size_t)i), 0, sizeof(tc_qd_cold) * (size_t)d->o.metrics);
    d->ndevices++;
    return i;
}

/* Inlined into a series' reading (the exported one is a call a reading and series). */
static inline float tc_qd_median5_in(const float v[5])
{
    /* Of the four values a, b, c, d: lo = max(min(a, b), min(c, d)) is above the smallest of them
     * and hi = min(max(a, b), max(c, d)) below the largest, and the median of five is the median
     * of e, lo and hi. Nine minimums and maximums, which compile to minss / maxss: the
     * compare-and-swap network this replaced branched on noisy data, and its mispredictions were
     * the largest cost of a reading. (Checked against a sort over every 5-tuple of 0..4, ties
     * included, in tests/unit/test_quality_detect.c.) */
    float lo = tc_qd_maxf(tc_qd_minf(v[0], v[1]), tc_qd_minf(v[2], v[3]));
    float hi = tc_qd_minf(tc_qd_maxf(v[0], v[1]), tc_qd_maxf(v[2], v[3]));

    return tc_qd_maxf(tc_qd_minf(v[4], lo), tc_qd_minf(tc_qd_maxf(v[4], lo), hi));
}

float tc_qd_median5(const float v[5])
{
    return tc_qd_median5_in(v);
}

static void tc_qd_report(tc_qd *d, size_t di, int metric, tc_qd_kind kind, int64_t start,
                         int64_t end, double score, double observed, double expected)
{
    tc_qd_finding f = {tc_qids_id(d->ids, di), metric, kind, start, end, score, observed, expected};

    if (end) {
        d->st.resolved[kind]++;
        d->st.open_now--;
    } else {
        d->st.opened[kind]++;
        d->st.open_now++;
    }
    if (d->emit)
        d->emit(d->opaque, &f);
}

/* Open finding kind of series s (once), or raise its peak. */
static void tc_qd_open(tc_qd *d, size_t di, int m, tc_qd_series *s, tc_qd_cold *c, tc_qd_kind kind,
                       int64_t start, double score, double observed, double expected)
{
    if (s->open & (1u << kind)) {
        if (score > c->peak[kind])
            c->peak[kind] = (float)score;
        return;
    }
    s->open |= (uint8_t)(1u << kind);
    c->start[kind] = start;
    c->peak[kind] = (float)score;
    tc_qd_report(d, di, m, kind, start, 0, score, observed, expected);
}

static void tc_qd_resolve(tc_qd *d, size_t di, int m, tc_qd_series *s, tc_qd_cold *c,
                          tc_qd_kind kind, int64_t end, double observed, double expected)
{
    if (!(s->open & (1u << kind)))
        return;
    s->open &= (uint8_t) ~(1u << kind);
    /* end_us 0 means open: a condition that held at one instant ends where it started. */
    end = end > c->start[kind] ? end : c->start[kind];
    tc_qd_report(d, di, m, kind, c->start[kind], end ? end : 1, c->peak[kind], observed, expected);
}

/* The previous value: the newest in the window (win_pos is below 5: a checkpoint's is checked).
 * A select, not a division by 5: read once a reading and series. */
static float tc_qd_last(const tc_qd_series *s)
{
    return s->win[s->win_pos ? s->win_pos - 1 : 4];
}

static void tc_qd_first(tc_qd_series *s, float x, int64_t t, double res)
{
    for (int k = 0; k < 5; k++)
        s->win[k] = x;
    s->ewma = s->ewma2 = x;
    s->mad = (float)res;
    s->last_t = t;
    s->run_len = 1;
    s->avg_run = 1.0f;
    s->n = 1;
}

static void tc_qd_stuck(tc_qd *d, size_t di, int m, tc_qd_series *s, tc_qd_cold *c, float x,
                        int64_t t, float last)
{
    float limit;

    if (x == last) {
        int64_t ms = (t - s->last_t) / 1000;
        if (s->run_len < UINT16_MAX)
            s->run_len++;
        if (ms > 0 && (uint64_t)ms < UINT32_MAX - s->run_ms)
            s->run_ms += (uint32_t)ms;
    } else {
        if (s->open & (1u << TC_QD_STUCK)) {
            tc_qd_resolve(d, di, m, s, c, TC_QD_STUCK, s->last_t, x, last);
        } else {
            /* Only runs that were not stuck teach the usual run: a running mean over the first
             * 1 / TC_QD_RUN_ALPHA runs, an EWMA after. The first run began before we saw it. */
            if (s->runs < UINT8_MAX)
                s->runs++;
            if (s->runs == 2)
                s->avg_run = (float)s->run_len;
            else if (s->runs > 2)
                s->avg_run += d->run_weight[s->runs] * ((float)s->run_len - s->avg_run);
        }
        s->run_len = 1;
        s->run_ms = 0;
        return;
    }
    if (s->runs < TC_QD_RUNS_WARMUP)
        return;
    limit = TC_QD_RUN_FACTOR * s->avg_run;
    if (limit < d->stuck_n)
        limit = d->stuck_n;
    /* The run's start from its length in milliseconds (readings carry milliseconds). */
    if ((float)s->run_len >= limit || (d->o.stuck_s > 0 && s->run_ms >= d->o.stuck_s * 1e3))
        tc_qd_open(d, di, m, s, c, TC_QD_STUCK, t - (int64_t)s->run_ms * 1000, s->run_len, x,
                   s->ewma);
}

static void tc_qd_rate(tc_qd *d, size_t di, int m, tc_qd_series *s, tc_qd_cold *c, float x,
                       int64_t t, float last)
{
    double max = d->o.rate_max[m], rate;

    if (max <= 0 || t <= s->last_t)
        return;
    rate = fabs((double)x - (double)last) / ((double)(t - s->last_t) / 1e6);
    if (rate > max)
        tc_qd_open(d, di, m, s, c, TC_QD_RATE, t, rate / max, rate, max);
    else if (rate < TC_QD_RATE_CLOSE * max)
        tc_qd_resolve(d, di, m, s, c, TC_QD_RATE, s->last_t, rate, max);
}

/* Spike candidate logic; returns 1 while x belongs to a candidate (kept out of the baselines). */
static int tc_qd_spike(tc_qd *d, size_t di, int m, tc_qd_series *s, tc_qd_cold *c, float x,
                       int64_t t, float med, float inv_scale)
{
    float z;

    if (s->pend_n) {
        z = fabsf(x - c->pend_exp) * inv_scale;
        if (z < d->spike_z_close) {
            /* Back to where it was: the candidate was a spike. */
            tc_qd_open(d, di, m, s, c, TC_QD_SPIKE, c->start[TC_QD_SPIKE], c->pend_z, c->pend_obs,
                       c->pend_exp);
            tc_qd_resolve(d, di, m, s, c, TC_QD_SPIKE, s->last_t, c->pend_obs, c->pend_exp);
            s->pend_n = 0;
            return 0;
        }
        if (++s->pend_n > d->o.spike_max_len) {
            s->pend_n = 0; /* it stayed away: a level shift, drift's business */
            return 0;
        }
        if (z > c->pend_z) {
            c->pend_z = z;
            c->pend_obs = x;
        }
        return 1;
    }
    z = fabsf(x - med) * inv_scale;
    if (z >= d->spike_z && s->n >= d->warmup && s->run_len < 3) {
        s->pend_n = 1;
        c->pend_z = z;
        c->pend_obs = x;
        c->pend_exp = med;
        c->start[TC_QD_SPIKE] = t;
        return 1;
    }
    return 0;
}

/* Brown's double exponential smoothing: e1 = EWMA(x), e2 = EWMA(e1); the level is 2 e1 - e2 and
 * the slope alpha / (1 - alpha) (e1 - e2), so a steady slope (a draining battery, the daily cycle)
 * is predicted without lag and only a change of level or slope leaves a residual. Early on the
 * weight is 1/n (a running mean) until it falls to drift_alpha, so the baseline starts right. */
static void tc_qd_drift(tc_qd *d, size_t di, int m, tc_qd_series *s, tc_qd_cold *c, float x,
                        int64_t t, float inv_sigma)
{
    float alpha = d->drift_alpha, slope = d->drift_slope, k = d->drift_k, h = d->drift_h;
    float pred, e;
    int was_zero = s->cusum_hi <= 0 && s->cusum_lo <= 0;

    if (s->n < d->drift_early_n) {
        alpha = 1.0f / (float)s->n;
        slope = alpha < 1.0f ? alpha / (1.0f - alpha) : 0.0f;
    }
    pred = 2.0f * s->ewma - s->ewma2 + slope * (s->ewma - s->ewma2);
    e = (x - pred) * inv_sigma;
    s->cusum_hi = tc_qd_maxf(0.0f, s->cusum_hi + e - k);
    s->cusum_lo = tc_qd_maxf(0.0f, s->cusum_lo - e - k);
    if (was_zero && (s->cusum_hi > 0 || s->cusum_lo > 0) && !(s->open & (1u << TC_QD_DRIFT)))
        c->start[TC_QD_DRIFT] = t; /* where the excursion began */
    if (s->n >= d->drift_warm_n) {
        float sum = tc_qd_maxf(s->cusum_hi, s->cusum_lo);
        if (sum > h)
            tc_qd_open(d, di, m, s, c, TC_QD_DRIFT, c->start[TC_QD_DRIFT], sum / h, x, pred);
        else if (sum < h / 4)
            tc_qd_resolve(d, di, m, s, c, TC_QD_DRIFT, t, x, pred);
    } else {
        s->cusum_hi = s->cusum_lo = 0;
    }
    s->ewma += alpha * (x - s->ewma);
    s->ewma2 += alpha * (s->ewma - s->ewma2);
}

static void tc_qd_series_observe(tc_qd *d, size_t di, int m, tc_qd_series *s, tc_qd_cold *c,
                                 float x, int64_t t)
{
    float med, r, res = d->res[m], inv_scale, last;
    int held;

    if (!s->n) {
        tc_qd_first(s, x, t, res);
        return;
    }
    last = tc_qd_last(s); /* neither check below changes the window */
    tc_qd_rate(d, di, m, s, c, x, t, last);
    tc_qd_stuck(d, di, m, s, c, x, t, last);
    med = tc_qd_median5_in(s->win);
    r = fabsf(x - med);
    /* One division a reading: the spike's z and the drift's residual multiply by its inverse. */
    inv_scale = 1.0f / (1.4826f * (s->mad > res ? s->mad : res));
    held = tc_qd_spike(d, di, m, s, c, x, t, med, inv_scale);
    if (!held && s->run_len < 3) {
        /* Frugal streaming median of |r|: up or down by a constant factor. */
        /* Up or down is a coin toss on noise: an index, not a branch to mispredict. */
        s->mad *= d->mad_step[s->n < d->warmup][r > s->mad];
        if (s->mad < res / 4)
            s->mad = res / 4;
    }
    if (!held)
        tc_qd_drift(d, di, m, s, c, x, t, inv_scale);
    s->win[s->win_pos] = x;
    s->win_pos = (uint8_t)(s->win_pos == 4 ? 0 : s->win_pos + 1);
    s->last_t = t;
    if (s->n < UINT16_MAX)
        s->n++;
}

/* One reading of the device of index di (looked up by the caller): row k of the columns, metric
 * m's value values[m][k], present where present is NULL or present[m][k] != 0. Read in place:
 * copying each reading's values out of the batch's columns first cost as much as the device's
 * interval and silence. */
static void tc_qd_observe_at(tc_qd *d, size_t di, int64_t t_us, const double *const *values,
                             const uint8_t *const *present, size_t k)
{
    tc_qd_device *dev = tc_qd_dev(d, di);
    tc_qd_series *s = tc_qd_ser(d, di);
    tc_qd_cold *c = tc_qd_cold_of(d, di);

    if (dev->n && t_us < dev->last_t)
        return; /* out of order: counted by the metrics, not fed to series built on order */
    if (dev->n && t_us > dev->last_t) {
        double dt = (double)(t_us - dev->last_t) / 1e6;
        if (dev->n == 1)
            dev->interval_s = (float)dt;
        else {
            if (dt > TC_QD_INTERVAL_CLIP * dev->interval_s)
                dt = TC_QD_INTERVAL_CLIP * dev->interval_s;
            dev->interval_s += (float)(TC_QD_INTERVAL_ALPHA * (dt - dev->interval_s));
        }
    }
    if (dev->silent) {
        dev->silent = 0;
        d->st.resolved[TC_QD_SILENCE]++;
        d->st.open_now--;
        if (d->emit) {
            tc_qd_finding f = {tc_qids_id(d->ids, di), -1, TC_QD_SILENCE, dev->silence_start,
                               /* a device clock behind the watermark: not before the start */
                               t_us > dev->silence_start ? t_us : dev->silence_start,
                               (double)(t_us - dev->last_t) / 1e6 / dev->interval_s,
                               (double)(t_us - dev->last_t) / 1e6, dev->interval_s};
            d->emit(d->opaque, &f);
        }
    }
    dev->last_t = t_us;
    dev->gen = d->gen;
    if (dev->n < UINT32_MAX)
        dev->n++;
    /* |v| < 3e38 is false for NaN and the infinities: non-finite values are skipped with it. The
     * watched series in the order of their metrics (all of them: the order the loop always had). */
    for (int m = 0; m < d->o.metrics; m++) {
        double v;
        if (!(d->o.watch >> m & 1u))
            continue;
        v = values[m][k];
        if ((!present || present[m][k]) && fabs(v) < 3e38)
            tc_qd_series_observe(d, di, m, &s[m], &c[m], (float)v, t_us);
    }
}

void tc_qd_observe(tc_qd *d, const char *device, size_t len, int64_t t_us, const double *values,
                   const uint8_t *present)
{
    long i = TC_Q_TIME_OK(t_us) ? tc_qd_find(d, device, len, 1) : -1;
    const double *vcols[TC_QD_METRICS_MAX];
    const uint8_t *pcols[TC_QD_METRICS_MAX];

    if (i < 0) {
        d->st.devices_refused++;
        return;
    }
    for (int m = 0; m < d->o.metrics; m++) {
        vcols[m] = &values[m];
        pcols[m] = present ? &present[m] : NULL;
    }
    tc_qd_observe_at(d, (size_t)i, t_us, vcols, present ? pcols : NULL, 0);
}

/* Start fetching the state a reading of device i will touch: its device line and series lines. */
static void tc_qd_prefetch(const tc_qd *d, long i)
{
    if (i < 0)
        return;
    __builtin_prefetch(tc_qd_dev(d, (size_t)i), 1);
    for (uint32_t w = d->o.watch; w; w &= w - 1)
        __builtin_prefetch(&tc_qd_ser(d, (size_t)i)[__builtin_ctz(w)], 1);
}

void tc_qd_observe_batch(tc_qd *d, size_t n, const char *const *ids, const size_t *lens,
                         const int64_t *t_us, const double *const *values,
                         const uint8_t *const *present, const size_t *rows, long *index_out)
{
    long idx[TC_QD_BATCH_GROUP];

    for (size_t g = 0; g < n; g += TC_QD_BATCH_GROUP) {
        size_t end = n - g < TC_QD_BATCH_GROUP ? n : g + TC_QD_BATCH_GROUP;
        /* Look the group's devices up, fetching the first ones' state... */
        for (size_t k = g; k < end; k++) {
            long i = TC_Q_TIME_OK(t_us[k]) ? tc_qd_find(d, ids[k], lens[k], 1) : -1;
            idx[k - g] = i;
            if (index_out)
                index_out[k] = i;
            if (k - g < TC_QD_PREFETCH_AHEAD)
                tc_qd_prefetch(d, i);
        }
        /* ... then use each while the state of the one TC_QD_PREFETCH_AHEAD further arrives. */
        for (size_t k = g; k < end; k++) {
            if (k + TC_QD_PREFETCH_AHEAD < end)
                tc_qd_prefetch(d, idx[k + TC_QD_PREFETCH_AHEAD - g]);
            if (idx[k - g] < 0) {
                d->st.devices_refused++;
                continue;
            }
            tc_qd_observe_at(d, (size_t)idx[k - g], t_us[k], values, present, rows ? rows[k] : k);
        }
    }
}

void tc_qd_tick(tc_qd *d, int64_t now_us)
{
    if (!TC_Q_TIME_OK(now_us))
        return;
    for (size_t i = 0; i < d->ndevices; i++) {
        tc_qd_device *dev = tc_qd_dev(d, i);
        double quiet, limit;

        if (dev->silent || dev->n < 3 || !(dev->interval_s > 0))
            continue; /* two readings give no usual interval yet */
        quiet = (double)(now_us - dev->last_t) / 1e6;
        limit = d->o.silence_factor * dev->interval_s;
        if (limit < d->o.silence_min_s)
            limit = d->o.silence_min_s;
        if (quiet <= limit)
            continue;
        dev->silent = 1;
        dev->gen = d->gen;
        dev->silence_start = dev->last_t + (int64_t)(dev->interval_s * 1e6);
        d->st.opened[TC_QD_SILENCE]++;
        d->st.open_now++;
        if (d->emit) {
            tc_qd_finding f = {
                tc_qids_id(d->ids, i),   -1,    TC_QD_SILENCE,  dev->silence_start, 0,
                quiet / dev->interval_s, quiet, dev->interval_s};
            d->emit(d->opaque, &f);
        }
    }
}

size_t tc_qd_resolve_unwatched(tc_qd *d)
{
    uint32_t unwatched = ((1u << d->o.metrics) - 1) & ~d->o.watch;
    size_t n = 0;

    for (size_t i = 0; unwatched && i < d->ndevices; i++) {
        tc_qd_series *s = tc_qd_ser(d, i);
        tc_qd_cold *c = tc_qd_cold_of(d, i);

        for (uint32_t w = unwatched; w; w &= w - 1) {
            int m = __builtin_ctz(w);
            for (int kind = 0; kind < TC_QD_SILENCE; kind++)
                if (s[m].open & (1u << kind)) {
                    tc_qd_resolve(d, i, m, &s[m], &c[m], (tc_qd_kind)kind, s[m].last_t, NAN, NAN);
                    tc_qd_dev(d, i)->gen = d->gen;
                    n++;
                }
        }
    }
    return n;
}

tc_qids *tc_qd_ids(tc_qd *d)
{
    return d->ids;
}

void tc_qd_get_stats(const tc_qd *d, tc_qd_stats *st)
{
    *st = d->st;
    st->devices = d->ndevices;
}

size_t tc_qd_memory(const tc_qd *d)
{
    size_t chunks = (d->ndevices + TC_QD_CHUNK - 1) / TC_QD_CHUNK;

    return sizeof(*d) + d->nchunks * 3 * sizeof(void *) + tc_qids_memory(d->ids) +
           chunks * TC_QD_CHUNK *
               (sizeof(tc_qd_device) +
                (sizeof(tc_qd_series) + sizeof(tc_qd_cold)) * (size_t)d->o.metrics);
}

size_t tc_qd_memory_for(size_t devices, int metrics)
{
    size_t chunks = (devices + TC_QD_CHUNK - 1) / TC_QD_CHUNK;

    return sizeof(struct tc_qd) + 3 * chunks * sizeof(void *) + tc_qids_memory_for(devices, 15) +
           chunks * TC_QD_CHUNK *
               (sizeof(tc_qd_device) +
                (sizeof(tc_qd_series) + sizeof(tc_qd_cold)) * (size_t)metrics);
}

/* ---- checkpoint ---- */

typedef struct tc_qd_buf {
    unsigned char *p;
    size_t len, cap, pos;
    int failed;
} tc_qd_buf;

/* Room for `bytes` more in b, doubling it; 0 when out of memory (b failed). */
static int tc_qd_grow(tc_qd_buf *b, int bytes)
{
    while (b->cap - b->len < (size_t)bytes) {
        size_t cap = b->cap ? b->cap * 2 : 4096;
        unsigned char *p = realloc(b->p, cap);
        if (!p) {
            b->failed = 1;
            return 0;
        }
        b->p = p;
        b->cap = cap;
    }
    return 1;
}

/* The low `bytes` bytes of v, little-endian. Inline with a constant width, the shifts become one
 * store: a checkpoint is some 300 bytes a device, written at every flush. */
static inline void tc_qd_put(tc_qd_buf *b, uint64_t v, int bytes)
{
    unsigned char *p;

    if (b->failed || (b->cap - b->len < (size_t)bytes && !tc_qd_grow(b, bytes)))
        return;
    p = b->p + b->len;
    for (int k = 0; k < bytes; k++)
        p[k] = (unsigned char)(v >> (8 * k));
    b->len += (size_t)bytes;
}

static uint64_t tc_qd_get(tc_qd_buf *b, int bytes)
{
    uint64_t v = 0;

    if (b->failed || b->len - b->pos < (size_t)bytes) {
        b->failed = 1;
        return 0;
    }
    for (int k = 0; k < bytes; k++)
        v |= (uint64_t)b->p[b->pos++] << (8 * k);
    return v;
}

static float tc_qd_get_f(tc_qd_buf *b)
{
    uint32_t u = (uint32_t)tc_qd_get(b, 4);
    float f;

    memcpy(&f, &u, sizeof(f));
    if (!isfinite(f))
        b->failed = 1;
    return f;
}

/* clang-format off */
/* Both directions over one field list, so save and load cannot disagree: a series' record is its
 * hot fields (tc_qd_series) then its cold ones (tc_qd_cold), as when they were one struct. */
#define TC_QD_HOT_FIELDS(F, I)                                                                     \
    I(last_t, 8) F(win[0]) F(win[1]) F(win[2]) F(win[3]) F(win[4]) F(mad) F(ewma) F(ewma2)         \
    F(cusum_hi) F(cusum_lo) F(avg_run) I(run_ms, 4) I(n, 2) I(run_len, 2) I(win_pos, 1)            \
    I(pend_n, 1) I(open, 1) I(runs, 1)
#define TC_QD_COLD_FIELDS(F, I)                                                                    \
    I(start[0], 8) I(start[1], 8) I(start[2], 8) I(start[3], 8) F(peak[0]) F(peak[1]) F(peak[2])   \
    F(peak[3]) F(pend_obs) F(pend_exp) F(pend_z)
#define TC_QD_SERIES_FIELDS(F, I) TC_QD_HOT_FIELDS(F, I) TC_QD_COLD_FIELDS(F, I)
/* clang-format on */

#define TC_QD_FNV_PRIME 0x100000001b3ULL

/* The 64-bit little-endian word at p: one load (and a swap on a big-endian machine). Built a byte
 * at a time, gcc -O2 kept the loop -- eight loads, shifts and ors a word, the checksum's cost. */
static inline uint64_t tc_qd_word(const unsigned char *p)
{
    uint64_t w;

    memcpy(&w, p, sizeof(w));
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    w = __builtin_bswap64(w);
#endif
    return w;
}

/* The checkpoint's checksum (against torn and corrupted files, not attackers). Version 1: FNV-1a
 * 64 a byte at a time, a multiplication's latency per byte (a microsecond a device). Version 2:
 * the same step over 64-bit little-endian words, in four independent sums (word k of every 32
 * bytes goes to sum k, so the four multiplications overlap), the words and bytes after the last
 * 32 to the first, and the four folded into one by the same step. Each step is a bijection of
 * the running value, so a change of any one word (any single byte) changes its sum and so the
 * result, as it did with bytes. */
uint64_t tc_qd_checksum(const unsigned char *p, size_t n, uint64_t version)
{
    uint64_t h[4] = {0xcbf29ce484222325ULL, 0xcbf29ce484222325ULL ^ 1, 0xcbf29ce484222325ULL ^ 2,
                     0xcbf29ce484222325ULL ^ 3};
    size_t i = 0;

    if (version >= 2) {
        /* The four sums in registers: through the array, each step went to memory and back. */
        uint64_t h0 = h[0], h1 = h[1], h2 = h[2], h3 = h[3];
        for (; i + 32 <= n; i += 32) {
            h0 = (h0 ^ tc_qd_word(p + i)) * TC_QD_FNV_PRIME;
            h1 = (h1 ^ tc_qd_word(p + i + 8)) * TC_QD_FNV_PRIME;
            h2 = (h2 ^ tc_qd_word(p + i + 16)) * TC_QD_FNV_PRIME;
            h3 = (h3 ^ tc_qd_word(p + i + 24)) * TC_QD_FNV_PRIME;
        }
        h[0] = h0;
        h[1] = h1;
        h[2] = h2;
        h[3] = h3;
        for (; i + 8 <= n; i += 8)
            h[0] = (h[0] ^ tc_qd_word(p + i)) * TC_QD_FNV_PRIME;
    }
    for (; i < n; i++)
        h[0] = (h[0] ^ p[i]) * TC_QD_FNV_PRIME;
    if (version >= 2)
        for (int k = 1; k < 4; k++)
            h[0] = (h[0] ^ h[k]) * TC_QD_FNV_PRIME;
    return h[0];
}

/* A series' fields, and the bytes of all of them (124: version 2's series, every field). */
#define TC_QD_COUNT_F(f)     +1
#define TC_QD_COUNT_I(f, w)  +1
#define TC_QD_BYTES_F(f)     +4
#define TC_QD_BYTES_I(f, w)  +(w)
#define TC_QD_SERIES_NFIELDS (0 TC_QD_SERIES_FIELDS(TC_QD_COUNT_F, TC_QD_COUNT_I))
#define TC_QD_SERIES_FULL    (0 TC_QD_SERIES_FIELDS(TC_QD_BYTES_F, TC_QD_BYTES_I))
_Static_assert(TC_QD_SERIES_NFIELDS <= 32, "a series' mask is 32 bits");

/* The most bytes device i's record takes in a checkpoint: its id, its own state and its series',
 * each its mask and every field (a series has fewer: its zero fields are left out). */
static size_t tc_qd_record_bytes(const tc_qd *d, size_t id_len)
{
    return 2 + id_len + 8 + 8 + 4 + 4 + 1 + (size_t)d->o.metrics * (4 + TC_QD_SERIES_FULL);
}

static void tc_qd_put_header(tc_qd_buf *b, const tc_qd *d, size_t ndevices)
{
    tc_qd_put(b, 0x44515443u, 4); /* "TCQD" */
    tc_qd_put(b, TC_QD_CHECKPOINT_VERSION, 4);
    tc_qd_put(b, (uint64_t)d->o.metrics, 4);
    tc_qd_put(b, ndevices, 8);
    tc_qd_put(b, (uint64_t)(sizeof(tc_qd_series) + sizeof(tc_qd_cold)), 8);
}

/* v's low `bytes` bytes at p, little-endian (p has room); returns the end. */
static inline unsigned char *tc_qd_le(unsigned char *p, uint64_t v, int bytes)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    /* v's low bytes are its first: one store of a constant width (the loop below stayed a loop
     * for the 8-byte fields, a shift and a store a byte). */
    memcpy(p, &v, (size_t)bytes);
#else
    for (int k = 0; k < bytes; k++)
        p[k] = (unsigned char)(v >> (8 * k));
#endif
    return p + bytes;
}

static inline unsigned char *tc_qd_le_f(unsigned char *p, float f)
{
    uint32_t u;

    memcpy(&u, &f, sizeof(u));
    return tc_qd_le(p, u, 4);
}

/* Device i's record. Room for all of it is checked once (the callers size the buffer for it,
 * tc_qd_record_bytes), then each field is one store: the checks a field cost as much as the
 * stores, for some 100 fields a device. */
static void tc_qd_put_device(tc_qd_buf *b, const tc_qd *d, size_t i)
{
    const tc_qd_device *dev = tc_qd_dev(d, i);
    const char *id = tc_qids_id(d->ids, i);
    size_t n = strlen(id);
    unsigned char *p;

    if (b->failed || b->cap - b->len < tc_qd_record_bytes(d, n)) {
        b->failed = 1;
        return;
    }
    p = tc_qd_le(b->p + b->len, n, 2);
    memcpy(p, id, n);
    p += n;
    p = tc_qd_le(p, (uint64_t)dev->last_t, 8);
    p = tc_qd_le(p, (uint64_t)dev->silence_start, 8);
    p = tc_qd_le_f(p, dev->interval_s);
    p = tc_qd_le(p, dev->n, 4);
    p = tc_qd_le(p, dev->silent, 1);
    for (int m = 0; m < d->o.metrics; m++) {
        const tc_qd_series *s = &tc_qd_ser(d, i)[m];
        const tc_qd_cold *c = &tc_qd_cold_of(d, i)[m];
        unsigned char *at = p; /* the mask, once known */
        uint32_t mask = 0, bit = 1;

        p += 4;
/* A field that is not zero (a float's bits: -0.0 is written) sets its bit and is written. */
#define TC_QD_F(f)                                                                                 \
    {                                                                                              \
        uint32_t u;                                                                                \
        memcpy(&u, &o->f, sizeof(u));                                                              \
        if (u) {                                                                                   \
            mask |= bit;                                                                           \
            p = tc_qd_le(p, u, 4);                                                                 \
        }                                                                                          \
        bit <<= 1;                                                                                 \
    }
#define TC_QD_I(f, w)                                                                              \
    {                                                                                              \
        if (o->f) {                                                                                \
            mask |= bit;                                                                           \
            p = tc_qd_le(p, (uint64_t)o->f, w);                                                    \
        }                                                                                          \
        bit <<= 1;                                                                                 \
    }
        {
            const tc_qd_series *o = s;
            TC_QD_HOT_FIELDS(TC_QD_F, TC_QD_I)
        }
        {
            const tc_qd_cold *o = c;
            TC_QD_COLD_FIELDS(TC_QD_F, TC_QD_I)
        }
#undef TC_QD_F
#undef TC_QD_I
        (void)tc_qd_le(at, mask, 4);
    }
    b->len = (size_t)(p - b->p);
}

size_t tc_qd_save_size(const tc_qd *d)
{
    size_t size = TC_QD_HEADER_BYTES + TC_QD_TRAILER_BYTES;

    for (size_t i = 0; i < d->ndevices; i++)
        size += tc_qd_record_bytes(d, strlen(tc_qids_id(d->ids, i)));
    return size;
}

tc_err tc_qd_save_reuse(const tc_qd *d, unsigned char **buf, size_t *cap, size_t *len, char *errstr,
                        size_t errstr_size)
{
    tc_qd_buf b = {0};
    /* Sized exactly up front: a flush saves every lane that moved, and growing the buffer by
     * doubling copied and faulted in each checkpoint about twice over. */
    size_t size = tc_qd_save_size(d);

    if (!*buf || *cap < size) {
        free(*buf);
        *buf = malloc(size);
        *cap = *buf ? size : 0;
    }
    b.p = *buf;
    b.cap = *cap;
    b.failed = !b.p;
    tc_qd_put_header(&b, d, d->ndevices);
    for (size_t i = 0; i < d->ndevices && !b.failed; i++)
        tc_qd_put_device(&b, d, i);
    if (!b.failed)
        tc_qd_put(&b, tc_qd_checksum(b.p, b.len, TC_QD_CHECKPOINT_VERSION), 8);
    if (b.failed)
        return tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory saving detectors");
    *len = b.len;
    return TC_OK;
}

tc_err tc_qd_save(const tc_qd *d, unsigned char **out, size_t *len, char *errstr,
                  size_t errstr_size)
{
    size_t cap = 0;
    tc_err err;

    *out = NULL;
    err = tc_qd_save_reuse(d, out, &cap, len, errstr, errstr_size);
    if (err != TC_OK) {
        free(*out);
        *out = NULL;
    }
    return err;
}

uint32_t tc_qd_cut(tc_qd *d)
{
    return d->gen++;
}

size_t tc_qd_devices(const tc_qd *d)
{
    return d->ndevices;
}

size_t tc_qd_changed(const tc_qd *d, uint32_t since)
{
    size_t n = 0;

    for (size_t i = 0; i < d->ndevices; i++)
        n += tc_qd_dev(d, i)->gen > since;
    return n;
}

tc_err tc_qd_save_changed(tc_qd *d, uint32_t since, tc_qd_record_fn fn, void *opaque, uint32_t *cut,
                          char *errstr, size_t errstr_size)
{
    tc_qd_buf b = {0};

    /* One buffer for every record: the largest one a device can have. */
    b.cap = TC_QD_HEADER_BYTES + TC_QD_TRAILER_BYTES + tc_qd_record_bytes(d, TC_QD_DEVICE_ID_MAX);
    b.p = malloc(b.cap);
    if (!b.p)
        return tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory saving detectors");
    *cut = tc_qd_cut(d); /* what changes from now on is after the cut */
    for (size_t i = 0; i < d->ndevices; i++) {
        const char *id;

        if (tc_qd_dev(d, i)->gen <= since)
            continue;
        id = tc_qids_id(d->ids, i);
        b.len = 0;
        tc_qd_put_header(&b, d, 1);
        tc_qd_put_device(&b, d, i);
        tc_qd_put(&b, tc_qd_checksum(b.p, b.len, TC_QD_CHECKPOINT_VERSION), 8);
        if (fn(opaque, id, strlen(id), b.p, b.len) != 0) {
            free(b.p);
            return tc_err_set(TC_ERR_NOMEM, errstr, errstr_size,
                              "out of memory saving the detectors of device \"%s\"", id);
        }
    }
    free(b.p);
    return TC_OK;
}

/* A series' fields from b: version 3's, the fields its mask names (the others are zero; a field
 * named must not be, nor a bit past the last field be set, so that one state has one encoding);
 * version 1 and 2's, every field. */
static void tc_qd_load_series(tc_qd_series *s, tc_qd_cold *c, tc_qd_buf *b, uint64_t version)
{
    uint32_t mask = version >= 3 ? (uint32_t)tc_qd_get(b, 4) : UINT32_MAX, bit = 1;

    if (version >= 3 && TC_QD_SERIES_NFIELDS < 32 && mask >> TC_QD_SERIES_NFIELDS)
        b->failed = 1;
/* tc_qd_get reads exactly w bytes, the field's own width (TC_QD_SERIES_FIELDS), so the value fits;
 * an int64_t's 8 bytes come back as the two's complement tc_qd_save wrote. */
#define TC_QD_F(f)                                                                                 \
    {                                                                                              \
        uint32_t u = 0;                                                                            \
        if (mask & bit) {                                                                          \
            o->f = tc_qd_get_f(b);                                                                 \
            memcpy(&u, &o->f, sizeof(u));                                                          \
        } else {                                                                                   \
            o->f = 0;                                                                              \
        }                                                                                          \
        if (version >= 3 && (mask & bit) && !u)                                                    \
            b->failed = 1;                                                                         \
        bit <<= 1;                                                                                 \
    }
#define TC_QD_I(f, w)                                                                              \
    {                                                                                              \
        o->f = (mask & bit) ? (__typeof__(o->f))tc_qd_get(b, w) : 0;                               \
        if (version >= 3 && (mask & bit) && !o->f)                                                 \
            b->failed = 1;                                                                         \
        bit <<= 1;                                                                                 \
    }
    {
        tc_qd_series *o = s;
        TC_QD_HOT_FIELDS(TC_QD_F, TC_QD_I)
    }
    {
        tc_qd_cold *o = c;
        TC_QD_COLD_FIELDS(TC_QD_F, TC_QD_I)
    }
#undef TC_QD_F
#undef TC_QD_I
}

/* Restore one device's state from b (a checkpoint of format version) into the fresh detector t;
 * 0 when a value is out of range. */
static int tc_qd_load_device(tc_qd *t, tc_qd_buf *b, uint64_t version)
{
    char id[TC_QD_DEVICE_ID_MAX + 1];
    size_t n = (size_t)tc_qd_get(b, 2);
    tc_qd_device *dev;
    tc_qd_series *ser;
    tc_qd_cold *cold;
    long i;

    if (b->failed || n == 0 || n > TC_QD_DEVICE_ID_MAX || b->len - b->pos < n)
        return 0;
    memcpy(id, b->p + b->pos, n);
    b->pos += n;
    id[n] = '\0';
    if (memchr(id, '\0', n) || tc_qd_find(t, id, n, 0) >= 0)
        return 0; /* an id with a NUL, or twice */
    i = tc_qd_find(t, id, n, 1);
    if (i < 0)
        return 0;
    dev = tc_qd_dev(t, (size_t)i);
    ser = tc_qd_ser(t, (size_t)i);
    cold = tc_qd_cold_of(t, (size_t)i);
    dev->last_t = (int64_t)tc_qd_get(b, 8);
    dev->silence_start = (int64_t)tc_qd_get(b, 8);
    dev->interval_s = tc_qd_get_f(b);
    dev->n = (uint32_t)tc_qd_get(b, 4);
    dev->silent = (uint8_t)tc_qd_get(b, 1);
    if (dev->silent > 1 || dev->interval_s < 0 || !TC_Q_TIME_OK(dev->last_t) ||
        !TC_Q_TIME_OK(dev->silence_start))
        return 0;
    t->st.open_now += dev->silent;
    for (int m = 0; m < t->o.metrics; m++) {
        tc_qd_series *s = &ser[m];
        tc_qd_cold *c = &cold[m];

        tc_qd_load_series(s, c, b, version);
        if (s->win_pos >= 5 || s->open >= (1u << 4) || s->pend_n > t->o.spike_max_len ||
            s->mad < 0 || s->cusum_hi < 0 || s->cusum_lo < 0 || !TC_Q_TIME_OK(s->last_t))
            return 0;
        for (int k = 0; k < 4; k++)
            if (!TC_Q_TIME_OK(c->start[k]))
                return 0;
        for (unsigned k = 0; k < 4; k++)
            t->st.open_now += ((unsigned)s->open >> k) & 1u;
    }
    return !b->failed;
}

/* Validate a checkpoint and add its devices to t (a detector of d's options), stamped with gen;
 * a device t holds already is refused (ids are unique across the records of one load). */
static tc_err tc_qd_parse(tc_qd *t, const unsigned char *buf, size_t len, uint32_t gen,
                          char *errstr, size_t errstr_size)
{
    tc_qd_buf b = {(unsigned char *)(uintptr_t)buf, len, len, 0, 0};
    uint64_t magic, version, metrics, ndev, series_size, sum;

    if (len < TC_QD_HEADER_BYTES + TC_QD_TRAILER_BYTES)
        return tc_err_set(TC_ERR_INVALID, errstr, errstr_size,
                          "detector checkpoint: %zu bytes, shorter than a header", len);
    b.len = len - TC_QD_TRAILER_BYTES;
    /* The version first: it says which checksum to check (checked itself below). */
    b.pos = 4;
    version = tc_qd_get(&b, 4);
    sum = 0;
    for (int k = 0; k < 8; k++)
        sum |= (uint64_t)buf[len - TC_QD_TRAILER_BYTES + (size_t)k] << (8 * k);
    if (sum != tc_qd_checksum(buf, len - TC_QD_TRAILER_BYTES, version))
        return tc_err_set(TC_ERR_INVALID, errstr, errstr_size,
                          "detector checkpoint: checksum mismatch (%zu bytes)", len);
    b.pos = 0;
    magic = tc_qd_get(&b, 4);
    tc_qd_get(&b, 4);
    metrics = tc_qd_get(&b, 4);
    ndev = tc_qd_get(&b, 8);
    series_size = tc_qd_get(&b, 8);
    /* Version 1 differs from 2 by its checksum only, 2 from 3 by its series written whole:
     * stored ones still load. */
    if (magic != 0x44515443u || version < 1 || version > TC_QD_CHECKPOINT_VERSION)
        return tc_err_set(TC_ERR_INVALID, errstr, errstr_size,
                          "detector checkpoint: not a version 1..%d checkpoint (magic %08llx, "
                          "version %llu)",
                          TC_QD_CHECKPOINT_VERSION, (unsigned long long)magic,
                          (unsigned long long)version);
    if (metrics != (uint64_t)t->o.metrics || ndev > t->o.max_devices - t->ndevices ||
        series_size != sizeof(tc_qd_series) + sizeof(tc_qd_cold))
        return tc_err_set(TC_ERR_INVALID, errstr, errstr_size,
                          "detector checkpoint: %llu metrics and %llu more devices (series of "
                          "%llu bytes) do not fit this detector (%d metrics, %zu devices)",
                          (unsigned long long)metrics, (unsigned long long)ndev,
                          (unsigned long long)series_size, t->o.metrics, t->o.max_devices);
    for (uint64_t i = 0; i < ndev; i++) {
        if (!tc_qd_load_device(t, &b, version))
            return tc_err_set(TC_ERR_INVALID, errstr, errstr_size,
                              "detector checkpoint: device %llu near byte %zu is invalid",
                              (unsigned long long)i, b.pos);
        tc_qd_dev(t, t->ndevices - 1)->gen = gen;
    }
    if (b.pos != b.len)
        return tc_err_set(TC_ERR_INVALID, errstr, errstr_size,
                          "detector checkpoint: %zu bytes after the last device", b.len - b.pos);
    return TC_OK;
}

/* Replace d's state by t's; the statistics of findings stay the running process's. */
static void tc_qd_take(tc_qd *d, tc_qd *t)
{
    tc_qd tmp = *d;
    uint64_t open_now = t->st.open_now;

    *d = *t;
    d->st = tmp.st;
    d->st.open_now = open_now;
    *t = tmp;
}

tc_err tc_qd_load(tc_qd *d, const unsigned char *buf, size_t len, char *errstr, size_t errstr_size)
{
    char err2[TC_ERRSTR_MAX];
    tc_qd *t = tc_qd_new(&d->o, d->emit, d->opaque, err2, sizeof(err2));
    tc_err err;

    if (!t)
        return tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "detector checkpoint: %s", err2);
    /* What was read is stored: unchanged (generation 0) until a reading changes it. */
    err = tc_qd_parse(t, buf, len, 0, errstr, errstr_size);
    if (err == TC_OK)
        tc_qd_take(d, t);
    tc_qd_destroy(t);
    return err;
}

tc_err tc_qd_merge(tc_qd *d, const unsigned char *const *bufs, const size_t *lens, size_t n,
                   char *errstr, size_t errstr_size)
{
    char err2[TC_ERRSTR_MAX];
    tc_qd *t = tc_qd_new(&d->o, d->emit, d->opaque, err2, sizeof(err2));
    tc_err err = TC_OK;
    size_t added = 0;

    if (!t)
        return tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "detector checkpoint: %s", err2);
    for (size_t k = 0; err == TC_OK && k < n; k++) {
        char msg[TC_ERRSTR_MAX];
        err = tc_qd_parse(t, bufs[k], lens[k], 0, msg, sizeof(msg));
        if (err != TC_OK)
            tc_err_set(err, errstr, errstr_size, "record %zu: %s", k + 1, msg);
    }
    for (size_t i = 0; err == TC_OK && i < t->ndevices; i++)
        added += tc_qids_find(d->ids, tc_qids_id(t->ids, i), strlen(tc_qids_id(t->ids, i)), 0) < 0;
    if (err == TC_OK && added > d->o.max_devices - d->ndevices)
        err = tc_err_set(TC_ERR_INVALID, errstr, errstr_size,
                         "detector checkpoint: %zu more devices do not fit this detector (%zu of "
                         "%zu held)",
                         added, d->ndevices, d->o.max_devices);
    if (err == TC_OK && !d->ndevices) {
        tc_qd_take(d, t); /* the usual case, a fresh detector: all or nothing */
    } else if (err == TC_OK) {
        /* Records newer than d's state replace it device by device; an allocation failure
         * midway leaves the devices merged so far (open a fresh detector to avoid that). */
        for (size_t i = 0; err == TC_OK && i < t->ndevices; i++) {
            const char *id = tc_qids_id(t->ids, i);
            long j = tc_qd_find(d, id, strlen(id), 1);
            if (j < 0) {
                err = tc_err_set(TC_ERR_NOMEM, errstr, errstr_size,
                                 "detector checkpoint: out of memory for device \"%s\"", id);
                break;
            }
            *tc_qd_dev(d, (size_t)j) = *tc_qd_dev(t, i);
            memcpy(tc_qd_ser(d, (size_t)j), tc_qd_ser(t, i),
                   sizeof(tc_qd_series) * (size_t)d->o.metrics);
            memcpy(tc_qd_cold_of(d, (size_t)j), tc_qd_cold_of(t, i),
                   sizeof(tc_qd_cold) * (size_t)d->o.metrics);
        }
        d->st.open_now = 0;
        for (size_t i = 0; i < d->ndevices; i++) {
            d->st.open_now += tc_qd_dev(d, i)->silent;
            for (int m = 0; m < d->o.metrics; m++)
                d->st.open_now += (uint64_t)__builtin_popcount(tc_qd_ser(d, i)[m].open);
        }
    }
    tc_qd_destroy(t);
    return err;
}
