/*
 * registry_client.h -- the one client of a Confluent-compatible schema registry.
 *
 * The Avro reader's schema cache (avro_reading.h: GET /schemas/ids/{id}) and the subject
 * catalogue (catalog.h: GET /subjects/{subject}/versions...) both talk to the registry through
 * it, so the URL (registry.url) is checked once with one message, and the timeout, the bound on a
 * response and the wording of transport errors are the same for both. It is a thin layer over
 * core/http_client.h (one request per connection): what an answer's status means stays with the
 * caller, which knows what it asked.
 *
 * Not thread-safe (it counts its requests); each owner has its own.
 */
#ifndef TC_SCHEMA_REGISTRY_CLIENT_H
#define TC_SCHEMA_REGISTRY_CLIENT_H

#include <stddef.h>

#include "core/error.h"
#include "core/http_client.h"

/* A registry answer: schemas of telemetry are a few KB, 4 MiB leaves room for anything a registry
 * would accept. */
#define TC_REGISTRY_RESPONSE_MAX (4 * 1024 * 1024)
/* Per request, when the owner gives no timeout. */
#define TC_REGISTRY_TIMEOUT_DEFAULT_MS 5000

typedef struct tc_registry_client {
    tc_http_url url;
    int timeout_ms;
    unsigned long requests; /* sent so far, answered or not */
} tc_registry_client;

/* Check url ("http://host[:port][/base]") and set the client up (timeout_ms <= 0: the default).
 * TC_ERR_CONFIG naming registry.url when the URL is not one. */
tc_err tc_registry_client_init(tc_registry_client *c, const char *url, int timeout_ms, char *errstr,
                               size_t errstr_size);

/* GET base + path. TC_OK with the answer in *reply (any status; free it with tc_http_reply_free);
 * otherwise the transport's error (TC_ERR_IO, TC_ERR_TIMEOUT, TC_ERR_NOMEM) with errstr starting
 * "schema registry: ". */
tc_err tc_registry_client_get(tc_registry_client *c, const char *path, tc_http_reply *reply,
                              char *errstr, size_t errstr_size);

#endif
