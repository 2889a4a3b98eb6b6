/*
 * window.c -- the bounded run of a replay; see window.h.
 */
#include "process/window.h"

#include <stdlib.h>
#include <string.h>

struct tc_windows {
    tc_pipeline_window *w;
    uint8_t *done;
    size_t n, left;
};

tc_windows *tc_windows_new(const tc_pipeline_window *w, size_t n)
{
    tc_windows *ws = calloc(1, sizeof(*ws));

    if (!ws)
        return NULL;
    ws->w = calloc(n ? n : 1, sizeof(*ws->w));
    ws->done = calloc(n ? n : 1, 1);
    if (!ws->w || !ws->done) {
        tc_windows_destroy(ws);
        return NULL;
    }
    if (n) /* w may be NULL then, and memcpy's arguments must not be */
        memcpy(ws->w, w, n * sizeof(*w));
    ws->n = n;
    for (size_t i = 0; i < n; i++) {
        /* Nothing to consume: done before it starts. */
        ws->done[i] = w[i].end <= (w[i].from < 0 ? 0 : w[i].from);
        ws->left += !ws->done[i];
    }
    return ws;
}

void tc_windows_destroy(tc_windows *ws)
{
    if (!ws)
        return;
    free(ws->w);
    free(ws->done);
    free(ws);
}

static const tc_pipeline_window *tc_windows_find(const tc_windows *ws, int32_t partition,
                                                 size_t *index)
{
    for (size_t i = 0; i < ws->n; i++) {
        if (ws->w[i].partition == partition) {
            if (index)
                *index = i;
            return &ws->w[i];
        }
    }
    return NULL;
}

void tc_windows_assign(const tc_windows *ws, const int32_t *parts, size_t n, int64_t *next)
{
    for (size_t i = 0; i < n; i++) {
        const tc_pipeline_window *w = tc_windows_find(ws, parts[i], NULL);
        if (w)
            next[i] = w->from;
    }
}

unsigned tc_windows_sinks(tc_windows *ws, int32_t partition, int64_t offset, unsigned sinks,
                          unsigned store_bit)
{
    size_t i;
    const tc_pipeline_window *w = tc_windows_find(ws, partition, &i);

    if (!w || offset >= w->end)
        return 0;
    if (offset >= w->end - 1 && !ws->done[i]) {
        ws->done[i] = 1;
        ws->left--;
    }
    /* The rows of [to, store_mark) are kept: the store must not get them a second time. */
    if (offset < w->from || (offset >= w->to && offset < w->store_mark))
        sinks &= ~store_bit;
    return sinks;
}

int tc_windows_keeps_store_mark(const tc_windows *ws, int32_t partition, int64_t offset)
{
    const tc_pipeline_window *w = tc_windows_find(ws, partition, NULL);

    return w && offset + 1 <= w->store_mark;
}

int tc_windows_skips(const tc_windows *ws, int32_t partition, int64_t offset)
{
    const tc_pipeline_window *w = tc_windows_find(ws, partition, NULL);

    for (size_t k = 0; w && k < w->nskip; k++) {
        if (w->skip[k] == offset)
            return 1;
    }
    return 0;
}

int tc_windows_done(const tc_windows *ws)
{
    return ws->left == 0;
}

int32_t tc_windows_unfinished(const tc_windows *ws, const int32_t *parts, size_t n)
{
    for (size_t k = 0; k < n; k++) {
        size_t i;
        if (tc_windows_find(ws, parts[k], &i) && !ws->done[i])
            return parts[k];
    }
    return -1;
}
