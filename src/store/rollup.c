/*
 * rollup.c -- per-batch hash aggregation by (device_id, bucket); see rollup.h.
 */
#include "store/rollup.h"

#include <stdlib.h>
#include <string.h>

void tc_rollup_init(tc_rollup *r, int64_t width_us)
{
    memset(r, 0, sizeof(*r));
    r->width_us = width_us;
}

void tc_rollup_free(tc_rollup *r)
{
    free(r->groups);
    free(r->slots);
    free(r->hashes);
    tc_rollup_init(r, r->width_us);
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

/* Room for groups and slots for a batch of rows rows. */
static tc_err tc_rollup_reserve(tc_rollup *r, size_t rows)
{
    size_t want = 16;

    if (rows > UINT32_MAX / 4)
        return TC_ERR_NOMEM;
    while (want < rows * 2)
        want *= 2;
    if (want > r->nslots) {
        uint32_t *slots = realloc(r->slots, want * sizeof(*slots));
        uint32_t *hashes;
        if (!slots)
            return TC_ERR_NOMEM;
        r->slots = slots;
        hashes = realloc(r->hashes, want * sizeof(*hashes));
        if (!hashes)
            return TC_ERR_NOMEM;
        r->hashes = hashes;
        r->nslots = want;
    }
    if (rows > r->cap) {
        tc_rollup_group *g = realloc(r->groups, rows * sizeof(*g));
        if (!g)
            return TC_ERR_NOMEM;
        r->groups = g;
        r->cap = rows;
    }
    return TC_OK;
}

/* Is row a newer than row b of the same device? Time first, then Kafka position. */
static int tc_rollup_newer(const tc_batch *b, size_t a, size_t c)
{
    if (b->time_us[a] != b->time_us[c])
        return b->time_us[a] > b->time_us[c];
    if (b->partition[a] != b->partition[c])
        return b->partition[a] > b->partition[c];
    return b->offset[a] > b->offset[c];
}

static void tc_rollup_group_start(tc_rollup_group *g, size_t row, int64_t bucket)
{
    g->row = row;
    g->latest_row = row;
    g->bucket_us = bucket;
    g->n = 0;
    for (int m = 0; m < TC_METRIC__COUNT; m++) {
        g->cnt[m] = 0;
        g->sum[m] = 0;
        g->min[m] = 0;
        g->max[m] = 0;
    }
}

static void tc_rollup_group_add(tc_rollup_group *g, const tc_batch *b, size_t row)
{
    g->n++;
    for (int m = 0; m < TC_METRIC__COUNT; m++) {
        double v;
        if (!b->present[m][row])
            continue;
        v = b->metric[m][row];
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
    if (tc_rollup_newer(b, row, g->latest_row))
        g->latest_row = row;
}

tc_err tc_rollup_build(tc_rollup *r, const tc_batch *b)
{
    size_t mask;

    r->ngroups = 0;
    if (b->n == 0)
        return TC_OK;
    if (tc_rollup_reserve(r, b->n) != TC_OK)
        return TC_ERR_NOMEM;
    memset(r->slots, 0, r->nslots * sizeof(*r->slots));
    mask = r->nslots - 1;
    for (size_t i = 0; i < b->n; i++) {
        const tc_slice *dev = &b->device_id[i];
        int64_t bucket = r->width_us > 0 ? tc_rollup_bucket(b->time_us[i], r->width_us) : 0;
        uint64_t h = tc_rollup_hash(dev, bucket);
        uint32_t h32 = (uint32_t)(h >> 32);
        size_t pos = (size_t)h & mask;
        tc_rollup_group *g = NULL;

        for (;;) {
            uint32_t slot = r->slots[pos];
            if (slot == 0)
                break;
            g = &r->groups[slot - 1];
            if (r->hashes[pos] == h32 && g->bucket_us == bucket &&
                b->device_id[g->row].len == dev->len &&
                (dev->len == 0 || memcmp(b->device_id[g->row].ptr, dev->ptr, dev->len) == 0))
                break;
            g = NULL;
            pos = (pos + 1) & mask;
        }
        if (!g) {
            g = &r->groups[r->ngroups++];
            tc_rollup_group_start(g, i, bucket);
            r->slots[pos] = (uint32_t)r->ngroups;
            r->hashes[pos] = h32;
        }
        tc_rollup_group_add(g, b, i);
    }
    return TC_OK;
}
