/*
 * test_sink_store.c -- the store as the pipeline's primary sink (store/sink_store.h) through a fake
 * store, without PostgreSQL: the fencing chain of batches in flight on several writers, the marks
 * (durable) moving only with a commit, a new chain once nothing is in flight, a failed batch and
 * the ones cascaded after it written again with the `from` of their submit, a replay writing
 * unfenced, and two members on one partition: the one that read the marks first and writes second
 * is fenced, the stored offset stays the other's.
 *
 * The seam is the linker, as in test_store_async.c: this file defines the functions of
 * store/store.h that sink_store.c and async.c call (and tc_sink_parse_list, so that the table of
 * every sink is not linked in), so the archive's store.o is never linked. The fake keeps one
 * ingest_offsets table, shared by every store: a write moves a partition's offset only from the
 * `from` it is given, as store.c's conditional update does, and fails as fenced otherwise.
 * Nothing waits on time: a batch's outcome is collected with the pool's blocking wait.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "process/sink.h"
#include "store/sink_store.h"
#include "store/store.h"

/* Partitions of the fake table, and writes it records. */
#define PARTS   4
#define WRITES  32
#define ADV_MAX 4
#define NO_ROW  (-2) /* the fake table has no row of the partition (-1 is a stored "nothing") */

struct tc_store {
    int id;
};

/* One write as the fake saw it. */
typedef struct seen {
    int64_t first;   /* the batch's name: offsets[0].next_offset */
    int fenced_null; /* from was NULL */
    int64_t from[ADV_MAX];
    size_t n;
} seen;

static struct {
    pthread_mutex_t lock;
    int64_t table[PARTS]; /* ingest_offsets: the stored next offset per partition */
    seen writes[WRITES];
    size_t nwrites;
    int64_t fail_first; /* a batch of this name fails once, retriably, before its turn */
} fk = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void fake_reset(void)
{
    pthread_mutex_lock(&fk.lock);
    for (int p = 0; p < PARTS; p++)
        fk.table[p] = NO_ROW;
    fk.nwrites = 0;
    fk.fail_first = 0;
    pthread_mutex_unlock(&fk.lock);
}

/* The transaction's end: the offsets move from `from` or the whole write is fenced. */
static tc_err fake_apply(const tc_partition_offset *offsets, const int64_t *from, size_t n,
                         char *errstr, size_t errstr_size)
{
    tc_err err = TC_OK;

    pthread_mutex_lock(&fk.lock);
    if (fk.nwrites < WRITES) {
        seen *s = &fk.writes[fk.nwrites++];
        s->first = offsets[0].next_offset;
        s->fenced_null = from == NULL;
        s->n = n;
        for (size_t i = 0; from && i < n && i < ADV_MAX; i++)
            s->from[i] = from[i];
    }
    for (size_t i = 0; from && i < n; i++) {
        int64_t stored = fk.table[offsets[i].partition];
        if ((stored == NO_ROW ? -1 : stored) != from[i])
            err = tc_err_set(TC_ERR_FENCED, errstr, errstr_size,
                             "partition %d: stored %lld, not %lld", offsets[i].partition,
                             (long long)stored, (long long)from[i]);
    }
    for (size_t i = 0; err == TC_OK && i < n; i++)
        fk.table[offsets[i].partition] = offsets[i].next_offset;
    pthread_mutex_unlock(&fk.lock);
    return err;
}

/* Whether the batch of this name is scripted to fail (once). */
static int fake_fails(int64_t first)
{
    int fails;

    pthread_mutex_lock(&fk.lock);
    fails = fk.fail_first == first;
    if (fails)
        fk.fail_first = 0;
    pthread_mutex_unlock(&fk.lock);
    return fails;
}

/* ---- the fake store: the functions of store/store.h that sink_store.c and async.c call ---- */

tc_store *tc_store_new(const tc_store_options *opt, char *errstr, size_t errstr_size)
{
    static int ids;
    tc_store *s = calloc(1, sizeof(*s));

    (void)opt, (void)errstr, (void)errstr_size;
    if (s)
        s->id = ids++;
    return s;
}

void tc_store_destroy(tc_store *s)
{
    free(s);
}

tc_err tc_store_connect(tc_store *s, char *errstr, size_t errstr_size)
{
    (void)s, (void)errstr, (void)errstr_size;
    return TC_OK;
}

tc_err tc_store_ensure_partitions_around(tc_store *s, int64_t now_us, int days_back, char *errstr,
                                         size_t errstr_size)
{
    (void)s, (void)now_us, (void)days_back, (void)errstr, (void)errstr_size;
    return TC_OK;
}

tc_err tc_store_load_offsets(tc_store *s, const int32_t *partitions, size_t n, int64_t *next,
                             char *errstr, size_t errstr_size)
{
    (void)s, (void)errstr, (void)errstr_size;
    pthread_mutex_lock(&fk.lock);
    for (size_t i = 0; i < n; i++)
        next[i] = fk.table[partitions[i]] == NO_ROW ? -1 : fk.table[partitions[i]];
    pthread_mutex_unlock(&fk.lock);
    return TC_OK;
}

tc_err tc_store_write(tc_store *s, const tc_batch *b, const tc_dlq_batch *dlq,
                      const tc_partition_offset *offsets, const int64_t *from, size_t noffsets,
                      char *errstr, size_t errstr_size)
{
    (void)s, (void)b, (void)dlq;
    if (fake_fails(offsets[0].next_offset))
        return tc_err_set(TC_ERR_DB_CONN, errstr, errstr_size, "fake: connection lost");
    return fake_apply(offsets, from, noffsets, errstr, errstr_size);
}

tc_err tc_store_write_ordered(tc_store *s, const tc_batch *b, const tc_dlq_batch *dlq,
                              const tc_partition_offset *offsets, const int64_t *from,
                              size_t noffsets, int (*turn)(void *opaque), void *opaque,
                              char *errstr, size_t errstr_size)
{
    int ok;

    (void)s, (void)b, (void)dlq;
    if (fake_fails(offsets[0].next_offset)) /* before its turn: it still ends in its place */
        return tc_err_set(TC_ERR_DB_CONN, errstr, errstr_size, "fake: connection lost");
    ok = turn ? turn(opaque) : 1;
    if (!ok)
        return tc_err_set(TC_ERR_DB_CONN, errstr, errstr_size,
                          "not committed: a batch before it was not written");
    return fake_apply(offsets, from, noffsets, errstr, errstr_size);
}

int tc_store_refused_rows(const tc_store *s)
{
    (void)s;
    return 0;
}

tc_err tc_store_probe_rows(tc_store *s, const tc_batch *b, char *errstr, size_t errstr_size)
{
    (void)s, (void)b, (void)errstr, (void)errstr_size;
    return TC_OK;
}

tc_err tc_store_dead_offsets(tc_store *s, int32_t partition, int64_t from, int64_t to, int64_t *out,
                             size_t cap, size_t *n, char *errstr, size_t errstr_size)
{
    (void)s, (void)partition, (void)from, (void)to, (void)out, (void)cap;
    (void)errstr, (void)errstr_size;
    *n = 0;
    return TC_OK;
}

tc_err tc_store_rollups_flush(tc_store *s, const tc_partition_offset *marks, const int64_t *from,
                              size_t nmarks, char *errstr, size_t errstr_size)
{
    (void)s, (void)marks, (void)from, (void)nmarks, (void)errstr, (void)errstr_size;
    return TC_OK;
}

void tc_store_rollups_hand_over(tc_store *from, tc_store *to)
{
    (void)from, (void)to;
}

tc_err tc_sink_parse_list(const char *list, char (*names)[TC_SINK_NAME_MAX], size_t *n,
                          char *errstr, size_t errstr_size)
{
    (void)list, (void)errstr, (void)errstr_size;
    snprintf(names[0], TC_SINK_NAME_MAX, "store");
    *n = 1;
    return TC_OK;
}

/* ---- the test's side: the pipeline's calls ---- */

static char sinks_list[] = "store", topic[] = "t";

typedef struct member {
    tc_config cfg;
    tc_sink sink;
    const tc_sink_primary_ops *po;
    tc_batch *rows;
    tc_dlq_batch *dlq;
    tc_partition_offset adv[WRITES][ADV_MAX]; /* the caller's until collect */
} member;

static void member_new(member *m, int writers)
{
    char errstr[TC_ERRSTR_MAX];

    memset(m, 0, sizeof(*m));
    m->cfg.pg_writers = writers;
    m->cfg.batch_size = 16;
    m->cfg.batch_size_max = 16;
    m->cfg.pipeline_sinks = sinks_list;
    m->cfg.kafka_topic = topic;
    assert_int_equal(tc_sink_store_new(&m->cfg, &m->sink, errstr, sizeof(errstr)), TC_OK);
    assert_non_null(m->sink.ops);
    assert_true(m->sink.ops->flags & TC_SINK_PRIMARY);
    m->po = m->sink.ops->primary;
    assert_non_null(m->po);
    m->rows = tc_batch_new(16, 0);
    m->dlq = tc_dlq_batch_new(4, 4096);
    assert_non_null(m->rows);
    assert_non_null(m->dlq);
}

static void member_free(member *m)
{
    m->sink.ops->close(m->sink.ctx);
    tc_batch_destroy(m->rows);
    tc_dlq_batch_destroy(m->dlq);
}

static void member_open(member *m, const int32_t *parts, size_t n)
{
    char errstr[TC_ERRSTR_MAX];
    int64_t next[PARTS];

    assert_int_equal(m->sink.ops->open(m->sink.ctx, parts, n, next, errstr, sizeof(errstr)), TC_OK);
}

/* Submit a batch (no rows: the marks are what is tested) advancing partitions to offsets; returns
 * its place. */
static int submit(member *m, int slot, const int32_t *parts, const int64_t *next, size_t n)
{
    tc_sink_rows rows = {.batch = m->rows, .dlq = m->dlq, .nadvance = n};
    int w = m->po->free_place(m->sink.ctx);

    assert_true(w >= 0);
    for (size_t i = 0; i < n; i++)
        m->adv[slot][i] = (tc_partition_offset){parts[i], next[i]};
    rows.advance = m->adv[slot];
    m->po->submit(m->sink.ctx, w, &rows);
    return w;
}

static tc_err collect(member *m, int w, int *cascaded)
{
    char errstr[TC_ERRSTR_MAX];

    return m->po->collect(m->sink.ctx, w, cascaded, errstr, sizeof(errstr));
}

static int64_t durable(member *m, int32_t partition)
{
    return m->sink.ops->durable(m->sink.ctx, partition);
}

static const seen *write_of(int64_t first, size_t nth)
{
    for (size_t i = 0; i < fk.nwrites; i++) {
        if (fk.writes[i].first == first && nth-- == 0)
            return &fk.writes[i];
    }
    fail_msg("no write %zu of batch %lld", nth, (long long)first);
    return NULL;
}

/* Batches in flight on two writers: each moves from where the one before it takes the partition;
 * the marks move with the commits only. */
static void test_chain_of_batches_in_flight(void **state)
{
    member m;
    const int32_t p01[] = {0, 1}, p1[] = {1};
    int cascaded, a, b;

    (void)state;
    fake_reset();
    fk.table[1] = 10;
    member_new(&m, 2);
    member_open(&m, p01, 2);
    assert_int_equal(durable(&m, 0), -1);
    assert_int_equal(durable(&m, 1), 10);
    a = submit(&m, 0, p01, (const int64_t[]){5, 20}, 2);
    b = submit(&m, 1, p1, (const int64_t[]){30}, 1);
    assert_int_equal(durable(&m, 1), 10); /* nothing committed as far as the pipeline knows */
    assert_int_equal(collect(&m, a, &cascaded), TC_OK);
    assert_int_equal(durable(&m, 0), 5);
    assert_int_equal(durable(&m, 1), 20);
    assert_int_equal(collect(&m, b, &cascaded), TC_OK);
    assert_int_equal(durable(&m, 1), 30);
    assert_int_equal(write_of(5, 0)->from[0], -1);
    assert_int_equal(write_of(5, 0)->from[1], 10);
    assert_int_equal(write_of(30, 0)->from[0], 20); /* the batch before it, not the stored 10 */
    assert_int_equal(fk.table[1], 30);
    member_free(&m);
}

/* A batch that failed and was not written again: the next chain starts from what is stored, not
 * from what the failed batch would have moved it to. */
static void test_new_chain_after_a_failure(void **state)
{
    member m;
    const int32_t p1[] = {1};
    int cascaded, a;

    (void)state;
    fake_reset();
    fk.table[1] = 40;
    member_new(&m, 2);
    member_open(&m, p1, 1);
    fk.fail_first = 50;
    a = submit(&m, 0, p1, (const int64_t[]){50}, 1);
    assert_int_not_equal(collect(&m, a, &cascaded), TC_OK);
    assert_int_equal(durable(&m, 1), 40);
    a = submit(&m, 1, p1, (const int64_t[]){60}, 1);
    assert_int_equal(collect(&m, a, &cascaded), TC_OK);
    assert_int_equal(write_of(60, 0)->from[0], 40);
    assert_int_equal(durable(&m, 1), 60);
    member_free(&m);
}

/* The first batch fails, the one after it rolls back as cascaded; both are written again in order
 * with the `from` of their submit, and end where they would have. */
static void test_failed_and_cascaded_written_again(void **state)
{
    member m;
    const int32_t p0[] = {0};
    char errstr[TC_ERRSTR_MAX];
    tc_sink_rows rows = {.nadvance = 1};
    int cascaded, a, b;

    (void)state;
    fake_reset();
    fk.table[0] = 3;
    member_new(&m, 2);
    member_open(&m, p0, 1);
    fk.fail_first = 7;
    a = submit(&m, 0, p0, (const int64_t[]){7}, 1);
    b = submit(&m, 1, p0, (const int64_t[]){9}, 1);
    assert_int_equal(collect(&m, a, &cascaded), TC_ERR_DB_CONN);
    assert_false(cascaded);
    rows.batch = m.rows;
    rows.dlq = m.dlq;
    rows.advance = m.adv[0];
    assert_int_equal(m.po->rewrite(m.sink.ctx, a, &rows, errstr, sizeof(errstr)), TC_OK);
    assert_int_equal(durable(&m, 0), 7);
    assert_int_not_equal(collect(&m, b, &cascaded), TC_OK);
    assert_true(cascaded);
    rows.advance = m.adv[1];
    assert_int_equal(m.po->rewrite(m.sink.ctx, b, &rows, errstr, sizeof(errstr)), TC_OK);
    assert_int_equal(durable(&m, 0), 9);
    assert_int_equal(write_of(7, 0)->from[0], 3);
    assert_int_equal(write_of(9, 0)->from[0], 7);
    assert_int_equal(fk.table[0], 9);
    member_free(&m);
}

/* Two members read partition 0 at 5; the second to write is fenced and changes nothing: its
 * durable mark stays where it read it, the table where the other member put it. */
static void test_second_writer_is_fenced(void **state)
{
    member a, b;
    const int32_t p0[] = {0};
    int cascaded, w;

    (void)state;
    fake_reset();
    fk.table[0] = 5;
    member_new(&a, 1);
    member_new(&b, 1);
    member_open(&a, p0, 1); /* a stalls here; b takes the partition over */
    member_open(&b, p0, 1);
    w = submit(&b, 0, p0, (const int64_t[]){8}, 1);
    assert_int_equal(collect(&b, w, &cascaded), TC_OK);
    w = submit(&a, 0, p0, (const int64_t[]){7}, 1);
    assert_int_equal(collect(&a, w, &cascaded), TC_ERR_FENCED);
    assert_int_equal(durable(&a, 0), 5);
    assert_int_equal(durable(&b, 0), 8);
    assert_int_equal(fk.table[0], 8);
    /* Recovering reads the other member's mark. */
    {
        char errstr[TC_ERRSTR_MAX];
        int64_t next;
        assert_int_equal(a.sink.ops->recover(a.sink.ctx, p0, 1, &next, errstr, sizeof(errstr)),
                         TC_OK);
        assert_int_equal(next, 8);
        assert_int_equal(durable(&a, 0), 8);
    }
    member_free(&a);
    member_free(&b);
}

/* A replay writes its marks unconditionally (its windows say what it owns). */
static void test_replay_unfenced(void **state)
{
    member m;
    const int32_t p2[] = {2};
    int cascaded, w;

    (void)state;
    fake_reset();
    fk.table[2] = 100;
    member_new(&m, 1);
    m.po->unfenced(m.sink.ctx);
    member_open(&m, p2, 1);
    w = submit(&m, 0, p2, (const int64_t[]){120}, 1);
    assert_int_equal(collect(&m, w, &cascaded), TC_OK);
    assert_true(write_of(120, 0)->fenced_null);
    member_free(&m);
}

/* The table of sinks makes the store the primary, never a sink of the set. */
static void test_store_ops_shape(void **state)
{
    member m;

    (void)state;
    fake_reset();
    member_new(&m, 3);
    assert_string_equal(m.sink.ops->name, "store");
    assert_true(m.sink.ops->flags & TC_SINK_KEEPS_ROWS);
    assert_non_null(m.po->start);
    assert_int_equal(m.po->free_place(m.sink.ctx), 0);
    member_free(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chain_of_batches_in_flight),
        cmocka_unit_test(test_new_chain_after_a_failure),
        cmocka_unit_test(test_failed_and_cascaded_written_again),
        cmocka_unit_test(test_second_writer_is_fenced),
        cmocka_unit_test(test_replay_unfenced),
        cmocka_unit_test(test_store_ops_shape),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
