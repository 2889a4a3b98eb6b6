/*
 * bufs.h -- the large buffers of a quality flush, kept for the next flush instead of freed.
 *
 * A flush builds a document per lane of megabytes (every device's minute rows) and the
 * arrays of its changed detectors, and frees them once the transaction commits. Each new buffer
 * of that size is fresh memory from the kernel, zeroed and faulted in page by page as it is
 * written: a profile of the pipeline with the quality sink had a tenth of its samples clearing
 * those pages. Kept buffers are written again without a fault. A pool holds at most
 * TC_QBUFS_MAX of them (a flush uses five per lane at most); past that the smallest is freed.
 * What it holds is what the largest flush needed (freed by tc_qbufs_free).
 *
 * Ownership: a buffer taken with tc_qbufs_get is the caller's until given back with
 * tc_qbufs_put (any malloc'd buffer may be given). Not thread-safe: the monitor's thread only.
 */
#ifndef TC_QUALITY_BUFS_H
#define TC_QUALITY_BUFS_H

#include <stddef.h>

#include "core/json.h"

/* Buffers a pool keeps. */
#define TC_QBUFS_MAX 32
/* A new buffer is made 1/TC_QBUFS_HEADROOM larger than asked (a quarter): a flush a little
 * larger than the last still fits the buffers it left. */
#define TC_QBUFS_HEADROOM 4

typedef struct tc_qbufs {
    void *p[TC_QBUFS_MAX];
    size_t cap[TC_QBUFS_MAX];
    size_t n;
} tc_qbufs;

/* The smallest kept buffer of at least want bytes, or else a new one of want bytes and its
 * headroom in place of the largest (freed: it holds nothing worth copying); want 0: the smallest,
 * NULL when none is kept. *cap receives its size. NULL: none kept and want 0, or out of memory. */
void *tc_qbufs_get(tc_qbufs *b, size_t want, size_t *cap);
/* Keep p (cap bytes; NULL is ignored) for a later get. */
void tc_qbufs_put(tc_qbufs *b, void *p, size_t cap);
void tc_qbufs_free(tc_qbufs *b);
/* tc_jbuf_init(j, max) over a kept buffer of about want bytes, when there is one; and its buffer
 * back to the pool (a taken document's is given back by its owner with tc_qbufs_put). */
void tc_qbufs_jbuf(tc_qbufs *b, tc_jbuf *j, size_t max, size_t want);
void tc_qbufs_jbuf_done(tc_qbufs *b, tc_jbuf *j);

#endif
