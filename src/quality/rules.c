/*
 * rules.c -- parse quality rules from YAML and evaluate them per (rule, device); see rules.h.
 *
 * Parsing loads the document with libyaml's document API (nodes keep their marks) and walks a
 * fixed shape: rules -> rule -> scope/check -> leaves, so the walk's depth does not depend on the
 * input. Every mapping is checked against the keys its level allows, so a misspelt key is an
 * error, not a silently ignored setting. The first error wins and carries its node's mark.
 */
#include "quality/rules.h"

#include <errno.h>
#include <fnmatch.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "quality/ids.h"

struct tc_qr_set {
    size_t nrules;
    tc_qr_rule *rules;
    int nmetrics;
    char metrics[TC_QR_METRICS_MAX][TC_QX_NAME_MAX + 1];
};

static const char *const tc_qr_kind_names[TC_QR_KIND__COUNT] = {"range",    "rate",  "required",
                                                                "interval", "stuck", "expr"};

const char *tc_qr_kind_name(tc_qr_kind kind)
{
    return (unsigned)kind < TC_QR_KIND__COUNT ? tc_qr_kind_names[kind] : NULL;
}

const char *tc_qr_severity_name(tc_qr_severity s)
{
    return s == TC_QR_CRITICAL ? "critical" : "warning";
}

size_t tc_qr_count(const tc_qr_set *set)
{
    return set->nrules;
}

const tc_qr_rule *tc_qr_get(const tc_qr_set *set, size_t i)
{
    return i < set->nrules ? &set->rules[i] : NULL;
}

int tc_qr_metric_count(const tc_qr_set *set)
{
    return set->nmetrics;
}

const char *tc_qr_metric_name(const tc_qr_set *set, int i)
{
    return i >= 0 && i < set->nmetrics ? set->metrics[i] : NULL;
}

void tc_qr_free(tc_qr_set *set)
{
    if (set) {
        free(set->rules);
        free(set);
    }
}

/* ---- parsing ---- */

typedef struct qr_parse {
    yaml_document_t *doc;
    tc_qr_set *set;
    const char *name;
    char *errstr;
    size_t errstr_size;
    int failed;
    const char *rule; /* name of the rule being read, for messages */
} qr_parse;

/* Record the first error at mark (plus col_offset columns), prefixed NAME:LINE:COL. */
static int qr_fail(qr_parse *p, const yaml_node_t *node, size_t col_offset, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int qr_fail(qr_parse *p, const yaml_node_t *node, size_t col_offset, const char *fmt, ...)
{
    char msg[TC_ERRSTR_MAX];
    va_list ap;

    if (p->failed)
        return 0;
    p->failed = 1;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    snprintf(p->errstr, p->errstr_size, "%s:%zu:%zu: %s%s%s%s", p->name,
             node ? node->start_mark.line + 1 : 1,
             node ? node->start_mark.column + 1 + col_offset : 1, p->rule ? "rule \"" : "",
             p->rule ? p->rule : "", p->rule ? "\": " : "", msg);
    return 0;
}

static yaml_node_t *qr_node(qr_parse *p, int id)
{
    return yaml_document_get_node(p->doc, id);
}

static const char *qr_scalar(const yaml_node_t *n)
{
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

static int qr_is_map(qr_parse *p, const yaml_node_t *n, const char *what)
{
    if (n && n->type == YAML_MAPPING_NODE)
        return 1;
    return qr_fail(p, n, 0, "%s must be a mapping", what);
}

/* Refuse keys of mapping n that are not in allowed (NULL-terminated), non-scalar keys and
 * duplicates. */
static int qr_keys(qr_parse *p, const yaml_node_t *n, const char *what, const char *const *allowed)
{
    for (yaml_node_pair_t *a = n->data.mapping.pairs.start; a < n->data.mapping.pairs.top; a++) {
        const yaml_node_t *kn = qr_node(p, a->key);
        const char *k = qr_scalar(kn);
        size_t i;

        if (!k)
            return qr_fail(p, kn, 0, "the keys of %s must be plain names", what);
        for (i = 0; allowed[i] && strcmp(allowed[i], k); i++)
            ;
        if (!allowed[i]) {
            char list[256] = "";
            for (size_t j = 0; allowed[j]; j++)
                snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s", j ? ", " : "",
                         allowed[j]);
            return qr_fail(p, kn, 0, "unknown key \"%.64s\" in %s (expected %s)", k, what, list);
        }
        for (yaml_node_pair_t *b = n->data.mapping.pairs.start; b < a; b++)
            if (!strcmp(qr_scalar(qr_node(p, b->key)), k))
                return qr_fail(p, kn, 0, "key \"%s\" appears twice in %s", k, what);
    }
    return 1;
}

/* The value node of key in mapping n, or NULL. */
static yaml_node_t *qr_get(qr_parse *p, const yaml_node_t *n, const char *key)
{
    for (yaml_node_pair_t *a = n->data.mapping.pairs.start; a < n->data.mapping.pairs.top; a++)
        if (!strcmp(qr_scalar(qr_node(p, a->key)), key))
            return qr_node(p, a->value);
    return NULL;
}

static int qr_string(qr_parse *p, const yaml_node_t *v, const char *key, char *out, size_t cap)
{
    const char *s = qr_scalar(v);

    if (!s)
        return qr_fail(p, v, 0, "%s must be a string", key);
    if (strlen(s) >= cap || !*s)
        return qr_fail(p, v, 0, "%s must be 1..%zu bytes", key, cap - 1);
    memcpy(out, s, strlen(s) + 1);
    return 1;
}

static int qr_number(qr_parse *p, const yaml_node_t *v, const char *key, double min, double max,
                     double *out)
{
    const char *s = qr_scalar(v);
    char *end = NULL;

    if (!s || !*s || v->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return qr_fail(p, v, 0, "%s must be a number", key);
    errno = 0;
    *out = strtod(s, &end);
    if (*end || errno || !isfinite(*out))
        return qr_fail(p, v, 0, "%s must be a number, not \"%.64s\"", key, s);
    if (*out < min || *out > max)
        return qr_fail(p, v, 0, "%s must be between %g and %g, not %g", key, min, max, *out);
    return 1;
}

/* A duration: a number of seconds, or a number with a unit ms, s, m, h, d. */
static int qr_duration(qr_parse *p, const yaml_node_t *v, const char *key, double max_s,
                       double *out_s)
{
    static const struct {
        const char *unit;
        double seconds;
    } units[] = {{"ms", 1e-3}, {"s", 1}, {"m", 60}, {"h", 3600}, {"d", 86400}, {"", 1}};
    const char *s = qr_scalar(v);
    char *end = NULL;
    double n;

    if (!s || !*s)
        return qr_fail(p, v, 0, "%s must be a duration such as 30s, 5m or 1h", key);
    errno = 0;
    n = strtod(s, &end);
    if (end == s || errno || !isfinite(n) || n < 0)
        return qr_fail(p, v, 0, "%s must be a duration such as 30s, 5m or 1h, not \"%.64s\"", key,
                       s);
    for (size_t u = 0; u < sizeof(units) / sizeof(units[0]); u++)
        if (!strcmp(end, units[u].unit)) {
            *out_s = n * units[u].seconds;
            if (*out_s > max_s)
                return qr_fail(p, v, 0, "%s must be at most %gs", key, max_s);
            return 1;
        }
    return qr_fail(p, v, 0, "%s: unknown unit \"%.16s\" (ms, s, m, h, d)", key, end);
}

static int qr_resolve(void *opaque, const char *name, size_t len)
{
    tc_qr_set *set = opaque;

    if (len == 0 || len > TC_QX_NAME_MAX)
        return -1;
    for (int i = 0; i < set->nmetrics; i++)
        if (strlen(set->metrics[i]) == len && !memcmp(set->metrics[i], name, len))
            return i;
    if (set->nmetrics >= TC_QR_METRICS_MAX)
        return -1;
    memcpy(set->metrics[set->nmetrics], name, len);
    set->metrics[set->nmetrics][len] = '\0';
    return set->nmetrics++;
}

/* A metric name: letters, digits and _, starting with a letter or _. */
static int qr_metric(qr_parse *p, const yaml_node_t *v, const char *key, int *out)
{
    const char *s = qr_scalar(v);
    size_t n = s ? strlen(s) : 0;

    if (!s || !n || n > TC_QX_NAME_MAX ||
        strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOP"
                  "QRSTUVWXYZ0123456789_") != n ||
        (s[0] >= '0' && s[0] <= '9'))
        return qr_fail(p, v, 0, "%s must be a metric name (letters, digits, _)", key);
    *out = qr_resolve(p->set, s, n);
    if (*out < 0)
        return qr_fail(p, v, 0, "more than %d metric names in the rules", TC_QR_METRICS_MAX);
    return 1;
}

static int qr_scope(qr_parse *p, const yaml_node_t *n, tc_qr_rule *r)
{
    static const char *const keys[] = {"devices", "tags", "schema_version", NULL};
    yaml_node_t *v;
    double num;

    if (!qr_is_map(p, n, "scope") || !qr_keys(p, n, "scope", keys))
        return 0;
    if ((v = qr_get(p, n, "devices")) &&
        !qr_string(p, v, "devices", r->devices, sizeof(r->devices)))
        return 0;
    if ((v = qr_get(p, n, "schema_version"))) {
        if (!qr_number(p, v, "schema_version", 1, 1000000, &num))
            return 0;
        if (num != floor(num))
            return qr_fail(p, v, 0, "schema_version must be a whole number");
        r->schema_version = (int)num;
    }
    if ((v = qr_get(p, n, "tags"))) {
        if (!qr_is_map(p, v, "tags"))
            return 0;
        for (yaml_node_pair_t *a = v->data.mapping.pairs.start; a < v->data.mapping.pairs.top;
             a++) {
            if (r->ntags >= TC_QR_TAGS_MAX)
                return qr_fail(p, qr_node(p, a->key), 0, "more than %d tags", TC_QR_TAGS_MAX);
            if (!qr_string(p, qr_node(p, a->key), "a tag key", r->tag_key[r->ntags],
                           sizeof(r->tag_key[0])) ||
                !qr_string(p, qr_node(p, a->value), "a tag value", r->tag_value[r->ntags],
                           sizeof(r->tag_value[0])))
                return 0;
            for (int t = 0; t < r->ntags; t++)
                if (!strcmp(r->tag_key[t], r->tag_key[r->ntags]))
                    return qr_fail(p, qr_node(p, a->key), 0, "tag \"%s\" appears twice",
                                   r->tag_key[t]);
            r->ntags++;
        }
    }
    return 1;
}

static int qr_check_range(qr_parse *p, const yaml_node_t *c, tc_qr_rule *r)
{
    static const char *const keys[] = {"metric", "min", "max", NULL};
    yaml_node_t *v;

    r->min = r->max = NAN;
    if (!qr_is_map(p, c, "range") || !qr_keys(p, c, "range", keys))
        return 0;
    if (!(v = qr_get(p, c, "metric")))
        return qr_fail(p, c, 0, "range needs metric");
    if (!qr_metric(p, v, "metric", &r->metric))
        return 0;
    if ((v = qr_get(p, c, "min")) && !qr_number(p, v, "min", -1e300, 1e300, &r->min))
        return 0;
    if ((v = qr_get(p, c, "max")) && !qr_number(p, v, "max", -1e300, 1e300, &r->max))
        return 0;
    if (isnan(r->min) && isnan(r->max))
        return qr_fail(p, c, 0, "range needs min, max or both");
    if (!isnan(r->min) && !isnan(r->max) && r->min > r->max)
        return qr_fail(p, c, 0, "range: min %g is above max %g", r->min, r->max);
    return 1;
}

static int qr_check_rate(qr_parse *p, const yaml_node_t *c, tc_qr_rule *r)
{
    static const char *const keys[] = {"metric", "max_per_s", NULL};
    yaml_node_t *v;

    if (!qr_is_map(p, c, "rate") || !qr_keys(p, c, "rate", keys))
        return 0;
    if (!(v = qr_get(p, c, "metric")) || !qr_get(p, c, "max_per_s"))
        return qr_fail(p, c, 0, "rate needs metric and max_per_s");
    return qr_metric(p, v, "metric", &r->metric) &&
           qr_number(p, qr_get(p, c, "max_per_s"), "max_per_s", 1e-300, 1e300, &r->max_per_s);
}

static int qr_check_required(qr_parse *p, const yaml_node_t *c, tc_qr_rule *r)
{
    if (c->type != YAML_SEQUENCE_NODE || c->data.sequence.items.start == c->data.sequence.items.top)
        return qr_fail(p, c, 0, "required must be a list of metric names");
    for (yaml_node_item_t *i = c->data.sequence.items.start; i < c->data.sequence.items.top; i++) {
        if (r->nrequired >= TC_QR_REQUIRED_MAX)
            return qr_fail(p, qr_node(p, *i), 0, "required lists more than %d metrics",
                           TC_QR_REQUIRED_MAX);
        if (!qr_metric(p, qr_node(p, *i), "required", &r->required[r->nrequired]))
            return 0;
        r->nrequired++;
    }
    return 1;
}

static int qr_check_interval(qr_parse *p, const yaml_node_t *c, tc_qr_rule *r)
{
    static const char *const keys[] = {"expected_s", "tolerance", NULL};
    yaml_node_t *v;

    r->tolerance = 3;
    if (!qr_is_map(p, c, "interval") || !qr_keys(p, c, "interval", keys))
        return 0;
    if (!(v = qr_get(p, c, "expected_s")))
        return qr_fail(p, c, 0, "interval needs expected_s");
    if (!qr_number(p, v, "expected_s", 1e-3, TC_QR_FOR_MAX_S, &r->expected_s))
        return 0;
    return !(v = qr_get(p, c, "tolerance")) || qr_number(p, v, "tolerance", 1, 1000, &r->tolerance);
}

static int qr_check_stuck(qr_parse *p, const yaml_node_t *c, tc_qr_rule *r)
{
    static const char *const keys[] = {"metric", "readings", "seconds", NULL};
    yaml_node_t *v;
    double n = 0;

    if (!qr_is_map(p, c, "stuck") || !qr_keys(p, c, "stuck", keys))
        return 0;
    if (!(v = qr_get(p, c, "metric")))
        return qr_fail(p, c, 0, "stuck needs metric");
    if (!qr_metric(p, v, "metric", &r->metric))
        return 0;
    if ((v = qr_get(p, c, "readings"))) {
        if (!qr_number(p, v, "readings", 2, 1000000, &n))
            return 0;
        if (n != floor(n))
            return qr_fail(p, v, 0, "readings must be a whole number");
        r->stuck_readings = (int)n;
    }
    if ((v = qr_get(p, c, "seconds")) &&
        !qr_number(p, v, "seconds", 1e-3, TC_QR_FOR_MAX_S, &r->stuck_s))
        return 0;
    if (!r->stuck_readings && r->stuck_s <= 0)
        return qr_fail(p, c, 0, "stuck needs readings, seconds or both");
    return 1;
}

static int qr_check_expr(qr_parse *p, const yaml_node_t *c, tc_qr_rule *r)
{
    const char *s = qr_scalar(c);
    char msg[TC_ERRSTR_MAX];
    size_t off = 0, col;

    if (!s)
        return qr_fail(p, c, 0, "expr must be a string such as \"dew_point <= temperature\"");
    if (tc_qx_compile(&r->expr, s, c->data.scalar.length, qr_resolve, p->set, &off, msg,
                      sizeof(msg)) != TC_OK) {
        /* One-line scalars: point into the expression (past a quote). */
        col = c->start_mark.line == c->end_mark.line
                  ? off + (c->data.scalar.style == YAML_SINGLE_QUOTED_SCALAR_STYLE ||
                                   c->data.scalar.style == YAML_DOUBLE_QUOTED_SCALAR_STYLE
                               ? 1
                               : 0)
                  : 0;
        return qr_fail(p, c, col, "expr: %s", msg);
    }
    return 1;
}

static int qr_check(qr_parse *p, const yaml_node_t *n, tc_qr_rule *r)
{
    static const char *const keys[] = {"range", "rate", "required", "interval",
                                       "stuck", "expr", NULL};
    static int (*const parse[])(qr_parse *, const yaml_node_t *, tc_qr_rule *) = {
        qr_check_range,    qr_check_rate,  qr_check_required,
        qr_check_interval, qr_check_stuck, qr_check_expr};
    const yaml_node_pair_t *a;

    if (!qr_is_map(p, n, "check") || !qr_keys(p, n, "check", keys))
        return 0;
    if (n->data.mapping.pairs.top - n->data.mapping.pairs.start != 1)
        return qr_fail(p, n, 0,
                       "check needs exactly one of range, rate, required, interval, "
                       "stuck, expr");
    a = n->data.mapping.pairs.start;
    for (int k = 0; k < TC_QR_KIND__COUNT; k++)
        if (!strcmp(qr_scalar(qr_node(p, a->key)), keys[k])) {
            r->kind = (tc_qr_kind)k;
            return parse[k](p, qr_node(p, a->value), r);
        }
    return 0;
}

static int qr_rule(qr_parse *p, const yaml_node_t *n, tc_qr_rule *r)
{
    static const char *const keys[] = {"name", "scope", "check", "severity", "for", NULL};
    yaml_node_t *v;
    double sec = 0;

    if (!qr_is_map(p, n, "a rule"))
        return 0;
    /* Name the rule in messages about its keys, when it has a plain name. */
    for (yaml_node_pair_t *a = n->data.mapping.pairs.start; a < n->data.mapping.pairs.top; a++) {
        const char *k = qr_scalar(qr_node(p, a->key)), *name = qr_scalar(qr_node(p, a->value));
        if (k && name && !strcmp(k, "name") && strlen(name) <= TC_QR_NAME_MAX)
            p->rule = name;
    }
    if (!qr_keys(p, n, "a rule", keys))
        return 0;
    r->line = (int)n->start_mark.line + 1;
    r->column = (int)n->start_mark.column + 1;
    r->min = r->max = NAN;
    p->rule = NULL; /* a name's own problems are not "rule X" problems */
    if (!(v = qr_get(p, n, "name")))
        return qr_fail(p, n, 0, "a rule needs a name");
    if (!qr_string(p, v, "name", r->name, sizeof(r->name)))
        return 0;
    if (strspn(r->name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") !=
        strlen(r->name))
        return qr_fail(p, v, 0, "name \"%s\" may hold letters, digits, _, . and - only", r->name);
    for (size_t i = 0; i < p->set->nrules; i++)
        if (!strcmp(p->set->rules[i].name, r->name))
            return qr_fail(p, v, 0, "rule name \"%s\" is already used on line %d", r->name,
                           p->set->rules[i].line);
    p->rule = r->name;
    if ((v = qr_get(p, n, "scope")) && !qr_scope(p, v, r))
        return 0;
    if (!(v = qr_get(p, n, "check")))
        return qr_fail(p, n, 0, "a rule needs a check");
    if (!qr_check(p, v, r))
        return 0;
    if ((v = qr_get(p, n, "severity"))) {
        const char *s = qr_scalar(v);
        if (s && !strcmp(s, "warning"))
            r->severity = TC_QR_WARNING;
        else if (s && !strcmp(s, "critical"))
            r->severity = TC_QR_CRITICAL;
        else
            return qr_fail(p, v, 0, "severity must be warning or critical");
    }
    if ((v = qr_get(p, n, "for"))) {
        if (!qr_duration(p, v, "for", TC_QR_FOR_MAX_S, &sec))
            return 0;
        r->for_us = (int64_t)llround(sec * 1e6);
    }
    p->rule = NULL;
    return 1;
}

static tc_qr_set *qr_document(qr_parse *p)
{
    static const char *const keys[] = {"rules", NULL};
    yaml_node_t *root = yaml_document_get_root_node(p->doc), *list;
    size_t n;

    if (!root) {
        qr_fail(p, NULL, 0, "empty document: expected a mapping with \"rules\"");
        return NULL;
    }
    if (!qr_is_map(p, root, "the document") || !qr_keys(p, root, "the document", keys))
        return NULL;
    if (!(list = qr_get(p, root, "rules")) || list->type != YAML_SEQUENCE_NODE) {
        qr_fail(p, list ? list : root, 0, "\"rules\" must be a list of rules");
        return NULL;
    }
    n = (size_t)(list->data.sequence.items.top - list->data.sequence.items.start);
    if (n > TC_QR_RULES_MAX) {
        qr_fail(p, list, 0, "more than %d rules", TC_QR_RULES_MAX);
        return NULL;
    }
    p->set->rules = calloc(n ? n : 1, sizeof(tc_qr_rule));
    if (!p->set->rules) {
        qr_fail(p, list, 0, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        if (!qr_rule(p, qr_node(p, list->data.sequence.items.start[i]), &p->set->rules[i]))
            return NULL;
        p->set->nrules++;
    }
    return p->set;
}

tc_qr_set *tc_qr_parse(const char *text, size_t len, const char *name, char *errstr,
                       size_t errstr_size)
{
    qr_parse p = {.name = name, .errstr = errstr, .errstr_size = errstr_size};
    yaml_parser_t parser;
    yaml_document_t doc, extra;
    tc_qr_set *out = NULL;

    if (len > TC_QR_FILE_MAX) {
        tc_err_set(TC_ERR_INVALID, errstr, errstr_size, "%s: larger than %d bytes", name,
                   TC_QR_FILE_MAX);
        return NULL;
    }
    p.set = calloc(1, sizeof(*p.set));
    if (!p.set || !yaml_parser_initialize(&parser)) {
        free(p.set);
        tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "%s: out of memory", name);
        return NULL;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &doc)) {
        const yaml_mark_t *m = parser.problem ? &parser.problem_mark : &parser.context_mark;
        snprintf(errstr, errstr_size, "%s:%zu:%zu: %s%s%s", name, m->line + 1, m->column + 1,
                 parser.problem ? parser.problem : "invalid YAML", parser.context ? " " : "",
                 parser.context ? parser.context : "");
        yaml_parser_delete(&parser);
        tc_qr_free(p.set);
        return NULL;
    }
    p.doc = &doc;
    out = qr_document(&p);
    if (out) {
        /* A second document would be ignored silently: refuse it. */
        if (!yaml_parser_load(&parser, &extra)) {
            snprintf(errstr, errstr_size, "%s:%zu:%zu: %s", name, parser.problem_mark.line + 1,
                     parser.problem_mark.column + 1,
                     parser.problem ? parser.problem : "invalid YAML");
            out = NULL;
        } else {
            yaml_node_t *r = yaml_document_get_root_node(&extra);
            if (r) {
                snprintf(errstr, errstr_size, "%s:%zu:%zu: a second YAML document", name,
                         r->start_mark.line + 1, r->start_mark.column + 1);
                out = NULL;
            }
            yaml_document_delete(&extra);
        }
    }
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    if (!out)
        tc_qr_free(p.set);
    return out;
}

tc_qr_set *tc_qr_load(const char *path, char *errstr, size_t errstr_size)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    size_t n;
    tc_qr_set *set;

    if (!f) {
        tc_err_set(TC_ERR_IO, errstr, errstr_size, "%s: %s", path, strerror(errno));
        return NULL;
    }
    buf = malloc(TC_QR_FILE_MAX + 1);
    n = buf ? fread(buf, 1, TC_QR_FILE_MAX + 1, f) : 0;
    if (!buf || ferror(f)) {
        tc_err_set(buf ? TC_ERR_IO : TC_ERR_NOMEM, errstr, errstr_size, "%s: could not read it",
                   path);
        fclose(f);
        free(buf);
        return NULL;
    }
    fclose(f);
    set = tc_qr_parse(buf, n, path, errstr, errstr_size);
    free(buf);
    return set;
}

/* ---- evaluation ---- */

typedef struct qr_state {
    int64_t pending_since; /* when the violation began, while pending */
    int64_t last_t;        /* previous reading with the rule's metric (rate, stuck) */
    int64_t run_start;     /* stuck: first reading of the run of equal values */
    double last;           /* previous value of the rule's metric */
    uint32_t run;          /* stuck: readings in the run */
    uint8_t pending, firing, scoped, in_scope, seen;
} qr_state;

_Static_assert(sizeof(qr_state) <= TC_QR_STATE_BYTES, "rule state over its stated bound");

typedef struct qr_device {
    const char *id; /* the tc_qids copy */
    int64_t last_seen;
    qr_state *states; /* one per rule; NULL until the device's first reading */
} qr_device;

struct tc_qr_eval {
    const tc_qr_set *set;
    tc_qr_event_fn fn;
    void *opaque;
    size_t max_devices;
    qr_device *devices; /* indexed like ids */
    tc_qids *ids;
    uint64_t firing, refused, out_of_order;
};

tc_qr_eval *tc_qr_eval_new(const tc_qr_set *set, size_t max_devices, tc_qr_event_fn fn,
                           void *opaque, char *errstr, size_t errstr_size)
{
    tc_qr_eval *e;

    if (max_devices < 1 || max_devices > TC_QIDS_MAX) {
        tc_err_set(TC_ERR_INVALID, errstr, errstr_size, "rules: max_devices must be 1..%d",
                   TC_QIDS_MAX);
        return NULL;
    }
    e = calloc(1, sizeof(*e));
    if (e) {
        e->set = set;
        e->fn = fn;
        e->opaque = opaque;
        e->max_devices = max_devices;
        e->devices = calloc(max_devices, sizeof(*e->devices));
        e->ids = tc_qids_new(max_devices);
    }
    if (!e || !e->devices || !e->ids) {
        tc_qr_eval_destroy(e);
        tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "rules: out of memory");
        return NULL;
    }
    return e;
}

void tc_qr_eval_destroy(tc_qr_eval *e)
{
    if (!e)
        return;
    for (size_t i = 0; e->devices && e->ids && i < tc_qids_count(e->ids); i++)
        free(e->devices[i].states);
    free(e->devices);
    tc_qids_destroy(e->ids);
    free(e);
}

uint64_t tc_qr_eval_firing(const tc_qr_eval *e)
{
    return e->firing;
}

uint64_t tc_qr_eval_refused(const tc_qr_eval *e)
{
    return e->refused;
}

uint64_t tc_qr_eval_out_of_order(const tc_qr_eval *e)
{
    return e->out_of_order;
}

static qr_device *qr_device_of(tc_qr_eval *e, const char *id, size_t len)
{
    long i = tc_qids_find(e->ids, id, len, 1);
    qr_device *d;

    if (i < 0)
        return NULL;
    d = &e->devices[i];
    if (!d->states) {
        d->states = calloc(e->set->nrules ? e->set->nrules : 1, sizeof(qr_state));
        if (!d->states)
            return NULL; /* the id stays known; its states are tried again next reading */
        d->id = tc_qids_id(e->ids, (size_t)i);
    }
    return d;
}

static int qr_in_scope(const tc_qr_rule *r, qr_state *s, const qr_device *d,
                       const tc_qr_reading *rd)
{
    if (!s->scoped) {
        /* The glob depends on the device only: match it once. */
        s->in_scope = !r->devices[0] || fnmatch(r->devices, d->id, 0) == 0;
        s->scoped = 1;
    }
    if (!s->in_scope || (r->schema_version && rd->schema_version != r->schema_version))
        return 0;
    for (int t = 0; t < r->ntags; t++) {
        int found = 0;
        for (int k = 0; k < rd->ntags && !found; k++)
            found = !strcmp(rd->tags[k].key, r->tag_key[t]) &&
                    !strcmp(rd->tags[k].value, r->tag_value[t]);
        if (!found)
            return 0;
    }
    return 1;
}

static void qr_emit(tc_qr_eval *e, const tc_qr_rule *r, const qr_device *d, int firing,
                    int64_t start, int64_t end, double observed)
{
    tc_qr_event ev = {r, d->id, firing, start, end, observed};

    if (firing)
        e->firing++;
    else
        e->firing--;
    if (e->fn)
        e->fn(e->opaque, &ev);
}

/* Apply a judgement at t: 1 violated, 0 satisfied, -1 cannot say. */
static void qr_judge(tc_qr_eval *e, const tc_qr_rule *r, const qr_device *d, qr_state *s,
                     int violated, int64_t since, int64_t t, double observed)
{
    if (violated < 0)
        return;
    if (!violated) {
        if (s->firing) {
            s->firing = 0;
            /* An interval rule's violation starts after the last reading: a reading just past
             * it can end the violation before its nominal start. */
            qr_emit(e, r, d, 0, s->pending_since, t > s->pending_since ? t : s->pending_since,
                    observed);
        }
        s->pending = 0;
        return;
    }
    if (!s->pending) {
        s->pending = 1;
        s->pending_since = since;
    }
    if (!s->firing && t - s->pending_since >= r->for_us) {
        s->firing = 1;
        qr_emit(e, r, d, 1, s->pending_since, 0, observed);
    }
}

void tc_qr_eval_reading(tc_qr_eval *e, const tc_qr_reading *rd)
{
    qr_device *d = TC_Q_TIME_OK(rd->t_us) ? qr_device_of(e, rd->device, rd->device_len) : NULL;

    if (!d) {
        e->refused++;
        return;
    }
    if (d->last_seen && rd->t_us < d->last_seen) {
        /* Transitions follow time: an older reading cannot start or end a violation after a
         * newer one did (the metrics count it as out of order). */
        e->out_of_order++;
        return;
    }
    d->last_seen = rd->t_us;
    for (size_t i = 0; i < e->set->nrules; i++) {
        const tc_qr_rule *r = &e->set->rules[i];
        qr_state *s = &d->states[i];
        double v = r->kind == TC_QR_RANGE || r->kind == TC_QR_RATE || r->kind == TC_QR_STUCK
                       ? rd->values[r->metric]
                       : NAN;
        int violated = -1;
        int64_t since = rd->t_us;

        int in = qr_in_scope(r, s, d, rd);

        if (r->kind == TC_QR_INTERVAL)
            s->seen = (uint8_t)in; /* what the tick goes by: the scope of the last reading */
        if (!in)
            continue;
        switch (r->kind) {
        case TC_QR_RANGE:
            if (!isnan(v))
                violated = v < r->min || v > r->max; /* a NaN bound compares false */
            break;
        case TC_QR_RATE:
            if (!isnan(v) && s->seen && rd->t_us > s->last_t)
                violated =
                    fabs(v - s->last) / ((double)(rd->t_us - s->last_t) / 1e6) > r->max_per_s;
            break;
        case TC_QR_REQUIRED:
            violated = 0;
            for (int k = 0; k < r->nrequired; k++)
                violated |= isnan(rd->values[r->required[k]]);
            break;
        case TC_QR_INTERVAL:
            violated = 0; /* a reading arrived: not silent (tc_qr_eval_tick judges silence) */
            break;
        case TC_QR_STUCK:
            if (isnan(v) || (s->seen && rd->t_us <= s->last_t))
                break;
            if (s->seen && v == s->last) {
                s->run++;
            } else {
                s->run = 1;
                s->run_start = rd->t_us;
            }
            since = s->run_start;
            violated = (r->stuck_readings && s->run >= (uint32_t)r->stuck_readings) ||
                       (r->stuck_s > 0 && s->run >= 2 &&
                        (double)(rd->t_us - s->run_start) >= r->stuck_s * 1e6);
            break;
        case TC_QR_EXPR:
            violated = tc_qx_eval(&r->expr, rd->values);
            violated = violated < 0 ? -1 : !violated;
            break;
        default:
            break;
        }
        if ((r->kind == TC_QR_RATE || r->kind == TC_QR_STUCK) && !isnan(v) &&
            (!s->seen || rd->t_us > s->last_t)) {
            s->last = v;
            s->last_t = rd->t_us;
            s->seen = 1;
        }
        qr_judge(e, r, d, s, violated, since, rd->t_us, v);
    }
}

void tc_qr_eval_tick(tc_qr_eval *e, int64_t now_us)
{
    if (!TC_Q_TIME_OK(now_us))
        return;
    for (size_t di = 0; di < tc_qids_count(e->ids); di++) {
        qr_device *d = &e->devices[di];

        if (!d->states)
            continue;
        for (size_t i = 0; i < e->set->nrules; i++) {
            const tc_qr_rule *r = &e->set->rules[i];
            qr_state *s = &d->states[i];
            double quiet = (double)(now_us - d->last_seen) / 1e6;

            /* Scope as the device's last reading had it: only rules it was in scope of. */
            if (r->kind != TC_QR_INTERVAL || !s->seen || s->firing)
                continue;
            if (quiet > r->expected_s * r->tolerance)
                qr_judge(e, r, d, s, 1,
                         d->last_seen + (int64_t)(r->expected_s * r->tolerance * 1e6), now_us,
                         quiet);
        }
    }
}

tc_err tc_qr_eval_restore(tc_qr_eval *e, size_t rule, const char *device, size_t len,
                          int64_t start_us)
{
    qr_device *d;
    qr_state *s;

    if (rule >= e->set->nrules || !TC_Q_TIME_OK(start_us))
        return TC_ERR_INVALID;
    if (tc_qids_find(e->ids, device, len, 0) < 0 && tc_qids_count(e->ids) >= e->max_devices)
        return TC_ERR_FULL;
    d = qr_device_of(e, device, len);
    if (!d)
        return TC_ERR_NOMEM;
    s = &d->states[rule];
    if (!s->firing)
        e->firing++;
    s->pending = 1;
    s->firing = 1;
    s->pending_since = start_us;
    return TC_OK;
}

void tc_qr_eval_each_firing(const tc_qr_eval *e, tc_qr_firing_fn fn, void *opaque)
{
    for (size_t di = 0; di < tc_qids_count(e->ids); di++) {
        const qr_device *d = &e->devices[di];

        for (size_t i = 0; d->states && i < e->set->nrules; i++)
            if (d->states[i].firing)
                fn(opaque, &e->set->rules[i], d->id, d->states[i].pending_since);
    }
}

long tc_qr_find(const tc_qr_set *set, const char *name)
{
    for (size_t i = 0; i < set->nrules; i++)
        if (!strcmp(set->rules[i].name, name))
            return (long)i;
    return -1;
}
