/*
 * sink_lake.h -- the lake as a sink of the pipeline (process/sink.h), an adapter of lake/sink.h.
 *
 * Named "lake" in pipeline.sinks; off (no sink made) when lake.dir is empty.
 */
#ifndef TC_LAKE_SINK_LAKE_H
#define TC_LAKE_SINK_LAKE_H

#include "process/sink.h"

/* A tc_sink_new_fn (process/sink.h): out->ops is left NULL when lake.dir is empty; TC_ERR_CONFIG
 * for a bad lake.codec; an error of the lake's root folder otherwise. */
tc_err tc_sink_lake_new(const tc_config *cfg, tc_sink *out, char *errstr, size_t errstr_size);

#endif
