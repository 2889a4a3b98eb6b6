/*
 * fuzz_http_gzip.c -- libFuzzer target for the server's gzip coding (api/http_gzip.h): the
 * Accept-Encoding parser, which reads a header any client sends, and the coder of bodies and
 * streams, which the bytes of any answer go through.
 *
 * Input: an Accept-Encoding value up to the first NUL byte, the rest a body. Invariants on top of
 * "no crash, no UB, no leak":
 *   - the parser says yes only to a value naming gzip, x-gzip or "*" (case aside);
 *   - the body compressed whole, and streamed in pieces cut where the input says, each decode
 *     (zlib's inflate) to the body's exact bytes.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

#include "api/http.h"
#include "api/http_gzip.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_INPUT_MAX (256 * 1024)

static void fz_require(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "invariant violated: %s\n", what);
        abort();
    }
}

/* Whether s names a coding the parser may accept: gzip / x-gzip / "*". */
static int fz_names_gzip(const char *s)
{
    for (const char *p = s; *p; p++)
        if (*p == '*' || !strncasecmp(p, "gzip", 4))
            return 1;
    return 0;
}

static size_t fz_gunzip(const char *in, size_t len, char *out, size_t cap)
{
    z_stream z;
    int rc;

    memset(&z, 0, sizeof(z));
    fz_require(inflateInit2(&z, 15 + 16) == Z_OK, "inflateInit2");
    z.next_in = (Bytef *)(uintptr_t)in;
    z.avail_in = (uInt)len;
    z.next_out = (Bytef *)out;
    z.avail_out = (uInt)cap;
    rc = inflate(&z, Z_FINISH);
    fz_require(rc == Z_STREAM_END && z.avail_in == 0, "a whole gzip member, nothing after it");
    inflateEnd(&z);
    return cap - z.avail_out;
}

/* The body in pieces whose lengths come from its own bytes. */
typedef struct fz_pieces {
    const char *p;
    size_t len, pos, count;
} fz_pieces;

static long fz_read(void *ctx, char *buf, size_t max)
{
    fz_pieces *s = ctx;
    size_t n;

    if (s->pos == s->len)
        return TC_HTTP_STREAM_END;
    n = 1 + (unsigned char)s->p[s->pos] * 37u % 4096;
    if (n > s->len - s->pos)
        n = s->len - s->pos;
    if (n > max)
        n = max;
    memcpy(buf, s->p + s->pos, n);
    s->pos += n;
    s->count++;
    return (long)n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;
    size_t hlen = strnlen(in, size), blen, gz_len, n = 0, cap;
    char header[4097], *gz, *out, *sent;
    const char *body;
    fz_pieces pieces;
    tc_http_response r;

    if (size > FZ_INPUT_MAX || hlen >= sizeof(header))
        return 0;
    memcpy(header, in, hlen);
    header[hlen] = '\0';
    fz_require(!tc_http_gzip_accepted(header) || fz_names_gzip(header),
               "accepted only a value naming gzip or *");
    (void)tc_http_gzip_compressible(header);

    body = in + (hlen < size ? hlen + 1 : size);
    blen = size - (size_t)(body - in);
    out = malloc(blen + 1);
    fz_require(out != NULL, "memory");
    fz_require(tc_http_gzip_buffer(body, blen, &gz, &gz_len) == 0, "a body compresses");
    fz_require(fz_gunzip(gz, gz_len, out, blen + 1) == blen && !memcmp(out, body, blen),
               "the whole body decodes to itself");
    free(gz);

    pieces = (fz_pieces){body, blen, 0, 0};
    memset(&r, 0, sizeof(r));
    tc_http_respond_stream(&r, 200, "text/csv", fz_read, &pieces, NULL);
    tc_http_gzip_apply(&r, 1);
    fz_require(r.gzipped, "a text stream is coded");
    /* A piece flushed costs deflate a few bytes of its own (a block's header, an empty stored
     * block): the output stays within the body, 16 bytes a piece and the member's frame. */
    cap = blen + 16 * (blen + 1) + 4096;
    sent = malloc(cap);
    fz_require(sent != NULL, "memory");
    for (size_t room = 1;; room = room % 257 + 3) {
        long got;
        fz_require(n + room <= cap, "a stream's coding stays bounded");
        got = r.stream(r.stream_ctx, sent + n, room);
        if (got == TC_HTTP_STREAM_END)
            break;
        fz_require(got > 0 && (size_t)got <= room, "a stream's read fits its room");
        n += (size_t)got;
    }
    tc_http_response_clear(&r);
    fz_require(n <= blen + 16 * pieces.count + 64, "a stream's coding stays bounded");
    fz_require(fz_gunzip(sent, n, out, blen + 1) == blen && !memcmp(out, body, blen),
               "the stream decodes to the body");
    free(sent);
    free(out);
    return 0;
}
