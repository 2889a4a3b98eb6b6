/*
 * avro_reading.c -- the Avro reading decoder and the schema cache; see avro_reading.h.
 *
 * Design. The writer schema is parsed once (avro_schema.c: libavro and our own model agree on it)
 * and compiled into a plan: one step per top-level writer field, naming the column it feeds and,
 * for a union, the kind of value behind each branch index. Decoding a reading walks the steps over
 * the bytes: metrics are read straight into their column, device_id and timestamp are checked in
 * place, and the values kept as JSON (tags, unknown fields) are rendered by one recursive walker
 * over the writer's schema nodes, bounded by TC_AVRO_DEPTH_MAX. That walker runs twice for kept
 * values: once to validate and measure the JSON text, once to write it into a single arena
 * allocation made only after the whole reading is accepted, exactly like the JSON decoder, so
 * rejected readings cost no arena space and the hot path does no malloc.
 */
#include "schema/avro_reading.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "core/json.h"
#include "core/log.h"
#include "core/timeutil.h"
#include "schema/avro_schema.h"
#include "schema/registry_client.h"

/* Event-time bounds (years 1..9999), in microseconds, as the JSON decoder applies them. */
#define TC_AVRO_US_MAX INT64_C(253402300799999000)
#define TC_AVRO_US_MIN (-INT64_C(62135596800000000))

/* Kinds of scalar values a top-level step reads (per union branch). */
enum {
    TC_AV_NULL,
    TC_AV_INT,
    TC_AV_LONG,
    TC_AV_FLOAT,
    TC_AV_DOUBLE,
    TC_AV_STRING,
    TC_AV_BYTES,
    TC_AV_MAP
};

/* Columns a step feeds. */
enum { TC_AS_DEVICE, TC_AS_TIME, TC_AS_METRIC, TC_AS_TAGS, TC_AS_EXTRA };

/* Timestamp units of a long. */
enum { TC_AT_MILLIS, TC_AT_MICROS, TC_AT_NANOS };

#define TC_AVRO_BRANCHES_MAX 8

typedef struct tc_avro_step {
    uint8_t col;     /* TC_AS_* */
    uint8_t metric;  /* TC_AS_METRIC: which one */
    uint8_t unit;    /* TC_AS_TIME: unit of a long */
    uint8_t nbranch; /* 0: not a union, kind is the value's kind */
    uint8_t kind;
    uint8_t branch[TC_AVRO_BRANCHES_MAX];
    const tc_avro_node *node; /* TC_AS_EXTRA: the writer type; TC_AS_TAGS: the map */
    const char *name;         /* field name */
    size_t name_len;
} tc_avro_step;

struct tc_avro_plan {
    tc_avro_schema *schema;
    tc_avro_step *steps;
    size_t nsteps;
    unsigned nextra;
};

/* ---- decoding primitives ---- */

typedef struct tc_avro_dec {
    const unsigned char *buf, *p, *end;
    char *detail;
    size_t detail_size;
    tc_reject deferred;
    const char *field; /* top-level field being decoded, for details */
    size_t zw_items;   /* zero-width array items declared so far */
} tc_avro_dec;

/* Output of the JSON renderer: w NULL counts only. */
typedef struct tc_avro_out {
    char *w;
    size_t n;
} tc_avro_out;

__attribute__((format(printf, 3, 4))) static tc_reject tc_avro_fail(tc_avro_dec *d, tc_reject r,
                                                                    const char *fmt, ...)
{
    va_list ap;
    size_t k;

    if (!d->detail || d->detail_size == 0)
        return r;
    va_start(ap, fmt);
    vsnprintf(d->detail, d->detail_size, fmt, ap);
    va_end(ap);
    k = strlen(d->detail);
    if (d->field && k + 1 < d->detail_size)
        snprintf(d->detail + k, d->detail_size - k, " (field \"%s\")", d->field);
    return r;
}

__attribute__((format(printf, 3, 4))) static void tc_avro_defer(tc_avro_dec *d, tc_reject r,
                                                                const char *fmt, ...)
{
    va_list ap;

    if (d->deferred != TC_REJECT_NONE)
        return;
    d->deferred = r;
    if (!d->detail || d->detail_size == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(d->detail, d->detail_size, fmt, ap);
    va_end(ap);
}

static size_t tc_avro_off(const tc_avro_dec *d)
{
    return (size_t)(d->p - d->buf);
}

static tc_reject tc_avro_trunc(tc_avro_dec *d, const char *what)
{
    return tc_avro_fail(d, TC_REJECT_MALFORMED, "truncated body: %s at byte %zu runs past the end",
                        what, tc_avro_off(d));
}

static tc_reject tc_avro_long_slow(tc_avro_dec *d, int64_t *out);

/* A zigzag varint; one-byte values (most lengths, counts and indexes) take the inline path. */
static inline tc_reject tc_avro_long(tc_avro_dec *d, int64_t *out)
{
    if (d->p < d->end && *d->p < 0x80) {
        unsigned v = *d->p++;

        *out = (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
        return TC_REJECT_NONE;
    }
    return tc_avro_long_slow(d, out);
}

static tc_reject tc_avro_long_slow(tc_avro_dec *d, int64_t *out)
{
    const unsigned char *p = d->p;
    uint64_t v = 0;
    unsigned shift = 0;

    for (int i = 0;; i++) {
        unsigned b;

        if (p >= d->end)
            return tc_avro_trunc(d, "varint");
        b = *p++;
        if (i == 9 && b > 1)
            return tc_avro_fail(d, TC_REJECT_MALFORMED, "varint at byte %zu overflows 64 bits",
                                tc_avro_off(d));
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            break;
        shift += 7;
    }
    d->p = p;
    *out = (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
    return TC_REJECT_NONE;
}

static tc_reject tc_avro_int(tc_avro_dec *d, int64_t *out)
{
    const unsigned char *at = d->p;
    tc_reject r = tc_avro_long(d, out);

    if (r == TC_REJECT_NONE && (*out < INT32_MIN || *out > INT32_MAX)) {
        d->p = at;
        return tc_avro_fail(d, TC_REJECT_MALFORMED, "int varint at byte %zu overflows 32 bits",
                            tc_avro_off(d));
    }
    return r;
}

static tc_reject tc_avro_double(tc_avro_dec *d, double *out)
{
    uint64_t u = 0;

    if (d->end - d->p < 8)
        return tc_avro_trunc(d, "double");
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    memcpy(&u, d->p, 8);
#else
    for (int i = 7; i >= 0; i--)
        u = u << 8 | d->p[i];
#endif
    memcpy(out, &u, 8);
    d->p += 8;
    return TC_REJECT_NONE;
}

static tc_reject tc_avro_float(tc_avro_dec *d, float *out)
{
    uint32_t u;

    if (d->end - d->p < 4)
        return tc_avro_trunc(d, "float");
    u = (uint32_t)d->p[0] | (uint32_t)d->p[1] << 8 | (uint32_t)d->p[2] << 16 |
        (uint32_t)d->p[3] << 24;
    memcpy(out, &u, 4);
    d->p += 4;
    return TC_REJECT_NONE;
}

/* A length-prefixed string or bytes: s and n point into the message. */
static inline tc_reject tc_avro_bytes(tc_avro_dec *d, const char *what, const char **s, size_t *n)
{
    const unsigned char *at = d->p;
    int64_t len;
    tc_reject r;

    *s = NULL;
    *n = 0;
    r = tc_avro_long(d, &len);
    if (r != TC_REJECT_NONE)
        return r;
    if (len < 0) {
        d->p = at;
        return tc_avro_fail(d, TC_REJECT_MALFORMED, "negative %s length %lld at byte %zu", what,
                            (long long)len, tc_avro_off(d));
    }
    if ((uint64_t)len > (uint64_t)(d->end - d->p)) {
        d->p = at;
        return tc_avro_fail(d, TC_REJECT_MALFORMED,
                            "truncated body: %s of %lld bytes at byte %zu runs past the end", what,
                            (long long)len, tc_avro_off(d));
    }
    *s = (const char *)d->p;
    *n = (size_t)len;
    d->p += len;
    return TC_REJECT_NONE;
}

/* 1 for the bytes tc_avro_plain accepts. */
static const uint8_t tc_avro_plain_tab[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
};

/* Length of the prefix of s[0..n) made of bytes 0x20..0x7f other than '"' and '\\': ASCII that
 * needs no JSON escape. Eight bytes at a time with the classic SWAR tests (exact about whether a
 * word holds such a byte; the word is then finished byte by byte). */
static inline size_t tc_avro_plain(const char *s, size_t n)
{
    const uint64_t ones = UINT64_C(0x0101010101010101), high = UINT64_C(0x8080808080808080);
    size_t i = 0;

    for (; i + 8 <= n; i += 8) {
        uint64_t v, q, b;

        memcpy(&v, s + i, 8);
        q = v ^ (ones * '"');
        b = v ^ (ones * '\\');
        if (((v | ((v - ones * 0x20) & ~v) | ((q - ones) & ~q) | ((b - ones) & ~b)) & high) != 0)
            break;
    }
    if (i + 4 <= n) {
        uint32_t v, q, b;
        const uint32_t o4 = 0x01010101u, h4 = 0x80808080u;

        memcpy(&v, s + i, 4);
        q = v ^ (o4 * '"');
        b = v ^ (o4 * '\\');
        if (((v | ((v - o4 * 0x20) & ~v) | ((q - o4) & ~q) | ((b - o4) & ~b)) & h4) == 0)
            i += 4;
    }
    while (i < n && tc_avro_plain_tab[(unsigned char)s[i]])
        i++;
    return i;
}

/* A string, checked: valid UTF-8 and, when json, no U+0000. *plain (may be NULL) tells whether it
 * needs no JSON escape at all. */
static inline tc_reject tc_avro_string(tc_avro_dec *d, const char **s, size_t *n, int json,
                                       int *plain)
{
    const unsigned char *at = d->p;
    tc_reject r = tc_avro_bytes(d, "string", s, n);
    int pl;

    if (r != TC_REJECT_NONE)
        return r;
    pl = tc_avro_plain(*s, *n) == *n;
    if (plain)
        *plain = pl;
    if (pl)
        return TC_REJECT_NONE;
    if (!tc_json_utf8_valid(*s, *n)) {
        d->p = at;
        return tc_avro_fail(d, TC_REJECT_INVALID_UTF8, "string at byte %zu is not valid UTF-8",
                            tc_avro_off(d));
    }
    if (json && memchr(*s, 0, *n)) {
        d->p = at;
        return tc_avro_fail(d, TC_REJECT_INVALID_UTF8,
                            "string at byte %zu contains U+0000, which JSON text cannot store",
                            tc_avro_off(d));
    }
    return TC_REJECT_NONE;
}

/* A union branch index in 0..n. */
static tc_reject tc_avro_branch(tc_avro_dec *d, size_t n, size_t *out)
{
    const unsigned char *at = d->p;
    int64_t i;
    tc_reject r = tc_avro_long(d, &i);

    if (r != TC_REJECT_NONE)
        return r;
    if (i < 0 || (uint64_t)i >= n) {
        d->p = at;
        return tc_avro_fail(d, TC_REJECT_MALFORMED,
                            "union index %lld at byte %zu is out of range 0..%zu", (long long)i,
                            tc_avro_off(d), n - 1);
    }
    *out = (size_t)i;
    return TC_REJECT_NONE;
}

/* ---- JSON rendering of kept values ---- */

static inline void tc_avro_put(tc_avro_out *o, const char *s, size_t n)
{
    if (o->w)
        memcpy(o->w + o->n, s, n);
    o->n += n;
}

static void tc_avro_put_esc(tc_avro_out *o, unsigned c)
{
    static const char hex[] = "0123456789abcdef";
    char e[6] = {'\\', 'u', '0', '0', hex[(c >> 4) & 15], hex[c & 15]};

    switch (c) {
    case '"':
        tc_avro_put(o, "\\\"", 2);
        break;
    case '\\':
        tc_avro_put(o, "\\\\", 2);
        break;
    case '\n':
        tc_avro_put(o, "\\n", 2);
        break;
    case '\r':
        tc_avro_put(o, "\\r", 2);
        break;
    case '\t':
        tc_avro_put(o, "\\t", 2);
        break;
    default:
        tc_avro_put(o, e, 6);
        break;
    }
}

/* A UTF-8 string (validated, no NUL) as a JSON string. */
static void tc_avro_put_str(tc_avro_out *o, const char *s, size_t n, int plain)
{
    size_t run = 0, i;

    if (plain) {
        if (o->w) {
            o->w[o->n] = '"';
            memcpy(o->w + o->n + 1, s, n);
            o->w[o->n + 1 + n] = '"';
        }
        o->n += n + 2;
        return;
    }
    i = tc_avro_plain(s, n);
    tc_avro_put(o, "\"", 1);
    for (; i < n; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        tc_avro_put(o, s + run, i - run);
        tc_avro_put_esc(o, c);
        run = i + 1;
    }
    tc_avro_put(o, s + run, n - run);
    tc_avro_put(o, "\"", 1);
}

/* Bytes as a JSON string of code points U+0001..U+00FF, 0x00 as U+2400 (see the header). */
static void tc_avro_put_bytes(tc_avro_out *o, const char *s, size_t n)
{
    tc_avro_put(o, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c == 0)
            tc_avro_put(o, "\\u2400", 6);
        else if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\')
            tc_avro_put(o, (const char *)&s[i], 1);
        else
            tc_avro_put_esc(o, c);
    }
    tc_avro_put(o, "\"", 1);
}

static void tc_avro_put_long(tc_avro_out *o, int64_t v)
{
    char buf[24], *e = buf + sizeof(buf), *p = e;
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;

    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        *--p = '-';
    tc_avro_put(o, p, (size_t)(e - p));
}

static void tc_avro_put_double(tc_avro_out *o, double v, int single)
{
    char buf[40];
    int k = 0;

    if (isnan(v)) {
        tc_avro_put(o, "\"NaN\"", 5);
        return;
    }
    if (isinf(v)) {
        if (v < 0)
            tc_avro_put(o, "\"-Infinity\"", 11);
        else
            tc_avro_put(o, "\"Infinity\"", 10);
        return;
    }
    /* Shortest form that reads back as the same value (float values: as the same float). */
    for (int prec = single ? 6 : 15; prec <= 17; prec++) {
        k = snprintf(buf, sizeof(buf), "%.*g", prec, v);
        if (single ? strtof(buf, NULL) == (float)v : strtod(buf, NULL) == v)
            break;
    }
    tc_avro_put(o, buf, (size_t)k);
}

/* 1 when values of n take no bytes (null, fixed(0), records of those). */
static int tc_avro_zero_width(const tc_avro_node *n, unsigned depth)
{
    if (depth > TC_AVRO_DEPTH_MAX)
        return 0;
    switch (n->kind) {
    case TC_AVRO_NULL:
        return 1;
    case TC_AVRO_FIXED:
        return n->size == 0;
    case TC_AVRO_RECORD:
        for (size_t i = 0; i < n->nfields; i++)
            if (!tc_avro_zero_width(n->fields[i].type, depth + 1))
                return 0;
        return 1;
    default:
        return 0;
    }
}

/* Next block count of an array or map: 0 ends; a negative count is followed by a byte size. */
static tc_reject tc_avro_block(tc_avro_dec *d, const tc_avro_node *items, int64_t *count)
{
    const unsigned char *at = d->p;
    tc_reject r = tc_avro_long(d, count);
    int64_t size;

    if (r != TC_REJECT_NONE)
        return r;
    if (*count < 0) {
        if (*count == INT64_MIN) {
            d->p = at;
            return tc_avro_fail(d, TC_REJECT_MALFORMED, "block count at byte %zu is out of range",
                                tc_avro_off(d));
        }
        *count = -*count;
        r = tc_avro_long(d, &size);
        if (r != TC_REJECT_NONE)
            return r;
        if (size < 0 || (uint64_t)size > (uint64_t)(d->end - d->p)) {
            d->p = at;
            return tc_avro_fail(d, TC_REJECT_MALFORMED,
                                "block byte size %lld at byte %zu is negative or past the end",
                                (long long)size, tc_avro_off(d));
        }
    }
    if (*count == 0)
        return TC_REJECT_NONE;
    if (items && tc_avro_zero_width(items, 0)) {
        if ((uint64_t)*count > TC_AVRO_ITEMS_MAX - d->zw_items) {
            d->p = at;
            return tc_avro_fail(d, TC_REJECT_MALFORMED,
                                "block of %lld items at byte %zu: more than %d items that take "
                                "no bytes",
                                (long long)*count, tc_avro_off(d), TC_AVRO_ITEMS_MAX);
        }
        d->zw_items += (size_t)*count;
    } else if ((uint64_t)*count > (uint64_t)(d->end - d->p)) {
        size_t left = (size_t)(d->end - d->p);

        d->p = at;
        return tc_avro_fail(d, TC_REJECT_MALFORMED,
                            "truncated body: block of %lld items at byte %zu, only %zu bytes left",
                            (long long)*count, tc_avro_off(d), left);
    }
    return TC_REJECT_NONE;
}

static tc_reject tc_avro_render(tc_avro_dec *d, tc_avro_out *o, const tc_avro_node *n,
                                unsigned depth)
{
    const char *s;
    size_t len, bi;
    int64_t v;
    int plain;
    double dv;
    float fv;
    tc_reject r;

    switch (n->kind) {
    case TC_AVRO_NULL:
        tc_avro_put(o, "null", 4);
        return TC_REJECT_NONE;
    case TC_AVRO_BOOLEAN:
        if (d->p >= d->end)
            return tc_avro_trunc(d, "boolean");
        if (*d->p > 1)
            return tc_avro_fail(d, TC_REJECT_MALFORMED, "boolean byte 0x%02x at byte %zu", *d->p,
                                tc_avro_off(d));
        if (*d->p++)
            tc_avro_put(o, "true", 4);
        else
            tc_avro_put(o, "false", 5);
        return TC_REJECT_NONE;
    case TC_AVRO_INT:
    case TC_AVRO_LONG:
        r = n->kind == TC_AVRO_INT ? tc_avro_int(d, &v) : tc_avro_long(d, &v);
        if (r == TC_REJECT_NONE)
            tc_avro_put_long(o, v);
        return r;
    case TC_AVRO_FLOAT:
        r = tc_avro_float(d, &fv);
        if (r == TC_REJECT_NONE)
            tc_avro_put_double(o, (double)fv, 1);
        return r;
    case TC_AVRO_DOUBLE:
        r = tc_avro_double(d, &dv);
        if (r == TC_REJECT_NONE)
            tc_avro_put_double(o, dv, 0);
        return r;
    case TC_AVRO_STRING:
        r = tc_avro_string(d, &s, &len, 1, &plain);
        if (r == TC_REJECT_NONE)
            tc_avro_put_str(o, s, len, plain);
        return r;
    case TC_AVRO_BYTES:
        r = tc_avro_bytes(d, "bytes", &s, &len);
        if (r == TC_REJECT_NONE)
            tc_avro_put_bytes(o, s, len);
        return r;
    case TC_AVRO_FIXED:
        if ((uint64_t)n->size > (uint64_t)(d->end - d->p))
            return tc_avro_trunc(d, "fixed");
        tc_avro_put_bytes(o, (const char *)d->p, (size_t)n->size);
        d->p += n->size;
        return TC_REJECT_NONE;
    case TC_AVRO_ENUM:
        r = tc_avro_branch(d, n->nsymbols, &bi);
        if (r == TC_REJECT_NONE) {
            tc_avro_put(o, "\"", 1);
            tc_avro_put(o, n->symbols[bi], strlen(n->symbols[bi]));
            tc_avro_put(o, "\"", 1);
        }
        return r;
    case TC_AVRO_UNION:
        r = tc_avro_branch(d, n->nbranches, &bi);
        if (r != TC_REJECT_NONE)
            return r;
        return tc_avro_render(d, o, n->branches[bi], depth);
    default:
        break;
    }
    if (depth >= TC_AVRO_DEPTH_MAX)
        return tc_avro_fail(d, TC_REJECT_MALFORMED, "value at byte %zu nests deeper than %d levels",
                            tc_avro_off(d), TC_AVRO_DEPTH_MAX);
    if (n->kind == TC_AVRO_RECORD) {
        tc_avro_put(o, "{", 1);
        for (size_t i = 0; i < n->nfields; i++) {
            if (i)
                tc_avro_put(o, ",", 1);
            tc_avro_put(o, "\"", 1);
            tc_avro_put(o, n->fields[i].name, strlen(n->fields[i].name));
            tc_avro_put(o, "\":", 2);
            r = tc_avro_render(d, o, n->fields[i].type, depth + 1);
            if (r != TC_REJECT_NONE)
                return r;
        }
        tc_avro_put(o, "}", 1);
        return TC_REJECT_NONE;
    }
    /* array or map */
    tc_avro_put(o, n->kind == TC_AVRO_ARRAY ? "[" : "{", 1);
    for (int first = 1;;) {
        int64_t count;

        r = tc_avro_block(d, n->kind == TC_AVRO_ARRAY ? n->items : NULL, &count);
        if (r != TC_REJECT_NONE)
            return r;
        if (count == 0)
            break;
        for (int64_t i = 0; i < count; i++, first = 0) {
            if (!first)
                tc_avro_put(o, ",", 1);
            if (n->kind == TC_AVRO_MAP) {
                r = tc_avro_string(d, &s, &len, 1, &plain);
                if (r != TC_REJECT_NONE)
                    return r;
                tc_avro_put_str(o, s, len, plain);
                tc_avro_put(o, ":", 1);
            }
            if (n->items->kind == TC_AVRO_STRING) { /* tags: map<string>, without a call */
                r = tc_avro_string(d, &s, &len, 1, &plain);
                if (r == TC_REJECT_NONE)
                    tc_avro_put_str(o, s, len, plain);
            } else {
                r = tc_avro_render(d, o, n->items, depth + 1);
            }
            if (r != TC_REJECT_NONE)
                return r;
        }
    }
    tc_avro_put(o, n->kind == TC_AVRO_ARRAY ? "]" : "}", 1);
    return TC_REJECT_NONE;
}

/* ---- the reading ---- */

int tc_avro_frame(const char *buf, size_t len, int32_t *schema_id)
{
    if (!buf || len < TC_AVRO_FRAME_BYTES || buf[0] != 0)
        return 0;
    if (schema_id) {
        const unsigned char *u = (const unsigned char *)buf;
        *schema_id = (int32_t)((uint32_t)u[1] << 24 | (uint32_t)u[2] << 16 | (uint32_t)u[3] << 8 |
                               (uint32_t)u[4]);
    }
    return 1;
}

static tc_reject tc_avro_time(tc_avro_dec *d, const tc_avro_step *s, int kind, int64_t *out,
                              int *set)
{
    const char *str;
    size_t n;
    int64_t v, us;
    tc_reject r;

    if (kind == TC_AV_STRING) {
        r = tc_avro_bytes(d, "string", &str, &n);
        if (r != TC_REJECT_NONE)
            return r;
        if (tc_time_parse_rfc3339(str, n, out) != TC_OK) {
            char q[49];
            size_t k = 0;

            for (size_t i = 0; i < n && k + 1 < sizeof(q); i++)
                q[k++] = str[i] >= 0x20 && str[i] < 0x7f && str[i] != '"' ? str[i] : '?';
            q[k] = '\0';
            tc_avro_defer(d, TC_REJECT_INVALID_TIMESTAMP,
                          "field \"timestamp\" is not an RFC 3339 date-time: \"%s\"", q);
            return TC_REJECT_NONE;
        }
        *set = 1;
        return TC_REJECT_NONE;
    }
    r = tc_avro_long(d, &v);
    if (r != TC_REJECT_NONE)
        return r;
    if (s->unit == TC_AT_MICROS) {
        us = v;
    } else if (s->unit == TC_AT_NANOS) {
        us = v / 1000 - (v % 1000 < 0);
    } else if (v > TC_AVRO_US_MAX / 1000 || v < TC_AVRO_US_MIN / 1000) {
        us = INT64_MAX;
    } else {
        us = v * 1000;
    }
    if (us > TC_AVRO_US_MAX || us < TC_AVRO_US_MIN) {
        static const char *const units[] = {"milliseconds", "microseconds", "nanoseconds"};
        tc_avro_defer(d, TC_REJECT_INVALID_TIMESTAMP,
                      "field \"timestamp\" (epoch %s) %lld is outside years 1..9999",
                      units[s->unit], (long long)v);
        return TC_REJECT_NONE;
    }
    *out = us;
    *set = 1;
    return TC_REJECT_NONE;
}

static tc_reject tc_avro_device(tc_avro_dec *d, int kind, const char **dev, size_t *dev_len,
                                int *set)
{
    const char *s;
    size_t n;
    tc_reject r = kind == TC_AV_STRING ? tc_avro_string(d, &s, &n, 0, NULL)
                                       : tc_avro_bytes(d, "bytes", &s, &n);

    if (r != TC_REJECT_NONE)
        return r;
    if (kind == TC_AV_BYTES && !tc_json_utf8_valid(s, n))
        return tc_avro_fail(d, TC_REJECT_INVALID_UTF8, "device_id bytes are not valid UTF-8");
    if (n == 0) {
        tc_avro_defer(d, TC_REJECT_INVALID_DEVICE_ID, "field \"device_id\" is empty");
        return TC_REJECT_NONE;
    }
    if (n > TC_DEVICE_ID_MAX) {
        tc_avro_defer(d, TC_REJECT_INVALID_DEVICE_ID, "field \"device_id\" is longer than %d bytes",
                      TC_DEVICE_ID_MAX);
        return TC_REJECT_NONE;
    }
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)s[i] < 0x20) {
            tc_avro_defer(d, TC_REJECT_INVALID_DEVICE_ID,
                          "field \"device_id\" contains control character 0x%02x",
                          (unsigned char)s[i]);
            return TC_REJECT_NONE;
        }
    }
    *dev = s;
    *dev_len = n;
    *set = 1;
    return TC_REJECT_NONE;
}

static tc_reject tc_avro_metric(tc_avro_dec *d, int kind, double *out, uint8_t *present)
{
    int64_t v;
    float f;
    tc_reject r;

    switch (kind) {
    case TC_AV_NULL:
        return TC_REJECT_NONE;
    case TC_AV_INT:
    case TC_AV_LONG:
        r = kind == TC_AV_INT ? tc_avro_int(d, &v) : tc_avro_long(d, &v);
        if (r != TC_REJECT_NONE)
            return r;
        *out = (double)v;
        break;
    case TC_AV_FLOAT:
        r = tc_avro_float(d, &f);
        if (r != TC_REJECT_NONE)
            return r;
        *out = (double)f;
        break;
    default:
        r = tc_avro_double(d, out);
        if (r != TC_REJECT_NONE)
            return r;
        break;
    }
    *present = 1;
    return TC_REJECT_NONE;
}

tc_reject tc_avro_reading_decode(tc_batch *b, const tc_avro_plan *plan, const char *buf, size_t len,
                                 char *detail, size_t detail_size)
{
    tc_avro_dec d;
    size_t row = b->n, tags_len = 0, extra_len = 0, need;
    const unsigned char *tags_at = NULL, *extra_at[TC_JSON_EXTRA_FIELDS_MAX];
    const tc_avro_node *tags_node = NULL;
    const char *dev = NULL;
    size_t dev_len = 0;
    int dev_set = 0, time_set = 0, dev_null = 0, time_null = 0;
    int64_t time_us = 0;
    unsigned nextra = 0;
    char *mem, *w;
    tc_reject r;

    if (detail && detail_size > 0)
        detail[0] = '\0';
    memset(&d, 0, sizeof(d));
    d.detail = detail;
    d.detail_size = detail_size;
    if (len > TC_JSON_INPUT_MAX)
        return tc_avro_fail(&d, TC_REJECT_TOO_LARGE, "message of %zu bytes is above %zu", len,
                            TC_JSON_INPUT_MAX);
    if (row >= b->cap)
        return tc_avro_fail(&d, TC_JSON_BATCH_FULL,
                            "batch has no free row: flush and decode again");
    d.buf = d.p = (const unsigned char *)(buf ? buf : ""); /* NULL only with len 0 */
    d.end = d.p + (buf ? len : 0);

    for (size_t i = 0; i < plan->nsteps; i++) {
        const tc_avro_step *s = &plan->steps[i];
        int kind = s->kind;

        d.field = s->name;
        if (s->nbranch) {
            size_t bi;

            r = tc_avro_branch(&d, s->nbranch, &bi);
            if (r != TC_REJECT_NONE)
                return r;
            kind = s->branch[bi];
        }
        switch (s->col) {
        case TC_AS_METRIC:
            r = tc_avro_metric(&d, kind, &b->metric[s->metric][row], &b->present[s->metric][row]);
            break;
        case TC_AS_DEVICE:
            if (kind == TC_AV_NULL) {
                dev_null = 1;
                r = TC_REJECT_NONE;
            } else {
                r = tc_avro_device(&d, kind, &dev, &dev_len, &dev_set);
            }
            break;
        case TC_AS_TIME:
            if (kind == TC_AV_NULL) {
                time_null = 1;
                r = TC_REJECT_NONE;
            } else {
                r = tc_avro_time(&d, s, kind, &time_us, &time_set);
            }
            break;
        case TC_AS_TAGS: {
            tc_avro_out o = {NULL, 0};

            r = TC_REJECT_NONE;
            if (kind == TC_AV_NULL)
                break;
            tags_node = s->node;
            tags_at = d.p;
            r = tc_avro_render(&d, &o, tags_node, 0);
            tags_len = o.n;
            break;
        }
        default: {
            tc_avro_out o = {NULL, 0};

            extra_at[nextra++] = d.p;
            r = tc_avro_render(&d, &o, s->node, 1);
            extra_len += s->name_len + 4 + o.n; /* "name": value and , or { */
            break;
        }
        }
        if (r != TC_REJECT_NONE)
            return r;
    }
    d.field = NULL;
    if (d.p != d.end)
        return tc_avro_fail(&d, TC_REJECT_MALFORMED, "%zu bytes after the record at byte %zu",
                            (size_t)(d.end - d.p), tc_avro_off(&d));
    if (d.deferred != TC_REJECT_NONE)
        return d.deferred;
    if (!dev_set)
        return tc_avro_fail(&d, TC_REJECT_MISSING_FIELD, "field \"device_id\" is %s",
                            dev_null ? "null" : "missing");
    if (!time_set)
        return tc_avro_fail(&d, TC_REJECT_MISSING_FIELD, "field \"timestamp\" is %s",
                            time_null ? "null" : "missing");

    need = dev_len + 1;
    if (tags_at)
        need += tags_len + 1;
    if (nextra)
        need += extra_len + 2;
    if (tags_len > UINT32_MAX || extra_len + 1 > UINT32_MAX)
        return tc_avro_fail(&d, TC_REJECT_TOO_LARGE, "kept JSON text is longer than 4 GiB");
    mem = tc_arena_alloc(&b->arena, need);
    if (!mem) {
        if (b->arena.used == 0)
            return tc_avro_fail(&d, TC_REJECT_TOO_LARGE,
                                "reading needs %zu bytes of batch memory, more than an empty "
                                "batch can hold",
                                need);
        return tc_avro_fail(&d, TC_JSON_BATCH_FULL, "batch memory is full: flush and decode again");
    }
    w = mem;
    memcpy(w, dev, dev_len);
    w[dev_len] = '\0';
    b->device_id[row] = (tc_slice){w, (uint32_t)dev_len};
    w += dev_len + 1;
    b->time_us[row] = time_us;
    /* Second pass over the kept values: the same bytes, so no error can occur now. */
    d.detail = NULL;
    d.zw_items = 0;
    if (tags_at) {
        tc_avro_out o = {w, 0};

        d.p = tags_at;
        (void)tc_avro_render(&d, &o, tags_node, 0);
        w[o.n] = '\0';
        b->tags[row] = (tc_slice){w, (uint32_t)o.n};
        w += o.n + 1;
    }
    if (nextra) {
        tc_avro_out o = {w, 0};
        unsigned k = 0;

        for (size_t i = 0; i < plan->nsteps; i++) {
            const tc_avro_step *s = &plan->steps[i];

            if (s->col != TC_AS_EXTRA)
                continue;
            tc_avro_put(&o, k ? ",\"" : "{\"", 2);
            tc_avro_put(&o, s->name, s->name_len);
            tc_avro_put(&o, "\":", 2);
            d.p = extra_at[k++];
            (void)tc_avro_render(&d, &o, s->node, 1);
        }
        tc_avro_put(&o, "}", 1);
        w[o.n] = '\0';
        b->extra[row] = (tc_slice){w, (uint32_t)o.n};
    }
    return TC_REJECT_NONE;
}

/* ---- the plan ---- */

static int tc_avro_kind_of(const tc_avro_node *n)
{
    switch (n->kind) {
    case TC_AVRO_NULL:
        return TC_AV_NULL;
    case TC_AVRO_INT:
        return TC_AV_INT;
    case TC_AVRO_LONG:
        return TC_AV_LONG;
    case TC_AVRO_FLOAT:
        return TC_AV_FLOAT;
    case TC_AVRO_DOUBLE:
        return TC_AV_DOUBLE;
    case TC_AVRO_STRING:
        return TC_AV_STRING;
    case TC_AVRO_BYTES:
        return TC_AV_BYTES;
    case TC_AVRO_MAP:
        return TC_AV_MAP;
    default:
        return -1;
    }
}

/* The logicalType of the long (branch) of a field's type in the schema's JSON, or NULL. */
static const char *tc_avro_long_logical(const tc_json *type)
{
    if (!type)
        return NULL;
    if (type->type == TC_JSON_ARRAY) {
        for (size_t i = 0; i < type->len; i++) {
            const char *l = tc_avro_long_logical(type->u.items[i]);
            if (l)
                return l;
        }
        return NULL;
    }
    if (type->type == TC_JSON_OBJECT && tc_json_string(tc_json_get(type, "type")) &&
        !strcmp(tc_json_string(tc_json_get(type, "type")), "long"))
        return tc_json_string(tc_json_get(type, "logicalType"));
    return NULL;
}

static const tc_json *tc_avro_json_field_type(const tc_json *root, const char *name)
{
    const tc_json *fields = tc_json_get(root, "fields");

    for (size_t i = 0; fields && fields->type == TC_JSON_ARRAY && i < fields->len; i++) {
        const char *fn = tc_json_string(tc_json_get(fields->u.items[i], "name"));
        if (fn && !strcmp(fn, name))
            return tc_json_get(fields->u.items[i], "type");
    }
    return NULL;
}

/* A logicalType anywhere in a field's type (its branches, items, values, nested fields) that the
 * pipeline cannot store as what it means, or NULL. The columns and the extra object hold numbers,
 * strings and JSON; a decimal's bytes, a date's day count or a time's microseconds would be stored
 * as their underlying bytes or number, a silently wrong value. A uuid is its string. Bounded by the
 * schema parser's depth cap. */
static const char *tc_avro_unstorable_logical(const tc_json *type)
{
    const char *lt;

    if (!type)
        return NULL;
    if (type->type == TC_JSON_ARRAY) {
        for (size_t i = 0; i < type->len; i++)
            if ((lt = tc_avro_unstorable_logical(type->u.items[i])))
                return lt;
        return NULL;
    }
    if (type->type != TC_JSON_OBJECT)
        return NULL;
    lt = tc_json_string(tc_json_get(type, "logicalType"));
    if (lt && strcmp(lt, "uuid"))
        return lt;
    if ((lt = tc_avro_unstorable_logical(tc_json_get(type, "items"))) ||
        (lt = tc_avro_unstorable_logical(tc_json_get(type, "values"))))
        return lt;
    if (tc_json_get(type, "fields") && tc_json_get(type, "fields")->type == TC_JSON_ARRAY) {
        const tc_json *f = tc_json_get(type, "fields");
        for (size_t i = 0; i < f->len; i++)
            if ((lt = tc_avro_unstorable_logical(tc_json_get(f->u.items[i], "type"))))
                return lt;
    }
    return tc_avro_unstorable_logical(tc_json_get(type, "type"));
}

/* Fill a step's kinds from the field type; allowed is a bit set of TC_AV_* kinds. */
static int tc_avro_step_kinds(tc_avro_step *s, const tc_avro_node *t, unsigned allowed,
                              const char *want, char *errstr, size_t n)
{
    const tc_avro_node *const *br = &t;
    size_t nb = 1;

    if (t->kind == TC_AVRO_UNION) {
        br = t->branches;
        nb = t->nbranches;
        if (nb > TC_AVRO_BRANCHES_MAX || nb == 0) {
            tc_err_set(TC_ERR_INVALID, errstr, n,
                       "field \"%s\": union of %zu branches cannot be %s", s->name, nb, want);
            return -1;
        }
        s->nbranch = (uint8_t)nb;
    }
    for (size_t i = 0; i < nb; i++) {
        int k = tc_avro_kind_of(br[i]);

        if (k < 0 || !(allowed & (1u << k))) {
            tc_err_set(TC_ERR_INVALID, errstr, n,
                       "field \"%s\" has type %s, which cannot be read as %s", s->name,
                       tc_avro_kind_name(br[i]->kind), want);
            return -1;
        }
        if (s->nbranch)
            s->branch[i] = (uint8_t)k;
        else
            s->kind = (uint8_t)k;
    }
    return 0;
}

tc_avro_plan *tc_avro_plan_new(const char *writer_schema_json, size_t len, char *errstr, size_t n)
{
    const unsigned num = 1u << TC_AV_INT | 1u << TC_AV_LONG | 1u << TC_AV_FLOAT |
                         1u << TC_AV_DOUBLE | 1u << TC_AV_NULL;
    tc_avro_plan *plan;
    const tc_avro_node *root;
    tc_json_doc *doc = NULL;
    int has_dev = 0, has_time = 0;
    tc_err err;

    if (errstr && n)
        errstr[0] = '\0';
    plan = calloc(1, sizeof(*plan));
    if (!plan) {
        tc_err_set(TC_ERR_NOMEM, errstr, n, "out of memory");
        return NULL;
    }
    plan->schema = tc_avro_schema_parse(writer_schema_json, len, &err, errstr, n);
    if (!plan->schema)
        goto fail;
    root = tc_avro_schema_root(plan->schema);
    if (root->kind != TC_AVRO_RECORD) {
        tc_err_set(TC_ERR_INVALID, errstr, n, "writer schema is a %s, not a record",
                   tc_avro_kind_name(root->kind));
        goto fail;
    }
    doc = tc_json_parse(writer_schema_json, len, NULL, NULL, errstr, n);
    plan->steps = calloc(root->nfields ? root->nfields : 1, sizeof(*plan->steps));
    if (!doc || !plan->steps) {
        if (doc)
            tc_err_set(TC_ERR_NOMEM, errstr, n, "out of memory");
        goto fail;
    }
    plan->nsteps = root->nfields;
    for (size_t i = 0; i < root->nfields; i++) {
        const tc_avro_field *f = &root->fields[i];
        tc_avro_step *s = &plan->steps[i];
        int m = tc_metric_lookup(f->name, strlen(f->name));
        int rc = 0;

        s->name = f->name;
        s->name_len = strlen(f->name);
        s->node = f->type;
        if (strcmp(f->name, "timestamp")) {
            const char *lt =
                tc_avro_unstorable_logical(tc_avro_json_field_type(tc_json_root(doc), f->name));
            if (lt) {
                tc_err_set(TC_ERR_INVALID, errstr, n,
                           "field \"%s\" has logicalType %s, which the pipeline cannot store as "
                           "such yet (it would be stored as its underlying Avro type)",
                           f->name, lt);
                goto fail;
            }
        }
        if (m >= 0) {
            s->col = TC_AS_METRIC;
            s->metric = (uint8_t)m;
            rc = tc_avro_step_kinds(s, f->type, num, "a double", errstr, n);
        } else if (!strcmp(f->name, "device_id")) {
            s->col = TC_AS_DEVICE;
            has_dev = 1;
            rc = tc_avro_step_kinds(s, f->type,
                                    1u << TC_AV_NULL | 1u << TC_AV_STRING | 1u << TC_AV_BYTES,
                                    "a string", errstr, n);
        } else if (!strcmp(f->name, "timestamp")) {
            const char *lt =
                tc_avro_long_logical(tc_avro_json_field_type(tc_json_root(doc), "timestamp"));

            s->col = TC_AS_TIME;
            has_time = 1;
            s->unit = TC_AT_MILLIS;
            if (lt && (!strcmp(lt, "timestamp-micros") || !strcmp(lt, "local-timestamp-micros")))
                s->unit = TC_AT_MICROS;
            else if (lt && (!strcmp(lt, "timestamp-nanos") || !strcmp(lt, "local-timestamp-nanos")))
                s->unit = TC_AT_NANOS;
            rc = tc_avro_step_kinds(s, f->type,
                                    1u << TC_AV_NULL | 1u << TC_AV_LONG | 1u << TC_AV_STRING,
                                    "a timestamp (long or RFC 3339 string)", errstr, n);
        } else if (!strcmp(f->name, "tags")) {
            s->col = TC_AS_TAGS;
            rc = tc_avro_step_kinds(s, f->type, 1u << TC_AV_NULL | 1u << TC_AV_MAP, "a map", errstr,
                                    n);
            for (size_t k = 0; f->type->kind == TC_AVRO_UNION && k < f->type->nbranches; k++)
                if (f->type->branches[k]->kind == TC_AVRO_MAP)
                    s->node = f->type->branches[k]; /* the map itself: what decoding renders */
        } else {
            s->col = TC_AS_EXTRA;
            if (++plan->nextra > TC_JSON_EXTRA_FIELDS_MAX) {
                tc_err_set(TC_ERR_INVALID, errstr, n,
                           "writer schema has more than %d fields outside the reading schema",
                           TC_JSON_EXTRA_FIELDS_MAX);
                rc = -1;
            }
        }
        if (rc < 0)
            goto fail;
    }
    if (!has_dev || !has_time) {
        tc_err_set(TC_ERR_INVALID, errstr, n, "writer schema %s has no field \"%s\"",
                   root->fullname ? root->fullname : "", has_dev ? "timestamp" : "device_id");
        goto fail;
    }
    tc_json_free(doc);
    return plan;
fail:
    tc_json_free(doc);
    tc_avro_plan_free(plan);
    return NULL;
}

void tc_avro_plan_free(tc_avro_plan *plan)
{
    if (!plan)
        return;
    tc_avro_schema_free(plan->schema);
    free(plan->steps);
    free(plan);
}

/* ---- the schema cache: ids from the registry (registry_client.h) ---- */

struct tc_schema_cache {
    tc_registry_client registry;
    size_t max;
    size_t n;
    unsigned long tick;
    struct tc_sc_entry {
        int32_t id;
        tc_err err;         /* TC_OK, TC_ERR_INVALID (refused plan) or TC_ERR_NOT_FOUND */
        tc_avro_plan *plan; /* TC_OK */
        char *why;          /* otherwise */
        unsigned long used; /* tick of the last use */
        int64_t expires_us; /* 0 = never (a 404 is retried after TC_SC_NOT_FOUND_TTL_US) */
    } * e;
    uint32_t *index; /* open addressing: entry number + 1, 0 = empty */
    size_t index_cap;
};

/* A 404 may be replication lag on the registry side: ask again after this long. */
#define TC_SC_NOT_FOUND_TTL_US (30 * TC_USEC_PER_SEC)

/* GET path from the registry; *body (malloc'ed, NUL-terminated) and *status on TC_OK. */
static tc_err tc_sc_get(tc_schema_cache *c, const char *path, int *status, char **body,
                        size_t *body_len, char *errstr, size_t n)
{
    tc_http_reply reply;
    tc_err err = tc_registry_client_get(&c->registry, path, &reply, errstr, n);

    if (err != TC_OK)
        return err;
    *status = reply.status;
    *body = reply.body;
    *body_len = reply.len;
    return TC_OK;
}

/* ---- the cache ---- */

static size_t tc_sc_hash(int32_t id, size_t cap)
{
    return (size_t)(((uint32_t)id * 2654435761u) & (uint32_t)(cap - 1));
}

static struct tc_sc_entry *tc_sc_find(const tc_schema_cache *c, int32_t id)
{
    for (size_t h = tc_sc_hash(id, c->index_cap);; h = (h + 1) & (c->index_cap - 1)) {
        uint32_t k = c->index[h];
        if (k == 0)
            return NULL;
        if (c->e[k - 1].id == id)
            return &c->e[k - 1];
    }
}

static void tc_sc_index_add(tc_schema_cache *c, size_t k)
{
    size_t h = tc_sc_hash(c->e[k].id, c->index_cap);

    while (c->index[h])
        h = (h + 1) & (c->index_cap - 1);
    c->index[h] = (uint32_t)(k + 1);
}

static void tc_sc_entry_free(struct tc_sc_entry *e)
{
    tc_avro_plan_free(e->plan);
    free(e->why);
    e->plan = NULL;
    e->why = NULL;
}

/* Remove entry k (the last entry moves into its slot) and rebuild the index: rare, O(max). */
static void tc_sc_remove(tc_schema_cache *c, size_t k)
{
    tc_sc_entry_free(&c->e[k]);
    c->e[k] = c->e[--c->n];
    memset(c->index, 0, c->index_cap * sizeof(*c->index));
    for (size_t i = 0; i < c->n; i++)
        tc_sc_index_add(c, i);
}

tc_schema_cache *tc_schema_cache_new(const tc_registry_client_options *registry, size_t max_plans,
                                     int timeout_ms, char *errstr, size_t n)
{
    tc_schema_cache *c = calloc(1, sizeof(*c));
    tc_registry_client_options o = *registry;

    if (!c) {
        tc_err_set(TC_ERR_NOMEM, errstr, n, "out of memory");
        return NULL;
    }
    o.timeout_ms = timeout_ms > 0     ? timeout_ms
                   : o.timeout_ms > 0 ? o.timeout_ms
                                      : TC_SCHEMA_CACHE_TIMEOUT_DEFAULT;
    if (tc_registry_client_init(&c->registry, &o, errstr, n) != TC_OK) {
        free(c);
        return NULL;
    }
    c->max = max_plans ? max_plans : TC_SCHEMA_CACHE_MAX_DEFAULT;
    if (c->max > (1u << 24))
        c->max = 1u << 24;
    for (c->index_cap = 16; c->index_cap < 2 * c->max;)
        c->index_cap *= 2;
    c->e = calloc(c->max, sizeof(*c->e));
    c->index = calloc(c->index_cap, sizeof(*c->index));
    if (!c->e || !c->index) {
        tc_schema_cache_destroy(c);
        tc_err_set(TC_ERR_NOMEM, errstr, n, "out of memory");
        return NULL;
    }
    return c;
}

void tc_schema_cache_destroy(tc_schema_cache *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n; i++)
        tc_sc_entry_free(&c->e[i]);
    free(c->e);
    free(c->index);
    free(c);
}

size_t tc_schema_cache_size(const tc_schema_cache *c)
{
    return c->n;
}

unsigned long tc_schema_cache_fetches(const tc_schema_cache *c)
{
    return c->registry.requests;
}

static tc_err tc_sc_answer(const struct tc_sc_entry *e, const tc_avro_plan **plan, char *errstr,
                           size_t n)
{
    if (e->err == TC_OK) {
        *plan = e->plan;
        return TC_OK;
    }
    return tc_err_set(e->err, errstr, n, "%s", e->why ? e->why : "schema refused");
}

tc_err tc_schema_cache_get(tc_schema_cache *c, int32_t id, const tc_avro_plan **plan, char *errstr,
                           size_t n)
{
    struct tc_sc_entry *e = tc_sc_find(c, id), ne;
    char path[80], why[TC_ERRSTR_MAX], *body = NULL;
    size_t body_len = 0;
    int status = 0;
    tc_json_doc *doc = NULL;
    tc_err err;

    *plan = NULL;
    if (e && e->expires_us && tc_time_now_us() >= e->expires_us) {
        tc_sc_remove(c, (size_t)(e - c->e));
        e = NULL;
    }
    if (e) {
        e->used = ++c->tick;
        return tc_sc_answer(e, plan, errstr, n);
    }
    /* Resolved: a schema with references comes with the referenced types inlined (Confluent's
     * format=resolved; a registry without references ignores the parameter). */
    snprintf(path, sizeof(path), "/schemas/ids/%ld?format=resolved", (long)id);
    err = tc_sc_get(c, path, &status, &body, &body_len, errstr, n);
    if (err != TC_OK)
        return err;
    memset(&ne, 0, sizeof(ne));
    ne.id = id;
    why[0] = '\0';
    doc = tc_json_parse(body, body_len, NULL, NULL, NULL, 0);
    if (status == 200) {
        const tc_json *root = tc_json_root(doc);
        const char *text = doc ? tc_json_string(tc_json_get(root, "schema")) : NULL;
        const char *type = doc ? tc_json_string(tc_json_get(root, "schemaType")) : NULL;

        if (!text) {
            err = tc_err_set(TC_ERR_IO, errstr, n,
                             "schema registry: answer for schema %ld has no \"schema\" string",
                             (long)id);
            goto out;
        }
        if (type && strcmp(type, "AVRO") != 0) {
            ne.err = TC_ERR_INVALID;
            snprintf(why, sizeof(why), "schema %ld is %s, not AVRO", (long)id, type);
        } else {
            char perr[TC_ERRSTR_MAX];

            ne.plan = tc_avro_plan_new(text, tc_json_get(root, "schema")->len, perr, sizeof(perr));
            if (!ne.plan) {
                ne.err = TC_ERR_INVALID;
                snprintf(why, sizeof(why), "schema %ld: %.400s", (long)id, perr);
            }
        }
    } else if (status == 404) {
        int64_t code = 0;

        if (!doc || !tc_json_int64(tc_json_get(tc_json_root(doc), "error_code"), &code) ||
            code != 40403) {
            err = tc_err_set(TC_ERR_CONFIG, errstr, n,
                             "schema registry answered 404 without error_code 40403 for schema "
                             "%ld: is the registry URL right?",
                             (long)id);
            goto out;
        }
        ne.err = TC_ERR_NOT_FOUND;
        ne.expires_us = tc_time_now_us() + TC_SC_NOT_FOUND_TTL_US;
        snprintf(why, sizeof(why), "schema %ld not found in the registry", (long)id);
    } else if (status >= 500 || status == 429 || status == 408 || status == 401 || status == 403) {
        /* Refused credentials are the registry's being unusable to us, as when it is down: the
         * reading waits (a dead letter would be a reading lost to a setting), and a fix on
         * either side -- the registry's users, our files at the next start -- lets it through. */
        err = tc_err_set(TC_ERR_IO, errstr, n, "schema registry answered HTTP %d for schema %ld%s",
                         status, (long)id, tc_registry_client_status_hint(status));
        goto out;
    } else {
        err = tc_err_set(TC_ERR_CONFIG, errstr, n,
                         "schema registry answered HTTP %d for schema %ld%s: %.200s", status,
                         (long)id, tc_registry_client_status_hint(status), body);
        goto out;
    }
    if (ne.err == TC_ERR_INVALID)
        tc_log_warn("schema", "%s: its messages become schema_mismatch dead letters", why);
    if (ne.err != TC_OK && !(ne.why = strdup(why))) {
        tc_avro_plan_free(ne.plan);
        err = tc_err_set(TC_ERR_NOMEM, errstr, n, "out of memory");
        goto out;
    }
    if (c->n == c->max) {
        size_t lru = 0;
        for (size_t i = 1; i < c->n; i++)
            if (c->e[i].used < c->e[lru].used)
                lru = i;
        tc_sc_remove(c, lru);
    }
    ne.used = ++c->tick;
    c->e[c->n] = ne;
    tc_sc_index_add(c, c->n);
    e = &c->e[c->n++];
    err = tc_sc_answer(e, plan, errstr, n);
out:
    tc_json_free(doc);
    free(body);
    return err;
}
