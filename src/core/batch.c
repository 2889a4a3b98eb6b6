/*
 * batch.c -- allocation and row bookkeeping of the columnar batch; see batch.h.
 */
#include "core/batch.h"

#include <stdlib.h>
#include <string.h>

const char *const tc_metric_names[TC_METRIC__COUNT] = {
    [TC_M_TEMPERATURE] = "temperature", [TC_M_HUMIDITY] = "humidity",
    [TC_M_PRESSURE] = "pressure",       [TC_M_BATTERY] = "battery",
    [TC_M_LATITUDE] = "latitude",       [TC_M_LONGITUDE] = "longitude",
};

int tc_metric_lookup(const char *name, size_t len)
{
    for (int m = 0; m < TC_METRIC__COUNT; m++) {
        if (strlen(tc_metric_names[m]) == len && memcmp(tc_metric_names[m], name, len) == 0)
            return m;
    }
    return -1;
}

tc_batch *tc_batch_new(size_t cap, size_t arena_cap)
{
    tc_batch *b;
    int ok = 1;

    if (cap == 0 || cap > TC_BATCH_ROWS_MAX)
        return NULL;
    b = calloc(1, sizeof(*b));
    if (!b)
        return NULL;
    b->cap = cap;
    b->time_us = calloc(cap, sizeof(*b->time_us));
    b->device_id = calloc(cap, sizeof(*b->device_id));
    b->tags = calloc(cap, sizeof(*b->tags));
    b->extra = calloc(cap, sizeof(*b->extra));
    b->partition = calloc(cap, sizeof(*b->partition));
    b->offset = calloc(cap, sizeof(*b->offset));
    ok = b->time_us && b->device_id && b->tags && b->extra && b->partition && b->offset;
    for (int m = 0; m < TC_METRIC__COUNT; m++) {
        b->metric[m] = calloc(cap, sizeof(double));
        b->present[m] = calloc(cap, 1);
        ok = ok && b->metric[m] && b->present[m];
    }
    tc_arena_init(&b->arena, 256 * 1024, arena_cap);
    if (!ok) {
        tc_batch_destroy(b);
        return NULL;
    }
    return b;
}

void tc_batch_destroy(tc_batch *b)
{
    if (!b)
        return;
    free(b->time_us);
    free(b->device_id);
    free(b->tags);
    free(b->extra);
    free(b->partition);
    free(b->offset);
    for (int m = 0; m < TC_METRIC__COUNT; m++) {
        free(b->metric[m]);
        free(b->present[m]);
    }
    tc_arena_free(&b->arena);
    free(b);
}

void tc_batch_reset(tc_batch *b)
{
    b->n = 0;
    tc_arena_reset(&b->arena);
}

tc_err tc_batch_row_begin(tc_batch *b)
{
    size_t i = b->n;

    if (i >= b->cap)
        return TC_ERR_FULL;
    b->time_us[i] = 0;
    b->device_id[i] = (tc_slice){NULL, 0};
    b->tags[i] = (tc_slice){NULL, 0};
    b->extra[i] = (tc_slice){NULL, 0};
    b->partition[i] = -1;
    b->offset[i] = -1;
    for (int m = 0; m < TC_METRIC__COUNT; m++) {
        b->present[m][i] = 0;
        b->metric[m][i] = 0.0;
    }
    return TC_OK;
}

void tc_batch_row_commit(tc_batch *b)
{
    if (b->n < b->cap)
        b->n++;
}
