/*
 * base64.h -- base64 (RFC 4648), in the two alphabets the project meets: the standard one of HTTP
 * Basic credentials and key files, and the URL-safe one of JWTs, JWKS keys and our signed cursors.
 *
 * Decoding is strict, so that one byte string has one text: characters outside the alphabet, a
 * length no encoding has (4k + 1), '=' anywhere but at the end of a standard text, and leftover
 * bits that are not zero are all refused. Padding is optional on input (RFC 7515 and RFC 4648
 * section 3.2 allow leaving it out); the standard encoder writes it, the URL-safe one does not
 * (JWTs and cursors never carry it).
 */
#ifndef TC_CORE_BASE64_H
#define TC_CORE_BASE64_H

#include <stddef.h>

typedef enum tc_base64_alphabet {
    TC_BASE64_STD, /* A-Z a-z 0-9 + /, encoded with '=' padding */
    TC_BASE64_URL  /* A-Z a-z 0-9 - _, encoded without padding */
} tc_base64_alphabet;

/* Characters tc_base64_encode writes for n bytes (without the NUL). */
#define TC_BASE64_ENCODED_LEN(n) (((n) + 2) / 3 * 4)

/* Encode n bytes at in into out, NUL-terminated; returns the length written. Returns 0 (and
 * writes "" when cap > 0) when out cannot hold the whole text and its NUL. */
size_t tc_base64_encode(tc_base64_alphabet a, const void *in, size_t n, char *out, size_t cap);

/* Decode text[0..n) into out[0..cap); returns the bytes written, or -1 when the text is malformed
 * (see above) or decodes to more than cap bytes. out is not NUL-terminated. */
long tc_base64_decode(tc_base64_alphabet a, const char *text, size_t n, void *out, size_t cap);

#endif
