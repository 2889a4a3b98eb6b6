/*
 * base64.c -- RFC 4648 base64 in the standard and URL-safe alphabets; see base64.h.
 */
#include "core/base64.h"

#include <stdint.h>

static const char tc_base64_std[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char tc_base64_url[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

size_t tc_base64_encode(tc_base64_alphabet a, const void *in, size_t n, char *out, size_t cap)
{
    const char *abc = a == TC_BASE64_URL ? tc_base64_url : tc_base64_std;
    const unsigned char *p = in;
    size_t o = 0, need = a == TC_BASE64_URL ? n / 3 * 4 + (n % 3 ? n % 3 + 1 : 0)
                                            : TC_BASE64_ENCODED_LEN(n);

    if (need >= cap || need < n) { /* need < n: the size overflowed */
        if (cap)
            out[0] = '\0';
        return 0;
    }
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        size_t chars = n - i >= 3 ? 4 : n - i + 1;
        if (i + 1 < n)
            v |= (uint32_t)p[i + 1] << 8;
        if (i + 2 < n)
            v |= p[i + 2];
        for (size_t j = 0; j < 4; j++) {
            if (j < chars)
                out[o++] = abc[(v >> (18 - 6 * j)) & 63];
            else if (a == TC_BASE64_STD)
                out[o++] = '=';
        }
    }
    out[o] = '\0';
    return o;
}

/* The value of c in the alphabet, or -1. */
static int tc_base64_value(tc_base64_alphabet a, char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == (a == TC_BASE64_URL ? '-' : '+'))
        return 62;
    if (c == (a == TC_BASE64_URL ? '_' : '/'))
        return 63;
    return -1;
}

long tc_base64_decode(tc_base64_alphabet a, const char *text, size_t n, void *out, size_t cap)
{
    unsigned char *o = out;
    uint32_t acc = 0;
    size_t len = 0;
    int bits = 0;

    /* Padding: only on a whole standard text, at most two. */
    if (a == TC_BASE64_STD && n % 4 == 0 && n > 0 && text[n - 1] == '=')
        n -= 1 + (size_t)(text[n - 2] == '=');
    if (n % 4 == 1)
        return -1;
    for (size_t i = 0; i < n; i++) {
        int v = tc_base64_value(a, text[i]);
        if (v < 0)
            return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (len >= cap)
                return -1;
            o[len++] = (unsigned char)(acc >> bits);
        }
    }
    if (bits && (acc & ((1u << bits) - 1)))
        return -1;
    return (long)len;
}
