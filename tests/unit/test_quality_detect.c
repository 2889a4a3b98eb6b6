/*
 * test_quality_detect.c -- the streaming anomaly detectors (quality/detect.h) on synthetic series
 * whose answers are worked out here: where each finding starts and ends, what it observed and
 * expected, and that a condition gives one finding, not one per reading. Then the checkpoint:
 * a restart in the middle of an open finding neither loses nor repeats it, and every corrupted,
 * truncated or foreign checkpoint is refused with the state left as it was; an incremental
 * checkpoint writes only the devices changed and restores the same state; version 1 and 2
 * checkpoints (as stored before version 3, kept here as bytes) still load into the state the same
 * readings make now, and version 3 has one encoding a state. And the memory bound
 * the header states.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <cmocka.h>

#include "quality/detect.h"
#include "quality/ids.h"

#define LOG_MAX 64
#define CADENCE INT64_C(10000000) /* 10 s */
#define T0      INT64_C(1795824000000000)

typedef struct logged {
    char device[32];
    int metric;
    tc_qd_kind kind;
    int64_t start, end;
    double score, observed, expected;
} logged;

typedef struct log_t {
    logged f[LOG_MAX];
    int n;
} log_t;

static void on_finding(void *opaque, const tc_qd_finding *f)
{
    log_t *l = opaque;

    assert_true(l->n < LOG_MAX);
    snprintf(l->f[l->n].device, sizeof(l->f[l->n].device), "%s", f->device);
    l->f[l->n].metric = f->metric;
    l->f[l->n].kind = f->kind;
    l->f[l->n].start = f->start_us;
    l->f[l->n].end = f->end_us;
    l->f[l->n].score = f->score;
    l->f[l->n].observed = f->observed;
    l->f[l->n].expected = f->expected;
    l->n++;
}

static tc_qd *new_detector(log_t *l, int metrics)
{
    char errstr[TC_ERRSTR_MAX];
    tc_qd_options o;
    tc_qd *d;

    tc_qd_options_default(&o, metrics, 16);
    d = tc_qd_new(&o, on_finding, l, errstr, sizeof(errstr));
    assert_non_null(d);
    return d;
}

/* A quiet series: 20.0, 20.1, 20.2, 20.1, ... (a period of four, never two equal in a row). */
static double base(int i)
{
    static const double pattern[4] = {20.0, 20.1, 20.2, 20.1};

    return pattern[i % 4] + 0.003 * (i % 3);
}

static void feed(tc_qd *d, const char *dev, int i, double v)
{
    tc_qd_observe(d, dev, strlen(dev), T0 + i * CADENCE, &v, NULL);
}

/* Reading i of a detector of two metrics carrying the first alone (the second never fed). */
static void feed_first(tc_qd *d, const char *dev, int i, double v)
{
    static const uint8_t present[2] = {1, 0};
    double values[2] = {v, 0.0};

    tc_qd_observe(d, dev, strlen(dev), T0 + i * CADENCE, values, present);
}

static void test_median5(void **state)
{
    static const float vals[][5] = {
        {1, 2, 3, 4, 5}, {1, 1, 2, 2, 3}, {7, 7, 7, 7, 7}, {-1, 5, 0, 5, 5}, {3, 1, 4, 1, 5}};
    (void)state;
    /* Every permutation of each set: the median is the sorted middle whatever the order. */
    for (size_t s = 0; s < sizeof(vals) / sizeof(vals[0]); s++) {
        float sorted[5];
        memcpy(sorted, vals[s], sizeof(sorted));
        for (int a = 0; a < 5; a++)
            for (int b = a + 1; b < 5; b++)
                if (sorted[b] < sorted[a]) {
                    float t = sorted[a];
                    sorted[a] = sorted[b];
                    sorted[b] = t;
                }
        for (int p = 0; p < 120; p++) {
            int idx[5] = {0, 1, 2, 3, 4}, r = p;
            float v[5];
            for (int k = 5; k > 1; k--) { /* the p-th permutation (factorial number system) */
                int j = r % k, t = idx[k - 1];
                r /= k;
                idx[k - 1] = idx[j];
                idx[j] = t;
            }
            for (int k = 0; k < 5; k++)
                v[k] = vals[s][idx[k]];
            assert_true(tc_qd_median5(v) == sorted[2]);
        }
    }
    /* Every 5-tuple of 0..4, ties of every shape included: the median is the count's middle. */
    for (int t = 0; t < 5 * 5 * 5 * 5 * 5; t++) {
        float v[5];
        int below = 0, r = t, want;
        for (int k = 0; k < 5; k++, r /= 5)
            v[k] = (float)(r % 5);
        for (want = 0; want < 5; want++) {
            below = 0;
            for (int k = 0; k < 5; k++)
                below += v[k] <= (float)want;
            if (below >= 3)
                break;
        }
        assert_true(tc_qd_median5(v) == (float)want);
    }
}

static void test_spike_once(void **state)
{
    log_t l = {0};
    tc_qd *d = new_detector(&l, 1);

    (void)state;
    for (int i = 0; i < 200; i++)
        feed(d, "dev-a", i, i == 100 ? 25.0 : base(i));
    /* One spike, opened and resolved when the series came back at reading 101. */
    assert_int_equal(l.n, 2);
    assert_int_equal(l.f[0].kind, TC_QD_SPIKE);
    assert_string_equal(l.f[0].device, "dev-a");
    assert_int_equal(l.f[0].metric, 0);
    assert_true(l.f[0].start == T0 + 100 * CADENCE && l.f[0].end == 0);
    assert_true(fabs(l.f[0].observed - 25.0) < 1e-4);
    /* Expected: the median of readings 95..99 = {20.1, 20.0, 20.1, 20.2, 20.1} (+ the small
     * term 0.003 x (i mod 3): 95 -> 20.106, 96 -> 20.0, 97 -> 20.103, 98 -> 20.206, 99 ->
     * 20.1): 20.103. */
    assert_true(fabs(l.f[0].expected - 20.103) < 1e-4);
    assert_true(l.f[0].score >= 7.0);
    assert_int_equal(l.f[1].kind, TC_QD_SPIKE);
    assert_true(l.f[1].start == T0 + 100 * CADENCE && l.f[1].end == T0 + 100 * CADENCE);
    tc_qd_destroy(d);
}

static void test_level_shift_is_drift_not_spike(void **state)
{
    log_t l = {0};
    tc_qd *d = new_detector(&l, 1);
    int drift_open = 0;

    (void)state;
    for (int i = 0; i < 400; i++)
        feed(d, "dev-b", i, base(i) + (i >= 300 ? 5.0 : 0.0));
    for (int k = 0; k < l.n; k++) {
        assert_int_not_equal(l.f[k].kind, TC_QD_SPIKE); /* a step is not a spike */
        if (l.f[k].kind == TC_QD_DRIFT && !l.f[k].end) {
            drift_open++;
            /* The excursion begins once the spike candidate (readings 300..303) is given up. */
            assert_true(l.f[k].start >= T0 + 300 * CADENCE && l.f[k].start <= T0 + 304 * CADENCE);
        }
    }
    assert_int_equal(drift_open, 1);
    tc_qd_destroy(d);
}

static void test_steady_slope_is_not_drift(void **state)
{
    log_t l = {0};
    tc_qd *d = new_detector(&l, 1);

    (void)state;
    /* A draining battery: -0.001 a reading, quantised to 0.01 (runs of ten equal values). */
    for (int i = 0; i < 3000; i++)
        feed(d, "battery", i, round((90.0 - 0.001 * i) * 100.0) / 100.0);
    assert_int_equal(l.n, 0);
    tc_qd_destroy(d);
}

static void test_ramp_is_drift(void **state)
{
    log_t l = {0};
    tc_qd *d = new_detector(&l, 1);

    (void)state;
    for (int i = 0; i < 600; i++)
        feed(d, "dev-r", i, base(i) + (i >= 400 ? 0.05 * (i - 400) : 0.0));
    assert_true(l.n >= 1);
    assert_int_equal(l.f[0].kind, TC_QD_DRIFT);
    assert_true(l.f[0].end == 0 && l.f[0].start >= T0 + 400 * CADENCE);
    tc_qd_destroy(d);
}

static void test_stuck(void **state)
{
    log_t l = {0};
    tc_qd *d = new_detector(&l, 1);

    (void)state;
    for (int i = 0; i < 300; i++)
        feed(d, "dev-s", i, i >= 200 && i < 230 ? 20.15 : base(i));
    /* Threshold: max(stuck_n = 10, 4 x the usual run of 1) = 10 equal readings: opened at
     * reading 209, starting at 200; resolved by reading 230, ending at 229. */
    assert_int_equal(l.n, 2);
    assert_int_equal(l.f[0].kind, TC_QD_STUCK);
    assert_true(l.f[0].start == T0 + 200 * CADENCE && l.f[0].end == 0);
    assert_true(l.f[0].score == 10.0 && fabs(l.f[0].observed - 20.15) < 1e-4);
    assert_int_equal(l.f[1].kind, TC_QD_STUCK);
    assert_true(l.f[1].start == T0 + 200 * CADENCE && l.f[1].end == T0 + 229 * CADENCE);
    assert_true(l.f[1].score == 30.0); /* the peak: the whole run */
    tc_qd_destroy(d);
}

static void test_silence(void **state)
{
    log_t l = {0};
    tc_qd *d = new_detector(&l, 1);
    int64_t last = T0 + 99 * CADENCE;

    (void)state;
    for (int i = 0; i < 100; i++)
        feed(d, "dev-q", i, base(i));
    /* Usual interval 10 s exactly; silence_factor 4: 40 s of quiet is not yet silence. */
    tc_qd_tick(d, last + 40000000);
    assert_int_equal(l.n, 0);
    tc_qd_tick(d, last + 41000000);
    assert_int_equal(l.n, 1);
    assert_int_equal(l.f[0].kind, TC_QD_SILENCE);
    assert_int_equal(l.f[0].metric, -1);
    assert_true(l.f[0].start == last + CADENCE && l.f[0].end == 0);
    assert_true(fabs(l.f[0].observed - 41.0) < 1e-9 && fabs(l.f[0].expected - 10.0) < 1e-9);
    tc_qd_tick(d, last + 60000000); /* still silent: nothing new */
    assert_int_equal(l.n, 1);
    feed(d, "dev-q", 109, base(109));
    assert_int_equal(l.n, 2);
    assert_true(l.f[1].start == last + CADENCE && l.f[1].end == T0 + 109 * CADENCE);
    /* A device whose clock is behind the watermark: silent at the tick, then its next reading
     * comes before the silence's nominal start. The finding still ends no earlier than it began
     * (the table refuses end < start). */
    l.n = 0;
    /* The 100 s gap taught the usual interval only 2 x 10 s: 10 + 0.1 x (20 - 10) = 11 s. */
    tc_qd_tick(d, T0 + 109 * CADENCE + 50000000);
    assert_int_equal(l.n, 1);
    assert_true(l.f[0].start == T0 + 109 * CADENCE + 11000000);
    tc_qd_observe(d, "dev-q", 5, T0 + 109 * CADENCE + 5000000, (double[]){20.0}, NULL);
    assert_int_equal(l.n, 2);
    assert_true(l.f[1].start == l.f[0].start && l.f[1].end == l.f[1].start);
    tc_qd_destroy(d);
}

static void test_rate(void **state)
{
    char errstr[TC_ERRSTR_MAX];
    log_t l = {0};
    tc_qd_options o;
    tc_qd *d;

    (void)state;
    tc_qd_options_default(&o, 1, 4);
    o.rate_max[0] = 0.1; /* per second: 1.0 per 10 s reading */
    d = tc_qd_new(&o, on_finding, &l, errstr, sizeof(errstr));
    assert_non_null(d);
    for (int i = 0; i < 60; i++)
        feed(d, "dev-v", i, i < 50 ? base(i) : base(i) + 3.0 * (i - 49));
    /* Readings 50..59 climb 3.0 per 10 s = 0.3/s: open at 50 (score 0.3 / 0.1 = 3, up to
     * rounding of the base pattern), once. */
    assert_int_equal(l.n, 1);
    assert_int_equal(l.f[0].kind, TC_QD_RATE);
    assert_true(l.f[0].start == T0 + 50 * CADENCE);
    assert_true(l.f[0].observed > 0.28 && l.f[0].observed < 0.33);
    feed(d, "dev-v", 60, base(60) + 3.0 * 10); /* flat: rate ~0 < 0.05 resolves */
    assert_int_equal(l.n, 2);
    assert_true(l.f[1].end == T0 + 59 * CADENCE);
    tc_qd_destroy(d);
}

static void test_out_of_order_ignored(void **state)
{
    log_t l = {0};
    tc_qd *d = new_detector(&l, 1);

    (void)state;
    for (int i = 0; i < 100; i++)
        feed(d, "dev-o", i, base(i));
    feed(d, "dev-o", 50, 99.0); /* old and wild: not fed to series built on order */
    for (int i = 100; i < 110; i++)
        feed(d, "dev-o", i, base(i));
    assert_int_equal(l.n, 0);
    tc_qd_destroy(d);
}

/* Feed readings [from, to) of three devices; dev-2 is stuck from 150 on. */
static void feed_fleet(tc_qd *d, int from, int to)
{
    for (int i = from; i < to; i++) {
        feed(d, "dev-0", i, base(i));
        feed(d, "dev-1", i, base(i) + 5);
        feed(d, "dev-2", i, i >= 150 ? 20.15 : base(i));
    }
}

static void test_checkpoint_restart_mid_finding(void **state)
{
    char errstr[TC_ERRSTR_MAX];
    log_t la = {0}, lb = {0};
    tc_qd *a = new_detector(&la, 1), *b = new_detector(&lb, 1);
    unsigned char *buf = NULL;
    size_t len = 0;

    (void)state;
    feed_fleet(a, 0, 200);
    assert_int_equal(la.n, 1); /* dev-2 stuck, open */
    assert_int_equal(la.f[0].kind, TC_QD_STUCK);
    assert_int_equal(tc_qd_save(a, &buf, &len, errstr, sizeof(errstr)), TC_OK);
    /* "Restart": a fresh detector loads the checkpoint; loading emits nothing. */
    assert_int_equal(tc_qd_load(b, buf, len, errstr, sizeof(errstr)), TC_OK);
    assert_int_equal(lb.n, 0);
    la.n = 0;
    feed_fleet(a, 200, 260);
    feed(a, "dev-2", 260, base(260));
    feed_fleet(b, 200, 260);
    feed(b, "dev-2", 260, base(260));
    /* Both go on identically: no second open, one resolve ending at 259. */
    assert_int_equal(lb.n, la.n);
    assert_int_equal(lb.n, 1);
    assert_memory_equal(&lb.f[0], &la.f[0], sizeof(logged));
    assert_int_equal(lb.f[0].kind, TC_QD_STUCK);
    assert_true(lb.f[0].start == T0 + 150 * CADENCE && lb.f[0].end == T0 + 259 * CADENCE);
    free(buf);
    tc_qd_destroy(a);
    tc_qd_destroy(b);
}

/* Two metrics a reading: metric 0 quiet, metric 1 with a spike at 100 and stuck from 150. */
static void feed_pair(tc_qd *d, const char *dev, int from, int to)
{
    for (int i = from; i < to; i++) {
        double v[2] = {base(i), i == 100 ? 25.0 : i >= 150 ? 20.15 : base(i)};
        tc_qd_observe(d, dev, strlen(dev), T0 + i * CADENCE, v, NULL);
    }
}

static tc_qd *new_watching(log_t *l, uint32_t watch)
{
    char errstr[TC_ERRSTR_MAX];
    tc_qd_options o;
    tc_qd *d;

    tc_qd_options_default(&o, 2, 16);
    o.watch = watch;
    d = tc_qd_new(&o, on_finding, l, errstr, sizeof(errstr));
    assert_non_null(d);
    return d;
}

/* A series left out of the watch gives no finding and its state stays as it was (the
 * checkpoint of a detector fed the other series alone is the same bytes); the watched ones are
 * untouched by it. A checkpoint taken while the left-out series had a finding open loads, and
 * tc_qd_resolve_unwatched closes that finding once, at the series' last reading. */
static void test_watch(void **state)
{
    char errstr[TC_ERRSTR_MAX];
    log_t la = {0}, lb = {0}, lc = {0};
    tc_qd *all = new_watching(&la, 3), *first = new_watching(&lb, 1), *alone;
    unsigned char *buf = NULL, *buf2 = NULL;
    size_t len = 0, len2 = 0;
    tc_qd_options o;

    (void)state;
    /* Watching both: the spike of metric 1 (opened, resolved), its stuck run opened at 159. */
    feed_pair(all, "dev-w", 0, 200);
    assert_int_equal(la.n, 3);
    assert_true(la.f[0].kind == TC_QD_SPIKE && la.f[0].metric == 1 && la.f[0].end == 0);
    assert_true(la.f[1].kind == TC_QD_SPIKE && la.f[1].metric == 1 && la.f[1].end != 0);
    assert_true(la.f[2].kind == TC_QD_STUCK && la.f[2].metric == 1 && la.f[2].end == 0);
    /* Watching metric 0 only: nothing, and the same state as a detector fed metric 0 alone. */
    feed_pair(first, "dev-w", 0, 200);
    assert_int_equal(lb.n, 0);
    alone = new_watching(&lc, 1);
    for (int i = 0; i < 200; i++)
        feed_first(alone, "dev-w", i, base(i));
    assert_int_equal(tc_qd_save(first, &buf, &len, errstr, sizeof(errstr)), TC_OK);
    assert_int_equal(tc_qd_save(alone, &buf2, &len2, errstr, sizeof(errstr)), TC_OK);
    assert_true(len == len2 && memcmp(buf, buf2, len) == 0);
    free(buf);
    free(buf2);
    assert_int_equal(tc_qd_resolve_unwatched(first), 0);
    /* The checkpoint of the detector watching both, with its stuck finding open, loads into one
     * watching metric 0: loading emits nothing; the finding is closed once, ending at reading
     * 199, and only that device counts as changed. */
    feed_pair(all, "dev-x", 0, 120); /* a device with no open finding (its spike resolved) */
    assert_int_equal(tc_qd_save(all, &buf, &len, errstr, sizeof(errstr)), TC_OK);
    tc_qd_destroy(first);
    lb.n = 0;
    first = new_watching(&lb, 1);
    assert_int_equal(tc_qd_load(first, buf, len, errstr, sizeof(errstr)), TC_OK);
    assert_int_equal(lb.n, 0);
    assert_int_equal(tc_qd_changed(first, 0), 0);
    assert_int_equal(tc_qd_resolve_unwatched(first), 1);
    assert_int_equal(lb.n, 1);
    assert_true(lb.f[0].kind == TC_QD_STUCK && lb.f[0].metric == 1);
    assert_string_equal(lb.f[0].device, "dev-w");
    assert_true(lb.f[0].start == T0 + 150 * CADENCE && lb.f[0].end == T0 + 199 * CADENCE);
    assert_int_equal(tc_qd_changed(first, 0), 1);
    assert_int_equal(tc_qd_resolve_unwatched(first), 0);
    free(buf);
    /* A watch naming a series past the metrics is refused. */
    tc_qd_options_default(&o, 2, 16);
    o.watch = 4;
    assert_null(tc_qd_new(&o, NULL, NULL, errstr, sizeof(errstr)));
    assert_non_null(strstr(errstr, "watch"));
    tc_qd_destroy(all);
    tc_qd_destroy(first);
    tc_qd_destroy(alone);
}

static void test_checkpoint_corruption(void **state)
{
    char errstr[TC_ERRSTR_MAX];
    log_t la = {0}, lb = {0};
    tc_qd *a = new_detector(&la, 1), *b = new_detector(&lb, 1), *c;
    unsigned char *good = NULL, *mine = NULL, *again = NULL, *bad;
    size_t len = 0, mlen = 0, alen = 0;
    tc_qd_options o;

    (void)state;
    feed_fleet(a, 0, 100);
    feed(b, "other", 0, 1.0);
    assert_int_equal(tc_qd_save(a, &good, &len, errstr, sizeof(errstr)), TC_OK);
    assert_int_equal(tc_qd_save(b, &mine, &mlen, errstr, sizeof(errstr)), TC_OK);
    bad = malloc(len);
    assert_non_null(bad);
    /* Every single-byte change is refused (the checksum, or a field check), and b keeps its
     * own state byte for byte. */
    for (size_t i = 0; i < len; i++) {
        memcpy(bad, good, len);
        bad[i] ^= 0x5a;
        errstr[0] = '\0';
        assert_int_equal(tc_qd_load(b, bad, len, errstr, sizeof(errstr)), TC_ERR_INVALID);
        assert_true(errstr[0] != '\0');
    }
    /* Every truncation too. */
    for (size_t n = 0; n < len; n += (n < 64 ? 1 : 37))
        assert_int_equal(tc_qd_load(b, good, n, errstr, sizeof(errstr)), TC_ERR_INVALID);
    assert_int_equal(tc_qd_save(b, &again, &alen, errstr, sizeof(errstr)), TC_OK);
    assert_int_equal(alen, mlen);
    assert_memory_equal(again, mine, mlen);
    /* A checkpoint of another shape (two metrics) is refused even with a good checksum. */
    tc_qd_options_default(&o, 2, 16);
    c = tc_qd_new(&o, NULL, NULL, errstr, sizeof(errstr));
    assert_non_null(c);
    assert_int_equal(tc_qd_load(c, good, len, errstr, sizeof(errstr)), TC_ERR_INVALID);
    assert_non_null(strstr(errstr, "metrics"));
    /* And the intact one loads. */
    assert_int_equal(tc_qd_load(b, good, len, errstr, sizeof(errstr)), TC_OK);
    free(good);
    free(mine);
    free(again);
    free(bad);
    tc_qd_destroy(a);
    tc_qd_destroy(b);
    tc_qd_destroy(c);
}

/* FNV-1a 64 a byte at a time: version 1's checksum, written out here independently. */
static uint64_t fnv_bytes(const unsigned char *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ULL;

    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3ULL;
    return h;
}

/* Version 2's checksum as its comment in detect.c defines it, written out here from bytes: word j
 * (little-endian) of every 32 bytes goes to sum j, the words and bytes after the last 32 to sum 0,
 * the four folded into sum 0 by the same step. */
static uint64_t fnv_words(const unsigned char *p, size_t n)
{
    uint64_t h[4];
    size_t i = 0, full = n / 32 * 32;

    for (int k = 0; k < 4; k++)
        h[k] = UINT64_C(0xcbf29ce484222325) ^ (uint64_t)k;
    for (; i + 8 <= n; i += 8) {
        uint64_t w = 0;
        size_t sum = i < full ? (i / 8) % 4 : 0;
        for (int b = 0; b < 8; b++)
            w |= (uint64_t)p[i + (size_t)b] << (8 * b);
        h[sum] = (h[sum] ^ w) * 0x100000001b3ULL;
    }
    for (; i < n; i++)
        h[0] = (h[0] ^ p[i]) * 0x100000001b3ULL;
    for (int k = 1; k < 4; k++)
        h[0] = (h[0] ^ h[k]) * 0x100000001b3ULL;
    return h[0];
}

/* The checksum over every length 0 to 100 and every alignment of the start: each word is read
 * as its bytes say, wherever it lies. */
static void test_checksum_words(void **state)
{
    unsigned char buf[128];

    (void)state;
    for (size_t i = 0; i < sizeof(buf); i++)
        buf[i] = (unsigned char)(i * 37 + 11);
    for (size_t at = 0; at < 8; at++)
        for (size_t n = 0; n <= 100; n++)
            assert_true(tc_qd_checksum(buf + at, n, 2) == fnv_words(buf + at, n));
    assert_true(tc_qd_checksum(buf, 5, 1) == fnv_bytes(buf, 5));
}

/* A checkpoint saved into the caller's buffer: a large enough one is written over (the same
 * buffer, the bytes tc_qd_save writes), a small one is replaced by one of the checkpoint's size. */
static void test_checkpoint_into_kept_buffer(void **state)
{
    char errstr[TC_ERRSTR_MAX];
    log_t la = {0};
    tc_qd *a = new_detector(&la, 1);
    unsigned char *want = NULL, *buf, *kept;
    size_t len = 0, cap, got = 0;

    (void)state;
    feed_fleet(a, 0, 50);
    assert_int_equal(tc_qd_save(a, &want, &len, errstr, sizeof(errstr)), TC_OK);
    assert_true(tc_qd_save_size(a) >= len); /* every field of every series: a bound */
    cap = 16;
    buf = malloc(cap);
    assert_non_null(buf);
    assert_int_equal(tc_qd_save_reuse(a, &buf, &cap, &got, errstr, sizeof(errstr)), TC_OK);
    assert_int_equal(got, len);
    assert_int_equal(cap, tc_qd_save_size(a));
    assert_memory_equal(buf, want, len);
    free(buf);
    cap = 2 * len;
    kept = buf = malloc(cap);
    assert_non_null(buf);
    memset(buf, 0xee, cap);
    assert_int_equal(tc_qd_save_reuse(a, &buf, &cap, &got, errstr, sizeof(errstr)), TC_OK);
    assert_ptr_equal(buf, kept);
    assert_int_equal(cap, 2 * len);
    assert_int_equal(got, len);
    assert_memory_equal(buf, want, len);
    free(buf);
    free(want);
    tc_qd_destroy(a);
}

/* The records of an incremental checkpoint, as a store keyed by device keeps them (an upsert). */
typedef struct records {
    char device[8][16];
    unsigned char *rec[8];
    size_t len[8];
    int n, written; /* devices held, records the last save wrote */
} records;

static int keep_record(void *opaque, const char *device, size_t len, const unsigned char *record,
                       size_t record_len)
{
    records *r = opaque;
    int i = 0;

    while (i < r->n && strcmp(r->device[i], device) != 0)
        i++;
    assert_true(i < 8 && len < sizeof(r->device[0]));
    if (i == r->n)
        snprintf(r->device[r->n++], sizeof(r->device[0]), "%s", device);
    free(r->rec[i]);
    r->rec[i] = malloc(record_len);
    assert_non_null(r->rec[i]);
    memcpy(r->rec[i], record, record_len);
    r->len[i] = record_len;
    r->written++;
    return 0;
}

static uint32_t save_changed(tc_qd *d, uint32_t since, records *r)
{
    char errstr[TC_ERRSTR_MAX];
    uint32_t cut = 0;

    r->written = 0;
    assert_int_equal(tc_qd_save_changed(d, since, keep_record, r, &cut, errstr, sizeof(errstr)),
                     TC_OK);
    return cut;
}

/* Whole checkpoints of a and b are the same bytes: the same state, device for device. */
static void assert_same_state(const tc_qd *a, const tc_qd *b)
{
    char errstr[TC_ERRSTR_MAX];
    unsigned char *sa = NULL, *sb = NULL;
    size_t na = 0, nb = 0;

    assert_int_equal(tc_qd_save(a, &sa, &na, errstr, sizeof(errstr)), TC_OK);
    assert_int_equal(tc_qd_save(b, &sb, &nb, errstr, sizeof(errstr)), TC_OK);
    assert_int_equal(na, nb);
    assert_memory_equal(sa, sb, na);
    free(sa);
    free(sb);
}

/* Readings [from, to) of feed_fleet's three devices into a detector of two metrics, the second
 * never fed: its series stay as a new detector makes them, all zero. */
static void feed_two_fleet(tc_qd *d, int from, int to)
{
    for (int i = from; i < to; i++) {
        feed_first(d, "dev-0", i, base(i));
        feed_first(d, "dev-1", i, base(i) + 5);
        feed_first(d, "dev-2", i, i >= 150 ? 20.15 : base(i));
    }
}

/* Version 2's bytes, written before version 3 and kept here, not made by the encoder under test. */
static const unsigned char checkpoint_v2[] = {
#include "quality_checkpoint_v2.inc"
};

/* A stored version 2 checkpoint loads into the state the same readings make now (their version 3
 * checkpoints are the same bytes, about half as many), and it goes on the same: the open stuck
 * finding of dev-2 resolves once in both. As version 1 wrote it -- version 1 in the header, the
 * checksum over bytes -- it loads too; under the other version's checksum, or as a version not
 * known, it is refused. */
static void test_checkpoint_versions_1_and_2_load(void **state)
{
    char errstr[TC_ERRSTR_MAX];
    log_t la = {0}, lb = {0}, lc = {0};
    tc_qd *a = new_detector(&la, 2), *b = new_detector(&lb, 2), *c = new_detector(&lc, 2);
    size_t len = sizeof(checkpoint_v2), vlen = 0;
    unsigned char *v1 = malloc(len), *v3 = NULL;
    uint64_t sum;

    (void)state;
    assert_non_null(v1);
    feed_two_fleet(a, 0, 200);
    assert_int_equal(la.n, 1); /* dev-2 stuck, open */
    assert_int_equal(tc_qd_load(b, checkpoint_v2, len, errstr, sizeof(errstr)), TC_OK);
    assert_same_state(a, b);
    assert_int_equal(tc_qd_save(b, &v3, &vlen, errstr, sizeof(errstr)), TC_OK);
    assert_int_equal(v3[4], 3);
    assert_true(vlen * 2 < len + 100); /* the never-fed series and the zeros left out */
    feed_two_fleet(a, 200, 201);
    feed_two_fleet(b, 200, 201);
    for (int i = 201; i < 210; i++) {
        feed_first(a, "dev-2", i, base(i));
        feed_first(b, "dev-2", i, base(i));
    }
    assert_int_equal(la.n, 2);
    assert_int_equal(lb.n, 1); /* resolved; opened before the checkpoint, not again */
    assert_int_equal(lb.f[0].end, la.f[1].end);
    assert_int_equal(lb.f[0].start, la.f[1].start);
    assert_same_state(a, b);
    /* Version 1: the same bytes with version 1 and the byte-wise checksum. */
    memcpy(v1, checkpoint_v2, len);
    v1[4] = 1;
    assert_int_equal(tc_qd_load(c, v1, len, errstr, sizeof(errstr)), TC_ERR_INVALID);
    assert_non_null(strstr(errstr, "checksum"));
    sum = fnv_bytes(v1, len - 8);
    for (int k = 0; k < 8; k++)
        v1[len - 8 + (size_t)k] = (unsigned char)(sum >> (8 * k));
    assert_int_equal(tc_qd_load(c, v1, len, errstr, sizeof(errstr)), TC_OK);
    v1[4] = 9; /* a version not known, under its own checksum */
    sum = tc_qd_checksum(v1, len - 8, 9);
    for (int k = 0; k < 8; k++)
        v1[len - 8 + (size_t)k] = (unsigned char)(sum >> (8 * k));
    assert_int_equal(tc_qd_load(c, v1, len, errstr, sizeof(errstr)), TC_ERR_INVALID);
    assert_non_null(strstr(errstr, "version"));
    /* c kept version 1's state: the 200 readings' (a and b have moved on). */
    tc_qd_destroy(a);
    la.n = 0;
    a = new_detector(&la, 2);
    feed_two_fleet(a, 0, 200);
    assert_same_state(a, c);
    free(v1);
    free(v3);
    tc_qd_destroy(a);
    tc_qd_destroy(b);
    tc_qd_destroy(c);
}

/* Version 3 keeps one encoding a state: a field its mask names must not be zero, and no bit past
 * the last field may be set. A series never fed is its mask alone; naming its first field (the
 * time of its last value, 8 bytes) with the value 1 loads, with 0 it is refused; so is the mask's
 * top bit. Each variant is made from the bytes tc_qd_save wrote, its checksum written again. */
static size_t put_mask_variant(unsigned char *out, const unsigned char *in, size_t len, size_t at,
                               uint32_t mask, const unsigned char *field, size_t nfield)
{
    size_t n = 0;
    uint64_t sum;

    memcpy(out, in, at);
    n = at;
    for (int k = 0; k < 4; k++)
        out[n++] = (unsigned char)(mask >> (8 * k));
    if (nfield)
        memcpy(out + n, field, nfield);
    n += nfield;
    memcpy(out + n, in + at + 4, len - 8 - (at + 4));
    n += len - 8 - (at + 4);
    sum = tc_qd_checksum(out, n, 3);
    for (int k = 0; k < 8; k++)
        out[n++] = (unsigned char)(sum >> (8 * k));
    return n;
}

static void test_checkpoint_version_3_is_canonical(void **state)
{
    char errstr[TC_ERRSTR_MAX];
    log_t la = {0}, lb = {0};
    tc_qd *a = new_detector(&la, 2), *b = new_detector(&lb, 2);
    unsigned char *good = NULL, *again = NULL, bad[1024];
    static const unsigned char one[8] = {1}, zero[8] = {0};
    size_t len = 0, alen = 0, n, at;

    (void)state;
    /* One device: header 28, id length 2 and "dev-0", its own state 25, then series 0. */
    for (int i = 0; i < 50; i++)
        feed_first(a, "dev-0", i, base(i));
    assert_int_equal(tc_qd_save(a, &good, &len, errstr, sizeof(errstr)), TC_OK);
    assert_true(len < sizeof(bad) - 16);
    /* Series 1, never fed, is its mask alone: the last four bytes before the checksum. */
    at = len - 8 - 4;
    assert_memory_equal(good + at, zero, 4);
    n = put_mask_variant(bad, good, len, at, 1, one, 8);
    assert_int_equal(n, len + 8);
    assert_int_equal(tc_qd_load(b, bad, n, errstr, sizeof(errstr)), TC_OK);
    assert_int_equal(tc_qd_save(b, &again, &alen, errstr, sizeof(errstr)), TC_OK);
    assert_int_equal(alen, n);
    assert_memory_equal(again, bad, n); /* what was read is written back */
    n = put_mask_variant(bad, good, len, at, 1, zero, 8);
    assert_int_equal(tc_qd_load(b, bad, n, errstr, sizeof(errstr)), TC_ERR_INVALID);
    n = put_mask_variant(bad, good, len, at, UINT32_C(1) << 31, NULL, 0);
    assert_int_equal(tc_qd_load(b, bad, n, errstr, sizeof(errstr)), TC_ERR_INVALID);
    assert_non_null(strstr(errstr, "device 0"));
    /* And the checkpoint itself loads. */
    assert_int_equal(tc_qd_load(b, good, len, errstr, sizeof(errstr)), TC_OK);
    assert_same_state(a, b);
    free(good);
    free(again);
    tc_qd_destroy(a);
    tc_qd_destroy(b);
}

static void test_checkpoint_changed_only(void **state)
{
    char errstr[TC_ERRSTR_MAX];
    log_t la = {0}, lb = {0}, lc = {0};
    tc_qd *a = new_detector(&la, 1), *b = new_detector(&lb, 1), *c = new_detector(&lc, 1);
    records r = {0};
    unsigned char *blob = NULL, *now = NULL, *got = NULL;
    size_t blen = 0, nlen = 0, glen = 0;
    uint32_t cut1, cut2, cut3;

    (void)state;
    feed_fleet(a, 0, 200);
    /* The first checkpoint writes every device; one with nothing fed since writes none. */
    cut1 = save_changed(a, 0, &r);
    assert_int_equal(r.written, 3);
    assert_int_equal(tc_qd_changed(a, cut1), 0);
    cut2 = save_changed(a, cut1, &r);
    assert_int_equal(r.written, 0);
    assert_true(cut2 > cut1);
    assert_int_equal(tc_qd_save(a, &blob, &blen, errstr, sizeof(errstr)), TC_OK);
    /* One device reports: only its record is written. */
    feed(a, "dev-1", 200, base(200) + 5);
    feed(a, "dev-1", 201, base(201) + 5);
    assert_int_equal(tc_qd_changed(a, cut2), 1);
    cut3 = save_changed(a, cut2, &r);
    assert_int_equal(r.written, 1);
    assert_string_equal(r.device[1], "dev-1");
    /* A checkpoint that was not made durable is covered by the next one from the same since. */
    (void)save_changed(a, cut2, &r);
    assert_int_equal(r.written, 1);
    assert_int_equal(tc_qd_changed(a, cut3), 0);
    assert_int_equal(tc_qd_save(a, &now, &nlen, errstr, sizeof(errstr)), TC_OK);
    /* A silence opened by a tick changes the device too. */
    tc_qd_tick(a, T0 + 400 * CADENCE);
    assert_int_equal(tc_qd_changed(a, cut3), 3);

    /* Restart from the records: the same state as the running detector's at cut3. */
    assert_int_equal(tc_qd_merge(b, (const unsigned char *const *)r.rec, r.len, (size_t)r.n, errstr,
                                 sizeof(errstr)),
                     TC_OK);
    assert_int_equal(tc_qd_changed(b, 0), 0); /* what was read is stored: nothing to write */
    assert_int_equal(
        tc_qd_merge(c, (const unsigned char *const *)&blob, &blen, 1, errstr, sizeof(errstr)),
        TC_OK);
    assert_int_equal(tc_qd_changed(c, 0), 0);
    /* Over an older whole checkpoint (tc_qd_load), a newer record wins; nothing read counts as
     * changed, and a cut without writing moves past what changed. */
    tc_qd_destroy(c);
    c = new_detector(&lc, 1);
    assert_int_equal(tc_qd_load(c, blob, blen, errstr, sizeof(errstr)), TC_OK);
    assert_int_equal(tc_qd_changed(c, 0), 0);
    assert_int_equal(tc_qd_merge(c, (const unsigned char *const *)&r.rec[1], &r.len[1], 1, errstr,
                                 sizeof(errstr)),
                     TC_OK);
    assert_int_equal(tc_qd_changed(c, 0), 0);
    assert_int_equal(tc_qd_devices(c), 3);
    cut3 = tc_qd_cut(a);
    assert_int_equal(tc_qd_changed(a, cut3), 0);
    assert_same_state(b, c);
    assert_int_equal(tc_qd_save(b, &got, &glen, errstr, sizeof(errstr)), TC_OK);
    assert_int_equal(glen, nlen);
    assert_memory_equal(got, now, nlen);
    /* A device in two records, or a corrupted record, refuses all of them; b is unchanged. */
    {
        const unsigned char *twice[2] = {r.rec[0], r.rec[0]};
        size_t lens[2] = {r.len[0], r.len[0]};
        unsigned char *bad = malloc(r.len[2]);
        assert_non_null(bad);
        memcpy(bad, r.rec[2], r.len[2]);
        bad[r.len[2] / 2] ^= 0x5a;
        assert_int_equal(tc_qd_merge(b, twice, lens, 2, errstr, sizeof(errstr)), TC_ERR_INVALID);
        assert_int_equal(tc_qd_merge(b, (const unsigned char *const *)&bad, &r.len[2], 1, errstr,
                                     sizeof(errstr)),
                         TC_ERR_INVALID);
        assert_non_null(strstr(errstr, "record 1"));
        free(bad);
    }
    assert_same_state(b, c);
    assert_int_equal(lb.n, 0); /* loading emits nothing */
    for (int i = 0; i < r.n; i++)
        free(r.rec[i]);
    free(blob);
    free(now);
    free(got);
    tc_qd_destroy(a);
    tc_qd_destroy(b);
    tc_qd_destroy(c);
}

static void test_batch_equals_one_by_one(void **state)
{
    enum { ROWS = 3000, DEVS = 7 };
    static const char *names[DEVS] = {"a", "bb", "ccc", "dddd", "e", "ff", "ggg"};
    static double col0[ROWS], col1[ROWS];
    static const char *ids[ROWS];
    static size_t lens[ROWS];
    static int64_t t[ROWS];
    static uint8_t p1[ROWS];
    static long index[ROWS], index_c[ROWS];
    /* The same columns backwards, read through rows (the monitor's lane selection). */
    static double rev0[ROWS], rev1[ROWS];
    static uint8_t rev_p1[ROWS];
    static size_t rows[ROWS];
    const double *cols[2] = {col0, col1}, *rev_cols[2] = {rev0, rev1};
    const uint8_t *present[2] = {NULL, p1}, *rev_present[2] = {NULL, rev_p1};
    char errstr[TC_ERRSTR_MAX];
    log_t la = {0}, lb = {0}, lc = {0};
    tc_qd_options o;
    tc_qd *a, *b, *c;
    uint8_t all[ROWS];

    (void)state;
    memset(all, 1, sizeof(all));
    present[0] = all;
    for (int k = 0; k < ROWS; k++) {
        int dev = k % DEVS, i = k / DEVS;
        ids[k] = names[dev];
        lens[k] = strlen(names[dev]);
        t[k] = T0 + i * CADENCE + dev;
        /* A spike, a stuck run and a shift among them, and humidity absent now and then. */
        col0[k] = base(i) + (dev == 1 && i == 200 ? 9.0 : 0) + (dev == 2 && i > 300 ? 4.0 : 0);
        if (dev == 3 && i >= 100 && i < 140)
            col0[k] = 20.15;
        col1[k] = 50 + 0.1 * (i % 5);
        p1[k] = (uint8_t)(k % 11 != 0);
    }
    for (int k = 0; k < ROWS; k++) {
        rev0[ROWS - 1 - k] = col0[k];
        rev1[ROWS - 1 - k] = col1[k];
        rev_p1[ROWS - 1 - k] = p1[k];
        rows[k] = (size_t)(ROWS - 1 - k);
    }
    rev_present[0] = all;
    tc_qd_options_default(&o, 2, 16);
    a = tc_qd_new(&o, on_finding, &la, errstr, sizeof(errstr));
    b = tc_qd_new(&o, on_finding, &lb, errstr, sizeof(errstr));
    c = tc_qd_new(&o, on_finding, &lc, errstr, sizeof(errstr));
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(c);
    for (int k = 0; k < ROWS; k++) {
        double v[2] = {col0[k], col1[k]};
        uint8_t pr[2] = {1, p1[k]};
        tc_qd_observe(a, ids[k], lens[k], t[k], v, pr);
    }
    /* Batches of odd sizes, across group boundaries. */
    for (int at = 0; at < ROWS; at += 333) {
        size_t n = ROWS - at < 333 ? (size_t)(ROWS - at) : 333;
        const double *bc[2] = {cols[0] + at, cols[1] + at};
        const uint8_t *pr[2] = {present[0] + at, present[1] + at};
        tc_qd_observe_batch(b, n, &ids[at], &lens[at], &t[at], bc, pr, NULL, &index[at]);
        tc_qd_observe_batch(c, n, &ids[at], &lens[at], &t[at], rev_cols, rev_present, &rows[at],
                            &index_c[at]);
    }
    /* Each reading's device index, as the shared id table has it. */
    for (int k = 0; k < ROWS; k++)
        assert_string_equal(tc_qids_id(tc_qd_ids(b), (size_t)index[k]), ids[k]);
    assert_true(la.n >= 3); /* the spike, the stuck run, the shift */
    assert_int_equal(lb.n, la.n);
    assert_memory_equal(lb.f, la.f, sizeof(logged) * (size_t)la.n);
    assert_same_state(a, b);
    /* Through rows: the same findings, state and indexes. */
    assert_int_equal(lc.n, la.n);
    assert_memory_equal(lc.f, la.f, sizeof(logged) * (size_t)la.n);
    assert_same_state(a, c);
    assert_memory_equal(index_c, index, sizeof(index));
    tc_qd_destroy(a);
    tc_qd_destroy(b);
    tc_qd_destroy(c);
}

static void test_memory_bound(void **state)
{
    size_t per_series = tc_qd_memory_for(100000, 6) / 600000;

    (void)state;
    /* The stated budget: under 200 bytes a series, device and id overhead included. */
    assert_true(TC_QD_SERIES_BYTES < 200);
    assert_true(per_series < 200);
}

static void test_devices_cap(void **state)
{
    char errstr[TC_ERRSTR_MAX], id[16];
    log_t l = {0};
    tc_qd_options o;
    tc_qd_stats st;
    tc_qd *d;
    double v = 1;

    (void)state;
    tc_qd_options_default(&o, 1, 3);
    d = tc_qd_new(&o, on_finding, &l, errstr, sizeof(errstr));
    assert_non_null(d);
    for (int i = 0; i < 5; i++) {
        snprintf(id, sizeof(id), "d%d", i);
        tc_qd_observe(d, id, strlen(id), T0, &v, NULL);
    }
    tc_qd_observe(d, "with\0nul", 8, T0, &v, NULL);
    tc_qd_get_stats(d, &st);
    assert_int_equal(st.devices, 3);
    assert_int_equal(st.devices_refused, 3);
    tc_qd_destroy(d);
}

/* The id table hashes 8 bytes a step and pads the last word: ids of every length up to the cap,
 * ids that differ only in their last byte or only in length by a byte the padding holds (0x01),
 * each get their own index, found again after the table has doubled; a NUL anywhere, in a whole
 * word or in the padded tail, is refused, and so is an id over the cap. */
static void test_ids_every_length(void **state)
{
    char id[TC_QIDS_LEN_MAX + 1];
    tc_qids *t = tc_qids_new(4096);
    long first[TC_QIDS_LEN_MAX + 1], other[TC_QIDS_LEN_MAX + 1], padded[TC_QIDS_LEN_MAX + 1];

    (void)state;
    assert_non_null(t);
    memset(id, 'a', sizeof(id));
    for (size_t len = 1; len <= TC_QIDS_LEN_MAX; len++) {
        first[len] = tc_qids_find(t, id, len, 1);
        id[len - 1] = 'b';
        other[len] = tc_qids_find(t, id, len, 1);
        id[len - 1] = '\x01';
        padded[len] = tc_qids_find(t, id, len, 1);
        id[len - 1] = 'a';
        assert_true(first[len] >= 0 && other[len] >= 0 && padded[len] >= 0);
        assert_true(first[len] != other[len] && first[len] != padded[len]);
        assert_true(other[len] != padded[len]);
    }
    assert_int_equal(tc_qids_count(t), 3 * TC_QIDS_LEN_MAX); /* past 1,024 slots: it doubled */
    for (size_t len = 1; len <= TC_QIDS_LEN_MAX; len++) {
        assert_int_equal(tc_qids_find(t, id, len, 0), first[len]);
        id[len - 1] = 'b';
        assert_int_equal(tc_qids_find(t, id, len, 0), other[len]);
        id[len - 1] = '\x01';
        assert_int_equal(tc_qids_find(t, id, len, 0), padded[len]);
        id[len - 1] = 'a';
        assert_memory_equal(tc_qids_id(t, (size_t)first[len]), id, len);
        assert_int_equal(strlen(tc_qids_id(t, (size_t)first[len])), len);
    }
    for (size_t at = 0; at < 20; at++) {
        id[at] = '\0';
        assert_int_equal(tc_qids_find(t, id, 20, 1), -1);
        assert_int_equal(tc_qids_find(t, id, 13, 1), at < 13 ? -1 : first[13]);
        id[at] = 'a';
    }
    assert_int_equal(tc_qids_find(t, id, TC_QIDS_LEN_MAX + 1, 1), -1);
    assert_int_equal(tc_qids_find(t, id, 0, 1), -1);
    assert_int_equal(tc_qids_count(t), 3 * TC_QIDS_LEN_MAX);
    tc_qids_destroy(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ids_every_length),
        cmocka_unit_test(test_median5),
        cmocka_unit_test(test_spike_once),
        cmocka_unit_test(test_level_shift_is_drift_not_spike),
        cmocka_unit_test(test_steady_slope_is_not_drift),
        cmocka_unit_test(test_ramp_is_drift),
        cmocka_unit_test(test_stuck),
        cmocka_unit_test(test_silence),
        cmocka_unit_test(test_rate),
        cmocka_unit_test(test_out_of_order_ignored),
        cmocka_unit_test(test_checkpoint_restart_mid_finding),
        cmocka_unit_test(test_watch),
        cmocka_unit_test(test_checkpoint_corruption),
        cmocka_unit_test(test_checksum_words),
        cmocka_unit_test(test_checkpoint_versions_1_and_2_load),
        cmocka_unit_test(test_checkpoint_version_3_is_canonical),
        cmocka_unit_test(test_checkpoint_into_kept_buffer),
        cmocka_unit_test(test_checkpoint_changed_only),
        cmocka_unit_test(test_batch_equals_one_by_one),
        cmocka_unit_test(test_memory_bound),
        cmocka_unit_test(test_devices_cap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
