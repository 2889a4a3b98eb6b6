/*
 * http.h -- a thin HTTP/1.1 server over libmicrohttpd, with a router.
 *
 * One server per process serves every control-plane endpoint (the schema registry now; /healthz,
 * /readyz and /metrics later). Routes are a method plus a path pattern whose segments are literals
 * or {params}: "/subjects/{subject}/versions/{version}". The path of a request is matched segment
 * by segment on its raw (still percent-encoded) form, so an encoded slash (%2F) stays inside one
 * parameter; each parameter is then percent-decoded (a decoded NUL or a malformed escape is a 400).
 * A path that matches a route under another method gets 405, one that matches no route 404; both
 * with a JSON body.
 *
 * Bodies are bounded: a request whose Content-Length (or whose streamed body) is above
 * max_body_bytes gets 413 without the handler running. Connections, per-connection memory and idle
 * time are bounded too (see tc_http_options). Responses are JSON unless a handler says otherwise.
 *
 * Threads: libmicrohttpd's internal polling thread, or a pool of them (options.threads), calls the
 * handlers; a handler that shares state across requests locks it. tc_http_server_stop stops
 * accepting, lets running handlers finish and closes every connection; destroy frees everything.
 *
 * tc_http_dispatch runs the router and a handler without any socket: it is what the server calls
 * for each complete request, and what unit tests and fuzz targets call directly.
 */
#ifndef TC_API_HTTP_H
#define TC_API_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "core/config.h"
#include "core/error.h"

#define TC_HTTP_PARAMS_MAX            8
#define TC_HTTP_ROUTES_MAX            64
#define TC_HTTP_BODY_MAX_DEFAULT      (1024 * 1024)
#define TC_HTTP_THREADS_DEFAULT       4
#define TC_HTTP_CONNS_DEFAULT         256
#define TC_HTTP_TIMEOUT_S_DEFAULT     30
#define TC_HTTP_PER_IP_DEFAULT        32
#define TC_HTTP_DEADLINE_MS_DEFAULT   10000
#define TC_HTTP_REQS_PER_CONN_DEFAULT 1000
/* The JSON content type of responses unless a handler sets another. */
#define TC_HTTP_JSON "application/json"

typedef struct tc_http_auth tc_http_auth;

/*
 * Exhaustion: a client that opens connections and sends nothing, or half a request line, or one
 * byte a second, holds a connection. Four bounds keep one such client from denying service to the
 * others: max_connections for the whole server, per_ip_connections for one client address,
 * request_deadline_ms for a whole request (line, headers and body) to arrive after the connection
 * opened or the previous response went out -- an idle timeout alone is reset by every byte -- and
 * max_requests_per_connection. A connection past its deadline is shut down by the server's reaper
 * thread, never while its handler runs or its response is sent.
 */
typedef struct tc_http_options {
    size_t max_body_bytes; /* 0 = TC_HTTP_BODY_MAX_DEFAULT */
    unsigned threads;      /* polling threads; 0 = TC_HTTP_THREADS_DEFAULT */
    /* A thread per connection instead (threads unused), for handlers that block: a polling
     * thread takes the connections that arrive together and serves them one after the other, so
     * a handler that waits (for PostgreSQL, for an identical request's answer) would hold up the
     * others it took. */
    int thread_per_connection;
    unsigned max_connections;     /* 0 = TC_HTTP_CONNS_DEFAULT */
    unsigned timeout_s;           /* idle connection timeout; 0 = TC_HTTP_TIMEOUT_S_DEFAULT */
    unsigned per_ip_connections;  /* 0 = TC_HTTP_PER_IP_DEFAULT */
    unsigned request_deadline_ms; /* 0 = TC_HTTP_DEADLINE_MS_DEFAULT */
    unsigned max_requests_per_connection; /* 0 = TC_HTTP_REQS_PER_CONN_DEFAULT */
    const char *error_content_type; /* of the server's own 400/404/405/413 bodies; NULL = JSON */
    /* HTTPS: PEM files, read at tc_http_server_start (NULL or "": plain HTTP). With
     * tls_client_ca_file, every request must come with a client certificate it signed (else 403).
     */
    const char *tls_cert_file, *tls_key_file, *tls_client_ca_file;
    const tc_http_auth *auth; /* who may call (api/http_auth.h); NULL: everyone. Borrowed: it
                               * must outlive the server */
    /* Never gzip a response, whatever the request accepts (http.gzip=false; api/http_gzip.h). */
    int identity_only;
} tc_http_options;

/* The limits and TLS files of cfg's http.* settings into opt (other fields untouched); the strings
 * are cfg's, so cfg must outlive the server. */
void tc_http_options_from_config(tc_http_options *opt, const tc_config *cfg);

typedef struct tc_http_request {
    const char *method;        /* "GET", "POST", ... */
    const char *authorization; /* Authorization header or NULL */
    const char *api_key;       /* X-API-Key header or NULL */
    const char *path;          /* raw path, without the query */
    const char *query;         /* raw query string (after '?'), "" when none */
    const char *content_type;  /* Content-Type header or NULL */
    const char *accept;        /* Accept header or NULL */
    const char *body;          /* NUL-terminated copy of the body ("" when none) */
    size_t body_len;
    const char *params[TC_HTTP_PARAMS_MAX]; /* decoded {param} values, in pattern order */
    size_t nparams;
} tc_http_request;

/* Extra response headers a handler may set (Retry-After, WWW-Authenticate, ...). */
#define TC_HTTP_RESP_HEADERS_MAX 4
#define TC_HTTP_HEADER_VALUE_MAX 256

typedef struct tc_http_header {
    const char *name; /* static string */
    char value[TC_HTTP_HEADER_VALUE_MAX];
} tc_http_header;

/* A streamed body: called again and again from the server's thread once the handler returned,
 * writes up to max bytes into buf and returns how many (> 0), or TC_HTTP_STREAM_END once the body
 * is complete, or TC_HTTP_STREAM_ERROR to cut the connection (the client sees a truncated body:
 * chunked encoding without its last chunk). */
#define TC_HTTP_STREAM_END   (-1)
#define TC_HTTP_STREAM_ERROR (-2)
typedef long (*tc_http_stream_fn)(void *ctx, char *buf, size_t max);

typedef struct tc_http_response {
    int status;               /* 200 unless set */
    const char *content_type; /* static string; NULL = TC_HTTP_JSON */
    char *body; /* malloc'ed, owned by the response; NUL after body_len bytes (or borrowed) */
    size_t body_len;
    /* Set by tc_http_respond_borrowed: body is not the response's, and body_free(body_ctx) runs
     * exactly once when the response is done with it (sent, or cleared). */
    void (*body_free)(void *ctx);
    void *body_ctx;
    /* Optional, with a borrowed body: its gzip form, made once for every response that borrows
     * it (api/http_gzip.h), alive as long as body_ctx; NULL when it cannot be had. */
    const char *(*body_gzip)(void *ctx, size_t *len);
    int gzipped; /* set by tc_http_gzip_apply: the body or stream is gzip-coded */
    tc_http_header headers[TC_HTTP_RESP_HEADERS_MAX];
    size_t nheaders;
    /* Set by tc_http_respond_stream instead of a body. stream_free runs exactly once, when the
     * stream ended, failed, or the client went away (or at tc_http_response_clear when the
     * response was never sent). */
    tc_http_stream_fn stream;
    void *stream_ctx;
    void (*stream_free)(void *ctx);
} tc_http_response;

/* The request headers tc_http_dispatch_headers takes (each NULL when absent). */
typedef struct tc_http_in_headers {
    const char *content_type;
    const char *accept;
    const char *authorization;
    const char *api_key;
} tc_http_in_headers;

/* A route handler fills resp (tc_http_respond* below). */
typedef void (*tc_http_handler)(void *ctx, const tc_http_request *req, tc_http_response *resp);

typedef struct tc_http_server tc_http_server;

/* A server that will listen on listen_addr ("127.0.0.1:8081", "[::1]:8081", ":8081" for every
 * interface; port 0 picks a free port). Nothing is bound until tc_http_server_start. opt may be
 * NULL. Returns NULL with errstr set on a bad address or out of memory. */
tc_http_server *tc_http_server_new(const char *listen_addr, const tc_http_options *opt,
                                   char *errstr, size_t errstr_size);

/* Add a route before start. pattern segments are literals or {name}; at most TC_HTTP_PARAMS_MAX
 * params. Routes are tried in the order added; the first match wins. */
tc_err tc_http_route(tc_http_server *s, const char *method, const char *pattern, tc_http_handler fn,
                     void *ctx);

/* Bind and start serving. TC_ERR_IO when the address cannot be bound, TC_ERR_CONFIG when a TLS
 * file cannot be read or TLS is not supported by this libmicrohttpd. */
tc_err tc_http_server_start(tc_http_server *s, char *errstr, size_t errstr_size);

/* The bound port once started (useful with port 0), else 0. */
unsigned tc_http_server_port(const tc_http_server *s);

/* Connections cut so far because their request did not arrive within request_deadline_ms. */
uint64_t tc_http_server_reaped(tc_http_server *s);

/* Stop serving: no new connections, running handlers finish, connections close. Idempotent. */
void tc_http_server_stop(tc_http_server *s);

/* Stop (if needed) and free. NULL is fine. */
void tc_http_server_destroy(tc_http_server *s);

/* Route one request in-process: target is the raw request target ("/path?query"). Fills resp
 * (free its body with tc_http_response_clear). Thread-safe once routes are added. */
void tc_http_dispatch(const tc_http_server *s, const char *method, const char *target,
                      const char *content_type, const char *body, size_t body_len,
                      tc_http_response *resp);

/* The same with the request's Accept header (NULL = none). */
void tc_http_dispatch_accept(const tc_http_server *s, const char *method, const char *target,
                             const char *content_type, const char *accept, const char *body,
                             size_t body_len, tc_http_response *resp);

/* The same with every header the router passes on (h may be NULL). */
void tc_http_dispatch_headers(const tc_http_server *s, const char *method, const char *target,
                              const tc_http_in_headers *h, const char *body, size_t body_len,
                              tc_http_response *resp);

/* Free the body, or the stream's context when it was never sent. */
void tc_http_response_clear(tc_http_response *resp);

/* Add a response header (name static; value copied, cut at TC_HTTP_HEADER_VALUE_MAX - 1 bytes).
 * Past TC_HTTP_RESP_HEADERS_MAX headers it is dropped and TC_ERR_FULL returned. */
tc_err tc_http_add_header(tc_http_response *resp, const char *name, const char *value);

/* Stream the body (chunked) from fn(ctx, ...) with status and content type; the response owns
 * ctx from now on and frees it with free_fn. */
void tc_http_respond_stream(tc_http_response *resp, int status, const char *content_type,
                            tc_http_stream_fn fn, void *ctx, void (*free_fn)(void *ctx));

/* Set the response: status and a body (copied and NUL-terminated; NULL/0 = empty), with a
 * content type. */
void tc_http_respond(tc_http_response *resp, int status, const char *content_type, const char *body,
                     size_t len);
/* Send body[0..len) (NUL after it) without copying it: the caller keeps it alive until
 * free_fn(ctx) runs, once, when the response no longer needs it. */
void tc_http_respond_borrowed(tc_http_response *resp, int status, const char *content_type,
                              const char *body, size_t len, void (*free_fn)(void *ctx), void *ctx);
/* Take ownership of a malloc'ed body, which must have a NUL after its len bytes. */
void tc_http_respond_owned(tc_http_response *resp, int status, const char *content_type, char *body,
                           size_t len);
/* {"error_code": code, "message": msg} with HTTP status (content type TC_HTTP_JSON unless given).
 */
void tc_http_respond_error(tc_http_response *resp, int status, const char *content_type, int code,
                           const char *msg);

/* Decoded value of query parameter key into buf (NUL-terminated). Returns 1 when present (a key
 * without '=' has the value ""), 0 when absent, -1 when malformed or longer than size - 1. */
int tc_http_query(const tc_http_request *req, const char *key, char *buf, size_t size);

/* Query parameter as a boolean: "true" (any case) is 1, anything else or absent is 0. */
int tc_http_query_bool(const tc_http_request *req, const char *key);

/* Percent-decode s[0..n) into out (size cap, NUL-terminated); '+' stays '+'. Returns the decoded
 * length, or -1 on a malformed escape, a decoded NUL or when it does not fit. */
long tc_http_pct_decode(const char *s, size_t n, char *out, size_t cap);

#endif
