/*
 * rollup.h -- per-batch aggregation of readings into time buckets, in C.
 *
 * Plain-PostgreSQL mode keeps 1-minute and 1-hour rollups up to date in the transaction that
 * writes each batch, so they are exactly once like the rows. Instead of making PostgreSQL group
 * the rows, the store groups the columnar batch here, per (device_id, bucket), into a count and,
 * per metric, the count of present values, their sum, minimum and maximum; one upsert per rollup
 * table then adds the groups to what the table holds (n + n, sum + sum, least, greatest).
 *
 * Grouping is a hash aggregation with open addressing over the batch's own device-id slices (no
 * copy of the strings): O(rows), and the memory is allocated once and reused across batches.
 *
 * A rollup with width_us == 0 groups per device only and is used for the `latest` state: each
 * group's latest_row is the batch row with the greatest (time, partition, offset) of the device.
 */
#ifndef TC_STORE_ROLLUP_H
#define TC_STORE_ROLLUP_H

#include <stddef.h>
#include <stdint.h>

#include "core/batch.h"
#include "core/error.h"

#define TC_ROLLUP_1M_US (60LL * 1000000LL)
#define TC_ROLLUP_1H_US (3600LL * 1000000LL)

typedef struct tc_rollup_group {
    size_t row;        /* first batch row of the group: its device_id is the group's */
    size_t latest_row; /* batch row with the greatest (time, partition, offset) */
    int64_t bucket_us; /* start of the bucket (floor of time to width_us); 0 when width is 0 */
    int64_t n;         /* readings */
    int64_t cnt[TC_METRIC__COUNT]; /* present values per metric */
    double sum[TC_METRIC__COUNT];
    double min[TC_METRIC__COUNT]; /* meaningful only when cnt > 0 */
    double max[TC_METRIC__COUNT];
} tc_rollup_group;

typedef struct tc_rollup {
    int64_t width_us; /* bucket width; 0 = one group per device */
    tc_rollup_group *groups;
    size_t ngroups, cap;
    uint32_t *slots; /* open addressing: group index + 1, 0 = empty */
    uint32_t *hashes;
    size_t nslots; /* a power of two, at least twice the rows of the batch */
} tc_rollup;

/* An empty rollup of buckets width_us wide (0: per device). Allocates nothing yet. */
void tc_rollup_init(tc_rollup *r, int64_t width_us);
void tc_rollup_free(tc_rollup *r);

/* Start of the bucket of width width_us (> 0) holding t_us (floor, also for times before 1970). */
int64_t tc_rollup_bucket(int64_t t_us, int64_t width_us);

/* Forget the previous groups and aggregate rows [0, b->n) of b. TC_ERR_NOMEM when out of memory
 * (then the rollup holds no groups). Groups appear in the order of their first row. */
tc_err tc_rollup_build(tc_rollup *r, const tc_batch *b);

#endif
