/*
 * fuzz_avro_reading.c -- libFuzzer target for tc_avro_reading_decode (and tc_avro_plan_new).
 *
 * Input whose first byte is '{' is a writer schema: it is compiled, and when a plan comes out the
 * rest of the machinery must not care (freed at once). Any other input is an Avro body decoded with
 * one fixed plan whose writer schema has every field kind: promotions, unions with null, tags, a
 * recursive record, arrays (of nulls too), maps, enums, fixed, bytes. libFuzzer hands over a heap
 * buffer of exactly size bytes, so ASan reports any read past len. Every accepted reading is
 * checked against what the sinks rely on: device_id is 1..TC_DEVICE_ID_MAX bytes of UTF-8 without
 * control characters; tags and extra are JSON objects the strict DOM parser accepts (so jsonb will
 * too). Every detail is printable ASCII, and decoding again without a detail buffer gives the same
 * result.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/batch.h"
#include "core/json.h"
#include "core/reject.h"
#include "schema/avro_reading.h"

static const char fz_schema[] =
    "{\"type\":\"record\",\"name\":\"F\",\"fields\":["
    "{\"name\":\"device_id\",\"type\":[\"null\",\"string\",\"bytes\"]},"
    "{\"name\":\"timestamp\",\"type\":[\"null\",{\"type\":\"long\","
    "\"logicalType\":\"timestamp-micros\"},\"string\"]},"
    "{\"name\":\"temperature\",\"type\":[\"null\",\"int\",\"long\",\"float\",\"double\"]},"
    "{\"name\":\"humidity\",\"type\":\"float\"},"
    "{\"name\":\"tags\",\"type\":[\"null\",{\"type\":\"map\",\"values\":\"string\"}]},"
    "{\"name\":\"b\",\"type\":\"boolean\"},"
    "{\"name\":\"e\",\"type\":{\"type\":\"enum\",\"name\":\"E\",\"symbols\":[\"A\",\"B\"]}},"
    "{\"name\":\"x\",\"type\":{\"type\":\"fixed\",\"name\":\"X\",\"size\":2}},"
    "{\"name\":\"r\",\"type\":\"bytes\"},"
    "{\"name\":\"n\",\"type\":{\"type\":\"record\",\"name\":\"N\",\"fields\":["
    "{\"name\":\"v\",\"type\":\"double\"},{\"name\":\"next\",\"type\":[\"null\",\"N\"]}]}},"
    "{\"name\":\"a\",\"type\":{\"type\":\"array\",\"items\":\"null\"}},"
    "{\"name\":\"m\",\"type\":{\"type\":\"map\",\"values\":{\"type\":\"array\",\"items\":"
    "[\"int\",\"string\"]}}}]}";

static tc_avro_plan *fz_plan;
static tc_batch *fz_batch;

static void fz_require(int ok, const char *what, const char *detail)
{
    if (!ok) {
        fprintf(stderr, "invariant violated: %s (%s)\n", what, detail ? detail : "");
        abort();
    }
}

static void fz_json_object(tc_slice s, const char *what)
{
    tc_json_limits lim = {0, TC_AVRO_DEPTH_MAX + 1, (size_t)1 << 24, 0};
    tc_json_doc *doc;
    char err[TC_ERRSTR_MAX];

    if (!s.ptr)
        return;
    fz_require(s.ptr[s.len] == '\0', "kept text is NUL-terminated", what);
    doc = tc_json_parse(s.ptr, s.len, &lim, NULL, err, sizeof(err));
    /* Avro maps may repeat a key; jsonb accepts that (the last wins), the strict DOM does not. */
    if (!doc && strstr(err, "duplicate member name"))
        return;
    fz_require(doc != NULL, what, err);
    fz_require(tc_json_root(doc)->type == TC_JSON_OBJECT, "kept text is an object", what);
    tc_json_free(doc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char detail[TC_REJECT_DETAIL_MAX], err[TC_ERRSTR_MAX];
    tc_reject r, r2;

    if (!fz_plan) {
        fz_plan = tc_avro_plan_new(fz_schema, strlen(fz_schema), err, sizeof(err));
        fz_batch = tc_batch_new(1, 0);
        fz_require(fz_plan && fz_batch, "setup", err);
    }
    if (size > 0 && data[0] == '{') {
        tc_avro_plan_free(tc_avro_plan_new((const char *)data, size, err, sizeof(err)));
        return 0;
    }
    tc_batch_reset(fz_batch);
    tc_batch_row_begin(fz_batch);
    r = tc_avro_reading_decode(fz_batch, fz_plan, (const char *)data, size, detail, sizeof(detail));
    for (const char *c = detail; *c; c++)
        fz_require(*c >= 0x20 && *c < 0x7f, "printable detail", detail);
    if (r == TC_REJECT_NONE) {
        tc_slice dev = fz_batch->device_id[0];

        fz_require(detail[0] == '\0', "no detail on success", detail);
        fz_require(dev.ptr && dev.len >= 1 && dev.len <= TC_DEVICE_ID_MAX, "device_id length",
                   NULL);
        fz_require(tc_json_utf8_valid(dev.ptr, dev.len), "device_id UTF-8", NULL);
        for (size_t i = 0; i < dev.len; i++)
            fz_require((unsigned char)dev.ptr[i] >= 0x20, "device_id control chars", NULL);
        fz_json_object(fz_batch->tags[0], "tags");
        fz_json_object(fz_batch->extra[0], "extra");
    } else {
        fz_require(detail[0] != '\0', "a detail on rejection", NULL);
    }
    tc_batch_reset(fz_batch);
    tc_batch_row_begin(fz_batch);
    r2 = tc_avro_reading_decode(fz_batch, fz_plan, (const char *)data, size, NULL, 0);
    fz_require(r == r2, "same outcome without a detail buffer", detail);
    return 0;
}
