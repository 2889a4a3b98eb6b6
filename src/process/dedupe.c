/*
 * dedupe.c -- two generations of open-addressed fingerprint tables; see dedupe.h.
 */
#include "process/dedupe.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* Tables are aligned to, and advised to be backed by, 2 MiB pages where the kernel offers them
 * (transparent huge pages in "madvise" mode, Debian's default): every check probes two random
 * slots of 12 MB tables, and with 4 KiB pages each probe was also a TLB miss. */
#define TC_DEDUPE_PAGE (2u * 1024 * 1024)

typedef struct tc_dedupe_entry {
    uint64_t fp; /* 0 = empty */
    int64_t offset;
    int32_t partition;
} tc_dedupe_entry;

typedef struct tc_dedupe_gen {
    tc_dedupe_entry *slots; /* nslots, a power of two, at least twice the entries allowed */
    size_t n;
    /* The newest event time seen when it started taking inserts (INT64_MAX: not started). Not its
     * first reading's time: with late readings, and partitions at different points of event time,
     * that can be far behind, and the generation would be rotated at every insert. */
    int64_t start_time_us;
} tc_dedupe_gen;

struct tc_dedupe {
    tc_dedupe_gen gen[2]; /* [cur] takes inserts, the other is older */
    int cur;
    size_t nslots, per_gen;
    int64_t window_us, max_time_us;
};

/* splitmix64: the finaliser spreads FNV's weak low bits over the word. */
static uint64_t tc_dedupe_mix(uint64_t h)
{
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebULL;
    return h ^ (h >> 31);
}

/* A word at a time (a multiply and a shift per 8 bytes, where FNV-1a spent a multiply per byte:
 * the fingerprint of a reading with tags and extra was 7% of the pipeline's CPU). Each step is a
 * bijection of the state, so inputs of the same shape that differ in one word never collide; the
 * final mix spreads the bits. Byte order does not matter: fingerprints never leave the process. */
static uint64_t tc_dedupe_bytes(uint64_t h, const void *p, size_t n)
{
    const unsigned char *s = p;
    uint64_t w;

    for (; n >= 8; s += 8, n -= 8) {
        memcpy(&w, s, 8);
        h = (h ^ w) * 0x9e3779b97f4a7c15ULL;
        h ^= h >> 29;
    }
    if (n) {
        w = 0;
        memcpy(&w, s, n);
        /* The tail's length too, so that "a" and "a\0" differ. */
        h = (h ^ w ^ ((uint64_t)n << 56)) * 0x9e3779b97f4a7c15ULL;
        h ^= h >> 29;
    }
    return h;
}

/* A slice, length first, so that ("ab","c") and ("a","bc") differ. */
static uint64_t tc_dedupe_slice(uint64_t h, const char *p, size_t n)
{
    uint64_t len = p ? n : UINT64_MAX;

    h = tc_dedupe_bytes(h, &len, sizeof(len));
    return p ? tc_dedupe_bytes(h, p, n) : h;
}

uint64_t tc_dedupe_fingerprint(const tc_batch *b, size_t i, const char *message_id, size_t len)
{
    uint64_t h = 1469598103934665603ULL;

    h = tc_dedupe_slice(h, b->device_id[i].ptr, b->device_id[i].len);
    h = tc_dedupe_bytes(h, &b->time_us[i], sizeof(b->time_us[i]));
    if (message_id) {
        h = tc_dedupe_slice(h, "#id", 3);
        h = tc_dedupe_slice(h, message_id, len);
    } else {
        for (int m = 0; m < TC_METRIC__COUNT; m++) {
            double v = b->present[m][i] ? b->metric[m][i] : 0.0;
            h = tc_dedupe_bytes(h, &b->present[m][i], 1);
            h = tc_dedupe_bytes(h, &v, sizeof(v));
        }
        h = tc_dedupe_slice(h, b->tags[i].ptr, b->tags[i].len);
        h = tc_dedupe_slice(h, b->extra[i].ptr, b->extra[i].len);
    }
    h = tc_dedupe_mix(h);
    return h ? h : 1;
}

void tc_dedupe_prefetch(const tc_dedupe *d, uint64_t fp)
{
    size_t pos = (size_t)fp & (d->nslots - 1);

    __builtin_prefetch(&d->gen[0].slots[pos]);
    __builtin_prefetch(&d->gen[1].slots[pos]);
}

/* A zeroed table of n slots (see TC_DEDUPE_PAGE); NULL when out of memory. */
static tc_dedupe_entry *tc_dedupe_table(size_t n)
{
    size_t bytes = n * sizeof(tc_dedupe_entry);
    void *p = NULL;

    if (bytes >= TC_DEDUPE_PAGE) {
        bytes = (bytes + TC_DEDUPE_PAGE - 1) / TC_DEDUPE_PAGE * TC_DEDUPE_PAGE;
        if (posix_memalign(&p, TC_DEDUPE_PAGE, bytes) != 0)
            return NULL;
#ifdef MADV_HUGEPAGE
        madvise(p, bytes, MADV_HUGEPAGE); /* advice: without it, 4 KiB pages still work */
#endif
        memset(p, 0, bytes);
        return p;
    }
    return calloc(n, sizeof(tc_dedupe_entry));
}

tc_dedupe *tc_dedupe_new(size_t max_entries, int64_t window_us)
{
    tc_dedupe *d;
    size_t nslots = 16;

    if (max_entries < 2 || max_entries > ((size_t)1 << 30))
        return NULL;
    d = calloc(1, sizeof(*d));
    if (!d)
        return NULL;
    d->per_gen = max_entries / 2;
    while (nslots < d->per_gen * 2)
        nslots *= 2;
    d->nslots = nslots;
    d->window_us = window_us;
    d->max_time_us = INT64_MIN;
    for (int g = 0; g < 2; g++) {
        d->gen[g].slots = tc_dedupe_table(nslots);
        d->gen[g].start_time_us = INT64_MAX;
        if (!d->gen[g].slots) {
            tc_dedupe_destroy(d);
            return NULL;
        }
    }
    return d;
}

void tc_dedupe_destroy(tc_dedupe *d)
{
    if (!d)
        return;
    free(d->gen[0].slots);
    free(d->gen[1].slots);
    free(d);
}

size_t tc_dedupe_size(const tc_dedupe *d)
{
    return d->gen[0].n + d->gen[1].n;
}

/* The slot holding (fp, partition), or the empty slot where it would go. */
static tc_dedupe_entry *tc_dedupe_slot(const tc_dedupe *d, const tc_dedupe_gen *g, uint64_t fp,
                                       int32_t partition)
{
    size_t mask = d->nslots - 1;

    for (size_t pos = (size_t)fp & mask;; pos = (pos + 1) & mask) {
        tc_dedupe_entry *e = &g->slots[pos];
        if (e->fp == 0 || (e->fp == fp && e->partition == partition))
            return e;
    }
}

/* Drop the older generation; the current one becomes it. */
static void tc_dedupe_rotate(tc_dedupe *d)
{
    tc_dedupe_gen *old = &d->gen[!d->cur];

    memset(old->slots, 0, d->nslots * sizeof(tc_dedupe_entry));
    old->n = 0;
    old->start_time_us = INT64_MAX;
    d->cur = !d->cur;
}

int tc_dedupe_check(tc_dedupe *d, uint64_t fp, int32_t partition, int64_t offset, int64_t time_us)
{
    tc_dedupe_gen *cur;
    tc_dedupe_entry *e;

    for (int k = 0; k < 2; k++) {
        e = tc_dedupe_slot(d, &d->gen[k], fp, partition);
        if (e->fp == 0)
            continue;
        if (e->offset < offset)
            return 1;
        e->offset = offset; /* the same message, or an earlier copy read after a rewind */
        return 0;
    }
    if (time_us > d->max_time_us)
        d->max_time_us = time_us;
    cur = &d->gen[d->cur];
    if (cur->start_time_us == INT64_MAX)
        cur->start_time_us = d->max_time_us;
    if (cur->n >= d->per_gen ||
        (cur->n > 0 && d->max_time_us - cur->start_time_us > d->window_us)) {
        tc_dedupe_rotate(d);
        cur = &d->gen[d->cur];
        cur->start_time_us = d->max_time_us;
    }
    e = tc_dedupe_slot(d, cur, fp, partition);
    *e = (tc_dedupe_entry){fp, offset, partition};
    cur->n++;
    return 0;
}
