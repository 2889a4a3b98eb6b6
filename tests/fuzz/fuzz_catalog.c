/*
 * fuzz_catalog.c -- libFuzzer target for the schema catalog (schema/catalog.h): the top level of
 * the Avro schemas a registry serves, and version detection over what was accepted.
 *
 * The first two bytes are a fixed-field mask for detection, the rest a schema text added as
 * version 1 and again as version 2. On top of "no crash, no UB, no leak": a refusal is
 * TC_ERR_INVALID (or NOMEM) with a message and leaves the catalog as it was; an accepted schema
 * has named fields whose fixed bits agree with fixed_mask, numeric defaults are finite, and
 * detection always answers with one of the versions held.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "schema/catalog.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fz_require(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "invariant violated: %s\n", what);
        abort();
    }
}

static void fz_check_version(const tc_catalog_version *v)
{
    uint32_t mask = 0;

    for (size_t i = 0; i < v->nfields; i++) {
        const tc_catalog_field *f = &v->fields[i];
        fz_require(f->name != NULL, "field without a name");
        fz_require(f->fixed >= -1 && f->fixed < TC_CATALOG_FIXED_COUNT, "fixed bit out of range");
        if (f->fixed >= 0)
            mask |= 1u << f->fixed;
        fz_require(!f->default_is_num || (f->default_json && isfinite(f->default_num)),
                   "numeric default without text or not finite");
        fz_require(tc_catalog_has_field(v, f->name, strlen(f->name)), "has_field misses a field");
    }
    fz_require(mask == v->fixed_mask, "fixed_mask disagrees with the fields");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[256];
    tc_catalog *c;
    uint32_t mask;
    const char *keys[2] = {"co2", "firmware"};
    size_t lens[2] = {3, 8};
    const tc_catalog_version *v;

    if (size < 2)
        return 0;
    mask = (uint32_t)data[0] | (uint32_t)(data[1] & 1) << 8;
    c = tc_catalog_new(NULL, "fuzz-value", 0, err, sizeof(err));
    if (!c)
        return 0;
    for (int32_t version = 1; version <= 2; version++) {
        tc_err e = tc_catalog_add(c, version, version * 10, (const char *)data + 2, size - 2, err,
                                  sizeof(err));
        if (e != TC_OK) {
            fz_require(e == TC_ERR_INVALID || e == TC_ERR_NOMEM, "unexpected error code");
            fz_require(err[0] != '\0', "refusal without a message");
            fz_require(tc_catalog_count(c) == 0, "a refusal changed the catalog");
            break;
        }
        fz_require(tc_catalog_count(c) == (size_t)version, "version not added");
        fz_check_version(tc_catalog_latest(c));
        fz_require(tc_catalog_by_id(c, version * 10)->version == version, "by_id is wrong");
        v = tc_catalog_detect(c, mask, keys, lens, data[1] >> 7 ? 2 : 0);
        fz_require(v && v->version >= 1 && v->version <= version, "detection left the catalog");
    }
    tc_catalog_destroy(c);
    return 0;
}
