/*
 * async.c -- the store's batch writers; see async.h.
 *
 * One mutex and one condition variable guard the pool. Each writer has a one-slot mailbox whose
 * state goes round IDLE -> QUEUED (submit) -> DONE (its thread, after the transaction) -> IDLE
 * (wait). The commit order is a sequence: submit numbers the batches 1, 2, 3...; done_seq is the
 * last one finished (committed or failed) and chain_ok whether it committed. A writer's thread
 * calls tc_async_turn between its COPYs and its offsets; the turn comes when done_seq is the
 * number before its own. A writer that failed before its turn still waits for it to finish, so
 * the numbers finish in order. When nothing is in flight at a submit, the chain starts afresh:
 * whatever failed before has been dealt with by the caller.
 *
 * The mutex also orders every access to a writer's store: the caller touches it only between a
 * wait (which took the lock its thread released on DONE) and the next submit.
 */
#include "store/async.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef enum tc_async_state { TC_ASYNC_IDLE, TC_ASYNC_QUEUED, TC_ASYNC_DONE } tc_async_state;

typedef struct tc_async_writer {
    struct tc_store_async *pool;
    int rollups; /* the rollups' writer: tc_store_rollups_flush, outside the commit order */
    tc_store *store;
    pthread_t thread;
    int started;
    tc_async_state state;
    int inflight; /* the caller's own view, from submit to wait: only the caller writes it */
    uint64_t seq;
    /* The batch (the caller's, see async.h) and its outcome. */
    const tc_batch *rows;
    const tc_dlq_batch *dlq;
    const tc_partition_offset *offsets;
    const int64_t *from; /* fencing: where each partition's offset moves from (store.h) */
    size_t noffsets;
    int turn_taken, cascaded;
    tc_err err;
    char errstr[TC_ERRSTR_MAX];
} tc_async_writer;

struct tc_store_async {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int quit;
    uint64_t next_seq; /* the number of the next batch submitted */
    uint64_t done_seq; /* the last batch finished, in order */
    int chain_ok;      /* ...and whether it committed */
    int n;
    tc_async_writer w[TC_STORE_WRITERS_MAX + 1]; /* the batch writers, then the rollups' */
};

/* The rollups' writer, after the n batch writers. */
#define TC_ROLLUPS(a) (&(a)->w[(a)->n])

/* Called by tc_store_write_ordered before the offsets and the COMMIT: wait until every batch
 * submitted before this one has finished; commit only if the last of them committed. */
static int tc_async_turn(void *opaque)
{
    tc_async_writer *w = opaque;
    tc_store_async *a = w->pool;
    int ok;

    pthread_mutex_lock(&a->lock);
    while (a->done_seq != w->seq - 1)
        pthread_cond_wait(&a->cond, &a->lock);
    ok = a->chain_ok;
    w->turn_taken = 1;
    w->cascaded = !ok;
    pthread_mutex_unlock(&a->lock);
    return ok;
}

static void *tc_async_main(void *opaque)
{
    tc_async_writer *w = opaque;
    tc_store_async *a = w->pool;

    pthread_mutex_lock(&a->lock);
    for (;;) {
        while (w->state != TC_ASYNC_QUEUED && !a->quit)
            pthread_cond_wait(&a->cond, &a->lock);
        if (w->state != TC_ASYNC_QUEUED) /* quit, nothing left to write */
            break;
        pthread_mutex_unlock(&a->lock);
        /* The caller leaves the store and the batch alone until DONE: no lock while writing. */
        w->errstr[0] = '\0';
        if (w->rollups) {
            w->err = tc_store_rollups_flush(w->store, w->offsets, w->from, w->noffsets, w->errstr,
                                            sizeof(w->errstr));
            pthread_mutex_lock(&a->lock);
            w->state = TC_ASYNC_DONE;
            pthread_cond_broadcast(&a->cond);
            continue;
        }
        w->turn_taken = w->cascaded = 0;
        w->err = tc_store_write_ordered(w->store, w->rows, w->dlq, w->offsets, w->from, w->noffsets,
                                        tc_async_turn, w, w->errstr, sizeof(w->errstr));
        pthread_mutex_lock(&a->lock);
        /* Failed before its turn: it still finishes in its place. */
        while (!w->turn_taken && a->done_seq != w->seq - 1)
            pthread_cond_wait(&a->cond, &a->lock);
        a->done_seq = w->seq;
        a->chain_ok = w->err == TC_OK;
        w->state = TC_ASYNC_DONE;
        pthread_cond_broadcast(&a->cond);
    }
    pthread_mutex_unlock(&a->lock);
    return NULL;
}

tc_store_async *tc_store_async_new(const tc_store_options *opt, int writers, char *errstr,
                                   size_t errstr_size)
{
    tc_store_async *a;
    int rc;

    if (writers < 1 || writers > TC_STORE_WRITERS_MAX) {
        tc_err_set(TC_ERR_CONFIG, errstr, errstr_size, "%d store writers: expected 1 to %d",
                   writers, TC_STORE_WRITERS_MAX);
        return NULL;
    }
    a = calloc(1, sizeof(*a));
    if (!a) {
        tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory for the store's writers");
        return NULL;
    }
    pthread_mutex_init(&a->lock, NULL);
    pthread_cond_init(&a->cond, NULL);
    a->next_seq = 1;
    a->chain_ok = 1;
    /* The batch writers, then the rollups' (a->n counts the batch writers started so far). */
    for (int i = 0; i <= writers; i++) {
        tc_async_writer *w = &a->w[i];
        w->pool = a;
        w->rollups = i == writers;
        if (!w->rollups)
            a->n++;
        w->store = tc_store_new(opt, errstr, errstr_size);
        if (!w->store) {
            tc_store_async_destroy(a);
            return NULL;
        }
        rc = pthread_create(&w->thread, NULL, tc_async_main, w);
        if (rc != 0) {
            tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "could not start store writer %d: %s", i,
                       strerror(rc));
            tc_store_async_destroy(a);
            return NULL;
        }
        w->started = 1;
    }
    return a;
}

void tc_store_async_destroy(tc_store_async *a)
{
    if (!a)
        return;
    pthread_mutex_lock(&a->lock);
    a->quit = 1;
    pthread_cond_broadcast(&a->cond);
    pthread_mutex_unlock(&a->lock);
    for (int i = 0; i <= a->n; i++) {
        if (a->w[i].started)
            pthread_join(a->w[i].thread, NULL);
        tc_store_destroy(a->w[i].store);
    }
    pthread_cond_destroy(&a->cond);
    pthread_mutex_destroy(&a->lock);
    free(a);
}

int tc_store_async_writers(const tc_store_async *a)
{
    return a->n;
}

int tc_store_async_free_writer(const tc_store_async *a)
{
    for (int i = 0; i < a->n; i++) {
        if (!a->w[i].inflight)
            return i;
    }
    return -1;
}

/* Give writer w its offsets and wake it: called with the lock held, which it releases. */
static void tc_async_queue(tc_store_async *a, tc_async_writer *w,
                           const tc_partition_offset *offsets, const int64_t *from, size_t noffsets)
{
    w->offsets = offsets;
    w->from = from;
    w->noffsets = noffsets;
    w->inflight = 1;
    w->state = TC_ASYNC_QUEUED;
    pthread_cond_broadcast(&a->cond);
    pthread_mutex_unlock(&a->lock);
}

void tc_store_async_submit(tc_store_async *a, int w, const tc_batch *rows, const tc_dlq_batch *dlq,
                           const tc_partition_offset *offsets, const int64_t *from, size_t noffsets)
{
    tc_async_writer *wr = &a->w[w];
    int idle = 1;

    for (int i = 0; i < a->n; i++)
        idle &= !a->w[i].inflight;
    pthread_mutex_lock(&a->lock);
    if (idle) { /* nothing before it: a chain broken earlier has been dealt with */
        a->done_seq = a->next_seq - 1;
        a->chain_ok = 1;
    }
    wr->seq = a->next_seq++;
    wr->rows = rows;
    wr->dlq = dlq;
    tc_async_queue(a, wr, offsets, from, noffsets);
}

int tc_store_async_done(tc_store_async *a, int w)
{
    int done;

    pthread_mutex_lock(&a->lock);
    done = a->w[w].state != TC_ASYNC_QUEUED;
    pthread_mutex_unlock(&a->lock);
    return done;
}

int tc_store_async_await(tc_store_async *a, int w, int timeout_ms)
{
    struct timespec until;
    int done;

    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&a->lock);
    while (a->w[w].state == TC_ASYNC_QUEUED &&
           pthread_cond_timedwait(&a->cond, &a->lock, &until) == 0)
        ;
    done = a->w[w].state != TC_ASYNC_QUEUED;
    pthread_mutex_unlock(&a->lock);
    return done;
}

int tc_store_async_rollups_await(tc_store_async *a, int timeout_ms)
{
    return tc_store_async_await(a, a->n, timeout_ms);
}

tc_err tc_store_async_wait(tc_store_async *a, int w, int *cascaded, char *errstr,
                           size_t errstr_size)
{
    tc_async_writer *wr = &a->w[w];
    tc_err err = TC_OK;

    *cascaded = 0;
    pthread_mutex_lock(&a->lock);
    while (wr->state == TC_ASYNC_QUEUED)
        pthread_cond_wait(&a->cond, &a->lock);
    if (wr->state == TC_ASYNC_DONE) {
        err = wr->err;
        *cascaded = err != TC_OK && wr->cascaded;
        if (err != TC_OK && errstr_size)
            snprintf(errstr, errstr_size, "%s", wr->errstr);
        wr->state = TC_ASYNC_IDLE;
    }
    wr->inflight = 0;
    pthread_mutex_unlock(&a->lock);
    return err;
}

tc_store *tc_store_async_store(tc_store_async *a, int w)
{
    return a->w[w].store;
}

void tc_store_async_flush_rollups(tc_store_async *a, tc_store *from,
                                  const tc_partition_offset *marks, const int64_t *marks_from,
                                  size_t nmarks)
{
    tc_async_writer *w = TC_ROLLUPS(a);

    if (from)
        tc_store_rollups_hand_over(from, w->store);
    pthread_mutex_lock(&a->lock);
    tc_async_queue(a, w, marks, marks_from, nmarks);
}

int tc_store_async_rollups_busy(const tc_store_async *a)
{
    return a->w[a->n].inflight;
}

int tc_store_async_rollups_done(tc_store_async *a)
{
    return tc_store_async_done(a, a->n);
}

tc_err tc_store_async_rollups_wait(tc_store_async *a, char *errstr, size_t errstr_size)
{
    int cascaded;

    return tc_store_async_wait(a, a->n, &cascaded, errstr, errstr_size);
}

tc_store *tc_store_async_rollups_store(tc_store_async *a)
{
    return TC_ROLLUPS(a)->store;
}
