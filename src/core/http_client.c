/*
 * http_client.c -- see http_client.h.
 *
 * The response is read whole (bounded by max_response) and then parsed by tc_http_parse_reply,
 * which needs no socket: the unit tests and the fuzz target drive it with canned bytes. What comes
 * from the network is untrusted, so the parser is strict where leniency would change the body a
 * caller sees: a status of three digits, a Content-Length of digits only (and the same in every
 * copy of the header), chunk sizes of hex digits only.
 *
 * TLS (https://) sits between the socket and the request: tc_http_conn carries the GnuTLS session
 * when there is one, and tc_http_write / tc_http_read are the only two places that know. The
 * socket's send and receive timeouts bound every TLS read and write as they bound plain ones (an
 * EAGAIN from GnuTLS is the timeout); the handshake has the request's timeout as a whole. A server
 * that closes without TLS's close_notify ends the response as a plain close does: a truncated body
 * is still found by the Content-Length or chunk checks.
 */
#include "core/base64.h"
#include "core/http_client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

int tc_http_url_parse(const char *url, tc_http_url *u)
{
    const char *p, *slash, *colon;
    size_t hl;

    memset(u, 0, sizeof(*u));
    if (url && strncasecmp(url, "https://", 8) == 0) {
        u->https = 1;
        p = url + 8;
    } else if (url && strncasecmp(url, "http://", 7) == 0) {
        p = url + 7;
    } else {
        return -1;
    }
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
        if (pl == 0 || pl >= sizeof(u->port) || strspn(colon + 1, "0123456789") < pl)
            return -1;
        memcpy(u->port, colon + 1, pl);
    } else {
        strcpy(u->port, u->https ? "443" : "80");
    }
    if (strlen(slash) >= sizeof(u->base))
        return -1;
    strcpy(u->base, slash);
    while (*u->base && u->base[strlen(u->base) - 1] == '/')
        u->base[strlen(u->base) - 1] = '\0';
    return 0;
}

static tc_err tc_http_connect(const tc_http_url *u, int timeout_ms, int *out, char *errstr,
                              size_t n)
{
    struct addrinfo hints, *res = NULL, *ai;
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    tc_err err = TC_ERR_IO;
    int fd = -1, rc, e = 0;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    rc = getaddrinfo(u->host, u->port, &hints, &res);
    if (rc != 0)
        return tc_err_set(TC_ERR_IO, errstr, n, "cannot resolve %s: %s", u->host, gai_strerror(rc));
    for (ai = res; ai; ai = ai->ai_next) {
        struct pollfd pfd;
        socklen_t sl = sizeof(e);
        int flags;

        fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
        if (fd < 0) {
            e = errno;
            continue;
        }
        flags = fcntl(fd, F_GETFL);
        fcntl(fd, F_SETFL, flags | O_NONBLOCK);
        e = 0;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
            e = errno;
            if (e == EINPROGRESS) {
                pfd.fd = fd;
                pfd.events = POLLOUT;
                do
                    rc = poll(&pfd, 1, timeout_ms);
                while (rc < 0 && errno == EINTR);
                if (rc == 0) {
                    e = ETIMEDOUT;
                    err = TC_ERR_TIMEOUT;
                } else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &sl) < 0) {
                    e = errno;
                }
            }
        }
        if (e == 0) {
            fcntl(fd, F_SETFL, flags);
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
            break;
        }
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0)
        return tc_err_set(err, errstr, n, "cannot connect to %s:%s: %s", u->host, u->port,
                          strerror(e));
    *out = fd;
    return TC_OK;
}

/* Chunk sizes above this are malformed (the whole response is bounded far below). */
#define TC_HTTP_CHUNK_DIGITS_MAX 15

/* The first "\r\n" (or "\r\n\r\n" with blank) in b[0..n), or NULL; NULs are ordinary bytes. */
static char *tc_http_crlf(char *b, size_t n, int blank)
{
    size_t need = blank ? 4 : 2;

    for (size_t i = 0; i + need <= n; i++) {
        if (b[i] == '\r' && b[i + 1] == '\n' && (!blank || (b[i + 2] == '\r' && b[i + 3] == '\n')))
            return b + i;
    }
    return NULL;
}

static int tc_http_digit(char c)
{
    return c >= '0' && c <= '9';
}

static int tc_http_hex(char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* Decode a chunked body in place: "<hex size>[;ext]\r\n<data>\r\n" ... "0\r\n" (trailers
 * ignored). Returns the decoded length, or -1 when malformed. */
static long tc_http_dechunk(char *b, size_t n)
{
    size_t in = 0, out = 0;

    for (;;) {
        size_t sz = 0, i = in, digits = 0;
        char *crlf;

        for (; i < n && tc_http_hex(b[i]) >= 0; i++, digits++) {
            if (digits == TC_HTTP_CHUNK_DIGITS_MAX)
                return -1;
            sz = sz * 16 + (size_t)tc_http_hex(b[i]);
        }
        if (digits == 0 || i >= n || (b[i] != ';' && b[i] != '\r'))
            return -1;
        crlf = tc_http_crlf(b + i, n - i, 0);
        if (!crlf)
            return -1;
        in = (size_t)(crlf - b) + 2;
        if (sz == 0)
            return (long)out;
        if (sz > n - in || n - in - sz < 2 || b[in + sz] != '\r' || b[in + sz + 1] != '\n')
            return -1;
        memmove(b + out, b + in, sz);
        out += sz;
        in += sz + 2;
    }
}

/* A header's value: after the name's colon, without leading blanks. */
static const char *tc_http_value(const char *line, size_t name_len)
{
    const char *v = line + name_len;

    while (*v == ' ' || *v == '\t')
        v++;
    return v;
}

tc_err tc_http_parse_reply(char *buf, size_t len, tc_http_reply *reply, char *errstr, size_t n)
{
    char *hdr_end, *p;
    long long clen = -1;
    int chunked = 0;

    memset(reply, 0, sizeof(*reply));
    hdr_end = tc_http_crlf(buf, len, 1);
    /* "HTTP/1.x NNN[ reason]"; buf[len] is readable (a NUL), so buf[12] is too. */
    if (len < 12 || strncmp(buf, "HTTP/1.", 7) != 0 || !hdr_end || buf[8] != ' ' ||
        !tc_http_digit(buf[9]) || !tc_http_digit(buf[10]) || !tc_http_digit(buf[11]) ||
        (buf[12] != ' ' && buf[12] != '\r') || memchr(buf, '\0', (size_t)(hdr_end - buf)))
        return tc_err_set(TC_ERR_IO, errstr, n, "malformed HTTP response");
    reply->status = (buf[9] - '0') * 100 + (buf[10] - '0') * 10 + (buf[11] - '0');
    *hdr_end = '\0';
    for (p = strstr(buf, "\r\n"); p && p < hdr_end; p = strstr(p + 2, "\r\n")) {
        if (!strncasecmp(p + 2, "Content-Length:", 15)) {
            const char *v = tc_http_value(p + 2, 15);
            size_t digits = strspn(v, "0123456789");
            long long k;
            if (digits == 0 || digits > 15 ||
                (v[digits] != '\r' && v[digits] != '\0' && v[digits] != ' ' && v[digits] != '\t'))
                return tc_err_set(TC_ERR_IO, errstr, n, "malformed Content-Length in the response");
            k = strtoll(v, NULL, 10);
            if (clen >= 0 && k != clen)
                return tc_err_set(TC_ERR_IO, errstr, n, "conflicting Content-Length headers");
            clen = k;
        } else if (!strncasecmp(p + 2, "Transfer-Encoding:", 18)) {
            const char *v = tc_http_value(p + 2, 18), *eol = strstr(v, "\r\n");
            size_t vl = eol ? (size_t)(eol - v) : strlen(v);
            chunked = vl >= 7 && !strncasecmp(v + vl - 7, "chunked", 7);
        }
    }
    p = hdr_end + 4;
    reply->len = len - (size_t)(p - buf);
    if (chunked) { /* chunked wins over a Content-Length (RFC 9112 6.3) */
        long k = tc_http_dechunk(p, reply->len);
        if (k < 0)
            return tc_err_set(TC_ERR_IO, errstr, n, "malformed chunked response");
        reply->len = (size_t)k;
    } else if (clen >= 0 && (size_t)clen < reply->len) {
        reply->len = (size_t)clen;
    } else if (clen >= 0 && (size_t)clen > reply->len) {
        return tc_err_set(TC_ERR_IO, errstr, n, "truncated response");
    }
    memmove(buf, p, reply->len);
    buf[reply->len] = '\0';
    reply->body = buf;
    return TC_OK;
}

tc_err tc_http_url_set_user_info(tc_http_url *u, const char *user_info)
{
    size_t n = strlen(user_info);

    memcpy(u->authorization, "Basic ", 7);
    if (!strchr(user_info, ':') ||
        !tc_base64_encode(TC_BASE64_STD, user_info, n, u->authorization + 6,
                          sizeof(u->authorization) - 6)) {
        u->authorization[0] = '\0';
        return TC_ERR_INVALID;
    }
    return TC_OK;
}

tc_err tc_http_url_set_bearer(tc_http_url *u, const char *token)
{
    size_t n = strlen(token);

    u->authorization[0] = '\0';
    if (n == 0 || n + 8 > sizeof(u->authorization))
        return TC_ERR_INVALID;
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)token[i] <= ' ' || token[i] == 0x7f)
            return TC_ERR_INVALID; /* a header cannot carry it: no CR, LF or blanks */
    }
    snprintf(u->authorization, sizeof(u->authorization), "Bearer %s", token);
    return TC_OK;
}

tc_err tc_http_url_set_tls(tc_http_url *u, const char *ca_file, const char *cert_file,
                           const char *key_file)
{
    const char *in[3] = {ca_file, cert_file, key_file};
    char *out[3] = {u->ca_file, u->cert_file, u->key_file};

    for (int i = 0; i < 3; i++) {
        const char *v = in[i] ? in[i] : "";
        if (strlen(v) >= TC_HTTP_TLS_PATH_MAX)
            return TC_ERR_INVALID;
        strcpy(out[i], v);
    }
    return TC_OK;
}

/* A connection: the socket, and the TLS session over it for https://. */
typedef struct tc_http_conn {
    int fd;
    gnutls_session_t tls;
    gnutls_certificate_credentials_t cred;
} tc_http_conn;

/* u's CA (or the system's) and client certificate, as credentials. */
static tc_err tc_http_tls_creds(const tc_http_url *u, gnutls_certificate_credentials_t *out,
                                char *errstr, size_t n)
{
    gnutls_certificate_credentials_t cred;
    int rc;

    if (gnutls_certificate_allocate_credentials(&cred) < 0)
        return tc_err_set(TC_ERR_NOMEM, errstr, n, "out of memory");
    if (*u->ca_file) {
        rc = gnutls_certificate_set_x509_trust_file(cred, u->ca_file, GNUTLS_X509_FMT_PEM);
        if (rc <= 0) {
            gnutls_certificate_free_credentials(cred);
            return tc_err_set(TC_ERR_CONFIG, errstr, n, "cannot use the CA file \"%s\": %s",
                              u->ca_file,
                              rc < 0 ? gnutls_strerror(rc) : "no PEM certificate in it");
        }
    } else if ((rc = gnutls_certificate_set_x509_system_trust(cred)) < 0) {
        gnutls_certificate_free_credentials(cred);
        return tc_err_set(TC_ERR_CONFIG, errstr, n, "cannot load the system's CAs: %s",
                          gnutls_strerror(rc));
    }
    if (*u->cert_file || *u->key_file) {
        rc = gnutls_certificate_set_x509_key_file(cred, u->cert_file, u->key_file,
                                                  GNUTLS_X509_FMT_PEM);
        if (rc < 0) {
            gnutls_certificate_free_credentials(cred);
            return tc_err_set(TC_ERR_CONFIG, errstr, n,
                              "cannot use the client certificate \"%s\" with the key \"%s\": %s",
                              u->cert_file, u->key_file, gnutls_strerror(rc));
        }
    }
    *out = cred;
    return TC_OK;
}

tc_err tc_http_tls_check(const tc_http_url *u, char *errstr, size_t n)
{
    gnutls_certificate_credentials_t cred;
    tc_err err = tc_http_tls_creds(u, &cred, errstr, n);

    if (err == TC_OK)
        gnutls_certificate_free_credentials(cred);
    return err;
}

/* Why the server's certificate was refused, in GnuTLS's words. */
static void tc_http_tls_why(gnutls_session_t tls, char *out, size_t cap)
{
    gnutls_datum_t text = {NULL, 0};
    unsigned status = gnutls_session_get_verify_cert_status(tls);

    if (gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &text, 0) == 0 &&
        text.data) {
        snprintf(out, cap, "%s", (const char *)text.data);
        gnutls_free(text.data);
    } else {
        snprintf(out, cap, "status 0x%x", status);
    }
}

/* The TLS handshake over c->fd, checking the certificate against u's host. */
static tc_err tc_http_tls_start(tc_http_conn *c, const tc_http_url *u, int timeout_ms, char *errstr,
                                size_t n)
{
    unsigned char addr[16];
    char why[512];
    int rc, ip = inet_pton(AF_INET, u->host, addr) == 1 || inet_pton(AF_INET6, u->host, addr) == 1;
    tc_err err = tc_http_tls_creds(u, &c->cred, errstr, n);

    if (err != TC_OK)
        return err;
    if (gnutls_init(&c->tls, GNUTLS_CLIENT) < 0) {
        c->tls = NULL;
        return tc_err_set(TC_ERR_NOMEM, errstr, n, "out of memory");
    }
    gnutls_set_default_priority(c->tls);
    gnutls_credentials_set(c->tls, GNUTLS_CRD_CERTIFICATE, c->cred);
    if (!ip) /* SNI names hosts, never addresses (RFC 6066) */
        gnutls_server_name_set(c->tls, GNUTLS_NAME_DNS, u->host, strlen(u->host));
    gnutls_session_set_verify_cert(c->tls, u->host, 0);
    gnutls_transport_set_int(c->tls, c->fd);
    gnutls_handshake_set_timeout(c->tls, (unsigned)timeout_ms);
    do
        rc = gnutls_handshake(c->tls);
    while (rc < 0 && !gnutls_error_is_fatal(rc));
    if (rc == GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR) {
        tc_http_tls_why(c->tls, why, sizeof(why));
        return tc_err_set(TC_ERR_IO, errstr, n,
                          "TLS: the certificate of %s:%s was refused: %s (check the CA file%s%s%s)",
                          u->host, u->port, why, *u->ca_file ? " \"" : ": none set, the system's",
                          u->ca_file, *u->ca_file ? "\"" : "");
    }
    if (rc < 0)
        return tc_err_set(rc == GNUTLS_E_TIMEDOUT ? TC_ERR_TIMEOUT : TC_ERR_IO, errstr, n,
                          "TLS handshake with %s:%s failed: %s", u->host, u->port,
                          gnutls_strerror(rc));
    return TC_OK;
}

static void tc_http_close(tc_http_conn *c)
{
    if (c->tls) {
        gnutls_deinit(c->tls);
        c->tls = NULL;
    }
    if (c->cred) {
        gnutls_certificate_free_credentials(c->cred);
        c->cred = NULL;
    }
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
}

/* Write all of buf[0..len). */
static tc_err tc_http_write(tc_http_conn *c, const char *buf, size_t len, char *errstr, size_t n)
{
    for (size_t off = 0; off < len;) {
        ssize_t wr;
        if (c->tls) {
            do
                wr = gnutls_record_send(c->tls, buf + off, len - off);
            while (wr == GNUTLS_E_INTERRUPTED);
            if (wr < 0)
                return tc_err_set(wr == GNUTLS_E_AGAIN ? TC_ERR_TIMEOUT : TC_ERR_IO, errstr, n,
                                  "cannot send the request: %s", gnutls_strerror((int)wr));
        } else {
            wr = send(c->fd, buf + off, len - off, MSG_NOSIGNAL);
            if (wr < 0 && errno == EINTR)
                continue;
            if (wr <= 0)
                return tc_err_set(errno == EAGAIN ? TC_ERR_TIMEOUT : TC_ERR_IO, errstr, n,
                                  "cannot send the request: %s", strerror(errno));
        }
        off += (size_t)wr;
    }
    return TC_OK;
}

/* Read up to cap bytes into buf: *got is 0 at the end of the response. */
static tc_err tc_http_read(tc_http_conn *c, char *buf, size_t cap, size_t *got, char *errstr,
                           size_t n)
{
    ssize_t r;

    *got = 0;
    if (c->tls) {
        do
            r = gnutls_record_recv(c->tls, buf, cap);
        while (r == GNUTLS_E_INTERRUPTED || r == GNUTLS_E_REHANDSHAKE);
        if (r == GNUTLS_E_PREMATURE_TERMINATION)
            return TC_OK;
        if (r < 0)
            return tc_err_set(r == GNUTLS_E_AGAIN ? TC_ERR_TIMEOUT : TC_ERR_IO, errstr, n,
                              "cannot read the response: %s", gnutls_strerror((int)r));
    } else {
        do
            r = recv(c->fd, buf, cap, 0);
        while (r < 0 && errno == EINTR);
        if (r < 0)
            return tc_err_set(errno == EAGAIN ? TC_ERR_TIMEOUT : TC_ERR_IO, errstr, n,
                              "cannot read the response: %s", strerror(errno));
    }
    *got = (size_t)r;
    return TC_OK;
}

/* Build and send the request: headers, then the body. */
static tc_err tc_http_send(tc_http_conn *c, const tc_http_url *u, const char *method,
                           const char *path, const char *content_type, const char *body,
                           size_t body_len, char *errstr, size_t n)
{
    int v6 = strchr(u->host, ':') != NULL;
    size_t cap = 1024 + strlen(u->base) + strlen(path) + strlen(u->authorization) + body_len, len;
    char *req = malloc(cap);
    tc_err err;
    int k;

    if (!req)
        return tc_err_set(TC_ERR_NOMEM, errstr, n, "out of memory");
    k = snprintf(req, cap,
                 "%s %s%s HTTP/1.1\r\nHost: %s%s%s:%s\r\n"
                 "Accept: application/vnd.schemaregistry.v1+json, application/json\r\n"
                 "User-Agent: thermocline/" TC_VERSION "\r\nConnection: close\r\n",
                 method, u->base, path, v6 ? "[" : "", u->host, v6 ? "]" : "", u->port);
    if (k > 0 && u->authorization[0])
        k += snprintf(req + k, cap - (size_t)k, "Authorization: %s\r\n", u->authorization);
    if (k > 0 && body)
        k += snprintf(req + k, cap - (size_t)k, "Content-Type: %s\r\nContent-Length: %zu\r\n",
                      content_type ? content_type : "application/json", body_len);
    if (k > 0)
        k += snprintf(req + k, cap - (size_t)k, "\r\n");
    if (k < 0 || (size_t)k + body_len >= cap) {
        free(req);
        return tc_err_set(TC_ERR_INVALID, errstr, n, "request too long");
    }
    len = (size_t)k;
    if (body_len)
        memcpy(req + len, body, body_len);
    len += body_len;
    err = tc_http_write(c, req, len, errstr, n);
    /* It may hold credentials. */
    memset(req, 0, len);
    free(req);
    return err;
}

tc_err tc_http_fetch(const tc_http_url *u, const char *method, const char *path,
                     const char *content_type, const char *body, size_t body_len, int timeout_ms,
                     size_t max_response, tc_http_reply *reply, char *errstr, size_t n)
{
    tc_http_conn c = {.fd = -1};
    char *buf = NULL;
    size_t len = 0, cap = 0;
    tc_err err;

    memset(reply, 0, sizeof(*reply));
    err = tc_http_connect(u, timeout_ms, &c.fd, errstr, n);
    if (err != TC_OK)
        return err;
    if (u->https)
        err = tc_http_tls_start(&c, u, timeout_ms, errstr, n);
    if (err == TC_OK)
        err = tc_http_send(&c, u, method, path, content_type, body, body_len, errstr, n);
    if (err != TC_OK)
        goto fail;
    for (;;) {
        size_t got;

        if (len + 4096 + 1 > cap) {
            char *nb;

            if (cap >= max_response) {
                err = tc_err_set(TC_ERR_IO, errstr, n, "response larger than %zu bytes",
                                 max_response);
                goto fail;
            }
            cap = cap ? cap * 2 : 16384;
            nb = realloc(buf, cap);
            if (!nb) {
                err = tc_err_set(TC_ERR_NOMEM, errstr, n, "out of memory");
                goto fail;
            }
            buf = nb;
        }
        err = tc_http_read(&c, buf + len, cap - len - 1, &got, errstr, n);
        if (err != TC_OK)
            goto fail;
        if (got == 0)
            break;
        len += got;
    }
    tc_http_close(&c);
    if (!buf) {
        err = tc_err_set(TC_ERR_IO, errstr, n, "empty response");
        goto fail;
    }
    buf[len] = '\0';
    err = tc_http_parse_reply(buf, len, reply, errstr, n);
    if (err == TC_OK)
        return TC_OK;
fail:
    tc_http_close(&c);
    free(buf);
    return err;
}

void tc_http_reply_free(tc_http_reply *r)
{
    free(r->body);
    r->body = NULL;
    r->len = 0;
}
