/*
 * test_avro_compat.c -- Avro schemas for the registry: validation, Parsing Canonical Form, and
 * compatibility (tc_avro_can_read and the level evaluator), table-driven.
 *
 * Each row of a table names the rule it exercises; a failure prints the row, so the table reads as
 * the specification of what the registry accepts.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "schema/avro_schema.h"

static tc_avro_schema *must_parse(const char *text)
{
    char e[TC_ERRSTR_MAX];
    tc_err err;
    tc_avro_schema *s = tc_avro_schema_parse(text, strlen(text), &err, e, sizeof(e));

    if (!s)
        fail_msg("schema did not parse: %s\n%s", e, text);
    return s;
}

/* ---- reader/writer resolution ---- */

typedef struct rw_case {
    const char *rule;
    const char *reader;
    const char *writer;
    int can_read;
} rw_case;

#define REC1(name, f1)     "{\"type\":\"record\",\"name\":\"" name "\",\"fields\":[" f1 "]}"
#define REC2(name, f1, f2) "{\"type\":\"record\",\"name\":\"" name "\",\"fields\":[" f1 "," f2 "]}"
#define FLD(n, t)          "{\"name\":\"" n "\",\"type\":" t "}"
#define FD(n, t, d)        "{\"name\":\"" n "\",\"type\":" t ",\"default\":" d "}"
/* The same, for schemas nested inside the ones above (a macro used inside its own arguments is
 * valid C, but confuses cppcheck's preprocessor). */
#define IREC1(name, f1)     "{\"type\":\"record\",\"name\":\"" name "\",\"fields\":[" f1 "]}"
#define IREC2(name, f1, f2) "{\"type\":\"record\",\"name\":\"" name "\",\"fields\":[" f1 "," f2 "]}"
#define IFLD(n, t)          "{\"name\":\"" n "\",\"type\":" t "}"
#define IFD(n, t, d)        "{\"name\":\"" n "\",\"type\":" t ",\"default\":" d "}"
#define ENUM(name, syms)    "{\"type\":\"enum\",\"name\":\"" name "\",\"symbols\":[" syms "]}"
#define FIXED(name, size)   "{\"type\":\"fixed\",\"name\":\"" name "\",\"size\":" #size "}"
#define ARR(t)              "{\"type\":\"array\",\"items\":" t "}"
#define MAP(t)              "{\"type\":\"map\",\"values\":" t "}"

/* A singly linked list of ints, recursive through a union. */
#define LIST                                                                                       \
    "{\"type\":\"record\",\"name\":\"Node\",\"fields\":[{\"name\":\"v\",\"type\":\"int\"},"        \
    "{\"name\":\"next\",\"type\":[\"null\",\"Node\"]}]}"
#define LIST_PLUS(extra)                                                                           \
    "{\"type\":\"record\",\"name\":\"Node\",\"fields\":[{\"name\":\"v\",\"type\":\"long\"},"       \
    "{\"name\":\"next\",\"type\":[\"null\",\"Node\"]}," extra "]}"

static const rw_case rw_cases[] = {
    /* primitives and promotions */
    {"same primitive", "\"int\"", "\"int\"", 1},
    {"null reads null", "\"null\"", "\"null\"", 1},
    {"boolean does not read int", "\"boolean\"", "\"int\"", 0},
    {"int promotes to long", "\"long\"", "\"int\"", 1},
    {"int promotes to float", "\"float\"", "\"int\"", 1},
    {"int promotes to double", "\"double\"", "\"int\"", 1},
    {"long promotes to float", "\"float\"", "\"long\"", 1},
    {"long promotes to double", "\"double\"", "\"long\"", 1},
    {"float promotes to double", "\"double\"", "\"float\"", 1},
    {"long does not narrow to int", "\"int\"", "\"long\"", 0},
    {"double does not narrow to float", "\"float\"", "\"double\"", 0},
    {"float does not read to long", "\"long\"", "\"float\"", 0},
    {"string reads bytes", "\"string\"", "\"bytes\"", 1},
    {"bytes reads string", "\"bytes\"", "\"string\"", 1},
    {"string does not read int", "\"string\"", "\"int\"", 0},
    {"primitive in object form", "{\"type\":\"long\",\"logicalType\":\"timestamp-millis\"}",
     "\"int\"", 1},
    /* records */
    {"record identical", REC1("R", FLD("a", "\"int\"")), REC1("R", FLD("a", "\"int\"")), 1},
    {"record names differ", REC1("R", FLD("a", "\"int\"")), REC1("S", FLD("a", "\"int\"")), 0},
    {"record reader alias names the writer",
     "{\"type\":\"record\",\"name\":\"R\",\"aliases\":[\"S\"],\"fields\":[" FLD("a",
                                                                                "\"int\"") "]}",
     REC1("S", FLD("a", "\"int\"")), 1},
    {"record matched by unqualified name across namespaces",
     "{\"type\":\"record\",\"name\":\"R\",\"namespace\":\"a.b\",\"fields\":[" FLD("x",
                                                                                  "\"int\"") "]}",
     "{\"type\":\"record\",\"name\":\"c.R\",\"fields\":[" FLD("x", "\"int\"") "]}", 1},
    {"added reader field with default",
     REC2("R", FLD("a", "\"int\""), FD("b", "\"string\"", "\"x\"")), REC1("R", FLD("a", "\"int\"")),
     1},
    {"added reader field without default", REC2("R", FLD("a", "\"int\""), FLD("b", "\"string\"")),
     REC1("R", FLD("a", "\"int\"")), 0},
    {"removed field (writer has more)", REC1("R", FLD("a", "\"int\"")),
     REC2("R", FLD("a", "\"int\""), FLD("b", "\"string\"")), 1},
    {"field order does not matter", REC2("R", FLD("b", "\"string\""), FLD("a", "\"int\"")),
     REC2("R", FLD("a", "\"int\""), FLD("b", "\"string\"")), 1},
    {"field type promoted", REC1("R", FLD("a", "\"long\"")), REC1("R", FLD("a", "\"int\"")), 1},
    {"field type incompatible", REC1("R", FLD("a", "\"int\"")), REC1("R", FLD("a", "\"string\"")),
     0},
    {"reader field alias matches a renamed field",
     REC1("R", "{\"name\":\"b\",\"type\":\"int\",\"aliases\":[\"a\"]}"),
     REC1("R", FLD("a", "\"int\"")), 1},
    {"renamed field without alias or default", REC1("R", FLD("b", "\"int\"")),
     REC1("R", FLD("a", "\"int\"")), 0},
    {"record does not read a primitive", REC1("R", FLD("a", "\"int\"")), "\"int\"", 0},
    {"nested record field added with default",
     REC1("O", FLD("in", IREC2("I", IFLD("a", "\"int\""), IFD("b", "\"int\"", "1")))),
     REC1("O", FLD("in", IREC1("I", IFLD("a", "\"int\"")))), 1},
    {"nested record field added without default",
     REC1("O", FLD("in", IREC2("I", IFLD("a", "\"int\""), IFLD("b", "\"int\"")))),
     REC1("O", FLD("in", IREC1("I", IFLD("a", "\"int\"")))), 0},
    /* enums */
    {"enum identical", ENUM("E", "\"A\",\"B\""), ENUM("E", "\"A\",\"B\""), 1},
    {"enum reader has more symbols", ENUM("E", "\"A\",\"B\",\"C\""), ENUM("E", "\"A\",\"B\""), 1},
    {"enum writer symbol missing in reader", ENUM("E", "\"A\""), ENUM("E", "\"A\",\"B\""), 0},
    {"enum writer symbol missing but reader default",
     "{\"type\":\"enum\",\"name\":\"E\",\"symbols\":[\"A\",\"U\"],\"default\":\"U\"}",
     ENUM("E", "\"A\",\"B\""), 1},
    {"enum names differ", ENUM("E", "\"A\""), ENUM("F", "\"A\""), 0},
    /* fixed */
    {"fixed identical", FIXED("H", 16), FIXED("H", 16), 1},
    {"fixed sizes differ", FIXED("H", 16), FIXED("H", 8), 0},
    {"fixed names differ", FIXED("H", 16), FIXED("G", 16), 0},
    {"fixed does not read bytes", FIXED("H", 16), "\"bytes\"", 0},
    /* arrays and maps */
    {"array items promoted", ARR("\"long\""), ARR("\"int\""), 1},
    {"array items incompatible", ARR("\"int\""), ARR("\"long\""), 0},
    {"map values promoted", MAP("\"double\""), MAP("\"float\""), 1},
    {"map values incompatible", MAP("\"boolean\""), MAP("\"string\""), 0},
    {"array does not read map", ARR("\"int\""), MAP("\"int\""), 0},
    {"array of records with added default field",
     ARR(REC2("R", FLD("a", "\"int\""), FD("b", "[\"null\",\"int\"]", "null"))),
     ARR(REC1("R", FLD("a", "\"int\""))), 1},
    /* unions */
    {"writer union, every branch readable", "[\"null\",\"long\",\"string\"]", "[\"null\",\"int\"]",
     1},
    {"writer union, one branch unreadable", "[\"null\",\"long\"]", "[\"null\",\"string\"]", 0},
    {"writer union read by a non-union", "\"long\"", "[\"int\",\"long\"]", 1},
    {"writer union with an unreadable branch, non-union reader", "\"long\"", "[\"int\",\"string\"]",
     0},
    {"reader union, some branch reads the writer", "[\"null\",\"string\"]", "\"string\"", 1},
    {"reader union, promotion through a branch", "[\"null\",\"long\"]", "\"int\"", 1},
    {"reader union, no branch reads the writer", "[\"null\",\"string\"]", "\"int\"", 0},
    {"optional field made required", REC1("R", FLD("a", "\"int\"")),
     REC1("R", FLD("a", "[\"null\",\"int\"]")), 0},
    {"required field made optional", REC1("R", FLD("a", "[\"null\",\"int\"]")),
     REC1("R", FLD("a", "\"int\"")), 1},
    {"reader union of records picks the right one",
     "[" REC1("A", FLD("x", "\"int\"")) "," REC1("B", FLD("y", "\"int\"")) "]",
     REC1("B", FLD("y", "\"int\"")), 1},
    {"single-branch writer union read by its branch type", "\"int\"", "[\"int\"]", 1},
    /* recursion and shared named types */
    {"recursive type identical", LIST, LIST, 1},
    {"recursive type widened, field added with default",
     LIST_PLUS("{\"name\":\"w\",\"type\":\"int\",\"default\":0}"), LIST, 1},
    {"recursive type, field added without default", LIST_PLUS("{\"name\":\"w\",\"type\":\"int\"}"),
     LIST, 0},
    {"recursive type narrowed", LIST, LIST_PLUS("{\"name\":\"w\",\"type\":\"int\"}"), 0},
    {"named type referenced twice",
     REC2("P", FLD("a", IREC1("Q", IFLD("v", "\"long\""))), FLD("b", "\"Q\"")),
     REC2("P", FLD("a", IREC1("Q", IFLD("v", "\"int\""))), FLD("b", "\"Q\"")), 1},
};

static void test_can_read_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(rw_cases) / sizeof(rw_cases[0]); i++) {
        const rw_case *c = &rw_cases[i];
        tc_avro_schema *r = must_parse(c->reader), *w = must_parse(c->writer);
        char why[512];
        int got = tc_avro_can_read(r, w, why, sizeof(why));
        if (got != c->can_read)
            fail_msg("rule \"%s\": expected %s, got %s (%s)", c->rule,
                     c->can_read ? "readable" : "not readable", got ? "readable" : "not readable",
                     why);
        if (!got && !why[0])
            fail_msg("rule \"%s\": no reason given", c->rule);
        if (got && why[0])
            fail_msg("rule \"%s\": a reason given for a success: %s", c->rule, why);
        tc_avro_schema_free(r);
        tc_avro_schema_free(w);
    }
    print_message("%zu reader/writer cases\n", sizeof(rw_cases) / sizeof(rw_cases[0]));
}

static void test_reason_has_location(void **state)
{
    tc_avro_schema *r = must_parse(REC1("O", FLD("in", IREC1("I", IFLD("a", "\"int\"")))));
    tc_avro_schema *w = must_parse(REC1("O", FLD("in", IREC1("I", IFLD("a", "\"string\"")))));
    char why[512];

    (void)state;
    assert_false(tc_avro_can_read(r, w, why, sizeof(why)));
    assert_non_null(strstr(why, "/fields/in/type/fields/a/type"));
    assert_non_null(strstr(why, "int"));
    assert_non_null(strstr(why, "string"));
    tc_avro_schema_free(r);
    tc_avro_schema_free(w);
}

/* ---- levels over a history ---- */

typedef struct level_case {
    const char *rule;
    tc_compat_level level;
    const char *candidate;
    const char *prev[3]; /* oldest first, NULL-terminated */
    int compatible;
} level_case;

#define A_INT     FLD("a", "\"int\"")
#define A_LONG    FLD("a", "\"long\"")
#define A_STR     FLD("a", "\"string\"")
#define A_STR_DEF FD("a", "\"string\"", "\"\"")
#define B_STR     FLD("b", "\"string\"")
#define B_STR_DEF FD("b", "\"string\"", "\"x\"")
#define EMPTY_R   "{\"type\":\"record\",\"name\":\"R\",\"fields\":[]}"

static const level_case level_cases[] = {
    {"NONE accepts anything", TC_COMPAT_NONE, "\"string\"", {REC1("R", A_INT)}, 1},
    {"no history is compatible", TC_COMPAT_FULL_TRANSITIVE, "\"string\"", {NULL}, 1},
    {"BACKWARD: add a field with a default",
     TC_COMPAT_BACKWARD,
     REC2("R", A_INT, B_STR_DEF),
     {REC1("R", A_INT)},
     1},
    {"BACKWARD: add a field without a default",
     TC_COMPAT_BACKWARD,
     REC2("R", A_INT, B_STR),
     {REC1("R", A_INT)},
     0},
    {"BACKWARD: remove a field",
     TC_COMPAT_BACKWARD,
     REC1("R", A_INT),
     {REC2("R", A_INT, B_STR)},
     1},
    {"BACKWARD: widen int to long", TC_COMPAT_BACKWARD, REC1("R", A_LONG), {REC1("R", A_INT)}, 1},
    {"BACKWARD: narrow long to int", TC_COMPAT_BACKWARD, REC1("R", A_INT), {REC1("R", A_LONG)}, 0},
    {"BACKWARD checks the latest only",
     TC_COMPAT_BACKWARD,
     REC1("R", A_STR_DEF),
     {REC1("R", A_INT), EMPTY_R},
     1},
    {"BACKWARD_TRANSITIVE checks every version",
     TC_COMPAT_BACKWARD_TRANSITIVE,
     REC1("R", A_STR_DEF),
     {REC1("R", A_INT), EMPTY_R},
     0},
    {"BACKWARD_TRANSITIVE when all are fine",
     TC_COMPAT_BACKWARD_TRANSITIVE,
     REC2("R", A_LONG, B_STR_DEF),
     {REC1("R", A_INT), REC1("R", A_LONG)},
     1},
    {"FORWARD: add a field without a default",
     TC_COMPAT_FORWARD,
     REC2("R", A_INT, B_STR),
     {REC1("R", A_INT)},
     1},
    {"FORWARD: remove a field the old reader needs",
     TC_COMPAT_FORWARD,
     REC1("R", A_INT),
     {REC2("R", A_INT, B_STR)},
     0},
    {"FORWARD: remove a field that had a default",
     TC_COMPAT_FORWARD,
     REC1("R", A_INT),
     {REC2("R", A_INT, B_STR_DEF)},
     1},
    {"FORWARD: narrow long to int", TC_COMPAT_FORWARD, REC1("R", A_INT), {REC1("R", A_LONG)}, 1},
    {"FORWARD: widen int to long", TC_COMPAT_FORWARD, REC1("R", A_LONG), {REC1("R", A_INT)}, 0},
    {"FORWARD checks the latest only",
     TC_COMPAT_FORWARD,
     EMPTY_R,
     {REC1("R", A_INT), REC1("R", A_STR_DEF)},
     1},
    {"FORWARD_TRANSITIVE checks every version",
     TC_COMPAT_FORWARD_TRANSITIVE,
     EMPTY_R,
     {REC1("R", A_INT), REC1("R", A_STR_DEF)},
     0},
    {"FULL: add a field with a default",
     TC_COMPAT_FULL,
     REC2("R", A_INT, B_STR_DEF),
     {REC1("R", A_INT)},
     1},
    {"FULL: add a field without a default",
     TC_COMPAT_FULL,
     REC2("R", A_INT, B_STR),
     {REC1("R", A_INT)},
     0},
    {"FULL: remove a field without a default",
     TC_COMPAT_FULL,
     REC1("R", A_INT),
     {REC2("R", A_INT, B_STR)},
     0},
    {"FULL: widen int to long is one-way",
     TC_COMPAT_FULL,
     REC1("R", A_LONG),
     {REC1("R", A_INT)},
     0},
    {"FULL checks the latest only",
     TC_COMPAT_FULL,
     EMPTY_R,
     {REC1("R", A_STR), REC1("R", A_STR_DEF)},
     1},
    {"FULL_TRANSITIVE checks every version",
     TC_COMPAT_FULL_TRANSITIVE,
     EMPTY_R,
     {REC1("R", A_STR), REC1("R", A_STR_DEF)},
     0},
    {"FULL_TRANSITIVE when all are fine",
     TC_COMPAT_FULL_TRANSITIVE,
     REC2("R", A_STR_DEF, B_STR_DEF),
     {REC1("R", A_STR_DEF), EMPTY_R},
     1},
    {"enum grows under BACKWARD",
     TC_COMPAT_BACKWARD,
     ENUM("E", "\"A\",\"B\""),
     {ENUM("E", "\"A\"")},
     1},
    {"enum grows under FORWARD",
     TC_COMPAT_FORWARD,
     ENUM("E", "\"A\",\"B\""),
     {ENUM("E", "\"A\"")},
     0},
};

static void record_msg(void *ctx, const char *msg)
{
    int *n = ctx;

    assert_true(msg[0] != '\0');
    (*n)++;
}

static void test_levels_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(level_cases) / sizeof(level_cases[0]); i++) {
        const level_case *c = &level_cases[i];
        tc_avro_schema *cand = must_parse(c->candidate);
        const tc_avro_schema *prev[3];
        tc_avro_schema *owned[3];
        int versions[3];
        size_t n = 0;
        int msgs = 0, got;

        while (n < 3 && c->prev[n]) {
            owned[n] = must_parse(c->prev[n]);
            prev[n] = owned[n];
            versions[n] = (int)n + 1;
            n++;
        }
        got = tc_avro_compatible(c->level, cand, prev, versions, n, record_msg, &msgs);
        if (got != c->compatible)
            fail_msg("rule \"%s\" (%s): expected %s", c->rule, tc_compat_level_name(c->level),
                     c->compatible ? "compatible" : "incompatible");
        if (got ? msgs != 0 : msgs == 0)
            fail_msg("rule \"%s\": %d messages for a %s verdict", c->rule, msgs,
                     got ? "compatible" : "incompatible");
        for (size_t k = 0; k < n; k++)
            tc_avro_schema_free(owned[k]);
        tc_avro_schema_free(cand);
    }
    print_message("%zu level cases\n", sizeof(level_cases) / sizeof(level_cases[0]));
}

static void test_level_names(void **state)
{
    tc_compat_level l;

    (void)state;
    for (int i = 0; i < TC_COMPAT__COUNT; i++) {
        assert_int_equal(tc_compat_level_parse(tc_compat_level_name((tc_compat_level)i), &l), 0);
        assert_int_equal(l, i);
    }
    assert_int_equal(tc_compat_level_parse("full_transitive", &l), 0);
    assert_int_equal(l, TC_COMPAT_FULL_TRANSITIVE);
    assert_int_equal(tc_compat_level_parse("SIDEWAYS", &l), -1);
    assert_int_equal(tc_compat_level_parse("", &l), -1);
    assert_int_equal(TC_COMPAT_DEFAULT, TC_COMPAT_BACKWARD);
}

/* ---- canonical form ---- */

typedef struct pcf_case {
    const char *rule;
    const char *schema;
    const char *canonical;
} pcf_case;

static const pcf_case pcf_cases[] = {
    {"primitive", "\"int\"", "\"int\""},
    {"primitive in object form", "{\"type\":\"int\",\"logicalType\":\"date\"}", "\"int\""},
    {"whitespace and attribute order",
     " { \"fields\" : [ { \"type\" : \"int\" , \"name\" : \"a\" } ] ,\n \"name\":\"R\", "
     "\"type\":\"record\" } ",
     "{\"name\":\"R\",\"type\":\"record\",\"fields\":[{\"name\":\"a\",\"type\":\"int\"}]}"},
    {"doc, aliases, defaults and order are stripped",
     "{\"type\":\"record\",\"name\":\"R\",\"doc\":\"d\",\"aliases\":[\"Q\"],\"fields\":[{\"name\":"
     "\"a\",\"type\":\"int\",\"default\":1,\"order\":\"descending\",\"doc\":\"x\"}],\"x-custom\":"
     "true}",
     "{\"name\":\"R\",\"type\":\"record\",\"fields\":[{\"name\":\"a\",\"type\":\"int\"}]}"},
    {"full names, inherited namespace, references",
     "{\"type\":\"record\",\"name\":\"R\",\"namespace\":\"com.ex\",\"fields\":[{\"name\":\"e\","
     "\"type\":{\"type\":\"enum\",\"name\":\"E\",\"symbols\":[\"A\",\"B\"]}},{\"name\":\"f\","
     "\"type\":{\"type\":\"fixed\",\"name\":\"other.F\",\"size\":4}},{\"name\":\"g\",\"type\":"
     "\"E\"},{\"name\":\"h\",\"type\":\"other.F\"}]}",
     "{\"name\":\"com.ex.R\",\"type\":\"record\",\"fields\":[{\"name\":\"e\",\"type\":{\"name\":"
     "\"com.ex.E\",\"type\":\"enum\",\"symbols\":[\"A\",\"B\"]}},{\"name\":\"f\",\"type\":{"
     "\"name\":\"other.F\",\"type\":\"fixed\",\"size\":4}},{\"name\":\"g\",\"type\":\"com.ex.E\"},"
     "{\"name\":\"h\",\"type\":\"other.F\"}]}"},
    {"arrays, maps, unions",
     "{\"type\":\"map\",\"values\":{\"type\":\"array\",\"items\":[\"null\",{\"type\":\"string\"}]}"
     "}",
     "{\"type\":\"map\",\"values\":{\"type\":\"array\",\"items\":[\"null\",\"string\"]}}"},
    {"string escapes are decoded", "{\"type\":\"record\",\"name\":\"\\u0052\",\"fields\":[]}",
     "{\"name\":\"R\",\"type\":\"record\",\"fields\":[]}"},
    {"recursive reference", LIST,
     "{\"name\":\"Node\",\"type\":\"record\",\"fields\":[{\"name\":\"v\",\"type\":\"int\"},{"
     "\"name\":\"next\",\"type\":[\"null\",\"Node\"]}]}"},
};

static void test_canonical_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(pcf_cases) / sizeof(pcf_cases[0]); i++) {
        tc_avro_schema *s = must_parse(pcf_cases[i].schema);
        size_t len;
        const char *c = tc_avro_schema_canonical(s, &len);
        if (strcmp(c, pcf_cases[i].canonical))
            fail_msg("rule \"%s\":\n got      %s\n expected %s", pcf_cases[i].rule, c,
                     pcf_cases[i].canonical);
        assert_int_equal(len, strlen(c));
        tc_avro_schema_free(s);
    }
}

static void test_canonical_is_fixed_point(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(rw_cases) / sizeof(rw_cases[0]); i++) {
        tc_avro_schema *a = must_parse(rw_cases[i].reader);
        tc_avro_schema *b = must_parse(tc_avro_schema_canonical(a, NULL));
        assert_string_equal(tc_avro_schema_canonical(a, NULL), tc_avro_schema_canonical(b, NULL));
        tc_avro_schema_free(a);
        tc_avro_schema_free(b);
    }
}

/* ---- validation ---- */

static const struct {
    const char *rule;
    const char *schema;
} invalid_cases[] = {
    {"not JSON", "{\"type\":"},
    {"unknown type name", "\"integer\""},
    {"number is not a schema", "42"},
    {"record without fields", "{\"type\":\"record\",\"name\":\"R\"}"},
    {"record without name", "{\"type\":\"record\",\"fields\":[]}"},
    {"invalid name", "{\"type\":\"record\",\"name\":\"1R\",\"fields\":[]}"},
    {"invalid namespace",
     "{\"type\":\"record\",\"name\":\"R\",\"namespace\":\"a..b\",\"fields\":[]}"},
    {"duplicate field", REC2("R", FLD("a", "\"int\""), FLD("a", "\"long\""))},
    {"field without type", REC1("R", "{\"name\":\"a\"}")},
    {"invalid field name", REC1("R", FLD("a-b", "\"int\""))},
    {"undefined reference", REC1("R", FLD("a", "\"Nope\""))},
    {"name defined twice", REC2("R", FLD("a", ENUM("E", "\"A\"")), FLD("b", ENUM("E", "\"B\"")))},
    {"redefine a primitive", "{\"type\":\"fixed\",\"name\":\"int\",\"size\":4}"},
    {"enum without symbols", "{\"type\":\"enum\",\"name\":\"E\"}"},
    {"enum duplicate symbol", ENUM("E", "\"A\",\"A\"")},
    {"enum invalid symbol", ENUM("E", "\"a b\"")},
    {"enum default not a symbol",
     "{\"type\":\"enum\",\"name\":\"E\",\"symbols\":[\"A\"],\"default\":\"B\"}"},
    {"fixed without size", "{\"type\":\"fixed\",\"name\":\"F\"}"},
    {"fixed negative size", FIXED("F", -1)},
    {"array without items", "{\"type\":\"array\"}"},
    {"map without values", "{\"type\":\"map\"}"},
    {"nested union", "[\"null\",[\"int\"]]"},
    {"union duplicate primitive", "[\"int\",\"int\"]"},
    {"union duplicate named type", "[" ENUM("E", "\"A\"") ",\"E\"]"},
    {"int default is a string", REC1("R", FD("a", "\"int\"", "\"1\""))},
    {"int default out of range", REC1("R", FD("a", "\"int\"", "4294967296"))},
    {"int default not integral", REC1("R", FD("a", "\"int\"", "1.5"))},
    {"union default must match the first branch",
     REC1("R", FD("a", "[\"string\",\"null\"]", "null"))},
    {"record default missing a field", REC1("O", FD("r", IREC1("I", IFLD("x", "\"int\"")), "{}"))},
    {"enum default not a symbol (field)", REC1("R", FD("e", ENUM("E", "\"A\""), "\"B\""))},
    {"invalid order", REC1("R", "{\"name\":\"a\",\"type\":\"int\",\"order\":\"up\"}")},
    {"duplicate JSON member", "{\"type\":\"int\",\"type\":\"long\"}"},
    {"trailing garbage", "\"int\" x"},
    {"empty union", "[]"},
    {"error type outside a protocol", "{\"type\":\"error\",\"name\":\"Oops\",\"fields\":[]}"},
};

static void test_invalid_schemas(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(invalid_cases) / sizeof(invalid_cases[0]); i++) {
        char e[TC_ERRSTR_MAX];
        tc_err err = TC_OK;
        tc_avro_schema *s = tc_avro_schema_parse(
            invalid_cases[i].schema, strlen(invalid_cases[i].schema), &err, e, sizeof(e));
        if (s) {
            tc_avro_schema_free(s);
            fail_msg("rule \"%s\": accepted %s", invalid_cases[i].rule, invalid_cases[i].schema);
        }
        assert_int_equal(err, TC_ERR_INVALID);
        assert_true(e[0] != '\0');
    }
}

static void test_valid_defaults(void **state)
{
    static const char *const ok[] = {
        REC1("R", FD("a", "\"int\"", "-2147483648")),
        REC1("R", FD("a", "\"long\"", "9007199254740993")),
        REC1("R", FD("a", "\"double\"", "1.5e10")),
        REC1("R", FD("a", "\"float\"", "1")),
        REC1("R", FD("a", "\"boolean\"", "false")),
        REC1("R", FD("a", "\"bytes\"", "\"\\u00ff\"")),
        REC1("R", FD("a", "[\"null\",\"int\"]", "null")),
        REC1("R", FD("a", "[\"int\",\"null\"]", "3")),
        REC1("R", FD("a", ARR("\"int\""), "[1,2]")),
        REC1("R", FD("a", MAP("\"string\""), "{\"k\":\"v\"}")),
        REC1("R", FD("a", FIXED("F", 2), "\"ab\"")),
        REC1("R", FD("e", ENUM("E", "\"A\",\"B\""), "\"B\"")),
        REC1("O", FD("r", IREC2("I", IFLD("x", "\"int\""), IFD("y", "\"int\"", "0")), "{\"x\":1}")),
    };
    (void)state;
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        tc_avro_schema_free(must_parse(ok[i]));
}

static void test_limits(void **state)
{
    /* Deeply nested arrays: refused by the depth cap, not by the stack. */
    size_t depth = TC_AVRO_SCHEMA_MAX_DEPTH + 10, n = 0;
    size_t cap = depth * 40 + 64;
    char *s = malloc(cap);
    char e[TC_ERRSTR_MAX];
    tc_err err;

    (void)state;
    assert_non_null(s);
    for (size_t i = 0; i < depth; i++)
        n += (size_t)snprintf(s + n, cap - n, "{\"type\":\"array\",\"items\":");
    n += (size_t)snprintf(s + n, cap - n, "\"int\"");
    for (size_t i = 0; i < depth; i++)
        s[n++] = '}';
    assert_null(tc_avro_schema_parse(s, n, &err, e, sizeof(e)));
    assert_int_equal(err, TC_ERR_INVALID);
    free(s);
}

/* Two recursive types whose cycles have coprime lengths: the pair walk must stay bounded. */
static void test_recursion_bounded(void **state)
{
    const char *a = "{\"type\":\"record\",\"name\":\"A\",\"fields\":[{\"name\":\"n\",\"type\":"
                    "{\"type\":\"record\",\"name\":\"B\",\"fields\":[{\"name\":\"n\",\"type\":"
                    "[\"null\",\"A\"]}]}}]}";
    const char *b = "{\"type\":\"record\",\"name\":\"A\",\"fields\":[{\"name\":\"n\",\"type\":"
                    "{\"type\":\"record\",\"name\":\"B\",\"fields\":[{\"name\":\"n\",\"type\":"
                    "{\"type\":\"record\",\"name\":\"C\",\"fields\":[{\"name\":\"n\",\"type\":"
                    "[\"null\",\"A\"]}]}}]}}]}";
    tc_avro_schema *x = must_parse(a), *y = must_parse(b);
    char why[512];

    (void)state;
    assert_false(tc_avro_can_read(x, y, why, sizeof(why))); /* B cannot read C */
    assert_true(tc_avro_can_read(x, x, why, sizeof(why)));
    assert_true(tc_avro_can_read(y, y, why, sizeof(why)));
    tc_avro_schema_free(x);
    tc_avro_schema_free(y);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_can_read_table),  cmocka_unit_test(test_reason_has_location),
        cmocka_unit_test(test_levels_table),    cmocka_unit_test(test_level_names),
        cmocka_unit_test(test_canonical_table), cmocka_unit_test(test_canonical_is_fixed_point),
        cmocka_unit_test(test_invalid_schemas), cmocka_unit_test(test_valid_defaults),
        cmocka_unit_test(test_limits),          cmocka_unit_test(test_recursion_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
