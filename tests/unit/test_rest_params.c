/*
 * test_rest_params.c -- the REST API's pieces that need no server: strict parameter parsing,
 * signed cursors, base64url, globs, format negotiation, timestamps, the token bucket, and the
 * HTTP router's response headers and streamed bodies.
 *
 * Expected cursor bytes are checked against an HMAC-SHA256 computed here with OpenSSL directly
 * (not with the code under test), so a change of the MAC construction is caught.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "api/http.h"
#include "api/rest_auth.h"
#include "api/rest_encode.h"
#include "api/rest_params.h"
#include "core/base64.h"

static const tc_rest_param_def defs[] = {
    {"limit", TC_RP_INT, 0, 1, 100, NULL, NULL},
    {"from", TC_RP_TIME, 0, 0, 0, NULL, NULL},
    {"resolution", TC_RP_ENUM, 0, 0, 0, "auto|raw|1m|1h", NULL},
    {"tag", TC_RP_TAG, 0, 0, 0, NULL, NULL},
    {"glob", TC_RP_STRING, 0, 0, 8, NULL, NULL},
    {"cursor", TC_RP_CURSOR, 0, 0, 0, NULL, NULL},
    {"ids", TC_RP_IDS, 0, 0, 3, NULL, NULL},
    {"need", TC_RP_STRING, 1, 0, 10, NULL, NULL},
};
#define NDEFS (sizeof(defs) / sizeof(defs[0]))

static tc_rest_cursor_key key(void)
{
    tc_rest_cursor_key k = {.secret_len = 5};
    memcpy(k.secret, "s3cr3", 5);
    return k;
}

static int parse(const char *q, tc_rest_param_val *v, tc_rest_problem *pb)
{
    tc_rest_cursor_key k = key();
    memset(pb, 0, sizeof(*pb));
    return tc_rest_params_parse(defs, NDEFS, q, &k, "route", v, pb);
}

static void test_valid_parameters(void **state)
{
    tc_rest_param_val v[NDEFS];
    tc_rest_problem pb;

    (void)state;
    assert_int_equal(parse("need=x&limit=42&from=2026-12-05T07:00:00.5Z&resolution=1m&tag=site%3"
                           "As1&glob=d%2A&ids=1,20,300",
                           v, &pb),
                     0);
    assert_int_equal(v[0].num, 42);
    assert_int_equal(v[1].num, 1796454000500000LL);
    assert_int_equal(v[2].num, 2);
    assert_string_equal(v[3].text, "site:s1");
    assert_int_equal(v[3].tag_split, 4);
    assert_string_equal(v[4].text, "d*");
    assert_true(v[6].present);
    assert_false(v[5].present);
    /* An encoded name is the same name: no second "limit" slips past the duplicate check. */
    assert_int_equal(parse("need=x&limit=1&%6Cimit=2", v, &pb), 400);
    assert_string_equal(pb.param, "limit");
}

static void test_refusals_name_the_parameter(void **state)
{
    static const struct {
        const char *q, *param;
    } bad[] = {
        {"limit=1", "need"},
        {"need=x&limit=0", "limit"},
        {"need=x&limit=101", "limit"},
        {"need=x&limit=1.5", "limit"},
        {"need=x&limit=99999999999999999999", "limit"},
        {"need=x&from=2026-12-05", "from"},
        {"need=x&from=2026-13-05T00:00:00Z", "from"},
        {"need=x&resolution=5m", "resolution"},
        {"need=x&tag=site", "tag"},
        {"need=x&tag=:v", "tag"},
        {"need=x&tag=k:", "tag"},
        {"need=x&glob=123456789", "glob"},
        {"need=x&glob=", "glob"},
        {"need=x&glob=a%0Ab", "glob"},
        {"need=x&glob=%zz", "glob"},
        {"need=x&ids=0", "ids"},
        {"need=x&ids=1,2,3,4", "ids"},
        {"need=x&ids=1,,2", "ids"},
        {"need=x&ids=-1", "ids"},
        {"need=x&cursor=abc", "cursor"},
        {"need=x&other=1", "other"},
        {"need=x&need=y", "need"},
    };
    tc_rest_param_val v[NDEFS];
    tc_rest_problem pb;

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(parse(bad[i].q, v, &pb), 400);
        assert_string_equal(pb.param, bad[i].param);
        assert_non_null(strstr(pb.detail, bad[i].param));
    }
}

static void test_problem_json(void **state)
{
    tc_rest_problem pb;
    size_t len = 0;
    char *j;

    (void)state;
    tc_rest_problem_set(&pb, 400, "limit", "limit: an integer from %d to %d", 1, 10);
    j = tc_rest_problem_json(&pb, "/v1/x\"y", &len);
    assert_string_equal(j, "{\"type\":\"about:blank\",\"title\":\"Invalid request parameter\","
                           "\"status\":400,\"detail\":\"limit: an integer from 1 to 10\","
                           "\"instance\":\"/v1/x\\\"y\",\"invalid-params\":[{\"name\":\"limit\","
                           "\"reason\":\"limit: an integer from 1 to 10\"}]}");
    free(j);
}

static void test_cursor_round_trip_and_mac(void **state)
{
    tc_rest_cursor_key k = key();
    char c[TC_REST_CURSOR_MAX], got[TC_REST_CURSOR_KEY_MAX], want[64];
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    const char *payload = "route|2026-12-05 07:00:00+00";

    (void)state;
    assert_int_equal(tc_rest_cursor_make(&k, "route", "2026-12-05 07:00:00+00", c, sizeof(c)),
                     TC_OK);
    HMAC(EVP_sha256(), "s3cr3", 5, (const unsigned char *)payload, strlen(payload), mac, &maclen);
    tc_base64_encode(TC_BASE64_URL, mac, TC_REST_MAC_BYTES, want, sizeof(want));
    assert_string_equal(strchr(c, '.') + 1, want);
    assert_int_equal(tc_rest_cursor_open(&k, "route", c, got, sizeof(got)), TC_OK);
    assert_string_equal(got, "2026-12-05 07:00:00+00");
    /* Another route, another secret, a flipped byte, a cut: refused. */
    assert_int_equal(tc_rest_cursor_open(&k, "rout", c, got, sizeof(got)), TC_ERR_INVALID);
    assert_int_equal(tc_rest_cursor_open(&k, "other", c, got, sizeof(got)), TC_ERR_INVALID);
    k.secret[0] ^= 1;
    assert_int_equal(tc_rest_cursor_open(&k, "route", c, got, sizeof(got)), TC_ERR_INVALID);
    k.secret[0] ^= 1;
    c[3] = c[3] == 'A' ? 'B' : 'A';
    assert_int_equal(tc_rest_cursor_open(&k, "route", c, got, sizeof(got)), TC_ERR_INVALID);
    assert_int_equal(tc_rest_cursor_open(&k, "route", "", got, sizeof(got)), TC_ERR_INVALID);
    assert_int_equal(tc_rest_cursor_open(&k, "route", ".", got, sizeof(got)), TC_ERR_INVALID);
}

static void test_base64url(void **state)
{
    unsigned char out[8];
    char text[16];

    (void)state;
    assert_int_equal(
        tc_base64_encode(TC_BASE64_URL, (const unsigned char *)"\xfb\xff", 2, text, 16), 3);
    assert_string_equal(text, "-_8");
    assert_int_equal(tc_base64_decode(TC_BASE64_URL, "-_8", 3, out, sizeof(out)), 2);
    assert_memory_equal(out, "\xfb\xff", 2);
    /* Non-zero leftover bits: another spelling of the same bytes, refused. */
    assert_int_equal(tc_base64_decode(TC_BASE64_URL, "-_9", 3, out, sizeof(out)), -1);
    assert_int_equal(tc_base64_decode(TC_BASE64_URL, "A", 1, out, sizeof(out)), -1);
    assert_int_equal(tc_base64_decode(TC_BASE64_URL, "a+b/", 4, out, sizeof(out)), -1);
    assert_int_equal(tc_base64_decode(TC_BASE64_URL, "AAAAAAAAAAAA", 12, out, sizeof(out)), -1);
}

static void test_glob_to_like(void **state)
{
    char out[32];

    (void)state;
    assert_int_equal(tc_rest_glob_to_like("dev-?1*%_\\", out, sizeof(out)), TC_OK);
    assert_string_equal(out, "dev-_1%\\%\\_\\\\");
    assert_int_equal(tc_rest_glob_to_like("abcdef", out, 6), TC_ERR_FULL);
}

static void test_format_choice(void **state)
{
    tc_rest_format f;

    (void)state;
    assert_int_equal(tc_rest_format_choose(-1, NULL, &f), 0);
    assert_int_equal(f, TC_REST_FMT_JSON);
    assert_int_equal(tc_rest_format_choose(-1, "text/html, text/csv;q=0.9", &f), 0);
    assert_int_equal(f, TC_REST_FMT_CSV);
    assert_int_equal(tc_rest_format_choose(-1, "application/vnd.apache.parquet", &f), 0);
    assert_int_equal(f, TC_REST_FMT_PARQUET);
    assert_int_equal(tc_rest_format_choose(-1, "text/html, */*;q=0.1", &f), 0);
    assert_int_equal(f, TC_REST_FMT_JSON);
    assert_int_equal(tc_rest_format_choose(-1, "image/png", &f), 406);
    /* format= wins over Accept. */
    assert_int_equal(tc_rest_format_choose(TC_REST_FMT_NDJSON, "image/png", &f), 0);
    assert_int_equal(f, TC_REST_FMT_NDJSON);
}

static void test_iso_time(void **state)
{
    char out[64];

    (void)state;
    tc_rest_iso_time("2026-12-05 07:00:00.5+00", out, sizeof(out));
    assert_string_equal(out, "2026-12-05T07:00:00.5Z");
    tc_rest_iso_time("2026-12-05 07:00:00+00", out, sizeof(out));
    assert_string_equal(out, "2026-12-05T07:00:00Z");
    tc_rest_iso_time("2026-12-05 07:00:00+02", out, sizeof(out)); /* not UTC: left alone */
    assert_string_equal(out, "2026-12-05 07:00:00+02");
}

static void test_token_bucket(void **state)
{
    tc_rest_auth_options o = {.rate_per_s = 2, .rate_burst = 3};
    char errstr[256];
    tc_rest_auth *a = tc_rest_auth_new(&o, errstr, sizeof(errstr));
    tc_rest_problem pb;
    long retry = 0;
    int64_t t = 1000000000;

    (void)state;
    assert_non_null(a);
    for (int i = 0; i < 3; i++)
        assert_int_equal(tc_rest_rate_take(a, "alice", t, &retry, &pb), 0);
    assert_int_equal(tc_rest_rate_take(a, "alice", t, &retry, &pb), 429);
    assert_int_equal(retry, 1);
    assert_int_equal(tc_rest_rate_take(a, "bob", t, &retry, &pb), 0);
    /* Half a second later one token is back (2 per second), not two. */
    assert_int_equal(tc_rest_rate_take(a, "alice", t + 500000, &retry, &pb), 0);
    assert_int_equal(tc_rest_rate_take(a, "alice", t + 500000, &retry, &pb), 429);
    tc_rest_auth_destroy(a);
}

static void test_auth_refusals_without_keys(void **state)
{
    tc_rest_auth_options o = {.rate_per_s = 1, .rate_burst = 1};
    char errstr[256];
    tc_rest_auth *a = tc_rest_auth_new(&o, errstr, sizeof(errstr));
    tc_rest_principal who;
    tc_rest_problem pb;

    (void)state;
    assert_int_equal(tc_rest_authenticate(a, NULL, NULL, 0, &who, &pb), 401);
    assert_int_equal(tc_rest_authenticate(a, "Basic abc", NULL, 0, &who, &pb), 401);
    /* alg none: refused before any library sees it. */
    assert_int_equal(tc_rest_authenticate(a, "Bearer eyJhbGciOiJub25lIn0.e30.", NULL, 0, &who, &pb),
                     401);
    /* HS256 with no secret configured. */
    assert_int_equal(
        tc_rest_authenticate(a, "Bearer eyJhbGciOiJIUzI1NiJ9.e30.abc", NULL, 0, &who, &pb), 401);
    assert_int_equal(tc_rest_authenticate(a, NULL, "some-key", 0, &who, &pb), 401);
    tc_rest_auth_destroy(a);
    o.jwt_secret = "too-short";
    assert_null(tc_rest_auth_new(&o, errstr, sizeof(errstr)));
    assert_non_null(strstr(errstr, "api.jwt_secret"));
}

/* ---- the HTTP server's additions: headers and streamed bodies ---- */

typedef struct counter {
    int left, freed;
} counter;

static long count_down(void *ctx, char *buf, size_t max)
{
    counter *c = ctx;

    if (c->left == 0)
        return TC_HTTP_STREAM_END;
    c->left--;
    assert_true(max >= 2);
    memcpy(buf, "ab", 2);
    return 2;
}

static void free_counter(void *ctx)
{
    ((counter *)ctx)->freed++;
}

static void stream_handler(void *ctx, const tc_http_request *req, tc_http_response *resp)
{
    assert_string_equal(req->authorization, "Bearer t");
    assert_string_equal(req->api_key, "k");
    tc_http_respond_stream(resp, 200, "text/csv", count_down, ctx, free_counter);
    assert_int_equal(tc_http_add_header(resp, "Retry-After", "1\r\nX-Evil: 1"), TC_OK);
}

static void test_http_stream_and_headers(void **state)
{
    char errstr[256];
    tc_http_server *s = tc_http_server_new(NULL, NULL, errstr, sizeof(errstr));
    tc_http_in_headers h = {NULL, NULL, "Bearer t", "k"};
    counter c = {3, 0};
    tc_http_response resp;
    char buf[16];

    (void)state;
    assert_int_equal(tc_http_route(s, "GET", "/s", stream_handler, &c), TC_OK);
    tc_http_dispatch_headers(s, "GET", "/s", &h, NULL, 0, &resp);
    assert_int_equal(resp.status, 200);
    assert_non_null(resp.stream);
    assert_string_equal(resp.headers[0].value, "1  X-Evil: 1"); /* no header splitting */
    assert_int_equal(resp.stream(resp.stream_ctx, buf, sizeof(buf)), 2);
    /* A response never sent frees its stream when cleared, exactly once. */
    tc_http_response_clear(&resp);
    assert_int_equal(c.freed, 1);
    tc_http_server_destroy(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_parameters),
        cmocka_unit_test(test_refusals_name_the_parameter),
        cmocka_unit_test(test_problem_json),
        cmocka_unit_test(test_cursor_round_trip_and_mac),
        cmocka_unit_test(test_base64url),
        cmocka_unit_test(test_glob_to_like),
        cmocka_unit_test(test_format_choice),
        cmocka_unit_test(test_iso_time),
        cmocka_unit_test(test_token_bucket),
        cmocka_unit_test(test_auth_refusals_without_keys),
        cmocka_unit_test(test_http_stream_and_headers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
