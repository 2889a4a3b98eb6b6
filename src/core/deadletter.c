/*
 * deadletter.c -- the dead-letter batch; see deadletter.h.
 */
#include "core/deadletter.h"

#include <stdlib.h>
#include <string.h>

tc_dlq_batch *tc_dlq_batch_new(size_t cap, size_t arena_cap)
{
    tc_dlq_batch *d = calloc(1, sizeof(*d));

    if (!d)
        return NULL;
    d->items = calloc(cap ? cap : 1, sizeof(*d->items));
    if (!d->items) {
        free(d);
        return NULL;
    }
    d->cap = cap ? cap : 1;
    tc_arena_init(&d->arena, 256 * 1024, arena_cap);
    return d;
}

void tc_dlq_batch_destroy(tc_dlq_batch *d)
{
    if (!d)
        return;
    tc_arena_free(&d->arena);
    free(d->items);
    free(d);
}

void tc_dlq_batch_reset(tc_dlq_batch *d)
{
    d->n = 0;
    tc_arena_reset(&d->arena);
}

static int tc_dlq_copy(tc_arena *a, tc_slice *dst, const void *src, size_t len)
{
    if (!src) {
        *dst = (tc_slice){NULL, 0};
        return 0;
    }
    if (len > UINT32_MAX)
        return -1;
    dst->ptr = tc_arena_strndup(a, src, len);
    dst->len = (uint32_t)len;
    return dst->ptr ? 0 : -1;
}

/* The bytes a copy of len bytes may take from the arena's cap: a block of its own, of at least
 * the arena's block size (tc_arena_take_block), its length rounded up for the NUL and alignment. */
static size_t tc_dlq_block_need(const tc_arena *a, size_t len)
{
    size_t n = len + 1 + 8;

    return n > a->block_size ? n : a->block_size;
}

int tc_dlq_batch_room(const tc_dlq_batch *d, size_t payload_len, size_t key_len, size_t detail_len)
{
    const tc_arena *a = &d->arena;
    size_t need;

    if (d->n >= d->cap)
        return 0;
    if (!a->cap)
        return 1;
    need = tc_dlq_block_need(a, payload_len) + tc_dlq_block_need(a, key_len) +
           tc_dlq_block_need(a, detail_len);
    return a->reserved <= a->cap && need <= a->cap - a->reserved;
}

tc_err tc_dlq_batch_add(tc_dlq_batch *d, tc_reject reason, const char *stage, const char *detail,
                        const void *payload, size_t payload_len, const void *key, size_t key_len,
                        int32_t partition, int64_t offset, int64_t received_us)
{
    tc_dead_letter *dl;

    if (d->n >= d->cap)
        return TC_ERR_FULL;
    dl = &d->items[d->n];
    dl->detail = tc_arena_strndup(&d->arena, detail, strlen(detail));
    if (!dl->detail || tc_dlq_copy(&d->arena, &dl->payload, payload, payload_len) ||
        tc_dlq_copy(&d->arena, &dl->key, key, key_len))
        return TC_ERR_FULL;
    dl->reason = reason;
    dl->stage = stage;
    dl->partition = partition;
    dl->offset = offset;
    dl->received_us = received_us;
    d->n++;
    return TC_OK;
}
