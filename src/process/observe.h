/*
 * observe.h -- the pipeline seen from outside: /healthz, /readyz and /metrics over HTTP, and the
 * alerts it pushes about itself.
 *
 * The pipeline thread publishes a snapshot of its status once per loop turn (a copy under a mutex);
 * the HTTP threads answer from the latest snapshot and never touch the pipeline's own state.
 *   /healthz  200 while the process runs (liveness).
 *   /readyz   200 when the store accepted its last write (or connection), every sink is ready
 *             (process/sink.h: its circuit closed) and the consumer holds partitions; 503 with
 *             the reason otherwise (readiness), naming the sink that is not. Either way the body
 *             says each sink's state ("sinks": {"store": true, "testfail": false}). A member of a
 *             group with more members than partitions is therefore not ready, which is the
 *             truth: it serves nothing.
 *   /metrics  Prometheus text format: counters of readings, dead letters, batches, retries;
 *             gauges of assigned partitions, readiness and the last commit time; per sink
 *             (label sink="..."): readiness, rows taken and made durable, rows held in memory,
 *             failures and recoveries, commit latency; and (every family in
 *             docs/observability.md) the consumer lag per partition, histograms of the
 *             end-to-end delay and of batch sizes, dead letters by reason, the newest
 *             message's timestamp, the process' CPU and memory, build info, storage figures
 *             sampled on a timer (observe_storage.h), the alert client's own, and the quality
 *             sink's fleet figures.
 *
 * The pipeline thread also notes every message's Kafka timestamp against the batch (slot) it went
 * into, and each batch's commit: the delay histogram is observed at the commit, per message, from
 * the Kafka timestamp to the commit's wall time. These notes are only made from the pipeline
 * thread; they cost an append per message, and the histogram update takes the mutex once per batch.
 *
 * With alerting.alertmanager_urls set, the observer owns the alert client (alert/alert.h): it
 * pushes ThermoclineNotReady once /readyz has failed alerting.not_ready_after_s (when that is not
 * 0), resolves it when ready again, and lends the client to other producers (tc_observe_alerter).
 */
#ifndef TC_PROCESS_OBSERVE_H
#define TC_PROCESS_OBSERVE_H

#include <stdint.h>

#include "alert/alert.h"
#include "core/config.h"
#include "core/deadletter.h"
#include "core/error.h"
#include "process/pipeline.h"
#include "process/sinkset.h"

/* Reasons are short sentences for operators. */
#define TC_OBSERVE_REASON_MAX 256
/* Sinks reported (process/sink.h: TC_SINKS_MAX), and their names' size. */
#define TC_OBSERVE_SINKS_MAX     8
#define TC_OBSERVE_SINK_NAME_MAX 32

/* One sink as /readyz and /metrics show it. */
typedef struct tc_observe_sink {
    char name[TC_OBSERVE_SINK_NAME_MAX];
    int ready;
    uint64_t rows, rows_durable, pending, failures, recoveries;
    tc_sinkset_latency commit; /* flush to durable (count 0: not measured for this sink) */
    int cpu_measured;          /* the sink set's sinks: cpu_ns is what the sink cost */
    uint64_t cpu_ns;
} tc_observe_sink;
/* Partitions whose consumer lag /metrics shows (one series each: bounded by the topic). */
#define TC_OBSERVE_LAG_MAX 256

typedef struct tc_observe_status {
    tc_pipeline_stats stats;
    uint64_t partitions;                /* assigned now */
    int store_ok;                       /* the store's last write or connection succeeded */
    int consuming;                      /* the consumer holds partitions */
    int64_t last_commit_us;             /* wall time of the last committed batch, 0 = none yet */
    char reason[TC_OBSERVE_REASON_MAX]; /* why not ready */
    tc_observe_sink sinks[TC_OBSERVE_SINKS_MAX];
    size_t nsinks;
    size_t nlag; /* consumer lag of lag_partition[0..nlag) */
    int32_t lag_partition[TC_OBSERVE_LAG_MAX];
    int64_t lag[TC_OBSERVE_LAG_MAX];
} tc_observe_status;

typedef struct tc_observe tc_observe;

/* Serve the endpoints on cfg->http_listen ("127.0.0.1:8090"; port 0 = any free port), sample the
 * storage figures every http.storage_sample_s, and start the alert client when alerting is
 * configured; the server takes cfg's http.* TLS and limits (docs/security.md). cfg is borrowed
 * for the observer's life. NULL with errstr when the address cannot
 * be bound or an alerting setting is wrong. */
tc_observe *tc_observe_new(const tc_config *cfg, char *errstr, size_t errstr_size);

/* Publish a new snapshot (copied). */
void tc_observe_publish(tc_observe *o, const tc_observe_status *st);

/* Pipeline thread only (see the file comment); o may be NULL (observability off). slot is the
 * batch's identity (the pipeline's slot); ts_ms the message's Kafka timestamp (< 0: none). */
void tc_observe_note_message(tc_observe *o, const void *slot, int64_t ts_ms);
/* The slot's batch is committed: rows stored and dead letters dlq (may be NULL). */
void tc_observe_note_commit(tc_observe *o, const void *slot, size_t rows, const tc_dlq_batch *dlq);
/* The slot's batch is dropped uncommitted (it will be read again). */
void tc_observe_note_discard(tc_observe *o, const void *slot);

/* The alert client (NULL when alerting is off); owned by the observer. */
tc_alerter *tc_observe_alerter(tc_observe *o);

/* The bound port. */
unsigned tc_observe_port(const tc_observe *o);

void tc_observe_destroy(tc_observe *o);

#endif
