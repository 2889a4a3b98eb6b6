/*
 * pipeline.c -- the ingest loop; see pipeline.h for the design.
 */
#include "process/pipeline.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/batch.h"
#include "core/deadletter.h"
#include "core/json.h"
#include "core/log.h"
#include "core/timeutil.h"
#include "ingest/dlq_mirror.h"
#include "ingest/kafka.h"
#include "process/dedupe.h"
#include "process/observe.h"
#include "process/sinkset.h"
#include "process/validate.h"
#include "schema/avro_reading.h"
#include "schema/catalog.h"
#include "schema/json_reading.h"
#include "schema/shape.h"
#include "store/async.h"
#include "store/store.h"

/* Dead letters per batch before it is written regardless of its row count: a burst of garbage must
 * not pile up in memory. */
#define TC_DLQ_PER_BATCH 10000
/* A dead letter keeps at most this much of its payload; the detail says when it was cut. Large
 * enough for any message a broker accepts by default (1 MiB) and then some. */
#define TC_DLQ_PAYLOAD_MAX (16 * 1024 * 1024)
/* Dead letters logged per second at most (each with its input's fields); the rest are counted in
 * the next line. The dead-letter table has them all: the log only points at the kind of trouble. */
#define TC_DLQ_LOG_PER_S 10
/* Progress is logged this often. */
#define TC_PROGRESS_INTERVAL_US (2 * 1000000LL)
/* Back-off between attempts to write a batch the store could not take. */
#define TC_RETRY_MIN_MS 100
#define TC_RETRY_MAX_MS 10000
/* How long the broker may take to tell the ends of the topic's partitions (idle check). */
#define TC_ENDS_TIMEOUT_MS 5000
/* ...and how often the idle check asks it. */
#define TC_IDLE_CHECK_INTERVAL_US 1000000LL
/* An Avro writer schema the catalog does not know forces a refresh at most this often. */
#define TC_CATALOG_FORCE_US 1000000LL
/* Registry subjects: "<topic>-value" with Kafka's 249-byte topic names, or a configured one. */
#define TC_PIPELINE_SUBJECT_MAX 1024
/* lock_timeout of the writers' sessions when there are several (async.h): long enough for any
 * lock a batch's transaction waits for in normal operation, short enough to be a hiccup. */
#define TC_WRITER_LOCK_TIMEOUT_MS 5000
/* While a batch is in flight the loop polls Kafka at least this often (ms), to settle the batch
 * soon after the writer is done with it: the latency of a quiet stream depends on it. */
#define TC_FLIGHT_POLL_MS 5

/* A batch past pipeline.batch_size looks for a free writer every this many rows: settling takes
 * the writers' lock, which a check per reading would take ten thousand times a batch. */
#define TC_GROW_CHECK_ROWS 64
/* Partitions tracked per batch: a message of one more partition goes into the next batch (see
 * tc_pipeline_room_for; pipeline.partitions_per_batch may lower it). */
#define TC_PENDING_MAX 4096
/* Partitions a pipeline tracks (ids 0 .. TC_TRACKED_MAX - 1; kafka.partitions allows 10,000): an
 * assignment of a partition past them is refused, loudly, rather than half tracked. */
#define TC_TRACKED_MAX 16384

/* A sink that has waited this long for a store serves the consumer meanwhile, in slices of this
 * much (tc_pipeline_serve): the group evicts a member that does not poll for
 * max.poll.interval.ms, and an evicted member's batch would be written after its partitions'
 * next owner has read them. */
#define TC_SERVE_AFTER_MS 1000
#define TC_SERVE_SLICE_MS 100
/* Messages one poll while serving takes (they are read again after the wait). */
#define TC_SERVE_FETCH_MAX 64

/* Where each sink stands on one partition: the next offset it does not hold (-1: nothing yet). A
 * message goes to a sink only at or past that sink's mark, so after a crash the sink that is behind
 * catches up while the other one skips what it already has. */
typedef struct tc_marks {
    int64_t store_next;
    int assigned;
    /* The rollups (and latest state): rows below rollup_next are in the pending aggregates or
     * written; rows below rollup_durable are written (tc_store_rollups_flush). */
    int64_t rollup_next;
    int64_t rollup_durable;
    /* Fencing (store.h): the store's next offset once the batches handed to writers are
     * committed, valid while sent_gen is the pipeline's flight_gen. The next batch's offsets move
     * from there. */
    int64_t store_sent;
    uint32_t sent_gen;
    int64_t rewind; /* the first offset a poll handed out while serving: read again (or none) */
} tc_marks;

/* tc_marks.rewind when there is nothing to read again. */
#define TC_NO_REWIND (-2)

/* Sinks a row is meant for. */
#define TC_SINK_STORE  1u
#define TC_SINK_ROLLUP 4u

/* Rows of one batch PostgreSQL may refuse before the run stops: a handful of bad values is data,
 * more is the schema or a constraint every row breaks (see tc_pipeline_isolate_refused). */
#define TC_REFUSED_MAX 64

/* Pending aggregate groups (per rollup table) that force a rollup flush before the interval is
 * up. While the rollups' writer is busy the aggregates grow, and the larger the set it gets next,
 * the fewer upserts per reading: a device-hour is written once per flush, whatever the readings
 * it got. A backlog read at 150K readings/s from 10,000 devices at a 10 s cadence makes some 30,000
 * one-minute groups a second; at 20,000 the rollups took half of PostgreSQL's CPU in the end-to-end
 * benchmark, at 40,000 two fifths (the one-hour and latest-state rows are written half as often).
 * A bucket group is 224 bytes, a latest-state one 336; with the arrays' doubling and two sets (the
 * one aggregating, the one being written) this many stay under 50 MB. */
#define TC_ROLLUP_GROUPS_MAX 40000

/*
 * One batch and what goes with it: its rows, its dead letters, and how far it takes each sink on
 * each partition. There are two: the pipeline fills one while the writer has the other in flight
 * (tc_pipeline_dispatch), and settles the one in flight -- the store's marks, the rollups, the
 * other sinks, Kafka -- before it hands the writer the next (tc_pipeline_settle), so the sinks take
 * the batches in the order they were read.
 */
typedef struct tc_slot {
    tc_batch *batch;
    tc_batch *filtered; /* the store's rows of a batch with rows only other sinks want (rare) */
    uint8_t *sinks;     /* per row of batch: TC_SINK_* */
    tc_dlq_batch *dlq;
    tc_partition_offset pending[TC_PENDING_MAX]; /* store: next offset per partition in batch */
    int64_t pending_from[TC_PENDING_MAX];        /* ...and the stored one it moves from (fencing) */
    size_t npending;
    tc_partition_offset rollup_pending[TC_PENDING_MAX]; /* rollups: the same for the rollups */
    size_t nrollup_pending;
    size_t store_rows;     /* rows of the batch meant for the store */
    const tc_batch *rows;  /* what the writer was given: batch, or filtered */
    int writer;            /* the writer it is in flight on, -1 when none */
    tc_sinkset_batch *gen; /* the advances of the sinks behind process/sink.h */
} tc_slot;

struct tc_pipeline {
    const tc_config *cfg;
    tc_consumer *consumer;
    tc_store *store;
    tc_sinkset *sinks;         /* the sinks behind process/sink.h: the lake, testfail, ... */
    tc_observe *obs;           /* NULL when http.listen is empty */
    tc_dlq_mirror *dlq_mirror; /* NULL when kafka.dlq_mirror is off */
    tc_log_limit dlq_log;      /* the dead letters' log lines (TC_DLQ_LOG_PER_S) */
    tc_schema_cache *schemas;  /* NULL when registry.url is empty */
    tc_catalog *catalog;       /* the subject's versions; NULL when registry.url is empty */
    int64_t catalog_next_us;   /* when to ask the registry for new versions again */
    int64_t catalog_forced_us; /* last refresh forced by an unknown writer schema id */
    int store_ok;              /* the store's last write (or connection) succeeded */
    int64_t last_commit_us;
    char not_ready[TC_OBSERVE_REASON_MAX];
    size_t dyn_logged;       /* dynamic columns announced in the log so far */
    int closing;             /* being destroyed: take no new partitions */
    tc_windows *windows;     /* a replay's ranges (tc_pipeline_set_windows); NULL in a normal run */
    tc_store_async *writers; /* write the batches in flight, on connections of their own */
    tc_slot *slots;          /* one per writer, and one more */
    size_t nslots;
    tc_slot *cur;     /* the batch being filled */
    tc_slot **flight; /* the batches the writers have, oldest first (a ring of nslots) */
    size_t flight_head, nflight;
    int chain_broken;     /* a batch in flight failed: settle all before handing out another */
    int backlog;          /* the last poll filled its array: more messages are waiting already */
    tc_store *wstore;     /* the store of the writer whose batch is being settled */
    uint8_t *rollup_mask; /* per row: 1 if for the rollups (tc_store_rollups_add's mask) */
    tc_batch *probe;      /* rows of a refused batch, probed to find the refused ones */
    tc_dedupe *dedupe;    /* NULL when dedupe.window_s is 0 */
    /* Per partition (indexed like marks): the dedupe lookback's dead-letter offsets, which it
     * skips. Freed when the lookback is over (tc_pipeline_remember past them). */
    struct tc_lookback {
        int64_t *dead;
        size_t ndead;
    } * lookback;
    size_t nlookback;
    uint64_t row_fp; /* fingerprint of the row being decoded (tc_pipeline_shape) */
    int row_has_id;  /* ...made from its message_id */
    volatile sig_atomic_t *reload_flag; /* tc_pipeline_set_reload; NULL: no reloads */
    tc_config *reload_live;
    tc_pipeline_config_fn reload_load;
    void *reload_opaque;
    struct {
        size_t row; /* index in the store's rows of the batch */
        char why[TC_REJECT_DETAIL_MAX];
    } refused[TC_REFUSED_MAX];
    size_t nrefused;
    int64_t rollups_flushed_us; /* when the pending aggregates were last written */
    /* The rollups' writer's flush (store/async.h): its marks, and whether it failed and holds
     * the aggregates for another try. */
    tc_partition_offset rollup_flight[TC_TRACKED_MAX];
    int64_t rollup_flight_from[TC_TRACKED_MAX]; /* the durable marks they move from (fencing) */
    tc_partition_offset rollup_sync[TC_TRACKED_MAX]; /* tc_pipeline_rollups_flush's own marks */
    int64_t rollup_sync_from[TC_TRACKED_MAX];
    tc_partition_offset kafka_offs[TC_TRACKED_MAX]; /* tc_pipeline_commit_kafka's */
    size_t nrollup_flight;
    int rollup_retry;
    int check_ends;  /* a new assignment: compare the marks with the partitions' ends */
    tc_marks *marks; /* indexed by partition */
    size_t nmarks;
    int64_t batch_started_us; /* when the oldest message of the batch arrived, 0 = empty */
    int64_t now_us;
    volatile sig_atomic_t *stop;
    tc_err fatal; /* a fatal error raised inside a callback */
    char fatal_str[TC_ERRSTR_MAX];
    /* A write was fenced (another member moved a partition on) or partitions were revoked while
     * a sink was waiting: what this member holds is dropped and tc_pipeline_resume reads the
     * sinks' marks of its partitions again before anything more is processed. */
    int fenced;
    int serving;         /* in tc_pipeline_serve: a revocation only sets fenced */
    int in_rebalance;    /* in a rebalance callback, which must not poll */
    int paused;          /* tc_pipeline_serve paused the partitions: the loop resumes them */
    int rewinds;         /* some marks have a rewind */
    uint32_t flight_gen; /* bumped when a batch goes to an idle pool (tc_marks.store_sent) */
    tc_pipeline_stats stats;
    /* The built-in sinks' counters for /metrics (the store's are in stats). */
    uint64_t rollup_rows, rollup_failures;
    int rollups_on; /* rollups named in pipeline.sinks and postgres.rollups on */
    tc_message msgs[TC_CONSUMER_FETCH_MAX];
    tc_message serve_msgs[TC_SERVE_FETCH_MAX]; /* what a poll while serving hands out anyway */
};

static void tc_pipeline_publish(tc_pipeline *p);
static int tc_pipeline_backoff(tc_pipeline *p, long *backoff_ms);
static tc_err tc_pipeline_rollups_flush(tc_pipeline *p);
static void tc_pipeline_rollups_discard(tc_pipeline *p);

static tc_marks *tc_pipeline_marks(tc_pipeline *p, int32_t partition)
{
    tc_marks *m;
    size_t n;

    if (partition < 0 || partition >= TC_TRACKED_MAX)
        return NULL;
    if ((size_t)partition >= p->nmarks) {
        n = (size_t)partition + 1 > p->nmarks * 2 ? (size_t)partition + 1 : p->nmarks * 2;
        m = realloc(p->marks, n * sizeof(*m));
        if (!m)
            return NULL;
        for (size_t i = p->nmarks; i < n; i++)
            m[i] = (tc_marks){.store_next = -1,
                              .rollup_next = -1,
                              .rollup_durable = -1,
                              .store_sent = -1,
                              .rewind = TC_NO_REWIND};
        p->marks = m;
        p->nmarks = n;
    }
    return &p->marks[partition];
}

/*
 * Keep the group membership while a sink waits (a writer held up by a lock, a back-off): poll
 * Kafka for up to ms with the partitions paused, so that max.poll.interval.ms does not run out, and
 * serve the rebalances that come meanwhile (a revocation then only sets p->fenced; see
 * tc_pipeline_on_revoke). A message a poll hands out all the same (fetched before the pause, or of
 * a partition assigned since) is not processed now: its partition is read again from it when the
 * loop resumes the partitions (tc_pipeline_unpause). Inside a rebalance callback, which must not
 * poll, and before the run, it only sleeps.
 */
static void tc_pipeline_serve(tc_pipeline *p, int ms)
{
    char errstr[TC_ERRSTR_MAX];
    size_t n;

    if (p->in_rebalance || p->serving || !p->stop) {
        tc_time_sleep_ms(ms);
        return;
    }
    p->serving = 1;
    if (!p->paused) {
        if (tc_consumer_pause(p->consumer, 1, errstr, sizeof(errstr)) != TC_OK)
            tc_log_warn("pipeline", "%s", errstr);
        p->paused = 1;
    }
    n = tc_consumer_poll(p->consumer, ms, p->serve_msgs, TC_SERVE_FETCH_MAX);
    for (size_t i = 0; i < n; i++) {
        tc_marks *m = tc_pipeline_marks(p, p->serve_msgs[i].partition);
        if (m && (m->rewind == TC_NO_REWIND || p->serve_msgs[i].offset < m->rewind))
            m->rewind = p->serve_msgs[i].offset;
        p->rewinds = 1;
        tc_consumer_release(p->consumer, &p->serve_msgs[i]);
    }
    p->serving = 0;
}

/* After a wait that served the consumer: resume the partitions, and read again what its polls
 * handed out. */
static void tc_pipeline_unpause(tc_pipeline *p)
{
    char errstr[TC_ERRSTR_MAX];
    tc_partition_offset one;

    if (!p->paused)
        return;
    p->paused = 0;
    if (tc_consumer_pause(p->consumer, 0, errstr, sizeof(errstr)) != TC_OK)
        tc_log_warn("pipeline", "%s", errstr);
    for (size_t i = 0; p->rewinds && i < p->nmarks; i++) {
        if (p->marks[i].rewind == TC_NO_REWIND)
            continue;
        one = (tc_partition_offset){(int32_t)i, p->marks[i].rewind};
        p->marks[i].rewind = TC_NO_REWIND;
        if (p->marks[i].assigned &&
            tc_consumer_seek(p->consumer, &one, 1, errstr, sizeof(errstr)) != TC_OK && !p->fatal) {
            p->fatal = TC_ERR_KAFKA_TRANS;
            snprintf(p->fatal_str, sizeof(p->fatal_str), "%s", errstr);
        }
    }
    p->rewinds = 0;
}

/* Wait for writer w (-1: the rollups' writer) to be done, serving the consumer after a while. */
static void tc_pipeline_await(tc_pipeline *p, int w)
{
    int waited = 0;

    while (!(w >= 0 ? tc_store_async_await(p->writers, w, TC_SERVE_SLICE_MS)
                    : tc_store_async_rollups_await(p->writers, TC_SERVE_SLICE_MS))) {
        waited += TC_SERVE_SLICE_MS;
        if (waited >= TC_SERVE_AFTER_MS)
            tc_pipeline_serve(p, 0);
    }
}

/* Sleep ms (a back-off) serving the consumer, in slices that check for a stop. 1 when a stop was
 * asked, or with fence set when the pipeline was fenced meanwhile. */
static int tc_pipeline_wait(tc_pipeline *p, long ms, int fence)
{
    for (long slept = 0; slept < ms; slept += 50) {
        if ((p->stop && *p->stop) || (fence && p->fenced))
            return 1;
        tc_pipeline_serve(p, 50);
    }
    return 0;
}

/* A durable write found a partition moved on by another member (store.h, sink.h): log it and drop
 * what this member holds; tc_pipeline_resume reads the sinks' marks again. */
static tc_err tc_pipeline_fence(tc_pipeline *p, const char *why)
{
    tc_log_warn("pipeline",
                "fenced: %s; this member drops what it holds of its partitions and resumes them "
                "from what is stored",
                why);
    p->fenced = 1;
    p->stats.fenced++;
    return TC_ERR_FENCED;
}

/* The dead letters of [from, to) of a partition, which its dedupe lookback must skip (they were
 * refused under the configuration of their time, whatever the current one says of them). When they
 * cannot be read, there is no lookback for the partition: fewer resends are recognised, none is
 * taken for a new reading. */
static tc_err tc_pipeline_lookback_prepare(tc_pipeline *p, int32_t partition, int64_t from,
                                           int64_t to)
{
    char errstr[TC_ERRSTR_MAX];
    size_t cap = (size_t)(to - from), n = 0;
    int64_t *dead;
    tc_err err;

    if ((size_t)partition >= p->nlookback) {
        size_t want = (size_t)partition + 1;
        struct tc_lookback *grown = realloc(p->lookback, want * sizeof(*grown));
        if (!grown)
            return TC_ERR_NOMEM;
        memset(grown + p->nlookback, 0, (want - p->nlookback) * sizeof(*grown));
        p->lookback = grown;
        p->nlookback = want;
    }
    dead = malloc(cap * sizeof(*dead));
    if (!dead)
        return TC_ERR_NOMEM;
    err =
        tc_store_dead_offsets(p->store, partition, from, to, dead, cap, &n, errstr, sizeof(errstr));
    if (err != TC_OK) {
        tc_log_input in = {p->cfg->kafka_topic, partition, -1, NULL, 0};
        tc_log_in(TC_LOG_WARN, "pipeline", &in, "partition %d: no dedupe lookback: %s", partition,
                  errstr);
        free(dead);
        return err;
    }
    free(p->lookback[partition].dead);
    p->lookback[partition] = (struct tc_lookback){dead, n};
    return TC_OK;
}

/* Whether the lookback of partition must skip offset (a dead letter). */
static int tc_pipeline_lookback_skips(const tc_pipeline *p, int32_t partition, int64_t offset)
{
    const struct tc_lookback *lb;
    size_t lo = 0, hi;

    if (partition < 0 || (size_t)partition >= p->nlookback)
        return 0;
    lb = &p->lookback[partition];
    hi = lb->ndead;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (lb->dead[mid] < offset)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < lb->ndead && lb->dead[lo] == offset;
}

/*
 * Where no rollup mark is stored, the rollups are where the store is: a schema written by a release
 * that kept them in each batch's transaction, or nothing stored yet (-1). That is recorded before
 * any row is given to them, so that a crash before their first flush finds a mark.
 */
static tc_err tc_pipeline_rollups_init_marks(tc_pipeline *p, const int32_t *parts, size_t n,
                                             const int64_t *store_next, int64_t *rollup_next,
                                             char *errstr, size_t errstr_size)
{
    tc_partition_offset init[TC_PENDING_MAX];
    int64_t absent[TC_PENDING_MAX];
    size_t k = 0;
    tc_err err;

    for (size_t i = 0; i < n; i++) {
        if (rollup_next[i] != TC_STORE_MARK_ABSENT)
            continue;
        rollup_next[i] = store_next[i];
        absent[k] = TC_STORE_MARK_ABSENT; /* fenced: only where still none is stored */
        init[k++] = (tc_partition_offset){parts[i], store_next[i]};
        if (k == TC_PENDING_MAX) {
            err = tc_store_save_rollup_offsets(p->store, init, absent, k, errstr, errstr_size);
            if (err != TC_OK)
                return err;
            k = 0;
        }
    }
    return k ? tc_store_save_rollup_offsets(p->store, init, absent, k, errstr, errstr_size) : TC_OK;
}

static tc_err tc_pipeline_assign(tc_pipeline *p, const int32_t *parts, size_t n, int64_t *next);

/* The sinks' marks of assigned partitions could not be read: not ready until they are. */
static void tc_pipeline_marks_unread(tc_pipeline *p, tc_err err, const char *errstr)
{
    tc_log_warn("pipeline", "%s", errstr);
    p->store_ok = 0;
    snprintf(p->not_ready, sizeof(p->not_ready),
             "waiting for the sinks' offsets of assigned partitions (%s)", tc_err_name(err));
    tc_pipeline_publish(p);
}

static tc_err tc_pipeline_on_assign(void *opaque, const int32_t *parts, size_t n, int64_t *next)
{
    tc_pipeline *p = opaque;
    tc_err err;

    if (p->closing || p->fatal || (p->stop && *p->stop))
        return TC_ERR_STOPPED;
    p->in_rebalance = 1;
    err = tc_pipeline_assign(p, parts, n, next);
    p->in_rebalance = 0;
    return err;
}

static tc_err tc_pipeline_assign(tc_pipeline *p, const int32_t *parts, size_t n, int64_t *next)
{
    char errstr[TC_ERRSTR_MAX];
    int64_t *rollup_next = NULL;
    tc_err err;

    for (size_t i = 0; i < n; i++) {
        if (parts[i] >= 0 && parts[i] < TC_TRACKED_MAX)
            continue;
        p->fatal = TC_ERR_CONFIG;
        snprintf(p->fatal_str, sizeof(p->fatal_str),
                 "topic \"%s\" partition %d: a pipeline tracks partitions 0 to %d only",
                 p->cfg->kafka_topic, parts[i], TC_TRACKED_MAX - 1);
        tc_log_error("pipeline", "%s", p->fatal_str);
        return TC_ERR_STOPPED;
    }
    err = tc_store_load_offsets(p->store, parts, n, next, errstr, sizeof(errstr));
    if (err != TC_OK && !tc_err_is_retriable(err)) {
        /* Not a passing outage (say, the tables do not exist): no point waiting for it. */
        tc_log_error("pipeline", "%s", errstr);
        p->fatal = err;
        snprintf(p->fatal_str, sizeof(p->fatal_str), "%s", errstr);
        return TC_ERR_STOPPED;
    }
    if (err == TC_OK && p->windows)
        tc_windows_assign(p->windows, parts, n, next);
    if (err == TC_OK && !p->windows) {
        rollup_next = calloc(n + 1, sizeof(*rollup_next));
        err = rollup_next ? tc_store_load_rollup_offsets(p->store, parts, n, rollup_next, errstr,
                                                         sizeof(errstr))
                          : TC_ERR_NOMEM;
        if (err == TC_OK)
            err = tc_pipeline_rollups_init_marks(p, parts, n, next, rollup_next, errstr,
                                                 sizeof(errstr));
    }
    if (err != TC_OK) {
        tc_pipeline_marks_unread(p, err, errstr);
        free(rollup_next);
        return err;
    }
    for (size_t i = 0; i < n; i++) {
        tc_marks *m = tc_pipeline_marks(p, parts[i]);
        if (!m) {
            free(rollup_next);
            return TC_ERR_NOMEM;
        }
        m->store_next = next[i];
        m->sent_gen = 0; /* the batches in flight have none of it: the next moves from here */
        m->rewind = TC_NO_REWIND;
        m->assigned = 1;
        /* A replay keeps the rollups out of the way: it recomputes what its range feeds. */
        m->rollup_next = m->rollup_durable = rollup_next ? rollup_next[i] : INT64_MAX;
        if (m->rollup_next < next[i]) {
            if (m->rollup_next < 0)
                tc_log_info("pipeline",
                            "partition %d: the rollups resume from the start, the store at %lld",
                            parts[i], (long long)next[i]);
            else
                tc_log_info("pipeline",
                            "partition %d: the rollups resume at %lld, the store at %lld", parts[i],
                            (long long)m->rollup_next, (long long)next[i]);
            next[i] = m->rollup_next;
        }
    }
    free(rollup_next);
    /* The other sinks (a replay's too: each takes what its own marks say, as in a run). Start at
     * the lowest mark: -1 ("nothing yet") is the lowest of all. */
    err = tc_sinkset_open(p->sinks, parts, n, next, errstr, sizeof(errstr));
    if (err != TC_OK) {
        tc_pipeline_marks_unread(p, err, errstr);
        if (!tc_err_is_retriable(err)) {
            p->fatal = err;
            snprintf(p->fatal_str, sizeof(p->fatal_str), "%s", errstr);
            return TC_ERR_STOPPED;
        }
        return err;
    }
    p->check_ends = 1;
    /* Read the stretch before the resume point again, for the dedupe window only. */
    for (size_t i = 0; p->dedupe && !p->windows && p->cfg->dedupe_lookback > 0 && i < n; i++) {
        int64_t from;
        if (next[i] <= 0)
            continue;
        from = next[i] > p->cfg->dedupe_lookback ? next[i] - p->cfg->dedupe_lookback : 0;
        if (tc_pipeline_lookback_prepare(p, parts[i], from, next[i]) == TC_OK)
            next[i] = from;
    }
    return TC_OK;
}

static tc_err tc_pipeline_flush(tc_pipeline *p);
static tc_err tc_pipeline_settle(tc_pipeline *p, int lost);

/* Forget a slot's batch: written and settled, or never to be (it is read again). */
static void tc_pipeline_slot_reset(tc_slot *s)
{
    tc_batch_reset(s->batch);
    tc_dlq_batch_reset(s->dlq);
    s->npending = 0;
    s->nrollup_pending = 0;
    s->store_rows = 0;
    s->rows = NULL;
    s->writer = -1;
    tc_sinkset_batch_reset(s->gen);
}

/* Rows a batch can hold: pipeline.batch_size, or more while the writers are busy. */
static size_t tc_pipeline_batch_cap(const tc_config *cfg)
{
    return (size_t)(cfg->batch_size_max > cfg->batch_size ? cfg->batch_size_max : cfg->batch_size);
}

static tc_err tc_pipeline_slot_init(tc_slot *s, const tc_config *cfg, const tc_sinkset *sinks)
{
    size_t cap = tc_pipeline_batch_cap(cfg);

    s->batch = tc_batch_new(cap, (size_t)cfg->batch_memory_bytes);
    s->filtered = tc_batch_new(cap, 0);
    s->sinks = calloc(cap, 1);
    /* The dead-letter arena must hold the largest payload we keep, plus detail and key. */
    s->dlq = tc_dlq_batch_new(TC_DLQ_PER_BATCH,
                              (size_t)cfg->batch_memory_bytes + 2 * TC_DLQ_PAYLOAD_MAX);
    s->writer = -1;
    s->gen = tc_sinkset_batch_new(sinks);
    return s->batch && s->filtered && s->sinks && s->dlq && s->gen ? TC_OK : TC_ERR_NOMEM;
}

static void tc_pipeline_slot_free(tc_slot *s)
{
    tc_batch_destroy(s->batch);
    tc_batch_destroy(s->filtered);
    free(s->sinks);
    tc_dlq_batch_destroy(s->dlq);
    tc_sinkset_batch_destroy(s->gen);
}

/* Forget the batch being filled (the one in flight is the writer's until settled). */
static void tc_pipeline_drop(tc_pipeline *p)
{
    tc_observe_note_discard(p->obs, p->cur);
    tc_pipeline_slot_reset(p->cur);
    p->batch_started_us = 0;
}

static void tc_pipeline_revoke(tc_pipeline *p, const int32_t *parts, size_t n, int lost);

/*
 * Partitions taken away while a sink waits for the store (tc_pipeline_serve) cannot be flushed
 * first: the store is what is slow. What this member holds of them is dropped -- nothing of it is
 * committed, or it is committed from the offsets this member saw, and its next owner's writes are
 * fenced against it -- and tc_pipeline_resume reads the marks of the partitions it keeps again.
 */
static void tc_pipeline_revoke_waiting(tc_pipeline *p, const int32_t *parts, size_t n, int lost)
{
    tc_log_warn("pipeline",
                "%zu partitions %s while waiting for the store; dropping %zu uncommitted readings",
                n, lost ? "lost" : "revoked", p->cur->batch->n + p->cur->dlq->n);
    for (size_t i = 0; i < n; i++) {
        tc_marks *m = tc_pipeline_marks(p, parts[i]);
        if (m)
            m->assigned = 0;
    }
    tc_sinkset_revoke(p->sinks, parts, n, 0);
    p->fenced = 1;
}

static void tc_pipeline_on_revoke(void *opaque, const int32_t *parts, size_t n, int lost)
{
    tc_pipeline *p = opaque;

    if (p->serving) {
        tc_pipeline_revoke_waiting(p, parts, n, lost);
        return;
    }
    p->in_rebalance = 1;
    tc_pipeline_revoke(p, parts, n, lost);
    p->in_rebalance = 0;
}

static void tc_pipeline_revoke(tc_pipeline *p, const int32_t *parts, size_t n, int lost)
{
    char errstr[TC_ERRSTR_MAX];
    int written = 0, rollups_written, sinks_written = 1;
    int32_t cut = p->windows && !p->closing ? tc_windows_unfinished(p->windows, parts, n) : -1;

    if (cut >= 0 && !p->fatal) {
        p->fatal = TC_ERR_STOPPED;
        snprintf(p->fatal_str, sizeof(p->fatal_str),
                 "partition %d was taken away during the replay: another member joined group "
                 "\"%s\"",
                 cut, p->cfg->kafka_group);
    }
    if (lost) {
        /* Someone else owns these partitions now; what we hold was never committed and will be
         * read again by the new owner from the sinks' marks. */
        tc_log_warn("pipeline", "partitions lost; dropping %zu uncommitted readings",
                    p->cur->batch->n + p->cur->dlq->n);
        tc_pipeline_settle(p, 1); /* what the writer has is committed, or dropped */
        tc_pipeline_drop(p);
    } else if (tc_pipeline_flush(p) == TC_OK) {
        written = 1;
    } else {
        /* Not written: dropping is safe for the same reason as above. */
        tc_pipeline_drop(p);
    }
    /* The sinks behind process/sink.h make what they took durable, or drop it. */
    if (written &&
        tc_sinkset_flush(p->sinks, tc_time_now_us(), 1, errstr, sizeof(errstr)) != TC_OK) {
        tc_log_warn("pipeline", "%s (the partitions' next owner reads them again)", errstr);
        sinks_written = 0;
    }
    tc_sinkset_revoke(p->sinks, parts, n, written && sinks_written);
    /* The pending aggregates hold rows of these partitions: written now, or never (their next
     * owner reads them again from the rollups' marks, and so do we for the partitions we keep). */
    rollups_written = !lost && tc_pipeline_rollups_flush(p) == TC_OK;
    for (size_t i = 0; i < n; i++) {
        tc_marks *m = tc_pipeline_marks(p, parts[i]);
        if (m)
            m->assigned = 0;
    }
    if (!rollups_written)
        tc_pipeline_rollups_discard(p);
}

/* Whether pipeline.sinks names a sink (the list is checked by tc_sinkset_new). */
static int tc_pipeline_sink_listed(const tc_config *cfg, const char *name)
{
    char names[TC_SINKS_MAX][TC_SINK_NAME_MAX], errstr[TC_ERRSTR_MAX];
    size_t n = 0;

    if (tc_sink_parse_list(cfg->pipeline_sinks, names, &n, errstr, sizeof(errstr)) != TC_OK)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (!strcmp(names[i], name))
            return 1;
    }
    return 0;
}

/* tc_sinkset's wait while a sink's flush is busy. */
static void tc_pipeline_sinks_wait(void *opaque, int ms)
{
    tc_pipeline_serve(opaque, ms);
}

tc_pipeline *tc_pipeline_new(const tc_config *cfg, char *errstr, size_t errstr_size)
{
    tc_store_options so;
    tc_consumer_hooks hooks = {0};
    tc_pipeline *p = calloc(1, sizeof(*p));
    int slots_ok = 1;

    if (!p) {
        tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory");
        return NULL;
    }
    p->cfg = cfg;
    p->sinks = tc_sinkset_new(cfg, tc_pipeline_sinks_wait, p, errstr, errstr_size);
    if (p->sinks && !tc_pipeline_sink_listed(cfg, "store")) {
        /* The store is the primary (process/sink.h): it owns the dead letters and the order. */
        tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                   "pipeline.sinks \"%s\" must name store: the other sinks follow its batches",
                   cfg->pipeline_sinks);
        tc_sinkset_destroy(p->sinks);
        p->sinks = NULL;
    }
    if (!p->sinks) {
        free(p);
        return NULL;
    }
    tc_store_options_from_config(&so, cfg);
    /* Shorthands: postgres.rollups=false, or rollups left out of pipeline.sinks. */
    if (!tc_pipeline_sink_listed(cfg, "rollups"))
        so.rollups = -1;
    p->rollups_on = so.rollups >= 0;
    p->store = tc_store_new(&so, errstr, errstr_size);
    /* Writers wait for their turn to commit with their transaction open: a lock that DDL of
     * another writer waits for (async.h). The timeout turns that deadlock into a retry. */
    so.lock_timeout_ms = cfg->pg_writers > 1 ? TC_WRITER_LOCK_TIMEOUT_MS : 0;
    p->writers = tc_store_async_new(&so, (int)cfg->pg_writers, errstr, errstr_size);
    so.lock_timeout_ms = 0;
    p->nslots = (size_t)cfg->pg_writers + 1;
    p->slots = calloc(p->nslots, sizeof(*p->slots));
    p->flight = calloc(p->nslots, sizeof(*p->flight));
    if (!p->writers || !p->slots || !p->flight) {
        if (p->writers)
            tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory allocating batches");
        tc_pipeline_destroy(p);
        return NULL;
    }
    p->cur = &p->slots[0];
    p->rollup_mask = calloc(tc_pipeline_batch_cap(cfg), 1);
    p->probe = tc_batch_new(tc_pipeline_batch_cap(cfg), 0);
    if (cfg->dedupe_window_s > 0) {
        p->dedupe =
            tc_dedupe_new((size_t)cfg->dedupe_max_entries, cfg->dedupe_window_s * 1000000LL);
        if (!p->dedupe) {
            tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory for the dedupe window");
            tc_pipeline_destroy(p);
            return NULL;
        }
    }
    for (size_t i = 0; i < p->nslots; i++)
        slots_ok &= tc_pipeline_slot_init(&p->slots[i], cfg, p->sinks) == TC_OK;
    if (!p->store || !slots_ok || !p->rollup_mask || !p->probe) {
        tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory allocating batches");
        tc_pipeline_destroy(p);
        return NULL;
    }
    hooks.opaque = p;
    hooks.on_assign = tc_pipeline_on_assign;
    hooks.on_revoke = tc_pipeline_on_revoke;
    /* The HTTP port first: a taken port is a configuration error to report before the consumer
     * joins the group (closing librdkafka 2.0's consumer in the middle of its first join can trip
     * an assertion in its sticky assignor). */
    if (cfg->http_listen && *cfg->http_listen) {
        p->obs = tc_observe_new(cfg, errstr, errstr_size);
        if (!p->obs) {
            tc_pipeline_destroy(p);
            return NULL;
        }
    }
    p->consumer = tc_consumer_new(cfg, &hooks, errstr, errstr_size);
    if (!p->consumer) {
        tc_pipeline_destroy(p);
        return NULL;
    }
    if (cfg->kafka_dlq_mirror) {
        p->dlq_mirror = tc_dlq_mirror_new(cfg, errstr, errstr_size);
        if (!p->dlq_mirror) {
            tc_pipeline_destroy(p);
            return NULL;
        }
    }
    if (cfg->registry_url && *cfg->registry_url) {
        char subject[TC_PIPELINE_SUBJECT_MAX];
        if (cfg->registry_subject && *cfg->registry_subject)
            snprintf(subject, sizeof(subject), "%s", cfg->registry_subject);
        else
            snprintf(subject, sizeof(subject), "%s-value", cfg->kafka_topic);
        p->schemas = tc_schema_cache_new(cfg->registry_url, 0, 0, errstr, errstr_size);
        if (p->schemas)
            p->catalog = tc_catalog_new(cfg->registry_url, subject, 0, errstr, errstr_size);
        if (!p->schemas || !p->catalog) {
            tc_pipeline_destroy(p);
            return NULL;
        }
    }
    return p;
}

void tc_pipeline_destroy(tc_pipeline *p)
{
    if (!p)
        return;
    /* Closing the consumer serves the final revoke, which flushes: the store must still exist. */
    p->closing = 1;
    tc_consumer_destroy(p->consumer);
    /* After the consumer: its final revoke may still write (and mirror) a batch. */
    tc_dlq_mirror_destroy(p->dlq_mirror);
    tc_schema_cache_destroy(p->schemas);
    tc_catalog_destroy(p->catalog);
    tc_observe_destroy(p->obs);
    tc_store_async_destroy(p->writers);
    tc_store_destroy(p->store);
    tc_sinkset_destroy(p->sinks);
    tc_windows_destroy(p->windows);
    for (size_t i = 0; p->slots && i < p->nslots; i++)
        tc_pipeline_slot_free(&p->slots[i]);
    free(p->slots);
    free(p->flight);
    free(p->rollup_mask);
    tc_batch_destroy(p->probe);
    tc_dedupe_destroy(p->dedupe);
    for (size_t i = 0; i < p->nlookback; i++)
        free(p->lookback[i].dead);
    free(p->lookback);
    free(p->marks);
    free(p);
}

tc_err tc_pipeline_set_windows(tc_pipeline *p, const tc_pipeline_window *w, size_t n, char *errstr,
                               size_t errstr_size)
{
    tc_windows_destroy(p->windows);
    p->windows = tc_windows_new(w, n);
    return p->windows ? TC_OK : tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory");
}

void tc_pipeline_get_stats(const tc_pipeline *p, tc_pipeline_stats *out)
{
    *out = p->stats;
}

static tc_err tc_pipeline_dispatch(tc_pipeline *p);

static void tc_pipeline_note(tc_partition_offset *pending, size_t *npending, int32_t partition,
                             int64_t offset)
{
    for (size_t i = 0; i < *npending; i++) {
        if (pending[i].partition == partition) {
            if (offset + 1 > pending[i].next_offset)
                pending[i].next_offset = offset + 1;
            return;
        }
    }
    /* tc_pipeline_room_for has made room: a batch never holds rows of a partition it has no
     * offset for (written, its offset would not move, and a restart would write them again). */
    if (*npending < TC_PENDING_MAX)
        pending[(*npending)++] = (tc_partition_offset){partition, offset + 1};
}

static int tc_pipeline_pending_has(const tc_partition_offset *pending, size_t n, size_t cap,
                                   int32_t partition)
{
    if (n < cap)
        return 1; /* room for one more anyway */
    for (size_t i = 0; i < n; i++) {
        if (pending[i].partition == partition)
            return 1;
    }
    return 0;
}

/*
 * Whether the batch being filled can take a message of this partition: it tracks the offsets of
 * at most pipeline.partitions_per_batch partitions (TC_PENDING_MAX at most) per sink. A message of
 * one more partition makes the batch go to a writer first, and starts the next one: with a topic
 * of more partitions than that, batches are smaller, never cut short of an offset.
 */
static tc_err tc_pipeline_room_for(tc_pipeline *p, int32_t partition)
{
    size_t cap = (size_t)p->cfg->partitions_per_batch;
    const tc_slot *s = p->cur;

    if (cap > TC_PENDING_MAX)
        cap = TC_PENDING_MAX;
    if (tc_pipeline_pending_has(s->pending, s->npending, cap, partition) &&
        tc_pipeline_pending_has(s->rollup_pending, s->nrollup_pending, cap, partition) &&
        tc_sinkset_room(s->gen, partition, cap))
        return TC_OK;
    if (p->stats.partition_flushes++ == 0)
        tc_log_info("pipeline",
                    "a batch holds readings of %zu partitions (pipeline.partitions_per_batch): "
                    "written early, before a reading of partition %d (logged once; see "
                    "thermocline_batches_partition_cap_total)",
                    cap, partition);
    return tc_pipeline_dispatch(p);
}

/* Which sinks a message at this offset is for (0: both already have it). */
static unsigned tc_pipeline_sinks_for(tc_pipeline *p, int32_t partition, int64_t offset)
{
    tc_marks *m = tc_pipeline_marks(p, partition);
    unsigned sinks = 0;

    if (!m || m->store_next < 0 || offset >= m->store_next)
        sinks |= TC_SINK_STORE;
    if (!p->windows && (!m || m->rollup_next < 0 || offset >= m->rollup_next))
        sinks |= TC_SINK_ROLLUP;
    sinks |= tc_sinkset_wants(p->sinks, partition, offset);
    if (p->windows)
        sinks = tc_windows_sinks(p->windows, partition, offset, sinks, TC_SINK_STORE);
    return sinks;
}

/* Record the message's offset with the sinks it was meant for. */
static void tc_pipeline_note_offset(tc_pipeline *p, unsigned sinks, int32_t partition,
                                    int64_t offset)
{
    if ((sinks & TC_SINK_STORE) &&
        !(p->windows && tc_windows_keeps_store_mark(p->windows, partition, offset)))
        tc_pipeline_note(p->cur->pending, &p->cur->npending, partition, offset);
    if (sinks & TC_SINK_ROLLUP)
        tc_pipeline_note(p->cur->rollup_pending, &p->cur->nrollup_pending, partition, offset);
    tc_sinkset_note(p->cur->gen, sinks, partition, offset);
}

/* Tell Kafka how far every sink is (informational: lag monitoring). */
static void tc_pipeline_commit_kafka(tc_pipeline *p, int wait)
{
    tc_partition_offset *offs = p->kafka_offs;
    size_t n = 0;

    for (size_t i = 0; i < p->nmarks; i++) {
        tc_marks *m = &p->marks[i];
        int64_t next = m->store_next;
        if (!m->assigned)
            continue;
        next = m->rollup_durable < next ? m->rollup_durable : next;
        next = tc_sinkset_durable_min(p->sinks, (int32_t)i, next);
        if (next >= 0)
            offs[n++] = (tc_partition_offset){(int32_t)i, next};
    }
    tc_consumer_commit(p->consumer, offs, n, wait);
}

/* Append row i of src to dst (which has src's dynamic columns). */
static void tc_pipeline_copy_row(tc_batch *dst, const tc_batch *src, size_t i)
{
    size_t j = dst->n;

    dst->time_us[j] = src->time_us[i];
    dst->device_id[j] = src->device_id[i];
    dst->tags[j] = src->tags[i];
    dst->extra[j] = src->extra[i];
    dst->schema_version[j] = src->schema_version[i];
    dst->partition[j] = src->partition[i];
    dst->offset[j] = src->offset[i];
    for (int m = 0; m < TC_METRIC__COUNT; m++) {
        dst->metric[m][j] = src->metric[m][i];
        dst->present[m][j] = src->present[m][i];
    }
    for (size_t d = 0; d < src->ndyn && d < dst->ndyn; d++) {
        dst->dyn[d][j] = src->dyn[d][i];
        dst->dyn_present[d][j] = src->dyn_present[d][i];
    }
    dst->n++;
}

/* Start dst empty, with src's dynamic columns. */
static void tc_pipeline_reset_like(tc_batch *dst, const tc_batch *src)
{
    tc_batch_reset(dst);
    for (size_t d = 0; d < src->ndyn; d++)
        tc_batch_dyn_column(dst, src->dyn_name[d], strlen(src->dyn_name[d]));
}

/* Rows of the batch meant for the store, when some are not (another sink catching up). */
static const tc_batch *tc_pipeline_store_rows(tc_slot *s)
{
    tc_batch *src = s->batch, *dst = s->filtered;

    if (s->store_rows == src->n)
        return src;
    tc_pipeline_reset_like(dst, src);
    for (size_t i = 0; i < src->n; i++) {
        if (s->sinks[i] & TC_SINK_STORE)
            tc_pipeline_copy_row(dst, src, i);
    }
    return dst;
}

/*
 * PostgreSQL refused the batch because of some rows' values (a value too long for a column an
 * operator narrowed, a CHECK added to readings): find them by bisection -- COPYs of halves in
 * transactions that are rolled back, O(k log n) for k bad rows -- make each one a dead letter with
 * PostgreSQL's reason (the payload is the row as JSON; the original is at its Kafka offset), and
 * let the caller write the batch without them. The lake and the rollups skip them too, so both
 * stores keep the same readings. More than TC_REFUSED_MAX of them, or every row of a batch of
 * several, is not some rows but the schema: that stops the run.
 */
static tc_err tc_pipeline_bisect(tc_pipeline *p, const tc_batch *rows, size_t lo, size_t hi)
{
    tc_store *st = p->wstore; /* where the batch failed: idle now */
    char errstr[TC_ERRSTR_MAX];
    tc_err err;

    tc_pipeline_reset_like(p->probe, rows);
    for (size_t i = lo; i < hi; i++)
        tc_pipeline_copy_row(p->probe, rows, i);
    err = tc_store_probe_rows(st, p->probe, errstr, sizeof(errstr));
    if (err == TC_OK || !tc_store_refused_rows(st))
        return err;
    if (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        err = tc_pipeline_bisect(p, rows, lo, mid);
        return err == TC_OK ? tc_pipeline_bisect(p, rows, mid, hi) : err;
    }
    if (p->nrefused >= TC_REFUSED_MAX)
        return TC_ERR_INVALID;
    p->refused[p->nrefused].row = lo;
    snprintf(p->refused[p->nrefused].why, sizeof(p->refused[0].why), "%.*s",
             (int)sizeof(p->refused[0].why) - 1, errstr);
    p->nrefused++;
    return TC_OK;
}

/* The row as a JSON document, for the dead letter of a row PostgreSQL refused. */
static char *tc_pipeline_row_json(const tc_batch *b, size_t i, size_t *len)
{
    char ts[40];
    tc_jbuf jb;
    char *out;

    tc_jbuf_init(&jb, 0);
    tc_jbuf_obj_begin(&jb);
    tc_jbuf_key(&jb, "device_id");
    tc_jbuf_strn(&jb, b->device_id[i].ptr, b->device_id[i].len);
    tc_time_format_rfc3339(b->time_us[i], ts, sizeof(ts));
    tc_jbuf_key(&jb, "timestamp");
    tc_jbuf_str(&jb, ts);
    for (int m = 0; m < TC_METRIC__COUNT; m++) {
        if (!b->present[m][i])
            continue;
        tc_jbuf_key(&jb, tc_metric_names[m]);
        tc_jbuf_double(&jb, b->metric[m][i]);
    }
    if (b->tags[i].ptr) {
        tc_jbuf_key(&jb, "tags");
        tc_jbuf_raw(&jb, b->tags[i].ptr, b->tags[i].len);
    }
    if (b->extra[i].ptr && b->extra[i].len > 2) { /* its members, after the fixed ones */
        tc_jbuf_append(&jb, ",", 1);
        tc_jbuf_append(&jb, b->extra[i].ptr + 1, b->extra[i].len - 2);
    }
    tc_jbuf_obj_end(&jb);
    out = tc_jbuf_take(&jb, len);
    tc_jbuf_free(&jb);
    return out;
}

static tc_err tc_pipeline_isolate_refused(tc_pipeline *p, tc_slot *s, const tc_batch *rows,
                                          char *errstr, size_t errstr_size)
{
    size_t map[TC_REFUSED_MAX];
    tc_err err;

    p->nrefused = 0;
    err = tc_pipeline_bisect(p, rows, 0, rows->n);
    if (err == TC_ERR_INVALID || (err == TC_OK && rows->n > 1 && p->nrefused == rows->n))
        return tc_err_set(TC_ERR_INVALID, errstr, errstr_size,
                          "PostgreSQL refuses %s rows of one batch of topic \"%s\" "
                          "(first: %s): stopping rather than dead-lettering the stream",
                          err == TC_ERR_INVALID ? "more than 64" : "all the", p->cfg->kafka_topic,
                          p->refused[0].why);
    if (err != TC_OK)
        return tc_err_set(err, errstr, errstr_size, "could not isolate refused rows: %s",
                          tc_err_name(err));
    if (p->nrefused == 0) /* refused as a whole, accepted in parts: let the retry decide */
        return TC_OK;
    /* Batch rows of the refused store rows (rows may be the store's subset of the batch). */
    for (size_t k = 0, j = 0, i = 0; i < s->batch->n && k < p->nrefused; i++) {
        if (!(s->sinks[i] & TC_SINK_STORE))
            continue;
        if (j++ == p->refused[k].row)
            map[k++] = i;
    }
    for (size_t k = 0; k < p->nrefused; k++) {
        size_t i = map[k], len = 0;
        char *json = tc_pipeline_row_json(s->batch, i, &len);
        tc_log_input in = {p->cfg->kafka_topic, s->batch->partition[i], s->batch->offset[i],
                           s->batch->device_id[i].ptr, s->batch->device_id[i].len};
        tc_log_in(TC_LOG_WARN, "pipeline", &in,
                  "topic \"%s\" partition %d offset %lld: %s; dead-lettered", p->cfg->kafka_topic,
                  s->batch->partition[i], (long long)s->batch->offset[i], p->refused[k].why);
        err = json ? tc_dlq_batch_add(s->dlq, TC_REJECT_STORE_REFUSED, "store", p->refused[k].why,
                                      json, len, s->batch->device_id[i].ptr,
                                      s->batch->device_id[i].len, s->batch->partition[i],
                                      s->batch->offset[i], p->now_us)
                   : TC_ERR_NOMEM;
        free(json);
        if (err != TC_OK)
            return tc_err_set(err, errstr, errstr_size, "could not dead-letter a refused row: %s",
                              tc_err_name(err));
        s->sinks[i] = 0;
        s->store_rows--;
    }
    return TC_OK;
}

/* One built-in sink's line of the status (its taken rows are all durable or retried). */
static void tc_pipeline_publish_sink(tc_observe_status *st, const char *name, int ready,
                                     uint64_t rows, uint64_t failures)
{
    tc_observe_sink *k = &st->sinks[st->nsinks++];

    snprintf(k->name, sizeof(k->name), "%s", name);
    k->ready = ready;
    k->rows = k->rows_durable = rows;
    k->failures = failures;
}

/* Hand the HTTP threads a fresh snapshot of the pipeline's status, each sink's included. */
static void tc_pipeline_publish(tc_pipeline *p)
{
    tc_sinkset_status gen[TC_SINKSET_MAX];
    const char *reason = NULL;
    tc_observe_status st;
    size_t ngen;

    if (!p->obs)
        return;
    memset(&st, 0, sizeof(st));
    st.stats = p->stats;
    st.partitions = tc_consumer_assigned(p->consumer);
    st.store_ok = p->store_ok;
    st.consuming = st.partitions > 0;
    st.last_commit_us = p->last_commit_us;
    tc_pipeline_publish_sink(&st, "store", p->store_ok, p->stats.stored, p->stats.retries);
    if (!p->windows && p->rollups_on)
        tc_pipeline_publish_sink(&st, "rollups", !p->rollup_retry, p->rollup_rows,
                                 p->rollup_failures);
    ngen = tc_sinkset_status_get(p->sinks, gen, TC_SINKSET_MAX);
    for (size_t i = 0; i < ngen && st.nsinks < TC_OBSERVE_SINKS_MAX; i++) {
        tc_observe_sink *k = &st.sinks[st.nsinks++];
        memcpy(k->name, gen[i].name, sizeof(k->name));
        k->name[sizeof(k->name) - 1] = '\0';
        k->ready = gen[i].ready;
        k->rows = gen[i].stats.rows;
        k->rows_durable = gen[i].stats.rows_durable;
        k->pending = gen[i].stats.pending;
        k->failures = gen[i].failures;
        k->recoveries = gen[i].recoveries;
        k->commit = gen[i].commit;
        if (!gen[i].ready && !reason)
            reason = gen[i].reason;
    }
    st.nlag = tc_consumer_lag(p->consumer, st.lag_partition, st.lag, TC_OBSERVE_LAG_MAX);
    snprintf(st.reason, sizeof(st.reason), "%s",
             !p->store_ok ? p->not_ready
             : reason     ? reason
                          : "no Kafka partition assigned (yet)");
    tc_observe_publish(p->obs, &st);
}

/*
 * The rollups and the latest state per device are a third sink, deferred: the rows of every batch
 * the store has committed join pending aggregates in memory (grouped per device and bucket, so a
 * device's bucket costs one upsert per flush, not one per batch), and tc_pipeline_rollups_flush
 * writes them every postgres.rollup_interval_ms (0: after every batch) in a transaction of their
 * own that also moves their marks. After a crash the rows between the rollups' marks and the
 * store's are read again and given to the rollups only, so they stay exactly once.
 */
static tc_err tc_pipeline_rollups_take(tc_pipeline *p, tc_slot *s)
{
    for (size_t i = 0; i < s->batch->n; i++) {
        p->rollup_mask[i] = (s->sinks[i] & TC_SINK_ROLLUP) != 0;
        p->rollup_rows += p->rollup_mask[i];
    }
    if (tc_store_rollups_add(p->store, s->batch, p->rollup_mask) != TC_OK) {
        /* Part of the batch is in the aggregates: only a restart from the marks is exact. */
        p->fatal = TC_ERR_NOMEM;
        snprintf(p->fatal_str, sizeof(p->fatal_str),
                 "out of memory aggregating rollups (the next run resumes them from their marks)");
        return TC_ERR_NOMEM;
    }
    for (size_t i = 0; i < s->nrollup_pending; i++) {
        tc_marks *m = tc_pipeline_marks(p, s->rollup_pending[i].partition);
        if (m)
            m->rollup_next = s->rollup_pending[i].next_offset;
    }
    s->nrollup_pending = 0;
    return TC_OK;
}

/* The marks the pending aggregates take the rollups to: their next offset per partition, where it
 * is past what is written. */
static size_t tc_pipeline_rollup_marks(tc_pipeline *p, tc_partition_offset *marks, int64_t *from)
{
    size_t n = 0;

    for (size_t i = 0; i < p->nmarks; i++) {
        tc_marks *m = &p->marks[i];
        if (m->rollup_next > m->rollup_durable && m->rollup_next != INT64_MAX) {
            from[n] = m->rollup_durable; /* fencing: stored where this member last saw it */
            marks[n++] = (tc_partition_offset){(int32_t)i, m->rollup_next};
        }
    }
    return n;
}

/* The rollups' marks of a flush that succeeded become durable. */
static void tc_pipeline_rollups_durable(tc_pipeline *p, const tc_partition_offset *marks, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p->marks[marks[i].partition].rollup_durable = marks[i].next_offset;
    tc_pipeline_commit_kafka(p, 0);
}

/*
 * The outcome of the rollups' writer (store/async.h), when its flush is over or block is set. A
 * retriable failure leaves the aggregates with the writer, to be tried again (rollup_retry); any
 * other is fatal.
 */
static tc_err tc_pipeline_rollups_collect(tc_pipeline *p, int block)
{
    char errstr[TC_ERRSTR_MAX];
    tc_err err;

    if (!tc_store_async_rollups_busy(p->writers) ||
        (!block && !tc_store_async_rollups_done(p->writers)))
        return TC_OK;
    tc_pipeline_await(p, -1);
    err = tc_store_async_rollups_wait(p->writers, errstr, sizeof(errstr));
    p->rollup_retry = err != TC_OK;
    if (err == TC_OK) {
        tc_pipeline_rollups_durable(p, p->rollup_flight, p->nrollup_flight);
        return TC_OK;
    }
    if (err == TC_ERR_FENCED) {
        p->rollup_retry = 0; /* its aggregates go: tc_pipeline_resume reads their rows again */
        return tc_pipeline_fence(p, errstr);
    }
    if (!tc_err_is_retriable(err)) {
        tc_log_error("pipeline", "%s", errstr);
        p->fatal = err;
        snprintf(p->fatal_str, sizeof(p->fatal_str), "%s", errstr);
        return err;
    }
    p->rollup_failures++;
    tc_log_warn("pipeline", "%s; rollups retried at the next interval", errstr);
    return TC_OK;
}

/* Forget the pending aggregates and read their rows again: after the rollups lost partitions they
 * held rows of, or could not write them before handing partitions over. */
static void tc_pipeline_rollups_discard(tc_pipeline *p)
{
    tc_partition_offset *from = malloc((p->nmarks + 1) * sizeof(*from));
    char errstr[TC_ERRSTR_MAX];
    size_t n = 0;

    tc_pipeline_rollups_collect(p, 1); /* a flush that went through keeps its marks */
    tc_store_rollups_clear(p->store);
    tc_store_rollups_clear(tc_store_async_rollups_store(p->writers));
    p->rollup_retry = 0;
    for (size_t i = 0; i < p->nmarks; i++) {
        tc_marks *m = &p->marks[i];
        if (m->rollup_next == m->rollup_durable)
            continue;
        m->rollup_next = m->rollup_durable;
        if (m->assigned && from)
            from[n++] = (tc_partition_offset){(int32_t)i, m->rollup_durable};
    }
    if (!from && !p->fatal) { /* the marks are lowered: only reading again keeps them exact */
        p->fatal = TC_ERR_NOMEM;
        snprintf(p->fatal_str, sizeof(p->fatal_str), "out of memory reading the rollups again");
    }
    if (n && tc_consumer_seek(p->consumer, from, n, errstr, sizeof(errstr)) != TC_OK && !p->fatal) {
        p->fatal = TC_ERR_KAFKA_TRANS;
        snprintf(p->fatal_str, sizeof(p->fatal_str), "%s", errstr);
    }
    free(from);
}

/*
 * Write every pending aggregate now, retrying with back-off until written or a stop is requested
 * (a revocation, the end of the run, aggregates too large to wait): first what the rollups' writer
 * holds, then what has been aggregated since, on the pipeline's own connection.
 */
static tc_err tc_pipeline_rollups_flush(tc_pipeline *p)
{
    tc_partition_offset *marks = p->rollup_sync;
    int64_t *from = p->rollup_sync_from;
    char errstr[TC_ERRSTR_MAX];
    /* The first retry goes at once, even when a stop was asked: this flush is often the last one
     * (a stop's), and its usual failure -- a connection the database closed when it restarted --
     * is over on a new connection. Given up, it would leave the rollups, and Kafka's committed
     * offsets, behind the store until the next run. */
    long backoff = 0;
    size_t n;
    tc_err err;

    p->rollups_flushed_us = p->now_us;
    while ((err = tc_pipeline_rollups_collect(p, 1)) == TC_OK && p->rollup_retry) {
        if (tc_pipeline_backoff(p, &backoff))
            return TC_ERR_STOPPED;
        tc_store_async_flush_rollups(p->writers, NULL, p->rollup_flight, p->rollup_flight_from,
                                     p->nrollup_flight);
    }
    if (err != TC_OK)
        return err;
    n = tc_pipeline_rollup_marks(p, marks, from);
    if (n == 0)
        return TC_OK;
    backoff = 0;
    while ((err = tc_store_rollups_flush(p->store, marks, from, n, errstr, sizeof(errstr))) !=
           TC_OK) {
        if (err == TC_ERR_FENCED) {
            tc_store_rollups_clear(p->store);
            return tc_pipeline_fence(p, errstr);
        }
        if (!tc_err_is_retriable(err)) {
            tc_log_error("pipeline", "%s", errstr);
            p->fatal = err;
            snprintf(p->fatal_str, sizeof(p->fatal_str), "%s", errstr);
            return err;
        }
        tc_log_warn("pipeline", "%s; rollups retried with back-off", errstr);
        if (tc_pipeline_backoff(p, &backoff))
            return TC_ERR_STOPPED;
    }
    tc_pipeline_rollups_durable(p, marks, n);
    return TC_OK;
}

/*
 * Every postgres.rollup_interval_ms (or sooner when the aggregates grow large), hand the pending
 * aggregates to the rollups' writer and go on: the upserts of a second's aggregates take a good
 * part of a second, which the pipeline spends decoding instead. At most one flush is in flight; a
 * failed one is tried again at the next interval, before newer aggregates go. Aggregates that reach
 * TC_ROLLUP_GROUPS_MAX while the writer is still busy, or failing, are the back-pressure: written
 * now, waiting.
 */
static tc_err tc_pipeline_rollups_due(tc_pipeline *p)
{
    int full = tc_store_rollups_pending(p->store) >= TC_ROLLUP_GROUPS_MAX;
    tc_err err = tc_pipeline_rollups_collect(p, 0);

    if (err != TC_OK)
        return err;
    if (!full && p->now_us - p->rollups_flushed_us < p->cfg->pg_rollup_interval_ms * 1000LL)
        return TC_OK;
    if (full && (tc_store_async_rollups_busy(p->writers) || p->rollup_retry))
        return tc_pipeline_rollups_flush(p);
    if (tc_store_async_rollups_busy(p->writers))
        return TC_OK; /* the last flush is still being written: the next interval takes these */
    p->rollups_flushed_us = p->now_us;
    if (p->rollup_retry) {
        tc_store_async_flush_rollups(p->writers, NULL, p->rollup_flight, p->rollup_flight_from,
                                     p->nrollup_flight);
        return TC_OK;
    }
    p->nrollup_flight = tc_pipeline_rollup_marks(p, p->rollup_flight, p->rollup_flight_from);
    if (p->nrollup_flight)
        tc_store_async_flush_rollups(p->writers, p->store, p->rollup_flight, p->rollup_flight_from,
                                     p->nrollup_flight);
    return TC_OK;
}

/* One attempt at writing a slot's batch on its writer's store (idle: its wait has returned). */
static tc_err tc_pipeline_write_slot(tc_pipeline *p, tc_slot *s, const tc_batch *rows, char *errstr,
                                     size_t errstr_size)
{
    if (!rows->n && !s->dlq->n && !s->npending)
        return TC_OK;
    return tc_store_write(p->wstore, rows, s->dlq, s->pending, p->windows ? NULL : s->pending_from,
                          s->npending, errstr, errstr_size);
}

/*
 * A writer's outcome of a slot: retry what failed (refused rows become dead letters, retriable
 * failures are tried again with back-off until written or a stop is requested; a batch that only
 * rolled back because one before it failed is written again at once), then what follows a stored
 * batch -- the store's marks, the rollups, the other sinks, Kafka's offsets. Every batch before it
 * is settled, and p->wstore is the idle store of its writer.
 */
static tc_err tc_pipeline_written(tc_pipeline *p, tc_slot *s, tc_err err, int cascaded,
                                  char *errstr, size_t errstr_size)
{
    const tc_batch *rows = s->rows;
    long backoff = TC_RETRY_MIN_MS, wait;

    if (p->fatal) /* the run is over: nothing more is written */
        return p->fatal;
    if (p->fenced) /* read again from the stored marks (tc_pipeline_resume), committed or not */
        return TC_ERR_FENCED;
    if (err != TC_OK && cascaded)
        err = tc_pipeline_write_slot(p, s, rows, errstr, errstr_size);
    while (err != TC_OK) {
        if (err == TC_ERR_FENCED)
            return tc_pipeline_fence(p, errstr);
        if (err == TC_ERR_DB && rows->n && tc_store_refused_rows(p->wstore)) {
            size_t before = s->dlq->n;
            err = tc_pipeline_isolate_refused(p, s, rows, errstr, errstr_size);
            if (err == TC_OK && s->dlq->n > before) {
                rows = tc_pipeline_store_rows(s); /* the batch without them */
                err = tc_pipeline_write_slot(p, s, rows, errstr, errstr_size);
                continue;
            }
            if (err == TC_OK)
                err = TC_ERR_DB;
        }
        p->store_ok = 0;
        snprintf(p->not_ready, sizeof(p->not_ready), "the store refused the last write (%s)",
                 tc_err_name(err));
        tc_pipeline_publish(p);
        if (!tc_err_is_retriable(err)) {
            tc_log_error("pipeline", "%s", errstr);
            p->fatal = err;
            snprintf(p->fatal_str, sizeof(p->fatal_str), "%s", errstr);
            return err;
        }
        p->stats.retries++;
        /* Full jitter on a capped exponential: concurrent pipelines do not retry in lockstep. */
        wait = backoff / 2 + rand() % (backoff / 2 + 1);
        tc_log_warn("pipeline", "%s; retrying in %ld ms", errstr, wait);
        if (tc_pipeline_wait(p, wait, 1))
            return *p->stop ? TC_ERR_STOPPED : TC_ERR_FENCED;
        backoff = backoff * 2 > TC_RETRY_MAX_MS ? TC_RETRY_MAX_MS : backoff * 2;
        err = tc_pipeline_write_slot(p, s, rows, errstr, errstr_size);
    }
    p->store_ok = 1;
    p->last_commit_us = tc_time_now_us();
    /* The dead letters are durable in PostgreSQL; their Kafka copy is a convenience for
     * Kafka-native tooling, so a failure to send it is logged, not fatal. */
    if (p->dlq_mirror && s->dlq->n &&
        tc_dlq_mirror_send(p->dlq_mirror, s->dlq, p->cfg->kafka_topic, errstr, errstr_size) !=
            TC_OK)
        tc_log_warn("pipeline", "dead-letter mirror: %s", errstr);
    for (size_t i = 0; i < s->npending; i++) {
        tc_marks *m = tc_pipeline_marks(p, s->pending[i].partition);
        if (m)
            m->store_next = s->pending[i].next_offset;
    }
    p->stats.stored += rows->n;
    p->stats.dead_letters += s->dlq->n;
    p->stats.batches++;
    tc_observe_note_commit(p->obs, s, rows->n, s->dlq);
    if (tc_pipeline_rollups_take(p, s) != TC_OK)
        return p->fatal;
    if ((err = tc_pipeline_rollups_due(p)) != TC_OK)
        return err;
    /* The store has the batch; the sinks behind process/sink.h follow. One that fails (a full
     * disk under the lake) stops taking rows until it has recovered, then reads its share again
     * from Kafka, while the batch is done with for the others (the store must not get it twice). */
    err = tc_sinkset_take(p->sinks, s->gen, s->batch, s->sinks, s->dlq, p->now_us, errstr,
                          errstr_size);
    if (err == TC_ERR_FENCED)
        return tc_pipeline_fence(p, errstr);
    if (err != TC_OK) {
        tc_log_error("pipeline", "%s", errstr);
        p->fatal = err;
        snprintf(p->fatal_str, sizeof(p->fatal_str), "%s", errstr);
        return err;
    }
    tc_pipeline_commit_kafka(p, 0);
    return TC_OK;
}

/*
 * Collect the oldest batch in flight and settle it (tc_pipeline_written). With lost set, the
 * partitions have a new owner already: a batch its writer could not store is dropped, not retried
 * (the owner reads it again from the marks). A failure also drops the batch being filled: the run
 * stops, or a resume rewinds the consumer to before it.
 */
static tc_err tc_pipeline_settle_oldest(tc_pipeline *p, int lost)
{
    char errstr[TC_ERRSTR_MAX];
    tc_slot *s = p->flight[p->flight_head];
    int cascaded;
    tc_err err;

    p->flight_head = (p->flight_head + 1) % p->nslots;
    p->nflight--;
    tc_pipeline_await(p, s->writer);
    err = tc_store_async_wait(p->writers, s->writer, &cascaded, errstr, sizeof(errstr));
    if (err != TC_OK)
        p->chain_broken = 1; /* the batches after it roll back: settle them before any other */
    p->wstore = tc_store_async_store(p->writers, s->writer);
    if (err == TC_OK || !lost)
        err = tc_pipeline_written(p, s, err, cascaded, errstr, sizeof(errstr));
    tc_observe_note_discard(p->obs, s); /* its notes, unless committed: it is read again */
    tc_pipeline_slot_reset(s);
    if (p->nflight == 0)
        p->chain_broken = 0;
    if (err != TC_OK)
        tc_pipeline_drop(p);
    return err;
}

/* Settle every batch in flight, oldest first, even after a failure (a batch committed must have
 * its marks moved before a sink's recovery rewinds the consumer); the first error is returned. */
static tc_err tc_pipeline_settle(tc_pipeline *p, int lost)
{
    tc_err first = TC_OK, err;

    while (p->nflight) {
        err = tc_pipeline_settle_oldest(p, lost);
        if (first == TC_OK)
            first = err;
    }
    return first;
}

/* Settle the batches in flight the writers are done with, without waiting. */
static tc_err tc_pipeline_settle_done(tc_pipeline *p)
{
    tc_err err = TC_OK;

    while (err == TC_OK && p->nflight &&
           tc_store_async_done(p->writers, p->flight[p->flight_head]->writer))
        err = tc_pipeline_settle_oldest(p, 0);
    return err;
}

/* A slot neither being filled nor in flight (there is one more slot than writers). */
static tc_slot *tc_pipeline_free_slot(tc_pipeline *p)
{
    for (size_t i = 0; i < p->nslots; i++) {
        if (&p->slots[i] != p->cur && p->slots[i].writer < 0)
            return &p->slots[i];
    }
    return NULL;
}

/*
 * Whether the batch being filled goes to a writer now, before it takes another reading: when it is
 * full (pipeline.batch_size_max); when it holds pipeline.batch_size readings, a writer is free and
 * no more messages are waiting (the last poll did not fill its array); or, timed_out, when it has
 * waited pipeline.batch_timeout_ms and a writer is free. Otherwise it goes on filling: a COPY of
 * ten thousand rows costs PostgreSQL much less than ten of a thousand (each COPY sets up its
 * partitions' insert buffers afresh), and the pipeline decodes instead of waiting for a writer.
 * Finished writers are settled first, so that they count as free. Past pipeline.batch_size this
 * is checked every TC_GROW_CHECK_ROWS rows.
 */
static tc_err tc_pipeline_batch_due(tc_pipeline *p, int timed_out, int *due)
{
    const tc_batch *b = p->cur->batch;
    size_t size = (size_t)p->cfg->batch_size;
    tc_err err;

    *due = b->n >= b->cap;
    if (*due || (!timed_out && (b->n < size || (b->n - size) % TC_GROW_CHECK_ROWS != 0)))
        return TC_OK;
    if ((err = tc_pipeline_settle_done(p)) != TC_OK)
        return err;
    *due = p->chain_broken ||
           ((timed_out || !p->backlog) && tc_store_async_free_writer(p->writers) >= 0);
    return TC_OK;
}

/*
 * Fencing: the stored offset each partition of the slot's batch moves from -- where the batches
 * before it in flight take it, or, when none has it, where the store stands.
 */
static void tc_pipeline_fence_from(tc_pipeline *p, tc_slot *s)
{
    if (p->nflight == 0 && ++p->flight_gen == 0) /* 0: "none" in tc_marks.sent_gen */
        p->flight_gen = 1;
    for (size_t i = 0; i < s->npending; i++) {
        tc_marks *m = tc_pipeline_marks(p, s->pending[i].partition);
        if (!m) { /* cannot be: assigned partitions have marks */
            s->pending_from[i] = -1;
            continue;
        }
        s->pending_from[i] = m->sent_gen == p->flight_gen ? m->store_sent : m->store_next;
        m->store_sent = s->pending[i].next_offset;
        m->sent_gen = p->flight_gen;
    }
}

/*
 * Hand the batch being filled to a free writer and start filling a free slot: the store writes
 * up to postgres.writers batches while the next is decoded. When every writer has a batch, the
 * oldest is settled first; after a failure, all of them are.
 */
static tc_err tc_pipeline_dispatch(tc_pipeline *p)
{
    tc_slot *s = p->cur, *next;
    tc_err err;
    int w = -1;

    if (p->fenced) { /* read again after tc_pipeline_resume */
        tc_pipeline_drop(p);
        return TC_ERR_FENCED;
    }
    err = p->chain_broken ? tc_pipeline_settle(p, 0) : TC_OK;
    while (err == TC_OK && (w = tc_store_async_free_writer(p->writers)) < 0)
        err = tc_pipeline_settle_oldest(p, 0);
    if (err != TC_OK)
        return err;
    if (s->batch->n == 0 && s->dlq->n == 0 && s->npending == 0 && s->nrollup_pending == 0 &&
        tc_sinkset_batch_empty(s->gen)) {
        p->batch_started_us = 0;
        return TC_OK;
    }
    next = tc_pipeline_free_slot(p);
    if (!next) /* cannot be: a free writer leaves a slot that is neither filled nor in flight */
        return TC_ERR_INVALID;
    s->rows = tc_pipeline_store_rows(s);
    s->writer = w;
    tc_pipeline_fence_from(p, s);
    /* A batch with nothing for the store (another sink catching up) still goes through a writer,
     * which commits an empty transaction in its turn: the sinks take the batches in order. */
    tc_store_async_submit(p->writers, w, s->rows, s->dlq, s->pending,
                          p->windows ? NULL : s->pending_from, s->npending);
    p->flight[(p->flight_head + p->nflight) % p->nslots] = s;
    p->nflight++;
    p->cur = next;
    /* The same dynamic columns in the same order: the store adds them by position. */
    tc_pipeline_reset_like(p->cur->batch, s->batch);
    p->batch_started_us = 0;
    return TC_OK;
}

/* Write the batch being filled and those in flight, and settle them all. */
static tc_err tc_pipeline_flush(tc_pipeline *p)
{
    tc_err err = tc_pipeline_dispatch(p);

    return err == TC_OK ? tc_pipeline_settle(p, 0) : err;
}

/* Record a refused reading; flushes first when the dead-letter batch is full. */
static tc_err tc_pipeline_dead_letter(tc_pipeline *p, const tc_message *m, tc_reject reason,
                                      const char *stage, const char *detail)
{
    char cut[TC_REJECT_DETAIL_MAX * 2];
    size_t len = m->len;
    uint64_t skipped = 0;
    tc_err err;

    if (tc_log_enabled(TC_LOG_INFO) && tc_log_limit_take(&p->dlq_log, TC_DLQ_LOG_PER_S, &skipped)) {
        /* The device: the decoded id of a row refused after decoding, else the message's key. */
        int decoded = reason == TC_REJECT_OUT_OF_RANGE || reason == TC_REJECT_TIMESTAMP_FUTURE ||
                      reason == TC_REJECT_TIMESTAMP_TOO_OLD || reason == TC_REJECT_DUPLICATE;
        const tc_slice *dev = decoded ? &p->cur->batch->device_id[p->cur->batch->n] : NULL;
        tc_log_input in = {p->cfg->kafka_topic, m->partition, m->offset, dev ? dev->ptr : m->key,
                           dev ? dev->len : m->key_len};
        char more[64] = "";
        if (skipped)
            snprintf(more, sizeof(more), " (%llu more not logged before it)",
                     (unsigned long long)skipped);
        tc_log_in(TC_LOG_INFO, "pipeline", &in, "dead letter: %s (%s): %s%s",
                  tc_reject_name(reason), stage, detail, more);
    }
    if (len > TC_DLQ_PAYLOAD_MAX) {
        snprintf(cut, sizeof(cut), "%.*s (payload of %zu bytes kept to its first %d)",
                 TC_REJECT_DETAIL_MAX, detail, m->len, TC_DLQ_PAYLOAD_MAX);
        detail = cut;
        len = TC_DLQ_PAYLOAD_MAX;
    }
    for (int attempt = 0; attempt < 2; attempt++) {
        err = tc_dlq_batch_add(p->cur->dlq, reason, stage, detail, m->payload ? m->payload : "",
                               len, m->key, m->key_len, m->partition, m->offset, p->now_us);
        if (err != TC_ERR_FULL)
            return err;
        err = tc_pipeline_dispatch(p);
        if (err != TC_OK)
            return err;
    }
    return TC_ERR_FULL;
}

/* Schema evolution of the row being decoded (schema/shape.h), then its fingerprint for the dedupe
 * window, made from its message_id when it has one. */
static tc_reject tc_pipeline_shape(tc_pipeline *p, size_t row, int32_t writer_id)
{
    tc_batch *b = p->cur->batch;
    tc_jbuf id;
    tc_reject r;

    tc_jbuf_init(&id, 0);
    r = tc_shape_row(b, row, p->catalog, writer_id, &p->dyn_logged, p->dedupe ? &id : NULL,
                     &p->row_has_id);
    if (r == TC_REJECT_NONE && p->dedupe) {
        p->row_fp = tc_dedupe_fingerprint(b, row, p->row_has_id ? id.data : NULL,
                                          p->row_has_id ? id.len : 0);
        tc_dedupe_prefetch(p->dedupe, p->row_fp);
    }
    tc_jbuf_free(&id);
    return r;
}

/*
 * Keep the catalog of the subject's versions fresh: every registry.refresh_ms, and before the first
 * JSON reading is matched. A new version's numeric fields become batch columns at once, so the
 * store and the lake gain them with the next batch, before any reading carries them. An unreachable
 * registry leaves the catalog as it was (JSON readings go on being matched against it) and is
 * asked again after the refresh interval.
 */
static void tc_pipeline_refresh_catalog(tc_pipeline *p)
{
    const tc_catalog_version *latest;
    char errstr[TC_ERRSTR_MAX];
    int changed = 0;
    tc_err err;

    if (!p->catalog || p->now_us < p->catalog_next_us)
        return;
    p->catalog_next_us = p->now_us + p->cfg->registry_refresh_ms * 1000LL;
    err = tc_catalog_refresh(p->catalog, &changed, errstr, sizeof(errstr));
    if (err != TC_OK) {
        tc_log_warn("pipeline", "could not refresh the versions of the telemetry schema: %s",
                    errstr);
        return;
    }
    latest = tc_catalog_latest(p->catalog);
    if (!changed || !latest)
        return;
    tc_log_info("pipeline", "telemetry schema: %zu versions, newest %d (id %d)",
                tc_catalog_count(p->catalog), (int)latest->version, (int)latest->id);
    for (size_t i = 0; i < latest->nfields; i++) {
        const tc_catalog_field *f = &latest->fields[i];
        int d;
        if (f->fixed >= 0 || !f->numeric)
            continue;
        d = tc_batch_dyn_column(p->cur->batch, f->name, strlen(f->name));
        if (d >= 0 && (size_t)d >= p->dyn_logged) {
            tc_log_info("pipeline", "field \"%s\" of schema version %d becomes a column", f->name,
                        (int)latest->version);
            p->dyn_logged = (size_t)d + 1;
        }
    }
}

/* tc_pipeline_decode's answer when a stop was requested while the registry was unreachable. */
#define TC_PIPELINE_STOPPED ((tc_reject)(TC_REJECT__COUNT + 1))

/* Sleep *backoff_ms (doubling it for next time, up to TC_RETRY_MAX_MS); 1 when a stop was asked
 * meanwhile. A back-off of 0 is a retry at once, whatever is asked, then TC_RETRY_MIN_MS. */
static int tc_pipeline_backoff(tc_pipeline *p, long *backoff_ms)
{
    if (*backoff_ms == 0) {
        *backoff_ms = TC_RETRY_MIN_MS;
        return 0;
    }
    if (tc_pipeline_wait(p, *backoff_ms, 0))
        return 1;
    *backoff_ms = *backoff_ms * 2 > TC_RETRY_MAX_MS ? TC_RETRY_MAX_MS : *backoff_ms * 2;
    return 0;
}

/* Wait (with back-off) until the catalog has been read from the registry once: the first
 * reading's version cannot be known before. 1 when a stop was asked meanwhile. */
static int tc_pipeline_catalog_wait(tc_pipeline *p)
{
    long backoff = TC_RETRY_MIN_MS;

    while (p->catalog && !tc_catalog_loaded(p->catalog)) {
        p->catalog_next_us = 0;
        p->now_us = tc_time_now_us();
        tc_pipeline_refresh_catalog(p);
        if (tc_catalog_loaded(p->catalog))
            break;
        if (tc_pipeline_backoff(p, &backoff))
            return 1;
    }
    return 0;
}

/*
 * Decode one message into row b->n: Confluent-framed Avro (magic byte 0, schema id) through the
 * registry's schema, anything else as JSON. While the registry is unreachable the message is held
 * and retried with back-off -- consumption waits, nothing is lost; an id the registry does not
 * know, or a writer schema that cannot make a reading, is a dead letter.
 */
static tc_reject tc_pipeline_decode(tc_pipeline *p, const tc_message *m, int32_t *writer_id,
                                    char *detail, size_t detail_size)
{
    const tc_avro_plan *plan;
    char errstr[TC_ERRSTR_MAX];
    long backoff = TC_RETRY_MIN_MS;
    int32_t id;
    tc_err err;

    *writer_id = -1;
    if (!tc_avro_frame(m->payload, m->len, &id)) {
        if (tc_pipeline_catalog_wait(p))
            return TC_PIPELINE_STOPPED;
        return tc_json_reading_decode(p->cur->batch, m->payload, m->len, detail, detail_size);
    }
    *writer_id = id;
    if (!p->schemas) {
        snprintf(detail, detail_size, "Avro message (schema id %d) but no registry.url is set",
                 (int)id);
        return TC_REJECT_UNKNOWN_SCHEMA;
    }
    while ((err = tc_schema_cache_get(p->schemas, id, &plan, errstr, sizeof(errstr))) != TC_OK &&
           tc_err_is_retriable(err)) {
        tc_log_warn("pipeline", "schema %d: %s; retrying in %ld ms", (int)id, errstr, backoff);
        if (tc_pipeline_backoff(p, &backoff))
            return TC_PIPELINE_STOPPED;
    }
    if (err == TC_ERR_NOT_FOUND) {
        snprintf(detail, detail_size, "schema id %d: %.200s", (int)id, errstr);
        return TC_REJECT_UNKNOWN_SCHEMA;
    }
    if (err != TC_OK) {
        snprintf(detail, detail_size, "schema id %d: %.200s", (int)id, errstr);
        return TC_REJECT_SCHEMA_MISMATCH;
    }
    if (tc_pipeline_catalog_wait(p))
        return TC_PIPELINE_STOPPED;
    if (!tc_catalog_by_id(p->catalog, id) &&
        p->now_us - p->catalog_forced_us >= TC_CATALOG_FORCE_US) {
        /* A writer schema the catalog does not know: perhaps a version registered since the last
         * refresh. Ask now rather than at the next interval, but not for every such message: ids
         * of other subjects never appear in this one. */
        p->catalog_forced_us = p->now_us;
        p->catalog_next_us = 0;
        tc_pipeline_refresh_catalog(p);
    }
    return tc_avro_reading_decode(p->cur->batch, plan, m->payload + TC_AVRO_FRAME_BYTES,
                                  m->len - TC_AVRO_FRAME_BYTES, detail, detail_size);
}

/*
 * A message every sink holds already, read again only to rebuild the dedupe window (the lookback
 * after an assignment): decoded and checked like a new one, so that the window ends up as it was
 * when the message was first taken, then forgotten. Its strings are dropped with it when the batch
 * is empty (the lookback comes before any new message of the partition).
 */
static tc_err tc_pipeline_remember(tc_pipeline *p, const tc_message *m)
{
    char detail[TC_REJECT_DETAIL_MAX];
    int32_t writer_id;
    tc_reject r;

    if (m->len == 0 || !m->payload || m->len > (size_t)p->cfg->max_message_bytes ||
        tc_pipeline_lookback_skips(p, m->partition, m->offset) ||
        tc_batch_row_begin(p->cur->batch) != TC_OK)
        return TC_OK;
    r = tc_pipeline_decode(p, m, &writer_id, detail, sizeof(detail));
    if (r == TC_PIPELINE_STOPPED)
        return TC_ERR_STOPPED;
    if (r == TC_REJECT_NONE)
        r = tc_pipeline_shape(p, p->cur->batch->n, writer_id);
    if (r == TC_REJECT_NONE)
        r = tc_validate_row(p->cur->batch, p->cur->batch->n, &p->cfg->limits, p->now_us, detail,
                            sizeof(detail));
    if (r == TC_REJECT_NONE)
        tc_dedupe_check(p->dedupe, p->row_fp, m->partition, m->offset,
                        p->cur->batch->time_us[p->cur->batch->n]);
    if (p->cur->batch->n == 0)
        tc_batch_reset(p->cur->batch);
    return TC_OK;
}

static tc_err tc_pipeline_process(tc_pipeline *p, const tc_message *m)
{
    char detail[TC_REJECT_DETAIL_MAX];
    unsigned sinks = tc_pipeline_sinks_for(p, m->partition, m->offset);
    int32_t writer_id;
    tc_reject r;
    tc_err err;

    if (p->fenced)
        return TC_ERR_FENCED;
    if (sinks && (err = tc_pipeline_room_for(p, m->partition)) != TC_OK)
        return err;
    if (sinks == 0) /* every sink holds it already: at most the dedupe window wants it */
        return p->dedupe ? tc_pipeline_remember(p, m) : TC_OK;
    if (p->batch_started_us == 0)
        p->batch_started_us = p->now_us;
    p->stats.consumed++;
    tc_observe_note_message(p->obs, p->cur, m->timestamp_ms);
    if (m->len == 0 || !m->payload) {
        r = TC_REJECT_EMPTY;
        snprintf(detail, sizeof(detail), "empty message");
    } else if (p->windows && tc_windows_skips(p->windows, m->partition, m->offset)) {
        r = TC_REJECT_STORE_REFUSED;
        snprintf(detail, sizeof(detail), "skipped unread by thermocline replay --skip-offset");
    } else if (m->len > (size_t)p->cfg->max_message_bytes) {
        r = TC_REJECT_TOO_LARGE;
        snprintf(detail, sizeof(detail), "message of %zu bytes exceeds the %lld-byte limit", m->len,
                 (long long)p->cfg->max_message_bytes);
    } else {
        for (int attempt = 0;; attempt++) {
            int due = attempt > 0;

            if (!due && (err = tc_pipeline_batch_due(p, 0, &due)) != TC_OK)
                return err;
            if (due || tc_batch_row_begin(p->cur->batch) == TC_ERR_FULL) {
                err = tc_pipeline_dispatch(p);
                if (err != TC_OK)
                    return err;
                p->batch_started_us = p->now_us;
                tc_batch_row_begin(p->cur->batch);
            }
            r = tc_pipeline_decode(p, m, &writer_id, detail, sizeof(detail));
            if (r == TC_REJECT_NONE)
                r = tc_pipeline_shape(p, p->cur->batch->n, writer_id);
            if (r == TC_PIPELINE_STOPPED)
                return TC_ERR_STOPPED;
            if (r != TC_JSON_BATCH_FULL)
                break;
            if (attempt > 0) {
                /* The decoder answers TOO_LARGE itself when an empty batch cannot hold it. */
                r = TC_REJECT_TOO_LARGE;
                snprintf(detail, sizeof(detail), "reading does not fit an empty batch");
                break;
            }
        }
        if (r == TC_REJECT_NONE)
            r = tc_validate_row(p->cur->batch, p->cur->batch->n, &p->cfg->limits, p->now_us, detail,
                                sizeof(detail));
        if (r == TC_REJECT_NONE && p->dedupe &&
            tc_dedupe_check(p->dedupe, p->row_fp, m->partition, m->offset,
                            p->cur->batch->time_us[p->cur->batch->n])) {
            r = TC_REJECT_DUPLICATE;
            snprintf(detail, sizeof(detail),
                     "a resend of an earlier reading of this partition (same device_id, timestamp "
                     "and %s)",
                     p->row_has_id ? "message_id" : "content");
        }
        if (r == TC_REJECT_NONE) {
            p->cur->batch->partition[p->cur->batch->n] = m->partition;
            p->cur->batch->offset[p->cur->batch->n] = m->offset;
            p->cur->sinks[p->cur->batch->n] = (uint8_t)sinks;
            p->cur->store_rows += (sinks & TC_SINK_STORE) != 0;
            tc_batch_row_commit(p->cur->batch);
            tc_pipeline_note_offset(p, sinks, m->partition, m->offset);
            return TC_OK;
        }
    }
    /* Dead letters live in the store only; the other sinks just move past them. */
    err = TC_OK;
    if (sinks & TC_SINK_STORE)
        err = tc_pipeline_dead_letter(p, m, r,
                                      r == TC_REJECT_DUPLICATE ? "dedupe"
                                      : r <= TC_REJECT_NUMBER_RANGE || r >= TC_REJECT_UNKNOWN_SCHEMA
                                          ? "decode"
                                          : "validate",
                                      detail);
    if (err == TC_OK)
        tc_pipeline_note_offset(p, sinks, m->partition, m->offset);
    return err;
}

/*
 * --exit-when-idle: "everything consumed" means the store holds, for every partition of the topic,
 * a next offset at the partition's end -- whichever group member consumed it -- and so do the
 * rollups and the lake (committed, or in files this process commits on its way out). Asking the
 * store rather than looking at our own assignment matters after a crash: the dead predecessor keeps
 * its partitions until its session times out, and a restarted member that looked only at itself
 * would find nothing assigned and leave early.
 */
void tc_pipeline_set_reload(tc_pipeline *p, volatile sig_atomic_t *flag, tc_config *live,
                            tc_pipeline_config_fn load, void *opaque)
{
    p->reload_flag = flag;
    p->reload_live = live;
    p->reload_load = load;
    p->reload_opaque = opaque;
}

/* What the loop reads anew every time it uses it: the validation limits, the flush timings, the
 * registry's refresh interval, the log level. Everything else is built into connections, batches
 * or files at start (sizes, addresses, names) and takes a restart. */
int tc_pipeline_reloadable(const char *key)
{
    return tc_config_reloadable(key);
}

/* Config keys one reload reports on. */
#define TC_RELOAD_KEYS_MAX 128

static void tc_pipeline_reload(tc_pipeline *p)
{
    const char *keys[TC_RELOAD_KEYS_MAX];
    char errstr[TC_ERRSTR_MAX];
    tc_config *fresh = p->reload_load(p->reload_opaque, errstr, sizeof(errstr));
    size_t n, applied = 0, later = 0;
    tc_log_level level;
    tc_log_format format;

    if (!fresh) {
        tc_log_warn("pipeline", "could not reload the configuration: %s; keeping the running one",
                    errstr);
        return;
    }
    n = tc_config_diff(p->reload_live, fresh, keys, TC_RELOAD_KEYS_MAX);
    for (size_t i = 0; i < n && i < TC_RELOAD_KEYS_MAX; i++) {
        if (tc_pipeline_reloadable(keys[i]) &&
            tc_config_copy_key(p->reload_live, fresh, keys[i]) == TC_OK) {
            tc_log_info("pipeline", "reload: %s changed", keys[i]);
            applied++;
        } else {
            tc_log_warn("pipeline", "reload: %s changed; it takes effect after a restart", keys[i]);
            later++;
        }
    }
    if (!tc_log_parse_level(p->reload_live->log_level, &level) &&
        !tc_log_parse_format(p->reload_live->log_format, &format))
        tc_log_setup(level, format);
    tc_config_destroy(fresh);
    tc_log_info("pipeline", "configuration reloaded: %zu settings applied, %zu need a restart",
                applied, later);
}

/*
 * After a fenced write, or partitions taken away while a sink waited: drop every batch this member
 * holds (in flight, being filled, the pending aggregates, what the other sinks have only taken),
 * read the marks of the partitions it still has again from every sink, and move the consumer back
 * to the lowest mark of each, as after an assignment. A batch that did
 * commit is not lost: the marks read say so. When the marks cannot be read the next turn of the
 * loop tries again; nothing is processed meanwhile.
 */
static tc_err tc_pipeline_resume(tc_pipeline *p)
{
    char errstr[TC_ERRSTR_MAX];
    int32_t *parts = malloc((p->nmarks + 1) * sizeof(*parts));
    int64_t *next = malloc((p->nmarks + 1) * sizeof(*next));
    int64_t *rnext = malloc((p->nmarks + 1) * sizeof(*rnext));
    int64_t *glow = malloc((p->nmarks + 1) * sizeof(*glow));
    tc_partition_offset *from = malloc((p->nmarks + 1) * sizeof(*from));
    size_t n = 0;
    tc_err err = parts && next && rnext && glow && from ? TC_OK : TC_ERR_NOMEM;

    tc_pipeline_settle(p, 1);
    tc_pipeline_drop(p);
    tc_pipeline_rollups_collect(p, 1); /* a flush that went through keeps its marks */
    tc_store_rollups_clear(p->store);
    tc_store_rollups_clear(tc_store_async_rollups_store(p->writers));
    p->rollup_retry = 0;
    for (size_t i = 0; err == TC_OK && i < p->nmarks; i++) {
        p->marks[i].rewind = TC_NO_REWIND;
        /* The aggregates are gone: no partition's rollups are past what is written, those taken
         * away meanwhile included (a later flush would move their marks over rows it lacks). */
        if (p->marks[i].rollup_next != INT64_MAX)
            p->marks[i].rollup_next = p->marks[i].rollup_durable;
        if (p->marks[i].assigned)
            parts[n++] = (int32_t)i;
    }
    p->rewinds = 0;
    if (err == TC_OK)
        err = tc_store_load_offsets(p->store, parts, n, next, errstr, sizeof(errstr));
    if (err == TC_OK && !p->windows)
        err = tc_store_load_rollup_offsets(p->store, parts, n, rnext, errstr, sizeof(errstr));
    if (err == TC_OK && !p->windows)
        err = tc_pipeline_rollups_init_marks(p, parts, n, next, rnext, errstr, sizeof(errstr));
    for (size_t i = 0; i < n; i++)
        glow[i] = TC_SINK_MARK_ALL;
    if (err == TC_OK)
        err = tc_sinkset_recover(p->sinks, parts, n, 1, p->now_us, glow, errstr, sizeof(errstr));
    for (size_t i = 0; err == TC_OK && i < n; i++) {
        tc_marks *m = &p->marks[parts[i]];
        int64_t low = next[i];
        m->store_next = next[i];
        m->sent_gen = 0;
        if (!p->windows)
            m->rollup_next = m->rollup_durable = rnext[i];
        if (m->rollup_next < low)
            low = m->rollup_next;
        low = glow[i] < low ? glow[i] : low; /* -1, nothing yet, is the lowest */
        from[i] = (tc_partition_offset){parts[i], low};
    }
    if (err == TC_OK)
        err = tc_consumer_seek(p->consumer, from, n, errstr, sizeof(errstr));
    if (err == TC_OK) {
        p->fenced = 0;
        tc_log_info("pipeline", "resumed %zu partitions from what the sinks hold", n);
    } else if (err == TC_ERR_NOMEM || !tc_err_is_retriable(err)) {
        p->fatal = err;
        snprintf(p->fatal_str, sizeof(p->fatal_str), "%s",
                 err == TC_ERR_NOMEM ? "out of memory resuming after a fenced write" : errstr);
    } else {
        tc_log_warn("pipeline", "%s; reading the marks again shortly", errstr);
        tc_pipeline_wait(p, TC_RETRY_MIN_MS, 0);
    }
    free(parts);
    free(next);
    free(rnext);
    free(glow);
    free(from);
    return p->fatal ? p->fatal : TC_OK;
}

/*
 * A sink behind process/sink.h whose circuit is open and whose back-off is over: write what the
 * pipeline holds (the broken sink is skipped), recover the sink, and move the consumer back to its
 * marks: it catches up from them while the other sinks skip what they hold (their taken marks).
 * When the consumer cannot be moved, the pipeline resumes every sink from its marks instead.
 */
static tc_err tc_pipeline_sinks_recover(tc_pipeline *p)
{
    char errstr[TC_ERRSTR_MAX];
    int32_t *parts;
    int64_t *low;
    tc_partition_offset *from;
    size_t n = 0, k = 0;
    tc_err err;

    if (!tc_sinkset_recover_due(p->sinks, p->now_us))
        return TC_OK;
    if ((err = tc_pipeline_flush(p)) != TC_OK)
        return err;
    parts = malloc((p->nmarks + 1) * sizeof(*parts));
    low = malloc((p->nmarks + 1) * sizeof(*low));
    from = malloc((p->nmarks + 1) * sizeof(*from));
    for (size_t i = 0; parts && i < p->nmarks; i++) {
        if (p->marks[i].assigned)
            parts[n++] = (int32_t)i;
    }
    err = parts && low && from
              ? tc_sinkset_recover(p->sinks, parts, n, 0, p->now_us, low, errstr, sizeof(errstr))
              : tc_err_set(TC_ERR_NOMEM, errstr, sizeof(errstr), "out of memory");
    for (size_t i = 0; err == TC_OK && i < n; i++) {
        tc_marks *m = &p->marks[parts[i]];
        if (low[i] == TC_SINK_MARK_ALL)
            continue;
        /* What a poll handed out while the flush served the consumer lies past the marks: the
         * seek covers it, and unpausing must not move the partition forward again. */
        if (m->rewind != TC_NO_REWIND && m->rewind < low[i])
            low[i] = m->rewind;
        m->rewind = TC_NO_REWIND;
        from[k++] = (tc_partition_offset){parts[i], low[i]};
    }
    if (err == TC_OK && k &&
        tc_consumer_seek(p->consumer, from, k, errstr, sizeof(errstr)) != TC_OK) {
        tc_log_warn("pipeline", "%s; resuming every sink from its marks", errstr);
        p->fenced = 1;
    }
    free(parts);
    free(low);
    free(from);
    if (err != TC_OK) {
        tc_log_error("pipeline", "%s", errstr);
        p->fatal = err;
        snprintf(p->fatal_str, sizeof(p->fatal_str), "%s", errstr);
    }
    return err;
}

/*
 * A mark past the end of its partition means the topic was deleted and created again under the same
 * name (or the brokers are another cluster) while the store and the lake kept their progress.
 * Reading on would take every new message below the old marks for one already stored: refuse,
 * before the first message of the assignment is processed, and say how to start over.
 */
static void tc_pipeline_check_ends(tc_pipeline *p)
{
    int32_t *parts = malloc(TC_TRACKED_MAX * sizeof(*parts));
    int64_t *high = malloc(TC_TRACKED_MAX * sizeof(*high));
    int n = parts && high ? tc_consumer_topic_ends(p->consumer, p->cfg->kafka_topic, parts, high,
                                                   TC_TRACKED_MAX, TC_ENDS_TIMEOUT_MS)
                          : -1;

    p->check_ends = n < 0; /* the brokers did not answer: ask again before the next messages */
    for (int i = 0; i < n && !p->fatal; i++) {
        const tc_marks *m = (size_t)parts[i] < p->nmarks ? &p->marks[parts[i]] : NULL;
        int64_t mark;
        if (!m || !m->assigned)
            continue;
        mark = tc_sinkset_mark_max(p->sinks, parts[i], m->store_next);
        if (m->rollup_next != INT64_MAX && m->rollup_next > mark)
            mark = m->rollup_next;
        if (mark <= high[i])
            continue;
        p->fatal = TC_ERR_CONFIG;
        snprintf(p->fatal_str, sizeof(p->fatal_str),
                 "stored progress of topic \"%s\" partition %d (next offset %lld) is past the "
                 "partition's end (%lld): the topic was deleted and created again, or these are "
                 "other brokers. Start over with another postgres.schema and lake.dir, or "
                 "remove group \"%s\" from %s.ingest_offsets and the lake's progress",
                 p->cfg->kafka_topic, parts[i], (long long)mark, (long long)high[i],
                 p->cfg->kafka_group, p->cfg->pg_schema);
        tc_log_error("pipeline", "%s", p->fatal_str);
    }
    free(parts);
    free(high);
}

static int tc_pipeline_topic_done_in(tc_pipeline *p, int32_t *parts, int64_t *high, int64_t *next,
                                     int64_t *rollup);

static int tc_pipeline_topic_done(tc_pipeline *p)
{
    int32_t *parts = malloc(TC_TRACKED_MAX * sizeof(*parts));
    int64_t *high = malloc(TC_TRACKED_MAX * sizeof(*high));
    int64_t *next = malloc(TC_TRACKED_MAX * sizeof(*next));
    int64_t *rollup = malloc(TC_TRACKED_MAX * sizeof(*rollup));
    int done =
        parts && high && next && rollup && tc_pipeline_topic_done_in(p, parts, high, next, rollup);

    free(parts);
    free(high);
    free(next);
    free(rollup);
    return done;
}

/* tc_pipeline_topic_done with its arrays (TC_TRACKED_MAX each). */
static int tc_pipeline_topic_done_in(tc_pipeline *p, int32_t *parts, int64_t *high, int64_t *next,
                                     int64_t *rollup)
{
    char errstr[TC_ERRSTR_MAX];
    int n = tc_consumer_topic_ends(p->consumer, p->cfg->kafka_topic, parts, high, TC_TRACKED_MAX,
                                   TC_ENDS_TIMEOUT_MS);

    if (n < 0 ||
        tc_store_load_offsets(p->store, parts, (size_t)n, next, errstr, sizeof(errstr)) != TC_OK ||
        (!p->windows && tc_store_load_rollup_offsets(p->store, parts, (size_t)n, rollup, errstr,
                                                     sizeof(errstr)) != TC_OK))
        return 0;
    for (int i = 0; i < n; i++) {
        if (high[i] > 0 && next[i] < high[i])
            return 0;
        /* The rollups: written that far, or pending here (this process writes them at exit). */
        if (high[i] > 0 && !p->windows && rollup[i] != TC_STORE_MARK_ABSENT &&
            rollup[i] < high[i] &&
            !((size_t)parts[i] < p->nmarks && p->marks[parts[i]].assigned &&
              p->marks[parts[i]].rollup_next >= high[i]))
            return 0;
        /* The other sinks, of the partitions this member has: what they took is made durable at
         * exit (another member's partitions are that member's to finish). */
        if (high[i] > 0 && (size_t)parts[i] < p->nmarks && p->marks[parts[i]].assigned &&
            tc_sinkset_behind(p->sinks, parts[i], high[i]))
            return 0;
        /* ...and of the others, what their storage says: with no partition yet (the group still
         * waits for killed members' sessions to end) the store may have the topic whole while
         * the lake does not. */
        if (high[i] > 0 && !((size_t)parts[i] < p->nmarks && p->marks[parts[i]].assigned) &&
            tc_sinkset_stored_behind(p->sinks, parts[i], high[i]))
            return 0;
    }
    return 1;
}

/* The progress line, with each sink behind process/sink.h: rows made durable, and its state. */
static void tc_pipeline_progress(tc_pipeline *p, int64_t *last_us, uint64_t *last_count)
{
    double secs = (double)(p->now_us - *last_us) / 1e6;
    uint64_t done = p->stats.stored + p->stats.dead_letters;
    tc_sinkset_status st[TC_SINKSET_MAX];
    size_t n = tc_sinkset_status_get(p->sinks, st, TC_SINKSET_MAX);
    char sinks[TC_SINKSET_MAX * (TC_SINK_NAME_MAX + 48)];
    int len = 0;

    sinks[0] = '\0';
    for (size_t i = 0; i < n && (size_t)len < sizeof(sinks); i++)
        len += snprintf(sinks + len, sizeof(sinks) - (size_t)len, ", %s %llu%s", st[i].name,
                        (unsigned long long)st[i].stats.rows_durable,
                        st[i].ready ? "" : " (not ready: recovering)");
    tc_log_info("pipeline",
                "progress: %.0f readings/s, stored %llu, dead letters %llu, batches %llu, "
                "partitions %zu%s",
                secs > 0 ? (double)(done - *last_count) / secs : 0.0,
                (unsigned long long)p->stats.stored, (unsigned long long)p->stats.dead_letters,
                (unsigned long long)p->stats.batches, tc_consumer_assigned(p->consumer), sinks);
    *last_us = p->now_us;
    *last_count = done;
}

tc_err tc_pipeline_run(tc_pipeline *p, int exit_when_idle_s, volatile sig_atomic_t *stop,
                       char *errstr, size_t errstr_size)
{
    int64_t started = tc_time_now_us(), last_activity = started, last_progress = started;
    int64_t last_idle_check = 0;
    int64_t deadline_us, idle_us = (int64_t)exit_when_idle_s * 1000000LL;
    uint64_t last_count = 0;
    tc_err err = TC_OK;
    size_t n;
    int timeout_ms;

    p->stop = stop;
    if (errstr_size)
        errstr[0] = '\0';
    if (p->obs)
        tc_log_info("pipeline", "serving /healthz, /readyz and /metrics on port %u",
                    tc_observe_port(p->obs));
    err = tc_store_connect(p->store, errstr, errstr_size);
    if (err == TC_OK)
        err = tc_store_ensure_partitions_around(
            p->store, started, (int)(p->cfg->limits.max_age_s / 86400) + 1, errstr, errstr_size);
    p->store_ok = err == TC_OK;
    if (err != TC_OK) {
        tc_log_warn("pipeline", "%s (will retry when writing)", errstr);
        snprintf(p->not_ready, sizeof(p->not_ready), "the store is unreachable (%s)",
                 tc_err_name(err));
    }
    err = TC_OK;
    tc_pipeline_publish(p);
    tc_log_info("pipeline", "consuming \"%s\" from %s as group \"%s\"", p->cfg->kafka_topic,
                p->cfg->kafka_brokers, p->cfg->kafka_group);
    while (!*stop) {
        tc_pipeline_unpause(p);
        if (p->fenced && (err = tc_pipeline_resume(p)) != TC_OK)
            break;
        p->now_us = tc_time_now_us();
        if (!p->fenced && (err = tc_pipeline_sinks_recover(p)) != TC_OK) {
            if (p->fatal || err == TC_ERR_STOPPED)
                break;
            err = TC_OK; /* the next turn resumes from the stored marks */
        }
        timeout_ms = 100;
        if (p->batch_started_us) {
            deadline_us = p->batch_started_us + p->cfg->batch_timeout_ms * 1000LL;
            timeout_ms = deadline_us <= p->now_us ? 0 : (int)((deadline_us - p->now_us) / 1000);
        }
        if (p->nflight && timeout_ms > TC_FLIGHT_POLL_MS)
            timeout_ms = TC_FLIGHT_POLL_MS;
        /* A batch past its time waits for a writer: poll meanwhile, without spinning. */
        if (timeout_ms == 0 && p->nflight && tc_store_async_free_writer(p->writers) < 0)
            timeout_ms = 1;
        n = tc_consumer_poll(p->consumer, timeout_ms, p->msgs, TC_CONSUMER_FETCH_MAX);
        p->backlog = n == TC_CONSUMER_FETCH_MAX;
        if (p->fatal)
            break;
        p->now_us = tc_time_now_us();
        if (n)
            last_activity = p->now_us;
        if (p->check_ends && n) {
            tc_pipeline_check_ends(p);
            if (p->fatal) {
                for (size_t i = 0; i < n; i++)
                    tc_consumer_release(p->consumer, &p->msgs[i]);
                break;
            }
        }
        for (size_t i = 0; i < n; i++) {
            if (err == TC_OK && !p->fenced)
                err = tc_pipeline_process(p, &p->msgs[i]);
            tc_consumer_release(p->consumer, &p->msgs[i]);
        }
        if (err == TC_OK && p->windows && tc_windows_done(p->windows))
            break; /* a replay: every range consumed */
        if (err == TC_OK && p->batch_started_us &&
            p->now_us - p->batch_started_us >= p->cfg->batch_timeout_ms * 1000LL) {
            int due;

            err = tc_pipeline_batch_due(p, 1, &due);
            if (err == TC_OK && due)
                err = tc_pipeline_dispatch(p);
        }
        /* The writer is done with the batch in flight: settle it now, not when the next is
         * full, so that its rollups, other sinks' rows and Kafka offsets follow at once. */
        if (err == TC_OK)
            err = tc_pipeline_settle_done(p);
        if (err != TC_OK && p->fenced && !p->fatal && err != TC_ERR_STOPPED)
            err = TC_OK; /* the next turn resumes from the stored marks */
        if (err != TC_OK)
            break;
        if ((err = tc_pipeline_rollups_due(p)) != TC_OK)
            break;
        /* The sinks behind process/sink.h write by their own policy (size, age, interval), even
         * when no batch comes to trigger it (the lake rolls its files by age). */
        if (!p->fenced &&
            (err = tc_sinkset_flush(p->sinks, p->now_us, 0, errstr, errstr_size)) != TC_OK) {
            if (err != TC_ERR_FENCED) {
                p->fatal = err;
                snprintf(p->fatal_str, sizeof(p->fatal_str), "%s", errstr);
                break;
            }
            tc_pipeline_fence(p, errstr);
            err = TC_OK;
        }
        if (p->reload_flag && *p->reload_flag) {
            *p->reload_flag = 0;
            tc_pipeline_reload(p);
        }
        tc_pipeline_refresh_catalog(p);
        tc_pipeline_publish(p);
        if (p->now_us - last_progress >= TC_PROGRESS_INTERVAL_US)
            tc_pipeline_progress(p, &last_progress, &last_count);
        if (idle_us > 0 && !p->fenced && p->batch_started_us == 0 && !p->nflight &&
            p->now_us - last_activity >= idle_us &&
            p->now_us - last_idle_check >= TC_IDLE_CHECK_INTERVAL_US &&
            (tc_consumer_caught_up(p->consumer) || tc_consumer_assigned(p->consumer) == 0)) {
            last_idle_check = p->now_us;
            if (!tc_pipeline_topic_done(p))
                continue;
            /* Make the sinks' last rows durable here rather than after the loop, so that a
             * transient failure of this last write is recovered from like any other instead of
             * ending the run. */
            err = tc_sinkset_flush(p->sinks, p->now_us, 1, errstr, errstr_size);
            if (err == TC_ERR_FENCED) {
                tc_pipeline_fence(p, errstr);
                err = TC_OK;
                continue;
            }
            if (err != TC_OK) {
                p->fatal = err;
                snprintf(p->fatal_str, sizeof(p->fatal_str), "%s", errstr);
                break;
            }
            if (tc_sinkset_broken(p->sinks))
                continue;
            tc_log_info("pipeline", "idle for %d s with every partition consumed; exiting",
                        exit_when_idle_s);
            break;
        }
    }
    if (err == TC_OK && !p->fatal)
        err = tc_pipeline_flush(p);
    if (err == TC_OK && !p->fatal)
        err = tc_pipeline_rollups_flush(p);
    if (err == TC_OK && !p->fatal && !p->fenced) {
        err = tc_sinkset_flush(p->sinks, tc_time_now_us(), 1, errstr, errstr_size);
        if (err != TC_OK && err != TC_ERR_FENCED) {
            p->fatal = err;
            snprintf(p->fatal_str, sizeof(p->fatal_str), "%s", errstr);
        }
        tc_pipeline_commit_kafka(p, 1); /* the last one: answered before the consumer closes */
    }
    if (tc_sinkset_broken(p->sinks) && !p->fatal)
        /* Stopped with a sink behind the store: nothing is lost, the next run resumes it from
         * its durable marks. */
        tc_log_warn("pipeline", "stopping with a sink behind its last reads (see /readyz and the "
                                "log); the next run resumes it from its durable marks");
    if (p->fatal) {
        err = p->fatal;
        tc_err_set(err, errstr, errstr_size, "%s", p->fatal_str);
    } else if (err == TC_ERR_FENCED || (err == TC_OK && p->fenced)) {
        /* Another member moved our partitions on: what is left is theirs, or read again. */
        tc_log_warn("pipeline", "stopping with what this member held dropped (fenced); the "
                                "partitions' owners resume from what is stored");
        err = TC_OK;
    } else if (err == TC_ERR_STOPPED) {
        /* Stopped while the store was down: the batch is not written and will be read again. */
        err = TC_OK;
    } else if (err != TC_OK && errstr[0] == '\0') {
        tc_err_set(err, errstr, errstr_size, "pipeline stopped: %s", tc_err_name(err));
    }
    p->now_us = tc_time_now_us();
    tc_pipeline_progress(p, &last_progress, &last_count);
    return err;
}
