/*
 * registry_client.c -- the schema registry's client; see registry_client.h.
 */
#include "schema/registry_client.h"

#include <string.h>

tc_err tc_registry_client_init(tc_registry_client *c, const char *url, int timeout_ms, char *errstr,
                               size_t errstr_size)
{
    memset(c, 0, sizeof(*c));
    if (tc_http_url_parse(url, &c->url) < 0)
        return tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                          "invalid schema registry URL \"%s\" in registry.url (expected "
                          "http://host[:port][/path])",
                          url ? url : "");
    c->timeout_ms = timeout_ms > 0 ? timeout_ms : TC_REGISTRY_TIMEOUT_DEFAULT_MS;
    return TC_OK;
}

tc_err tc_registry_client_get(tc_registry_client *c, const char *path, tc_http_reply *reply,
                              char *errstr, size_t errstr_size)
{
    char inner[TC_ERRSTR_MAX];
    tc_err err = tc_http_fetch(&c->url, "GET", path, NULL, NULL, 0, c->timeout_ms,
                               TC_REGISTRY_RESPONSE_MAX, reply, inner, sizeof(inner));

    c->requests++;
    if (err != TC_OK)
        return tc_err_set(err, errstr, errstr_size, "schema registry: %s", inner);
    return TC_OK;
}
