/*
 * rollup.c -- per-batch hash aggregation by (device_id, bucket); see rollup.h.
 */
#include "store/rollup.h"

#include <stdlib.h>
#include <string.h>

/* Arena blocks for device ids and latest-state strings: a few thousand devices per block. */
#define TC_ROLLUP_ARENA_BLOCK (64 * 1024)

void tc_rollup_init(tc_rollup *r, int64_t width_us)
{
    memset(r, 0, sizeof(*r));
    r->width_us = width_us;
    tc_arena_init(&r->arena, TC_ROLLUP_ARENA_BLOCK, 0);
}

void tc_rollup_free(tc_rollup *r)
{
    free(r->groups);
    free(r->slots);
    free(r->hashes);
    tc_arena_free(&r->arena);
    tc_rollup_init(r, r->width_us);
}

void tc_rollup_clear(tc_rollup *r)
{
    r->ngroups = 0;
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
        uint32_t slot = r->slots[pos];
        const tc_rollup_group *g;
        if (slot == 0) {
            *found = 0;
            return pos;
        }
        g = &r->groups[slot - 1];
        if (r->hashes[pos] == h32 && g->bucket_us == bucket && g->device.len == dev->len &&
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
        r->cap = cap;
    }
    if (want > r->nslots) {
        uint32_t *slots = calloc(want, sizeof(*slots));
        uint32_t *hashes = malloc(want * sizeof(*hashes));
        if (!slots || !hashes) {
            free(slots);
            free(hashes);
            return TC_ERR_NOMEM;
        }
        free(r->slots);
        free(r->hashes);
        r->slots = slots;
        r->hashes = hashes;
        r->nslots = want;
        for (size_t i = 0; i < r->ngroups; i++) {
            const tc_rollup_group *g = &r->groups[i];
            uint64_t h = tc_rollup_hash(&g->device, g->bucket_us);
            int found;
            size_t pos = tc_rollup_probe(r, &g->device, g->bucket_us, (uint32_t)(h >> 32),
                                         (size_t)h & (want - 1), &found);
            r->slots[pos] = (uint32_t)(i + 1);
            r->hashes[pos] = (uint32_t)(h >> 32);
        }
    }
    return TC_OK;
}

/* Is row i of b newer than what group g holds as its latest? Time first, then Kafka position. */
static int tc_rollup_newer(const tc_rollup_group *g, const tc_batch *b, size_t i)
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
static tc_err tc_rollup_take_latest(tc_rollup *r, tc_rollup_group *g, const tc_batch *b, size_t i)
{
    g->time_us = b->time_us[i];
    g->partition = b->partition[i];
    g->offset = b->offset[i];
    for (int m = 0; m < TC_METRIC__COUNT; m++) {
        g->metric[m] = b->metric[m][i];
        g->present[m] = b->present[m][i];
    }
    if (r->width_us > 0) /* only the latest state stores the strings */
        return TC_OK;
    if (tc_rollup_copy(r, &g->tags, &b->tags[i]) != TC_OK ||
        tc_rollup_copy(r, &g->extra, &b->extra[i]) != TC_OK)
        return TC_ERR_NOMEM;
    return TC_OK;
}

static tc_err tc_rollup_group_start(tc_rollup *r, tc_rollup_group *g, const tc_batch *b, size_t i,
                                    int64_t bucket)
{
    memset(g, 0, sizeof(*g));
    g->bucket_us = bucket;
    if (tc_rollup_copy(r, &g->device, &b->device_id[i]) != TC_OK)
        return TC_ERR_NOMEM;
    return tc_rollup_take_latest(r, g, b, i);
}

static tc_err tc_rollup_group_add(tc_rollup *r, tc_rollup_group *g, const tc_batch *b, size_t i)
{
    g->n++;
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
    return g->n > 1 && tc_rollup_newer(g, b, i) ? tc_rollup_take_latest(r, g, b, i) : TC_OK;
}

tc_err tc_rollup_add(tc_rollup *r, const tc_batch *b, const uint8_t *mask)
{
    if (b->n == 0)
        return TC_OK;
    if (tc_rollup_reserve(r, b->n) != TC_OK)
        return TC_ERR_NOMEM;
    for (size_t i = 0; i < b->n; i++) {
        const tc_slice *dev = &b->device_id[i];
        int64_t bucket = r->width_us > 0 ? tc_rollup_bucket(b->time_us[i], r->width_us) : 0;
        uint64_t h;
        size_t pos;
        int found;
        tc_rollup_group *g;

        if (mask && !mask[i])
            continue;
        h = tc_rollup_hash(dev, bucket);
        pos = tc_rollup_probe(r, dev, bucket, (uint32_t)(h >> 32), (size_t)h & (r->nslots - 1),
                              &found);
        if (found) {
            g = &r->groups[r->slots[pos] - 1];
        } else {
            g = &r->groups[r->ngroups];
            if (tc_rollup_group_start(r, g, b, i, bucket) != TC_OK)
                return TC_ERR_NOMEM;
            r->ngroups++;
            r->slots[pos] = (uint32_t)r->ngroups;
            r->hashes[pos] = (uint32_t)(h >> 32);
        }
        if (tc_rollup_group_add(r, g, b, i) != TC_OK)
            return TC_ERR_NOMEM;
    }
    return TC_OK;
}

tc_err tc_rollup_build(tc_rollup *r, const tc_batch *b)
{
    tc_rollup_clear(r);
    return tc_rollup_add(r, b, NULL);
}
