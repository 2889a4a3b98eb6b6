/*
 * avro_schema.c -- Avro schema model, validation and Parsing Canonical Form; see avro_schema.h.
 *
 * The model is built in one recursive pass over the JSON DOM, whose depth is capped
 * (TC_AVRO_SCHEMA_MAX_DEPTH), so the recursion is bounded. Named types go into a hash table as soon
 * as their name is known (before their fields), which is what lets a record refer to itself.
 */
#include "schema/avro_schema.h"

#include <avro.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/arena.h"

struct tc_avro_schema {
    tc_arena arena;
    tc_json_doc *doc;
    const tc_avro_node *root;
    char *canonical;
    size_t canonical_len;
    unsigned nnodes;
};

typedef struct tc_avro_named {
    const char *fullname;
    tc_avro_node *node;
} tc_avro_named;

typedef struct tc_avro_pctx {
    tc_avro_schema *s;
    tc_avro_named *names; /* open addressing, capacity a power of two */
    size_t ncap, nnames;
    tc_err err;
    char *errstr;
    size_t errstr_size;
} tc_avro_pctx;

/* libavro's error string is global state: one parse at a time. */
static pthread_mutex_t tc_libavro_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *const tc_avro_kind_names[] = {"null",   "boolean", "int",    "long",   "float",
                                                 "double", "bytes",   "string", "record", "enum",
                                                 "array",  "map",     "union",  "fixed"};

const char *tc_avro_kind_name(tc_avro_kind k)
{
    return (unsigned)k < sizeof(tc_avro_kind_names) / sizeof(tc_avro_kind_names[0])
               ? tc_avro_kind_names[k]
               : "?";
}

static int tc_avro_primitive(const char *s, tc_avro_kind *out)
{
    for (int k = TC_AVRO_NULL; k <= TC_AVRO_STRING; k++) {
        if (!strcmp(s, tc_avro_kind_names[k])) {
            *out = (tc_avro_kind)k;
            return 1;
        }
    }
    return 0;
}

__attribute__((format(printf, 2, 3))) static int tc_avro_fail(tc_avro_pctx *c, const char *fmt, ...)
{
    va_list ap;

    if (c->err == TC_OK) {
        c->err = TC_ERR_INVALID;
        if (c->errstr && c->errstr_size) {
            va_start(ap, fmt);
            vsnprintf(c->errstr, c->errstr_size, fmt, ap);
            va_end(ap);
        }
    }
    return -1;
}

static int tc_avro_nomem(tc_avro_pctx *c)
{
    if (c->err == TC_OK) {
        c->err = TC_ERR_NOMEM;
        tc_err_set(TC_ERR_NOMEM, c->errstr, c->errstr_size, "out of memory");
    }
    return -1;
}

/* ---- names ---- */

static int tc_avro_valid_name(const char *s)
{
    if (!s || !((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || *s == '_'))
        return 0;
    for (s++; *s; s++)
        if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || *s == '_' ||
              (*s >= '0' && *s <= '9')))
            return 0;
    return 1;
}

/* "" or dot-separated valid names. */
static int tc_avro_valid_dotted(const char *s, int allow_empty)
{
    char part[TC_AVRO_NAME_MAX + 1];

    if (!*s)
        return allow_empty;
    if (strlen(s) > TC_AVRO_NAME_MAX)
        return 0;
    while (*s) {
        size_t n = strcspn(s, ".");
        memcpy(part, s, n);
        part[n] = '\0';
        if (!tc_avro_valid_name(part))
            return 0;
        s += n;
        if (*s == '.') {
            s++;
            if (!*s)
                return 0;
        }
    }
    return 1;
}

static uint64_t tc_fnv1a(const char *s)
{
    uint64_t h = 1469598103934665603ULL;

    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return h;
}

static tc_avro_node *tc_avro_find(const tc_avro_pctx *c, const char *fullname)
{
    if (!c->ncap)
        return NULL;
    for (size_t i = tc_fnv1a(fullname) & (c->ncap - 1);; i = (i + 1) & (c->ncap - 1)) {
        if (!c->names[i].fullname)
            return NULL;
        if (!strcmp(c->names[i].fullname, fullname))
            return c->names[i].node;
    }
}

static int tc_avro_define(tc_avro_pctx *c, const char *fullname, tc_avro_node *node)
{
    tc_avro_kind prim;

    if (tc_avro_primitive(fullname, &prim))
        return tc_avro_fail(c, "cannot redefine primitive type \"%s\"", fullname);
    if (tc_avro_find(c, fullname))
        return tc_avro_fail(c, "name \"%s\" is defined twice", fullname);
    if ((c->nnames + 1) * 2 > c->ncap) {
        size_t ncap = c->ncap ? c->ncap * 2 : 64;
        tc_avro_named *n = calloc(ncap, sizeof(*n));
        if (!n)
            return tc_avro_nomem(c);
        for (size_t i = 0; i < c->ncap; i++) {
            if (!c->names[i].fullname)
                continue;
            for (size_t j = tc_fnv1a(c->names[i].fullname) & (ncap - 1);; j = (j + 1) & (ncap - 1))
                if (!n[j].fullname) {
                    n[j] = c->names[i];
                    break;
                }
        }
        free(c->names);
        c->names = n;
        c->ncap = ncap;
    }
    for (size_t i = tc_fnv1a(fullname) & (c->ncap - 1);; i = (i + 1) & (c->ncap - 1))
        if (!c->names[i].fullname) {
            c->names[i].fullname = fullname;
            c->names[i].node = node;
            break;
        }
    c->nnames++;
    return 0;
}

/* Full name of name in namespace ns (name may already be full). NULL when out of memory. */
static char *tc_avro_fullname(tc_avro_pctx *c, const char *name, const char *ns)
{
    size_t nl = strlen(name), sl = strlen(ns);
    char *out;

    if (strchr(name, '.') || !sl)
        return tc_arena_strndup(&c->s->arena, name, nl);
    out = tc_arena_alloc(&c->s->arena, sl + nl + 2);
    if (!out)
        return NULL;
    memcpy(out, ns, sl);
    out[sl] = '.';
    memcpy(out + sl + 1, name, nl + 1);
    return out;
}

/* The namespace part of a full name, in the arena. */
static const char *tc_avro_ns_of(tc_avro_pctx *c, const char *fullname)
{
    const char *dot = strrchr(fullname, '.');

    return dot ? tc_arena_strndup(&c->s->arena, fullname, (size_t)(dot - fullname)) : "";
}

static const tc_avro_node *tc_avro_lookup(tc_avro_pctx *c, const char *ref, const char *ns)
{
    char buf[2 * TC_AVRO_NAME_MAX + 2];
    const tc_avro_node *n;

    if (strchr(ref, '.') || !*ns)
        return tc_avro_find(c, ref);
    if (strlen(ns) + strlen(ref) + 2 <= sizeof(buf)) {
        size_t nl = strlen(ns);
        memcpy(buf, ns, nl);
        buf[nl] = '.';
        memcpy(buf + nl + 1, ref, strlen(ref) + 1);
        n = tc_avro_find(c, buf);
        if (n)
            return n;
    }
    return tc_avro_find(c, ref); /* the null namespace */
}

static tc_avro_node *tc_avro_new(tc_avro_pctx *c, tc_avro_kind kind)
{
    tc_avro_node *n = tc_arena_alloc(&c->s->arena, sizeof(*n));

    if (!n) {
        tc_avro_nomem(c);
        return NULL;
    }
    memset(n, 0, sizeof(*n));
    n->kind = kind;
    n->id = c->s->nnodes++;
    return n;
}

/* ---- defaults ---- */

static int tc_avro_valid_default(const tc_avro_node *t, const tc_json *v, unsigned depth)
{
    int64_t i;

    if (depth > TC_AVRO_SCHEMA_MAX_DEPTH)
        return 0;
    switch (t->kind) {
    case TC_AVRO_NULL:
        return v->type == TC_JSON_NULL;
    case TC_AVRO_BOOLEAN:
        return v->type == TC_JSON_TRUE || v->type == TC_JSON_FALSE;
    case TC_AVRO_INT:
        return tc_json_int64(v, &i) && i >= INT32_MIN && i <= INT32_MAX;
    case TC_AVRO_LONG:
        return tc_json_int64(v, &i);
    case TC_AVRO_FLOAT:
    case TC_AVRO_DOUBLE:
        return v->type == TC_JSON_NUMBER;
    case TC_AVRO_BYTES:
    case TC_AVRO_STRING:
    case TC_AVRO_FIXED:
        return v->type == TC_JSON_STRING;
    case TC_AVRO_ENUM:
        if (v->type != TC_JSON_STRING)
            return 0;
        for (size_t k = 0; k < t->nsymbols; k++)
            if (!strcmp(t->symbols[k], v->u.str))
                return 1;
        return 0;
    case TC_AVRO_ARRAY:
        if (v->type != TC_JSON_ARRAY)
            return 0;
        for (size_t k = 0; k < v->len; k++)
            if (!tc_avro_valid_default(t->items, v->u.items[k], depth + 1))
                return 0;
        return 1;
    case TC_AVRO_MAP:
        if (v->type != TC_JSON_OBJECT)
            return 0;
        for (size_t k = 0; k < v->len; k++)
            if (!tc_avro_valid_default(t->items, v->u.members[k].value, depth + 1))
                return 0;
        return 1;
    case TC_AVRO_UNION:
        return t->nbranches > 0 && tc_avro_valid_default(t->branches[0], v, depth + 1);
    case TC_AVRO_RECORD:
        if (v->type != TC_JSON_OBJECT)
            return 0;
        for (size_t k = 0; k < t->nfields; k++) {
            const tc_json *fv = tc_json_get(v, t->fields[k].name);
            if (fv ? !tc_avro_valid_default(t->fields[k].type, fv, depth + 1) : !t->fields[k].def)
                return 0;
        }
        return 1;
    }
    return 0;
}

/* ---- the model ---- */

static const tc_avro_node *tc_avro_parse_type(tc_avro_pctx *c, const tc_json *j, const char *ns,
                                              unsigned depth);

static int tc_avro_aliases(tc_avro_pctx *c, const tc_json *j, const char *ns, int qualify,
                           const char *const **out, size_t *nout)
{
    const char **a;

    *out = NULL;
    *nout = 0;
    if (!j)
        return 0;
    if (j->type != TC_JSON_ARRAY)
        return tc_avro_fail(c, "\"aliases\" must be an array of names");
    if (!j->len)
        return 0;
    a = tc_arena_alloc(&c->s->arena, j->len * sizeof(*a));
    if (!a)
        return tc_avro_nomem(c);
    for (size_t i = 0; i < j->len; i++) {
        const char *s = tc_json_string(j->u.items[i]);
        if (!s || !(qualify ? tc_avro_valid_dotted(s, 0) : tc_avro_valid_name(s)))
            return tc_avro_fail(c, "invalid alias in \"aliases\"");
        a[i] = qualify ? tc_avro_fullname(c, s, ns) : s;
        if (!a[i])
            return tc_avro_nomem(c);
    }
    *out = a;
    *nout = j->len;
    return 0;
}

/* Name, namespace and aliases of a record, enum or fixed; defines the name. Returns the namespace
 * its members live in, or NULL on error. */
static const char *tc_avro_named_type(tc_avro_pctx *c, const tc_json *j, const char *ns,
                                      tc_avro_node *n)
{
    const char *name = tc_json_string(tc_json_get(j, "name"));
    const tc_json *nsj = tc_json_get(j, "namespace");
    const char *own_ns = ns;
    char *full;

    if (!name) {
        tc_avro_fail(c, "%s without a \"name\"", tc_avro_kind_name(n->kind));
        return NULL;
    }
    if (nsj && nsj->type != TC_JSON_NULL) {
        if (nsj->type != TC_JSON_STRING || !tc_avro_valid_dotted(nsj->u.str, 1)) {
            tc_avro_fail(c, "invalid namespace in the definition of \"%s\"", name);
            return NULL;
        }
        own_ns = nsj->u.str;
    }
    if (!tc_avro_valid_dotted(name, 0)) {
        tc_avro_fail(c, "invalid name \"%.200s\"", name);
        return NULL;
    }
    full = tc_avro_fullname(c, name, own_ns);
    if (!full) {
        tc_avro_nomem(c);
        return NULL;
    }
    n->fullname = full;
    n->name = strrchr(full, '.') ? strrchr(full, '.') + 1 : full;
    own_ns = tc_avro_ns_of(c, full);
    if (!own_ns) {
        tc_avro_nomem(c);
        return NULL;
    }
    if (tc_avro_aliases(c, tc_json_get(j, "aliases"), own_ns, 1, &n->aliases, &n->naliases) < 0 ||
        tc_avro_define(c, full, n) < 0)
        return NULL;
    return own_ns;
}

static const tc_avro_node *tc_avro_parse_record(tc_avro_pctx *c, const tc_json *j, const char *ns,
                                                unsigned depth)
{
    tc_avro_node *n = tc_avro_new(c, TC_AVRO_RECORD);
    const tc_json *fields = tc_json_get(j, "fields");
    const char *inner;
    tc_avro_field *f;

    if (!n)
        return NULL;
    inner = tc_avro_named_type(c, j, ns, n);
    if (!inner)
        return NULL;
    if (!fields || fields->type != TC_JSON_ARRAY) {
        tc_avro_fail(c, "record \"%s\" has no \"fields\" array", n->fullname);
        return NULL;
    }
    f = fields->len ? tc_arena_alloc(&c->s->arena, fields->len * sizeof(*f)) : NULL;
    if (fields->len && !f) {
        tc_avro_nomem(c);
        return NULL;
    }
    for (size_t i = 0; i < fields->len; i++) {
        const tc_json *fj = fields->u.items[i];
        const tc_json *order = tc_json_get(fj, "order");
        const char *fname = tc_json_string(tc_json_get(fj, "name"));
        const tc_json *type = tc_json_get(fj, "type");

        if (!fname || !tc_avro_valid_name(fname)) {
            tc_avro_fail(c, "field %zu of record \"%s\" has no valid \"name\"", i, n->fullname);
            return NULL;
        }
        for (size_t k = 0; k < i; k++)
            if (!strcmp(f[k].name, fname)) {
                tc_avro_fail(c, "record \"%s\" has two fields named \"%s\"", n->fullname, fname);
                return NULL;
            }
        if (!type) {
            tc_avro_fail(c, "field \"%s\" of record \"%s\" has no \"type\"", fname, n->fullname);
            return NULL;
        }
        if (order && (order->type != TC_JSON_STRING ||
                      (strcmp(order->u.str, "ascending") && strcmp(order->u.str, "descending") &&
                       strcmp(order->u.str, "ignore")))) {
            tc_avro_fail(c, "field \"%s\" has an invalid \"order\"", fname);
            return NULL;
        }
        f[i].name = fname;
        f[i].def = tc_json_get(fj, "default");
        f[i].type = tc_avro_parse_type(c, type, inner, depth + 1);
        if (!f[i].type)
            return NULL;
        if (tc_avro_aliases(c, tc_json_get(fj, "aliases"), "", 0, &f[i].aliases, &f[i].naliases) <
            0)
            return NULL;
        n->fields = f;
        n->nfields = i + 1;
    }
    /* Defaults are checked once every field is known: a record default may hold the record. */
    for (size_t i = 0; i < n->nfields; i++) {
        if (f[i].def && !tc_avro_valid_default(f[i].type, f[i].def, 0)) {
            tc_avro_fail(c, "invalid default for field \"%s\" of record \"%s\" (type %s)",
                         f[i].name, n->fullname, tc_avro_kind_name(f[i].type->kind));
            return NULL;
        }
    }
    return n;
}

static const tc_avro_node *tc_avro_parse_enum(tc_avro_pctx *c, const tc_json *j, const char *ns)
{
    tc_avro_node *n = tc_avro_new(c, TC_AVRO_ENUM);
    const tc_json *sym = tc_json_get(j, "symbols");
    const tc_json *def = tc_json_get(j, "default");
    const char **s;

    if (!n || !tc_avro_named_type(c, j, ns, n))
        return NULL;
    if (!sym || sym->type != TC_JSON_ARRAY) {
        tc_avro_fail(c, "enum \"%s\" has no \"symbols\" array", n->fullname);
        return NULL;
    }
    s = sym->len ? tc_arena_alloc(&c->s->arena, sym->len * sizeof(*s)) : NULL;
    if (sym->len && !s) {
        tc_avro_nomem(c);
        return NULL;
    }
    for (size_t i = 0; i < sym->len; i++) {
        s[i] = tc_json_string(sym->u.items[i]);
        if (!s[i] || !tc_avro_valid_name(s[i])) {
            tc_avro_fail(c, "enum \"%s\" has an invalid symbol", n->fullname);
            return NULL;
        }
    }
    /* Duplicate symbols, pairwise for small enums (large ones: tc_avro_enum_dups, later). */
    for (size_t i = 1; i < sym->len && sym->len <= 4096; i++)
        for (size_t k = 0; k < i; k++)
            if (!strcmp(s[i], s[k])) {
                tc_avro_fail(c, "enum \"%s\" has the symbol \"%s\" twice", n->fullname, s[i]);
                return NULL;
            }
    n->symbols = s;
    n->nsymbols = sym->len;
    if (def) {
        const char *d = tc_json_string(def);
        size_t k;
        for (k = 0; d && k < n->nsymbols; k++)
            if (!strcmp(s[k], d))
                break;
        if (!d || k == n->nsymbols) {
            tc_avro_fail(c, "the default of enum \"%s\" is not one of its symbols", n->fullname);
            return NULL;
        }
        n->enum_default = d;
    }
    return n;
}

static int tc_strptrcmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int tc_avro_enum_dups(const char *const *s, size_t n)
{
    const char **copy;
    int dup = 0;

    if (n <= 4096)
        return 0; /* checked pairwise already */
    copy = malloc(n * sizeof(*copy));
    if (!copy)
        return -1;
    memcpy(copy, s, n * sizeof(*copy));
    qsort(copy, n, sizeof(*copy), tc_strptrcmp);
    for (size_t i = 1; i < n && !dup; i++)
        dup = !strcmp(copy[i - 1], copy[i]);
    free(copy);
    return dup;
}

static const tc_avro_node *tc_avro_parse_fixed(tc_avro_pctx *c, const tc_json *j, const char *ns)
{
    tc_avro_node *n = tc_avro_new(c, TC_AVRO_FIXED);
    int64_t size;

    if (!n || !tc_avro_named_type(c, j, ns, n))
        return NULL;
    if (!tc_json_int64(tc_json_get(j, "size"), &size) || size < 0 || size > INT32_MAX) {
        tc_avro_fail(c, "fixed \"%s\" needs a \"size\" in [0, 2^31-1]", n->fullname);
        return NULL;
    }
    n->size = size;
    return n;
}

static const tc_avro_node *tc_avro_parse_union(tc_avro_pctx *c, const tc_json *j, const char *ns,
                                               unsigned depth)
{
    tc_avro_node *n = tc_avro_new(c, TC_AVRO_UNION);
    const tc_avro_node **b;

    if (!n)
        return NULL;
    if (j->len == 0) {
        tc_avro_fail(c, "a union needs at least one branch");
        return NULL;
    }
    b = tc_arena_alloc(&c->s->arena, j->len * sizeof(*b));
    if (!b) {
        tc_avro_nomem(c);
        return NULL;
    }
    for (size_t i = 0; i < j->len; i++) {
        b[i] = tc_avro_parse_type(c, j->u.items[i], ns, depth + 1);
        if (!b[i])
            return NULL;
        if (b[i]->kind == TC_AVRO_UNION) {
            tc_avro_fail(c, "a union may not directly contain another union");
            return NULL;
        }
        for (size_t k = 0; k < i; k++) {
            int named = b[i]->fullname != NULL;
            if (named ? (b[k]->fullname && !strcmp(b[k]->fullname, b[i]->fullname))
                      : b[k]->kind == b[i]->kind) {
                tc_avro_fail(c, "a union contains the type \"%s\" twice",
                             named ? b[i]->fullname : tc_avro_kind_name(b[i]->kind));
                return NULL;
            }
        }
    }
    n->branches = b;
    n->nbranches = j->len;
    return n;
}

static const tc_avro_node *tc_avro_ref(tc_avro_pctx *c, const char *name, const char *ns)
{
    tc_avro_kind prim;
    const tc_avro_node *n;

    if (tc_avro_primitive(name, &prim))
        return tc_avro_new(c, prim);
    n = tc_avro_lookup(c, name, ns);
    if (!n)
        tc_avro_fail(c, "undefined name \"%.200s\"", name);
    return n;
}

static const tc_avro_node *tc_avro_parse_type(tc_avro_pctx *c, const tc_json *j, const char *ns,
                                              unsigned depth)
{
    const char *type;

    if (depth > TC_AVRO_SCHEMA_MAX_DEPTH) {
        tc_avro_fail(c, "schema nested too deeply");
        return NULL;
    }
    if (j->type == TC_JSON_STRING)
        return tc_avro_ref(c, j->u.str, ns);
    if (j->type == TC_JSON_ARRAY)
        return tc_avro_parse_union(c, j, ns, depth);
    if (j->type != TC_JSON_OBJECT) {
        tc_avro_fail(c, "a schema is a name, an object or an array (a union)");
        return NULL;
    }
    type = tc_json_string(tc_json_get(j, "type"));
    if (!type) {
        tc_avro_fail(c, "schema object without a string \"type\"");
        return NULL;
    }
    if (!strcmp(type, "record"))
        return tc_avro_parse_record(c, j, ns, depth);
    if (!strcmp(type, "enum"))
        return tc_avro_parse_enum(c, j, ns);
    if (!strcmp(type, "fixed"))
        return tc_avro_parse_fixed(c, j, ns);
    if (!strcmp(type, "array") || !strcmp(type, "map")) {
        int arr = type[0] == 'a';
        const tc_json *inner = tc_json_get(j, arr ? "items" : "values");
        tc_avro_node *n = tc_avro_new(c, arr ? TC_AVRO_ARRAY : TC_AVRO_MAP);
        if (!n)
            return NULL;
        if (!inner) {
            tc_avro_fail(c, "%s without \"%s\"", type, arr ? "items" : "values");
            return NULL;
        }
        n->items = tc_avro_parse_type(c, inner, ns, depth + 1);
        return n->items ? n : NULL;
    }
    /* A primitive in object form (maybe with a logicalType), or a reference to a named type. */
    return tc_avro_ref(c, type, ns);
}

/* ---- Parsing Canonical Form ---- */

static void tc_avro_pcf(tc_jbuf *b, const tc_avro_node *n, unsigned char *done)
{
    switch (n->kind) {
    case TC_AVRO_RECORD:
    case TC_AVRO_ENUM:
    case TC_AVRO_FIXED:
        if (done[n->id]) {
            tc_jbuf_str(b, n->fullname);
            return;
        }
        done[n->id] = 1;
        tc_jbuf_obj_begin(b);
        tc_jbuf_key(b, "name");
        tc_jbuf_str(b, n->fullname);
        tc_jbuf_key(b, "type");
        if (n->kind == TC_AVRO_RECORD) {
            tc_jbuf_str(b, "record");
            tc_jbuf_key(b, "fields");
            tc_jbuf_arr_begin(b);
            for (size_t i = 0; i < n->nfields; i++) {
                tc_jbuf_obj_begin(b);
                tc_jbuf_key(b, "name");
                tc_jbuf_str(b, n->fields[i].name);
                tc_jbuf_key(b, "type");
                tc_avro_pcf(b, n->fields[i].type, done);
                tc_jbuf_obj_end(b);
            }
            tc_jbuf_arr_end(b);
        } else if (n->kind == TC_AVRO_ENUM) {
            tc_jbuf_str(b, "enum");
            tc_jbuf_key(b, "symbols");
            tc_jbuf_arr_begin(b);
            for (size_t i = 0; i < n->nsymbols; i++)
                tc_jbuf_str(b, n->symbols[i]);
            tc_jbuf_arr_end(b);
        } else {
            tc_jbuf_str(b, "fixed");
            tc_jbuf_key(b, "size");
            tc_jbuf_int(b, n->size);
        }
        tc_jbuf_obj_end(b);
        return;
    case TC_AVRO_ARRAY:
    case TC_AVRO_MAP:
        tc_jbuf_obj_begin(b);
        tc_jbuf_key(b, "type");
        tc_jbuf_str(b, n->kind == TC_AVRO_ARRAY ? "array" : "map");
        tc_jbuf_key(b, n->kind == TC_AVRO_ARRAY ? "items" : "values");
        tc_avro_pcf(b, n->items, done);
        tc_jbuf_obj_end(b);
        return;
    case TC_AVRO_UNION:
        tc_jbuf_arr_begin(b);
        for (size_t i = 0; i < n->nbranches; i++)
            tc_avro_pcf(b, n->branches[i], done);
        tc_jbuf_arr_end(b);
        return;
    default:
        tc_jbuf_str(b, tc_avro_kind_name(n->kind));
        return;
    }
}

/* ---- entry points ---- */

static int tc_avro_libavro_check(tc_avro_pctx *c, const char *text, size_t len)
{
    avro_schema_t schema = NULL;
    int rc;

    pthread_mutex_lock(&tc_libavro_lock);
    rc = avro_schema_from_json_length(text, len, &schema);
    if (rc)
        tc_avro_fail(c, "libavro: %s", avro_strerror());
    if (schema)
        avro_schema_decref(schema);
    pthread_mutex_unlock(&tc_libavro_lock);
    return rc ? -1 : 0;
}

tc_avro_schema *tc_avro_schema_parse(const char *text, size_t len, tc_err *err, char *errstr,
                                     size_t errstr_size)
{
    tc_json_limits lim = {TC_AVRO_SCHEMA_MAX_BYTES, TC_AVRO_SCHEMA_MAX_DEPTH,
                          TC_AVRO_SCHEMA_MAX_NODES, 0};
    tc_avro_pctx c;
    tc_jbuf b;
    unsigned char *done;
    char jerr[TC_ERRSTR_MAX];
    tc_err jcode;

    memset(&c, 0, sizeof(c));
    c.errstr = errstr;
    c.errstr_size = errstr_size;
    if (errstr && errstr_size)
        errstr[0] = '\0';
    c.s = calloc(1, sizeof(*c.s));
    if (!c.s) {
        tc_avro_nomem(&c);
        goto fail;
    }
    tc_arena_init(&c.s->arena, 16384, 0);
    c.s->doc = tc_json_parse(text, len, &lim, &jcode, jerr, sizeof(jerr));
    if (!c.s->doc) {
        if (jcode == TC_ERR_NOMEM)
            tc_avro_nomem(&c);
        else
            tc_avro_fail(&c, "schema is not valid JSON: %s", jerr);
        goto fail;
    }
    c.s->root = tc_avro_parse_type(&c, tc_json_root(c.s->doc), "", 0);
    if (!c.s->root)
        goto fail;
    /* Enum symbol duplicates in very large enums (small ones were checked while parsing). */
    for (size_t i = 0; i < c.ncap; i++) {
        const tc_avro_node *n = c.names[i].node;
        int d;
        if (!c.names[i].fullname || n->kind != TC_AVRO_ENUM)
            continue;
        d = tc_avro_enum_dups(n->symbols, n->nsymbols);
        if (d < 0) {
            tc_avro_nomem(&c);
            goto fail;
        }
        if (d) {
            tc_avro_fail(&c, "enum \"%s\" has a symbol twice", n->fullname);
            goto fail;
        }
    }
    if (tc_avro_libavro_check(&c, text, len) < 0)
        goto fail;

    done = calloc(c.s->nnodes ? c.s->nnodes : 1, 1);
    if (!done) {
        tc_avro_nomem(&c);
        goto fail;
    }
    tc_jbuf_init(&b, 0);
    tc_avro_pcf(&b, c.s->root, done);
    free(done);
    c.s->canonical = tc_jbuf_take(&b, &c.s->canonical_len);
    if (!c.s->canonical) {
        tc_avro_nomem(&c);
        goto fail;
    }
    free(c.names);
    if (err)
        *err = TC_OK;
    return c.s;

fail:
    free(c.names);
    tc_avro_schema_free(c.s);
    if (err)
        *err = c.err == TC_OK ? TC_ERR_INVALID : c.err;
    return NULL;
}

void tc_avro_schema_free(tc_avro_schema *s)
{
    if (!s)
        return;
    tc_json_free(s->doc);
    tc_arena_free(&s->arena);
    free(s->canonical);
    free(s);
}

const tc_avro_node *tc_avro_schema_root(const tc_avro_schema *s)
{
    return s->root;
}

const char *tc_avro_schema_canonical(const tc_avro_schema *s, size_t *len)
{
    if (len)
        *len = s->canonical_len;
    return s->canonical;
}
