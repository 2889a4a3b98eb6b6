/*
 * http.c -- HTTP server over libmicrohttpd and its router; see http.h.
 *
 * libmicrohttpd calls the access handler several times per request: once when the headers are in
 * (we check Content-Length there and refuse an oversized body at once), once per piece of body
 * (appended to a bounded buffer), and once more when the request is complete (we dispatch). The raw
 * request target, query included, is captured by the URI log callback before libmicrohttpd
 * unescapes anything, so routing sees exactly what the client sent.
 *
 * Every connection is tracked from libmicrohttpd's connection notification to its close (a
 * tc_http_conn in a list under the server's lock): when its current request began, whether a
 * handler or a response is in progress, how many requests it served. The reaper thread shuts down
 * (shutdown(2), so libmicrohttpd sees the peer gone and closes it cleanly in its own thread) every
 * connection whose request has not fully arrived within request_deadline_ms; the close
 * notification comes before libmicrohttpd closes the socket, so the reaper never touches a
 * descriptor that was reused. Authentication and the client certificate are checked once the
 * headers are in, before the body is read; a refused request's body is drained like an oversized
 * one's, so the client sees the 401 or 403 rather than a reset.
 */
#include "api/http.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <gnutls/gnutls.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <pthread.h>
#include <sys/socket.h>
#include <time.h>

#include "api/http_auth.h"
#include "api/http_gzip.h"
#include "core/json.h"
#include "core/log.h"
#include "core/secret.h"

/* Body bytes read and dropped after a request is known to be too large, before the connection is
 * cut instead (see the 413 handling in tc_http_access). */
#define TC_HTTP_DISCARD_MAX (64 * 1024 * 1024)
/* Path segments a route may have; deeper paths never match. */
#define TC_HTTP_SEGS_MAX 16
/* How often the reaper looks at most (it looks four times per deadline when that is shorter). */
#define TC_HTTP_REAP_MS_MAX 250

/* One open connection (see the file comment). */
typedef struct tc_http_conn {
    struct tc_http_conn *prev, *next;
    int fd;
    int64_t phase_us; /* when its current request could begin arriving */
    int busy;         /* a handler or a response is in progress */
    int reaped;
    unsigned requests;
} tc_http_conn;

typedef struct tc_http_route_def {
    char method[16];
    char *pattern; /* owned copy, '/' replaced by NUL between segments */
    const char *segs[TC_HTTP_SEGS_MAX];
    unsigned char is_param[TC_HTTP_SEGS_MAX];
    size_t nsegs;
    tc_http_handler fn;
    void *ctx;
} tc_http_route_def;

struct tc_http_server {
    struct sockaddr_storage addr;
    socklen_t addrlen;
    char listen[128];
    tc_http_options opt;
    tc_http_route_def routes[TC_HTTP_ROUTES_MAX];
    size_t nroutes;
    struct MHD_Daemon *daemon;
    unsigned port;
    char *tls_cert, *tls_key, *tls_ca; /* PEM, held while the daemon runs */
    pthread_mutex_t lock;              /* conns */
    pthread_cond_t reap_wake;
    tc_http_conn *conns;
    pthread_t reaper;
    int reaper_running, reaper_stop;
    uint64_t reaped; /* connections cut at their deadline */
};

/* Per-request state, from the URI callback to the completion callback. */
typedef struct tc_http_req_state {
    char *target;
    char *body;
    size_t len, cap;
    int too_large;
    int refused; /* 401 or 403: the body is drained, then this is the answer */
    int responded;
    size_t discarded; /* body bytes dropped after it was found too large */
} tc_http_req_state;

/* ---- responses ---- */

/* Let go of resp's body: free it, or give a borrowed one back. */
static void tc_http_body_release(tc_http_response *resp)
{
    if (resp->body_free)
        resp->body_free(resp->body_ctx);
    else
        free(resp->body);
    resp->body_free = NULL;
    resp->body_ctx = NULL;
}

void tc_http_response_clear(tc_http_response *resp)
{
    tc_http_body_release(resp);
    if (resp->stream_free)
        resp->stream_free(resp->stream_ctx);
    memset(resp, 0, sizeof(*resp));
}

tc_err tc_http_add_header(tc_http_response *resp, const char *name, const char *value)
{
    tc_http_header *h;

    if (resp->nheaders >= TC_HTTP_RESP_HEADERS_MAX)
        return TC_ERR_FULL;
    h = &resp->headers[resp->nheaders++];
    h->name = name;
    snprintf(h->value, sizeof(h->value), "%s", value);
    /* A header value never holds a line break (no response splitting, whatever it was given). */
    for (char *c = h->value; *c; c++)
        if (*c == '\r' || *c == '\n')
            *c = ' ';
    return TC_OK;
}

/* Forget what resp held (body or stream) and set its status and content type. */
static void tc_http_reset_body(tc_http_response *resp, int status, const char *content_type)
{
    tc_http_body_release(resp);
    if (resp->stream_free)
        resp->stream_free(resp->stream_ctx);
    resp->body = NULL;
    resp->body_len = 0;
    resp->body_gzip = NULL;
    resp->gzipped = 0;
    resp->stream = NULL;
    resp->stream_ctx = NULL;
    resp->stream_free = NULL;
    resp->status = status;
    resp->content_type = content_type;
}

void tc_http_respond_stream(tc_http_response *resp, int status, const char *content_type,
                            tc_http_stream_fn fn, void *ctx, void (*free_fn)(void *ctx))
{
    tc_http_reset_body(resp, status, content_type);
    resp->stream = fn;
    resp->stream_ctx = ctx;
    resp->stream_free = free_fn;
}

void tc_http_respond_borrowed(tc_http_response *resp, int status, const char *content_type,
                              const char *body, size_t len, void (*free_fn)(void *ctx), void *ctx)
{
    tc_http_reset_body(resp, status, content_type);
    resp->body = (char *)(uintptr_t)body; /* never written: body_free tells it is borrowed */
    resp->body_len = len;
    resp->body_free = free_fn;
    resp->body_ctx = ctx;
}

void tc_http_respond_owned(tc_http_response *resp, int status, const char *content_type, char *body,
                           size_t len)
{
    tc_http_reset_body(resp, status, content_type);
    resp->body = body;
    resp->body_len = body ? len : 0;
}

void tc_http_respond(tc_http_response *resp, int status, const char *content_type, const char *body,
                     size_t len)
{
    char *copy = NULL;

    if (body && len) {
        copy = malloc(len + 1);
        if (!copy) {
            tc_http_respond_owned(resp, 500, NULL, NULL, 0);
            return;
        }
        memcpy(copy, body, len);
        copy[len] = '\0';
    }
    tc_http_respond_owned(resp, status, content_type, copy, copy ? len : 0);
}

void tc_http_respond_error(tc_http_response *resp, int status, const char *content_type, int code,
                           const char *msg)
{
    tc_jbuf b;
    char *text;
    size_t len = 0;

    tc_jbuf_init(&b, 64 * 1024);
    tc_jbuf_obj_begin(&b);
    tc_jbuf_key(&b, "error_code");
    tc_jbuf_int(&b, code);
    tc_jbuf_key(&b, "message");
    tc_jbuf_str(&b, msg ? msg : "");
    tc_jbuf_obj_end(&b);
    text = tc_jbuf_take(&b, &len);
    tc_http_respond_owned(resp, status, content_type, text, text ? len : 0);
}

/* ---- decoding ---- */

static int tc_hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

long tc_http_pct_decode(const char *s, size_t n, char *out, size_t cap)
{
    size_t o = 0;

    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '%') {
            int hi, lo;
            if (i + 2 >= n)
                return -1;
            hi = tc_hexval(s[i + 1]);
            lo = tc_hexval(s[i + 2]);
            if (hi < 0 || lo < 0)
                return -1;
            c = (char)(hi * 16 + lo);
            i += 2;
        }
        if (c == '\0' || o + 1 >= cap)
            return -1;
        out[o++] = c;
    }
    if (o >= cap)
        return -1;
    out[o] = '\0';
    return (long)o;
}

int tc_http_query(const tc_http_request *req, const char *key, char *buf, size_t size)
{
    const char *q = req->query ? req->query : "";
    size_t klen = strlen(key);

    while (*q) {
        const char *amp = strchr(q, '&');
        size_t plen = amp ? (size_t)(amp - q) : strlen(q);
        const char *eq = memchr(q, '=', plen);
        size_t nlen = eq ? (size_t)(eq - q) : plen;
        char name[128];
        long got = nlen < sizeof(name) ? tc_http_pct_decode(q, nlen, name, sizeof(name)) : -1;

        if (got >= 0 && (size_t)got == klen && !memcmp(name, key, klen)) {
            long vlen;
            if (!eq) {
                if (size)
                    buf[0] = '\0';
                return size ? 1 : -1;
            }
            vlen = tc_http_pct_decode(eq + 1, plen - nlen - 1, buf, size);
            if (vlen < 0)
                return -1;
            for (long i = 0; i < vlen; i++)
                if (buf[i] == '+')
                    buf[i] = ' ';
            return 1;
        }
        q += plen;
        if (*q == '&')
            q++;
    }
    return 0;
}

int tc_http_query_bool(const tc_http_request *req, const char *key)
{
    char v[16];

    return tc_http_query(req, key, v, sizeof(v)) == 1 && !strcasecmp(v, "true");
}

/* ---- router ---- */

tc_err tc_http_route(tc_http_server *s, const char *method, const char *pattern, tc_http_handler fn,
                     void *ctx)
{
    tc_http_route_def *r;
    char *p;
    size_t nparams = 0;

    if (!s || s->daemon || s->nroutes >= TC_HTTP_ROUTES_MAX || !method || !pattern ||
        pattern[0] != '/' || strlen(method) >= sizeof(r->method) || !fn)
        return TC_ERR_INVALID;
    r = &s->routes[s->nroutes];
    memset(r, 0, sizeof(*r));
    r->pattern = strdup(pattern + 1);
    if (!r->pattern)
        return TC_ERR_NOMEM;
    strcpy(r->method, method);
    r->fn = fn;
    r->ctx = ctx;
    p = r->pattern;
    if (*p) {
        for (;;) {
            char *slash = strchr(p, '/');
            size_t len;
            if (slash)
                *slash = '\0';
            len = strlen(p);
            if (r->nsegs >= TC_HTTP_SEGS_MAX) {
                free(r->pattern);
                r->pattern = NULL;
                return TC_ERR_INVALID;
            }
            r->is_param[r->nsegs] = len >= 2 && p[0] == '{' && p[len - 1] == '}';
            if (r->is_param[r->nsegs] && ++nparams > TC_HTTP_PARAMS_MAX) {
                free(r->pattern);
                r->pattern = NULL;
                return TC_ERR_INVALID;
            }
            r->segs[r->nsegs++] = p;
            if (!slash)
                break;
            p = slash + 1;
        }
    }
    s->nroutes++;
    return TC_OK;
}

static const char *tc_http_err_ct(const tc_http_server *s)
{
    return s->opt.error_content_type ? s->opt.error_content_type : TC_HTTP_JSON;
}

void tc_http_dispatch(const tc_http_server *s, const char *method, const char *target,
                      const char *content_type, const char *body, size_t body_len,
                      tc_http_response *resp)
{
    tc_http_dispatch_accept(s, method, target, content_type, NULL, body, body_len, resp);
}

void tc_http_dispatch_accept(const tc_http_server *s, const char *method, const char *target,
                             const char *content_type, const char *accept, const char *body,
                             size_t body_len, tc_http_response *resp)
{
    tc_http_in_headers h = {content_type, accept, NULL, NULL};

    tc_http_dispatch_headers(s, method, target, &h, body, body_len, resp);
}

void tc_http_dispatch_headers(const tc_http_server *s, const char *method, const char *target,
                              const tc_http_in_headers *h, const char *body, size_t body_len,
                              tc_http_response *resp)
{
    static const tc_http_in_headers none;
    const char *segs[TC_HTTP_SEGS_MAX];
    size_t seglen[TC_HTTP_SEGS_MAX];
    size_t nsegs = 0, path_len;
    const char *q, *p;
    char *path = NULL, *decoded = NULL, *body_copy = NULL;
    size_t dpos = 0;
    int path_matched = 0;
    tc_http_request req;

    memset(resp, 0, sizeof(*resp));
    if (!h)
        h = &none;
    if (!target || target[0] != '/') {
        tc_http_respond_error(resp, 400, tc_http_err_ct(s), 400, "Bad request target");
        return;
    }
    q = strchr(target, '?');
    path_len = q ? (size_t)(q - target) : strlen(target);
    path = malloc(path_len + 1);
    decoded = malloc(path_len + TC_HTTP_PARAMS_MAX + 1);
    body_copy = malloc(body_len + 1);
    if (!path || !decoded || !body_copy) {
        free(path);
        free(decoded);
        free(body_copy);
        tc_http_respond_error(resp, 500, tc_http_err_ct(s), 500, "Out of memory");
        return;
    }
    memcpy(path, target, path_len);
    path[path_len] = '\0';
    if (body_len)
        memcpy(body_copy, body, body_len);
    body_copy[body_len] = '\0';

    /* Split "/a/b/c" into raw segments; "/" alone has none. */
    p = path + 1;
    if (*p) {
        for (;;) {
            const char *slash = strchr(p, '/');
            size_t len = slash ? (size_t)(slash - p) : strlen(p);
            if (nsegs == TC_HTTP_SEGS_MAX) {
                nsegs = TC_HTTP_SEGS_MAX + 1;
                break;
            }
            segs[nsegs] = p;
            seglen[nsegs++] = len;
            if (!slash)
                break;
            p = slash + 1;
        }
    }

    for (size_t i = 0; i < s->nroutes && nsegs <= TC_HTTP_SEGS_MAX; i++) {
        const tc_http_route_def *r = &s->routes[i];
        size_t k;
        int bad = 0;

        if (r->nsegs != nsegs)
            continue;
        for (k = 0; k < nsegs; k++) {
            if (r->is_param[k]
                    ? seglen[k] == 0
                    : (strlen(r->segs[k]) != seglen[k] || memcmp(r->segs[k], segs[k], seglen[k])))
                break;
        }
        if (k < nsegs)
            continue;
        path_matched = 1;
        if (strcmp(r->method, method))
            continue;
        memset(&req, 0, sizeof(req));
        req.method = method;
        req.path = path;
        req.query = q ? q + 1 : "";
        req.content_type = h->content_type;
        req.accept = h->accept;
        req.authorization = h->authorization;
        req.api_key = h->api_key;
        req.body = body_copy;
        req.body_len = body_len;
        dpos = 0;
        for (k = 0; k < nsegs && !bad; k++) {
            long n;
            if (!r->is_param[k])
                continue;
            n = tc_http_pct_decode(segs[k], seglen[k], decoded + dpos,
                                   path_len + TC_HTTP_PARAMS_MAX + 1 - dpos);
            if (n < 0) {
                bad = 1;
                break;
            }
            req.params[req.nparams++] = decoded + dpos;
            dpos += (size_t)n + 1;
        }
        if (bad) {
            tc_http_respond_error(resp, 400, tc_http_err_ct(s), 400,
                                  "Malformed percent-encoding in the request path");
        } else {
            r->fn(r->ctx, &req, resp);
            if (!resp->status)
                tc_http_respond_error(resp, 500, tc_http_err_ct(s), 500,
                                      "The handler gave no response");
        }
        free(path);
        free(decoded);
        free(body_copy);
        return;
    }
    if (path_matched)
        tc_http_respond_error(resp, 405, tc_http_err_ct(s), 405, "HTTP 405 Method Not Allowed");
    else
        tc_http_respond_error(resp, 404, tc_http_err_ct(s), 404, "HTTP 404 Not Found");
    free(path);
    free(decoded);
    free(body_copy);
}

/* ---- server ---- */

static tc_err tc_http_parse_addr(tc_http_server *s, const char *listen_addr, char *errstr,
                                 size_t errstr_size)
{
    char host[128], port[16];
    const char *colon;
    struct addrinfo hints, *res = NULL;
    int rc;

    if (!listen_addr || strlen(listen_addr) >= sizeof(host))
        return tc_err_set(TC_ERR_CONFIG, errstr, errstr_size, "invalid listen address");
    if (listen_addr[0] == '[') {
        const char *close = strchr(listen_addr, ']');
        if (!close || close[1] != ':')
            return tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                              "invalid listen address \"%s\" (expected [v6]:port)", listen_addr);
        memcpy(host, listen_addr + 1, (size_t)(close - listen_addr - 1));
        host[close - listen_addr - 1] = '\0';
        colon = close + 1;
    } else {
        colon = strrchr(listen_addr, ':');
        if (!colon)
            return tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                              "invalid listen address \"%s\" (expected host:port)", listen_addr);
        memcpy(host, listen_addr, (size_t)(colon - listen_addr));
        host[colon - listen_addr] = '\0';
    }
    if (strlen(colon + 1) == 0 || strlen(colon + 1) >= sizeof(port) ||
        strspn(colon + 1, "0123456789") != strlen(colon + 1) || atol(colon + 1) > 65535)
        return tc_err_set(TC_ERR_CONFIG, errstr, errstr_size, "invalid port in \"%s\"",
                          listen_addr);
    strcpy(port, colon + 1);
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    rc = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
    if (rc != 0 || !res)
        return tc_err_set(TC_ERR_CONFIG, errstr, errstr_size, "cannot resolve \"%s\": %s",
                          listen_addr, gai_strerror(rc));
    memcpy(&s->addr, res->ai_addr, res->ai_addrlen);
    s->addrlen = res->ai_addrlen;
    freeaddrinfo(res);
    snprintf(s->listen, sizeof(s->listen), "%s", listen_addr);
    return TC_OK;
}

tc_http_server *tc_http_server_new(const char *listen_addr, const tc_http_options *opt,
                                   char *errstr, size_t errstr_size)
{
    tc_http_server *s = calloc(1, sizeof(*s));

    if (!s) {
        tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory");
        return NULL;
    }
    if (opt)
        s->opt = *opt;
    if (!s->opt.max_body_bytes)
        s->opt.max_body_bytes = TC_HTTP_BODY_MAX_DEFAULT;
    if (!s->opt.threads)
        s->opt.threads = TC_HTTP_THREADS_DEFAULT;
    if (!s->opt.max_connections)
        s->opt.max_connections = TC_HTTP_CONNS_DEFAULT;
    if (!s->opt.timeout_s)
        s->opt.timeout_s = TC_HTTP_TIMEOUT_S_DEFAULT;
    if (!s->opt.per_ip_connections)
        s->opt.per_ip_connections = TC_HTTP_PER_IP_DEFAULT;
    if (!s->opt.request_deadline_ms)
        s->opt.request_deadline_ms = TC_HTTP_DEADLINE_MS_DEFAULT;
    if (!s->opt.max_requests_per_connection)
        s->opt.max_requests_per_connection = TC_HTTP_REQS_PER_CONN_DEFAULT;
    if (listen_addr && tc_http_parse_addr(s, listen_addr, errstr, errstr_size) != TC_OK) {
        free(s);
        return NULL;
    }
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->reap_wake, NULL);
    return s;
}

void tc_http_options_from_config(tc_http_options *opt, const tc_config *cfg)
{
    opt->max_connections = (unsigned)cfg->http_max_connections;
    opt->per_ip_connections = (unsigned)cfg->http_per_ip_connections;
    opt->request_deadline_ms = (unsigned)cfg->http_request_deadline_ms;
    opt->timeout_s = (unsigned)cfg->http_idle_timeout_s;
    opt->max_requests_per_connection = (unsigned)cfg->http_max_requests_per_connection;
    opt->tls_cert_file = cfg->http_tls_cert_file;
    opt->tls_key_file = cfg->http_tls_key_file;
    opt->tls_client_ca_file = cfg->http_tls_client_ca_file;
    opt->identity_only = !cfg->http_gzip;
}

/* ---- connection tracking and the reaper ---- */

static int64_t tc_http_mono_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static tc_http_conn *tc_http_conn_of(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);

    return ci ? ci->socket_context : NULL;
}

static void tc_http_notify_conn(void *cls, struct MHD_Connection *c, void **socket_context,
                                enum MHD_ConnectionNotificationCode code)
{
    tc_http_server *s = cls;
    tc_http_conn *k = *socket_context;

    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        k = calloc(1, sizeof(*k));
        if (!k)
            return; /* untracked: only the idle timeout bounds it */
        k->fd = ci ? ci->connect_fd : -1;
        k->phase_us = tc_http_mono_us();
        pthread_mutex_lock(&s->lock);
        k->next = s->conns;
        if (s->conns)
            s->conns->prev = k;
        s->conns = k;
        pthread_mutex_unlock(&s->lock);
        *socket_context = k;
    } else if (k) {
        pthread_mutex_lock(&s->lock);
        if (k->prev)
            k->prev->next = k->next;
        else
            s->conns = k->next;
        if (k->next)
            k->next->prev = k->prev;
        pthread_mutex_unlock(&s->lock);
        free(k);
        *socket_context = NULL;
    }
}

/* Mark the connection of c busy (a complete request is being answered) or done with it. */
static void tc_http_conn_busy(tc_http_server *s, struct MHD_Connection *c, int busy)
{
    tc_http_conn *k = tc_http_conn_of(c);

    if (!k)
        return;
    pthread_mutex_lock(&s->lock);
    k->busy = busy;
    if (!busy)
        k->phase_us = tc_http_mono_us();
    pthread_mutex_unlock(&s->lock);
}

static void *tc_http_reaper_main(void *arg)
{
    tc_http_server *s = arg;
    int64_t deadline_us = (int64_t)s->opt.request_deadline_ms * 1000;
    int64_t every_us =
        deadline_us / 4 < TC_HTTP_REAP_MS_MAX * 1000 ? deadline_us / 4 : TC_HTTP_REAP_MS_MAX * 1000;

    pthread_mutex_lock(&s->lock);
    while (!s->reaper_stop) {
        struct timespec until;
        int64_t now = tc_http_mono_us();
        for (tc_http_conn *k = s->conns; k; k = k->next) {
            if (k->busy || k->reaped || k->fd < 0 || now - k->phase_us < deadline_us)
                continue;
            /* The close notification takes this lock before libmicrohttpd closes the socket, so
             * the descriptor is still this connection's. */
            shutdown(k->fd, SHUT_RDWR);
            k->reaped = 1;
            s->reaped++;
        }
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += every_us / 1000000;
        until.tv_nsec += (every_us % 1000000) * 1000;
        if (until.tv_nsec >= 1000000000) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&s->reap_wake, &s->lock, &until);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

static void *tc_http_uri_cb(void *cls, const char *uri, struct MHD_Connection *con)
{
    tc_http_req_state *st = calloc(1, sizeof(*st));

    (void)cls;
    (void)con;
    if (st) {
        st->target = strdup(uri ? uri : "");
        if (!st->target) {
            free(st);
            st = NULL;
        }
    }
    return st;
}

static void tc_http_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                              enum MHD_RequestTerminationCode toe)
{
    tc_http_req_state *st = *con_cls;

    (void)toe;
    tc_http_conn_busy(cls, c, 0);
    if (st) {
        free(st->target);
        free(st->body);
        free(st);
    }
    *con_cls = NULL;
}

/* libmicrohttpd must not unescape the target: we route on the raw form (see the file comment). */
static size_t tc_http_no_unescape(void *cls, struct MHD_Connection *c, char *s)
{
    (void)cls;
    (void)c;
    return strlen(s);
}

__attribute__((format(printf, 2, 0))) static void tc_http_mhd_log(void *cls, const char *fmt,
                                                                  va_list ap)
{
    char msg[512];

    (void)cls;
    vsnprintf(msg, sizeof(msg), fmt, ap);
    msg[strcspn(msg, "\n")] = '\0';
    tc_log_warn("http", "%s", msg);
}

/* libmicrohttpd's content reader over a tc_http_stream_fn. */
static ssize_t tc_http_stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    tc_http_response *held = cls;
    long n;

    (void)pos;
    n = held->stream(held->stream_ctx, buf, max);
    if (n == TC_HTTP_STREAM_END)
        return MHD_CONTENT_READER_END_OF_STREAM;
    if (n <= 0 || (size_t)n > max)
        return MHD_CONTENT_READER_END_WITH_ERROR;
    return (ssize_t)n;
}

static void tc_http_stream_done(void *cls)
{
    tc_http_response *held = cls;

    tc_http_response_clear(held);
    free(held);
}

static int tc_http_has_header(const tc_http_response *resp, const char *name)
{
    for (size_t i = 0; i < resp->nheaders; i++)
        if (!strcasecmp(resp->headers[i].name, name))
            return 1;
    return 0;
}

/* Headers of resp on r, queue it, drop our reference. vary: the server codes responses by the
 * request's Accept-Encoding (http_gzip.h). */
static enum MHD_Result tc_http_queue(struct MHD_Connection *c, struct MHD_Response *r,
                                     const tc_http_response *resp, const char *default_ct,
                                     int close_after, int vary)
{
    enum MHD_Result ret;
    const char *ct = resp->content_type ? resp->content_type : default_ct;

    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ct);
    if (resp->gzipped)
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_ENCODING, "gzip");
    if (vary && tc_http_gzip_compressible(ct))
        MHD_add_response_header(r, MHD_HTTP_HEADER_VARY, MHD_HTTP_HEADER_ACCEPT_ENCODING);
    if (close_after)
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
    /* The registry's writes take Basic credentials; a handler may ask for others (Bearer). */
    if (resp->status == 401 && !tc_http_has_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE))
        MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Basic realm=\"thermocline\"");
    for (size_t i = 0; i < resp->nheaders; i++)
        MHD_add_response_header(r, resp->headers[i].name, resp->headers[i].value);
    ret = MHD_queue_response(c, (unsigned)resp->status, r);
    MHD_destroy_response(r);
    return ret;
}

/* What tc_http_send is told of the request's Accept-Encoding (see there). */
static int tc_http_coding(const tc_http_server *s, struct MHD_Connection *c)
{
    if (s->opt.identity_only)
        return -1;
    return tc_http_gzip_accepted(
        MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_ACCEPT_ENCODING));
}

/* Send resp on c. coding: -1 when the server does not code responses (http.gzip off), else
 * whether the request accepts gzip. */
static enum MHD_Result tc_http_send(struct MHD_Connection *c, tc_http_response *resp,
                                    const char *default_ct, int close_after, int coding)
{
    struct MHD_Response *r;
    enum MHD_Result ret;
    void *body;
    int vary = coding >= 0;

    if (!resp->content_type)
        resp->content_type = default_ct;
    tc_http_gzip_apply(resp, coding > 0);
    body = resp->body;

    if (resp->stream) {
        /* The stream outlives this call: its state moves to the heap, freed by libmicrohttpd
         * when the response is destroyed (ended, failed or abandoned by the client). */
        tc_http_response *held = malloc(sizeof(*held));
        if (!held) {
            tc_http_response_clear(resp);
            return MHD_NO;
        }
        *held = *resp;
        memset(resp, 0, sizeof(*resp));
        r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 64 * 1024, tc_http_stream_read,
                                              held, tc_http_stream_done);
        if (!r) {
            tc_http_stream_done(held);
            return MHD_NO;
        }
        return tc_http_queue(c, r, held, default_ct, close_after, vary);
    }
    if (resp->body_free) {
        /* Borrowed: libmicrohttpd gives it back once sent (or at once when it cannot queue). */
        r = MHD_create_response_from_buffer_with_free_callback_cls(resp->body_len, body,
                                                                   resp->body_free, resp->body_ctx);
        if (!r) {
            tc_http_response_clear(resp);
            return MHD_NO;
        }
        resp->body = NULL;
        resp->body_free = NULL;
        resp->body_ctx = NULL;
        ret = tc_http_queue(c, r, resp, default_ct, close_after, vary);
        tc_http_response_clear(resp);
        return ret;
    }
    if (!body) {
        body = malloc(1);
        if (!body)
            return MHD_NO;
    }
    r = MHD_create_response_from_buffer_with_free_callback(resp->body_len, body, free);
    if (!r) {
        if (body != resp->body)
            free(body);
        tc_http_response_clear(resp);
        return MHD_NO;
    }
    resp->body = NULL; /* owned by the MHD response now */
    ret = tc_http_queue(c, r, resp, default_ct, close_after, vary);
    tc_http_response_clear(resp);
    return ret;
}

/* Nonzero when the client presented a certificate that the trusted CA signed and that is valid
 * now (gnutls checks the chain, the dates and the key usage). */
static int tc_http_client_cert_ok(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_GNUTLS_SESSION);
    gnutls_session_t ses;
    unsigned status = 0, n = 0;

    if (!ci || !ci->tls_session)
        return 0;
    ses = (gnutls_session_t)ci->tls_session;
    if (gnutls_certificate_type_get(ses) != GNUTLS_CRT_X509 ||
        !gnutls_certificate_get_peers(ses, &n) || n == 0)
        return 0;
    return gnutls_certificate_verify_peers2(ses, &status) == 0 && status == 0;
}

/* 0 when the request may go on once its headers are in; else the status that refuses it. */
static int tc_http_admit(const tc_http_server *s, struct MHD_Connection *c, const char *method)
{
    if (s->tls_ca && !tc_http_client_cert_ok(c))
        return 403;
    return tc_http_auth_check(
        s->opt.auth, method,
        MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION));
}

static void tc_http_refusal(const tc_http_server *s, int status, tc_http_response *resp)
{
    tc_http_respond_error(resp, status, tc_http_err_ct(s), status == 403 ? 40301 : 40101,
                          status == 403
                              ? "A client certificate signed by the server's client CA is needed "
                                "(http.tls.client_ca_file)"
                              : "Authentication needed: send HTTP Basic credentials (Confluent's "
                                "basic.auth.user.info) or a bearer token");
}

static enum MHD_Result tc_http_access(void *cls, struct MHD_Connection *c, const char *url,
                                      const char *method, const char *version,
                                      const char *upload_data, size_t *upload_data_size,
                                      void **con_cls)
{
    tc_http_server *s = cls;
    tc_http_req_state *st = *con_cls;
    tc_http_conn *k = tc_http_conn_of(c);
    tc_http_response resp;
    tc_http_in_headers hdr;
    char msg[128];
    int close_after = k && k->requests >= s->opt.max_requests_per_connection;

    (void)url;
    (void)version;
    if (!st)
        return MHD_NO; /* out of memory in the URI callback */
    if (st->responded)
        return MHD_YES;
    if (!st->body) {
        /* First call: headers only. Refuse an announced oversized body before reading it. */
        const char *cl =
            MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        st->cap = 1024;
        st->body = malloc(st->cap);
        if (!st->body)
            return MHD_NO;
        st->body[0] = '\0';
        if (k)
            k->requests++; /* only this connection's thread touches it */
        st->refused = tc_http_admit(s, c, method);
        if (st->refused)
            return MHD_YES; /* the body is drained, then refused (see the file comment) */
        if (cl && strtoull(cl, NULL, 10) > s->opt.max_body_bytes) {
            const char *expect =
                MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_EXPECT);
            st->too_large = 1;
            /* A client that sends the body before reading the answer would see the connection
             * reset under it: unless it waits for 100 Continue, read and drop the body first. */
            if (!expect || strcasecmp(expect, "100-continue"))
                return MHD_YES;
            st->responded = 1;
            tc_http_conn_busy(s, c, 1);
            snprintf(msg, sizeof(msg), "Request body larger than %zu bytes", s->opt.max_body_bytes);
            memset(&resp, 0, sizeof(resp));
            tc_http_respond_error(&resp, 413, tc_http_err_ct(s), 413, msg);
            return tc_http_send(c, &resp, tc_http_err_ct(s), 1, tc_http_coding(s, c));
        }
        return MHD_YES;
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        st->discarded += st->too_large || st->refused ? n : 0;
        if (st->too_large || st->refused) /* dropped; a client that will not stop is cut off */
            return st->discarded > TC_HTTP_DISCARD_MAX ? MHD_NO : MHD_YES;
        if (st->len + n > s->opt.max_body_bytes) {
            st->too_large = 1;
            st->discarded = n;
            return MHD_YES;
        }
        if (st->len + n + 1 > st->cap) {
            size_t cap = st->cap;
            char *nb;
            while (cap < st->len + n + 1)
                cap *= 2;
            nb = realloc(st->body, cap);
            if (!nb)
                return MHD_NO;
            st->body = nb;
            st->cap = cap;
        }
        memcpy(st->body + st->len, upload_data, n);
        st->len += n;
        st->body[st->len] = '\0';
        return MHD_YES;
    }
    st->responded = 1;
    tc_http_conn_busy(s, c, 1);
    if (st->refused) {
        memset(&resp, 0, sizeof(resp));
        tc_http_refusal(s, st->refused, &resp);
        return tc_http_send(c, &resp, tc_http_err_ct(s), close_after, tc_http_coding(s, c));
    }
    if (st->too_large) {
        snprintf(msg, sizeof(msg), "Request body larger than %zu bytes", s->opt.max_body_bytes);
        memset(&resp, 0, sizeof(resp));
        tc_http_respond_error(&resp, 413, tc_http_err_ct(s), 413, msg);
        return tc_http_send(c, &resp, tc_http_err_ct(s), 1, tc_http_coding(s, c));
    }
    hdr.content_type =
        MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
    hdr.accept = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_ACCEPT);
    hdr.authorization =
        MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    hdr.api_key = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-API-Key");
    tc_http_dispatch_headers(s, method, st->target, &hdr, st->body, st->len, &resp);
    return tc_http_send(c, &resp, TC_HTTP_JSON, close_after, tc_http_coding(s, c));
}

/* Read the TLS files of the options into the server (held until destroy). */
static tc_err tc_http_load_tls(tc_http_server *s, char *errstr, size_t errstr_size)
{
    if (!s->opt.tls_cert_file || !*s->opt.tls_cert_file)
        return TC_OK;
    if (!MHD_is_feature_supported(MHD_FEATURE_TLS))
        return tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                          "http.tls.cert_file is set but this libmicrohttpd has no TLS support");
    if (!s->opt.tls_key_file || !*s->opt.tls_key_file)
        return tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                          "http.tls.cert_file is set without http.tls.key_file");
    if (!(s->tls_cert = tc_secret_read_file("http.tls.cert_file", s->opt.tls_cert_file, 0, NULL,
                                            errstr, errstr_size)) ||
        !(s->tls_key = tc_secret_read_file("http.tls.key_file", s->opt.tls_key_file, 1, NULL,
                                           errstr, errstr_size)))
        return TC_ERR_CONFIG;
    if (s->opt.tls_client_ca_file && *s->opt.tls_client_ca_file &&
        !(s->tls_ca = tc_secret_read_file("http.tls.client_ca_file", s->opt.tls_client_ca_file, 0,
                                          NULL, errstr, errstr_size)))
        return TC_ERR_CONFIG;
    return TC_OK;
}

tc_err tc_http_server_start(tc_http_server *s, char *errstr, size_t errstr_size)
{
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_USE_ERROR_LOG;
    const union MHD_DaemonInfo *info;
    struct MHD_OptionItem tls[4];
    size_t ntls = 0;
    tc_err err;

    if (!s || s->daemon)
        return tc_err_set(TC_ERR_INVALID, errstr, errstr_size, "server already started");
    if (!s->addrlen)
        return tc_err_set(TC_ERR_CONFIG, errstr, errstr_size, "no listen address");
    if (s->addr.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    if (s->opt.thread_per_connection)
        flags |= MHD_USE_THREAD_PER_CONNECTION;
    if ((err = tc_http_load_tls(s, errstr, errstr_size)) != TC_OK)
        return err;
    if (s->tls_cert) {
        flags |= MHD_USE_TLS;
        tls[ntls++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0, s->tls_cert};
        tls[ntls++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, s->tls_key};
        if (s->tls_ca) /* libmicrohttpd asks for a certificate; tc_http_admit requires it */
            tls[ntls++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_TRUST, 0, s->tls_ca};
    }
    tls[ntls] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
    s->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, tc_http_access, s, MHD_OPTION_EXTERNAL_LOGGER, tc_http_mhd_log,
        (void *)s, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&s->addr, MHD_OPTION_URI_LOG_CALLBACK,
        tc_http_uri_cb, (void *)s, MHD_OPTION_NOTIFY_COMPLETED, tc_http_completed, (void *)s,
        MHD_OPTION_NOTIFY_CONNECTION, tc_http_notify_conn, (void *)s, MHD_OPTION_UNESCAPE_CALLBACK,
        tc_http_no_unescape, (void *)s, MHD_OPTION_CONNECTION_LIMIT, s->opt.max_connections,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, s->opt.per_ip_connections,
        MHD_OPTION_CONNECTION_TIMEOUT, s->opt.timeout_s, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (size_t)(64 * 1024), MHD_OPTION_ARRAY, tls,
        s->opt.threads > 1 && !s->opt.thread_per_connection ? MHD_OPTION_THREAD_POOL_SIZE
                                                            : MHD_OPTION_END,
        s->opt.threads, MHD_OPTION_END);
    if (!s->daemon)
        return tc_err_set(s->tls_cert ? TC_ERR_CONFIG : TC_ERR_IO, errstr, errstr_size,
                          "cannot listen on %s: %s%s", s->listen,
                          strerror(errno ? errno : EADDRINUSE),
                          s->tls_cert ? " (or http.tls.cert_file and http.tls.key_file are not a "
                                        "PEM certificate and its key; see the log)"
                                      : "");
    info = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
    s->port = info ? info->port : 0;
    s->reaper_stop = 0;
    if (pthread_create(&s->reaper, NULL, tc_http_reaper_main, s) == 0)
        s->reaper_running = 1;
    else
        tc_log_warn("http",
                    "%s: no reaper thread: slow requests are bounded by the idle timeout "
                    "only",
                    s->listen);
    return TC_OK;
}

unsigned tc_http_server_port(const tc_http_server *s)
{
    return s && s->daemon ? s->port : 0;
}

void tc_http_server_stop(tc_http_server *s)
{
    if (s && s->reaper_running) {
        pthread_mutex_lock(&s->lock);
        s->reaper_stop = 1;
        pthread_cond_signal(&s->reap_wake);
        pthread_mutex_unlock(&s->lock);
        pthread_join(s->reaper, NULL);
        s->reaper_running = 0;
    }
    if (s && s->daemon) {
        MHD_stop_daemon(s->daemon);
        s->daemon = NULL;
    }
}

uint64_t tc_http_server_reaped(tc_http_server *s)
{
    uint64_t n;

    pthread_mutex_lock(&s->lock);
    n = s->reaped;
    pthread_mutex_unlock(&s->lock);
    return n;
}

void tc_http_server_destroy(tc_http_server *s)
{
    if (!s)
        return;
    tc_http_server_stop(s);
    for (size_t i = 0; i < s->nroutes; i++)
        free(s->routes[i].pattern);
    free(s->tls_cert);
    tc_secret_free(s->tls_key);
    free(s->tls_ca);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->reap_wake);
    free(s);
}
