/*
 * metrics.c -- the quality metrics' arithmetic; see metrics.h.
 *
 * Devices get an index from a tc_qids (ids.h); rows come from a fixed pool with a free list. A
 * device's rows held (the fleet's too) form a chain from the device, newest first, and the device
 * keeps the latest minute it has a row for: a reading of its current minute finds the row at the
 * chain's head, one of a minute past that one makes a row without looking, and only a late or
 * out-of-order reading walks the chain (its few minutes held). A table keyed by (device, minute)
 * cost two cache misses a device and minute, the table's slot and the row it named, on the
 * pipeline's thread; the chain costs none. A flush frees rows and relinks the chains of the rows
 * left: it runs once a minute, its cost is the pool's.
 *
 * What a reading costs is what it touches, so it touches one line of its row: the counts it adds
 * to are in the row's first line, and completeness is counted as the metrics a reading lacks, in
 * the second, which a reading carrying all of them (nearly all) leaves alone. The fleet's minute
 * is not counted per reading at all: it is the sum of the devices' rows of that minute, made when
 * they are handed over (they are handed over together, sorted by minute), once a row instead of
 * once a reading. And a reading's delay bucket is found by comparing the delay in microseconds
 * with the buckets' first delays, found once by bisection with tc_qm_sketch_bucket itself (the
 * same bucket bit for bit), instead of a logarithm a reading.
 */
#include "quality/metrics.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "quality/ids.h"

/* Weight of an in-order inter-arrival time in a device's usual interval, and the most usual
 * intervals one counts (a gap must not teach "usual"). */
#define TC_QM_INTERVAL_ALPHA 0.1
#define TC_QM_INTERVAL_CLIP  2.0
/* The end of the free list of row slots. */
#define TC_QM_NO_SLOT UINT32_MAX

/* A chain of rows: its newest row (slot + 1, 0 = none) and the latest minute any row of it was
 * made for (an upper bound of the minutes it holds: a flush may have freed that row). */
typedef struct tc_qm_chain {
    int64_t max_minute;
    uint32_t head;
} tc_qm_chain;

typedef struct tc_qm_dev {
    int64_t last_t;
    float interval_s;
    uint32_t n;
    tc_qm_chain rows;
} tc_qm_dev;

_Static_assert(sizeof(tc_qm_dev) <= TC_QM_DEVICE_BYTES, "device state over its stated bound");

/* Delay buckets a row holds in place, before its sketch moves to a whole one. */
#define TC_QM_SPARSE 6

/* A row held: tc_qm_row's figures, its delay sketch sparse -- up to TC_QM_SPARSE (bucket, count)
 * pairs in place -- until it needs more buckets, when it takes a whole sketch from a pool of
 * their own (`full`). A device minute holds a handful of readings whose delays fall in a few
 * buckets: 128 bytes a row instead of the 496 a whole sketch made it, so a (device, minute) costs
 * one cache line to count in (the first), and a new one 128 bytes to clear. A device's row whose
 * delays spread takes a whole one. tc_qm_flush hands each over as a tc_qm_row. */
typedef struct tc_qm_slot {
    /* first line: what counting a reading touches */
    int64_t minute_us;
    uint32_t readings, late, out_of_order, gaps;
    uint32_t sc[TC_QM_SPARSE]; /* counts of the sparse buckets */
    uint8_t sb[TC_QM_SPARSE];  /* the sparse buckets */
    uint8_t nsparse;
    uint8_t used;
    uint32_t full; /* its whole sketch: index + 1 in the sketch pool, 0 = sparse */
    /* second line: what a reading lacking a metric or coming after a gap touches, and the
     * row's links */
    uint32_t absent[TC_QM_METRICS_MAX]; /* readings without metric m (present = readings - it) */
    double gap_max_s;
    const char *device;
    uint32_t dev;   /* device index */
    uint32_t next;  /* free list */
    uint32_t older; /* the next row of the same chain: slot + 1, 0 = none */
} tc_qm_slot;

_Static_assert(sizeof(tc_qm_slot) <= TC_QM_ROW_BYTES, "a row held over its stated bound");

/* What was handed over of a device's latest minute (metrics.h): its readings and, while they fall
 * in at most TC_QM_SPARSE buckets, their summed sketch as (bucket, count) pairs. */
enum { TC_QM_WRITTEN_NONE, TC_QM_WRITTEN_KNOWN, TC_QM_WRITTEN_SPREAD };

typedef struct tc_qm_written {
    int64_t minute_us;
    uint32_t readings;
    uint32_t sc[TC_QM_SPARSE];
    uint8_t sb[TC_QM_SPARSE];
    uint8_t nsparse;
    uint8_t state; /* TC_QM_WRITTEN_* */
} tc_qm_written;

_Static_assert(sizeof(tc_qm_written) <= TC_QM_WRITTEN_BYTES, "written state over its bound");

struct tc_qm {
    tc_qm_options o;
    tc_qm_dev *devs;        /* indexed like ids */
    tc_qm_written *written; /* indexed like ids */
    tc_qids *ids;           /* ours, or the detectors' (options.ids) */
    int own_ids;            /* ids is ours to destroy */
    tc_qm_slot *rows;
    uint32_t free_head;
    /* Whole sketches of rows past TC_QM_SPARSE buckets: a pool of max_rows taken in order
     * (untouched until used, as the rows'), with a free list. */
    tc_qm_sketch *sketches;
    size_t sketch_hwm;
    uint32_t sketch_free; /* index + 1, 0 = none; linked through the sketch's count */
    size_t nrows;
    size_t hwm; /* slots below it have been used: a flush looks at those only */
    tc_qm_totals t;
    /* delay_from[i]: the least delay in microseconds whose bucket is i or more (i >= 1);
     * delay_oct[e]: the bucket of 2^e microseconds. tc_qm_delay_bucket. */
    int64_t delay_from[TC_QM_SKETCH_BUCKETS];
    uint8_t delay_oct[64];
};

int tc_qm_sketch_bucket(double ms)
{
    int i;

    if (!(ms >= 1.0))
        return 0;
    i = (int)floor(TC_QM_SKETCH_PER_OCT * log2(ms)) + 1;
    return i < TC_QM_SKETCH_BUCKETS ? i : TC_QM_SKETCH_BUCKETS - 1;
}

void tc_qm_sketch_add(tc_qm_sketch *s, double ms)
{
    s->b[tc_qm_sketch_bucket(ms)]++;
    s->count++;
}

void tc_qm_sketch_merge(tc_qm_sketch *into, const tc_qm_sketch *from)
{
    for (int i = 0; i < TC_QM_SKETCH_BUCKETS; i++)
        into->b[i] += from->b[i];
    into->count += from->count;
}

double tc_qm_sketch_quantile(const tc_qm_sketch *s, double q)
{
    uint64_t rank, seen = 0;

    if (!s->count)
        return 0;
    q = q < 0 ? 0 : q > 1 ? 1 : q;
    rank = (uint64_t)ceil(q * (double)s->count);
    if (rank < 1)
        rank = 1;
    for (int i = 0; i < TC_QM_SKETCH_BUCKETS; i++) {
        seen += s->b[i];
        if (seen >= rank)
            return i == 0 ? 0.5 : exp2((2.0 * i - 1.0) / (2.0 * TC_QM_SKETCH_PER_OCT));
    }
    return exp2((2.0 * TC_QM_SKETCH_BUCKETS - 1.0) / (2.0 * TC_QM_SKETCH_PER_OCT));
}

/* The bucket of a delay of us microseconds, as tc_qm_sketch_bucket gives it in milliseconds. */
static int tc_qm_bucket_of_us(int64_t us)
{
    return tc_qm_sketch_bucket((double)us / 1e3);
}

/* The buckets' first delays, by bisection over the microseconds with the bucket function itself:
 * it rises with the delay, so below delay_from[i] every delay's bucket is under i and from it on
 * none is. */
static void tc_qm_delay_table(tc_qm *q)
{
    q->delay_from[0] = INT64_MIN;
    for (int i = 1; i < TC_QM_SKETCH_BUCKETS; i++) {
        int64_t lo = 0, hi = INT64_C(1) << 62; /* bucket(lo) < i <= bucket(hi) */
        while (hi - lo > 1) {
            int64_t mid = lo + (hi - lo) / 2;
            *(tc_qm_bucket_of_us(mid) >= i ? &hi : &lo) = mid;
        }
        q->delay_from[i] = hi;
    }
    for (int e = 0; e < 64; e++)
        q->delay_oct[e] = (uint8_t)tc_qm_bucket_of_us(e < 63 ? INT64_C(1) << e : INT64_MAX);
}

int tc_qm_delay_bucket(const tc_qm *q, int64_t delay_us)
{
    int b;

    if (delay_us < q->delay_from[1])
        return 0;
    /* From the bucket of the delay's highest power of two, up past the first delays it reaches:
     * an octave has TC_QM_SKETCH_PER_OCT buckets, so a few steps at most. */
    b = q->delay_oct[63 - __builtin_clzll((unsigned long long)delay_us)];
    while (b + 1 < TC_QM_SKETCH_BUCKETS && delay_us >= q->delay_from[b + 1])
        b++;
    return b;
}

void tc_qm_options_default(tc_qm_options *o, size_t max_devices)
{
    memset(o, 0, sizeof(*o));
    o->max_devices = max_devices;
    o->max_rows = 4 * max_devices + 1024;
    o->metrics = 6;
    o->late_after_s = 60;
    o->gap_factor = 3;
}

tc_qm *tc_qm_new(const tc_qm_options *o, char *errstr, size_t errstr_size)
{
    tc_qm *q;

    if (o->max_devices < 1 || o->max_devices > TC_QM_DEVICES_MAX || o->max_rows < 2 ||
        o->max_rows > TC_QM_ROWS_MAX || o->metrics < 1 || o->metrics > TC_QM_METRICS_MAX ||
        !(o->late_after_s >= 0) || !(o->gap_factor > 1) ||
        (o->ids && tc_qids_max(o->ids) != o->max_devices)) {
        tc_err_set(TC_ERR_INVALID, errstr, errstr_size,
                   "quality metrics: need 1..%d devices, 2..%d rows, 1..%d metrics, "
                   "late_after_s >= 0, gap_factor > 1 and a shared id table of max_devices",
                   TC_QM_DEVICES_MAX, TC_QM_ROWS_MAX, TC_QM_METRICS_MAX);
        return NULL;
    }
    q = calloc(1, sizeof(*q));
    if (q) {
        q->o = *o;
        q->devs = calloc(o->max_devices, sizeof(*q->devs));
        q->written = calloc(o->max_devices, sizeof(*q->written));
        q->own_ids = !o->ids;
        q->ids = o->ids ? o->ids : tc_qids_new(o->max_devices);
        q->rows = calloc(o->max_rows, sizeof(*q->rows));
        q->sketches = calloc(o->max_rows, sizeof(*q->sketches));
    }
    if (!q || !q->devs || !q->written || !q->ids || !q->rows || !q->sketches) {
        tc_qm_destroy(q);
        tc_err_set(TC_ERR_NOMEM, errstr, errstr_size,
                   "quality metrics: out of memory for %zu devices and %zu rows", o->max_devices,
                   o->max_rows);
        return NULL;
    }
    /* The pool is taken in order (hwm) before freed slots are reused: a pool sized for the worst
     * case costs only the pages its rows have touched. */
    q->free_head = TC_QM_NO_SLOT;
    tc_qm_delay_table(q);
    return q;
}

void tc_qm_destroy(tc_qm *q)
{
    if (!q)
        return;
    free(q->devs);
    free(q->written);
    if (q->own_ids)
        tc_qids_destroy(q->ids);
    free(q->rows);
    free(q->sketches);
    free(q);
}

/* The chain of rows of device dev. */
static tc_qm_chain *tc_qm_chain_of(tc_qm *q, uint32_t dev)
{
    return &q->devs[dev].rows;
}

/* Link slot k into chain c: at the head when its minute is the chain's newest, else behind the
 * head, so that the head stays the newest minute (where the next reading looks first). */
static void tc_qm_link(tc_qm *q, tc_qm_chain *c, uint32_t k)
{
    tc_qm_slot *s = &q->rows[k], *h = c->head ? &q->rows[c->head - 1] : NULL;

    if (h && h->minute_us > s->minute_us) {
        s->older = h->older;
        h->older = k + 1;
    } else {
        s->older = c->head;
        c->head = k + 1;
    }
}

/* The row of (dev, minute), made when new; NULL when the pool is full. Nearly every reading falls
 * in its chain's newest minute (the head) or in a later one (a new row, nothing to look through).
 */
static tc_qm_slot *tc_qm_row_of(tc_qm *q, uint32_t dev, int64_t minute)
{
    tc_qm_chain *c = tc_qm_chain_of(q, dev);
    tc_qm_slot *r;
    uint32_t k;

    if (c->head && minute <= c->max_minute)
        for (uint32_t e = c->head; e; e = r->older) {
            r = &q->rows[e - 1];
            if (r->minute_us == minute)
                return r;
        }
    if (q->free_head != TC_QM_NO_SLOT) {
        k = q->free_head;
        q->free_head = q->rows[k].next;
    } else if (q->hwm < q->o.max_rows) {
        k = (uint32_t)q->hwm++;
    } else {
        return NULL;
    }
    r = &q->rows[k];
    memset(r, 0, sizeof(*r));
    r->dev = dev;
    r->used = 1;
    r->minute_us = minute;
    r->device = tc_qids_id(q->ids, dev);
    if (!c->head || minute > c->max_minute)
        c->max_minute = minute;
    tc_qm_link(q, c, k);
    q->nrows++;
    return r;
}

/* A whole sketch for row r, its sparse buckets moved in. The pool never runs out: it has a sketch
 * for every row of the pool, and a row holds one at most. */
static void tc_qm_sketch_whole(tc_qm *q, tc_qm_slot *r)
{
    tc_qm_sketch *w;
    uint32_t k;

    if (q->sketch_free) {
        k = q->sketch_free - 1;
        q->sketch_free = (uint32_t)q->sketches[k].count;
    } else {
        k = (uint32_t)q->sketch_hwm++;
    }
    w = &q->sketches[k];
    memset(w, 0, sizeof(*w));
    for (int i = 0; i < r->nsparse; i++) {
        w->b[r->sb[i]] = r->sc[i];
        w->count += r->sc[i];
    }
    r->full = k + 1;
}

/* Row r's sketch back to the pool (its row is freed). */
static void tc_qm_sketch_release(tc_qm *q, tc_qm_slot *r)
{
    if (!r->full)
        return;
    q->sketches[r->full - 1].count = q->sketch_free;
    q->sketch_free = r->full;
    r->full = 0;
}

/* One delay in bucket b of row r's sketch. */
static void tc_qm_sketch_put(tc_qm *q, tc_qm_slot *r, int b)
{
    if (!r->full) {
        for (int i = 0; i < r->nsparse; i++)
            if (r->sb[i] == b) {
                r->sc[i]++;
                return;
            }
        if (r->nsparse < TC_QM_SPARSE) {
            r->sb[r->nsparse] = (uint8_t)b;
            r->sc[r->nsparse++] = 1;
            return;
        }
        tc_qm_sketch_whole(q, r);
    }
    q->sketches[r->full - 1].b[b]++;
    q->sketches[r->full - 1].count++;
}

/* Widen [*lo, *end) to bucket b (first: the range is empty so far). */
static void tc_qm_bounds_add(uint8_t *lo, uint8_t *end, uint8_t b, int first)
{
    if (first || b < *lo)
        *lo = b;
    if (first || b >= *end)
        *end = (uint8_t)(b + 1);
}

/* Row r as tc_qm_row (its sketch whole, and where its buckets that count lie) into *out. */
static void tc_qm_row_out(const tc_qm *q, const tc_qm_slot *r, tc_qm_row *out)
{
    out->device = r->device;
    out->minute_us = r->minute_us;
    out->readings = r->readings;
    out->late = r->late;
    out->out_of_order = r->out_of_order;
    out->gaps = r->gaps;
    for (int m = 0; m < TC_QM_METRICS_MAX; m++)
        out->present[m] = m < q->o.metrics ? r->readings - r->absent[m] : 0;
    out->gap_max_s = r->gap_max_s;
    out->continues = 0;
    out->written = 0;
    out->delay_lo = out->delay_end = out->whole_lo = out->whole_end = 0;
    if (r->full) {
        out->delay = q->sketches[r->full - 1];
        return;
    }
    memset(&out->delay, 0, sizeof(out->delay));
    for (int i = 0; i < r->nsparse; i++) {
        out->delay.b[r->sb[i]] = r->sc[i];
        out->delay.count += r->sc[i];
        tc_qm_bounds_add(&out->delay_lo, &out->delay_end, r->sb[i], i == 0);
    }
}

static int64_t tc_qm_minute(int64_t t_us)
{
    int64_t m = t_us / TC_QM_MINUTE_US;

    if (t_us < 0 && m * TC_QM_MINUTE_US != t_us)
        m--; /* floor, also before 1970 */
    return m * TC_QM_MINUTE_US;
}

/* lacking: bit m set when the reading does not carry metric m (of the first o.metrics). */
static void tc_qm_count(tc_qm *q, tc_qm_slot *r, int late, int ooo, int gap, double gap_s,
                        int bucket, unsigned lacking)
{
    r->readings++;
    r->late += (uint32_t)late;
    r->out_of_order += (uint32_t)ooo;
    r->gaps += (uint32_t)gap;
    if (gap && gap_s > r->gap_max_s)
        r->gap_max_s = gap_s;
    for (; lacking; lacking &= lacking - 1)
        r->absent[__builtin_ctz(lacking)]++;
    tc_qm_sketch_put(q, r, bucket);
}

/* The sketch bucket of a reading's event-to-ingest delay (0 when either time is out of range:
 * the reading is refused). */
static int tc_qm_reading_bucket(const tc_qm *q, int64_t event_us, int64_t ingest_us)
{
    if (!TC_Q_TIME_OK(event_us) || !TC_Q_TIME_OK(ingest_us))
        return 0;
    return tc_qm_delay_bucket(q, ingest_us - event_us);
}

/* The metrics of the first o.metrics a reading lacks, from the bits of those it carries among its
 * first `metrics` (the others it lacks). */
static unsigned tc_qm_lacking(const tc_qm *q, unsigned present, int metrics)
{
    unsigned all = (1u << q->o.metrics) - 1;

    if (metrics < q->o.metrics)
        present &= (1u << (metrics > 0 ? metrics : 0)) - 1;
    return ~present & all;
}

/* The device index of a reading, or -1 (refused: its times are out of range, or its id). */
static long tc_qm_lookup(tc_qm *q, const char *device, size_t len, int64_t event_us,
                         int64_t ingest_us, int64_t watermark_us)
{
    return TC_Q_TIME_OK(event_us) && TC_Q_TIME_OK(ingest_us) && TC_Q_TIME_OK(watermark_us)
               ? tc_qids_find(q->ids, device, len, 1)
               : -1;
}

/* Count a reading of device di (-1: refused) whose delay falls in sketch bucket `bucket` (computed
 * once a reading, for its row and the prefetch) and which lacks the metrics of `lacking`. */
static void tc_qm_observe_at(tc_qm *q, long di, int64_t event_us, int64_t watermark_us, int bucket,
                             unsigned lacking)
{
    int64_t minute = tc_qm_minute(event_us);
    int late, ooo, gap = 0;
    double gap_s = 0;
    tc_qm_slot *r;
    tc_qm_dev *d;

    if (di < 0) {
        q->t.devices_refused++;
        return;
    }
    d = &q->devs[di];
    late = (double)(watermark_us - event_us) > q->o.late_after_s * 1e6;
    ooo = d->n > 0 && event_us < d->last_t;
    if (d->n > 0 && event_us > d->last_t) {
        gap_s = (double)(event_us - d->last_t) / 1e6;
        if (d->n >= 3 && gap_s > q->o.gap_factor * d->interval_s)
            gap = 1;
        if (d->n == 1)
            d->interval_s = (float)gap_s;
        else
            d->interval_s +=
                (float)(TC_QM_INTERVAL_ALPHA *
                        (fmin(gap_s, TC_QM_INTERVAL_CLIP * d->interval_s) - d->interval_s));
    }
    if (!ooo) {
        d->last_t = event_us;
        d->n += d->n < UINT32_MAX;
    }
    r = tc_qm_row_of(q, (uint32_t)di, minute);
    if (!r) {
        q->t.rows_refused++;
        return;
    }
    tc_qm_count(q, r, late, ooo, gap, gap_s, bucket, lacking);
    q->t.readings++;
    q->t.late += (uint64_t)late;
    q->t.out_of_order += (uint64_t)ooo;
    q->t.gaps += (uint64_t)gap;
}

void tc_qm_observe(tc_qm *q, const char *device, size_t len, int64_t event_us, int64_t ingest_us,
                   int64_t watermark_us, const double *values, const uint8_t *present, int metrics)
{
    unsigned bits = 0;

    (void)values;
    for (int m = 0; m < metrics && m < TC_QM_METRICS_MAX; m++)
        bits |= (unsigned)(!present || present[m]) << m;
    tc_qm_observe_at(q, tc_qm_lookup(q, device, len, event_us, ingest_us, watermark_us), event_us,
                     watermark_us, tc_qm_reading_bucket(q, event_us, ingest_us),
                     tc_qm_lacking(q, bits, metrics));
}

/* Readings ahead of the one being counted whose row is being fetched; the device line, which
 * names the row, is fetched as far again ahead. A reading touches two lines the metrics own (its
 * device's and its row's) and the second's address is in the first: fetched a group at a time,
 * the rows' fetch waited for the devices' (a stall a group), and the first readings of each group
 * waited for both; at a fixed distance all three steps overlap along the whole batch. */
#define TC_QM_AHEAD 8
#define TC_QM_RING  (4 * TC_QM_AHEAD)

static void tc_qm_prefetch_device(const tc_qm *q, long di)
{
    if (di >= 0)
        __builtin_prefetch(&q->devs[di], 1);
}

static void tc_qm_prefetch_row(const tc_qm *q, long di)
{
    if (di >= 0 && q->devs[di].rows.head)
        __builtin_prefetch(&q->rows[q->devs[di].rows.head - 1], 1); /* its first line only */
}

/* Reading k's device index among the caller's (-1: refused): one of the shared table, with
 * times in range (as tc_qm_lookup). */
static long tc_qm_index_at(const tc_qm *q, const long *index, size_t k, const int64_t *event_us,
                           const int64_t *ingest_us, const int64_t *watermark_us)
{
    int ok = index[k] >= 0 && (size_t)index[k] < q->o.max_devices && TC_Q_TIME_OK(event_us[k]) &&
             TC_Q_TIME_OK(ingest_us[k]) && TC_Q_TIME_OK(watermark_us[k]);

    return ok ? index[k] : -1;
}

void tc_qm_observe_batch_at(tc_qm *q, size_t n, const long *index, const int64_t *event_us,
                            const int64_t *ingest_us, const int64_t *watermark_us,
                            const uint8_t *const *present, const size_t *rows, int metrics)
{
    /* Reading k's index at idx[k % TC_QM_RING], from when its device is fetched until it is
     * counted, 2 x TC_QM_AHEAD readings later: the ring holds more than that. */
    long idx[TC_QM_RING];
    unsigned all;

    if (metrics > q->o.metrics)
        metrics = q->o.metrics;
    all = (1u << metrics) - 1;
    for (size_t k = 0; k < n + 2 * TC_QM_AHEAD; k++) {
        if (k < n) {
            idx[k % TC_QM_RING] = tc_qm_index_at(q, index, k, event_us, ingest_us, watermark_us);
            tc_qm_prefetch_device(q, idx[k % TC_QM_RING]);
        }
        if (k >= TC_QM_AHEAD && k - TC_QM_AHEAD < n)
            tc_qm_prefetch_row(q, idx[(k - TC_QM_AHEAD) % TC_QM_RING]);
        if (k >= 2 * TC_QM_AHEAD) {
            size_t c = k - 2 * TC_QM_AHEAD, r = rows ? rows[c] : c;
            long di = idx[c % TC_QM_RING];
            unsigned bits = all;
            if (present) {
                bits = 0;
                for (int m = 0; m < metrics; m++)
                    bits |= (unsigned)(present[m][r] != 0) << m;
            }
            /* A device index says the times are in range (a refused reading has none). */
            tc_qm_observe_at(q, di, event_us[c], watermark_us[c],
                             di >= 0 ? tc_qm_delay_bucket(q, ingest_us[c] - event_us[c]) : 0,
                             tc_qm_lacking(q, bits, metrics));
        }
    }
}

void tc_qm_observe_batch(tc_qm *q, size_t n, const char *const *ids, const size_t *lens,
                         const int64_t *event_us, const int64_t *ingest_us,
                         const int64_t *watermark_us, const uint8_t *const *present, int metrics)
{
    long idx[TC_QM_BATCH_GROUP];

    /* Looked up a group at a time, then counted by index. */
    for (size_t g = 0; g < n; g += TC_QM_BATCH_GROUP) {
        size_t len = n - g < TC_QM_BATCH_GROUP ? n - g : TC_QM_BATCH_GROUP;
        const uint8_t *pres[TC_QM_METRICS_MAX];
        for (size_t k = 0; k < len; k++)
            idx[k] = tc_qm_lookup(q, ids[g + k], lens[g + k], event_us[g + k], ingest_us[g + k],
                                  watermark_us[g + k]);
        for (int m = 0; present && m < metrics && m < TC_QM_METRICS_MAX; m++)
            pres[m] = present[m] + g;
        tc_qm_observe_batch_at(q, len, idx, event_us + g, ingest_us + g, watermark_us + g,
                               present ? pres : NULL, NULL, metrics);
    }
}

/* Add the pair (b, c) to w's sparse sketch; 0 when it needs a seventh bucket. */
static int tc_qm_written_put(tc_qm_written *w, uint8_t b, uint32_t c)
{
    for (int i = 0; i < w->nsparse; i++)
        if (w->sb[i] == b) {
            if (w->sc[i] > UINT32_MAX - c)
                return 0;
            w->sc[i] += c;
            return 1;
        }
    if (w->nsparse == TC_QM_SPARSE)
        return 0;
    w->sb[w->nsparse] = b;
    w->sc[w->nsparse++] = c;
    return 1;
}

/* Row s of a device, as out, is handed over: say whether it continues the minute last handed over
 * (out->continues, written, whole) and remember it (metrics.h). A row of an older minute (a late
 * reading's) leaves the memory as it is: it is not the latest. */
static void tc_qm_written_note(tc_qm *q, const tc_qm_slot *s, tc_qm_row *out)
{
    tc_qm_written *w = &q->written[s->dev];
    int known;

    out->continues = 0;
    if (w->state != TC_QM_WRITTEN_NONE && s->minute_us < w->minute_us)
        return;
    if (w->state == TC_QM_WRITTEN_NONE || s->minute_us > w->minute_us) {
        memset(w, 0, sizeof(*w));
        w->minute_us = s->minute_us;
        w->state = TC_QM_WRITTEN_KNOWN;
    } else if (w->state == TC_QM_WRITTEN_KNOWN) {
        out->continues = 1;
        out->written = w->readings;
        out->whole = out->delay;
        out->whole_lo = out->delay_lo;
        out->whole_end = out->delay_end;
        for (int i = 0; i < w->nsparse; i++) {
            out->whole.b[w->sb[i]] += w->sc[i];
            out->whole.count += w->sc[i];
            if (out->whole_end) /* else the delay's buckets are not known: nor the whole's */
                tc_qm_bounds_add(&out->whole_lo, &out->whole_end, w->sb[i], 0);
        }
    }
    known = w->state == TC_QM_WRITTEN_KNOWN && !s->full && w->readings <= UINT32_MAX - s->readings;
    for (int i = 0; known && i < s->nsparse; i++)
        known = tc_qm_written_put(w, s->sb[i], s->sc[i]);
    w->readings += known ? s->readings : 0;
    if (!known)
        w->state = TC_QM_WRITTEN_SPREAD;
}

static int tc_qm_slot_order(const void *a, const void *b)
{
    const tc_qm_slot *x = *(const tc_qm_slot *const *)a, *y = *(const tc_qm_slot *const *)b;

    if (x->minute_us != y->minute_us)
        return x->minute_us < y->minute_us ? -1 : 1;
    return (x->dev > y->dev) - (x->dev < y->dev);
}

/* The fleet's row of a minute, its devices' rows added to it one by one. */
static void tc_qm_fleet_begin(tc_qm_row *f, int64_t minute_us)
{
    memset(f, 0, sizeof(*f));
    f->minute_us = minute_us;
}

static void tc_qm_fleet_add(const tc_qm *q, tc_qm_row *f, const tc_qm_slot *s)
{
    f->readings += s->readings;
    f->late += s->late;
    f->out_of_order += s->out_of_order;
    f->gaps += s->gaps;
    if (s->gaps && s->gap_max_s > f->gap_max_s)
        f->gap_max_s = s->gap_max_s;
    for (int m = 0; m < q->o.metrics; m++)
        f->present[m] += s->readings - s->absent[m];
    if (s->full) {
        tc_qm_sketch_merge(&f->delay, &q->sketches[s->full - 1]);
        return;
    }
    for (int i = 0; i < s->nsparse; i++) {
        f->delay.b[s->sb[i]] += s->sc[i];
        f->delay.count += s->sc[i];
    }
}

/* The fleet's rows of the minutes of rows[0 .. n), sorted by minute: one a minute. */
static void tc_qm_fleet_sorted(const tc_qm *q, tc_qm_slot *const *rows, size_t n, tc_qm_row_fn fn,
                               void *opaque)
{
    tc_qm_row f;

    for (size_t k = 0; k < n; k++) {
        if (!k || rows[k]->minute_us != f.minute_us) {
            if (k)
                fn(opaque, &f); /* the previous minute is whole */
            tc_qm_fleet_begin(&f, rows[k]->minute_us);
        }
        tc_qm_fleet_add(q, &f, rows[k]);
    }
    if (n)
        fn(opaque, &f);
}

/* The same from the pool as it lies, a pass a minute: only when there was no memory to sort. */
static void tc_qm_fleet_unsorted(const tc_qm *q, int64_t before_us, tc_qm_row_fn fn, void *opaque)
{
    tc_qm_row f;
    /* A row's minute is of a time in range (TC_Q_TIME_OK): never INT64_MIN. */
    int64_t last = INT64_MIN, next;
    int found;

    for (;; last = next) {
        found = 0;
        next = INT64_MAX;
        for (size_t i = 0; i < q->hwm; i++) {
            const tc_qm_slot *s = &q->rows[i];
            if (s->used && s->minute_us < before_us && s->minute_us > last &&
                s->minute_us <= next) {
                next = s->minute_us;
                found = 1;
            }
        }
        if (!found)
            return;
        tc_qm_fleet_begin(&f, next);
        for (size_t i = 0; i < q->hwm; i++)
            if (q->rows[i].used && q->rows[i].minute_us == next)
                tc_qm_fleet_add(q, &f, &q->rows[i]);
        fn(opaque, &f);
    }
}

void tc_qm_flush(tc_qm *q, int64_t before_us, tc_qm_row_fn fn, void *opaque)
{
    tc_qm_slot **out = malloc((q->nrows ? q->nrows : 1) * sizeof(*out));
    size_t n = 0;
    /* Zeroed once: a row's `whole` is only set when it continues, and what it holds otherwise
     * must not depend on the stack. */
    tc_qm_row row = {0};

    /* Out of memory for the ordering: hand the rows over in pool order rather than not at all. */
    for (size_t i = 0; i < q->hwm; i++) {
        tc_qm_slot *s = &q->rows[i];
        if (!s->used || s->minute_us >= before_us)
            continue;
        if (out) {
            out[n++] = s;
        } else if (fn) {
            tc_qm_row_out(q, s, &row);
            tc_qm_written_note(q, s, &row);
            fn(opaque, &row);
        }
    }
    if (out) {
        qsort(out, n, sizeof(*out), tc_qm_slot_order);
        for (size_t k = 0; k < n && fn; k++) {
            tc_qm_row_out(q, out[k], &row);
            tc_qm_written_note(q, out[k], &row);
            fn(opaque, &row);
        }
        if (fn)
            tc_qm_fleet_sorted(q, out, n, fn, opaque);
        free(out);
    } else if (fn) {
        tc_qm_fleet_unsorted(q, before_us, fn, opaque);
    }
    /* Every chain that holds a row is emptied, then the rows left are linked again, the newest
     * minute at the head (where the next reading looks first). Each chain keeps its max_minute:
     * still a bound of what it holds. */
    q->nrows = 0;
    for (size_t i = 0; i < q->hwm; i++)
        if (q->rows[i].used)
            tc_qm_chain_of(q, q->rows[i].dev)->head = 0;
    for (size_t i = 0; i < q->hwm; i++) {
        tc_qm_slot *s = &q->rows[i];
        if (s->used && s->minute_us < before_us) {
            tc_qm_sketch_release(q, s);
            s->used = 0;
            s->next = q->free_head;
            q->free_head = (uint32_t)i;
        } else if (s->used) {
            tc_qm_link(q, tc_qm_chain_of(q, s->dev), (uint32_t)i);
            q->nrows++;
        }
    }
}

void tc_qm_get_totals(const tc_qm *q, tc_qm_totals *t)
{
    *t = q->t;
    t->devices = tc_qids_count(q->ids);
    t->rows_held = q->nrows;
}
