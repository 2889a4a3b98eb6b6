/*
 * sink_rollup.h -- the rollups and the latest state per device behind the pipeline's sink
 * interface (process/sink.h); see sink_rollup.c.
 */
#ifndef TC_STORE_SINK_ROLLUP_H
#define TC_STORE_SINK_ROLLUP_H

#include "process/sink.h"

/* pipeline.sinks "rollups". With postgres.rollups=false it writes the latest state only. */
tc_err tc_sink_rollup_new(const tc_config *cfg, tc_sink *out, char *errstr, size_t errstr_size);

#endif
