/*
 * export_scheduled.h -- `thermocline export --scheduled`: the scheduler loop around the export
 * room's passes (export/scheduled.h), with /metrics.
 */
#ifndef TC_CLI_EXPORT_SCHEDULED_H
#define TC_CLI_EXPORT_SCHEDULED_H

#include <stdint.h>

#include "core/config.h"
#include "core/mask.h"

/* What the "public" profile sees: api.personal_viewer (coarsen or hide). */
tc_mask_level tc_export_viewer_level(const tc_config *cfg);

/* Run the configured exports: every export.check_interval_s until SIGINT/SIGTERM, or one pass
 * with once (at now_us, 0 = the clock). /metrics at listen (NULL: export.listen). Returns the
 * exit code: with once, TC_EXIT_FAILURE when a period failed. */
int tc_export_scheduled_main(const tc_config *cfg, int once, const char *listen, int64_t now_us);

#endif
