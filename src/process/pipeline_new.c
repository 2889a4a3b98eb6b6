/*
 * pipeline_new.c -- building the pipeline from its configuration, and tearing it down.
 *
 * The sinks first (a bad pipeline.sinks is a configuration error), then the store, its writers and
 * the batch slots, the HTTP port (before the consumer joins the group: a taken port is reported
 * first), the consumer, the dead-letter mirror and the registry's clients. Destruction closes the
 * consumer first: its final revocation may still write a batch.
 */
#include "process/pipeline_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Registry subjects: "<topic>-value" with Kafka's 249-byte topic names, or a configured one. */
#define TC_PIPELINE_SUBJECT_MAX 1024
/* lock_timeout of the writers' sessions when there are several (async.h): long enough for any
 * lock a batch's transaction waits for in normal operation, short enough to be a hiccup. */
#define TC_WRITER_LOCK_TIMEOUT_MS 5000

static int tc_pipeline_sink_listed(const tc_config *cfg, const char *name);

/* Whether pipeline.sinks names a sink (the list is checked by tc_sinkset_new). */
static int tc_pipeline_sink_listed(const tc_config *cfg, const char *name)
{
    char names[TC_SINKS_MAX][TC_SINK_NAME_MAX], errstr[TC_ERRSTR_MAX];
    size_t n = 0;

    if (tc_sink_parse_list(cfg->pipeline_sinks, names, &n, errstr, sizeof(errstr)) != TC_OK)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (!strcmp(names[i], name))
            return 1;
    }
    return 0;
}

tc_pipeline *tc_pipeline_new(const tc_config *cfg, char *errstr, size_t errstr_size)
{
    tc_store_options so;
    tc_consumer_hooks hooks = {0};
    tc_pipeline *p = calloc(1, sizeof(*p));
    int slots_ok = 1;

    if (!p) {
        tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory");
        return NULL;
    }
    p->cfg = cfg;
    p->sinks = tc_sinkset_new(cfg, tc_pipeline_sinks_wait, p, errstr, errstr_size);
    if (p->sinks && !tc_pipeline_sink_listed(cfg, "store")) {
        /* The store is the primary (process/sink.h): it owns the dead letters and the order. */
        tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                   "pipeline.sinks \"%s\" must name store: the other sinks follow its batches",
                   cfg->pipeline_sinks);
        tc_sinkset_destroy(p->sinks);
        p->sinks = NULL;
    }
    if (!p->sinks) {
        free(p);
        return NULL;
    }
    tc_store_options_from_config(&so, cfg);
    /* Shorthands: postgres.rollups=false, or rollups left out of pipeline.sinks. */
    if (!tc_pipeline_sink_listed(cfg, "rollups"))
        so.rollups = -1;
    p->store = tc_store_new(&so, errstr, errstr_size);
    /* Writers wait for their turn to commit with their transaction open: a lock that DDL of
     * another writer waits for (async.h). The timeout turns that deadlock into a retry. */
    so.lock_timeout_ms = cfg->pg_writers > 1 ? TC_WRITER_LOCK_TIMEOUT_MS : 0;
    p->writers = tc_store_async_new(&so, (int)cfg->pg_writers, errstr, errstr_size);
    so.lock_timeout_ms = 0;
    p->nslots = (size_t)cfg->pg_writers + 1;
    p->slots = calloc(p->nslots, sizeof(*p->slots));
    p->flight = calloc(p->nslots, sizeof(*p->flight));
    if (!p->writers || !p->slots || !p->flight) {
        if (p->writers)
            tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory allocating batches");
        tc_pipeline_destroy(p);
        return NULL;
    }
    p->cur = &p->slots[0];
    p->probe = tc_batch_new(tc_pipeline_batch_cap(cfg), 0);
    if (cfg->dedupe_window_s > 0) {
        p->dedupe =
            tc_dedupe_new((size_t)cfg->dedupe_max_entries, cfg->dedupe_window_s * 1000000LL);
        if (!p->dedupe) {
            tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory for the dedupe window");
            tc_pipeline_destroy(p);
            return NULL;
        }
    }
    for (size_t i = 0; i < p->nslots; i++)
        slots_ok &= tc_pipeline_slot_init(&p->slots[i], cfg, p->sinks) == TC_OK;
    if (!p->store || !slots_ok || !p->probe) {
        tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory allocating batches");
        tc_pipeline_destroy(p);
        return NULL;
    }
    hooks.opaque = p;
    hooks.on_assign = tc_pipeline_on_assign;
    hooks.on_revoke = tc_pipeline_on_revoke;
    /* The HTTP port first: a taken port is a configuration error to report before the consumer
     * joins the group (closing librdkafka 2.0's consumer in the middle of its first join can trip
     * an assertion in its sticky assignor). */
    if (cfg->http_listen && *cfg->http_listen) {
        p->obs = tc_observe_new(cfg, errstr, errstr_size);
        if (!p->obs) {
            tc_pipeline_destroy(p);
            return NULL;
        }
    }
    p->consumer = tc_consumer_new(cfg, &hooks, errstr, errstr_size);
    if (!p->consumer) {
        tc_pipeline_destroy(p);
        return NULL;
    }
    if (cfg->kafka_dlq_mirror) {
        p->dlq_mirror = tc_dlq_mirror_new(cfg, errstr, errstr_size);
        if (!p->dlq_mirror) {
            tc_pipeline_destroy(p);
            return NULL;
        }
    }
    if (cfg->registry_url && *cfg->registry_url) {
        char subject[TC_PIPELINE_SUBJECT_MAX];
        if (cfg->registry_subject && *cfg->registry_subject)
            snprintf(subject, sizeof(subject), "%s", cfg->registry_subject);
        else
            snprintf(subject, sizeof(subject), "%s-value", cfg->kafka_topic);
        tc_registry_client_options ro; /* URL, TLS and credentials: registry_client.h */
        tc_registry_client_options_from_config(&ro, cfg);
        p->schemas = tc_schema_cache_new(&ro, 0, 0, errstr, errstr_size);
        if (p->schemas)
            p->catalog = tc_catalog_new(&ro, subject, 0, errstr, errstr_size);
        if (!p->schemas || !p->catalog) {
            tc_pipeline_destroy(p);
            return NULL;
        }
    }
    return p;
}

void tc_pipeline_destroy(tc_pipeline *p)
{
    if (!p)
        return;
    /* Closing the consumer serves the final revoke, which flushes: the store must still exist. */
    p->closing = 1;
    tc_consumer_destroy(p->consumer);
    /* After the consumer: its final revoke may still write (and mirror) a batch. */
    tc_dlq_mirror_destroy(p->dlq_mirror);
    tc_schema_cache_destroy(p->schemas);
    tc_catalog_destroy(p->catalog);
    tc_observe_destroy(p->obs);
    tc_store_async_destroy(p->writers);
    tc_store_destroy(p->store);
    tc_sinkset_destroy(p->sinks);
    tc_windows_destroy(p->windows);
    for (size_t i = 0; p->slots && i < p->nslots; i++)
        tc_pipeline_slot_free(&p->slots[i]);
    free(p->slots);
    free(p->flight);
    tc_batch_destroy(p->probe);
    tc_dedupe_destroy(p->dedupe);
    for (size_t i = 0; i < p->nlookback; i++)
        free(p->lookback[i].dead);
    free(p->lookback);
    free(p->marks);
    free(p);
}
