/*
 * test_http_gzip.c -- gzip content coding of responses (api/http_gzip.h) and of shared answers
 * (api/coalesce.h).
 *
 * The Accept-Encoding cases are RFC 9110's (section 12.5.3 and its grammar); the gzip bytes are
 * checked against RFC 1952 (the member's magic, method and trailer: CRC-32 and length of the
 * input) and decoded by zlib's inflate, not by anything of ours.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <zlib.h>

#include "api/coalesce.h"
#include "api/http.h"
#include "api/http_gzip.h"

/* Decode a gzip member (or a prefix of one that was flushed) with zlib; returns the bytes. */
static size_t gunzip(const char *in, size_t len, char *out, size_t cap, int whole)
{
    z_stream z;
    int rc;

    memset(&z, 0, sizeof(z));
    assert_int_equal(inflateInit2(&z, 15 + 16), Z_OK);
    z.next_in = (Bytef *)(uintptr_t)in;
    z.avail_in = (uInt)len;
    z.next_out = (Bytef *)out;
    z.avail_out = (uInt)cap;
    rc = inflate(&z, Z_SYNC_FLUSH);
    if (whole)
        assert_int_equal(rc, Z_STREAM_END);
    else
        assert_true(rc == Z_OK || rc == Z_STREAM_END);
    inflateEnd(&z);
    return cap - z.avail_out;
}

static uint32_t le32(const char *p)
{
    const unsigned char *u = (const unsigned char *)p;
    return u[0] | (uint32_t)u[1] << 8 | (uint32_t)u[2] << 16 | (uint32_t)u[3] << 24;
}

/* Rows of NDJSON as the API writes them: compressible, and over TC_HTTP_GZIP_MIN. */
static char *ndjson(size_t rows, size_t *len)
{
    char *s = malloc(rows * 96 + 1);
    size_t n = 0;

    for (size_t i = 0; i < rows; i++)
        n += (size_t)sprintf(
            s + n, "{\"device_id\":\"dev-%05zu\",\"temperature\":%zu.5,\"humidity\":41}\n", i,
            20 + i % 7);
    *len = n;
    return s;
}

static void test_accept_encoding(void **state)
{
    (void)state;
    /* RFC 9110 12.5.3's examples. */
    assert_true(tc_http_gzip_accepted("compress, gzip"));
    assert_false(tc_http_gzip_accepted(""));
    assert_true(tc_http_gzip_accepted("*"));
    assert_true(tc_http_gzip_accepted("compress;q=0.5, gzip;q=1.0"));
    assert_true(tc_http_gzip_accepted("gzip;q=1.0, identity; q=0.5, *;q=0"));
    /* Weights: 0 refuses, whatever "*" says; the most a listed coding gets counts. */
    assert_false(tc_http_gzip_accepted("gzip;q=0"));
    assert_false(tc_http_gzip_accepted("gzip;q=0.000"));
    assert_true(tc_http_gzip_accepted("gzip;q=0.001"));
    assert_false(tc_http_gzip_accepted("gzip;q=0, *"));
    assert_false(tc_http_gzip_accepted("*;q=0"));
    assert_true(tc_http_gzip_accepted("deflate, *;q=0.5"));
    assert_true(tc_http_gzip_accepted("gzip;q=0, gzip"));
    assert_true(tc_http_gzip_accepted("gzip;q=1."));
    /* Case, x-gzip (RFC 9110 8.4.1.3), OWS and empty list elements. */
    assert_true(tc_http_gzip_accepted("GZip"));
    assert_true(tc_http_gzip_accepted("x-gzip"));
    assert_true(tc_http_gzip_accepted(" ,\tgzip ; Q=0.8 ,,"));
    assert_true(tc_http_gzip_accepted("gzip, deflate, br, zstd")); /* what browsers send */
    /* Not gzip, none, and malformed values: identity. */
    assert_false(tc_http_gzip_accepted(NULL));
    assert_false(tc_http_gzip_accepted("br, deflate"));
    assert_false(tc_http_gzip_accepted("gzipx"));
    assert_false(tc_http_gzip_accepted("identity"));
    assert_false(tc_http_gzip_accepted("gzip;q=2"));
    assert_false(tc_http_gzip_accepted("gzip;q=1.001"));
    assert_false(tc_http_gzip_accepted("gzip;q=0.1234"));
    assert_false(tc_http_gzip_accepted("gzip;q="));
    assert_false(tc_http_gzip_accepted("gzip;level=1"));
    assert_false(tc_http_gzip_accepted("gzip q=1"));
    assert_false(tc_http_gzip_accepted("gzip;q=1;q=1"));
    assert_false(tc_http_gzip_accepted("\"gzip\""));
    assert_false(tc_http_gzip_accepted("gzip\r\nX-Injected: 1"));
}

static void test_compressible_types(void **state)
{
    (void)state;
    assert_true(tc_http_gzip_compressible(NULL));
    assert_true(tc_http_gzip_compressible("application/json"));
    assert_true(tc_http_gzip_compressible("application/problem+json"));
    assert_true(tc_http_gzip_compressible("application/vnd.schemaregistry.v1+json"));
    assert_true(tc_http_gzip_compressible("application/x-ndjson"));
    assert_true(tc_http_gzip_compressible("text/csv; charset=utf-8"));
    assert_true(tc_http_gzip_compressible("text/plain; version=0.0.4"));
    assert_true(tc_http_gzip_compressible("Application/JSON ; charset=utf-8"));
    assert_false(tc_http_gzip_compressible("application/vnd.apache.parquet"));
    assert_false(tc_http_gzip_compressible("application/octet-stream"));
    assert_false(tc_http_gzip_compressible("application/jsonx"));
    assert_false(tc_http_gzip_compressible("application/+json"));
    assert_false(tc_http_gzip_compressible("image/png"));
}

static void test_buffer_is_an_rfc1952_member(void **state)
{
    size_t len, gz_len;
    char *in = ndjson(200, &len), *gz, *out = malloc(len + 16);

    (void)state;
    assert_int_equal(tc_http_gzip_buffer(in, len, &gz, &gz_len), 0);
    assert_true(gz_len > 18 && gz_len < len / 4);
    assert_int_equal((unsigned char)gz[0], 0x1f); /* ID1, ID2, CM = deflate */
    assert_int_equal((unsigned char)gz[1], 0x8b);
    assert_int_equal((unsigned char)gz[2], 8);
    assert_int_equal(le32(gz + gz_len - 8), (uint32_t)crc32(0, (const Bytef *)in, (uInt)len));
    assert_int_equal(le32(gz + gz_len - 4), (uint32_t)len); /* ISIZE */
    assert_int_equal(gz[gz_len], '\0');
    assert_int_equal(gunzip(gz, gz_len, out, len + 16, 1), len);
    assert_memory_equal(out, in, len);
    free(gz);
    /* Empty: a valid member of nothing. */
    assert_int_equal(tc_http_gzip_buffer("", 0, &gz, &gz_len), 0);
    assert_int_equal(gunzip(gz, gz_len, out, 16, 1), 0);
    free(gz);
    free(in);
    free(out);
}

static int freed;

static void count_free(void *ctx)
{
    (void)ctx;
    freed++;
}

static void test_responses(void **state)
{
    tc_http_response r;
    size_t len;
    char *in = ndjson(100, &len), out[16384];

    (void)state;
    /* An owned text body over the minimum: gzip when accepted, as it is when not. */
    memset(&r, 0, sizeof(r));
    tc_http_respond(&r, 200, "application/x-ndjson", in, len);
    tc_http_gzip_apply(&r, 0);
    assert_false(r.gzipped);
    assert_int_equal(r.body_len, len);
    tc_http_gzip_apply(&r, 1);
    assert_true(r.gzipped);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.content_type, "application/x-ndjson");
    assert_int_equal(gunzip(r.body, r.body_len, out, sizeof(out), 1), len);
    assert_memory_equal(out, in, len);
    tc_http_gzip_apply(&r, 1); /* never twice */
    assert_int_equal(gunzip(r.body, r.body_len, out, sizeof(out), 1), len);
    tc_http_response_clear(&r);

    /* Short bodies, Parquet: as they are. */
    tc_http_respond(&r, 200, NULL, in, TC_HTTP_GZIP_MIN - 1);
    tc_http_gzip_apply(&r, 1);
    assert_false(r.gzipped);
    tc_http_response_clear(&r);
    tc_http_respond(&r, 200, "application/vnd.apache.parquet", in, len);
    tc_http_gzip_apply(&r, 1);
    assert_false(r.gzipped);
    assert_memory_equal(r.body, in, len);
    tc_http_response_clear(&r);

    /* A borrowed body: given back at once, the response owns its gzip form. */
    freed = 0;
    tc_http_respond_borrowed(&r, 200, "text/csv; charset=utf-8", in, len, count_free, NULL);
    tc_http_gzip_apply(&r, 1);
    assert_true(r.gzipped);
    assert_int_equal(freed, 1);
    assert_null(r.body_free);
    assert_int_equal(gunzip(r.body, r.body_len, out, sizeof(out), 1), len);
    tc_http_response_clear(&r);
    assert_int_equal(freed, 1);
    free(in);
}

/* A shared answer's gzip form is made once, counted as held, and sent borrowed. */
static void test_shared_answer_is_compressed_once(void **state)
{
    tc_coalesce *c = tc_coalesce_new(0, 0);
    tc_coalesce_ticket t;
    tc_coalesce_stats st;
    tc_http_response r;
    size_t len, gz_len, again_len;
    char *in = ndjson(100, &len), out[16384];
    const char *gz, *again;

    (void)state;
    assert_int_equal(tc_coalesce_enter(c, "k", 1, &t), TC_COALESCE_LEAD);
    assert_int_equal(tc_coalesce_start(c, &t), 1);
    assert_int_equal(tc_coalesce_publish(c, &t, in, len, 100), 0);
    gz = tc_coalesce_answer_gzip(t.answer, &gz_len);
    assert_non_null(gz);
    again = tc_coalesce_answer_gzip(t.answer, &again_len);
    assert_ptr_equal(again, gz);
    assert_int_equal(again_len, gz_len);
    tc_coalesce_stats_get(c, &st);
    assert_int_equal(st.held_bytes, len + gz_len);

    memset(&r, 0, sizeof(r));
    tc_http_respond_borrowed(&r, 200, "application/x-ndjson", t.answer->data, t.answer->len,
                             tc_coalesce_answer_put, t.answer);
    r.body_gzip = tc_coalesce_answer_gzip;
    tc_http_gzip_apply(&r, 1);
    assert_true(r.gzipped);
    assert_ptr_equal(r.body, gz); /* the shared bytes, not a copy */
    assert_int_equal(gunzip(r.body, r.body_len, out, sizeof(out), 1), len);
    assert_memory_equal(out, t.answer->data, len);
    tc_http_response_clear(&r); /* drops the (only) reference: answer and gzip form go */
    tc_coalesce_stats_get(c, &st);
    assert_int_equal(st.held_bytes, 0);
    tc_coalesce_destroy(c);
}

/* Over total_max the form is not kept: each response compresses its own. */
static void test_shared_answer_over_the_cap(void **state)
{
    size_t len, gz_len = 99;
    char *in = ndjson(40, &len);
    tc_coalesce *c = tc_coalesce_new(len, len);
    tc_coalesce_ticket t;

    (void)state;
    assert_int_equal(tc_coalesce_enter(c, "k", 1, &t), TC_COALESCE_LEAD);
    assert_int_equal(tc_coalesce_start(c, &t), 1);
    assert_int_equal(tc_coalesce_publish(c, &t, in, len, 40), 0);
    assert_null(tc_coalesce_answer_gzip(t.answer, &gz_len));
    assert_int_equal(gz_len, 0);
    tc_coalesce_answer_put(t.answer);
    tc_coalesce_destroy(c);
}

/* A handler's stream in pieces, then its end (or an error). */
typedef struct pieces {
    const char *const *p;
    size_t i, n;
    int fail, freed;
} pieces;

static long pieces_read(void *ctx, char *buf, size_t max)
{
    pieces *s = ctx;
    size_t len;

    if (s->i == s->n)
        return s->fail ? TC_HTTP_STREAM_ERROR : TC_HTTP_STREAM_END;
    len = strlen(s->p[s->i]);
    assert_true(len <= max);
    memcpy(buf, s->p[s->i++], len);
    return (long)len;
}

static void pieces_free(void *ctx)
{
    ((pieces *)ctx)->freed++;
}

/* Read a stream to its end in calls of at most max bytes; returns the bytes, or -1 on an error. */
static long drain(tc_http_response *r, char *out, size_t cap, size_t max)
{
    size_t n = 0;

    for (;;) {
        long got = r->stream(r->stream_ctx, out + n, cap - n < max ? cap - n : max);
        if (got == TC_HTTP_STREAM_END)
            return (long)n;
        if (got == TC_HTTP_STREAM_ERROR)
            return -1;
        assert_true(got > 0 && (size_t)got <= max);
        n += (size_t)got;
    }
}

static void test_streams(void **state)
{
    static const char *const rows[] = {"time,device_id\n", "2026-12-07T00:00:00Z,dev-1\n",
                                       "2026-12-07T00:00:10Z,dev-1\n"};
    pieces s = {rows, 0, 3, 0, 0};
    tc_http_response r;
    char gz[4096], out[4096];
    long n, first;

    (void)state;
    memset(&r, 0, sizeof(r));
    tc_http_respond_stream(&r, 200, "text/csv; charset=utf-8", pieces_read, &s, pieces_free);
    tc_http_gzip_apply(&r, 1);
    assert_true(r.gzipped);
    /* Each piece is flushed: what the first read gives decodes to the first piece alone. */
    first = r.stream(r.stream_ctx, gz, sizeof(gz));
    assert_true(first > 0);
    assert_int_equal(gunzip(gz, (size_t)first, out, sizeof(out), 0), strlen(rows[0]));
    assert_memory_equal(out, rows[0], strlen(rows[0]));
    /* The rest in reads of 7 bytes (a flush that does not fit goes on in the next read). */
    n = drain(&r, gz + first, sizeof(gz) - (size_t)first, 7);
    assert_true(n > 0);
    n += first;
    assert_int_equal(gunzip(gz, (size_t)n, out, sizeof(out), 1),
                     strlen(rows[0]) + strlen(rows[1]) + strlen(rows[2]));
    assert_memory_equal(out, "time,device_id\n2026-12-07T00:00:00Z,dev-1\n", 42);
    assert_int_equal(s.freed, 0);
    tc_http_response_clear(&r);
    assert_int_equal(s.freed, 1);

    /* A stream that fails fails compressed too; one never read is freed once. */
    s = (pieces){rows, 0, 2, 1, 0};
    tc_http_respond_stream(&r, 200, "application/x-ndjson", pieces_read, &s, pieces_free);
    tc_http_gzip_apply(&r, 1);
    assert_int_equal(drain(&r, gz, sizeof(gz), sizeof(gz)), -1);
    tc_http_response_clear(&r);
    assert_int_equal(s.freed, 1);
    s = (pieces){rows, 0, 1, 0, 0};
    tc_http_respond_stream(&r, 200, "application/vnd.apache.parquet", pieces_read, &s, pieces_free);
    tc_http_gzip_apply(&r, 1);
    assert_false(r.gzipped); /* Parquet streams go as they are */
    tc_http_response_clear(&r);
    assert_int_equal(s.freed, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accept_encoding),
        cmocka_unit_test(test_compressible_types),
        cmocka_unit_test(test_buffer_is_an_rfc1952_member),
        cmocka_unit_test(test_responses),
        cmocka_unit_test(test_shared_answer_is_compressed_once),
        cmocka_unit_test(test_shared_answer_over_the_cap),
        cmocka_unit_test(test_streams),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
