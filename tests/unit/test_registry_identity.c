/*
 * test_registry_identity.c -- the registry's schema identity and reference resolution
 * (registry_identity.h), table-driven, and the registry over the in-memory store through the
 * router: ids by identity, references, modes and Accept negotiation.
 *
 * Each row names what it shows; a failure prints the row.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "api/http.h"
#include "core/json.h"
#include "core/log.h"
#include "schema/registry.h"
#include "schema/registry_identity.h"

static tc_json_doc *must_json(const char *text)
{
    char e[TC_ERRSTR_MAX];
    tc_json_doc *d = tc_json_parse(text, strlen(text), NULL, NULL, e, sizeof(e));

    if (!d)
        fail_msg("not JSON: %s\n%s", e, text);
    return d;
}

typedef struct form_case {
    const char *what;
    const char *schema;
    const char *form;       /* the identity form */
    const char *normalized; /* with normalize */
} form_case;

static const form_case forms[] = {
    {"members sorted, whitespace gone", "{ \"type\" : \"record\", \"name\":\"R\", \"fields\":[]}",
     "{\"fields\":[],\"name\":\"R\",\"type\":\"record\"}",
     "{\"fields\":[],\"name\":\"R\",\"type\":\"record\"}"},
    {"a primitive object alone is the primitive", "{\"type\":\"int\"}", "\"int\"", "\"int\""},
    {"a primitive with a logical type stays an object",
     "{\"logicalType\":\"timestamp-millis\",\"type\":\"long\"}",
     "{\"logicalType\":\"timestamp-millis\",\"type\":\"long\"}",
     "{\"logicalType\":\"timestamp-millis\",\"type\":\"long\"}"},
    {"dotted name: short name and namespace; normalised: the full name",
     "{\"type\":\"fixed\",\"name\":\"a.b.F\",\"size\":4}",
     "{\"name\":\"F\",\"namespace\":\"a.b\",\"size\":4,\"type\":\"fixed\"}",
     "{\"name\":\"a.b.F\",\"size\":4,\"type\":\"fixed\"}"},
    {"an inherited namespace is not written; references relative",
     "{\"type\":\"record\",\"name\":\"R\",\"namespace\":\"n\",\"fields\":[{\"name\":\"e\","
     "\"type\":{\"type\":\"enum\",\"name\":\"n.E\",\"symbols\":[\"A\"]}},{\"name\":\"f\","
     "\"type\":\"n.E\"}]}",
     "{\"fields\":[{\"name\":\"e\",\"type\":{\"name\":\"E\",\"symbols\":[\"A\"],\"type\":\"enum\"}}"
     ","
     "{\"name\":\"f\",\"type\":\"E\"}],\"name\":\"R\",\"namespace\":\"n\",\"type\":\"record\"}",
     "{\"fields\":[{\"name\":\"e\",\"type\":{\"name\":\"n.E\",\"symbols\":[\"A\"],\"type\":"
     "\"enum\"}},{\"name\":\"f\",\"type\":\"n.E\"}],\"name\":\"n.R\",\"type\":\"record\"}"},
    {"the default order goes, another stays; defaults and doc kept as written",
     "{\"type\":\"record\",\"name\":\"R\",\"fields\":[{\"name\":\"a\",\"type\":\"double\","
     "\"order\":\"ascending\",\"default\":1.50,\"doc\":\"x\"},{\"name\":\"b\",\"type\":\"int\","
     "\"order\":\"descending\",\"x-prop\":{\"z\":1,\"a\":2}}]}",
     "{\"fields\":[{\"default\":1.50,\"doc\":\"x\",\"name\":\"a\",\"type\":\"double\"},{\"name\":"
     "\"b\",\"order\":\"descending\",\"type\":\"int\",\"x-prop\":{\"a\":2,\"z\":1}}],\"name\":"
     "\"R\","
     "\"type\":\"record\"}",
     "{\"fields\":[{\"default\":1.50,\"doc\":\"x\",\"name\":\"a\",\"type\":\"double\"},{\"name\":"
     "\"b\",\"order\":\"descending\",\"type\":\"int\",\"x-prop\":{\"a\":2,\"z\":1}}],\"name\":"
     "\"R\","
     "\"type\":\"record\"}"},
    {"arrays, maps and unions keep their order",
     "[\"null\",{\"type\":\"array\",\"items\":{\"type\":\"string\"}},{\"values\":\"long\","
     "\"type\":\"map\"}]",
     "[\"null\",{\"items\":\"string\",\"type\":\"array\"},{\"type\":\"map\",\"values\":\"long\"}]",
     "[\"null\",{\"items\":\"string\",\"type\":\"array\"},{\"type\":\"map\",\"values\":\"long\"}]"},
    {"a type in the null namespace inside a namespaced record",
     "{\"type\":\"record\",\"name\":\"R\",\"namespace\":\"n\",\"fields\":[{\"name\":\"x\","
     "\"type\":{\"type\":\"fixed\",\"name\":\"F\",\"namespace\":\"\",\"size\":1}}]}",
     "{\"fields\":[{\"name\":\"x\",\"type\":{\"name\":\"F\",\"namespace\":\"\",\"size\":1,\"type\":"
     "\"fixed\"}}],\"name\":\"R\",\"namespace\":\"n\",\"type\":\"record\"}",
     "{\"fields\":[{\"name\":\"x\",\"type\":{\"name\":\"F\",\"namespace\":\"\",\"size\":1,\"type\":"
     "\"fixed\"}}],\"name\":\"n.R\",\"type\":\"record\"}"},
};

static void test_forms(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
        tc_json_doc *d = must_json(forms[i].schema);
        char *f = tc_reg_schema_form(tc_json_root(d), 0, NULL);
        char *n = tc_reg_schema_form(tc_json_root(d), 1, NULL);

        assert_non_null(f);
        assert_non_null(n);
        if (strcmp(f, forms[i].form) || strcmp(n, forms[i].normalized))
            fail_msg("%s:\n form %s\n want %s\n norm %s\n want %s", forms[i].what, f, forms[i].form,
                     n, forms[i].normalized);
        free(f);
        free(n);
        tc_json_free(d);
    }
}

static void test_identity_parts(void **state)
{
    tc_json_doc *s = must_json("\"string\"");
    tc_json_doc *r1 = must_json("[{\"subject\":\"s\",\"version\":1,\"name\":\"X\"}]");
    tc_json_doc *r2 = must_json("[{\"name\":\"X\",\"subject\":\"s\",\"version\":2}]");
    tc_json_doc *m = must_json("{\"properties\":{\"owner\":\"a\"}}");
    tc_json_doc *empty = must_json("[]");
    char *plain, *with1, *with2, *with_m, *with_empty;

    (void)state;
    plain = tc_reg_identity(tc_json_root(s), 0, NULL, NULL, NULL);
    with1 = tc_reg_identity(tc_json_root(s), 0, tc_json_root(r1), NULL, NULL);
    with2 = tc_reg_identity(tc_json_root(s), 0, tc_json_root(r2), NULL, NULL);
    with_m = tc_reg_identity(tc_json_root(s), 0, NULL, tc_json_root(m), NULL);
    with_empty = tc_reg_identity(tc_json_root(s), 0, tc_json_root(empty), NULL, NULL);
    assert_string_equal(plain, "\"string\"");
    assert_string_equal(
        with1, "\"string\"\nreferences:[{\"name\":\"X\",\"subject\":\"s\",\"version\":1}]");
    assert_string_not_equal(with1, with2);
    assert_string_equal(with_m, "\"string\"\nmetadata:{\"properties\":{\"owner\":\"a\"}}");
    assert_string_equal(with_empty, plain); /* no references is "references": [] */
    free(plain);
    free(with1);
    free(with2);
    free(with_m);
    free(with_empty);
    tc_json_free(s);
    tc_json_free(r1);
    tc_json_free(r2);
    tc_json_free(m);
    tc_json_free(empty);
}

static void test_inline(void **state)
{
    /* C is shared by A and B (a diamond): inlined once, named the second time. */
    tc_json_doc *c = must_json("{\"type\":\"record\",\"name\":\"C\",\"namespace\":\"x\","
                               "\"fields\":[{\"name\":\"v\",\"type\":\"int\"}]}");
    tc_json_doc *a = must_json("{\"type\":\"record\",\"name\":\"x.A\",\"fields\":[{\"name\":\"c\","
                               "\"type\":{\"type\":\"record\",\"name\":\"C\",\"namespace\":\"x\","
                               "\"fields\":[{\"name\":\"v\",\"type\":\"int\"}]}}]}");
    tc_json_doc *b = must_json("{\"type\":\"record\",\"name\":\"x.B\",\"fields\":[{\"name\":\"c\","
                               "\"type\":{\"type\":\"record\",\"name\":\"x.C\",\"fields\":[{"
                               "\"name\":\"v\",\"type\":\"int\"}]}}]}");
    tc_json_doc *top = must_json("{\"type\":\"record\",\"name\":\"Top\",\"namespace\":\"other\","
                                 "\"fields\":[{\"name\":\"a\",\"type\":\"x.A\"},{\"name\":\"b\","
                                 "\"type\":\"x.B\"},{\"name\":\"a2\",\"type\":\"x.A\"},{\"name\":"
                                 "\"c\",\"type\":[\"null\",\"x.C\"]}]}");
    tc_reg_named refs[3];
    char err[TC_ERRSTR_MAX], *out;

    (void)state;
    /* B is named by file, as some clients do: found by the full name of the type it holds. */
    refs[0] = (tc_reg_named){"x.A", tc_json_root(a)};
    refs[1] = (tc_reg_named){"b.avsc", tc_json_root(b)};
    refs[2] = (tc_reg_named){"x.C", tc_json_root(c)};
    out = tc_reg_schema_inline(tc_json_root(top), refs, 3, NULL, err, sizeof(err));
    assert_non_null(out);
    assert_string_equal(
        out,
        "{\"fields\":[{\"name\":\"a\",\"type\":{\"fields\":[{\"name\":\"c\",\"type\":{"
        "\"fields\":[{\"name\":\"v\",\"type\":\"int\"}],\"name\":\"x.C\",\"type\":\"record\"}}],"
        "\"name\":\"x.A\",\"type\":\"record\"}},{\"name\":\"b\",\"type\":{\"fields\":[{\"name\":"
        "\"c\",\"type\":\"x.C\"}],\"name\":\"x.B\",\"type\":\"record\"}},{\"name\":\"a2\","
        "\"type\":\"x.A\"},{\"name\":\"c\",\"type\":[\"null\",\"x.C\"]}],\"name\":\"other.Top\","
        "\"type\":\"record\"}");
    free(out);
    tc_json_free(a);
    tc_json_free(b);
    tc_json_free(c);
    tc_json_free(top);
}

/* ---- the registry over the in-memory store ---- */

typedef struct fixture {
    tc_registry *reg;
    tc_http_server *server;
} fixture;

static int setup(void **state)
{
    char e[TC_ERRSTR_MAX];
    tc_http_options opt;
    fixture *f = calloc(1, sizeof(*f));

    tc_log_setup(TC_LOG_ERROR, TC_LOG_HUMAN);
    f->reg = tc_registry_new(tc_reg_store_mem_new(), e, sizeof(e));
    tc_registry_http_options(&opt);
    f->server = tc_http_server_new(NULL, &opt, e, sizeof(e));
    assert_non_null(f->reg);
    assert_non_null(f->server);
    assert_int_equal(tc_registry_mount(f->reg, f->server), TC_OK);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;

    tc_http_server_destroy(f->server);
    tc_registry_destroy(f->reg);
    free(f);
    return 0;
}

/* status of one request; its body's "id" (or error_code) in *num when it has one. */
static int req(fixture *f, const char *method, const char *target, const char *body,
               const char *accept, long long *num, const char **ct)
{
    tc_http_response r;
    tc_json_doc *d;
    int64_t v = -1;
    int status;

    tc_http_dispatch_accept(f->server, method, target, body ? "application/json" : NULL, accept,
                            body ? body : "", body ? strlen(body) : 0, &r);
    d = tc_json_parse(r.body, r.body_len, NULL, NULL, NULL, 0);
    if (d && !tc_json_int64(tc_json_get(tc_json_root(d), "id"), &v))
        tc_json_int64(tc_json_get(tc_json_root(d), "error_code"), &v);
    if (num)
        *num = v;
    if (ct)
        *ct = r.content_type;
    status = r.status;
    tc_json_free(d);
    tc_http_response_clear(&r);
    return status;
}

/* Register schema (JSON text) under subject, with extra members; returns the id (asserts 200). */
static long long reg(fixture *f, const char *subject, const char *schema, const char *extra)
{
    char target[256];
    tc_jbuf b;
    long long id;

    snprintf(target, sizeof(target), "/subjects/%s/versions", subject);
    tc_jbuf_init(&b, 0);
    tc_jbuf_obj_begin(&b);
    tc_jbuf_key(&b, "schema");
    tc_jbuf_str(&b, schema);
    tc_jbuf_obj_end(&b);
    if (extra) { /* splice ",extra" before the closing brace */
        b.data[b.len - 1] = ',';
        tc_jbuf_append(&b, extra, strlen(extra));
        tc_jbuf_append(&b, "}", 1);
    }
    if (req(f, "POST", target, b.data, NULL, &id, NULL) != 200)
        fail_msg("registering under %s failed (%lld): %s", subject, id, schema);
    tc_jbuf_free(&b);
    return id;
}

/* A record with one long field "ts", and the same with attr among the field's attributes. */
#define T_HEAD       "{\"type\":\"record\",\"name\":\"t\",\"fields\":[{\"name\":\"ts\",\"type\":\"long\""
#define T_BASE       T_HEAD "}]}"
#define T_WITH(attr) T_HEAD "," attr "}]}"

static void test_registry_ids(void **state)
{
    static const char *const distinct[] = {
        "{\"type\":\"record\",\"name\":\"t\",\"fields\":[{\"name\":\"ts\",\"type\":{\"type\":"
        "\"long\",\"logicalType\":\"timestamp-millis\"}}]}",
        T_WITH("\"default\":0"),
        T_WITH("\"doc\":\"d\""),
        T_WITH("\"aliases\":[\"x\"]"),
        T_WITH("\"order\":\"ignore\""),
        T_WITH("\"x-unit\":\"ms\""),
        "{\"type\":\"record\",\"name\":\"t\",\"doc\":\"r\",\"fields\":[{\"name\":\"ts\",\"type\":"
        "\"long\"}]}",
    };
    static const char *const same[] = {
        "{ \"fields\" : [ { \"type\" : \"long\", \"name\" : \"ts\" } ], \"name\" : \"t\", "
        "\"type\" : \"record\" }",
        "{\"type\":\"record\",\"name\":\"t\",\"fields\":[{\"name\":\"ts\",\"type\":{\"type\":"
        "\"long\"}}]}",
        T_WITH("\"order\":\"ascending\""),
    };
    fixture *f = *state;
    long long base = reg(f, "base", T_BASE, NULL), ids[8];
    char subject[32];

    for (size_t i = 0; i < sizeof(distinct) / sizeof(distinct[0]); i++) {
        snprintf(subject, sizeof(subject), "d%zu", i);
        ids[i] = reg(f, subject, distinct[i], NULL);
        if (ids[i] == base)
            fail_msg("row %zu got the base id: %s", i, distinct[i]);
        for (size_t k = 0; k < i; k++)
            if (ids[k] == ids[i])
                fail_msg("rows %zu and %zu share id %lld", k, i, ids[i]);
    }
    for (size_t i = 0; i < sizeof(same) / sizeof(same[0]); i++) {
        snprintf(subject, sizeof(subject), "s%zu", i);
        if (reg(f, subject, same[i], NULL) != base)
            fail_msg("row %zu is not the base id: %s", i, same[i]);
    }
    /* Metadata is part of the identity. */
    assert_int_not_equal(reg(f, "m", T_BASE, "\"metadata\":{\"properties\":{\"a\":\"b\"}}"), base);
}

static void test_registry_references_modes_accept(void **state)
{
    fixture *f = *state;
    const char *ct = NULL;
    long long id, code;

    reg(f, "loc",
        "{\"type\":\"record\",\"name\":\"L\",\"namespace\":\"s\",\"fields\":[{\"name\":"
        "\"lat\",\"type\":\"double\"}]}",
        NULL);
    id = reg(f, "top",
             "{\"type\":\"record\",\"name\":\"T\",\"fields\":[{\"name\":\"l\",\"type\":\"s.L\"}]}",
             "\"references\":[{\"name\":\"s.L\",\"subject\":\"loc\",\"version\":1}]");
    assert_int_equal(req(f, "GET", "/subjects/loc/versions/1/referencedby", NULL, NULL, NULL, NULL),
                     200);
    assert_int_equal(req(f, "DELETE", "/subjects/loc/versions/1", NULL, NULL, &code, NULL), 422);
    assert_int_equal(code, 42206);
    assert_int_equal(req(f, "GET", "/schemas/ids/1x", NULL, NULL, &code, NULL), 404);
    assert_int_equal(code, 404);
    assert_true(id > 0);

    assert_int_equal(req(f, "PUT", "/mode/top", "{\"mode\":\"READONLY\"}", NULL, NULL, NULL), 200);
    assert_int_equal(
        req(f, "POST", "/subjects/top/versions", "{\"schema\":\"\\\"int\\\"\"}", NULL, &code, NULL),
        422);
    assert_int_equal(code, 42205);

    assert_int_equal(req(f, "GET", "/subjects", NULL, "application/json", NULL, &ct), 200);
    assert_string_equal(ct, "application/json");
    assert_int_equal(req(f, "GET", "/subjects", NULL, "text/plain", &code, NULL), 406);
    assert_int_equal(code, 406);
    assert_int_equal(req(f, "GET", "/subjects", NULL, "*/*;q=0.1", NULL, &ct), 200);
    assert_string_equal(ct, TC_REGISTRY_CT);
}

/* Level k references level k-1 twice: resolving it meets 2^(k+1) - 2 references. The work per
 * request is capped, so a deep enough chain is refused rather than resolved for ever. */
static void test_registry_reference_work_is_bounded(void **state)
{
    fixture *f = *state;
    char subject[16], schema[256], refs[256], target[64], body[1024];
    long long id = 0;
    int k, status = 200;

    reg(f, "l0", "{\"type\":\"record\",\"name\":\"L0\",\"fields\":[]}", NULL);
    for (k = 1; k <= 12 && status == 200; k++) {
        snprintf(subject, sizeof(subject), "l%d", k);
        snprintf(
            schema, sizeof(schema),
            "{\\\"type\\\":\\\"record\\\",\\\"name\\\":\\\"L%d\\\",\\\"fields\\\":[{\\\"name\\\":"
            "\\\"x\\\",\\\"type\\\":\\\"L%d\\\"}]}",
            k, k - 1);
        snprintf(refs, sizeof(refs),
                 "[{\"name\":\"L%d\",\"subject\":\"l%d\",\"version\":1},{\"name\":\"L%d\","
                 "\"subject\":\"l%d\",\"version\":1}]",
                 k - 1, k - 1, k - 1, k - 1);
        snprintf(target, sizeof(target), "/subjects/%s/versions", subject);
        snprintf(body, sizeof(body), "{\"schema\":\"%s\",\"references\":%s}", schema, refs);
        status = req(f, "POST", target, body, NULL, &id, NULL);
    }
    /* Levels 1..11 meet at most 4094 references; level 12 would meet 8190. */
    assert_int_equal(k - 1, 12);
    assert_int_equal(status, 422);
    assert_int_equal(id, 42201);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forms),
        cmocka_unit_test(test_identity_parts),
        cmocka_unit_test(test_inline),
        cmocka_unit_test_setup_teardown(test_registry_ids, setup, teardown),
        cmocka_unit_test_setup_teardown(test_registry_references_modes_accept, setup, teardown),
        cmocka_unit_test_setup_teardown(test_registry_reference_work_is_bounded, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
