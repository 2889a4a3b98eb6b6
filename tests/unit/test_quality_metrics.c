/*
 * test_quality_metrics.c -- the quality metrics' arithmetic (quality/metrics.h): the delay sketch
 * against exact quantiles of the same data (within the stated factor 2^(1/8)), its bucket edges
 * and merging; and the per-(device, minute) accumulators on a reading sequence whose late,
 * out-of-order, gap and completeness counts are worked out by hand; the id table grows and the
 * rows are found again across a flush; a device's rows of several minutes held at once, reached in
 * any order and across flushes, each found again (never a second row for one device and minute); a
 * row's JSON for the store, its sketch from its first bucket that counts to its last; a device's
 * minute handed over in parts, the later parts carrying what was handed over before them; and a
 * flush without memory to sort its rows (malloc wrapped to refuse that one request) handing over
 * the same rows, the fleet's made a pass a minute.
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

#include "core/json.h"
#include "quality/ids.h"
#include "quality/metrics.h"
#include "quality/quality_sql.h"

#define SEC INT64_C(1000000)
#define N   20000

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

/* A log-normal delay in ms (median e^5 ~ 148 ms) from a fixed linear congruential stream. */
static double next_delay(uint64_t *s)
{
    double u1, u2;

    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    u1 = ((double)(*s >> 11) + 0.5) / 9007199254740992.0;
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    u2 = ((double)(*s >> 11) + 0.5) / 9007199254740992.0;
    return exp(5.0 + 1.5 * sqrt(-2.0 * log(u1)) * cos(2 * M_PI * u2));
}

static void test_sketch_against_exact(void **state)
{
    static const double qs[] = {0.01, 0.25, 0.5, 0.9, 0.99, 0.999};
    double *v = malloc(N * sizeof(double)), bound = exp2(1.0 / 8.0) * (1 + 1e-12);
    tc_qm_sketch s = {0};
    uint64_t seed = 42;

    (void)state;
    assert_non_null(v);
    for (int i = 0; i < N; i++) {
        v[i] = next_delay(&seed);
        tc_qm_sketch_add(&s, v[i]);
    }
    qsort(v, N, sizeof(double), cmp_double);
    for (size_t k = 0; k < sizeof(qs) / sizeof(qs[0]); k++) {
        /* The same rank definition: the ceil(q n)-th smallest value. */
        double exact = v[(size_t)ceil(qs[k] * N) - 1], got = tc_qm_sketch_quantile(&s, qs[k]);
        if (exact >= 1.0) {
            assert_true(got / exact <= bound);
            assert_true(exact / got <= bound);
        }
    }
    free(v);
}

static void test_sketch_buckets(void **state)
{
    (void)state;
    assert_int_equal(tc_qm_sketch_bucket(-5), 0);
    assert_int_equal(tc_qm_sketch_bucket(NAN), 0);
    assert_int_equal(tc_qm_sketch_bucket(0.999), 0);
    assert_int_equal(tc_qm_sketch_bucket(1.0), 1);
    assert_int_equal(tc_qm_sketch_bucket(1.18), 1); /* below 2^(1/4) = 1.1892 */
    assert_int_equal(tc_qm_sketch_bucket(1.19), 2);
    assert_int_equal(tc_qm_sketch_bucket(2.0), 5); /* 4 x log2(2) + 1 */
    assert_int_equal(tc_qm_sketch_bucket(1024.0), 41);
    assert_int_equal(tc_qm_sketch_bucket(1e12), TC_QM_SKETCH_BUCKETS - 1);
    {
        tc_qm_sketch s = {0};
        assert_true(tc_qm_sketch_quantile(&s, 0.5) == 0);
        tc_qm_sketch_add(&s, 0.2);
        assert_true(tc_qm_sketch_quantile(&s, 0.5) == 0.5); /* under 1 ms reads 0.5 ms */
        tc_qm_sketch_add(&s, 1024.0);
        /* Bucket 41 holds [2^10, 2^10.25): its geometric middle is 2^10.125. */
        assert_true(fabs(tc_qm_sketch_quantile(&s, 1.0) - exp2(10.125)) < 1e-9);
    }
}

/* A reading's bucket from its delay in microseconds is the bucket of that delay in milliseconds,
 * for every delay: all of the first three seconds, a few thousand either side of every bucket's
 * first delay as the sketch defines it (2^((i - 1) / 4) ms), and spread 64-bit values. */
static void test_delay_bucket_is_the_logarithms(void **state)
{
    char errstr[TC_ERRSTR_MAX];
    tc_qm_options o;
    tc_qm *q;
    uint64_t seed = 11;
    static const int64_t edges[] = {INT64_MIN, -1, 0, 999, 1000, INT64_C(1) << 62, INT64_MAX};

    (void)state;
    tc_qm_options_default(&o, 4);
    q = tc_qm_new(&o, errstr, sizeof(errstr));
    assert_non_null(q);
    for (int64_t us = 0; us < 3000000; us++)
        if (tc_qm_delay_bucket(q, us) != tc_qm_sketch_bucket((double)us / 1e3))
            fail_msg("delay %lld us: bucket %d, the logarithm's %d", (long long)us,
                     tc_qm_delay_bucket(q, us), tc_qm_sketch_bucket((double)us / 1e3));
    for (int i = 1; i < TC_QM_SKETCH_BUCKETS; i++) {
        int64_t from = (int64_t)(exp2((i - 1) / 4.0) * 1000.0);
        for (int64_t us = from - 3000; us <= from + 3000; us++)
            assert_int_equal(tc_qm_delay_bucket(q, us), tc_qm_sketch_bucket((double)us / 1e3));
    }
    for (int k = 0; k < 1000000; k++) {
        int64_t us;
        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
        us = (int64_t)(seed >> (seed % 40)); /* magnitudes of every size */
        assert_int_equal(tc_qm_delay_bucket(q, us), tc_qm_sketch_bucket((double)us / 1e3));
    }
    for (size_t k = 0; k < sizeof(edges) / sizeof(edges[0]); k++)
        assert_int_equal(tc_qm_delay_bucket(q, edges[k]),
                         tc_qm_sketch_bucket((double)edges[k] / 1e3));
    tc_qm_destroy(q);
}

typedef struct fleet_rows {
    tc_qm_row r[4];
    int n, devices;
} fleet_rows;

static void on_fleet(void *opaque, const tc_qm_row *row)
{
    fleet_rows *l = opaque;

    if (row->device) {
        l->devices++;
        return;
    }
    assert_true(l->n < 4);
    l->r[l->n++] = *row;
}

/* The fleet's row of a minute holds every reading of that minute, whatever its device: counted
 * here reading by reading from the inputs (not from the devices' rows), against what the flush
 * makes of the devices' rows. Three devices over two minutes; one device's delays spread over
 * more buckets than a row holds in place (its sketch whole), readings lacking a metric, a late
 * one, a reading that names only the first metric, and a gap. */
static void test_fleet_is_every_reading_of_its_minute(void **state)
{
    char errstr[TC_ERRSTR_MAX];
    tc_qm_options o;
    tc_qm *q;
    fleet_rows l = {0};
    tc_qm_row want[2];
    static const char *names[3] = {"f-a", "f-b", "f-c"};
    int64_t w = 0;

    (void)state;
    memset(want, 0, sizeof(want));
    tc_qm_options_default(&o, 8);
    o.metrics = 3;
    q = tc_qm_new(&o, errstr, sizeof(errstr));
    assert_non_null(q);
    for (int k = 0; k < 60; k++) {
        int dev = k % 3, metrics = k == 31 ? 1 : 3;
        int64_t ev = (int64_t)(k / 3) * 5 * SEC + dev * SEC, ing, wm;
        uint8_t present[3] = {1, (uint8_t)(k % 4 != 0), (uint8_t)(k % 5 != 0)};
        tc_qm_row *f;

        if (k == 50)
            ev -= 75 * SEC; /* late: 75 s behind the watermark, in minute 0 */
        w = ev > w ? ev : w;
        wm = w;
        /* f-c's delays spread over twenty buckets; the others' in two. */
        ing = w + (dev == 2 ? (int64_t)(exp2(k / 4.0) * 1000.0) : (k % 2 + 1) * 1000000);
        tc_qm_observe(q, names[dev], 3, ev, ing, wm, NULL, present, metrics);
        f = &want[ev >= 60 * SEC];
        f->minute_us = ev >= 60 * SEC ? 60 * SEC : 0;
        f->readings++;
        for (int m = 0; m < 3; m++)
            f->present[m] += m < metrics && present[m];
        f->late += (double)(wm - ev) > 60e6;
        tc_qm_sketch_add(&f->delay, (double)(ing - ev) / 1e3);
    }
    /* A gap: f-a at 300 s, 205 s after its last reading (every 5 s before). */
    tc_qm_observe(q, "f-a", 3, 300 * SEC, 300 * SEC, 300 * SEC, NULL, NULL, 3);
    tc_qm_flush(q, INT64_MAX, on_fleet, &l);
    assert_int_equal(l.n, 3); /* minutes 0, 1 and 5 */
    assert_int_equal(l.devices, 3 + 3 + 1);
    for (int i = 0; i < 2; i++) {
        assert_true(l.r[i].minute_us == want[i].minute_us);
        assert_int_equal(l.r[i].readings, want[i].readings);
        for (int m = 0; m < TC_QM_METRICS_MAX; m++)
            assert_int_equal(l.r[i].present[m], want[i].present[m]);
        assert_int_equal(l.r[i].late, want[i].late);
        assert_memory_equal(&l.r[i].delay, &want[i].delay, sizeof(tc_qm_sketch));
    }
    assert_true(want[0].late + want[1].late == 1 && want[0].present[2] < want[0].readings);
    assert_true(l.r[2].minute_us == 300 * SEC && l.r[2].readings == 1 && l.r[2].gaps == 1);
    assert_true(l.r[2].gap_max_s == 300.0 - 95.0); /* f-a's last before it: 19 x 5 s */
    tc_qm_destroy(q);
}

/* The ordering the flush sorts its rows with is its one allocation; this test's link wraps malloc
 * (tests/unit/CMakeLists.txt) so that a request of fail_size bytes fails once. */
void *__real_malloc(size_t size);
void *__wrap_malloc(size_t size);
static size_t fail_size;

void *__wrap_malloc(size_t size)
{
    if (fail_size && size == fail_size) {
        fail_size = 0;
        return NULL;
    }
    return __real_malloc(size);
}

/* Every row a flush hands over, as the store's binary record of it, sorted: two flushes that hand
 * over the same rows in another order give the same list. */
typedef struct row_list {
    char rec[64][TC_QUALITY_SQL_ROW_BIN_MAX];
    size_t len[64];
    int n, fleet;
} row_list;

static void on_row_bin(void *opaque, const tc_qm_row *row)
{
    row_list *l = opaque;
    tc_jbuf j;
    size_t len;
    char *doc;

    assert_true(l->n < 64);
    tc_jbuf_init(&j, 1u << 20);
    tc_quality_sql_row_bin(&j, row, 3);
    doc = tc_jbuf_take(&j, &len);
    assert_non_null(doc);
    assert_true(len <= TC_QUALITY_SQL_ROW_BIN_MAX);
    memset(l->rec[l->n], 0, TC_QUALITY_SQL_ROW_BIN_MAX);
    memcpy(l->rec[l->n], doc, len);
    l->len[l->n++] = len;
    l->fleet += !row->device;
    free(doc);
}

static int cmp_rec(const void *a, const void *b)
{
    return memcmp(a, b, TC_QUALITY_SQL_ROW_BIN_MAX);
}

/* The readings of test_fleet_is_every_reading_of_its_minute (three devices, two minutes, a late
 * one, a gap) into q. */
static void observe_fleet(tc_qm *q)
{
    static const char *names[3] = {"f-a", "f-b", "f-c"};
    int64_t w = 0;

    for (int k = 0; k < 60; k++) {
        int dev = k % 3, metrics = k == 31 ? 1 : 3;
        int64_t ev = (int64_t)(k / 3) * 5 * SEC + dev * SEC, ing;
        uint8_t present[3] = {1, (uint8_t)(k % 4 != 0), (uint8_t)(k % 5 != 0)};

        if (k == 50)
            ev -= 75 * SEC;
        w = ev > w ? ev : w;
        ing = w + (dev == 2 ? (int64_t)(exp2(k / 4.0) * 1000.0) : (k % 2 + 1) * 1000000);
        tc_qm_observe(q, names[dev], 3, ev, ing, w, NULL, present, metrics);
    }
    tc_qm_observe(q, "f-a", 3, 300 * SEC, 300 * SEC, 300 * SEC, NULL, NULL, 3);
}

/* Without memory to sort its rows, a flush hands them over in the pool's order and makes the
 * fleet's a pass a minute: the same rows, device and fleet, as the sorted flush's. */
static void test_fleet_without_memory_to_sort(void **state)
{
    char errstr[TC_ERRSTR_MAX];
    tc_qm_options o;
    tc_qm *sorted, *unsorted;
    row_list *a = calloc(1, sizeof(row_list)), *b = calloc(1, sizeof(row_list));
    tc_qm_totals t;

    (void)state;
    assert_non_null(a);
    assert_non_null(b);
    tc_qm_options_default(&o, 8);
    o.metrics = 3;
    sorted = tc_qm_new(&o, errstr, sizeof(errstr));
    unsorted = tc_qm_new(&o, errstr, sizeof(errstr));
    assert_non_null(sorted);
    assert_non_null(unsorted);
    observe_fleet(sorted);
    observe_fleet(unsorted);
    tc_qm_flush(sorted, INT64_MAX, on_row_bin, a);
    tc_qm_get_totals(unsorted, &t);
    assert_int_equal(t.rows_held, 7); /* f-a, f-b, f-c in minutes 0 and 1, f-a in minute 5 */
    fail_size = t.rows_held * sizeof(void *);
    tc_qm_flush(unsorted, INT64_MAX, on_row_bin, b);
    assert_int_equal(fail_size, 0); /* the ordering's allocation was the one refused */
    assert_int_equal(a->n, 7 + 3);
    assert_int_equal(b->n, a->n);
    assert_int_equal(b->fleet, 3);
    qsort(a->rec, (size_t)a->n, TC_QUALITY_SQL_ROW_BIN_MAX, cmp_rec);
    qsort(b->rec, (size_t)b->n, TC_QUALITY_SQL_ROW_BIN_MAX, cmp_rec);
    assert_memory_equal(a->rec, b->rec, (size_t)a->n * TC_QUALITY_SQL_ROW_BIN_MAX);
    tc_qm_get_totals(unsorted, &t);
    assert_int_equal(t.rows_held, 0);
    free(a);
    free(b);
    tc_qm_destroy(sorted);
    tc_qm_destroy(unsorted);
}

static void test_sketch_merge(void **state)
{
    tc_qm_sketch a = {0}, b = {0}, all = {0};
    uint64_t seed = 7;

    (void)state;
    for (int i = 0; i < 1000; i++) {
        double d = next_delay(&seed);
        tc_qm_sketch_add(i % 3 ? &a : &b, d);
        tc_qm_sketch_add(&all, d);
    }
    tc_qm_sketch_merge(&a, &b);
    assert_memory_equal(&a, &all, sizeof(a));
}

typedef struct rows {
    tc_qm_row r[8];
    char dev[8][16];
    int n;
} rows;

static void on_row(void *opaque, const tc_qm_row *row)
{
    rows *l = opaque;

    assert_true(l->n < 8);
    l->r[l->n] = *row;
    snprintf(l->dev[l->n], sizeof(l->dev[0]), "%s", row->device ? row->device : "*fleet*");
    l->n++;
}

static void test_accumulators(void **state)
{
    char errstr[TC_ERRSTR_MAX];
    tc_qm_options o;
    tc_qm_totals t;
    rows l = {0};
    tc_qm *q;
    /* (event s, ingest s, watermark s, temperature present, humidity present) */
    static const struct {
        int ev, ing, wm, p0, p1;
    } in[] = {
        {0, 1, 0, 1, 1},       {10, 11, 10, 1, 1}, {20, 21, 20, 1, 0},
        {30, 31, 30, 1, 1},    {25, 32, 30, 1, 1}, /* out of order, 5 s behind: not late */
        {100, 101, 100, 1, 1},                     /* a gap: 70 s > 3 x 10 s */
        {20, 102, 100, 0, 1},                      /* out of order and late: 80 s > 60 s */
    };

    (void)state;
    tc_qm_options_default(&o, 4);
    o.metrics = 2;
    q = tc_qm_new(&o, errstr, sizeof(errstr));
    assert_non_null(q);
    for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++) {
        uint8_t present[2] = {(uint8_t)in[i].p0, (uint8_t)in[i].p1};
        tc_qm_observe(q, "dev-1", 5, in[i].ev * SEC, in[i].ing * SEC, in[i].wm * SEC, NULL, present,
                      2);
    }
    tc_qm_get_totals(q, &t);
    assert_true(t.readings == 7 && t.late == 1 && t.out_of_order == 2 && t.gaps == 1);
    assert_int_equal(t.rows_held, 2); /* (dev-1, 0), (dev-1, 60 s): the fleet's are not held */
    /* Only minutes before 60 s: dev-1's minute 0, then the fleet's. */
    tc_qm_flush(q, 60 * SEC, on_row, &l);
    assert_int_equal(l.n, 2);
    assert_string_equal(l.dev[0], "dev-1");
    assert_string_equal(l.dev[1], "*fleet*");
    for (int k = 0; k < 2; k++) {
        const tc_qm_row *r = &l.r[k];
        assert_true(r->minute_us == 0);
        /* Readings at 0, 10, 20, 30, 25 and the late 20. */
        assert_int_equal(r->readings, 6);
        assert_int_equal(r->present[0], 5);
        assert_int_equal(r->present[1], 5);
        assert_int_equal(r->late, 1);
        assert_int_equal(r->out_of_order, 2);
        assert_int_equal(r->gaps, 0);
        /* Delays 1, 1, 1, 1, 7, 82 s: p50 is the 3rd smallest, 1000 ms, within 2^(1/8). */
        assert_true(r->delay.count == 6);
        assert_true(fabs(log2(tc_qm_sketch_quantile(&r->delay, 0.5) / 1000.0)) <= 0.125);
        assert_true(fabs(log2(tc_qm_sketch_quantile(&r->delay, 0.99) / 82000.0)) <= 0.125);
    }
    tc_qm_get_totals(q, &t);
    assert_int_equal(t.rows_held, 1);
    l.n = 0;
    tc_qm_flush(q, INT64_MAX, on_row, &l);
    assert_int_equal(l.n, 2);
    assert_true(l.r[0].minute_us == 60 * SEC && l.r[0].readings == 1 && l.r[0].gaps == 1);
    assert_true(l.r[0].gap_max_s == 70.0);
    tc_qm_get_totals(q, &t);
    assert_int_equal(t.rows_held, 0);
    tc_qm_destroy(q);
}

static void collect(void *opaque, const tc_qm_row *row)
{
    rows *l = opaque;

    if (l->n < 8) {
        l->r[l->n] = *row;
        snprintf(l->dev[l->n], sizeof(l->dev[0]), "%s", row->device ? row->device : "*fleet*");
    }
    l->n++;
}

static void test_batch_equals_one_by_one(void **state)
{
    enum { ROWS = 2000 };
    static const char *ids[ROWS];
    static size_t lens[ROWS];
    static int64_t ev[ROWS], ing[ROWS], wm[ROWS];
    static uint8_t p0[ROWS], p1[ROWS];
    static const char *names[5] = {"a", "b", "c", "d", "e"};
    const uint8_t *present[2] = {p0, p1};
    char errstr[TC_ERRSTR_MAX];
    tc_qm_options o;
    tc_qm *a, *b;
    tc_qm_totals ta, tb;
    rows la = {0}, lb = {0}, lr = {0};
    int64_t w = 0;

    (void)state;
    for (int k = 0; k < ROWS; k++) {
        ids[k] = names[k % 5];
        lens[k] = 1;
        /* Mostly in order, every 17th reading 90 s old (late, out of order), a gap at 1000. */
        ev[k] = (int64_t)(k / 5) * 10 * SEC + (k % 17 == 0 ? -90 * SEC : 0) +
                (k >= 1000 ? 600 * SEC : 0);
        w = ev[k] > w ? ev[k] : w;
        wm[k] = w;
        ing[k] = w + (k % 7) * 1000;
        p0[k] = (uint8_t)(k % 3 != 0);
        p1[k] = (uint8_t)(k % 4 != 0);
    }
    tc_qm_options_default(&o, 8);
    o.metrics = 2;
    a = tc_qm_new(&o, errstr, sizeof(errstr));
    b = tc_qm_new(&o, errstr, sizeof(errstr));
    assert_non_null(a);
    assert_non_null(b);
    for (int k = 0; k < ROWS; k++) {
        uint8_t p[2] = {p0[k], p1[k]};
        tc_qm_observe(a, ids[k], lens[k], ev[k], ing[k], wm[k], NULL, p, 2);
    }
    for (int at = 0; at < ROWS; at += 333) {
        size_t n = ROWS - at < 333 ? (size_t)(ROWS - at) : 333;
        const uint8_t *pr[2] = {present[0] + at, present[1] + at};
        tc_qm_observe_batch(b, n, &ids[at], &lens[at], &ev[at], &ing[at], &wm[at], pr, 2);
    }
    tc_qm_get_totals(a, &ta);
    tc_qm_get_totals(b, &tb);
    assert_true(ta.late > 0 && ta.out_of_order > 0 && ta.gaps > 0);
    assert_memory_equal(&ta, &tb, sizeof(ta));
    /* And by index into a shared id table (the detectors'), one lookup a reading. */
    {
        tc_qids *shared = tc_qids_new(8);
        tc_qm *c;
        tc_qm_totals tcn;
        static long index[ROWS];
        assert_non_null(shared);
        o.ids = shared;
        c = tc_qm_new(&o, errstr, sizeof(errstr));
        assert_non_null(c);
        for (int k = 0; k < ROWS; k++)
            index[k] = tc_qids_find(shared, ids[k], lens[k], 1);
        index[5] = -1; /* a refused reading */
        tc_qm_observe_batch_at(c, ROWS, index, ev, ing, wm, present, NULL, 2);
        tc_qm_get_totals(c, &tcn);
        assert_true(tcn.readings == ta.readings - 1 && tcn.devices_refused == 1);
        tc_qm_destroy(c);
        /* Presence read through rows from columns laid out backwards: the same figures. */
        {
            static uint8_t r0[ROWS], r1[ROWS];
            static size_t sel[ROWS];
            const uint8_t *rp[2] = {r0, r1};
            for (int k = 0; k < ROWS; k++) {
                r0[ROWS - 1 - k] = p0[k];
                r1[ROWS - 1 - k] = p1[k];
                sel[k] = (size_t)(ROWS - 1 - k);
            }
            index[5] = tc_qids_find(shared, ids[5], lens[5], 1);
            c = tc_qm_new(&o, errstr, sizeof(errstr));
            assert_non_null(c);
            tc_qm_observe_batch_at(c, ROWS, index, ev, ing, wm, rp, sel, 2);
            tc_qm_get_totals(c, &tcn);
            assert_memory_equal(&tcn, &ta, sizeof(ta));
            tc_qm_flush(c, INT64_MAX, collect, &lr);
            tc_qm_destroy(c);
        }
        tc_qids_destroy(shared); /* not the metrics' to free */
        o.ids = NULL;
    }
    /* The same rows, in the same order, with the same figures. */
    tc_qm_flush(a, INT64_MAX, collect, &la);
    tc_qm_flush(b, INT64_MAX, collect, &lb);
    assert_int_equal(la.n, lb.n);
    assert_int_equal(lr.n, la.n);
    for (int k = 0; k < la.n && k < 8; k++) {
        assert_string_equal(la.dev[k], lb.dev[k]);
        assert_string_equal(lr.dev[k], la.dev[k]);
        la.r[k].device = lb.r[k].device = lr.r[k].device = NULL;
        assert_memory_equal(&la.r[k], &lb.r[k], sizeof(tc_qm_row));
        assert_memory_equal(&lr.r[k], &la.r[k], sizeof(tc_qm_row));
    }
    tc_qm_destroy(a);
    tc_qm_destroy(b);
}

static void test_caps(void **state)
{
    char errstr[TC_ERRSTR_MAX], id[16];
    tc_qm_options o;
    tc_qm_totals t;
    tc_qm *q;

    (void)state;
    tc_qm_options_default(&o, 2);
    o.max_rows = 2;
    q = tc_qm_new(&o, errstr, sizeof(errstr));
    assert_non_null(q);
    for (int i = 0; i < 3; i++) {
        snprintf(id, sizeof(id), "d%d", i);
        tc_qm_observe(q, id, strlen(id), 0, 0, 0, NULL, NULL, 6);
    }
    /* d0's row and d1's: the pool of 2 is full; d2 is a third device. */
    tc_qm_get_totals(q, &t);
    assert_true(t.readings == 2 && t.rows_refused == 0 && t.devices_refused == 1);
    tc_qm_observe(q, "d0", 2, 61 * SEC, 61 * SEC, 61 * SEC, NULL, NULL, 6);
    tc_qm_get_totals(q, &t);
    assert_int_equal(t.rows_refused, 1);
    tc_qm_destroy(q);
}

typedef struct handed {
    size_t rows;
    uint64_t readings;
} handed;

static void count_row(void *opaque, const tc_qm_row *r)
{
    handed *h = opaque;

    h->rows++;
    h->readings += r->readings;
}

/* Rows of (device, minute) per flush, to check none is handed over twice in one flush. */
typedef struct minutes {
    uint32_t readings[3][8]; /* [device][minute] handed over, summed over flushes */
    uint32_t sketch[3][8][TC_QM_SKETCH_BUCKETS];
    uint8_t seen[3][8]; /* in the current flush */
} minutes;

static void minute_row(void *opaque, const tc_qm_row *r)
{
    minutes *x = opaque;
    int dev = r->device ? r->device[2] - '0' : 2, m = (int)(r->minute_us / (60 * SEC));

    assert_true(m >= 0 && m < 8);
    assert_int_equal(x->seen[dev][m], 0); /* one row a device and minute in a flush */
    x->seen[dev][m] = 1;
    x->readings[dev][m] += r->readings;
    assert_true(r->delay.count == r->readings); /* one delay a reading */
    for (int b = 0; b < TC_QM_SKETCH_BUCKETS; b++)
        x->sketch[dev][m][b] += r->delay.b[b];
}

/* A device's rows form a chain, newest minute first: readings of minutes behind the newest (late),
 * of the newest and of new ones, in a scrambled order, with flushes between that free some minutes
 * (a later reading of a freed minute makes a new row), must each land in the one row held for
 * their device and minute. Two devices and the fleet (index 2). Their delays spread over a dozen
 * buckets, so rows start with a sparse sketch and move to a whole one (and give it back at a
 * flush, for a later row to take): every delay is in the sketch handed over. */
static void test_rows_of_many_minutes(void **state)
{
    char errstr[TC_ERRSTR_MAX];
    uint32_t want[3][8] = {{0}};
    static uint32_t want_sk[3][8][TC_QM_SKETCH_BUCKETS];
    static minutes x;
    uint64_t s = 7;
    tc_qm_options o;
    tc_qm_totals t;
    tc_qm *q;

    (void)state;
    memset(want_sk, 0, sizeof(want_sk));
    memset(&x, 0, sizeof(x));
    tc_qm_options_default(&o, 4);
    q = tc_qm_new(&o, errstr, sizeof(errstr));
    assert_non_null(q);
    for (int i = 0; i < 3000; i++) {
        int dev, m, b;
        int64_t at, delay;
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        dev = (int)(s >> 40) % 2;
        m = (int)((s >> 20) % 8);
        at = m * 60 * SEC + (int64_t)(s >> 50) % (60 * SEC);
        delay = (int64_t)1000 << ((s >> 8) % 12); /* 1 ms .. 2 s: 12 buckets */
        b = tc_qm_sketch_bucket((double)delay / 1e3);
        tc_qm_observe(q, dev ? "d-1" : "d-0", 3, at, at + delay, at, NULL, NULL, 6);
        want[dev][m]++;
        want[2][m]++;
        want_sk[dev][m][b]++;
        want_sk[2][m][b]++;
        if (i % 500 == 499) {
            /* Free the minutes before a moving cut; the others stay held. */
            memset(x.seen, 0, sizeof(x.seen));
            tc_qm_flush(q, (int64_t)(i / 500 % 8) * 60 * SEC, minute_row, &x);
        }
    }
    memset(x.seen, 0, sizeof(x.seen));
    tc_qm_flush(q, INT64_MAX, minute_row, &x);
    tc_qm_get_totals(q, &t);
    assert_int_equal(t.rows_held, 0);
    assert_int_equal(t.readings, 3000);
    for (int d = 0; d < 3; d++)
        for (int m = 0; m < 8; m++) {
            assert_int_equal(x.readings[d][m], want[d][m]);
            for (int b = 0; b < TC_QM_SKETCH_BUCKETS; b++)
                assert_int_equal(x.sketch[d][m][b], want_sk[d][m][b]);
        }
    tc_qm_destroy(q);
}

/* A column of a row's binary record (PostgreSQL's record_send form): its type, its length (-1:
 * NULL) and its value, read big-endian; the reader moves on. */
typedef struct bin_reader {
    const unsigned char *p, *end;
} bin_reader;

static uint32_t bin_u32(bin_reader *b)
{
    uint32_t v;

    assert_true(b->p + 4 <= b->end);
    v = (uint32_t)b->p[0] << 24 | (uint32_t)b->p[1] << 16 | (uint32_t)b->p[2] << 8 | b->p[3];
    b->p += 4;
    return v;
}

static int64_t bin_int8(bin_reader *b)
{
    uint64_t hi, lo;

    assert_int_equal(bin_u32(b), 20); /* int8 */
    assert_int_equal(bin_u32(b), 8);
    hi = bin_u32(b);
    lo = bin_u32(b);
    return (int64_t)(hi << 32 | lo);
}

static int32_t bin_int4(bin_reader *b)
{
    assert_int_equal(bin_u32(b), 23); /* int4 */
    assert_int_equal(bin_u32(b), 4);
    return (int32_t)bin_u32(b);
}

static void bin_null(bin_reader *b, uint32_t oid)
{
    assert_int_equal(bin_u32(b), oid);
    assert_int_equal(bin_u32(b), UINT32_MAX);
}

/* The sketch column (integer[]) that sk0 comes before: its buckets into out, its lower bound
 * sk0 + 1 (subscript b + 1 is bucket b, in PostgreSQL's binary array: dimensions, NULL flag,
 * element type, then length and lower bound a dimension); returns how many. */
static int bin_sketch(bin_reader *b, int32_t sk0, uint32_t *out, int cap)
{
    uint32_t len, n;
    const unsigned char *start;

    assert_int_equal(bin_u32(b), 1007); /* integer[] */
    len = bin_u32(b);
    start = b->p;
    assert_int_equal(bin_u32(b), 1); /* dimensions */
    assert_int_equal(bin_u32(b), 0); /* no NULLs */
    assert_int_equal(bin_u32(b), 23);
    n = bin_u32(b);
    assert_int_equal(bin_u32(b), sk0 + 1); /* lower bound */
    assert_true((int)n <= cap);
    for (uint32_t i = 0; i < n; i++) {
        assert_int_equal(bin_u32(b), 4);
        out[i] = bin_u32(b);
    }
    assert_int_equal(b->p - start, len);
    return (int)n;
}

/* Row r's element as tc_quality_sql_row_bin appends it: its length, its columns (20; 17 for
 * tc_quality_sql_new_row_bin's), the device. */
static void bin_row_begin_cols(bin_reader *b, const tc_jbuf *j, size_t at, const char *device,
                               uint32_t cols)
{
    b->p = (const unsigned char *)j->data + at;
    b->end = (const unsigned char *)j->data + j->len;
    assert_int_equal(bin_u32(b), j->len - at - 4);
    assert_int_equal(bin_u32(b), cols);
    if (device) {
        assert_int_equal(bin_u32(b), 25); /* text */
        assert_int_equal(bin_u32(b), strlen(device));
        assert_memory_equal(b->p, device, strlen(device));
        b->p += strlen(device);
    } else {
        bin_null(b, 25);
    }
}

static void bin_row_begin(bin_reader *b, const tc_jbuf *j, size_t at, const char *device)
{
    bin_row_begin_cols(b, j, at, device, 20);
}

static double bin_float8(bin_reader *b)
{
    uint64_t bits;
    double v;

    assert_int_equal(bin_u32(b), 701); /* float8 */
    assert_int_equal(bin_u32(b), 8);
    bits = (uint64_t)bin_u32(b) << 32;
    bits |= bin_u32(b);
    memcpy(&v, &bits, sizeof(v));
    return v;
}

/* A device's row of `readings` readings with every figure set, two metrics' counts and a third
 * past them, a gap of 2.5 s and three delays in buckets 0 and 3. */
static void sample_row(tc_qm_row *r, uint32_t readings)
{
    memset(r, 0, sizeof(*r));
    r->device = "d\"1";
    r->minute_us = INT64_C(29930400) * 60 * SEC;
    r->readings = readings;
    r->present[0] = 3;
    r->present[1] = 10;
    r->present[2] = 7; /* past `metrics`: not sent */
    r->late = 1;
    r->out_of_order = 2;
    r->gaps = 1;
    r->gap_max_s = 2.5;
    r->delay.b[0] = 1;
    r->delay.b[3] = 2;
    r->delay.count = 3;
}

/* The binary record a flush sends for a row, as the schema's quality_row reads it: every figure,
 * large counts right, the present counts past `metrics` 0, the sketch from its first bucket that
 * counts (sk0) to its last (the SQL makes the zeros before it and adds sketches of any lengths),
 * an empty sketch as one 0, no gap as NULL; a part continuing a minute; the array's header. */
static void test_row_bin(void **state)
{
    tc_qm_row r;
    tc_jbuf j;
    bin_reader b;
    uint32_t sk[TC_QM_SKETCH_BUCKETS];
    size_t at;

    (void)state;
    sample_row(&r, 4294967295u);
    tc_jbuf_init(&j, 1 << 20);
    tc_quality_sql_rows_begin(&j);
    assert_int_equal(j.len, TC_QUALITY_SQL_ROWS_HEADER);
    at = j.len;
    tc_quality_sql_row_bin(&j, &r, 2);
    bin_row_begin(&b, &j, at, "d\"1");
    assert_int_equal(bin_int8(&b), 29930400);
    assert_int_equal(bin_int8(&b), 4294967295u);
    assert_int_equal(bin_int8(&b), 3);
    assert_int_equal(bin_int8(&b), 10);
    for (int i = 2; i < 6; i++)
        assert_int_equal(bin_int8(&b), 0);
    assert_int_equal(bin_int8(&b), 1);
    assert_int_equal(bin_int8(&b), 2);
    assert_int_equal(bin_int8(&b), 1);
    assert_true(bin_float8(&b) == 2.5);
    assert_int_equal(bin_int4(&b), 0); /* sk0 */
    assert_int_equal(bin_sketch(&b, 0, sk, TC_QM_SKETCH_BUCKETS), 4);
    assert_int_equal(sk[0], 1);
    assert_int_equal(sk[1], 0);
    assert_int_equal(sk[2], 0);
    assert_int_equal(sk[3], 2);
    assert_int_equal(bin_int4(&b), 3); /* q50 */
    assert_int_equal(bin_int4(&b), 3); /* q99 */
    bin_null(&b, 20);                  /* pr, m50, m99: not a continued minute */
    bin_null(&b, 23);
    bin_null(&b, 23);
    assert_ptr_equal(b.p, b.end);
    /* The array's header: one dimension of n elements of the given type from 1, no NULLs. */
    tc_quality_sql_rows_end(&j, 16384, 1);
    b.p = (const unsigned char *)j.data;
    assert_int_equal(bin_u32(&b), 1);
    assert_int_equal(bin_u32(&b), 0);
    assert_int_equal(bin_u32(&b), 16384);
    assert_int_equal(bin_u32(&b), 1);
    assert_int_equal(bin_u32(&b), 1);

    /* The fleet's row (no device) before 1970, empty: no gap, a sketch of one 0, no quantiles. */
    tc_jbuf_reset(&j);
    memset(&r, 0, sizeof(r));
    r.minute_us = -60 * SEC;
    tc_quality_sql_row_bin(&j, &r, 1);
    bin_row_begin(&b, &j, 0, NULL);
    assert_int_equal(bin_int8(&b), -1);
    for (int i = 0; i < 10; i++)
        assert_int_equal(bin_int8(&b), 0);
    bin_null(&b, 701);
    assert_int_equal(bin_int4(&b), 0);
    assert_int_equal(bin_sketch(&b, 0, sk, TC_QM_SKETCH_BUCKETS), 1);
    assert_int_equal(sk[0], 0);
    assert_int_equal(bin_int4(&b), -1);
    assert_int_equal(bin_int4(&b), -1);

    /* Delays of a backfill, all far along: the zeros before the first bucket are sk0, not sent;
     * then a part continuing a minute: the readings written before it and the quantiles of all
     * the parts (m50, m99) after the part's own. */
    r.device = "dev-7";
    r.delay.b[70] = 5;
    r.delay.b[72] = 1;
    r.delay.count = 6;
    r.readings = 6;
    r.continues = 1;
    r.written = 3;
    r.whole = r.delay;
    r.whole.b[60] = 7;
    r.whole.count += 7;
    tc_jbuf_reset(&j);
    tc_quality_sql_row_bin(&j, &r, 1);
    bin_row_begin(&b, &j, 0, "dev-7");
    for (int i = 0; i < 11; i++)
        (void)bin_int8(&b);
    bin_null(&b, 701);
    assert_int_equal(bin_int4(&b), 70);
    assert_int_equal(bin_sketch(&b, 70, sk, TC_QM_SKETCH_BUCKETS), 3);
    assert_int_equal(sk[0], 5);
    assert_int_equal(sk[1], 0);
    assert_int_equal(sk[2], 1);
    assert_int_equal(bin_int4(&b), 70);
    assert_int_equal(bin_int4(&b), 72);
    assert_int_equal(bin_int8(&b), 3);  /* pr */
    assert_int_equal(bin_int4(&b), 60); /* m50 */
    assert_int_equal(bin_int4(&b), 72); /* m99 */
    assert_ptr_equal(b.p, b.end);
    tc_jbuf_free(&j);
}

/* A device's new minute as quality_new_row reads it (17 columns): the figures in integer, then the
 * gap, sketch and quantiles as in quality_row, no continuation columns -- and the rows it leaves to
 * quality_row, appending nothing: a count past integer's range, a minute past the year 6053, a
 * continued part, the fleet's row. */
static void test_new_row_bin(void **state)
{
    tc_qm_row r;
    tc_jbuf j;
    bin_reader b;
    uint32_t sk[TC_QM_SKETCH_BUCKETS];

    (void)state;
    sample_row(&r, 2147483647u);
    tc_jbuf_init(&j, 1 << 20);
    assert_int_equal(tc_quality_sql_new_row_bin(&j, &r, 2), 1);
    bin_row_begin_cols(&b, &j, 0, "d\"1", 17);
    assert_int_equal(bin_int4(&b), 29930400);
    assert_int_equal(bin_int4(&b), 2147483647);
    assert_int_equal(bin_int4(&b), 3);
    assert_int_equal(bin_int4(&b), 10);
    for (int i = 2; i < 6; i++)
        assert_int_equal(bin_int4(&b), 0);
    assert_int_equal(bin_int4(&b), 1);
    assert_int_equal(bin_int4(&b), 2);
    assert_int_equal(bin_int4(&b), 1);
    assert_true(bin_float8(&b) == 2.5);
    assert_int_equal(bin_int4(&b), 0); /* sk0 */
    assert_int_equal(bin_sketch(&b, 0, sk, TC_QM_SKETCH_BUCKETS), 4);
    assert_int_equal(sk[0], 1);
    assert_int_equal(sk[3], 2);
    assert_int_equal(bin_int4(&b), 3); /* q50 */
    assert_int_equal(bin_int4(&b), 3); /* q99 */
    assert_ptr_equal(b.p, b.end);
    /* Before 1970, no gap: a negative minute, the gap NULL. */
    tc_jbuf_reset(&j);
    r.minute_us = -60 * SEC;
    r.gaps = 0;
    r.readings = 5;
    assert_int_equal(tc_quality_sql_new_row_bin(&j, &r, 2), 1);
    bin_row_begin_cols(&b, &j, 0, "d\"1", 17);
    assert_int_equal(bin_int4(&b), -1);
    assert_int_equal(bin_int4(&b), 5);
    for (int i = 0; i < 9; i++)
        (void)bin_int4(&b);
    bin_null(&b, 701);
    /* What goes as quality_row instead: nothing appended. */
    tc_jbuf_reset(&j);
    r.readings = 2147483648u;
    assert_int_equal(tc_quality_sql_new_row_bin(&j, &r, 2), 0);
    r.readings = 5;
    r.late = 2147483648u;
    assert_int_equal(tc_quality_sql_new_row_bin(&j, &r, 2), 0);
    r.late = 1;
    r.present[1] = 2147483648u;
    assert_int_equal(tc_quality_sql_new_row_bin(&j, &r, 2), 0);
    assert_int_equal(tc_quality_sql_new_row_bin(&j, &r, 1), 1); /* n2 not sent: it fits */
    tc_jbuf_reset(&j);
    r.present[1] = 10;
    r.minute_us = (INT64_C(2147483647) + 1) * 60 * SEC; /* the year 6053 */
    assert_int_equal(tc_quality_sql_new_row_bin(&j, &r, 2), 0);
    r.minute_us = INT64_C(2147483647) * 60 * SEC;
    assert_int_equal(tc_quality_sql_new_row_bin(&j, &r, 2), 1);
    tc_jbuf_reset(&j);
    r.continues = 1;
    assert_int_equal(tc_quality_sql_new_row_bin(&j, &r, 2), 0);
    r.continues = 0;
    r.device = NULL;
    assert_int_equal(tc_quality_sql_new_row_bin(&j, &r, 2), 0);
    assert_int_equal(j.len, 0);
    tc_jbuf_free(&j);
}

typedef struct parts {
    tc_qm_row last; /* the device's row of the last flush */
    int rows;
} parts;

static void device_row(void *opaque, const tc_qm_row *r)
{
    parts *p = opaque;

    if (!r->device) {
        assert_int_equal(r->continues, 0); /* the fleet's rows never continue */
        return;
    }
    p->last = *r;
    p->rows++;
}

/* A reading of d-0 at minute m, second sec, `delay_ms` after its event time. */
static void part_reading(tc_qm *q, int m, int sec, int64_t delay_ms)
{
    int64_t at = m * 60 * SEC + sec * SEC;

    tc_qm_observe(q, "d-0", 3, at, at + delay_ms * 1000, at, NULL, NULL, 6);
}

/* Every row a flush hands over (device's and fleet's) has bounds that hold each bucket that
 * counts, and is encoded into the same bytes as the row with no bounds stated (the encoder and its
 * quantiles then scan the whole sketch, as they did before they read bounds). */
static void check_bounds(const tc_qm_sketch *s, int lo, int end)
{
    if (!end)
        return;
    assert_true(lo < end && end <= TC_QM_SKETCH_BUCKETS);
    for (int i = 0; i < TC_QM_SKETCH_BUCKETS; i++)
        if (s->b[i])
            assert_true(i >= lo && i < end);
}

static void bounded_row(void *opaque, const tc_qm_row *r)
{
    int *seen = opaque;
    tc_qm_row unbounded = *r;
    tc_jbuf a, b;

    check_bounds(&r->delay, r->delay_lo, r->delay_end);
    if (r->continues)
        check_bounds(&r->whole, r->whole_lo, r->whole_end);
    unbounded.delay_lo = unbounded.delay_end = unbounded.whole_lo = unbounded.whole_end = 0;
    tc_jbuf_init(&a, 1 << 16);
    tc_jbuf_init(&b, 1 << 16);
    tc_quality_sql_row_bin(&a, r, 6);
    tc_quality_sql_row_bin(&b, &unbounded, 6);
    assert_int_equal(a.len, b.len);
    assert_memory_equal(a.data, b.data, a.len);
    tc_jbuf_free(&a);
    tc_jbuf_free(&b);
    seen[r->continues]++;
    seen[2] += r->delay_end != 0;
}

/* Devices' minutes handed over in parts, delays from 0 to minutes (the sketch's first bucket to
 * its last), a few flushes a minute: the bounds hold and change no byte. */
static void test_bounds_change_no_byte(void **state)
{
    char errstr[TC_ERRSTR_MAX], id[16];
    int seen[3] = {0, 0, 0};
    uint64_t x = 12345;
    tc_qm_options o;
    tc_qm *q;

    (void)state;
    tc_qm_options_default(&o, 16);
    q = tc_qm_new(&o, errstr, sizeof(errstr));
    assert_non_null(q);
    for (int k = 0; k < 4000; k++) {
        int64_t at = (int64_t)(k / 8) * 2 * SEC, delay_us;
        x = x * 6364136223846793005u + 1442695040888963407u;
        /* Mostly one or two buckets a device's minute, now and then anywhere (spread). */
        delay_us = (x >> 60) == 0 ? (int64_t)((x >> 20) % 600000000u)
                                  : (int64_t)(1000 + (x >> 40) % 3000) * 1000;
        snprintf(id, sizeof(id), "d-%d", (int)(k % 8));
        tc_qm_observe(q, id, strlen(id), at, at + delay_us, at, NULL, NULL, 6);
        if (k % 97 == 96)
            tc_qm_flush(q, INT64_MAX, bounded_row, seen);
    }
    tc_qm_flush(q, INT64_MAX, bounded_row, seen);
    tc_qm_destroy(q);
    /* The data had all of it: rows that continue, and bounds stated. */
    assert_true(seen[1] > 50 && seen[0] > 50 && seen[2] > 100);
}

/* A device's minute handed over in parts: the first part does not continue anything; a later part
 * of the same minute continues it, with the readings handed over before it and the sum of every
 * part's sketch, its own included; a part of an older minute (a late reading's) does not, and
 * leaves the memory of the newest one as it was; once the minute's delays spread over more than
 * six buckets, its later parts no longer continue (the store sums in SQL); the fleet's never. */
static void test_parts_of_a_minute(void **state)
{
    char errstr[TC_ERRSTR_MAX];
    tc_qm_options o;
    parts p;
    tc_qm *q;

    (void)state;
    memset(&p, 0, sizeof(p));
    tc_qm_options_default(&o, 4);
    q = tc_qm_new(&o, errstr, sizeof(errstr));
    assert_non_null(q);
    part_reading(q, 5, 0, 100);
    part_reading(q, 5, 10, 100);
    tc_qm_flush(q, INT64_MAX, device_row, &p);
    assert_int_equal(p.rows, 1);
    assert_int_equal(p.last.continues, 0);

    part_reading(q, 5, 20, 1000);
    tc_qm_flush(q, INT64_MAX, device_row, &p);
    assert_int_equal(p.last.continues, 1);
    assert_int_equal(p.last.written, 2);
    assert_int_equal(p.last.readings, 1);
    assert_int_equal(p.last.delay.count, 1);
    assert_int_equal(p.last.whole.count, 3);
    assert_int_equal(p.last.whole.b[tc_qm_sketch_bucket(100)], 2);
    assert_int_equal(p.last.whole.b[tc_qm_sketch_bucket(1000)], 1);

    /* A late reading of minute 4: not the newest minute handed over. */
    part_reading(q, 4, 30, 70000);
    tc_qm_flush(q, INT64_MAX, device_row, &p);
    assert_int_equal(p.last.minute_us, 4 * 60 * SEC);
    assert_int_equal(p.last.continues, 0);

    /* Minute 5 again: still continued, from all three readings before. */
    part_reading(q, 5, 30, 100);
    tc_qm_flush(q, INT64_MAX, device_row, &p);
    assert_int_equal(p.last.continues, 1);
    assert_int_equal(p.last.written, 3);
    assert_int_equal(p.last.whole.count, 4);
    assert_int_equal(p.last.whole.b[tc_qm_sketch_bucket(100)], 3);

    /* Five more buckets: seven in the minute, past what is remembered. */
    for (int k = 0; k < 5; k++)
        part_reading(q, 5, 40 + k, (int64_t)10 << (2 * k));
    tc_qm_flush(q, INT64_MAX, device_row, &p);
    assert_int_equal(p.last.continues, 1); /* this part still knew the four before */
    assert_int_equal(p.last.whole.count, 9);
    part_reading(q, 5, 50, 100);
    tc_qm_flush(q, INT64_MAX, device_row, &p);
    assert_int_equal(p.last.continues, 0);

    /* A new minute starts a new memory; its next part continues it. */
    part_reading(q, 6, 0, 100);
    tc_qm_flush(q, INT64_MAX, device_row, &p);
    assert_int_equal(p.last.continues, 0);
    part_reading(q, 6, 10, 100);
    tc_qm_flush(q, INT64_MAX, device_row, &p);
    part_reading(q, 6, 20, 100);
    tc_qm_flush(q, INT64_MAX, device_row, &p);
    assert_int_equal(p.last.continues, 1);
    assert_int_equal(p.last.written, 2);
    tc_qm_destroy(q);
}

/* The id table starts small and doubles as ids come: every id keeps its index, and the table
 * holds the slots its ids need, not those of max_devices. Every row is found again across a
 * flush that frees half of them (the chains relinked). */
static void test_tables_grow(void **state)
{
    char errstr[TC_ERRSTR_MAX], id[32];
    enum { MAX = 200000, DEVS = 5000 };
    tc_qids *ids = tc_qids_new(MAX);
    tc_qm_options o;
    tc_qm_totals t;
    handed h = {0};
    tc_qm *q;

    (void)state;
    assert_non_null(ids);
    for (long i = 0; i < DEVS; i++) {
        snprintf(id, sizeof(id), "g-%ld", i);
        assert_int_equal(tc_qids_find(ids, id, strlen(id), 1), i);
    }
    for (long i = 0; i < DEVS; i++) {
        snprintf(id, sizeof(id), "g-%ld", i);
        assert_int_equal(tc_qids_find(ids, id, strlen(id), 0), i);
    }
    assert_int_equal(tc_qids_find(ids, "g-x", 3, 0), -1);
    /* 16,384 slots of 8 bytes for 5,000 ids (at most half full), not the 524,288 of 200,000;
     * besides the table, an id pointer and length for each of max (untouched until used) and the
     * ids' bytes. */
    assert_true(tc_qids_memory(ids) < (size_t)MAX * 16 + 512 * 1024);
    tc_qids_destroy(ids);

    tc_qm_options_default(&o, MAX);
    q = tc_qm_new(&o, errstr, sizeof(errstr));
    assert_non_null(q);
    for (int minute = 0; minute < 2; minute++)
        for (int i = 0; i < DEVS; i++) {
            int64_t at = minute * 60 * SEC + i;
            snprintf(id, sizeof(id), "g-%d", i);
            tc_qm_observe(q, id, strlen(id), at, at, at, NULL, NULL, 6);
        }
    tc_qm_get_totals(q, &t);
    assert_int_equal(t.rows_held, 2 * DEVS); /* the fleet's rows are made at the flush */
    tc_qm_flush(q, 60 * SEC, count_row, &h); /* minute 0's rows go, minute 1's stay */
    assert_int_equal(h.rows, DEVS + 1);
    assert_int_equal(h.readings, 2 * DEVS);
    for (int i = 0; i < DEVS; i++) {
        int64_t at = 60 * SEC + DEVS + i;
        snprintf(id, sizeof(id), "g-%d", i);
        tc_qm_observe(q, id, strlen(id), at, at, at, NULL, NULL, 6);
    }
    tc_qm_get_totals(q, &t);
    assert_int_equal(t.rows_held, DEVS); /* the same rows, found again */
    h = (handed){0};
    tc_qm_flush(q, INT64_MAX, count_row, &h);
    assert_int_equal(h.rows, DEVS + 1);
    assert_int_equal(h.readings, 4 * DEVS); /* two a device and their fleet's */
    tc_qm_destroy(q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sketch_against_exact),
        cmocka_unit_test(test_sketch_buckets),
        cmocka_unit_test(test_sketch_merge),
        cmocka_unit_test(test_delay_bucket_is_the_logarithms),
        cmocka_unit_test(test_fleet_is_every_reading_of_its_minute),
        cmocka_unit_test(test_fleet_without_memory_to_sort),
        cmocka_unit_test(test_accumulators),
        cmocka_unit_test(test_batch_equals_one_by_one),
        cmocka_unit_test(test_caps),
        cmocka_unit_test(test_tables_grow),
        cmocka_unit_test(test_rows_of_many_minutes),
        cmocka_unit_test(test_row_bin),
        cmocka_unit_test(test_new_row_bin),
        cmocka_unit_test(test_bounds_change_no_byte),
        cmocka_unit_test(test_parts_of_a_minute),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
