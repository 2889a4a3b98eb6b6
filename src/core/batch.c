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
    b->schema_version = calloc(cap, sizeof(*b->schema_version));
    ok = b->time_us && b->device_id && b->tags && b->extra && b->partition && b->offset &&
         b->schema_version;
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
    free(b->schema_version);
    for (int m = 0; m < TC_METRIC__COUNT; m++) {
        free(b->metric[m]);
        free(b->present[m]);
    }
    for (size_t d = 0; d < b->ndyn; d++) {
        free(b->dyn_name[d]);
        free(b->dyn[d]);
        free(b->dyn_present[d]);
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
    b->schema_version[i] = 0;
    for (int m = 0; m < TC_METRIC__COUNT; m++) {
        b->present[m][i] = 0;
        b->metric[m][i] = 0.0;
    }
    for (size_t d = 0; d < b->ndyn; d++) {
        b->dyn_present[d][i] = 0;
        b->dyn[d][i] = 0.0;
    }
    return TC_OK;
}

void tc_batch_row_commit(tc_batch *b)
{
    if (b->n < b->cap)
        b->n++;
}

int tc_batch_is_fixed_column(const char *name, size_t len)
{
    static const char *const fixed[] = {"time",        "device_id",       "tags",
                                        "extra",       "kafka_partition", "kafka_offset",
                                        "ingested_at", "schema_version"};

    if (tc_metric_lookup(name, len) >= 0)
        return 1;
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
        if (strlen(fixed[i]) == len && memcmp(fixed[i], name, len) == 0)
            return 1;
    }
    return 0;
}

static int tc_batch_valid_column_name(const char *name, size_t len)
{
    if (len == 0 || len > TC_BATCH_DYN_NAME_MAX || (name[0] >= '0' && name[0] <= '9'))
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
            return 0;
    }
    return !tc_batch_is_fixed_column(name, len);
}

int tc_batch_dyn_column(tc_batch *b, const char *name, size_t len)
{
    size_t d;

    for (d = 0; d < b->ndyn; d++) {
        if (strlen(b->dyn_name[d]) == len && memcmp(b->dyn_name[d], name, len) == 0)
            return (int)d;
    }
    if (b->ndyn >= TC_BATCH_DYN_MAX || !tc_batch_valid_column_name(name, len))
        return -1;
    b->dyn_name[d] = strndup(name, len);
    b->dyn[d] = calloc(b->cap, sizeof(double));
    b->dyn_present[d] = calloc(b->cap, 1); /* rows already in the batch: NULL */
    if (!b->dyn_name[d] || !b->dyn[d] || !b->dyn_present[d]) {
        free(b->dyn_name[d]);
        free(b->dyn[d]);
        free(b->dyn_present[d]);
        return -1;
    }
    b->ndyn++;
    return (int)d;
}

void tc_batch_reset_like(tc_batch *dst, const tc_batch *src)
{
    tc_batch_reset(dst);
    for (size_t d = 0; d < src->ndyn; d++)
        tc_batch_dyn_column(dst, src->dyn_name[d], strlen(src->dyn_name[d]));
}

void tc_batch_copy_row(tc_batch *dst, const tc_batch *src, size_t i)
{
    size_t j = dst->n;

    dst->time_us[j] = src->time_us[i];
    dst->device_id[j] = src->device_id[i];
    dst->tags[j] = src->tags[i];
    dst->extra[j] = src->extra[i];
    dst->schema_version[j] = src->schema_version[i];
    dst->partition[j] = src->partition[i];
    dst->offset[j] = src->offset[i];
    for (int m = 0; m < TC_METRIC__COUNT; m++) {
        dst->metric[m][j] = src->metric[m][i];
        dst->present[m][j] = src->present[m][i];
    }
    for (size_t d = 0; d < src->ndyn && d < dst->ndyn; d++) {
        dst->dyn[d][j] = src->dyn[d][i];
        dst->dyn_present[d][j] = src->dyn_present[d][i];
    }
    dst->n++;
}
