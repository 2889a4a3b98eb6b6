/*
 * cmd_registry.c -- `thermocline registry` (the schema registry server) and `thermocline schema`
 * (its command-line client).
 *
 * The client is core/http_client.h: one request per connection, a bounded response
 * (TC_CLIENT_RESPONSE_MAX), connect, send and receive timeouts.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "api/http.h"
#include "api/http_auth.h"
#include "core/http_client.h"
#include "cli/cli.h"
#include "core/json.h"
#include "core/log.h"
#include "core/secret.h"
#include "schema/registry.h"

#define TC_REGISTRY_URL_DEFAULT "http://127.0.0.1:8081"
#define TC_CLIENT_RESPONSE_MAX  (16 * 1024 * 1024)
#define TC_CLIENT_FILE_MAX      (1024 * 1024)
#define TC_CLIENT_TIMEOUT_S     30

/* ---- `thermocline registry` ---- */

/* The registry's operators' endpoints on http.admin_listen, apart from the API: /healthz, and
 * /metrics with what the API server's exhaustion bounds did. */
#define TC_REGISTRY_METRICS_MAX 512

static void tc_registry_healthz(void *ctx, const tc_http_request *req, tc_http_response *resp)
{
    (void)ctx;
    (void)req;
    tc_http_respond(resp, 200, NULL, "{\"status\":\"ok\"}", 15);
}

static void tc_registry_metrics(void *ctx, const tc_http_request *req, tc_http_response *resp)
{
    char body[TC_REGISTRY_METRICS_MAX];
    int n;

    (void)req;
    n = snprintf(body, sizeof(body),
                 "# HELP thermocline_http_reaped_connections_total Connections of the registry's "
                 "API cut because a request did not arrive within http.request_deadline_ms.\n"
                 "# TYPE thermocline_http_reaped_connections_total counter\n"
                 "thermocline_http_reaped_connections_total %llu\n",
                 (unsigned long long)tc_http_server_reaped(ctx));
    tc_http_respond(resp, 200, "text/plain; version=0.0.4", body, (size_t)n);
}

/* The admin server on cfg's http.admin_listen, with the same TLS and limits as the API's,
 * serving the API server's numbers; NULL with errstr on error. */
static tc_http_server *tc_registry_admin_new(const tc_config *cfg, tc_http_server *api,
                                             char *errstr, size_t errstr_size)
{
    tc_http_options opt = {.threads = 1};
    tc_http_server *s;

    tc_http_options_from_config(&opt, cfg);
    s = tc_http_server_new(cfg->http_admin_listen, &opt, errstr, errstr_size);
    if (s && (tc_http_route(s, "GET", "/healthz", tc_registry_healthz, NULL) != TC_OK ||
              tc_http_route(s, "GET", "/metrics", tc_registry_metrics, api) != TC_OK ||
              tc_http_server_start(s, errstr, errstr_size) != TC_OK)) {
        tc_http_server_destroy(s);
        return NULL;
    }
    return s;
}

int tc_cmd_registry(int argc, char **argv)
{
    static const struct option longopts[] = {{"listen", required_argument, NULL, 'l'},
                                             {"schema", required_argument, NULL, 'S'},
                                             {NULL, 0, NULL, 0}};
    static const tc_cli_spec spec = {
        .name = "registry",
        .help = "usage: thermocline registry [options]\n\n"
                "Serve a Confluent-compatible schema registry (Avro) over HTTP, stored in\n"
                "PostgreSQL (postgres.dsn). Runs until SIGINT or SIGTERM.\n\n"
                "  -l, --listen ADDR      address to listen on (default " TC_REGISTRY_LISTEN_DEFAULT
                ")\n"
                "  -S, --schema NAME      PostgreSQL schema of the registry's tables (default "
                "\"" TC_REGISTRY_PG_SCHEMA "\")\n" TC_CLI_COMMON_HELP,
        .shortopts = "l:S:",
        .longopts = longopts,
    };
    const char *listen_addr = TC_REGISTRY_LISTEN_DEFAULT, *pg_schema = TC_REGISTRY_PG_SCHEMA;
    char errstr[TC_ERRSTR_MAX];
    tc_cli_common common = {0};
    tc_cli_parser ps;
    tc_http_options hopt;
    tc_http_server *server = NULL, *admin = NULL;
    tc_http_auth *auth = NULL;
    tc_registry *reg = NULL;
    tc_reg_store *store;
    tc_config *cfg;
    int opt, rc = 0;

    tc_cli_begin(&ps, &spec, &common, argc, argv);
    while ((opt = tc_cli_next(&ps)) != -1) {
        if (opt == 'l')
            listen_addr = optarg;
        else if (opt == 'S')
            pg_schema = optarg;
    }
    tc_cli_args(&ps);
    cfg = tc_cli_config(&common);
    tc_cli_install_signals();
    tc_registry_http_options(&hopt);
    tc_http_options_from_config(&hopt, cfg);
    if (*cfg->registry_auth_users_file || *cfg->registry_auth_tokens_file) {
        auth = tc_http_auth_new(cfg->registry_auth_users_file, cfg->registry_auth_tokens_file,
                                (int)cfg->registry_auth_read_open, errstr, sizeof(errstr));
        if (!auth) {
            fprintf(stderr, "thermocline registry: %s\n", errstr);
            tc_config_destroy(cfg);
            return TC_EXIT_USAGE;
        }
        hopt.auth = auth;
    }
    server = tc_http_server_new(listen_addr, &hopt, errstr, sizeof(errstr));
    if (!server) {
        fprintf(stderr, "thermocline registry: %s\n", errstr);
        tc_http_auth_destroy(auth);
        tc_config_destroy(cfg);
        return TC_EXIT_USAGE;
    }
    store = tc_reg_store_pg_new(cfg->pg_dsn, pg_schema, errstr, sizeof(errstr));
    reg = store ? tc_registry_new(store, errstr, sizeof(errstr)) : NULL;
    if (!reg || tc_registry_mount(reg, server) != TC_OK ||
        tc_http_server_start(server, errstr, sizeof(errstr)) != TC_OK ||
        (*cfg->http_admin_listen &&
         !(admin = tc_registry_admin_new(cfg, server, errstr, sizeof(errstr))))) {
        tc_log_error("registry", "%s", errstr);
        rc = TC_EXIT_FAILURE;
    } else {
        tc_log_info("registry", "schema registry listening on %s (port %u, %s%s), tables in \"%s\"",
                    listen_addr, tc_http_server_port(server),
                    *hopt.tls_cert_file ? "https" : "http",
                    auth ? ", writes need authentication" : "", pg_schema);
        if (admin)
            tc_log_info("registry", "/healthz and /metrics on %s (port %u)", cfg->http_admin_listen,
                        tc_http_server_port(admin));
        while (!tc_cli_stop) {
            struct timespec ts = {0, 100 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
        tc_log_info("registry", "stopping");
    }
    tc_http_server_destroy(admin);
    tc_http_server_destroy(server);
    tc_http_auth_destroy(auth);
    tc_registry_destroy(reg);
    tc_config_destroy(cfg);
    return rc;
}

/* ---- the HTTP client ---- */

/* Percent-encode a path segment. */
static void tc_pct_encode(tc_jbuf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";

    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '_' || c == '.' || c == '~') {
            tc_jbuf_append(b, (const char *)s, 1);
        } else {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            tc_jbuf_append(b, e, 3);
        }
    }
}

/* Report a non-2xx reply ({"error_code", "message"} when the body has them). */
static void tc_client_report(const char *what, const tc_http_reply *r)
{
    tc_json_doc *doc = tc_json_parse(r->body, r->len, NULL, NULL, NULL, 0);
    const tc_json *root = tc_json_root(doc);
    const char *msg = tc_json_string(tc_json_get(root, "message"));
    int64_t code = 0;

    if (msg && tc_json_int64(tc_json_get(root, "error_code"), &code))
        fprintf(stderr, "thermocline schema %s: %s (HTTP %d, error_code %lld)\n", what, msg,
                r->status, (long long)code);
    else
        fprintf(stderr, "thermocline schema %s: HTTP %d: %.500s\n", what, r->status, r->body);
    tc_json_free(doc);
}

static char *tc_read_file(const char *path, char *errstr, size_t size)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    size_t n;

    if (!f) {
        snprintf(errstr, size, "cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    buf = malloc(TC_CLIENT_FILE_MAX + 1);
    if (!buf) {
        fclose(f);
        snprintf(errstr, size, "out of memory");
        return NULL;
    }
    n = fread(buf, 1, TC_CLIENT_FILE_MAX + 1, f);
    fclose(f);
    if (n > TC_CLIENT_FILE_MAX) {
        free(buf);
        snprintf(errstr, size, "%s is larger than %d bytes", path, TC_CLIENT_FILE_MAX);
        return NULL;
    }
    buf[n] = '\0';
    if (strlen(buf) != n) {
        free(buf);
        snprintf(errstr, size, "%s contains a NUL byte", path);
        return NULL;
    }
    return buf;
}

/* {"schema": <file text>} */
static char *tc_schema_body(const char *path, char *errstr, size_t size)
{
    char *text = tc_read_file(path, errstr, size);
    tc_jbuf b;
    char *out;

    if (!text)
        return NULL;
    tc_jbuf_init(&b, 0);
    tc_jbuf_obj_begin(&b);
    tc_jbuf_key(&b, "schema");
    tc_jbuf_str(&b, text);
    tc_jbuf_key(&b, "schemaType");
    tc_jbuf_str(&b, "AVRO");
    tc_jbuf_obj_end(&b);
    free(text);
    out = tc_jbuf_take(&b, NULL);
    if (!out)
        snprintf(errstr, size, "out of memory");
    return out;
}

/* Build "/prefix/<enc(a)>/rest" paths. */
static char *tc_path(const char *prefix, const char *subject, const char *rest)
{
    tc_jbuf b;

    tc_jbuf_init(&b, 0);
    tc_jbuf_append(&b, prefix, strlen(prefix));
    if (subject)
        tc_pct_encode(&b, subject);
    if (rest)
        tc_jbuf_append(&b, rest, strlen(rest));
    return tc_jbuf_take(&b, NULL);
}

/* Run one request and parse a JSON reply; returns the document or NULL (reported). */
static tc_json_doc *tc_call(const tc_http_url *u, const char *what, const char *method,
                            const char *path, const char *body, int *status)
{
    char errstr[TC_ERRSTR_MAX];
    tc_http_reply r;
    tc_json_doc *doc;

    if (!path) {
        fprintf(stderr, "thermocline schema %s: out of memory\n", what);
        return NULL;
    }
    if (tc_http_fetch(u, method, path, body ? "application/vnd.schemaregistry.v1+json" : NULL, body,
                      body ? strlen(body) : 0, TC_CLIENT_TIMEOUT_S * 1000, TC_CLIENT_RESPONSE_MAX,
                      &r, errstr, sizeof(errstr)) != TC_OK) {
        fprintf(stderr, "thermocline schema %s: %s\n", what, errstr);
        return NULL;
    }
    if (status)
        *status = r.status;
    if (r.status < 200 || r.status >= 300) {
        tc_client_report(what, &r);
        free(r.body);
        return NULL;
    }
    doc = tc_json_parse(r.body, r.len, NULL, NULL, errstr, sizeof(errstr));
    if (!doc)
        fprintf(stderr, "thermocline schema %s: unparsable reply: %s\n", what, errstr);
    free(r.body);
    return doc;
}

static int tc_schema_register(const tc_http_url *u, const char *subject, const char *file)
{
    char errstr[TC_ERRSTR_MAX];
    char *body = tc_schema_body(file, errstr, sizeof(errstr)), *path;
    tc_json_doc *doc, *look;
    int64_t id = 0, version = 0;

    if (!body) {
        fprintf(stderr, "thermocline schema register: %s\n", errstr);
        return TC_EXIT_FAILURE;
    }
    path = tc_path("/subjects/", subject, "/versions");
    doc = tc_call(u, "register", "POST", path, body, NULL);
    free(path);
    if (!doc || !tc_json_int64(tc_json_get(tc_json_root(doc), "id"), &id)) {
        free(body);
        tc_json_free(doc);
        return TC_EXIT_FAILURE;
    }
    tc_json_free(doc);
    path = tc_path("/subjects/", subject, "");
    look = tc_call(u, "register", "POST", path, body, NULL);
    free(path);
    free(body);
    if (look)
        tc_json_int64(tc_json_get(tc_json_root(look), "version"), &version);
    tc_json_free(look);
    printf("subject %s version %lld id %lld\n", subject, (long long)version, (long long)id);
    return 0;
}

static int tc_schema_ls(const tc_http_url *u, const char *subject)
{
    char *path =
        subject ? tc_path("/subjects/", subject, "/versions") : tc_path("/subjects", NULL, NULL);
    tc_json_doc *doc = tc_call(u, "ls", "GET", path, NULL, NULL);
    const tc_json *root;

    free(path);
    if (!doc)
        return TC_EXIT_FAILURE;
    root = tc_json_root(doc);
    for (size_t i = 0; root->type == TC_JSON_ARRAY && i < root->len; i++) {
        const tc_json *v = root->u.items[i];
        if (v->type == TC_JSON_STRING)
            printf("%s\n", v->u.str);
        else if (v->type == TC_JSON_NUMBER)
            printf("%s\n", v->u.num.text);
    }
    tc_json_free(doc);
    return 0;
}

static int tc_schema_show(const tc_http_url *u, const char *subject, const char *version)
{
    tc_jbuf rest;
    char *path;
    tc_json_doc *doc;
    const tc_json *root;
    int64_t v = 0, id = 0;

    tc_jbuf_init(&rest, 0);
    tc_jbuf_append(&rest, "/versions/", 10);
    tc_pct_encode(&rest, version ? version : "latest");
    path = tc_jbuf_failed(&rest) ? NULL : tc_path("/subjects/", subject, rest.data);
    tc_jbuf_free(&rest);
    doc = tc_call(u, "show", "GET", path, NULL, NULL);
    free(path);
    if (!doc)
        return TC_EXIT_FAILURE;
    root = tc_json_root(doc);
    tc_json_int64(tc_json_get(root, "version"), &v);
    tc_json_int64(tc_json_get(root, "id"), &id);
    printf("subject %s version %lld id %lld\n%s\n", subject, (long long)v, (long long)id,
           tc_json_string(tc_json_get(root, "schema")) ? tc_json_string(tc_json_get(root, "schema"))
                                                       : "");
    tc_json_free(doc);
    return 0;
}

static int tc_schema_check(const tc_http_url *u, const char *subject, const char *file)
{
    char errstr[TC_ERRSTR_MAX];
    char *body = tc_schema_body(file, errstr, sizeof(errstr)), *path;
    tc_json_doc *doc;
    const tc_json *root, *msgs;
    int compatible;

    if (!body) {
        fprintf(stderr, "thermocline schema check: %s\n", errstr);
        return TC_EXIT_FAILURE;
    }
    path = tc_path("/compatibility/subjects/", subject, "/versions?verbose=true");
    doc = tc_call(u, "check", "POST", path, body, NULL);
    free(path);
    free(body);
    if (!doc)
        return TC_EXIT_FAILURE;
    root = tc_json_root(doc);
    compatible = tc_json_get(root, "is_compatible") &&
                 tc_json_get(root, "is_compatible")->type == TC_JSON_TRUE;
    printf("%s\n", compatible ? "compatible" : "incompatible");
    msgs = tc_json_get(root, "messages");
    for (size_t i = 0; msgs && msgs->type == TC_JSON_ARRAY && i < msgs->len; i++)
        if (tc_json_string(msgs->u.items[i]))
            printf("  %s\n", msgs->u.items[i]->u.str);
    tc_json_free(doc);
    return compatible ? 0 : TC_EXIT_FAILURE;
}

static const tc_cli_spec tc_schema_spec = {
    .name = "schema",
    .help =
        "usage: thermocline schema register|ls|show|check ARGS... [--registry URL] [options]\n\n"
        "Talk to a schema registry (thermocline registry, or Confluent's).\n\n"
        "  register SUBJECT FILE   register the Avro schema in FILE under SUBJECT\n"
        "  ls [SUBJECT]            list the subjects, or the versions of SUBJECT\n"
        "  show SUBJECT [VERSION]  print a version (default: latest) with its id\n"
        "  check SUBJECT FILE      test FILE against SUBJECT's compatibility level;\n"
        "                          exit 0 when compatible, 1 when not\n\n"
        "  -r, --registry URL      registry base URL (default: registry.url, i.e.\n"
        "                          $THERMOCLINE_REGISTRY_URL, else " TC_REGISTRY_URL_DEFAULT ")\n"
        "" TC_CLI_COMMON_HELP,
    .shortopts = "r:",
    .longopts =
        (const struct option[]){{"registry", required_argument, NULL, 'r'}, {NULL, 0, NULL, 0}},
    .min_args = 1,
    .max_args = 3,
};

int tc_cmd_schema(int argc, char **argv)
{
    const char *url = NULL, *cmd;
    tc_cli_common common = {0};
    tc_cli_parser ps;
    tc_config *cfg;
    tc_http_url u;
    int first, nargs, rc;

    tc_cli_begin(&ps, &tc_schema_spec, &common, argc, argv);
    while (tc_cli_next(&ps) == 'r')
        url = optarg;
    first = tc_cli_args(&ps);
    cmd = argv[first];
    nargs = argc - first - 1;
    if (!strcmp(cmd, "help")) {
        fputs(tc_schema_spec.help, stdout);
        return 0;
    }
    if (!((!strcmp(cmd, "register") && nargs == 2) || (!strcmp(cmd, "ls") && nargs <= 1) ||
          (!strcmp(cmd, "show") && (nargs == 1 || nargs == 2)) ||
          (!strcmp(cmd, "check") && nargs == 2))) {
        if (strcmp(cmd, "register") && strcmp(cmd, "ls") && strcmp(cmd, "show") &&
            strcmp(cmd, "check"))
            tc_cli_usage_error(&tc_schema_spec, "unknown subcommand \"%s\"", cmd);
        tc_cli_usage_error(&tc_schema_spec, "%s: wrong number of arguments", cmd);
    }
    cfg = tc_cli_config(&common);
    if (!url)
        url = cfg->registry_url && *cfg->registry_url ? cfg->registry_url : TC_REGISTRY_URL_DEFAULT;
    if (tc_http_url_parse(url, &u) < 0) {
        fprintf(stderr,
                "thermocline schema: invalid registry URL \"%s\" (expected http://host:port)\n",
                url);
        tc_config_destroy(cfg);
        return TC_EXIT_USAGE;
    }
    if (*cfg->registry_user_info_file) {
        char info[TC_SECRET_MAX], errstr[TC_ERRSTR_MAX];
        tc_err err = tc_secret_get("registry.user_info_file", cfg->registry_user_info_file, NULL,
                                   info, sizeof(info), errstr, sizeof(errstr));
        if (err == TC_OK && tc_http_url_set_user_info(&u, info) != TC_OK)
            err = tc_err_set(TC_ERR_CONFIG, errstr, sizeof(errstr),
                             "registry.user_info_file: \"%s\" must hold user:password (at most "
                             "1 KiB)",
                             cfg->registry_user_info_file);
        tc_secret_wipe(info, sizeof(info));
        if (err != TC_OK) {
            fprintf(stderr, "thermocline schema: %s\n", errstr);
            tc_config_destroy(cfg);
            return TC_EXIT_USAGE;
        }
    }
    signal(SIGPIPE, SIG_IGN);
    if (!strcmp(cmd, "register"))
        rc = tc_schema_register(&u, argv[first + 1], argv[first + 2]);
    else if (!strcmp(cmd, "ls"))
        rc = tc_schema_ls(&u, nargs ? argv[first + 1] : NULL);
    else if (!strcmp(cmd, "show"))
        rc = tc_schema_show(&u, argv[first + 1], nargs == 2 ? argv[first + 2] : NULL);
    else
        rc = tc_schema_check(&u, argv[first + 1], argv[first + 2]);
    tc_config_destroy(cfg);
    return rc;
}
