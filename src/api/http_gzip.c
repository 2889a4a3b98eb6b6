/*
 * http_gzip.c -- gzip content coding of responses; see http_gzip.h.
 *
 * zlib's deflate with windowBits 15 + 16 writes the gzip header and trailer (RFC 1952) itself. A
 * stream keeps one z_stream and an input buffer for the handler's pieces; its read callback fills
 * the server's buffer from deflate's output, asking the handler for more only when deflate has
 * consumed everything it was given.
 */
#include "api/http_gzip.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <strings.h>
#include <zlib.h>

/* ---- Accept-Encoding ---- */

/* RFC 9110's OWS. */
static const char *tc_gz_ows(const char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

/* A qvalue ("0", "0.5", "1.000"): its value in thousandths, or -1 when malformed. p moves past it.
 */
static int tc_gz_qvalue(const char **pp)
{
    const char *p = *pp;
    int v, digits = 0, scale = 100;

    if (*p != '0' && *p != '1')
        return -1;
    v = (*p++ - '0') * 1000;
    if (*p == '.') {
        p++;
        while (isdigit((unsigned char)*p) && digits < 3) {
            v += (*p++ - '0') * scale;
            scale /= 10;
            digits++;
        }
    }
    if (v > 1000 || isdigit((unsigned char)*p))
        return -1;
    *pp = p;
    return v;
}

/* RFC 9110's token characters. */
static int tc_gz_tchar(int c)
{
    return isalnum(c) || (c && strchr("!#$%&'*+-.^_`|~", c));
}

int tc_http_gzip_accepted(const char *h)
{
    int gzip = -1, star = -1; /* weights in thousandths; -1: not listed */
    const char *p = h;

    if (!h)
        return 0;
    for (;;) {
        const char *tok;
        size_t len;
        int q = 1000;

        p = tc_gz_ows(p);
        if (*p == ',') { /* empty list elements are allowed (RFC 9110 5.6.1) */
            p++;
            continue;
        }
        if (!*p)
            break;
        for (tok = p; tc_gz_tchar((unsigned char)*p); p++)
            ;
        if ((len = (size_t)(p - tok)) == 0)
            return 0;
        p = tc_gz_ows(p);
        if (*p == ';') {
            p = tc_gz_ows(p + 1);
            if ((*p != 'q' && *p != 'Q') || p[1] != '=')
                return 0;
            p += 2;
            if ((q = tc_gz_qvalue(&p)) < 0)
                return 0;
            p = tc_gz_ows(p);
        }
        if (*p && *p != ',')
            return 0;
        if ((len == 4 && !strncasecmp(tok, "gzip", 4)) ||
            (len == 6 && !strncasecmp(tok, "x-gzip", 6)))
            gzip = gzip < 0 || q > gzip ? q : gzip;
        else if (len == 1 && *tok == '*')
            star = q;
    }
    return gzip >= 0 ? gzip > 0 : star > 0;
}

int tc_http_gzip_compressible(const char *ct)
{
    size_t len;

    if (!ct)
        return 1; /* the server's default, JSON */
    len = strcspn(ct, ";");
    while (len && (ct[len - 1] == ' ' || ct[len - 1] == '\t'))
        len--;
    if (len >= 5 && !strncasecmp(ct, "text/", 5))
        return 1;
    if (len < 12 || strncasecmp(ct, "application/", 12))
        return 0;
    return (len == 16 && !strncasecmp(ct + 12, "json", 4)) ||
           (len > 17 && !strncasecmp(ct + len - 5, "+json", 5)) ||
           (len == 20 && !strncasecmp(ct + 12, "x-ndjson", 8)) ||
           (len == 19 && !strncasecmp(ct + 12, "ndjson", 6));
}

/* ---- whole bodies ---- */

static int tc_gz_init(z_stream *z)
{
    memset(z, 0, sizeof(*z));
    /* windowBits 15 + 16: a gzip header and trailer rather than zlib's. */
    return deflateInit2(z, TC_HTTP_GZIP_LEVEL, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) == Z_OK
               ? 0
               : -1;
}

int tc_http_gzip_buffer(const char *data, size_t len, char **out, size_t *out_len)
{
    z_stream z;
    size_t cap;
    char *buf;
    int rc;

    *out = NULL;
    *out_len = 0;
    if (len > UINT32_MAX || tc_gz_init(&z)) /* one deflate call takes at most 4 GiB */
        return -1;
    cap = deflateBound(&z, (uLong)len) + 1;
    if (!(buf = malloc(cap))) {
        deflateEnd(&z);
        return -1;
    }
    z.next_in = (Bytef *)(uintptr_t)data;
    z.avail_in = (uInt)len;
    z.next_out = (Bytef *)buf;
    z.avail_out = (uInt)(cap - 1);
    rc = deflate(&z, Z_FINISH); /* deflateBound's room: one call ends it */
    if (rc != Z_STREAM_END) {
        deflateEnd(&z);
        free(buf);
        return -1;
    }
    *out_len = cap - 1 - z.avail_out;
    buf[*out_len] = '\0';
    deflateEnd(&z);
    *out = buf;
    return 0;
}

/* ---- streams ---- */

typedef struct tc_gz_stream {
    z_stream z;
    tc_http_stream_fn fn; /* the handler's stream, owned */
    void *ctx;
    void (*ctx_free)(void *ctx);
    int ended;    /* the handler's stream ended: finishing */
    int finished; /* the trailer is out */
    int more;     /* the last deflate filled its room: output may be pending */
    char in[TC_HTTP_GZIP_STREAM_IN];
} tc_gz_stream;

static void tc_gz_stream_free(void *p)
{
    tc_gz_stream *g = p;

    if (!g)
        return;
    deflateEnd(&g->z);
    if (g->ctx_free)
        g->ctx_free(g->ctx);
    free(g);
}

/* Deflate what is pending into buf[0..max) with flush; returns the bytes written. */
static size_t tc_gz_deflate(tc_gz_stream *g, char *buf, size_t max, int flush)
{
    int rc;

    g->z.next_out = (Bytef *)buf;
    g->z.avail_out = (uInt)max;
    rc = deflate(&g->z, flush);
    if (rc == Z_STREAM_END)
        g->finished = 1;
    g->more = g->z.avail_out == 0;
    return max - g->z.avail_out;
}

static long tc_gz_stream_read(void *p, char *buf, size_t max)
{
    tc_gz_stream *g = p;

    if (max == 0)
        return TC_HTTP_STREAM_ERROR; /* no room is no progress */
    if (max > UINT32_MAX)
        max = UINT32_MAX;
    for (;;) {
        size_t n;
        long got;
        if (g->finished)
            return TC_HTTP_STREAM_END;
        /* Input left, or a flush not wholly written for want of room: go on with it. */
        if (g->z.avail_in > 0 || g->more || g->ended) {
            n = tc_gz_deflate(g, buf, max, g->ended ? Z_FINISH : Z_SYNC_FLUSH);
            if (n > 0)
                return (long)n;
            if (g->ended) /* Z_FINISH with room always moves: nothing out means it had ended */
                return g->finished ? TC_HTTP_STREAM_END : TC_HTTP_STREAM_ERROR;
        }
        got = g->fn(g->ctx, g->in, sizeof(g->in));
        if (got == TC_HTTP_STREAM_ERROR || (got != TC_HTTP_STREAM_END && got <= 0) ||
            (got > 0 && (size_t)got > sizeof(g->in)))
            return TC_HTTP_STREAM_ERROR;
        if (got == TC_HTTP_STREAM_END) {
            g->ended = 1;
            continue;
        }
        g->z.next_in = (Bytef *)g->in;
        g->z.avail_in = (uInt)got;
        n = tc_gz_deflate(g, buf, max, Z_SYNC_FLUSH);
        if (n > 0)
            return (long)n;
    }
}

/* ---- responses ---- */

static void tc_gz_apply_stream(tc_http_response *resp)
{
    tc_gz_stream *g = malloc(sizeof(*g));

    if (!g)
        return;
    if (tc_gz_init(&g->z)) {
        free(g);
        return;
    }
    g->fn = resp->stream;
    g->ctx = resp->stream_ctx;
    g->ctx_free = resp->stream_free;
    g->ended = g->finished = g->more = 0;
    resp->stream = tc_gz_stream_read;
    resp->stream_ctx = g;
    resp->stream_free = tc_gz_stream_free;
    resp->gzipped = 1;
}

void tc_http_gzip_apply(tc_http_response *resp, int accepted)
{
    char *gz;
    size_t gz_len;
    const char *shared;

    if (!accepted || resp->gzipped || !tc_http_gzip_compressible(resp->content_type))
        return;
    if (resp->stream) {
        tc_gz_apply_stream(resp);
        return;
    }
    if (resp->body_len < TC_HTTP_GZIP_MIN)
        return;
    if (resp->body_free && resp->body_gzip &&
        (shared = resp->body_gzip(resp->body_ctx, &gz_len)) != NULL) {
        /* The shared form lives as long as body_ctx: the body stays borrowed, only its bytes
         * change. */
        resp->body = (char *)(uintptr_t)shared;
        resp->body_len = gz_len;
        resp->body_gzip = NULL;
        resp->gzipped = 1;
        return;
    }
    if (tc_http_gzip_buffer(resp->body, resp->body_len, &gz, &gz_len))
        return;
    if (gz_len >= resp->body_len) { /* text that does not shrink goes as it is */
        free(gz);
        return;
    }
    tc_http_respond_owned(resp, resp->status, resp->content_type, gz, gz_len); /* old one let go */
    resp->gzipped = 1;
}
