/*
 * sink_online.h -- the online features sink ("features" in pipeline.sinks, off by default): the
 * definitions of features.definitions (defs.h) computed in the stream, per device and window, in
 * telemetry.features_online, so a model serving predictions reads the values the offline build
 * (`thermocline features build`) trains it on.
 *
 * What it holds. Per (Kafka partition, device, feature, window start) the readings taken since the
 * last write, as a window accumulator (window_agg.h), at most features.online_max_windows of them
 * (TC_WAGG_BYTES and the device id each) -- or what one batch can bring, when more: an empty map
 * must take any batch. The windows are the definitions' own (1h, 1d, ...),
 * aligned to the UTC day; a reading is fed to the window holding its event time, however late.
 *
 * What it writes. One row per device x feature x window start: the accumulator's state (count,
 * Welford's mean and M2, min, max, the slope's co-moments, last, anomalies, readings) and the
 * feature's value (tc_wagg_finish; NULL when undefined). A write reads the stored state of the
 * rows it touches (FOR UPDATE), merges what it holds into it (tc_wagg_merge, so a window filled
 * over many writes, or late, equals one fed at once), upserts the rows, and moves the sink's marks
 * (features_online_offsets, fenced: from the value this member last read or wrote, else
 * TC_ERR_FENCED) -- in ONE transaction. A crash loses only what no transaction committed, and the
 * pipeline reads it again from the marks: exactly once across kill -9.
 *
 * The quality features. anomalies and the quality figures (quality_src.h) are not the
 * accumulator's: each write sets the values of the rows it touched from the quality monitor's
 * tables in its transaction; after it, and every features.online_flush_interval_ms between
 * writes (a job without rows or marks), and once more at a clean stop, the writer looks at the
 * quality sink's marks and, when they moved, sets every row of the last TC_FQ_HORIZON_S again, in
 * a statement of its own (idempotent and unfenced: a failure is logged and retried at the next
 * look).
 *
 * Threads. Writes run on a writer thread of the sink's own with a connection of its own; flush
 * starts one when features.online_flush_interval_ms has passed (or half the cap is held, or when
 * forced) and reports *busy while it runs; the pipeline thread keeps taking rows into a second
 * map meanwhile. Marks are read on the pipeline thread with a second connection (open, recover).
 *
 * The tables (features_online, features_online_offsets) are the store's (tc_store_migrate); the
 * api schema reads features_online through api.features_online (docs/api.md).
 */
#ifndef TC_FEATURES_SINK_ONLINE_H
#define TC_FEATURES_SINK_ONLINE_H

#include <stddef.h>

#include "core/config.h"
#include "core/error.h"
#include "process/sink.h"

/* Partitions one sink holds at once. */
#define TC_FEAT_ONLINE_LANES_MAX 4096
/* Bytes of one write's COPY text (a window's row is about 400 bytes). */
#define TC_FEAT_ONLINE_COPY_MAX ((size_t)1 << 30)

/* The sink's constructor (process/sinks.c): the definitions of features.definitions, the store's
 * connection (postgres.dsn, postgres.schema) and the caps of features.online_*. TC_ERR_CONFIG
 * with errstr naming the setting when features.definitions is empty or invalid. */
tc_err tc_feat_online_sink_new(const tc_config *cfg, tc_sink *out, char *errstr,
                               size_t errstr_size);

#endif
