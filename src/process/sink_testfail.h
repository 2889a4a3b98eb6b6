/*
 * sink_testfail.h -- a sink made only for the tests, failing on command (see sink_testfail.c).
 *
 * A testing aid: named in pipeline.sinks ("store,lake,rollups,testfail") with
 * testfail.record_file (what it makes durable, one line per row and per mark) and
 * testfail.control_file ("ok", "fail-transient" or "fail-permanent").
 */
#ifndef TC_PROCESS_SINK_TESTFAIL_H
#define TC_PROCESS_SINK_TESTFAIL_H

#include "process/sink.h"

/* A tc_sink_new_fn (sink.h). TC_ERR_CONFIG when testfail.record_file is not set. */
tc_err tc_sink_testfail_new(const tc_config *cfg, tc_sink *out, char *errstr, size_t errstr_size);

#endif
