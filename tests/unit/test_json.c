/*
 * test_json.c -- the strict JSON DOM parser and the JSON writer (core/json.h).
 *
 * Every parse runs on a malloc'd copy of exactly len bytes (no NUL after it), so under ASan a read
 * past the end of the input is a heap error, not luck.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "core/json.h"

static tc_json_doc *parse_lim(const char *text, size_t len, const tc_json_limits *lim, tc_err *err,
                              char *errstr, size_t size)
{
    char *copy = malloc(len ? len : 1);
    tc_json_doc *doc;

    assert_non_null(copy);
    memcpy(copy, text, len);
    doc = tc_json_parse(copy, len, lim, err, errstr, size);
    free(copy);
    return doc;
}

static tc_json_doc *parse(const char *text)
{
    char e[TC_ERRSTR_MAX];
    tc_err err;
    tc_json_doc *doc = parse_lim(text, strlen(text), NULL, &err, e, sizeof(e));

    if (!doc)
        fail_msg("expected %s to parse: %s", text, e);
    assert_int_equal(err, TC_OK);
    return doc;
}

static void refuse(const char *text, size_t len, const char *why)
{
    char e[TC_ERRSTR_MAX];
    tc_err err = TC_OK;
    tc_json_doc *doc = parse_lim(text, len, NULL, &err, e, sizeof(e));

    if (doc) {
        tc_json_free(doc);
        fail_msg("expected to refuse (%s): %.*s", why, (int)len, text);
    }
    assert_int_equal(err, TC_ERR_INVALID);
    assert_true(e[0] != '\0');
}

#define REFUSE(lit) refuse(lit, sizeof(lit) - 1, lit)

static void test_values(void **state)
{
    tc_json_doc *doc;
    const tc_json *r;
    int64_t i;

    (void)state;
    doc = parse(" {\"a\": [1, -2.5e3, true, false, null, \"x\"], \"b\": {}} \n");
    r = tc_json_root(doc);
    assert_int_equal(r->type, TC_JSON_OBJECT);
    assert_int_equal(r->len, 2);
    assert_string_equal(r->u.members[0].key, "a");
    assert_string_equal(r->u.members[1].key, "b");
    r = tc_json_get(r, "a");
    assert_int_equal(r->type, TC_JSON_ARRAY);
    assert_int_equal(r->len, 6);
    assert_true(tc_json_int64(r->u.items[0], &i) && i == 1);
    assert_false(tc_json_int64(r->u.items[1], &i));
    assert_true(r->u.items[1]->u.num.value == -2500.0);
    assert_string_equal(r->u.items[1]->u.num.text, "-2.5e3");
    assert_int_equal(r->u.items[2]->type, TC_JSON_TRUE);
    assert_int_equal(r->u.items[3]->type, TC_JSON_FALSE);
    assert_int_equal(r->u.items[4]->type, TC_JSON_NULL);
    assert_string_equal(tc_json_string(r->u.items[5]), "x");
    assert_int_equal(tc_json_get(tc_json_root(doc), "b")->len, 0);
    assert_null(tc_json_get(tc_json_root(doc), "c"));
    assert_null(tc_json_get(r, "a")); /* not an object */
    tc_json_free(doc);

    /* Scalars at top level are values too (RFC 8259). */
    doc = parse("\"just a string\"");
    assert_string_equal(tc_json_string(tc_json_root(doc)), "just a string");
    tc_json_free(doc);
    doc = parse("0");
    assert_true(tc_json_int64(tc_json_root(doc), &i) && i == 0);
    tc_json_free(doc);
    doc = parse("-9223372036854775808");
    assert_true(tc_json_int64(tc_json_root(doc), &i) && i == INT64_MIN);
    tc_json_free(doc);
    doc = parse("9223372036854775808"); /* a valid number, but not an int64 */
    assert_false(tc_json_int64(tc_json_root(doc), &i));
    tc_json_free(doc);
    doc = parse("1e-400"); /* underflows to zero: representable, accepted */
    assert_true(tc_json_root(doc)->u.num.value == 0.0);
    tc_json_free(doc);
    tc_json_free(NULL);
}

static void test_strictness(void **state)
{
    (void)state;
    REFUSE("");
    REFUSE("   ");
    REFUSE("{");
    REFUSE("[1,]");
    REFUSE("{\"a\":1,}");
    REFUSE("[1 2]");
    REFUSE("{\"a\" 1}");
    REFUSE("{a:1}");
    REFUSE("{'a':1}");
    REFUSE("['a']");
    REFUSE("01");
    REFUSE("-");
    REFUSE("1.");
    REFUSE(".5");
    REFUSE("1e");
    REFUSE("1e+");
    REFUSE("+1");
    REFUSE("0x10");
    REFUSE("NaN");
    REFUSE("Infinity");
    REFUSE("-Infinity");
    REFUSE("1e400");
    REFUSE("-1e400");
    REFUSE("tru");
    REFUSE("nul");
    REFUSE("True");
    REFUSE("[1] [2]");
    REFUSE("{} x");
    REFUSE("/* c */ 1");
    REFUSE("1 // c");
    REFUSE("\"a\tb\""); /* raw control character */
    REFUSE("\"a\nb\"");
    REFUSE("\"\\x41\""); /* invalid escape */
    REFUSE("\"\\u12\"");
    REFUSE("\"\\u12G4\"");
    REFUSE("\"abc");
    REFUSE("\"abc\\");
    REFUSE("\"abc\\\"");
    REFUSE("\f1"); /* form feed is not JSON whitespace */
    REFUSE("\v1");
    REFUSE("{\"a\":1,\"a\":2}"); /* duplicate names */
    REFUSE("[\"\\u0000\"]");     /* NUL refused unless allowed */
    refuse("[1]\0", 4, "NUL after the value");
    refuse("\"a\0b\"", 5, "raw NUL in a string");
}

static void test_duplicates_large_object(void **state)
{
    char buf[64 * 1024];
    size_t n = 0;

    (void)state;
    /* 200 distinct members, then a duplicate of the 17th: found through the sorted path. */
    n += (size_t)snprintf(buf + n, sizeof(buf) - n, "{");
    for (int i = 0; i < 200; i++)
        n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s\"k%d\":%d", i ? "," : "", i, i);
    tc_json_free(parse(strcat(buf, "}")));
    buf[n] = '\0';
    n += (size_t)snprintf(buf + n, sizeof(buf) - n, ",\"k16\":0}");
    refuse(buf, n, "duplicate among many");
}

static void test_utf8(void **state)
{
    tc_json_doc *doc;

    (void)state;
    doc = parse("\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"");
    assert_string_equal(tc_json_string(tc_json_root(doc)),
                        "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
    tc_json_free(doc);
    REFUSE("\"\x80\"");             /* lone continuation byte */
    REFUSE("\"\xc3\"");             /* truncated sequence */
    REFUSE("\"\xc0\xaf\"");         /* overlong '/' */
    REFUSE("\"\xc1\xbf\"");         /* overlong */
    REFUSE("\"\xe0\x80\xaf\"");     /* overlong 3-byte */
    REFUSE("\"\xf0\x80\x80\xaf\""); /* overlong 4-byte */
    REFUSE("\"\xed\xa0\x80\"");     /* UTF-16 surrogate encoded in UTF-8 */
    REFUSE("\"\xf4\x90\x80\x80\""); /* above U+10FFFF */
    REFUSE("\"\xf5\x80\x80\x80\"");
    REFUSE("\"\xff\"");
    REFUSE("{\"\xc3\":1}");       /* in a member name too */
    REFUSE("\"\\ud800\"");        /* lone high surrogate */
    REFUSE("\"\\udc00\"");        /* lone low surrogate */
    REFUSE("\"\\ud800\\u0041\""); /* high surrogate + non-surrogate */
    REFUSE("\"\\ud800x\"");
    assert_true(tc_json_utf8_valid("", 0));
    assert_true(tc_json_utf8_valid("\xf4\x8f\xbf\xbf", 4)); /* U+10FFFF */
    assert_false(tc_json_utf8_valid("\xf4\x8f\xbf", 3));
}

static void test_escapes_decode(void **state)
{
    tc_json_doc *doc;
    const char *s;

    (void)state;
    doc = parse("\"\\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u0041 \\u00e9 \\u20AC \\ud83d\\ude00\"");
    s = tc_json_string(tc_json_root(doc));
    assert_string_equal(s, "\" \\ / \b \f \n \r \t A \xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
    tc_json_free(doc);
}

static void test_allow_nul(void **state)
{
    tc_json_limits lim = {0, 0, 0, 1};
    char e[TC_ERRSTR_MAX];
    tc_json_doc *doc;
    const tc_json *v;

    (void)state;
    doc = parse_lim("\"a\\u0000b\"", 10, &lim, NULL, e, sizeof(e));
    assert_non_null(doc);
    v = tc_json_root(doc);
    assert_int_equal(v->len, 3);
    assert_memory_equal(v->u.str, "a\0b", 4);
    tc_json_free(doc);
}

static void test_caps(void **state)
{
    tc_json_limits lim = {0, 4, 0, 0};
    char e[TC_ERRSTR_MAX], big[5000];
    tc_json_doc *doc;
    tc_err err;

    (void)state;
    /* Depth: 4 levels accepted, 5 refused. */
    doc = parse_lim("[[[[1]]]]", 9, &lim, &err, e, sizeof(e));
    assert_non_null(doc);
    tc_json_free(doc);
    doc = parse_lim("[[[[[1]]]]]", 11, &lim, &err, e, sizeof(e));
    assert_null(doc);
    assert_int_equal(err, TC_ERR_INVALID);
    assert_non_null(strstr(e, "deep"));
    doc = parse_lim("{\"a\":{\"b\":{\"c\":{\"d\":{}}}}}", 25, &lim, &err, e, sizeof(e));
    assert_null(doc);

    /* Default depth: 64 levels. */
    memset(big, '[', 65);
    memset(big + 65, ']', 65);
    doc = parse_lim(big, 130, NULL, &err, e, sizeof(e));
    assert_null(doc);
    doc = parse_lim(big + 1, 128, NULL, &err, e, sizeof(e));
    assert_non_null(doc);
    tc_json_free(doc);

    /* Size. */
    lim = (tc_json_limits){10, 0, 0, 0};
    doc = parse_lim("[1,2,3,4,5]", 11, &lim, &err, e, sizeof(e));
    assert_null(doc);
    assert_non_null(strstr(e, "exceeds"));
    doc = parse_lim("[1,2,3,45]", 10, &lim, &err, e, sizeof(e));
    assert_non_null(doc);
    tc_json_free(doc);

    /* Nodes: the array plus 3 numbers is 4 values. */
    lim = (tc_json_limits){0, 0, 4, 0};
    doc = parse_lim("[1,2,3]", 7, &lim, &err, e, sizeof(e));
    assert_non_null(doc);
    tc_json_free(doc);
    doc = parse_lim("[1,2,3,4]", 9, &lim, &err, e, sizeof(e));
    assert_null(doc);
    assert_non_null(strstr(e, "too many"));

    /* A depth above the hard limit is clamped, not trusted. */
    lim = (tc_json_limits){0, 100000, 0, 0};
    {
        size_t n = 2 * (TC_JSON_MAX_DEPTH_LIMIT + 1);
        char *deep = malloc(n);
        assert_non_null(deep);
        memset(deep, '[', n / 2);
        memset(deep + n / 2, ']', n / 2);
        doc = parse_lim(deep, n, &lim, &err, e, sizeof(e));
        assert_null(doc);
        doc = parse_lim(deep + 1, n - 2, &lim, &err, e, sizeof(e));
        assert_non_null(doc);
        tc_json_free(doc);
        free(deep);
    }
}

static void test_error_offsets(void **state)
{
    char e[TC_ERRSTR_MAX];
    tc_json_doc *doc;

    (void)state;
    doc = parse_lim("{\"a\":[1,2,x]}", 13, NULL, NULL, e, sizeof(e));
    assert_null(doc);
    assert_non_null(strstr(e, "byte 10"));
}

static char *write_value(const char *json)
{
    tc_json_doc *doc = parse(json);
    tc_jbuf b;
    char *out;

    tc_jbuf_init(&b, 0);
    tc_jbuf_value(&b, tc_json_root(doc));
    tc_json_free(doc);
    out = tc_jbuf_take(&b, NULL);
    assert_non_null(out);
    return out;
}

static void test_round_trip(void **state)
{
    static const char *const cases[] = {
        "{\"a\":[1,-2.5e3,true,false,null,\"x\"],\"b\":{}}",
        "[]",
        "{}",
        "\"\"",
        "\"\\\"\\\\/\\b\\f\\n\\r\\t\\u0001\\u001f\"",
        "\"caf\xc3\xa9\"",
        "[[[[]]],{\"\":{\"\":[]}}]",
        "1E+2",
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *once = write_value(cases[i]);
        char *twice = write_value(once);
        tc_json_doc *a = parse(cases[i]), *b = parse(once);
        assert_true(tc_json_equal(tc_json_root(a), tc_json_root(b)));
        assert_string_equal(once, twice); /* the writer's form is a fixed point */
        tc_json_free(a);
        tc_json_free(b);
        free(once);
        free(twice);
    }
}

static void test_escape_all_bytes(void **state)
{
    /* Every code point 1..0x7F and a few above survive writer -> parser unchanged. */
    char in[256];
    size_t n = 0;
    tc_jbuf b;
    tc_json_doc *doc;
    char *out;
    size_t len;

    (void)state;
    for (int c = 1; c < 0x80; c++)
        in[n++] = (char)c;
    memcpy(in + n, "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 9);
    n += 9;
    tc_jbuf_init(&b, 0);
    tc_jbuf_strn(&b, in, n);
    out = tc_jbuf_take(&b, &len);
    assert_non_null(out);
    assert_null(memchr(out, '\n', len)); /* control characters are escaped */
    doc = parse(out);
    assert_int_equal(tc_json_root(doc)->len, n);
    assert_memory_equal(tc_json_root(doc)->u.str, in, n);
    tc_json_free(doc);
    free(out);
}

static void test_writer(void **state)
{
    tc_jbuf b;
    char *out;
    size_t len;

    (void)state;
    tc_jbuf_init(&b, 0);
    tc_jbuf_obj_begin(&b);
    tc_jbuf_key(&b, "n");
    tc_jbuf_int(&b, -42);
    tc_jbuf_key(&b, "d");
    tc_jbuf_double(&b, 0.1);
    tc_jbuf_key(&b, "inf");
    tc_jbuf_double(&b, INFINITY);
    tc_jbuf_key(&b, "a");
    tc_jbuf_arr_begin(&b);
    tc_jbuf_bool(&b, 1);
    tc_jbuf_null(&b);
    tc_jbuf_raw(&b, "{\"x\":1}", 7);
    tc_jbuf_str(&b, "q\"");
    tc_jbuf_arr_end(&b);
    tc_jbuf_key(&b, "k\"ey");
    tc_jbuf_arr_begin(&b);
    tc_jbuf_arr_end(&b);
    tc_jbuf_obj_end(&b);
    out = tc_jbuf_take(&b, &len);
    assert_string_equal(out,
                        "{\"n\":-42,\"d\":0.1,\"inf\":null,\"a\":[true,null,{\"x\":1},\"q\\\"\"],"
                        "\"k\\\"ey\":[]}");
    assert_int_equal(len, strlen(out));
    free(out);

    /* Invalid UTF-8 becomes U+FFFD: the output is always valid JSON. */
    tc_jbuf_init(&b, 0);
    tc_jbuf_str(&b, "a\xff"
                    "b\xc3");
    out = tc_jbuf_take(&b, NULL);
    assert_string_equal(out, "\"a\xef\xbf\xbd"
                             "b\xef\xbf\xbd\"");
    free(out);

    /* The cap: sticky failure, take gives NULL. */
    tc_jbuf_init(&b, 8);
    tc_jbuf_str(&b, "0123456789");
    assert_true(tc_jbuf_failed(&b));
    tc_jbuf_int(&b, 1);
    assert_null(tc_jbuf_take(&b, NULL));

    /* Closing more than was opened fails. */
    tc_jbuf_init(&b, 0);
    tc_jbuf_arr_end(&b);
    assert_true(tc_jbuf_failed(&b));
    tc_jbuf_free(&b);

    /* An empty buffer gives "" (not NULL). */
    tc_jbuf_init(&b, 0);
    out = tc_jbuf_take(&b, &len);
    assert_non_null(out);
    assert_int_equal(len, 0);
    free(out);

    /* Doubles round-trip. */
    {
        const double v[] = {0.0,    -0.0,         1.0 / 3.0, 1e300, -2.2250738585072014e-308,
                            5e-324, 123456789.125};
        for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
            tc_json_doc *doc;
            tc_jbuf_init(&b, 0);
            tc_jbuf_double(&b, v[i]);
            out = tc_jbuf_take(&b, NULL);
            doc = parse(out);
            assert_true(tc_json_root(doc)->u.num.value == v[i]);
            tc_json_free(doc);
            free(out);
        }
    }
}

static void test_equal(void **state)
{
    tc_json_doc *a = parse("{\"a\":[1,2],\"b\":{\"c\":null}}");
    tc_json_doc *b = parse("{\"b\":{\"c\":null},\"a\":[1.0,2e0]}");
    tc_json_doc *c = parse("{\"b\":{\"c\":null},\"a\":[2,1]}");

    (void)state;
    assert_true(tc_json_equal(tc_json_root(a), tc_json_root(b)));
    assert_false(tc_json_equal(tc_json_root(a), tc_json_root(c)));
    assert_false(tc_json_equal(tc_json_root(a), NULL));
    tc_json_free(a);
    tc_json_free(b);
    tc_json_free(c);
}

/* tc_fmt_double: the shortest of 15, 16, 17 digits that reads back as the same double. */
static void test_fmt_double(void **state)
{
    static const double v[] = {
        161.55, 0.1, 1e-300, -2.5, 100.00000000000001, 1.0 / 3.0, 5e-324, 1.7976931348623157e308};
    char buf[TC_FMT_DOUBLE_MAX];

    (void)state;
    tc_fmt_double(buf, sizeof(buf), 161.55);
    assert_string_equal(buf, "161.55");
    tc_fmt_double(buf, sizeof(buf), 0.1);
    assert_string_equal(buf, "0.1");
    tc_fmt_double(buf, sizeof(buf), 0.1 + 0.2);
    assert_string_equal(buf, "0.30000000000000004"); /* needs all 17 */
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        int n = tc_fmt_double(buf, sizeof(buf), v[i]);
        assert_true(n > 0 && (size_t)n < sizeof(buf));
        assert_true(strtod(buf, NULL) == v[i]);
    }
    tc_fmt_double(buf, sizeof(buf), NAN);
    assert_string_equal(buf, "nan");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_values),
        cmocka_unit_test(test_strictness),
        cmocka_unit_test(test_duplicates_large_object),
        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_escapes_decode),
        cmocka_unit_test(test_allow_nul),
        cmocka_unit_test(test_caps),
        cmocka_unit_test(test_fmt_double),
        cmocka_unit_test(test_error_offsets),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_escape_all_bytes),
        cmocka_unit_test(test_writer),
        cmocka_unit_test(test_equal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
