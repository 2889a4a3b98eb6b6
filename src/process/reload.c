/*
 * reload.c -- configuration reload on SIGHUP.
 *
 * The loop reads some settings anew every time it uses them (the validation limits, the flush
 * timings, the registry's refresh interval, the log level): those are copied into the running
 * configuration; every other change is logged as needing a restart, because it is built into
 * connections, batches or files at start.
 */
#include "process/pipeline_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Config keys one reload reports on. */
#define TC_RELOAD_KEYS_MAX 128

void tc_pipeline_set_reload(tc_pipeline *p, volatile sig_atomic_t *flag, tc_config *live,
                            tc_pipeline_config_fn load, void *opaque)
{
    p->reload_flag = flag;
    p->reload_live = live;
    p->reload_load = load;
    p->reload_opaque = opaque;
}

/* What the loop reads anew every time it uses it: the validation limits, the flush timings, the
 * registry's refresh interval, the log level. Everything else is built into connections, batches
 * or files at start (sizes, addresses, names) and takes a restart. */
int tc_pipeline_reloadable(const char *key)
{
    return tc_config_reloadable(key);
}

void tc_pipeline_reload(tc_pipeline *p)
{
    const char *keys[TC_RELOAD_KEYS_MAX];
    char errstr[TC_ERRSTR_MAX];
    tc_config *fresh = p->reload_load(p->reload_opaque, errstr, sizeof(errstr));
    size_t n, applied = 0, later = 0;
    tc_log_level level;
    tc_log_format format;

    if (!fresh) {
        tc_log_warn("pipeline", "could not reload the configuration: %s; keeping the running one",
                    errstr);
        return;
    }
    n = tc_config_diff(p->reload_live, fresh, keys, TC_RELOAD_KEYS_MAX);
    for (size_t i = 0; i < n && i < TC_RELOAD_KEYS_MAX; i++) {
        if (tc_pipeline_reloadable(keys[i]) &&
            tc_config_copy_key(p->reload_live, fresh, keys[i]) == TC_OK) {
            tc_log_info("pipeline", "reload: %s changed", keys[i]);
            applied++;
        } else {
            tc_log_warn("pipeline", "reload: %s changed; it takes effect after a restart", keys[i]);
            later++;
        }
    }
    if (!tc_log_parse_level(p->reload_live->log_level, &level) &&
        !tc_log_parse_format(p->reload_live->log_format, &format))
        tc_log_setup(level, format);
    tc_config_destroy(fresh);
    tc_log_info("pipeline", "configuration reloaded: %zu settings applied, %zu need a restart",
                applied, later);
}
