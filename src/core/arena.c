/*
 * arena.c -- bump allocator; see arena.h for the design.
 */
#include "core/arena.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct tc_arena_block {
    tc_arena_block *next;
    size_t size; /* usable bytes in data[] */
    size_t off;  /* next free byte */
    /* Aligned so that allocations of 8-byte types are aligned too. */
    _Alignas(16) unsigned char data[];
};

#define TC_ARENA_ALIGN 8

void tc_arena_init(tc_arena *a, size_t block_size, size_t cap)
{
    memset(a, 0, sizeof(*a));
    a->block_size = block_size ? block_size : 64 * 1024;
    a->cap = cap;
}

static tc_arena_block *tc_arena_take_block(tc_arena *a, size_t need)
{
    tc_arena_block **pp = &a->spare, *b;
    size_t size;

    /* Reuse a spare block big enough for the request. */
    for (; *pp; pp = &(*pp)->next) {
        if ((*pp)->size >= need) {
            b = *pp;
            *pp = b->next;
            b->off = 0;
            return b;
        }
    }
    size = need > a->block_size ? need : a->block_size;
    if (a->cap && a->reserved + size > a->cap)
        return NULL;
    b = malloc(sizeof(*b) + size);
    if (!b)
        return NULL;
    b->size = size;
    b->off = 0;
    a->reserved += size;
    return b;
}

void *tc_arena_alloc(tc_arena *a, size_t n)
{
    tc_arena_block *b = a->head;
    size_t off;
    void *p;

    if (n > SIZE_MAX / 2)
        return NULL;
    n = (n + TC_ARENA_ALIGN - 1) & ~(size_t)(TC_ARENA_ALIGN - 1);
    if (!b || b->size - b->off < n) {
        b = tc_arena_take_block(a, n);
        if (!b)
            return NULL;
        b->next = a->head;
        a->head = b;
    }
    off = b->off;
    b->off += n;
    a->used += n;
    p = b->data + off;
    return p;
}

char *tc_arena_strndup(tc_arena *a, const char *s, size_t n)
{
    char *p = tc_arena_alloc(a, n + 1);

    if (!p)
        return NULL;
    if (n)
        memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

void tc_arena_reset(tc_arena *a)
{
    tc_arena_block *b = a->head, *next;

    while (b) {
        next = b->next;
        b->next = a->spare;
        a->spare = b;
        b = next;
    }
    a->head = NULL;
    a->used = 0;
}

static void tc_arena_free_list(tc_arena_block *b)
{
    tc_arena_block *next;

    for (; b; b = next) {
        next = b->next;
        free(b);
    }
}

void tc_arena_free(tc_arena *a)
{
    tc_arena_free_list(a->head);
    tc_arena_free_list(a->spare);
    a->head = a->spare = NULL;
    a->used = a->reserved = 0;
}
