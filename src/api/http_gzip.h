/*
 * http_gzip.h -- gzip content coding of the HTTP server's responses (RFC 9110 section 8.4).
 *
 * Why: the answers of the REST API and /metrics are text (JSON, NDJSON, CSV, the exposition
 * format) that deflate shrinks several times over, and at the rates a dashboard polls, the bytes
 * sent are what a server's cores spend: every device's latest reading is 2 MB of NDJSON for
 * 10,000 devices, 400 MB a second at 200 requests a second through the kernel and the clients.
 * Most clients ask for gzip unasked (browsers, curl --compressed, Python's requests, Grafana,
 * Prometheus), so the server answers in gzip whoever accepts it, and in identity everyone else.
 *
 * What is compressed (tc_http_gzip_apply): a response of a text content type (JSON and its +json
 * kinds, NDJSON, CSV, text/...) whose body is at least TC_HTTP_GZIP_MIN bytes and shrinks, or a
 * streamed one, when the request's Accept-Encoding accepts gzip. Never Parquet or other binary
 * bodies: they are compressed already. A body shared by many responses (an answer computed once for
 * several requests, api/coalesce.h) may come with its gzip form made once (body_gzip), so that a
 * kept answer is compressed once, not once a request. Every response of a compressible type says
 * `Vary: Accept-Encoding`, compressed or not, so that a cache between keeps both forms apart.
 *
 * Level 1: deflate's fastest level already takes JSON to a sixth to a tenth of its size; the
 * levels above it cost several times the CPU for a few percent more.
 *
 * A stream is compressed as it goes: each piece the handler's stream gives is deflated and
 * flushed (Z_SYNC_FLUSH), so that a client reads every row as soon as it would have read it
 * uncompressed; the gzip trailer follows the stream's end. Memory: a stream holds deflate's state
 * (256 KiB at windowBits 15, memLevel 8) and TC_HTTP_GZIP_STREAM_IN of input while it lasts, so
 * at most some 80 MiB at http.max_connections' default of 256 streams at once.
 *
 * Security note: compression with secrets and attacker-chosen text in one body leaks the secret's
 * length to an observer of the sizes (BREACH). The API's bodies hold no secret (tokens travel in
 * headers, never in answers); a deployment that adds one turns compression off
 * (http.gzip=false).
 */
#ifndef TC_API_HTTP_GZIP_H
#define TC_API_HTTP_GZIP_H

#include <stddef.h>

#include "api/http.h"

/* Bodies shorter than this go as they are: under one TCP segment, compressing saves no packet. */
#define TC_HTTP_GZIP_MIN 1400
/* deflate's level (see the file comment). */
#define TC_HTTP_GZIP_LEVEL 1
/* Bytes of a stream's pieces read from the handler's stream at once. */
#define TC_HTTP_GZIP_STREAM_IN (64 * 1024)

/* Whether an Accept-Encoding header value accepts gzip (or x-gzip): listed with a weight above 0,
 * or not listed while "*" is. NULL (no header), a malformed value and "gzip;q=0" say no: identity
 * is always acceptable, so a doubt costs bytes, never an answer. */
int tc_http_gzip_accepted(const char *accept_encoding);

/* Whether a content type is text that compresses (see the file comment). NULL is JSON. */
int tc_http_gzip_compressible(const char *content_type);

/* data[0..len) as one gzip member, in *out (malloc'ed, NUL after *out_len bytes; the caller
 * frees it). Returns 0, or -1 when out of memory. */
int tc_http_gzip_buffer(const char *data, size_t len, char **out, size_t *out_len);

/* Compress resp in place when accepted says the client takes gzip and its type compresses (see
 * the file comment): its body becomes the gzip form (a borrowed body is released through its
 * free callback, or answered from body_gzip when it has one), its stream a compressing stream
 * that owns the original. Sets resp->gzipped when it did. A response that cannot be compressed
 * (out of memory) goes as it was. */
void tc_http_gzip_apply(tc_http_response *resp, int accepted);

#endif
