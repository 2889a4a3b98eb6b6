/*
 * json_reading.c -- the JSON reading decoder; see json_reading.h for the contract.
 *
 * Design. The top-level object is parsed by a hand-written loop that knows the schema: each key is
 * scanned once, looked up with a switch on its length (no hashing, no strlen), and its value is
 * parsed straight into the batch column. Values the schema does not interpret (tags, unknown
 * fields, values of the wrong type) go through one iterative validator whose only state is a
 * 64-bit word of open-container kinds, so "[[[[..." of any length costs no stack and stops at
 * TC_JSON_DEPTH_MAX. Raw spans of kept texts are remembered as pointers into the message and
 * copied into the batch arena in a single allocation once the reading is known to be good.
 *
 * Strings are scanned eight bytes at a time with a SWAR test for the bytes that need attention
 * ('"',
 * '\\', control characters, non-ASCII), then a 256-entry class table for the tail; plain ASCII,
 * the bulk of a reading, costs a fraction of a cycle per byte. Escapes are validated while scanning
 * and only decoded when the value is needed (device_id, timestamp, keys that are compared), which
 * is rare.
 *
 * Numbers: a single scan checks the RFC 8259 grammar and accumulates the first 19 significant
 * digits and a decimal exponent. A mantissa up to 2^53 with |exponent| <= 22 is converted exactly
 * by one IEEE multiplication or division (Clinger 1990: both operands are exact doubles, so the
 * correctly rounded operation gives the correctly rounded result). Everything else goes through
 * strtod, which is correctly rounded in glibc.
 */
#include "schema/json_reading.h"

#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/timeutil.h"

/* Clinger's fast path needs double arithmetic without excess precision (SSE2, not x87). */
#if defined(FLT_EVAL_METHOD) && FLT_EVAL_METHOD == 0
#define TC_JSON_FAST_PATH 1
#else
#define TC_JSON_FAST_PATH 0
#endif

/* Significant digits accumulated into a uint64: 10^19 - 1 < 2^64. */
#define TC_JSON_SIG_DIGITS 19

/* Fast-path bounds: integers up to 2^53 and powers of ten up to 10^22 are exact doubles. */
#define TC_JSON_EXACT_MANT_MAX  (UINT64_C(1) << 53)
#define TC_JSON_EXACT_POW10_MAX 22

/* Significant digits kept when a long number is reduced for strtod: the longest decimal midpoint
 * between two doubles has 767 significant digits, so 768 digits plus a sticky digit for the rest
 * round exactly like the full text. */
#define TC_JSON_LONG_DIGITS 768

/* Reduced number: sign, digits, sticky digit, 'e', exponent sign, up to 11 exponent digits, NUL. */
#define TC_JSON_LONG_NUMBER_MAX 800

/* Written exponents saturate here. Any exponent this large dwarfs the digit count of a message
 * below TC_JSON_INPUT_MAX, so the double is already 0 or infinite and jsonb refuses it anyway. */
#define TC_JSON_EXP_SAT INT64_C(1000000000000000)

/* Exponent handed to strtod for a reduced number is clamped here: with at most 769 digits,
 * 10^(+-1e10) is infinity or zero either way, and the clamp keeps the text within
 * TC_JSON_LONG_NUMBER_MAX. */
#define TC_JSON_LONG_EXP_CLAMP INT64_C(10000000000)

/* PostgreSQL numeric input limits that every supported version honours (see json_reading.h):
 * versions before 15 refuse written exponents beyond +-NUMERIC_MAX_PRECISION (1000); the storage
 * format holds 131072 digits before the point (int16 weight of base-10000 digits) and a display
 * scale of 14 bits (16383). */
#define TC_JSON_JSONB_EXP_MAX        1000
#define TC_JSON_JSONB_INT_DIGITS_MAX 131072
#define TC_JSON_JSONB_SCALE_MAX      16383

/* Epoch-millisecond timestamps: 9999-12-31T23:59:59.999Z and 0001-01-01T00:00:00Z, in microseconds
 * (the comparison is done on the exact value, so ".5 ms" past the end is refused too). */
#define TC_JSON_EPOCH_US_MAX     UINT64_C(253402300799999000)
#define TC_JSON_EPOCH_US_MIN_ABS UINT64_C(62135596800000000)

/* Unescaped timestamp strings longer than this cannot be RFC 3339 (the longest form is 35 bytes:
 * 19 fixed + '.' + 9 digits + "+HH:MM"); the cap only bounds the decoding buffer. */
#define TC_JSON_TIMESTAMP_MAX 64

/* Known field names are at most 11 bytes ("temperature"); an escaped key that decodes to more than
 * this cannot be one of them. */
#define TC_JSON_KEY_NAME_MAX 16

/* Bytes of a key or value quoted in a detail message; details describe, they do not copy payloads.
 */
#define TC_JSON_DETAIL_QUOTE_MAX 48

/* Field identities: metrics are their tc_metric index, the rest follow. */
enum {
    TC_JF_UNKNOWN = -1,
    TC_JF_DEVICE_ID = TC_METRIC__COUNT,
    TC_JF_TIMESTAMP,
    TC_JF_TAGS,
};

/* An unknown top-level member, kept as raw spans into the message until the arena copy. */
typedef struct tc_json_member {
    const char *key; /* key text including its quotes */
    const char *val; /* value text */
    uint32_t key_len, val_len;
    uint8_t key_esc; /* the key contains backslash escapes */
} tc_json_member;

typedef struct tc_json_dec {
    const char *buf; /* message start: detail offsets are relative to it */
    const char *p;   /* cursor */
    const char *end; /* one past the last byte */
    char *detail;
    size_t detail_size;
    tc_reject deferred; /* first schema error, reported if the syntax is fine */
} tc_json_dec;

/* A scanned number: its text, digit runs and the fast-path decomposition. */
typedef struct tc_json_num {
    const char *start, *end;        /* whole number text */
    const char *int_dig, *frac_dig; /* digit runs before and after the '.' */
    size_t nint, nfrac;             /* their lengths */
    uint64_t mant;                  /* first TC_JSON_SIG_DIGITS significant digits */
    int64_t exp10;                  /* value = mant * 10^exp10 (exact unless trunc) */
    int64_t exp;                    /* written exponent, saturated at +-TC_JSON_EXP_SAT */
    int neg;                        /* leading '-' */
    int trunc;                      /* nonzero significant digits beyond mant were dropped */
} tc_json_num;

/* 1 for bytes that stop the fast string scan: '"', '\\', control characters, non-ASCII. */
static const uint8_t tc_json_str_stop[256] = {
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x00 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x10 */
    0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x20: '"' */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x30 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x40 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, /* 0x50: '\\' */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x60 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x70 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x80 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x90 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0xa0 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0xb0 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0xc0 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0xd0 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0xe0 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0xf0 */
};

/* Exact powers of ten: every one up to 10^22 is representable (5^22 < 2^53). */
static const double tc_json_pow10[TC_JSON_EXACT_POW10_MAX + 1] = {
    1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
    1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
};

/* ---- diagnostics ---- */

__attribute__((format(printf, 2, 0))) static void tc_json_vdetail(tc_json_dec *d, const char *fmt,
                                                                  va_list ap)
{
    if (d->detail && d->detail_size > 0)
        vsnprintf(d->detail, d->detail_size, fmt, ap);
}

/* Report a syntax error (or any error that ends decoding now) and return r. */
__attribute__((format(printf, 3, 4))) static tc_reject tc_json_fail(tc_json_dec *d, tc_reject r,
                                                                    const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    tc_json_vdetail(d, fmt, ap);
    va_end(ap);
    return r;
}

/* Remember a schema error; only the first one is kept, and only reported if the syntax is fine. */
__attribute__((format(printf, 3, 4))) static void tc_json_defer(tc_json_dec *d, tc_reject r,
                                                                const char *fmt, ...)
{
    va_list ap;

    if (d->deferred != TC_REJECT_NONE)
        return;
    d->deferred = r;
    va_start(ap, fmt);
    tc_json_vdetail(d, fmt, ap);
    va_end(ap);
}

static size_t tc_json_off(const tc_json_dec *d, const void *p)
{
    return (size_t)((const char *)p - d->buf);
}

static tc_reject tc_json_eoi(tc_json_dec *d, const char *what)
{
    return tc_json_fail(d, TC_REJECT_MALFORMED, "unexpected end of input at byte %zu %s",
                        tc_json_off(d, d->end), what);
}

/* Copy s[0..n) for a detail message: printable ASCII only (details end up in logs and in a text
 * column, so they must be valid UTF-8 whatever the payload holds), others as '?', cut with "...".
 */
static const char *tc_json_quote(const char *s, size_t n, char *out, size_t cap)
{
    size_t k = 0, lim = n;

    if (lim > cap - 1) /* cap >= 4 at every call site */
        lim = cap - 4;
    for (size_t i = 0; i < lim; i++) {
        unsigned char c = (unsigned char)s[i];

        out[k++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
    }
    if (lim < n) {
        memcpy(out + k, "...", 3);
        k += 3;
    }
    out[k] = '\0';
    return out;
}

static const char *tc_json_type_name(char c)
{
    switch (c) {
    case '"':
        return "string";
    case '{':
        return "object";
    case '[':
        return "array";
    case 't':
    case 'f':
        return "boolean";
    case 'n':
        return "null";
    default:
        return "number";
    }
}

static const char *tc_json_field_name(int f)
{
    if (f >= 0 && f < TC_METRIC__COUNT)
        return tc_metric_names[f];
    switch (f) {
    case TC_JF_DEVICE_ID:
        return "device_id";
    case TC_JF_TIMESTAMP:
        return "timestamp";
    default:
        return "tags";
    }
}

/* ---- lexical helpers ---- */

static inline const char *tc_json_ws(const char *p, const char *end)
{
    /* Compact JSON has no whitespace: one compare rejects every byte above ' '. */
    while (p < end && (unsigned char)*p <= ' ' &&
           (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
        p++;
    return p;
}

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define TC_JSON_SWAR 1
#else
#define TC_JSON_SWAR 0
#endif

#if TC_JSON_SWAR
/* High bit set in each byte of v that stops a string scan ('"', '\\', < 0x20, >= 0x80). The
 * classic has-zero-byte trick: (x - 0x01..) & ~x flags zero bytes exactly up to the first one;
 * bytes above it may be flagged by the borrow, so only the lowest flag (the first byte in memory on
 * a little-endian machine) is trusted, and that is all the caller uses. */
static inline uint64_t tc_json_swar_stop(uint64_t v)
{
    const uint64_t ones = UINT64_C(0x0101010101010101), highs = UINT64_C(0x8080808080808080);
    uint64_t q = v ^ (ones * '"'), bs = v ^ (ones * '\\');

    return (((q - ones) & ~q) | ((bs - ones) & ~bs) | ((v - ones * 0x20) & ~v) | v) & highs;
}
#endif

static inline int tc_json_is_digit(char c)
{
    return (unsigned)(unsigned char)c - '0' <= 9;
}

static int tc_json_hexval(unsigned char c)
{
    if ((unsigned)c - '0' <= 9)
        return c - '0';
    c |= 0x20; /* 'A'..'F' -> 'a'..'f'; nothing else lands in 'a'..'f' */
    if ((unsigned)c - 'a' <= 5)
        return c - 'a' + 10;
    return -1;
}

/* Four hex digits at p (caller checked they are in bounds); -1 when one is not hex. */
static long tc_json_hex4(const unsigned char *p)
{
    long v = 0;

    for (int i = 0; i < 4; i++) {
        int h = tc_json_hexval(p[i]);

        if (h < 0)
            return -1;
        v = (v << 4) | h;
    }
    return v;
}

/* Validate the escape at *pp (pointing at the backslash) and advance past it; a \u high surrogate
 * must be followed by a \u low surrogate, and \u0000 is refused. */
static tc_reject tc_json_check_escape(tc_json_dec *d, const unsigned char **pp)
{
    const unsigned char *p = *pp, *end = (const unsigned char *)d->end, *q;
    long cp, lo;

    if (end - p < 2)
        return tc_json_eoi(d, "inside a string escape");
    switch (p[1]) {
    case '"':
    case '\\':
    case '/':
    case 'b':
    case 'f':
    case 'n':
    case 'r':
    case 't':
        *pp = p + 2;
        return TC_REJECT_NONE;
    case 'u':
        break;
    default:
        return tc_json_fail(d, TC_REJECT_MALFORMED, "invalid escape sequence at byte %zu",
                            tc_json_off(d, p));
    }
    if (end - p < 6)
        return tc_json_eoi(d, "inside a \\u escape");
    cp = tc_json_hex4(p + 2);
    if (cp < 0)
        return tc_json_fail(d, TC_REJECT_MALFORMED, "invalid \\u escape at byte %zu",
                            tc_json_off(d, p));
    if (cp == 0)
        return tc_json_fail(d, TC_REJECT_INVALID_UTF8,
                            "\\u0000 at byte %zu: NUL cannot be stored in PostgreSQL text/jsonb",
                            tc_json_off(d, p));
    if (cp >= 0xDC00 && cp <= 0xDFFF)
        return tc_json_fail(d, TC_REJECT_INVALID_UTF8, "lone low surrogate \\u%04lx at byte %zu",
                            cp, tc_json_off(d, p));
    if (cp < 0xD800 || cp > 0xDBFF) {
        *pp = p + 6;
        return TC_REJECT_NONE;
    }
    /* High surrogate: the pair's second half must follow immediately. */
    q = p + 6;
    if (end - q < 2)
        return tc_json_eoi(d, "inside a surrogate pair");
    if (q[0] != '\\' || q[1] != 'u')
        return tc_json_fail(d, TC_REJECT_INVALID_UTF8,
                            "high surrogate \\u%04lx at byte %zu not followed by a low surrogate",
                            cp, tc_json_off(d, p));
    if (end - q < 6)
        return tc_json_eoi(d, "inside a surrogate pair");
    lo = tc_json_hex4(q + 2);
    if (lo < 0)
        return tc_json_fail(d, TC_REJECT_MALFORMED, "invalid \\u escape at byte %zu",
                            tc_json_off(d, q));
    if (lo < 0xDC00 || lo > 0xDFFF)
        return tc_json_fail(d, TC_REJECT_INVALID_UTF8,
                            "high surrogate \\u%04lx at byte %zu not followed by a low surrogate",
                            cp, tc_json_off(d, p));
    *pp = q + 6;
    return TC_REJECT_NONE;
}

/* Validate the UTF-8 sequence starting at *pp (a byte >= 0x80) per Unicode Table 3-7 -- which
 * excludes overlongs, surrogates and code points above U+10FFFF -- and advance past it. Input that
 * ends inside the sequence is a truncated message (MALFORMED), not bad UTF-8. */
static tc_reject tc_json_check_utf8(tc_json_dec *d, const unsigned char **pp)
{
    const unsigned char *p = *pp, *end = (const unsigned char *)d->end;
    unsigned c = p[0], n, lo = 0x80, hi = 0xBF;

    if (c < 0xC2 || c > 0xF4)
        goto bad;
    if (c < 0xE0) {
        n = 1;
    } else if (c < 0xF0) {
        n = 2;
        if (c == 0xE0)
            lo = 0xA0; /* overlong */
        else if (c == 0xED)
            hi = 0x9F; /* U+D800..U+DFFF */
    } else {
        n = 3;
        if (c == 0xF0)
            lo = 0x90; /* overlong */
        else if (c == 0xF4)
            hi = 0x8F; /* above U+10FFFF */
    }
    for (unsigned i = 1; i <= n; i++) {
        if (end - p <= (ptrdiff_t)i)
            return tc_json_eoi(d, "inside a string");
        if (p[i] < lo || p[i] > hi)
            goto bad;
        lo = 0x80;
        hi = 0xBF;
    }
    *pp = p + n + 1;
    return TC_REJECT_NONE;
bad:
    return tc_json_fail(d, TC_REJECT_INVALID_UTF8, "invalid UTF-8 at byte %zu", tc_json_off(d, p));
}

/* Scan the string whose opening quote is at d->p; leave d->p just past the closing quote. *esc is
 * set when the contents hold escapes (and so differ from their raw bytes). */
static tc_reject tc_json_scan_string(tc_json_dec *d, int *esc)
{
    const unsigned char *p = (const unsigned char *)d->p + 1;
    const unsigned char *end = (const unsigned char *)d->end;
    int e = 0;
    tc_reject r;

    for (;;) {
#if TC_JSON_SWAR
        /* Eight bytes per step while they are plain; then the table finishes the tail. */
        while (end - p >= 8) {
            uint64_t v, m;

            memcpy(&v, p, sizeof(v));
            m = tc_json_swar_stop(v);
            if (m != 0) {
                p += __builtin_ctzll(m) >> 3;
                goto stop;
            }
            p += 8;
        }
#endif
        while (p < end && !tc_json_str_stop[*p])
            p++;
        if (p >= end)
            return tc_json_eoi(d, "inside a string");
#if TC_JSON_SWAR
    stop:
#endif
        if (*p == '"')
            break;
        if (*p == '\\') {
            e = 1;
            r = tc_json_check_escape(d, &p);
        } else if (*p < 0x20) {
            return tc_json_fail(d, TC_REJECT_MALFORMED,
                                "unescaped control character 0x%02x in a string at byte %zu", *p,
                                tc_json_off(d, p));
        } else {
            r = tc_json_check_utf8(d, &p);
        }
        if (r != TC_REJECT_NONE)
            return r;
    }
    d->p = (const char *)p + 1;
    *esc = e;
    return TC_REJECT_NONE;
}

/* Iterator over the decoded bytes of validated string contents (escapes resolved to UTF-8). */
typedef struct tc_json_uiter {
    const char *p, *end;
    unsigned char pend[4];
    unsigned npend, ipend;
} tc_json_uiter;

/* Next decoded byte, or -1 at the end. The contents were validated by tc_json_scan_string. */
static int tc_json_uiter_next(tc_json_uiter *it)
{
    const unsigned char *p = (const unsigned char *)it->p;
    long cp;

    if (it->ipend < it->npend)
        return it->pend[it->ipend++];
    if (it->p >= it->end)
        return -1;
    if (p[0] != '\\') {
        it->p++;
        return p[0];
    }
    it->p += 2;
    switch (p[1]) {
    case 'b':
        return '\b';
    case 'f':
        return '\f';
    case 'n':
        return '\n';
    case 'r':
        return '\r';
    case 't':
        return '\t';
    case 'u':
        break;
    default: /* '"', '\\', '/' stand for themselves */
        return p[1];
    }
    cp = tc_json_hex4(p + 2);
    it->p += 4;
    if (cp >= 0xD800 && cp <= 0xDBFF) {
        cp = 0x10000 + ((cp - 0xD800) << 10) + (tc_json_hex4(p + 8) - 0xDC00);
        it->p += 6;
    }
    if (cp < 0x80) {
        return (int)cp;
    } else if (cp < 0x800) {
        it->pend[0] = (unsigned char)(0xC0 | (cp >> 6));
        it->pend[1] = (unsigned char)(0x80 | (cp & 0x3F));
        it->npend = 2;
    } else if (cp < 0x10000) {
        it->pend[0] = (unsigned char)(0xE0 | (cp >> 12));
        it->pend[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        it->pend[2] = (unsigned char)(0x80 | (cp & 0x3F));
        it->npend = 3;
    } else {
        it->pend[0] = (unsigned char)(0xF0 | (cp >> 18));
        it->pend[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
        it->pend[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        it->pend[3] = (unsigned char)(0x80 | (cp & 0x3F));
        it->npend = 4;
    }
    it->ipend = 1;
    return it->pend[0];
}

/* Decode validated string contents s[0..n) into out; returns the length, or SIZE_MAX when the
 * decoded string needs more than cap bytes. */
static size_t tc_json_unescape(const char *s, size_t n, char *out, size_t cap)
{
    tc_json_uiter it = {s, s + n, {0}, 0, 0};
    size_t k = 0;
    int c;

    while ((c = tc_json_uiter_next(&it)) >= 0) {
        if (k == cap)
            return SIZE_MAX;
        out[k++] = (char)c;
    }
    return k;
}

/* Do two validated keys (raw contents, with escapes) decode to the same bytes? */
static int tc_json_key_equal(const char *a, size_t an, const char *b, size_t bn)
{
    tc_json_uiter ia = {a, a + an, {0}, 0, 0}, ib = {b, b + bn, {0}, 0, 0};
    int ca, cb;

    do {
        ca = tc_json_uiter_next(&ia);
        cb = tc_json_uiter_next(&ib);
        if (ca != cb)
            return 0;
    } while (ca >= 0);
    return 1;
}

/* Which schema field the decoded key name s[0..n) is: a switch on length, then one memcmp. */
static int tc_json_field_lookup(const char *s, size_t n)
{
    switch (n) {
    case 4:
        if (memcmp(s, "tags", 4) == 0)
            return TC_JF_TAGS;
        break;
    case 7:
        if (memcmp(s, "battery", 7) == 0)
            return TC_M_BATTERY;
        break;
    case 8:
        if (memcmp(s, "humidity", 8) == 0)
            return TC_M_HUMIDITY;
        if (memcmp(s, "pressure", 8) == 0)
            return TC_M_PRESSURE;
        if (memcmp(s, "latitude", 8) == 0)
            return TC_M_LATITUDE;
        break;
    case 9:
        if (memcmp(s, "device_id", 9) == 0)
            return TC_JF_DEVICE_ID;
        if (memcmp(s, "timestamp", 9) == 0)
            return TC_JF_TIMESTAMP;
        if (memcmp(s, "longitude", 9) == 0)
            return TC_M_LONGITUDE;
        break;
    case 11:
        if (memcmp(s, "temperature", 11) == 0)
            return TC_M_TEMPERATURE;
        break;
    default:
        break;
    }
    return TC_JF_UNKNOWN;
}

/* ---- numbers ---- */

/* Scan an RFC 8259 number at d->p (a '-' or a digit) into n and advance past it. */
static tc_reject tc_json_scan_number(tc_json_dec *d, tc_json_num *n)
{
    const char *p = d->p, *end = d->end;
    uint64_t mant = 0;
    int64_t exp10 = 0;
    unsigned nsig = 0;
    int trunc = 0;

    n->start = p;
    n->neg = *p == '-';
    if (n->neg)
        p++;
    if (p >= end)
        return tc_json_eoi(d, "inside a number");
    n->int_dig = p;
    if (*p == '0') {
        p++;
        if (p < end && tc_json_is_digit(*p))
            return tc_json_fail(d, TC_REJECT_MALFORMED, "leading zero in a number at byte %zu",
                                tc_json_off(d, n->start));
    } else if (tc_json_is_digit(*p)) {
        do {
            unsigned dg = (unsigned)(*p - '0');

            if (nsig < TC_JSON_SIG_DIGITS) {
                mant = mant * 10 + dg;
                nsig++;
            } else {
                exp10++;
                trunc |= dg != 0;
            }
            p++;
        } while (p < end && tc_json_is_digit(*p));
    } else {
        return tc_json_fail(d, TC_REJECT_MALFORMED, "invalid number at byte %zu",
                            tc_json_off(d, n->start));
    }
    n->nint = (size_t)(p - n->int_dig);
    n->frac_dig = p;
    n->nfrac = 0;
    if (p < end && *p == '.') {
        p++;
        if (p >= end)
            return tc_json_eoi(d, "inside a number");
        if (!tc_json_is_digit(*p))
            return tc_json_fail(d, TC_REJECT_MALFORMED, "expected a digit after '.' at byte %zu",
                                tc_json_off(d, p));
        n->frac_dig = p;
        do {
            unsigned dg = (unsigned)(*p - '0');

            if (nsig < TC_JSON_SIG_DIGITS) {
                /* Leading zeros of "0.000123" only move the exponent. */
                if (nsig > 0 || dg != 0) {
                    mant = mant * 10 + dg;
                    nsig++;
                }
                exp10--;
            } else {
                trunc |= dg != 0;
            }
            p++;
        } while (p < end && tc_json_is_digit(*p));
        n->nfrac = (size_t)(p - n->frac_dig);
    }
    n->exp = 0;
    if (p < end && (*p == 'e' || *p == 'E')) {
        int eneg = 0;
        int64_t e = 0;

        p++;
        if (p < end && (*p == '+' || *p == '-')) {
            eneg = *p == '-';
            p++;
        }
        if (p >= end)
            return tc_json_eoi(d, "inside a number");
        if (!tc_json_is_digit(*p))
            return tc_json_fail(d, TC_REJECT_MALFORMED,
                                "expected a digit in the exponent at byte %zu", tc_json_off(d, p));
        do {
            if (e < TC_JSON_EXP_SAT)
                e = e * 10 + (*p - '0');
            p++;
        } while (p < end && tc_json_is_digit(*p));
        if (e > TC_JSON_EXP_SAT)
            e = TC_JSON_EXP_SAT;
        n->exp = eneg ? -e : e;
        exp10 += n->exp;
    }
    n->end = p;
    n->mant = mant;
    n->exp10 = exp10;
    n->trunc = trunc;
    d->p = p;
    return TC_REJECT_NONE;
}

/* Digit i of the number's digit string (integer digits, then fraction digits), as 0..9. */
static inline unsigned tc_json_num_digit(const tc_json_num *n, size_t i)
{
    return (unsigned)((i < n->nint ? n->int_dig[i] : n->frac_dig[i - n->nint]) - '0');
}

/* strtod on a number longer than TC_JSON_NUMBER_MAX: rewrite it as <first 768 significant
 * digits><sticky digit>e<exponent> (see TC_JSON_LONG_DIGITS) and convert that. */
static double tc_json_number_long(const tc_json_num *n)
{
    char buf[TC_JSON_LONG_NUMBER_MAX];
    size_t total = n->nint + n->nfrac, k = 0, kept = 0, next = 0;
    int started = 0, sticky = 0;
    int64_t e;
    char ebuf[24];
    int elen;

    if (n->neg)
        buf[k++] = '-';
    for (size_t i = 0; i < total; i++) {
        unsigned dg = tc_json_num_digit(n, i);

        if (!started && dg == 0)
            continue;
        started = 1;
        if (kept < TC_JSON_LONG_DIGITS) {
            buf[k++] = (char)('0' + dg);
            kept++;
            next = i + 1;
        } else if (dg != 0) {
            sticky = 1;
            break;
        }
    }
    if (!started)
        return n->neg ? -0.0 : 0.0;
    /* value = kept digits * 10^(exp - nfrac + digits dropped after them) */
    e = n->exp - (int64_t)n->nfrac + (int64_t)(total - next);
    if (sticky) {
        buf[k++] = '1';
        e--;
    }
    if (e > TC_JSON_LONG_EXP_CLAMP)
        e = TC_JSON_LONG_EXP_CLAMP;
    if (e < -TC_JSON_LONG_EXP_CLAMP)
        e = -TC_JSON_LONG_EXP_CLAMP;
    elen = snprintf(ebuf, sizeof(ebuf), "e%lld", (long long)e);
    memcpy(buf + k, ebuf, (size_t)elen + 1);
    return strtod(buf, NULL);
}

/* The double nearest to the number when Clinger's fast path applies: *out is set and 1 returned;
 * 0 otherwise. The result is at most 2^53 * 10^22, so it never overflows. */
static inline int tc_json_number_fast(const tc_json_num *n, double *out)
{
#if TC_JSON_FAST_PATH
    if (!n->trunc && n->mant <= TC_JSON_EXACT_MANT_MAX && n->exp10 >= -TC_JSON_EXACT_POW10_MAX &&
        n->exp10 <= TC_JSON_EXACT_POW10_MAX) {
        double v = (double)n->mant;

        v = n->exp10 < 0 ? v / tc_json_pow10[-n->exp10] : v * tc_json_pow10[n->exp10];
        *out = n->neg ? -v : v;
        return 1;
    }
#else
    (void)n;
    (void)out;
#endif
    return 0;
}

/* The double nearest to the number, exactly as strtod rounds it (+-inf when it overflows), for
 * numbers the fast path does not take. */
static double tc_json_number_slow(const tc_json_num *n)
{
    size_t len;
    char buf[TC_JSON_NUMBER_MAX];

    if (n->mant == 0) /* every digit is zero (trunc implies a nonzero mantissa) */
        return n->neg ? -0.0 : 0.0;
    len = (size_t)(n->end - n->start);
    if (len >= TC_JSON_NUMBER_MAX)
        return tc_json_number_long(n);
    /* The JSON grammar is a subset of strtod's, and the "C" locale's decimal point is '.'. */
    memcpy(buf, n->start, len);
    buf[len] = '\0';
    return strtod(buf, NULL);
}

/* Epoch milliseconds to microseconds, exactly, rounding toward negative infinity. Returns 0, or -1
 * when the value lies outside years 1..9999. */
static int tc_json_ms_to_us(const tc_json_num *n, int64_t *out)
{
    const uint64_t lim = n->neg ? TC_JSON_EPOCH_US_MIN_ABS : TC_JSON_EPOCH_US_MAX;
    size_t total = n->nint + n->nfrac;
    /* |value in us| = digits * 10^shift; the first total + shift digits form its integer part. */
    int64_t shift = n->exp + 3 - (int64_t)n->nfrac;
    int64_t nip = (int64_t)total + shift;
    uint64_t acc = 0;
    int frac = 0;

    for (size_t i = 0; i < total; i++) {
        unsigned dg = tc_json_num_digit(n, i);

        if ((int64_t)i < nip) {
            if (acc <= lim) /* saturate: once above lim it is out of range anyway */
                acc = acc * 10 + dg;
        } else if (dg != 0) {
            frac = 1;
            break;
        }
    }
    for (int64_t k = 0; k < shift && acc != 0 && acc <= lim; k++)
        acc *= 10;
    if (acc > lim || (acc == lim && frac))
        return -1;
    *out = n->neg ? -(int64_t)acc - frac : (int64_t)acc;
    return 0;
}

/* Numbers inside kept JSON (tags, unknown fields) must also be valid PostgreSQL numeric input. */
static void tc_json_check_jsonb_number(tc_json_dec *d, const tc_json_num *n)
{
    if (n->exp > TC_JSON_JSONB_EXP_MAX || n->exp < -TC_JSON_JSONB_EXP_MAX ||
        (int64_t)n->nint + n->exp > TC_JSON_JSONB_INT_DIGITS_MAX ||
        (int64_t)n->nfrac - n->exp > TC_JSON_JSONB_SCALE_MAX)
        tc_json_defer(d, TC_REJECT_NUMBER_RANGE,
                      "number at byte %zu cannot be stored in PostgreSQL jsonb (exponent beyond "
                      "+-%d or too many digits)",
                      tc_json_off(d, n->start), TC_JSON_JSONB_EXP_MAX);
}

/* ---- generic values ---- */

static tc_reject tc_json_literal(tc_json_dec *d)
{
    const char *lit = *d->p == 't' ? "true" : *d->p == 'f' ? "false" : "null";
    size_t n = *d->p == 'f' ? 5 : 4, avail = (size_t)(d->end - d->p);

    if (avail < n && memcmp(d->p, lit, avail) == 0)
        return tc_json_eoi(d, "inside a literal");
    if (avail < n || memcmp(d->p, lit, n) != 0)
        return tc_json_fail(d, TC_REJECT_MALFORMED, "invalid literal at byte %zu",
                            tc_json_off(d, d->p));
    d->p += n;
    return TC_REJECT_NONE;
}

/* Scan an object member's key and the ':' after it; d->p is at the key's quote on entry and at the
 * value (whitespace skipped) on return. */
static tc_reject tc_json_member_key(tc_json_dec *d)
{
    int esc;
    tc_reject r;

    if (d->p >= d->end)
        return tc_json_eoi(d, "where a key was expected");
    if (*d->p != '"')
        return tc_json_fail(d, TC_REJECT_MALFORMED, "expected a key string at byte %zu",
                            tc_json_off(d, d->p));
    r = tc_json_scan_string(d, &esc);
    if (r != TC_REJECT_NONE)
        return r;
    d->p = tc_json_ws(d->p, d->end);
    if (d->p >= d->end)
        return tc_json_eoi(d, "where ':' was expected");
    if (*d->p != ':')
        return tc_json_fail(d, TC_REJECT_MALFORMED, "expected ':' after key at byte %zu",
                            tc_json_off(d, d->p));
    d->p = tc_json_ws(d->p + 1, d->end);
    return TC_REJECT_NONE;
}

/*
 * Validate one JSON value at d->p (whitespace already skipped) and advance past it. depth is the
 * number of containers already open around it. Iterative: the kinds of the containers this call
 * opened are bits of one word (bit i set = level i is an array), which TC_JSON_DEPTH_MAX <= 64
 * makes enough.
 */
static tc_reject tc_json_skip_value(tc_json_dec *d, unsigned depth)
{
    uint64_t arrays = 0;
    unsigned lvl = 0;
    tc_json_num num;
    tc_reject r;
    int esc;

    _Static_assert(TC_JSON_DEPTH_MAX <= 64, "container kinds live in one 64-bit word");
    for (;;) {
        /* A value is expected at d->p. */
        if (d->p >= d->end)
            return tc_json_eoi(d, "where a value was expected");
        switch (*d->p) {
        case '{':
        case '[': {
            int is_array = *d->p == '[';

            if (depth + lvl + 1 > TC_JSON_DEPTH_MAX)
                return tc_json_fail(d, TC_REJECT_TOO_DEEP,
                                    "nesting deeper than %d levels at byte %zu", TC_JSON_DEPTH_MAX,
                                    tc_json_off(d, d->p));
            if (is_array)
                arrays |= UINT64_C(1) << lvl;
            else
                arrays &= ~(UINT64_C(1) << lvl);
            lvl++;
            d->p = tc_json_ws(d->p + 1, d->end);
            if (d->p < d->end && *d->p == (is_array ? ']' : '}')) {
                d->p++;
                lvl--;
                break; /* an empty container is a complete value */
            }
            if (!is_array) {
                r = tc_json_member_key(d);
                if (r != TC_REJECT_NONE)
                    return r;
            }
            continue; /* its first element */
        }
        case '"':
            r = tc_json_scan_string(d, &esc);
            if (r != TC_REJECT_NONE)
                return r;
            break;
        case 't':
        case 'f':
        case 'n':
            r = tc_json_literal(d);
            if (r != TC_REJECT_NONE)
                return r;
            break;
        case '-':
        case '0':
        case '1':
        case '2':
        case '3':
        case '4':
        case '5':
        case '6':
        case '7':
        case '8':
        case '9':
            r = tc_json_scan_number(d, &num);
            if (r != TC_REJECT_NONE)
                return r;
            tc_json_check_jsonb_number(d, &num);
            break;
        default:
            return tc_json_fail(d, TC_REJECT_MALFORMED, "unexpected character at byte %zu",
                                tc_json_off(d, d->p));
        }
        /* A value is complete: close finished containers or move on to the next element. */
        for (;;) {
            int in_array;

            if (lvl == 0)
                return TC_REJECT_NONE;
            in_array = (int)((arrays >> (lvl - 1)) & 1);
            d->p = tc_json_ws(d->p, d->end);
            if (d->p >= d->end)
                return tc_json_eoi(d, in_array ? "inside an array" : "inside an object");
            if (*d->p == ',') {
                d->p = tc_json_ws(d->p + 1, d->end);
                if (!in_array) {
                    r = tc_json_member_key(d);
                    if (r != TC_REJECT_NONE)
                        return r;
                }
                break;
            }
            if (*d->p != (in_array ? ']' : '}'))
                return tc_json_fail(d, TC_REJECT_MALFORMED, "expected ',' or '%c' at byte %zu",
                                    in_array ? ']' : '}', tc_json_off(d, d->p));
            d->p++;
            lvl--;
        }
    }
}

/* A field of the wrong type: validate the value (syntax still wins) and remember the error. */
static tc_reject tc_json_wrong_type(tc_json_dec *d, int field, const char *want)
{
    char c = *d->p;
    tc_reject r = tc_json_skip_value(d, 1);

    if (r != TC_REJECT_NONE)
        return r;
    tc_json_defer(d, TC_REJECT_WRONG_TYPE, "field \"%s\" must be %s, got %s",
                  tc_json_field_name(field), want, tc_json_type_name(c));
    return TC_REJECT_NONE;
}

/* ---- the reading ---- */

/* The reading's fields while the object is parsed; strings point into the message or into the
 * decoder's own buffers until the final arena copy. */
typedef struct tc_json_reading {
    unsigned seen; /* bit per known field: duplicate detection */
    const char *dev;
    size_t dev_len;
    int dev_set;      /* a non-null device_id was given */
    int time_set;     /* a non-null timestamp was given */
    const char *tags; /* raw object text, or NULL */
    size_t tags_len;
    unsigned nextra;
    tc_json_member extra[TC_JSON_EXTRA_FIELDS_MAX];
    char dev_buf[TC_DEVICE_ID_MAX];     /* device_id when it had escapes */
    char ts_buf[TC_JSON_TIMESTAMP_MAX]; /* timestamp string when it had escapes */
} tc_json_reading;

static tc_reject tc_json_device_id(tc_json_dec *d, tc_json_reading *rd)
{
    const char *s = d->p + 1;
    size_t n;
    int esc;
    tc_reject r;

    if (*d->p == 'n')
        return tc_json_literal(d);
    if (*d->p != '"')
        return tc_json_wrong_type(d, TC_JF_DEVICE_ID, "a string");
    r = tc_json_scan_string(d, &esc);
    if (r != TC_REJECT_NONE)
        return r;
    n = (size_t)(d->p - 1 - s);
    if (esc) {
        n = tc_json_unescape(s, n, rd->dev_buf, sizeof(rd->dev_buf));
        s = rd->dev_buf;
    }
    if (n == SIZE_MAX || n > TC_DEVICE_ID_MAX) {
        tc_json_defer(d, TC_REJECT_INVALID_DEVICE_ID, "field \"device_id\" is longer than %d bytes",
                      TC_DEVICE_ID_MAX);
        return TC_REJECT_NONE;
    }
    if (n == 0) {
        tc_json_defer(d, TC_REJECT_INVALID_DEVICE_ID, "field \"device_id\" is empty");
        return TC_REJECT_NONE;
    }
    /* Raw control characters were refused by the scanner; only escapes can produce them. */
    for (size_t i = 0; esc && i < n; i++) {
        if ((unsigned char)s[i] < 0x20) {
            tc_json_defer(d, TC_REJECT_INVALID_DEVICE_ID,
                          "field \"device_id\" contains control character 0x%02x",
                          (unsigned char)s[i]);
            return TC_REJECT_NONE;
        }
    }
    rd->dev = s;
    rd->dev_len = n;
    rd->dev_set = 1;
    return TC_REJECT_NONE;
}

static tc_reject tc_json_timestamp(tc_json_dec *d, tc_json_reading *rd, int64_t *out)
{
    char q[TC_JSON_DETAIL_QUOTE_MAX];
    tc_json_num num;
    tc_reject r;

    if (*d->p == '"') {
        const char *s = d->p + 1;
        size_t n;
        int esc;

        r = tc_json_scan_string(d, &esc);
        if (r != TC_REJECT_NONE)
            return r;
        n = (size_t)(d->p - 1 - s);
        if (esc) {
            n = tc_json_unescape(s, n, rd->ts_buf, sizeof(rd->ts_buf));
            s = rd->ts_buf;
        }
        if (n == SIZE_MAX || tc_time_parse_rfc3339(s, n, out) != TC_OK) {
            tc_json_defer(d, TC_REJECT_INVALID_TIMESTAMP,
                          "field \"timestamp\" is not an RFC 3339 date-time: \"%s\"",
                          tc_json_quote(s, n == SIZE_MAX ? sizeof(rd->ts_buf) : n, q, sizeof(q)));
            return TC_REJECT_NONE;
        }
        rd->time_set = 1;
        return TC_REJECT_NONE;
    }
    if (*d->p == '-' || tc_json_is_digit(*d->p)) {
        r = tc_json_scan_number(d, &num);
        if (r != TC_REJECT_NONE)
            return r;
        if (tc_json_ms_to_us(&num, out) != 0) {
            tc_json_defer(d, TC_REJECT_INVALID_TIMESTAMP,
                          "field \"timestamp\" (epoch milliseconds) %s is outside years 1..9999",
                          tc_json_quote(num.start, (size_t)(num.end - num.start), q, sizeof(q)));
            return TC_REJECT_NONE;
        }
        rd->time_set = 1;
        return TC_REJECT_NONE;
    }
    if (*d->p == 'n')
        return tc_json_literal(d);
    return tc_json_wrong_type(d, TC_JF_TIMESTAMP, "a string or a number");
}

static tc_reject tc_json_metric(tc_json_dec *d, tc_batch *b, size_t row, int m)
{
    char q[TC_JSON_DETAIL_QUOTE_MAX];
    tc_json_num num;
    double v;
    tc_reject r;

    if (*d->p == '-' || tc_json_is_digit(*d->p)) {
        r = tc_json_scan_number(d, &num);
        if (r != TC_REJECT_NONE)
            return r;
        if (!tc_json_number_fast(&num, &v) && isinf(v = tc_json_number_slow(&num))) {
            tc_json_defer(d, TC_REJECT_NUMBER_RANGE, "field \"%s\" does not fit a double: %s",
                          tc_metric_names[m],
                          tc_json_quote(num.start, (size_t)(num.end - num.start), q, sizeof(q)));
            return TC_REJECT_NONE;
        }
        b->metric[m][row] = v;
        b->present[m][row] = 1;
        return TC_REJECT_NONE;
    }
    if (*d->p == 'n')
        return tc_json_literal(d); /* null: the column stays absent */
    return tc_json_wrong_type(d, m, "a number");
}

static tc_reject tc_json_tags(tc_json_dec *d, tc_json_reading *rd)
{
    const char *start = d->p;
    tc_reject r;

    if (*d->p == 'n')
        return tc_json_literal(d);
    if (*d->p != '{')
        return tc_json_wrong_type(d, TC_JF_TAGS, "an object");
    r = tc_json_skip_value(d, 1);
    if (r != TC_REJECT_NONE)
        return r;
    rd->tags = start;
    rd->tags_len = (size_t)(d->p - start);
    return TC_REJECT_NONE;
}

/* An unknown member: validate its value and keep both raw texts for b->extra. */
static tc_reject tc_json_unknown(tc_json_dec *d, tc_json_reading *rd, const char *key,
                                 size_t key_len, int key_esc)
{
    char q[TC_JSON_DETAIL_QUOTE_MAX];
    const char *val = d->p;
    tc_json_member *m;
    tc_reject r;

    if (rd->nextra == TC_JSON_EXTRA_FIELDS_MAX)
        return tc_json_fail(d, TC_REJECT_MALFORMED,
                            "more than %d unknown fields (the limit on fields outside the schema)",
                            TC_JSON_EXTRA_FIELDS_MAX);
    for (unsigned i = 0; i < rd->nextra; i++) {
        const tc_json_member *o = &rd->extra[i];
        int same;

        if (!key_esc && !o->key_esc)
            same = o->key_len == key_len && memcmp(o->key, key, key_len) == 0;
        else
            same = tc_json_key_equal(o->key + 1, o->key_len - 2, key + 1, key_len - 2);
        if (same) {
            tc_json_defer(d, TC_REJECT_DUPLICATE_FIELD, "duplicate field \"%s\"",
                          tc_json_quote(key + 1, key_len - 2, q, sizeof(q)));
            break;
        }
    }
    r = tc_json_skip_value(d, 1);
    if (r != TC_REJECT_NONE)
        return r;
    m = &rd->extra[rd->nextra++];
    m->key = key;
    m->key_len = (uint32_t)key_len;
    m->key_esc = (uint8_t)key_esc;
    m->val = val;
    m->val_len = (uint32_t)(d->p - val);
    return TC_REJECT_NONE;
}

/* Top level is not an object: say whether it is valid JSON of another type or not JSON at all. */
static tc_reject tc_json_not_object(tc_json_dec *d)
{
    char c = *d->p;
    tc_reject r;

    if (d->end - d->p >= 3 && memcmp(d->p, "\xEF\xBB\xBF", 3) == 0)
        return tc_json_fail(d, TC_REJECT_MALFORMED,
                            "byte order mark at byte %zu: not allowed in JSON messages (RFC 8259)",
                            tc_json_off(d, d->p));
    r = tc_json_skip_value(d, 0);
    if (r != TC_REJECT_NONE)
        return r;
    d->p = tc_json_ws(d->p, d->end);
    if (d->p != d->end)
        return tc_json_fail(d, TC_REJECT_MALFORMED, "unexpected data after the value at byte %zu",
                            tc_json_off(d, d->p));
    return tc_json_fail(d, TC_REJECT_NOT_OBJECT, "message is a JSON %s, not an object",
                        tc_json_type_name(c));
}

/* Copy the reading's strings into the arena (one allocation) and fill the row's slices. */
static tc_reject tc_json_store(tc_json_dec *d, tc_batch *b, size_t row, const tc_json_reading *rd)
{
    size_t extra_len = 0, need = rd->dev_len + 1;
    char *mem, *w;

    if (rd->tags)
        need += rd->tags_len + 1;
    if (rd->nextra > 0) {
        extra_len = 1; /* '{'; each member then adds key ':' value and a ',' or the final '}' */
        for (unsigned i = 0; i < rd->nextra; i++)
            extra_len += (size_t)rd->extra[i].key_len + 1 + rd->extra[i].val_len + 1;
        need += extra_len + 1;
    }
    mem = tc_arena_alloc(&b->arena, need);
    if (!mem) {
        if (b->arena.used == 0)
            return tc_json_fail(d, TC_REJECT_TOO_LARGE,
                                "reading needs %zu bytes of batch memory, more than an empty "
                                "batch can hold",
                                need);
        return tc_json_fail(d, TC_JSON_BATCH_FULL, "batch memory is full: flush and decode again");
    }
    w = mem;
    memcpy(w, rd->dev, rd->dev_len);
    w[rd->dev_len] = '\0';
    b->device_id[row] = (tc_slice){w, (uint32_t)rd->dev_len};
    w += rd->dev_len + 1;
    if (rd->tags) {
        memcpy(w, rd->tags, rd->tags_len);
        w[rd->tags_len] = '\0';
        b->tags[row] = (tc_slice){w, (uint32_t)rd->tags_len};
        w += rd->tags_len + 1;
    }
    if (rd->nextra > 0) {
        char *x = w;

        *w++ = '{';
        for (unsigned i = 0; i < rd->nextra; i++) {
            const tc_json_member *m = &rd->extra[i];

            memcpy(w, m->key, m->key_len);
            w += m->key_len;
            *w++ = ':';
            memcpy(w, m->val, m->val_len);
            w += m->val_len;
            *w++ = ',';
        }
        w[-1] = '}';
        *w = '\0';
        b->extra[row] = (tc_slice){x, (uint32_t)extra_len};
    }
    return TC_REJECT_NONE;
}

tc_reject tc_json_reading_decode(tc_batch *b, const char *buf, size_t len, char *detail,
                                 size_t detail_size)
{
    tc_json_dec d = {buf, buf, buf, detail, detail_size, TC_REJECT_NONE};
    tc_json_reading rd;
    size_t row = b->n;
    int64_t time_us = 0;
    tc_reject r;

    if (detail && detail_size > 0)
        detail[0] = '\0';
    if (len == 0)
        return tc_json_fail(&d, TC_REJECT_EMPTY, "empty message");
    if (len > TC_JSON_INPUT_MAX)
        return tc_json_fail(&d, TC_REJECT_TOO_LARGE, "message of %zu bytes is above %zu", len,
                            TC_JSON_INPUT_MAX);
    if (row >= b->cap)
        return tc_json_fail(&d, TC_JSON_BATCH_FULL,
                            "batch has no free row: flush and decode again");
    d.end = buf + len; /* only now: buf may be NULL when len is 0 */
    rd.seen = 0;
    rd.dev = NULL;
    rd.dev_len = 0;
    rd.dev_set = 0;
    rd.time_set = 0;
    rd.tags = NULL;
    rd.tags_len = 0;
    rd.nextra = 0;

    d.p = tc_json_ws(d.p, d.end);
    if (d.p == d.end)
        return tc_json_fail(&d, TC_REJECT_MALFORMED, "message is only whitespace");
    if (*d.p != '{')
        return tc_json_not_object(&d);
    d.p = tc_json_ws(d.p + 1, d.end);
    if (d.p < d.end && *d.p == '}') {
        d.p++;
    } else {
        for (;;) {
            const char *key = d.p;
            int key_esc, field;
            size_t key_len;

            if (d.p >= d.end)
                return tc_json_eoi(&d, "where a key was expected");
            if (*d.p != '"')
                return tc_json_fail(&d, TC_REJECT_MALFORMED, "expected a key string at byte %zu",
                                    tc_json_off(&d, d.p));
            r = tc_json_scan_string(&d, &key_esc);
            if (r != TC_REJECT_NONE)
                return r;
            key_len = (size_t)(d.p - key);
            if (!key_esc) {
                field = tc_json_field_lookup(key + 1, key_len - 2);
            } else {
                char name[TC_JSON_KEY_NAME_MAX];
                size_t n = tc_json_unescape(key + 1, key_len - 2, name, sizeof(name));

                field = n == SIZE_MAX ? TC_JF_UNKNOWN : tc_json_field_lookup(name, n);
            }
            d.p = tc_json_ws(d.p, d.end);
            if (d.p >= d.end)
                return tc_json_eoi(&d, "where ':' was expected");
            if (*d.p != ':')
                return tc_json_fail(&d, TC_REJECT_MALFORMED, "expected ':' after key at byte %zu",
                                    tc_json_off(&d, d.p));
            d.p = tc_json_ws(d.p + 1, d.end);
            if (d.p >= d.end)
                return tc_json_eoi(&d, "where a value was expected");

            if (field != TC_JF_UNKNOWN) {
                if (rd.seen & (1u << field))
                    tc_json_defer(&d, TC_REJECT_DUPLICATE_FIELD, "duplicate field \"%s\"",
                                  tc_json_field_name(field));
                rd.seen |= 1u << field;
            }
            switch (field) {
            case TC_JF_UNKNOWN:
                r = tc_json_unknown(&d, &rd, key, key_len, key_esc);
                break;
            case TC_JF_DEVICE_ID:
                r = tc_json_device_id(&d, &rd);
                break;
            case TC_JF_TIMESTAMP:
                r = tc_json_timestamp(&d, &rd, &time_us);
                break;
            case TC_JF_TAGS:
                r = tc_json_tags(&d, &rd);
                break;
            default:
                r = tc_json_metric(&d, b, row, field);
                break;
            }
            if (r != TC_REJECT_NONE)
                return r;

            d.p = tc_json_ws(d.p, d.end);
            if (d.p >= d.end)
                return tc_json_eoi(&d, "where ',' or '}' was expected");
            if (*d.p == '}') {
                d.p++;
                break;
            }
            if (*d.p != ',')
                return tc_json_fail(&d, TC_REJECT_MALFORMED, "expected ',' or '}' at byte %zu",
                                    tc_json_off(&d, d.p));
            d.p = tc_json_ws(d.p + 1, d.end);
        }
    }
    d.p = tc_json_ws(d.p, d.end);
    if (d.p != d.end)
        return tc_json_fail(&d, TC_REJECT_MALFORMED, "unexpected data after the object at byte %zu",
                            tc_json_off(&d, d.p));

    if (d.deferred != TC_REJECT_NONE)
        return d.deferred;
    if (!rd.dev_set)
        return tc_json_fail(&d, TC_REJECT_MISSING_FIELD, "field \"device_id\" is %s",
                            (rd.seen & (1u << TC_JF_DEVICE_ID)) ? "null" : "missing");
    if (!rd.time_set)
        return tc_json_fail(&d, TC_REJECT_MISSING_FIELD, "field \"timestamp\" is %s",
                            (rd.seen & (1u << TC_JF_TIMESTAMP)) ? "null" : "missing");
    b->time_us[row] = time_us;
    return tc_json_store(&d, b, row, &rd);
}
