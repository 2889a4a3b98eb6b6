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
 * Over https:// it checks the registry's certificate against registry.tls.ca_file (or the
 * system's CAs) and may present a client certificate (registry.tls.cert_file, key_file); it sends
 * HTTP Basic credentials (registry.user_info_file, Confluent's basic.auth.user.info) or a bearer
 * token (registry.bearer_token_file). The secrets are read from their files once, at init, and
 * live only in the client's Authorization header: never logged, never in an error.
 *
 * Not thread-safe (it counts its requests); each owner has its own.
 */
#ifndef TC_SCHEMA_REGISTRY_CLIENT_H
#define TC_SCHEMA_REGISTRY_CLIENT_H

#include <stddef.h>

#include "core/config.h"
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

/* Where the registry is and how to reach it; the strings stay the caller's. NULL or "" for any
 * of the files: none. */
typedef struct tc_registry_client_options {
    const char *url;               /* registry.url: "http[s]://host[:port][/base]" */
    int timeout_ms;                /* <= 0: TC_REGISTRY_TIMEOUT_DEFAULT_MS */
    const char *ca_file;           /* registry.tls.ca_file (https: else the system's CAs) */
    const char *cert_file;         /* registry.tls.cert_file: a client certificate */
    const char *key_file;          /* registry.tls.key_file: its key */
    const char *user_info_file;    /* registry.user_info_file: user:password, sent as Basic */
    const char *bearer_token_file; /* registry.bearer_token_file: sent as Bearer */
} tc_registry_client_options;

/* The options of the configuration's registry.* settings (timeout: the default). */
void tc_registry_client_options_from_config(tc_registry_client_options *o, const tc_config *cfg);

/* Check the options and set the client up: TC_ERR_CONFIG naming the setting at fault when the URL
 * is not one, a TLS file cannot be used (or is set for an http:// URL), or a credentials file
 * cannot be read or holds no credentials (both kinds set is one too many). */
tc_err tc_registry_client_init(tc_registry_client *c, const tc_registry_client_options *o,
                               char *errstr, size_t errstr_size);

/* What an HTTP status of the registry asks of our settings ("" when nothing): 401 and 403 name
 * the credentials and the client certificate settings. For the callers' messages. */
const char *tc_registry_client_status_hint(int status);

/* GET base + path. TC_OK with the answer in *reply (any status; free it with tc_http_reply_free);
 * otherwise the transport's error (TC_ERR_IO, TC_ERR_TIMEOUT, TC_ERR_NOMEM) with errstr starting
 * "schema registry: ". */
tc_err tc_registry_client_get(tc_registry_client *c, const char *path, tc_http_reply *reply,
                              char *errstr, size_t errstr_size);

#endif
