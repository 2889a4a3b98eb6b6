/*
 * monitor.h -- the data-quality monitor's engine: batches in, quality figures and anomalies out to
 * PostgreSQL, exactly once.
 *
 * The monitor is what the quality sink (quality/sink.c) drives. It keeps one *lane* per assigned
 * Kafka partition: a detector set (detect.h), the per-minute metrics (metrics.h) and a rules
 * evaluator (rules.h) of the partition's devices, the partition's event-time watermark, and two
 * marks -- `next`, the offset after the last message fed, and `durable`, the one stored in
 * quality_offsets. A lane per partition, not one for all, because a partition is what moves
 * between members of the consumer group: its checkpoint must hold its devices and nothing else.
 * The detectors hold a series for each of the six fixed fields but watch the four metrics; the
 * coordinates only with detect_location (quality.detect_location). Their series keep their place
 * in the checkpoint either way, and a lane opened without it resolves the coordinates' findings a
 * run with it left open (tc_qd_resolve_unwatched): they are written by its first flush.
 *
 * Exactly once. A flush writes, in ONE transaction on the writer's thread (writer.h): every lane's
 * metric rows (all of them, closed minutes or not: quality_1m adds what it is given to what it
 * holds, so a minute written in several flushes sums up), the fleet's rows, the dead-letter counts,
 * the findings opened and resolved since the last flush, and per lane its `next` mark in
 * quality_offsets with the records of its devices whose detectors changed since its last
 * checkpoint in quality_detector_state (ckpt.h). The mark moves only from the one this
 * member read (the store's fencing, store.h): a lane another member moved on fails the whole
 * transaction with TC_ERR_FENCED. After a crash (kill -9 included) a lane opens from its stored
 * mark and checkpoint, the caller feeds it again from that mark, and what it then writes is what it
 * had not written: no figure is lost or counted twice, and an open finding is neither forgotten nor
 * opened again (the checkpoint holds it open; the rules' open findings are given back to the
 * evaluator from the anomalies table, tc_qr_eval_restore).
 *
 * What a restart does forget: the metrics' per-device memory (latest event time, usual interval),
 * so a device's first readings after it are not judged out of order or a gap; and the rules'
 * pending states and rate/stuck memory (a `for` starts again). docs/quality.md lists these.
 *
 * A failed flush keeps everything it was to write (its statements are kept and sent first next
 * time): nothing is lost to a retriable failure. A fenced one drops everything of every lane
 * (tc_qmon_open again reads where the stored marks are). Open, revoke, reset and destroy first
 * wait for a flush under way, so a partition's marks are never read, dropped or taken over while
 * a write may still move them.
 *
 * Reload (SIGHUP): tc_qmon_reload parses the rules file again; a refused file (errstr says
 * FILE:LINE:COL) leaves the running rules in force; an accepted one gets new evaluators, and rules
 * of the same name that were firing stay firing (with their start).
 *
 * Ownership: the monitor owns its connection, its writer (a thread and a connection of its own),
 * its lanes and its rules. Batches passed to tc_qmon_add are read during the call only. Listener
 * events live for the callback only, which runs on the caller's thread (in tc_qmon_flush_poll).
 * Not thread-safe: the pipeline's thread drives it; tc_qmon_render_metrics renders a stats
 * snapshot.
 */
#ifndef TC_QUALITY_MONITOR_H
#define TC_QUALITY_MONITOR_H

#include <stddef.h>
#include <stdint.h>

#include "core/batch.h"
#include "core/deadletter.h"
#include "core/error.h"
#include "core/json.h"
#include "core/reject.h"
#include "quality/metrics.h"

/* Partitions (lanes) a monitor tracks: ids 0 .. TC_QMON_LANES_MAX - 1. */
#define TC_QMON_LANES_MAX 16384
/* Dead letters and findings held between two flushes; past either, tc_qmon_due says flush. */
#define TC_QMON_DEAD_MAX   100000
#define TC_QMON_EVENTS_MAX 100000
/* A lane's mark when nothing is stored for it. */
#define TC_QMON_MARK_ABSENT (-2)
/* Longest schema name, group id and topic name taken. */
#define TC_QMON_NAME_MAX 256

typedef struct tc_qmon_options {
    const char *dsn;           /* libpq connection string; "": dry, nothing read or written */
    const char *schema;        /* the pipeline's schema, unquoted (e.g. telemetry) */
    const char *group;         /* quality_offsets.group_id */
    const char *topic;         /* quality_offsets.topic */
    const char *rules_file;    /* NULL or "": no rules */
    size_t max_devices;        /* per partition */
    double late_after_s;       /* quality.late_after_s */
    int64_t flush_interval_ms; /* longest time between flushes (wall clock) */
    int64_t tick_s;            /* event time between silence checks */
    int detect_location;       /* quality.detect_location: the detectors watch the coordinates */
} tc_qmon_options;

void tc_qmon_options_default(tc_qmon_options *o);

/* An anomaly opened or resolved, as committed (tc_qmon_set_listener): the alerting client's
 * input. Strings live for the call. */
typedef struct tc_qmon_event {
    const char *device;
    const char *metric;   /* NULL: the device as a whole (silence, interval, expr, required) */
    const char *kind;     /* "spike", ..., "silence", or a rule's check: "range", ... */
    const char *rule;     /* NULL for the detectors' findings */
    const char *severity; /* "warning" or "critical" */
    int32_t partition;
    int64_t start_us;
    int64_t end_us;                   /* 0: opened; else resolved at */
    double score, observed, expected; /* NaN where not known */
} tc_qmon_event;

typedef void (*tc_qmon_event_fn)(void *opaque, const tc_qmon_event *ev);

/* Kinds of finding: the detectors' (tc_qd_kind) then the rules' checks (tc_qr_kind). */
#define TC_QMON_KINDS 11
/* The name of kind i ("spike", ...) and *source "detector" or "rule"; NULL past the last. */
const char *tc_qmon_kind_label(int i, const char **source);

typedef struct tc_qmon_stats {
    uint64_t readings, readings_durable, dead_letters, flushes, flush_failures, fenced;
    uint64_t opened, resolved, open_now; /* findings committed */
    uint64_t late, out_of_order, gaps;
    uint64_t refused; /* readings of devices past max_devices or with too long ids */
    uint64_t reloads, reloads_refused;
    uint64_t checkpoint_devices; /* detector records committed (devices changed per flush) */
    size_t lanes, devices;
    int64_t watermark_us; /* the largest event time seen, 0 before any */
    int64_t flushed_us;   /* wall clock of the last committed flush, 0 before any */
    uint64_t opened_by_kind[TC_QMON_KINDS], resolved_by_kind[TC_QMON_KINDS];
    uint64_t dead_by_reason[TC_REJECT__COUNT];
    tc_qm_sketch delay; /* event-to-ingest delay of every reading written */
} tc_qmon_stats;

typedef struct tc_qmon tc_qmon;

/* Parses the rules file (errstr FILE:LINE:COL when refused). Connects at the first open. A dry
 * monitor (dsn "") opens fresh lanes and makes every document a flush would send, then drops it:
 * what bench/bench_quality times as the monitor's whole cost but PostgreSQL's. */
tc_qmon *tc_qmon_new(const tc_qmon_options *o, char *errstr, size_t errstr_size);
void tc_qmon_destroy(tc_qmon *m);

/* Called after each flush's commit for each finding it opened or resolved. */
void tc_qmon_set_listener(tc_qmon *m, tc_qmon_event_fn fn, void *opaque);

/* Take partitions parts[0..n): load each one's mark and checkpoint, and the rules' open findings
 * of its devices. next[i] receives the mark (TC_QMON_MARK_ABSENT when none is stored): the caller
 * feeds the lane from there. A partition already open is opened again from what is stored. */
tc_err tc_qmon_open(tc_qmon *m, const int32_t *parts, size_t n, int64_t *next, char *errstr,
                    size_t errstr_size);
/* Forget partitions (revoked or lost) without writing: what they did not flush is read again
 * by their next owner from the stored marks. */
void tc_qmon_revoke(tc_qmon *m, const int32_t *parts, size_t n);

/* Forget every partition and everything held (a fence, a recovery): tc_qmon_open again. */
void tc_qmon_reset(tc_qmon *m);

/*
 * Feed one batch: rows where mask[i] != 0 (mask NULL: all) -- each row's lane is its partition,
 * which must be open -- and the dead letters of dlq (NULL: none), at ingest time ingest_us (wall
 * clock). marks[0..nmarks) are the next offsets the batch takes the lanes to (messages of a
 * partition that gave no row count too). Rows of partitions not open are counted as refused.
 */
void tc_qmon_add(tc_qmon *m, const tc_batch *rows, const uint8_t *mask, const tc_dlq_batch *dlq,
                 const tc_partition_offset *marks, size_t nmarks, int64_t ingest_us);

/* Nonzero when a flush is due at wall clock now_us: a minute of event time closed since the last
 * flush (at most one every 5 s), flush_interval_ms went by with something to write, the held
 * dead letters or findings reached half their caps, or a lane's metric rows half their pool. */
int tc_qmon_due(const tc_qmon *m, int64_t now_us);
/* Nonzero when something fed is not written yet. */
int tc_qmon_pending(const tc_qmon *m);
/* Write everything in one transaction (see above) and wait for it. TC_ERR_FENCED: every lane was
 * dropped. */
tc_err tc_qmon_flush(tc_qmon *m, char *errstr, size_t errstr_size);

/*
 * The same flush without waiting (the sink's): tc_qmon_flush_start prepares it on the caller's
 * thread -- the documents, the checkpoints, the marks it moves from -- and hands it to the
 * writer's thread (quality/writer.h); feeding goes on meanwhile. Nothing is durable, and no
 * finding announced, before tc_qmon_flush_poll has seen it commit. TC_OK when started (or one is
 * under way already); an error when it could not be prepared. A dry monitor is done at once.
 */
tc_err tc_qmon_flush_start(tc_qmon *m, char *errstr, size_t errstr_size);
/* 1 while a started flush is still being written (wait == 0). Otherwise 0, with *err the outcome
 * of the flush that finished (applied now: marks moved, findings announced; TC_ERR_FENCED: every
 * lane dropped), or of one that open/revoke/destroy waited for, or TC_OK. wait != 0 blocks. */
int tc_qmon_flush_poll(tc_qmon *m, int wait, tc_err *err, char *errstr, size_t errstr_size);
/* Nonzero while a started flush's outcome is not applied. */
int tc_qmon_flushing(const tc_qmon *m);
/* CPU nanoseconds the monitor's writer thread has spent so far (0 when dry). */
uint64_t tc_qmon_writer_cpu_ns(const tc_qmon *m);
/* The stored mark of a partition (TC_QMON_MARK_ABSENT when not open or none stored): Kafka's
 * committed offset must not pass it. */
int64_t tc_qmon_durable(const tc_qmon *m, int32_t partition);

/* The mark stored for a partition, whoever owns it now (TC_QMON_MARK_ABSENT: none, or it cannot
 * be read). Reads PostgreSQL on the monitor's connection; changes nothing. */
int64_t tc_qmon_stored(tc_qmon *m, int32_t partition);

/* Parse the rules file again (see above). */
tc_err tc_qmon_reload(tc_qmon *m, char *errstr, size_t errstr_size);

void tc_qmon_get_stats(const tc_qmon *m, tc_qmon_stats *st);

/* Append the fleet-level figures of a stats snapshot in Prometheus text format to b: totals,
 * findings by kind, dead letters by reason, delay quantiles, flushes, freshness. Labels are
 * bounded sets (kind and source, reason, quantile, result): never a label per device. A pure
 * function of the snapshot, so the HTTP thread renders a copy the pipeline published. */
void tc_qmon_render_metrics(const tc_qmon_stats *st, tc_jbuf *b);

#endif
