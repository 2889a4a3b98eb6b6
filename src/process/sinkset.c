/*
 * sinkset.c -- the sinks of a pipeline and the rules applied to them all; see sinkset.h.
 *
 * Each sink has a taken mark per partition (kept here, moved by every append to the batch's
 * advance), asks its own durable marks, and a circuit: closed (ready), open after a retriable
 * failure until its back-off has passed and recover has succeeded, or failed for good. The
 * back-off never sleeps: the loop goes on with the other sinks and asks tc_sinkset_recover_due
 * each turn, so the consumer is served meanwhile.
 *
 * Commit latency is measured here, the same for every sink: a write starts at the first flush call
 * of a sink that holds rows not yet durable and ends at the call after which rows_durable has
 * grown, however many calls a busy sink took in between (its own thread did the work).
 */
#include "process/sinkset.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/timeutil.h"

/* Partitions one batch holds per sink (the pipeline's TC_PENDING_MAX). */
#define TC_SINKSET_BATCH_PARTS 4096
/* The back-off between a sink's failure and its recovery: capped exponential, full jitter. */
#define TC_SINKSET_BACKOFF_MIN_MS 100
#define TC_SINKSET_BACKOFF_MAX_MS 10000

/* 1 ms (a local file) to a minute (a flush stuck behind a lock). */
const double tc_sinkset_latency_bounds[TC_SINKSET_LATENCY_BUCKETS] = {
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};

typedef struct tc_sinkset_sink {
    tc_sink sink;
    int64_t taken[TC_SINKSET_PARTS]; /* next offset given, per partition (NONE: nothing yet) */
    int broken;                      /* circuit open: waiting for its recovery */
    int failed;                      /* a permanent failure: the run stops */
    long backoff_ms;                 /* the next back-off's cap */
    int64_t retry_us;                /* when the recovery may be tried */
    char reason[TC_SINKSET_REASON_MAX];
    uint64_t failures, recoveries;
    int64_t write_us; /* wall time the write under way started (0: none) */
    tc_sinkset_latency commit;
    uint64_t cpu_ns; /* the pipeline thread's CPU in the sink's calls (tc_sinkset_charge) */
} tc_sinkset_sink;

struct tc_sinkset {
    tc_sinkset_sink *sinks[TC_SINKSET_MAX];
    size_t n;
    tc_sinkset_wait_fn wait;
    void *opaque;
    uint8_t *mask; /* one sink's mask of a batch (grown to the batch) */
    size_t mask_cap;
};

struct tc_sinkset_batch {
    size_t nsinks;
    tc_partition_offset *adv[TC_SINKSET_MAX];
    size_t nadv[TC_SINKSET_MAX];
};

tc_sinkset *tc_sinkset_new(const tc_config *cfg, tc_sinkset_wait_fn wait, void *opaque,
                           char *errstr, size_t errstr_size)
{
    char names[TC_SINKS_MAX][TC_SINK_NAME_MAX];
    size_t n = 0;
    tc_sinkset *s;

    if (tc_sink_parse_list(cfg->pipeline_sinks, names, &n, errstr, errstr_size) != TC_OK)
        return NULL;
    s = calloc(1, sizeof(*s));
    if (!s) {
        tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory");
        return NULL;
    }
    s->wait = wait;
    s->opaque = opaque;
    for (size_t i = 0; i < n; i++) {
        tc_sink_new_fn make = tc_sink_find(names[i]);
        tc_sinkset_sink *k;
        if (!make)
            continue; /* the primary: the pipeline drives it */
        if (s->n == TC_SINKSET_MAX) {
            tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                       "pipeline.sinks: more than %d sinks besides the primary", TC_SINKSET_MAX);
            tc_sinkset_destroy(s);
            return NULL;
        }
        k = calloc(1, sizeof(*k));
        if (!k) {
            tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory");
            tc_sinkset_destroy(s);
            return NULL;
        }
        s->sinks[s->n++] = k;
        if (make(cfg, &k->sink, errstr, errstr_size) != TC_OK) {
            k->sink.ops = NULL;
            tc_sinkset_destroy(s);
            return NULL;
        }
        if (!k->sink.ops) { /* off by configuration */
            free(s->sinks[--s->n]);
            continue;
        }
        if (!k->sink.name[0])
            snprintf(k->sink.name, sizeof(k->sink.name), "%s", k->sink.ops->name);
        for (size_t p = 0; p < TC_SINKSET_PARTS; p++)
            k->taken[p] = TC_SINK_MARK_NONE;
        k->backoff_ms = TC_SINKSET_BACKOFF_MIN_MS;
    }
    return s;
}

void tc_sinkset_destroy(tc_sinkset *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n; i++) {
        if (s->sinks[i]->sink.ops)
            s->sinks[i]->sink.ops->close(s->sinks[i]->sink.ctx);
        free(s->sinks[i]);
    }
    free(s->mask);
    free(s);
}

size_t tc_sinkset_count(const tc_sinkset *s)
{
    return s ? s->n : 0;
}

static int tc_sinkset_part_ok(int32_t partition)
{
    return partition >= 0 && partition < TC_SINKSET_PARTS;
}

/* -1 ("nothing yet") is the lowest mark of all; TC_SINK_MARK_ALL asks for nothing. */
static void tc_sinkset_lower(int64_t *low, int64_t mark)
{
    if (mark != TC_SINK_MARK_ALL && mark < *low)
        *low = mark;
}

long tc_sinkset_backoff_step(long *backoff_ms)
{
    long wait;

    if (*backoff_ms < TC_SINKSET_BACKOFF_MIN_MS)
        *backoff_ms = TC_SINKSET_BACKOFF_MIN_MS;
    wait = *backoff_ms / 2 + rand() % (*backoff_ms / 2 + 1);
    *backoff_ms =
        *backoff_ms * 2 > TC_SINKSET_BACKOFF_MAX_MS ? TC_SINKSET_BACKOFF_MAX_MS : *backoff_ms * 2;
    return wait;
}

/*
 * A sink's call failed. Fenced and permanent failures go back to the caller (errstr names the
 * sink); a retriable one opens the circuit until its back-off is over.
 */
static tc_err tc_sinkset_fail(tc_sinkset_sink *k, tc_err err, int64_t now_us, char *errstr,
                              size_t errstr_size)
{
    char why[TC_ERRSTR_MAX];
    long wait;

    snprintf(why, sizeof(why), "%s", errstr);
    k->failures++;
    if (err == TC_ERR_FENCED)
        return tc_err_set(err, errstr, errstr_size, "sink %s: %s", k->sink.name, why);
    if (!tc_err_is_retriable(err)) {
        k->failed = 1;
        snprintf(k->reason, sizeof(k->reason), "sink %s failed: %.120s", k->sink.name, why);
        return tc_err_set(err, errstr, errstr_size, "sink %s: %s", k->sink.name, why);
    }
    wait = tc_sinkset_backoff_step(&k->backoff_ms);
    k->retry_us = now_us + wait * 1000LL;
    tc_log_warn("pipeline",
                "sink %s: %s; retrying in %ld ms (it takes no readings until it has recovered; "
                "the other sinks go on)",
                k->sink.name, why, wait);
    k->broken = 1;
    snprintf(k->reason, sizeof(k->reason), "sink %s is recovering: %.120s", k->sink.name, why);
    return TC_OK;
}

/* Charge sink k with the pipeline thread's CPU since `since` (a tc_time_thread_cpu_ns reading);
 * returns the reading it took, the start of whatever the thread does next. Sinks are charged per
 * call, not per row: a reading of the clock is a system call. */
static uint64_t tc_sinkset_charge(tc_sinkset_sink *k, uint64_t since)
{
    uint64_t now = tc_time_thread_cpu_ns();

    if (now > since)
        k->cpu_ns += now - since;
    return now;
}

tc_err tc_sinkset_open(tc_sinkset *s, const int32_t *parts, size_t n, int64_t *next, char *errstr,
                       size_t errstr_size)
{
    int64_t *mark;
    tc_err err = TC_OK;

    if (!s || s->n == 0)
        return TC_OK;
    mark = malloc((n + 1) * sizeof(*mark));
    if (!mark)
        return tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory");
    for (size_t k = 0; k < s->n && err == TC_OK; k++) {
        tc_sinkset_sink *sk = s->sinks[k];
        char why[TC_ERRSTR_MAX];
        if (sk->failed)
            continue;
        uint64_t cpu = tc_time_thread_cpu_ns();
        err = sk->sink.ops->open(sk->sink.ctx, parts, n, mark, why, sizeof(why));
        tc_sinkset_charge(sk, cpu);
        if (err != TC_OK) {
            tc_err_set(err, errstr, errstr_size, "sink %s: %s", sk->sink.name, why);
            break;
        }
        for (size_t i = 0; i < n; i++) {
            if (!tc_sinkset_part_ok(parts[i]))
                continue;
            sk->taken[parts[i]] = mark[i];
            if (mark[i] != TC_SINK_MARK_ALL && mark[i] < next[i]) {
                tc_log_input in = {NULL, parts[i], mark[i] >= 0 ? mark[i] : -1, NULL, 0};
                tc_log_in(TC_LOG_INFO, "pipeline", &in,
                          "partition %d: sink %s resumes at %lld, below %lld", parts[i],
                          sk->sink.name, (long long)mark[i], (long long)next[i]);
            }
            tc_sinkset_lower(&next[i], mark[i]);
        }
    }
    free(mark);
    return err;
}

unsigned tc_sinkset_wants(const tc_sinkset *s, int32_t partition, int64_t offset)
{
    unsigned bits = 0;

    if (!s || !tc_sinkset_part_ok(partition))
        return 0;
    for (size_t k = 0; k < s->n; k++) {
        const tc_sinkset_sink *sk = s->sinks[k];
        int64_t t = sk->taken[partition];
        if (!sk->broken && !sk->failed && t != TC_SINK_MARK_ALL && (t < 0 || offset >= t))
            bits |= TC_SINKSET_FIRST_BIT << k;
    }
    return bits;
}

tc_sinkset_batch *tc_sinkset_batch_new(const tc_sinkset *s)
{
    tc_sinkset_batch *b = calloc(1, sizeof(*b));

    if (!b)
        return NULL;
    b->nsinks = tc_sinkset_count(s);
    for (size_t k = 0; k < b->nsinks; k++) {
        b->adv[k] = malloc(TC_SINKSET_BATCH_PARTS * sizeof(*b->adv[k]));
        if (!b->adv[k]) {
            tc_sinkset_batch_destroy(b);
            return NULL;
        }
    }
    return b;
}

void tc_sinkset_batch_destroy(tc_sinkset_batch *b)
{
    if (!b)
        return;
    for (size_t k = 0; k < b->nsinks; k++)
        free(b->adv[k]);
    free(b);
}

void tc_sinkset_batch_reset(tc_sinkset_batch *b)
{
    for (size_t k = 0; b && k < b->nsinks; k++)
        b->nadv[k] = 0;
}

int tc_sinkset_batch_empty(const tc_sinkset_batch *b)
{
    for (size_t k = 0; b && k < b->nsinks; k++) {
        if (b->nadv[k])
            return 0;
    }
    return 1;
}

void tc_sinkset_note(tc_sinkset_batch *b, unsigned bits, int32_t partition, int64_t offset)
{
    for (size_t k = 0; b && k < b->nsinks; k++) {
        tc_partition_offset *adv = b->adv[k];
        size_t i;
        if (!(bits & (TC_SINKSET_FIRST_BIT << k)))
            continue;
        for (i = 0; i < b->nadv[k] && adv[i].partition != partition; i++)
            ;
        if (i < b->nadv[k]) {
            if (offset + 1 > adv[i].next_offset)
                adv[i].next_offset = offset + 1;
        } else if (b->nadv[k] < TC_SINKSET_BATCH_PARTS) { /* tc_sinkset_room made room */
            adv[b->nadv[k]++] = (tc_partition_offset){partition, offset + 1};
        }
    }
}

int tc_sinkset_room(const tc_sinkset_batch *b, int32_t partition, size_t cap)
{
    if (cap > TC_SINKSET_BATCH_PARTS)
        cap = TC_SINKSET_BATCH_PARTS;
    for (size_t k = 0; b && k < b->nsinks; k++) {
        size_t i;
        if (b->nadv[k] < cap)
            continue;
        for (i = 0; i < b->nadv[k] && b->adv[k][i].partition != partition; i++)
            ;
        if (i == b->nadv[k])
            return 0;
    }
    return 1;
}

void tc_sinkset_latency_observe(tc_sinkset_latency *h, double s)
{
    size_t i = 0;

    if (s < 0)
        s = 0; /* the wall clock went back */
    while (i < TC_SINKSET_LATENCY_BUCKETS && s > tc_sinkset_latency_bounds[i])
        i++;
    h->counts[i]++;
    h->count++;
    h->sum += s;
}

/* Flush one sink; with force, until it is no longer busy (serving the consumer meanwhile: that
 * time is not the sink's). *cpu is the thread's CPU reading at the call, updated as it goes. */
static tc_err tc_sinkset_flush_one(tc_sinkset *s, tc_sinkset_sink *k, int64_t now_us, int force,
                                   uint64_t *cpu, char *errstr, size_t errstr_size)
{
    tc_sink_stats before, after;
    int busy = 0;
    tc_err err;

    k->sink.ops->stats(k->sink.ctx, &before);
    if (!k->write_us && before.rows > before.rows_durable)
        k->write_us = tc_time_now_us();
    for (;;) {
        err = k->sink.ops->flush(k->sink.ctx, now_us, force, &busy, errstr, errstr_size);
        *cpu = tc_sinkset_charge(k, *cpu);
        if (err != TC_OK || !busy || !force)
            break;
        s->wait(s->opaque, TC_SINK_SLICE_MS);
        *cpu = tc_time_thread_cpu_ns();
    }
    if (err != TC_OK) {
        k->write_us = 0; /* the write is lost: its rows are written again after recovery */
        return tc_sinkset_fail(k, err, now_us, errstr, errstr_size);
    }
    k->sink.ops->stats(k->sink.ctx, &after);
    if (after.rows_durable > before.rows_durable) {
        k->backoff_ms = TC_SINKSET_BACKOFF_MIN_MS; /* progress: the next failure starts afresh */
        if (k->write_us)
            tc_sinkset_latency_observe(&k->commit, (double)(tc_time_now_us() - k->write_us) / 1e6);
        k->write_us = 0;
    } else if (!busy) {
        k->write_us = 0; /* nothing was due: no write started */
    }
    return TC_OK;
}

tc_err tc_sinkset_take(tc_sinkset *s, const tc_sinkset_batch *b, const tc_batch *batch,
                       const uint8_t *sinks, const tc_dlq_batch *dlq, int64_t now_us, char *errstr,
                       size_t errstr_size)
{
    uint64_t cpu;

    if (!s || s->n == 0)
        return TC_OK;
    if (batch->n > s->mask_cap) {
        uint8_t *grown = realloc(s->mask, batch->n);
        if (!grown)
            return tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory");
        s->mask = grown;
        s->mask_cap = batch->n;
    }
    cpu = tc_time_thread_cpu_ns(); /* each sink's share runs from where the previous one's ended */
    for (size_t k = 0; k < s->n && k < b->nsinks; k++) {
        tc_sinkset_sink *sk = s->sinks[k];
        unsigned bit = TC_SINKSET_FIRST_BIT << k;
        tc_sink_rows rows = {.batch = batch,
                             .mask = s->mask,
                             .advance = b->adv[k],
                             .nadvance = b->nadv[k],
                             .dlq = dlq,
                             .now_us = now_us};
        tc_err err;
        if (sk->broken || sk->failed || b->nadv[k] == 0)
            continue;
        for (size_t i = 0; i < batch->n; i++) {
            s->mask[i] = (sinks[i] & bit) != 0;
            rows.nrows += s->mask[i];
        }
        err = sk->sink.ops->append(sk->sink.ctx, &rows, errstr, errstr_size);
        cpu = tc_sinkset_charge(sk, cpu);
        if (err == TC_OK) {
            for (size_t i = 0; i < b->nadv[k]; i++) {
                if (tc_sinkset_part_ok(b->adv[k][i].partition))
                    sk->taken[b->adv[k][i].partition] = b->adv[k][i].next_offset;
            }
            err = tc_sinkset_flush_one(s, sk, now_us, 0, &cpu, errstr, errstr_size);
        } else {
            err = tc_sinkset_fail(sk, err, now_us, errstr, errstr_size);
        }
        if (err != TC_OK)
            return err;
    }
    return TC_OK;
}

tc_err tc_sinkset_flush(tc_sinkset *s, int64_t now_us, int force, char *errstr, size_t errstr_size)
{
    uint64_t cpu = s && s->n ? tc_time_thread_cpu_ns() : 0;

    for (size_t k = 0; s && k < s->n; k++) {
        tc_err err;
        if (s->sinks[k]->broken || s->sinks[k]->failed)
            continue;
        err = tc_sinkset_flush_one(s, s->sinks[k], now_us, force, &cpu, errstr, errstr_size);
        if (err != TC_OK)
            return err;
    }
    return TC_OK;
}

int64_t tc_sinkset_durable_min(const tc_sinkset *s, int32_t partition, int64_t next)
{
    for (size_t k = 0; s && k < s->n; k++) {
        const tc_sinkset_sink *sk = s->sinks[k];
        if (!tc_sinkset_part_ok(partition) || sk->taken[partition] == TC_SINK_MARK_ALL)
            continue;
        tc_sinkset_lower(&next, sk->sink.ops->durable(sk->sink.ctx, partition));
    }
    return next;
}

int tc_sinkset_recover_due(const tc_sinkset *s, int64_t now_us)
{
    for (size_t k = 0; s && k < s->n; k++) {
        if (s->sinks[k]->broken && !s->sinks[k]->failed && now_us >= s->sinks[k]->retry_us)
            return 1;
    }
    return 0;
}

int tc_sinkset_broken(const tc_sinkset *s)
{
    for (size_t k = 0; s && k < s->n; k++) {
        if (s->sinks[k]->broken || s->sinks[k]->failed)
            return 1;
    }
    return 0;
}

tc_err tc_sinkset_recover(tc_sinkset *s, const int32_t *parts, size_t n, int all, int64_t now_us,
                          int64_t *low, char *errstr, size_t errstr_size)
{
    int64_t *mark = malloc((n + 1) * sizeof(*mark));

    if (!mark)
        return tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory");
    for (size_t i = 0; i < n; i++)
        low[i] = TC_SINK_MARK_ALL;
    for (size_t k = 0; s && k < s->n; k++) {
        tc_sinkset_sink *sk = s->sinks[k];
        tc_err err;
        if (sk->failed || !(all || (sk->broken && now_us >= sk->retry_us)))
            continue;
        uint64_t cpu = tc_time_thread_cpu_ns();
        err = sk->sink.ops->recover(sk->sink.ctx, parts, n, mark, errstr, errstr_size);
        tc_sinkset_charge(sk, cpu);
        if (err != TC_OK) {
            /* Retriable: tried again after the next back-off; the others are recovered. */
            if ((err = tc_sinkset_fail(sk, err, now_us, errstr, errstr_size)) != TC_OK) {
                free(mark);
                return err;
            }
            continue;
        }
        for (size_t i = 0; i < n; i++) {
            if (!tc_sinkset_part_ok(parts[i]))
                continue;
            sk->taken[parts[i]] = mark[i];
            tc_sinkset_lower(&low[i], mark[i]);
        }
        if (sk->broken) {
            sk->recoveries++;
            tc_log_info("pipeline", "sink %s recovered: it catches up from its own marks",
                        sk->sink.name);
        }
        sk->broken = 0;
        sk->reason[0] = '\0';
    }
    free(mark);
    return TC_OK;
}

void tc_sinkset_revoke(tc_sinkset *s, const int32_t *parts, size_t n, int commit)
{
    char errstr[TC_ERRSTR_MAX];

    for (size_t k = 0; s && k < s->n; k++) {
        tc_sinkset_sink *sk = s->sinks[k];
        uint64_t cpu = tc_time_thread_cpu_ns();
        tc_err err = sk->sink.ops->revoke(sk->sink.ctx, parts, n, commit && !sk->broken, errstr,
                                          sizeof(errstr));
        tc_sinkset_charge(sk, cpu);
        if (err != TC_OK)
            tc_log_warn("pipeline", "sink %s: %s (the partitions' next owner reads them again)",
                        sk->sink.name, errstr);
        for (size_t i = 0; i < n; i++) {
            if (tc_sinkset_part_ok(parts[i]))
                sk->taken[parts[i]] = TC_SINK_MARK_NONE;
        }
    }
}

int64_t tc_sinkset_mark_max(const tc_sinkset *s, int32_t partition, int64_t mark)
{
    for (size_t k = 0; s && k < s->n && tc_sinkset_part_ok(partition); k++) {
        int64_t t = s->sinks[k]->taken[partition];
        if (t != TC_SINK_MARK_ALL && t > mark)
            mark = t;
    }
    return mark;
}

int tc_sinkset_behind(const tc_sinkset *s, int32_t partition, int64_t high)
{
    for (size_t k = 0; s && k < s->n; k++) {
        const tc_sinkset_sink *sk = s->sinks[k];
        int64_t t = tc_sinkset_part_ok(partition) ? sk->taken[partition] : TC_SINK_MARK_ALL;
        if (sk->broken || sk->failed || (t != TC_SINK_MARK_ALL && t < high))
            return 1;
    }
    return 0;
}

int tc_sinkset_stored_behind(const tc_sinkset *s, int32_t partition, int64_t high)
{
    for (size_t k = 0; s && k < s->n; k++) {
        const tc_sinkset_sink *sk = s->sinks[k];
        if (sk->sink.ops->stored && sk->sink.ops->stored(sk->sink.ctx, partition) < high)
            return 1;
    }
    return 0;
}

size_t tc_sinkset_status_get(const tc_sinkset *s, tc_sinkset_status *out, size_t cap)
{
    size_t n = 0;

    for (size_t k = 0; s && k < s->n && n < cap; k++, n++) {
        const tc_sinkset_sink *sk = s->sinks[k];
        memset(&out[n], 0, sizeof(out[n]));
        snprintf(out[n].name, sizeof(out[n].name), "%s", sk->sink.name);
        out[n].ready = !sk->broken && !sk->failed;
        snprintf(out[n].reason, sizeof(out[n].reason), "%s", sk->reason);
        sk->sink.ops->stats(sk->sink.ctx, &out[n].stats);
        out[n].failures = sk->failures;
        out[n].recoveries = sk->recoveries;
        out[n].commit = sk->commit;
        out[n].cpu_ns = sk->cpu_ns;
        if (sk->sink.ops->thread_cpu_ns)
            out[n].cpu_ns += sk->sink.ops->thread_cpu_ns(sk->sink.ctx);
    }
    return n;
}

void tc_sinkset_leave_out(tc_sinkset *s, unsigned flags)
{
    size_t kept = 0;

    for (size_t i = 0; s && i < s->n; i++) {
        if (s->sinks[i]->sink.ops->flags & flags) {
            s->sinks[i]->sink.ops->close(s->sinks[i]->sink.ctx);
            free(s->sinks[i]);
            continue;
        }
        s->sinks[kept++] = s->sinks[i];
    }
    if (s)
        s->n = kept;
}
