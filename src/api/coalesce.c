/*
 * coalesce.c -- the table of identical reads' computations; see coalesce.h.
 *
 * A fixed array of hash chains of entries, one entry per key that has a running computation (and
 * perhaps a waiting one): an entry is made by the first request of its key and removed when its
 * running computation ends with none waiting, so the table holds only what is in flight. A
 * computation is freed by whoever looks at its outcome last: its leader when nobody joined, else
 * its last follower.
 *
 * Kept answers live apart, in a short list (at most TC_COALESCE_KEPT_MAX, searched linearly: a
 * memcmp of a few keys is nothing beside the statement it saves), each holding one reference to
 * its answer; `used` orders them for eviction.
 */
#include "api/coalesce.h"

#include "api/http_gzip.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* Hash chains (entries are few: the keys in flight). */
#define TC_COALESCE_BUCKETS 256

typedef struct tc_coalesce_entry tc_coalesce_entry;

typedef enum tc_coalesce_state {
    TC_CS_WAITING,   /* gathering members until the running one ends */
    TC_CS_GATHERING, /* its leader prepares: members join until it starts (tc_coalesce_start) */
    TC_CS_RUNNING,   /* its leader computes; nobody joins any more */
    TC_CS_DONE,      /* ended: answer set, or NULL when not shared */
} tc_coalesce_state;

struct tc_coalesce_comp {
    tc_coalesce_entry *entry; /* until it ends */
    pthread_cond_t cond;      /* state changes */
    tc_coalesce_state state;
    size_t members; /* the leader included */
    size_t unseen;  /* followers that have not looked at the outcome yet */
    tc_coalesce_answer *answer;
};

struct tc_coalesce_entry {
    tc_coalesce_entry *next;
    uint64_t hash;
    tc_coalesce_comp *running, *waiting;
    size_t klen;
    char key[];
};

typedef struct tc_coalesce_kept {
    struct tc_coalesce_kept *next;
    uint64_t hash, used;
    int64_t version;
    tc_coalesce_answer *answer; /* one reference */
    size_t klen;
    char key[];
} tc_coalesce_kept;

struct tc_coalesce {
    pthread_mutex_t lock;
    size_t answer_max, total_max;
    size_t held; /* bytes of answers held and of leaders' buffers charged */
    size_t nentries;
    size_t waiting; /* requests blocked in tc_coalesce_enter */
    tc_coalesce_entry *buckets[TC_COALESCE_BUCKETS];
    tc_coalesce_kept *kept;
    size_t nkept;
    uint64_t tick; /* orders the kept answers' use */
    tc_coalesce_stats stats;
};

static void tc_coalesce_answer_unref(tc_coalesce *c, tc_coalesce_answer *a);

/* FNV-1a, 64 bits: keys come from requests, but a collision only costs a memcmp. */
static uint64_t tc_coalesce_hash(const unsigned char *k, size_t n)
{
    uint64_t h = 1469598103934665603ULL;

    for (size_t i = 0; i < n; i++)
        h = (h ^ k[i]) * 1099511628211ULL;
    return h;
}

tc_coalesce *tc_coalesce_new(size_t answer_max, size_t total_max)
{
    tc_coalesce *c = calloc(1, sizeof(*c));

    if (!c)
        return NULL;
    c->answer_max = answer_max ? answer_max : TC_COALESCE_ANSWER_MAX_DEFAULT;
    c->total_max = total_max ? total_max : TC_COALESCE_TOTAL_MAX_DEFAULT;
    pthread_mutex_init(&c->lock, NULL);
    return c;
}

void tc_coalesce_destroy(tc_coalesce *c)
{
    if (!c)
        return;
    /* Nothing is in flight (the caller's promise): the chains are empty; kept answers go. */
    while (c->kept) {
        tc_coalesce_kept *k = c->kept;
        c->kept = k->next;
        tc_coalesce_answer_unref(c, k->answer);
        free(k);
    }
    pthread_mutex_destroy(&c->lock);
    free(c);
}

static tc_coalesce_comp *tc_coalesce_comp_new(tc_coalesce_entry *e, tc_coalesce_state state)
{
    tc_coalesce_comp *comp = calloc(1, sizeof(*comp));

    if (!comp)
        return NULL;
    comp->entry = e;
    comp->state = state;
    comp->members = 1;
    pthread_cond_init(&comp->cond, NULL);
    return comp;
}

static void tc_coalesce_comp_free(tc_coalesce_comp *comp)
{
    pthread_cond_destroy(&comp->cond);
    free(comp);
}

/* The entry of key, made when absent (NULL: the table is full or memory short). Locked. */
static tc_coalesce_entry *tc_coalesce_entry_get(tc_coalesce *c, const void *key, size_t klen)
{
    uint64_t h = tc_coalesce_hash(key, klen);
    tc_coalesce_entry **head = &c->buckets[h % TC_COALESCE_BUCKETS], *e;

    for (e = *head; e; e = e->next)
        if (e->hash == h && e->klen == klen && !memcmp(e->key, key, klen))
            return e;
    if (c->nentries >= TC_COALESCE_KEYS_MAX || !(e = calloc(1, sizeof(*e) + klen)))
        return NULL;
    e->hash = h;
    e->klen = klen;
    memcpy(e->key, key, klen);
    e->next = *head;
    *head = e;
    c->nentries++;
    return e;
}

static void tc_coalesce_entry_remove(tc_coalesce *c, tc_coalesce_entry *e)
{
    tc_coalesce_entry **p = &c->buckets[e->hash % TC_COALESCE_BUCKETS];

    while (*p != e)
        p = &(*p)->next;
    *p = e->next;
    c->nentries--;
    free(e);
}

tc_coalesce_role tc_coalesce_enter(tc_coalesce *c, const void *key, size_t klen,
                                   tc_coalesce_ticket *t)
{
    tc_coalesce_entry *e;
    tc_coalesce_comp *comp;
    tc_coalesce_answer *a;

    memset(t, 0, sizeof(*t));
    if (klen > TC_COALESCE_KEY_MAX)
        return TC_COALESCE_FALLBACK;
    pthread_mutex_lock(&c->lock);
    e = tc_coalesce_entry_get(c, key, klen);
    if (!e)
        goto fallback;
    if (!e->running) {
        /* Nothing of this key runs: lead one at once. */
        if (!(comp = tc_coalesce_comp_new(e, TC_CS_GATHERING))) {
            tc_coalesce_entry_remove(c, e);
            goto fallback;
        }
        e->running = comp;
        goto lead;
    }
    if (e->running->state == TC_CS_GATHERING) {
        /* Its statement is not sent yet: its rows will be newer than this request. */
        comp = e->running;
        goto join;
    }
    if (!e->waiting) {
        /* Lead the next one: gather members until the running one ends (tc_coalesce_end starts
         * this one then). */
        if (!(comp = tc_coalesce_comp_new(e, TC_CS_WAITING)))
            goto fallback;
        e->waiting = comp;
        c->waiting++;
        while (comp->state == TC_CS_WAITING)
            pthread_cond_wait(&comp->cond, &c->lock);
        c->waiting--;
        goto lead;
    }
    comp = e->waiting;
join:
    comp->members++;
    comp->unseen++;
    c->waiting++;
    while (comp->state != TC_CS_DONE)
        pthread_cond_wait(&comp->cond, &c->lock);
    c->waiting--;
    a = comp->answer;
    if (--comp->unseen == 0)
        tc_coalesce_comp_free(comp);
    if (!a)
        goto fallback;
    c->stats.shared++;
    t->answer = a;
    pthread_mutex_unlock(&c->lock);
    return TC_COALESCE_SHARED;
lead:
    c->stats.computations++;
    t->comp = comp;
    t->members = 0; /* known at tc_coalesce_start */
    pthread_mutex_unlock(&c->lock);
    return TC_COALESCE_LEAD;
fallback:
    c->stats.fallbacks++;
    pthread_mutex_unlock(&c->lock);
    return TC_COALESCE_FALLBACK;
}

size_t tc_coalesce_start(tc_coalesce *c, tc_coalesce_ticket *t)
{
    pthread_mutex_lock(&c->lock);
    t->comp->state = TC_CS_RUNNING;
    t->members = t->comp->members;
    pthread_mutex_unlock(&c->lock);
    return t->members;
}

/* Drop the least recently used kept answer (locked): 0, or -1 when none is kept. */
static int tc_coalesce_evict(tc_coalesce *c)
{
    tc_coalesce_kept **p, **oldest = NULL, *k;

    for (p = &c->kept; *p; p = &(*p)->next)
        if (!oldest || (*p)->used < (*oldest)->used)
            oldest = p;
    if (!oldest)
        return -1;
    k = *oldest;
    *oldest = k->next;
    c->nkept--;
    tc_coalesce_answer_unref(c, k->answer);
    free(k);
    return 0;
}

/* Charge bytes for t (locked): 0, or -1 past a cap (nothing changed but kept answers dropped). */
static int tc_coalesce_charge(tc_coalesce *c, tc_coalesce_ticket *t, size_t bytes)
{
    if (bytes > c->answer_max)
        return -1;
    /* A computation in progress comes before an answer kept for later. */
    while (c->held - t->reserved + bytes > c->total_max)
        if (tc_coalesce_evict(c))
            return -1;
    c->held = c->held - t->reserved + bytes;
    t->reserved = bytes;
    return 0;
}

int tc_coalesce_reserve(tc_coalesce *c, tc_coalesce_ticket *t, size_t bytes)
{
    int rc;

    pthread_mutex_lock(&c->lock);
    rc = tc_coalesce_charge(c, t, bytes);
    pthread_mutex_unlock(&c->lock);
    return rc;
}

/* End t's computation with answer a (NULL: not shared) and start the waiting one. Locked. */
static void tc_coalesce_end(tc_coalesce *c, tc_coalesce_ticket *t, tc_coalesce_answer *a)
{
    tc_coalesce_comp *comp = t->comp, *next;
    tc_coalesce_entry *e = comp->entry;

    comp->state = TC_CS_DONE;
    comp->answer = a;
    comp->entry = NULL;
    if (a)
        a->refs += (int)(1 + comp->unseen); /* a kept answer holds one already */
    next = e->waiting;
    e->running = next;
    e->waiting = NULL;
    if (next) {
        next->state = TC_CS_GATHERING; /* its leader wakes; members join until it starts */
        pthread_cond_broadcast(&next->cond);
    } else {
        tc_coalesce_entry_remove(c, e);
    }
    pthread_cond_broadcast(&comp->cond);
    if (comp->unseen == 0)
        tc_coalesce_comp_free(comp);
    t->comp = NULL;
}

void tc_coalesce_unshared(tc_coalesce *c, tc_coalesce_ticket *t)
{
    if (!t->comp)
        return;
    pthread_mutex_lock(&c->lock);
    c->held -= t->reserved;
    t->reserved = 0;
    tc_coalesce_end(c, t, NULL);
    pthread_mutex_unlock(&c->lock);
}

/* The kept answer of key (locked), or NULL. */
static tc_coalesce_kept *tc_coalesce_kept_find(tc_coalesce *c, const char *key, size_t klen,
                                               uint64_t hash)
{
    for (tc_coalesce_kept *k = c->kept; k; k = k->next)
        if (k->hash == hash && k->klen == klen && !memcmp(k->key, key, klen))
            return k;
    return NULL;
}

/* Keep a (one more reference) as the answer of e's key at version (locked). Out of memory: not
 * kept, which only costs a later computation. */
static void tc_coalesce_keep(tc_coalesce *c, const tc_coalesce_entry *e, int64_t version,
                             tc_coalesce_answer *a)
{
    tc_coalesce_kept *k = tc_coalesce_kept_find(c, e->key, e->klen, e->hash);

    if (!k) {
        if (c->nkept >= TC_COALESCE_KEPT_MAX)
            tc_coalesce_evict(c);
        if (!(k = calloc(1, sizeof(*k) + e->klen)))
            return;
        k->hash = e->hash;
        k->klen = e->klen;
        memcpy(k->key, e->key, e->klen);
        k->next = c->kept;
        c->kept = k;
        c->nkept++;
    } else {
        tc_coalesce_answer_unref(c, k->answer);
    }
    a->refs++;
    k->answer = a;
    k->version = version;
    k->used = ++c->tick;
}

void tc_coalesce_versioned(tc_coalesce_ticket *t, int64_t version)
{
    t->versioned = 1;
    t->version = version;
}

int tc_coalesce_reuse(tc_coalesce *c, tc_coalesce_ticket *t)
{
    tc_coalesce_kept *k;

    if (!t->comp || !t->versioned)
        return -1;
    pthread_mutex_lock(&c->lock);
    k = tc_coalesce_kept_find(c, t->comp->entry->key, t->comp->entry->klen, t->comp->entry->hash);
    if (!k || k->version != t->version) {
        pthread_mutex_unlock(&c->lock);
        return -1;
    }
    k->used = ++c->tick;
    c->stats.reused++;
    c->held -= t->reserved;
    t->reserved = 0;
    t->answer = k->answer;
    tc_coalesce_end(c, t, k->answer);
    pthread_mutex_unlock(&c->lock);
    return 0;
}

int tc_coalesce_publish(tc_coalesce *c, tc_coalesce_ticket *t, char *data, size_t len, int64_t rows)
{
    tc_coalesce_answer *a = calloc(1, sizeof(*a));

    pthread_mutex_lock(&c->lock);
    if (!a || !data || tc_coalesce_charge(c, t, len)) {
        pthread_mutex_unlock(&c->lock);
        free(a);
        return -1;
    }
    a->data = data;
    a->len = len;
    a->rows = rows;
    a->owner = c;
    pthread_mutex_init(&a->gz_lock, NULL);
    t->reserved = 0; /* the answer holds the charge now */
    if (t->versioned)
        tc_coalesce_keep(c, t->comp->entry, t->version, a);
    c->stats.published++;
    tc_coalesce_end(c, t, a);
    t->answer = a;
    pthread_mutex_unlock(&c->lock);
    return 0;
}

/* Drop one reference to a (locked); the last frees it. */
static void tc_coalesce_answer_unref(tc_coalesce *c, tc_coalesce_answer *a)
{
    if (--a->refs > 0)
        return;
    c->held -= a->len + a->gz_len;
    free((void *)(uintptr_t)a->data); /* the table's own copy: const only to its readers */
    free(a->gz);
    pthread_mutex_destroy(&a->gz_lock);
    free(a);
}

void tc_coalesce_answer_put(void *answer)
{
    tc_coalesce_answer *a = answer;
    tc_coalesce *c;

    if (!a)
        return;
    c = a->owner;
    pthread_mutex_lock(&c->lock);
    tc_coalesce_answer_unref(c, a);
    pthread_mutex_unlock(&c->lock);
}

const char *tc_coalesce_answer_gzip(void *answer, size_t *len)
{
    tc_coalesce_answer *a = answer;
    tc_coalesce *c = a->owner;
    char *gz = NULL;
    size_t gz_len = 0;

    pthread_mutex_lock(&a->gz_lock);
    if (!a->gz_tried) {
        a->gz_tried = 1;
        if (tc_http_gzip_buffer(a->data, a->len, &gz, &gz_len) == 0) {
            pthread_mutex_lock(&c->lock);
            if (c->held + gz_len <= c->total_max) {
                c->held += gz_len;
                a->gz = gz;
                a->gz_len = gz_len;
                gz = NULL;
            }
            pthread_mutex_unlock(&c->lock);
            free(gz); /* over the cap: every response compresses its own */
        }
    }
    *len = a->gz_len;
    pthread_mutex_unlock(&a->gz_lock);
    return a->gz;
}

void tc_coalesce_stats_get(tc_coalesce *c, tc_coalesce_stats *out)
{
    pthread_mutex_lock(&c->lock);
    *out = c->stats;
    out->kept = c->nkept;
    out->held_bytes = c->held;
    out->waiting = c->waiting;
    pthread_mutex_unlock(&c->lock);
}
