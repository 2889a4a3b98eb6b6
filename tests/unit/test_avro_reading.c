/*
 * test_avro_reading.c -- the Avro reading decoder, its plan compiler and the schema cache.
 *
 * Bodies are hand-encoded with the tiny encoder below (zigzag varints, length-prefixed strings,
 * little-endian floats and doubles), so the tests do not depend on another Avro implementation.
 * Every decode runs on a malloc'd copy of exactly len bytes, freed right after the call, so under
 * ASan an over-read past len, or a slice left pointing into the message, is a heap error. The cache
 * is tested against a fake registry: a thread answering canned HTTP responses on 127.0.0.1.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <fcntl.h>
#include <math.h>
#include <stdatomic.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "core/batch.h"
#include "core/json.h"
#include "core/reject.h"
#include "schema/avro_reading.h"

/* A cache over the registry at url, with nothing else set. */
static tc_schema_cache *cache_at(const char *url, size_t max_plans, int timeout_ms, char *err,
                                 size_t n)
{
    tc_registry_client_options o = {.url = url};

    return tc_schema_cache_new(&o, max_plans, timeout_ms, err, n);
}

/* ---- a tiny Avro encoder ---- */

typedef struct enc {
    unsigned char b[8192];
    size_t n;
} enc;

static void e_byte(enc *e, unsigned c)
{
    e->b[e->n++] = (unsigned char)c;
}

static void e_long(enc *e, int64_t v)
{
    uint64_t u = ((uint64_t)v << 1) ^ (v < 0 ? UINT64_MAX : 0);

    while (u >= 0x80) {
        e_byte(e, (unsigned)(u & 0x7f) | 0x80);
        u >>= 7;
    }
    e_byte(e, (unsigned)u);
}

static void e_raw(enc *e, const void *p, size_t n)
{
    memcpy(e->b + e->n, p, n);
    e->n += n;
}

static void e_bytes(enc *e, const void *p, size_t n)
{
    e_long(e, (int64_t)n);
    e_raw(e, p, n);
}

static void e_str(enc *e, const char *s)
{
    e_bytes(e, s, strlen(s));
}

static void e_double(enc *e, double d)
{
    uint64_t u;

    memcpy(&u, &d, 8);
    for (int i = 0; i < 8; i++)
        e_byte(e, (unsigned)(u >> (8 * i)) & 0xff);
}

static void e_float(enc *e, float f)
{
    uint32_t u;

    memcpy(&u, &f, 4);
    for (int i = 0; i < 4; i++)
        e_byte(e, (u >> (8 * i)) & 0xff);
}

/* ---- schemas ---- */

/* The reader shape itself. */
#define S_FULL                                                                                     \
    "{\"type\":\"record\",\"name\":\"Reading\",\"namespace\":\"iot\",\"fields\":["                 \
    "{\"name\":\"device_id\",\"type\":\"string\"},"                                                \
    "{\"name\":\"timestamp\",\"type\":{\"type\":\"long\",\"logicalType\":\"timestamp-millis\"}},"  \
    "{\"name\":\"temperature\",\"type\":\"double\"},{\"name\":\"humidity\",\"type\":\"double\"},"  \
    "{\"name\":\"pressure\",\"type\":\"double\"},{\"name\":\"battery\",\"type\":\"double\"},"      \
    "{\"name\":\"latitude\",\"type\":\"double\"},{\"name\":\"longitude\",\"type\":\"double\"},"    \
    "{\"name\":\"tags\",\"type\":{\"type\":\"map\",\"values\":\"string\"}}]}"

/* Promotions, null unions, a missing metric (longitude), micros, and every kind of extra field. */
#define S_PROMO                                                                                    \
    "{\"type\":\"record\",\"name\":\"R2\",\"fields\":["                                            \
    "{\"name\":\"seq\",\"type\":\"long\"},"                                                        \
    "{\"name\":\"device_id\",\"type\":[\"null\",\"string\"]},"                                     \
    "{\"name\":\"temperature\",\"type\":\"float\"},{\"name\":\"humidity\",\"type\":\"int\"},"      \
    "{\"name\":\"pressure\",\"type\":\"long\"},{\"name\":\"battery\",\"type\":[\"null\",\"int\"]}" \
    ","                                                                                            \
    "{\"name\":\"latitude\",\"type\":[\"double\",\"null\",\"float\",\"long\"]},"                   \
    "{\"name\":\"timestamp\",\"type\":[\"null\",{\"type\":\"long\","                               \
    "\"logicalType\":\"timestamp-micros\"}]},"                                                     \
    "{\"name\":\"tags\",\"type\":[\"null\",{\"type\":\"map\",\"values\":\"string\"}]},"            \
    "{\"name\":\"fw\",\"type\":\"string\"},{\"name\":\"ok\",\"type\":\"boolean\"},"                \
    "{\"name\":\"mac\",\"type\":{\"type\":\"fixed\",\"name\":\"Mac\",\"size\":3}},"                \
    "{\"name\":\"raw\",\"type\":\"bytes\"},"                                                       \
    "{\"name\":\"color\",\"type\":{\"type\":\"enum\",\"name\":\"C\",\"symbols\":[\"RED\","         \
    "\"GREEN\"]}},"                                                                                \
    "{\"name\":\"loc\",\"type\":{\"type\":\"record\",\"name\":\"L\",\"fields\":[{\"name\":\"a\","  \
    "\"type\":\"int\"},{\"name\":\"n\",\"type\":\"null\"}]}},"                                     \
    "{\"name\":\"list\",\"type\":{\"type\":\"array\",\"items\":\"int\"}},"                         \
    "{\"name\":\"attrs\",\"type\":{\"type\":\"map\",\"values\":\"long\"}},"                        \
    "{\"name\":\"opt\",\"type\":[\"null\",\"string\"]},"                                           \
    "{\"name\":\"f\",\"type\":\"float\"},{\"name\":\"d\",\"type\":\"double\"}]}"

/* A recursive type, for the depth cap. */
#define S_DEEP                                                                                     \
    "{\"type\":\"record\",\"name\":\"R3\",\"fields\":["                                            \
    "{\"name\":\"device_id\",\"type\":\"string\"},{\"name\":\"timestamp\",\"type\":\"long\"},"     \
    "{\"name\":\"node\",\"type\":{\"type\":\"record\",\"name\":\"Node\",\"fields\":["              \
    "{\"name\":\"next\",\"type\":[\"null\",\"Node\"]}]}},"                                         \
    "{\"name\":\"nulls\",\"type\":{\"type\":\"array\",\"items\":\"null\"}}]}"

/* The timestamp as an RFC 3339 string; nanoseconds. */
#define S_TS_STR                                                                                   \
    "{\"type\":\"record\",\"name\":\"R4\",\"fields\":[{\"name\":\"timestamp\",\"type\":"           \
    "\"string\"},"                                                                                 \
    "{\"name\":\"device_id\",\"type\":\"bytes\"}]}"
#define S_TS_NANOS                                                                                 \
    "{\"type\":\"record\",\"name\":\"R5\",\"fields\":[{\"name\":\"device_id\",\"type\":"           \
    "\"string\"},"                                                                                 \
    "{\"name\":\"timestamp\",\"type\":{\"type\":\"long\",\"logicalType\":\"timestamp-nanos\"}}]}"

/* 2026-11-28T12:00:00.123Z */
#define T_MS INT64_C(1795867200123)

#define T_ROWS 8

static tc_batch *B;
static char D[TC_REJECT_DETAIL_MAX];

static int setup(void **state)
{
    (void)state;
    B = tc_batch_new(T_ROWS, 0);
    return B ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    tc_batch_destroy(B);
    return 0;
}

static tc_avro_plan *plan_of(const char *schema)
{
    char err[TC_ERRSTR_MAX];
    tc_avro_plan *p = tc_avro_plan_new(schema, strlen(schema), err, sizeof(err));

    if (!p)
        fail_msg("plan refused: %s", err);
    return p;
}

/* Decode e into row 0 of a reset batch, from an exact-size heap copy. */
static tc_reject dec_n(const tc_avro_plan *p, const void *buf, size_t n)
{
    char *copy = malloc(n ? n : 1);
    tc_reject r;

    assert_non_null(copy);
    memcpy(copy, buf, n);
    tc_batch_reset(B);
    assert_int_equal(tc_batch_row_begin(B), TC_OK);
    D[0] = '\0';
    r = tc_avro_reading_decode(B, p, copy, n, D, sizeof(D));
    free(copy);
    if (r != TC_REJECT_NONE) {
        assert_true(D[0] != '\0');
        for (const char *c = D; *c; c++)
            assert_true(*c >= 0x20 && *c < 0x7f);
    }
    return r;
}

static tc_reject dec(const tc_avro_plan *p, const enc *e)
{
    return dec_n(p, e->b, e->n);
}

static void full_body(enc *e, const char *dev)
{
    e->n = 0;
    e_str(e, dev);
    e_long(e, T_MS);
    e_double(e, 21.5);
    e_double(e, 40.2);
    e_double(e, 1013.2);
    e_double(e, 87);
    e_double(e, 52.52);
    e_double(e, 13.405);
    e_long(e, 2);
    e_str(e, "site");
    e_str(e, "berlin-1");
    e_str(e, "q\"x");
    e_str(e, "a\nb");
    e_long(e, 0);
}

static void assert_slice(tc_slice s, const char *want)
{
    if (!want) {
        assert_null(s.ptr);
        return;
    }
    assert_non_null(s.ptr);
    assert_int_equal(s.len, strlen(want));
    assert_memory_equal(s.ptr, want, s.len);
    assert_int_equal(s.ptr[s.len], '\0');
    assert_true(tc_json_utf8_valid(s.ptr, s.len));
}

/* ---- tests ---- */

static void test_full(void **state)
{
    tc_avro_plan *p = plan_of(S_FULL);
    enc e;
    tc_json_doc *doc;

    (void)state;
    full_body(&e, "sensor-0042");
    assert_int_equal(dec(p, &e), TC_REJECT_NONE);
    assert_slice(B->device_id[0], "sensor-0042");
    assert_true(B->time_us[0] == T_MS * 1000);
    assert_true(B->metric[TC_M_TEMPERATURE][0] == 21.5);
    assert_true(B->metric[TC_M_HUMIDITY][0] == 40.2);
    assert_true(B->metric[TC_M_PRESSURE][0] == 1013.2);
    assert_true(B->metric[TC_M_BATTERY][0] == 87);
    assert_true(B->metric[TC_M_LATITUDE][0] == 52.52);
    assert_true(B->metric[TC_M_LONGITUDE][0] == 13.405);
    for (int m = 0; m < TC_METRIC__COUNT; m++)
        assert_int_equal(B->present[m][0], 1);
    assert_slice(B->tags[0], "{\"site\":\"berlin-1\",\"q\\\"x\":\"a\\nb\"}");
    doc = tc_json_parse(B->tags[0].ptr, B->tags[0].len, NULL, NULL, NULL, 0);
    assert_non_null(doc);
    tc_json_free(doc);
    assert_null(B->extra[0].ptr);
    tc_batch_row_commit(B);
    tc_avro_plan_free(p);
}

static void promo_body(enc *e, int variant)
{
    static const unsigned char mac[3] = {0x00, 0x7f, 0xe9};
    static const unsigned char raw[4] = {'a', '"', 0x01, 0xff};

    e->n = 0;
    e_long(e, -7);              /* seq */
    e_long(e, 1);               /* device_id: string branch */
    e_str(e, "dev-\xc3\xa9");   /* UTF-8 */
    e_float(e, 21.25f);         /* temperature float */
    e_long(e, 40);              /* humidity int */
    e_long(e, INT64_C(1013));   /* pressure long */
    e_long(e, variant ? 0 : 1); /* battery: null or int */
    if (!variant)
        e_long(e, 87);
    e_long(e, variant ? 3 : 0); /* latitude: double or long */
    if (variant)
        e_long(e, 52);
    else
        e_double(e, 52.52);
    e_long(e, 1); /* timestamp: long micros */
    e_long(e, T_MS * 1000 + 456);
    e_long(e, variant ? 0 : 1); /* tags: null or map */
    if (!variant) {
        e_long(e, -1); /* negative block count with a byte size */
        e_long(e, 6);
        e_str(e, "k");
        e_str(e, "v");
        e_long(e, 0);
    }
    e_str(e, "1.2.3");  /* fw */
    e_byte(e, 1);       /* ok */
    e_raw(e, mac, 3);   /* mac */
    e_bytes(e, raw, 4); /* raw */
    e_long(e, 1);       /* color GREEN */
    e_long(e, -5);      /* loc.a; loc.n is null */
    e_long(e, 2);       /* list */
    e_long(e, 1);
    e_long(e, -2);
    e_long(e, 1);
    e_long(e, 3);
    e_long(e, 0);
    e_long(e, 1); /* attrs */
    e_str(e, "x");
    e_long(e, INT64_MAX);
    e_long(e, 0);
    e_long(e, 0);     /* opt: null */
    e_float(e, 0.1f); /* f */
    e_double(e, NAN); /* d */
}

static void test_promotions_and_extra(void **state)
{
    tc_avro_plan *p = plan_of(S_PROMO);
    enc e;
    tc_json_doc *doc;

    (void)state;
    promo_body(&e, 0);
    assert_int_equal(dec(p, &e), TC_REJECT_NONE);
    assert_slice(B->device_id[0], "dev-\xc3\xa9");
    assert_true(B->time_us[0] == T_MS * 1000 + 456);
    assert_true(B->metric[TC_M_TEMPERATURE][0] == 21.25);
    assert_true(B->metric[TC_M_HUMIDITY][0] == 40);
    assert_true(B->metric[TC_M_PRESSURE][0] == 1013);
    assert_true(B->metric[TC_M_BATTERY][0] == 87);
    assert_true(B->metric[TC_M_LATITUDE][0] == 52.52);
    assert_int_equal(B->present[TC_M_LONGITUDE][0], 0); /* not in the writer */
    assert_slice(B->tags[0], "{\"k\":\"v\"}");
    assert_slice(
        B->extra[0],
        "{\"seq\":-7,\"fw\":\"1.2.3\",\"ok\":true,\"mac\":\"\\u2400\\u007f\\u00e9\","
        "\"raw\":\"a\\\"\\u0001\\u00ff\",\"color\":\"GREEN\",\"loc\":{\"a\":-5,\"n\":null},"
        "\"list\":[1,-2,3],\"attrs\":{\"x\":9223372036854775807},\"opt\":null,"
        "\"f\":0.1,\"d\":\"NaN\"}");
    doc = tc_json_parse(B->extra[0].ptr, B->extra[0].len, NULL, NULL, NULL, 0);
    assert_non_null(doc);
    tc_json_free(doc);

    /* The other union branches: battery null, latitude long, tags null. */
    promo_body(&e, 1);
    assert_int_equal(dec(p, &e), TC_REJECT_NONE);
    assert_int_equal(B->present[TC_M_BATTERY][0], 0);
    assert_true(B->metric[TC_M_LATITUDE][0] == 52);
    assert_int_equal(B->present[TC_M_LATITUDE][0], 1);
    assert_null(B->tags[0].ptr);
    tc_avro_plan_free(p);
}

static void test_nonfinite_metrics_stored(void **state)
{
    tc_avro_plan *p = plan_of(S_FULL);
    enc e;

    (void)state;
    e.n = 0;
    e_str(&e, "d");
    e_long(&e, T_MS);
    e_double(&e, NAN);
    e_double(&e, INFINITY);
    e_double(&e, -INFINITY);
    for (int i = 0; i < 3; i++)
        e_double(&e, 1);
    e_long(&e, 0);
    assert_int_equal(dec(p, &e), TC_REJECT_NONE);
    assert_true(isnan(B->metric[TC_M_TEMPERATURE][0]));
    assert_true(isinf(B->metric[TC_M_HUMIDITY][0]) && B->metric[TC_M_HUMIDITY][0] > 0);
    assert_true(isinf(B->metric[TC_M_PRESSURE][0]) && B->metric[TC_M_PRESSURE][0] < 0);
    assert_slice(B->tags[0], "{}");
    tc_avro_plan_free(p);
}

static void test_timestamps(void **state)
{
    tc_avro_plan *ps = plan_of(S_TS_STR), *pn = plan_of(S_TS_NANOS), *pf = plan_of(S_FULL);
    enc e;

    (void)state;
    e.n = 0;
    e_str(&e, "2026-11-28T13:00:00.123+01:00");
    e_str(&e, "dev");
    assert_int_equal(dec(ps, &e), TC_REJECT_NONE);
    assert_true(B->time_us[0] == T_MS * 1000);
    assert_slice(B->device_id[0], "dev");

    e.n = 0;
    e_str(&e, "yesterday");
    e_str(&e, "dev");
    assert_int_equal(dec(ps, &e), TC_REJECT_INVALID_TIMESTAMP);
    assert_non_null(strstr(D, "yesterday"));

    e.n = 0;
    e_str(&e, "dev");
    e_long(&e, T_MS * 1000000 + 999);
    assert_int_equal(dec(pn, &e), TC_REJECT_NONE);
    assert_true(B->time_us[0] == T_MS * 1000);
    e.n = 0;
    e_str(&e, "dev");
    e_long(&e, -1); /* 1 ns before the epoch floors to -1 us */
    assert_int_equal(dec(pn, &e), TC_REJECT_NONE);
    assert_true(B->time_us[0] == -1);

    /* Millis beyond year 9999, and an overflow when scaled. */
    e.n = 0;
    e_str(&e, "dev");
    e_long(&e, INT64_C(253402300800000));
    for (int i = 0; i < 6; i++)
        e_double(&e, 1);
    e_long(&e, 0);
    assert_int_equal(dec(pf, &e), TC_REJECT_INVALID_TIMESTAMP);
    assert_non_null(strstr(D, "years 1..9999"));
    e.n = 0;
    e_str(&e, "dev");
    e_long(&e, INT64_MIN);
    for (int i = 0; i < 6; i++)
        e_double(&e, 1);
    e_long(&e, 0);
    assert_int_equal(dec(pf, &e), TC_REJECT_INVALID_TIMESTAMP);
    tc_avro_plan_free(ps);
    tc_avro_plan_free(pn);
    tc_avro_plan_free(pf);
}

static void test_field_rejections(void **state)
{
    tc_avro_plan *pf = plan_of(S_FULL), *pp = plan_of(S_PROMO);
    char big[300];
    enc e;

    (void)state;
    full_body(&e, "");
    assert_int_equal(dec(pf, &e), TC_REJECT_INVALID_DEVICE_ID);
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    full_body(&e, big);
    assert_int_equal(dec(pf, &e), TC_REJECT_INVALID_DEVICE_ID);
    full_body(&e, "a\tb");
    assert_int_equal(dec(pf, &e), TC_REJECT_INVALID_DEVICE_ID);
    assert_non_null(strstr(D, "control character 0x09"));

    /* device_id null in a union: missing. */
    e.n = 0;
    e_long(&e, 1);
    e_long(&e, 0);
    e_float(&e, 1);
    e_long(&e, 1);
    e_long(&e, 1);
    e_long(&e, 0);
    e_long(&e, 1);
    e_long(&e, 0); /* timestamp null */
    e_long(&e, 0);
    e_str(&e, "");
    e_byte(&e, 0);
    e_raw(&e, "abc", 3);
    e_bytes(&e, "", 0);
    e_long(&e, 0);
    e_long(&e, 0);
    e_long(&e, 0);
    e_long(&e, 0);
    e_long(&e, 0);
    e_float(&e, 0);
    e_double(&e, 0);
    assert_int_equal(dec(pp, &e), TC_REJECT_MISSING_FIELD);
    assert_string_equal(D, "field \"device_id\" is null");
    tc_avro_plan_free(pf);
    tc_avro_plan_free(pp);
}

static void test_malformed(void **state)
{
    tc_avro_plan *pf = plan_of(S_FULL), *pp = plan_of(S_PROMO), *pd = plan_of(S_DEEP);
    enc e, v;

    (void)state;
    /* Every strict prefix of valid bodies is truncated. */
    full_body(&v, "sensor-0042");
    for (size_t n = 0; n < v.n; n++)
        assert_int_equal(dec_n(pf, v.b, n), TC_REJECT_MALFORMED);
    promo_body(&v, 0);
    for (size_t n = 0; n < v.n; n++)
        assert_int_equal(dec_n(pp, v.b, n), TC_REJECT_MALFORMED);

    /* Trailing bytes. */
    full_body(&e, "d");
    e_byte(&e, 0);
    assert_int_equal(dec(pf, &e), TC_REJECT_MALFORMED);
    assert_non_null(strstr(D, "1 bytes after the record"));

    /* Varint overflow: 10 continuation bytes. */
    e.n = 0;
    for (int i = 0; i < 10; i++)
        e_byte(&e, 0xff);
    e_byte(&e, 0x01);
    assert_int_equal(dec(pf, &e), TC_REJECT_MALFORMED);
    assert_non_null(strstr(D, "overflows 64 bits"));
    e.n = 0;
    for (int i = 0; i < 9; i++)
        e_byte(&e, 0xff);
    e_byte(&e, 0x02);
    assert_int_equal(dec(pf, &e), TC_REJECT_MALFORMED);

    /* Negative length, length past the end. */
    e.n = 0;
    e_long(&e, -3);
    assert_int_equal(dec(pf, &e), TC_REJECT_MALFORMED);
    assert_non_null(strstr(D, "negative string length -3"));
    e.n = 0;
    e_long(&e, 1000);
    e_str(&e, "abc");
    assert_int_equal(dec(pf, &e), TC_REJECT_MALFORMED);
    assert_non_null(strstr(D, "runs past the end"));
    assert_non_null(strstr(D, "device_id"));

    /* Invalid UTF-8 in device_id and in a tag. */
    full_body(&e, "ab\xc0\xaf");
    assert_int_equal(dec(pf, &e), TC_REJECT_INVALID_UTF8);
    full_body(&e, "d");
    e.n -= 1 + 4 + 4; /* drop "q\"x", "a\nb" and the end marker; replace the second entry */
    e_str(&e, "k");
    e_str(&e, "\xed\xa0\x80"); /* a UTF-8-encoded surrogate */
    e_long(&e, 0);
    assert_int_equal(dec(pf, &e), TC_REJECT_INVALID_UTF8);
    assert_non_null(strstr(D, "tags"));
    /* NUL in a kept string. */
    full_body(&e, "d");
    e.n -= 1 + 4 + 4;
    e_str(&e, "k");
    e_bytes(&e, "a\0b", 3);
    e_long(&e, 0);
    assert_int_equal(dec(pf, &e), TC_REJECT_INVALID_UTF8);
    assert_non_null(strstr(D, "U+0000"));

    /* Union index out of range (device_id has 2 branches), and negative. */
    promo_body(&e, 0);
    e.b[1] = 4; /* zigzag 2 */
    assert_int_equal(dec(pp, &e), TC_REJECT_MALFORMED);
    assert_non_null(strstr(D, "union index 2"));
    e.b[1] = 1; /* zigzag -1 */
    assert_int_equal(dec(pp, &e), TC_REJECT_MALFORMED);

    /* An int beyond 32 bits (humidity). */
    e.n = 0;
    e_long(&e, 0);
    e_long(&e, 1);
    e_str(&e, "d");
    e_float(&e, 1);
    e_long(&e, INT64_C(1) << 33);
    assert_int_equal(dec(pp, &e), TC_REJECT_MALFORMED);
    assert_non_null(strstr(D, "overflows 32 bits"));

    /* Boolean byte 2, enum index out of range, negative block byte size. */
    promo_body(&v, 0);
    {
        size_t ok_at = 0;
        /* find "1.2.3" then the boolean right after it */
        for (size_t i = 0; i + 5 < v.n; i++)
            if (!memcmp(v.b + i, "1.2.3", 5)) {
                ok_at = i + 5;
                break;
            }
        assert_true(ok_at > 0);
        e = v;
        e.b[ok_at] = 2;
        assert_int_equal(dec(pp, &e), TC_REJECT_MALFORMED);
        assert_non_null(strstr(D, "boolean byte 0x02"));
        e = v;
        e.b[ok_at + 1 + 3 + 5] = 4; /* color index 2 of 2 symbols */
        assert_int_equal(dec(pp, &e), TC_REJECT_MALFORMED);
        assert_non_null(strstr(D, "color"));
    }

    /* Nesting deeper than the cap: node.next.next... */
    e.n = 0;
    e_str(&e, "d");
    e_long(&e, T_MS);
    for (int i = 0; i < TC_AVRO_DEPTH_MAX + 2; i++)
        e_long(&e, 1);
    e_long(&e, 0);
    e_long(&e, 0);
    assert_int_equal(dec(pd, &e), TC_REJECT_MALFORMED);
    assert_non_null(strstr(D, "deeper than"));
    /* Within the cap it is kept. */
    e.n = 0;
    e_str(&e, "d");
    e_long(&e, T_MS);
    e_long(&e, 1);
    e_long(&e, 0);
    e_long(&e, 2); /* two nulls */
    e_long(&e, 0);
    assert_int_equal(dec(pd, &e), TC_REJECT_NONE);
    assert_slice(B->extra[0], "{\"node\":{\"next\":{\"next\":null}},\"nulls\":[null,null]}");

    /* Zero-width items within the cap are kept whole (both passes count them afresh). */
    e.n = 0;
    e_str(&e, "d");
    e_long(&e, T_MS);
    e_long(&e, 0);
    e_long(&e, 40000);
    e_long(&e, 0);
    assert_int_equal(dec(pd, &e), TC_REJECT_NONE);
    assert_int_equal(B->extra[0].len,
                     strlen("{\"node\":{\"next\":null},\"nulls\":[]}") + 40000 * 5 - 1);
    assert_memory_equal(B->extra[0].ptr + B->extra[0].len - 6, "null]}", 6);

    /* Zero-width items beyond the cap; a huge block count of non-zero-width items. */
    e.n = 0;
    e_str(&e, "d");
    e_long(&e, T_MS);
    e_long(&e, 0);
    e_long(&e, INT64_C(1) << 40);
    e_long(&e, 0);
    assert_int_equal(dec(pd, &e), TC_REJECT_MALFORMED);
    assert_non_null(strstr(D, "take no bytes"));
    full_body(&e, "d");
    e.n -= 1 + 4 + 4 + 9 + 5 + 1; /* back to the tags block count */
    e_long(&e, INT64_C(1) << 40);
    assert_int_equal(dec(pf, &e), TC_REJECT_MALFORMED);
    assert_non_null(strstr(D, "only 0 bytes left"));
    tc_avro_plan_free(pf);
    tc_avro_plan_free(pp);
    tc_avro_plan_free(pd);
}

static void test_plan_refusals(void **state)
{
    static const char *const bad[] = {
        "{\"type\":\"record\",\"name\":\"R\",\"fields\":[{\"name\":\"timestamp\",\"type\":\"long\"}"
        "]}",
        "{\"type\":\"record\",\"name\":\"R\",\"fields\":[{\"name\":\"device_id\",\"type\":"
        "\"string\"}]}",
        "{\"type\":\"record\",\"name\":\"R\",\"fields\":[{\"name\":\"device_id\",\"type\":"
        "\"string\"},"
        "{\"name\":\"timestamp\",\"type\":\"long\"},{\"name\":\"temperature\",\"type\":\"string\"}]"
        "}",
        "{\"type\":\"record\",\"name\":\"R\",\"fields\":[{\"name\":\"device_id\",\"type\":\"int\"},"
        "{\"name\":\"timestamp\",\"type\":\"long\"}]}",
        "{\"type\":\"record\",\"name\":\"R\",\"fields\":[{\"name\":\"device_id\",\"type\":"
        "\"string\"},"
        "{\"name\":\"timestamp\",\"type\":\"long\"},{\"name\":\"tags\",\"type\":\"string\"}]}",
        "\"string\"",
        "{\"type\":\"record\"",
        "",
        /* Logical types the pipeline would store as their underlying type, a wrong value. */
        "{\"type\":\"record\",\"name\":\"R\",\"fields\":[{\"name\":\"device_id\",\"type\":"
        "\"string\"},{\"name\":\"timestamp\",\"type\":\"long\"},{\"name\":\"price\",\"type\":"
        "{\"type\":\"bytes\",\"logicalType\":\"decimal\",\"precision\":9,\"scale\":4}}]}",
        "{\"type\":\"record\",\"name\":\"R\",\"fields\":[{\"name\":\"device_id\",\"type\":"
        "\"string\"},{\"name\":\"timestamp\",\"type\":\"long\"},{\"name\":\"seen\",\"type\":"
        "[\"null\",{\"type\":\"long\",\"logicalType\":\"timestamp-millis\"}]}]}",
        "{\"type\":\"record\",\"name\":\"R\",\"fields\":[{\"name\":\"device_id\",\"type\":"
        "\"string\"},{\"name\":\"timestamp\",\"type\":\"long\"},{\"name\":\"battery\",\"type\":"
        "{\"type\":\"int\",\"logicalType\":\"date\"}}]}",
    };
    static const char *const why[] = {"no field \"device_id\"",
                                      "no field \"timestamp\"",
                                      "temperature",
                                      "device_id",
                                      "tags",
                                      "not a record",
                                      "",
                                      "",
                                      "field \"price\" has logicalType decimal",
                                      "field \"seen\" has logicalType timestamp-millis",
                                      "field \"battery\" has logicalType date"};
    char err[TC_ERRSTR_MAX];

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        assert_null(tc_avro_plan_new(bad[i], strlen(bad[i]), err, sizeof(err)));
        assert_true(err[0] != '\0');
        assert_non_null(strstr(err, why[i]));
    }
}

static void test_frame(void **state)
{
    int32_t id = 0;

    (void)state;
    assert_int_equal(tc_avro_frame("\0\0\0\0\x2a", 5, &id), 1);
    assert_int_equal(id, 42);
    assert_int_equal(tc_avro_frame("\0\x80\0\x01\x02xyz", 8, &id), 1);
    assert_int_equal(id, (int32_t)0x80000102u);
    assert_int_equal(tc_avro_frame("\0\0\0\0", 4, &id), 0);
    assert_int_equal(tc_avro_frame("{\"a\":1}", 7, &id), 0);
    assert_int_equal(tc_avro_frame(NULL, 0, &id), 0);
}

static void test_batch_full(void **state)
{
    tc_avro_plan *p = plan_of(S_FULL);
    tc_batch *small = tc_batch_new(2, 1);
    enc e;
    tc_reject r;

    (void)state;
    assert_non_null(small);
    full_body(&e, "sensor-0042");
    /* The arena cannot hold even one reading: TOO_LARGE, never BATCH_FULL forever. */
    assert_int_equal(tc_batch_row_begin(small), TC_OK);
    r = tc_avro_reading_decode(small, p, (const char *)e.b, e.n, D, sizeof(D));
    assert_int_equal(r, TC_REJECT_TOO_LARGE);
    tc_batch_destroy(small);

    small = tc_batch_new(1, 0);
    assert_non_null(small);
    assert_int_equal(tc_batch_row_begin(small), TC_OK);
    assert_int_equal(tc_avro_reading_decode(small, p, (const char *)e.b, e.n, D, sizeof(D)),
                     TC_REJECT_NONE);
    tc_batch_row_commit(small);
    assert_int_equal(tc_avro_reading_decode(small, p, (const char *)e.b, e.n, D, sizeof(D)),
                     TC_JSON_BATCH_FULL);
    tc_batch_destroy(small);
    tc_avro_plan_free(p);
}

/* ---- the cache against a fake registry ---- */

typedef struct fake {
    int fd;
    int port;
    atomic_int stop; /* set by the test, read by the server thread */
    int requests;
    pthread_t th;
} fake;

static void respond(int c, int status, const char *body)
{
    char hdr[256];
    int n = snprintf(hdr, sizeof(hdr),
                     "HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n",
                     status, strlen(body));
    ssize_t w = write(c, hdr, (size_t)n);

    w += write(c, body, strlen(body));
    (void)w;
}

static void *fake_main(void *arg)
{
    fake *f = arg;

    while (!atomic_load(&f->stop)) {
        struct pollfd pfd = {f->fd, POLLIN, 0};
        char req[2048];
        size_t len = 0;
        int c, id = -1;

        if (poll(&pfd, 1, 50) <= 0)
            continue;
        c = accept(f->fd, NULL, NULL);
        if (c < 0)
            continue;
        while (len < sizeof(req) - 1) {
            ssize_t r = read(c, req + len, sizeof(req) - 1 - len);
            if (r <= 0)
                break;
            len += (size_t)r;
            req[len] = '\0';
            if (strstr(req, "\r\n\r\n"))
                break;
        }
        req[len] = '\0';
        f->requests++;
        sscanf(req, "GET /reg/schemas/ids/%d ", &id);
        if (id == 1 || id == 7) {
            tc_jbuf b;
            tc_jbuf_init(&b, 0);
            tc_jbuf_obj_begin(&b);
            tc_jbuf_key(&b, "schema");
            tc_jbuf_str(&b, S_FULL);
            tc_jbuf_obj_end(&b);
            respond(c, 200, b.data);
            tc_jbuf_free(&b);
        } else if (id == 2) {
            respond(c, 404, "{\"error_code\":40403,\"message\":\"Schema 2 not found\"}");
        } else if (id == 3) {
            respond(c, 500, "{\"error_code\":50001,\"message\":\"boom\"}");
        } else if (id == 4) {
            respond(c, 200,
                    "{\"schema\":\"{\\\"type\\\":\\\"record\\\",\\\"name\\\":\\\"X\\\","
                    "\\\"fields\\\":[{\\\"name\\\":\\\"a\\\",\\\"type\\\":\\\"int\\\"}]}\"}");
        } else if (id == 5) {
            respond(c, 404, "not here");
        } else if (id == 6) {
            respond(c, 200, "{\"schema\":\"syntax = 'proto3';\",\"schemaType\":\"PROTOBUF\"}");
        } else {
            respond(c, 200, "not json");
        }
        close(c);
    }
    return NULL;
}

static int listen_any(int *port)
{
    struct sockaddr_in a;
    socklen_t al = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(fd, 16), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &al), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

static void test_cache(void **state)
{
    fake f = {0};
    char url[64], err[TC_ERRSTR_MAX];
    const tc_avro_plan *p = NULL;
    tc_schema_cache *c;
    enc e;

    (void)state;
    f.fd = listen_any(&f.port);
    assert_int_equal(pthread_create(&f.th, NULL, fake_main, &f), 0);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/reg/", f.port);
    c = cache_at(url, 2, 2000, err, sizeof(err));
    assert_non_null(c);

    assert_int_equal(tc_schema_cache_get(c, 1, &p, err, sizeof(err)), TC_OK);
    assert_non_null(p);
    full_body(&e, "sensor-1");
    assert_int_equal(dec(p, &e), TC_REJECT_NONE);
    assert_int_equal(tc_schema_cache_get(c, 1, &p, err, sizeof(err)), TC_OK);
    assert_int_equal(tc_schema_cache_fetches(c), 1); /* cached */

    assert_int_equal(tc_schema_cache_get(c, 2, &p, err, sizeof(err)), TC_ERR_NOT_FOUND);
    assert_null(p);
    assert_non_null(strstr(err, "not found"));
    assert_int_equal(tc_schema_cache_get(c, 2, &p, err, sizeof(err)), TC_ERR_NOT_FOUND);
    assert_int_equal(tc_schema_cache_fetches(c), 2); /* the 404 is cached for a while */

    assert_int_equal(tc_schema_cache_get(c, 3, &p, err, sizeof(err)), TC_ERR_IO);
    assert_true(tc_err_is_retriable(TC_ERR_IO));
    assert_non_null(strstr(err, "HTTP 500"));
    assert_int_equal(tc_schema_cache_get(c, 3, &p, err, sizeof(err)), TC_ERR_IO);
    assert_int_equal(tc_schema_cache_fetches(c), 4); /* 5xx is never cached */

    /* A schema that cannot be a reading is refused, and the refusal is cached; the cache holds 2
     * ids, so the least recently used (1) is evicted to make room. */
    assert_int_equal(tc_schema_cache_get(c, 4, &p, err, sizeof(err)), TC_ERR_INVALID);
    assert_non_null(strstr(err, "device_id"));
    assert_int_equal(tc_schema_cache_size(c), 2);
    assert_int_equal(tc_schema_cache_get(c, 4, &p, err, sizeof(err)), TC_ERR_INVALID);
    assert_int_equal(tc_schema_cache_fetches(c), 5);
    assert_int_equal(tc_schema_cache_get(c, 1, &p, err, sizeof(err)), TC_OK); /* evicted: refetch */
    assert_int_equal(tc_schema_cache_fetches(c), 6);
    assert_int_equal(dec(p, &e), TC_REJECT_NONE);

    assert_int_equal(tc_schema_cache_get(c, 5, &p, err, sizeof(err)), TC_ERR_CONFIG);
    assert_int_equal(tc_schema_cache_get(c, 6, &p, err, sizeof(err)), TC_ERR_INVALID);
    assert_non_null(strstr(err, "PROTOBUF"));
    assert_int_equal(tc_schema_cache_get(c, 9, &p, err, sizeof(err)), TC_ERR_IO);

    atomic_store(&f.stop, 1);
    pthread_join(f.th, NULL);
    close(f.fd);
    tc_schema_cache_destroy(c);

    /* Connection refused: a port nobody listens on any more. */
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", f.port);
    c = cache_at(url, 0, 500, err, sizeof(err));
    assert_non_null(c);
    assert_int_equal(tc_schema_cache_get(c, 1, &p, err, sizeof(err)), TC_ERR_IO);
    assert_non_null(strstr(err, "cannot connect"));
    assert_int_equal(tc_schema_cache_size(c), 0);
    tc_schema_cache_destroy(c);

    /* A registry that accepts the connection but never answers: a retriable timeout. */
    f.fd = listen_any(&f.port);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", f.port);
    c = cache_at(url, 0, 200, err, sizeof(err));
    assert_non_null(c);
    assert_int_equal(tc_schema_cache_get(c, 1, &p, err, sizeof(err)), TC_ERR_TIMEOUT);
    assert_true(tc_err_is_retriable(TC_ERR_TIMEOUT));
    tc_schema_cache_destroy(c);
    close(f.fd);

    assert_null(cache_at("ftp://x", 0, 0, err, sizeof(err)));
    assert_non_null(strstr(err, "\"ftp://x\" in registry.url"));
    assert_null(cache_at("http://:80", 0, 0, err, sizeof(err)));
}

/* The registry's TLS and credential settings are checked when the cache is made, each refusal
 * naming its setting; a secret is never in the message. */
static void test_schema_cache_registry_settings(void **state)
{
    char err[TC_ERRSTR_MAX], dir[] = "/tmp/tc-registry-XXXXXX", path[4][600];
    const char *text[4] = {"ci:s3cret-Value\n", "tok-Secret-42\n", "no colon here\n",
                           "not a certificate\n"};
    tc_registry_client_options o = {.url = "https://127.0.0.1:1"};
    tc_schema_cache *c;

    (void)state;
    assert_non_null(mkdtemp(dir));
    for (int i = 0; i < 4; i++) {
        int fd;
        snprintf(path[i], sizeof(path[i]), "%s/f%d", dir, i);
        fd = open(path[i], O_WRONLY | O_CREAT | O_TRUNC, 0600);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, text[i], strlen(text[i])), (ssize_t)strlen(text[i]));
        close(fd);
    }
    /* https:// with the system's CAs, and Basic credentials: fine. */
    o.user_info_file = path[0];
    c = tc_schema_cache_new(&o, 0, 0, err, sizeof(err));
    assert_non_null(c);
    tc_schema_cache_destroy(c);
    /* Both kinds of credentials; a user_info without a colon. */
    o.bearer_token_file = path[1];
    assert_null(tc_schema_cache_new(&o, 0, 0, err, sizeof(err)));
    assert_non_null(strstr(err, "registry.bearer_token_file are both set"));
    o.bearer_token_file = NULL;
    o.user_info_file = path[2];
    assert_null(tc_schema_cache_new(&o, 0, 0, err, sizeof(err)));
    assert_non_null(strstr(err, "registry.user_info_file"));
    assert_null(strstr(err, "no colon here"));
    o.user_info_file = NULL;
    /* A CA file that holds no certificate, or is not there. */
    o.ca_file = path[3];
    assert_null(tc_schema_cache_new(&o, 0, 0, err, sizeof(err)));
    assert_non_null(strstr(err, "registry.tls.ca_file"));
    assert_non_null(strstr(err, path[3]));
    o.ca_file = "/nonexistent/ca.crt";
    assert_null(tc_schema_cache_new(&o, 0, 0, err, sizeof(err)));
    assert_non_null(strstr(err, "registry.tls.ca_file"));
    /* TLS files for an http:// URL; a certificate without its key. */
    o.url = "http://127.0.0.1:1";
    assert_null(tc_schema_cache_new(&o, 0, 0, err, sizeof(err)));
    assert_non_null(strstr(err, "is not https://"));
    o.url = "https://127.0.0.1:1";
    o.ca_file = NULL;
    o.cert_file = path[3];
    assert_null(tc_schema_cache_new(&o, 0, 0, err, sizeof(err)));
    assert_non_null(strstr(err, "go together"));
    for (int i = 0; i < 4; i++)
        unlink(path[i]);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full),
        cmocka_unit_test(test_promotions_and_extra),
        cmocka_unit_test(test_nonfinite_metrics_stored),
        cmocka_unit_test(test_timestamps),
        cmocka_unit_test(test_field_rejections),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_plan_refusals),
        cmocka_unit_test(test_frame),
        cmocka_unit_test(test_batch_full),
        cmocka_unit_test(test_cache),
        cmocka_unit_test(test_schema_cache_registry_settings),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
