/*
 * test_rollup.c -- the store's per-batch aggregation (src/store/rollup.c) and the binary array
 * header it ships its groups in (src/store/copy.c).
 *
 * Expected values are worked out by hand (small batches) or by a brute-force pass over the rows
 * (large batches), never by the hash aggregation itself.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "core/batch.h"
#include "store/copy.h"
#include "store/rollup.h"

#define MIN_US  (60LL * 1000000LL)
#define HOUR_US (3600LL * 1000000LL)
/* 2026-11-28T12:00:00Z */
#define T0 1795867200000000LL

/* Append a row: device, time, partition, offset, then the metric values; NAN-free: a metric whose
 * mask bit is clear is absent. */
static void add_row(tc_batch *b, const char *dev, int64_t t, int32_t part, int64_t off,
                    unsigned present_mask, const double *vals)
{
    size_t i = b->n;

    assert_int_equal(tc_batch_row_begin(b), 0);
    b->device_id[i] = (tc_slice){dev, (uint32_t)strlen(dev)};
    b->time_us[i] = t;
    b->partition[i] = part;
    b->offset[i] = off;
    for (int m = 0; m < TC_METRIC__COUNT; m++) {
        if (present_mask & (1u << m)) {
            b->present[m][i] = 1;
            b->metric[m][i] = vals[m];
        }
    }
    tc_batch_row_commit(b);
}

/* Give row i of b the value v of the dynamic column called name (made when new). */
static void set_dyn(tc_batch *b, size_t i, const char *name, double v)
{
    int d = tc_batch_dyn_column(b, name, strlen(name));

    assert_true(d >= 0);
    b->dyn[d][i] = v;
    b->dyn_present[d][i] = 1;
}

/* Index of the rollup's dynamic metric called name; fails the test when there is none. */
static size_t dyn_index(const tc_rollup *r, const char *name)
{
    for (size_t d = 0; d < r->ndyn; d++) {
        if (strcmp(r->dyn_name[d], name) == 0)
            return d;
    }
    fail_msg("the rollup has no dynamic metric \"%s\"", name);
    return 0;
}

static void assert_dyn(const tc_rollup *r, size_t g, const char *name, int64_t cnt, double sum,
                       double min, double max)
{
    const tc_rollup_dyn *a = tc_rollup_dyn_at(r, g, dyn_index(r, name));

    assert_int_equal(a->cnt, cnt);
    assert_true(a->sum == sum);
    if (cnt) {
        assert_true(a->min == min);
        assert_true(a->max == max);
    }
}

static int slice_is(const tc_slice *s, const char *text)
{
    return s->len == strlen(text) && memcmp(s->ptr, text, s->len) == 0;
}

static void test_bucket_floor(void **state)
{
    (void)state;
    assert_int_equal(tc_rollup_bucket(T0, MIN_US), T0);
    assert_int_equal(tc_rollup_bucket(T0 + MIN_US - 1, MIN_US), T0);
    assert_int_equal(tc_rollup_bucket(T0 + MIN_US, MIN_US), T0 + MIN_US);
    assert_int_equal(tc_rollup_bucket(T0 + 59 * MIN_US + 5, HOUR_US), T0);
    /* Before 1970 the floor still goes down, not toward zero. */
    assert_int_equal(tc_rollup_bucket(-1, MIN_US), -MIN_US);
    assert_int_equal(tc_rollup_bucket(-MIN_US, MIN_US), -MIN_US);
    assert_int_equal(tc_rollup_bucket(-MIN_US - 1, MIN_US), -2 * MIN_US);
    assert_int_equal(tc_rollup_bucket(0, HOUR_US), 0);
}

static void test_empty_batch(void **state)
{
    tc_batch *b = tc_batch_new(4, 0);
    tc_rollup r;

    (void)state;
    assert_non_null(b);
    tc_rollup_init(&r, MIN_US);
    assert_int_equal(tc_rollup_build(&r, b), 0);
    assert_int_equal(r.ngroups, 0);
    tc_rollup_free(&r);
    tc_batch_destroy(b);
}

/* A big batch of few groups leaves the arrays sized for the groups, not for the rows (they were
 * once reserved for every row of each batch, and stayed that large); only the rollup without
 * buckets keeps the latest readings. */
static void test_memory_follows_groups_not_rows(void **state)
{
    enum { ROWS = 10000 };
    static const char *const devs[] = {"a", "b", "c", "d", "e", "f", "g", "h"};
    double v[TC_METRIC__COUNT] = {1, 2, 3, 4, 5, 6};
    tc_batch *b = tc_batch_new(ROWS, 0);
    tc_rollup hour, latest;

    (void)state;
    assert_non_null(b);
    for (int i = 0; i < ROWS; i++)
        add_row(b, devs[i % 8], T0 + i * 1000LL, 0, i, 0x3f, v);
    tc_rollup_init(&hour, HOUR_US);
    tc_rollup_init(&latest, 0);
    assert_int_equal(tc_rollup_build(&hour, b), 0);
    assert_int_equal(tc_rollup_build(&latest, b), 0);
    assert_int_equal(hour.ngroups, 8);
    assert_int_equal(latest.ngroups, 8);
    assert_true(hour.cap <= 64 && hour.nslots <= 64);
    assert_true(latest.cap <= 64 && latest.nslots <= 64);
    assert_null(hour.latest);
    assert_non_null(latest.latest);
    assert_int_equal(tc_rollup_latest_at(&latest, 7)->offset, ROWS - 1);
    tc_rollup_free(&hour);
    tc_rollup_free(&latest);
    tc_batch_destroy(b);
}

static void test_groups_by_device_and_minute(void **state)
{
    const double v1[TC_METRIC__COUNT] = {20.0, 40.0, 1000.0, 90.0, 52.5, 13.4};
    const double v2[TC_METRIC__COUNT] = {22.0, 41.0, 1001.0, 89.0, 52.5, 13.4};
    const double v3[TC_METRIC__COUNT] = {-5.5, 0, 0, 0, 0, 0};
    const double v4[TC_METRIC__COUNT] = {30.0, 10.0, 0, 0, 0, 0};
    tc_batch *b = tc_batch_new(16, 0);
    tc_rollup r;
    const tc_rollup_group *g;

    (void)state;
    assert_non_null(b);
    add_row(b, "dev-a", T0 + 5 * 1000000LL, 0, 10, 0x3f, v1);  /* a, minute 0 */
    add_row(b, "dev-b", T0 + 7 * 1000000LL, 1, 20, 0x01, v3);  /* b, minute 0, temperature only */
    add_row(b, "dev-a", T0 + 59 * 1000000LL, 0, 11, 0x3f, v2); /* a, minute 0 */
    add_row(b, "dev-a", T0 + MIN_US, 0, 12, 0x00, v1);         /* a, minute 1, no metric */
    add_row(b, "dev-b", T0 + 30 * 1000000LL, 1, 21, 0x03, v4); /* b, minute 0 */

    tc_rollup_init(&r, MIN_US);
    assert_int_equal(tc_rollup_build(&r, b), 0);
    assert_int_equal(r.ngroups, 3);

    g = &r.groups[0]; /* groups in the order of their first row */
    assert_true(slice_is(&g->device, "dev-a"));
    assert_int_equal(g->bucket_us, T0);
    assert_int_equal(g->n, 2);
    for (int m = 0; m < TC_METRIC__COUNT; m++)
        assert_int_equal(g->cnt[m], 2);
    assert_true(g->sum[TC_M_TEMPERATURE] == 42.0);
    assert_true(g->min[TC_M_TEMPERATURE] == 20.0);
    assert_true(g->max[TC_M_TEMPERATURE] == 22.0);
    assert_true(g->min[TC_M_BATTERY] == 89.0);
    assert_true(g->max[TC_M_BATTERY] == 90.0);
    assert_true(g->sum[TC_M_LATITUDE] == 105.0);

    g = &r.groups[1];
    assert_true(slice_is(&g->device, "dev-b"));
    assert_int_equal(g->bucket_us, T0);
    assert_int_equal(g->n, 2);
    assert_int_equal(g->cnt[TC_M_TEMPERATURE], 2);
    assert_int_equal(g->cnt[TC_M_HUMIDITY], 1);
    assert_int_equal(g->cnt[TC_M_PRESSURE], 0);
    assert_true(g->sum[TC_M_TEMPERATURE] == 24.5);
    assert_true(g->min[TC_M_TEMPERATURE] == -5.5);
    assert_true(g->max[TC_M_TEMPERATURE] == 30.0);
    assert_true(g->min[TC_M_HUMIDITY] == 10.0 && g->max[TC_M_HUMIDITY] == 10.0);
    assert_true(g->sum[TC_M_PRESSURE] == 0.0);

    g = &r.groups[2];
    assert_true(slice_is(&g->device, "dev-a"));
    assert_int_equal(g->bucket_us, T0 + MIN_US);
    assert_int_equal(g->n, 1);
    for (int m = 0; m < TC_METRIC__COUNT; m++)
        assert_int_equal(g->cnt[m], 0);

    /* The same batch by hour: one group per device. Rebuilding forgets the previous groups. */
    tc_rollup_free(&r);
    tc_rollup_init(&r, HOUR_US);
    assert_int_equal(tc_rollup_build(&r, b), 0);
    assert_int_equal(tc_rollup_build(&r, b), 0);
    assert_int_equal(r.ngroups, 2);
    assert_int_equal(r.groups[0].n, 3);
    assert_int_equal(r.groups[0].cnt[TC_M_TEMPERATURE], 2);
    assert_int_equal(r.groups[1].n, 2);
    tc_rollup_free(&r);
    tc_batch_destroy(b);
}

static void test_latest_per_device(void **state)
{
    const double v[TC_METRIC__COUNT] = {1, 2, 3, 4, 5, 6};
    tc_batch *b = tc_batch_new(16, 0);
    tc_rollup r;

    (void)state;
    assert_non_null(b);
    add_row(b, "x", T0 + 100, 0, 5, 0x3f, v);
    add_row(b, "y", T0 + 50, 2, 9, 0x3f, v);
    add_row(b, "x", T0 + 300, 0, 6, 0x3f, v); /* newest x */
    add_row(b, "x", T0 + 200, 0, 7, 0x3f, v); /* later offset, older time: not the latest */
    add_row(b, "y", T0 + 50, 2, 8, 0x3f, v);  /* same time as row 1, lower offset */
    add_row(b, "y", T0 + HOUR_US * 5, 1, 1, 0x3f, v);
    add_row(b, "z", T0, 3, 1, 0x3f, v);
    add_row(b, "z", T0, 3, 2, 0x3f, v); /* same time, higher offset wins */

    tc_rollup_init(&r, 0);
    assert_int_equal(tc_rollup_build(&r, b), 0);
    assert_int_equal(r.ngroups, 3);
    assert_int_equal(tc_rollup_latest_at(&r, 0)->offset, 6); /* the rows' offsets identify them */
    assert_int_equal(tc_rollup_latest_at(&r, 0)->time_us, T0 + 300);
    assert_int_equal(r.groups[0].n, 3);
    assert_int_equal(r.groups[0].cnt[0], 0); /* no aggregates: the reading is what is kept */
    assert_int_equal(tc_rollup_latest_at(&r, 1)->offset, 1);
    assert_int_equal(tc_rollup_latest_at(&r, 1)->partition, 1);
    assert_int_equal(tc_rollup_latest_at(&r, 2)->offset, 2);
    assert_int_equal(r.groups[0].bucket_us, 0);
    tc_rollup_free(&r);
    tc_batch_destroy(b);
}

/* Many devices and buckets (collisions, table growth): every row lands in exactly one group and
 * each group equals a brute-force aggregate of its rows. */
static void test_many_groups_match_brute_force(void **state)
{
    enum { ROWS = 20000, DEVICES = 3000 };
    static char names[DEVICES][24];
    tc_batch *b = tc_batch_new(ROWS, 0);
    tc_rollup r;
    uint64_t x = 88172645463325252ULL;
    int64_t total = 0;

    (void)state;
    assert_non_null(b);
    for (int d = 0; d < DEVICES; d++)
        snprintf(names[d], sizeof(names[d]), "sensor-%05d", d);
    for (int i = 0; i < ROWS; i++) {
        double v[TC_METRIC__COUNT];
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        for (int m = 0; m < TC_METRIC__COUNT; m++)
            v[m] = (double)((x >> (m * 8)) & 0xff) / 4.0 - 10.0;
        add_row(b, names[x % DEVICES], T0 + (int64_t)((x >> 20) % (3 * HOUR_US)), (int32_t)(i % 6),
                i, (unsigned)(x >> 40) & 0x3f, v);
    }
    /* Built twice: the second build reuses the table and must give the same groups. */
    tc_rollup_init(&r, MIN_US);
    for (int pass = 0; pass < 2; pass++) {
        assert_int_equal(tc_rollup_build(&r, b), 0);
        total = 0;
        for (size_t g = 0; g < r.ngroups; g++)
            total += r.groups[g].n;
        assert_int_equal(total, ROWS);
    }
    /* Check a sample of groups against the rows. */
    for (size_t g = 0; g < r.ngroups; g += 97) {
        const tc_rollup_group *gr = &r.groups[g];
        const tc_slice *dev = &gr->device;
        int64_t n = 0, cnt[TC_METRIC__COUNT] = {0};
        double sum[TC_METRIC__COUNT] = {0};
        for (size_t i = 0; i < b->n; i++) {
            if (b->device_id[i].len != dev->len ||
                memcmp(b->device_id[i].ptr, dev->ptr, dev->len) != 0 ||
                tc_rollup_bucket(b->time_us[i], MIN_US) != gr->bucket_us)
                continue;
            n++;
            for (int m = 0; m < TC_METRIC__COUNT; m++) {
                if (!b->present[m][i])
                    continue;
                cnt[m]++;
                sum[m] += b->metric[m][i];
                assert_true(b->metric[m][i] >= gr->min[m]);
                assert_true(b->metric[m][i] <= gr->max[m]);
            }
        }
        assert_int_equal(n, gr->n);
        for (int m = 0; m < TC_METRIC__COUNT; m++) {
            assert_int_equal(cnt[m], gr->cnt[m]);
            /* Quarter steps: every partial sum is exact, so the order does not matter. */
            assert_true(sum[m] == gr->sum[m]);
        }
    }
    tc_rollup_free(&r);
    tc_batch_destroy(b);
}

/* Accumulating: rows added over several batches (with a mask) give the groups of one batch holding
 * the selected rows; the groups own their strings, so the batches may change afterwards. */
static void test_accumulates_across_batches(void **state)
{
    enum { ROWS = 3000, DEVICES = 211 };
    static char names[DEVICES][16];
    char tags[ROWS][24];
    tc_batch *all = tc_batch_new(ROWS, 0), *part = tc_batch_new(ROWS / 3, 0);
    tc_rollup one, acc;
    uint8_t mask[ROWS / 3];

    (void)state;
    assert_non_null(all);
    assert_non_null(part);
    for (int d = 0; d < DEVICES; d++)
        snprintf(names[d], sizeof(names[d]), "d%03d", d);
    tc_rollup_init(&one, 0);
    tc_rollup_init(&acc, 0);
    for (int k = 0; k < 3; k++) {
        tc_batch_reset(part);
        for (int j = 0; j < ROWS / 3; j++) {
            int i = k * (ROWS / 3) + j;
            double v[TC_METRIC__COUNT] = {i * 0.5, 1, 2, 3, 4, 5};
            snprintf(tags[i], sizeof(tags[i]), "{\"i\":%d}", i);
            add_row(part, names[(i * 7) % DEVICES], T0 + (i % 500) * 1000000LL, k, i, 0x3f, v);
            part->tags[j] = (tc_slice){tags[i], (uint32_t)strlen(tags[i])};
            mask[j] = i % 5 != 0; /* every fifth row is not for the rollup */
            if (mask[j]) {
                add_row(all, names[(i * 7) % DEVICES], T0 + (i % 500) * 1000000LL, k, i, 0x3f, v);
                all->tags[all->n - 1] = part->tags[j];
            }
        }
        assert_int_equal(tc_rollup_add(&acc, part, mask), 0);
    }
    memset(tags, 'x', sizeof(tags)); /* the accumulated groups must not point into the batches */
    assert_int_equal(tc_rollup_build(&one, all), 0);
    for (size_t i = 0; i < all->n; i++) /* restore the texts the reference batch points to */
        snprintf(tags[all->offset[i]], sizeof(tags[0]), "{\"i\":%d}", (int)all->offset[i]);
    assert_int_equal(tc_rollup_build(&one, all), 0);
    assert_int_equal(acc.ngroups, one.ngroups);
    for (size_t g = 0; g < one.ngroups; g++) {
        const tc_rollup_group *a = &acc.groups[g], *o = &one.groups[g];
        const tc_rollup_latest *al = tc_rollup_latest_at(&acc, g),
                               *ol = tc_rollup_latest_at(&one, g);
        char want[24];
        assert_int_equal(a->device.len, o->device.len);
        assert_memory_equal(a->device.ptr, o->device.ptr, a->device.len);
        assert_int_equal(a->n, o->n);
        assert_true(al->metric[0] == ol->metric[0]);
        assert_int_equal(al->offset, ol->offset);
        assert_int_equal(al->time_us, ol->time_us);
        snprintf(want, sizeof(want), "{\"i\":%d}", (int)al->offset);
        assert_true(slice_is(&al->tags, want));
    }
    tc_rollup_clear(&acc);
    assert_int_equal(acc.ngroups, 0);
    assert_int_equal(tc_rollup_add(&acc, all, NULL), 0);
    assert_int_equal(acc.ngroups, one.ngroups);
    tc_rollup_free(&one);
    tc_rollup_free(&acc);
    tc_batch_destroy(all);
    tc_batch_destroy(part);
}

/* A bound (skip_from_us): the rows of buckets at or past it are left out, the least of those
 * buckets is noted, and the groups below it are those of a batch holding only the rows below it --
 * over more rows than are picked at a time, with a mask and a dynamic column. Cleared, the rollup
 * keeps the bound and forgets the least bucket left out. */
static void test_bound_leaves_out_buckets_from_it(void **state)
{
    enum { ROWS = 1500, DEVICES = 37 };
    static char names[DEVICES][16];
    tc_batch *b = tc_batch_new(ROWS, 0), *below = tc_batch_new(ROWS, 0);
    tc_rollup r, ref;
    uint8_t mask[ROWS];
    const int64_t bound = T0 + 20 * MIN_US;
    int64_t least = INT64_MAX;

    (void)state;
    assert_non_null(b);
    assert_non_null(below);
    for (int d = 0; d < DEVICES; d++)
        snprintf(names[d], sizeof(names[d]), "d%02d", d);
    for (int i = 0; i < ROWS; i++) {
        double v[TC_METRIC__COUNT] = {i * 0.25, 1, 2, 3, 4, 5};
        /* minutes 0..39, shuffled by the row's index */
        int64_t t = T0 + ((i * 17) % 40) * MIN_US + (i % 60) * 1000000LL;
        mask[i] = i % 7 != 0;
        add_row(b, names[i % DEVICES], t, 0, i, 0x3f, v);
        set_dyn(b, b->n - 1, "co2", i * 0.5);
        if (!mask[i])
            continue;
        if (tc_rollup_bucket(t, MIN_US) >= bound) {
            least = tc_rollup_bucket(t, MIN_US) < least ? tc_rollup_bucket(t, MIN_US) : least;
            continue;
        }
        add_row(below, names[i % DEVICES], t, 0, i, 0x3f, v);
        set_dyn(below, below->n - 1, "co2", i * 0.5);
    }
    assert_int_equal(least, bound);
    tc_rollup_init(&r, MIN_US);
    tc_rollup_init(&ref, MIN_US);
    assert_true(r.skip_from_us == INT64_MAX && r.skipped_min_us == INT64_MAX);
    r.skip_from_us = bound;
    assert_int_equal(tc_rollup_add(&r, b, mask), 0);
    assert_true(r.skipped_min_us == least);
    assert_int_equal(tc_rollup_build(&ref, below), 0);
    assert_int_equal(r.ngroups, ref.ngroups);
    for (size_t g = 0; g < r.ngroups; g++) {
        const tc_rollup_group *a = &r.groups[g], *o = &ref.groups[g];
        assert_true(a->bucket_us < bound);
        assert_true(a->bucket_us == o->bucket_us);
        assert_memory_equal(a->device.ptr, o->device.ptr, a->device.len);
        assert_int_equal(a->n, o->n);
        assert_true(a->sum[0] == o->sum[0]);
        assert_true(tc_rollup_dyn_at(&r, g, 0)->sum == tc_rollup_dyn_at(&ref, g, 0)->sum);
    }
    tc_rollup_clear(&r);
    assert_true(r.skip_from_us == bound && r.skipped_min_us == INT64_MAX);
    /* Every bucket left out: no group, only the least bucket noted. */
    r.skip_from_us = INT64_MIN;
    assert_int_equal(tc_rollup_add(&r, b, NULL), 0);
    assert_int_equal(r.ngroups, 0);
    assert_true(r.skipped_min_us == T0);
    tc_rollup_free(&r);
    tc_rollup_free(&ref);
    tc_batch_destroy(b);
    tc_batch_destroy(below);
}

/* Dynamic columns (schema evolution) are aggregated per group like the fixed metrics: values a row
 * lacks are not counted; the names are the rollup's own copies; the latest state ignores them. */
static void test_dynamic_metrics(void **state)
{
    const double v[TC_METRIC__COUNT] = {20.0, 0, 0, 0, 0, 0};
    tc_batch *b = tc_batch_new(16, 0);
    tc_rollup r, latest;

    (void)state;
    assert_non_null(b);
    add_row(b, "dev-a", T0 + 1000000LL, 0, 1, 0x01, v); /* a, minute 0 */
    set_dyn(b, 0, "co2", 410.5);
    add_row(b, "dev-b", T0 + 2000000LL, 0, 2, 0x01, v); /* b, minute 0: no co2 */
    add_row(b, "dev-a", T0 + 3000000LL, 0, 3, 0x00, v); /* a, minute 0 */
    set_dyn(b, 2, "co2", 399.25);
    add_row(b, "dev-a", T0 + 4000000LL, 0, 4, 0x01, v); /* a, minute 0: co2 absent */
    add_row(b, "dev-b", T0 + MIN_US, 0, 5, 0x01, v);    /* b, minute 1 */
    set_dyn(b, 4, "co2", -3.0);
    assert_int_equal(b->ndyn, 1);

    tc_rollup_init(&r, MIN_US);
    assert_int_equal(tc_rollup_build(&r, b), 0);
    assert_int_equal(r.ngroups, 3);
    assert_int_equal(r.ndyn, 1);
    assert_string_equal(r.dyn_name[0], "co2");
    assert_true(r.dyn_name[0] != b->dyn_name[0]); /* a copy: the flush outlives the batch */
    assert_int_equal(r.groups[0].n, 3);
    assert_int_equal(r.groups[0].cnt[TC_M_TEMPERATURE], 2);
    assert_dyn(&r, 0, "co2", 2, 809.75, 399.25, 410.5);
    assert_dyn(&r, 1, "co2", 0, 0.0, 0, 0); /* dev-b, minute 0 never had it */
    assert_dyn(&r, 2, "co2", 1, -3.0, -3.0, -3.0);

    /* Cleared, the groups go but the metrics stay known: columns only ever appear. */
    tc_rollup_clear(&r);
    assert_int_equal(r.ndyn, 1);
    assert_int_equal(tc_rollup_add(&r, b, NULL), 0);
    assert_dyn(&r, 0, "co2", 2, 809.75, 399.25, 410.5);

    /* The mask leaves rows out of the dynamic metrics too. */
    {
        const uint8_t mask[5] = {1, 1, 0, 1, 1};
        tc_rollup_clear(&r);
        assert_int_equal(tc_rollup_add(&r, b, mask), 0);
        assert_dyn(&r, 0, "co2", 1, 410.5, 410.5, 410.5);
    }

    tc_rollup_init(&latest, 0);
    assert_int_equal(tc_rollup_build(&latest, b), 0);
    assert_int_equal(latest.ndyn, 0);
    assert_null(latest.dyn);
    tc_rollup_free(&latest);
    tc_rollup_free(&r);
    tc_batch_destroy(b);
}

/* A rollup without dynamic columns allocates nothing for them (the hot path stays as it was). */
static void test_no_dynamic_metrics_no_side_array(void **state)
{
    const double v[TC_METRIC__COUNT] = {1, 2, 3, 4, 5, 6};
    tc_batch *b = tc_batch_new(4, 0);
    tc_rollup r;

    (void)state;
    assert_non_null(b);
    add_row(b, "x", T0, 0, 1, 0x3f, v);
    tc_rollup_init(&r, MIN_US);
    assert_int_equal(tc_rollup_build(&r, b), 0);
    assert_int_equal(r.ndyn, 0);
    assert_null(r.dyn);
    tc_rollup_free(&r);
    tc_batch_destroy(b);
}

/* Accumulating over batches while the stream grows a column: a second batch has one more dynamic
 * column; groups made before it existed have a zero aggregate for it and keep what they had of
 * the first one; groups made after have both. */
static void test_dynamic_column_appears_between_batches(void **state)
{
    const double v[TC_METRIC__COUNT] = {0};
    tc_batch *b = tc_batch_new(8, 0);
    tc_rollup r;
    size_t g_old, g_new;

    (void)state;
    assert_non_null(b);
    tc_rollup_init(&r, MIN_US);
    add_row(b, "dev-a", T0, 0, 1, 0, v);
    set_dyn(b, 0, "co2", 400.0);
    add_row(b, "dev-b", T0, 0, 2, 0, v);
    assert_int_equal(tc_rollup_add(&r, b, NULL), 0);
    assert_int_equal(r.ndyn, 1);
    assert_int_equal(r.ngroups, 2);

    /* The same batch object, reset: known columns stay, "no2" is appended. */
    tc_batch_reset(b);
    add_row(b, "dev-a", T0 + 10, 0, 3, 0, v); /* an old group */
    set_dyn(b, 0, "co2", 401.0);
    set_dyn(b, 0, "no2", 7.5);
    add_row(b, "dev-c", T0 + 20, 0, 4, 0, v); /* a new group */
    set_dyn(b, 1, "no2", 8.0);
    add_row(b, "dev-b", T0 + 30, 0, 5, 0, v); /* an old group, neither metric */
    assert_int_equal(b->ndyn, 2);
    assert_int_equal(tc_rollup_add(&r, b, NULL), 0);
    assert_int_equal(r.ndyn, 2);
    assert_string_equal(r.dyn_name[1], "no2");
    assert_int_equal(r.ngroups, 3);
    g_old = 0;
    g_new = 2;
    assert_true(slice_is(&r.groups[g_old].device, "dev-a"));
    assert_true(slice_is(&r.groups[g_new].device, "dev-c"));
    assert_int_equal(r.groups[g_old].n, 2);
    assert_dyn(&r, g_old, "co2", 2, 801.0, 400.0, 401.0);
    assert_dyn(&r, g_old, "no2", 1, 7.5, 7.5, 7.5);
    assert_dyn(&r, 1, "co2", 0, 0.0, 0, 0); /* dev-b: made before no2, has neither */
    assert_dyn(&r, 1, "no2", 0, 0.0, 0, 0);
    assert_dyn(&r, g_new, "co2", 0, 0.0, 0, 0);
    assert_dyn(&r, g_new, "no2", 1, 8.0, 8.0, 8.0);

    /* Another batch whose columns come in another order: matched by name, not by position. */
    {
        tc_batch *o = tc_batch_new(4, 0);
        assert_non_null(o);
        add_row(o, "dev-c", T0 + 40, 1, 1, 0, v);
        set_dyn(o, 0, "no2", 9.0);
        set_dyn(o, 0, "so2", 0.25);
        set_dyn(o, 0, "co2", 1.0);
        assert_string_equal(o->dyn_name[0], "no2");
        assert_int_equal(tc_rollup_add(&r, o, NULL), 0);
        assert_int_equal(r.ndyn, 3);
        assert_dyn(&r, g_new, "no2", 2, 17.0, 8.0, 9.0);
        assert_dyn(&r, g_new, "co2", 1, 1.0, 1.0, 1.0);
        assert_dyn(&r, g_new, "so2", 1, 0.25, 0.25, 0.25);
        assert_dyn(&r, g_old, "co2", 2, 801.0, 400.0, 401.0);
        assert_dyn(&r, g_old, "so2", 0, 0.0, 0, 0);
        tc_batch_destroy(o);
    }
    tc_rollup_free(&r);
    tc_batch_destroy(b);
}

/* Many groups and a column that appears half-way: the groups (and with them the side array) grow
 * after the column exists, and every group equals a brute-force aggregate of its rows. */
static void test_dynamic_many_groups_match_brute_force(void **state)
{
    enum { ROWS = 6000, DEVICES = 700, BATCH = 500 };
    static char names[DEVICES][16];
    static struct {
        int dev;
        int64_t t;
        double co2, pm;
        int has_co2, has_pm;
    } rows[ROWS];
    tc_batch *b = tc_batch_new(BATCH, 0);
    tc_rollup r;
    uint64_t x = 2463534242ULL;
    int64_t total = 0;

    (void)state;
    assert_non_null(b);
    for (int d = 0; d < DEVICES; d++)
        snprintf(names[d], sizeof(names[d]), "s-%04d", d);
    tc_rollup_init(&r, MIN_US);
    for (int i = 0; i < ROWS; i++) {
        const double v[TC_METRIC__COUNT] = {0};
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        rows[i].dev = (int)(x % DEVICES);
        rows[i].t = T0 + (int64_t)((x >> 16) % (20 * MIN_US));
        rows[i].co2 = (double)((x >> 8) & 0x3ff) / 8.0;
        rows[i].pm = (double)((x >> 24) & 0xff) / 4.0 - 30.0;
        rows[i].has_co2 = (x >> 40) % 3 != 0;
        rows[i].has_pm = i >= ROWS / 2 && (x >> 44) % 2 == 0; /* pm appears half-way */
        if (b->n == BATCH) {
            assert_int_equal(tc_rollup_add(&r, b, NULL), 0);
            tc_batch_reset(b);
        }
        add_row(b, names[rows[i].dev], rows[i].t, 0, i, 0, v);
        if (rows[i].has_co2)
            set_dyn(b, b->n - 1, "co2", rows[i].co2);
        if (rows[i].has_pm)
            set_dyn(b, b->n - 1, "pm", rows[i].pm);
    }
    assert_int_equal(tc_rollup_add(&r, b, NULL), 0);
    assert_int_equal(r.ndyn, 2);
    assert_true(r.ngroups > 64); /* more than the first allocation: the side array grew */
    for (size_t g = 0; g < r.ngroups; g++) {
        const tc_rollup_group *gr = &r.groups[g];
        int64_t n = 0, cnt[2] = {0};
        double sum[2] = {0}, mn[2] = {0}, mx[2] = {0};
        for (int i = 0; i < ROWS; i++) {
            const char *dev = names[rows[i].dev];
            if (!slice_is(&gr->device, dev) || tc_rollup_bucket(rows[i].t, MIN_US) != gr->bucket_us)
                continue;
            n++;
            for (int k = 0; k < 2; k++) {
                int has = k == 0 ? rows[i].has_co2 : rows[i].has_pm;
                double val = k == 0 ? rows[i].co2 : rows[i].pm;
                if (!has)
                    continue;
                mn[k] = cnt[k] == 0 || val < mn[k] ? val : mn[k];
                mx[k] = cnt[k] == 0 || val > mx[k] ? val : mx[k];
                sum[k] += val; /* eighths and quarters: exact in any order */
                cnt[k]++;
            }
        }
        assert_int_equal(n, gr->n);
        total += n;
        assert_dyn(&r, g, "co2", cnt[0], sum[0], mn[0], mx[0]);
        assert_dyn(&r, g, "pm", cnt[1], sum[1], mn[1], mx[1]);
    }
    assert_int_equal(total, ROWS);
    tc_rollup_free(&r);
    tc_batch_destroy(b);
}

/* A rollup knows at most TC_BATCH_DYN_MAX metrics: names beyond are ignored, not overflowed. */
static void test_dynamic_metrics_capped(void **state)
{
    const double v[TC_METRIC__COUNT] = {0};
    tc_batch *a = tc_batch_new(2, 0), *b = tc_batch_new(2, 0);
    tc_rollup r;
    char name[16];

    (void)state;
    assert_non_null(a);
    assert_non_null(b);
    add_row(a, "x", T0, 0, 1, 0, v);
    for (int d = 0; d < TC_BATCH_DYN_MAX; d++) {
        snprintf(name, sizeof(name), "m%02d", d);
        set_dyn(a, 0, name, d);
    }
    add_row(b, "x", T0, 0, 2, 0, v);
    set_dyn(b, 0, "late", 1.0);
    set_dyn(b, 0, "m07", 1.0);
    tc_rollup_init(&r, MIN_US);
    assert_int_equal(tc_rollup_add(&r, a, NULL), 0);
    assert_int_equal(tc_rollup_add(&r, b, NULL), 0);
    assert_int_equal(r.ndyn, TC_BATCH_DYN_MAX);
    assert_int_equal(r.ngroups, 1);
    assert_dyn(&r, 0, "m07", 2, 8.0, 1.0, 7.0);
    for (size_t d = 0; d < r.ndyn; d++)
        assert_string_not_equal(r.dyn_name[d], "late");
    tc_rollup_free(&r);
    tc_batch_destroy(a);
    tc_batch_destroy(b);
}

/* The rollup tables and views name the metrics in this order (src/store/migrate.c). */
static void test_metric_order_matches_sql(void **state)
{
    static const char *const sql_order[TC_METRIC__COUNT] = {"temperature", "humidity", "pressure",
                                                            "battery",     "latitude", "longitude"};

    (void)state;
    for (int m = 0; m < TC_METRIC__COUNT; m++)
        assert_string_equal(tc_metric_names[m], sql_order[m]);
}

static void test_array_header(void **state)
{
    static const unsigned char want[] = {
        0,    0,    0,    1,                                  /* ndim */
        0,    0,    0,    1,                                  /* has nulls */
        0,    0,    0x02, 0xbd,                               /* float8 = 701 */
        0,    0,    0,    2,                                  /* length */
        0,    0,    0,    1,                                  /* lower bound */
        0,    0,    0,    8,    0x3f, 0xf0, 0, 0, 0, 0, 0, 0, /* 1.0 */
        0xff, 0xff, 0xff, 0xff,                               /* NULL */
    };
    tc_copybuf c;

    (void)state;
    tc_copybuf_init(&c);
    tc_copy_array_begin(&c, TC_OID_FLOAT8, 2, 1);
    tc_copy_float8(&c, 1.0);
    tc_copy_null(&c);
    assert_false(c.failed);
    assert_int_equal(c.len, sizeof(want));
    assert_memory_equal(c.data, want, sizeof(want));
    tc_copybuf_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bucket_floor),
        cmocka_unit_test(test_empty_batch),
        cmocka_unit_test(test_memory_follows_groups_not_rows),
        cmocka_unit_test(test_groups_by_device_and_minute),
        cmocka_unit_test(test_latest_per_device),
        cmocka_unit_test(test_many_groups_match_brute_force),
        cmocka_unit_test(test_accumulates_across_batches),
        cmocka_unit_test(test_bound_leaves_out_buckets_from_it),
        cmocka_unit_test(test_dynamic_metrics),
        cmocka_unit_test(test_no_dynamic_metrics_no_side_array),
        cmocka_unit_test(test_dynamic_column_appears_between_batches),
        cmocka_unit_test(test_dynamic_many_groups_match_brute_force),
        cmocka_unit_test(test_dynamic_metrics_capped),
        cmocka_unit_test(test_metric_order_matches_sql),
        cmocka_unit_test(test_array_header),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
