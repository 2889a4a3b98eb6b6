/*
 * bufs.c -- a flush's buffers kept for the next one; see bufs.h.
 */
#include "quality/bufs.h"

#include <stdlib.h>

/* A new buffer for want bytes, with TC_QBUFS_HEADROOM more: the next flush's document is
 * seldom the same size, and a buffer that holds it is written over pages faulted in already,
 * where one a byte too small is replaced by fresh memory (a fault a page). Pages never written
 * cost nothing. */
static void *tc_qbufs_new(size_t want, size_t *cap)
{
    size_t size = want + want / TC_QBUFS_HEADROOM;
    void *p = size >= want ? malloc(size) : NULL;

    *cap = p ? size : 0;
    return p;
}

void *tc_qbufs_get(tc_qbufs *b, size_t want, size_t *cap)
{
    size_t pick = TC_QBUFS_MAX, largest = 0;
    void *p;

    *cap = 0;
    /* The smallest that holds want bytes: a small document does not take a large buffer another
     * needs, so the pool keeps what the last flushes used, not that many of the largest. */
    for (size_t i = 0; i < b->n; i++) {
        if (b->cap[i] >= want && (pick == TC_QBUFS_MAX || b->cap[i] < b->cap[pick]))
            pick = i;
        if (b->cap[i] > b->cap[largest])
            largest = i;
    }
    if (!b->n)
        return want ? tc_qbufs_new(want, cap) : NULL;
    if (pick == TC_QBUFS_MAX)
        pick = largest; /* grown below */
    p = b->p[pick];
    *cap = b->cap[pick];
    b->n--;
    b->p[pick] = b->p[b->n];
    b->cap[pick] = b->cap[b->n];
    if (*cap < want) {
        /* Its content is not kept: a new one, not a realloc that would copy it. */
        free(p);
        p = tc_qbufs_new(want, cap);
    }
    return p;
}

void tc_qbufs_put(tc_qbufs *b, void *p, size_t cap)
{
    size_t small = 0;

    if (!p)
        return;
    if (b->n < TC_QBUFS_MAX) {
        b->p[b->n] = p;
        b->cap[b->n++] = cap;
        return;
    }
    for (size_t i = 1; i < b->n; i++)
        if (b->cap[i] < b->cap[small])
            small = i;
    if (b->cap[small] >= cap) {
        free(p);
        return;
    }
    free(b->p[small]);
    b->p[small] = p;
    b->cap[small] = cap;
}

void tc_qbufs_free(tc_qbufs *b)
{
    for (size_t i = 0; i < b->n; i++)
        free(b->p[i]);
    b->n = 0;
}

void tc_qbufs_jbuf(tc_qbufs *b, tc_jbuf *j, size_t max, size_t want)
{
    size_t cap;

    tc_jbuf_init(j, max);
    /* tc_jbuf grows its data with realloc: any malloc'd buffer is one it can take over. */
    j->data = tc_qbufs_get(b, want, &cap);
    j->cap = cap;
    tc_jbuf_reset(j);
}

void tc_qbufs_jbuf_done(tc_qbufs *b, tc_jbuf *j)
{
    tc_qbufs_put(b, j->data, j->cap);
    tc_jbuf_init(j, j->max);
}
