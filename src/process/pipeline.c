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
#include "core/log.h"
#include "core/timeutil.h"
#include "ingest/kafka.h"
#include "process/validate.h"
#include "schema/json_reading.h"
#include "store/store.h"

/* Dead letters per batch before it is written regardless of its row count: a burst of garbage must
 * not pile up in memory. */
#define TC_DLQ_PER_BATCH 10000
/* A dead letter keeps at most this much of its payload; the detail says when it was cut. Large
 * enough for any message a broker accepts by default (1 MiB) and then some. */
#define TC_DLQ_PAYLOAD_MAX (16 * 1024 * 1024)
/* Progress is logged this often. */
#define TC_PROGRESS_INTERVAL_US (2 * 1000000LL)
/* Back-off between attempts to write a batch the store could not take. */
#define TC_RETRY_MIN_MS 100
#define TC_RETRY_MAX_MS 10000
/* How long the broker may take to tell the ends of the topic's partitions (idle check). */
#define TC_ENDS_TIMEOUT_MS 5000
/* ...and how often the idle check asks it. */
#define TC_IDLE_CHECK_INTERVAL_US 1000000LL
/* Partitions tracked per batch (the topic's partition count bounds it in practice). */
#define TC_PENDING_MAX 4096

struct tc_pipeline {
    const tc_config *cfg;
    tc_consumer *consumer;
    tc_store *store;
    tc_batch *batch;
    tc_dlq_batch *dlq;
    tc_partition_offset pending[TC_PENDING_MAX]; /* next offset per partition in this batch */
    size_t npending;
    int64_t batch_started_us; /* when the oldest message of the batch arrived, 0 = empty */
    int64_t now_us;
    volatile sig_atomic_t *stop;
    tc_err fatal; /* a fatal error raised inside a callback */
    char fatal_str[TC_ERRSTR_MAX];
    tc_pipeline_stats stats;
    tc_message msgs[TC_CONSUMER_FETCH_MAX];
};

static tc_err tc_pipeline_on_assign(void *opaque, const int32_t *parts, size_t n, int64_t *next)
{
    tc_pipeline *p = opaque;
    char errstr[TC_ERRSTR_MAX];
    tc_err err = tc_store_load_offsets(p->store, parts, n, next, errstr, sizeof(errstr));

    if (err != TC_OK)
        tc_log_warn("pipeline", "%s", errstr);
    return err;
}

static tc_err tc_pipeline_flush(tc_pipeline *p);

static void tc_pipeline_drop(tc_pipeline *p)
{
    tc_batch_reset(p->batch);
    tc_dlq_batch_reset(p->dlq);
    p->npending = 0;
    p->batch_started_us = 0;
}

static void tc_pipeline_on_revoke(void *opaque, const int32_t *parts, size_t n, int lost)
{
    tc_pipeline *p = opaque;

    (void)parts;
    (void)n;
    if (lost) {
        /* Someone else owns these partitions now; what we hold was never committed and will be
         * read again by the new owner from the store's offsets. */
        tc_log_warn("pipeline", "partitions lost; dropping %zu uncommitted readings",
                    p->batch->n + p->dlq->n);
        tc_pipeline_drop(p);
        return;
    }
    if (tc_pipeline_flush(p) != TC_OK) {
        /* Not written: dropping is safe for the same reason as above. */
        tc_pipeline_drop(p);
    }
}

tc_pipeline *tc_pipeline_new(const tc_config *cfg, char *errstr, size_t errstr_size)
{
    tc_store_options so = {
        .dsn = cfg->pg_dsn,
        .schema = cfg->pg_schema,
        .group = cfg->kafka_group,
        .topic = cfg->kafka_topic,
        .partition_days_ahead = (int)cfg->pg_partition_days_ahead,
    };
    tc_consumer_hooks hooks = {0};
    tc_pipeline *p = calloc(1, sizeof(*p));

    if (!p) {
        tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory");
        return NULL;
    }
    p->cfg = cfg;
    p->store = tc_store_new(&so);
    p->batch = tc_batch_new((size_t)cfg->batch_size, (size_t)cfg->batch_memory_bytes);
    /* The dead-letter arena must hold the largest payload we keep, plus detail and key. */
    p->dlq = tc_dlq_batch_new(TC_DLQ_PER_BATCH,
                              (size_t)cfg->batch_memory_bytes + 2 * TC_DLQ_PAYLOAD_MAX);
    if (!p->store || !p->batch || !p->dlq) {
        tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory allocating batches");
        tc_pipeline_destroy(p);
        return NULL;
    }
    hooks.opaque = p;
    hooks.on_assign = tc_pipeline_on_assign;
    hooks.on_revoke = tc_pipeline_on_revoke;
    p->consumer = tc_consumer_new(cfg, &hooks, errstr, errstr_size);
    if (!p->consumer) {
        tc_pipeline_destroy(p);
        return NULL;
    }
    return p;
}

void tc_pipeline_destroy(tc_pipeline *p)
{
    if (!p)
        return;
    /* Closing the consumer serves the final revoke, which flushes: the store must still exist. */
    tc_consumer_destroy(p->consumer);
    tc_store_destroy(p->store);
    tc_batch_destroy(p->batch);
    tc_dlq_batch_destroy(p->dlq);
    free(p);
}

void tc_pipeline_get_stats(const tc_pipeline *p, tc_pipeline_stats *out)
{
    *out = p->stats;
}

static void tc_pipeline_note_offset(tc_pipeline *p, int32_t partition, int64_t offset)
{
    for (size_t i = 0; i < p->npending; i++) {
        if (p->pending[i].partition == partition) {
            if (offset + 1 > p->pending[i].next_offset)
                p->pending[i].next_offset = offset + 1;
            return;
        }
    }
    if (p->npending < TC_PENDING_MAX)
        p->pending[p->npending++] = (tc_partition_offset){partition, offset + 1};
}

static void tc_sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Write the batch, retrying retriable failures until it is written or a stop is requested. */
static tc_err tc_pipeline_flush(tc_pipeline *p)
{
    char errstr[TC_ERRSTR_MAX];
    long backoff = TC_RETRY_MIN_MS, wait;
    tc_err err;

    if (p->batch->n == 0 && p->dlq->n == 0 && p->npending == 0)
        return TC_OK;
    for (;;) {
        err = tc_store_write(p->store, p->batch, p->dlq, p->pending, p->npending, errstr,
                             sizeof(errstr));
        if (err == TC_OK)
            break;
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
        for (long slept = 0; slept < wait; slept += 50) {
            if (*p->stop)
                return TC_ERR_STOPPED;
            tc_sleep_ms(50);
        }
        backoff = backoff * 2 > TC_RETRY_MAX_MS ? TC_RETRY_MAX_MS : backoff * 2;
    }
    tc_consumer_commit(p->consumer, p->pending, p->npending);
    p->stats.stored += p->batch->n;
    p->stats.dead_letters += p->dlq->n;
    p->stats.batches++;
    tc_pipeline_drop(p);
    return TC_OK;
}

/* Record a refused reading; flushes first when the dead-letter batch is full. */
static tc_err tc_pipeline_dead_letter(tc_pipeline *p, const tc_message *m, tc_reject reason,
                                      const char *stage, const char *detail)
{
    char cut[TC_REJECT_DETAIL_MAX * 2];
    size_t len = m->len;
    tc_err err;

    if (len > TC_DLQ_PAYLOAD_MAX) {
        snprintf(cut, sizeof(cut), "%.*s (payload of %zu bytes kept to its first %d)",
                 TC_REJECT_DETAIL_MAX, detail, m->len, TC_DLQ_PAYLOAD_MAX);
        detail = cut;
        len = TC_DLQ_PAYLOAD_MAX;
    }
    for (int attempt = 0; attempt < 2; attempt++) {
        err = tc_dlq_batch_add(p->dlq, reason, stage, detail, m->payload ? m->payload : "", len,
                               m->key, m->key_len, m->partition, m->offset, p->now_us);
        if (err != TC_ERR_FULL)
            return err;
        err = tc_pipeline_flush(p);
        if (err != TC_OK)
            return err;
    }
    return TC_ERR_FULL;
}

static tc_err tc_pipeline_process(tc_pipeline *p, const tc_message *m)
{
    char detail[TC_REJECT_DETAIL_MAX];
    tc_reject r;
    tc_err err;

    if (p->batch_started_us == 0)
        p->batch_started_us = p->now_us;
    p->stats.consumed++;
    if (m->len == 0 || !m->payload) {
        r = TC_REJECT_EMPTY;
        snprintf(detail, sizeof(detail), "empty message");
    } else if (m->len > (size_t)p->cfg->max_message_bytes) {
        r = TC_REJECT_TOO_LARGE;
        snprintf(detail, sizeof(detail), "message of %zu bytes exceeds the %lld-byte limit", m->len,
                 (long long)p->cfg->max_message_bytes);
    } else {
        for (int attempt = 0;; attempt++) {
            if (tc_batch_row_begin(p->batch) == TC_ERR_FULL || attempt > 0) {
                err = tc_pipeline_flush(p);
                if (err != TC_OK)
                    return err;
                p->batch_started_us = p->now_us;
                tc_batch_row_begin(p->batch);
            }
            r = tc_json_reading_decode(p->batch, m->payload, m->len, detail, sizeof(detail));
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
            r = tc_validate_row(p->batch, p->batch->n, &p->cfg->limits, p->now_us, detail,
                                sizeof(detail));
        if (r == TC_REJECT_NONE) {
            p->batch->partition[p->batch->n] = m->partition;
            p->batch->offset[p->batch->n] = m->offset;
            tc_batch_row_commit(p->batch);
            tc_pipeline_note_offset(p, m->partition, m->offset);
            return TC_OK;
        }
    }
    err = tc_pipeline_dead_letter(p, m, r, r <= TC_REJECT_NUMBER_RANGE ? "decode" : "validate",
                                  detail);
    if (err == TC_OK)
        tc_pipeline_note_offset(p, m->partition, m->offset);
    return err;
}

/*
 * --exit-when-idle: "everything consumed" means the store holds, for every partition of the topic,
 * a next offset at the partition's end -- whichever group member consumed it. Asking the store
 * rather than looking at our own assignment matters after a crash: the dead predecessor keeps its
 * partitions until its session times out, and a restarted member that looked only at itself would
 * find nothing assigned and leave early.
 */
static int tc_pipeline_topic_done(tc_pipeline *p)
{
    int32_t parts[TC_PENDING_MAX];
    int64_t high[TC_PENDING_MAX], next[TC_PENDING_MAX];
    char errstr[TC_ERRSTR_MAX];
    int n = tc_consumer_topic_ends(p->consumer, p->cfg->kafka_topic, parts, high, TC_PENDING_MAX,
                                   TC_ENDS_TIMEOUT_MS);

    if (n < 0 ||
        tc_store_load_offsets(p->store, parts, (size_t)n, next, errstr, sizeof(errstr)) != TC_OK)
        return 0;
    for (int i = 0; i < n; i++) {
        if (high[i] > 0 && next[i] < high[i])
            return 0;
    }
    return 1;
}

static void tc_pipeline_progress(tc_pipeline *p, int64_t *last_us, uint64_t *last_count)
{
    double secs = (double)(p->now_us - *last_us) / 1e6;
    uint64_t done = p->stats.stored + p->stats.dead_letters;

    tc_log_info("pipeline",
                "progress: %.0f readings/s, stored %llu, dead letters %llu, batches %llu, "
                "partitions %zu",
                secs > 0 ? (double)(done - *last_count) / secs : 0.0,
                (unsigned long long)p->stats.stored, (unsigned long long)p->stats.dead_letters,
                (unsigned long long)p->stats.batches, tc_consumer_assigned(p->consumer));
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
    err = tc_store_connect(p->store, errstr, errstr_size);
    if (err == TC_OK)
        err = tc_store_ensure_partitions_around(
            p->store, started, (int)(p->cfg->limits.max_age_s / 86400) + 1, errstr, errstr_size);
    if (err != TC_OK)
        tc_log_warn("pipeline", "%s (will retry when writing)", errstr);
    err = TC_OK;
    tc_log_info("pipeline", "consuming \"%s\" from %s as group \"%s\"", p->cfg->kafka_topic,
                p->cfg->kafka_brokers, p->cfg->kafka_group);
    while (!*stop) {
        p->now_us = tc_time_now_us();
        timeout_ms = 100;
        if (p->batch_started_us) {
            deadline_us = p->batch_started_us + p->cfg->batch_timeout_ms * 1000LL;
            timeout_ms = deadline_us <= p->now_us ? 0 : (int)((deadline_us - p->now_us) / 1000);
        }
        n = tc_consumer_poll(p->consumer, timeout_ms, p->msgs, TC_CONSUMER_FETCH_MAX);
        if (p->fatal)
            break;
        p->now_us = tc_time_now_us();
        if (n)
            last_activity = p->now_us;
        for (size_t i = 0; i < n; i++) {
            if (err == TC_OK)
                err = tc_pipeline_process(p, &p->msgs[i]);
            tc_consumer_release(p->consumer, &p->msgs[i]);
        }
        if (err == TC_OK && p->batch_started_us &&
            p->now_us - p->batch_started_us >= p->cfg->batch_timeout_ms * 1000LL)
            err = tc_pipeline_flush(p);
        if (err != TC_OK)
            break;
        if (p->now_us - last_progress >= TC_PROGRESS_INTERVAL_US)
            tc_pipeline_progress(p, &last_progress, &last_count);
        if (idle_us > 0 && p->batch_started_us == 0 && p->now_us - last_activity >= idle_us &&
            p->now_us - last_idle_check >= TC_IDLE_CHECK_INTERVAL_US &&
            (tc_consumer_caught_up(p->consumer) || tc_consumer_assigned(p->consumer) == 0)) {
            last_idle_check = p->now_us;
            if (!tc_pipeline_topic_done(p))
                continue;
            tc_log_info("pipeline", "idle for %d s with every partition consumed; exiting",
                        exit_when_idle_s);
            break;
        }
    }
    if (err == TC_OK && !p->fatal)
        err = tc_pipeline_flush(p);
    if (p->fatal) {
        err = p->fatal;
        tc_err_set(err, errstr, errstr_size, "%s", p->fatal_str);
    } else if (err == TC_ERR_STOPPED) {
        /* Stopped while the store was down: the batch is not written and will be read again. */
        err = TC_OK;
    } else if (err != TC_OK) {
        tc_err_set(err, errstr, errstr_size, "pipeline stopped: %s", tc_err_name(err));
    }
    p->now_us = tc_time_now_us();
    tc_pipeline_progress(p, &last_progress, &last_count);
    return err;
}
