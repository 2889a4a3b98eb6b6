/*
 * test_catalog.c -- the schema catalog: parsing versions, version detection from the fields a JSON
 * reading has, lookups by id, and the defaults it keeps.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "core/error.h"
#include "schema/catalog.h"

#define V1_FIELDS                                                                                  \
    "{\"name\":\"device_id\",\"type\":\"string\"},"                                                \
    "{\"name\":\"timestamp\",\"type\":{\"type\":\"long\",\"logicalType\":\"timestamp-millis\"}},"  \
    "{\"name\":\"temperature\",\"type\":[\"null\",\"double\"],\"default\":null},"                  \
    "{\"name\":\"humidity\",\"type\":[\"null\",\"double\"],\"default\":null},"                     \
    "{\"name\":\"pressure\",\"type\":[\"null\",\"double\"],\"default\":null},"                     \
    "{\"name\":\"battery\",\"type\":[\"null\",\"double\"],\"default\":null},"                      \
    "{\"name\":\"latitude\",\"type\":[\"null\",\"double\"],\"default\":null},"                     \
    "{\"name\":\"longitude\",\"type\":[\"null\",\"double\"],\"default\":null},"                    \
    "{\"name\":\"tags\",\"type\":{\"type\":\"map\",\"values\":\"string\"},\"default\":{}}"

static const char v1[] = "{\"type\":\"record\",\"name\":\"Reading\",\"fields\":[" V1_FIELDS "]}";
/* v2: an optional numeric field with a non-null default, an optional string one. */
static const char v2[] = "{\"type\":\"record\",\"name\":\"Reading\",\"fields\":[" V1_FIELDS
                         ",{\"name\":\"rssi\",\"type\":\"int\",\"default\":-100}"
                         ",{\"name\":\"firmware\",\"type\":[\"string\",\"null\"],"
                         "\"default\":\"unknown\"}]}";
/* v3: drops humidity (allowed: readers ignore it), adds co2. */
static const char v3[] =
    "{\"type\":\"record\",\"name\":\"Reading\",\"fields\":["
    "{\"name\":\"device_id\",\"type\":\"string\"},"
    "{\"name\":\"timestamp\",\"type\":\"long\"},"
    "{\"name\":\"temperature\",\"type\":[\"null\",\"double\"],\"default\":null},"
    "{\"name\":\"co2\",\"type\":[\"null\",\"float\"],\"default\":null}]}";

#define BIT(f)    (1u << (f))
#define BASE      (BIT(TC_CATALOG_F_DEVICE) | BIT(TC_CATALOG_F_TIMESTAMP))
#define TEMP      BIT(TC_CATALOG_F_METRIC0 + 0)
#define HUMIDITY  BIT(TC_CATALOG_F_METRIC0 + 1)
#define ALL_FIXED ((1u << TC_CATALOG_FIXED_COUNT) - 1)

static tc_catalog *catalog_with(int nversions)
{
    static const char *const schemas[] = {v1, v2, v3};
    char err[TC_ERRSTR_MAX];
    tc_catalog *c = tc_catalog_new(NULL, "t-value", 0, err, sizeof(err));

    assert_non_null(c);
    for (int i = 0; i < nversions; i++)
        assert_int_equal(
            tc_catalog_add(c, i + 1, 100 + i, schemas[i], strlen(schemas[i]), err, sizeof(err)),
            TC_OK);
    return c;
}

static const tc_catalog_version *detect(tc_catalog *c, uint32_t mask, const char *k1,
                                        const char *k2)
{
    const char *keys[2];
    size_t lens[2], n = 0;

    if (k1) {
        keys[n] = k1;
        lens[n++] = strlen(k1);
    }
    if (k2) {
        keys[n] = k2;
        lens[n++] = strlen(k2);
    }
    return tc_catalog_detect(c, mask, keys, lens, n);
}

static void test_parse_fields(void **state)
{
    tc_catalog *c = catalog_with(2);
    const tc_catalog_version *v;

    (void)state;
    assert_int_equal(tc_catalog_count(c), 2);
    assert_true(tc_catalog_loaded(c));
    v = tc_catalog_latest(c);
    assert_int_equal(v->version, 2);
    assert_int_equal(v->id, 101);
    assert_int_equal(v->fixed_mask, ALL_FIXED);
    assert_int_equal(v->nfields, 11);
    /* tags: a non-null default ({}), numeric fields recognised through unions and logical types */
    assert_string_equal(v->fields[8].name, "tags");
    assert_string_equal(v->fields[8].default_json, "{}");
    assert_true(v->fields[1].numeric);
    assert_true(v->fields[2].numeric);
    assert_null(v->fields[2].default_json);
    assert_string_equal(v->fields[9].name, "rssi");
    assert_int_equal(v->fields[9].fixed, -1);
    assert_true(v->fields[9].numeric);
    assert_true(v->fields[9].default_is_num);
    assert_true(v->fields[9].default_num == -100.0);
    assert_string_equal(v->fields[10].default_json, "\"unknown\"");
    assert_false(v->fields[10].numeric);
    assert_false(v->fields[10].default_is_num);
    assert_true(tc_catalog_has_field(v, "firmware", 8));
    assert_false(tc_catalog_has_field(v, "firm", 4));
    tc_catalog_destroy(c);
}

static void test_by_id(void **state)
{
    tc_catalog *c = catalog_with(3);

    (void)state;
    assert_int_equal(tc_catalog_by_id(c, 100)->version, 1);
    assert_int_equal(tc_catalog_by_id(c, 102)->version, 3);
    assert_null(tc_catalog_by_id(c, 7));
    tc_catalog_destroy(c);
}

static void test_detect(void **state)
{
    tc_catalog *c = catalog_with(2);

    (void)state;
    /* v1 fields only: v1, although v2 names them all too (v2 would miss two of its own) */
    assert_int_equal(detect(c, ALL_FIXED, NULL, NULL)->version, 1);
    assert_int_equal(detect(c, BASE | TEMP, NULL, NULL)->version, 1);
    /* one of v2's fields: v2 */
    assert_int_equal(detect(c, BASE | TEMP, "rssi", NULL)->version, 2);
    assert_int_equal(detect(c, ALL_FIXED, "rssi", "firmware")->version, 2);
    /* a field no version names: the version that names most of the reading, v2 here */
    assert_int_equal(detect(c, BASE, "rssi", "nonsense")->version, 2);
    assert_int_equal(detect(c, BASE, "nonsense", NULL)->version, 1);
    /* memoized answers stay right after a new version arrives */
    assert_int_equal(detect(c, BASE | TEMP | HUMIDITY, NULL, NULL)->version, 1);
    tc_catalog_destroy(c);

    c = catalog_with(3);
    /* v3 dropped humidity and added co2: a reading with co2 and no humidity is v3 */
    assert_int_equal(detect(c, BASE | TEMP, "co2", NULL)->version, 3);
    /* device, timestamp, temperature only: v3 misses nothing, v1 misses seven */
    assert_int_equal(detect(c, BASE | TEMP, NULL, NULL)->version, 3);
    /* with humidity: v3 does not cover it; v1 does and misses fewer than v2 */
    assert_int_equal(detect(c, BASE | TEMP | HUMIDITY, NULL, NULL)->version, 1);
    tc_catalog_destroy(c);
}

static void test_empty_and_bad(void **state)
{
    char err[TC_ERRSTR_MAX];
    const tc_registry_client_options ftp = {.url = "ftp://x"};
    tc_catalog *c = catalog_with(0);

    (void)state;
    assert_null(detect(c, ALL_FIXED, NULL, NULL));
    assert_null(tc_catalog_latest(c));
    assert_false(tc_catalog_loaded(c));
    assert_int_equal(tc_catalog_add(c, 1, 1, "\"string\"", 8, err, sizeof(err)), TC_ERR_INVALID);
    assert_int_equal(tc_catalog_add(c, 1, 1, "{\"type\":", 8, err, sizeof(err)), TC_ERR_INVALID);
    assert_int_equal(tc_catalog_count(c), 0);
    /* replacing a version keeps one entry */
    assert_int_equal(tc_catalog_add(c, 1, 5, v1, strlen(v1), err, sizeof(err)), TC_OK);
    assert_int_equal(tc_catalog_add(c, 1, 6, v2, strlen(v2), err, sizeof(err)), TC_OK);
    assert_int_equal(tc_catalog_count(c), 1);
    assert_int_equal(tc_catalog_latest(c)->id, 6);
    tc_catalog_destroy(c);
    assert_null(tc_catalog_new(&ftp, "s", 0, err, sizeof(err)));
    /* The registry client's message, the same as the Avro schema cache's: it names the setting. */
    assert_string_equal(err, "invalid schema registry URL \"ftp://x\" in registry.url (expected "
                             "http[s]://host[:port][/path])");
    assert_null(tc_catalog_new(NULL, "", 0, err, sizeof(err)));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_fields),
        cmocka_unit_test(test_by_id),
        cmocka_unit_test(test_detect),
        cmocka_unit_test(test_empty_and_bad),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
