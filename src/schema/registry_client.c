/*
 * registry_client.c -- the schema registry's client; see registry_client.h.
 */
#include "schema/registry_client.h"

#include <string.h>

#include "core/secret.h"

void tc_registry_client_options_from_config(tc_registry_client_options *o, const tc_config *cfg)
{
    *o = (tc_registry_client_options){
        .url = cfg->registry_url,
        .ca_file = cfg->registry_tls_ca_file,
        .cert_file = cfg->registry_tls_cert_file,
        .key_file = cfg->registry_tls_key_file,
        .user_info_file = cfg->registry_user_info_file,
        .bearer_token_file = cfg->registry_bearer_token_file,
    };
}

static int tc_registry_set(const char *v)
{
    return v && *v;
}

/* The credentials of o into c's Authorization header. */
static tc_err tc_registry_client_credentials(tc_registry_client *c,
                                             const tc_registry_client_options *o, char *errstr,
                                             size_t n)
{
    char secret[TC_SECRET_MAX];
    const char *setting, *file, *expect;
    int basic = tc_registry_set(o->user_info_file);
    tc_err err;

    if (!basic && !tc_registry_set(o->bearer_token_file))
        return TC_OK;
    if (basic && tc_registry_set(o->bearer_token_file))
        return tc_err_set(TC_ERR_CONFIG, errstr, n,
                          "registry.user_info_file and registry.bearer_token_file are both set:"
                          " the registry gets one Authorization header, keep one of them");
    setting = basic ? "registry.user_info_file" : "registry.bearer_token_file";
    file = basic ? o->user_info_file : o->bearer_token_file;
    expect = basic ? "user:password" : "a token (no blanks)";
    err = tc_secret_get(setting, file, NULL, secret, sizeof(secret), errstr, n);
    if (err == TC_OK && (basic ? tc_http_url_set_user_info(&c->url, secret)
                               : tc_http_url_set_bearer(&c->url, secret)) != TC_OK)
        err = tc_err_set(TC_ERR_CONFIG, errstr, n, "%s: \"%s\" must hold %s (at most 1 KiB)",
                         setting, file, expect);
    tc_secret_wipe(secret, sizeof(secret));
    return err;
}

tc_err tc_registry_client_init(tc_registry_client *c, const tc_registry_client_options *o,
                               char *errstr, size_t errstr_size)
{
    char inner[TC_ERRSTR_MAX];
    int tls = tc_registry_set(o->ca_file) || tc_registry_set(o->cert_file) ||
              tc_registry_set(o->key_file);
    tc_err err;

    memset(c, 0, sizeof(*c));
    if (tc_http_url_parse(o->url, &c->url) < 0)
        return tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                          "invalid schema registry URL \"%s\" in registry.url (expected "
                          "http[s]://host[:port][/path])",
                          o->url ? o->url : "");
    c->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : TC_REGISTRY_TIMEOUT_DEFAULT_MS;
    if (tls && !c->url.https)
        return tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                          "registry.tls.* is set but registry.url \"%s\" is not https://", o->url);
    if (tc_registry_set(o->cert_file) != tc_registry_set(o->key_file))
        return tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                          "registry.tls.cert_file and registry.tls.key_file go together: set both"
                          " or neither");
    if (tc_http_url_set_tls(&c->url, o->ca_file, o->cert_file, o->key_file) != TC_OK)
        return tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                          "registry.tls.*: a path longer than %d bytes", TC_HTTP_TLS_PATH_MAX - 1);
    if (tc_registry_set(o->key_file)) { /* a private key others may read is refused */
        size_t len;
        char *key =
            tc_secret_read_file("registry.tls.key_file", o->key_file, 1, &len, errstr, errstr_size);
        if (!key)
            return TC_ERR_CONFIG;
        tc_secret_free(key);
    }
    if (c->url.https && (err = tc_http_tls_check(&c->url, inner, sizeof(inner))) != TC_OK)
        return tc_err_set(err, errstr, errstr_size, "registry.tls.%s: %s",
                          strstr(inner, "CA") ? "ca_file" : "cert_file and key_file", inner);
    err = tc_registry_client_credentials(c, o, errstr, errstr_size);
    if (err != TC_OK)
        memset(c->url.authorization, 0, sizeof(c->url.authorization));
    return err;
}

const char *tc_registry_client_status_hint(int status)
{
    if (status == 401)
        return " (the registry wants credentials: registry.user_info_file or"
               " registry.bearer_token_file, with a user or token of its registry.auth.*)";
    if (status == 403)
        return " (the registry refused this client: check registry.tls.cert_file, key_file and"
               " the credentials in registry.user_info_file or registry.bearer_token_file)";
    return "";
}

tc_err tc_registry_client_get(tc_registry_client *c, const char *path, tc_http_reply *reply,
                              char *errstr, size_t errstr_size)
{
    char inner[TC_ERRSTR_MAX];
    tc_err err = tc_http_fetch(&c->url, "GET", path, NULL, NULL, 0, c->timeout_ms,
                               TC_REGISTRY_RESPONSE_MAX, reply, inner, sizeof(inner));

    c->requests++;
    if (err != TC_OK)
        return tc_err_set(err, errstr, errstr_size, "schema registry: %s%s", inner,
                          c->url.https && strstr(inner, "TLS")
                              ? "; the registry's TLS settings are registry.tls.ca_file,"
                                " registry.tls.cert_file and registry.tls.key_file"
                              : "");
    return TC_OK;
}
