/*
 * catalog_sync.c -- keeping the schema catalog of the registry's subject fresh.
 *
 * Refreshed every registry.refresh_ms, on demand when an Avro writer schema is unknown (at most
 * once per TC_CATALOG_FORCE_US), and waited for before the first reading: a reading's version
 * cannot be known before. An unreachable registry leaves the catalog as it was.
 */
#include "process/pipeline_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * Keep the catalog of the subject's versions fresh: every registry.refresh_ms, and before the first
 * JSON reading is matched. A new version's numeric fields become batch columns at once, so the
 * store and the lake gain them with the next batch, before any reading carries them. An unreachable
 * registry leaves the catalog as it was (JSON readings go on being matched against it) and is
 * asked again after the refresh interval.
 */
void tc_pipeline_refresh_catalog(tc_pipeline *p)
{
    const tc_catalog_version *latest;
    char errstr[TC_ERRSTR_MAX];
    int changed = 0;
    tc_err err;

    if (!p->catalog || p->now_us < p->catalog_next_us)
        return;
    p->catalog_next_us = p->now_us + p->cfg->registry_refresh_ms * 1000LL;
    err = tc_catalog_refresh(p->catalog, &changed, errstr, sizeof(errstr));
    if (err != TC_OK) {
        tc_log_warn("pipeline", "could not refresh the versions of the telemetry schema: %s",
                    errstr);
        return;
    }
    latest = tc_catalog_latest(p->catalog);
    if (!changed || !latest)
        return;
    tc_log_info("pipeline", "telemetry schema: %zu versions, newest %d (id %d)",
                tc_catalog_count(p->catalog), (int)latest->version, (int)latest->id);
    for (size_t i = 0; i < latest->nfields; i++) {
        const tc_catalog_field *f = &latest->fields[i];
        int d;
        if (f->fixed >= 0 || !f->numeric)
            continue;
        d = tc_batch_dyn_column(p->cur->batch, f->name, strlen(f->name));
        if (d >= 0 && (size_t)d >= p->dyn_logged) {
            tc_log_info("pipeline", "field \"%s\" of schema version %d becomes a column", f->name,
                        (int)latest->version);
            p->dyn_logged = (size_t)d + 1;
        }
    }
}

/* Wait (with back-off) until the catalog has been read from the registry once: the first
 * reading's version cannot be known before. 1 when a stop was asked meanwhile. */
int tc_pipeline_catalog_wait(tc_pipeline *p)
{
    long backoff = TC_RETRY_MIN_MS;

    while (p->catalog && !tc_catalog_loaded(p->catalog)) {
        p->catalog_next_us = 0;
        p->now_us = tc_time_now_us();
        tc_pipeline_refresh_catalog(p);
        if (tc_catalog_loaded(p->catalog))
            break;
        if (tc_pipeline_backoff(p, &backoff))
            return 1;
    }
    return 0;
}
