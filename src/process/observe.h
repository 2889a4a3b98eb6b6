/*
 * observe.h -- the pipeline seen from outside: /healthz, /readyz and /metrics over HTTP.
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
 *             failures and recoveries.
 */
#ifndef TC_PROCESS_OBSERVE_H
#define TC_PROCESS_OBSERVE_H

#include <stdint.h>

#include "core/error.h"
#include "process/pipeline.h"

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
} tc_observe_sink;

typedef struct tc_observe_status {
    tc_pipeline_stats stats;
    uint64_t partitions;                /* assigned now */
    int store_ok;                       /* the store's last write or connection succeeded */
    int consuming;                      /* the consumer holds partitions */
    int64_t last_commit_us;             /* wall time of the last committed batch, 0 = none yet */
    char reason[TC_OBSERVE_REASON_MAX]; /* why not ready */
    tc_observe_sink sinks[TC_OBSERVE_SINKS_MAX];
    size_t nsinks;
} tc_observe_status;

typedef struct tc_observe tc_observe;

/* Serve the endpoints on listen_addr ("127.0.0.1:8090"; port 0 = any free port). NULL with errstr
 * when the address cannot be bound. */
tc_observe *tc_observe_new(const char *listen_addr, char *errstr, size_t errstr_size);

/* The same with cfg's http.* TLS and limits (docs/security.md); cfg must outlive the server. */
tc_observe *tc_observe_new_config(const tc_config *cfg, char *errstr, size_t errstr_size);

/* Publish a new snapshot (copied). */
void tc_observe_publish(tc_observe *o, const tc_observe_status *st);

/* The bound port. */
unsigned tc_observe_port(const tc_observe *o);

void tc_observe_destroy(tc_observe *o);

#endif
