/*
 * rollup.h -- aggregation of readings into time buckets, in C, across batches.
 *
 * Plain-PostgreSQL mode keeps 1-minute and 1-hour rollups and both modes keep the latest reading
 * per device. Instead of making PostgreSQL group the rows, the store groups them here, per
 * (device_id, bucket), into a count and, per metric, the count of present values, their sum,
 * minimum and maximum; one upsert per table then adds the groups to what the table holds (n + n,
 * sum + sum, least, greatest).
 *
 * A rollup accumulates: tc_rollup_add merges rows of any number of batches into the groups it
 * holds, until tc_rollup_clear. The groups own copies of what they keep (the device id; for the
 * latest state, the strings of the latest reading) in the rollup's arena, so the batches can be
 * reset meanwhile. Accumulating over many batches is what makes rollups cheap: a device that
 * reports every second touches its 1-hour bucket 3,600 times an hour, and the table once per flush.
 *
 * Grouping is a hash aggregation with open addressing, grown as groups arrive: O(rows).
 *
 * A rollup with width_us == 0 groups per device only and is used for the `latest` state: each
 * group keeps the reading with the greatest (time, partition, offset) of the device, and its count
 * n; the metrics' aggregates of its groups are not kept (zero).
 *
 * Dynamic metrics (schema evolution: the batch's dynamic columns, core/batch.h) are aggregated
 * too, by rollups with buckets (the latest state keeps the whole reading in `extra` instead). They
 * live in a side array rather than in tc_rollup_group, so that the common case -- no dynamic
 * column -- keeps its groups as small and its loop as tight as before: the array is allocated only
 * once a batch has dynamic columns, one tc_rollup_dyn per group and dynamic metric. The rollup
 * remembers the metrics' names (copied, in the order first seen) and matches a batch's columns to
 * them by name, so batches whose dynamic columns come in another order still add up right.
 */
#ifndef TC_STORE_ROLLUP_H
#define TC_STORE_ROLLUP_H

#include <stddef.h>
#include <stdint.h>

#include "core/arena.h"
#include "core/batch.h"
#include "core/error.h"

#define TC_ROLLUP_1M_US (60LL * 1000000LL)
#define TC_ROLLUP_1H_US (3600LL * 1000000LL)

typedef struct tc_rollup_group {
    tc_slice device;   /* owned by the rollup's arena */
    int64_t bucket_us; /* start of the bucket (floor of time to width_us); 0 when width is 0 */
    int64_t n;         /* readings */
    int64_t cnt[TC_METRIC__COUNT]; /* present values per metric */
    double sum[TC_METRIC__COUNT];
    double min[TC_METRIC__COUNT]; /* meaningful only when cnt > 0 */
    double max[TC_METRIC__COUNT];
} tc_rollup_group;

/* The reading with the greatest (time, partition, offset) of a group: kept by the rollup without
 * buckets (the latest state) only, in a side array, so that the groups of the rollups with
 * buckets -- most of the aggregates' memory -- stay a third smaller. */
typedef struct tc_rollup_latest {
    int64_t time_us;
    int32_t partition;
    int64_t offset;
    double metric[TC_METRIC__COUNT];
    uint8_t present[TC_METRIC__COUNT];
    tc_slice tags, extra; /* owned by the arena; ptr NULL = NULL */
} tc_rollup_latest;

/* Aggregate of one dynamic metric in one group; min and max are meaningful only when cnt > 0. */
typedef struct tc_rollup_dyn {
    int64_t cnt;
    double sum, min, max;
} tc_rollup_dyn;

typedef struct tc_rollup {
    int64_t width_us; /* bucket width; 0 = one group per device */
    tc_rollup_group *groups;
    tc_rollup_latest *latest; /* cap entries when width_us is 0, else NULL */
    size_t ngroups, cap;
    /* Open addressing: group index + 1 (0 = empty) next to 32 bits of the group's hash, so that a
     * probe reads one cache line, not two. */
    struct tc_rollup_slot {
        uint32_t group, hash;
    } * slots;
    size_t nslots; /* a power of two, at least twice the groups */
    tc_arena arena;
    /* Dynamic metrics seen so far (width_us > 0 only): names owned by the rollup, kept across
     * tc_rollup_clear because columns only ever appear. At most TC_BATCH_DYN_MAX; a batch
     * bringing more new names than fit has the rest ignored. */
    size_t ndyn;
    char *dyn_name[TC_BATCH_DYN_MAX];
    /* cap x ndyn aggregates, group-major (see tc_rollup_dyn_at); NULL while ndyn is 0. */
    tc_rollup_dyn *dyn;
    /* Rows whose bucket is at or past skip_from_us are not aggregated (INT64_MAX: none skipped):
     * the buckets the rollups' sink leaves to the closing (store/sink_rollup.c). Set by the
     * caller; kept by tc_rollup_clear. skipped_min_us is the least bucket of a row skipped since
     * the last tc_rollup_clear (INT64_MAX: none), for the flush to find whether a closing passed
     * over one of them meanwhile. */
    int64_t skip_from_us;
    int64_t skipped_min_us;
} tc_rollup;

/* An empty rollup of buckets width_us wide (0: per device). Allocates nothing yet. */
void tc_rollup_init(tc_rollup *r, int64_t width_us);
void tc_rollup_free(tc_rollup *r);

/* Start of the bucket of width width_us (> 0) holding t_us (floor, also for times before 1970). */
int64_t tc_rollup_bucket(int64_t t_us, int64_t width_us);

/* Forget the groups (the memory is kept for reuse). */
void tc_rollup_clear(tc_rollup *r);

/* Merge rows [0, b->n) of b for which mask[i] is nonzero (mask NULL: all) and whose bucket is
 * below r->skip_from_us (the others only lower r->skipped_min_us) into the groups. New
 * groups are appended in the order of their first row. TC_ERR_NOMEM when out of memory: then the
 * groups hold part of the batch and must be cleared (and the rows read again). */
tc_err tc_rollup_add(tc_rollup *r, const tc_batch *b, const uint8_t *mask);

/* tc_rollup_clear, then tc_rollup_add of every row of b. */
tc_err tc_rollup_build(tc_rollup *r, const tc_batch *b);

/* The latest reading of group g (< r->ngroups) of a rollup without buckets. */
static inline const tc_rollup_latest *tc_rollup_latest_at(const tc_rollup *r, size_t g)
{
    return &r->latest[g];
}

/* Aggregate of dynamic metric d (< r->ndyn, named r->dyn_name[d]) in group g (< r->ngroups). A
 * group made before the metric appeared has cnt 0 for it. */
static inline const tc_rollup_dyn *tc_rollup_dyn_at(const tc_rollup *r, size_t g, size_t d)
{
    return &r->dyn[g * r->ndyn + d];
}

#endif
