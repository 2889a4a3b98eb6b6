/*
 * cmd_registry.c -- `thermocline registry` (the schema registry server) and `thermocline schema`
 * (its command-line client).
 *
 * The client speaks HTTP/1.1 over a plain socket: one request per connection (Connection: close),
 * a bounded response (TC_CLIENT_RESPONSE_MAX), send and receive timeouts. It needs no HTTP library
 * because it only ever talks to a registry on a trusted network.
 */
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "api/http.h"
#include "cli/cli.h"
#include "core/json.h"
#include "core/log.h"
#include "schema/registry.h"

#define TC_REGISTRY_URL_DEFAULT "http://127.0.0.1:8081"
#define TC_CLIENT_RESPONSE_MAX  (16 * 1024 * 1024)
#define TC_CLIENT_FILE_MAX      (1024 * 1024)
#define TC_CLIENT_TIMEOUT_S     30

/* ---- `thermocline registry` ---- */

int tc_cmd_registry(int argc, char **argv)
{
    static const struct option longopts[] = {TC_CLI_COMMON_LONGOPTS,
                                             {"listen", required_argument, NULL, 'l'},
                                             {"schema", required_argument, NULL, 'S'},
                                             {NULL, 0, NULL, 0}};
    const char *listen_addr = TC_REGISTRY_LISTEN_DEFAULT, *pg_schema = TC_REGISTRY_PG_SCHEMA;
    char errstr[TC_ERRSTR_MAX];
    tc_cli_common common = {0};
    tc_http_options hopt;
    tc_http_server *server = NULL;
    tc_registry *reg = NULL;
    tc_reg_store *store;
    tc_config *cfg;
    int opt, rc = 0;

    while ((opt = getopt_long(argc, argv, "c:s:hl:S:", longopts, NULL)) != -1) {
        if (tc_cli_common_opt(&common, opt, optarg))
            continue;
        if (opt == 'l') {
            listen_addr = optarg;
            continue;
        }
        if (opt == 'S') {
            pg_schema = optarg;
            continue;
        }
        printf("usage: thermocline registry [options]\n\n"
               "Serve a Confluent-compatible schema registry (Avro) over HTTP, stored in\n"
               "PostgreSQL (postgres.dsn). Runs until SIGINT or SIGTERM.\n\n"
               "  -l, --listen ADDR      address to listen on (default " TC_REGISTRY_LISTEN_DEFAULT
               ")\n"
               "  -S, --schema NAME      PostgreSQL schema of the registry's tables (default "
               "\"" TC_REGISTRY_PG_SCHEMA "\")\n" TC_CLI_COMMON_HELP);
        return opt == 'h' ? 0 : TC_EXIT_USAGE;
    }
    if (optind < argc) {
        fprintf(stderr, "thermocline registry: unexpected argument \"%s\"\n", argv[optind]);
        return TC_EXIT_USAGE;
    }
    cfg = tc_cli_config(&common);
    tc_cli_install_signals();
    tc_registry_http_options(&hopt);
    server = tc_http_server_new(listen_addr, &hopt, errstr, sizeof(errstr));
    if (!server) {
        fprintf(stderr, "thermocline registry: %s\n", errstr);
        tc_config_destroy(cfg);
        return TC_EXIT_USAGE;
    }
    store = tc_reg_store_pg_new(cfg->pg_dsn, pg_schema, errstr, sizeof(errstr));
    reg = store ? tc_registry_new(store, errstr, sizeof(errstr)) : NULL;
    if (!reg || tc_registry_mount(reg, server) != TC_OK ||
        tc_http_server_start(server, errstr, sizeof(errstr)) != TC_OK) {
        tc_log_error("registry", "%s", errstr);
        rc = TC_EXIT_FAILURE;
    } else {
        tc_log_info("registry", "schema registry listening on %s (port %u), tables in \"%s\"",
                    listen_addr, tc_http_server_port(server), pg_schema);
        while (!tc_cli_stop) {
            struct timespec ts = {0, 100 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
        tc_log_info("registry", "stopping");
    }
    tc_http_server_destroy(server);
    tc_registry_destroy(reg);
    tc_config_destroy(cfg);
    return rc;
}

/* ---- the HTTP client ---- */

typedef struct tc_url {
    char host[256];
    char port[8];
    char base[512]; /* path prefix without the trailing slash */
} tc_url;

static int tc_url_parse(const char *url, tc_url *u)
{
    const char *p, *slash, *colon;
    size_t hl;

    memset(u, 0, sizeof(*u));
    if (strncasecmp(url, "http://", 7) != 0)
        return -1;
    p = url + 7;
    slash = strchr(p, '/');
    if (!slash)
        slash = p + strlen(p);
    if (*p == '[') {
        const char *close = memchr(p, ']', (size_t)(slash - p));
        if (!close)
            return -1;
        hl = (size_t)(close - p - 1);
        if (hl == 0 || hl >= sizeof(u->host))
            return -1;
        memcpy(u->host, p + 1, hl);
        colon = close + 1 < slash && close[1] == ':' ? close + 1 : NULL;
    } else {
        colon = memchr(p, ':', (size_t)(slash - p));
        hl = (size_t)((colon ? colon : slash) - p);
        if (hl == 0 || hl >= sizeof(u->host))
            return -1;
        memcpy(u->host, p, hl);
    }
    if (colon) {
        size_t pl = (size_t)(slash - colon - 1);
        if (pl == 0 || pl >= sizeof(u->port))
            return -1;
        memcpy(u->port, colon + 1, pl);
        if (strspn(u->port, "0123456789") != pl)
            return -1;
    } else {
        strcpy(u->port, "80");
    }
    if (strlen(slash) >= sizeof(u->base))
        return -1;
    strcpy(u->base, slash);
    while (*u->base && u->base[strlen(u->base) - 1] == '/')
        u->base[strlen(u->base) - 1] = '\0';
    return 0;
}

typedef struct tc_http_reply {
    int status;
    char *body; /* NUL-terminated */
    size_t len;
} tc_http_reply;

static int tc_client_connect(const tc_url *u, char *errstr, size_t size)
{
    struct addrinfo hints, *res = NULL, *ai;
    struct timeval tv = {TC_CLIENT_TIMEOUT_S, 0};
    int fd = -1, rc;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    rc = getaddrinfo(u->host, u->port, &hints, &res);
    if (rc != 0) {
        snprintf(errstr, size, "cannot resolve %s: %s", u->host, gai_strerror(rc));
        return -1;
    }
    for (ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
        if (fd < 0)
            continue;
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
            break;
        rc = errno;
        close(fd);
        fd = -1;
        errno = rc;
    }
    freeaddrinfo(res);
    if (fd < 0)
        snprintf(errstr, size, "cannot connect to %s:%s: %s", u->host, u->port, strerror(errno));
    return fd;
}

static int tc_send_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Decode a chunked body in place; -1 when malformed. */
static long tc_dechunk(char *b, size_t n)
{
    size_t in = 0, out = 0;

    for (;;) {
        char *end;
        unsigned long sz;
        char *crlf = NULL;
        for (size_t i = in; i + 1 < n; i++)
            if (b[i] == '\r' && b[i + 1] == '\n') {
                crlf = b + i;
                break;
            }
        if (!crlf)
            return -1;
        sz = strtoul(b + in, &end, 16);
        if (end == b + in)
            return -1;
        in = (size_t)(crlf - b) + 2;
        if (sz == 0)
            return (long)out;
        if (sz > n - in || n - in - sz < 2)
            return -1;
        memmove(b + out, b + in, sz);
        out += sz;
        in += sz + 2;
    }
}

static void tc_put(tc_jbuf *b, const char *s)
{
    tc_jbuf_append(b, s, strlen(s));
}

/* One request; the reply body is malloc'ed. Returns 0, or -1 with errstr set. */
static int tc_client_request(const tc_url *u, const char *method, const char *path,
                             const char *body, tc_http_reply *reply, char *errstr, size_t size)
{
    tc_jbuf req;
    char *buf = NULL, *hdr_end, *p;
    size_t len = 0, cap = 0, blen = body ? strlen(body) : 0;
    long clen = -1;
    int fd, chunked = 0;

    memset(reply, 0, sizeof(*reply));
    fd = tc_client_connect(u, errstr, size);
    if (fd < 0)
        return -1;
    tc_jbuf_init(&req, 0);
    tc_put(&req, method);
    tc_put(&req, " ");
    tc_put(&req, u->base);
    tc_put(&req, path);
    tc_put(&req, " HTTP/1.1\r\nHost: ");
    tc_put(&req, strchr(u->host, ':') ? "[" : "");
    tc_put(&req, u->host);
    tc_put(&req, strchr(u->host, ':') ? "]:" : ":");
    tc_put(&req, u->port);
    tc_put(&req, "\r\nAccept: application/vnd.schemaregistry.v1+json\r\n"
                 "User-Agent: thermocline/" TC_VERSION "\r\nConnection: close\r\n");
    if (body) {
        char cl[64];
        snprintf(cl, sizeof(cl), "Content-Length: %zu\r\n", blen);
        tc_put(&req, "Content-Type: application/vnd.schemaregistry.v1+json\r\n");
        tc_put(&req, cl);
    }
    tc_put(&req, "\r\n");
    if (body)
        tc_jbuf_append(&req, body, blen);
    if (tc_jbuf_failed(&req) || tc_send_all(fd, req.data, req.len) < 0) {
        snprintf(errstr, size, "cannot send the request: %s", strerror(errno));
        tc_jbuf_free(&req);
        close(fd);
        return -1;
    }
    tc_jbuf_free(&req);

    for (;;) {
        ssize_t r;
        if (len + 4096 + 1 > cap) {
            char *nb;
            if (cap >= TC_CLIENT_RESPONSE_MAX) {
                snprintf(errstr, size, "response larger than %d bytes", TC_CLIENT_RESPONSE_MAX);
                goto fail;
            }
            cap = cap ? cap * 2 : 16384;
            nb = realloc(buf, cap);
            if (!nb) {
                snprintf(errstr, size, "out of memory");
                goto fail;
            }
            buf = nb;
        }
        r = recv(fd, buf + len, cap - len - 1, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            snprintf(errstr, size, "cannot read the response: %s", strerror(errno));
            goto fail;
        }
        if (r == 0)
            break;
        len += (size_t)r;
    }
    close(fd);
    fd = -1;
    if (!buf) {
        snprintf(errstr, size, "empty response");
        goto fail;
    }
    buf[len] = '\0';
    hdr_end = strstr(buf, "\r\n\r\n");
    if (strncmp(buf, "HTTP/1.", 7) != 0 || !hdr_end || len < 12) {
        snprintf(errstr, size, "malformed HTTP response");
        goto fail;
    }
    reply->status = atoi(buf + 9);
    *hdr_end = '\0';
    for (p = strstr(buf, "\r\n"); p && p < hdr_end; p = strstr(p + 2, "\r\n")) {
        if (!strncasecmp(p + 2, "Content-Length:", 15))
            clen = strtol(p + 17, NULL, 10);
        else if (!strncasecmp(p + 2, "Transfer-Encoding:", 18) && strstr(p + 20, "chunked"))
            chunked = 1;
    }
    p = hdr_end + 4;
    reply->len = len - (size_t)(p - buf);
    if (chunked) {
        long n = tc_dechunk(p, reply->len);
        if (n < 0) {
            snprintf(errstr, size, "malformed chunked response");
            goto fail;
        }
        reply->len = (size_t)n;
    } else if (clen >= 0 && (size_t)clen < reply->len) {
        reply->len = (size_t)clen;
    }
    memmove(buf, p, reply->len);
    buf[reply->len] = '\0';
    reply->body = buf;
    return 0;
fail:
    if (fd >= 0)
        close(fd);
    free(buf);
    return -1;
}

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
static tc_json_doc *tc_call(const tc_url *u, const char *what, const char *method, const char *path,
                            const char *body, int *status)
{
    char errstr[TC_ERRSTR_MAX];
    tc_http_reply r;
    tc_json_doc *doc;

    if (!path) {
        fprintf(stderr, "thermocline schema %s: out of memory\n", what);
        return NULL;
    }
    if (tc_client_request(u, method, path, body, &r, errstr, sizeof(errstr)) < 0) {
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

static int tc_schema_register(const tc_url *u, const char *subject, const char *file)
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

static int tc_schema_ls(const tc_url *u, const char *subject)
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

static int tc_schema_show(const tc_url *u, const char *subject, const char *version)
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

static int tc_schema_check(const tc_url *u, const char *subject, const char *file)
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

static void tc_schema_usage(FILE *out)
{
    fprintf(out,
            "usage: thermocline schema [--registry URL] COMMAND ...\n\n"
            "Talk to a schema registry (thermocline registry, or Confluent's).\n\n"
            "  register SUBJECT FILE   register the Avro schema in FILE under SUBJECT\n"
            "  ls [SUBJECT]            list the subjects, or the versions of SUBJECT\n"
            "  show SUBJECT [VERSION]  print a version (default: latest) with its id\n"
            "  check SUBJECT FILE      test FILE against SUBJECT's compatibility level;\n"
            "                          exit 0 when compatible, 1 when not\n\n"
            "  -r, --registry URL      registry base URL (default: $THERMOCLINE_REGISTRY_URL,\n"
            "                          else " TC_REGISTRY_URL_DEFAULT ")\n"
            "  -h, --help              show this help\n");
}

int tc_cmd_schema(int argc, char **argv)
{
    static const struct option longopts[] = {{"registry", required_argument, NULL, 'r'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    const char *url = getenv("THERMOCLINE_REGISTRY_URL");
    const char *cmd;
    tc_url u;
    int opt, nargs;

    if (!url || !*url)
        url = TC_REGISTRY_URL_DEFAULT;
    while ((opt = getopt_long(argc, argv, "+r:h", longopts, NULL)) != -1) {
        if (opt == 'r') {
            url = optarg;
            continue;
        }
        tc_schema_usage(opt == 'h' ? stdout : stderr);
        return opt == 'h' ? 0 : TC_EXIT_USAGE;
    }
    if (optind >= argc) {
        tc_schema_usage(stderr);
        return TC_EXIT_USAGE;
    }
    if (tc_url_parse(url, &u) < 0) {
        fprintf(stderr,
                "thermocline schema: invalid registry URL \"%s\" (expected http://host:port)\n",
                url);
        return TC_EXIT_USAGE;
    }
    signal(SIGPIPE, SIG_IGN);
    cmd = argv[optind];
    nargs = argc - optind - 1;
    if (!strcmp(cmd, "register") && nargs == 2)
        return tc_schema_register(&u, argv[optind + 1], argv[optind + 2]);
    if (!strcmp(cmd, "ls") && nargs <= 1)
        return tc_schema_ls(&u, nargs ? argv[optind + 1] : NULL);
    if (!strcmp(cmd, "show") && (nargs == 1 || nargs == 2))
        return tc_schema_show(&u, argv[optind + 1], nargs == 2 ? argv[optind + 2] : NULL);
    if (!strcmp(cmd, "check") && nargs == 2)
        return tc_schema_check(&u, argv[optind + 1], argv[optind + 2]);
    if (!strcmp(cmd, "help")) {
        tc_schema_usage(stdout);
        return 0;
    }
    tc_schema_usage(stderr);
    return TC_EXIT_USAGE;
}
