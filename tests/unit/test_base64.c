/*
 * test_base64.c -- base64 against RFC 4648's test vectors (section 10) and its strictness rules.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/base64.h"

/* RFC 4648, section 10: BASE64("") = "" ... BASE64("foobar") = "Zm9vYmFy". */
static const char *const vectors[][2] = {
    {"", ""},
    {"f", "Zg=="},
    {"fo", "Zm8="},
    {"foo", "Zm9v"},
    {"foob", "Zm9vYg=="},
    {"fooba", "Zm9vYmE="},
    {"foobar", "Zm9vYmFy"},
};

static void test_rfc4648_vectors(void **state)
{
    char text[64];
    unsigned char bytes[64];

    (void)state;
    for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
        const char *raw = vectors[i][0], *enc = vectors[i][1];
        size_t n = strlen(raw), nopad = strcspn(enc, "=");
        assert_int_equal(tc_base64_encode(TC_BASE64_STD, raw, n, text, sizeof(text)), strlen(enc));
        assert_string_equal(text, enc);
        /* The URL-safe encoder leaves the padding out (these have no + or /). */
        assert_int_equal(tc_base64_encode(TC_BASE64_URL, raw, n, text, sizeof(text)), nopad);
        assert_memory_equal(text, enc, nopad);
        assert_int_equal(tc_base64_decode(TC_BASE64_STD, enc, strlen(enc), bytes, sizeof(bytes)),
                         (long)n);
        assert_memory_equal(bytes, raw, n);
        /* Unpadded standard text, and URL-safe text, decode the same. */
        assert_int_equal(tc_base64_decode(TC_BASE64_STD, enc, nopad, bytes, sizeof(bytes)),
                         (long)n);
        assert_int_equal(tc_base64_decode(TC_BASE64_URL, enc, nopad, bytes, sizeof(bytes)),
                         (long)n);
        assert_memory_equal(bytes, raw, n);
    }
}

static void test_alphabets(void **state)
{
    static const unsigned char hi[] = {0xfb, 0xff, 0xbf};
    char text[16];
    unsigned char bytes[8];

    (void)state;
    /* 0xfbffbf is 62 63 62 63 in sextets. */
    tc_base64_encode(TC_BASE64_STD, hi, 3, text, sizeof(text));
    assert_string_equal(text, "+/+/");
    tc_base64_encode(TC_BASE64_URL, hi, 3, text, sizeof(text));
    assert_string_equal(text, "-_-_");
    assert_int_equal(tc_base64_decode(TC_BASE64_URL, "-_-_", 4, bytes, sizeof(bytes)), 3);
    assert_memory_equal(bytes, hi, 3);
    /* Each alphabet refuses the other's two characters. */
    assert_int_equal(tc_base64_decode(TC_BASE64_STD, "-_-_", 4, bytes, sizeof(bytes)), -1);
    assert_int_equal(tc_base64_decode(TC_BASE64_URL, "+/+/", 4, bytes, sizeof(bytes)), -1);
}

static void test_strictness(void **state)
{
    unsigned char bytes[8];

    (void)state;
    /* A length no encoding has. */
    assert_int_equal(tc_base64_decode(TC_BASE64_STD, "Zm9vY", 5, bytes, sizeof(bytes)), -1);
    /* Leftover bits not zero: "Zh" would be a second spelling of "f" ("Zg"). */
    assert_int_equal(tc_base64_decode(TC_BASE64_STD, "Zh==", 4, bytes, sizeof(bytes)), -1);
    assert_int_equal(tc_base64_decode(TC_BASE64_URL, "Zh", 2, bytes, sizeof(bytes)), -1);
    /* Padding in the middle, three of it, or on URL-safe text. */
    assert_int_equal(tc_base64_decode(TC_BASE64_STD, "Zg==Zg==", 8, bytes, sizeof(bytes)), -1);
    assert_int_equal(tc_base64_decode(TC_BASE64_STD, "Z===", 4, bytes, sizeof(bytes)), -1);
    assert_int_equal(tc_base64_decode(TC_BASE64_URL, "Zg==", 4, bytes, sizeof(bytes)), -1);
    /* Blanks and NULs are not base64. */
    assert_int_equal(tc_base64_decode(TC_BASE64_STD, "Zm9 v", 5, bytes, sizeof(bytes)), -1);
    assert_int_equal(tc_base64_decode(TC_BASE64_STD, "Zm\0v", 4, bytes, sizeof(bytes)), -1);
}

static void test_bounds(void **state)
{
    char text[9];
    unsigned char bytes[5];

    (void)state;
    /* "foobar" needs 8 characters and the NUL: 9 fits, 8 does not. */
    assert_int_equal(tc_base64_encode(TC_BASE64_STD, "foobar", 6, text, 9), 8);
    assert_int_equal(tc_base64_encode(TC_BASE64_STD, "foobar", 6, text, 8), 0);
    assert_string_equal(text, "");
    /* Decoding into too small a buffer fails rather than cutting. */
    assert_int_equal(tc_base64_decode(TC_BASE64_STD, "Zm9vYmFy", 8, bytes, 5), -1);
    assert_int_equal(tc_base64_decode(TC_BASE64_STD, "Zm9vYmE=", 8, bytes, 5), 5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc4648_vectors),
        cmocka_unit_test(test_alphabets),
        cmocka_unit_test(test_strictness),
        cmocka_unit_test(test_bounds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
