/*
 * c11_threads.c -- C11 threads on top of POSIX threads, preloaded under ThreadSanitizer only.
 *
 * librdkafka starts its threads with C11 thrd_create and locks with mtx_* and cnd_*. glibc
 * implements those by calling its internal pthread functions directly, which ThreadSanitizer's
 * runtime (GCC 12's and Clang 14's on Debian 12) does not intercept: a thread it never saw start
 * crashes inside the runtime at its first allocation, and locks it never saw would make every
 * hand-over through librdkafka's queues look like a race. Preloaded (LD_PRELOAD, make test-tsan),
 * this library defines the C11 functions librdkafka uses with the pthread ones, which the runtime
 * does intercept. glibc's thrd_t, mtx_t and cnd_t are pthread_t, pthread_mutex_t and
 * pthread_cond_t underneath, so the objects need no translation. Never linked into Thermocline.
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <threads.h>
#include <time.h>

/* The prototypes are threads.h's; these definitions take precedence over glibc's when preloaded. */

typedef struct tc_tsan_start {
    thrd_start_t func;
    void *arg;
} tc_tsan_start;

static void *tc_tsan_trampoline(void *p)
{
    tc_tsan_start s = *(tc_tsan_start *)p;

    free(p);
    return (void *)(intptr_t)s.func(s.arg);
}

static int tc_tsan_result(int rc)
{
    return rc == 0           ? thrd_success
           : rc == ENOMEM    ? thrd_nomem
           : rc == ETIMEDOUT ? thrd_timedout
           : rc == EBUSY     ? thrd_busy
                             : thrd_error;
}

int thrd_create(thrd_t *thr, thrd_start_t func, void *arg)
{
    tc_tsan_start *s = malloc(sizeof(*s));
    int rc;

    if (!s)
        return thrd_nomem;
    s->func = func;
    s->arg = arg;
    rc = pthread_create(thr, NULL, tc_tsan_trampoline, s);
    if (rc != 0)
        free(s);
    return tc_tsan_result(rc);
}

int thrd_join(thrd_t thr, int *res)
{
    void *r = NULL;
    int rc = pthread_join(thr, &r);

    if (rc == 0 && res)
        *res = (int)(intptr_t)r;
    return tc_tsan_result(rc);
}

int thrd_detach(thrd_t thr)
{
    return tc_tsan_result(pthread_detach(thr));
}

int mtx_init(mtx_t *m, int type)
{
    pthread_mutexattr_t a;
    int rc;

    pthread_mutexattr_init(&a);
    if (type & mtx_recursive)
        pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
    rc = pthread_mutex_init((pthread_mutex_t *)m, &a);
    pthread_mutexattr_destroy(&a);
    return tc_tsan_result(rc);
}

int mtx_lock(mtx_t *m)
{
    return tc_tsan_result(pthread_mutex_lock((pthread_mutex_t *)m));
}

int mtx_trylock(mtx_t *m)
{
    return tc_tsan_result(pthread_mutex_trylock((pthread_mutex_t *)m));
}

int mtx_timedlock(mtx_t *restrict m, const struct timespec *restrict ts)
{
    return tc_tsan_result(pthread_mutex_timedlock((pthread_mutex_t *)m, ts));
}

int mtx_unlock(mtx_t *m)
{
    return tc_tsan_result(pthread_mutex_unlock((pthread_mutex_t *)m));
}

void mtx_destroy(mtx_t *m)
{
    pthread_mutex_destroy((pthread_mutex_t *)m);
}

int cnd_init(cnd_t *c)
{
    return tc_tsan_result(pthread_cond_init((pthread_cond_t *)c, NULL));
}

int cnd_signal(cnd_t *c)
{
    return tc_tsan_result(pthread_cond_signal((pthread_cond_t *)c));
}

int cnd_broadcast(cnd_t *c)
{
    return tc_tsan_result(pthread_cond_broadcast((pthread_cond_t *)c));
}

int cnd_wait(cnd_t *c, mtx_t *m)
{
    return tc_tsan_result(pthread_cond_wait((pthread_cond_t *)c, (pthread_mutex_t *)m));
}

int cnd_timedwait(cnd_t *restrict c, mtx_t *restrict m, const struct timespec *restrict ts)
{
    return tc_tsan_result(pthread_cond_timedwait((pthread_cond_t *)c, (pthread_mutex_t *)m, ts));
}

void cnd_destroy(cnd_t *c)
{
    pthread_cond_destroy((pthread_cond_t *)c);
}
