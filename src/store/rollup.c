/*
 * rollup.c -- per-batch hash aggregation by (device_id, bucket); see rollup.h.
 */
#include "store/rollup.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Rows whose slots are loaded ahead of their turn: a probe of a table of tens of thousands of
 * groups misses the cache, and a row's own work is too short to hide it. */
#define TC_ROLLUP_AHEAD 8
/* Arena blocks for device ids and latest-state strings: a few thousand devices per block. */
#define TC_ROLLUP_ARENA_BLOCK (64 * 1024)
/* Rows of a batch selected at a time (mask, skipped buckets) before they are aggregated: their
 * indices and buckets on the stack, 3 KB. */
#define TC_ROLLUP_PASS 256

void tc_rollup_init(tc_rollup *r, int64_t width_us)
{
    memset(r, 0, sizeof(*r));
    r->width_us = width_us;
    r->skip_from_us = INT64_MAX;
    r->skipped_min_us = INT64_MAX;
    tc_arena_init(&r->arena, TC_ROLLUP_ARENA_BLOCK, 0);
}

void tc_rollup_free(tc_rollup *r)
{
    free(r->groups);
    free(r->latest);
    free(r->slots);
    free(r->dyn);
    for (size_t d = 0; d < r->ndyn; d++)
        free(r->dyn_name[d]);
    tc_arena_free(&r->arena);
    tc_rollup_init(r, r->width_us);
}

void tc_rollup_clear(tc_rollup *r)
{
    r->ngroups = 0;
    r->skipped_min_us = INT64_MAX;
    if (r->slots)
        memset(r->slots, 0, r->nslots * sizeof(*r->slots));
    tc_arena_reset(&r->arena);
}

int64_t tc_rollup_bucket(int64_t t_us, int64_t width_us)
{
    int64_t rem = t_us % width_us;

    return rem < 0 ? t_us - rem - width_us : t_us - rem;
}

/* FNV-1a over the device id, then the bucket mixed in (splitmix64 finaliser). */
static uint64_t tc_rollup_hash(const tc_slice *dev, int64_t bucket)
{
    uint64_t h = 1469598103934665603ULL;

    for (uint32_t i = 0; i < dev->len; i++) {
        h ^= (unsigned char)dev->ptr[i];
        h *= 1099511628211ULL;
    }
    h ^= (uint64_t)bucket + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebULL;
    h ^= h >> 31;
    return h;
}

static size_t tc_rollup_probe(const tc_rollup *r, const tc_slice *dev, int64_t bucket, uint32_t h32,
                              size_t pos, int *found)
{
    size_t mask = r->nslots - 1;

    for (;; pos = (pos + 1) & mask) {
        struct tc_rollup_slot slot = r->slots[pos];
        const tc_rollup_group *g;
        if (slot.group == 0) {
            *found = 0;
            return pos;
        }
        g = &r->groups[slot.group - 1];
        if (slot.hash == h32 && g->bucket_us == bucket && g->device.len == dev->len &&
            (dev->len == 0 || memcmp(g->device.ptr, dev->ptr, dev->len) == 0)) {
            *found = 1;
            return pos;
        }
    }
}

/* Room for groups + rows groups, with a table at most half full; rehashes when it grows. */
static tc_err tc_rollup_reserve(tc_rollup *r, size_t rows)
{
    size_t need = r->ngroups + rows, want = 16;

    if (need > UINT32_MAX / 4)
        return TC_ERR_NOMEM;
    while (want < need * 2)
        want *= 2;
    if (need > r->cap) {
        size_t cap = r->cap ? r->cap : 64;
        tc_rollup_group *g;
        while (cap < need)
            cap *= 2;
        g = realloc(r->groups, cap * sizeof(*g));
        if (!g)
            return TC_ERR_NOMEM;
        r->groups = g;
        if (r->width_us == 0) {
            tc_rollup_latest *l = realloc(r->latest, cap * sizeof(*l));
            if (!l)
                return TC_ERR_NOMEM;
            r->latest = l;
        }
        /* Group-major with a stride of ndyn: growing the groups keeps every group's place. */
        if (r->ndyn) {
            tc_rollup_dyn *dyn = realloc(r->dyn, cap * r->ndyn * sizeof(*dyn));
            if (!dyn)
                return TC_ERR_NOMEM;
            r->dyn = dyn;
        }
        r->cap = cap;
    }
    if (want > r->nslots) {
        struct tc_rollup_slot *slots = calloc(want, sizeof(*slots));
        if (!slots)
            return TC_ERR_NOMEM;
        free(r->slots);
        r->slots = slots;
        r->nslots = want;
        for (size_t i = 0; i < r->ngroups; i++) {
            const tc_rollup_group *g = &r->groups[i];
            uint64_t h = tc_rollup_hash(&g->device, g->bucket_us);
            int found;
            size_t pos = tc_rollup_probe(r, &g->device, g->bucket_us, (uint32_t)(h >> 32),
                                         (size_t)h & (want - 1), &found);
            r->slots[pos] = (struct tc_rollup_slot){(uint32_t)(i + 1), (uint32_t)(h >> 32)};
        }
    }
    return TC_OK;
}

/* Is row i of b newer than what group g holds as its latest? Time first, then Kafka position. */
static int tc_rollup_newer(const tc_rollup_latest *g, const tc_batch *b, size_t i)
{
    if (b->time_us[i] != g->time_us)
        return b->time_us[i] > g->time_us;
    if (b->partition[i] != g->partition)
        return b->partition[i] > g->partition;
    return b->offset[i] > g->offset;
}

static tc_err tc_rollup_copy(tc_rollup *r, tc_slice *dst, const tc_slice *src)
{
    char *p;

    if (!src->ptr) {
        *dst = (tc_slice){NULL, 0};
        return TC_OK;
    }
    p = tc_arena_strndup(&r->arena, src->ptr, src->len);
    if (!p)
        return TC_ERR_NOMEM;
    *dst = (tc_slice){p, src->len};
    return TC_OK;
}

/* Make row i of b the group's latest reading. */
static tc_err tc_rollup_take_latest(tc_rollup *r, tc_rollup_latest *g, const tc_batch *b, size_t i)
{
    g->time_us = b->time_us[i];
    g->partition = b->partition[i];
    g->offset = b->offset[i];
    for (int m = 0; m < TC_METRIC__COUNT; m++) {
        g->metric[m] = b->metric[m][i];
        g->present[m] = b->present[m][i];
    }
    if (tc_rollup_copy(r, &g->tags, &b->tags[i]) != TC_OK ||
        tc_rollup_copy(r, &g->extra, &b->extra[i]) != TC_OK)
        return TC_ERR_NOMEM;
    return TC_OK;
}

static tc_err tc_rollup_group_start(tc_rollup *r, tc_rollup_group *g, const tc_batch *b, size_t i,
                                    int64_t bucket)
{
    memset(g, 0, sizeof(*g));
    if (r->ndyn)
        memset(&r->dyn[(size_t)(g - r->groups) * r->ndyn], 0, r->ndyn * sizeof(*r->dyn));
    g->bucket_us = bucket;
    if (tc_rollup_copy(r, &g->device, &b->device_id[i]) != TC_OK)
        return TC_ERR_NOMEM;
    return r->latest ? tc_rollup_take_latest(r, &r->latest[g - r->groups], b, i) : TC_OK;
}

static tc_err tc_rollup_group_add(tc_rollup *r, tc_rollup_group *g, const tc_batch *b, size_t i)
{
    g->n++;
    /* The latest state keeps a reading, not aggregates: nothing reads its groups' metrics. */
    if (r->latest) {
        tc_rollup_latest *l = &r->latest[g - r->groups];
        return g->n > 1 && tc_rollup_newer(l, b, i) ? tc_rollup_take_latest(r, l, b, i) : TC_OK;
    }
    for (int m = 0; m < TC_METRIC__COUNT; m++) {
        double v;
        if (!b->present[m][i])
            continue;
        v = b->metric[m][i];
        if (g->cnt[m] == 0) {
            g->min[m] = v;
            g->max[m] = v;
        } else {
            g->min[m] = v < g->min[m] ? v : g->min[m];
            g->max[m] = v > g->max[m] ? v : g->max[m];
        }
        g->sum[m] += v;
        g->cnt[m]++;
    }
    return TC_OK;
}

/* Index of the rollup's dynamic metric called name, or -1. */
static int tc_rollup_dyn_find(const tc_rollup *r, const char *name)
{
    for (size_t d = 0; d < r->ndyn; d++) {
        if (strcmp(r->dyn_name[d], name) == 0)
            return (int)d;
    }
    return -1;
}

/*
 * Map the batch's dynamic columns to the rollup's metrics (map[k]: the rollup's index of column
 * k, -1 when it has no room), adopting the names it does not know yet. New metrics widen the
 * side array, every group getting a zero aggregate for them. Called once per tc_rollup_add, after
 * tc_rollup_reserve (the array must cover r->cap groups). The rollup is unchanged on failure.
 */
static tc_err tc_rollup_dyn_map(tc_rollup *r, const tc_batch *b, int *map)
{
    size_t nd = r->ndyn, old = r->ndyn;
    tc_rollup_dyn *dyn;

    for (size_t k = 0; k < b->ndyn; k++) {
        /* Columns only get appended, so the batch's order is usually the rollup's. */
        if (k < old && strcmp(r->dyn_name[k], b->dyn_name[k]) == 0) {
            map[k] = (int)k;
            continue;
        }
        /* The batch's names are distinct: only the names known before can match. */
        map[k] = tc_rollup_dyn_find(r, b->dyn_name[k]);
        if (map[k] < 0 && nd < TC_BATCH_DYN_MAX) {
            r->dyn_name[nd] = strdup(b->dyn_name[k]);
            if (!r->dyn_name[nd])
                goto nomem;
            map[k] = (int)nd++;
        }
    }
    if (nd == old)
        return TC_OK;
    if (r->cap > SIZE_MAX / sizeof(*dyn) / nd)
        goto nomem;
    dyn = calloc(r->cap * nd, sizeof(*dyn));
    if (!dyn)
        goto nomem;
    for (size_t g = 0; g < r->ngroups && old; g++)
        memcpy(&dyn[g * nd], &r->dyn[g * old], old * sizeof(*dyn));
    free(r->dyn);
    r->dyn = dyn;
    r->ndyn = nd;
    return TC_OK;
nomem:
    for (size_t d = old; d < nd; d++)
        free(r->dyn_name[d]);
    return TC_ERR_NOMEM;
}

/* Add the dynamic columns of row i of b to group gi (map from tc_rollup_dyn_map). */
static void tc_rollup_dyn_add(tc_rollup *r, size_t gi, const tc_batch *b, size_t i, const int *map)
{
    tc_rollup_dyn *row = &r->dyn[gi * r->ndyn];

    for (size_t k = 0; k < b->ndyn; k++) {
        tc_rollup_dyn *a;
        double v;
        if (map[k] < 0 || !b->dyn_present[k][i])
            continue;
        a = &row[map[k]];
        v = b->dyn[k][i];
        if (a->cnt == 0) {
            a->min = v;
            a->max = v;
        } else {
            a->min = v < a->min ? v : a->min;
            a->max = v > a->max ? v : a->max;
        }
        a->sum += v;
        a->cnt++;
    }
}

/* The hash of row i's group (in bucket); its slot starts loading. */
static uint64_t tc_rollup_row_hash(const tc_rollup *r, const tc_batch *b, size_t i, int64_t bucket)
{
    uint64_t h = tc_rollup_hash(&b->device_id[i], bucket);

    __builtin_prefetch(&r->slots[(size_t)h & (r->nslots - 1)]);
    return h;
}

/* Aggregate rows row[0..n) of b, in buckets bucket[0..n) (dyn: the dynamic columns too, mapped by
 * map). */
static tc_err tc_rollup_add_rows(tc_rollup *r, const tc_batch *b, const uint32_t *row,
                                 const int64_t *bucket, size_t n, const int *map)
{
    uint64_t ahead[TC_ROLLUP_AHEAD];

    for (size_t j = 0; j < n && j < TC_ROLLUP_AHEAD; j++)
        ahead[j] = tc_rollup_row_hash(r, b, row[j], bucket[j]);
    for (size_t j = 0; j < n; j++) {
        size_t i = row[j];
        const tc_slice *dev = &b->device_id[i];
        uint64_t h = ahead[j % TC_ROLLUP_AHEAD];
        size_t pos;
        int found;
        tc_rollup_group *g;

        /* The slot of a row TC_ROLLUP_AHEAD rows on starts loading now; that of a row half as far
         * on has loaded, and its group starts loading. */
        if (j + TC_ROLLUP_AHEAD < n)
            ahead[j % TC_ROLLUP_AHEAD] =
                tc_rollup_row_hash(r, b, row[j + TC_ROLLUP_AHEAD], bucket[j + TC_ROLLUP_AHEAD]);
        if (j + TC_ROLLUP_AHEAD / 2 < n) {
            uint32_t next =
                r->slots[ahead[(j + TC_ROLLUP_AHEAD / 2) % TC_ROLLUP_AHEAD] & (r->nslots - 1)]
                    .group;
            if (next)
                __builtin_prefetch(&r->groups[next - 1]);
        }
        pos = tc_rollup_probe(r, dev, bucket[j], (uint32_t)(h >> 32), (size_t)h & (r->nslots - 1),
                              &found);
        if (!found && (r->ngroups == r->cap || (r->ngroups + 1) * 2 > r->nslots)) {
            if (tc_rollup_reserve(r, 1) != TC_OK)
                return TC_ERR_NOMEM;
            pos = tc_rollup_probe(r, dev, bucket[j], (uint32_t)(h >> 32),
                                  (size_t)h & (r->nslots - 1), &found);
        }
        if (found) {
            g = &r->groups[r->slots[pos].group - 1];
        } else {
            g = &r->groups[r->ngroups];
            if (tc_rollup_group_start(r, g, b, i, bucket[j]) != TC_OK)
                return TC_ERR_NOMEM;
            r->ngroups++;
            r->slots[pos] = (struct tc_rollup_slot){(uint32_t)r->ngroups, (uint32_t)(h >> 32)};
        }
        if (tc_rollup_group_add(r, g, b, i) != TC_OK)
            return TC_ERR_NOMEM;
        if (map)
            tc_rollup_dyn_add(r, (size_t)(g - r->groups), b, i, map);
    }
    return TC_OK;
}

tc_err tc_rollup_add(tc_rollup *r, const tc_batch *b, const uint8_t *mask)
{
    int map[TC_BATCH_DYN_MAX];
    /* Only rollups with buckets aggregate dynamic metrics: the latest state keeps `extra`. */
    int dyn = r->width_us > 0 && b->ndyn > 0;

    if (b->n == 0)
        return TC_OK;
    /* Room for one more group now, and more as groups come: reserving the batch's rows up front
     * would size the arrays for groups that mostly never appear (a batch of 10,000 rows adds a few
     * hundred groups to the 1-hour rollup), and they stay that large. */
    if (tc_rollup_reserve(r, 1) != TC_OK)
        return TC_ERR_NOMEM;
    if (dyn && tc_rollup_dyn_map(r, b, map) != TC_OK)
        return TC_ERR_NOMEM;
    /* The rows to aggregate are picked first, so that the skipped ones cost a bucket and a
     * comparison, not a hash and a probe. */
    for (size_t i0 = 0; i0 < b->n; i0 += TC_ROLLUP_PASS) {
        uint32_t row[TC_ROLLUP_PASS];
        int64_t bucket[TC_ROLLUP_PASS];
        size_t n = 0, i1 = b->n - i0 < TC_ROLLUP_PASS ? b->n : i0 + TC_ROLLUP_PASS;

        for (size_t i = i0; i < i1; i++) {
            int64_t bk;
            if (mask && !mask[i])
                continue;
            bk = r->width_us > 0 ? tc_rollup_bucket(b->time_us[i], r->width_us) : 0;
            if (bk >= r->skip_from_us) {
                r->skipped_min_us = bk < r->skipped_min_us ? bk : r->skipped_min_us;
                continue;
            }
            row[n] = (uint32_t)i;
            bucket[n++] = bk;
        }
        if (n && tc_rollup_add_rows(r, b, row, bucket, n, dyn ? map : NULL) != TC_OK)
            return TC_ERR_NOMEM;
    }
    return TC_OK;
}

tc_err tc_rollup_build(tc_rollup *r, const tc_batch *b)
{
    tc_rollup_clear(r);
    return tc_rollup_add(r, b, NULL);
}
