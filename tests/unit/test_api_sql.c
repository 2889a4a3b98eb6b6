/*
 * test_api_sql.c -- the api migration's options and the SQL it builds (store/api_sql.h).
 *
 * The SQL itself runs in tests/integration/test_api.py; here, what the configuration changes in
 * it: which columns are masked and how, the tenant tag as a quoted literal, names refused before
 * they could reach a statement.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "core/error.h"
#include "store/api_sql.h"

static tc_api_sql_options opts(void)
{
    tc_api_sql_options o = {
        .store_schema = "telemetry",
        .api_schema = "api",
        .audit_schema = "audit",
        .registry_schema = "registry",
        .tenant_tag = "site",
        .personal_columns = "latitude,longitude",
        .personal_digits = 2,
    };
    return o;
}

/* Occurrences of needle in hay. */
static int count(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

static void test_default_masks_location_only(void **state)
{
    char errstr[TC_ERRSTR_MAX];
    tc_api_sql_options o = opts();
    char *sql;

    (void)state;
    sql = tc_api_sql_build(&o, errstr, sizeof(errstr));
    assert_non_null(sql);
    /* latest and readings_raw: the raw column; the rollups: avg, min, max. */
    assert_int_equal(count(sql, "round(r.latitude::numeric, 2)"), 2);
    assert_int_equal(count(sql, "round(r.longitude::numeric, 2)"), 2);
    assert_int_equal(count(sql, "round(x.latitude_avg::numeric, 2)"), 2);
    assert_int_equal(count(sql, "round(x.longitude_max::numeric, 2)"), 2);
    assert_int_equal(count(sql, "round(r.temperature"), 0);
    assert_int_equal(count(sql, "round(x.latitude_n"), 0);
    /* Anomalies are masked as their metric is. */
    assert_non_null(strstr(sql, "ARRAY['', 'latitude', 'longitude']::text[]"));
    assert_non_null(strstr(sql, "round(a.observed::numeric, 2)"));
    /* A viewer sees them rounded. */
    assert_non_null(strstr(sql, "'USAGE') THEN 1 ELSE 0 END"));
    assert_null(strstr(sql, "@P{"));
    assert_null(strstr(sql, "@A"));
    free(sql);
}

static void test_configured_columns_digits_and_hiding(void **state)
{
    char errstr[TC_ERRSTR_MAX];
    tc_api_sql_options o = opts();
    char *sql;

    (void)state;
    o.personal_columns = " battery , latitude";
    o.personal_digits = 4;
    o.viewer_hidden = 1;
    sql = tc_api_sql_build(&o, errstr, sizeof(errstr));
    assert_non_null(sql);
    assert_int_equal(count(sql, "round(r.battery::numeric, 4)"), 2);
    assert_int_equal(count(sql, "round(r.latitude::numeric, 4)"), 2);
    assert_int_equal(count(sql, "round(r.longitude"), 0);
    assert_non_null(strstr(sql, "'USAGE') THEN 0 ELSE 0 END"));
    free(sql);
    o.personal_columns = "";
    sql = tc_api_sql_build(&o, errstr, sizeof(errstr));
    assert_non_null(sql);
    assert_int_equal(count(sql, "round(r."), 0);
    assert_non_null(strstr(sql, "ARRAY['']::text[]"));
    free(sql);
}

static void test_tenant_tag_is_a_quoted_literal(void **state)
{
    char errstr[TC_ERRSTR_MAX];
    tc_api_sql_options o = opts();
    char *sql;

    (void)state;
    o.tenant_tag = "it's";
    sql = tc_api_sql_build(&o, errstr, sizeof(errstr));
    assert_non_null(sql);
    assert_non_null(strstr(sql, "tags->>'it''s'"));
    assert_null(strstr(sql, "tags->>'it's'"));
    free(sql);
}

static void test_schema_names_in_quotes(void **state)
{
    char errstr[TC_ERRSTR_MAX];
    tc_api_sql_options o = opts();
    char *sql;

    (void)state;
    o.store_schema = "T_1";
    o.api_schema = "T_1_api";
    o.audit_schema = "T_1_audit";
    sql = tc_api_sql_build(&o, errstr, sizeof(errstr));
    assert_non_null(sql);
    assert_non_null(strstr(sql, "FROM \"T_1\".readings r"));
    assert_non_null(strstr(sql, "CREATE OR REPLACE VIEW \"T_1_api\".devices"));
    assert_non_null(strstr(sql, "CREATE TABLE IF NOT EXISTS \"T_1_audit\".events"));
    assert_non_null(strstr(sql, "left(md5('\"T_1_audit\"'), 20)"));
    assert_non_null(strstr(sql, "ON \"T_1\".rollup_1m"));
    free(sql);
    o.timescaledb = 1; /* no rollup tables to grant */
    sql = tc_api_sql_build(&o, errstr, sizeof(errstr));
    assert_non_null(sql);
    assert_null(strstr(sql, "rollup_1m"));
    free(sql);
}

static void test_bad_options_refused_with_the_setting(void **state)
{
    static const struct {
        const char *store, *api, *audit, *tag, *personal;
        int digits;
        const char *why;
    } bad[] = {
        {"telemetry", "api\"; DROP", "audit", "site", "", 2, "api.schema"},
        {"telemetry", "api", "", "site", "", 2, "audit.schema"},
        {"1x", "api", "audit", "site", "", 2, "postgres.schema"},
        {"telemetry", "api", "audit", "site", "", 2, NULL},
        {"telemetry", "telemetry", "audit", "site", "", 2, "three different schemas"},
        {"telemetry", "api", "api", "site", "", 2, "three different schemas"},
        {"telemetry", "api", "audit", "", "", 2, "api.tenant_tag"},
        {"telemetry", "api", "audit", "site", "latitude,email", 2, "\"email\" is not a reading"},
        {"telemetry", "api", "audit", "site", "tags", 2, "\"tags\" is not a reading"},
        {"telemetry", "api", "audit", "site", "", 7, "api.personal_digits=7"},
        {"telemetry", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "audit",
         "site", "", 2, "api.schema"},
    };
    char errstr[TC_ERRSTR_MAX];

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        tc_api_sql_options o = opts();
        o.store_schema = bad[i].store;
        o.api_schema = bad[i].api;
        o.audit_schema = bad[i].audit;
        o.tenant_tag = bad[i].tag;
        o.personal_columns = bad[i].personal;
        o.personal_digits = bad[i].digits;
        errstr[0] = '\0';
        if (!bad[i].why) {
            assert_int_equal(tc_api_sql_check(&o, errstr, sizeof(errstr)), TC_OK);
            continue;
        }
        assert_int_equal(tc_api_sql_check(&o, errstr, sizeof(errstr)), TC_ERR_CONFIG);
        if (!strstr(errstr, bad[i].why))
            fail_msg("case %zu: \"%s\" does not say \"%s\"", i, errstr, bad[i].why);
        assert_null(tc_api_sql_build(&o, errstr, sizeof(errstr)));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_masks_location_only),
        cmocka_unit_test(test_configured_columns_digits_and_hiding),
        cmocka_unit_test(test_tenant_tag_is_a_quoted_literal),
        cmocka_unit_test(test_schema_names_in_quotes),
        cmocka_unit_test(test_bad_options_refused_with_the_setting),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
