/*
 * sinkset.h -- the sinks a pipeline runs behind process/sink.h, and the rules applied to them all.
 *
 * The pipeline decodes once and asks the set which sinks want a message (the skip rule on each
 * sink's taken mark), notes each message's offset with the batch it went into (a tc_sinkset_batch
 * per batch slot: the `advance` each sink is given), hands every settled batch to the set
 * (append, then the sinks' own flush policy), and takes the minimum of the durable marks for
 * Kafka's commit. Everything that goes wrong with one sink is handled here, the same for every
 * sink: a retriable failure opens the sink's circuit -- it is not ready, gets no rows, its marks
 * stay where they are durable -- until a back-off (capped exponential, full jitter) has passed and
 * its recover callback has succeeded; the pipeline then moves the consumer back to the sink's mark
 * and the sink catches up while the others skip what they hold. A permanent failure stops the run;
 * a fence makes the pipeline resume every sink from what is durable.
 *
 * Sinks are those of pipeline.sinks that have a constructor (process/sinks.c) other than the
 * primary (the store): the pipeline's batch slots drive that one through its primary callbacks
 * (sink.h), and the others take each batch once the primary has made it durable.
 *
 * Not thread-safe: the pipeline thread owns the set.
 */
#ifndef TC_PROCESS_SINKSET_H
#define TC_PROCESS_SINKSET_H

#include <stddef.h>
#include <stdint.h>

#include "core/batch.h"
#include "core/config.h"
#include "core/deadletter.h"
#include "core/error.h"
#include "process/sink.h"

/* A row's sink bits below this one are the pipeline's own (the primary's); sink k of
 * the set has bit TC_SINKSET_FIRST_BIT << k. */
#define TC_SINKSET_FIRST_BIT 8u
/* ...so a set holds at most this many (a row's sinks are one byte). */
#define TC_SINKSET_MAX 5
/* Partitions the set tracks marks of (as the pipeline: ids 0 .. TC_SINKSET_PARTS - 1). */
#define TC_SINKSET_PARTS 16384
/* A sink's reason for not being ready, for /readyz and the log. */
#define TC_SINKSET_REASON_MAX 200
/* Upper bounds (seconds) of the commit latency histogram's buckets, then +Inf: fixed, because
 * Prometheus sums the buckets of every process. */
#define TC_SINKSET_LATENCY_BUCKETS 15
extern const double tc_sinkset_latency_bounds[TC_SINKSET_LATENCY_BUCKETS];

/* A sink's commit latency: from the flush call that started a write (a sink reporting *busy is
 * called again until it is done) to the call that found more rows durable; observed once per
 * such write. A flush with nothing to write, or one that fails, is not observed. */
typedef struct tc_sinkset_latency {
    uint64_t counts[TC_SINKSET_LATENCY_BUCKETS + 1]; /* per bucket, not cumulative; last +Inf */
    uint64_t count;
    double sum; /* seconds */
} tc_sinkset_latency;

/* Count one write of s seconds in h (the store's batches use it too: process/flight.c). */
void tc_sinkset_latency_observe(tc_sinkset_latency *h, double s);

typedef struct tc_sinkset tc_sinkset;
typedef struct tc_sinkset_batch tc_sinkset_batch;

/* How the pipeline waits while a sink's flush is busy: serving the consumer for up to ms. */
typedef void (*tc_sinkset_wait_fn)(void *opaque, int ms);

/* A sink's state, as /readyz, /metrics and the progress log show it. */
typedef struct tc_sinkset_status {
    char name[TC_SINK_NAME_MAX];
    int ready;                          /* circuit closed: taking rows */
    char reason[TC_SINKSET_REASON_MAX]; /* why not, when not */
    tc_sink_stats stats;
    uint64_t failures; /* failed calls that opened (or kept open) the circuit */
    uint64_t recoveries;
    tc_sinkset_latency commit; /* flush to durable */
    /* CPU the sink has cost this process: the pipeline thread's in its calls (open, append,
     * flush, recover, revoke; not the consumer served while a forced flush waits) and its own
     * threads' (tc_sink_ops.thread_cpu_ns). The set's own per-row bookkeeping is not in it. */
    uint64_t cpu_ns;
} tc_sinkset_status;

/* The sinks of cfg's pipeline.sinks that have constructors (possibly none). NULL with errstr on a
 * bad list or a sink that cannot be made. cfg is borrowed and must outlive the set. */
tc_sinkset *tc_sinkset_new(const tc_config *cfg, tc_sinkset_wait_fn wait, void *opaque,
                           char *errstr, size_t errstr_size);
void tc_sinkset_destroy(tc_sinkset *s); /* closes every sink: what is only taken is dropped */
size_t tc_sinkset_count(const tc_sinkset *s);

/* Open newly assigned partitions on every sink; next[i] is lowered to the lowest sink's mark. */
tc_err tc_sinkset_open(tc_sinkset *s, const int32_t *parts, size_t n, int64_t *next, char *errstr,
                       size_t errstr_size);
/* The skip rule: the bits of the sinks (circuit closed) that want offset of partition. */
unsigned tc_sinkset_wants(const tc_sinkset *s, int32_t partition, int64_t offset);

/* A batch slot's share: each sink's advance (next offset per partition). */
tc_sinkset_batch *tc_sinkset_batch_new(const tc_sinkset *s);
void tc_sinkset_batch_destroy(tc_sinkset_batch *b);
void tc_sinkset_batch_reset(tc_sinkset_batch *b);
int tc_sinkset_batch_empty(const tc_sinkset_batch *b);
/* Record offset of partition for the sinks among bits. */
void tc_sinkset_note(tc_sinkset_batch *b, unsigned bits, int32_t partition, int64_t offset);
/* 1 when the batch can take a message of partition within cap partitions per sink. */
int tc_sinkset_room(const tc_sinkset_batch *b, int32_t partition, size_t cap);

/*
 * A batch the primary (the store) has made durable: each ready sink appends its rows (those whose
 * sinks byte has its bit) and flushes what its policy says is due. A retriable failure opens that
 * sink's circuit and is not an error here. TC_ERR_FENCED or a permanent error is returned, with
 * errstr naming the sink.
 */
tc_err tc_sinkset_take(tc_sinkset *s, const tc_sinkset_batch *b, const tc_batch *batch,
                       const uint8_t *sinks, const tc_dlq_batch *dlq, int64_t now_us, char *errstr,
                       size_t errstr_size);
/* Flush the ready sinks: what is due (force 0), or everything taken (force: waits for busy sinks,
 * serving the consumer). Errors as tc_sinkset_take. */
tc_err tc_sinkset_flush(tc_sinkset *s, int64_t now_us, int force, char *errstr, size_t errstr_size);

/* One step of the back-off of every sink, the primary's retries included: capped exponential
 * (100 ms doubling to 10 s) with full jitter, so that concurrent pipelines do not retry in
 * lockstep. Returns the wait (ms) before the next try and doubles *backoff_ms (0: the first). */
long tc_sinkset_backoff_step(long *backoff_ms);

/* min(next, every sink's durable mark of partition): Kafka's commit. */
int64_t tc_sinkset_durable_min(const tc_sinkset *s, int32_t partition, int64_t next);
/* 1 when a sink's circuit is open and its back-off is over: time for tc_sinkset_recover. */
int tc_sinkset_recover_due(const tc_sinkset *s, int64_t now_us);
/* 1 when a sink's circuit is open. */
int tc_sinkset_broken(const tc_sinkset *s);
/*
 * Recover sinks over parts[0..n) (the assigned partitions): every sink with all set (after a
 * fence), else those whose back-off is over. low[i] is set to the lowest mark of the recovered
 * sinks (TC_SINK_MARK_ALL when none was): the consumer goes back there. A retriable failure
 * schedules the next try; a permanent one is returned.
 */
tc_err tc_sinkset_recover(tc_sinkset *s, const int32_t *parts, size_t n, int all, int64_t now_us,
                          int64_t *low, char *errstr, size_t errstr_size);
/* Partitions taken away: commit when they were flushed (tc_sinkset_flush, force) with success. */
void tc_sinkset_revoke(tc_sinkset *s, const int32_t *parts, size_t n, int commit);
/* max(mark, every sink's taken mark of partition): the check that no mark is past a partition's
 * end. */
int64_t tc_sinkset_mark_max(const tc_sinkset *s, int32_t partition, int64_t mark);
/* 1 when some sink does not have offsets below high of partition yet (taken), or is broken. */
int tc_sinkset_behind(const tc_sinkset *s, int32_t partition, int64_t high);

/* Nonzero when a sink's storage, asked for a partition this member does not hold
 * (tc_sink_ops.stored), is behind high. */
int tc_sinkset_stored_behind(const tc_sinkset *s, int32_t partition, int64_t high);

/* Close and leave out the sinks whose ops have a flag of flags (TC_SINK_NO_REPLAY before a replay).
 * Only before any partition is opened; batches made before keep working. */
void tc_sinkset_leave_out(tc_sinkset *s, unsigned flags);

/* Each sink's state into out[0..cap); returns the count. */
size_t tc_sinkset_status_get(const tc_sinkset *s, tc_sinkset_status *out, size_t cap);

#endif
