/*
 * pipeline_int.h -- the pipeline's insides, shared by the files of process/ that make it up.
 *
 * pipeline.c coordinates; each other file does one job for it (see each file's opening comment):
 * serve.c (waits that keep the group membership, Kafka's commit), decode.c (messages into rows or
 * dead letters), catalog_sync.c, reload.c, idle.c (partition ends, --exit-when-idle), status.c
 * (/readyz snapshot, progress log), flight.c (batch slots and the primary's batches in flight),
 * refused.c (rows the primary's storage refuses), rebalance.c, pipeline_new.c. Everything here runs
 * on the pipeline thread, which owns struct tc_pipeline; nothing outside process/ includes this
 * header.
 */
#ifndef TC_PROCESS_PIPELINE_INT_H
#define TC_PROCESS_PIPELINE_INT_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "core/batch.h"
#include "core/deadletter.h"
#include "core/json.h"
#include "core/log.h"
#include "core/timeutil.h"
#include "ingest/dlq_mirror.h"
#include "ingest/kafka.h"
#include "process/dedupe.h"
#include "process/observe.h"
#include "process/pipeline.h"
#include "process/sinkset.h"
#include "process/validate.h"
#include "schema/avro_reading.h"
#include "schema/catalog.h"
#include "schema/json_reading.h"
#include "schema/shape.h"

/* A dead letter keeps at most this much of its payload; the detail says when it was cut. Large
 * enough for any message a broker accepts by default (1 MiB) and then some. */
#define TC_DLQ_PAYLOAD_MAX (16 * 1024 * 1024)
/* Dead letters logged per second at most (each with its input's fields); the rest are counted in
 * the next line. The dead-letter table has them all: the log only points at the kind of trouble. */
#define TC_DLQ_LOG_PER_S 10
/* Back-off between attempts to write a batch the primary sink could not take. */
#define TC_RETRY_MIN_MS 100
#define TC_RETRY_MAX_MS 10000
/* Partitions tracked per batch: a message of one more partition goes into the next batch (see
 * tc_pipeline_room_for; pipeline.partitions_per_batch may lower it). */
#define TC_PENDING_MAX TC_SINK_ADVANCE_MAX
/* Partitions a pipeline tracks (ids 0 .. TC_TRACKED_MAX - 1; kafka.partitions allows 10,000): an
 * assignment of a partition past them is refused, loudly, rather than half tracked. */
#define TC_TRACKED_MAX 16384
/* Messages one poll while serving takes (they are read again after the wait). */
#define TC_SERVE_FETCH_MAX 64

/* What the coordinator keeps of one partition itself (the other sinks' marks are the set's): the
 * primary's skip mark, whether it is assigned, and what a poll while serving handed out. */
typedef struct tc_marks {
    /* The primary's skip mark: its durable mark as read at assignment (a replay's window start
     * instead, process/window.h) or at a resume, then moved by each batch it made durable. */
    int64_t primary_next;
    int assigned;
    int64_t rewind; /* the first offset a poll handed out while serving: read again (or none) */
} tc_marks;

/* tc_marks.rewind when there is nothing to read again. */
#define TC_NO_REWIND (-2)

/* A row's sink bit of the primary (the set's are TC_SINKSET_FIRST_BIT << k). */
#define TC_ROW_PRIMARY 1u

/* Rows of one batch the primary's storage may refuse before the run stops: a handful of bad values
 * is data, more is the schema or a constraint every row breaks (see tc_pipeline_isolate_refused).
 */
#define TC_REFUSED_MAX 64

/*
 * One batch and what goes with it: its rows, its dead letters, and how far it takes each sink on
 * each partition. There are two: the pipeline fills one while the writer has the other in flight
 * (tc_pipeline_dispatch), and settles the one in flight -- the primary's marks, the
 * other sinks, Kafka -- before it hands the writer the next (tc_pipeline_settle), so the sinks take
 * the batches in the order they were read.
 */
typedef struct tc_slot {
    tc_batch *batch;
    tc_batch *filtered; /* the primary's rows of a batch with rows only other sinks want (rare) */
    uint8_t *sinks;     /* per row of batch: TC_SINK_* */
    tc_dlq_batch *dlq;
    tc_partition_offset pending[TC_PENDING_MAX]; /* primary: next offset per partition in batch */
    size_t npending;
    size_t primary_rows;   /* rows of the batch meant for the primary */
    const tc_batch *rows;  /* what the primary was given: batch, or filtered */
    int place;             /* the primary's place it is in flight on, -1 when none */
    tc_sinkset_batch *gen; /* the advances of the other sinks */
    int64_t submit_us;     /* when it went to its place: the primary's commit latency */
} tc_slot;

struct tc_pipeline {
    const tc_config *cfg;
    tc_consumer *consumer;
    tc_sink primary;           /* the primary sink (the store): batches in flight, dead letters */
    tc_sinkset *sinks;         /* the other sinks: the lake, the rollups, testfail, ... */
    tc_observe *obs;           /* NULL when http.listen is empty */
    tc_dlq_mirror *dlq_mirror; /* NULL when kafka.dlq_mirror is off */
    tc_log_limit dlq_log;      /* the dead letters' log lines (TC_DLQ_LOG_PER_S) */
    tc_sinkset_latency primary_commit; /* the primary's batches, submit to commit (/metrics) */
    tc_schema_cache *schemas;          /* NULL when registry.url is empty */
    tc_catalog *catalog;               /* the subject's versions; NULL when registry.url is empty */
    int64_t catalog_next_us;           /* when to ask the registry for new versions again */
    int64_t catalog_forced_us;         /* last refresh forced by an unknown writer schema id */
    int primary_ok;                    /* the primary's last write (or connection) succeeded */
    int64_t last_commit_us;
    char not_ready[TC_OBSERVE_REASON_MAX];
    size_t dyn_logged;   /* dynamic columns announced in the log so far */
    int closing;         /* being destroyed: take no new partitions */
    tc_windows *windows; /* a replay's ranges (tc_pipeline_set_windows); NULL in a normal run */
    int64_t alone_checked_us; /* a replay: when the group's members were last counted */
    tc_slot *slots;           /* one per place of the primary (postgres.writers), and one more */
    size_t nslots;
    tc_slot *cur;     /* the batch being filled */
    tc_slot **flight; /* the batches the primary has, oldest first (a ring of nslots) */
    size_t flight_head, nflight;
    int chain_broken;  /* a batch in flight failed: settle all before handing out another */
    int backlog;       /* the last poll filled its array: more messages are waiting already */
    tc_dedupe *dedupe; /* NULL when dedupe.window_s is 0 */
    /* Per partition (indexed like marks): the dedupe lookback's dead-letter offsets, which it
     * skips. Freed when the lookback is over (tc_pipeline_remember past them). */
    struct tc_lookback {
        int64_t *dead;
        size_t ndead;
    } * lookback;
    size_t nlookback;
    uint64_t row_fp; /* fingerprint of the row being decoded (tc_pipeline_shape) */
    int row_has_id;  /* ...made from its message_id */
    /* The last row taken into the batch, whose dedupe verdict waits for the next message (decode.c,
     * "A verdict one message late"): set by tc_pipeline_take, settled before anything else reads
     * or sends the batch or adds a dead letter to it. */
    struct tc_dedupe_late {
        int on;
        size_t row; /* its index in cur->batch */
        uint64_t fp;
        int has_id;
        unsigned sinks;
        int64_t time_us;
        tc_message msg; /* partition, offset, lengths; payload (up to TC_DLQ_PAYLOAD_MAX bytes)
                         * and key in buf: its dead letter if it is a resend */
        char *buf;
        size_t cap;
    } late;
    volatile sig_atomic_t *reload_flag; /* tc_pipeline_set_reload; NULL: no reloads */
    tc_config *reload_live;
    tc_pipeline_config_fn reload_load;
    void *reload_opaque;
    tc_sink_refusal refused[TC_REFUSED_MAX]; /* rows: indexes in the primary's rows of a batch */
    size_t nrefused;
    tc_partition_offset kafka_offs[TC_TRACKED_MAX]; /* tc_pipeline_commit_kafka's */
    uint64_t kafka_sum;       /* a checksum of the offsets last committed to Kafka */
    int64_t kafka_checked_us; /* when tc_pipeline_commit_kafka_moved last looked */
    int check_ends;           /* a new assignment: compare the marks with the partitions' ends */
    tc_marks *marks;          /* indexed by partition */
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
    int serving;      /* in tc_pipeline_serve: a revocation only sets fenced */
    int in_rebalance; /* in a rebalance callback, which must not poll */
    int paused;       /* tc_pipeline_serve paused the partitions: the loop resumes them */
    int rewinds;      /* some marks have a rewind */
    tc_pipeline_stats stats;
    tc_message msgs[TC_CONSUMER_FETCH_MAX];
    tc_message serve_msgs[TC_SERVE_FETCH_MAX]; /* what a poll while serving hands out anyway */
};

/* tc_pipeline_decode's answer when a stop was requested while the registry was unreachable. */
#define TC_PIPELINE_STOPPED ((tc_reject)(TC_REJECT__COUNT + 1))

/* pipeline.c */
tc_err tc_pipeline_fence(tc_pipeline *p, const char *why);
tc_err tc_pipeline_resume(tc_pipeline *p);

/* serve.c */
void tc_pipeline_serve(tc_pipeline *p, int ms);
void tc_pipeline_unpause(tc_pipeline *p);
void tc_pipeline_await(tc_pipeline *p, int place);
int tc_pipeline_wait(tc_pipeline *p, long ms, int fence);
void tc_pipeline_sinks_wait(void *opaque, int ms);
void tc_pipeline_commit_kafka(tc_pipeline *p, int wait);
void tc_pipeline_commit_kafka_moved(tc_pipeline *p);
int tc_pipeline_backoff(tc_pipeline *p, long *backoff_ms);

/* decode.c */
tc_err tc_pipeline_lookback_prepare(tc_pipeline *p, int32_t partition, int64_t from, int64_t to);
tc_err tc_pipeline_dead_letter(tc_pipeline *p, const tc_message *m, tc_reject reason,
                               const char *stage, const char *detail);
tc_reject tc_pipeline_shape(tc_pipeline *p, size_t row, int32_t writer_id, int32_t partition);
tc_reject tc_pipeline_decode(tc_pipeline *p, const tc_message *m, int32_t *writer_id, char *detail,
                             size_t detail_size);
tc_err tc_pipeline_remember(tc_pipeline *p, const tc_message *m);
tc_err tc_pipeline_take(tc_pipeline *p, const tc_message *m, unsigned sinks);
tc_err tc_pipeline_dedupe_settle(tc_pipeline *p);

/* catalog_sync.c */
void tc_pipeline_refresh_catalog(tc_pipeline *p);
int tc_pipeline_catalog_wait(tc_pipeline *p);

/* reload.c */
void tc_pipeline_reload(tc_pipeline *p);

/* idle.c */
void tc_pipeline_check_ends(tc_pipeline *p);
int tc_pipeline_topic_done(tc_pipeline *p);

/* status.c */
void tc_pipeline_publish(tc_pipeline *p);
void tc_pipeline_progress(tc_pipeline *p, int64_t *last_us, uint64_t *last_count);

/* refused.c */
const tc_batch *tc_pipeline_primary_rows(tc_slot *s);
tc_err tc_pipeline_isolate_refused(tc_pipeline *p, tc_slot *s, const tc_batch *rows, char *errstr,
                                   size_t errstr_size);

/* flight.c */
tc_err tc_pipeline_slot_init(tc_slot *s, const tc_config *cfg, const tc_sinkset *sinks);
void tc_pipeline_slot_free(tc_slot *s);
void tc_pipeline_drop(tc_pipeline *p);
void tc_pipeline_note(tc_partition_offset *pending, size_t *npending, int32_t partition,
                      int64_t offset);
tc_err tc_pipeline_room_for(tc_pipeline *p, int32_t partition);
tc_err tc_pipeline_settle(tc_pipeline *p, int lost);
tc_err tc_pipeline_settle_done(tc_pipeline *p);
tc_err tc_pipeline_batch_due(tc_pipeline *p, int timed_out, int *due);
tc_err tc_pipeline_dispatch(tc_pipeline *p);
tc_err tc_pipeline_flush(tc_pipeline *p);

/* rebalance.c */
tc_marks *tc_pipeline_marks(tc_pipeline *p, int32_t partition);
int tc_pipeline_replay_alone(tc_pipeline *p);
tc_err tc_pipeline_on_assign(void *opaque, const int32_t *parts, size_t n, int64_t *next);
void tc_pipeline_on_revoke(void *opaque, const int32_t *parts, size_t n, int lost);

/* the primary sink, driven through its tc_sink_primary_ops (rebalance.c, flight.c) */
void tc_pipeline_primary_drop(tc_pipeline *p);
tc_err tc_pipeline_primary_reload(tc_pipeline *p, const int32_t *parts, size_t n, int64_t *low,
                                  char *errstr, size_t errstr_size);
int64_t tc_pipeline_primary_next(const tc_pipeline *p, int32_t partition);
unsigned tc_pipeline_sinks_for(tc_pipeline *p, int32_t partition, int64_t offset);
void tc_pipeline_note_offset(tc_pipeline *p, unsigned sinks, int32_t partition, int64_t offset);
tc_err tc_pipeline_primary_start(tc_pipeline *p, int64_t now_us, char *errstr, size_t errstr_size);
int tc_pipeline_places_busy(tc_pipeline *p);
tc_err tc_pipeline_primary_flush(tc_pipeline *p);

#endif
