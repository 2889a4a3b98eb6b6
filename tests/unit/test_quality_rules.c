/*
 * test_quality_rules.c -- quality rules (quality/rules.h, quality/expr.h): a valid file read into
 * exactly the rules it says; every class of error refused with its exact line and column; the
 * expression language's precedence, unknown values and compile errors; and the evaluator's `for`
 * semantics and each check kind, with the events' times worked out by hand.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <cmocka.h>

#include "quality/expr.h"
#include "quality/rules.h"

#define SEC    INT64_C(1000000)
#define EV_MAX 32

static tc_qr_set *parse(const char *text, char *errstr)
{
    return tc_qr_parse(text, strlen(text), "r.yaml", errstr, TC_ERRSTR_MAX);
}

/* The file must be refused with exactly this message. */
static void refused(const char *text, const char *message)
{
    char errstr[TC_ERRSTR_MAX] = "";
    tc_qr_set *set = parse(text, errstr);

    if (set)
        fail_msg("accepted: %s", text);
    assert_string_equal(errstr, message);
}

static void test_valid_file(void **state)
{
    static const char text[] = "rules:\n"
                               "  - name: cold-room\n"
                               "    scope:\n"
                               "      devices: \"fridge-*\"\n"
                               "      tags: {site: berlin-1, floor: 2}\n"
                               "      schema_version: 2\n"
                               "    check:\n"
                               "      range: {metric: temperature, min: -5, max: 8}\n"
                               "    severity: critical\n"
                               "    for: 5m\n"
                               "  - name: dew\n"
                               "    check: {expr: \"dew_point <= temperature\"}\n"
                               "  - name: quiet\n"
                               "    check: {interval: {expected_s: 60}}\n"
                               "    for: 1500ms\n";
    char errstr[TC_ERRSTR_MAX] = "";
    tc_qr_set *set = parse(text, errstr);
    const tc_qr_rule *r;

    (void)state;
    assert_non_null(set);
    assert_int_equal(tc_qr_count(set), 3);
    r = tc_qr_get(set, 0);
    assert_string_equal(r->name, "cold-room");
    assert_int_equal(r->line, 2);
    assert_int_equal(r->column, 5);
    assert_string_equal(r->devices, "fridge-*");
    assert_int_equal(r->ntags, 2);
    assert_string_equal(r->tag_key[1], "floor");
    assert_string_equal(r->tag_value[1], "2");
    assert_int_equal(r->schema_version, 2);
    assert_int_equal(r->kind, TC_QR_RANGE);
    assert_string_equal(tc_qr_metric_name(set, r->metric), "temperature");
    assert_true(r->min == -5 && r->max == 8);
    assert_int_equal(r->severity, TC_QR_CRITICAL);
    assert_true(r->for_us == 300 * SEC);
    r = tc_qr_get(set, 1);
    assert_int_equal(r->kind, TC_QR_EXPR);
    assert_int_equal(r->severity, TC_QR_WARNING);
    assert_true(r->for_us == 0);
    /* temperature was named first, by the range rule; dew_point is new. */
    assert_int_equal(tc_qr_metric_count(set), 2);
    assert_string_equal(tc_qr_metric_name(set, 1), "dew_point");
    r = tc_qr_get(set, 2);
    assert_int_equal(r->kind, TC_QR_INTERVAL);
    assert_true(r->expected_s == 60 && r->tolerance == 3);
    assert_true(r->for_us == 1500000);
    tc_qr_free(set);
}

static void test_errors(void **state)
{
    (void)state;
    /* Unknown key: line 4, column 5 (under "- "). */
    refused("rules:\n  - name: a\n    check: {range: {metric: t, max: 1}}\n    sevrity: warning\n",
            "r.yaml:4:5: rule \"a\": unknown key \"sevrity\" in a rule (expected name, scope, "
            "check, severity, for)");
    /* Unknown key inside check. */
    refused("rules:\n  - name: a\n    check: {ranged: {metric: t}}\n",
            "r.yaml:3:13: rule \"a\": unknown key \"ranged\" in check (expected range, rate, "
            "required, interval, stuck, expr)");
    /* Duplicate key: the second "for". */
    refused("rules:\n  - name: a\n    check: {required: [t]}\n    for: 1s\n    for: 2s\n",
            "r.yaml:5:5: rule \"a\": key \"for\" appears twice in a rule");
    /* Wrong type: for given a list. */
    refused("rules:\n  - name: a\n    check: {required: [t]}\n    for: [1]\n",
            "r.yaml:4:10: rule \"a\": for must be a duration such as 30s, 5m or 1h");
    /* Missing required key: no check (the rule's mapping starts at line 2, column 5). */
    refused("rules:\n  - name: a\n    severity: critical\n",
            "r.yaml:2:5: rule \"a\": a rule needs a check");
    /* Out of range: tolerance below 1, at the value. */
    refused("rules:\n  - name: a\n    check: {interval: {expected_s: 10, tolerance: 0.5}}\n",
            "r.yaml:3:51: rule \"a\": tolerance must be between 1 and 1000, not 0.5");
    /* Expression error: the column points into the string, past its quote (19 + 1 + 5). */
    refused("rules:\n  - name: a\n    check: {expr: \"a <= \"}\n",
            "r.yaml:3:25: rule \"a\": expr: expression ends where a value was expected");
    refused("rules:\n  - name: a\n    check: {expr: \"a + 1\"}\n",
            "r.yaml:3:20: rule \"a\": expr: the expression is a number; a rule needs a condition "
            "such as \"a <= b\"");
    /* Bad duration unit, bad severity, duplicate name, range bounds. */
    refused("rules:\n  - name: a\n    check: {required: [t]}\n    for: 5x\n",
            "r.yaml:4:10: rule \"a\": for: unknown unit \"x\" (ms, s, m, h, d)");
    refused("rules:\n  - name: a\n    check: {required: [t]}\n    severity: fatal\n",
            "r.yaml:4:15: rule \"a\": severity must be warning or critical");
    refused("rules:\n  - name: a\n    check: {required: [t]}\n  - name: a\n"
            "    check: {required: [t]}\n",
            "r.yaml:4:11: rule name \"a\" is already used on line 2");
    refused("rules:\n  - name: a\n    check: {range: {metric: t, min: 5, max: 1}}\n",
            "r.yaml:3:20: rule \"a\": range: min 5 is above max 1");
    /* YAML itself broken: libyaml's mark. */
    refused("rules:\n  - name: a\n   check: [\n",
            "r.yaml:3:4: did not find expected '-' indicator while parsing a block collection");
    /* Not the expected shape, and a second document. */
    refused("- a\n", "r.yaml:1:1: the document must be a mapping");
    refused("rules: []\n---\nrules: []\n", "r.yaml:3:1: a second YAML document");
    refused("rules:\n  - name: a\n    check: {required: [t], rate: {metric: t, max_per_s: 1}}\n",
            "r.yaml:3:12: rule \"a\": check needs exactly one of range, rate, required, interval, "
            "stuck, expr");
}

static int resolve_abc(void *opaque, const char *name, size_t len)
{
    (void)opaque;
    return len == 1 && name[0] >= 'a' && name[0] <= 'h' ? name[0] - 'a' : -1;
}

static int eval(const char *src, double a, double b)
{
    double v[8] = {a, b, 3, 4, 5, 6, 7, 8};
    char errstr[TC_ERRSTR_MAX];
    size_t off;
    tc_qx x;

    if (tc_qx_compile(&x, src, strlen(src), resolve_abc, NULL, &off, errstr, sizeof(errstr)) !=
        TC_OK)
        fail_msg("%s: %s at %zu", src, errstr, off);
    return tc_qx_eval(&x, v);
}

static void compile_error(const char *src, size_t offset, const char *message)
{
    char errstr[TC_ERRSTR_MAX];
    size_t off = 999;
    tc_qx x;

    assert_int_equal(
        tc_qx_compile(&x, src, strlen(src), resolve_abc, NULL, &off, errstr, sizeof(errstr)),
        TC_ERR_INVALID);
    assert_string_equal(errstr, message);
    assert_int_equal(off, offset);
}

static void test_expressions(void **state)
{
    char deep[200] = "";

    (void)state;
    assert_int_equal(eval("a + b * 2 > 10", 1, 5), 1); /* 1 + 10 = 11 */
    assert_int_equal(eval("a + b * 2 > 10", 1, 4), 0); /* 1 + 8 = 9 */
    assert_int_equal(eval("-a * 2 + 3 >= 0", 1, 0), 1);
    assert_int_equal(eval("-a * 2 + 3 >= 0", 2, 0), 0);
    assert_int_equal(eval("(a + b) * 2 == 6", 1, 2), 1);
    assert_int_equal(eval("a - b - c == -4", 1, 2), 1);          /* left-associative: (1 - 2) - 3 */
    assert_int_equal(eval("a / b / 2 == 1", 8, 4), 1);           /* (8 / 4) / 2 */
    assert_int_equal(eval("not a > 1", 2, 0), 0);                /* not (a > 1) */
    assert_int_equal(eval("a > 1 or b > 1 and c > 9", 2, 0), 1); /* and binds tighter */
    assert_int_equal(eval("abs(a - b) <= 0.5 and min(a, b) < max(a, b)", 1, 1.4), 1);
    assert_int_equal(eval("1.5e1 == 15 and .5 < 1", 0, 0), 1);
    /* Unknown values: NaN metrics, division by zero. */
    assert_int_equal(eval("a > 1 and b > 1", NAN, 0), 0);
    assert_int_equal(eval("a > 1 and b > 1", NAN, 2), -1);
    assert_int_equal(eval("a > 1 or b > 1", NAN, 2), 1);
    assert_int_equal(eval("a > 1 or b > 1", NAN, 0), -1);
    assert_int_equal(eval("not a > 1", NAN, 0), -1);
    assert_int_equal(eval("a / b < 1", 1, 0), -1);
    /* Compile errors: message and byte offset. */
    compile_error("a <=", 4, "expression ends where a value was expected");
    compile_error("a + b", 0,
                  "the expression is a number; a rule needs a condition such as "
                  "\"a <= b\"");
    compile_error("foo(a) > 1", 0, "unknown function (abs, min and max are the ones there are)");
    compile_error("a > 1 b", 6, "unexpected text after the expression");
    compile_error("a > > 1", 4, "unexpected \">\"");
    compile_error("(a > 1", 6, "expected \")\"");
    compile_error("a > 1 and 2", 10, "and needs a condition (a comparison), not a number");
    compile_error("(a > 1) + 1 > 0", 0, "+ needs a number, not a condition");
    compile_error("zz > 1", 0, "too many metric names");
    compile_error("min(a) > 1", 5, "min takes two arguments");
    for (int i = 0; i < 40; i++)
        strcat(deep, "(");
    strcat(deep, "a");
    for (int i = 0; i < 40; i++)
        strcat(deep, ")");
    strcat(deep, " > 1");
    {
        char errstr[TC_ERRSTR_MAX];
        size_t off;
        tc_qx x;
        assert_int_equal(
            tc_qx_compile(&x, deep, strlen(deep), resolve_abc, NULL, &off, errstr, sizeof(errstr)),
            TC_ERR_INVALID);
        assert_string_equal(errstr, "expression nests too deeply");
    }
}

typedef struct events {
    tc_qr_event e[EV_MAX];
    char rule[EV_MAX][TC_QR_NAME_MAX + 1];
    int n;
} events;

static void on_event(void *opaque, const tc_qr_event *e)
{
    events *l = opaque;

    assert_true(l->n < EV_MAX);
    l->e[l->n] = *e;
    snprintf(l->rule[l->n], sizeof(l->rule[0]), "%s", e->rule->name);
    l->n++;
}

static tc_qr_eval *eval_of(const char *text, tc_qr_set **set, events *l)
{
    char errstr[TC_ERRSTR_MAX] = "";
    tc_qr_eval *e;

    *set = parse(text, errstr);
    if (!*set)
        fail_msg("%s", errstr);
    e = tc_qr_eval_new(*set, 8, on_event, l, errstr, sizeof(errstr));
    assert_non_null(e);
    return e;
}

/* A reading of device dev at t seconds; v is the one metric's value (NaN: absent). */
static void reading(tc_qr_eval *e, const char *dev, int64_t t_s, double v0, double v1)
{
    double v[2] = {v0, v1};
    tc_qr_reading r = {dev, strlen(dev), t_s * SEC, v, NULL, 0, 1};

    tc_qr_eval_reading(e, &r);
}

static void expect(const events *l, int i, const char *rule, int firing, int64_t start_s,
                   int64_t end_s)
{
    assert_true(i < l->n);
    assert_string_equal(l->rule[i], rule);
    assert_int_equal(l->e[i].firing, firing);
    assert_true(l->e[i].start_us == start_s * SEC);
    assert_true(l->e[i].end_us == end_s * SEC);
}

static void test_for_semantics(void **state)
{
    events l = {0};
    tc_qr_set *set;
    tc_qr_eval *e = eval_of("rules:\n  - name: hot\n    check: {range: {metric: t, max: 30}}\n"
                            "    for: 60s\n",
                            &set, &l);

    (void)state;
    reading(e, "d", 0, 50, 0);  /* violated: pending since 0 */
    reading(e, "d", 30, 50, 0); /* 30 s: not yet */
    assert_int_equal(l.n, 0);
    reading(e, "d", 60, 50, 0); /* 60 s >= for: fires, from 0 */
    assert_int_equal(l.n, 1);
    expect(&l, 0, "hot", 1, 0, 0);
    reading(e, "d", 70, 50, 0);  /* still firing: nothing new */
    reading(e, "d", 80, NAN, 0); /* cannot judge: nothing changes */
    assert_int_equal(l.n, 1);
    reading(e, "d", 90, 20, 0); /* satisfied: resolved at 90 */
    assert_int_equal(l.n, 2);
    expect(&l, 1, "hot", 0, 0, 90);
    /* Interrupted before `for`: the clock restarts at the next violation. */
    reading(e, "d", 100, 50, 0);
    reading(e, "d", 130, 20, 0);
    reading(e, "d", 160, 50, 0);
    reading(e, "d", 200, 50, 0); /* 40 s since 160 */
    assert_int_equal(l.n, 2);
    reading(e, "d", 220, 50, 0);
    assert_int_equal(l.n, 3);
    expect(&l, 2, "hot", 1, 160, 0);
    /* Out of order: skipped, it neither resolves nor restarts. */
    reading(e, "d", 150, 20, 0);
    assert_int_equal(l.n, 3);
    assert_int_equal(tc_qr_eval_firing(e), 1);
    assert_int_equal(tc_qr_eval_out_of_order(e), 1);
    tc_qr_eval_destroy(e);
    tc_qr_free(set);
}

static void collect_firing(void *opaque, const tc_qr_rule *rule, const char *device,
                           int64_t start_us)
{
    events *l = opaque;

    assert_true(l->n < EV_MAX);
    l->e[l->n] = (tc_qr_event){rule, device, 1, start_us, 0, NAN};
    snprintf(l->rule[l->n], sizeof(l->rule[0]), "%s", rule->name);
    l->n++;
}

/* A rule given back as firing (a restart, a reload) does not fire again while violated, and
 * resolves with the start it was given; each_firing lists what is firing. */
static void test_restore_firing(void **state)
{
    events l = {0}, firing = {0};
    tc_qr_set *set;
    tc_qr_eval *e = eval_of("rules:\n  - name: cold\n    check: {range: {metric: t, min: 0}}\n"
                            "  - name: hot\n    check: {range: {metric: t, max: 30}}\n"
                            "    for: 60s\n",
                            &set, &l);

    (void)state;
    assert_int_equal(tc_qr_find(set, "hot"), 1);
    assert_int_equal(tc_qr_find(set, "nope"), -1);
    assert_int_equal(tc_qr_eval_restore(e, 1, "d", 1, 100 * SEC), TC_OK);
    assert_int_equal(tc_qr_eval_restore(e, 2, "d", 1, 100 * SEC), TC_ERR_INVALID);
    assert_int_equal(tc_qr_eval_firing(e), 1);
    tc_qr_eval_each_firing(e, collect_firing, &firing);
    assert_int_equal(firing.n, 1);
    expect(&firing, 0, "hot", 1, 100, 0);
    reading(e, "d", 200, 50, 0); /* still violated: already firing, nothing new */
    assert_int_equal(l.n, 0);
    reading(e, "d", 210, 20, 0); /* cleared: resolves the restored finding */
    assert_int_equal(l.n, 1);
    expect(&l, 0, "hot", 0, 100, 210);
    assert_int_equal(tc_qr_eval_firing(e), 0);
    /* Past max_devices (8): refused, not tracked. */
    for (int i = 0; i < 7; i++) {
        char dev[16];
        snprintf(dev, sizeof(dev), "x%d", i);
        assert_int_equal(tc_qr_eval_restore(e, 0, dev, strlen(dev), SEC), TC_OK);
    }
    assert_int_equal(tc_qr_eval_restore(e, 0, "y", 1, SEC), TC_ERR_FULL);
    tc_qr_eval_destroy(e);
    tc_qr_free(set);
}

static void test_check_kinds(void **state)
{
    events l = {0};
    tc_qr_set *set;
    tc_qr_eval *e = eval_of("rules:\n"
                            "  - name: st\n    check: {stuck: {metric: t, readings: 3}}\n"
                            "  - name: ra\n    check: {rate: {metric: t, max_per_s: 1}}\n"
                            "  - name: rq\n    check: {required: [t, u]}\n"
                            "  - name: iv\n    check: {interval: {expected_s: 10}}\n"
                            "  - name: ex\n    check: {expr: \"t < u\"}\n",
                            &set, &l);

    (void)state;
    assert_int_equal(tc_qr_metric_count(set), 2); /* t = 0, u = 1 */
    reading(e, "d", 0, 5, 10);
    reading(e, "d", 10, 5, 10);
    assert_int_equal(l.n, 0);
    reading(e, "d", 20, 5, 10); /* third equal value: stuck since 0 */
    assert_int_equal(l.n, 1);
    expect(&l, 0, "st", 1, 0, 0);
    reading(e, "d", 30, 40, 10); /* +35 in 10 s: rate 3.5/s; t >= u; stuck ends */
    assert_int_equal(l.n, 4);
    expect(&l, 1, "st", 0, 0, 30);
    expect(&l, 2, "ra", 1, 30, 0);
    expect(&l, 3, "ex", 1, 30, 0);
    reading(e, "d", 40, 41, NAN); /* u absent: required fires; rate resolves; ex unknown */
    assert_int_equal(l.n, 6);
    expect(&l, 4, "ra", 0, 30, 40);
    expect(&l, 5, "rq", 1, 40, 0);
    /* Silence: expected 10 s x tolerance 3: quiet > 30 s after the reading at 40. */
    tc_qr_eval_tick(e, 70 * SEC);
    assert_int_equal(l.n, 6);
    tc_qr_eval_tick(e, 71 * SEC);
    assert_int_equal(l.n, 7);
    expect(&l, 6, "iv", 1, 70, 0);
    reading(e, "d", 80, 1, 10); /* everything back to normal */
    assert_int_equal(l.n, 10);
    expect(&l, 7, "rq", 0, 40, 80);
    expect(&l, 8, "iv", 0, 70, 80);
    expect(&l, 9, "ex", 0, 30, 80);
    assert_int_equal(tc_qr_eval_firing(e), 0);
    tc_qr_eval_destroy(e);
    tc_qr_free(set);
}

static void test_scope(void **state)
{
    events l = {0};
    tc_qr_set *set;
    tc_qr_eval *e = eval_of("rules:\n  - name: f\n    scope:\n      devices: \"fridge-*\"\n"
                            "      tags: {site: oslo}\n      schema_version: 1\n"
                            "    check: {range: {metric: t, max: 8}}\n",
                            &set, &l);
    tc_qr_tag oslo[1] = {{"site", "oslo"}}, lima[1] = {{"site", "lima"}};
    double v[1] = {20};
    tc_qr_reading r1 = {"oven-1", 6, 0, v, oslo, 1, 1}, r2 = {"fridge-1", 8, 0, v, lima, 1, 1},
                  r3 = {"fridge-1", 8, SEC, v, oslo, 1, 2},
                  r4 = {"fridge-1", 8, 2 * SEC, v, oslo, 1, 1};

    (void)state;
    tc_qr_eval_reading(e, &r1); /* glob does not match */
    tc_qr_eval_reading(e, &r2); /* tag does not match */
    tc_qr_eval_reading(e, &r3); /* schema version does not match */
    assert_int_equal(l.n, 0);
    tc_qr_eval_reading(e, &r4);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.e[0].device, "fridge-1");
    tc_qr_eval_destroy(e);
    tc_qr_free(set);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_file),     cmocka_unit_test(test_errors),
        cmocka_unit_test(test_expressions),    cmocka_unit_test(test_for_semantics),
        cmocka_unit_test(test_check_kinds),    cmocka_unit_test(test_scope),
        cmocka_unit_test(test_restore_firing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
