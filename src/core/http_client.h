/*
 * http_client.h -- a minimal HTTP/1.1 client for the control plane (the schema registry).
 *
 * One request per connection (Connection: close), so no pooling state; bounded: a connect
 * timeout, send/receive timeouts, and a cap on the response size. Handles Content-Length, chunked
 * transfer encoding and responses that end with the connection.
 *
 * https:// is TLS through GnuTLS (the library our HTTP servers use through libmicrohttpd): the
 * server's certificate must chain to the URL's CA file (or, without one, to the system's CAs)
 * and name the URL's host (a DNS name, or an IP address in its subjectAltName); a client
 * certificate is presented when set. The credentials are loaded per request: the registry is asked
 * rarely (its answers are cached), and a rotated CA or certificate file is then used at once.
 */
#ifndef TC_CORE_HTTP_CLIENT_H
#define TC_CORE_HTTP_CLIENT_H

#include <stddef.h>

#include "core/error.h"

/* The Authorization header value a URL may carry: "Basic " and the base64 of user:password. */
#define TC_HTTP_AUTHORIZATION_MAX 1400
/* A TLS file's path (CA bundle, client certificate, its key). */
#define TC_HTTP_TLS_PATH_MAX 1024

typedef struct tc_http_url {
    char host[256]; /* without the brackets of an IPv6 literal */
    char port[8];
    char base[512];                                /* path prefix, without a trailing slash */
    char authorization[TC_HTTP_AUTHORIZATION_MAX]; /* "" or sent as Authorization; a secret */
    int https;                                     /* 1: TLS (the URL was https://) */
    char ca_file[TC_HTTP_TLS_PATH_MAX];            /* "" : the system's CAs */
    char cert_file[TC_HTTP_TLS_PATH_MAX];          /* "" : no client certificate */
    char key_file[TC_HTTP_TLS_PATH_MAX];
} tc_http_url;

/* Parse "http[s]://host[:port][/base]" (host may be "[v6]"; the port defaults to 80 or 443).
 * Returns 0, or -1 when malformed. */
int tc_http_url_parse(const char *url, tc_http_url *u);

/* Send "Authorization: Bearer <token>" with every request to u. TC_ERR_INVALID when the token is
 * empty, too long or holds a character a header may not. */
tc_err tc_http_url_set_bearer(tc_http_url *u, const char *token);

/* The TLS files of an https:// URL (NULL or "": none; cert_file and key_file go together).
 * TC_ERR_INVALID when a path is too long. */
tc_err tc_http_url_set_tls(tc_http_url *u, const char *ca_file, const char *cert_file,
                           const char *key_file);

/* Load u's TLS files as a request would: TC_ERR_CONFIG with errstr naming the file and GnuTLS's
 * reason when one cannot be used. For checking the settings once, at start. */
tc_err tc_http_tls_check(const tc_http_url *u, char *errstr, size_t errstr_size);

/* Send HTTP Basic credentials (Confluent's basic.auth.user.info, "user:password") with every
 * request to u. TC_ERR_INVALID when user_info has no ':' or is too long. */
tc_err tc_http_url_set_user_info(tc_http_url *u, const char *user_info);

typedef struct tc_http_reply {
    int status;
    char *body; /* malloc'ed, NUL-terminated; free with tc_http_reply_free */
    size_t len;
} tc_http_reply;

/*
 * Send method base+path with an optional body (content_type then required) and read the reply.
 * Errors: TC_ERR_TIMEOUT (connect or I/O timed out), TC_ERR_IO (unreachable, refused, malformed,
 * truncated, or larger than max_response; https: the handshake failed or the server's
 * certificate was refused, with why), TC_ERR_CONFIG (a TLS file unusable), TC_ERR_NOMEM
 * -- all with errstr. An HTTP error status is not an error here: it is in reply->status.
 */
tc_err tc_http_fetch(const tc_http_url *u, const char *method, const char *path,
                     const char *content_type, const char *body, size_t body_len, int timeout_ms,
                     size_t max_response, tc_http_reply *reply, char *errstr, size_t errstr_size);

/*
 * Parse a whole response held in buf[0..len) (buf[len] must be writable: the body is
 * NUL-terminated in place). On TC_OK the body is moved to the front of buf and reply->body is buf
 * (the reply owns it now); otherwise TC_ERR_IO with errstr, and buf stays the caller's. Exposed for
 * the unit tests and the fuzz target.
 */
tc_err tc_http_parse_reply(char *buf, size_t len, tc_http_reply *reply, char *errstr,
                           size_t errstr_size);

void tc_http_reply_free(tc_http_reply *r);

#endif
