/*
 * fuzz_json_reading.c -- libFuzzer target for tc_json_reading_decode.
 *
 * libFuzzer hands over a heap buffer of exactly size bytes, so ASan reports any read past len. On
 * top of "no crash, no UB", every accepted reading is checked against what the sinks rely on:
 *   - device_id is 1..TC_DEVICE_ID_MAX bytes of valid UTF-8 with no control characters (checked
 *     by an independent validator written here, not the decoder's);
 *   - tags and extra are valid UTF-8 and the decoder accepts them again, byte-identical, when
 *     they are put back into a minimal reading: tags as tags, extra's members as top-level
 *     members. Same depth, same numbers, so the re-decode must succeed and be a fixed point.
 *   - metrics are finite, the time lies within years 0000..9999, and the detail is empty.
 * Every outcome's detail must be a NUL-terminated printable-ASCII string, and decoding again
 * without a detail buffer must give the same outcome.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/batch.h"
#include "core/reject.h"
#include "schema/json_reading.h"

/* 0000-01-01T00:00:00Z and 9999-12-31T23:59:59.999999Z in microseconds: every parseable time. */
#define FZ_TIME_MIN INT64_C(-62167219200000000)
#define FZ_TIME_MAX INT64_C(253402300799999999)

static tc_batch *fz_batch, *fz_check;

static void fz_require(int ok, const char *what, const char *detail)
{
    if (!ok) {
        fprintf(stderr, "invariant violated: %s (%s)\n", what, detail ? detail : "");
        abort();
    }
}

/* Independent UTF-8 check (Unicode Table 3-7), written differently from the decoder's on purpose:
 * decode the code point and test its range. */
static int fz_utf8_ok(const unsigned char *s, size_t n)
{
    size_t i = 0;

    while (i < n) {
        unsigned c = s[i], len;
        uint32_t cp;

        if (c < 0x80) {
            i++;
            continue;
        }
        if ((c & 0xE0) == 0xC0) {
            len = 2;
            cp = c & 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            len = 3;
            cp = c & 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            len = 4;
            cp = c & 0x07;
        } else {
            return 0;
        }
        if (n - i < len)
            return 0;
        for (unsigned k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return 0;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000))
            return 0; /* overlong */
        if ((cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)
            return 0;
        i += len;
    }
    return 1;
}

static void fz_check_detail(const char *detail, size_t cap)
{
    const char *nul = memchr(detail, '\0', cap);

    fz_require(nul != NULL, "detail is NUL-terminated", NULL);
    for (const char *p = detail; p < nul; p++)
        fz_require((unsigned char)*p >= 0x20 && (unsigned char)*p < 0x7f,
                   "detail is printable ASCII", detail);
}

/* Decode prefix + body + suffix into fz_check and return the outcome. */
static tc_reject fz_redecode(const char *prefix, const char *body, size_t body_len,
                             const char *suffix, char *detail, size_t detail_size)
{
    size_t pl = strlen(prefix), sl = strlen(suffix), n = pl + body_len + sl;
    char *msg = malloc(n);
    tc_reject r;

    fz_require(msg != NULL, "malloc", NULL);
    memcpy(msg, prefix, pl);
    memcpy(msg + pl, body, body_len);
    memcpy(msg + pl + body_len, suffix, sl);
    tc_batch_reset(fz_check);
    fz_require(tc_batch_row_begin(fz_check) == TC_OK, "row_begin", NULL);
    r = tc_json_reading_decode(fz_check, msg, n, detail, detail_size);
    free(msg);
    return r;
}

static void fz_check_accepted(const tc_batch *b)
{
    char detail[TC_REJECT_DETAIL_MAX];
    tc_slice id = b->device_id[0], tags = b->tags[0], extra = b->extra[0];
    tc_reject r;

    fz_require(id.ptr != NULL && id.len >= 1 && id.len <= TC_DEVICE_ID_MAX, "device_id length",
               NULL);
    for (uint32_t i = 0; i < id.len; i++)
        fz_require((unsigned char)id.ptr[i] >= 0x20, "device_id has no control characters", NULL);
    fz_require(fz_utf8_ok((const unsigned char *)id.ptr, id.len), "device_id is UTF-8", NULL);
    fz_require(b->time_us[0] >= FZ_TIME_MIN && b->time_us[0] <= FZ_TIME_MAX, "time in range", NULL);
    for (int m = 0; m < TC_METRIC__COUNT; m++) {
        fz_require(b->present[m][0] <= 1, "present is 0/1", NULL);
        if (b->present[m][0])
            fz_require(isfinite(b->metric[m][0]), "metric is finite", NULL);
    }

    if (tags.ptr) {
        fz_require(tags.len >= 2 && tags.ptr[0] == '{' && tags.ptr[tags.len - 1] == '}',
                   "tags is an object text", NULL);
        fz_require(fz_utf8_ok((const unsigned char *)tags.ptr, tags.len), "tags is UTF-8", NULL);
        r = fz_redecode("{\"device_id\":\"x\",\"timestamp\":0,\"tags\":", tags.ptr, tags.len, "}",
                        detail, sizeof(detail));
        fz_require(r == TC_REJECT_NONE, "tags decode again", detail);
        fz_require(fz_check->tags[0].len == tags.len &&
                       memcmp(fz_check->tags[0].ptr, tags.ptr, tags.len) == 0,
                   "tags are a fixed point", NULL);
    }
    if (extra.ptr) {
        fz_require(extra.len >= 6 && extra.ptr[0] == '{' && extra.ptr[extra.len - 1] == '}',
                   "extra is an object text", NULL);
        fz_require(fz_utf8_ok((const unsigned char *)extra.ptr, extra.len), "extra is UTF-8", NULL);
        /* Splice extra's members after the required fields: "{" + ... -> "...0," + rest. */
        r = fz_redecode("{\"device_id\":\"x\",\"timestamp\":0,", extra.ptr + 1, extra.len - 1, "",
                        detail, sizeof(detail));
        fz_require(r == TC_REJECT_NONE, "extra decodes again", detail);
        fz_require(fz_check->extra[0].len == extra.len &&
                       memcmp(fz_check->extra[0].ptr, extra.ptr, extra.len) == 0,
                   "extra is a fixed point", NULL);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char detail[TC_REJECT_DETAIL_MAX];
    tc_reject r;

    if (!fz_batch) {
        /* Small batches, unbounded arenas: BATCH_FULL and TOO_LARGE must then never happen. */
        fz_batch = tc_batch_new(4, 0);
        fz_check = tc_batch_new(4, 0);
        fz_require(fz_batch && fz_check, "tc_batch_new", NULL);
    }
    tc_batch_reset(fz_batch);
    fz_require(tc_batch_row_begin(fz_batch) == TC_OK, "row_begin", NULL);
    memset(detail, 'X', sizeof(detail));
    r = tc_json_reading_decode(fz_batch, (const char *)data, size, detail, sizeof(detail));
    fz_check_detail(detail, sizeof(detail));
    fz_require(r < TC_REJECT__COUNT, "outcome is a rejection code", detail);
    fz_require(r != TC_REJECT_TOO_LARGE, "no TOO_LARGE with an unbounded arena", detail);
    fz_require((r == TC_REJECT_EMPTY) == (size == 0), "EMPTY exactly for size 0", detail);
    /* Deterministic, and the same without a detail buffer. */
    tc_batch_reset(fz_batch);
    fz_require(tc_batch_row_begin(fz_batch) == TC_OK, "row_begin", NULL);
    fz_require(tc_json_reading_decode(fz_batch, (const char *)data, size, NULL, 0) == r,
               "same outcome without a detail buffer", detail);
    if (r == TC_REJECT_NONE) {
        fz_require(detail[0] == '\0', "no detail on success", detail);
        fz_check_accepted(fz_batch);
    } else {
        fz_require(detail[0] != '\0', "a rejection has a detail", NULL);
    }
    return 0;
}
