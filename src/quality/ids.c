/*
 * ids.c -- device ids interned to dense indexes; see ids.h.
 */
#include "quality/ids.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* What malloc adds to each id's bytes, for the memory figures. */
#define TC_QIDS_MALLOC_OVERHEAD 16
/* Slots of a new table: it doubles as ids come, up to twice max. A table sized for max up front
 * (the quality sink's 200,000 devices a partition: 4 MiB) was touched all over by a few
 * thousand ids, a page fault each, in every lane. */
#define TC_QIDS_FIRST_SLOTS 1024

struct tc_qids {
    size_t max, n, mask, full, bytes; /* full: the most slots the table grows to */
    uint64_t *table;                  /* the hash's high half << 32 | index + 1; 0 = empty */
    char **ids;
    size_t *lens;
};

static size_t tc_qids_cap(size_t max)
{
    size_t cap = 1;

    while (cap < 2 * max)
        cap <<= 1;
    return cap;
}

tc_qids *tc_qids_new(size_t max)
{
    tc_qids *t;

    if (max < 1 || max > TC_QIDS_MAX)
        return NULL;
    t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->max = max;
    t->full = tc_qids_cap(max);
    t->mask = (t->full < TC_QIDS_FIRST_SLOTS ? t->full : TC_QIDS_FIRST_SLOTS) - 1;
    t->table = calloc(t->mask + 1, sizeof(*t->table));
    t->ids = calloc(max, sizeof(*t->ids));
    t->lens = calloc(max, sizeof(*t->lens));
    if (!t->table || !t->ids || !t->lens) {
        tc_qids_destroy(t);
        return NULL;
    }
    return t;
}

void tc_qids_destroy(tc_qids *t)
{
    if (!t)
        return;
    for (size_t i = 0; t->ids && i < t->n; i++)
        free(t->ids[i]);
    free(t->table);
    free(t->ids);
    free(t->lens);
    free(t);
}

/* Bytes read at a time by the hash. */
#define TC_QIDS_WORD 8
#define TC_QIDS_ONES UINT64_C(0x0101010101010101)
#define TC_QIDS_HIGH UINT64_C(0x8080808080808080)

/* 8 bytes at p, the first in the low byte whatever the machine's order. */
static inline uint64_t tc_qids_load(const char *p)
{
    uint64_t w;

    memcpy(&w, p, sizeof(w));
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    w = __builtin_bswap64(w);
#endif
    return w;
}

/* The id's hash, 8 bytes a step (FNV-1a took a byte a step, each a multiplication's latency,
 * and memchr a call: most of a lookup's instructions, once for every reading of every device),
 * with a finalizer so that the low bits (the slot) and the high half (kept in the slot) both
 * depend on every byte. *nul is set when the id holds a NUL byte (such ids are refused): tested
 * on the words as they are read. The last word is the id's last 8 bytes when it has 8 (read
 * again, not a byte at a time), shifted down to the bytes not yet mixed, and padded above them
 * with 0x01 bytes, never a NUL; the length is mixed in, so the padding cannot make two ids one. */
static inline uint64_t tc_qids_hash(const char *id, size_t len, int *nul)
{
    uint64_t h = UINT64_C(0x9e3779b97f4a7c15) ^ (len * UINT64_C(0xff51afd7ed558ccd)), w, zero = 0;
    size_t i = 0, rest;

    for (; i + TC_QIDS_WORD <= len; i += TC_QIDS_WORD) {
        w = tc_qids_load(id + i);
        zero |= (w - TC_QIDS_ONES) & ~w & TC_QIDS_HIGH;
        h = (h ^ w) * UINT64_C(0x100000001b3);
        h ^= h >> 29;
    }
    rest = len - i;
    if (rest) {
        if (len >= TC_QIDS_WORD) {
            w = tc_qids_load(id + len - TC_QIDS_WORD) >> (8 * (TC_QIDS_WORD - rest));
        } else {
            w = 0;
            for (size_t k = 0; k < rest; k++)
                w |= (uint64_t)(unsigned char)id[k] << (8 * k);
        }
        w |= TC_QIDS_ONES << (8 * rest);
        zero |= (w - TC_QIDS_ONES) & ~w & TC_QIDS_HIGH;
        h = (h ^ w) * UINT64_C(0x100000001b3);
    }
    h ^= h >> 32;
    h *= UINT64_C(0xc4ceb9fe1a85ec53);
    h ^= h >> 29;
    *nul = zero != 0;
    return h;
}

/* Twice the slots, every id placed again; -1 when out of memory (the table stays as it was). */
static int tc_qids_grow(tc_qids *t)
{
    size_t mask = 2 * (t->mask + 1) - 1;
    uint64_t *table = calloc(mask + 1, sizeof(*table));

    if (!table)
        return -1;
    for (size_t i = 0; i < t->n; i++) {
        int nul;
        uint64_t h = tc_qids_hash(t->ids[i], t->lens[i], &nul);
        size_t slot = (size_t)h & mask;
        while (table[slot])
            slot = (slot + 1) & mask;
        table[slot] = (h >> 32 << 32) | (uint64_t)(i + 1);
    }
    free(t->table);
    t->table = table;
    t->mask = mask;
    return 0;
}

long tc_qids_find(tc_qids *t, const char *id, size_t len, int add)
{
    uint64_t h;
    size_t slot;
    int nul;

    if (len == 0 || len > TC_QIDS_LEN_MAX)
        return -1;
    h = tc_qids_hash(id, len, &nul);
    if (nul)
        return -1;
    /* The stored half of the hash settles most probes without touching the id's memory. */
    for (slot = (size_t)h & t->mask; t->table[slot]; slot = (slot + 1) & t->mask) {
        size_t i = (size_t)(t->table[slot] & 0xffffffffu) - 1;
        if (t->table[slot] >> 32 == h >> 32 && t->lens[i] == len && !memcmp(t->ids[i], id, len))
            return (long)i;
    }
    if (!add || t->n >= t->max)
        return -1;
    if (2 * (t->n + 1) > t->mask + 1 && t->mask + 1 < t->full) {
        /* At most half full, as when it was sized for max: probes stay short. */
        if (tc_qids_grow(t) < 0)
            return -1;
        for (slot = (size_t)h & t->mask; t->table[slot]; slot = (slot + 1) & t->mask)
            ;
    }
    t->ids[t->n] = malloc(len + 1);
    if (!t->ids[t->n])
        return -1;
    memcpy(t->ids[t->n], id, len);
    t->ids[t->n][len] = '\0';
    t->lens[t->n] = len;
    t->bytes += len + 1;
    t->table[slot] = (h >> 32 << 32) | (uint64_t)(t->n + 1);
    return (long)t->n++;
}

const char *tc_qids_id(const tc_qids *t, size_t i)
{
    return i < t->n ? t->ids[i] : NULL;
}

size_t tc_qids_count(const tc_qids *t)
{
    return t->n;
}

size_t tc_qids_max(const tc_qids *t)
{
    return t->max;
}

size_t tc_qids_memory(const tc_qids *t)
{
    return sizeof(*t) + (t->mask + 1) * sizeof(uint64_t) +
           t->max * (sizeof(char *) + sizeof(size_t)) + t->bytes + t->n * TC_QIDS_MALLOC_OVERHEAD;
}

size_t tc_qids_memory_for(size_t max, size_t id_len)
{
    return sizeof(tc_qids) + tc_qids_cap(max) * sizeof(uint64_t) +
           max * (sizeof(char *) + sizeof(size_t) + id_len + 1 + TC_QIDS_MALLOC_OVERHEAD);
}
