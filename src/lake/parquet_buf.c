/*
 * parquet_buf.c -- growable byte buffer with a sticky failure flag; see parquet_buf.h.
 */
#include "lake/parquet_buf.h"

#include <stdlib.h>

/* First allocation: large enough for a page header or a small footer without regrowing. */
#define TC_PQ_BUF_MIN_CAP 256

void tc_pq_buf_init(tc_pq_buf *b, size_t limit)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->limit = limit ? limit : TC_PQ_BUF_LIMIT_DEFAULT;
    b->failed = 0;
}

void tc_pq_buf_free(tc_pq_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->failed = 0;
}

int tc_pq_buf_grow(tc_pq_buf *b, size_t extra)
{
    size_t need, cap;
    uint8_t *p;

    if (b->failed)
        return -1;
    if (extra > b->limit || b->len > b->limit - extra) {
        b->failed = 1;
        return -1;
    }
    need = b->len + extra;
    /* Doubling keeps appends amortised O(1); the limit clamps the last step. */
    cap = b->cap ? b->cap : TC_PQ_BUF_MIN_CAP;
    while (cap < need)
        cap = cap > b->limit / 2 ? b->limit : cap * 2;
    p = realloc(b->data, cap);
    if (!p) {
        b->failed = 1;
        return -1;
    }
    b->data = p;
    b->cap = cap;
    return 0;
}
