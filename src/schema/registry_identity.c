/*
 * registry_identity.c -- identity forms of Avro schemas and resolution of references; see
 * registry_identity.h.
 *
 * One walker writes all three forms. It knows which JSON positions hold a type (the schema itself,
 * a field's "type", "items", "values", union branches, a "type" that is not a keyword) and which
 * hold plain data (defaults, doc, custom properties), because only type positions carry names to
 * qualify or references to inline. Data positions are written with sorted members and nothing else
 * changed: a default of 1.50 stays 1.50, as written.
 *
 * The walker recurses as deep as the schema's JSON, which the schema parser caps
 * (TC_AVRO_SCHEMA_MAX_DEPTH); an inlined reference is itself a parsed, capped schema, and each
 * reference is inlined at most once per walk, so inlining cannot loop.
 */
#include "schema/registry_identity.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Named types a walk keeps track of before it gives up (schemas are capped well below). */
#define TC_RI_NAMES_MAX 100000
/* Caps when parsing a stored text again (the schema parser's own). */
#define TC_RI_TEXT_MAX   (1024 * 1024)
#define TC_RI_TEXT_DEPTH 256
#define TC_RI_TEXT_NODES 200000
/* References one schema may inline. */
#define TC_RI_REFS_MAX 1024

typedef struct tc_ri_ctx {
    tc_jbuf buf;  /* the output */
    tc_jbuf *b;   /* &buf */
    int qualify;  /* named types by full name, without "namespace" (else relative, as Avro) */
    int collapse; /* {"type": "int"} alone is "int"; a field's "order": "ascending" goes */
    int inline_refs;
    const tc_reg_named *refs;
    size_t nrefs;
    unsigned char *ref_used;
    char **defined; /* full names of named types written so far (inline mode) */
    size_t ndefined, capdefined;
    int failed;
} tc_ri_ctx;

static const char *const tc_ri_primitives[] = {"null",  "boolean", "int",   "long",
                                               "float", "double",  "bytes", "string"};

static int tc_ri_is_primitive(const char *s)
{
    for (size_t i = 0; i < sizeof(tc_ri_primitives) / sizeof(tc_ri_primitives[0]); i++)
        if (!strcmp(s, tc_ri_primitives[i]))
            return 1;
    return 0;
}

static int tc_ri_is_named(const char *t)
{
    return !strcmp(t, "record") || !strcmp(t, "error") || !strcmp(t, "enum") || !strcmp(t, "fixed");
}

/* Full name of name in namespace ns (NULL = none): malloc'ed. */
static char *tc_ri_fullname(const char *name, const char *ns)
{
    size_t nl = strlen(name), sl = ns ? strlen(ns) : 0;
    char *out;

    if (strchr(name, '.') || sl == 0)
        return strdup(name);
    out = malloc(sl + nl + 2);
    if (out)
        snprintf(out, sl + nl + 2, "%s.%s", ns, name);
    return out;
}

/* The namespace part of a full name (malloc'ed, "" when none). */
static char *tc_ri_ns_of(const char *full)
{
    const char *dot = strrchr(full, '.');
    size_t n = dot ? (size_t)(dot - full) : 0;
    char *out = malloc(n + 1);

    if (out) {
        memcpy(out, full, n);
        out[n] = '\0';
    }
    return out;
}

static int tc_ri_defined(const tc_ri_ctx *c, const char *full)
{
    for (size_t i = 0; i < c->ndefined; i++)
        if (!strcmp(c->defined[i], full))
            return 1;
    return 0;
}

static int tc_ri_define(tc_ri_ctx *c, const char *full)
{
    if (c->ndefined == c->capdefined) {
        size_t cap = c->capdefined ? c->capdefined * 2 : 16;
        char **d = cap <= TC_RI_NAMES_MAX ? realloc(c->defined, cap * sizeof(*d)) : NULL;
        if (!d)
            return -1;
        c->defined = d;
        c->capdefined = cap;
    }
    if (!(c->defined[c->ndefined] = strdup(full)))
        return -1;
    c->ndefined++;
    return 0;
}

/* Member indices of object v sorted by name (malloc'ed; NULL when out of memory). */
typedef struct tc_ri_key {
    const char *key;
    size_t len, index;
} tc_ri_key;

static int tc_ri_keycmp(const void *a, const void *b)
{
    const tc_ri_key *x = a, *y = b;
    int r = memcmp(x->key, y->key, x->len < y->len ? x->len : y->len);

    return r ? r : (x->len > y->len) - (x->len < y->len);
}

static size_t *tc_ri_sorted_keys(const tc_json *v)
{
    tc_ri_key *k = malloc((v->len ? v->len : 1) * sizeof(*k));
    size_t *idx = malloc((v->len ? v->len : 1) * sizeof(*idx));

    if (!k || !idx) {
        free(k);
        free(idx);
        return NULL;
    }
    for (size_t i = 0; i < v->len; i++) {
        k[i].key = v->u.members[i].key;
        k[i].len = v->u.members[i].key_len;
        k[i].index = i;
    }
    qsort(k, v->len, sizeof(*k), tc_ri_keycmp);
    for (size_t i = 0; i < v->len; i++)
        idx[i] = k[i].index;
    free(k);
    return idx;
}

void tc_reg_json_sorted(tc_jbuf *b, const tc_json *v)
{
    size_t *idx;

    if (v->type == TC_JSON_ARRAY) {
        tc_jbuf_arr_begin(b);
        for (size_t i = 0; i < v->len; i++)
            tc_reg_json_sorted(b, v->u.items[i]);
        tc_jbuf_arr_end(b);
        return;
    }
    if (v->type != TC_JSON_OBJECT) {
        tc_jbuf_value(b, v);
        return;
    }
    idx = tc_ri_sorted_keys(v);
    if (!idx) {
        b->failed = 1;
        return;
    }
    tc_jbuf_obj_begin(b);
    for (size_t k = 0; k < v->len; k++) {
        const tc_json_member *m = &v->u.members[idx[k]];
        tc_jbuf_key(b, m->key);
        tc_reg_json_sorted(b, m->value);
    }
    tc_jbuf_obj_end(b);
    free(idx);
}

static void tc_ri_type(tc_ri_ctx *c, const tc_json *j, const char *ns);

/* full written relative to namespace ns, as Avro writes names: the short name when full is in
 * ns, else full. */
static const char *tc_ri_relative(const char *full, const char *ns)
{
    const char *dot = strrchr(full, '.');
    size_t nl = strlen(ns);

    if (!dot)
        return full;
    return (size_t)(dot - full) == nl && !strncmp(full, ns, nl) ? dot + 1 : full;
}

/* Is schema a named type whose full name is full? (A reference is found by its name, which
 * Confluent's clients set to the type's full name, or by the full name of the type it holds, for
 * clients that name references otherwise, e.g. by file.) */
static int tc_ri_root_is(const tc_json *schema, const char *full)
{
    const char *t = tc_json_string(tc_json_get(schema, "type"));
    const char *name = tc_json_string(tc_json_get(schema, "name"));
    const char *ns = tc_json_string(tc_json_get(schema, "namespace"));
    size_t nl, sl;

    if (!t || !tc_ri_is_named(t) || !name)
        return 0;
    if (strchr(name, '.') || !ns || !ns[0])
        return !strcmp(name, full);
    nl = strlen(name);
    sl = strlen(ns);
    return strlen(full) == sl + 1 + nl && !strncmp(full, ns, sl) && full[sl] == '.' &&
           !strcmp(full + sl + 1, name);
}

/* A type written as a name: a primitive, a named type defined earlier, or a reference. */
static void tc_ri_name(tc_ri_ctx *c, const char *s, const char *ns)
{
    char *full;

    if (tc_ri_is_primitive(s)) {
        tc_jbuf_str(c->b, s);
        return;
    }
    full = tc_ri_fullname(s, ns);
    if (!full) {
        c->failed = 1;
        return;
    }
    if (c->inline_refs && !tc_ri_defined(c, full)) {
        for (size_t i = 0; i < c->nrefs; i++) {
            if (c->ref_used[i] ||
                (strcmp(c->refs[i].name, full) && !tc_ri_root_is(c->refs[i].schema, full)))
                continue;
            c->ref_used[i] = 1;
            tc_ri_type(c, c->refs[i].schema, "");
            free(full);
            return;
        }
    }
    tc_jbuf_str(c->b, c->qualify ? full : tc_ri_relative(full, ns));
    free(full);
}

/* The fields of a record: each field's "type" is a type position in the record's namespace. */
static void tc_ri_fields(tc_ri_ctx *c, const tc_json *fields, const char *ns)
{
    if (fields->type != TC_JSON_ARRAY) {
        tc_reg_json_sorted(c->b, fields);
        return;
    }
    tc_jbuf_arr_begin(c->b);
    for (size_t i = 0; i < fields->len; i++) {
        const tc_json *f = fields->u.items[i];
        size_t *idx;

        if (f->type != TC_JSON_OBJECT || !(idx = tc_ri_sorted_keys(f))) {
            if (f->type == TC_JSON_OBJECT)
                c->failed = 1;
            tc_reg_json_sorted(c->b, f);
            continue;
        }
        tc_jbuf_obj_begin(c->b);
        for (size_t k = 0; k < f->len; k++) {
            const tc_json_member *m = &f->u.members[idx[k]];
            /* "ascending" is the default order: Avro does not write it. */
            if (c->collapse && !strcmp(m->key, "order") &&
                !strcmp(tc_json_string(m->value) ? m->value->u.str : "", "ascending"))
                continue;
            tc_jbuf_key(c->b, m->key);
            if (!strcmp(m->key, "type"))
                tc_ri_type(c, m->value, ns);
            else
                tc_reg_json_sorted(c->b, m->value);
        }
        tc_jbuf_obj_end(c->b);
        free(idx);
    }
    tc_jbuf_arr_end(c->b);
}

static void tc_ri_object(tc_ri_ctx *c, const tc_json *j, const char *ns)
{
    const char *t = tc_json_string(tc_json_get(j, "type"));
    const char *name = tc_json_string(tc_json_get(j, "name"));
    const tc_json *nsj = tc_json_get(j, "namespace");
    int named = t && tc_ri_is_named(t);
    char *full = NULL, *child_ns = NULL;
    size_t *idx;

    if (t && c->collapse && j->len == 1 && tc_ri_is_primitive(t)) {
        tc_jbuf_str(c->b, t);
        return;
    }
    if (named && name) {
        const char *own_ns = nsj && nsj->type == TC_JSON_STRING ? nsj->u.str
                             : nsj && nsj->type == TC_JSON_NULL ? ""
                                                                : ns;
        full = tc_ri_fullname(name, own_ns);
        child_ns = full ? tc_ri_ns_of(full) : NULL;
        if (!full || !child_ns) {
            c->failed = 1;
            goto out;
        }
        if (c->inline_refs) {
            if (tc_ri_defined(c, full)) {
                /* Defined already (two references sharing a type): name it. */
                tc_jbuf_str(c->b, full);
                goto out;
            }
            if (tc_ri_define(c, full) < 0) {
                c->failed = 1;
                goto out;
            }
        }
    }
    idx = tc_ri_sorted_keys(j);
    if (!idx) {
        c->failed = 1;
        goto out;
    }
    tc_jbuf_obj_begin(c->b);
    for (size_t k = 0; k < j->len; k++) {
        const tc_json_member *m = &j->u.members[idx[k]];

        if (full && !strcmp(m->key, "namespace"))
            continue;
        tc_jbuf_key(c->b, m->key);
        if (full && !strcmp(m->key, "name")) {
            const char *dot = strrchr(full, '.');
            tc_jbuf_str(c->b, c->qualify || !dot ? full : dot + 1);
            /* "namespace" sorts right after "name". Qualified: only a full name without a dot
             * needs one (the null namespace, or it would inherit the enclosing one). Relative,
             * as Avro writes it: when it differs from the enclosing namespace. */
            if ((c->qualify && !dot && ns[0]) || (!c->qualify && strcmp(child_ns, ns))) {
                tc_jbuf_key(c->b, "namespace");
                tc_jbuf_str(c->b, c->qualify ? "" : child_ns);
            }
        } else if (!strcmp(m->key, "type")) {
            if (t && (named || tc_ri_is_primitive(t) || !strcmp(t, "array") || !strcmp(t, "map")))
                tc_jbuf_str(c->b, t);
            else
                tc_ri_type(c, m->value, ns);
        } else if (named && t && (!strcmp(t, "record") || !strcmp(t, "error")) &&
                   !strcmp(m->key, "fields")) {
            tc_ri_fields(c, m->value, child_ns ? child_ns : ns);
        } else if ((t && !strcmp(t, "array") && !strcmp(m->key, "items")) ||
                   (t && !strcmp(t, "map") && !strcmp(m->key, "values"))) {
            tc_ri_type(c, m->value, ns);
        } else {
            tc_reg_json_sorted(c->b, m->value);
        }
    }
    tc_jbuf_obj_end(c->b);
    free(idx);
out:
    free(full);
    free(child_ns);
}

static void tc_ri_type(tc_ri_ctx *c, const tc_json *j, const char *ns)
{
    if (c->failed)
        return;
    switch (j->type) {
    case TC_JSON_STRING:
        tc_ri_name(c, j->u.str, ns);
        break;
    case TC_JSON_ARRAY:
        tc_jbuf_arr_begin(c->b);
        for (size_t i = 0; i < j->len; i++)
            tc_ri_type(c, j->u.items[i], ns);
        tc_jbuf_arr_end(c->b);
        break;
    case TC_JSON_OBJECT:
        tc_ri_object(c, j, ns);
        break;
    default:
        tc_jbuf_value(c->b, j);
        break;
    }
}

static char *tc_ri_run(tc_ri_ctx *c, const tc_json *schema, size_t *len)
{
    tc_jbuf_init(&c->buf, 0);
    c->b = &c->buf;
    tc_ri_type(c, schema, "");
    for (size_t i = 0; i < c->ndefined; i++)
        free(c->defined[i]);
    free(c->defined);
    if (c->failed) {
        tc_jbuf_free(&c->buf);
        return NULL;
    }
    return tc_jbuf_take(&c->buf, len);
}

char *tc_reg_schema_form(const tc_json *schema, int normalize, size_t *len)
{
    tc_ri_ctx c;

    memset(&c, 0, sizeof(c));
    c.qualify = normalize;
    c.collapse = 1;
    return tc_ri_run(&c, schema, len);
}

char *tc_reg_schema_inline(const tc_json *schema, const tc_reg_named *refs, size_t n, size_t *len,
                           char *errstr, size_t errstr_size)
{
    tc_ri_ctx c;
    char *out;

    if (n > TC_RI_REFS_MAX) {
        tc_err_set(TC_ERR_INVALID, errstr, errstr_size, "more than %d references", TC_RI_REFS_MAX);
        return NULL;
    }
    memset(&c, 0, sizeof(c));
    c.inline_refs = 1;
    c.qualify = 1;
    c.refs = refs;
    c.nrefs = n;
    c.ref_used = calloc(n ? n : 1, 1);
    if (!c.ref_used) {
        tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory");
        return NULL;
    }
    out = tc_ri_run(&c, schema, len);
    free(c.ref_used);
    if (!out)
        tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory resolving references");
    return out;
}

/* Append v as sorted compact JSON to b (a text being built with raw appends). -1 when out of
 * memory. */
static int tc_ri_append_sorted(tc_jbuf *b, const tc_json *v)
{
    tc_jbuf part;
    size_t n = 0;
    char *text;

    tc_jbuf_init(&part, 0);
    tc_reg_json_sorted(&part, v);
    text = tc_jbuf_take(&part, &n);
    if (!text)
        return -1;
    tc_jbuf_append(b, text, n);
    free(text);
    return 0;
}

char *tc_reg_identity(const tc_json *schema, int normalize, const tc_json *references,
                      const tc_json *metadata, const tc_json *rule_set)
{
    static const char *const label[3] = {"\nreferences:", "\nmetadata:", "\nruleSet:"};
    const tc_json *part[3] = {references, metadata, rule_set};
    size_t len = 0;
    char *form = tc_reg_schema_form(schema, normalize, &len);
    tc_jbuf b;

    if (!form)
        return NULL;
    tc_jbuf_init(&b, 0);
    tc_jbuf_append(&b, form, len);
    free(form);
    for (int i = 0; i < 3; i++) {
        if (!part[i] || part[i]->type == TC_JSON_NULL ||
            (part[i]->type == TC_JSON_ARRAY && part[i]->len == 0))
            continue;
        tc_jbuf_append(&b, label[i], strlen(label[i]));
        if (tc_ri_append_sorted(&b, part[i]) < 0) {
            tc_jbuf_free(&b);
            return NULL;
        }
    }
    return tc_jbuf_take(&b, NULL);
}

char *tc_reg_identity_of_text(const char *text)
{
    tc_json_limits lim = {TC_RI_TEXT_MAX, TC_RI_TEXT_DEPTH, TC_RI_TEXT_NODES, 0};
    tc_json_doc *doc = tc_json_parse(text, strlen(text), &lim, NULL, NULL, 0);
    char *out;

    if (!doc)
        return NULL;
    out = tc_reg_identity(tc_json_root(doc), 0, NULL, NULL, NULL);
    tc_json_free(doc);
    return out;
}
