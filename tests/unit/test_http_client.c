/*
 * test_http_client.c -- the registry's HTTP client (core/http_client.h) against canned responses.
 *
 * A local server thread accepts one connection on 127.0.0.1, records the request, writes a canned
 * response (in two pieces when asked, so the client's reading loop sees a split) and closes; or
 * answers nothing, for the timeout. The same malformed responses are also given to the parser
 * directly. No fixed sleep anywhere: the server answers when the request is in, the client waits
 * with its own timeout.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "core/http_client.h"

/* The request the server keeps (the tests send small ones). */
#define REQUEST_MAX 8192
/* A response size past which the client must give up (the "too large" case). */
#define SMALL_MAX 1024

typedef struct canned {
    int lfd;
    int port;
    const char *response; /* NULL: never answer */
    size_t response_len;
    size_t split; /* write the response in two pieces at this offset (0: one) */
    char request[REQUEST_MAX + 1];
    size_t request_len;
    pthread_t thread;
} canned;

/* Whether the request in c holds its headers and the body they announce. */
static int request_complete(const canned *c)
{
    const char *end = strstr(c->request, "\r\n\r\n"), *cl;

    if (!end)
        return 0;
    cl = strstr(c->request, "Content-Length: ");
    return !cl || cl > end ||
           c->request_len >= (size_t)(end + 4 - c->request) + strtoul(cl + 16, NULL, 10);
}

static void *serve(void *arg)
{
    canned *c = arg;
    int fd = accept(c->lfd, NULL, NULL);
    ssize_t r;

    if (fd < 0)
        return NULL;
    while (c->request_len < REQUEST_MAX && !request_complete(c) &&
           (r = recv(fd, c->request + c->request_len, REQUEST_MAX - c->request_len, 0)) > 0) {
        c->request_len += (size_t)r;
        c->request[c->request_len] = '\0';
    }
    if (c->response) {
        size_t first = c->split ? c->split : c->response_len;
        /* Errors are the client's business (it may close early on a response too large). */
        (void)!send(fd, c->response, first, MSG_NOSIGNAL);
        if (first < c->response_len)
            (void)!send(fd, c->response + first, c->response_len - first, MSG_NOSIGNAL);
    } else {
        char sink[256];
        while (recv(fd, sink, sizeof(sink), 0) > 0) /* until the client gives up and closes */
            ;
    }
    close(fd);
    return NULL;
}

static void start(canned *c, const char *response, size_t len, size_t split)
{
    struct sockaddr_in a = {.sin_family = AF_INET};
    socklen_t al = sizeof(a);

    memset(c, 0, sizeof(*c));
    c->response = response;
    c->response_len = response ? (len ? len : strlen(response)) : 0;
    c->split = split;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    c->lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(c->lfd >= 0);
    assert_int_equal(bind(c->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(c->lfd, 1), 0);
    assert_int_equal(getsockname(c->lfd, (struct sockaddr *)&a, &al), 0);
    c->port = ntohs(a.sin_port);
    assert_int_equal(pthread_create(&c->thread, NULL, serve, c), 0);
}

static void stop(canned *c)
{
    pthread_join(c->thread, NULL);
    close(c->lfd);
}

/* GET (or POST with body) <base>/path from the canned server. */
static tc_err fetch(canned *c, const char *body, size_t max, int timeout_ms, tc_http_reply *reply,
                    char *errstr, size_t errstr_size)
{
    char url[64];
    tc_http_url u;

    snprintf(url, sizeof(url), "http://127.0.0.1:%d/base/", c->port);
    assert_int_equal(tc_http_url_parse(url, &u), 0);
    return tc_http_fetch(&u, body ? "POST" : "GET", "/subjects/x/versions",
                         body ? "application/vnd.schemaregistry.v1+json" : NULL, body,
                         body ? strlen(body) : 0, timeout_ms, max, reply, errstr, errstr_size);
}

/* One exchange that must succeed: the reply, the server stopped. */
static tc_http_reply exchange(const char *response, size_t split, const char *body, canned *c)
{
    char errstr[TC_ERRSTR_MAX] = "";
    tc_http_reply reply;

    start(c, response, 0, split);
    if (fetch(c, body, 1 << 20, 10000, &reply, errstr, sizeof(errstr)) != TC_OK)
        fail_msg("fetch: %s", errstr);
    stop(c);
    return reply;
}

static void test_content_length_and_the_request(void **state)
{
    canned c;
    tc_http_reply r;
    char host[64];

    (void)state;
    /* Bytes past Content-Length are not the body. */
    r = exchange("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 5\r\n\r\n"
                 "helloEXTRA",
                 20, "{\"a\":1}", &c);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.len, 5);
    assert_string_equal(r.body, "hello");
    tc_http_reply_free(&r);
    assert_non_null(strstr(c.request, "POST /base/subjects/x/versions HTTP/1.1\r\n"));
    snprintf(host, sizeof(host), "\r\nHost: 127.0.0.1:%d\r\n", c.port);
    assert_non_null(strstr(c.request, host));
    assert_non_null(
        strstr(c.request, "\r\nContent-Type: application/vnd.schemaregistry.v1+json\r\n"));
    assert_non_null(strstr(c.request, "\r\nContent-Length: 7\r\n"));
    assert_non_null(strstr(c.request, "\r\nConnection: close\r\n"));
    assert_string_equal(strstr(c.request, "\r\n\r\n") + 4, "{\"a\":1}");
}

static void test_chunked_split_across_reads(void **state)
{
    static const char resp[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                               "5\r\nhello\r\n6;name=value\r\n world\r\nA\r\n0123456789\r\n"
                               "0\r\nX-Trailer: t\r\n\r\n";
    canned c;
    tc_http_reply r;

    (void)state;
    for (size_t split = 1; split < sizeof(resp) - 1; split += 7) {
        r = exchange(resp, split, NULL, &c);
        assert_int_equal(r.status, 200);
        assert_string_equal(r.body, "hello world0123456789");
        assert_int_equal(r.len, 21);
        tc_http_reply_free(&r);
        assert_non_null(strstr(c.request, "GET /base/subjects/x/versions HTTP/1.1\r\n"));
        assert_null(strstr(c.request, "Content-Length"));
    }
}

static void test_body_until_close_and_error_status(void **state)
{
    canned c;
    tc_http_reply r;

    (void)state;
    r = exchange("HTTP/1.0 200 OK\r\n\r\n{\"id\":1}", 0, NULL, &c);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "{\"id\":1}");
    tc_http_reply_free(&r);
    /* An HTTP error is a reply, not an error of the client. */
    r = exchange("HTTP/1.1 404 Not Found\r\nContent-Length: 17\r\n\r\n{\"error_code\":40}", 0, NULL,
                 &c);
    assert_int_equal(r.status, 404);
    assert_string_equal(r.body, "{\"error_code\":40}");
    tc_http_reply_free(&r);
    r = exchange("HTTP/1.1 204\r\n\r\n", 0, NULL, &c);
    assert_int_equal(r.status, 204);
    assert_int_equal(r.len, 0);
    assert_string_equal(r.body, "");
    tc_http_reply_free(&r);
}

/* Responses the client must refuse, each with what its message says. */
static const struct {
    const char *response, *why;
} refused[] = {
    {"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", "truncated"},
    {"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\nabc", "Content-Length"},
    {"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\nabc", "Content-Length"},
    {"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 1\r\n\r\nabc", "Content-Length"},
    {"HTTP/1.1 2000 OK\r\n\r\nabc", "malformed"},
    {"HTTP/1.1 2x0 OK\r\n\r\nabc", "malformed"},
    {"HTTP/2 200 OK\r\n\r\nabc", "malformed"},
    {"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nabc", "malformed"}, /* no end of headers */
    {"hello", "malformed"},
    {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n", "chunked"},
    {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\nhello\r\n0\r\n\r\n", "chunked"},
    {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n", "chunked"},
    {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n 5\r\nhello\r\n0\r\n\r\n", "chunked"},
    {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n", "chunked"},
    {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\nx\r\n0\r\n\r\n",
     "chunked"},
};

static void test_malformed_responses_are_refused(void **state)
{
    char errstr[TC_ERRSTR_MAX];
    tc_http_reply r;
    canned c;

    (void)state;
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        errstr[0] = '\0';
        start(&c, refused[i].response, 0, 0);
        if (fetch(&c, NULL, 1 << 20, 10000, &r, errstr, sizeof(errstr)) == TC_OK)
            fail_msg("accepted %s (status %d, body \"%s\")", refused[i].response, r.status, r.body);
        stop(&c);
        assert_null(r.body);
        if (!strstr(errstr, refused[i].why))
            fail_msg("%s: \"%s\" does not say %s", refused[i].response, errstr, refused[i].why);
    }
}

#ifndef TC_TEST_HTTP_FETCH_ONLY
/* The parser alone, on the same inputs: it never takes them, and buf stays the caller's. */
static void test_parser_alone(void **state)
{
    char errstr[TC_ERRSTR_MAX];
    tc_http_reply r;

    (void)state;
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        size_t n = strlen(refused[i].response);
        char *buf = malloc(n + 1);
        assert_non_null(buf);
        memcpy(buf, refused[i].response, n + 1);
        assert_int_equal(tc_http_parse_reply(buf, n, &r, errstr, sizeof(errstr)), TC_ERR_IO);
        assert_null(r.body);
        free(buf);
    }
    /* A NUL inside the body is data. */
    {
        static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\na\0b";
        char *buf = malloc(sizeof(resp));
        assert_non_null(buf);
        memcpy(buf, resp, sizeof(resp));
        assert_int_equal(tc_http_parse_reply(buf, sizeof(resp) - 1, &r, errstr, sizeof(errstr)),
                         TC_OK);
        assert_int_equal(r.len, 3);
        assert_memory_equal(r.body, "a\0b", 3);
        tc_http_reply_free(&r);
    }
}
#endif

static void test_too_large_timeout_refused(void **state)
{
    char errstr[TC_ERRSTR_MAX] = "", *big;
    tc_http_reply r;
    canned c;
    int port;

    (void)state;
    /* Larger than max_response: refused, never grown past the cap. */
    big = malloc(200000);
    assert_non_null(big);
    memset(big, 'x', 200000);
    memcpy(big, "HTTP/1.1 200 OK\r\n\r\n", 19);
    start(&c, big, 200000, 0);
    assert_int_equal(fetch(&c, NULL, SMALL_MAX, 10000, &r, errstr, sizeof(errstr)), TC_ERR_IO);
    assert_non_null(strstr(errstr, "larger than"));
    stop(&c);
    free(big);

    /* A server that never answers: the client's own timeout, reported as one. */
    start(&c, NULL, 0, 0);
    assert_int_equal(fetch(&c, NULL, SMALL_MAX, 300, &r, errstr, sizeof(errstr)), TC_ERR_TIMEOUT);
    stop(&c);

    /* Nobody listening: refused, naming where. */
    start(&c, "HTTP/1.1 200 OK\r\n\r\n", 0, 0);
    port = c.port;
    assert_int_equal(fetch(&c, NULL, SMALL_MAX, 10000, &r, errstr, sizeof(errstr)), TC_OK);
    tc_http_reply_free(&r);
    stop(&c);
    c.port = port; /* its socket is closed now */
    assert_int_equal(fetch(&c, NULL, SMALL_MAX, 10000, &r, errstr, sizeof(errstr)), TC_ERR_IO);
    assert_non_null(strstr(errstr, "cannot connect to 127.0.0.1"));
}

static void test_url_parse(void **state)
{
    tc_http_url u;

    (void)state;
    assert_int_equal(tc_http_url_parse("http://registry:8081/api/", &u), 0);
    assert_string_equal(u.host, "registry");
    assert_string_equal(u.port, "8081");
    assert_string_equal(u.base, "/api");
    assert_int_equal(tc_http_url_parse("HTTP://[::1]", &u), 0);
    assert_string_equal(u.host, "::1");
    assert_string_equal(u.port, "80");
    assert_string_equal(u.base, "");
    assert_int_equal(u.https, 0);
    assert_int_equal(tc_http_url_parse("https://registry", &u), 0);
    assert_string_equal(u.port, "443");
    assert_int_equal(u.https, 1);
    assert_int_equal(tc_http_url_parse("HTTPS://registry:8443/r", &u), 0);
    assert_string_equal(u.port, "8443");
    assert_string_equal(u.base, "/r");
    assert_int_equal(tc_http_url_parse("ftp://registry", &u), -1);
    assert_int_equal(tc_http_url_parse("https://", &u), -1);
    assert_int_equal(tc_http_url_parse("http://:80", &u), -1);
    assert_int_equal(tc_http_url_parse("http://h:8x/", &u), -1);
    assert_int_equal(tc_http_url_parse("http://[::1/", &u), -1);
    assert_int_equal(tc_http_url_parse("http://h:123456789/", &u), -1);
}

/* Bearer tokens become the header as they are; one a header cannot carry is refused. */
static void test_bearer(void **state)
{
    tc_http_url u;
    char long_token[TC_HTTP_AUTHORIZATION_MAX];

    (void)state;
    assert_int_equal(tc_http_url_parse("https://registry", &u), 0);
    assert_int_equal(tc_http_url_set_bearer(&u, "tok-1.2_3~x"), TC_OK);
    assert_string_equal(u.authorization, "Bearer tok-1.2_3~x");
    assert_int_equal(tc_http_url_set_bearer(&u, "a\r\nX-Evil: 1"), TC_ERR_INVALID);
    assert_string_equal(u.authorization, "");
    assert_int_equal(tc_http_url_set_bearer(&u, "two words"), TC_ERR_INVALID);
    assert_int_equal(tc_http_url_set_bearer(&u, ""), TC_ERR_INVALID);
    memset(long_token, 'a', sizeof(long_token) - 1);
    long_token[sizeof(long_token) - 1] = '\0';
    assert_int_equal(tc_http_url_set_bearer(&u, long_token), TC_ERR_INVALID);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_content_length_and_the_request),
        cmocka_unit_test(test_chunked_split_across_reads),
        cmocka_unit_test(test_body_until_close_and_error_status),
        cmocka_unit_test(test_malformed_responses_are_refused),
#ifndef TC_TEST_HTTP_FETCH_ONLY
        cmocka_unit_test(test_parser_alone),
#endif
        cmocka_unit_test(test_too_large_timeout_refused),
        cmocka_unit_test(test_url_parse),
        cmocka_unit_test(test_bearer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
