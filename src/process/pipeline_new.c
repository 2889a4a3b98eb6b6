/*
 * pipeline_new.c -- building the pipeline from its configuration, and tearing it down.
 *
 * The sinks first (a bad pipeline.sinks is a configuration error), then the primary (the store,
 * its writers) and the batch slots, the HTTP port (before the consumer joins the group: a taken
 * port is reported first), the consumer, the dead-letter mirror and the registry's clients.
 * Destruction closes the consumer first: its final revocation may still write a batch.
 */
#include "process/pipeline_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Registry subjects: "<topic>-value" with Kafka's 249-byte topic names, or a configured one. */
#define TC_PIPELINE_SUBJECT_MAX 1024

static tc_err tc_pipeline_primary_new(tc_pipeline *p, char *errstr, size_t errstr_size);

/* The primary sink of pipeline.sinks (process/sink.h): it owns the dead letters and the order. */
static tc_err tc_pipeline_primary_new(tc_pipeline *p, char *errstr, size_t errstr_size)
{
    char name[TC_SINK_NAME_MAX];
    tc_sink_new_fn make = tc_sink_find_primary(p->cfg->pipeline_sinks, name, sizeof(name));
    tc_err err;

    if (!make)
        return tc_err_set(
            TC_ERR_CONFIG, errstr, errstr_size,
            "pipeline.sinks \"%s\" must name store: the other sinks follow its batches",
            p->cfg->pipeline_sinks);
    err = make(p->cfg, &p->primary, errstr, errstr_size);
    if (err == TC_OK && (!p->primary.ops || !p->primary.ops->primary))
        err = tc_err_set(TC_ERR_CONFIG, errstr, errstr_size, "sink %s cannot be the primary", name);
    if (err != TC_OK) {
        p->primary.ops = NULL;
        return err;
    }
    if (!p->primary.name[0])
        snprintf(p->primary.name, sizeof(p->primary.name), "%s", p->primary.ops->name);
    return TC_OK;
}

tc_pipeline *tc_pipeline_new(const tc_config *cfg, char *errstr, size_t errstr_size)
{
    tc_consumer_hooks hooks = {0};
    tc_pipeline *p = calloc(1, sizeof(*p));
    int slots_ok = 1;

    if (!p) {
        tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory");
        return NULL;
    }
    p->cfg = cfg;
    p->sinks = tc_sinkset_new(cfg, tc_pipeline_sinks_wait, p, errstr, errstr_size);
    if (!p->sinks) {
        free(p);
        return NULL;
    }
    if (tc_pipeline_primary_new(p, errstr, errstr_size) != TC_OK) {
        tc_sinkset_destroy(p->sinks);
        free(p);
        return NULL;
    }
    p->nslots = (size_t)cfg->pg_writers + 1;
    p->slots = calloc(p->nslots, sizeof(*p->slots));
    p->flight = calloc(p->nslots, sizeof(*p->flight));
    if (!p->slots || !p->flight) {
        tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory allocating batches");
        tc_pipeline_destroy(p);
        return NULL;
    }
    p->cur = &p->slots[0];
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
    if (!slots_ok) {
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
    /* Closing the consumer serves the final revoke, which flushes: the primary must still
     * exist. */
    p->closing = 1;
    tc_consumer_destroy(p->consumer);
    /* After the consumer: its final revoke may still write (and mirror) a batch. */
    tc_dlq_mirror_destroy(p->dlq_mirror);
    tc_schema_cache_destroy(p->schemas);
    tc_catalog_destroy(p->catalog);
    tc_observe_destroy(p->obs);
    if (p->primary.ops)
        p->primary.ops->close(p->primary.ctx);
    tc_sinkset_destroy(p->sinks);
    tc_windows_destroy(p->windows);
    for (size_t i = 0; p->slots && i < p->nslots; i++)
        tc_pipeline_slot_free(&p->slots[i]);
    free(p->slots);
    free(p->flight);
    tc_dedupe_destroy(p->dedupe);
    free(p->late.buf);
    for (size_t i = 0; i < p->nlookback; i++)
        free(p->lookback[i].dead);
    free(p->lookback);
    free(p->marks);
    free(p);
}
