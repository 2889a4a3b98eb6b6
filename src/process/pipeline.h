/*
 * pipeline.h -- `thermocline run`: Kafka -> decode -> validate -> batch -> PostgreSQL.
 *
 * One thread drives the loop; librdkafka fetches in its own threads, the store's writers write in
 * theirs (the primary sink, store/sink_store.h over store/async.h, driven through process/sink.h).
 * Readings are decoded straight into a columnar batch; refused ones go to the dead-letter batch. A
 * batch is handed to a writer when it holds pipeline.batch_size readings,
 * when its oldest reading has waited pipeline.batch_timeout_ms, when its memory cap is reached, or
 * before partitions are revoked; rows, dead letters and the next offset per partition go to
 * PostgreSQL in one transaction, and the batches commit in the order they were read. Up to
 * postgres.writers batches are in flight while the next is decoded; each is settled oldest first
 * (store marks, then the sinks behind process/sink.h: the lake, the rollups, ...), and only then
 * are offsets committed to Kafka, at the lowest durable mark of every sink. A retriable store
 * failure keeps the batch and retries it with capped exponential back-off and jitter (consumption
 * waits meanwhile: memory stays bounded by postgres.writers + 1 batches and their caps).
 */
#ifndef TC_PROCESS_PIPELINE_H
#define TC_PROCESS_PIPELINE_H

#include <signal.h>
#include <stdint.h>

#include "core/config.h"
#include "core/error.h"
#include "process/window.h"

typedef struct tc_pipeline tc_pipeline;

typedef struct tc_pipeline_stats {
    uint64_t consumed;          /* messages taken from Kafka (excluding ones already stored) */
    uint64_t stored;            /* rows committed to PostgreSQL */
    uint64_t dead_letters;      /* dead letters committed */
    uint64_t batches;           /* transactions committed */
    uint64_t retries;           /* failed write attempts that were retried */
    uint64_t partition_flushes; /* batches written early: a reading of one partition too many */
    uint64_t fenced;            /* writes fenced: another member had moved a partition on */
} tc_pipeline_stats;

/* Build the pipeline from a configuration (borrowed; must outlive the pipeline). */
tc_pipeline *tc_pipeline_new(const tc_config *cfg, char *errstr, size_t errstr_size);

/* Run until *stop becomes nonzero, or, when exit_when_idle_s > 0, until every assigned partition
 * has been consumed to its end and nothing new arrived for that many seconds. Returns TC_OK on a
 * clean stop; a fatal error otherwise (with errstr). */
tc_err tc_pipeline_run(tc_pipeline *p, int exit_when_idle_s, volatile sig_atomic_t *stop,
                       char *errstr, size_t errstr_size);

/* Make the next tc_pipeline_run a replay over windows[0..n) (copied; see process/window.h): it
 * processes only those ranges and returns once every window is done. A window's partition taken
 * away before it is done (another member joined the group) is a fatal error. */
tc_err tc_pipeline_set_windows(tc_pipeline *p, const tc_pipeline_window *w, size_t n, char *errstr,
                               size_t errstr_size);

/*
 * Configuration reload (SIGHUP). When *flag is set, the run loop clears it, calls load(opaque) for
 * a freshly loaded configuration (NULL with errstr: the running one is kept) and copies into live
 * -- the configuration the pipeline was made with, which the caller owns -- the settings it can
 * change while running (tc_pipeline_reloadable); others that differ are logged as needing a
 * restart. The fresh configuration is destroyed.
 */
typedef tc_config *(*tc_pipeline_config_fn)(void *opaque, char *errstr, size_t errstr_size);
void tc_pipeline_set_reload(tc_pipeline *p, volatile sig_atomic_t *flag, tc_config *live,
                            tc_pipeline_config_fn load, void *opaque);
/* Nonzero when key can change while the pipeline runs. */
int tc_pipeline_reloadable(const char *key);

void tc_pipeline_get_stats(const tc_pipeline *p, tc_pipeline_stats *out);
void tc_pipeline_destroy(tc_pipeline *p);

#endif
