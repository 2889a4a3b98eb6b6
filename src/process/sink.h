/*
 * sink.h -- one interface for every place readings go: the pipeline coordinates N sinks.
 *
 * In the spirit of Fluent Bit's output plugins: a sink is a context (its own state, opaque to the
 * pipeline) and a small table of callbacks. The pipeline reads Kafka, decodes and validates once,
 * and hands each batch to every sink that wants some of it; it keeps, per sink and per partition,
 * two marks and everything generic -- the skip rule, Kafka's commit, retries with back-off, the
 * circuit breaker, readiness, metrics -- written once for every sink. A sink only takes rows,
 * makes them durable and says how far it is.
 *
 * Marks (per sink, per partition; offsets are Kafka's, "next" means the first offset NOT held):
 *   taken    the next offset the sink has been given: rows below it are in the sink's memory
 *            (open files, pending aggregates, a batch on a writer) or durable. The pipeline keeps
 *            it, moving it at every append to the `advance` entries of the batch.
 *   durable  the next offset the sink holds durably (committed rows, a progress file, a written
 *            aggregate with its mark in the same transaction). The sink reports it (durable()).
 * durable <= taken always. TC_SINK_MARK_NONE (-1) is "nothing yet", lower than every offset.
 *
 * The rules the coordinator applies, the same for every sink:
 *   skip     a message at offset o of partition p goes to sink k only when o >= taken[k][p]. After
 *            a crash or a recovery the consumer starts at the lowest mark of all sinks; a sink
 *            that is behind catches up from its own mark while the others skip what they hold.
 *   commit   Kafka's committed offset of p is the minimum over the sinks of durable[k][p]
 *            (informational: lag monitoring; the sinks' own marks are what a restart reads).
 *   drop     a revocation that cannot write, a crash, a fence or a transient failure drops what
 *            is only taken: the sink forgets it, and the pipeline moves taken back to durable and
 *            reads the stretch again. A sink that aggregates in memory (the rollups, the quality
 *            monitor, online features) is therefore exact as long as its durable mark is written
 *            atomically with what it aggregates.
 *
 * Callbacks (all called on the pipeline thread, one at a time, never concurrently for one sink):
 *   open     partitions were assigned: recover them (remove what a crashed write left half done)
 *            and return each one's durable mark in next[i] (TC_SINK_MARK_NONE: nothing yet;
 *            TC_SINK_MARK_ALL: this sink wants nothing of the partition, e.g. a replay that does
 *            not feed it). taken starts there.
 *   append   rows of one batch; the sink takes those whose mask byte is nonzero. `advance` says,
 *            per partition, the next offset consumed for this sink, messages that did not become
 *            rows (dead letters) included: after a successful append, taken moves there. Rows of
 *            a partition come in offset order, each offset at most once between an open/recover
 *            and the next; batches come in the order they were read.
 *   flush    make durable. force == 0: what is due by the sink's own policy (size, age, an
 *            interval), possibly only STARTED on a thread of its own; force != 0: everything
 *            taken. *busy is set to 1 while a write is still under way (the pipeline then serves
 *            the consumer and calls flush again, with the same force, within TC_SINK_SLICE_MS);
 *            a write finished since the last call reports its outcome here. A sink's
 *            durable() moves only inside its callbacks (an append may commit what it rolls).
 *   durable  the durable mark of a partition it has open (no I/O: it is asked often).
 *   recover  after a failure (a retriable error from append or flush, or a fence): drop what is
 *            only taken of every partition, including a write under way (wait for it or abandon
 *            it: once recover returns, nothing of the old writes may still become durable unless
 *            durable() says so), and return the durable marks of parts[] as open does. The
 *            pipeline calls it after a back-off, again and again while it fails retriably.
 *   revoke   partitions are taken away. commit != 0: the pipeline has flushed them (force) with
 *            success first, the sink just forgets them; commit == 0 (lost, fenced, or the flush
 *            failed): drop what is only taken of them, never writing it.
 *   stats    counters for /metrics (cheap: called once per loop turn).
 *   close    free everything. What is only taken is dropped, never written: the pipeline
 *            flushes (force) before a clean stop.
 *
 * Errors. TC_OK, or a tc_err with errstr (which locates the input: topic, partition, offset, file,
 * table). Retriable (tc_err_is_retriable) means "back off and recover": the coordinator marks the
 * sink not ready, stops giving it rows, waits (capped exponential back-off with jitter, serving
 * the consumer), calls recover, moves the consumer back to the lowest mark and goes on; the other
 * sinks skip what they hold while it catches up. TC_ERR_FENCED: the sink found a partition moved
 * on by another member; it must leave that partition's durable state as the other member wrote it
 * (roll back, never overwrite); the pipeline drops what every sink holds and resumes from what is
 * durable. Anything else is permanent: the circuit opens, the run stops with the error (the next
 * run resumes the sink from its durable marks).
 *
 * Fencing, the rule every sink must keep: a durable write moves a partition's mark only from the
 * value this member last read or wrote (a conditional UPDATE, a progress file replaced under a
 * lock after checking it), and fails with TC_ERR_FENCED otherwise. With that, a member evicted
 * while stalled and waking up later cannot write over the partition's next owner: exactly once
 * holds per sink whatever the members do (docs/design.md, "Writing a sink").
 *
 * Blocking. A callback may block on its own I/O, but while it does the consumer is not served and
 * the group evicts a member silent for max.poll.interval.ms: I/O that can stall for long (a
 * database under a lock) belongs on a thread of the sink's own, with flush reporting *busy. A
 * callback never sleeps to back off: the pipeline does that, serving the consumer.
 *
 * Ownership. rows (the batch, the mask, the advance array, the dead letters) are the pipeline's,
 * valid during the append call only -- unless the sink sets TC_SINK_KEEPS_ROWS in its flags: then
 * the pipeline leaves the batch unchanged until the sink's durable marks pass every `advance` of
 * it or until recover/revoke/close drops it, and gives the sink at most `max_in_flight` such
 * batches not yet durable (the store's writers: postgres.writers). The context is the sink's; the
 * ops table is static.
 *
 * Order between sinks. Sinks are appended in the order of pipeline.sinks. A sink flagged
 * TC_SINK_PRIMARY (the store: at most one, first) owns the dead letters and may refuse rows: the
 * other sinks take a batch only once the primary has made it durable, without the rows it refused,
 * so every sink holds the same readings.
 */
#ifndef TC_PROCESS_SINK_H
#define TC_PROCESS_SINK_H

#include <stddef.h>
#include <stdint.h>

#include "core/batch.h"
#include "core/config.h"
#include "core/deadletter.h"
#include "core/error.h"
#include "core/reject.h"

/* Sinks one pipeline runs: a row's sinks are a byte of bits (tc_sink_rows.mask is per sink). */
#define TC_SINKS_MAX 8
/* A sink's name ("store", "lake", "rollups", "quality", "testfail"): a /metrics label value. */
#define TC_SINK_NAME_MAX 32
/* The longest a flush reporting *busy waits before it is called again (the consumer is served
 * meanwhile), and the longest a well-behaved callback blocks. */
#define TC_SINK_SLICE_MS 100
/* Partitions one batch advances a sink on, at most (tc_sink_rows.nadvance): a batch with readings
 * of more goes to the sinks early, never cut short of an offset. */
#define TC_SINK_ADVANCE_MAX 4096

/* Marks: nothing held yet, and "wants nothing of this partition". */
#define TC_SINK_MARK_NONE (-1LL)
#define TC_SINK_MARK_ALL  INT64_MAX

/* tc_sink_ops.flags. */
#define TC_SINK_PRIMARY    1u /* owns the dead letters, settles a batch before the others */
#define TC_SINK_KEEPS_ROWS 2u /* keeps the batch past append, until durable (see Ownership) */
/* Left out of a replay (`thermocline replay`, process/window.h): the replay recomputes what the
 * sink holds of its range itself (the rollups). Optional; a sink without it takes a replay's rows
 * by its own marks, as in a run. */
#define TC_SINK_NO_REPLAY 4u

/* One batch as a sink sees it. */
typedef struct tc_sink_rows {
    const tc_batch *batch;              /* every row of the batch, in read order */
    const uint8_t *mask;                /* per row: nonzero when meant for this sink */
    size_t nrows;                       /* rows with a nonzero mask */
    const tc_partition_offset *advance; /* per partition: the next offset consumed for this sink */
    size_t nadvance;
    const tc_dlq_batch *dlq; /* the batch's dead letters (the primary writes them) */
    int64_t now_us;          /* the loop's clock when the batch was settled */
} tc_sink_rows;

/* Counters a sink keeps (the pipeline adds its own: retries, state, marks). */
typedef struct tc_sink_stats {
    uint64_t rows;         /* rows taken (appended) */
    uint64_t rows_durable; /* rows made durable */
    uint64_t flushes;      /* durable writes that succeeded */
    uint64_t pending;      /* rows, aggregate groups or bytes held only in memory now */
} tc_sink_stats;

/* The primary's extra callbacks (below). */
typedef struct tc_sink_primary_ops tc_sink_primary_ops;

typedef struct tc_sink_ops {
    const char *name;  /* default instance name, e.g. "lake" */
    unsigned flags;    /* TC_SINK_* */
    int max_in_flight; /* with TC_SINK_KEEPS_ROWS: batches the sink may hold not yet durable */
    tc_err (*open)(void *ctx, const int32_t *parts, size_t n, int64_t *next, char *errstr,
                   size_t errstr_size);
    tc_err (*append)(void *ctx, const tc_sink_rows *rows, char *errstr, size_t errstr_size);
    tc_err (*flush)(void *ctx, int64_t now_us, int force, int *busy, char *errstr,
                    size_t errstr_size);
    int64_t (*durable)(void *ctx, int32_t partition);
    tc_err (*recover)(void *ctx, const int32_t *parts, size_t n, int64_t *next, char *errstr,
                      size_t errstr_size);
    tc_err (*revoke)(void *ctx, const int32_t *parts, size_t n, int commit, char *errstr,
                     size_t errstr_size);
    void (*stats)(void *ctx, tc_sink_stats *out);
    void (*close)(void *ctx);
    /* Optional (NULL: not asked). The next offset of partition the sink's storage holds, whoever
     * owns the partition now (TC_SINK_MARK_NONE: nothing; TC_SINK_MARK_ALL: not known). Only
     * `run --exit-when-idle` asks it, for partitions this member does not hold: a member that
     * holds none yet (its group still dropping killed members) must not take a topic the store
     * has whole for one this sink has too. May do I/O; never changes anything. */
    int64_t (*stored)(void *ctx, int32_t partition);
    /* Optional (NULL: the sink has no thread of its own). CPU nanoseconds its own threads (a
     * writer's) have used so far. The calls above run on the pipeline's thread and the sink set
     * counts their CPU itself (tc_sinkset_status.cpu_ns); this is the rest of the sink's cost. */
    uint64_t (*thread_cpu_ns)(void *ctx);
    /* The primary's batches in flight (TC_SINK_PRIMARY only; NULL for every other sink). */
    const tc_sink_primary_ops *primary;
} tc_sink_ops;

/* A row the primary's storage refuses although it passed validation (a value too long for a
 * column an operator narrowed, a CHECK added to the table): its index in the rows written, and
 * the storage's reason (the dead letter's detail). */
typedef struct tc_sink_refusal {
    size_t row;
    char why[TC_REJECT_DETAIL_MAX];
} tc_sink_refusal;

/*
 * The primary's batches in flight (TC_SINK_PRIMARY | TC_SINK_KEEPS_ROWS; the store). The
 * pipeline's batch slots are generic: it fills one while the primary has up to max_in_flight
 * others, each on a "place" (the store: a writer with a connection of its own), and settles them
 * oldest first. A batch is durable, or not, in the order of submit; what a place was given stays
 * the pipeline's, unchanged, until collect of that place has returned. Only the primary is driven
 * this way: it decides which rows are stored at all (refusals become dead letters, which it owns),
 * so the others take a batch only once it is durable there, as settled. A failed batch is written
 * again in place (rewrite) after a back-off the pipeline sleeps serving the consumer: the batch is
 * still in memory, and reading it again from Kafka would cost more than the back-off.
 *
 * Its marks: durable() and open/recover as for any sink. The pipeline's skip mark of the primary is
 * the durable mark read at open/recover (a replay's window start instead), moved by every batch it
 * settles: the same as durable() once the batches in flight are settled, which they are before
 * anything moves the consumer back. Fencing is the primary's own (the argument is in its header,
 * store/sink_store.h).
 */
struct tc_sink_primary_ops {
    /* The start of a run: connect, prepare what the first writes need. A failure is only
     * reported: the first write tries again. */
    tc_err (*start)(void *ctx, int64_t now_us, char *errstr, size_t errstr_size);
    /* A place holding no batch, or -1 when every one has one. */
    int (*free_place)(void *ctx);
    /* Start making the batch durable on free place w: rows->batch holds only the primary's rows
     * (rows->mask is NULL), rows->advance (at most TC_SINK_ADVANCE_MAX) moves its marks,
     * rows->dlq are the batch's dead letters. Never blocks; the outcome comes with collect. */
    void (*submit)(void *ctx, int w, const tc_sink_rows *rows);
    /* 1 when place w's batch is done: collect will not block. */
    int (*done)(void *ctx, int w);
    /* Wait up to timeout_ms for place w's batch: 1 when it is done. */
    int (*await)(void *ctx, int w, int timeout_ms);
    /* Block until place w's batch is done and free the place: TC_OK when durable (durable()
     * moved), else the error, with *cascaded set when it only rolled back because a batch
     * submitted before it failed (rewrite it as it is). TC_OK when w has no batch. */
    tc_err (*collect)(void *ctx, int w, int *cascaded, char *errstr, size_t errstr_size);
    /* Write a collected batch again, inline, on its idle place w (rows: as for submit, possibly
     * fewer rows and more dead letters): TC_OK when durable. May block on its I/O. */
    tc_err (*rewrite)(void *ctx, int w, const tc_sink_rows *rows, char *errstr, size_t errstr_size);
    /* After a failure of place w's batch: the rows of `rows` the storage refuses, into
     * out[0..*n) (*n == 0: the failure is not the rows'). TC_ERR_INVALID, with errstr, when
     * more than cap, or every row of a batch of several, are refused: that is the schema, not
     * some rows. Leaves the storage as it was. */
    tc_err (*refused)(void *ctx, int w, const tc_batch *rows, tc_sink_refusal *out, size_t cap,
                      size_t *n, char *errstr, size_t errstr_size);
    /* The offsets in [from, to) of partition that became dead letters (at most cap, into
     * out[0..*n)): the dedupe lookback reads that stretch again and skips them. */
    tc_err (*dead_letters)(void *ctx, int32_t partition, int64_t from, int64_t to, int64_t *out,
                           size_t cap, size_t *n, char *errstr, size_t errstr_size);
    /* The durable marks of parts[0..n), whoever owns them (as stored: one query for many
     * partitions; the idle check of run --exit-when-idle). Changes nothing. */
    tc_err (*stored_many)(void *ctx, const int32_t *parts, size_t n, int64_t *next, char *errstr,
                          size_t errstr_size);
    /* A replay (process/window.h): its batches move the marks from whatever is stored (the
     * replay owns its ranges by its windows, not by the marks it read). */
    void (*unfenced)(void *ctx);
};

/* A sink instance: its callbacks and its context. */
typedef struct tc_sink {
    const tc_sink_ops *ops;
    void *ctx;
    char name[TC_SINK_NAME_MAX];
} tc_sink;

/*
 * A sink's constructor: fill *out (ops, ctx; name defaults to ops->name) from the configuration
 * (borrowed; it outlives the sink). Nothing is opened yet: partitions come with open. TC_OK, or an
 * error with errstr naming the setting at fault. TC_OK with out->ops left NULL: the sink is off by
 * configuration (a shorthand, e.g. lake.dir empty).
 */
typedef tc_err (*tc_sink_new_fn)(const tc_config *cfg, tc_sink *out, char *errstr,
                                 size_t errstr_size);

/* The sinks a build knows, by name (process/sinks.c): NULL when there is none of that name, or
 * when it is a primary (the pipeline makes and drives that one itself). */
tc_sink_new_fn tc_sink_find(const char *name);
/* The primary sink pipeline.sinks names (its constructor, its name into name[0..name_size)), or
 * NULL when the list names none. */
tc_sink_new_fn tc_sink_find_primary(const char *list, char *name, size_t name_size);

/*
 * Parse pipeline.sinks ("store,lake,rollups", names separated by commas, each at most once) into
 * names[0..*n) (each TC_SINK_NAME_MAX bytes). TC_ERR_CONFIG with errstr for an unknown name, a
 * repeated one, an empty list or more than TC_SINKS_MAX.
 */
tc_err tc_sink_parse_list(const char *list, char (*names)[TC_SINK_NAME_MAX], size_t *n,
                          char *errstr, size_t errstr_size);

#endif
