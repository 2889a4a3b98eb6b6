/*
 * sink.h -- the quality sink: the quality monitor (quality/monitor.h) behind the pipeline's sink
 * interface (process/sink.h), enabled by naming "quality" in pipeline.sinks.
 *
 * Each callback is a thin adapter over tc_qmon: open and recover load the lanes' marks and
 * checkpoints (recover drops every lane first: what was only taken is read again), append feeds a
 * batch's rows and dead letters, flush writes when the monitor says it is due (or always, forced),
 * revoke forgets partitions, stored reads quality_offsets (run --exit-when-idle). A flush starts
 * the monitor's write on its writer thread (one transaction per flush interval or closed minute)
 * and reports *busy until a later call sees it committed: PostgreSQL's time is not the consumer's.
 *
 * Two things the interface has no callback for, kept here as process-wide hooks:
 *   SIGHUP   tc_quality_sink_sighup() (async-signal-safe) asks every quality sink to parse its
 *            rules file again at its next callback; a refused file is logged with FILE:LINE:COL
 *            and the running rules stay in force.
 *   /metrics tc_quality_sink_render_metrics() appends the fleet-level figures of the running
 *            quality sink (a snapshot it publishes under a lock at every flush and append), for
 *            the HTTP thread; nothing when no quality sink runs.
 *
 * Ownership: the sink owns its monitor; the configuration is borrowed (it outlives the sink).
 */
#ifndef TC_QUALITY_SINK_H
#define TC_QUALITY_SINK_H

#include "core/config.h"
#include "core/json.h"
#include "process/sink.h"

/* tc_sink_new_fn of the quality sink (process/sinks.c's table names it "quality"). */
tc_err tc_quality_sink_new(const tc_config *cfg, tc_sink *out, char *errstr, size_t errstr_size);

/* Called from the SIGHUP handler: only sets a flag. */
void tc_quality_sink_sighup(void);

/* Append the running quality sink's /metrics figures to b (nothing when none runs). */
void tc_quality_sink_render_metrics(tc_jbuf *b);

#endif
