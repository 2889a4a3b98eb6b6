/*
 * dedupe.c -- two generations of open-addressed fingerprint tables; see dedupe.h.
 */
#include "process/dedupe.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* The table is aligned to, and advised to be backed by, 2 MiB pages where the kernel offers them
 * (transparent huge pages in "madvise" mode, Debian's default): every check probes a random slot
 * of a 16 MB table, and with 4 KiB pages each probe was also a TLB miss. */
#define TC_DEDUPE_PAGE (2u * 1024 * 1024)

/* One generation's entry. The key is the fingerprint with the partition folded in
 * (tc_dedupe_key): 16 bytes where (fingerprint, offset, partition) took 24, and equal keys mean
 * the same fingerprint on the same partition but for a 2^-64 chance, the fingerprint's own odds. */
typedef struct tc_dedupe_entry {
    uint64_t key; /* 0 = empty */
    int64_t offset;
} tc_dedupe_entry;

/* Slot i of both generations side by side: a check looks both up in one cache line (two probes
 * into two tables were two cache misses per reading, the pipeline's largest single cost). */
typedef struct tc_dedupe_pair {
    tc_dedupe_entry gen[2];
} tc_dedupe_pair;

struct tc_dedupe {
    tc_dedupe_pair *slots; /* nslots, a power of two, at least twice the entries of a generation */
    size_t nslots, per_gen;
    size_t n[2]; /* entries of each generation */
    /* The newest event time seen when a generation started taking inserts (INT64_MAX: not
     * started). Not its first reading's time: with late readings, and partitions at different
     * points of event time, that can be far behind, and the generation would be rotated at every
     * insert. */
    int64_t start_time_us[2];
    int cur; /* the generation taking inserts; the other is older */
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

/* The fingerprint of a reading on partition: the partition's own odd constant, multiplied in
 * (a bijection of the fingerprint for each partition), then mixed so that the low bits that pick
 * the slot depend on both. Never 0. */
static uint64_t tc_dedupe_key(uint64_t fp, int32_t partition)
{
    uint64_t k = tc_dedupe_mix(fp ^ ((uint64_t)(uint32_t)partition * 0x9e3779b97f4a7c15ULL));

    return k ? k : 1;
}

void tc_dedupe_prefetch(const tc_dedupe *d, uint64_t fp, int32_t partition)
{
    __builtin_prefetch(&d->slots[(size_t)tc_dedupe_key(fp, partition) & (d->nslots - 1)]);
}

/* A zeroed table of n slots (see TC_DEDUPE_PAGE); NULL when out of memory. */
static tc_dedupe_pair *tc_dedupe_table(size_t n)
{
    size_t bytes = n * sizeof(tc_dedupe_pair);
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
    return calloc(n, sizeof(tc_dedupe_pair));
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
    d->start_time_us[0] = d->start_time_us[1] = INT64_MAX;
    d->slots = tc_dedupe_table(nslots);
    if (!d->slots) {
        free(d);
        return NULL;
    }
    return d;
}

void tc_dedupe_destroy(tc_dedupe *d)
{
    if (!d)
        return;
    free(d->slots);
    free(d);
}

size_t tc_dedupe_size(const tc_dedupe *d)
{
    return d->n[0] + d->n[1];
}

/* Generation g's entry holding key, or its empty entry where key would go. */
static tc_dedupe_entry *tc_dedupe_slot(const tc_dedupe *d, int g, uint64_t key)
{
    size_t mask = d->nslots - 1;

    for (size_t pos = (size_t)key & mask;; pos = (pos + 1) & mask) {
        tc_dedupe_entry *e = &d->slots[pos].gen[g];
        if (e->key == 0 || e->key == key)
            return e;
    }
}

/* Drop the older generation; the current one becomes it. */
static void tc_dedupe_rotate(tc_dedupe *d)
{
    int old = !d->cur;

    for (size_t i = 0; i < d->nslots; i++)
        d->slots[i].gen[old] = (tc_dedupe_entry){0, 0};
    d->n[old] = 0;
    d->start_time_us[old] = INT64_MAX;
    d->cur = old;
}

int tc_dedupe_check(tc_dedupe *d, uint64_t fp, int32_t partition, int64_t offset, int64_t time_us)
{
    uint64_t key = tc_dedupe_key(fp, partition);
    tc_dedupe_entry *e;

    for (int g = 0; g < 2; g++) {
        e = tc_dedupe_slot(d, g, key);
        if (e->key == 0)
            continue;
        if (e->offset < offset)
            return 1;
        e->offset = offset; /* the same message, or an earlier copy read after a rewind */
        return 0;
    }
    if (time_us > d->max_time_us)
        d->max_time_us = time_us;
    if (d->start_time_us[d->cur] == INT64_MAX)
        d->start_time_us[d->cur] = d->max_time_us;
    if (d->n[d->cur] >= d->per_gen ||
        (d->n[d->cur] > 0 && d->max_time_us - d->start_time_us[d->cur] > d->window_us)) {
        tc_dedupe_rotate(d);
        d->start_time_us[d->cur] = d->max_time_us;
    }
    e = tc_dedupe_slot(d, d->cur, key);
    *e = (tc_dedupe_entry){key, offset};
    d->n[d->cur]++;
    return 0;
}
